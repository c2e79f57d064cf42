// Test support for pci/ (not exported by the layer): the example topology of the issues (a switch
// with nvme0 and a P2P gpu0 behind rp0, an untrusted tb0 behind rp1) and a real machine
// (createMmMachine) whose device memory holds the BARs of a `pci` config.

import { MiB } from '../base/index.ts';
import { createMmMachine, type MmConfig, type MmMachine } from '../mm/index.ts';
import type { Device } from './device.ts';
import type { CpuConfig } from './pci-dev.ts';
import { buildPciTopology, pciDeviceMemoryFromConfig, type PciNodeConfig, type PciTopology } from './topology.ts';

/** The example tree; hb sets the host bridge ids (whitelisted Intel 0x2030 by default), swAcs the switch's ACS. */
export function exampleTopology(hb = { vendor: 0x8086, device: 0x2030 }, swAcs = false): PciNodeConfig[] {
  return [
    { name: 'hb0', type: 'host-bridge', ...hb },
    { name: 'rp0', type: 'root-port', parent: 'hb0' },
    { name: 'sw0', type: 'switch', parent: 'rp0', acsRedirect: swAcs },
    { name: 'nvme0', type: 'endpoint', parent: 'sw0', bars: [{ bytes: 16 * 1024 }] },
    { name: 'gpu0', type: 'endpoint', parent: 'sw0', bars: [{ bytes: 16 * 1024 * MiB, p2p: true }] },
    { name: 'rp1', type: 'root-port', parent: 'hb0' },
    { name: 'tb0', type: 'endpoint', parent: 'rp1', untrusted: true },
  ];
}

/** A small real machine (16 MiB of RAM) with these device memory regions. */
export function pciTestMachine(deviceMemory: MmConfig['deviceMemory']): MmMachine {
  return createMmMachine({ ramBytes: 16 * MiB, deviceMemory });
}

/** A machine with the config's BARs and its topology; d(name) is the Device of a function. */
export function buildTestTopology(nodes: PciNodeConfig[], cpu: CpuConfig = { vendor: 'intel' }):
  { mm: MmMachine; topo: PciTopology; d: (name: string) => Device } {
  const mm = pciTestMachine(pciDeviceMemoryFromConfig(nodes));
  const topo = buildPciTopology(mm, nodes, cpu);
  return { mm, topo, d: (name) => topo.device(name) };
}
