// Benchmarks for src/phyr: the generated cursors against a bare loop over the same typed arrays,
// per layout (1 M entries), and the heap of a 1 M-entry PhyrList against a naive array of objects.
//
// Cursor vs bare loop (target >= 0.5x for every layout): both compute the same (addr, len) per
// entry and sum them, and the sums are checked equal before anything is timed. The target rows:
//   - a consumer function per layout walking with next() (a hot consumer walks one layout);
//   - one consumer function for every layout that takes segments in batches with fill() into
//     typed-array columns (a generic RangeSource walker: its fill() call site sees every class, but
//     once per 4096 segments). It does twice what a bare loop does once: fill() writes the
//     columns and the consumer reads them back. fill() copies columns the storage already holds
//     with TypedArray set (phyr, DMA list, and a page array's page addresses, which it keeps beside
//     its pfns: page-array.ts) and computes the others (pfn * page size + offset, a page list's
//     2^order lengths) in loops unrolled 16 rows at a time (cursor.gen.ts). The bare loops read
//     the same columns the cursors read (a page array's: the page addresses).
//     What bounds these rows: V8 (Node 20) checks a typed array's map and the index against its
//     length on every access in a loop (consumeOnly's machine code has both inside its loop, for
//     each of its two arrays; nothing is hoisted), so a loop costs about as many checks per row as
//     arrays it touches. (A test for a detached buffer joins them once any ArrayBuffer in the
//     process has been detached, by a transfer: consumeOnly's pass then takes 1.28 ms instead of
//     0.92. Nothing in the bench or the CLI detaches one.) The page array's bare loop touches one
//     array; the consumer's own pass over the addr and len columns touches two. The consumer asks
//     for addr and len only (flags: null), as the bare loops compute no flags. Each fill() row's
//     note gives its ceiling: bare against that pass alone, with no fill() at all (consumeOnly),
//     the best any fill() could do. The page array's bare loop (then over the pfns, times the page
//     size; over the address column it takes the same 0.85 ms) took 0.59-0.67 ms in some
//     processes and 0.85-0.95 ms in others, for the life of the process, so its ceiling is 0.6-0.95.
//     That is not the cache: writing 512 MiB before each run makes the fast form 0.02-0.12 ms
//     slower and leaves the slow one as it is; the speed follows the memory the 8 MiB array got
//     (five equal arrays in one process ran at 0.61 ms and at 0.91-0.94), and the loop's code is
//     the same in both kinds of process. When the page array's fill() computed pfn * page size,
//     that pass alone took 0.43-0.6 ms (a copy of the same bytes 0.13 ms) and kept the row at
//     0.43x; copying the address column brought it to 0.55x.
//     The note also gives the same pairing with both loops unrolled 4 rows (bare4 against
//     sumFilled4, the additions in the same order): unrolled, a bare loop is bound by its chain of
//     additions, one per entry (the page array's takes 0.57-0.64 ms in every process), the
//     consumer's own pass is bound the same way, and fill() has to cost no more than the whole
//     bare loop for 0.5x; the page list and the scatterlist reach 0.43-0.47x that way, the page
//     array (copying its addresses) 0.67x. The next() rows' notes give the same comparison
//     (0.40-0.64x).
// A reference row without target walks the layouts that were walked before the scatterlist joined
// with next() from one shared function (its call sites see four cursor classes). Everything is warmed up first; each figure is the fastest of
// interleaved runs (the cores are shared: a run that lost the CPU part-way says nothing about
// the code, and the fastest run of each side is the one that did not).
import { heapUsed, type BenchRow, type BenchSection } from './harness.ts';
import {
  BvecList, DmaList, PageArray, PageList, PhyrList, RANGE_MMIO, sgAllocTableFromPages, type RangeCursor,
  type RangeSource, type SegmentColumns, type SgTable,
} from '../src/phyr/index.ts';
import type { AddrLenView, BvecView, PageArrayView, PagesView } from '../src/phyr/internal.ts';

const N = 1 << 20;
const POW2 = new Float64Array(64).map((_, k) => 2 ** k);
const PS = 4096;

// The same consumer body, written once per layout: a hot consumer walks one layout (a DMA-mapping loop
// over the bvecs of a bio, over a PhyrList, ...), so its call sites see one cursor class. Each is its
// own function so V8 keeps separate type feedback per layout.
function sumPhyr(src: PhyrList): number {
  let s = 0;
  const c = src.cursor();
  while (!c.done) {
    s += c.addrNum + c.len;
    c.next();
  }
  return s;
}

function sumDma(src: DmaList): number {
  let s = 0;
  const c = src.cursor();
  while (!c.done) {
    s += c.addrNum + c.len;
    c.next();
  }
  return s;
}

function sumBvec(src: BvecList): number {
  let s = 0;
  const c = src.cursor();
  while (!c.done) {
    s += c.addrNum + c.len;
    c.next();
  }
  return s;
}

function sumPageList(src: PageList): number {
  let s = 0;
  const c = src.cursor();
  while (!c.done) {
    s += c.addrNum + c.len;
    c.next();
  }
  return s;
}

function sumPageArray(src: PageArray): number {
  let s = 0;
  const c = src.cursor();
  while (!c.done) {
    s += c.addrNum + c.len;
    c.next();
  }
  return s;
}

function sumSg(src: SgTable): number {
  let s = 0;
  const c = src.cursor();
  while (!c.done) {
    s += c.addrNum + c.len;
    c.next();
  }
  return s;
}

/** One consumer for every layout (a generic RangeSource walker): its call sites see every cursor class. */
function sumShared(src: RangeSource): number {
  let s = 0;
  const c: RangeCursor = src.cursor();
  while (!c.done) {
    s += c.addrNum + c.len;
    c.next();
  }
  return s;
}

/** Segments per fill() batch of the shared batched consumer. */
const FILL = 4096;

/** One consumer for every layout, taking segments in batches with fill(). */
function sumFilled(src: RangeSource, cols: SegmentColumns & { readonly addr: Float64Array }): number {
  const a = cols.addr;
  const l = cols.len;
  let s = 0;
  const c = src.cursor();
  while (!c.done) {
    const k = c.fill(cols, FILL);
    for (let j = 0; j < k; j++) s += a[j] + l[j];
  }
  return s;
}

/** The same consumer with its inner loop unrolled 4 rows, the additions in the same order. */
function sumFilled4(src: RangeSource, cols: SegmentColumns & { readonly addr: Float64Array }): number {
  const a = cols.addr;
  const l = cols.len;
  let s = 0;
  const c = src.cursor();
  while (!c.done) {
    const k = c.fill(cols, FILL);
    let j = 0;
    for (; j + 4 <= k; j += 4) {
      s += a[j] + l[j];
      s += a[j + 1] + l[j + 1];
      s += a[j + 2] + l[j + 2];
      s += a[j + 3] + l[j + 3];
    }
    for (; j < k; j++) s += a[j] + l[j];
  }
  return s;
}

/**
 * The shared consumer's own pass with nothing to fill: its inner loop over full columns, N / FILL
 * times. No fill()-based consumer can be faster than this, so bare / this is the ceiling of the
 * fill() rows: where it is below 0.5 the target cannot be met by any fill(), however fast.
 */
function consumeOnly(cols: SegmentColumns & { readonly addr: Float64Array }): number {
  const a = cols.addr;
  const l = cols.len;
  let s = 0;
  for (let b = 0; b < N / FILL; b++) {
    const k = FILL;
    for (let j = 0; j < k; j++) s += a[j] + l[j];
  }
  return s;
}

// Bare loops over the same typed arrays, computing the same (addr, len) per entry as the cursor
// yields and consuming them the same way (their sum). The page layouts peel the first entry (it
// starts firstOff into its page) and the last (it walks lastLen bytes), as a hand-written loop would.

function bareAddrLen(c: AddrLenView): number {
  const a = c.a;
  const l = c.l;
  const n = c.n;
  let s = 0;
  for (let i = 0; i < n; i++) s += a[i] + l[i];
  return s;
}

function bareBvec(c: BvecView): number {
  const p = c.pfn;
  const l = c.len;
  const o = c.off;
  const ps = c.ps;
  const n = c.n;
  let s = 0;
  for (let i = 0; i < n; i++) s += p[i] * ps + o[i] + l[i];
  return s;
}

/** sg_next() order: the slot after slot s skips a chain link. */
function bareSg(c: SgTable): number {
  const p = c._pfn;
  const o = c._offset;
  const l = c._length;
  const link = c._link;
  const ps = c.pageSize;
  const n = c.origNents;
  let s = 0;
  let slot = 0;
  for (let i = 0; i < n; i++) {
    s += p[slot] * ps + o[slot] + l[slot];
    if (i + 1 < n) slot = (link[slot + 1] & 1) !== 0 ? slot + 2 : slot + 1;
  }
  return s;
}

function barePageList(c: PagesView): number {
  const p = c.pfn;
  const ord = c.ord;
  const ps = c.ps;
  const n = c.n;
  if (n === 0) return 0;
  const first = c.firstOff;
  if (n === 1) return p[0] * ps + first + c.lastLen;
  let s = p[0] * ps + first + (ps * POW2[ord[0]] - first);
  for (let i = 1; i < n - 1; i++) s += p[i] * ps + ps * POW2[ord[i]];
  return s + (p[n - 1] * ps + c.lastLen);
}

function barePageArray(c: PageArrayView): number {
  const a = c.addr;
  const ps = c.ps;
  const n = c.n;
  if (n === 0) return 0;
  const first = c.firstOff;
  if (n === 1) return a[0] + first + c.lastLen;
  let s = a[0] + first + (ps - first);
  for (let i = 1; i < n - 1; i++) s += a[i] + ps;
  return s + (a[n - 1] + c.lastLen);
}

// The same bare loops unrolled 4 entries, the additions in the same order (the sums are equal to
// the bit): the reference pairing in each fill() row's note, against sumFilled4.

function bareAddrLen4(c: AddrLenView): number {
  const a = c.a;
  const l = c.l;
  const n = c.n;
  let s = 0;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    s += a[i] + l[i];
    s += a[i + 1] + l[i + 1];
    s += a[i + 2] + l[i + 2];
    s += a[i + 3] + l[i + 3];
  }
  for (; i < n; i++) s += a[i] + l[i];
  return s;
}

function bareBvec4(c: BvecView): number {
  const p = c.pfn;
  const l = c.len;
  const o = c.off;
  const ps = c.ps;
  const n = c.n;
  let s = 0;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    s += p[i] * ps + o[i] + l[i];
    s += p[i + 1] * ps + o[i + 1] + l[i + 1];
    s += p[i + 2] * ps + o[i + 2] + l[i + 2];
    s += p[i + 3] * ps + o[i + 3] + l[i + 3];
  }
  for (; i < n; i++) s += p[i] * ps + o[i] + l[i];
  return s;
}

function bareSg4(c: SgTable): number {
  const p = c._pfn;
  const o = c._offset;
  const l = c._length;
  const link = c._link;
  const ps = c.pageSize;
  const n = c.origNents;
  let s = 0;
  let slot = 0;
  let i = 0;
  // four entries per pass while at least one more follows them (so the step to the next slot is due)
  for (; i + 4 < n; i += 4) {
    s += p[slot] * ps + o[slot] + l[slot];
    slot = (link[slot + 1] & 1) !== 0 ? slot + 2 : slot + 1;
    s += p[slot] * ps + o[slot] + l[slot];
    slot = (link[slot + 1] & 1) !== 0 ? slot + 2 : slot + 1;
    s += p[slot] * ps + o[slot] + l[slot];
    slot = (link[slot + 1] & 1) !== 0 ? slot + 2 : slot + 1;
    s += p[slot] * ps + o[slot] + l[slot];
    slot = (link[slot + 1] & 1) !== 0 ? slot + 2 : slot + 1;
  }
  for (; i < n; i++) {
    s += p[slot] * ps + o[slot] + l[slot];
    if (i + 1 < n) slot = (link[slot + 1] & 1) !== 0 ? slot + 2 : slot + 1;
  }
  return s;
}

function barePageList4(c: PagesView): number {
  const p = c.pfn;
  const ord = c.ord;
  const ps = c.ps;
  const n = c.n;
  if (n === 0) return 0;
  const first = c.firstOff;
  if (n === 1) return p[0] * ps + first + c.lastLen;
  let s = p[0] * ps + first + (ps * POW2[ord[0]] - first);
  let i = 1;
  for (; i + 4 <= n - 1; i += 4) {
    s += p[i] * ps + ps * POW2[ord[i]];
    s += p[i + 1] * ps + ps * POW2[ord[i + 1]];
    s += p[i + 2] * ps + ps * POW2[ord[i + 2]];
    s += p[i + 3] * ps + ps * POW2[ord[i + 3]];
  }
  for (; i < n - 1; i++) s += p[i] * ps + ps * POW2[ord[i]];
  return s + (p[n - 1] * ps + c.lastLen);
}

function barePageArray4(c: PageArrayView): number {
  const a = c.addr;
  const ps = c.ps;
  const n = c.n;
  if (n === 0) return 0;
  const first = c.firstOff;
  if (n === 1) return a[0] + first + c.lastLen;
  let s = a[0] + first + (ps - first);
  let i = 1;
  for (; i + 4 <= n - 1; i += 4) {
    s += a[i] + ps;
    s += a[i + 1] + ps;
    s += a[i + 2] + ps;
    s += a[i + 3] + ps;
  }
  for (; i < n - 1; i++) s += a[i] + ps;
  return s + (a[n - 1] + c.lastLen);
}

function makePhyr(flagsMixed: boolean): PhyrList {
  const b = PhyrList.builder(N);
  for (let i = 0; i < N; i++) b.push(i * 3 * PS + (i & 7) * 64, PS + (i & 15), flagsMixed && (i & 1) ? RANGE_MMIO : 0);
  return b.build();
}

interface Layouts {
  phyr: PhyrList;
  dma: DmaList;
  bvec: BvecList;
  plist: PageList;
  parr: PageArray;
  sg: SgTable;
}

/** n entries per layout; physically scattered so that nothing merges. */
function makeLayouts(n: number): Layouts {
  const b = PhyrList.builder(n);
  for (let i = 0; i < n; i++) b.push(i * 3 * PS + (i & 7) * 64, PS + (i & 15), (i & 1) ? RANGE_MMIO : 0);
  const phyr = b.build();
  const bb = BvecList.builder(PS, n);
  for (let i = 0; i < n; i++) bb.push(i * 2, i & 255, PS - 256, 0);
  const plb = PageList.builder(PS, n);
  for (let i = 0; i < n; i++) plb.pushChunk(i * 16 + ((i & 1) ? 4 : 0), (i & 1) ? 2 : 0);
  const pfns = new Float64Array(n);
  for (let i = 0; i < n; i++) pfns[i] = i * 2;
  // sg_alloc_table_from_pages over scattered pages: one entry per page, chained chunks of 128 slots.
  const sg = sgAllocTableFromPages(pfns, 100, n * PS - 100 - 1000);
  if (!sg.ok) throw new Error(sg.errno);
  return {
    phyr, dma: DmaList.sharing(phyr), bvec: bb.build(), plist: plb.build({ firstOffset: 100, totalLen: plb.pageCount * PS - 100 - 1000 }),
    parr: new PageArray(pfns, { pageSize: PS, offset: 100, len: n * PS - 100 - 1000 }), sg: sg.value,
  };
}

/** Fastest wall time (ms) of `runs` runs of each function, interleaved so all see the same machine. */
function timeEach(fs: readonly (() => number)[], runs: number): number[] {
  const best = fs.map(() => Infinity);
  let sink = 0;
  for (let r = 0; r < runs; r++) {
    for (let k = 0; k < fs.length; k++) {
      const t0 = process.hrtime.bigint();
      sink += fs[k]();
      best[k] = Math.min(best[k], Number(process.hrtime.bigint() - t0) / 1e6);
    }
  }
  if (sink === 42) console.log(sink);
  return best;
}

export default function bench(): BenchSection {
  const rows: BenchRow[] = [];

  // Warm-up, the way a consumer is warmed in a running system: many short walks (64 entries) over
  // every layout, so V8 optimizes whole functions (not just an OSR entry), then the big lists twice,
  // so the feedback V8 optimizes from has seen their shapes (e.g. sums beyond a small integer). The
  // bare loops, the per-layout consumers and the shared consumer are all warmed the same way.
  const small = makeLayouts(64);
  const big = makeLayouts(N);
  const fillCols = { addr: new Float64Array(FILL), len: new Float64Array(FILL), flags: null };
  // The shared consumer asks for addr and len only: the bare loops compute no flags either.
  // [name, bare loop, the same unrolled, per-layout consumer, shared next() consumer (null: none),
  //  shared fill() consumer, the same unrolled]
  type Case = [string, () => number, () => number, () => number, (() => number) | null, () => number, () => number];
  const cases = (l: Layouts): Case[] => [
    ['phyr', () => bareAddrLen(l.phyr.columns()), () => bareAddrLen4(l.phyr.columns()), () => sumPhyr(l.phyr), () => sumShared(l.phyr),
      () => sumFilled(l.phyr, fillCols),
      () => sumFilled4(l.phyr, fillCols)],
    ['dmalist', () => bareAddrLen(l.dma.columns()), () => bareAddrLen4(l.dma.columns()), () => sumDma(l.dma), () => sumShared(l.dma),
      () => sumFilled(l.dma, fillCols),
      () => sumFilled4(l.dma, fillCols)],
    ['bvec', () => bareBvec(l.bvec.columns()), () => bareBvec4(l.bvec.columns()), () => sumBvec(l.bvec), () => sumShared(l.bvec),
      () => sumFilled(l.bvec, fillCols),
      () => sumFilled4(l.bvec, fillCols)],
    ['pagelist', () => barePageList(l.plist.columns()), () => barePageList4(l.plist.columns()), () => sumPageList(l.plist),
      () => sumShared(l.plist), () => sumFilled(l.plist, fillCols),
      () => sumFilled4(l.plist, fillCols)],
    ['pagearray', () => barePageArray(l.parr.columns()), () => barePageArray4(l.parr.columns()), () => sumPageArray(l.parr),
      () => sumShared(l.parr), () => sumFilled(l.parr, fillCols),
      () => sumFilled4(l.parr, fillCols)],
    // Not through the shared next() consumer: the reference row keeps the four cursor classes it
    // had before the scatterlist joined the walker (a fifth makes its call sites megamorphic).
    ['scatterlist', () => bareSg(l.sg), () => bareSg4(l.sg), () => sumSg(l.sg), null, () => sumFilled(l.sg, fillCols),
      () => sumFilled4(l.sg, fillCols)],
  ];
  const smallCases = cases(small);
  const bigCases = cases(big);
  let sink = 0;
  for (let round = 0; round < 2; round++) {
    for (let k = 0; k < 20000; k++) {
      for (const [, bare, bare4, own, shared, filled, filled4] of smallCases) {
        sink += bare() + bare4() + own() + (shared?.() ?? 0) + filled() + filled4();
      }
    }
    for (let k = 0; k < 20; k++) sink += consumeOnly(fillCols);
    for (const [name, bare, bare4, own, shared, filled, filled4] of bigCases) {
      const want = bare();
      // The walks must agree with the bare loop, or the comparison means nothing.
      if (bare4() !== want || own() !== want || (shared !== null && shared() !== want) || filled() !== want || filled4() !== want) {
        throw new Error(`${name}: cursor walk and bare loop disagree`);
      }
      sink += want;
    }
  }
  if (sink === 42) console.log(sink);

  const RUNS = 31;
  const filledRows: BenchRow[] = [];
  const shared: BenchRow[] = [];
  for (const [name, bare, bare4, own, sharedWalk, filled, filled4] of bigCases) {
    const [tBare, tOwn, tBare4] = timeEach([bare, own, bare4], RUNS);
    rows.push({
      name: `cursor walk vs bare loop, ${name}, 1 M entries`, value: tBare / tOwn, unit: 'x',
      target: { op: '>=', value: 0.5 },
      note: `per-layout consumer; fastest of ${RUNS}: bare ${tBare.toFixed(2)} ms, cursor ${tOwn.toFixed(2)} ms = ${(N / tOwn / 1e3).toFixed(0)} M segs/s;`
        + ` against the bare loop unrolled 4 rows (${tBare4.toFixed(2)} ms) ${(tBare4 / tOwn).toFixed(2)}x`,
    });
    const [tBare3, tFill, tPass] = timeEach([bare, filled, () => consumeOnly(fillCols)], RUNS);
    // reference: both loops unrolled 4 rows (bare4, sumFilled4)
    const [tBareU, tFillU] = timeEach([bare4, filled4], RUNS);
    filledRows.push({
      name: `fill() walk vs bare loop, one consumer for all, ${name}`, value: tBare3 / tFill, unit: 'x',
      target: { op: '>=', value: 0.5 },
      note: `one function for every layout, ${FILL} segments per fill(); bare ${tBare3.toFixed(2)} ms, fill ${tFill.toFixed(2)} ms = ${(N / tFill / 1e3).toFixed(0)} M segs/s;`
        + ` ceiling ${(tBare3 / tPass).toFixed(2)}x: the consumer's own pass over the columns, no fill(), takes ${tPass.toFixed(2)} ms`
        + `; both loops unrolled 4 rows: ${(tBareU / tFillU).toFixed(2)}x (bare ${tBareU.toFixed(2)}, fill ${tFillU.toFixed(2)} ms)`,
    });
    if (sharedWalk === null) continue;
    const [tBare2, tShared] = timeEach([bare, sharedWalk], RUNS);
    shared.push({
      name: `  same, one shared next() consumer for all layouts, ${name}`, value: tBare2 / tShared, unit: 'x',
      note: `reference, no target: one function walks every layout with next() (polymorphic call sites); bare ${tBare2.toFixed(2)} ms, cursor ${tShared.toFixed(2)} ms`,
    });
  }
  rows.push(...filledRows, ...shared);

  // Heap: 1 M-entry PhyrList (mixed flags: the flags column is kept) vs a naive array of objects.
  const keep: unknown[] = [];
  let h0 = heapUsed();
  keep.push(makePhyr(true));
  const mixedBytes = heapUsed() - h0;
  h0 = heapUsed();
  keep.push(makePhyr(false));
  const uniformBytes = heapUsed() - h0;
  h0 = heapUsed();
  const naive: { addr: bigint; len: number }[] = [];
  for (let i = 0; i < N; i++) naive.push({ addr: BigInt(i * 3 * PS + (i & 7) * 64), len: PS + (i & 15) });
  keep.push(naive);
  const naiveBytes = heapUsed() - h0;
  const MiB = 1024 * 1024;
  rows.push({ name: 'heap of a 1 M-entry PhyrList (mixed flags)', value: mixedBytes / MiB, unit: 'MiB', target: { op: '<=', value: 24 } });
  rows.push({ name: 'heap of a 1 M-entry PhyrList (uniform flags)', value: uniformBytes / MiB, unit: 'MiB', target: { op: '<=', value: 24 } });
  rows.push({ name: 'heap of naive { addr: bigint, len } objects, 1 M', value: naiveBytes / MiB, unit: 'MiB' });
  rows.push({
    name: 'naive objects / PhyrList heap (mixed flags)', value: naiveBytes / mixedBytes, unit: 'x',
    target: { op: '>=', value: 3 }, note: `kernelBytes ${(big.phyr.kernelBytes / MiB).toFixed(1)} MiB`,
  });
  if (keep.length === 0) console.log(keep);
  return { title: 'phyr core: cursor protocol and PhyrList storage', rows };
}
