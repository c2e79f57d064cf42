// Every function of frame-offset.ts against plain bigint arithmetic, over the full 64-bit range
// (edges 0, 2^53 +- 1, 2^63, 2^64 - 1, 2^64 and values near every power of two) and every shift.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  alignUpLen, checkShift, FramePos, lowBits, Mask64, maskLg2, nrFramesUp, POS_SHIFT_MAX, POS_SHIFT_MIN,
  posAdd, posAlignDown, posAlignUp, posAndMask, posCmp, posDiff, posFitsNum, posFromBig, posFromNum, posFromU64,
  posFromWords, posHi32, posIsAligned, posLenToBoundary, posLo32, posOffsetIn, posRescale, posSubLen,
  posTestMask, posToBig, posToBoundary, posToNum,
} from './internal.ts';

const U64_END = 1n << 64n;
const U64_MAX = U64_END - 1n;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const MAX_SAFE_BIG = BigInt(MAX_SAFE);
const TWO_53 = 2n ** 53n;
const RUNS = { numRuns: 2000 };

/** The largest position frames of 2^shift bytes hold: 2^64, or 2^(53+shift) - 1 below shift 11. */
function limit(shift: number): bigint {
  return shift >= 11 ? U64_END : (1n << BigInt(53 + shift)) - 1n;
}

const EDGES = [0n, 1n, 4095n, 4096n, 4097n, TWO_53 - 1n, TWO_53, TWO_53 + 1n, 1n << 62n, (1n << 63n) - 1n,
  1n << 63n, (1n << 63n) + 1n, U64_MAX - 4096n, U64_MAX - 1n, U64_MAX, U64_END];

/** A value in [0, 2^64]: uniform, an edge, or near a power of two. */
const anyU64 = fc.oneof(
  fc.bigInt({ min: 0n, max: U64_END }),
  fc.constantFrom(...EDGES),
  fc.tuple(fc.integer({ min: 0, max: 64 }), fc.bigInt({ min: -4097n, max: 4097n })).map(([k, d]) => {
    const v = (1n << BigInt(k)) + d;
    return v < 0n ? 0n : v > U64_END ? U64_END : v;
  }),
  fc.tuple(fc.integer({ min: 0, max: 64 }), fc.bigInt({ min: 0n, max: U64_END })).map(([k, v]) => v & ((1n << BigInt(k)) - 1n)),
);

const shiftArb = fc.oneof(fc.constantFrom(9, 10, 11, 12, 21, 30), fc.integer({ min: POS_SHIFT_MIN, max: POS_SHIFT_MAX }));

/** (shift, x) with x a position that shift can hold, its limit included. */
const posArb = fc.tuple(shiftArb, anyU64, fc.integer({ min: 0, max: 9 })).map(([s, x, pick]): [number, bigint] => {
  const lim = limit(s);
  if (pick === 0) return [s, lim];
  return [s, x > lim ? x % (lim + 1n) : x];
});

/** A length: a safe integer >= 0, often small or at the edges. */
const lenArb = fc.oneof(
  fc.integer({ min: 0, max: 1 << 20 }),
  fc.maxSafeNat(),
  fc.constantFrom(0, 1, 511, 512, 4095, 4096, 4097, 2 ** 30, 2 ** 32, MAX_SAFE - 1, MAX_SAFE),
  fc.integer({ min: 0, max: 53 }).map((k) => 2 ** k - 1),
);

const lg2Arb = fc.oneof(fc.integer({ min: 0, max: 64 }), fc.constantFrom(0, 9, 12, 21, 30, 32, 52, 53, 54, 63, 64));

function split(x: bigint, s: number): [number, number] {
  return [Number(x >> BigInt(s)), Number(x & ((1n << BigInt(s)) - 1n))];
}

function join(p: FramePos, s: number): bigint {
  return (BigInt(p.frame) << BigInt(s)) + BigInt(p.off);
}

function load(x: bigint, s: number): FramePos {
  const p = new FramePos();
  posFromBig(x, s, p);
  return p;
}

describe('frame-offset: conversions', () => {
  it('posFromBig splits like x >> shift, x & (2^shift - 1) and posToBig joins back, for every held position', () => {
    fc.assert(fc.property(posArb, ([s, x]) => {
      const p = load(x, s);
      expect([p.frame, p.off]).toEqual(split(x, s));
      expect(Number.isSafeInteger(p.frame) || p.frame === 2 ** 53).toBe(true);
      expect(posToBig(p.frame, p.off, s)).toBe(x);
    }), RUNS);
  });

  it('posFromU64 (no checks: an address below 2^64, shift 11 to 30) splits as x >> shift, x & (2^shift - 1)', () => {
    fc.assert(fc.property(fc.integer({ min: 11, max: 30 }), anyU64, fc.constantFrom(0n, 1n, U64_MAX), fc.boolean(), (s, x, edge, useEdge) => {
      const a = useEdge ? edge : x & U64_MAX; // below 2^64, as the caller checked
      const p = new FramePos();
      posFromU64(a, s, p);
      expect([p.frame, p.off]).toEqual(split(a, s));
    }), RUNS);
  });

  it('posFromBig rejects what the shift cannot hold: below 0, above 2^64, above 2^(53+shift) - 1 for shift 9 and 10', () => {
    const p = new FramePos();
    expect(() => posFromBig(-1n, 12, p)).toThrow(/addr must be in \[0, 2\^64\], got -1/);
    expect(() => posFromBig(U64_END + 1n, 12, p, 'phys')).toThrow(/phys must be in \[0, 2\^64\], got 0x10000000000000001/);
    expect(() => posFromBig(4096 as unknown as bigint, 12, p)).toThrow(TypeError);
    expect(() => posFromBig(1n << 62n, 9, p)).toThrow(RangeError);
    expect(() => posFromBig(1n << 63n, 10, p)).toThrow(RangeError);
    expect(() => posFromBig(U64_END, 10, p)).toThrow(RangeError);
    posFromBig((1n << 62n) - 1n, 9, p);
    expect([p.frame, p.off]).toEqual([MAX_SAFE, 511]);
    posFromBig(U64_END, 11, p);
    expect([p.frame, p.off]).toEqual([2 ** 53, 0]);
    posFromBig(U64_END, 12, p);
    expect([p.frame, p.off]).toEqual([2 ** 52, 0]);
    fc.assert(fc.property(shiftArb, anyU64, (s, x) => {
      if (x <= limit(s)) return;
      expect(() => posFromBig(x, s, new FramePos())).toThrow(RangeError);
    }), RUNS);
  });

  it('posFromNum / posFitsNum / posToNum agree with bigint below 2^53 and refuse what is not exact', () => {
    fc.assert(fc.property(shiftArb, fc.maxSafeNat(), (s, x) => {
      const p = new FramePos();
      posFromNum(x, s, p);
      expect([p.frame, p.off]).toEqual(split(BigInt(x), s));
      expect(posFitsNum(p.frame, p.off, s)).toBe(true);
      expect(posToNum(p.frame, p.off, s)).toBe(x);
    }), RUNS);
    fc.assert(fc.property(posArb, ([s, x]) => {
      const p = load(x, s);
      expect(posFitsNum(p.frame, p.off, s)).toBe(x <= MAX_SAFE_BIG);
      if (x > MAX_SAFE_BIG) expect(() => posToNum(p.frame, p.off, s)).toThrow(/does not fit a safe integer/);
      else expect(posToNum(p.frame, p.off, s)).toBe(Number(x));
    }), RUNS);
    const p = new FramePos();
    for (const bad of [-1, 2 ** 53, 0.5, NaN, Infinity]) expect(() => posFromNum(bad, 12, p)).toThrow(RangeError);
  });

  it('posHi32 / posLo32 are upper_32_bits / lower_32_bits, posFromWords their inverse', () => {
    fc.assert(fc.property(posArb, ([s, x]) => {
      const p = load(x, s);
      const w = x & U64_MAX; // a u64 variable holding 2^64 reads 0
      const hi = Number(w >> 32n), lo = Number(w & 0xffffffffn);
      expect(posHi32(p.frame, s)).toBe(hi);
      expect(posLo32(p.frame, p.off, s)).toBe(lo);
      if (x === U64_END) return;
      const q = new FramePos();
      posFromWords(hi, lo, s, q);
      expect(join(q, s)).toBe(x);
    }), RUNS);
    expect(() => posFromWords(2 ** 32, 0, 12, new FramePos())).toThrow(RangeError);
    expect(() => posFromWords(0x40000000, 0, 9, new FramePos())).toThrow(/beyond 2\^62 - 1/);
  });

  it('posRescale gives the same position in frames of another size', () => {
    fc.assert(fc.property(posArb, shiftArb, ([s, x], t) => {
      const p = load(x, s);
      const q = new FramePos();
      if (x > limit(t)) {
        expect(() => posRescale(p.frame, p.off, s, t, q)).toThrow(RangeError);
        return;
      }
      posRescale(p.frame, p.off, s, t, q);
      expect([q.frame, q.off]).toEqual(split(x, t));
    }), RUNS);
  });
});

describe('frame-offset: arithmetic', () => {
  it('posAdd is x + len, and throws (check_add_overflow) exactly when the sum is past the limit', () => {
    fc.assert(fc.property(posArb, lenArb, ([s, x], len) => {
      const p = load(x, s);
      const want = x + BigInt(len);
      if (want > limit(s)) {
        expect(() => posAdd(p.frame, p.off, s, len, p)).toThrow(/is past/);
        return;
      }
      posAdd(p.frame, p.off, s, len, p);
      expect(join(p, s)).toBe(want);
      expect(p.off < 2 ** s).toBe(true);
    }), RUNS);
  });

  it('posAdd: 2^64 - 4096 + 4096 is the end 2^64; one byte more overflows (not a wrap to 0)', () => {
    const p = load(U64_END - 4096n, 12);
    posAdd(p.frame, p.off, 12, 4096, p);
    expect(posToBig(p.frame, p.off, 12)).toBe(U64_END);
    const q = load(U64_END - 4096n, 12);
    expect(() => posAdd(q.frame, q.off, 12, 4097, q)).toThrow(RangeError);
    // shift 11: the end frame is 2^53, one past the safe integers: the check must not round
    const r = load(U64_END - 2048n, 11);
    expect(() => posAdd(r.frame, r.off, 11, 2049, r)).toThrow(RangeError);
    posAdd(r.frame, r.off, 11, 2048, r);
    expect([r.frame, r.off]).toEqual([2 ** 53, 0]);
  });

  it('posSubLen is x - len, and throws exactly when it would go below 0', () => {
    fc.assert(fc.property(posArb, lenArb, ([s, x], len) => {
      const p = load(x, s);
      const want = x - BigInt(len);
      if (want < 0n) {
        expect(() => posSubLen(p.frame, p.off, s, len, p)).toThrow(/below 0/);
        return;
      }
      posSubLen(p.frame, p.off, s, len, p);
      expect(join(p, s)).toBe(want);
    }), RUNS);
  });

  it('posDiff is end - start as a length, and throws when negative or not a safe integer', () => {
    const nearPair = fc.tuple(posArb, fc.bigInt({ min: -(1n << 54n), max: 1n << 54n }), lenArb.map(BigInt))
      .map(([[s, x], d, l]): [number, bigint, bigint] => {
        const lim = limit(s);
        const y = x + (d % 2n === 0n ? d : l);
        return [s, x, y < 0n ? 0n : y > lim ? lim : y];
      });
    fc.assert(fc.property(fc.oneof(nearPair, fc.tuple(posArb, anyU64).map(([[s, x], y]): [number, bigint, bigint] => [s, x, y % (limit(s) + 1n)])),
      ([s, start, end]) => {
        const a = load(end, s), b = load(start, s);
        const want = end - start;
        if (want < 0n || want > MAX_SAFE_BIG) {
          expect(() => posDiff(a.frame, a.off, b.frame, b.off, s)).toThrow(RangeError);
          return;
        }
        expect(posDiff(a.frame, a.off, b.frame, b.off, s)).toBe(Number(want));
      }), RUNS);
    const e = load(U64_END, 12), st = load(U64_END - (MAX_SAFE_BIG + 1n), 12);
    expect(() => posDiff(e.frame, e.off, st.frame, st.off, 12)).toThrow(/not a safe integer/);
    st.off += 1; // one byte closer: exactly 2^53 - 1
    expect(posDiff(e.frame, e.off, st.frame, st.off, 12)).toBe(MAX_SAFE);
  });

  it('posCmp orders like bigint', () => {
    fc.assert(fc.property(shiftArb, anyU64, anyU64, (s, x0, y0) => {
      const x = x0 % (limit(s) + 1n), y = y0 % (limit(s) + 1n);
      const a = load(x, s), b = load(y, s);
      expect(posCmp(a.frame, a.off, b.frame, b.off)).toBe(x < y ? -1 : x > y ? 1 : 0);
      expect(posCmp(a.frame, a.off, a.frame, a.off)).toBe(0);
    }), RUNS);
  });
});

describe('frame-offset: alignment (ALIGN, ALIGN_DOWN, IS_ALIGNED, iova_offset)', () => {
  it('posAlignDown is x & ~(2^lg2 - 1)', () => {
    fc.assert(fc.property(posArb, lg2Arb, ([s, x], lg2) => {
      const p = load(x, s);
      posAlignDown(p.frame, p.off, s, lg2, p);
      expect(join(p, s)).toBe(x - (x % (1n << BigInt(lg2))));
    }), RUNS);
  });

  it('posAlignUp is (x + 2^lg2 - 1) & ~(2^lg2 - 1), throwing only past the limit', () => {
    fc.assert(fc.property(posArb, lg2Arb, ([s, x], lg2) => {
      const a = 1n << BigInt(lg2);
      const want = ((x + a - 1n) / a) * a;
      const p = load(x, s);
      if (want > limit(s)) {
        expect(() => posAlignUp(p.frame, p.off, s, lg2, p)).toThrow(RangeError);
        return;
      }
      posAlignUp(p.frame, p.off, s, lg2, p);
      expect(join(p, s)).toBe(want);
    }), RUNS);
    // ALIGN(1, 2^64) is the end 2^64, not the kernel's wrap to 0
    const p = load(1n, 12);
    posAlignUp(p.frame, p.off, 12, 64, p);
    expect(posToBig(p.frame, p.off, 12)).toBe(U64_END);
  });

  it('posIsAligned is (x & (2^lg2 - 1)) == 0; posOffsetIn is x & (2^lg2 - 1) for lg2 <= 53', () => {
    fc.assert(fc.property(posArb, lg2Arb, ([s, x], lg2) => {
      const p = load(x, s);
      const low = x & ((1n << BigInt(lg2)) - 1n);
      expect(posIsAligned(p.frame, p.off, s, lg2)).toBe(low === 0n);
      if (lg2 <= 53) expect(posOffsetIn(p.frame, p.off, s, lg2)).toBe(Number(low));
      else expect(() => posOffsetIn(p.frame, p.off, s, lg2)).toThrow(/lg2 must be an integer in \[0, 53\]/);
    }), RUNS);
  });

  it('kernel examples: ALIGN(0x1001, 0x1000) = 0x2000, ALIGN_DOWN(0x1fff, 0x1000) = 0x1000, iova_offset(0x12345, 4 KiB) = 0x345', () => {
    const p = load(0x1001n, 12);
    posAlignUp(p.frame, p.off, 12, 12, p);
    expect(posToBig(p.frame, p.off, 12)).toBe(0x2000n);
    const q = load(0x1fffn, 12);
    posAlignDown(q.frame, q.off, 12, 12, q);
    expect(posToBig(q.frame, q.off, 12)).toBe(0x1000n);
    const r = load(0x12345n, 12);
    expect(posOffsetIn(r.frame, r.off, 12, 12)).toBe(0x345);
    // a 512-byte granule on a 4 KiB-frame position, and the same on 512-byte frames
    expect(posOffsetIn(r.frame, r.off, 12, 9)).toBe(0x145);
    const g = load(0x12345n, 9);
    expect(posOffsetIn(g.frame, g.off, 9, 9)).toBe(0x145);
  });
});

describe('frame-offset: boundaries and masks', () => {
  it('posToBoundary is mask - (x & mask) + 1 (get_max_segment_size), capped at 2^53; posLenToBoundary the part of len before it', () => {
    fc.assert(fc.property(posArb, lg2Arb, lenArb, ([s, x], lg2, len) => {
      const p = load(x, s);
      const mask = (1n << BigInt(lg2)) - 1n;
      const d = mask - (x & mask) + 1n;
      const want = d > TWO_53 ? TWO_53 : d;
      expect(posToBoundary(p.frame, p.off, s, lg2)).toBe(Number(want));
      expect(posLenToBoundary(p.frame, p.off, s, lg2, len)).toBe(Number(BigInt(len) < d ? BigInt(len) : d));
    }), RUNS);
  });

  it('posToBoundary: a 4 GiB boundary 4 KiB before it leaves 4 KiB; mask 0xffffffffffffffff at 0 leaves more than any length', () => {
    const p = load(0xfffff000n, 12);
    expect(posToBoundary(p.frame, p.off, 12, maskLg2(0xffffffffn))).toBe(4096);
    const z = load(0n, 12);
    expect(posLenToBoundary(z.frame, z.off, 12, maskLg2(U64_MAX), MAX_SAFE)).toBe(MAX_SAFE);
    const top = load(U64_MAX - 4095n, 12);
    expect(posToBoundary(top.frame, top.off, 12, 64)).toBe(4096);
  });

  it('maskLg2 takes 2^k - 1 for k in [0, 64] and names a bad mask', () => {
    for (let k = 0; k <= 64; k++) expect(maskLg2((1n << BigInt(k)) - 1n)).toBe(k);
    expect(() => maskLg2(5n, 'segBoundaryMask')).toThrow(/segBoundaryMask must be 2\^k - 1 for k in \[0, 64\], got 0x5/);
    expect(() => maskLg2(U64_END)).toThrow(RangeError);
    expect(() => maskLg2(-1n)).toThrow(RangeError);
    expect(() => maskLg2(4095 as unknown as bigint)).toThrow(TypeError);
  });

  it('posAndMask is x & mask and posTestMask (x & mask) != 0, for any 64-bit mask', () => {
    const maskArb = fc.oneof(fc.bigInt({ min: 0n, max: U64_MAX }), fc.constantFrom(0n, 0xfffn, 0xffffffffn, U64_MAX, 1n << 63n, U64_MAX ^ 0xfffn),
      fc.integer({ min: 0, max: 64 }).map((k) => (1n << BigInt(k)) - 1n));
    fc.assert(fc.property(posArb, maskArb, ([s, x], mask) => {
      const m = new Mask64(mask);
      expect((BigInt(m.hi) << 32n) | BigInt(m.lo)).toBe(mask);
      const p = load(x, s);
      const want = x & mask; // 2^64 & mask is 0 (bit 64 is outside every mask)
      expect(posTestMask(p.frame, p.off, s, m.hi, m.lo)).toBe(want !== 0n);
      posAndMask(p.frame, p.off, s, m.hi, m.lo, p);
      expect(join(p, s)).toBe(want);
    }), RUNS);
    expect(() => new Mask64(U64_END, 'dmaMask')).toThrow(/dmaMask must be in \[0, 2\^64\)/);
    expect(() => new Mask64(1 as unknown as bigint)).toThrow(TypeError);
  });
});

describe('frame-offset: lengths and frame counts', () => {
  it('lowBits is x & (2^lg2 - 1), nrFramesUp is PFN_UP / DIV_ROUND_UP, alignUpLen is ALIGN on a length', () => {
    fc.assert(fc.property(lenArb, fc.integer({ min: 0, max: 53 }), shiftArb, (x, lg2, s) => {
      const b = BigInt(x), a = 1n << BigInt(lg2);
      expect(lowBits(x, lg2)).toBe(Number(b % a));
      const g = 1n << BigInt(s);
      expect(nrFramesUp(x, s)).toBe(Number((b + g - 1n) / g));
      const up = ((b + a - 1n) / a) * a;
      if (up > MAX_SAFE_BIG) expect(() => alignUpLen(x, lg2)).toThrow(/exceeds 2\^53 - 1/);
      else expect(alignUpLen(x, lg2)).toBe(Number(up));
    }), RUNS);
  });
});

describe('frame-offset: argument checks name the argument and the value', () => {
  it('shift outside [9, 30], lg2 outside its range, bad lengths', () => {
    const p = new FramePos();
    expect(checkShift('granuleShift', 12)).toBe(12);
    // (a numeric string too: the hot functions test the shift by a table look-up, which '12' indexes)
    for (const bad of [8, 31, 12.5, -1, NaN, Infinity, '12' as unknown as number]) {
      expect(() => checkShift('granuleShift', bad)).toThrow(/granuleShift must be an integer in \[9, 30\]/);
      expect(() => posFromBig(0n, bad, p)).toThrow(/shift must be an integer in \[9, 30\]/);
      expect(() => posToBig(0, 0, bad)).toThrow(RangeError);
      expect(() => posAdd(0, 0, bad, 1, p)).toThrow(RangeError);
      expect(() => posAdd(0, 0, bad, 2 ** 52, p)).toThrow(RangeError);
      expect(() => posToBoundary(0, 0, bad, 32)).toThrow(RangeError);
      expect(() => nrFramesUp(1, bad)).toThrow(RangeError);
    }
    expect(() => checkShift('s', '12')).toThrow(RangeError);
    for (const bad of [65, -1, 1.5]) {
      expect(() => posAlignDown(0, 0, 12, bad, p)).toThrow(/lg2 must be an integer in \[0, 64\]/);
      expect(() => posAlignUp(0, 0, 12, bad, p)).toThrow(RangeError);
      expect(() => posIsAligned(0, 0, 12, bad)).toThrow(RangeError);
      expect(() => posToBoundary(0, 0, 12, bad)).toThrow(RangeError);
    }
    for (const bad of [-1, 2 ** 53, 0.5, NaN]) {
      expect(() => posAdd(0, 0, 12, bad, p)).toThrow(/len must be a safe integer >= 0/);
      expect(() => posSubLen(0, 0, 12, bad, p)).toThrow(RangeError);
      expect(() => nrFramesUp(bad, 12)).toThrow(RangeError);
      expect(() => alignUpLen(bad, 12)).toThrow(RangeError);
    }
  });
});
