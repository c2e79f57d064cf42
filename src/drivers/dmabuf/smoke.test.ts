import { describe, expect, it } from 'vitest';
import { makeMachine, pattern } from '../../../test/fixtures/dma-b-machines.ts';
import { DMA_BIDIRECTIONAL } from '../../dma/index.ts';
import { dmaBufAttach, dmaBufMapAttachment, dmaResvLock, dmaResvUnlock, dmaBufRevoke, systemHeapAlloc, gpuBoCreate, gpuBoExport } from './index.ts';
import { vfioPciDmabufExport } from '../vfio/index.ts';
import { MiB, unwrap } from '../../base/index.ts';

describe('smoke', () => {
  for (const mode of ['none', 'strict'] as const) {
    it(`vfio ${mode}`, () => {
      const m = makeMachine(mode);
      const buf = unwrap(vfioPciDmabufExport(m.device('gpu0'), { bar: 0, offset: 0, len: 1 * MiB }));
      for (const name of ['nvme0', 'nic0', 'far0']) {
        const att = dmaBufAttach(buf, m.device(name), { peer2peer: true, dynamic: true, moveNotify: () => {} });
        expect(att.ok).toBe(true);
        if (!att.ok) continue;
        dmaResvLock(buf);
        const map = dmaBufMapAttachment(att.value, DMA_BIDIRECTIONAL);
        dmaResvUnlock(buf);
        console.log(mode, name, map.ok ? [map.value.count, map.value.addrAt(0).toString(16)] : map);
        if (map.ok) {
          const p = pattern(4096, 3);
          expect(m.device(name).dmaWrite(map.value.addrAt(0) + 4096n, p).ok).toBe(true);
          expect(m.mem.read(buf.ops.physRanges(buf).ok ? (buf.ops.physRanges(buf) as any).value.addrAt(0) + 4096n : 0n, 4096)).toEqual(p);
        }
      }
      dmaBufRevoke(buf);
      console.log(m.events.list().map((e) => `${e.kind} ${e.message}`));
    });
  }
  it('heap and gpu', () => {
    const m = makeMachine('strict');
    const h = unwrap(systemHeapAlloc(m, 3 * MiB + 4096));
    const att = unwrap(dmaBufAttach(h, m.device('nic0')));
    dmaResvLock(h);
    const map = unwrap(dmaBufMapAttachment(att, DMA_BIDIRECTIONAL));
    dmaResvUnlock(h);
    console.log(map.count, map.addrAt(0));
    const bo = unwrap(gpuBoCreate(m.device('gpu0'), 2 * MiB));
    const g = unwrap(gpuBoExport(bo));
    const a2 = unwrap(dmaBufAttach(g, m.device('far0'), { dynamic: true, peer2peer: true }));
    dmaResvLock(g);
    const m2 = dmaBufMapAttachment(a2, DMA_BIDIRECTIONAL);
    dmaResvUnlock(g);
    console.log(m2.ok, bo.placement, a2.peer2peer);
    console.log(m.events.list().map((e) => `${e.kind} ${e.message}`));
  });
});
