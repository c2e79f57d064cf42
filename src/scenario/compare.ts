// Models: the comparison the phyr seeds argue from (Wilcox, "Phyr Starter", 10 Jan 2022, and Gunthorpe's replies; lib/scatterlist.c; include/linux/bvec.h): the same pinned user
// buffer described as a struct page * array + scatterlist (mm/gup.c, lib/scatterlist.c), a bio_vec list
// (include/linux/bvec.h; grouped as direct I/O groups pinned pages, lib/iov_iter.c:
// iov_iter_extract_bvecs: one bio_vec per contiguous run inside one folio), a phyr list, and
// Gunthorpe's 8-byte page list, on a simulated machine.
//
// runCompare builds a machine, maps each buffer into one process, pins it once per layout and measures
// entries, kernel bytes, whether the layout can describe the buffer, and the model's time to build it.
// The report is plain JSON-serialisable data (addresses as hex strings), deterministic except the
// *Ms time fields.

import { GiB, MiB, checkLen, checkOneOf, formatBytes, hex, type Errno, type Result } from '../base/index.ts';
import {
  HUGETLB_BYTES, MAX_RAM_BYTES, STRUCT_PAGE_SIZE, hugetlbSizes, memmapBytesFor, type HugetlbSize, type MemmapBreakdown,
  createMmMachine, pinUserPages, pinUserPhyrs, unpinUserPages, unpinUserPhyrs, FOLL_WRITE,
  type MmMachine, type MmConfig, type UserMm,
} from '../mm/index.ts';
import {
  sgAllocTableFromPagesSegment, sgFreeTable, toPageList,
  type PageArray, type PhyrList, type RangeSource,
} from '../phyr/index.ts';
import {
  checkMappingOptions, mappingReport, mappingSteps, runMappingConfig,
  type MappingConfigName, type MappingOptions, type MappingReport, type MappingRow,
} from './mapping.ts';
import { directIoBvecs } from './direct-io.ts';

/** The buffers of phyr compare, by the name the CLI takes in --buffers. */
export const BUFFER_NAMES = ['anon', 'thp', 'hugetlb', 'device'] as const;
export type BufferName = (typeof BUFFER_NAMES)[number];

/** The layouts compared, in report order. */
export const LAYOUT_NAMES = ['pagearray+sg', 'bvec', 'phyr', 'pagelist'] as const;
export type CompareLayout = (typeof LAYOUT_NAMES)[number];

/** Human names of the layouts (used by the CLI and in the JSON). */
export const LAYOUT_LABELS: Readonly<Record<CompareLayout, string>> = {
  'pagearray+sg': 'page array + scatterlist',
  bvec: 'bio_vec list',
  phyr: 'phyr list',
  pagelist: '8-byte page list',
};

/** Default buffer lengths in bytes. */
export const DEFAULT_BUFFER_LEN: Readonly<Record<BufferName, number>> = {
  anon: GiB,
  thp: GiB,
  hugetlb: 4 * GiB,
  device: 256 * MiB,
};

/** The device region's name in the machine and the mmap backing that maps it. */
export const DEVICE_REGION_NAME = 'bar0';

/** The most RAM a compare machine takes, in GiB (the memory map's limit). */
export const MAX_RAM_GIB = MAX_RAM_BYTES / GiB;

export interface CompareOptions {
  /** System RAM in GiB (default 64). */
  readonly ramGiB?: number;
  /** Fragment free memory as a long-running system (default true). */
  readonly aged?: boolean;
  /** Seed of the machine's PRNG (default 1). */
  readonly seed?: number;
  /** Which buffers, in this order (default all of BUFFER_NAMES). */
  readonly buffers?: readonly BufferName[];
  /** Override buffer lengths in bytes (tests use small buffers). Must be multiples of the buffer's page size. */
  readonly bufferLen?: Partial<Record<BufferName, number>>;
  /** Size of the device memory region in GiB (default 16). */
  readonly deviceGiB?: number;
  /**
   * hugetlb pages of the hugetlb buffer's size (compareHugetlbSize) reserved at boot (default:
   * enough for the hugetlb buffer).
   */
  readonly hugetlbPages?: number;
  /**
   * max_segment for sgAllocTableFromPagesSegment in bytes (default: UINT_MAX rounded down to the
   * page size, as sg_alloc_table_from_pages uses).
   */
  readonly maxSegment?: number;
  /** Base page size in bytes (default 4096). */
  readonly pageSize?: number;
  /**
   * Include the DMA mapping section. Default false here, so that library callers
   * opt in; the CLI (`phyr compare`) turns it on unless --no-mapping is given.
   */
  readonly mapping?: boolean;
  /** Which machine configurations the mapping section runs (default all). */
  readonly mappingConfigs?: readonly MappingConfigName[];
  /** Round-trip windows sampled per mapped buffer (default 32, 4096 bytes each). */
  readonly verifyWindows?: number;
  /**
   * Run the mapping machines with dma-debug on (default false, as production kernels are built; see
   * MappingOptions.dmaDebug). The figures are the same; the rows then count dma-debug's reports.
   */
  readonly dmaDebug?: boolean;
}

/** One component of a layout (the page array and the sg table of the legacy row). */
export interface LayoutPart {
  readonly name: string;
  readonly entries: number;
  readonly kernelBytes: number;
}

/** One (buffer, layout) measurement. */
export interface LayoutRow {
  readonly layout: CompareLayout;
  readonly label: string;
  /** Whether the layout can describe the buffer at all. */
  readonly describes: boolean;
  /**
   * Entries of the layout's main structure: page pointers for 'pagearray+sg' (the sg entries are in
   * parts), bio_vecs, phyrs, page-list entries. null when the layout cannot describe the buffer.
   */
  readonly entries: number | null;
  /** Kernel bytes (LP64) of every structure the layout needs, parts included. null when it cannot. */
  readonly kernelBytes: number | null;
  readonly parts: readonly LayoutPart[];
  /** Why the layout cannot describe the buffer: the errno and the failing call's message. */
  readonly errno: Errno | null;
  readonly reason: string | null;
  /** How the layout is built in the model (the calls timed). */
  readonly buildPath: string;
  /** Time of the GUP call that pins the buffer, in ms (not deterministic). */
  readonly pinMs: number;
  /** Time to build the layout from the pinned result, in ms (not deterministic). */
  readonly buildMs: number;
  /** pinMs + buildMs. */
  readonly timeMs: number;
}

export interface BufferReport {
  readonly name: BufferName;
  readonly label: string;
  /** The mmap backing as passed to mm.mmap (device backings rendered as 'device:bar0+0x0'). */
  readonly backing: string;
  readonly len: number;
  /** User virtual address of the mapping (hex), or null if mmap failed. */
  readonly userAddr: string | null;
  /** errno of a failed mmap (then rows is empty). */
  readonly mmapErrno: Errno | null;
  readonly mmapMessage: string | null;
  /** Time to mmap and populate the buffer, ms. */
  readonly mmapMs: number;
  readonly rows: readonly LayoutRow[];
  /** Device memory only (null for RAM buffers, whose struct pages exist anyway): the memmap the page-based layouts need. */
  readonly memmap: BufferMemmap | null;
}

/**
 * The struct page cost of describing device memory page by page: the page array, scatterlist and
 * bio_vec layouts need the region to be ZONE_DEVICE (a P2PDMA pgmap: drivers/pci/p2pdma.c:
 * pci_p2pdma_add_resource -> devm_memremap_pages), which puts 64 bytes of memmap behind every base page
 * of the region; a phyr list names the same memory by {addr, len} and needs none.
 */
export interface BufferMemmap {
  readonly structPageSize: number;
  readonly pageSize: number;
  /** The region the buffer lies in, and its length. */
  readonly region: string;
  readonly regionLen: number;
  /** Memmap for the struct pages of the buffer's own pages. */
  readonly bufferBytes: number;
  /** Memmap of the whole region as a ZONE_DEVICE pgmap (what memremap_pages allocates). */
  readonly regionBytes: number;
  /** What the phyr list needs: none. */
  readonly phyrBytes: 0;
  readonly text: string;
}

/**
 * The hugetlb page size of the hugetlb buffer: the machine's largest of at most 1 GiB. That is 1 GiB
 * on x86-64 (4 KiB pages) and on arm64 with 16 KiB pages, 512 MiB (a PMD) on arm64 with 64 KiB
 * pages, which has no 1 GiB page (hugetlbSizes).
 */
export function compareHugetlbSize(pageSize: number): HugetlbSize {
  const fit = hugetlbSizes(pageSize).filter((s) => HUGETLB_BYTES[s] <= GiB);
  return fit[fit.length - 1];
}

/** The seed's headline: one hugetlb page (1 GiB on x86-64) as a page array vs as a phyr list, measured. */
export interface Headline {
  readonly label: string;
  readonly pageEntries: number;
  readonly pageArrayBytes: number;
  readonly phyrEntries: number;
  readonly phyrBytes: number;
  readonly text: string;
}

export interface MachineReport {
  readonly ramBytes: number;
  readonly aged: boolean;
  readonly seed: number;
  readonly pageSize: number;
  /** The hugetlb pool: its page size and pages reserved at boot. */
  readonly hugetlbSize: HugetlbSize;
  readonly hugetlbPages: number;
  readonly deviceMemory: ReadonlyArray<{ readonly name: string; readonly bytes: number }>;
  /** The physical memory map: one line per region. */
  readonly regions: ReadonlyArray<{ readonly name: string; readonly kind: string; readonly start: string; readonly end: string; readonly len: number }>;
  readonly description: string;
  /** The machine's struct page memory (MmMachine.memmapBytes). */
  readonly memmap: MemmapBreakdown;
}

export interface CompareReport {
  readonly tool: 'phyr compare';
  /** 2 since machine.hugetlb1G became hugetlbSize and hugetlbPages. */
  readonly version: 2;
  readonly machine: MachineReport;
  readonly maxSegment: number;
  readonly maxSegmentNote: string;
  readonly buffers: readonly BufferReport[];
  /** null when the hugetlb buffer is not part of the run (or could not be mapped). */
  readonly headline: Headline | null;
  /** The DMA mapping section, or null when not requested. */
  readonly mapping: MappingReport | null;
  /** Column and term definitions, as printed under the table. */
  readonly legend: Readonly<Record<string, string>>;
  /** Wall time of the whole run in ms (not deterministic). */
  readonly totalMs: number;
}

/** Called after each step: done of total steps, and what was just done. */
export type ProgressFn = (done: number, total: number, label: string) => void;

/** UINT_MAX rounded down to the page size: sg_alloc_table_from_pages' max_segment (include/linux/scatterlist.h passes UINT_MAX; lib/scatterlist.c rounds it down). */
export function defaultMaxSegment(pageSize: number): number {
  return Math.floor(0xffffffff / pageSize) * pageSize;
}

/** Column and term definitions shared by the JSON and the human report. */
export const LEGEND: Readonly<Record<string, string>> = {
  Entries: 'entries of the structure: page pointers (+ scatterlist entries, orig_nents), bio_vecs, phyrs, or 8-byte page-list entries',
  'Kernel bytes': 'what the same structures cost in the Linux kernel on LP64: page pointer 8 B; scatterlist 32 B per entry, with the chain entry of every chunk (a page of entries: 128 with 4 KiB pages), + 16 B sg_table; bio_vec 16 B; phyr 16 B; page-list entry 8 B + 16 B header',
  'vs phyr': "kernel bytes of the layout divided by the phyr list's kernel bytes for the same buffer",
  Describes: 'whether the layout can describe the buffer at all; if not, the errno and the call that failed',
  'Pin ms': 'model wall time of the GUP call (pinUserPages or pinUserPhyrs), ms',
  'Build ms': 'model wall time to build the layout from the pinned result, ms',
  'page array + scatterlist': 'pinUserPages (struct page * array) then sgAllocTableFromPagesSegment over it',
  'bio_vec list': 'pinUserPages, then one multi-page bio_vec per physically contiguous run inside one folio, as direct I/O builds them (iov_iter_extract_bvecs: pages of different folios never share a bio_vec; pagesToBvecList)',
  'phyr list': 'pinUserPhyrs: one {addr, len} per physically contiguous run, built from folios',
  '8-byte page list': 'pinUserPhyrs then toPageList: naturally aligned power-of-two chunks, 8 B each',
};

interface ResolvedOptions {
  readonly ramGiB: number;
  readonly aged: boolean;
  readonly seed: number;
  readonly buffers: readonly BufferName[];
  readonly bufferLen: Readonly<Record<BufferName, number>>;
  readonly deviceGiB: number;
  readonly hugetlbSize: HugetlbSize;
  readonly hugetlbPages: number;
  readonly maxSegment: number;
  readonly pageSize: number;
  readonly mapping: boolean;
}

/**
 * Validates CompareOptions and fills defaults.
 * @throws TypeError/RangeError naming the option and the bad value.
 */
export function resolveCompareOptions(opts: CompareOptions = {}): ResolvedOptions {
  const pageSize = checkOneOf('pageSize', opts.pageSize ?? 4096, [4096, 16384, 65536]);
  const ramGiB = checkLen('ramGiB', opts.ramGiB ?? 64, 1, MAX_RAM_GIB);
  const seed = checkLen('seed', opts.seed ?? 1, 0, 0xffffffff);
  const deviceGiB = checkLen('deviceGiB', opts.deviceGiB ?? 16, 1, 1 << 16);
  const aged = opts.aged ?? true;
  if (typeof aged !== 'boolean') throw new TypeError(`aged must be a boolean, got ${typeof aged} ${String(aged)}`);
  const buffers = opts.buffers ?? BUFFER_NAMES;
  if (!Array.isArray(buffers) || buffers.length === 0) {
    throw new RangeError(`buffers must be a non-empty list of ${BUFFER_NAMES.join(', ')}, got ${JSON.stringify(buffers)}`);
  }
  const seen = new Set<BufferName>();
  for (const b of buffers) {
    checkOneOf('buffers', b, BUFFER_NAMES);
    if (seen.has(b)) throw new RangeError(`buffers must not repeat a name, got ${JSON.stringify(b)} twice`);
    seen.add(b);
  }
  const hugetlbSize = compareHugetlbSize(pageSize);
  const hugeLen = HUGETLB_BYTES[hugetlbSize];
  const bufferLen = { ...DEFAULT_BUFFER_LEN };
  for (const [k, v] of Object.entries(opts.bufferLen ?? {})) {
    const name = checkOneOf('bufferLen key', k, BUFFER_NAMES);
    const grain = name === 'hugetlb' ? hugeLen : name === 'thp' ? 2 * MiB : pageSize;
    const len = checkLen(`bufferLen.${name}`, v, grain);
    if (len % grain !== 0) throw new RangeError(`bufferLen.${name} must be a multiple of ${grain}, got ${len}`);
    bufferLen[name] = len;
  }
  if (bufferLen.device > deviceGiB * GiB) {
    throw new RangeError(`bufferLen.device must fit the ${deviceGiB} GiB device region, got ${bufferLen.device}`);
  }
  const hugetlbPages = checkLen('hugetlbPages', opts.hugetlbPages ?? Math.ceil(bufferLen.hugetlb / hugeLen), 0, 1 << 16);
  const maxSegment = checkLen('maxSegment', opts.maxSegment ?? defaultMaxSegment(pageSize), pageSize, 0xffffffff);
  const mapping = opts.mapping ?? false;
  if (typeof mapping !== 'boolean') throw new TypeError(`mapping must be a boolean, got ${typeof mapping} ${String(mapping)}`);
  return { ramGiB, aged, seed, buffers, bufferLen, deviceGiB, hugetlbSize, hugetlbPages, maxSegment, pageSize, mapping };
}

/** The hugetlb pools of the compare machine: its one size, when it reserves any. */
function hugetlbPools(o: ResolvedOptions): { [K in HugetlbSize]?: number } {
  return o.hugetlbPages > 0 ? { [o.hugetlbSize]: o.hugetlbPages } : {};
}

/** The MmConfig runCompare uses for these options (exported so tests can rebuild the same machine). */
export function compareMachineConfig(opts: CompareOptions = {}): MmConfig {
  const o = resolveCompareOptions(opts);
  return {
    ramBytes: o.ramGiB * GiB,
    pageSize: o.pageSize,
    hugetlb: hugetlbPools(o),
    deviceMemory: [{ name: DEVICE_REGION_NAME, bytes: o.deviceGiB * GiB }],
    aged: o.aged,
    seed: o.seed,
  };
}

type Backing = 'anon' | 'thp' | `hugetlb-${HugetlbSize}` | { device: string; offset: number };

function backingOf(name: BufferName, pageSize: number): Backing {
  switch (name) {
    case 'anon': return 'anon';
    case 'thp': return 'thp';
    case 'hugetlb': return `hugetlb-${compareHugetlbSize(pageSize)}`;
    case 'device': return { device: DEVICE_REGION_NAME, offset: 0 };
  }
}

function backingText(b: Backing): string {
  return typeof b === 'string' ? b : `device:${b.device}+${hex(b.offset)}`;
}

function bufferLabel(name: BufferName, len: number, pageSize: number): string {
  const l = formatBytes(len);
  switch (name) {
    case 'anon': return `${l} anonymous ${formatBytes(pageSize)} pages`;
    case 'thp': return `${l} anonymous THP`;
    case 'hugetlb': return `${l} of ${formatBytes(HUGETLB_BYTES[compareHugetlbSize(pageSize)])} hugetlb pages`;
    case 'device': return `${l} of device memory (${DEVICE_REGION_NAME}) mapped into the process`;
  }
}

function msSince(t0: number): number {
  return performance.now() - t0;
}

/** Maps one buffer into mm with populate. */
export function mapCompareBuffer(mm: UserMm, name: BufferName, len: number): Result<bigint> {
  return mm.mmap({ len, backing: backingOf(name, mm.machine.pageSize), populate: true });
}

function failedRow(layout: CompareLayout, buildPath: string, errno: Errno, reason: string, pinMs: number, buildMs: number): LayoutRow {
  return {
    layout, label: LAYOUT_LABELS[layout], describes: false, entries: null, kernelBytes: null, parts: [],
    errno, reason, buildPath, pinMs, buildMs, timeMs: pinMs + buildMs,
  };
}

function okRow(layout: CompareLayout, buildPath: string, entries: number, parts: LayoutPart[], pinMs: number, buildMs: number): LayoutRow {
  return {
    layout, label: LAYOUT_LABELS[layout], describes: true, entries,
    kernelBytes: parts.reduce((s, p) => s + p.kernelBytes, 0), parts,
    errno: null, reason: null, buildPath, pinMs, buildMs, timeMs: pinMs + buildMs,
  };
}

function errText(r: { errno: Errno; message?: string }, call: string): string {
  return `${call}: ${r.errno}${r.message ? ` (${r.message})` : ''}`;
}

/**
 * Measures one layout of the buffer [start, start+len) of mm: pins it, builds the layout, records
 * entries / kernel bytes / time, and unpins again (each layout leaves the pin counts as they were).
 */
export function measureLayout(
  mm: UserMm, start: bigint, len: number, layout: CompareLayout, o: { pageSize: number; maxSegment: number },
): LayoutRow {
  const pageSize = o.pageSize;
  const nrPages = Math.ceil(len / pageSize);
  if (layout === 'pagearray+sg' || layout === 'bvec') {
    const path = layout === 'bvec'
      ? 'pinUserPages + pagesToBvecList'
      : `pinUserPages + sgAllocTableFromPagesSegment(maxSegment ${o.maxSegment})`;
    const t0 = performance.now();
    const pinned = pinUserPages(mm, start, nrPages, FOLL_WRITE);
    const pinMs = msSince(t0);
    if (!pinned.ok) return failedRow(layout, path, pinned.errno, errText(pinned, 'pinUserPages'), pinMs, 0);
    const pages: PageArray = pinned.value;
    try {
      const t1 = performance.now();
      if (layout === 'bvec') {
        // Direct I/O turns pinned user pages into bio_vecs one folio at a time (lib/iov_iter.c:
        // iov_iter_extract_bvecs, get_contig_folio_len): contiguous pages of one folio share a
        // bio_vec, pages of two folios never do, however adjacent.
        const r = directIoBvecs(mm, pages);
        const buildMs = msSince(t1);
        if (!r.ok) return failedRow(layout, path, r.errno, errText(r, 'pagesToBvecList'), pinMs, buildMs);
        return okRow(layout, path, r.value.count, [{ name: 'bio_vec', entries: r.value.count, kernelBytes: r.value.kernelBytes }], pinMs, buildMs);
      }
      const r = sgAllocTableFromPagesSegment(pages.pfns, 0, len, o.maxSegment, { pageSize });
      const buildMs = msSince(t1);
      if (!r.ok) return failedRow(layout, path, r.errno, errText(r, 'sgAllocTableFromPagesSegment'), pinMs, buildMs);
      const sgt = r.value;
      const row = okRow(layout, path, pages.count, [
        { name: 'page array', entries: pages.count, kernelBytes: pages.kernelBytes },
        { name: 'sg_table', entries: sgt.origNents, kernelBytes: sgt.kernelBytes },
      ], pinMs, buildMs);
      sgFreeTable(sgt);
      return row;
    } finally {
      unpinUserPages(pages);
    }
  }
  const path = layout === 'phyr' ? 'pinUserPhyrs' : 'pinUserPhyrs + toPageList';
  const t0 = performance.now();
  const pinned = pinUserPhyrs(mm, start, len, FOLL_WRITE);
  const pinMs = msSince(t0);
  if (!pinned.ok) return failedRow(layout, path, pinned.errno, errText(pinned, 'pinUserPhyrs'), pinMs, 0);
  const list: PhyrList = pinned.value;
  try {
    if (layout === 'phyr') {
      return okRow(layout, path, list.count, [{ name: 'phyr', entries: list.count, kernelBytes: list.kernelBytes }], pinMs, 0);
    }
    const t1 = performance.now();
    const r = toPageList(list as RangeSource, pageSize);
    const buildMs = msSince(t1);
    if (!r.ok) return failedRow(layout, path, r.errno, errText(r, 'toPageList'), pinMs, buildMs);
    return okRow(layout, path, r.value.count, [{ name: 'page list', entries: r.value.count, kernelBytes: r.value.kernelBytes }], pinMs, buildMs);
  } finally {
    unpinUserPhyrs(list);
  }
}

/**
 * Measures the seed's headline on an already-mapped hugetlb buffer: its first hugetlb page
 * (compareHugetlbSize) pinned as a page array and as a phyr list. Returns null if either pin fails.
 */
export function measureHeadline(mm: UserMm, start: bigint, pageSize: number): Headline | null {
  const hugeLen = HUGETLB_BYTES[compareHugetlbSize(pageSize)];
  const pages = pinUserPages(mm, start, hugeLen / pageSize, FOLL_WRITE);
  if (!pages.ok) return null;
  const pageEntries = pages.value.count;
  const pageArrayBytes = pages.value.kernelBytes;
  unpinUserPages(pages.value);
  const phyrs = pinUserPhyrs(mm, start, hugeLen, FOLL_WRITE);
  if (!phyrs.ok) return null;
  const phyrEntries = phyrs.value.count;
  const phyrBytes = phyrs.value.kernelBytes;
  unpinUserPhyrs(phyrs.value);
  const label = `${formatBytes(hugeLen)} hugetlb page`;
  const text = `${label}: ${pageEntries.toLocaleString('en-US')} page entries (${formatBytes(pageArrayBytes)} of pointers) vs ` +
    `${phyrEntries.toLocaleString('en-US')} phyr (${formatBytes(phyrBytes)})`;
  return { label, pageEntries, pageArrayBytes, phyrEntries, phyrBytes, text };
}

function describeMachine(m: MmMachine, o: ResolvedOptions): MachineReport {
  const regions = m.regions.map((r) => ({ name: r.name, kind: r.kind, start: hex(r.start), end: hex(r.end), len: r.len }));
  const description = `${o.ramGiB} GiB RAM${o.aged ? ', aged' : ''}, ${formatBytes(o.pageSize)} pages, ` +
    `hugetlb pool ${o.hugetlbPages} x ${formatBytes(HUGETLB_BYTES[o.hugetlbSize])}, device region ${DEVICE_REGION_NAME} ${o.deviceGiB} GiB (no struct page, MMIO), seed ${o.seed}`;
  return {
    ramBytes: o.ramGiB * GiB, aged: o.aged, seed: o.seed, pageSize: o.pageSize, hugetlbSize: o.hugetlbSize, hugetlbPages: o.hugetlbPages,
    deviceMemory: [{ name: DEVICE_REGION_NAME, bytes: o.deviceGiB * GiB }], regions, description,
    memmap: m.memmapBytes(),
  };
}

/** The memmap the page-based layouts need for a device buffer of len bytes (see BufferMemmap). */
export function deviceBufferMemmap(len: number, regionLen: number, pageSize: number): BufferMemmap {
  const bufferBytes = memmapBytesFor(len, pageSize);
  const regionBytes = memmapBytesFor(regionLen, pageSize);
  const text = `struct page for ${DEVICE_REGION_NAME} as ZONE_DEVICE (P2PDMA pgmap, ${STRUCT_PAGE_SIZE} B per ${formatBytes(pageSize)} page): ` +
    `${formatBytes(regionBytes)} of memmap for the ${formatBytes(regionLen)} region (${formatBytes(bufferBytes)} for this buffer's pages); ` +
    'the phyr list needs none';
  return { structPageSize: STRUCT_PAGE_SIZE, pageSize, region: DEVICE_REGION_NAME, regionLen, bufferBytes, regionBytes, phyrBytes: 0, text };
}

/** Number of progress steps runCompare reports for these options. */
export function compareSteps(opts: CompareOptions = {}): number {
  const o = resolveCompareOptions(opts);
  return 1 + o.buffers.length * (1 + LAYOUT_NAMES.length) + (o.mapping ? mappingSteps(compareMappingOptions(opts)) : 0);
}

/** The MappingOptions runCompare passes to runMapping (exported so tests can rebuild the same machines). */
export function compareMappingOptions(opts: CompareOptions = {}): MappingOptions {
  const o = resolveCompareOptions(opts);
  return {
    ramGiB: o.ramGiB, aged: o.aged, seed: o.seed, pageSize: o.pageSize,
    hugetlb: hugetlbPools(o), deviceGiB: o.deviceGiB,
    maxSegment: o.maxSegment,
    buffers: o.buffers.map((name) => ({
      name, label: bufferLabel(name, o.bufferLen[name], o.pageSize), len: o.bufferLen[name],
      kind: name === 'device' ? 'device' as const : 'ram' as const,
      backing: name === 'device' ? 'device' : backingOf(name, o.pageSize) as string,
    })),
    ...(opts.mappingConfigs ? { configs: opts.mappingConfigs } : {}),
    ...(opts.verifyWindows !== undefined ? { verifyWindows: opts.verifyWindows } : {}),
    ...(opts.dmaDebug !== undefined ? { dmaDebug: opts.dmaDebug } : {}),
  };
}

/** Runs the mapping section's configurations elsewhere (the CLI: on worker threads). */
export interface MappingConfigRunner {
  /**
   * Starts the configurations and resolves to each one's rows (runMappingConfig), in the order of
   * `configs`, whatever order or threads they ran on. onStep is called after each step of any
   * configuration.
   */
  run(o: MappingOptions, configs: readonly MappingConfigName[], onStep: (label: string) => void): Promise<ReadonlyArray<readonly MappingRow[]>>;
  /**
   * Called once this thread is free (the layout section done): may run configurations nobody has
   * started yet here, with runConfig, before run's promise settles.
   */
  helpHere?(runConfig: typeof runMappingConfig): void;
}

/** The layout section: the machine, and every selected buffer mapped and measured in every layout. */
function runLayouts(opts: CompareOptions, o: ResolvedOptions, step: (label: string) => void): {
  machine: MachineReport; buffers: BufferReport[]; headline: Headline | null;
} {
  const m = createMmMachine(compareMachineConfig(opts));
  const mm = m.newProcess();
  step('machine created');
  const buffers: BufferReport[] = [];
  let headline: Headline | null = null;
  for (const name of o.buffers) {
    const len = o.bufferLen[name];
    const label = bufferLabel(name, len, o.pageSize);
    const t0 = performance.now();
    const mapped = mapCompareBuffer(mm, name, len);
    const mmapMs = msSince(t0);
    step(`${label}: mapped`);
    if (!mapped.ok) {
      for (let i = 0; i < LAYOUT_NAMES.length; i++) step(`${label}: skipped`);
      buffers.push({
        name, label, backing: backingText(backingOf(name, o.pageSize)), len, userAddr: null,
        mmapErrno: mapped.errno, mmapMessage: mapped.message ?? null, mmapMs, rows: [],
        memmap: name === 'device' ? deviceBufferMemmap(len, o.deviceGiB * GiB, o.pageSize) : null,
      });
      continue;
    }
    const rows: LayoutRow[] = [];
    for (const layout of LAYOUT_NAMES) {
      rows.push(measureLayout(mm, mapped.value, len, layout, o));
      step(`${label}: ${LAYOUT_LABELS[layout]}`);
    }
    if (name === 'hugetlb') headline = measureHeadline(mm, mapped.value, o.pageSize);
    buffers.push({
      name, label, backing: backingText(backingOf(name, o.pageSize)), len, userAddr: hex(mapped.value),
      mmapErrno: null, mmapMessage: null, mmapMs, rows,
      memmap: name === 'device' ? deviceBufferMemmap(len, o.deviceGiB * GiB, o.pageSize) : null,
    });
  }
  return { machine: describeMachine(m, o), buffers, headline };
}

function report(
  opts: CompareOptions, o: ResolvedOptions, layouts: ReturnType<typeof runLayouts>, mapping: MappingReport | null, tStart: number,
): CompareReport {
  return {
    tool: 'phyr compare',
    version: 2,
    machine: layouts.machine,
    maxSegment: o.maxSegment,
    maxSegmentNote: opts.maxSegment === undefined
      ? `max_segment ${o.maxSegment} (0x${o.maxSegment.toString(16)}) = UINT_MAX rounded down to the page size, as sg_alloc_table_from_pages uses`
      : `max_segment ${o.maxSegment} (set by option; rounded down to the page size by sgAllocTableFromPagesSegment)`,
    buffers: layouts.buffers,
    headline: layouts.headline,
    mapping,
    legend: LEGEND,
    totalMs: msSince(tStart),
  };
}

/** What runCompare and runCompareAsync set up alike: the checked options, a progress step, the mapping configurations. */
function startCompare(opts: CompareOptions, onProgress: ProgressFn | undefined) {
  const tStart = performance.now();
  const o = resolveCompareOptions(opts);
  const total = compareSteps(opts);
  let done = 0;
  const step = (label: string): void => { done++; onProgress?.(done, total, label); };
  const mo = o.mapping ? compareMappingOptions(opts) : null;
  const configs = mo ? checkMappingOptions(mo) : [];
  return { tStart, o, step, mo, configs };
}

/**
 * Runs the comparison in this thread: builds the machine, maps every selected
 * buffer into one process, and measures every layout for each; then the mapping section, if asked
 * for. Pure data out; deterministic except the *Ms fields.
 * @throws TypeError/RangeError for invalid options (naming the option). Kernel failures (a buffer that
 * cannot be mapped, a layout that cannot describe it) are reported in the data, not thrown.
 */
export function runCompare(opts: CompareOptions = {}, onProgress?: ProgressFn): CompareReport {
  const { tStart, o, step, mo, configs } = startCompare(opts, onProgress);
  const layouts = runLayouts(opts, o, step);
  const mapping = mo ? mappingReport(mo, configs.map((n) => runMappingConfig(mo, n, (label) => step(`mapping ${label}`)))) : null;
  return report(opts, o, layouts, mapping, tStart);
}

/**
 * runCompare with the mapping section's configurations handed to `runner` (the CLI runs them on
 * worker threads), which starts them before the layout section runs in this thread, so both proceed
 * at once; then this thread helps (runner.helpHere). The report is the one runCompare gives, apart
 * from the *Ms fields.
 * @throws as runCompare (a configuration's error as the runner rejects with it).
 */
export async function runCompareAsync(opts: CompareOptions, onProgress: ProgressFn | undefined, runner: MappingConfigRunner): Promise<CompareReport> {
  const { tStart, o, step, mo, configs } = startCompare(opts, onProgress);
  const pending = mo ? runner.run(mo, configs, (label) => step(`mapping ${label}`)) : null;
  // A rejection while the layouts run is awaited below; until then it must not count as unhandled.
  pending?.catch(() => undefined);
  const layouts = runLayouts(opts, o, step);
  if (pending) runner.helpHere?.(runMappingConfig);
  const mapping = mo && pending ? mappingReport(mo, await pending) : null;
  return report(opts, o, layouts, mapping, tStart);
}
