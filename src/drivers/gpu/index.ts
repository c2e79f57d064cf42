// drivers/gpu: a GPU with its own multi-level page table (4 KiB, 64 KiB and 2 MiB entries) filled
// from DMA lists through drivers/sgl, its copy engine, and the private fabric between GPUs.
export {
  GPU_DRIVER_NAME, GPU_PDE_BIG, GPU_PDE_PT64, GPU_PTE_FABRIC, GPU_PTE_PEER_SHIFT, GPU_PTE_SNOOP, GPU_PTE_SYSTEM, GPU_PTE_VALID, GPU_PTE_WRITE,
  GPU_VA_BITS, Gpu, GpuMapping, gpuCopy, gpuFabricConnect, gpuMapDmaList, gpuOf, gpuProbe, gpuPtDecode, gpuRead, gpuRemove,
  gpuUnmap, gpuWrite, type GpuAperture, type GpuMapOptions, type GpuPte,
} from './gpu.ts';
export {
  GpuImport, dmaBufGetPfnUnlocked, gpuImportDmabuf, gpuImportDmabufFabric, gpuImportDmabufGetPfn, gpuImportRelease, gpuImportRevalidate,
  type GpuImportOptions, type GpuImportPath,
} from './import.ts';
