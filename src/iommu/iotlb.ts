// Models: the IOTLB behind include/linux/iommu.h's ->iotlb_sync / ->flush_iotlb_all (Linux 7.1): the
// translation cache the hardware fills on a walk, as the kernel's invalidation paths see it:
// ->iotlb_sync invalidates a gathered range (iommu_iotlb_sync()), ->flush_iotlb_all everything
// (iommu_flush_iotlb_all(), which drivers/iommu/dma-iommu.c's flush queue calls). A cached
// translation stays in use until invalidated, so a missing flush is observable; lazy (flush-queue)
// mode trades exactly this for speed.
// Model deviation: no negative caching and no walk caches; capacity-limited with oldest-first
// eviction per leaf size.

/** One cached translation: a whole leaf (4 KiB, 2 MiB, 1 GiB ...). */
export interface IotlbEntry {
  /** First IOVA frame (4 KiB) of the leaf. */
  readonly leafIovaPfn: number;
  /** log2 of the leaf size in 4 KiB frames. */
  readonly leafLg2: number;
  /** First physical frame of the leaf. */
  readonly physPfn: number;
  /** IOMMU prot bits of the leaf. */
  readonly prot: number;
}

/** A per-domain IOTLB. */
export class Iotlb {
  /** Most entries held; the oldest of a size is evicted first. */
  readonly capacity: number;
  private readonly bySize = new Map<number, Map<number, IotlbEntry>>();
  /** bySize's keys and values in insertion order, as arrays: the per-invalidation walk allocates no iterator. */
  private readonly sizeLg2: number[] = [];
  private readonly sizeMaps: Array<Map<number, IotlbEntry>> = [];
  private count = 0;

  constructor(capacity = 4096) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) throw new RangeError(`capacity must be an integer >= 1, got ${capacity}`);
    this.capacity = capacity;
  }

  /** Entries held now. */
  get size(): number {
    return this.count;
  }

  /** The cached translation covering an IOVA frame, if any. */
  lookup(iovaPfn: number): IotlbEntry | undefined {
    if (this.count === 0) return undefined;
    for (let k = 0; k < this.sizeMaps.length; k++) {
      const m = this.sizeMaps[k];
      if (m.size === 0) continue;
      const span = 2 ** this.sizeLg2[k];
      const e = m.get(iovaPfn - (iovaPfn % span));
      if (e !== undefined) return e;
    }
    return undefined;
  }

  /** Caches a translation, evicting the oldest entry when full. */
  insert(e: IotlbEntry): void {
    let m = this.bySize.get(e.leafLg2);
    if (m === undefined) {
      m = new Map();
      this.bySize.set(e.leafLg2, m);
      this.sizeLg2.push(e.leafLg2);
      this.sizeMaps.push(m);
    }
    if (!m.has(e.leafIovaPfn)) {
      if (this.count >= this.capacity) this.evictOne();
      this.count++;
    }
    m.set(e.leafIovaPfn, e);
  }

  private evictOne(): void {
    for (const m of this.bySize.values()) {
      const first = m.keys().next();
      if (!first.done) {
        m.delete(first.value);
        this.count--;
        return;
      }
    }
  }

  /** Drops every entry whose leaf overlaps frames [startPfn, endPfn). Returns how many. */
  invalidateRange(startPfn: number, endPfn: number): number {
    // nothing cached (the common case between a strict unmap and the next device access)
    if (this.count === 0) return 0;
    let n = 0;
    for (let s = 0; s < this.sizeMaps.length; s++) {
      const m = this.sizeMaps[s];
      if (m.size === 0) continue;
      const span = 2 ** this.sizeLg2[s];
      const first = startPfn - (startPfn % span);
      const leaves = Math.ceil((endPfn - first) / span);
      if (leaves <= m.size) {
        for (let p = first; p < endPfn; p += span) if (m.delete(p)) n++;
      } else {
        for (const k of [...m.keys()]) if (k < endPfn && k + span > startPfn) { m.delete(k); n++; }
      }
    }
    this.count -= n;
    return n;
  }

  /** Drops everything. */
  flushAll(): void {
    for (const m of this.bySize.values()) m.clear();
    this.count = 0;
  }

  /** Every entry held (inspection). */
  entries(): IotlbEntry[] {
    const out: IotlbEntry[] = [];
    for (const m of this.bySize.values()) out.push(...m.values());
    return out;
  }
}
