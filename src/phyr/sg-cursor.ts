// Models: include/linux/scatterlist.h, lib/scatterlist.c (Linux 6.x): the walk of a scatterlist
// (for_each_sgtable_sg / for_each_sgtable_dma_sg, sg_next through chain links) as the RangeCursor protocol
// of types.ts, with the segment limits of reference 4.3 (max segment size, segment boundary mask, virt
// boundary) applied by the walk.
//
// The cursor's state is a position (entry, offset in entry, bytes consumed, budget end); the current segment
// is derived from the position, so advance() by part of a segment and clone() are exact.

import { checkLen } from '../base/index.ts';
import type { CursorOptions, RangeCursor, StopReason } from './types.ts';

const SG_CHAIN = 0x01;
const TWO32 = 4294967296;
const TWO53 = 2 ** 53;

/** The columns a cursor walks: the CPU side (pfn/offset/length) or the DMA side (dmaAddr/dmaLen). @internal */
export interface SgSideView {
  readonly count: number;
  /** Every address below 2^53: number arithmetic is exact. */
  readonly fits: boolean;
  readonly pfn: Float64Array;
  readonly link: Uint8Array;
  readonly offset: Uint32Array;
  readonly length: Uint32Array;
  readonly flags: Uint32Array | null;
  readonly pageSize: number;
  /** Non-null for the DMA side. */
  readonly dmaAddr: BigUint64Array | null;
  readonly dmaLen: Uint32Array | null;
}

/** The slot of the entry after the one in slot s (sg_next): a chain link in between is skipped. @internal */
export function nextSlot(link: Uint8Array, s: number): number {
  return link[s + 1] & SG_CHAIN ? s + 2 : s + 1;
}

interface Limits {
  maxSeg: number;
  /** Segment boundary size (mask + 1) as number when exact (<= 2^53), else 0. */
  bSizeNum: number;
  /** Segment boundary size as bigint, or null for no boundary. */
  bSizeBig: bigint | null;
  vMask: number;
  merge: boolean;
}

function readLimits(opts: CursorOptions | undefined): Limits {
  const maxSeg = opts?.maxSegmentLen === undefined ? Infinity : checkLen('maxSegmentLen', opts.maxSegmentLen, 1);
  let bSizeBig: bigint | null = null;
  let bSizeNum = 0;
  if (opts?.segBoundaryMask !== undefined) {
    const m = opts.segBoundaryMask;
    if (typeof m !== 'bigint') throw new TypeError(`segBoundaryMask must be a bigint, got ${typeof m} ${String(m)}`);
    if (m < 0n || m >= 1n << 64n || (m & (m + 1n)) !== 0n) {
      throw new RangeError(`segBoundaryMask must be 2^k - 1 below 2^64, got 0x${m.toString(16)}`);
    }
    if (m !== (1n << 64n) - 1n) {
      bSizeBig = m + 1n;
      if (bSizeBig <= BigInt(TWO53)) bSizeNum = Number(bSizeBig);
    }
  }
  const vMask = opts?.virtBoundaryMask === undefined ? 0 : checkLen('virtBoundaryMask', opts.virtBoundaryMask);
  return { maxSeg, bSizeNum, bSizeBig, vMask, merge: opts?.merge === true };
}

/** A RangeCursor over one side of an SgTable. @internal use SgTable.cursor() / dmaEntries().cursor(). */
export class SgCursor implements RangeCursor {
  private readonly v: SgSideView;
  private readonly lim: Limits;
  private readonly isDma: boolean;
  private idx = 0;
  private slot = 0;
  private off = 0;
  private limit = Infinity;
  private waive = -1;
  private segBig: bigint | null = null;
  done = false;
  stopReason: StopReason | null = null;
  addrNum = 0;
  len = 0;
  flags = 0;
  consumed = 0;

  constructor(v: SgSideView, opts?: CursorOptions, cloneOf?: SgCursor) {
    this.v = v;
    this.isDma = v.dmaAddr !== null;
    if (cloneOf) {
      this.lim = cloneOf.lim;
      return;
    }
    this.lim = readLimits(opts);
    if (opts?.budget !== undefined) this.limit = checkLen('budget', opts.budget);
    const skip = opts?.skip === undefined ? 0 : checkLen('skip', opts.skip);
    // Position on the first entry, then skip bytes (no seam checks, nothing consumed).
    this.skipEmpty();
    let rem = skip;
    while (rem > 0) {
      if (this.idx >= v.count) throw new RangeError(`skip must be <= the source's total length, got ${skip}`);
      const avail = this.lenAt(this.slot) - this.off;
      if (rem < avail) {
        this.off += rem;
        rem = 0;
      } else {
        rem -= avail;
        this.step();
        this.skipEmpty();
      }
    }
    this.settle(false, -1);
  }

  get addr(): bigint {
    if (this.done) return 0n;
    return this.segBig !== null ? this.segBig : BigInt(this.addrNum);
  }

  advance(bytes: number): void {
    if (this.done) throw new RangeError('advance on a cursor that is done');
    checkLen('bytes', bytes, 1, this.len);
    this.consumed += bytes;
    let rem = bytes;
    let crossed = false;
    let lastSlot = -1;
    while (rem > 0) {
      const avail = this.lenAt(this.slot) - this.off;
      if (rem < avail) {
        this.off += rem;
        rem = 0;
        crossed = false;
      } else {
        rem -= avail;
        lastSlot = this.slot;
        this.step();
        this.skipEmpty();
        crossed = true;
      }
    }
    this.settle(crossed, lastSlot);
  }

  next(): boolean {
    if (this.done) return false;
    this.advance(this.len);
    return !this.done;
  }

  clone(): RangeCursor {
    const c = new SgCursor(this.v, undefined, this);
    c.idx = this.idx;
    c.slot = this.slot;
    c.off = this.off;
    c.limit = this.limit;
    c.waive = this.waive;
    c.segBig = this.segBig;
    c.done = this.done;
    c.stopReason = this.stopReason;
    c.addrNum = this.addrNum;
    c.len = this.len;
    c.flags = this.flags;
    c.consumed = this.consumed;
    return c;
  }

  resume(budget?: number): void {
    if (this.stopReason === 'end') return;
    this.limit = budget === undefined ? Infinity : this.consumed + checkLen('budget', budget);
    this.waive = this.idx;
    this.done = false;
    this.stopReason = null;
    this.settle(false, -1);
  }

  // ---- internals ----

  private lenAt(s: number): number {
    return this.isDma ? this.v.dmaLen![s] : this.v.length[s];
  }

  private flagsAt(s: number): number {
    return this.v.flags === null ? 0 : this.v.flags[s];
  }

  /** The pfn of the CPU entry in slot s. @throws RangeError if the entry has a length but no page. */
  private pfnAt(s: number): number {
    const p = this.v.pfn[s];
    if (p < 0) throw new RangeError(`scatterlist entry at slot ${s} has length ${this.v.length[s]} but no page`);
    return p;
  }

  private addrNumAt(s: number): number {
    if (this.isDma) return Number(this.v.dmaAddr![s]);
    return this.pfnAt(s) * this.v.pageSize + this.v.offset[s];
  }

  private addrBigAt(s: number): bigint {
    if (this.isDma) return this.v.dmaAddr![s];
    return BigInt(this.pfnAt(s)) * BigInt(this.v.pageSize) + BigInt(this.v.offset[s]);
  }

  /** Moves to the next entry (sg_next: through a chain link). */
  private step(): void {
    this.idx++;
    this.off = 0;
    if (this.idx < this.v.count) this.slot = nextSlot(this.v.link, this.slot);
  }

  private skipEmpty(): void {
    while (this.idx < this.v.count && this.lenAt(this.slot) - this.off === 0) this.step();
  }

  private finish(reason: StopReason): void {
    this.done = true;
    this.stopReason = reason;
    this.len = 0;
    this.addrNum = 0;
    this.segBig = null;
  }

  private settle(crossed: boolean, lastSlot: number): void {
    if (this.idx >= this.v.count) return this.finish('end');
    if (this.consumed >= this.limit) return this.finish('budget');
    if (crossed && this.lim.vMask !== 0 && this.idx !== this.waive && this.seamBad(lastSlot, this.slot)) {
      return this.finish('virt-boundary');
    }
    this.compute();
  }

  private seamBad(a: number, b: number): boolean {
    const mask = this.lim.vMask;
    if (this.v.fits && mask < TWO32) {
      const end = this.addrNumAt(a) + this.lenAt(a);
      const start = this.addrNumAt(b);
      if (this.lim.merge && end === start && this.flagsAt(a) === this.flagsAt(b)) return false;
      return ((((end % TWO32) >>> 0) | ((start % TWO32) >>> 0)) & mask) !== 0;
    }
    const end = this.addrBigAt(a) + BigInt(this.lenAt(a));
    const start = this.addrBigAt(b);
    if (this.lim.merge && end === start && this.flagsAt(a) === this.flagsAt(b)) return false;
    return ((end | start) & BigInt(mask)) !== 0n;
  }

  /** Derives the current segment from the position. */
  private compute(): void {
    const v = this.v;
    const lim = this.lim;
    const s0 = this.slot;
    const fl = this.flagsAt(s0);
    let cap = Math.min(lim.maxSeg, this.limit - this.consumed);
    // Exact number arithmetic when every address is below 2^53, bigint otherwise.
    let a = 0;
    let aBig: bigint | null = null;
    if (v.fits) {
      a = this.addrNumAt(s0) + this.off;
      if (lim.bSizeNum !== 0) cap = Math.min(cap, lim.bSizeNum - (a % lim.bSizeNum));
    } else {
      aBig = this.addrBigAt(s0) + BigInt(this.off);
      a = Number(aBig);
      if (lim.bSizeBig !== null) {
        const dist = lim.bSizeBig - (aBig % lim.bSizeBig);
        if (dist < BigInt(TWO53)) cap = Math.min(cap, Number(dist));
      }
    }
    let segLen = this.lenAt(s0) - this.off;
    if (lim.merge && segLen < cap) segLen = this.mergeFollowing(segLen, cap, fl, a, aBig);
    this.addrNum = a;
    this.segBig = aBig;
    this.len = Math.min(segLen, cap);
    this.flags = fl;
  }

  /**
   * With merge: extends a segment of segLen bytes at a (aBig when not exact as a number) over the
   * following entries while they continue it physically with the same flags, until cap is reached.
   * Empty entries are passed over. Returns the merged length.
   */
  private mergeFollowing(segLen: number, cap: number, fl: number, a: number, aBig: bigint | null): number {
    const v = this.v;
    let s = this.slot;
    for (let i = this.idx + 1; i < v.count && segLen < cap; i++) {
      s = nextSlot(v.link, s);
      const l = this.lenAt(s);
      if (l === 0) continue;
      if (this.flagsAt(s) !== fl) break;
      const continues = aBig === null ? this.addrNumAt(s) === a + segLen : this.addrBigAt(s) === aBig + BigInt(segLen);
      if (!continues) break;
      segLen += l;
    }
    return segLen;
  }
}
