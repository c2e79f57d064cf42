// Models: dma_set_mask / dma_set_coherent_mask / dma_supported (kernel/dma/mapping.c),
// dma_direct_supported and dma_direct_get_required_mask (kernel/dma/direct.c), and the
// device_dma_parameters accessors of include/linux/dma-mapping.h (dma_set_max_seg_size,
// dma_set_seg_boundary, dma_set_min_align_mask, ...; Linux 7.1).

import type { Device } from '../pci/index.ts';
import { checkAddr, checkLen, err, ok, type Result, U32_MAX } from '../base/index.ts';
import { dmaContextIfAny } from './context.ts';
import { DMA_BIT_MASK, DMA_MAPPING_ERROR, ULONG_MAX } from './constants.ts';
import { physToDmaUnencrypted, translatePhysToDma } from './direct-addr.ts';
import { devDmaOps, getDmaOps } from './ops/ops.ts';

/** SZ_64K: dma_get_max_seg_size() when the driver never set one. */
export const DMA_DEFAULT_MAX_SEG_SIZE = 64 * 1024;
/**
 * zone_dma_limit on x86-64: ZONE_DMA is the low 16 MiB, so a direct-mapped device must at least
 * reach DMA_BIT_MASK(24).
 */
export const ZONE_DMA_LIMIT = DMA_BIT_MASK(24);

/** max_pfn: one past the highest System RAM page frame of the device's machine (0n without a machine). */
export function maxRamPfn(dev: Device): bigint {
  const ctx = dmaContextIfAny(dev);
  if (!ctx) return 0n;
  let end = 0n;
  for (const r of ctx.mm.regions) if (r.kind === 'ram' && r.end > end) end = r.end;
  return end >> BigInt(ctx.mm.pageShift);
}

function pageShiftOf(dev: Device): bigint {
  return BigInt(dmaContextIfAny(dev)?.mm.pageShift ?? 12);
}

/** fls64-based rounding: the smallest all-ones mask covering x. */
function coverMask(x: bigint): bigint {
  if (x <= 0n) return 0n;
  return (1n << BigInt(x.toString(2).length)) - 1n;
}

/**
 * dma_direct_get_required_mask (kernel/dma/direct.c): the smallest all-ones mask covering the DMA
 * address of the last byte of RAM. When the range map does not translate that byte, the address is
 * DMA_MAPPING_ERROR and the mask all ones, as fls64(~0) makes it.
 */
export function dmaDirectGetRequiredMask(dev: Device): bigint {
  const maxPfn = maxRamPfn(dev);
  if (maxPfn === 0n) return DMA_BIT_MASK(32);
  const lastByte = (maxPfn << pageShiftOf(dev)) - 1n;
  return coverMask(physToDmaUnencrypted(dev, lastByte));
}

/**
 * dma_go_direct (kernel/dma/mapping.c) for a mask: not behind dma-iommu, and either no dma_map_ops
 * or dma_ops_bypass with min_not_zero(mask, bus_dma_limit) reaching dma_direct_get_required_mask.
 * dma_map_direct asks it with *dev->dma_mask, dma_alloc_direct with the coherent mask.
 */
export function dmaGoDirectFor(dev: Device, mask: bigint): boolean {
  if (dev.dmaIommu) return false;
  const o = devDmaOps(dev);
  if (o === undefined) return true;
  if (!o.bypass) return false;
  const lim = dev.busDmaLimit;
  const m = mask === 0n ? lim : lim === 0n ? mask : mask < lim ? mask : lim;
  return m >= dmaDirectGetRequiredMask(dev);
}

/**
 * dma_get_required_mask (kernel/dma/mapping.c): dma_direct_get_required_mask when allocations go
 * direct (no dma_map_ops, or dma_ops_bypass with a coherent mask that reaches all of RAM); 32 bits
 * behind dma-iommu; else the ops' ->get_required_mask, and 32 bits for ops without one (Xen
 * swiotlb and grants, the dummy ops).
 */
export function dmaGetRequiredMask(dev: Device): bigint {
  // dma_alloc_direct: dma_go_direct() with the coherent mask
  if (dmaGoDirectFor(dev, dev.coherentDmaMask)) return dmaDirectGetRequiredMask(dev);
  if (dev.dmaIommu) return DMA_BIT_MASK(32);
  return devDmaOps(dev)?.ops.getRequiredMask?.(dev) ?? DMA_BIT_MASK(32);
}

/**
 * dma_direct_supported: any mask of 32 bits or more; below that the mask must reach the end of
 * ZONE_DMA (or of RAM, if smaller).
 */
export function dmaDirectSupported(dev: Device, mask: bigint): boolean {
  if (mask >= DMA_BIT_MASK(32)) return true;
  const maxPfn = maxRamPfn(dev);
  // kernel/dma/direct.c: the last byte of RAM (or the end of ZONE_DMA, if lower) must be reachable
  let minMask = maxPfn > 0n ? (maxPfn << pageShiftOf(dev)) - 1n : ZONE_DMA_LIMIT;
  if (ZONE_DMA_LIMIT < minMask) minMask = ZONE_DMA_LIMIT;
  const need = physToDmaUnencrypted(dev, minMask);
  return need !== DMA_MAPPING_ERROR && mask >= need;
}

/**
 * dma_supported: an IOMMU-backed device supports any mask (the IOVA allocator honours it); a device
 * with dma_map_ops asks ->dma_supported (every mask when the ops have none).
 */
export function dmaSupported(dev: Device, mask: bigint): boolean {
  if (dev.dmaIommu) return true;
  const ops = getDmaOps(dev);
  if (ops !== null) return ops.dmaSupported?.(dev, mask) ?? true;
  return dmaDirectSupported(dev, mask);
}

/**
 * dma_setup_need_sync: a coherent device that maps direct (no dma_map_ops, or dma_ops_bypass with a
 * mask that reaches RAM: dma_map_direct) or through dma-iommu starts with dma_skip_sync set; the
 * first swiotlb bounce clears it again. A device on dma_map_ops without sync callbacks skips syncs
 * whatever its coherence (they could do nothing).
 */
export function dmaSetupNeedSync(dev: Device): void {
  if (dmaGoDirectFor(dev, dev.dmaMask ?? 0n) || dev.dmaIommu) {
    dev.dmaSkipSync = dev.dmaCoherent;
    return;
  }
  const ops = getDmaOps(dev);
  dev.dmaSkipSync = ops === null || (!ops.syncSingleForCpu && !ops.syncSingleForDevice);
}

/**
 * dma_set_mask: sets *dev->dma_mask. Errors: EIO when the device has no dma_mask pointer or the
 * platform cannot honour the mask (below ZONE_DMA for a direct-mapped device); retrying the same
 * mask cannot help, a wider one may.
 */
export function dmaSetMask(dev: Device, mask: bigint): Result<void> {
  checkAddr('mask', mask);
  if (dev.dmaMask === null) return err('EIO', `${dev.name} has no dma_mask`);
  if (!dmaSupported(dev, mask)) return err('EIO', `mask 0x${mask.toString(16)} is not supported by ${dev.name}`);
  dev.dmaMask = mask;
  dmaSetupNeedSync(dev);
  return ok();
}

/** dma_set_coherent_mask. Errors: EIO when the mask is not supported (as dmaSetMask). */
export function dmaSetCoherentMask(dev: Device, mask: bigint): Result<void> {
  checkAddr('mask', mask);
  if (!dmaSupported(dev, mask)) return err('EIO', `mask 0x${mask.toString(16)} is not supported by ${dev.name}`);
  dev.coherentDmaMask = mask;
  return ok();
}

/** dma_set_mask_and_coherent: both masks, the coherent one only if the streaming one succeeded. Errors: EIO. */
export function dmaSetMaskAndCoherent(dev: Device, mask: bigint): Result<void> {
  const r = dmaSetMask(dev, mask);
  if (r.ok) dmaSetCoherentMask(dev, mask);
  return r;
}

/**
 * dma_get_mask (include/linux/dma-mapping.h): *dev->dma_mask, or DMA_BIT_MASK(32) when the device
 * has no dma_mask or it is 0 (dma_set_mask(dev, 0) succeeds behind an IOMMU or a TCE table).
 */
export function dmaGetMask(dev: Device): bigint {
  return dev.dmaMask === null || dev.dmaMask === 0n ? DMA_BIT_MASK(32) : dev.dmaMask;
}

/** dma_set_max_seg_size (void since 6.12): n in [1, UINT_MAX]. */
export function dmaSetMaxSegSize(dev: Device, n: number): void {
  dev.dmaParms.maxSegmentSize = checkLen('n', n, 1, U32_MAX);
}

/** dma_get_max_seg_size: the set value, or 64 KiB. */
export function dmaGetMaxSegSize(dev: Device): number {
  return dev.dmaParms.maxSegmentSize || DMA_DEFAULT_MAX_SEG_SIZE;
}

/** dma_set_seg_boundary: mask must be 2^k - 1 (k >= 1). */
export function dmaSetSegBoundary(dev: Device, mask: bigint): void {
  checkAddr('mask', mask);
  if (mask === 0n || ((mask + 1n) & mask) !== 0n) {
    throw new RangeError(`mask must be a non-zero 2^k - 1 boundary mask, got 0x${mask.toString(16)}`);
  }
  dev.dmaParms.segmentBoundaryMask = mask;
}

/** dma_get_seg_boundary: the set mask, or ULONG_MAX. */
export function dmaGetSegBoundary(dev: Device): bigint {
  return dev.dmaParms.segmentBoundaryMask || ULONG_MAX;
}

/** dma_get_seg_boundary_nr_pages: the boundary in pages of 2^pageShift bytes. */
export function dmaGetSegBoundaryNrPages(dev: Device, pageShift: number): bigint {
  checkLen('pageShift', pageShift, 0, 63);
  return (dmaGetSegBoundary(dev) >> BigInt(pageShift)) + 1n;
}

/** dma_set_min_align_mask: mask must be 2^k - 1 (0 clears it), at most 32 bits. */
export function dmaSetMinAlignMask(dev: Device, mask: number): void {
  checkLen('mask', mask, 0, U32_MAX);
  if (((mask + 1) & mask) !== 0 && mask !== U32_MAX) {
    throw new RangeError(`mask must be 2^k - 1, got 0x${mask.toString(16)}`);
  }
  dev.dmaParms.minAlignMask = mask;
}

/** dma_get_min_align_mask. */
export function dmaGetMinAlignMask(dev: Device): number {
  return dev.dmaParms.minAlignMask;
}

/** dma_direct_all_ram_mapped: without a range map yes; with one, every RAM byte must be covered. */
export function dmaDirectAllRamMapped(dev: Device): boolean {
  if (!dev.dmaRangeMap) return true;
  const ctx = dmaContextIfAny(dev);
  if (!ctx) return true;
  for (const r of ctx.mm.regions) {
    if (r.kind !== 'ram') continue;
    let a = r.start;
    while (a < r.end) {
      if (translatePhysToDma(dev, a) === DMA_MAPPING_ERROR) return false;
      const m = dev.dmaRangeMap.find((m) => a >= m.cpuStart && a - m.cpuStart < BigInt(m.len));
      if (!m) return false;
      a = m.cpuStart + BigInt(m.len);
    }
  }
  return true;
}

/**
 * dma_addressing_limited: the mask (or bus limit) cannot reach all of RAM, so dma-direct may have to
 * bounce. HMM and others refuse such devices.
 */
export function dmaAddressingLimited(dev: Device): boolean {
  const mask = dmaGetMask(dev);
  const lim = dev.busDmaLimit;
  const eff = mask === 0n ? lim : lim === 0n ? mask : (mask < lim ? mask : lim);
  if (eff < dmaGetRequiredMask(dev)) return true;
  if (dev.dmaIommu || getDmaOps(dev) !== null) return false;
  return !dmaDirectAllRamMapped(dev);
}
