// Models: drivers/infiniband/core/umem_dmabuf.c (Linux 7.1): an RDMA umem over a dma-buf.
// ib_umem_dmabuf_get() attaches the NIC as a dynamic importer (allow_peer2peer, the driver's
// invalidate_mappings) and maps nothing yet; ib_umem_dmabuf_map_pages() maps the attachment under
// the reservation lock (EINVAL once the umem is revoked), trims the exporter's DMA ranges to the
// pages of [offset, offset + length) and waits for the exporter's kernel fences (a move in
// progress); ib_umem_dmabuf_unmap_pages() undoes the map. ib_umem_dmabuf_get_pinned() attaches with
// allow_peer2peer only (no invalidate_mappings), pins (dma_buf_pin: the exporter may not move the
// buffer from now on) and maps at once; ib_umem_dmabuf_get_pinned_revocable_and_lock() does the same
// with the core's revoke as invalidate_mappings, and the driver's revoke callback
// (ib_umem_dmabuf_set_revoke_locked) runs once at most. ib_umem_dmabuf_release() revokes (unmap,
// unpin) and detaches.
//
// The MR over it (drivers/infiniband/hw/mlx5/mr.c: mlx5_ib_reg_user_mr_dmabuf ->
// reg_user_mr_dmabuf, and odp.c: pagefault_dmabuf_mr / mlx5_ib_init_dmabuf_mr): an mkey handled as
// an ODP mkey (mlx5r_store_odp_mkey) whose MTT is filled at registration by a first "fault" of the
// whole umem (map_pages, mlx5_umem_dmabuf_find_best_pgsz, mlx5r_umr_update_mr_pas with
// MLX5_IB_MTT_PRESENT); the importer's invalidate_mappings (mlx5_ib_dmabuf_invalidate_cb) zaps the
// MTT (MLX5_IB_UPD_XLT_ZAP) and unmaps the pages, so the NIC's next access faults and the fault
// maps the buffer again where it is now, or fails (ENODEV from a revoked exporter) and the work
// request completes with an access error. Deregistration destroys the mkey under the reservation
// lock and releases the umem.
//
// Model deviation: the model takes the DmaBuf where the kernel takes a file descriptor (no fd table);
// and the MTT keeps PAGE_SIZE entries for the MR's life, where mlx5 may switch the mkey to the best
// page size of each new mapping (mlx5r_umr_dmabuf_update_pgsz): the entries are the same bytes at a
// finer grain, and the model's ODP mkey has a fixed page size.

import { declareCounters, err, ok, type Result } from '../../base/index.ts';
import { DMA_BIDIRECTIONAL, dmaContextOf } from '../../dma/index.ts';
import {
  DMA_RESV_USAGE_KERNEL, DmaBuf, dmaBufAttach, dmaBufDetach, dmaBufMapAttachment, dmaBufPin, dmaBufUnmapAttachment, dmaBufUnpin,
  dmaResvIsLocked, dmaResvLock, dmaResvUnlock, type DmaBufAttachment,
} from '../dmabuf/index.ts';
import { DmaList } from '../../phyr/index.ts';
import { IbDevice } from './device.ts';
import { IbMr, ibDeregMr, ibMrUpdateMtt, ibMrZapMtt, ibRegOdpMr } from './mr.ts';
import { MLX5_IB_MTT_PRESENT } from './nic.ts';
import { IbBlockIter, findBestPgszOf } from './umem.ts';
import {
  IB_ACCESS_LOCAL_WRITE, IB_ACCESS_RELAXED_ORDERING, IB_ACCESS_REMOTE_ATOMIC, IB_ACCESS_REMOTE_READ, IB_ACCESS_REMOTE_WRITE,
  ibAccessWritable, ibCheckMrAccess,
} from './verbs.ts';
import './counters.ts';

declare module '../../base/stats.ts' {
  interface StatsCounters {
    /** dma-buf MRs registered (ibRegDmabufMr), and invalidations that zapped one's MTT. */
    rdmaDmabufMrRegs: number;
    rdmaDmabufInvalidations: number;
  }
}

declareCounters('rdma-dmabuf', ['rdmaDmabufMrRegs', 'rdmaDmabufInvalidations']);

const PAGE_SHIFT = 12;
const PAGE = 1 << PAGE_SHIFT;

/** The access bits UVERBS_METHOD_REG_DMABUF_MR accepts (uverbs_get_flags32: any other bit is EINVAL). */
export const IB_DMABUF_MR_ACCESS_ALLOWED = IB_ACCESS_LOCAL_WRITE | IB_ACCESS_REMOTE_READ | IB_ACCESS_REMOTE_WRITE
  | IB_ACCESS_REMOTE_ATOMIC | IB_ACCESS_RELAXED_ORDERING;

/** The importer's dma_buf_attach_ops for ibUmemDmabufGet: invalidate_mappings, called with the reservation lock held. */
export interface IbUmemDmabufOps {
  readonly invalidate?: (umem: IbUmemDmabuf) => void;
}

/** struct ib_umem_dmabuf. */
export class IbUmemDmabuf {
  readonly ibdev: IbDevice;
  readonly buf: DmaBuf;
  /** umem->address: the offset in the buffer. */
  readonly address: number;
  readonly length: number;
  readonly writable: boolean;
  readonly access: number;
  /** umem->iova: the MR's IOVA once registered. */
  iova = 0n;
  /** @internal set right after the attach. */
  att!: DmaBufAttachment;
  /** umem_dmabuf->sgt: the exporter's mapping while mapped (the whole buffer). */
  sgt: DmaList | null = null;
  /** The DMA ranges of the pages of [address, address + length), trimmed from sgt (first_sg / last_sg). */
  dma: DmaList | null = null;
  /** umem_dmabuf->pinned: dma_buf_pin() holds the buffer in place. */
  pinned = false;
  /** umem_dmabuf->revoked: map_pages is EINVAL from now on. */
  revoked = false;
  /** umem_dmabuf->private: the driver's (the MR). */
  private: IbDmabufMr | null = null;
  /** umem_dmabuf->pinned_revoke (ib_umem_dmabuf_set_revoke_locked). */
  pinnedRevoke: (() => void) | null = null;
  private live = true;

  /** @internal made by ibUmemDmabufGet. */
  constructor(ibdev: IbDevice, buf: DmaBuf, address: number, length: number, access: number) {
    this.ibdev = ibdev;
    this.buf = buf;
    this.address = address;
    this.length = length;
    this.access = access;
    this.writable = ibAccessWritable(access);
  }

  /** ib_umem_num_pages(). */
  get nrPages(): number {
    return (Math.ceil((this.address + this.length) / PAGE) - Math.floor(this.address / PAGE));
  }

  get released(): boolean {
    return !this.live;
  }

  /** @internal */
  markReleased(): boolean {
    if (!this.live) return false;
    this.live = false;
    return true;
  }
}

function checkArgs(ibdev: IbDevice, buf: DmaBuf, offset: number, size: number, access: number): void {
  if (!(ibdev instanceof IbDevice)) throw new TypeError(`ibdev must be an IbDevice (rdmaProbe), got ${String(ibdev)}`);
  if (!(buf instanceof DmaBuf)) throw new TypeError(`buf must be a DmaBuf, got ${String(buf)}`);
  if (!Number.isSafeInteger(offset) || offset < 0) throw new RangeError(`offset must be a safe non-negative integer, got ${String(offset)}`);
  if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`size must be a safe non-negative integer, got ${String(size)}`);
  if (!Number.isInteger(access) || access < 0) throw new RangeError(`access must be a non-negative integer of IB_ACCESS_* flags, got ${String(access)}`);
}

/** ib_umem_dmabuf_get_with_dma_device(): checks, then the dynamic attach with the given importer ops. */
function umemDmabufAttach(ibdev: IbDevice, buf: DmaBuf, offset: number, size: number, access: number,
  invalidate: ((umem: IbUmemDmabuf) => void) | null): Result<IbUmemDmabuf> {
  checkArgs(ibdev, buf, offset, size, access);
  // check_add_overflow(offset, size); dmabuf->size < end; ib_umem_num_pages() == 0
  if (!Number.isSafeInteger(offset + size)) return err('EINVAL', `offset ${offset} + size ${size} overflows`);
  if (buf.size < offset + size) return err('EINVAL', `[${offset}, +${size}) is past the end of ${buf.size}-byte ${buf.name}`);
  if (size === 0) return err('EINVAL', 'size 0: no pages');
  const umem = new IbUmemDmabuf(ibdev, buf, offset, size, access);
  const a = dmaBufAttach(buf, ibdev.dev, {
    dynamic: true, peer2peer: true, importerPriv: umem,
    ...(invalidate !== null ? { moveNotify: () => invalidate(umem) } : {}),
  });
  if (!a.ok) return a;
  umem.att = a.value;
  return ok(umem);
}

/**
 * ib_umem_dmabuf_get(): a umem over [offset, offset + size) of buf for a dynamic importer: attached
 * (peer2peer allowed, ops.invalidate as invalidate_mappings), nothing mapped yet (map with
 * ibUmemDmabufMapPages under the reservation lock). Errors: EINVAL (the range overflows, passes the
 * buffer's end, or is empty), the exporter's attach errors (vfio: ENODEV once revoked).
 * @throws TypeError / RangeError for arguments of the wrong type.
 */
export function ibUmemDmabufGet(ibdev: IbDevice, buf: DmaBuf, offset: number, size: number, access: number,
  ops: IbUmemDmabufOps = {}): Result<IbUmemDmabuf> {
  if (ops.invalidate !== undefined && typeof ops.invalidate !== 'function') throw new TypeError(`ops.invalidate must be a function, got ${String(ops.invalidate)}`);
  return umemDmabufAttach(ibdev, buf, offset, size, access, ops.invalidate ?? null);
}

/** The pages of [ALIGN_DOWN(address), ALIGN(address + length)) of the buffer's DMA ranges (what map_pages trims the sg list to). */
function trim(list: DmaList, start: number, end: number): DmaList {
  const b = DmaList.builder(4);
  let cur = 0;
  for (let i = 0; i < list.count && cur < end; i++) {
    const len = list.lenAt(i);
    const lo = Math.max(cur, start), hi = Math.min(cur + len, end);
    if (lo < hi) b.pushBigNoMerge(list.addrAt(i) + BigInt(lo - cur), hi - lo, list.flagsAt(i));
    cur += len;
  }
  return b.build();
}

/**
 * ib_umem_dmabuf_map_pages(): with the reservation lock held (a WARN and EINVAL otherwise), maps
 * the attachment (if not mapped) and waits for the exporter's kernel fences. Errors: EINVAL
 * (revoked umem), the map's (ENODEV: the exporter revoked the buffer; EINVAL / EREMOTEIO: P2P the
 * topology does not support).
 */
export function ibUmemDmabufMapPages(umem: IbUmemDmabuf): Result<void> {
  if (!(umem instanceof IbUmemDmabuf)) throw new TypeError(`umem must be an IbUmemDmabuf, got ${String(umem)}`);
  if (!umem.buf.resv.assertHeld('ib_umem_dmabuf_map_pages')) return err('EINVAL', 'ib_umem_dmabuf_map_pages without the reservation lock');
  if (umem.revoked) return err('EINVAL', 'umem is revoked');
  if (umem.sgt === null) {
    const m = dmaBufMapAttachment(umem.att, DMA_BIDIRECTIONAL);
    if (!m.ok) return m;
    umem.sgt = m.value;
    umem.dma = trim(m.value, Math.floor(umem.address / PAGE) * PAGE, Math.ceil((umem.address + umem.length) / PAGE) * PAGE);
  }
  // the ranges are valid now; their bytes may still be moving: wait for the exporter's move
  umem.buf.resv.waitTimeout(DMA_RESV_USAGE_KERNEL);
  return ok();
}

/** ib_umem_dmabuf_unmap_pages(): with the reservation lock held, unmaps the attachment if mapped. */
export function ibUmemDmabufUnmapPages(umem: IbUmemDmabuf): void {
  if (!(umem instanceof IbUmemDmabuf)) throw new TypeError(`umem must be an IbUmemDmabuf, got ${String(umem)}`);
  umem.buf.resv.assertHeld('ib_umem_dmabuf_unmap_pages');
  if (umem.sgt === null) return;
  dmaBufUnmapAttachment(umem.att, umem.sgt, DMA_BIDIRECTIONAL);
  umem.sgt = null;
  umem.dma = null;
}

/** ib_umem_dmabuf_revoke_locked(): the driver's revoke callback (once), unmap, unpin; the umem stays revoked. */
function revokeLocked(umem: IbUmemDmabuf): void {
  if (umem.revoked) return;
  const cb = umem.pinnedRevoke;
  if (cb !== null) cb();
  ibUmemDmabufUnmapPages(umem);
  if (umem.pinned) {
    dmaBufUnpin(umem.att);
    umem.pinned = false;
  }
  umem.revoked = true;
}

function pinAndMap(umem: IbUmemDmabuf): Result<void> {
  dmaResvLock(umem.buf);
  const p = dmaBufPin(umem.att);
  if (p.ok) {
    umem.pinned = true;
    const m = ibUmemDmabufMapPages(umem);
    if (m.ok) return m;
    dmaResvUnlock(umem.buf);
    ibUmemDmabufRelease(umem);
    return m;
  }
  dmaResvUnlock(umem.buf);
  ibUmemDmabufRelease(umem);
  return p;
}

/**
 * ib_umem_dmabuf_get_pinned(): attaches (peer2peer allowed, no invalidate_mappings), pins and maps
 * at once; the exporter cannot move the buffer while the umem lives (a GPU buffer's move is EBUSY).
 * Errors: those of ibUmemDmabufGet, the pin's (EOPNOTSUPP: an exporter that refuses pinning, as
 * RDMA's own dma-bufs do; vfio refuses the attach of an importer that cannot be revoked:
 * EOPNOTSUPP), the map's. Nothing stays attached on failure.
 */
export function ibUmemDmabufGetPinned(ibdev: IbDevice, buf: DmaBuf, offset: number, size: number, access: number): Result<IbUmemDmabuf> {
  const u = umemDmabufAttach(ibdev, buf, offset, size, access, null);
  if (!u.ok) return u;
  const r = pinAndMap(u.value);
  if (!r.ok) return r;
  dmaResvUnlock(buf);
  return u;
}

/**
 * ib_umem_dmabuf_get_pinned_revocable_and_lock(): as ibUmemDmabufGetPinned, with the core's revoke
 * as invalidate_mappings (so vfio accepts the attach); returns with the reservation lock held, and
 * the driver sets its revoke callback (ibUmemDmabufSetRevokeLocked) before dmaResvUnlock.
 */
export function ibUmemDmabufGetPinnedRevocableAndLock(ibdev: IbDevice, buf: DmaBuf, offset: number, size: number, access: number): Result<IbUmemDmabuf> {
  const u = umemDmabufAttach(ibdev, buf, offset, size, access, (x) => revokeLocked(x));
  if (!u.ok) return u;
  const r = pinAndMap(u.value);
  return r.ok ? u : r;
}

/** ib_umem_dmabuf_set_revoke_locked(): the driver's callback, run at most once on a revoke (before the unmap). */
export function ibUmemDmabufSetRevokeLocked(umem: IbUmemDmabuf, revoke: (() => void) | null): void {
  if (!(umem instanceof IbUmemDmabuf)) throw new TypeError(`umem must be an IbUmemDmabuf, got ${String(umem)}`);
  umem.buf.resv.assertHeld('ib_umem_dmabuf_set_revoke_locked');
  umem.pinnedRevoke = revoke;
}

/** ib_umem_dmabuf_revoke(): takes the reservation lock and revokes (once). */
export function ibUmemDmabufRevoke(umem: IbUmemDmabuf): void {
  if (!(umem instanceof IbUmemDmabuf)) throw new TypeError(`umem must be an IbUmemDmabuf, got ${String(umem)}`);
  dmaResvLock(umem.buf);
  revokeLocked(umem);
  dmaResvUnlock(umem.buf);
}

/** ib_umem_dmabuf_release() (ib_umem_release of a dma-buf umem): revoke, detach. A second call does nothing. */
export function ibUmemDmabufRelease(umem: IbUmemDmabuf): void {
  if (!(umem instanceof IbUmemDmabuf)) throw new TypeError(`umem must be an IbUmemDmabuf, got ${String(umem)}`);
  if (!umem.markReleased()) return;
  ibUmemDmabufRevoke(umem);
  dmaBufDetach(umem.buf, umem.att);
}

/** How ibRegDmabufMr gets its umem. */
export type IbDmabufMrMode = 'dynamic' | 'pinned' | 'pinned-revocable';

export interface IbRegDmabufMrOptions {
  /**
   * 'dynamic' (default): mlx5's MTT mode, ib_umem_dmabuf_get with mlx5_ib_dmabuf_attach_ops (moves
   * and revokes zap the MTT; the next access faults and remaps). 'pinned': ib_umem_dmabuf_get_pinned,
   * as efa, bnxt_re, mana, ionic register dma-buf MRs (and mlx5 in data-direct mode). 'pinned-revocable':
   * ib_umem_dmabuf_get_pinned_revocable_and_lock with a revoke callback that invalidates the key's
   * translation for good, as irdma_reg_user_mr_dmabuf does.
   * Model deviation: the pinned modes register an MTT mkey on the NIC itself; mlx5's pinned mode is a
   * KSM mkey on the data-direct device.
   */
  readonly mode?: IbDmabufMrMode;
}

/** A dma-buf MR: the mkey (an MR the NIC faults through) and its umem. */
export class IbDmabufMr {
  readonly mr: IbMr;
  readonly umem: IbUmemDmabuf;
  readonly mode: IbDmabufMrMode;
  /** Faults that mapped the buffer again (pagefault_dmabuf_mr after an invalidation), the registration's first fill excluded. */
  remaps = 0;

  /** @internal made by ibRegDmabufMr. */
  constructor(mr: IbMr, umem: IbUmemDmabuf, mode: IbDmabufMrMode) {
    this.mr = mr;
    this.umem = umem;
    this.mode = mode;
  }

  get lkey(): number {
    return this.mr.lkey;
  }

  get rkey(): number {
    return this.mr.rkey;
  }

  get registered(): boolean {
    return this.mr.registered;
  }
}

/**
 * The PAGE_SIZE DMA blocks of the umem's trimmed ranges, in order, as rdma_umem_for_each_dma_block
 * walks them (contiguous ranges are one run, however the exporter cut them); EINVAL when a range
 * does not fit 4 KiB blocks.
 */
function dmaBlocks(umem: IbUmemDmabuf, n: number): Result<bigint[]> {
  const list = umem.dma!;
  // mlx5_umem_dmabuf_find_best_pgsz() over a PAGE_SIZE-only bitmap: 0 means the ranges cannot be described
  const pgsz = findBestPgszOf(list, umem.address % PAGE, umem.length, BigInt(PAGE), umem.iova);
  if (pgsz === 0) return err('EINVAL', 'the exporter\'s DMA ranges do not fall on page boundaries');
  const out: bigint[] = [];
  const it = new IbBlockIter().startList(list, umem.address % PAGE, n, PAGE);
  while (it.next()) out.push(it.dmaAddress());
  return ok(out);
}

/** pagefault_dmabuf_mr(): lock, map the pages, write the whole MTT (present), unlock. */
function pagefaultDmabufMr(dmr: IbDmabufMr): Result<void> {
  const umem = dmr.umem;
  const relock = !dmaResvIsLocked(umem.buf);
  if (relock) dmaResvLock(umem.buf);
  const done = (r: Result<void>): Result<void> => {
    if (relock) dmaResvUnlock(umem.buf);
    return r;
  };
  const m = ibUmemDmabufMapPages(umem);
  if (!m.ok) return done(m);
  const blocks = dmaBlocks(umem, dmr.mr.mttCount);
  if (!blocks.ok) {
    ibUmemDmabufUnmapPages(umem);
    return done(blocks);
  }
  ibMrUpdateMtt(dmr.mr, 0, blocks.value, MLX5_IB_MTT_PRESENT);
  return done(ok());
}

/** mlx5_ib_dmabuf_invalidate_cb(): with the lock held, zap the MTT and unmap, if mapped and registered. */
function invalidateCb(umem: IbUmemDmabuf): void {
  const dmr = umem.private;
  if (umem.sgt === null || dmr === null || !dmr.mr.registered) return;
  ibMrZapMtt(dmr.mr, 0, dmr.mr.mttCount);
  ibUmemDmabufUnmapPages(umem);
  dmaContextOf(umem.ibdev.dev).mm.stats.rdmaDmabufInvalidations++;
}

/**
 * UVERBS_METHOD_REG_DMABUF_MR -> mlx5_ib_reg_user_mr_dmabuf(): registers [offset, offset + length)
 * of buf at iova. Errors: EINVAL (an access bit the method does not take; ib_check_mr_access; offset
 * and iova differ in their page offset; the range; the exporter's ranges not on page boundaries),
 * EOPNOTSUPP (a device without on-demand paging: the kernel's dma-buf MRs need
 * CONFIG_INFINIBAND_ON_DEMAND_PAGING and the ODP page-fault path), the attach's, pin's and map's
 * (ENODEV revoked, EINVAL / EREMOTEIO for P2P the topology cannot do, EOPNOTSUPP), ENOMEM (MTT).
 * Nothing stays attached, pinned, mapped or registered on failure.
 */
export function ibRegDmabufMr(ibdev: IbDevice, buf: DmaBuf, offset: number, length: number, iova: bigint, access: number,
  opts: IbRegDmabufMrOptions = {}): Result<IbDmabufMr> {
  checkArgs(ibdev, buf, offset, length, access);
  if (typeof iova !== 'bigint' || iova < 0n || iova >> 64n !== 0n) throw new RangeError(`iova must be a u64 bigint, got ${String(iova)}`);
  const mode = opts.mode ?? 'dynamic';
  if (mode !== 'dynamic' && mode !== 'pinned' && mode !== 'pinned-revocable') throw new RangeError(`opts.mode must be 'dynamic', 'pinned' or 'pinned-revocable', got ${String(mode)}`);
  if ((access & ~IB_DMABUF_MR_ACCESS_ALLOWED) !== 0) return err('EINVAL', `access 0x${access.toString(16)} has bits REG_DMABUF_MR does not take`);
  if (BigInt(offset % PAGE) !== (iova & BigInt(PAGE - 1))) return err('EINVAL', `offset ${offset} and iova 0x${iova.toString(16)} differ in their page offset`);
  const acc = ibCheckMrAccess(access, ibdev.odpCapable);
  if (!acc.ok) return acc;
  if (!ibdev.odpCapable) return err('EOPNOTSUPP', `${ibdev.name}: dma-buf MRs need on-demand paging`);
  let dmr: IbDmabufMr | null = null;
  const u = mode === 'dynamic' ? ibUmemDmabufGet(ibdev, buf, offset, length, access, { invalidate: invalidateCb })
    : mode === 'pinned' ? ibUmemDmabufGetPinned(ibdev, buf, offset, length, access)
      : ibUmemDmabufGetPinnedRevocableAndLock(ibdev, buf, offset, length, access);
  if (!u.ok) return u;
  const umem = u.value;
  umem.iova = iova;
  const unlockIfHeld = (): void => { if (mode === 'pinned-revocable') dmaResvUnlock(buf); };
  // mlx5_umem_dmabuf_default_pgsz(): the mkey starts at PAGE_SIZE
  const mr = ibRegOdpMr(ibdev, { iova, length, access, pageShift: PAGE_SHIFT }, mode === 'dynamic'
    ? () => {
      if (dmr === null) return false;
      const r = pagefaultDmabufMr(dmr);
      if (r.ok) dmr.remaps++;
      return r.ok;
    }
    : null);
  if (!mr.ok) {
    unlockIfHeld();
    ibUmemDmabufRelease(umem);
    return mr;
  }
  dmr = new IbDmabufMr(mr.value, umem, mode);
  umem.private = dmr;
  if (mode === 'pinned-revocable') {
    // irdma_umem_dmabuf_revoke: the key's translation is invalidated for good; later accesses fail
    const d = dmr;
    ibUmemDmabufSetRevokeLocked(umem, () => { if (d.mr.registered) ibMrZapMtt(d.mr, 0, d.mr.mttCount); });
  }
  // mlx5_ib_init_dmabuf_mr(): the first fill (the pinned umems are mapped already: map_pages only waits)
  const f = pagefaultDmabufMr(dmr);
  unlockIfHeld();
  if (!f.ok) {
    ibDeregDmabufMr(ibdev, dmr);
    return f;
  }
  dmaContextOf(ibdev.dev).mm.stats.rdmaDmabufMrRegs++;
  return ok(dmr);
}

/**
 * ib_dereg_mr of a dma-buf MR (mlx5r_handle_mkey_cleanup + __mlx5_ib_dereg_mr): destroys the mkey
 * (under the reservation lock for a dynamic umem, so no invalidation races it) and releases the
 * umem (revoke: unmap, unpin; detach). EINVAL for an MR deregistered already.
 */
export function ibDeregDmabufMr(ibdev: IbDevice, dmr: IbDmabufMr): Result<void> {
  if (!(dmr instanceof IbDmabufMr)) throw new TypeError(`dmr must be an IbDmabufMr (ibRegDmabufMr), got ${String(dmr)}`);
  if (!dmr.mr.registered) return err('EINVAL', 'mr was deregistered already');
  const dynamic = dmr.mode === 'dynamic';
  if (dynamic) dmaResvLock(dmr.umem.buf);
  const r = ibDeregMr(ibdev, dmr.mr);
  if (r.ok) dmr.umem.private = null;
  if (dynamic) dmaResvUnlock(dmr.umem.buf);
  ibUmemDmabufRelease(dmr.umem);
  return r;
}
