// Models: include/linux/mm_types.h, include/linux/mm.h, include/linux/page_ref.h (Linux 7.1): struct
// folio's reference and pin accounting (folio_ref_add, folio_put_refs, folio->_pincount), stored as
// typed-array columns for allocated folios only. Every change to a count goes through this file.

/** Where a folio came from, so that freeing it returns it to the right place. */
export const FolioKind = { Buddy: 0, Hugetlb: 1, ZoneDevice: 3, HugeZero: 4 } as const;
export type FolioKind = (typeof FolioKind)[keyof typeof FolioKind];

/** 2^k for every folio order. */
const POW2 = Float64Array.from({ length: 64 }, (_, k) => 2 ** k);

/** Head pfns per chunk of the head-pfn index (64 KiB of Int32 each). */
const INDEX_CHUNK = 16384;

/**
 * Folio records for allocated folios only: head pfn, order, refcount, pincount, kind as columns,
 * plus an index head pfn -> record index: for order-0 folios Int32Array chunks of INDEX_CHUNK
 * frames, made where folios are (millions of folios cost the garbage collector nothing to trace,
 * and the folios of one populate, which come from a few memory blocks, share a few chunks instead
 * of scattering over a hash table); for large folios, which are few and far apart, a Map. Free
 * memory has no record. The columns are public for reading
 * (GUP's hot loops); counts change only through get / dropRefs / pin / pinEach / unpinBatch.
 *
 * Model deviation: the kernel counts a pin of a small folio as GUP_PIN_COUNTING_BIAS (1024) extra
 * references and keeps _pincount only for large folios; here every folio has an explicit pincount,
 * and a pin adds one reference and one pincount per pinned base page (as try_grab_folio does with
 * refs = pages for large folios). Each page-table entry mapping (part of) a folio holds one reference.
 * So a small folio's refcount never nears overflow here: the kernel's reaches INT_MAX after about
 * 2^21 pins of one page, after which try_grab_folio (mm/gup.c) WARNs on a refcount <= 0 and fails
 * the pin with ENOMEM (GUP-fast's try_get_folio falls back); the model has no such limit.
 */
export class FolioTable {
  head = new Float64Array(1024);
  order = new Uint8Array(1024);
  /** folio->_refcount and _pincount are atomic_t: 32-bit. */
  refcount = new Int32Array(1024);
  pincount = new Int32Array(1024);
  kind = new Uint8Array(1024);
  /** Order-0 folios: record index + 1 per head pfn (0: none), by chunk number floor(pfn / INDEX_CHUNK). */
  private readonly chunks = new Map<number, Int32Array>();
  /** Large folios: record index + 1 by head pfn. */
  private readonly large = new Map<number, number>();
  /** The chunk last looked up (lookups come in runs inside one chunk). */
  private lastKey = -1;
  private lastChunk: Int32Array | undefined = undefined;
  private live = 0;
  private readonly freeIdx: number[] = [];
  private used = 0;
  /** How many live folios of each order: folio lookup by tail pfn only tries orders in use. */
  private readonly perOrder = new Int32Array(64);

  /** Live folio records. */
  get count(): number {
    return this.live;
  }

  /** The index chunk of pfn, or undefined when it holds no head (made when `make`). */
  private chunkOf(key: number, make: boolean): Int32Array | undefined {
    if (key === this.lastKey) return this.lastChunk;
    let c = this.chunks.get(key);
    if (c === undefined) {
      if (!make) return undefined;
      c = new Int32Array(INDEX_CHUNK);
      this.chunks.set(key, c);
    }
    this.lastKey = key;
    this.lastChunk = c;
    return c;
  }

  /** Record index + 1 of the folio headed at pfn, 0 for none. */
  private indexAt(pfn: number): number {
    const key = Math.floor(pfn / INDEX_CHUNK);
    const c = this.chunkOf(key, false);
    return c === undefined ? 0 : c[pfn - key * INDEX_CHUNK];
  }

  private setIndex(pfn: number, v: number): void {
    const key = Math.floor(pfn / INDEX_CHUNK);
    this.chunkOf(key, true)![pfn - key * INDEX_CHUNK] = v;
  }

  /**
   * Makes room for `extra` more records at once (a populate of many pages): one growth of the
   * columns instead of one per doubling as the records arrive.
   */
  reserve(extra: number): void {
    const want = this.used + extra;
    if (want > this.head.length) {
      let n = this.head.length;
      while (n < want) n *= 2;
      this.growTo(n);
    }
  }

  private grow(): void {
    this.growTo(this.head.length * 2);
  }

  private growTo(n: number): void {
    const g = <T extends Float64Array | Int32Array | Uint8Array>(a: T, C: new (n: number) => T): T => {
      const b = new C(n);
      b.set(a);
      return b;
    };
    this.head = g(this.head, Float64Array);
    this.order = g(this.order, Uint8Array);
    this.refcount = g(this.refcount, Int32Array);
    this.pincount = g(this.pincount, Int32Array);
    this.kind = g(this.kind, Uint8Array);
  }

  /** Creates a record for a folio at headPfn with refcount references; returns its index. */
  create(headPfn: number, order: number, kind: FolioKind, refcount: number): number {
    let idx = this.freeIdx.pop();
    if (idx === undefined) {
      if (this.used === this.head.length) this.grow();
      idx = this.used++;
    }
    this.head[idx] = headPfn;
    this.order[idx] = order;
    this.refcount[idx] = refcount;
    this.pincount[idx] = 0;
    this.kind[idx] = kind;
    if (order === 0) this.setIndex(headPfn, idx + 1);
    else this.large.set(headPfn, idx + 1);
    this.live++;
    this.perOrder[order]++;
    return idx;
  }

  /** Deletes a record (the folio was freed). */
  remove(idx: number): void {
    const h = this.head[idx];
    if (this.order[idx] !== 0) {
      if (this.large.get(h) === idx + 1) this.large.delete(h);
    } else if (this.indexAt(h) === idx + 1) this.setIndex(h, 0);
    this.live--;
    this.perOrder[this.order[idx]]--;
    this.refcount[idx] = 0;
    this.pincount[idx] = 0;
    this.head[idx] = -1;
    this.freeIdx.push(idx);
  }

  /** folio_ref_add: refs more references (a new page-table entry, a split PMD's PTEs). */
  get(idx: number, refs: number): void {
    this.refcount[idx] += refs;
  }

  /**
   * The counting half of folio_put_refs: drops refs references and returns how many are left. The
   * machine (MmMachine.folioPut) frees the folio when that reaches its kind's floor.
   */
  dropRefs(idx: number, refs: number): number {
    const r = this.refcount[idx] - refs;
    this.refcount[idx] = r;
    return r;
  }

  /** try_grab_folio(FOLL_PIN): refs more references and refs pins (refs base pages of the folio). */
  pin(idx: number, refs: number): void {
    this.refcount[idx] += refs;
    this.pincount[idx] += refs;
  }

  /**
   * try_grab_folio(FOLL_PIN) once for each folio idxs[from..to) (base pages of order-0 folios, as a
   * 4 KiB anonymous page table holds them). The caller holds the folios (they are mapped).
   */
  pinEach(idxs: Int32Array, from: number, to: number): void {
    const rc = this.refcount, pc = this.pincount;
    for (let i = from; i < to; i++) {
      const f = idxs[i];
      rc[f] += 1;
      pc[f] += 1;
    }
  }

  /**
   * The pin half of gup_put_folio(FOLL_PIN) for every entry of a FolioRecord: each folio loses its
   * pins. If some folio does not hold that many pins (or is gone), the pins dropped so far are restored
   * and that entry's position in rec.v is returned: nothing changed. Returns -1 when every pin was
   * dropped; the caller then drops the references (MmMachine.putRecord), which may free folios.
   */
  unpinRecord(rec: FolioRecord): number {
    const pc = this.pincount, head = this.head, v = rec.v, n = rec.n;
    for (let i = 0; i < n; i++) {
      const x = v[i];
      const f = x >= 0 ? x : -x - 1, r = x >= 0 ? 1 : v[i + 1];
      const left = pc[f] - r;
      if (left < 0 || head[f] < 0) return this.restorePins(rec, i);
      pc[f] = left;
      if (x < 0) i++;
    }
    return -1;
  }

  /** Gives back the pins unpinRecord dropped before entry `bad`; returns bad. */
  private restorePins(rec: FolioRecord, bad: number): number {
    const pc = this.pincount, v = rec.v;
    for (let j = 0; j < bad; j++) {
      const x = v[j];
      if (x >= 0) pc[x] += 1;
      else { pc[-x - 1] += v[j + 1]; j++; }
    }
    return bad;
  }

  /** The record index of the folio containing pfn, or -1. */
  find(pfn: number): number {
    const po = this.perOrder;
    for (let o = 0; o < 64; o++) {
      if (po[o] === 0) continue;
      const size = POW2[o];
      const v = o === 0 ? this.indexAt(pfn) : this.large.get(pfn - (pfn % size)) ?? 0;
      if (v > 0 && this.order[v - 1] === o) return v - 1;
    }
    return -1;
  }

  /** The record index of the folio whose head is exactly pfn, or -1. */
  byHeadPfn(pfn: number): number {
    const v = this.indexAt(pfn);
    return v > 0 ? v - 1 : (this.large.get(pfn) ?? 0) - 1;
  }
}

/**
 * The folios a pin holds, as a compact column: an entry x >= 0 is one pin of folio x (an order-0
 * folio, a ZONE_DEVICE page); x < 0 is folio -x - 1 with the pin count in the next slot (part of a
 * large folio). Folio record indexes, as FolioTable gives them.
 */
export class FolioRecord {
  v: Int32Array;
  n = 0;
  /** Pins in all entries (base pages). */
  pages = 0;
  /** Entries (folios, or parts of large folios). */
  entries = 0;
  /** Where the last entry added by add() starts (-1: none, or addEach came after it). */
  private last = -1;

  constructor(cap = 16) {
    this.v = new Int32Array(Math.max(16, cap));
  }

  /** Room for `more` more slots. */
  reserve(more: number): void {
    if (this.n + more <= this.v.length) return;
    const v = new Int32Array(Math.max(this.n + more, this.v.length * 2));
    v.set(this.v.subarray(0, this.n));
    this.v = v;
  }

  /** refs pins of folio f (merged into the last entry when that is the same folio). */
  add(f: number, refs: number): void {
    this.reserve(2);
    const v = this.v, k = this.last;
    this.pages += refs;
    if (k >= 0 && v[k] === f) {
      // a single pin of f becomes a counted entry
      v[k] = -f - 1;
      v[k + 1] = 1 + refs;
      this.n = k + 2;
      return;
    }
    if (k >= 0 && v[k] === -f - 1) { v[k + 1] += refs; return; }
    this.last = this.n;
    if (refs === 1) v[this.n++] = f;
    else { v[this.n++] = -f - 1; v[this.n++] = refs; }
    this.entries++;
  }

  /** One pin of each folio idxs[from..to) (order-0 folios), copied in one go. */
  addEach(idxs: Int32Array, from: number, to: number): void {
    this.reserve(to - from);
    this.v.set(idxs.subarray(from, to), this.n);
    this.n += to - from;
    this.last = -1;
    this.pages += to - from;
    this.entries += to - from;
  }

  /** Calls fn(folio, refs) for every entry. */
  forEach(fn: (f: number, refs: number) => void): void {
    const v = this.v;
    for (let i = 0; i < this.n; i++) {
      const x = v[i];
      if (x >= 0) fn(x, 1);
      else { fn(-x - 1, v[i + 1]); i++; }
    }
  }
}
