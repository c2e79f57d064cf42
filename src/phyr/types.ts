// Models: the non-leaky range API of the phyr discussion (Gunthorpe's rlist_cpu: "iterate
// abstractly over CPU physical ranges") and struct bvec_iter's small copyable position
// (include/linux/bvec.h). Every layout implements RangeSource, and every consumer walks ranges
// through RangeCursor without learning how they are stored.

/** One range as handed out by for..of: a start address, a byte length and memory-type flags. */
export interface Range {
  readonly addr: bigint;
  readonly len: number;
  readonly flags: number;
}

/** The input layouts of the phyr discussion, plus the output-side DMA list. */
export type LayoutName = 'phyr' | 'bvec' | 'pagelist' | 'pagearray' | 'scatterlist' | 'dmalist';

/**
 * Segment constraints as block queue limits have them (include/linux/blkdev.h: struct
 * queue_limits; block/blk.h: get_max_segment_size): applied by the walk, never re-implemented by
 * consumers. Every layout applies them the same way (one generated walker, cursor.gen.ts).
 */
export interface SegmentLimits {
  /** Largest segment in bytes (queue_limits.max_segment_size). Default: unlimited. */
  readonly maxSegmentLen?: number;
  /**
   * A segment never crosses an address where (addr & ~segBoundaryMask) changes
   * (queue_limits.seg_boundary_mask; e.g. 0xffffffffn: never cross a 4 GiB line). Default: none.
   */
  readonly segBoundaryMask?: bigint;
  /**
   * virt_boundary_mask (2^k - 1, or 0 for none): every seam between two source entries that the
   * walk does not merge must be aligned to it (end of one and start of the next). A walk stops
   * (stopReason 'virt-boundary') at a seam that is not, as the block layer splits a bio there
   * (block/blk.h: bvec_gap_to_prev). With `merge`, physically adjacent entries with equal flags
   * are one run first (block/bio.c: bvec_try_merge_page), so their seam is never a gap.
   * Default: 0 (no constraint).
   */
  readonly virtBoundaryMask?: number;
  /**
   * Merge physically adjacent entries with equal flags into one segment (block/blk-mq-dma.c:
   * blk_map_iter_next, block/blk.h: biovec_phys_mergeable).
   */
  readonly merge?: boolean;
}

export interface CursorOptions extends SegmentLimits {
  /** Stop after this many bytes (stopReason 'budget'). Default: the whole source. */
  readonly budget?: number;
  /** Start this many bytes into the source. Default 0. */
  readonly skip?: number;
}

export type StopReason = 'end' | 'budget' | 'virt-boundary';

/**
 * A saved walk position, a small plain value like struct bvec_iter (include/linux/bvec.h: bi_idx,
 * bi_bvec_done, bi_size): RangeCursor.pos() takes it and seek() on a cursor over the same source,
 * with the same options, continues the walk exactly from there (stops included).
 */
export interface RangePos {
  /** Entry index (bi_idx); the source's entry count once the walk has reached its end. */
  readonly idx: number;
  /** Bytes of entry idx already walked (bi_bvec_done), counted from where the walk enters it. */
  readonly off: number;
  /** Bytes walked since the walk started (RangeCursor.consumed). */
  readonly consumed: number;
  /** The walk stops for 'budget' when consumed reaches this (Infinity: no budget). */
  readonly budgetEnd: number;
  /** consumed at the walk's start or its last resume(): no 'virt-boundary' stop at that point. */
  readonly resumeAt: number;
}

/** Frame size of SegmentColumns' (frame, frameOff) address form: addr = frame * 4096 + frameOff. */
export const SEG_FRAME_SIZE = 4096;

/**
 * Caller-provided typed-array columns that RangeCursor.fill() writes segments into: one row per
 * segment, rows 0 .. k-1 for a fill that returns k.
 */
export interface SegmentColumns {
  /** Segment start addresses; exact when the source's addrFitsNumber is true. null: not written. */
  readonly addr: Float64Array | null;
  /**
   * The same start as a (frame, offset) pair, exact over 64 bits: addr = frame * SEG_FRAME_SIZE +
   * frameOff. Both or neither; needed when addr is null.
   */
  readonly frame?: Float64Array | null;
  readonly frameOff?: Uint32Array | null;
  /** Segment lengths in bytes. */
  readonly len: Float64Array;
  /** Segment flags (flags.ts). null: not written. */
  readonly flags?: Uint32Array | null;
}

/**
 * A position in a range source, with the current segment already cut to the limits.
 * Copying (clone) or pos()/seek() saves the position; splitting a walk is cloning a cursor.
 */
export interface RangeCursor {
  /** true once the walk has ended; stopReason says why. */
  readonly done: boolean;
  readonly stopReason: StopReason | null;
  /** Start of the current segment. */
  readonly addr: bigint;
  /**
   * The same address as a number, for hot loops; exact when the source's addrFitsNumber is true
   * (every physical address on a machine of <= 52 address bits is).
   */
  readonly addrNum: number;
  /** Bytes in the current segment (0 when done). */
  readonly len: number;
  /** Memory-type flags of the current segment (see flags.ts). */
  readonly flags: number;
  /** Bytes walked before the current segment, counted from the start of the walk. */
  readonly consumed: number;
  /** Consumes `bytes` (0 < bytes <= len) of the current segment; moves to the next when it is used up. */
  advance(bytes: number): void;
  /** Consumes the whole current segment; returns !done. */
  next(): boolean;
  /** An independent copy at the same position. */
  clone(): RangeCursor;
  /**
   * After a stop for 'budget' or 'virt-boundary' (or at any position), continues from the current
   * position with a new budget (undefined: no budget), as the next bio of a split would. A walk that
   * reached its end stays done.
   */
  resume(budget?: number): void;
  /** The position as a plain value (see RangePos). */
  pos(): RangePos;
  /**
   * Moves to a position taken by pos() on a cursor over the same source with the same options; the
   * walk then goes on exactly as from there (stops included).
   * @throws TypeError/RangeError naming the field of a position that cannot belong to this source.
   */
  seek(pos: RangePos): void;
  /**
   * Writes up to `max` segments, from the current one on, into rows 0 .. k-1 of `cols` and consumes
   * them (as k calls of next() would); returns k. k < max only when the walk stops (done).
   * @throws TypeError/RangeError naming cols or max (max above a column's length).
   */
  fill(cols: SegmentColumns, max: number): number;
}

/** Anything that can be walked as ranges: every layout, scatterlists, DMA lists. */
export interface RangeSource extends Iterable<Range> {
  readonly layout: LayoutName;
  /** Entries in the structure (for a scatterlist: CPU entries, orig_nents). */
  readonly count: number;
  /** Sum of range lengths in bytes. */
  readonly totalLen: number;
  /** What the same structure costs in the kernel on LP64, in bytes. */
  readonly kernelBytes: number;
  /** true when every address in the source is below 2^53, so cursor.addrNum is exact. */
  readonly addrFitsNumber: boolean;
  cursor(opts?: CursorOptions): RangeCursor;
}
