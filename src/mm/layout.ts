// Models: the firmware memory map as /proc/iomem shows it (arch/x86/kernel/e820.c, kernel/resource.c) (Linux 6.x)
// Validates a machine config and lays out an x86-like physical memory map.

import { GiB, MiB, TiB, checkLen, isPow2, roundupPowOfTwo } from '../base/index.ts';
import { RANGE_DEVICE, RANGE_MMIO, RANGE_NOPAGE, RANGE_PMEM, RANGE_RAM, withProvider } from '../phyr/index.ts';
import { describeValue } from '../base/index.ts';
import type { MemRegion, RegionKind } from './types.ts';

/** Configuration of a simulated machine's memory (everything but PCI/IOMMU). */
export interface MmConfig {
  /** Bytes of System RAM (multiple of the page size, >= 4 MiB, <= 16 TiB). */
  readonly ramBytes: number;
  /** Base page size: 4096 (default), 16384 or 65536. */
  readonly pageSize?: number;
  /** Physical address width in bits, 32..52 (default 46). */
  readonly physAddrBits?: number;
  /**
   * hugetlb pools reserved at boot: pages of each size, among those the page size offers
   * (hugetlbSizes: 2M and 1G at 4 KiB, 2M, 32M and 1G at 16 KiB, 2M, 512M and 16G at 64 KiB).
   */
  readonly hugetlb?: { readonly [K in HugetlbSize]?: number };
  /** Device memory regions (PCI BARs); pgmap: ZONE_DEVICE struct pages (a P2PDMA BAR). */
  readonly deviceMemory?: ReadonlyArray<{ readonly name: string; readonly bytes: number; readonly pgmap?: boolean }>;
  /**
   * Persistent memory (DAX), with or without struct page. mode is how the namespace is used (ndctl
   * create-namespace --mode): 'fsdax' (default, as ndctl's: a DAX filesystem's files are mapped) or
   * 'devdax' (the /dev/daxX.Y character device is mapped). A long-term pin refuses fsdax mappings.
   */
  readonly pmem?: ReadonlyArray<{ readonly name: string; readonly bytes: number; readonly structPage: boolean; readonly mode?: DaxMode }>;
  /** Fragment free memory as a long-running system would (see buddy.ts). Default false. */
  readonly aged?: boolean;
  /** Seed of the machine's PRNG (default 1). */
  readonly seed?: number;
  /**
   * Where the 32-bit PCI hole starts, i.e. the end of the RAM below 4 GiB (default 3 GiB). QEMU's q35
   * machine starts it at 2 GiB when it has 2.75 GiB of RAM or more, and puts the last 128 KiB below
   * it aside for the BIOS (the e820 map a recorded kernel printed gives the exact value).
   */
  readonly pciHoleStart?: number;
}

/** How a pmem region is mapped into processes (include/linux/fs.h: vma_is_fsdax tells them apart). */
export type DaxMode = 'fsdax' | 'devdax';

/** A validated config with every default filled in. */
export interface ResolvedMmConfig {
  readonly ramBytes: number;
  readonly pageSize: number;
  readonly physAddrBits: number;
  /** Pages of each hugetlb pool, one entry per size the page size offers (0 if none asked for). */
  readonly hugetlb: Readonly<Partial<Record<HugetlbSize, number>>>;
  readonly deviceMemory: ReadonlyArray<{ name: string; bytes: number; pgmap: boolean }>;
  readonly pmem: ReadonlyArray<{ name: string; bytes: number; structPage: boolean; mode: DaxMode }>;
  readonly aged: boolean;
  readonly seed: number;
  readonly pciHoleStart: number;
}

/** Largest RAM the model accepts (its allocator keeps one byte per top-order block: 4 MiB at 4 KiB pages). */
export const MAX_RAM_BYTES = 16 * TiB;
/** Reserved low memory (real mode, BIOS data, option ROMs): [0, 1 MiB). */
export const LOW_RESERVED_END = MiB;
/** Start of the 32-bit PCI hole; RAM resumes at 4 GiB. */
export const PCI_HOLE_START = 3 * GiB;
export const PCI_HOLE_END = 4 * GiB;

/** Bytes of each hugetlb page size the model knows, by the name hugetlbfs gives it. */
export const HUGETLB_BYTES = { '2M': 2 * MiB, '32M': 32 * MiB, '512M': 512 * MiB, '1G': GiB, '16G': 16 * GiB } as const;
/** A hugetlb page size's name (hugepages-2048kB is '2M'). */
export type HugetlbSize = keyof typeof HUGETLB_BYTES;

/**
 * The hugetlb page sizes a machine of this base page size offers, smallest first. The 4 KiB
 * machine is x86-64: a PMD and a PUD (arch/x86/mm/hugetlbpage.c arch_hugetlb_valid_size, with
 * X86_FEATURE_GBPAGES). The 16 and 64 KiB machines are arm64: a run of contiguous PTEs, a PMD and
 * a run of contiguous PMDs (arch/arm64/mm/hugetlbpage.c __hugetlb_valid_size, with the
 * ARM64_CONT_PTE_SHIFT and ARM64_CONT_PMD_SHIFT defaults; a PUD block only at 4 KiB,
 * pud_sect_supported): 128 x 16 KiB, 32 MiB and 32 x 32 MiB; 32 x 64 KiB, 512 MiB and 32 x 512 MiB.
 */
export function hugetlbSizes(pageSize: number): readonly HugetlbSize[] {
  if (pageSize === 16384) return ['2M', '32M', '1G'];
  if (pageSize === 65536) return ['2M', '512M', '16G'];
  return ['2M', '1G'];
}

/**
 * Bytes a PMD maps at this base page size: a table of page-size / 8 entries of a page each (2 MiB
 * at 4 KiB pages, 32 MiB at 16 KiB, 512 MiB at 64 KiB).
 */
export function pmdBytes(pageSize: number): number {
  return pageSize * (pageSize / 8);
}

/** `no 512M hugetlb pages on a 4 KiB page machine: it has 2M, 1G`: what every refusal of a size says. */
export function hugetlbSizeMissing(size: string, pageSize: number): string {
  return `no ${size} hugetlb pages on a ${pageSize / 1024} KiB page machine: it has ${hugetlbSizes(pageSize).join(', ')}`;
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null;
}

/**
 * Validates every field of an MmConfig and fills in defaults.
 * @throws TypeError / RangeError naming the field and the bad value.
 */
export function resolveMmConfig(config: MmConfig): ResolvedMmConfig {
  if (!isObj(config)) throw new TypeError(`config must be an object, got ${describeValue(config)}`);
  const pageSize = config.pageSize === undefined ? 4096 : checkLen('config.pageSize', config.pageSize);
  if (pageSize !== 4096 && pageSize !== 16384 && pageSize !== 65536) {
    throw new RangeError(`config.pageSize must be one of 4096, 16384, 65536, got ${pageSize}`);
  }
  const physAddrBits = config.physAddrBits === undefined ? 46 : checkLen('config.physAddrBits', config.physAddrBits, 32, 52);
  const ramBytes = checkLen('config.ramBytes', config.ramBytes, 4 * MiB, MAX_RAM_BYTES);
  if (ramBytes % pageSize !== 0) {
    throw new RangeError(`config.ramBytes must be a multiple of the page size ${pageSize}, got ${ramBytes}`);
  }
  const sizes = hugetlbSizes(pageSize);
  const hugetlb: Partial<Record<HugetlbSize, number>> = {};
  for (const k of sizes) hugetlb[k] = 0;
  if (config.hugetlb !== undefined) {
    if (!isObj(config.hugetlb)) throw new TypeError(`config.hugetlb must be an object, got ${describeValue(config.hugetlb)}`);
    for (const [k, v] of Object.entries(config.hugetlb)) {
      if (!(sizes as readonly string[]).includes(k)) throw new RangeError(`config.hugetlb['${k}']: ${hugetlbSizeMissing(k, pageSize)}`);
      if (v !== undefined) hugetlb[k as HugetlbSize] = checkLen(`config.hugetlb['${k}']`, v);
    }
  }
  const names = new Set<string>(['reserved', 'ram0', 'ram1']);
  const checkName = (field: string, name: unknown): string => {
    if (typeof name !== 'string' || name.length === 0) throw new TypeError(`${field} must be a non-empty string, got ${describeValue(name)}`);
    if (names.has(name)) throw new RangeError(`${field} must be a unique region name, got ${describeValue(name)}`);
    names.add(name);
    return name;
  };
  // pmem and deviceMemory are lists of named regions: the same checks, then one field of their own.
  const regionList = <T>(field: 'pmem' | 'deviceMemory', list: unknown,
    rest: (entry: Record<string, unknown>, where: string) => T): Array<{ name: string; bytes: number } & T> => {
    if (list === undefined) return [];
    if (!Array.isArray(list)) throw new TypeError(`config.${field} must be an array, got ${describeValue(list)}`);
    return list.map((e: unknown, i) => {
      const where = `config.${field}[${i}]`;
      if (!isObj(e)) throw new TypeError(`${where} must be an object, got ${describeValue(e)}`);
      const name = checkName(`${where}.name`, e.name);
      const bytes = checkLen(`${where}.bytes`, e.bytes, pageSize);
      if (bytes % pageSize !== 0) throw new RangeError(`${where}.bytes must be a multiple of ${pageSize}, got ${bytes}`);
      return { name, bytes, ...rest(e, where) };
    });
  };
  const pmem = regionList('pmem', config.pmem, (p, where) => {
    if (typeof p.structPage !== 'boolean') throw new TypeError(`${where}.structPage must be a boolean, got ${describeValue(p.structPage)}`);
    const mode = p.mode === undefined ? 'fsdax' : p.mode;
    if (mode !== 'fsdax' && mode !== 'devdax') throw new RangeError(`${where}.mode must be 'fsdax' or 'devdax', got ${describeValue(p.mode)}`);
    return { structPage: p.structPage, mode: mode as DaxMode };
  });
  const deviceMemory = regionList('deviceMemory', config.deviceMemory, (d, where) => {
    if (d.pgmap !== undefined && typeof d.pgmap !== 'boolean') throw new TypeError(`${where}.pgmap must be a boolean, got ${describeValue(d.pgmap)}`);
    return { pgmap: d.pgmap === true };
  });
  if (config.aged !== undefined && typeof config.aged !== 'boolean') throw new TypeError(`config.aged must be a boolean, got ${describeValue(config.aged)}`);
  const seed = config.seed === undefined ? 1 : config.seed;
  if (typeof seed !== 'number' || !Number.isSafeInteger(seed)) throw new RangeError(`config.seed must be a safe integer, got ${describeValue(seed)}`);
  const pciHoleStart = config.pciHoleStart === undefined ? PCI_HOLE_START : checkLen('config.pciHoleStart', config.pciHoleStart, 2 * LOW_RESERVED_END, PCI_HOLE_END);
  if (pciHoleStart % pageSize !== 0) throw new RangeError(`config.pciHoleStart must be a multiple of the page size ${pageSize}, got ${pciHoleStart}`);
  return { ramBytes, pageSize, physAddrBits, hugetlb, deviceMemory, pmem, aged: config.aged === true, seed, pciHoleStart };
}

/** A region of the map; rangeFlags follows providerId, which pci/ may set later. */
export class Region implements MemRegion {
  readonly id: number;
  readonly name: string;
  readonly kind: RegionKind;
  readonly start: bigint;
  readonly len: number;
  readonly end: bigint;
  readonly hasStructPage: boolean;
  readonly mmio: boolean;
  readonly pgmapId: number;
  providerId = 0;
  /** Flags without the provider id. */
  readonly baseFlags: number;
  /** start and end as numbers (exact: the map fits in 52 bits). */
  readonly startNum: number;
  readonly endNum: number;
  /** pmem only: how its mappings are made (fsdax files or a devdax device); null for other kinds. */
  readonly daxMode: DaxMode | null;

  constructor(id: number, name: string, kind: RegionKind, start: number, len: number, hasStructPage: boolean,
    mmio: boolean, pgmapId: number, baseFlags: number, daxMode: DaxMode | null = null) {
    this.id = id;
    this.name = name;
    this.kind = kind;
    this.startNum = start;
    this.endNum = start + len;
    this.start = BigInt(start);
    this.len = len;
    this.end = BigInt(start + len);
    this.hasStructPage = hasStructPage;
    this.mmio = mmio;
    this.pgmapId = pgmapId;
    this.baseFlags = baseFlags;
    this.daxMode = daxMode;
  }

  get rangeFlags(): number {
    return this.providerId === 0 ? this.baseFlags : withProvider(this.baseFlags, this.providerId);
  }

  /** Whether CPU loads/stores reach this region (everything but firmware-reserved ranges). */
  get accessible(): boolean {
    return this.kind !== 'reserved';
  }
}

/**
 * Lays out the physical memory map, x86-like:
 *   [0, 1 MiB)                reserved (real-mode / BIOS area)
 *   [1 MiB, 3 GiB)            ram0: low System RAM (as much of ramBytes as fits; the end is
 *                             config.pciHoleStart, default 3 GiB)
 *   [3 GiB, 4 GiB)            the 32-bit PCI hole: no region (a hole)
 *   [4 GiB, ...)              ram1: the rest of System RAM
 *   next 1 GiB boundary       pmem regions, each 1 GiB aligned, in config order
 *   then                      device regions (BARs), each aligned to its size rounded up to a power of two
 * @throws RangeError (naming config.ramBytes / the region) when the map does not fit physAddrBits.
 */
export function layoutRegions(cfg: ResolvedMmConfig): Region[] {
  const regions: Region[] = [];
  const add = (name: string, kind: RegionKind, start: number, len: number, page: boolean, mmio: boolean, pgmap: number, flags: number,
    dax: DaxMode | null = null): void => {
    regions.push(new Region(regions.length, name, kind, start, len, page, mmio, pgmap, flags, dax));
  };
  add('reserved', 'reserved', 0, LOW_RESERVED_END, false, false, 0, RANGE_RAM | RANGE_NOPAGE);
  const lowLen = Math.min(cfg.ramBytes, cfg.pciHoleStart - LOW_RESERVED_END);
  add('ram0', 'ram', LOW_RESERVED_END, lowLen, true, false, 0, RANGE_RAM);
  let top = LOW_RESERVED_END + lowLen;
  if (cfg.ramBytes > lowLen) {
    add('ram1', 'ram', PCI_HOLE_END, cfg.ramBytes - lowLen, true, false, 0, RANGE_RAM);
    top = PCI_HOLE_END + cfg.ramBytes - lowLen;
  }
  const limit = 2 ** cfg.physAddrBits;
  if (top > limit) throw new RangeError(`config.ramBytes ${cfg.ramBytes} does not fit a ${cfg.physAddrBits}-bit physical address space`);
  let pgmapIds = 0;
  let cursor = Math.max(top, PCI_HOLE_END);
  for (const p of cfg.pmem) {
    const start = Math.ceil(cursor / GiB) * GiB;
    if (start + p.bytes > limit) throw new RangeError(`pmem ${JSON.stringify(p.name)} does not fit a ${cfg.physAddrBits}-bit physical address space`);
    add(p.name, 'pmem', start, p.bytes, p.structPage, false, p.structPage ? ++pgmapIds : 0,
      RANGE_PMEM | (p.structPage ? 0 : RANGE_NOPAGE), p.mode);
    cursor = start + p.bytes;
  }
  for (const d of cfg.deviceMemory) {
    const align = roundupPowOfTwo(d.bytes);
    const start = Math.ceil(cursor / align) * align;
    if (!isPow2(align) || start + d.bytes > limit) {
      throw new RangeError(`deviceMemory ${JSON.stringify(d.name)} does not fit a ${cfg.physAddrBits}-bit physical address space`);
    }
    add(d.name, 'device', start, d.bytes, d.pgmap, true, d.pgmap ? ++pgmapIds : 0,
      RANGE_DEVICE | RANGE_MMIO | (d.pgmap ? 0 : RANGE_NOPAGE));
    cursor = start + d.bytes;
  }
  regions.sort((a, b) => a.startNum - b.startNum);
  return regions.map((r, i) => (r.id === i ? r : new Region(i, r.name, r.kind, r.startNum, r.len, r.hasStructPage, r.mmio, r.pgmapId, r.baseFlags, r.daxMode)));
}
