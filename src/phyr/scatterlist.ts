// Models: include/linux/scatterlist.h, lib/scatterlist.c (Linux 6.x): struct scatterlist, sg_table,
// sg_append_table, chaining (SG_CHAIN / SG_END), sg_alloc_table, sg_alloc_append_table_from_pages,
// sg_alloc_table_from_pages(_segment), sg_free_table, and the sg_dma_* flag helpers (lib/scatterlist.c, include/linux/scatterlist.h).
//
// Storage: one set of typed-array columns over a flat "slot" space. Chunk k owns the slots
// [chunkBase[k], chunkBase[k] + chunkSize[k]); chunks are allocated in order and never interleave, so the
// slot order is the sg_next() order with the chain slots in between. A chain slot is a real slot with
// SG_CHAIN in its link column and the index of the chunk it points to in its pfn column, exactly where the
// kernel's page_link would hold the next chunk's address | SG_CHAIN.

import { checkAddr, checkLen } from '../base/index.ts';
import { type EventLog, type FaultHost, KernelBug, faultInjected } from '../base/index.ts';
import { err, ok, type Result } from '../base/index.ts';
import { grown } from './layout-util.ts';
import type { CursorOptions, Range, RangeCursor, RangeSource } from './types.ts';
import { nextSlot } from './cursor.ts';
import { SgCursor, SgDmaCursor } from './cursors.generated.ts';

/** page_link low bit: this entry points to the next chunk (include/linux/scatterlist.h). */
export const SG_CHAIN = 0x01;
/** page_link low bit: this entry is the last one of the list. */
export const SG_END = 0x02;
/** dma_flags bit: dma_address is a PCI bus address (P2PDMA BUS_ADDR), not to be unmapped. */
export const SG_DMA_BUS_ADDRESS = 1 << 0;
/** dma_flags bit: this list was bounced through swiotlb. */
export const SG_DMA_SWIOTLB = 1 << 1;
/** sizeof(struct scatterlist) on x86-64 with NEED_SG_DMA_LENGTH and NEED_SG_DMA_FLAGS. */
export const SCATTERLIST_BYTES = 32;
/**
 * SG_MAX_SINGLE_ALLOC with 4 KiB pages: 4096 / 32 entries per chunk, one of which is the chain link.
 * The kernel's is PAGE_SIZE / sizeof(struct scatterlist) (include/linux/scatterlist.h), so it
 * depends on the page size: sgMaxSingleAlloc.
 */
export const SG_MAX_SINGLE_ALLOC = 4096 / SCATTERLIST_BYTES;

/**
 * SG_MAX_SINGLE_ALLOC for a page size: the entries of one chunk (a page of scatterlist entries,
 * include/linux/scatterlist.h), 128 with 4 KiB pages, 512 with 16 KiB, 2048 with 64 KiB.
 */
export function sgMaxSingleAlloc(pageSize: number): number {
  return pageSize / SCATTERLIST_BYTES;
}

/**
 * Chain links in a table of `nents` entries allocated whole (sg_alloc_table, __sg_alloc_table):
 * every chunk but the last gives its last slot to the link to the next.
 */
export function sgChainLinks(nents: number, pageSize: number): number {
  const max = sgMaxSingleAlloc(pageSize);
  return nents > max ? Math.ceil((nents - max) / (max - 1)) : 0;
}
/** sizeof(struct sg_table): sgl pointer + nents + orig_nents. */
export const SG_TABLE_BYTES = 16;
/** sizeof(struct sg_append_table): sg_table (16) + prv pointer (8) + total_nents (4) + padding (4). */
export const SG_APPEND_TABLE_BYTES = 32;
/** UINT_MAX: the largest u32 field value, and the max_segment sg_alloc_table_from_pages passes. */
const UINT_MAX = 0xffffffff;
const TWO53 = 2 ** 53;

/** Page frame numbers: bigint, BigUint64Array, or (fast path) a Float64Array of exact integer pfns. */
export type PfnInput = readonly bigint[] | BigUint64Array | Float64Array;

/** Page facts sg_alloc_append_table_from_pages needs; phyr/ knows nothing about the machine. */
export interface SgPageOpts {
  /** PAGE_SIZE; a power of two in [4096, 1 GiB]. Default 4096. */
  readonly pageSize?: number;
  /**
   * dev_pagemap identity of a page (0 = not ZONE_DEVICE). Pages of different pgmaps are never merged
   * (zone_device_pages_have_same_pgmap). Default: every page 0.
   */
  readonly pgmapOf?: (pfn: number) => number;
  /**
   * With pgmapOf: the first pfn after `pfn` whose pgmap may differ from pfn's (pgmapOf is the same on
   * [pfn, pgmapEnd(pfn))), e.g. the end of pfn's memory region. Only saves pgmapOf calls: a build
   * over a run of contiguous pages asks pgmapOf once per run instead of once per page. Default: pfn + 1.
   */
  readonly pgmapEnd?: (pfn: number) => number;
  /** Memory-type range flags (flags.ts) of a page; recorded on each CPU entry from its first page. Default 0. */
  readonly flagsOf?: (pfn: number) => number;
  /** Where WARN_ON()s are recorded (e.g. machine.events); without it they are only visible as the errno. */
  readonly events?: EventLog;
  /**
   * The machine whose fault injection (base/faults.ts, point 'sg-table') may fail a chunk's
   * allocation (sg_kmalloc) of a new table. Omitted: allocations never fail.
   */
  readonly faults?: FaultHost;
}

/** What rawEntry() reports about one physical slot of a chunk. */
export interface SgRawEntry {
  readonly chunk: number;
  readonly slot: number;
  readonly isChain: boolean;
  readonly isEnd: boolean;
  /** For a chain entry: the index of the chunk it links to; otherwise null. */
  readonly chainTo: number | null;
  /** The page (sg_page) as a pfn, or null for no page (or for a chain entry). */
  readonly pfn: bigint | null;
  readonly offset: number;
  readonly length: number;
  readonly dmaAddress: bigint;
  readonly dmaLength: number;
  readonly dmaFlags: number;
  /** Logical entry index (as for_each_sg counts), or null for a chain entry / an unused slot. */
  readonly index: number | null;
}

function checkPageSize(v: unknown): number {
  const p = checkLen('pageSize', v, 4096, 2 ** 30);
  if ((p & (p - 1)) !== 0) throw new RangeError(`pageSize must be a power of two, got ${p}`);
  return p;
}

/** The ranges a cursor walks, as plain values (for..of over a RangeSource). */
function* cursorRanges(c: RangeCursor): Iterator<Range> {
  while (!c.done) {
    yield { addr: c.addr, len: c.len, flags: c.flags };
    c.next();
  }
}

/**
 * pgmapOf asked lazily: only for physically contiguous pages (the only ones whose pgmaps are
 * compared), and once per run of frames that pgmapEnd says share one pgmap.
 */
class PgmapRuns {
  /** Frames [lo, hi) have pgmap id. */
  private lo = 0;
  private hi = 0;
  private id = 0;
  constructor(private readonly of: (pfn: number) => number, private readonly end: ((pfn: number) => number) | undefined) {}

  private get(pfn: number): number {
    if (pfn >= this.lo && pfn < this.hi) return this.id;
    this.id = this.of(pfn);
    this.lo = pfn;
    this.hi = this.end === undefined ? pfn + 1 : Math.max(pfn + 1, this.end(pfn));
    return this.id;
  }

  /** Whether frame b (= a + 1) has another pgmap than frame a. */
  differ(a: number, b: number): boolean {
    if (a >= this.lo && b < this.hi) return false;
    const ida = this.get(a);
    return this.get(b) !== ida;
  }
}

/**
 * The end (exclusive page index) of the entry that starts at page i of pf[0, n): the pages after
 * it join while each is the next pfn after the one before and has its pgmap (pages_are_mergeable),
 * up to maxPages pages in all.
 */
function entryEnd(pf: Float64Array, runs: PgmapRuns | null, i: number, n: number, maxPages: number): number {
  const lim = Math.min(n, i + maxPages);
  let j = i + 1;
  if (runs === null) {
    let want = pf[i] + 1;
    while (j < lim && pf[j] === want) { j++; want++; }
    return j;
  }
  while (j < lim && pf[j] === pf[j - 1] + 1 && !runs.differ(pf[j - 1], pf[j])) j++;
  return j;
}

function checkU32(name: string, v: unknown): number {
  return checkLen(name, v, 0, UINT_MAX);
}

/** SgTable.slotOf's error, out of line (every per-entry accessor inlines slotOf's test). */
function badSgIndex(i: number, origNents: number): never {
  throw new RangeError(`index must be an integer in [0, origNents = ${origNents}), got ${String(i)}`);
}

/**
 * A struct sg_table with its chained chunks of struct scatterlist. CPU entries (orig_nents) are a RangeSource
 * with layout 'scatterlist' (addr = pfn * pageSize + offset); dmaEntries() walks the DMA side (nents entries of
 * dma_address / dma_length).
 */
export class SgTable implements RangeSource {
  readonly layout = 'scatterlist' as const;
  readonly pageSize: number;
  /** @internal */ _origNents = 0;
  /** @internal */ _nents = 0;
  // Chunk directory.
  /** @internal */ _chunkBase: number[] = [];
  /** @internal */ _chunkSize: number[] = [];
  /** @internal logical index of the first entry of each chunk. */
  _chunkFirst: number[] = [];
  /** @internal */ _slots = 0;
  // Columns over slots.
  /** @internal pfn, -1 for no page; for a chain slot the target chunk index. */
  _pfn: Float64Array;
  /** @internal */ _link: Uint8Array;
  /** @internal */ _offset: Uint32Array;
  /** @internal */ _length: Uint32Array;
  /** @internal */ _flags: Uint32Array | null = null;
  /** @internal */ _dmaAddr: BigUint64Array | null = null;
  /** @internal */ _dmaLen: Uint32Array | null = null;
  /** @internal */ _dmaFlags: Uint8Array | null = null;
  /** @internal largest (pfn*pageSize + offset + length) ever stored, for addrFitsNumber. */
  _maxCpuEnd = 0;
  /** @internal */ _maxDmaEnd = 0n;
  /** @internal */ _freed = false;
  private dmaView: SgDmaView | null = null;

  /** @internal use sgAllocTable / sgAllocTableFromPages*. */
  constructor(pageSize = 4096, capacitySlots = 0) {
    this.pageSize = checkPageSize(pageSize);
    const cap = Math.max(capacitySlots, 1);
    this._pfn = new Float64Array(cap).fill(-1);
    this._link = new Uint8Array(cap);
    this._offset = new Uint32Array(cap);
    this._length = new Uint32Array(cap);
  }

  /** Number of CPU entries (orig_nents). */
  get origNents(): number {
    return this._origNents;
  }

  /** Number of DMA entries (nents): equal to origNents until a DMA mapping sets it (dma_map_sgtable). */
  get nents(): number {
    return this._nents;
  }

  set nents(v: number) {
    checkLen('nents', v, 0, this._origNents);
    this._nents = v;
  }

  /** Chunks allocated (each a kmalloc/page of struct scatterlist). */
  get chunkCount(): number {
    return this._chunkSize.length;
  }

  /** Slots allocated over all chunks, chain entries and unused tail slots included. */
  get slotCount(): number {
    return this._slots;
  }

  /** Size in slots of chunk k. */
  chunkSizeAt(k: number): number {
    checkLen('chunk', k, 0, this._chunkSize.length - 1);
    return this._chunkSize[k];
  }

  /** 16 B sg_table header + 32 B per allocated struct scatterlist, chain entries included. */
  get kernelBytes(): number {
    return SG_TABLE_BYTES + SCATTERLIST_BYTES * this._slots;
  }

  // RangeSource over the CPU entries.
  get count(): number {
    return this._origNents;
  }

  get totalLen(): number {
    return this.sumLengths(this._length, this._origNents);
  }

  /** @internal the sum of a length column over the first `count` entries, in sg_next order (0 for no column). */
  sumLengths(col: Uint32Array | null, count: number): number {
    if (col === null) return 0;
    let t = 0;
    for (let i = 0, s = 0; i < count; i++, s = nextSlot(this._link, s)) t += col[s];
    return t;
  }

  get addrFitsNumber(): boolean {
    return this._maxCpuEnd <= TWO53;
  }

  /** A cursor over the CPU entries (for_each_sgtable_sg), applying the segment limits of opts. */
  cursor(opts?: CursorOptions): RangeCursor {
    return new SgCursor(this, opts);
  }

  [Symbol.iterator](): Iterator<Range> {
    return cursorRanges(this.cursor());
  }

  /** The DMA side (for_each_sgtable_dma_sg): nents entries of dma_address / dma_length, layout 'dmalist'. */
  dmaEntries(): RangeSource & { readonly sharesStorage: true } {
    if (this.dmaView === null) this.dmaView = new SgDmaView(this);
    return this.dmaView;
  }

  // ---- per-entry accessors by logical index (for_each_sg order) ----

  /** Slot of logical entry i (follows the chain links). */
  slotOf(i: number): number {
    if (!Number.isSafeInteger(i) || i < 0 || i >= this._origNents) badSgIndex(i, this._origNents);
    return this.slotOfUnchecked(i);
  }

  /** @internal */
  slotOfUnchecked(i: number): number {
    const first = this._chunkFirst;
    // Binary search the last chunk whose first logical index is <= i.
    let lo = 0;
    let hi = first.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (first[mid] <= i) lo = mid;
      else hi = mid - 1;
    }
    return this._chunkBase[lo] + (i - first[lo]);
  }

  /** true when entry i has a page (sg_page != NULL). */
  hasPage(i: number): boolean {
    return this._pfn[this.slotOf(i)] >= 0;
  }

  /** sg_page(sg) as a pfn. @throws RangeError if the entry has no page. */
  pfnAt(i: number): bigint {
    const p = this._pfn[this.slotOf(i)];
    if (p < 0) throw new RangeError(`entry ${i} has no page (sg_page is NULL)`);
    return BigInt(p);
  }

  /** sg->offset. */
  offsetAt(i: number): number {
    return this._offset[this.slotOf(i)];
  }

  /** sg->length. */
  lengthAt(i: number): number {
    return this._length[this.slotOf(i)];
  }

  /** sg_phys(sg) = pfn * pageSize + offset. */
  physAt(i: number, pageSize: number = this.pageSize): bigint {
    checkPageSize(pageSize);
    return this.pfnAt(i) * BigInt(pageSize) + BigInt(this.offsetAt(i));
  }

  /** Range flags recorded for entry i (SgPageOpts.flagsOf or setFlags). */
  flagsAt(i: number): number {
    const s = this.slotOf(i);
    return this._flags === null ? 0 : this._flags[s];
  }

  /** sg_dma_address(sg). */
  dmaAddressAt(i: number): bigint {
    const s = this.slotOf(i);
    return this._dmaAddr === null ? 0n : this._dmaAddr[s];
  }

  /** sg_dma_len(sg) (dma_length). */
  dmaLengthAt(i: number): number {
    const s = this.slotOf(i);
    return this._dmaLen === null ? 0 : this._dmaLen[s];
  }

  /** sg->dma_flags (SG_DMA_BUS_ADDRESS, SG_DMA_SWIOTLB). */
  dmaFlagsAt(i: number): number {
    const s = this.slotOf(i);
    return this._dmaFlags === null ? 0 : this._dmaFlags[s];
  }

  /** SG_END set on entry i (sg_is_last). */
  isEnd(i: number): boolean {
    return (this._link[this.slotOf(i)] & SG_END) !== 0;
  }

  /**
   * sg_set_page(sg, page, len, offset): keeps the SG_END / SG_CHAIN marks.
   * @throws TypeError/RangeError on a bad pfn (bigint < 2^64 / pageSize), len or offset (u32).
   */
  setPage(i: number, pfn: bigint, len: number, offset: number): void {
    const s = this.slotOf(i);
    checkAddr('pfn', pfn);
    const maxPfn = (1n << 64n) / BigInt(this.pageSize) - 1n;
    if (pfn > maxPfn) throw new RangeError(`pfn must be <= 0x${maxPfn.toString(16)} for pageSize ${this.pageSize}, got 0x${pfn.toString(16)}`);
    checkU32('len', len);
    checkU32('offset', offset);
    this.writePage(s, Number(pfn), len, offset);
  }

  /** Sets the range flags of entry i (flags.ts). */
  setFlags(i: number, flags: number): void {
    const s = this.slotOf(i);
    checkU32('flags', flags);
    this.flagsColumn()[s] = flags;
  }

  /**
   * Sets sg_dma_address / sg_dma_len of entry i (what the DMA layer writes).
   * @throws on addr not a 64-bit bigint or len not a u32.
   */
  setDma(i: number, addr: bigint, len: number): void {
    const s = this.slotOf(i);
    checkAddr('addr', addr);
    checkU32('len', len);
    this.dmaColumns();
    this._dmaAddr![s] = addr;
    this._dmaLen![s] = len;
    const end = addr + BigInt(len);
    if (end > this._maxDmaEnd) this._maxDmaEnd = end;
  }

  /** Sets sg->dma_flags of entry i. */
  setDmaFlags(i: number, flags: number): void {
    const s = this.slotOf(i);
    checkLen('flags', flags, 0, 0xff);
    this.dmaColumns();
    this._dmaFlags![s] = flags;
  }

  /** sg_mark_end(sg): sets SG_END and clears SG_CHAIN on entry i. */
  sgMarkEnd(i: number): void {
    this.markEndSlot(this.slotOf(i));
  }

  /** @internal sg_mark_end on a slot. */
  markEndSlot(s: number): void {
    this._link[s] = (this._link[s] | SG_END) & ~SG_CHAIN;
  }

  /** sg_unmark_end(sg): clears SG_END on entry i. */
  sgUnmarkEnd(i: number): void {
    const s = this.slotOf(i);
    this._link[s] &= ~SG_END;
  }

  /**
   * sg_next() by logical index: null when entry i is marked SG_END, otherwise the next entry (through a chain
   * link if the next slot is one). Follows the storage marks, not origNents.
   */
  sgNext(i: number): number | null {
    const s = this.slotOf(i);
    if (this._link[s] & SG_END) return null;
    return i + 1;
  }

  /** The physical slot `slot` of chunk `chunk`, as the kernel has it in memory. */
  rawEntry(chunk: number, slot: number): SgRawEntry {
    checkLen('chunk', chunk, 0, this._chunkSize.length - 1);
    checkLen('slot', slot, 0, this._chunkSize[chunk] - 1);
    const s = this._chunkBase[chunk] + slot;
    const link = this._link[s];
    const isChain = (link & SG_CHAIN) !== 0;
    const usable = isChain ? -1 : this._chunkFirst[chunk] + slot;
    const index = usable >= 0 && usable < this._origNents ? usable : null;
    const p = this._pfn[s];
    return {
      chunk, slot, isChain, isEnd: (link & SG_END) !== 0,
      chainTo: isChain ? p : null,
      pfn: isChain || p < 0 ? null : BigInt(p),
      offset: this._offset[s], length: this._length[s],
      dmaAddress: this._dmaAddr === null ? 0n : this._dmaAddr[s],
      dmaLength: this._dmaLen === null ? 0 : this._dmaLen[s],
      dmaFlags: this._dmaFlags === null ? 0 : this._dmaFlags[s],
      index,
    };
  }

  // ---- internals ----

  /** @internal */
  writePage(s: number, pfn: number, len: number, offset: number): void {
    this._pfn[s] = pfn;
    this._length[s] = len;
    this._offset[s] = offset;
    const end = pfn * this.pageSize + offset + len;
    if (end > this._maxCpuEnd) this._maxCpuEnd = end;
  }

  /** @internal */
  flagsColumn(): Uint32Array {
    if (this._flags === null) this._flags = new Uint32Array(this._pfn.length);
    else if (this._flags.length < this._pfn.length) this._flags = grown(this._flags, this._pfn.length);
    return this._flags;
  }

  private dmaColumns(): void {
    const cap = this._pfn.length;
    if (this._dmaAddr === null) {
      this._dmaAddr = new BigUint64Array(cap);
      this._dmaLen = new Uint32Array(cap);
      this._dmaFlags = new Uint8Array(cap);
    } else if (this._dmaAddr.length < cap) {
      this._dmaAddr = grown(this._dmaAddr, cap);
      this._dmaLen = grown(this._dmaLen!, cap);
      this._dmaFlags = grown(this._dmaFlags!, cap);
    }
  }

  /** @internal grows the slot columns to hold at least `need` slots. */
  ensureSlots(need: number): void {
    const cap = this._pfn.length;
    if (need <= cap) return;
    const n = Math.max(need, cap * 2);
    this._pfn = grown(this._pfn, n).fill(-1, cap); // -1: no page in the new slots
    this._link = grown(this._link, n);
    this._offset = grown(this._offset, n);
    this._length = grown(this._length, n);
    if (this._flags !== null) this.flagsColumn();
    if (this._dmaAddr !== null) this.dmaColumns();
  }

  /**
   * @internal sg_kmalloc + sg_init_table: a new chunk of `size` zeroed slots with SG_END on its last slot;
   * its first slot gets logical index `firstLogical`. Returns the chunk index.
   */
  allocChunk(size: number, firstLogical: number): number {
    this.ensureSlots(this._slots + size);
    const k = this._chunkSize.length;
    const base = this._slots;
    this._chunkBase.push(base);
    this._chunkSize.push(size);
    this._chunkFirst.push(firstLogical);
    this._slots += size;
    this._link[base + size - 1] = SG_END;
    return k;
  }

  /** @internal sg_chain: turns slot s into a link to chunk k (page_link = chunk | SG_CHAIN, offset = length = 0). */
  chainSlot(s: number, k: number): void {
    this._pfn[s] = k;
    this._link[s] = SG_CHAIN;
    this._offset[s] = 0;
    this._length[s] = 0;
  }

  /** @internal every DMA address (and end) below 2^53. */
  get dmaFitsNumber(): boolean {
    return this._maxDmaEnd <= BigInt(TWO53);
  }

  /** @internal sg_free_table: drops every chunk. */
  release(): void {
    this._chunkBase = [];
    this._chunkSize = [];
    this._chunkFirst = [];
    this._slots = 0;
    this._origNents = 0;
    this._nents = 0;
    this._pfn = new Float64Array(1).fill(-1);
    this._link = new Uint8Array(1);
    this._offset = new Uint32Array(1);
    this._length = new Uint32Array(1);
    this._flags = null;
    this._dmaAddr = null;
    this._dmaLen = null;
    this._dmaFlags = null;
    this._maxCpuEnd = 0;
    this._maxDmaEnd = 0n;
    this._freed = true;
  }
}

/** The DMA side of an SgTable as a RangeSource (layout 'dmalist'); shares the table's storage. */
class SgDmaView implements RangeSource {
  readonly layout = 'dmalist' as const;
  readonly sharesStorage = true as const;
  private readonly sgt: SgTable;
  constructor(sgt: SgTable) {
    this.sgt = sgt;
  }
  get count(): number {
    return this.sgt.nents;
  }
  get totalLen(): number {
    return this.sgt.sumLengths(this.sgt._dmaLen, this.sgt.nents);
  }
  /** The same structure as the CPU side: the table's kernelBytes (do not add both). */
  get kernelBytes(): number {
    return this.sgt.kernelBytes;
  }
  get addrFitsNumber(): boolean {
    return this.sgt.dmaFitsNumber;
  }
  cursor(opts?: CursorOptions): RangeCursor {
    return new SgDmaCursor(this.sgt, opts);
  }
  [Symbol.iterator](): Iterator<Range> {
    return cursorRanges(this.cursor());
  }
}

/**
 * struct sg_append_table: an SgTable being built by repeated sgAllocAppendTableFromPages calls.
 * prv is the logical index of the last populated entry (null before the first call).
 */
export class SgAppendTable {
  readonly sgt: SgTable;
  /** Logical index of the last populated entry (sgt_append->prv), null before the first call. */
  prv: number | null = null;
  /** Slots allocated over all chunks minus the chain links (total_nents). */
  totalNents = 0;
  /** @internal slot of prv. */
  _prvSlot = -1;

  constructor(opts?: { pageSize?: number }) {
    this.sgt = new SgTable(opts?.pageSize ?? 4096, 0);
  }

  /** 32 B sg_append_table header (embedding the sg_table) + 32 B per allocated scatterlist slot. */
  get kernelBytes(): number {
    return this.sgt.kernelBytes - SG_TABLE_BYTES + SG_APPEND_TABLE_BYTES;
  }
}

/**
 * sg_alloc_table(): a table of `nents` empty entries (no pages) in chained chunks of
 * sgMaxSingleAlloc(pageSize) (128 with 4 KiB pages: 127 usable + 1 chain link except the last
 * chunk), nents = origNents = `nents`, SG_END on the last entry.
 * Errors: EINVAL for nents == 0; ENOMEM when a chunk's allocation fails (only by fault injection,
 * point 'sg-table' on opts.faults: sg_alloc_table then frees what it built, so nothing is kept).
 * @throws RangeError if nents is not a u32.
 */
export function sgAllocTable(nents: number, opts?: { pageSize?: number; faults?: FaultHost }): Result<SgTable> {
  checkU32('nents', nents);
  if (nents === 0) return err('EINVAL', 'sg_alloc_table with nents == 0');
  const pageSize = opts?.pageSize ?? 4096;
  const sgt = new SgTable(pageSize, nents + sgChainLinks(nents, pageSize));
  const max = sgMaxSingleAlloc(sgt.pageSize);
  let left = nents;
  let first = 0;
  let prvChainSlot = -1;
  while (left > 0) {
    let alloc = left;
    let usable = left;
    if (alloc > max) {
      alloc = max;
      usable = alloc - 1;
    }
    if (opts?.faults !== undefined && faultInjected(opts.faults, 'sg-table', `sg_alloc_table chunk of ${alloc}`)) {
      return err('ENOMEM', `sg_alloc_table: no memory for a chunk of ${alloc} entries`);
    }
    const k = sgt.allocChunk(alloc, first);
    if (prvChainSlot >= 0) sgt.chainSlot(prvChainSlot, k);
    left -= usable;
    first += usable;
    const base = sgt._chunkBase[k];
    if (left > 0) prvChainSlot = base + max - 1;
    else sgt._link[base + usable - 1] = SG_END;
  }
  sgt._origNents = nents;
  sgt._nents = nents;
  return ok(sgt);
}

/** sg_free_table(): releases every chunk; the table is empty afterwards (freeing twice is a no-op, as in the kernel). */
export function sgFreeTable(sgt: SgTable): void {
  sgt.release();
}

/** sg_free_append_table(): releases the append table's chunks and resets it. */
export function sgFreeAppendTable(append: SgAppendTable): void {
  append.sgt.release();
  append.prv = null;
  append._prvSlot = -1;
  append.totalNents = 0;
}

/** Normalizes PfnInput to a Float64Array (no copy for Float64Array) after validating every pfn. */
function pfnsToFloat64(pfns: PfnInput, pageSize: number): Float64Array {
  const maxPfn = 2 ** 64 / pageSize - 1;
  if (pfns instanceof Float64Array) {
    for (let i = 0; i < pfns.length; i++) {
      const p = pfns[i];
      if (!(p >= 0 && p <= maxPfn && Math.floor(p) === p)) {
        throw new RangeError(`pfns[${i}] must be an integer pfn in [0, ${maxPfn}], got ${p}`);
      }
    }
    return pfns;
  }
  if (!(pfns instanceof BigUint64Array) && !Array.isArray(pfns)) {
    throw new TypeError(`pfns must be a bigint[], BigUint64Array or Float64Array, got ${typeof pfns}`);
  }
  const out = new Float64Array(pfns.length);
  const maxBig = BigInt(maxPfn);
  for (let i = 0; i < pfns.length; i++) {
    const p: unknown = pfns[i];
    if (typeof p !== 'bigint') throw new TypeError(`pfns[${i}] must be a bigint, got ${typeof p} ${String(p)}`);
    if (p < 0n || p > maxBig) throw new RangeError(`pfns[${i}] must be in [0, ${maxPfn}], got ${p}n`);
    out[i] = Number(p);
  }
  return out;
}

function warnOrNot(opts: SgPageOpts | undefined, message: string, data: Record<string, unknown>): void {
  opts?.events?.warn('scatterlist', message, data);
}

/**
 * The entries pages [start, n) of pf form (entryEnd). Like writeEntries, a function of its own:
 * V8 optimises a long loop while it runs (on-stack replacement) and reuses that code on later
 * calls, so a loop followed by code that had not run yet deoptimises at its exit on every call.
 */
function countEntries(pf: Float64Array, runs: PgmapRuns | null, start: number, n: number, maxPages: number): number {
  let chunks = 0;
  for (let i = start; i < n; i = entryEnd(pf, runs, i, n, maxPages)) chunks++;
  return chunks;
}

/**
 * sg_alloc_append_table_from_pages()'s loop: writes the `chunks` entries pages [start, n) of pf
 * form after the table's last slot, taking a new chunk of slots (chained from the old one) when
 * only a chunk's last slot is left and more than one entry is still needed (get_next_sg). Returns
 * the slot of the last entry, or ENOMEM when an injected chunk failure stopped it. flagsOf and
 * faults come as arguments, not in opts: callers that pass no opts would leave the loads of its
 * fields without type feedback, and the optimised loop would be thrown away at the first caller
 * that passes them.
 */
function writeEntries(append: SgAppendTable, pf: Float64Array, runs: PgmapRuns | null, start: number, n: number,
  maxPages: number, chunks: number, leftPages: number, size: number, offset: number,
  flagsOf: SgPageOpts['flagsOf'], faults: SgPageOpts['faults']): number | Result<never> {
  const sgt = append.sgt;
  const invP = 1 / sgt.pageSize;
  let s = append._prvSlot;
  let remaining = size;
  let off = offset;
  let cur = start;
  let logical = append.prv === null ? 0 : append.prv + 1;
  const fresh = append.prv === null;
  const max = sgMaxSingleAlloc(sgt.pageSize);
  for (let c = 0; c < chunks; c++) {
    const j = entryEnd(pf, runs, cur, n, maxPages);
    const needed = chunks - c + leftPages;
    let next = s + 1;
    if (s < 0 || (needed !== 1 && (sgt._link[next] & SG_END) !== 0)) {
      const alloc = Math.min(needed, max);
      // Model deviation: an injected chunk failure ('sg-table') is modeled for a new table only (what
      // sg_alloc_table_from_pages_segment builds and frees on error); appending to a table that holds
      // entries already never fails here.
      if (fresh && faults !== undefined && faultInjected(faults, 'sg-table', `sg_alloc_append_table_from_pages chunk of ${alloc}`)) {
        return err('ENOMEM', `sg_alloc_append_table_from_pages: no memory for a chunk of ${alloc} entries`);
      }
      const k = sgt.allocChunk(alloc, logical);
      if (s >= 0) {
        append.totalNents += alloc - 1;
        sgt.chainSlot(next, k);
      } else {
        append.totalNents = alloc;
      }
      next = sgt._chunkBase[k];
    }
    s = next;
    const chunkLen = (j - cur) / invP - off;
    sgt.writePage(s, pf[cur], Math.min(remaining, chunkLen), off);
    if (flagsOf) sgt.flagsColumn()[s] = flagsOf(pf[cur]);
    remaining -= chunkLen;
    off = 0;
    cur = j;
    logical++;
  }
  return s;
}

/**
 * sg_alloc_append_table_from_pages(): adds the pages to `append`, merging runs of physically contiguous pages
 * of the same pgmap into one entry of at most maxSegment (rounded down to the page size) bytes. With a previous
 * call (append.prv set), pages contiguous with the last entry are first merged into it. `leftPages` tells how
 * many more pages later calls will add: it sizes the chunks, and 0 marks the last entry SG_END. Afterwards
 * append.sgt.nents === append.sgt.origNents === entries so far.
 *
 * Errors (nothing changed): EINVAL (with a WARN) when maxSegment < pageSize after rounding down, or when an
 * appending call (append.prv set) passes a non-zero offset. Retrying with the same arguments cannot help.
 * A call that needs a new entry after the list was closed (a previous call had leftPages == 0, or fewer than
 * announced) dereferences NULL in the kernel: recorded as a BUG and KernelBug is thrown.
 *
 * @throws TypeError/RangeError for malformed arguments: pfns empty or not pfns, offset >= pageSize, size not
 *   covering the last page (the kernel does not check this; its unsigned arithmetic wraps), maxSegment or
 *   leftPages not a u32.
 */
export function sgAllocAppendTableFromPages(
  append: SgAppendTable, pfns: PfnInput, offset: number, size: number, maxSegment: number, leftPages: number,
  opts?: SgPageOpts,
): Result<void> {
  if (!(append instanceof SgAppendTable)) throw new TypeError(`append must be an SgAppendTable, got ${String(append)}`);
  const sgt = append.sgt;
  const P = sgt.pageSize;
  if (opts?.pageSize !== undefined && checkPageSize(opts.pageSize) !== P) {
    throw new RangeError(`opts.pageSize (${opts.pageSize}) must equal the append table's pageSize (${P})`);
  }
  const pf = pfnsToFloat64(pfns, P);
  const n = pf.length;
  if (n === 0) throw new RangeError('pfns must hold at least one page, got 0 (the kernel reads pages[0])');
  checkLen('offset', offset, 0, P - 1);
  checkLen('size', size);
  // Model deviation: the kernel trusts size; one that leaves a whole page unused (or overruns the pages)
  // makes its unsigned size arithmetic wrap, so the model rejects it as misuse.
  // byte counts as n / invP, not n * P: a small-integer product overflows (and deoptimises) past 2 GiB
  const invP = 1 / P;
  const cover = n / invP - offset;
  if (size > cover || size <= cover - P) {
    throw new RangeError(`size must cover the last of ${n} pages: in (${cover - P}, ${cover}], got ${size}`);
  }
  checkU32('maxSegment', maxSegment);
  checkU32('leftPages', leftPages);

  const maxPages = Math.floor(maxSegment * invP);
  const maxSeg = maxPages / invP;
  if (maxSeg < P) {
    warnOrNot(opts, 'sg_alloc_append_table_from_pages: max_segment < PAGE_SIZE', { maxSegment, pageSize: P });
    return err('EINVAL', `maxSegment ${maxSegment} is below the page size ${P} after rounding down`);
  }
  if (append.prv !== null && offset !== 0) {
    warnOrNot(opts, 'sg_alloc_append_table_from_pages: offset != 0 when appending', { offset });
    return err('EINVAL', `offset must be 0 when appending to a table, got ${offset}`);
  }

  // pages_are_mergeable(b after a): pfn(b) == pfn(a) + 1 and same pgmap.
  const pgmapOf = opts?.pgmapOf;
  const runs = pgmapOf ? new PgmapRuns(pgmapOf, opts?.pgmapEnd) : null;

  let start = 0;
  let s = append._prvSlot;
  if (append.prv !== null) {
    const ps = append._prvSlot;
    const len0 = sgt._length[ps];
    const nextPfn = sgt._pfn[ps] + Math.floor((sgt._offset[ps] + len0) * invP);
    // the entry grows by whole pages while it stays within maxSeg: pages 0 .. entryEnd's end, when
    // page 0 is mergeable with the entry's last page
    const room = Math.floor((maxSeg - len0) * invP);
    if (pf[0] === nextPfn && room > 0 && (runs === null || !runs.differ(nextPfn - 1, pf[0]))) {
      start = entryEnd(pf, runs, 0, n, room);
      // Apply after the scan so a later BUG cannot leave a half-merged entry behind.
      sgt.writePage(ps, sgt._pfn[ps], len0 + start / invP, sgt._offset[ps]);
      if (start === n) {
        if (leftPages === 0) sgt.markEndSlot(ps);
        return ok();
      }
    }
  }
  const prvLenBefore = s >= 0 ? sgt._length[s] - start / invP : 0;

  const chunks = countEntries(pf, runs, start, n, maxPages);

  // Closed list: the kernel's get_next_sg would call sg_next() on an SG_END entry and dereference NULL.
  if (s >= 0 && (sgt._link[s] & SG_END)) {
    if (start > 0) sgt.writePage(s, sgt._pfn[s], prvLenBefore, sgt._offset[s]);
    const message = 'NULL pointer dereference in get_next_sg: appending after the last entry was marked SG_END (leftPages too small)';
    const data = { prv: append.prv, leftPages };
    if (opts?.events) opts.events.bug('scatterlist', message, data);
    throw new KernelBug({ seq: -1, kind: 'BUG', source: 'scatterlist', message, data });
  }

  // Reserve the slots up front (chunks plus their chain links) instead of growing chunk by chunk.
  sgt.ensureSlots(sgt._slots + chunks + Math.ceil(chunks / (sgMaxSingleAlloc(sgt.pageSize) - 1)) + 1);
  const last = writeEntries(append, pf, runs, start, n, maxPages, chunks, leftPages, size, offset, opts?.flagsOf, opts?.faults);
  if (typeof last !== 'number') return last;
  s = last;
  sgt._nents += chunks;
  sgt._origNents = sgt._nents;
  append.prv = sgt._origNents - 1;
  append._prvSlot = s;
  if (leftPages === 0) sgt.markEndSlot(s);
  return ok();
}

/**
 * sg_alloc_table_from_pages_segment(): a new table from a page array, contiguous pages (same pgmap) merged into
 * entries of at most maxSegment bytes (rounded down to the page size). nents = origNents = entries.
 * Errors: EINVAL (with a WARN) when maxSegment < pageSize after rounding down.
 * @throws TypeError/RangeError for malformed arguments (see sgAllocAppendTableFromPages).
 */
export function sgAllocTableFromPagesSegment(
  pfns: PfnInput, offset: number, size: number, maxSegment: number, opts?: SgPageOpts,
): Result<SgTable> {
  const append = new SgAppendTable({ pageSize: opts?.pageSize ?? 4096 });
  const r = sgAllocAppendTableFromPages(append, pfns, offset, size, maxSegment, 0, opts);
  if (!r.ok) return r;
  if (append.totalNents !== append.sgt.origNents) {
    warnOrNot(opts, 'sg_alloc_table_from_pages_segment: total_nents != orig_nents', {
      totalNents: append.totalNents, origNents: append.sgt.origNents,
    });
  }
  return ok(append.sgt);
}

/**
 * sg_alloc_table_from_pages(): sgAllocTableFromPagesSegment with maxSegment = UINT_MAX (rounded down to the page
 * size). Cannot fail for valid arguments; the Result mirrors the kernel signature.
 */
export function sgAllocTableFromPages(pfns: PfnInput, offset: number, size: number, opts?: SgPageOpts): Result<SgTable> {
  return sgAllocTableFromPagesSegment(pfns, offset, size, UINT_MAX, opts);
}

/**
 * sg_nents(): entries reachable from the first slot through sg_next() until SG_END, walking the raw chunk
 * storage and its chain links (0 for an empty table).
 * @throws Error if the walk runs off the allocated slots (a list without SG_END: the kernel would read garbage).
 */
export function sgNents(sgt: SgTable): number {
  if (sgt.slotCount === 0) return 0;
  let n = 0;
  let chunk = 0;
  let slot = 0;
  for (;;) {
    const e = sgt.rawEntry(chunk, slot);
    if (e.isChain) {
      chunk = e.chainTo!;
      slot = 0;
      continue;
    }
    n++;
    if (e.isEnd) return n;
    slot++;
    if (slot >= sgt.chunkSizeAt(chunk)) throw new Error(`sg_nents ran off chunk ${chunk} after ${n} entries without SG_END`);
  }
}

/** sg_dma_is_bus_address(sg) for entry i. */
export function sgDmaIsBusAddress(sgt: SgTable, i: number): boolean {
  return (sgt.dmaFlagsAt(i) & SG_DMA_BUS_ADDRESS) !== 0;
}

/** sg_dma_mark_bus_address(sg) for entry i. */
export function sgDmaMarkBusAddress(sgt: SgTable, i: number): void {
  sgt.setDmaFlags(i, sgt.dmaFlagsAt(i) | SG_DMA_BUS_ADDRESS);
}

/** sg_dma_unmark_bus_address(sg) for entry i. */
export function sgDmaUnmarkBusAddress(sgt: SgTable, i: number): void {
  sgt.setDmaFlags(i, sgt.dmaFlagsAt(i) & ~SG_DMA_BUS_ADDRESS);
}

/** sg_dma_is_swiotlb(sg) for entry i (dma-direct/dma-iommu mark the first entry of a bounced list). */
export function sgDmaIsSwiotlb(sgt: SgTable, i: number): boolean {
  return (sgt.dmaFlagsAt(i) & SG_DMA_SWIOTLB) !== 0;
}

/** sg_dma_mark_swiotlb(sg) for entry i. */
export function sgDmaMarkSwiotlb(sgt: SgTable, i: number): void {
  sgt.setDmaFlags(i, sgt.dmaFlagsAt(i) | SG_DMA_SWIOTLB);
}
