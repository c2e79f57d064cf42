// Models: the IOMMU_* protection flags of include/linux/iommu.h (Linux 7.1).

/** DMA may read through the mapping (device reads memory). */
export const IOMMU_READ = 1;
/** DMA may write through the mapping. */
export const IOMMU_WRITE = 2;
/** The mapping is cache coherent (snooped). */
export const IOMMU_CACHE = 4;
/** The mapping must not be executed from (only meaningful to formats with an XN bit). */
export const IOMMU_NOEXEC = 8;
/** The mapping targets MMIO: device memory attributes where the format has them. */
export const IOMMU_MMIO = 16;
/** Privileged (supervisor) access only, where the format has a user/supervisor bit. */
export const IOMMU_PRIV = 32;

/** Every prot bit the model knows. */
export const IOMMU_PROT_MASK = IOMMU_READ | IOMMU_WRITE | IOMMU_CACHE | IOMMU_NOEXEC | IOMMU_MMIO | IOMMU_PRIV;

/** 'RW+CACHE' style text for a prot value (reports, fault messages). */
export function describeProt(prot: number): string {
  let s = `${prot & IOMMU_READ ? 'R' : '-'}${prot & IOMMU_WRITE ? 'W' : '-'}`;
  if (prot & IOMMU_CACHE) s += '+CACHE';
  if (prot & IOMMU_NOEXEC) s += '+NOEXEC';
  if (prot & IOMMU_MMIO) s += '+MMIO';
  if (prot & IOMMU_PRIV) s += '+PRIV';
  return s;
}
