// drivers/umem: pin a user buffer and map it for DMA, once per mapping design.
export {
  UMEM_METHODS, UMEM_METHOD_LABELS, umemMap, umemMapPinned, type UmemListMapping, type UmemListOptions, type UmemMapping, type UmemMethod,
  type UmemOptions, type UmemSegments,
} from './umem.ts';
