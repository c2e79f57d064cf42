// Models: drivers/iommu/iommu.c (Linux 7.1): the IOMMU core map/unmap API (iommu_map,
// iommu_map_nosync, iommu_sync_map, __iommu_unmap, iommu_unmap, iommu_unmap_fast, iommu_map_sg,
// iommu_iova_to_phys, iommu_iotlb_gather_add_page, iommu_iotlb_sync, iommu_flush_iotlb_all)
// on top of the generic page-table ops (map_pages / unmap_pages of generic_pt/iommu_pt.h), plus
// the device side: a translation through the IOTLB, then the tables. ARM LPAE domains map and
// unmap through io-pgtable-arm's ops instead (core-arm.ts).
// Units: the frame-number entry points (iommuMapPfns ...) take 4 KiB frames whatever the domain's
// granule; on a 16 or 64 KiB ARM LPAE domain they must be multiples of the granule's frames.

import { checkAddr, checkLen, err, ok, type Errno, type Result } from '../base/index.ts';
import type { RangeSource } from '../phyr/index.ts';
import { IommuIotlbGather, type IommuDomain } from './domain.ts';
import type { LeafInfo, PageTable } from './pagetable.ts';
import { frameAddr, safeBigToNum } from './addr-num.ts';
import { armLpaeMapPfns, armLpaeMapUnaligned, armLpaeUnmapPfns } from './core-arm.ts';
import { ArmLpaePageTable } from './pagetable-arm.ts';
import { pgsizeGranules } from './pgsize.ts';
import { IOMMU_READ, IOMMU_WRITE } from './prot.ts';
import './counters.ts';

const OK_VOID: Result<void> = Object.freeze(ok());
const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const POW2: readonly number[] = Array.from({ length: 64 }, (_, k) => 2 ** k);
const U64_MAX = (1n << 64n) - 1n;
const choice = { lg2: 0, count: 0 };
const leaf: LeafInfo = { physPfn: 0, leafIovaPfn: 0, leafLg2: 0, level: 0, prot: 0 };
const scratchFreelist: number[] = [];

/** Throws checkAddr's error for a value the fast path rejected (not a bigint in [0, 2^64)). */
function badAddr(name: string, v: unknown): never {
  checkAddr(name, v);
  throw new RangeError(`${name} must be a 64-bit bigint address, got ${String(v)}`);
}

function checkSize(name: string, v: unknown): number {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return v;
  return checkLen(name, v);
}

function checkDomain(d: unknown): asserts d is IommuDomain {
  if (d === null || typeof d !== 'object' || !('pgsizeBitmap' in d)) throw new TypeError(`d must be an IommuDomain, got ${String(d)}`);
}

/** Splits a 64-bit address into its 4 KiB frame number and in-page offset, as numbers. */
function splitAddr(a: bigint, out: { pfn: number; off: number }): void {
  const n = safeBigToNum(a);
  if (n >= 0) {
    // floor division instead of %: a double's % is a slow fmod call, / 4096 and floor are exact here
    const pfn = Math.floor(n / 4096);
    out.pfn = pfn;
    out.off = n - pfn * 4096;
  } else {
    out.off = Number(a & 4095n);
    out.pfn = Number(a >> 12n);
  }
}

/**
 * splitAddr for the hot map path, validating on the way: one bigint -> number conversion, exact
 * whenever the result is a safe integer; anything else takes the checked slow path.
 * @throws TypeError/RangeError naming `name` if a is not a 64-bit bigint address.
 */
function splitAddrChecked(name: string, a: bigint, out: { pfn: number; off: number }): void {
  const n = safeBigToNum(a);
  if (n >= 0) {
    const pfn = Math.floor(n / 4096);
    out.pfn = pfn;
    out.off = n - pfn * 4096;
    return;
  }
  if (typeof a !== 'bigint' || a < 0n || a > U64_MAX) badAddr(name, a);
  splitAddr(a, out);
}

const sa = { pfn: 0, off: 0 };
const sp = { pfn: 0, off: 0 };

/**
 * iommu_map_nosync: maps [iova, iova + size) to [paddr, paddr + size) with prot, in batches of
 * the largest page size iommu_pgsize allows (one map_pages call each), without the IOTLB sync.
 * Errnos, in the order generic_pt's map_range tests them: EINVAL (not a paging domain; prot has
 * neither IOMMU_READ nor IOMMU_WRITE, with a WARN), ERANGE (paddr beyond the output bits), EINVAL
 * (size 0), EOVERFLOW (iova + size wraps), ENXIO (iova, paddr or size not aligned to the granule),
 * ERANGE (any of the IOVA range outside the table's address space: nothing is mapped), then
 * EADDRINUSE (part of the range is already mapped) or ENOMEM (no page for a table). ARM LPAE
 * tests alignment first (EINVAL), maps nothing for size 0 and has no EOVERFLOW (a range that
 * wraps starts above the input size: ERANGE with a WARN). On failure everything this call
 * mapped is unmapped again; retrying helps only after ENOMEM.
 * ARM LPAE domains follow io-pgtable-arm (core-arm.ts): EEXIST (with a WARN) instead of
 * EADDRINUSE, a block replaces a table even when pages below it are live, a range running past the
 * input size is ERANGE after the part that fits was mapped (and unmapped again), and a prot
 * without READ or WRITE is EINVAL without a WARN.
 */
export function iommuMapNosync(d: IommuDomain, iova: bigint, paddr: bigint, size: number, prot: number): Result<void> {
  splitAddrChecked('iova', iova, sa);
  splitAddrChecked('paddr', paddr, sp);
  if (typeof size !== 'number' || !(size >= 0) || !Number.isSafeInteger(size)) checkSize('size', size);
  if (typeof prot !== 'number' || !Number.isInteger(prot) || prot < 0) throw new TypeError(`prot must be a non-negative integer, got ${String(prot)}`);
  if (d === null || typeof d !== 'object' || d.leafLg2s === undefined) checkDomain(d);
  const pages = Math.floor(size / 4096);
  // a zero size on a generic_pt domain is refused by map_range before any alignment test (below)
  if (d.pt !== null && (sa.off !== 0 || sp.off !== 0 || pages * 4096 !== size) && (size !== 0 || d.pt instanceof ArmLpaePageTable)) {
    d.iommu.mm.stats.iommuMapCalls++;
    const msg = `unaligned: iova 0x${iova.toString(16)} pa 0x${paddr.toString(16)} size 0x${size.toString(16)} min_pagesz 0x${d.granule.toString(16)}`;
    // io-pgtable domains (ARM LPAE) go through __iommu_map_domain_pgtbl's alignment check first: EINVAL
    if (d.pt instanceof ArmLpaePageTable) return err('EINVAL', msg);
    // A generic_pt domain goes straight to its map_range op (drivers/iommu/generic_pt/iommu_pt.h:
    // NS(map_range)), whose prot, output-address and make_range tests come before the page-size
    // choice that refuses an unaligned range with ENXIO
    const early = mapRangeEntryChecks(d, d.pt, sp.pfn, prot, iova, size);
    return early ?? err('ENXIO', msg);
  }
  return iommuMapPfns(d, sa.pfn, sp.pfn, pages, prot);
}

/**
 * @internal iommuMapNosync in 4 KiB frame units, for callers inside the model that hold validated,
 * granule-aligned numbers (the DMA layer's hot paths): iovaPfn, paPfn and pages are non-negative
 * safe integers, prot a non-negative integer, d an IommuDomain; none of this is checked again.
 * Same errnos, messages, counters and undo as iommuMapNosync.
 */
export function iommuMapPfns(d: IommuDomain, iovaPfn: number, paPfn: number, pages: number, prot: number): Result<void> {
  // A short run of 4 KiB leaves (one granule, for scattered memory), kept small enough to be
  // inlined into the DMA layer's link paths: the one map_pages call iommu_pgsize gives it. Inside
  // the table the last map used it is written at once (mapRunCached); a single leaf elsewhere
  // takes mapLeaves. Everything else (and every failure) goes through mapPfnsBatches, which would
  // make the same call. One mapRunCached call site for both counts: each inlined copy of it
  // lengthens the compile the first link waits for. smallRunPages is >= 1 with a 4 KiB leaf size
  // and 0 without one (a 16 or 64 KiB granule: those take mapPfnsBatches).
  const pt = d.pt;
  if (pt !== null && pages >= 1 && pages <= d.smallRunPages && (prot & (IOMMU_READ | IOMMU_WRITE)) !== 0
    && paPfn + pages <= pt.oaPfnLimit && pt.rangeOk(iovaPfn, pages)) {
    const stats = d.iommu.mm.stats;
    if (pt.mapRunCached(iovaPfn, paPfn, pages, prot)) {
      stats.iommuMapCalls++;
      stats.iommuMapPagesCalls++;
      return OK_VOID;
    }
    if (pages === 1) {
      // one map_pages call of one 4 KiB leaf; a failure leaves nothing to unroll
      stats.iommuMapCalls++;
      stats.iommuMapPagesCalls++;
      const e = pt.mapLeaves(iovaPfn, paPfn, 1, 0, prot, scratchFreelist);
      return e === null ? OK_VOID : err(e, `map of iova ${frameAddr(iovaPfn)} size 0x1000 failed`);
    }
  }
  return mapPfnsBatches(d, iovaPfn, paPfn, pages, prot);
}

/**
 * The tests generic_pt's NS(map_range) makes before choosing a page size, in its order: prot
 * without READ or WRITE (WARN, EINVAL), a start address beyond the output bits (ERANGE), then
 * make_range: a zero length (EINVAL), iova + size - 1 past 2^64 - 1 (EOVERFLOW). `iova` is a byte
 * address (bigint) or a 4 KiB frame number. null when all pass.
 */
function mapRangeEntryChecks(d: IommuDomain, pt: PageTable, paPfn: number, prot: number, iova: bigint | number,
  size: number): Result<void> | null {
  const at = typeof iova === 'bigint' ? `0x${iova.toString(16)}` : frameAddr(iova);
  if (!(prot & (IOMMU_READ | IOMMU_WRITE))) {
    d.iommu.mm.events.warn('iommu', `map_pages without IOMMU_READ or IOMMU_WRITE (prot 0x${prot.toString(16)})`);
    return err('EINVAL', `map of iova ${at} size 0x${size.toString(16)} failed: prot 0x${prot.toString(16)} has neither IOMMU_READ nor IOMMU_WRITE`);
  }
  if (paPfn >= pt.oaPfnLimit) return err('ERANGE', `map of pa ${frameAddr(paPfn)} failed: beyond the ${pt.format.oaBits}-bit output addresses`);
  if (size === 0) return err('EINVAL', `map of iova ${at} size 0x0 failed: a zero length is refused by the ${pt.format.name} page table`);
  const start = typeof iova === 'bigint' ? iova : BigInt(iova) << 12n;
  if (start + BigInt(size) - 1n > U64_MAX) return err('EOVERFLOW', `iova ${at} + size 0x${size.toString(16)} wraps`);
  return null;
}

/** iommuMapPfns for any count: the map_pages loop in iommu_pgsize batches, undone on failure. */
function mapPfnsBatches(d: IommuDomain, iovaPfn: number, paPfn: number, pages: number, prot: number): Result<void> {
  const stats = d.iommu.mm.stats;
  stats.iommuMapCalls++;
  const pt = d.pt;
  if (pt === null) return err('EINVAL', `domain type ${d.type} is not a paging domain`);
  if (pt instanceof ArmLpaePageTable) {
    // io-pgtable (ARM LPAE): __iommu_map_domain_pgtbl() refuses what is not aligned to the granule,
    // then maps nothing for size 0 and returns 0.
    const unaligned = armLpaeMapUnaligned(d, iovaPfn, paPfn, pages);
    if (unaligned !== null) return unaligned;
    if (pages === 0) return OK_VOID;
    // no wrap test on this path: a range that wraps starts above the input size, which
    // arm_lpae_map_pages refuses (WARN, ERANGE)
    return armLpaeMapPfns(d, pt, iovaPfn, paPfn, pages, prot);
  }
  // generic_pt (x86-64, VT-d, AMD v1): NS(map_range) refuses before writing anything: prot, the
  // output address, make_range (len 0, wrap), then check_map_range's pt_check_range on the whole
  // IOVA range (drivers/iommu/generic_pt/iommu_pt.h), so a range running past the IOVA space
  // allocates no table and maps nothing
  const early = mapRangeEntryChecks(d, pt, paPfn, prot, iovaPfn, pages * 4096);
  if (early !== null) return early;
  if (!pt.rangeOk(iovaPfn, pages)) {
    return err('ERANGE', `map of iova ${frameAddr(iovaPfn)} size ${frameAddr(pages)} failed: outside the table's IOVA space`);
  }
  const iova0 = iovaPfn, pa0 = paPfn;
  const origPages = pages;
  let errno: Errno | null = null;
  let why = '';
  const freelist = scratchFreelist;
  let flushLo = -1, flushHi = -1;
  while (pages > 0) {
    pgsizeGranules(d.leafLg2s, iovaPfn, paPfn, pages, choice);
    stats.iommuMapPagesCalls++;
    const len = choice.count * POW2[choice.lg2]; // one path for every leaf size: no late first use
    if (paPfn + len > pt.oaPfnLimit) {
      errno = 'ERANGE';
      why = `: pa ${frameAddr(paPfn)} + ${frameAddr(len)} exceeds the ${pt.format.oaBits}-bit output addresses`;
      break;
    }
    const freed = freelist.length;
    const e = pt.mapLeaves(iovaPfn, paPfn, choice.count, choice.lg2, prot, freelist);
    const mapped = pt.mappedPages;
    if (freelist.length !== freed) {
      // tables replaced by a larger leaf (clear_contig gathers them and their range)
      if (flushLo < 0) flushLo = iovaPfn;
      flushHi = iovaPfn + len;
    }
    pages -= mapped;
    if (e !== null) {
      errno = e;
      why = e === 'EADDRINUSE' ? `: something is already mapped at or after iova ${frameAddr(iovaPfn + mapped)}` : ': no page for a table';
      break;
    }
    iovaPfn += mapped;
    paPfn += mapped;
  }
  if (freelist.length !== 0) {
    // NS(map_range) ends with one iommu_iotlb_sync of its gather when tables were freed: walks
    // that may still reference them are flushed once, then the pages are freed (before the
    // caller's unwind on failure)
    d.iotlb.invalidateRange(flushLo, flushHi);
    stats.iotlbRangeInvalidations++;
    d.releaseTables(freelist);
  }
  if (errno !== null) {
    const done = (origPages - pages) * 4096;
    if (done > 0) iommuUnmap(d, BigInt(iova0) << 12n, done);
    return err(errno, `map of iova ${frameAddr(iova0)} pa ${frameAddr(pa0)} size ${frameAddr(origPages)} failed after 0x${done.toString(16)} bytes${why}`);
  }
  return OK_VOID;
}

/**
 * @internal iommuMap in 4 KiB frame units (iommuMapPfns, then the iommu_sync_map step), with the
 * preconditions of iommuMapPfns. Same Result and counters as iommuMap of the same range.
 */
export function iommuMapPfnsSync(d: IommuDomain, iovaPfn: number, paPfn: number, pages: number, prot: number): Result<void> {
  const r = iommuMapPfns(d, iovaPfn, paPfn, pages, prot);
  if (!r.ok) return r;
  // iommuSyncMap: nothing to invalidate in the model, the call is counted
  d.iommu.mm.stats.iommuSyncMapCalls++;
  return OK_VOID;
}

/**
 * iommu_sync_map (->iotlb_sync_map): makes new mappings of [iova, iova + size) visible to the
 * device. The modeled hardware caches no non-present entries, so there is nothing to invalidate;
 * the call is counted (iommuSyncMapCalls). Always ok.
 */
export function iommuSyncMap(d: IommuDomain, iova: bigint, size: number): Result<void> {
  checkDomain(d);
  checkAddr('iova', iova);
  checkSize('size', size);
  d.iommu.mm.stats.iommuSyncMapCalls++;
  return OK_VOID;
}

/**
 * iommu_map: iommuMapNosync then iommuSyncMap. Errnos as iommuMapNosync; nothing stays mapped on
 * failure.
 */
export function iommuMap(d: IommuDomain, iova: bigint, paddr: bigint, size: number, prot: number): Result<void> {
  const r = iommuMapNosync(d, iova, paddr, size, prot);
  if (!r.ok) return r;
  const s = iommuSyncMap(d, iova, size);
  if (!s.ok) iommuUnmap(d, iova, size);
  return s;
}

/**
 * __iommu_unmap. ARM LPAE (io-pgtable) takes __iommu_unmap_domain_pgtbl: iova and size must be
 * aligned to the granule (4, 16 or 64 KiB; else a "unaligned" message and 0). A generic_pt domain hands the byte range
 * straight to its unmap_range op (drivers/iommu/iommu.c: __iommu_unmap) with no alignment check:
 * the walk covers every 4 KiB frame [iova, iova + size - 1] touches; returns bytes unmapped.
 */
function iommuUnmapInner(d: IommuDomain, iova: bigint, size: number, gather: IommuIotlbGather): number {
  const pt = d.pt;
  d.iommu.mm.stats.iommuUnmapCalls++;
  if (pt === null) return 0;
  splitAddr(iova, sa);
  if (pt instanceof ArmLpaePageTable) {
    // __iommu_unmap_domain_pgtbl(): iova and size aligned to the smallest page size (the granule)
    if (sa.off !== 0 || size % d.granule !== 0 || sa.pfn % (d.granule / 4096) !== 0) {
      d.iommu.mm.events.record('INFO', 'iommu', `unaligned: iova 0x${iova.toString(16)} size 0x${size.toString(16)} min_pagesz 0x${d.granule.toString(16)}`);
      return 0;
    }
    return armLpaeUnmapPfns(d, pt, sa.pfn, size / 4096, gather);
  }
  d.iommu.mm.stats.iommuUnmapPagesCalls++;
  // make_range(): a zero length is EINVAL and a range past 2^64 - 1 EOVERFLOW; unmap_range then
  // returns 0 without touching the gather
  if (size === 0) return 0;
  const last = iova + BigInt(size) - 1n;
  if (last > U64_MAX) return 0;
  const pages = Number(last >> 12n) - sa.pfn + 1;
  // an iova inside a page always fails the walk's first-entry test (__unmap_range: a leaf the
  // range starts inside of, or a hole, is -EINVAL), yet unmap_range still gathers (iova, 0)
  return ptUnmapRange(d, pt, sa.pfn, pages, gather, sa.off !== 0 ? iova : null);
}

/**
 * generic_pt's unmap_range over frames [iovaPfn, iovaPfn + pages) (drivers/iommu/generic_pt/
 * iommu_pt.h: NS(unmap_range)): one walk of the whole range. Nothing is unmapped when any of the
 * range is outside the table's IOVA space (make_range -> pt_check_range). The walk stops at the
 * first hole or at a leaf the range starts inside of, and a leaf the range ends inside of goes
 * whole. gather_range_pages then adds [iova, iova + unmapped) to the gather, not the range asked
 * for (nothing when the gather is queued for a flush queue, which flushes everything), and the
 * unlinked tables join its freelist. `unalignedIova` (a byte address inside the first frame)
 * walks nothing and gathers (iova, 0). Returns the bytes unmapped.
 */
function ptUnmapRange(d: IommuDomain, pt: PageTable, iovaPfn: number, pages: number, gather: IommuIotlbGather,
  unalignedIova: bigint | null): number {
  if (!pt.rangeOk(iovaPfn, pages)) return 0;
  const n = unalignedIova === null ? pt.unmapRange(iovaPfn, pages, gather.freelist) : 0;
  if (!gather.queued) {
    // iommu_iotlb_gather_add_range(iova, unmapped): end = iova + unmapped - 1 in unsigned long, so
    // nothing unmapped at iova 0 gathers up to ULONG_MAX
    const start = unalignedIova ?? (iovaPfn <= MAX_SAFE / 4096 ? BigInt(iovaPfn * 4096) : BigInt(iovaPfn) << 12n);
    const endNum = (iovaPfn + n) * 4096 - 1;
    const end = unalignedIova === null && n > 0 && endNum <= MAX_SAFE ? BigInt(endNum) : (start + (BigInt(n) << 12n) - 1n) & U64_MAX;
    if (start < gather.start) gather.start = start;
    if (end > gather.end) gather.end = end;
  }
  return n * 4096;
}

/** The unmap of [iovaPfn, iovaPfn + pages) of a paging domain, granule-aligned; returns bytes unmapped. */
function unmapPages(d: IommuDomain, pt: PageTable, iovaPfn: number, pages: number, gather: IommuIotlbGather): number {
  if (pt instanceof ArmLpaePageTable) return armLpaeUnmapPfns(d, pt, iovaPfn, pages, gather);
  d.iommu.mm.stats.iommuUnmapPagesCalls++;
  if (pages === 0) return 0;
  return ptUnmapRange(d, pt, iovaPfn, pages, gather, null);
}

/**
 * @internal iommuUnmapFast in 4 KiB frame units, for callers inside the model holding validated
 * numbers (iovaPfn, pages: safe integers >= 0; d an IommuDomain; gather an IommuIotlbGather).
 * Same counters, gather and result (bytes unmapped) as iommuUnmapFast of the same range.
 */
export function iommuUnmapFastPfns(d: IommuDomain, iovaPfn: number, pages: number, gather: IommuIotlbGather): number {
  const pt = d.pt;
  d.iommu.mm.stats.iommuUnmapCalls++;
  if (pt === null) return 0;
  return unmapPages(d, pt, iovaPfn, pages, gather);
}

/**
 * iommu_unmap: unmaps [iova, iova + size) and syncs the IOTLB. Returns the bytes unmapped: 0 when
 * the domain is not paging, size is 0, or (generic_pt) any of the range is outside the table's
 * IOVA space or iova is not 4 KiB-aligned; less than size when a hole is met (unmapping stops
 * there); more than size when the range ends inside a larger leaf (the whole leaf goes), which on
 * generic_pt includes a size that is not a multiple of 4 KiB (the walk covers the last byte's
 * page). The gather, and so the IOTLB invalidation, covers [iova, iova + returned bytes).
 * On ARM LPAE (io-pgtable-arm) an unaligned iova or size unmaps nothing, a range that starts or
 * ends inside a block unmaps nothing of that block (WARN_ONCE), a hole WARNs, and a block-sized
 * piece over a table frees the table with whatever it maps.
 */
export function iommuUnmap(d: IommuDomain, iova: bigint, size: number): number {
  checkDomain(d);
  checkAddr('iova', iova);
  checkSize('size', size);
  const g = new IommuIotlbGather();
  const n = iommuUnmapInner(d, iova, size, g);
  d.iotlbSync(g);
  return n;
}

/**
 * iommu_unmap_fast: as iommuUnmap but the invalidation is only gathered; the caller calls
 * iommuIotlbSync (or, with gather.queued, leaves it to the flush queue). Until then the device can
 * still use cached translations of the range.
 */
export function iommuUnmapFast(d: IommuDomain, iova: bigint, size: number, gather: IommuIotlbGather): number {
  checkDomain(d);
  checkAddr('iova', iova);
  checkSize('size', size);
  if (!(gather instanceof IommuIotlbGather)) throw new TypeError(`gather must be an IommuIotlbGather, got ${String(gather)}`);
  return iommuUnmapInner(d, iova, size, gather);
}

/** iommu_iotlb_gather_is_disjoint: the range neither overlaps nor touches the gathered one. */
export function iommuIotlbGatherIsDisjoint(gather: IommuIotlbGather, iova: bigint, size: number): boolean {
  const start = iova, end = iova + BigInt(size) - 1n;
  return gather.end !== 0n && (end + 1n < gather.start || start > gather.end + 1n);
}

/** iommu_iotlb_gather_add_range: widens the gathered range to include [iova, iova + size). */
export function iommuIotlbGatherAddRange(gather: IommuIotlbGather, iova: bigint, size: number): void {
  const end = iova + BigInt(size) - 1n;
  if (iova < gather.start) gather.start = iova;
  if (end > gather.end) gather.end = end;
}

/**
 * iommu_iotlb_gather_add_page: a leaf of `size` bytes at iova was cleared. A different leaf size
 * than gathered so far, or a range disjoint from the gathered one, first syncs what is gathered.
 */
export function iommuIotlbGatherAddPage(d: IommuDomain, gather: IommuIotlbGather, iova: bigint, size: number): void {
  checkDomain(d);
  checkAddr('iova', iova);
  checkLen('size', size, 1);
  if ((gather.pgsize !== 0 && gather.pgsize !== size) || iommuIotlbGatherIsDisjoint(gather, iova, size)) {
    iommuIotlbSync(d, gather);
  }
  gather.pgsize = size;
  iommuIotlbGatherAddRange(gather, iova, size);
}

/**
 * iommu_iotlb_sync: invalidates the gathered range in the IOTLB (iotlbRangeInvalidations), releases
 * the gathered table pages, and re-initialises the gather.
 * Model deviation: `queued` survives the re-init, so a gather stays queued for its whole unmap.
 */
export function iommuIotlbSync(d: IommuDomain, gather: IommuIotlbGather): void {
  checkDomain(d);
  d.iotlbSync(gather);
}

/** iommu_flush_iotlb_all: drops every cached translation of the domain (iotlbGlobalFlushes). */
export function iommuFlushIotlbAll(d: IommuDomain): void {
  checkDomain(d);
  d.flushIotlbAll();
}

/**
 * iommu_map_sg over any range source: physically contiguous ranges are coalesced into one
 * iommuMapNosync each, entries for which `isBusAddress(index)` is true (sg_dma_is_bus_address:
 * P2P bus addresses) are skipped, and one iommuSyncMap covers the whole. Returns the bytes mapped
 * at iova. Errnos as iommuMapNosync; on failure everything mapped here is unmapped again.
 * As in drivers/iommu/iommu.c: iommu_map_sg(), a bus-address entry still ends the pending run when
 * it does not continue it, and the pending run is mapped at the end only when the last entry's
 * address does not continue it (the kernel's loop re-reads the last entry once more): a run
 * followed by a last bus-address entry at its very end, or by an empty last entry, stays unmapped
 * and the bytes returned fall short.
 */
export function iommuMapSg(d: IommuDomain, iova: bigint, ranges: RangeSource, prot: number,
  isBusAddress?: (index: number) => boolean): Result<number> {
  checkDomain(d);
  checkAddr('iova', iova);
  let mapped = 0;
  let start = 0n;
  let len = 0;
  let index = 0;
  const flush = (): Result<void> => {
    const r = iommuMapNosync(d, iova + BigInt(mapped), start, len, prot);
    if (!r.ok) return r;
    mapped += len;
    len = 0;
    return OK_VOID;
  };
  let lastAddr = 0n;
  for (const r of ranges) {
    if (len !== 0 && r.addr !== start + BigInt(len)) {
      const f = flush();
      if (!f.ok) { iommuUnmap(d, iova, mapped); return f; }
    }
    if (!(isBusAddress !== undefined && isBusAddress(index))) {
      if (len !== 0) len += r.len;
      else { start = r.addr; len = r.len; }
    }
    lastAddr = r.addr;
    index++;
  }
  if (len !== 0 && lastAddr !== start + BigInt(len)) {
    const f = flush();
    if (!f.ok) { iommuUnmap(d, iova, mapped); return f; }
  }
  const s = iommuSyncMap(d, iova, mapped);
  if (!s.ok) { iommuUnmap(d, iova, mapped); return s; }
  return ok(mapped);
}

/**
 * The batched map of a bio_vec array: iommuMapSg's mapping (physically contiguous ranges coalesced,
 * bus-address entries skipped, one iommuSyncMap, everything undone on failure) done in ONE
 * page-table walk across the ranges: each range's map_pages continues from the table the previous
 * one reached instead of walking from the root again (iommuTableWalkSteps shows the difference).
 * The table bytes are exactly those of iommuMapSg. Returns the bytes mapped at iova.
 * Model deviation: the kernel has no such call; iommu_map_sg() walks from the root for every
 * contiguous run (each iommu_map_nosync() -> map_pages).
 */
export function iommuMapBatch(d: IommuDomain, iova: bigint, ranges: RangeSource, prot: number,
  isBusAddress?: (index: number) => boolean): Result<number> {
  checkDomain(d);
  const pt = d.pt;
  if (pt === null) return iommuMapSg(d, iova, ranges, prot, isBusAddress);
  pt.beginBatchWalk();
  try {
    return iommuMapSg(d, iova, ranges, prot, isBusAddress);
  } finally {
    pt.endBatchWalk();
  }
}

/**
 * iommu_iova_to_phys: what the page table (not the IOTLB) translates iova to; 0n when unmapped or
 * the domain is blocked; iova itself for an identity domain. On ARM LPAE the bits at and above the
 * 48-bit input size are ignored (the walk masks them), so such an iova reads its alias below.
 */
export function iommuIovaToPhys(d: IommuDomain, iova: bigint): bigint {
  checkDomain(d);
  checkAddr('iova', iova);
  if (d.type === 'identity') return iova;
  if (d.pt === null) return 0n;
  splitAddr(iova, sa);
  let pfn = sa.pfn;
  if (d.pt instanceof ArmLpaePageTable) {
    // io-pgtable-arm.c: arm_lpae_iova_to_phys walks with ARM_LPAE_LVL_IDX, which masks each
    // level's index: address bits at and above the input size are dropped, not refused
    const span = 2 ** (d.pt.format.vaBits - 12);
    pfn -= Math.floor(pfn / span) * span;
  } else if (!d.pt.rangeOk(pfn, 1)) {
    // Model deviation: generic_pt's DOMAIN_NS(iova_to_phys) (drivers/iommu/generic_pt/iommu_pt.h)
    // returns make_range's -ERANGE as the phys_addr_t here; the model answers 0 (docs/model.md)
    return 0n;
  }
  if (!d.pt.lookup(pfn, leaf)) return 0n;
  return leaf.physPfn <= MAX_SAFE / 4096 ? BigInt(leaf.physPfn * 4096 + sa.off) : BigInt(leaf.physPfn) * 4096n + BigInt(sa.off);
}

/** The outcome of one device access through the IOMMU. */
export type IommuTranslation = { ok: true; phys: bigint; prot: number } | { ok: false; reason: string };

/**
 * What a device access to iova sees: a blocked domain faults; an identity domain passes through;
 * a paging domain looks in the IOTLB first (iotlbHits) and on a miss (iotlbMisses) walks the
 * tables and caches the leaf; then the leaf's permission is checked against the access.
 * A stale IOTLB entry (unmapped without a sync) still translates.
 */
export function iommuTranslate(d: IommuDomain, iova: bigint, write: boolean): IommuTranslation {
  checkDomain(d);
  checkAddr('iova', iova);
  if (d.type === 'blocked') return { ok: false, reason: 'blocked domain' };
  if (d.type === 'identity') return { ok: true, phys: iova, prot: IOMMU_READ | IOMMU_WRITE };
  const pt = d.pt;
  if (pt === null) return { ok: false, reason: 'no page table' };
  splitAddr(iova, sa);
  const stats = d.iommu.mm.stats;
  let physPfn: number, prot: number;
  const e = d.iotlb.lookup(sa.pfn);
  if (e !== undefined) {
    stats.iotlbHits++;
    physPfn = e.physPfn + (sa.pfn - e.leafIovaPfn);
    prot = e.prot;
  } else {
    stats.iotlbMisses++;
    if (!pt.rangeOk(sa.pfn, 1) || !pt.lookup(sa.pfn, leaf)) {
      return { ok: false, reason: `no translation for iova 0x${iova.toString(16)}` };
    }
    d.iotlb.insert({ leafIovaPfn: leaf.leafIovaPfn, leafLg2: leaf.leafLg2, physPfn: leaf.physPfn - (sa.pfn - leaf.leafIovaPfn), prot: leaf.prot });
    physPfn = leaf.physPfn;
    prot = leaf.prot;
  }
  if (write && !(prot & IOMMU_WRITE)) return { ok: false, reason: `write to read-only iova 0x${iova.toString(16)}` };
  if (!write && !(prot & IOMMU_READ)) return { ok: false, reason: `read of write-only iova 0x${iova.toString(16)}` };
  return { ok: true, phys: physPfn <= MAX_SAFE / 4096 ? BigInt(physPfn * 4096 + sa.off) : BigInt(physPfn) * 4096n + BigInt(sa.off), prot };
}
