// mm/: machine memory map, page allocator, folios, user mm, GUP.
export type * from './types.ts';
export * from './layout.ts';
export { SparsePhysMem } from './physmem.ts';
export { BuddyAllocator, MAX_PAGE_ORDER } from './buddy.ts';
export { FolioKind, FolioTable } from './folio.ts';
export { MmMachine, createMmMachine, type FolioInfo } from './machine.ts';
export { UserMm, TASK_SIZE, type MmapBacking, type MmapOptions } from './user-mm.ts';
export {
  FOLL_WRITE, FOLL_GET, FOLL_DUMP, FOLL_FORCE, FOLL_NOWAIT, FOLL_NOFAULT, FOLL_HWPOISON, FOLL_ANON, FOLL_LONGTERM,
  FOLL_SPLIT_PMD, FOLL_PCI_P2PDMA, FOLL_INTERRUPTIBLE, FOLL_HONOR_NUMA_FAULT, FOLL_TOUCH, FOLL_TRIED, FOLL_REMOTE,
  FOLL_PIN, FOLL_FAST_ONLY, FOLL_UNLOCKABLE, FOLL_MADV_POPULATE,
  pinUserPages, pinUserPagesFast, pinUserPhyrs, unpinUserPages, unpinUserPhyrs,
  type PinnedPageArray, type PinnedPhyrList,
} from './gup.ts';
export type { GupApi, PinInfo } from './pins.ts';
