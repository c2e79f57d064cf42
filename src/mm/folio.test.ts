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
});
