// The IOVA allocator keeps its ranges in chunked sorted arrays (so that top-down allocation of
// 200,000 ranges is not quadratic). This checks it against a flat-array reference of the same
// search (the allocator as it was before the chunks): same frames handed out, same failures, same
// ranges held, through many chunk splits and empty chunks, with reservations and 32-bit limits.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { IovaDomain } from './internal.ts';
import { TestMachine } from '../../test/fixtures/iommu-machine.ts';

/** The same alloc_iova / free_iova / reserve_iova over one flat sorted array pair. */
class FlatIova {
  los: number[] = [];
  his: number[] = [];
  cachedLo = Infinity;
  cached32Lo = Infinity;
  max32: number;
  constructor(readonly start: number, readonly dma32: number) {
    this.max32 = dma32;
  }
  private upper(p: number): number {
    let a = 0;
    while (a < this.los.length && this.los[a] <= p) a++;
    return a;
  }
  private lower(p: number): number {
    let a = 0;
    while (a < this.los.length && this.los[a] < p) a++;
    return a;
  }
  private insert(lo: number, hi: number): void {
    const i = this.upper(lo);
    this.los.splice(i, 0, lo);
    this.his.splice(i, 0, hi);
  }
  alloc(size: number, limitPfn: number, aligned: boolean): number {
    // the 32-bit tests see the exclusive limit, limit_pfn + 1 (iova.c: alloc_iova())
    const limitEnd = limitPfn + 1;
    if (limitEnd <= this.dma32 && size >= this.max32) return 0;
    const align = aligned && size > 1 ? 2 ** Math.ceil(Math.log2(size)) : 1;
    const { los, his } = this;
    const cached = limitEnd <= this.dma32 ? this.cached32Lo : this.cachedLo;
    let i = cached === Infinity ? los.length : this.lower(cached);
    const retryPfn = i < los.length ? his[i] : Infinity;
    let high = limitEnd, low = this.start, p = 0, retried = false;
    for (;;) {
      do {
        if (i < los.length && los[i] < high) high = los[i];
        p = high - size;
        p -= p % align;
        i--;
      } while (i >= 0 && p <= his[i] && p >= low);
      if (high >= size && p >= low) break;
      if (!retried && low === this.start && retryPfn < limitEnd) {
        retried = true; high = limitEnd; low = retryPfn + 1; i = this.lower(limitEnd);
        continue;
      }
      this.max32 = size;
      return 0;
    }
    this.insert(p, p + size - 1);
    if (p + size - 1 < this.dma32) this.cached32Lo = p; else this.cachedLo = p;
    return p;
  }
  free(pfn: number): boolean {
    const i = this.upper(pfn) - 1;
    if (i < 0 || this.his[i] < pfn) return false;
    const lo = this.los[i], hi = this.his[i];
    const next = i + 1 < this.los.length ? this.los[i + 1] : Infinity;
    if (lo === this.cached32Lo || (hi < this.dma32 && lo >= this.cached32Lo)) this.cached32Lo = next;
    if (lo < this.dma32) this.max32 = this.dma32;
    if (lo >= this.cachedLo) this.cachedLo = next;
    this.los.splice(i, 1);
    this.his.splice(i, 1);
    return true;
  }
  reserve(lo: number, hi: number): void {
    let i = this.upper(hi) - 1;
    while (i >= 0 && this.his[i] >= lo) {
      lo = Math.min(lo, this.los[i]); hi = Math.max(hi, this.his[i]);
      this.los.splice(i, 1); this.his.splice(i, 1);
      i--;
    }
    this.insert(lo, hi);
  }
}

type Op =
  | { kind: 'alloc'; size: number; limit: number; aligned: boolean; burst: number }
  | { kind: 'free'; pick: number; burst: number }
  | { kind: 'reserve'; lo: number; len: number };

const DMA32 = 2 ** 20; // 4 GiB of 4 KiB frames
const LIMITS = [DMA32 - 1, DMA32, 2 ** 36 - 1, 0x3ffff];

const arbOp: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({
    kind: fc.constant('alloc' as const), size: fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 3000 })),
    limit: fc.nat(LIMITS.length - 1), aligned: fc.boolean(), burst: fc.integer({ min: 1, max: 400 }),
  }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('free' as const), pick: fc.nat(), burst: fc.integer({ min: 1, max: 300 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('reserve' as const), lo: fc.integer({ min: 1, max: DMA32 + 5000 }), len: fc.integer({ min: 1, max: 2000 }) }) },
);

describe('IovaDomain ranges against a flat-array reference', () => {
  it('hands out the same frames and holds the same ranges', () => {
    fc.assert(fc.property(fc.array(arbOp, { minLength: 1, maxLength: 40, size: 'max' }), (ops) => {
      const mm = new TestMachine();
      const d = new IovaDomain(4096, 1n, mm.stats, mm.events, false);
      const ref = new FlatIova(1, DMA32);
      const live: number[] = [];
      for (const op of ops) {
        if (op.kind === 'alloc') {
          for (let k = 0; k < op.burst; k++) {
            const got = d.allocIova(op.size, LIMITS[op.limit], op.aligned);
            expect(got).toBe(ref.alloc(op.size, LIMITS[op.limit], op.aligned));
            if (got !== 0) live.push(got);
          }
        } else if (op.kind === 'free') {
          for (let k = 0; k < op.burst && live.length > 0; k++) {
            const [pfn] = live.splice((op.pick + k * 7919) % live.length, 1);
            expect(d.freeIova(pfn)).toBe(ref.free(pfn));
          }
        } else {
          d.reserveIova(BigInt(op.lo), BigInt(op.lo + op.len - 1));
          ref.reserve(op.lo, op.lo + op.len - 1);
          // a reservation may have swallowed live allocations: forget those
          for (let k = live.length - 1; k >= 0; k--) if (d.findIova(BigInt(live[k]))?.pfnLo !== BigInt(live[k])) live.splice(k, 1);
        }
        expect(d.rangeCount).toBe(ref.los.length);
      }
      expect(d.ranges()).toEqual(ref.los.map((lo, i) => ({ pfnLo: BigInt(lo), pfnHi: BigInt(ref.his[i]) })));
      for (const pfn of live) expect(d.findIova(BigInt(pfn))?.pfnLo).toBe(BigInt(pfn));
      expect(d.findIova(0n)).toBeNull();
    }), { numRuns: 25 });
  });
});
