// dma/: the DMA API of include/linux/dma-mapping.h as a driver calls it (masks and limits, map /
// unmap / sync of pages, phys ranges, resources and sg tables, the two-step IOVA API), the phyr
// entry point dmaMapPhyrs, the classify-and-map iterator for consumers, coherent memory and dma_pool.
export * from './constants.ts';
export * from './mapping.ts';
export {
  dmaAddressingLimited, dmaGetMask, dmaGetMaxSegSize, dmaGetMinAlignMask, dmaGetRequiredMask, dmaGetSegBoundary,
  dmaGetSegBoundaryNrPages, dmaSetCoherentMask, dmaSetMask, dmaSetMaskAndCoherent, dmaSetMaxSegSize, dmaSetMinAlignMask,
  dmaSetSegBoundary, dmaSupported, DMA_DEFAULT_MAX_SEG_SIZE,
} from './mask.ts';
export {
  DMA_IOVA_USE_SWIOTLB, DmaIovaState, dmaIovaDestroy, dmaIovaFree, dmaIovaLink, dmaIovaLinkBatch, dmaIovaSize, dmaIovaSync, dmaIovaTryAlloc,
  dmaIovaUnlink, dmaUseIova,
} from './iova-state.ts';
export { isSwiotlbActive, swiotlbMaxMappingSize, IO_TLB_SIZE, IO_TLB_SEGSIZE, type SwiotlbConfig } from './swiotlb.ts';
// read-only introspection for traces and reports: the bounce slot holding an address, the route of a device access
export { swiotlbSlotInfo, type SwiotlbSlotInfo } from './swiotlb.ts';
export { dmaDeviceRoute, type DmaDeviceRoute } from './device-access.ts';
export { DmaDebug, type DmaDebugRecord, type DmaDebugType, type DmaMapErrState, type DmaDebugOptions } from './debug.ts';
export { dmaContextOf, type DmaContext } from './context.ts';
export {
  CC_KINDS, ccPlatformHas, ccRangeShared, forceDmaUnencrypted, setMemoryDecrypted, setMemoryEncrypted, type CcAttr, type CcConfig,
  type CcKind,
} from './cc.ts';
export {
  dmaAllocCoherent, dmaFreeCoherent, dmaCoherentAllocations, GFP_ATOMIC, GFP_KERNEL, GFP_NOWAIT, __GFP_COMP,
  __GFP_DIRECT_RECLAIM, __GFP_HIGH, __GFP_KSWAPD_RECLAIM, __GFP_NOWARN, __GFP_ZERO, type DmaCoherentMem,
  type DmaCoherentRecord,
} from './coherent.ts';
export {
  DmaPool, dmaPoolAlloc, dmaPoolCreate, dmaPoolDestroy, dmaPoolFree, dmaPoolsOf, dmaPoolZalloc, type DmaPoolPage,
} from './pool.ts';
export * from './map-iter.ts';
export * from './map-phyrs.ts';
export {
  dmaOpsInspect, type DmaOpsKind, type DmaOpsState, type DmaOpsSeg,
} from './ops/ops.ts';
export type {
  DmaOpsConfig, GartOpsConfig, TceOpsConfig, XenSwiotlbOpsConfig, XenGrantOpsConfig, DummyOpsConfig,
} from './ops/config.ts';
export { xenGrantBackendMap, xenGrantBackendUnmap } from './ops/xen-grant.ts';
