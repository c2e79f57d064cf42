// Inspection of a domain's page tables for tests, reports and the visualizer: raw bytes of a table
// page and its decoded entries, and the entries a translation walks through. A table page is named
// by its machine pfn and is one granule long (4 KiB, or an ARM LPAE domain's 16 / 64 KiB).

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

/** A copy of one table page: its bytes (one granule) and its non-zero entries decoded at `level`. */
export interface TablePageDump {
  readonly pfn: bigint;
  readonly level: number;
  readonly bytes: Uint8Array;
  readonly entries: PteInfo[];
}

/**
 * The bytes and decoded entries of table page `pfn` of domain d, read as a table of `level`
 * (default: the level at which the page is found by a search from the root).
 * @throws TypeError for a non-paging domain; RangeError when the page is not one of d's tables
 *   (with or without `level`).
 */
export function dumpTablePage(d: IommuDomain, pfn: bigint, level?: number): TablePageDump {
  const pt = d.pt;
  if (pt === null) throw new TypeError(`domain type ${d.type} has no page table`);
  checkAddr('pfn', pfn);
  const p = Number(pfn);
  // only a table page is read: the table's views of a page are cached until the table frees it
  const found = pt.tableLevel(p);
  if (found < 0) throw new RangeError(`pfn 0x${pfn.toString(16)} is not a table page of this domain`);
  const lvl = level ?? found;
  const f = pt.format;
  // the page's 4 KiB pieces, copied one after the other (one piece for a 4 KiB granule)
  const pieces = pt.tablePieces(p);
  const v = new Uint32Array(pieces.length * 1024);
  pieces.forEach((piece, k) => v.set(piece, k * 1024));
  const bytes = new Uint8Array(v.buffer);
  const entries: PteInfo[] = [];
  for (let i = 0; i < v.length / 2; i++) {
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

/** One entry a translation visits, decoded (iommuWalkInfo). */
export interface WalkStepInfo extends WalkStep {
  /** Physical address of the table page holding the entry. */
  readonly tablePhys: bigint;
  /** The entry's 8 bytes as they sit in the table page (little-endian). */
  readonly entryBytes: Uint8Array;
  /** Output address: the next table's physical address, or the leaf's first byte (0n for an empty entry). */
  readonly oa: bigint;
  /** Bytes the leaf maps (0 for a table or an empty entry). */
  readonly leafBytes: number;
  /** First IOVA the leaf maps (the IOVA rounded down to leafBytes; 0n unless a leaf). */
  readonly leafIova: bigint;
  /** IOMMU prot bits of a leaf (0 otherwise). */
  readonly prot: number;
  /** The format's attribute bits in words, e.g. 'P RW U A D PS' ('' for an empty entry). */
  readonly attrs: string;
}

/**
 * iommuWalk with every visited entry decoded: the table page's physical address, the entry's
 * bytes, its output address and, for the leaf, its size and prot. Read-only: no counter moves and
 * the IOTLB is not consulted or filled.
 * @throws TypeError for a non-paging domain.
 */
export function iommuWalkInfo(d: IommuDomain, iova: bigint): WalkStepInfo[] {
  const pt = d.pt;
  if (pt === null) throw new TypeError(`domain type ${d.type} has no page table`);
  checkAddr('iova', iova);
  const f = pt.format;
  const pageSize = BigInt(d.iommu.mm.pageSize);
  return pt.walk(Number(iova >> 12n)).map((s) => {
    const lo = Number(s.pte & 0xffffffffn), hi = Number(s.pte >> 32n);
    const entryBytes = new Uint8Array(8);
    new DataView(entryBytes.buffer).setBigUint64(0, s.pte, true);
    const leaf = s.kind === 'leaf';
    const leafLg2 = leaf ? f.leafLg2(s.level, lo, hi) : 0;
    const leafBytes = leaf ? 4096 * 2 ** leafLg2 : 0;
    const oa = s.kind === 'empty' ? 0n : BigInt(leaf ? f.leafOaPfn(s.level, lo, hi) : entryOaPfn(f, lo, hi)) * 4096n;
    return {
      ...s, tablePhys: s.tablePfn * pageSize, entryBytes, oa, leafBytes,
      leafIova: leaf ? iova - (iova % BigInt(leafBytes)) : 0n,
      prot: leaf ? f.leafProt(lo, hi) : 0,
      attrs: s.kind === 'empty' ? '' : f.describe(s.level, lo, hi),
    };
  });
}

/** What the IOTLB holds for one IOVA (iotlbPeek). */
export interface IotlbPeek {
  /** First IOVA of the cached leaf. */
  readonly leafIova: bigint;
  /** Bytes the cached leaf maps. */
  readonly leafBytes: number;
  /** The physical address the cached translation gives for the IOVA itself. */
  readonly phys: bigint;
  /** IOMMU prot bits of the cached translation. */
  readonly prot: number;
}

/**
 * The translation domain d's IOTLB holds for iova, or null (a miss: the next access walks the
 * tables). A peek: unlike an access, it neither fills the IOTLB nor counts a hit or miss, so a
 * trace leaves the cache as it found it. A stale entry (left by a lazy unmap) is returned as it is.
 */
export function iotlbPeek(d: IommuDomain, iova: bigint): IotlbPeek | null {
  checkAddr('iova', iova);
  const iovaPfn = Number(iova >> 12n);
  const e = d.iotlb.lookup(iovaPfn);
  if (e === undefined) return null;
  const leafBytes = 4096 * 2 ** e.leafLg2;
  const leafIova = BigInt(e.leafIovaPfn) * 4096n;
  return { leafIova, leafBytes, phys: BigInt(e.physPfn) * 4096n + (iova - leafIova), prot: e.prot };
}
