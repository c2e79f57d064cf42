// Models: include/linux/dma-direct.h: the address translations of dma-direct (phys_to_dma through
// dev->dma_range_map, dma_to_phys) and dma_capable(). Header inlines that kernel/dma/direct.c,
// kernel/dma/swiotlb.c and the mask checks of kernel/dma/mapping.c all use; kept apart from the
// .c bodies so that those do not import each other.
// Model deviation: no C-bit or TDX shared bit in DMA addresses (phys_to_dma == phys_to_dma_unencrypted);
// a confidential-computing guest's encryption state is per page (cc.ts), not an address bit.

import type { Device } from '../pci/index.ts';
import { DMA_MAPPING_ERROR } from './constants.ts';

/** translate_phys_to_dma: through the range map; DMA_MAPPING_ERROR if no region covers paddr. */
export function translatePhysToDma(dev: Device, paddr: bigint): bigint {
  for (const m of dev.dmaRangeMap ?? []) {
    if (paddr >= m.cpuStart && paddr - m.cpuStart < BigInt(m.len)) return m.dmaStart + (paddr - m.cpuStart);
  }
  return DMA_MAPPING_ERROR;
}

/** translate_dma_to_phys: the inverse; all ones ((phys_addr_t)-1) if no region covers addr. */
export function translateDmaToPhys(dev: Device, addr: bigint): bigint {
  for (const m of dev.dmaRangeMap ?? []) {
    if (addr >= m.dmaStart && addr - m.dmaStart < BigInt(m.len)) return m.cpuStart + (addr - m.dmaStart);
  }
  return DMA_MAPPING_ERROR;
}

/** phys_to_dma_unencrypted: identity without a range map. */
export function physToDmaUnencrypted(dev: Device, paddr: bigint): bigint {
  return dev.dmaRangeMap ? translatePhysToDma(dev, paddr) : paddr;
}

/** phys_to_dma (no SME/TDX encryption bit in the model: see cc.ts). */
export function physToDma(dev: Device, paddr: bigint): bigint {
  return physToDmaUnencrypted(dev, paddr);
}

/** dma_to_phys. */
export function dmaToPhys(dev: Device, addr: bigint): bigint {
  return dev.dmaRangeMap ? translateDmaToPhys(dev, addr) : addr;
}

/** min_not_zero(*dev->dma_mask, dev->bus_dma_limit): the highest DMA address the device may use. */
export function dmaDirectLimit(dev: Device): bigint {
  const mask = dev.dmaMask ?? 0n;
  const lim = dev.busDmaLimit;
  if (mask === 0n) return lim;
  if (lim === 0n) return mask;
  return mask < lim ? mask : lim;
}

/** dma_capable: the whole [addr, addr + size) is below the device's mask and bus limit. */
export function dmaCapable(dev: Device, addr: bigint, size: number, _isRam: boolean): boolean {
  if (addr === DMA_MAPPING_ERROR) return false;
  const end = addr + BigInt(size) - 1n;
  return end <= dmaDirectLimit(dev);
}

