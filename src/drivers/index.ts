// drivers/: the consumers of the DMA API, one folder per subsystem (the kernel's drivers/ and
// block/): umem (user buffers pinned and mapped by each design); dmabuf (the dma-buf core and its
// heap and GPU exporters); vfio (BAR slices exported as dma-bufs); block, nvme, rdma, hmm, drm and
// iommufd as their work lands. Each folder's index.ts is what the others may use.
export * from './umem/index.ts';
export * from './dmabuf/index.ts';
export * from './vfio/index.ts';
