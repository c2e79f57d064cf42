// Inspection of a domain's page tables for tests, reports and the visualizer: raw bytes of a table
// page and its decoded entries, and the entries a translation walks through.

import { checkAddr } from '../base/index.ts';
import type { IommuDomain } from './domain.ts';
import { entryOaPfn, PT_ENTRY_OA } from './formats.ts';
import { entryKindName, type WalkStep } from './pagetable.ts';

/** One non-zero entry of a table page, decoded. */
export interface PteInfo {
  readonly index: number;
  /** The 8-byte entry as the hardware reads it (little-endian u64). */
  readonly raw: bigint;
  readonly kind: 'empty' | 'table' | 'leaf';
  /** Output address: the next table's or the leaf's physical address. */
  readonly oa: bigint;
  /** IOMMU prot bits of a leaf (0 for tables). */
  readonly prot: number;
  /** The format's attribute bits in words, e.g. 'P RW U A D PS'. */
  readonly attrs: string;
}

/** A copy of one table page: its 4096 bytes and its non-zero entries decoded at `level`. */
export interface TablePageDump {
  readonly pfn: bigint;
  readonly level: number;
  readonly bytes: Uint8Array;
  readonly entries: PteInfo[];
}

/**
 * The bytes and decoded entries of table page `pfn` of domain d, read as a table of `level`
 * (default: the level at which the page is found by a search from the root).
 * @throws TypeError for a non-paging domain; RangeError when the page is not one of d's tables.
 */
export function dumpTablePage(d: IommuDomain, pfn: bigint, level?: number): TablePageDump {
  const pt = d.pt;
  if (pt === null) throw new TypeError(`domain type ${d.type} has no page table`);
  checkAddr('pfn', pfn);
  const p = Number(pfn);
  let lvl = level;
  if (lvl === undefined) {
    lvl = pt.tableLevel(p);
    if (lvl < 0) throw new RangeError(`pfn 0x${pfn.toString(16)} is not a table page of this domain`);
  }
  const f = pt.format;
  const v = pt.view(p);
  const bytes = new Uint8Array(v.buffer, v.byteOffset, 4096).slice();
  const entries: PteInfo[] = [];
  for (let i = 0; i < 512; i++) {
    const lo = v[i * 2], hi = v[i * 2 + 1];
    if (lo === 0 && hi === 0) continue;
    const k = f.kind(lvl, lo, hi);
    entries.push({
      index: i,
      raw: (BigInt(hi) << 32n) | BigInt(lo),
      kind: entryKindName(k),
      oa: BigInt(k === PT_ENTRY_OA ? f.leafOaPfn(lvl, lo, hi) : entryOaPfn(f, lo, hi)) * 4096n,
      prot: k === PT_ENTRY_OA ? f.leafProt(lo, hi) : 0,
      attrs: f.describe(lvl, lo, hi),
    });
  }
  return { pfn, level: lvl, bytes, entries };
}

/** The entries a translation of iova visits, top table first; the last one is the leaf or the hole. */
export function iommuWalk(d: IommuDomain, iova: bigint): WalkStep[] {
  const pt = d.pt;
  if (pt === null) throw new TypeError(`domain type ${d.type} has no page table`);
  checkAddr('iova', iova);
  return pt.walk(Number(iova >> 12n));
}
