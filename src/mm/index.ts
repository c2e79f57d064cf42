// mm/: the machine's memory (regions, folios, hugetlb), processes (UserMm: mmap, faults, user
// copies), and GUP (pin_user_pages and the phyr pin).
export type { MachineMm, MemRegion, PageFacts, PhysMem, RegionKind } from './types.ts';
export { MAX_RAM_BYTES, type MmConfig } from './layout.ts';
export { MmMachine, createMmMachine, type FolioInfo, type HugetlbPool } from './machine.ts';
export { TASK_SIZE, UserMm, type MmapBacking, type MmapOptions } from './user-mm.ts';
export * from './gup.ts';
