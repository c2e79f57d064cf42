// The counters of iommu/: the IOVA allocator and flush queue, the IOMMU core and page tables, the
// IOTLB. Imported for its effect by every iommu/ file that counts.
import { declareCounters } from '../base/internal.ts';

declare module '../base/stats.ts' {
  interface StatsCounters {
    /** IOVA allocator: allocations, frees, failures, range-cache hits and misses, 32-bit first tries that fell back. */
    iovaAllocs: number;
    iovaFrees: number;
    iovaAllocFailures: number;
    iovaRcacheHits: number;
    iovaRcacheMisses: number;
    iova32BitFallbacks: number;
    /** Flush queue: entries queued, flushes run. */
    flushQueueEntries: number;
    flushQueueFlushes: number;
    /**
     * IOMMU core: iommu_map / iommu_unmap calls, map_pages / unmap_pages calls into the table (a
     * generic_pt unmap is one unmap_range call), iommu_sync_map calls.
     */
    iommuMapCalls: number;
    iommuUnmapCalls: number;
    iommuMapPagesCalls: number;
    iommuUnmapPagesCalls: number;
    iommuSyncMapCalls: number;
    /** Page tables: leaf PTEs written and cleared, table pages allocated and freed. */
    iommuLeafPtesWritten: number;
    iommuLeafPtesCleared: number;
    iommuTablePagesAllocated: number;
    iommuTablePagesFreed: number;
    /**
     * Page-table levels descended by map paths: a map_pages call walks from the root (levels - 1
     * descents to a 4 KiB leaf's table); within one walk, moving on to another table costs the
     * levels below the deepest table the two share. iommuMapBatch maps every range in one walk.
     */
    iommuTableWalkSteps: number;
    /** IOTLB: range invalidations, global flushes, lookups that hit and missed. */
    iotlbRangeInvalidations: number;
    iotlbGlobalFlushes: number;
    iotlbHits: number;
    iotlbMisses: number;
  }
}

declareCounters('iommu', [
  'iovaAllocs', 'iovaFrees', 'iovaAllocFailures', 'iovaRcacheHits', 'iovaRcacheMisses', 'iova32BitFallbacks',
  'flushQueueEntries', 'flushQueueFlushes',
  'iommuMapCalls', 'iommuUnmapCalls', 'iommuMapPagesCalls', 'iommuUnmapPagesCalls', 'iommuSyncMapCalls',
  'iommuLeafPtesWritten', 'iommuLeafPtesCleared', 'iommuTablePagesAllocated', 'iommuTablePagesFreed',
  'iommuTableWalkSteps',
  'iotlbRangeInvalidations', 'iotlbGlobalFlushes', 'iotlbHits', 'iotlbMisses',
]);
