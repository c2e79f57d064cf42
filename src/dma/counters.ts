// The counters of dma/: swiotlb, cache maintenance, the DMA API, device DMA engines. Imported for
// its effect by every dma/ file that counts.
import { declareCounters } from '../base/internal.ts';

declare module '../base/stats.ts' {
  interface StatsCounters {
    /** swiotlb: maps, unmaps, bytes bounced, slots in use now. */
    swiotlbMaps: number;
    swiotlbUnmaps: number;
    swiotlbBounceBytes: number;
    swiotlbSlotsInUse: number;
    /** arch_sync_dma_for_device / _for_cpu operations on non-coherent devices. */
    cacheMaintenanceOps: number;
    /** Of those: cache cleans (write-back, every arch_sync_dma_for_device) and invalidates (arch_sync_dma_for_cpu unless TO_DEVICE). */
    cacheCleans: number;
    cacheInvalidates: number;
    /** arch_sync_dma_flush(): completion barriers (arm64 dsb) waited for on non-coherent devices. */
    cacheSyncBarriers: number;
    /** set_memory_decrypted / set_memory_encrypted pages in a confidential-computing guest. */
    ccPagesDecrypted: number;
    ccPagesEncrypted: number;
    /**
     * DMA API: map, unmap and sync calls; two-step links, syncs and unlinks. dmaSyncCalls counts
     * every dma_sync_* call, those that dma_dev_need_sync() makes return at once included.
     */
    dmaMapCalls: number;
    dmaUnmapCalls: number;
    dmaSyncCalls: number;
    dmaIovaLinks: number;
    dmaIovaSyncs: number;
    dmaIovaUnlinks: number;
    /** Coherent allocations (dma_alloc_attrs / dma_free_attrs) and dma_pool blocks handed out / given back. */
    dmaCoherentAllocs: number;
    dmaCoherentFrees: number;
    dmaPoolAllocs: number;
    dmaPoolFrees: number;
    /** Device DMA engines: reads, writes, bytes moved, faults. */
    deviceDmaReads: number;
    deviceDmaWrites: number;
    deviceDmaBytes: number;
    deviceDmaFaults: number;
  }
}

declareCounters('dma', [
  'swiotlbMaps', 'swiotlbUnmaps', 'swiotlbBounceBytes', 'swiotlbSlotsInUse', 'cacheMaintenanceOps',
  'cacheCleans', 'cacheInvalidates', 'cacheSyncBarriers', 'ccPagesDecrypted', 'ccPagesEncrypted',
  'dmaMapCalls', 'dmaUnmapCalls', 'dmaSyncCalls', 'dmaIovaLinks', 'dmaIovaSyncs', 'dmaIovaUnlinks',
  'dmaCoherentAllocs', 'dmaCoherentFrees', 'dmaPoolAllocs', 'dmaPoolFrees',
  'deviceDmaReads', 'deviceDmaWrites', 'deviceDmaBytes', 'deviceDmaFaults',
]);
