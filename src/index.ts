// phyr: an executable model of the Linux physical-range DMA stack. The package entry: each layer's
// driver API (its index.ts). The model's internals (each layer's internal.ts) are not exported.
export * from './base/index.ts';
export * from './phyr/index.ts';
export * from './mm/index.ts';
export * from './pci/index.ts';
export * from './iommu/index.ts';
export * from './dma/index.ts';
export * from './drivers/index.ts';
export * from './machine/index.ts';
