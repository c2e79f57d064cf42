// Models: the per-machine state the kernel reaches from struct device (dev->dma_io_tlb_mem,
// dev->iommu_group's domain, the global dma-debug hash), gathered in one DmaContext per machine.

import { SlotKey } from '../base/internal.ts';
import type { MachineMm } from '../mm/index.ts';
import type { Device } from '../pci/index.ts';
import type { Iommu } from '../iommu/index.ts';
import type { PciTopology } from '../pci/index.ts';
import type { DmaDebug } from './debug.ts';

/** The DMA state of one machine, shared by every device on it. */
export interface DmaContext {
  readonly mm: MachineMm;
  readonly iommu: Iommu | null;
  readonly debug: DmaDebug;
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
