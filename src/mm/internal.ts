// mm/ for the model's other layers: the allocators, folio table, memory layout and VMAs behind the
// machine, and everything in mm/index.ts. Not part of the package API.
export * from './index.ts';
export * from './layout.ts';
export { SparsePhysMem } from './physmem.ts';
export { BuddyAllocator, maxPageOrder } from './buddy.ts';
export { FolioKind, FolioTable } from './folio.ts';
export { Vma, VmaKind, arm64UserEntry } from './user-mm.ts';
export type { Memblock } from './types.ts';
