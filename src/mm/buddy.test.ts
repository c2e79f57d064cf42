// Tests for buddy.ts: the buddy allocator against a brute-force bitmap, and the aging model.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { BuddyAllocator, MAX_PAGE_ORDER, mix32, xorshift } from './buddy.ts';

/** Brute-force reference: a bitmap of owned pages over the managed ranges. */
function checkAgainstBitmap(ranges: Array<[number, number]>, aged: boolean,
  ops: Array<{ alloc: boolean; order: number; pick: number; limit?: number | null }>, maxOrder = MAX_PAGE_ORDER): void {
  const b = new BuddyAllocator(ranges, aged, 3, maxOrder);
  const total = ranges.reduce((s, [x, y]) => s + y - x, 0);
  const managed = (p: number): boolean => ranges.some(([x, y]) => p >= x && p < y);
  const owned = new Set<number>();
  const live: Array<[number, number]> = [];
  const initialFree = b.freePages;
  if (!aged) expect(initialFree).toBe(total);
  for (const op of ops) {
    if (op.alloc) {
      const limit = op.limit ?? Infinity;
      const pfn = b.alloc(op.order, limit);
      const size = 2 ** op.order;
      if (pfn < 0) {
        // a zone allocation fails only when no naturally aligned run of 2^order free pages lies
        // below the limit (the bitmap does not know the aging model's background pages)
        if (!aged && limit !== Infinity) {
          for (let s0 = 0; s0 + size <= limit; s0 += size) {
            let free = true;
            for (let p = s0; p < s0 + size && free; p++) free = managed(p) && !owned.has(p);
            expect(free).toBe(false);
          }
        }
        continue;
      }
      expect(pfn + size).toBeLessThanOrEqual(limit);
      expect(pfn % size).toBe(0); // naturally aligned
      for (let p = pfn; p < pfn + size; p++) {
        expect(managed(p)).toBe(true);
        expect(owned.has(p)).toBe(false); // no overlap
        owned.add(p);
      }
      live.push([pfn, op.order]);
    } else if (live.length > 0) {
      const [pfn, order] = live.splice(op.pick % live.length, 1)[0];
      for (let p = pfn; p < pfn + 2 ** order; p++) owned.delete(p);
      b.free(pfn, order);
    }
    // counts conserved: free + owned + background = initial free + background at boot
    expect(b.freePages + owned.size).toBe(initialFree);
  }
  for (const [pfn, order] of live) b.free(pfn, order);
  expect(b.freePages).toBe(initialFree);
  if (!aged) {
    // Everything merged back: no free list holds a block that could have merged with its buddy,
    // so every whole top-order block is untouched again and a top-order allocation succeeds for each.
    let n = 0;
    while (b.alloc(maxOrder) >= 0) n++;
    const bp = 2 ** maxOrder;
    const whole = ranges.reduce((s, [x, y]) => s + Math.max(0, Math.floor(y / bp) - Math.ceil(x / bp)), 0);
    expect(n).toBe(whole);
  }
}

const opArb = fc.array(fc.record({ alloc: fc.boolean(), order: fc.integer({ min: 0, max: 10 }), pick: fc.nat() }), { maxLength: 120 });
/** The same with zone limits (ends of top-order blocks, as ZONE_DMA's and ZONE_DMA32's are). */
const zoneOpArb = fc.array(fc.record({
  alloc: fc.boolean(), order: fc.integer({ min: 0, max: 10 }), pick: fc.nat(),
  limit: fc.option(fc.constantFrom(1024, 2048, 3072, 4096, 9216), { nil: null }),
}), { maxLength: 120 });

describe('BuddyAllocator against a brute-force bitmap', () => {
  it('plain: no overlap, conserved counts, frees merge back', () => {
    fc.assert(fc.property(opArb, (ops) => checkAgainstBitmap([[256, 4096 + 17], [8192, 12288]], false, ops)), { numRuns: 60 });
  });
  it('with a limit (a zone): blocks wholly below it, and -1 only when no free aligned run lies below it', () => {
    fc.assert(fc.property(zoneOpArb, (ops) => checkAgainstBitmap([[256, 4096 + 17], [8192, 12288]], false, ops)), { numRuns: 60 });
  });
  it('aged, with limits: the same bounds and conservation', () => {
    fc.assert(fc.property(zoneOpArb, (ops) => checkAgainstBitmap([[256, 8192]], true, ops)), { numRuns: 40 });
  });
  it('aged: the same invariants hold', () => {
    fc.assert(fc.property(opArb, (ops) => checkAgainstBitmap([[256, 8192]], true, ops)), { numRuns: 40 });
  });
  it('MAX_PAGE_ORDER 13 (arm64 at 64 KiB pages), plain and aged: the same invariants', () => {
    const ops13 = fc.array(fc.record({ alloc: fc.boolean(), order: fc.integer({ min: 0, max: 13 }), pick: fc.nat() }), { maxLength: 80 });
    fc.assert(fc.property(ops13, fc.boolean(), (ops, aged) => checkAgainstBitmap([[256, 3 * 8192 + 17], [4 * 8192, 6 * 8192]], aged, ops, 13)), { numRuns: 30 });
  });
  it('edge spans are split into naturally aligned blocks', () => {
    const b = new BuddyAllocator([[3, 1030]], false, 1);
    expect(b.freePages).toBe(1027);
    expect(b.alloc(MAX_PAGE_ORDER)).toBe(-1); // no whole aligned 1024-page block inside [3, 1030)
    expect(b.alloc(9)).toBe(512);
  });
  it('runs out with -1 and recovers after a free', () => {
    const b = new BuddyAllocator([[0, 1024]], false, 1);
    const all = b.alloc(10);
    expect(all).toBe(0);
    expect(b.alloc(0)).toBe(-1);
    b.free(all, 10);
    expect(b.alloc(0)).toBe(0);
  });
});

describe('aging model', () => {
  it('is deterministic per seed and differs across seeds', () => {
    const seq = (seed: number): number[] => {
      const b = new BuddyAllocator([[0, 1024 * 64]], true, seed);
      return Array.from({ length: 200 }, () => b.alloc(0));
    };
    expect(seq(5)).toEqual(seq(5));
    expect(seq(5)).not.toEqual(seq(6));
  });
  it('scatters order-0 allocations while keeping some whole 2 MiB blocks', () => {
    const b = new BuddyAllocator([[0, 1024 * 256]], true, 11);
    const plain = new BuddyAllocator([[0, 1024 * 256]], false, 11);
    const pfns = Array.from({ length: 20000 }, () => b.alloc(0));
    const adjacent = pfns.filter((p, i) => i > 0 && p === pfns[i - 1] + 1).length;
    expect(adjacent / pfns.length).toBeLessThan(0.35);
    const plainPfns = Array.from({ length: 20000 }, () => plain.alloc(0));
    expect(plainPfns.filter((p, i) => i > 0 && p === plainPfns[i - 1] + 1).length / plainPfns.length).toBeGreaterThan(0.99);
    let thp = 0;
    while (b.alloc(9) >= 0) thp++;
    expect(thp).toBeGreaterThan(10);
    expect(b.backgroundPages).toBeGreaterThan(0);
  });
  it('a boot reservation takes whole untouched blocks, fragmented ones included, and counts their background pages free', () => {
    for (const maxOrder of [10, 11, 13]) {
      const bp = 2 ** maxOrder;
      const b = new BuddyAllocator([[0, bp * 8]], true, 7, maxOrder);
      const before = b.freePages;
      const blocks: number[] = [];
      for (let pfn = b.allocBootBlock(); pfn >= 0; pfn = b.allocBootBlock()) blocks.push(pfn);
      // every block, lowest first, whatever the dice said about it
      expect(blocks).toEqual(Array.from({ length: 8 }, (_, i) => i * bp));
      expect(b.freePages).toBe(0);
      expect(before).toBeLessThan(8 * bp); // the dice had given some blocks background owners
      expect(b.alloc(0)).toBe(-1);
      // freed, a block is a clean top-order block again
      b.free(blocks[3], maxOrder);
      expect(b.freePages).toBe(bp);
      expect(b.allocBootBlock()).toBe(blocks[3]); // the scan goes back to a block freed below it
      b.free(blocks[3], maxOrder);
      expect(b.alloc(maxOrder)).toBe(blocks[3]);
      expect(() => b.alloc(maxOrder + 1)).toThrow(new RegExp(`order must be an integer in \\[0, ${maxOrder}\\], got ${maxOrder + 1}`));
      expect(() => b.free(0, maxOrder + 1)).toThrow(/order must be/);
    }
    expect(() => new BuddyAllocator([[0, 1024]], false, 1, 14)).toThrow(/maxOrder must be an integer in \[1, 13\], got 14/);
  });
  it('frees exactly the pages a whole Fisher-Yates shuffle of each fragmented block leaves past its background pages', () => {
    // Reference: the aging model as its doc comment states it, with the whole shuffle of every block
    // (the allocator stops the shuffle once the free pages' places are final).
    const bp = 2 ** MAX_PAGE_ORDER;
    const blocks = 12;
    for (const seed of [1, 7, 1234]) {
      const want = new Set<number>();
      for (let b = 0; b < blocks; b++) {
        const h = mix32(seed, b, 1);
        if ((h & 0xffff) >= 0.85 * 65536) {
          for (let i = 0; i < bp; i++) want.add(b * bp + i);
          continue;
        }
        const bg = Math.max(1, Math.min(bp - 1, Math.floor(bp * (0.5 + 0.375 * ((h >>> 16) / 65536)))));
        const rnd = xorshift(mix32(seed, b, 2));
        const perm = Array.from({ length: bp }, (_, i) => i);
        for (let i = bp - 1; i > 0; i--) {
          const j = Math.floor(rnd() * (i + 1));
          [perm[i], perm[j]] = [perm[j], perm[i]];
        }
        for (let i = bg; i < bp; i++) want.add(b * bp + perm[i]);
      }
      const a = new BuddyAllocator([[0, blocks * bp]], true, seed);
      const got = new Set<number>();
      for (let pfn = a.alloc(0); pfn >= 0; pfn = a.alloc(0)) got.add(pfn);
      expect(got.size).toBe(want.size);
      expect([...got].filter((p) => !want.has(p))).toEqual([]);
    }
  });
  it('counts its boot free pages exactly: every one of them can be allocated, and they and the background pages fill RAM', () => {
    // two RAM ranges with partial edges, so that whole and edge blocks both count
    const ranges: Array<[number, number]> = [[300, 1024 * 20 + 7], [1024 * 24, 1024 * 57 + 512]];
    for (const seed of [1, 2, 99]) {
      const b = new BuddyAllocator(ranges, true, seed);
      const bootFree = b.freePages;
      let got = 0;
      while (b.alloc(0) >= 0) got++;
      expect(got).toBe(bootFree);
      expect(b.freePages).toBe(0);
      expect(got + b.backgroundPages).toBe(ranges.reduce((s, [x, y]) => s + y - x, 0));
    }
  });
});
