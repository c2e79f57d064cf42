// pci/: struct device's DMA fields, PCI functions and their topology, P2PDMA (providers, map types,
// distances, bus addresses).
export {
  Device, devDriverString, deviceBindDriver, deviceReleaseDriver, driverProbe, type BusDmaRegion, type DeviceDmaParms, type DeviceIdentity,
} from './device.ts';
export {
  PciDev, PciHostBridge, devIsPci, toPciDev, type CpuConfig, type P2pdmaProvider, type PciBar, type PciDevKind,
} from './pci-dev.ts';
export {
  PciTopology, pciTopologyOf, type PciBarConfig, type PciNodeConfig, type PciNodeType, type PciNvmeConfig, type PciNvmeNamespaceConfig,
} from './topology.ts';
export {
  PCI_P2PDMA_MAP_BUS_ADDR, PCI_P2PDMA_MAP_NAMES, PCI_P2PDMA_MAP_NONE, PCI_P2PDMA_MAP_NOT_SUPPORTED,
  PCI_P2PDMA_MAP_THRU_HOST_BRIDGE, PCI_P2PDMA_MAP_UNKNOWN, PCI_STD_NUM_BARS, PciP2pdmaMapState, pciBusAddress,
  pciP2pdmaBusAddrMap, pciP2pdmaDistance, pciP2pdmaDistanceMany, pciP2pdmaMapType, pciP2pdmaState, pciResourceStart,
  pcimP2pdmaInit, pcimP2pdmaProvider, type PciP2pdmaMapType,
} from './p2pdma.ts';
