// Models: arch/arm/mm/dma-mapping.c (Linux 7.1), the IOVA side of ARM32's `iommu_ops`:
// struct dma_iommu_mapping as arm_iommu_create_mapping() builds it (one bitmap of at most one
// page, `extensions` more allocated on demand by extend_iommu_mapping()), __alloc_iova() and
// __free_iova(). The rest of ARM32's iommu_ops (iommu_map / iommu_unmap on the mapping's paging
// domain, synchronous unmap) is what dma-iommu already does in a strict domain, so a domain with
// this allocator is "dma-iommu configured as ARM32" rather than a new engine.
// Model deviation: the kernel can hand out IOVA 0 (mapping base 0, first bit free) and then never
// unmaps it (arm_iommu_unmap_phys: `if (!iova) return;`); the model keeps 0 as "no space", so the
// mapping's base must be at least one page (IommuConfig.arm32Mapping is checked for it).

/** ARM32 pages are 4 KiB (PAGE_SHIFT 12): every bit of the bitmap is one page of IOVA. */
const PAGE = 4096;
/** BITS_PER_LONG on ARM32: bitmaps are whole 32-bit longs. */
const BITS_PER_LONG = 32;
/** CONFIG_ARM_DMA_IOMMU_ALIGNMENT: default 8 (range 4..9, arch/arm/Kconfig). */
export const ARM_DMA_IOMMU_ALIGNMENT_DEFAULT = 8;

/** arm_iommu_create_mapping(dev, base, size) arguments, plus the Kconfig alignment order. */
export interface Arm32MappingConfig {
  /** First IOVA of the mapping (arm_setup_iommu_dma_ops: dma_range_map_min, else 0). */
  readonly base: bigint;
  /** Bytes of IOVA space asked for (arm_setup_iommu_dma_ops: 4 GiB without a dma_range_map). */
  readonly size: bigint;
  /** CONFIG_ARM_DMA_IOMMU_ALIGNMENT (4..9; default 8). */
  readonly alignment?: number;
}

/** Checks an arm32Mapping config; `where` names it. @throws RangeError naming the field. */
export function checkArm32MappingConfig(where: string, v: unknown): Arm32MappingConfig {
  if (v === null || typeof v !== 'object') throw new RangeError(`${where} must be { base, size, alignment? }, got ${String(v)}`);
  const c = v as Record<string, unknown>;
  for (const k of Object.keys(c)) if (!['base', 'size', 'alignment'].includes(k)) throw new RangeError(`${where}.${k} is not an arm32Mapping field`);
  if (typeof c.base !== 'bigint' || c.base < BigInt(PAGE) || c.base % BigInt(PAGE) !== 0n || c.base >= 1n << 32n) {
    throw new RangeError(`${where}.base must be a page-aligned bigint in [0x1000, 2^32) (IOVA 0 is never unmapped by arm_iommu_unmap_phys), got ${String(c.base)}`);
  }
  // arm_iommu_create_mapping: size > DMA_BIT_MASK(32) + 1 is -ERANGE; bits == 0 is -EINVAL
  if (typeof c.size !== 'bigint' || c.size < BigInt(PAGE) || c.size > 1n << 32n) {
    throw new RangeError(`${where}.size must be a bigint in [4096, 2^32] (arm_iommu_create_mapping: ERANGE above 4 GiB, EINVAL below a page), got ${String(c.size)}`);
  }
  if (c.alignment !== undefined && (typeof c.alignment !== 'number' || !Number.isInteger(c.alignment) || c.alignment < 4 || c.alignment > 9)) {
    throw new RangeError(`${where}.alignment must be CONFIG_ARM_DMA_IOMMU_ALIGNMENT in [4, 9], got ${String(c.alignment)}`);
  }
  return c as unknown as Arm32MappingConfig;
}

/** get_order(count pages): the smallest order with 2^order >= count. */
function getOrder(count: number): number {
  let o = 0;
  while (2 ** o < count) o++;
  return o;
}

/** struct dma_iommu_mapping: the bitmaps of an ARM32 IOMMU mapping. */
export class Arm32IommuMapping {
  readonly base: bigint;
  /** Bits (pages) per bitmap: BITS_PER_BYTE * bitmap_size, whole longs, at most one page of bitmap. */
  readonly bits: number;
  /** How many bitmaps the mapping may grow to. */
  readonly extensions: number;
  /** The bitmaps allocated so far (nr_bitmaps = bitmaps.length); one bit per page. */
  readonly bitmaps: Uint8Array[] = [];
  readonly alignment: number;
  /**
   * Per bitmap, a bit index below which every bit is set: the search from bit 0 starts there (the
   * same first clear bit find_next_zero_bit would reach, without rescanning a full prefix bit by bit).
   */
  private readonly firstClear: number[] = [];

  constructor(cfg: Arm32MappingConfig) {
    const bitsAsked = Number(cfg.size / BigInt(PAGE));
    // BITS_TO_LONGS(bits) * sizeof(long): the bitmap rounds up to whole 32-bit longs
    let bitmapSize = Math.ceil(bitsAsked / BITS_PER_LONG) * 4;
    let extensions = 1;
    if (bitmapSize > PAGE) {
      // integer division: a remainder of less than one page of bitmap is dropped
      extensions = Math.floor(bitmapSize / PAGE);
      bitmapSize = PAGE;
    }
    this.base = cfg.base;
    this.bits = 8 * bitmapSize;
    this.extensions = extensions;
    this.alignment = cfg.alignment ?? ARM_DMA_IOMMU_ALIGNMENT_DEFAULT;
    this.bitmaps.push(new Uint8Array(this.bits));
    this.firstClear.push(0);
  }

  /** Bytes of IOVA one bitmap covers (mapping->bits << PAGE_SHIFT). */
  get mappingSize(): number {
    return this.bits * PAGE;
  }

  /** bitmap_find_next_zero_area(map, bits, 0, count, align): the index, or a value > bits when none fits. */
  private findZeroArea(b: number, count: number, alignMask: number): number {
    const map = this.bitmaps[b];
    let start = this.firstClear[b];
    while (start < this.bits && map[start]) start++;
    this.firstClear[b] = start;
    for (;;) {
      let index = start;
      while (index < this.bits && map[index]) index++;
      index = (index + alignMask) & ~alignMask;
      const end = index + count;
      if (end > this.bits) return end;
      let i = index;
      while (i < end && !map[i]) i++;
      if (i === end) return index;
      start = i + 1;
    }
  }

  /**
   * __alloc_iova: `size` bytes (rounded up to pages), aligned to the size's order capped at
   * CONFIG_ARM_DMA_IOMMU_ALIGNMENT, first fit from bit 0 of each bitmap in turn; when none has room,
   * one more bitmap (extend_iommu_mapping) and a second try there. Never across two bitmaps.
   * Returns the IOVA, or null for DMA_MAPPING_ERROR.
   */
  allocIova(size: number): bigint | null {
    const count = Math.ceil(size / PAGE);
    const order = Math.min(getOrder(count), this.alignment);
    const align = 2 ** order - 1;
    for (let i = 0; i < this.bitmaps.length; i++) {
      const start = this.findZeroArea(i, count, align);
      if (start > this.bits) continue;
      this.bitmaps[i].fill(1, start, start + count);
      return this.base + BigInt(this.mappingSize) * BigInt(i) + BigInt(start * PAGE);
    }
    if (this.bitmaps.length >= this.extensions) return null;
    const map = new Uint8Array(this.bits);
    this.bitmaps.push(map);
    this.firstClear.push(0);
    const start = this.findZeroArea(this.bitmaps.length - 1, count, align);
    if (start > this.bits) return null;
    map.fill(1, start, start + count);
    return this.base + BigInt(this.mappingSize) * BigInt(this.bitmaps.length - 1) + BigInt(start * PAGE);
  }

  /**
   * __free_iova: clears size >> PAGE_SHIFT bits from addr's place in its bitmap. An address below
   * the base, past the last extension or a range running into the next bitmap is a BUG in the
   * kernel; here a RangeError.
   */
  freeIova(addr: bigint, size: number): void {
    if (size === 0) return;
    const off = addr - this.base;
    const index = off < 0n ? -1 : Number(off / BigInt(this.mappingSize));
    if (off < 0n || index >= this.bitmaps.length) throw new RangeError(`addr must be inside the ARM32 mapping, got 0x${addr.toString(16)}`);
    const start = Number((off - BigInt(this.mappingSize) * BigInt(index)) / BigInt(PAGE));
    const count = Math.floor(size / PAGE);
    if (start + count > this.bits) throw new RangeError(`addr + size must stay in one bitmap (__free_iova BUG), got 0x${addr.toString(16)} + ${size}`);
    this.bitmaps[index].fill(0, start, start + count);
    if (start < this.firstClear[index]) this.firstClear[index] = start;
  }

  /** The allocator as frame numbers for dma-iommu: first frame of `pages` pages, or 0 when none. */
  allocPfn(pages: number): number {
    const a = this.allocIova(pages * PAGE);
    return a === null ? 0 : Number(a / BigInt(PAGE));
  }

  freePfn(pfn: number, pages: number): void {
    this.freeIova(BigInt(pfn) * BigInt(PAGE), pages * PAGE);
  }

  /** Allocated runs as [first IOVA, bytes], ascending. */
  allocated(): Array<[bigint, number]> {
    const out: Array<[bigint, number]> = [];
    this.bitmaps.forEach((map, b) => {
      for (let i = 0; i < this.bits;) {
        if (!map[i]) { i++; continue; }
        let j = i;
        while (j < this.bits && map[j]) j++;
        out.push([this.base + BigInt(this.mappingSize) * BigInt(b) + BigInt(i * PAGE), (j - i) * PAGE]);
        i = j;
      }
    });
    return out;
  }
}
