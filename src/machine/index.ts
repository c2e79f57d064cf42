// machine/: createMachine, the composition root (mm + pci + iommu + swiotlb + DMA per device).
export { Machine, createMachine, pciHostBridgeWindows, type HostBridgeWindow, type MachineConfig } from './machine.ts';
