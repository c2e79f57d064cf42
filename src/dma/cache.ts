// Models: arch_sync_dma_for_device / arch_sync_dma_for_cpu (include/linux/dma-map-ops.h; arm64
// arch/arm64/mm/dma-mapping.c) as recorded cache-maintenance events, called where Linux 7.1 calls
// them for a non-coherent device (kernel/dma/direct.h: dma_direct_map_phys(),
// dma_direct_sync_single_for_cpu(); drivers/iommu/dma-iommu.c: iommu_dma_map_phys(), __dma_iova_link()).
// Model deviation: no cache contents are simulated; each operation is an event plus a counter, so tests
// and reports can see which maintenance a path would have done. Only non-coherent devices call these.

import type { Device } from '../pci/index.ts';
import { dmaContextOf } from './context.ts';
import { DMA_BIDIRECTIONAL, DMA_FROM_DEVICE, DMA_TO_DEVICE, dmaDirName } from './constants.ts';
import './counters.ts';

/** What one maintenance call does to the CPU caches over the range. */
export type CacheOp = 'clean' | 'invalidate' | 'clean+invalidate';

function record(dev: Device, fn: string, op: CacheOp, phys: bigint, size: number, dir: number): void {
  const mm = dmaContextOf(dev).mm;
  mm.stats.cacheMaintenanceOps++;
  mm.events.record('CACHE', 'dma', `${fn}: ${op} [phys=0x${phys.toString(16)}] [size=${size}] [${dmaDirName(dir)}]`,
    { dev: dev.name, fn, op, phys, size, dir });
}

/**
 * Cache maintenance before the device accesses [phys, phys + size): write back dirty lines for
 * TO_DEVICE, invalidate for FROM_DEVICE, both for BIDIRECTIONAL.
 */
export function archSyncDmaForDevice(dev: Device, phys: bigint, size: number, dir: number): void {
  const op: CacheOp = dir === DMA_TO_DEVICE ? 'clean' : dir === DMA_FROM_DEVICE ? 'invalidate' : 'clean+invalidate';
  record(dev, 'arch_sync_dma_for_device', op, phys, size, dir);
}

/**
 * Cache maintenance before the CPU reads what the device wrote: invalidate, except for TO_DEVICE
 * where the device wrote nothing (no operation, no event).
 */
export function archSyncDmaForCpu(dev: Device, phys: bigint, size: number, dir: number): void {
  if (dir === DMA_TO_DEVICE) return;
  record(dev, 'arch_sync_dma_for_cpu', 'invalidate', phys, size, dir === DMA_BIDIRECTIONAL ? dir : DMA_FROM_DEVICE);
}
