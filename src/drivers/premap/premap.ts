// Models: the RFC series "Add dmabuf read/write via io_uring" (Pavel Begunkov; RFC v2 23 Nov 2025,
// v3 29 Apr 2026; not in Linux 7.1.5), as its v3 patches describe it:
//   lib/io_dmabuf_token.c (patch 5): struct io_dmabuf_token (one per registered dma-buf and file)
//     and struct io_dmabuf_map (the live DMA map; a percpu_ref counts the requests using it);
//     io_dmabuf_get_map(), io_dmabuf_create_map() (waits for the buffer's KERNEL fences, maps under
//     the reservation lock), io_dmabuf_drop_map() (invalidation: the map leaves the token, its fence
//     goes into the reservation object with DMA_RESV_USAGE_KERNEL, the ref is killed; when the last
//     request drops it the fence signals and the map is unmapped), io_dmabuf_token_release();
//   block (patch 4): a BIO_DMABUF_MAP bio carries the map and an offset into it instead of bio_vecs
//     (bio_dmabuf_map_set); bio_split_io_at() counts it as one segment, checks the offset and size
//     against dma_alignment and splits at max_bytes;
//   drivers/nvme/host/pci.c (patch 7): nvme_create_dmabuf_token() attaches dynamically
//     (allow_peer2peer, invalidate_mappings -> io_dmabuf_token_invalidate_mappings);
//     nvme_dmabuf_token_map() maps the attachment and keeps one DMA address per 4 KiB controller
//     page (-EINVAL for a DMA segment that is not a multiple of 4 KiB); nvme_rq_setup_dmabuf_map()
//     builds PRP1/PRP2/the PRP list from that array (PRPs only: no SGLs in v3) after a
//     __dma_sync_single_for_device() per 4 KiB page; nvme_rq_clean_dmabuf_map() syncs each page for
//     the CPU and frees the list;
//   io_uring/rsrc.c (patch 10): io_register_dmabuf() (-EINVAL above SZ_1G), io_import_dmabuf()
//     (-EFAULT for a zero length, -EBADF for another file; no live map: -EAGAIN on an inline issue,
//     a new map when issued from io-wq (IO_URING_F_UNLOCKED); the map's error otherwise);
//     io_req_drop_dmabuf() at request free.
// The request reaches the block device as any io_uring read/write does (io_uring/rw.c: __io_read /
// io_write call f_op->read_iter / write_iter), so block/fops.c applies before any bio exists:
// blkdev_write_iter() fails a write at or past the end with -ENOSPC, blkdev_read_iter() returns 0
// for a read there, both cut a request that crosses the end to the device's size
// (iov_iter_truncate), then blkdev_direct_IO() checks the alignment (blkdev_dio_invalid). The async
// direct I/O then completes with the bytes of the cut request (the CQE's res): a short read or
// write is a success.
// And the older design it compares with: registered user buffers kept DMA-mapped
// (IORING_REGISTER_MAP_BUFFERS, Jens Axboe 2022, "nvme: add support for pre-mapped IO buffers";
// never merged): the buffer is pinned and mapped once at registration, I/O uses the same PRP path.
// Model deviation: the series is not in the 7.1.5 tree; everything here follows the v3 patches.
// Model deviation: the series reuses struct request with a flagged bio; the model's block layer
// Request holds bio_vecs, so this unit has its own request form (PremapCmd) and builds the NVMe
// command itself with the NVMe driver's descriptor pools and command ids.
// Model deviation: no concurrency. The map's release work (io_dmabuf_map_release_work, queued on
// system_wq in the kernel) runs when the last reference drops; under an exporter that already holds
// the reservation lock (invalidate_mappings is called with it held) the unmap happens under that
// lock instead of after it is dropped. The fence still signals before the unmap, as in the kernel.
// Waiting for the map's fence runs its in-flight requests to completion (the device finishes them).

import { checkLen, err, ok, type Errno, type Result } from '../../base/index.ts';
import {
  DMA_BIDIRECTIONAL, DMA_FROM_DEVICE, DMA_TO_DEVICE, dmaContextOf, dmaMapPhys, dmaSyncSingleForCpu, dmaSyncSingleForDevice,
  dmaUnmapPhys, type DmaDataDirection,
} from '../../dma/index.ts';
import { FOLL_LONGTERM, FOLL_WRITE, pinUserPhyrs, unpinUserPhyrs, type UserMm } from '../../mm/index.ts';
import { DmaList, type PhyrList } from '../../phyr/index.ts';
import { REQ_OP_READ, REQ_OP_WRITE, SECTOR_SHIFT, blkdevDirectIoBytes, type ReqOp, type RequestQueue } from '../block/index.ts';
import {
  DMA_RESV_USAGE_KERNEL, dmaBufAttach, dmaBufDetach, dmaBufMapAttachment, dmaBufUnmapAttachment, dmaFenceInit, type DmaBuf,
  type DmaBufAttachment, type DmaFence,
} from '../dmabuf/index.ts';
import { NVME_CTRL_PAGE_SIZE, NVME_SMALL_POOL_SIZE, NvmeCtrl, nvme_cmd_read, nvme_cmd_write } from '../nvme/index.ts';
import { sglBuild, sglFree, type DmaSegment, type SglBlock, type SglHooks } from '../sgl/index.ts';
import './counters.ts';

/** io_register_dmabuf(): the largest dma-buf that may be registered (SZ_1G). */
export const PREMAP_MAX_DMABUF_BYTES = 1 << 30;

const PAGE = NVME_CTRL_PAGE_SIZE;

/** What a token maps: a dma-buf through a dynamic attachment (the series) or a pinned user buffer (MAP_BUFFERS). */
export type PremapKind = 'dmabuf' | 'user';

/**
 * struct io_dmabuf_map + struct nvme_dmabuf_map: one DMA map of the token's buffer for the NVMe
 * device. dmaList holds one DMA address per 4 KiB of the buffer.
 */
export class PremapMap {
  readonly token: PremapToken;
  /** The map's fence (io_dmabuf_fence): added to the reservation object on invalidation, signaled at release. */
  readonly fence: DmaFence;
  /** One DMA address per NVME_CTRL_PAGE_SIZE of the buffer (map->dma_list). */
  readonly dmaList: readonly bigint[];
  /** percpu_ref: the token's own reference (until killed) plus one per I/O using the map. */
  refs = 1;
  /** percpu_ref_kill() done: no new I/O may take the map. */
  killed = false;
  /** Unmapped (the release work ran). */
  released = false;
  /** I/Os holding a reference. */
  readonly inflight = new Set<PremapIo>();
  /** @internal the device-specific unmap (nvme_dmabuf_token_unmap, or the user buffer's). */
  readonly undo: () => void;

  /** @internal made by the token's map function. */
  constructor(token: PremapToken, dmaList: bigint[], undo: () => void) {
    this.token = token;
    this.dmaList = dmaList;
    this.undo = undo;
    this.fence = dmaFenceInit(() => {
      for (const io of [...this.inflight]) premapComplete(io);
    });
  }
}

/** struct io_dmabuf_token (with nvme_dmabuf_token): a buffer registered for I/O to one NVMe controller. */
export class PremapToken {
  readonly kind: PremapKind;
  readonly ctrl: NvmeCtrl;
  /** The registered dma-buf ('dmabuf' tokens). */
  readonly dmabuf: DmaBuf | null;
  /** The dynamic attachment (nvme_dmabuf_token.attach). */
  attach: DmaBufAttachment | null = null;
  /** token->dir: DMA_BIDIRECTIONAL, as io_register_dmabuf() asks. */
  readonly dir: DmaDataDirection = DMA_BIDIRECTIONAL;
  /** Bytes of the buffer. */
  readonly size: number;
  /** token->map: the live map, or null (none yet, or dropped by an invalidation). */
  map: PremapMap | null = null;
  /** Every map made and not yet released (the live one and invalidated ones waiting for their I/O). */
  readonly maps = new Set<PremapMap>();
  released = false;
  /** @internal the user buffer's pin ('user' tokens). */
  userPin: { mm: UserMm; list: PhyrList; segs: ReadonlyArray<{ addr: bigint; len: number }> } | null = null;

  /** @internal made by premapRegisterDmabuf / premapRegisterUserBuffer. */
  constructor(kind: PremapKind, ctrl: NvmeCtrl, dmabuf: DmaBuf | null, size: number) {
    this.kind = kind;
    this.ctrl = ctrl;
    this.dmabuf = dmabuf;
    this.size = size;
  }
}

/** One NVMe command of a pre-mapped I/O (a block request of the BIO_DMABUF_MAP bio after splitting). */
export interface PremapCmd {
  /** The 64-byte submission queue entry. */
  readonly sqe: Uint8Array;
  /** Byte offset into the buffer and length. */
  readonly offset: number;
  readonly len: number;
  /** PRP list pages taken from the descriptor pools. */
  readonly blocks: readonly SglBlock[];
  /** PRP list bytes written. */
  readonly descriptorBytes: number;
  executed: boolean;
  /** NVMe status after execution (0: success). */
  status: number;
}

/** One io_uring read/write request on a registered buffer: its map reference and its commands. */
export class PremapIo {
  readonly token: PremapToken;
  readonly map: PremapMap;
  readonly op: ReqOp;
  readonly cmds: readonly PremapCmd[];
  /** Bytes the request moves: the length asked for, cut at the end of the device (0 for a read at its end). */
  readonly bytes: number;
  completed = false;

  /** @internal made by premapSubmit. */
  constructor(token: PremapToken, map: PremapMap, op: ReqOp, cmds: PremapCmd[], bytes: number) {
    this.token = token;
    this.map = map;
    this.op = op;
    this.cmds = cmds;
    this.bytes = bytes;
  }

  /** PRP list bytes of every command. */
  get descriptorBytes(): number {
    return this.cmds.reduce((s, c) => s + c.descriptorBytes, 0);
  }
}

function statsOf(ctrl: NvmeCtrl): ReturnType<typeof dmaContextOf>['mm']['stats'] {
  return dmaContextOf(ctrl.dev).mm.stats;
}

/** The per-4 KiB DMA address array of a DMA list; EINVAL for a segment that is not a multiple of 4 KiB. */
function dmaListOf(list: DmaList, size: number): Result<bigint[]> {
  const out: bigint[] = [];
  for (let i = 0; i < list.count; i++) {
    const len = list.lenAt(i);
    if (len % PAGE !== 0) return err('EINVAL', `DMA segment ${i} is ${len} bytes, not a multiple of ${PAGE} (nvme_dmabuf_token_map)`);
    const a = list.addrAt(i);
    for (let o = 0; o < len; o += PAGE) out.push(a + BigInt(o));
  }
  if (out.length * PAGE < size) return err('EINVAL', `the mapping covers ${out.length * PAGE} of ${size} bytes`);
  return ok(out);
}

/** nvme_dmabuf_token_map(): maps the attachment (the reservation lock is held) and builds the dma_list. */
function mapDmabuf(token: PremapToken): Result<PremapMap> {
  const att = token.attach!;
  const m = dmaBufMapAttachment(att, token.dir);
  if (!m.ok) return m;
  const list = dmaListOf(m.value, token.size);
  if (!list.ok) {
    dmaBufUnmapAttachment(att, m.value, token.dir);
    return list;
  }
  const mapping = m.value;
  return ok(new PremapMap(token, list.value, () => dmaBufUnmapAttachment(att, mapping, token.dir)));
}

/**
 * The release work of a map whose last reference dropped (io_dmabuf_map_release_work): signal the
 * fence, then unmap under the reservation lock.
 */
function releaseMap(map: PremapMap): void {
  if (map.released) return;
  map.released = true;
  map.fence.signal();
  const token = map.token;
  const buf = token.dmabuf;
  const relock = buf !== null && !buf.resv.locked;
  if (relock) buf.resv.lock();
  map.undo();
  if (relock) buf.resv.unlock();
  token.maps.delete(map);
  statsOf(token.ctrl).premapMapsReleased++;
  // the token's destruction detaches, which takes the reservation lock: not from under it
  if (token.released && token.maps.size === 0 && (buf === null || !buf.resv.locked)) destroyToken(token);
}

function putRef(map: PremapMap): void {
  if (map.refs <= 0) throw new TypeError('premap: map reference underflow');
  map.refs--;
  if (map.refs === 0) releaseMap(map);
}

/**
 * io_dmabuf_drop_map(): the live map leaves the token (no new I/O can take it), its fence is added
 * to the reservation object with DMA_RESV_USAGE_KERNEL and the token's reference is dropped; the
 * map is unmapped once the last I/O using it completes.
 */
function dropMap(token: PremapToken): void {
  const map = token.map;
  if (map === null) return;
  token.map = null;
  if (token.dmabuf !== null) token.dmabuf.resv.addFence(map.fence, DMA_RESV_USAGE_KERNEL);
  statsOf(token.ctrl).premapInvalidations++;
  map.killed = true;
  putRef(map);
}

function destroyToken(token: PremapToken): void {
  if (token.attach !== null && token.dmabuf !== null) {
    dmaBufDetach(token.dmabuf, token.attach);
    token.attach = null;
  }
}

function checkCtrl(ctrl: unknown): asserts ctrl is NvmeCtrl {
  if (!(ctrl instanceof NvmeCtrl)) throw new TypeError(`ctrl must be an NvmeCtrl (nvmeProbe), got ${String(ctrl)}`);
}

function checkToken(token: unknown): asserts token is PremapToken {
  if (!(token instanceof PremapToken)) throw new TypeError(`token must be a PremapToken, got ${String(token)}`);
}

/**
 * io_register_dmabuf() -> io_dmabuf_token_create() -> nvme_create_dmabuf_token(): registers a
 * dma-buf for I/O to ctrl. The device attaches dynamically (allow_peer2peer; invalidate_mappings
 * drops the token's map); no map is made yet: the first I/O makes it (io_dmabuf_create_map).
 * Errors: EINVAL for a buffer above 1 GiB or not a multiple of 4 KiB; what dma_buf_attach returns.
 * @throws TypeError for a ctrl or dmabuf of the wrong type.
 */
export function premapRegisterDmabuf(ctrl: NvmeCtrl, dmabuf: DmaBuf): Result<PremapToken> {
  checkCtrl(ctrl);
  if (dmabuf === null || typeof dmabuf !== 'object' || !('resv' in dmabuf)) throw new TypeError(`dmabuf must be a DmaBuf, got ${String(dmabuf)}`);
  if (dmabuf.size > PREMAP_MAX_DMABUF_BYTES) return err('EINVAL', `dma-buf of ${dmabuf.size} bytes is above SZ_1G (io_register_dmabuf)`);
  // Model deviation: the series would fail the first map (-EINVAL from nvme_dmabuf_token_map); the
  // model refuses at registration a size whose last 4 KiB has no dma_list entry.
  if (dmabuf.size % PAGE !== 0) return err('EINVAL', `dma-buf of ${dmabuf.size} bytes is not a multiple of ${PAGE}`);
  const token = new PremapToken('dmabuf', ctrl, dmabuf, dmabuf.size);
  const att = dmaBufAttach(dmabuf, ctrl.dev, {
    dynamic: true, peer2peer: true, importerPriv: token,
    // nvme_dmabuf_invalidate_mappings() -> io_dmabuf_token_invalidate_mappings()
    moveNotify: () => dropMap(token),
  });
  if (!att.ok) return att;
  token.attach = att.value;
  return ok(token);
}

/**
 * The 2022 design (IORING_REGISTER_MAP_BUFFERS + nvme's mq_ops->dma_map): a user buffer pinned
 * long-term and DMA-mapped once for ctrl at registration (dma_map_phys per physical run), kept mapped until
 * premapUnregister. start and len must be 4 KiB aligned. Errors: EINVAL (alignment, or a DMA
 * segment that is not a multiple of 4 KiB), EFAULT for a short pin, what pinUserPhyrs and
 * dmaMapPhys return. @throws TypeError/RangeError for arguments of the wrong type or range.
 */
export function premapRegisterUserBuffer(ctrl: NvmeCtrl, mm: UserMm, start: bigint, len: number): Result<PremapToken> {
  checkCtrl(ctrl);
  checkLen('len', len, 1);
  if (typeof start !== 'bigint' || start < 0n) throw new TypeError(`start must be a non-negative bigint, got ${String(start)}`);
  if (start % BigInt(PAGE) !== 0n || len % PAGE !== 0) return err('EINVAL', `start 0x${start.toString(16)} and len ${len} must be ${PAGE}-aligned`);
  const pin = pinUserPhyrs(mm, start, len, FOLL_WRITE | FOLL_LONGTERM);
  if (!pin.ok) return pin;
  if (pin.value.totalLen !== len) {
    unpinUserPhyrs(mm, pin.value);
    return err('EFAULT', `short pin: ${pin.value.totalLen} of ${len} bytes`);
  }
  // one dma_map_phys() per physically contiguous run, each tracked by dma-debug (the per-I/O
  // dma_sync_single_* calls of the NVMe path must find them)
  const list = pin.value;
  const segs: Array<{ addr: bigint; len: number }> = [];
  const unmapAll = (): void => {
    for (const g of segs) dmaUnmapPhys(ctrl.dev, g.addr, g.len, DMA_BIDIRECTIONAL, 0);
  };
  for (let i = 0; i < list.count; i++) {
    const m = dmaMapPhys(ctrl.dev, list.addrAt(i), list.lenAt(i), DMA_BIDIRECTIONAL, 0);
    if (!m.ok) {
      unmapAll();
      unpinUserPhyrs(mm, list);
      return m;
    }
    segs.push({ addr: m.value, len: list.lenAt(i) });
  }
  const token = new PremapToken('user', ctrl, null, len);
  const b = DmaList.builder(segs.length);
  for (const g of segs) b.pushBig(g.addr, g.len, 0);
  const dl = dmaListOf(b.build(), len);
  if (!dl.ok) {
    unmapAll();
    unpinUserPhyrs(mm, list);
    return dl;
  }
  token.userPin = { mm, list, segs };
  const map = new PremapMap(token, dl.value, () => {
    const p = token.userPin!;
    unmapAll();
    unpinUserPhyrs(p.mm, p.list);
    token.userPin = null;
  });
  token.map = map;
  token.maps.add(map);
  statsOf(ctrl).premapMapsCreated++;
  return ok(token);
}

/** io_dmabuf_get_map(): the live map with a new reference, or null. */
function getMap(token: PremapToken): PremapMap | null {
  const map = token.map;
  if (map === null || map.killed) return null;
  map.refs++;
  return map;
}

/**
 * io_dmabuf_create_map(): waits for the buffer's KERNEL fences (an invalidated map's requests),
 * then under the reservation lock returns the live map or makes one (nvme_dmabuf_token_map). The
 * returned map carries a reference for the caller. Errors: the map's (ENODEV for a revoked buffer,
 * EINVAL, ENOMEM, EREMOTEIO for P2P the topology cannot do).
 */
export function premapCreateMap(token: PremapToken): Result<PremapMap> {
  checkToken(token);
  if (token.released) return err('EFAULT', 'the token is released');
  const buf = token.dmabuf;
  if (buf === null) {
    const m = getMap(token);
    return m === null ? err('EFAULT', 'the user buffer is unregistered') : ok(m);
  }
  buf.resv.waitTimeout(DMA_RESV_USAGE_KERNEL);
  buf.resv.lock();
  try {
    const live = getMap(token);
    if (live !== null) return ok(live);
    const m = mapDmabuf(token);
    if (!m.ok) return m;
    m.value.refs++; // percpu_ref_get() for the caller; the initial reference is the token's
    token.map = m.value;
    token.maps.add(m.value);
    statsOf(token.ctrl).premapMapsCreated++;
    return m;
  } finally {
    buf.resv.unlock();
  }
}

/** How a request is issued. */
export interface PremapSubmitOptions {
  /**
   * Issued from io-wq (IO_URING_F_UNLOCKED): a missing map is made here. false (default): an inline
   * issue, which fails with EAGAIN when the token has no live map (the user reissues).
   */
  readonly unlocked?: boolean;
}

function prpHooks(ctrl: NvmeCtrl): SglHooks {
  return {
    name: 'nvme dmabuf prp', entrySize: 8, split: 'page', pageSize: PAGE, inlineEntries: 2, inlineBeforeList: 1,
    entriesPerList: PAGE / 8,
    encodeData: (v, off, addr) => v.setBigUint64(off, addr, true),
    encodeLink: (v, off, next) => v.setBigUint64(off, next, true),
    // DIV_ROUND_UP(length, NVME_CTRL_PAGE_SIZE) <= NVME_SMALL_POOL_SIZE / 8: IOD_SMALL_DESCRIPTOR
    poolFor: (index, listEntries) => (index === 0 && listEntries <= NVME_SMALL_POOL_SIZE / 8 ? ctrl.pools.small : ctrl.pools.large),
  };
}

/** The DMA segments of [offset, offset + len) of a map: one per 4 KiB controller page (map->dma_list). */
function segmentsOf(map: PremapMap, offset: number, len: number): DmaSegment[] {
  const out: DmaSegment[] = [];
  let idx = Math.floor(offset / PAGE), off = offset % PAGE, left = len;
  while (left > 0) {
    const n = Math.min(left, PAGE - off);
    out.push({ addr: map.dmaList[idx]! + BigInt(off), len: n });
    left -= n;
    off = 0;
    idx++;
  }
  return out;
}

/** nvme_dmabuf_map_sync(): one __dma_sync_single_for_{device,cpu} per 4 KiB page the request touches. */
function syncPages(map: PremapMap, ctrl: NvmeCtrl, op: ReqOp, offset: number, len: number, forCpu: boolean): void {
  const dir = op === REQ_OP_READ ? DMA_FROM_DEVICE : DMA_TO_DEVICE;
  const first = Math.floor(offset / PAGE), last = Math.floor((offset + len - 1) / PAGE);
  for (let i = first; i <= last; i++) {
    if (forCpu) dmaSyncSingleForCpu(ctrl.dev, map.dmaList[i]!, PAGE, dir);
    else dmaSyncSingleForDevice(ctrl.dev, map.dmaList[i]!, PAGE, dir);
  }
}

/** get_max_io_size() for a bio at `sector`: max_sectors, its end aligned to the physical block size. */
function maxIoBytes(q: RequestQueue, sector: bigint): number {
  const lim = q.limits;
  const pbs = lim.physicalBlockSize >> SECTOR_SHIFT, lbs = lim.logicalBlockSize >> SECTOR_SHIFT;
  const start = Number(sector % BigInt(pbs));
  const end = (start + lim.maxSectors) - ((start + lim.maxSectors) % pbs);
  return (end > start ? end - start : lim.maxSectors - (lim.maxSectors % lbs)) << SECTOR_SHIFT;
}

/** nvme_rq_setup_dmabuf_map() for one request, with nvme_setup_rw()'s command fields. */
function setupCmd(token: PremapToken, map: PremapMap, op: ReqOp, sector: bigint, offset: number, len: number): Result<PremapCmd> {
  const ctrl = token.ctrl;
  const { nsid, lbaShift } = ctrl.nsOf(ctrl.queue);
  syncPages(map, ctrl, op, offset, len, false);
  const b = sglBuild(ctrl.dev, prpHooks(ctrl), segmentsOf(map, offset, len));
  if (!b.ok) return b.errno === 'ENOMEM' ? err('ENOMEM', 'BLK_STS_RESOURCE: no PRP list page') : b;
  const build = b.value;
  const sqe = new Uint8Array(64);
  const v = new DataView(sqe.buffer);
  v.setUint8(0, op === REQ_OP_WRITE ? nvme_cmd_write : nvme_cmd_read);
  v.setUint16(2, ctrl.nextCid(), true);
  v.setUint32(4, nsid, true);
  v.setBigUint64(24, build.inline[0]!.addr, true);
  v.setBigUint64(32, build.list !== null ? build.list.dmaAddr : build.inline.length > 1 ? build.inline[1]!.addr : 0n, true);
  v.setBigUint64(40, sector >> BigInt(lbaShift - SECTOR_SHIFT), true);
  v.setUint16(48, (len >> lbaShift) - 1, true);
  return ok({ sqe, offset, len, blocks: build.blocks, descriptorBytes: build.descriptorBytes, executed: false, status: 0 });
}

/**
 * An IORING_OP_{READ,WRITE}_FIXED on a registered buffer, as far as the device: io_import_dmabuf()
 * takes a reference on the token's live map (or makes one when issued from io-wq), the
 * BIO_DMABUF_MAP bio of [offset, offset + len) at `sector` is split at the queue's max_sectors, and
 * each piece becomes an NVMe command whose PRPs come from the map's dma_list (no per-I/O mapping).
 * The commands are queued, not executed: premapExecute runs them on the controller, premapComplete
 * completes them and drops the reference.
 * At the end of the device (bdevNrBytes of the controller's queue) it does what block/fops.c does
 * (see the header): a write at or past the end fails with ENOSPC, a read there is an I/O of 0 bytes
 * with no command, and a request that crosses the end moves only the bytes up to it (io.bytes).
 * Errors: EFAULT (released token, len 0 or beyond the buffer), EAGAIN (no live map on an inline
 * issue), the map's errors (premapCreateMap), ENOSPC (a write at or past the end), EINVAL (length,
 * once cut at the end, or sector not a multiple of the logical block size: blkdev_dio_invalid; or
 * offset breaks dma_alignment), ENOMEM (no PRP list page).
 * Nothing is left queued or referenced on an error.
 * @throws TypeError/RangeError for arguments of the wrong type or range.
 */
export function premapSubmit(token: PremapToken, op: ReqOp, sector: bigint, offset: number, len: number,
  opts: PremapSubmitOptions = {}): Result<PremapIo> {
  checkToken(token);
  if (op !== REQ_OP_READ && op !== REQ_OP_WRITE) throw new RangeError(`op must be REQ_OP_READ or REQ_OP_WRITE, got ${String(op)}`);
  if (typeof sector !== 'bigint' || sector < 0n) throw new TypeError(`sector must be a non-negative bigint, got ${String(sector)}`);
  checkLen('offset', offset);
  checkLen('len', len);
  const ctrl = token.ctrl;
  const stats = statsOf(ctrl);
  if (token.released) return err('EFAULT', 'the registered buffer is released');
  if (len === 0) return err('EFAULT', 'len is 0 (io_import_dmabuf)');
  if (offset + len > token.size) return err('EFAULT', `[${offset}, ${offset + len}) is beyond the ${token.size}-byte buffer`);
  let map = getMap(token);
  if (map === null) {
    if (opts.unlocked !== true) {
      stats.premapEagain++;
      return err('EAGAIN', 'no live DMA map: reissue (io-wq maps anew)');
    }
    const m = premapCreateMap(token);
    if (!m.ok) return m;
    map = m.value;
  }
  const q = ctrl.queue;
  const lim = q.limits;
  const fail = (e: Errno, message: string, cmds: PremapCmd[] = []): Result<PremapIo> => {
    for (const c of cmds) sglFree(c.blocks);
    putRef(map);
    return err(e, message);
  };
  // The request reaches the block device through its read_iter/write_iter (block/fops.c). First
  // the end of the device: blkdev_write_iter() returns -ENOSPC at or past it, blkdev_read_iter()
  // returns 0 there, and both truncate the iov_iter of a request that crosses it.
  const b = blkdevDirectIoBytes(q, op, sector, len);
  if (!b.ok) return fail(b.errno, b.message ?? b.errno);
  const count = b.value;
  if (count === 0) {
    // a read at or past the end: the request completes with 0 bytes, no command
    stats.premapIos++;
    const eof = new PremapIo(token, map, op, [], 0);
    map.inflight.add(eof);
    return ok(eof);
  }
  if ((offset & lim.dmaAlignment) !== 0) return fail('EINVAL', `offset ${offset} breaks dma_alignment ${lim.dmaAlignment} (bio_split_io_at)`);
  const cmds: PremapCmd[] = [];
  let done = 0;
  while (done < count) {
    const s = sector + BigInt(done >> SECTOR_SHIFT);
    const n = Math.min(count - done, maxIoBytes(q, s));
    const c = setupCmd(token, map, op, s, offset + done, n);
    if (!c.ok) return fail(c.errno, c.message ?? c.errno, cmds);
    cmds.push(c.value);
    done += n;
  }
  const io = new PremapIo(token, map, op, cmds, count);
  map.inflight.add(io);
  stats.premapIos++;
  stats.premapRequests += cmds.length;
  return ok(io);
}

/** How io_uring issues a request (premapIssue). */
export interface PremapIssueOptions {
  /** RWF_NOWAIT (REQ_F_NOWAIT): an EAGAIN of the inline issue goes back to the user instead of to io-wq. */
  readonly nowait?: boolean;
}

/**
 * An IORING_OP_{READ,WRITE}_FIXED as io_uring issues it: first inline (IO_URING_F_NONBLOCK); an
 * EAGAIN there (no live map) is punted to io-wq, which issues again with IO_URING_F_UNLOCKED and
 * so re-maps (io_uring/io_uring.c: io_queue_async(), 7.1.5), unless the request is RWF_NOWAIT:
 * then the EAGAIN completes the request. Errors: those of premapSubmit.
 */
export function premapIssue(token: PremapToken, op: ReqOp, sector: bigint, offset: number, len: number,
  opts: PremapIssueOptions = {}): Result<PremapIo> {
  const r = premapSubmit(token, op, sector, offset, len);
  if (r.ok || r.errno !== 'EAGAIN' || opts.nowait === true) return r;
  return premapSubmit(token, op, sector, offset, len, { unlocked: true });
}

/** The device runs the I/O's commands not yet run (the controller walks the PRPs by DMA). */
export function premapExecute(io: PremapIo): void {
  if (!(io instanceof PremapIo)) throw new TypeError(`io must be a PremapIo, got ${String(io)}`);
  if (io.completed) throw new TypeError('io is completed');
  for (const c of io.cmds) {
    if (c.executed) continue;
    c.status = io.token.ctrl.controller.execute(c.sqe).status;
    c.executed = true;
  }
}

/**
 * Completion: any command not yet run is run, then nvme_rq_clean_dmabuf_map() (a sync for the CPU
 * per page, the PRP lists back to their pools) and io_req_drop_dmabuf() (the map reference; the
 * last one of an invalidated map signals its fence and unmaps it). Returns the bytes moved (the
 * CQE's res: io.bytes, fewer than asked for a request cut at the end of the device, 0 for a read
 * at its end), or EIO when a command completed with a non-zero NVMe status.
 * @throws TypeError for an io already completed.
 */
export function premapComplete(io: PremapIo): Result<number> {
  if (!(io instanceof PremapIo)) throw new TypeError(`io must be a PremapIo, got ${String(io)}`);
  if (io.completed) throw new TypeError('io is already completed');
  premapExecute(io);
  const ctrl = io.token.ctrl;
  for (const c of io.cmds) {
    syncPages(io.map, ctrl, io.op, c.offset, c.len, true);
    sglFree(c.blocks);
  }
  io.completed = true;
  io.map.inflight.delete(io);
  putRef(io.map);
  const bad = io.cmds.find((c) => c.status !== 0);
  return bad === undefined ? ok(io.bytes) : err('EIO', `NVMe status 0x${bad.status.toString(16)}`);
}

/**
 * Unregisters the buffer (io_dmabuf_token_release(); for a user buffer, the unmap and unpin of
 * IORING_UNREGISTER_BUFFERS): the live map is dropped as an invalidation drops it, in-flight I/O is
 * waited for (its fence), then the attachment is detached. Idempotent.
 */
export function premapUnregister(token: PremapToken): void {
  checkToken(token);
  if (token.released) return;
  token.released = true;
  const buf = token.dmabuf;
  if (buf === null) {
    const map = token.map;
    if (map !== null) {
      token.map = null;
      map.killed = true;
      for (const io of [...map.inflight]) premapComplete(io);
      putRef(map);
    }
    return;
  }
  buf.resv.lock();
  dropMap(token);
  buf.resv.unlock();
  buf.resv.waitTimeout(DMA_RESV_USAGE_KERNEL);
  if (token.maps.size === 0) destroyToken(token);
}

/** The token's maps not yet released (the live one first), for listings and checks. */
export function premapMaps(token: PremapToken): PremapMap[] {
  checkToken(token);
  const live = token.map;
  return [...(live !== null ? [live] : []), ...[...token.maps].filter((m) => m !== live)];
}
