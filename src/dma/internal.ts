// dma/ for the model's other layers and the machine: the backends (dma-direct, swiotlb,
// dma-iommu), the per-machine DMA context, dma-debug's hooks, the device DMA engine, and everything
// in dma/index.ts. Not part of the package API: a driver that called a backend directly would
// bypass dispatch and dma-debug.
export * from './index.ts';
export * from './context.ts';
export * from './mask.ts';
export * from './cache.ts';
export * from './cc.ts';
export * from './swiotlb.ts';
export * from './direct-addr.ts';
export * from './direct.ts';
export * from './debug.ts';
export * from './iommu-dma.ts';
export * from './iova-state.ts';
export * from './device-access.ts';
export * from './events.ts';
export * from './ops/ops.ts';
export * from './ops/config.ts';
export { GartOps } from './ops/gart.ts';
export { TceOps } from './ops/tce.ts';
export { XenSwiotlbOps } from './ops/xen-swiotlb.ts';
export { XenGrantOps } from './ops/xen-grant.ts';
export { DummyOps } from './ops/dummy.ts';
