import { describe, expect, it } from 'vitest';
import { makeMachine } from '../../../test/fixtures/dma-b-machines.ts';
import { DMA_BIT_MASK, dmaSetMaskAndCoherent } from '../../dma/index.ts';
import { UMEM_METHODS, umemMap } from './umem.ts';

const PAGE = 4096;

describe('umemMap', () => {
  it.each(UMEM_METHODS)('%s: maps a user buffer, moves bytes both ways, and its undo leaves nothing pinned or mapped', (method) => {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(64));
    const mm = m.newProcess();
    const len = 64 * PAGE;
    const va = mm.mmap({ len, backing: 'anon', populate: true });
    if (!va.ok) throw new Error(va.errno);
    const start = va.value + 0x200n;
    const n = len - 0x200;
    const cpu = new Uint8Array(n).map((_, i) => (i * 7 + 3) & 0xff);
    expect(mm.writeUser(start, cpu).ok).toBe(true);
    const r = umemMap(dev, mm, start, n, method);
    if (!r.ok) throw new Error(`${r.errno} ${r.message}`);
    const mp = r.value;
    const segs = mp.segments;
    let total = 0;
    for (let i = 0; i < segs.count; i++) total += segs.lenAt(i);
    expect(total).toBe(n);
    // the device reads what the CPU wrote, in buffer order, then overwrites it
    const seen = new Uint8Array(n);
    let at = 0;
    for (let i = 0; i < segs.count; i++) {
      const x = dev.dmaRead(segs.addrAt(i), segs.lenAt(i));
      if (!x.ok) throw new Error(x.errno);
      seen.set(x.value, at);
      at += x.value.length;
      expect(dev.dmaWrite(segs.addrAt(i), new Uint8Array(segs.lenAt(i)).fill(0xc3)).ok).toBe(true);
    }
    expect(seen).toEqual(cpu);
    mp.unmap();
    mp.unmap();
    const back = mm.readUser(start, n);
    expect(back.ok && back.value.every((b) => b === 0xc3)).toBe(true);
    expect(m.stats.iommuLeafPtesWritten - m.stats.iommuLeafPtesCleared).toBe(0);
    expect(m.events.count('DMA-DEBUG')).toBe(0);
    expect(m.teardown()).toBe(0);
  });

  it.each(UMEM_METHODS)('%s: a buffer that runs into a hole is refused whole (the short pin is undone), naming where', (method) => {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    const mm = m.newProcess();
    const va = mm.mmap({ len: 8 * PAGE, backing: 'anon', populate: true });
    if (!va.ok) throw new Error(va.errno);
    expect(mm.munmap(va.value + BigInt(4 * PAGE), 4 * PAGE).ok).toBe(true);
    const r = umemMap(dev, mm, va.value, 8 * PAGE, method);
    expect(r.ok ? 'ok' : r.errno).toBe('EFAULT');
    if (!r.ok) expect(r.message).toMatch(/pinned .* of .*; at 0x/);
    expect(m.listPins()).toEqual([]);
    expect(m.teardown()).toBe(0);
  });

  it('ibUmemBatches: the same DMA segments as one table build; the table is ib_umem_get\'s, whole chunks of 128 entries while pages are left', () => {
    const m = makeMachine('none', 1, { hugetlb: { '2M': 4 } });
    const dev = m.device('nvme0');
    const mm = m.newProcess();
    const len = 4 * 1024 * 1024;
    const va = mm.mmap({ len, backing: 'hugetlb-2M', populate: true });
    if (!va.ok) throw new Error(va.errno);
    const segs = (u: { segments: { count: number; addrAt(i: number): bigint; lenAt(i: number): number } }): string[] =>
      Array.from({ length: u.segments.count }, (_, i) => `${u.segments.addrAt(i)}+${u.segments.lenAt(i)}`);
    const one = umemMap(dev, mm, va.value + 0x100n, len - 0x200, 'sgtable');
    const batched = umemMap(dev, mm, va.value + 0x100n, len - 0x200, 'sgtable', { ibUmemBatches: true });
    if (!one.ok || !batched.ok) throw new Error('umemMap');
    expect(segs(batched.value)).toEqual(segs(one.value));
    const pageArray = 8 * (len / PAGE);
    // 64 entries (nvme0's 64 KiB max segment): one sg_table sized to them, against ib_umem_get's
    // first append, which is told 512 more pages follow and takes a whole chunk of 128
    expect(one.value.segments.count).toBe(64);
    expect(one.value.metadataBytes - pageArray).toBe(16 + 64 * 32);
    expect(batched.value.metadataBytes - pageArray).toBe(32 + 128 * 32);
    one.value.unmap();
    batched.value.unmap();
    expect(m.listPins()).toEqual([]);
    expect(m.teardown()).toBe(0);
  });

  it('names the call that failed, and leaves nothing pinned', () => {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    const mm = m.newProcess();
    const r = umemMap(dev, mm, 0x10000n, PAGE, 'map-phyrs');
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.message).toMatch(/^pinUserPhyrs: /);
    expect(m.teardown()).toBe(0);
  });
});
