// Models: drivers/iommu/dma-iommu.c (Linux 7.1): iommu_dma_map_phys / iommu_dma_unmap_phys,
// iommu_dma_map_sg / __finalise_sg / __invalidate_sg / iommu_dma_unmap_sg, the swiotlb path for
// untrusted devices (dev_use_swiotlb, iommu_dma_map_swiotlb), iommu_dma_sync_single_*,
// iommu_dma_get_merge_boundary, iommu_dma_opt_mapping_size / iommu_dma_max_mapping_size.
// The helpers at the top are shared with iova-state.ts (the two-step API lives in the same kernel file).

import {
  checkAddr, checkLen, err, FramePos, Mask64, nrFramesUp, ok, posAdd, posAlignDown, posFromBig, posOffsetIn, posTestMask, posToBig,
  type Result,
} from '../base/internal.ts';
import {
  IOMMU_CACHE, IOMMU_MMIO, IOMMU_PRIV, IOMMU_READ, IOMMU_WRITE, IommuIotlbGather,
  iommuDmaAllocIova, iommuDmaFreeIova, iommuGetDmaDomain, iommuIotlbSync, iommuIovaToPhys,
  iommuSyncMap, iommuUnmapFast, iovaRcacheRange, type IommuDomain,
  iommuDmaAllocIovaPfn, iommuDmaFreeIovaPfn, iommuMapPfns, iommuMapPfnsSync, iommuUnmapFastPfns, safeBigToNum,
} from '../iommu/internal.ts';
import type { Device } from '../pci/index.ts';
import { SG_DMA_BUS_ADDRESS, SG_DMA_SWIOTLB, type SgTable } from '../phyr/index.ts';
import {
  DMA_ATTR_MMIO, DMA_ATTR_PRIVILEGED, DMA_ATTR_REQUIRE_COHERENT, DMA_ATTR_SKIP_CPU_SYNC,
  DMA_BIDIRECTIONAL, DMA_FROM_DEVICE, DMA_MAPPING_ERROR, DMA_TO_DEVICE, type DmaDataDirection,
} from './constants.ts';
import { dmaContextOf } from './context.ts';
import { DMA_RANGE_BUS, DMA_RANGE_UNSUPPORTED, DmaRangeClassifier, MEM_CROSSES, MEM_HOLE } from './map-iter.ts';
import { archSyncDmaFlush, archSyncDmaForCpu, archSyncDmaForDevice } from './cache.ts';
import { dmaGetMask, dmaGetMaxSegSize, dmaGetMinAlignMask, dmaGetSegBoundary } from './mask.ts';
import {
  isSwiotlbActive, isSwiotlbBuffer, swiotlbMaxMappingSize, swiotlbSyncSingleForCpu, swiotlbSyncSingleForDevice,
  swiotlbTblMapSingle, swiotlbTblUnmapSingle,
} from './swiotlb.ts';

const U64_MASK = (1n << 64n) - 1n;
const MAX_SAFE_BIG = BigInt(Number.MAX_SAFE_INTEGER);
/** 1 / 4096, exact: frame arithmetic by multiplication. */
const INV_4K = 1 / 4096;

/** The DMA-API domain of a device that uses dma-iommu; a BUG when called for one that does not. */
export function dmaDomainOf(dev: Device): IommuDomain {
  const d = iommuGetDmaDomain(dev);
  if (!d || !d.iovad) {
    return dmaContextOf(dev).mm.events.bug('dma-iommu', `${dev.name}: dma-iommu call without a DMA domain`);
  }
  return d;
}

/**
 * dma_info_to_prot(): IOMMU prot bits for a direction, coherence and attributes.
 * MMIO is mapped IOMMU_MMIO in place of IOMMU_CACHE, whatever the device's coherence: a BAR is
 * device memory, never cacheable (drivers/iommu/dma-iommu.c: dma_info_to_prot()).
 */
export function dmaInfoToProt(dir: DmaDataDirection, coherent: boolean, attrs: number): number {
  let prot = attrs & DMA_ATTR_MMIO ? IOMMU_MMIO : coherent ? IOMMU_CACHE : 0;
  if (attrs & DMA_ATTR_PRIVILEGED) prot |= IOMMU_PRIV;
  switch (dir) {
    case DMA_BIDIRECTIONAL: return prot | IOMMU_READ | IOMMU_WRITE;
    case DMA_TO_DEVICE: return prot | IOMMU_READ;
    case DMA_FROM_DEVICE: return prot | IOMMU_WRITE;
    default: return 0;
  }
}

/**
 * dev_use_swiotlb(): dma-iommu bounces granule-unaligned pieces for untrusted devices
 * (drivers/iommu/dma-iommu.c: dev_use_swiotlb(), iommu_dma_map_swiotlb()).
 * CONFIG_SWIOTLB is always built on x86-64, so this does not ask whether a pool exists: an untrusted
 * device's unaligned piece needs a bounce either way, and without an active pool the mapping fails
 * in iommuDmaMapSwiotlb rather than exposing the rest of the granule.
 * Model deviation: dma_kmalloc_needs_bounce() is always false: the model has no kmalloc caches
 * (it matters only for non-coherent arm64 with CONFIG_DMA_BOUNCE_UNALIGNED_KMALLOC).
 */
export function devUseSwiotlb(dev: Device, _size: number, _dir: DmaDataDirection): boolean {
  return dev.untrusted;
}

/** iova_offset(): the offset of an address inside its IOVA granule. */
export function iovaOffset(domain: IommuDomain, addr: bigint): number {
  const g = domain.granule;
  const n = safeBigToNum(addr);
  // exact as a number; x - floor(x / g) * g is x % g without an fmod call
  if (n >= 0) return n - Math.floor(n / g) * g;
  return Number(addr & BigInt(g - 1));
}

/**
 * iommu_dma_map_swiotlb(): bounce [phys, phys+size) into a swiotlb slot aligned to the IOVA granule.
 * For untrusted devices the rest of the bounce granule is zeroed, so the device cannot see stale
 * data through the granule the IOMMU exposes. Returns the bounce address or DMA_MAPPING_ERROR:
 * the pool is full, or there is no active pool (is_swiotlb_active(): a WARN, once, "DMA bounce
 * buffers are inactive, unable to map unaligned transaction.").
 */
export function iommuDmaMapSwiotlb(dev: Device, phys: bigint, size: number, dir: DmaDataDirection, attrs: number): bigint {
  const domain = dmaDomainOf(dev);
  if (!isSwiotlbActive(dev)) {
    // dev_warn_once: one report per boot (per machine here)
    dmaContextOf(dev).mm.events.warnOnce('iommu_dma_map_swiotlb:inactive', 'dma-iommu',
      `${dev.name}: DMA bounce buffers are inactive, unable to map unaligned transaction.`, { dev: dev.name, phys, size });
    return DMA_MAPPING_ERROR;
  }
  const g = domain.granule;
  const tlb = swiotlbTblMapSingle(dev, phys, size, g - 1, dir, attrs);
  if (tlb === DMA_MAPPING_ERROR) return DMA_MAPPING_ERROR;
  if (dev.untrusted) {
    const mem = dmaContextOf(dev).mm.mem;
    const pre = iovaOffset(domain, tlb);
    if (pre) mem.fill(tlb - BigInt(pre), pre, 0);
    const endOff = iovaOffset(domain, tlb + BigInt(size));
    if (endOff) mem.fill(tlb + BigInt(size), g - endOff, 0);
  }
  return tlb;
}

/** A (frame, offset) position, reused by one call at a time (the map and unmap paths do not nest). */
interface Pos { frame: number; off: number }

/**
 * __iommu_dma_map(): allocate IOVA for the granule span of [phys, phys+size) and map it (map + sync).
 * Works in granule frame numbers (exact numbers for every 64-bit address): bigint only at the ends.
 * A device whose min_align_mask is wider than the granule is refused (DMA_MAPPING_ERROR) with a
 * WARN, once per boot: the IOVA allocator cannot keep those low bits (drivers/iommu/dma-iommu.c:
 * __iommu_dma_map(), "Unsupported alignment constraint").
 */
export function iommuDmaMapRaw(dev: Device, domain: IommuDomain, phys: bigint, size: number, prot: number, dmaMask: bigint): bigint {
  const g = domain.granule;
  const minAlign = dmaGetMinAlignMask(dev);
  if (minAlign > g - 1) {
    // dev_WARN_ONCE: one report per boot (per machine here)
    dmaContextOf(dev).mm.events.warnOnce('__iommu_dma_map:min_align', 'dma-iommu',
      `${dev.name}: Unsupported alignment constraint (min_align_mask 0x${minAlign.toString(16)} > IOVA granule mask 0x${(g - 1).toString(16)})`,
      { dev: dev.name, minAlignMask: minAlign, granule: g });
    return DMA_MAPPING_ERROR;
  }
  const shift = domain.granuleShift;
  const p: Pos = { frame: 0, off: 0 };
  posFromBig(phys, shift, p, 'phys');
  const granules = nrFramesUp(size + p.off, shift);
  const gfn = iommuDmaAllocIovaPfn(domain, granules, dmaMask, dev);
  if (gfn === 0) return DMA_MAPPING_ERROR;
  // the page-table fast path counts 4 KiB frames; every model format's granule is a multiple of it
  const k = g / 4096;
  const r = iommuMapPfnsSync(domain, gfn * k, p.frame * k, granules * k, prot);
  if (!r.ok) {
    iommuDmaFreeIovaPfn(domain, gfn, granules, null);
    return DMA_MAPPING_ERROR;
  }
  return posToBig(gfn, p.off, shift);
}

/**
 * __iommu_dma_unmap(): unmap the granule span at addr and release its IOVA. Strict domains sync
 * the IOTLB now; lazy (flush-queue) domains queue the IOVA until the next global flush.
 */
export function iommuDmaUnmapRaw(dev: Device, domain: IommuDomain, addr: bigint, size: number): void {
  const g = domain.granule;
  const shift = domain.granuleShift;
  const p: Pos = { frame: 0, off: 0 };
  posFromBig(addr, shift, p);
  const granules = nrFramesUp(size + p.off, shift);
  const span = granules * g;
  const gather = new IommuIotlbGather();
  gather.queued = domain.type === 'dma-fq';
  const k = g / 4096;
  const unmapped = iommuUnmapFastPfns(domain, p.frame * k, granules * k, gather);
  if (unmapped !== span) {
    const start = posToBig(p.frame, 0, shift);
    dmaContextOf(dev).mm.events.warn('dma-iommu', `${dev.name}: unmapped ${unmapped} bytes of ${span} at 0x${start.toString(16)}`,
      { dev: dev.name, addr: start, len: span, unmapped });
  }
  if (!gather.queued) iommuIotlbSync(domain, gather);
  iommuDmaFreeIovaPfn(domain, p.frame, granules, gather);
}

/**
 * iommu_dma_map_phys(): map one physical range through the device's DMA domain. Untrusted devices
 * bounce a granule-unaligned range through swiotlb (MMIO or REQUIRE_COHERENT cannot be bounced:
 * error). Returns the DMA address, or DMA_MAPPING_ERROR (IOVA space exhausted, swiotlb full or not
 * active when the range needs a bounce, map failure).
 */
export function iommuDmaMapPhys(dev: Device, phys: bigint, size: number, dir: DmaDataDirection, attrs: number): bigint {
  checkAddr('phys', phys);
  checkLen('size', size, 1);
  const domain = dmaDomainOf(dev);
  const coherent = dev.dmaCoherent;
  const prot = dmaInfoToProt(dir, coherent, attrs);
  let mapPhys = phys;
  let bounced = false;
  if (devUseSwiotlb(dev, size, dir) && (iovaOffset(domain, phys) !== 0 || size % domain.granule !== 0)) {
    if (attrs & (DMA_ATTR_MMIO | DMA_ATTR_REQUIRE_COHERENT)) return DMA_MAPPING_ERROR;
    mapPhys = iommuDmaMapSwiotlb(dev, phys, size, dir, attrs);
    if (mapPhys === DMA_MAPPING_ERROR) return DMA_MAPPING_ERROR;
    bounced = true;
  }
  if (!coherent && !(attrs & (DMA_ATTR_SKIP_CPU_SYNC | DMA_ATTR_MMIO))) archSyncDmaForDevice(dev, mapPhys, size, dir);
  const iova = iommuDmaMapRaw(dev, domain, mapPhys, size, prot, dmaGetMask(dev));
  if (iova === DMA_MAPPING_ERROR && bounced) swiotlbTblUnmapSingle(dev, mapPhys, size, dir, attrs);
  return iova;
}

/** iommu_dma_unmap_phys(): sync for the CPU, unmap, and release a bounce slot if one was used. */
export function iommuDmaUnmapPhys(dev: Device, addr: bigint, size: number, dir: DmaDataDirection, attrs: number): void {
  checkAddr('addr', addr);
  checkLen('size', size, 1);
  const domain = dmaDomainOf(dev);
  if (attrs & DMA_ATTR_MMIO) {
    iommuDmaUnmapRaw(dev, domain, addr, size);
    return;
  }
  const phys = iommuIovaToPhys(domain, addr);
  if (phys === 0n) {
    dmaContextOf(dev).mm.events.warn('dma-iommu', `${dev.name}: unmap of unmapped IOVA 0x${addr.toString(16)}`,
      { dev: dev.name, addr, len: size });
    return;
  }
  if (!(attrs & DMA_ATTR_SKIP_CPU_SYNC) && !dev.dmaCoherent) archSyncDmaForCpu(dev, phys, size, dir);
  iommuDmaUnmapRaw(dev, domain, addr, size);
  if (isSwiotlbBuffer(dev, phys)) swiotlbTblUnmapSingle(dev, phys, size, dir, attrs);
}

/** iommu_dma_sync_single_for_cpu(): cache maintenance and bounce copy-out for a mapped range. */
export function iommuDmaSyncSingleForCpu(dev: Device, addr: bigint, size: number, dir: DmaDataDirection): void {
  checkAddr('addr', addr);
  checkLen('size', size, 1);
  if (dev.dmaCoherent && !devUseSwiotlb(dev, size, dir)) return;
  const phys = iommuIovaToPhys(dmaDomainOf(dev), addr);
  if (phys === 0n) return;
  if (!dev.dmaCoherent) archSyncDmaForCpu(dev, phys, size, dir);
  if (isSwiotlbBuffer(dev, phys)) swiotlbSyncSingleForCpu(dev, phys, size, dir);
}

/** iommu_dma_sync_single_for_device(): bounce copy-in and cache maintenance for a mapped range. */
export function iommuDmaSyncSingleForDevice(dev: Device, addr: bigint, size: number, dir: DmaDataDirection): void {
  checkAddr('addr', addr);
  checkLen('size', size, 1);
  if (dev.dmaCoherent && !devUseSwiotlb(dev, size, dir)) return;
  const phys = iommuIovaToPhys(dmaDomainOf(dev), addr);
  if (phys === 0n) return;
  if (isSwiotlbBuffer(dev, phys)) swiotlbSyncSingleForDevice(dev, phys, size, dir);
  if (!dev.dmaCoherent) archSyncDmaForDevice(dev, phys, size, dir);
}

/** dma_get_merge_boundary() under dma-iommu: granule - 1 (dma-iommu.c: iommu_dma_get_merge_boundary()). */
export function iommuDmaGetMergeBoundary(dev: Device): bigint {
  return BigInt(dmaDomainOf(dev).granule - 1);
}

/**
 * dma_opt_mapping_size() under dma-iommu: iova_rcache_range() (iommu_dma_opt_mapping_size()), from the
 * CPU page size of dev's machine: 128 KiB with 4 KiB pages, 512 KiB with 16 KiB, 2 MiB with 64 KiB.
 */
export function iommuDmaOptMappingSize(dev: Device): number {
  return iovaRcacheRange(dmaContextOf(dev).mm.pageSize);
}

/**
 * iommu_dma_max_mapping_size(): untrusted devices are limited by swiotlb's largest bounce; others
 * are unlimited. Model deviation: SIZE_MAX is reported as Number.MAX_SAFE_INTEGER.
 */
export function iommuDmaMaxMappingSize(dev: Device): number {
  if (devUseSwiotlb(dev, 0, DMA_BIDIRECTIONAL)) return swiotlbMaxMappingSize(dev);
  return Number.MAX_SAFE_INTEGER;
}

// ---------------------------------------------------------------------------------------------
// Scatterlists (drivers/iommu/dma-iommu.c: iommu_dma_map_sg(), __finalise_sg()). The kernel stashes
// the unaligned parts of each entry in the unused DMA fields and rewrites offset/length in place;
// the model keeps the same numbers in private typed arrays instead, so the CPU side of the table is
// never modified.

const KIND_IOVA = 0; // mapped through the IOVA allocation
const KIND_BUS = 1;

/** iommu_dma_map_sg_swiotlb(): every entry mapped on its own through iommu_dma_map_phys, no merging. */
function iommuDmaMapSgSwiotlb(dev: Device, sgt: SgTable, dir: DmaDataDirection, attrs: number): Result<number> {
  const n = sgt.origNents;
  const pageSize = dmaContextOf(dev).mm.pageSize;
  for (let i = 0; i < n; i++) {
    const len = sgt.lengthAt(i);
    const addr = iommuDmaMapPhys(dev, sgt.physAt(i, pageSize), len, dir, attrs);
    if (addr === DMA_MAPPING_ERROR) {
      for (let j = 0; j < i; j++) iommuDmaUnmapPhys(dev, sgt.dmaAddressAt(j), sgt.dmaLengthAt(j), dir, attrs | DMA_ATTR_SKIP_CPU_SYNC);
      for (let j = 0; j < n; j++) sgt.setDma(j, DMA_MAPPING_ERROR, 0);
      return err('EIO', `swiotlb sg mapping failed at entry ${i}`);
    }
    sgt.setDma(i, addr, len);
  }
  sgt.setDmaFlags(0, sgt.dmaFlagsAt(0) | SG_DMA_SWIOTLB);
  return ok(n);
}

/**
 * iommu_dma_map_sg(): lays every entry out in ONE IOVA allocation (segment-boundary padding included),
 * maps it with one sync, then writes the DMA segments, concatenating entries that meet at granule
 * boundaries (__finalise_sg). P2P entries are classified per provider: bus-address entries get their
 * bus address and no IOVA; through-host-bridge entries are mapped like memory; unsupported P2P fails.
 * Each entry's memory type and provider come from the memory map (the region holding it), not from
 * the flags recorded in the table. Returns the number of DMA segments (sgt.nents is set by the
 * caller, dmaMapSgtable). Errnos: EINVAL (an entry in a hole or crossing from one memory region into
 * another), EREMOTEIO (P2P not supported between provider and device), ENOMEM (no IOVA space),
 * EINVAL (the IOMMU refused the mapping, or mapped less than the IOVA length: see mapSgPieces), EIO
 * (swiotlb path failure). Nothing stays mapped on failure, except in that short-map case, where the
 * kernel frees the IOVA and leaves the mapped runs in the page table, as the model does.
 */
export function iommuDmaMapSg(dev: Device, sgt: SgTable, dir: DmaDataDirection, attrs: number): Result<number> {
  const ctx = dmaContextOf(dev);
  const domain = dmaDomainOf(dev);
  const n = sgt.origNents;
  if (devUseSwiotlb(dev, sgt.totalLen, dir)) return iommuDmaMapSgSwiotlb(dev, sgt, dir, attrs);

  const pageSize = ctx.mm.pageSize;
  const g = domain.granule;
  const ent = readSgEntries(sgt, pageSize, g, domain.granuleShift);
  // each entry's memory type and provider from the memory map (page -> pgmap -> provider), not from
  // the flags recorded in the table
  const cl = new DmaRangeClassifier(dev);
  const kinds = new Int8Array(n);
  const busOf: bigint[] = [];
  for (let i = 0; i < n; i++) {
    const k = cl.classifyPos(ent.frame[i], ent.frameOff[i], ent.len[i]);
    if (k === MEM_HOLE || k === MEM_CROSSES) return cl.error(k, `entry ${i}`, entPhys(ent, i), ent.len[i]);
    kinds[i] = k;
    if (k >= 0) ent.flags[i] = cl.flags;
    if (k === DMA_RANGE_BUS) busOf[i] = cl.busAddr;
  }
  const coherent = dev.dmaCoherent;
  if (!coherent && !(attrs & DMA_ATTR_SKIP_CPU_SYNC)) {
    // iommu_dma_sync_sg_for_device(): every entry's clean issued, one wait
    for (let i = 0; i < n; i++) archSyncDmaForDevice(dev, entPhys(ent, i), ent.len[i], dir, false);
    archSyncDmaFlush(dev);
  }
  const prot = dmaInfoToProt(dir, coherent, attrs);
  const segMask = dmaGetSegBoundary(dev) & U64_MASK;
  // The segment size (mask + 1, a power of two) as a number when it is at most 2^53; 0 above, where
  // no padding can ever apply (the pad to the next boundary exceeds any entry: sizes stay below 2^53).
  const segSize = segMask <= MAX_SAFE_BIG ? Number(segMask) + 1 : 0;

  // Layout pass.
  const kind = new Uint8Array(n);
  const sIovaOff = ent.off;
  const sIovaLen = new Float64Array(n);
  const busAddr: bigint[] = [];
  let iovaLen = 0;
  let prev = -1;
  for (let i = 0; i < n; i++) {
    const k = kinds[i];
    if (k === DMA_RANGE_BUS) {
      kind[i] = KIND_BUS;
      busAddr[i] = busOf[i];
      continue;
    }
    if (k === DMA_RANGE_UNSUPPORTED) {
      return err('EREMOTEIO', `entry ${i}: P2P between its provider and ${dev.name} is not supported`);
    }
    kind[i] = KIND_IOVA;
    const off = sIovaOff[i];
    const sLen = Math.ceil((ent.len[i] + off) / g) * g;
    // Pad the previous entry so this one starts on a segment boundary when it would cross one:
    // pad = (segMask - iovaLen + 1) & segMask, the bytes up to the next boundary (none without one)
    let pad = 0;
    if (segSize !== 0) {
      const r = iovaLen - Math.floor(iovaLen / segSize) * segSize;
      if (r !== 0) pad = segSize - r;
    }
    sIovaLen[i] = sLen;
    if (pad !== 0 && pad < sLen - 1 && prev >= 0) {
      sIovaLen[prev] += pad;
      iovaLen += pad;
    }
    iovaLen += sLen;
    prev = i;
  }

  let iova = 0n;
  if (iovaLen > 0) {
    if (iovaLen > Number.MAX_SAFE_INTEGER) return err('EINVAL', 'scatterlist too large');
    const total = iovaLen;
    iova = iommuDmaAllocIova(domain, total, dmaGetMask(dev), dev);
    if (iova === 0n) return err('ENOMEM', `no IOVA space for ${total} bytes`);
    const r = mapSgPieces(domain, iova, ent, kind, sIovaLen, prot);
    if (!r.ok) {
      iommuDmaFreeIova(domain, iova, total, null);
      return err(r.errno === 'ENOMEM' ? 'ENOMEM' : 'EINVAL', r.message);
    }
    if (r.value < total) {
      // iommu_dma_map_sg(): ret < iova_len frees the IOVA only; what was mapped stays in the table
      iommuDmaFreeIova(domain, iova, total, null);
      return err('EINVAL', `iommu_map_sg mapped ${r.value} of ${total} bytes (a run ends where the last, bus-address, entry starts)`);
    }
  }
  return ok(finaliseSg(dev, sgt, ent, kind, sIovaOff, sIovaLen, busAddr, iova, segMask));
}

/**
 * The CPU side of a table's entries in columns: start address as a 4 KiB frame and the offset in it
 * (base/frame-offset.ts, shift 12: exact over all 64 bits), length, offset inside the IOVA granule
 * (iova_offset(sg->offset)) and the range flags of the memory (filled by iommuDmaMapSg from the
 * memory map).
 */
export interface SgEntries {
  readonly frame: Float64Array;
  readonly frameOff: Float64Array;
  readonly len: Float64Array;
  readonly off: Float64Array;
  readonly flags: Uint32Array;
}

function entPhys(ent: SgEntries, i: number): bigint {
  return posToBig(ent.frame[i], ent.frameOff[i], 12);
}

/**
 * Reads every entry once: with one cursor walk when the addresses are exact numbers, the table's
 * page size is the machine's and a multiple of the granule, and no entry is empty (the walk then
 * yields exactly one range per entry); otherwise entry by entry with the table's accessors.
 */
function readSgEntries(sgt: SgTable, pageSize: number, g: number, gLg2: number): SgEntries {
  const n = sgt.origNents;
  const frame = new Float64Array(n);
  const frameOff = new Float64Array(n);
  const len = new Float64Array(n);
  const off = new Float64Array(n);
  const flags = new Uint32Array(n);
  const ent = { frame, frameOff, len, off, flags };
  if (sgt.addrFitsNumber && sgt.pageSize === pageSize && pageSize % g === 0) {
    const c = sgt.cursor();
    let i = 0;
    while (!c.done && i < n) {
      const a = c.addrNum;
      const f = Math.floor(a * INV_4K);
      frame[i] = f;
      frameOff[i] = a - f * 4096;
      len[i] = c.len;
      off[i] = posOffsetIn(f, frameOff[i], 12, gLg2);
      i++;
      c.next();
    }
    if (i === n && c.done) return ent;
  }
  const pos = new FramePos();
  for (let i = 0; i < n; i++) {
    posFromBig(sgt.physAt(i, pageSize), 12, pos, `entry ${i}`);
    frame[i] = pos.frame;
    frameOff[i] = pos.off;
    len[i] = sgt.lengthAt(i);
    off[i] = posOffsetIn(pos.frame, pos.off, 12, gLg2);
  }
  return ent;
}

/**
 * @internal iommu_map_sg() (drivers/iommu/iommu.c) over the laid-out pieces: map them back to back
 * from iova, joining physically contiguous ones into one iommu_map call; one sync. Returns the
 * bytes mapped. The IOVA is granule-aligned and every piece's IOVA length a multiple of the
 * granule, so everything is in 4 KiB frames.
 * As in the kernel's loop, every entry, a bus-address one included, is first tested against the
 * end of the pending run (a bus-address entry's own physical address, its BAR page) and ends the
 * run when it does not continue it, and only then is a bus-address entry skipped: a bus-address
 * entry between two physically adjacent pieces splits them into two maps. The loop runs once
 * more than there are entries, re-reading the last one, which flushes the final run; when the
 * last entry is a bus-address entry whose address continues the run, the run is never mapped and
 * fewer bytes than the IOVA length come back (iommuDmaMapSg then fails with EINVAL).
 */
export function mapSgPieces(domain: IommuDomain, iova: bigint, ent: SgEntries, kind: Uint8Array, sIovaLen: Float64Array,
  prot: number): Result<number> {
  const n = kind.length;
  const pos = new FramePos();
  posFromBig(iova, 12, pos, 'iova');
  const iovaFrame = pos.frame;
  const gLg2 = domain.granuleShift;
  let mappedPages = 0;
  let runFrame = 0;
  let runPages = 0;
  for (let step = 0; step <= n && n > 0; step++) {
    const i = step < n ? step : n - 1;
    const bus = kind[i] === KIND_BUS;
    // sg_phys(): a bus-address entry keeps its own address; a mapped piece starts at its entry's
    // start rounded down to the granule (iommu_dma_map_sg moved sg->offset there)
    let frame: number;
    let off: number;
    if (bus) {
      frame = ent.frame[i];
      off = ent.frameOff[i];
    } else {
      posAlignDown(ent.frame[i], ent.frameOff[i], 12, gLg2, pos);
      frame = pos.frame;
      off = 0;
    }
    if (runPages !== 0 && (off !== 0 || runFrame + runPages !== frame)) {
      const r = iommuMapPfns(domain, iovaFrame + mappedPages, runFrame, runPages, prot);
      if (!r.ok) return undo(r);
      mappedPages += runPages;
      runPages = 0;
    }
    if (bus) continue;
    const pages = sIovaLen[i] * INV_4K;
    if (runPages !== 0) {
      runPages += pages;
    } else {
      runFrame = frame;
      runPages = pages;
    }
  }
  const s = iommuSyncMap(domain, iova, mappedPages * 4096);
  if (!s.ok) return undo(s);
  return ok(mappedPages * 4096);

  function undo(e: Result<unknown>): Result<number> {
    if (mappedPages) {
      const gather = new IommuIotlbGather();
      iommuUnmapFast(domain, iova, mappedPages * 4096, gather);
      iommuIotlbSync(domain, gather);
    }
    return e as Result<number>;
  }
}

/**
 * __finalise_sg(): write the output DMA segments; returns their count. The running DMA address is
 * a 4 KiB frame (the IOVA and every piece's IOVA length are granule multiples); the boundary test
 * `dma_addr & seg_mask` is posTestMask on it.
 */
function finaliseSg(dev: Device, sgt: SgTable, ent: SgEntries, kind: Uint8Array, sIovaOff: Float64Array, sIovaLen: Float64Array,
  busAddr: bigint[], iova: bigint, segMask: bigint): number {
  const n = kind.length;
  const maxLen = dmaGetMaxSegSize(dev);
  const mask = new Mask64(segMask, 'seg_mask');
  const pos = new FramePos();
  posFromBig(iova, 12, pos, 'iova');
  let dmaFrame = pos.frame;
  let cur = -1;
  let curLen = 0;
  const segAddr: bigint[] = [];
  const segLen: number[] = [];
  const segBus: boolean[] = [];
  for (let i = 0; i < n; i++) {
    const sLength = ent.len[i];
    if (kind[i] === KIND_BUS) {
      cur++;
      segAddr[cur] = busAddr[i];
      segLen[cur] = sLength;
      segBus[cur] = true;
      curLen = 0;
      continue;
    }
    const off = sIovaOff[i];
    // (dma_addr & seg_mask) != 0: not at a segment boundary (with no boundary: not at address 0)
    const inside = posTestMask(dmaFrame, 0, 12, mask.hi, mask.lo);
    // max_len - cur_len is unsigned int arithmetic: once an entry longer than max_len has started
    // the output segment, the difference wraps and every following IOVA-contiguous entry joins it
    // (up to a segment boundary), as the kernel does; cur_len itself wraps at 4 GiB
    if (curLen && off === 0 && inside && ((maxLen - curLen) >>> 0) >= sLength) {
      curLen = (curLen + sLength) >>> 0;
    } else {
      cur++;
      curLen = sLength;
      posAdd(dmaFrame, 0, 12, off, pos);
      segAddr[cur] = posToBig(pos.frame, pos.off, 12);
      segBus[cur] = false;
    }
    segLen[cur] = curLen;
    dmaFrame += sIovaLen[i] * INV_4K;
    if (sLength + off < sIovaLen[i]) curLen = 0;
  }
  const count = cur + 1;
  for (let i = 0; i < n; i++) {
    if (i < count) {
      sgt.setDma(i, segAddr[i], segLen[i]);
      sgt.setDmaFlags(i, segBus[i] ? SG_DMA_BUS_ADDRESS : 0);
    } else {
      sgt.setDma(i, DMA_MAPPING_ERROR, 0);
      sgt.setDmaFlags(i, 0);
    }
  }
  return count;
}

/**
 * iommu_dma_unmap_sg(): undo iommu_dma_map_sg. The IOVA segments live in one allocation, so the
 * span from the first to the end of the last is unmapped at once; bus-address segments need nothing.
 */
export function iommuDmaUnmapSg(dev: Device, sgt: SgTable, dir: DmaDataDirection, attrs: number): void {
  const domain = dmaDomainOf(dev);
  const n = sgt.origNents;
  if (n > 0 && (sgt.dmaFlagsAt(0) & SG_DMA_SWIOTLB)) {
    for (let i = 0; i < n; i++) {
      if (sgt.dmaLengthAt(i) === 0) break;
      iommuDmaUnmapPhys(dev, sgt.dmaAddressAt(i), sgt.dmaLengthAt(i), dir, attrs);
    }
    sgt.setDmaFlags(0, sgt.dmaFlagsAt(0) & ~SG_DMA_SWIOTLB);
    return;
  }
  if (!(attrs & DMA_ATTR_SKIP_CPU_SYNC) && !dev.dmaCoherent) {
    const pageSize = dmaContextOf(dev).mm.pageSize;
    // iommu_dma_sync_sg_for_cpu(): every entry's invalidate issued, one wait
    for (let i = 0; i < n; i++) archSyncDmaForCpu(dev, sgt.physAt(i, pageSize), sgt.lengthAt(i), dir, false);
    archSyncDmaFlush(dev);
  }
  let start = -1n;
  let end = 0n;
  for (let i = 0; i < n; i++) {
    const flags = sgt.dmaFlagsAt(i);
    if (flags & SG_DMA_BUS_ADDRESS) {
      sgt.setDmaFlags(i, flags & ~SG_DMA_BUS_ADDRESS);
      continue;
    }
    const len = sgt.dmaLengthAt(i);
    if (len === 0) break;
    const a = sgt.dmaAddressAt(i);
    if (start < 0n) start = a;
    end = a + BigInt(len);
  }
  if (start >= 0n && end > start) iommuDmaUnmapRaw(dev, domain, start, Number(end - start));
}
