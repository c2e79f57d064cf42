// Models: the output side of DMA mapping (Matthew Wilcox, "Phyr Starter", 10 Jan 2022: { dma_addr_t dma_address; size_t
// dma_length }, Hellwig's "dma_vec"; Jason Gunthorpe's reply, 11 Jan 2022: "DMA map returns the same data structure", and
// DMA-direct can hand back the CPU list unchanged). The kernel's struct dma_vec (include/linux/dmaengine.h) has the same two fields;
// NVMe's private struct nvme_dma_vec is the nearest. 16 bytes per entry on LP64.
//
// Storage is the PhyrList column layout (phyr-list.ts): Float64 addresses with an exact sparse
// fallback above 2^53 (IOVAs and bus addresses may use all 64 bits), Float64 lengths, flags.

import { buildFromRanges, checkOptionalFlagsU32 } from './layout-util.ts';
import { AddrLenBuilder, AddrLenList, PhyrList } from './phyr-list.ts';

/** Builds a DmaList entry by entry; push() merges DMA-contiguous entries with equal flags. */
export class DmaListBuilder extends AddrLenBuilder<DmaList> {
  protected make(
    a: Float64Array, l: Float64Array, f: Uint32Array | null, fc: number,
    big: Map<number, bigint> | null, count: number, totalLen: number,
  ): DmaList {
    return DmaList.fromColumns(a, l, f, fc, big, count, totalLen, false);
  }
}

/**
 * A list of mapped ranges { DMA address, len } (layout 'dmalist'), the result of mapping a range
 * list for a device. Flags carry the memory type of the source through (e.g. RANGE_MMIO).
 */
export class DmaList extends AddrLenList {
  readonly layout = 'dmalist' as const;
  /** true for a zero-copy view over a PhyrList's columns (DmaList.sharing). */
  readonly sharesStorage: boolean;

  private constructor(
    a: Float64Array, l: Float64Array, f: Uint32Array | null, fc: number,
    big: ReadonlyMap<number, bigint> | null, count: number, totalLen: number, shares: boolean,
  ) {
    super(a, l, f, fc, big, count, totalLen);
    this.sharesStorage = shares;
  }

  /** @internal */
  static fromColumns(
    a: Float64Array, l: Float64Array, f: Uint32Array | null, fc: number,
    big: ReadonlyMap<number, bigint> | null, count: number, totalLen: number, shares: boolean,
  ): DmaList {
    return new DmaList(a, l, f, fc, big, count, totalLen, shares);
  }

  /**
   * 16 bytes per entry; 0 for a sharing view, which allocates nothing in the kernel (dma-direct
   * without translation returns the CPU list itself).
   */
  override get kernelBytes(): number {
    return this.sharesStorage ? 0 : 16 * this.count;
  }

  /**
   * A zero-copy view of a PhyrList as DMA ranges (dma-direct with no address translation: the DMA
   * address equals the physical address). Reports sharesStorage: true.
   * @throws TypeError if list is not a PhyrList.
   */
  static sharing(list: PhyrList): DmaList {
    if (!(list instanceof PhyrList)) throw new TypeError(`list must be a PhyrList, got ${String(list)}`);
    return new DmaList(list._a, list._l, list._f, list._fc, list._big, list.count, list.totalLen, true);
  }

  /**
   * A list with exactly these entries (validated, no merging).
   * @throws TypeError/RangeError naming the entry index and field.
   */
  static from(ranges: Iterable<{ addr: bigint; len: number; flags?: number }>): DmaList {
    // Unlike PhyrList.from, null flags count as 0 and a non-number flags value is a RangeError.
    return buildFromRanges(new DmaListBuilder(), ranges, checkOptionalFlagsU32);
  }

  /** A builder (merging push, like PhyrListBuilder). */
  static builder(initialCapacity?: number): DmaListBuilder {
    return new DmaListBuilder(initialCapacity);
  }
}
