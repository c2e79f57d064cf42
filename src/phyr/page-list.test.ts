import { describe, expect, it } from 'vitest';
import { PageList, decomposeRun } from './page-list.ts';
import { refSegments, segsOnly, walkCursor } from '../../test/fixtures/phyr-reference.ts';

/** Brute force: the largest aligned power of two that fits, one step at a time. */
function bruteDecompose(pfn: number, pages: number): [number, number][] {
  const out: [number, number][] = [];
  let p = pfn;
  let left = pages;
  while (left > 0) {
    let o = 0;
    while (p % 2 ** (o + 1) === 0 && 2 ** (o + 1) <= left) o++;
    out.push([p, o]);
    p += 2 ** o;
    left -= 2 ** o;
  }
  return out;
}

describe('PageList', () => {
  it('decomposes runs into naturally aligned chunks like brute force', () => {
    for (let pfn = 0; pfn < 70; pfn++) {
      for (let pages = 1; pages < 70; pages++) {
        const got: [number, number][] = [];
        decomposeRun(pfn, pages, (p, o) => got.push([p, o]));
        expect(got).toEqual(bruteDecompose(pfn, pages));
      }
    }
    const big: [number, number][] = [];
    decomposeRun(2 ** 30, 2 ** 18 + 3, (p, o) => big.push([p, o]));
    expect(big).toEqual([[2 ** 30, 18], [2 ** 30 + 2 ** 18, 1], [2 ** 30 + 2 ** 18 + 2, 0]]);
  });

  it('walks the chunks trimmed by the header and accounts 8 B per chunk + 16 B', () => {
    const b = PageList.builder(4096);
    b.pushRun(3, 6); // 3, 4-7, 8
    b.pushRun(100, 1);
    expect(b.count).toBe(4);
    const pl = b.build({ firstOffset: 0x10, totalLen: 7 * 4096 - 0x10 - 0x100 });
    expect(pl.layout).toBe('pagelist');
    expect(pl.kernelBytes).toBe(16 + 4 * 8);
    expect([pl.pfnAt(1), pl.orderAt(1)]).toEqual([4n, 2]);
    const rs = [...pl];
    expect(rs.map((r) => [r.addr, r.len])).toEqual([
      [3n * 4096n + 0x10n, 4096 - 0x10], [4n * 4096n, 4 * 4096], [8n * 4096n, 4096], [100n * 4096n, 4096 - 0x100],
    ]);
    expect(segsOnly(walkCursor(pl.cursor()))).toEqual(rs);
    expect(segsOnly(walkCursor(pl.cursor({ merge: true }))).map((s) => [s.addr, s.len])).toEqual([
      [3n * 4096n + 0x10n, 6 * 4096 - 0x10], [100n * 4096n, 4096 - 0x100],
    ]);
    for (const o of [{ maxSegmentLen: 5000, merge: true }, { segBoundaryMask: 0x3fffn }, { budget: 10000, skip: 5 }]) {
      expect(walkCursor(pl.cursor(o), 7000)).toEqual(refSegments(rs, o, 7000));
    }
    const one = PageList.from([{ pfn: 8n, order: 3 }], { pageSize: 4096, firstOffset: 1, totalLen: 7 * 4096 + 1 });
    expect([...one]).toEqual([{ addr: 8n * 4096n + 1n, len: 7 * 4096 + 1, flags: 0 }]);
  });

  it('rejects chunks and headers the encoding cannot hold', () => {
    expect(() => PageList.from([{ pfn: 6n, order: 2 }], { pageSize: 4096 })).toThrow(/chunks\[0\]\.pfn.*aligned/);
    expect(() => PageList.from([{ pfn: 8n, order: 41 }], { pageSize: 4096 })).toThrow(/order/);
    expect(() => PageList.from([{ pfn: 8n, order: 0 }], { pageSize: 4096, firstOffset: 4096 })).toThrow(/firstOffset/);
    // the walk must end inside the last page
    expect(() => PageList.from([{ pfn: 8n, order: 1 }], { pageSize: 4096, totalLen: 4096 })).toThrow(/totalLen/);
    expect(() => PageList.from([{ pfn: 8n, order: 1 }], { pageSize: 4096, totalLen: 8193 })).toThrow(/totalLen/);
    expect(PageList.builder(4096).build().count).toBe(0);
  });
});
