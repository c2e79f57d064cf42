// Tests of the layout-specialised no-limits cursors of cursor.ts (the general walk is checked against a
// byte-by-byte reference in test/layouts.property.test.ts).
import { describe, expect, it } from 'vitest';
import { AddrLenCursor, BvecCursor, ColumnCursor, PageArrayCursor, PageListCursor } from './cursor.ts';
import { BvecList } from './bvec.ts';
import { DmaList } from './dma-list.ts';
import { PageArray } from './page-array.ts';
import { PageList } from './page-list.ts';
import { PhyrList } from './phyr-list.ts';
import type { RangeCursor } from './types.ts';

const ps = 4096;

function walk(c: RangeCursor): [bigint, number, number][] {
  const out: [bigint, number, number][] = [];
  while (!c.done) {
    out.push([c.addr, c.len, c.consumed]);
    c.next();
  }
  return out;
}

describe('layout-specialised no-limits cursors', () => {
  const phyr = PhyrList.from([{ addr: 0x1000n, len: 100 }, { addr: 0x5000n, len: 200 }]);
  const bvec = BvecList.from([{ pfn: 3n, offset: 10, len: 50 }, { pfn: 9n, offset: 5000, len: 70 }], ps);
  const plist = PageList.from([{ pfn: 4n, order: 2 }, { pfn: 1n, order: 0 }], { pageSize: ps, firstOffset: 100, totalLen: 4 * ps });
  const parr = new PageArray(new Float64Array([7, 2, 5]), { pageSize: ps, offset: 300, len: 2 * ps });

  it('each layout hands out its own class for a walk with no limits, ColumnCursor otherwise', () => {
    const cases: [{ cursor: (o?: object) => RangeCursor }, unknown][] = [
      [phyr, AddrLenCursor], [DmaList.sharing(phyr), AddrLenCursor], [bvec, BvecCursor],
      [plist, PageListCursor], [parr, PageArrayCursor],
    ];
    for (const [src, cls] of cases) {
      expect(src.cursor()).toBeInstanceOf(cls as typeof AddrLenCursor);
      expect(src.cursor({ skip: 1, merge: false })).toBeInstanceOf(cls as typeof AddrLenCursor);
      expect(src.cursor({ budget: 10 })).toBeInstanceOf(ColumnCursor);
      expect(src.cursor().clone()).toBeInstanceOf(cls as typeof AddrLenCursor);
    }
  });

  it('walk the entries with the header trims and count consumed', () => {
    expect(walk(phyr.cursor())).toEqual([[0x1000n, 100, 0], [0x5000n, 200, 100]]);
    expect(walk(bvec.cursor())).toEqual([[3n * 4096n + 10n, 50, 0], [9n * 4096n + 5000n, 70, 50]]);
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
    expect(() => c.resume(5)).toThrow(/opts\.budget/);
    while (c.next());
    expect([c.done, c.next(), c.len]).toEqual([true, false, 0]);
    expect(() => c.advance(1)).toThrow(/finished/);
  });
});
