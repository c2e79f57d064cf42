// Test fixtures for the DMA layer: small machines with one or two PCI endpoints (not part of the
// public surface; imported by *.test.ts only).

import { GiB, KiB, MiB } from '../base/index.ts';
import { createMachine, type Machine, type MachineConfig } from '../machine/index.ts';
import type { PciNodeConfig } from '../pci/index.ts';

/** hb0 - rp0 - nvme0, plus rp1 - tb0 (untrusted). */
export const SMALL_PCI: PciNodeConfig[] = [
  { name: 'hb0', type: 'host-bridge', vendor: 0x8086, device: 0x2030 },
  { name: 'rp0', type: 'root-port', parent: 'hb0' },
  { name: 'nvme0', type: 'endpoint', parent: 'rp0', bars: [{ bytes: 16 * KiB }] },
  { name: 'rp1', type: 'root-port', parent: 'hb0' },
  { name: 'tb0', type: 'endpoint', parent: 'rp1', untrusted: true },
];

/** A machine with 8 GiB of RAM (RAM above 4 GiB exists), a 4 MiB swiotlb unless overridden. */
export function smallMachine(over: Partial<MachineConfig> = {}): Machine {
  return createMachine({ ramBytes: 8 * GiB, seed: 1, pci: SMALL_PCI, swiotlb: { bytes: 4 * MiB }, ...over });
}

/** A RAM address range of len bytes at or above `above` (first RAM region that has room). */
export function ramAt(m: Machine, above: bigint, len: number): bigint {
  for (const r of m.regions) {
    if (r.kind !== 'ram') continue;
    const s = r.start > above ? r.start : above;
    if (s + BigInt(len) <= r.end) return (s + 0xfffn) & ~0xfffn;
  }
  throw new Error(`no RAM above 0x${above.toString(16)}`);
}

/** Deterministic test bytes. */
export function pattern(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  let x = seed * 2654435761 >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}
