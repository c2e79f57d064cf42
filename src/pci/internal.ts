// pci/ for the model's other layers: the topology builder, the P2PDMA distance rules and whitelist,
// and everything in pci/index.ts. Not part of the package API.
export * from './index.ts';
export * from './device.ts';
export * from './pci-dev.ts';
export * from './topology.ts';
export * from './p2pdma.ts';
