// Tests of the generated cursors (cursors.generated.ts from cursor.gen.ts) and their shared support
// (cursor.ts): the checked-in file is what the generator writes, every layout hands out its own
// class, the walk fix (merge before the virt boundary) and the one mask rule, pos/seek and fill.
// The walk itself is checked against a brute-force reference in test/layouts.property.test.ts.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import { generateCursors } from './cursor.gen.ts';
import { constantRun } from './cursor.ts';

import {
  AddrLenCursor, BvecCursor, PageArrayCursor, PageListCursor, SgCursor, SgDmaCursor,
} from './cursors.generated.ts';
import { BvecList } from './bvec.ts';
import { DmaList } from './dma-list.ts';
import { PageArray } from './page-array.ts';
import { PageList } from './page-list.ts';
import { PhyrList } from './phyr-list.ts';
import { sgAllocTable, type SgTable } from './scatterlist.ts';
import { SEG_FRAME_SIZE, type CursorOptions, type RangeCursor, type RangeSource } from './types.ts';

const GENERATED_PATH = fileURLToPath(new URL('./cursors.generated.ts', import.meta.url));

const ps = 4096;

function walk(c: RangeCursor): [bigint, number, number][] {
  const out: [bigint, number, number][] = [];
  while (!c.done) {
    out.push([c.addr, c.len, c.consumed]);
    c.next();
  }
  return out;
}

/** Segments and stops of a walk, resuming after every stop. */
function segs(c: RangeCursor): (string | [bigint, number])[] {
  const out: (string | [bigint, number])[] = [];
  for (let guard = 0; guard < 1000; guard++) {
    while (!c.done) {
      out.push([c.addr, c.len]);
      c.next();
    }
    if (c.stopReason === 'end') return out;
    out.push(c.stopReason!);
    c.resume();
  }
  throw new Error('no end');
}

/** An SgTable with these (pfn, offset, len) entries, DMA side = the same addresses. */
function sgOf(entries: [bigint, number, number][]): SgTable {
  const r = sgAllocTable(entries.length);
  if (!r.ok) throw new Error(r.errno);
  entries.forEach(([pfn, off, len], i) => {
    r.value.setPage(i, pfn, len, off);
    r.value.setDma(i, pfn * BigInt(ps) + BigInt(off), len);
  });
  return r.value;
}

describe('the generated cursors', () => {
  const phyr = PhyrList.from([{ addr: 0x1000n, len: 100 }, { addr: 0x5000n, len: 200 }]);
  const bvec = BvecList.from([{ pfn: 3n, offset: 10, len: 50 }, { pfn: 9n, offset: 5000, len: 70 }], ps);
  const plist = PageList.from([{ pfn: 4n, order: 2 }, { pfn: 1n, order: 0 }], { pageSize: ps, firstOffset: 100, totalLen: 4 * ps });
  const parr = new PageArray(new Float64Array([7, 2, 5]), { pageSize: ps, offset: 300, len: 2 * ps });
  const sgt = sgOf([[3n, 10, 50], [9n, 5000, 70]]);

  it('cursors.generated.ts is exactly what cursor.gen.ts generates (run npm run gen:cursors)', () => {
    expect(readFileSync(GENERATED_PATH, 'utf8')).toBe(generateCursors());
  });

  it('each layout hands out its own generated class, with or without limits, and clone keeps it', () => {
    const cases: [{ cursor: (o?: CursorOptions) => RangeCursor }, unknown][] = [
      [phyr, AddrLenCursor], [DmaList.sharing(phyr), AddrLenCursor], [bvec, BvecCursor],
      [plist, PageListCursor], [parr, PageArrayCursor], [sgt, SgCursor], [sgt.dmaEntries(), SgDmaCursor],
    ];
    for (const [src, cls] of cases) {
      for (const c of [src.cursor(), src.cursor({ skip: 1, merge: false }), src.cursor({ budget: 10, merge: true })]) {
        expect(c).toBeInstanceOf(cls as typeof AddrLenCursor);
        expect(c.clone()).toBeInstanceOf(cls as typeof AddrLenCursor);
      }
    }
  });

  it('walk the entries with the header trims and count consumed', () => {
    expect(walk(phyr.cursor())).toEqual([[0x1000n, 100, 0], [0x5000n, 200, 100]]);
    expect(walk(bvec.cursor())).toEqual([[3n * 4096n + 10n, 50, 0], [9n * 4096n + 5000n, 70, 50]]);
    expect(walk(sgt.cursor())).toEqual([[3n * 4096n + 10n, 50, 0], [9n * 4096n + 5000n, 70, 50]]);
    expect(walk(sgt.dmaEntries().cursor())).toEqual([[3n * 4096n + 10n, 50, 0], [9n * 4096n + 5000n, 70, 50]]);
    // page list: chunk 4..7 from 100 bytes in, then 100 bytes of page 1
    expect(walk(plist.cursor())).toEqual([[4n * 4096n + 100n, 4 * ps - 100, 0], [4096n, 100, 4 * ps - 100]]);
    // page array: 300 bytes into page 7, all of page 2, then 300 bytes of page 5
    expect(walk(parr.cursor())).toEqual([[7n * 4096n + 300n, ps - 300, 0], [2n * 4096n, ps, ps - 300], [5n * 4096n, 300, 2 * ps - 300]]);
  });

  it('skip lands inside an entry, on a seam, or at the end (also inside a partial last page)', () => {
    expect(walk(parr.cursor({ skip: ps - 300 }))).toEqual([[2n * 4096n, ps, 0], [5n * 4096n, 300, ps]]);
    expect(walk(parr.cursor({ skip: ps }))).toEqual([[2n * 4096n + 300n, ps - 300, 0], [5n * 4096n, 300, ps - 300]]);
    const end = parr.cursor({ skip: 2 * ps });
    expect([end.done, end.stopReason, end.len, end.addrNum, end.flags, end.consumed]).toEqual([true, 'end', 0, 0, 0, 0]);
    const one = new PageArray(new Float64Array([6]), { pageSize: ps, offset: 10, len: 20 });
    expect(walk(one.cursor())).toEqual([[6n * 4096n + 10n, 20, 0]]);
    expect(walk(one.cursor({ skip: 5 }))).toEqual([[6n * 4096n + 15n, 15, 0]]);
    expect(one.cursor({ skip: 20 }).done).toBe(true);
    expect(walk(plist.cursor({ skip: 4 * ps - 150 }))).toEqual([[8n * 4096n - 50n, 50, 0], [4096n, 100, 50]]);
    expect(walk(plist.cursor({ skip: 4 * ps - 50 }))).toEqual([[4096n + 50n, 50, 0]]);
    for (const src of [phyr, bvec, plist, parr, sgt, sgt.dmaEntries()] as RangeSource[]) {
      expect(() => src.cursor({ skip: src.totalLen + 1 }), src.layout).toThrow(/opts\.skip must be <= the source's total length/);
    }
  });

  it('advance, clone and resume', () => {
    const c = parr.cursor();
    c.advance(100);
    expect([c.addr, c.len, c.consumed]).toEqual([7n * 4096n + 400n, ps - 400, 100]);
    const d = c.clone();
    c.advance(ps - 400);
    expect([c.addr, c.len, c.consumed]).toEqual([2n * 4096n, ps, ps - 300]);
    expect([d.addr, d.len, d.consumed]).toEqual([7n * 4096n + 400n, ps - 400, 100]);
    expect(() => c.advance(ps + 1)).toThrow(/bytes must be an integer in \[1, 4096\]/);
    c.resume(5); // a budget from any position
    expect([c.addr, c.len]).toEqual([2n * 4096n, 5]);
    c.next();
    expect([c.done, c.stopReason]).toEqual([true, 'budget']);
    c.resume();
    while (c.next());
    expect([c.done, c.next(), c.len, c.stopReason]).toEqual([true, false, 0, 'end']);
    expect(() => c.advance(1)).toThrow(/finished/);
    c.resume(10); // a walk that reached its end stays done
    expect([c.done, c.stopReason]).toEqual([true, 'end']);
  });

  it('empty scatterlist entries are passed over, also by seek and merge', () => {
    const t = sgOf([[3n, 0, 0], [3n, 0, 100], [3n, 100, 0], [3n, 100, 50], [8n, 0, 0]]);
    expect(walk(t.cursor())).toEqual([[3n * 4096n, 100, 0], [3n * 4096n + 100n, 50, 100]]);
    expect(walk(t.cursor({ merge: true }))).toEqual([[3n * 4096n, 150, 0]]);
    const c = t.cursor();
    c.seek({ idx: 2, off: 0, consumed: 100, budgetEnd: Infinity, resumeAt: 0 });
    expect([c.addr, c.len, c.pos().idx]).toEqual([3n * 4096n + 100n, 50, 3]);
    c.seek({ idx: 0, off: 0, consumed: 0, budgetEnd: Infinity, resumeAt: 0 });
    expect([c.addr, c.len, c.pos().idx]).toEqual([3n * 4096n, 100, 1]);
  });
});

describe('the walk fix: merge first, then the virt boundary, in every layout', () => {
  // [0x1000, 2048] and [0x1800, 2048] are physically adjacent; their seam at 0x1800 is not 4 KiB aligned.
  const ranges = [{ addr: 0x1000n, len: 2048 }, { addr: 0x1800n, len: 2048 }];
  const sources = (): [string, RangeSource][] => {
    const sgt = sgOf([[1n, 0, 2048], [1n, 2048, 2048]]);
    const pa = new PageArray(new Float64Array([2, 3]), { pageSize: 2048 });
    return [
      ['phyr', PhyrList.from(ranges)], ['dmalist', DmaList.from(ranges)],
      ['bvec', BvecList.from([{ pfn: 1n, offset: 0, len: 2048 }, { pfn: 1n, offset: 2048, len: 2048 }], ps)],
      ['pagearray (2 KiB pages)', pa], ['scatterlist', sgt], ['scatterlist dma', sgt.dmaEntries()],
    ];
  };

  it('{ merge: true, virtBoundaryMask: 0xfff } gives one [0x1000, 4096] segment, not a virt-boundary stop at 0x1800 (bvec_try_merge_page before bvec_gap_to_prev)', () => {
    for (const [name, src] of sources()) {
      expect(segs(src.cursor({ merge: true, virtBoundaryMask: 0xfff })), name).toEqual([[0x1000n, 4096]]);
    }
  });

  it('without merge the unaligned seam stays a seam: the walk stops there (bvec_gap_to_prev)', () => {
    for (const [name, src] of sources()) {
      expect(segs(src.cursor({ virtBoundaryMask: 0xfff })), name).toEqual([[0x1000n, 2048], 'virt-boundary', [0x1800n, 2048]]);
    }
  });

  it('a merged seam cut by maxSegmentLen is still no virt-boundary stop', () => {
    for (const [name, src] of sources()) {
      expect(segs(src.cursor({ merge: true, virtBoundaryMask: 0xfff, maxSegmentLen: 2048 })), name)
        .toEqual([[0x1000n, 2048], [0x1800n, 2048]]);
    }
  });

  it('a virt boundary mask of 5 is refused by every layout, the scatterlist included (it used to accept it)', () => {
    const all: RangeSource[] = [...sources().map(([, s]) => s),
      PageList.from([{ pfn: 1n, order: 0 }], { pageSize: ps })];
    for (const src of all) {
      expect(() => src.cursor({ virtBoundaryMask: 5 }), src.layout).toThrow(/opts\.virtBoundaryMask must be 2\^k - 1/);
      expect(() => src.cursor({ virtBoundaryMask: 0x1000 }), src.layout).toThrow(RangeError);
      expect(() => src.cursor({ virtBoundaryMask: '4095' as unknown as number }), src.layout).toThrow(TypeError);
      expect(() => src.cursor({ segBoundaryMask: 0x1000n }), src.layout).toThrow(/opts\.segBoundaryMask/);
      expect(() => src.cursor({ maxSegmentLen: 0 }), src.layout).toThrow(/opts\.maxSegmentLen/);
      expect(src.cursor({ virtBoundaryMask: 0 }).len, src.layout).toBeGreaterThan(0);
    }
  });
});

describe('RangePos: pos() and seek()', () => {
  const l = PhyrList.from([{ addr: 0x1000n, len: 0x1000 }, { addr: 0x3100n, len: 0x200 }, { addr: 0x8000n, len: 0x2000 }]);

  it('is a small plain value that resumes the walk on another cursor, stops and budget included', () => {
    const o = { virtBoundaryMask: 0xfff, maxSegmentLen: 0x800 };
    const c = l.cursor(o);
    c.next();
    expect(c.pos()).toEqual({ idx: 0, off: 0x800, consumed: 0x800, budgetEnd: Infinity, resumeAt: 0 });
    c.next();
    expect([c.done, c.stopReason]).toEqual([true, 'virt-boundary']);
    const stopped = c.pos();
    expect(JSON.parse(JSON.stringify({ ...stopped, budgetEnd: 0 }))).toEqual({ ...stopped, budgetEnd: 0 });
    const d = l.cursor(o);
    d.seek(stopped);
    expect([d.done, d.stopReason]).toEqual([true, 'virt-boundary']); // the stop is part of the position
    c.resume(0x100);
    d.seek(c.pos());
    expect(segs(d)).toEqual(segs(c));
  });

  it('a page layout counts pos.off from where the walk enters the entry', () => {
    const pa = new PageArray(new Float64Array([7, 2]), { pageSize: ps, offset: 300 });
    const c = pa.cursor();
    expect(c.pos()).toEqual({ idx: 0, off: 0, consumed: 0, budgetEnd: Infinity, resumeAt: 0 });
    c.advance(10);
    expect(c.pos().off).toBe(10);
    const d = pa.cursor();
    d.seek(c.pos());
    expect([d.addr, d.len, d.consumed]).toEqual([7n * 4096n + 310n, ps - 310, 10]);
    c.next();
    c.next();
    expect(c.pos()).toEqual({ idx: 2, off: 0, consumed: 2 * ps - 300, budgetEnd: Infinity, resumeAt: 0 });
  });

  it('seek refuses a position that cannot belong to the source, naming the field', () => {
    const c = l.cursor();
    const good = c.pos();
    expect(() => c.seek(null as unknown as typeof good)).toThrow(TypeError);
    expect(() => c.seek({ ...good, idx: 4 })).toThrow(/pos\.idx/);
    expect(() => c.seek({ ...good, idx: 1, off: 0x200 })).toThrow(/pos\.off must be < 512/);
    expect(() => c.seek({ ...good, idx: 3, off: 1 })).toThrow(/pos\.off/);
    expect(() => c.seek({ ...good, consumed: -1 })).toThrow(/pos\.consumed/);
    expect(() => c.seek({ ...good, budgetEnd: 1.5 })).toThrow(/pos\.budgetEnd/);
    expect(() => c.seek({ ...good, consumed: 5, resumeAt: 6 })).toThrow(/pos\.resumeAt/);
    c.seek({ ...good, idx: 3, off: 0 });
    expect([c.done, c.stopReason]).toEqual([true, 'end']);
  });
});

describe('fill(cols, max)', () => {
  const cols = (n: number) => ({ addr: new Float64Array(n), len: new Float64Array(n), flags: new Uint32Array(n) });

  it('writes the segments next() would give, in batches, and consumes them', () => {
    const l = PhyrList.from([{ addr: 0x1000n, len: 10, flags: 1 }, { addr: 0x2000n, len: 20 }, { addr: 0x3000n, len: 30, flags: 2 }]);
    const c = l.cursor({ skip: 4 });
    const k = cols(2);
    expect(c.fill(k, 2)).toBe(2);
    expect([[...k.addr], [...k.len], [...k.flags]]).toEqual([[0x1004, 0x2000], [6, 20], [1, 0]]);
    expect([c.addr, c.consumed]).toEqual([0x3000n, 26]);
    expect(c.fill(k, 2)).toBe(1);
    expect([k.addr[0], k.len[0], k.flags[0], c.done, c.consumed]).toEqual([0x3000, 30, 2, true, 56]);
    expect(c.fill(k, 2)).toBe(0);
  });

  it('under limits it stops with the walk (budget, virt boundary)', () => {
    const l = PhyrList.from([{ addr: 0x1000n, len: 0x1000 }, { addr: 0x3100n, len: 0x200 }]);
    const c = l.cursor({ virtBoundaryMask: 0xfff, maxSegmentLen: 0x400 });
    const k = cols(16);
    expect(c.fill(k, 16)).toBe(4);
    expect(c.stopReason).toBe('virt-boundary');
    c.resume();
    expect(c.fill(k, 16)).toBe(1);
    expect([k.addr[0], k.len[0], c.stopReason]).toEqual([0x3100, 0x200, 'end']);
  });

  it('(frame, frameOff) columns are exact above 2^53, where addr is not', () => {
    const d = DmaList.from([{ addr: (1n << 60n) + 0x12345n, len: 0x100 }, { addr: 0x5000n, len: 8 }]);
    const c = d.cursor();
    const k = { addr: null, frame: new Float64Array(2), frameOff: new Uint32Array(2), len: new Float64Array(2) };
    expect(c.fill(k, 2)).toBe(2);
    expect(BigInt(k.frame[0]) * BigInt(SEG_FRAME_SIZE) + BigInt(k.frameOff[0])).toBe((1n << 60n) + 0x12345n);
    expect([k.frame[1], k.frameOff[1], k.len[1]]).toEqual([5, 0, 8]);
  });

  it('refuses bad columns or max, naming them', () => {
    const c = PhyrList.from([{ addr: 0n, len: 1 }]).cursor();
    expect(() => c.fill(null as never, 1)).toThrow(/cols/);
    expect(() => c.fill({ addr: null, len: new Float64Array(1) }, 1)).toThrow(/cols needs addr/);
    expect(() => c.fill({ addr: new Float64Array(1), len: new Uint32Array(1) as never }, 1)).toThrow(/cols\.len/);
    expect(() => c.fill({ addr: new Float64Array(1), len: new Float64Array(1), frame: new Float64Array(1) }, 1)).toThrow(/frameOff/);
    expect(() => c.fill(cols(2), 3)).toThrow(/max must be an integer in \[0, 2\]/);
    expect(() => c.fill({ ...cols(4), flags: new Uint32Array(1) }, 2)).toThrow(/max/);
    expect(c.fill(cols(2), 0)).toBe(0);
    expect(c.done).toBe(false);
  });

  it('a page list of one order, or of mixed orders, fills the lengths next() gives, in batches', () => {
    const walk = (c: RangeCursor): number[][] => {
      const out: number[][] = [];
      for (; !c.done; c.next()) out.push([c.addrNum, c.len]);
      return out;
    };
    const cases: [string, number[]][] = [
      ['order 0', Array<number>(300).fill(0)],
      ['order 9', Array<number>(70).fill(9)],
      ['mixed', Array.from({ length: 200 }, (_, i) => (i % 7 === 3 ? 2 : 0))],
      ['one order but the last', [...Array<number>(40).fill(1), 0]],
      // entry 16 ends the first batch of 17 (row 0 is entry 0): one order but the batch's last row
      ['one order but a batch end', [...Array<number>(16).fill(1), 0, ...Array<number>(30).fill(1)]],
    ];
    for (const [name, orders] of cases) {
      const b = PageList.builder(4096);
      // every chunk 2048-page aligned (enough for order 9), with a gap after it: nothing merges
      orders.forEach((o, i) => b.pushChunk((1 << 20) + i * 2048, o));
      const pl = b.build({ firstOffset: 12, totalLen: b.pageCount * 4096 - 12 - 300 });
      const want = walk(pl.cursor());
      for (const batch of [1, 15, 16, 17, 37, 512]) {
        const k = cols(batch);
        const got: number[][] = [];
        const c = pl.cursor();
        while (!c.done) {
          const n = c.fill(k, batch);
          for (let j = 0; j < n; j++) got.push([k.addr[j], k.len[j]]);
        }
        expect(got, `${name}, batches of ${batch}`).toEqual(want);
      }
    }
  });

  it('constantRun: c copies of the value, grown on demand, several values kept apart, none above its longest run', () => {
    const all = (a: Float64Array | null, v: number, n: number): boolean => a !== null && a.length === n && a.every((x) => x === v);
    expect(all(constantRun(4096, 3), 4096, 3)).toBe(true);
    expect(all(constantRun(4096, 5000), 4096, 5000)).toBe(true); // grown past the first 256
    expect(all(constantRun(4096, 7), 4096, 7)).toBe(true);
    // more values than are kept: each answer is still right, before and after the table is cleared
    for (let v = 1; v <= 20; v++) expect(all(constantRun(v * 512, 300 + v), v * 512, 300 + v)).toBe(true);
    expect(all(constantRun(4096, 1 << 16), 4096, 1 << 16)).toBe(true);
    expect(constantRun(4096, (1 << 16) + 1)).toBeNull();
    // a page array's fill() copies its lengths from the run and leaves the run as it was
    const pa = new PageArray(new Float64Array([7, 9, 11, 13]), { pageSize: 4096, offset: 0, len: 4 * 4096 - 10 });
    const k = cols(4);
    pa.cursor().fill(k, 4);
    expect([...k.len]).toEqual([4096, 4096, 4096, 4086]);
    expect(all(constantRun(4096, 4), 4096, 4)).toBe(true);
  });
});
