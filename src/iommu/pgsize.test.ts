// Tests for pgsize.ts: iommu_pgsize and its granule form against a brute-force oracle.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { iommuPgsize, pgsizeGranules } from './pgsize.ts';

/** Brute force: the largest page that fits size and both alignments; then walk page by page until
 *  the next bigger size would fit at both addresses with a whole page of it left. */
function oracle(bitmap: bigint, iova: bigint, paddr: bigint, size: bigint): { pgsize: number; count: number } {
  const sizes: bigint[] = [];
  for (let b = 0n; b < 64n; b++) if (bitmap & (1n << b)) sizes.push(1n << b);
  let p = 0n;
  for (const s of sizes) if (s <= size && iova % s === 0n && paddr % s === 0n) p = s;
  const q = sizes.find((s) => s > p);
  let count = size / p;
  if (q !== undefined) {
    for (let k = 1n; k * p <= size; k++) {
      if ((iova + k * p) % q === 0n && (paddr + k * p) % q === 0n) {
        if (size - k * p >= q) count = k;
        break;
      }
    }
  }
  return { pgsize: Number(p), count: Number(count) };
}

const arbBitmap = fc.array(fc.integer({ min: 13, max: 34 }), { maxLength: 6 })
  .map((bits) => bits.reduce((m, b) => m | (1n << BigInt(b)), 1n << 12n));

describe('iommuPgsize (iommu_pgsize)', () => {
  it('x86 sizes: a 2 MiB-aligned 4 MiB + 8 KiB region maps as two 2 MiB pages first', () => {
    const bm = (1n << 12n) | (1n << 21n) | (1n << 30n);
    expect(iommuPgsize(bm, 0x200000n, 0x40200000n, 0x402000)).toEqual({ pgsize: 0x200000, count: 2 });
    // unaligned start: 4 KiB pages up to the next 2 MiB boundary, since a whole 2 MiB page follows
    expect(iommuPgsize(bm, 0x1ff000n, 0x401ff000n, 0x401000)).toEqual({ pgsize: 0x1000, count: 1 });
    // iova and paddr disagree mod 2 MiB: never a 2 MiB page, so the batch runs to the end
    expect(iommuPgsize(bm, 0x1ff000n, 0x40000000n, 0x401000)).toEqual({ pgsize: 0x1000, count: 0x401 });
  });
  it('agrees with a brute-force oracle', () => {
    fc.assert(fc.property(arbBitmap, fc.integer({ min: 0, max: 2 ** 22 }), fc.integer({ min: 0, max: 2 ** 22 }),
      fc.integer({ min: 1, max: 2 ** 12 }), fc.integer({ min: 0, max: 3 }),
      (bm, ia, pa, pages, shiftSel) => {
        const sh = BigInt([12, 13, 16, 21][shiftSel]);
        const iova = BigInt(ia) << sh, paddr = BigInt(pa) << sh;
        const size = pages * 4096;
        expect(iommuPgsize(bm, iova, paddr, size)).toEqual(oracle(bm, iova, paddr, BigInt(size)));
      }), { numRuns: 400 });
  });
  it('the granule-unit hot-path version agrees with the bigint one', () => {
    fc.assert(fc.property(arbBitmap, fc.integer({ min: 0, max: 2 ** 40 }), fc.integer({ min: 0, max: 2 ** 40 }),
      fc.integer({ min: 1, max: 2 ** 30 }), (bm, ipfn, ppfn, pages) => {
        const lg2s: number[] = [];
        for (let b = 12; b < 64; b++) if (bm & (1n << BigInt(b))) lg2s.push(b - 12);
        const out = { lg2: -1, count: -1 };
        expect(pgsizeGranules(lg2s, ipfn, ppfn, pages, out)).toBe(true);
        const want = iommuPgsize(bm, BigInt(ipfn) << 12n, BigInt(ppfn) << 12n, pages * 4096);
        expect(2 ** (out.lg2 + 12)).toBe(want.pgsize);
        expect(out.count).toBe(want.count);
      }), { numRuns: 400 });
  });
  it('rejects input no size fits, naming the values', () => {
    expect(() => iommuPgsize(1n << 21n, 0x1000n, 0n, 0x200000)).toThrow(/no page size of pgsizeBitmap 0x200000 fits iova 0x1000/);
    expect(() => iommuPgsize(1n << 12n, 0n, 0n, 0)).toThrow(/size must be a safe integer >= 1, got 0/);
  });
});
