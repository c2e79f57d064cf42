// mm/: the machine's memory (regions, folios, hugetlb), processes (UserMm: mmap, faults, user
// copies), and GUP (pin_user_pages, pin_user_pages_fast and the phyr pin).
export type { HugetlbPool, MachineMm, MemRegion, PageFacts, PhysMem, RegionKind } from './types.ts';
export { MAX_RAM_BYTES, type MmConfig } from './layout.ts';
export { MmMachine, createMmMachine, type FolioInfo } from './machine.ts';
export { STRUCT_PAGE_SIZE, memmapBytesFor, memmapOf, type MemmapBreakdown, type MemmapRegion } from './memmap.ts';
export {
  FAULT_SIGBUS, TASK_SIZE, UserMm, type MmapBacking, type MmapOptions, type PageCacheMode, type VmPfnFault, type VmPfnMapOps,
} from './user-mm.ts';
export {
  FOLL_WRITE, FOLL_GET, FOLL_DUMP, FOLL_FORCE, FOLL_NOWAIT, FOLL_NOFAULT, FOLL_HWPOISON, FOLL_ANON, FOLL_LONGTERM,
  FOLL_SPLIT_PMD, FOLL_PCI_P2PDMA, FOLL_INTERRUPTIBLE, FOLL_HONOR_NUMA_FAULT, FOLL_TOUCH, FOLL_TRIED, FOLL_REMOTE,
  FOLL_PIN, FOLL_FAST_ONLY, FOLL_UNLOCKABLE, FOLL_MADV_POPULATE,
  pinUserPages, pinUserPagesFast, pinUserPhyrs, unpinUserPages, unpinUserPhyrs,
  type PinnedPageArray, type PinnedPhyrList,
} from './gup.ts';
export type { GupApi, PinInfo } from './pins.ts';
