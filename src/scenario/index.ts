// scenario/: machines + workloads -> metrics, the compare report.
export * from './compare.ts';
export * from './mapping.ts';
export * from './block-io.ts';
export * from './dmabuf.ts';
export * from './dma-ops.ts';
export * from './odp.ts';
export * from './rdma.ts';
export * from './premap.ts';
export * from './file/index.ts';
export * from './trace/index.ts';
