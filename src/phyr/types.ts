// Models: the non-leaky range API of the phyr discussion (seed 000/003: Gunthorpe's rlist_cpu
// "iterate abstractly over CPU physical ranges"; reference 1.2) and struct bvec_iter's idea of a
// small copyable position (include/linux/bvec.h). Every layout implements RangeSource, and every
// consumer walks ranges through RangeCursor without learning how they are stored.

/** One range as handed out by for..of: a start address, a byte length and memory-type flags. */
export interface Range {
  readonly addr: bigint;
  readonly len: number;
  readonly flags: number;
}

/** The layouts the seeds discuss, plus the output-side DMA list. */
export type LayoutName = 'phyr' | 'bvec' | 'pagelist' | 'pagearray' | 'scatterlist' | 'dmalist';

/**
 * Segment constraints as block queue limits have them (reference 4.3, get_max_segment_size):
 * applied by the walk, never re-implemented by consumers.
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
   * virt_boundary_mask: every interior seam between two source entries must be aligned to it
   * (end of one and start of the next). A walk stops (stopReason 'virt-boundary') at a seam that
   * is not, as the block layer splits a bio there. Default: 0 (no constraint).
   */
  readonly virtBoundaryMask?: number;
  /** Merge physically adjacent entries with equal flags into one segment (as blk_map_iter does). */
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
 * A position in a range source, with the current segment already cut to the limits.
 * Copying (clone) saves the position; splitting a walk is cloning a cursor.
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
   * After a stop for 'budget' or 'virt-boundary', continues from the current position with a new
   * budget (undefined: no budget), as the next bio of a split would.
   */
  resume(budget?: number): void;
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
