// Property tests over every range layout of src/phyr: random range lists, represented in every layout
// that can hold them (the scatterlist included), must walk to the same segments under any segment
// limits, and to the segments of a brute-force reference walker; saved positions (RangePos) and
// batched fill() give the same walk; conversions round-trip; whole and sliced lists behave alike.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  BvecList, DmaList, PageArray, PageList, PhyrList, RANGE_MMIO, RANGE_NOPAGE, SEG_FRAME_SIZE, coalesce, sgAllocTable,
  slice, toBvecList, toPageArray, toPageList, toPhyrList, withProvider, type CursorOptions, type Range,
  type RangeCursor, type RangeSource, type SgTable,
} from '../src/phyr/index.ts';
import { coverage, refSegments, segsOnly, walkCursor, walkOnce, type Seg } from './fixtures/phyr-reference.ts';

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
        expect(got, name).toEqual(refSegments([...src], o, rb, true));
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

// ---- One walk for every layout: random lists built in every layout (each within its own limits),
// walked under random limits, must give the same segments as each other and as the reference.

const U32_MAX = 0xffff_ffff;
const TWO_53 = 1n << 53n;

/** A list and the page size its page layouts use. */
interface ListCase {
  readonly ps: number;
  readonly entries: Range[];
}

/**
 * Random lists: physically adjacent runs, page-aligned and sub-page starts, entries beyond
 * 4 GiB - 1 (split by the bvec and scatterlist builders), addresses above 2^53 and near 2^64,
 * mixed flags.
 */
function listArb(family: 'small' | 'large'): fc.Arbitrary<ListCase> {
  const ps = family === 'small' ? 4096 : 1 << 21;
  const lenArb = family === 'small'
    ? fc.oneof(fc.integer({ min: 1, max: 3 * ps }), fc.constantFrom(ps, 2 * ps, 8 * ps))
    : fc.oneof(fc.integer({ min: 1, max: 3 * ps }), fc.constantFrom(U32_MAX, U32_MAX + 1, 2 ** 32 + 3 * 4096, 2 ** 33 + 17),
      fc.integer({ min: 2 ** 20, max: 2 ** 34 }));
  return fc.array(
    fc.record({
      kind: fc.constantFrom('adjacent', 'adjacent', 'page', 'any', 'any', 'high', 'top'),
      page: fc.integer({ min: 0, max: 4096 }),
      off: fc.integer({ min: 0, max: ps - 1 }),
      len: lenArb,
      flags: fc.constantFrom(0, 0, 0, RANGE_MMIO, RANGE_NOPAGE, withProvider(RANGE_MMIO, 3)),
    }),
    { minLength: 0, maxLength: family === 'small' ? 12 : 6 },
  ).map((rs) => {
    const P = BigInt(ps);
    const out: Range[] = [];
    let total = 0;
    for (const r of rs) {
      const prev = out[out.length - 1];
      let addr: bigint;
      if (r.kind === 'adjacent' && prev) addr = prev.addr + BigInt(prev.len);
      else if (r.kind === 'page') addr = BigInt(r.page) * P;
      else if (r.kind === 'high') addr = TWO_53 - 4n * P + BigInt(r.page) * P + BigInt(r.off); // straddles 2^53
      else if (r.kind === 'top') addr = (1n << 64n) - (1n << 40n) + BigInt(r.page) * P + BigInt(r.off);
      else addr = BigInt(r.page) * P + BigInt(r.off);
      if (addr + BigInt(r.len) > 1n << 64n || total + r.len > Number.MAX_SAFE_INTEGER) continue;
      out.push({ addr, len: r.len, flags: r.flags });
      total += r.len;
    }
    return { ps, entries: out };
  });
}

/** Pieces of at most 4 GiB - 1, cut at page multiples (as bio_add_page builds bio_vecs and sg entries). */
function splitU32(entries: readonly Range[], ps: number): Range[] {
  const max = U32_MAX - (U32_MAX % ps);
  const out: Range[] = [];
  for (const r of entries) {
    for (let done = 0; done < r.len; done += max) out.push({ addr: r.addr + BigInt(done), len: Math.min(max, r.len - done), flags: r.flags });
  }
  return out;
}

/** An SgTable (CPU side and the same addresses on its DMA side), with empty entries mixed in. */
function sgOf(pieces: readonly Range[], ps: number, empties: readonly number[]): SgTable {
  const withEmpties: (Range | null)[] = [];
  pieces.forEach((r, i) => {
    if (empties.includes(i)) withEmpties.push(null);
    withEmpties.push(r);
  });
  if (empties.includes(pieces.length)) withEmpties.push(null);
  const t = sgAllocTable(Math.max(1, withEmpties.length), { pageSize: ps });
  if (!t.ok) throw new Error(t.errno);
  const P = BigInt(ps);
  withEmpties.forEach((r, i) => {
    if (r === null) return; // no page, length 0
    t.value.setPage(i, r.addr / P, r.len, Number(r.addr % P));
    t.value.setFlags(i, r.flags);
    t.value.setDma(i, r.addr, r.len);
  });
  return t.value;
}

/** Merged runs (physically adjacent, equal flags), as [start, len, flags]. */
function runsIn(entries: readonly Range[]): [bigint, number, number][] {
  return coverage(entries);
}

/** The page layouts, when the runs fit them: interior seams page-aligned, below 2^53, no NOPAGE. */
function pageLayouts(entries: readonly Range[], ps: number): { name: string; src: RangeSource; entries: Range[] }[] {
  const runs = runsIn(entries);
  const P = BigInt(ps);
  if (runs.length === 0) return [];
  if (runs.some(([a, l, f]) => a + BigInt(l) > TWO_53 - P || (f & RANGE_NOPAGE) !== 0)) return [];
  for (let i = 1; i < runs.length; i++) {
    if ((runs[i - 1][0] + BigInt(runs[i - 1][1])) % P !== 0n || runs[i][0] % P !== 0n) return [];
  }
  const pfns: number[] = [];
  const flags: number[] = [];
  for (const [a, l, f] of runs) {
    for (let p = a / P; p * P < a + BigInt(l); p++) {
      pfns.push(Number(p));
      flags.push(f);
    }
  }
  const total = runs.reduce((s, r) => s + r[1], 0);
  const offset = Number(runs[0][0] % P);
  const out: { name: string; src: RangeSource; entries: Range[] }[] = [];
  if (pfns.length <= 1 << 16) {
    const pa = new PageArray(new Float64Array(pfns), { pageSize: ps, offset, len: total, flags: new Uint32Array(flags) });
    out.push({ name: 'pagearray', src: pa, entries: [...pa] });
  }
  if (new Set(runs.map((r) => r[2])).size === 1) {
    const b = PageList.builder(ps);
    for (const [a, l] of runs) b.pushRun(Number(a / P), Number((a + BigInt(l) + P - 1n) / P - a / P));
    const pl = b.build({ firstOffset: offset, totalLen: total, flags: runs[0][2] });
    out.push({ name: 'pagelist', src: pl, entries: [...pl] });
  }
  return out;
}

/** Every layout that can hold the list, each with the entries it stores. */
function everyLayout(c: ListCase, empties: readonly number[]): { name: string; src: RangeSource; entries: Range[] }[] {
  const { ps, entries } = c;
  const phyr = PhyrList.from(entries);
  const out = [
    { name: 'phyr', src: phyr as RangeSource, entries },
    { name: 'dmalist', src: DmaList.from(entries) as RangeSource, entries },
    { name: 'dmalist-sharing', src: DmaList.sharing(phyr) as RangeSource, entries },
  ];
  const pieces = splitU32(entries, ps);
  const P = BigInt(ps);
  if (pieces.every((r) => (r.flags & RANGE_NOPAGE) === 0)) {
    const b = BvecList.builder(ps);
    for (const r of pieces) b.push(Number(r.addr / P), Number(r.addr % P), r.len, r.flags);
    out.push({ name: 'bvec', src: b.build(), entries: pieces });
  }
  const sgt = sgOf(pieces, ps, empties);
  out.push({ name: 'scatterlist', src: sgt, entries: pieces }, { name: 'scatterlist-dma', src: sgt.dmaEntries(), entries: pieces });
  out.push(...pageLayouts(entries, ps));
  return out;
}

/** Random limits sized to the list, so that a walk has at most a few thousand segments. */
function walkLimitsArb(family: 'small' | 'large'): fc.Arbitrary<{ o: CursorOptions; rb: number | undefined }> {
  const k = family === 'small' ? { seg: [9, 20], bnd: [9, 20], vb: [0, 16], budget: [1 << 10, 1 << 16] } : { seg: [22, 36], bnd: [22, 40], vb: [0, 21], budget: [1 << 22, 2 ** 36] };
  return fc.record({
    maxSegmentLen: fc.option(fc.integer({ min: 2 ** k.seg[0], max: 2 ** k.seg[1] }), { nil: undefined }),
    segLg: fc.option(fc.integer({ min: k.bnd[0], max: k.bnd[1] }), { nil: undefined }),
    vbLg: fc.option(fc.integer({ min: k.vb[0], max: k.vb[1] }), { nil: undefined }),
    merge: fc.boolean(),
    budget: fc.option(fc.integer({ min: k.budget[0], max: k.budget[1] }), { nil: undefined }),
    rb: fc.option(fc.integer({ min: k.budget[0], max: k.budget[1] }), { nil: undefined }),
  }).map((r) => ({
    o: {
      maxSegmentLen: r.maxSegmentLen,
      segBoundaryMask: r.segLg === undefined ? undefined : (1n << BigInt(r.segLg)) - 1n,
      // 2^k - 1, or 0 (no boundary)
      virtBoundaryMask: r.vbLg === undefined ? undefined : 2 ** r.vbLg - 1,
      merge: r.merge,
      budget: r.budget,
    },
    rb: r.rb,
  }));
}

const emptiesArb = fc.array(fc.integer({ min: 0, max: 12 }), { maxLength: 3 });

describe('one walk for every layout', () => {
  it('the reference skipping runs of bytes equals the reference judging every byte', () => {
    fc.assert(fc.property(entriesArb({ big: true }), limitsArb, fc.integer({ min: 100, max: 2 * PS }), (entries, o, rb) => {
      expect(refSegments(entries, o, rb)).toEqual(refSegments(entries, o, rb, true));
    }), { numRuns: 200 });
  });

  for (const family of ['small', 'large'] as const) {
    it(`every layout walks like the reference and like every other layout, under any limits (${family} lists)`, () => {
      fc.assert(fc.property(listArb(family), walkLimitsArb(family), emptiesArb, (c, { o, rb }, empties) => {
        const layouts = everyLayout(c, empties);
        const got = new Map<string, Seg[]>();
        for (const { name, src, entries } of layouts) {
          const segs = walkCursor(src.cursor(o), rb);
          expect(segs, name).toEqual(refSegments(entries, o, rb));
          got.set(name, segs);
        }
        // The same stored entries walk alike; with merge, every layout walks alike (one run per
        // physically contiguous range, whatever the entries).
        const same = (a: string, b: string): void => {
          if (got.has(a) && got.has(b)) expect(got.get(b), `${b} vs ${a}`).toEqual(got.get(a));
        };
        for (const n of ['dmalist', 'dmalist-sharing']) same('phyr', n);
        for (const n of ['bvec', 'scatterlist-dma']) same('scatterlist', n);
        if (o.merge === true) for (const n of got.keys()) same('phyr', n);
      }), { numRuns: family === 'small' ? 150 : 80 });
    });
  }

  it('virt boundary masks other than 2^k - 1 are refused by every layout', () => {
    fc.assert(fc.property(listArb('small'), fc.integer({ min: 1, max: 2 ** 20 }), (c, m) => {
      fc.pre((m & (m + 1)) !== 0);
      for (const { name, src } of everyLayout(c, [])) {
        expect(() => src.cursor({ virtBoundaryMask: m }), name).toThrow(RangeError);
      }
    }), { numRuns: 50 });
  });

  it('a saved position (RangePos) resumes the walk: saving and seeking at random points gives the uninterrupted walk', () => {
    fc.assert(fc.property(listArb('small'), walkLimitsArb('small'), emptiesArb, fc.array(fc.nat(6), { minLength: 1, maxLength: 8 }),
      (c, { o, rb }, empties, gaps) => {
        for (const { name, src } of everyLayout(c, empties)) {
          const whole = walkCursor(src.cursor(o), rb);
          // Walk in pieces: after each piece, carry the position over to a fresh cursor.
          const pieces: Seg[] = [];
          const left = [...gaps];
          let cur: RangeCursor = src.cursor(o);
          for (let g = 0; pieces.length <= whole.length; ) {
            if (cur.done) {
              if (cur.stopReason === 'end') break;
              pieces.push({ stop: cur.stopReason as 'budget' | 'virt-boundary' });
              cur.resume(rb);
            } else {
              pieces.push({ addr: cur.addr, len: cur.len, flags: cur.flags });
              cur.next();
            }
            if (--left[g % left.length] < 0) {
              left[g % left.length] = 3;
              g++;
              const pos = cur.pos();
              const fresh = src.cursor(o);
              fresh.seek({ ...pos });
              expect([fresh.done, fresh.stopReason, fresh.consumed], name).toEqual([cur.done, cur.stopReason, cur.consumed]);
              cur = fresh;
            }
          }
          expect(pieces.length, name).toBe(whole.length);
          expect(pieces, name).toEqual(whole);
        }
      }), { numRuns: 100 });
  });

  it('fill() in random batches writes the segments next() gives, stops included, in addr or (frame, offset) columns', () => {
    fc.assert(fc.property(listArb('small'), walkLimitsArb('small'), emptiesArb, fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 6 }),
      fc.boolean(), (c, { o, rb }, empties, batches, plain) => {
        const oo = plain ? {} : o;
        for (const { name, src } of everyLayout(c, empties)) {
          const whole = walkCursor(src.cursor(oo), rb);
          // The addr column is exact only below 2^53: other sources are read through (frame, offset).
          const fits = src.addrFitsNumber;
          const cols = {
            addr: new Float64Array(64), frame: new Float64Array(64), frameOff: new Uint32Array(64),
            len: new Float64Array(64), flags: new Uint32Array(64),
          };
          const onlyAddr = { addr: cols.addr, len: cols.len, flags: cols.flags };
          const got: Seg[] = [];
          const cur = src.cursor(oo);
          for (let b = 0; got.length <= whole.length; b++) {
            if (cur.done) {
              if (cur.stopReason === 'end') break;
              got.push({ stop: cur.stopReason as 'budget' | 'virt-boundary' });
              cur.resume(rb);
              continue;
            }
            const max = batches[b % batches.length];
            const withFrames = !fits || b % 2 === 1;
            const consumedBefore = cur.consumed;
            const k = cur.fill(withFrames ? cols : onlyAddr, max);
            expect(k, name).toBeGreaterThan(0);
            expect(k < max ? cur.done : true, name).toBe(true);
            let bytes = 0;
            for (let j = 0; j < k; j++) {
              const addr = withFrames ? BigInt(cols.frame[j]) * BigInt(SEG_FRAME_SIZE) + BigInt(cols.frameOff[j]) : BigInt(cols.addr[j]);
              got.push({ addr, len: cols.len[j], flags: cols.flags[j] });
              bytes += cols.len[j];
            }
            expect(cur.consumed, name).toBe(consumedBefore + bytes);
          }
          expect(got.length, name).toBe(whole.length);
          expect(got, name).toEqual(whole);
        }
      }), { numRuns: 100 });
  });

  // fill() without limits writes whole entries with loops unrolled 16 rows at a time (cursor.gen.ts):
  // long lists and batch sizes on both sides of 16 reach the unrolled body and its tail.
  it('fill() without limits over long lists, in batches on both sides of the unrolled loops, writes what next() gives', () => {
    const PS = 4096;
    // 17-200 scattered entries below 2^53 with pages (so every layout can hold them): page-aligned
    // seams (the page layouts need them) or any offsets, uniform flags (a page list needs them) or mixed.
    const longArb = fc.record({
      pieces: fc.array(fc.record({ page: fc.integer({ min: 0, max: 1 << 20 }), off: fc.integer({ min: 0, max: PS - 1 }), pages: fc.integer({ min: 1, max: 5 }), mmio: fc.boolean() }),
        { minLength: 17, maxLength: 200 }),
      aligned: fc.boolean(),
      uniform: fc.boolean(),
      tail: fc.integer({ min: 1, max: PS }),
    }).map(({ pieces, aligned, uniform, tail }): ListCase => ({
      ps: PS,
      entries: pieces.map((p, i) => {
        const off = aligned && i > 0 ? 0 : p.off;
        const end = aligned && i < pieces.length - 1 ? p.pages * PS : (p.pages - 1) * PS + tail;
        return { addr: BigInt(p.page) * BigInt(8 * PS) + BigInt(off), len: Math.max(1, end - off), flags: (uniform ? pieces[0].mmio : p.mmio) ? RANGE_MMIO : 0 };
      }),
    }));
    fc.assert(fc.property(longArb, emptiesArb, fc.array(fc.integer({ min: 1, max: 300 }), { minLength: 1, maxLength: 4 }),
      (c, empties, batches) => {
        const layouts = everyLayout(c, empties);
        expect(layouts.length).toBeGreaterThanOrEqual(6);
        for (const { name, src } of layouts) {
          expect(src.addrFitsNumber, name).toBe(true);
          const whole = walkCursor(src.cursor(), undefined);
          const cols = { addr: new Float64Array(300), len: new Float64Array(300), flags: new Uint32Array(300) };
          const got: Seg[] = [];
          const cur = src.cursor();
          for (let b = 0; !cur.done; b++) {
            const k = cur.fill(cols, batches[b % batches.length]);
            for (let j = 0; j < k; j++) got.push({ addr: BigInt(cols.addr[j]), len: cols.len[j], flags: cols.flags[j] });
          }
          expect(got, name).toEqual(whole);
        }
      }), { numRuns: 60 });
  });

  it('fill() of a page array longer than the kept run of equal lengths writes every length', () => {
    const n = (1 << 16) + 40;
    const pfns = new Float64Array(n);
    for (let i = 0; i < n; i++) pfns[i] = 3 * i + 1;
    const pa = new PageArray(pfns, { pageSize: 4096, offset: 8, len: n * 4096 - 8 - 100 });
    const cols = { addr: new Float64Array(n), len: new Float64Array(n).fill(-1), flags: null };
    const cur = pa.cursor();
    expect(cur.fill(cols, n)).toBe(n);
    expect(cur.done).toBe(true);
    const wrong: number[] = [];
    for (let i = 0; i < n; i++) {
      const ok = cols.addr[i] === pfns[i] * 4096 + (i === 0 ? 8 : 0) && cols.len[i] === (i === 0 ? 4096 - 8 : i === n - 1 ? 4096 - 100 : 4096);
      if (!ok) wrong.push(i);
    }
    expect(wrong).toEqual([]);
  });
});
