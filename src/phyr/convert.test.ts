import { describe, expect, it } from 'vitest';
import { appendMerge, coalesce, pagesToBvecList, slice, toBvecList, toPageArray, toPageList, toPhyrList, toSgTable } from './convert.ts';
import { EventLog } from '../base/index.ts';
import { PhyrList } from './phyr-list.ts';
import { PageArray } from './page-array.ts';
import { DmaList } from './dma-list.ts';
import { RANGE_MMIO, RANGE_NOPAGE } from './flags.ts';
import type { CursorOptions, Range, RangeCursor, RangeSource } from './types.ts';
import { coverage } from '../../test/fixtures/phyr-reference.ts';

/** A foreign RangeSource (not a phyr layout) that only offers the protocol: an array behind a cursor. */
function foreignSource(ranges: Range[]): RangeSource {
  const src = PhyrList.from(ranges);
  return {
    layout: 'scatterlist', count: ranges.length, totalLen: src.totalLen, kernelBytes: 32 * ranges.length,
    addrFitsNumber: src.addrFitsNumber,
    cursor: (opts?: CursorOptions): RangeCursor => src.cursor(opts),
    [Symbol.iterator]: () => ranges[Symbol.iterator](),
  };
}

describe('conversions', () => {
  const ps = 4096;

  it('say which entry cannot be represented, and why', () => {
    const p = PhyrList.from([
      { addr: 0x1000n, len: 0x1000 }, { addr: 0x3000n, len: 0x800 }, { addr: 0x5000n, len: 0x1000, flags: RANGE_NOPAGE },
    ]);
    const bv = toBvecList(p, ps);
    expect(bv).toMatchObject({ ok: false, errno: 'EINVAL' });
    expect(!bv.ok && bv.message).toMatch(/entry 2: no struct page/);
    const pl = toPageList(p, ps);
    expect(!pl.ok && pl.message).toMatch(/entry 1: seam not page-aligned: range ends at 0x3800/);
    const pa = toPageArray(PhyrList.from([{ addr: 0x1000n, len: 0x1000 }, { addr: 0x2000n, len: 0x1000, flags: RANGE_NOPAGE }]), ps);
    expect(!pa.ok && pa.message).toMatch(/entry 1: no struct page/);
    const mixed = toPageList(PhyrList.from([{ addr: 0x1000n, len: 0x1000 }, { addr: 0x4000n, len: 0x1000, flags: RANGE_MMIO }]), ps);
    expect(!mixed.ok && mixed.message).toMatch(/entry 1: flags .* single-kind/);
    const unalignedStart = toPageList(PhyrList.from([{ addr: 0x1000n, len: 0x1000 }, { addr: 0x4100n, len: 0x100 }]), ps);
    expect(!unalignedStart.ok && unalignedStart.message).toMatch(/entry 1: seam not page-aligned: range starts at 0x4100/);
    const high = toBvecList(PhyrList.from([{ addr: 1n << 60n, len: 1 }]), ps);
    expect(!high.ok && high.message).toMatch(/entry 0: .*2\^53/);
  });

  it('a page array from GUP-like pages coalesces into few phyrs', () => {
    const pa = new PageArray(new Float64Array([7, 8, 9, 10, 30, 31]), { pageSize: ps, offset: 0x80, len: 6 * ps - 0x80 - 0x40 });
    const merged = coalesce(pa);
    expect(merged.layout).toBe('phyr');
    expect([...merged]).toEqual([
      { addr: 7n * 4096n + 0x80n, len: 4 * ps - 0x80, flags: 0 },
      { addr: 30n * 4096n, len: 2 * ps - 0x40, flags: 0 },
    ]);
    const pl = toPageList(pa, ps);
    expect(pl.ok && [...pl.value].length).toBe(4); // 7, 8-9 (order 1), 10, 30-31 (order 1)
    expect(pl.ok && pl.value.kernelBytes).toBe(16 + 4 * 8);
    expect(pa.kernelBytes).toBe(48);
    const back = toPageArray(merged, ps);
    expect(back.ok && [...back.value.pfns]).toEqual([7, 8, 9, 10, 30, 31]);
    expect(coalesce(DmaList.from([{ addr: 0n, len: 1 }, { addr: 1n, len: 1 }])).layout).toBe('dmalist');
  });

  it('splits a phyr longer than 4 GiB - 1 into several bvecs', () => {
    const p = PhyrList.from([{ addr: 0x100000n + 0x10n, len: 2 ** 33 }]);
    const bv = toBvecList(p, ps);
    expect(bv.ok).toBe(true);
    if (!bv.ok) return;
    expect(bv.value.count).toBe(3);
    expect(bv.value.lenAt(0)).toBe(2 ** 32 - ps);
    expect(coverage(bv.value)).toEqual(coverage(p));
    for (let i = 0; i < bv.value.count; i++) expect(bv.value.offsetAt(i)).toBeLessThan(ps);
  });

  it('accept any RangeSource through its cursor', () => {
    const rs = [{ addr: 0x2000n, len: 0x1000, flags: 0 }, { addr: 0x3000n, len: 0x1000, flags: 0 }, { addr: 0x8000n, len: 0x10, flags: 0 }];
    const f = foreignSource(rs);
    expect([...(toPhyrList(f) as { ok: true; value: PhyrList }).value]).toEqual(rs);
    expect(coverage(coalesce(f))).toEqual(coverage(rs));
    const s = slice(f, 0x800, 0x1000);
    expect(s.layout).toBe('phyr');
    expect([...s]).toEqual([{ addr: 0x2800n, len: 0x800, flags: 0 }, { addr: 0x3000n, len: 0x800, flags: 0 }]);
    const pa = toPageArray(f, ps);
    expect(pa.ok && [...pa.value.pfns]).toEqual([2, 3, 8]);
  });

  it('appendMerge merges adjacent ranges with equal flags only', () => {
    const b = PhyrList.builder();
    appendMerge(b, { addr: 0n, len: 10, flags: 0 });
    appendMerge(b, { addr: 10n, len: 10, flags: 0 });
    appendMerge(b, { addr: 20n, len: 10, flags: RANGE_MMIO });
    expect([...b.build()].map((r) => r.len)).toEqual([20, 10]);
  });

  it('slice keeps the layout and checks its window', () => {
    const pa = new PageArray(new Float64Array([1, 2, 5]), { pageSize: ps, flags: new Uint32Array([0, RANGE_MMIO, 0]) });
    const s = slice(pa, ps + 0x10, ps) as PageArray;
    expect(s.layout).toBe('pagearray');
    expect(s.pfns.buffer).toBe(pa.pfns.buffer); // zero-copy
    expect([...s]).toEqual([{ addr: 2n * 4096n + 0x10n, len: ps - 0x10, flags: RANGE_MMIO }, { addr: 5n * 4096n, len: 0x10, flags: 0 }]);
    expect(() => slice(pa, 3 * ps + 1, 0)).toThrow(/offset/);
    expect(() => slice(pa, 10, 3 * ps)).toThrow(/len/);
    expect(() => toBvecList({} as RangeSource, ps)).toThrow(/src must be a RangeSource/);
  });
});

describe('no-limits cursor details (AddrLenCursor)', () => {
  it('counts consumed; resume() sets or clears a budget at any position', () => {
    const p = PhyrList.from([{ addr: 0n, len: 10 }, { addr: 100n, len: 20 }, { addr: 200n, len: 30 }]);
    const c = p.cursor({ skip: 5 });
    expect([c.addr, c.len, c.consumed]).toEqual([5n, 5, 0]);
    c.next();
    c.next();
    expect(c.consumed).toBe(25);
    c.resume(10); // a budget from here on, as after a stop
    expect([c.addr, c.len, c.consumed]).toEqual([200n, 10, 25]);
    c.resume(); // no budget again
    expect([c.addr, c.len, c.consumed]).toEqual([200n, 30, 25]);
    c.advance(7);
    expect([c.addr, c.len, c.consumed]).toEqual([207n, 23, 32]);
    expect(c.next()).toBe(false);
    expect([c.done, c.stopReason, c.len, c.consumed]).toEqual([true, 'end', 0, 55]);
    c.resume(5);
    expect(c.done).toBe(true);
  });
});

describe('toSgTable (__blk_rq_map_sg per phys_vec)', () => {
  it('one entry per range, unmerged, page and offset from the address, flags kept, the last marked SG_END', () => {
    const src = PhyrList.from([{ addr: 0x10800n, len: 0x1800 }, { addr: 0x12000n, len: 0x1000, flags: RANGE_MMIO }]);
    const sgt = toSgTable(src, 4096);
    expect(sgt.ok).toBe(true);
    if (!sgt.ok) return;
    expect(sgt.value.nents).toBe(2);
    expect([sgt.value.pfnAt(0), sgt.value.offsetAt(0), sgt.value.lengthAt(0)]).toEqual([0x10n, 0x800, 0x1800]);
    expect([sgt.value.pfnAt(1), sgt.value.offsetAt(1), sgt.value.lengthAt(1)]).toEqual([0x12n, 0, 0x1000]);
    expect(sgt.value.isEnd(1)).toBe(true);
    expect([...sgt.value].map((r) => r.flags)).toEqual([0, RANGE_MMIO]);
  });

  it('a range beyond UINT_MAX warns on the given log and keeps len mod 2^32; without a log it converts the same', () => {
    const events = new EventLog();
    const src = PhyrList.from([{ addr: 0x1_0000_0000n, len: 5 * 2 ** 30 }]);
    const a = toSgTable(src, 4096, events);
    const b = toSgTable(src, 4096);
    expect(a.ok && b.ok && a.value.lengthAt(0) === 2 ** 30 && b.value.lengthAt(0) === 2 ** 30).toBe(true);
    expect(events.list().map((e) => [e.kind, e.source])).toEqual([['WARN', 'blk-mq-dma']]);
  });

  it('EINVAL for a range without struct page and for an empty source', () => {
    const nopage = toSgTable(PhyrList.from([{ addr: 0x1000n, len: 4096 }, { addr: 0x9000n, len: 4096, flags: RANGE_NOPAGE }]), 4096);
    expect(nopage.ok ? null : [nopage.errno, nopage.message]).toEqual(['EINVAL', expect.stringMatching(/^entry 1: no struct page/)]);
    const empty = toSgTable(PhyrList.from([]), 4096);
    expect(empty.ok ? null : empty.errno).toBe('EINVAL');
  });
});

describe('pagesToBvecList (iov_iter_extract_bvecs: one bio_vec per contiguous run inside one folio)', () => {
  const ps = 4096;
  const bvecs = (b: { count: number; pfnAt(i: number): bigint; offsetAt(i: number): number; lenAt(i: number): number }) =>
    Array.from({ length: b.count }, (_, i) => [Number(b.pfnAt(i)), b.offsetAt(i), b.lenAt(i)]);

  it('joins contiguous pages of one folio, never two folios however adjacent', () => {
    // pfns 0x100..0x103: folio A is 0x100-0x101 (order 1), folio B 0x102-0x103; then 0x200 and 0x202 of folio C (0x200-0x203), not contiguous.
    const folio = (pfn: number): number => (pfn < 0x102 ? 0x102 : pfn < 0x104 ? 0x104 : 0x204);
    const pages = new PageArray(Float64Array.from([0x100, 0x101, 0x102, 0x103, 0x200, 0x202]), { pageSize: ps, offset: 0x80, len: 5 * ps - 0x80 + 0x10 });
    const r = pagesToBvecList(pages, folio);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(bvecs(r.value)).toEqual([[0x100, 0x80, 2 * ps - 0x80], [0x102, 0, 2 * ps], [0x200, 0, ps], [0x202, 0, 0x10]]);
    expect(r.value.totalLen).toBe(pages.totalLen);
    // coalesce, which follows physical contiguity alone (bio_add_page), joins the two folios.
    expect(coalesce(pages).count).toBe(3);
  });

  it('a page without a folio, or with other flags (another pgmap), starts a bio_vec of its own', () => {
    const pages = new PageArray(Float64Array.from([0x10, 0x11, 0x12, 0x13]), { pageSize: ps, flags: Uint32Array.from([0, 0, 0, 1 << 8]) });
    const r = pagesToBvecList(pages, (pfn) => (pfn === 0x10 ? -1 : 0x100));
    expect(r.ok && bvecs(r.value)).toEqual([[0x10, 0, ps], [0x11, 0, 2 * ps], [0x13, 0, ps]]);
  });

  it('the UINT_MAX guard: a folioEnd reporting a 4 GiB folio (no kernel folio is that big) cuts the run at 4 GiB - 4 KiB, whole pages', () => {
    const n = 2 ** 20;
    const pfns = new Float64Array(n);
    for (let i = 0; i < n; i++) pfns[i] = 2 ** 20 + i;
    const r = pagesToBvecList(new PageArray(pfns, { pageSize: ps }), () => 2 ** 21);
    expect(r.ok && bvecs(r.value)).toEqual([[2 ** 20, 0, 2 ** 32 - ps], [2 ** 21 - 1, 0, ps]]);
  });

  it('EINVAL naming the page for RANGE_NOPAGE', () => {
    const r = pagesToBvecList(new PageArray(Float64Array.from([1, 2]), { pageSize: ps, flags: Uint32Array.from([0, RANGE_NOPAGE]) }), () => 4);
    expect(r).toMatchObject({ ok: false, errno: 'EINVAL' });
    expect(!r.ok && r.message).toMatch(/entry 1: no struct page/);
  });
});
