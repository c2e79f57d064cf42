// Models: the two-step IOVA DMA API (Linux 6.16+): struct dma_iova_state and dma_iova_try_alloc,
// dma_iova_link, dma_iova_sync, dma_iova_unlink, dma_iova_destroy, dma_iova_free, dma_use_iova,
// dma_iova_size (include/linux/dma-mapping.h, drivers/iommu/dma-iommu.c).
// The model also keeps, per state, which granules of the window are linked, so that API misuse
// the kernel would not notice (links past the window, overlapping links, unlinking what is not
// linked, use after free) is reported on the event log as MODEL-CHECK events: the kernel has no
// dma-debug hooks in the two-step API, so a debug kernel prints nothing for these.

import {
  alignUp, checkAddr, checkLen, err, FramePos, ok, posAlignDown, posFromU64, posOffsetIn, posToBig, type Result, type Stats,
} from '../base/internal.ts';
import {
  IommuIotlbGather, iommuDmaAllocIova, iommuDmaFreeIova, iommuGetDmaDomain, iommuIotlbSync,
  iommuIovaToPhys, iommuMapBatch, iommuMapNosync, iommuMapPfns, iommuSyncMap, iommuUnmapFast, type IommuDomain,
} from '../iommu/internal.ts';
import type { Device } from '../pci/index.ts';
import { PhyrList, type RangeSource } from '../phyr/index.ts';
import {
  DMA_ATTR_ALL, DMA_ATTR_MMIO, DMA_ATTR_REQUIRE_COHERENT, DMA_ATTR_SKIP_CPU_SYNC, DMA_BIDIRECTIONAL,
  DMA_FROM_DEVICE, DMA_MAPPING_ERROR, DMA_TO_DEVICE, type DmaDataDirection, checkAttrs, validDmaDirection,
} from './constants.ts';
import { modelCheckEvent } from './events.ts';
import { dmaContextOf, type DmaContext } from './context.ts';
import { archSyncDmaFlush, archSyncDmaForCpu, archSyncDmaForDevice } from './cache.ts';
import { debugDmaIovaLink, debugDmaIovaLinkNum, debugDmaIovaUnlink, dmaDebugOf, type DebugMapFacts, type DmaDebug } from './debug.ts';
import { dmaGetMask } from './mask.ts';
import { isSwiotlbActive, isSwiotlbBuffer, swiotlbTblUnmapSingle } from './swiotlb.ts';
import { devUseSwiotlb, dmaInfoToProt, iommuDmaMapSwiotlb } from './iommu-dma.ts';
import './counters.ts';

/** Bit 63 of dma_iova_state.__size: some link of this state went through swiotlb. */
export const DMA_IOVA_USE_SWIOTLB = 1n << 63n;

const OK: Result<void> = ok();
const TRACK_CHUNK = 1 << 18; // granules per tracking chunk: 1 GiB of 4 KiB granules, one bit each (32 KiB)
const INV_4K = 1 / 4096;
/** 4 KiB frames below this start below 2^53: frame * 4096 + off is exact. */
const FRAME_NUM_LIMIT = 2 ** 41;

/**
 * struct dma_iova_state (16 bytes in the kernel): addr is the DMA address of the window's first
 * byte (IOVA base + the alignment hint's offset); the size is private, read it with dmaIovaSize().
 * A fresh state (or one a failed dmaIovaTryAlloc left) has dmaUseIova(state) === false.
 */
export class DmaIovaState {
  // a brand: `#brand in x` is a one-map-check test where instanceof walks the prototype chain
  readonly #brand = true;

  /** true when x is a DmaIovaState (made by its constructor, not merely inheriting its prototype). */
  static is(x: unknown): x is DmaIovaState {
    return typeof x === 'object' && x !== null && #brand in x;
  }

  /** state->addr: IOVA of byte 0 of the window. */
  addr = 0n;
  /** @internal requested size in bytes (state->__size without the swiotlb bit). */
  len = 0;
  /** @internal DMA_IOVA_USE_SWIOTLB is set in __size. */
  useSwiotlb = false;
  /** @internal the device and domain the window belongs to (set by dmaIovaTryAlloc). */
  dev: Device | null = null;
  domain: IommuDomain | null = null;
  /** @internal offset of addr inside its granule (iova_offset of the phys hint). */
  pad = 0;
  /** @internal set once the IOVA went back to the allocator. */
  freed = false;
  /** @internal model bookkeeping: number of linked granules of the window (chunked bitmap below). */
  linkedGranules = 0;
  /**
   * @internal one past the highest granule ever marked linked since the reset: no granule at or
   * above it is linked, so links made in ascending order skip the bitmap scan.
   */
  linkedEnd = 0;
  /** @internal the machine's DMA context, cached for the hot path. */
  ctx: DmaContext | null = null;
  /**
   * @internal model bookkeeping: the granule-aligned IOVAs (as numbers: multiples of the granule
   * below 2^64 are exact) of the granules linked to a swiotlb bounce slot.
   */
  bouncedGranules: Set<number> = new Set();
  /** @internal granule - 1 as a bigint. */
  gmask = 0n;
  /** @internal 1 / granule (a power of two, so x * ginv is exactly x / granule). */
  ginv = 0;
  /**
   * @internal addr as a number when the whole window lies below 2^53, else -1: how the DMA list
   * and dma-debug store the window's addresses (numbers when exact), not a condition of any path.
   */
  addrNum = -1;
  /** @internal the 4 KiB frame of the granule-aligned IOVA the window starts in (addr - pad). */
  baseFrame = 0;
  /**
   * @internal the window's device while the window is live and in 4 KiB granules: the condition
   * for iovaLink's fast path; null otherwise.
   */
  fastDev: Device | null = null;
  /** @internal the machine's counters and dma-debug, cached for the fast path (null until allocated). */
  stats: Stats | null = null;
  debug: DmaDebug | null = null;
  /** @internal granules the window spans (the size of the tracking bitmap). */
  windowGranules = 0;
  /**
   * @internal granules [runStart, runEnd) are linked but not yet set in the bitmap: the run of
   * ascending, contiguous links a driver makes while filling its window costs no bit per link.
   * The run lies at the top (runEnd === linkedEnd when it is not empty) and is written into the
   * bitmap (flushRun) before anything else changes it.
   */
  runStart = 0;
  runEnd = 0;
  private chunks: Array<Uint32Array | undefined> = [];

  /** The kernel's __size word: the length with DMA_IOVA_USE_SWIOTLB in bit 63. */
  get rawSize(): bigint {
    return BigInt(this.len) | (this.useSwiotlb ? DMA_IOVA_USE_SWIOTLB : 0n);
  }

  /** What the same structure costs in the kernel (LP64): 16 bytes. */
  get kernelBytes(): number {
    return 16;
  }

  /** @internal zero everything (the kernel's memset at the start of dma_iova_try_alloc). */
  reset(): void {
    this.addr = 0n;
    this.len = 0;
    this.useSwiotlb = false;
    this.dev = null;
    this.domain = null;
    this.pad = 0;
    this.freed = false;
    this.linkedGranules = 0;
    this.linkedEnd = 0;
    this.ctx = null;
    this.gmask = 0n;
    this.ginv = 0;
    this.addrNum = -1;
    this.baseFrame = 0;
    this.fastDev = null;
    this.stats = null;
    this.debug = null;
    this.windowGranules = 0;
    this.runStart = 0;
    this.runEnd = 0;
    this.chunks = [];
    this.bouncedGranules = new Set();
  }

  /** @internal writes the pending run into the bitmap (whole words where it can) and empties it. */
  flushRun(): void {
    let g = this.runStart;
    const end = this.runEnd;
    this.runStart = 0;
    this.runEnd = 0;
    while (g < end) {
      const key = Math.floor(g / TRACK_CHUNK);
      const c = (key < this.chunks.length ? this.chunks[key] : undefined) ?? this.newChunk(key);
      const stop = Math.min(end, (key + 1) * TRACK_CHUNK);
      let i = g - key * TRACK_CHUNK;
      for (; g < stop && (i & 31) !== 0; g++, i++) c[i >>> 5] |= 1 << (i & 31);
      for (; g + 32 <= stop; g += 32, i += 32) c[i >>> 5] = 0xffffffff;
      for (; g < stop; g++, i++) c[i >>> 5] |= 1 << (i & 31);
    }
  }

  /** Allocates tracking chunk `key` (the chunk list grows densely, so reads stay in bounds). */
  private newChunk(key: number): Uint32Array {
    const chunks = this.chunks;
    while (chunks.length <= key) chunks.push(undefined);
    const c = new Uint32Array((Math.min(TRACK_CHUNK, this.windowGranules - key * TRACK_CHUNK) + 31) >>> 5);
    chunks[key] = c;
    return c;
  }

  /** @internal how many of granules [first, first+count) are linked. */
  countLinked(first: number, count: number): number {
    if (this.linkedGranules === 0 || first >= this.linkedEnd) return 0;
    const end = first + count;
    // the pending run's granules have no bit yet: count its overlap with the span
    let n = Math.max(0, Math.min(end, this.runEnd) - Math.max(first, this.runStart));
    let g = first;
    while (g < end) {
      const key = Math.floor(g / TRACK_CHUNK);
      const stop = Math.min(end, (key + 1) * TRACK_CHUNK);
      const c = key < this.chunks.length ? this.chunks[key] : undefined;
      if (c) for (let i = g - key * TRACK_CHUNK; g < stop; g++, i++) n += (c[i >>> 5] >>> (i & 31)) & 1;
      else g = stop;
    }
    return n;
  }

  /** @internal marks granules [first, first+count) linked (bit set) or unlinked (bit clear). */
  mark(first: number, count: number, linked: boolean): void {
    if (this.runStart !== this.runEnd) this.flushRun();
    const end = first + count;
    let g = first;
    if (linked && end > this.linkedEnd) this.linkedEnd = end;
    let changed = 0;
    while (g < end) {
      const key = Math.floor(g / TRACK_CHUNK);
      const stop = Math.min(end, (key + 1) * TRACK_CHUNK);
      let c = key < this.chunks.length ? this.chunks[key] : undefined;
      if (!c) {
        if (!linked) { g = stop; continue; }
        c = this.newChunk(key);
      }
      if (linked) {
        for (let i = g - key * TRACK_CHUNK; g < stop; g++, i++) {
          const w = i >>> 5, bit = 1 << (i & 31);
          if ((c[w] & bit) === 0) { c[w] |= bit; changed++; }
        }
      } else {
        for (let i = g - key * TRACK_CHUNK; g < stop; g++, i++) {
          const w = i >>> 5, bit = 1 << (i & 31);
          if ((c[w] & bit) !== 0) { c[w] &= ~bit; changed++; }
        }
      }
    }
    this.linkedGranules += linked ? changed : -changed;
  }
}

/**
 * Model support (V8, no kernel counterpart): a fresh DmaIovaState made at every successful
 * dmaIovaTryAlloc and never used. Optimised link code embeds the hidden class of the states it
 * saw, which V8 holds only weakly: when no state is alive across two full collections (one state
 * per request, gone after its unmap, is the usual pattern), V8 frees the class, the next state
 * gets a new one, and every optimised function that handled states is thrown away and compiled
 * again. A state made after the last change of the class's field representations keeps it alive.
 */
let _hiddenClassAnchor: DmaIovaState | null = null;

/** dma_use_iova(): true when dmaIovaTryAlloc succeeded for this state. */
export function dmaUseIova(state: DmaIovaState): boolean {
  return state.len !== 0;
}

/** dma_iova_size(): the size requested from dmaIovaTryAlloc, in bytes. */
export function dmaIovaSize(state: DmaIovaState): number {
  return state.len;
}

function checkState(state: unknown): DmaIovaState {
  if (!DmaIovaState.is(state)) throw new TypeError(`state must be a DmaIovaState, got ${String(state)}`);
  return state;
}

function checkDir(dev: Device, dir: unknown): DmaDataDirection {
  if (!validDmaDirection(dir)) {
    return dmaContextOf(dev).mm.events.bug('dma-mapping', `invalid DMA direction ${String(dir)}`, { dev: dev.name, dir });
  }
  return dir;
}

/**
 * dma_iova_try_alloc(): reserve one contiguous IOVA window of `size` bytes for dev. `phys` is only
 * an alignment hint: the window starts at the same offset inside a granule as phys (pass 0n when
 * everything is granule-aligned). Returns false, with the state zeroed, when the device does not
 * use dma-iommu (no IOMMU, identity/passthrough domain), when size is 0 (WARN) or when the IOVA
 * space is exhausted; callers then map each range with dmaMapPhys.
 */
export function dmaIovaTryAlloc(dev: Device, state: DmaIovaState, phys: bigint, size: number): boolean {
  checkState(state);
  checkAddr('phys', phys);
  checkLen('size', size);
  state.reset();
  if (!dev.dmaIommu) return false;
  const domain = iommuGetDmaDomain(dev);
  // ARM32 iommu_ops: the device has dma_ops, so use_dma_iommu() is false and there is no two-step API
  if (!domain || !domain.iovad || domain.arm32 !== null) return false;
  const ctx = dmaContextOf(dev);
  if (size === 0) {
    ctx.mm.events.warn('dma-iommu', `${dev.name}: dma_iova_try_alloc with size 0`, { dev: dev.name });
    return false;
  }
  const g = domain.granule;
  const off = Number(phys & BigInt(g - 1));
  const iova = iommuDmaAllocIova(domain, alignUp(size + off, g), dmaGetMask(dev), dev);
  if (iova === 0n) return false;
  state.addr = iova + BigInt(off);
  state.len = size;
  state.dev = dev;
  state.domain = domain;
  state.pad = off;
  state.ctx = ctx;
  state.gmask = BigInt(g - 1);
  state.ginv = 1 / g;
  state.windowGranules = Math.ceil((off + size) / g);
  state.addrNum = state.addr + BigInt(size) <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(state.addr) : -1;
  state.baseFrame = Number(iova >> 12n);
  state.stats = ctx.mm.stats;
  state.debug = dmaDebugOf(dev);
  if (g === 4096) state.fastDev = dev;
  _hiddenClassAnchor = new DmaIovaState();
  return true;
}

/** Common checks of link/unlink/sync: the state is live and belongs to dev; the window holds the span. */
function checkUse(dev: Device, state: DmaIovaState, what: string, offset: number, size: number): Result<IommuDomain> {
  const events = dmaContextOf(dev).mm.events;
  if (!dmaUseIova(state) || !state.domain) {
    modelCheckEvent(events, `${dev.name}: ${what} on a DmaIovaState that holds no IOVA window`, { dev: dev.name });
    return err('EINVAL', `${what}: the state holds no IOVA window`);
  }
  if (state.dev !== dev) {
    modelCheckEvent(events, `${dev.name}: ${what} on an IOVA window of ${state.dev?.name}`, { dev: dev.name });
    return err('EINVAL', `${what}: the window belongs to another device`);
  }
  if (state.freed) {
    modelCheckEvent(events, `${dev.name}: ${what} after the IOVA window was freed`, { dev: dev.name, addr: state.addr });
    return err('EINVAL', `${what}: the IOVA window was freed`);
  }
  if (offset + size > state.len) {
    modelCheckEvent(events, `${dev.name}: ${what} of [${offset}, ${offset + size}) past the IOVA window of ${state.len} bytes`,
      { dev: dev.name, offset, size, windowLen: state.len });
    return err('EINVAL', `${what}: offset ${offset} + size ${size} is past the window (${state.len} bytes)`);
  }
  return ok(state.domain);
}

/** Granule index span [first, first+count) of window bytes [offset, offset+size). */
function granuleSpan(state: DmaIovaState, offset: number, size: number): [number, number] {
  const g = state.domain!.granule;
  const startByte = state.pad + offset;
  const first = Math.floor(startByte / g);
  const end = Math.ceil((startByte + size) / g);
  return [first, end - first];
}

/** __dma_iova_link(): cache maintenance for non-coherent devices, then map without IOTLB sync. */
function linkRaw(dev: Device, domain: IommuDomain, addr: bigint, phys: bigint, size: number, dir: DmaDataDirection,
  attrs: number): Result<void> {
  const coherent = dev.dmaCoherent;
  // issued only: dma_iova_sync() waits for it (7.1.5 __dma_iova_link)
  if (!coherent && !(attrs & (DMA_ATTR_SKIP_CPU_SYNC | DMA_ATTR_MMIO))) archSyncDmaForDevice(dev, phys, size, dir, false);
  return iommuMapNosync(domain, addr, phys, size, dmaInfoToProt(dir, coherent, attrs));
}

/** iommu_dma_iova_bounce_and_link(): bounce one partial granule and link its bounce slot. */
function bounceAndLink(dev: Device, state: DmaIovaState, domain: IommuDomain, addr: bigint, phys: bigint, bounceLen: number,
  dir: DmaDataDirection, attrs: number, startPad: number): Result<void> {
  if (!isSwiotlbActive(dev)) {
    // drivers/iommu/dma-iommu.c: iommu_dma_map_swiotlb() refuses when the device has no active
    // bounce pool (dev_warn_once, DMA_MAPPING_ERROR), which iommu_dma_iova_bounce_and_link()
    // turns into -ENOMEM: an untrusted device never gets the whole granule mapped instead.
    dmaContextOf(dev).mm.events.warn('dma-iommu', `${dev.name}: DMA bounce buffers are inactive, unable to map unaligned transaction.`,
      { dev: dev.name, phys, size: bounceLen });
    return err('ENOMEM', 'DMA bounce buffers are inactive, unable to map unaligned transaction');
  }
  const tlb = iommuDmaMapSwiotlb(dev, phys, bounceLen, dir, attrs);
  if (tlb === DMA_MAPPING_ERROR) return err('ENOMEM', 'swiotlb is full');
  const r = linkRaw(dev, domain, addr - BigInt(startPad), tlb - BigInt(startPad), alignUp(bounceLen, domain.granule), dir, attrs);
  if (!r.ok) swiotlbTblUnmapSingle(dev, tlb, bounceLen, dir, attrs);
  else state.bouncedGranules.add(Number(addr - BigInt(startPad)));
  return r;
}

/**
 * iommu_dma_iova_link_swiotlb(): an untrusted device's link with unaligned ends: the partial head
 * and tail granules are bounced, the aligned middle is linked directly; undone on error.
 * (An empty middle is skipped: the 7.0 stable fix for a zero-size iommu_map.)
 */
function linkSwiotlb(dev: Device, state: DmaIovaState, domain: IommuDomain, phys: bigint, offset: number, size: number,
  dir: DmaDataDirection, attrs: number): Result<void> {
  const g = domain.granule;
  const gm = BigInt(g - 1);
  const startPad = Number(phys & gm);
  const endPad = Number((phys + BigInt(size)) & gm);
  const addr = state.addr + BigInt(offset);
  let mapped = 0;
  let rest = size;
  const fail = (e: Result<void>): Result<void> => {
    if (mapped) unlinkRaw(dev, state, offset, mapped, dir, attrs, false);
    return e;
  };
  if (startPad) {
    const bounceLen = Math.min(size, g - startPad);
    const r = bounceAndLink(dev, state, domain, addr, phys, bounceLen, dir, attrs, startPad);
    if (!r.ok) return r;
    state.useSwiotlb = true;
    mapped += bounceLen;
    rest -= bounceLen;
    if (rest === 0) return ok();
  }
  const middle = rest - (rest > 0 && endPad ? endPad : 0);
  if (middle > 0) {
    const r = linkRaw(dev, domain, addr + BigInt(mapped), phys + BigInt(mapped), middle, dir, attrs);
    if (!r.ok) return fail(r);
    mapped += middle;
  }
  if (endPad && mapped < size) {
    const r = bounceAndLink(dev, state, domain, addr + BigInt(mapped), phys + BigInt(mapped), size - mapped, dir, attrs, 0);
    if (!r.ok) return fail(r);
    state.useSwiotlb = true;
  }
  return ok();
}

/**
 * dma_iova_link(): map [phys, phys+size) at DMA address state.addr + offset, without an IOTLB sync
 * (call dmaIovaSync before the device uses it). Only the link at offset 0 may start granule-unaligned.
 * Errnos: EIO (unaligned phys at a non-zero offset), EPERM (MMIO that an untrusted device would have
 * to bounce), ENOMEM (swiotlb full or inactive / page-table memory), EINVAL (the IOMMU refused the
 * alignment; model checks: no window, window freed, span past the window, span already linked),
 * EOPNOTSUPP (DMA_ATTR_REQUIRE_COHERENT on a non-coherent device, or, with a WARN, on a state an
 * earlier link bounced through swiotlb). Nothing stays linked on failure.
 * A zero-size link of a granule-aligned phys is the IOMMU's answer to a zero-length map: EINVAL on
 * x86-64, VT-d and AMD v1 (generic_pt), ok on ARM LPAE.
 * Model deviation: a zero-size link of an unaligned phys is a no-op returning ok (the kernel maps
 * one granule of padding there, or on an untrusted device goes to the swiotlb path).
 */
export function dmaIovaLink(dev: Device, state: DmaIovaState, phys: bigint, offset: number, size: number,
  dir: DmaDataDirection, attrs: number): Result<void> {
  // Argument checks, written out for the hot path (one link per range of a 1 GiB list).
  if (!DmaIovaState.is(state)) checkState(state);
  if (typeof phys !== 'bigint' || phys < 0n || phys > U64_MAX) checkAddr('phys', phys);
  if (!Number.isSafeInteger(offset) || offset < 0) checkLen('offset', offset);
  if (!Number.isSafeInteger(size) || size < 0) checkLen('size', size);
  if (typeof attrs !== 'number' || (attrs & ~DMA_ATTR_ALL) !== 0 || !(attrs >= 0) || !Number.isInteger(attrs)) checkAttrs(attrs);
  if (dir !== DMA_BIDIRECTIONAL && dir !== DMA_TO_DEVICE && dir !== DMA_FROM_DEVICE) checkDir(dev, dir);
  // the one bigint step: phys (checked above) as its 4 KiB frame and the offset in it
  posFromU64(phys, 12, physPos);
  return iovaLink(dev, state, physPos.frame, physPos.off, offset, size, dir, attrs);
}

/** Where dmaIovaLink splits its phys argument (read back at once, before any other call). */
const physPos = new FramePos();
const U64_MAX = (1n << 64n) - 1n;

const DEBUG_LINK_DIRECT: DebugMapFacts = Object.freeze({ bounced: false, unmapOptional: false });
const DEBUG_LINK_BOUNCED: DebugMapFacts = Object.freeze({ bounced: true, unmapOptional: false });

/**
 * @internal dma_iova_link() after its argument checks, for callers inside the DMA layer that hold
 * validated arguments (dmaMapPhyrs): the physical address as its 4 KiB frame and the offset in it
 * (base/frame-offset.ts, shift 12: any 64-bit address), offset and size safe integers >= 0, dir
 * and attrs valid. Every model check of dmaIovaLink (window state, alignment, overlap, coherence)
 * runs here; same Result, events and counters.
 */
export function iovaLink(dev: Device, state: DmaIovaState, physFrame: number, physOff: number, offset: number, size: number,
  dir: DmaDataDirection, attrs: number): Result<void> {
  if (state.fastDev === dev && size > 0 && offset <= state.len - size && (attrs & DMA_ATTR_REQUIRE_COHERENT) === 0) {
    // The common case, written as one function with no rarely taken branch so that V8 optimises
    // it early and keeps it optimised: a link linkChecked would make without any report (a live
    // window in 4 KiB granules, a span inside it and above every linked granule so that nothing
    // overlaps, a granule-aligned IOVA, no bounce, no REQUIRE_COHERENT), with the same page-table
    // calls, cache maintenance, bookkeeping, counters and dma-debug record. Granule arithmetic is
    // x * INV_4K (exact: a power of two): an operand that is never a small integer keeps V8 from
    // speculating on small-integer products, which overflow (and deoptimise) on large addresses;
    // for the same reason the window bound is state.len - size, not offset + size.
    const startByte = state.pad + offset;
    const first = Math.floor(startByte * INV_4K);
    const pages = Math.ceil((size + physOff) * INV_4K);
    const iovaPfn = state.baseFrame + (startByte - physOff) * INV_4K;
    if ((physOff === 0 || offset === 0) // else EIO
      && first >= state.linkedEnd // else it may overlap a link
      && (!dev.untrusted || (physOff === 0 && pages / INV_4K === size)) // else a bounce
      && Math.floor(iovaPfn) === iovaPfn) { // else the IOMMU refuses the unaligned IOVA
      const coherent = dev.dmaCoherent;
      if (!coherent && (attrs & (DMA_ATTR_SKIP_CPU_SYNC | DMA_ATTR_MMIO)) === 0) {
        archSyncDmaForDevice(dev, posToBig(physFrame, 0, 12), pages / INV_4K, dir, false);
      }
      const r = iommuMapPfns(state.domain!, iovaPfn, physFrame, pages, dmaInfoToProt(dir, coherent, attrs));
      if (!r.ok) return r;
      // the IOVA is aligned, so the window's byte startByte sits physOff into granule `first`:
      // granules [first, first + pages), above every linked one, join the pending run (or start
      // a new one after writing the old one into the bitmap)
      state.linkedGranules += pages;
      state.linkedEnd = first + pages;
      if (first !== state.runEnd || state.runStart === state.runEnd) {
        if (state.runStart !== state.runEnd) state.flushRun();
        state.runStart = first;
      }
      state.runEnd = first + pages;
      state.stats!.dmaIovaLinks++;
      if (state.debug!.enabled) debugLink(dev, state, physFrame, physOff, offset, size, dir, false);
      return r;
    }
  }
  return linkChecked(dev, state, physFrame, physOff, offset, size, dir, attrs);
}

/**
 * The dma-debug record of a link. dma-debug keeps exact numbers where they fit (both addresses'
 * ends below 2^53, as its table stores them) and bigints otherwise.
 */
function debugLink(dev: Device, state: DmaIovaState, physFrame: number, physOff: number, offset: number, size: number,
  dir: DmaDataDirection, bounced: boolean): void {
  if (state.addrNum >= 0 && physFrame < FRAME_NUM_LIMIT) {
    debugDmaIovaLinkNum(state.debug!, dev, physFrame * 4096 + physOff, size, dir, state.addrNum + offset, bounced);
  } else {
    debugDmaIovaLink(dev, posToBig(physFrame, physOff, 12), size, dir, state.addr + BigInt(offset), 0,
      bounced ? DEBUG_LINK_BOUNCED : DEBUG_LINK_DIRECT);
  }
}

/** iovaLink with every check, in the kernel's order, and every path (bounce, errors). */
function linkChecked(dev: Device, state: DmaIovaState, physFrame: number, physOff: number, offset: number, size: number,
  dir: DmaDataDirection, attrs: number): Result<void> {
  if (state.len === 0 || state.dev !== dev || state.freed || offset + size > state.len) {
    const u = checkUse(dev, state, 'dma_iova_link', offset, size);
    if (!u.ok) return u;
  }
  const domain = state.domain!;
  const ctx = state.ctx!;
  const g = domain.granule;
  const gLg2 = domain.granuleShift;
  const ginv = state.ginv;
  const startPad = posOffsetIn(physFrame, physOff, 12, gLg2);
  if (startPad && offset > 0) {
    const p = posToBig(physFrame, physOff, 12);
    ctx.mm.events.warn('dma-iommu', `${dev.name}: dma_iova_link of unaligned phys 0x${p.toString(16)} at offset ${offset}`,
      { dev: dev.name, phys: p, offset });
    return err('EIO', `phys 0x${p.toString(16)} is not granule-aligned and offset ${offset} is not 0`);
  }
  if ((attrs & DMA_ATTR_REQUIRE_COHERENT) !== 0) {
    // drivers/iommu/dma-iommu.c: dma_iova_link(): once an earlier link of this state bounced
    // (DMA_IOVA_USE_SWIOTLB in __size), REQUIRE_COHERENT is refused with WARN_ON_ONCE
    if (state.useSwiotlb) {
      ctx.mm.events.warn('dma-iommu', `${dev.name}: dma_iova_link with DMA_ATTR_REQUIRE_COHERENT on an IOVA state that used swiotlb`,
        { dev: dev.name, offset, size });
      return err('EOPNOTSUPP', 'DMA_ATTR_REQUIRE_COHERENT on an IOVA state that already bounced through swiotlb');
    }
    if (!dev.dmaCoherent) return err('EOPNOTSUPP', 'DMA_ATTR_REQUIRE_COHERENT on a non-coherent device');
  }
  if (size === 0) {
    // dma_iova_link() with a granule-aligned phys maps iova_align(0) = 0 bytes: the IOMMU's answer
    // (EINVAL from generic_pt's make_range_ul(), ok on ARM LPAE). An unaligned phys would map one
    // granule of padding (or bounce nothing on an untrusted device): the model links nothing then.
    if (startPad !== 0) return OK;
    return linkRaw(dev, domain, state.addr + BigInt(offset), posToBig(physFrame, 0, 12), 0, dir, attrs);
  }
  const startByte = state.pad + offset;
  const first = Math.floor(startByte * ginv);
  const count = Math.ceil((startByte + size) * ginv) - first;
  if (state.linkedGranules !== 0 && state.countLinked(first, count) !== 0) {
    modelCheckEvent(ctx.mm.events, `${dev.name}: dma_iova_link over an already linked part of the window at offset ${offset}`,
      { dev: dev.name, offset, size });
    return err('EINVAL', `window offset ${offset}: already linked`);
  }
  let r: Result<void>;
  let bounced = false;
  const mapGranules = Math.ceil((size + startPad) * ginv);
  // dev_use_swiotlb() && iova_unaligned(): CONFIG_SWIOTLB is always built on x86-64, so an
  // untrusted device bounces its unaligned ends whether or not a pool is active; without one the
  // bounce fails (bounceAndLink) instead of mapping the whole granules.
  if ((startPad !== 0 || mapGranules * g !== size) && (dev.untrusted || devUseSwiotlb(dev, size, dir))) {
    if (attrs & (DMA_ATTR_MMIO | DMA_ATTR_REQUIRE_COHERENT)) return err('EPERM', 'MMIO cannot be bounced through swiotlb');
    r = linkSwiotlb(dev, state, domain, posToBig(physFrame, physOff, 12), offset, size, dir, attrs);
    bounced = true;
  } else {
    // the map starts at the granule holding phys, at window byte startByte - startPad: an IOVA
    // that is granule-aligned unless the first link's offset in its granule differs from the hint's
    const fromBase = startByte - startPad;
    const physPos = new FramePos();
    posAlignDown(physFrame, physOff, 12, gLg2, physPos);
    if (fromBase >= 0 && fromBase - Math.floor(fromBase * ginv) * g === 0) {
      const coherent = dev.dmaCoherent;
      if (!coherent && !(attrs & (DMA_ATTR_SKIP_CPU_SYNC | DMA_ATTR_MMIO))) archSyncDmaForDevice(dev, posToBig(physPos.frame, 0, 12), mapGranules * g, dir, false);
      r = iommuMapPfns(domain, state.baseFrame + fromBase * INV_4K, physPos.frame, mapGranules * g * INV_4K, dmaInfoToProt(dir, coherent, attrs));
    } else {
      // an unaligned IOVA: the IOMMU's own refusal (EINVAL), with its message
      r = linkRaw(dev, domain, state.addr + BigInt(offset - startPad), posToBig(physPos.frame, 0, 12), mapGranules * g, dir, attrs);
    }
  }
  if (!r.ok) return r;
  state.mark(first, count, true);
  ctx.mm.stats.dmaIovaLinks++;
  if (state.debug!.enabled) debugLink(dev, state, physFrame, physOff, offset, size, dir, bounced);
  return r;
}

/**
 * The batched link of several ranges: the "single indirect call into the iommu driver per bio_vec
 * [array], and a single radix walk" that Jason Gunthorpe said he was cooking, in the thread on
 * "[RFC PATCH v1 00/18] Provide a new two step DMA API mapping API" (linux-nvme, July 2024). The
 * ranges go into the window back to back from `offset`, as consecutive dmaIovaLink calls would put
 * them, with the same results, bookkeeping, counters (one dmaIovaLinks per range) and dma-debug
 * records; but where the whole batch can go straight to the page table (a live window of this
 * device, every interior seam granule-aligned, nothing to bounce, nothing already linked in the
 * span, no DMA_ATTR_REQUIRE_COHERENT) its pieces are mapped with ONE iommuMapBatch, which
 * continues each map from the table the previous one reached instead of walking from the root
 * (iommuTableWalkSteps shows the difference). Otherwise it links range by range. Returns the
 * bytes linked; on failure nothing of the batch stays linked.
 * Model deviation: the kernel has no such call (blk_rq_dma_map_iova() in block/blk-mq-dma.c
 * calls dma_iova_link() per segment, each walking from the root); like iommu_map_sg() it
 * coalesces physically contiguous pieces, so the table may hold larger leaves than per-range
 * links would write.
 */
export function dmaIovaLinkBatch(dev: Device, state: DmaIovaState, offset: number, ranges: RangeSource, dir: DmaDataDirection,
  attrs: number): Result<number> {
  checkState(state);
  checkLen('offset', offset);
  checkAttrs(attrs);
  if (!validDmaDirection(dir)) checkDir(dev, dir);
  const n = ranges.count;
  const phys = new Float64Array(n);
  const lens = new Float64Array(n);
  let total = 0;
  let k = 0;
  for (const c = ranges.cursor(); !c.done; c.next()) {
    if (k === n) break;
    phys[k] = c.addrNum;
    lens[k] = c.len;
    total += c.len;
    k++;
  }
  if (!ranges.addrFitsNumber) throw new RangeError('ranges must lie below 2^53 (physical addresses of the machine)');
  if (batchable(dev, state, offset, phys, lens, k, total, dir, attrs)) return linkBatch(dev, state, offset, phys, lens, k, total, dir, attrs);
  let done = 0;
  for (let i = 0; i < k; i++) {
    const f = Math.floor(phys[i] * INV_4K);
    const r = iovaLink(dev, state, f, phys[i] - f * 4096, offset + done, lens[i], dir, attrs);
    if (!r.ok) {
      if (done) dmaIovaUnlink(dev, state, offset, done, dir, attrs);
      return r;
    }
    done += lens[i];
  }
  return ok(done);
}

/** Whether dmaIovaLinkBatch may map the whole batch with one table walk (see there). */
function batchable(dev: Device, state: DmaIovaState, offset: number, phys: Float64Array, lens: Float64Array, n: number,
  total: number, dir: DmaDataDirection, attrs: number): boolean {
  if (n === 0 || total === 0 || state.dev !== dev || state.freed || state.len === 0 || offset + total > state.len) return false;
  if ((attrs & DMA_ATTR_REQUIRE_COHERENT) !== 0 || dev.untrusted || devUseSwiotlb(dev, total, dir)) return false;
  const g = state.domain!.granule;
  const startPad = phys[0] % g;
  const fromBase = state.pad + offset - startPad;
  if (fromBase < 0 || fromBase % g !== 0 || (startPad !== 0 && offset !== 0)) return false;
  for (let i = 0; i < n; i++) {
    if (lens[i] === 0) return false;
    if (i > 0 && phys[i] % g !== 0) return false;
    if (i < n - 1 && (phys[i] + lens[i]) % g !== 0) return false;
  }
  const first = Math.floor((state.pad + offset) / g);
  const count = Math.ceil((state.pad + offset + total) / g) - first;
  return state.linkedGranules === 0 || state.countLinked(first, count) === 0;
}

function linkBatch(dev: Device, state: DmaIovaState, offset: number, phys: Float64Array, lens: Float64Array, n: number,
  total: number, dir: DmaDataDirection, attrs: number): Result<number> {
  const domain = state.domain!;
  const g = domain.granule;
  const coherent = dev.dmaCoherent;
  // the granule-aligned pieces the per-range links would map, back to back from the first's granule
  const b = PhyrList.builder(n);
  for (let i = 0; i < n; i++) {
    const start = i === 0 ? phys[0] - (phys[0] % g) : phys[i];
    const end = phys[i] + lens[i];
    b.pushNoMerge(start, Math.ceil((end - start) / g) * g, 0);
    if (!coherent && (attrs & (DMA_ATTR_SKIP_CPU_SYNC | DMA_ATTR_MMIO)) === 0) archSyncDmaForDevice(dev, BigInt(phys[i]), lens[i], dir, false);
  }
  const fromBase = state.pad + offset - (phys[0] % g);
  const r = iommuMapBatch(domain, posToBig(state.baseFrame + fromBase * INV_4K, 0, 12), b.build(), dmaInfoToProt(dir, coherent, attrs));
  if (!r.ok) return r;
  const first = Math.floor((state.pad + offset) / g);
  state.mark(first, Math.ceil((state.pad + offset + total) / g) - first, true);
  state.stats!.dmaIovaLinks += n;
  if (state.debug!.enabled) {
    let at = offset;
    for (let i = 0; i < n; i++) {
      const f = Math.floor(phys[i] * INV_4K);
      debugLink(dev, state, f, phys[i] - f * 4096, at, lens[i], dir, false);
      at += lens[i];
    }
  }
  return ok(total);
}

/**
 * dma_iova_sync(): make the links in [offset, offset+size) of the window visible to the device
 * (iommu_sync_map over the granule span). Errnos: the IOMMU's iotlb_sync_map errno; EINVAL for the
 * model checks (no window, freed, past the window).
 */
export function dmaIovaSync(dev: Device, state: DmaIovaState, offset: number, size: number): Result<void> {
  checkState(state);
  checkLen('offset', offset);
  checkLen('size', size);
  const u = checkUse(dev, state, 'dma_iova_sync', offset, size);
  if (!u.ok) return u;
  const domain = u.value;
  const addr = state.addr + BigInt(offset);
  const pad = Number(addr & BigInt(domain.granule - 1));
  // the wait for the cache maintenance every dma_iova_link() since the last sync issued (7.1.5 dma_iova_sync)
  if (!dev.dmaCoherent) archSyncDmaFlush(dev);
  const r = iommuSyncMap(domain, addr - BigInt(pad), alignUp(size + pad, domain.granule));
  if (r.ok) dmaContextOf(dev).mm.stats.dmaIovaSyncs++;
  return r;
}

/**
 * The unlink's cache maintenance rule (drivers/iommu/dma-iommu.c: __iommu_dma_iova_unlink() and
 * iommu_dma_iova_unlink_range_slow()): only a non-coherent device, and neither
 * DMA_ATTR_SKIP_CPU_SYNC nor DMA_ATTR_MMIO (an MMIO range has no CPU cache lines to invalidate).
 */
function unlinkNeedsCpuSync(dev: Device, attrs: number): boolean {
  return !dev.dmaCoherent && (attrs & (DMA_ATTR_SKIP_CPU_SYNC | DMA_ATTR_MMIO)) === 0;
}

/**
 * iommu_dma_iova_unlink_range_slow(): per granule of [addr, addr + size), CPU cache maintenance
 * (unlinkNeedsCpuSync) and release of bounce slots.
 * Model deviation (same outcome, less work): when no cache maintenance is due, only the granules
 * linked to a bounce slot (recorded at link time) are translated, instead of every granule.
 */
function unlinkRangeSlow(dev: Device, state: DmaIovaState, domain: IommuDomain, addr: bigint, size: number,
  dir: DmaDataDirection, attrs: number): void {
  const g = domain.granule;
  const end = addr + BigInt(size);
  const events = dmaContextOf(dev).mm.events;
  const needSync = unlinkNeedsCpuSync(dev, attrs);
  const granule = (a: bigint, len: number): void => {
    const phys = iommuIovaToPhys(domain, a);
    if (phys === 0n) {
      events.warn('dma-iommu', `${dev.name}: unlink of unmapped IOVA 0x${a.toString(16)}`, { dev: dev.name, addr: a });
    } else {
      if (needSync) archSyncDmaForCpu(dev, phys, len, dir, false);
      if (isSwiotlbBuffer(dev, phys)) swiotlbTblUnmapSingle(dev, phys, len, dir, attrs);
    }
  };
  const first = addr - (addr & BigInt(g - 1));
  if (!needSync) {
    const lo = Number(first), hi = Number(end);
    const hits = [...state.bouncedGranules].filter((k) => k >= lo && k < hi).sort((a, b) => a - b);
    for (const k of hits) {
      const from = BigInt(k) > addr ? BigInt(k) : addr;
      const to = BigInt(k + g) < end ? BigInt(k + g) : end;
      granule(from, Number(to - from));
      state.bouncedGranules.delete(k);
    }
    return;
  }
  // every granule's invalidate issued below, one wait at the end (7.1.5 iommu_dma_iova_unlink_range_slow)
  let pad = Number(addr & BigInt(g - 1));
  while (addr < end) {
    const len = Math.min(Number(end - addr), g - pad);
    granule(addr, len);
    state.bouncedGranules.delete(Number(addr - BigInt(pad)));
    addr += BigInt(len);
    pad = 0;
  }
  archSyncDmaFlush(dev);
}

/** __iommu_dma_iova_unlink(): unmap window bytes [offset, offset+size); optionally free the window. */
function unlinkRaw(dev: Device, state: DmaIovaState, offset: number, size: number, dir: DmaDataDirection, attrs: number,
  freeIova: boolean): void {
  const domain = state.domain!;
  const g = domain.granule;
  const addr = state.addr + BigInt(offset);
  const pad = Number(addr & BigInt(g - 1));
  if (state.useSwiotlb || unlinkNeedsCpuSync(dev, attrs)) unlinkRangeSlow(dev, state, domain, addr, size, dir, attrs);
  const gather = new IommuIotlbGather();
  gather.queued = freeIova && domain.type === 'dma-fq';
  const span = alignUp(size + pad, g);
  const start = addr - BigInt(pad);
  const unmapped = iommuUnmapFast(domain, start, span, gather);
  if (unmapped !== span) {
    dmaContextOf(dev).mm.events.warn('dma-iommu', `${dev.name}: IOVA unlink unmapped ${unmapped} of ${span} bytes at 0x${start.toString(16)}`,
      { dev: dev.name, addr: start, len: span, unmapped });
  }
  if (!gather.queued) iommuIotlbSync(domain, gather);
  const [first, count] = granuleSpan(state, offset, size);
  state.mark(first, count, false);
  if (freeIova) {
    // the kernel frees the span it just unmapped, not the window: see dmaIovaDestroy
    iommuDmaFreeIova(domain, start, span, gather);
    state.freed = true;
    state.fastDev = null;
  }
}

/** Releases the whole IOVA window (what dmaIovaTryAlloc allocated): dma_iova_free(). */
function freeWindow(state: DmaIovaState): void {
  const domain = state.domain!;
  const g = domain.granule;
  iommuDmaFreeIova(domain, state.addr - BigInt(state.pad), alignUp(state.len + state.pad, g), null);
  state.freed = true;
  state.fastDev = null;
}

/**
 * dma_iova_unlink(): unmap window bytes [offset, offset+size) but keep the IOVA reservation so it can
 * be linked again. Unlinking what is not linked (e.g. twice) is reported (MODEL-CHECK) and does nothing.
 */
export function dmaIovaUnlink(dev: Device, state: DmaIovaState, offset: number, size: number, dir: DmaDataDirection,
  attrs: number): void {
  checkState(state);
  checkLen('offset', offset);
  checkLen('size', size);
  checkAttrs(attrs);
  checkDir(dev, dir);
  const u = checkUse(dev, state, 'dma_iova_unlink', offset, size);
  if (!u.ok || size === 0) return;
  if (!checkLinked(dev, state, offset, size, 'dma_iova_unlink')) return;
  debugDmaIovaUnlink(dev, state.addr + BigInt(offset), size, dir);
  unlinkRaw(dev, state, offset, size, dir, attrs, false);
  dmaContextOf(dev).mm.stats.dmaIovaUnlinks++;
}

function checkLinked(dev: Device, state: DmaIovaState, offset: number, size: number, what: string): boolean {
  const [first, count] = granuleSpan(state, offset, size);
  const linked = state.countLinked(first, count);
  if (linked === count) return true;
  modelCheckEvent(dmaContextOf(dev).mm.events, 
    `${dev.name}: ${what} of [${offset}, ${offset + size}): ${count - linked} of ${count} granules are not linked`,
    { dev: dev.name, offset, size });
  return false;
}

/**
 * dma_iova_destroy(): unlink window bytes [0, mappedLen) and give back the IOVA; with mappedLen 0 it
 * is dmaIovaFree. On a lazy (flush-queue) domain the IOVA is reused only after the next IOTLB flush.
 *
 * As in drivers/iommu/dma-iommu.c: __iommu_dma_iova_unlink(), what goes back to the allocator is
 * the unlinked span, iova_align(mappedLen + pad) from the window's first granule, not the window
 * dmaIovaTryAlloc reserved. When mappedLen is shorter than the window (blk-mq's error path), the
 * allocator's free_iova_fast() decides what that leaves allocated:
 * - a span of at most 32 granules (128 KiB with 4 KiB granules) goes into the range cache of its
 *   own size order, while the allocator's tree still holds the whole window: the rest of the
 *   window stays allocated, and the cached first frame is handed out again as an IOVA of the
 *   span's (power-of-two) size. Only when that cache entry returns to the tree (cache flush after
 *   a failed allocation, depot trimming) does free_iova() remove the whole window;
 * - a longer span is too big for the range caches, and free_iova() removes the whole window from
 *   the tree at once (nothing is left allocated);
 * - with the caches off, free_iova() likewise frees the whole window.
 * Links past mappedLen are not unmapped (reported by dma-debug), as in the kernel.
 */
export function dmaIovaDestroy(dev: Device, state: DmaIovaState, mappedLen: number, dir: DmaDataDirection, attrs: number): void {
  checkState(state);
  checkLen('mappedLen', mappedLen);
  checkAttrs(attrs);
  checkDir(dev, dir);
  if (mappedLen === 0) {
    dmaIovaFree(dev, state);
    return;
  }
  const u = checkUse(dev, state, 'dma_iova_destroy', 0, mappedLen);
  if (!u.ok) return;
  debugDmaIovaUnlink(dev, state.addr, mappedLen, dir);
  if (!checkLinked(dev, state, 0, mappedLen, 'dma_iova_destroy')) {
    // Model deviation: the kernel would unmap the whole span and WARN on its holes; the model
    // (having reported the misuse) unlinks only the linked runs of [0, mappedLen), then frees the
    // same span the kernel frees.
    unlinkLinkedParts(dev, state, mappedLen, dir, attrs);
    const g = state.domain!.granule;
    iommuDmaFreeIova(state.domain!, state.addr - BigInt(state.pad), alignUp(mappedLen + state.pad, g), null);
    state.freed = true;
    state.fastDev = null;
    return;
  }
  unlinkRaw(dev, state, 0, mappedLen, dir, attrs, true);
  if (state.linkedGranules) {
    modelCheckEvent(dmaContextOf(dev).mm.events, `${dev.name}: dma_iova_destroy(${mappedLen}) left ${state.linkedGranules} granules linked past mappedLen`,
      { dev: dev.name, mappedLen });
  }
  dmaContextOf(dev).mm.stats.dmaIovaUnlinks++;
}

/** Unlinks every linked run of granules of window bytes [0, len) (a destroy over unlinked parts). */
function unlinkLinkedParts(dev: Device, state: DmaIovaState, len: number, dir: DmaDataDirection, attrs: number): void {
  const g = state.domain!.granule;
  const total = Math.ceil((state.pad + len) / g);
  let g0 = 0;
  while (g0 < total) {
    if (!state.countLinked(g0, 1)) { g0++; continue; }
    let g1 = g0;
    while (g1 < total && state.countLinked(g1, 1)) g1++;
    const startByte = Math.max(0, g0 * g - state.pad);
    const endByte = Math.min(len, g1 * g - state.pad);
    unlinkRaw(dev, state, startByte, endByte - startByte, dir, attrs, false);
    g0 = g1;
  }
}

/**
 * dma_iova_free(): return the IOVA window to the allocator without unmapping anything. Freeing a
 * window that still has links is the caller's bug: reported (MODEL-CHECK), and the links are left
 * as the kernel would leave them.
 */
export function dmaIovaFree(dev: Device, state: DmaIovaState): void {
  checkState(state);
  const u = checkUse(dev, state, 'dma_iova_free', 0, 0);
  if (!u.ok) return;
  if (state.linkedGranules) {
    modelCheckEvent(dmaContextOf(dev).mm.events, `${dev.name}: dma_iova_free with ${state.linkedGranules} granules still linked`,
      { dev: dev.name, addr: state.addr });
  }
  freeWindow(state);
}
