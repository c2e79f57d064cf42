// drivers/dmabuf: the dma-buf core (export, static and dynamic attach, map / unmap under the
// reservation lock, pin, invalidate_mappings (move_notify), revoke, fences), the helper that turns
// an exporter's physical ranges into an importer's DMA mapping (dma_buf_phys_vec_to_sgt, and a
// DMA-list form), and two exporters: the system heap and a GPU buffer that moves between its VRAM
// BAR and system memory. The VFIO BAR exporter is drivers/vfio.
export {
  DmaBuf, DmaBufAttachment, dmaBufAttach, dmaBufAttachRevocable, dmaBufAttachments, dmaBufDetach, dmaBufDropStaleMappings,
  dmaBufExport, dmaBufInvalidateMappings, dmaBufList, dmaBufMapAttachment, dmaBufMapAttachmentSgt, dmaBufMapAttachmentUnlocked,
  dmaBufMoveNotify, dmaBufPin, dmaBufPut, dmaBufRevocable, dmaBufRevoke, dmaBufUnmapAttachment, dmaBufUnmapAttachmentUnlocked, dmaBufUnpin,
  dmaBufUnrevoke, dmaResvIsLocked, dmaResvLock, dmaResvUnlock, modelCheckEvent,
  DMA_BUF_MAP_TYPES, dmaBufMapPal, dmaBufUnmapPal, negotiateMapType, type DmaBufMapType, type DmaBufPal,
  type DmaBufAttachOptions, type DmaBufCpuMapping, type DmaBufExportInfo, type DmaBufMapped, type DmaBufMappingRecord, type DmaBufOps,
} from './dma-buf.ts';
export {
  DMA_RESV_USAGE_BOOKKEEP, DMA_RESV_USAGE_KERNEL, DMA_RESV_USAGE_READ, DMA_RESV_USAGE_WRITE, DmaFence, DmaResv, dmaFenceInit,
  type DmaResvUsage,
} from './fence.ts';
export { DmaBufDma, dmaBufFreeSgt, dmaBufMapPages, dmaBufMapPhyrs, dmaBufPhysVecToSgt, type DmaBufDmaHow } from './mapping.ts';
export { SYSTEM_HEAP_ORDERS, systemHeapAlloc, type SystemHeapBuffer, type SystemHeapName } from './system-heap.ts';
export { GpuBo, gpuBoCreate, gpuBoExport, gpuBoFree, gpuBoMigrate, type GpuFabricImporterPriv, type GpuPlacement } from './gpu-vram.ts';
export {
  IosysMap, dmaBufVmap, dmaBufVunmap, iosysMapFromRanges, iosysMapMemcpyFrom, iosysMapMemcpyTo, iosysMapMemset, iosysMapPlainStore,
  iosysMapRd, iosysMapWr,
} from './iosys-map.ts';
export { dmaBufMmap, type DmaBufMmapOptions } from './mmap.ts';
