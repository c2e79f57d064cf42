// Models: drivers/pci/probe.c (Linux 6.x): PCI enumeration as far as DMA and P2PDMA need it (host
// bridges, root buses, bus numbers assigned depth first, devfn; pci_upstream_bridge(); untrusted
// devices below external-facing ports: set_pcie_untrusted with x86's arch_pci_dev_is_removable from
// arch/x86/pci/acpi.c), built from a machine config.
//
// Build in two phases because BARs are regions of the machine's physical memory map, which exists
// before the topology: pciDeviceMemoryFromConfig(nodes) lists the BARs the machine must place;
// buildPciTopology(mm, nodes, cpu) then creates one PciDev + Device per function, finds each BAR's
// region by name (`${endpoint}.bar${index}`) and sets up P2PDMA providers for p2p BARs.
//
// Enumeration: each host bridge gets a root bus (numbers in config order, domain 0) with its root
// device at 00.0 and its children (root ports, and endpoints integrated in the root complex) at the
// slots their `slot` names, the others at the lowest free slots from 1 in config order; the root
// bus is scanned slot by slot (pci_scan_child_bus_extend), so its root ports take their secondary
// bus numbers in slot order, each after every bus below the one before (pci_scan_bridge_extend
// gives a bridge max + 1 and scans below it first); a root port's children sit on its secondary
// bus at slots 0, 1, ...; a switch is an upstream port with one downstream port per child, the
// child at slot 0 of that port's bus. Functions f > 0 of an endpoint are named `${name}.${f}`;
// a switch's downstream ports are `${switch}.dsp${i}`.
// Model deviation: BARs (and their ACS/P2P settings) belong to function 0 of an endpoint; the
// other functions have none. ARI (more than 8 functions) is not modeled.
// Model deviation: a root port may have several children, as on a system with
// PCI_SCAN_ALL_PCIE_DEVS; otherwise probe.c's only_one_child() scans device 0 alone below it.

import { SlotKey, checkAddr, describeValue, failConfig, isPow2 } from '../base/internal.ts';
import type { MachineMm, MemRegion } from '../mm/index.ts';
import { RANGE_PROVIDER_MAX } from '../phyr/index.ts';
import { Device } from './device.ts';
import { PCI_STD_NUM_BARS, PCI_VENDOR_ID_INTEL, pcimP2pdmaInit } from './p2pdma.ts';
import {
  PciDev, PciHostBridge, cpuFamily,
  type CpuConfig, type P2pdmaProvider, type PciDevKind, type PciTopologyCore,
} from './pci-dev.ts';

export type PciNodeType = 'host-bridge' | 'root-port' | 'switch' | 'endpoint';

/** One BAR of an endpoint (function 0). */
export interface PciBarConfig {
  /** BAR size in bytes: a power of two >= 4096. */
  bytes: number;
  /** P2PDMA memory (pci_p2pdma_add_resource): ZONE_DEVICE pages and a provider. Default false. */
  p2p?: boolean;
  /** Bus address - CPU physical address. Default 0n. */
  busOffset?: bigint;
}

/** One node of the machine's `pci` config. */
export interface PciNodeConfig {
  name: string;
  type: PciNodeType;
  /**
   * Name of the parent node: a host bridge for a root port; a root port or switch otherwise, or a
   * host bridge for an endpoint integrated in the root complex (on the root bus, with no bridge
   * above it: pci_upstream_bridge() is NULL).
   */
  parent?: string;
  /**
   * A child of a host bridge only (a root port or an endpoint on the root bus): its device number
   * on the root bus, 1..31 (0 is the host bridge's root device), unique there. Default: the lowest
   * slot from 1 that no sibling takes, in config order.
   */
  slot?: number;
  /** PCI vendor id (required for a host bridge: its root device at 00.0, matched by the whitelist). */
  vendor?: number;
  /** PCI device id (required for a host bridge). */
  device?: number;
  /** ACS redirect (RR|CR|EC) set: on a root port, that port; on a switch, all its downstream ports;
   *  on an endpoint, the ACS capability of each of its functions. Default false. It is the final
   *  ACS control: an IOMMU does not turn it on (pci_enable_acs() would, on ports with ACS). */
  acsRedirect?: boolean;
  /** Switch only: names of children whose downstream port has ACS redirect set. */
  acsRedirectPorts?: string[];
  /**
   * Root port only: an external-facing port (ACPI ExternalFacingPort, e.g. Thunderbolt). What is
   * tunneled below it is untrusted: everything, when the port's ids are an Intel integrated
   * Thunderbolt root port; otherwise everything except a switch directly below the port (the
   * discrete controller) and the endpoints on that switch's downstream ports (x86
   * arch_pci_dev_is_removable()).
   */
  externalFacing?: boolean;
  /** Endpoint only: number of functions, 1..8 (default 1). */
  functions?: number;
  /** Endpoint only: BARs of function 0 (at most 6). */
  bars?: PciBarConfig[];
  /** Endpoint only: dev->untrusted for all its functions. */
  untrusted?: boolean;
  /**
   * Endpoint only: dev_is_dma_coherent() for all its functions (default true, as on x86). false models
   * an arm64 device that does not snoop the CPU caches: streaming DMA then needs cache maintenance.
   */
  coherent?: boolean;
  /**
   * Endpoint only: function 0 is an NVMe controller (the device model of drivers/nvme-ctrl, which
   * createMachine attaches to the device) with these Identify data and namespaces.
   */
  nvme?: PciNvmeConfig;
  /**
   * Endpoint only: the dma_map_ops family of its functions on a machine without an IOMMU (overrides
   * the machine's `dmaOps`); the shape is dma/'s DmaOpsConfig, checked when the machine is built.
   */
  dmaOps?: { readonly kind: string };
}

/** One namespace of an NVMe controller: an LBA format without metadata and a size. */
export interface PciNvmeNamespaceConfig {
  /** Namespace ID: an integer in [1, 0xfffffffe], unique on the controller. */
  nsid: number;
  /** Capacity in bytes: a positive safe integer, a multiple of lbaBytes. */
  bytes: number;
  /** Logical block size (2^LBADS): a power of two in [512, 65536]. */
  lbaBytes: number;
}

/** The NVMe controller of an endpoint, as its Identify Controller data state it. */
export interface PciNvmeConfig {
  /** SGLS bits 1:0 = 01b (SGLs supported, no alignment requirement) when true; 00b when false. */
  sgls: boolean;
  /** MDTS: the largest transfer is 2^mdts units of the minimum memory page size (CAP.MPSMIN, 4 KiB); 0 = no limit. */
  mdts: number;
  /** The active namespaces (at least one). */
  namespaces: PciNvmeNamespaceConfig[];
}

const NODE_TYPES: readonly PciNodeType[] = ['host-bridge', 'root-port', 'switch', 'endpoint'];
const ALLOWED_KEYS: Record<PciNodeType, readonly string[]> = {
  'host-bridge': ['name', 'type', 'parent', 'vendor', 'device'],
  'root-port': ['name', 'type', 'parent', 'vendor', 'device', 'acsRedirect', 'externalFacing', 'slot'],
  switch: ['name', 'type', 'parent', 'vendor', 'device', 'acsRedirect', 'acsRedirectPorts'],
  endpoint: ['name', 'type', 'parent', 'vendor', 'device', 'acsRedirect', 'functions', 'bars', 'untrusted', 'nvme', 'dmaOps', 'coherent', 'slot'],
};
const PARENT_TYPES: Record<PciNodeType, readonly PciNodeType[]> = {
  'host-bridge': [],
  'root-port': ['host-bridge'],
  switch: ['root-port', 'switch'],
  endpoint: ['host-bridge', 'root-port', 'switch'],
};
const MIN_BAR_BYTES = 4096;
/** MDTS values whose limit (2^mdts * 4 KiB) stays a safe integer; the field is a byte, larger ones mean nothing here. */
const MAX_MDTS = 40;
const MAX_NSID = 0xfffffffe;
const MAX_NAMESPACES = 1024;
const MAX_FUNCTIONS = 8;
const MAX_SLOTS = 32;
const MAX_BUS = 255;
const U64_LIMIT = 1n << 64n;

interface CheckedNode {
  readonly cfg: PciNodeConfig;
  readonly where: string;
  readonly children: CheckedNode[];
  parent: CheckedNode | null;
}


function checkBool(where: string, field: string, v: unknown): void {
  if (v !== undefined && typeof v !== 'boolean') failConfig(where, field, 'must be a boolean', v);
}

function checkId(where: string, field: string, v: unknown, required: boolean): void {
  if (v === undefined && !required) return;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffff) {
    failConfig(where, field, required ? 'is required: an integer in [0, 0xffff]' : 'must be an integer in [0, 0xffff]', v);
  }
}

function checkIntIn(where: string, field: string, v: unknown, lo: number, hi: number): void {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < lo || v > hi) failConfig(where, field, `must be an integer in [${lo}, ${hi}]`, v);
}

/** Validates an endpoint's `nvme` field. @throws RangeError naming the field. */
function checkNvmeConfig(where: string, nvme: PciNvmeConfig): void {
  if (nvme === null || typeof nvme !== 'object' || Array.isArray(nvme)) {
    throw new RangeError(`${where} must be an NVMe controller config { sgls, mdts, namespaces }, got ${describeValue(nvme)}`);
  }
  for (const k of Object.keys(nvme)) {
    if (!['sgls', 'mdts', 'namespaces'].includes(k)) failConfig(where, k, 'is not an NVMe controller field', (nvme as unknown as Record<string, unknown>)[k]);
  }
  if (typeof nvme.sgls !== 'boolean') failConfig(where, 'sgls', 'is required: a boolean', nvme.sgls);
  checkIntIn(where, 'mdts', nvme.mdts, 0, MAX_MDTS);
  const nss: unknown = nvme.namespaces;
  if (!Array.isArray(nss) || nss.length === 0 || nss.length > MAX_NAMESPACES) {
    failConfig(where, 'namespaces', `is required: an array of 1 to ${MAX_NAMESPACES} namespaces`, nss);
  }
  const seen = new Set<number>();
  (nss as PciNvmeNamespaceConfig[]).forEach((ns, j) => {
    const nw = `${where}.namespaces[${j}]`;
    if (ns === null || typeof ns !== 'object') throw new RangeError(`${nw} must be a namespace config { nsid, bytes, lbaBytes }, got ${describeValue(ns)}`);
    for (const k of Object.keys(ns)) {
      if (!['nsid', 'bytes', 'lbaBytes'].includes(k)) failConfig(nw, k, 'is not a namespace field', (ns as unknown as Record<string, unknown>)[k]);
    }
    checkIntIn(nw, 'nsid', ns.nsid, 1, MAX_NSID);
    if (seen.has(ns.nsid)) failConfig(nw, 'nsid', 'duplicates an earlier namespace', ns.nsid);
    seen.add(ns.nsid);
    if (typeof ns.lbaBytes !== 'number' || !Number.isInteger(ns.lbaBytes) || ns.lbaBytes < 512 || ns.lbaBytes > 65536 || !isPow2(ns.lbaBytes)) {
      failConfig(nw, 'lbaBytes', 'must be a power of two in [512, 65536]', ns.lbaBytes);
    }
    if (typeof ns.bytes !== 'number' || !Number.isSafeInteger(ns.bytes) || ns.bytes <= 0 || ns.bytes % ns.lbaBytes !== 0) {
      failConfig(nw, 'bytes', `must be a positive safe integer, a multiple of lbaBytes (${ns.lbaBytes})`, ns.bytes);
    }
  });
}

/**
 * Validates a `pci` config and returns its nodes as a forest of host bridges (config order).
 * @throws RangeError naming the node and field: unknown or duplicate names, unknown parent, wrong
 * parent type, cycles, bad field values, unknown fields.
 */
function checkPciConfig(nodes: readonly PciNodeConfig[]): CheckedNode[] {
  if (!Array.isArray(nodes as unknown)) throw new RangeError(`pci must be an array of node configs, got ${describeValue(nodes)}`);
  const byName = new Map<string, CheckedNode>();
  const all: CheckedNode[] = [];
  nodes.forEach((cfg, i) => {
    if (cfg === null || typeof cfg !== 'object') throw new RangeError(`pci[${i}] must be a node config object, got ${describeValue(cfg)}`);
    if (typeof cfg.name !== 'string' || cfg.name.length === 0) throw new RangeError(`pci[${i}].name must be a non-empty string, got ${describeValue(cfg.name)}`);
    const where = `pci[${i}] (${cfg.name})`;
    if (!NODE_TYPES.includes(cfg.type)) failConfig(where, 'type', `must be one of ${NODE_TYPES.map(describeValue).join(', ')}`, cfg.type);
    for (const k of Object.keys(cfg)) {
      if (!ALLOWED_KEYS[cfg.type].includes(k)) failConfig(where, k, `is not a field of a ${cfg.type} node`, (cfg as unknown as Record<string, unknown>)[k]);
    }
    if (byName.has(cfg.name)) failConfig(where, 'name', 'duplicates an earlier node', cfg.name);
    checkId(where, 'vendor', cfg.vendor, cfg.type === 'host-bridge');
    checkId(where, 'device', cfg.device, cfg.type === 'host-bridge');
    checkBool(where, 'acsRedirect', cfg.acsRedirect);
    checkBool(where, 'externalFacing', cfg.externalFacing);
    checkBool(where, 'untrusted', cfg.untrusted);
    checkBool(where, 'coherent', cfg.coherent);
    if (cfg.functions !== undefined && (!Number.isInteger(cfg.functions) || cfg.functions < 1 || cfg.functions > MAX_FUNCTIONS)) {
      failConfig(where, 'functions', `must be an integer in [1, ${MAX_FUNCTIONS}]`, cfg.functions);
    }
    if (cfg.bars !== undefined) {
      if (!Array.isArray(cfg.bars) || cfg.bars.length > PCI_STD_NUM_BARS) failConfig(where, 'bars', `must be an array of at most ${PCI_STD_NUM_BARS} BARs`, cfg.bars);
      cfg.bars.forEach((b, j) => {
        const bw = `${where}.bars[${j}]`;
        if (b === null || typeof b !== 'object') throw new RangeError(`${bw} must be a BAR config object, got ${describeValue(b)}`);
        for (const k of Object.keys(b)) if (!['bytes', 'p2p', 'busOffset'].includes(k)) failConfig(bw, k, 'is not a BAR field', (b as unknown as Record<string, unknown>)[k]);
        if (typeof b.bytes !== 'number' || !Number.isSafeInteger(b.bytes) || b.bytes < MIN_BAR_BYTES || !isPow2(b.bytes)) {
          failConfig(bw, 'bytes', `must be a power of two >= ${MIN_BAR_BYTES}`, b.bytes);
        }
        checkBool(bw, 'p2p', b.p2p);
        if (b.busOffset !== undefined && (typeof b.busOffset !== 'bigint' || b.busOffset <= -U64_LIMIT || b.busOffset >= U64_LIMIT)) {
          failConfig(bw, 'busOffset', 'must be a bigint in (-2^64, 2^64)', b.busOffset);
        }
      });
    }
    if (cfg.nvme !== undefined) checkNvmeConfig(`${where}.nvme`, cfg.nvme);
    const node: CheckedNode = { cfg, where, children: [], parent: null };
    byName.set(cfg.name, node);
    all.push(node);
  });

  for (const node of all) {
    const { cfg, where } = node;
    if (cfg.type === 'host-bridge') {
      if (cfg.parent !== undefined) failConfig(where, 'parent', 'must be absent: a host bridge is a root', cfg.parent);
      continue;
    }
    if (typeof cfg.parent !== 'string') failConfig(where, 'parent', `is required: the name of a ${PARENT_TYPES[cfg.type].join(' or ')}`, cfg.parent);
    const parent = byName.get(cfg.parent);
    if (!parent) failConfig(where, 'parent', 'names no node', cfg.parent);
    if (parent === node) failConfig(where, 'parent', 'names the node itself', cfg.parent);
    if (!PARENT_TYPES[cfg.type].includes(parent.cfg.type)) {
      failConfig(where, 'parent', `must be a ${PARENT_TYPES[cfg.type].join(' or ')}, not a ${parent.cfg.type}`, cfg.parent);
    }
    node.parent = parent;
    parent.children.push(node);
    if (cfg.slot !== undefined) {
      if (parent.cfg.type !== 'host-bridge') failConfig(where, 'slot', 'is only for a child of a host bridge (a device on the root bus)', cfg.slot);
      checkIntIn(where, 'slot', cfg.slot, 1, MAX_SLOTS - 1);
      const taken = parent.children.find((c) => c !== node && c.cfg.slot === cfg.slot);
      if (taken) failConfig(where, 'slot', `is the slot of ${taken.cfg.name} already`, cfg.slot);
    }
  }

  // Only switches can hang below switches, so a cycle is a loop of switches that never reaches a root.
  for (const node of all) {
    let steps = 0;
    for (let p: CheckedNode | null = node; p; p = p.parent) {
      if (++steps > all.length) failConfig(node.where, 'parent', 'forms a cycle', node.cfg.parent);
    }
  }

  for (const node of all) {
    const ports = node.cfg.acsRedirectPorts;
    if (ports === undefined) continue;
    if (!Array.isArray(ports)) failConfig(node.where, 'acsRedirectPorts', 'must be an array of child names', ports);
    for (const p of ports) {
      if (!node.children.some((c) => c.cfg.name === p)) failConfig(node.where, 'acsRedirectPorts', `must name children of ${node.cfg.name}`, p);
    }
  }
  return all.filter((n) => n.cfg.type === 'host-bridge');
}

/**
 * The device memory regions a machine must place for a `pci` config: one per BAR, named
 * `${endpoint}.bar${index}`; p2p BARs get pgmap: true (P2PDMA memory has ZONE_DEVICE struct pages).
 * Validates the whole config first, and that every BAR is at least `pageSize` bytes (the machine's page size).
 * @throws RangeError naming the node and field for an invalid config.
 */
export function pciDeviceMemoryFromConfig(nodes: readonly PciNodeConfig[], pageSize = 4096): Array<{ name: string; bytes: number; pgmap: boolean }> {
  checkPciConfig(nodes);
  const out: Array<{ name: string; bytes: number; pgmap: boolean }> = [];
  nodes.forEach((n, k) => {
    (n.bars ?? []).forEach((b, i) => {
      // The model places memory regions, BARs included, as whole pages of the machine's page size.
      if (b.bytes < pageSize) failConfig(`pci[${k}] (${n.name}).bars[${i}]`, 'bytes', `must be at least the machine's page size (${pageSize}): the model places a BAR as whole pages`, b.bytes);
      out.push({ name: barRegionName(n.name, i), bytes: b.bytes, pgmap: b.p2p === true });
    });
  });
  return out;
}

/** Name of the machine memory region of an endpoint's BAR. */
export function barRegionName(endpoint: string, bar: number): string {
  return `${endpoint}.bar${bar}`;
}

function normalizeCpu(cpu: CpuConfig): Readonly<Required<CpuConfig>> {
  if (cpu === null || typeof cpu !== 'object') throw new RangeError(`cpu must be a { vendor, family? } object, got ${describeValue(cpu)}`);
  for (const k of Object.keys(cpu)) if (k !== 'vendor' && k !== 'family') failConfig('cpu', k, 'is not a cpu field', (cpu as unknown as Record<string, unknown>)[k]);
  const vendors = ['intel', 'amd', 'other'];
  if (!vendors.includes(cpu.vendor)) failConfig('cpu', 'vendor', `must be one of ${vendors.map(describeValue).join(', ')}`, cpu.vendor);
  const family = cpuFamily(cpu);
  // arch/x86/include/asm/processor.h: cpuinfo_x86.x86 (the family) is a __u8
  if (!Number.isInteger(family) || family < 0 || family > 0xff) failConfig('cpu', 'family', 'must be an integer in [0, 0xff] (cpuinfo_x86.x86 is a u8)', cpu.family);
  return Object.freeze({ vendor: cpu.vendor, family });
}

/**
 * Root-port device ids of Intel's integrated Thunderbolt 3/4 controllers (Ice Lake, Tiger Lake-LP and
 * -H), which firmware does not tag with "usb4-host-interface": the kernel treats a port with one of
 * these ids as tunneling PCIe (arch/x86/pci/acpi.c: pcie_has_usb4_host_interface()).
 */
export const PCI_INTEL_TBT_ROOT_PORT_IDS: readonly number[] = Object.freeze([
  0x8a1d, 0x8a1f, 0x8a21, 0x8a23, 0x9a23, 0x9a25, 0x9a27, 0x9a29, 0x9a2b, 0x9a2d, 0x9a2f, 0x9a31,
]);

/** pcie_has_usb4_host_interface() by PCI ids only (the ACPI "usb4-host-interface" reference is not modeled). */
function isUsb4HostInterface(bridge: PciDev): boolean {
  return bridge.vendor === PCI_VENDOR_ID_INTEL && PCI_INTEL_TBT_ROOT_PORT_IDS.includes(bridge.deviceId);
}

/** pcie_find_root_port(): the root port at or above p, or null. */
function rootPortOf(p: PciDev): PciDev | null {
  for (let q: PciDev | null = p; q; q = q.upstream) if (q.kind === 'root-port') return q;
  return null;
}

/**
 * arch/x86/pci/acpi.c: pcie_switch_directly_under(bridge, p): p is a port of, or an endpoint right
 * below a downstream port of, a switch whose upstream port sits directly below `bridge`.
 */
function inSwitchDirectlyUnder(bridge: PciDev, p: PciDev): boolean {
  const up = p.upstream;
  if (!up) return false;
  switch (p.kind) {
    case 'switch-upstream':
      return up === bridge;
    case 'switch-downstream':
      return up.kind === 'switch-upstream' && up.upstream === bridge;
    case 'endpoint':
      return up.kind === 'switch-downstream' && up.upstream?.kind === 'switch-upstream' && up.upstream.upstream === bridge;
    default:
      return false;
  }
}

/**
 * arch_pci_dev_is_removable() of x86 (arch/x86/pci/acpi.c): a function is tunneled (removable) when
 * its root port is external-facing and it sits directly below a USB4 host interface, or is anything
 * but the discrete Thunderbolt controller itself (a switch directly below the root port, and the
 * endpoints on that switch's downstream ports).
 */
export function pciDevIsRemovable(p: PciDev): boolean {
  const parent = p.upstream;
  if (!parent) return false;
  const rp = rootPortOf(p);
  if (!rp || !rp.externalFacing) return false;
  if (isUsb4HostInterface(parent)) return true;
  return !inSwitchDirectlyUnder(rp, p);
}

/**
 * set_pcie_untrusted() (drivers/pci/probe.c): untrusted below an untrusted bridge, or when the
 * architecture calls the function removable (pciDevIsRemovable). A function on a root bus never is.
 */
function pcieUntrusted(p: PciDev): boolean {
  const parent = p.upstream;
  if (!parent) return false;
  return parent.device.untrusted || pciDevIsRemovable(p);
}

/** The slot on a machine that holds its PCI topology. */
const PCI_TOPOLOGY = new SlotKey<PciTopology>('pci-topology');

/** The PCI topology built on a machine, or null. */
export function pciTopologyOf(mm: MachineMm): PciTopology | null {
  return mm.slots.get(PCI_TOPOLOGY) ?? null;
}

/** The machine's PCI device tree: functions by name, host bridges, P2PDMA providers by id. */
export class PciTopology implements PciTopologyCore {
  readonly mm: MachineMm;
  readonly cpu: Readonly<Required<CpuConfig>>;
  readonly hostBridges: PciHostBridge[] = [];
  private readonly byName = new Map<string, PciDev>();
  private readonly order: PciDev[] = [];
  private readonly providerList: P2pdmaProvider[] = [];

  constructor(mm: MachineMm, cpu: CpuConfig) {
    this.mm = mm;
    this.cpu = normalizeCpu(cpu);
  }

  /** @internal Adds a function during the build. */
  addDev(pdev: PciDev): void {
    if (this.byName.has(pdev.name)) throw new RangeError(`pci: generated function name ${describeValue(pdev.name)} collides with another node`);
    this.byName.set(pdev.name, pdev);
    this.order.push(pdev);
  }

  /** The Device of a function by name. @throws RangeError for an unknown name. */
  device(name: string): Device {
    return this.pciDev(name).device;
  }

  /** The PciDev of a function by name. @throws RangeError for an unknown name. */
  pciDev(name: string): PciDev {
    const p = this.byName.get(name);
    if (!p) throw new RangeError(`name must be a PCI function of this machine, got ${describeValue(name)}`);
    return p;
  }

  /** Endpoint functions (the devices that do DMA), in enumeration order. */
  devices(): Device[] {
    return this.order.filter((p) => p.kind === 'endpoint').map((p) => p.device);
  }

  /** Every function, bridges and host-bridge root devices included, in enumeration order. */
  allDevices(): Device[] {
    return this.order.map((p) => p.device);
  }

  /** Every function's PciDev, in enumeration order. */
  pciDevs(): readonly PciDev[] {
    return this.order;
  }

  /** The P2PDMA provider with this id, or null. */
  providerById(id: number): P2pdmaProvider | null {
    if (!Number.isInteger(id) || id < 1) return null;
    return this.providerList[id - 1] ?? null;
  }

  /** Every provider, by id. */
  providers(): readonly P2pdmaProvider[] {
    return this.providerList;
  }

  /** @internal Used by pcimP2pdmaInit. */
  registerProviders(fields: ReadonlyArray<Omit<P2pdmaProvider, 'id'>>): P2pdmaProvider[] | null {
    if (this.providerList.length + fields.length > RANGE_PROVIDER_MAX) return null;
    return fields.map((f) => {
      const p: P2pdmaProvider = Object.freeze({ ...f, id: this.providerList.length + 1 });
      this.providerList.push(p);
      return p;
    });
  }

  /** One line per function, lspci-style: "0000:01:00.0 gpu0 endpoint 10de:0000 [acs] [untrusted]". */
  lspci(): string[] {
    return this.order.map((p) => {
      let s = `${p.pciName} ${p.name} ${p.kind} ${p.pciIds}`;
      if (p.upstream) s += ` <- ${p.upstream.name}`;
      if (p.acsRedirect) s += ' acs-redir';
      if (p.device.untrusted) s += ' untrusted';
      for (const b of p.bars) s += ` bar${b.index}=${b.region.name}${p.p2pdma?.mem[b.index] ? `(p2p#${p.p2pdma.mem[b.index]!.id})` : ''}`;
      return s;
    });
  }
}

/**
 * The slots of a host bridge's children on its root bus, in slot order (the order
 * pci_scan_child_bus_extend() finds them and numbers the buses below them): a child's own `slot`,
 * else the lowest free one from 1, given in config order.
 */
function rootBusSlots(children: readonly CheckedNode[]): Array<[number, CheckedNode]> {
  const taken = new Set<number>();
  for (const c of children) if (c.cfg.slot !== undefined) taken.add(c.cfg.slot);
  let next = 1;
  const out: Array<[number, CheckedNode]> = children.map((c) => {
    if (c.cfg.slot !== undefined) return [c.cfg.slot, c];
    while (taken.has(next)) next++;
    taken.add(next);
    return [next, c];
  });
  return out.sort((a, b) => a[0] - b[0]);
}

/**
 * Builds the PCI topology of a machine from its `pci` config (see the file comment for the
 * enumeration), with cpu for P2PDMA decisions. Every BAR's region `${endpoint}.bar${i}` must exist in
 * mm.regions as a device region of the BAR's size (pciDeviceMemoryFromConfig lists them); endpoints
 * with a p2p BAR get pcimP2pdmaInit, which sets the regions' providerId (ids from 1).
 * @throws RangeError naming the node and field for an invalid config, a missing or mismatched BAR
 * region, a bus offset that moves the BAR outside 64 bits, or exhausted bus/slot numbers.
 */
export function buildPciTopology(mm: MachineMm, nodes: readonly PciNodeConfig[], cpu: CpuConfig): PciTopology {
  const roots = checkPciConfig(nodes);
  if (mm.slots.get(PCI_TOPOLOGY) !== undefined) throw new RangeError('mm already has a PCI topology: build one per machine');
  const topo = new PciTopology(mm, cpu);
  const regions = new Map<string, MemRegion>();
  for (const r of mm.regions) regions.set(r.name, r);
  const domain = 0;
  let nextBus = 0;

  const takeBus = (where: string): number => {
    if (nextBus > MAX_BUS) throw new RangeError(`${where}: no PCI bus number left (more than ${MAX_BUS + 1} buses)`);
    return nextBus++;
  };
  const checkSlots = (where: string, n: number) => {
    if (n > MAX_SLOTS) throw new RangeError(`${where}: more than ${MAX_SLOTS} devices on one bus, got ${n}`);
  };

  const mk = (name: string, kind: PciDevKind, bus: number, devfn: number, cfg: PciNodeConfig, upstream: PciDev | null,
    host: PciHostBridge, acsRedirect: boolean, externalFacing: boolean): PciDev => {
    const p = new PciDev({
      name, kind, domain, bus, devfn, vendor: cfg.vendor ?? 0, deviceId: cfg.device ?? 0, upstream, hostBridge: host,
      node: cfg.name, acsRedirect, externalFacing, topology: topo,
    });
    topo.addDev(p);
    p.device.untrusted = pcieUntrusted(p);
    return p;
  };


  const p2pOwners: PciDev[] = [];

  // Places `node` at `slot` of `bus`, below bridge `up` (null on a root bus).
  const place = (node: CheckedNode, bus: number, slot: number, up: PciDev | null, host: PciHostBridge): void => {
    const cfg = node.cfg;
    if (cfg.type === 'endpoint') {
      const n = cfg.functions ?? 1;
      for (let f = 0; f < n; f++) {
        const p = mk(f === 0 ? cfg.name : `${cfg.name}.${f}`, 'endpoint', bus, (slot << 3) | f, cfg, up, host, cfg.acsRedirect === true, false);
        if (cfg.untrusted === true) p.device.untrusted = true;
        if (f === 0) attachBars(p, node);
      }
      return;
    }
    // A switch: the upstream port here, one downstream port per child on the switch's internal bus.
    const usp = mk(cfg.name, 'switch-upstream', bus, slot << 3, cfg, up, host, false, false);
    const internal = takeBus(node.where);
    checkSlots(node.where, node.children.length);
    node.children.forEach((child, i) => {
      const acs = cfg.acsRedirect === true || (cfg.acsRedirectPorts ?? []).includes(child.cfg.name);
      const dsp = mk(`${cfg.name}.dsp${i}`, 'switch-downstream', internal, i << 3, cfg, usp, host, acs, false);
      const secondary = takeBus(node.where);
      place(child, secondary, 0, dsp, host);
    });
  };

  const attachBars = (p: PciDev, node: CheckedNode): void => {
    (node.cfg.bars ?? []).forEach((b, i) => {
      const bw = `${node.where}.bars[${i}]`;
      const rname = barRegionName(node.cfg.name, i);
      const region = regions.get(rname);
      if (!region) throw new RangeError(`${bw}: the machine has no memory region ${describeValue(rname)} (pass pciDeviceMemoryFromConfig(pci) as deviceMemory)`);
      if (region.kind !== 'device' || region.len !== b.bytes) {
        throw new RangeError(`${bw}: region ${describeValue(rname)} must be a device region of ${b.bytes} bytes, got ${region.kind} of ${region.len} bytes`);
      }
      if (region.providerId !== 0) throw new RangeError(`${bw}: region ${describeValue(rname)} already belongs to P2P provider ${region.providerId}`);
      const busOffset = b.busOffset ?? 0n;
      const first = region.start + busOffset;
      const last = region.end - 1n + busOffset;
      if (first < 0n || last >= U64_LIMIT) {
        throw new RangeError(`${bw}.busOffset moves the BAR outside the 64-bit bus address space, got ${describeValue(busOffset)}`);
      }
      checkAddr(`${bw} bus address`, first);
      p.bars.push({ index: i, region, busOffset, p2p: b.p2p === true });
    });
    if (p.bars.some((b) => b.p2p)) p2pOwners.push(p);
  };

  for (const hbNode of roots) {
    const rootBus = takeBus(hbNode.where);
    const host = new PciHostBridge(hbNode.cfg.name, domain, rootBus);
    topo.hostBridges.push(host);
    host.rootDev = mk(hbNode.cfg.name, 'host-bridge', rootBus, 0, hbNode.cfg, null, host, false, false);
    checkSlots(hbNode.where, hbNode.children.length + 1);
    for (const [slot, child] of rootBusSlots(hbNode.children)) {
      const cfg = child.cfg;
      if (cfg.type === 'endpoint') {
        place(child, rootBus, slot, null, host);
        continue;
      }
      const rp = mk(cfg.name, 'root-port', rootBus, slot << 3, cfg, null, host, cfg.acsRedirect === true, cfg.externalFacing === true);
      const secondary = takeBus(child.where);
      checkSlots(child.where, child.children.length);
      child.children.forEach((c, s) => place(c, secondary, s, rp, host));
    }
  }

  for (const p of p2pOwners) {
    const r = pcimP2pdmaInit(p.device);
    if (!r.ok) throw new RangeError(`pci: pcim_p2pdma_init(${p.name}) failed with ${r.errno}`);
  }
  mm.slots.set(PCI_TOPOLOGY, topo);
  return topo;
}
