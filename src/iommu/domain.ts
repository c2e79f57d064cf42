// Models: drivers/iommu/iommu.c, drivers/iommu/dma-iommu.c, include/linux/iommu.h (Linux 7.1):
// struct iommu_domain and the default-domain policy (iommu_get_def_domain_type,
// iommu_setup_default_domain, iommu_attach_device), the DMA cookie (iommu_dma_init_domain: granule,
// base_pfn >= 1, reserved regions, flush queue for DMA_FQ), and struct iommu_iotlb_gather.
// Model deviation: every device is its own IOMMU group, so probeDevice builds one default domain
// per device; reserved regions are machine-wide and apply to every DMA cookie.

import { SlotKey, checkAddr, checkOneOf } from '../base/internal.ts';
import type { MachineMm } from '../mm/index.ts';
import type { Device } from '../pci/index.ts';
import { Arm32IommuMapping, checkArm32MappingConfig, type Arm32MappingConfig } from './arm32-mapping.ts';
import { FlushQueue, IOVA_DEFAULT_FQ_SIZE, IOVA_DEFAULT_FQ_TIMEOUT, IOVA_SINGLE_FQ_SIZE, IOVA_SINGLE_FQ_TIMEOUT } from './flush-queue.ts';
import { amdV1Format, armLpaeFormat, vtdSsFormat, x86_64Format, type ArmLpaeGranule, type PtFormat } from './formats.ts';
import { safeBigToNum } from './addr-num.ts';
import { Iotlb } from './iotlb.ts';
import { IovaDomain } from './iova.ts';
import { PageTable } from './pagetable.ts';
import { ArmLpaePageTable } from './pagetable-arm.ts';
import './counters.ts';

/** IOMMU_DOMAIN_BLOCKED / IDENTITY / DMA / DMA_FQ / UNMANAGED. */
export type IommuDomainType = 'blocked' | 'identity' | 'dma' | 'dma-fq' | 'unmanaged';
const DOMAIN_TYPES: readonly IommuDomainType[] = ['blocked', 'identity', 'dma', 'dma-fq', 'unmanaged'];

/**
 * Kinds of reserved IOVA region (enum iommu_resv_type, as far as the model needs them): 'msi'
 * IOMMU_RESV_MSI, 'sw-msi' IOMMU_RESV_SW_MSI (the window dma-iommu maps MSI doorbells into itself,
 * so a DMA cookie does not reserve it), 'reserved' IOMMU_RESV_RESERVED, 'rmrr' IOMMU_RESV_DIRECT,
 * 'bridge-window' a PCI host bridge window (iova_reserve_pci_windows).
 */
export type ReservedRegionKind = 'msi' | 'sw-msi' | 'reserved' | 'bridge-window' | 'rmrr';
const RESERVED_REGION_KINDS: readonly ReservedRegionKind[] = ['msi', 'sw-msi', 'reserved', 'bridge-window', 'rmrr'];

/** drivers/iommu/amd/iommu.c: HT_RANGE_START / HT_RANGE_END, the HyperTransport hole (end exclusive here). */
const AMD_HT_RANGE_START = 0xfd00000000n;
const AMD_HT_RANGE_END = 0x10000000000n;

/** One reserved IOVA region, [start, end). */
export interface ReservedRegion {
  readonly start: bigint;
  readonly end: bigint;
  readonly kind: ReservedRegionKind;
}

/** How the machine's IOMMU is built. */
export interface IommuConfig {
  /** Page-table format of paging domains. */
  format: 'x86-64' | 'vtd-ss' | 'amd-v1' | 'arm-lpae';
  /**
   * x86-64, vtd-ss and amd-v1: 4 (48-bit VA, default) or 5 (57-bit VA) levels; vtd-ss also 3
   * (39-bit VA, QEMU's intel-iommu default aw-bits=39). arm-lpae: what its granule gives a 48-bit
   * VA, 4 (4 and 16 KiB) or 3 (64 KiB), the only value accepted.
   */
  levels?: 3 | 4 | 5;
  /** iommu.strict=1 -> 'strict' (DMA), iommu.strict=0 -> 'lazy' (DMA_FQ), iommu.passthrough=1 -> 'passthrough'. */
  mode: 'strict' | 'lazy' | 'passthrough';
  /**
   * CONFIG_HZ: the flush-queue timer and the IOVA depot work's timer are kernel timers, so they
   * expire on ticks of 1000 / hz ms (in the timer wheel's bucket after msecs_to_jiffies of their
   * delay). Omitted: exact millisecond timers.
   */
  hz?: number;
  /** IOTLB entries per domain (default 4096). */
  iotlbCapacity?: number;
  /** IOVA range caches on (default true; off only to measure them). */
  rcaches?: boolean;
  /** Flush-queue flavour: 'percpu' (256 entries, 10 ms; default) or 'single' (32768, 1000 ms: shadow_on_flush drivers). */
  fqMode?: 'percpu' | 'single';
  /**
   * Report the architecture's MSI window as a reserved region (default true): x86 0xfee00000..0xfeefffff
   * (IOMMU_RESV_MSI, reserved in every DMA cookie), ARM 0x8000000..0x80fffff (IOMMU_RESV_SW_MSI,
   * MSI_IOVA_BASE/LENGTH: kept out of iommufd's IOAS, but not reserved in DMA cookies, where
   * dma-iommu.c: iova_reserve_iommu_regions() skips it).
   */
  reserveMsiWindow?: boolean;
  /**
   * amd-v1 only: the IOMMU reports FEATURE_HT_RANGE_IGNORE in EFR2 (default false, as on hardware
   * without it and on QEMU's amd-iommu). Without it amd_iommu_get_resv_regions() reports the
   * HyperTransport hole 0xfd_0000_0000..0xff_ffff_ffff as IOMMU_RESV_RESERVED, so every DMA cookie
   * reserves it (drivers/iommu/amd/iommu.c, amd_iommu_ht_range_ignore() in amd/init.c).
   */
  htRangeIgnore?: boolean;
  /**
   * ARM32 `iommu_ops` (arch/arm/mm/dma-mapping.c): every DMA domain allocates IOVA from the bitmaps
   * of arm_iommu_create_mapping(dev, base, size) instead of the IOVA rbtree; needs mode 'strict'
   * (ARM32 unmaps synchronously, there is no flush queue).
   */
  arm32Mapping?: Arm32MappingConfig;
}

/** struct iommu_domain_geometry. */
export interface IommuDomainGeometry {
  readonly apertureStart: bigint;
  readonly apertureEnd: bigint;
  readonly forceAperture: boolean;
}

/**
 * struct iommu_iotlb_gather: the IOVA range [start, end] (end inclusive) and leaf size an unmap has
 * touched, table pages unlinked on the way (released after the flush), and `queued` when the
 * flush is left to the flush queue. new IommuIotlbGather() is iommu_iotlb_gather_init.
 */
export class IommuIotlbGather {
  start: bigint = GATHER_EMPTY_START;
  end = 0n;
  pgsize = 0;
  queued = false;
  /** Frame numbers of unlinked table pages waiting for the IOTLB flush. */
  freelist: number[] = [];

  /** Back to the iommu_iotlb_gather_init state (queued is kept: see iommuIotlbSync). */
  reset(): void {
    this.start = GATHER_EMPTY_START;
    this.end = 0n;
    this.pgsize = 0;
    if (this.freelist.length !== 0) this.freelist = [];
  }
}

/** ULONG_MAX: the start of an empty gather (one constant, not a bigint computed per gather). */
const GATHER_EMPTY_START = (1n << 64n) - 1n;

/** The slots on each device for the domain it is attached to and its group's default domain. */
const DEVICE_DOMAIN = new SlotKey<IommuDomain>('iommu-domain');
const DEVICE_DEFAULT_DOMAIN = new SlotKey<IommuDomain>('iommu-default-domain');

/**
 * One IOMMU domain. Paging types ('dma', 'dma-fq', 'unmanaged') own a page table in machine RAM
 * and an IOTLB; DMA types also own an IOVA allocator (the DMA cookie); 'dma-fq' a flush queue.
 */
export class IommuDomain {
  readonly type: IommuDomainType;
  readonly iommu: Iommu;
  /** Bit k set: a 2^k-byte leaf is supported (0n for blocked/identity). */
  readonly pgsizeBitmap: bigint;
  readonly geometry: IommuDomainGeometry;
  /**
   * Smallest page size in bytes, the IOVA granule (iommu_dma_init_domain(): 1 << __ffs(pgsize_bitmap)):
   * 4 KiB, or an ARM LPAE domain's 16 / 64 KiB on a machine with those pages.
   */
  readonly granule: number;
  /** log2(granule): iova_shift(). */
  readonly granuleShift: number;
  /** The DMA cookie's IOVA allocator ('dma' and 'dma-fq' only). */
  readonly iovad: IovaDomain | null;
  /** ARM32 iommu_ops: the dma_iommu_mapping whose bitmaps hand out this domain's IOVA (config.arm32Mapping), or null. */
  readonly arm32: Arm32IommuMapping | null;
  /** The page table (paging domains only). */
  readonly pt: PageTable | null;
  readonly format: PtFormat | null;
  readonly iotlb: Iotlb;
  /** The flush queue ('dma-fq' only). */
  readonly fq: FlushQueue | null;
  /** Leaf sizes as log2 of 4 KiB frames, ascending (hot-path form of pgsizeBitmap; [4, 17] for 64 KiB | 512 MiB). */
  readonly leafLg2s: readonly number[];
  /**
   * The most 4 KiB granules iommu_pgsize maps as one batch of 4 KiB leaves wherever they start and
   * end (one less than the next leaf size, at most 511: one table's worth): the short runs
   * iommuMapPfns may write in one step. 0 without a 4 KiB leaf size (a 16 or 64 KiB granule).
   */
  readonly smallRunPages: number;
  /** false once freed. */
  alive = true;

  /** Use Iommu.allocDomain. */
  constructor(iommu: Iommu, type: IommuDomainType) {
    this.iommu = iommu;
    this.type = type;
    const mm = iommu.mm;
    const paging = type === 'dma' || type === 'dma-fq' || type === 'unmanaged';
    const fmt = iommu.newFormat();
    this.format = paging ? fmt : null;
    this.pt = paging ? (fmt.name === 'arm-lpae' ? new ArmLpaePageTable(mm, fmt) : new PageTable(mm, fmt)) : null;
    this.leafLg2s = fmt.leafLg2s;
    const lg2s = fmt.leafLg2s;
    this.smallRunPages = lg2s[0] !== 0 ? 0 : Math.min(511, lg2s.length > 1 ? 2 ** lg2s[1] - 1 : 511);
    this.pgsizeBitmap = paging ? fmt.leafLg2s.reduce((b, l) => b | (1n << BigInt(l + 12)), 0n) : 0n;
    this.granuleShift = 12 + lg2s[0];
    this.granule = 2 ** this.granuleShift;
    const apertureEnd = fmt.signExtend ? (1n << BigInt(fmt.vaBits - 1)) - 1n : (1n << BigInt(fmt.vaBits)) - 1n;
    this.geometry = Object.freeze({ apertureStart: 0n, apertureEnd, forceAperture: true });
    this.iotlb = new Iotlb(iommu.config.iotlbCapacity ?? 4096);
    if (type === 'dma' || type === 'dma-fq') {
      const shift = BigInt(this.granuleShift);
      const base = this.geometry.apertureStart >> shift;
      this.iovad = new IovaDomain(this.granule, base > 1n ? base : 1n, mm.stats, mm.events, iommu.config.rcaches ?? true,
        iommu.config.hz ?? 0);
      for (const r of iommu.reservedRegions) this.reserve(r);
    } else {
      this.iovad = null;
    }
    this.arm32 = type === 'dma' && iommu.config.arm32Mapping ? new Arm32IommuMapping(iommu.config.arm32Mapping) : null;
    if (type === 'dma-fq') {
      const single = iommu.config.fqMode === 'single';
      this.fq = new FlushQueue(this, single ? IOVA_SINGLE_FQ_SIZE : IOVA_DEFAULT_FQ_SIZE,
        single ? IOVA_SINGLE_FQ_TIMEOUT : IOVA_DEFAULT_FQ_TIMEOUT, iommu.config.hz ?? 0);
    } else {
      this.fq = null;
    }
  }

  /** Table pages this domain holds in RAM (0 for non-paging domains). */
  get tablePages(): number {
    return this.pt === null ? 0 : this.pt.tablePages;
  }

  /** Frame number of the top table, or null. */
  get rootPfn(): bigint | null {
    return this.pt === null ? null : BigInt(this.pt.rootPfn);
  }

  /**
   * reserve_iova for a region, clipped to the aperture. IOMMU_RESV_SW_MSI is skipped: dma-iommu
   * manages that window itself (dma-iommu.c: iova_reserve_iommu_regions()).
   */
  reserve(r: ReservedRegion): void {
    if (this.iovad === null || r.kind === 'sw-msi') return;
    if (r.end <= r.start || r.start > this.geometry.apertureEnd) return;
    const last = r.end - 1n > this.geometry.apertureEnd ? this.geometry.apertureEnd : r.end - 1n;
    const shift = BigInt(this.granuleShift);
    this.iovad.reserveIova(r.start >> shift, last >> shift);
  }

  /** ->flush_iotlb_all: drops every cached translation. */
  flushIotlbAll(): void {
    this.iotlb.flushAll();
    this.iommu.mm.stats.iotlbGlobalFlushes++;
  }

  /** ->iotlb_sync: invalidates the gathered range, then releases the gathered table pages. */
  iotlbSync(gather: IommuIotlbGather): void {
    if (gather.end >= gather.start) {
      // below 2^53 the byte addresses are exact numbers: frame numbers without bigint shifts
      const s = safeBigToNum(gather.start), e = safeBigToNum(gather.end);
      const startPfn = s >= 0 ? Math.floor(s / 4096) : Number(gather.start >> 12n);
      const endPfn = (e >= 0 ? Math.floor(e / 4096) : Number(gather.end >> 12n)) + 1;
      this.iotlb.invalidateRange(startPfn, endPfn);
      this.iommu.mm.stats.iotlbRangeInvalidations++;
    }
    this.releaseTables(gather.freelist);
    gather.reset();
  }

  /** Gives unlinked table pages back to RAM (only after the IOTLB no longer references them). */
  releaseTables(freelist: number[]): void {
    if (this.pt === null || freelist.length === 0) return;
    for (const pfn of freelist) this.pt.releaseTable(pfn);
    freelist.length = 0;
  }
}

/**
 * The page-size rules of an IOMMU config on a machine with `pageSize`-byte pages (names fields as
 * `${where}.format` ...): on 16 and 64 KiB pages only ARM LPAE has page tables (io-pgtable-arm.c
 * takes PAGE_SIZE as its granule); x86-64, VT-d second stage and AMD v1 tables have 4 KiB pages
 * only, and ARM32's iommu_ops (arch/arm has 4 KiB pages) too.
 * @throws RangeError naming the field.
 */
export function checkIommuPageSize(where: string, cfg: Pick<IommuConfig, 'format' | 'arm32Mapping'>, pageSize: number): void {
  if (pageSize === 4096) return;
  if (cfg.format !== 'arm-lpae') {
    throw new RangeError(`${where}.format ${JSON.stringify(cfg.format)} has 4 KiB page tables only: on a machine with ${pageSize}-byte pages the format is "arm-lpae" (its ${pageSize / 1024} KiB granule)`);
  }
  if (cfg.arm32Mapping !== undefined) {
    throw new RangeError(`${where}.arm32Mapping needs 4 KiB pages (ARM32 iommu_ops), got a machine with ${pageSize}-byte pages`);
  }
}

/** The machine's IOMMU: builds domains and attaches devices. */
export class Iommu {
  readonly config: Readonly<IommuConfig>;
  readonly mm: MachineMm;
  /** Regions no DMA cookie ever hands out. */
  readonly reservedRegions: ReservedRegion[] = [];
  /** Live domains. */
  readonly domains = new Set<IommuDomain>();

  constructor(mm: MachineMm, cfg: IommuConfig) {
    checkOneOf('cfg.format', cfg.format, ['x86-64', 'vtd-ss', 'amd-v1', 'arm-lpae']);
    checkOneOf('cfg.mode', cfg.mode, ['strict', 'lazy', 'passthrough']);
    if (cfg.levels !== undefined && cfg.format !== 'arm-lpae') checkOneOf('cfg.levels', cfg.levels, cfg.format === 'vtd-ss' ? [3, 4, 5] : [4, 5]);
    if (cfg.hz !== undefined) checkOneOf('cfg.hz', cfg.hz, [100, 250, 300, 1000]);
    if (cfg.arm32Mapping !== undefined) {
      checkArm32MappingConfig('cfg.arm32Mapping', cfg.arm32Mapping);
      if (cfg.mode !== 'strict') throw new RangeError(`cfg.arm32Mapping needs cfg.mode "strict" (ARM32 iommu_ops unmap synchronously), got ${JSON.stringify(cfg.mode)}`);
    }
    checkIommuPageSize('cfg', cfg, mm.pageSize);
    if (cfg.levels !== undefined && cfg.format === 'arm-lpae') {
      // the granule sets the levels of a 48-bit input (arm_lpae_alloc_pgtable): 4 at 4 and 16 KiB, 3 at 64 KiB
      const levels = mm.pageSize === 65536 ? 3 : 4;
      if (cfg.levels !== levels) {
        throw new RangeError(`cfg.levels of "arm-lpae" follows its ${mm.pageSize / 1024} KiB granule: ${levels} levels for a 48-bit IOVA (or leave it out), got ${String(cfg.levels)}`);
      }
    }
    if (cfg.htRangeIgnore !== undefined) {
      if (typeof cfg.htRangeIgnore !== 'boolean') throw new TypeError(`cfg.htRangeIgnore must be a boolean, got ${String(cfg.htRangeIgnore)}`);
      if (cfg.format !== 'amd-v1') throw new RangeError(`cfg.htRangeIgnore is an AMD IOMMU feature: needs format "amd-v1", got ${JSON.stringify(cfg.format)}`);
    }
    this.mm = mm;
    this.config = Object.freeze({ ...cfg });
    if (cfg.reserveMsiWindow ?? true) {
      if (cfg.format === 'arm-lpae') this.reservedRegions.push({ start: 0x8000000n, end: 0x8100000n, kind: 'sw-msi' });
      else this.reservedRegions.push({ start: 0xfee00000n, end: 0xfef00000n, kind: 'msi' });
    }
    if (cfg.format === 'amd-v1' && cfg.htRangeIgnore !== true) {
      this.reservedRegions.push({ start: AMD_HT_RANGE_START, end: AMD_HT_RANGE_END, kind: 'reserved' });
    }
  }

  /**
   * A fresh format descriptor for this IOMMU's configuration. ARM LPAE takes the machine's page size
   * as its granule (arm_lpae_restrict_pgsizes() prefers PAGE_SIZE; the modeled SMMU supports all three).
   */
  newFormat(): PtFormat {
    if (this.config.format === 'arm-lpae') return armLpaeFormat(this.mm.pageSize as ArmLpaeGranule);
    if (this.config.format === 'amd-v1') return amdV1Format((this.config.levels ?? 4) as 4 | 5);
    if (this.config.format === 'vtd-ss') return vtdSsFormat(this.config.levels ?? 4);
    return x86_64Format((this.config.levels ?? 4) as 4 | 5);
  }

  /**
   * iommu_domain_alloc / iommu_paging_domain_alloc: a new domain of the type. Paging domains take
   * their top table from RAM now.
   * @throws Error('ENOMEM ...') when RAM has no page for the top table.
   */
  allocDomain(type: IommuDomainType): IommuDomain {
    checkOneOf('type', type, DOMAIN_TYPES);
    const d = new IommuDomain(this, type);
    this.domains.add(d);
    return d;
  }

  /**
   * iommu_attach_device: the device's DMA now goes through `domain`. dev.dmaIommu follows the
   * domain type (DMA API domains only).
   */
  attachDevice(dev: Device, domain: IommuDomain): void {
    if (domain.iommu !== this) throw new TypeError(`domain must belong to this IOMMU, got a ${domain.type} domain of another one`);
    if (!domain.alive) throw new TypeError(`domain must be alive, got a freed ${domain.type} domain`);
    dev.slots.set(DEVICE_DOMAIN, domain);
    dev.dmaIommu = domain.type === 'dma' || domain.type === 'dma-fq';
  }

  /**
   * iommu_probe_device + default domain: 'strict' -> 'dma', 'lazy' -> 'dma-fq', 'passthrough' ->
   * 'identity'; untrusted devices always get a strict 'dma' domain. Attaches it and returns it.
   * Probing a device again returns its existing default domain.
   */
  probeDevice(dev: Device): IommuDomain {
    const existing = dev.slots.get(DEVICE_DEFAULT_DOMAIN);
    if (existing !== undefined && existing.alive) return existing;
    let type: IommuDomainType;
    if (dev.untrusted) type = 'dma';
    else if (this.config.mode === 'strict') type = 'dma';
    else if (this.config.mode === 'lazy') type = 'dma-fq';
    else type = 'identity';
    const d = this.allocDomain(type);
    dev.slots.set(DEVICE_DEFAULT_DOMAIN, d);
    this.attachDevice(dev, d);
    return d;
  }

  /**
   * Reserves IOVA [start, end) in every DMA cookie, now and later (iommu_get_resv_regions /
   * iova_reserve_pci_windows); a 'sw-msi' region is listed but not reserved in DMA cookies.
   * @throws TypeError/RangeError for bad addresses or end <= start.
   */
  reserveRegion(start: bigint, end: bigint, kind: ReservedRegionKind): void {
    checkAddr('start', start);
    checkAddr('end', end, 65);
    checkOneOf('kind', kind, RESERVED_REGION_KINDS);
    if (end <= start) throw new RangeError(`end must be > start, got start 0x${start.toString(16)} end 0x${end.toString(16)}`);
    const r: ReservedRegion = { start, end, kind };
    this.reservedRegions.push(r);
    for (const d of this.domains) d.reserve(r);
  }

  /**
   * iommu_domain_free: flushes the IOTLB and gives every table page back. Devices still attached
   * are detached (they then have no domain).
   */
  freeDomain(d: IommuDomain): void {
    if (!d.alive) return;
    d.alive = false;
    if (d.fq !== null) d.fq.flush();
    d.flushIotlbAll();
    d.pt?.destroy();
    this.domains.delete(d);
  }
}

/** createIommu: the machine's IOMMU (one per machine). */
export function createIommu(mm: MachineMm, cfg: IommuConfig): Iommu {
  return new Iommu(mm, cfg);
}

/** iommu_get_domain_for_dev: the domain the device is attached to, or null. */
export function iommuGetDomainForDev(dev: Device): IommuDomain | null {
  const d = dev.slots.get(DEVICE_DOMAIN);
  return d !== undefined && d.alive ? d : null;
}

/** iommu_get_dma_domain: the device's default domain (set by probeDevice), or null. */
export function iommuGetDmaDomain(dev: Device): IommuDomain | null {
  const d = dev.slots.get(DEVICE_DEFAULT_DOMAIN);
  return d !== undefined && d.alive ? d : null;
}
