// The counters of the GPU model (drivers/gpu): its MMU's table walks and faults, the page-table
// memory it holds, and the bytes its copy engine moved. Imported for its effect by gpu.ts.
import { declareCounters } from '../../base/index.ts';

declare module '../../base/stats.ts' {
  interface StatsCounters {
    /** GPU MMU walks (one per leaf translated) and walks that found no valid entry. */
    gpuPtWalks: number;
    gpuMmuFaults: number;
    /** GPU page-table pages taken from and given back to the table pool. */
    gpuPtTablesAllocated: number;
    gpuPtTablesFreed: number;
    /** Leaf entries written, by size. */
    gpuPte4k: number;
    gpuPte64k: number;
    gpuPte2m: number;
    /** Bytes the GPU's copy engine moved, by where the bytes were: system (its DMA path), its own VRAM, a peer over the fabric. */
    gpuSystemBytes: number;
    gpuVramBytes: number;
    gpuFabricBytes: number;
  }
}

declareCounters('gpu', [
  'gpuPtWalks', 'gpuMmuFaults', 'gpuPtTablesAllocated', 'gpuPtTablesFreed', 'gpuPte4k', 'gpuPte64k', 'gpuPte2m',
  'gpuSystemBytes', 'gpuVramBytes', 'gpuFabricBytes',
]);
