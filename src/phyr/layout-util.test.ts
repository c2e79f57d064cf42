import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  alreadyBuilt, checkFlagsArg, checkIndex, checkInitialCapacity, checkOptionalFlagsU32, grown,
} from './layout-util.ts';

describe('grown', () => {
  it('keeps the type and the entries, zero-fills the new tail (every column type)', () => {
    fc.assert(fc.property(fc.array(fc.nat(255), { maxLength: 40 }), fc.nat(40), (vals, extra) => {
      const cap = vals.length + extra;
      const cols = [Float64Array.from(vals), Uint32Array.from(vals), Uint8Array.from(vals)];
      for (const col of cols) {
        const g = grown(col, cap);
        expect(g.constructor).toBe(col.constructor);
        expect(g).not.toBe(col);
        // Brute force: entry by entry against the source and the zero tail.
        expect(g.length).toBe(cap);
        for (let i = 0; i < cap; i++) expect(g[i]).toBe(i < vals.length ? vals[i] : 0);
      }
      const big = grown(BigUint64Array.from(vals, BigInt), cap);
      expect(big).toBeInstanceOf(BigUint64Array);
      expect([...big]).toEqual([...vals.map(BigInt), ...Array<bigint>(extra).fill(0n)]);
    }));
  });

  it('does not alias the source: writes to the copy leave it unchanged', () => {
    const src = Float64Array.from([1, 2, 3]);
    const g = grown(src, 6);
    g[0] = 99;
    expect([...src]).toEqual([1, 2, 3]);
  });
});

describe('shared checks', () => {
  it('checkIndex accepts exactly the integers in [0, count - 1] and names i and the value', () => {
    fc.assert(fc.property(fc.integer({ min: -3, max: 12 }), fc.nat(10), (i, count) => {
      const ok = i >= 0 && i < count;
      if (ok) expect(() => checkIndex(i, count)).not.toThrow();
      else expect(() => checkIndex(i, count)).toThrow(new RangeError(`i must be an integer in [0, ${count - 1}], got ${i}`));
    }));
    expect(() => checkIndex(0.5, 3)).toThrow(/got 0\.5/);
  });

  it('checkFlagsArg: TypeError for a non-number, RangeError for a non-u32, the value otherwise', () => {
    expect(checkFlagsArg('f', 0xffff_ffff)).toBe(0xffff_ffff);
    expect(() => checkFlagsArg('f', '1')).toThrow(TypeError);
    expect(() => checkFlagsArg('f', -1)).toThrow(new RangeError('f must be a u32, got -1'));
    expect(() => checkFlagsArg('f', 2 ** 32)).toThrow(RangeError);
  });

  it('checkOptionalFlagsU32: nullish is 0, a non-u32 (number or not) is a RangeError', () => {
    expect(checkOptionalFlagsU32('f', undefined)).toBe(0);
    expect(checkOptionalFlagsU32('f', null)).toBe(0);
    expect(checkOptionalFlagsU32('f', 7)).toBe(7);
    expect(() => checkOptionalFlagsU32('f', '7')).toThrow(new RangeError('f must be a u32, got 7'));
    expect(() => checkOptionalFlagsU32('f', 1.5)).toThrow(RangeError);
  });

  it('checkInitialCapacity raises 0 to 1 and rejects negatives', () => {
    expect(checkInitialCapacity(0)).toBe(1);
    expect(checkInitialCapacity(5)).toBe(5);
    expect(() => checkInitialCapacity(-1)).toThrow(/initialCapacity/);
    expect(alreadyBuilt()).toBeInstanceOf(TypeError);
  });
});
