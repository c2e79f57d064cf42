// Models: mm/page_alloc.c (Linux 7.1): the buddy allocator (__rmqueue_smallest, expand, __free_one_page)
// over System RAM, MAX_PAGE_ORDER as the page size sets it, plus a lazy model of a long-running ("aged")
// system's fragmentation.
// Free lists are taken from and added to at the head, as get_page_from_free_area() and expand() do.
// Model deviation: one free list per order: no zones (an allocation for a zone, GFP_DMA or GFP_DMA32,
// searches the lists for a block wholly below the zone's end), migratetypes or pageblocks, no per-CPU page
// lists (the kernel serves orders up to PAGE_ALLOC_COSTLY_ORDER from pcp lists refilled in batches),
// and a freed block always goes to the head of its list where __free_one_page() puts it at the
// tail when buddy_merge_likely() (or page shuffling) says so; so which free pages come back next
// can differ from the kernel's.

/** Largest buddy order of the 4 KiB machine (MAX_PAGE_ORDER in include/linux/mmzone.h): 2^10 base pages per top block. */
export const MAX_PAGE_ORDER = 10;

/**
 * MAX_PAGE_ORDER of a machine with this base page size: 10 on x86-64 (4 KiB), arm64's
 * ARCH_FORCE_MAX_ORDER defaults at 16 and 64 KiB (arch/arm64/Kconfig: 11 and 13), so that one
 * block holds a PMD there (32 MiB, 512 MiB).
 */
export function maxPageOrder(pageSize: number): number {
  return pageSize === 16384 ? 11 : pageSize === 65536 ? 13 : MAX_PAGE_ORDER;
}

/** The largest MAX_PAGE_ORDER of any page size (FreeHeads keeps the order in 4 bits). */
const MAX_ANY_ORDER = 13;

/** Per top-order block: not managed (hole, partial edge, boot carve-out), never touched, or split. */
const BlockState = { Unmanaged: 0, Untouched: 1, Materialized: 2 } as const;

/** @internal (exported for tests) A 32-bit mix of (seed, index, salt): the aging model's per-block dice, independent of call order. */
export function mix32(seed: number, idx: number, salt: number): number {
  let h = (Math.imul(seed | 0, 0x9e3779b1) ^ Math.imul((idx % 4294967296) | 0, 0x85ebca77) ^
    Math.imul(Math.floor(idx / 4294967296) | 0, 0x27d4eb2f) ^ Math.imul(salt, 0x165667b1)) | 0;
  h = Math.imul(h ^ (h >>> 15), 0x2c1b3c6d);
  h = Math.imul(h ^ (h >>> 12), 0x297a2d39);
  return (h ^ (h >>> 15)) >>> 0;
}

/** @internal (exported for tests) A tiny seeded generator for one block's shuffle (xorshift32, never zero). */
export function xorshift(state: number): () => number {
  let s = state === 0 ? 0x6d2b79f5 : state;
  return () => {
    s ^= s << 13; s ^= s >>> 17; s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}

/**
 * The aging model's dice for top-order blocks [b0, b1): about 85% are marked fragmented, each with
 * 50%..87.5% of its pages held by background owners. Returns the background pages rolled.
 * Model support (V8, no kernel counterpart): a loop of its own, outside the constructor that runs
 * once per machine, so that its optimised code is compiled once and reused by every machine.
 */
function rollBackground(agedBlock: Uint8Array, bgCount: Uint16Array, seed: number, b0: number, b1: number, bp: number): number {
  let total = 0;
  for (let b = b0; b < b1; b++) {
    const h = mix32(seed, b, 1);
    if ((h & 0xffff) < 0.85 * 65536) {
      agedBlock[b] = 1;
      const bg = Math.max(1, Math.min(bp - 1, Math.floor(bp * (0.5 + 0.375 * ((h >>> 16) / 65536)))));
      bgCount[b] = bg;
      total += bg;
    }
  }
  return total;
}

/** pfns per FreeHeads chunk. */
const HEADS_CHUNK = 65536;

/**
 * Which pfns head a free block, of which order, with which token (the model's own index; the
 * kernel keeps this in struct page: PageBuddy and the order in page->private). One number per
 * pfn, token * 16 + order (0: not a free head), in chunks of HEADS_CHUNK pfns allocated on first
 * use, so a machine of any size costs memory only where blocks were freed.
 */
class FreeHeads {
  /** Free heads of each order (the lists' live lengths). */
  readonly count = new Int32Array(MAX_ANY_ORDER + 1);
  private readonly chunks: Array<Float64Array | undefined>;

  constructor(endPfn: number) {
    this.chunks = new Array<Float64Array | undefined>(Math.ceil(endPfn / HEADS_CHUNK)).fill(undefined);
  }

  /** The token of pfn as a free head of this order, or 0. */
  tokenOf(pfn: number, order: number): number {
    const c = this.chunks[Math.floor(pfn / HEADS_CHUNK)];
    if (c === undefined) return 0;
    const v = c[pfn % HEADS_CHUNK];
    return v !== 0 && v % 16 === order ? (v - order) / 16 : 0;
  }

  /** pfn becomes the head of a free block of this order (it heads none now). */
  set(pfn: number, order: number, token: number): void {
    const k = Math.floor(pfn / HEADS_CHUNK);
    let c = this.chunks[k];
    if (c === undefined) {
      c = new Float64Array(HEADS_CHUNK);
      this.chunks[k] = c;
    }
    const i = pfn % HEADS_CHUNK;
    if (c[i] !== 0) this.count[c[i] % 16]--; // replaces a (stale) entry: counted once
    c[i] = token * 16 + order;
    this.count[order]++;
  }

  /** pfn, a free head of this order, is taken off its list. */
  clear(pfn: number, order: number): void {
    this.chunks[Math.floor(pfn / HEADS_CHUNK)]![pfn % HEADS_CHUNK] = 0;
    this.count[order]--;
  }
}

/**
 * The buddy page allocator over ranges of System RAM pfns.
 *
 * Free blocks live in per-order free lists: a LIFO stack of pfns plus, per free block head, a token
 * that marks which stack entries are still valid, so a buddy can be removed from the middle on
 * merge (FreeHeads: typed-array chunks allocated where free heads occur, not a Map per order). Whole top-order blocks that were never touched are not on
 * any list: one byte per top-order block (4 MiB at 4 KiB pages; like pageblock flags) says "untouched", and they are carved
 * lazily, lowest address first.
 *
 * Aging model (config.aged): a seeded hash of (seed, block index) marks about 85% of the top-order
 * blocks as fragmented, each with 50%..87.5% of its pages in use by "background" owners (page cache,
 * slab, other processes; never freed). A fragmented block is materialized only when first carved:
 * its background pages are chosen by a per-block seeded shuffle and its free pages are released,
 * in shuffled order, through the normal merging free path. Small allocations (order < 3) prefer a
 * fragmented block over splitting a large free block (the model's stand-in for anti-fragmentation
 * grouping), so 4 KiB anonymous memory comes out scattered; requests of higher order (THP, hugetlb
 * pool, kernel buffers) take the clean ~15% of blocks, which stay whole until asked for. The boot
 * free-page count is exact without materializing anything (the per-block counts come from the hash).
 * Same seed: same blocks, same background pages, same allocation sequence.
 */
export class BuddyAllocator {
  /** Free base pages now. */
  freePages = 0;
  /** Pages held by the aging model's background owners (materialized blocks only). */
  backgroundPages = 0;
  /** MAX_PAGE_ORDER of this allocator (maxPageOrder). */
  readonly maxOrder: number;
  private readonly blockPages: number;
  private readonly stacks: number[][] = [];
  private readonly tokens: number[][] = [];
  private readonly live: FreeHeads;
  private nextToken = 1;
  private readonly state: Uint8Array;
  private readonly agedBlock: Uint8Array | null;
  private readonly bgCount: Uint16Array | null;
  private cursorClean = 0;
  private cursorAged = 0;
  /** Blocks below this are not untouched any more (allocBootBlock's scan starts here). */
  private cursorBoot = 0;
  private readonly seed: number;
  /** Orders below this prefer fragmented blocks in aged mode. */
  static readonly AGED_SMALL_ORDER = 3;

  /**
   * ranges: [startPfn, endPfn) of RAM the allocator manages (disjoint, ascending); maxOrder its
   * MAX_PAGE_ORDER (default 10, the 4 KiB machine's; at most 13).
   */
  constructor(ranges: ReadonlyArray<readonly [number, number]>, aged: boolean, seed: number, maxOrder = MAX_PAGE_ORDER) {
    if (!Number.isInteger(maxOrder) || maxOrder < 1 || maxOrder > MAX_ANY_ORDER) throw new RangeError(`maxOrder must be an integer in [1, ${MAX_ANY_ORDER}], got ${maxOrder}`);
    this.seed = seed;
    this.maxOrder = maxOrder;
    this.blockPages = 2 ** maxOrder;
    for (let o = 0; o <= maxOrder; o++) {
      this.stacks.push([]);
      this.tokens.push([]);
    }
    const endPfn = ranges.length === 0 ? 0 : ranges[ranges.length - 1][1];
    this.live = new FreeHeads(endPfn);
    const nBlocks = Math.ceil(endPfn / this.blockPages);
    this.state = new Uint8Array(nBlocks);
    this.agedBlock = aged ? new Uint8Array(nBlocks) : null;
    this.bgCount = aged ? new Uint16Array(nBlocks) : null;
    const bp = this.blockPages;
    for (const [s, e] of ranges) {
      const firstWhole = Math.ceil(s / bp) * bp;
      const lastWhole = Math.floor(e / bp) * bp;
      if (firstWhole >= lastWhole) {
        this.addSpan(s, e);
        continue;
      }
      this.addSpan(s, firstWhole);
      const b0 = firstWhole / bp, b1 = lastWhole / bp;
      this.state.fill(BlockState.Untouched, b0, b1);
      this.freePages += (b1 - b0) * bp - (aged ? rollBackground(this.agedBlock!, this.bgCount!, seed, b0, b1, bp) : 0);
      this.addSpan(lastWhole, e);
    }
  }

  /** Adds [s, e) as naturally aligned free blocks below the top order (partial edges of RAM ranges). */
  private addSpan(s: number, e: number): void {
    let p = s;
    while (p < e) {
      let o = 0;
      while (o < this.maxOrder && p % 2 ** (o + 1) === 0 && p + 2 ** (o + 1) <= e) o++;
      this.push(p, o);
      this.freePages += 2 ** o;
      p += 2 ** o;
    }
  }

  private push(pfn: number, order: number): void {
    const t = this.nextToken++;
    this.stacks[order].push(pfn);
    this.tokens[order].push(t);
    this.live.set(pfn, order, t);
  }

  private pop(order: number): number {
    const st = this.stacks[order], tk = this.tokens[order], live = this.live;
    while (st.length > 0) {
      const pfn = st.pop()!;
      const t = tk.pop()!;
      if (live.tokenOf(pfn, order) === t) {
        live.clear(pfn, order);
        return pfn;
      }
    }
    return -1;
  }

  /** Number of free blocks on the list of one order (for tests and reports). */
  freeBlocks(order: number): number {
    return this.live.count[order];
  }

  /** Splits a free block of order `from` down to `to`, returning the low part and listing the upper halves. */
  private expand(pfn: number, from: number, to: number): number {
    for (let o = from - 1; o >= to; o--) this.push(pfn + 2 ** o, o);
    return pfn;
  }

  /**
   * The smallest free block of order `order` .. `hi` wholly below limitPfn (Infinity: anywhere),
   * split down to `order`. Below a limit the lists are searched from their heads for the first
   * block that lies below it, as a zone's own free lists would give (the model has one list per
   * order for all of RAM).
   */
  private takeSmallest(order: number, hi: number, limitPfn: number): number {
    for (let o = order; o <= hi; o++) {
      if (this.live.count[o] === 0) continue;
      const pfn = limitPfn === Infinity ? this.pop(o) : this.takeBelow(o, limitPfn);
      if (pfn >= 0) return this.expand(pfn, o, order);
    }
    return -1;
  }

  /** Unlists the free block of this order nearest the list's head that ends at or below limitPfn; -1 if none. */
  private takeBelow(order: number, limitPfn: number): number {
    const st = this.stacks[order], tk = this.tokens[order], live = this.live;
    const size = 2 ** order;
    for (let i = st.length - 1; i >= 0; i--) {
      const pfn = st[i];
      // an entry whose token is stale stays in the stack; pop() drops it when it gets there
      if (pfn + size <= limitPfn && live.tokenOf(pfn, order) === tk[i]) {
        live.clear(pfn, order);
        return pfn;
      }
    }
    return -1;
  }

  /** The first untouched top-order block of the kind wanted, below block limitBlock; -1 if none. */
  private carve(wantAged: boolean, limitBlock: number): number {
    const st = this.state, ag = this.agedBlock;
    let b = wantAged ? this.cursorAged : this.cursorClean;
    const n = st.length;
    while (b < n && (st[b] !== BlockState.Untouched || (ag !== null && (ag[b] === 1) !== wantAged))) b++;
    if (wantAged) this.cursorAged = b; else this.cursorClean = b;
    if (b >= n || b >= limitBlock) return -1;
    st[b] = BlockState.Materialized;
    return b;
  }

  /**
   * A whole top-order block for a reservation made at boot, before the system aged (a hugetlb pool
   * of MAX_PAGE_ORDER pages, as hugetlb_hstate_alloc_pages() fills it from a fresh buddy
   * allocator): the lowest untouched block, a fragmented one too, whose background owners then
   * never come (its dice are dropped and their pages counted free first). Returns its first pfn,
   * or -1 when no untouched block is left.
   */
  allocBootBlock(): number {
    const st = this.state, ag = this.agedBlock;
    for (let b = this.cursorBoot; b < st.length; b++) {
      if (st[b] !== BlockState.Untouched) continue;
      this.cursorBoot = b + 1;
      if (ag !== null && ag[b] === 1) {
        ag[b] = 0;
        this.freePages += this.bgCount![b];
        this.bgCount![b] = 0;
      }
      st[b] = BlockState.Materialized;
      this.freePages -= this.blockPages;
      return b * this.blockPages;
    }
    return -1;
  }

  /** Materializes a fragmented block: background pages chosen, the rest freed in shuffled order. */
  private materializeAged(b: number): void {
    const bp = this.blockPages;
    const bg = this.bgCount![b];
    const rnd = xorshift(mix32(this.seed, b, 2));
    const perm = new Uint16Array(bp);
    for (let i = 0; i < bp; i++) perm[i] = i;
    // Fisher-Yates from the top: step i fixes perm[i] for good, so the steps down to bg already give
    // the free pages perm[bg..bp) their final values; the rest of the shuffle would only order the
    // background pages, which are never listed.
    for (let i = bp - 1; i >= bg && i > 0; i--) {
      const j = Math.floor(rnd() * (i + 1));
      const t = perm[i]; perm[i] = perm[j]; perm[j] = t;
    }
    this.backgroundPages += bg;
    const base = b * bp;
    // freePages already excludes the background pages (counted at boot).
    for (let i = bg; i < bp; i++) this.mergeFree(base + perm[i], 0);
  }

  /**
   * Allocates 2^order naturally aligned contiguous pages; returns the first pfn, or -1 when no
   * block of that order can be found (the caller turns that into ENOMEM). With limitPfn, only a
   * block that ends at or below it: the model's stand-in for a zone (GFP_DMA, GFP_DMA32), whose
   * pages all lie below the zone's end.
   */
  alloc(order: number, limitPfn = Infinity): number {
    this.checkOrder(order);
    let pfn = -1;
    const limitBlock = Math.floor(limitPfn / this.blockPages);
    if (this.agedBlock !== null && order < BuddyAllocator.AGED_SMALL_ORDER) {
      pfn = this.takeSmallest(order, BuddyAllocator.AGED_SMALL_ORDER - 1, limitPfn);
      if (pfn < 0) {
        const b = this.carve(true, limitBlock);
        if (b >= 0) {
          this.materializeAged(b);
          pfn = this.takeSmallest(order, BuddyAllocator.AGED_SMALL_ORDER - 1, limitPfn);
        }
      }
    }
    if (pfn < 0) pfn = this.takeSmallest(order, this.maxOrder, limitPfn);
    if (pfn < 0) {
      const b = this.carve(false, limitBlock);
      if (b >= 0) pfn = this.expand(b * this.blockPages, this.maxOrder, order);
    }
    while (pfn < 0 && this.agedBlock !== null) {
      const b = this.carve(true, limitBlock);
      if (b < 0) break;
      this.materializeAged(b);
      pfn = this.takeSmallest(order, this.maxOrder, limitPfn);
    }
    if (pfn >= 0) this.freePages -= 2 ** order;
    return pfn;
  }

  /** Frees a block the caller allocated with the same order. The caller checks ownership. */
  free(pfn: number, order: number): void {
    this.checkOrder(order);
    this.freePages += 2 ** order;
    this.mergeFree(pfn, order);
  }

  /** @throws RangeError for an order the allocator has no list for (the caller checks MAX_PAGE_ORDER first). */
  private checkOrder(order: number): void {
    if (!(Number.isInteger(order) && order >= 0 && order <= this.maxOrder)) {
      throw new RangeError(`order must be an integer in [0, ${this.maxOrder}], got ${order}`);
    }
  }

  /** true when pfn is the head of a listed free block of this order (double-free detection). */
  isFreeHead(pfn: number, order: number): boolean {
    return this.live.tokenOf(pfn, order) !== 0;
  }

  private mergeFree(pfn: number, order: number): void {
    while (order < this.maxOrder) {
      const size = 2 ** order;
      const buddy = Math.floor(pfn / size) % 2 === 0 ? pfn + size : pfn - size;
      const live = this.live;
      if (live.tokenOf(buddy, order) === 0) break;
      live.clear(buddy, order);
      pfn = Math.min(pfn, buddy);
      order++;
    }
    if (order === this.maxOrder) {
      const b = pfn / this.blockPages;
      if (this.state[b] === BlockState.Materialized && (this.agedBlock === null || this.agedBlock[b] === 0)) {
        this.state[b] = BlockState.Untouched;
        if (b < this.cursorClean) this.cursorClean = b;
        if (b < this.cursorBoot) this.cursorBoot = b;
        return;
      }
    }
    this.push(pfn, order);
  }
}
