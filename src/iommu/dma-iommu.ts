// Models: drivers/iommu/dma-iommu.c (Linux 7.1): its IOVA side (iommu_dma_alloc_iova,
// iommu_dma_free_iova, the flush-queue entry points, iova_rcache_range).

import { checkAddr, checkLen, faultInjected, faultsArmed } from '../base/index.ts';
import type { Device } from '../pci/index.ts';
import type { IommuDomain, IommuIotlbGather } from './domain.ts';
import { IOVA_RANGE_CACHE_MAX_SIZE } from './iova.ts';
import './counters.ts';

const DMA_BIT_MASK_32 = 0xffffffffn;
const MAX_SAFE_BIG = BigInt(Number.MAX_SAFE_INTEGER);

function cookieOf(d: IommuDomain): NonNullable<IommuDomain['iovad']> {
  if (d === null || typeof d !== 'object' || !('iovad' in d)) throw new TypeError(`d must be an IommuDomain, got ${String(d)}`);
  if (d.iovad === null) throw new TypeError(`domain type ${d.type} has no DMA cookie (needs 'dma' or 'dma-fq')`);
  return d.iovad;
}

function bitsPer(v: bigint): number {
  return v === 0n ? 1 : v.toString(2).length;
}

/**
 * iommu_dma_alloc_iova: size bytes (a positive multiple of the granule) of IOVA below
 * min_not_zero(dmaLimit, dev.busDmaLimit), clamped to the aperture. A PCI device with
 * dev.pci32BitWorkaround and a limit above 32 bits tries below 4 GiB first; when that fails the
 * workaround is cleared for good (INFO "Using <n>-bit DMA addresses", iova32BitFallbacks).
 * Returns the IOVA, or 0n when nothing fits (0 is never a valid IOVA).
 * @throws TypeError when the domain has no DMA cookie; RangeError for a bad size or limit.
 */
export function iommuDmaAllocIova(d: IommuDomain, size: number, dmaLimit: bigint, dev: Device): bigint {
  const iovad = cookieOf(d);
  checkLen('size', size, 1);
  checkAddr('dmaLimit', dmaLimit);
  if (size % iovad.granule !== 0) throw new RangeError(`size must be a multiple of the granule ${iovad.granule}, got ${size}`);
  const pfn = allocIovaPfn(d, iovad, size / iovad.granule, dmaLimit, dev);
  if (pfn === 0) return 0n;
  const a = pfn * iovad.granule;
  return a <= Number.MAX_SAFE_INTEGER ? BigInt(a) : BigInt(pfn) << BigInt(iovad.shift);
}

/**
 * @internal iommuDmaAllocIova in granule units for callers inside the model that hold validated
 * arguments (d has a DMA cookie; pages a safe integer >= 1; dmaLimit a 64-bit bigint). Returns the
 * first granule frame number, or 0 when nothing fits. Same allocator behaviour and events.
 */
export function iommuDmaAllocIovaPfn(d: IommuDomain, pages: number, dmaLimit: bigint, dev: Device): number {
  return allocIovaPfn(d, d.iovad!, pages, dmaLimit, dev);
}

function allocIovaPfn(d: IommuDomain, iovad: NonNullable<IommuDomain['iovad']>, len: number, dmaLimit: bigint, dev: Device): number {
  // alloc_iova_mem(): the struct iova comes from a kmem_cache (failslab); an injected failure is the
  // allocator's "nothing fits"
  if (faultsArmed(d.iommu.mm) && faultInjected(d.iommu.mm, 'iova', `${dev.name}: ${len} granules`)) {
    d.iommu.mm.stats.iovaAllocFailures++;
    return 0;
  }
  // ARM32 iommu_ops: __alloc_iova takes neither the DMA mask nor bus_dma_limit, only the mapping's bitmaps
  if (d.arm32 !== null) return d.arm32.allocPfn(len);
  let limit = dmaLimit;
  if (dev.busDmaLimit !== 0n && (limit === 0n || dev.busDmaLimit < limit)) limit = dev.busDmaLimit;
  if (d.geometry.forceAperture && limit > d.geometry.apertureEnd) limit = d.geometry.apertureEnd;
  if (limit > DMA_BIT_MASK_32 && dev.pci32BitWorkaround) {
    const pfn = iovad.allocIovaFast(len, Math.floor(0xffffffff / iovad.granule), false); // DMA_BIT_MASK(32) >> shift
    if (pfn !== 0) return pfn;
    dev.pci32BitWorkaround = false;
    d.iommu.mm.stats.iova32BitFallbacks++;
    d.iommu.mm.events.record('INFO', 'iommu', `${dev.name}: Using ${bitsPer(limit)}-bit DMA addresses`, { device: dev.name });
  }
  // limit >> shift, without bigint arithmetic when the limit is an exact number
  const limitPfn = limit <= MAX_SAFE_BIG ? Math.floor(Number(limit) / iovad.granule) : Number(limit >> BigInt(iovad.shift));
  return iovad.allocIovaFast(len, limitPfn, true);
}

/**
 * iommu_dma_free_iova: gives back [iova, iova + size). A range freed with a queued gather (the
 * unmap paths of a 'dma-fq' domain, lazy mode) goes into the flush queue with the gather's unlinked
 * table pages, and is reused only after the queue's global IOTLB flush (queue full, timer, or
 * iommuDmaFlushQueueFlush). A null or unqueued gather (dma_iova_free(), the error paths of the map
 * calls, every free in a strict 'dma' domain) frees at once (free_iova_fast: into the range cache or
 * the tree), as drivers/iommu/dma-iommu.c: iommu_dma_free_iova() does: the caller has synced the
 * IOTLB or mapped nothing. A queued gather on a domain without a flush queue is a WARN; the model
 * then flushes the IOTLB and frees at once.
 */
export function iommuDmaFreeIova(d: IommuDomain, iova: bigint, size: number, gather: IommuIotlbGather | null): void {
  const iovad = cookieOf(d);
  checkAddr('iova', iova);
  checkLen('size', size, 1);
  const pfn = iova <= MAX_SAFE_BIG ? Math.floor(Number(iova) / iovad.granule) : Number(iova >> BigInt(iovad.shift));
  freeIovaPfn(d, iovad, pfn, Math.floor(size / iovad.granule), gather);
}

/**
 * @internal iommuDmaFreeIova in granule units for callers inside the model holding validated
 * arguments (d has a DMA cookie; pfn and pages safe integers as iommuDmaAllocIovaPfn gave them).
 */
export function iommuDmaFreeIovaPfn(d: IommuDomain, pfn: number, pages: number, gather: IommuIotlbGather | null): void {
  freeIovaPfn(d, d.iovad!, pfn, pages, gather);
}

function freeIovaPfn(d: IommuDomain, iovad: NonNullable<IommuDomain['iovad']>, pfn: number, pages: number,
  gather: IommuIotlbGather | null): void {
  if (d.arm32 !== null) {
    d.arm32.freePfn(pfn, pages);
    return;
  }
  if (d.fq !== null && gather !== null && gather.queued) {
    d.fq.queue(pfn, pages, gather.freelist);
    return;
  }
  if (gather !== null && gather.queued) {
    d.iommu.mm.events.warn('iommu', `queued IOVA free on domain type ${d.type} without a flush queue`);
    d.flushIotlbAll();
    d.releaseTables(gather.freelist);
  }
  iovad.freeIovaFast(pfn, pages);
}

/** Advances the domain's logical clock by ms: the flush-queue timer and the rcache depot work run when due. */
export function iommuDmaFlushQueueTick(d: IommuDomain, ms: number): void {
  cookieOf(d);
  if (d.fq !== null) d.fq.tick(ms);
  else d.iovad?.tick(ms);
}

/** Flushes the domain's flush queue now: one global IOTLB flush, then every queued IOVA is freed. No-op without a queue. */
export function iommuDmaFlushQueueFlush(d: IommuDomain): void {
  cookieOf(d);
  d.fq?.flush();
}

/**
 * iova_rcache_range: the largest size the range caches serve, PAGE_SIZE << (IOVA_RANGE_CACHE_MAX_SIZE - 1):
 * 128 KiB with 4 KiB pages, 2 MiB with 64 KiB pages. `pageSize` is the CPU page size (default 4096).
 */
export function iovaRcacheRange(pageSize = 4096): number {
  return pageSize * 2 ** (IOVA_RANGE_CACHE_MAX_SIZE - 1);
}
