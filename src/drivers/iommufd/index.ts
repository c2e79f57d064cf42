// drivers/iommufd: an IOAS with its own IOMMU paging domain for one device: user memory pinned and
// mapped, and VFIO dma-bufs of physical ranges mapped as MMIO and unmapped on revoke, at chosen
// IOVAs or at ones the IOAS allocates; the device attached and detached, the IOAS's IOVA alignment
// following its domain.
export {
  Ioas, iommufdIoasAlloc, iommufdIoasAttach, iommufdIoasDestroy, iommufdIoasDetach, iommufdIoasMap, iommufdIoasMapDmabuf, iommufdIoasMapDmabufPal,
  iommufdIoasOf, iommufdIoases, iommufdIoasUnmap,
  type IoasAllocOptions, type IoasArea, type IoasMapDmabufOptions, type IoasMapOptions, type IoasReserved,
} from './iommufd.ts';
