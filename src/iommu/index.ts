// iommu/: domains, byte-exact page tables, map/unmap, IOTLB and gather, the IOVA allocator of dma-iommu.
export * from './prot.ts';
export * from './pgsize.ts';
export * from './formats.ts';
export * from './pagetable.ts';
export * from './iotlb.ts';
export * from './iova.ts';
export * from './flush-queue.ts';
export * from './domain.ts';
export * from './core.ts';
export * from './dma-iommu.ts';
export * from './inspect.ts';
export { safeBigToNum } from './addr-num.ts';
