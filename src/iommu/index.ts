// iommu/: the IOMMU API of drivers/iommu/iommu.c (domains, iommu_map / iommu_unmap, the IOTLB
// gather, iova_to_phys) and an inspector for the byte-exact page tables.
export * from './prot.ts';
export {
  Iommu, IommuDomain, IommuIotlbGather, createIommu, iommuGetDmaDomain, iommuGetDomainForDev, type IommuConfig,
  type IommuDomainGeometry, type IommuDomainType, type ReservedRegion, type ReservedRegionKind,
} from './domain.ts';
export {
  iommuFlushIotlbAll, iommuIotlbGatherAddPage, iommuIotlbGatherAddRange, iommuIotlbGatherIsDisjoint, iommuIotlbSync,
  iommuIovaToPhys, iommuMap, iommuMapBatch, iommuMapNosync, iommuMapSg, iommuSyncMap, iommuUnmap, iommuUnmapFast,
} from './core.ts';
export type { PtFormatName } from './formats.ts';
export { Arm32IommuMapping, ARM_DMA_IOMMU_ALIGNMENT_DEFAULT, type Arm32MappingConfig } from './arm32-mapping.ts';
export * from './inspect.ts';
// the DMA domain's logical clock (flush-queue timer, IOVA depot work), for callers that let time pass
export { iommuDmaFlushQueueTick, iommuDmaFlushQueueFlush } from './dma-iommu.ts';
