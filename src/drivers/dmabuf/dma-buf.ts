// Models: drivers/dma-buf/dma-buf.c and include/linux/dma-buf.h (Linux 7.1): dma_buf_export,
// dma_buf_dynamic_attach / dma_buf_attach, dma_buf_detach, dma_buf_pin / dma_buf_unpin,
// dma_buf_map_attachment / dma_buf_unmap_attachment (pin on map for static importers,
// dma_buf_pin_on_map), dma_buf_attach_revocable and dma_buf_invalidate_mappings (the 7.1 name of
// move_notify: dma_buf_attach_ops.invalidate_mappings), the locking convention (the reservation
// lock is held for pin, unpin, map, unmap and invalidation; not held for attach and detach).
// Revocation is the sequence drivers/vfio/pci/vfio_pci_dmabuf.c: vfio_pci_dma_buf_move() runs. In
// the kernel only exporters with a revoke path of their own run it (vfio-pci: vfio_pci_dma_buf_move;
// ib_uverbs: rdma_user_mmap_entry_remove in drivers/infiniband/core/ib_core_uverbs.c); the dma-buf
// core has no revoke call, and drivers/dma-buf/heaps/system_heap.c has no revoke path and no revoked
// state: its map_dma_buf never refuses. DmaBufOps.revocable says which exporter has one
// (dmaBufRevocable).
// Model deviation: dmaBufRevoke still runs the sequence on any exporter, a heap buffer included:
// the pre-mapped I/O model and the dma-buf matrix (scenario/) revoke heap buffers as a stand-in
// for an exporter that has the path. Users facing the kernel's behaviour (the scenario step
// dmabuf-revoke) ask dmaBufRevocable first and refuse the others.

import { SlotKey, err, ok, type EventLog, type Result } from '../../base/index.ts';
import { DMA_NONE, dmaContextOf, validDmaDirection, type DmaDataDirection } from '../../dma/index.ts';
import type { MachineMm, PageCacheMode } from '../../mm/index.ts';
import type { Device, P2pdmaProvider } from '../../pci/index.ts';
import type { DmaList, PhyrList, SgTable } from '../../phyr/index.ts';
import { DMA_RESV_USAGE_BOOKKEEP, DMA_RESV_USAGE_KERNEL, DmaResv } from './fence.ts';

const SOURCE = 'dma-buf';

/** A misuse the model reports and no kernel does (kind MODEL-CHECK, source 'model-check', as dma/ records them). */
export function modelCheckEvent(events: EventLog, message: string, data?: Record<string, unknown>): void {
  events.record('MODEL-CHECK', 'model-check', message, data);
}

/**
 * What an exporter's map_dma_buf hands the importer: the DMA ranges as a DmaList (no scatterlist)
 * and the same ranges as an sg_table (DMA side only for physical-range exporters, as
 * dma_buf_phys_vec_to_sgt builds it). The helpers of mapping.ts make these.
 */
export interface DmaBufMapped {
  readonly list: DmaList;
  readonly sgt: SgTable;
}

/** struct dma_buf_ops: the exporter's side. */
export interface DmaBufOps {
  /** exp_name. */
  readonly expName: string;
  /** ops->attach: may refuse (errno) or clear att.peer2peer. Called without the reservation lock. */
  attach?(buf: DmaBuf, att: DmaBufAttachment): Result<void>;
  /** ops->detach. */
  detach?(buf: DmaBuf, att: DmaBufAttachment): void;
  /** ops->pin / ops->unpin: both or neither. An exporter with them can move its backing store. */
  pin?(att: DmaBufAttachment): Result<void>;
  unpin?(att: DmaBufAttachment): void;
  /** ops->map_dma_buf, under the reservation lock. */
  map(att: DmaBufAttachment, dir: DmaDataDirection): Result<DmaBufMapped>;
  /** ops->unmap_dma_buf, under the reservation lock. */
  unmap(att: DmaBufAttachment, mapped: DmaBufMapped, dir: DmaDataDirection): void;
  /** ops->release: the last reference went. */
  release(buf: DmaBuf): void;
  /**
   * The exporter has a revoke path of its own (not a dma_buf_ops member: a private revoked flag its
   * attach and map check, set where it calls dma_buf_invalidate_mappings): vfio-pci
   * (vfio_pci_dma_buf_move) and ib_uverbs (rdma_user_mmap_entry_remove). Absent: none, as the
   * system heap (drivers/dma-buf/heaps/system_heap.c) and a GPU exporter, which moves its buffers
   * and never revokes them.
   */
  readonly revocable?: boolean;
  /**
   * ops->mmap: present when the exporter lets a process map the buffer; the cache attribute of its
   * PTEs for the memory the buffer is in now (write-back for RAM, write-combining for a prefetchable
   * BAR, uncached for registers).
   */
  mmapCache?(buf: DmaBuf): PageCacheMode;
  /**
   * ops->vmap: present when the exporter can give the kernel a mapping of the whole buffer; returns
   * the physical ranges to map (an exporter may pin the buffer in place first, as amdgpu does).
   * Under the reservation lock. Without it dma_buf_vmap() is EINVAL (vfio-pci and uverbs have none).
   */
  vmap?(buf: DmaBuf): Result<PhyrList>;
  /** ops->vunmap: undoes vmap when the last kernel mapping goes. */
  vunmap?(buf: DmaBuf): void;
  /**
   * Where the bytes are now, as physical ranges with their memory's range flags (for mmap, vmap
   * and the get_pfn alternative); ENODEV once revoked. Not a kernel op: every kernel exporter has
   * its own internal form (priv->phys_vec of vfio, the TTM resource of a GPU, the heap's pages).
   */
  physRanges(buf: DmaBuf): Result<PhyrList>;
  /**
   * The mapping types the exporter offers, in its order of preference (RFC "Add DMA-buf mapping
   * types", Feb 2026, not merged). Absent: ['sgt'], the classic map_dma_buf.
   */
  readonly mapTypes?: readonly DmaBufMapType[];
  /** RFC mapping types: the PAL map (the physical ranges and their P2P provider), under the reservation lock. */
  mapPal?(att: DmaBufAttachment): Result<DmaBufPal>;
  /** RFC mapping types: undoes mapPal, under the reservation lock. */
  unmapPal?(att: DmaBufAttachment, pal: DmaBufPal): void;
}

/**
 * A mapping type of the RFC "Add DMA-buf mapping types" (Jason Gunthorpe, 17 Feb 2026, not merged
 * as of 7.3): 'sgt' is the classic sg_table of DMA addresses the exporter maps for the importer's
 * device; 'pal' is a Physical Address List: the exporter's struct phys_vec ranges plus their
 * p2pdma provider, which the importer maps itself (iommufd into its own IOMMU domain).
 */
export type DmaBufMapType = 'sgt' | 'pal';
export const DMA_BUF_MAP_TYPES: readonly DmaBufMapType[] = ['sgt', 'pal'];

/** What a PAL map hands the importer: physical ranges of one P2P provider (RFC mapping types). */
export interface DmaBufPal {
  readonly phys: PhyrList;
  readonly provider: P2pdmaProvider;
}

/** What the importer passes to dmaBufAttach (the kernel's dma_buf_attach_ops, or none for a static importer). */
export interface DmaBufAttachOptions {
  /** importer_ops->allow_peer2peer: the importer copes with memory without struct page. Dynamic importers only. */
  readonly peer2peer?: boolean;
  /** importer_ops present: a dynamic importer (maps under the lock, is told of moves instead of pinning). */
  readonly dynamic?: boolean;
  /**
   * importer_ops->invalidate_mappings (move_notify before 7.1), called with the lock held: the
   * importer must stop using its mappings and unmap them (dmaBufUnmapAttachment) before it returns
   * or soon after. Dynamic importers only.
   */
  readonly moveNotify?: (att: DmaBufAttachment) => void;
  /** importer_priv. */
  readonly importerPriv?: unknown;
  /**
   * The mapping types the importer accepts (RFC "Add DMA-buf mapping types", not merged). The
   * exporter picks the first of its own types the importer accepts; none in common: EOPNOTSUPP.
   * Absent: the classic sg_table ('sgt') only.
   */
  readonly mapTypes?: readonly DmaBufMapType[];
}

/** One live mapping of an attachment. */
export interface DmaBufMappingRecord {
  readonly mapped: DmaBufMapped;
  readonly dir: DmaDataDirection;
  /** This map pinned the buffer (static importer of an exporter with pin: dma_buf_pin_on_map). */
  readonly pinned: boolean;
}

/** struct dma_buf_attachment. */
export class DmaBufAttachment {
  readonly dmabuf: DmaBuf;
  readonly dev: Device;
  /** attach->peer2peer: the importer allows P2P and the exporter has not cleared it. */
  peer2peer: boolean;
  /** importer_ops != NULL. */
  readonly dynamic: boolean;
  readonly invalidateMappings: ((att: DmaBufAttachment) => void) | null;
  readonly importerPriv: unknown;
  /** attach->priv: the exporter's. */
  priv: unknown = null;
  /** dma_buf_pin() calls not yet undone by dma_buf_unpin(). */
  pinCount = 0;
  /** The negotiated mapping type (RFC mapping types); 'sgt' for every importer that does not negotiate. */
  mapType: DmaBufMapType = 'sgt';
  /** @internal PAL maps handed out and not yet unmapped (RFC mapping types). */
  readonly livePal = new Set<DmaBufPal>();
  /** @internal live mappings, by the object handed out (the DmaList and the SgTable of each). */
  readonly live = new Map<object, DmaBufMappingRecord>();
  private isAttached = true;

  /** @internal made by dmaBufAttach. */
  constructor(buf: DmaBuf, dev: Device, o: DmaBufAttachOptions) {
    this.dmabuf = buf;
    this.dev = dev;
    this.dynamic = o.dynamic === true;
    this.peer2peer = this.dynamic && o.peer2peer === true;
    this.invalidateMappings = o.moveNotify ?? null;
    this.importerPriv = o.importerPriv ?? null;
  }

  /** false after dmaBufDetach. */
  get attached(): boolean {
    return this.isAttached;
  }

  /** @internal */
  markDetached(): void {
    this.isAttached = false;
  }

  /** The live mappings, oldest first. */
  get mappings(): DmaBufMappingRecord[] {
    return [...new Set(this.live.values())];
  }

  toString(): string {
    return `DmaBufAttachment(${this.dmabuf.name} -> ${this.dev.name}${this.dynamic ? ' dynamic' : ' static'}${this.peer2peer ? ' p2p' : ''})`;
  }
}

/** What an mmap of the buffer registers so that a revoke or a move can zap its PTEs (mmap.ts). */
export interface DmaBufCpuMapping {
  zap(): void;
}

/**
 * The next inode number of a machine's dma-buf files: the dma-buf pseudo filesystem's inodes are
 * numbered per kernel (dma_buf_getfile() -> alloc_anon_inode()), so each machine counts its own and
 * names do not depend on what other machines in the process did.
 */
const DMA_BUF_NEXT_INO = new SlotKey<{ next: number }>('dma-buf-next-ino');

/** struct dma_buf. */
export class DmaBuf {
  readonly size: number;
  readonly ops: DmaBufOps;
  readonly priv: unknown;
  readonly resv: DmaResv;
  readonly mm: MachineMm;
  /** The file's inode number, for names in listings. */
  readonly ino: number;
  /** attachments, newest first (list_add). */
  readonly attachments: DmaBufAttachment[] = [];
  /** Set by dmaBufRevoke: maps and attaches fail with ENODEV. */
  revoked = false;
  /** @internal CPU mappings of the buffer (mmap.ts). */
  readonly cpuMappings = new Set<DmaBufCpuMapping>();
  /** @internal dmabuf->vmap_ptr: the one kernel mapping dmaBufVmap hands out while vmappingCounter > 0. */
  vmapPtr: object | null = null;
  /** @internal dmabuf->vmapping_counter: dmaBufVmap calls not yet undone by dmaBufVunmap. */
  vmappingCounter = 0;
  private isReleased = false;

  /** @internal made by dmaBufExport. */
  constructor(mm: MachineMm, ops: DmaBufOps, size: number, priv: unknown) {
    this.mm = mm;
    this.ops = ops;
    this.size = size;
    this.priv = priv;
    this.ino = mm.slots.getOrCreate(DMA_BUF_NEXT_INO, () => ({ next: 1 })).next++;
    this.resv = new DmaResv(mm.events, this.name);
  }

  get name(): string {
    return `dmabuf:${this.ops.expName}#${this.ino}`;
  }

  get events(): EventLog {
    return this.mm.events;
  }

  /** The exporter can move the backing store (it has pin/unpin: a dynamic exporter). */
  get movable(): boolean {
    return this.ops.pin !== undefined;
  }

  get released(): boolean {
    return this.isReleased;
  }

  /** @internal */
  markReleased(): void {
    this.isReleased = true;
  }

  toString(): string {
    return `DmaBuf(${this.name}, ${this.size} bytes)`;
  }
}

/** The machine's dma-buf list (dmabuf_list of dma-buf.c, what debugfs bufinfo shows). */
const DMA_BUF_LIST = new SlotKey<Set<DmaBuf>>('dma-buf-list');
/** The attachments a device holds as an importer. */
const DMA_BUF_ATTACHMENTS = new SlotKey<Set<DmaBufAttachment>>('dma-buf-attachments');

/** The dma-bufs exported on a machine and not released, oldest first. */
export function dmaBufList(mm: MachineMm): DmaBuf[] {
  return [...(mm.slots.get(DMA_BUF_LIST) ?? [])];
}

/** The attachments dev holds now, oldest first. */
export function dmaBufAttachments(dev: Device): DmaBufAttachment[] {
  return [...(dev.slots.get(DMA_BUF_ATTACHMENTS) ?? [])];
}

/** dma_buf_export_info. */
export interface DmaBufExportInfo {
  readonly mm: MachineMm;
  readonly ops: DmaBufOps;
  readonly size: number;
  readonly priv: unknown;
}

function checkBuf(buf: unknown, what = 'buf'): DmaBuf {
  if (!(buf instanceof DmaBuf)) throw new TypeError(`${what} must be a DmaBuf, got ${String(buf)}`);
  return buf;
}

function checkAtt(att: unknown): DmaBufAttachment {
  if (!(att instanceof DmaBufAttachment)) throw new TypeError(`att must be a DmaBufAttachment, got ${String(att)}`);
  return att;
}

/**
 * dma_buf_export(): a new buffer with its own reservation object, on the machine's list.
 * Errors: EINVAL with a WARN when priv or a required op (map, unmap, release) is missing or only one
 * of pin / unpin is given.
 * @throws TypeError / RangeError for a non-object info or a size that is not a safe non-negative integer.
 */
export function dmaBufExport(info: DmaBufExportInfo): Result<DmaBuf> {
  if (info === null || typeof info !== 'object') throw new TypeError(`info must be a DmaBufExportInfo, got ${String(info)}`);
  const { mm, ops, size, priv } = info;
  if (mm === null || typeof mm !== 'object' || !mm.slots) throw new TypeError(`info.mm must be a machine, got ${String(mm)}`);
  if (!Number.isSafeInteger(size) || size < 0) throw new RangeError(`info.size must be a safe non-negative integer, got ${String(size)}`);
  if (priv === null || priv === undefined || !ops || typeof ops.map !== 'function' || typeof ops.unmap !== 'function' || typeof ops.release !== 'function') {
    mm.events.warn(SOURCE, 'dma_buf_export: WARN_ON(!exp_info->priv || !exp_info->ops || !map_dma_buf || !unmap_dma_buf || !release)');
    return err('EINVAL', 'dma_buf_export needs priv and the map, unmap and release ops');
  }
  if ((ops.pin === undefined) !== (ops.unpin === undefined)) {
    mm.events.warn(SOURCE, 'dma_buf_export: WARN_ON(!exp_info->ops->pin != !exp_info->ops->unpin)');
    return err('EINVAL', 'dma_buf_export: pin and unpin come together');
  }
  const buf = new DmaBuf(mm, ops, size, priv);
  mm.slots.getOrCreate(DMA_BUF_LIST, () => new Set()).add(buf);
  return ok(buf);
}

/**
 * dma_buf_put() of the last reference: ops->release and off the list. Attachments still present are
 * a MODEL-CHECK (an importer holds a reference while attached, so the kernel cannot get here) and
 * are detached first so that nothing is left.
 */
export function dmaBufPut(buf: DmaBuf): void {
  checkBuf(buf);
  if (buf.released) {
    modelCheckEvent(buf.events, `dma_buf_put of ${buf.name}, which is released already`, { buf: buf.name });
    return;
  }
  for (const att of [...buf.attachments]) {
    modelCheckEvent(buf.events, `dma_buf_put of ${buf.name} while ${att.dev.name} is still attached`, { buf: buf.name, dev: att.dev.name });
    dmaBufDetach(buf, att);
  }
  for (const c of [...buf.cpuMappings]) c.zap();
  buf.mm.slots.get(DMA_BUF_LIST)?.delete(buf);
  buf.markReleased();
  buf.ops.release(buf);
}

/**
 * The mapping-type negotiation of the RFC "Add DMA-buf mapping types" (Feb 2026, not merged): the
 * exporter takes the first type of its own list (ops.mapTypes, default ['sgt']) that the importer
 * accepts. EOPNOTSUPP when they share none.
 * @throws TypeError/RangeError for an importer list that is not an array of known types.
 */
export function negotiateMapType(buf: DmaBuf, accepted: readonly DmaBufMapType[]): Result<DmaBufMapType> {
  if (!Array.isArray(accepted) || accepted.some((t) => !DMA_BUF_MAP_TYPES.includes(t))) {
    throw new RangeError(`mapTypes must be a list of ${DMA_BUF_MAP_TYPES.map((t) => `'${t}'`).join(', ')}, got ${JSON.stringify(accepted)}`);
  }
  const offered = buf.ops.mapTypes ?? ['sgt'];
  const t = offered.find((x) => accepted.includes(x));
  if (t === undefined) {
    return err('EOPNOTSUPP', `${buf.name} offers mapping types ${offered.join(', ')}; the importer accepts ${accepted.join(', ') || 'none'}`);
  }
  return ok(t);
}

/**
 * dma_buf_dynamic_attach() / dma_buf_attach(): attaches dev as an importer. `dynamic` with the
 * optional moveNotify and peer2peer are the kernel's importer_ops; a static importer has none.
 * Errors: what the exporter's attach returns (vfio: EOPNOTSUPP without peer2peer or without
 * moveNotify, ENODEV once revoked); ENODEV on a released buffer.
 * @throws TypeError for a non-buffer or non-device, and for peer2peer or moveNotify on a static
 * importer (the kernel keeps both in importer_ops, which a static importer does not have).
 */
export function dmaBufAttach(buf: DmaBuf, dev: Device, opts: DmaBufAttachOptions = {}): Result<DmaBufAttachment> {
  checkBuf(buf);
  if (dev === null || typeof dev !== 'object' || !('slots' in dev)) throw new TypeError(`dev must be a Device, got ${String(dev)}`);
  if (opts === null || typeof opts !== 'object') throw new TypeError(`opts must be an object, got ${String(opts)}`);
  if (opts.moveNotify !== undefined && typeof opts.moveNotify !== 'function') {
    throw new TypeError(`opts.moveNotify must be a function, got ${String(opts.moveNotify)}`);
  }
  if (opts.dynamic !== true && (opts.peer2peer === true || opts.moveNotify !== undefined)) {
    throw new TypeError(`opts.peer2peer and opts.moveNotify need opts.dynamic: true (importer_ops), got ${JSON.stringify({ dynamic: opts.dynamic, peer2peer: opts.peer2peer, moveNotify: opts.moveNotify !== undefined })}`);
  }
  dmaContextOf(dev);
  if (buf.released) {
    modelCheckEvent(buf.events, `dma_buf_attach to ${buf.name}, which is released`, { buf: buf.name, dev: dev.name });
    return err('ENODEV', `${buf.name} is released`);
  }
  if (buf.resv.locked) {
    // the locking convention: attach takes the lock itself
    buf.events.warn('dma-resv', `dma_buf_attach(${buf.name}, ${dev.name}) with the reservation lock held: would deadlock`, { buf: buf.name, dev: dev.name });
    return err('EINVAL', 'dma_buf_attach must be called without the reservation lock');
  }
  const att = new DmaBufAttachment(buf, dev, opts);
  if (opts.mapTypes !== undefined) {
    const t = negotiateMapType(buf, opts.mapTypes);
    if (!t.ok) {
      att.markDetached();
      return t;
    }
    att.mapType = t.value;
  }
  if (buf.ops.attach) {
    const r = buf.ops.attach(buf, att);
    if (!r.ok) {
      att.markDetached();
      return r;
    }
  }
  buf.attachments.unshift(att);
  dev.slots.getOrCreate(DMA_BUF_ATTACHMENTS, () => new Set()).add(att);
  return ok(att);
}

/**
 * dma_buf_detach(). A WARN and nothing done when att is not buf's (the kernel's WARN_ON). Mappings
 * or pins the importer left behind are a MODEL-CHECK and are undone, so nothing stays mapped; a
 * second detach (use after free in the kernel) is a MODEL-CHECK and does nothing.
 */
export function dmaBufDetach(buf: DmaBuf, att: DmaBufAttachment): void {
  checkBuf(buf);
  checkAtt(att);
  if (att.dmabuf !== buf) {
    buf.events.warn(SOURCE, `dma_buf_detach: WARN_ON(dmabuf != attach->dmabuf): ${att} is not an attachment of ${buf.name}`);
    return;
  }
  if (!att.attached) {
    modelCheckEvent(buf.events, `dma_buf_detach of ${att}, which is detached already (use after free)`, { buf: buf.name, dev: att.dev.name });
    return;
  }
  const relock = !buf.resv.locked;
  if (!relock) {
    buf.events.warn('dma-resv', `dma_buf_detach(${buf.name}, ${att.dev.name}) with the reservation lock held: would deadlock`, { buf: buf.name });
  } else {
    buf.resv.lock();
  }
  if (att.live.size > 0) {
    modelCheckEvent(buf.events, `dma_buf_detach of ${att} with ${att.mappings.length} mapping(s) still live: unmapped`, { buf: buf.name, dev: att.dev.name });
    for (const rec of att.mappings) dropMapping(att, rec);
  }
  if (att.livePal.size > 0) {
    modelCheckEvent(buf.events, `dma_buf_detach of ${att} with ${att.livePal.size} PAL map(s) still live: unmapped`, { buf: buf.name, dev: att.dev.name });
    for (const pal of [...att.livePal]) dropPal(att, pal);
  }
  if (att.pinCount > 0) {
    modelCheckEvent(buf.events, `dma_buf_detach of ${att} still pinned ${att.pinCount} time(s): unpinned`, { buf: buf.name, dev: att.dev.name });
    while (att.pinCount > 0) {
      att.pinCount--;
      buf.ops.unpin?.(att);
    }
  }
  const i = buf.attachments.indexOf(att);
  if (i >= 0) buf.attachments.splice(i, 1);
  if (relock) buf.resv.unlock();
  buf.ops.detach?.(buf, att);
  att.dev.slots.get(DMA_BUF_ATTACHMENTS)?.delete(att);
  att.markDetached();
}

/** dma_resv_lock(buf->resv, NULL). */
export function dmaResvLock(buf: DmaBuf): void {
  checkBuf(buf).resv.lock();
}

/** dma_resv_unlock(buf->resv). */
export function dmaResvUnlock(buf: DmaBuf): void {
  checkBuf(buf).resv.unlock();
}

/** dma_resv_is_locked(buf->resv). */
export function dmaResvIsLocked(buf: DmaBuf): boolean {
  return checkBuf(buf).resv.locked;
}

/** A used attachment must still be attached: a MODEL-CHECK otherwise (the kernel's use after free). */
function usable(att: DmaBufAttachment, what: string): boolean {
  if (att.attached) return true;
  modelCheckEvent(att.dmabuf.events, `${what} on ${att}, which is detached (use after free)`, { buf: att.dmabuf.name, dev: att.dev.name });
  return false;
}

/**
 * dma_buf_pin(): WARNs for a static importer (only dynamic importers may pin) and carries on, as
 * the kernel does. Needs the reservation lock.
 * Model deviation: without the lock the kernel's lockdep WARNs and carries on; the model WARNs and
 * refuses (EINVAL) so that nothing changes.
 */
export function dmaBufPin(att: DmaBufAttachment): Result<void> {
  checkAtt(att);
  if (!usable(att, 'dma_buf_pin')) return err('EINVAL', `${att} is detached`);
  const buf = att.dmabuf;
  if (!att.dynamic) buf.events.warn(SOURCE, `dma_buf_pin: WARN_ON(!attach->importer_ops): ${att} is a static importer`);
  if (!buf.resv.assertHeld('dma_buf_pin')) return err('EINVAL', 'dma_buf_pin without the reservation lock');
  if (buf.ops.pin) {
    const r = buf.ops.pin(att);
    if (!r.ok) return r;
  }
  att.pinCount++;
  return ok();
}

/** dma_buf_unpin(). Unpinning more often than pinned is a MODEL-CHECK and does nothing. */
export function dmaBufUnpin(att: DmaBufAttachment): void {
  checkAtt(att);
  if (!usable(att, 'dma_buf_unpin')) return;
  const buf = att.dmabuf;
  if (!att.dynamic) buf.events.warn(SOURCE, `dma_buf_unpin: WARN_ON(!attach->importer_ops): ${att} is a static importer`);
  if (!buf.resv.assertHeld('dma_buf_unpin')) return;
  if (att.pinCount === 0) {
    modelCheckEvent(buf.events, `dma_buf_unpin of ${att}, which is not pinned`, { buf: buf.name, dev: att.dev.name });
    return;
  }
  att.pinCount--;
  buf.ops.unpin?.(att);
}

/** dma_buf_pin_on_map(): the exporter has pin and the importer is static. */
function pinOnMap(att: DmaBufAttachment): boolean {
  return att.dmabuf.ops.pin !== undefined && !att.dynamic;
}

function mapCommon(att: DmaBufAttachment, dir: DmaDataDirection): Result<DmaBufMapped> {
  checkAtt(att);
  if (!validDmaDirection(dir)) throw new RangeError(`dir must be DMA_BIDIRECTIONAL, DMA_TO_DEVICE or DMA_FROM_DEVICE, got ${String(dir)}`);
  if (!usable(att, 'dma_buf_map_attachment')) return err('EINVAL', `${att} is detached`);
  const buf = att.dmabuf;
  // Model deviation: the kernel's lockdep WARNs and maps anyway; the model WARNs and maps nothing.
  if (!buf.resv.assertHeld('dma_buf_map_attachment')) return err('EINVAL', 'dma_buf_map_attachment without the reservation lock');
  if (buf.revoked) return err('ENODEV', `${buf.name} is revoked`);
  if (att.mapType !== 'sgt') return err('EINVAL', `${att} negotiated the ${att.mapType} mapping type: use dmaBufMapPal`);
  const pinned = pinOnMap(att);
  if (pinned) {
    const r = buf.ops.pin!(att);
    if (!r.ok) {
      if (r.errno === 'EBUSY') buf.events.warn(SOURCE, 'dma_buf_map_attachment: WARN_ON_ONCE(ret == -EBUSY) from the exporter\'s pin');
      return r;
    }
  }
  const m = buf.ops.map(att, dir);
  if (!m.ok) {
    if (pinned) buf.ops.unpin!(att);
    return m;
  }
  // static importers wait for the kernel's fences (a move in progress) before using the mapping
  if (!att.dynamic) buf.resv.waitTimeout(DMA_RESV_USAGE_KERNEL);
  const rec: DmaBufMappingRecord = { mapped: m.value, dir, pinned };
  att.live.set(m.value.list, rec);
  att.live.set(m.value.sgt, rec);
  return m;
}

/**
 * dma_buf_map_attachment(), DMA-list form: the importer's DMA ranges. Needs the reservation lock
 * (WARN and nothing mapped otherwise). A static importer's map pins the buffer when the exporter
 * can move it. Errors: ENODEV (revoked), EINVAL (detached attachment: MODEL-CHECK; no lock), and
 * the exporter's (EINVAL for a P2P map type the exporter cannot use, EREMOTEIO from the DMA layer
 * for P2P between the memory and the device that is not supported, ENOMEM).
 */
export function dmaBufMapAttachment(att: DmaBufAttachment, dir: DmaDataDirection): Result<DmaList> {
  const m = mapCommon(att, dir);
  return m.ok ? ok(m.value.list) : m;
}

/** dma_buf_map_attachment() returning the sg_table (the kernel's form); same rules as dmaBufMapAttachment. */
export function dmaBufMapAttachmentSgt(att: DmaBufAttachment, dir: DmaDataDirection): Result<SgTable> {
  const m = mapCommon(att, dir);
  return m.ok ? ok(m.value.sgt) : m;
}

/** dma_buf_map_attachment_unlocked(): takes and drops the lock around the map. */
export function dmaBufMapAttachmentUnlocked(att: DmaBufAttachment, dir: DmaDataDirection): Result<DmaList> {
  checkAtt(att);
  dmaResvLock(att.dmabuf);
  const r = dmaBufMapAttachment(att, dir);
  dmaResvUnlock(att.dmabuf);
  return r;
}

function dropMapping(att: DmaBufAttachment, rec: DmaBufMappingRecord): void {
  att.live.delete(rec.mapped.list);
  att.live.delete(rec.mapped.sgt);
  att.dmabuf.ops.unmap(att, rec.mapped, rec.dir);
  if (rec.pinned) att.dmabuf.ops.unpin!(att);
}

/**
 * dma_buf_unmap_attachment(): undoes a map (pass the DmaList or the SgTable it returned). Without
 * the lock: the kernel's lockdep WARN, and the unmap goes ahead as in the kernel. A mapping that is
 * not live (a double unmap, or one never made) or a detached attachment is a MODEL-CHECK and
 * changes nothing; a different direction than at map is a WARN (dma-debug would report it) and the
 * mapping's own direction is used.
 */
export function dmaBufUnmapAttachment(att: DmaBufAttachment, mapping: DmaList | SgTable, dir: DmaDataDirection): void {
  checkAtt(att);
  if (mapping === null || typeof mapping !== 'object') throw new TypeError(`mapping must be the DmaList or SgTable a map returned, got ${String(mapping)}`);
  if (!validDmaDirection(dir) && dir !== DMA_NONE) throw new RangeError(`dir must be a DMA direction, got ${String(dir)}`);
  if (!usable(att, 'dma_buf_unmap_attachment')) return;
  const buf = att.dmabuf;
  const rec = att.live.get(mapping);
  if (rec === undefined) {
    modelCheckEvent(buf.events, `dma_buf_unmap_attachment of a mapping ${att} does not hold (double unmap?)`, { buf: buf.name, dev: att.dev.name });
    return;
  }
  buf.resv.assertHeld('dma_buf_unmap_attachment');
  if (dir !== rec.dir) buf.events.warn(SOURCE, `dma_buf_unmap_attachment of ${att} with direction ${dir}, mapped with ${rec.dir}`);
  dropMapping(att, rec);
}

/** dma_buf_unmap_attachment_unlocked(). */
export function dmaBufUnmapAttachmentUnlocked(att: DmaBufAttachment, mapping: DmaList | SgTable, dir: DmaDataDirection): void {
  checkAtt(att);
  dmaResvLock(att.dmabuf);
  dmaBufUnmapAttachment(att, mapping, dir);
  dmaResvUnlock(att.dmabuf);
}

function dropPal(att: DmaBufAttachment, pal: DmaBufPal): void {
  att.livePal.delete(pal);
  att.dmabuf.ops.unmapPal?.(att, pal);
}

/**
 * The PAL map of the RFC "Add DMA-buf mapping types" (Feb 2026, not merged): for an attachment that
 * negotiated 'pal', the exporter's physical ranges and their P2P provider; the importer maps them
 * itself and must call dmaBufUnmapPal (also after an invalidation). Needs the reservation lock (a
 * WARN and nothing mapped otherwise). Errors: ENODEV (revoked), EINVAL (the attachment negotiated
 * another type, is detached, or the lock is not held), the exporter's.
 */
export function dmaBufMapPal(att: DmaBufAttachment): Result<DmaBufPal> {
  checkAtt(att);
  if (!usable(att, 'dma_buf_map (PAL)')) return err('EINVAL', `${att} is detached`);
  const buf = att.dmabuf;
  if (!buf.resv.assertHeld('dma_buf_map (PAL)')) return err('EINVAL', 'PAL map without the reservation lock');
  if (buf.revoked) return err('ENODEV', `${buf.name} is revoked`);
  if (att.mapType !== 'pal' || buf.ops.mapPal === undefined) return err('EINVAL', `${att} did not negotiate the PAL mapping type`);
  const r = buf.ops.mapPal(att);
  if (r.ok) att.livePal.add(r.value);
  return r;
}

/** Undoes dmaBufMapPal (under the reservation lock). A PAL the attachment does not hold is a MODEL-CHECK. */
export function dmaBufUnmapPal(att: DmaBufAttachment, pal: DmaBufPal): void {
  checkAtt(att);
  if (!usable(att, 'dma_buf_unmap (PAL)')) return;
  const buf = att.dmabuf;
  if (!att.livePal.has(pal)) {
    modelCheckEvent(buf.events, `PAL unmap of a map ${att} does not hold (double unmap?)`, { buf: buf.name, dev: att.dev.name });
    return;
  }
  buf.resv.assertHeld('dma_buf_unmap (PAL)');
  dropPal(att, pal);
}

/** dma_buf_attach_revocable(): a dynamic importer with invalidate_mappings. */
export function dmaBufAttachRevocable(att: DmaBufAttachment): boolean {
  return checkAtt(att).dynamic && att.invalidateMappings !== null;
}

/**
 * dma_buf_invalidate_mappings() (move_notify before 7.1): tells every dynamic importer with the
 * callback to drop its mappings. The exporter holds the reservation lock (a WARN otherwise, and the
 * notification still goes out, as in the kernel). Returns how many importers were told.
 */
export function dmaBufInvalidateMappings(buf: DmaBuf): number {
  checkBuf(buf);
  buf.resv.assertHeld('dma_buf_invalidate_mappings');
  let n = 0;
  for (const att of [...buf.attachments]) {
    if (att.invalidateMappings !== null) {
      att.invalidateMappings(att);
      n++;
    }
  }
  for (const c of [...buf.cpuMappings]) c.zap();
  return n;
}

/** dmaBufInvalidateMappings under its pre-7.1 name, dma_buf_move_notify(). */
export const dmaBufMoveNotify = dmaBufInvalidateMappings;

/**
 * After an invalidation and the fence wait: mappings an importer kept (a static importer, or a
 * dynamic one without the callback, or one that did not unmap) are a MODEL-CHECK and are unmapped by
 * the model. Returns how many there were.
 * Model deviation: the kernel's exporter waits for those unmaps (vfio_pci_dma_buf_move waits for
 * its kref to drop; a GPU exporter may not move a pinned buffer); the model cannot wait for a
 * caller that never comes, so it undoes the mapping itself and reports it.
 */
export function dmaBufDropStaleMappings(buf: DmaBuf, why: string): number {
  checkBuf(buf);
  let n = 0;
  for (const att of [...buf.attachments]) {
    for (const rec of att.mappings) {
      modelCheckEvent(buf.events, `${why}: ${att} kept a mapping after invalidation: unmapped by the model`, { buf: buf.name, dev: att.dev.name });
      dropMapping(att, rec);
      n++;
    }
    for (const pal of [...att.livePal]) {
      modelCheckEvent(buf.events, `${why}: ${att} kept a PAL map after invalidation: unmapped by the model`, { buf: buf.name, dev: att.dev.name });
      dropPal(att, pal);
      n++;
    }
  }
  return n;
}

/** Whether buf's exporter has a revoke path (DmaBufOps.revocable): vfio-pci and ib_uverbs buffers. */
export function dmaBufRevocable(buf: DmaBuf): boolean {
  checkBuf(buf);
  return buf.ops.revocable === true;
}

/**
 * Revokes the buffer (the sequence of vfio_pci_dma_buf_move(vdev, true)): under the lock, marks it
 * revoked (maps and attaches fail with ENODEV from now on), invalidates every mapping, waits for
 * every fence, unmaps what importers kept (dmaBufDropStaleMappings) and zaps CPU mappings (later
 * faults raise SIGBUS). Idempotent. Runs on any exporter (see the Model deviation at the top of the
 * file); only a dmaBufRevocable buffer can be revoked in the kernel.
 */
export function dmaBufRevoke(buf: DmaBuf): void {
  checkBuf(buf);
  if (buf.revoked) return;
  const relock = !buf.resv.locked;
  if (relock) buf.resv.lock();
  buf.revoked = true;
  dmaBufInvalidateMappings(buf);
  buf.resv.waitTimeout(DMA_RESV_USAGE_BOOKKEEP);
  dmaBufDropStaleMappings(buf, `revoke of ${buf.name}`);
  if (relock) buf.resv.unlock();
}

/**
 * Undoes a revoke (vfio_pci_dma_buf_move(vdev, false)): while the buffer is still revoked, under the
 * lock, every importer with the callback is told again (invalidate_mappings) and the fences are
 * waited for; then the flag is cleared and importers may map again. Does nothing for a buffer that
 * is not revoked (the kernel acts only where priv->revoked differs).
 */
export function dmaBufUnrevoke(buf: DmaBuf): void {
  checkBuf(buf);
  if (!buf.revoked) return;
  // drivers/vfio/pci/vfio_pci_dmabuf.c: vfio_pci_dma_buf_move() calls dma_buf_invalidate_mappings()
  // and dma_resv_wait_timeout(BOOKKEEP) for a restore as for a revoke, before priv->revoked = false
  const relock = !buf.resv.locked;
  if (relock) buf.resv.lock();
  dmaBufInvalidateMappings(buf);
  buf.resv.waitTimeout(DMA_RESV_USAGE_BOOKKEEP);
  buf.revoked = false;
  if (relock) buf.resv.unlock();
}
