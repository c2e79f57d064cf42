// Models: a GPU buffer object exported as a dma-buf, as drivers/gpu/drm/amd/amdgpu/amdgpu_dma_buf.c
// does it over TTM: placed in VRAM (the GPU's P2P BAR, a contiguous piece of it) or in system
// memory (GTT: pages), moved between them by the driver (ttm_bo_validate; amdgpu_bo_move_notify
// calls dma_buf_invalidate_mappings before the move). amdgpu_dma_buf_attach clears peer2peer when
// pci_p2pdma_distance() < 0 and the importer is not a GPU of the same XGMI hive;
// amdgpu_dma_buf_pin pins into system memory when any attachment cannot do P2P;
// amdgpu_dma_buf_map moves an unpinned buffer to system memory for an importer without
// peer2peer, then maps VRAM or the pages (VRAM never for an importer of the same XGMI hive: WARN
// and EINVAL).
// Model deviation: VRAM is mapped through dmaMapPhyrs (per-range P2P classification: bus address,
// host bridge with DMA_ATTR_MMIO, EREMOTEIO for NOT_SUPPORTED) where amdgpu_vram_mgr_alloc_sgt()
// calls dma_map_resource() per block: the model never maps a BAR for a device that cannot reach it.

import { SlotKey, checkLen, err, ok, type Result } from '../../base/index.ts';
import { DMA_ATTR_SKIP_CPU_SYNC, dmaContextOf, type DmaDataDirection } from '../../dma/index.ts';
import type { MachineMm, PageCacheMode } from '../../mm/index.ts';
import { pciP2pdmaDistance, pcimP2pdmaProvider, type Device, type P2pdmaProvider } from '../../pci/index.ts';
import { PhyrList } from '../../phyr/index.ts';
import {
  dmaBufDropStaleMappings, dmaBufExport, dmaBufInvalidateMappings, type DmaBuf, type DmaBufAttachment, type DmaBufMapped,
} from './dma-buf.ts';
import { DMA_RESV_USAGE_BOOKKEEP } from './fence.ts';
import { DmaBufDma, dmaBufFreeSgt, dmaBufMapPages, dmaBufMapPhyrs } from './mapping.ts';

export type GpuPlacement = 'vram' | 'system';

/** VRAM of one GPU: its P2P BAR with a first-fit allocator (the TTM VRAM manager's part the model needs). */
interface VramHeap {
  readonly provider: P2pdmaProvider;
  /** Allocated [offset, offset + len) pieces of the BAR, sorted by offset. */
  readonly used: Array<{ offset: number; len: number }>;
}

const GPU_VRAM = new SlotKey<VramHeap>('gpu-vram');

/** A GPU buffer object (struct amdgpu_bo as far as export needs it). */
export class GpuBo {
  readonly gpu: Device;
  readonly mm: MachineMm;
  readonly size: number;
  placement: GpuPlacement;
  /** Offset in VRAM (placement 'vram'). */
  vramOffset = -1;
  /** Pages in system memory (placement 'system'), one page each. */
  sysPfns: bigint[] = [];
  /** tbo.pin_count. */
  pinCount = 0;
  /** The dma-buf, once exported. */
  dmabuf: DmaBuf | null = null;
  /** Moves between VRAM and system memory so far. */
  moves = 0;
  freed = false;

  /** @internal made by gpuBoCreate. */
  constructor(gpu: Device, mm: MachineMm, size: number, placement: GpuPlacement) {
    this.gpu = gpu;
    this.mm = mm;
    this.size = size;
    this.placement = placement;
  }

  /** Where the bytes are now, as physical ranges with their memory's flags. */
  ranges(): PhyrList {
    const ps = this.mm.pageSize;
    if (this.placement === 'vram') {
      const heap = vramOf(this.gpu);
      return PhyrList.from([{ addr: heap.provider.region.start + BigInt(this.vramOffset), len: this.size, flags: heap.provider.region.rangeFlags }]);
    }
    const b = PhyrList.builder(this.sysPfns.length);
    for (const pfn of this.sysPfns) b.pushBig(pfn * BigInt(ps), ps, 0);
    return b.build();
  }
}

function vramOf(gpu: Device): VramHeap {
  const h = gpu.slots.get(GPU_VRAM);
  if (h !== undefined) return h;
  const provider = pcimP2pdmaProvider(gpu, 0);
  if (provider === null) throw new TypeError(`gpu must be a PCI function with a P2P memory BAR 0 (VRAM), got ${gpu.name}`);
  return gpu.slots.set(GPU_VRAM, { provider, used: [] });
}

function vramAlloc(heap: VramHeap, len: number): number {
  let at = 0;
  for (const u of heap.used) {
    if (u.offset - at >= len) break;
    at = Math.max(at, u.offset + u.len);
  }
  if (at + len > heap.provider.region.len) return -1;
  heap.used.push({ offset: at, len });
  heap.used.sort((a, b) => a.offset - b.offset);
  return at;
}

function vramFree(heap: VramHeap, offset: number): void {
  const i = heap.used.findIndex((u) => u.offset === offset);
  if (i >= 0) heap.used.splice(i, 1);
}

/** Takes storage for bo in `to`; false when there is none (nothing taken). */
function allocIn(bo: GpuBo, to: GpuPlacement): { vramOffset: number; sysPfns: bigint[] } | null {
  if (to === 'vram') {
    const off = vramAlloc(vramOf(bo.gpu), bo.size);
    return off < 0 ? null : { vramOffset: off, sysPfns: [] };
  }
  const pfns: bigint[] = [];
  for (let i = 0; i < bo.size / bo.mm.pageSize; i++) {
    const r = bo.mm.allocKernelPages(0);
    if (!r.ok) {
      for (const p of pfns) bo.mm.freeKernelPages(p, 0);
      return null;
    }
    pfns.push(r.value);
  }
  return { vramOffset: -1, sysPfns: pfns };
}

function freeStorage(bo: GpuBo): void {
  if (bo.placement === 'vram') {
    if (bo.vramOffset >= 0) vramFree(vramOf(bo.gpu), bo.vramOffset);
    bo.vramOffset = -1;
  } else {
    for (const p of bo.sysPfns) bo.mm.freeKernelPages(p, 0);
    bo.sysPfns = [];
  }
}

/**
 * A buffer object of len bytes (rounded up to pages) on a GPU, placed in VRAM (BAR 0, a P2P
 * provider) or in system memory, zeroed.
 * Errors: ENOMEM (no room in VRAM or no pages); EINVAL for len 0.
 * @throws TypeError if gpu has no P2P BAR 0.
 */
export function gpuBoCreate(gpu: Device, len: number, placement: GpuPlacement = 'vram'): Result<GpuBo> {
  checkLen('len', len);
  if (placement !== 'vram' && placement !== 'system') throw new RangeError(`placement must be 'vram' or 'system', got ${String(placement)}`);
  if (len === 0) return err('EINVAL', 'len is 0');
  const mm = dmaContextOf(gpu).mm;
  vramOf(gpu);
  const bo = new GpuBo(gpu, mm, Math.ceil(len / mm.pageSize) * mm.pageSize, placement);
  const s = allocIn(bo, placement);
  if (s === null) return err('ENOMEM', `no room for ${bo.size} bytes in ${placement} of ${gpu.name}`);
  bo.vramOffset = s.vramOffset;
  bo.sysPfns = s.sysPfns;
  const r = bo.ranges();
  for (let i = 0; i < r.count; i++) mm.mem.fill(r.addrAt(i), r.lenAt(i), 0);
  return ok(bo);
}

/**
 * Moves a buffer object to `to` (TTM's move, amdgpu_bo_move): EBUSY while pinned. With the
 * reservation lock (taken here when the caller does not hold it): every fence is waited for (in-flight DMA
 * completes first), importers are told (dma_buf_invalidate_mappings, from amdgpu_bo_move_notify), the bytes are copied, CPU mappings are zapped, and mappings an importer kept
 * are dropped (dmaBufDropStaleMappings). Errors: EBUSY (pinned), ENOMEM (no room at the
 * destination: nothing changes). Moving to where it is already is a no-op.
 */
export function gpuBoMigrate(bo: GpuBo, to: GpuPlacement): Result<void> {
  if (!(bo instanceof GpuBo)) throw new TypeError(`bo must be a GpuBo, got ${String(bo)}`);
  if (to !== 'vram' && to !== 'system') throw new RangeError(`to must be 'vram' or 'system', got ${String(to)}`);
  if (bo.freed) throw new TypeError('bo is freed');
  if (bo.placement === to) return ok();
  if (bo.pinCount > 0) return err('EBUSY', `buffer of ${bo.gpu.name} is pinned ${bo.pinCount} time(s)`);
  const buf = bo.dmabuf;
  const relock = buf !== null && !buf.resv.locked;
  if (relock) buf.resv.lock();
  const dst = allocIn(bo, to);
  if (dst === null) {
    if (relock) buf.resv.unlock();
    return err('ENOMEM', `no room for ${bo.size} bytes in ${to} of ${bo.gpu.name}`);
  }
  if (buf !== null) {
    // in-flight DMA first (TTM waits for the buffer's fences before it moves it: ttm_bo_wait_ctx),
    // so a dynamic importer that unmaps in its callback has no DMA outstanding on the old place
    buf.resv.waitTimeout(DMA_RESV_USAGE_BOOKKEEP);
    dmaBufInvalidateMappings(buf);
    // and the fences importers added while invalidating (a map still used by queued requests): the
    // move's copy depends on every fence of the reservation object, as TTM schedules it
    buf.resv.waitTimeout(DMA_RESV_USAGE_BOOKKEEP);
    dmaBufDropStaleMappings(buf, `move of ${buf.name} to ${to}`);
  }
  const src = bo.ranges();
  const bytes = new Uint8Array(bo.size);
  let at = 0;
  for (let i = 0; i < src.count; i++) {
    bytes.set(bo.mm.mem.read(src.addrAt(i), src.lenAt(i)), at);
    at += src.lenAt(i);
  }
  freeStorage(bo);
  bo.placement = to;
  bo.vramOffset = dst.vramOffset;
  bo.sysPfns = dst.sysPfns;
  const d = bo.ranges();
  at = 0;
  for (let i = 0; i < d.count; i++) {
    bo.mm.mem.write(d.addrAt(i), bytes.subarray(at, at + d.lenAt(i)));
    at += d.lenAt(i);
  }
  bo.moves++;
  if (relock) buf.resv.unlock();
  return ok();
}

/** Frees a buffer object that is not exported (or whose dma-buf is released). */
export function gpuBoFree(bo: GpuBo): void {
  if (bo.freed) return;
  bo.freed = true;
  freeStorage(bo);
}

/**
 * The importer_priv of a GPU importer that shares a private fabric (an XGMI hive) with other GPUs:
 * the kernel's exporter finds the importer's amdgpu device through importer_ops and importer_priv
 * (dma_buf_attach_adev()) and asks amdgpu_xgmi_same_hive(); the model's exporter asks this.
 */
export interface GpuFabricImporterPriv {
  /** The importer's GPU and the GPU on `exporter` share the fabric. */
  readonly fabricPeerOf: (exporter: Device) => boolean;
}

/**
 * amdgpu_dmabuf_is_xgmi_accessible(attach_adev, bo): the importer is a GPU on the fabric of the
 * buffer's GPU. Model deviation: the kernel also wants VRAM among the BO's preferred domains; a
 * GpuBo has no preferred domains, so every buffer of a fabric peer counts.
 */
function xgmiAccessible(att: DmaBufAttachment, bo: GpuBo): boolean {
  const p = att.importerPriv as Partial<GpuFabricImporterPriv> | null;
  return p !== null && typeof p === 'object' && typeof p.fabricPeerOf === 'function' && p.fabricPeerOf(bo.gpu);
}

const ops = {
  expName: 'amdgpu',
  attach(buf: DmaBuf, att: DmaBufAttachment): Result<void> {
    const bo = buf.priv as GpuBo;
    // drivers/gpu/drm/amd/amdgpu/amdgpu_dma_buf.c: amdgpu_dma_buf_attach(): no P2P where
    // pci_p2pdma_distance() says the peer cannot reach the BAR, unless the importer is a GPU of
    // the exporter's XGMI hive (amdgpu_dmabuf_is_xgmi_accessible), which needs no PCI path
    if (att.peer2peer && !xgmiAccessible(att, bo) && pciP2pdmaDistance(bo.gpu, att.dev, false) < 0) att.peer2peer = false;
    return ok();
  },
  pin(att: DmaBufAttachment): Result<void> {
    const bo = att.dmabuf.priv as GpuBo;
    // amdgpu_dma_buf_pin: VRAM only if every attachment can do P2P
    if (bo.placement === 'vram' && att.dmabuf.attachments.some((a) => !a.peer2peer)) {
      const r = gpuBoMigrate(bo, 'system');
      if (!r.ok) return r;
    }
    bo.pinCount++;
    return ok();
  },
  unpin(att: DmaBufAttachment): void {
    const bo = att.dmabuf.priv as GpuBo;
    if (bo.pinCount > 0) bo.pinCount--;
  },
  map(att: DmaBufAttachment, dir: DmaDataDirection): Result<DmaBufMapped> {
    const bo = att.dmabuf.priv as GpuBo;
    // amdgpu_dma_buf_map: an unpinned buffer goes to system memory for an importer without P2P
    if (bo.pinCount === 0 && bo.placement === 'vram' && !att.peer2peer) {
      const r = gpuBoMigrate(bo, 'system');
      if (!r.ok) return r;
    }
    if (bo.placement === 'vram') {
      // amdgpu_dma_buf_map(): VRAM an importer of the same XGMI hive can reach is never DMA-mapped
      // (WARN_ON(amdgpu_dmabuf_is_xgmi_accessible(...)), -EINVAL): that importer maps it itself
      if (xgmiAccessible(att, bo)) {
        att.dmabuf.events.warn('dma-buf', `amdgpu_dma_buf_map: WARN_ON(amdgpu_dmabuf_is_xgmi_accessible()): ${att.dev.name} reaches ${bo.gpu.name}'s VRAM over the fabric`);
        return err('EINVAL', `${att.dev.name} reaches ${bo.gpu.name}'s VRAM over XGMI: not DMA-mapped`);
      }
      return dmaBufMapPhyrs(att, bo.ranges(), dir);
    }
    // GTT pages: drm_prime_pages_to_sg's failure is returned as is (ENOMEM); a dma_map_sgtable
    // failure goes to error_free, which returns -EBUSY whatever the DMA layer said. The pages are
    // mapped with DMA_ATTR_SKIP_CPU_SYNC and unmapped with 0 (amdgpu_dma_buf_map / _unmap): no
    // cache maintenance at map time, only at unmap (a swiotlb bounce still copies the pages in at
    // map: kernel/dma/swiotlb.c: swiotlb_tbl_map_single() always does)
    return dmaBufMapPages(att, bo.ranges(), dir, DMA_ATTR_SKIP_CPU_SYNC, { mapErrno: 'EBUSY', unmapAttrs: 0 });
  },
  unmap(att: DmaBufAttachment, mapped: DmaBufMapped, dir: DmaDataDirection): void {
    dmaBufFreeSgt(att, mapped as DmaBufDma, dir);
  },
  release(buf: DmaBuf): void {
    gpuBoFree(buf.priv as GpuBo);
  },
  // amdgpu_dma_buf_vmap(): pins the object where it is (GTT or VRAM) while the kernel mapping exists;
  // amdgpu_dma_buf_vunmap() unpins it
  vmap(buf: DmaBuf): Result<PhyrList> {
    if (buf.revoked) return err('ENODEV', `${buf.name} is revoked`);
    const bo = buf.priv as GpuBo;
    bo.pinCount++;
    return ok(bo.ranges());
  },
  vunmap(buf: DmaBuf): void {
    const bo = buf.priv as GpuBo;
    if (bo.pinCount > 0) bo.pinCount--;
  },
  mmapCache(buf: DmaBuf): PageCacheMode {
    // ttm_io_prot(): VRAM through the BAR write-combined, system pages cached
    return (buf.priv as GpuBo).placement === 'vram' ? 'wc' : 'wb';
  },
  physRanges(buf: DmaBuf): Result<PhyrList> {
    if (buf.revoked) return err('ENODEV', `${buf.name} is revoked`);
    return ok((buf.priv as GpuBo).ranges());
  },
};

/** amdgpu_gem_prime_export(): the buffer object as a dma-buf (one per object). */
export function gpuBoExport(bo: GpuBo): Result<DmaBuf> {
  if (!(bo instanceof GpuBo)) throw new TypeError(`bo must be a GpuBo, got ${String(bo)}`);
  if (bo.dmabuf !== null && !bo.dmabuf.released) return ok(bo.dmabuf);
  const r = dmaBufExport({ mm: bo.mm, ops, size: bo.size, priv: bo });
  if (r.ok) bo.dmabuf = r.value;
  return r;
}
