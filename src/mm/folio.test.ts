import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FolioKind, FolioTable } from './folio.ts';

describe('FolioTable', () => {
  it('property: reserve() in the middle of creates and removes changes no lookup (checked against a Map)', () => {
    const op = fc.oneof(
      fc.record({ t: fc.constant('create' as const), pfn: fc.integer({ min: 0, max: 4000 }) }),
      fc.record({ t: fc.constant('remove' as const), k: fc.nat() }),
      fc.record({ t: fc.constant('reserve' as const), n: fc.integer({ min: 0, max: 3000 }) }),
    );
    fc.assert(fc.property(fc.array(op, { maxLength: 300 }), (ops) => {
      const t = new FolioTable();
      const ref = new Map<number, number>(); // head pfn -> record index
      for (const o of ops) {
        if (o.t === 'create') {
          const pfn = o.pfn * 7;
          if (ref.has(pfn)) continue;
          ref.set(pfn, t.create(pfn, 0, FolioKind.Buddy, 1));
        } else if (o.t === 'remove') {
          if (ref.size === 0) continue;
          const pfn = [...ref.keys()][o.k % ref.size];
          t.remove(ref.get(pfn)!);
          ref.delete(pfn);
        } else {
          t.reserve(o.n);
        }
      }
      expect(t.count).toBe(ref.size);
      for (const [pfn, idx] of ref) expect(t.byHeadPfn(pfn)).toBe(idx);
      for (let p = 0; p < 4000 * 7; p += 997) if (!ref.has(p)) expect(t.byHeadPfn(p)).toBe(-1);
    }), { numRuns: 200 });
  });

  it('property: find() by any frame and byHeadPfn() agree with a reference for order-0, 2 MiB and 1 GiB folios side by side', () => {
    const op = fc.oneof(
      fc.record({
        t: fc.constant('create' as const), region: fc.integer({ min: 0, max: 40 }),
        order: fc.constantFrom(0, 9, 18), at: fc.integer({ min: 0, max: 511 }),
      }),
      fc.record({ t: fc.constant('remove' as const), k: fc.nat() }),
    );
    fc.assert(fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
      const t = new FolioTable();
      const live: Array<{ head: number; end: number; idx: number }> = [];
      for (const o of ops) {
        if (o.t === 'create') {
          const size = 2 ** o.order;
          // a 1 GiB folio fills its region; 2 MiB folios and base pages sit at slot `at`
          const head = o.region * 2 ** 18 + (o.order === 18 ? 0 : o.order === 9 ? o.at * 512 : o.at * 37);
          if (live.some((f) => head < f.end && f.head < head + size)) continue;
          live.push({ head, end: head + size, idx: t.create(head, o.order, FolioKind.Buddy, 1) });
        } else if (live.length > 0) {
          const [f] = live.splice(o.k % live.length, 1);
          t.remove(f.idx);
          expect(t.find(f.head)).toBe(-1);
          expect(t.byHeadPfn(f.head)).toBe(-1);
        }
      }
      expect(t.count).toBe(live.length);
      for (const f of live) {
        expect(t.byHeadPfn(f.head)).toBe(f.idx);
        for (const p of [f.head, f.end - 1, (f.head + f.end) >> 1]) expect(t.find(p)).toBe(f.idx);
        if (f.end - f.head > 1) expect(t.byHeadPfn(f.head + 1)).toBe(-1);
      }
    }), { numRuns: 200 });
  });
});
