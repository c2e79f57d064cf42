// The counters of drivers/hmm: the HMM DMA map's per-page maps and unmaps, and the ODP MR's page
// faults, invalidations and re-maps. Imported for its effect by hmm-dma.ts and odp.ts.
import { declareCounters } from '../../base/index.ts';

declare module '../../base/stats.ts' {
  interface StatsCounters {
    /** hmm_dma_map_pfn calls that made a new mapping (IOVA link, dma_map_phys or a P2P bus address), and hmm_dma_unmap_pfn calls that undid one. */
    hmmDmaMapPfns: number;
    hmmDmaUnmapPfns: number;
    /** NIC page faults the ODP driver resolved (pagefault_real_mr that filled the MTT). */
    odpFaults: number;
    /** Invalidate callbacks of ODP MRs that zapped at least one MTT entry. */
    odpInvalidations: number;
    /** MTT entries filled again by a fault after an invalidation had zapped them. */
    odpRemaps: number;
    /** MTT entries filled by faults, and entries zapped by invalidations. */
    odpPagesMapped: number;
    odpPagesZapped: number;
  }
}

declareCounters('hmm', ['hmmDmaMapPfns', 'hmmDmaUnmapPfns', 'odpFaults', 'odpInvalidations', 'odpRemaps', 'odpPagesMapped', 'odpPagesZapped']);
