// Models: the generic IOMMU page-table walker of drivers/iommu/generic_pt/ (iommu_pt.h: map_pages,
// unmap_pages, iova_to_phys, clear_contig, table allocation and freeing; Linux 6.19; reference 7.4).
// One walker serves every format in formats.ts. Table pages are real 4 KiB pages of the machine's
// RAM (allocKernelPages(0)); entries are written byte-exact, little-endian, through zero-copy views
// of those pages. Positions inside are 4 KiB frame numbers held in plain numbers (a 64-bit IOVA
// has a 52-bit frame number, exact in a double), never bigint.
// Model deviation: one thread, so none of the kernel's lock-free install races exist here.

import type { Errno } from '../base/index.ts';
import type { MachineMm } from '../mm/types.ts';
import { entryHi, entryLo, entryOaPfn, PT_ENTRY_EMPTY, PT_ENTRY_OA, PT_ENTRY_TABLE, type EntryWords, type PtFormat } from './formats.ts';

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
const ITEMS = 512;
/** 2^52: frame numbers of a 64-bit address space. */
const PFN_SPACE = 2 ** 52;

/** pow512[L] = 512^L = frames covered by one item at level L. */
const POW512 = [1, 512, 262144, 134217728, 68719476736, 35184372088832];

/** What one leaf lookup found. */
export interface LeafInfo {
  /** Frame number of the 4 KiB page that translates the looked-up IOVA frame. */
  physPfn: number;
  /** Frame number where the leaf's IOVA span starts. */
  leafIovaPfn: number;
  /** log2 of the leaf's size in 4 KiB frames. */
  leafLg2: number;
  /** Level of the leaf entry. */
  level: number;
  /** IOMMU prot bits the leaf grants. */
  prot: number;
}

/** One step of a walk, for inspection (tests, the visualizer). */
export interface WalkStep {
  readonly level: number;
  readonly tablePfn: bigint;
  readonly index: number;
  readonly pte: bigint;
  readonly kind: 'empty' | 'table' | 'leaf';
}

/**
 * A page table of one domain: root table plus every table below it, in machine RAM.
 * Counters on mm.stats: iommuTablePagesAllocated/Freed, iommuLeafPtesWritten/Cleared.
 */
export class PageTable {
  readonly format: PtFormat;
  readonly mm: MachineMm;
  /** Frame number of the top table. */
  readonly rootPfn: number;
  /** Table pages taken from RAM and not yet given back (pages waiting on a freelist included). */
  tablePages = 0;
  /** Errno of the last failed operation. */
  lastErr: Errno = 'EINVAL';
  /** Frames mapped by the last mapLeaves call (also on failure). */
  mappedPages = 0;
  /** Frames unmapped by the last unmapRange call. */
  unmappedPages = 0;
  private readonly views = new Map<number, Uint32Array>();
  private readonly top: number;
  private readonly attrs: EntryWords = { lo: 0, hi: 0 };
  private cacheLevel = -1;
  private cacheKey = -1;
  private cacheTable: Uint32Array | null = null;
  private readonly rootView: Uint32Array;

  /** Allocates the top table. Throws Error('ENOMEM ...') when RAM has no page for it. */
  constructor(mm: MachineMm, format: PtFormat) {
    if (!LITTLE_ENDIAN) throw new Error('the page-table model needs a little-endian host');
    if (mm.pageSize !== 4096) throw new RangeError(`IOMMU page tables need 4 KiB pages, got pageSize ${mm.pageSize}`);
    this.mm = mm;
    this.format = format;
    this.top = format.levels - 1;
    const root = this.allocTable();
    if (root < 0) throw new Error('ENOMEM: no page for the IOMMU top table');
    this.rootPfn = root;
    this.rootView = this.view(root);
  }

  /** true when [iovaPfn, iovaPfn + pages) is inside the translatable space (one half if sign-extended). */
  rangeOk(iovaPfn: number, pages: number): boolean {
    const f = this.format;
    const end = iovaPfn + pages;
    if (!f.signExtend) return end <= 2 ** (f.vaBits - 12);
    const half = 2 ** (f.vaBits - 13);
    return end <= half || (iovaPfn >= PFN_SPACE - half && end <= PFN_SPACE);
  }

  /** Zero-copy u32 view of a table page, cached by frame number. */
  view(pfn: number): Uint32Array {
    let v = this.views.get(pfn);
    if (v === undefined) {
      const u8 = this.mm.mem.view(BigInt(pfn) * 4096n, 4096);
      if (u8.byteOffset % 4 !== 0) throw new Error(`table page view at pfn ${pfn} is not 4-byte aligned`);
      v = new Uint32Array(u8.buffer, u8.byteOffset, 1024);
      this.views.set(pfn, v);
    }
    return v;
  }

  private allocTable(): number {
    const r = this.mm.allocKernelPages(0);
    if (!r.ok) return -1;
    const pfn = Number(r.value);
    const v = this.view(pfn);
    v.fill(0);
    this.tablePages++;
    this.mm.stats.iommuTablePagesAllocated++;
    return pfn;
  }

  /** Gives a table page (already unlinked and flushed) back to RAM. */
  releaseTable(pfn: number): void {
    this.views.delete(pfn);
    this.mm.freeKernelPages(BigInt(pfn), 0);
    this.tablePages--;
    this.mm.stats.iommuTablePagesFreed++;
  }

  private forgetTable(pfn: number): void {
    this.views.delete(pfn);
    this.cacheLevel = -1;
    this.cacheTable = null;
  }

  /**
   * The table at `level` that holds the entry for iovaPfn, allocating missing tables on the way
   * when `alloc`. null with lastErr: EADDRINUSE (a larger leaf is in the way), ENOMEM; or null
   * without allocation when a table is missing.
   */
  private tableFor(iovaPfn: number, level: number, alloc: boolean): Uint32Array | null {
    const key = Math.floor(iovaPfn / POW512[level + 1]);
    if (this.cacheLevel === level && this.cacheKey === key) return this.cacheTable;
    const f = this.format;
    let t = this.rootView;
    for (let l = this.top; l > level; l--) {
      const i = (Math.floor(iovaPfn / POW512[l]) % ITEMS) * 2;
      const lo = t[i], hi = t[i + 1];
      const kind = lo === 0 && hi === 0 ? PT_ENTRY_EMPTY : f.kind(l, lo, hi);
      if (kind === PT_ENTRY_TABLE) {
        t = this.view(entryOaPfn(f, lo, hi));
      } else if (kind === PT_ENTRY_OA) {
        this.lastErr = 'EADDRINUSE';
        return null;
      } else {
        if (!alloc) { this.lastErr = 'ENOENT'; return null; }
        const pfn = this.allocTable();
        if (pfn < 0) { this.lastErr = 'ENOMEM'; return null; }
        f.tableAttrs(this.attrs);
        t[i] = entryLo(this.attrs.lo, pfn);
        t[i + 1] = entryHi(this.attrs.hi, pfn);
        t = this.view(pfn);
      }
    }
    this.cacheLevel = level;
    this.cacheKey = key;
    this.cacheTable = t;
    return t;
  }

  /**
   * map_pages for `count` leaves of 2^lg2 frames: installs leaves for [iovaPfn, ...) -> [paPfn, ...).
   * Returns null on success, or an errno (mappedPages says how far it got): EADDRINUSE when
   * something is already mapped there, ENOMEM when a table page cannot be allocated. Empty tables
   * under a new larger leaf are unlinked onto `freelist` (clear_contig).
   */
  mapLeaves(iovaPfn: number, paPfn: number, count: number, lg2: number, prot: number, freelist: number[]): Errno | null {
    const f = this.format;
    const level = lg2 / 9;
    const step = POW512[level];
    f.leafAttrs(level, prot, this.attrs);
    const attrLo = this.attrs.lo, attrHi = this.attrs.hi;
    const stats = this.mm.stats;
    this.mappedPages = 0;
    while (count > 0) {
      const t = this.tableFor(iovaPfn, level, true);
      if (t === null) return this.lastErr;
      const idx = Math.floor(iovaPfn / step) % ITEMS;
      const n = Math.min(count, ITEMS - idx);
      for (let k = 0; k < n; k++) {
        const i = (idx + k) * 2;
        const lo = t[i], hi = t[i + 1];
        if (lo !== 0 || hi !== 0) {
          const kind = f.kind(level, lo, hi);
          if (kind === PT_ENTRY_OA) { stats.iommuLeafPtesWritten += k; this.lastErr = 'EADDRINUSE'; return 'EADDRINUSE'; }
          if (kind === PT_ENTRY_TABLE) {
            const collected: number[] = [];
            if (!this.collectEmptyTables(entryOaPfn(f, lo, hi), level - 1, collected)) {
              stats.iommuLeafPtesWritten += k;
              this.lastErr = 'EADDRINUSE';
              return 'EADDRINUSE';
            }
            t[i] = 0; t[i + 1] = 0;
            for (const p of collected) { this.forgetTable(p); freelist.push(p); }
          }
        }
        t[i] = entryLo(attrLo, paPfn);
        t[i + 1] = entryHi(attrHi, paPfn);
        paPfn += step;
        this.mappedPages += step;
      }
      stats.iommuLeafPtesWritten += n;
      iovaPfn += n * step;
      count -= n;
    }
    return null;
  }

  /** Collects a table and every table below it if none holds a leaf; false if one does. */
  private collectEmptyTables(pfn: number, level: number, out: number[]): boolean {
    const t = this.view(pfn);
    const f = this.format;
    for (let i = 0; i < ITEMS * 2; i += 2) {
      const lo = t[i], hi = t[i + 1];
      if (lo === 0 && hi === 0) continue;
      const kind = f.kind(level, lo, hi);
      if (kind === PT_ENTRY_OA) return false;
      if (kind === PT_ENTRY_TABLE && !this.collectEmptyTables(entryOaPfn(f, lo, hi), level - 1, out)) return false;
    }
    out.push(pfn);
    return true;
  }

  /**
   * unmap_pages for [iovaPfn, iovaPfn + pages): clears leaves, stops at the first hole or at a leaf
   * whose start is before the range (the kernel's -EINVAL), removes a whole leaf when the range
   * ends inside it (so more than asked can be unmapped), and unlinks onto `freelist` every table
   * the range fully covers. Returns the frames unmapped.
   */
  unmapRange(iovaPfn: number, pages: number, freelist: number[]): number {
    this.unmappedPages = 0;
    this.unmapLevel(this.rootView, this.top, iovaPfn, iovaPfn + pages, freelist);
    return this.unmappedPages;
  }

  private unmapLevel(t: Uint32Array, level: number, start: number, end: number, freelist: number[]): boolean {
    const f = this.format;
    const step = POW512[level];
    let idx = Math.floor(start / step) % ITEMS;
    let va = start;
    let first = true;
    while (va < end && idx < ITEMS) {
      const i = idx * 2;
      const lo = t[i], hi = t[i + 1];
      const kind = lo === 0 && hi === 0 ? PT_ENTRY_EMPTY : f.kind(level, lo, hi);
      const itemStart = va - (va % step);
      if (kind === PT_ENTRY_OA) {
        if (first && itemStart !== va) return false;
        t[i] = 0; t[i + 1] = 0;
        this.unmappedPages += step;
        this.mm.stats.iommuLeafPtesCleared++;
      } else if (kind === PT_ENTRY_TABLE) {
        const itemEnd = itemStart + step;
        const childPfn = entryOaPfn(f, lo, hi);
        const fully = itemStart === va && end >= itemEnd;
        if (!this.unmapLevel(this.view(childPfn), level - 1, va, Math.min(end, itemEnd), freelist)) return false;
        if (fully) {
          t[i] = 0; t[i + 1] = 0;
          this.forgetTable(childPfn);
          freelist.push(childPfn);
        }
      } else {
        return false;
      }
      first = false;
      va = itemStart + step;
      idx++;
    }
    return true;
  }

  /** Walks to the leaf translating iovaPfn; fills `out` and returns true, or false if unmapped. */
  lookup(iovaPfn: number, out: LeafInfo): boolean {
    const f = this.format;
    let t = this.rootView;
    for (let l = this.top; l >= 0; l--) {
      const i = (Math.floor(iovaPfn / POW512[l]) % ITEMS) * 2;
      const lo = t[i], hi = t[i + 1];
      const kind = lo === 0 && hi === 0 ? PT_ENTRY_EMPTY : f.kind(l, lo, hi);
      if (kind === PT_ENTRY_EMPTY) return false;
      if (kind === PT_ENTRY_TABLE) { t = this.view(entryOaPfn(f, lo, hi)); continue; }
      const step = POW512[l];
      const off = iovaPfn % step;
      out.physPfn = entryOaPfn(f, lo, hi) + off;
      out.leafIovaPfn = iovaPfn - off;
      out.leafLg2 = 9 * l;
      out.level = l;
      out.prot = f.leafProt(lo, hi);
      return true;
    }
    return false;
  }

  /** The entries visited translating iovaPfn, top level first (the last is a leaf or empty). */
  walk(iovaPfn: number): WalkStep[] {
    const f = this.format;
    const steps: WalkStep[] = [];
    let pfn = this.rootPfn;
    for (let l = this.top; l >= 0; l--) {
      const t = this.view(pfn);
      const index = Math.floor(iovaPfn / POW512[l]) % ITEMS;
      const lo = t[index * 2], hi = t[index * 2 + 1];
      const kind = lo === 0 && hi === 0 ? PT_ENTRY_EMPTY : f.kind(l, lo, hi);
      const pte = (BigInt(hi) << 32n) | BigInt(lo);
      steps.push({ level: l, tablePfn: BigInt(pfn), index, pte, kind: kind === PT_ENTRY_TABLE ? 'table' : kind === PT_ENTRY_OA ? 'leaf' : 'empty' });
      if (kind !== PT_ENTRY_TABLE) break;
      pfn = entryOaPfn(f, lo, hi);
    }
    return steps;
  }

  /** Frame numbers of every table page reachable from the root (root first). */
  allTables(): number[] {
    const out: number[] = [];
    const f = this.format;
    const visit = (pfn: number, level: number): void => {
      out.push(pfn);
      if (level === 0) return;
      const t = this.view(pfn);
      for (let i = 0; i < ITEMS * 2; i += 2) {
        const lo = t[i], hi = t[i + 1];
        if ((lo !== 0 || hi !== 0) && f.kind(level, lo, hi) === PT_ENTRY_TABLE) visit(entryOaPfn(f, lo, hi), level - 1);
      }
    };
    visit(this.rootPfn, this.top);
    return out;
  }

  /** Frees every table page, root included (domain free; the caller has fenced the hardware). */
  destroy(): void {
    for (const pfn of this.allTables()) this.releaseTable(pfn);
    this.cacheLevel = -1;
    this.cacheTable = null;
  }
}
