// IommuBitmap (the aperture bitmap of GART and the powerpc TCE table) against a plain reference
// written the way lib/bitmap.c: bitmap_find_next_zero_area() and lib/iommu-helper.c:
// iommu_area_alloc() read, one bit at a time: the bitmap's skipping (whole bytes, whole chunks of
// 1,024 entries by their free counts) must never change an answer.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AREA_ALLOC_LOCKUP, IommuBitmap, isSpanBoundary } from './ops.ts';

/** The reference: a boolean per entry, searched entry by entry. */
class RefBitmap {
  readonly bits: boolean[];
  constructor(readonly size: number) {
    this.bits = new Array<boolean>(size).fill(false);
  }

  findNextZeroArea(size: number, start: number, nr: number, alignMask: number): number {
    for (;;) {
      let index = start;
      while (index < size && this.bits[index]) index++;
      index = (index + alignMask) & ~alignMask;
      const end = index + nr;
      if (end > size) return end;
      let i = index;
      while (i < end && !this.bits[i]) i++;
      if (i === end) return index;
      start = i + 1;
    }
  }

  areaAlloc(size: number, start: number, nr: number, shift: number, boundarySize: number, alignMask: number): number {
    const lim = size - 1;
    for (;;) {
      const index = this.findNextZeroArea(lim, start, nr, alignMask);
      if (index >= lim) return -1;
      if (isSpanBoundary(index, nr, shift, boundarySize)) {
        const next = Math.ceil((shift + index) / boundarySize) * boundarySize - shift;
        // the kernel's loop would search from the same index again, for ever
        if (next === index) return AREA_ALLOC_LOCKUP;
        start = next;
        continue;
      }
      for (let i = index; i < index + nr; i++) this.bits[i] = true;
      return index;
    }
  }

  fill(start: number, n: number, v: boolean): void {
    for (let i = start; i < start + n; i++) this.bits[i] = v;
  }
}

type Op =
  | { kind: 'alloc'; start: number; nr: number; shift: number; boundaryLg2: number; alignLg2: number; limit: number }
  | { kind: 'free'; pick: number }
  | { kind: 'set'; start: number; n: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({
    kind: fc.constant('alloc' as const), start: fc.nat(6000), nr: fc.oneof(fc.integer({ min: 1, max: 16 }), fc.integer({ min: 1, max: 1200 })),
    shift: fc.nat(4096), boundaryLg2: fc.integer({ min: 6, max: 13 }), alignLg2: fc.integer({ min: 0, max: 4 }), limit: fc.nat(6000),
  }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('free' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('set' as const), start: fc.nat(6000), n: fc.nat(3000) }) },
);

describe('IommuBitmap against an entry-by-entry reference', () => {
  it('property: the same allocations, the same bits and chunk counts that match the bits, over random alloc / free / set sequences', () => {
    fc.assert(fc.property(fc.integer({ min: 2, max: 4000 }), fc.array(opArb, { maxLength: 80 }), (size, ops) => {
      const b = new IommuBitmap(size);
      const r = new RefBitmap(size);
      const live: Array<[number, number]> = [];
      for (const op of ops) {
        if (op.kind === 'alloc') {
          const lim = Math.max(2, Math.min(size, op.limit));
          const start = op.start % lim;
          // a run longer than the boundary: iommu_area_alloc either finds no room or never returns
          const nr = op.nr;
          const got = b.areaAlloc(lim, start, nr, op.shift, 2 ** op.boundaryLg2, 2 ** op.alignLg2 - 1);
          const want = r.areaAlloc(lim, start, nr, op.shift, 2 ** op.boundaryLg2, 2 ** op.alignLg2 - 1);
          expect(got).toBe(want);
          if (got >= 0) live.push([got, nr]);
        } else if (op.kind === 'free') {
          if (live.length === 0) continue;
          const [s, n] = live.splice(op.pick % live.length, 1)[0];
          b.clear(s, n);
          r.fill(s, n, false);
        } else {
          const s = op.start % size;
          const n = Math.min(op.n, size - s);
          b.set(s, n);
          r.fill(s, n, true);
        }
      }
      const diff = r.bits.findIndex((x, i) => x !== (b.bits[i] !== 0));
      expect(diff, 'first entry that differs').toBe(-1);
      for (let c = 0; c * 1024 < size; c++) {
        let clear = 0;
        for (let i = c * 1024; i < Math.min(size, (c + 1) * 1024); i++) if (!r.bits[i]) clear++;
        expect(b.freeInChunk(c), `chunk ${c}`).toBe(clear);
      }
    }), { numRuns: 100 });
  });

  it('property: single free entries in full chunks are found from any start (the chunk and byte skips never step over one)', () => {
    fc.assert(fc.property(fc.integer({ min: 2, max: 6000 }), fc.array(fc.nat(), { maxLength: 12 }), fc.array(fc.nat(), { minLength: 1, maxLength: 20 }),
      (size, holes, starts) => {
        const b = new IommuBitmap(size);
        const r = new RefBitmap(size);
        b.set(0, size);
        r.fill(0, size, true);
        for (const h of holes) {
          b.clear(h % size, 1);
          r.fill(h % size, 1, false);
        }
        for (const st of starts) {
          const start = st % size;
          expect(b.areaAlloc(size, start, 1, 0, 1 << 20, 0)).toBe(r.areaAlloc(size, start, 1, 0, 1 << 20, 0));
        }
      }), { numRuns: 300 });
  });

  it('property: single set entries in clear chunks stop a long run (the clear-chunk skip never steps over one)', () => {
    fc.assert(fc.property(fc.integer({ min: 2, max: 6000 }), fc.array(fc.nat(), { maxLength: 12 }), fc.array(fc.record({ st: fc.nat(), nr: fc.integer({ min: 1, max: 4096 }) }), { minLength: 1, maxLength: 10 }),
      (size, pins, allocs) => {
        const b = new IommuBitmap(size);
        const r = new RefBitmap(size);
        for (const p of pins) {
          b.set(p % size, 1);
          r.fill(p % size, 1, true);
        }
        for (const { st, nr } of allocs) {
          const start = st % size;
          expect(b.areaAlloc(size, start, nr, 0, 4096, 0)).toBe(r.areaAlloc(size, start, nr, 0, 4096, 0));
        }
      }), { numRuns: 300 });
  });

  it('a run longer than the segment boundary: -1 without room, AREA_ALLOC_LOCKUP (the kernel spins) once a free run starts on a boundary', () => {
    const b = new IommuBitmap(64);
    expect(b.areaAlloc(64, 0, 10, 0, 8, 0)).toBe(AREA_ALLOC_LOCKUP); // index 0 is on a boundary
    b.set(0, 1);
    // from 1 the run spans the boundary at 8; the search moves to 8, which is on one: lockup
    expect(b.areaAlloc(64, 0, 10, 0, 8, 0)).toBe(AREA_ALLOC_LOCKUP);
    b.set(8, 55); // only 1..7 free below the limit 63: no room for 10
    expect(b.areaAlloc(64, 0, 10, 0, 8, 0)).toBe(-1);
    expect(b.setBits().length).toBe(56);
  });

  it('a full first pool does not hide the free entries after it (chunks skipped whole, the answer unchanged)', () => {
    const b = new IommuBitmap(8192);
    b.set(0, 5000);
    b.set(5001, 100);
    expect(b.areaAlloc(8192, 0, 1, 0, 1 << 20, 0)).toBe(5000);
    expect(b.areaAlloc(8192, 0, 2, 0, 1 << 20, 0)).toBe(5101);
    b.clear(1024, 1024);
    expect(b.freeInChunk(1)).toBe(1024);
    expect(b.areaAlloc(8192, 0, 1024, 0, 1 << 20, 1023)).toBe(1024);
    expect(b.freeInChunk(1)).toBe(0);
  });
});
