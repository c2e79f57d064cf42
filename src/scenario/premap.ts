// What it is: `phyr premap`, pre-mapped dma-buf I/O against per-I/O mapping on one NVMe machine.
// The same workload (N reads and writes of 4 KiB or 128 KiB between a buffer and an NVMe namespace,
// real bytes through the block layer, the NVMe driver and the controller model) runs in six modes:
// per-I/O mapping through blk_rq_dma_map (block/blk-mq-dma.c) without an IOMMU, with the IOMMU in
// passthrough, strict and lazy (flush queue) modes; a registered user buffer kept mapped (the 2022
// IORING_REGISTER_MAP_BUFFERS idea); and a dma-buf registered with the NVMe device (the 2025-2026
// "dmabuf read/write via io_uring" RFC, drivers/premap). Each mode's per-I/O work is counted
// (IOVA allocations, page-table walk steps, PTE writes, IOTLB invalidations, swiotlb bytes,
// descriptor bytes) and priced by a cost model whose parameters each name a published measurement
// (PREMAP_COST_PARAMS; docs/model.md); the model's predicted IOPS per core is set beside the
// series' published figures, which it is not fitted to.

import { KiB, MiB, patternBytes } from '../base/index.ts';
import {
  REQ_OP_READ, REQ_OP_WRITE, bioFromRanges, blkSubmitBio, dmaBufRevoke, gpuBoCreate, gpuBoExport, nvmeCompleteRq, nvmeExecute,
  nvmeProbe, nvmeQueueRq, premapComplete, premapIssue, premapRegisterDmabuf, premapRegisterUserBuffer, premapUnregister,
  systemHeapAlloc, type DmaBuf, type GpuBo, type NvmeCtrl, type PremapToken, type ReqOp, type SystemHeapBuffer,
} from '../drivers/index.ts';
import { DMA_BIT_MASK, dmaSetMaskAndCoherent } from '../dma/index.ts';
import { createMachine, type Machine } from '../machine/index.ts';
import { FOLL_LONGTERM, FOLL_WRITE, pinUserPages, unpinUserPages, type UserMm } from '../mm/index.ts';
import { ioUringFixedBufferBvecs } from './direct-io.ts';
import type { PciNodeConfig } from '../pci/index.ts';
import { slice, type BvecList, type PhyrList } from '../phyr/index.ts';

/** The modes, in report order. */
export const PREMAP_MODES = ['no-iommu', 'passthrough', 'strict', 'lazy', 'registered', 'premapped'] as const;
export type PremapMode = (typeof PREMAP_MODES)[number];

export const PREMAP_MODE_LABELS: Readonly<Record<PremapMode, string>> = {
  'no-iommu': 'per-I/O map, no IOMMU (dma-direct)',
  passthrough: 'per-I/O map, IOMMU passthrough (identity domain)',
  strict: 'per-I/O map, IOMMU strict',
  lazy: 'per-I/O map, IOMMU lazy (flush queue)',
  registered: 'registered user buffer kept mapped (MAP_BUFFERS, strict IOMMU)',
  premapped: 'pre-mapped dma-buf (RFC dmabuf read/write, strict IOMMU)',
};

/** The IOMMU of each mode's machine. */
const MODE_IOMMU: Readonly<Record<PremapMode, 'none' | 'strict' | 'lazy' | 'passthrough'>> = {
  'no-iommu': 'none', passthrough: 'passthrough', strict: 'strict', lazy: 'lazy', registered: 'strict', premapped: 'strict',
};

export const PREMAP_SIZES: readonly number[] = [4 * KiB, 128 * KiB];

/** Where the pre-mapped dma-buf's memory is: system heap pages (udmabuf-like), or GPU VRAM reached P2P through the switch. */
export const PREMAP_DMABUFS = ['system-heap', 'gpu-vram'] as const;
export type PremapDmabufSource = (typeof PREMAP_DMABUFS)[number];

/** hb0 -> rp0 -> sw0 -> { nvme0 (NVMe controller, SGLs, one 256 MiB namespace of 512-byte blocks), gpu0 (64 MiB P2P VRAM BAR) }. */
export const PREMAP_PCI: readonly PciNodeConfig[] = [
  { name: 'hb0', type: 'host-bridge', vendor: 0x8086, device: 0x2030 },
  { name: 'rp0', type: 'root-port', parent: 'hb0' },
  { name: 'sw0', type: 'switch', parent: 'rp0' },
  {
    name: 'nvme0', type: 'endpoint', parent: 'sw0', bars: [{ bytes: 16 * KiB }],
    nvme: { sgls: true, mdts: 0, namespaces: [{ nsid: 1, bytes: 256 * MiB, lbaBytes: 512 }] },
  },
  { name: 'gpu0', type: 'endpoint', parent: 'sw0', bars: [{ bytes: 64 * MiB, p2p: true }] },
] as PciNodeConfig[];

/** The machine of one mode: 512 MiB of RAM, the tree above, x86-64 4-level IOMMU in the given mode (or none), 64-bit masks. */
export function premapMachine(iommu: 'none' | 'strict' | 'lazy' | 'passthrough', seed = 1): Machine {
  const m = createMachine({
    ramBytes: 512 * MiB, seed, cpu: { vendor: 'intel' }, swiotlb: { bytes: 4 * MiB }, pci: PREMAP_PCI,
    ...(iommu === 'none' ? {} : { iommu: { format: 'x86-64' as const, levels: 4 as const, mode: iommu } }),
  });
  m.dmaDebug.enabled = false;
  for (const d of m.devices()) dmaSetMaskAndCoherent(d, DMA_BIT_MASK(64));
  return m;
}

/**
 * One parameter of the cost model: nanoseconds per counted operation and where the number comes
 * from. `verified` says whether the figure was read in a stored copy of the source while this was
 * written (true) or is quoted from the publication without that check (false).
 */
export interface PremapCostParam {
  readonly ns: number;
  readonly what: string;
  readonly source: string;
  readonly verified: boolean;
}

export type PremapCostKey = 'ioBase' | 'iommuMapCall' | 'iommuUnmapCall' | 'pte' | 'iova' | 'iotlbRange' | 'iotlbGlobal'
  | 'swiotlbByte' | 'descriptorByte' | 'dmaSync' | 'deviceLatency';

/** The cost model's parameters (ns). docs/model.md repeats them with their sources. */
export const PREMAP_COST_PARAMS: Readonly<Record<PremapCostKey, PremapCostParam>> = {
  ioBase: {
    ns: 100, what: 'the I/O stack per block request without DMA mapping (io_uring submit + block layer + NVMe submit/complete, polled); an I/O split into N requests (bio_split_io_at at max_sectors) pays it N times',
    source: 'Jens Axboe, 25 Oct 2021: 10M IOPS on one core (Ryzen 9 5950X, two Optane P5800X, t/io_uring polled 512 B reads, no IOMMU) = 100 ns/IO (https://www.phoronix.com/news/Linux-IO_uring-10M-IOPS)', verified: true,
  },
  iommuMapCall: {
    ns: 71, what: 'one iommu_map of a 4 KiB page (call + walk of a 4-level table + one PTE)',
    source: 'Jason Gunthorpe, "iommupt: Add the x86 64 bit page table format" (generic_pt series "Consolidate iommu page table implementations (AMD)", v7, Oct 2025; i7-12700): iommu_map() 2^12 average 71 ns', verified: true,
  },
  iommuUnmapCall: {
    ns: 77, what: 'one iommu_unmap of a 4 KiB page (call + walk + one PTE cleared)',
    source: 'the same patch: iommu_unmap() 2^12 average 77 ns', verified: true,
  },
  pte: {
    ns: 1.3, what: 'each further leaf PTE written or cleared within one call (the clears priced as the writes)',
    source: 'the same patch: iommu_map() 256*2^12 average 392 ns -> (392 - 71) / 255 = 1.26 ns per PTE written (its unmap of 256*2^12, 225 ns, gives 0.58 ns per PTE cleared)', verified: true,
  },
  iova: {
    ns: 100, what: 'one IOVA allocation with its free (per-CPU rcache hit: magazine pop + push)',
    source: 'Peleg, Morrison, Serebrin, Tsafrir, "Utilizing the IOMMU Scalably", USENIX ATC 2015 (the rcache design, Linux 4.7): cached allocation in the order of 100 ns', verified: false,
  },
  iotlbRange: {
    ns: 700, what: 'one synchronous IOTLB invalidation (VT-d queued invalidation + wait descriptor), as strict mode does per unmap',
    source: 'Malka, Amit, Tsafrir, "Efficient Intra-Operating System Protection Against Harmful DMAs", FAST 2015 / rIOMMU, ASPLOS 2015: ~2,100 cycles per IOTLB invalidation (~0.7 us at 3 GHz)', verified: false,
  },
  iotlbGlobal: {
    ns: 700, what: 'one domain-wide IOTLB flush (the flush queue\'s flush_iotlb_all), taken as costly as one invalidation',
    source: 'as iotlbRange (same invalidation queue round trip)', verified: false,
  },
  swiotlbByte: {
    ns: 0.1, what: 'one byte bounced through swiotlb (memcpy at ~10 GB/s on one core)',
    source: 'single-core memcpy bandwidth of ~10 GB/s (STREAM copy, one thread, DDR4/DDR5 servers)', verified: false,
  },
  descriptorByte: {
    ns: 0.1, what: 'one byte of PRP list / SGL segment written by the driver (same store bandwidth)',
    source: 'as swiotlbByte', verified: false,
  },
  dmaSync: {
    ns: 5, what: 'one dma_sync_single_for_{device,cpu} call that has nothing to do (coherent device, no bounce)',
    source: 'no published measurement found; a few indirect calls and tests, stated as an assumption', verified: false,
  },
  deviceLatency: {
    ns: 10_000, what: 'NVMe device read latency at queue depth 1 (for the QD1 latency column only; IOPS per core is CPU-bound)',
    source: 'Hajnoczi, "The 10 Microsecond Challenge", KVM Forum 2020 (slide 3): Intel Optane P4800X 10 us read/write at QD1', verified: true,
  },
};

/** Published IOPS of the RFC v2 thread (Anuj Gupta, linux-nvme 24 Nov 2025, t/io_uring on an Intel Optane device). */
export const PREMAP_PUBLISHED = {
  source: 'Anuj Gupta, "[RFC v2 00/11] Add dmabuf read/write via io_uring", linux-nvme, 24 Nov 2025 (Intel Optane, fio t/io_uring; https://lists.infradead.org/pipermail/linux-nvme/2025-November/059804.html)',
  before: { strict: 570_000, lazy: 1_930_000, passthrough: 5_010_000 },
  after: { strict: 5_010_000, lazy: 5_010_000, passthrough: 5_010_000 },
} as const;

/** Per-I/O counts of one (mode, size). */
export interface PremapCounts {
  readonly iovaAllocs: number;
  readonly walkSteps: number;
  readonly pteWrites: number;
  readonly iommuMapCalls: number;
  readonly iommuUnmapCalls: number;
  readonly iotlbRange: number;
  readonly iotlbGlobal: number;
  /** Flush-queue entries queued (lazy mode: the unmaps waiting for a global flush). */
  readonly fqEntries: number;
  readonly swiotlbBytes: number;
  readonly descriptorBytes: number;
  readonly dmaSyncs: number;
  readonly requests: number;
}

export interface PremapRow {
  readonly mode: PremapMode;
  readonly ioBytes: number;
  readonly ios: number;
  /** Every I/O completed and every byte arrived (namespace after the writes, buffer after the reads). */
  readonly ok: boolean;
  readonly failure: string | null;
  readonly bytesVerified: number;
  readonly bytesMismatched: number;
  /** Per I/O (averages over the run: the flush queue's global flushes are amortised). */
  readonly perIo: PremapCounts;
  /** Predicted CPU ns per I/O, IOPS per core, the ratio to passthrough, QD1 latency in us. */
  readonly ns: number;
  readonly iopsPerCore: number;
  readonly ratioToPassthrough: number;
  readonly qd1LatencyUs: number;
  /** Of ns: what each parameter contributed. */
  readonly nsBreakdown: Readonly<Partial<Record<PremapCostKey, number>>>;
}

export interface PremapReport {
  readonly dmabuf: PremapDmabufSource;
  readonly sizes: readonly number[];
  readonly ios: number;
  readonly rows: readonly PremapRow[];
  readonly params: typeof PREMAP_COST_PARAMS;
  readonly published: typeof PREMAP_PUBLISHED;
  readonly legend: Readonly<Record<string, string>>;
}

export const PREMAP_LEGEND: Readonly<Record<string, string>> = {
  'IOVA': 'IOVA allocations per I/O (iovaAllocs)',
  'Walk': 'IOMMU page-table levels descended by map paths per I/O (iommuTableWalkSteps)',
  'PTE': 'leaf PTEs written + cleared per I/O',
  'Inv range': 'IOTLB range invalidations per I/O (strict: one per unmap)',
  'Inv global': 'domain-wide IOTLB flushes per I/O (lazy: the flush queue\'s, amortised over the run)',
  'FQ': 'flush-queue entries queued per I/O (lazy)',
  'Bounce B': 'bytes through swiotlb per I/O',
  'Desc B': 'PRP list / SGL bytes the driver wrote per I/O',
  'Syncs': 'dma_sync_single_* calls per I/O (the pre-mapped path syncs every 4 KiB page both ways)',
  'ns/IO': 'predicted CPU ns per I/O: ioBase per block request + each count x its parameter',
  'IOPS/core': '1e9 / ns/IO',
  'x pass': 'IOPS/core relative to the passthrough mode of the same size',
  'QD1 us': 'device latency (deviceLatency) + ns/IO',
};

export interface PremapOptions {
  readonly sizes?: readonly number[];
  /** I/Os per (mode, size): half writes, then half reads of the same sectors (default 512). */
  readonly ios?: number;
  readonly dmabuf?: PremapDmabufSource;
  readonly seed?: number;
  readonly modes?: readonly PremapMode[];
}

/** The bytes of the I/O buffer, whatever holds it. */
export interface BufferAccess {
  read(off: number, len: number): Uint8Array;
  write(off: number, bytes: Uint8Array): void;
}

/**
 * CPU access to a buffer held by physical ranges, through machine memory; `ranges` is asked at each
 * access (a GPU buffer's ranges change when it moves).
 */
export function physAccess(m: Machine, ranges: () => PhyrList): BufferAccess {
  const walk = (off: number, len: number, f: (addr: bigint, at: number, n: number) => void): void => {
    const r = ranges();
    let base = 0, at = 0;
    for (let i = 0; i < r.count && at < len; i++) {
      const rl = r.lenAt(i);
      if (off + at < base + rl) {
        const inR = off + at - base;
        const n = Math.min(rl - inR, len - at);
        f(r.addrAt(i) + BigInt(inR), at, n);
        at += n;
      }
      base += rl;
    }
  };
  return {
    read(off, len) {
      const out = new Uint8Array(len);
      walk(off, len, (a, at, n) => out.set(m.mem.read(a, n), at));
      return out;
    },
    write(off, bytes) {
      walk(off, bytes.length, (a, at, n) => m.mem.write(a, bytes.subarray(at, at + n)));
    },
  };
}

function userAccess(mm: UserMm, start: bigint): BufferAccess {
  return {
    read(off, len) {
      const r = mm.readUser(start + BigInt(off), len);
      if (!r.ok) throw new Error(`readUser: ${r.errno}`);
      return r.value;
    },
    write(off, bytes) {
      const r = mm.writeUser(start + BigInt(off), bytes);
      if (!r.ok) throw new Error(`writeUser: ${r.errno}`);
    },
  };
}

/** One I/O of the mode: returns the descriptor bytes it wrote, or a failure. */
type DoIo = (op: ReqOp, off: number, len: number) => { failure: string | null; descriptorBytes: number; requests: number };

/**
 * Per-I/O mapping: a bio over the slice of the registered buffer's bio_vecs (each its own vector,
 * as bio_iov_bvec_set() takes them), split, queued with blk_rq_dma_map, run, completed.
 */
function perIoMapper(ctrl: NvmeCtrl, bvecs: BvecList): DoIo {
  return (op, off, len) => {
    const bio = bioFromRanges(op, BigInt(off / 512), slice(bvecs, off, len), { merge: false });
    if (!bio.ok) return { failure: `bio: ${bio.errno}`, descriptorBytes: 0, requests: 0 };
    const rqs = blkSubmitBio(ctrl.queue, bio.value);
    if (!rqs.ok) return { failure: `split: ${rqs.errno}`, descriptorBytes: 0, requests: 0 };
    let desc = 0;
    for (const rq of rqs.value) {
      const io = nvmeQueueRq(ctrl, 1, rq);
      if (!io.ok) return { failure: io.message ?? io.errno, descriptorBytes: desc, requests: rqs.value.length };
      desc += io.value.descriptorBytes;
      const c = nvmeExecute(ctrl, io.value);
      nvmeCompleteRq(ctrl, io.value);
      if (!c.ok || c.value.status !== 0) return { failure: 'NVMe error', descriptorBytes: desc, requests: rqs.value.length };
    }
    return { failure: null, descriptorBytes: desc, requests: rqs.value.length };
  };
}

/** Pre-registered buffer (dma-buf token or mapped user buffer): issued as io_uring does (premapIssue) and completed. */
function premapper(token: PremapToken): DoIo {
  return (op, off, len) => {
    const io = premapIssue(token, op, BigInt(off / 512), off, len);
    if (!io.ok) return { failure: `premap: ${io.errno}`, descriptorBytes: 0, requests: 0 };
    const r = premapComplete(io.value);
    return { failure: r.ok ? null : `premap: ${r.errno}`, descriptorBytes: io.value.descriptorBytes, requests: io.value.cmds.length };
  };
}

/** The cost of one I/O's counts. */
export function premapPredict(c: PremapCounts): { ns: number; breakdown: Partial<Record<PremapCostKey, number>> } {
  const p = PREMAP_COST_PARAMS;
  const calls = c.iommuMapCalls + c.iommuUnmapCalls;
  const b: Partial<Record<PremapCostKey, number>> = {
    // the figure is one 512-byte read, one block request and one NVMe command each; an I/O that
    // the block layer split (bio_split_io_at at max_sectors, 128 KiB behind an IOMMU because
    // nvme_pci's max_hw_sectors follows dma_opt_mapping_size) goes through the stack per request
    ioBase: Math.max(1, c.requests) * p.ioBase.ns,
    iommuMapCall: c.iommuMapCalls * p.iommuMapCall.ns,
    iommuUnmapCall: c.iommuUnmapCalls * p.iommuUnmapCall.ns,
    // the first PTE of each call is in the call's price
    pte: Math.max(0, c.pteWrites - calls) * p.pte.ns,
    iova: c.iovaAllocs * p.iova.ns,
    iotlbRange: c.iotlbRange * p.iotlbRange.ns,
    iotlbGlobal: c.iotlbGlobal * p.iotlbGlobal.ns,
    swiotlbByte: c.swiotlbBytes * p.swiotlbByte.ns,
    descriptorByte: c.descriptorBytes * p.descriptorByte.ns,
    dmaSync: c.dmaSyncs * p.dmaSync.ns,
  };
  const ns = Object.values(b).reduce((s, x) => s + (x ?? 0), 0);
  return { ns, breakdown: b };
}

const BUFFER_BYTES = 4 * MiB;

/** Runs one mode at one size on a fresh machine. */
export function runPremapMode(mode: PremapMode, ioBytes: number, o: PremapOptions = {}): Omit<PremapRow, 'ratioToPassthrough'> {
  const ios = o.ios ?? 512;
  const seed = o.seed ?? 1;
  const m = premapMachine(MODE_IOMMU[mode], seed);
  const ctrl = unwrapOr(nvmeProbe(m.device('nvme0')), 'nvmeProbe');
  const bufLen = Math.min(BUFFER_BYTES, Math.max(ioBytes, Math.ceil(ios / 2) * ioBytes));
  let access: BufferAccess;
  let doIo: DoIo;
  let cleanup: () => void;
  if (mode === 'premapped') {
    let buf: DmaBuf;
    let ranges: PhyrList;
    if ((o.dmabuf ?? 'system-heap') === 'gpu-vram') {
      const bo: GpuBo = unwrapOr(gpuBoCreate(m.device('gpu0'), bufLen, 'vram'), 'gpuBoCreate');
      buf = unwrapOr(gpuBoExport(bo), 'gpuBoExport');
      ranges = bo.ranges();
    } else {
      buf = unwrapOr(systemHeapAlloc(m, bufLen), 'systemHeapAlloc');
      ranges = (buf.priv as SystemHeapBuffer).pages;
    }
    access = physAccess(m, () => ranges);
    const token = unwrapOr(premapRegisterDmabuf(ctrl, buf), 'premapRegisterDmabuf');
    doIo = premapper(token);
    cleanup = () => {
      premapUnregister(token);
      dmaBufRevoke(buf);
    };
  } else {
    const mm = m.newProcess();
    const start = unwrapOr(mm.mmap({ len: bufLen, backing: 'anon', populate: true }), 'mmap');
    access = userAccess(mm, start);
    if (mode === 'registered') {
      const token = unwrapOr(premapRegisterUserBuffer(ctrl, mm, start, bufLen), 'premapRegisterUserBuffer');
      doIo = premapper(token);
      cleanup = () => premapUnregister(token);
    } else {
      // the buffer is pinned once and kept as bio_vecs, as io_uring's registered (fixed) buffers
      // are (io_sqe_buffer_register); each I/O maps its slice of them
      const nrPages = Math.ceil(bufLen / m.pageSize);
      const pinned = unwrapOr(pinUserPages(mm, start, nrPages, FOLL_WRITE | FOLL_LONGTERM), 'pinUserPages');
      // io_pin_pages() fails the registration (EFAULT) unless every page was pinned
      if (pinned.count !== nrPages) {
        unpinUserPages(mm, pinned);
        throw new Error(`pinUserPages: EFAULT: pinned ${pinned.count} of ${nrPages} pages`);
      }
      doIo = perIoMapper(ctrl, unwrapOr(ioUringFixedBufferBvecs(mm, pinned), 'ioUringFixedBufferBvecs'));
      cleanup = () => unpinUserPages(mm, pinned);
    }
  }
  const slots = Math.max(1, Math.floor(bufLen / ioBytes));
  const want = patternBytes(bufLen, seed * 131 + ioBytes);
  access.write(0, want);
  // one write and one read before counting: the one-time work (the dma-buf's map on its first I/O,
  // the descriptor pools' first pages) is not per-I/O work
  let failure: string | null = doIo(REQ_OP_WRITE, 0, ioBytes).failure ?? doIo(REQ_OP_READ, 0, ioBytes).failure;
  const since = m.stats.snapshot();
  let desc = 0, requests = 0;
  const nWrites = Math.ceil(ios / 2);
  for (let i = 0; i < ios && failure === null; i++) {
    const write = i < nWrites;
    if (i === nWrites) access.write(0, new Uint8Array(bufLen)); // the reads must bring the bytes back
    const off = ((write ? i : i - nWrites) % slots) * ioBytes;
    const r = doIo(write ? REQ_OP_WRITE : REQ_OP_READ, off, ioBytes);
    failure = r.failure;
    desc += r.descriptorBytes;
    requests += r.requests;
  }
  const d = m.stats.diff(since);
  // bytes: the namespace holds the buffer's pattern where written; the buffer got it back where read
  let verified = 0, mismatched = 0;
  if (failure === null) {
    const covered = Math.min(slots, nWrites, ios - nWrites) * ioBytes;
    const ns = ctrl.controller.readBlocks(1, 0n, covered / 512);
    const back = access.read(0, covered);
    for (let i = 0; i < covered; i++) {
      if (ns[i] === want[i]) verified++; else mismatched++;
      if (back[i] === want[i]) verified++; else mismatched++;
    }
  }
  cleanup();
  const per = (x: number | undefined): number => (x ?? 0) / ios;
  const perIo: PremapCounts = {
    iovaAllocs: per(d.iovaAllocs), walkSteps: per(d.iommuTableWalkSteps),
    pteWrites: per((d.iommuLeafPtesWritten ?? 0) + (d.iommuLeafPtesCleared ?? 0)),
    iommuMapCalls: per(d.iommuMapCalls), iommuUnmapCalls: per(d.iommuUnmapCalls),
    iotlbRange: per(d.iotlbRangeInvalidations), iotlbGlobal: per(d.iotlbGlobalFlushes), fqEntries: per(d.flushQueueEntries),
    swiotlbBytes: per(d.swiotlbBounceBytes), descriptorBytes: desc / ios, dmaSyncs: per(d.dmaSyncCalls), requests: requests / ios,
  };
  const { ns, breakdown } = premapPredict(perIo);
  return {
    mode, ioBytes, ios, ok: failure === null && mismatched === 0, failure, bytesVerified: verified, bytesMismatched: mismatched,
    perIo, ns, iopsPerCore: 1e9 / ns, qd1LatencyUs: (PREMAP_COST_PARAMS.deviceLatency.ns + ns) / 1000, nsBreakdown: breakdown,
  };
}

function unwrapOr<T>(r: { ok: true; value: T } | { ok: false; errno: string; message?: string }, what: string): T {
  if (!r.ok) throw new Error(`${what}: ${r.errno}${r.message ? ` (${r.message})` : ''}`);
  return r.value;
}

/**
 * The whole comparison: every mode at every size, each on a fresh machine.
 * @throws RangeError for invalid options (naming them).
 */
export function runPremap(o: PremapOptions = {}): PremapReport {
  const sizes = o.sizes ?? PREMAP_SIZES;
  for (const s of sizes) {
    if (!Number.isSafeInteger(s) || s < 4 * KiB || s > MiB || s % (4 * KiB) !== 0) {
      throw new RangeError(`sizes[] must be multiples of 4096 in [4096, 1048576], got ${String(s)}`);
    }
  }
  // each size is one block of rows: a size given twice would print its rows twice
  const dup = sizes.find((s, i) => sizes.indexOf(s) !== i);
  if (dup !== undefined) throw new RangeError(`sizes[] must not repeat a size, got ${dup} twice`);
  const ios = o.ios ?? 512;
  if (!Number.isSafeInteger(ios) || ios < 2 || ios > 1 << 16) throw new RangeError(`ios must be an integer in [2, 65536], got ${String(ios)}`);
  const dmabuf = o.dmabuf ?? 'system-heap';
  if (!(PREMAP_DMABUFS as readonly string[]).includes(dmabuf)) throw new RangeError(`dmabuf must be one of ${PREMAP_DMABUFS.join(', ')}, got ${JSON.stringify(dmabuf)}`);
  const modes = o.modes ?? PREMAP_MODES;
  for (const md of modes) {
    if (!(PREMAP_MODES as readonly string[]).includes(md)) throw new RangeError(`modes must be from ${PREMAP_MODES.join(', ')}, got ${JSON.stringify(md)}`);
  }
  const rows: PremapRow[] = [];
  for (const size of sizes) {
    const raw = modes.map((md) => runPremapMode(md, size, { ...o, ios, dmabuf }));
    const pass = raw.find((r) => r.mode === 'passthrough') ?? premapPassthroughRef(size, { ...o, ios, dmabuf });
    for (const r of raw) rows.push({ ...r, ratioToPassthrough: r.iopsPerCore / pass.iopsPerCore });
  }
  return { dmabuf, sizes, ios, rows, params: PREMAP_COST_PARAMS, published: PREMAP_PUBLISHED, legend: PREMAP_LEGEND };
}

function premapPassthroughRef(size: number, o: PremapOptions): { iopsPerCore: number } {
  return runPremapMode('passthrough', size, o);
}

/** A machine size that the scenario needs (for documentation and checks). */
export const PREMAP_RAM_BYTES = 512 * MiB;
export const PREMAP_NAMESPACE_BYTES = 256 * MiB;

