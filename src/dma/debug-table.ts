// Models: the storage behind kernel/dma/debug.c. Every struct dma_debug_entry is a slot of typed
// columns (no object per mapping); freed slots are reused last-freed-first, as dma_entry_free()
// puts an entry at the head of free_entries and dma_entry_alloc() takes the head. Live kernel
// entries sit in the 16384-bucket hash (dma_entry_hash, hash_fn: dev_addr >> HASH_FN_SHIFT), each
// bucket a list in insertion order (hash_bucket_add appends). The same columns hold the model's own
// records of two-step IOVA links, which the kernel does not track, kept out of the hash.
// OrderedIndex: an address-ordered index of slots, used only by the model checks (IOVA unlink
// coverage, buffer ownership after syncs, CPU stores into device-owned buffers).

/** HASH_SIZE, HASH_FN_SHIFT, HASH_FN_MASK of kernel/dma/debug.c. */
export const HASH_SIZE = 16384;
export const HASH_FN_SHIFT = 13;
const HASH_FN_MASK = HASH_SIZE - 1;
const HASH_DIV = 2 ** HASH_FN_SHIFT;

/** The kernel's entry types (enum dma_debug_single ... dma_debug_phy), then the model's IOVA link. */
export const T_SINGLE = 0;
export const T_SG = 1;
export const T_COHERENT = 2;
export const T_NONCOHERENT = 3;
export const T_PHY = 4;
export const T_LINK = 5;

/** enum map_err_types. */
export const MAP_ERR_CHECK_NOT_APPLICABLE = 0;
export const MAP_ERR_NOT_CHECKED = 1;
export const MAP_ERR_CHECKED = 2;

/** Flag bits of a slot. */
export const F_BIG = 1; // the DMA address or its end is beyond 2^53 - 1: the exact value is in `big`
export const F_BOUNCED = 2; // data goes through a swiotlb slot
export const F_NONCOHERENT = 4; // the device was not cache-coherent at map time
export const F_DEVICE_OWNS = 8; // the device owns the buffer (after map / sync_for_device)
export const F_CACHE_CLEAN = 16; // entry->is_cache_clean
export const F_IN_HASH = 32; // a kernel entry, linked in the hash
export const F_WATCHED = 64; // in the model's CPU-write index (bounced or non-coherent)

const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/** hash_fn() of a DMA address given as a number (exact) or, beyond 2^53, as a bigint. */
export function hashOf(addrNum: number, addrBig: bigint | null): number {
  if (addrBig !== null) return Number((addrBig >> BigInt(HASH_FN_SHIFT)) & BigInt(HASH_FN_MASK));
  // ToInt32 of the quotient keeps its low 32 bits (exactly, for any integer quotient below 2^53)
  return (addrNum / HASH_DIV) & HASH_FN_MASK;
}

/**
 * The entry columns and the kernel's hash. Slots are allocated with alloc() and released with
 * release(); a released slot keeps its old values until reused (the kernel reads
 * existing->is_cache_clean through a radix-tree pointer that may be stale in the same way).
 */
export class EntryTable {
  cap = 0;
  devId = new Int32Array(0);
  type = new Uint8Array(0);
  dir = new Uint8Array(0);
  mapErr = new Uint8Array(0);
  flags = new Uint8Array(0);
  /** The DMA_ATTR_* bits of the map call (7.2: dma-debug records them to check the unmap's). */
  attrs = new Uint32Array(0);
  /** Number(dev_addr): exact unless F_BIG. */
  addr = new Float64Array(0);
  size = new Float64Array(0);
  /** CPU physical address (always below 2^53 in the model). */
  paddr = new Float64Array(0);
  sgCall = new Int32Array(0);
  sgMapped = new Int32Array(0);
  /** Hash-bucket chain (kernel entries) and free list (released slots). */
  next = new Int32Array(0);
  prev = new Int32Array(0);
  /** Exact DMA addresses of F_BIG slots. */
  readonly big = new Map<number, bigint>();
  readonly head = new Int32Array(HASH_SIZE).fill(-1);
  readonly tail = new Int32Array(HASH_SIZE).fill(-1);
  private freeHead = -1;
  private used = 0;
  /** Scratch for toNum (written and read back within one call, never across one). */
  private readonly u64 = new BigUint64Array(1);
  private readonly u32 = new Uint32Array(this.u64.buffer);
  /** Live slots (kernel entries and links). */
  live = 0;
  /** Live kernel entries (in the hash). */
  hashed = 0;

  constructor(initial = 1024) {
    this.grow(initial);
  }

  private grow(cap: number): void {
    const g = <T extends Int32Array | Uint8Array | Uint32Array | Float64Array>(a: T, make: (n: number) => T): T => {
      const b = make(cap);
      b.set(a);
      return b;
    };
    this.devId = g(this.devId, (n) => new Int32Array(n));
    this.type = g(this.type, (n) => new Uint8Array(n));
    this.dir = g(this.dir, (n) => new Uint8Array(n));
    this.mapErr = g(this.mapErr, (n) => new Uint8Array(n));
    this.flags = g(this.flags, (n) => new Uint8Array(n));
    this.attrs = g(this.attrs, (n) => new Uint32Array(n));
    this.addr = g(this.addr, (n) => new Float64Array(n));
    this.size = g(this.size, (n) => new Float64Array(n));
    this.paddr = g(this.paddr, (n) => new Float64Array(n));
    this.sgCall = g(this.sgCall, (n) => new Int32Array(n));
    this.sgMapped = g(this.sgMapped, (n) => new Int32Array(n));
    this.next = g(this.next, (n) => new Int32Array(n));
    this.prev = g(this.prev, (n) => new Int32Array(n));
    this.cap = cap;
  }

  /** A slot whose fields the caller sets, every one it will read (the free list's head first). */
  allocRaw(): number {
    let s = this.freeHead;
    if (s >= 0) {
      this.freeHead = this.next[s];
    } else {
      if (this.used === this.cap) this.grow(this.cap * 2);
      s = this.used++;
    }
    this.live++;
    return s;
  }

  /**
   * Number(b) for 0 <= b < 2^64, rounded the same way, without the runtime call Number() makes
   * for a bigint (several times slower than this on the link path).
   */
  toNum(b: bigint): number {
    this.u64[0] = b;
    return this.u32[1] * 4294967296 + this.u32[0];
  }

  /** dma_entry_alloc: a slot with zeroed fields (the free list's head first). */
  alloc(): number {
    const s = this.allocRaw();
    this.devId[s] = 0;
    this.type[s] = 0;
    this.dir[s] = 0;
    this.mapErr[s] = 0;
    this.flags[s] = 0;
    this.attrs[s] = 0;
    this.sgCall[s] = 0;
    this.sgMapped[s] = 0;
    this.next[s] = -1;
    this.prev[s] = -1;
    return s;
  }

  /** Sets the DMA address and size of slot s (exact: beyond 2^53 the bigint is kept). */
  setAddr(s: number, addrNum: number, addrBig: bigint | null, size: number): void {
    this.size[s] = size;
    if (addrBig === null && addrNum + size <= MAX_SAFE) {
      this.addr[s] = addrNum;
      if (this.flags[s] & F_BIG) { this.flags[s] &= ~F_BIG; this.big.delete(s); }
      return;
    }
    const exact = addrBig ?? BigInt(addrNum);
    this.addr[s] = Number(exact);
    this.flags[s] |= F_BIG;
    this.big.set(s, exact);
  }

  /** dma_entry_free: the slot goes to the head of the free list (its values stay until reuse). */
  release(s: number): void {
    if (this.flags[s] & F_BIG) this.big.delete(s);
    this.next[s] = this.freeHead;
    this.freeHead = s;
    this.live--;
  }

  /** The exact DMA address of slot s. */
  exactAddr(s: number): bigint {
    return (this.flags[s] & F_BIG) ? this.big.get(s)! : BigInt(this.addr[s]);
  }

  /** exact_match's address part: slot s starts at the given address. */
  sameAddr(s: number, addrNum: number, addrBig: bigint | null): boolean {
    if (addrBig === null && (this.flags[s] & F_BIG) === 0) return this.addr[s] === addrNum;
    return this.exactAddr(s) === (addrBig ?? BigInt(addrNum));
  }

  /** containing_match's address part: [addr, addr + size) lies inside slot s's range. */
  containsRange(s: number, addrNum: number, addrBig: bigint | null, size: number): boolean {
    if (addrBig === null && (this.flags[s] & F_BIG) === 0) {
      const b = this.addr[s];
      return b <= addrNum && b + this.size[s] >= addrNum + size;
    }
    const b = this.exactAddr(s);
    const a = addrBig ?? BigInt(addrNum);
    return b <= a && b + BigInt(this.size[s]) >= a + BigInt(size);
  }

  /** Whether slot s's DMA range lies inside [addr, addr + size). */
  withinRange(s: number, addrNum: number, addrBig: bigint | null, size: number): boolean {
    if (addrBig === null && (this.flags[s] & F_BIG) === 0) {
      const b = this.addr[s];
      return addrNum <= b && b + this.size[s] <= addrNum + size;
    }
    const b = this.exactAddr(s);
    const a = addrBig ?? BigInt(addrNum);
    return a <= b && b + BigInt(this.size[s]) <= a + BigInt(size);
  }

  /** Whether slot s's DMA range overlaps [addr, addr + size). */
  overlapsRange(s: number, addrNum: number, addrBig: bigint | null, size: number): boolean {
    if (addrBig === null && (this.flags[s] & F_BIG) === 0) {
      const b = this.addr[s];
      return b < addrNum + size && b + this.size[s] > addrNum;
    }
    const b = this.exactAddr(s);
    const a = addrBig ?? BigInt(addrNum);
    return b < a + BigInt(size) && b + BigInt(this.size[s]) > a;
  }

  /** hash_bucket_add: appends slot s to its bucket. */
  hashAdd(s: number): void {
    const b = hashOf(this.addr[s], (this.flags[s] & F_BIG) ? this.big.get(s)! : null);
    const t = this.tail[b];
    this.prev[s] = t;
    this.next[s] = -1;
    if (t < 0) this.head[b] = s; else this.next[t] = s;
    this.tail[b] = s;
    this.flags[s] |= F_IN_HASH;
    this.hashed++;
  }

  /** hash_bucket_del: unlinks slot s from its bucket. */
  hashDel(s: number): void {
    const b = hashOf(this.addr[s], (this.flags[s] & F_BIG) ? this.big.get(s)! : null);
    const p = this.prev[s], n = this.next[s];
    if (p < 0) this.head[b] = n; else this.next[p] = n;
    if (n < 0) this.tail[b] = p; else this.prev[n] = p;
    this.flags[s] &= ~F_IN_HASH;
    this.hashed--;
  }

  /**
   * __hash_bucket_find over one bucket: among the entries of devId that match (exact_match: same
   * start; containing_match: the range lies inside), the first perfect fit (size, type, direction
   * and sg_call_ents all equal), else the best fit if it is the only match, else -1.
   */
  bucketFind(bucket: number, devId: number, addrNum: number, addrBig: bigint | null, size: number, type: number,
    dir: number, sgCall: number, contain: boolean): number {
    let ret = -1, matches = 0, lastLvl = -1;
    for (let s = this.head[bucket]; s >= 0; s = this.next[s]) {
      if (this.devId[s] !== devId) continue;
      if (contain ? !this.containsRange(s, addrNum, addrBig, size) : !this.sameAddr(s, addrNum, addrBig)) continue;
      matches++;
      let lvl = 0;
      if (this.size[s] === size) lvl++;
      if (this.type[s] === type) lvl++;
      if (this.dir[s] === dir) lvl++;
      if (this.sgCall[s] === sgCall) lvl++;
      if (lvl === 4) return s;
      if (lvl > lastLvl) { lastLvl = lvl; ret = s; }
    }
    return matches === 1 ? ret : -1;
  }

  /** bucket_find_exact. */
  findExact(devId: number, addrNum: number, addrBig: bigint | null, size: number, type: number, dir: number, sgCall: number): number {
    return this.bucketFind(hashOf(addrNum, addrBig), devId, addrNum, addrBig, size, type, dir, sgCall, false);
  }

  /**
   * bucket_find_contain: the ref's bucket, then the one before, and so on, for at most
   * min(HASH_SIZE, (dev_addr >> HASH_FN_SHIFT) + 1) buckets; the first bucket that yields an entry wins.
   */
  findContain(devId: number, addrNum: number, addrBig: bigint | null, size: number, type: number, dir: number, sgCall: number): number {
    const top = addrBig !== null ? Number(addrBig >> BigInt(HASH_FN_SHIFT)) : Math.floor(addrNum / HASH_DIV);
    const limit = Math.min(HASH_SIZE, top + 1);
    let b = hashOf(addrNum, addrBig);
    for (let i = 0; i < limit; i++) {
      if (this.head[b] >= 0) {
        const s = this.bucketFind(b, devId, addrNum, addrBig, size, type, dir, sgCall, true);
        if (s >= 0) return s;
      }
      b = (b - 1) & HASH_FN_MASK;
    }
    return -1;
  }
}

/** Most slots in one chunk of an OrderedIndex. */
const CAP = 512;
/** A mid-chunk insert with more than this many entries after it splits the chunk there first. */
const SPLIT_TAIL = 24;
/** Emptied chunks an index keeps for reuse. */
const SPARE_CHUNKS = 512;

interface Chunk {
  readonly keys: Float64Array;
  readonly slots: Int32Array;
  len: number;
}

function newChunk(): Chunk {
  return { keys: new Float64Array(CAP), slots: new Int32Array(CAP), len: 0 };
}

/** floor(log2(size)) for size >= 1 (0 below): the size class of an entry. */
function sizeClass(size: number): number {
  if (size < 2) return 0;
  if (size < 0x100000000) return 31 - Math.clz32(size);
  return 63 - Math.clz32(Math.floor(size / 0x100000000));
}

/**
 * Slots ordered by a numeric key (the DMA address, or the CPU physical address), equal keys in
 * insertion order, in sorted chunks of at most CAP: appending in ascending order (IOVA links) costs
 * O(1), inserting below a run (a window allocated under the previous one) starts a new chunk
 * rather than shifting the run. Live entries are counted per power-of-two size class, which bounds
 * how far below an address an entry overlapping it can start. Keys beyond 2^53 are Number()-rounded
 * (monotone), so range queries return a superset that callers filter exactly.
 */
export class OrderedIndex {
  private readonly chunks: Chunk[] = [];
  /** Emptied chunks kept for reuse (an index that empties and refills, as IOVA windows do). */
  private readonly spare: Chunk[] = [];
  private readonly classCount = new Int32Array(64);
  private topClass = -1;
  count = 0;
  /** The key column of the table (EntryTable.addr or EntryTable.paddr) and the size column. */
  private readonly t: EntryTable;
  private readonly byPhys: boolean;

  constructor(t: EntryTable, byPhys: boolean) {
    this.t = t;
    this.byPhys = byPhys;
  }

  private takeChunk(): Chunk {
    const c = this.spare.pop();
    if (c === undefined) return newChunk();
    c.len = 0;
    return c;
  }

  private dropChunk(c: number): void {
    const [ch] = this.chunks.splice(c, 1);
    if (this.spare.length < SPARE_CHUNKS) this.spare.push(ch);
  }

  private keyOf(s: number): number {
    return this.byPhys ? this.t.paddr[s] : this.t.addr[s];
  }

  /** A size that no live entry reaches (0 when empty). */
  sizeBound(): number {
    return this.topClass < 0 ? 0 : 2 ** (this.topClass + 1);
  }

  /** Index of the last chunk whose first key is <= key (0 if none). */
  private chunkFor(key: number): number {
    const cs = this.chunks;
    let a = 0, b = cs.length;
    while (a < b) {
      const m = (a + b) >> 1;
      if (cs[m].keys[0] <= key) a = m + 1; else b = m;
    }
    return a === 0 ? 0 : a - 1;
  }

  /** Index of the first chunk whose last key is >= key (chunks.length if none). */
  private firstChunkReaching(key: number): number {
    const cs = this.chunks;
    let a = 0, b = cs.length;
    while (a < b) {
      const m = (a + b) >> 1;
      if (cs[m].keys[cs[m].len - 1] < key) a = m + 1; else b = m;
    }
    return a;
  }

  add(s: number): void {
    const key = this.keyOf(s);
    const cls = sizeClass(this.t.size[s]);
    this.classCount[cls]++;
    if (cls > this.topClass) this.topClass = cls;
    this.count++;
    const cs = this.chunks;
    if (cs.length === 0) cs.push(this.takeChunk());
    const last = cs[cs.length - 1];
    const n = last.len;
    if (n === 0 || last.keys[n - 1] <= key) {
      if (n < CAP) {
        last.keys[n] = key;
        last.slots[n] = s;
        last.len = n + 1;
      } else {
        this.appendTo(cs.length - 1, key, s);
      }
      return;
    }
    const c = this.chunkFor(key);
    const ch = cs[c];
    // first index with a larger key: equal keys stay in insertion order
    let a = 0, b = ch.len;
    while (a < b) {
      const m = (a + b) >> 1;
      if (ch.keys[m] <= key) a = m + 1; else b = m;
    }
    if (a === ch.len) {
      this.appendTo(c, key, s);
    } else if (a === 0) {
      // below the whole chunk (c is 0): a chunk of its own in front
      const front = this.takeChunk();
      front.keys[0] = key;
      front.slots[0] = s;
      front.len = 1;
      cs.splice(c, 0, front);
    } else if (ch.len - a > SPLIT_TAIL) {
      const tail = this.takeChunk();
      tail.keys.set(ch.keys.subarray(a, ch.len));
      tail.slots.set(ch.slots.subarray(a, ch.len));
      tail.len = ch.len - a;
      ch.len = a;
      cs.splice(c + 1, 0, tail);
      this.appendTo(c, key, s);
    } else {
      if (ch.len === CAP) {
        this.splitHalf(c);
        this.count--;
        this.classCount[cls]--;
        this.add(s);
        return;
      }
      ch.keys.copyWithin(a + 1, a, ch.len);
      ch.slots.copyWithin(a + 1, a, ch.len);
      ch.keys[a] = key;
      ch.slots[a] = s;
      ch.len++;
    }
  }

  private appendTo(c: number, key: number, s: number): void {
    let ch = this.chunks[c];
    if (ch.len === CAP) {
      ch = this.takeChunk();
      this.chunks.splice(c + 1, 0, ch);
    }
    ch.keys[ch.len] = key;
    ch.slots[ch.len] = s;
    ch.len++;
  }

  private splitHalf(c: number): void {
    const ch = this.chunks[c];
    const h = ch.len >> 1;
    const tail = this.takeChunk();
    tail.keys.set(ch.keys.subarray(h, ch.len));
    tail.slots.set(ch.slots.subarray(h, ch.len));
    tail.len = ch.len - h;
    ch.len = h;
    this.chunks.splice(c + 1, 0, tail);
  }

  private dropClass(s: number): void {
    const cls = sizeClass(this.t.size[s]);
    if (--this.classCount[cls] === 0 && cls === this.topClass) {
      while (this.topClass >= 0 && this.classCount[this.topClass] === 0) this.topClass--;
    }
  }

  /** Removes slot s (false when it is not here). */
  remove(s: number): boolean {
    const key = this.keyOf(s);
    const cs = this.chunks;
    for (let c = this.firstChunkReaching(key); c < cs.length; c++) {
      const ch = cs[c];
      if (ch.keys[0] > key) break;
      for (let j = 0; j < ch.len; j++) {
        if (ch.slots[j] !== s) continue;
        ch.keys.copyWithin(j, j + 1, ch.len);
        ch.slots.copyWithin(j, j + 1, ch.len);
        ch.len--;
        if (ch.len === 0) this.dropChunk(c);
        this.count--;
        this.dropClass(s);
        return true;
      }
    }
    return false;
  }

  /**
   * Calls fn(slot) for every entry whose key lies in [lo - sizeBound(), hi] (the candidates for
   * overlapping [lo, hi)), ascending; fn returns true to remove the entry.
   */
  scan(lo: number, hi: number, fn: (s: number) => boolean): void {
    if (this.count === 0) return;
    // (the margin covers the rounding of keys beyond 2^53)
    const from = lo - this.sizeBound() - Math.abs(lo) * 2 ** -50;
    const last = hi + Math.abs(hi) * 2 ** -50;
    const cs = this.chunks;
    let c = this.firstChunkReaching(from);
    while (c < cs.length) {
      const ch = cs[c];
      if (ch.keys[0] > last) break;
      let w = 0;
      let stop = false;
      for (let r = 0; r < ch.len; r++) {
        const k = ch.keys[r];
        const s = ch.slots[r];
        if (!stop && k > last) stop = true;
        if (!stop && k >= from && fn(s)) {
          this.count--;
          this.dropClass(s);
          continue;
        }
        ch.keys[w] = k;
        ch.slots[w] = s;
        w++;
      }
      ch.len = w;
      if (w === 0) this.dropChunk(c); else c++;
      if (stop) break;
    }
  }

  /** Every slot, ascending by key. */
  all(out: number[]): void {
    for (const ch of this.chunks) for (let j = 0; j < ch.len; j++) out.push(ch.slots[j]);
  }
}
