// iommu/ for the model's other layers: page-table formats and tables, the IOTLB, the IOVA
// allocator and flush queue of dma-iommu, the frame-number fast paths, and everything in
// iommu/index.ts. Not part of the package API.
export * from './index.ts';
export * from './pgsize.ts';
export * from './formats.ts';
export * from './pagetable.ts';
export * from './pagetable-arm.ts';
export * from './iotlb.ts';
export * from './iova.ts';
export * from './flush-queue.ts';
export * from './domain.ts';
export * from './core.ts';
export * from './dma-iommu.ts';
export { safeBigToNum } from './addr-num.ts';
