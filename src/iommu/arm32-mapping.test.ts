// ARM32 iommu_ops' IOVA allocator, allocations traced by hand from arch/arm/mm/dma-mapping.c:
// arm_iommu_create_mapping(), __alloc_iova(), extend_iommu_mapping(), __free_iova().
import { describe, expect, it } from 'vitest';
import { Arm32IommuMapping, checkArm32MappingConfig } from './arm32-mapping.ts';

const MiB = 1024 * 1024;

describe('ARM32 dma_iommu_mapping (arch/arm/mm/dma-mapping.c)', () => {
  it('arm_iommu_create_mapping of 4 GiB: 32 extensions of one page of bitmap (32768 pages = 128 MiB each), one allocated', () => {
    const m = new Arm32IommuMapping({ base: 0x1000n, size: 1n << 32n });
    // bits = 2^20; BITS_TO_LONGS * 4 = 128 KiB of bitmap > PAGE_SIZE -> extensions = 32, bitmap_size = 4096
    expect(m.bits).toBe(32768);
    expect(m.extensions).toBe(32);
    expect(m.mappingSize).toBe(128 * MiB);
    expect(m.bitmaps.length).toBe(1);
  });

  it('__alloc_iova: first fit from bit 0, aligned to get_order(size) (capped at CONFIG_ARM_DMA_IOMMU_ALIGNMENT 8)', () => {
    const m = new Arm32IommuMapping({ base: 0x1000n, size: 1n << 32n });
    // 3 pages: order 2 -> align 3; bit 0 -> base
    expect(m.allocIova(0x3000)).toBe(0x1000n);
    // 1 page: order 0: the first clear bit, 3
    expect(m.allocIova(0x1000)).toBe(0x1000n + 3n * 0x1000n);
    // 5 pages: order 3 -> align 7: first clear bit 4 rounds up to 8
    expect(m.allocIova(0x5000)).toBe(0x1000n + 8n * 0x1000n);
    // 2 MiB = 512 pages: order 9 capped at 8 -> aligned to 256 pages (1 MiB), not 2 MiB
    expect(m.allocIova(2 * MiB)).toBe(0x1000n + 256n * 0x1000n);
    // bits 4..7 are still free: a 4-page request (order 2) fits there
    expect(m.allocIova(0x4000)).toBe(0x1000n + 4n * 0x1000n);
    expect(m.allocated()).toEqual([[0x1000n, 13 * 0x1000], [0x1000n + 256n * 0x1000n, 2 * MiB]]);
  });

  it('CONFIG_ARM_DMA_IOMMU_ALIGNMENT 4: a 2 MiB buffer aligns to 16 pages only', () => {
    const m = new Arm32IommuMapping({ base: 0x1000n, size: 1n << 32n, alignment: 4 });
    expect(m.allocIova(0x1000)).toBe(0x1000n);
    expect(m.allocIova(2 * MiB)).toBe(0x1000n + 16n * 0x1000n);
  });

  it('a full bitmap extends the mapping (extend_iommu_mapping): the next IOVA is base + 128 MiB; never across two bitmaps', () => {
    const m = new Arm32IommuMapping({ base: 0x1000n, size: 1n << 32n });
    expect(m.allocIova(128 * MiB - 0x1000)).toBe(0x1000n); // 32767 pages: order 15 capped at 8
    expect(m.bitmaps.length).toBe(1);
    // 2 pages do not fit in the one page left of bitmap 0: a second bitmap
    expect(m.allocIova(0x2000)).toBe(0x1000n + BigInt(128 * MiB));
    expect(m.bitmaps.length).toBe(2);
    // 1 page still fits in bitmap 0 (first fit over the bitmaps in order)
    expect(m.allocIova(0x1000)).toBe(0x1000n + BigInt(128 * MiB - 0x1000));
    m.freeIova(0x1000n + BigInt(128 * MiB), 0x2000);
    expect(m.allocated()).toEqual([[0x1000n, 128 * MiB]]);
    // the extension stays allocated once made (the kernel frees bitmaps only in release_iommu_mapping)
    expect(m.bitmaps.length).toBe(2);
  });

  it('more than one bitmap\'s worth fails with DMA_MAPPING_ERROR, yet the failed try still added an extension', () => {
    const m = new Arm32IommuMapping({ base: 0x1000n, size: 1n << 32n });
    expect(m.allocIova(128 * MiB + 0x1000)).toBeNull();
    expect(m.bitmaps.length).toBe(2);
    expect(m.allocated()).toEqual([]);
  });

  it('the bitmap rounds up to whole longs: a 100-page mapping hands out 128 pages (mapping->bits = 128)', () => {
    const m = new Arm32IommuMapping({ base: 0x1000n, size: 100n * 0x1000n });
    expect(m.bits).toBe(128);
    expect(m.allocIova(128 * 0x1000)).toBe(0x1000n);
    expect(m.allocIova(0x1000)).toBeNull(); // extensions = 1
  });

  it('a bitmap_size that is not a whole number of pages drops the remainder: 40000 pages asked, 32768 usable', () => {
    // BITS_TO_LONGS(40000) * 4 = 5000 bytes > 4096: extensions = 5000 / 4096 = 1
    const m = new Arm32IommuMapping({ base: 0x1000n, size: 40000n * 0x1000n });
    expect(m.extensions).toBe(1);
    expect(m.bits).toBe(32768);
    expect(m.allocIova(32768 * 0x1000)).toBe(0x1000n);
    expect(m.allocIova(0x1000)).toBeNull();
  });

  it('__free_iova outside the mapping or across bitmaps is refused (a BUG_ON in the kernel)', () => {
    const m = new Arm32IommuMapping({ base: 0x10000n, size: 1n << 30n });
    expect(() => m.freeIova(0x1000n, 0x1000)).toThrow(RangeError);
    expect(() => m.freeIova(0x10000n + BigInt(128 * MiB) - 0x1000n, 0x2000)).toThrow(RangeError);
  });

  it('config: size above 4 GiB is ERANGE, base 0 refused (IOVA 0 is never unmapped), alignment in [4, 9]', () => {
    expect(() => checkArm32MappingConfig('c', { base: 0x1000n, size: (1n << 32n) + 0x1000n })).toThrow(/ERANGE/);
    expect(() => checkArm32MappingConfig('c', { base: 0n, size: 1n << 32n })).toThrow(/c.base/);
    expect(() => checkArm32MappingConfig('c', { base: 0x1000n, size: 1n << 20n, alignment: 10 })).toThrow(/alignment/);
    expect(checkArm32MappingConfig('c', { base: 0x1000n, size: 1n << 20n })).toEqual({ base: 0x1000n, size: 1n << 20n });
  });
});
