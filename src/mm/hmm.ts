// Models: mm/hmm.c hmm_range_fault() and include/linux/hmm.h (Linux 7.1): a walk of a process's page
// tables over [range.start, range.end) that reports, per base page, the pfn mapped there and its CPU
// permissions (HMM_PFN_VALID, HMM_PFN_WRITE) or HMM_PFN_ERROR, faulting pages in through the mm's
// fault path (handle_mm_fault) where the request asks for it (HMM_PFN_REQ_FAULT / _REQ_WRITE in
// range.defaultFlags, or per page masked by range.pfnFlagsMask). Unlike GUP it takes no reference and
// no pin: the caller's mmu_interval_notifier tells it when the answer stops being true, and the caller
// publishes what it read only if mmu_interval_read_retry() says no invalidation collided.
//
// The walk follows hmm_walk_ops: test_walk (hmm_vma_walk_test) refuses VM_IO / VM_PFNMAP mappings
// (HMM_PFN_ERROR, or EFAULT when a fault was asked for); holes without a VMA give HMM_PFN_ERROR or
// EFAULT (hmm_vma_walk_hole); a PMD-mapped THP gives its pfns with the PMD's map order (9 at 4 KiB
// pages; hmm_vma_handle_pmd), a THP of PTEs (a 2 MiB folio at 16 or 64 KiB pages) order 0, a hugetlb page with its page order (hmm_vma_walk_hugetlb_entry, which reads
// the request of the first page of each huge page only), a PTE its own flags (hmm_vma_handle_pte; the
// zero page is a read-only PTE: VALID without WRITE). A page that needs a fault is faulted by
// hmm_vma_fault() with every page from it to the end of that page-table range (the PMD's: 2 MiB at
// 4 KiB pages; or the huge page), after which the walk restarts at it (-EBUSY inside the loop); a write fault on a
// mapping without VM_WRITE is EPERM; a fault that fails (VM_FAULT_ERROR, OOM included) is EFAULT.
// Before each pass the loop checks mmu_interval_check_retry() and returns EBUSY on a collision.
//
// Model deviation: the kernel packs the flags into the top 11 bits of each unsigned long of
// range->hmm_pfns; here a range has two columns: hmmPfns (the pfn) and hmmFlags (those 11 bits
// shifted down by HMM_PFN_ORDER_SHIFT, so the flag constants below are the kernel's values >> 53 and
// the map order is the low 5 bits). There are no device-private pages, swap or migration entries in
// the model, so dev_private_owner and the swap / migration-entry branches have nothing to act on.

import { checkAddr, err, hex, ok, type Result } from '../base/index.ts';
import { describeValue } from '../base/index.ts';
import { FolioKind } from './folio.ts';
import { pmdBytes } from './layout.ts';
import { mmuIntervalCheckRetry, MmuIntervalNotifier } from './mmu-notifier.ts';
import { UserMm, Vma, VmaKind, ZERO_PAGE_FOLIO, hugetlbWritable, isHugetlbKind } from './user-mm.ts';
import './counters.ts';

/** The kernel's HMM_PFN_ORDER_SHIFT (BITS_PER_LONG - 11): hmmFlags holds hmm_pfns[i] >> this. */
export const HMM_PFN_ORDER_SHIFT = 53;
/** Output: the pfn is valid (at least readable). Input (HMM_PFN_REQ_FAULT): fault it in. */
export const HMM_PFN_VALID = 1 << 10;
/** Output: the CPU mapping is writable. Input (HMM_PFN_REQ_WRITE): fault for write. */
export const HMM_PFN_WRITE = 1 << 9;
/** Output: the device must not access this page (no VMA, a PFN / I/O mapping). */
export const HMM_PFN_ERROR = 1 << 8;
/** Sticky (carried from input to output): the page is DMA-mapped (hmm_dma_map_pfn). */
export const HMM_PFN_DMA_MAPPED = 1 << 7;
/** Sticky: a P2P page mapped through the host bridge (DMA_ATTR_MMIO). */
export const HMM_PFN_P2PDMA = 1 << 6;
/** Sticky: a P2P page mapped by its PCI bus address (nothing to unmap). */
export const HMM_PFN_P2PDMA_BUS = 1 << 5;
export const HMM_PFN_REQ_FAULT = HMM_PFN_VALID;
export const HMM_PFN_REQ_WRITE = HMM_PFN_WRITE;
/** HMM_PFN_INOUT_FLAGS (mm/hmm.c): the flags hmm_range_fault leaves as they were. */
export const HMM_PFN_INOUT_FLAGS = HMM_PFN_DMA_MAPPED | HMM_PFN_P2PDMA | HMM_PFN_P2PDMA_BUS;
/** Mask of the map order in hmmFlags (hmm_pfn_to_map_order). */
const ORDER_MASK = 0x1f;

const HMM_NEED_FAULT = 1;
const HMM_NEED_WRITE_FAULT = 2;
const HMM_NEED_ALL_BITS = 3;

/** hmm_pfn_to_map_order(): the order of the CPU mapping the page was found in (0, 9 for a PMD, ...). */
export function hmmPfnToMapOrder(flags: number): number {
  return flags & ORDER_MASK;
}

/**
 * struct hmm_range: the notifier and the sequence from mmuIntervalReadBegin, the range (page-aligned
 * user addresses, end exclusive), and one entry per base page in hmmPfns / hmmFlags (input: the
 * request; output: the answer). The columns may be views into a longer array (subarray), as the
 * kernel's umem_odp points range->hmm_pfns into its map's pfn_list.
 */
export interface HmmRange {
  readonly notifier: MmuIntervalNotifier;
  notifierSeq: number;
  readonly start: bigint;
  readonly end: bigint;
  readonly hmmPfns: Float64Array;
  readonly hmmFlags: Uint16Array;
  /** Request flags for every page (HMM_PFN_REQ_FAULT, HMM_PFN_REQ_WRITE). */
  readonly defaultFlags: number;
  /** Which bits of each page's own input flags count (0: only defaultFlags). */
  readonly pfnFlagsMask: number;
}

/** The walk's state (struct hmm_vma_walk): where it restarts after a fault. */
interface Walk {
  readonly range: HmmRange;
  readonly mm: UserMm;
  readonly base: number;
  last: number;
}

const BUSY = 1;

/** hmm_pte_need_fault(). */
function pteNeedFault(range: HmmRange, req: number, cpuFlags: number): number {
  req = (req & range.pfnFlagsMask) | range.defaultFlags;
  if (!(req & HMM_PFN_REQ_FAULT)) return 0;
  if ((req & HMM_PFN_REQ_WRITE) && !(cpuFlags & HMM_PFN_WRITE)) return HMM_NEED_FAULT | HMM_NEED_WRITE_FAULT;
  if (!(cpuFlags & HMM_PFN_VALID)) return HMM_NEED_FAULT;
  return 0;
}

/** hmm_range_need_fault() over entries [i, i + n). */
function rangeNeedFault(range: HmmRange, i: number, n: number, cpuFlags: number): number {
  if (!((range.defaultFlags | range.pfnFlagsMask) & HMM_PFN_REQ_FAULT)) return 0;
  let need = 0;
  for (let k = i; k < i + n; k++) {
    need |= pteNeedFault(range, range.hmmFlags[k], cpuFlags);
    if (need === HMM_NEED_ALL_BITS) break;
  }
  return need;
}

/** hmm_pfns_fill(): entries [i, i + n) get cpuFlags (sticky flags kept) and no pfn. */
function fill(range: HmmRange, i: number, n: number, cpuFlags: number): void {
  const f = range.hmmFlags, p = range.hmmPfns;
  for (let k = i; k < i + n; k++) {
    f[k] = (f[k] & HMM_PFN_INOUT_FLAGS) | cpuFlags;
    p[k] = 0;
  }
}

/** Entries [i, i + n) get pfn0, pfn0 + 1, ... with cpuFlags. */
function setPfns(range: HmmRange, i: number, n: number, pfn0: number, cpuFlags: number): void {
  const f = range.hmmFlags, p = range.hmmPfns;
  for (let k = 0; k < n; k++) {
    f[i + k] = (f[i + k] & HMM_PFN_INOUT_FLAGS) | cpuFlags;
    p[i + k] = pfn0 + k;
  }
}

/**
 * hmm_vma_fault(): faults every page of [addr, end) of vma (for write when asked; EPERM on a mapping
 * without VM_WRITE) and returns BUSY so the walk restarts at addr; EFAULT when a fault fails.
 */
function vmaFault(w: Walk, vma: Vma, addr: number, end: number, required: number): number | Result<never> {
  w.last = addr;
  const write = (required & HMM_NEED_WRITE_FAULT) !== 0;
  if (write && !vma.writable) return err('EPERM', `write fault requested on read-only mapping at ${hex(addr)}`);
  const ps = w.mm.machine.pageSize;
  for (let va = addr; va < end; va += ps) {
    if (w.mm.faultPage(vma, va, write) < 0) return err('EFAULT', `fault at ${hex(va)} failed`);
  }
  return BUSY;
}

/** One pass of walk_page_range(mm, w.last, range.end, &hmm_walk_ops): 0, BUSY, or an error. */
function walkPass(w: Walk): number | Result<never> {
  const { range, mm } = w;
  const ps = mm.machine.pageSize, end = Number(range.end), folios = mm.machine.folios;
  let addr = w.last;
  while (addr < end) {
    const i = (addr - w.base) / ps;
    const v = mm.vmaAt(addr);
    if (v === undefined) {
      // a hole without a VMA (walk->vma == NULL): EFAULT if a fault is needed, else HMM_PFN_ERROR
      let next = end;
      for (const x of mm.vmas) if (x.start > addr) { next = Math.min(next, x.start); break; }
      const n = (next - addr) / ps;
      if (rangeNeedFault(range, i, n, 0)) return err('EFAULT', `no mapping at ${hex(addr)}`);
      fill(range, i, n, HMM_PFN_ERROR);
      addr = next;
      continue;
    }
    const vend = Math.min(end, v.end);
    if (v.kind === VmaKind.PfnMap || v.kind === VmaKind.PfnMapFault) {
      // hmm_vma_walk_test: VM_IO / VM_PFNMAP
      const n = (vend - addr) / ps;
      if (rangeNeedFault(range, i, n, 0)) return err('EFAULT', `VM_PFNMAP mapping at ${hex(addr)}`);
      fill(range, i, n, HMM_PFN_ERROR);
      addr = vend;
      continue;
    }
    const wbit = v.writable ? HMM_PFN_WRITE : 0;
    if (isHugetlbKind(v.kind)) {
      const gl = v.granuleLen, order = Math.log2(gl / ps);
      const hend = Math.min(vend, Math.floor(addr / gl) * gl + gl);
      const pfn = mm.pfnAt(v, addr);
      // writable once a write fault took it (a read fault maps a private huge page read-only)
      const hw = hugetlbWritable(v, Math.floor(addr / gl) - v.slotBase) ? wbit : 0;
      const cpu = (pfn >= 0 ? HMM_PFN_VALID | hw : 0) | order;
      const need = pteNeedFault(range, range.hmmFlags[i], cpu);
      if (need) return vmaFault(w, v, addr, hend, need);
      setPfns(range, i, (hend - addr) / ps, pfn >= 0 ? pfn : 0, cpu);
      addr = hend;
      continue;
    }
    if (v.kind === VmaKind.DevPages) {
      // device memory with struct page (pmem, a P2P BAR's pgmap): mapped in full at mmap
      const n = (vend - addr) / ps, cpu = HMM_PFN_VALID | wbit;
      const need = rangeNeedFault(range, i, n, cpu);
      if (need) return vmaFault(w, v, addr, vend, need);
      setPfns(range, i, n, mm.pfnAt(v, addr), cpu);
      addr = vend;
      continue;
    }
    // anonymous memory: one PMD range at a time (2 MiB at 4 KiB pages, 32 / 512 MiB at 16 / 64 KiB)
    const pmdLen = pmdBytes(ps);
    const pend = Math.min(vend, Math.floor(addr / pmdLen) * pmdLen + pmdLen);
    // a THP slot is a PMD only at 4 KiB pages; at 16 and 64 KiB a 2 MiB folio is PTE-mapped
    if (v.kind === VmaKind.Thp && v.granuleLen === pmdLen) {
      const slot = Math.floor(addr / v.granuleLen) - v.slotBase;
      const leaf = v.leafPfn![slot];
      const n = (pend - addr) / ps;
      if (leaf >= 0) {
        // hmm_vma_handle_pmd: a PMD-mapped THP or the huge zero folio (never writable)
        const hz = folios.kind[v.leafFolio![slot]] === FolioKind.HugeZero;
        const cpu = HMM_PFN_VALID | (hz ? 0 : wbit) | Math.log2(pmdLen / ps); // the map order
        const need = rangeNeedFault(range, i, n, cpu);
        if (need) return vmaFault(w, v, addr, pend, need);
        setPfns(range, i, n, mm.pfnAt(v, addr), cpu);
        addr = pend;
        continue;
      }
      if (leaf === -1) {
        // pmd_none: hmm_vma_walk_hole inside a VMA
        const need = rangeNeedFault(range, i, n, 0);
        if (need) return vmaFault(w, v, addr, pend, need);
        fill(range, i, n, 0);
        addr = pend;
        continue;
      }
    }
    // hmm_vma_handle_pte, page by page
    for (; addr < pend; addr += ps) {
      const k = (addr - w.base) / ps;
      const pfn = mm.pfnAt(v, addr);
      let cpu = 0;
      if (pfn >= 0) cpu = mm.folioAt(v, addr) === ZERO_PAGE_FOLIO ? HMM_PFN_VALID : HMM_PFN_VALID | wbit;
      const need = pteNeedFault(range, range.hmmFlags[k], cpu);
      if (need) return vmaFault(w, v, addr, pend, need);
      range.hmmFlags[k] = (range.hmmFlags[k] & HMM_PFN_INOUT_FLAGS) | cpu;
      range.hmmPfns[k] = pfn >= 0 ? pfn : 0;
    }
  }
  return 0;
}

/**
 * hmm_range_fault(): fills range.hmmPfns / hmmFlags for every base page of [start, end), faulting
 * pages in as requested. Takes no reference on what it returns: the answer is good only while
 * mmuIntervalReadRetry(range.notifier, range.notifierSeq) is false.
 * Errors: EBUSY (the notifier's range was invalidated since mmuIntervalReadBegin: begin again);
 * EFAULT (a page asked to be valid cannot be: no VMA, a VM_PFNMAP / VM_IO mapping, a failed fault,
 * out of memory included); EPERM (write asked on a mapping without write permission); EINVAL
 * (start >= end, as walk_page_range).
 * Kernel note: include/linux/hmm.h documents EINVAL for "a device file vma" and ENOMEM for "out of
 * memory", but mm/hmm.c returns EFAULT for both (hmm_vma_walk_test; VM_FAULT_OOM is in
 * VM_FAULT_ERROR); the model follows the code.
 */
export function hmmRangeFault(range: HmmRange): Result<void> {
  if (range === null || typeof range !== 'object') throw new TypeError(`range must be an HmmRange, got ${describeValue(range)}`);
  if (!(range.notifier instanceof MmuIntervalNotifier)) throw new TypeError(`range.notifier must be an MmuIntervalNotifier, got ${describeValue(range.notifier)}`);
  const mm = range.notifier.mm, ps = mm.machine.pageSize;
  const start = Number(checkAddr('range.start', range.start, 64)), end = Number(checkAddr('range.end', range.end, 64));
  if (start % ps !== 0 || end % ps !== 0) throw new RangeError(`range [${hex(start)}, ${hex(end)}) must be page-aligned`);
  if (start >= end) return err('EINVAL', `empty range [${hex(start)}, ${hex(end)})`);
  const n = (end - start) / ps;
  if (!(range.hmmPfns instanceof Float64Array) || range.hmmPfns.length < n) throw new RangeError(`range.hmmPfns must be a Float64Array of at least ${n} entries`);
  if (!(range.hmmFlags instanceof Uint16Array) || range.hmmFlags.length < n) throw new RangeError(`range.hmmFlags must be a Uint16Array of at least ${n} entries`);
  mm.machine.stats.hmmRangeFaults++;
  const w: Walk = { range, mm, base: start, last: start };
  for (;;) {
    if (mmuIntervalCheckRetry(range.notifier, range.notifierSeq)) return err('EBUSY', 'the range was invalidated since mmu_interval_read_begin');
    const r = walkPass(w);
    if (r === BUSY) continue;
    return r === 0 ? ok() : r as Result<never>;
  }
}
