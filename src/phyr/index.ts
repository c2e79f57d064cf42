// phyr/: range types, layouts, the cursor protocol, bvec, scatterlist.
export * from './types.ts';
export * from './flags.ts';
export * from './phyr-list.ts';
export * from './page-array.ts';
export { AddrLenCursor, BvecCursor, PageArrayCursor, PageListCursor } from './cursors.generated.ts';
export type { ColumnCursor } from './cursors.generated.ts';
export * from './scatterlist.ts';
export * from './bvec.ts';
export * from './page-list.ts';
export * from './dma-list.ts';
export * from './convert.ts';
