// drivers/vfio: VFIO PCI exporting BAR slices as dma-bufs of physical ranges (revoked on reset or
// when the BAR stops decoding) and the private interconnect to iommufd.
export {
  VFIO_PCI_DRIVER_NAME, VfioPciDmaBuf, isVfioPciDmaBuf, vfioPciDmaBufIommufdMap, vfioPciDmaBufMove, vfioPciDmabufExport, vfioPciDmabufs, vfioPciReset,
  vfioPciSetMemoryEnabled, type VfioDmaBufRequest, type VfioRegionDmaRange,
} from './vfio-pci-dmabuf.ts';
