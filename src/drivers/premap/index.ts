// drivers/premap: pre-mapped I/O to NVMe. A dma-buf registered once for a controller (the RFC
// "Add dmabuf read/write via io_uring": io_dmabuf_token / io_dmabuf_map, a BIO_DMABUF_MAP bio,
// nvme PRPs from the map's per-4 KiB dma_list, invalidation through invalidate_mappings with a
// fence), and the older design of a user buffer kept DMA-mapped (IORING_REGISTER_MAP_BUFFERS).
export {
  PREMAP_MAX_DMABUF_BYTES, PremapIo, PremapMap, PremapToken, premapComplete, premapCreateMap, premapExecute, premapIssue, premapMaps,
  premapRegisterDmabuf, premapRegisterUserBuffer, premapSubmit, premapUnregister, type PremapCmd, type PremapKind,
  type PremapIssueOptions, type PremapSubmitOptions,
} from './premap.ts';
