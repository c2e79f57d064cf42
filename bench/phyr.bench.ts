// Benchmarks for src/phyr: the cursor protocol against a bare loop over the same typed arrays, per
// layout (1 M entries), and the heap of a 1 M-entry PhyrList against a naive array of objects.
import { heapUsed, timeMs, type BenchRow, type BenchSection } from './harness.ts';
import {
  BvecList, DmaList, PageArray, PageList, PhyrList, RANGE_MMIO, type RangeCursor, type RangeSource,
} from '../src/phyr/index.ts';
import type { CursorColumns } from '../src/phyr/cursor.ts';

const N = 1 << 20;
const POW2 = new Float64Array(64).map((_, k) => 2 ** k);
const PS = 4096;

function cursorSum(src: RangeSource): number {
  let s = 0;
  const c: RangeCursor = src.cursor();
  while (!c.done) {
    s += c.addrNum + c.len;
    c.next();
  }
  return s;
}

function cols(src: { columns(): CursorColumns }): CursorColumns {
  return src.columns();
}

function bareAddrLen(c: CursorColumns): number {
  const a = c.a;
  const l = c.l;
  let s = 0;
  for (let i = 0; i < c.n; i++) s += a[i] + l[i];
  return s;
}

function bareBvec(c: CursorColumns): number {
  const a = c.a;
  const l = c.l32;
  const o = c.o32;
  const ps = c.ps;
  let s = 0;
  for (let i = 0; i < c.n; i++) s += a[i] * ps + o[i] + l[i];
  return s;
}

function barePages(c: CursorColumns): number {
  const a = c.a;
  const ord = c.ord;
  const ps = c.ps;
  let s = 0;
  for (let i = 0; i < c.n; i++) s += a[i] * ps + ps * POW2[ord[i]];
  return s;
}

function barePageArray(c: CursorColumns): number {
  const a = c.a;
  const ps = c.ps;
  let s = 0;
  for (let i = 0; i < c.n; i++) s += a[i] * ps + ps;
  return s;
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
  return {
    phyr, dma: DmaList.sharing(phyr), bvec: bb.build(), plist: plb.build({ firstOffset: 100 }),
    parr: new PageArray(pfns, { pageSize: PS, offset: 100 }),
  };
}

export default function bench(): BenchSection {
  const rows: BenchRow[] = [];

  // One consumer function (cursorSum) walks every layout, as a DMA-mapping loop that accepts any
  // RangeSource would. It is warmed the way such a consumer is in a running system: many short walks
  // over every layout (64 entries each), so V8 optimizes the whole function, not just an OSR entry.
  // The big lists are walked twice during warm-up too, so that the feedback V8 optimizes from has
  // seen their shapes (e.g. totalLen beyond a small integer) before anything is timed.
  const small = makeLayouts(64);
  const smallAll: RangeSource[] = [small.phyr, small.dma, small.bvec, small.plist, small.parr];
  const { phyr, dma, bvec, plist, parr } = makeLayouts(N);
  const bigAll: RangeSource[] = [phyr, dma, bvec, plist, parr];
  let sink = 0;
  // The bare loops are warmed the same way, so the baseline is their best optimized form too.
  const warmBare = (l: Layouts): number =>
    bareAddrLen(cols(l.phyr)) + bareAddrLen(cols(l.dma)) + bareBvec(cols(l.bvec)) + barePages(cols(l.plist)) + barePageArray(cols(l.parr));
  for (let round = 0; round < 2; round++) {
    for (let k = 0; k < 20000; k++) {
      for (const src of smallAll) sink += cursorSum(src);
      sink += warmBare(small);
    }
    for (const src of bigAll) sink += cursorSum(src);
    sink += warmBare({ phyr, dma, bvec, plist, parr });
  }
  const cases: [string, RangeSource, () => number][] = [
    ['phyr', phyr, () => bareAddrLen(cols(phyr))],
    ['dmalist', dma, () => bareAddrLen(cols(dma))],
    ['bvec', bvec, () => bareBvec(cols(bvec))],
    ['pagelist', plist, () => barePages(cols(plist))],
    ['pagearray', parr, () => barePageArray(cols(parr))],
  ];
  for (const [name, src, bare] of cases) {
    // Interleaved runs, minimum of each: the machine is shared, and the minimum is the run least
    // disturbed by other work.
    let tBare = Infinity;
    let tCur = Infinity;
    for (let r = 0; r < 15; r++) {
      tBare = Math.min(tBare, timeMs(() => { sink += bare(); }, 1));
      tCur = Math.min(tCur, timeMs(() => { sink += cursorSum(src); }, 1));
    }
    rows.push({
      name: `cursor walk vs bare loop, ${name}, 1 M entries`, value: tBare / tCur, unit: 'x',
      target: { op: '>=', value: 0.5 },
      note: `bare ${tBare.toFixed(2)} ms, cursor ${tCur.toFixed(2)} ms = ${(N / tCur / 1e3).toFixed(0)} M segs/s`,
    });
  }
  if (sink === 42) console.log(sink);

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
    target: { op: '>=', value: 3 }, note: `kernelBytes ${(phyr.kernelBytes / MiB).toFixed(1)} MiB`,
  });
  if (keep.length === 0) console.log(keep);
  return { title: 'phyr core: cursor protocol and PhyrList storage', rows };
}
