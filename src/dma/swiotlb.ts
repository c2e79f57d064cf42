// Models: kernel/dma/swiotlb.c and include/linux/swiotlb.h (Linux 7.1.5, and the pool encryption state of 7.3: swiotlb_tbl_map_single(),
// swiotlb_find_slots(), swiotlb_bounce(), __swiotlb_tbl_unmap_single(), swiotlb_init_remap()):
// the bounce-buffer pool of 2 KiB slots in 128-slot segments, with the free-run counts per slot
// ("list"), min_align_mask offset preservation (pad slots), copy-in at map, copy-out at unmap/sync,
// and the boot-time pool: its size rounding and its placement below 4 GiB.
// Model deviation: one pool and one area (the kernel splits a pool into per-CPU areas and can grow
// pools dynamically); the model has a single CPU and a fixed pool allocated at boot.

import type { MachineMm, Memblock } from '../mm/internal.ts';
import type { Device } from '../pci/index.ts';
import { SlotKey, checkAddr, checkLen, faultInjected, faultsArmed, MiB, roundupPowOfTwo } from '../base/internal.ts';
import { dmaContextOf } from './context.ts';
import {
  DMA_ATTR_NO_WARN, DMA_ATTR_SKIP_CPU_SYNC, DMA_BIDIRECTIONAL, DMA_FROM_DEVICE, DMA_MAPPING_ERROR,
  DMA_TO_DEVICE,
} from './constants.ts';
import { dmaGetMinAlignMask, dmaGetSegBoundary } from './mask.ts';
import { dmaCapable, physToDmaUnencrypted } from './direct-addr.ts';
import { archSyncDmaFlush, archSyncDmaForDevice } from './cache.ts';
import { forceDmaUnencrypted } from './cc.ts';
import { printkWarning } from './events.ts';
import './counters.ts';

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
  /**
   * Pool size in bytes (default 64 MiB), as `swiotlb=` on the command line asks for it in slots:
   * rounded up to whole 2 KiB slots, to a multiple of 128 slots, then to a power of two.
   */
  readonly bytes?: number;
  /** swiotlb=force, or a confidential-computing guest: dma-direct bounces every mapping. */
  readonly force?: boolean;
  /**
   * Physical address of the pool (page-aligned): where a real boot's memblock_alloc_low() put it,
   * below what the bootloader and early boot had reserved ("software IO TLB: mapped [mem ...]" in
   * the kernel log). Omitted: the top of the free RAM below 4 GiB.
   */
  readonly start?: bigint;
}


/**
 * One io_tlb_mem with its pool: slot metadata in typed arrays, pool memory in machine RAM, one
 * physically contiguous range as swiotlb_init takes it from memblock at boot.
 */
export class Swiotlb {
  /** Lowest physical address of the pool. */
  readonly start: bigint;
  /** Exclusive end of the pool. */
  readonly end: bigint;
  /** Number of 2 KiB slots. */
  readonly nslabs: number;
  /** io_tlb_mem.force_bounce. */
  forceBounce: boolean;
  /**
   * The pool's memory is decrypted (shared with the host): set by createMachine in a
   * confidential-computing guest, as swiotlb_update_mem_attributes() does (7.3, "dma: swiotlb: track
   * pool encryption state and honor DMA_ATTR_CC_SHARED": the pool records it and is used only for
   * mappings of the same kind).
   */
  decrypted = false;
  /** Free contiguous slots from each slot to the end of its 128-slot segment (0 = in use). */
  readonly list: Uint16Array;
  /** Original physical address whose bytes each in-use data slot holds (-1 = none). */
  readonly origAddr: Float64Array;
  /**
   * io_tlb_slot.alloc_size of every allocated slot, pad slots included: the allocation's size less
   * the in-slot offset and the slots before this one (0 = free).
   */
  readonly allocSize: Float64Array;
  /** For the first data slot of an allocation: how many pad slots precede it. */
  readonly padSlots: Uint16Array;
  /** Slots in use now, and the most ever in use. */
  used = 0;
  usedHiwater = 0;
  private index = 0;
  private readonly mm: MachineMm;
  private readonly startNum: number;
  private readonly endNum: number;
  private released = false;

  /**
   * Use createSwiotlb(); this takes nslabs slots (a positive multiple of IO_TLB_SEGSIZE) of RAM the
   * caller already reserved at `start` (page-aligned) with a memblock allocation.
   */
  constructor(mm: MachineMm, start: bigint, nslabs: number, force: boolean) {
    checkLen('nslabs', nslabs, IO_TLB_SEGSIZE);
    if (nslabs % IO_TLB_SEGSIZE !== 0) throw new RangeError(`nslabs must be a multiple of ${IO_TLB_SEGSIZE}, got ${nslabs}`);
    this.mm = mm;
    this.start = start;
    this.startNum = Number(start);
    this.nslabs = nslabs;
    this.endNum = this.startNum + nslabs * IO_TLB_SIZE;
    this.end = BigInt(this.endNum);
    this.forceBounce = force;
    this.list = new Uint16Array(nslabs);
    for (let i = 0; i < nslabs; i++) this.list[i] = IO_TLB_SEGSIZE - (i % IO_TLB_SEGSIZE);
    this.origAddr = new Float64Array(nslabs).fill(-1);
    this.allocSize = new Float64Array(nslabs);
    this.padSlots = new Uint16Array(nslabs);
  }

  /** Pool bytes. */
  get bytes(): number {
    return this.nslabs * IO_TLB_SIZE;
  }

  /** Physical address of slot i, as a number. */
  slotAddrNum(i: number): number {
    return this.startNum + i * IO_TLB_SIZE;
  }

  /** Physical address of slot i. */
  slotAddr(i: number): bigint {
    return BigInt(this.slotAddrNum(i));
  }

  /** Slot index holding a pool address, or -1 outside the pool. */
  slotOf(phys: bigint): number {
    const a = Number(phys);
    if (a < this.startNum || a >= this.endNum) return -1;
    return Math.floor((a - this.startNum) / IO_TLB_SIZE);
  }

  /** true when phys lies inside the pool. */
  contains(phys: bigint): boolean {
    return phys >= this.start && phys < this.end;
  }

  /** Returns the pool's memory to the page allocator (teardown). Mappings still live are a WARN. */
  release(): void {
    if (this.released) return;
    if (this.used !== 0) this.mm.events.warn('swiotlb', `pool released with ${this.used} slots still in use`);
    this.released = true;
    this.mm.memblockFreeLate(this.start, Math.ceil(this.bytes / this.mm.pageSize) * this.mm.pageSize);
  }

  /**
   * swiotlb_find_slots for one area: returns the first slot of nslots free contiguous slots inside
   * one 128-slot segment that satisfy the alignment rules, or -1. Marks them used.
   */
  findSlots(dev: Device, origAddr: bigint, allocSizeBytes: number, allocAlignMaskIn: number): number {
    const boundaryMask = dmaGetSegBoundary(dev);
    const maxSlotsBig = (boundaryMask >> BigInt(IO_TLB_SHIFT)) + 1n;
    const maxSlots = maxSlotsBig > BigInt(TWO32) ? 0 : Number(maxSlotsBig); // 0: boundary never crossed
    // tbl_dma_addr: where the device sees the pool, under the boundary mask.
    const tblBase = Number(physToDmaUnencrypted(dev, this.start) & boundaryMask);
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
      const tlbAddr = tblBase + slot * IO_TLB_SIZE;
      if (low32And(tlbAddr, allocAlignMask) !== 0
        || (orig !== 0 && low32And(tlbAddr, iotlbAlignMask) !== low32And(orig, iotlbAlignMask))) {
        index = index + 1 >= this.nslabs ? 0 : index + 1;
        checked++;
        continue;
      }
      let crosses = false;
      if (maxSlots !== 0) {
        const s = (nrSlots(tblBase) + slot) % maxSlots;
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
    return found;
  }

  /** The slot-returning half of swiotlb_release_slots: frees nslots slots from `first` on. */
  releaseSlots(first: number, nslots: number): void {
    const segEnd = (Math.floor(first / IO_TLB_SEGSIZE) + 1) * IO_TLB_SEGSIZE;
    let count = first + nslots < segEnd ? this.list[first + nslots] : 0;
    for (let i = first + nslots - 1; i >= first; i--) {
      this.list[i] = ++count;
      this.origAddr[i] = -1;
      this.allocSize[i] = 0;
      this.padSlots[i] = 0;
    }
    for (let i = first - 1; i >= 0 && i % IO_TLB_SEGSIZE !== IO_TLB_SEGSIZE - 1 && this.list[i] !== 0; i--) {
      this.list[i] = ++count;
    }
    this.used -= nslots;
  }

  /**
   * swiotlb_bounce: copies size bytes between the bounce buffer at tlbAddr and the original. The
   * slot holding tlbAddr records the original address of its first byte after the min_align_mask
   * offset the allocation keeps; tlbAddr's place in its slot less that offset says where in the
   * original the copy starts. That difference is negative for a sync that starts in a later slot of
   * the mapping, inside the first `offset` bytes of that slot: the bytes it names are still the
   * mapping's (the slot before holds them at its end), and exactly those are copied. A size past
   * the allocation's end is cut to it (dev_WARN_ONCE "Buffer overflow detected").
   * (kernel/dma/swiotlb.c: swiotlb_bounce())
   */
  bounce(dev: Device, tlbAddr: bigint, size: number, dir: number): void {
    const index = this.slotOf(tlbAddr);
    if (index < 0) return;
    let orig = this.origAddr[index];
    if (orig < 0) return;
    // the invalidate issued before must complete before the CPU copies out (7.1.5 swiotlb_bounce)
    if (dir === DMA_FROM_DEVICE && !dev.dmaCoherent) archSyncDmaFlush(dev);
    const tlbOffset = Number(tlbAddr) % IO_TLB_SIZE - swiotlbAlignOffsetNum(dmaGetMinAlignMask(dev), 0, orig);
    orig += tlbOffset;
    const allocSize = this.allocSize[index] - tlbOffset;
    // Starting past the allocation's end (inside its last slot) makes the kernel's size_t
    // difference wrap: nothing is cut and the copy runs past the mapping, as there (dma-debug
    // reports such a sync before it gets here).
    if (allocSize >= 0 && size > allocSize) {
      this.mm.events.warnOnce('swiotlb_bounce:overflow', 'swiotlb', `${dev.name}: Buffer overflow detected. Allocation size: ${allocSize}. Mapping size: ${size}.`);
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

/** Where swiotlb_init put the default pool during the memblock stage of boot. */
export interface SwiotlbBootPool {
  /** Slots asked for: the configured size after the kernel's rounding. */
  readonly wanted: number;
  /** Slots allocated (wanted, or fewer after retries); 0 when no attempt succeeded. */
  readonly nslabs: number;
  /** Physical start of the pool; -1 when nslabs is 0. */
  readonly start: number;
}

/** ALIGN(slots, IO_TLB_SEGSIZE): whole 2 KiB slots for bytes, up to a whole number of segments. */
function segmentSlots(bytes: number): number {
  return Math.ceil(nrSlots(bytes) / IO_TLB_SEGSIZE) * IO_TLB_SEGSIZE;
}

/** A configured pool start as a number (RangeError unless a page-aligned address below 4 GiB). */
function checkPoolStart(start: bigint): number {
  if (typeof start !== 'bigint' || start < 0n || start >= 1n << 32n || start % 4096n !== 0n) {
    throw new RangeError(`swiotlb.start must be a page-aligned address below 4 GiB, got ${String(start)}`);
  }
  return Number(start);
}

/**
 * The slot count swiotlb asks memblock for at boot, for a size in bytes. A `swiotlb=` slot count is
 * aligned up to whole segments when parsed (setup_io_tlb_npages()); swiotlb_init_remap() then calls
 * swiotlb_adjust_nareas() with the number of possible CPUs, whose round_up_default_nslabs() makes it
 * at least one segment per area and rounds it up to a power of two. One CPU here: one area.
 */
function swiotlbDefaultNslabs(bytes: number): number {
  return roundupPowOfTwo(Math.max(segmentSlots(bytes), IO_TLB_SEGSIZE));
}

/**
 * swiotlb_init_remap() in the memblock stage of boot (x86-64 calls it from mem_init, before the page
 * allocator): the pool is one range from swiotlb_memblock_alloc(), which takes it with
 * memblock_alloc_low(), below 4 GiB, so that 32-bit devices can reach it (memblock_alloc() anywhere
 * is for SWIOTLB_ANY, Xen PV only). When memblock has no room the slot count is halved, kept whole
 * segments, and tried again down to IO_TLB_MIN_SLABS. Validates cfg.bytes (RangeError).
 */
export function swiotlbMemblockInit(mb: Memblock, cfg: SwiotlbConfig = {}): SwiotlbBootPool {
  const wanted = swiotlbDefaultNslabs(checkLen('swiotlb.bytes', cfg.bytes ?? IO_TLB_DEFAULT_SIZE, 1));
  let nslabs = wanted;
  for (;;) {
    // swiotlb_memblock_alloc(): PAGE_ALIGN(nslabs << IO_TLB_SHIFT), page-aligned
    const bytes = Math.ceil((nslabs * IO_TLB_SIZE) / mb.pageSize) * mb.pageSize;
    const start = cfg.start === undefined ? mb.allocLow(bytes) : mb.allocAt(checkPoolStart(cfg.start), bytes);
    if (start >= 0) return { wanted, nslabs, start };
    // a pool at a given address has the size it was recorded with: no smaller retry there
    if (nslabs <= IO_TLB_MIN_SLABS || cfg.start !== undefined) return { wanted, nslabs: 0, start: -1 };
    nslabs = Math.ceil(Math.floor(nslabs / 2) / IO_TLB_SEGSIZE) * IO_TLB_SEGSIZE;
  }
}

/**
 * The default pool once the machine is up, from what swiotlbMemblockInit placed. The kernel's
 * pr_info lines on the size (rounded up; adjusted after a failed allocation) are INFO events. No
 * pool at all is a WARN and null: a kernel without swiotlb.
 */
export function createSwiotlb(mm: MachineMm, boot: SwiotlbBootPool, cfg: SwiotlbConfig = {}): Swiotlb | null {
  const asked = cfg.bytes ?? IO_TLB_DEFAULT_SIZE;
  if (boot.wanted !== segmentSlots(asked)) {
    mm.events.record('INFO', 'swiotlb', `SWIOTLB bounce buffer size roundup to ${Math.floor((boot.wanted * IO_TLB_SIZE) / MiB)}MB`);
  }
  if (boot.nslabs === 0) {
    mm.events.warn('swiotlb', `cannot allocate a bounce pool of ${asked} bytes`);
    return null;
  }
  if (boot.nslabs !== boot.wanted) {
    mm.events.record('INFO', 'swiotlb', `SWIOTLB bounce buffer size adjusted ${boot.wanted} -> ${boot.nslabs} slabs`);
  }
  return new Swiotlb(mm, BigInt(boot.start), boot.nslabs, cfg.force ?? false);
}

/** The slot on each device that holds dev->dma_io_tlb_mem. */
const DMA_IO_TLB_MEM = new SlotKey<Swiotlb>('swiotlb-io-tlb-mem');

/** swiotlb_dev_init: the device bounces through mem (dev->dma_io_tlb_mem = mem). */
export function swiotlbDevInit(dev: Device, mem: Swiotlb): void {
  dev.slots.set(DMA_IO_TLB_MEM, mem);
}

/** The pool a device bounces through (dev->dma_io_tlb_mem), or null. */
export function swiotlbOf(dev: Device): Swiotlb | null {
  return dev.slots.get(DMA_IO_TLB_MEM) ?? null;
}

/** is_swiotlb_buffer(dev, phys): phys lies in the device's bounce pool. */
export function isSwiotlbBuffer(dev: Device, phys: bigint): boolean {
  const mem = swiotlbOf(dev);
  return mem !== null && mem.contains(phys);
}

/** is_swiotlb_force_bounce(dev). */
export function isSwiotlbForceBounce(dev: Device): boolean {
  return swiotlbOf(dev)?.forceBounce ?? false;
}

/** is_swiotlb_active(dev): the device has a pool with slots. */
export function isSwiotlbActive(dev: Device): boolean {
  const mem = swiotlbOf(dev);
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
 * is full ("swiotlb buffer is full", a warning-level INFO event, unless DMA_ATTR_NO_WARN).
 */
export function swiotlbTblMapSingle(dev: Device, phys: bigint, mappingSize: number, allocAlignMask: number,
  _dir: number, attrs: number): bigint {
  const ctx = dmaContextOf(dev);
  const mem = swiotlbOf(dev);
  // kernel/dma/swiotlb.c: swiotlb_tbl_map_single()'s two failures are dev_warn_ratelimited lines, not
  // WARN()s. Model deviation: the model has no clock, so every one is logged (no 10-per-5-s burst).
  if (!mem || mem.nslabs === 0) {
    printkWarning(ctx.mm.events, 'swiotlb', `${dev.name}: Can not allocate SWIOTLB buffer earlier and can't now provide you with the DMA bounce buffer`);
    return DMA_MAPPING_ERROR;
  }
  // 7.3 ("dma: swiotlb: track pool encryption state and honor DMA_ATTR_CC_SHARED"): a device that must
  // DMA unencrypted bounces only through a decrypted pool, anything else only through a private one
  if (mem.decrypted !== forceDmaUnencrypted(dev)) {
    ctx.mm.events.warn('swiotlb', `${dev.name}: no ${mem.decrypted ? 'encrypted' : 'decrypted'} swiotlb pool for this mapping (the pool is ${mem.decrypted ? 'decrypted' : 'encrypted'})`);
    return DMA_MAPPING_ERROR;
  }
  const offset = swiotlbAlignOffset(dev, allocAlignMask, phys);
  const align = (allocAlignMask >>> 0) + 1;
  const size = Math.ceil((mappingSize + offset) / align) * align;
  if (nrSlots(size) > IO_TLB_SEGSIZE) {
    if (!(attrs & DMA_ATTR_NO_WARN)) {
      printkWarning(ctx.mm.events, 'swiotlb', `${dev.name}: swiotlb buffer is full (sz: ${size} bytes), total ${mem.nslabs} (slots), used ${mem.used} (slots)`);
    }
    return DMA_MAPPING_ERROR;
  }
  const first = faultsArmed(ctx.mm) && faultInjected(ctx.mm, 'swiotlb', `${dev.name}: ${nrSlots(size)} slots`) ? -1 : mem.findSlots(dev, phys, size, allocAlignMask);
  if (first < 0) {
    if (!(attrs & DMA_ATTR_NO_WARN)) {
      printkWarning(ctx.mm.events, 'swiotlb', `${dev.name}: swiotlb buffer is full (sz: ${size} bytes), total ${mem.nslabs} (slots), used ${mem.used} (slots)`);
    }
    return DMA_MAPPING_ERROR;
  }
  dev.dmaSkipSync = false; // dma_reset_need_sync: bounced memory always needs syncs
  const pad = Math.floor(offset / IO_TLB_SIZE);
  const index = first + pad;
  mem.padSlots[index] = pad;
  const origNum = Number(phys);
  // kernel/dma/swiotlb.c: swiotlb_search_pool_area() gives every slot it allocates, pad slots too,
  // the size left from that slot's start, less the in-slot offset (alloc_size - (offset + (i << 11)))
  const slotOffset = offset % IO_TLB_SIZE;
  for (let i = 0; i < nrSlots(size); i++) mem.allocSize[first + i] = size - slotOffset - i * IO_TLB_SIZE;
  for (let i = 0; i < nrSlots(size) - pad; i++) mem.origAddr[index + i] = origNum + i * IO_TLB_SIZE;
  const tlbAddr = mem.slotAddr(index) + BigInt(offset % IO_TLB_SIZE);
  mem.bounce(dev, tlbAddr, mappingSize, DMA_TO_DEVICE);
  ctx.mm.stats.swiotlbMaps++;
  ctx.mm.stats.swiotlbSlotsInUse = mem.used;
  return tlbAddr;
}

/**
 * swiotlb_tbl_unmap_single: copies the bounce buffer back for FROM_DEVICE / BIDIRECTIONAL (unless
 * DMA_ATTR_SKIP_CPU_SYNC) and frees the slots, as swiotlb_release_slots finds them: from tlbAddr's
 * slot (less the pad slots recorded there, which only an allocation's first data slot has) for as
 * many slots as that slot's alloc_size spans. So an address inside a mapping frees from its slot to
 * the mapping's end, as the kernel does (dma-debug, when on, reports such an unmap before it gets here).
 * Model deviation: an address in a free slot, or outside the pool, is a WARN and frees nothing (the
 * kernel would corrupt its free list).
 */
export function swiotlbTblUnmapSingle(dev: Device, tlbAddr: bigint, mappingSize: number, dir: number, attrs: number): void {
  const ctx = dmaContextOf(dev);
  const mem = swiotlbOf(dev);
  if (!mem || !mem.contains(tlbAddr)) {
    ctx.mm.events.warn('swiotlb', `${dev.name}: unmap of 0x${tlbAddr.toString(16)} outside the bounce pool`);
    return;
  }
  const slotOffset = swiotlbAlignOffset(dev, 0, tlbAddr);
  let first = mem.slotOf(tlbAddr - BigInt(slotOffset));
  first -= mem.padSlots[first];
  const allocSize = first < 0 ? 0 : mem.allocSize[first];
  if (allocSize === 0) {
    ctx.mm.events.warn('swiotlb', `${dev.name}: unmap of 0x${tlbAddr.toString(16)}, which is not a mapped bounce buffer`);
    return;
  }
  if (!(attrs & DMA_ATTR_SKIP_CPU_SYNC) && (dir === DMA_FROM_DEVICE || dir === DMA_BIDIRECTIONAL)) {
    mem.bounce(dev, tlbAddr, mappingSize, DMA_FROM_DEVICE);
  }
  mem.releaseSlots(first, nrSlots(allocSize + slotOffset));
  ctx.mm.stats.swiotlbUnmaps++;
  ctx.mm.stats.swiotlbSlotsInUse = mem.used;
}

/** swiotlb_sync_single_for_device: copy-in for TO_DEVICE / BIDIRECTIONAL; any other dir but FROM_DEVICE is a BUG. */
export function swiotlbSyncSingleForDevice(dev: Device, tlbAddr: bigint, size: number, dir: number): void {
  const ctx = dmaContextOf(dev);
  if (dir === DMA_TO_DEVICE || dir === DMA_BIDIRECTIONAL) swiotlbOf(dev)?.bounce(dev, tlbAddr, size, DMA_TO_DEVICE);
  else if (dir !== DMA_FROM_DEVICE) ctx.mm.events.bug('swiotlb', 'BUG_ON(dir != DMA_FROM_DEVICE)');
}

/** swiotlb_sync_single_for_cpu: copy-out for FROM_DEVICE / BIDIRECTIONAL; any other dir but TO_DEVICE is a BUG. */
export function swiotlbSyncSingleForCpu(dev: Device, tlbAddr: bigint, size: number, dir: number): void {
  const ctx = dmaContextOf(dev);
  if (dir === DMA_FROM_DEVICE || dir === DMA_BIDIRECTIONAL) swiotlbOf(dev)?.bounce(dev, tlbAddr, size, DMA_FROM_DEVICE);
  else if (dir !== DMA_TO_DEVICE) ctx.mm.events.bug('swiotlb', 'BUG_ON(dir != DMA_TO_DEVICE)');
}

/**
 * swiotlb_map (the dma-direct helper): bounces [phys, phys + size) and returns the bounce buffer's
 * DMA address, or DMA_MAPPING_ERROR if the pool is full or the bounce buffer itself is beyond the
 * device's mask (WARN "swiotlb addr ... overflow", the first time on the machine).
 */
export function swiotlbMap(dev: Device, phys: bigint, size: number, dir: number, attrs: number): bigint {
  const tlb = swiotlbTblMapSingle(dev, phys, size, 0, dir, attrs);
  if (tlb === DMA_MAPPING_ERROR) return DMA_MAPPING_ERROR;
  const dmaAddr = physToDmaUnencrypted(dev, tlb);
  if (!dmaCapable(dev, dmaAddr, size, true)) {
    swiotlbTblUnmapSingle(dev, tlb, size, dir, attrs | DMA_ATTR_SKIP_CPU_SYNC);
    // kernel/dma/swiotlb.c: swiotlb_map(): dev_WARN_ONCE, one WARN per machine
    dmaContextOf(dev).mm.events.warnOnce('swiotlb_map:overflow', 'swiotlb',
      `${dev.name}: swiotlb addr 0x${dmaAddr.toString(16)}+${size} overflow (mask ${(dev.dmaMask ?? 0n).toString(16)}, bus limit ${dev.busDmaLimit.toString(16)}).`);
    return DMA_MAPPING_ERROR;
  }
  if (!dev.dmaCoherent && !(attrs & DMA_ATTR_SKIP_CPU_SYNC)) archSyncDmaForDevice(dev, tlb, size, dir);
  return dmaAddr;
}

/** One bounce slot as swiotlbSlotInfo describes it. */
export interface SwiotlbSlotInfo {
  /** Physical start of the device's pool (io_tlb_mem). */
  readonly poolStart: bigint;
  /** Index of the 2 KiB slot holding the address. */
  readonly slot: number;
  /** Physical address of that slot. */
  readonly slotAddr: bigint;
  /** false for a free slot or a pad slot (no original behind it): origAddr is then null. */
  readonly inUse: boolean;
  /**
   * The original's physical address for the queried address (io_tlb_slot.orig_addr plus its place
   * in the slot, less the min_align_mask offset the allocation keeps, as swiotlb_bounce() computes it), or null.
   */
  readonly origAddr: bigint | null;
  /** Bytes of the allocation from this slot's start to its end, less the in-slot offset (io_tlb_slot.alloc_size; pad slots have one too, free slots 0). */
  readonly allocSize: number;
}

/**
 * The bounce slot of the device's swiotlb pool holding phys, or null when phys is outside the pool
 * (is_swiotlb_buffer false). Read-only: for traces and reports.
 */
export function swiotlbSlotInfo(dev: Device, phys: bigint): SwiotlbSlotInfo | null {
  checkAddr('phys', phys);
  const mem = swiotlbOf(dev);
  if (mem === null) return null;
  const slot = mem.slotOf(phys);
  if (slot < 0) return null;
  const orig = mem.origAddr[slot];
  const inUse = orig >= 0;
  let origAddr: bigint | null = null;
  if (inUse) {
    const off = Number(phys) % IO_TLB_SIZE - swiotlbAlignOffsetNum(dmaGetMinAlignMask(dev), 0, orig);
    origAddr = BigInt(orig + off);
  }
  return { poolStart: mem.start, slot, slotAddr: mem.slotAddr(slot), inUse, origAddr, allocSize: mem.allocSize[slot] };
}
