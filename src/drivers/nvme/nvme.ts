// Models: the NVMe PCIe host driver's data path (drivers/nvme/host/pci.c, Linux 7.1):
//   probe: nvme_pci_alloc_dev() (64-bit DMA masks, min_align_mask NVME_CTRL_PAGE_SIZE - 1, max
//   segment size 0xffffffff, max_hw_sectors = min(NVME_MAX_BYTES, dma_opt_mapping_size()) >> 9,
//   max_segments NVME_MAX_SEGS), nvme_setup_descriptor_pools() (the 4 KiB "nvme descriptor page"
//   and 256 B "nvme descriptor small" dma_pools), drivers/nvme/host/core.c: nvme_init_identify()
//   (MDTS caps max_hw_sectors, nvme_mps_to_sectors()) and nvme_set_ctrl_limits() (max_segments =
//   min(max_hw_sectors / 8 + 1, NVME_MAX_SEGS), virt boundary from nvme_pci_get_virt_boundary():
//   4095 on the admin queue and on controllers without SGLs, else 0; max_segment_size UINT_MAX;
//   dma_alignment 3), nvme_update_disk_info() (logical block size = the namespace's LBA size),
//   nvme_update_ns_info() (the disk's capacity: NSZE in 512-byte sectors, nvme_lba_to_sect(),
//   set_capacity_and_notify());
//   I/O: nvme_setup_rw() (opcode, NSID, SLBA, zero-based NLB), nvme_map_data() with
//   nvme_pci_use_sgls() (admin queue never, forced on a gap inside a controller page),
//   nvme_pci_avg_seg_size() against sgl_threshold, nvme_pci_setup_data_simple() (the one-segment
//   fast path), nvme_pci_setup_data_prp() and nvme_pci_setup_data_sgl() (built here by the common
//   descriptor builder, drivers/sgl), nvme_unmap_data() with nvme_free_prps() / nvme_free_sgls() /
//   nvme_free_descriptors().
// Model deviation: the command is not copied into a submission queue and no doorbell is rung;
// nvmeExecute hands the 64-byte entry to the controller model directly and returns its status.
// Model deviation: the driver maps all DMA segments of a request before it writes descriptors (the
// kernel interleaves blk_rq_dma_map_iter_next() with the PRP / SGL writes); the result is the same.
// Model deviation: nvme_pci_setup_data_prp() catches only a segment shorter than its PRP
// (WARN_ON_ONCE + "Incorrectly formed request", BLK_STS_IOERR); a segment after the first that
// starts inside a controller page would be written as an unaligned PRP entry and refused by the
// controller. The model refuses both in the driver, with BLK_STS_IOERR and nothing left mapped.
// Model deviation: CIDs are a per-controller counter, not (genctr << 12) | tag.

import { err, ok, type Err, type Ok, type Result } from '../../base/index.ts';
import {
  DMA_ATTR_MMIO, DMA_BIT_MASK, DmaIovaState, dmaContextOf, dmaMapPhys, dmaOptMappingSize, dmaPoolCreate, dmaPoolDestroy,
  dmaSetMaskAndCoherent, dmaSetMaxSegSize, dmaSetMinAlignMask, dmaUnmapPhys, dmaUseIova, type DmaPool,
} from '../../dma/index.ts';
import {
  PCI_P2PDMA_MAP_BUS_ADDR, PCI_P2PDMA_MAP_NONE, PCI_P2PDMA_MAP_THRU_HOST_BRIDGE, deviceReleaseDriver, driverProbe, type Device,
  type PciP2pdmaMapType,
} from '../../pci/index.ts';
import {
  BLK_STS_INVAL, BLK_STS_IOERR, BLK_STS_OK, BLK_STS_RESOURCE, BlkDmaIter, REQ_OP_WRITE, Request, RequestQueue,
  SECTOR_SHIFT, blkMqInitQueue, blkRqDmaMapCoalesce, blkRqDmaMapIterNext, blkRqDmaMapIterStart, blkRqDmaUnmap,
  blkStatusName, blkStatusToErrno, isP2pdmaFlags, reqPhysGapMask, rqDmaDir, setCapacity, type BlkStatus,
} from '../block/index.ts';
import { sglBuild, sglFree, type DmaSegment, type SglBlock, type SglHooks } from '../sgl/index.ts';
import { nvmeControllerOf } from '../nvme-ctrl/index.ts';

/** NVME_CTRL_PAGE_SIZE: the page PRPs describe (drivers/nvme/host/nvme.h). */
/** The PCI driver's name (drivers/nvme/host/pci.c: nvme_driver.name): dev_driver_string() of a probed controller. */
export const NVME_DRIVER_NAME = 'nvme';
export const NVME_CTRL_PAGE_SIZE = 4096;
/** NVME_SMALL_POOL_SIZE: the small descriptor pool's block (I/Os between 4 KiB and 128 KiB). */
export const NVME_SMALL_POOL_SIZE = 256;
/** NVME_MAX_BYTES: the driver's own cap on one command (SZ_8M). */
export const NVME_MAX_BYTES = 8 * 1024 * 1024;
/** NVME_MAX_SEGS: one controller page of 16-byte SGL descriptors. */
export const NVME_MAX_SEGS = NVME_CTRL_PAGE_SIZE / 16;
/** NVME_MAX_NR_DESCRIPTORS: PRP list pages of one command at most. */
export const NVME_MAX_NR_DESCRIPTORS = 5;
/** The sgl_threshold module parameter's default (SZ_32K); 0 turns SGLs off. */
export const NVME_SGL_THRESHOLD_DEFAULT = 32 * 1024;
/** NVME_CMD_SGL_METABUF: PSDT = 01b in the command's flags byte (data is described by an SGL). */
export const NVME_CMD_SGL_METABUF = 1 << 6;
/** nvme_cmd_write / nvme_cmd_read. */
export const nvme_cmd_write = 0x01;
export const nvme_cmd_read = 0x02;
/** struct nvme_sgl_desc type bytes: NVME_SGL_FMT_DATA_DESC << 4, NVME_SGL_FMT_LAST_SEG_DESC << 4. */
export const NVME_SGL_DATA_DESC = 0x00;
export const NVME_SGL_LAST_SEG_DESC = 0x30;

/** enum nvme_use_sgl. */
export const SGL_UNSUPPORTED = 0;
export const SGL_SUPPORTED = 1;
export const SGL_FORCED = 2;

/** struct nvme_iod flags, with the bit values of enum nvme_iod_flags (drivers/nvme/host/pci.c). */
export const IOD_SMALL_DESCRIPTOR = 1 << 1;
export const IOD_SINGLE_SEGMENT = 1 << 2;
export const IOD_DATA_P2P = 1 << 3;
export const IOD_DATA_MMIO = 1 << 5;

const UINT_MAX = 0xffff_ffff;
const USHRT_MAX = 0xffff;

/** What the driver needs of the controller it drives (the device model on the PCI function). */
export interface NvmeControllerPort {
  readonly identify: {
    readonly sgls: boolean;
    readonly mdts: number;
    readonly mpsmin?: number;
    /** Identify Namespace of each active namespace: NSZE (size in logical blocks) and the LBA data size. */
    readonly namespaces: ReadonlyArray<{ readonly nsid: number; readonly nsze: number; readonly lbaBytes: number }>;
  };
  execute(sqe: Uint8Array): { readonly status: number };
  readBlocks(nsid: number, slba: bigint, nlb: number): Uint8Array;
}

/** One probed controller: its device, queues, descriptor pools and settings. */
export class NvmeCtrl {
  readonly dev: Device;
  readonly controller: NvmeControllerPort;
  /** The I/O request queue of the first namespace (queue ids 1 and up). */
  readonly queue: RequestQueue;
  /** Request queues by namespace id. */
  readonly queues: ReadonlyMap<number, RequestQueue>;
  /** The admin queue (queue id 0: PRPs only, virt boundary 4095). */
  readonly adminQueue: RequestQueue;
  /** ctrl->max_hw_sectors after MDTS. */
  readonly maxHwSectors: number;
  readonly sglSupported: boolean;
  /** sgl_threshold (bytes; 0 disables SGLs for I/O queues). */
  sglThreshold = NVME_SGL_THRESHOLD_DEFAULT;
  readonly pools: { readonly large: DmaPool; readonly small: DmaPool };
  /** Commands queued and not completed. */
  readonly inflight = new Set<NvmeIo>();
  private cid = 0;
  private readonly lbaShift: Map<number, number>;

  /** @internal use nvmeProbe. */
  constructor(dev: Device, controller: NvmeControllerPort, queues: Map<number, RequestQueue>, adminQueue: RequestQueue,
    maxHwSectors: number, pools: { large: DmaPool; small: DmaPool }, lbaShift: Map<number, number>) {
    this.dev = dev;
    this.controller = controller;
    this.queues = queues;
    this.queue = queues.values().next().value!;
    this.adminQueue = adminQueue;
    this.maxHwSectors = maxHwSectors;
    this.sglSupported = controller.identify.sgls;
    this.pools = pools;
    this.lbaShift = lbaShift;
  }

  /** @internal the next command identifier. */
  nextCid(): number {
    const c = this.cid;
    this.cid = (this.cid + 1) & 0xffff;
    return c;
  }

  /** @internal the namespace of a queue and its LBA shift. */
  nsOf(q: RequestQueue): { nsid: number; lbaShift: number } {
    if (q === this.adminQueue) return { nsid: 0, lbaShift: SECTOR_SHIFT };
    for (const [nsid, qq] of this.queues) if (qq === q) return { nsid, lbaShift: this.lbaShift.get(nsid)! };
    throw new TypeError('req must belong to a queue of this controller');
  }
}

/** A command in flight (struct nvme_iod with its command). */
export interface NvmeIo {
  readonly qid: number;
  readonly req: Request;
  /** The 64-byte submission queue entry, little-endian, byte-exact. */
  readonly sqe: Uint8Array;
  readonly useSgl: boolean;
  /** List pages / SGL segments taken from the descriptor pools. */
  readonly nrDescriptors: number;
  readonly totalLen: number;
  /** IOD_* flags. */
  readonly flags: number;
  /** Bytes of PRP list / SGL segment memory written. */
  readonly descriptorBytes: number;
  /** The DMA segments the command describes, in order. */
  readonly segments: readonly DmaSegment[];
  /** @internal */
  readonly state: DmaIovaState;
  /** @internal per-segment mappings to undo (nvme_pci_prp_save_mapping / the SGL entries). */
  readonly dmaVecs: readonly DmaSegment[];
  /** @internal */
  readonly blocks: readonly SglBlock[];
  /** @internal */
  readonly p2pMap: PciP2pdmaMapType;
  completed: boolean;
}

/** A refused command: the errno of its block status, and the status itself. */
export type NvmeQueueResult = Ok<NvmeIo> | (Err & { readonly blkStatus: BlkStatus });

function fail(status: BlkStatus, message: string): Err & { readonly blkStatus: BlkStatus } {
  return { ...err(blkStatusToErrno(status) ?? 'EIO', `${blkStatusName(status)}: ${message}`), blkStatus: status };
}

/** Options of nvmeProbe. */
export interface NvmeProbeOptions {
  /** The controller model (default: the one the machine built on the device). */
  readonly controller?: NvmeControllerPort;
  /** sgl_threshold in bytes (default 32 KiB; 0: never choose SGLs by size). */
  readonly sglThreshold?: number;
}

/**
 * nvme_probe() for the data path: sets the device's DMA parameters as nvme_pci_alloc_dev() does,
 * reads the controller's Identify data (SGL support, MDTS, namespaces), creates the descriptor
 * pools, and one request queue per namespace with the limits nvme_set_ctrl_limits() gives and the
 * namespace's size (NSZE) as its disk's capacity (bdevNrSectors).
 * Errors: ENODEV (no controller: the device has no `nvme` config and none was given), what dma_set_mask / dma_pool_create / the queue limits return.
 */
export function nvmeProbe(dev: Device, opts: NvmeProbeOptions = {}): Result<NvmeCtrl> {
  const controller: NvmeControllerPort | null = opts.controller ?? nvmeControllerOf(dev);
  if (controller === null) return err('ENODEV', `${dev.name}: no NVMe controller`);
  return driverProbe(dev, NVME_DRIVER_NAME, () => nvmeProbeBound(dev, controller, opts));
}

function nvmeProbeBound(dev: Device, controller: NvmeControllerPort, opts: NvmeProbeOptions): Result<NvmeCtrl> {
  const m = dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(64));
  if (!m.ok) return m;
  dmaSetMinAlignMask(dev, NVME_CTRL_PAGE_SIZE - 1);
  dmaSetMaxSegSize(dev, UINT_MAX);
  // min_t(u32, NVME_MAX_BYTES >> SECTOR_SHIFT, dma_opt_mapping_size() >> 9)
  let maxHw = Math.min(NVME_MAX_BYTES / 512, Math.min(Math.floor(dmaOptMappingSize(dev) / 512), UINT_MAX));
  const id = controller.identify;
  if (id.mdts) {
    const shift = id.mdts + NVME_CTRL_PAGE_SIZE.toString(2).length - 1 + (id.mpsmin ?? 0) - SECTOR_SHIFT;
    const mdtsSectors = shift >= 32 ? UINT_MAX : 2 ** shift;
    maxHw = Math.min(maxHw, mdtsSectors);
  }
  const maxSegments = Math.min(USHRT_MAX, Math.min(Math.floor(maxHw / (NVME_CTRL_PAGE_SIZE >> SECTOR_SHIFT)) + 1, NVME_MAX_SEGS));
  const large = dmaPoolCreate('nvme descriptor page', dev, NVME_CTRL_PAGE_SIZE, NVME_CTRL_PAGE_SIZE, 0);
  if (!large.ok) return large;
  const small = dmaPoolCreate('nvme descriptor small', dev, NVME_SMALL_POOL_SIZE, NVME_SMALL_POOL_SIZE, 0);
  if (!small.ok) return small;
  const common = { maxHwSectors: maxHw, maxSegments, maxSegmentSize: UINT_MAX, dmaAlignment: 3 };
  const admin = blkMqInitQueue(dev, { ...common, virtBoundaryMask: NVME_CTRL_PAGE_SIZE - 1 });
  if (!admin.ok) return admin;
  const queues = new Map<number, RequestQueue>();
  const lbaShift = new Map<number, number>();
  for (const ns of id.namespaces) {
    const q = blkMqInitQueue(dev, {
      ...common, virtBoundaryMask: id.sgls ? 0 : NVME_CTRL_PAGE_SIZE - 1,
      logicalBlockSize: ns.lbaBytes, physicalBlockSize: ns.lbaBytes,
    });
    if (!q.ok) return q;
    const shift = Math.log2(ns.lbaBytes);
    // nvme_update_ns_info(): the disk is NSZE blocks long, in 512-byte sectors (nvme_lba_to_sect())
    setCapacity(q.value, BigInt(ns.nsze) << BigInt(shift - SECTOR_SHIFT));
    queues.set(ns.nsid, q.value);
    lbaShift.set(ns.nsid, shift);
  }
  if (queues.size === 0) return err('ENODEV', `${dev.name}: the controller has no namespaces`);
  const ctrl = new NvmeCtrl(dev, controller, queues, admin.value, maxHw, { large: large.value, small: small.value }, lbaShift);
  if (opts.sglThreshold !== undefined) ctrl.sglThreshold = opts.sglThreshold;
  return ok(ctrl);
}

function prpHooks(ctrl: NvmeCtrl): SglHooks {
  return {
    name: 'nvme prp',
    entrySize: 8,
    split: 'page',
    pageSize: NVME_CTRL_PAGE_SIZE,
    inlineEntries: 2,
    inlineBeforeList: 1,
    entriesPerList: NVME_CTRL_PAGE_SIZE / 8,
    encodeData: (v, off, addr) => v.setBigUint64(off, addr, true),
    encodeLink: (v, off, next) => v.setBigUint64(off, next, true),
    // DIV_ROUND_UP(length, NVME_CTRL_PAGE_SIZE) <= NVME_SMALL_POOL_SIZE / 8: the first list from the small pool
    poolFor: (index, listEntries) => (index === 0 && listEntries <= NVME_SMALL_POOL_SIZE / 8 ? ctrl.pools.small : ctrl.pools.large),
  };
}

/**
 * entries: blk_rq_nr_phys_segments(); coalesced: blk_rq_dma_map_coalesce(). In
 * nvme_pci_setup_data_sgl() (drivers/nvme/host/pci.c) these two, not the number of DMA segments the
 * iterator yields, decide between the data descriptor in the command and a list: a request of
 * several physical segments that blk_map_iter_next() merges into one DMA segment still gets a
 * one-entry list behind a Last Segment descriptor.
 */
function sglHooks(ctrl: NvmeCtrl, entries: number, coalesced: boolean): SglHooks {
  return {
    name: 'nvme sgl',
    entrySize: 16,
    split: 'extent',
    maxEntryLen: UINT_MAX,
    inlineEntries: entries === 1 || coalesced ? 1 : 0,
    inlineBeforeList: 0,
    entriesPerList: NVME_MAX_SEGS,
    encodeData: (v, off, addr, len) => writeSglDesc(v, off, addr, len, NVME_SGL_DATA_DESC),
    // entries <= NVME_SMALL_POOL_SIZE / sizeof(struct nvme_sgl_desc): the small pool
    poolFor: () => (entries <= NVME_SMALL_POOL_SIZE / 16 ? ctrl.pools.small : ctrl.pools.large),
  };
}

/** struct nvme_sgl_desc: addr le64 | length le32 | rsvd[3] | type. */
function writeSglDesc(v: DataView, off: number, addr: bigint, len: number, type: number): void {
  v.setBigUint64(off, addr, true);
  v.setUint32(off + 8, len, true);
  v.setUint8(off + 12, 0);
  v.setUint16(off + 13, 0, true);
  v.setUint8(off + 15, type);
}

/** nvme_pci_use_sgls(). */
function useSgls(ctrl: NvmeCtrl, qid: number, req: Request): number {
  if (qid !== 0 && ctrl.sglSupported) {
    if (reqPhysGapMask(req) & BigInt(NVME_CTRL_PAGE_SIZE - 1)) return SGL_FORCED;
    return SGL_SUPPORTED;
  }
  return SGL_UNSUPPORTED;
}

interface IoBuild {
  sqe: Uint8Array;
  view: DataView;
  flags: number;
  useSgl: boolean;
  totalLen: number;
  segments: DmaSegment[];
  dmaVecs: DmaSegment[];
  blocks: SglBlock[];
  descriptorBytes: number;
  state: DmaIovaState;
  p2pMap: PciP2pdmaMapType;
  failMessage?: string;
}

/**
 * nvme_queue_rq() -> nvme_prep_rq(): builds the command for req on queue qid (0: the admin queue)
 * and maps its data. Refusals carry the block status the kernel returns, with nothing left mapped
 * and no descriptor held: BLK_STS_IOERR for data no PRP list can describe on a PRP path,
 * BLK_STS_INVAL for P2P memory the device cannot reach, BLK_STS_RESOURCE when a mapping or a
 * descriptor cannot be had.
 * @throws TypeError when req is not a request of one of the controller's queues.
 */
export function nvmeQueueRq(ctrl: NvmeCtrl, qid: number, req: Request): NvmeQueueResult {
  if (!(ctrl instanceof NvmeCtrl)) throw new TypeError(`ctrl must be an NvmeCtrl (nvmeProbe), got ${String(ctrl)}`);
  if (!Number.isInteger(qid) || qid < 0 || qid > 0xffff) throw new RangeError(`qid must be a queue id in [0, 65535], got ${String(qid)}`);
  if (!(req instanceof Request)) throw new TypeError(`req must be a Request, got ${String(req)}`);
  const { nsid, lbaShift } = ctrl.nsOf(req.q);
  const sqe = new Uint8Array(64);
  const b: IoBuild = {
    sqe, view: new DataView(sqe.buffer), flags: 0, useSgl: false, totalLen: 0, segments: [], dmaVecs: [], blocks: [],
    descriptorBytes: 0, state: new DmaIovaState(), p2pMap: PCI_P2PDMA_MAP_NONE,
  };
  // nvme_setup_rw(): opcode, command id, NSID, SLBA, zero-based NLB
  const v = b.view;
  v.setUint8(0, req.op === REQ_OP_WRITE ? nvme_cmd_write : nvme_cmd_read);
  v.setUint16(2, ctrl.nextCid(), true);
  v.setUint32(4, nsid, true);
  v.setBigUint64(40, req.sector >> BigInt(lbaShift - SECTOR_SHIFT), true);
  v.setUint16(48, (req.dataLen >> lbaShift) - 1, true);
  const status = mapData(ctrl, qid, req, b);
  if (status !== BLK_STS_OK) return fail(status, b.failMessage ?? 'mapping failed');
  const io: NvmeIo = {
    qid, req, sqe, useSgl: b.useSgl, nrDescriptors: b.blocks.length, totalLen: b.totalLen, flags: b.flags,
    descriptorBytes: b.descriptorBytes, segments: b.segments, state: b.state, dmaVecs: b.dmaVecs, blocks: b.blocks,
    p2pMap: b.p2pMap, completed: false,
  };
  ctrl.inflight.add(io);
  return ok(io);
}

/** nvme_map_data(). */
function mapData(ctrl: NvmeCtrl, qid: number, req: Request, b: IoBuild): BlkStatus {
  const dev = ctrl.dev;
  const use = useSgls(ctrl, qid, req);
  if (req.nrPhysSegments === 1) {
    const s = setupDataSimple(ctrl, req, use, b);
    if (s !== null) return s;
  }
  const iter = new BlkDmaIter();
  if (!blkRqDmaMapIterStart(req, dev, b.state, iter)) {
    b.failMessage = iter.status === BLK_STS_INVAL ? 'P2P memory the device cannot reach' : 'blk_rq_dma_map_iter_start failed';
    return iter.status === BLK_STS_OK ? BLK_STS_IOERR : iter.status;
  }
  b.p2pMap = iter.p2pdma.map;
  if (b.p2pMap === PCI_P2PDMA_MAP_BUS_ADDR) b.flags |= IOD_DATA_P2P;
  else if (b.p2pMap === PCI_P2PDMA_MAP_THRU_HOST_BRIDGE) b.flags |= IOD_DATA_MMIO;
  const coalesced = blkRqDmaMapCoalesce(b.state);
  // every DMA segment of the request (see the header: mapped before the descriptors are written)
  b.segments.push({ addr: iter.addr, len: iter.len });
  const saveVecs = !dmaUseIova(b.state) && b.p2pMap !== PCI_P2PDMA_MAP_BUS_ADDR;
  if (saveVecs) b.dmaVecs.push({ addr: iter.addr, len: iter.len });
  if (!coalesced) {
    while (blkRqDmaMapIterNext(req, dev, iter)) {
      b.segments.push({ addr: iter.addr, len: iter.len });
      if (saveVecs) b.dmaVecs.push({ addr: iter.addr, len: iter.len });
    }
    if (iter.status !== BLK_STS_OK) {
      b.failMessage = 'blk_rq_dma_map_iter_next failed';
      unmapData(ctrl, req, b);
      return iter.status;
    }
  }
  const avg = Math.ceil(req.dataLen / (coalesced ? 1 : req.nrPhysSegments));
  if (use === SGL_FORCED || (use === SGL_SUPPORTED && ctrl.sglThreshold && avg >= ctrl.sglThreshold)) return setupDataSgl(ctrl, req, b);
  return setupDataPrp(ctrl, req, b);
}

/** nvme_pci_setup_data_simple(): null for BLK_STS_AGAIN (take the iterator path). */
function setupDataSimple(ctrl: NvmeCtrl, req: Request, use: number, b: IoBuild): BlkStatus | null {
  const c = req.bio.cols;
  const i = req.bio.iterIdx;
  const phys = c.addr[i] + req.bio.iterDone;
  const bvLen = Math.min(c.len[i] - req.bio.iterDone, req.dataLen);
  // one bio_vec holds the whole request (req_bvec()); the model's requests always have that shape here
  if (bvLen !== req.dataLen) return null;
  const prp1Offset = phys % NVME_CTRL_PAGE_SIZE;
  const prpPossible = prp1Offset + bvLen <= NVME_CTRL_PAGE_SIZE * 2;
  if (use === SGL_UNSUPPORTED && !prpPossible) return null;
  if (isP2pdmaFlags(c.flags[i])) return null;
  const r = dmaMapPhys(ctrl.dev, BigInt(phys), bvLen, rqDmaDir(req), 0);
  if (!r.ok) return BLK_STS_RESOURCE;
  const addr = r.value;
  b.totalLen = bvLen;
  b.flags |= IOD_SINGLE_SEGMENT;
  b.segments.push({ addr, len: bvLen });
  if (use === SGL_FORCED || !prpPossible) {
    b.useSgl = true;
    b.view.setUint8(1, NVME_CMD_SGL_METABUF);
    writeSglDesc(b.view, 24, addr, bvLen, NVME_SGL_DATA_DESC);
  } else {
    const firstPrpLen = NVME_CTRL_PAGE_SIZE - prp1Offset;
    b.view.setBigUint64(24, addr, true);
    b.view.setBigUint64(32, bvLen > firstPrpLen ? addr + BigInt(firstPrpLen) : 0n, true);
  }
  return BLK_STS_OK;
}

/** nvme_pci_setup_data_prp(): PRP1, PRP2 as data or as the first PRP list, lists chained by their last entry. */
function setupDataPrp(ctrl: NvmeCtrl, req: Request, b: IoBuild): BlkStatus {
  const r = sglBuild(ctrl.dev, prpHooks(ctrl), b.segments);
  if (!r.ok) {
    unmapData(ctrl, req, b);
    if (r.errno === 'ENOMEM') return BLK_STS_RESOURCE;
    const mm = dmaContextOf(ctrl.dev).mm;
    mm.events.warn('nvme', `${ctrl.dev.name}: nvme_pci_setup_data_prp: WARN_ON_ONCE(iter->len < prp_len)`);
    mm.events.record('INFO', 'nvme', `${ctrl.dev.name}: Incorrectly formed request for payload:${req.dataLen} nents:${req.nrPhysSegments}`,
      { dev: ctrl.dev.name, level: 'err' });
    b.failMessage = `data no PRP list can describe (${r.message ?? r.errno})`;
    return BLK_STS_IOERR;
  }
  const build = r.value;
  b.blocks = [...build.blocks];
  b.totalLen = build.totalLen;
  b.descriptorBytes = build.descriptorBytes;
  b.view.setBigUint64(24, build.inline[0].addr, true);
  const prp2 = build.list !== null ? build.list.dmaAddr : build.inline.length > 1 ? build.inline[1].addr : 0n;
  b.view.setBigUint64(32, prp2, true);
  if (build.blocks.length > 0 && build.blocks[0].pool === ctrl.pools.small) b.flags |= IOD_SMALL_DESCRIPTOR;
  return BLK_STS_OK;
}

/**
 * nvme_pci_setup_data_sgl(): one data descriptor in the command for a request of one physical
 * segment or one coalesced IOVA range, else a last-segment descriptor and a list (of one entry
 * when the request's physical segments became one DMA segment).
 */
function setupDataSgl(ctrl: NvmeCtrl, req: Request, b: IoBuild): BlkStatus {
  b.useSgl = true;
  b.view.setUint8(1, NVME_CMD_SGL_METABUF);
  const r = sglBuild(ctrl.dev, sglHooks(ctrl, req.nrPhysSegments, blkRqDmaMapCoalesce(b.state)), b.segments);
  if (!r.ok) {
    unmapData(ctrl, req, b);
    b.failMessage = `SGL build failed (${r.errno})`;
    return r.errno === 'ENOMEM' ? BLK_STS_RESOURCE : BLK_STS_IOERR;
  }
  const build = r.value;
  b.blocks = [...build.blocks];
  b.totalLen = build.totalLen;
  b.descriptorBytes = build.descriptorBytes;
  if (build.list === null) writeSglDesc(b.view, 24, build.inline[0].addr, build.inline[0].len, NVME_SGL_DATA_DESC);
  else writeSglDesc(b.view, 24, build.list.dmaAddr, build.list.entries * 16, NVME_SGL_LAST_SEG_DESC);
  if (build.blocks.length > 0 && build.blocks[0].pool === ctrl.pools.small) b.flags |= IOD_SMALL_DESCRIPTOR;
  return BLK_STS_OK;
}

/** nvme_unmap_data() without the descriptors: the IOVA window, or every per-segment mapping. */
interface Mapped {
  readonly flags: number;
  readonly segments: readonly DmaSegment[];
  readonly dmaVecs: readonly DmaSegment[];
  readonly state: DmaIovaState;
  readonly p2pMap: PciP2pdmaMapType;
}

function unmapData(ctrl: NvmeCtrl, req: Request, b: Mapped): void {
  const dev = ctrl.dev;
  const dir = rqDmaDir(req);
  if (b.flags & IOD_SINGLE_SEGMENT) {
    dmaUnmapPhys(dev, b.segments[0].addr, b.segments[0].len, dir);
    return;
  }
  const mapped = b.segments.reduce((s, x) => s + x.len, 0);
  if (!blkRqDmaUnmap(req, dev, b.state, mapped, b.p2pMap)) {
    const attrs = b.flags & IOD_DATA_MMIO ? DMA_ATTR_MMIO : 0;
    for (const s of b.dmaVecs) dmaUnmapPhys(dev, s.addr, s.len, dir, attrs);
  }
}

/**
 * nvme_pci_complete_rq() -> nvme_unmap_data(): undoes the command's mappings (the IOVA window, the
 * single segment, or each segment) and gives its PRP lists / SGL segments back to their pools.
 * @throws TypeError for a command that is not in flight on this controller.
 */
export function nvmeCompleteRq(ctrl: NvmeCtrl, io: NvmeIo): void {
  if (!ctrl.inflight.has(io)) throw new TypeError('io must be a command of this controller that is not completed');
  ctrl.inflight.delete(io);
  io.completed = true;
  unmapData(ctrl, io.req, io);
  // nvme_free_descriptors(): one descriptor goes back to the pool it came from, several to the large pool
  sglFree(io.blocks);
}

/**
 * Submits the command to the controller model and returns its completion status (0: success; the
 * NVMe status otherwise). @throws TypeError for a command not in flight.
 */
export function nvmeExecute(ctrl: NvmeCtrl, io: NvmeIo): Result<{ status: number }> {
  if (!ctrl.inflight.has(io)) throw new TypeError('io must be a command of this controller that is not completed');
  const c = ctrl.controller.execute(io.sqe);
  return ok({ status: c.status });
}

/** The namespace's bytes at [slba, slba + nlb) blocks, read from the controller model (for checks). */
export function nvmeReadBlocks(ctrl: NvmeCtrl, nsid: number, slba: bigint, nlb: number): Uint8Array {
  return ctrl.controller.readBlocks(nsid, slba, nlb);
}

/**
 * nvme_remove() for the data path: the descriptor pools are destroyed (nvme_release_descriptor_pools).
 * Commands still in flight keep their blocks, so their pool is busy and leaks, as in the kernel.
 */
export function nvmeRemove(ctrl: NvmeCtrl): void {
  dmaPoolDestroy(ctrl.pools.large);
  dmaPoolDestroy(ctrl.pools.small);
  deviceReleaseDriver(ctrl.dev, NVME_DRIVER_NAME);
}

/** Every queue of the controller, the admin queue first. */
export function nvmeQueues(ctrl: NvmeCtrl): RequestQueue[] {
  return [ctrl.adminQueue, ...ctrl.queues.values()];
}
