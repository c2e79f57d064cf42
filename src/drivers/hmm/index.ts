// drivers/hmm: the HMM DMA-mapping helpers (hmm_dma_map_alloc / _free / _map_pfn / _unmap_pfn, which
// the kernel keeps in mm/hmm.c but which need the DMA API, above phyr's mm/) and on-demand paging
// (ODP) memory regions of the RDMA NIC built on them: registered without pinning, filled on the
// NIC's page faults through mm/'s hmmRangeFault, zapped by an mmu interval notifier.
export { HmmDmaMap, hmmDmaMapAlloc, hmmDmaMapFree, hmmDmaMapPfn, hmmDmaUnmapPfn } from './hmm-dma.ts';
export {
  IbUmemOdp, ODP_FAULT_RETRIES, ibDeregOdpUserMr, ibRegOdpUserMr, ibUmemOdpGet, ibUmemOdpMapDmaAndLock, ibUmemOdpRelease,
  ibUmemOdpUnmapDmaPages, type IbOdpUserMr,
} from './odp.ts';
