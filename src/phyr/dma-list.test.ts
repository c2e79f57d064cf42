import { describe, expect, it } from 'vitest';
import { DmaList } from './dma-list.ts';
import { PhyrList } from './phyr-list.ts';
import { RANGE_MMIO } from './flags.ts';
import { segsOnly, walkCursor } from '../../test/fixtures/phyr-reference.ts';

describe('DmaList', () => {
  it('builds with merging and keeps full 64-bit DMA addresses', () => {
    const b = DmaList.builder();
    b.pushBig(0xffff_ffff_f000_0000n, 0x1000, 0);
    b.pushBig(0xffff_ffff_f000_1000n, 0x1000, 0);
    b.push(0x1000, 0x10, RANGE_MMIO);
    const d = b.build();
    expect(d.layout).toBe('dmalist');
    expect(d.sharesStorage).toBe(false);
    expect(d.kernelBytes).toBe(32);
    expect([...d]).toEqual([
      { addr: 0xffff_ffff_f000_0000n, len: 0x2000, flags: 0 },
      { addr: 0x1000n, len: 0x10, flags: RANGE_MMIO },
    ]);
    expect(segsOnly(walkCursor(d.cursor({ maxSegmentLen: 0x1000 })))[1].addr).toBe(0xffff_ffff_f000_1000n);
    expect(() => DmaList.from([{ addr: -1n, len: 1 }])).toThrow(/ranges\[0\]\.addr/);
  });

  it('sharing() is a zero-copy view over a PhyrList', () => {
    const p = PhyrList.from([{ addr: 0x1000n, len: 0x1000 }, { addr: 0x9000n, len: 0x20, flags: RANGE_MMIO }]);
    const d = DmaList.sharing(p);
    expect(d.sharesStorage).toBe(true);
    expect(d.kernelBytes).toBe(0);
    expect(d._a).toBe(p._a);
    expect(d._l).toBe(p._l);
    expect([...d]).toEqual([...p]);
    expect(segsOnly(walkCursor(d.cursor()))).toEqual([...p]);
    expect(() => DmaList.sharing([] as unknown as PhyrList)).toThrow(/PhyrList/);
  });
});
