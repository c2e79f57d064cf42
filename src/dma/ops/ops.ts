// Models: include/linux/dma-map-ops.h (struct dma_map_ops, get_dma_ops / set_dma_ops,
// dev->dma_ops_bypass) and lib/iommu-helper.c (iommu_area_alloc, iommu_num_pages), the pieces every
// dma_map_ops family shares: the per-device ops table, the bitmap allocator of the aperture-style
// families, and the batch entry the phyr path and dma_map_sg both feed a family.
// Model deviation: the kernel's map_sg walks a scatterlist; here a family's map_sg takes an array of
// (phys, len, mmio) entries and returns its DMA segments, so dma_map_sgtable and dmaMapPhyrs drive
// the same merge rule with no scatterlist in between (the output is what the kernel's map_sg writes
// into sg_dma_address / sg_dma_len, with sgTail for what a shorter result leaves after it). What a
// failed map_sg leaves in the scatterlist's DMA fields is not modelled: they keep their old values.

import { SlotKey, err, ok, type EventLog, type Result } from '../../base/internal.ts';
import { DMA_ATTR_MMIO, DMA_MAPPING_ERROR } from '../constants.ts';
import type { Device } from '../../pci/index.ts';

export type DmaOpsKind = 'gart' | 'tce' | 'xen-swiotlb' | 'xen-grant' | 'dummy';

/** One input range of a family's map_sg (a scatterlist entry, or one range of a phyr list). */
export interface DmaOpsEntry {
  readonly phys: bigint;
  readonly len: number;
  /** The range is MMIO (dma_map_phys with DMA_ATTR_MMIO); scatterlist entries never are. */
  readonly mmio: boolean;
}

/** One DMA segment a family's map_sg produced: it covers `count` input entries from `first`. */
export interface DmaOpsSeg {
  readonly addr: bigint;
  readonly len: number;
  readonly first: number;
  readonly count: number;
  /**
   * map_sg wrote only this segment's sg_dma_len (0), not its sg_dma_address, which keeps whatever
   * the scatterlist held (ppc_iommu_map_sg's first segment when the list starts with zero-length
   * entries). `addr` is then meaningless.
   */
  readonly lenOnly?: boolean;
}

/** What the device's DMA engine gets for one DMA address: a physical address and how far it runs, or why it faults. */
export type DmaOpsXlate = { phys: bigint; len: number } | string;

/** The state of a family as dmaOpsInspect lists it. */
export interface DmaOpsState {
  readonly kind: DmaOpsKind;
  /** The kernel's ops symbol (e.g. gart_dma_ops). */
  readonly ops: string;
  /** Table entries that are not in their fresh state: [index, entry] (bigint, the raw bytes' value). */
  readonly entries: Array<[number, bigint]>;
  /** Allocated allocator slots (bitmap bits set, grant refs in use). */
  readonly allocated: number[];
  /** The allocator's rotor or hints (family-specific names). */
  readonly hints: Record<string, number>;
  /** TLB / GART flushes the family issued. */
  readonly flushes: number;
  /** Bytes bounced (xen-swiotlb), 0 elsewhere. */
  readonly bounceBytes: number;
  /** Family-specific facts (e.g. broken for xen-grant, bypass for tce). */
  readonly extra: Record<string, unknown>;
}

/** A dma_map_ops instance bound to one device's machine. */
export interface DmaMapOps {
  readonly kind: DmaOpsKind;
  /**
   * What a successful map_sg writes into a scatterlist past its segments when they are fewer than
   * the entries: 'end-mark' is sg_dma_len 0 in the entry after the last segment, where the family's
   * unmap_sg stops (ppc_iommu_map_sg); 'phys-end-mark' the same, with every entry past the segments
   * also keeping the sg_dma_address set to its sg_phys (gart_map_sg sets it for every entry first).
   * Absent: nothing (one segment per entry).
   */
  readonly sgTail?: 'end-mark' | 'phys-end-mark';
  /** ->map_phys: the DMA address or DMA_MAPPING_ERROR. */
  mapPhys(dev: Device, phys: bigint, size: number, dir: number, attrs: number): bigint;
  /** ->unmap_phys. */
  unmapPhys(dev: Device, addr: bigint, size: number, dir: number, attrs: number): void;
  /** ->map_sg over entries: the family's segments, or the kernel's errno (EINVAL, ENOMEM, EIO). */
  mapSg(dev: Device, ents: readonly DmaOpsEntry[], dir: number, attrs: number): Result<DmaOpsSeg[]>;
  /** ->unmap_sg over the segments map_sg returned. */
  unmapSg(dev: Device, segs: readonly DmaOpsSeg[], dir: number, attrs: number): void;
  /** ->sync_single_for_cpu (absent: the kernel calls nothing). */
  syncSingleForCpu?(dev: Device, addr: bigint, size: number, dir: number): void;
  /** ->sync_single_for_device. */
  syncSingleForDevice?(dev: Device, addr: bigint, size: number, dir: number): void;
  /** ->dma_supported (absent: every mask is supported). */
  dmaSupported?(dev: Device, mask: bigint): boolean;
  /** ->get_required_mask (absent: dma_get_required_mask answers DMA_BIT_MASK(32)). */
  getRequiredMask?(dev: Device): bigint;
  /** ->max_mapping_size (absent: SIZE_MAX). */
  maxMappingSize?(dev: Device): number;
  /** arch_dma_map_phys_direct(dev, end) (powerpc only). */
  archMapPhysDirect?(dev: Device, end: bigint): boolean;
  /** arch_dma_unmap_phys_direct(dev, addr + size) (powerpc only). */
  archUnmapPhysDirect?(dev: Device, end: bigint): boolean;
  /** Whether the DMA address is a swiotlb bounce slot (for dma-debug and dma_need_sync). */
  isBounced?(dev: Device, addr: bigint): boolean;
  /** The device side: where a DMA access at addr lands (hardware translation of the family). */
  translate(dev: Device, addr: bigint, write: boolean): DmaOpsXlate;
  /** The family's state, listable. */
  inspect(): DmaOpsState;
}

/** dev->dma_ops and dev->dma_ops_bypass. */
export interface DevDmaOps {
  readonly ops: DmaMapOps;
  /** dev->dma_ops_bypass (CONFIG_DMA_OPS_BYPASS: powerpc sets it for a device with a direct window). */
  bypass: boolean;
}

const DMA_OPS = new SlotKey<DevDmaOps>('dma-ops');

/** set_dma_ops. */
export function setDmaOps(dev: Device, ops: DmaMapOps, bypass = false): void {
  dev.slots.set(DMA_OPS, { ops, bypass });
}

/** get_dma_ops: the device's ops, or null (dma-direct or dma-iommu). */
export function getDmaOps(dev: Device): DmaMapOps | null {
  return dev.slots.get(DMA_OPS)?.ops ?? null;
}

/** The ops slot itself (ops and bypass flag), or undefined. */
export function devDmaOps(dev: Device): DevDmaOps | undefined {
  return dev.slots.get(DMA_OPS);
}

/** dmaOpsInspect(dev): the state of the device's dma_map_ops family, or null when it has none. */
export function dmaOpsInspect(dev: Device): DmaOpsState | null {
  return getDmaOps(dev)?.inspect() ?? null;
}

/** iommu_num_pages: I/O pages of ioPageSize that [addr, addr + len) touches. */
export function iommuNumPages(addr: bigint, len: number, ioPageSize: number): number {
  const off = Number(addr % BigInt(ioPageSize));
  return Math.ceil((off + len) / ioPageSize);
}

/** Eight bytes of 1 read as one float64 (a normal number: compared exactly). */
const ALL_ONES = new Float64Array(new Uint8Array(8).fill(1).buffer)[0];

/** Entries per chunk of IommuBitmap's free counts. */
const CHUNK = 1024;

/**
 * A bitmap allocator (the free map of an aperture table), as unsigned long words in the kernel.
 * The searches give the kernel's answers (bitmap_find_next_zero_area); to find them fast in a
 * table that has filled up (powerpc's iommu_range_alloc rescans a full pool for every allocation
 * once it is full), the bitmap also keeps how many entries of each chunk of 1,024 are clear, and
 * steps over whole full or whole clear chunks.
 */
export class IommuBitmap {
  readonly bits: Uint8Array;
  /** The same bytes eight at a time, for the searches to step over runs of full or empty bytes. */
  private readonly words: Float64Array;
  /** Clear entries in each chunk of CHUNK entries (the last chunk may be shorter). */
  private readonly free: Int32Array;
  constructor(readonly size: number) {
    const buf = new ArrayBuffer(Math.ceil(size / 8) * 8);
    this.bits = new Uint8Array(buf, 0, size);
    this.words = new Float64Array(buf);
    this.free = new Int32Array(Math.ceil(size / CHUNK));
    for (let c = 0; c < this.free.length; c++) this.free[c] = Math.min(CHUNK, size - c * CHUNK);
  }

  /** The first index >= i below end whose byte is 0 (end when none). */
  private skipSet(i: number, end: number): number {
    const bits = this.bits, words = this.words, free = this.free;
    while (i < end && bits[i] !== 0) {
      if ((i & (CHUNK - 1)) === 0 && i + CHUNK <= end && free[i / CHUNK] === 0) i += CHUNK;
      else if ((i & 7) === 0 && i + 8 <= end && words[i >> 3] === ALL_ONES) i += 8;
      else i++;
    }
    return i;
  }

  /** The first index >= i below end whose byte is not 0 (end when none). */
  private skipClear(i: number, end: number): number {
    const bits = this.bits, words = this.words, free = this.free;
    while (i < end && bits[i] === 0) {
      if ((i & (CHUNK - 1)) === 0 && i + CHUNK <= end && free[i / CHUNK] === CHUNK) i += CHUNK;
      else if ((i & 7) === 0 && i + 8 <= end && words[i >> 3] === 0) i += 8;
      else i++;
    }
    return i;
  }

  /** Sets [start, start + n) to v (1 or 0), keeping the chunks' free counts. */
  private fillRange(start: number, n: number, v: number): void {
    const bits = this.bits, free = this.free;
    for (let i = start; i < start + n;) {
      const c = Math.floor(i / CHUNK);
      const e = Math.min(start + n, (c + 1) * CHUNK);
      let changed = 0;
      for (let j = i; j < e; j++) if (bits[j] !== v) changed++;
      free[c] += v === 0 ? changed : -changed;
      i = e;
    }
    bits.fill(v, start, start + n);
  }

  test(i: number): boolean {
    return this.bits[i] !== 0;
  }

  set(start: number, n: number): void {
    this.fillRange(start, n, 1);
  }

  clear(start: number, n: number): void {
    this.fillRange(start, n, 0);
  }

  /** Clear entries in chunk c (for tests: they must equal a count of the bits). */
  freeInChunk(c: number): number {
    return this.free[c];
  }

  /** Indices of set bits. */
  setBits(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.size; i++) if (this.bits[i]) out.push(i);
    return out;
  }

  /** bitmap_find_next_zero_area: the first aligned run of nr clear bits at or after start below size (>= size when none). */
  findNextZeroArea(size: number, start: number, nr: number, alignMask: number): number {
    for (;;) {
      let index = this.skipSet(start, size);
      index = (index + alignMask) & ~alignMask;
      const end = index + nr;
      if (end > size) return end;
      const i = this.skipClear(index, end);
      if (i === end) return index;
      start = i + 1;
    }
  }

  /**
   * iommu_area_alloc (lib/iommu-helper.c): never the last bit below `size` ("we don't want the last
   * of the limit"), skipping runs that would cross a segment boundary of boundarySize (a power of two,
   * in pages, counted from `shift`). Returns the index, or -1; or AREA_ALLOC_LOCKUP where the kernel
   * never returns: a run longer than the boundary spans it wherever it starts, and once the free
   * run found starts on a boundary, the next search starts at that same index.
   */
  areaAlloc(size: number, start: number, nr: number, shift: number, boundarySize: number, alignMask: number): number {
    const lim = size - 1;
    for (;;) {
      const index = this.findNextZeroArea(lim, start, nr, alignMask);
      if (index >= lim) return -1;
      if (isSpanBoundary(index, nr, shift, boundarySize)) {
        start = alignUp(shift + index, boundarySize) - shift;
        if (start === index) return AREA_ALLOC_LOCKUP;
        continue;
      }
      this.set(index, nr);
      return index;
    }
  }
}

/** IommuBitmap.areaAlloc's answer where iommu_area_alloc loops for ever. */
export const AREA_ALLOC_LOCKUP = -2;

/**
 * What the kernel does at AREA_ALLOC_LOCKUP: iommu_area_alloc spins under the allocator's spinlock
 * with interrupts off, and the machine is stuck. Recorded as a BUG and thrown as KernelBug (the
 * simulated machine can go no further).
 */
export function areaAllocLockup(events: EventLog, source: string, dev: Device, nr: number, boundarySize: number): never {
  return events.bug(source, `${dev.name}: iommu_area_alloc: a run of ${nr} pages spans every ${boundarySize}-page segment boundary, `
    + 'and the search restarts at the same index for ever (lockup)', { dev: dev.name, nr, boundarySize });
}

/** iommu_is_span_boundary. */
export function isSpanBoundary(index: number, nr: number, shift: number, boundarySize: number): boolean {
  const s = (shift + index) % boundarySize;
  return s + nr > boundarySize;
}

function alignUp(x: number, a: number): number {
  return Math.ceil(x / a) * a;
}

/**
 * map_sg of the families that map entry by entry (drivers/xen/swiotlb-xen.c: xen_swiotlb_map_sg,
 * drivers/xen/grant-dma-ops.c: xen_grant_dma_map_sg): each entry through `mapOne` (DMA_ATTR_MMIO
 * added for an MMIO entry), one segment per entry. When an entry fails, `undo` gets the segments
 * mapped so far with their entries' attrs, and the call fails EIO naming the entry.
 */
export function mapSgEachEntry(ents: readonly DmaOpsEntry[], attrs: number, what: string,
  mapOne: (e: DmaOpsEntry, attrs: number) => bigint,
  undo: (done: readonly DmaOpsSeg[], attrsOf: (j: number) => number) => void): Result<DmaOpsSeg[]> {
  const attrsOf = (j: number): number => (ents[j].mmio ? attrs | DMA_ATTR_MMIO : attrs);
  const out: DmaOpsSeg[] = [];
  for (let i = 0; i < ents.length; i++) {
    const e = ents[i];
    const a = mapOne(e, attrsOf(i));
    if (a === DMA_MAPPING_ERROR) {
      undo(out, attrsOf);
      return err('EIO', `entry ${i} (0x${e.phys.toString(16)}+${e.len}) could not be ${what}`);
    }
    out.push({ addr: a, len: e.len, first: i, count: 1 });
  }
  return ok(out);
}
