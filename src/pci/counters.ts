// The counters of pci/: P2PDMA map-type lookups. Imported for its effect by every pci/ file that counts.
import { declareCounters } from '../base/internal.ts';

declare module '../base/stats.ts' {
  interface StatsCounters {
    /** pci_p2pdma_map_type() lookups, and those answered from the provider's cache. */
    p2pMapTypeLookups: number;
    p2pMapTypeCacheHits: number;
  }
}

declareCounters('pci', ['p2pMapTypeLookups', 'p2pMapTypeCacheHits']);
