// Property tests over every range layout of src/phyr: random range lists, represented in every layout
// that can hold them, must walk to the same bytes; the cursor must match a byte-by-byte reference under
// any segment limits; conversions round-trip; whole and sliced lists behave alike.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  DmaList, PageList, PhyrList, RANGE_MMIO, RANGE_NOPAGE, coalesce, slice, toBvecList,
  toPageArray, toPageList, toPhyrList, type CursorOptions, type Range, type RangeCursor, type RangeSource,
} from '../src/phyr/index.ts';
import { coverage, refSegments, segsOnly, walkCursor, walkOnce } from './phyr-reference.ts';

const PS = 512; // smallest page size: keeps the byte-by-byte reference cheap
const P = BigInt(PS);

/** Range lists with many adjacent, page-aligned and unaligned seams. */
const entriesArb = (opts: { big?: boolean } = {}): fc.Arbitrary<Range[]> =>
  fc.array(
    fc.record({
      kind: fc.constantFrom('adjacent', 'adjacent', 'page', 'page', 'any', 'big'),
      page: fc.bigInt({ min: 0n, max: 64n }),
      off: fc.integer({ min: 0, max: PS - 1 }),
      len: fc.oneof(fc.integer({ min: 1, max: 3 * PS }), fc.constantFrom(PS, 2 * PS, 4 * PS)),
      flags: fc.constantFrom(0, 0, 0, RANGE_MMIO, RANGE_NOPAGE),
    }),
    { minLength: 0, maxLength: 10 },
  ).map((rs) => {
    const out: Range[] = [];
    for (const r of rs) {
      let addr: bigint;
      const prev = out[out.length - 1];
      if (r.kind === 'adjacent' && prev) addr = prev.addr + BigInt(prev.len);
      else if (r.kind === 'big' && opts.big) addr = (r.page % 2n === 0n ? 1n << 53n : (1n << 64n) - 1n << 20n) + r.page * P + BigInt(r.off) - 4n * P;
      else if (r.kind === 'any') addr = r.page * P + BigInt(r.off);
      else addr = r.page * P;
      if (addr + BigInt(r.len) > 1n << 64n) continue;
      out.push({ addr, len: r.len, flags: r.flags });
    }
    return out;
  });

const limitsArb: fc.Arbitrary<CursorOptions> = fc.record({
  maxSegmentLen: fc.option(fc.oneof(fc.integer({ min: 16, max: 100 }), fc.integer({ min: 100, max: 3 * PS })), { nil: undefined }),
  segBoundaryMask: fc.option(fc.constantFrom(0xffn, 0x1ffn, 0x3ffn, 0xfffn), { nil: undefined }),
  virtBoundaryMask: fc.option(fc.constantFrom(0, 0x1ff, 0xff), { nil: undefined }),
  merge: fc.boolean(),
  budget: fc.option(fc.integer({ min: 0, max: 4 * PS }), { nil: undefined }),
});

/** Brute-force predicates: which layouts can hold these ranges. */
function runsOf(entries: readonly Range[]): [bigint, number, number][] {
  return coverage(entries);
}
function fitsPages(entries: readonly Range[]): boolean {
  return entries.every((r) => r.addr + BigInt(r.len) <= 1n << 53n);
}
function seamsAligned(entries: readonly Range[]): boolean {
  const runs = runsOf(entries);
  for (let i = 1; i < runs.length; i++) {
    if ((runs[i - 1][0] + BigInt(runs[i - 1][1])) % P !== 0n || runs[i][0] % P !== 0n) return false;
  }
  return true;
}
const canBvec = (e: readonly Range[]): boolean => fitsPages(e) && e.every((r) => (r.flags & RANGE_NOPAGE) === 0);
const canPageList = (e: readonly Range[]): boolean =>
  fitsPages(e) && seamsAligned(e) && new Set(runsOf(e).map((r) => r[2])).size <= 1;
const canPageArray = (e: readonly Range[]): boolean => canBvec(e) && seamsAligned(e);

/** Every layout that can represent the entries (the phyr list first). */
function layoutsOf(entries: readonly Range[]): { name: string; src: RangeSource }[] {
  const phyr = PhyrList.from(entries);
  const out: { name: string; src: RangeSource }[] = [
    { name: 'phyr', src: phyr },
    { name: 'dmalist', src: DmaList.from(entries) },
    { name: 'dmalist-sharing', src: DmaList.sharing(phyr) },
  ];
  const bv = toBvecList(phyr, PS);
  expect(bv.ok).toBe(canBvec(entries));
  if (bv.ok) out.push({ name: 'bvec', src: bv.value });
  const pl = toPageList(phyr, PS);
  expect(pl.ok, pl.ok ? '' : pl.message).toBe(canPageList(entries));
  if (pl.ok) out.push({ name: 'pagelist', src: pl.value });
  const pa = toPageArray(phyr, PS);
  expect(pa.ok).toBe(canPageArray(entries));
  if (pa.ok) out.push({ name: 'pagearray', src: pa.value });
  return out;
}

function checkLimits(segs: { addr: bigint; len: number }[], o: CursorOptions): void {
  for (const s of segs) {
    expect(s.len).toBeGreaterThan(0);
    if (o.maxSegmentLen !== undefined) expect(s.len).toBeLessThanOrEqual(o.maxSegmentLen);
    if (o.segBoundaryMask !== undefined) {
      const m = o.segBoundaryMask;
      expect(s.addr | m).toBe((s.addr + BigInt(s.len) - 1n) | m);
    }
  }
}

describe('layouts: properties', () => {
  it('every representable layout walks the same bytes, and conversion errors match brute force', () => {
    fc.assert(fc.property(entriesArb({ big: true }), (entries) => {
      const want = coverage(entries);
      for (const { name, src } of layoutsOf(entries)) {
        expect(coverage(segsOnly(walkCursor(src.cursor()))), name).toEqual(want);
        expect(coverage(src), name).toEqual(want);
        expect(src.totalLen, name).toBe(entries.reduce((s, r) => s + r.len, 0));
      }
    }), { numRuns: 300 });
  });

  it('the cursor matches the byte-by-byte reference under any limits, for every layout', () => {
    fc.assert(fc.property(entriesArb({ big: true }), limitsArb, fc.integer({ min: 100, max: 2 * PS }), (entries, o, rb) => {
      for (const { name, src } of layoutsOf(entries)) {
        const got = walkCursor(src.cursor(o), rb);
        expect(got, name).toEqual(refSegments([...src], o, rb));
        checkLimits(segsOnly(got), o);
        // budget/resume pieces concatenate to the whole
        expect(coverage(segsOnly(got)), name).toEqual(coverage(entries));
      }
    }), { numRuns: 200 });
  });

  it('skip starts the walk at the same bytes as the reference', () => {
    fc.assert(fc.property(entriesArb(), limitsArb, fc.double({ min: 0, max: 1, noNaN: true }), (entries, o, frac) => {
      for (const { name, src } of layoutsOf(entries)) {
        const skip = Math.floor(frac * src.totalLen);
        const oo = { ...o, skip };
        expect(walkCursor(src.cursor(oo), 700), name).toEqual(refSegments([...src], oo, 700));
      }
    }), { numRuns: 150 });
  });

  it('clone saves the position: a split walk concatenates to the whole', () => {
    fc.assert(fc.property(entriesArb({ big: true }), limitsArb, fc.nat(20), (entries, o, k) => {
      const oo = { ...o, budget: undefined };
      for (const { name, src } of layoutsOf(entries)) {
        const whole = segsOnly(walkCursor(src.cursor(oo)));
        const c = src.cursor(oo);
        const head: { addr: bigint; len: number; flags: number }[] = [];
        for (let i = 0; i < k && !c.done; i++) {
          head.push({ addr: c.addr, len: c.len, flags: c.flags });
          c.next();
        }
        const d = c.clone();
        const tailC = segsOnly(walkCursor(c));
        const tailD = segsOnly(walkCursor(d));
        expect(tailD, name).toEqual(tailC);
        expect([...head, ...tailD], name).toEqual(whole);
      }
    }), { numRuns: 150 });
  });

  it('advance() in arbitrary steps covers the same bytes and consumed counts them', () => {
    fc.assert(fc.property(entriesArb(), limitsArb, fc.array(fc.integer({ min: 50, max: 5000 }), { minLength: 1, maxLength: 5 }), (entries, o, steps) => {
      const oo = { ...o, budget: undefined };
      for (const { name, src } of layoutsOf(entries)) {
        const c = src.cursor(oo);
        const pieces: { addr: bigint; len: number; flags: number }[] = [];
        let k = 0;
        let walked = 0;
        let stops = 0;
        for (;;) {
          while (!c.done) {
            const n = Math.min(c.len, steps[k++ % steps.length]);
            if (c.consumed !== walked) expect(c.consumed).toBe(walked);
            walked += n;
            pieces.push({ addr: c.addr, len: n, flags: c.flags });
            c.advance(n);
          }
          if (c.stopReason === 'end') break;
          if (++stops > 10_000) throw new Error('no progress after resume()');
          c.resume();
        }
        checkLimits(pieces, oo);
        expect(coverage(pieces), name).toEqual(coverage(entries));
      }
    }), { numRuns: 100 });
  });

  it('the no-limits fast path agrees with the limited walk step by step (skip, next, advance, clone)', () => {
    const opArb = fc.record({ op: fc.constantFrom('next', 'next', 'advance', 'clone'), frac: fc.double({ min: 0, max: 1, noNaN: true }) });
    // f2 = 1: skip the whole source (the walk starts done, also when the last page is partial).
    const fracArb = fc.oneof(fc.double({ min: 0, max: 1, noNaN: true }), fc.constantFrom(0, 1));
    fc.assert(fc.property(entriesArb({ big: true }), fc.double({ min: 0, max: 1, noNaN: true }), fracArb,
      fc.array(opArb, { maxLength: 40 }), (entries, f1, f2, ops) => {
        const sources = layoutsOf(entries);
        // sliced sources too: page layouts with a first offset and a short last entry, single entries
        for (const { name, src } of [...sources]) {
          const offset = Math.floor(f1 * src.totalLen);
          sources.push({ name: `${name}-slice`, src: slice(src, offset, Math.floor(f2 * (src.totalLen - offset))) });
        }
        for (const { name, src } of sources) {
          const skip = Math.floor(f2 * src.totalLen);
          // The walk with nothing to apply (the plain fast path), and the limited walk forced by a
          // limit that never cuts: the same generated class in its two modes.
          let p: RangeCursor = skip === 0 ? src.cursor() : src.cursor({ skip });
          let c: RangeCursor = src.cursor({ skip, maxSegmentLen: Number.MAX_SAFE_INTEGER });
          expect(p.constructor, name).toBe(c.constructor);
          const same = (): void => {
            expect([p.done, p.stopReason, p.addr, p.len, p.flags, p.consumed], name).toEqual([c.done, c.stopReason, c.addr, c.len, c.flags, c.consumed]);
            if (src.addrFitsNumber) expect(p.addrNum, name).toBe(c.addrNum);
          };
          same();
          for (const { op, frac } of ops) {
            if (c.done) break;
            if (op === 'next') {
              expect(p.next(), name).toBe(c.next());
            } else if (op === 'advance') {
              const k = Math.max(1, Math.ceil(frac * c.len));
              p.advance(k);
              c.advance(k);
            } else {
              const q = p.clone();
              expect(q, name).toBeInstanceOf(p.constructor);
              p.next(); // the clone keeps its own position
              p = q;
              c = c.clone();
            }
            same();
          }
          while (!c.done) {
            expect(p.next(), name).toBe(c.next());
            same();
          }
          expect(p.next(), name).toBe(false);
          expect(() => p.advance(1), name).toThrow(/finished/);
          p.resume(10);
          same();
        }
      }), { numRuns: 200 });
  });

  it('conversions round-trip where representable', () => {
    fc.assert(fc.property(entriesArb({ big: true }), (entries) => {
      const phyr = PhyrList.from(entries);
      expect([...unwrap(toPhyrList(phyr))]).toEqual(entries);
      expect([...unwrap(toPhyrList(DmaList.from(entries)))]).toEqual(entries);
      const merged = coalesce(phyr);
      expect([...merged].map((r) => [r.addr, r.len, r.flags])).toEqual(coverage(entries));
      expect([...unwrap(toPhyrList(phyr, { merge: true }))].map((r) => [r.addr, r.len, r.flags])).toEqual(coverage(entries));
      const bv = toBvecList(phyr, PS);
      if (bv.ok) {
        expect([...unwrap(toPhyrList(bv.value))]).toEqual(entries);
        expect([...unwrap(toBvecList(unwrap(toPhyrList(bv.value)), PS))]).toEqual([...bv.value]);
      } else {
        const idx = Number(/entry (\d+)/.exec(bv.message ?? '')?.[1]);
        const bad = entries[idx];
        expect((bad.flags & RANGE_NOPAGE) !== 0 || bad.addr + BigInt(bad.len) > 1n << 53n).toBe(true);
      }
      const pl = toPageList(phyr, PS);
      if (pl.ok) {
        const again = unwrap(toPageList(unwrap(toPhyrList(pl.value)), PS));
        expect([...again]).toEqual([...pl.value]);
        expect(chunksOf(again)).toEqual(chunksOf(pl.value));
        // canonical chunks: naturally aligned, as large as alignment allows
        for (const [pfn, order] of chunksOf(pl.value)) expect(pfn % (1n << BigInt(order))).toBe(0n);
      }
      const pa = toPageArray(phyr, PS);
      if (pa.ok) {
        const again = unwrap(toPageArray(unwrap(toPhyrList(pa.value)), PS));
        expect([...again.pfns]).toEqual([...pa.value.pfns]);
        expect([again.offset, again.totalLen]).toEqual([pa.value.offset, pa.value.totalLen]);
        expect(pa.value.count).toBe(runsOf(entries).reduce((s, [a, l]) => s + Number((a + BigInt(l) + P - 1n) / P - a / P), 0));
      }
    }), { numRuns: 300 });
  });

  it('whole and sliced lists behave alike', () => {
    fc.assert(fc.property(entriesArb({ big: true }), fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }), limitsArb,
      (entries, f1, f2, o) => {
        for (const { name, src } of layoutsOf(entries)) {
          const offset = Math.floor(f1 * src.totalLen);
          const len = Math.floor(f2 * (src.totalLen - offset));
          const s = slice(src, offset, len);
          expect(s.totalLen).toBe(len);
          const sameLayout = name.startsWith('dmalist') ? 'dmalist' : name;
          expect(s.layout, name).toBe(sameLayout);
          // the window's bytes are the whole walk's bytes from offset
          const windowed = walkOnce(src.cursor({ skip: offset, budget: len }));
          expect(coverage(segsOnly(walkCursor(s.cursor()))), name).toEqual(coverage(windowed));
          // entry seams are kept for phyr-like and bvec windows: the same segments under limits
          if (name !== 'pagelist') {
            const oo = { ...o, budget: undefined, skip: undefined };
            expect(segsOnly(walkCursor(s.cursor(oo))), name).toEqual(segsOnly(refSegments(segsOnly(windowed), oo)));
          }
        }
      }), { numRuns: 200 });
  });
});

function unwrap<T>(r: { ok: true; value: T } | { ok: false; errno: string; message?: string }): T {
  if (!r.ok) throw new Error(`${r.errno}: ${r.message}`);
  return r.value;
}

function chunksOf(pl: PageList): [bigint, number][] {
  const out: [bigint, number][] = [];
  for (let i = 0; i < pl.count; i++) out.push([pl.pfnAt(i), pl.orderAt(i)]);
  return out;
}
