// Models: drivers/iommu/dma-iommu.c (Linux 6.18/6.19): iommu_dma_map_phys / iommu_dma_unmap_phys,
// iommu_dma_map_sg / __finalise_sg / __invalidate_sg / iommu_dma_unmap_sg, the swiotlb path for
// untrusted devices, sync_single_*, get_merge_boundary, opt/max mapping size (reference 3.5, 7.2, 7.3, 9.2).
// The helpers at the top are shared with iova-state.ts (the two-step API lives in the same kernel file).

import {
  alignUp, checkAddr, checkLen, err, ok, type Result,
} from '../base/index.ts';
import {
  IOMMU_CACHE, IOMMU_MMIO, IOMMU_PRIV, IOMMU_READ, IOMMU_WRITE, IommuIotlbGather,
  iommuDmaAllocIova, iommuDmaFreeIova, iommuGetDmaDomain, iommuIotlbSync, iommuIovaToPhys, iommuMap,
  iommuMapNosync, iommuSyncMap, iommuUnmapFast, iovaRcacheRange, type IommuDomain,
} from '../iommu/index.ts';
import type { Device } from '../pci/index.ts';
import {
  PCI_P2PDMA_MAP_BUS_ADDR, PCI_P2PDMA_MAP_NOT_SUPPORTED, PciP2pdmaMapState, pciP2pdmaBusAddrMap,
  pciP2pdmaState,
} from '../pci/index.ts';
import { SG_DMA_BUS_ADDRESS, SG_DMA_SWIOTLB, type SgTable } from '../phyr/index.ts';
import {
  DMA_ATTR_MMIO, DMA_ATTR_PRIVILEGED, DMA_ATTR_REQUIRE_COHERENT, DMA_ATTR_SKIP_CPU_SYNC,
  DMA_BIDIRECTIONAL, DMA_FROM_DEVICE, DMA_MAPPING_ERROR, DMA_TO_DEVICE, type DmaDataDirection,
} from './constants.ts';
import { dmaContextOf } from './context.ts';
import { archSyncDmaForCpu, archSyncDmaForDevice } from './cache.ts';
import { dmaGetMask, dmaGetMaxSegSize, dmaGetSegBoundary } from './mask.ts';
import {
  isSwiotlbBuffer, swiotlbMaxMappingSize, swiotlbSyncSingleForCpu, swiotlbSyncSingleForDevice,
  swiotlbTblMapSingle, swiotlbTblUnmapSingle,
} from './swiotlb.ts';

const U64_MASK = (1n << 64n) - 1n;

/** The DMA-API domain of a device that uses dma-iommu; a BUG when called for one that does not. */
export function dmaDomainOf(dev: Device): IommuDomain {
  const d = iommuGetDmaDomain(dev);
  if (!d || !d.iovad) {
    return dmaContextOf(dev).mm.events.bug('dma-iommu', `${dev.name}: dma-iommu call without a DMA domain`);
  }
  return d;
}

/** dma_info_to_prot(): IOMMU prot bits for a direction, coherence and attributes (reference 2.3). */
export function dmaInfoToProt(dir: DmaDataDirection, coherent: boolean, attrs: number): number {
  let prot = coherent ? IOMMU_CACHE : 0;
  if (attrs & DMA_ATTR_PRIVILEGED) prot |= IOMMU_PRIV;
  if (attrs & DMA_ATTR_MMIO) prot |= IOMMU_MMIO;
  switch (dir) {
    case DMA_BIDIRECTIONAL: return prot | IOMMU_READ | IOMMU_WRITE;
    case DMA_TO_DEVICE: return prot | IOMMU_READ;
    case DMA_FROM_DEVICE: return prot | IOMMU_WRITE;
    default: return 0;
  }
}

/**
 * dev_use_swiotlb(): dma-iommu bounces granule-unaligned pieces for untrusted devices (reference 9.2).
 * Model deviation: dma_kmalloc_needs_bounce() is always false: the model has no kmalloc caches
 * (it matters only for non-coherent arm64 with CONFIG_DMA_BOUNCE_UNALIGNED_KMALLOC).
 */
export function devUseSwiotlb(dev: Device, _size: number, _dir: DmaDataDirection): boolean {
  return dev.untrusted && dmaContextOf(dev).swiotlb !== null;
}

/** iova_offset(): the offset of an address inside its IOVA granule. */
export function iovaOffset(domain: IommuDomain, addr: bigint): number {
  const g = domain.granule;
  return Number(addr & BigInt(g - 1));
}

/**
 * iommu_dma_map_swiotlb(): bounce [phys, phys+size) into a swiotlb slot aligned to the IOVA granule.
 * For untrusted devices the rest of the bounce granule is zeroed, so the device cannot see stale
 * data through the granule the IOMMU exposes. Returns the bounce address or DMA_MAPPING_ERROR.
 */
export function iommuDmaMapSwiotlb(dev: Device, phys: bigint, size: number, dir: DmaDataDirection, attrs: number): bigint {
  const domain = dmaDomainOf(dev);
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

/** __iommu_dma_map(): allocate IOVA for the granule span of [phys, phys+size) and map it (map + sync). */
function iommuDmaMapRaw(dev: Device, domain: IommuDomain, phys: bigint, size: number, prot: number, dmaMask: bigint): bigint {
  const off = iovaOffset(domain, phys);
  const span = alignUp(size + off, domain.granule);
  const iova = iommuDmaAllocIova(domain, span, dmaMask, dev);
  if (iova === 0n) return DMA_MAPPING_ERROR;
  const r = iommuMap(domain, iova, phys - BigInt(off), span, prot);
  if (!r.ok) {
    iommuDmaFreeIova(domain, iova, span, null);
    return DMA_MAPPING_ERROR;
  }
  return iova + BigInt(off);
}

/**
 * __iommu_dma_unmap(): unmap the granule span at addr and release its IOVA. Strict domains sync
 * the IOTLB now; lazy (flush-queue) domains queue the IOVA until the next global flush.
 */
export function iommuDmaUnmapRaw(dev: Device, domain: IommuDomain, addr: bigint, size: number): void {
  const off = iovaOffset(domain, addr);
  const start = addr - BigInt(off);
  const span = alignUp(size + off, domain.granule);
  const gather = new IommuIotlbGather();
  gather.queued = domain.type === 'dma-fq';
  const unmapped = iommuUnmapFast(domain, start, span, gather);
  if (unmapped !== span) {
    dmaContextOf(dev).mm.events.warn('dma-iommu', `${dev.name}: unmapped ${unmapped} bytes of ${span} at 0x${start.toString(16)}`,
      { dev: dev.name, addr: start, len: span, unmapped });
  }
  if (!gather.queued) iommuIotlbSync(domain, gather);
  iommuDmaFreeIova(domain, start, span, gather);
}

/**
 * iommu_dma_map_phys(): map one physical range through the device's DMA domain. Untrusted devices
 * bounce a granule-unaligned range through swiotlb (MMIO or REQUIRE_COHERENT cannot be bounced:
 * error). Returns the DMA address, or DMA_MAPPING_ERROR (IOVA space exhausted, swiotlb full, map failure).
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

/** dma_get_merge_boundary() under dma-iommu: granule - 1 (reference 7.2). */
export function iommuDmaGetMergeBoundary(dev: Device): bigint {
  return BigInt(dmaDomainOf(dev).granule - 1);
}

/** dma_opt_mapping_size() under dma-iommu: iova_rcache_range(), 128 KiB (reference 7.2). */
export function iommuDmaOptMappingSize(): number {
  return iovaRcacheRange();
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
// Scatterlists (reference 7.3). The kernel stashes the unaligned parts of each entry in the unused
// DMA fields and rewrites offset/length in place; the model keeps the same numbers in private
// typed arrays instead, so the CPU side of the table is never modified.

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
 * Returns the number of DMA segments (sgt.nents is set by the caller, dmaMapSgtable).
 * Errnos: EREMOTEIO (P2P not supported between provider and device), ENOMEM (no IOVA space),
 * EINVAL (the IOMMU refused the mapping), EIO (swiotlb path failure). Nothing stays mapped on failure.
 */
export function iommuDmaMapSg(dev: Device, sgt: SgTable, dir: DmaDataDirection, attrs: number): Result<number> {
  const ctx = dmaContextOf(dev);
  const domain = dmaDomainOf(dev);
  const n = sgt.origNents;
  if (devUseSwiotlb(dev, sgt.totalLen, dir)) return iommuDmaMapSgSwiotlb(dev, sgt, dir, attrs);

  const pageSize = ctx.mm.pageSize;
  const g = domain.granule;
  const gmask = g - 1;
  const coherent = dev.dmaCoherent;
  if (!coherent && !(attrs & DMA_ATTR_SKIP_CPU_SYNC)) {
    for (let i = 0; i < n; i++) archSyncDmaForDevice(dev, sgt.physAt(i, pageSize), sgt.lengthAt(i), dir);
  }
  const prot = dmaInfoToProt(dir, coherent, attrs);
  const segMask = dmaGetSegBoundary(dev) & U64_MASK;

  // Layout pass.
  const kind = new Uint8Array(n);
  const sIovaOff = new Float64Array(n);
  const sIovaLen = new Float64Array(n);
  const busAddr: bigint[] = [];
  const p2p = new PciP2pdmaMapState();
  let iovaLen = 0n;
  let prev = -1;
  for (let i = 0; i < n; i++) {
    const type = pciP2pdmaState(p2p, dev, sgt.flagsAt(i));
    if (type === PCI_P2PDMA_MAP_BUS_ADDR) {
      kind[i] = KIND_BUS;
      busAddr[i] = pciP2pdmaBusAddrMap(p2p.mem!, sgt.physAt(i, pageSize));
      continue;
    }
    if (type === PCI_P2PDMA_MAP_NOT_SUPPORTED) {
      return err('EREMOTEIO', `entry ${i}: P2P between its provider and ${dev.name} is not supported`);
    }
    kind[i] = KIND_IOVA;
    const off = sgt.offsetAt(i) & gmask;
    const sLen = alignUp(sgt.lengthAt(i) + off, g);
    // Pad the previous entry so this one starts on a segment boundary when it would cross one.
    const pad = (segMask - iovaLen + 1n) & segMask;
    sIovaOff[i] = off;
    sIovaLen[i] = sLen;
    if (pad !== 0n && pad < BigInt(sLen - 1) && prev >= 0) {
      sIovaLen[prev] += Number(pad);
      iovaLen += pad;
    }
    iovaLen += BigInt(sLen);
    prev = i;
  }

  let iova = 0n;
  if (iovaLen > 0n) {
    if (iovaLen > BigInt(Number.MAX_SAFE_INTEGER)) return err('EINVAL', 'scatterlist too large');
    const total = Number(iovaLen);
    iova = iommuDmaAllocIova(domain, total, dmaGetMask(dev), dev);
    if (iova === 0n) return err('ENOMEM', `no IOVA space for ${total} bytes`);
    const r = mapSgPieces(domain, iova, sgt, kind, sIovaOff, sIovaLen, pageSize, prot);
    if (!r.ok) {
      iommuDmaFreeIova(domain, iova, total, null);
      return err(r.errno === 'ENOMEM' ? 'ENOMEM' : 'EINVAL', r.message);
    }
  }
  return ok(finaliseSg(dev, sgt, kind, sIovaOff, sIovaLen, busAddr, iova, segMask));
}

/** iommu_map_sg(): map the aligned pieces back to back, joining physically contiguous ones; one sync. */
function mapSgPieces(domain: IommuDomain, iova: bigint, sgt: SgTable, kind: Uint8Array, sIovaOff: Float64Array,
  sIovaLen: Float64Array, pageSize: number, prot: number): Result<void> {
  const n = kind.length;
  let mapped = 0;
  let runPhys = 0n;
  let runLen = 0;
  let runIova = iova;
  const flush = (): Result<void> => {
    if (runLen === 0) return ok();
    const r = iommuMapNosync(domain, runIova, runPhys, runLen, prot);
    if (!r.ok) return r;
    mapped += runLen;
    return ok();
  };
  for (let i = 0; i < n; i++) {
    if (kind[i] === KIND_BUS) continue;
    const phys = sgt.physAt(i, pageSize) - BigInt(sIovaOff[i]);
    const len = sIovaLen[i];
    if (runLen && runPhys + BigInt(runLen) === phys) {
      runLen += len;
      continue;
    }
    const r = flush();
    if (!r.ok) return undo(r);
    runIova = iova + BigInt(mapped);
    runPhys = phys;
    runLen = len;
  }
  const r = flush();
  if (!r.ok) return undo(r);
  const s = iommuSyncMap(domain, iova, mapped);
  if (!s.ok) return undo(s);
  return ok();

  function undo(e: Result<void>): Result<void> {
    if (mapped) {
      const gather = new IommuIotlbGather();
      iommuUnmapFast(domain, iova, mapped, gather);
      iommuIotlbSync(domain, gather);
    }
    return e;
  }
}

/** __finalise_sg(): write the output DMA segments; returns their count. */
function finaliseSg(dev: Device, sgt: SgTable, kind: Uint8Array, sIovaOff: Float64Array, sIovaLen: Float64Array,
  busAddr: bigint[], iova: bigint, segMask: bigint): number {
  const n = kind.length;
  const maxLen = dmaGetMaxSegSize(dev);
  let dmaAddr = iova;
  let cur = -1;
  let curAddr = 0n;
  let curLen = 0;
  const segAddr: bigint[] = [];
  const segLen: number[] = [];
  const segBus: boolean[] = [];
  for (let i = 0; i < n; i++) {
    const sLength = sgt.lengthAt(i);
    if (kind[i] === KIND_BUS) {
      cur++;
      segAddr[cur] = busAddr[i];
      segLen[cur] = sLength;
      segBus[cur] = true;
      curLen = 0;
      continue;
    }
    const off = sIovaOff[i];
    if (curLen && off === 0 && (dmaAddr & segMask) !== 0n && maxLen - curLen >= sLength) {
      curLen += sLength;
    } else {
      cur++;
      curAddr = dmaAddr + BigInt(off);
      curLen = sLength;
      segAddr[cur] = curAddr;
      segBus[cur] = false;
    }
    segLen[cur] = curLen;
    dmaAddr += BigInt(sIovaLen[i]);
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
    for (let i = 0; i < n; i++) archSyncDmaForCpu(dev, sgt.physAt(i, pageSize), sgt.lengthAt(i), dir);
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
