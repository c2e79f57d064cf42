// Models: the iterator half of the non-leaky range API (reference 1.2, Gunthorpe's rlist_cpu) with
// struct bvec_iter's small copyable position (include/linux/bvec.h, reference 8.3) and the segment
// production of blk_map_iter_next / get_max_segment_size (block/blk-mq-dma.c, reference 4.3).
//
// Each layout describes its storage as a small set of typed-array columns (CursorColumns). Walks come
// in two families:
//   - the no-limits walk (no maxSegmentLen, segBoundaryMask, virtBoundaryMask, merge or budget; skip
//     allowed), the common hot walk: one small class per storage kind (AddrLenCursor for phyr and
//     dmalist, BvecCursor, PageListCursor, PageArrayCursor), which each layout's cursor() returns
//     directly. A consumer that walks one layout then sees one class at c.done / c.addrNum / c.len /
//     c.next(), V8 inlines the walk and usually removes the cursor object (escape analysis);
//   - ColumnCursor: every other walk (limits, merge, budget, virt boundary), one class for all kinds
//     with a branch on the storage kind.
// makeCursor() picks one. Measured in bench/phyr.bench.ts (cursor walk vs a bare loop, per layout).
//
// Segment semantics (what a consumer sees), from the current position:
//   - a segment never spans two source entries unless `merge` is set and the entries are
//     physically adjacent (end of one == start of the next) with equal flags and the seam is not a
//     virt-boundary gap;
//   - a segment is cut to maxSegmentLen, to the next (segBoundaryMask+1)-aligned line and to the
//     remaining budget;
//   - segments are greedy: each is as long as those rules allow, so the segment is a pure function
//     of the position (a clone at the same position sees the same segment).
// Model deviation: blk_map_iter_next stops merging before a following bvec that would overflow
// max_segment_size; this cursor merges and cuts the segment at the limit instead (same coverage,
// fewer segments). Limits are never exceeded either way.

import { checkLen } from '../base/index.ts';
import type { CursorOptions, RangeCursor, StopReason } from './types.ts';

/** Storage kinds the shared cursor understands. */
export const KIND_ADDR_LEN = 0; // addr (Float64 + exact big fallback) + len (Float64): phyr, dmalist
export const KIND_BVEC = 1; // pfn (Float64) + len (u32) + offset (u32)
export const KIND_PAGES = 2; // pfn (Float64) + order (u8), first offset, last length: pagelist
export const KIND_PAGEARRAY = 3; // pfn (Float64) of one base page each, first offset, last length

export const TWO_POW_53 = 2 ** 53;

const EMPTY_F64 = new Float64Array(0);
const EMPTY_U32 = new Uint32Array(0);
const EMPTY_U8 = new Uint8Array(0);

/** 2^k as exact doubles, k = 0..63. */
const POW2 = new Float64Array(64);
for (let k = 0; k < 64; k++) POW2[k] = 2 ** k;

/**
 * The storage of one range source as the shared cursor reads it. Internal to src/phyr (exported so
 * other phyr layouts can describe themselves); never part of the non-leaky public contract.
 */
export interface CursorColumns {
  readonly kind: number;
  readonly n: number;
  /** KIND_ADDR_LEN: entry start addresses (exact when < 2^53, see big); others: pfns. */
  readonly a: Float64Array;
  /** KIND_ADDR_LEN: entry lengths. */
  readonly l: Float64Array;
  /** KIND_BVEC: lengths and offsets. */
  readonly l32: Uint32Array;
  readonly o32: Uint32Array;
  /** KIND_PAGES: order of each chunk (2^order pages); all 0 for a page array. */
  readonly ord: Uint8Array;
  /** Per-entry flags, or null with one value for every entry in fc. */
  readonly f: Uint32Array | null;
  readonly fc: number;
  /** Page size in bytes (page layouts). */
  readonly ps: number;
  /** KIND_PAGES: byte offset into the first chunk; length walked in the last entry. */
  readonly firstOff: number;
  readonly lastLen: number;
  /** KIND_ADDR_LEN: exact start of every entry whose end exceeds 2^53 (index -> address). */
  readonly big: ReadonlyMap<number, bigint> | null;
  /** Every byte address of the source is < 2^53 (plain number arithmetic is exact). */
  readonly fits: boolean;
  readonly totalLen: number;
}

/** Fills in the columns a layout does not use. */
export function makeColumns(c: Partial<CursorColumns> & { kind: number; n: number; fits: boolean; totalLen: number }): CursorColumns {
  return {
    kind: c.kind,
    n: c.n,
    a: c.a ?? EMPTY_F64,
    l: c.l ?? EMPTY_F64,
    l32: c.l32 ?? EMPTY_U32,
    o32: c.o32 ?? EMPTY_U32,
    ord: c.ord ?? EMPTY_U8,
    f: c.f ?? null,
    fc: c.fc ?? 0,
    ps: c.ps ?? 0,
    firstOff: c.firstOff ?? 0,
    lastLen: c.lastLen ?? 0,
    big: c.big ?? null,
    fits: c.fits,
    totalLen: c.totalLen,
  };
}

/** Exact start address of entry i (slow path, any width). */
export function columnsEntryStartBig(c: CursorColumns, i: number): bigint {
  if (c.kind === KIND_ADDR_LEN) {
    const b = c.big === null ? undefined : c.big.get(i);
    return b ?? BigInt(c.a[i]);
  }
  const base = BigInt(c.a[i]) * BigInt(c.ps);
  if (c.kind === KIND_BVEC) return base + BigInt(c.o32[i]);
  return i === 0 ? base + BigInt(c.firstOff) : base;
}

/** Length in bytes of entry i as walked. */
export function columnsEntryLen(c: CursorColumns, i: number): number {
  if (c.kind === KIND_ADDR_LEN) return c.l[i];
  if (c.kind === KIND_BVEC) return c.l32[i];
  if (i === c.n - 1) return c.lastLen;
  const full = c.kind === KIND_PAGES ? c.ps * POW2[c.ord[i]] : c.ps;
  return i === 0 ? full - c.firstOff : full;
}

/** Flags of entry i. */
export function columnsEntryFlags(c: CursorColumns, i: number): number {
  return c.f === null ? c.fc : c.f[i];
}

function checkMaskBig(name: string, v: unknown): bigint {
  if (typeof v !== 'bigint') throw new TypeError(`${name} must be a bigint mask, got ${typeof v} ${String(v)}`);
  if (v < 0n || v >= 1n << 64n || (v & (v + 1n)) !== 0n) {
    throw new RangeError(`${name} must be 2^k - 1 for k in [0, 64], got 0x${v.toString(16)}`);
  }
  return v;
}

function checkMaskNum(name: string, v: unknown): number {
  if (typeof v !== 'number') throw new TypeError(`${name} must be a number mask, got ${typeof v} ${String(v)}`);
  if (!Number.isSafeInteger(v) || v < 0 || !Number.isInteger(Math.log2(v + 1))) {
    throw new RangeError(`${name} must be 2^k - 1 (a safe integer >= 0), got ${v}`);
  }
  return v;
}

const CLONE = Symbol('clone');

// Every cursor field gets a typed initial value, so V8 keeps numeric fields unboxed (a field first
// defined as undefined would store every double as a fresh heap number).
const EMPTY_COLS: CursorColumns = makeColumns({ kind: KIND_ADDR_LEN, n: 0, fits: true, totalLen: 0 });

/**
 * The shared cursor over CursorColumns. Construct it through a layout's cursor(opts); see the
 * RangeCursor contract in types.ts for the protocol.
 */
export class ColumnCursor implements RangeCursor {
  // --- source columns (copied from CursorColumns for one-hop access in the hot loop)
  private readonly kind: number = 0;
  private readonly n: number = 0;
  private readonly ca: Float64Array = EMPTY_F64;
  private readonly cl: Float64Array = EMPTY_F64;
  private readonly cl32: Uint32Array = EMPTY_U32;
  private readonly co32: Uint32Array = EMPTY_U32;
  private readonly cord: Uint8Array = EMPTY_U8;
  private readonly cf: Uint32Array = EMPTY_U32;
  private readonly hasF: boolean = false;
  private readonly fc: number = 0;
  private readonly ps: number = 0;
  private readonly firstOff: number = 0;
  private readonly lastLen: number = 0;
  private readonly fits: boolean = false;
  private readonly cols: CursorColumns = EMPTY_COLS;
  // --- limits
  private readonly maxSeg: number = 0;
  /** Segment boundary line size (mask + 1) as an exact power-of-two double; 0 = none. */
  private readonly bnd: number = 0;
  /** Virt boundary granule (mask + 1); 1 = none. */
  private readonly vb: number = 0;
  private readonly merge: boolean = false;
  /** No limits, no merge, no budget: every segment is the rest of one entry (the next() fast path). */
  private plain: boolean = false;
  // --- position
  private i: number = 0;
  private off: number = 0;
  private eA: number = 0;
  private eLen: number = 0;
  private eF: number = 0;
  private budgetEnd: number = 0;
  private resumeAt: number = 0;
  // --- current segment
  done: boolean = false;
  stopReason: StopReason | null = null;
  addrNum: number = 0;
  len: number = 0;
  flags: number = 0;
  consumed: number = 0;

  constructor(cols: CursorColumns, opts: CursorOptions | undefined);
  constructor(cols: CursorColumns, opts: typeof CLONE, from: ColumnCursor);
  constructor(cols: CursorColumns, opts: CursorOptions | undefined | typeof CLONE, from?: ColumnCursor) {
    this.kind = cols.kind;
    this.n = cols.n;
    this.ca = cols.a;
    this.cl = cols.l;
    this.cl32 = cols.l32;
    this.co32 = cols.o32;
    this.cord = cols.ord;
    this.cf = cols.f ?? EMPTY_U32;
    this.hasF = cols.f !== null;
    this.fc = cols.fc;
    this.ps = cols.ps;
    this.firstOff = cols.firstOff;
    this.lastLen = cols.lastLen;
    this.fits = cols.fits;
    this.cols = cols;
    if (opts === CLONE) {
      const s = from as ColumnCursor;
      this.maxSeg = s.maxSeg;
      this.bnd = s.bnd;
      this.vb = s.vb;
      this.merge = s.merge;
      this.plain = s.plain;
      this.i = s.i;
      this.off = s.off;
      this.eA = s.eA;
      this.eLen = s.eLen;
      this.eF = s.eF;
      this.budgetEnd = s.budgetEnd;
      this.resumeAt = s.resumeAt;
      this.done = s.done;
      this.stopReason = s.stopReason;
      this.addrNum = s.addrNum;
      this.len = s.len;
      this.flags = s.flags;
      this.consumed = s.consumed;
      return;
    }
    const o = opts ?? {};
    if (o === null || typeof o !== 'object') throw new TypeError(`opts must be an object, got ${String(o)}`);
    this.maxSeg = o.maxSegmentLen === undefined ? Infinity : checkLen('opts.maxSegmentLen', o.maxSegmentLen, 1);
    this.bnd = o.segBoundaryMask === undefined ? 0 : Number(checkMaskBig('opts.segBoundaryMask', o.segBoundaryMask) + 1n);
    this.vb = o.virtBoundaryMask === undefined ? 1 : checkMaskNum('opts.virtBoundaryMask', o.virtBoundaryMask) + 1;
    if (o.merge !== undefined && typeof o.merge !== 'boolean') {
      throw new TypeError(`opts.merge must be a boolean, got ${typeof o.merge} ${String(o.merge)}`);
    }
    this.merge = o.merge === true;
    const skip = o.skip === undefined ? 0 : checkLen('opts.skip', o.skip, 0, cols.totalLen);
    const budget = o.budget === undefined ? Infinity : checkLen('opts.budget', o.budget, 0);
    this.i = 0;
    this.off = 0;
    this.eA = 0;
    this.eLen = 0;
    this.eF = 0;
    this.budgetEnd = budget;
    this.plain = this.isPlain();
    this.resumeAt = 0;
    this.done = false;
    this.stopReason = null;
    this.addrNum = 0;
    this.len = 0;
    this.flags = 0;
    this.consumed = 0;
    if (this.n > 0) this.load(0);
    if (skip > 0) this.move(skip);
    this.settle();
  }

  /** Start of the current segment, exact over 64 bits. */
  get addr(): bigint {
    if (this.fits) return BigInt(this.addrNum);
    if (this.done) return 0n;
    return this.entryStartBig(this.i) + BigInt(this.off);
  }

  // ---- entry access (switch on the storage kind; small enough for V8 to inline)

  private entryStart(i: number): number {
    const k = this.kind;
    if (k === KIND_ADDR_LEN) return this.ca[i];
    if (k === KIND_BVEC) return this.ca[i] * this.ps + this.co32[i];
    return i === 0 ? this.ca[0] * this.ps + this.firstOff : this.ca[i] * this.ps;
  }

  private entryLen(i: number): number {
    const k = this.kind;
    if (k === KIND_ADDR_LEN) return this.cl[i];
    if (k === KIND_BVEC) return this.cl32[i];
    if (i === this.n - 1) return this.lastLen;
    const full = k === KIND_PAGES ? this.ps * POW2[this.cord[i]] : this.ps;
    return i === 0 ? full - this.firstOff : full;
  }

  private entryFlags(i: number): number {
    return this.hasF ? this.cf[i] : this.fc;
  }

  private entryStartBig(i: number): bigint {
    return columnsEntryStartBig(this.cols, i);
  }

  private load(i: number): void {
    this.eA = this.entryStart(i);
    this.eLen = this.entryLen(i);
    this.eF = this.hasF ? this.cf[i] : this.fc;
  }

  /** (start of entry i + off) mod m, exact. */
  private posMod(i: number, off: number, m: number): number {
    if (this.fits) return (this.entryStart(i) + off) % m;
    return Number((this.entryStartBig(i) + BigInt(off)) % BigInt(m));
  }

  /** Entry i starts where entry i-1 ends. */
  private adjacent(i: number): boolean {
    if (this.fits) return this.entryStart(i - 1) + this.entryLen(i - 1) === this.entryStart(i);
    return this.entryStartBig(i - 1) + BigInt(this.entryLen(i - 1)) === this.entryStartBig(i);
  }

  /** The seam before entry i is a virt-boundary gap. */
  private seamGap(i: number): boolean {
    const vb = this.vb;
    return this.posMod(i - 1, this.entryLen(i - 1), vb) !== 0 || this.posMod(i, 0, vb) !== 0;
  }

  // ---- walking

  /** Moves the position forward by `bytes` (<= what remains) without settling. */
  private move(bytes: number): void {
    let rem = bytes;
    for (;;) {
      const rest = this.eLen - this.off;
      if (rem < rest) {
        this.off += rem;
        return;
      }
      rem -= rest;
      const i = this.i + 1;
      this.i = i;
      this.off = 0;
      if (i >= this.n) return;
      this.load(i);
      if (rem === 0) return;
    }
  }

  /** Decides whether the walk stops here; otherwise computes the current segment. */
  private settle(): void {
    const i = this.i;
    if (i >= this.n) return this.stop('end');
    if (this.consumed >= this.budgetEnd) return this.stop('budget');
    if (this.vb > 1 && this.off === 0 && i > 0 && this.consumed > this.resumeAt && this.seamGap(i)) {
      return this.stop('virt-boundary');
    }
    const off = this.off;
    let run = this.eLen - off;
    let cap = this.maxSeg;
    const left = this.budgetEnd - this.consumed;
    if (left < cap) cap = left;
    const bnd = this.bnd;
    if (bnd !== 0) {
      const toLine = bnd - this.posMod(i, off, bnd);
      if (toLine < cap) cap = toLine;
    }
    if (this.merge && run < cap) {
      const n = this.n;
      const f = this.eF;
      for (let j = i + 1; j < n && run < cap; j++) {
        if (this.entryFlags(j) !== f || !this.adjacent(j) || (this.vb > 1 && this.seamGap(j))) break;
        run += this.entryLen(j);
      }
    }
    this.addrNum = this.eA + off;
    this.len = run < cap ? run : cap;
    this.flags = this.eF;
  }

  private stop(reason: StopReason): void {
    this.done = true;
    this.stopReason = reason;
    this.len = 0;
    this.addrNum = 0;
    this.flags = 0;
  }

  /** Reloads the current entry's fields, which the plain next() fast path does not maintain. */
  private refreshEntry(): void {
    if (this.plain && this.i < this.n) this.load(this.i);
  }

  /** Consumes `bytes` (0 < bytes <= len) of the current segment; the next segment is cut from the new position. */
  advance(bytes: number): void {
    if (this.done) throw new RangeError(`advance(${bytes}) on a finished cursor (stopReason ${this.stopReason})`);
    if (typeof bytes !== 'number' || !Number.isSafeInteger(bytes) || bytes <= 0 || bytes > this.len) {
      throw new RangeError(`bytes must be an integer in [1, ${this.len}], got ${String(bytes)}`);
    }
    this.refreshEntry();
    this.consumed += bytes;
    this.move(bytes);
    this.settle();
  }

  private isPlain(): boolean {
    return this.maxSeg === Infinity && this.bnd === 0 && this.vb === 1 && !this.merge && this.budgetEnd === Infinity;
  }

  /** Consumes the whole current segment; returns !done. */
  next(): boolean {
    if (this.done) return false;
    const len = this.len;
    this.consumed += len;
    if (this.plain) {
      // Fast path: each segment is the rest of one entry, so the next one is entry i + 1 (i + 1 >= 1:
      // the first-entry offset of the page layouts never applies here).
      const i = this.i + 1;
      this.i = i;
      this.off = 0;
      if (i >= this.n) {
        this.stop('end');
        return false;
      }
      const k = this.kind;
      let a: number;
      let l: number;
      if (k === KIND_ADDR_LEN) {
        a = this.ca[i];
        l = this.cl[i];
      } else if (k === KIND_BVEC) {
        a = this.ca[i] * this.ps + this.co32[i];
        l = this.cl32[i];
      } else {
        a = this.ca[i] * this.ps;
        l = i === this.n - 1 ? this.lastLen : k === KIND_PAGES ? this.ps * POW2[this.cord[i]] : this.ps;
      }
      const f = this.hasF ? this.cf[i] : this.fc;
      // eA / eLen / eF are left stale here; refreshEntry() reloads them before any slow path.
      this.addrNum = a;
      this.len = l;
      this.flags = f;
      return true;
    }
    return this.nextSlow(len);
  }

  private nextSlow(len: number): boolean {
    // The segment ends exactly at the end of the current entry.
    if (this.off + len === this.eLen) {
      const i = this.i + 1;
      this.i = i;
      this.off = 0;
      if (i < this.n) this.load(i);
    } else {
      this.move(len);
    }
    this.settle();
    return !this.done;
  }

  /** An independent copy at the same position (plain numbers; cheap). */
  clone(): ColumnCursor {
    return new ColumnCursor(this.cols, CLONE, this);
  }

  /**
   * After a stop for 'budget' or 'virt-boundary' (or at any position), continues from here with a
   * new budget (undefined: none). A cursor that reached 'end' stays done.
   */
  resume(budget?: number): void {
    const b = budget === undefined ? Infinity : checkLen('budget', budget, 0);
    if (this.stopReason === 'end') return;
    this.done = false;
    this.stopReason = null;
    this.refreshEntry();
    this.resumeAt = this.consumed;
    this.budgetEnd = this.consumed + b;
    this.plain = this.isPlain();
    this.settle();
  }

  /** Index of the source entry the position is in (diagnostics and tests). */
  get entryIndex(): number {
    return this.i;
  }
}

// ---- The layout-specialised no-limits cursors.
//
// One small class per storage kind for the walk with no limits, merge or budget (the hot walk), so a
// consumer that walks one layout sees one class at c.done / c.addrNum / c.len / c.next() and V8 can
// inline the whole walk, usually dropping the cursor object altogether (escape analysis). That is why
// each class stands alone: a base class would put the allocation in a super() call V8 does not
// inline. AddrLenCursor, BvecCursor and PageListCursor keep only the position and compute the
// segment in their getters (next() is two stores); PageArrayCursor fills segment fields in next()
// instead, which measured faster for its very cheap entries (and slower for the others: bench/
// phyr.bench.ts, V8 12 / Node 20). `consumed` is summed lazily by all of them.
//
// Position: entry i, with `off` bytes of raw entry i already consumed. A raw entry is the stored
// entry before the page layouts' header trims: the walk starts `base` raw bytes in (a page layout's
// first offset plus skip), and the last raw entry of a page layout ends where the walk ends.

/** advance() checks shared by the plain cursors (cold). */
function checkAdvance(bytes: number, len: number, done: boolean): void {
  if (done) throw new RangeError(`advance(${bytes}) on a finished cursor (stopReason end)`);
  if (typeof bytes !== 'number' || !Number.isSafeInteger(bytes) || bytes <= 0 || bytes > len) {
    throw new RangeError(`bytes must be an integer in [1, ${len}], got ${String(bytes)}`);
  }
}

/**
 * A plain walk stops only at its end, where resume() leaves it done. Resuming a walk that has not
 * stopped is outside the protocol: with no budget it does nothing; with a budget it throws (create
 * the cursor with opts.budget instead).
 */
function plainResume(budget: number | undefined, done: boolean): void {
  if (budget === undefined || done) return;
  checkLen('budget', budget, 0);
  throw new RangeError(`resume(${budget}): the walk has not stopped; pass opts.budget when creating the cursor`);
}

/** The no-limits walk over an address + length list (PhyrList, DmaList): one segment per entry. */
export class AddrLenCursor implements RangeCursor {
  private readonly n: number;
  private readonly a: Float64Array;
  private readonly l: Float64Array;
  private readonly f: Uint32Array;
  private readonly hasF: boolean;
  private readonly fc: number;
  private readonly fits: boolean;
  private readonly cols: CursorColumns;
  /** Raw bytes before the walk's first byte. */
  private readonly base: number;
  private i: number = 0;
  /** Bytes of raw entry i already consumed (0 after next()). */
  private off: number = 0;
  /** Lazy consumed: raw bytes before entry accI. */
  private accI: number = 0;
  private acc: number = 0;

  /** @internal Use the layout's cursor(). */
  constructor(cols: CursorColumns, skip: number, from?: AddrLenCursor) {
    this.n = cols.n;
    this.a = cols.a;
    this.l = cols.l;
    this.f = cols.f ?? EMPTY_U32;
    this.hasF = cols.f !== null;
    this.fc = cols.fc;
    this.fits = cols.fits;
    this.cols = cols;
    this.base = skip;
    if (from !== undefined) {
      this.i = from.i;
      this.off = from.off;
      this.accI = from.accI;
      this.acc = from.acc;
    } else if (this.base > 0) {
      let left = this.base;
      let i = 0;
      while (i < this.n) {
        const l = this.rawLen(i);
        if (left < l) break;
        left -= l;
        i++;
      }
      this.i = i;
      this.off = left;
      this.accI = i;
      this.acc = this.base - left;
    }
  }

  get done(): boolean {
    return this.i >= this.n;
  }

  get stopReason(): StopReason | null {
    return this.i >= this.n ? 'end' : null;
  }

  get addrNum(): number {
    const i = this.i;
    return i < this.n ? this.a[i] + this.off : 0;
  }

  get len(): number {
    const i = this.i;
    return i < this.n ? this.l[i] - this.off : 0;
  }

  get addr(): bigint {
    const i = this.i;
    if (i >= this.n) return 0n;
    if (this.fits) return BigInt(this.a[i] + this.off);
    return columnsEntryStartBig(this.cols, i) + BigInt(this.off);
  }

  get flags(): number {
    const i = this.i;
    return i >= this.n ? 0 : this.hasF ? this.f[i] : this.fc;
  }

  get consumed(): number {
    let acc = this.acc;
    const i = this.i;
    for (let j = this.accI; j < i; j++) acc += this.rawLen(j);
    this.acc = acc;
    this.accI = i;
    return acc + (i < this.n ? this.off : 0) - this.base;
  }

  /** Consumes the whole current segment (the rest of the entry); returns !done. */
  next(): boolean {
    const i = this.i;
    if (i >= this.n) return false;
    this.i = i + 1;
    this.off = 0;
    return i + 1 < this.n;
  }

  /** Consumes `bytes` (0 < bytes <= len) of the current segment. */
  advance(bytes: number): void {
    const len = this.len;
    checkAdvance(bytes, len, this.i >= this.n);
    if (bytes === len) this.next();
    else this.off += bytes;
  }

  /** An independent copy at the same position. */
  clone(): AddrLenCursor {
    return new AddrLenCursor(this.cols, this.base, this);
  }

  /** See plainResume: a plain walk only stops at its end. */
  resume(budget?: number): void {
    plainResume(budget, this.i >= this.n);
  }

  /** Length of raw entry i. */
  private rawLen(i: number): number {
    return this.l[i];
  }
}

/** The no-limits walk over a bio_vec array: one segment per (multi-page) bio_vec. */
export class BvecCursor implements RangeCursor {
  private readonly n: number;
  private readonly p: Float64Array;
  private readonly l: Uint32Array;
  private readonly o: Uint32Array;
  private readonly ps: number;
  private readonly f: Uint32Array;
  private readonly hasF: boolean;
  private readonly fc: number;
  private readonly fits: boolean;
  private readonly cols: CursorColumns;
  /** Raw bytes before the walk's first byte. */
  private readonly base: number;
  private i: number = 0;
  /** Bytes of raw entry i already consumed (0 after next()). */
  private off: number = 0;
  /** Lazy consumed: raw bytes before entry accI. */
  private accI: number = 0;
  private acc: number = 0;

  /** @internal Use BvecList.cursor(). */
  constructor(cols: CursorColumns, skip: number, from?: BvecCursor) {
    this.n = cols.n;
    this.p = cols.a;
    this.l = cols.l32;
    this.o = cols.o32;
    this.ps = cols.ps;
    this.f = cols.f ?? EMPTY_U32;
    this.hasF = cols.f !== null;
    this.fc = cols.fc;
    this.fits = cols.fits;
    this.cols = cols;
    this.base = skip;
    if (from !== undefined) {
      this.i = from.i;
      this.off = from.off;
      this.accI = from.accI;
      this.acc = from.acc;
    } else if (this.base > 0) {
      let left = this.base;
      let i = 0;
      while (i < this.n) {
        const l = this.rawLen(i);
        if (left < l) break;
        left -= l;
        i++;
      }
      this.i = i;
      this.off = left;
      this.accI = i;
      this.acc = this.base - left;
    }
  }

  get done(): boolean {
    return this.i >= this.n;
  }

  get stopReason(): StopReason | null {
    return this.i >= this.n ? 'end' : null;
  }

  get addrNum(): number {
    const i = this.i;
    return i < this.n ? this.p[i] * this.ps + this.o[i] + this.off : 0;
  }

  get len(): number {
    const i = this.i;
    return i < this.n ? this.l[i] - this.off : 0;
  }

  get addr(): bigint {
    const i = this.i;
    if (i >= this.n) return 0n;
    if (this.fits) return BigInt(this.p[i] * this.ps + this.o[i] + this.off);
    return columnsEntryStartBig(this.cols, i) + BigInt(this.off);
  }

  get flags(): number {
    const i = this.i;
    return i >= this.n ? 0 : this.hasF ? this.f[i] : this.fc;
  }

  get consumed(): number {
    let acc = this.acc;
    const i = this.i;
    for (let j = this.accI; j < i; j++) acc += this.rawLen(j);
    this.acc = acc;
    this.accI = i;
    return acc + (i < this.n ? this.off : 0) - this.base;
  }

  /** Consumes the whole current segment (the rest of the entry); returns !done. */
  next(): boolean {
    const i = this.i;
    if (i >= this.n) return false;
    this.i = i + 1;
    this.off = 0;
    return i + 1 < this.n;
  }

  /** Consumes `bytes` (0 < bytes <= len) of the current segment. */
  advance(bytes: number): void {
    const len = this.len;
    checkAdvance(bytes, len, this.i >= this.n);
    if (bytes === len) this.next();
    else this.off += bytes;
  }

  /** An independent copy at the same position. */
  clone(): BvecCursor {
    return new BvecCursor(this.cols, this.base, this);
  }

  /** See plainResume: a plain walk only stops at its end. */
  resume(budget?: number): void {
    plainResume(budget, this.i >= this.n);
  }

  /** Length of raw entry i. */
  private rawLen(i: number): number {
    return this.l[i];
  }
}

/**
 * The no-limits walk over a struct page * array: one segment per page, the first and last trimmed.
 * Unlike the other plain cursors it keeps the current segment in fields that next() fills: its bare
 * loop is so cheap (one multiply per page) that the getters' extra checks would cost half of it.
 */
export class PageArrayCursor implements RangeCursor {
  private readonly n: number;
  private readonly p: Float64Array;
  private readonly ps: number;
  private readonly lastI: number;
  /** Raw length of the last page: its walked length, plus the first offset when it is also the first. */
  private readonly lastRaw: number;
  private readonly f: Uint32Array;
  private readonly hasF: boolean;
  private readonly fc: number;
  private readonly cols: CursorColumns;
  /** Raw bytes before the walk's first byte. */
  private readonly base: number;
  private i: number = 0;
  /** Bytes of raw entry i already consumed (0 after next()). */
  private off: number = 0;
  /** Lazy consumed: raw bytes before entry accI. */
  private accI: number = 0;
  private acc: number = 0;
  /** The current segment (see RangeCursor). */
  done: boolean = false;
  addrNum: number = 0;
  len: number = 0;

  /** @internal Use PageArray.cursor(). */
  constructor(cols: CursorColumns, skip: number, from?: PageArrayCursor) {
    const n = cols.n;
    const ps = cols.ps;
    this.n = n;
    this.p = cols.a;
    this.ps = ps;
    this.lastI = n - 1;
    const lastRaw = cols.lastLen + (n === 1 ? cols.firstOff : 0);
    this.lastRaw = lastRaw;
    this.f = cols.f ?? EMPTY_U32;
    this.hasF = cols.f !== null;
    this.fc = cols.fc;
    this.cols = cols;
    const base = cols.firstOff + skip;
    this.base = base;
    if (from !== undefined) {
      this.i = from.i;
      this.off = from.off;
      this.accI = from.accI;
      this.acc = from.acc;
      this.done = from.done;
      this.addrNum = from.addrNum;
      this.len = from.len;
      return;
    }
    // Every raw page is ps bytes except the last (lastRaw): the start position is arithmetic.
    let i = Math.min(Math.floor(base / ps), n);
    if (i === n - 1 && base - i * ps >= lastRaw) i = n;
    const off = i >= n ? 0 : base - i * ps;
    this.i = i;
    this.off = off;
    this.accI = i;
    this.acc = base - off;
    if (i >= n) {
      this.done = true;
    } else {
      this.addrNum = this.p[i] * ps + off;
      this.len = (i === n - 1 ? lastRaw : ps) - off;
    }
  }

  get stopReason(): StopReason | null {
    return this.done ? 'end' : null;
  }

  get addr(): bigint {
    return BigInt(this.addrNum);
  }

  get flags(): number {
    const i = this.i;
    return i >= this.n ? 0 : this.hasF ? this.f[i] : this.fc;
  }

  get consumed(): number {
    let acc = this.acc;
    const i = this.i;
    for (let j = this.accI; j < i; j++) acc += j === this.lastI ? this.lastRaw : this.ps;
    this.acc = acc;
    this.accI = i;
    return acc + (i < this.n ? this.off : 0) - this.base;
  }

  /** Consumes the whole current segment (the rest of the page); returns !done. */
  next(): boolean {
    const i = this.i + 1;
    if (i < this.lastI) {
      this.i = i;
      this.off = 0;
      this.addrNum = this.p[i] * this.ps;
      this.len = this.ps;
      return true;
    }
    return this.nextTail(i);
  }

  /** next() onto the last page or past it (or on a finished walk). */
  private nextTail(i: number): boolean {
    if (this.done) return false;
    this.i = i;
    this.off = 0;
    if (i === this.lastI) {
      this.addrNum = this.p[i] * this.ps;
      this.len = this.lastRaw;
      return true;
    }
    this.done = true;
    this.addrNum = 0;
    this.len = 0;
    return false;
  }

  /** Consumes `bytes` (0 < bytes <= len) of the current segment. */
  advance(bytes: number): void {
    const len = this.len;
    checkAdvance(bytes, len, this.done);
    if (bytes === len) {
      this.next();
      return;
    }
    this.off += bytes;
    this.addrNum += bytes;
    this.len = len - bytes;
  }

  /** An independent copy at the same position. */
  clone(): PageArrayCursor {
    return new PageArrayCursor(this.cols, this.base - this.cols.firstOff, this);
  }

  /** See plainResume: a plain walk only stops at its end. */
  resume(budget?: number): void {
    plainResume(budget, this.done);
  }
}

/** The no-limits walk over a page list: one segment per aligned chunk, the first and last trimmed. */
export class PageListCursor implements RangeCursor {
  private readonly n: number;
  private readonly p: Float64Array;
  private readonly ord: Uint8Array;
  private readonly ps: number;
  private readonly lastI: number;
  /** Raw length of the last chunk: its walked length, plus the first offset when it is also the first. */
  private readonly lastRaw: number;
  private readonly f: Uint32Array;
  private readonly hasF: boolean;
  private readonly fc: number;
  private readonly cols: CursorColumns;
  /** Raw bytes before the walk's first byte. */
  private readonly base: number;
  private i: number = 0;
  /** Bytes of raw entry i already consumed (0 after next()). */
  private off: number = 0;
  /** Lazy consumed: raw bytes before entry accI. */
  private accI: number = 0;
  private acc: number = 0;

  /** @internal Use PageList.cursor(). */
  constructor(cols: CursorColumns, skip: number, from?: PageListCursor) {
    this.n = cols.n;
    this.p = cols.a;
    this.ord = cols.ord;
    this.ps = cols.ps;
    this.lastI = cols.n - 1;
    this.lastRaw = cols.lastLen + (cols.n === 1 ? cols.firstOff : 0);
    this.f = cols.f ?? EMPTY_U32;
    this.hasF = cols.f !== null;
    this.fc = cols.fc;
    this.cols = cols;
    this.base = cols.firstOff + skip;
    if (from !== undefined) {
      this.i = from.i;
      this.off = from.off;
      this.accI = from.accI;
      this.acc = from.acc;
    } else if (this.base > 0) {
      let left = this.base;
      let i = 0;
      while (i < this.n) {
        const l = this.rawLen(i);
        if (left < l) break;
        left -= l;
        i++;
      }
      this.i = i;
      this.off = left;
      this.accI = i;
      this.acc = this.base - left;
    }
  }

  get done(): boolean {
    return this.i >= this.n;
  }

  get stopReason(): StopReason | null {
    return this.i >= this.n ? 'end' : null;
  }

  get addrNum(): number {
    const i = this.i;
    return i < this.n ? this.p[i] * this.ps + this.off : 0;
  }

  get len(): number {
    const i = this.i;
    if (i < this.lastI) return this.ps * POW2[this.ord[i]] - this.off;
    return i === this.lastI ? this.lastRaw - this.off : 0;
  }

  get addr(): bigint {
    const i = this.i;
    return i >= this.n ? 0n : BigInt(this.p[i] * this.ps + this.off);
  }

  get flags(): number {
    const i = this.i;
    return i >= this.n ? 0 : this.hasF ? this.f[i] : this.fc;
  }

  get consumed(): number {
    let acc = this.acc;
    const i = this.i;
    for (let j = this.accI; j < i; j++) acc += this.rawLen(j);
    this.acc = acc;
    this.accI = i;
    return acc + (i < this.n ? this.off : 0) - this.base;
  }

  /** Consumes the whole current segment (the rest of the entry); returns !done. */
  next(): boolean {
    const i = this.i;
    if (i >= this.n) return false;
    this.i = i + 1;
    this.off = 0;
    return i + 1 < this.n;
  }

  /** Consumes `bytes` (0 < bytes <= len) of the current segment. */
  advance(bytes: number): void {
    const len = this.len;
    checkAdvance(bytes, len, this.i >= this.n);
    if (bytes === len) this.next();
    else this.off += bytes;
  }

  /** An independent copy at the same position. */
  clone(): PageListCursor {
    return new PageListCursor(this.cols, this.base - this.cols.firstOff, this);
  }

  /** See plainResume: a plain walk only stops at its end. */
  resume(budget?: number): void {
    plainResume(budget, this.i >= this.n);
  }

  /** Length of raw entry i. */
  private rawLen(i: number): number {
    return i === this.lastI ? this.lastRaw : this.ps * POW2[this.ord[i]];
  }
}

/** The layout-specialised no-limits cursor for cols, `skip` bytes in. */
function plainFor(cols: CursorColumns, skip: number): RangeCursor {
  switch (cols.kind) {
    case KIND_ADDR_LEN: return new AddrLenCursor(cols, skip);
    case KIND_BVEC: return new BvecCursor(cols, skip);
    case KIND_PAGES: return new PageListCursor(cols, skip);
    default: return new PageArrayCursor(cols, skip);
  }
}

/**
 * The cursor for a walk over `cols` with these options: the storage kind's no-limits cursor when
 * there is nothing to apply (no limits, merge or budget), ColumnCursor otherwise. Validates opts either way.
 */
export function makeCursor(cols: CursorColumns, opts: CursorOptions | undefined): RangeCursor {
  if (opts === undefined) return plainFor(cols, 0);
  if (opts === null || typeof opts !== 'object') throw new TypeError(`opts must be an object, got ${String(opts)}`);
  if (opts.maxSegmentLen === undefined && opts.segBoundaryMask === undefined && opts.virtBoundaryMask === undefined
    && opts.merge !== true && opts.budget === undefined) {
    if (opts.merge !== undefined && typeof opts.merge !== 'boolean') {
      throw new TypeError(`opts.merge must be a boolean, got ${typeof opts.merge} ${String(opts.merge)}`);
    }
    const skip = opts.skip === undefined ? 0 : checkLen('opts.skip', opts.skip, 0, cols.totalLen);
    return plainFor(cols, skip);
  }
  return new ColumnCursor(cols, opts);
}
