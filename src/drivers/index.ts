// drivers/: the consumers of the DMA API, one folder per subsystem (the kernel's drivers/ and
// block/): umem (user buffers pinned and mapped by each design); sgl (the common descriptor builder);
// hba (a SCSI-style SG list built with it); block, nvme; dmabuf (the dma-buf core and its heap and
// GPU exporters); vfio (BAR slices exported as dma-bufs); gpu (a GPU with its own page table);
// iommufd (an IOAS shared by devices on its IOMMU domains, dma-buf import); rdma (umem from phyrs, mlx5-style MR +
// MTT, the RDMA NIC model beside it); hmm (HMM DMA map, ODP MRs on the rdma NIC); premap (pre-mapped
// dma-buf I/O to NVMe, the RFC "dmabuf read/write via io_uring"). Each
// folder's index.ts is what the others may use.
// Device models sit beside their driver (nvme-ctrl: the NVMe controller) because they do DMA through
// the DMA layer's device engines.
export * from './umem/index.ts';
export * from './block/index.ts';
export * from './sgl/index.ts';
export * from './hba/index.ts';
export * from './nvme/index.ts';
export * from './nvme-ctrl/index.ts';
export * from './dmabuf/index.ts';
export * from './vfio/index.ts';
export * from './gpu/index.ts';
export * from './iommufd/index.ts';
export * from './rdma/index.ts';
export * from './hmm/index.ts';
export * from './premap/index.ts';
