// What it is: the dma_map_ops side-by-side report (`phyr dmaops`). One phyr list, the same on every
// row, goes through each way a Linux device maps memory: dma-direct (swiotlb behind it), dma-iommu
// (strict), ARM32 iommu_ops (dma-iommu with arch/arm/mm/dma-mapping.c's bitmap allocator), fixed
// translation (ibmebus: dma-direct with a dma_range_map offset), the GART aperture with iommu=merge off
// and on, the PowerPC TCE table without and with a dynamic DMA window, Xen swiotlb, Xen grants and
// dma_dummy_ops; in each layout the DMA layer accepts it (the phyr list and a bio_vec list through
// dmaMapPhyrs, a scatterlist through dmaMapSgtable, one dmaMapPhys per range). Each row counts the
// DMA segments, table entries written, bytes bounced and flushes, moves real bytes both ways, then
// probes what a late device write after unmap reaches.

import { GiB, MiB } from '../base/index.ts';
import {
  DMA_BIDIRECTIONAL, DMA_BIT_MASK, dmaMapPhys, dmaMapPhyrs, dmaMapSgtable, dmaOpsInspect, dmaSetMaskAndCoherent, dmaUnmapPhys,
  dmaUnmapPhyrs, dmaUnmapSgtable, type DmaOpsConfig, type DmaOpsState,
} from '../dma/index.ts';
import type { IommuConfig } from '../iommu/index.ts';
import { createMachine, type Machine } from '../machine/index.ts';
import type { Device, PciNodeConfig } from '../pci/index.ts';
import { PhyrList, sgAllocTable, toBvecList, type Range, type RangeSource } from '../phyr/index.ts';
import { patternBytes as pattern } from '../base/index.ts';

/** The machine's PCI tree: the mapping device nic0 below a switch. */
const NODES: readonly PciNodeConfig[] = [
  { name: 'hb0', type: 'host-bridge', vendor: 0x8086, device: 0x2030 },
  { name: 'rp0', type: 'root-port', parent: 'hb0' },
  { name: 'sw0', type: 'switch', parent: 'rp0' },
  { name: 'nic0', type: 'endpoint', parent: 'sw0', bars: [{ bytes: 65536 }] },
] as PciNodeConfig[];

/** ppc64's PAGE_OFFSET: ibmebus_map_phys returns phys_to_virt(phys). */
const PPC64_PAGE_OFFSET = 0xc000_0000_0000_0000n;
const DDW_OFFSET = 1n << 59n;

/** One way of mapping, as a machine configuration. */
export interface DmaOpsReportConfig {
  readonly label: string;
  /** The kernel's code that the row stands for. */
  readonly kernel: string;
  /** How this way coalesces (or why it does not). */
  readonly merge: string;
  readonly mask: 32 | 64;
  readonly pageSize?: number;
  readonly iommu?: IommuConfig;
  readonly dmaOps?: DmaOpsConfig;
  /** dma_range_map of the device (fixed translation). */
  readonly rangeOffset?: bigint;
}

export const DMAOPS_CONFIGS: readonly DmaOpsReportConfig[] = [
  { label: 'dma-direct', kernel: 'kernel/dma/direct.c + swiotlb.c', mask: 32,
    merge: 'never merges itself; ranges past the 32-bit mask bounce, and slots taken back to back are adjacent DMA addresses, which a DMA list joins' },
  { label: 'dma-iommu (strict)', kernel: 'drivers/iommu/dma-iommu.c', mask: 32, iommu: { format: 'x86-64', mode: 'strict' },
    merge: 'dmaMapPhyrs: one IOVA window only when every interior boundary is granule-aligned, else per range; dma_map_sg: one IOVA run, segments joined across granule boundaries' },
  { label: 'arm32 iommu_ops', kernel: 'arch/arm/mm/dma-mapping.c', mask: 32,
    iommu: { format: 'arm-lpae', mode: 'strict', arm32Mapping: { base: 0x1000n, size: 1n << 32n } },
    merge: 'dma-iommu with the ARM32 bitmap allocator: no two-step API, so dmaMapPhyrs maps per range' },
  { label: 'fixed (ibmebus)', kernel: 'arch/powerpc/platforms/pseries/ibmebus.c', mask: 64, rangeOffset: PPC64_PAGE_OFFSET,
    merge: 'no state: dma = phys + PAGE_OFFSET, one segment per range (physically adjacent ranges stay adjacent, and a DMA list joins them)' },
  { label: 'gart', kernel: 'arch/x86/kernel/amd_gart_64.c', mask: 32, dmaOps: { kind: 'gart', busBase: 0xe000_0000n, pages: 4096 },
    merge: 'no iommu=merge: each entry its own GATT run (consecutive runs give adjacent bus addresses, which a DMA list joins); ranges the mask reaches pass through' },
  { label: 'gart merge', kernel: 'arch/x86/kernel/amd_gart_64.c', mask: 32,
    dmaOps: { kind: 'gart', busBase: 0xe000_0000n, pages: 4096, merge: true },
    merge: 'iommu=merge: page-aligned entries are made DMA-contiguous in one GATT run' },
  { label: 'tce', kernel: 'arch/powerpc/kernel/iommu.c', mask: 32, dmaOps: { kind: 'tce', offset: 0, size: 2048, pageShift: 12 },
    merge: 'ppc_iommu_map_sg: an entry merges when its TCEs follow the previous handle and both ends are I/O-page aligned' },
  { label: 'tce + DDW (64K)', kernel: 'arch/powerpc/kernel/dma-iommu.c', mask: 64, pageSize: 65536,
    dmaOps: { kind: 'tce', offset: 0, size: 2048, pageShift: 12, ddw: { dmaOffset: DDW_OFFSET, busDmaLimit: DDW_OFFSET + 0x1_8000_0000n } },
    merge: 'ranges the direct window covers go to dma-direct at phys + dma_offset, the rest to the table; dma_map_sg bypasses only when every entry fits (arch_dma_map_sg_direct)' },
  { label: 'xen-swiotlb', kernel: 'drivers/xen/swiotlb-xen.c', mask: 64,
    dmaOps: { kind: 'xen-swiotlb', p2m: [[0x100000, 0x100001], [0x100001, 0x100000]] },
    merge: 'never merges; a range over Xen frames that are not machine-contiguous bounces' },
  { label: 'xen-grant', kernel: 'drivers/xen/grant-dma-ops.c', mask: 64, dmaOps: { kind: 'xen-grant', backendDomid: 1, frames: 8 },
    merge: 'each range its own grant references; consecutive references are adjacent DMA addresses, which a DMA list joins' },
  { label: 'dummy', kernel: 'kernel/dma/dummy.c', mask: 64, dmaOps: { kind: 'dummy' },
    merge: 'every map fails' },
];

/** The list every row maps: adjacent, scattered and sub-page ranges above 4 GiB, and one below 4 GiB. */
export const DMAOPS_LIST: readonly Range[] = [
  { addr: 0x1_0000_0000n, len: 0x2000, flags: 0 },
  { addr: 0x1_0000_2000n, len: 0x1000, flags: 0 },
  { addr: 0x1_4000_0000n, len: 0x4000, flags: 0 },
  { addr: 0x1_8000_0100n, len: 0x300, flags: 0 },
  { addr: 0x4000_0000n, len: 0x1000, flags: 0 },
];

export const DMAOPS_LAYOUTS = ['phyr', 'bvec', 'sg', 'per-range'] as const;
export type DmaOpsLayout = (typeof DMAOPS_LAYOUTS)[number];

export interface DmaOpsRow {
  readonly config: string;
  readonly layout: DmaOpsLayout;
  /** ok, or the errno of the failed map. */
  readonly result: string;
  /** DMA segments the device is given (0 on failure). */
  readonly segments: number;
  /** Table entries written: GATT / TCE / grant entries, or IOMMU leaf PTEs. */
  readonly entries: number;
  /** Bytes copied through swiotlb (map and unmap). */
  readonly bounceBytes: number;
  /** GART flushes, TCE invalidations, IOTLB range invalidations and global flushes. */
  readonly flushes: number;
  /** What a device write at the first segment reaches after unmap. */
  readonly afterUnmap: string;
  /** Bytes the device wrote and the CPU checked plus bytes the CPU wrote and the device read back. */
  readonly bytesVerified: number;
}

export interface DmaOpsReport {
  readonly title: string;
  readonly list: Array<{ addr: string; len: number }>;
  /** Each configuration; maskResult is what dma_set_mask_and_coherent returned. */
  readonly configs: Array<{ label: string; kernel: string; mask: number; maskResult: string; pageSize: number; merge: string }>;
  readonly rows: DmaOpsRow[];
  readonly legend: Record<string, string>;
}

export const DMAOPS_LEGEND: Record<string, string> = {
  'result': 'ok, or the errno the map returned (DMA_MAPPING_ERROR is ENOMEM for dma_map_phys; map_sg gives EINVAL, ENOMEM or EIO)',
  'segments': 'DMA segments handed to the device: what the configuration coalesced',
  'entries': 'table entries written by the map: GATT PTEs, TCEs, grant entries, or IOMMU leaf PTEs',
  'bounceBytes': 'bytes copied through the swiotlb pool by the map, the device write and the unmap',
  'flushes': 'GART flushes, TCE invalidations, IOTLB range invalidations and global flushes during the map and unmap',
  'afterUnmap': 'what a device write to the first DMA address reaches once everything is unmapped',
  'bytesVerified': 'bytes the device wrote that the CPU read back right, plus bytes the CPU wrote that the device read right',
};

/**
 * The rows that mapped but did not verify both directions of the round trip (2 x the list's bytes):
 * a model defect. One line each.
 */
export function dmaOpsWrongBytes(r: DmaOpsReport): string[] {
  const total = r.list.reduce((a, x) => a + x.len, 0);
  return r.rows.filter((x) => x.result === 'ok' && x.bytesVerified !== 2 * total)
    .map((x) => `${x.config} / ${x.layout}: ${x.bytesVerified} of ${2 * total} bytes verified`);
}


function same(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function reportMachine(c: DmaOpsReportConfig, seed: number): { m: Machine; dev: Device; maskResult: string } {
  const m = createMachine({
    ramBytes: 6 * GiB, seed, swiotlb: { bytes: 4 * MiB }, pci: NODES as PciNodeConfig[],
    ...(c.pageSize ? { pageSize: c.pageSize } : {}),
    ...(c.iommu ? { iommu: c.iommu } : {}),
    ...(c.dmaOps ? { dmaOps: c.dmaOps } : {}),
  });
  const dev = m.device('nic0');
  const r = dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(c.mask));
  if (!r.ok) {
    // dma_dummy_ops: dma_supported is 0, so dma_set_mask fails (EIO); the mask is set anyway to show the maps fail too
    dev.dmaMask = DMA_BIT_MASK(c.mask);
    dev.coherentDmaMask = DMA_BIT_MASK(c.mask);
  }
  if (c.rangeOffset !== undefined) dev.dmaRangeMap = [{ cpuStart: 0n, dmaStart: c.rangeOffset, len: 2 ** 52 }];
  return { m, dev, maskResult: r.ok ? 'ok' : r.errno };
}

/** Table entries that differ between two inspections. */
function entriesChanged(before: DmaOpsState | null, after: DmaOpsState | null): number {
  if (before === null || after === null) return 0;
  const old = new Map(before.entries.map(([i, v]) => [i, v]));
  let n = 0;
  for (const [i, v] of after.entries) if (old.get(i) !== v) n++;
  return n;
}

interface Mapped { segs: Array<{ addr: bigint; len: number }>; unmap: () => void }

function mapLayout(dev: Device, layout: DmaOpsLayout, src: PhyrList, pageSize: number): Mapped | string {
  const dir = DMA_BIDIRECTIONAL;
  if (layout === 'phyr' || layout === 'bvec') {
    let s: RangeSource = src;
    if (layout === 'bvec') {
      const bv = toBvecList(src, pageSize);
      if (!bv.ok) return bv.errno;
      s = bv.value;
    }
    const r = dmaMapPhyrs(dev, s, dir, 0);
    if (!r.ok) return r.errno;
    return { segs: [...r.value.list].map((x) => ({ addr: x.addr, len: x.len })), unmap: () => dmaUnmapPhyrs(dev, r.value, dir, 0) };
  }
  if (layout === 'sg') {
    const t = sgAllocTable(src.count, { pageSize });
    if (!t.ok) return t.errno;
    const sgt = t.value;
    const ps = BigInt(pageSize);
    for (let i = 0; i < src.count; i++) sgt.setPage(i, src.addrAt(i) / ps, src.lenAt(i), Number(src.addrAt(i) % ps));
    const r = dmaMapSgtable(dev, sgt, dir);
    if (!r.ok) return r.errno;
    const segs = Array.from({ length: sgt.nents }, (_, i) => ({ addr: sgt.dmaAddressAt(i), len: sgt.dmaLengthAt(i) }));
    return { segs, unmap: () => dmaUnmapSgtable(dev, sgt, dir) };
  }
  const addrs: bigint[] = [];
  for (let i = 0; i < src.count; i++) {
    const r = dmaMapPhys(dev, src.addrAt(i), src.lenAt(i), dir);
    if (!r.ok) {
      addrs.forEach((a, j) => dmaUnmapPhys(dev, a, src.lenAt(j), dir));
      return r.errno;
    }
    addrs.push(r.value);
  }
  return {
    segs: addrs.map((a, i) => ({ addr: a, len: src.lenAt(i) })),
    unmap: () => addrs.forEach((a, i) => dmaUnmapPhys(dev, a, src.lenAt(i), dir)),
  };
}

/** Runs one row on the configuration's machine (rows of one configuration share it). */
function runRow(c: DmaOpsReportConfig, m: Machine, dev: Device, layout: DmaOpsLayout, seed: number): DmaOpsRow {
  const src = PhyrList.from([...DMAOPS_LIST]);
  const total = src.totalLen;
  const ps = m.pageSize;
  const s0 = {
    bounce: m.stats.swiotlbBounceBytes, ptes: m.stats.iommuLeafPtesWritten,
    inv: m.stats.iotlbRangeInvalidations + m.stats.iotlbGlobalFlushes, ops: dmaOpsInspect(dev),
  };
  const base = { config: c.label, layout };
  const mp = mapLayout(dev, layout, src, ps);
  if (typeof mp === 'string') {
    return { ...base, result: mp, segments: 0, entries: 0, bounceBytes: m.stats.swiotlbBounceBytes - s0.bounce, flushes: 0, afterUnmap: '-', bytesVerified: 0 };
  }
  const opsMapped = dmaOpsInspect(dev);
  const entries = entriesChanged(s0.ops, opsMapped) + (m.stats.iommuLeafPtesWritten - s0.ptes);
  // device -> CPU: the device writes the whole list, unmap (bounced rows copy back), the CPU checks
  let verified = 0;
  const out = pattern(total, seed);
  let at = 0;
  let wrote = true;
  for (const sg of mp.segs) {
    if (!dev.dmaWrite(sg.addr, out.subarray(at, at + sg.len)).ok) wrote = false;
    at += sg.len;
  }
  mp.unmap();
  const cpu = new Uint8Array(total);
  at = 0;
  for (let i = 0; i < src.count; i++) { cpu.set(m.mem.read(src.addrAt(i), src.lenAt(i)), at); at += src.lenAt(i); }
  if (wrote && same(cpu, out)) verified += total;
  // the counters cover this one map + device write + unmap
  const bounceBytes = m.stats.swiotlbBounceBytes - s0.bounce;
  const flushes = (dmaOpsInspect(dev)?.flushes ?? 0) - (s0.ops?.flushes ?? 0) + (m.stats.iotlbRangeInvalidations + m.stats.iotlbGlobalFlushes - s0.inv);
  const inn = pattern(total, seed + 1);
  // CPU -> device: the CPU writes, maps again (bounced rows copy in), the device reads
  for (let i = 0, a = 0; i < src.count; i++) { m.mem.write(src.addrAt(i), inn.subarray(a, a + src.lenAt(i))); a += src.lenAt(i); }
  const mp2 = mapLayout(dev, layout, src, ps);
  if (typeof mp2 !== 'string') {
    const got = new Uint8Array(total);
    let ok = true;
    at = 0;
    for (const sg of mp2.segs) {
      const r = dev.dmaRead(sg.addr, sg.len);
      if (r.ok) got.set(r.value, at); else ok = false;
      at += sg.len;
    }
    if (ok && same(got, inn)) verified += total;
    mp2.unmap();
  }
  // a late device write at the first DMA address
  const first = mp.segs[0];
  const before = m.mem.read(src.addrAt(0), 16);
  const probe = new Uint8Array(16).fill(0xa5);
  let afterUnmap: string;
  if (!dev.dmaWrite(first.addr, probe).ok) afterUnmap = 'fault';
  else if (!same(m.mem.read(src.addrAt(0), 16), before)) afterUnmap = 'the old buffer';
  else if (c.dmaOps?.kind === 'gart') afterUnmap = 'GART scratch page';
  else if (bounceBytes > 0) afterUnmap = 'a swiotlb slot';
  else afterUnmap = 'other memory';
  m.mem.write(src.addrAt(0), before);
  return { ...base, result: 'ok', segments: mp.segs.length, entries: entries, bounceBytes, flushes, afterUnmap, bytesVerified: verified };
}

/** The report: every configuration in every layout. */
export function runDmaOpsReport(seed = 1): DmaOpsReport {
  const rows: DmaOpsRow[] = [];
  const configs: DmaOpsReport['configs'] = [];
  for (const c of DMAOPS_CONFIGS) {
    const { m, dev, maskResult } = reportMachine(c, seed);
    configs.push({ label: c.label, kernel: c.kernel, mask: c.mask, maskResult, pageSize: m.pageSize, merge: c.merge });
    for (const layout of DMAOPS_LAYOUTS) rows.push(runRow(c, m, dev, layout, seed));
  }
  return {
    title: 'one phyr list through every dma_map_ops family',
    list: DMAOPS_LIST.map((r) => ({ addr: `0x${r.addr.toString(16)}`, len: r.len })),
    configs, rows, legend: DMAOPS_LEGEND,
  };
}
