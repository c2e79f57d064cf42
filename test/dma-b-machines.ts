// Test machines for the dma-iommu / two-step / dmaMapPhyrs / device-access suites (engineer B):
// small machines with a PCI tree that gives every P2P case, and helpers that move real bytes.

import { GiB, KiB, MiB, unwrap } from '../src/base/index.ts';
import { createMachine, type Machine } from '../src/machine/index.ts';
import type { Device } from '../src/pci/index.ts';
import { pcimP2pdmaProvider, type PciNodeConfig } from '../src/pci/index.ts';
import { PhyrList } from '../src/phyr/index.ts';
import { DMA_BIT_MASK } from '../src/dma/constants.ts';
import { dmaSetMaskAndCoherent } from '../src/dma/mask.ts';

export type IommuMode = 'strict' | 'lazy' | 'passthrough' | 'none';

/**
 * hb0 (whitelisted Intel 0x2030) -> rp0 -> sw0 -> { nvme0, gpu0 (16 MiB P2P BAR, bus offset) }
 *                                -> rp1 -> tb0 (untrusted, external port)
 *                                -> rp2 -> nic0
 * hb1 (not whitelisted) -> rp3 -> far0
 * nvme0 <-> gpu0: BUS_ADDR (same switch). nic0 <-> gpu0: THRU_HOST_BRIDGE. far0 <-> gpu0: NOT_SUPPORTED.
 */
export const PCI_NODES: PciNodeConfig[] = [
  { name: 'hb0', type: 'host-bridge', vendor: 0x8086, device: 0x2030 },
  { name: 'rp0', type: 'root-port', parent: 'hb0' },
  { name: 'sw0', type: 'switch', parent: 'rp0', acsRedirect: false },
  { name: 'nvme0', type: 'endpoint', parent: 'sw0', bars: [{ bytes: 16 * KiB }] },
  { name: 'gpu0', type: 'endpoint', parent: 'sw0', bars: [{ bytes: 16 * MiB, p2p: true, busOffset: 0x1000_0000_0000n }] },
  { name: 'rp1', type: 'root-port', parent: 'hb0' },
  { name: 'tb0', type: 'endpoint', parent: 'rp1', untrusted: true },
  { name: 'rp2', type: 'root-port', parent: 'hb0' },
  { name: 'nic0', type: 'endpoint', parent: 'rp2' },
  { name: 'hb1', type: 'host-bridge', vendor: 0x1234, device: 0x0001 },
  { name: 'rp3', type: 'root-port', parent: 'hb1' },
  { name: 'far0', type: 'endpoint', parent: 'rp3' },
] as PciNodeConfig[];

/** A 2 GiB machine with the PCI tree above; every endpoint gets a 64-bit DMA mask. */
export function makeMachine(mode: IommuMode, seed = 1, extra: Record<string, unknown> = {}): Machine {
  const m = createMachine({
    ramBytes: 2 * GiB,
    seed,
    cpu: { vendor: 'intel' },
    ...(mode === 'none' ? {} : { iommu: { format: 'x86-64', levels: 4, mode } }),
    swiotlb: { bytes: 4 * MiB },
    pci: PCI_NODES,
    ...extra,
  } as Parameters<typeof createMachine>[0]);
  for (const name of ['nvme0', 'gpu0', 'tb0', 'nic0', 'far0']) {
    unwrap(dmaSetMaskAndCoherent(m.device(name), DMA_BIT_MASK(64)));
  }
  return m;
}

/** Allocates 2^order contiguous pages of RAM; returns the physical address. */
export function allocPhys(m: Machine, order = 0): bigint {
  const pfn = unwrap(m.allocKernelPages(order));
  return pfn * BigInt(m.pageSize);
}

/** A deterministic byte pattern. */
export function pattern(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

/** The gpu0 P2P BAR as a physical range with its provider's range flags. */
export function gpuBar(m: Machine): { start: bigint; len: number; flags: number } {
  const provider = pcimP2pdmaProvider(m.device('gpu0'), 0);
  if (!provider) throw new Error('gpu0 has no provider');
  return { start: provider.region.start, len: provider.region.len, flags: provider.region.rangeFlags };
}

/** A PhyrList of [addr, len) pieces with the given flags. */
export function phyrs(pieces: Array<[bigint, number]>, flags = 0): PhyrList {
  return PhyrList.from(pieces.map(([addr, len]) => ({ addr, len, flags })));
}

/** Device writes `bytes` at dma; returns whether it succeeded. */
export function devWrite(dev: Device, dma: bigint, bytes: Uint8Array): boolean {
  return dev.dmaWrite(dma, bytes).ok;
}
