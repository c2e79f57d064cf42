// The counters of drivers/premap: what the pre-mapped dma-buf I/O path did. Imported for its effect
// by premap.ts.
import { declareCounters } from '../../base/index.ts';

declare module '../../base/stats.ts' {
  interface StatsCounters {
    /** io_dmabuf_create_map(): maps made (dma_buf_map_attachment + the per-4 KiB dma_list) and released. */
    premapMapsCreated: number;
    premapMapsReleased: number;
    /** io_dmabuf_token_invalidate_mappings() calls that dropped a live map. */
    premapInvalidations: number;
    /** Imports refused with EAGAIN (no live map on an inline issue). */
    premapEagain: number;
    /** I/O requests (one per io_uring request) that used a map, and the block requests they became. */
    premapIos: number;
    premapRequests: number;
  }
}

declareCounters('premap', [
  'premapMapsCreated', 'premapMapsReleased', 'premapInvalidations', 'premapEagain', 'premapIos', 'premapRequests',
]);
