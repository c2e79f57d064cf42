// Models: arch/powerpc/kernel/iommu.c (Linux 7.1: iommu_init_table with its pools and large pool,
// iommu_table_reserve_pages (entry 0), iommu_range_alloc with hints, block rounding and the DMA-mask
// clamp, iommu_alloc, __iommu_free / iommu_free_check, iommu_map_phys / iommu_unmap_phys,
// ppc_iommu_map_sg merging through the allocation handle, ppc_iommu_unmap_sg),
// arch/powerpc/kernel/dma-iommu.c (dma_iommu_ops, arch_dma_map_phys_direct / arch_dma_unmap_phys_direct,
// dma_iommu_dma_supported setting or clearing dma_ops_bypass, dma_iommu_get_required_mask) and
// arch/powerpc/platforms/pseries/iommu.c (tce_build_pSeries / tce_clear_pSeries: big-endian 64-bit
// TCEs in RAM; iommu_bypass_supported_pSeriesLP -> enable_ddw, which gives a device asking for more
// than 32 bits the dynamic DMA window: archdata.dma_offset and bus_dma_limit).
// Model deviation: the dynamic window is given by the configuration (ddw) and enabled for any mask
// above 32 bits with direct mapping of RAM below busDmaLimit - dmaOffset; enable_ddw's firmware calls,
// the limited-addressing mode of a mask below 64 bits, removing the default window, the dynamic
// (TCE-mapped) DDW and its log lines are not modelled.
// Model deviation: one CPU, so iommu_pool_hash always picks pool 0 (the kernel hashes the CPU number).
// Model deviation: the table in RAM holds this window's it_size entries only; the kernel's
// it_base is indexed by absolute TCE number (it_offset + i) over the whole PHB table.
// Model deviation: no fail_iommu fault injection and no H_PUT_TCE hypercall (tce_build_pSeries, the
// bare-metal store, never fails).
// Model deviation: no printk_ratelimit() (the model has no clock): every "iommu_alloc failed" and
// "iommu_free: invalid entry" report is logged, without the table pointer, bus number and LIOBN.

import { err, faultInjected, ok, type Result } from '../../base/internal.ts';
import type { MachineMm } from '../../mm/index.ts';
import type { Device } from '../../pci/index.ts';
import { DMA_ATTR_NO_WARN, DMA_BIT_MASK, DMA_MAPPING_ERROR, DMA_TO_DEVICE } from '../constants.ts';
import { dmaDirectGetRequiredMask, dmaGetMask, dmaGetMaxSegSize, dmaGetSegBoundaryNrPages } from '../mask.ts';
import { modelCheckEvent } from '../events.ts';
import { allocZeroed } from './gart.ts';
import {
  AREA_ALLOC_LOCKUP, IommuBitmap, areaAllocLockup, devDmaOps, iommuNumPages, type DmaMapOps, type DmaOpsEntry, type DmaOpsSeg, type DmaOpsState, type DmaOpsXlate,
} from './ops.ts';

export interface TceOpsConfig {
  readonly kind: 'tce';
  /** it_offset: the window's first TCE number (the window starts at offset << pageShift on the bus). */
  readonly offset: number;
  /** it_size: TCEs in the window. */
  readonly size: number;
  /** it_page_shift: 12 (4 KiB TCEs, the default window), 16, 21 or 24 (DDW page sizes). */
  readonly pageShift: number;
  /** it_blocksize: hint rounding after small allocations (16 on pseries). Default 16. */
  readonly blockSize?: number;
  /**
   * The dynamic DMA window the platform offers: once the driver asks for a mask above 32 bits
   * (enable_ddw), RAM below busDmaLimit - dmaOffset is mapped directly at phys + dmaOffset
   * (archdata.dma_offset, bus_dma_limit = busDmaLimit, dma_ops_bypass set); the rest, and
   * everything before that, goes through the table.
   */
  readonly ddw?: { readonly dmaOffset: bigint; readonly busDmaLimit: bigint };
  /** iommu=novmerge: map_sg never merges. Default false. */
  readonly novmerge?: boolean;
}

export const TCE_PCI_READ = 1n;
export const TCE_PCI_WRITE = 2n;
const IOMMU_NR_POOLS = 4;

interface Pool { start: number; end: number; hint: number }

/** printk's %08llx: at least 8 hex digits. */
function hex8(v: bigint): string {
  return v.toString(16).padStart(8, '0');
}

/** struct iommu_table with tce_build_pSeries as it_ops->set. */
export class TceOps implements DmaMapOps {
  readonly kind = 'tce' as const;
  readonly sgTail = 'end-mark' as const;
  readonly itOffset: number;
  readonly itSize: number;
  readonly itPageShift: number;
  readonly itBlocksize: number;
  readonly tablePhys: bigint;
  readonly bitmap: IommuBitmap;
  readonly nrPools: number;
  readonly poolsize: number;
  readonly pools: Pool[];
  readonly largePool: Pool;
  readonly ddw: { readonly dmaOffset: bigint; readonly busDmaLimit: bigint } | null;
  readonly novmerge: boolean;
  /** The devices enable_ddw gave the dynamic window (a mask above 32 bits was asked for). */
  private readonly ddwDevices = new WeakSet<Device>();
  flushes = 0;
  private readonly mm: MachineMm;

  constructor(mm: MachineMm, cfg: TceOpsConfig) {
    this.mm = mm;
    this.itOffset = cfg.offset;
    this.itSize = cfg.size;
    this.itPageShift = cfg.pageShift;
    this.itBlocksize = cfg.blockSize ?? 16;
    this.ddw = cfg.ddw ?? null;
    this.novmerge = cfg.novmerge ?? false;
    this.tablePhys = allocZeroed(mm, this.itSize * 8);
    this.bitmap = new IommuBitmap(this.itSize);
    // iommu_table_reserve_pages: entry 0 never maps (drivers that take DMA address 0 for invalid)
    if (this.itOffset === 0) this.bitmap.set(0, 1);
    // iommu_init_table: 4 pools from 1 GiB of window up, the top quarter for large allocations
    this.nrPools = this.itSize * 2 ** this.itPageShift >= 2 ** 30 ? IOMMU_NR_POOLS : 1;
    this.poolsize = Math.floor(Math.floor(this.itSize * 3 / 4) / this.nrPools);
    this.pools = [];
    for (let i = 0; i < this.nrPools; i++) this.pools.push({ start: this.poolsize * i, hint: this.poolsize * i, end: this.poolsize * (i + 1) });
    this.largePool = { start: this.poolsize * this.nrPools, hint: this.poolsize * this.nrPools, end: this.itSize };
  }

  get ioPageSize(): number {
    return 2 ** this.itPageShift;
  }

  private tceView(entry: number): DataView {
    const v = this.mm.mem.view(this.tablePhys + BigInt((entry - this.itOffset) * 8), 8);
    return new DataView(v.buffer, v.byteOffset, 8);
  }

  /** The TCE of absolute entry number `entry` (big endian in RAM, cpu_to_be64). */
  tce(entry: number): bigint {
    return this.tceView(entry).getBigUint64(0, false);
  }

  /** tce_build_pSeries: rpn << shift | READ | WRITE unless TO_DEVICE, one per I/O page. */
  private build(entry: number, npages: number, phys: bigint, dir: number): void {
    const proto = dir === DMA_TO_DEVICE ? TCE_PCI_READ : TCE_PCI_READ | TCE_PCI_WRITE;
    const shift = BigInt(this.itPageShift);
    let p = phys;
    for (let i = 0; i < npages; i++) {
      this.tceView(entry + i).setBigUint64(0, proto | ((p >> shift) << shift), false);
      p += BigInt(this.ioPageSize);
    }
  }

  /** tce_clear_pSeries. */
  private clearTces(entry: number, npages: number): void {
    for (let i = 0; i < npages; i++) this.tceView(entry + i).setBigUint64(0, 0n, false);
  }

  /** iommu_range_alloc: the free entry (relative to it_offset) or -1. `handle` continues an sg list. */
  private rangeAlloc(dev: Device, npages: number, handle: { v: number } | null, mask: bigint, alignOrder: number): number {
    if (faultInjected(this.mm, 'ops-space', `${dev.name}: TCE table, ${npages} entries`)) return -1;
    const largealloc = npages > 15;
    const alignMask = 2 ** alignOrder - 1;
    let poolNr = 0;
    let pool = largealloc ? this.largePool : this.pools[poolNr];
    let pass = 0;
    const boundary = Number(dmaGetSegBoundaryNrPages(dev, this.itPageShift));
    for (;;) {
      let start = pass === 0 && handle && handle.v && handle.v >= pool.start && handle.v < pool.end ? handle.v : pool.hint;
      let limit = pool.end;
      if (start >= limit) start = pool.start;
      if (BigInt(limit + this.itOffset) > mask) {
        if (mask < BigInt(this.itOffset)) {
          // Model deviation: a mask below the window's start (only the default one can be:
          // dma_iommu_dma_supported refuses such a mask) makes the kernel's unsigned limit wrap (or
          // iommu_area_alloc's size - 1, for limit 0), and the search runs past it_map; the model
          // fails the allocation instead
          modelCheckEvent(this.mm.events, `${dev.name}: iommu_range_alloc with DMA mask 0x${((mask << BigInt(this.itPageShift)) | BigInt(this.ioPageSize - 1)).toString(16)} `
            + `below the TCE window at entry 0x${this.itOffset.toString(16)}: the kernel would search past the table's bitmap; failed`, { dev: dev.name });
          return -1;
        }
        limit = Number(mask - BigInt(this.itOffset) + 1n);
        const masked = BigInt(start) & mask;
        if (masked >= BigInt(limit) || pass > 0) {
          pool = this.pools[0];
          start = pool.start;
        } else {
          start = Number(masked);
        }
      }
      const n = this.bitmap.areaAlloc(limit, start, npages, this.itOffset, boundary, alignMask);
      if (n === AREA_ALLOC_LOCKUP) areaAllocLockup(this.mm.events, 'tce', dev, npages, boundary);
      if (n === -1) {
        if (pass === 0) {
          pool.hint = pool.start;
          pass++;
          continue;
        } else if (pass <= this.nrPools) {
          poolNr = (poolNr + 1) & (this.nrPools - 1);
          pool = this.pools[poolNr];
          pool.hint = pool.start;
          pass++;
          continue;
        } else if (pass === this.nrPools + 1) {
          pool = this.largePool;
          pool.hint = pool.start;
          pass++;
          continue;
        }
        return -1;
      }
      const end = n + npages;
      pool.hint = largealloc ? end : Math.ceil(end / this.itBlocksize) * this.itBlocksize;
      if (handle) handle.v = end;
      return n;
    }
  }

  private alignFor(phys: bigint, size: number): number {
    const shift = this.mm.pageShift;
    if (this.itPageShift < shift && size >= this.mm.pageSize && phys % BigInt(this.mm.pageSize) === 0n) return shift - this.itPageShift;
    return 0;
  }

  /**
   * Where the kernel calls it_ops->flush (iommu_alloc, iommu_free, the end of ppc_iommu_map_sg and
   * ppc_iommu_unmap_sg; not the map_sg backout): pseries has none (the PHB reads the stores), so
   * this counts the points where a platform with one would flush.
   */
  private flush(): void {
    this.flushes++;
  }

  /** iommu_map_phys -> iommu_alloc, clamped to dma_get_mask(dev) as dma_iommu_map_phys passes it. */
  mapPhys(dev: Device, phys: bigint, size: number, dir: number, attrs: number): bigint {
    const npages = iommuNumPages(phys, size, this.ioPageSize);
    const mask = dmaGetMask(dev) >> BigInt(this.itPageShift);
    const n = this.rangeAlloc(dev, npages, null, mask, this.alignFor(phys, size));
    if (n === -1) {
      this.allocFailed(dev, npages, attrs);
      return DMA_MAPPING_ERROR;
    }
    const entry = n + this.itOffset;
    this.build(entry, npages, phys & ~BigInt(this.ioPageSize - 1), dir);
    this.flush();
    return (BigInt(entry) << BigInt(this.itPageShift)) | (phys & BigInt(this.ioPageSize - 1));
  }

  /** __iommu_free with iommu_free_check. */
  private free(dev: Device, addr: bigint, npages: number): void {
    const entry = Number(addr >> BigInt(this.itPageShift));
    const freeEntry = entry - this.itOffset;
    if (freeEntry + npages > this.itSize || entry < this.itOffset) {
      // iommu_free_check's KERN_INFO lines (not the table pointer, bus number and LIOBN the model has
      // none of), then WARN_ON(1)
      const lines = ['iommu_free: invalid entry', `\tentry     = 0x${entry.toString(16)}`, `\tdma_addr  = 0x${addr.toString(16)}`,
        `\tsize      = 0x${this.itSize.toString(16)}`, `\tstartOff  = 0x${this.itOffset.toString(16)}`];
      for (const l of lines) this.mm.events.record('INFO', 'tce', l, { dev: dev.name });
      this.mm.events.warn('tce', `${dev.name}: iommu_free_check: WARN_ON(1)`, { dev: dev.name, entry, npages });
      return;
    }
    this.clearTces(entry, npages);
    this.bitmap.clear(freeEntry, npages);
  }

  unmapPhys(dev: Device, addr: bigint, size: number): void {
    this.free(dev, addr, iommuNumPages(addr, size, this.ioPageSize));
    this.flush();
  }

  /** The "iommu_alloc failed" dev_info of iommu_map_phys and ppc_iommu_map_sg, unless DMA_ATTR_NO_WARN. */
  private allocFailed(dev: Device, npages: number, attrs: number): void {
    if (attrs & DMA_ATTR_NO_WARN) return;
    this.mm.events.record('INFO', 'tce', `${dev.name}: iommu_alloc failed, npages ${npages}`, { dev: dev.name, npages });
  }

  /**
   * ppc_iommu_map_sg: each entry's allocation continues from the handle; an entry whose TCEs follow
   * the open segment's merges into it (unless iommu=novmerge or past max_seg_size). A zero-length
   * entry is skipped and resets the adjacency (dma_next = 0); when the list starts with one, the
   * first output segment is left with length 0 and no address, and the mapped entries start at the
   * second (so ppc_iommu_unmap_sg, which stops at the first zero length, frees none of them).
   * Fails EIO (table full), after freeing what it mapped.
   */
  mapSg(dev: Device, ents: readonly DmaOpsEntry[], dir: number, attrs: number): Result<DmaOpsSeg[]> {
    if (ents.length === 0) return err('EINVAL', 'no entries');
    const handle = { v: 0 };
    const maxSeg = dmaGetMaxSegSize(dev);
    const mask = dmaGetMask(dev) >> BigInt(this.itPageShift);
    // outs: the open output segment; the first starts with length 0 for the backout
    const out: Array<{ addr: bigint; len: number; first: number; count: number; lenOnly: boolean }> = [
      { addr: 0n, len: 0, first: 0, count: 0, lenOnly: true },
    ];
    let segstart = 0;
    let dmaNext = 0n;
    for (let i = 0; i < ents.length; i++) {
      const e = ents[i];
      if (e.len === 0) {
        dmaNext = 0n;
        continue;
      }
      const npages = iommuNumPages(e.phys, e.len, this.ioPageSize);
      const n = this.rangeAlloc(dev, npages, handle, mask, this.alignFor(e.phys, e.len));
      if (n === -1) {
        this.allocFailed(dev, npages, attrs);
        // the backout frees every segment with a length, without it_ops->flush
        for (const s of out) if (s.len !== 0) this.free(dev, s.addr, iommuNumPages(s.addr, s.len, this.ioPageSize));
        return err('EIO', `entry ${i}: TCE table full`);
      }
      const entry = n + this.itOffset;
      const dma = (BigInt(entry) << BigInt(this.itPageShift)) | (e.phys & BigInt(this.ioPageSize - 1));
      this.build(entry, npages, e.phys & ~BigInt(this.ioPageSize - 1), dir);
      let cur = out[out.length - 1];
      if (segstart !== i) {
        if (this.novmerge || dma !== dmaNext || cur.len + e.len > maxSeg) {
          segstart = i;
          cur = { addr: 0n, len: 0, first: i, count: 0, lenOnly: true };
          out.push(cur);
        } else {
          cur.len += e.len;
          cur.count++;
        }
      }
      if (segstart === i) Object.assign(cur, { addr: dma, len: e.len, first: i, count: 1, lenOnly: false });
      dmaNext = dma + BigInt(e.len);
    }
    this.flush();
    return ok(out.map((s) => (s.lenOnly ? s : { addr: s.addr, len: s.len, first: s.first, count: s.count })));
  }

  /** ppc_iommu_unmap_sg: frees segment by segment up to the first of length 0, then one it_ops->flush. */
  unmapSg(dev: Device, segs: readonly DmaOpsSeg[]): void {
    for (const s of segs) {
      if (s.len === 0) break;
      this.free(dev, s.addr, iommuNumPages(s.addr, s.len, this.ioPageSize));
    }
    this.flush();
  }

  /**
   * dma_iommu_get_required_mask (arch/powerpc/kernel/dma-iommu.c): for a PCI device, the direct
   * mask (dma_direct_get_required_mask) whenever dma_iommu_dma_supported accepts it, which it does
   * through the bypass or, failing that, because the table's window starts below it; so the table's
   * own mask (one bit wider than fls_long(it_offset + it_size) pages) only for a window past it or a
   * device that is not PCI. Asking has dma_iommu_dma_supported's effects: it may enable the dynamic
   * window, and it sets or clears dma_ops_bypass.
   */
  getRequiredMask(dev: Device): bigint {
    if (dev.pci !== null) {
      const bypassMask = dmaDirectGetRequiredMask(dev);
      if (this.dmaSupported(dev, bypassMask)) {
        this.info(dev, `dma_iommu_get_required_mask: returning bypass mask 0x${bypassMask.toString(16)}`);
        return bypassMask;
      }
    }
    const fls = (this.itOffset + this.itSize).toString(2).length;
    return (1n << BigInt(fls + this.itPageShift)) - 1n;
  }

  /**
   * dma_iommu_dma_supported: a PCI device whose mask the platform can bypass the table for
   * (iommu_bypass_supported_pSeriesLP: above 32 bits, with a dynamic window) gets dma_ops_bypass;
   * otherwise the table's window must start at or below the mask, and dma_ops_bypass is cleared.
   */
  dmaSupported(dev: Device, mask: bigint): boolean {
    const o = devDmaOps(dev);
    if (dev.pci !== null && this.bypassSupported(dev, mask)) {
      if (o) o.bypass = true;
      this.info(dev, `iommu: 64-bit OK but direct DMA is limited by ${dev.busDmaLimit.toString(16)}`);
      return true;
    }
    if (BigInt(this.itOffset) > mask >> BigInt(this.itPageShift)) {
      this.info(dev, 'Warning: IOMMU offset too big for device mask');
      this.info(dev, `mask: 0x${hex8(mask)}, table offset: 0x${hex8(BigInt(this.itOffset) << BigInt(this.itPageShift))}`);
      return false;
    }
    if (o) o.bypass = false;
    return true;
  }

  /**
   * iommu_bypass_supported_pSeriesLP (arch/powerpc/platforms/pseries/iommu.c): a mask above 32 bits
   * and a dynamic window (enable_ddw: created at the first such mask, found again after; it sets
   * archdata.dma_offset, and bus_dma_limit for the direct mapping of RAM).
   */
  private bypassSupported(dev: Device, mask: bigint): boolean {
    if (mask <= DMA_BIT_MASK(32) || !this.ddw) return false;
    // powerpc's phys_to_dma adds archdata.dma_offset to any address (arch/powerpc/include/asm/dma-direct.h)
    dev.dmaRangeMap = [{ cpuStart: 0n, dmaStart: this.ddw.dmaOffset, len: 2 ** 52 }];
    dev.busDmaLimit = this.ddw.busDmaLimit;
    this.ddwDevices.add(dev);
    return true;
  }

  /** A dev_info line. */
  private info(dev: Device, message: string): void {
    this.mm.events.record('INFO', 'tce', `${dev.name}: ${message}`, { dev: dev.name });
  }

  /** arch_dma_map_phys_direct: bus_dma_limit >= phys_to_dma(end) (phys + archdata.dma_offset). */
  archMapPhysDirect(dev: Device, end: bigint): boolean {
    if (!this.ddw || dev.busDmaLimit === 0n) return false;
    return dev.busDmaLimit >= end + this.ddw.dmaOffset;
  }

  /** arch_dma_unmap_phys_direct: a handle at or above archdata.dma_offset is a direct one. */
  archUnmapPhysDirect(dev: Device, end: bigint): boolean {
    if (!this.ddw || dev.busDmaLimit === 0n) return false;
    return end >= this.ddw.dmaOffset;
  }

  translate(dev: Device, addr: bigint, write: boolean): DmaOpsXlate {
    if (this.ddw && this.ddwDevices.has(dev) && addr >= this.ddw.dmaOffset) {
      if (addr >= this.ddw.busDmaLimit) return `TCE: 0x${addr.toString(16)} is past the direct window (bus_dma_limit 0x${this.ddw.busDmaLimit.toString(16)})`;
      const left = this.ddw.busDmaLimit - addr;
      return { phys: addr - this.ddw.dmaOffset, len: Number(left > 1n << 40n ? 1n << 40n : left) };
    }
    const entry = Number(addr >> BigInt(this.itPageShift));
    if (entry < this.itOffset || entry >= this.itOffset + this.itSize) return `TCE: 0x${addr.toString(16)} is outside the DMA window`;
    const t = this.tce(entry);
    const perm = write ? TCE_PCI_WRITE : TCE_PCI_READ;
    if (!(t & perm)) return `TCE: entry ${entry} does not permit ${write ? 'write' : 'read'} (0x${t.toString(16)})`;
    const o = Number(addr & BigInt(this.ioPageSize - 1));
    const rpnMask = ~BigInt(this.ioPageSize - 1) & ((1n << 64n) - 1n);
    return { phys: (t & rpnMask) + BigInt(o), len: this.ioPageSize - o };
  }

  inspect(): DmaOpsState {
    const entries: Array<[number, bigint]> = [];
    for (let i = 0; i < this.itSize; i++) {
      const t = this.tce(i + this.itOffset);
      if (t !== 0n) entries.push([i + this.itOffset, t]);
    }
    const hints: Record<string, number> = {};
    this.pools.forEach((p, i) => { hints[`pool${i}`] = p.hint; });
    hints.large = this.largePool.hint;
    return {
      kind: 'tce', ops: 'dma_iommu_ops', entries, allocated: this.bitmap.setBits(), hints, flushes: this.flushes, bounceBytes: 0,
      extra: {
        itOffset: this.itOffset, itSize: this.itSize, itPageShift: this.itPageShift, nrPools: this.nrPools, poolsize: this.poolsize,
        ddw: this.ddw,
      },
    };
  }
}
