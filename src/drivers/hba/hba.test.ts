import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { makeMachine } from '../../../test/fixtures/dma-b-machines.ts';
import { unwrap } from '../../base/index.ts';
import {
  DMA_TO_DEVICE, dmaGetMaxSegSize, dmaGetSegBoundary, dmaMapPhys, dmaSetMaxSegSize, dmaUnmapPhys,
} from '../../dma/index.ts';
import {
  HBA_SG_CHAIN, HBA_SG_END_OF_LIST, hbaBuildSgl, hbaFreeSgl, hbaReadSgl, hbaSetup,
} from './index.ts';

function hex(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
}

describe('HBA SG list (16-byte entries, 64 KiB per entry) through the common builder', () => {
  it('the probe hands the host\'s segment limits to the DMA layer: 64 KiB segments, a 4 GiB boundary', () => {
    const m = makeMachine('strict');
    const dev = m.device('nic0');
    // whatever was there before (another driver's UINT_MAX, as nvme sets it)
    dmaSetMaxSegSize(dev, 0xffffffff);
    unwrap(hbaSetup(dev));
    // scsi_init_limits(): dma_set_max_seg_size(shost->max_segment_size = BLK_MAX_SEGMENT_SIZE) and
    // dma_set_seg_boundary(shost->dma_boundary = 0xffffffff), the scsi_host_alloc() defaults
    expect(dmaGetMaxSegSize(dev)).toBe(65536);
    expect(dmaGetSegBoundary(dev)).toBe(0xffffffffn);
  });

  it('one entry sits in the command with END_OF_LIST: bytes addr | len | flags', () => {
    const m = makeMachine('none');
    const ctrl = unwrap(hbaSetup(m.device('nic0')));
    const sgl = unwrap(hbaBuildSgl(ctrl, [{ addr: 0x1234_5678_9abcn, len: 0x800 }]));
    expect(hex(sgl.cmdEntry)).toBe('bc9a785634120000' + '00080000' + '01000000');
    expect(sgl.build.blocks).toEqual([]);
  });

  it('a 64 KiB + 1 segment is two entries in an SG page; the command holds a CHAIN of 32 bytes', () => {
    const m = makeMachine('none');
    const ctrl = unwrap(hbaSetup(m.device('nic0')));
    const sgl = unwrap(hbaBuildSgl(ctrl, [{ addr: 0x40000n, len: 0x10001 }]));
    const page = sgl.build.blocks[0];
    expect(hex(sgl.cmdEntry)).toBe(page.dmaAddr.toString(16).padStart(16, '0').match(/../g)!.reverse().join('') + '20000000' + '02000000');
    expect(hex(m.mem.read(page.cpuPhys, 32))).toBe(
      '0000040000000000' + '00000100' + '00000000'
      + '0000050000000000' + '01000000' + '01000000');
    hbaFreeSgl(sgl);
    expect(ctrl.pool.nrActive).toBe(0);
  });

  it('257 entries chain: 255 data + CHAIN in the first page, 2 data in the second', () => {
    const m = makeMachine('strict');
    const ctrl = unwrap(hbaSetup(m.device('nic0')));
    const segs = Array.from({ length: 257 }, (_, i) => ({ addr: 0x100000n + BigInt(i) * 0x20000n, len: 512 }));
    const sgl = unwrap(hbaBuildSgl(ctrl, segs));
    expect(sgl.build.blocks.map((b) => b.entries)).toEqual([256, 2]);
    const first = new DataView(m.mem.read(sgl.build.blocks[0].cpuPhys, 4096).buffer);
    expect(first.getUint32(255 * 16 + 12, true)).toBe(HBA_SG_CHAIN);
    expect(first.getBigUint64(255 * 16, true)).toBe(sgl.build.blocks[1].dmaAddr);
    expect(first.getUint32(255 * 16 + 8, true)).toBe(32);
    const second = new DataView(m.mem.read(sgl.build.blocks[1].cpuPhys, 32).buffer);
    expect(second.getUint32(16 + 12, true)).toBe(HBA_SG_END_OF_LIST);
    // the adapter reads it back through the IOMMU
    expect(unwrap(hbaReadSgl(ctrl, sgl.cmdEntry))).toEqual(segs);
    hbaFreeSgl(sgl);
  });

  it('property: mapped buffers of random sizes come back from the adapter\'s walk, cut at 64 KiB; pages freed', () => {
    fc.assert(fc.property(fc.array(fc.integer({ min: 1, max: 300_000 }), { minLength: 1, maxLength: 40 }), fc.constantFrom('none', 'strict'),
      (lens, mode) => {
        const m = makeMachine(mode as 'none' | 'strict');
        const dev = m.device('nic0');
        const ctrl = unwrap(hbaSetup(dev));
        let phys = 0x1000_0000n;
        const maps = lens.map((len) => {
          const addr = unwrap(dmaMapPhys(dev, phys + 17n, len, DMA_TO_DEVICE));
          phys += BigInt(len + 0x10000);
          return { addr, len };
        });
        const sgl = unwrap(hbaBuildSgl(ctrl, maps));
        const walked = unwrap(hbaReadSgl(ctrl, sgl.cmdEntry));
        expect(walked.every((s) => s.len <= 65536)).toBe(true);
        // the walk concatenates back to the mapped segments
        const merged: Array<{ addr: bigint; len: number }> = [];
        let k = 0;
        for (const mp of maps) {
          let a = mp.addr;
          let left = mp.len;
          while (left > 0) {
            expect(walked[k].addr).toBe(a);
            a += BigInt(walked[k].len);
            left -= walked[k].len;
            k++;
          }
          expect(left).toBe(0);
          merged.push(mp);
        }
        expect(k).toBe(walked.length);
        hbaFreeSgl(sgl);
        for (const mp of maps) dmaUnmapPhys(dev, mp.addr, mp.len, DMA_TO_DEVICE);
        ctrl.destroy();
        expect(m.teardown()).toBe(0);
        expect(m.events.list().filter((e) => e.kind === 'DMA-DEBUG' || e.kind === 'WARN')).toEqual([]);
      }), { numRuns: 30 });
  });
});
