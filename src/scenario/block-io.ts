// The block I/O section of the comparison report: a user buffer written to and read back from an
// NVMe namespace through the whole stack, as direct I/O does it (block/fops.c: the pinned buffer
// becomes a bio; block/blk-merge.c splits it to the queue limits; drivers/nvme/host/pci.c maps each
// request with blk_rq_dma_map_iter_start/next and builds PRPs or an SGL; the controller model walks
// them by DMA and moves the data; nvme_unmap_data undoes it). I/O sizes 4 KiB to 8 MiB from aged
// 4 KiB anonymous memory, THP, 1 GiB hugetlb pages and a GPU's P2P BAR, on the machine
// configurations of the mapping section. The point it makes visible: behind an IOMMU the NVMe
// driver caps a request at dma_opt_mapping_size() (the IOVA rcache's largest size, 128 KiB), so a
// 1 MiB I/O becomes 8 requests where dma-direct sends one.

import { GiB, KiB, MiB, checkLen, type Errno } from '../base/index.ts';
import {
  REQ_OP_READ, REQ_OP_WRITE, bioFromRanges, blkdevDirectIoBytes, blkStatusName, blkSubmitBio, nvmeCompleteRq, nvmeExecute,
  nvmeCtrlStatusName, nvmeProbe, nvmeQueueRq, type NvmeCtrl, type ReqOp,
} from '../drivers/index.ts';
import { DMA_BIT_MASK, dmaSetMaskAndCoherent, dmaSetMaxSegSize } from '../dma/index.ts';
import { createMachine, type Machine, type MachineConfig } from '../machine/index.ts';
import { FOLL_PCI_P2PDMA, FOLL_WRITE, pinUserPages, unpinUserPages, type UserMm } from '../mm/index.ts';
import { PageArray } from '../phyr/index.ts';
import { directIoBvecs } from './direct-io.ts';
import type { PciNodeConfig, PciNvmeConfig } from '../pci/index.ts';
import { MAPPING_CONFIGS, MAPPING_CONFIG_NAMES, MAPPING_PCI, mappingPciFor, type MappingConfigName } from './mapping.ts';
import { patternBytes as pattern } from '../base/index.ts';

/** The I/O sizes, in report order. */
export const BLOCK_IO_SIZES: readonly number[] = [4 * KiB, 128 * KiB, MiB, 8 * MiB];

/** The buffers the I/O comes from, in report order. */
export const BLOCK_IO_BUFFERS = ['anon', 'thp', 'hugetlb', 'gpu-bar'] as const;
export type BlockIoBuffer = (typeof BLOCK_IO_BUFFERS)[number];

export const BLOCK_IO_BUFFER_LABELS: Readonly<Record<BlockIoBuffer, string>> = {
  anon: 'anonymous 4 KiB pages (aged machine)',
  thp: 'THP (2 MiB folios)',
  hugetlb: '1 GiB hugetlb page',
  'gpu-bar': 'GPU BAR (P2P, gpu0)',
};

/** The NVMe controller on every device of the block machines: SGLs, no MDTS limit, one namespace. */
export const BLOCK_IO_NVME: PciNvmeConfig = { sgls: true, mdts: 0, namespaces: [{ nsid: 1, bytes: 64 * GiB, lbaBytes: 512 }] };

/** The PCI tree of the mapping machines with an NVMe controller on each device that does the I/O. */
export const BLOCK_IO_PCI: readonly PciNodeConfig[] = MAPPING_PCI.map((n) =>
  (['nvme0', 'tb0', 'nic0'].includes(n.name) ? { ...n, nvme: BLOCK_IO_NVME } : n));

/** Size of gpu0's P2P BAR on the block machines. */
const GPU_BAR_BYTES = 64 * MiB;

export interface BlockIoOptions {
  /** Machine RAM in GiB (default 4). */
  readonly ramGiB?: number;
  /** Aged machine: scattered free memory (default true). */
  readonly aged?: boolean;
  readonly seed?: number;
  /** Configurations (default all of the mapping section's). */
  readonly configs?: readonly MappingConfigName[];
  /** I/O sizes in bytes, multiples of 512 up to 8 MiB (default BLOCK_IO_SIZES). */
  readonly sizes?: readonly number[];
  readonly buffers?: readonly BlockIoBuffer[];
}

/** One (configuration, buffer, I/O size): one Write of the buffer to the namespace, one Read back into it. */
export interface BlockIoRow {
  readonly config: MappingConfigName;
  readonly buffer: BlockIoBuffer;
  readonly ioBytes: number;
  /** Both I/Os completed with BLK_STS_OK and NVMe status 0. */
  readonly ok: boolean;
  /** What failed: a BLK_STS_* name, an NVMe status name, or the errno of a step; null when ok. */
  readonly failure: string | null;
  readonly errno: Errno | null;
  /** Requests the bio was split into (blkSubmitBio), per I/O. */
  readonly requests: number;
  /** DMA segments the driver put in its commands, per I/O (all requests). */
  readonly dmaSegments: number;
  /** How the requests of one I/O described their data: 'PRP', 'SGL', 'PRP+SGL' or '-' (none queued). */
  readonly transfer: string;
  /** PRP list / SGL segment bytes the driver wrote, and list pages / segments taken from its pools, per I/O. */
  readonly descriptorBytes: number;
  readonly listPages: number;
  /** Counter differences over the Write and the Read together. */
  readonly iommuMaps: number;
  readonly tableWalkSteps: number;
  /**
   * iommuTableWalkSteps of the same Write and Read with the queue's batchIommuMap on (a coalesced
   * request linked by one table walk, dmaIovaLinkBatch) instead of one dma_iova_link per segment.
   */
  readonly batchedWalkSteps: number;
  readonly iotlbInvalidations: number;
  readonly bounceBytes: number;
  /** Descriptor bytes the controller fetched by DMA (Write and Read). */
  readonly ctrlDescriptorBytes: number;
  /** Bytes the controller moved that matched, on sampled windows: the namespace after the Write, the buffer after the Read. */
  readonly bytesVerified: number;
  readonly bytesMismatched: number;
  /** Model time of both I/Os (bio, split, map, PRP/SGL, controller, completion, unmap), ms (not deterministic). */
  readonly ms: number;
}

export interface BlockIoReport {
  readonly configs: ReadonlyArray<{
    readonly name: MappingConfigName; readonly label: string; readonly device: string;
    /** The queue's limits after nvmeProbe, in bytes: max_hw_sectors and max_sectors (what bios are split to); null when probing failed. */
    readonly maxHwBytes: number | null;
    readonly maxBytes: number | null;
    /** The queue's max_segments; null when probing failed. */
    readonly maxSegments: number | null;
    /** Bytes into each buffer where the I/O starts (the mapping section's offset). */
    readonly offset: number;
  }>;
  readonly buffers: ReadonlyArray<{ readonly name: BlockIoBuffer; readonly label: string }>;
  readonly sizes: readonly number[];
  readonly rows: readonly BlockIoRow[];
  readonly legend: Readonly<Record<string, string>>;
}

/** Verified windows per I/O and their length: sampled as the mapping section samples its round trip. */
const VERIFY_WINDOWS = 32;
const VERIFY_WINDOW_BYTES = 4 * KiB;

export const BLOCK_IO_LEGEND: Readonly<Record<string, string>> = {
  Reqs: 'requests the bio was split into at the queue limits (per I/O)',
  Segs: 'DMA segments in the NVMe commands of one I/O',
  Data: 'how the commands described the data: PRP (list) or SGL',
  'Desc B': 'PRP list / SGL segment bytes the driver wrote for one I/O (the controller fetched the same by DMA)',
  Lists: 'descriptor list pages / SGL segments taken from the driver\'s dma_pools for one I/O',
  'IOMMU maps': 'iommu_map calls for the Write and the Read together',
  'Walk steps': 'IOMMU page-table levels descended by the map paths (iommuTableWalkSteps), Write + Read',
  'Batched': 'the same Write + Read with each coalesced request linked in one page-table walk (dmaIovaLinkBatch, the seed\'s batched map of a bio_vec array) instead of one dma_iova_link per segment',
  'IOTLB inv': 'IOTLB range invalidations + global flushes, Write + Read',
  'Bounce B': 'bytes copied through swiotlb, Write + Read',
  Verified: `bytes the controller moved that matched, on ${VERIFY_WINDOWS} sampled ${VERIFY_WINDOW_BYTES / KiB} KiB windows per I/O: the namespace after the Write plus the buffer after the Read`,
  ms: 'model time of the Write and the Read (pin, bio, split, map, PRP/SGL, controller, completion, unmap, unpin), ms (not deterministic)',
};

function msSince(t0: number): number {
  return performance.now() - t0;
}

/** The rows whose read-back differed from what was written (a model defect), one line each. */
export function blockIoWrongBytes(rows: readonly BlockIoRow[]): string[] {
  return rows.filter((r) => r.bytesMismatched > 0)
    .map((r) => `${r.config} / ${r.buffer} / ${r.ioBytes} B: ${r.bytesMismatched} bytes differ`);
}



/** Bytes of got that differ from want (word by word where both are 4-byte aligned, then byte by byte). */
function countMismatches(got: Uint8Array, want: Uint8Array): number {
  let bad = 0;
  let i = 0;
  if (got.length !== want.length) bad += Math.abs(got.length - want.length);
  const n = Math.min(got.length, want.length);
  if ((got.byteOffset & 3) === 0 && (want.byteOffset & 3) === 0) {
    const words = n >>> 2;
    const g = new Uint32Array(got.buffer, got.byteOffset, words);
    const w = new Uint32Array(want.buffer, want.byteOffset, words);
    for (let k = 0; k < words; k++) {
      if (g[k] !== w[k]) for (let j = k * 4; j < k * 4 + 4; j++) if (got[j] !== want[j]) bad++;
    }
    i = words * 4;
  }
  for (; i < n; i++) if (got[i] !== want[i]) bad++;
  return bad;
}

/** The createMachine config of the block machine of one configuration. */
export function blockIoMachineConfig(o: BlockIoOptions, name: MappingConfigName): MachineConfig {
  const c = MAPPING_CONFIGS[name];
  return {
    ramBytes: (o.ramGiB ?? 4) * GiB, aged: o.aged ?? true, seed: o.seed ?? 1, hugetlb: { '1G': 1 }, cpu: { vendor: 'intel' },
    pci: mappingPciFor(BLOCK_IO_PCI.map((n) => (n.name === 'gpu0' ? { ...n, bars: [{ bytes: GPU_BAR_BYTES, p2p: true }] } : n)), name),
    ...(c.iommu ? { iommu: { format: 'x86-64' as const, levels: 4 as const, mode: c.iommu } } : {}),
    swiotlb: { bytes: 64 * MiB, force: c.force },
  };
}

/** What one direct I/O did (blockDirectIo): requests, segments, descriptors, bytes moved, and the failure if any. */
export interface IoFigures {
  requests: number; segments: number; prp: number; sgl: number; descriptorBytes: number; listPages: number;
  /** Bytes the I/O moves: len, cut at the end of the device (0 for a read at or past it). */
  bytes: number;
  failure: string | null; errno: Errno | null;
}

/**
 * One direct I/O (O_DIRECT pread / pwrite on the block device) of the pinned range through block
 * layer, driver and controller, at 512-byte sector `sector` of namespace 1. Before any page is
 * pinned, block/fops.c: blkdev_write_iter() fails a write at or past the end of the device with
 * ENOSPC, blkdev_read_iter() makes a read there one of 0 bytes, and both cut an I/O that crosses
 * the end to the device's size (iov_iter_truncate); `bytes` is what is left, and only it moves.
 * Then blkdev_direct_IO() refuses an I/O whose position or (cut) length is not a multiple of the
 * logical block size with EINVAL.
 */
export function blockDirectIo(ctrl: NvmeCtrl, mm: UserMm, op: ReqOp, start: bigint, len: number, p2p: boolean, sector = 0n): IoFigures {
  const f: IoFigures = { requests: 0, segments: 0, prp: 0, sgl: 0, descriptorBytes: 0, listPages: 0, bytes: 0, failure: null, errno: null };
  const b = blkdevDirectIoBytes(ctrl.queue, op, sector, len);
  if (!b.ok) return { ...f, failure: b.message ?? b.errno, errno: b.errno };
  len = b.value;
  f.bytes = len;
  if (len === 0) return f;
  // direct I/O: pin_user_pages, then bio_vecs one folio at a time (directIoBvecs), each its own
  // vector in the bio (bio_iov_iter_get_pages never merges into a vector it has filled)
  const ps = mm.machine.pageSize;
  const first = Number(start % BigInt(ps));
  const nrPages = Math.ceil((first + len) / ps);
  const pinned = pinUserPages(mm, start, nrPages, (op === REQ_OP_READ ? FOLL_WRITE : 0) | (p2p ? FOLL_PCI_P2PDMA : 0));
  if (!pinned.ok) return { ...f, failure: `pin: ${pinned.errno}`, errno: pinned.errno };
  const pages = pinned.value;
  try {
    if (pages.count !== nrPages) return { ...f, failure: `short pin: ${pages.count} of ${nrPages} pages`, errno: 'EFAULT' };
    const v = pages.columns();
    const io = new PageArray(v.pfn, { pageSize: ps, offset: first, len, flags: v.f ?? v.fc });
    const bvecs = directIoBvecs(mm, io);
    if (!bvecs.ok) return { ...f, failure: `bio_vecs: ${bvecs.errno}`, errno: bvecs.errno };
    const bio = bioFromRanges(op, sector, bvecs.value, { merge: false });
    if (!bio.ok) return { ...f, failure: `bio: ${bio.errno}`, errno: bio.errno };
    const rqs = blkSubmitBio(ctrl.queue, bio.value);
    if (!rqs.ok) return { ...f, failure: `split: ${rqs.errno}`, errno: rqs.errno };
    f.requests = rqs.value.length;
    for (const rq of rqs.value) {
      const io = nvmeQueueRq(ctrl, 1, rq);
      if (!io.ok) {
        f.failure = io.message ?? blkStatusName(io.blkStatus);
        f.errno = io.errno;
        break;
      }
      f.segments += io.value.segments.length;
      if (io.value.useSgl) f.sgl++; else f.prp++;
      f.descriptorBytes += io.value.descriptorBytes;
      f.listPages += io.value.nrDescriptors;
      const c = nvmeExecute(ctrl, io.value);
      nvmeCompleteRq(ctrl, io.value);
      if (!c.ok || c.value.status !== 0) {
        f.failure = c.ok ? `NVMe ${nvmeCtrlStatusName(c.value.status)}` : c.errno;
        f.errno = c.ok ? 'EIO' : c.errno;
        break;
      }
    }
    return f;
  } finally {
    unpinUserPages(mm, pages);
  }
}

function transferKind(f: IoFigures): string {
  return f.prp > 0 && f.sgl > 0 ? 'PRP+SGL' : f.sgl > 0 ? 'SGL' : f.prp > 0 ? 'PRP' : '-';
}

/** Windows [offset, len) of an I/O of len bytes that the report checks: sector-aligned, spread over it, not overlapping. */
function ioWindows(len: number): Array<[number, number]> {
  const w = Math.min(VERIFY_WINDOW_BYTES, len);
  const n = Math.min(VERIFY_WINDOWS, Math.floor(len / w));
  if (n <= 1) return [[0, w]];
  const out: Array<[number, number]> = [];
  for (let i = 0; i < n; i++) out.push([Math.floor((i * (len - w)) / (n - 1) / 512) * 512, w]);
  return out;
}

/** Writes then reads back one size of one buffer; the row of figures. */
function measure(m: Machine, ctrl: NvmeCtrl, mm: UserMm, start: bigint, len: number, p2p: boolean, seed: number, cell: number,
  ids: { config: MappingConfigName; buffer: BlockIoBuffer }): BlockIoRow {
  const since = m.stats.snapshot();
  // each cell writes other bytes than the one before it at the same sector, so stale data shows
  const windows = ioWindows(len);
  const wants = windows.map(([, wl], i) => pattern(wl, seed * 7919 + cell * 64 + i));
  windows.forEach(([off], i) => mm.writeUser(start + BigInt(off), wants[i]!));
  const t0 = performance.now();
  const w = blockDirectIo(ctrl, mm, REQ_OP_WRITE, start, len, p2p);
  let ms = msSince(t0);
  let verified = 0;
  let mismatched = 0;
  const check = (got: Uint8Array | null, i: number): void => {
    const wl = windows[i]![1];
    const bad = got === null ? wl : countMismatches(got, wants[i]!);
    mismatched += bad;
    verified += wl - bad;
  };
  let r: IoFigures | null = null;
  if (w.failure === null) {
    windows.forEach(([off, wl], i) => check(ctrl.controller.readBlocks(1, BigInt(off / 512), wl / 512), i));
    // clear the windows of the buffer, then read the namespace back into it
    for (const [off, wl] of windows) mm.writeUser(start + BigInt(off), new Uint8Array(wl));
    const t1 = performance.now();
    r = blockDirectIo(ctrl, mm, REQ_OP_READ, start, len, p2p);
    ms += msSince(t1);
    if (r.failure === null) {
      windows.forEach(([off, wl], i) => {
        const back = mm.readUser(start + BigInt(off), wl);
        check(back.ok ? back.value : null, i);
      });
    }
  }
  const d = m.stats.diff(since);
  const failed = w.failure !== null ? w : r !== null && r.failure !== null ? r : null;
  // the same two I/Os again with the batched link, for its walk steps only (same bytes: the
  // namespace and the buffer already hold them)
  let batchedWalkSteps = 0;
  if (failed === null) {
    const steps0 = m.stats.iommuTableWalkSteps;
    ctrl.queue.batchIommuMap = true;
    try {
      blockDirectIo(ctrl, mm, REQ_OP_WRITE, start, len, p2p);
      blockDirectIo(ctrl, mm, REQ_OP_READ, start, len, p2p);
    } finally {
      ctrl.queue.batchIommuMap = false;
    }
    batchedWalkSteps = m.stats.iommuTableWalkSteps - steps0;
  }
  return {
    config: ids.config, buffer: ids.buffer, ioBytes: len, ok: failed === null && mismatched === 0,
    failure: failed?.failure ?? null, errno: failed?.errno ?? null,
    requests: w.requests, dmaSegments: w.segments, transfer: transferKind(w), descriptorBytes: w.descriptorBytes, listPages: w.listPages,
    iommuMaps: d.iommuMapCalls ?? 0, tableWalkSteps: d.iommuTableWalkSteps ?? 0, batchedWalkSteps,
    iotlbInvalidations: (d.iotlbRangeInvalidations ?? 0) + (d.iotlbGlobalFlushes ?? 0), bounceBytes: d.swiotlbBounceBytes ?? 0,
    ctrlDescriptorBytes: d.nvmeCtrlDescriptorBytes ?? 0, bytesVerified: verified, bytesMismatched: mismatched, ms,
  };
}

function checkOptions(o: BlockIoOptions): { configs: readonly MappingConfigName[]; sizes: readonly number[]; buffers: readonly BlockIoBuffer[] } {
  const configs = o.configs ?? MAPPING_CONFIG_NAMES;
  for (const n of configs) {
    if (!Object.hasOwn(MAPPING_CONFIGS, n)) throw new RangeError(`configs must name mapping configurations (${MAPPING_CONFIG_NAMES.join(', ')}), got ${JSON.stringify(n)}`);
  }
  const sizes = o.sizes ?? BLOCK_IO_SIZES;
  for (const s of sizes) {
    checkLen('sizes[]', s, 512, 8 * MiB);
    if (s % 512 !== 0) throw new RangeError(`sizes[] must be multiples of 512, got ${s}`);
  }
  const buffers = o.buffers ?? BLOCK_IO_BUFFERS;
  for (const b of buffers) {
    if (!(BLOCK_IO_BUFFERS as readonly string[]).includes(b)) throw new RangeError(`buffers must be from ${BLOCK_IO_BUFFERS.join(', ')}, got ${JSON.stringify(b)}`);
  }
  if (o.ramGiB !== undefined) checkLen('ramGiB', o.ramGiB, 2, 1 << 20);
  return { configs, sizes, buffers };
}

/**
 * One configuration of the block I/O section: its own machine (small: the section needs 8 MiB
 * buffers), the NVMe driver probed on the configuration's device, each buffer mapped into one
 * process, and every size written and read back.
 * @throws RangeError/TypeError for invalid options (naming them).
 */
export function runBlockIoConfig(o: BlockIoOptions, name: MappingConfigName): {
  maxHwBytes: number | null; maxBytes: number | null; maxSegments: number | null; rows: BlockIoRow[];
} {
  const { sizes, buffers } = checkOptions(o);
  const spec = MAPPING_CONFIGS[name];
  if (spec === undefined || !Object.hasOwn(MAPPING_CONFIGS, name)) {
    throw new RangeError(`name must be a mapping configuration (${MAPPING_CONFIG_NAMES.join(', ')}), got ${JSON.stringify(name)}`);
  }
  const m = createMachine(blockIoMachineConfig(o, name));
  m.dmaDebug.enabled = false;
  // the rows read the cache counters; keeping one CACHE event per maintenance operation (hundreds of
  // thousands on the non-coherent configuration) would cost seconds and show nothing more
  m.events.mute('CACHE');
  for (const d of m.devices()) {
    dmaSetMaskAndCoherent(d, DMA_BIT_MASK(64));
    dmaSetMaxSegSize(d, 0xffffffff);
  }
  const dev = m.device(spec.device);
  const probed = nvmeProbe(dev); // the controller model createMachine attached (nvmeControllerOf)
  const maxIo = Math.max(...sizes);
  const rows: BlockIoRow[] = [];
  const fail = (buffer: BlockIoBuffer, failure: string, errno: Errno): void => {
    for (const s of sizes) {
      rows.push({
        config: name, buffer, ioBytes: s, ok: false, failure, errno, requests: 0, dmaSegments: 0, transfer: '-', descriptorBytes: 0,
        listPages: 0, iommuMaps: 0, tableWalkSteps: 0, batchedWalkSteps: 0, iotlbInvalidations: 0, bounceBytes: 0, ctrlDescriptorBytes: 0, bytesVerified: 0,
        bytesMismatched: 0, ms: 0,
      });
    }
  };
  if (!probed.ok) {
    for (const b of buffers) fail(b, `probe: ${probed.errno}${probed.message ? ` (${probed.message})` : ''}`, probed.errno);
    return { maxHwBytes: null, maxBytes: null, maxSegments: null, rows };
  }
  const ctrl = probed.value;
  const mm = m.newProcess();
  let cell = 0;
  for (const b of buffers) {
    // whole 2 MiB extents, so that a THP buffer can hold huge folios whatever the largest I/O
    const len = Math.ceil((maxIo + spec.offset) / (2 * MiB)) * 2 * MiB;
    const backing = b === 'gpu-bar' ? { device: 'gpu0.bar0', offset: 0 } : b === 'hugetlb' ? 'hugetlb-1G' as const : b;
    const mapped = mm.mmap({ len: b === 'hugetlb' ? GiB : len, backing, populate: true });
    if (!mapped.ok) {
      fail(b, `mmap: ${mapped.errno}`, mapped.errno);
      continue;
    }
    for (const s of sizes) {
      rows.push(measure(m, ctrl, mm, mapped.value + BigInt(spec.offset), s, b === 'gpu-bar', o.seed ?? 1, cell++, { config: name, buffer: b }));
    }
  }
  const lim = ctrl.queue.limits;
  return { maxHwBytes: lim.maxHwSectors * 512, maxBytes: lim.maxSectors * 512, maxSegments: lim.maxSegments, rows };
}

/** The block I/O section: every configuration in order. */
export function runBlockIo(o: BlockIoOptions = {}): BlockIoReport {
  const { configs, sizes, buffers } = checkOptions(o);
  const cfgs: Array<BlockIoReport['configs'][number]> = [];
  const rows: BlockIoRow[] = [];
  for (const name of configs) {
    const r = runBlockIoConfig(o, name);
    const spec = MAPPING_CONFIGS[name];
    cfgs.push({
      name, label: spec.label, device: spec.device, maxHwBytes: r.maxHwBytes, maxBytes: r.maxBytes, maxSegments: r.maxSegments, offset: spec.offset,
    });
    rows.push(...r.rows);
  }
  return {
    configs: cfgs, buffers: buffers.map((b) => ({ name: b, label: BLOCK_IO_BUFFER_LABELS[b] })), sizes, rows, legend: BLOCK_IO_LEGEND,
  };
}

