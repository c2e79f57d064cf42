import { describe, expect, it } from 'vitest';
import { BvecList } from './bvec.ts';
import { RANGE_MMIO, RANGE_NOPAGE } from './flags.ts';
import { refSegments, segsOnly, walkCursor } from '../../test/fixtures/phyr-reference.ts';

describe('BvecList', () => {
  const vecs = [
    { pfn: 10n, offset: 0x100, len: 0xf00 },
    { pfn: 11n, offset: 0, len: 0x3000 }, // multi-page bvec
    { pfn: 20n, offset: 0x1800, len: 0x10, flags: RANGE_MMIO }, // offset beyond the page
  ];
  const bv = BvecList.from(vecs, 4096);

  it('stores (page, len, offset) and walks bvec_phys ranges', () => {
    expect(bv.layout).toBe('bvec');
    expect(bv.count).toBe(3);
    expect(bv.kernelBytes).toBe(48);
    expect(bv.totalLen).toBe(0xf00 + 0x3000 + 0x10);
    expect([bv.pfnAt(2), bv.offsetAt(2), bv.lenAt(2), bv.flagsAt(2)]).toEqual([20n, 0x1800, 0x10, RANGE_MMIO]);
    expect(bv.addrAt(2)).toBe(20n * 4096n + 0x1800n);
    const rs = [...bv];
    expect(rs.map((r) => [r.addr, r.len])).toEqual([[0xa100n, 0xf00], [0xb000n, 0x3000], [0x15800n, 0x10]]);
    expect(segsOnly(walkCursor(bv.cursor()))).toEqual(rs);
    expect(segsOnly(walkCursor(bv.cursor({ merge: true }))).map((s) => [s.addr, s.len])).toEqual([[0xa100n, 0x3f00], [0x15800n, 0x10]]);
    for (const o of [{ maxSegmentLen: 0x1000 }, { segBoundaryMask: 0xfffn, merge: true }, { virtBoundaryMask: 0xfff, budget: 0x2000 }]) {
      expect(walkCursor(bv.cursor(o), 0x800)).toEqual(refSegments(rs, o, 0x800));
    }
  });

  it('holds up to 4 GiB - 1 per bvec and rejects what a bio_vec cannot name', () => {
    const big = BvecList.from([{ pfn: 0n, offset: 0, len: 0xffff_ffff }], 4096);
    expect(big.totalLen).toBe(0xffff_ffff);
    expect(() => BvecList.from([{ pfn: 0n, offset: 0, len: 2 ** 32 }], 4096)).toThrow(/vecs\[0\]\.len/);
    expect(() => BvecList.from([{ pfn: 0n, offset: 0, len: 0 }], 4096)).toThrow(/vecs\[0\]\.len/);
    expect(() => BvecList.from([{ pfn: 0n, offset: -1, len: 1 }], 4096)).toThrow(/vecs\[0\]\.offset/);
    expect(() => BvecList.from([{ pfn: 1, offset: 0, len: 1 } as unknown as { pfn: bigint; offset: number; len: number }], 4096)).toThrow(/vecs\[0\]\.pfn/);
    expect(() => BvecList.from([{ pfn: 1n, offset: 0, len: 1 }, { pfn: 2n, offset: 0, len: 1, flags: RANGE_NOPAGE }], 4096)).toThrow(/vecs\[1\]\.flags.*struct page/);
    expect(() => BvecList.from([], 1000)).toThrow(/pageSize/);
    const b = BvecList.builder(4096);
    b.push(1, 0, 10);
    b.build();
    expect(() => b.push(2, 0, 10)).toThrow(/built/);
  });

  it('walks addresses above 2^53 exactly', () => {
    const hi = BvecList.from([{ pfn: (1n << 41n) - 1n, offset: 4000, len: 200 }, { pfn: 1n << 41n, offset: 104, len: 50 }], 4096);
    expect(hi.addrFitsNumber).toBe(false);
    const rs = [...hi];
    expect(rs[0].addr).toBe(((1n << 41n) - 1n) * 4096n + 4000n);
    expect(() => BvecList.from([{ pfn: (1n << 52n) - 1n, offset: 4000, len: 200 }], 4096)).toThrow(/exceeds 2\^64/);
    expect(segsOnly(walkCursor(hi.cursor({ segBoundaryMask: 0xfffn })))).toEqual(segsOnly(refSegments(rs, { segBoundaryMask: 0xfffn })));
  });
});
