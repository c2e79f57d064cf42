// Models: the conversions the phyr discussion needs between range layouts (Matthew Wilcox, "Phyr Starter", 10 Jan 2022: replace the
// GUP struct page array and bio_vec with phyr; Jason Gunthorpe's reply, 11 Jan 2022: the compact page list and "DMA-direct
// can reuse the CPU list"). Every conversion reads its input only through the cursor protocol (and
// for..of to name an entry in an error), so any RangeSource is accepted, scatterlists included.
// A range that the target layout cannot represent is reported (errno EINVAL with the entry index and
// why), never dropped.

import { checkLen } from '../base/index.ts';
import { err, ok, type EventLog, type FaultHost, type Result } from '../base/index.ts';
import { BvecList, BvecListBuilder } from './bvec.ts';
import { TWO_POW_53 } from './cursor.ts';
import { DmaList, DmaListBuilder } from './dma-list.ts';
import { RANGE_NOPAGE, describeFlags } from './flags.ts';
import { grown } from './layout-util.ts';
import { PageArray, checkPageSize } from './page-array.ts';
import { PageList, PageListBuilder } from './page-list.ts';
import { PhyrList, PhyrListBuilder } from './phyr-list.ts';
import { sgAllocTable, type SgTable } from './scatterlist.ts';
import type { Range, RangeCursor, RangeSource } from './types.ts';

const U32_MAX = 0xffff_ffff;

function checkSource(src: unknown): RangeSource {
  if (src === null || typeof src !== 'object' || typeof (src as RangeSource).cursor !== 'function') {
    throw new TypeError(`src must be a RangeSource, got ${String(src)}`);
  }
  return src as RangeSource;
}

/** Index of the source entry that holds byte `byteOffset` of the walk (error path only). */
function entryIndexAt(src: RangeSource, byteOffset: number): number {
  let i = 0;
  let seen = 0;
  for (const r of src) {
    seen += r.len;
    if (seen > byteOffset) return i;
    i++;
  }
  return Math.max(0, i - 1);
}

function hex(v: bigint | number): string {
  return `0x${v.toString(16)}`;
}

function fail(src: RangeSource, byteOffset: number, why: string): Result<never> {
  return err('EINVAL', `entry ${entryIndexAt(src, byteOffset)}: ${why}`);
}

/** The current segment's start as a number; exact when the source fits (callers check otherwise). */
function segAddr(c: RangeCursor, fits: boolean): number {
  return fits ? c.addrNum : Number(c.addr);
}

/**
 * Appends every segment of `c` to `b` until the cursor is done: merging (push) or not (pushNoMerge),
 * through the number path when the source's addresses fit a number, the bigint path otherwise.
 */
function pushSegments(b: PhyrListBuilder | DmaListBuilder, c: RangeCursor, fits: boolean, merge: boolean): void {
  while (!c.done) {
    if (fits) {
      if (merge) b.push(c.addrNum, c.len, c.flags);
      else b.pushNoMerge(c.addrNum, c.len, c.flags);
    } else if (merge) b.pushBig(c.addr, c.len, c.flags);
    else b.pushBigNoMerge(c.addr, c.len, c.flags);
    c.next();
  }
}

/**
 * Copies any range source into a PhyrList, one entry per source entry (merge: false, default) or
 * with physically adjacent entries of equal flags joined (merge: true).
 * Always succeeds for a valid source (every range is a phyr); returns Result for uniformity.
 */
export function toPhyrList(src: RangeSource, opts: { merge?: boolean } = {}): Result<PhyrList> {
  checkSource(src);
  const merge = opts.merge === true;
  const b = new PhyrListBuilder(Math.max(1, src.count));
  pushSegments(b, src.cursor(), src.addrFitsNumber, merge);
  return ok(b.build());
}

/**
 * Converts any range source to bio_vecs of `pageSize` pages: pfn = addr / pageSize, offset =
 * addr % pageSize. An entry longer than 4 GiB - 1 becomes several bvecs (cut at page multiples).
 * EINVAL: an entry has RANGE_NOPAGE (no struct page to name), or lies above 2^53 bytes.
 */
export function toBvecList(src: RangeSource, pageSize: number): Result<BvecList> {
  checkSource(src);
  const ps = checkPageSize('pageSize', pageSize);
  const b = new BvecListBuilder(ps, Math.max(1, src.count));
  const c = src.cursor({ maxSegmentLen: U32_MAX - (U32_MAX % ps) });
  const fits = src.addrFitsNumber;
  while (!c.done) {
    if (c.flags & RANGE_NOPAGE) {
      return fail(src, c.consumed, `no struct page (flags ${describeFlags(c.flags)}) at ${hex(c.addr)}: cannot be a bio_vec`);
    }
    if (!fits && c.addr + BigInt(c.len) > BigInt(TWO_POW_53)) {
      return fail(src, c.consumed, `range at ${hex(c.addr)} lies above 2^53 bytes: not a model pfn`);
    }
    const a = segAddr(c, fits);
    const pfn = Math.floor(a / ps);
    b.push(pfn, a - pfn * ps, c.len, c.flags);
    c.next();
  }
  return ok(b.build());
}

/**
 * bio_vecs from a pinned struct page * array, grouped the way Linux 7.1.5 direct I/O groups them
 * (block/bio.c: bio_iov_iter_get_pages -> lib/iov_iter.c: iov_iter_extract_bvecs,
 * get_contig_folio_len): a bio_vec grows over the next page only while that page is the next pfn
 * AND lies in the same folio as the bio_vec's first page. Physically adjacent pages of two folios
 * (neighbouring 4 KiB anonymous pages, adjacent THPs or 1 GiB hugetlb pages) start a new bio_vec:
 * unlike bio_add_page (bvec_try_merge_page), the extraction never merges into a bio_vec it has
 * already filled. A change of memory-type flags (a ZONE_DEVICE pgmap:
 * zone_device_pages_have_same_pgmap) also starts a new one (the kernel ends the extraction, and so
 * the bio, there; the next bio starts with that page). bv_offset is the offset in the first
 * page (< pageSize). A bio_vec is bounded by its folio (at most 1 GiB on x86-64), so bv_len's
 * UINT_MAX never binds in the kernel: there the extraction's max_size (BIO_MAX_SIZE - bi_size)
 * bounds the whole bio, and may end it inside a page. The list here is unbounded (see below); a
 * folioEnd that reports a folio past 4 GiB - 1 page has its run cut there, whole pages at a time.
 * `folioEnd(pfn)` is the pfn just past the folio holding page pfn (head + folio_nr_pages), or -1
 * when the page has no folio (such a page is a bio_vec of its own); it is asked once per bio_vec.
 * Model deviation: the list is the bio_vecs of one unbounded extraction; a real bio holds at most
 * BIO_MAX_VECS (256) of them and UINT_MAX bytes, and each extraction call pins at most as many
 * pages as it has bio_vecs left, so a large folio is cut at those call seams too.
 * EINVAL: a page has RANGE_NOPAGE (no struct page).
 */
export function pagesToBvecList(pages: PageArray, folioEnd: (pfn: number) => number): Result<BvecList> {
  if (!(pages instanceof PageArray)) throw new TypeError(`pages must be a PageArray, got ${String(pages)}`);
  if (typeof folioEnd !== 'function') throw new TypeError(`folioEnd must be a function, got ${typeof folioEnd}`);
  const v = pages.columns();
  const ps = v.ps;
  const n = v.n;
  const pfns = v.pfn;
  const fcol = v.f;
  const b = new BvecListBuilder(ps, Math.max(1, Math.min(n, 1 << 16)));
  let curPfn = -1;
  let curOff = 0;
  let curLen = 0;
  let curFlags = 0;
  let nextPfn = -1;
  let curEnd = -1;
  for (let i = 0; i < n; i++) {
    const pfn = pfns[i];
    const flags = fcol === null ? v.fc : fcol[i];
    const len = i === n - 1 ? v.lastLen : i === 0 ? ps - v.firstOff : ps;
    // the next pfn inside the bio_vec's folio is the same folio (get_contig_folio_len)
    if (pfn === nextPfn && pfn < curEnd && flags === curFlags && curLen + len <= U32_MAX) {
      curLen += len;
      nextPfn++;
      continue;
    }
    if (flags & RANGE_NOPAGE) {
      return err('EINVAL', `entry ${i}: no struct page (flags ${describeFlags(flags)}) at pfn ${hex(pfn)}: cannot be a bio_vec`);
    }
    if (curLen > 0) b.push(curPfn, curOff, curLen, curFlags);
    curPfn = pfn;
    curOff = i === 0 ? v.firstOff : 0;
    curLen = len;
    curFlags = flags;
    nextPfn = pfn + 1;
    curEnd = folioEnd(pfn);
  }
  if (curLen > 0) b.push(curPfn, curOff, curLen, curFlags);
  return ok(b.build());
}

/**
 * One scatterlist entry per range of `src`, as block/blk-mq-dma.c: __blk_rq_map_sg() and
 * blk_rq_map_integrity_sg() fill them from struct phys_vec: sg_set_page(phys_to_page(paddr), len,
 * offset_in_page(paddr)), the last entry marked SG_END. Ranges are taken as they are (neither merged
 * nor cut: the block layer's iterator has already merged and bounded them).
 *
 * Since Linux 7.0 ("types: move phys_vec definition to common header") phys_vec.len is size_t, but
 * scatterlist lengths are still unsigned int: a range longer than UINT_MAX hits
 * WARN_ON_ONCE(overflows_type(vec.len, unsigned int)) (a WARN on `events`, source 'blk-mq-dma') and,
 * as sg_set_page()'s unsigned int parameter does, keeps only the low 32 bits of its length: the
 * table then describes fewer bytes than the source (the conversion does not fail).
 * Model deviation: the kernel warns once per boot (WARN_ON_ONCE); the model warns on every such range.
 * EINVAL: a range has no struct page (RANGE_NOPAGE) or lies above 2^53 bytes; ENOMEM from sg_alloc_table
 * (an injected 'sg-table' failure on `faults`).
 */
export function toSgTable(src: RangeSource, pageSize: number, events?: EventLog, faults?: FaultHost): Result<SgTable> {
  checkSource(src);
  const ps = checkPageSize('pageSize', pageSize);
  if (src.count === 0) return err('EINVAL', 'toSgTable: the source holds no ranges');
  const t = sgAllocTable(src.count, faults === undefined ? { pageSize: ps } : { pageSize: ps, faults });
  if (!t.ok) return t;
  const sgt = t.value;
  const fits = src.addrFitsNumber;
  const c = src.cursor();
  let i = 0;
  while (!c.done) {
    if (c.flags & RANGE_NOPAGE) {
      return fail(src, c.consumed, `no struct page (flags ${describeFlags(c.flags)}) at ${hex(c.addr)}: cannot be in a scatterlist`);
    }
    if (!fits && c.addr + BigInt(c.len) > BigInt(TWO_POW_53)) {
      return fail(src, c.consumed, `range at ${hex(c.addr)} lies above 2^53 bytes: not a model pfn`);
    }
    const a = segAddr(c, fits);
    let len = c.len;
    if (len > U32_MAX) {
      events?.warn('blk-mq-dma', `__blk_rq_map_sg: WARN_ON_ONCE(overflows_type(vec.len, unsigned int)): entry ${i} ` +
        `at ${hex(c.addr)} is ${len} bytes; sg length keeps ${len % 2 ** 32}`, { entry: i, len, sgLength: len % 2 ** 32 });
      len %= 2 ** 32;
    }
    const pfn = Math.floor(a / ps);
    sgt.setPage(i, BigInt(pfn), len, a - pfn * ps);
    sgt.setFlags(i, c.flags);
    i++;
    c.next();
  }
  return ok(sgt);
}

/**
 * Walks `src` with physically adjacent ranges joined and checks what page-granular layouts need:
 * one page-aligned seam between consecutive runs, no NOPAGE when `needPage`, a single flags value when
 * `singleFlags`. Calls run(startPfn, pages, flags) per run. Returns the first offset or an error.
 */
function walkPageRuns(
  src: RangeSource, ps: number, needPage: boolean, singleFlags: boolean, layout: string,
  run: (startPfn: number, pages: number, flags: number) => void,
): Result<number> {
  const c = src.cursor({ merge: true });
  const fits = src.addrFitsNumber;
  let firstOffset = 0;
  let prevEnd = -1;
  let flags0 = 0;
  let first = true;
  while (!c.done) {
    if (!fits && c.addr + BigInt(c.len) > BigInt(TWO_POW_53)) {
      return fail(src, c.consumed, `range at ${hex(c.addr)} lies above 2^53 bytes: not a model pfn`);
    }
    const a = segAddr(c, fits);
    const end = a + c.len;
    if (needPage && (c.flags & RANGE_NOPAGE)) {
      return fail(src, c.consumed, `no struct page (flags ${describeFlags(c.flags)}) at ${hex(a)}: cannot be in a ${layout}`);
    }
    if (first) {
      firstOffset = a % ps;
      flags0 = c.flags;
    } else {
      if (prevEnd % ps !== 0) {
        return fail(src, c.consumed - 1, `seam not page-aligned: range ends at ${hex(prevEnd)} (pageSize ${ps}) before another range`);
      }
      if (a % ps !== 0) return fail(src, c.consumed, `seam not page-aligned: range starts at ${hex(a)} (pageSize ${ps})`);
      if (singleFlags && c.flags !== flags0) {
        return fail(src, c.consumed, `flags ${describeFlags(c.flags)} differ from the list's ${describeFlags(flags0)}: a ${layout} is single-kind`);
      }
    }
    const startPfn = Math.floor(a / ps);
    run(startPfn, Math.ceil(end / ps) - startPfn, c.flags);
    prevEnd = end;
    first = false;
    c.next();
  }
  return ok(firstOffset);
}

/**
 * Converts any range source to Gunthorpe's page list: contiguous runs decompose into naturally
 * aligned power-of-two chunks; the first offset and total length go to the header.
 * EINVAL: an interior seam is not page-aligned, flags differ between entries (the list is
 * single-kind), or memory lies above 2^53 bytes.
 */
export function toPageList(src: RangeSource, pageSize: number): Result<PageList> {
  checkSource(src);
  const ps = checkPageSize('pageSize', pageSize);
  const b = new PageListBuilder(ps);
  let flags = 0;
  const r = walkPageRuns(src, ps, false, true, 'page list', (p, n, f) => {
    b.pushRun(p, n);
    flags = f;
  });
  if (!r.ok) return r;
  return ok(b.build({ firstOffset: r.value, totalLen: src.totalLen, flags }));
}

/**
 * Converts any range source to a struct page * array: one entry per base page, per-page flags.
 * EINVAL: an entry has RANGE_NOPAGE, an interior seam is not page-aligned, or memory lies above
 * 2^53 bytes.
 */
export function toPageArray(src: RangeSource, pageSize: number): Result<PageArray> {
  checkSource(src);
  const ps = checkPageSize('pageSize', pageSize);
  let pfns = new Float64Array(Math.max(16, src.count));
  let flg = new Uint32Array(pfns.length);
  let n = 0;
  let uniform = true;
  const r = walkPageRuns(src, ps, true, false, 'page array', (p, pages, f) => {
    if (n + pages > pfns.length) {
      const cap = Math.max(pfns.length * 2, n + pages);
      pfns = grown(pfns, cap);
      flg = grown(flg, cap);
    }
    for (let k = 0; k < pages; k++) {
      pfns[n] = p + k;
      flg[n] = f;
      n++;
    }
    if (f !== flg[0]) uniform = false;
  });
  if (!r.ok) return r;
  return ok(new PageArray(pfns.slice(0, n), {
    pageSize: ps, offset: r.value, len: src.totalLen, flags: uniform ? (n > 0 ? flg[0] : 0) : flg.slice(0, n),
  }));
}

/**
 * Joins physically adjacent ranges with equal flags. A DmaList stays a DmaList; every other layout
 * becomes a PhyrList (the layout that can hold any merged range).
 */
export function coalesce(src: RangeSource): PhyrList | DmaList {
  checkSource(src);
  const c = src.cursor({ merge: true });
  const b = src.layout === 'dmalist' ? new DmaListBuilder() : new PhyrListBuilder();
  pushSegments(b, c, src.addrFitsNumber, true);
  return b.build();
}

/** Appends a range to a builder, merging with the previous entry when physically adjacent with equal flags. */
export function appendMerge(builder: PhyrListBuilder | DmaListBuilder, range: Range): void {
  if (range === null || typeof range !== 'object') throw new TypeError(`range must be a Range, got ${String(range)}`);
  builder.pushBig(range.addr, range.len, range.flags ?? 0);
}

/**
 * The byte window [offset, offset + len) of src. Same layout for phyr, dmalist, bvec, pagelist and
 * pagearray (a page array window shares the pfn storage); any other layout (a scatterlist) gives a
 * PhyrList. The window keeps the source's entry seams (no merging).
 * @throws RangeError when the window is not inside src.
 */
export function slice(src: RangeSource, offset: number, len: number): RangeSource {
  checkSource(src);
  checkLen('offset', offset, 0, src.totalLen);
  checkLen('len', len, 0, src.totalLen - offset);
  if (src instanceof PageArray) {
    if (len === 0) return new PageArray(new Float64Array(0), { pageSize: src.pageSize, flags: src.count > 0 ? src.flagsAt(0) : 0 });
    const ps = src.pageSize;
    const startByte = src.offset + offset;
    const firstPage = Math.floor(startByte / ps);
    const lastPage = Math.floor((startByte + len - 1) / ps);
    let flags: number | Uint32Array = src.count > 0 ? src.flagsAt(0) : 0;
    let uniform = true;
    for (let i = firstPage; i <= lastPage && uniform; i++) if (src.flagsAt(i) !== flags) uniform = false;
    if (!uniform) {
      flags = new Uint32Array(lastPage - firstPage + 1);
      for (let i = firstPage; i <= lastPage; i++) flags[i - firstPage] = src.flagsAt(i);
    } else flags = src.flagsAt(firstPage);
    return new PageArray(src.pfns.subarray(firstPage, lastPage + 1), { pageSize: ps, offset: startByte % ps, len, flags });
  }
  const isDma = src.layout === 'dmalist';
  const b = isDma ? new DmaListBuilder() : new PhyrListBuilder();
  pushSegments(b, src.cursor({ skip: offset, budget: len }), src.addrFitsNumber, false);
  const window = b.build();
  if (isDma || src.layout === 'phyr') return window;
  if (src instanceof BvecList) return unwrapSame(toBvecList(window, src.pageSize));
  if (src instanceof PageList) {
    if (len === 0) return PageList.builder(src.pageSize).build({ flags: src.flags });
    return unwrapSame(toPageList(window, src.pageSize));
  }
  return window;
}

function unwrapSame<T>(r: Result<T>): T {
  if (!r.ok) throw new Error(`internal: a window of a representable list failed to convert: ${r.message}`);
  return r.value;
}
