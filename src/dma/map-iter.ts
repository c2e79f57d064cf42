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
  /**
   * The region of the last look-up; at first none (the length of the list), so that the first
   * look-up takes the search and a caller optimised later has seen it run.
   */
  private last: number;

  constructor(mm: MachineMm) {
    this.regions = mm.regions;
    const n = this.regions.length;
    this.last = n;
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

  /** Start of region i as a number. */
  startOf(i: number): number {
    return this.starts[i];
  }

  /** End of region i as a number. */
  endOf(i: number): number {
    return this.ends[i];
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
  /**
   * After classify of memory no P2P provider owns: the bounds of its region, where every range
   * classifies the same (same flags, same kind); after anything else an empty window (1, 0).
   */
  regionStart = 1;
  regionEnd = 0;
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
    this.regionStart = 1;
    this.regionEnd = 0;
    if (ri < 0) return ri;
    const flags = this.look.flagsOf(ri);
    this.flags = flags;
    this.busAddr = 0n;
    const kind = (flags & RANGE_MMIO) !== 0 ? DMA_RANGE_MMIO : DMA_RANGE_RAM;
    // P2P memory out of line: the per-range callers inline kindOf (see index)
    if (rangeProvider(flags) !== 0) return this.p2pKind(flags, a, kind);
    this.regionStart = this.look.startOf(ri);
    this.regionEnd = this.look.endOf(ri);
    return kind;
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
  /**
   * false once a seam between two ranges that are mapped (not bus addresses) was not aligned to
   * the device's merge boundary + 1 (its IOMMU granule; any seam on dma-direct): the test
   * blk_can_dma_map_iova() makes with the request's gap bits (block/blk-mq-dma.c; the gaps are
   * or-ed up by bvec_seg_gap() in block/blk-merge.c) before it maps a request into one IOVA range.
   */
  seamsMergeable = true;
  /**
   * The bus address of every DMA_RANGE_BUS range so far, by its index in the walk (a P2P range
   * through a switch; few in any list).
   */
  readonly busAddrs = new Map<number, bigint>();
  /** Bytes of the ranges walked so far that are mapped (all but the bus-address ones). */
  mappedLen = 0;
  /** The kinds of the ranges walked so far, as a mask: bit 1 << DMA_RANGE_RAM, _MMIO, _BUS. */
  kindsSeen = 0;
  private readonly cursor: RangeCursor;
  private readonly fits: boolean;
  private readonly cl: DmaRangeClassifier;
  /** 1 / (merge boundary + 1): a seam at x is aligned when x * seamInv is an integer (exact: a power of two). */
  private readonly seamInv: number;
  /** End of the last mapped range, -1 before the first. */
  private lastEnd = -1;
  /** The error fill() stopped the walk with (next() and fill() give it again), or null. */
  private failed: Result<never> | null = null;

  /** @throws TypeError when source is not a range source or dev is on no machine. */
  constructor(dev: Device, source: RangeSource, opts?: CursorOptions) {
    if (source === null || typeof source !== 'object' || typeof (source as RangeSource).cursor !== 'function') {
      throw new TypeError(`source must be a range source (RangeSource), got ${String(source)}`);
    }
    this.dev = dev;
    this.cl = new DmaRangeClassifier(dev);
    this.cursor = source.cursor(opts);
    this.fits = source.addrFitsNumber;
    const domain = dev.dmaIommu ? iommuGetDmaDomain(dev) : null;
    this.seamInv = domain !== null ? 1 / domain.granule : 1;
  }

  /** The current range's start as a bigint. */
  get addr(): bigint {
    return BigInt(this.addrNum);
  }

  /**
   * true once the walk has ended with nothing left to report: next() gives ok(false) and fill()
   * ok(0) from then on (a walk stopped at a virt boundary still has its EINVAL to report).
   */
  get atEnd(): boolean {
    const c = this.cursor;
    return this.failed === null && c.done && c.stopReason !== 'virt-boundary';
  }

  /** Moves to the next range and classifies it; see the class comment for the results. */
  next(): Result<boolean> {
    if (this.failed !== null) return this.failed;
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
    this.kindsSeen |= 1 << kind;
    if (kind === DMA_RANGE_BUS) {
      this.busAddrs.set(n, bus);
    } else {
      if (!seamMergeable(this.lastEnd, a, this.seamInv)) this.seamsMergeable = false;
      this.lastEnd = a + l;
      this.mappedLen += l;
    }
    this.index = n;
    this.addrNum = a;
    this.len = l;
    this.flags = flags;
    this.kind = kind;
    this.busAddr = bus;
    c.next();
    return STEP;
  }

  /**
   * Walks up to max ranges into rows 0 .. k-1 of cols (k ranges, as k calls of next() would give
   * them) and returns ok(k); ok(0) once the walk is done. An error is next()'s, for the first range
   * that has one: the rows before it hold the ranges before it (index is the last of them), and the
   * walk stops there, as next()'s does: every later fill() or next() returns the same error. Bus
   * addresses go to busAddrs. The batched form of next(): the source's own fill() copies the
   * addresses, lengths and flags, and one loop classifies them.
   * @throws TypeError/RangeError when a column is not the typed array named or max is not an
   *   integer in [0, the shortest column's length].
   */
  fill(cols: DmaRangeColumns, max: number): Result<number> {
    const m = checkRangeColumns(cols, max);
    if (this.failed !== null) return this.failed;
    const c = this.cursor;
    if (c.done) {
      const r = this.next();
      return r.ok ? ok(0) : r;
    }
    if (!this.fits) return this.fillByNext(cols, m);
    const k = c.fill({ addr: cols.addrNum, len: cols.len, flags: cols.flags }, m);
    const e = this.classifyRows(cols, k);
    if (e === null) return ok(k);
    // the cursor is past the rows it copied, the failed one included: the walk stops here, as
    // next() stops at a range it cannot classify
    this.failed = e;
    return e;
  }

  /** fill() for a source with addresses past 2^53: one next() per row. */
  private fillByNext(cols: DmaRangeColumns, max: number): Result<number> {
    let k = 0;
    while (k < max) {
      const r = this.next();
      if (!r.ok) return r;
      if (!r.value) break;
      cols.addrNum[k] = this.addrNum;
      cols.len[k] = this.len;
      cols.flags[k] = this.flags;
      cols.kind[k] = this.kind;
      k++;
    }
    return ok(k);
  }

  /**
   * Classifies rows 0 .. k-1 of cols, filled by the cursor with the caller's flags: the memory's
   * flags and the kind replace them. null when all are classified, else the first error.
   */
  private classifyRows(cols: DmaRangeColumns, k: number): Result<never> | null {
    const addr = cols.addrNum, len = cols.len, flags = cols.flags, kinds = cols.kind;
    const cl = this.cl;
    const base = this.index + 1;
    const inv = this.seamInv;
    let match = true;
    let mergeable = this.seamsMergeable;
    let prevEnd = this.lastEnd;
    let mapped = this.mappedLen;
    let seen = this.kindsSeen;
    // the region of the row before, when it was memory no P2P provider owns: rows inside it take
    // its flags and kind without a look-up (most lists lie in one or two regions)
    let lo = 1, hi = 0, f = 0, kind = 0;
    let j = 0;
    for (; j < k; j++) {
      const a = addr[j];
      const l = len[j];
      if (a < lo || a + l > hi) {
        kind = cl.classify(a, l);
        if (kind < 0) break;
        // every kind is classified here first: rows in the cached region have the kind of its first
        seen |= 1 << kind;
        f = cl.flags;
        lo = cl.regionStart;
        hi = cl.regionEnd;
        if (kind === DMA_RANGE_BUS) {
          this.busAddrs.set(base + j, cl.busAddr);
          if (flags[j] !== f) match = false;
          flags[j] = f;
          kinds[j] = kind;
          continue;
        }
      }
      if (flags[j] !== f) match = false;
      flags[j] = f;
      kinds[j] = kind;
      if (!seamMergeable(prevEnd, a, inv)) mergeable = false;
      prevEnd = a + l;
      mapped += l;
    }
    this.seamsMergeable = mergeable;
    this.lastEnd = prevEnd;
    this.mappedLen = mapped;
    this.kindsSeen = seen;
    if (!match) this.callerFlagsMatch = false;
    this.index = base + j - 1;
    if (j < k) return cl.error(kind, `range ${base + j}`, BigInt(addr[j]), len[j]);
    if (k > 0) {
      const last = k - 1;
      this.addrNum = addr[last];
      this.len = len[last];
      this.flags = flags[last];
      this.kind = kinds[last] as DmaRangeKind;
      this.busAddr = kinds[last] === DMA_RANGE_BUS ? cl.busAddr : 0n;
    }
    return null;
  }
}

/**
 * Whether the seam between a mapped range ending at prevEnd (-1: none before) and the next one
 * starting at a is aligned to 1 / inv (a power of two, so x * inv is exact): both are multiples.
 */
function seamMergeable(prevEnd: number, a: number, inv: number): boolean {
  if (prevEnd < 0) return true;
  const x = prevEnd * inv, y = a * inv;
  return x === Math.floor(x) && y === Math.floor(y);
}

/** Columns DmaRangeIter.fill() writes, one row per range. */
export interface DmaRangeColumns {
  /** Start of each range (exact: memory lies below 2^52). */
  readonly addrNum: Float64Array;
  readonly len: Float64Array;
  /** The range flags of the memory holding each range (phyr/flags.ts), not the caller's. */
  readonly flags: Uint32Array;
  /** DMA_RANGE_RAM, _MMIO or _BUS. */
  readonly kind: Uint8Array;
}

/**
 * Checks fill()'s arguments; returns max.
 * @throws TypeError naming the column that is not its typed array; RangeError when max is not an
 *   integer in [0, the shortest column's length].
 */
function checkRangeColumns(cols: DmaRangeColumns, max: number): number {
  if (cols === null || typeof cols !== 'object') throw new TypeError(`cols must be DmaRangeColumns, got ${String(cols)}`);
  const want: Array<[keyof DmaRangeColumns, new (n: number) => ArrayLike<number>]> = [
    ['addrNum', Float64Array], ['len', Float64Array], ['flags', Uint32Array], ['kind', Uint8Array],
  ];
  let cap = Infinity;
  for (const [name, type] of want) {
    const col = cols[name];
    if (!(col instanceof type)) throw new TypeError(`cols.${name} must be a ${type.name}, got ${String(col)}`);
    cap = Math.min(cap, col.length);
  }
  if (!Number.isInteger(max) || max < 0 || max > cap) {
    throw new RangeError(`max must be an integer in [0, ${cap}] (the shortest column's length), got ${String(max)}`);
  }
  return max;
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
