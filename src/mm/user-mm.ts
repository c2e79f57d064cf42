// Models: mm/mmap.c, mm/vma.c, mm/memory.c, mm/huge_memory.c, mm/hugetlb.c (Linux 7.1): a process address
// space (struct mm_struct, struct vm_area_struct), handle_mm_fault (read faults of private anonymous
// memory map the shared zero page, or the huge zero folio for a THP slot that is a PMD; a write fault there copies
// on write), THP faults, io_remap_pfn_range. Page tables map user VA to pfn per VMA in typed arrays;
// pages fault in on first touch or at populate.

import { MiB, checkAddr, checkLen, err, hex, ok, type Err, type EventLog, type Result, type Stats } from '../base/index.ts';
import { describeValue } from '../base/index.ts';
import { FolioKind, type FolioRecord, type FolioTable } from './folio.ts';
import { HUGETLB_BYTES, hugetlbSizeMissing, hugetlbSizes, pmdBytes, type HugetlbSize, type Region } from './layout.ts';
import { MMU_NOTIFY_CLEAR, MMU_NOTIFY_PROTECTION_VMA, MMU_NOTIFY_UNMAP, type HugetlbPool, type MmuNotifierHook, type PhysMem } from './types.ts';
import type { PinTable } from './pins.ts';
import './counters.ts';

/**
 * What a process address space (and GUP on it) needs from its machine; MmMachine implements it.
 * Declared here so that this file does not depend on machine.ts (which creates processes).
 */
export interface UserMmHost {
  readonly pageSize: number;
  /** Physical address width in bits (the output-address layout of an arm64 entry depends on it). */
  readonly physAddrBits: number;
  /** Order of a PMD-sized THP. */
  readonly thpOrder: number;
  readonly mem: PhysMem;
  readonly events: EventLog;
  readonly stats: Stats;
  readonly folios: FolioTable;
  readonly hugetlb: Readonly<Partial<Record<HugetlbSize, HugetlbPool>>>;
  /** Live GUP pins. */
  readonly pinTable: PinTable<UserMm>;
  region(name: string): Region | undefined;
  /** A zeroed user folio's record index (refcount 0), or -1. */
  allocUserFolio(order: number): number;
  /** A zeroed page from a hugetlb pool, or -1. */
  allocHugetlbFolio(size: HugetlbSize, reserved: boolean): number;
  /** Drops references (folio_put_refs); frees the folio at zero. */
  folioPut(idx: number, refs: number): void;
  /** folioPut for every entry of a record. */
  putRecord(rec: FolioRecord): void;
  /** A ZONE_DEVICE page's folio record (created on first use). */
  zoneDeviceFolio(pfn: number): number;
  /** The shared zero page's pfn (taken on first use), or -1. */
  zeroPagePfn(): number;
  /** Whether pfn is the shared zero page (is_zero_pfn); never allocates it. */
  isZeroPfn(pfn: number): boolean;
  /** The shared zero page's pfn if it was taken already, else -1. */
  zeroPfnIfAny(): number;
  /** The huge zero folio's record index, or -1. */
  hugeZeroFolio(): number;
}

/**
 * Folio column value of a page-table entry that maps the shared zero page (it has no folio record).
 * In a 4 KiB anonymous VMA the folio column is negative exactly where the pfn column is negative (not
 * present) or the zero page's pfn: GUP's hot loops read the pfn column only.
 * Model deviation: processes never fork, so every private page is exclusive to its mapping
 * (PageAnonExclusive) and the only copy on write is from the zero page or the huge zero folio.
 */
export const ZERO_PAGE_FOLIO = -3;

/** The user page-table entry that maps one address (UserMm.pteAt). */
export interface UserPteInfo {
  /**
   * The table level of the leaf entry: 'pte' (a base page), 'pmd' (a table of PTEs' worth: 2 MiB at
   * 4 KiB pages, 32 MiB at 16 KiB, 512 MiB at 64 KiB), 'pud' (a table of PMDs' worth).
   */
  readonly level: 'pte' | 'pmd' | 'pud';
  /** The entry's index in its table (the VA bits of that level). */
  readonly index: number;
  /** Bytes the leaf maps: the entry, or all the entries of its contiguous run (contig). */
  readonly leafBytes: number;
  /**
   * Entries of that level mapping leafBytes together: 1, or a run with arm64's contiguous bit
   * (CONT_PTES, CONT_PMDS: a 2 MiB folio at 16 or 64 KiB pages, a 1 GiB or 16 GiB hugetlb page).
   */
  readonly contig: number;
  /** First VA the leaf maps (of a contiguous run, its first entry's). */
  readonly leafVa: bigint;
  readonly present: boolean;
  /** First frame the entry maps (null when not present). */
  readonly pfn: bigint | null;
  readonly writable: boolean;
  /** Maps the shared zero page or the huge zero folio. */
  readonly zeroPage: boolean;
  /** pte_special: a PFN map (remap_pfn_range, vmf_insert_pfn), the shared zero page or the huge zero folio: no page GUP may take a reference on. */
  readonly special: boolean;
  readonly cache: PageCacheMode;
  /** The entry as the machine's page tables hold it: x86-64 at 4 KiB pages, arm64 at 16 and 64 KiB (see UserMm.pteAt); 0n when not present. */
  readonly entry: bigint;
  /** The VMA's kind: anon, thp, hugetlb-<size> (hugetlb-2M, hugetlb-1G, ...), pfnmap, devpages, pfnmap-fault. */
  readonly vmaKind: string;
}

/**
 * An x86-64 user entry: P, RW, US, A as protection_map sets them, D as the fault paths set it on
 * writable private memory, PS for a PMD / PUD leaf, the PAT bits of the cache mode with Linux's PAT
 * layout (WC = PWT, UC- = PCD), _PAGE_SPECIAL for PFN maps and the zero page, NX.
 * (arch/x86/include/asm/pgtable_types.h: PAGE_SHARED, PAGE_COPY; arch/x86/mm/pat/memtype.c:
 * pat_bp_init()'s PAT_VALUE(WB, WC, UC_MINUS, UC, ...); mm/memory.c: do_anonymous_page())
 */
function x86UserEntry(phys: number, huge: boolean, writable: boolean, dirty: boolean, cache: PageCacheMode, special: boolean): bigint {
  let e = 0x1n | 0x4n | 0x20n | (1n << 63n); // P, US, A, NX
  if (writable) e |= 0x2n;
  if (dirty) e |= 0x40n; // D
  if (huge) e |= 0x80n; // PS
  if (cache === 'wc') e |= 0x8n; // PWT: PAT index 1 (WC)
  if (cache === 'uc') e |= 0x10n; // PCD: PAT index 2 (UC-)
  if (special) e |= 0x200n; // _PAGE_SPECIAL
  return e | BigInt(phys);
}

/**
 * @internal (exported for tests) An arm64 user descriptor (VMSAv8-64, arch/arm64/include/asm/pgtable-hwdef.h and pgtable-prot.h):
 * a page (bits 1:0 = 3) or a block (1) with AF, nG, inner shareable, PXN and UXN (the model's user
 * memory is never executable), AP[1] (user), and the write state as the kernel keeps it: a
 * read-only page AP[2] (PTE_RDONLY); a writable one PTE_WRITE (DBM), clean with PTE_RDONLY still
 * set (PAGE_SHARED), dirty without it and with the software PTE_DIRTY (pte_mkdirty, pte_mkwrite
 * after a write fault); PTE_CONT in a run of contiguous entries (arch_make_huge_pte, contpte);
 * AttrIndx by cache mode: MT_NORMAL, MT_NORMAL_NC (pgprot_writecombine), MT_DEVICE_nGnRnE
 * (pgprot_noncached); PTE_SPECIAL. The output address with 52-bit PAs: PA[51:48] in bits 15:12 at
 * 64 KiB pages (FEAT_LPA), PA[51:50] in bits 9:8 at 16 KiB, where LPA2 takes the shareability bits.
 */
export function arm64UserEntry(phys: number, ps: number, paBits: number, block: boolean, cont: boolean, writable: boolean,
  dirty: boolean, cache: PageCacheMode, special: boolean): bigint {
  const lpa2 = ps === 16384 && paBits > 48;
  let e = (block ? 0x1n : 0x3n) | (1n << 6n) | (1n << 10n) | (1n << 11n) | (3n << 53n); // type, USER, AF, nG, PXN | UXN
  if (!lpa2) e |= 3n << 8n; // PTE_SHARED
  e |= BigInt(cache === 'wc' ? 2 : cache === 'uc' ? 3 : 0) << 2n; // PTE_ATTRINDX
  if (writable) e |= 1n << 51n; // PTE_WRITE (DBM)
  if (!writable || !dirty) e |= 1n << 7n; // PTE_RDONLY
  if (dirty) e |= 1n << 55n; // PTE_DIRTY
  if (cont) e |= 1n << 52n; // PTE_CONT
  if (special) e |= 1n << 56n; // PTE_SPECIAL
  const pa = BigInt(phys);
  const low = pa & ((1n << 48n) - 1n);
  if (ps === 65536) return e | low | (((pa >> 48n) & 0xfn) << 12n);
  if (lpa2) return e | (pa & ((1n << 50n) - 1n)) | (((pa >> 50n) & 0x3n) << 8n);
  return e | low;
}

/** The cache attribute of a PTE (the PAT memory type on x86): write-back, write-combining, uncached. */
export type PageCacheMode = 'wb' | 'wc' | 'uc';

/** What a PFN-map fault handler returns for one page: the pfn to map and its cache attribute. */
export interface VmPfnFault {
  readonly pfn: number;
  readonly cache: PageCacheMode;
}

/**
 * vm_operations_struct of a VM_PFNMAP mapping filled at fault time (a driver's mmap that sets
 * VM_PFNMAP | VM_IO and inserts pfns in its fault handler, vmf_insert_pfn_prot): fault(pgoff) gives
 * the pfn and cache attribute of page pgoff of the mapped object, or an error, which the fault turns
 * into VM_FAULT_SIGBUS.
 */
export interface VmPfnMapOps {
  /** The mapped object's name (for /proc/pid/maps and messages). */
  readonly name: string;
  fault(pgoff: number): Result<VmPfnFault>;
}

/**
 * What backs a mapping. A device backing maps part of a device or pmem region (PFN map / DAX); a
 * pfnmap backing maps an object through its fault handler from page `pgoff` of the object on.
 */
export type MmapBacking = 'anon' | 'thp' | `hugetlb-${HugetlbSize}` | { readonly device: string; readonly offset?: number }
  | { readonly pfnmap: VmPfnMapOps; readonly pgoff?: number };

/** Options of UserMm.mmap. */
export interface MmapOptions {
  /** Bytes; rounded up to the page size (to the huge page size for hugetlb), as mmap does. */
  readonly len: number;
  readonly backing: MmapBacking;
  /** Fault every page in now (MAP_POPULATE). Device mappings are always populated. */
  readonly populate?: boolean;
  /** 'rw' (default) or 'r' (PROT_READ only). */
  readonly prot?: 'r' | 'rw';
  /** A fixed address (MAP_FIXED_NOREPLACE): page-aligned (hugetlb: to its huge page size); EEXIST if it overlaps. */
  readonly addr?: bigint;
}

/** Kinds of VMA the model has. */
export const VmaKind = { Anon: 0, Thp: 1, Hugetlb: 2, PfnMap: 4, DevPages: 5, PfnMapFault: 6 } as const;
export type VmaKind = (typeof VmaKind)[keyof typeof VmaKind];

/** Whether a VMA kind is hugetlb (is_vm_hugetlb_page). */
export function isHugetlbKind(kind: VmaKind): boolean {
  return kind === VmaKind.Hugetlb;
}

/** The hugetlb size name of a hugetlb VMA (its huge page size is its granule). */
function hugetlbSize(v: Vma): HugetlbSize {
  for (const [name, len] of Object.entries(HUGETLB_BYTES)) if (len === v.granuleLen) return name as HugetlbSize;
  throw new Error(`no hugetlb size of ${v.granuleLen} bytes`);
}

/** The name a VMA's kind has in mappings and pteAt ('hugetlb-2M' for a hugetlb VMA of 2 MiB pages). */
function vmaKindName(v: Vma): string {
  return v.kind === VmaKind.Hugetlb ? `hugetlb-${hugetlbSize(v)}` : VMA_KIND_NAMES[v.kind];
}

const VMA_KIND_NAMES = ['anon', 'thp', 'hugetlb', '', 'pfnmap', 'devpages', 'pfnmap-fault'];

/**
 * faultPage() result for a fault the handler refused (VM_FAULT_SIGBUS): a CPU access gets SIGBUS,
 * which the model's user accesses report as EFAULT with a message starting 'SIGBUS'.
 */
export const FAULT_SIGBUS = -5;

/** Vma.hugeWritten: read-only and clean (a read fault mapped it). */
const HUGE_CLEAN = 0;
/** Vma.hugeWritten: writable and dirty (a write fault took it). */
const HUGE_WRITABLE = 1;
/** Vma.hugeWritten: read-only and dirty (written, then a mprotect). */
const HUGE_DIRTY_RO = 2;

/** Whether huge page g of a hugetlb VMA may be written without a fault (its entry is writable). */
export function hugetlbWritable(v: Vma, g: number): boolean {
  return v.hugeWritten![g] === HUGE_WRITABLE;
}

/** Page cache mode codes in Vma.pteCache. */
const CACHE_CODES: readonly PageCacheMode[] = ['wb', 'wc', 'uc'];

/**
 * Highest user address + 1: TASK_SIZE (= TASK_SIZE_MAX) of x86-64 with 4-level paging,
 * (1 << 47) - PAGE_SIZE (arch/x86/include/asm/page_64.h: task_size_max()); the top 4 KiB page
 * below the canonical hole is never user memory. GUP-fast refuses a range that ends above it.
 */
export const TASK_SIZE = 2 ** 47 - 4096;
const MMAP_BASE = 0x7f0000000000;
const MMAP_MIN_ADDR = 0x10000;

/**
 * One mapping. Internal to mm/ (GUP reads its page tables directly); not part of the public API.
 * leafPfn/leafFolio hold one entry per granule (base page for anon, 2 MiB slot for THP, huge page
 * for hugetlb): the pfn (-1 = not present; THP only: -2 = this slot is mapped by base-page PTEs in
 * ptePfn/pteFolio) and the folio record index (ZERO_PAGE_FOLIO for the shared zero page; a THP slot
 * may map the huge zero folio). Granule g covers VA [(slotBase+g)*granuleLen, ...).
 * Anonymous and hugetlb mappings are private (copy on write); device mappings are shared.
 */
export class Vma {
  constructor(
    readonly start: number,
    readonly end: number,
    readonly kind: VmaKind,
    readonly writable: boolean,
    readonly granuleLen: number,
    readonly slotBase: number,
    public leafPfn: Float64Array | null,
    public leafFolio: Int32Array | null,
    public ptePfn: Float64Array | null,
    public pteFolio: Int32Array | null,
    readonly basePfn: number,
    readonly region: Region | null,
  ) {}

  /** The fault handler of a PfnMapFault mapping (vma->vm_ops), else null. basePfn is then the object's pgoff. */
  ops: VmPfnMapOps | null = null;
  /** PfnMapFault: the cache attribute of each present PTE (an index into 'wb', 'wc', 'uc'). */
  pteCache: Uint8Array | null = null;
  /**
   * hugetlb: the write state of each huge page (HUGE_CLEAN, HUGE_WRITABLE, HUGE_DIRTY_RO). A read
   * fault maps a private huge page read-only and clean (mm/hugetlb.c: hugetlb_no_page ->
   * make_huge_pte, writable only for VM_SHARED); a write fault makes it writable and dirty
   * (hugetlb_wp); a mprotect leaves it read-only and dirty (hugetlb_change_protection applies the
   * private PAGE_COPY and never upgrades to writable), so the next write faults again.
   */
  hugeWritten: Uint8Array | null = null;

  get len(): number {
    return this.end - this.start;
  }

  /** vma_is_anonymous: private anonymous memory (THP included), no vm_ops. */
  get anonymous(): boolean {
    return this.kind === VmaKind.Anon || this.kind === VmaKind.Thp;
  }

  /** A shared mapping (VM_SHARED): device and pmem mappings. The rest is private (is_cow_mapping). */
  get shared(): boolean {
    return this.region !== null;
  }

  /** vma_is_fsdax: a file on a DAX filesystem (a pmem region in fsdax mode). */
  get fsdax(): boolean {
    return this.region !== null && this.region.daxMode === 'fsdax';
  }
}

/** The error of a failed faultPage(): SIGBUS (as EFAULT) or ENOMEM. */
function faultError(code: number, va: number): Err {
  return code === FAULT_SIGBUS ? err('EFAULT', `SIGBUS: the fault handler refused the page at ${hex(va)}`) : err('ENOMEM', `out of memory faulting ${hex(va)}`);
}

/** A process address space: VMAs with their page tables, faults, and user-memory access. */
export class UserMm {
  readonly machine: UserMmHost;
  readonly id: number;
  /** VMAs sorted by start (internal; GUP walks them). */
  readonly vmas: Vma[] = [];
  private nextVa = MMAP_BASE;
  private readonly ps: number;
  /**
   * mm->notifier_subscriptions (mm/mmu_notifier.c): set by the first mmuIntervalNotifierInsert on
   * this mm; called around every change of present page-table entries (munmap, mprotect, copy on
   * write of the zero page, PMD split, migration). null while nothing subscribed.
   */
  notifierSubscriptions: MmuNotifierHook | null = null;

  constructor(machine: UserMmHost, id: number) {
    this.machine = machine;
    this.id = id;
    this.ps = machine.pageSize;
  }

  /** The VMA containing va (a number), or undefined. */
  vmaAt(va: number): Vma | undefined {
    const v = this.vmas;
    let lo = 0, hi = v.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (va < v[mid].start) hi = mid - 1;
      else if (va >= v[mid].end) lo = mid + 1;
      else return v[mid];
    }
    return undefined;
  }

  /** A plain description of the mappings (for reports and tests). */
  get mappings(): Array<{ start: bigint; end: bigint; kind: string; writable: boolean }> {
    return this.vmas.map((v) => ({ start: BigInt(v.start), end: BigInt(v.end), kind: vmaKindName(v), writable: v.writable }));
  }

  /**
   * Maps len bytes. Returns the start address.
   * Errors: ENOMEM (no free VA, a hugetlb pool without enough free pages for the reservation, or
   * populate could not allocate: the mapping is then removed again); EINVAL (device offset not
   * page-aligned or beyond the region; fixed addr not aligned); ENOMEM (fixed addr whose range ends
   * beyond TASK_SIZE); EPERM (fixed addr below mmap_min_addr, 64 KiB); EEXIST (fixed addr overlaps
   * a mapping). Misuse (bad types, unknown backing or device name) throws.
   * Model deviation: MAP_POPULATE that runs out of memory fails the mmap with ENOMEM and unmaps it;
   * the kernel ignores populate errors (mm_populate -> __mm_populate(..., ignore_errors = 1)) and
   * returns the mapping partly populated, the allocator having tried the OOM killer on the way.
   * The model's scenarios size buffers by this ENOMEM.
   */
  mmap(opts: MmapOptions): Result<bigint> {
    if (typeof opts !== 'object' || opts === null) throw new TypeError(`opts must be an object, got ${describeValue(opts)}`);
    const m = this.machine, ps = this.ps;
    let len = checkLen('opts.len', opts.len, 1);
    const prot = opts.prot ?? 'rw';
    if (prot !== 'r' && prot !== 'rw') throw new RangeError(`opts.prot must be 'r' or 'rw', got ${describeValue(prot)}`);
    if (opts.populate !== undefined && typeof opts.populate !== 'boolean') throw new TypeError(`opts.populate must be a boolean, got ${describeValue(opts.populate)}`);
    const b = opts.backing;
    let kind: VmaKind;
    let hugeSize: HugetlbSize | null = null;
    let granuleLen = ps;
    let region: Region | null = null;
    let basePfn = 0;
    let pfnOps: VmPfnMapOps | null = null;
    if (b === 'anon') kind = VmaKind.Anon;
    else if (b === 'thp') { kind = VmaKind.Thp; granuleLen = 2 * MiB; }
    else if (typeof b === 'string' && b.startsWith('hugetlb-') && Object.hasOwn(HUGETLB_BYTES, b.slice(8))) {
      // MAP_HUGETLB with a MAP_HUGE_* size the machine has no hstate for (mm/mmap.c ksys_mmap_pgoff)
      const size = b.slice(8) as HugetlbSize;
      hugeSize = size;
      if (!hugetlbSizes(ps).includes(size)) {
        return err('EINVAL', hugetlbSizeMissing(size, ps));
      }
      kind = VmaKind.Hugetlb;
      granuleLen = HUGETLB_BYTES[size];
    }
    else if (typeof b === 'object' && b !== null && 'device' in b && typeof b.device === 'string') {
      const r = m.region(b.device);
      if (r === undefined || (r.kind !== 'device' && r.kind !== 'pmem')) {
        throw new RangeError(`opts.backing.device must name a device or pmem region, got ${describeValue(b.device)}`);
      }
      const offset = b.offset === undefined ? 0 : checkLen('opts.backing.offset', b.offset);
      if (offset % ps !== 0) return err('EINVAL', `device offset ${offset} is not page-aligned`);
      len = Math.ceil(len / ps) * ps;
      if (offset + len > r.len) return err('EINVAL', `device window [${offset}, +${len}) exceeds ${r.name} (${r.len} bytes)`);
      region = r;
      basePfn = (r.startNum + offset) / ps;
      kind = r.hasStructPage ? VmaKind.DevPages : VmaKind.PfnMap;
    } else if (typeof b === 'object' && b !== null && 'pfnmap' in b) {
      if (b.pfnmap === null || typeof b.pfnmap !== 'object' || typeof b.pfnmap.fault !== 'function') {
        throw new TypeError(`opts.backing.pfnmap must be a VmPfnMapOps, got ${describeValue(b.pfnmap)}`);
      }
      pfnOps = b.pfnmap;
      basePfn = b.pgoff === undefined ? 0 : checkLen('opts.backing.pgoff', b.pgoff);
      kind = VmaKind.PfnMapFault;
    } else {
      throw new RangeError(`opts.backing must be 'anon', 'thp', 'hugetlb-<size>' (${Object.keys(HUGETLB_BYTES).join(', ')}), { device, offset } or { pfnmap }, got ${describeValue(b)}`);
    }
    const isHuge = kind === VmaKind.Hugetlb;
    const lenUnit = isHuge ? granuleLen : ps;
    len = Math.ceil(len / lenUnit) * lenUnit;
    // Placement: hugetlb on its huge page size (hugetlb_get_unmapped_area); a THP-backed anonymous
    // mapping without a fixed address on 2 MiB when its length is a multiple of 2 MiB
    // (mm/mmap.c: __get_unmapped_area() -> thp_get_unmapped_area_vmflags()), else on a page, as a
    // fixed address needs only page alignment for it (the THP slots it cuts fall back to PTEs).
    // Model deviation: the kernel (CONFIG_TRANSPARENT_HUGEPAGE) aligns every private anonymous
    // mapping of a 2 MiB multiple so, 'anon' (the model's 4 KiB-only memory) included, and
    // __thp_get_unmapped_area() leaves the padding below the mapping; the model puts 'anon' on a
    // page and 'thp' right below the previous mapping. Only virtual addresses differ.
    const align = isHuge ? granuleLen
      : kind === VmaKind.Thp && opts.addr === undefined && len % granuleLen === 0 ? granuleLen : ps;
    let start: number;
    if (len > TASK_SIZE) return err('ENOMEM', `${len} bytes do not fit in user space`); // __get_unmapped_area
    if (opts.addr !== undefined) {
      // In the order of mm/mmap.c __get_unmapped_area(): hugetlb_get_unmapped_area (fs/hugetlbfs)
      // refuses a fixed addr off the huge page size; then the range must end at TASK_SIZE (ENOMEM),
      // addr be page-aligned (EINVAL), and not below
      // mmap_min_addr (security_mmap_addr -> cap_mmap_addr: EPERM without CAP_SYS_RAWIO); then
      // do_mmap's MAP_FIXED_NOREPLACE check (EEXIST).
      start = Number(checkAddr('opts.addr', opts.addr, 64));
      if (isHuge && start % align !== 0) return err('EINVAL', `addr ${hex(start)} is not aligned to ${align}`);
      if (start > TASK_SIZE - len) return err('ENOMEM', `[${hex(start)}, +${len}) ends beyond user space (TASK_SIZE ${hex(TASK_SIZE)})`);
      if (start % align !== 0) return err('EINVAL', `addr ${hex(start)} is not aligned to ${align}`);
      if (start < MMAP_MIN_ADDR) return err('EPERM', `addr ${hex(start)} is below mmap_min_addr ${hex(MMAP_MIN_ADDR)}`);
      if (this.overlapping(start, start + len) !== undefined) return err('EEXIST', `[${hex(start)}, +${len}) overlaps a mapping`);
    } else {
      start = Math.floor((this.nextVa - len) / align) * align;
      for (;;) {
        if (start < MMAP_MIN_ADDR) return err('ENOMEM', `no free user address range of ${len} bytes`);
        const o = this.overlapping(start, start + len);
        if (o === undefined) break;
        start = Math.floor((o.start - len) / align) * align;
      }
    }
    const nGranules = Math.ceil((start + len) / granuleLen) - Math.floor(start / granuleLen);
    let pool = null;
    if (isHuge) {
      const size = hugeSize!;
      pool = m.hugetlb[size]!;
      if (pool.free.length - pool.reserved < nGranules) {
        return err('ENOMEM', `hugetlb pool ${size} has ${pool.free.length - pool.reserved} unreserved free pages, need ${nGranules}`);
      }
      pool.reserved += nGranules;
    }
    let leafPfn: Float64Array | null = null, leafFolio: Int32Array | null = null;
    if (region === null) {
      leafPfn = new Float64Array(nGranules).fill(-1);
      leafFolio = new Int32Array(nGranules).fill(-1);
    }
    const vma = new Vma(start, start + len, kind, prot === 'rw', granuleLen, Math.floor(start / granuleLen),
      leafPfn, leafFolio, null, null, basePfn, region);
    if (pfnOps !== null) {
      vma.ops = pfnOps;
      vma.pteCache = new Uint8Array(nGranules);
    }
    if (isHuge) vma.hugeWritten = new Uint8Array(nGranules);
    this.insert(vma);
    if (opts.addr === undefined) this.nextVa = Math.min(this.nextVa, start);
    if (opts.populate === true && region === null && pfnOps === null) {
      // MAP_POPULATE (populate_vma_page_range): write faults for a writable private mapping, read
      // faults (zero pages) for a read-only one.
      const r = this.populate(vma, start, start + len, vma.writable);
      if (!r.ok) {
        this.munmapNum(start, start + len);
        return r;
      }
    }
    return ok(BigInt(start));
  }

  private overlapping(s: number, e: number): Vma | undefined {
    for (const v of this.vmas) if (v.start < e && v.end > s) return v;
    return undefined;
  }

  private insert(v: Vma): void {
    let i = 0;
    while (i < this.vmas.length && this.vmas[i].start < v.start) i++;
    this.vmas.splice(i, 0, v);
  }

  /** Faults in every page of [s, e) inside vma (for write or read). ENOMEM if the allocator runs dry. */
  private populate(vma: Vma, s: number, e: number, write: boolean): Result<void> {
    const step = vma.kind === VmaKind.Anon || vma.kind === VmaKind.Thp ? this.ps : vma.granuleLen;
    // at most one folio per page (per huge page where THP is likely to succeed)
    this.machine.folios.reserve(Math.ceil((e - s) / (vma.kind === VmaKind.Thp ? vma.granuleLen : step)));
    for (let va = Math.floor(s / step) * step; va < e; va += step) {
      if (vma.kind === VmaKind.Thp && va % vma.granuleLen === 0 && va + vma.granuleLen <= e) {
        const pfn = this.faultPage(vma, va, write);
        if (pfn < 0) return faultError(pfn, va);
        const slot = Math.floor(va / vma.granuleLen) - vma.slotBase;
        if (vma.leafPfn![slot] >= 0) { va += vma.granuleLen - step; continue; }
      }
      const pfn = this.faultPage(vma, va, write);
      if (pfn < 0) return faultError(pfn, va);
    }
    return ok();
  }

  /** The pfn mapped at va in vma without faulting, or -1 if not present. */
  pfnAt(vma: Vma, va: number): number {
    const ps = this.ps;
    switch (vma.kind) {
      case VmaKind.PfnMap:
      case VmaKind.DevPages:
        return vma.basePfn + (Math.floor(va / ps) - vma.start / ps);
      case VmaKind.Thp: {
        const slot = Math.floor(va / vma.granuleLen) - vma.slotBase;
        const v = vma.leafPfn![slot];
        if (v >= 0) return v + (Math.floor(va / ps) % (vma.granuleLen / ps));
        if (v === -2) return vma.ptePfn![Math.floor(va / ps) - vma.start / ps];
        return -1;
      }
      default: {
        const g = Math.floor(va / vma.granuleLen) - vma.slotBase;
        const v = vma.leafPfn![g];
        return v < 0 ? -1 : v + Math.floor((va % vma.granuleLen) / ps);
      }
    }
  }

  private ensurePte(vma: Vma): void {
    if (vma.ptePfn === null) {
      const n = vma.len / this.ps;
      vma.ptePfn = new Float64Array(n).fill(-1);
      vma.pteFolio = new Int32Array(n).fill(-1);
    }
  }

  /**
   * Handles a fault at va (handle_mm_fault), for write or read. Returns the pfn now mapped at va, or
   * -1 on ENOMEM. Permission checks are the caller's.
   * - Private anonymous memory: a read fault of an empty PTE maps the shared zero page
   *   (do_anonymous_page); a read fault of an empty THP slot that lies wholly inside the VMA maps
   *   the huge zero folio (do_huge_pmd_anonymous_page) where the slot is a PMD (4 KiB pages), else
   *   zero PTEs. A write fault allocates a
   *   private page: a 2 MiB folio for a THP slot when the allocator has one, else a base page; over
   *   the zero page or the huge zero folio it is a copy on write (do_wp_page, do_huge_zero_wp_pmd;
   *   without a 2 MiB folio the huge zero PMD is split into zero PTEs and only the faulting page is
   *   copied). A present private page is returned as is.
   * - hugetlb: a huge page from the pool, using the mapping's reservation; a read fault maps it
   *   read-only, a write fault writable (hugetlb_no_page), and a write to a page mapped read-only
   *   makes it writable in place (hugetlb_wp).
   */
  faultPage(vma: Vma, va: number, write: boolean): number {
    const m = this.machine, ps = this.ps;
    switch (vma.kind) {
      case VmaKind.Anon: {
        const g = Math.floor(va / ps) - vma.slotBase;
        const have = vma.leafPfn![g];
        if (have >= 0 && (!write || vma.leafFolio![g] !== ZERO_PAGE_FOLIO)) return have;
        if (have >= 0) return this.cowZeroPage(vma.leafPfn!, vma.leafFolio!, g, va);
        return write ? this.mapNewPage(vma.leafPfn!, vma.leafFolio!, g) : this.mapZeroPage(vma.leafPfn!, vma.leafFolio!, g);
      }
      case VmaKind.Hugetlb: {
        const g = Math.floor(va / vma.granuleLen) - vma.slotBase;
        const have = this.pfnAt(vma, va);
        if (have >= 0) {
          // hugetlb_wp: a write to a page mapped read-only (by a read fault or a mprotect); the page
          // is the mapping's own (no fork), so it is made writable in place, when VM_WRITE allows
          if (write && vma.writable && vma.hugeWritten![g] !== HUGE_WRITABLE) {
            vma.hugeWritten![g] = HUGE_WRITABLE;
            m.stats.pageFaults++;
          }
          return have;
        }
        const f = m.allocHugetlbFolio(hugetlbSize(vma), true);
        if (f < 0) return -1;
        this.mapFolio(vma.leafPfn!, vma.leafFolio!, g, f);
        if (write) vma.hugeWritten![g] = vma.writable ? HUGE_WRITABLE : HUGE_DIRTY_RO;
        return this.pfnAt(vma, va);
      }
      case VmaKind.Thp:
        return this.faultThp(vma, va, write);
      case VmaKind.PfnMapFault: {
        const g = Math.floor(va / ps) - vma.slotBase;
        const have = vma.leafPfn![g];
        if (have >= 0) return have;
        const r = vma.ops!.fault(vma.basePfn + g - (vma.start / ps - vma.slotBase));
        if (!r.ok) return FAULT_SIGBUS;
        vma.leafPfn![g] = r.value.pfn;
        vma.pteCache![g] = CACHE_CODES.indexOf(r.value.cache);
        m.stats.pageFaults++;
        return r.value.pfn;
      }
      default:
        return this.pfnAt(vma, va);
    }
  }

  private faultThp(vma: Vma, va: number, write: boolean): number {
    const m = this.machine, ps = this.ps, gl = vma.granuleLen;
    const slot = Math.floor(va / gl) - vma.slotBase;
    const leaf = vma.leafPfn![slot];
    const hugeZero = leaf >= 0 && m.folios.kind[vma.leafFolio![slot]] === FolioKind.HugeZero;
    if (leaf >= 0 && !(write && hugeZero)) return this.pfnAt(vma, va);
    const slotStart = (slot + vma.slotBase) * gl;
    if (leaf !== -2 && slotStart >= vma.start && slotStart + gl <= vma.end) {
      if (write) {
        const f = m.allocUserFolio(m.thpOrder);
        if (f >= 0) {
          // Over the huge zero folio: the PMD held no reference on it, so nothing is dropped.
          const n = hugeZero ? this.notifierSubscriptions : null;
          n?.invalidateRangeStart(slotStart, slotStart + gl, MMU_NOTIFY_CLEAR);
          this.mapFolio(vma.leafPfn!, vma.leafFolio!, slot, f);
          n?.invalidateRangeEnd(slotStart, slotStart + gl, MMU_NOTIFY_CLEAR);
          return this.pfnAt(vma, va);
        }
        if (hugeZero) this.splitPmd(vma, slot);
      } else if (gl === pmdBytes(ps)) {
        // a read fault maps the huge zero folio only where a THP is a PMD (4 KiB pages); at 16 and
        // 64 KiB pages the 2 MiB folio is a multi-size THP, and do_anonymous_page maps the small
        // zero page for a read (the kernel's huge zero folio is PMD-sized: 32 or 512 MiB)
        const z = m.hugeZeroFolio();
        if (z >= 0) {
          vma.leafPfn![slot] = m.folios.head[z];
          vma.leafFolio![slot] = z;
          m.stats.pageFaults++;
          return this.pfnAt(vma, va);
        }
      }
    }
    // This slot is mapped by base-page PTEs (do_anonymous_page after a THP fallback).
    this.ensurePte(vma);
    vma.leafPfn![slot] = -2;
    const i = Math.floor(va / ps) - vma.start / ps;
    const have = vma.ptePfn![i];
    if (have >= 0 && (!write || vma.pteFolio![i] !== ZERO_PAGE_FOLIO)) return have;
    if (have >= 0) return this.cowZeroPage(vma.ptePfn!, vma.pteFolio!, i, va);
    return write ? this.mapNewPage(vma.ptePfn!, vma.pteFolio!, i) : this.mapZeroPage(vma.ptePfn!, vma.pteFolio!, i);
  }

  /**
   * A write fault over the zero page at entry i (do_wp_page -> wp_page_copy): a new private page
   * replaces it between invalidate_range_start and _end (MMU_NOTIFY_CLEAR) of that page.
   */
  private cowZeroPage(pfns: Float64Array, folios: Int32Array, i: number, va: number): number {
    const n = this.notifierSubscriptions, s = va - (va % this.ps);
    n?.invalidateRangeStart(s, s + this.ps, MMU_NOTIFY_CLEAR);
    const pfn = this.mapNewPage(pfns, folios, i);
    n?.invalidateRangeEnd(s, s + this.ps, MMU_NOTIFY_CLEAR);
    return pfn;
  }

  /** Maps a new private base page at entry i (over nothing or over the zero page); its pfn or -1. */
  private mapNewPage(pfns: Float64Array, folios: Int32Array, i: number): number {
    const f = this.machine.allocUserFolio(0);
    if (f < 0) return -1;
    this.mapFolio(pfns, folios, i, f);
    return pfns[i];
  }

  /** Maps the shared zero page read-only at entry i; its pfn or -1. */
  private mapZeroPage(pfns: Float64Array, folios: Int32Array, i: number): number {
    const z = this.machine.zeroPagePfn();
    if (z < 0) return -1;
    pfns[i] = z;
    folios[i] = ZERO_PAGE_FOLIO;
    this.machine.stats.pageFaults++;
    return z;
  }

  /** Maps folio f at entry i of a page table (pfn and folio columns): the entry holds one reference. */
  private mapFolio(pfns: Float64Array, folios: Int32Array, i: number, f: number): void {
    const m = this.machine;
    pfns[i] = m.folios.head[f];
    folios[i] = f;
    m.folios.get(f, 1);
    m.stats.pageFaults++;
  }

  /** split_huge_pmd_if_needed() for each cut that falls inside THP VMA v off a PMD boundary. */
  private splitThpAt(v: Vma, cuts: readonly number[]): void {
    if (v.kind !== VmaKind.Thp) return;
    for (const cut of cuts) {
      if (cut % v.granuleLen !== 0 && cut > v.start && cut < v.end) this.splitPmd(v, Math.floor(cut / v.granuleLen) - v.slotBase);
    }
  }

  /**
   * Splits the PMD mapping THP slot `slot` into base-page PTEs (__split_huge_pmd): each PTE of a
   * folio holds a reference to it; the huge zero folio's PMD becomes PTEs of the small zero page.
   */
  splitPmd(vma: Vma, slot: number): void {
    const t = this.machine.folios, ps = this.ps, gl = vma.granuleLen;
    const pfn = vma.leafPfn![slot];
    if (pfn < 0) return;
    const f = vma.leafFolio![slot];
    // __split_huge_pmd: invalidate_range_start / _end (MMU_NOTIFY_CLEAR) over the PMD's 2 MiB
    const n = this.notifierSubscriptions, s0 = (slot + vma.slotBase) * gl;
    n?.invalidateRangeStart(s0, s0 + gl, MMU_NOTIFY_CLEAR);
    this.ensurePte(vma);
    const per = gl / ps;
    const p0 = ((slot + vma.slotBase) * gl) / ps - vma.start / ps;
    if (t.kind[f] === FolioKind.HugeZero) {
      const z = this.machine.zeroPagePfn();
      vma.ptePfn!.fill(z, p0, p0 + per);
      vma.pteFolio!.fill(z < 0 ? -1 : ZERO_PAGE_FOLIO, p0, p0 + per);
    } else {
      for (let i = 0; i < per; i++) {
        vma.ptePfn![p0 + i] = pfn + i;
        vma.pteFolio![p0 + i] = f;
      }
      t.get(f, per - 1);
    }
    vma.leafPfn![slot] = -2;
    n?.invalidateRangeEnd(s0, s0 + gl, MMU_NOTIFY_CLEAR);
  }

  /** Drops the mapping at entry i of a page table, if present (its folio reference goes); true if one was there. */
  private unmapEntry(pfns: Float64Array, folios: Int32Array, i: number): boolean {
    if (pfns[i] < 0) return false;
    const f = folios[i];
    // The zero page and the huge zero folio are mapped without a folio reference.
    if (f !== ZERO_PAGE_FOLIO && this.machine.folios.kind[f] !== FolioKind.HugeZero) this.machine.folioPut(f, 1);
    pfns[i] = -1;
    folios[i] = -1;
    return true;
  }

  /**
   * The folio record index mapped at va: -1 when not present or without struct page,
   * ZERO_PAGE_FOLIO for the shared zero page.
   */
  folioAt(vma: Vma, va: number): number {
    const ps = this.ps;
    switch (vma.kind) {
      case VmaKind.PfnMap:
        return -1;
      case VmaKind.DevPages:
        return this.machine.folios.byHeadPfn(this.pfnAt(vma, va));
      case VmaKind.Thp: {
        const slot = Math.floor(va / vma.granuleLen) - vma.slotBase;
        const v = vma.leafPfn![slot];
        if (v >= 0) return vma.leafFolio![slot];
        if (v === -2) return vma.pteFolio![Math.floor(va / ps) - vma.start / ps];
        return -1;
      }
      default: {
        const g = Math.floor(va / vma.granuleLen) - vma.slotBase;
        return vma.leafPfn![g] < 0 ? -1 : vma.leafFolio![g];
      }
    }
  }

  checkAccess(s: number, e: number, write: boolean): Err | null {
    let pos = s;
    while (pos < e) {
      const v = this.vmaAt(pos);
      if (v === undefined) return err('EFAULT', `no mapping at ${hex(pos)}`);
      if (write && !v.writable) return err('EFAULT', `write access to read-only mapping at ${hex(pos)}`);
      pos = v.end;
    }
    return null;
  }

  private userRange(addr: unknown, len: number): [number, number] {
    const a = Number(checkAddr('addr', addr, 64));
    return [a, a + len];
  }

  /**
   * Touches [addr, addr+len) as the CPU would (read or write), faulting pages in: a read of untouched
   * private anonymous memory maps the zero page, a write gets private pages.
   * Errors: EFAULT (unmapped, or write to a read-only mapping; nothing is faulted); ENOMEM.
   */
  touch(addr: bigint, len: number, write: boolean): Result<void> {
    checkLen('len', len);
    if (typeof write !== 'boolean') throw new TypeError(`write must be a boolean, got ${describeValue(write)}`);
    const [s, e] = this.userRange(addr, len);
    const bad = this.checkAccess(s, e, write);
    if (bad !== null) return bad;
    let pos = s;
    while (pos < e) {
      const v = this.vmaAt(pos)!;
      const vend = Math.min(v.end, e);
      const r = this.populate(v, pos, vend, write);
      if (!r.ok) return r;
      pos = vend;
    }
    return ok();
  }

  /** Calls fn(phys, offsetInBuffer, n) for each page piece of [s, e), faulting pages in for write or read. */
  private eachPiece(s: number, e: number, write: boolean, fn: (phys: number, off: number, n: number) => void): Result<void> {
    const ps = this.ps;
    let pos = s;
    while (pos < e) {
      const v = this.vmaAt(pos)!;
      const pfn = this.faultPage(v, pos, write);
      if (pfn < 0) return faultError(pfn, pos);
      const inPage = pos % ps;
      const n = Math.min(ps - inPage, e - pos);
      fn(pfn * ps + inPage, pos - s, n);
      pos += n;
    }
    return ok();
  }

  /** Reads user memory through the page tables. Errors: EFAULT (unmapped), ENOMEM. */
  readUser(addr: bigint, len: number): Result<Uint8Array> {
    checkLen('len', len);
    const [s, e] = this.userRange(addr, len);
    const bad = this.checkAccess(s, e, false);
    if (bad !== null) return bad;
    const out = new Uint8Array(len);
    const r = this.eachPiece(s, e, false, (p, off, n) => out.set(this.machine.mem.read(BigInt(p), n), off));
    return r.ok ? ok(out) : r;
  }

  /** Writes user memory through the page tables. Errors: EFAULT (unmapped or read-only; nothing written), ENOMEM. */
  writeUser(addr: bigint, bytes: Uint8Array): Result<void> {
    if (!(bytes instanceof Uint8Array)) throw new TypeError(`bytes must be a Uint8Array, got ${describeValue(bytes)}`);
    const [s, e] = this.userRange(addr, bytes.length);
    const bad = this.checkAccess(s, e, true);
    if (bad !== null) return bad;
    return this.eachPiece(s, e, true, (p, off, n) => this.machine.mem.write(BigInt(p), bytes.subarray(off, off + n)));
  }

  /** The physical address va maps to now, or undefined (no mapping, or the page is not present). */
  translate(va: bigint): bigint | undefined {
    const a = Number(checkAddr('va', va, 64));
    const v = this.vmaAt(a);
    if (v === undefined) return undefined;
    const pfn = this.pfnAt(v, a);
    return pfn < 0 ? undefined : BigInt(pfn * this.ps + (a % this.ps));
  }

  /**
   * The user page-table entry that maps va, for traces and reports: its level and index, the
   * frame it maps, its flags and the entry as the machine's page tables would hold it (x86-64 at
   * 4 KiB pages, an arm64 VMSAv8-64 descriptor at 16 and 64 KiB); undefined when no VMA covers va.
   * Read-only: nothing is faulted in. A not-present entry reads as 0n.
   * Model deviation: the model keeps a process's page tables as per-VMA arrays, not as table pages
   * in machine RAM, so `entry` is encoded from them (x86UserEntry, arm64UserEntry), not read from
   * memory. The write state follows the faults: anon and THP folios exist only through a write
   * fault (dirty; a read maps the zero page), a hugetlb page a read fault mapped is read-only and
   * clean until a write fault (Vma.hugeWritten), and a mprotect keeps the dirty bit. DAX mappings
   * (write-notify through page_mkwrite / pfn_mkwrite) are shown writable and clean, and a page a
   * read-only FOLL_LONGTERM pin unshared is shown as written.
   * Accessed / dirty updates by later hardware accesses are not modelled.
   */
  pteAt(va: bigint): UserPteInfo | undefined {
    const a = Number(checkAddr('va', va, 64));
    const v = this.vmaAt(a);
    if (v === undefined) return undefined;
    const ps = this.ps;
    // THP slots split into base-page PTEs are PTE-mapped; PFN maps are always PTE-mapped
    let leafBytes = v.granuleLen;
    if (v.kind === VmaKind.PfnMap || v.kind === VmaKind.DevPages || v.kind === VmaKind.PfnMapFault) leafBytes = ps;
    if (v.kind === VmaKind.Thp && v.leafPfn![Math.floor(a / v.granuleLen) - v.slotBase] === -2) leafBytes = ps;
    // the table geometry: ps / 8 entries a table, each level mapping that many of the one below
    const perTable = ps / 8, pmd = pmdBytes(ps), pud = pmd * perTable;
    const level: UserPteInfo['level'] = leafBytes < pmd ? 'pte' : leafBytes < pud ? 'pmd' : 'pud';
    const entryBytes = level === 'pte' ? ps : level === 'pmd' ? pmd : pud;
    const contig = leafBytes / entryBytes;
    const index = Math.floor(a / entryBytes) % perTable;
    const pfnHere = this.pfnAt(v, a);
    const leafVa = BigInt(Math.floor(a / leafBytes) * leafBytes);
    if (pfnHere < 0) {
      return { level, index, leafBytes, contig, leafVa, present: false, pfn: null, writable: false, zeroPage: false, special: false, cache: 'wb', entry: 0n, vmaKind: vmaKindName(v) };
    }
    // the first frame of the entry that maps va (of a contiguous run, that entry's own part)
    const firstPfn = pfnHere - Math.floor((a % entryBytes) / ps);
    const folio = this.folioAt(v, a);
    const m = this.machine;
    const zeroPage = folio === ZERO_PAGE_FOLIO || (folio >= 0 && m.folios.kind[folio] === FolioKind.HugeZero);
    // a hugetlb page is writable once a write fault took it, dirty once written (hugeWritten)
    const hw = v.kind === VmaKind.Hugetlb ? v.hugeWritten![Math.floor(a / v.granuleLen) - v.slotBase] : HUGE_WRITABLE;
    const written = hw !== HUGE_CLEAN;
    const writable = v.writable && !zeroPage && hw === HUGE_WRITABLE;
    // PFN maps, the shared zero page and the huge zero folio are mapped special (pte_mkspecial;
    // mm/huge_memory.c: set_huge_zero_folio() -> pmd_mkspecial)
    const special = v.kind === VmaKind.PfnMap || v.kind === VmaKind.PfnMapFault || zeroPage;
    const cache = this.cacheModeAt(va) ?? 'wb';
    // a private page was dirtied by the write fault that made it (anon and THP folios exist only
    // through one; hugetlb: hugeWritten), and stays dirty through a mprotect (pte_modify keeps the
    // dirty bit); PFN maps (remap_pfn_range, vmf_insert_pfn_prot: insert_pfn without mkwrite) and
    // DAX mappings are shown clean
    const dirty = !zeroPage && written && (v.kind === VmaKind.Anon || v.kind === VmaKind.Thp || v.kind === VmaKind.Hugetlb);
    const e = ps === 4096
      ? x86UserEntry(firstPfn * ps, level !== 'pte', writable, dirty, cache, special)
      : arm64UserEntry(firstPfn * ps, ps, m.physAddrBits, level !== 'pte', contig > 1, writable, dirty, cache, special);
    return { level, index, leafBytes, contig, leafVa, present: true, pfn: BigInt(firstPfn), writable, zeroPage, special, cache, entry: e, vmaKind: vmaKindName(v) };
  }

  /**
   * Unmaps [addr, addr+len) (len rounded up to pages); holes in the range are fine, as in munmap(2).
   * Pinned folios are not freed here: the mapping's references go, the pins keep the folio alive
   * and the last unpin frees it (the kernel's behaviour: a pin is a reference).
   * Errors: EINVAL (addr not page-aligned, len 0, or the range not inside [0, TASK_SIZE), as
   * mm/vma.c do_vmi_munmap() checks; a hugetlb mapping cut off its huge-page alignment).
   */
  munmap(addr: bigint, len: number): Result<void> {
    checkLen('len', len);
    const a = Number(checkAddr('addr', addr, 64));
    if (a % this.ps !== 0) return err('EINVAL', `addr ${hex(a)} is not page-aligned`);
    if (a > TASK_SIZE || len > TASK_SIZE - a) return err('EINVAL', `[${hex(a)}, +${len}) is not inside user space`);
    if (len === 0) return err('EINVAL', 'len is 0');
    const e = a + Math.ceil(len / this.ps) * this.ps;
    for (const v of this.vmas) {
      if (v.start >= e || v.end <= a) continue;
      if (v.kind === VmaKind.Hugetlb &&
        ((a > v.start && a % v.granuleLen !== 0) || (e < v.end && e % v.granuleLen !== 0))) {
        return err('EINVAL', `hugetlb mapping at ${hex(v.start)} can only be split at ${v.granuleLen}-byte boundaries`);
      }
    }
    this.munmapNum(a, e);
    return ok();
  }

  private munmapNum(a: number, e: number): void {
    // do_vmi_munmap: a range without any VMA is done before anything is unmapped (no invalidation)
    if (!this.vmas.some((v) => v.start < e && v.end > a)) return;
    // vms_gather_munmap_vmas splits the VMAs at the range's ends first (__split_vma ->
    // vma_adjust_trans_huge): a PMD-mapped THP straddling a cut is split (CLEAR) before the UNMAP range
    for (const v of this.vmas) if (v.start < e && v.end > a) this.splitThpAt(v, [a, e]);
    // unmap_vmas: invalidate_range_start / _end (MMU_NOTIFY_UNMAP) of the whole munmap range
    // (vms->start, vms->end) around the page-table teardown
    const n = this.notifierSubscriptions;
    n?.invalidateRangeStart(a, e, MMU_NOTIFY_UNMAP);
    const keep: Vma[] = [];
    for (const v of this.vmas) {
      if (v.start >= e || v.end <= a) { keep.push(v); continue; }
      const lo = Math.max(a, v.start), hi = Math.min(e, v.end);
      this.unmapPages(v, lo, hi);
      if (v.start < lo) keep.push(this.slice(v, v.start, lo));
      if (hi < v.end) keep.push(this.slice(v, hi, v.end));
    }
    keep.sort((x, y) => x.start - y.start);
    this.vmas.length = 0;
    this.vmas.push(...keep);
    n?.invalidateRangeEnd(a, e, MMU_NOTIFY_UNMAP);
  }

  private unmapPages(v: Vma, lo: number, hi: number): void {
    const m = this.machine, ps = this.ps;
    switch (v.kind) {
      case VmaKind.PfnMap:
      case VmaKind.DevPages:
      case VmaKind.PfnMapFault:
        return;
      case VmaKind.Anon:
        for (let va = lo; va < hi; va += ps) this.unmapEntry(v.leafPfn!, v.leafFolio!, va / ps - v.slotBase);
        return;
      case VmaKind.Hugetlb: {
        const pool = m.hugetlb[hugetlbSize(v)]!;
        for (let va = lo; va < hi; va += v.granuleLen) {
          // A huge page never faulted in still holds the mapping's reservation.
          const g = va / v.granuleLen - v.slotBase;
          v.hugeWritten![g] = HUGE_CLEAN;
          if (!this.unmapEntry(v.leafPfn!, v.leafFolio!, g)) pool.reserved--;
        }
        return;
      }
      case VmaKind.Thp: {
        const gl = v.granuleLen;
        for (let slotVa = Math.floor(lo / gl) * gl; slotVa < hi; slotVa += gl) {
          const slot = slotVa / gl - v.slotBase;
          const s = Math.max(lo, slotVa), e = Math.min(hi, slotVa + gl);
          const pfn = v.leafPfn![slot];
          if (pfn >= 0) {
            if (s === slotVa && e === slotVa + gl) {
              this.unmapEntry(v.leafPfn!, v.leafFolio!, slot);
              continue;
            }
            // Partial unmap of a PMD-mapped THP: split the PMD into base-page PTEs first.
            this.splitPmd(v, slot);
          }
          if (v.leafPfn![slot] === -2) {
            for (let va = s; va < e; va += ps) this.unmapEntry(v.ptePfn!, v.pteFolio!, va / ps - v.start / ps);
          }
        }
        return;
      }
    }
  }

  /** A new VMA for [s, e) of v, with copies of the page-table entries it covers. */
  private slice(v: Vma, s: number, e: number, writable = v.writable): Vma {
    const ps = this.ps, gl = v.granuleLen;
    const slotBase = Math.floor(s / gl);
    const g0 = slotBase - v.slotBase, g1 = Math.ceil(e / gl) - v.slotBase;
    const p0 = s / ps - v.start / ps, p1 = e / ps - v.start / ps;
    const out = new Vma(s, e, v.kind, writable, gl, slotBase,
      v.leafPfn && v.leafPfn.slice(g0, g1), v.leafFolio && v.leafFolio.slice(g0, g1),
      v.ptePfn && v.ptePfn.slice(p0, p1), v.pteFolio && v.pteFolio.slice(p0, p1),
      v.region === null && v.ops === null ? 0 : v.basePfn + p0, v.region);
    out.ops = v.ops;
    out.pteCache = v.pteCache && v.pteCache.slice(g0, g1);
    out.hugeWritten = v.hugeWritten && v.hugeWritten.slice(g0, g1);
    return out;
  }

  /**
   * zap_vma_ptes() over [addr, addr+len): clears the PTEs of the PFN maps with a fault handler
   * there (other mappings are left alone, as zap_vma_ptes refuses a VMA without VM_PFNMAP); the next
   * access faults again. Returns how many PTEs were present.
   */
  zapVmaPtes(addr: bigint, len: number): number {
    checkLen('len', len);
    const s = Number(checkAddr('addr', addr, 64)), e = s + len, ps = this.ps;
    let n = 0;
    for (const v of this.vmas) {
      if (v.kind !== VmaKind.PfnMapFault || v.start >= e || v.end <= s) continue;
      const lo = Math.max(s, v.start), hi = Math.min(e, v.end);
      for (let va = Math.floor(lo / ps) * ps; va < hi; va += ps) {
        const g = va / ps - v.slotBase;
        if (v.leafPfn![g] >= 0) n++;
        v.leafPfn![g] = -1;
      }
    }
    return n;
  }

  /**
   * The cache attribute of the PTE at va: 'wb' for memory mappings, 'uc' for a device PFN map
   * (io_remap_pfn_range with pgprot_noncached), the handler's for a PfnMapFault mapping; undefined
   * when va is unmapped or its PTE is not present.
   */
  cacheModeAt(va: bigint): PageCacheMode | undefined {
    const a = Number(checkAddr('va', va, 64));
    const v = this.vmaAt(a);
    if (v === undefined || this.pfnAt(v, a) < 0) return undefined;
    if (v.kind === VmaKind.PfnMapFault) return CACHE_CODES[v.pteCache![Math.floor(a / this.ps) - v.slotBase]];
    return v.kind === VmaKind.PfnMap && v.region!.mmio ? 'uc' : 'wb';
  }

  /**
   * mprotect(2) with PROT_READ ('r') or PROT_READ|PROT_WRITE ('rw') over [addr, addr+len) (len
   * rounded up to pages), as mm/mprotect.c do_mprotect_pkey() walks it: VMA by VMA from addr, each
   * split at the range's ends and given the new protection (mprotect_fixup, change_protection)
   * inside invalidate_range_start / _end (MMU_NOTIFY_PROTECTION_VMA) of its part of the range; a
   * VMA that has the protection already is not touched (not split, no invalidation). A PMD-mapped
   * THP cut by an end of the range is split into PTEs first, as change_pmd_range does. Present
   * private pages follow the VMA: writable again after 'rw' (the zero page stays read-only), except
   * hugetlb pages, which stay read-only (dirty if written) until the next write fault.
   * len 0 changes nothing and succeeds (after the alignment check).
   * Errors: EINVAL (addr not page-aligned; a hugetlb VMA that would be cut off its huge-page
   * alignment, hugetlb_vm_op_split); ENOMEM (addr is not mapped, or the range reaches a hole). As in
   * the kernel, an error met at some VMA leaves the VMAs before it changed.
   */
  mprotect(addr: bigint, len: number, prot: 'r' | 'rw'): Result<void> {
    checkLen('len', len);
    if (prot !== 'r' && prot !== 'rw') throw new RangeError(`prot must be 'r' or 'rw', got ${describeValue(prot)}`);
    const a = Number(checkAddr('addr', addr, 64));
    if (a % this.ps !== 0) return err('EINVAL', `addr ${hex(a)} is not page-aligned`);
    if (len === 0) return ok(); // do_mprotect_pkey: !len returns 0
    const e = a + Math.ceil(len / this.ps) * this.ps;
    const n = this.notifierSubscriptions;
    const writable = prot === 'rw';
    const hit = this.vmas.filter((v) => v.start < e && v.end > a);
    // vma_find(start, end): the first VMA in the range must cover start
    if (hit.length === 0 || hit[0].start > a) return err('ENOMEM', `no mapping at ${hex(a)}`);
    let error: Err | null = null;
    let tmp = hit[0].start;
    const done = new Map<Vma, Vma[]>();
    for (const v of hit) {
      if (v.start !== tmp) { error = err('ENOMEM', `no mapping at ${hex(tmp)}`); break; }
      const lo = Math.max(a, v.start), hi = Math.min(e, v.end);
      tmp = hi;
      // mprotect_fixup: a VMA whose flags do not change is left alone (no split, no invalidation)
      if (v.writable === writable) continue;
      // vma_modify_flags -> split_vma: hugetlb_vm_op_split refuses a cut off the huge-page size
      if (isHugetlbKind(v.kind) && ((lo > v.start && lo % v.granuleLen !== 0) || (hi < v.end && hi % v.granuleLen !== 0))) {
        error = err('EINVAL', `hugetlb mapping at ${hex(v.start)} can only be split at ${v.granuleLen}-byte boundaries`);
        break;
      }
      // the VMA split (__split_vma -> vma_adjust_trans_huge) splits a PMD that straddles a cut, with
      // its own CLEAR range, before change_protection's PROTECTION_VMA one
      this.splitThpAt(v, [lo, hi]);
      n?.invalidateRangeStart(lo, hi, MMU_NOTIFY_PROTECTION_VMA);
      const parts: Vma[] = [];
      if (v.start < lo) parts.push(this.slice(v, v.start, lo));
      const changed = this.slice(v, lo, hi, writable);
      // hugetlb_change_protection: written huge pages stay dirty and become read-only, whichever
      // way the protection goes (a private mapping's PAGE_COPY); the next write faults again
      const hw = changed.hugeWritten;
      if (hw !== null) for (let g = 0; g < hw.length; g++) if (hw[g] === HUGE_WRITABLE) hw[g] = HUGE_DIRTY_RO;
      parts.push(changed);
      if (hi < v.end) parts.push(this.slice(v, hi, v.end));
      done.set(v, parts);
      n?.invalidateRangeEnd(lo, hi, MMU_NOTIFY_PROTECTION_VMA);
    }
    if (done.size > 0) {
      const out = this.vmas.flatMap((v) => done.get(v) ?? [v]);
      this.vmas.length = 0;
      this.vmas.push(...out);
    }
    if (error === null && tmp < e) error = err('ENOMEM', `no mapping at ${hex(tmp)}`);
    return error ?? ok();
  }

  /**
   * split_huge_pmd_address(): if a THP is PMD-mapped at addr, maps it by 512 PTEs instead (the
   * folio stays one 2 MiB folio), inside invalidate_range_start / _end (MMU_NOTIFY_CLEAR) of its
   * 2 MiB. Returns whether a PMD was split.
   */
  splitHugePmd(addr: bigint): boolean {
    const a = Number(checkAddr('addr', addr, 64));
    const v = this.vmaAt(a);
    if (v === undefined || v.kind !== VmaKind.Thp) return false;
    const slot = Math.floor(a / v.granuleLen) - v.slotBase;
    if (v.leafPfn![slot] < 0) return false;
    this.splitPmd(v, slot);
    return true;
  }

  /**
   * Migrates the folio mapped at addr to newly allocated memory (move_pages(2) of one page:
   * mm/migrate.c add_folio_for_migration, migrate_pages; mm/rmap.c try_to_migrate_one): every
   * VMA that maps the folio gets invalidate_range_start / _end (MMU_NOTIFY_CLEAR) of the folio's
   * range clipped to it, as try_to_migrate_one unmaps it there; then the bytes are copied to the
   * new folio (same order) and the entries point at it; the old folio is freed. Returns the new physical address of addr.
   * Errors: EFAULT (no mapping, a PFN map, a DAX (pmem) mapping, or the zero page / huge zero
   * folio); ENOENT (not present, or other ZONE_DEVICE memory); EBUSY (a reference beyond the
   * mappings': pinned); ENOMEM.
   * Model deviation: hugetlb folios are not migrated (EOPNOTSUPP); the kernel migrates them whole.
   * Model deviation: a pinned folio is EBUSY here; the kernel isolates it, fails folio_ref_freeze
   * (__folio_migrate_mapping) on every retry, and move_pages(2) returns the count of pages it did
   * not move (a positive number, the status entry left unset) rather than an errno.
   */
  migratePage(addr: bigint): Result<bigint> {
    const a = Number(checkAddr('addr', addr, 64));
    const m = this.machine, t = m.folios, ps = this.ps;
    const v = this.vmaAt(a);
    if (v === undefined || v.kind === VmaKind.PfnMap || v.kind === VmaKind.PfnMapFault) return err('EFAULT', `no migratable mapping at ${hex(a)}`);
    // mm/mempolicy.c vma_migratable(): a DAX mapping (fsdax or devdax pmem: S_DAX) is not
    // migratable, EFAULT like a PFN map; other ZONE_DEVICE pages are found and refused with ENOENT
    // (mm/migrate.c: __add_folio_for_migration, folio_is_zone_device).
    if (v.kind === VmaKind.DevPages && v.region!.kind === 'pmem') return err('EFAULT', `${hex(a)} is a DAX mapping of ${v.region!.name}`);
    if (v.kind === VmaKind.DevPages) return err('ENOENT', `${hex(a)} maps ZONE_DEVICE memory`);
    if (isHugetlbKind(v.kind)) return err('EOPNOTSUPP', `hugetlb migration is not modeled (${hex(a)})`);
    const f = this.folioAt(v, a);
    if (f === -1) return err('ENOENT', `no page present at ${hex(a)}`);
    if (f === ZERO_PAGE_FOLIO || t.kind[f] === FolioKind.HugeZero) return err('EFAULT', `${hex(a)} maps the zero page`);
    const order = t.order[f], head = t.head[f], flen = ps * 2 ** order;
    // Where the folio can be mapped: a private folio is mapped once, at one virtual range.
    const pfnHere = this.pfnAt(v, a);
    const vaStart = a - (a % ps) - (pfnHere - head) * ps;
    const pmd = v.kind === VmaKind.Thp && v.leafPfn![Math.floor(a / v.granuleLen) - v.slotBase] >= 0;
    let mapped = 0;
    if (pmd) mapped = 1;
    else for (let va = vaStart; va < vaStart + flen; va += ps) { const w = this.vmaAt(va); if (w !== undefined && this.folioAt(w, va) === f) mapped++; }
    if (t.refcount[f] !== mapped) return err('EBUSY', `folio at ${hex(head * ps)} has ${t.refcount[f]} references, ${mapped} from mappings (pinned?)`);
    const nf = m.allocUserFolio(order);
    if (nf < 0) return err('ENOMEM', `no ${flen}-byte folio to migrate ${hex(a)} to`);
    const nhead = t.head[nf];
    // try_to_migrate (mm/rmap.c): try_to_migrate_one runs once per VMA that maps the folio, each
    // inside invalidate_range_start / _end (MMU_NOTIFY_CLEAR) of the folio's range clipped to that
    // VMA (vma_address .. vma_address_end), replacing its entries by migration entries; the entries
    // pointing at the new folio come back afterwards (remove_migration_ptes) without a notifier.
    const n = this.notifierSubscriptions;
    if (n !== null) {
      for (const w of this.vmas.slice()) {
        const lo = Math.max(vaStart, w.start), hi = Math.min(vaStart + flen, w.end);
        if (lo >= hi) continue;
        let maps = false;
        for (let va = lo; va < hi && !maps; va += ps) maps = this.folioAt(w, va) === f;
        if (!maps) continue;
        n.invalidateRangeStart(lo, hi, MMU_NOTIFY_CLEAR);
        n.invalidateRangeEnd(lo, hi, MMU_NOTIFY_CLEAR);
      }
    }
    m.mem.copy(BigInt(nhead * ps), BigInt(head * ps), flen);
    if (pmd) {
      const slot = Math.floor(a / v.granuleLen) - v.slotBase;
      v.leafPfn![slot] = nhead;
      v.leafFolio![slot] = nf;
    } else {
      for (let va = vaStart; va < vaStart + flen; va += ps) {
        const w = this.vmaAt(va);
        if (w === undefined || this.folioAt(w, va) !== f) continue;
        const pfns = w.kind === VmaKind.Thp ? w.ptePfn! : w.leafPfn!, folios = w.kind === VmaKind.Thp ? w.pteFolio! : w.leafFolio!;
        const i = w.kind === VmaKind.Thp ? va / ps - w.start / ps : va / ps - w.slotBase;
        pfns[i] = nhead + (va - vaStart) / ps;
        folios[i] = nf;
      }
    }
    t.get(nf, mapped);
    m.folioPut(f, mapped);
    return ok(BigInt(nhead * ps + (a - vaStart)));
  }
}
