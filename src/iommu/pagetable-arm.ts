// Models: drivers/iommu/io-pgtable-arm.c (Linux 7.1): the ARM LPAE stage-1 table walk the SMMU
// drivers use (4, 16 or 64 KiB granule, 48-bit input size): arm_lpae_map_pages, __arm_lpae_map,
// arm_lpae_init_pte, arm_lpae_unmap_pages, __arm_lpae_unmap, __arm_lpae_free_pgtable,
// arm_lpae_iova_to_phys. Entries are encoded by armLpaeFormat() (formats.ts: arm_lpae_prot_to_pte,
// the table/block/page descriptors, the granule's geometry); the table pages and their views come
// from PageTable (pagetable.ts). The descent (tableFor, lookup, the walk counter) is PageTable's,
// redone here with the table's own geometry read into locals (entries per table, 4 KiB frames per
// entry at each level, machine pfn <-> 4 KiB frame of a table page), so PageTable's 4 KiB hot
// paths keep their constants. IOVAs, output addresses and sizes stay 4 KiB frame numbers (a 64 KiB
// page is 16 frames); table pages are machine pfns. What differs from the generic_pt rules of
// PageTable is what one map_pages / unmap_pages call does:
//   - a call never leaves the table its first leaf is in (arm_lpae_max_entries): the core calls again;
//   - a map over a live leaf, at the leaf's level or as a block on the way down, is EEXIST with a
//     WARN, and the call's slots are checked before any leaf is written;
//   - a leaf mapped where a table is replaces that table and everything below it, live or not;
//   - an unmap whose size is the level's block size clears leaves and frees tables (live or not),
//     stopping at the first empty slot (WARN); a smaller size that meets a leaf on the way is
//     refused (WARN_ONCE "Unmap of a partial large IOPTE is not allowed") and returns 0;
//   - tables emptied by smaller unmaps stay where they are.

import type { Errno } from '../base/index.ts';
import type { MachineMm } from '../mm/index.ts';
import { frameAddr } from './addr-num.ts';
import { entryHi, entryLo, entryOaPfn, PT_ENTRY_EMPTY, PT_ENTRY_OA, PT_ENTRY_TABLE, type PtFormat } from './formats.ts';
import { PageTable, type LeafInfo } from './pagetable.ts';
import { pgsizeGranules } from './pgsize.ts';
import './counters.ts';

const choice = { lg2: 0, count: 0 };

/** A leaf size given as log2 of 4 KiB frames, in words (16 KiB, 2 MiB, ...). */
function sizeName(lg2: number): string {
  const b = 12 + lg2;
  return b >= 30 ? `${2 ** (b - 30)} GiB` : b >= 20 ? `${2 ** (b - 20)} MiB` : `${2 ** (b - 10)} KiB`;
}


/** An ARM LPAE page table with io-pgtable-arm's map and unmap rules (see the file comment). */
export class ArmLpaePageTable extends PageTable {
  /** The pieces of the table tableFor reached last (valid while PageTable's cacheLevel is not -1). */
  private cachePieces: Uint32Array[] | null = null;

  constructor(mm: MachineMm, format: PtFormat) {
    if (format.name !== 'arm-lpae') throw new TypeError(`format must be arm-lpae, got ${format.name}`);
    super(mm, format);
  }

  /** 2^(ias - 12): the first IOVA frame beyond the input size (iova >> ias must be 0). */
  get inputLimitPfn(): number {
    return this.lowEndPfn;
  }

  /** The level whose leaves are 2^lg2 frames (a size of the format's pgsize_bitmap), or a RangeError naming `what`. */
  private leafLevel(lg2: number, what: string): number {
    const f = this.format;
    if (!f.leafLg2s.includes(lg2)) {
      throw new RangeError(`lg2 must be one of ${f.leafLg2s.join(', ')} (${f.leafLg2s.map((l) => sizeName(l)).join(', ')} ${what} of the ${f.granule}-byte granule), got ${lg2}`);
    }
    return (lg2 - f.leafLg2(0, 0, 0)) / f.bitsPerLevel;
  }

  /** The 4 KiB pieces of a table page of any granule, cached until the page is forgotten or released. */
  override tablePieces(pfn: number): Uint32Array[] {
    let p = this.pieceCache.get(pfn);
    if (p === undefined) {
      if (this.tableFrames === 1) {
        p = [this.view(pfn)];
      } else {
        p = [];
        const base = BigInt(pfn) * BigInt(this.tableBytes);
        for (let c = 0; c < this.tableFrames; c++) {
          const u8 = this.mm.mem.view(base + BigInt(c * 4096), 4096);
          if (u8.byteOffset % 4 !== 0) throw new Error(`table page view at pfn ${pfn} is not 4-byte aligned`);
          p.push(new Uint32Array(u8.buffer, u8.byteOffset, 1024));
        }
      }
      this.pieceCache.set(pfn, p);
    }
    return p;
  }

  /** A zeroed table page (one granule) from RAM, or -1 (PageTable.allocTable through the pieces). */
  protected override allocTable(): number {
    const r = this.mm.allocKernelPages(0, 'iommu-pt');
    if (!r.ok) return -1;
    const pfn = Number(r.value);
    for (const piece of this.tablePieces(pfn)) piece.fill(0);
    this.tablePages++;
    this.mm.stats.iommuTablePagesAllocated++;
    return pfn;
  }

  override releaseTable(pfn: number): void {
    this.pieceCache.delete(pfn);
    super.releaseTable(pfn);
  }

  protected override forgetTable(pfn: number): void {
    this.pieceCache.delete(pfn);
    this.cachePieces = null;
    super.forgetTable(pfn);
  }

  override destroy(): void {
    super.destroy();
    this.cachePieces = null;
  }

  /**
   * PageTable.tableFor with this table's geometry: the pieces of the table at `level` holding the
   * entry of iovaPfn (a table entry holds the child's 4 KiB frame; tables are allocated on the way
   * when `alloc`). null with lastErr as tableFor.
   */
  private armTableFor(iovaPfn: number, level: number, alloc: boolean): Uint32Array[] | null {
    if (alloc) this.countWalk(iovaPfn, level);
    const inv = this.levelInv, mask = this.itemMask, k = this.tableFrames;
    const key = Math.floor(iovaPfn * inv[level + 1]);
    if (this.cacheLevel === level && this.cacheKey === key && this.cachePieces !== null) return this.cachePieces;
    const f = this.format;
    let p = this.tablePieces(this.rootPfn);
    for (let l = this.top; l > level; l--) {
      const e = Math.floor(iovaPfn * inv[l]) & mask;
      const t = p[e >>> 9], i = (e & 511) * 2;
      const lo = t[i], hi = t[i + 1];
      const kind = lo === 0 && hi === 0 ? PT_ENTRY_EMPTY : f.kind(l, lo, hi);
      if (kind === PT_ENTRY_TABLE) {
        p = this.tablePieces(entryOaPfn(f, lo, hi) / k);
      } else if (kind === PT_ENTRY_OA) {
        this.lastErr = 'EADDRINUSE';
        return null;
      } else {
        if (!alloc) { this.lastErr = 'ENOENT'; return null; }
        const pfn = this.allocTable();
        if (pfn < 0) { this.lastErr = 'ENOMEM'; return null; }
        f.tableAttrs(l, this.attrs);
        t[i] = entryLo(this.attrs.lo, pfn * k);
        t[i + 1] = entryHi(this.attrs.hi, pfn * k);
        p = this.tablePieces(pfn);
      }
    }
    this.cacheLevel = level;
    this.cacheKey = key;
    this.cachePieces = p;
    // a 4 KiB granule's table is also PageTable's cached view: mapRunCached writes short runs into it
    this.cacheTable = p.length === 1 ? p[0] : null;
    return p;
  }

  /** PageTable.lookup with this table's geometry (arm_lpae_iova_to_phys's walk; iovaPfn below the input size). */
  override lookup(iovaPfn: number, out: LeafInfo): boolean {
    const f = this.format;
    const inv = this.levelInv, mask = this.itemMask, k = this.tableFrames;
    let p = this.tablePieces(this.rootPfn);
    let l = this.top;
    if (this.cacheLevel === 0 && this.cacheKey === Math.floor(iovaPfn * inv[1]) && this.cachePieces !== null) {
      // the cached page-level table is the one the walk would reach
      p = this.cachePieces;
      l = 0;
    }
    for (; l >= 0; l--) {
      const e = Math.floor(iovaPfn * inv[l]) & mask;
      const t = p[e >>> 9], i = (e & 511) * 2;
      const lo = t[i], hi = t[i + 1];
      const kind = lo === 0 && hi === 0 ? PT_ENTRY_EMPTY : f.kind(l, lo, hi);
      if (kind === PT_ENTRY_EMPTY) return false;
      if (kind === PT_ENTRY_TABLE) {
        p = this.tablePieces(entryOaPfn(f, lo, hi) / k);
        if (l === 1) {
          // reached the page-level table: remember it as armTableFor does (an unmap usually follows)
          this.cacheLevel = 0;
          this.cacheKey = Math.floor(iovaPfn * inv[1]);
          this.cachePieces = p;
          this.cacheTable = p.length === 1 ? p[0] : null;
        }
        continue;
      }
      return this.leafOut(l, lo, hi, iovaPfn, out);
    }
    return false;
  }

  /**
   * One map_pages call (__arm_lpae_map): up to `count` leaves of 2^lg2 frames from iovaPfn, but
   * never past the end of the table holding the first one. Returns null (mappedPages: frames
   * mapped), EEXIST (a live leaf in the way, WARN; nothing written) or ENOMEM (no page for a table;
   * tables installed on the way stay). Tables a new leaf replaces are unlinked onto `freelist`
   * (children before parents), for the caller to flush from the IOTLB and free.
   */
  override mapLeaves(iovaPfn: number, paPfn: number, count: number, lg2: number, prot: number, freelist: number[]): Errno | null {
    const f = this.format;
    const level = this.leafLevel(lg2, 'leaves');
    const step = 2 ** lg2;
    this.mappedPages = 0;
    this.startWalk();
    this.useLeafAttrs(level, prot);
    const p = this.armTableFor(iovaPfn, level, true);
    if (p === null) {
      if (this.lastErr === 'EADDRINUSE') return this.mapOverLeaf(iovaPfn, 'a block on the way down');
      return this.lastErr;
    }
    const idx = Math.floor(iovaPfn * this.levelInv[level]) & this.itemMask;
    const n = Math.min(count, this.tableItems - idx);
    // arm_lpae_init_pte: every slot of the call is looked at before a leaf is written
    for (let k = 0; k < n; k++) {
      const e = idx + k;
      const t = p[e >>> 9], i = (e & 511) * 2;
      const lo = t[i], hi = t[i + 1];
      if (lo === 0 && hi === 0) continue;
      const kind = f.kind(level, lo, hi);
      if (kind === PT_ENTRY_OA) return this.mapOverLeaf(iovaPfn + k * step, 'a live leaf');
      if (kind === PT_ENTRY_TABLE) {
        // a leaf where a table is: the table and everything below it go (__arm_lpae_unmap of one block)
        t[i] = 0;
        t[i + 1] = 0;
        this.collectTree(entryOaPfn(f, lo, hi) / this.tableFrames, level - 1, freelist);
      }
    }
    const attrLo = this.attrLo, attrHi = this.attrHi;
    for (let k = 0; k < n; k++) {
      const e = idx + k;
      const t = p[e >>> 9], i = (e & 511) * 2;
      // the output address's 4 KiB frame in bits 12..47 (ARM_LPAE_PTE_ADDR_MASK; paddr_to_iopte)
      t[i] = attrLo | ((paPfn & 0xfffff) << 12);
      t[i + 1] = attrHi | Math.floor(paPfn / 1048576);
      paPfn += step;
    }
    this.mm.stats.iommuLeafPtesWritten += n;
    this.mappedPages = n * step;
    return null;
  }

  /** The WARN and EEXIST of a map that meets a live leaf ("We require an unmap first"). */
  private mapOverLeaf(iovaPfn: number, what: string): Errno {
    this.mm.events.warn('io-pgtable-arm', `map over ${what} at iova ${frameAddr(iovaPfn)}: EEXIST (an unmap is required first)`);
    this.lastErr = 'EEXIST';
    return 'EEXIST';
  }

  /**
   * Pushes onto `out` every table page of the subtree rooted at table pfn (which sits at `level`),
   * children first, whatever the tables hold (__arm_lpae_free_pgtable), and forgets their views.
   */
  private collectTree(pfn: number, level: number, out: number[]): void {
    if (level > 0) {
      const f = this.format;
      for (const t of this.tablePieces(pfn)) {
        for (let i = 0; i < t.length; i += 2) {
          const lo = t[i], hi = t[i + 1];
          if ((lo !== 0 || hi !== 0) && f.kind(level, lo, hi) === PT_ENTRY_TABLE) this.collectTree(entryOaPfn(f, lo, hi) / this.tableFrames, level - 1, out);
        }
      }
    }
    this.forgetTable(pfn);
    out.push(pfn);
  }

  /**
   * One unmap_pages call (arm_lpae_unmap_pages, __arm_lpae_unmap) of `count` blocks of 2^lg2
   * frames at iovaPfn: returns the frames unmapped. Walks down to the level of that block size:
   * an empty slot on the way is 0 with a WARN; a leaf on the way (the size is smaller than it) is 0
   * with the WARN_ONCE "Unmap of a partial large IOPTE is not allowed". At the level, slots are
   * cleared up to the end of the table or the first empty one (WARN); a slot holding a table frees
   * that table and everything below it onto `freed` (the caller flushes the walk from the IOTLB and
   * gives the pages back at once, as the kernel does). An IOVA beyond the input size is 0 with a WARN.
   */
  unmapPages(iovaPfn: number, lg2: number, count: number, freed: number[]): number {
    const f = this.format;
    const events = this.mm.events;
    this.unmappedPages = 0;
    const target = this.leafLevel(lg2, 'blocks');
    const inv = this.levelInv, mask = this.itemMask, items = this.tableItems, step = 2 ** lg2;
    if (iovaPfn >= this.lowEndPfn) {
      events.warn('io-pgtable-arm', `unmap of iova ${frameAddr(iovaPfn)} beyond the ${this.format.vaBits}-bit input size`);
      return 0;
    }
    let p = this.tablePieces(this.rootPfn);
    for (let l = this.top; l >= target; l--) {
      const idx = Math.floor(iovaPfn * inv[l]) & mask;
      const t = p[idx >>> 9];
      const lo = t[(idx & 511) * 2], hi = t[(idx & 511) * 2 + 1];
      if (lo === 0 && hi === 0) {
        events.warn('io-pgtable-arm', `unmap of iova ${frameAddr(iovaPfn)}: nothing mapped there`);
        return 0;
      }
      if (l === target) {
        const n = Math.min(count, items - idx);
        let k = 0;
        let leaves = 0;
        for (; k < n; k++) {
          const e = idx + k;
          const te = p[e >>> 9], j = (e & 511) * 2;
          const elo = te[j], ehi = te[j + 1];
          if (elo === 0 && ehi === 0) {
            events.warn('io-pgtable-arm', `unmap of iova ${frameAddr(iovaPfn + k * step)}: nothing mapped there`);
            break;
          }
          if (f.kind(l, elo, ehi) === PT_ENTRY_OA) leaves++;
          else this.collectTree(entryOaPfn(f, elo, ehi) / this.tableFrames, l - 1, freed);
          te[j] = 0;
          te[j + 1] = 0;
        }
        this.mm.stats.iommuLeafPtesCleared += leaves;
        this.unmappedPages = k * step;
        return this.unmappedPages;
      }
      if (f.kind(l, lo, hi) === PT_ENTRY_OA) {
        events.warnOnce('arm_lpae_unmap:partial', 'io-pgtable-arm', 'Unmap of a partial large IOPTE is not allowed', { iova: frameAddr(iovaPfn) });
        return 0;
      }
      p = this.tablePieces(entryOaPfn(f, lo, hi) / this.tableFrames);
    }
    return 0;
  }

  /**
   * The generic entry point, for callers that hand a frame range instead of (pgsize, count): the
   * __iommu_unmap loop over unmapPages (iommu_pgsize batches, stopping at the first call that
   * unmaps nothing), freed tables onto `freelist`. The IOMMU core uses unmapPages directly.
   */
  override unmapRange(iovaPfn: number, pages: number, freelist: number[]): number {
    let done = 0;
    while (done < pages) {
      if (!pgsizeGranules(this.format.leafLg2s, iovaPfn + done, iovaPfn + done, pages - done, choice)) break;
      const n = this.unmapPages(iovaPfn + done, choice.lg2, choice.count, freelist);
      if (n === 0) break;
      done += n;
    }
    this.unmappedPages = done;
    return done;
  }
}
