// Models: kernel/dma/mapping.c and include/linux/dma-mapping.h (Linux 7.1: dma_map_phys /
// dma_unmap_phys and their page, single and resource wrappers, dma_map_sgtable, the sync calls,
// dma_need_unmap / dma_need_sync, dma_max/opt_mapping_size, dma_get_merge_boundary): every entry
// point validates, dispatches to dma-direct, dma-iommu or the device's dma_map_ops (dev->dma_ops:
// dma_map_direct / dma_go_direct with dma_ops_bypass, arch_dma_map_phys_direct, use_dma_iommu; the
// families are in ops/), then runs the dma-debug hook.
// Model deviation: an unmap that dma-debug finds was never mapped (or already unmapped) is reported
// and then not passed to the backend, so the model's pools and page tables are not corrupted by it;
// the kernel would report it and carry on into undefined behaviour.
// Model deviation: likewise an unmap whose size differs from the mapping's is reported with the
// caller's size, but the backend unmaps the size dma-debug recorded at map time, so no stale IOMMU
// PTE or bounce slot outlives its IOVA; the kernel would unmap the caller's size (leaving the rest
// of the mapping live behind a freed IOVA, or tearing down more than was mapped).

import type { Device } from '../pci/index.ts';
import type { SgTable } from '../phyr/index.ts';
import { SG_DMA_SWIOTLB } from '../phyr/index.ts';
import { checkAddr, checkLen, err, ok, type Result } from '../base/index.ts';
import { iommuGetDmaDomain, iommuIovaToPhys } from '../iommu/index.ts';
import { dmaContextIfAny, dmaContextOf } from './context.ts';
import {
  checkAttrs, DMA_ATTR_CC_SHARED, DMA_ATTR_MMIO, DMA_ATTR_REQUIRE_COHERENT, DMA_BIDIRECTIONAL, DMA_MAPPING_ERROR, SIZE_MAX, validDmaDirection,
  type DmaDataDirection,
} from './constants.ts';
import {
  dmaDirectMapPhys, dmaDirectMapSg, dmaDirectMaxMappingSize, dmaDirectNeedSync, dmaDirectSyncSingleForCpu,
  dmaDirectSyncSingleForDevice, dmaDirectUnmapPhys, dmaDirectUnmapSg, sgPhysAt,
} from './direct.ts';
import { dmaToPhys } from './direct-addr.ts';
import {
  iommuDmaGetMergeBoundary, iommuDmaMapPhys, iommuDmaMapSg, iommuDmaMaxMappingSize, iommuDmaOptMappingSize,
  iommuDmaSyncSingleForCpu, iommuDmaSyncSingleForDevice, iommuDmaUnmapPhys, iommuDmaUnmapSg, devUseSwiotlb,
} from './iommu-dma.ts';
import { isSwiotlbBuffer } from './swiotlb.ts';
import { archSyncDmaFlush, archSyncDmaForCpu, archSyncDmaForDevice } from './cache.ts';
import {
  DmaMapOk, debugDmaIsMapped, debugDmaMapPhys, debugDmaMapSg, debugDmaMappingError, debugDmaSyncSg,
  debugDmaSyncSingleForCpu, debugDmaSyncSingleForDevice, debugDmaUnmapPhys, debugDmaUnmapSg,
  dmaDebugOf,
} from './debug.ts';
import { getDmaOps, type DmaMapOps, type DmaOpsEntry, type DmaOpsSeg } from './ops/ops.ts';
import { dmaGoDirectFor } from './mask.ts';
import { memTypeLookup } from './map-iter.ts';
import { rangeProvider } from '../phyr/index.ts';
import './counters.ts';

export { dmaAddressingLimited } from './mask.ts';

/** BUG_ON(!valid_dma_direction(dir)): records a BUG and throws KernelBug. */
function checkDir(dev: Device, dir: unknown, fn: string): DmaDataDirection {
  if (!validDmaDirection(dir)) {
    dmaContextOf(dev).mm.events.bug('dma', `${fn}: BUG_ON(!valid_dma_direction(dir)), dir=${String(dir)}`, { dev: dev.name, dir });
  }
  return dir as DmaDataDirection;
}

/**
 * dma_map_direct (dma_go_direct): not behind dma-iommu, and either no dma_ops or dma_ops_bypass
 * with a mask (or bus_dma_limit) that reaches all of RAM.
 */
function mapDirect(dev: Device): boolean {
  return dmaGoDirectFor(dev, dev.dmaMask ?? 0n);
}

/** The device's dma_map_ops when it is not behind dma-iommu (get_dma_ops), else null. */
function opsOf(dev: Device): DmaMapOps | null {
  return dev.dmaIommu ? null : getDmaOps(dev);
}

/** dma_map_direct for the phyr path: whether dev's streaming mappings all go to dma-direct. */
export function dmaGoDirect(dev: Device): boolean {
  return mapDirect(dev);
}

/**
 * The batch path of a dma_map_ops family (the phyr entry point's, no scatterlist in between): the
 * family's map_sg over `ents`, each output segment then recorded by dma-debug as one mapping of the
 * segment's length at its first entry's address, checked as a caller's dma_mapping_error() would.
 * Errnos: those of the family's map_sg (EINVAL, ENOMEM, EIO).
 */
export function dmaOpsMapBatch(dev: Device, ents: readonly DmaOpsEntry[], dir: DmaDataDirection, attrs: number): Result<DmaOpsSeg[]> {
  const ops = opsOf(dev);
  if (ops === null) throw new TypeError(`dev must have dma_map_ops, got ${dev.name} without`);
  dmaContextOf(dev).mm.stats.dmaMapCalls++;
  const r = ops.mapSg(dev, ents, dir, attrs);
  if (!r.ok) return r;
  if (dmaDebugOf(dev).enabled) {
    for (const seg of r.value) {
      const e = ents[seg.first];
      debugDmaMapPhys(dev, e.phys, seg.len, dir, seg.addr, e.mmio ? attrs | DMA_ATTR_MMIO : attrs, { bounced: ops.isBounced?.(dev, seg.addr) ?? false });
      debugDmaMappingError(dev, seg.addr);
    }
  }
  return r;
}

/** Undoes dmaOpsMapBatch: dma-debug's checks, then the family's unmap_sg. */
export function dmaOpsUnmapBatch(dev: Device, segs: readonly DmaOpsSeg[], dir: DmaDataDirection, attrs: number): void {
  const ops = opsOf(dev);
  if (ops === null) throw new TypeError(`dev must have dma_map_ops, got ${dev.name} without`);
  dmaContextOf(dev).mm.stats.dmaUnmapCalls++;
  for (const seg of segs) debugDmaUnmapPhys(dev, seg.addr, seg.len, dir);
  ops.unmapSg(dev, segs, dir, attrs);
}

/**
 * dma_pci_p2pdma_supported: only dma-direct and dma-iommu do PCI P2PDMA; any device with dma_ops
 * does not, even when it bypasses them (kernel/dma/mapping.c).
 */
export function dmaPciP2pdmaSupported(dev: Device): boolean {
  // a domain with ARM32's bitmap allocator stands for arm/mm/dma-mapping.c's iommu_ops: dma_ops set
  return getDmaOps(dev) === null && !iommuGetDmaDomain(dev)?.arm32;
}

/** Whether a fresh mapping at addr goes through a bounce buffer. */
function isBounced(dev: Device, addr: bigint): boolean {
  if (mapDirect(dev)) return isSwiotlbBuffer(dev, dmaToPhys(dev, addr));
  const ops = opsOf(dev);
  if (ops) return ops.isBounced?.(dev, addr) ?? false;
  // dma-iommu bounces only for devices that use swiotlb (untrusted ones): skip the page-table walk otherwise.
  if (!devUseSwiotlb(dev, 0, DMA_BIDIRECTIONAL)) return false;
  const domain = iommuGetDmaDomain(dev);
  if (!domain) return false;
  const phys = iommuIovaToPhys(domain, addr);
  return phys !== 0n && isSwiotlbBuffer(dev, phys);
}

/**
 * dma_map_phys: maps [phys, phys + size) for DMA by dev. Result: the DMA address, or
 * { ok: false, errno: 'ENOMEM' } standing for DMA_MAPPING_ERROR, as dma_mapping_error() reports it
 * (device without dma_mask, REQUIRE_COHERENT on a non-coherent device, beyond the mask without
 * swiotlb, swiotlb pool full, MMIO that would need bouncing, IOVA space exhausted, zero size). A retry
 * can help only for the exhaustion cases. An invalid dir is a BUG (KernelBug thrown).
 */
export function dmaMapPhys(dev: Device, phys: bigint, size: number, dir: number, attrs = 0): Result<bigint> {
  checkAddr('phys', phys);
  checkLen('size', size);
  checkAttrs(attrs);
  const ctx = dmaContextOf(dev);
  const d = checkDir(dev, dir, 'dma_map_phys');
  ctx.mm.stats.dmaMapCalls++;
  if (dev.dmaMask === null) {
    ctx.mm.events.warnOnce('dma_map_phys:dma_mask', 'dma', `${dev.name}: dma_map_phys: WARN_ON_ONCE(!dev->dma_mask)`);
    return err('ENOMEM', 'device has no dma_mask');
  }
  if ((attrs & DMA_ATTR_REQUIRE_COHERENT) && !dev.dmaCoherent) return err('ENOMEM', 'DMA_ATTR_REQUIRE_COHERENT on a non-coherent device');
  if (size === 0) {
    // Model deviation: the kernel has no explicit check; a zero-length mapping would reach the
    // swiotlb BUG_ON(!nslots) or a zero-sized IOVA allocation. The model refuses it with a WARN.
    ctx.mm.events.warn('dma', `${dev.name}: dma_map_phys of zero bytes at 0x${phys.toString(16)}`);
    return err('ENOMEM', 'zero-length mapping');
  }
  const ops = opsOf(dev);
  let addr: bigint;
  const ccShared = (attrs & DMA_ATTR_CC_SHARED) !== 0;
  if (mapDirect(dev) || (ops !== null && !(attrs & DMA_ATTR_MMIO) && !ccShared && ops.archMapPhysDirect?.(dev, phys + BigInt(size)))) {
    addr = dmaDirectMapPhys(dev, phys, size, d, attrs);
  } else if (ccShared) {
    // kernel/dma/mapping.c: dma_map_phys() (7.1): neither dma-iommu nor dma_map_ops can map shared memory
    return err('ENOMEM', `DMA_ATTR_CC_SHARED on ${dev.name}, which is behind ${ops === null ? 'dma-iommu' : `${ops.kind} dma_map_ops`}`);
  } else if (ops === null) {
    addr = iommuDmaMapPhys(dev, phys, size, d, attrs);
  } else {
    addr = ops.mapPhys(dev, phys, size, d, attrs);
  }
  if (addr === DMA_MAPPING_ERROR) return err('ENOMEM', `mapping 0x${phys.toString(16)}+${size} for ${dev.name} failed`);
  const debug = dmaDebugOf(dev);
  if (debug.enabled) {
    debugDmaMapPhys(dev, phys, size, d, addr, attrs, { bounced: isBounced(dev, addr) });
    // reading the result's `ok` is the caller's dma_mapping_error() (debug_dma_mapping_error)
    return new DmaMapOk(debug, dev, addr);
  }
  return ok(addr);
}

/**
 * dma_unmap_phys: undoes dmaMapPhys (same addr, size, dir; attrs as at map). Copies bounce buffers
 * back for FROM_DEVICE / BIDIRECTIONAL unless DMA_ATTR_SKIP_CPU_SYNC. Misuse goes to dma-debug; with
 * dma-debug on, an unmap of a never-mapped address does nothing and one with the wrong size unmaps
 * the mapped size (Model deviations, see the file header).
 */
export function dmaUnmapPhys(dev: Device, addr: bigint, size: number, dir: number, attrs = 0): void {
  checkAddr('addr', addr);
  checkLen('size', size);
  checkAttrs(attrs);
  const ctx = dmaContextOf(dev);
  const d = checkDir(dev, dir, 'dma_unmap_phys');
  ctx.mm.stats.dmaUnmapCalls++;
  // kernel/dma/mapping.c: dma_unmap_phys() (7.1): CC_SHARED off dma-direct returns before dma-debug
  if ((attrs & DMA_ATTR_CC_SHARED) && !mapDirect(dev)) return;
  if (!debugDmaIsMapped(dev, addr)) {
    debugDmaUnmapPhys(dev, addr, size, d, attrs);
    return;
  }
  // with dma-debug on: unmap what was mapped (the size mismatch is still reported below)
  let mappedSize = size;
  const debug = dmaDebugOf(dev);
  if (debug.enabled) {
    const mapped = debug.mappedSize(dev, addr, size, d);
    if (mapped > 0) mappedSize = mapped;
  }
  const ops = opsOf(dev);
  if (mapDirect(dev) || (ops !== null && !(attrs & (DMA_ATTR_MMIO | DMA_ATTR_CC_SHARED)) && ops.archUnmapPhysDirect?.(dev, addr + BigInt(mappedSize)))) {
    dmaDirectUnmapPhys(dev, addr, mappedSize, d, attrs);
  } else if (ops === null) {
    iommuDmaUnmapPhys(dev, addr, mappedSize, d, attrs);
  } else {
    ops.unmapPhys(dev, addr, mappedSize, d, attrs);
  }
  debugDmaUnmapPhys(dev, addr, size, d, attrs);
}

/**
 * dma_mapping_error(dev, addr): ENOMEM for DMA_MAPPING_ERROR, ok otherwise. Tells dma-debug that
 * the handle was checked (debug_dma_mapping_error), as reading the `ok` of dmaMapPhys's result does.
 */
export function dmaMappingError(dev: Device, addr: bigint): Result<void> {
  if (dmaContextIfAny(dev) !== undefined) debugDmaMappingError(dev, addr);
  return addr === DMA_MAPPING_ERROR ? err('ENOMEM') : ok();
}

/**
 * dma_map_page_attrs: maps size bytes at offset into page frame pfn (which must have a struct page).
 * Same Result as dmaMapPhys; also ENOMEM for DMA_ATTR_MMIO (pages are never MMIO) and, with
 * dma-debug on (CONFIG_DMA_API_DEBUG), for ZONE_DEVICE pages (a WARN, once per machine).
 */
export function dmaMapPage(dev: Device, pfn: bigint, offset: number, size: number, dir: number, attrs = 0): Result<bigint> {
  checkAddr('pfn', pfn);
  checkLen('offset', offset);
  checkLen('size', size);
  checkAttrs(attrs);
  const ctx = dmaContextOf(dev);
  const facts = ctx.mm.pfnFacts(pfn);
  if (!facts || !facts.hasStructPage) {
    throw new RangeError(`pfn must be a page frame with a struct page, got 0x${pfn.toString(16)}`);
  }
  const phys = (pfn << BigInt(ctx.mm.pageShift)) + BigInt(offset);
  if (attrs & DMA_ATTR_MMIO) return err('ENOMEM', 'dma_map_page with DMA_ATTR_MMIO');
  // kernel/dma/mapping.c: dma_map_page_attrs() refuses a ZONE_DEVICE page (WARN_ON_ONCE) only when
  // built with CONFIG_DMA_API_DEBUG (the machine's dma-debug); without it the page is mapped as any other
  if (facts.pgmapId !== 0 && dmaDebugOf(dev).enabled) {
    ctx.mm.events.warnOnce('dma_map_page:zone_device', 'dma', `${dev.name}: dma_map_page_attrs: WARN_ON_ONCE(is_zone_device_page(page)) pfn 0x${pfn.toString(16)}`);
    return err('ENOMEM', 'ZONE_DEVICE page');
  }
  return dmaMapPhys(dev, phys, size, dir, attrs);
}

/** dma_unmap_page_attrs: dmaUnmapPhys; DMA_ATTR_MMIO is refused (nothing happens). */
export function dmaUnmapPage(dev: Device, addr: bigint, size: number, dir: number, attrs = 0): void {
  checkAttrs(attrs);
  if (attrs & DMA_ATTR_MMIO) return;
  dmaUnmapPhys(dev, addr, size, dir, attrs);
}

/**
 * dma_map_single_attrs. Model deviation: there are no kernel virtual addresses; `cpuAddr` is the
 * buffer's physical address in the kernel's linear map. Result as dmaMapPage.
 */
export function dmaMapSingle(dev: Device, cpuAddr: bigint, size: number, dir: number, attrs = 0): Result<bigint> {
  checkAddr('cpuAddr', cpuAddr);
  const ctx = dmaContextOf(dev);
  const shift = BigInt(ctx.mm.pageShift);
  return dmaMapPage(dev, cpuAddr >> shift, Number(cpuAddr & ((1n << shift) - 1n)), size, dir, attrs);
}

/** dma_unmap_single_attrs. */
export function dmaUnmapSingle(dev: Device, addr: bigint, size: number, dir: number, attrs = 0): void {
  dmaUnmapPage(dev, addr, size, dir, attrs);
}

/**
 * dma_map_resource: dmaMapPhys with DMA_ATTR_MMIO added, whatever the memory is. Since 7.1
 * (kernel/dma/mapping.c: dma_map_resource() calls dma_map_phys() with no pfn_valid() test) RAM is
 * mapped like MMIO (untranslated, never bounced, no cache maintenance); only dma-debug objects
 * (debug_dma_map_phys: "dma_map_resource called for RAM address").
 */
export function dmaMapResource(dev: Device, phys: bigint, size: number, dir: number, attrs = 0): Result<bigint> {
  checkAttrs(attrs);
  return dmaMapPhys(dev, phys, size, dir, attrs | DMA_ATTR_MMIO);
}

/** dma_unmap_resource: dmaUnmapPhys with DMA_ATTR_MMIO. */
export function dmaUnmapResource(dev: Device, addr: bigint, size: number, dir: number, attrs = 0): void {
  checkAttrs(attrs);
  dmaUnmapPhys(dev, addr, size, dir, attrs | DMA_ATTR_MMIO);
}

/**
 * dma_map_sgtable: maps the table's origNents CPU entries and sets sgt.nents to the number of DMA
 * segments (== origNents on dma-direct; fewer when an IOMMU merges). Errors: EINVAL (bad arguments,
 * misalignment; a retry cannot help), ENOMEM (IOVA or swiotlb exhausted; may succeed later), EIO
 * (an entry could not be mapped on dma-direct; also an empty table on dma-direct, dma-iommu and the
 * xen families, with a WARN), EREMOTEIO (P2P not supported between the memory's provider and dev),
 * EOPNOTSUPP (DMA_ATTR_REQUIRE_COHERENT on a non-coherent device). Nothing stays mapped after an
 * error. A device without dma_mask gets a WARN and success with nents 0, as the kernel gives.
 */
export function dmaMapSgtable(dev: Device, sgt: SgTable, dir: number, attrs = 0): Result<void> {
  checkAttrs(attrs);
  const ctx = dmaContextOf(dev);
  const d = checkDir(dev, dir, 'dma_map_sgtable');
  ctx.mm.stats.dmaMapCalls++;
  // kernel/dma/mapping.c: __dma_map_sg_attrs() refuses this before it looks at the dma_mask
  if ((attrs & DMA_ATTR_REQUIRE_COHERENT) && !dev.dmaCoherent) {
    return err('EOPNOTSUPP', `DMA_ATTR_REQUIRE_COHERENT on ${dev.name}, which is not DMA-coherent`);
  }
  if (dev.dmaMask === null) {
    ctx.mm.events.warnOnce('dma_map_sg:dma_mask', 'dma', `${dev.name}: dma_map_sgtable: WARN_ON_ONCE(!dev->dma_mask)`);
    sgt.nents = 0;
    return ok();
  }
  const ops = opsOf(dev);
  const direct = mapDirect(dev) || (ops !== null && archMapSgDirect(dev, ops, sgt));
  // an empty table: dma_direct_map_sg and iommu_dma_map_sg (__finalise_sg) map nothing and return 0,
  // as the xen families' map_sg do; gart_map_sg, ppc_iommu_map_sg and dma_dummy_map_sg say -EINVAL
  const r = sgt.origNents === 0 && (direct || ops === null) ? ok(0)
    : direct ? dmaDirectMapSg(dev, sgt, d, attrs)
      : ops === null ? iommuDmaMapSg(dev, sgt, d, attrs) : opsMapSg(dev, ops, sgt, d, attrs);
  // __dma_map_sg_attrs(): a count of 0 or an errno outside the four documented ones is a
  // WARN_ON_ONCE and -EIO
  if (r.ok && r.value === 0) {
    ctx.mm.events.warnOnce('dma_map_sg:ents', 'dma', `${dev.name}: dma_map_sgtable: WARN_ON_ONCE(ents == 0) (${sgt.origNents} entries)`);
    return err('EIO', `map_sg mapped no segments of the ${sgt.origNents}-entry table`);
  }
  if (!r.ok) {
    if (r.errno !== 'EINVAL' && r.errno !== 'ENOMEM' && r.errno !== 'EIO' && r.errno !== 'EREMOTEIO') {
      ctx.mm.events.warnOnce('dma_map_sg:ents', 'dma', `${dev.name}: dma_map_sgtable: unexpected error ${r.errno}`);
      return err('EIO', r.message);
    }
    return r;
  }
  sgt.nents = r.value;
  let bounced = false;
  for (let i = 0; i < sgt.nents && !bounced; i++) bounced = isBounced(dev, sgt.dmaAddressAt(i));
  debugDmaMapSg(dev, sgt, sgt.origNents, sgt.nents, d, attrs, { bounced });
  return ok();
}

/** dma_unmap_sgtable: undoes dmaMapSgtable over the table's origNents entries. */
export function dmaUnmapSgtable(dev: Device, sgt: SgTable, dir: number, attrs = 0): void {
  checkAttrs(attrs);
  const ctx = dmaContextOf(dev);
  const d = checkDir(dev, dir, 'dma_unmap_sgtable');
  ctx.mm.stats.dmaUnmapCalls++;
  // A table dma-debug does not know is reported and not passed to the backend (see the header).
  const known = sgt.nents === 0 || debugDmaIsMapped(dev, sgt.dmaAddressAt(0));
  debugDmaUnmapSg(dev, sgt, sgt.origNents, d, attrs);
  if (!known) return;
  const ops = opsOf(dev);
  if (mapDirect(dev) || (ops !== null && archUnmapSgDirect(dev, ops, sgt))) dmaDirectUnmapSg(dev, sgt, sgt.origNents, d, attrs);
  else if (ops === null) iommuDmaUnmapSg(dev, sgt, d, attrs);
  else ops.unmapSg(dev, sgtSegments(sgt), d, attrs);
}

/**
 * arch_dma_map_sg_direct (arch/powerpc/kernel/dma-iommu.c): a bus_dma_limit is set and every entry is below it. The
 * kernel tests sg_phys(s) + s->offset + s->length, counting the offset twice (as read); so does the model.
 */
function archMapSgDirect(dev: Device, ops: DmaMapOps, sgt: SgTable): boolean {
  if (!ops.archMapPhysDirect || dev.busDmaLimit === 0n) return false;
  for (let i = 0; i < sgt.origNents; i++) {
    if (!ops.archMapPhysDirect(dev, sgPhysAt(dev, sgt, i) + BigInt(sgt.offsetAt(i) + sgt.lengthAt(i)))) return false;
  }
  return true;
}

/** arch_dma_unmap_sg_direct: every mapped segment's end is a direct handle. */
function archUnmapSgDirect(dev: Device, ops: DmaMapOps, sgt: SgTable): boolean {
  if (!ops.archUnmapPhysDirect || sgt.nents === 0) return false;
  for (let i = 0; i < sgt.nents; i++) {
    if (!ops.archUnmapPhysDirect(dev, sgt.dmaAddressAt(i) + BigInt(sgt.dmaLengthAt(i)))) return false;
  }
  return true;
}

/** The DMA segments a family's map_sg wrote into the table (the first nents entries). */
function sgtSegments(sgt: SgTable): DmaOpsSeg[] {
  const out: DmaOpsSeg[] = [];
  for (let i = 0; i < sgt.nents; i++) out.push({ addr: sgt.dmaAddressAt(i), len: sgt.dmaLengthAt(i), first: i, count: 1 });
  return out;
}

/**
 * ops->map_sg for a table: the family's batch map over the entries, its segments written into the
 * first nents entries. Model deviation: memory of a P2PDMA provider is refused with EREMOTEIO (the
 * kernel's callers check dma_pci_p2pdma_supported() first; the ops themselves would map the BAR).
 */
function opsMapSg(dev: Device, ops: DmaMapOps, sgt: SgTable, dir: DmaDataDirection, attrs: number): Result<number> {
  const lookup = memTypeLookup(dmaContextOf(dev).mm);
  const ents: DmaOpsEntry[] = [];
  for (let i = 0; i < sgt.origNents; i++) {
    const phys = sgPhysAt(dev, sgt, i);
    const len = sgt.lengthAt(i);
    const ri = lookup.indexBig(phys, len);
    if (ri < 0) return lookup.error(ri, `entry ${i}`, phys, len);
    if (rangeProvider(lookup.flagsOf(ri)) !== 0) return err('EREMOTEIO', `entry ${i} is P2PDMA memory: ${ops.kind} dma_map_ops do not support PCI P2PDMA`);
    ents.push({ phys, len, mmio: false });
  }
  const r = ops.mapSg(dev, ents, dir, attrs);
  if (!r.ok) return r;
  const n = r.value.length;
  r.value.forEach((s, i) => sgt.setDma(i, s.lenOnly ? sgt.dmaAddressAt(i) : s.addr, s.len));
  if (ops.sgTail !== undefined && n < ents.length) {
    const phys = ops.sgTail === 'phys-end-mark';
    sgt.setDma(n, phys ? ents[n].phys : sgt.dmaAddressAt(n), 0);
    if (phys) for (let i = n + 1; i < ents.length; i++) sgt.setDma(i, ents[i].phys, sgt.dmaLengthAt(i));
  }
  return ok(n);
}

/**
 * dma_sync_single_for_cpu: hands [addr, addr + size) back to the CPU (bounce copy-out for
 * FROM_DEVICE / BIDIRECTIONAL, cache invalidation on non-coherent devices).
 */
export function dmaSyncSingleForCpu(dev: Device, addr: bigint, size: number, dir: number): void {
  syncSingle(dev, addr, size, dir, true);
}

/** dma_sync_single_for_device: hands [addr, addr + size) back to the device (bounce copy-in, cache clean). */
export function dmaSyncSingleForDevice(dev: Device, addr: bigint, size: number, dir: number): void {
  syncSingle(dev, addr, size, dir, false);
}

/**
 * dma_dev_need_sync (include/linux/dma-mapping.h): whether the dma_sync_* wrappers call into the
 * DMA layer at all. A device that skips syncs (dma_skip_sync: coherent, never bounced) does not,
 * unless the kernel is built with CONFIG_DMA_API_DEBUG (here: the machine's dma-debug runs).
 */
function dmaDevNeedSync(dev: Device): boolean {
  return !dev.dmaSkipSync || dmaDebugOf(dev).enabled;
}

/**
 * Validates and counts the call; then, when the device needs syncs, dispatches to the backend and
 * tells dma-debug: one sync of [addr, addr + size). For a device that skips syncs the inline
 * wrapper returns before __dma_sync_single_for_*() (kernel/dma/mapping.c), so neither its
 * direction check (BUG_ON) nor the backend runs; the call still counts in dmaSyncCalls.
 */
function syncSingle(dev: Device, addr: bigint, size: number, dir: number, toCpu: boolean): void {
  checkAddr('addr', addr);
  checkLen('size', size);
  const ctx = dmaContextOf(dev);
  ctx.mm.stats.dmaSyncCalls++;
  if (!dmaDevNeedSync(dev)) return;
  const d = checkDir(dev, dir, toCpu ? 'dma_sync_single_for_cpu' : 'dma_sync_single_for_device');
  const direct = mapDirect(dev);
  const ops = direct ? null : opsOf(dev);
  if (ops !== null) {
    if (toCpu) {
      ops.syncSingleForCpu?.(dev, addr, size, d);
      debugDmaSyncSingleForCpu(dev, addr, size, d);
    } else {
      ops.syncSingleForDevice?.(dev, addr, size, d);
      debugDmaSyncSingleForDevice(dev, addr, size, d);
    }
    return;
  }
  if (toCpu) {
    if (direct) dmaDirectSyncSingleForCpu(dev, addr, size, d);
    else iommuDmaSyncSingleForCpu(dev, addr, size, d);
    debugDmaSyncSingleForCpu(dev, addr, size, d);
  } else {
    if (direct) dmaDirectSyncSingleForDevice(dev, addr, size, d);
    else iommuDmaSyncSingleForDevice(dev, addr, size, d);
    debugDmaSyncSingleForDevice(dev, addr, size, d);
  }
}

/** syncSingle for a mapped table (dma_sync_sg_for_*: the same dma_dev_need_sync() test first). */
function syncSgtable(dev: Device, sgt: SgTable, dir: number, toCpu: boolean): void {
  const ctx = dmaContextOf(dev);
  ctx.mm.stats.dmaSyncCalls++;
  if (!dmaDevNeedSync(dev)) return;
  const d = checkDir(dev, dir, toCpu ? 'dma_sync_sgtable_for_cpu' : 'dma_sync_sgtable_for_device');
  const ops = mapDirect(dev) ? null : opsOf(dev);
  if (ops !== null) {
    // ops->sync_sg_for_*: per entry (xen-swiotlb; the others have none)
    for (let i = 0; i < sgt.origNents; i++) {
      if (toCpu) ops.syncSingleForCpu?.(dev, sgt.dmaAddressAt(i), sgt.lengthAt(i), d);
      else ops.syncSingleForDevice?.(dev, sgt.dmaAddressAt(i), sgt.lengthAt(i), d);
    }
  } else if (mapDirect(dev)) {
    // kernel/dma/direct.c: dma_direct_sync_sg_for_*(): every entry's maintenance issued, one wait
    for (let i = 0; i < sgt.origNents; i++) {
      if (toCpu) dmaDirectSyncSingleForCpu(dev, sgt.dmaAddressAt(i), sgt.lengthAt(i), d, false);
      else dmaDirectSyncSingleForDevice(dev, sgt.dmaAddressAt(i), sgt.lengthAt(i), d, false);
    }
    if (!dev.dmaCoherent) archSyncDmaFlush(dev);
  } else if (sgt.origNents > 0 && (sgt.dmaFlagsAt(0) & SG_DMA_SWIOTLB)) {
    // iommu_dma_sync_sg_*: a bounced list was mapped entry by entry.
    for (let i = 0; i < sgt.origNents; i++) {
      if (toCpu) iommuDmaSyncSingleForCpu(dev, sgt.dmaAddressAt(i), sgt.lengthAt(i), d);
      else iommuDmaSyncSingleForDevice(dev, sgt.dmaAddressAt(i), sgt.lengthAt(i), d);
    }
  } else if (!dev.dmaCoherent) {
    for (let i = 0; i < sgt.origNents; i++) {
      if (toCpu) archSyncDmaForCpu(dev, sgPhysAt(dev, sgt, i), sgt.lengthAt(i), d, false);
      else archSyncDmaForDevice(dev, sgPhysAt(dev, sgt, i), sgt.lengthAt(i), d, false);
    }
    archSyncDmaFlush(dev);
  }
  debugDmaSyncSg(dev, sgt, d, toCpu);
}

/** dma_sync_sgtable_for_cpu. */
export function dmaSyncSgtableForCpu(dev: Device, sgt: SgTable, dir: number): void {
  syncSgtable(dev, sgt, dir, true);
}

/** dma_sync_sgtable_for_device. */
export function dmaSyncSgtableForDevice(dev: Device, sgt: SgTable, dir: number): void {
  syncSgtable(dev, sgt, dir, false);
}

/**
 * dma_need_unmap: false only for a direct-mapped device that skips syncs (coherent and never
 * bounced) on a kernel without dma-debug: then dropping a mapping without unmap leaks nothing.
 * Flips to true after the first bounce. With dma-debug (IS_ENABLED(CONFIG_DMA_API_DEBUG)) always
 * true, so a mapping dropped without unmap is a leak dma-debug reports at unbind.
 */
export function dmaNeedUnmap(dev: Device): boolean {
  if (!mapDirect(dev)) return true;
  // Model deviation: the kernel asks the build (CONFIG_DMA_API_DEBUG), not whether dma-debug runs;
  // the model's machine with dma-debug off stands for a production kernel.
  return dmaDevNeedSync(dev);
}

/**
 * dma_need_sync(dev, addr): whether dma_sync_single_* calls for this mapping do anything: false
 * while the device skips syncs on a kernel without dma-debug; otherwise non-coherent or a bounce
 * buffer (direct), always (IOMMU, dma_map_ops).
 */
export function dmaNeedSync(dev: Device, addr: bigint): boolean {
  checkAddr('addr', addr);
  // include/linux/dma-mapping.h: dma_dev_need_sync() is true whatever dma_skip_sync says when the
  // kernel is built with CONFIG_DMA_API_DEBUG (the machine's dma-debug), so dma_need_sync() asks
  // __dma_need_sync() (kernel/dma/mapping.c)
  if (!dmaDevNeedSync(dev)) return false;
  if (mapDirect(dev)) return dmaDirectNeedSync(dev, addr);
  return true;
}

/** dma_max_mapping_size: the largest single mapping (swiotlb's 256/252 KiB when it may bounce; SIZE_MAX when unlimited). */
export function dmaMaxMappingSize(dev: Device): number {
  if (mapDirect(dev)) return dmaDirectMaxMappingSize(dev);
  const ops = opsOf(dev);
  if (ops !== null) return ops.maxMappingSize?.(dev) ?? SIZE_MAX;
  return iommuDmaMaxMappingSize(dev);
}

/** dma_opt_mapping_size: 128 KiB behind an IOMMU with 4 KiB pages (the IOVA rcache limit: PAGE_SIZE << 5), capped by the max. */
export function dmaOptMappingSize(dev: Device): number {
  // no dma_map_ops instance sets ->opt_mapping_size
  const size = dev.dmaIommu ? iommuDmaOptMappingSize(dev) : SIZE_MAX;
  return Math.min(dmaMaxMappingSize(dev), size);
}

/** dma_get_merge_boundary: granule - 1 behind an IOMMU; 0n ("can't merge") otherwise. */
export function dmaGetMergeBoundary(dev: Device): bigint {
  // no dma_map_ops instance sets ->get_merge_boundary
  if (!dev.dmaIommu) return 0n;
  return iommuDmaGetMergeBoundary(dev);
}
