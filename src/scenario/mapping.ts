// The DMA mapping half of the comparison report: the buffers of the layout comparison mapped for a
// PCI device on machines that differ in their DMA path (dma-direct, dma-iommu strict / lazy, an
// untrusted device, a force-bounce guest, P2P through a switch or the host bridge), by the four
// designs of drivers/umem: scatterlist + dmaMapSgtable, one dmaMapPhys per phyr, the two-step
// dmaIova* API, and dmaMapPhyrs. Every mapping is checked by a device round trip that moves real
// bytes.

import { GiB, KiB, MiB, checkLen, type Errno } from '../base/index.ts';
import { DMA_BIT_MASK, dmaSetMaskAndCoherent, dmaSetMaxSegSize, dmaSetMinAlignMask } from '../dma/index.ts';
import { UMEM_METHODS, UMEM_METHOD_LABELS, umemMap, type UmemMethod, type UmemSegments } from '../drivers/index.ts';
import { createMachine, type Machine, type MachineConfig } from '../machine/index.ts';
import type { HugetlbSize, MmapBacking, UserMm } from '../mm/index.ts';
import type { Device, PciNodeConfig } from '../pci/index.ts';
import type { IommuConfig } from '../iommu/index.ts';
import { patternBytes as fill } from '../base/index.ts';

/** The mmap backing of a mapping buffer on a configuration (the P2P BAR of gpu0 in the P2P configurations). */
export function mappingBacking(b: MappingOptions['buffers'][number], config: MappingConfigName): MmapBacking {
  if (b.kind === 'device') return { device: MAPPING_CONFIGS[config].p2p ? 'gpu0.bar0' : 'bar0', offset: 0 };
  return b.backing as 'anon' | 'thp' | `hugetlb-${HugetlbSize}`;
}

/** The machine configurations of the mapping section, in report order. */
export const MAPPING_CONFIG_NAMES = [
  'no-iommu', 'iommu-strict', 'iommu-lazy', 'untrusted', 'force-bounce', 'p2p-switch', 'p2p-host-bridge', 'non-coherent',
] as const;
export type MappingConfigName = (typeof MAPPING_CONFIG_NAMES)[number];

/** The mapping methods (drivers/umem's designs), in report order. */
export const MAPPING_METHOD_NAMES = UMEM_METHODS;
export type MappingMethod = UmemMethod;
export const MAPPING_METHOD_LABELS = UMEM_METHOD_LABELS;

interface ConfigSpec {
  readonly label: string;
  readonly iommu: 'strict' | 'lazy' | null;
  readonly force: boolean;
  /** The device that does the DMA. */
  readonly device: string;
  /** The device buffer is the P2P BAR of gpu0 (else the plain device region of the layout comparison). */
  readonly p2p: boolean;
  /**
   * Bytes into each buffer where the pinned and mapped part starts (it runs to the buffer's end). A
   * sub-page offset makes the first range granule-unaligned, which untrusted devices bounce.
   */
  readonly offset: number;
  /**
   * dma_set_min_align_mask the device's driver sets (0: none). The untrusted device is an NVMe
   * drive in a Thunderbolt enclosure, so it gets nvme's NVME_CTRL_PAGE_SIZE - 1 (drivers/nvme/host/pci.c: nvme_pci_alloc_dev()).
   */
  readonly minAlignMask: number;
  /** A line the report prints under the configuration's title (null: none). */
  readonly note: string | null;
  /** The device does not snoop the CPU caches (pci[].coherent: false, arm64-style). Default: coherent. */
  readonly nonCoherent?: boolean;
}

/** The PCI tree of a configuration's machine: `pci` with the configuration's device made non-coherent if it says so. */
export function mappingPciFor(pci: readonly PciNodeConfig[], name: MappingConfigName): PciNodeConfig[] {
  const c = MAPPING_CONFIGS[name];
  return pci.map((n) => (c.nonCoherent && n.name === c.device ? { ...n, coherent: false } : n));
}

/**
 * Where the untrusted configuration starts mapping inside each buffer: a sub-page offset, so that
 * the head of the first range is granule-unaligned and dma-iommu's swiotlb path for untrusted
 * devices (drivers/iommu/dma-iommu.c: dev_use_swiotlb(), iommu_dma_map_swiotlb()) has something to bounce (page-aligned buffers never bounce).
 */
export const UNTRUSTED_MAP_OFFSET = 512;

/** The fields most configurations share: whole buffers, no min_align_mask, no note. */
const PLAIN = { offset: 0, minAlignMask: 0, note: null } as const;

/** What each configuration is. */
export const MAPPING_CONFIGS: Readonly<Record<MappingConfigName, ConfigSpec>> = {
  'no-iommu': { label: 'no IOMMU (dma-direct), nvme0', iommu: null, force: false, device: 'nvme0', p2p: false, ...PLAIN },
  'iommu-strict': { label: 'IOMMU strict, nvme0', iommu: 'strict', force: false, device: 'nvme0', p2p: false, ...PLAIN },
  'iommu-lazy': { label: 'IOMMU lazy (flush queue), nvme0', iommu: 'lazy', force: false, device: 'nvme0', p2p: false, ...PLAIN },
  untrusted: {
    label: `untrusted NVMe tb0 behind an external port, IOMMU strict + swiotlb; each buffer mapped from byte ${UNTRUSTED_MAP_OFFSET}`,
    iommu: 'strict', force: false, device: 'tb0', p2p: false, offset: UNTRUSTED_MAP_OFFSET, minAlignMask: 4095,
    note: `Each buffer is pinned and mapped from byte ${UNTRUSTED_MAP_OFFSET} to its end, so its first range starts inside a ` +
      'granule and swiotlb bounces it: dmaMapPhys and dmaMapSgtable bounce the whole unaligned range (more than the ' +
      '252 KiB swiotlb maximum fails), dmaIovaLink only the partial head granule. tb0 sets min_align_mask 0xfff as nvme does.',
  },
  'force-bounce': {
    label: 'force-bounce guest (swiotlb=force, no IOMMU), nvme0', iommu: null, force: true, device: 'nvme0', p2p: false, ...PLAIN,
  },
  'p2p-switch': {
    label: 'P2P through a switch: nvme0 -> gpu0 BAR, IOMMU strict', iommu: 'strict', force: false, device: 'nvme0', p2p: true, ...PLAIN,
  },
  'p2p-host-bridge': {
    label: 'P2P through the host bridge: nic0 -> gpu0 BAR, IOMMU strict', iommu: 'strict', force: false, device: 'nic0', p2p: true,
    ...PLAIN,
  },
  'non-coherent': {
    label: 'non-coherent nvme0 (arm64-style, pci coherent: false), no IOMMU', iommu: null, force: false, device: 'nvme0', p2p: false,
    offset: 0, minAlignMask: 0, nonCoherent: true,
    note: 'Streaming DMA needs cache maintenance: Cache ops counts cleans / invalidates / completion waits. Since 7.1 dma_map_sg ' +
      'and dma_unmap_sg issue every segment\'s maintenance and wait once; one mapping per range waits once per range; ' +
      'dma_iova_link leaves the wait to dma_iova_sync.',
  },
};

/** The PCI tree of every mapping machine: the P2P cases come from where the devices sit. */
export const MAPPING_PCI: readonly PciNodeConfig[] = [
  { name: 'hb0', type: 'host-bridge', vendor: 0x8086, device: 0x2030 },
  { name: 'rp0', type: 'root-port', parent: 'hb0' },
  { name: 'sw0', type: 'switch', parent: 'rp0' },
  { name: 'nvme0', type: 'endpoint', parent: 'sw0', bars: [{ bytes: 16 * KiB }] },
  { name: 'gpu0', type: 'endpoint', parent: 'sw0', bars: [{ bytes: GiB, p2p: true }] },
  { name: 'rp1', type: 'root-port', parent: 'hb0', externalFacing: true },
  { name: 'tb0', type: 'endpoint', parent: 'rp1', untrusted: true },
  { name: 'rp2', type: 'root-port', parent: 'hb0' },
  { name: 'nic0', type: 'endpoint', parent: 'rp2' },
];

/** The machine counters a mapping row reports (machine.stats diffs over map + round trip + unmap). */
export interface MappingCounters {
  readonly iommuMapCalls: number;
  readonly iommuUnmapCalls: number;
  readonly iommuLeafPtesWritten: number;
  readonly iotlbInvalidations: number;
  readonly iovaAllocs: number;
  readonly bounceBytes: number;
  /** Cache maintenance on a non-coherent device: cleans and invalidates issued, completion barriers waited for. */
  readonly cacheCleans: number;
  readonly cacheInvalidates: number;
  readonly cacheSyncBarriers: number;
}

/** One (configuration, buffer, method) measurement. */
export interface MappingRow {
  readonly config: MappingConfigName;
  readonly buffer: string;
  readonly method: MappingMethod;
  readonly ok: boolean;
  readonly errno: Errno | null;
  readonly reason: string | null;
  /** DMA ranges the device is given (sg nents, mappings, 1 IOVA window, DmaList entries). */
  readonly dmaEntries: number | null;
  /** Kernel bytes of the mapping's metadata (see MAPPING_LEGEND). */
  readonly metadataBytes: number | null;
  readonly counters: MappingCounters;
  /** Bytes the device read and wrote through the mapping and the CPU checked (both directions). */
  readonly bytesVerified: number;
  /** Bytes that did not match in the round trip (0 when the mapping is correct). */
  readonly bytesMismatched: number;
  /** Model time of the pin + map, and of the unmap + unpin, ms (not deterministic). */
  readonly mapMs: number;
  readonly unmapMs: number;
  /**
   * With dma-debug on (MappingOptions.dmaDebug) only: its reports over the row, DMA-DEBUG events of
   * map, round trip and unmap, and of a leak check after the unmap (Machine.teardown: one report per
   * device with mappings still live; a leak shows in every later row of the configuration too). 0
   * for correct use. Absent when dma-debug is off.
   */
  readonly dmaDebugReports?: number;
}

export interface MappingReport {
  /** offset: bytes into each buffer where the mapped part starts (it runs to the buffer's end). */
  readonly configs: ReadonlyArray<{
    readonly name: MappingConfigName; readonly label: string; readonly offset: number; readonly note: string | null;
  }>;
  readonly buffers: ReadonlyArray<{ readonly name: string; readonly label: string; readonly len: number }>;
  /** The page tables of the IOMMU configurations (mappingIommuConfig): format and granule, in words. */
  readonly iommuTables: string;
  readonly rows: readonly MappingRow[];
  readonly legend: Readonly<Record<string, string>>;
}

export const MAPPING_LEGEND: Readonly<Record<string, string>> = {
  'DMA entries': 'DMA ranges handed to the device: scatterlist nents after mapping; mappings made; 1 for a two-step IOVA window; DmaList entries',
  'Meta bytes': 'kernel bytes of the mapping metadata: page array + sg_table; a 16 B dma_vec per mapping; 16 B dma_iova_state (+16 B per range when it fell back); DmaList (0 when it shares the input)',
  'IOMMU maps': 'iommu_map calls (machine.stats iommuMapCalls)',
  PTEs: 'IOMMU leaf PTEs written',
  'IOTLB inv': 'IOTLB range invalidations + global flushes',
  'Bounce bytes': 'bytes copied through swiotlb',
  'Cache ops': 'non-coherent device only: cache cleans / invalidates issued / completion waits (arch_sync_dma_flush), 7.1 batching',
  Verified: 'bytes the device moved through the mapping and the CPU checked: CPU writes, device reads (to device), device writes, CPU reads after unmap (from device), on sampled windows',
  'Map ms': 'model time to pin and map, ms',
};

export interface MappingOptions {
  readonly ramGiB: number;
  readonly aged: boolean;
  readonly seed: number;
  readonly pageSize: number;
  /** hugetlb pages reserved at boot, by size (MmConfig.hugetlb). */
  readonly hugetlb: { readonly [K in HugetlbSize]?: number };
  readonly deviceGiB: number;
  readonly maxSegment: number;
  /** Buffers as (name, label, len, mmap backing for non-P2P and P2P machines). */
  readonly buffers: ReadonlyArray<{ readonly name: string; readonly label: string; readonly len: number; readonly kind: 'ram' | 'device'; readonly backing: string }>;
  readonly configs?: readonly MappingConfigName[];
  /** Windows sampled by the round trip per buffer (default 32) and their length (default 4096). */
  readonly verifyWindows?: number;
  readonly verifyWindowLen?: number;
  /**
   * Run the machines with dma-debug checking every mapping (CONFIG_DMA_API_DEBUG; default false, as
   * production kernels are built). It only observes: every figure but the times is the same either
   * way, and each row then also counts its reports (MappingRow.dmaDebugReports).
   */
  readonly dmaDebug?: boolean;
}

/**
 * The rows whose device round trip read back bytes that differ from what was written: none unless
 * the model has a defect (each row maps, moves and checks real bytes). One line per row, for the CLI.
 */
export function mappingWrongBytes(rows: readonly MappingRow[]): string[] {
  return rows.filter((r) => r.bytesMismatched > 0)
    .map((r) => `${r.config} / ${r.buffer} / ${r.method}: ${r.bytesMismatched} bytes differ`);
}

/**
 * The tree with every BAR at least a page: the machine places BARs as whole pages, so at 64 KiB
 * pages nvme0's 16 KiB register BAR takes one page.
 */
function pagedBars(pci: readonly PciNodeConfig[], pageSize: number): PciNodeConfig[] {
  return pci.map((n) => (n.bars?.some((b) => b.bytes < pageSize)
    ? { ...n, bars: n.bars.map((b) => (b.bytes < pageSize ? { ...b, bytes: pageSize } : b)) }
    : n));
}

/**
 * The IOMMU of a mapping machine: x86-64 first-stage tables at 4 KiB pages; at 16 / 64 KiB pages
 * (an arm64 kernel) an SMMU's ARM LPAE tables, whose granule io-pgtable-arm takes from PAGE_SIZE
 * (arm_lpae_restrict_pgsizes()): no x86 IOMMU has larger pages.
 */
export function mappingIommuConfig(pageSize: number, mode: 'strict' | 'lazy'): IommuConfig {
  return pageSize === 4096 ? { format: 'x86-64', levels: 4, mode } : { format: 'arm-lpae', mode };
}

/** The createMachine config of a mapping machine. */
export function mappingMachineConfig(o: MappingOptions, name: MappingConfigName): MachineConfig {
  const c = MAPPING_CONFIGS[name];
  return {
    ramBytes: o.ramGiB * GiB, pageSize: o.pageSize, aged: o.aged, seed: o.seed,
    hugetlb: o.hugetlb,
    deviceMemory: [{ name: 'bar0', bytes: o.deviceGiB * GiB }],
    cpu: { vendor: 'intel' },
    pci: pagedBars(mappingPciFor(MAPPING_PCI, name), o.pageSize),
    ...(c.iommu ? { iommu: mappingIommuConfig(o.pageSize, c.iommu) } : {}),
    swiotlb: { bytes: 64 * MiB, force: c.force },
  };
}

function counters(m: Machine, since: Record<string, number>): MappingCounters {
  const d = m.stats.diff(since);
  return {
    iommuMapCalls: d.iommuMapCalls ?? 0,
    iommuUnmapCalls: d.iommuUnmapCalls ?? 0,
    iommuLeafPtesWritten: d.iommuLeafPtesWritten ?? 0,
    iotlbInvalidations: (d.iotlbRangeInvalidations ?? 0) + (d.iotlbGlobalFlushes ?? 0),
    iovaAllocs: d.iovaAllocs ?? 0,
    bounceBytes: d.swiotlbBounceBytes ?? 0,
    cacheCleans: d.cacheCleans ?? 0,
    cacheInvalidates: d.cacheInvalidates ?? 0,
    cacheSyncBarriers: d.cacheSyncBarriers ?? 0,
  };
}

function msSince(t0: number): number {
  return performance.now() - t0;
}


/** Sampled windows [offset, len) spread over a buffer of len bytes. */
export function verifyWindows(bufLen: number, count: number, winLen: number): Array<[number, number]> {
  const w = Math.min(winLen, bufLen);
  // n windows of w bytes fit, so the spacing is at least w and the windows never overlap.
  const n = Math.min(count, Math.floor(bufLen / w));
  if (n <= 1) return [[0, w]];
  const step = Math.floor((bufLen - w) / (n - 1));
  const out: Array<[number, number]> = [];
  for (let i = 0; i < n; i++) out.push([i === n - 1 ? bufLen - w : i * step, w]);
  return out;
}

/** Byte offset of each DMA segment's start in the mapped buffer (one more entry: the total). */
function segStarts(segs: UmemSegments): Float64Array {
  const n = segs.count;
  const starts = new Float64Array(n + 1);
  for (let i = 0; i < n; i++) starts[i + 1] = starts[i] + segs.lenAt(i);
  return starts;
}

/**
 * Pieces (dmaAddr, len) of the buffer bytes [off, off+len) given the DMA segments in byte order and
 * their start offsets (segStarts).
 */
function dmaPieces(segs: UmemSegments, starts: Float64Array, off: number, len: number): Array<[bigint, number]> {
  const out: Array<[bigint, number]> = [];
  const count = segs.count;
  // the last segment starting at or before off
  let a = 0, b = count;
  while (b - a > 1) {
    const m = (a + b) >> 1;
    if (starts[m] <= off) a = m; else b = m;
  }
  for (let i = a; i < count && len > 0; i++) {
    const inner = off - starts[i];
    const n = Math.min(len, starts[i + 1] - starts[i] - inner);
    if (n <= 0) continue;
    out.push([segs.addrAt(i) + BigInt(inner), n]);
    off += n;
    len -= n;
  }
  return out;
}

/**
 * dma-debug's reports since `since` (a count of DMA-DEBUG events), after a leak check of every device
 * (what a driver release reports: one report per device with mappings still live).
 */
function dmaDebugReportsSince(m: Machine, since: number): number {
  m.teardown();
  return m.events.count('DMA-DEBUG') - since;
}

/**
 * Maps [start, start+len) of mm for dev by one method, runs the device round trip on sampled
 * windows, unmaps, and reports. Failures of the modeled kernel are rows with ok false and the errno.
 */
export function measureMapping(
  m: Machine, dev: Device, mm: UserMm, start: bigint, len: number, method: MappingMethod, o: MappingOptions,
  p2p: boolean, ids: { config: MappingConfigName; buffer: string },
): MappingRow {
  const since = m.stats.snapshot();
  const debugOn = m.dmaDebug.enabled;
  const debugSince = m.events.count('DMA-DEBUG');
  const debugField = (): { dmaDebugReports?: number } => (debugOn ? { dmaDebugReports: dmaDebugReportsSince(m, debugSince) } : {});
  const windows = verifyWindows(len, o.verifyWindows ?? 32, o.verifyWindowLen ?? 4096);
  const seedBase = m.stats.dmaMapCalls + 1;
  // Pattern A (CPU writes, device reads) and pattern B (device writes, CPU reads) of each window.
  const patA = windows.map(([off, wl]) => fill(wl, seedBase + off));
  const patB = windows.map(([off, wl]) => fill(wl, seedBase + off + 7919));
  // CPU writes pattern A before mapping (to-device direction; bounces copy it in at map).
  windows.forEach(([off], w) => mm.writeUser(start + BigInt(off), patA[w]));
  const t0 = performance.now();
  const mapped = umemMap(dev, mm, start, len, method, { p2p, maxSegment: o.maxSegment });
  const mapMs = msSince(t0);
  const base = { config: ids.config, buffer: ids.buffer, method };
  if (!mapped.ok) {
    return {
      ...base, ok: false, errno: mapped.errno, reason: mapped.message ?? null, dmaEntries: null, metadataBytes: null,
      counters: counters(m, since), bytesVerified: 0, bytesMismatched: 0, mapMs, unmapMs: 0, ...debugField(),
    };
  }
  const mp = mapped.value;
  const segs = mp.segments;
  const dmaEntries = segs.count;
  const starts = segStarts(segs);
  let verified = 0;
  let mismatched = 0;
  const compare = (got: Uint8Array, want: Uint8Array): void => {
    let bad = 0;
    for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) bad++;
    mismatched += bad;
    verified += want.length - bad;
  };
  windows.forEach(([off, wl], w) => {
    const pieces = dmaPieces(segs, starts, off, wl);
    const got = new Uint8Array(wl);
    let at = 0;
    for (const [a, n] of pieces) {
      const r = dev.dmaRead(a, n);
      if (r.ok) got.set(r.value, at);
      at += n;
    }
    compare(got, patA[w]);
    // Device writes pattern B (from-device direction).
    const b = patB[w];
    at = 0;
    for (const [a, n] of pieces) {
      dev.dmaWrite(a, b.subarray(at, at + n));
      at += n;
    }
  });
  const t1 = performance.now();
  mp.unmap();
  const unmapMs = msSince(t1);
  windows.forEach(([off, wl], w) => {
    const r = mm.readUser(start + BigInt(off), wl);
    compare(r.ok ? r.value : new Uint8Array(wl), patB[w]);
  });
  return {
    ...base, ok: true, errno: null, reason: null, dmaEntries, metadataBytes: mp.metadataBytes,
    counters: counters(m, since), bytesVerified: verified, bytesMismatched: mismatched, mapMs, unmapMs, ...debugField(),
  };
}

/** Number of progress steps runMapping reports. */
export function mappingSteps(o: MappingOptions): number {
  return (o.configs ?? MAPPING_CONFIG_NAMES).length * (1 + o.buffers.length * MAPPING_METHOD_NAMES.length);
}

/**
 * Checks the options of the mapping section and returns the configurations it runs, in report order.
 * @throws RangeError/TypeError for invalid options (naming them).
 */
export function checkMappingOptions(o: MappingOptions): readonly MappingConfigName[] {
  checkLen('verifyWindows', o.verifyWindows ?? 32, 1, 1 << 16);
  checkLen('verifyWindowLen', o.verifyWindowLen ?? 4096, 1, 1 << 24);
  if (o.dmaDebug !== undefined && typeof o.dmaDebug !== 'boolean') {
    throw new TypeError(`dmaDebug must be a boolean, got ${typeof o.dmaDebug} ${String(o.dmaDebug)}`);
  }
  const configs = o.configs ?? MAPPING_CONFIG_NAMES;
  for (const n of configs) {
    if (!Object.hasOwn(MAPPING_CONFIGS, n)) throw new RangeError(`configs must name mapping configurations (${MAPPING_CONFIG_NAMES.join(', ')}), got ${JSON.stringify(n)}`);
  }
  return configs;
}

/**
 * One configuration of the mapping section: its own machine, the buffers mapped into one process,
 * each mapped by every method with a device round trip. The rows depend on nothing but o and name,
 * so configurations may run in any order or on separate threads (the CLI runs them on workers).
 * @throws RangeError/TypeError for invalid options (naming them).
 */
export function runMappingConfig(o: MappingOptions, name: MappingConfigName, onProgress?: (label: string) => void): MappingRow[] {
  checkMappingOptions(o);
  const spec = MAPPING_CONFIGS[name];
  if (spec === undefined || !Object.hasOwn(MAPPING_CONFIGS, name)) {
    throw new RangeError(`name must be a mapping configuration (${MAPPING_CONFIG_NAMES.join(', ')}), got ${JSON.stringify(name)}`);
  }
  const rows: MappingRow[] = [];
  const m = createMachine(mappingMachineConfig(o, name));
  // dma-debug (kernel/dma/debug.c) observes only: the figures are the same without it.
  m.dmaDebug.enabled = o.dmaDebug ?? false;
  // the rows read the cache counters; keeping one CACHE event per maintenance operation (hundreds of
  // thousands on the non-coherent configuration) would cost seconds and show nothing more
  m.events.mute('CACHE');
  // what the devices' drivers set at probe: a 64-bit mask and, as nvme_pci_alloc_dev() does,
  // dma_set_max_seg_size(0xffffffff) over the PCI default of 64 KiB (drivers/pci/probe.c)
  for (const d of m.devices()) {
    dmaSetMaskAndCoherent(d, DMA_BIT_MASK(64));
    dmaSetMaxSegSize(d, 0xffffffff);
  }
  const dev = m.device(spec.device);
  if (spec.minAlignMask) dmaSetMinAlignMask(dev, spec.minAlignMask);
  const mm = m.newProcess();
  onProgress?.(`${name}: machine`);
  for (const b of o.buffers) {
    const mapped = mm.mmap({ len: b.len, backing: mappingBacking(b, name), populate: true });
    for (const method of MAPPING_METHOD_NAMES) {
      if (!mapped.ok) {
        rows.push({
          config: name, buffer: b.name, method, ok: false, errno: mapped.errno, reason: `mmap: ${mapped.message ?? mapped.errno}`,
          dmaEntries: null, metadataBytes: null, counters: counters(m, m.stats.snapshot()), bytesVerified: 0, bytesMismatched: 0, mapMs: 0, unmapMs: 0,
          ...(m.dmaDebug.enabled ? { dmaDebugReports: 0 } : {}),
        });
      } else {
        rows.push(measureMapping(m, dev, mm, mapped.value + BigInt(spec.offset), b.len - spec.offset, method, o,
          b.kind === 'device' && spec.p2p, { config: name, buffer: b.name }));
      }
      onProgress?.(`${name}: ${b.name} ${MAPPING_METHOD_LABELS[method]}`);
    }
  }
  return rows;
}

/** The mapping report of these options from each configuration's rows (in the order of configs). */
export function mappingReport(o: MappingOptions, rowsByConfig: ReadonlyArray<readonly MappingRow[]>): MappingReport {
  const configs = checkMappingOptions(o);
  if (rowsByConfig.length !== configs.length) {
    throw new RangeError(`rowsByConfig must hold one row list per configuration (${configs.length}), got ${rowsByConfig.length}`);
  }
  return {
    configs: configs.map((n) => ({
      name: n, label: MAPPING_CONFIGS[n].label, offset: MAPPING_CONFIGS[n].offset, note: MAPPING_CONFIGS[n].note,
    })),
    buffers: o.buffers.map((b) => ({ name: b.name, label: b.label, len: b.len })),
    iommuTables: o.pageSize === 4096 ? 'x86-64 first-stage tables, 4 levels, 4 KiB pages'
      : `ARM LPAE stage-1 tables (an arm64 SMMU), ${o.pageSize / KiB} KiB granule: no x86 IOMMU has pages of the machine's ${o.pageSize / KiB} KiB`,
    rows: rowsByConfig.flat(),
    legend: MAPPING_LEGEND,
  };
}

/**
 * Runs the mapping section in this thread: one machine per configuration (runMappingConfig), in
 * report order.
 * @throws RangeError/TypeError for invalid options (naming them).
 */
export function runMapping(o: MappingOptions, onProgress?: (label: string) => void): MappingReport {
  const configs = checkMappingOptions(o);
  return mappingReport(o, configs.map((name) => runMappingConfig(o, name, onProgress)));
}
