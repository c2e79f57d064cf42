// The cold half of the one walker: what every generated cursor class (cursors.generated.ts, written
// by cursor.gen.ts) shares at run time. The storage views each layout hands its cursor, the one
// parser of CursorOptions (so every layout accepts and rejects the same limits), and the argument
// checks of advance / seek / fill. The per-layout hot code lives only in the generated file.
//
// What the options mean is the block layer's: queue_limits.max_segment_size and seg_boundary_mask
// cut a segment (block/blk.h: get_max_segment_size), queue_limits.virt_boundary_mask splits the
// walk at a seam that is not aligned to it (block/blk.h: bvec_gap_to_prev), and `merge` joins
// physically adjacent entries (block/blk-mq-dma.c: blk_map_iter_next, block/blk.h:
// biovec_phys_mergeable) before any seam is judged (block/bio.c: bvec_try_merge_page).

import { checkLen } from '../base/index.ts';
import type { CursorOptions, RangePos, SegmentColumns, StopReason } from './types.ts';

export const TWO_POW_53 = 2 ** 53;

/** page_link low bit of a chain entry (include/linux/scatterlist.h: SG_CHAIN). */
const SG_CHAIN_BIT = 0x01;

/** The slot of the entry after the one in slot s (sg_next): a chain link in between is skipped. */
export function nextSlot(link: Uint8Array, s: number): number {
  return link[s + 1] & SG_CHAIN_BIT ? s + 2 : s + 1;
}

// ---- The storage views: what a layout hands the generated cursor of its kind. Internal to
// src/phyr (the layouts build them; bench/ reads them for its bare loops).

/** PhyrList / DmaList: address + length columns (phyr-list.ts). */
export interface AddrLenView {
  readonly n: number;
  /** Every byte address is < 2^53 (number arithmetic is exact). */
  readonly fits: boolean;
  /** Entry starts; exact when the entry ends at or below 2^53, else see big. */
  readonly a: Float64Array;
  readonly l: Float64Array;
  /** Per-entry flags, or null with one value fc for every entry. */
  readonly f: Uint32Array | null;
  readonly fc: number;
  /** Exact start of every entry that ends above 2^53 (index -> address). */
  readonly big: ReadonlyMap<number, bigint> | null;
}

/** BvecList: pfn + bv_len + bv_offset columns (bvec.ts). */
export interface BvecView {
  readonly n: number;
  readonly fits: boolean;
  readonly pfn: Float64Array;
  readonly len: Uint32Array;
  readonly off: Uint32Array;
  readonly ps: number;
  readonly f: Uint32Array | null;
  readonly fc: number;
}

/**
 * PageList / PageArray: one start pfn per entry, walked from `firstOff` bytes into entry 0 for
 * `lastLen` bytes of the last entry. A page list's entry i holds 2^ord[i] pages, a page array's one.
 */
export interface PagesView {
  readonly n: number;
  readonly pfn: Float64Array;
  readonly ps: number;
  /** PageList only (empty for a page array). */
  readonly ord: Uint8Array;
  readonly firstOff: number;
  readonly lastLen: number;
  readonly f: Uint32Array | null;
  readonly fc: number;
}

/**
 * A page array (page-array.ts) as its cursor reads it: the pfns and, beside them, each page's
 * physical address (pfn * page size), so that a walk copies addresses instead of computing them.
 */
export interface PageArrayView extends PagesView {
  readonly addr: Float64Array;
}

/**
 * SgTable (scatterlist.ts) as its two generated cursors read it: the slot columns in sg_next()
 * order with chain links between chunks. Declared here so that the cursors need not import the
 * table's module (which imports them).
 */
export interface SgTableView {
  readonly _origNents: number;
  readonly _nents: number;
  readonly addrFitsNumber: boolean;
  readonly dmaFitsNumber: boolean;
  readonly pageSize: number;
  readonly _link: Uint8Array;
  /** pfn per slot, -1 for no page. */
  readonly _pfn: Float64Array;
  readonly _offset: Uint32Array;
  readonly _length: Uint32Array;
  readonly _flags: Uint32Array | null;
  readonly _dmaAddr: BigUint64Array | null;
  readonly _dmaLen: Uint32Array | null;
  /** Slot of logical entry i. */
  slotOfUnchecked(i: number): number;
}

// ---- Options: one parser, one rule for every layout.

/** CursorOptions checked and turned into the numbers the generated walk uses. */
export interface WalkOptions {
  /** Largest segment in bytes; Infinity: none. */
  readonly maxSeg: number;
  /** Segment boundary line size (mask + 1) as an exact power-of-two double; 0: none. */
  readonly bnd: number;
  /** Virt boundary mask (2^k - 1); 0: none. */
  readonly vm: number;
  readonly merge: boolean;
  readonly skip: number;
  /** Budget in bytes; Infinity: none. */
  readonly budget: number;
  /** Nothing to apply: every segment is the rest of one entry. */
  readonly plain: boolean;
}

function describe(v: unknown): string {
  return typeof v === 'bigint' ? `0x${v.toString(16)}n` : `${typeof v} ${String(v)}`;
}

/**
 * A segment boundary mask: a bigint 2^k - 1, k in [0, 64] (queue_limits.seg_boundary_mask is an
 * unsigned long mask). 2^64 - 1 cuts nothing.
 */
function parseSegBoundary(v: unknown): number {
  if (typeof v !== 'bigint') throw new TypeError(`opts.segBoundaryMask must be a bigint mask, got ${describe(v)}`);
  if (v < 0n || v >= 1n << 64n || (v & (v + 1n)) !== 0n) {
    throw new RangeError(`opts.segBoundaryMask must be 2^k - 1 for k in [0, 64], got 0x${v.toString(16)}`);
  }
  return v === (1n << 64n) - 1n ? 0 : Number(v + 1n);
}

/**
 * A virt boundary mask: a number 2^k - 1, k in [0, 53], 0 meaning none. The kernel keeps it as an
 * unsigned long and only ever ANDs addresses with it (block/blk.h: __bvec_gap_to_prev), which
 * names a granule only for 2^k - 1 (what drivers set: e.g. NVME_CTRL_PAGE_SIZE - 1), so any other
 * value is refused here, for every layout alike.
 */
function parseVirtBoundary(v: unknown): number {
  if (typeof v !== 'number') throw new TypeError(`opts.virtBoundaryMask must be a number mask, got ${describe(v)}`);
  if (!Number.isSafeInteger(v) || v < 0 || !Number.isInteger(Math.log2(v + 1))) {
    throw new RangeError(`opts.virtBoundaryMask must be 2^k - 1 (k in [0, 53]; 0: none), got ${v}`);
  }
  return v;
}

/**
 * Checks CursorOptions and returns the walk's numbers. The one rule for every layout.
 * @throws TypeError/RangeError naming the bad option.
 */
export function parseCursorOptions(opts: unknown): WalkOptions {
  if (opts === null || typeof opts !== 'object') throw new TypeError(`opts must be an object, got ${String(opts)}`);
  const o = opts as CursorOptions;
  const maxSeg = o.maxSegmentLen === undefined ? Infinity : checkLen('opts.maxSegmentLen', o.maxSegmentLen, 1);
  const bnd = o.segBoundaryMask === undefined ? 0 : parseSegBoundary(o.segBoundaryMask);
  const vm = o.virtBoundaryMask === undefined ? 0 : parseVirtBoundary(o.virtBoundaryMask);
  if (o.merge !== undefined && typeof o.merge !== 'boolean') {
    throw new TypeError(`opts.merge must be a boolean, got ${describe(o.merge)}`);
  }
  const merge = o.merge === true;
  const skip = o.skip === undefined ? 0 : checkLen('opts.skip', o.skip, 0);
  const budget = o.budget === undefined ? Infinity : checkLen('opts.budget', o.budget, 0);
  const plain = maxSeg === Infinity && bnd === 0 && vm === 0 && !merge && budget === Infinity;
  return { maxSeg, bnd, vm, merge, skip, budget, plain };
}

/** The error for a skip beyond the end of the source. */
export function skipError(skip: number, total: number): RangeError {
  return new RangeError(`opts.skip must be <= the source's total length ${total}, got ${skip}`);
}

/** A resume() budget. @throws TypeError/RangeError naming budget. */
export function checkBudget(budget: unknown): number {
  return checkLen('budget', budget, 0);
}

/** advance() misuse (cold): always throws. */
export function advanceError(bytes: unknown, len: number, stopReason: StopReason | null): never {
  if (stopReason !== null) throw new RangeError(`advance(${String(bytes)}) on a finished cursor (done, stopReason ${stopReason})`);
  throw new RangeError(`bytes must be an integer in [1, ${len}], got ${String(bytes)}`);
}

/** An SgTable CPU entry with a length but no page (cold): always throws. */
export function noPageError(slot: number, len: number): never {
  throw new RangeError(`scatterlist entry at slot ${slot} has length ${len} but no page`);
}

/**
 * Checks a RangePos against a source of n entries (shape and ranges; seek() checks the offset
 * against the entry).
 * @throws TypeError/RangeError naming the field.
 */
export function checkPos(pos: unknown, n: number): RangePos {
  if (pos === null || typeof pos !== 'object') throw new TypeError(`pos must be a RangePos, got ${String(pos)}`);
  const p = pos as RangePos;
  checkLen('pos.idx', p.idx, 0, n);
  checkLen('pos.off', p.off, 0);
  const consumed = checkLen('pos.consumed', p.consumed, 0);
  if (p.budgetEnd !== Infinity) checkLen('pos.budgetEnd', p.budgetEnd, 0);
  checkLen('pos.resumeAt', p.resumeAt, 0, consumed);
  if (p.idx === n && p.off !== 0) throw new RangeError(`pos.off must be 0 at the end of the source, got ${p.off}`);
  return p;
}

/** The error for a pos.off beyond its entry. */
export function posOffError(off: number, idx: number, len: number): RangeError {
  return new RangeError(`pos.off must be < ${len} (the walked length of entry ${idx}), got ${off}`);
}

/** Longest run of equal values constantRun() keeps, and how many distinct values it keeps. */
const RUN_MAX = 1 << 16;
const RUN_VALUES = 8;
/** value -> a Float64Array of copies of it; written once when made (or remade longer), then only read. */
const runs = new Map<number, Float64Array>();

/**
 * c copies of v as a Float64Array view, or null when c is above RUN_MAX. fill() copies a column of
 * equal lengths (a page array's pages) from it with TypedArray set, a memory copy: measured on
 * Node 20, Float64Array fill with a value other than 0 runs about 3.5x slower than that copy. A
 * kept run grows to the longest c asked for (in powers of two, at least 256). The arrays are never
 * written once made, so a cursor nested in another's walk shares them safely.
 */
export function constantRun(v: number, c: number): Float64Array | null {
  if (c > RUN_MAX) return null;
  let a = runs.get(v);
  if (a === undefined || a.length < c) {
    if (a === undefined && runs.size >= RUN_VALUES) runs.clear();
    let len = 256;
    while (len < c) len *= 2;
    a = new Float64Array(len).fill(v);
    runs.set(v, a);
  }
  return a.subarray(0, c);
}

/**
 * Checks fill()'s arguments: the columns' types, and max in [0, the shortest column's length].
 * @throws TypeError/RangeError naming cols' column or max.
 */
export function checkFill(cols: unknown, max: unknown): number {
  if (cols === null || typeof cols !== 'object') throw new TypeError(`cols must be SegmentColumns, got ${String(cols)}`);
  const c = cols as SegmentColumns;
  if (!(c.len instanceof Float64Array)) throw new TypeError(`cols.len must be a Float64Array, got ${String(c.len)}`);
  let cap = c.len.length;
  if (c.addr !== null) {
    if (!(c.addr instanceof Float64Array)) throw new TypeError(`cols.addr must be a Float64Array or null, got ${String(c.addr)}`);
    if (c.addr.length < cap) cap = c.addr.length;
  }
  const fr = c.frame ?? null;
  const fo = c.frameOff ?? null;
  if ((fr === null) !== (fo === null)) throw new TypeError('cols.frame and cols.frameOff must be given together');
  if (fr !== null) {
    if (!(fr instanceof Float64Array)) throw new TypeError(`cols.frame must be a Float64Array, got ${String(fr)}`);
    if (!(fo instanceof Uint32Array)) throw new TypeError(`cols.frameOff must be a Uint32Array, got ${String(fo)}`);
    cap = Math.min(cap, fr.length, fo.length);
  } else if (c.addr === null) {
    throw new TypeError('cols needs addr or (frame, frameOff): both are null');
  }
  const f = c.flags ?? null;
  if (f !== null) {
    if (!(f instanceof Uint32Array)) throw new TypeError(`cols.flags must be a Uint32Array or null, got ${String(f)}`);
    if (f.length < cap) cap = f.length;
  }
  return checkLen('max', max, 0, cap);
}
