// Models: what a struct device leads the DMA layer to: its machine's memory, IOMMU and PCI
// topology, in one DmaContext per machine hung on each device. The services with state of their
// own find themselves from there: the swiotlb pool on the device (dev->dma_io_tlb_mem,
// swiotlb.ts), dma-debug on the machine (its global hash, debug.ts), so two machines never share
// them and each can be listed.

import { SlotKey } from '../base/internal.ts';
import type { MachineMm } from '../mm/index.ts';
import type { Device } from '../pci/index.ts';
import type { Iommu } from '../iommu/index.ts';
import type { PciTopology } from '../pci/index.ts';

/** The DMA state of one machine, shared by every device on it. */
export interface DmaContext {
  readonly mm: MachineMm;
  readonly iommu: Iommu | null;
  readonly topology: PciTopology | null;
}

/** The slot on each device that names its machine's DMA context. */
const DMA_CONTEXT = new SlotKey<DmaContext>('dma-context');

/** Attaches a device to a machine's DMA state (done by createMachine for every device). */
export function registerDmaDevice(dev: Device, ctx: DmaContext): void {
  dev.slots.set(DMA_CONTEXT, ctx);
}

/** The DMA state of the machine a device is on. Throws TypeError if the device is on no built machine. */
export function dmaContextOf(dev: Device): DmaContext {
  const ctx = dev.slots.get(DMA_CONTEXT);
  if (ctx === undefined) {
    throw new TypeError(`dev must be a device of a built machine (createMachine), got ${String(dev)}`);
  }
  return ctx;
}

/** The DMA state of a device, or undefined when it is on no machine. */
export function dmaContextIfAny(dev: Device): DmaContext | undefined {
  return dev.slots.get(DMA_CONTEXT);
}
