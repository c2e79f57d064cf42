// phyr/: range types, the layouts (phyr list, bio_vec list, page list, page array, DMA list), the
// cursor protocol, conversions, and the scatterlist API of lib/scatterlist.c.
export {
  SEG_FRAME_SIZE, type CursorOptions, type LayoutName, type Range, type RangeCursor, type RangePos, type RangeSource,
  type SegmentColumns, type SegmentLimits, type StopReason,
} from './types.ts';
export * from './flags.ts';
export { PhyrList, PhyrListBuilder } from './phyr-list.ts';
export { PageArray, type PageArrayOptions } from './page-array.ts';
export { BvecList, BvecListBuilder } from './bvec.ts';
export { PAGE_LIST_HEADER_BYTES, PAGE_LIST_MAX_ORDER, PageList, PageListBuilder } from './page-list.ts';
export { DmaList, DmaListBuilder } from './dma-list.ts';
export { appendMerge, coalesce, pagesToBvecList, slice, toBvecList, toPageArray, toPageList, toPhyrList, toSgTable } from './convert.ts';
export {
  SCATTERLIST_BYTES, SG_APPEND_TABLE_BYTES, SG_CHAIN, SG_DMA_BUS_ADDRESS, SG_DMA_SWIOTLB, SG_END, SG_MAX_SINGLE_ALLOC,
  SG_TABLE_BYTES, SgAppendTable, SgTable, sgAllocAppendTableFromPages, sgAllocTable, sgAllocTableFromPages,
  sgAllocTableFromPagesSegment, sgChainLinks, sgDmaIsBusAddress, sgDmaIsSwiotlb, sgFreeAppendTable, sgFreeTable, sgMaxSingleAlloc, sgNents,
  type PfnInput, type SgPageOpts,
} from './scatterlist.ts';
