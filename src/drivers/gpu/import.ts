// Models: a GPU driver importing a dma-buf, three ways.
// 1. The DMA API way (drivers/gpu/drm/amd/amdgpu/amdgpu_dma_buf.c: amdgpu_gem_prime_import,
//    amdgpu_dma_buf_create_obj, amdgpu_dma_buf_move_notify; amdgpu_ttm.c: amdgpu_ttm_backend_bind
//    and _unbind, which call dma_buf_map_attachment / dma_buf_unmap_attachment and
//    drm_prime_sg_to_dma_addr_array of drivers/gpu/drm/drm_prime.c): a dynamic attachment that
//    allows peer2peer (amdgpu_dma_buf_attach_ops: allow_peer2peer, invalidate_mappings, the 7.1
//    name of move_notify), dma_buf_map_attachment under the reservation lock (the import shares the
//    dma-buf's resv), the DMA list written into the GPU's page table; move_notify drops the
//    page-table entries and the mapping, and the next use maps again (after a migration the list
//    points at system memory; after a revoke the map fails). What the exporter and the DMA layer
//    decide shows as the path: a peer BAR by bus address through a switch, the BAR through the host
//    bridge (an IOVA with MMIO semantics), or system memory.
//    Model deviation: amdgpu_gem_prime_import() only attaches; the first dma_buf_map_attachment()
//    happens when the import is first validated into GTT (amdgpu_ttm_backend_bind(), at the first
//    command submission that uses it), so a map error fails that use, not the import. The model's
//    gpuImportDmabuf attaches and maps at once, and a map error fails the import and detaches (as
//    drm_gem_prime_import_dev() does for a static importer).
//    Model deviation: a dma-buf the same GPU exported is not special: amdgpu_gem_prime_import()
//    (and drm_gem_prime_import_dev()) hand back the exporter's own GEM object, with no attachment
//    and no DMA mapping, and the GPU uses its VRAM directly; every importer of the model attaches,
//    so a GPU importing its own buffer maps its own BAR through the DMA API.
//    Model deviation: move_notify clears the GPU's entries before it unmaps the attachment; amdgpu
//    moves the import to system memory first (ttm_bo_validate: unbind, dma_buf_unmap_attachment)
//    and then updates the page tables of the VMs whose lock it can take, leaving the others to be
//    updated at their next submission.
// 2. The get_pfn RFC (Xu Yilun, "dma-buf: Introduce dma_buf_get_pfn_unlocked() kAPI", 7 Jan 2025;
//    not merged): the exporter hands a pfn and a max order per page offset; the importer maps them
//    itself. The GPU writes the CPU physical addresses into its page table: nothing translates them
//    for the device (no IOMMU mapping, no bus offset, no P2P distance check, no memory type), and
//    lifetime comes only from move_notify (there is no put_pfn).
// 3. The private interconnect (amdgpu's XGMI path: amdgpu_vm_bo_add() marks the import is_xgmi
//    when amdgpu_dmabuf_is_xgmi_accessible(), and amdgpu_vm_bo_update() then writes the exporter
//    BO's own VRAM placement into the page table instead of the import's DMA addresses): the
//    importer recognises the exporter as a GPU it shares a fabric with, takes the buffer's VRAM
//    offset from the exporter's own object and maps it with fabric entries. No DMA API, no IOMMU,
//    no dma-debug. The exporter keeps the attachment's peer2peer for such an importer even where
//    PCI P2P cannot reach its BAR (amdgpu_dma_buf_attach()), so a pin may stay in VRAM. That holds
//    only while the buffer is in VRAM: amdgpu_vm_bo_update() uses the exporter's BO only when its
//    resource is TTM_PL_VRAM, so a buffer in system memory is reached through the import's own
//    dma_buf_map_attachment() (path 'system') until it moves back.

import { err, ok, type Result } from '../../base/index.ts';
import { DMA_BIDIRECTIONAL, dmaContextOf } from '../../dma/index.ts';
import {
  PCI_P2PDMA_MAP_BUS_ADDR, PCI_P2PDMA_MAP_THRU_HOST_BRIDGE, pciP2pdmaMapType, pciTopologyOf, type Device,
} from '../../pci/index.ts';
import { DmaList, rangeProvider, type PhyrList } from '../../phyr/index.ts';
import {
  GpuBo, dmaBufAttach, dmaBufDetach, dmaBufMapAttachment, dmaBufUnmapAttachment, dmaResvLock, dmaResvUnlock, type DmaBuf,
  type DmaBufAttachment, type GpuFabricImporterPriv,
} from '../dmabuf/index.ts';
import { Gpu, gpuMapDmaList, gpuOf, gpuUnmap, type GpuMapping } from './gpu.ts';

/** How an import reaches the bytes. */
export type GpuImportPath =
  | 'system' // system memory through the GPU's DMA path
  | 'p2p-bus' // a peer BAR by bus address through a switch (no IOMMU)
  | 'p2p-host-bridge' // a peer BAR through the host bridge (IOVA, MMIO)
  | 'get-pfn' // CPU physical addresses from the exporter, untranslated
  | 'fabric'; // the peer GPU's VRAM over the private link

/** One dma-buf imported into a GPU. */
export class GpuImport {
  readonly gpu: Gpu;
  readonly buf: DmaBuf;
  readonly att: DmaBufAttachment;
  readonly how: 'dma-api' | 'get-pfn' | 'fabric';
  /** The DMA list of the current mapping ('dma-api'), or null while invalidated. */
  list: DmaList | null = null;
  /** The GPU mapping, or null while invalidated. */
  mapping: GpuMapping | null = null;
  path: GpuImportPath | null = null;
  /** move_notify calls received. */
  invalidations = 0;
  /** get_pfn calls made ('get-pfn'). */
  pfnQueries = 0;
  released = false;

  /** @internal made by the gpuImport* functions. */
  constructor(gpu: Gpu, buf: DmaBuf, att: DmaBufAttachment, how: 'dma-api' | 'get-pfn' | 'fabric') {
    this.gpu = gpu;
    this.buf = buf;
    this.att = att;
    this.how = how;
  }

  /** The GPU virtual address of the buffer, or null while invalidated. */
  get va(): bigint | null {
    return this.mapping?.va ?? null;
  }
}

/** The path a DMA list of an exporter's ranges took for dev. */
function classify(dev: Device, phys: PhyrList | null): GpuImportPath {
  if (phys === null || phys.count === 0) return 'system';
  const id = rangeProvider(phys.flagsAt(0));
  if (id === 0) return 'system';
  const provider = pciTopologyOf(dmaContextOf(dev).mm)?.providerById(id) ?? null;
  if (provider === null) return 'system';
  const t = pciP2pdmaMapType(provider, dev);
  if (t === PCI_P2PDMA_MAP_BUS_ADDR) return 'p2p-bus';
  if (t === PCI_P2PDMA_MAP_THRU_HOST_BRIDGE) return 'p2p-host-bridge';
  return 'system';
}

/** move_notify of the DMA-API and get_pfn importers: page-table entries and mapping go now. */
function invalidate(imp: GpuImport): void {
  imp.invalidations++;
  if (imp.mapping !== null) gpuUnmap(imp.mapping);
  imp.mapping = null;
  if (imp.list !== null) {
    // the exporter holds the reservation lock while it notifies
    dmaBufUnmapAttachment(imp.att, imp.list, DMA_BIDIRECTIONAL);
    imp.list = null;
  }
}

function checkGpu(gpu: unknown): Gpu {
  if (!(gpu instanceof Gpu) || !gpu.alive) throw new TypeError(`gpu must be a probed GPU, got ${String(gpu)}`);
  return gpu;
}

/** Options of gpuImportDmabuf. */
export interface GpuImportOptions {
  /** The importer can take P2P addresses (dma_buf_attach_ops.allow_peer2peer). Default true. */
  readonly peer2peer?: boolean;
}

/**
 * Imports a dma-buf into a GPU through the DMA API: a dynamic attachment (peer2peer per opts, a
 * move_notify that drops the GPU mapping), then gpuImportRevalidate. Errors: the attach's and the
 * map's (EOPNOTSUPP from vfio without peer2peer, EREMOTEIO / EINVAL for P2P the topology does not
 * support, ENODEV once revoked) and the GPU's; nothing stays attached or mapped on failure.
 */
export function gpuImportDmabuf(gpu: Gpu, buf: DmaBuf, opts: GpuImportOptions = {}): Result<GpuImport> {
  checkGpu(gpu);
  let imp: GpuImport | null = null;
  const a = dmaBufAttach(buf, gpu.dev, {
    dynamic: true, peer2peer: opts.peer2peer ?? true,
    moveNotify: () => { if (imp !== null) invalidate(imp); },
  });
  if (!a.ok) return a;
  imp = new GpuImport(gpu, buf, a.value, 'dma-api');
  const r = gpuImportRevalidate(imp);
  if (!r.ok) {
    dmaBufDetach(buf, a.value);
    return r;
  }
  return ok(imp);
}

/** The get_pfn importer's mapping: a list of CPU physical runs from dma_buf_get_pfn_unlocked. */
function mapByPfn(imp: GpuImport): Result<void> {
  const ps = dmaContextOf(imp.gpu.dev).mm.pageSize;
  const b = DmaList.builder(4);
  for (let pgoff = 0; pgoff * ps < imp.buf.size;) {
    const q = dmaBufGetPfnUnlocked(imp.att, pgoff);
    imp.pfnQueries++;
    if (!q.ok) return q;
    const n = Math.min(2 ** q.value.maxOrder, imp.buf.size / ps - pgoff);
    // the importer cannot tell I/O memory from RAM: no flags, so its entries are snooped
    b.pushBig(q.value.pfn * BigInt(ps), n * ps, 0);
    pgoff += n;
  }
  const m = gpuMapDmaList(imp.gpu, b.build());
  if (!m.ok) return m;
  imp.mapping = m.value;
  imp.path = 'get-pfn';
  return ok();
}

/** The link id of the exporter GPU of bo on gpu's fabric, or 0. */
function fabricLink(gpu: Gpu, bo: GpuBo): number {
  const exporter = gpuOf(bo.gpu);
  for (const [k, p] of gpu.fabricPeers) if (p === exporter) return k;
  return 0;
}

/**
 * The fabric importer's mapping: the exporter GPU's VRAM offset, as fabric entries, while the
 * buffer is in VRAM; the import's own DMA mapping of the pages while it is in system memory.
 */
function mapByFabric(imp: GpuImport): Result<void> {
  const bo = imp.buf.priv as GpuBo;
  // drivers/gpu/drm/amd/amdgpu/amdgpu_vm.c: amdgpu_vm_bo_update() takes the exporter's BO for an
  // XGMI import (bo_va->is_xgmi) only while that BO's resource is VRAM; otherwise the entries come
  // from the import's own GTT pages, which amdgpu_ttm_backend_bind() got from
  // dma_buf_map_attachment(): a buffer moved to system memory is reached through the DMA API
  if (bo.placement !== 'vram') return mapByDmaApi(imp);
  const link = fabricLink(imp.gpu, bo);
  if (link === 0) return err('EOPNOTSUPP', `${bo.gpu.name} is not on ${imp.gpu.dev.name}'s fabric`);
  const m = gpuMapDmaList(imp.gpu, DmaList.from([{ addr: BigInt(bo.vramOffset), len: bo.size }]), { aperture: { fabricPeer: link } });
  if (!m.ok) return m;
  imp.mapping = m.value;
  imp.path = 'fabric';
  return ok();
}

/**
 * Maps an invalidated (or new) import again: under the reservation lock for the DMA API way, by
 * get_pfn queries or the exporter's VRAM offset for the others. A valid import is left alone.
 * Errors: the map's (ENODEV once revoked, ...) and the GPU's.
 */
export function gpuImportRevalidate(imp: GpuImport): Result<void> {
  if (!(imp instanceof GpuImport)) throw new TypeError(`imp must be a GpuImport, got ${String(imp)}`);
  if (imp.released) return err('EINVAL', 'import is released');
  if (imp.mapping !== null) return ok();
  if (imp.how === 'get-pfn') return mapByPfn(imp);
  if (imp.how === 'fabric') return mapByFabric(imp);
  return mapByDmaApi(imp);
}

/** The DMA-API mapping: dma_buf_map_attachment under the reservation lock, the list into the GPU's table. */
function mapByDmaApi(imp: GpuImport): Result<void> {
  dmaResvLock(imp.buf);
  const l = dmaBufMapAttachment(imp.att, DMA_BIDIRECTIONAL);
  if (!l.ok) {
    dmaResvUnlock(imp.buf);
    return l;
  }
  const m = gpuMapDmaList(imp.gpu, l.value);
  if (!m.ok) {
    dmaBufUnmapAttachment(imp.att, l.value, DMA_BIDIRECTIONAL);
    dmaResvUnlock(imp.buf);
    return m;
  }
  const phys = imp.buf.ops.physRanges(imp.buf);
  dmaResvUnlock(imp.buf);
  imp.list = l.value;
  imp.mapping = m.value;
  imp.path = classify(imp.gpu.dev, phys.ok ? phys.value : null);
  return ok();
}

/** Drops an import: GPU entries, the mapping, the attachment. A second release does nothing. */
export function gpuImportRelease(imp: GpuImport): void {
  if (!(imp instanceof GpuImport)) throw new TypeError(`imp must be a GpuImport, got ${String(imp)}`);
  if (imp.released) return;
  if (imp.mapping !== null) gpuUnmap(imp.mapping);
  imp.mapping = null;
  if (imp.list !== null) {
    dmaResvLock(imp.buf);
    dmaBufUnmapAttachment(imp.att, imp.list, DMA_BIDIRECTIONAL);
    dmaResvUnlock(imp.buf);
    imp.list = null;
  }
  dmaBufDetach(imp.buf, imp.att);
  imp.released = true;
}

/**
 * dma_buf_get_pfn_unlocked() of the RFC: the pfn behind page `pgoff` of the buffer and the largest
 * order of an aligned, physically contiguous block starting there (capped at 1 GiB). Takes the
 * reservation lock itself. Errors: ENODEV (revoked), EINVAL (pgoff past the end).
 * The RFC's exporter op (get_pfn) is answered from the exporter's physical ranges.
 */
export function dmaBufGetPfnUnlocked(att: DmaBufAttachment, pgoff: number): Result<{ pfn: bigint; maxOrder: number }> {
  const buf = att.dmabuf;
  const ps = dmaContextOf(att.dev).mm.pageSize;
  if (!Number.isSafeInteger(pgoff) || pgoff < 0) throw new RangeError(`pgoff must be a page index >= 0, got ${String(pgoff)}`);
  dmaResvLock(buf);
  const r = buf.revoked ? err('ENODEV', `${buf.name} is revoked`) : buf.ops.physRanges(buf);
  dmaResvUnlock(buf);
  if (!r.ok) return r;
  let off = pgoff * ps;
  if (off >= buf.size) return err('EINVAL', `page ${pgoff} is past the end of ${buf.name}`);
  const list = r.value;
  for (let i = 0; i < list.count; i++) {
    const len = list.lenAt(i);
    if (off >= len) { off -= len; continue; }
    const addr = list.addrAt(i) + BigInt(off);
    const pfn = addr / BigInt(ps);
    const pagesLeft = Math.floor((len - off) / ps);
    let order = 0;
    while (order < 18 && pfn % (2n ** BigInt(order + 1)) === 0n && 2 ** (order + 1) <= pagesLeft) order++;
    return ok({ pfn, maxOrder: order });
  }
  return err('EINVAL', `page ${pgoff} is past the end of ${buf.name}`);
}

/**
 * The get_pfn importer: a dynamic attachment (for move_notify only: nothing is DMA-mapped), then
 * one dma_buf_get_pfn_unlocked per aligned block, the CPU physical addresses written into the GPU's
 * page table as system entries. Works where the GPU's DMA address of memory equals its physical
 * address (no IOMMU in DMA mode, no bus offset); elsewhere the GPU's accesses fault or reach other
 * memory, and nothing here can tell. Errors: the attach's, ENODEV (revoked), the GPU's.
 */
export function gpuImportDmabufGetPfn(gpu: Gpu, buf: DmaBuf): Result<GpuImport> {
  checkGpu(gpu);
  let imp: GpuImport | null = null;
  const a = dmaBufAttach(buf, gpu.dev, { dynamic: true, peer2peer: true, moveNotify: () => { if (imp !== null) invalidate(imp); } });
  if (!a.ok) return a;
  imp = new GpuImport(gpu, buf, a.value, 'get-pfn');
  const r = mapByPfn(imp);
  if (!r.ok) {
    dmaBufDetach(buf, a.value);
    return r;
  }
  return ok(imp);
}

/**
 * The private-interconnect importer: only for a GPU buffer object (the amdgpu exporter) of a GPU on
 * this GPU's fabric. A dynamic attachment gets move_notify (a migration or a revoke drops the
 * entries). While the buffer is in VRAM its offset comes from the exporter's object, not from the
 * DMA API, and is mapped with fabric entries; while it is in system memory the attachment is
 * mapped through the DMA API (path 'system'), as amdgpu_vm_bo_update() falls back to the import's
 * own pages. Errors: EOPNOTSUPP (not a GPU buffer, or its GPU is not a fabric peer), the attach's,
 * the map's (system memory), the GPU's.
 */
export function gpuImportDmabufFabric(gpu: Gpu, buf: DmaBuf): Result<GpuImport> {
  checkGpu(gpu);
  if (!(buf.priv instanceof GpuBo)) return err('EOPNOTSUPP', `${buf.name} was not exported by a GPU driver (${buf.ops.expName})`);
  if (fabricLink(gpu, buf.priv) === 0) return err('EOPNOTSUPP', `${buf.priv.gpu.name} is not on ${gpu.dev.name}'s fabric`);
  let imp: GpuImport | null = null;
  // the exporter recognises a GPU of its hive through importer_priv (dma_buf_attach_adev())
  const importerPriv: GpuFabricImporterPriv = {
    fabricPeerOf: (exporter) => { const g = gpuOf(exporter); return g !== null && [...gpu.fabricPeers.values()].includes(g); },
  };
  const a = dmaBufAttach(buf, gpu.dev, {
    dynamic: true, peer2peer: true, importerPriv, moveNotify: () => { if (imp !== null) invalidate(imp); },
  });
  if (!a.ok) return a;
  imp = new GpuImport(gpu, buf, a.value, 'fabric');
  const r = mapByFabric(imp);
  if (!r.ok) {
    dmaBufDetach(buf, a.value);
    return r;
  }
  return ok(imp);
}
