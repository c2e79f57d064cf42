// pci/: struct device DMA fields, PCI topology, P2PDMA.
export * from './device.ts';
