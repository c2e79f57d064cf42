// Models: kernel/dma/direct.{c,h} (Linux 7.1): dma_direct_map_phys with its swiotlb fallback, the
// unmap/sync paths and dma_direct_map_sg with P2P classification (the address translations of
// include/linux/dma-direct.h are in direct-addr.ts).
// Model deviation: no kmalloc-alignment bouncing (x86-64 does not enable CONFIG_DMA_BOUNCE_UNALIGNED_KMALLOC).

import type { Device } from '../pci/index.ts';
import type { SgTable } from '../phyr/index.ts';
import { SG_DMA_BUS_ADDRESS } from '../phyr/index.ts';
import type { MachineMm, MemRegion } from '../mm/index.ts';
import {
  PCI_P2PDMA_MAP_BUS_ADDR, PCI_P2PDMA_MAP_NONE, PCI_P2PDMA_MAP_THRU_HOST_BRIDGE, PciP2pdmaMapState,
  pciP2pdmaBusAddrMap, pciP2pdmaState,
} from '../pci/index.ts';
import { SlotKey, err, ok, type Result } from '../base/internal.ts';
import { dmaContextOf } from './context.ts';
import {
  DMA_ATTR_MMIO, DMA_ATTR_REQUIRE_COHERENT, DMA_ATTR_SKIP_CPU_SYNC, DMA_MAPPING_ERROR, SIZE_MAX,
} from './constants.ts';
import {
  isSwiotlbActive, isSwiotlbBuffer, isSwiotlbForceBounce, swiotlbMap, swiotlbMaxMappingSize,
  swiotlbSyncSingleForCpu, swiotlbSyncSingleForDevice, swiotlbTblUnmapSingle,
} from './swiotlb.ts';
import { archSyncDmaForCpu, archSyncDmaForDevice } from './cache.ts';
import { dmaAddressingLimited } from './mask.ts';
import { dmaCapable, dmaToPhys, physToDma } from './direct-addr.ts';

function overflow(dev: Device, addr: bigint, size: number): bigint {
  dmaContextOf(dev).mm.events.warn('dma-direct', `${dev.name}: overflow 0x${addr.toString(16)}+${size} of DMA mask ${(dev.dmaMask ?? 0n).toString(16)} bus limit ${dev.busDmaLimit.toString(16)}`);
  return DMA_MAPPING_ERROR;
}

/**
 * dma_direct_map_phys: force-bounce first (CoCo guests); MMIO goes untranslated and is never bounced;
 * memory beyond the mask bounces through swiotlb when a pool is active, else overflows (WARN,
 * DMA_MAPPING_ERROR). Non-coherent devices get cache maintenance unless SKIP_CPU_SYNC or MMIO.
 */
export function dmaDirectMapPhys(dev: Device, phys: bigint, size: number, dir: number, attrs: number): bigint {
  if (isSwiotlbForceBounce(dev)) {
    if (attrs & (DMA_ATTR_MMIO | DMA_ATTR_REQUIRE_COHERENT)) return DMA_MAPPING_ERROR;
    return swiotlbMap(dev, phys, size, dir, attrs);
  }
  let dmaAddr: bigint;
  if (attrs & DMA_ATTR_MMIO) {
    dmaAddr = phys;
    if (!dmaCapable(dev, dmaAddr, size, false)) return overflow(dev, dmaAddr, size);
  } else {
    dmaAddr = physToDma(dev, phys);
    if (!dmaCapable(dev, dmaAddr, size, true)) {
      if (isSwiotlbActive(dev) && !(attrs & DMA_ATTR_REQUIRE_COHERENT)) return swiotlbMap(dev, phys, size, dir, attrs);
      return overflow(dev, dmaAddr, size);
    }
  }
  if (!dev.dmaCoherent && !(attrs & (DMA_ATTR_SKIP_CPU_SYNC | DMA_ATTR_MMIO))) archSyncDmaForDevice(dev, phys, size, dir);
  return dmaAddr;
}

/** dma_direct_sync_single_for_device: copy into the bounce buffer if any, then cache maintenance. */
export function dmaDirectSyncSingleForDevice(dev: Device, addr: bigint, size: number, dir: number): void {
  const phys = dmaToPhys(dev, addr);
  if (isSwiotlbBuffer(dev, phys)) swiotlbSyncSingleForDevice(dev, phys, size, dir);
  if (!dev.dmaCoherent) archSyncDmaForDevice(dev, phys, size, dir);
}

/** dma_direct_sync_single_for_cpu: cache maintenance, then copy out of the bounce buffer if any. */
export function dmaDirectSyncSingleForCpu(dev: Device, addr: bigint, size: number, dir: number): void {
  const phys = dmaToPhys(dev, addr);
  if (!dev.dmaCoherent) archSyncDmaForCpu(dev, phys, size, dir);
  if (isSwiotlbBuffer(dev, phys)) swiotlbSyncSingleForCpu(dev, phys, size, dir);
}

/**
 * dma_direct_unmap_phys: nothing for MMIO; otherwise sync for the CPU (unless SKIP_CPU_SYNC, which
 * also skips the bounce copy-out) and free the bounce slots if it was bounced.
 */
export function dmaDirectUnmapPhys(dev: Device, addr: bigint, size: number, dir: number, attrs: number): void {
  if (attrs & (DMA_ATTR_MMIO | DMA_ATTR_REQUIRE_COHERENT)) return;
  const phys = dmaToPhys(dev, addr);
  if (!(attrs & DMA_ATTR_SKIP_CPU_SYNC)) dmaDirectSyncSingleForCpu(dev, addr, size, dir);
  if (isSwiotlbBuffer(dev, phys)) swiotlbTblUnmapSingle(dev, phys, size, dir, attrs | DMA_ATTR_SKIP_CPU_SYNC);
}

/** dma_direct_need_sync: non-coherent, or this address is a bounce buffer. */
export function dmaDirectNeedSync(dev: Device, addr: bigint): boolean {
  return !dev.dmaCoherent || isSwiotlbBuffer(dev, dmaToPhys(dev, addr));
}

/** dma_direct_max_mapping_size: swiotlb's limit when it may be used, else unlimited (SIZE_MAX). */
export function dmaDirectMaxMappingSize(dev: Device): number {
  if (isSwiotlbActive(dev) && (dmaAddressingLimited(dev) || isSwiotlbForceBounce(dev))) return swiotlbMaxMappingSize(dev);
  return SIZE_MAX;
}

/** memTypeLookup().index result: the range starts in a hole of the physical memory map. */
export const MEM_HOLE = -1;
/** memTypeLookup().index result: the range starts in a region and runs past its end. */
export const MEM_CROSSES = -2;

/**
 * What page -> pgmap -> provider tells the kernel (include/linux/mmzone.h: page_pgmap();
 * include/linux/memremap.h: is_pci_p2pdma_page(); include/linux/pci-p2pdma.h: pci_p2pdma_state(), as
 * blk_dma_map_iter_start() and iommu_dma_map_sg() call it), looked up from the machine's memory map
 * rather than trusted from a caller's range
 * flags. The regions are few and sorted: their bounds are kept as numbers (exact: the map fits in
 * 52 bits) and the region of the last lookup is tried first, so consecutive ranges in one region
 * cost two comparisons. The region list of a machine never changes; its providers may (rangeFlags
 * is read at each lookup).
 * Model deviation: a range in a hole (no struct page, no region: phys_to_page would be garbage in
 * the kernel) or running from one region into another (the kernel never builds such a segment:
 * pages of different pgmaps do not merge) is refused with EINVAL by the mapping paths.
 */
export class MemTypeLookup {
  readonly regions: readonly MemRegion[];
  private readonly starts: Float64Array;
  private readonly ends: Float64Array;
  private last = 0;

  constructor(mm: MachineMm) {
    this.regions = mm.regions;
    const n = this.regions.length;
    this.starts = new Float64Array(n);
    this.ends = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      this.starts[i] = Number(this.regions[i].start);
      this.ends[i] = Number(this.regions[i].end);
    }
  }

  /**
   * The index of the region holding all of [a, a + len) (a and a + len exact numbers), MEM_HOLE
   * when a is in no region, MEM_CROSSES when the range runs past the end of a's region.
   */
  index(a: number, len: number): number {
    let i = this.last;
    const starts = this.starts, ends = this.ends;
    if (i >= starts.length || a < starts[i] || a >= ends[i]) {
      let lo = 0, hi = starts.length - 1;
      i = MEM_HOLE;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        if (a < starts[mid]) hi = mid - 1;
        else if (a >= ends[mid]) lo = mid + 1;
        else { i = mid; break; }
      }
      if (i < 0) return MEM_HOLE;
      this.last = i;
    }
    return a + len <= ends[i] ? i : MEM_CROSSES;
  }

  /** index() for an exact bigint address (beyond 2^53 there is no memory: MEM_HOLE). */
  indexBig(a: bigint, len: number): number {
    if (a > MAX_SAFE_BIG) return MEM_HOLE;
    const n = Number(a);
    if (n + len > Number.MAX_SAFE_INTEGER) return this.index(n, 0) >= 0 ? MEM_CROSSES : MEM_HOLE;
    return this.index(n, len);
  }

  /** Range flags of region i (memory type and P2P provider id; phyr/flags.ts). */
  flagsOf(i: number): number {
    return this.regions[i].rangeFlags;
  }

  /** The EINVAL for a range that index() did not place in one region (what = e.g. 'range 3'). */
  error(code: number, what: string, addr: bigint, len: number): Result<never> {
    const at = `${what} (0x${addr.toString(16)}+${len})`;
    if (code === MEM_CROSSES) {
      const r = this.regions[this.last];
      return err('EINVAL', `${at} crosses the end of memory region ${r.name} at 0x${r.end.toString(16)}: its memory type is not uniform`);
    }
    return err('EINVAL', `${at} is not in any memory region`);
  }
}

const MAX_SAFE_BIG = BigInt(Number.MAX_SAFE_INTEGER);
/** The slot on a machine that holds its memory-type lookup. */
const MEM_TYPE_LOOKUP = new SlotKey<MemTypeLookup>('dma-mem-type-lookup');

/** The memory-type lookup of a machine (one per machine, created on first use). */
export function memTypeLookup(mm: MachineMm): MemTypeLookup {
  return mm.slots.getOrCreate(MEM_TYPE_LOOKUP, () => new MemTypeLookup(mm));
}

/** sg_phys for entry i. */
export function sgPhysAt(dev: Device, sgt: SgTable, i: number): bigint {
  return (sgt.pfnAt(i) << BigInt(dmaContextOf(dev).mm.pageShift)) + BigInt(sgt.offsetAt(i));
}


/**
 * dma_direct_unmap_sg over the first `count` CPU entries: bus-address entries are only unmarked,
 * the others go through dma_direct_unmap_phys.
 */
export function dmaDirectUnmapSg(dev: Device, sgt: SgTable, count: number, dir: number, attrs: number): void {
  for (let i = 0; i < count; i++) {
    const flags = sgt.dmaFlagsAt(i);
    if (flags & SG_DMA_BUS_ADDRESS) sgt.setDmaFlags(i, flags & ~SG_DMA_BUS_ADDRESS);
    else dmaDirectUnmapPhys(dev, sgt.dmaAddressAt(i), sgt.dmaLengthAt(i), dir, attrs);
  }
}

/**
 * dma_direct_map_sg: one DMA entry per CPU entry (nents == origNents). P2P memory reached by bus
 * address gets the provider's bus address and SG_DMA_BUS_ADDRESS; through the host bridge it is
 * mapped like memory. Each entry's memory type and provider come from the memory map (the region
 * holding it), not from the flags recorded in the table. Errors: EINVAL (an entry in a hole or
 * crossing from one memory region into another), EREMOTEIO (P2P not supported), EIO (an entry
 * could not be mapped); what was mapped before the failure is unmapped.
 */
export function dmaDirectMapSg(dev: Device, sgt: SgTable, dir: number, attrs: number): Result<number> {
  const state = new PciP2pdmaMapState();
  const look = memTypeLookup(dmaContextOf(dev).mm);
  const n = sgt.origNents;
  for (let i = 0; i < n; i++) {
    const phys = sgPhysAt(dev, sgt, i);
    const len = sgt.lengthAt(i);
    // the memory's type from the memory map, not the table's recorded flags
    const ri = look.indexBig(phys, len);
    if (ri < 0) {
      dmaDirectUnmapSg(dev, sgt, i, dir, attrs | DMA_ATTR_SKIP_CPU_SYNC);
      return look.error(ri, `entry ${i}`, phys, len);
    }
    const type = pciP2pdmaState(state, dev, look.flagsOf(ri));
    if (type === PCI_P2PDMA_MAP_BUS_ADDR) {
      sgt.setDma(i, pciP2pdmaBusAddrMap(state.mem!, phys), len);
      sgt.setDmaFlags(i, sgt.dmaFlagsAt(i) | SG_DMA_BUS_ADDRESS);
      continue;
    }
    if (type !== PCI_P2PDMA_MAP_NONE && type !== PCI_P2PDMA_MAP_THRU_HOST_BRIDGE) {
      dmaDirectUnmapSg(dev, sgt, i, dir, attrs | DMA_ATTR_SKIP_CPU_SYNC);
      return err('EREMOTEIO', `entry ${i}: P2P between the provider and ${dev.name} is not supported`);
    }
    const addr = dmaDirectMapPhys(dev, phys, len, dir, attrs);
    if (addr === DMA_MAPPING_ERROR) {
      dmaDirectUnmapSg(dev, sgt, i, dir, attrs | DMA_ATTR_SKIP_CPU_SYNC);
      return err('EIO', `entry ${i} (0x${phys.toString(16)}+${len}) could not be mapped`);
    }
    sgt.setDma(i, addr, len);
  }
  return ok(n);
}
