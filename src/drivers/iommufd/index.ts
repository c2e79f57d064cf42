// drivers/iommufd: an IOAS with its own IOMMU paging domain for one device: user memory pinned and
// mapped at chosen IOVAs or ones the IOAS allocates, VFIO dma-bufs of physical ranges mapped as MMIO and unmapped on revoke;
// the device attached and detached, the IOAS's IOVA alignment following its domain.
export {
  Ioas, iommufdIoasAlloc, iommufdIoasAttach, iommufdIoasDestroy, iommufdIoasDetach, iommufdIoasMap, iommufdIoasMapDmabuf, iommufdIoasMapDmabufPal,
  iommufdIoasOf, iommufdIoases, iommufdIoasUnmap,
  type IoasAllocOptions, type IoasArea, type IoasMapDmabufOptions, type IoasMapOptions, type IoasReserved,
} from './iommufd.ts';
