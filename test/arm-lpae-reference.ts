// A brute-force reference of drivers/iommu/io-pgtable-arm.c for the ARM LPAE property test, written
// from the kernel's rules and independent of src/iommu: the table is a tree of JS objects (ARM level
// numbering: 0 = top table, 3 = 4 KiB pages), addresses are bigints, and leaf descriptors are encoded
// from scratch (arm_lpae_prot_to_pte, stage 1, no quirks). It emulates the iommu core loops too
// (iommu_pgsize, __iommu_map_domain_pgtbl + the unwind of iommu_map_nosync, __iommu_unmap_domain_pgtbl)
// and counts the map_pages / unmap_pages calls and the WARNs the kernel would print.

export const R = 1, W = 2, CACHE = 4, NOEXEC = 8, MMIO = 16, PRIV = 32;

/** 4 KiB | 2 MiB | 1 GiB: the SMMU pgsize_bitmap for a 4 KiB granule. */
const PGSIZE_BITMAP = (1n << 12n) | (1n << 21n) | (1n << 30n);
const IAS = 48n;
const OAS = 48n;
const ADDR_MASK = ((1n << 48n) - 1n) & ~0xfffn;

export type RefEntry = { table: RefTable } | { leaf: { pa: bigint; prot: number } };
export interface RefTable { entries: Map<number, RefEntry> }

function blockSize(lvl: number): bigint {
  return 1n << BigInt(12 + 9 * (3 - lvl));
}
function lvlIdx(iova: bigint, lvl: number): number {
  return Number((iova >> BigInt(12 + 9 * (3 - lvl))) & 511n);
}
function fls(x: bigint): number {
  return x.toString(2).length - 1;
}
function ffs(x: bigint): number {
  return fls(x & -x);
}

/** iommu_pgsize (drivers/iommu/iommu.c) on bigints. */
export function refPgsize(iova: bigint, pa: bigint, size: bigint): { pgsize: bigint; count: bigint } {
  const merge = iova | pa;
  let pgsizes = PGSIZE_BITMAP & ((2n << BigInt(fls(size))) - 1n);
  if (merge !== 0n) pgsizes &= (2n << BigInt(ffs(merge))) - 1n;
  if (pgsizes === 0n) throw new Error('no page size');
  const idx = fls(pgsizes);
  let sz = size;
  const bigger = PGSIZE_BITMAP & ~((2n << BigInt(idx)) - 1n);
  if (bigger !== 0n) {
    const next = 1n << BigInt(ffs(bigger));
    if (((iova ^ pa) & (next - 1n)) === 0n) {
      const offset = next - (merge & (next - 1n));
      if (offset + next <= sz) sz = offset;
    }
  }
  return { pgsize: 1n << BigInt(idx), count: sz >> BigInt(idx) };
}

/** arm_lpae_prot_to_pte for a stage-1 table plus the descriptor type and the output address. */
export function refLeafPte(pa: bigint, prot: number, lvl: number): bigint {
  let pte = 1n << 11n; // nG
  if (!(prot & W) && (prot & R)) pte |= 1n << 7n; // AP[2] read-only
  if (!(prot & PRIV)) pte |= 1n << 6n; // AP[1] unprivileged
  if (prot & MMIO) pte |= 2n << 2n; // AttrIndx: device
  else if (prot & CACHE) pte |= 1n << 2n; // AttrIndx: cacheable
  pte |= prot & CACHE ? 3n << 8n : 2n << 8n; // inner / outer shareable
  if (prot & NOEXEC) pte |= 3n << 53n; // UXN | PXN
  pte |= 1n << 10n; // AF
  pte |= lvl === 3 ? 3n : 1n; // page or block descriptor
  return pte | (pa & ADDR_MASK);
}

export class RefLpae {
  readonly root: RefTable = { entries: new Map() };
  mapPagesCalls = 0;
  unmapPagesCalls = 0;
  warns = 0;
  /** Leaf descriptors written by map calls, and cleared (zeroed in place) by unmap calls. */
  leavesWritten = 0;
  leavesCleared = 0;
  private partialWarned = false;

  /** Number of table pages, root included. */
  tables(): number {
    const count = (t: RefTable): number => {
      let n = 1;
      for (const e of t.entries.values()) if ('table' in e) n += count(e.table);
      return n;
    };
    return count(this.root);
  }

  /** What iova translates to (arm_lpae_iova_to_phys), 0n when nothing maps it. */
  lookup(iova: bigint): bigint {
    if (iova >> IAS !== 0n) return 0n;
    let t = this.root;
    for (let lvl = 0; lvl < 4; lvl++) {
      const e = t.entries.get(lvlIdx(iova, lvl));
      if (e === undefined) return 0n;
      if ('leaf' in e) return e.leaf.pa + (iova & (blockSize(lvl) - 1n));
      t = e.table;
    }
    return 0n;
  }

  /** iommu_map (nosync + the unwind on failure): 'ok' or the errno. */
  map(iova: bigint, pa: bigint, size: bigint, prot: number): string {
    const iova0 = iova;
    let mapped = 0n;
    let ret = 'ok';
    while (size > 0n) {
      const { pgsize, count } = refPgsize(iova, pa, size);
      this.mapPagesCalls++;
      const out = { mapped: 0n };
      ret = this.mapPages(iova, pa, pgsize, count, prot, out);
      mapped += out.mapped;
      if (ret !== 'ok') break;
      size -= out.mapped;
      iova += out.mapped;
      pa += out.mapped;
    }
    if (ret !== 'ok' && mapped > 0n) this.unmap(iova0, mapped);
    return ret;
  }

  /** arm_lpae_map_pages. */
  private mapPages(iova: bigint, pa: bigint, pgsize: bigint, count: bigint, prot: number, out: { mapped: bigint }): string {
    if (iova >> IAS !== 0n || pa >> OAS !== 0n) { this.warns++; return 'ERANGE'; }
    if (!(prot & (R | W))) return 'EINVAL';
    return this.lpaeMap(this.root, 0, iova, pa, pgsize, count, prot, out);
  }

  /** __arm_lpae_map and arm_lpae_init_pte. */
  private lpaeMap(t: RefTable, lvl: number, iova: bigint, pa: bigint, size: bigint, count: bigint, prot: number,
    out: { mapped: bigint }): string {
    const idx = lvlIdx(iova, lvl);
    if (size === blockSize(lvl)) {
      const n = Math.min(Number(count), 512 - idx);
      for (let i = 0; i < n; i++) {
        const e = t.entries.get(idx + i);
        if (e === undefined) continue;
        if ('leaf' in e) { this.warns++; return 'EEXIST'; }
        t.entries.delete(idx + i); // the table and all below it are freed
      }
      for (let i = 0; i < n; i++) t.entries.set(idx + i, { leaf: { pa: pa + BigInt(i) * size, prot } });
      this.leavesWritten += n;
      out.mapped += BigInt(n) * size;
      return 'ok';
    }
    let e = t.entries.get(idx);
    if (e === undefined) {
      e = { table: { entries: new Map() } };
      t.entries.set(idx, e);
    } else if ('leaf' in e) {
      this.warns++;
      return 'EEXIST';
    }
    return this.lpaeMap(e.table, lvl + 1, iova, pa, size, count, prot, out);
  }

  /** iommu_unmap: the bytes unmapped. */
  unmap(iova: bigint, size: bigint): bigint {
    let unmapped = 0n;
    while (unmapped < size) {
      const { pgsize, count } = refPgsize(iova, iova, size - unmapped);
      this.unmapPagesCalls++;
      const n = iova >> IAS !== 0n ? (this.warns++, 0n) : this.lpaeUnmap(this.root, 0, iova, pgsize, count);
      if (n === 0n) break;
      iova += n;
      unmapped += n;
    }
    return unmapped;
  }

  /** __arm_lpae_unmap. */
  private lpaeUnmap(t: RefTable, lvl: number, iova: bigint, size: bigint, count: bigint): bigint {
    const idx = lvlIdx(iova, lvl);
    const e = t.entries.get(idx);
    if (e === undefined) { this.warns++; return 0n; }
    if (size === blockSize(lvl)) {
      const n = Math.min(Number(count), 512 - idx);
      let i = 0;
      for (; i < n; i++) {
        const x = t.entries.get(idx + i);
        if (x === undefined) { this.warns++; break; }
        if ('leaf' in x) this.leavesCleared++;
        t.entries.delete(idx + i);
      }
      return BigInt(i) * size;
    }
    if ('leaf' in e) {
      if (!this.partialWarned) { this.partialWarned = true; this.warns++; }
      return 0n;
    }
    return this.lpaeUnmap(e.table, lvl + 1, iova, size, count);
  }
}

/**
 * Compares the table page at physical frame `pfn` (read as little-endian u64s through `read`) with
 * the reference table `t` at ARM level `lvl`: leaves word for word, table descriptors by their
 * attribute bits (type 3, nothing else outside the address) and then the table they point to.
 * Returns the first difference as text, or null.
 */
export function diffTables(read: (pfn: bigint) => Uint8Array, pfn: bigint, t: RefTable, lvl: number, iovaBase = 0n): string | null {
  const bytes = read(pfn);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, 4096);
  for (let i = 0; i < 512; i++) {
    const word = dv.getBigUint64(i * 8, true);
    const e = t.entries.get(i);
    const at = `level ${lvl} index ${i} (iova 0x${(iovaBase + BigInt(i) * blockSize(lvl)).toString(16)})`;
    if (e === undefined) {
      if (word !== 0n) return `${at}: model 0x${word.toString(16)}, reference empty`;
    } else if ('leaf' in e) {
      const want = refLeafPte(e.leaf.pa, e.leaf.prot, lvl);
      if (word !== want) return `${at}: model 0x${word.toString(16)}, reference leaf 0x${want.toString(16)}`;
    } else {
      if (lvl === 3 || (word & ~ADDR_MASK) !== 3n) return `${at}: model 0x${word.toString(16)}, reference a table descriptor`;
      const sub = diffTables(read, (word & ADDR_MASK) >> 12n, e.table, lvl + 1, iovaBase + BigInt(i) * blockSize(lvl));
      if (sub !== null) return sub;
    }
  }
  return null;
}
