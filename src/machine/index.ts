// machine/: the top-level simulated machine (mm + pci + iommu + dma).
export * from './machine.ts';
