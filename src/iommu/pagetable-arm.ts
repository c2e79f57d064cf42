// Models: drivers/iommu/io-pgtable-arm.c (Linux 7.1): the ARM LPAE stage-1 table walk the SMMU
// drivers use (4 KiB granule, 48-bit input size): arm_lpae_map_pages, __arm_lpae_map,
// arm_lpae_init_pte, arm_lpae_unmap_pages, __arm_lpae_unmap, __arm_lpae_free_pgtable. Entries are
// encoded by armLpaeFormat() (formats.ts: arm_lpae_prot_to_pte, the table/block/page descriptors);
// the table pages, their views and the descent come from PageTable (pagetable.ts). What differs from
// the generic_pt rules of PageTable is what one map_pages / unmap_pages call does:
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
import { entryOaPfn, PT_ENTRY_OA, PT_ENTRY_TABLE, type PtFormat } from './formats.ts';
import { PageTable } from './pagetable.ts';
import { pgsizeGranules } from './pgsize.ts';
import './counters.ts';

const ITEMS = 512;
const ITEM_MASK = ITEMS - 1;
/** Frames covered by one entry at each level. */
const POW512 = [1, 512, 262144, 134217728];
const INV512 = POW512.map((p) => 1 / p);
/** The leaf sizes of the SMMU's 4 KiB-granule pgsize_bitmap (4 KiB, 2 MiB, 1 GiB) in log2 frames. */
const LEAF_LG2S: readonly number[] = [0, 9, 18];
const choice = { lg2: 0, count: 0 };

/** The IOVA of a frame number, as hex text for messages. */
function hexFrame(pfn: number): string {
  return `0x${(BigInt(pfn) << 12n).toString(16)}`;
}

/** An ARM LPAE page table with io-pgtable-arm's map and unmap rules (see the file comment). */
export class ArmLpaePageTable extends PageTable {
  constructor(mm: MachineMm, format: PtFormat) {
    if (format.name !== 'arm-lpae') throw new TypeError(`format must be arm-lpae, got ${format.name}`);
    super(mm, format);
  }

  /** 2^(ias - 12): the first IOVA frame beyond the input size (iova >> ias must be 0). */
  get inputLimitPfn(): number {
    return this.lowEndPfn;
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
    const level = lg2 / 9;
    if (!LEAF_LG2S.includes(lg2)) throw new RangeError(`lg2 must be 0, 9 or 18 (4 KiB, 2 MiB, 1 GiB leaves), got ${lg2}`);
    this.mappedPages = 0;
    this.startWalk();
    this.useLeafAttrs(level, prot);
    const t = this.tableFor(iovaPfn, level, true);
    if (t === null) {
      if (this.lastErr === 'EADDRINUSE') return this.mapOverLeaf(iovaPfn, 'a block on the way down');
      return this.lastErr;
    }
    const idx = Math.floor(iovaPfn * INV512[level]) & ITEM_MASK;
    const n = Math.min(count, ITEMS - idx);
    // arm_lpae_init_pte: every slot of the call is looked at before a leaf is written
    for (let k = 0; k < n; k++) {
      const i = (idx + k) * 2;
      const lo = t[i], hi = t[i + 1];
      if (lo === 0 && hi === 0) continue;
      const kind = f.kind(level, lo, hi);
      if (kind === PT_ENTRY_OA) return this.mapOverLeaf(iovaPfn + k * POW512[level], 'a live leaf');
      if (kind === PT_ENTRY_TABLE) {
        // a leaf where a table is: the table and everything below it go (__arm_lpae_unmap of one block)
        t[i] = 0;
        t[i + 1] = 0;
        this.collectTree(entryOaPfn(f, lo, hi), level - 1, freelist);
      }
    }
    const step = POW512[level];
    const attrLo = this.attrLo, attrHi = this.attrHi;
    for (let k = 0; k < n; k++) {
      const i = (idx + k) * 2;
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
    this.mm.events.warn('io-pgtable-arm', `map over ${what} at iova ${hexFrame(iovaPfn)}: EEXIST (an unmap is required first)`);
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
      const t = this.view(pfn);
      for (let i = 0; i < ITEMS * 2; i += 2) {
        const lo = t[i], hi = t[i + 1];
        if ((lo !== 0 || hi !== 0) && f.kind(level, lo, hi) === PT_ENTRY_TABLE) this.collectTree(entryOaPfn(f, lo, hi), level - 1, out);
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
    if (!LEAF_LG2S.includes(lg2)) throw new RangeError(`lg2 must be 0, 9 or 18 (4 KiB, 2 MiB, 1 GiB blocks), got ${lg2}`);
    if (iovaPfn >= this.lowEndPfn) {
      events.warn('io-pgtable-arm', `unmap of iova ${hexFrame(iovaPfn)} beyond the ${this.format.vaBits}-bit input size`);
      return 0;
    }
    const target = lg2 / 9;
    let t = this.rootView;
    for (let l = this.top; l >= target; l--) {
      const idx = Math.floor(iovaPfn * INV512[l]) & ITEM_MASK;
      const lo = t[idx * 2], hi = t[idx * 2 + 1];
      if (lo === 0 && hi === 0) {
        events.warn('io-pgtable-arm', `unmap of iova ${hexFrame(iovaPfn)}: nothing mapped there`);
        return 0;
      }
      if (l === target) {
        const n = Math.min(count, ITEMS - idx);
        let k = 0;
        let leaves = 0;
        for (; k < n; k++) {
          const j = (idx + k) * 2;
          const elo = t[j], ehi = t[j + 1];
          if (elo === 0 && ehi === 0) {
            events.warn('io-pgtable-arm', `unmap of iova ${hexFrame(iovaPfn + k * POW512[l])}: nothing mapped there`);
            break;
          }
          if (f.kind(l, elo, ehi) === PT_ENTRY_OA) leaves++;
          else this.collectTree(entryOaPfn(f, elo, ehi), l - 1, freed);
          t[j] = 0;
          t[j + 1] = 0;
        }
        this.mm.stats.iommuLeafPtesCleared += leaves;
        this.unmappedPages = k * POW512[l];
        return this.unmappedPages;
      }
      if (f.kind(l, lo, hi) === PT_ENTRY_OA) {
        events.warnOnce('arm_lpae_unmap:partial', 'io-pgtable-arm', 'Unmap of a partial large IOPTE is not allowed', { iova: hexFrame(iovaPfn) });
        return 0;
      }
      t = this.view(entryOaPfn(f, lo, hi));
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
      pgsizeGranules(LEAF_LG2S, iovaPfn + done, iovaPfn + done, pages - done, choice);
      const n = this.unmapPages(iovaPfn + done, choice.lg2, choice.count, freelist);
      if (n === 0) break;
      done += n;
    }
    this.unmappedPages = done;
    return done;
  }
}
