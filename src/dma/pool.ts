// Models: mm/dmapool.c (Linux 7.1.5): dma_pool_create_node() (block size at least sizeof(struct
// dma_block) = 16 and rounded up to the alignment, the allocation max(size, PAGE_SIZE), the boundary
// no block may cross), pool_initialise_page() (blocks laid out from offset 0, skipping to the next
// boundary where a block would cross it), dma_pool_alloc() / dma_pool_zalloc() (one free list over
// every page, last freed first; a new page from dma_alloc_coherent() only when it is empty) and
// dma_pool_free(); dma_pool_destroy() (pages go back only when no block is in use; a busy pool is
// reported and its pages leak, as the kernel leaks them). Pages are never given back before destroy.
// The device's pools are listed (dev->dma_pools, the sysfs "pools" file).
// Model deviation: the free list lives in the pool object, not in the free blocks' first bytes.
// Model deviation: DMAPOOL_DEBUG's checks of dma_pool_free (an address of no page of the pool, a
// block already free) always run, as MODEL-CHECK events, and the bad block is not put on the list.
// They are stricter than pool_block_err(): the page is found by the CPU address and the DMA address
// must be that block's, where the kernel finds the page by the DMA address alone and would put a
// CPU address of another block (or of no page) on the list with it.
// Model deviation: none of DMAPOOL_DEBUG's poisoning (POOL_POISON_FREED over a new page and a freed
// block, POOL_POISON_ALLOCATED over an allocated one) or pool_check_block()'s "corrupted" report,
// and no init_on_alloc / init_on_free: a block holds what the non-debug kernel leaves in it, except
// the free-list words (see above).

import { SlotKey, checkAddr, checkLen, err, faultInjected, ok, type Result } from '../base/internal.ts';
import type { Device } from '../pci/index.ts';
import { checkGfp, dmaAllocCoherent, dmaFreeCoherent, GFP_KERNEL, __GFP_ZERO, type DmaCoherentMem } from './coherent.ts';
import { dmaContextOf } from './context.ts';
import { modelCheckEvent } from './events.ts';
import './counters.ts';

/** sizeof(struct dma_block): the smallest block. */
const DMA_BLOCK_SIZE = 16;
/** INT_MAX: the largest block size dma_pool_create accepts. */
const INT_MAX = 0x7fffffff;

/** One page (allocation) of a pool: coherent memory split into blocks. */
export interface DmaPoolPage extends DmaCoherentMem {
  /** Blocks of this page now handed out. */
  inUse: number;
}

/** struct dma_pool. Create with dmaPoolCreate. */
export class DmaPool {
  readonly name: string;
  readonly dev: Device;
  /** Block size (after rounding). */
  readonly size: number;
  /** Bytes of each page (dma_alloc_coherent size). */
  readonly allocation: number;
  readonly boundary: number;
  /** Pages, newest first (list_add). */
  readonly pages: DmaPoolPage[] = [];
  /** Blocks carved from all pages. */
  nrBlocks = 0;
  /** Blocks handed out now. */
  nrActive = 0;
  /** Free blocks: a stack (top = last), CPU and DMA address of each. */
  private readonly freeCpu: number[] = [];
  private readonly freeDma: bigint[] = [];
  /** CPU addresses of the free blocks, for free-time checks. */
  private readonly freeSet = new Set<number>();
  /** Pages by cpuPhys / span (each page is naturally aligned to its 2^order pages). */
  private readonly byFrame = new Map<number, DmaPoolPage>();
  private span = 0;
  destroyed = false;

  /** @internal use dmaPoolCreate. */
  constructor(name: string, dev: Device, size: number, allocation: number, boundary: number) {
    this.name = name;
    this.dev = dev;
    this.size = size;
    this.allocation = allocation;
    this.boundary = boundary;
  }

  get nrPages(): number {
    return this.pages.length;
  }

  /** Free blocks on the list now. */
  get nrFree(): number {
    return this.freeCpu.length;
  }

  /** pool_initialise_page(): carves a fresh page and puts its blocks, lowest first, at the list's head. */
  addPage(page: DmaPoolPage): void {
    const cpu: number[] = [];
    const dma: bigint[] = [];
    let nextBoundary = this.boundary;
    let offset = 0;
    while (offset + this.size <= this.allocation) {
      if (offset + this.size > nextBoundary) {
        offset = nextBoundary;
        nextBoundary += this.boundary;
        continue;
      }
      cpu.push(Number(page.cpuPhys) + offset);
      dma.push(page.dmaAddr + BigInt(offset));
      offset += this.size;
    }
    this.nrBlocks += cpu.length;
    for (let i = cpu.length - 1; i >= 0; i--) {
      this.freeCpu.push(cpu[i]);
      this.freeDma.push(dma[i]);
      this.freeSet.add(cpu[i]);
    }
    this.pages.unshift(page);
    if (this.span === 0) {
      this.span = 4096;
      while (this.span < this.allocation) this.span *= 2;
    }
    this.byFrame.set(Math.floor(Number(page.cpuPhys) / this.span), page);
  }

  /** pool_block_pop(): the head of the free list, or null. */
  pop(): DmaCoherentMem | null {
    const c = this.freeCpu.pop();
    if (c === undefined) return null;
    const d = this.freeDma.pop()!;
    this.freeSet.delete(c);
    this.nrActive++;
    this.pageOf(c)!.inUse++;
    return { cpuPhys: BigInt(c), dmaAddr: d };
  }

  /** The page holding CPU address c, or undefined. */
  pageOf(c: number): DmaPoolPage | undefined {
    const p = this.span === 0 ? undefined : this.byFrame.get(Math.floor(c / this.span));
    return p !== undefined && c < Number(p.cpuPhys) + this.allocation ? p : undefined;
  }

  /** pool_block_push() after the checks; false when the block is bad (reported). */
  push(cpuPhys: bigint, dmaAddr: bigint): boolean {
    const c = Number(cpuPhys);
    const page = this.pageOf(c);
    const mm = dmaContextOf(this.dev).mm;
    if (page === undefined || dmaAddr - page.dmaAddr !== BigInt(c - Number(page.cpuPhys))) {
      modelCheckEvent(mm.events, `${this.dev.name}: dma_pool_free ${this.name}, 0x${cpuPhys.toString(16)}/0x${dmaAddr.toString(16)} (bad dma)`,
        { dev: this.dev.name, pool: this.name, check: 'dmapool-bad-dma', cpuPhys, dmaAddr });
      return false;
    }
    if (this.freeSet.has(c)) {
      modelCheckEvent(mm.events, `${this.dev.name}: dma_pool_free ${this.name}, dma 0x${dmaAddr.toString(16)} already free`,
        { dev: this.dev.name, pool: this.name, check: 'dmapool-double-free', cpuPhys, dmaAddr });
      return false;
    }
    this.freeCpu.push(c);
    this.freeDma.push(dmaAddr);
    this.freeSet.add(c);
    this.nrActive--;
    page.inUse--;
    return true;
  }
}

/** The slot on a device that lists its pools (dev->dma_pools), newest first. */
const DMA_POOLS = new SlotKey<DmaPool[]>('dma-pools');

function isPow2(n: number): boolean {
  return n > 0 && Number.isInteger(Math.log2(n));
}

/**
 * dma_pool_create(name, dev, size, align, boundary): a pool of size-byte blocks (at least 16, rounded
 * up to align) carved from coherent pages of max(size, PAGE_SIZE) bytes; no block crosses a multiple
 * of boundary (0: the allocation). Errors (the kernel's NULL): EINVAL for an align or boundary that is
 * not a power of two, a boundary below the block size, a size of 0 or above INT_MAX.
 */
export function dmaPoolCreate(name: string, dev: Device, size: number, align: number, boundary: number): Result<DmaPool> {
  if (typeof name !== 'string') throw new TypeError(`name must be a string, got ${typeof name}`);
  checkLen('size', size);
  checkLen('align', align);
  checkLen('boundary', boundary);
  const mm = dmaContextOf(dev).mm;
  if (align === 0) align = 1;
  else if (!isPow2(align)) return err('EINVAL', `align ${align} is not a power of two`);
  if (size === 0 || size > INT_MAX) return err('EINVAL', `size ${size} out of (0, INT_MAX]`);
  if (size < DMA_BLOCK_SIZE) size = DMA_BLOCK_SIZE;
  size = Math.ceil(size / align) * align;
  const allocation = Math.max(size, mm.pageSize);
  if (boundary === 0) boundary = allocation;
  else if (boundary < size || !isPow2(boundary)) return err('EINVAL', `boundary ${boundary} is below the block size ${size} or not a power of two`);
  boundary = Math.min(boundary, allocation);
  // strscpy into char name[32]
  const pool = new DmaPool(name.slice(0, 31), dev, size, allocation, boundary);
  dev.slots.getOrCreate(DMA_POOLS, () => []).unshift(pool);
  return ok(pool);
}

/**
 * dma_pool_alloc(pool, gfp): a block (CPU and DMA address). Takes a new page from dmaAllocCoherent
 * only when no block is free. The block's contents are what was there (zeroed only with __GFP_ZERO
 * or dmaPoolZalloc); a fresh page is zeroed. ENOMEM when no page can be had.
 */
export function dmaPoolAlloc(pool: DmaPool, gfp = GFP_KERNEL): Result<DmaCoherentMem> {
  checkPool(pool);
  checkGfp(gfp);
  // Model deviation: the kernel's dma_pool_alloc can fail only when it needs a new page; an injected
  // failure ('dma-pool') fails any call, as if the pool had to grow and its page was refused, so a
  // caller's unwinding is reached whatever the pool holds.
  if (faultInjected(dmaContextOf(pool.dev).mm, 'dma-pool', `${pool.dev.name}: ${pool.name}`)) return err('ENOMEM', `${pool.name}: no page for the pool`);
  let block = pool.pop();
  if (block === null) {
    const mem = dmaAllocCoherent(pool.dev, pool.allocation, gfp & ~__GFP_ZERO);
    if (!mem.ok) return mem;
    pool.addPage({ cpuPhys: mem.value.cpuPhys, dmaAddr: mem.value.dmaAddr, inUse: 0 });
    block = pool.pop()!;
  }
  const mm = dmaContextOf(pool.dev).mm;
  if (gfp & __GFP_ZERO) mm.mem.fill(block.cpuPhys, pool.size, 0);
  mm.stats.dmaPoolAllocs++;
  return ok(block);
}

/** dma_pool_zalloc: dmaPoolAlloc with __GFP_ZERO. */
export function dmaPoolZalloc(pool: DmaPool, gfp = GFP_KERNEL): Result<DmaCoherentMem> {
  return dmaPoolAlloc(pool, gfp | __GFP_ZERO);
}

/** dma_pool_free(pool, vaddr, dma): puts the block back at the head of the free list. */
export function dmaPoolFree(pool: DmaPool, cpuPhys: bigint, dmaAddr: bigint): void {
  checkPool(pool);
  checkAddr('cpuPhys', cpuPhys);
  checkAddr('dmaAddr', dmaAddr);
  if (pool.push(cpuPhys, dmaAddr)) dmaContextOf(pool.dev).mm.stats.dmaPoolFrees++;
}

/**
 * dma_pool_destroy: removes the pool from its device's list and frees its pages, unless blocks are
 * still in use: then "dma_pool_destroy <name> busy" is logged (dev_err: an INFO event) and the pages
 * leak, as in the kernel (dma-debug then reports them at unbind). null is accepted and does nothing.
 */
export function dmaPoolDestroy(pool: DmaPool | null): void {
  if (pool === null) return;
  checkPool(pool);
  const list = pool.dev.slots.get(DMA_POOLS)!;
  list.splice(list.indexOf(pool), 1);
  pool.destroyed = true;
  const mm = dmaContextOf(pool.dev).mm;
  if (pool.nrActive > 0) {
    mm.events.record('INFO', 'dmapool', `${pool.dev.name}: dma_pool_destroy ${pool.name} busy`,
      { dev: pool.dev.name, pool: pool.name, level: 'err', nrActive: pool.nrActive });
    return;
  }
  for (const p of pool.pages) dmaFreeCoherent(pool.dev, pool.allocation, p.cpuPhys, p.dmaAddr);
  pool.pages.length = 0;
}

/** The device's pools (dev->dma_pools, newest first, as the sysfs "pools" file lists them). */
export function dmaPoolsOf(dev: Device): readonly DmaPool[] {
  return dev.slots.get(DMA_POOLS) ?? [];
}

function checkPool(pool: unknown): asserts pool is DmaPool {
  if (!(pool instanceof DmaPool)) throw new TypeError(`pool must be a DmaPool (dmaPoolCreate), got ${String(pool)}`);
  if (pool.destroyed) throw new TypeError(`pool ${pool.name} was destroyed`);
}
