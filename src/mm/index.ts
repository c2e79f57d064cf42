// mm/: machine memory map, page allocator, folios, user mm, GUP.
export type * from './types.ts';
export * from './layout.ts';
export { SparsePhysMem } from './physmem.ts';
export { BuddyAllocator, MAX_PAGE_ORDER } from './buddy.ts';
export { FolioKind, FolioTable } from './folio.ts';
export { MmMachine, createMmMachine, type FolioInfo } from './machine.ts';
export { UserMm, TASK_SIZE, type MmapBacking, type MmapOptions } from './user-mm.ts';
export * from './gup.ts';
