// Models: the entry point the phyr discussion asked for and Linux lacks, "a phyr in, a DMA range
// list out" (Matthew Wilcox, "Phyr Starter", linux-mm, 10 Jan 2022; Jason Gunthorpe, "Re:
// [LSF/MM/BPF proposal]: Physr discussion", 23 Jan 2023): dmaMapPhyrs / dmaUnmapPhyrs. It composes
// what Linux 7.1 does piecemeal in block/blk-mq-dma.c (blk_dma_map_iter_start(): P2P classification
// by pci_p2pdma_state(), blk_can_dma_map_iova(), IOVA coalescing in blk_rq_dma_map_iova() with
// per-segment fallback to blk_dma_map_direct()) and mm/hmm.c (hmm_dma_map_pfn()), over any range
// source walked through the cursor protocol.

import { SlotKey, err, ok, type Result } from '../base/internal.ts';
import { iommuGetDmaDomain } from '../iommu/index.ts';
import type { Device } from '../pci/index.ts';
import { DmaList, DmaListBuilder, PhyrList, type RangeSource } from '../phyr/index.ts';
import { DMA_ATTR_MMIO, DMA_BIDIRECTIONAL, checkAttrs, validDmaDirection, type DmaDataDirection } from './constants.ts';
import { modelCheckEvent } from './events.ts';
import { dmaContextOf } from './context.ts';
import { dmaCapable } from './direct-addr.ts';
import { DMA_RANGE_BUS, DMA_RANGE_MMIO, DMA_RANGE_RAM, DmaRangeIter } from './map-iter.ts';
import { devUseSwiotlb, iovaOffset } from './iommu-dma.ts';
import { isSwiotlbActive, isSwiotlbForceBounce } from './swiotlb.ts';
import { dmaGoDirect, dmaMapPhys, dmaOpsMapBatch, dmaOpsUnmapBatch, dmaUnmapPhys } from './mapping.ts';
import { getDmaOps, type DmaMapOps, type DmaOpsEntry, type DmaOpsSeg } from './ops/ops.ts';
import { rangeProvider } from '../phyr/index.ts';
import { DmaIovaState, dmaIovaDestroy, dmaIovaSync, dmaIovaTryAlloc, iovaLink } from './iova-state.ts';

/** What dmaMapPhyrs did, so that dmaUnmapPhyrs undoes exactly that; also what a listing shows. */
export class DmaPhyrsMapping {
  /** The DMA ranges to give the device. */
  readonly list: DmaList;
  readonly dev: Device;
  readonly dir: DmaDataDirection;
  readonly attrs: number;
  /**
   * 'iova': one window of the two-step API; 'ranges': one dmaMapPhys per range that is not a bus
   * address; 'ops': the device's dma_map_ops family, batched (runs of ranges through its map_sg, the
   * ranges a direct window covers through dma-direct).
   */
  readonly how: 'iova' | 'ranges' | 'ops';
  /** The two-step state ('iova' only). */
  readonly state: DmaIovaState | null;
  /** Bytes mapped through the DMA API (bus-address ranges excluded). */
  readonly mappedLen: number;
  /** 'ranges': DMA address, length and kind (DMA_RANGE_*) of each input range. */
  private readonly addrs: BigUint64Array | null;
  private readonly lens: Float64Array | null;
  private readonly kinds: Uint8Array | null;
  /** 'ops': what was mapped, in input order. */
  private readonly parts: OpsPart[] | null;
  /** 'iova': DMA_ATTR_MMIO when the window holds MMIO only (added to the destroy's attrs), else 0. */
  private readonly windowAttrs: number;
  private live = true;

  /** @internal made by dmaMapPhyrs only. */
  constructor(
    list: DmaList, dev: Device, dir: DmaDataDirection, attrs: number, how: 'iova' | 'ranges' | 'ops', state: DmaIovaState | null,
    mappedLen: number, addrs: BigUint64Array | null, lens: Float64Array | null, kinds: Uint8Array | null,
    parts: OpsPart[] | null = null, windowAttrs = 0,
  ) {
    this.parts = parts;
    this.windowAttrs = windowAttrs;
    this.list = list;
    this.dev = dev;
    this.dir = dir;
    this.attrs = attrs;
    this.how = how;
    this.state = state;
    this.mappedLen = mappedLen;
    this.addrs = addrs;
    this.lens = lens;
    this.kinds = kinds;
  }

  /**
   * 'ops': the DMA segments in input order, as the family made them (a merged segment covers
   * `count` input ranges from `first`); empty otherwise. These are what dma_map_sg of the same
   * ranges writes into the table.
   */
  get opsSegments(): DmaOpsSeg[] {
    const out: DmaOpsSeg[] = [];
    for (const p of this.parts ?? []) {
      if (p.segs) out.push(...p.segs);
      else out.push({ addr: p.addr, len: p.len, first: p.index, count: 1 });
    }
    return out;
  }

  /** false once dmaUnmapPhyrs undid it. */
  get mapped(): boolean {
    return this.live;
  }

  /** @internal dmaUnmapPhyrs: unmaps what was mapped, once. */
  undo(attrs: number): void {
    this.live = false;
    mappingsOf(this.dev).delete(this);
    if (this.how === 'iova') {
      dmaIovaDestroy(this.dev, this.state!, this.mappedLen, this.dir, attrs | this.windowAttrs);
      return;
    }
    if (this.how === 'ops') {
      undoParts(this.dev, this.parts!, this.parts!.length, this.dir, attrs);
      return;
    }
    const kinds = this.kinds!;
    for (let i = kinds.length - 1; i >= 0; i--) {
      const k = kinds[i];
      if (k === DMA_RANGE_BUS) continue;
      dmaUnmapPhys(this.dev, this.addrs![i], this.lens![i], this.dir, k === DMA_RANGE_MMIO ? attrs | DMA_ATTR_MMIO : attrs);
    }
  }
}

/** One piece of an 'ops' mapping: a range dma-direct mapped (a direct window), or a batch through the family. */
interface OpsPart {
  readonly index: number;
  readonly addr: bigint;
  readonly len: number;
  readonly mmio: boolean;
  /** The family's segments (batch parts), indices relative to the whole input; null for a direct range. */
  readonly segs: DmaOpsSeg[] | null;
}

function undoParts(dev: Device, parts: readonly OpsPart[], n: number, dir: DmaDataDirection, attrs: number): void {
  for (let i = n - 1; i >= 0; i--) {
    const p = parts[i];
    if (p.segs) dmaOpsUnmapBatch(dev, p.segs, dir, attrs);
    else dmaUnmapPhys(dev, p.addr, p.len, dir, p.mmio ? attrs | DMA_ATTR_MMIO : attrs);
  }
}

/** The slot on each device that lists the dmaMapPhyrs mappings it holds. */
const PHYRS_MAPPINGS = new SlotKey<Set<DmaPhyrsMapping>>('dma-phyrs-mappings');
/** 1 / 4096, exact: the frame of an address by multiplication. */
const INV_4K = 1 / 4096;

function mappingsOf(dev: Device): Set<DmaPhyrsMapping> {
  return dev.slots.getOrCreate(PHYRS_MAPPINGS, () => new Set());
}

/** The dmaMapPhyrs mappings dev holds now, oldest first. */
export function dmaPhyrsMappings(dev: Device): DmaPhyrsMapping[] {
  return [...(dev.slots.get(PHYRS_MAPPINGS) ?? [])];
}

/** Input ranges in columns, with their classification (addresses are exact numbers: they lie in memory). */
interface Classified {
  n: number;
  addrNum: Float64Array;
  len: Float64Array;
  kind: Uint8Array;
  /** Range flags of the memory behind each range (from the memory map). */
  flags: Uint32Array;
  /** Whether every range's own flags equal its memory's (the input can then be shared as is). */
  callerFlagsMatch: boolean;
  /** Whether every seam between mapped ranges is aligned to the IOMMU granule (DmaRangeIter.seamsMergeable). */
  seamsMergeable: boolean;
  /** Whether every range that is mapped (not a bus address) is MMIO. */
  mmioOnly: boolean;
  /** Bus address of each DMA_RANGE_BUS range, by index. */
  bus: ReadonlyMap<number, bigint>;
  ioLen: number;
}

/**
 * Walks the source once through DmaRangeIter.fill(): address, length, memory flags and kind of
 * each range, in columns. Errors: those of DmaRangeIter.next (EINVAL, EREMOTEIO).
 */
function classify(dev: Device, list: RangeSource): Result<Classified> {
  let cap = Math.max(1, list.count);
  let addrNum = new Float64Array(cap), len = new Float64Array(cap), kind = new Uint8Array(cap), flags = new Uint32Array(cap);
  const it = new DmaRangeIter(dev, list);
  let n = 0;
  for (;;) {
    if (n === cap) {
      if (it.atEnd) break;
      // a source whose walk has more segments than entries (limits would cut them; none are given)
      cap *= 2;
      const a2 = new Float64Array(cap); a2.set(addrNum); addrNum = a2;
      const l2 = new Float64Array(cap); l2.set(len); len = l2;
      const k2 = new Uint8Array(cap); k2.set(kind); kind = k2;
      const f2 = new Uint32Array(cap); f2.set(flags); flags = f2;
    }
    const r = it.fill({ addrNum: addrNum.subarray(n), len: len.subarray(n), flags: flags.subarray(n), kind: kind.subarray(n) }, cap - n);
    if (!r.ok) return r;
    if (r.value === 0) break;
    n += r.value;
  }
  return ok({
    n, addrNum, len, kind, flags, callerFlagsMatch: it.callerFlagsMatch, seamsMergeable: it.seamsMergeable, bus: it.busAddrs,
    mmioOnly: (it.kindsSeen & (1 << DMA_RANGE_RAM)) === 0,
    ioLen: it.mappedLen,
  });
}

/**
 * Maps every range of `list` (any range source) for DMA by dev and returns the DMA range list.
 * Each range is classified from the memory it lies in (the machine's memory map: RAM; MMIO; P2P by
 * bus address; P2P through the host bridge, mapped as MMIO; unsupported P2P), never from the
 * range's own flags, which are ignored; the DMA list's entries carry the memory's flags. Behind a
 * dma-iommu domain the ranges go into ONE contiguous IOVA window through the two-step API when every
 * interior seam is granule-aligned (one DMA entry, plus an entry per bus-address range); otherwise
 * each range is mapped with dmaMapPhys. When dma-direct maps every range to its own physical address
 * (and the input's flags are the memory's), the result shares the input PhyrList's storage (zero copy).
 * Errnos: EINVAL (empty list; a range in a hole of the memory map or crossing from one memory
 * region into another, named in the message), EREMOTEIO (P2P not supported between a provider and
 * dev), and what the mapping reports: ENOMEM (IOVA/swiotlb exhausted, address beyond the mask without swiotlb),
 * EPERM (an MMIO range that would need bouncing: swiotlb forced, beyond the mask with a swiotlb
 * pool, unaligned for a bouncing device; dmaMapPhys itself says ENOMEM there, as the kernel's
 * DMA_MAPPING_ERROR), EIO. On failure nothing stays mapped.
 */
export function dmaMapPhyrs(dev: Device, list: RangeSource, dir: DmaDataDirection, attrs: number): Result<DmaPhyrsMapping> {
  if (list === null || typeof list !== 'object' || typeof (list as RangeSource).cursor !== 'function') {
    throw new TypeError(`list must be a range source (RangeSource), got ${String(list)}`);
  }
  checkAttrs(attrs);
  const ctx = dmaContextOf(dev);
  if (!validDmaDirection(dir)) ctx.mm.events.bug('dma-mapping', `dmaMapPhyrs: invalid DMA direction ${String(dir)}`, { dev: dev.name, dir });
  if (list.totalLen === 0) return err('EINVAL', 'list is empty');
  const c = classify(dev, list);
  if (!c.ok) return c;
  const cl = c.value;

  let r: Result<DmaPhyrsMapping> | null = null;
  const ops = dev.dmaIommu ? null : getDmaOps(dev);
  if (ops !== null && !dmaGoDirect(dev)) r = mapOps(dev, ops, cl, dir, attrs);
  if (dev.dmaIommu && cl.ioLen > 0) r = mapIova(dev, cl, dir, attrs);
  if (r === null) r = mapRanges(dev, list, cl, dir, attrs);
  if (r.ok) mappingsOf(dev).add(r.value);
  return r;
}

/**
 * The batch path of a dma_map_ops family: no P2P (dma_pci_p2pdma_supported() is false for every
 * ops device: EREMOTEIO); ranges the device's direct window covers (arch_dma_map_phys_direct, as
 * dma_map_phys decides it per range) go to dma-direct, each run of the others is one batch through
 * the family's map_sg with its own merge rule (GART iommu_merge, TCE handle adjacency).
 */
function mapOps(dev: Device, ops: DmaMapOps, cl: Classified, dir: DmaDataDirection, attrs: number): Result<DmaPhyrsMapping> {
  for (let i = 0; i < cl.n; i++) {
    if (cl.kind[i] === DMA_RANGE_BUS || rangeProvider(cl.flags[i]) !== 0) {
      return err('EREMOTEIO', `range ${i} is P2PDMA memory: ${ops.kind} dma_map_ops do not support PCI P2PDMA (dma_pci_p2pdma_supported)`);
    }
  }
  const parts: OpsPart[] = [];
  let run: DmaOpsEntry[] = [];
  let runStart = 0;
  const flush = (): Result<void> => {
    if (run.length === 0) return ok();
    const r = dmaOpsMapBatch(dev, run, dir, attrs);
    if (!r.ok) return r;
    const segs = r.value.map((s) => ({ addr: s.addr, len: s.len, first: s.first + runStart, count: s.count }));
    parts.push({ index: runStart, addr: segs[0].addr, len: 0, mmio: false, segs });
    run = [];
    return ok();
  };
  for (let i = 0; i < cl.n; i++) {
    const phys = BigInt(cl.addrNum[i]);
    const len = cl.len[i];
    const mmio = cl.kind[i] === DMA_RANGE_MMIO;
    if (!mmio && ops.archMapPhysDirect?.(dev, phys + BigInt(len))) {
      const f = flush();
      const m = f.ok ? dmaMapPhys(dev, phys, len, dir, attrs) : f;
      if (!m.ok) {
        undoParts(dev, parts, parts.length, dir, attrs);
        return m;
      }
      parts.push({ index: i, addr: m.value, len, mmio, segs: null });
      continue;
    }
    if (run.length === 0) runStart = i;
    run.push({ phys, len, mmio });
  }
  const f = flush();
  if (!f.ok) {
    undoParts(dev, parts, parts.length, dir, attrs);
    return f;
  }
  const b = new DmaListBuilder(cl.n);
  for (const p of parts) {
    if (p.segs) for (const s of p.segs) b.pushBig(s.addr, s.len, cl.flags[s.first]);
    else b.pushBig(p.addr, p.len, cl.flags[p.index]);
  }
  return ok(new DmaPhyrsMapping(b.build(), dev, dir, attrs, 'ops', null, cl.ioLen, null, null, null, parts));
}

/** The two-step path; null when it does not apply (seams, no window): the caller falls back. */
function mapIova(dev: Device, cl: Classified, dir: DmaDataDirection, attrs: number): Result<DmaPhyrsMapping> | null {
  const domain = iommuGetDmaDomain(dev);
  if (!domain || !cl.seamsMergeable) return null;
  const state = new DmaIovaState();
  let first = -1;
  for (let i = 0; i < cl.n; i++) if (cl.kind[i] !== DMA_RANGE_BUS) { first = i; break; }
  if (!dmaIovaTryAlloc(dev, state, BigInt(cl.addrNum[first]), cl.ioLen)) return null;
  // a window of MMIO only (P2P through the host bridge) is destroyed with DMA_ATTR_MMIO, as
  // blk_rq_dma_unmap() does for a PCI_P2PDMA_MAP_THRU_HOST_BRIDGE request (include/linux/blk-mq-dma.h):
  // no CPU cache maintenance on I/O memory. Model deviation: a window mixing RAM and MMIO (the
  // kernel maps a request of one kind) is destroyed as RAM.
  const destroyAttrs = cl.mmioOnly ? attrs | DMA_ATTR_MMIO : attrs;
  const b = new DmaListBuilder(1 + cl.bus.size);
  const failed = linkRanges(dev, state, cl, dir, attrs, b, destroyAttrs);
  if (failed !== null) return failed;
  // every range but the bus ones is linked: cl.ioLen bytes of the window
  const s = dmaIovaSync(dev, state, 0, cl.ioLen);
  if (!s.ok) {
    dmaIovaDestroy(dev, state, cl.ioLen, dir, destroyAttrs);
    return s;
  }
  return ok(new DmaPhyrsMapping(b.build(), dev, dir, attrs, 'iova', state, cl.ioLen, null, null, null, null, destroyAttrs & DMA_ATTR_MMIO));
}


/**
 * mapIova's loop, a function of its own so that V8 optimises it while it runs (on-stack
 * replacement) without the code after the loop, which has not run yet and would deoptimise it at
 * the exit: links each non-bus range of cl at the next window offset (dma_iova_link) and pushes
 * the DMA entries to b. null when all are linked; else the failed link's Result, with the window
 * destroyed.
 */
function linkRanges(dev: Device, state: DmaIovaState, cl: Classified, dir: DmaDataDirection, attrs: number,
  b: DmaListBuilder, destroyAttrs: number): Result<never> | null {
  // The DMA entries: the builder merges DMA-contiguous pushes with equal flags, so a run of links
  // with equal flags is pushed once, as the merged entry it would become, when the next range is a
  // bus range or has other flags or there is none (so nothing is left to push after the loop).
  let runStart = 0, runLen = 0;
  const addrNum = cl.addrNum, lens = cl.len, kinds = cl.kind, flags = cl.flags;
  const n = cl.n;
  const attrsMmio = attrs | DMA_ATTR_MMIO;
  let offset = 0;
  for (let i = 0; i < n; i++) {
    const len = lens[i];
    const k = kinds[i];
    if (k === DMA_RANGE_BUS) {
      b.pushBig(cl.bus.get(i)!, len, flags[i]);
      continue;
    }
    // arguments validated here (attrs, dir) or by the range source (addresses, lengths); the
    // frame's bytes are frame / INV_4K, not frame * 4096: a small-integer product overflows
    // (and deoptimises) once addresses pass 2 GiB
    const a = addrNum[i];
    const frame = Math.floor(a * INV_4K);
    const r = iovaLink(dev, state, frame, a - frame / INV_4K, offset, len, dir, k === DMA_RANGE_MMIO ? attrsMmio : attrs);
    if (!r.ok) {
      dmaIovaDestroy(dev, state, offset, dir, destroyAttrs);
      return r;
    }
    const f = flags[i];
    if (runLen === 0) runStart = offset;
    runLen += len;
    offset += len;
    if (i + 1 === n || kinds[i + 1] === DMA_RANGE_BUS || flags[i + 1] !== f) {
      pushRun(b, state, runStart, runLen, f);
      runLen = 0;
    }
  }
  return null;
}

/** Pushes the DMA entry of window bytes [runStart, runStart + runLen) to b. */
function pushRun(b: DmaListBuilder, state: DmaIovaState, runStart: number, runLen: number, runFlags: number): void {
  if (state.addrNum >= 0) b.push(state.addrNum + runStart, runLen, runFlags);
  else b.pushBig(state.addr + BigInt(runStart), runLen, runFlags);
}

/** The per-range path: dmaMapPhys for each RAM/MMIO range, the bus address for each BUS range. */
function mapRanges(dev: Device, list: RangeSource, cl: Classified, dir: DmaDataDirection, attrs: number): Result<DmaPhyrsMapping> {
  const addrs = new BigUint64Array(cl.n);
  let identity = list instanceof PhyrList && !dev.dmaIommu && cl.callerFlagsMatch;
  for (let i = 0; i < cl.n; i++) {
    const k = cl.kind[i];
    if (k === DMA_RANGE_BUS) {
      addrs[i] = cl.bus.get(i)!;
      identity = false;
      continue;
    }
    const a = BigInt(cl.addrNum[i]);
    const r = dmaMapPhys(dev, a, cl.len[i], dir, k === DMA_RANGE_MMIO ? attrs | DMA_ATTR_MMIO : attrs);
    if (!r.ok) {
      for (let j = i - 1; j >= 0; j--) {
        if (cl.kind[j] !== DMA_RANGE_BUS) dmaUnmapPhys(dev, addrs[j], cl.len[j], dir, cl.kind[j] === DMA_RANGE_MMIO ? attrs | DMA_ATTR_MMIO : attrs);
      }
      // dma_map_phys only says DMA_MAPPING_ERROR; say EPERM, as dma_iova_link does
      // (drivers/iommu/dma-iommu.c: iommu_dma_iova_link_swiotlb), when the range is MMIO and it
      // failed because it would need a bounce buffer
      if (k === DMA_RANGE_MMIO && mmioNeedsBounce(dev, a, cl.len[i])) {
        return err('EPERM', `range ${i} (0x${a.toString(16)}+${cl.len[i]}) is MMIO and would need bouncing for ${dev.name}`);
      }
      return r;
    }
    addrs[i] = r.value;
    if (r.value !== a) identity = false;
  }
  let dl: DmaList;
  if (identity) {
    dl = DmaList.sharing(list as PhyrList);
  } else {
    const b = new DmaListBuilder(cl.n);
    for (let i = 0; i < cl.n; i++) b.pushBig(addrs[i], cl.len[i], cl.flags[i]);
    dl = b.build();
  }
  return ok(new DmaPhyrsMapping(dl, dev, dir, attrs, 'ranges', null, cl.ioLen, addrs, cl.len.slice(0, cl.n), cl.kind.slice(0, cl.n)));
}

/**
 * Whether mapping MMIO [phys, phys + len) for dev would take a bounce buffer, which MMIO cannot
 * use: dma-direct with swiotlb forced (CoCo), or beyond the DMA limit with a swiotlb pool
 * (kernel/dma/direct.h: dma_direct_map_phys); dma-iommu for a device that bounces (untrusted) a
 * granule-unaligned range (drivers/iommu/dma-iommu.c: iommu_dma_map_phys).
 */
function mmioNeedsBounce(dev: Device, phys: bigint, len: number): boolean {
  if (!dev.dmaIommu) {
    return isSwiotlbForceBounce(dev) || (isSwiotlbActive(dev) && !dmaCapable(dev, phys, len, false));
  }
  const domain = iommuGetDmaDomain(dev);
  if (!domain || !devUseSwiotlb(dev, len, DMA_BIDIRECTIONAL)) return false;
  return iovaOffset(domain, phys) !== 0 || len % domain.granule !== 0;
}

/**
 * Undoes dmaMapPhyrs exactly: destroys the IOVA window, or unmaps each range mapped with dmaMapPhys
 * (bus-address ranges need nothing). Unmapping a mapping twice, something dmaMapPhyrs did not
 * return, or with another device is reported (MODEL-CHECK: dmaMapPhyrs has no kernel counterpart)
 * and does nothing; another direction is
 * reported and the mapping is undone with the direction it was made with.
 */
export function dmaUnmapPhyrs(dev: Device, mapping: DmaPhyrsMapping, dir: DmaDataDirection, attrs: number): void {
  checkAttrs(attrs);
  const ctx = dmaContextOf(dev);
  if (!(mapping instanceof DmaPhyrsMapping)) {
    modelCheckEvent(ctx.mm.events, `${dev.name}: dmaUnmapPhyrs of something dmaMapPhyrs did not return`, { dev: dev.name });
    return;
  }
  if (!mapping.mapped) {
    modelCheckEvent(ctx.mm.events, `${dev.name}: dmaUnmapPhyrs of a mapping already unmapped`, { dev: dev.name });
    return;
  }
  if (mapping.dev !== dev) {
    modelCheckEvent(ctx.mm.events, `${dev.name}: dmaUnmapPhyrs of a mapping made for ${mapping.dev.name}`, { dev: dev.name });
    return;
  }
  if (mapping.dir !== dir) {
    modelCheckEvent(ctx.mm.events, `${dev.name}: dmaUnmapPhyrs with direction ${dir}, mapped with ${mapping.dir}`, { dev: dev.name, dir, mappedDir: mapping.dir });
  }
  mapping.undo(attrs);
}
