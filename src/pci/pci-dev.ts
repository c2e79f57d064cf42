// Models: include/linux/pci.h, drivers/pci/p2pdma.c (Linux 6.19): struct pci_dev / struct pci_host_bridge
// as far as P2PDMA and the DMA layer need them (bus number, devfn, pci_upstream_bridge(), pci_name(),
// pci_dev->untrusted, the ACS control of a port) and struct pci_p2pdma, struct p2pdma_provider; and
// the DMA parameters pci_device_add() (drivers/pci/probe.c) gives every function.
// A Device (device.ts) is a PCI function when dev.pci holds a PciDev; toPciDev() is to_pci_dev().

import type { MachineMm, MemRegion } from '../mm/index.ts';
import { Device } from './device.ts';

/** Kinds of PCI function the model enumerates (pci_pcie_type plus the host bridge's root device). */
export type PciDevKind = 'host-bridge' | 'root-port' | 'switch-upstream' | 'switch-downstream' | 'endpoint';

/** CPU identity that P2PDMA consults (cpu_supports_p2pdma: boot_cpu_data vendor and family). */
export interface CpuConfig {
  vendor: 'intel' | 'amd' | 'other';
  /** x86 family (cpuinfo_x86.x86, a u8: 0..0xff). Default: 6 for intel, 0x19 (Zen 3) for amd, 0 otherwise. */
  family?: number;
}

/** The family a CpuConfig stands for: its `family`, else 6 for intel, 0x19 (Zen 3) for amd, 0 otherwise. */
export function cpuFamily(cpu: CpuConfig): number {
  return cpu.family ?? (cpu.vendor === 'intel' ? 6 : cpu.vendor === 'amd' ? 0x19 : 0);
}

/** struct p2pdma_provider (6.19): who exposes a BAR for peer-to-peer DMA and its bus offset. */
export interface P2pdmaProvider {
  /** The PCI function that owns the BAR. */
  readonly owner: Device;
  /** pci_bus_address(pdev, bar) - pci_resource_start(pdev, bar): bus address = CPU physical + busOffset. */
  readonly busOffset: bigint;
  /** Provider id (from 1) carried in range flags of memory in this BAR (phyr/flags.ts). */
  readonly id: number;
  /** BAR index (0..5). */
  readonly bar: number;
  /** The machine memory region backing the BAR. */
  readonly region: MemRegion;
}

/** struct pci_p2pdma: one provider per memory BAR and the per-client map-type cache (map_types xarray). */
export interface PciP2pdma {
  /** mem[PCI_STD_NUM_BARS]: null for a BAR index without a memory BAR. */
  readonly mem: Array<P2pdmaProvider | null>;
  /** map_types: map_types_idx(client) -> enum pci_p2pdma_map_type (never UNKNOWN). */
  readonly mapTypes: Map<number, number>;
}

/** One BAR of a function: a device region of the machine's physical memory map. */
export interface PciBar {
  readonly index: number;
  readonly region: MemRegion;
  /** Bus address - CPU physical address for this BAR (0n unless the config says otherwise). */
  readonly busOffset: bigint;
  /** Configured as P2PDMA memory (pci_p2pdma_add_resource: ZONE_DEVICE pages). */
  readonly p2p: boolean;
}

/** What the P2P code needs from the topology a function belongs to (implemented by PciTopology). */
export interface PciTopologyCore {
  readonly mm: MachineMm;
  readonly cpu: Readonly<Required<CpuConfig>>;
  /** The provider with this id, or null if none has it. */
  providerById(id: number): P2pdmaProvider | null;
  /**
   * Gives new providers their ids and records them (pcim_p2pdma_init), all or none: null (and
   * nothing recorded) when the id space is exhausted.
   */
  registerProviders(fields: ReadonlyArray<Omit<P2pdmaProvider, 'id'>>): P2pdmaProvider[] | null;
}

/** dma_set_max_seg_size() of pci_device_add(): 65536 bytes. */
const PCI_DEFAULT_MAX_SEG_SIZE = 65536;
/** dma_set_seg_boundary() of pci_device_add(): segments do not cross a 4 GiB line. */
const PCI_DEFAULT_SEG_BOUNDARY = 0xffffffffn;

/** v in lower-case hex, zero-padded to `width` digits. */
function hexDigits(v: number, width: number): string {
  return v.toString(16).padStart(width, '0');
}

/** A PCI host bridge (struct pci_host_bridge) with its root bus. */
export class PciHostBridge {
  readonly name: string;
  readonly domain: number;
  readonly rootBus: number;
  /** The device at devfn 00.0 of the root bus (pci_host_bridge_dev), whose ids the whitelist matches. */
  rootDev!: PciDev;

  constructor(name: string, domain: number, rootBus: number) {
    this.name = name;
    this.domain = domain;
    this.rootBus = rootBus;
  }
}

/** struct pci_dev: one PCI function. */
export class PciDev {
  readonly name: string;
  readonly kind: PciDevKind;
  readonly domain: number;
  readonly bus: number;
  readonly devfn: number;
  readonly vendor: number;
  readonly deviceId: number;
  /** pci_upstream_bridge(): the bridge above this function's bus, null on a root bus. */
  readonly upstream: PciDev | null;
  readonly hostBridge: PciHostBridge;
  /** The config node this function was created from (a switch's ports share the switch's node). */
  readonly node: string;
  /** ACS control has RR, CR or EC set (pci_bridge_has_acs_redir). */
  acsRedirect: boolean;
  /** pci_dev->external_facing: a root port whose tunneled devices are untrusted (pciDevIsRemovable). */
  readonly externalFacing: boolean;
  readonly bars: PciBar[] = [];
  /**
   * PCI_COMMAND_MEMORY of the command register: the function's memory BARs decode. Cleared, a
   * memory request to a BAR is not claimed (an Unsupported Request): device-access.ts faults it.
   */
  memoryEnabled = true;
  /** pdev->p2pdma: set by pcimP2pdmaInit. */
  p2pdma: PciP2pdma | null = null;
  /** The struct device embedded in this pci_dev. */
  readonly device: Device;
  readonly topology: PciTopologyCore;

  constructor(f: {
    name: string; kind: PciDevKind; domain: number; bus: number; devfn: number; vendor: number; deviceId: number;
    upstream: PciDev | null; hostBridge: PciHostBridge; node: string; acsRedirect: boolean; externalFacing: boolean;
    topology: PciTopologyCore;
  }) {
    this.name = f.name;
    this.kind = f.kind;
    this.domain = f.domain;
    this.bus = f.bus;
    this.devfn = f.devfn;
    this.vendor = f.vendor;
    this.deviceId = f.deviceId;
    this.upstream = f.upstream;
    this.hostBridge = f.hostBridge;
    this.node = f.node;
    this.acsRedirect = f.acsRedirect;
    this.externalFacing = f.externalFacing;
    this.topology = f.topology;
    // pci_setup_device() (drivers/pci/probe.c) names the function "%04x:%02x:%02x.%d"; it sits on
    // pci_bus_type, whose name is "pci" (drivers/pci/pci-driver.c)
    this.device = new Device(f.name, { devName: this.pciName, busName: 'pci' });
    this.device.pci = this;
    // drivers/pci/probe.c: pci_device_add() gives every PCI function dma_parms with a 64 KiB max
    // segment size and a 4 GiB segment boundary; a driver may change both later
    this.device.dmaParms.maxSegmentSize = PCI_DEFAULT_MAX_SEG_SIZE;
    this.device.dmaParms.segmentBoundaryMask = PCI_DEFAULT_SEG_BOUNDARY;
  }

  /** PCI_SLOT(devfn). */
  get slot(): number {
    return this.devfn >> 3;
  }

  /** PCI_FUNC(devfn). */
  get fn(): number {
    return this.devfn & 7;
  }

  /** pci_name(): "dddd:bb:ss.f". */
  get pciName(): string {
    return `${hexDigits(this.domain, 4)}:${hexDigits(this.bus, 2)}:${hexDigits(this.slot, 2)}.${this.fn}`;
  }

  /** Vendor and device id as lspci prints them: "vvvv:dddd". */
  get pciIds(): string {
    return `${hexDigits(this.vendor, 4)}:${hexDigits(this.deviceId, 4)}`;
  }

  /** pci_dev_id(): bus << 8 | devfn. */
  get devId(): number {
    return (this.bus << 8) | this.devfn;
  }

  toString(): string {
    return `PciDev(${this.name} ${this.pciName})`;
  }
}

/** dev_is_pci(): true when the device is a PCI function of a built topology. */
export function devIsPci(dev: Device): boolean {
  return dev.pci instanceof PciDev;
}

/**
 * to_pci_dev(): the PciDev behind a Device.
 * @throws TypeError naming `what` if dev is not a Device or not a PCI function.
 */
export function toPciDev(dev: Device, what = 'dev'): PciDev {
  if (!(dev instanceof Device)) throw new TypeError(`${what} must be a Device, got ${String(dev)}`);
  if (!(dev.pci instanceof PciDev)) throw new TypeError(`${what} must be a PCI device, got ${dev.name} (not PCI)`);
  return dev.pci;
}
