// Models: arch_sync_dma_for_device / arch_sync_dma_for_cpu / arch_sync_dma_flush
// (include/linux/dma-map-ops.h; arm64 arch/arm64/mm/dma-mapping.c, arch/arm64/include/asm/cache.h)
// as recorded cache-maintenance events, called where Linux 7.1 calls them for a non-coherent device
// (kernel/dma/direct.h: dma_direct_map_phys(), dma_direct_sync_single_for_cpu(); kernel/dma/direct.c:
// dma_direct_map_sg(), dma_direct_unmap_sg(), dma_direct_sync_sg_for_*(); kernel/dma/swiotlb.c:
// swiotlb_map(), swiotlb_bounce(); drivers/iommu/dma-iommu.c: iommu_dma_map_phys(), __dma_iova_link(),
// dma_iova_sync(), iommu_dma_iova_unlink_range_slow()).
// Since 7.1 ("dma-mapping: Separate DMA sync issuing and completion waiting", "dma-mapping: Support
// batch mode for dma_direct_{map,unmap}_sg") issuing a clean or invalidate and waiting for it to
// complete are separate: arch_sync_dma_for_* only issues (arm64's *_nosync helpers) and the caller
// waits with arch_sync_dma_flush() (dsb sy). A single map or sync waits right after its one
// operation; dma_direct_map_sg / unmap_sg and the sg syncs issue every segment's and wait once;
// dma_iova_link issues and leaves the wait to dma_iova_sync (as 7.1.5's __dma_iova_link and
// dma_iova_sync have it). Counted: cacheCleans, cacheInvalidates, cacheSyncBarriers (and
// cacheMaintenanceOps, one per issued operation).
// Model deviation: no cache contents are simulated; each operation is an event plus counters, so
// tests and reports can see which maintenance a path would have done. Only non-coherent devices
// call these.

import type { Device } from '../pci/index.ts';
import { dmaContextOf } from './context.ts';
import { DMA_BIDIRECTIONAL, DMA_FROM_DEVICE, DMA_TO_DEVICE, dmaDirName } from './constants.ts';
import './counters.ts';

/** What one maintenance call does to the CPU caches over the range (arm64: dcache_clean_poc / dcache_inval_poc). */
export type CacheOp = 'clean' | 'invalidate';

function record(dev: Device, fn: string, op: CacheOp, phys: bigint, size: number, dir: number): void {
  const mm = dmaContextOf(dev).mm;
  mm.stats.cacheMaintenanceOps++;
  if (op === 'clean') mm.stats.cacheCleans++;
  else mm.stats.cacheInvalidates++;
  if (mm.events.isMuted('CACHE')) mm.events.countMuted('CACHE');
  else {
    mm.events.record('CACHE', 'dma', `${fn}: ${op} [phys=0x${phys.toString(16)}] [size=${size}] [${dmaDirName(dir)}]`,
      { dev: dev.name, fn, op, phys, size, dir });
  }
}

/**
 * arch_sync_dma_flush(): waits for every cache operation issued so far to complete (one dsb on
 * arm64). The callers call it only for non-coherent devices.
 */
export function archSyncDmaFlush(dev: Device): void {
  // counted only: an event per barrier would double the CACHE log without telling more
  dmaContextOf(dev).mm.stats.cacheSyncBarriers++;
}

/**
 * Cache maintenance before the device accesses [phys, phys + size): arm64 cleans (writes back dirty
 * lines) to the point of coherency whatever the direction (arch/arm64/mm/dma-mapping.c:
 * arch_sync_dma_for_device() calls dcache_clean_poc_nosync() and never looks at dir); stale lines
 * of a FROM_DEVICE buffer are dropped later, by arch_sync_dma_for_cpu. `flush` (default true) waits
 * for it (arch_sync_dma_flush) as a single map or sync does; a batch passes false and waits once.
 */
export function archSyncDmaForDevice(dev: Device, phys: bigint, size: number, dir: number, flush = true): void {
  record(dev, 'arch_sync_dma_for_device', 'clean', phys, size, dir);
  if (flush) archSyncDmaFlush(dev);
}

/**
 * Cache maintenance before the CPU reads what the device wrote: invalidate, except for TO_DEVICE
 * where the device wrote nothing (no operation, no event). `flush` as archSyncDmaForDevice: the
 * kernel's callers wait even when nothing was issued.
 */
export function archSyncDmaForCpu(dev: Device, phys: bigint, size: number, dir: number, flush = true): void {
  if (dir !== DMA_TO_DEVICE) record(dev, 'arch_sync_dma_for_cpu', 'invalidate', phys, size, dir === DMA_BIDIRECTIONAL ? dir : DMA_FROM_DEVICE);
  if (flush) archSyncDmaFlush(dev);
}
