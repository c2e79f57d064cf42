// Models: Jason Gunthorpe's compact chunk encoding (Jason Gunthorpe, "Re: Phyr Starter", 11 Jan 2022, and "Re: [LSF/MM/BPF proposal]: Physr
// discussion", 23 Jan 2023: 8 bytes per order-aligned chunk): the physical pages under
// a contiguous chunk of VA as a list of page-aligned chunks, each aligned to its own size (2^order
// pages), so an entry needs only its address and order: 8 bytes, the order kept in the spare low bits
// of the page-aligned address. The partial first and last pages are recorded once per list: a header
// with the offset into the first chunk and the total length (16 bytes, counted in kernelBytes).
//
// Model deviation: the order is an explicit column (Uint8Array) instead of bits stolen from the
// address; kernelBytes still counts 8 bytes per entry. Flags are one value for the whole list (the
// encoding has no room for a 32-bit memory-type per entry): a list is single-kind.
//
// Storage: chunk start pfn Float64Array (exact), order Uint8Array.

import { checkAddr, checkLen } from '../base/index.ts';
import { TWO_POW_53, type PagesView } from './cursor.ts';
import { PageListCursor } from './cursors.generated.ts';
import { alreadyBuilt, checkIndex, checkInitialCapacity, checkOptionalFlagsU32, grown } from './layout-util.ts';
import { checkPageSize } from './page-array.ts';
import type { CursorOptions, Range, RangeCursor, RangeSource } from './types.ts';

/** Bytes of the per-list header (first offset + total length) in kernelBytes. */
export const PAGE_LIST_HEADER_BYTES = 16;
/** Largest chunk order accepted (2^40 pages). */
export const PAGE_LIST_MAX_ORDER = 40;

const TOKEN = Symbol('PageList');

/** Counts trailing zero bits of a non-negative integer number (< 2^53); 64 for 0. */
function ctzNum(v: number): number {
  if (v === 0) return 64;
  let n = 0;
  let x = v;
  while (x % 4294967296 === 0) { x /= 4294967296; n += 32; }
  const lo = x % 4294967296;
  return n + (31 - Math.clz32(lo & -lo));
}

/**
 * Splits the page run [pfn, pfn + pages) into naturally aligned power-of-two chunks, largest first
 * where alignment allows (the canonical decomposition). Calls emit(chunkPfn, order) in address order.
 */
export function decomposeRun(pfn: number, pages: number, emit: (chunkPfn: number, order: number) => void): void {
  let p = pfn;
  let left = pages;
  while (left > 0) {
    let order = Math.min(ctzNum(p), Math.floor(Math.log2(left)), PAGE_LIST_MAX_ORDER);
    while (2 ** order > left) order--; // guard log2 rounding
    emit(p, order);
    p += 2 ** order;
    left -= 2 ** order;
  }
}

/** Builds a PageList from page runs; push of a run decomposes it into aligned chunks. */
export class PageListBuilder {
  readonly pageSize: number;
  private pfn: Float64Array;
  private ord: Uint8Array;
  private n = 0;
  private pages = 0;
  private built = false;

  constructor(pageSize: number, initialCapacity = 16) {
    this.pageSize = checkPageSize('pageSize', pageSize);
    const cap = checkInitialCapacity(initialCapacity);
    this.pfn = new Float64Array(cap);
    this.ord = new Uint8Array(cap);
  }

  /** Chunks so far. */
  get count(): number {
    return this.n;
  }

  /** Pages so far. */
  get pageCount(): number {
    return this.pages;
  }

  /**
   * Appends one chunk: chunkPfn must be aligned to 2^order pages.
   * @throws RangeError naming the argument.
   */
  pushChunk(chunkPfn: number, order: number): void {
    if (this.built) throw alreadyBuilt();
    checkLen('order', order, 0, PAGE_LIST_MAX_ORDER);
    checkLen('chunkPfn', chunkPfn);
    if (chunkPfn % 2 ** order !== 0) throw new RangeError(`chunkPfn ${chunkPfn} is not aligned to its order ${order} (2^${order} pages)`);
    if ((chunkPfn + 2 ** order) * this.pageSize > TWO_POW_53) {
      throw new RangeError(`chunk at pfn ${chunkPfn} order ${order} ends above 2^53 bytes`);
    }
    if (this.n === this.pfn.length) {
      this.pfn = grown(this.pfn, this.n * 2);
      this.ord = grown(this.ord, this.n * 2);
    }
    this.pfn[this.n] = chunkPfn;
    this.ord[this.n] = order;
    this.n++;
    this.pages += 2 ** order;
  }

  /** Appends the page run [pfn, pfn + pages) as naturally aligned chunks. */
  pushRun(pfn: number, pages: number): void {
    checkLen('pfn', pfn);
    checkLen('pages', pages, 1);
    decomposeRun(pfn, pages, (p, o) => this.pushChunk(p, o));
  }

  /**
   * The list walking `totalLen` bytes from `firstOffset` into the first chunk (default: all pages).
   * @throws RangeError when firstOffset >= pageSize or totalLen does not end in the last page.
   */
  build(opts: { firstOffset?: number; totalLen?: number; flags?: number } = {}): PageList {
    if (this.built) throw alreadyBuilt();
    const ps = this.pageSize;
    const n = this.n;
    const firstOffset = checkLen('firstOffset', opts.firstOffset ?? 0, 0, n === 0 ? 0 : ps - 1);
    const full = this.pages * ps - firstOffset;
    const totalLen = opts.totalLen === undefined ? full
      : checkLen('totalLen', opts.totalLen, n === 0 ? 0 : Math.max(1, full - ps + 1), full);
    const flags = checkOptionalFlagsU32('flags', opts.flags);
    // Every entry must walk at least one byte: with one chunk that is totalLen >= 1, with more the
    // last chunk keeps at least one byte because totalLen ends inside its last page.
    this.built = true;
    return new PageList(this.pfn.slice(0, n), this.ord.slice(0, n), ps, firstOffset, totalLen, flags, TOKEN);
  }
}

/**
 * Gunthorpe's page list (layout 'pagelist'): aligned power-of-two chunks plus a header (first
 * offset, total length). kernelBytes = 16 + 8 * count. Immutable.
 */
export class PageList implements RangeSource {
  readonly layout = 'pagelist' as const;
  readonly pageSize: number;
  readonly count: number;
  readonly totalLen: number;
  /** Byte offset of the walk into the first chunk (< pageSize). */
  readonly firstOffset: number;
  /** The one flags value of every range in the list. */
  readonly flags: number;
  readonly addrFitsNumber = true;
  private readonly pfn: Float64Array;
  private readonly ord: Uint8Array;
  private readonly lastLen: number;
  private cols: PagesView | null = null;

  /** @internal Use PageList.builder() or PageList.from(). */
  constructor(pfn: Float64Array, ord: Uint8Array, pageSize: number, firstOffset: number, totalLen: number, flags: number, token: symbol) {
    if (token !== TOKEN) throw new TypeError('use PageList.builder() or PageList.from()');
    this.pfn = pfn;
    this.ord = ord;
    this.pageSize = pageSize;
    this.count = pfn.length;
    this.firstOffset = firstOffset;
    this.totalLen = totalLen;
    this.flags = flags;
    const n = pfn.length;
    let before = -firstOffset;
    for (let i = 0; i < n - 1; i++) before += pageSize * 2 ** ord[i];
    this.lastLen = n === 0 ? 0 : n === 1 ? totalLen : totalLen - before;
  }

  /** A builder for a list of this page size. */
  static builder(pageSize: number, initialCapacity?: number): PageListBuilder {
    return new PageListBuilder(pageSize, initialCapacity);
  }

  /**
   * A list with exactly these chunks.
   * @throws TypeError/RangeError naming the chunk index and field (misaligned chunk, bad order).
   */
  static from(
    chunks: Iterable<{ pfn: bigint; order: number }>,
    opts: { pageSize: number; firstOffset?: number; totalLen?: number; flags?: number },
  ): PageList {
    if (opts === null || typeof opts !== 'object') throw new TypeError(`opts must be an object, got ${String(opts)}`);
    const b = new PageListBuilder(opts.pageSize);
    let i = 0;
    for (const c of chunks) {
      checkAddr(`chunks[${i}].pfn`, c.pfn, 53);
      checkLen(`chunks[${i}].order`, c.order, 0, PAGE_LIST_MAX_ORDER);
      if (c.pfn % (1n << BigInt(c.order)) !== 0n) {
        throw new RangeError(`chunks[${i}].pfn 0x${c.pfn.toString(16)} is not aligned to its order ${c.order}`);
      }
      b.pushChunk(Number(c.pfn), c.order);
      i++;
    }
    return b.build(opts);
  }

  /** 16 B header + 8 B per chunk (address with the order in its low bits). */
  get kernelBytes(): number {
    return PAGE_LIST_HEADER_BYTES + 8 * this.count;
  }

  /** Start pfn of chunk i (aligned to 2^orderAt(i)). */
  pfnAt(i: number): bigint {
    checkIndex(i, this.count);
    return BigInt(this.pfn[i]);
  }

  /** Order of chunk i: it holds 2^order pages. */
  orderAt(i: number): number {
    checkIndex(i, this.count);
    return this.ord[i];
  }

  /** @internal The storage view the generated cursor reads. */
  columns(): PagesView {
    if (this.cols === null) {
      this.cols = {
        n: this.count, pfn: this.pfn, ps: this.pageSize, ord: this.ord, firstOff: this.firstOffset,
        lastLen: this.lastLen, f: null, fc: this.flags,
      };
    }
    return this.cols;
  }

  /** A cursor over the chunks with the given segment limits. */
  cursor(opts?: CursorOptions): RangeCursor {
    return new PageListCursor(this.columns(), opts);
  }

  /** One Range per chunk, the first and last trimmed by the header. */
  *[Symbol.iterator](): Iterator<Range> {
    const n = this.count;
    const ps = this.pageSize;
    for (let i = 0; i < n; i++) {
      const full = ps * 2 ** this.ord[i];
      const first = i === 0 ? this.firstOffset : 0;
      const len = i === n - 1 ? this.lastLen : full - first;
      yield { addr: BigInt(this.pfn[i] * ps + first), len, flags: this.flags };
    }
  }
}
