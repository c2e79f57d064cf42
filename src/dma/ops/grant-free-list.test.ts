// The grant reference allocator of drivers/xen/grant-table.c as the model keeps it (GrantFreeList):
// which ref the kernel's get_free_entries / get_free_entries_seq / get_free_seq hand out, and a
// property test of its invariants against a brute-force view of the table.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { GrantFreeList } from './xen-grant.ts';

const RESERVED = 8; // GNTTAB_NR_RESERVED_ENTRIES

describe('GrantFreeList: the refs grant-table.c hands out', () => {
  it('a fresh table hands out refs in order from GNTTAB_NR_RESERVED_ENTRIES, runs and single refs alike', () => {
    const l = new GrantFreeList(64, RESERVED);
    expect(l.allocSeq(3)).toBe(8);
    expect(l.allocSeq(2)).toBe(11);
    expect(l.allocSeq(1)).toBe(13);
    expect(l.freeCount).toBe(64 - 8 - 6);
  });

  it('after a run is freed in the middle, a run comes from the free tail (get_free_entries_seq), a single ref from the head of the list: the last one freed', () => {
    const l = new GrantFreeList(64, RESERVED);
    expect(l.allocSeq(3)).toBe(8);
    expect(l.allocSeq(3)).toBe(11);
    l.freeSeq(8, 3, RESERVED); // put back 10, 9, 8: 8 heads the list
    // first-fit would give 8: the kernel takes the run from the tail, which starts at 14
    expect(l.allocSeq(2)).toBe(14);
    expect(l.allocSeq(1)).toBe(8);
    expect(l.allocSeq(1)).toBe(9);
  });

  it('when the tail is too short, get_free_seq takes the lowest free run that fits and rebuilds the list in ref order', () => {
    const l = new GrantFreeList(32, RESERVED);
    expect(l.allocSeq(4)).toBe(8); // 8..11
    expect(l.allocSeq(4)).toBe(12); // 12..15
    expect(l.allocSeq(14)).toBe(16); // 16..29: the tail is 30, 31
    l.freeSeq(12, 4, RESERVED);
    expect(l.allocSeq(3)).toBe(12); // the tail (2 refs) is too short: the lowest run of 3
    // the list is rebuilt in ref order: 15, then the tail's 30, 31
    expect(l.listed()).toEqual([15, 30, 31]);
    expect(l.allocSeq(1)).toBe(15);
    expect(l.allocSeq(3)).toBe(-1); // 2 free refs: the kernel would expand the table (the model's fixed table: ENOSPC)
  });

  it('reserved refs are never freed (put_free_entry_locked)', () => {
    const l = new GrantFreeList(16, RESERVED);
    l.freeSeq(0, 8, RESERVED);
    expect(l.freeCount).toBe(8);
    expect(l.listed()).not.toContain(0);
  });

  it('property: random runs allocated and freed: refs handed out were free and never reserved, the list holds exactly the free refs, and an allocation fails only when no run fits', () => {
    fc.assert(fc.property(fc.integer({ min: 9, max: 300 }),
      fc.array(fc.oneof(fc.record({ alloc: fc.integer({ min: 1, max: 24 }) }), fc.record({ free: fc.nat() })), { maxLength: 120 }),
      (size, ops) => {
        const l = new GrantFreeList(size, RESERVED);
        const live: Array<[number, number]> = [];
        for (const op of ops) {
          if ('alloc' in op) {
            const n = op.alloc;
            const before = Uint8Array.from(l.bitmap);
            const r = l.allocSeq(n);
            if (r < 0) {
              // no n consecutive free refs (a single ref fails only when none is free)
              let run = 0, best = 0;
              for (const b of before) { run = b ? run + 1 : 0; best = Math.max(best, run); }
              expect(best, `failed to allocate ${n} with a run of ${best}`).toBeLessThan(n);
              continue;
            }
            expect(r).toBeGreaterThanOrEqual(RESERVED);
            for (let i = r; i < r + n; i++) expect(before[i], `ref ${i} was not free`).toBe(1);
            live.push([r, n]);
          } else {
            if (live.length === 0) continue;
            const [r, n] = live.splice(op.free % live.length, 1)[0];
            l.freeSeq(r, n, RESERVED);
          }
          const listed = l.listed();
          expect(new Set(listed).size).toBe(listed.length);
          const free: number[] = [];
          l.bitmap.forEach((b, i) => { if (b) free.push(i); });
          expect([...listed].sort((a, b) => a - b)).toEqual(free);
          expect(l.freeCount).toBe(free.length);
        }
      }), { numRuns: 200 });
  });
});
