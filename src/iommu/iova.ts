// Models: drivers/iommu/iova.c and include/linux/iova.h (Linux 7.1): the IOVA
// allocator of dma-iommu. Size-aligned, top-down allocation below a limit frame; per-size range
// caches ("rcaches") of magazines of IOVA_MAG_SIZE frames with loaded/prev magazines and a depot;
// max32_alloc_size short-circuiting repeated 32-bit failures; reserve_iova for reserved regions.
// Frame numbers (pfn, in granules) are plain numbers internally (exact below 2^53) and bigint at
// the public inspection boundary.
// Model deviation: one CPU, so one loaded/prev magazine pair per size. A chunked sorted array
// (RangeStore: O(log n) search, chunk-bounded insert/delete, O(1) at the bottom) stands in for the rbtree (same
// order, same search from the cached nodes); reserve_iova merges overlapping ranges into one
// instead of trimming the new one.

import { timerWheelExpiry, type EventLog, type Stats } from '../base/index.ts';
import { flsNum } from './pgsize.ts';
import './counters.ts';

/** Orders 0..5 of granules are cached: 4 KiB .. 128 KiB with a 4 KiB granule. */
export const IOVA_RANGE_CACHE_MAX_SIZE = 6;
/** Frames per magazine. */
export const IOVA_MAG_SIZE = 127;
/** Delay of the depot-trimming work in ms. */
export const IOVA_DEPOT_DELAY = 100;

interface Rcache {
  loaded: number[];
  prev: number[];
  /** Full magazines, oldest first: the end of the array is the depot's head (the newest). */
  depot: number[][];
  /** The rcache's delayed depot work is queued (delayed_work pending). */
  workPending: boolean;
  /** When it runs, on the domain's clock in ticks (see IovaDomain.nowTicks). */
  workDue: number;
}

/** One allocated (or reserved) range of frames, inclusive at both ends. */
export interface IovaRange {
  readonly pfnLo: bigint;
  readonly pfnHi: bigint;
}

/** Most ranges one chunk of a RangeStore holds; also the stride of its positions. */
const CHUNK_MAX = 1024;

/** POW2[k] = 2^k for k < 64 (a table lookup instead of a Math.pow call on the allocation path). */
const POW2: readonly number[] = Array.from({ length: 64 }, (_, k) => 2 ** k);
/** Sizes below this many frames are rounded up to a power of two by alloc_iova_fast. */
const RCACHE_ROUND_LIMIT = 2 ** (IOVA_RANGE_CACHE_MAX_SIZE - 1);

/**
 * The allocator's ranges [lo, hi] in ascending order of lo, as a list of sorted chunks of at most
 * CHUNK_MAX ranges, so an insert or delete moves at most one chunk's worth of entries (a flat sorted
 * array moved everything above the insertion point: quadratic for top-down allocation).
 * Each chunk stores its ranges in DESCENDING order (logical index j at array index length - 1 - j):
 * top-down allocation inserts below every range, which is then a push onto the first chunk, and
 * freeing the lowest range a pop, instead of moving the whole chunk.
 * A position is chunk * CHUNK_MAX + logical index; `end` (chunkCount * CHUNK_MAX) stands for the
 * anchor above every range and -1 for "before the first". Positions are valid until the next change.
 */
class RangeStore {
  private readonly los: number[][] = [];
  private readonly his: number[][] = [];
  /** Number of ranges held. */
  size = 0;

  /** The anchor position, one past the last range. */
  get end(): number {
    return this.los.length * CHUNK_MAX;
  }

  lo(p: number): number {
    const l = this.los[Math.floor(p / CHUNK_MAX)];
    return l[l.length - 1 - (p % CHUNK_MAX)];
  }

  hi(p: number): number {
    const h = this.his[Math.floor(p / CHUNK_MAX)];
    return h[h.length - 1 - (p % CHUNK_MAX)];
  }

  /** The position before p (-1 when p is the first). */
  prev(p: number): number {
    const j = p % CHUNK_MAX;
    if (j > 0) return p - 1;
    const c = Math.floor(p / CHUNK_MAX);
    return c === 0 ? -1 : (c - 1) * CHUNK_MAX + this.los[c - 1].length - 1;
  }

  /** The position after p (end after the last). */
  next(p: number): number {
    const c = Math.floor(p / CHUNK_MAX);
    return p % CHUNK_MAX + 1 < this.los[c].length ? p + 1 : (c + 1) * CHUNK_MAX;
  }

  /** The first position whose lo is > pfn (strict) or >= pfn (not strict); end when none. */
  private bound(pfn: number, strict: boolean): number {
    const los = this.los;
    // last chunk whose first (lowest) lo is below (or at, when strict) pfn
    let a = 0, b = los.length;
    while (a < b) {
      const m = (a + b) >> 1;
      const lm = los[m];
      const f = lm[lm.length - 1];
      if (strict ? f <= pfn : f < pfn) a = m + 1; else b = m;
    }
    if (a === 0) return 0;
    const c = a - 1;
    const l = los[c];
    const top = l.length - 1;
    let x = 0, y = l.length;
    while (x < y) {
      const m = (x + y) >> 1;
      const v = l[top - m];
      if (strict ? v <= pfn : v < pfn) x = m + 1; else y = m;
    }
    return x < l.length ? c * CHUNK_MAX + x : (c + 1) * CHUNK_MAX;
  }

  /** First position with lo > pfn. */
  upper(pfn: number): number {
    return this.bound(pfn, true);
  }

  /** First position with lo >= pfn. */
  lowerBound(pfn: number): number {
    return this.bound(pfn, false);
  }

  /** Inserts [lo, hi] after every range whose lo is <= lo. */
  insert(lo: number, hi: number): void {
    this.size++;
    if (this.los.length === 0) {
      this.los.push([lo]);
      this.his.push([hi]);
      return;
    }
    const p = this.upper(lo);
    let c = Math.floor(p / CHUNK_MAX), j = p % CHUNK_MAX;
    if (c === this.los.length) { c--; j = this.los[c].length; }
    const l = this.los[c], h = this.his[c];
    // logical j is array index length - j: below every range of the chunk, a push
    const k = l.length - j;
    if (k === l.length) { l.push(lo); h.push(hi); } else { l.splice(k, 0, lo); h.splice(k, 0, hi); }
    if (l.length >= CHUNK_MAX) {
      // the upper half (logical [half, length), the array's front) becomes the next chunk
      const up = l.length - (l.length >> 1);
      this.los.splice(c + 1, 0, l.splice(0, up));
      this.his.splice(c + 1, 0, h.splice(0, up));
    }
  }

  /** Removes the range at position p. */
  removeAt(p: number): void {
    const c = Math.floor(p / CHUNK_MAX);
    const l = this.los[c], h = this.his[c];
    const k = l.length - 1 - (p % CHUNK_MAX);
    if (k === l.length - 1) { l.pop(); h.pop(); } else { l.splice(k, 1); h.splice(k, 1); }
    this.size--;
    if (l.length === 0) {
      this.los.splice(c, 1);
      this.his.splice(c, 1);
    }
  }

  /** Every range, ascending. */
  *all(): IterableIterator<[number, number]> {
    for (let c = 0; c < this.los.length; c++) {
      const l = this.los[c], h = this.his[c];
      for (let k = l.length - 1; k >= 0; k--) yield [l[k], h[k]];
    }
  }
}

/**
 * struct iova_domain: the allocated ranges of one DMA domain plus its range caches.
 * Counters on stats: iovaAllocs, iovaFrees, iovaAllocFailures, iovaRcacheHits/Misses.
 */
export class IovaDomain {
  /** Bytes per frame: the smallest page size of the domain. */
  readonly granule: number;
  /** log2(granule). */
  readonly shift: number;
  /** Lowest frame ever handed out (>= 1: IOVA 0 is never allocated). */
  readonly startPfn: bigint;
  /** First frame above 4 GiB: allocations whose limit + 1 is at or below it are "32-bit". */
  readonly dma32BitPfn: bigint;
  /** Caches on (the kernel always has them; off only to measure their effect). */
  rcachesEnabled: boolean;
  /** Smallest 32-bit request known to fail (max32_alloc_size), in frames. */
  max32AllocSize: number;
  private readonly start: number;
  private readonly dma32: number;
  private readonly tree = new RangeStore();
  private readonly reserved: Array<[number, number]> = [];
  private readonly rcaches: Rcache[] = [];
  private readonly stats: Stats;
  private readonly events: EventLog;
  /** The domain's logical clock in ms, advanced by tick(). */
  private nowMs = 0;
  /** CONFIG_HZ for the depot work's timer; 0: an exact millisecond timer. */
  private readonly hz: number;
  /** First frame of cached_node / cached32_node (Infinity: the anchor above everything). */
  private cachedLo = Infinity;
  private cached32Lo = Infinity;

  /**
   * init_iova_domain(granule, start_pfn): start_pfn is raised to 1 when 0. hz: CONFIG_HZ, the
   * tick of the depot work's timer (0: an exact millisecond timer).
   */
  constructor(granule: number, startPfn: bigint, stats: Stats, events: EventLog, rcaches = true, hz = 0) {
    if (!Number.isSafeInteger(granule) || granule < 512 || (granule & (granule - 1)) !== 0) {
      throw new RangeError(`granule must be a power of two >= 512, got ${granule}`);
    }
    if (!Number.isSafeInteger(hz) || hz < 0) throw new RangeError(`hz must be an integer >= 0 (0: exact ms timer), got ${hz}`);
    this.hz = hz;
    this.granule = granule;
    this.shift = flsNum(granule);
    this.start = Math.max(1, Number(startPfn));
    this.startPfn = BigInt(this.start);
    this.dma32 = 2 ** (32 - this.shift);
    this.dma32BitPfn = BigInt(this.dma32);
    this.max32AllocSize = this.dma32;
    this.rcachesEnabled = rcaches;
    this.stats = stats;
    this.events = events;
    for (let i = 0; i < IOVA_RANGE_CACHE_MAX_SIZE; i++) {
      this.rcaches.push({ loaded: [], prev: [], depot: [], workPending: false, workDue: 0 });
    }
  }

  /**
   * alloc_iova (__alloc_and_insert_iova_range): `size` frames ending at or below limitPfn
   * (inclusive), aligned to roundup_pow_of_two(size) frames when sizeAligned, never below
   * startPfn. The search walks down from the cached node (the last allocation, kept separately for
   * 32-bit limits) and retries once from the limit down to the cached node when that fails.
   * Returns the first frame, or 0 when nothing fits.
   * drivers/iommu/iova.c: alloc_iova() hands __alloc_and_insert_iova_range() limit_pfn + 1, and
   * every test there (the max32_alloc_size short-circuit, __get_cached_rbnode()'s choice of the
   * 32-bit cached node, the retry) sees that exclusive limit: an inclusive limit of exactly
   * dma_32bit_pfn is not a 32-bit request.
   */
  allocIova(size: number, limitPfn: number, sizeAligned: boolean): number {
    const limitEnd = limitPfn + 1;
    if (limitEnd <= this.dma32 && size >= this.max32AllocSize) return 0;
    const align = sizeAligned && size > 1 ? POW2[flsNum(size - 1) + 1] : 1;
    const t = this.tree;
    const end = t.end;
    const cachedLo = limitEnd <= this.dma32 ? this.cached32Lo : this.cachedLo;
    let i = cachedLo === Infinity ? end : t.lowerBound(cachedLo);
    const retryPfn = i < end ? t.hi(i) : Infinity;
    let high = limitEnd, low = this.start;
    let newPfn = 0;
    let retried = false;
    for (;;) {
      do {
        if (i < end) { const lo = t.lo(i); if (lo < high) high = lo; }
        newPfn = high - size;
        if (align !== 1) newPfn = Math.trunc(newPfn / align) * align; // newPfn -= newPfn % align, without fmod
        i = i >= 0 ? t.prev(i) : -1;
      } while (i >= 0 && newPfn <= t.hi(i) && newPfn >= low);
      if (high >= size && newPfn >= low) break;
      if (!retried && low === this.start && retryPfn < limitEnd) {
        retried = true;
        high = limitEnd;
        low = retryPfn + 1;
        i = t.lowerBound(limitEnd);
        continue;
      }
      this.max32AllocSize = size;
      return 0;
    }
    t.insert(newPfn, newPfn + size - 1);
    if (newPfn + size - 1 < this.dma32) this.cached32Lo = newPfn;
    else this.cachedLo = newPfn;
    return newPfn;
  }

  /** find_iova: the range holding pfn, as its position, or -1. */
  private find(pfn: number): number {
    const t = this.tree;
    const i = t.prev(t.upper(pfn));
    return i >= 0 && t.hi(i) >= pfn ? i : -1;
  }

  /** The allocated range holding the frame, or null. */
  findIova(pfn: bigint): IovaRange | null {
    const i = this.find(Number(pfn));
    return i < 0 ? null : { pfnLo: BigInt(this.tree.lo(i)), pfnHi: BigInt(this.tree.hi(i)) };
  }

  /** free_iova: removes the range holding pfn; false (and a WARN) if there is none. */
  freeIova(pfn: number): boolean {
    const i = this.find(pfn);
    if (i < 0) {
      // Model addition: the kernel silently ignores this; the model reports it.
      this.events.warn('iova', `free of IOVA frame 0x${pfn.toString(16)} that is not allocated`);
      return false;
    }
    // __cached_rbnode_delete_update: a cached node at or below the freed range moves up past it
    const t = this.tree;
    const lo = t.lo(i), hi = t.hi(i);
    const n = t.next(i);
    const next = n < t.end ? t.lo(n) : Infinity;
    if (lo === this.cached32Lo || (hi < this.dma32 && lo >= this.cached32Lo)) this.cached32Lo = next;
    if (lo < this.dma32) this.max32AllocSize = this.dma32;
    if (lo >= this.cachedLo) this.cachedLo = next;
    t.removeAt(i);
    return true;
  }

  /**
   * reserve_iova: marks [pfnLo, pfnHi] (inclusive) as never to be handed out, merging with any
   * range it overlaps.
   */
  reserveIova(pfnLo: bigint, pfnHi: bigint): void {
    if (pfnHi < pfnLo) throw new RangeError(`reserveIova: pfnHi 0x${pfnHi.toString(16)} < pfnLo 0x${pfnLo.toString(16)}`);
    let lo = Number(pfnLo), hi = Number(pfnHi);
    this.reserved.push([lo, hi]);
    const t = this.tree;
    let i = t.prev(t.upper(hi));
    while (i >= 0 && t.hi(i) >= lo) {
      lo = Math.min(lo, t.lo(i));
      hi = Math.max(hi, t.hi(i));
      const before = t.prev(i);
      t.removeAt(i);
      i = before;
    }
    t.insert(lo, hi);
  }

  /** Reserved ranges as given to reserveIova, in frames. */
  reservedRanges(): IovaRange[] {
    return this.reserved.map(([lo, hi]) => ({ pfnLo: BigInt(lo), pfnHi: BigInt(hi) }));
  }

  /** Every range the allocator holds (allocated, cached in the rcaches, or reserved), ascending. */
  ranges(): IovaRange[] {
    const out: IovaRange[] = [];
    for (const [lo, hi] of this.tree.all()) out.push({ pfnLo: BigInt(lo), pfnHi: BigInt(hi) });
    return out;
  }

  /** Number of ranges the allocator holds. */
  get rangeCount(): number {
    return this.tree.size;
  }

  /** Frames sitting in the range caches (still allocated in the tree). */
  get cachedCount(): number {
    let n = 0;
    for (const r of this.rcaches) n += r.loaded.length + r.prev.length + r.depot.reduce((s, m) => s + m.length, 0);
    return n;
  }

  /**
   * alloc_iova_fast: sizes below 32 frames are rounded up to a power of two; a cached range is
   * taken when one lies below limitPfn; otherwise the tree is searched, and on failure with
   * flushRcache every cached range is given back and the search retried once.
   * Returns the first frame, or 0.
   */
  allocIovaFast(size: number, limitPfn: number, flushRcache: boolean): number {
    if (size < RCACHE_ROUND_LIMIT) size = size <= 1 ? 1 : POW2[flsNum(size - 1) + 1];
    const pfn = this.rcacheGet(size, limitPfn + 1);
    if (pfn !== 0) {
      this.stats.iovaAllocs++;
      return pfn;
    }
    for (;;) {
      const p = this.allocIova(size, limitPfn, true);
      if (p !== 0) {
        this.stats.iovaAllocs++;
        return p;
      }
      if (!flushRcache) break;
      flushRcache = false;
      this.flushRcaches();
    }
    this.stats.iovaAllocFailures++;
    return 0;
  }

  /** free_iova_fast: into the size's range cache when it has room, else back to the tree. */
  freeIovaFast(pfn: number, size: number): void {
    this.stats.iovaFrees++;
    if (this.rcacheInsert(pfn, size)) return;
    this.freeIova(pfn);
  }

  private order(size: number): number {
    return size <= 1 ? 0 : flsNum(size - 1) + 1;
  }

  private rcacheInsert(pfn: number, size: number): boolean {
    if (!this.rcachesEnabled) return false;
    const o = this.order(size);
    if (o >= IOVA_RANGE_CACHE_MAX_SIZE) return false;
    const rc = this.rcaches[o];
    if (rc.loaded.length >= IOVA_MAG_SIZE) {
      if (rc.prev.length < IOVA_MAG_SIZE) {
        const t = rc.loaded; rc.loaded = rc.prev; rc.prev = t;
      } else {
        // iova_depot_push() makes the full magazine the depot's head, and __iova_rcache_insert()
        // then queues the rcache's delayed work (a no-op while it is already queued)
        rc.depot.push(rc.loaded);
        rc.loaded = [];
        if (!rc.workPending) {
          rc.workPending = true;
          rc.workDue = this.depotWorkDue(this.nowTicks(this.nowMs));
        }
      }
    }
    rc.loaded.push(pfn);
    return true;
  }

  /** __iova_rcache_get with the frame a cached range must end before (limit exclusive). */
  private rcacheGet(size: number, limitEnd: number): number {
    if (!this.rcachesEnabled) return 0;
    const o = this.order(size);
    if (o >= IOVA_RANGE_CACHE_MAX_SIZE) return 0;
    const rc = this.rcaches[o];
    if (rc.loaded.length === 0) {
      if (rc.prev.length !== 0) {
        const t = rc.loaded; rc.loaded = rc.prev; rc.prev = t;
      } else if (rc.depot.length !== 0) {
        rc.loaded = rc.depot.pop() as number[];
      }
    }
    const mag = rc.loaded;
    const limit = limitEnd - size;
    // iova_magazine_pop: the newest frame at or below the limit, swapped out of the magazine
    let i = mag.length - 1;
    while (i >= 0 && mag[i] > limit) i--;
    if (i < 0) {
      this.stats.iovaRcacheMisses++;
      return 0;
    }
    const pfn = mag[i];
    mag[i] = mag[mag.length - 1];
    mag.pop();
    this.stats.iovaRcacheHits++;
    return pfn;
  }

  /** free_cpu_cached_iovas + free_global_cached_iovas: every cached range goes back to the tree. */
  flushRcaches(): void {
    for (const rc of this.rcaches) {
      for (const mag of [rc.loaded, rc.prev, ...rc.depot]) for (const pfn of mag) this.freeIova(pfn);
      rc.loaded = [];
      rc.prev = [];
      rc.depot = [];
    }
  }

  /** The clock in the depot timer's units: jiffies with a CONFIG_HZ, else ms. */
  private nowTicks(ms: number): number {
    return this.hz === 0 ? ms : Math.floor(ms * this.hz / 1000);
  }

  /**
   * When a depot work queued at `now` (in ticks) runs: schedule_delayed_work(IOVA_DEPOT_DELAY).
   * With a CONFIG_HZ, msecs_to_jiffies() rounds the delay up to whole jiffies and the timer wheel
   * runs it in the bucket after its expiry (timerWheelExpiry: 100 jiffies at HZ=1000 are a level-1
   * timer, run at the next multiple of 8 jiffies).
   */
  private depotWorkDue(now: number): number {
    if (this.hz === 0) return now + IOVA_DEPOT_DELAY;
    return timerWheelExpiry(now, Math.ceil(IOVA_DEPOT_DELAY * this.hz / 1000), this.hz);
  }

  /**
   * Advances the domain's clock by ms and runs the depot work of every rcache that falls due
   * (drivers/iommu/iova.c: iova_depot_work_func()): a depot holding more magazines than CPUs (one
   * here) gives its head, the magazine pushed last, back to the tree, and the work queues itself
   * again; otherwise it stops until the next push to the depot queues it. Works due in the same
   * tick run in rcache order (the model's choice; the kernel's order follows its timer wheel).
   */
  tick(ms: number): void {
    if (!(ms >= 0) || !Number.isFinite(ms)) throw new RangeError(`ms must be a finite number >= 0, got ${ms}`);
    this.nowMs += ms;
    const end = this.nowTicks(this.nowMs);
    for (;;) {
      let rc: Rcache | null = null;
      for (const r of this.rcaches) if (r.workPending && r.workDue <= end && (rc === null || r.workDue < rc.workDue)) rc = r;
      if (rc === null) return;
      if (rc.depot.length > 1) {
        const mag = rc.depot.pop() as number[];
        for (const pfn of mag) this.freeIova(pfn);
        rc.workDue = this.depotWorkDue(rc.workDue);
      } else {
        rc.workPending = false;
      }
    }
  }
}
