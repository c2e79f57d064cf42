// mm/: the machine's memory (regions, folios, hugetlb), processes (UserMm: mmap, faults, user
// copies, mprotect, migration), GUP (pin_user_pages, pin_user_pages_fast and the phyr pin), mmu interval
// notifiers and hmm_range_fault.
export type { HugetlbPool, KernelPagesOptions, KernelPagesPoint, MachineMm, MemRegion, PageFacts, PhysMem, RegionKind } from './types.ts';
export { HUGETLB_BYTES, MAX_RAM_BYTES, hugetlbSizes, type HugetlbSize, type MmConfig } from './layout.ts';
export { MmMachine, createMmMachine, type FolioInfo } from './machine.ts';
export { STRUCT_PAGE_SIZE, memmapBytesFor, memmapOf, type MemmapBreakdown, type MemmapRegion } from './memmap.ts';
export {
  FAULT_SIGBUS, TASK_SIZE, UserMm, type MmapBacking, type UserPteInfo, type MmapOptions, type PageCacheMode, type VmPfnFault, type VmPfnMapOps,
} from './user-mm.ts';
export {
  FOLL_WRITE, FOLL_GET, FOLL_DUMP, FOLL_FORCE, FOLL_NOWAIT, FOLL_NOFAULT, FOLL_HWPOISON, FOLL_ANON, FOLL_LONGTERM,
  FOLL_SPLIT_PMD, FOLL_PCI_P2PDMA, FOLL_INTERRUPTIBLE, FOLL_HONOR_NUMA_FAULT, FOLL_TOUCH, FOLL_TRIED, FOLL_REMOTE,
  FOLL_PIN, FOLL_FAST_ONLY, FOLL_UNLOCKABLE, FOLL_MADV_POPULATE,
  pinUserPages, pinUserPagesAll, pinUserPagesFast, pinUserPhyrs, pinUserPhyrsAll, unpinUserPages, unpinUserPhyrs,
  type PinnedPageArray, type PinnedPhyrList,
} from './gup.ts';
export type { GupApi, PinInfo } from './pins.ts';
export {
  MMU_NOTIFY_CLEAR, MMU_NOTIFY_EXCLUSIVE, MMU_NOTIFY_MIGRATE, MMU_NOTIFY_PROTECTION_PAGE, MMU_NOTIFY_PROTECTION_VMA,
  MMU_NOTIFY_RELEASE, MMU_NOTIFY_SOFT_DIRTY, MMU_NOTIFY_UNMAP, type MmuNotifierEvent,
} from './types.ts';
export {
  MMU_NOTIFIER_RANGE_BLOCKABLE, MmuIntervalNotifier, mmuIntervalCheckRetry, mmuIntervalNotifierInsert, mmuIntervalNotifierRemove,
  mmuIntervalReadBegin, mmuIntervalReadRetry, mmuIntervalSetSeq, mmuNotifierSubscriptions, type MmuIntervalNotifierOps,
  type MmuNotifierRange,
} from './mmu-notifier.ts';
export {
  HMM_PFN_DMA_MAPPED, HMM_PFN_ERROR, HMM_PFN_INOUT_FLAGS, HMM_PFN_ORDER_SHIFT, HMM_PFN_P2PDMA, HMM_PFN_P2PDMA_BUS, HMM_PFN_REQ_FAULT,
  HMM_PFN_REQ_WRITE, HMM_PFN_VALID, HMM_PFN_WRITE, hmmPfnToMapOrder, hmmRangeFault, type HmmRange,
} from './hmm.ts';
