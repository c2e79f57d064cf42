// Models: the classification half of block/blk-mq-dma.c (blk_dma_map_iter_start /
// blk_dma_map_iter_next with pci_p2pdma_state()) and mm/hmm.c (hmm_dma_map_pfn), over any range
// source: each range's memory type and P2P provider are looked up in the machine's memory map
// (page -> pgmap -> provider in the kernel) and the range is given the way it must be mapped.
// Unlike struct blk_dma_iter, a failure is the return value of next(), never a status field that
// a caller can forget to read. The memory-type lookup that answers page -> pgmap for the whole DMA
// layer lives here too. Also dma_get_max_seg_size / dma_get_seg_boundary /
// dma_get_merge_boundary as one set of cursor limits (include/linux/dma-mapping.h).

import { SlotKey, err, ok, posToBig, type Result } from '../base/internal.ts';
import type { MachineMm, MemRegion } from '../mm/index.ts';
import type { Device } from '../pci/index.ts';
import {
  PCI_P2PDMA_MAP_BUS_ADDR, PCI_P2PDMA_MAP_NOT_SUPPORTED, PCI_P2PDMA_MAP_THRU_HOST_BRIDGE, PciP2pdmaMapState,
  pciP2pdmaBusAddrMap, pciP2pdmaState,
} from '../pci/index.ts';
import { RANGE_MMIO, rangeProvider, type CursorOptions, type RangeCursor, type RangeSource } from '../phyr/index.ts';
import { dmaContextOf } from './context.ts';
import { iommuGetDmaDomain } from '../iommu/index.ts';
import { dmaGetMaxSegSize, dmaGetSegBoundary } from './mask.ts';

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
    const ends = this.ends;
    if (i >= ends.length || a < this.starts[i] || a >= ends[i]) {
      // another region than the last look-up's: the search is out of line, so that the per-range
      // callers that inline index() compile only the common case
      i = this.search(a);
      if (i < 0) return MEM_HOLE;
      this.last = i;
    }
    return a + len <= ends[i] ? i : MEM_CROSSES;
  }

  /** Binary search of the region holding a; MEM_HOLE when none does. */
  private search(a: number): number {
    const starts = this.starts, ends = this.ends;
    let lo = 0, hi = starts.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (a < starts[mid]) hi = mid - 1;
      else if (a >= ends[mid]) lo = mid + 1;
      else return mid;
    }
    return MEM_HOLE;
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
/** 4 KiB frames below this start below 2^53: frame * 4096 + off is exact. */
const FRAME_NUM_LIMIT = 2 ** 41;
/** The slot on a machine that holds its memory-type lookup. */
const MEM_TYPE_LOOKUP = new SlotKey<MemTypeLookup>('dma-mem-type-lookup');

/** The memory-type lookup of a machine (one per machine, created on first use). */
export function memTypeLookup(mm: MachineMm): MemTypeLookup {
  return mm.slots.getOrCreate(MEM_TYPE_LOOKUP, () => new MemTypeLookup(mm));
}

/** Normal memory: mapped as it is. */
export const DMA_RANGE_RAM = 0;
/** I/O memory, or P2P through the host bridge: mapped with DMA_ATTR_MMIO. */
export const DMA_RANGE_MMIO = 1;
/** P2P through a switch: the PCI bus address is the DMA address; nothing is mapped. */
export const DMA_RANGE_BUS = 2;
export type DmaRangeKind = typeof DMA_RANGE_RAM | typeof DMA_RANGE_MMIO | typeof DMA_RANGE_BUS;

/** DmaRangeClassifier.classify: P2P between the range's provider and the device is not supported. */
export const DMA_RANGE_UNSUPPORTED = -3;

/**
 * Classifies ranges for one device, one call per range in walk order (pci_p2pdma_state() keeps its
 * provider across calls): the memory's type from the machine's memory map, then the P2P map type.
 * The one classification loop of every mapping path (dmaMapPhyrs, dma_map_sg on dma-direct and
 * dma-iommu, drivers' per-range mapping).
 */
export class DmaRangeClassifier {
  readonly dev: Device;
  /** After classify: the memory's range flags, and the bus address of a DMA_RANGE_BUS range. */
  flags = 0;
  busAddr = 0n;
  private readonly look: MemTypeLookup;
  private readonly p2p = new PciP2pdmaMapState();

  /** @throws TypeError if dev is on no built machine. */
  constructor(dev: Device) {
    this.dev = dev;
    this.look = memTypeLookup(dmaContextOf(dev).mm);
  }

  /**
   * The kind of [a, a + len) (a an exact number): DMA_RANGE_RAM, _MMIO or _BUS; or a negative code:
   * MEM_HOLE / MEM_CROSSES (the memory map does not hold it in one region) or DMA_RANGE_UNSUPPORTED.
   */
  classify(a: number, len: number): number {
    return this.kindOf(this.look.index(a, len), a);
  }

  /**
   * classify() for an address held as a 4 KiB frame and the offset in it (base/frame-offset.ts,
   * shift 12). Memory regions lie below 2^52, so a position past 2^53 is looked up by its bigint
   * only to name it in the hole the memory map reports.
   */
  classifyPos(frame: number, off: number, len: number): number {
    if (frame < FRAME_NUM_LIMIT) return this.classify(frame * 4096 + off, len);
    return this.classifyBig(posToBig(frame, off, 12), len);
  }

  /** classify() for an exact bigint address. */
  classifyBig(a: bigint, len: number): number {
    return this.kindOf(this.look.indexBig(a, len), Number(a));
  }

  /** The EINVAL / EREMOTEIO of a negative classify() result (what names the range, e.g. 'entry 3'). */
  error(code: number, what: string, addr: bigint, len: number): Result<never> {
    if (code === DMA_RANGE_UNSUPPORTED) {
      return err('EREMOTEIO', `${what} (0x${addr.toString(16)}): P2P between its provider and ${this.dev.name} is not supported`);
    }
    return this.look.error(code, what, addr, len);
  }

  private kindOf(ri: number, a: number): number {
    if (ri < 0) return ri;
    const flags = this.look.flagsOf(ri);
    this.flags = flags;
    this.busAddr = 0n;
    const kind = (flags & RANGE_MMIO) !== 0 ? DMA_RANGE_MMIO : DMA_RANGE_RAM;
    // P2P memory out of line: the per-range callers inline kindOf (see index)
    return rangeProvider(flags) !== 0 ? this.p2pKind(flags, a, kind) : kind;
  }

  /**
   * kindOf for memory of a P2P provider: pci_p2pdma_state() between it and the device decides,
   * else `kind`, what the flags alone give.
   */
  private p2pKind(flags: number, a: number, kind: number): number {
    const t = pciP2pdmaState(this.p2p, this.dev, flags);
    if (t === PCI_P2PDMA_MAP_NOT_SUPPORTED) return DMA_RANGE_UNSUPPORTED;
    if (t === PCI_P2PDMA_MAP_BUS_ADDR) {
      this.busAddr = pciP2pdmaBusAddrMap(this.p2p.mem!, BigInt(a));
      return DMA_RANGE_BUS;
    }
    return t === PCI_P2PDMA_MAP_THRU_HOST_BRIDGE ? DMA_RANGE_MMIO : kind;
  }
}

const STEP: Result<boolean> = Object.freeze(ok(true));
const DONE: Result<boolean> = Object.freeze(ok(false));

/**
 * Walks a range source once and classifies each range for one device. After next() returns
 * { ok: true, value: true } the fields describe the current range; { value: false } ends the walk;
 * { ok: false } stops it: EINVAL (the range lies in a hole of the memory map or runs from one memory
 * region into another) or EREMOTEIO (P2P between the range's provider and the device is not
 * supported). The walk applies any segment limits passed in (dmaSegmentLimits gives the device's).
 */
export class DmaRangeIter {
  readonly dev: Device;
  /** Index of the current range in the walk (segments, when limits split entries). */
  index = -1;
  /** Start of the current range as a number: exact, since every memory region lies below 2^52. */
  addrNum = 0;
  len = 0;
  /** Range flags of the memory holding the range (phyr/flags.ts), not the caller's. */
  flags = 0;
  kind: DmaRangeKind = DMA_RANGE_RAM;
  /** The bus address when kind is DMA_RANGE_BUS (else 0n). */
  busAddr = 0n;
  /** false once a range's own flags differed from its memory's. */
  callerFlagsMatch = true;
  private readonly cursor: RangeCursor;
  private readonly fits: boolean;
  private readonly cl: DmaRangeClassifier;

  /** @throws TypeError when source is not a range source or dev is on no machine. */
  constructor(dev: Device, source: RangeSource, opts?: CursorOptions) {
    if (source === null || typeof source !== 'object' || typeof (source as RangeSource).cursor !== 'function') {
      throw new TypeError(`source must be a range source (RangeSource), got ${String(source)}`);
    }
    this.dev = dev;
    this.cl = new DmaRangeClassifier(dev);
    this.cursor = source.cursor(opts);
    this.fits = source.addrFitsNumber;
  }

  /** The current range's start as a bigint. */
  get addr(): bigint {
    return BigInt(this.addrNum);
  }

  /** Moves to the next range and classifies it; see the class comment for the results. */
  next(): Result<boolean> {
    const c = this.cursor;
    if (c.done) {
      if (c.stopReason !== 'virt-boundary') return DONE;
      return err('EINVAL', `range ${this.index + 1}: the seam before it is not aligned to the walk's virt boundary (split the request there)`);
    }
    const l = c.len;
    const n = this.index + 1;
    const a = this.fits ? c.addrNum : Number(c.addr);
    const k = this.fits ? this.cl.classify(a, l) : this.cl.classifyBig(c.addr, l);
    if (k < 0) return this.cl.error(k, `range ${n}`, this.fits ? BigInt(a) : c.addr, l);
    const flags = this.cl.flags;
    if (c.flags !== flags) this.callerFlagsMatch = false;
    const kind = k as DmaRangeKind;
    const bus = this.cl.busAddr;
    this.index = n;
    this.addrNum = a;
    this.len = l;
    this.flags = flags;
    this.kind = kind;
    this.busAddr = bus;
    c.next();
    return STEP;
  }
}

/** A device's segment limits as cursor options, with its merge boundary beside them. */
export interface DmaSegmentLimits extends CursorOptions {
  readonly maxSegmentLen: number;
  readonly segBoundaryMask: bigint;
  readonly merge: boolean;
  /**
   * dma_get_merge_boundary(): granule - 1 behind a dma-iommu domain, 0 (no merging by the DMA
   * layer) on dma-direct. A block driver that wants the IOMMU to merge segments uses it as its
   * virt boundary (blk_queue_can_use_dma_map_merging()); it is not applied to walks by itself.
   */
  readonly mergeBoundary: number;
}

/**
 * The segment limits a device puts on a walk: dma_get_max_seg_size() and dma_get_seg_boundary()
 * as cursor options; with merge on (the default), physically adjacent pieces with equal flags become
 * one segment, as blk_rq_map_sg() and blk_dma_map_iter_next() build them.
 */
export function dmaSegmentLimits(dev: Device, merge = true): DmaSegmentLimits {
  const domain = dev.dmaIommu ? iommuGetDmaDomain(dev) : null;
  return {
    maxSegmentLen: dmaGetMaxSegSize(dev),
    segBoundaryMask: dmaGetSegBoundary(dev),
    merge,
    mergeBoundary: domain !== null ? domain.granule - 1 : 0,
  };
}
