// The RDMA section: registering 1 GiB of memory for an RDMA NIC (drivers/rdma) from each kind of
// buffer (aged 4 KiB anonymous pages, THP, 2 MiB and 1 GiB hugetlb pages, a GPU's P2P BAR), with and
// without an IOMMU. Each row is one registration as the phyr design does it (ibUmemGet: pinUserPhyrs
// + dmaMapPhyrs; ibRegMr: ib_umem_find_best_pgsz and an mlx5 MTT) beside what the kernel's umem
// costs for the same buffer (drivers/umem's 'sgtable' design built as ib_umem_get builds it:
// pin_user_pages into a page array, sg_alloc_append_table_from_pages a page of pointers at a time at
// the NIC's 2 GiB max segment, dma_map_sgtable), and an RDMA
// WRITE through the MR whose bytes the CPU checks. The ODP run (touch, munmap, re-fault) is added by
// the on-demand paging run of odp.ts (an ODP MR faulting through hmm_range_fault).

import { GiB, KiB, MiB, checkLen } from '../base/index.ts';
import {
  IB_ACCESS_LOCAL_WRITE, IB_ACCESS_REMOTE_READ, IB_ACCESS_REMOTE_WRITE, IB_WC_SUCCESS, ibDeregMr, ibPostRdmaWrite, ibRegMr, ibUmemGet,
  ibUmemRelease, rdmaProbe, rdmaRemove, umemMap, type IbDevice,
} from '../drivers/index.ts';
import { createMachine, type Machine } from '../machine/index.ts';
import type { MmapBacking, UserMm } from '../mm/index.ts';
import type { PciNodeConfig } from '../pci/index.ts';
import { runOdpScenario, type OdpReport } from './odp.ts';

/** The buffers, in report order. */
export const RDMA_BUFFERS = ['anon', 'thp', 'hugetlb-2M', 'hugetlb-1G', 'gpu-bar'] as const;
export type RdmaBuffer = (typeof RDMA_BUFFERS)[number];

export const RDMA_BUFFER_LABELS: Readonly<Record<RdmaBuffer, string>> = {
  anon: 'anonymous 4 KiB pages (aged machine)',
  thp: 'THP (2 MiB folios)',
  'hugetlb-2M': 'hugetlb 2 MiB pages',
  'hugetlb-1G': 'hugetlb 1 GiB page',
  'gpu-bar': 'GPU BAR (P2P, gpu0 below the same switch)',
};

/** The IOMMU configurations, in report order. */
export const RDMA_CONFIGS = ['no-iommu', 'iommu-strict'] as const;
export type RdmaConfig = (typeof RDMA_CONFIGS)[number];

/** hb0 (whitelisted Intel) -> rp0 -> sw0 -> { nic0, gpu0 (1 GiB P2P BAR) }. */
export const RDMA_PCI: readonly PciNodeConfig[] = [
  { name: 'hb0', type: 'host-bridge', vendor: 0x8086, device: 0x2030 },
  { name: 'rp0', type: 'root-port', parent: 'hb0' },
  { name: 'sw0', type: 'switch', parent: 'rp0' },
  { name: 'nic0', type: 'endpoint', parent: 'sw0' },
  { name: 'gpu0', type: 'endpoint', parent: 'sw0', bars: [{ bytes: GiB, p2p: true }] },
];

/** One registration. */
export interface RdmaRow {
  readonly config: RdmaConfig;
  readonly buffer: RdmaBuffer;
  /** 'ok', or the errno of the failing call. */
  readonly result: string;
  readonly len: number;
  /** Base pages pinned (ib_umem_num_pages). */
  readonly pagesPinned: number;
  /** Kernel umem: a struct page * array of every page (ib_umem_get batches it a page at a time) and the sg_append_table it builds. */
  readonly pageArrayBytes: number;
  readonly sgTableBytes: number;
  /** Scatterlist entries of the kernel umem after dma_map_sgtable (its DMA segments). */
  readonly sgDmaEntries: number;
  /** Phyr umem: the pinned phyr list + its DMA list (16 B an entry each), and their entries. */
  readonly phyrBytes: number;
  readonly phyrEntries: number;
  readonly dmaEntries: number;
  /** ib_umem_find_best_pgsz over the NIC's bitmap (4 KiB .. 2 GiB). */
  readonly hwPageSize: number;
  readonly mttEntries: number;
  readonly mttBytes: number;
  /** iommu_map calls and leaf PTEs written by the phyr registration (0 without an IOMMU). */
  readonly iommuMaps: number;
  readonly iommuPtes: number;
  /** Model time: phyr umem + MR, and the kernel design's umem (pin + sg table + map), ms. */
  readonly phyrMs: number;
  readonly sgtableMs: number;
  /** Bytes an RDMA WRITE through the MR moved and the CPU verified. */
  readonly bytesVerified: number;
}

export interface RdmaReport {
  readonly title: string;
  readonly rows: readonly RdmaRow[];
  /** The on-demand paging run (odp.ts), unless RdmaOptions.odp is false. */
  readonly odp: OdpReport | null;
  readonly legend: Readonly<Record<string, string>>;
}

export interface RdmaOptions {
  readonly buffers?: readonly RdmaBuffer[];
  readonly configs?: readonly RdmaConfig[];
  /** Bytes per buffer (default 1 GiB, a multiple of 1 GiB). */
  readonly len?: number;
  readonly seed?: number;
  /** Run the on-demand paging section (runOdpScenario, strict IOMMU; default true). */
  readonly odp?: boolean;
}

const ACCESS = IB_ACCESS_LOCAL_WRITE | IB_ACCESS_REMOTE_WRITE | IB_ACCESS_REMOTE_READ;

/** The report machine: 8 GiB aged RAM (+ hugetlb pools for the buffers), the PCI tree above. */
export function rdmaMachine(config: RdmaConfig, len = GiB, seed = 1): Machine {
  const pages1G = Math.ceil(len / GiB);
  return createMachine({
    ramBytes: 8 * GiB + pages1G * 2 * GiB,
    aged: true,
    seed,
    hugetlb: { '2M': len / (2 * MiB), '1G': pages1G },
    cpu: { vendor: 'intel' },
    ...(config === 'iommu-strict' ? { iommu: { format: 'x86-64', levels: 4, mode: 'strict' } } : {}),
    pci: [...RDMA_PCI.slice(0, 4), { ...RDMA_PCI[4], bars: [{ bytes: Math.max(GiB, 2 ** Math.ceil(Math.log2(len))), p2p: true }] }],
  } as Parameters<typeof createMachine>[0]);
}

function backingOf(b: RdmaBuffer): MmapBacking {
  return b === 'gpu-bar' ? { device: 'gpu0.bar0' } : b;
}

function registerOne(m: Machine, nic: IbDevice, mm: UserMm, config: RdmaConfig, buffer: RdmaBuffer, len: number): RdmaRow {
  const base = { config, buffer, len };
  const failed = (result: string): RdmaRow => ({
    ...base, result, pagesPinned: 0, pageArrayBytes: 0, sgTableBytes: 0, sgDmaEntries: 0, phyrBytes: 0, phyrEntries: 0, dmaEntries: 0,
    hwPageSize: 0, mttEntries: 0, mttBytes: 0, iommuMaps: 0, iommuPtes: 0, phyrMs: 0, sgtableMs: 0, bytesVerified: 0,
  });
  const va = mm.mmap({ len, backing: backingOf(buffer), populate: true });
  if (!va.ok) return failed(`mmap ${va.errno}`);
  const p2p = buffer === 'gpu-bar';
  // the kernel design (not for the BAR: pin_user_pages has no struct page to return for P2P memory
  // pinned long term)
  let pageArrayBytes = 0, sgTableBytes = 0, sgDmaEntries = 0, sgtableMs = 0;
  if (!p2p) {
    const t0 = performance.now();
    const k = umemMap(nic.dev, mm, va.value, len, 'sgtable', { ibUmemBatches: true });
    sgtableMs = performance.now() - t0;
    if (k.ok) {
      pageArrayBytes = 8 * Math.ceil(len / m.pageSize);
      sgTableBytes = k.value.metadataBytes - pageArrayBytes;
      sgDmaEntries = k.value.segments.count;
      k.value.unmap();
    }
  }
  const maps0 = m.stats.iommuMapCalls, ptes0 = m.stats.iommuLeafPtesWritten;
  const t0 = performance.now();
  const u = ibUmemGet(nic, mm, va.value, len, ACCESS, { p2p });
  if (!u.ok) return failed(`ibUmemGet ${u.errno}`);
  const mr = ibRegMr(nic, u.value, va.value);
  const phyrMs = performance.now() - t0;
  if (!mr.ok) { ibUmemRelease(u.value); return failed(`ibRegMr ${mr.errno}`); }
  const iommuMaps = m.stats.iommuMapCalls - maps0, iommuPtes = m.stats.iommuLeafPtesWritten - ptes0;
  // one RDMA WRITE across the MR's middle, checked by the CPU
  const n = Math.min(len / 2, 256 * KiB);
  const src = new Uint8Array(n).map((_, i) => (i * 31 + 7) & 0xff);
  const from = va.value, to = va.value + BigInt(len / 2);
  let verified = 0;
  if (mm.writeUser(from, src).ok) {
    const wc = ibPostRdmaWrite(nic, { lkey: mr.value.lkey, laddr: from, rkey: mr.value.rkey, raddr: to, len: n });
    const back = mm.readUser(to, n);
    if (wc.ok && wc.value.status === IB_WC_SUCCESS && back.ok && back.value.every((b, i) => b === src[i])) verified = n;
  }
  const row: RdmaRow = {
    ...base, result: 'ok', pagesPinned: u.value.nrPages, pageArrayBytes, sgTableBytes, sgDmaEntries,
    phyrBytes: u.value.phyrBytes, phyrEntries: u.value.pinned.count, dmaEntries: u.value.dma.count,
    hwPageSize: mr.value.pageLen, mttEntries: mr.value.mttCount, mttBytes: mr.value.mttBytes, iommuMaps, iommuPtes,
    phyrMs, sgtableMs, bytesVerified: verified,
  };
  ibDeregMr(nic, mr.value);
  ibUmemRelease(u.value);
  mm.munmap(va.value, len);
  return row;
}

/** Runs the section: every buffer on every configuration, one machine per configuration. */
export function runRdmaReport(opts: RdmaOptions = {}): RdmaReport {
  const buffers = opts.buffers ?? RDMA_BUFFERS;
  const configs = opts.configs ?? RDMA_CONFIGS;
  const len = checkLen('len', opts.len ?? GiB, GiB);
  if (len % GiB !== 0) throw new RangeError(`len must be a multiple of 1 GiB, got ${len}`);
  const rows: RdmaRow[] = [];
  for (const config of configs) {
    const m = rdmaMachine(config, len, opts.seed ?? 1);
    const nic = rdmaProbe(m.device('nic0'));
    if (!nic.ok) throw new Error(`rdmaProbe: ${nic.errno}`);
    const mm = m.newProcess();
    for (const b of buffers) rows.push(registerOne(m, nic.value, mm, config, b, len));
    rdmaRemove(nic.value);
  }
  if (opts.odp !== undefined && typeof opts.odp !== 'boolean') throw new TypeError(`odp must be a boolean, got ${typeof opts.odp}`);
  const odp = opts.odp === false ? null : runOdpScenario({ iommu: 'strict' });
  return { title: `RDMA memory registration of ${len / GiB} GiB: phyr umem + mlx5 MTT vs the kernel's page array + sg_table`, rows, odp, legend: RDMA_LEGEND };
}

export const RDMA_LEGEND: Readonly<Record<string, string>> = {
  Pages: 'base pages pinned (ib_umem_num_pages)',
  'Page array B': 'struct page * array of every page, as pin_user_pages returns it (ib_umem_get reuses one 4 KiB page of it per batch)',
  'sg_table B': 'the kernel umem\'s sg_append_table (32 B a scatterlist entry, chained in chunks of a page of entries: 128 with 4 KiB pages), built for real as ib_umem_get builds it, one append per 512 pages: while pages are left each new chunk is a whole page',
  'SG DMA': 'DMA segments of the kernel umem after dma_map_sgtable',
  'Phyr B': 'the phyr umem: pinned phyr list + DMA list, 16 B an entry each',
  'Phyrs/DMA': 'entries of the pinned phyr list / of its DMA list',
  'HW page': 'page size ib_umem_find_best_pgsz picks from the NIC\'s bitmap (4 KiB .. 2 GiB) at IOVA = VA',
  'MTT': 'MTT entries (ib_umem_num_dma_blocks) and their bytes (8 B big-endian each)',
  'IOMMU': 'iommu_map calls / leaf PTEs written by the phyr registration',
  'Phyr ms / SG ms': 'model time of ibUmemGet + ibRegMr, and of the kernel design\'s pin + sg table + map',
  'Verified B': 'bytes an RDMA WRITE through the MR moved and the CPU read back',
};

/** The registrations whose RDMA WRITE did not land the bytes it sent (a model defect), one line each. */
export function rdmaWrongBytes(rows: readonly RdmaRow[]): string[] {
  return rows.filter((x) => x.result === 'ok' && x.bytesVerified === 0).map((x) => `${x.config} / ${x.buffer}: the RDMA WRITE's bytes differ`);
}
