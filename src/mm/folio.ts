// Models: include/linux/mm_types.h, include/linux/mm.h, include/linux/page_ref.h (Linux 7.1): struct
// folio's reference and pin accounting (folio_ref_add, folio_put_refs, folio->_pincount), stored as
// typed-array columns for allocated folios only. Every change to a count goes through this file.

/** Where a folio came from, so that freeing it returns it to the right place. */
export const FolioKind = { Buddy: 0, Hugetlb2M: 1, Hugetlb1G: 2, ZoneDevice: 3, HugeZero: 4 } as const;
export type FolioKind = (typeof FolioKind)[keyof typeof FolioKind];

/**
 * Folio records for allocated folios only: head pfn, order, refcount, pincount, kind as columns,
 * plus a map head pfn -> record index. Free memory has no record. The columns are public for reading
 * (GUP's hot loops); counts change only through get / dropRefs / pinBatch / unpinBatch.
 *
 * Model deviation: the kernel counts a pin of a small folio as GUP_PIN_COUNTING_BIAS (1024) extra
 * references and keeps _pincount only for large folios; here every folio has an explicit pincount,
 * and a pin adds one reference and one pincount per pinned base page (as try_grab_folio does with
 * refs = pages for large folios). Each page-table entry mapping (part of) a folio holds one reference.
 */
export class FolioTable {
  head = new Float64Array(1024);
  order = new Uint8Array(1024);
  refcount = new Float64Array(1024);
  pincount = new Float64Array(1024);
  kind = new Uint8Array(1024);
  private readonly byHead = new Map<number, number>();
  private readonly freeIdx: number[] = [];
  private used = 0;
  /** How many live folios of each order: folio lookup by tail pfn only tries orders in use. */
  private readonly perOrder = new Int32Array(64);

  /** Live folio records. */
  get count(): number {
    return this.byHead.size;
  }

  private grow(): void {
    const n = this.head.length * 2;
    const g = <T extends Float64Array | Uint8Array>(a: T, C: new (n: number) => T): T => {
      const b = new C(n);
      b.set(a);
      return b;
    };
    this.head = g(this.head, Float64Array);
    this.order = g(this.order, Uint8Array);
    this.refcount = g(this.refcount, Float64Array);
    this.pincount = g(this.pincount, Float64Array);
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
    this.byHead.set(headPfn, idx);
    this.perOrder[order]++;
    return idx;
  }

  /** Deletes a record (the folio was freed). */
  remove(idx: number): void {
    this.byHead.delete(this.head[idx]);
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

  /**
   * try_grab_folio(FOLL_PIN) for n entries: folio fs[i] gains rs[i] references and rs[i] pins.
   * The caller holds the folios (they are mapped or otherwise referenced).
   */
  pinBatch(fs: Int32Array, rs: Int32Array, n: number): void {
    const rc = this.refcount, pc = this.pincount;
    for (let i = 0; i < n; i++) {
      const f = fs[i], r = rs[i];
      rc[f] += r;
      pc[f] += r;
    }
  }

  /**
   * The pin half of gup_put_folio(FOLL_PIN) for n entries: folio fs[i] loses rs[i] pins. If some
   * folio does not hold that many pins (or is gone), the pins dropped so far are restored and that
   * entry's index is returned: nothing changed. Returns -1 when every pin was dropped; the caller
   * then drops the references (MmMachine.folioPut), which may free folios.
   */
  unpinBatch(fs: Int32Array, rs: Int32Array, n: number): number {
    const pc = this.pincount, head = this.head;
    for (let i = 0; i < n; i++) {
      const f = fs[i];
      const left = pc[f] - rs[i];
      if (left < 0 || head[f] < 0) {
        for (let j = 0; j < i; j++) pc[fs[j]] += rs[j];
        return i;
      }
      pc[f] = left;
    }
    return -1;
  }

  /** The record index of the folio containing pfn, or -1. */
  find(pfn: number): number {
    for (let o = 0; o < 64; o++) {
      if (this.perOrder[o] === 0) continue;
      const size = 2 ** o;
      const head = pfn - (pfn % size);
      const idx = this.byHead.get(head);
      if (idx !== undefined && this.order[idx] === o) return idx;
    }
    return -1;
  }

  /** The record index of the folio whose head is exactly pfn, or -1. */
  byHeadPfn(pfn: number): number {
    return this.byHead.get(pfn) ?? -1;
  }
}
