// Models: the struct page * array filled by get_user_pages()/pin_user_pages() (mm/gup.c), the legacy
// input the phyr proposal set out to replace (Matthew Wilcox, "Phyr Starter", 10 Jan 2022): one pointer (8 bytes) per base page, plus
// the caller's own start offset and byte count.
//
// Storage: pfns as a Float64Array (exact: pfns are < 2^53) and each page's physical address
// (pfn * page size) in a second one, written by the constructor's check of the pfns: a walk then
// copies addresses where it would otherwise multiply every pfn again (8 bytes a page on the model's
// heap, not counted in kernelBytes: the kernel keeps only the pointers). Flags one value for every
// page or a Uint32Array per page. Entry i walks pageSize bytes from pfn i's page, except that the walk starts
// `offset` bytes into the first page and covers `len` bytes in total.

import { checkLen } from '../base/index.ts';
import { TWO_POW_53, type PageArrayView } from './cursor.ts';
import { PageArrayCursor } from './cursors.generated.ts';
import { checkIndex } from './layout-util.ts';
import type { CursorOptions, Range, RangeCursor, RangeSource } from './types.ts';

const EMPTY_U8 = new Uint8Array(0);

/**
 * Each page's physical address (pfn * ps) into addrs; throws a RangeError naming the first entry of
 * pfns that is not an integer in [0, maxPfn]. A function of its own: V8 reuses the code it
 * optimised in the middle of a long loop on later calls, and code after the loop that had not run
 * yet then deoptimises it at the exit on every call.
 */
function pageAddrs(pfns: Float64Array, maxPfn: number, ps: number, addrs: Float64Array): void {
  for (let i = 0; i < pfns.length; i++) {
    const p = pfns[i];
    if (!(Number.isInteger(p) && p >= 0 && p <= maxPfn)) {
      throw new RangeError(`pfns[${i}] must be an integer in [0, ${maxPfn}], got ${p}`);
    }
    addrs[i] = p * ps;
  }
}

export interface PageArrayOptions {
  /** Base page size in bytes: a power of two >= 512. */
  readonly pageSize: number;
  /** Byte offset into the first page where the walk starts (< pageSize). Default 0. */
  readonly offset?: number;
  /** Bytes walked; must end inside the last page. Default count * pageSize - offset. */
  readonly len?: number;
  /** One flags value for all pages, or one per page. Default 0. */
  readonly flags?: number | Uint32Array;
}

/** Checks a page size: a power of two in [512, 2^30]. */
export function checkPageSize(name: string, v: unknown): number {
  checkLen(name, v, 512, 2 ** 30);
  const n = v as number;
  if ((n & (n - 1)) !== 0) throw new RangeError(`${name} must be a power of two, got ${n}`);
  return n;
}

/**
 * A struct page * array (layout 'pagearray'): kernelBytes = 8 * count. Each entry is one base page.
 */
export class PageArray implements RangeSource {
  readonly layout = 'pagearray' as const;
  /**
   * The pfns as given, not to be written afterwards: the walk reads the page addresses the
   * constructor computed from them.
   */
  readonly pfns: Float64Array;
  readonly pageSize: number;
  /** Byte offset into the first page. */
  readonly offset: number;
  readonly count: number;
  readonly totalLen: number;
  readonly addrFitsNumber: boolean;
  private readonly flagsCol: Uint32Array | null;
  private readonly flagsConst: number;
  private readonly lastLen: number;
  private readonly addrs: Float64Array;
  private cols: PageArrayView | null = null;

  /**
   * pfns as numbers; each entry is one base page of pageSize bytes; the walk starts `offset` bytes
   * into the first page and covers `len` bytes (default count*pageSize - offset). The array keeps
   * pfns (not a copy) and each page's address computed from it now: do not write into it afterwards.
   * @throws TypeError/RangeError naming the bad argument (pfn index, offset, len that does not end in
   *   the last page, flags length).
   */
  constructor(pfns: Float64Array, opts: PageArrayOptions) {
    if (!(pfns instanceof Float64Array)) throw new TypeError(`pfns must be a Float64Array, got ${String(pfns)}`);
    if (opts === null || typeof opts !== 'object') throw new TypeError(`opts must be an object, got ${String(opts)}`);
    const ps = checkPageSize('opts.pageSize', opts.pageSize);
    const n = pfns.length;
    const maxPfn = Math.floor(TWO_POW_53 / ps) - 1;
    const addrs = new Float64Array(n);
    pageAddrs(pfns, maxPfn, ps, addrs);
    const offset = opts.offset === undefined ? 0 : checkLen('opts.offset', opts.offset, 0, n === 0 ? 0 : ps - 1);
    // byte counts as pages / (1 / ps): a small-integer product would overflow past 2 GiB
    const invPs = 1 / ps;
    const full = n / invPs - offset;
    let len = full;
    if (opts.len !== undefined) {
      const minLen = n === 0 ? 0 : (n - 1) / invPs - offset + 1;
      len = checkLen('opts.len', opts.len, Math.max(0, minLen), full);
    }
    let flagsCol: Uint32Array | null = null;
    let flagsConst = 0;
    if (opts.flags instanceof Uint32Array) {
      if (opts.flags.length !== n) {
        throw new RangeError(`opts.flags must have one entry per pfn (${n}), got length ${opts.flags.length}`);
      }
      flagsCol = opts.flags;
    } else if (opts.flags !== undefined) {
      if (typeof opts.flags !== 'number' || (opts.flags >>> 0) !== opts.flags) {
        throw new RangeError(`opts.flags must be a u32 or a Uint32Array, got ${String(opts.flags)}`);
      }
      flagsConst = opts.flags;
    }
    this.pfns = pfns;
    this.addrs = addrs;
    this.pageSize = ps;
    this.offset = offset;
    this.count = n;
    this.totalLen = len;
    this.flagsCol = flagsCol;
    this.flagsConst = flagsConst;
    this.lastLen = n === 0 ? 0 : n === 1 ? len : len - ((n - 1) / invPs - offset);
    // pfn <= maxPfn keeps every page end <= 2^53.
    this.addrFitsNumber = true;
  }

  /** 8 bytes (one struct page pointer) per page on LP64. */
  get kernelBytes(): number {
    return 8 * this.count;
  }

  /** pfn of entry i. */
  pfnAt(i: number): bigint {
    checkIndex(i, this.count);
    return BigInt(this.pfns[i]);
  }

  /** Flags of entry i. */
  flagsAt(i: number): number {
    checkIndex(i, this.count);
    return this.flagsCol === null ? this.flagsConst : this.flagsCol[i];
  }

  /** @internal The storage view the generated cursor reads. */
  columns(): PageArrayView {
    if (this.cols === null) {
      this.cols = {
        n: this.count, pfn: this.pfns, addr: this.addrs, ps: this.pageSize, ord: EMPTY_U8, firstOff: this.offset,
        lastLen: this.lastLen, f: this.flagsCol, fc: this.flagsConst,
      };
    }
    return this.cols;
  }

  /** A cursor over the pages with the given segment limits (types.ts RangeCursor). */
  cursor(opts?: CursorOptions): RangeCursor {
    return new PageArrayCursor(this.columns(), opts);
  }

  /** One Range per page, trimmed by offset and len. */
  *[Symbol.iterator](): Iterator<Range> {
    const ps = this.pageSize;
    const n = this.count;
    for (let i = 0; i < n; i++) {
      const start = this.addrs[i] + (i === 0 ? this.offset : 0);
      const len = i === n - 1 ? this.lastLen : i === 0 ? ps - this.offset : ps;
      yield { addr: BigInt(start), len, flags: this.flagsCol === null ? this.flagsConst : this.flagsCol[i] };
    }
  }
}
