// scenario/: machines + workloads -> metrics, the compare report. The scenario files (scenario/file:
// parsing with zod and yaml, the runner) and the address trace (scenario/trace) are units of their
// own behind their own index.ts: the report does not need them, so a program that only makes
// reports (phyr compare and its worker threads) never loads the parsers.
export * from './compare.ts';
export * from './mapping.ts';
export * from './block-io.ts';
export * from './dmabuf.ts';
export * from './dma-ops.ts';
export * from './odp.ts';
export * from './rdma.ts';
export * from './premap.ts';
