// Models: the per-format "format functions" of drivers/iommu/generic_pt/ (Linux 7.1):
// fmt/x86_64.h (x86-64 first-stage paging, 4 or 5 levels, sign-extended VA), fmt/vtdss.h (Intel VT-d
// second-stage tables, 3 to 5 levels, what the Intel driver uses in legacy mode), fmt/amdv1.h (AMD
// IOMMU v1 host tables with the NextLevel=7 contiguous encoding: nearly every power-of-two leaf),
// and the ARM LPAE stage-1 descriptors of drivers/iommu/io-pgtable-arm.c with a 4, 16 or 64 KiB
// granule (arm_lpae_prot_to_pte, table/block/page descriptors, the geometry of arm_lpae_alloc_pgtable). The generic_pt formats are mapped by the
// walker in pagetable.ts; ARM LPAE by the same tables with io-pgtable-arm's rules (pagetable-arm.ts).
// A format only encodes and decodes one 8-byte entry; the walker in pagetable.ts does the rest.
// An entry is handled as two little-endian u32 halves (lo = bits 0..31, hi = bits 32..63) so the
// hot loop never touches bigint.

import { IOMMU_CACHE, IOMMU_MMIO, IOMMU_NOEXEC, IOMMU_PRIV, IOMMU_READ, IOMMU_WRITE } from './prot.ts';

/** Names of the page-table formats the model implements. */
export type PtFormatName = 'x86-64' | 'vtd-ss' | 'amd-v1' | 'arm-lpae';

/** Kinds of entry a walker sees (pt_entry_type). */
export const PT_ENTRY_EMPTY = 0;
export const PT_ENTRY_TABLE = 1;
export const PT_ENTRY_OA = 2;

/** Two u32 halves of one entry, as scratch output of the encoders. */
export interface EntryWords { lo: number; hi: number }

/**
 * One page-table format (immutable, one instance per configuration): geometry plus per-entry
 * encode/decode. Levels count from 0 (the level of the smallest leaf, the granule). Sizes and
 * addresses are in 4 KiB frames whatever the granule (a 64 KiB leaf is 16 frames).
 */
export interface PtFormat {
  readonly name: PtFormatName;
  /** Bytes of the smallest leaf and of one table page: 4096 for every format but ARM LPAE's 16 and 64 KiB granules. */
  readonly granule: number;
  /** Index bits one table level resolves: log2(granule / 8), 9 for a 4 KiB granule. */
  readonly bitsPerLevel: number;
  /** Number of table levels; the top table is level levels - 1. */
  readonly levels: number;
  /** Virtual-address bits the table translates (47+1 sign bit for x86-64 4-level = 48). */
  readonly vaBits: number;
  /** Addresses are sign-extended from bit vaBits - 1 (x86-64): a lower and an upper canonical half. */
  readonly signExtend: boolean;
  /** Output-address bits an entry can hold. */
  readonly oaBits: number;
  /** Leaf sizes as log2 of 4 KiB frames, ascending (0 = 4 KiB, 9 = 2 MiB, 18 = 1 GiB; 4 = 64 KiB). */
  readonly leafLg2s: readonly number[];
  /** Attribute bits (no output address) of a leaf at `level` for IOMMU prot bits. */
  leafAttrs(level: number, prot: number, out: EntryWords): void;
  /** Attribute bits of a table (next-level pointer) entry sitting at `level`. */
  tableAttrs(level: number, out: EntryWords): void;
  /**
   * true when a leaf may span several entries of its level (AMD v1 NextLevel=7). Leaves of
   * 2^lg2 frames then sit at level floor(lg2 / 9) and repeat over 2^(lg2 - 9 * level) entries.
   */
  readonly contig: boolean;
  /** The entry words of one slot of a contiguous leaf of 2^lg2 frames at output frame pfn (contig formats only). */
  contigLeaf(level: number, lg2: number, pfn: number, attrLo: number, attrHi: number, out: EntryWords): void;
  /** log2 (in 4 KiB frames) of the size of the leaf an OA entry at `level` belongs to. */
  leafLg2(level: number, lo: number, hi: number): number;
  /** First output frame of the leaf an OA entry belongs to. */
  leafOaPfn(level: number, lo: number, hi: number): number;
  /** Classifies an entry at `level`: PT_ENTRY_EMPTY / PT_ENTRY_TABLE / PT_ENTRY_OA. */
  kind(level: number, lo: number, hi: number): number;
  /** The IOMMU prot bits a leaf grants, as the hardware would read them. */
  leafProt(lo: number, hi: number): number;
  /** Mask of the hi word's bits that belong to the output address (bits 32..oaBits-1). */
  readonly oaHiMask: number;
  /**
   * At level 0 an entry is a leaf exactly when (lo & leaf0Mask) === leaf0Value (fast unmap path),
   * or, with leaf0Any, when (lo & leaf0Mask) !== 0 (a format without a present bit).
   */
  readonly leaf0Mask: number;
  readonly leaf0Value: number;
  readonly leaf0Any?: boolean;
  /** Human description of an entry's attribute bits, e.g. 'P RW U A D PS'. */
  describe(level: number, lo: number, hi: number): string;
}

/** Output address (as a 4 KiB frame number) stored in bits 12..oaBits-1 of an entry. */
export function entryOaPfn(f: PtFormat, lo: number, hi: number): number {
  return (lo >>> 12) + (hi & f.oaHiMask) * 1048576;
}

/** Low word of an entry for attribute bits `attrLo` and output frame `pfn`. */
export function entryLo(attrLo: number, pfn: number): number {
  return (attrLo | ((pfn & 0xfffff) << 12)) >>> 0;
}

/** High word of an entry for attribute bits `attrHi` and output frame `pfn`. */
export function entryHi(attrHi: number, pfn: number): number {
  return (attrHi | Math.floor(pfn * (1 / 1048576))) >>> 0;
}

function noContig(): never {
  throw new Error('this page-table format has no contiguous leaves');
}

/**
 * The entry decoding of a format without contiguous leaves: a leaf is the size of its level's item
 * and its output address is the entry's, in bits 12..oaBits-1.
 */
function plainLeaves(oaHiMask: number): Pick<PtFormat, 'granule' | 'bitsPerLevel' | 'oaHiMask' | 'contig' | 'contigLeaf' | 'leafLg2' | 'leafOaPfn'> {
  return {
    granule: 4096,
    bitsPerLevel: 9,
    oaHiMask,
    contig: false,
    contigLeaf: noContig,
    leafLg2: (level) => 9 * level,
    leafOaPfn: (_level, lo, hi) => (lo >>> 12) + (hi & oaHiMask) * 1048576,
  };
}

/** One frozen instance per format configuration (formats are immutable and compared by identity). */
const formatCache = new Map<string, PtFormat>();

function cachedFormat(key: string, build: () => PtFormat): PtFormat {
  let f = formatCache.get(key);
  if (f === undefined) {
    f = Object.freeze(build());
    formatCache.set(key, f);
  }
  return f;
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
  return cachedFormat(`x86-64/${levels}`, () => ({
    name: 'x86-64',
    levels,
    vaBits: levels === 4 ? 48 : 57,
    signExtend: true,
    oaBits: 52,
    ...plainLeaves(0xfffff),
    leaf0Mask: X86_64_P,
    leaf0Value: X86_64_P,
    leafLg2s: [0, 9, 18],
    leafAttrs(level, prot, out) {
      let lo = X86_64_P | X86_64_U | X86_64_A;
      if (prot & IOMMU_WRITE) lo |= X86_64_RW | X86_64_D;
      if (level !== 0) lo |= X86_64_PS;
      out.lo = lo;
      out.hi = 0;
    },
    tableAttrs(_level, out) {
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
  }));
}

// ---- Intel VT-d second stage (fmt/vtdss.h): R bit 0, W 1, PS 7 (SS-PDE / SS-PDPTE), A 8, D 9, SNP 11

export const VTDSS_R = 1 << 0;
export const VTDSS_W = 1 << 1;
export const VTDSS_PS = 1 << 7;
export const VTDSS_A = 1 << 8;
export const VTDSS_D = 1 << 9;
export const VTDSS_SNP = 1 << 11;

/**
 * Intel VT-d second-stage tables with 3 (39-bit IOVA), 4 (48-bit) or 5 (57-bit) levels, no sign
 * extension: the format drivers/iommu/intel/iommu.c: intel_iommu_domain_alloc_second_stage() gives a
 * legacy-mode (non-scalable) DMAR unit, with the top level from compute_vasz_lg2_ss() (QEMU's
 * intel-iommu with its default aw-bits=39 has 3). There is no present bit: an entry is empty when it
 * is all zero, and vtdss_pt_iommu_set_prot() refuses a mapping with neither READ nor WRITE, so every
 * leaf has R or W. Leaves: 4 KiB at level 0, 2 MiB and 1 GiB with PS at levels 1 and 2. Leaf bits: R
 * for IOMMU_READ, W for IOMMU_WRITE (A, D are the hardware's; SNP only under
 * PT_FEAT_VTDSS_FORCE_COHERENCE, which a DMA domain does not ask for). Tables: R|W and the address.
 */
export function vtdSsFormat(levels: 3 | 4 | 5): PtFormat {
  return cachedFormat(`vtd-ss/${levels}`, () => ({
    name: 'vtd-ss',
    levels,
    vaBits: 12 + 9 * levels,
    signExtend: false,
    oaBits: 52,
    ...plainLeaves(0xfffff),
    leaf0Mask: VTDSS_R | VTDSS_W,
    leaf0Value: 0,
    leaf0Any: true,
    leafLg2s: [0, 9, 18],
    leafAttrs(level, prot, out) {
      let lo = 0;
      if (prot & IOMMU_READ) lo |= VTDSS_R;
      if (prot & IOMMU_WRITE) lo |= VTDSS_W;
      if (level !== 0) lo |= VTDSS_PS;
      out.lo = lo;
      out.hi = 0;
    },
    tableAttrs(_level, out) {
      out.lo = VTDSS_R | VTDSS_W;
      out.hi = 0;
    },
    kind(level, lo, hi) {
      if (lo === 0 && hi === 0) return PT_ENTRY_EMPTY;
      if (level === 0 || (level <= 2 && (lo & VTDSS_PS))) return PT_ENTRY_OA;
      return PT_ENTRY_TABLE;
    },
    leafProt(lo) {
      return (lo & VTDSS_R ? IOMMU_READ : 0) | (lo & VTDSS_W ? IOMMU_WRITE : 0);
    },
    describe(level, lo) {
      const names: Array<[number, string]> = [[VTDSS_R, 'R'], [VTDSS_W, 'W'], [VTDSS_A, 'A'], [VTDSS_D, 'D'], [VTDSS_SNP, 'SNP']];
      const parts = names.filter(([b]) => lo & b).map(([, n]) => n);
      if (level > 0 && (lo & VTDSS_PS)) parts.push('PS');
      return parts.join(' ');
    },
  }));
}

// ---- ARM LPAE, stage 1, 4 / 16 / 64 KiB granule (io-pgtable-arm.c)

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

/** The granules of ARM LPAE stage 1 the model builds (bytes). */
export type ArmLpaeGranule = 4096 | 16384 | 65536;

/**
 * The leaf sizes io-pgtable-arm.c: arm_lpae_restrict_pgsizes() keeps for a granule with a 48-bit
 * output size, as log2 of 4 KiB frames: 4 KiB | 2 MiB | 1 GiB; 16 KiB | 32 MiB; 64 KiB | 512 MiB
 * (the 4 TiB block of the 64 KiB granule needs an output size above 48 bits).
 */
const ARM_LPAE_LEAF_LG2S: Readonly<Record<ArmLpaeGranule, readonly number[]>> = {
  4096: [0, 9, 18],
  16384: [2, 13],
  65536: [4, 17],
};

/**
 * ARM LPAE stage-1 with a 48-bit input and output size and a 4, 16 or 64 KiB granule (the SMMU
 * picks the CPU's PAGE_SIZE when it supports it: arm_lpae_restrict_pgsizes()). Geometry as
 * io-pgtable-arm.c: arm_lpae_alloc_pgtable() computes it, with s = log2(granule): each level
 * resolves s - 3 bits (a table is one granule of 8-byte entries); the 48 - s bits above the page
 * offset need ceil((48 - s) / (s - 3)) levels, the top one resolving what is left:
 *   4 KiB:  9 bits a level, 4 levels, top table of 2^9 entries;
 *   16 KiB: 11 bits a level, 4 levels (34 bits), top table of 2^1 = 2 entries;
 *   64 KiB: 13 bits a level, 3 levels (32 bits), top table of 2^6 = 64 entries.
 * Levels here count up from the page level (the kernel's ARM_LPAE_MAX_LEVELS - 1 = 3 is level 0);
 * a leaf at level L maps 2^(s + (s - 3) * L) bytes (ARM_LPAE_BLOCK_SIZE). Leaves: page descriptors
 * at level 0, block descriptors at the levels of the granule's other leaf sizes (levels 1 and 2
 * for 4 KiB, level 1 for 16 and 64 KiB: 32 MiB and 512 MiB); a block descriptor elsewhere is
 * read as invalid. The output address sits in bits [47:12] of every descriptor
 * (ARM_LPAE_PTE_ADDR_MASK); paddr_to_iopte() folds PA[51:48] into bits [15:12] for the 64 KiB
 * granule, which a 48-bit output size leaves 0, so a descriptor's address field is the 4 KiB frame
 * of its output address for every granule (the low granule bits being 0). Leaf attributes as
 * arm_lpae_prot_to_pte: nG, AP[2] read-only when READ without WRITE, AP[1] unless PRIV, AttrIndx
 * DEV for MMIO / CACHE for CACHE / NC otherwise, SH inner for CACHE else outer, XN for NOEXEC, AF
 * always.
 */
export function armLpaeFormat(granule: ArmLpaeGranule = 4096): PtFormat {
  const leafLg2s = ARM_LPAE_LEAF_LG2S[granule];
  if (leafLg2s === undefined) throw new RangeError(`granule must be 4096, 16384 or 65536, got ${String(granule)}`);
  // the 4 KiB granule keeps its original cache key: formats are compared by identity
  return cachedFormat(granule === 4096 ? 'arm-lpae' : `arm-lpae/${granule}`, () => buildArmLpae(granule, leafLg2s));
}

function buildArmLpae(granule: ArmLpaeGranule, leafLg2s: readonly number[]): PtFormat {
  const shift = Math.log2(granule);
  const bitsPerLevel = shift - 3;
  const levels = Math.ceil((48 - shift) / bitsPerLevel);
  /** log2 of the granule in 4 KiB frames: the size of a level-0 leaf. */
  const g4 = shift - 12;
  /** The highest level a block descriptor may sit at: the level of the largest leaf size. */
  const maxBlockLevel = (leafLg2s[leafLg2s.length - 1] - g4) / bitsPerLevel;
  return {
    name: 'arm-lpae',
    granule,
    bitsPerLevel,
    levels,
    vaBits: 48,
    signExtend: false,
    oaBits: 48,
    oaHiMask: 0xffff,
    contig: false,
    contigLeaf: noContig,
    leafLg2: (level) => g4 + bitsPerLevel * level,
    leafOaPfn: (_level, lo, hi) => (lo >>> 12) + (hi & 0xffff) * 1048576,
    leaf0Mask: LPAE_TYPE_MASK,
    leaf0Value: LPAE_TYPE_TABLE_OR_PAGE,
    leafLg2s,
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
    tableAttrs(_level, out) {
      out.lo = LPAE_TYPE_TABLE_OR_PAGE;
      out.hi = 0;
    },
    kind(level, lo) {
      const t = lo & LPAE_TYPE_MASK;
      if (level === 0) return t === LPAE_TYPE_TABLE_OR_PAGE ? PT_ENTRY_OA : PT_ENTRY_EMPTY;
      if (t === LPAE_TYPE_TABLE_OR_PAGE) return PT_ENTRY_TABLE;
      if (t === LPAE_TYPE_BLOCK && level <= maxBlockLevel) return PT_ENTRY_OA;
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

// ---- AMD IOMMU v1 (fmt/amdv1.h): PR bit 0, D 6, NextLevel bits 9..11, OA 12..51, FC 60, IR 61, IW 62

export const AMDV1_PR = 1 << 0;
export const AMDV1_D = 1 << 6;
export const AMDV1_NL_SHIFT = 9;
export const AMDV1_NL_MASK = 7 << 9;
/** NextLevel value of a leaf of the level's own size. */
export const AMDV1_NL_DEFAULT = 0;
/** NextLevel value of a leaf whose size is encoded in the low OA bits (contiguous leaf). */
export const AMDV1_NL_SIZE = 7;
/** FC (bit 60), IR (61), IW (62) in the hi word. */
export const AMDV1_FC_HI = 1 << 28;
export const AMDV1_IR_HI = 1 << 29;
export const AMDV1_IW_HI = 1 << 30;

/** The NextLevel field of an AMD v1 entry's low word. */
function amdNextLevel(lo: number): number {
  return (lo & AMDV1_NL_MASK) >>> AMDV1_NL_SHIFT;
}

/** Count of trailing one bits of a non-negative safe integer (ffz). */
function ffzNum(n: number): number {
  let c = 0;
  while (n % 2 === 1) { n = (n - 1) / 2; c++; }
  return c;
}

/**
 * AMD IOMMU v1 host page table with a fixed top (levels 4: 48-bit VA, mode 4; 5: 57-bit VA).
 * Leaves of every power of two from 4 KiB except 512 GiB: a leaf the size of its level's item has
 * NextLevel 0; a bigger one repeats over 2^k entries of that level with NextLevel 7 and its size
 * encoded as a run of ones in the low OA bits (amdv1pt_install_leaf_entry). IR/IW give read/write.
 * Every leaf has FC (force coherent, bit 60): amdv1pt_iommu_set_prot sets it under
 * PT_FEAT_AMDV1_FORCE_COHERENCE, which drivers/iommu/amd/iommu.c turns on for every v1 domain.
 * Table entries carry NextLevel = their level, IR and IW (no FC).
 * Model deviation: no PT_FEAT_DYNAMIC_TOP (the top level is fixed by `levels`) and no memory
 * encryption (the C-bit __sme_set adds under PT_FEAT_AMDV1_ENCRYPT_TABLES when SME is active).
 */
export function amdV1Format(levels: 4 | 5): PtFormat {
  return cachedFormat(`amd-v1/${levels}`, () => buildAmdV1(levels));
}

function buildAmdV1(levels: 4 | 5): PtFormat {
  const top = levels - 1;
  const lg2s: number[] = [];
  // possible sizes per level: item size up to 256 items; 512 GiB (2^27 frames) excluded
  for (let l = 0; l <= top; l++) for (let k = 0; k <= 8; k++) if (9 * l + k !== 27 && 9 * l + k + 12 <= 51) lg2s.push(9 * l + k);
  const f: PtFormat = {
    name: 'amd-v1',
    levels,
    vaBits: 12 + 9 * levels,
    signExtend: false,
    oaBits: 52,
    granule: 4096,
    bitsPerLevel: 9,
    oaHiMask: 0xfffff,
    leaf0Mask: AMDV1_PR | AMDV1_NL_MASK,
    leaf0Value: AMDV1_PR,
    leafLg2s: lg2s,
    leafAttrs(_level, prot, out) {
      out.lo = AMDV1_PR;
      out.hi = (AMDV1_FC_HI | (prot & IOMMU_READ ? AMDV1_IR_HI : 0) | (prot & IOMMU_WRITE ? AMDV1_IW_HI : 0)) >>> 0;
    },
    tableAttrs(level, out) {
      out.lo = AMDV1_PR | (level << AMDV1_NL_SHIFT);
      out.hi = AMDV1_IR_HI | AMDV1_IW_HI;
    },
    kind(level, lo) {
      if (!(lo & AMDV1_PR)) return PT_ENTRY_EMPTY;
      const nl = amdNextLevel(lo);
      if (level === 0 || nl === AMDV1_NL_DEFAULT || nl === AMDV1_NL_SIZE) return PT_ENTRY_OA;
      return PT_ENTRY_TABLE;
    },
    leafProt(_lo, hi) {
      return (hi & AMDV1_IR_HI ? IOMMU_READ : 0) | (hi & AMDV1_IW_HI ? IOMMU_WRITE : 0);
    },
    contig: true,
    contigLeaf(_level, lg2, pfn, attrLo, attrHi, out) {
      // the OA with its low lg2 - 1 frame bits set: the size, read back with ffz
      const coded = pfn + 2 ** (lg2 - 1) - 1;
      out.lo = entryLo(attrLo | (AMDV1_NL_SIZE << AMDV1_NL_SHIFT), coded);
      out.hi = entryHi(attrHi, coded);
    },
    leafLg2(level, lo, hi) {
      if (amdNextLevel(lo) !== AMDV1_NL_SIZE) return 9 * level;
      return ffzNum(entryOaPfn(f, lo, hi)) + 1;
    },
    leafOaPfn(_level, lo, hi) {
      const pfn = entryOaPfn(f, lo, hi);
      if (amdNextLevel(lo) !== AMDV1_NL_SIZE) return pfn;
      const span = 2 ** (ffzNum(pfn) + 1);
      return pfn - (pfn % span);
    },
    describe(level, lo, hi) {
      const nl = amdNextLevel(lo);
      const parts = ['PR', `NL=${nl}`];
      if (f.kind(level, lo, hi) === PT_ENTRY_OA && nl === AMDV1_NL_SIZE) parts.push(`size=${2 ** (f.leafLg2(level, lo, hi) + 12)}`);
      if (lo & AMDV1_D) parts.push('D');
      if (hi & AMDV1_FC_HI) parts.push('FC');
      if (hi & AMDV1_IR_HI) parts.push('IR');
      if (hi & AMDV1_IW_HI) parts.push('IW');
      return parts.join(' ');
    },
  };
  return f;
}
