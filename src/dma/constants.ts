// Models: include/linux/dma-mapping.h and include/linux/dma-direction.h (Linux 7.1; bit 14 from 7.3): directions,
// DMA_ATTR_* bits, DMA_MAPPING_ERROR and DMA_BIT_MASK.

import { checkLen } from '../base/index.ts';

/** enum dma_data_direction. */
export const DMA_BIDIRECTIONAL = 0;
export const DMA_TO_DEVICE = 1;
export const DMA_FROM_DEVICE = 2;
export const DMA_NONE = 3;
export type DmaDataDirection = 0 | 1 | 2 | 3;

/** DMA_ATTR_* bits of `unsigned long attrs` (include/linux/dma-mapping.h). */
export const DMA_ATTR_WEAK_ORDERING = 1 << 1;
export const DMA_ATTR_WRITE_COMBINE = 1 << 2;
export const DMA_ATTR_NO_KERNEL_MAPPING = 1 << 4;
export const DMA_ATTR_SKIP_CPU_SYNC = 1 << 5;
export const DMA_ATTR_FORCE_CONTIGUOUS = 1 << 6;
export const DMA_ATTR_ALLOC_SINGLE_PAGES = 1 << 7;
export const DMA_ATTR_NO_WARN = 1 << 8;
export const DMA_ATTR_PRIVILEGED = 1 << 9;
/** (6.18) phys is MMIO: no translation, no cache maintenance, never bounced. */
export const DMA_ATTR_MMIO = 1 << 10;
/** (2026, hedged) dma-debug cacheline-overlap suppression. */
export const DMA_ATTR_DEBUGGING_IGNORE_CACHELINES = 1 << 11;
/** (7.0) fail rather than bounce or cache-maintain. */
export const DMA_ATTR_REQUIRE_COHERENT = 1 << 12;
/**
 * (7.1, "dma-mapping: introduce DMA_ATTR_CC_SHARED for shared memory") the buffer is already shared
 * with the host (set_memory_decrypted) in a confidential-computing guest: dma-direct maps it through
 * phys_to_dma_unencrypted() without swiotlb; dma_map_phys() on dma-iommu or dma_map_ops fails.
 */
export const DMA_ATTR_CC_SHARED = 1 << 13;
/**
 * (7.3, "dma-mapping: Add internal shared allocation attribute") internal to the DMA core's
 * allocators: a caller passing it is API misuse (checkAttrs throws).
 */
export const __DMA_ATTR_ALLOC_CC_SHARED = 1 << 14;

/** Every attribute bit the model knows; others are API misuse. */
export const DMA_ATTR_ALL = DMA_ATTR_WEAK_ORDERING | DMA_ATTR_WRITE_COMBINE | DMA_ATTR_NO_KERNEL_MAPPING
  | DMA_ATTR_SKIP_CPU_SYNC | DMA_ATTR_FORCE_CONTIGUOUS | DMA_ATTR_ALLOC_SINGLE_PAGES | DMA_ATTR_NO_WARN
  | DMA_ATTR_PRIVILEGED | DMA_ATTR_MMIO | DMA_ATTR_DEBUGGING_IGNORE_CACHELINES | DMA_ATTR_REQUIRE_COHERENT
  | DMA_ATTR_CC_SHARED;

/** (~(dma_addr_t)0): the value the one-shot map calls return on failure. */
export const DMA_MAPPING_ERROR = (1n << 64n) - 1n;

/** ULONG_MAX on LP64: the default segment boundary mask. */
export const ULONG_MAX = (1n << 64n) - 1n;

/**
 * SIZE_MAX as a length. Model deviation: lengths are safe-integer numbers, so "no limit" is
 * Number.MAX_SAFE_INTEGER (2^53 - 1) rather than 2^64 - 1.
 */
export const SIZE_MAX = Number.MAX_SAFE_INTEGER;

/** DMA_BIT_MASK(n) = GENMASK_ULL(n - 1, 0); n = 64 is all ones. n must be in [0, 64]. */
export function DMA_BIT_MASK(n: number): bigint {
  checkLen('n', n, 0, 64);
  return (1n << BigInt(n)) - 1n;
}

/** valid_dma_direction(): BIDIRECTIONAL, TO_DEVICE or FROM_DEVICE (DMA_NONE is not valid for mapping). */
export function validDmaDirection(dir: unknown): dir is 0 | 1 | 2 {
  return dir === DMA_BIDIRECTIONAL || dir === DMA_TO_DEVICE || dir === DMA_FROM_DEVICE;
}

/** The kernel's name for a direction, as dma-debug prints it. */
export function dmaDirName(dir: number): string {
  return ['DMA_BIDIRECTIONAL', 'DMA_TO_DEVICE', 'DMA_FROM_DEVICE', 'DMA_NONE'][dir] ?? `invalid(${dir})`;
}

/** Checks an attrs argument: a non-negative integer with only known DMA_ATTR_* bits. Returns it. */
export function checkAttrs(attrs: unknown): number {
  if (typeof attrs === 'number' && Number.isInteger(attrs) && attrs >= 0 && (attrs & __DMA_ATTR_ALLOC_CC_SHARED) !== 0) {
    throw new RangeError(`attrs must not contain __DMA_ATTR_ALLOC_CC_SHARED (bit 14, internal to the DMA core's allocators), got 0x${attrs.toString(16)}`);
  }
  if (typeof attrs !== 'number' || !Number.isInteger(attrs) || attrs < 0 || (attrs & ~DMA_ATTR_ALL) !== 0) {
    throw new RangeError(`attrs must be a combination of DMA_ATTR_* bits, got ${String(attrs)}`);
  }
  return attrs;
}
