// Models: arch/x86/kernel/amd_gart_64.c (Linux 7.1: gart_dma_ops, alloc_iommu, free_iommu,
// flush_gart, need_iommu / nonforced_iommu, dma_map_area, gart_map_phys, gart_unmap_phys,
// gart_map_sg with __dma_map_cont and the dma_map_sg_nonforce fallback, gart_iommu_init's scratch
// page) and the GATT it fills: 32-bit little-endian PTEs (GPTE_ENCODE) in machine RAM, one per
// 4 KiB page of a bus window, allocated with iommu_area_alloc from a next_bit rotor.
// Model deviation: the aperture is given by the configuration (busBase, pages) instead of read from
// the northbridge and halved for AGP (check_iommu_size); the GATT holds only the IOMMU part.
// Model deviation: panic_on_overflow is off (the kernel's default without CONFIG_IOMMU_DEBUG): an
// overflow logs "Out of IOMMU space" and fails.

import { err, faultInjected, ok, type Result } from '../../base/internal.ts';
import type { MachineMm } from '../../mm/index.ts';
import type { Device } from '../../pci/index.ts';
import { DMA_ATTR_MMIO, DMA_MAPPING_ERROR } from '../constants.ts';
import { dmaCapable } from '../direct-addr.ts';
import { modelCheckEvent } from '../events.ts';
import { dmaDirectGetRequiredMask, dmaDirectSupported, dmaGetMaxSegSize, dmaGetSegBoundary, dmaGetSegBoundaryNrPages } from '../mask.ts';
import {
  AREA_ALLOC_LOCKUP, IommuBitmap, areaAllocLockup, iommuNumPages, type DmaMapOps, type DmaOpsEntry, type DmaOpsSeg, type DmaOpsState, type DmaOpsXlate,
} from './ops.ts';

export interface GartOpsConfig {
  readonly kind: 'gart';
  /** iommu_bus_base: bus (and physical) address of the IOMMU part of the aperture, 4 KiB aligned, below 4 GiB. */
  readonly busBase: bigint;
  /** iommu_pages: GATT entries (4 KiB pages of the window). */
  readonly pages: number;
  /**
   * iommu_merge (iommu=merge, which also sets force_iommu): map_sg merges page-aligned entries.
   * Default false. arch/x86/kernel/pci-dma.c's iommu_setup sets iommu_merge for any iommu= option,
   * so on a kernel command line force or fullflush: false without merge needs nomerge too
   * (iommu=force,nomerge).
   */
  readonly merge?: boolean;
  /** iommu_fullflush (iommu=fullflush / nofullflush): flush the GART on every allocation. Default true. */
  readonly fullflush?: boolean;
  /** force_iommu (iommu=force): map through the GART even what the device reaches. Default false (true with merge). */
  readonly force?: boolean;
}

const PAGE = 4096;
const GPTE_VALID = 1;
const GPTE_COHERENT = 2;
/** GART_MAX_PHYS_ADDR: the GART remaps only physical addresses below 1 TiB. */
export const GART_MAX_PHYS_ADDR = 1n << 40n;

/**
 * GPTE_ENCODE: address bits 31:12, bits 39:32 in 11:4, valid and coherent. The macro does not mask
 * what it shifts down from bit 32, so past GART_MAX_PHYS_ADDR (which only dma_map_area checks, not
 * gart_map_sg) bits 40 and up land on the address bits, and the u32 GATT store keeps bits 31:0.
 */
export function gptEncode(phys: bigint): number {
  if (phys >= GART_MAX_PHYS_ADDR) return Number(((phys & 0xfffff000n) | ((phys >> 32n) << 4n) | 3n) & 0xffffffffn);
  const lo = Number(phys & 0xfffff000n);
  const hi = Number(phys >> 32n) << 4;
  return (lo | hi | GPTE_VALID | GPTE_COHERENT) >>> 0;
}

/** GPTE_DECODE. */
export function gptDecode(pte: number): bigint {
  return BigInt((pte & 0xfffff000) >>> 0) | (BigInt(pte & 0xff0) << 28n);
}

/** One AMD GART: its GATT in RAM, bitmap, rotor and flush state (global in the kernel: one per ops instance here). */
export class GartOps implements DmaMapOps {
  readonly kind = 'gart' as const;
  readonly sgTail = 'phys-end-mark' as const;
  readonly busBase: bigint;
  readonly pages: number;
  /** Physical address of the GATT (pages * 4 bytes, zeroed at init). */
  readonly gattPhys: bigint;
  /** The scratch page unmapped entries point to (gart_unmapped_entry). */
  readonly scratchPhys: bigint;
  readonly unmappedEntry: number;
  readonly bitmap: IommuBitmap;
  nextBit = 0;
  needFlush = false;
  flushes = 0;
  readonly merge: boolean;
  readonly force: boolean;
  readonly fullflush: boolean;
  private readonly mm: MachineMm;

  constructor(mm: MachineMm, cfg: GartOpsConfig) {
    this.mm = mm;
    this.busBase = cfg.busBase;
    this.pages = cfg.pages;
    this.merge = cfg.merge ?? false;
    this.force = cfg.force ?? this.merge;
    this.fullflush = cfg.fullflush ?? true;
    this.gattPhys = allocZeroed(mm, this.pages * 4);
    this.scratchPhys = allocZeroed(mm, PAGE);
    this.unmappedEntry = gptEncode(this.scratchPhys);
    this.bitmap = new IommuBitmap(this.pages);
    // enable_gart_translations(): one amd_flush_garts() after the GATT is installed
    this.flushes = 1;
  }

  private entryView(i: number): DataView {
    const v = this.mm.mem.view(this.gattPhys + BigInt(i * 4), 4);
    return new DataView(v.buffer, v.byteOffset, 4);
  }

  /** GATT entry i (u32 as the northbridge reads it, little endian). */
  pte(i: number): number {
    return this.entryView(i).getUint32(0, true);
  }

  private setPte(i: number, v: number): void {
    this.entryView(i).setUint32(0, v, true);
  }

  private needIommu(dev: Device, addr: bigint, size: number): boolean {
    return this.force || !dmaCapable(dev, addr, size, true);
  }

  /** alloc_iommu: rotor first, then from 0 with a flush pending; -1 when full. */
  private allocIommu(dev: Device, size: number, alignMask: number): number {
    if (faultInjected(this.mm, 'ops-space', `${dev.name}: GART aperture, ${size} pages`)) return -1;
    const baseIndex = Number(((this.busBase & dmaGetSegBoundary(dev)) + BigInt(PAGE - 1)) / BigInt(PAGE));
    const boundary = Number(dmaGetSegBoundaryNrPages(dev, 12));
    let off = this.bitmap.areaAlloc(this.pages, this.nextBit, size, baseIndex, boundary, alignMask);
    if (off === -1) {
      this.needFlush = true;
      off = this.bitmap.areaAlloc(this.pages, 0, size, baseIndex, boundary, alignMask);
    }
    if (off === AREA_ALLOC_LOCKUP) areaAllocLockup(this.mm.events, 'gart', dev, size, boundary);
    if (off !== -1) {
      this.nextBit = off + size;
      // never true: iommu_area_alloc does not hand out the last entry, so off + size < iommu_pages; the
      // rotor wraps (and need_flush is set) where the search from next_bit fails, above
      if (this.nextBit >= this.pages) {
        this.nextBit = 0;
        this.needFlush = true;
      }
    }
    if (this.fullflush) this.needFlush = true;
    return off;
  }

  private freeIommu(offset: number, size: number): void {
    this.bitmap.clear(offset, size);
    if (offset >= this.nextBit) this.nextBit = offset + size;
  }

  /** flush_gart: one amd_flush_garts() if a flush is pending. */
  private flushGart(): void {
    if (this.needFlush) {
      this.flushes++;
      this.needFlush = false;
    }
  }

  /** iommu_full: a dev_err line. */
  private iommuFull(dev: Device, size: number): void {
    this.mm.events.record('INFO', 'gart', `${dev.name}: PCI-DMA: Out of IOMMU space for ${size} bytes`, { dev: dev.name, size, level: 'err' });
  }

  /** dma_map_area: the bus address, the physical address (overflow of a device that reaches it), or DMA_MAPPING_ERROR. */
  private mapArea(dev: Device, phys: bigint, size: number, alignMask: number): bigint {
    const npages = iommuNumPages(phys, size, PAGE);
    if (phys + BigInt(size) > GART_MAX_PHYS_ADDR) return DMA_MAPPING_ERROR;
    const page = this.allocIommu(dev, npages, alignMask);
    if (page === -1) {
      if (dmaCapable(dev, phys, size, true)) return phys;
      this.iommuFull(dev, size);
      return DMA_MAPPING_ERROR;
    }
    let p = phys;
    for (let i = 0; i < npages; i++) {
      this.setPte(page + i, gptEncode(p));
      p += BigInt(PAGE);
    }
    return this.busBase + BigInt(page * PAGE) + (phys & BigInt(PAGE - 1));
  }

  mapPhys(dev: Device, phys: bigint, size: number, _dir: number, attrs: number): bigint {
    if (attrs & DMA_ATTR_MMIO) return DMA_MAPPING_ERROR;
    if (!this.needIommu(dev, phys, size)) return phys;
    const bus = this.mapArea(dev, phys, size, 0);
    this.flushGart();
    return bus;
  }

  private inAperture(addr: bigint): boolean {
    return addr >= this.busBase && addr < this.busBase + BigInt(this.pages * PAGE);
  }

  unmapPhys(dev: Device, addr: bigint, size: number): void {
    if (addr === DMA_MAPPING_ERROR) {
      this.mm.events.warnOnce('gart_unmap_phys:mapping_error', 'gart', `${dev.name}: gart_unmap_phys: WARN_ON_ONCE(dma_addr == DMA_MAPPING_ERROR)`);
      return;
    }
    // a passthrough mapping (outside the aperture) has nothing to unmap
    if (!this.inAperture(addr)) return;
    const page = Number((addr - this.busBase) / BigInt(PAGE));
    const npages = iommuNumPages(addr, size, PAGE);
    if (page + npages > this.pages) {
      // Model deviation: the kernel would write scratch entries past the GATT and clear bits past
      // iommu_gart_bitmap (memory that is not theirs); the model refuses the unmap
      modelCheckEvent(this.mm.events, `${dev.name}: gart_unmap_phys of 0x${addr.toString(16)}+${size}: GATT entries ${page}..${page + npages - 1} `
        + `run past the aperture's ${this.pages}; refused`, { dev: dev.name });
      return;
    }
    for (let i = 0; i < npages; i++) this.setPte(page + i, this.unmappedEntry);
    this.freeIommu(page, npages);
  }

  /**
   * gart_map_sg: per entry, or (iommu_merge) page-aligned runs of entries that need the GART in one
   * allocation. A zero-length entry is a BUG (KernelBug thrown), as the kernel's BUG_ON has it.
   */
  mapSg(dev: Device, ents: readonly DmaOpsEntry[], dir: number, attrs: number): Result<DmaOpsSeg[]> {
    if (ents.length === 0) return err('EINVAL', 'no entries');
    for (let i = 0; i < ents.length; i++) {
      if (ents[i].mmio) return err('EIO', `entry ${i} is MMIO: gart_map_phys refuses DMA_ATTR_MMIO`);
    }
    const maxSeg = dmaGetMaxSegSize(dev);
    const out: DmaOpsSeg[] = [];
    let start = 0, need = false, pages = 0, segSize = 0;
    const off = (i: number): number => Number(ents[i].phys % BigInt(PAGE));
    const cont = (first: number, count: number): boolean => {
      if (!need) {
        out.push({ addr: ents[first].phys, len: ents[first].len, first, count: 1 });
        return true;
      }
      const iommuStart = this.allocIommu(dev, pages, 0);
      if (iommuStart === -1) return false;
      let page = iommuStart;
      let len = 0;
      for (let k = first; k < first + count; k++) {
        const e = ents[k];
        let p = e.phys;
        for (let n = iommuNumPages(BigInt(off(k)), e.len, PAGE); n > 0; n--) {
          this.setPte(page++, gptEncode(p));
          p += BigInt(PAGE);
        }
        len += e.len;
      }
      out.push({ addr: this.busBase + BigInt(iommuStart * PAGE) + BigInt(off(first)), len, first, count });
      return true;
    };
    let failed = false;
    for (let i = 0; i < ents.length && !failed; i++) {
      const e = ents[i];
      if (e.len === 0) this.mm.events.bug('gart', `${dev.name}: gart_map_sg: BUG_ON(s->length == 0), entry ${i}`, { dev: dev.name, entry: i });
      const nextneed = this.needIommu(dev, e.phys, e.len);
      if (i > start) {
        const prev = ents[i - 1];
        if (!this.merge || !nextneed || !need || off(i) !== 0 || e.len + segSize > maxSeg || (off(i - 1) + prev.len) % PAGE !== 0) {
          if (!cont(start, i - start)) { failed = true; break; }
          segSize = 0;
          pages = 0;
          start = i;
        }
      }
      segSize += e.len;
      need = nextneed;
      pages += iommuNumPages(BigInt(off(i)), e.len, PAGE);
    }
    if (!failed && !cont(start, ents.length - start)) failed = true;
    this.flushGart();
    if (!failed) return ok(out);
    this.unmapSg(dev, out);
    // when forced or merging, try again one entry at a time (dma_map_sg_nonforce)
    if (this.force || this.merge) {
      const r = this.mapSgNonforce(dev, ents);
      if (r !== null) return ok(r);
    }
    this.iommuFull(dev, pages * PAGE);
    void dir; void attrs;
    return err('ENOMEM', 'GART aperture full');
  }

  private mapSgNonforce(dev: Device, ents: readonly DmaOpsEntry[]): DmaOpsSeg[] | null {
    const out: DmaOpsSeg[] = [];
    for (let i = 0; i < ents.length; i++) {
      const e = ents[i];
      let addr = e.phys;
      if (!dmaCapable(dev, e.phys, e.len, true)) {
        addr = this.mapArea(dev, e.phys, e.len, 0);
        if (addr === DMA_MAPPING_ERROR) {
          this.unmapSg(dev, out);
          this.flushGart();
          return null;
        }
      }
      out.push({ addr, len: e.len, first: i, count: 1 });
    }
    this.flushGart();
    return out;
  }

  /**
   * gart_dma_ops.dma_supported is dma_direct_supported (arch/x86/kernel/amd_gart_64.c): a mask below
   * 32 bits must still reach the end of ZONE_DMA, whatever the aperture could remap.
   */
  dmaSupported(dev: Device, mask: bigint): boolean {
    return dmaDirectSupported(dev, mask);
  }

  /** gart_dma_ops.get_required_mask is dma_direct_get_required_mask (arch/x86/kernel/amd_gart_64.c). */
  getRequiredMask(dev: Device): bigint {
    return dmaDirectGetRequiredMask(dev);
  }

  unmapSg(dev: Device, segs: readonly DmaOpsSeg[]): void {
    for (const s of segs) this.unmapPhys(dev, s.addr, s.len);
  }

  translate(_dev: Device, addr: bigint): DmaOpsXlate {
    if (!this.inAperture(addr)) {
      // outside the aperture the northbridge passes the address through
      const lim = addr < this.busBase ? this.busBase - addr : 1n << 40n;
      return { phys: addr, len: Number(lim > 1n << 40n ? 1n << 40n : lim) };
    }
    const i = Number((addr - this.busBase) / BigInt(PAGE));
    const pte = this.pte(i);
    if (!(pte & GPTE_VALID)) return `GART: GATT entry ${i} is not valid`;
    const o = Number(addr % BigInt(PAGE));
    return { phys: gptDecode(pte) + BigInt(o), len: PAGE - o };
  }

  inspect(): DmaOpsState {
    const entries: Array<[number, bigint]> = [];
    for (let i = 0; i < this.pages; i++) {
      const p = this.pte(i);
      if (p !== 0) entries.push([i, BigInt(p)]);
    }
    return {
      kind: 'gart', ops: 'gart_dma_ops', entries, allocated: this.bitmap.setBits(), hints: { nextBit: this.nextBit },
      flushes: this.flushes, bounceBytes: 0,
      extra: {
        busBase: this.busBase, pages: this.pages, needFlush: this.needFlush, unmappedEntry: BigInt(this.unmappedEntry),
        merge: this.merge, force: this.force, fullflush: this.fullflush,
      },
    };
  }
}

/** Zeroed kernel pages holding at least `bytes` (tables the hardware reads). */
export function allocZeroed(mm: MachineMm, bytes: number): bigint {
  const pages = Math.max(1, Math.ceil(bytes / mm.pageSize));
  let order = 0;
  while (1 << order < pages) order++;
  const r = mm.allocKernelPages(order);
  if (!r.ok) throw new RangeError(`dmaOps: no ${bytes} bytes of RAM left for the table (${r.errno})`);
  const phys = r.value * BigInt(mm.pageSize);
  mm.mem.fill(phys, (1 << order) * mm.pageSize, 0);
  return phys;
}
