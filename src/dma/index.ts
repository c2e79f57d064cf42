// dma/: the DMA API: direct, swiotlb, dma-iommu, iova-state, dma-debug.
export * from './constants.ts';
export * from './context.ts';
export * from './mask.ts';
export * from './cache.ts';
export * from './swiotlb.ts';
export * from './direct.ts';
export * from './debug.ts';
export * from './mapping.ts';
export * from './iommu-dma.ts';
export * from './iova-state.ts';
export * from './map-iter.ts';
export * from './map-phyrs.ts';
export * from './device-access.ts';
