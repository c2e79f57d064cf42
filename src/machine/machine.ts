// The top-level simulated machine: memory (src/mm) + PCI topology (src/pci) + IOMMU (src/iommu) +
// swiotlb and dma-debug (src/dma), wired together as a booted x86-64 kernel would have them: BARs
// become device-memory regions, every endpoint is probed by the IOMMU (its default domain), gets its
// DMA context, its dma_skip_sync setup and a DMA engine that moves bytes through its real path.

import { Stats, checkFaultSpecs, eventKinds, setFaults, type FaultSpec } from '../base/index.ts';
import { MmMachine, type MmConfig } from '../mm/index.ts';
import { LOW_RESERVED_END, resolveMmConfig } from '../mm/internal.ts';
import { Device, deviceReleaseDriver } from '../pci/index.ts';
import {
  buildPciTopology, pciDeviceMemoryFromConfig, type CpuConfig, type PciNodeConfig, type PciTopology,
} from '../pci/internal.ts';
import { createIommu, type Iommu, type IommuConfig } from '../iommu/index.ts';
import { checkIommuPageSize } from '../iommu/internal.ts';
import {
  checkDmaOpsConfig, createDmaOps, installDmaOps, type DmaMapOps, type DmaOpsConfig, type DmaOpsMachineFacts,
  createSwiotlb, dmaDebugCheckLeaks, dmaDebugCpuWriteHook, DmaDebug, dmaSetupNeedSync, registerDmaDevice, swiotlbDevInit, swiotlbMemblockInit,
  type DmaContext, type Swiotlb, type SwiotlbBootPool, type SwiotlbConfig,
  ccInstall, checkCcConfig, setMemoryDecrypted, type CcConfig,
} from '../dma/internal.ts';
import { installDeviceDmaAccess } from '../dma/internal.ts';
import { attachNvmeController } from '../drivers/index.ts';

/**
 * dma-debug's boot parameters and debugfs settings (kernel/dma/debug.c). Reports always count in
 * `machine.dmaDebug.errorCount` (error_count); these decide which become DMA-DEBUG events.
 */
export interface DmaDebugConfig {
  /** CONFIG_DMA_API_DEBUG: false for a production kernel (no dma-debug at all). Default true. */
  readonly enabled?: boolean;
  /** dma-api/all_errors: record every error. Default false: the first `numErrors` only, as the kernel prints. */
  readonly allErrors?: boolean;
  /** dma-api/num_errors: errors recorded while allErrors is off. Default 1. */
  readonly numErrors?: number;
  /**
   * dma_debug_driver=: record only the errors of devices bound to the driver of this name ('' =
   * all), e.g. 'nvme' (nvmeProbe), 'mlx5_core' (rdmaProbe), 'amdgpu' (gpuProbe); not a device name.
   * A device no driver is bound to never passes the filter (driver_filter() in kernel/dma/debug.c).
   */
  readonly driverFilter?: string;
}

/** Architecture facts the DMA layer reads. Defaults: x86-64. */
export interface ArchConfig {
  /**
   * dma_get_cache_alignment(): 1 on x86-64 (no ARCH_DMA_MINALIGN); arm64's cache_line_size(),
   * typically 64 (128 without CTR_EL0.CWG). dma-debug reports overlapping mappings of one cacheline
   * only where it is >= L1_CACHE_BYTES (64). A power of two up to 4096.
   */
  readonly dmaCacheAlignment?: number;
  /**
   * CONFIG_DMA_BOUNCE_UNALIGNED_KMALLOC (arm64 selects it): small kmalloc buffers are bounced, so
   * dma-debug does not report cacheline overlaps while the device's swiotlb is active. Default false.
   */
  readonly bounceUnalignedKmalloc?: boolean;
}

/** Everything createMachine accepts: the mm layer's MmConfig plus the CPU, PCI, IOMMU and swiotlb. */
export interface MachineConfig extends MmConfig {
  /** CPU vendor (and AMD family), for P2PDMA host-bridge decisions. Default { vendor: 'intel' }. */
  readonly cpu?: CpuConfig;
  /** The PCI tree (src/pci PciNodeConfig). Omitted: an mm-only machine with no devices. */
  readonly pci?: readonly PciNodeConfig[];
  /** An IOMMU with this page-table format and default-domain mode. Omitted: no IOMMU (dma-direct). */
  readonly iommu?: IommuConfig;
  /**
   * The swiotlb bounce pool (64 MiB unless `bytes` says otherwise, not forced), or false for none.
   * Omitted, there is a pool only where an x86-64 boot sets one up: RAM above 4 GiB, a
   * confidential-computing guest, Xen swiotlb dma_map_ops; not with machine-wide GART ops. Given,
   * the pool exists whatever the RAM (as `iommu=soft` plus `swiotlb=` would have it).
   */
  readonly swiotlb?: SwiotlbConfig | false;
  /** dma-debug's settings (default: on, first error recorded, no driver filter). */
  readonly dmaDebug?: DmaDebugConfig;
  /** Architecture facts (default: x86-64). */
  readonly arch?: ArchConfig;
  /**
   * The dma_map_ops family every PCI device gets on a machine without an IOMMU (a PCI endpoint's own
   * `dmaOps` overrides it): GART, PowerPC TCE (with a dynamic DMA window), Xen swiotlb, Xen grants,
   * or the dummy ops. Omitted: dma-direct.
   */
  readonly dmaOps?: DmaOpsConfig;
  /**
   * A confidential-computing guest (Intel TDX or AMD SEV-SNP): RAM is private (devices read
   * ciphertext) until set_memory_decrypted shares it, every device must DMA unencrypted, swiotlb
   * force-bounces (arch/x86/kernel/pci-dma.c: pci_swiotlb_detect() sets SWIOTLB_FORCE) through a
   * decrypted pool. Omitted: an ordinary machine.
   */
  readonly cc?: CcConfig;
  /**
   * Fault injection at the model's allocation points (base/faults.ts FAULT_POINTS): each spec fails
   * the nth call of a point (`{ point, nth }`) or each call with probability p (`{ point,
   * probability, seed }`). Calls are counted from the end of boot. Omitted: nothing fails on purpose.
   */
  readonly faults?: readonly FaultSpec[];
}

const MACHINE_KEYS = new Set([
  'ramBytes', 'pageSize', 'physAddrBits', 'hugetlb', 'deviceMemory', 'pmem', 'aged', 'seed', 'pciHoleStart',
  'cpu', 'pci', 'iommu', 'swiotlb', 'dmaDebug', 'arch', 'dmaOps', 'cc', 'faults',
]);
const DMA_DEBUG_KEYS = ['enabled', 'allErrors', 'numErrors', 'driverFilter'];
const ARCH_KEYS = ['dmaCacheAlignment', 'bounceUnalignedKmalloc'];

/** Checks that `value` is an object with only `keys` (named as config.<field>). */
function checkObject(field: string, value: unknown, keys: readonly string[]): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new TypeError(`config.${field} must be an object, got ${value === null ? 'null' : typeof value}`);
  }
  for (const k of Object.keys(value)) {
    if (!keys.includes(k)) throw new RangeError(`config.${field}.${k} is not an option (known: ${keys.join(', ')})`);
  }
  return value as Record<string, unknown>;
}

function checkBool(field: string, v: unknown): void {
  if (v !== undefined && typeof v !== 'boolean') throw new TypeError(`config.${field} must be a boolean, got ${typeof v}`);
}

function checkDmaDebugConfig(v: unknown): void {
  const c = checkObject('dmaDebug', v, DMA_DEBUG_KEYS);
  checkBool('dmaDebug.enabled', c.enabled);
  checkBool('dmaDebug.allErrors', c.allErrors);
  if (c.numErrors !== undefined && (typeof c.numErrors !== 'number' || !Number.isInteger(c.numErrors) || c.numErrors < 0 || c.numErrors > 0xffffffff)) {
    throw new RangeError(`config.dmaDebug.numErrors must be an integer in [0, 2^32 - 1], got ${String(c.numErrors)}`);
  }
  if (c.driverFilter !== undefined && typeof c.driverFilter !== 'string') {
    throw new TypeError(`config.dmaDebug.driverFilter must be a string (a driver name, e.g. 'nvme'), got ${typeof c.driverFilter}`);
  }
}

function checkArchConfig(v: unknown): void {
  const c = checkObject('arch', v, ARCH_KEYS);
  const a = c.dmaCacheAlignment;
  if (a !== undefined && (typeof a !== 'number' || !Number.isInteger(a) || a < 1 || a > 4096 || (a & (a - 1)) !== 0)) {
    throw new RangeError(`config.arch.dmaCacheAlignment must be a power of two in [1, 4096], got ${String(a)}`);
  }
  checkBool('arch.bounceUnalignedKmalloc', c.bounceUnalignedKmalloc);
}

function mmPart(config: MachineConfig, bars: Array<{ name: string; bytes: number; pgmap: boolean }>): MmConfig {
  const out: Record<string, unknown> = {};
  for (const k of ['ramBytes', 'pageSize', 'physAddrBits', 'hugetlb', 'pmem', 'aged', 'seed', 'pciHoleStart'] as const) {
    if (config[k] !== undefined) out[k] = config[k];
  }
  const dm = [...(config.deviceMemory ?? []), ...bars];
  if (dm.length > 0 || config.deviceMemory !== undefined) out.deviceMemory = dm;
  return out as unknown as MmConfig;
}

/**
 * Whether an x86-64 boot sets up the default swiotlb pool when the configuration does not ask for
 * one (arch/x86/kernel/pci-dma.c): pci_swiotlb_detect() enables it only when RAM reaches above
 * 4 GiB (max_possible_pfn > MAX_DMA32_PFN; a CC guest is handled by the caller), and
 * gart_iommu_init() (amd_gart_64.c) turns it off again when the GART serves every device, so that
 * pci_iommu_init() frees it (swiotlb_exit). A Xen PV domain's pci_xen_swiotlb_init() always has one
 * for xen_swiotlb_dma_ops.
 */
function x86SwiotlbEnable(cfg: MachineConfig, bars: Array<{ name: string; bytes: number; pgmap: boolean }>): boolean {
  const kinds = [cfg.dmaOps?.kind, ...(cfg.pci ?? []).map((n) => (n.type === 'endpoint' ? n.dmaOps?.kind : undefined))];
  if (kinds.includes('xen-swiotlb')) return true;
  if (cfg.dmaOps?.kind === 'gart') return false;
  const mm = resolveMmConfig(mmPart(cfg, bars));
  // RAM beyond what fits below the PCI hole continues at 4 GiB (mm/layout.ts layoutRegions)
  return mm.ramBytes > mm.pciHoleStart - LOW_RESERVED_END;
}

function checkConfig(config: unknown): MachineConfig {
  if (typeof config !== 'object' || config === null) {
    throw new TypeError(`config must be an object, got ${config === null ? 'null' : typeof config}`);
  }
  for (const k of Object.keys(config)) {
    if (!MACHINE_KEYS.has(k)) throw new RangeError(`config.${k} is not a machine option (known: ${[...MACHINE_KEYS].join(', ')})`);
  }
  const c = config as MachineConfig;
  if (c.pci !== undefined && !Array.isArray(c.pci)) throw new TypeError(`config.pci must be an array of PCI nodes, got ${typeof c.pci}`);
  if (c.swiotlb !== undefined && c.swiotlb !== false && (typeof c.swiotlb !== 'object' || c.swiotlb === null)) {
    throw new TypeError(`config.swiotlb must be { bytes?, force? } or false, got ${String(c.swiotlb)}`);
  }
  // 16 and 64 KiB pages: only ARM LPAE has page tables of that granule (the IOMMU checks the rest)
  if ((c.pageSize === 16384 || c.pageSize === 65536) && typeof c.iommu === 'object' && c.iommu !== null) {
    checkIommuPageSize('config.iommu', c.iommu, c.pageSize);
  }
  if (c.faults !== undefined) checkFaultSpecs('config.faults', c.faults);
  if (c.dmaDebug !== undefined) checkDmaDebugConfig(c.dmaDebug);
  if (c.arch !== undefined) checkArchConfig(c.arch);
  if (c.cc !== undefined) {
    checkCcConfig(c.cc);
    if (c.swiotlb === false) throw new RangeError('config.swiotlb must not be false with config.cc (a confidential-computing guest bounces every DMA through swiotlb)');
  }
  return c;
}

/** One bus-address window of a host bridge: [start, end) holds the bus addresses of BARs below it. */
export interface HostBridgeWindow {
  readonly hostBridge: string;
  readonly start: bigint;
  readonly end: bigint;
}

/**
 * The memory windows of every host bridge, as bus addresses (CPU physical + the BAR's busOffset):
 * the BARs of the functions below each bridge, with overlapping or touching ones merged, ascending
 * per bridge. These are what drivers/iommu/dma-iommu.c: iova_reserve_pci_windows() keeps out of every
 * DMA cookie.
 * Model deviation: a real host bridge's windows are its firmware-assigned apertures; here they are
 * the smallest ranges covering the configured BARs.
 */
export function pciHostBridgeWindows(topology: PciTopology): HostBridgeWindow[] {
  const out: HostBridgeWindow[] = [];
  for (const hb of topology.hostBridges) {
    const spans: Array<[bigint, bigint]> = [];
    for (const p of topology.pciDevs()) {
      if (p.hostBridge !== hb) continue;
      for (const b of p.bars) spans.push([b.region.start + b.busOffset, b.region.end + b.busOffset]);
    }
    spans.sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
    let cur: [bigint, bigint] | null = null;
    for (const sp of spans) {
      if (cur !== null && sp[0] <= cur[1]) {
        if (sp[1] > cur[1]) cur[1] = sp[1];
        continue;
      }
      if (cur !== null) out.push({ hostBridge: hb.name, start: cur[0], end: cur[1] });
      cur = [sp[0], sp[1]];
    }
    if (cur !== null) out.push({ hostBridge: hb.name, start: cur[0], end: cur[1] });
  }
  return out;
}

/** A booted machine: memory, PCI devices, IOMMU, swiotlb and dma-debug. */
export class Machine extends MmMachine {
  /** The PCI tree, or null without `pci` config. */
  readonly topology: PciTopology | null;
  /** The IOMMU, or null without `iommu` config. */
  readonly iommu: Iommu | null;
  /** The swiotlb pool, or null (disabled, or RAM could not hold it). */
  readonly swiotlb: Swiotlb | null;
  /** dma-debug's view of every live mapping (the same object as dma.debug). */
  readonly dmaDebug: DmaDebug;
  /** The DMA context every device of this machine shares. */
  readonly dma: DmaContext;
  private readonly extraDevices: Device[] = [];
  /** The machine-wide dma_map_ops instance (config.dmaOps), or null. */
  readonly dmaOps: DmaMapOps | null = null;
  /** Per-endpoint dma_map_ops instances (pci[].dmaOps), by endpoint name. */
  private readonly endpointDmaOps = new Map<string, DmaMapOps>();
  /** Per-endpoint dev_is_dma_coherent() from pci[].coherent, by endpoint name. */
  private readonly endpointCoherent = new Map<string, boolean>();

  /** The name of every counter a machine's stats carry (each layer declares its own, declareCounters). */
  static counterNames(): string[] {
    return Stats.layers().flatMap((l) => l.names);
  }

  /** Every kind of event a machine's log may record (each layer declares its own, declareEventKinds). */
  static eventKinds(): readonly string[] {
    return eventKinds();
  }

  /** Builds the machine. @throws TypeError/RangeError naming the bad config field. */
  constructor(config: MachineConfig) {
    const cfg = checkConfig(config);
    // an invalid page size is reported by the memory layout's checks; the BARs are checked against a valid one
    const barPageSize = cfg.pageSize === 16384 || cfg.pageSize === 65536 ? cfg.pageSize : 4096;
    const bars = cfg.pci && cfg.pci.length > 0 ? pciDeviceMemoryFromConfig(cfg.pci, barPageSize) : [];
    // swiotlb's default pool comes from memblock, before the page allocator has the rest of RAM
    const swiotlbCfg = cfg.swiotlb === false ? null
      : cfg.cc !== undefined ? { ...cfg.swiotlb, force: true }
        : cfg.swiotlb ?? (x86SwiotlbEnable(cfg, bars) ? {} : null);
    const boot: { pool: SwiotlbBootPool | null } = { pool: null };
    super(mmPart(cfg, bars), swiotlbCfg === null ? undefined : (mb) => { boot.pool = swiotlbMemblockInit(mb, swiotlbCfg); });
    this.topology = cfg.pci && cfg.pci.length > 0 ? buildPciTopology(this, cfg.pci, cfg.cpu ?? { vendor: 'intel' }) : null;
    this.iommu = cfg.iommu ? createIommu(this, cfg.iommu) : null;
    // drivers/iommu/dma-iommu.c: iommu_dma_init_domain() -> iova_reserve_pci_windows(): a DMA
    // address equal to a BAR's bus address would be claimed by the BAR, so no IOVA is ever handed
    // out there; reserved before any device is probed, so every DMA cookie starts with them.
    if (this.iommu && this.topology) {
      for (const w of pciHostBridgeWindows(this.topology)) this.iommu.reserveRegion(w.start, w.end, 'bridge-window');
    }
    this.swiotlb = swiotlbCfg === null || boot.pool === null ? null : createSwiotlb(this, boot.pool, swiotlbCfg);
    if (cfg.cc !== undefined) {
      ccInstall(this, cfg.cc);
      // swiotlb_update_mem_attributes(): the bounce pool is shared with the host
      if (this.swiotlb && !cfg.cc.encryptedSwiotlb) {
        const r = setMemoryDecrypted(this, this.swiotlb.start, Math.ceil(this.swiotlb.bytes / this.pageSize));
        if (r.ok) this.swiotlb.decrypted = true;
      }
    }
    this.dmaDebug = new DmaDebug(this, { ...cfg.dmaDebug, ...cfg.arch });
    // the model's check of every CPU store to physical memory (mem.write/fill/copy, writeUser): a
    // store into a buffer the device owns while bounced or non-coherent is a MODEL-CHECK event
    this.mem.onCpuWrite = dmaDebugCpuWriteHook(this.dmaDebug);
    this.dma = { mm: this, iommu: this.iommu, topology: this.topology };
    this.setupDmaOps(cfg);
    for (const n of cfg.pci ?? []) if (n.type === 'endpoint' && n.coherent !== undefined) this.endpointCoherent.set(n.name, n.coherent);
    for (const dev of this.topology?.devices() ?? []) this.attach(dev);
    // device models: an endpoint with an `nvme` field is an NVMe controller (function 0)
    for (const node of cfg.pci ?? []) {
      if (node.type === 'endpoint' && node.nvme !== undefined) attachNvmeController(this.device(node.name), node.nvme, node.vendor ?? 0);
    }
    // armed once the machine is built: boot's own allocations never fail on purpose
    if (cfg.faults !== undefined) setFaults(this, cfg.faults);
  }

  /** Checks the dmaOps configs (errors name the field path) and builds their tables in RAM. */
  private setupDmaOps(cfg: MachineConfig): void {
    const facts: DmaOpsMachineFacts = {
      pageSize: this.pageSize,
      regions: this.regions,
      swiotlb: this.swiotlb ? { start: this.swiotlb.start, end: this.swiotlb.end } : null,
    };
    const nodes = cfg.pci ?? [];
    const any = cfg.dmaOps !== undefined || nodes.some((n) => n.dmaOps !== undefined);
    if (any && this.iommu) {
      const where = cfg.dmaOps !== undefined ? 'config.dmaOps' : `pci[${nodes.findIndex((n) => n.dmaOps !== undefined)}].dmaOps`;
      throw new RangeError(`${where} needs a machine without an IOMMU (dma_map_ops serve devices with no IOMMU domain), got config.iommu too`);
    }
    if (cfg.dmaOps !== undefined) {
      (this as { dmaOps: DmaMapOps | null }).dmaOps = createDmaOps(this, checkDmaOpsConfig('config.dmaOps', cfg.dmaOps, facts));
    }
    nodes.forEach((n, i) => {
      if (n.dmaOps === undefined) return;
      const where = `pci[${i}] (${n.name}).dmaOps`;
      if (n.type !== 'endpoint') throw new RangeError(`${where} is a field of endpoints only, got a ${n.type}`);
      this.endpointDmaOps.set(n.name, createDmaOps(this, checkDmaOpsConfig(where, n.dmaOps, facts)));
    });
  }

  /** The dma_map_ops a PCI function gets: its endpoint's, else the machine's. */
  private dmaOpsFor(dev: Device): DmaMapOps | null {
    const endpoint = dev.name.includes('.') ? dev.name.slice(0, dev.name.lastIndexOf('.')) : dev.name;
    return this.endpointDmaOps.get(endpoint) ?? this.endpointDmaOps.get(dev.name) ?? this.dmaOps;
  }

  private attach(dev: Device): void {
    registerDmaDevice(dev, this.dma);
    if (this.swiotlb) swiotlbDevInit(dev, this.swiotlb);
    if (this.iommu) this.iommu.probeDevice(dev);
    const ops = this.iommu ? null : this.dmaOpsFor(dev);
    if (ops) installDmaOps(dev, ops);
    const coherent = this.endpointCoherent.get(dev.name.includes('.') ? dev.name.slice(0, dev.name.lastIndexOf('.')) : dev.name);
    if (coherent !== undefined) dev.dmaCoherent = coherent;
    // Model deviation: dma_setup_need_sync as the driver's first dma_set_mask would run it; the
    // kernel leaves dev->dma_skip_sync false until then
    dmaSetupNeedSync(dev);
    installDeviceDmaAccess(dev);
  }

  /**
   * Adds a device that is not on the PCI tree (a platform device, e.g. with a dma_range_map): it
   * joins this machine's DMA context, is probed by the IOMMU if there is one, and gets a DMA engine.
   */
  addDevice(dev: Device): Device {
    if (!(dev instanceof Device)) throw new TypeError(`dev must be a Device, got ${String(dev)}`);
    if (this.extraDevices.some((d) => d.name === dev.name) || this.topology?.devices().some((d) => d.name === dev.name)) {
      throw new RangeError(`dev.name must be unique on this machine, got ${JSON.stringify(dev.name)}`);
    }
    this.extraDevices.push(dev);
    this.attach(dev);
    return dev;
  }

  /** The device with this name. @throws RangeError for an unknown name (always, on a machine without devices). */
  device(name: string): Device {
    const extra = this.extraDevices.find((d) => d.name === name);
    if (extra) return extra;
    if (!this.topology) throw new RangeError(`name must be a device of this machine, got ${JSON.stringify(name)} (the machine has no pci config)`);
    return this.topology.device(name);
  }

  /** Every device that does DMA (PCI endpoint functions, then added devices). */
  devices(): Device[] {
    return [...(this.topology?.devices() ?? []), ...this.extraDevices];
  }

  /**
   * Driver unbind for every device: the driver is released (dev->driver cleared), then dma-debug
   * reports each device's mappings still live as a leak (one DMA-DEBUG report per device, naming
   * the device by its bus as the kernel's unbind notifier does; a debug kernel's dma_need_unmap()
   * is true, so every mapping counts), and the model reports IOVA links still linked
   * (MODEL-CHECK). Returns the number of leaked mappings and links (0 for correct use).
   */
  teardown(): number {
    let leaks = 0;
    for (const dev of this.devices()) {
      // __device_release_driver() (drivers/base/dd.c): dev->driver is NULL by the time
      // BUS_NOTIFY_UNBOUND_DRIVER reaches dma_debug_device_change()
      deviceReleaseDriver(dev);
      leaks += dmaDebugCheckLeaks(dev);
    }
    return leaks;
  }
}

/** Builds a machine (see MachineConfig). Same config and seed: same machine, byte for byte. */
export function createMachine(config: MachineConfig): Machine {
  return new Machine(config);
}
