// drivers/iommufd: an IOAS with its own IOMMU paging domain for one device: user memory pinned and
// mapped at chosen IOVAs, VFIO dma-bufs of physical ranges mapped as MMIO and unmapped on revoke.
export {
  Ioas, iommufdIoasAlloc, iommufdIoasDestroy, iommufdIoasMap, iommufdIoasMapDmabuf, iommufdIoasMapDmabufPal, iommufdIoasOf, iommufdIoases, iommufdIoasUnmap,
  type IoasArea, type IoasMapDmabufOptions, type IoasMapOptions,
} from './iommufd.ts';
