// Models: the per-machine state the kernel reaches from struct device (dev->dma_io_tlb_mem,
// dev->iommu_group's domain, the global dma-debug hash), gathered in one DmaContext per machine.
// dma-debug's entries and settings belong to the machine's DmaDebug here (no module-level table),
// so two machines never share them and DmaDebug.entries() can list them.

import type { MachineMm } from '../mm/types.ts';
import type { Device } from '../pci/device.ts';
import type { Iommu } from '../iommu/index.ts';
import type { PciTopology } from '../pci/index.ts';
import type { Swiotlb } from './swiotlb.ts';
import type { DmaDebug } from './debug.ts';

/** The DMA state of one machine, shared by every device on it. */
export interface DmaContext {
  readonly mm: MachineMm;
  readonly iommu: Iommu | null;
  readonly swiotlb: Swiotlb | null;
  readonly debug: DmaDebug;
  readonly topology: PciTopology | null;
}

const contexts = new WeakMap<Device, DmaContext>();

/** Attaches a device to a machine's DMA state (done by createMachine for every device). */
export function registerDmaDevice(dev: Device, ctx: DmaContext): void {
  contexts.set(dev, ctx);
}

/** The DMA state of the machine a device is on. Throws TypeError if the device is on no built machine. */
export function dmaContextOf(dev: Device): DmaContext {
  const ctx = contexts.get(dev);
  if (!ctx) {
    throw new TypeError(`dev must be a device of a built machine (createMachine), got ${String(dev)}`);
  }
  return ctx;
}

/** The DMA state of a device, or undefined when it is on no machine. */
export function dmaContextIfAny(dev: Device): DmaContext | undefined {
  return contexts.get(dev);
}
