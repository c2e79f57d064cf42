// Models: mm/mm_init.c, mm/page_alloc.c, mm/hugetlb.c, include/linux/page_ref.h, mm/memory.c (the shared
// zero page), mm/huge_memory.c (the huge zero folio) (Linux 7.1): the machine's memory at boot (boot-time
// hugetlb pools included), the page allocator entry points and the machine's table of live GUP pins.
// Implements MachineMm (for upper layers) and UserMmHost (for process address spaces).

import { EventLog, faultInjected, faultsArmed, MiB, Prng, Slots, Stats, checkAddr, checkLen, err, formatBytes, hex, ilog2, ok, type Result } from '../base/internal.ts';
import { BuddyAllocator, maxPageOrder } from './buddy.ts';
import { FolioKind, FolioTable, type FolioRecord } from './folio.ts';
import { HUGETLB_BYTES, type HugetlbSize, type MmConfig, type Region, type ResolvedMmConfig, hugetlbSizeMissing, hugetlbSizes, layoutRegions, resolveMmConfig } from './layout.ts';
import { memmapOf, type MemmapBreakdown } from './memmap.ts';
import { SparsePhysMem } from './physmem.ts';
import { PinTable, type PinInfo } from './pins.ts';
import type { HugetlbPool, KernelPagesOptions, KernelPagesPoint, MachineMm, Memblock, MemRegion, PageFacts } from './types.ts';
import { UserMm, type UserMmHost } from './user-mm.ts';
import './counters.ts';

/** A snapshot of one folio's metadata (folioOf). */
export interface FolioInfo {
  readonly head: bigint;
  readonly order: number;
  readonly refcount: number;
  readonly pincount: number;
}

/**
 * The simulated machine's memory: the physical map, sparse byte contents, the buddy allocator,
 * hugetlb pools and folio records. Subclassable: the top-level createMachine extends it with PCI,
 * IOMMU and DMA. Creating one is O(RAM / top-order block) bytes and time (a block is 4 MiB at 4 KiB
 * pages), whatever the RAM size.
 */
export class MmMachine implements MachineMm, UserMmHost {
  readonly config: ResolvedMmConfig;
  readonly pageSize: number;
  readonly pageShift: number;
  readonly physAddrBits: number;
  readonly regions: readonly Region[];
  readonly mem: SparsePhysMem;
  readonly events = new EventLog();
  readonly stats = new Stats();
  readonly slots = new Slots();
  readonly rng: Prng;
  /** The buddy allocator (model internals; exposed for tests and reports). */
  readonly buddy: BuddyAllocator;
  /** Folio records of allocated user folios. */
  readonly folios = new FolioTable();
  /** hugetlb pools by size name: one per size the page size offers (hugetlbSizes in layout.ts). */
  readonly hugetlb: Readonly<Partial<Record<HugetlbSize, HugetlbPool>>>;
  /** Order of a PMD-sized THP (2 MiB of base pages). */
  readonly thpOrder: number;
  /** The buddy allocator's largest order (MAX_PAGE_ORDER: 10 at 4 KiB pages, 11 at 16 KiB, 13 at 64 KiB). */
  readonly maxPageOrder: number;
  /** Live GUP pins (listPins() lists them). */
  readonly pinTable = new PinTable<UserMm>();
  private zeroPfn = -1;
  private hugeZeroIdx = -1;
  private readonly kernelPages = new Map<number, number>();
  /** Boot (memblock) allocations still held: first pfn -> pages. */
  private readonly bootPages = new Map<number, number>();
  private readonly factsByRegion = new Map<number, PageFacts>();
  private nextProcessId = 1;

  /**
   * Builds the machine. `memblock`, if given, runs once the gigantic pages are carved and before
   * the page allocator takes over the rest of RAM: what it allocates there stays out of the buddy
   * allocator (the machine layer places swiotlb's default pool so).
   * @throws TypeError/RangeError naming the bad config field.
   */
  constructor(config: MmConfig, memblock?: (mb: Memblock) => void) {
    const cfg = resolveMmConfig(config);
    this.config = cfg;
    this.pageSize = cfg.pageSize;
    this.pageShift = ilog2(cfg.pageSize);
    this.physAddrBits = cfg.physAddrBits;
    this.rng = new Prng(cfg.seed);
    this.regions = layoutRegions(cfg);
    this.mem = new SparsePhysMem(this.regions, cfg.physAddrBits);
    const ps = cfg.pageSize;
    this.thpOrder = ilog2((2 * MiB) / ps);
    this.maxPageOrder = maxPageOrder(ps);
    const pools: Partial<Record<HugetlbSize, HugetlbPool>> = {};
    for (const size of hugetlbSizes(ps)) {
      const len = HUGETLB_BYTES[size];
      pools[size] = { order: ilog2(len / ps), len, total: cfg.hugetlb[size] ?? 0, free: [], reserved: 0 };
    }
    this.hugetlb = pools;
    // Gigantic pages (larger than the buddy allocator's largest block: mm/hugetlb.c
    // hstate_is_gigantic) come from memblock at boot, before the buddy allocator: carve them from
    // the top of the highest RAM range, the largest size highest, each aligned to its size. The
    // gaps alignment leaves go to the buddy allocator.
    // At 16 and 64 KiB pages the buddy allocator's largest block (arm64's ARCH_FORCE_MAX_ORDER)
    // holds a PMD, so only 1 GiB and 16 GiB pages are gigantic there.
    // Model deviation: memblock takes boot-time pages top-down in the order the command line names
    // the sizes, so the kernel's addresses can differ (and it would fill an alignment gap the
    // model leaves to the buddy allocator).
    const ram = this.regions.filter((r) => r.kind === 'ram');
    const ranges: Array<[number, number]> = ram.map((r) => [r.startNum / ps, r.endNum / ps]);
    const sizes = hugetlbSizes(ps);
    const top = ram[ram.length - 1];
    const last = ranges[ranges.length - 1];
    let end = top.endNum;
    const above: Array<[number, number]> = [];
    for (let k = sizes.length - 1; k >= 0; k--) {
      const pool = pools[sizes[k]]!;
      if (pool.order <= this.maxPageOrder || pool.total === 0) continue;
      const len = pool.len;
      const carveEnd = Math.floor(end / len) * len;
      const carveStart = carveEnd - pool.total * len;
      if (carveStart < Math.ceil(top.startNum / len) * len) {
        throw new RangeError(`config.hugetlb['${sizes[k]}'] ${pool.total} pages do not fit in RAM range ${top.name}: gigantic pages are carved from its top, `
          + `each ${formatBytes(len)}-aligned, and the range holds ${Math.max(0, (Math.floor(end / len) - Math.ceil(top.startNum / len)))} of them `
          + `(${formatBytes(top.len)} from ${hex(top.startNum)}): raise ramBytes`);
      }
      for (let a = carveEnd - len; a >= carveStart; a -= len) pool.free.push(a / ps);
      if (carveEnd < end) above.push([carveEnd / ps, end / ps]);
      end = carveStart;
    }
    if (end < top.endNum) {
      ranges.pop();
      if (end / ps > last[0]) ranges.push([last[0], end / ps]);
      ranges.push(...above.reverse());
    }
    if (memblock !== undefined) this.runMemblock(ranges, memblock);
    this.buddy = new BuddyAllocator(ranges, cfg.aged, cfg.seed, this.maxPageOrder);
    for (const size of sizes) {
      const pool = pools[size]!;
      if (pool.order > this.maxPageOrder) continue;
      for (let i = 0; i < pool.total; i++) {
        // a pool of whole top-order blocks (512 MiB at 64 KiB pages) is filled before the aging
        // model's background owners arrive, as at boot
        const pfn = pool.order === this.maxPageOrder ? this.buddy.allocBootBlock() : this.buddy.alloc(pool.order);
        if (pfn < 0) throw new RangeError(`config.hugetlb['${size}'] ${pool.total} pages do not fit in free RAM (got ${i})`);
        pool.free.push(pfn);
      }
      pool.free.reverse();
    }
  }

  /**
   * The hugetlb pool of one size.
   * @throws RangeError naming the sizes this machine has, when it has none of that size.
   */
  hugetlbPool(size: HugetlbSize): HugetlbPool {
    const pool = this.hugetlb[size];
    if (pool === undefined) {
      throw new RangeError(hugetlbSizeMissing(size, this.pageSize));
    }
    return pool;
  }

  /**
   * The struct page memory (memmap) of this machine at its page size: 64 bytes per base page of
   * System RAM and of every ZONE_DEVICE region (P2PDMA BARs with a pgmap, pmem with pages), with a
   * per-region breakdown. Device memory without a pgmap (and a phyr describing any memory) costs none.
   */
  memmapBytes(): MemmapBreakdown {
    return memmapOf(this.regions, this.pageSize);
  }

  /**
   * The memblock stage of boot over the free RAM ranges (pfn pairs, ascending): each allocation is
   * cut out of `ranges`, which the buddy allocator then manages. Allocations after the stage throw.
   * Model deviation: memblock holds nothing else here (the kernel image, initrd and early page
   * tables are not modeled), so a top-down allocation lands at the very top of the free RAM.
   */
  private runMemblock(ranges: Array<[number, number]>, fn: (mb: Memblock) => void): void {
    const ps = this.pageSize;
    const boot = this.bootPages;
    // ARCH_LOW_ADDRESS_LIMIT: memblock_alloc_low() takes memory ending at or below 4 GiB - 1
    const lowLimit = 0xffffffff;
    let open = true;
    const mb: Memblock = {
      pageSize: ps,
      allocLow(bytes: number): number {
        if (!open) throw new TypeError('memblock allocations are possible only while the machine is built');
        checkLen('bytes', bytes, 1);
        const size = Math.ceil(bytes / ps) * ps;
        // memblock_find_in_range_node(): the free ranges from the top, each clamped to
        // [PAGE_SIZE, limit]; the first whose clamped end leaves room for size, aligned down
        for (let i = ranges.length - 1; i >= 0; i--) {
          const [sp, ep] = ranges[i];
          const s = Math.min(Math.max(sp * ps, ps), lowLimit);
          const e = Math.min(Math.max(ep * ps, ps), lowLimit);
          if (e < size) continue;
          const cand = Math.floor((e - size) / ps) * ps;
          if (cand < s) continue;
          const cp = cand / ps, np = size / ps;
          const parts: Array<[number, number]> = [];
          if (cp > sp) parts.push([sp, cp]);
          if (cp + np < ep) parts.push([cp + np, ep]);
          ranges.splice(i, 1, ...parts);
          boot.set(cp, np);
          return cand;
        }
        return -1;
      },
      allocAt(start: number, bytes: number): number {
        if (!open) throw new TypeError('memblock allocations are possible only while the machine is built');
        checkLen('bytes', bytes, 1);
        if (!Number.isSafeInteger(start) || start < 0 || start % ps !== 0) throw new RangeError(`start must be a page-aligned address, got ${start}`);
        const sp = start / ps, np = Math.ceil(bytes / ps);
        for (let i = 0; i < ranges.length; i++) {
          const [rs, re] = ranges[i];
          if (sp < rs || sp + np > re) continue;
          const parts: Array<[number, number]> = [];
          if (sp > rs) parts.push([rs, sp]);
          if (sp + np < re) parts.push([sp + np, re]);
          ranges.splice(i, 1, ...parts);
          boot.set(sp, np);
          return start;
        }
        return -1;
      },
    };
    fn(mb);
    open = false;
  }

  /**
   * memblock_free_late: hands memory a memblock stage allocated back to the page allocator, in
   * naturally aligned blocks. Anything but exactly one boot allocation is a BUG (throws KernelBug).
   */
  memblockFreeLate(addr: bigint, bytes: number): void {
    checkAddr('addr', addr);
    checkLen('bytes', bytes, 1);
    const pfn = Number(addr) / this.pageSize;
    const pages = bytes / this.pageSize;
    if (this.bootPages.get(pfn) !== pages) {
      this.events.bug('memblock', `freeing ${bytes} bytes at ${hex(addr)}, which is not a boot allocation`, { addr, bytes });
    }
    this.bootPages.delete(pfn);
    let p = pfn;
    const end = pfn + pages;
    while (p < end) {
      let o = 0;
      while (o < this.maxPageOrder && p % 2 ** (o + 1) === 0 && p + 2 ** (o + 1) <= end) o++;
      this.givePages(p, o);
      p += 2 ** o;
    }
  }

  /** Free base pages in the buddy allocator now. */
  get freePages(): number {
    return this.buddy.freePages;
  }

  /** The region holding addr, or undefined for a hole. */
  regionAt(addr: bigint): MemRegion | undefined {
    checkAddr('addr', addr);
    return this.regionAtNum(Number(addr));
  }

  /** regionAt for an exact numeric address (internal hot path). */
  regionAtNum(a: number): Region | undefined {
    const regs = this.regions;
    let lo = 0, hi = regs.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const r = regs[mid];
      if (a < r.startNum) hi = mid - 1;
      else if (a >= r.endNum) lo = mid + 1;
      else return r;
    }
    return undefined;
  }

  /** The region named name, or undefined. */
  region(name: string): Region | undefined {
    return this.regions.find((r) => r.name === name);
  }

  /** Page facts for a pfn, or undefined if the pfn is in a hole. */
  pfnFacts(pfn: bigint): PageFacts | undefined {
    checkAddr('pfn', pfn);
    const r = this.regionAtNum(Number(pfn) * this.pageSize);
    if (r === undefined) return undefined;
    let f = this.factsByRegion.get(r.id);
    if (f === undefined) {
      f = {
        region: r,
        hasStructPage: r.hasStructPage,
        pgmapId: r.pgmapId,
        get rangeFlags(): number { return r.rangeFlags; },
      };
      this.factsByRegion.set(r.id, f);
    }
    return f;
  }

  /** PageReserved(): see MachineMm.pageReserved. */
  pageReserved(pfn: bigint): boolean {
    const f = this.pfnFacts(pfn);
    if (f === undefined || !f.hasStructPage) return false;
    if (f.pgmapId !== 0) return true;
    const p = Number(pfn);
    for (const [start, pages] of this.bootPages) if (p >= start && p < start + pages) return true;
    return false;
  }

  /**
   * Allocates 2^order contiguous base pages of System RAM for kernel use, zeroed.
   * Errors: ENOMEM when no free block of that order exists (retry after frees may help), or none
   * below opts.zoneEnd (a GFP_DMA / GFP_DMA32 allocation gets pages wholly below its zone's end);
   * ENOMEM for order > MAX_PAGE_ORDER, with mm/page_alloc.c: __alloc_pages_noprof()'s
   * WARN_ON_ONCE_GFP (once per machine; none under __GFP_NOWARN, opts.noWarn, which leaves the
   * once-flag unset). `point` names the fault-injection point the call counts under
   * (base/faults.ts): 'page-alloc', or 'iommu-pt' for an IOMMU page-table page; an injected failure
   * is the same ENOMEM.
   */
  allocKernelPages(order: number, point: KernelPagesPoint = 'page-alloc', opts: KernelPagesOptions = {}): Result<bigint> {
    checkLen('order', order, 0, 63);
    const zoneEnd = opts.zoneEnd;
    const limitPfn = zoneEnd === undefined ? Infinity : Number(checkAddr('opts.zoneEnd', zoneEnd) / BigInt(this.pageSize));
    if (order > this.maxPageOrder) {
      if (opts.noWarn !== true) {
        this.events.warnOnce('__alloc_pages:MAX_PAGE_ORDER', 'page_alloc', `allocation of order ${order} > MAX_PAGE_ORDER ${this.maxPageOrder}`, { order });
      }
      return err('ENOMEM', `order ${order} exceeds MAX_PAGE_ORDER ${this.maxPageOrder}`);
    }
    // mm/page_alloc.c: prepare_alloc_pages() asks should_fail_alloc_page() (mm/fail_page_alloc.c)
    // before the free lists are searched
    const pfn = faultsArmed(this) && faultInjected(this, point, `order ${order}`) ? -1 : this.takePages(order, limitPfn);
    if (pfn < 0) {
      return err('ENOMEM', `no free block of order ${order}${zoneEnd === undefined ? '' : ` below 0x${zoneEnd.toString(16)}`}`);
    }
    this.kernelPages.set(pfn, order);
    return ok(BigInt(pfn));
  }

  /** Frees what allocKernelPages returned; a pfn/order that was not allocated so is a BUG (throws KernelBug). */
  freeKernelPages(pfn: bigint, order: number): void {
    checkAddr('pfn', pfn);
    checkLen('order', order, 0, 63);
    const p = Number(pfn);
    const have = this.kernelPages.get(p);
    if (have !== order) {
      this.events.bug('page_alloc', have === undefined
        ? `freeing pfn ${hex(p)} order ${order} that is not an allocated kernel block`
        : `freeing pfn ${hex(p)} with order ${order}, allocated with order ${have}`, { pfn: p, order, allocatedOrder: have });
    }
    this.kernelPages.delete(p);
    this.givePages(p, order);
  }

  /** Base pages now held by allocKernelPages callers (page-table pages, pools, ...). */
  get kernelPagesInUse(): number {
    let n = 0;
    for (const order of this.kernelPages.values()) n += 2 ** order;
    return n;
  }

  /** 2^order zeroed pages from the buddy allocator, counted; the first pfn or -1. */
  private takePages(order: number, limitPfn = Infinity): number {
    const pfn = this.buddy.alloc(order, limitPfn);
    if (pfn < 0) return -1;
    this.stats.pagesAllocated += (1 << order);
    this.mem.discard(pfn * this.pageSize, this.pageSize * 2 ** order);
    return pfn;
  }

  /** Gives what takePages returned back to the buddy allocator, counted. */
  private givePages(pfn: number, order: number): void {
    this.buddy.free(pfn, order);
    this.stats.pagesFreed += (1 << order);
  }

  /** Metadata of the folio containing pfn, or undefined (free memory, kernel pages, no struct page). */
  folioOf(pfn: bigint): FolioInfo | undefined {
    checkAddr('pfn', pfn);
    const idx = this.folios.find(Number(pfn));
    if (idx < 0) return undefined;
    const t = this.folios;
    return { head: BigInt(t.head[idx]), order: t.order[idx], refcount: t.refcount[idx], pincount: t.pincount[idx] };
  }

  /** A new process with an empty address space. */
  newProcess(): UserMm {
    return new UserMm(this, this.nextProcessId++);
  }

  /** Every live GUP pin (pinUserPages, pinUserPagesFast, pinUserPhyrs), oldest first. */
  listPins(): PinInfo[] {
    return this.pinTable.list();
  }

  // ---- user folio allocation (used by user-mm.ts) ----

  /**
   * The shared zero page's pfn (mm/memory.c: do_anonymous_page maps zero_pfn() on a read fault of
   * private anonymous memory), or -1 if it cannot be had. It has no folio record: GUP takes no
   * reference on it (try_grab_folio / is_zero_folio) and unmapping it drops none.
   * Model deviation: the kernel's zero page is part of the kernel image; the model takes it from the
   * page allocator on first use, so a machine that never reads untouched memory keeps the exact
   * layout it had before zero pages were modeled (and the first read fault can fail with ENOMEM).
   */
  zeroPagePfn(): number {
    if (this.zeroPfn < 0) this.zeroPfn = this.takePages(0);
    return this.zeroPfn;
  }

  /** Whether pfn is the shared zero page (is_zero_pfn). */
  isZeroPfn(pfn: number): boolean {
    return pfn === this.zeroPfn && pfn >= 0;
  }

  /** The shared zero page's pfn if it was taken already, else -1 (never allocates it). */
  zeroPfnIfAny(): number {
    return this.zeroPfn;
  }

  /**
   * The huge zero folio's record index (mm/huge_memory.c: mm_get_huge_zero_folio, mapped by a read
   * fault of a THP-eligible PMD slot), or -1 if it cannot be allocated (the fault then falls back to
   * base-page zero PTEs). Unlike the small zero page it is pinned like any large folio (is_zero_folio
   * only matches the small zero page). Kept once allocated, as with CONFIG_PERSISTENT_HUGE_ZERO_FOLIO.
   */
  hugeZeroFolio(): number {
    if (this.hugeZeroIdx < 0) {
      const pfn = this.takePages(this.thpOrder);
      if (pfn >= 0) this.hugeZeroIdx = this.folios.create(pfn, this.thpOrder, FolioKind.HugeZero, 1);
    }
    return this.hugeZeroIdx;
  }

  /** Allocates a zeroed user folio from the buddy allocator; returns its record index or -1 (ENOMEM). */
  allocUserFolio(order: number): number {
    const pfn = faultsArmed(this) && faultInjected(this, 'folio', `order ${order}`) ? -1 : this.takePages(order);
    if (pfn < 0) return -1;
    return this.folios.create(pfn, order, FolioKind.Buddy, 0);
  }

  /** Takes a zeroed page from a hugetlb pool (consuming a reservation when `reserved`); -1 if empty. */
  allocHugetlbFolio(size: HugetlbSize, reserved: boolean): number {
    const pool = this.hugetlbPool(size);
    const pfn = pool.free.pop();
    if (pfn === undefined) return -1;
    if (reserved) pool.reserved--;
    this.mem.discard(pfn * this.pageSize, pool.len);
    return this.folios.create(pfn, pool.order, FolioKind.Hugetlb, 0);
  }

  /** A ZONE_DEVICE page's record (created on first pin; the pgmap holds one reference). */
  zoneDeviceFolio(pfn: number): number {
    const idx = this.folios.byHeadPfn(pfn);
    if (idx >= 0) return idx;
    return this.folios.create(pfn, 0, FolioKind.ZoneDevice, 1);
  }

  /** folio_put_refs for every entry of a record (what an unpin gives back). */
  putRecord(rec: FolioRecord): void {
    const v = rec.v;
    for (let i = 0; i < rec.n; i++) {
      const x = v[i];
      if (x >= 0) this.folioPut(x, 1);
      else { this.folioPut(-x - 1, v[i + 1]); i++; }
    }
  }

  /**
   * folio_put_refs: drops refs references; frees the folio at zero. A ZONE_DEVICE record is dropped
   * when only its pgmap's reference is left; the huge zero folio keeps its own reference for ever.
   */
  folioPut(idx: number, refs: number): void {
    const t = this.folios;
    const r = t.dropRefs(idx, refs);
    const kind = t.kind[idx];
    if (kind === FolioKind.ZoneDevice) {
      if (r === 1 && t.pincount[idx] === 0) t.remove(idx);
      return;
    }
    const floor = kind === FolioKind.HugeZero ? 1 : 0;
    if (r > floor) return;
    if (r < floor) this.events.bug('mm', `folio refcount underflow at pfn ${hex(t.head[idx])}`, { refcount: r });
    if (kind === FolioKind.HugeZero) return;
    const head = t.head[idx], order = t.order[idx];
    t.remove(idx);
    if (kind === FolioKind.Buddy) this.givePages(head, order);
    else this.hugetlbOfOrder(order).free.push(head);
  }

  /** The hugetlb pool whose pages have this order (each size has its own). */
  private hugetlbOfOrder(order: number): HugetlbPool {
    for (const size of hugetlbSizes(this.pageSize)) {
      const pool = this.hugetlb[size]!;
      if (pool.order === order) return pool;
    }
    throw new Error(`no hugetlb pool of order ${order}`);
  }
}

/** Creates the memory part of a simulated machine (see MmMachine). */
export function createMmMachine(config: MmConfig): MmMachine {
  return new MmMachine(config);
}
