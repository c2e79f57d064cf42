// Models: drivers/iommu/generic_pt/iommu_pt.h (Linux 7.1): the generic IOMMU page-table walker
// (NS(map_range), NS(unmap_range), DOMAIN_NS(iova_to_phys), clear_contig(), table allocation and freeing).
// One walker serves every format in formats.ts; ARM LPAE domains use it through ArmLpaePageTable
// (pagetable-arm.ts), which keeps io-pgtable-arm's map and unmap rules and walks its 16 and 64 KiB
// granules. Table pages are real pages of the machine's RAM (allocKernelPages(0)), one granule
// each; entries are written byte-exact, little-endian, through zero-copy views of those pages.
// Units: IOVAs, output addresses and leaf sizes are 4 KiB frame numbers whatever the granule (a
// 64-bit IOVA has a 52-bit frame number, exact in a double; never bigint); a table page is named by
// its machine pfn (the mm's page-size units), which is its 4 KiB frame only on a 4 KiB-page machine.
// The machine's memory is stored in 4 KiB chunks, so a 16 or 64 KiB table page is reached through
// its 4 KiB pieces (tablePieces: entry e is in piece e >>> 9). The hot paths below keep the
// 512-entry constants and view() (tableFor, mapLeaves, mapRunCached, unmapRange, lookup) and serve
// 4 KiB tables only: ArmLpaePageTable has its own descent and overrides mapLeaves, unmapRange and
// lookup with the table's geometry (tableItems, levelInv, tableFrames) and pieces; mapRunCached
// reaches an ARM table only through cacheTable, which ArmLpaePageTable sets for a 4 KiB granule
// alone. countWalk, walk and the table visits read the per-table geometry.
// Model deviation: one thread, so none of the kernel's lock-free install races exist here.

import type { Errno } from '../base/index.ts';
import type { MachineMm } from '../mm/index.ts';
import { entryHi, entryLo, entryOaPfn, PT_ENTRY_EMPTY, PT_ENTRY_OA, PT_ENTRY_TABLE, type EntryWords, type PtFormat } from './formats.ts';
import './counters.ts';

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
const ITEMS = 512;
/** x & ITEM_MASK is x % ITEMS for a non-negative integer x < 2^53 (ToInt32 keeps the low 32 bits exactly): no fmod call. */
const ITEM_MASK = ITEMS - 1;
/** 2^52: frame numbers of a 64-bit address space. */
const PFN_SPACE = 2 ** 52;

/** pow512[L] = 512^L = frames covered by one item at level L. */
const POW512 = [1, 512, 262144, 134217728, 68719476736, 35184372088832];
/** INV512[L] = 512^-L: x * INV512[L] is exactly x / 512^L (a power of two), without a division. */
const INV512 = POW512.map((p) => 1 / p);
/** POW2[k] = 2^k for k < 64. */
const POW2: readonly number[] = Array.from({ length: 64 }, (_, k) => 2 ** k);
/** 2^-20: frame bits above the low 20, by multiplication. */
const INV_2_20 = 1 / 1048576;

/** The inspection name of an entry kind (PT_ENTRY_*). */
export function entryKindName(kind: number): 'empty' | 'table' | 'leaf' {
  return kind === PT_ENTRY_TABLE ? 'table' : kind === PT_ENTRY_OA ? 'leaf' : 'empty';
}

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
  /** Machine pfn of the top table. */
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
  /** The frame and level of the last table reached by the current walk (-1: the next walk starts at the root). */
  protected walkPfn = -1;
  protected walkLevel = 0;
  /** true between beginBatchWalk and endBatchWalk. */
  private batchWalk = false;
  private clearedPtes = 0;
  /** Leaf attribute words of the last (level, prot) mapped: most map calls repeat them. */
  protected attrLevel = -1;
  protected attrProt = -1;
  protected attrLo = 0;
  protected attrHi = 0;
  protected readonly top: number;
  protected readonly attrs: EntryWords = { lo: 0, hi: 0 };
  /** The level and key (first frame / frames a table of that level covers) of the last table tableFor reached; -1: none. */
  protected cacheLevel = -1;
  protected cacheKey = -1;
  /** That table's view (null when it has no single 4 KiB view: a larger granule's table). */
  protected cacheTable: Uint32Array | null = null;
  /** Cached tablePieces of the table pages, by machine pfn, for subclasses that keep them (ArmLpaePageTable). */
  protected readonly pieceCache = new Map<number, Uint32Array[]>();
  /** Bytes of one table page: the format's granule, which is the machine's page size. */
  protected readonly tableBytes: number;
  /** Entries of one table page (512 for a 4 KiB granule). */
  protected readonly tableItems: number;
  /** tableItems - 1: an index mask. */
  protected readonly itemMask: number;
  /** 4 KiB frames in one table page (1, 4 or 16): a table's machine pfn times this is its 4 KiB frame. */
  protected readonly tableFrames: number;
  /** levelInv[L] = 1 / (4 KiB frames one entry at level L covers), for L in [0, levels]: exact powers of two. */
  protected readonly levelInv: readonly number[];
  protected readonly rootView: Uint32Array;
  /** End of the lower (or only) translatable half, in frames. */
  protected readonly lowEndPfn: number;
  /** Start of the upper sign-extended half in frames (beyond the space when not sign-extended). */
  private readonly highStartPfn: number;
  /** Output frames must stay below this (2^(oaBits - 12)). */
  readonly oaPfnLimit: number;

  /**
   * Allocates the top table. Throws Error('ENOMEM ...') when RAM has no page for it, RangeError when
   * the machine's page size is not the format's granule (a table page is one machine page).
   */
  constructor(mm: MachineMm, format: PtFormat) {
    if (!LITTLE_ENDIAN) throw new Error('the page-table model needs a little-endian host');
    if (mm.pageSize !== format.granule) {
      throw new RangeError(`${format.name} page tables with a ${format.granule}-byte granule need ${format.granule}-byte pages, got pageSize ${mm.pageSize}`);
    }
    this.mm = mm;
    this.format = format;
    this.tableBytes = format.granule;
    this.tableItems = format.granule / 8;
    this.itemMask = this.tableItems - 1;
    this.tableFrames = format.granule / 4096;
    const g4 = Math.log2(this.tableFrames);
    this.levelInv = Array.from({ length: format.levels + 1 }, (_, l) => 2 ** -(g4 + format.bitsPerLevel * l));
    this.top = format.levels - 1;
    this.lowEndPfn = format.signExtend ? 2 ** (format.vaBits - 13) : 2 ** (format.vaBits - 12);
    this.highStartPfn = format.signExtend ? PFN_SPACE - this.lowEndPfn : Infinity;
    this.oaPfnLimit = 2 ** (format.oaBits - 12);
    const root = this.allocTable();
    if (root < 0) throw new Error('ENOMEM: no page for the IOMMU top table');
    this.rootPfn = root;
    this.rootView = this.tablePieces(root)[0];
  }

  /** true when [iovaPfn, iovaPfn + pages) is inside the translatable space (one half if sign-extended). */
  rangeOk(iovaPfn: number, pages: number): boolean {
    const end = iovaPfn + pages;
    return end <= this.lowEndPfn || (iovaPfn >= this.highStartPfn && end <= PFN_SPACE);
  }

  /** Zero-copy u32 view of a 4 KiB table page, cached by frame number (a 4 KiB granule only: else tablePieces). */
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

  /**
   * The table page at machine pfn as zero-copy u32 views of its 4 KiB pieces, in order: entry e is
   * words (e & 511) * 2 and (e & 511) * 2 + 1 of piece e >>> 9. Here one piece, view(pfn) (4 KiB
   * granule); ArmLpaePageTable gives every granule's.
   */
  tablePieces(pfn: number): Uint32Array[] {
    return [this.view(pfn)];
  }

  protected allocTable(): number {
    const r = this.mm.allocKernelPages(0, 'iommu-pt');
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

  protected forgetTable(pfn: number): void {
    this.views.delete(pfn);
    this.cacheLevel = -1;
    this.cacheTable = null;
  }

  /**
   * The table at `level` that holds the entry for iovaPfn, allocating missing tables on the way
   * when `alloc`. null with lastErr: EADDRINUSE (a larger leaf is in the way), ENOMEM; or null
   * without allocation when a table is missing.
   */
  protected tableFor(iovaPfn: number, level: number, alloc: boolean): Uint32Array | null {
    if (alloc) this.countWalk(iovaPfn, level);
    const key = Math.floor(iovaPfn * INV512[level + 1]);
    if (this.cacheLevel === level && this.cacheKey === key) return this.cacheTable;
    const f = this.format;
    let t = this.rootView;
    for (let l = this.top; l > level; l--) {
      const i = (Math.floor(iovaPfn * INV512[l]) & ITEM_MASK) * 2;
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
        f.tableAttrs(l, this.attrs);
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
   * Starts the table walk of a map_pages call: the next table is reached from the root, unless a
   * batched map (iommuMapBatch) holds one walk across its calls.
   */
  protected startWalk(): void {
    if (!this.batchWalk) this.walkPfn = -1;
  }

  /** @internal Holds one walk across map calls until endBatchWalk (iommuMapBatch). */
  beginBatchWalk(): void {
    this.batchWalk = true;
    this.walkPfn = -1;
  }

  /** @internal Ends beginBatchWalk. */
  endBatchWalk(): void {
    this.batchWalk = false;
    this.walkPfn = -1;
  }

  /**
   * Counts the levels descended to reach the level-`level` table holding iovaPfn
   * (iommuTableWalkSteps): from the root at the walk's start, else from the deepest table it shares
   * with the walk's previous table.
   */
  protected countWalk(iovaPfn: number, level: number): void {
    let steps = this.top - level;
    const prev = this.walkPfn;
    if (prev >= 0) {
      steps = Math.max(0, this.walkLevel - level);
      // the table's geometry (INV512 for a 4 KiB granule), so ARM LPAE's larger granules count alike
      const inv = this.levelInv;
      // in the same level-`level` table as the last walk (the common case) every table above it
      // is shared too: only another table has a level to find
      if (Math.floor(iovaPfn * inv[level + 1]) !== Math.floor(prev * inv[level + 1])) {
        for (let l = this.top - 1; l >= level; l--) {
          if (Math.floor(iovaPfn * inv[l + 1]) !== Math.floor(prev * inv[l + 1])) {
            steps = Math.max(steps, l - level + 1);
            break;
          }
        }
      }
    }
    this.walkPfn = iovaPfn;
    this.walkLevel = level;
    this.mm.stats.iommuTableWalkSteps += steps;
  }

  /** The leaf attribute words for (level, prot) in attrLo / attrHi, computed again only when either changes. */
  protected useLeafAttrs(level: number, prot: number): void {
    if (level === this.attrLevel && prot === this.attrProt) return;
    this.format.leafAttrs(level, prot, this.attrs);
    this.attrLevel = level;
    this.attrProt = prot;
    this.attrLo = this.attrs.lo;
    this.attrHi = this.attrs.hi;
  }

  /**
   * map_pages for `count` leaves of 2^lg2 frames: installs leaves for [iovaPfn, ...) -> [paPfn, ...).
   * Returns null on success, or an errno (mappedPages says how far it got): EADDRINUSE when
   * something is already mapped there, ENOMEM when a table page cannot be allocated. Empty tables
   * under a new larger leaf are unlinked onto `freelist` (clear_contig).
   */
  mapLeaves(iovaPfn: number, paPfn: number, count: number, lg2: number, prot: number, freelist: number[]): Errno | null {
    const level = Math.floor(lg2 / 9);
    const step = POW512[level];
    this.startWalk();
    this.useLeafAttrs(level, prot);
    const attrLo = this.attrLo, attrHi = this.attrHi;
    const stats = this.mm.stats;
    if (lg2 !== 9 * level) return this.mapContig(iovaPfn, paPfn, count, lg2, level, attrLo, attrHi, freelist);
    let mapped = 0;
    while (count > 0) {
      const t = this.tableFor(iovaPfn, level, true);
      if (t === null) return this.mapFailed(mapped, this.lastErr);
      const idx = Math.floor(iovaPfn * INV512[level]) & ITEM_MASK;
      const n = Math.min(count, ITEMS - idx);
      const end = (idx + n) * 2;
      for (let i = idx * 2; i < end; i += 2) {
        if ((t[i] !== 0 || t[i + 1] !== 0) && !this.clearSlot(t, i, level, freelist)) {
          stats.iommuLeafPtesWritten += (i - idx * 2) / 2;
          return this.mapFailed(mapped, 'EADDRINUSE');
        }
        // the output address in bits 12..51: low 20 frame bits in the low word, the rest in the high word
        t[i] = attrLo | ((paPfn & 0xfffff) << 12);
        t[i + 1] = attrHi | Math.floor(paPfn * INV_2_20);
        paPfn += step;
        mapped += step;
      }
      stats.iommuLeafPtesWritten += n;
      iovaPfn += n * step;
      count -= n;
    }
    this.mappedPages = mapped;
    return null;
  }

  /**
   * mapLeaves for `count` 4 KiB leaves that all fall in the cached 4 KiB-level table, when the leaf
   * attributes are those of the last map and every slot is empty: the entries are written at once
   * and true returned, with mapLeaves' counters and walk. Otherwise nothing is changed and false
   * returned (the caller takes the general path). count >= 1.
   */
  mapRunCached(iovaPfn: number, paPfn: number, count: number, prot: number): boolean {
    const key = Math.floor(iovaPfn * INV512[1]);
    const t = this.cacheTable;
    if (this.cacheLevel !== 0 || this.cacheKey !== key || this.attrLevel !== 0 || this.attrProt !== prot || t === null) return false;
    const from = (iovaPfn - key * ITEMS) * 2;
    const end = from + count * 2;
    if (end > ITEMS * 2) return false;
    for (let i = from; i < end; i++) if (t[i] !== 0) return false;
    this.startWalk();
    this.countWalk(iovaPfn, 0);
    const attrLo = this.attrLo, attrHi = this.attrHi;
    for (let i = from; i < end; i += 2) {
      t[i] = attrLo | ((paPfn & 0xfffff) << 12);
      t[i + 1] = attrHi | Math.floor(paPfn * INV_2_20);
      paPfn++;
    }
    this.mm.stats.iommuLeafPtesWritten += count;
    this.mappedPages = count;
    return true;
  }

  /** Ends a failed map call that got `mapped` frames in: records them and the errno, and returns it. */
  private mapFailed(mapped: number, errno: Errno): Errno {
    this.mappedPages = mapped;
    this.lastErr = errno;
    return errno;
  }

  /**
   * A slot about to receive a leaf: true when it is empty or holds only empty tables (which are
   * then unlinked onto freelist, clear_contig); false when something is mapped there.
   */
  private clearSlot(t: Uint32Array, i: number, level: number, freelist: number[]): boolean {
    const lo = t[i], hi = t[i + 1];
    if (lo === 0 && hi === 0) return true;
    const f = this.format;
    const kind = f.kind(level, lo, hi);
    if (kind === PT_ENTRY_EMPTY) return true;
    if (kind === PT_ENTRY_OA) return false;
    const collected: number[] = [];
    if (!this.collectEmptyTables(entryOaPfn(f, lo, hi), level - 1, collected)) return false;
    t[i] = 0; t[i + 1] = 0;
    for (const p of collected) { this.forgetTable(p); freelist.push(p); }
    return true;
  }

  /** mapLeaves for leaves spanning 2^(lg2 - 9 * level) entries (contiguous encoding). */
  private mapContig(iovaPfn: number, paPfn: number, count: number, lg2: number, level: number,
    attrLo: number, attrHi: number, freelist: number[]): Errno | null {
    const f = this.format;
    if (!f.contig) throw new Error(`format ${f.name} has no ${2 ** (lg2 + 12)}-byte leaves`);
    const step = POW512[level];
    const n = 2 ** (lg2 - 9 * level);
    const leafFrames = n * step;
    const w = this.attrs;
    let mapped = 0;
    for (let c = 0; c < count; c++) {
      const t = this.tableFor(iovaPfn, level, true);
      if (t === null) return this.mapFailed(mapped, this.lastErr);
      const idx = Math.floor(iovaPfn * INV512[level]) & ITEM_MASK;
      for (let k = 0; k < n; k++) {
        if (!this.clearSlot(t, (idx + k) * 2, level, freelist)) return this.mapFailed(mapped, 'EADDRINUSE');
      }
      f.contigLeaf(level, lg2, paPfn, attrLo, attrHi, w);
      for (let k = 0; k < n; k++) { t[(idx + k) * 2] = w.lo; t[(idx + k) * 2 + 1] = w.hi; }
      this.mm.stats.iommuLeafPtesWritten += n;
      iovaPfn += leafFrames;
      paPfn += leafFrames;
      mapped += leafFrames;
    }
    this.mappedPages = mapped;
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
    this.clearedPtes = 0;
    const end = iovaPfn + pages;
    const key = Math.floor(iovaPfn * INV512[1]);
    if (this.cacheLevel === 0 && this.cacheKey === key && end <= (key + 1) * ITEMS && pages < ITEMS) {
      // inside the cached 4 KiB-level table and not all of it (so no table is freed): the walk from
      // the root would end in this same call
      this.unmapLevel(this.cacheTable!, 0, iovaPfn, end, freelist);
    } else {
      this.unmapLevel(this.rootView, this.top, iovaPfn, end, freelist);
    }
    this.mm.stats.iommuLeafPtesCleared += this.clearedPtes;
    return this.unmappedPages;
  }

  private unmapLevel(t: Uint32Array, level: number, start: number, end: number, freelist: number[]): boolean {
    const f = this.format;
    const step = POW512[level];
    let idx = Math.floor(start * INV512[level]) & ITEM_MASK;
    let va = start;
    let first = true;
    if (level === 0) {
      // the 4 KiB level: plain leaves are cleared in a tight loop; anything else (a hole, or a
      // contiguous leaf of a contig format) is left to the general loop below
      const m = f.leaf0Mask, v = f.leaf0Value;
      const from = idx;
      const last = Math.min(ITEMS, from + (end - start));
      if (f.leaf0Any === true) {
        while (idx < last && (t[idx * 2] & m) !== 0) {
          t[idx * 2] = 0;
          t[idx * 2 + 1] = 0;
          idx++;
        }
      } else {
        while (idx < last && (t[idx * 2] & m) === v) {
          t[idx * 2] = 0;
          t[idx * 2 + 1] = 0;
          idx++;
        }
      }
      const n = idx - from;
      this.unmappedPages += n;
      this.clearedPtes += n;
      if (idx === last) return true;
      if (!f.contig) return false;
      va += n;
      first = n === 0;
    }
    while (va < end && idx < ITEMS) {
      const i = idx * 2;
      const lo = t[i], hi = t[i + 1];
      const kind = lo === 0 && hi === 0 ? PT_ENTRY_EMPTY : f.kind(level, lo, hi);
      const itemStart = Math.floor(va * INV512[level]) * step;
      if (kind === PT_ENTRY_OA) {
        const leafLg2 = f.leafLg2(level, lo, hi);
        if (leafLg2 !== 9 * level) {
          // a contiguous leaf: all its entries go together, and the range must start at its start
          const leafFrames = 2 ** leafLg2;
          if (first && Math.floor(va / leafFrames) * leafFrames !== va) return false;
          const n = leafFrames / step;
          for (let k = 0; k < n; k++) { t[i + 2 * k] = 0; t[i + 2 * k + 1] = 0; }
          this.unmappedPages += leafFrames;
          this.clearedPtes += n;
          first = false;
          va = itemStart + leafFrames;
          idx += n;
          continue;
        }
        if (first && itemStart !== va) return false;
        t[i] = 0; t[i + 1] = 0;
        this.unmappedPages += step;
        this.clearedPtes++;
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
    let l = this.top;
    if (this.cacheLevel === 0 && this.cacheKey === Math.floor(iovaPfn * INV512[1])) {
      // the cached 4 KiB-level table is the one the walk would reach
      t = this.cacheTable!;
      l = 0;
    }
    for (; l >= 0; l--) {
      const i = (Math.floor(iovaPfn * INV512[l]) & ITEM_MASK) * 2;
      const lo = t[i], hi = t[i + 1];
      const kind = lo === 0 && hi === 0 ? PT_ENTRY_EMPTY : f.kind(l, lo, hi);
      if (kind === PT_ENTRY_EMPTY) return false;
      if (kind === PT_ENTRY_TABLE) {
        t = this.view(entryOaPfn(f, lo, hi));
        if (l === 1) {
          // reached the 4 KiB-level table: remember it as tableFor does (an unmap usually follows)
          this.cacheLevel = 0;
          this.cacheKey = Math.floor(iovaPfn * INV512[1]);
          this.cacheTable = t;
        }
        continue;
      }
      return this.leafOut(l, lo, hi, iovaPfn, out);
    }
    return false;
  }

  /** Fills `out` from the leaf entry (lo, hi) at level l that translates iovaPfn (lookup's last step); returns true. */
  protected leafOut(l: number, lo: number, hi: number, iovaPfn: number, out: LeafInfo): true {
    const f = this.format;
    const leafLg2 = f.leafLg2(l, lo, hi);
    const span = POW2[leafLg2];
    const off = iovaPfn - Math.floor(iovaPfn / span) * span;
    out.physPfn = f.leafOaPfn(l, lo, hi) + off;
    out.leafIovaPfn = iovaPfn - off;
    out.leafLg2 = leafLg2;
    out.level = l;
    out.prot = f.leafProt(lo, hi);
    return true;
  }

  /**
   * The entries visited translating 4 KiB frame iovaPfn, top level first (the last is a leaf or
   * empty); tablePfn is the table page's machine pfn.
   */
  walk(iovaPfn: number): WalkStep[] {
    const f = this.format;
    const steps: WalkStep[] = [];
    let pfn = this.rootPfn;
    for (let l = this.top; l >= 0; l--) {
      const index = Math.floor(iovaPfn * this.levelInv[l]) & this.itemMask;
      const t = this.tablePieces(pfn)[index >>> 9];
      const lo = t[(index & 511) * 2], hi = t[(index & 511) * 2 + 1];
      const kind = lo === 0 && hi === 0 ? PT_ENTRY_EMPTY : f.kind(l, lo, hi);
      const pte = (BigInt(hi) << 32n) | BigInt(lo);
      steps.push({ level: l, tablePfn: BigInt(pfn), index, pte, kind: entryKindName(kind) });
      if (kind !== PT_ENTRY_TABLE) break;
      pfn = entryOaPfn(f, lo, hi) / this.tableFrames;
    }
    return steps;
  }

  /**
   * Visits every table page reachable from the root, depth first, root first: fn(pfn, level).
   * Stops (and returns true) as soon as fn returns true.
   */
  private visitTables(fn: (pfn: number, level: number) => boolean): boolean {
    const f = this.format;
    const k = this.tableFrames;
    const visit = (pfn: number, level: number): boolean => {
      if (fn(pfn, level)) return true;
      if (level === 0) return false;
      for (const t of this.tablePieces(pfn)) {
        for (let i = 0; i < ITEMS * 2; i += 2) {
          const lo = t[i], hi = t[i + 1];
          if ((lo !== 0 || hi !== 0) && f.kind(level, lo, hi) === PT_ENTRY_TABLE && visit(entryOaPfn(f, lo, hi) / k, level - 1)) return true;
        }
      }
      return false;
    };
    return visit(this.rootPfn, this.top);
  }

  /** Machine pfns of every table page reachable from the root (root first). */
  allTables(): number[] {
    const out: number[] = [];
    this.visitTables((pfn) => { out.push(pfn); return false; });
    return out;
  }

  /** The level of the table page at machine pfn `pfn`, or -1 when it is not one of this table's pages. */
  tableLevel(pfn: number): number {
    let found = -1;
    this.visitTables((p, level) => {
      if (p === pfn) found = level;
      return found >= 0;
    });
    return found;
  }

  /** Frees every table page, root included (domain free; the caller has fenced the hardware). */
  destroy(): void {
    for (const pfn of this.allTables()) this.releaseTable(pfn);
    this.cacheLevel = -1;
    this.cacheTable = null;
  }
}
