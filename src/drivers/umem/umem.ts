// Models: a driver pinning a user buffer and mapping it for DMA, written once per design the
// kernel has: a page array, a scatterlist built from it and dma_map_sgtable (in one
// sg_alloc_table_from_pages_segment call, or, with ibUmemBatches, appended a page of pointers at a
// time as RDMA's ib_umem_get() does: drivers/infiniband/core/umem.c, pin_user_pages_fast into a
// page array, sg_alloc_append_table_from_pages, ib_dma_map_sgtable_attrs), one
// dma_map_phys() per physical range (kernel/dma/mapping.c, as mm/hmm.c maps pfns one by one), the
// two-step IOVA API as block/blk-mq-dma.c uses it (dma_iova_try_alloc, dma_iova_link per range,
// dma_iova_sync; per-range fallback when there is no IOVA window), and the phyr entry point
// dmaMapPhyrs. In every design a P2P range between devices under one switch is given to the device
// as its PCI bus address and not mapped (pci_p2pdma_state(): PCI_P2PDMA_MAP_BUS_ADDR). Each returns
// the DMA segments in buffer byte order (in columns: no object per range), the kernel bytes of its
// metadata, and an undo that unmaps and unpins exactly what was done. umemMapPinned maps a phyr list
// the caller pinned by the same designs (the scenario runner's pin steps).

import { type Result, err, ok } from '../../base/index.ts';
import {
  DMA_ATTR_MMIO, DMA_BIDIRECTIONAL, dmaGetMaxSegSize, DMA_RANGE_BUS, DMA_RANGE_MMIO, DMA_RANGE_RAM, DmaIovaState, DmaRangeIter, dmaContextOf, dmaIovaDestroy,
  dmaIovaFree, dmaIovaLink, dmaIovaSync, dmaIovaTryAlloc, dmaMapPhyrs, dmaMapPhys, dmaMapSgtable, dmaUnmapPhyrs,
  dmaUnmapPhys, dmaUnmapSgtable, type DmaDataDirection,
} from '../../dma/index.ts';
import {
  FOLL_PCI_P2PDMA, FOLL_WRITE, pinUserPagesAll, pinUserPhyrsAll, unpinUserPages, unpinUserPhyrs, type UserMm,
} from '../../mm/index.ts';
import type { MachineMm } from '../../mm/index.ts';
import type { Device } from '../../pci/index.ts';
import {
  SgAppendTable, sgAllocAppendTableFromPages, sgAllocTableFromPagesSegment, sgFreeAppendTable, sgFreeTable, type PhyrList, type RangeSource,
  type SgPageOpts,
} from '../../phyr/index.ts';

/** The four designs, in report order. */
export const UMEM_METHODS = ['sgtable', 'map-phys', 'two-step', 'map-phyrs'] as const;
export type UmemMethod = (typeof UMEM_METHODS)[number];

export const UMEM_METHOD_LABELS: Readonly<Record<UmemMethod, string>> = {
  sgtable: 'scatterlist + dmaMapSgtable',
  'map-phys': 'dmaMapPhys per phyr',
  'two-step': 'two-step dmaIova*',
  'map-phyrs': 'dmaMapPhyrs',
};

/**
 * The DMA segments a mapping gives the device, in buffer byte order (a DmaList is one). Valid until
 * the mapping's unmap().
 */
export interface UmemSegments {
  /** Number of segments. */
  readonly count: number;
  /** DMA address of segment i, exact over 64 bits. @throws RangeError for an index out of [0, count). */
  addrAt(i: number): bigint;
  /** Bytes in segment i. @throws RangeError for an index out of [0, count). */
  lenAt(i: number): number;
}

/** SegmentColumns' index error, out of line. */
function badUmemIndex(i: number, n: number): never {
  throw new RangeError(`index must be an integer in [0, ${n}), got ${String(i)}`);
}

/**
 * Segments in columns: addresses as numbers (exact below 2^53) with the rare larger one kept as a
 * bigint, so that a mapping of 200,000 ranges holds no per-range object.
 */
class SegmentColumns implements UmemSegments {
  private n: number;
  private readonly addr: Float64Array;
  private readonly len: Float64Array;
  private big: Map<number, bigint> | null = null;

  constructor(count: number) {
    this.n = count;
    this.addr = new Float64Array(count);
    this.len = new Float64Array(count);
  }

  set(i: number, addr: bigint, len: number): void {
    if (addr <= MAX_SAFE_BIG) {
      this.addr[i] = Number(addr);
    } else {
      (this.big ??= new Map()).set(i, addr);
    }
    this.len[i] = len;
  }

  get count(): number {
    return this.n;
  }

  /** Keeps the first n segments only. */
  truncate(n: number): void {
    this.n = Math.min(this.n, n);
  }

  setNum(i: number, addrNum: number, len: number): void {
    this.addr[i] = addrNum;
    this.len[i] = len;
  }

  private check(i: number): void {
    // the message out of line: the per-entry accessors inline this test (see checkLen)
    if (!Number.isInteger(i) || i < 0 || i >= this.n) badUmemIndex(i, this.n);
  }

  addrAt(i: number): bigint {
    this.check(i);
    const b = this.big?.get(i);
    return b !== undefined ? b : BigInt(this.addr[i]);
  }

  lenAt(i: number): number {
    this.check(i);
    return this.len[i];
  }
}

const MAX_SAFE_BIG = BigInt(Number.MAX_SAFE_INTEGER);

/** The segments of a range source's walk (no limits; empty entries are not segments), in columns. */
function segmentsOf(src: RangeSource): SegmentColumns {
  const n = src.count;
  const out = new SegmentColumns(n);
  const c = src.cursor();
  const fits = src.addrFitsNumber;
  let i = 0;
  for (; !c.done && i < n; c.next()) {
    if (fits) out.setNum(i++, c.addrNum, c.len);
    else out.set(i++, c.addr, c.len);
  }
  out.truncate(i);
  return out;
}

/** A user buffer pinned and mapped for a device by one design. */
export interface UmemMapping {
  readonly method: UmemMethod;
  /** The DMA segments the device is given, in buffer byte order. */
  readonly segments: UmemSegments;
  /** Kernel bytes of the mapping's metadata: page array + sg_table; 16 B per dma_vec; 16 B dma_iova_state; the DMA list. */
  readonly metadataBytes: number;
  /** Unmaps and unpins exactly what was done; a second call does nothing. */
  unmap(): void;
}

export interface UmemOptions {
  /** Pin with FOLL_PCI_P2PDMA (the buffer may be a P2P BAR). */
  readonly p2p?: boolean;
  /**
   * max_segment of the scatterlist design (sg_alloc_table_from_pages_segment). Default: the
   * device's dma_get_max_seg_size(), as ib_umem_get() passes ib_dma_max_seg_size().
   */
  readonly maxSegment?: number;
  /**
   * The scatterlist design builds its table as ib_umem_get() does (drivers/infiniband/core/umem.c):
   * one sg_alloc_append_table_from_pages() per PAGE_SIZE / sizeof(struct page *) pages, each told
   * how many pages are left, which sizes the table's chunks differently from one
   * sg_alloc_table_from_pages_segment() over the whole array (the same entries). The pages are still
   * pinned in one call. Default false.
   */
  readonly ibUmemBatches?: boolean;
  /** Direction of every mapping. Default DMA_BIDIRECTIONAL. */
  readonly dir?: DmaDataDirection;
}

/**
 * Pins [start, start + len) of mm (FOLL_WRITE, plus FOLL_PCI_P2PDMA with opts.p2p) and maps it for
 * dev by one design. Errnos: those of the pin and of the mapping calls, with the failing call named
 * in the message; on failure nothing stays pinned or mapped.
 */
export function umemMap(dev: Device, mm: UserMm, start: bigint, len: number, method: UmemMethod, opts: UmemOptions = {}): Result<UmemMapping> {
  const gup = FOLL_WRITE | (opts.p2p ? FOLL_PCI_P2PDMA : 0);
  const dir = opts.dir ?? DMA_BIDIRECTIONAL;
  if (method === 'sgtable') return mapSgtable(dev, mm, start, len, gup, dir, opts.maxSegment ?? dmaGetMaxSegSize(dev), opts.ibUmemBatches === true);
  const pinned = pinUserPhyrsAll(mm, start, len, gup);
  if (!pinned.ok) return err(pinned.errno, `pinUserPhyrs: ${pinned.message ?? pinned.errno}`);
  const list: PhyrList = pinned.value;
  const r = mapList(dev, list, method, dir, 0);
  if (!r.ok) {
    unpinUserPhyrs(list);
    return r;
  }
  const { undo, segments, metadataBytes } = r.value;
  return ok({ method, segments, metadataBytes, unmap: once(() => { undo(); unpinUserPhyrs(list); }) });
}

/** f, to be called once: later calls do nothing (an unmap called twice). */
function once(f: () => void): () => void {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    f();
  };
}

/** A phyr list the caller pinned, mapped by one design (umemMapPinned); unmapping leaves the pin. */
export interface UmemListMapping {
  /** The DMA segments the device is given, in list byte order. */
  readonly segments: UmemSegments;
  /** Kernel bytes of the mapping's metadata, as UmemMapping.metadataBytes. */
  readonly metadataBytes: number;
  /**
   * The IOVA window of the two-step design (or of dmaMapPhyrs' window), null when the ranges were
   * mapped one by one (no dma-iommu, or every range a bus address).
   */
  readonly iova: DmaIovaState | null;
  /** Unmaps exactly what was mapped (never a bus address); a second call does nothing. */
  unmap(): void;
}

/** Options of umemMapPinned. */
export interface UmemListOptions {
  /** Direction of every mapping. Default DMA_BIDIRECTIONAL. */
  readonly dir?: DmaDataDirection;
  /** DMA_ATTR_* for every call (DMA_ATTR_MMIO is added for ranges the classification says are MMIO). Default 0. */
  readonly attrs?: number;
}

/**
 * Maps a phyr list the caller pinned (pinUserPhyrs) for dev by one of the phyr designs: map-phys,
 * two-step or map-phyrs, as umemMap does after its pin. Errnos: those of the classification
 * (EINVAL, EREMOTEIO) and of the mapping calls, the failing call named in the message; on failure
 * nothing stays mapped. The pin is the caller's, before and after.
 * @throws RangeError for the sgtable method (it maps a page array: umemMap pins one).
 */
export function umemMapPinned(dev: Device, list: PhyrList, method: UmemMethod, opts: UmemListOptions = {}): Result<UmemListMapping> {
  if (method === 'sgtable') throw new RangeError('umemMapPinned maps a phyr list: method must be map-phys, two-step or map-phyrs, got sgtable');
  const r = mapList(dev, list, method, opts.dir ?? DMA_BIDIRECTIONAL, opts.attrs ?? 0);
  if (!r.ok) return r;
  const { undo, segments, metadataBytes, iova } = r.value;
  return ok({ segments, metadataBytes, iova, unmap: once(undo) });
}

function mapList(dev: Device, list: PhyrList, method: Exclude<UmemMethod, 'sgtable'>, dir: DmaDataDirection, attrs: number): Result<Mapped> {
  if (method === 'map-phyrs') return mapPhyrs(dev, list, dir, attrs);
  if (method === 'map-phys') return mapPerRange(dev, list, dir, attrs);
  return mapTwoStep(dev, list, dir, attrs);
}

/** The ib_umem design: a page array, a scatterlist built from it, dma_map_sgtable. */
function mapSgtable(dev: Device, mm: UserMm, start: bigint, len: number, gup: number, dir: DmaDataDirection, maxSegment: number,
  batches: boolean): Result<UmemMapping> {
  const machine: MachineMm = dmaContextOf(dev).mm;
  const pageSize = machine.pageSize;
  // pinUserPages rounds start down to its page; the table starts at start's offset in it.
  const offset = Number(start % BigInt(pageSize));
  const nrPages = Math.ceil((offset + len) / pageSize);
  const pages = pinUserPagesAll(mm, start - BigInt(offset), nrPages, gup);
  if (!pages.ok) return err(pages.errno, `pinUserPages: ${pages.message ?? pages.errno}`);
  const facts = new RegionFactsCache(machine);
  const sgOpts = {
    pageSize, events: machine.events, faults: machine,
    pgmapOf: (pfn: number) => facts.at(pfn)?.pgmapId ?? 0,
    // a region has one pgmap: the scatterlist build asks once per run of contiguous pages in it
    pgmapEnd: (pfn: number) => facts.endOf(pfn),
    flagsOf: (pfn: number) => facts.at(pfn)?.rangeFlags ?? 0,
  };
  const sg = batches ? appendInBatches(pages.value.pfns, offset, len, maxSegment, sgOpts)
    : sgAllocTableFromPagesSegment(pages.value.pfns, offset, len, maxSegment, sgOpts);
  if (!sg.ok) {
    unpinUserPages(pages.value);
    return err(sg.errno, `${batches ? 'sgAllocAppendTableFromPages' : 'sgAllocTableFromPagesSegment'}: ${sg.message ?? sg.errno}`);
  }
  const sgt = sg.value instanceof SgAppendTable ? sg.value.sgt : sg.value;
  const tableBytes = sg.value.kernelBytes;
  const r = dmaMapSgtable(dev, sgt, dir, 0);
  if (!r.ok) {
    sgFreeTable(sgt);
    unpinUserPages(pages.value);
    return err(r.errno, `dmaMapSgtable: ${r.message ?? r.errno}`);
  }
  const segments = segmentsOf(sgt.dmaEntries());
  return ok({
    method: 'sgtable', segments, metadataBytes: pages.value.kernelBytes + tableBytes,
    unmap: once(() => {
      dmaUnmapSgtable(dev, sgt, dir, 0);
      sgFreeTable(sgt);
      unpinUserPages(pages.value);
    }),
  });
}

/**
 * ib_umem_get()'s scatterlist: the page array in batches of PAGE_SIZE / sizeof(struct page *) pages,
 * each appended with sg_alloc_append_table_from_pages() and the number of pages after it as
 * left_pages. An error frees what was built.
 */
function appendInBatches(pfns: Float64Array, offset: number, len: number, maxSegment: number, opts: SgPageOpts): Result<SgAppendTable> {
  const pageSize = opts.pageSize ?? 4096;
  const batch = pageSize / 8;
  const append = new SgAppendTable({ pageSize });
  for (let b = 0; b < pfns.length; b += batch) {
    const e = Math.min(pfns.length, b + batch);
    const from = Math.max(b * pageSize, offset), to = Math.min(e * pageSize, offset + len);
    const r = sgAllocAppendTableFromPages(append, pfns.subarray(b, e), b === 0 ? offset : 0, to - from, maxSegment, pfns.length - e, opts);
    if (!r.ok) {
      sgFreeAppendTable(append);
      return r;
    }
  }
  return ok(append);
}

/**
 * Page facts by page frame, remembering the last region found: the lookups of a page array come in
 * runs inside one region.
 */
class RegionFactsCache {
  /** Frames [lo, hi) are the region of `last`. */
  private lo = 0;
  private hi = -1;
  private last: ReturnType<MachineMm['pfnFacts']>;
  constructor(private readonly m: MachineMm) {}

  at(pfn: number): ReturnType<MachineMm['pfnFacts']> {
    if (pfn >= this.lo && pfn < this.hi) return this.last;
    const last = this.m.pfnFacts(BigInt(pfn));
    this.last = last;
    if (last) {
      this.lo = Number(last.region.start) / this.m.pageSize;
      this.hi = this.lo + last.region.len / this.m.pageSize;
    } else {
      this.lo = 0; this.hi = -1;
    }
    return last;
  }

  /** The end (exclusive frame) of pfn's region, or pfn + 1 outside every region. */
  endOf(pfn: number): number {
    return this.at(pfn) ? this.hi : pfn + 1;
  }
}

type Mapped = Omit<UmemMapping, 'method' | 'unmap'> & { readonly iova: DmaIovaState | null; undo: () => void };

function mapPhyrs(dev: Device, list: PhyrList, dir: DmaDataDirection, attrs: number): Result<Mapped> {
  const r = dmaMapPhyrs(dev, list, dir, attrs);
  if (!r.ok) return err(r.errno, `dmaMapPhyrs: ${r.message ?? r.errno}`);
  const mapping = r.value;
  return ok({ segments: mapping.list, metadataBytes: mapping.list.kernelBytes, iova: mapping.state, undo: () => dmaUnmapPhyrs(dev, mapping, dir, attrs) });
}

/**
 * Each range classified as drivers do with pci_p2pdma_state(): kind and, for bus addresses, the
 * address (DmaRangeIter's busAddrs); ioLen is the bytes that are mapped (all but the bus-address
 * ranges) and firstMapped the index of the first such range (-1 when every range is a bus address).
 */
interface RangeKinds {
  readonly kinds: Uint8Array;
  readonly bus: ReadonlyMap<number, bigint>;
  readonly ioLen: number;
  readonly firstMapped: number;
  /** Whether every range that is mapped (not a bus address) is MMIO. */
  readonly mmioOnly: boolean;
}

function classify(dev: Device, list: PhyrList): Result<RangeKinds> {
  const kinds = new Uint8Array(list.count);
  const it = new DmaRangeIter(dev, list);
  let firstMapped = -1;
  for (;;) {
    const r = it.next();
    if (!r.ok) return err(r.errno, `P2P classification: ${r.message ?? r.errno}`);
    if (!r.value) break;
    kinds[it.index] = it.kind;
    if (firstMapped < 0 && it.kind !== DMA_RANGE_BUS) firstMapped = it.index;
  }
  return ok({ kinds, bus: it.busAddrs, ioLen: it.mappedLen, firstMapped, mmioOnly: (it.kindsSeen & (1 << DMA_RANGE_RAM)) === 0 });
}

const attrsOf = (kind: number, attrs: number): number => (kind === DMA_RANGE_MMIO ? attrs | DMA_ATTR_MMIO : attrs);

/** One dma_map_phys per range (a bus address for P2P through a switch). */
function mapPerRange(dev: Device, list: PhyrList, dir: DmaDataDirection, attrs: number, cl?: RangeKinds): Result<Mapped> {
  if (cl === undefined) {
    const c = classify(dev, list);
    if (!c.ok) return c;
    cl = c.value;
  }
  const { kinds, bus } = cl;
  const n = list.count;
  const segs = new SegmentColumns(n);
  const undo = (upTo: number): void => {
    for (let k = upTo - 1; k >= 0; k--) if (kinds[k] !== DMA_RANGE_BUS) dmaUnmapPhys(dev, segs.addrAt(k), segs.lenAt(k), dir, attrsOf(kinds[k], attrs));
  };
  for (let i = 0; i < n; i++) {
    const rl = list.lenAt(i);
    if (kinds[i] === DMA_RANGE_BUS) {
      segs.set(i, bus.get(i)!, rl);
      continue;
    }
    const r = dmaMapPhys(dev, list.addrAt(i), rl, dir, attrsOf(kinds[i], attrs));
    if (!r.ok) {
      undo(i);
      return err(r.errno, `dmaMapPhys(range ${i}): ${r.message ?? r.errno}`);
    }
    segs.set(i, r.value, rl);
  }
  return ok({ segments: segs, metadataBytes: 16 * n, iova: null, undo: () => undo(n) });
}

/**
 * The two-step API as its kernel users drive it: one IOVA window (dma_iova_try_alloc) sized to the
 * ranges that are mapped, each linked at the next window offset (dma_iova_link), one
 * dma_iova_sync. A P2P range between devices under one switch (pci_p2pdma_state() says
 * PCI_P2PDMA_MAP_BUS_ADDR) is handed to the device as its bus address and never linked: that is
 * block/blk-mq-dma.c (blk_dma_map_iter_start() -> blk_dma_map_bus(), before any IOVA is
 * allocated), mm/hmm.c (hmm_dma_map_pfn() returns the bus address without dma_iova_link) and, for
 * a list that mixes both, drivers/iommu/dma-iommu.c (iommu_dma_map_sg(): a bus-address segment is
 * marked with sg_dma_mark_bus_address, left out of the IOVA length and skipped by iommu_map_sg).
 * The segments, in buffer order: each bus-address range on its own, each run of linked ranges
 * between them one piece of the window (the same segments dmaMapPhyrs gives on this path). Undo
 * destroys the linked bytes only; a bus address needs nothing (include/linux/blk-mq-dma.h:
 * blk_rq_dma_unmap() returns at once for PCI_P2PDMA_MAP_BUS_ADDR). dma_map_phys per range when the
 * device does not use dma-iommu (dma_iova_try_alloc fails) or every range is a bus address.
 */
function mapTwoStep(dev: Device, list: PhyrList, dir: DmaDataDirection, attrs: number): Result<Mapped> {
  const c = classify(dev, list);
  if (!c.ok) return c;
  const { kinds, bus, ioLen, firstMapped, mmioOnly } = c.value;
  const state = new DmaIovaState();
  if (firstMapped < 0 || !dmaIovaTryAlloc(dev, state, list.addrAt(firstMapped), ioLen)) {
    const r = mapPerRange(dev, list, dir, attrs, c.value);
    if (!r.ok) return r;
    return ok({ ...r.value, metadataBytes: 16 + r.value.metadataBytes });
  }
  const n = list.count;
  // a window of MMIO only is destroyed with DMA_ATTR_MMIO, as blk_rq_dma_unmap() does for a
  // PCI_P2PDMA_MAP_THRU_HOST_BRIDGE request (include/linux/blk-mq-dma.h): no CPU cache maintenance
  // on I/O memory. Model deviation: a window mixing RAM and MMIO is destroyed as RAM.
  const destroyAttrs = mmioOnly ? attrs | DMA_ATTR_MMIO : attrs;
  const segs = new SegmentColumns(n);
  let count = 0;
  let offset = 0;
  // the window piece being built: from runStart, runLen bytes (0: none open)
  let runStart = 0, runLen = 0;
  for (let i = 0; i < n; i++) {
    const len = list.lenAt(i);
    if (kinds[i] === DMA_RANGE_BUS) {
      if (runLen > 0) segs.set(count++, state.addr + BigInt(runStart), runLen);
      runLen = 0;
      segs.set(count++, bus.get(i)!, len);
      continue;
    }
    const r = dmaIovaLink(dev, state, list.addrAt(i), offset, len, dir, attrsOf(kinds[i], attrs));
    if (!r.ok) {
      if (offset > 0) dmaIovaDestroy(dev, state, offset, dir, destroyAttrs);
      else dmaIovaFree(dev, state);
      return err(r.errno, `dmaIovaLink(range ${i}): ${r.message ?? r.errno}`);
    }
    if (runLen === 0) runStart = offset;
    runLen += len;
    offset += len;
  }
  if (runLen > 0) segs.set(count++, state.addr + BigInt(runStart), runLen);
  segs.truncate(count);
  const s = dmaIovaSync(dev, state, 0, offset);
  if (!s.ok) {
    dmaIovaDestroy(dev, state, offset, dir, destroyAttrs);
    return err(s.errno, `dmaIovaSync: ${s.message ?? s.errno}`);
  }
  const mappedLen = offset;
  // the dma_iova_state, and a 16-byte address + length kept per bus-address segment
  return ok({ segments: segs, metadataBytes: 16 + 16 * bus.size, iova: state, undo: () => dmaIovaDestroy(dev, state, mappedLen, dir, destroyAttrs) });
}
