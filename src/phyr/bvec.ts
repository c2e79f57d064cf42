// Models: struct bio_vec { bv_page; bv_len; bv_offset } (include/linux/bvec.h):
// 16 bytes per entry on LP64, bv_len a u32 (at most 4 GiB - 1 per vec), bv_offset a u32 that may
// exceed PAGE_SIZE (multi-page bvecs), bvec_phys(bv) = page_to_phys(bv_page) + bv_offset.
// A bvec names a struct page, so memory without one (RANGE_NOPAGE) cannot be a bvec.
//
// Storage: pfn Float64Array (exact, pfns are < 2^53), len and offset Uint32Array, flags one value or a
// Uint32Array column.

import { checkAddr, checkLen } from '../base/index.ts';
import { TWO_POW_53, type BvecView } from './cursor.ts';
import { BvecCursor } from './cursors.generated.ts';
import { RANGE_NOPAGE } from './flags.ts';
import { alreadyBuilt, checkFlagsArg, checkIndex, checkInitialCapacity, grown } from './layout-util.ts';
import { checkPageSize } from './page-array.ts';
import type { CursorOptions, Range, RangeCursor, RangeSource } from './types.ts';

const U32_MAX = 0xffff_ffff;
const U64_END = 1n << 64n;

function checkBvecFlags(name: string, flags: unknown): number {
  const f = checkFlagsArg(name, flags);
  if (f & RANGE_NOPAGE) throw new RangeError(`${name} has RANGE_NOPAGE: a bio_vec needs a struct page, got 0x${f.toString(16)}`);
  return f;
}

/** Builds a BvecList entry by entry (no merging: bio_add_page's merging is the caller's choice). */
export class BvecListBuilder {
  readonly pageSize: number;
  private pfn: Float64Array;
  private len: Uint32Array;
  private off: Uint32Array;
  private flg: Uint32Array;
  private n = 0;
  private total = 0;
  private uniform = true;
  private fits = true;
  private built = false;

  /** @throws RangeError for a bad pageSize or initialCapacity. */
  constructor(pageSize: number, initialCapacity = 16) {
    this.pageSize = checkPageSize('pageSize', pageSize);
    const cap = checkInitialCapacity(initialCapacity);
    this.pfn = new Float64Array(cap);
    this.len = new Uint32Array(cap);
    this.off = new Uint32Array(cap);
    this.flg = new Uint32Array(cap);
  }

  get count(): number {
    return this.n;
  }

  get totalLen(): number {
    return this.total;
  }

  /**
   * Appends one bio_vec: pfn (a number, < 2^53), offset (u32, may exceed pageSize), len (1 .. 2^32-1).
   * @throws TypeError/RangeError naming the argument: bad pfn/offset/len, RANGE_NOPAGE flags, end > 2^64.
   */
  push(pfn: number, offset: number, len: number, flags = 0): void {
    if (this.built) throw alreadyBuilt();
    checkLen('pfn', pfn);
    checkLen('offset', offset, 0, U32_MAX);
    checkLen('len', len, 1, U32_MAX);
    checkBvecFlags('flags', flags);
    if (this.total + len > Number.MAX_SAFE_INTEGER) throw new RangeError(`totalLen would exceed Number.MAX_SAFE_INTEGER (len ${len})`);
    const ps = this.pageSize;
    const endNum = pfn * ps + offset + len;
    if (!(endNum <= TWO_POW_53)) {
      if (BigInt(pfn) * BigInt(ps) + BigInt(offset) + BigInt(len) > U64_END) {
        throw new RangeError(`pfn ${pfn} * pageSize + offset ${offset} + len ${len} exceeds 2^64`);
      }
      this.fits = false;
    }
    if (this.n === this.pfn.length) this.grow();
    const k = this.n;
    this.pfn[k] = pfn;
    this.len[k] = len;
    this.off[k] = offset;
    this.flg[k] = flags;
    if (k > 0 && flags !== this.flg[0]) this.uniform = false;
    this.n = k + 1;
    this.total += len;
  }

  private grow(): void {
    const cap = this.pfn.length * 2;
    this.pfn = grown(this.pfn, cap);
    this.len = grown(this.len, cap);
    this.off = grown(this.off, cap);
    this.flg = grown(this.flg, cap);
  }

  /** Trims storage and returns the list; the builder cannot be used afterwards. */
  build(): BvecList {
    if (this.built) throw alreadyBuilt();
    this.built = true;
    const n = this.n;
    return new BvecList(
      this.pfn.slice(0, n), this.len.slice(0, n), this.off.slice(0, n),
      this.uniform ? null : this.flg.slice(0, n), this.uniform && n > 0 ? this.flg[0] : 0,
      this.pageSize, this.total, this.fits, BVEC_TOKEN,
    );
  }
}

const BVEC_TOKEN = Symbol('BvecList');

/** An array of struct bio_vec (layout 'bvec'): kernelBytes = 16 * count. Immutable. */
export class BvecList implements RangeSource {
  readonly layout = 'bvec' as const;
  readonly pageSize: number;
  readonly count: number;
  readonly totalLen: number;
  readonly addrFitsNumber: boolean;
  private readonly pfn: Float64Array;
  private readonly len: Uint32Array;
  private readonly off: Uint32Array;
  private readonly flg: Uint32Array | null;
  private readonly fc: number;
  private cols: BvecView | null = null;

  /** @internal Use BvecList.from or BvecList.builder. */
  constructor(
    pfn: Float64Array, len: Uint32Array, off: Uint32Array, flg: Uint32Array | null, fc: number,
    pageSize: number, totalLen: number, fits: boolean, token: symbol,
  ) {
    if (token !== BVEC_TOKEN) throw new TypeError('use BvecList.from() or BvecList.builder()');
    this.pfn = pfn;
    this.len = len;
    this.off = off;
    this.flg = flg;
    this.fc = fc;
    this.pageSize = pageSize;
    this.count = pfn.length;
    this.totalLen = totalLen;
    this.addrFitsNumber = fits;
  }

  /** A builder for a list of this page size. */
  static builder(pageSize: number, initialCapacity?: number): BvecListBuilder {
    return new BvecListBuilder(pageSize, initialCapacity);
  }

  /**
   * A list with exactly these bio_vecs.
   * @throws TypeError/RangeError naming the entry index and field.
   */
  static from(vecs: Iterable<{ pfn: bigint; offset: number; len: number; flags?: number }>, pageSize: number): BvecList {
    const b = new BvecListBuilder(pageSize);
    let i = 0;
    for (const v of vecs) {
      if (v === null || typeof v !== 'object') throw new TypeError(`vecs[${i}] must be an object, got ${String(v)}`);
      checkAddr(`vecs[${i}].pfn`, v.pfn, 53);
      checkLen(`vecs[${i}].offset`, v.offset, 0, U32_MAX);
      checkLen(`vecs[${i}].len`, v.len, 1, U32_MAX);
      checkBvecFlags(`vecs[${i}].flags`, v.flags ?? 0);
      b.push(Number(v.pfn), v.offset, v.len, v.flags ?? 0);
      i++;
    }
    return b.build();
  }

  /** 16 bytes per bio_vec on LP64. */
  get kernelBytes(): number {
    return 16 * this.count;
  }

  /** bv_page of entry i as a pfn. */
  pfnAt(i: number): bigint {
    checkIndex(i, this.count);
    return BigInt(this.pfn[i]);
  }

  /** bv_offset of entry i. */
  offsetAt(i: number): number {
    checkIndex(i, this.count);
    return this.off[i];
  }

  /** bv_len of entry i. */
  lenAt(i: number): number {
    checkIndex(i, this.count);
    return this.len[i];
  }

  /** Flags of entry i. */
  flagsAt(i: number): number {
    checkIndex(i, this.count);
    return this.flg === null ? this.fc : this.flg[i];
  }

  /** bvec_phys(entry i): pfn * pageSize + offset, exact. */
  addrAt(i: number): bigint {
    checkIndex(i, this.count);
    return BigInt(this.pfn[i]) * BigInt(this.pageSize) + BigInt(this.off[i]);
  }

  /** @internal The storage view the generated cursor reads. */
  columns(): BvecView {
    if (this.cols === null) {
      this.cols = {
        n: this.count, fits: this.addrFitsNumber, pfn: this.pfn, len: this.len, off: this.off, ps: this.pageSize,
        f: this.flg, fc: this.fc,
      };
    }
    return this.cols;
  }

  /** A cursor over the bio_vecs (multi-page view) with the given segment limits. */
  cursor(opts?: CursorOptions): RangeCursor {
    return new BvecCursor(this.columns(), opts);
  }

  /** One Range per bio_vec. */
  *[Symbol.iterator](): Iterator<Range> {
    for (let i = 0; i < this.count; i++) {
      yield { addr: this.addrAt(i), len: this.len[i], flags: this.flg === null ? this.fc : this.flg[i] };
    }
  }
}
