// drivers/nvme: the NVMe PCIe host driver's data path: probe limits, PRP lists and SGLs built with
// drivers/sgl, the 64-byte submission queue entry, completion (nvme_unmap_data).
export {
  IOD_DATA_MMIO, IOD_DATA_P2P, IOD_SINGLE_SEGMENT, IOD_SMALL_DESCRIPTOR, NVME_CMD_SGL_METABUF, NVME_CTRL_PAGE_SIZE, NVME_DRIVER_NAME,
  NVME_MAX_BYTES, NVME_MAX_NR_DESCRIPTORS, NVME_MAX_SEGS, NVME_SGL_DATA_DESC, NVME_SGL_LAST_SEG_DESC,
  NVME_SGL_THRESHOLD_DEFAULT, NVME_SMALL_POOL_SIZE, NvmeCtrl, SGL_FORCED, SGL_SUPPORTED, SGL_UNSUPPORTED, nvme_cmd_read,
  nvme_cmd_write, nvmeCompleteRq, nvmeExecute, nvmeProbe, nvmeQueueRq, nvmeQueues, nvmeReadBlocks, nvmeRemove,
  type NvmeControllerPort, type NvmeIo, type NvmeProbeOptions, type NvmeQueueResult,
} from './nvme.ts';
