// Work counters on the machine: every layer counts what it does in plain, always-on fields,
// named after what is counted. Reports and tests read them; reset() zeroes them all.

export class Stats {
  // mm: page allocator, faults, GUP
  pagesAllocated = 0;
  pagesFreed = 0;
  pageFaults = 0;
  gupPinCalls = 0;
  gupPagesPinned = 0;
  gupFoliosVisited = 0;
  gupPagesUnpinned = 0;
  // phyr / scatterlist
  sgTablesAllocated = 0;
  sgEntriesAllocated = 0;
  // IOVA allocator
  iovaAllocs = 0;
  iovaFrees = 0;
  iovaAllocFailures = 0;
  iovaRcacheHits = 0;
  iovaRcacheMisses = 0;
  iova32BitFallbacks = 0;
  flushQueueEntries = 0;
  flushQueueFlushes = 0;
  // IOMMU core and page tables
  iommuMapCalls = 0;
  iommuUnmapCalls = 0;
  iommuMapPagesCalls = 0;
  iommuUnmapPagesCalls = 0;
  iommuLeafPtesWritten = 0;
  iommuLeafPtesCleared = 0;
  iommuTablePagesAllocated = 0;
  iommuTablePagesFreed = 0;
  iommuSyncMapCalls = 0;
  // IOTLB
  iotlbRangeInvalidations = 0;
  iotlbGlobalFlushes = 0;
  iotlbHits = 0;
  iotlbMisses = 0;
  // swiotlb and cache maintenance
  swiotlbMaps = 0;
  swiotlbUnmaps = 0;
  swiotlbBounceBytes = 0;
  swiotlbSlotsInUse = 0;
  cacheMaintenanceOps = 0;
  // DMA API
  dmaMapCalls = 0;
  dmaUnmapCalls = 0;
  dmaSyncCalls = 0;
  dmaIovaLinks = 0;
  dmaIovaSyncs = 0;
  dmaIovaUnlinks = 0;
  // P2P
  p2pMapTypeLookups = 0;
  p2pMapTypeCacheHits = 0;
  // devices
  deviceDmaReads = 0;
  deviceDmaWrites = 0;
  deviceDmaBytes = 0;
  deviceDmaFaults = 0;

  /** Zeroes every counter. */
  reset(): void {
    for (const k of Object.keys(this) as Array<keyof this>) {
      if (typeof this[k] === 'number') (this as Record<keyof this, unknown>)[k] = 0;
    }
  }

  /** A plain copy of every counter. */
  snapshot(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, v] of Object.entries(this)) if (typeof v === 'number') out[k] = v;
    return out;
  }

  /** Counter differences since a snapshot (only the ones that changed). */
  diff(since: Record<string, number>): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, v] of Object.entries(this.snapshot())) {
      const d = v - (since[k] ?? 0);
      if (d !== 0) out[k] = d;
    }
    return out;
  }
}
