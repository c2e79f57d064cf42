// Models: the per-format "format functions" of drivers/iommu/generic_pt/ (Linux 6.19; reference 7.4):
// fmt/x86_64.h (x86-64 first-stage paging, 4 or 5 levels, sign-extended VA) and, as the second
// format through the same walker, the ARM LPAE 4 KiB-granule stage-1 descriptors of
// drivers/iommu/io-pgtable-arm.c (arm_lpae_prot_to_pte, table/block/page descriptors).
// A format only encodes and decodes one 8-byte entry; the walker in pagetable.ts does the rest.
// An entry is handled as two little-endian u32 halves (lo = bits 0..31, hi = bits 32..63) so the
// hot loop never touches bigint.

import { IOMMU_CACHE, IOMMU_MMIO, IOMMU_NOEXEC, IOMMU_PRIV, IOMMU_READ, IOMMU_WRITE } from './prot.ts';

/** Names of the page-table formats the model implements. */
export type PtFormatName = 'x86-64' | 'arm-lpae';

/** Kinds of entry a walker sees (pt_entry_type). */
export const PT_ENTRY_EMPTY = 0;
export const PT_ENTRY_TABLE = 1;
export const PT_ENTRY_OA = 2;

/** Two u32 halves of one entry, as scratch output of the encoders. */
export interface EntryWords { lo: number; hi: number }

/** One page-table format: geometry plus per-entry encode/decode. Levels count from 0 (the 4 KiB level). */
export interface PtFormat {
  readonly name: PtFormatName;
  /** Number of table levels; the top table is level levels - 1. */
  readonly levels: number;
  /** Virtual-address bits the table translates (47+1 sign bit for x86-64 4-level = 48). */
  readonly vaBits: number;
  /** Addresses are sign-extended from bit vaBits - 1 (x86-64): a lower and an upper canonical half. */
  readonly signExtend: boolean;
  /** Output-address bits an entry can hold. */
  readonly oaBits: number;
  /** Leaf sizes as log2 of 4 KiB granules, ascending (0 = 4 KiB, 9 = 2 MiB, 18 = 1 GiB). */
  readonly leafLg2s: readonly number[];
  /** Attribute bits (no output address) of a leaf at `level` for IOMMU prot bits. */
  leafAttrs(level: number, prot: number, out: EntryWords): void;
  /** Attribute bits of a table (next-level pointer) entry. */
  tableAttrs(out: EntryWords): void;
  /** Classifies an entry at `level`: PT_ENTRY_EMPTY / PT_ENTRY_TABLE / PT_ENTRY_OA. */
  kind(level: number, lo: number, hi: number): number;
  /** The IOMMU prot bits a leaf grants, as the hardware would read them. */
  leafProt(lo: number, hi: number): number;
  /** Mask of the hi word's bits that belong to the output address (bits 32..oaBits-1). */
  readonly oaHiMask: number;
  /** Human description of an entry's attribute bits, e.g. 'P RW U A D PS'. */
  describe(level: number, lo: number, hi: number): string;
}

/** Output address (as a 4 KiB frame number) stored in bits 12..oaBits-1 of an entry. */
export function entryOaPfn(f: PtFormat, lo: number, hi: number): number {
  return (lo >>> 12) + (hi & f.oaHiMask) * 1048576;
}

/** Low word of an entry for attribute bits `attrLo` and output frame `pfn`. */
export function entryLo(attrLo: number, pfn: number): number {
  return (attrLo | ((pfn % 1048576) << 12)) >>> 0;
}

/** High word of an entry for attribute bits `attrHi` and output frame `pfn`. */
export function entryHi(attrHi: number, pfn: number): number {
  return (attrHi | Math.floor(pfn / 1048576)) >>> 0;
}

// ---- x86-64 (fmt/x86_64.h): P bit 0, RW 1, U/S 2, PWT 3, PCD 4, A 5, D 6, PS 7 (PDE/PDPTE), XD 63

export const X86_64_P = 1 << 0;
export const X86_64_RW = 1 << 1;
export const X86_64_U = 1 << 2;
export const X86_64_PWT = 1 << 3;
export const X86_64_PCD = 1 << 4;
export const X86_64_A = 1 << 5;
export const X86_64_D = 1 << 6;
export const X86_64_PS = 1 << 7;
/** XD (bit 63) in the hi word. */
export const X86_64_XD_HI = 0x80000000;

/**
 * x86-64 first-stage paging with 4 (48-bit VA) or 5 (57-bit VA) levels, sign-extended.
 * Leaves: 4 KiB at level 0, 2 MiB (PS) at level 1, 1 GiB (PS) at level 2. Leaf bits as
 * x86_64_pt_iommu_set_prot: U|A always, RW|D for IOMMU_WRITE; read is implied by P.
 */
export function x86_64Format(levels: 4 | 5): PtFormat {
  return {
    name: 'x86-64',
    levels,
    vaBits: levels === 4 ? 48 : 57,
    signExtend: true,
    oaBits: 52,
    oaHiMask: 0xfffff,
    leafLg2s: [0, 9, 18],
    leafAttrs(level, prot, out) {
      let lo = X86_64_P | X86_64_U | X86_64_A;
      if (prot & IOMMU_WRITE) lo |= X86_64_RW | X86_64_D;
      if (level !== 0) lo |= X86_64_PS;
      out.lo = lo;
      out.hi = 0;
    },
    tableAttrs(out) {
      out.lo = X86_64_P | X86_64_RW | X86_64_U | X86_64_A;
      out.hi = 0;
    },
    kind(level, lo) {
      if (!(lo & X86_64_P)) return PT_ENTRY_EMPTY;
      if (level === 0 || (level <= 2 && (lo & X86_64_PS))) return PT_ENTRY_OA;
      return PT_ENTRY_TABLE;
    },
    leafProt(lo, hi) {
      let p = IOMMU_READ;
      if (lo & X86_64_RW) p |= IOMMU_WRITE;
      if (!(lo & X86_64_U)) p |= IOMMU_PRIV;
      if (hi & X86_64_XD_HI) p |= IOMMU_NOEXEC;
      return p;
    },
    describe(level, lo, hi) {
      const names: Array<[number, string]> = [[X86_64_P, 'P'], [X86_64_RW, 'RW'], [X86_64_U, 'U'], [X86_64_PWT, 'PWT'],
        [X86_64_PCD, 'PCD'], [X86_64_A, 'A'], [X86_64_D, 'D']];
      const parts = names.filter(([b]) => lo & b).map(([, n]) => n);
      if (level > 0 && (lo & X86_64_PS)) parts.push('PS');
      if (hi & X86_64_XD_HI) parts.push('XD');
      return parts.join(' ');
    },
  };
}

// ---- ARM LPAE, 4 KiB granule, stage 1 (io-pgtable-arm.c)

export const LPAE_TYPE_MASK = 3;
export const LPAE_TYPE_BLOCK = 1;
/** Table descriptor at levels 1..3, page descriptor at level 0 (ARM's level 3). */
export const LPAE_TYPE_TABLE_OR_PAGE = 3;
export const LPAE_ATTRINDX_SHIFT = 2;
export const LPAE_MAIR_IDX_NC = 0;
export const LPAE_MAIR_IDX_CACHE = 1;
export const LPAE_MAIR_IDX_DEV = 2;
export const LPAE_AP_UNPRIV = 1 << 6;
export const LPAE_AP_RDONLY = 1 << 7;
export const LPAE_SH_OS = 2 << 8;
export const LPAE_SH_IS = 3 << 8;
export const LPAE_AF = 1 << 10;
export const LPAE_NG = 1 << 11;
/** XN = UXN|PXN, bits 53 and 54, in the hi word. */
export const LPAE_XN_HI = 3 << 21;

/**
 * ARM LPAE stage-1 with a 4 KiB granule and 48-bit input addresses: 4 levels, leaves of 4 KiB
 * (page descriptors), 2 MiB and 1 GiB (block descriptors), 48-bit output addresses. Leaf
 * attributes as arm_lpae_prot_to_pte: nG, AP[2] read-only when READ without WRITE, AP[1] unless
 * PRIV, AttrIndx DEV for MMIO / CACHE for CACHE / NC otherwise, SH inner for CACHE else outer,
 * XN for NOEXEC, AF always.
 */
export function armLpaeFormat(): PtFormat {
  return {
    name: 'arm-lpae',
    levels: 4,
    vaBits: 48,
    signExtend: false,
    oaBits: 48,
    oaHiMask: 0xffff,
    leafLg2s: [0, 9, 18],
    leafAttrs(level, prot, out) {
      let lo = LPAE_NG | LPAE_AF;
      if (!(prot & IOMMU_WRITE) && (prot & IOMMU_READ)) lo |= LPAE_AP_RDONLY;
      if (!(prot & IOMMU_PRIV)) lo |= LPAE_AP_UNPRIV;
      if (prot & IOMMU_MMIO) lo |= LPAE_MAIR_IDX_DEV << LPAE_ATTRINDX_SHIFT;
      else if (prot & IOMMU_CACHE) lo |= LPAE_MAIR_IDX_CACHE << LPAE_ATTRINDX_SHIFT;
      lo |= prot & IOMMU_CACHE ? LPAE_SH_IS : LPAE_SH_OS;
      lo |= level === 0 ? LPAE_TYPE_TABLE_OR_PAGE : LPAE_TYPE_BLOCK;
      out.lo = lo;
      out.hi = prot & IOMMU_NOEXEC ? LPAE_XN_HI : 0;
    },
    tableAttrs(out) {
      out.lo = LPAE_TYPE_TABLE_OR_PAGE;
      out.hi = 0;
    },
    kind(level, lo) {
      const t = lo & LPAE_TYPE_MASK;
      if (level === 0) return t === LPAE_TYPE_TABLE_OR_PAGE ? PT_ENTRY_OA : PT_ENTRY_EMPTY;
      if (t === LPAE_TYPE_TABLE_OR_PAGE) return PT_ENTRY_TABLE;
      if (t === LPAE_TYPE_BLOCK && level <= 2) return PT_ENTRY_OA;
      return PT_ENTRY_EMPTY;
    },
    leafProt(lo, hi) {
      let p = IOMMU_READ;
      if (!(lo & LPAE_AP_RDONLY)) p |= IOMMU_WRITE;
      if (!(lo & LPAE_AP_UNPRIV)) p |= IOMMU_PRIV;
      const idx = (lo >>> LPAE_ATTRINDX_SHIFT) & 7;
      if (idx === LPAE_MAIR_IDX_DEV) p |= IOMMU_MMIO;
      else if (idx === LPAE_MAIR_IDX_CACHE) p |= IOMMU_CACHE;
      if (hi & LPAE_XN_HI) p |= IOMMU_NOEXEC;
      return p;
    },
    describe(level, lo, hi) {
      const t = lo & LPAE_TYPE_MASK;
      const parts = [level === 0 ? (t === 3 ? 'PAGE' : 'INVALID') : t === 3 ? 'TABLE' : t === 1 ? 'BLOCK' : 'INVALID'];
      if (t === 3 && level > 0) return parts.join(' ');
      parts.push(`AttrIndx=${(lo >>> 2) & 7}`);
      if (lo & LPAE_AP_UNPRIV) parts.push('AP[1]');
      if (lo & LPAE_AP_RDONLY) parts.push('AP[2]');
      parts.push(`SH=${(lo >>> 8) & 3}`);
      if (lo & LPAE_AF) parts.push('AF');
      if (lo & LPAE_NG) parts.push('nG');
      if (hi & LPAE_XN_HI) parts.push('XN');
      return parts.join(' ');
    },
  };
}
