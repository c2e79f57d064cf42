// Models: coherent DMA memory (kernel/dma/mapping.c: dma_alloc_attrs() / dma_free_attrs(), as
// dma_alloc_coherent() / dma_free_coherent() call them), with its two backends: dma-direct
// (kernel/dma/direct.c: dma_direct_alloc(), __dma_direct_alloc_pages(), dma_coherent_ok(),
// dma_direct_free()) and dma-iommu (drivers/iommu/dma-iommu.c: iommu_dma_alloc(),
// iommu_dma_alloc_pages(), __iommu_dma_map() with the coherent mask, iommu_dma_free()); dma-debug
// sees each allocation (kernel/dma/debug.c: debug_dma_alloc_coherent(), debug_dma_free_coherent()).
// Memory comes from the machine's buddy allocator, 2^get_order(size) pages, zeroed. In a
// confidential-computing guest dma-direct shares the first PFN_UP(size) of those pages with the host
// before handing them out and makes them private again at free (kernel/dma/direct.c:
// dma_set_decrypted() / dma_set_encrypted()); dma-iommu leaves them private.
// Model deviation: there are no kernel virtual addresses; `cpuPhys` is the memory's physical
// address (the kernel returns its linear-map or remapped virtual address).
// dma-direct takes its pages from the zone min_not_zero(coherent mask, bus_dma_limit) falls in and
// retries a lower zone when they are beyond it (directAllocPages below).
// Model deviation: the buddy allocator has no zones; a zone is an allocation of a block wholly
// below the zone's end (MachineMm.allocKernelPages' zoneEnd). An allocation without one takes
// memory anywhere, where the kernel prefers ZONE_NORMAL and keeps the low zones for last.
// Model deviation: dma-iommu always takes physically contiguous pages (the kernel's
// DMA_ATTR_FORCE_CONTIGUOUS / atomic path); iommu_dma_alloc_remap()'s scattered pages behind one
// vmap need kernel virtual addresses the model does not have. The device sees the same thing: one
// contiguous IOVA range, allocated and mapped as __iommu_dma_alloc_noncontiguous() does for a
// blocking allocation (no min_align_mask check) and through __iommu_dma_map() otherwise. So a
// blocking dma-iommu allocation of more than 2^MAX_PAGE_ORDER pages fails (ENOMEM, without the page
// allocator's WARN, which the kernel's remap path never reaches), where the kernel would gather it
// from smaller blocks.
// Model deviation: no per-device coherent pools (dma_alloc_from_dev_coherent), no CMA, no restricted
// swiotlb pool for allocations (is_swiotlb_for_alloc is false), no arch_dma_prep_coherent event.
// Model deviation: no atomic pools (kernel/dma/pool.c). A non-blocking allocation (GFP_ATOMIC,
// GFP_NOWAIT) that would be served from them (dma-direct in a CC guest or for a non-coherent device
// that needs a remap, dma-iommu for a non-coherent device) takes fresh pages and, in a CC guest,
// decrypts them like a blocking one; the kernel hands out part of a pool decrypted at boot, and
// dma_direct_free() gives it back to the pool without re-encrypting it (x86 selects
// CONFIG_DMA_COHERENT_POOL with AMD_MEM_ENCRYPT; a TDX-only kernel has no pools and fails such an
// allocation with a WARN).

import { SlotKey, checkAddr, checkLen, err, ok, type Result } from '../base/internal.ts';
import { iommuDmaAllocIova, iommuDmaFreeIova, iommuMap } from '../iommu/internal.ts';
import type { Device } from '../pci/index.ts';
import { forceDmaUnencrypted, setMemoryDecrypted, setMemoryEncrypted } from './cc.ts';
import { checkAttrs, DMA_ATTR_FORCE_CONTIGUOUS, DMA_ATTR_NO_WARN, DMA_BIDIRECTIONAL, DMA_MAPPING_ERROR } from './constants.ts';
import { dmaContextOf } from './context.ts';
import { dmaToPhys, physToDma } from './direct-addr.ts';
import { dmaDomainOf, dmaInfoToProt, iommuDmaMapRaw, iommuDmaUnmapRaw } from './iommu-dma.ts';
import { debugDmaAllocCoherent, debugDmaFreeCoherent } from './debug.ts';
import './counters.ts';

/** gfp_t bits the model knows (include/linux/gfp_types.h). */
export const __GFP_ZERO = 0x100;
/** __GFP_DIRECT_RECLAIM: the allocation may sleep (gfpflags_allow_blocking). */
export const __GFP_DIRECT_RECLAIM = 0x400;
/** __GFP_KSWAPD_RECLAIM. */
export const __GFP_KSWAPD_RECLAIM = 0x800;
/** __GFP_HIGH (GFP_ATOMIC's access to reserves). */
export const __GFP_HIGH = 0x20;
/** __GFP_NOWARN. */
export const __GFP_NOWARN = 0x2000;
/** __GFP_COMP: compound pages, refused by dma_alloc_attrs with a WARN. */
export const __GFP_COMP = 0x40000;
/** GFP_KERNEL without __GFP_IO / __GFP_FS (the model has no I/O or filesystems to reclaim through). */
export const GFP_KERNEL = __GFP_DIRECT_RECLAIM | __GFP_KSWAPD_RECLAIM;
export const GFP_ATOMIC = __GFP_HIGH | __GFP_KSWAPD_RECLAIM;
export const GFP_NOWAIT = __GFP_KSWAPD_RECLAIM;
const GFP_ALL = __GFP_ZERO | __GFP_DIRECT_RECLAIM | __GFP_KSWAPD_RECLAIM | __GFP_HIGH | __GFP_NOWARN | __GFP_COMP;

/** gfpflags_allow_blocking(): the allocation may sleep (__GFP_DIRECT_RECLAIM). */
export function gfpflagsAllowBlocking(gfp: number): boolean {
  return (gfp & __GFP_DIRECT_RECLAIM) !== 0;
}

/** Checks a gfp argument: a non-negative integer with only the bits above. Returns it. */
export function checkGfp(gfp: unknown): number {
  if (typeof gfp !== 'number' || !Number.isInteger(gfp) || gfp < 0 || (gfp & ~GFP_ALL) !== 0) {
    throw new RangeError(`gfp must be a combination of GFP_* / __GFP_* bits, got ${String(gfp)}`);
  }
  return gfp;
}

/** What dmaAllocCoherent hands back: the memory for the CPU and the address the device uses. */
export interface DmaCoherentMem {
  /** Physical address of the memory (page-aligned); see the file header. */
  readonly cpuPhys: bigint;
  /** The device's address for it (dma_handle). */
  readonly dmaAddr: bigint;
}

/** One live coherent allocation, as dmaCoherentAllocations lists it. */
export interface DmaCoherentRecord extends DmaCoherentMem {
  readonly dev: Device;
  /** The size the driver asked for. */
  readonly size: number;
  /** Pages taken from the page allocator: 2^order. */
  readonly order: number;
  readonly attrs: number;
  /** 'direct': phys_to_dma of the pages; 'iommu': an IOVA range mapped onto them. */
  readonly via: 'direct' | 'iommu';
}

/** The slot on a device that holds its live coherent allocations, by DMA address. */
const DMA_COHERENT = new SlotKey<Map<bigint, DmaCoherentRecord>>('dma-coherent');

/** get_order(size) for base pages of pageSize bytes. */
function getOrder(size: number, pageSize: number): number {
  let order = 0;
  while (pageSize * 2 ** order < size) order++;
  return order;
}

/**
 * dma_alloc_attrs / dma_alloc_coherent: size bytes of zeroed memory that CPU and device may share
 * without syncs, from 2^get_order(size) pages of machine RAM. dma-direct hands out phys_to_dma of
 * the pages when the whole range is below min_not_zero(coherent_dma_mask, bus_dma_limit); behind a
 * DMA-API IOMMU domain an IOVA range below the coherent mask is mapped onto them (read + write).
 * In a confidential-computing guest dma-direct shares the pages' first PFN_UP(size) pages with the
 * host (the device reaches them in the clear) and makes them private again at free.
 * Errors (the kernel's NULL): ENOMEM when no pages of that order are free, the order is above
 * MAX_PAGE_ORDER (the page allocator's WARN_ON_ONCE unless __GFP_NOWARN, which dma-direct adds for
 * DMA_ATTR_NO_WARN), the pages are beyond the
 * coherent mask (dma-direct; see the header), the IOVA space is exhausted, or __GFP_COMP was passed
 * (a WARN), or set_memory_decrypted failed (the pages are then leaked, as the kernel leaks them).
 * A device whose coherent mask is 0 gets a WARN (once) and then the allocation as usual, which
 * then fails unless a bus_dma_limit gives it a limit (dma_coherent_ok(), the IOVA allocator).
 */
export function dmaAllocCoherent(dev: Device, size: number, gfp = GFP_KERNEL, attrs = 0): Result<DmaCoherentMem> {
  checkLen('size', size, 1);
  checkGfp(gfp);
  checkAttrs(attrs);
  const mm = dmaContextOf(dev).mm;
  if (dev.coherentDmaMask === 0n) mm.events.warnOnce('dma_alloc_attrs:coherent_dma_mask', 'dma', `${dev.name}: dma_alloc_attrs: WARN_ON_ONCE(!dev->coherent_dma_mask)`);
  if (gfp & __GFP_COMP) {
    mm.events.warnOnce('dma_alloc_attrs:__GFP_COMP', 'dma', `${dev.name}: dma_alloc_attrs: WARN_ON_ONCE(flag & __GFP_COMP)`);
    return err('ENOMEM', '__GFP_COMP');
  }
  const order = getOrder(size, mm.pageSize);
  // drivers/iommu/dma-iommu.c: iommu_dma_alloc() takes one block of pages and maps it with
  // __iommu_dma_map() when it may not block or DMA_ATTR_FORCE_CONTIGUOUS is set; otherwise
  // iommu_dma_alloc_remap() (see the header)
  const iommuContiguous = !gfpflagsAllowBlocking(gfp) || (attrs & DMA_ATTR_FORCE_CONTIGUOUS) !== 0;
  // kernel/dma/direct.c: dma_direct_alloc() turns DMA_ATTR_NO_WARN into __GFP_NOWARN; dma-iommu's
  // iommu_dma_alloc() does not look at the attribute
  if (!dev.dmaIommu && (attrs & DMA_ATTR_NO_WARN)) gfp |= __GFP_NOWARN;
  // dma-iommu's blocking path (iommu_dma_alloc_remap) never asks the page allocator for more than
  // MAX_PAGE_ORDER, so it has no WARN to give (see the header); the others ask for the whole order
  const maxOrder = mm.maxPageOrder;
  if (order > maxOrder && dev.dmaIommu && !iommuContiguous) {
    return err('ENOMEM', `${size} coherent bytes need order ${order} > MAX_PAGE_ORDER ${maxOrder}`);
  }
  const noWarn = (gfp & __GFP_NOWARN) !== 0;
  const pages = dev.dmaIommu ? mm.allocKernelPages(order, 'page-alloc', { noWarn }) : directAllocPages(dev, mm, size, order, noWarn);
  if (!pages.ok) {
    return order > maxOrder ? err('ENOMEM', `${size} coherent bytes need order ${order} > MAX_PAGE_ORDER ${maxOrder}`)
      : dev.dmaIommu ? err('ENOMEM', `no free pages of order ${order} for ${dev.name}`) : pages;
  }
  const phys = pages.value << BigInt(mm.pageShift);
  let dmaAddr: bigint;
  let via: 'direct' | 'iommu';
  if (!dev.dmaIommu) {
    via = 'direct';
    dmaAddr = physToDma(dev, phys);
    // kernel/dma/direct.c: dma_direct_alloc() -> dma_set_decrypted(): PFN_UP(PAGE_ALIGN(size)) pages
    // are shared with the host before they are zeroed; a failed conversion leaves the pages
    // allocated (out_leak_pages: their state is unknown, so they never go back to the allocator)
    if (forceDmaUnencrypted(dev)) {
      const r = setMemoryDecrypted(mm, phys, pfnUp(size, mm.pageSize));
      if (!r.ok) return err('ENOMEM', `set_memory_decrypted of ${dev.name}'s coherent pages failed (${r.errno}); the pages leak`);
    }
  } else {
    via = 'iommu';
    const domain = dmaDomainOf(dev);
    const prot = dmaInfoToProt(DMA_BIDIRECTIONAL, dev.dmaCoherent, attrs);
    if (iommuContiguous) {
      // __iommu_dma_map() with the coherent mask: its min_align_mask check (a WARN, once), the IOVA
      // range and the mapping; on failure __iommu_dma_free() gives the pages back
      const a = iommuDmaMapRaw(dev, domain, phys, size, prot, dev.coherentDmaMask);
      if (a === DMA_MAPPING_ERROR) {
        mm.freeKernelPages(pages.value, order);
        return err('ENOMEM', `__iommu_dma_map of ${size} coherent bytes for ${dev.name} failed`);
      }
      dmaAddr = a;
    } else {
      // __iommu_dma_alloc_noncontiguous(): the IOVA range (coherent mask) and iommu_map_sg(); no
      // min_align_mask check on this path
      const g = domain.granule;
      const off = Number(phys % BigInt(g));
      const span = Math.ceil((size + off) / g) * g;
      const iova = iommuDmaAllocIova(domain, span, dev.coherentDmaMask, dev);
      if (iova === 0n) {
        mm.freeKernelPages(pages.value, order);
        return err('ENOMEM', `no IOVA space for ${size} coherent bytes of ${dev.name}`);
      }
      const r = iommuMap(domain, iova, phys - BigInt(off), span, prot);
      if (!r.ok) {
        iommuDmaFreeIova(domain, iova, span, null);
        mm.freeKernelPages(pages.value, order);
        return err('ENOMEM', `mapping coherent memory for ${dev.name} failed (${r.errno})`);
      }
      dmaAddr = iova + BigInt(off);
    }
  }
  const rec: DmaCoherentRecord = { dev, cpuPhys: phys, dmaAddr, size, order, attrs, via };
  dev.slots.getOrCreate(DMA_COHERENT, () => new Map()).set(dmaAddr, rec);
  mm.stats.dmaCoherentAllocs++;
  debugDmaAllocCoherent(dev, size, dmaAddr, phys, attrs);
  return ok({ cpuPhys: phys, dmaAddr });
}

/** zone_dma_limit (kernel/dma/direct.c; x86 keeps its DMA_BIT_MASK(24)): ZONE_DMA ends at 16 MiB. */
const ZONE_DMA_LIMIT = (1n << 24n) - 1n;
/** ZONE_DMA32 ends at 4 GiB. */
const ZONE_DMA32_LIMIT = (1n << 32n) - 1n;
const ZONE_NONE = 0, ZONE_DMA32 = 1, ZONE_DMA = 2;
const U64_MAX = (1n << 64n) - 1n;

/**
 * kernel/dma/direct.c: __dma_direct_alloc_pages() as dma_direct_alloc() calls it: pages from the
 * zone the device's physical limit falls in (dma_direct_optimal_gfp_mask(): ZONE_DMA up to
 * zone_dma_limit, ZONE_DMA32 up to 4 GiB, else any memory), given back and asked for again one zone
 * lower while dma_coherent_ok() refuses them, and NULL (ENOMEM) once ZONE_DMA's did not do.
 * A zone is the model's allocation below its end (MachineMm.allocKernelPages' zoneEnd); a GFP_DMA32
 * allocation may also take ZONE_DMA's pages, as the kernel's zonelist falls back to them.
 */
function directAllocPages(dev: Device, mm: ReturnType<typeof dmaContextOf>['mm'], size: number, order: number, noWarn: boolean): Result<bigint> {
  const alignedSize = pfnUp(size, mm.pageSize) * mm.pageSize;
  const mask = dev.coherentDmaMask, lim = dev.busDmaLimit;
  const physLimit = dmaToPhys(dev, mask === 0n ? lim : lim === 0n ? mask : mask < lim ? mask : lim);
  let zone = physLimit <= ZONE_DMA_LIMIT ? ZONE_DMA : physLimit <= ZONE_DMA32_LIMIT ? ZONE_DMA32 : ZONE_NONE;
  for (;;) {
    const end = zone === ZONE_DMA ? ZONE_DMA_LIMIT + 1n : zone === ZONE_DMA32 ? ZONE_DMA32_LIMIT + 1n : undefined;
    const pages = mm.allocKernelPages(order, 'page-alloc', { zoneEnd: end, noWarn });
    if (!pages.ok) return err('ENOMEM', `no free pages of order ${order} for ${dev.name}${end === undefined ? '' : ` below 0x${end.toString(16)}`}`);
    const phys = pages.value << BigInt(mm.pageShift);
    // dma_direct_alloc() page-aligns size before __dma_direct_alloc_pages() asks dma_coherent_ok()
    if (dmaCoherentOk(dev, physToDma(dev, phys), alignedSize)) return pages;
    mm.freeKernelPages(pages.value, order);
    if (zone === ZONE_NONE && physLimit < U64_MAX) zone = ZONE_DMA32;
    else if (zone !== ZONE_DMA) zone = ZONE_DMA;
    else return err('ENOMEM', `pages at 0x${phys.toString(16)} are beyond ${dev.name}'s coherent limit, even from ZONE_DMA`);
  }
}

/** PFN_UP(size): the base pages size bytes touch. */
function pfnUp(size: number, pageSize: number): number {
  return Math.ceil(size / pageSize);
}

/** dma_coherent_ok(): the DMA address is valid and [addr, addr + size) fits the coherent limit. */
function dmaCoherentOk(dev: Device, addr: bigint, size: number): boolean {
  if (addr === DMA_MAPPING_ERROR) return false;
  const mask = dev.coherentDmaMask;
  const lim = dev.busDmaLimit;
  const limit = mask === 0n ? lim : lim === 0n ? mask : mask < lim ? mask : lim;
  return addr + BigInt(size) - 1n <= limit;
}

/**
 * dma_free_attrs / dma_free_coherent: gives back what dmaAllocCoherent returned (same size, cpuPhys,
 * dmaAddr). dma-debug checks the call (size, CPU address, never allocated). The IOVA range is
 * unmapped (and its IOTLB entries invalidated) before the pages go back to the page allocator. In a
 * CC guest dma-direct's pages are made private first; if set_memory_encrypted fails they are leaked
 * with an INFO event "leaking DMA memory that can't be re-encrypted" (pr_warn_ratelimited;
 * `level: 'warning'`, every time: the model has no clock to rate-limit by).
 * Model deviation: a free of something never allocated is reported (by dma-debug when it checks the
 * call, else as a WARN: dma-debug off, or a cpuPhys without a struct page, which
 * debug_dma_free_coherent() does not check) and then ignored, and a wrong size or CPU address frees
 * what was allocated; the kernel would hand the wrong pages to the page allocator.
 */
export function dmaFreeCoherent(dev: Device, size: number, cpuPhys: bigint, dmaAddr: bigint, attrs = 0): void {
  checkLen('size', size, 1);
  checkAddr('cpuPhys', cpuPhys);
  checkAddr('dmaAddr', dmaAddr);
  checkAttrs(attrs);
  const mm = dmaContextOf(dev).mm;
  const debugChecked = debugDmaFreeCoherent(dev, size, cpuPhys, dmaAddr);
  const live = dev.slots.get(DMA_COHERENT);
  const rec = live?.get(dmaAddr);
  if (rec === undefined) {
    if (!debugChecked) {
      mm.events.warn('dma', `${dev.name}: dma_free_attrs of 0x${dmaAddr.toString(16)} that is not a coherent allocation`,
        { dev: dev.name, dmaAddr, size });
    }
    return;
  }
  live!.delete(dmaAddr);
  if (rec.via === 'iommu') iommuDmaUnmapRaw(dev, dmaDomainOf(dev), dmaAddr, rec.size);
  // kernel/dma/direct.c: dma_direct_free() -> dma_set_encrypted(): the pages become private again
  // before they go back; when that fails they are leaked with a rate-limited warning, never handed
  // to the page allocator still shared
  if (rec.via === 'direct' && forceDmaUnencrypted(dev)) {
    const r = setMemoryEncrypted(mm, rec.cpuPhys, pfnUp(rec.size, mm.pageSize));
    if (!r.ok) {
      mm.events.record('INFO', 'dma', "leaking DMA memory that can't be re-encrypted",
        { dev: dev.name, level: 'warning', cpuPhys: rec.cpuPhys, size: rec.size });
      return;
    }
  }
  mm.freeKernelPages(rec.cpuPhys >> BigInt(mm.pageShift), rec.order);
  mm.stats.dmaCoherentFrees++;
}

/** The device's live coherent allocations (pool pages included), oldest first. */
export function dmaCoherentAllocations(dev: Device): DmaCoherentRecord[] {
  return [...(dev.slots.get(DMA_COHERENT)?.values() ?? [])];
}
