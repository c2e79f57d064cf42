// pci/: struct device DMA fields, PCI topology, P2PDMA.
export * from './device.ts';
export * from './pci-dev.ts';
export * from './topology.ts';
export * from './p2pdma.ts';
