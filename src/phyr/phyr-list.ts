// Models: struct phyr / struct phys_vec { phys_addr_t paddr; size_t len; } (Matthew Wilcox, "Phyr Starter", 10 Jan 2022; include/linux/types.h: struct phys_vec;
// include/linux/types.h for-7.0), an array of them as the input-side range list: 16 bytes per entry.
//
// Storage (private, measured in bench/phyr.bench.ts): struct-of-arrays columns.
//   addr  Float64Array  exact for every entry that ends at or below 2^53 (every physical address of a
//                       model machine with <= 52 address bits). Fallback: an entry that ends above
//                       2^53 keeps a rounded value here and its exact start in a sparse Map.
//   len   Float64Array  bytes, 1 .. Number.MAX_SAFE_INTEGER.
//   flags Uint32Array   only when entries differ; a list whose entries share one flags value keeps
//                       that value once (16 B/entry of heap, the kernel's own figure).
// Model deviation: phyr len is size_t (up to 2^63-1 in the kernel); here it stops at
// Number.MAX_SAFE_INTEGER (2^53-1), far above any model machine's memory.

import { checkAddr, checkLen } from '../base/index.ts';
import { TWO_POW_53, type AddrLenView } from './cursor.ts';
import { AddrLenCursor } from './cursors.generated.ts';
import { alreadyBuilt, buildFromRanges, checkFlagsArg, checkIndex, checkInitialCapacity, grown } from './layout-util.ts';
import type { CursorOptions, LayoutName, Range, RangeCursor, RangeSource } from './types.ts';

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const TWO_POW_53_BIG = 1n << 53n;

function badAddrNum(addr: unknown, len: number): never {
  if (typeof addr !== 'number') throw new TypeError(`addr must be a number, got ${typeof addr} ${String(addr)}`);
  if (!Number.isSafeInteger(addr) || addr < 0) throw new RangeError(`addr must be a safe integer >= 0, got ${addr}`);
  throw new RangeError(`addr + len must be <= 2^53 for push(); use pushBig() (addr ${addr}, len ${len})`);
}

function checkPushLen(len: unknown): never {
  if (typeof len !== 'number') throw new TypeError(`len must be a number, got ${typeof len} ${String(len)}`);
  throw new RangeError(`len must be a safe integer > 0, got ${len}`);
}

/**
 * Shared storage and behaviour of the two address + length layouts (PhyrList, DmaList).
 * Internal base class: use PhyrList or DmaList.
 */
export abstract class AddrLenList implements RangeSource {
  abstract readonly layout: LayoutName;
  readonly count: number;
  readonly totalLen: number;
  readonly addrFitsNumber: boolean;
  /** @internal */ readonly _a: Float64Array;
  /** @internal */ readonly _l: Float64Array;
  /** @internal */ readonly _f: Uint32Array | null;
  /** @internal */ readonly _fc: number;
  /** @internal */ readonly _big: ReadonlyMap<number, bigint> | null;
  private cols: AddrLenView | null = null;

  /** @internal Use the static constructors of PhyrList / DmaList. */
  protected constructor(
    a: Float64Array, l: Float64Array, f: Uint32Array | null, fc: number,
    big: ReadonlyMap<number, bigint> | null, count: number, totalLen: number,
  ) {
    this._a = a;
    this._l = l;
    this._f = f;
    this._fc = fc;
    this._big = big !== null && big.size > 0 ? big : null;
    this.count = count;
    this.totalLen = totalLen;
    this.addrFitsNumber = this._big === null;
  }

  /** 16 bytes per entry (phys_addr_t + size_t, or dma_addr_t + size_t) on LP64. */
  get kernelBytes(): number {
    return 16 * this.count;
  }

  /** Start address of entry i, exact over 64 bits. */
  addrAt(i: number): bigint {
    checkIndex(i, this.count);
    if (this._big !== null) {
      const b = this._big.get(i);
      if (b !== undefined) return b;
    }
    return BigInt(this._a[i]);
  }

  /** Start address of entry i as a number: exact when addrFitsNumber (rounded otherwise). */
  addrNumAt(i: number): number {
    checkIndex(i, this.count);
    return this._a[i];
  }

  /** Length in bytes of entry i. */
  lenAt(i: number): number {
    checkIndex(i, this.count);
    return this._l[i];
  }

  /** Flags of entry i (flags.ts). */
  flagsAt(i: number): number {
    checkIndex(i, this.count);
    return this._f === null ? this._fc : this._f[i];
  }

  /** Entry i as a Range object. */
  at(i: number): Range {
    return { addr: this.addrAt(i), len: this._l[i], flags: this._f === null ? this._fc : this._f[i] };
  }

  /** @internal The storage view the generated cursor reads. */
  columns(): AddrLenView {
    if (this.cols === null) {
      this.cols = { n: this.count, fits: this.addrFitsNumber, a: this._a, l: this._l, f: this._f, fc: this._fc, big: this._big };
    }
    return this.cols;
  }

  /** A cursor over the entries with the given segment limits (types.ts RangeCursor). */
  cursor(opts?: CursorOptions): RangeCursor {
    return new AddrLenCursor(this.columns(), opts);
  }

  /** The stored entries, one Range each (no merging, no limits). */
  *[Symbol.iterator](): Iterator<Range> {
    for (let i = 0; i < this.count; i++) yield this.at(i);
  }
}

/**
 * Growable column storage with merge-on-push; build() hands the trimmed columns to `make`.
 * Internal base class of PhyrListBuilder and DmaListBuilder.
 */
export abstract class AddrLenBuilder<T> {
  private a: Float64Array;
  private l: Float64Array;
  private f: Uint32Array;
  private cap: number;
  private n = 0;
  private total = 0;
  private firstFlags = 0;
  private uniform = true;
  private big: Map<number, bigint> | null = null;
  private built = false;

  constructor(initialCapacity = 16) {
    const cap = checkInitialCapacity(initialCapacity);
    this.cap = cap;
    this.a = new Float64Array(cap);
    this.l = new Float64Array(cap);
    this.f = new Uint32Array(cap);
  }

  /** Entries so far. */
  get count(): number {
    return this.n;
  }

  /** Bytes so far. */
  get totalLen(): number {
    return this.total;
  }

  private grow(): void {
    const cap = this.cap * 2;
    this.a = grown(this.a, cap);
    this.l = grown(this.l, cap);
    this.f = grown(this.f, cap);
    this.cap = cap;
  }

  private checkTotal(len: number): void {
    if (this.total + len > MAX_SAFE) {
      throw new RangeError(`totalLen would exceed Number.MAX_SAFE_INTEGER (${this.total} + len ${len})`);
    }
  }

  private append(addr: number, len: number, flags: number): void {
    if (this.built) throw alreadyBuilt();
    if (this.n === this.cap) this.grow();
    const k = this.n;
    this.a[k] = addr;
    this.l[k] = len;
    this.f[k] = flags;
    if (k === 0) this.firstFlags = flags;
    else if (flags !== this.firstFlags) this.uniform = false;
    this.n = k + 1;
    this.total += len;
  }

  /**
   * Hot path. addr is a number (exact: addr + len <= 2^53). Merges into the previous entry when
   * physically adjacent (prev.addr + prev.len === addr) and flags are equal; otherwise appends.
   * @throws TypeError/RangeError for a non-integer, negative or too large addr, len <= 0, non-u32 flags.
   */
  push(addr: number, len: number, flags: number): void {
    if (!(Number.isSafeInteger(len) && len > 0)) checkPushLen(len);
    if (!(Number.isSafeInteger(addr) && addr >= 0 && addr <= TWO_POW_53 - len)) badAddrNum(addr, len);
    if ((flags >>> 0) !== flags) checkFlagsArg('flags', flags);
    const k = this.n - 1;
    // An entry that ends above 2^53 has prev.addr + prev.len >= 2^53 > addr: never merges here.
    if (k >= 0 && this.a[k] + this.l[k] === addr && this.f[k] === flags && this.l[k] + len <= MAX_SAFE) {
      this.checkTotal(len);
      if (this.built) throw alreadyBuilt();
      this.l[k] += len;
      this.total += len;
      return;
    }
    this.checkTotal(len);
    this.append(addr, len, flags);
  }

  /** Appends without merging. Same checks as push(). */
  pushNoMerge(addr: number, len: number, flags: number): void {
    if (!(Number.isSafeInteger(len) && len > 0)) checkPushLen(len);
    if (!(Number.isSafeInteger(addr) && addr >= 0 && addr <= TWO_POW_53 - len)) badAddrNum(addr, len);
    if ((flags >>> 0) !== flags) checkFlagsArg('flags', flags);
    this.checkTotal(len);
    this.append(addr, len, flags);
  }

  /**
   * Any 64-bit address (addr + len <= 2^64). Merges like push().
   * @throws TypeError/RangeError naming the bad argument.
   */
  pushBig(addr: bigint, len: number, flags: number): void {
    this.pushBigImpl(addr, len, flags, true);
  }

  /** pushBig() without merging. */
  pushBigNoMerge(addr: bigint, len: number, flags: number): void {
    this.pushBigImpl(addr, len, flags, false);
  }

  private pushBigImpl(addr: bigint, len: number, flags: number, merge: boolean): void {
    checkAddr('addr', addr);
    checkLen('len', len, 1);
    checkFlagsArg('flags', flags);
    const end = addr + BigInt(len);
    if (end > 1n << 64n) throw new RangeError(`addr + len must be <= 2^64, got 0x${addr.toString(16)} + ${len}`);
    if (end <= TWO_POW_53_BIG) {
      if (merge) this.push(Number(addr), len, flags);
      else this.pushNoMerge(Number(addr), len, flags);
      return;
    }
    this.checkTotal(len);
    const k = this.n - 1;
    if (merge && k >= 0 && this.f[k] === flags && this.l[k] + len <= MAX_SAFE) {
      const prevStart = this.big?.get(k) ?? BigInt(this.a[k]);
      if (prevStart + BigInt(this.l[k]) === addr) {
        if (this.built) throw alreadyBuilt();
        this.l[k] += len;
        this.total += len;
        // The merged entry now ends above 2^53: keep its exact start.
        if (this.big === null) this.big = new Map();
        this.big.set(k, prevStart);
        return;
      }
    }
    this.append(Number(addr), len, flags);
    if (this.big === null) this.big = new Map();
    this.big.set(this.n - 1, addr);
  }

  /** Trims the storage to count and returns the list; the builder cannot be used afterwards. */
  build(): T {
    if (this.built) throw alreadyBuilt();
    this.built = true;
    const n = this.n;
    const a = this.a.slice(0, n);
    const l = this.l.slice(0, n);
    const f = this.uniform ? null : this.f.slice(0, n);
    const fc = this.uniform ? this.firstFlags : 0;
    const big = this.big;
    this.a = new Float64Array(0);
    this.l = new Float64Array(0);
    this.f = new Uint32Array(0);
    this.cap = 0;
    return this.make(a, l, f, fc, big, n, this.total);
  }

  protected abstract make(
    a: Float64Array, l: Float64Array, f: Uint32Array | null, fc: number,
    big: Map<number, bigint> | null, count: number, totalLen: number,
  ): T;
}

/** PhyrList.from's flags field: absent is 0, otherwise a u32 number (TypeError for a non-number). */
function phyrFlags(name: string, flags: unknown): number {
  return flags === undefined ? 0 : checkFlagsArg(name, flags);
}

/** Builds a PhyrList entry by entry, merging physically adjacent ranges with equal flags. */
export class PhyrListBuilder extends AddrLenBuilder<PhyrList> {
  protected make(
    a: Float64Array, l: Float64Array, f: Uint32Array | null, fc: number,
    big: Map<number, bigint> | null, count: number, totalLen: number,
  ): PhyrList {
    return PhyrList.fromColumns(a, l, f, fc, big, count, totalLen);
  }
}

/**
 * An array of struct phyr (CPU physical address + length + memory-type flags): layout 'phyr',
 * kernelBytes = 16 * count. Immutable once built.
 */
export class PhyrList extends AddrLenList {
  readonly layout = 'phyr' as const;

  /** @internal */
  static fromColumns(
    a: Float64Array, l: Float64Array, f: Uint32Array | null, fc: number,
    big: ReadonlyMap<number, bigint> | null, count: number, totalLen: number,
  ): PhyrList {
    return new PhyrList(a, l, f, fc, big, count, totalLen);
  }

  /**
   * A list with exactly these entries (validated, no merging).
   * @throws TypeError/RangeError naming the entry index and the bad field.
   */
  static from(ranges: Iterable<{ addr: bigint; len: number; flags?: number }>): PhyrList {
    return buildFromRanges(new PhyrListBuilder(), ranges, phyrFlags);
  }

  /** A builder (merging push, see PhyrListBuilder). */
  static builder(initialCapacity?: number): PhyrListBuilder {
    return new PhyrListBuilder(initialCapacity);
  }

  /** An empty list. */
  static empty(): PhyrList {
    return new PhyrListBuilder(1).build();
  }
}
