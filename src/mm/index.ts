// mm/: machine memory map, page allocator, folios, user mm, GUP.
export type * from './types.ts';
