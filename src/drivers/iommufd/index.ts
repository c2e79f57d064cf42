// drivers/iommufd: an IOAS with its own IOMMU paging domain for one device: user memory pinned and
// mapped, and VFIO dma-bufs of physical ranges mapped as MMIO and unmapped on revoke, at chosen
// IOVAs or at ones the IOAS allocates (within the ranges IOMMU_IOAS_ALLOW_IOVAS allows); the usable
// IOVA ranges (IOMMU_IOAS_IOVA_RANGES); IOMMU_IOAS_COPY between IOASes, sharing the pinned pages; the device attached and detached, the IOAS's IOVA alignment
// following its domain.
export {
  Ioas, IommufdDevice, IommufdHwpt, iommufdDeviceAttach, iommufdDeviceDetach, iommufdHwptAlloc, iommufdHwptDestroy, iommufdIoasAlloc, iommufdIoasAllowIovas, iommufdIoasAttach, iommufdIoasCopy, iommufdIoasDestroy, iommufdIoasDetach, iommufdIoasMap, iommufdIoasMapDmabuf, iommufdIoasMapDmabufPal,
  iommufdIoasIovaRanges, iommufdIoasOf, iommufdIoases, iommufdIoasUnmap,
  type IoasAllocOptions, type IoasArea, type IoasIovaRange, type IoasIovaRanges, type IoasIovaRangesTooSmall, type IoasMapDmabufOptions,
  type IoasMapOptions, type IoasReserved, type IoptPages, type UserPin,
} from './iommufd.ts';
