// drivers/iommufd: an IOAS shared by any number of devices (bound and attached, detached), each on an
// automatic paging domain of the IOAS they share or on one IOMMU_HWPT_ALLOC made: user memory pinned and
// mapped, and VFIO dma-bufs of physical ranges mapped as MMIO and unmapped on revoke, at chosen
// IOVAs or at ones the IOAS allocates (within the ranges IOMMU_IOAS_ALLOW_IOVAS allows); the usable
// IOVA ranges (IOMMU_IOAS_IOVA_RANGES); IOMMU_IOAS_COPY between IOASes, sharing the pinned pages; the IOAS's IOVA alignment
// following its domains.
export {
  Ioas, IommufdHwpt, type IommufdDevice, iommufdDeviceAttach, iommufdDeviceBind, iommufdDeviceDetach, iommufdHwptAlloc, iommufdHwptDestroy, iommufdIoasAlloc, iommufdIoasAllowIovas, iommufdIoasAttach, iommufdIoasClose, iommufdIoasCopy, iommufdIoasDestroy, iommufdIoasDetach, iommufdIoasMap, iommufdIoasMapDmabuf, iommufdIoasMapDmabufPal,
  iommufdIoasIovaRanges, iommufdIoasOf, iommufdIoases, iommufdIoasUnmap,
  type IoasAllocOptions, type IoasArea, type IoasIovaRange, type IoasIovaRanges, type IoasIovaRangesTooSmall, type IoasMapDmabufOptions,
  type IoasMapOptions, type IoasReserved, type IoptPages, type UserPin,
} from './iommufd.ts';
