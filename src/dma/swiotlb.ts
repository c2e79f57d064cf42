// Models: kernel/dma/swiotlb.c and include/linux/swiotlb.h (Linux 6.19; reference 9.1, 9.2, 15 row 6):
// the bounce-buffer pool of 2 KiB slots in 128-slot segments, with the free-run counts per slot
// ("list"), min_align_mask offset preservation (pad slots), copy-in at map, copy-out at unmap/sync.
// Model deviation: one pool and one area (the kernel splits a pool into per-CPU areas and can grow
// pools dynamically); the model has a single CPU and a fixed pool allocated at boot.

import type { MachineMm } from '../mm/index.ts';
import type { Device } from '../pci/index.ts';
import { checkLen, MiB } from '../base/index.ts';
import { dmaContextIfAny, dmaContextOf } from './context.ts';
import {
  DMA_ATTR_NO_WARN, DMA_ATTR_SKIP_CPU_SYNC, DMA_BIDIRECTIONAL, DMA_FROM_DEVICE, DMA_MAPPING_ERROR,
  DMA_TO_DEVICE,
} from './constants.ts';
import { dmaGetMinAlignMask, dmaGetSegBoundary } from './mask.ts';
import { dmaCapable, physToDmaUnencrypted } from './direct.ts';
import { archSyncDmaForDevice } from './cache.ts';

export const IO_TLB_SEGSIZE = 128;
export const IO_TLB_SHIFT = 11;
export const IO_TLB_SIZE = 1 << IO_TLB_SHIFT;
export const IO_TLB_DEFAULT_SIZE = 64 * MiB;
/** Smallest pool the boot allocation retries down to (IO_TLB_MIN_SLABS: 1 MiB of slots). */
export const IO_TLB_MIN_SLABS = (1 * MiB) >> IO_TLB_SHIFT;

const TWO32 = 4294967296;
/** (addr & mask) for an address < 2^53 and a 32-bit mask, without going through bigint. */
function low32And(addr: number, mask: number): number {
  return ((addr % TWO32) & mask) >>> 0;
}

function nrSlots(bytes: number): number {
  return Math.ceil(bytes / IO_TLB_SIZE);
}

/** Machine configuration of the bounce pool. */
export interface SwiotlbConfig {
  /** Pool size in bytes (default 64 MiB); rounded down to whole 128-slot segments. */
  readonly bytes?: number;
  /** swiotlb=force, or a confidential-computing guest: dma-direct bounces every mapping. */
  readonly force?: boolean;
}

/** The largest block the page allocator hands out (MAX_PAGE_ORDER). */
export const SWIOTLB_MAX_BLOCK_ORDER = 10;

/**
 * One io_tlb_mem with its pool: slot metadata in typed arrays, pool memory in machine RAM.
 * Model deviation: the kernel takes the default pool as one contiguous range from memblock at boot;
 * the model builds it from page-allocator blocks of at most MAX_PAGE_ORDER (4 MiB with 4 KiB pages),
 * each a whole number of 128-slot segments, so no allocation ever spans two blocks.
 */
export class Swiotlb {
  /** Lowest physical address of the pool. */
  readonly start: bigint;
  /** Exclusive end of the highest block of the pool. */
  readonly end: bigint;
  /** Number of 2 KiB slots. */
  readonly nslabs: number;
  /** io_tlb_mem.force_bounce. */
  forceBounce: boolean;
  /** Free contiguous slots from each slot to the end of its 128-slot segment (0 = in use). */
  readonly list: Uint16Array;
  /** Original physical address whose bytes each in-use data slot holds (-1 = none). */
  readonly origAddr: Float64Array;
  /** Bytes of the allocation from each data slot's start to the allocation's end. */
  readonly allocSize: Float64Array;
  /** For the first data slot of an allocation: how many pad slots precede it. */
  readonly padSlots: Uint16Array;
  /** For the first slot of an allocation (pad included): its total slot count. */
  readonly allocSlots: Uint16Array;
  /** Slots in use now, and the most ever in use. */
  used = 0;
  usedHiwater = 0;
  /** Physical start of each block (as numbers, exact below 2^53), in slot order. */
  readonly blockStarts: readonly number[];
  /** Slots per block (a multiple of IO_TLB_SEGSIZE). */
  readonly slotsPerBlock: number;
  private index = 0;
  private readonly mm: MachineMm;
  private readonly blockPfns: readonly bigint[];
  private readonly blockOrder: number;
  private readonly sortedBlocks: Array<[number, number]>;
  private released = false;

  /** Use createSwiotlb(); this takes already allocated blocks of 2^blockOrder pages at the given pfns. */
  constructor(mm: MachineMm, blockPfns: readonly bigint[], blockOrder: number, force: boolean) {
    if (blockPfns.length === 0) throw new RangeError('blockPfns must hold at least one block, got 0');
    this.mm = mm;
    this.blockPfns = blockPfns;
    this.blockOrder = blockOrder;
    const blockBytes = mm.pageSize * 2 ** blockOrder;
    this.slotsPerBlock = Math.floor(blockBytes / IO_TLB_SIZE / IO_TLB_SEGSIZE) * IO_TLB_SEGSIZE;
    if (this.slotsPerBlock === 0) throw new RangeError(`blockOrder ${blockOrder} gives blocks smaller than one 128-slot segment`);
    this.blockStarts = blockPfns.map((p) => Number(p) * mm.pageSize);
    this.sortedBlocks = this.blockStarts.map((a, i): [number, number] => [a, i]).sort((x, y) => x[0] - y[0]);
    this.start = BigInt(this.sortedBlocks[0][0]);
    this.end = BigInt(this.sortedBlocks[this.sortedBlocks.length - 1][0] + this.slotsPerBlock * IO_TLB_SIZE);
    this.nslabs = this.slotsPerBlock * blockPfns.length;
    this.forceBounce = force;
    this.list = new Uint16Array(this.nslabs);
    for (let i = 0; i < this.nslabs; i++) this.list[i] = IO_TLB_SEGSIZE - (i % IO_TLB_SEGSIZE);
    this.origAddr = new Float64Array(this.nslabs).fill(-1);
    this.allocSize = new Float64Array(this.nslabs);
    this.padSlots = new Uint16Array(this.nslabs);
    this.allocSlots = new Uint16Array(this.nslabs);
  }

  /** Pool bytes. */
  get bytes(): number {
    return this.nslabs * IO_TLB_SIZE;
  }

  /** Physical address of slot i, as a number. */
  slotAddrNum(i: number): number {
    const b = Math.floor(i / this.slotsPerBlock);
    return this.blockStarts[b] + (i - b * this.slotsPerBlock) * IO_TLB_SIZE;
  }

  /** Physical address of slot i. */
  slotAddr(i: number): bigint {
    return BigInt(this.slotAddrNum(i));
  }

  /** Slot index holding a pool address, or -1 outside the pool. */
  slotOf(phys: bigint): number {
    const a = Number(phys);
    const blocks = this.sortedBlocks;
    let lo = 0, hi = blocks.length - 1;
    const span = this.slotsPerBlock * IO_TLB_SIZE;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const [s, b] = blocks[mid];
      if (a < s) hi = mid - 1;
      else if (a >= s + span) lo = mid + 1;
      else return b * this.slotsPerBlock + Math.floor((a - s) / IO_TLB_SIZE);
    }
    return -1;
  }

  /** true when phys lies inside the pool. */
  contains(phys: bigint): boolean {
    return phys >= this.start && phys < this.end && this.slotOf(phys) >= 0;
  }

  /** Returns the pool's pages to the machine (teardown). Mappings still live are a WARN. */
  release(): void {
    if (this.released) return;
    if (this.used !== 0) this.mm.events.warn('swiotlb', `pool released with ${this.used} slots still in use`);
    this.released = true;
    for (const pfn of this.blockPfns) this.mm.freeKernelPages(pfn, this.blockOrder);
  }

  /**
   * swiotlb_find_slots for one area: returns the first slot of nslots free contiguous slots inside
   * one 128-slot segment that satisfy the alignment rules, or -1. Marks them used.
   */
  findSlots(dev: Device, origAddr: bigint, allocSizeBytes: number, allocAlignMaskIn: number): number {
    const boundaryMask = dmaGetSegBoundary(dev);
    const maxSlotsBig = (boundaryMask >> BigInt(IO_TLB_SHIFT)) + 1n;
    const maxSlots = maxSlotsBig > BigInt(TWO32) ? 0 : Number(maxSlotsBig); // 0: boundary never crossed
    // tbl_dma_addr of each block: where the device sees it, under the boundary mask.
    const tblBase = this.blockStarts.map((a) => Number(physToDmaUnencrypted(dev, BigInt(a)) & boundaryMask));
    const spb = this.slotsPerBlock;
    const orig = Number(origAddr);
    const nslots = nrSlots(allocSizeBytes);
    const minAlign = dmaGetMinAlignMask(dev);
    let iotlbAlignMask = minAlign;
    let allocAlignMask = allocAlignMaskIn >>> 0;
    if (nslots === 0) this.mm.events.bug('swiotlb', 'BUG_ON(!nslots)');
    // Streaming maps of a page or more keep the historic page alignment when nothing else is asked.
    if (!allocAlignMask && !iotlbAlignMask && allocSizeBytes >= this.mm.pageSize) allocAlignMask = this.mm.pageSize - 1;
    allocAlignMask = (allocAlignMask | (IO_TLB_SIZE - 1)) >>> 0;
    iotlbAlignMask = (iotlbAlignMask & ~allocAlignMask) >>> 0;
    const stride = (Math.max(allocAlignMask, iotlbAlignMask) >>> IO_TLB_SHIFT) + 1;
    if (nslots > this.nslabs - this.used) return -1;
    let index = this.index;
    let found = -1;
    for (let checked = 0; checked < this.nslabs;) {
      const slot = index;
      const blk = Math.floor(slot / spb);
      const inBlk = slot - blk * spb;
      const tlbAddr = tblBase[blk] + inBlk * IO_TLB_SIZE;
      if (low32And(tlbAddr, allocAlignMask) !== 0
        || (orig !== 0 && low32And(tlbAddr, iotlbAlignMask) !== low32And(orig, iotlbAlignMask))) {
        index = index + 1 >= this.nslabs ? 0 : index + 1;
        checked++;
        continue;
      }
      let crosses = false;
      if (maxSlots !== 0) {
        const s = (nrSlots(tblBase[blk]) + inBlk) % maxSlots;
        crosses = s + nslots > maxSlots;
      }
      if (!crosses && this.list[slot] >= nslots) {
        found = slot;
        break;
      }
      index = index + stride >= this.nslabs ? 0 : index + stride;
      checked += stride;
    }
    if (found < 0) return -1;
    for (let i = found; i < found + nslots; i++) this.list[i] = 0;
    let count = 0;
    for (let i = found - 1; i >= 0 && i % IO_TLB_SEGSIZE !== IO_TLB_SEGSIZE - 1 && this.list[i] !== 0; i--) {
      this.list[i] = ++count;
    }
    this.index = found + nslots >= this.nslabs ? 0 : found + nslots;
    this.used += nslots;
    if (this.used > this.usedHiwater) this.usedHiwater = this.used;
    this.allocSlots[found] = nslots;
    return found;
  }

  /** swiotlb_release_slots: frees the allocation whose first slot (pad included) is `first`. */
  releaseSlots(first: number): void {
    const nslots = this.allocSlots[first];
    const segEnd = (Math.floor(first / IO_TLB_SEGSIZE) + 1) * IO_TLB_SEGSIZE;
    let count = first + nslots < segEnd ? this.list[first + nslots] : 0;
    for (let i = first + nslots - 1; i >= first; i--) {
      this.list[i] = ++count;
      this.origAddr[i] = -1;
      this.allocSize[i] = 0;
      this.padSlots[i] = 0;
      this.allocSlots[i] = 0;
    }
    for (let i = first - 1; i >= 0 && i % IO_TLB_SEGSIZE !== IO_TLB_SEGSIZE - 1 && this.list[i] !== 0; i--) {
      this.list[i] = ++count;
    }
    this.used -= nslots;
  }

  /** swiotlb_bounce: copies between the bounce slot at tlbAddr and the original buffer. */
  bounce(dev: Device, tlbAddr: bigint, size: number, dir: number): void {
    const index = this.slotOf(tlbAddr);
    let orig = this.origAddr[index];
    let allocSize = this.allocSize[index];
    if (orig < 0) return;
    let tlbOffset = Number(tlbAddr) % IO_TLB_SIZE;
    const origOffset = swiotlbAlignOffsetNum(dmaGetMinAlignMask(dev), 0, orig);
    if (tlbOffset < origOffset) {
      this.mm.events.warn('swiotlb', `${dev.name}: Access before mapping start detected. orig offset ${origOffset}, requested offset ${tlbOffset}.`);
      return;
    }
    tlbOffset -= origOffset;
    if (tlbOffset > allocSize) {
      this.mm.events.warn('swiotlb', `${dev.name}: Buffer overflow detected. Allocation size: ${allocSize}. Mapping size: ${size}+${tlbOffset}.`);
      return;
    }
    orig += tlbOffset;
    allocSize -= tlbOffset;
    if (size > allocSize) {
      this.mm.events.warn('swiotlb', `${dev.name}: Buffer overflow detected. Allocation size: ${allocSize}. Mapping size: ${size}.`);
      size = allocSize;
    }
    if (size <= 0) return;
    if (dir === DMA_TO_DEVICE) this.mm.mem.bounceCopy(tlbAddr, BigInt(orig), size);
    else this.mm.mem.bounceCopy(BigInt(orig), tlbAddr, size);
    this.mm.stats.swiotlbBounceBytes += size;
  }
}

function swiotlbAlignOffsetNum(minAlignMask: number, allocAlignMask: number, addr: number): number {
  return low32And(addr, (minAlignMask & (allocAlignMask | (IO_TLB_SIZE - 1))) >>> 0);
}

/**
 * swiotlb_align_offset(dev, align_mask, addr): the low bits of addr a bounce buffer must keep,
 * addr & min_align_mask & (align_mask | (IO_TLB_SIZE - 1)).
 */
export function swiotlbAlignOffset(dev: Device, allocAlignMask: number, addr: bigint): number {
  return swiotlbAlignOffsetNum(dmaGetMinAlignMask(dev), allocAlignMask >>> 0, Number(addr));
}

/**
 * Allocates the boot-time pool from machine RAM (swiotlb_init): blocks of at most MAX_PAGE_ORDER
 * pages; if RAM cannot give the whole size, it retries with half the size (as the kernel does) down
 * to IO_TLB_MIN_SLABS, and returns null (with a WARN) if even that fails: a kernel without swiotlb.
 */
export function createSwiotlb(mm: MachineMm, cfg: SwiotlbConfig = {}): Swiotlb | null {
  let bytes = checkLen('swiotlb.bytes', cfg.bytes ?? IO_TLB_DEFAULT_SIZE, IO_TLB_SIZE * IO_TLB_SEGSIZE);
  const segBytes = IO_TLB_SIZE * IO_TLB_SEGSIZE;
  while (bytes >= IO_TLB_MIN_SLABS * IO_TLB_SIZE || bytes >= segBytes) {
    // Largest page-order block that fits in bytes (and the allocator's limit), at least one segment.
    let order = Math.min(SWIOTLB_MAX_BLOCK_ORDER, Math.floor(Math.log2(bytes / mm.pageSize)));
    while (order > 0 && mm.pageSize * 2 ** order > bytes) order--;
    if (mm.pageSize * 2 ** order < segBytes) break;
    const blockBytes = mm.pageSize * 2 ** order;
    const count = Math.floor(bytes / blockBytes);
    const pfns: bigint[] = [];
    for (let i = 0; i < count; i++) {
      const r = mm.allocKernelPages(order);
      if (!r.ok) break;
      pfns.push(r.value);
    }
    if (pfns.length === count) return new Swiotlb(mm, pfns, order, cfg.force ?? false);
    for (const pfn of pfns) mm.freeKernelPages(pfn, order);
    if (bytes <= IO_TLB_MIN_SLABS * IO_TLB_SIZE) break;
    bytes = Math.max(segBytes, Math.floor(bytes / 2 / segBytes) * segBytes);
  }
  mm.events.warn('swiotlb', `cannot allocate a bounce pool of ${cfg.bytes ?? IO_TLB_DEFAULT_SIZE} bytes`);
  return null;
}

/** The pool a device bounces through (dev->dma_io_tlb_mem), or null. */
function memOf(dev: Device): Swiotlb | null {
  return dmaContextIfAny(dev)?.swiotlb ?? null;
}

/** is_swiotlb_buffer(dev, phys): phys lies in the device's bounce pool. */
export function isSwiotlbBuffer(dev: Device, phys: bigint): boolean {
  const mem = memOf(dev);
  return mem !== null && mem.contains(phys);
}

/** is_swiotlb_force_bounce(dev). */
export function isSwiotlbForceBounce(dev: Device): boolean {
  return memOf(dev)?.forceBounce ?? false;
}

/** is_swiotlb_active(dev): the device has a pool with slots. */
export function isSwiotlbActive(dev: Device): boolean {
  const mem = memOf(dev);
  return mem !== null && mem.nslabs > 0;
}

/**
 * swiotlb_max_mapping_size(dev): one 128-slot segment (256 KiB) minus the slots min_align_mask may
 * skip: 252 KiB for NVMe's 4095.
 */
export function swiotlbMaxMappingSize(dev: Device): number {
  const minAlign = dmaGetMinAlignMask(dev);
  const skip = minAlign ? Math.ceil(minAlign / IO_TLB_SIZE) * IO_TLB_SIZE : 0;
  return IO_TLB_SIZE * IO_TLB_SEGSIZE - skip;
}

/**
 * swiotlb_tbl_map_single: allocates bounce slots for [phys, phys + mappingSize), keeping phys's low
 * bits under min_align_mask, and copies the original into them (always, whatever dir). Clears
 * dev.dmaSkipSync. Returns the bounce address, or DMA_MAPPING_ERROR when there is no pool or it
 * is full ("swiotlb buffer is full" WARN unless DMA_ATTR_NO_WARN).
 */
export function swiotlbTblMapSingle(dev: Device, phys: bigint, mappingSize: number, allocAlignMask: number,
  _dir: number, attrs: number): bigint {
  const ctx = dmaContextOf(dev);
  const mem = ctx.swiotlb;
  if (!mem || mem.nslabs === 0) {
    ctx.mm.events.warn('swiotlb', `${dev.name}: Can not allocate SWIOTLB buffer earlier and can't now provide you with the DMA bounce buffer`);
    return DMA_MAPPING_ERROR;
  }
  const offset = swiotlbAlignOffset(dev, allocAlignMask, phys);
  const align = (allocAlignMask >>> 0) + 1;
  const size = Math.ceil((mappingSize + offset) / align) * align;
  if (nrSlots(size) > IO_TLB_SEGSIZE) {
    if (!(attrs & DMA_ATTR_NO_WARN)) {
      ctx.mm.events.warn('swiotlb', `${dev.name}: swiotlb buffer is full (sz: ${size} bytes), total ${mem.nslabs} (slots), used ${mem.used} (slots)`);
    }
    return DMA_MAPPING_ERROR;
  }
  const first = mem.findSlots(dev, phys, size, allocAlignMask);
  if (first < 0) {
    if (!(attrs & DMA_ATTR_NO_WARN)) {
      ctx.mm.events.warn('swiotlb', `${dev.name}: swiotlb buffer is full (sz: ${size} bytes), total ${mem.nslabs} (slots), used ${mem.used} (slots)`);
    }
    return DMA_MAPPING_ERROR;
  }
  dev.dmaSkipSync = false; // dma_reset_need_sync: bounced memory always needs syncs
  const pad = Math.floor(offset / IO_TLB_SIZE);
  const index = first + pad;
  mem.padSlots[index] = pad;
  const origNum = Number(phys);
  for (let i = 0; i < pad; i++) mem.allocSize[first + i] = 0;
  for (let i = 0; i < nrSlots(size) - pad; i++) {
    mem.origAddr[index + i] = origNum + i * IO_TLB_SIZE;
    mem.allocSize[index + i] = size - offset - i * IO_TLB_SIZE;
  }
  const tlbAddr = mem.slotAddr(index) + BigInt(offset % IO_TLB_SIZE);
  mem.bounce(dev, tlbAddr, mappingSize, DMA_TO_DEVICE);
  ctx.mm.stats.swiotlbMaps++;
  ctx.mm.stats.swiotlbSlotsInUse = mem.used;
  return tlbAddr;
}

/**
 * swiotlb_tbl_unmap_single: copies the bounce buffer back for FROM_DEVICE / BIDIRECTIONAL (unless
 * DMA_ATTR_SKIP_CPU_SYNC) and frees the slots. tlbAddr must be what swiotlbTblMapSingle returned;
 * anything else is a WARN and nothing is freed.
 */
export function swiotlbTblUnmapSingle(dev: Device, tlbAddr: bigint, mappingSize: number, dir: number, attrs: number): void {
  const ctx = dmaContextOf(dev);
  const mem = ctx.swiotlb;
  if (!mem || !mem.contains(tlbAddr)) {
    ctx.mm.events.warn('swiotlb', `${dev.name}: unmap of 0x${tlbAddr.toString(16)} outside the bounce pool`);
    return;
  }
  const index = mem.slotOf(tlbAddr);
  const first = index - mem.padSlots[index];
  if (mem.origAddr[index] < 0 || first < 0 || mem.allocSlots[first] === 0) {
    ctx.mm.events.warn('swiotlb', `${dev.name}: unmap of 0x${tlbAddr.toString(16)}, which is not a mapped bounce buffer`);
    return;
  }
  if (!(attrs & DMA_ATTR_SKIP_CPU_SYNC) && (dir === DMA_FROM_DEVICE || dir === DMA_BIDIRECTIONAL)) {
    mem.bounce(dev, tlbAddr, mappingSize, DMA_FROM_DEVICE);
  }
  mem.releaseSlots(first);
  ctx.mm.stats.swiotlbUnmaps++;
  ctx.mm.stats.swiotlbSlotsInUse = mem.used;
}

/** swiotlb_sync_single_for_device: copy-in for TO_DEVICE / BIDIRECTIONAL; any other dir but FROM_DEVICE is a BUG. */
export function swiotlbSyncSingleForDevice(dev: Device, tlbAddr: bigint, size: number, dir: number): void {
  const ctx = dmaContextOf(dev);
  if (dir === DMA_TO_DEVICE || dir === DMA_BIDIRECTIONAL) ctx.swiotlb?.bounce(dev, tlbAddr, size, DMA_TO_DEVICE);
  else if (dir !== DMA_FROM_DEVICE) ctx.mm.events.bug('swiotlb', 'BUG_ON(dir != DMA_FROM_DEVICE)');
}

/** swiotlb_sync_single_for_cpu: copy-out for FROM_DEVICE / BIDIRECTIONAL; any other dir but TO_DEVICE is a BUG. */
export function swiotlbSyncSingleForCpu(dev: Device, tlbAddr: bigint, size: number, dir: number): void {
  const ctx = dmaContextOf(dev);
  if (dir === DMA_FROM_DEVICE || dir === DMA_BIDIRECTIONAL) ctx.swiotlb?.bounce(dev, tlbAddr, size, DMA_FROM_DEVICE);
  else if (dir !== DMA_TO_DEVICE) ctx.mm.events.bug('swiotlb', 'BUG_ON(dir != DMA_TO_DEVICE)');
}

/**
 * swiotlb_map (the dma-direct helper): bounces [phys, phys + size) and returns the bounce buffer's
 * DMA address, or DMA_MAPPING_ERROR if the pool is full or the bounce buffer itself is beyond the
 * device's mask (WARN "swiotlb addr ... overflow").
 */
export function swiotlbMap(dev: Device, phys: bigint, size: number, dir: number, attrs: number): bigint {
  const tlb = swiotlbTblMapSingle(dev, phys, size, 0, dir, attrs);
  if (tlb === DMA_MAPPING_ERROR) return DMA_MAPPING_ERROR;
  const dmaAddr = physToDmaUnencrypted(dev, tlb);
  if (!dmaCapable(dev, dmaAddr, size, true)) {
    swiotlbTblUnmapSingle(dev, tlb, size, dir, attrs | DMA_ATTR_SKIP_CPU_SYNC);
    dmaContextOf(dev).mm.events.warn('swiotlb', `${dev.name}: swiotlb addr 0x${dmaAddr.toString(16)}+${size} overflow (mask ${(dev.dmaMask ?? 0n).toString(16)}, bus limit ${dev.busDmaLimit.toString(16)}).`);
    return DMA_MAPPING_ERROR;
  }
  if (!dev.dmaCoherent && !(attrs & DMA_ATTR_SKIP_CPU_SYNC)) archSyncDmaForDevice(dev, tlb, size, dir);
  return dmaAddr;
}
