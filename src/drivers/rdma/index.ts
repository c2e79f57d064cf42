// drivers/rdma: RDMA memory registration from phyrs and the NIC that executes it. The API the ODP
// work (drivers/hmm) builds on: rdmaProbe -> IbDevice; ibUmemGet / ibUmemFindBestPgsz /
// ibUmemNumDmaBlocks / rdmaUmemForEachDmaBlock / ibUmemRelease; ibRegMr / ibDeregMr (mlx5-style
// mkey + MTT of 8-byte big-endian entries); ibRegOdpMr with ibMrUpdateMtt / ibMrZapMtt and a
// page-fault handler; ibPostRdmaWrite / ibPostRdmaRead / ibPostSend / ibPostRecv on a loopback QP;
// the NIC device model (nic.ts) beside its driver; dma-buf MRs (umem-dmabuf.ts: ibRegDmabufMr over
// ib_umem_dmabuf_get / _get_pinned) and dma-bufs exported from NIC device memory (dmabuf-export.ts).
export {
  IB_ACCESS_FLUSH_GLOBAL, IB_ACCESS_FLUSH_PERSISTENT, IB_ACCESS_HUGETLB, IB_ACCESS_LOCAL_WRITE, IB_ACCESS_MW_BIND, IB_ACCESS_ON_DEMAND,
  IB_ACCESS_OPTIONAL, IB_ACCESS_RELAXED_ORDERING, IB_ACCESS_REMOTE_ATOMIC, IB_ACCESS_REMOTE_READ, IB_ACCESS_REMOTE_WRITE,
  IB_ACCESS_SUPPORTED, IB_ZERO_BASED, IB_WC_STATUS_NAMES, IB_WC_FATAL_ERR, IB_WC_GENERAL_ERR, IB_WC_LOC_ACCESS_ERR, IB_WC_LOC_LEN_ERR,
  IB_WC_LOC_PROT_ERR, IB_WC_LOC_QP_OP_ERR, IB_WC_REM_ACCESS_ERR, IB_WC_REM_INV_REQ_ERR, IB_WC_REM_OP_ERR, IB_WC_RNR_RETRY_EXC_ERR,
  IB_WC_SUCCESS, IB_WC_WR_FLUSH_ERR, ibAccessWritable, ibCheckMrAccess, ibWcStatusMsg, type IbWcStatus,
} from './verbs.ts';
export {
  IbDevice, RDMA_DEFAULT_PGSZ_BITMAP, RDMA_DRIVER_NAME, RDMA_MAX_SEG_SIZE, ibDeviceOf, rdmaProbe, rdmaRemove, type RdmaProbeOptions,
} from './device.ts';
export {
  IbBlockIter, IbUmem, ibUmemFindBestPgsz, ibUmemGet, ibUmemNumDmaBlocks, ibUmemOffset, ibUmemRelease, rdmaUmemForEachDmaBlock,
  umemSgAppendLayout, type IbUmemOptions, type UmemSgLayout,
} from './umem.ts';
export {
  IbMr, MLX5_UMR_MTT_NUM_ENTRIES_ALIGNMENT, ibDeregMr, ibMrMttEntries, ibMrSetPageFault, ibMrUpdateMtt, ibMrXltWindow, ibMrZapMtt, ibRegMr,
  ibRegOdpMr,
  type IbOdpMrAttr, type IbOdpPageFault, type MttChunk,
} from './mr.ts';
export {
  MLX5_IB_MTT_PRESENT, MLX5_IB_MTT_READ, MLX5_IB_MTT_WRITE, MTT_ENTRIES_PER_CHUNK, MTT_ENTRY_BYTES, RdmaNic,
  type IbSendWc, type IbWc, type RdmaMkeyContext, type RdmaNicPageFault,
} from './nic.ts';
export { ibPostRdmaRead, ibPostRdmaWrite, ibPostRecv, ibPostSend, type IbRdmaWr, type IbSge } from './post.ts';
export {
  IB_DMABUF_MR_ACCESS_ALLOWED, IbDmabufMr, IbUmemDmabuf, ibDeregDmabufMr, ibRegDmabufMr, ibUmemDmabufGet, ibUmemDmabufGetPinned,
  ibUmemDmabufGetPinnedRevocableAndLock, ibUmemDmabufMapPages, ibUmemDmabufRelease, ibUmemDmabufRevoke, ibUmemDmabufSetRevokeLocked,
  ibUmemDmabufUnmapPages, type IbDmabufMrMode, type IbRegDmabufMrOptions, type IbUmemDmabufOps,
} from './umem-dmabuf.ts';
export { IbDm, IbUverbsDmabuf, ibAllocDm, ibDeallocDm, ibDmabufAlloc, ibDmabufDestroy, isIbUverbsDmabuf } from './dmabuf-export.ts';
