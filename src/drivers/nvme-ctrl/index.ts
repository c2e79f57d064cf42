// drivers/nvme-ctrl: the NVMe controller device model (hardware, not a driver): executes I/O
// commands, walking PRP lists and SGL segments by DMA through the device's own path, over
// namespaces with sparse backing storage. It lives beside its driver because it does DMA through the
// DMA layer's device engines (dev.dmaRead / dev.dmaWrite).
export {
  NVME_CTRL_MAX_SGL_DESCRIPTORS, NVME_CTRL_OP_FLUSH, NVME_CTRL_OP_READ, NVME_CTRL_OP_WRITE,
  NVME_CTRL_PSDT_PRP, NVME_CTRL_PSDT_SGL, NVME_CTRL_PSDT_SGL_MPTR_SGL, NVME_CTRL_SGL_DATA_BLOCK, NVME_CTRL_SGL_LAST_SEGMENT,
  NVME_CTRL_SGL_SEGMENT, NVME_CTRL_STATUS, NVME_SGL_DESC_BYTES, NVME_SQE_BYTES, NvmeController, attachNvmeController,
  nvmeControllerOf, nvmeCtrlStatusName, type NvmeCompletion, type NvmeIdentify, type NvmeIdentifyNamespace,
} from './controller.ts';
export { NvmeNamespace } from './namespace.ts';
