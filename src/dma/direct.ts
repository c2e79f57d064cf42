// Models: kernel/dma/direct.{c,h} (Linux 7.1.5; DMA_ATTR_CC_SHARED as in 7.1, batch mode of map_sg / unmap_sg as in 7.1): dma_direct_map_phys with its swiotlb fallback, the
// unmap/sync paths and dma_direct_map_sg with P2P classification (the address translations of
// include/linux/dma-direct.h are in direct-addr.ts).
// Model deviation: no kmalloc-alignment bouncing (x86-64 does not enable CONFIG_DMA_BOUNCE_UNALIGNED_KMALLOC).

import type { Device } from '../pci/index.ts';
import type { SgTable } from '../phyr/index.ts';
import { SG_DMA_BUS_ADDRESS } from '../phyr/index.ts';
import { err, ok, type Result } from '../base/internal.ts';
import { dmaContextOf } from './context.ts';
import {
  DMA_ATTR_CC_SHARED, DMA_ATTR_MMIO, DMA_ATTR_REQUIRE_COHERENT, DMA_ATTR_SKIP_CPU_SYNC, DMA_MAPPING_ERROR, SIZE_MAX,
} from './constants.ts';
import { ccRangeShared } from './cc.ts';
import { modelCheckEvent } from './events.ts';
import {
  isSwiotlbActive, isSwiotlbBuffer, isSwiotlbForceBounce, swiotlbMap, swiotlbMaxMappingSize,
  swiotlbSyncSingleForCpu, swiotlbSyncSingleForDevice, swiotlbTblUnmapSingle,
} from './swiotlb.ts';
import { archSyncDmaFlush, archSyncDmaForCpu, archSyncDmaForDevice } from './cache.ts';
import { dmaAddressingLimited } from './mask.ts';
import { dmaCapable, dmaToPhys, physToDma, physToDmaUnencrypted } from './direct-addr.ts';
import { DMA_RANGE_BUS, DmaRangeClassifier } from './map-iter.ts';

/** dma_direct_map_phys's err_overflow (kernel/dma/direct.h): a dev_WARN_ONCE, so one WARN per machine. */
function overflow(dev: Device, addr: bigint, size: number): bigint {
  dmaContextOf(dev).mm.events.warnOnce('dma_direct_map_phys:overflow', 'dma-direct',
    `${dev.name}: overflow 0x${addr.toString(16)}+${size} of DMA mask ${(dev.dmaMask ?? 0n).toString(16)} bus limit ${dev.busDmaLimit.toString(16)}`);
  return DMA_MAPPING_ERROR;
}

/**
 * dma_direct_map_phys: force-bounce first (CoCo guests) unless DMA_ATTR_CC_SHARED; CC_SHARED without
 * force-bounce fails; MMIO goes untranslated and is never bounced; CC_SHARED memory is mapped
 * through phys_to_dma_unencrypted() (kernel/dma/direct.h in 7.1.5; moved to direct.c in 7.3, "dma-direct:
 * Move dma_direct_map_phys() to dma/direct.c"); memory beyond the mask bounces through swiotlb when a
 * pool is active, else overflows (WARN the first time, DMA_MAPPING_ERROR). Non-coherent devices get cache
 * maintenance unless SKIP_CPU_SYNC or MMIO, waited for when `flush` (a single map) and left to the
 * caller otherwise (map_sg's batch).
 */
export function dmaDirectMapPhys(dev: Device, phys: bigint, size: number, dir: number, attrs: number, flush = true): bigint {
  const ccShared = (attrs & DMA_ATTR_CC_SHARED) !== 0;
  if (isSwiotlbForceBounce(dev)) {
    if (!ccShared) {
      if (attrs & (DMA_ATTR_MMIO | DMA_ATTR_REQUIRE_COHERENT)) return DMA_MAPPING_ERROR;
      return swiotlbMap(dev, phys, size, dir, attrs);
    }
  } else if (ccShared) {
    return DMA_MAPPING_ERROR;
  }
  let dmaAddr: bigint;
  if (attrs & DMA_ATTR_MMIO) {
    dmaAddr = phys;
    if (!dmaCapable(dev, dmaAddr, size, false)) return overflow(dev, dmaAddr, size);
  } else if (ccShared) {
    dmaAddr = physToDmaUnencrypted(dev, phys);
    if (!dmaCapable(dev, dmaAddr, size, false)) return overflow(dev, dmaAddr, size);
    const mm = dmaContextOf(dev).mm;
    if (!ccRangeShared(mm, phys, size)) {
      // the kernel trusts the caller; the device will read ciphertext (model check, no kernel message)
      modelCheckEvent(mm.events, `${dev.name}: DMA_ATTR_CC_SHARED mapping of [0x${phys.toString(16)}+${size}] that is not all shared (set_memory_decrypted): the device sees ciphertext`,
        { dev: dev.name, phys, size, check: 'cc-shared-private' });
    }
  } else {
    dmaAddr = physToDma(dev, phys);
    if (!dmaCapable(dev, dmaAddr, size, true)) {
      if (isSwiotlbActive(dev) && !(attrs & DMA_ATTR_REQUIRE_COHERENT)) return swiotlbMap(dev, phys, size, dir, attrs);
      return overflow(dev, dmaAddr, size);
    }
  }
  if (!dev.dmaCoherent && !(attrs & (DMA_ATTR_SKIP_CPU_SYNC | DMA_ATTR_MMIO))) archSyncDmaForDevice(dev, phys, size, dir, flush);
  return dmaAddr;
}

/** dma_direct_sync_single_for_device: copy into the bounce buffer if any, then cache maintenance (waited for unless !flush). */
export function dmaDirectSyncSingleForDevice(dev: Device, addr: bigint, size: number, dir: number, flush = true): void {
  const phys = dmaToPhys(dev, addr);
  if (isSwiotlbBuffer(dev, phys)) swiotlbSyncSingleForDevice(dev, phys, size, dir);
  if (!dev.dmaCoherent) archSyncDmaForDevice(dev, phys, size, dir, flush);
}

/** dma_direct_sync_single_for_cpu: cache maintenance (waited for unless !flush), then copy out of the bounce buffer if any. */
export function dmaDirectSyncSingleForCpu(dev: Device, addr: bigint, size: number, dir: number, flush = true): void {
  const phys = dmaToPhys(dev, addr);
  if (!dev.dmaCoherent) archSyncDmaForCpu(dev, phys, size, dir, flush);
  if (isSwiotlbBuffer(dev, phys)) swiotlbSyncSingleForCpu(dev, phys, size, dir);
}

/**
 * dma_direct_unmap_phys: nothing for MMIO; otherwise sync for the CPU (unless SKIP_CPU_SYNC, which
 * also skips the bounce copy-out) and free the bounce slots if it was bounced. CC_SHARED takes the
 * ordinary path (7.1.5): never bounced, so only a non-coherent device's invalidate is left.
 */
export function dmaDirectUnmapPhys(dev: Device, addr: bigint, size: number, dir: number, attrs: number, flush = true): void {
  if (attrs & (DMA_ATTR_MMIO | DMA_ATTR_REQUIRE_COHERENT)) return;
  const phys = dmaToPhys(dev, addr);
  if (!(attrs & DMA_ATTR_SKIP_CPU_SYNC)) dmaDirectSyncSingleForCpu(dev, addr, size, dir, flush);
  if (isSwiotlbBuffer(dev, phys)) swiotlbTblUnmapSingle(dev, phys, size, dir, attrs | DMA_ATTR_SKIP_CPU_SYNC);
}

/** dma_direct_need_sync: non-coherent, or this address is a bounce buffer. */
export function dmaDirectNeedSync(dev: Device, addr: bigint): boolean {
  return !dev.dmaCoherent || isSwiotlbBuffer(dev, dmaToPhys(dev, addr));
}

/** dma_direct_max_mapping_size: swiotlb's limit when it may be used, else unlimited (SIZE_MAX). */
export function dmaDirectMaxMappingSize(dev: Device): number {
  if (isSwiotlbActive(dev) && (dmaAddressingLimited(dev) || isSwiotlbForceBounce(dev))) return swiotlbMaxMappingSize(dev);
  return SIZE_MAX;
}


/** sg_phys for entry i. */
export function sgPhysAt(dev: Device, sgt: SgTable, i: number): bigint {
  return (sgt.pfnAt(i) << BigInt(dmaContextOf(dev).mm.pageShift)) + BigInt(sgt.offsetAt(i));
}


/**
 * dma_direct_unmap_sg over the first `count` CPU entries: bus-address entries are only unmarked,
 * the others go through dma_direct_unmap_phys.
 */
export function dmaDirectUnmapSg(dev: Device, sgt: SgTable, count: number, dir: number, attrs: number): void {
  let needSync = false;
  for (let i = 0; i < count; i++) {
    const flags = sgt.dmaFlagsAt(i);
    if (flags & SG_DMA_BUS_ADDRESS) sgt.setDmaFlags(i, flags & ~SG_DMA_BUS_ADDRESS);
    else {
      needSync = true;
      dmaDirectUnmapPhys(dev, sgt.dmaAddressAt(i), sgt.dmaLengthAt(i), dir, attrs, false);
    }
  }
  // 7.1 batch mode: every segment's invalidate issued above, one wait here
  if (needSync && !dev.dmaCoherent) archSyncDmaFlush(dev);
}

/**
 * dma_direct_map_sg: one DMA entry per CPU entry (nents == origNents). P2P memory reached by bus
 * address gets the provider's bus address and SG_DMA_BUS_ADDRESS; through the host bridge it is
 * mapped like memory. Each entry's memory type and provider come from the memory map (the region
 * holding it), not from the flags recorded in the table. Errors: EINVAL (an entry in a hole or
 * crossing from one memory region into another), EREMOTEIO (P2P not supported), EIO (an entry
 * could not be mapped); what was mapped before the failure is unmapped.
 */
export function dmaDirectMapSg(dev: Device, sgt: SgTable, dir: number, attrs: number): Result<number> {
  const cl = new DmaRangeClassifier(dev);
  const n = sgt.origNents;
  let needSync = false;
  for (let i = 0; i < n; i++) {
    const phys = sgPhysAt(dev, sgt, i);
    const len = sgt.lengthAt(i);
    // the memory's type from the memory map, not the table's recorded flags
    const kind = cl.classifyBig(phys, len);
    if (kind < 0) {
      dmaDirectUnmapSg(dev, sgt, i, dir, attrs | DMA_ATTR_SKIP_CPU_SYNC);
      return cl.error(kind, `entry ${i}`, phys, len);
    }
    if (kind === DMA_RANGE_BUS) {
      sgt.setDma(i, cl.busAddr, len);
      sgt.setDmaFlags(i, sgt.dmaFlagsAt(i) | SG_DMA_BUS_ADDRESS);
      continue;
    }
    needSync = true;
    const addr = dmaDirectMapPhys(dev, phys, len, dir, attrs, false);
    if (addr === DMA_MAPPING_ERROR) {
      dmaDirectUnmapSg(dev, sgt, i, dir, attrs | DMA_ATTR_SKIP_CPU_SYNC);
      return err('EIO', `entry ${i} (0x${phys.toString(16)}+${len}) could not be mapped`);
    }
    sgt.setDma(i, addr, len);
  }
  // 7.1 batch mode: every segment's clean issued above, one wait here
  if (needSync && !dev.dmaCoherent) archSyncDmaFlush(dev);
  return ok(n);
}
