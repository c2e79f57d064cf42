// Models: drivers/pci/p2pdma.c and include/linux/pci-p2pdma.h (Linux 7.1): P2P providers per BAR
// (pcim_p2pdma_init/provider), the provider-client map type and distance (calc_map_type_and_dist),
// the host bridge whitelist (host_bridge_whitelist), cpu_supports_p2pdma, the per-provider map-type
// cache (pci_p2pdma_map_type), pci_p2pdma_state and pci_p2pdma_bus_addr_map.
//
// Model deviation: an ACS port is one boolean, "ACS control has RR, CR or EC set", as in
// pci_bridge_has_acs_redir() of 6.x. Later proposals that evaluate the egress control vector per
// target port, and HMAT-described host-bridge paths, are not modeled.
// Model deviation: printk warnings (pci_warn) are INFO events with data.level 'warning' on the
// machine's event log (source 'pci-p2pdma'): they are diagnostics, not violated kernel invariants.

import { checkAddr, checkLen, err, hex, ok, type Result } from '../base/index.ts';
import { rangeProvider } from '../phyr/index.ts';
import type { Device } from './device.ts';
import {
  cpuFamily, devIsPci, toPciDev,
  type CpuConfig, type P2pdmaProvider, type PciBar, type PciDev, type PciHostBridge, type PciTopologyCore,
} from './pci-dev.ts';
import './counters.ts';

/** enum pci_p2pdma_map_type (include/linux/pci-p2pdma.h). UNKNOWN: not computed yet (cache miss). */
export const PCI_P2PDMA_MAP_UNKNOWN = 0;
/** Not P2P memory: map it the normal way. */
export const PCI_P2PDMA_MAP_NONE = 1;
/** Provider and client cannot do peer-to-peer DMA. */
export const PCI_P2PDMA_MAP_NOT_SUPPORTED = 2;
/** Through switches only: program the PCI bus address (pciP2pdmaBusAddrMap), no IOMMU mapping. */
export const PCI_P2PDMA_MAP_BUS_ADDR = 3;
/** Through the root complex: map it like MMIO (IOMMU or dma-direct, DMA_ATTR_MMIO). */
export const PCI_P2PDMA_MAP_THRU_HOST_BRIDGE = 4;

export type PciP2pdmaMapType = 0 | 1 | 2 | 3 | 4;

/** Kernel names of the map types, indexed by value. */
export const PCI_P2PDMA_MAP_NAMES: readonly string[] = [
  'PCI_P2PDMA_MAP_UNKNOWN', 'PCI_P2PDMA_MAP_NONE', 'PCI_P2PDMA_MAP_NOT_SUPPORTED',
  'PCI_P2PDMA_MAP_BUS_ADDR', 'PCI_P2PDMA_MAP_THRU_HOST_BRIDGE',
];

/** PCI_STD_NUM_BARS. */
export const PCI_STD_NUM_BARS = 6;
export const PCI_VENDOR_ID_INTEL = 0x8086;
export const PCI_VENDOR_ID_GOOGLE = 0x1ae0;
export const PCI_VENDOR_ID_NVIDIA = 0x10de;
export const PCI_VENDOR_ID_ZHAOXIN = 0x1d17;
/** PCI_ANY_ID (include/linux/mod_devicetable.h: ~0): a whitelist entry with it matches every device id of its vendor. */
export const PCI_ANY_ID = -1;
/** Whitelist entry flag: P2P through this root complex only within one host bridge. */
export const REQ_SAME_HOST_BRIDGE = 1 << 0;

/** One entry of pci_p2pdma_whitelist[]; `since` names the kernel that has it ('queued': not in a release). */
export interface P2pdmaWhitelistEntry {
  readonly vendor: number;
  /** A device id, or PCI_ANY_ID for every device of the vendor. */
  readonly device: number;
  readonly flags: number;
  /** The first kernel the model knows to have the entry, or 'queued' for one not in a released kernel. */
  readonly since: string;
  /** What the root device is. */
  readonly what: string;
}

const wl = (vendor: number, device: number, flags: number, since: string, what: string): P2pdmaWhitelistEntry =>
  Object.freeze({ vendor, device, flags, since, what });

/**
 * pci_p2pdma_whitelist[] (drivers/pci/p2pdma.c) as of Linux 7.3 plus the PCI tree's queued entries,
 * in the kernel's order (the first entry that matches vendor and device decides):
 * - '<=7.0': the Intel root complexes from before 7.0, Xeon E5 / E5 v3 only within one host bridge;
 * - '7.1': Google SoCs with a PCI_ANY_ID device wildcard (in the 7.1.5 tree);
 * - '7.1.5': the Intel accelerator root devices (DSA, IAX/IAA, QAT 4xxx/401xx/402xx/420xx/6xxx). The
 *   issue that asked for them dates them 7.2; the 7.1.5 tree (drivers/pci/p2pdma.c, ids from
 *   include/linux/pci_ids.h) already lists them, so they are in a released kernel by 7.1.5;
 * - 'queued': NVIDIA CPU root complexes and Zhaoxin KX/KH root complexes (four of them only within one
 *   host bridge), queued in the PCI tree and not in a released kernel as of 7.3-rc6.
 * Model deviation: the queued NVIDIA and Zhaoxin entries are active, so the model whitelists them
 * ahead of mainline; filter on `since` to get 7.3's table.
 */
export const PCI_P2PDMA_WHITELIST: readonly P2pdmaWhitelistEntry[] = Object.freeze([
  wl(PCI_VENDOR_ID_INTEL, 0x3c00, REQ_SAME_HOST_BRIDGE, '<=7.0', 'Intel Xeon E5/Core i7'),
  wl(PCI_VENDOR_ID_INTEL, 0x3c01, REQ_SAME_HOST_BRIDGE, '<=7.0', 'Intel Xeon E5/Core i7'),
  wl(PCI_VENDOR_ID_INTEL, 0x2f00, REQ_SAME_HOST_BRIDGE, '<=7.0', 'Intel Xeon E7 v3/Xeon E5 v3/Core i7'),
  wl(PCI_VENDOR_ID_INTEL, 0x2f01, REQ_SAME_HOST_BRIDGE, '<=7.0', 'Intel Xeon E7 v3/Xeon E5 v3/Core i7'),
  wl(PCI_VENDOR_ID_INTEL, 0x2030, 0, '<=7.0', 'Intel Skylake-E'),
  wl(PCI_VENDOR_ID_INTEL, 0x2031, 0, '<=7.0', 'Intel Skylake-E'),
  wl(PCI_VENDOR_ID_INTEL, 0x2032, 0, '<=7.0', 'Intel Skylake-E'),
  wl(PCI_VENDOR_ID_INTEL, 0x2033, 0, '<=7.0', 'Intel Skylake-E'),
  wl(PCI_VENDOR_ID_INTEL, 0x2020, 0, '<=7.0', 'Intel Skylake-E'),
  wl(PCI_VENDOR_ID_INTEL, 0x09a2, 0, '<=7.0', 'Intel Ice Lake-SP (listed under Skylake-E)'),
  wl(PCI_VENDOR_ID_INTEL, 0x0b25, 0, '7.1.5', 'Intel DSA (Sapphire Rapids)'),
  wl(PCI_VENDOR_ID_INTEL, 0x0cfe, 0, '7.1.5', 'Intel IAX (Sapphire Rapids)'),
  wl(PCI_VENDOR_ID_INTEL, 0x11fb, 0, '7.1.5', 'Intel DSA (Granite Rapids-D)'),
  wl(PCI_VENDOR_ID_INTEL, 0x1212, 0, '7.1.5', 'Intel DSA (Diamond Rapids)'),
  wl(PCI_VENDOR_ID_INTEL, 0x1216, 0, '7.1.5', 'Intel IAA (Diamond Rapids)'),
  wl(PCI_VENDOR_ID_INTEL, 0x4940, 0, '7.1.5', 'Intel QAT 4xxx'),
  wl(PCI_VENDOR_ID_INTEL, 0x4942, 0, '7.1.5', 'Intel QAT 401xx'),
  wl(PCI_VENDOR_ID_INTEL, 0x4944, 0, '7.1.5', 'Intel QAT 402xx'),
  wl(PCI_VENDOR_ID_INTEL, 0x4946, 0, '7.1.5', 'Intel QAT 420xx'),
  wl(PCI_VENDOR_ID_INTEL, 0x4948, 0, '7.1.5', 'Intel QAT 6xxx'),
  wl(PCI_VENDOR_ID_GOOGLE, PCI_ANY_ID, 0, '7.1', 'Google SoCs (any device)'),
  wl(PCI_VENDOR_ID_NVIDIA, 0x2f95, 0, 'queued', 'NVIDIA CPU'),
  wl(PCI_VENDOR_ID_NVIDIA, 0x2f96, 0, 'queued', 'NVIDIA CPU'),
  wl(PCI_VENDOR_ID_NVIDIA, 0x2f97, 0, 'queued', 'NVIDIA CPU'),
  wl(PCI_VENDOR_ID_NVIDIA, 0x2f98, 0, 'queued', 'NVIDIA CPU'),
  wl(PCI_VENDOR_ID_ZHAOXIN, 0x1003, REQ_SAME_HOST_BRIDGE, 'queued', 'Zhaoxin KX-6000/KH-40000/KX-6000G/KX-7000/KH-50000'),
  wl(PCI_VENDOR_ID_ZHAOXIN, 0x1005, REQ_SAME_HOST_BRIDGE, 'queued', 'Zhaoxin KX-6000/KH-40000/KX-6000G/KX-7000/KH-50000'),
  wl(PCI_VENDOR_ID_ZHAOXIN, 0x1006, REQ_SAME_HOST_BRIDGE, 'queued', 'Zhaoxin KX-6000/KH-40000/KX-6000G/KX-7000/KH-50000'),
  wl(PCI_VENDOR_ID_ZHAOXIN, 0x1007, REQ_SAME_HOST_BRIDGE, 'queued', 'Zhaoxin KX-6000/KH-40000/KX-6000G/KX-7000/KH-50000'),
  wl(PCI_VENDOR_ID_ZHAOXIN, 0x1008, 0, 'queued', 'Zhaoxin KX-6000/KH-40000/KX-6000G/KX-7000/KH-50000'),
]);

const SOURCE = 'pci-p2pdma';
const U64_MASK = (1n << 64n) - 1n;

function note(topology: PciTopologyCore, message: string, data: Record<string, unknown>): void {
  topology.mm.events.record('INFO', SOURCE, message, { level: 'warning', ...data });
}

/**
 * The kernel has one PCI hierarchy; two functions of different machines have no path at all, and a
 * client of another machine could even hit a cache slot (same bus/devfn) of a local one.
 * @throws RangeError naming both functions when they belong to different topologies.
 */
function checkSameTopology(a: PciDev, b: PciDev, aWhat: string, bWhat: string): void {
  if (a.topology !== b.topology) {
    throw new RangeError(`${bWhat} ${b.name} must be a PCI function of the same machine as ${aWhat} ${a.name}`);
  }
}

/**
 * cpu_supports_p2pdma(): any AMD CPU of family 0x17 (Zen) or later routes P2P through its root
 * complex. Without a family, the machine's default for the vendor (cpuFamily) applies.
 */
export function cpuSupportsP2pdma(cpu: CpuConfig): boolean {
  return cpu.vendor === 'amd' && cpuFamily(cpu) >= 0x17;
}

function hostBridgeWhitelistOne(host: PciHostBridge, sameHostBridge: boolean, warn: boolean): boolean {
  const root = host.rootDev;
  for (const entry of PCI_P2PDMA_WHITELIST) {
    if (entry.vendor !== root.vendor) continue;
    if (entry.device !== PCI_ANY_ID && entry.device !== root.deviceId) continue;
    // A listed root complex that forwards only within itself cannot serve a cross-bridge pair.
    return !(entry.flags & REQ_SAME_HOST_BRIDGE) || sameHostBridge;
  }
  if (warn) {
    note(root.topology, `${root.pciName}: host bridge ${root.pciIds} is not in the P2PDMA whitelist`, {
      hostBridge: host.name, vendor: root.vendor, device: root.deviceId,
    });
  }
  return false;
}

/**
 * host_bridge_whitelist(a, b, warn): may P2P between two PCI functions go through their root
 * complex(es)? One host bridge: its root device must be listed. Two: both must be listed, and neither
 * entry may carry REQ_SAME_HOST_BRIDGE. With warn, an unlisted root device is reported.
 * @throws TypeError if a or b is not a PCI function; RangeError if they are on different machines.
 */
export function hostBridgeWhitelist(a: Device, b: Device, warn = false): boolean {
  const pa = toPciDev(a, 'a');
  const pb = toPciDev(b, 'b');
  checkSameTopology(pa, pb, 'a', 'b');
  const hostA = pa.hostBridge;
  const hostB = pb.hostBridge;
  if (hostA === hostB) return hostBridgeWhitelistOne(hostA, true, warn);
  return hostBridgeWhitelistOne(hostA, false, warn) && hostBridgeWhitelistOne(hostB, false, warn);
}

/** map_types_idx(): the cache index of a client, domain << 16 | bus << 8 | devfn. */
export function mapTypesIdx(client: PciDev): number {
  return client.domain * 0x10000 + client.devId;
}

/**
 * calc_map_type_and_dist(): walks up from the provider; for each bridge a on that walk, walks up
 * from the client looking for a. The first a found is the closest common upstream bridge and the
 * distance is the hops of both walks. ACS redirect is counted on the provider's walk up to and
 * including that bridge and on the client's walk below it; any count forces the host bridge route.
 * Without a common bridge the route is through the host bridge and the distance is the length of
 * both walks. A host-bridge route is NOT_SUPPORTED unless the CPU supports P2P or the host
 * bridge(s) are whitelisted. The result is stored in the provider's cache when it has P2PDMA state.
 * With verbose, the reasons are reported on the event log.
 * @throws TypeError if provider or client is not a PCI function; RangeError if they are on different machines.
 */
export function calcMapTypeAndDist(provider: Device, client: Device, verbose = false, store = true): { mapType: PciP2pdmaMapType; dist: number } {
  const pp = toPciDev(provider, 'provider');
  const pc = toPciDev(client, 'client');
  checkSameTopology(pp, pc, 'provider', 'client');
  const topology = pp.topology;
  const acsPorts: PciDev[] = [];
  let mapType: PciP2pdmaMapType = PCI_P2PDMA_MAP_THRU_HOST_BRIDGE;
  let acsRedirects = false;
  let distA = 0;
  let distB = 0;
  let common: PciDev | null = null;

  outer: for (let a: PciDev | null = pp; a; a = a.upstream, distA++) {
    distB = 0;
    if (a.acsRedirect) acsPorts.push(a);
    for (let bb: PciDev | null = pc; bb; bb = bb.upstream, distB++) {
      if (bb === a) {
        common = a;
        break outer;
      }
    }
  }
  const dist = distA + distB;

  let hostRoute = common === null;
  if (common) {
    for (let bb: PciDev | null = pc; bb && bb !== common; bb = bb.upstream) {
      if (bb.acsRedirect) acsPorts.push(bb);
    }
    if (acsPorts.length === 0) {
      mapType = PCI_P2PDMA_MAP_BUS_ADDR;
    } else {
      if (verbose) {
        const list = acsPorts.map((p) => p.pciName).join(';');
        note(topology, `${pc.pciName} (${pc.name}): ACS redirect on the path to provider ${pp.pciName} (${pp.name}) ` +
          `sends peer-to-peer traffic through the host bridge; pci=disable_acs_redir=${list} would allow a direct path`, {
          client: pc.name, provider: pp.name, acsPorts: acsPorts.map((p) => p.name), param: `pci=disable_acs_redir=${list}`,
        });
      }
      acsRedirects = true;
      hostRoute = true;
    }
  }
  if (hostRoute && !cpuSupportsP2pdma(topology.cpu) && !hostBridgeWhitelist(provider, client, acsRedirects)) {
    if (verbose) {
      note(topology, `${pc.pciName} (${pc.name}): no peer-to-peer DMA with provider ${pp.pciName} (${pp.name}): ` +
        'no common upstream bridge and no whitelisted host bridge', { client: pc.name, provider: pp.name });
    }
    mapType = PCI_P2PDMA_MAP_NOT_SUPPORTED;
  }
  if (store) pp.p2pdma?.mapTypes.set(mapTypesIdx(pc), mapType);
  return { mapType, dist };
}

/**
 * pcim_p2pdma_init(): sets up P2PDMA state for a PCI function with one provider per memory BAR
 * (owner, bus offset = bus address - CPU physical address), each with a new provider id that is
 * written to its region's providerId so ranges in the BAR carry it. Idempotent.
 * Errno: ENOMEM when the provider id space (24 bits of range flags) is exhausted; nothing is
 * left registered then.
 * @throws TypeError if dev is not a PCI function.
 */
export function pcimP2pdmaInit(dev: Device): Result<void> {
  const pdev = toPciDev(dev);
  if (pdev.p2pdma) return ok();
  const made = pdev.topology.registerProviders(
    pdev.bars.map((bar) => ({ owner: dev, busOffset: bar.busOffset, bar: bar.index, region: bar.region })));
  if (!made) return err('ENOMEM', `no provider ids left for the ${pdev.bars.length} BARs of ${dev.name}`);
  const mem = new Array<P2pdmaProvider | null>(PCI_STD_NUM_BARS).fill(null);
  for (const p of made) {
    mem[p.bar] = p;
    p.region.providerId = p.id;
  }
  pdev.p2pdma = { mem, mapTypes: new Map() };
  return ok();
}

/**
 * pcim_p2pdma_provider(): the provider of one BAR, or null when the BAR is not a memory BAR.
 * Without pcimP2pdmaInit first, WARNs and returns null.
 * @throws TypeError if dev is not a PCI function; RangeError if bar is not in [0, 5].
 */
export function pcimP2pdmaProvider(dev: Device, bar: number): P2pdmaProvider | null {
  const pdev = toPciDev(dev);
  checkLen('bar', bar, 0, PCI_STD_NUM_BARS - 1);
  if (!pdev.bars.some((b) => b.index === bar)) return null;
  if (!pdev.p2pdma) {
    pdev.topology.mm.events.warn(SOURCE, `pcim_p2pdma_provider(${dev.name}, ${bar}) before pcim_p2pdma_init`, { dev: dev.name, bar });
    return null;
  }
  return pdev.p2pdma.mem[bar];
}

function checkProvider(provider: P2pdmaProvider | null | undefined): P2pdmaProvider {
  if (!provider || typeof provider !== 'object' || typeof provider.busOffset !== 'bigint') {
    throw new TypeError(`provider must be a P2pdmaProvider, got ${String(provider)}`);
  }
  return provider;
}

/**
 * pci_p2pdma_map_type(): how the client reaches the provider's memory. NOT_SUPPORTED if the owner
 * has no P2PDMA state or the client is not PCI; otherwise the cached type for (owner, client), or
 * calcMapTypeAndDist(verbose) on a miss. Counts stats.p2pMapTypeLookups and p2pMapTypeCacheHits.
 * Model note: as in the kernel, the cache is per owning function (all its BARs share it).
 * @throws TypeError if provider is not a provider; RangeError if a PCI client is on another machine.
 */
export function pciP2pdmaMapType(provider: P2pdmaProvider, client: Device): PciP2pdmaMapType {
  const owner = toPciDev(checkProvider(provider).owner, 'provider.owner');
  const stats = owner.topology.mm.stats;
  stats.p2pMapTypeLookups++;
  if (!owner.p2pdma) return PCI_P2PDMA_MAP_NOT_SUPPORTED;
  if (!devIsPci(client)) return PCI_P2PDMA_MAP_NOT_SUPPORTED;
  const pc = toPciDev(client, 'client');
  checkSameTopology(owner, pc, 'provider owner', 'client');
  const cached = owner.p2pdma.mapTypes.get(mapTypesIdx(pc));
  if (cached !== undefined) {
    stats.p2pMapTypeCacheHits++;
    return cached as PciP2pdmaMapType;
  }
  return calcMapTypeAndDist(owner.device, client, true).mapType;
}

/**
 * pciP2pdmaMapType without its side effects, for traces and reports: the cached type, else the type
 * calcMapTypeAndDist works out, with nothing counted, cached or reported.
 * @throws TypeError if provider is not a provider; RangeError if a PCI client is on another machine.
 */
export function pciP2pdmaMapTypePeek(provider: P2pdmaProvider, client: Device): PciP2pdmaMapType {
  const owner = toPciDev(checkProvider(provider).owner, 'provider.owner');
  if (!owner.p2pdma || !devIsPci(client)) return PCI_P2PDMA_MAP_NOT_SUPPORTED;
  const pc = toPciDev(client, 'client');
  checkSameTopology(owner, pc, 'provider owner', 'client');
  const cached = owner.p2pdma.mapTypes.get(mapTypesIdx(pc));
  if (cached !== undefined) return cached as PciP2pdmaMapType;
  return calcMapTypeAndDist(owner.device, client, false, false).mapType;
}

/**
 * pci_p2pdma_distance_many(): the summed distance from the provider to every client, or -1 if
 * there are no clients, a client is not PCI, or any client is NOT_SUPPORTED. With verbose, every
 * client is evaluated (and reported); without, the walk stops at the first unsupported client.
 * @throws TypeError if provider is not a PCI function; RangeError if a PCI client is on another machine.
 */
export function pciP2pdmaDistanceMany(provider: Device, clients: readonly Device[], verbose = false): number {
  const pp = toPciDev(provider, 'provider');
  if (!Array.isArray(clients as unknown)) throw new TypeError(`clients must be an array of Device, got ${String(clients)}`);
  if (clients.length === 0) return -1;
  let notSupported = false;
  let total = 0;
  for (const c of clients) {
    if (!devIsPci(c)) {
      if (verbose) note(pp.topology, `${c?.name ?? String(c)}: cannot do peer-to-peer DMA: not a PCI device`, { client: c?.name });
      return -1;
    }
    const { mapType, dist } = calcMapTypeAndDist(provider, c, verbose);
    if (mapType === PCI_P2PDMA_MAP_NOT_SUPPORTED) notSupported = true;
    if (notSupported && !verbose) break;
    total += dist;
  }
  return notSupported ? -1 : total;
}

/** pci_p2pdma_distance(): pciP2pdmaDistanceMany with one client. */
export function pciP2pdmaDistance(provider: Device, client: Device, verbose = false): number {
  return pciP2pdmaDistanceMany(provider, [client], verbose);
}

/**
 * pci_p2pdma_bus_addr_map(): the PCI bus address of CPU physical address paddr in the provider's
 * BAR: paddr + busOffset, in u64 arithmetic (wraps like the kernel's).
 * @throws TypeError if provider is missing; TypeError/RangeError if paddr is not a 64-bit bigint.
 */
export function pciP2pdmaBusAddrMap(provider: P2pdmaProvider, paddr: bigint): bigint {
  checkProvider(provider);
  checkAddr('paddr', paddr);
  return (paddr + provider.busOffset) & U64_MASK;
}

/** struct pci_p2pdma_map_state: the last provider seen by a mapping loop and its map type for the client. */
export class PciP2pdmaMapState {
  mem: P2pdmaProvider | null = null;
  map: PciP2pdmaMapType = PCI_P2PDMA_MAP_UNKNOWN;
}

/**
 * The provider whose BAR holds memory with these range flags (phyr/flags.ts), or null when the
 * flags carry no provider.
 * @throws RangeError if rangeFlags is not a u32 or names a provider id the topology does not have.
 */
export function providerForRangeFlags(topology: PciTopologyCore, rangeFlags: number): P2pdmaProvider | null {
  checkLen('rangeFlags', rangeFlags, 0, 0xffffffff);
  const id = rangeProvider(rangeFlags);
  return id === 0 ? null : providerWithId(topology, rangeFlags, id, 'this PCI topology');
}

/** The provider of a non-zero provider id taken from rangeFlags. @throws RangeError if `whose` topology has none. */
function providerWithId(topology: PciTopologyCore, rangeFlags: number, id: number, whose: string): P2pdmaProvider {
  const p = topology.providerById(id);
  if (!p) throw new RangeError(`rangeFlags carries provider id ${id}, which ${whose} does not have (flags ${hex(rangeFlags)})`);
  return p;
}

/**
 * pci_p2pdma_state(): NONE for memory that is not a P2P provider's (no provider id in the flags);
 * otherwise the map type of the provider for dev, recomputed only when the provider changes from
 * the one cached in state. A client that is not PCI gets NOT_SUPPORTED.
 * Model deviation: for a non-PCI client the provider cannot be looked up (ids are per topology),
 * so state.mem is set to null with map NOT_SUPPORTED.
 * @throws RangeError if rangeFlags is not a u32 or names an unknown provider.
 */
export function pciP2pdmaState(state: PciP2pdmaMapState, dev: Device, rangeFlags: number): PciP2pdmaMapType {
  if ((rangeFlags >>> 0) !== rangeFlags) checkLen('rangeFlags', rangeFlags, 0, 0xffffffff);
  const id = rangeProvider(rangeFlags);
  if (id === 0) return PCI_P2PDMA_MAP_NONE;
  if (!devIsPci(dev)) {
    state.mem = null;
    state.map = PCI_P2PDMA_MAP_NOT_SUPPORTED;
    return state.map;
  }
  const provider = providerWithId((dev.pci as PciDev).topology, rangeFlags, id, `the PCI topology of ${dev.name}`);
  if (provider !== state.mem) {
    state.mem = provider;
    state.map = pciP2pdmaMapType(provider, dev);
  }
  return state.map;
}

/** BAR `bar` of a PCI function. @throws TypeError if dev is not PCI; RangeError if it has no such BAR. */
function barOf(dev: Device, bar: number): PciBar {
  const b = toPciDev(dev).bars.find((x) => x.index === bar);
  if (!b) throw new RangeError(`bar must be a BAR of ${dev.name}, got ${bar}`);
  return b;
}

/** pci_resource_start(): CPU physical address of a BAR. @throws RangeError if the BAR does not exist. */
export function pciResourceStart(dev: Device, bar: number): bigint {
  return barOf(dev, bar).region.start;
}

/** pci_bus_address(): bus address of a BAR (CPU physical + bus offset). @throws RangeError if the BAR does not exist. */
export function pciBusAddress(dev: Device, bar: number): bigint {
  const b = barOf(dev, bar);
  return (b.region.start + b.busOffset) & U64_MASK;
}
