// Models: drivers/xen/swiotlb-xen.c (Linux 7.1: xen_phys_to_bus / xen_bus_to_phys through the p2m,
// range_straddles_page_boundary, xen_swiotlb_map_phys with its MMIO passthrough and bounce through
// the shared swiotlb, xen_swiotlb_unmap_phys, the sync calls, xen_swiotlb_map_sg (per entry, no
// merge; -EIO after undoing what it mapped), xen_swiotlb_dma_supported, max_mapping_size =
// swiotlb_max_mapping_size) with the guest's p2m as a table of Xen frames (4 KiB whatever the CPU
// page size): pfn -> bfn, unlisted frames map to themselves.
// Model deviation: the swiotlb pool is machine-contiguous because the configuration may not move
// its frames (the kernel exchanges them at boot, xen_swiotlb_fixup); the model refuses a p2m that
// names them.
// Model deviation: no cache maintenance is issued for MMIO at unmap (the kernel would call
// arch_sync_dma_for_cpu on the MMIO address of a non-coherent device).
// Model deviation: the x86 rules: xen_arch_need_swiotlb is false (Arm bounces a non-coherent
// device's page whose pfn is not its bfn) and there is no kmalloc bounce (dma_kmalloc_needs_bounce);
// a non-coherent device gets arch_sync_dma_* on the CPU address even where the bus frame is no local
// pfn (Arm's xen_dma_sync_for_* there is a cache-flush hypercall).

import type { Result } from '../../base/internal.ts';
import type { MachineMm } from '../../mm/index.ts';
import type { Device } from '../../pci/index.ts';
import { DMA_ATTR_MMIO, DMA_ATTR_SKIP_CPU_SYNC, DMA_MAPPING_ERROR } from '../constants.ts';
import { dmaCapable, dmaToPhys, physToDma } from '../direct-addr.ts';
import { archSyncDmaForCpu, archSyncDmaForDevice } from '../cache.ts';
import {
  isSwiotlbBuffer, isSwiotlbForceBounce, swiotlbMaxMappingSize, swiotlbOf, swiotlbSyncSingleForCpu,
  swiotlbSyncSingleForDevice, swiotlbTblMapSingle, swiotlbTblUnmapSingle,
} from '../swiotlb.ts';
import { mapSgEachEntry, type DmaMapOps, type DmaOpsEntry, type DmaOpsSeg, type DmaOpsState, type DmaOpsXlate } from './ops.ts';

export interface XenSwiotlbOpsConfig {
  readonly kind: 'xen-swiotlb';
  /** The p2m: [pfn, bfn] pairs of Xen (4 KiB) frames; frames not listed map to themselves. */
  readonly p2m: ReadonlyArray<readonly [number, number]>;
}

const XEN_PAGE = 4096;
const XEN_PAGE_BIG = 4096n;

/** xen_swiotlb_dma_ops over one guest's p2m. */
export class XenSwiotlbOps implements DmaMapOps {
  readonly kind = 'xen-swiotlb' as const;
  private readonly p2m = new Map<number, number>();
  private readonly m2p = new Map<number, number>();
  bounceBytes = 0;
  bounces = 0;
  private readonly mm: MachineMm;

  constructor(mm: MachineMm, cfg: XenSwiotlbOpsConfig) {
    this.mm = mm;
    for (const [pfn, bfn] of cfg.p2m) {
      this.p2m.set(pfn, bfn);
      this.m2p.set(bfn, pfn);
    }
  }

  /** pfn_to_bfn. */
  pfnToBfn(pfn: number): number {
    return this.p2m.get(pfn) ?? pfn;
  }

  /** bfn_to_pfn: -1 for a frame that is no local pfn's (a listed pfn's own number, when it moved). */
  bfnToPfn(bfn: number): number {
    const p = this.m2p.get(bfn);
    if (p !== undefined) return p;
    return this.p2m.has(bfn) ? -1 : bfn;
  }

  /** xen_phys_to_bus + phys_to_dma. */
  physToDma(dev: Device, phys: bigint): bigint {
    const frame = Number(phys / XEN_PAGE_BIG);
    return physToDma(dev, BigInt(this.pfnToBfn(frame)) * XEN_PAGE_BIG + (phys % XEN_PAGE_BIG));
  }

  /** dma_to_phys + xen_bus_to_phys (-1n when the bus frame is no local frame). */
  dmaToPhys(dev: Device, addr: bigint): bigint {
    const b = dmaToPhys(dev, addr);
    const pfn = this.bfnToPfn(Number(b / XEN_PAGE_BIG));
    return pfn < 0 ? -1n : BigInt(pfn) * XEN_PAGE_BIG + (b % XEN_PAGE_BIG);
  }

  /** range_straddles_page_boundary: some following Xen page is not on the next bus frame. */
  straddles(phys: bigint, size: number): boolean {
    let pfn = Number(phys / XEN_PAGE_BIG);
    const nr = Math.ceil((Number(phys % XEN_PAGE_BIG) + size) / XEN_PAGE);
    let next = this.pfnToBfn(pfn);
    for (let i = 1; i < nr; i++) if (this.pfnToBfn(++pfn) !== ++next) return true;
    return false;
  }

  mapPhys(dev: Device, phys: bigint, size: number, dir: number, attrs: number): bigint {
    if (attrs & DMA_ATTR_MMIO) {
      if (!dmaCapable(dev, phys, size, false)) {
        // dev_err_once and WARN_ON_ONCE(1): one report per boot (per machine here)
        this.mm.events.warnOnce('xen_swiotlb_map_phys:mmio_overflow', 'xen-swiotlb',
          `${dev.name}: DMA addr 0x${phys.toString(16)}+${size} overflow (mask ${(dev.dmaMask ?? 0n).toString(16)}, bus limit ${dev.busDmaLimit.toString(16)}).`);
        return DMA_MAPPING_ERROR;
      }
      return phys;
    }
    let p = phys;
    let devAddr = this.physToDma(dev, phys);
    if (!(dmaCapable(dev, devAddr, size, true) && !this.straddles(phys, size) && !isSwiotlbForceBounce(dev))) {
      const map = swiotlbTblMapSingle(dev, phys, size, 0, dir, attrs);
      if (map === DMA_MAPPING_ERROR) return DMA_MAPPING_ERROR;
      p = map;
      devAddr = this.physToDma(dev, map);
      if (!dmaCapable(dev, devAddr, size, true)) {
        swiotlbTblUnmapSingle(dev, map, size, dir, attrs | DMA_ATTR_SKIP_CPU_SYNC);
        return DMA_MAPPING_ERROR;
      }
      this.bounceBytes += size;
      this.bounces++;
    }
    if (!dev.dmaCoherent && !(attrs & DMA_ATTR_SKIP_CPU_SYNC)) archSyncDmaForDevice(dev, p, size, dir);
    return devAddr;
  }

  unmapPhys(dev: Device, addr: bigint, size: number, dir: number, attrs: number): void {
    if (attrs & DMA_ATTR_MMIO) return;
    const paddr = this.dmaToPhys(dev, addr);
    if (paddr < 0n) return;
    if (!dev.dmaCoherent && !(attrs & DMA_ATTR_SKIP_CPU_SYNC)) archSyncDmaForCpu(dev, paddr, size, dir);
    if (isSwiotlbBuffer(dev, paddr)) swiotlbTblUnmapSingle(dev, paddr, size, dir, attrs);
  }

  syncSingleForCpu(dev: Device, addr: bigint, size: number, dir: number): void {
    const paddr = this.dmaToPhys(dev, addr);
    if (paddr < 0n) return;
    if (!dev.dmaCoherent) archSyncDmaForCpu(dev, paddr, size, dir);
    if (isSwiotlbBuffer(dev, paddr)) swiotlbSyncSingleForCpu(dev, paddr, size, dir);
  }

  syncSingleForDevice(dev: Device, addr: bigint, size: number, dir: number): void {
    const paddr = this.dmaToPhys(dev, addr);
    if (paddr < 0n) return;
    if (isSwiotlbBuffer(dev, paddr)) swiotlbSyncSingleForDevice(dev, paddr, size, dir);
    if (!dev.dmaCoherent) archSyncDmaForDevice(dev, paddr, size, dir);
  }

  isBounced(dev: Device, addr: bigint): boolean {
    const p = this.dmaToPhys(dev, addr);
    return p >= 0n && isSwiotlbBuffer(dev, p);
  }

  mapSg(dev: Device, ents: readonly DmaOpsEntry[], dir: number, attrs: number): Result<DmaOpsSeg[]> {
    return mapSgEachEntry(ents, attrs, 'mapped', (e, a) => this.mapPhys(dev, e.phys, e.len, dir, a), (done, attrsOf) => {
      for (let j = 0; j < done.length; j++) this.unmapPhys(dev, done[j].addr, done[j].len, dir, attrsOf(j) | DMA_ATTR_SKIP_CPU_SYNC);
    });
  }

  unmapSg(dev: Device, segs: readonly DmaOpsSeg[], dir: number, attrs: number): void {
    for (const s of segs) this.unmapPhys(dev, s.addr, s.len, dir, attrs);
  }

  /**
   * xen_swiotlb_dma_supported: the mask reaches default_swiotlb_limit() (the pool's last byte) on
   * the bus. Without a pool (swiotlb=noforce) defpool.end is 0, the limit is all ones as a
   * phys_addr_t, and only a 64-bit mask reaches it.
   */
  dmaSupported(dev: Device, mask: bigint): boolean {
    const pool = swiotlbOf(dev);
    const limit = pool ? pool.end - 1n : (1n << 64n) - 1n;
    return this.physToDma(dev, limit) <= mask;
  }

  maxMappingSize(dev: Device): number {
    return swiotlbMaxMappingSize(dev);
  }

  translate(dev: Device, addr: bigint): DmaOpsXlate {
    const p = this.dmaToPhys(dev, addr);
    if (p < 0n) return `Xen: bus frame 0x${(addr / XEN_PAGE_BIG).toString(16)} belongs to no local pfn`;
    return { phys: p, len: XEN_PAGE - Number(addr % XEN_PAGE_BIG) };
  }

  inspect(): DmaOpsState {
    const entries: Array<[number, bigint]> = [...this.p2m].sort((a, b) => a[0] - b[0]).map(([pfn, bfn]) => [pfn, BigInt(bfn)]);
    return {
      kind: 'xen-swiotlb', ops: 'xen_swiotlb_dma_ops', entries, allocated: [], hints: {}, flushes: 0, bounceBytes: this.bounceBytes,
      extra: { bounces: this.bounces },
    };
  }
}
