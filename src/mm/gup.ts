// Models: mm/gup.c (Linux 7.1) pin_user_pages, pin_user_pages_fast and unpin_user_pages, and the pin /
// unpin of N phyrs that Matthew Wilcox's "Phyr Starter" (linux-mm, 10 Jan 2022) planned for mm/gup.c:
// one {addr, len} per physically contiguous run, built from folios, including device memory without
// struct page.
//
// A pin walks page by page as __get_user_pages does: per VMA check_vma_flags, per page the page-table
// lookup (follow_page_mask), a fault if needed (faultin_page), then the folio grab (try_grab_folio).
// The first page that fails ends the walk: the pages before it stay faulted in and pinned and their
// count is returned (a short pin); only when it is the first page is the error returned. What each pin
// took is a record in the machine's pin table (MmMachine.listPins()); the returned list points at it.

import { checkAddr, checkLen, err, hex, ok, type Err, type Result } from '../base/index.ts';
import { PageArray, PhyrList, RANGE_NOPAGE } from '../phyr/index.ts';
import { FolioKind, FolioRecord } from './folio.ts';
import type { GupApi, GupPin } from './pins.ts';
import { TASK_SIZE, UserMm, Vma, VmaKind, ZERO_PAGE_FOLIO, hugetlbWritable, isHugetlbKind, type UserMmHost } from './user-mm.ts';
import './counters.ts';

// FOLL_* values as include/linux/mm_types.h (public) and mm/internal.h (internal) define them (7.1).
// Model deviation: faults never need a retry or I/O and no page is poisoned, so FOLL_NOWAIT,
// FOLL_HWPOISON and FOLL_INTERRUPTIBLE change nothing on the slow path; and FOLL_LONGTERM does not
// migrate pages out of ZONE_MOVABLE or CMA (check_and_migrate_movable_pages): the model's RAM has
// no movable zone.
/** Require a writable mapping (and fault for write). */
export const FOLL_WRITE = 1 << 0;
/** Take a plain reference (get_user_pages); pin_user_* callers must not pass it. */
export const FOLL_GET = 1 << 1;
/** Core dump: no faults, and the zero page / unfaulted anonymous memory fail with EFAULT. Slow path only. */
export const FOLL_DUMP = 1 << 2;
/** Write through a read-only private mapping, breaking COW (ptrace); shared mappings still refuse. */
export const FOLL_FORCE = 1 << 3;
/** Do not wait for I/O in faults (no I/O in the model). Slow path only. */
export const FOLL_NOWAIT = 1 << 4;
/** Do not fault pages in: a page that is not present (or needs a write fault) fails with EFAULT. */
export const FOLL_NOFAULT = 1 << 5;
/** Report hardware-poisoned pages as EHWPOISON (no poison in the model). Slow path only. */
export const FOLL_HWPOISON = 1 << 6;
/** Anonymous mappings only: any other VMA fails with EFAULT. Slow path only. */
export const FOLL_ANON = 1 << 7;
/**
 * The pin is held indefinitely (RDMA, VFIO): fsdax mappings refuse it; a read-only long-term pin of the
 * zero page (or huge zero folio) unshares it into a private page first; migration out of
 * ZONE_MOVABLE/CMA is not modeled.
 */
export const FOLL_LONGTERM = 1 << 8;
/** Split a PMD-mapped THP into PTEs before pinning; hugetlb refuses it (EOPNOTSUPP). Slow path only. */
export const FOLL_SPLIT_PMD = 1 << 9;
/** Allow returning PCI P2PDMA (ZONE_DEVICE pgmap) pages; without it they fail with EREMOTEIO. */
export const FOLL_PCI_P2PDMA = 1 << 10;
/** Let fatal and non-fatal signals interrupt faults (no signals in the model). Slow path only. */
export const FOLL_INTERRUPTIBLE = 1 << 11;
export const FOLL_HONOR_NUMA_FAULT = 1 << 12;
// Internal (mm/internal.h): gup sets these itself; a caller passing one is a WARN.
export const FOLL_TOUCH = 1 << 16;
export const FOLL_TRIED = 1 << 17;
export const FOLL_REMOTE = 1 << 18;
/** Set internally by pin_user_*: pages must be released with unpin_user_*. */
export const FOLL_PIN = 1 << 19;
export const FOLL_FAST_ONLY = 1 << 20;
export const FOLL_UNLOCKABLE = 1 << 21;
export const FOLL_MADV_POPULATE = 1 << 22;

const INTERNAL_GUP_FLAGS = FOLL_TOUCH | FOLL_TRIED | FOLL_REMOTE | FOLL_PIN | FOLL_FAST_ONLY | FOLL_UNLOCKABLE | FOLL_MADV_POPULATE;
/** gup_fast_fallback(): every flag outside this set is a WARN and EINVAL for the *_fast entry points. */
const FAST_GUP_FLAGS = FOLL_WRITE | FOLL_LONGTERM | FOLL_FORCE | FOLL_PIN | FOLL_GET | FOLL_FAST_ONLY |
  FOLL_NOFAULT | FOLL_PCI_P2PDMA | FOLL_HONOR_NUMA_FAULT;

type Host = UserMmHost;
type Pin = GupPin<UserMm>;

/**
 * What pinUserPages / pinUserPagesFast return: the struct page * array of the pages pinned (count is
 * the kernel's return value, possibly fewer than asked: a short pin), linked to its pin record.
 */
export class PinnedPageArray extends PageArray {
  /** @internal The record unpinUserPages releases. */
  readonly pin: Pin;

  /** @internal Built by the pin functions only. */
  constructor(pfns: Float64Array, opts: ConstructorParameters<typeof PageArray>[1], pin: Pin) {
    super(pfns, opts);
    this.pin = pin;
  }
}

/**
 * What pinUserPhyrs returns: the phyr list of what was pinned, linked to its pin record. A short pin
 * covers [start, start + totalLen) with totalLen < the len asked, ending where the first page that
 * could not be pinned starts; nrPages counts the base pages it covers.
 */
export class PinnedPhyrList extends PhyrList {
  /** Base pages the list covers (the count pin_user_pages would return for the same range). */
  readonly nrPages: number;
  /** @internal The record unpinUserPhyrs releases. */
  readonly pin: Pin;

  /** @internal Built by pinUserPhyrs only. */
  constructor(a: Float64Array, l: Float64Array, f: Uint32Array | null, fc: number, count: number, totalLen: number,
    nrPages: number, pin: Pin) {
    super(a, l, f, fc, null, count, totalLen);
    this.nrPages = nrPages;
    this.pin = pin;
  }
}

function checkMm(mm: unknown): UserMm {
  if (!(mm instanceof UserMm)) throw new TypeError(`mm must be a UserMm (machine.newProcess()), got ${String(mm)}`);
  return mm;
}

/**
 * is_valid_gup_args() for a pin_user_* entry point (FOLL_PIN is implied): internal flags, FOLL_GET
 * (FOLL_PIN and FOLL_GET are exclusive) and FOLL_LONGTERM with FOLL_PCI_P2PDMA (a long-term pin would
 * keep the pgmap from being unplugged) are each a WARN. Returns whether the flags are valid.
 */
function validGupArgs(m: Host, flags: number): boolean {
  let why: string | null = null;
  if ((flags & INTERNAL_GUP_FLAGS) !== 0) why = 'internal FOLL_* flags';
  else if ((flags & FOLL_GET) !== 0) why = 'FOLL_GET with FOLL_PIN';
  else if ((flags & FOLL_LONGTERM) !== 0 && (flags & FOLL_PCI_P2PDMA) !== 0) why = 'FOLL_LONGTERM with FOLL_PCI_P2PDMA';
  if (why === null) return true;
  m.events.warn('gup', `is_valid_gup_args: invalid gup_flags ${hex(flags)} (${why})`, { gupFlags: flags });
  return false;
}

/** Checks the arguments common to every pin entry point; returns start as a number. */
function checkArgs(mm: unknown, start: bigint, countName: string, count: number, flags: unknown): number {
  checkMm(mm);
  const st = Number(checkAddr('start', start, 64));
  checkLen(countName, count);
  if (typeof flags !== 'number') throw new TypeError(`gupFlags must be a number, got ${typeof flags} ${String(flags)}`);
  if (!Number.isInteger(flags) || flags < 0 || flags > 0xffffffff) throw new RangeError(`gupFlags must be a u32, got ${flags}`);
  return st;
}

/**
 * The checks of pin_user_pages_fast before any page: is_valid_gup_args, then gup_fast_fallback's flag
 * mask (a WARN), then the range: EOVERFLOW if it wraps, EFAULT if it ends above TASK_SIZE.
 */
function fastEntry(m: Host, s: number, e: number, flags: number): Err | null {
  if (!validGupArgs(m, flags)) return err('EINVAL', `gupFlags ${hex(flags)} are not valid for a pin (WARN)`);
  if ((flags & ~FAST_GUP_FLAGS) !== 0) {
    m.events.warn('gup', `gup_fast_fallback: gup_flags ${hex(flags)} has ${hex(flags & ~FAST_GUP_FLAGS)} outside the fast-path mask`,
      { gupFlags: flags });
    return err('EINVAL', `gupFlags ${hex(flags & ~FAST_GUP_FLAGS)} are not allowed in pin_user_pages_fast (WARN)`);
  }
  if (e > 2 ** 64) return err('EOVERFLOW', `range [${hex(s)}, +${e - s}) wraps the address space`);
  if (e > TASK_SIZE) return err('EFAULT', `range [${hex(s)}, ${hex(e)}) extends beyond user space`);
  return null;
}

/**
 * check_vma_flags() for a VMA the walk enters, in the kernel's order. `pages`: the caller wants struct
 * pages (pin_user_pages*), so a PFN map (VM_IO | VM_PFNMAP) is EFAULT; pinUserPhyrs takes it as ranges.
 */
function checkVma(v: Vma, flags: number, pages: boolean): Err | null {
  const at = hex(v.start);
  // check_vma_flags(): VM_IO | VM_PFNMAP. The model's phyr pin takes a PFN map of a device region as
  // ranges, but never one filled by a fault handler (its pages can be zapped and moved at any time).
  if (v.kind === VmaKind.PfnMapFault) return err('EFAULT', `mapping at ${at} is a PFN map of ${v.ops!.name} (VM_IO | VM_PFNMAP)`);
  if (pages && v.kind === VmaKind.PfnMap) return err('EFAULT', `mapping at ${at} is a PFN map of ${v.region!.name} (no struct page)`);
  if ((flags & FOLL_ANON) !== 0 && !v.anonymous) return err('EFAULT', `FOLL_ANON and the mapping at ${at} is not anonymous`);
  if ((flags & FOLL_LONGTERM) !== 0 && v.fsdax) return err('EOPNOTSUPP', `FOLL_LONGTERM on the fsdax mapping at ${at} (${v.region!.name})`);
  if ((flags & FOLL_SPLIT_PMD) !== 0 && isHugetlbKind(v.kind)) return err('EOPNOTSUPP', `FOLL_SPLIT_PMD on the hugetlb mapping at ${at}`);
  if ((flags & FOLL_WRITE) !== 0 && !v.writable) {
    if ((flags & FOLL_FORCE) === 0) return err('EFAULT', `write access to read-only mapping at ${at}`);
    // FOLL_FORCE writes through a read-only private mapping (copy on write), never a shared one.
    if (v.shared) return err('EFAULT', `FOLL_WRITE | FOLL_FORCE on the read-only shared mapping at ${at}`);
  }
  return null;
}

/** The error for a page that cannot be made present without a fault under FOLL_NOFAULT. */
function noFault(va: number): Err {
  return err('EFAULT', `page at ${hex(va)} needs a fault and FOLL_NOFAULT is set`);
}

/**
 * faultin_page(): FOLL_NOFAULT refuses; else handle_mm_fault, ENOMEM when the allocator is dry.
 * `unshare` (FAULT_FLAG_UNSHARE): replace the zero page or huge zero folio by a private copy
 * without asking for write access; the model's fault does that as a write fault does.
 */
function faultIn(mm: UserMm, v: Vma, va: number, flags: number, unshare = false): number | Err {
  if ((flags & FOLL_NOFAULT) !== 0) return noFault(va);
  const pfn = mm.faultPage(v, va, unshare || (flags & FOLL_WRITE) !== 0);
  return pfn >= 0 ? pfn : err('ENOMEM', `out of memory faulting ${hex(va)}`);
}

/**
 * One page of the walk (follow_page_mask, then faultin_page when needed): the pfn GUP returns for
 * the page at va of v, which has passed checkVma. Afterwards mm.folioAt(v, va) is the folio to grab
 * (ZERO_PAGE_FOLIO: the shared zero page, which takes no pin; never under FOLL_LONGTERM, which
 * unshares it). Errors: EFAULT (FOLL_DUMP on memory
 * that was never faulted in or on a zero page; FOLL_NOFAULT on a page that needs a fault); ENOMEM;
 * EREMOTEIO (P2PDMA page without FOLL_PCI_P2PDMA, try_grab_folio).
 */
function gupPage(mm: UserMm, v: Vma, va: number, flags: number): number | Err {
  const ps = mm.machine.pageSize;
  const write = (flags & FOLL_WRITE) !== 0, dump = (flags & FOLL_DUMP) !== 0, longterm = (flags & FOLL_LONGTERM) !== 0;
  let pfns: Float64Array, folios: Int32Array, i: number;
  switch (v.kind) {
    case VmaKind.PfnMap:
      return mm.pfnAt(v, va);
    case VmaKind.DevPages:
      if (v.region!.kind === 'device' && (flags & FOLL_PCI_P2PDMA) === 0) {
        return err('EREMOTEIO', `page at ${hex(va)} is a PCI P2PDMA page of ${v.region!.name} and FOLL_PCI_P2PDMA is not set`);
      }
      return mm.pfnAt(v, va);
    case VmaKind.Hugetlb: {
      const pfn = mm.pfnAt(v, va);
      if (pfn >= 0) {
        // FOLL_WRITE over a page mapped read-only in a writable mapping takes the write fault first
        // (follow_huge_pmd finds it not writable: hugetlb_wp); without VM_WRITE (FOLL_FORCE) the
        // exclusive page is followed as it is (can_follow_write_common)
        if (write && v.writable && !hugetlbWritable(v, Math.floor(va / v.granuleLen) - v.slotBase)) return faultIn(mm, v, va, flags);
        return pfn;
      }
      // no_page_table(): a core dump does not fault a hugetlb page in.
      if (dump) return err('EFAULT', `FOLL_DUMP and the hugetlb page at ${hex(va)} was never faulted in`);
      return faultIn(mm, v, va, flags);
    }
    case VmaKind.Thp: {
      const slot = Math.floor(va / v.granuleLen) - v.slotBase;
      let leaf = v.leafPfn![slot];
      if (leaf === -1) {
        // pmd_none: no_page_table(), then a fault; the walk retries the page after it.
        if (dump) return err('EFAULT', `FOLL_DUMP and the anonymous page at ${hex(va)} was never faulted in`);
        const r = faultIn(mm, v, va, flags);
        if (typeof r !== 'number') return r;
        leaf = v.leafPfn![slot];
      }
      if (leaf >= 0 && (flags & FOLL_SPLIT_PMD) !== 0) {
        // follow_pmd_mask(): split_huge_pmd, then follow the PTEs.
        mm.splitPmd(v, slot);
        leaf = -2;
      }
      if (leaf >= 0) {
        // A PMD leaf: a folio, or the huge zero folio (follow_huge_pmd).
        if (mm.machine.folios.kind[v.leafFolio![slot]] !== FolioKind.HugeZero) return mm.pfnAt(v, va);
        if (write) return faultIn(mm, v, va, flags);
        if (dump) return err('EFAULT', `FOLL_DUMP and ${hex(va)} maps the huge zero folio`);
        // mm/gup.c: follow_huge_pmd() -> gup_must_unshare(): -EMLINK, then an unshare fault
        // (mm/huge_memory.c: do_huge_pmd_wp_page -> do_huge_zero_wp_pmd) maps a new THP.
        if (longterm) return faultIn(mm, v, va, flags, true);
        return mm.pfnAt(v, va);
      }
      pfns = v.ptePfn!;
      folios = v.pteFolio!;
      i = Math.floor(va / ps) - v.start / ps;
      break;
    }
    default:
      pfns = v.leafPfn!;
      folios = v.leafFolio!;
      i = Math.floor(va / ps) - v.slotBase;
  }
  // A PTE of private anonymous memory (follow_page_pte).
  const pfn = pfns[i];
  if (pfn < 0) {
    if (dump) return err('EFAULT', `FOLL_DUMP and the anonymous page at ${hex(va)} was never faulted in`);
    const r = faultIn(mm, v, va, flags);
    // __get_user_pages() follows the page again after the fault: a read fault mapped the zero page,
    // which a long-term pin unshares (below).
    if (typeof r !== 'number' || !longterm || write || folios[i] !== ZERO_PAGE_FOLIO) return r;
    return faultIn(mm, v, va, flags, true);
  }
  if (folios[i] !== ZERO_PAGE_FOLIO) return pfn;
  // The zero page: a write needs a copy on write (a fault); a read returns it, except for a core dump
  // and for a long-term pin: mm/gup.c follow_page_pte() -> gup_must_unshare() (mm/internal.h) is
  // true for a FOLL_LONGTERM read pin of a page that is not anonymous in a COW mapping, so GUP takes
  // an unshare fault (mm/memory.c: do_wp_page -> wp_page_copy) and pins the private copy instead.
  // Model deviation: the kernel maps that copy read-only (FAULT_FLAG_UNSHARE) until a write fault;
  // the model's PTE permissions follow the VMA.
  if (write) return faultIn(mm, v, va, flags);
  if (dump) return err('EFAULT', `FOLL_DUMP and ${hex(va)} maps the zero page`);
  if (longterm) return faultIn(mm, v, va, flags, true);
  return pfn;
}

/**
 * In a hugetlb or THP VMA: the end (exclusive VA) of the step that starts at the page-aligned va in
 * folio f mapped at pfn: the end of the page for a THP slot split into PTEs, else the end of the
 * granule (PMD or huge page), and never beyond the folio.
 */
function folioStepEnd(mm: UserMm, v: Vma, va: number, pfn: number, f: number): number {
  const ps = mm.machine.pageSize, t = mm.machine.folios;
  const granule = Math.floor(va / v.granuleLen);
  const pteMapped = v.kind === VmaKind.Thp && v.leafPfn![granule - v.slotBase] === -2;
  const stepEnd = pteMapped ? va + ps : (granule + 1) * v.granuleLen;
  const folioEnd = va + (t.head[f] + 2 ** t.order[f] - pfn) * ps;
  return Math.min(stepEnd, folioEnd);
}

/** Base pages of 4 KiB anonymous mappings in the page-aligned [s, e), up to the first hole. */
function anonPagesIn(mm: UserMm, s: number, e: number): number {
  const ps = mm.machine.pageSize;
  let n = 0;
  for (let p = s; p < e;) {
    const v = mm.vmaAt(p);
    if (v === undefined) break;
    const z = Math.min(v.end, e);
    if (v.kind === VmaKind.Anon) n += (z - p) / ps;
    p = z;
  }
  return n;
}

/** Counts a finished walk (its folios are pinned as it goes) and lists it (unless it returned nothing). */
function commit(m: Host, pin: Pin): void {
  m.stats.gupPagesPinned += pin.rec.pages;
  m.stats.gupFoliosVisited += pin.rec.entries;
  if (pin.nrPages > 0) m.pinTable.add(pin);
}

// ---- struct page * arrays (pin_user_pages, pin_user_pages_fast) ----

/**
 * The hot loop of a page-array pin over a 4 KiB anonymous VMA: from entry g, copies the pfns of
 * present private pages; stops at the first entry that is not present or maps the zero page (pfn
 * zp; the caller takes that one slowly). Returns the entry it stopped at.
 */
function anonPagesFast(lp: Float64Array, g: number, g1: number, zp: number, out: Float64Array, i: number): number {
  for (; g < g1; g++, i++) {
    const p = lp[g];
    if (p < 0 || p === zp) break;
    out[i] = p;
  }
  return g;
}

/**
 * out[i..i+n) = pfn, pfn + 1, ...: the base pages of one step into a huge folio (a 1 GiB hugetlb
 * page is 262,144 of them). A small function of locals, so it optimises on its own early.
 */
function fillRun(out: Float64Array, i: number, pfn: number, n: number): void {
  for (let k = 0; k < n; k++) out[i + k] = pfn + k;
}

/** A page-array walk: pfns and per-page flags of what was pinned so far, and the error that stopped it. */
class PagesWalk {
  /** Pages returned so far. */
  i = 0;
  err: Err | null = null;
  flagsCol: Uint32Array | null = null;
  flags0 = -1;
  constructor(readonly mm: UserMm, readonly flags: number, readonly pfns: Float64Array, readonly pin: Pin) {}

  /** Records the range flags of pages [i0, i) (one VMA's pages). */
  setFlags(i0: number, vflags: number): void {
    if (this.flags0 === -1) this.flags0 = vflags;
    else if (vflags !== this.flags0 && this.flagsCol === null) this.flagsCol = new Uint32Array(this.pfns.length).fill(this.flags0, 0, i0);
    if (this.flagsCol !== null) this.flagsCol.fill(vflags, i0, this.i);
  }
}

/** Walks [pos, vend) of v into w; stops at the first page that fails (w.err). */
function walkPages(w: PagesWalk, v: Vma, pos: number, vend: number): void {
  const mm = w.mm, m = mm.machine, ps = m.pageSize, pin = w.pin, out = w.pfns;
  if (v.kind === VmaKind.Anon) {
    const lp = v.leafPfn!, lf = v.leafFolio!, base = v.slotBase, t = m.folios;
    let g = pos / ps - base;
    const g1 = vend / ps - base;
    let chunk = FIRST_CHUNK;
    while (g < g1) {
      const g0 = g, stop = Math.min(g1, g + chunk);
      chunk = CHUNK;
      g = anonPagesFast(lp, g, stop, m.zeroPfnIfAny(), out, w.i);
      w.i += g - g0;
      t.pinEach(lf, g0, g);
      pin.rec.addEach(lf, g0, g);
      if (g === stop) continue;
      const pfn = gupPage(mm, v, (g + base) * ps, w.flags);
      if (typeof pfn !== 'number') { w.err = pfn; break; }
      if (lf[g] >= 0) continue; // faulted in: the fast loop takes it
      out[w.i++] = pfn; // the zero page: returned, not pinned
      g++;
    }
    return;
  }
  for (let va = pos; va < vend;) {
    const pfn = gupPage(mm, v, va, w.flags);
    if (typeof pfn !== 'number') { w.err = pfn; return; }
    const f = v.kind === VmaKind.DevPages ? m.zoneDeviceFolio(pfn) : mm.folioAt(v, va);
    if (f === ZERO_PAGE_FOLIO) { out[w.i++] = pfn; va += ps; continue; }
    const z = Math.min(v.kind === VmaKind.DevPages ? va + ps : folioStepEnd(mm, v, va, pfn, f), vend);
    const n = (z - va) / ps;
    fillRun(out, w.i, pfn, n);
    w.i += n;
    m.folios.pin(f, n);
    pin.rec.add(f, n);
    va = z;
  }
}

/** The walk shared by pinUserPages and pinUserPagesFast, after the entry checks. */
function pinPages(mm: UserMm, api: GupApi, st: number, nrPages: number, gupFlags: number): Result<PinnedPageArray> {
  const m = mm.machine, ps = m.pageSize;
  const s = Math.floor(st / ps) * ps;
  const offset = st - s;
  const e = s + nrPages * ps;
  m.stats.gupPinCalls++;
  const pin = m.pinTable.open(mm, api, s, gupFlags, anonPagesIn(mm, s, e) + 16);
  const w = new PagesWalk(mm, gupFlags, new Float64Array(nrPages), pin);
  let pos = s;
  while (pos < e && w.err === null) {
    const v = mm.vmaAt(pos);
    if (v === undefined) { w.err = err('EFAULT', `no mapping at ${hex(pos)}`); break; }
    w.err = checkVma(v, gupFlags, true);
    if (w.err !== null) break;
    const vend = Math.min(v.end, e);
    const i0 = w.i;
    walkPages(w, v, pos, vend);
    if (w.i > i0) w.setFlags(i0, v.region === null ? 0 : v.region.rangeFlags);
    pos = vend;
  }
  if (w.i === 0 && w.err !== null) return w.err;
  pin.nrPages = w.i;
  pin.len = w.i * ps;
  commit(m, pin);
  const pfns = w.i === nrPages ? w.pfns : w.pfns.slice(0, w.i);
  const flags = w.flagsCol === null ? Math.max(0, w.flags0) : w.flagsCol.slice(0, w.i);
  return ok(new PinnedPageArray(pfns, { pageSize: ps, offset: w.i === 0 ? 0 : offset, flags }, pin));
}

/**
 * pin_user_pages(): pins the pages of [alignDown(start), alignDown(start) + nrPages * pageSize) and
 * returns one struct page pointer per base page (PageArray, 8 bytes each). start is rounded down to
 * its page; the PageArray's offset is start's offset in its first page, so its walk covers [start,
 * page-aligned end). Pages are faulted in as needed (a read-only pin of untouched private memory gets
 * the shared zero page, which takes no pin, unless FOLL_LONGTERM asks for an unshared private copy
 * (mm/internal.h: gup_must_unshare()); FOLL_WRITE gets private pages).
 *
 * The walk stops at the first page that cannot be pinned: the pages before it stay pinned and the
 * result has that many (count < nrPages: a short pin, as the kernel returns it; call again from
 * there to learn why). Only when the first page fails is the error returned:
 * EFAULT (no mapping; FOLL_WRITE on a read-only mapping without FOLL_FORCE, or on a shared one; a PFN
 * map without struct page; FOLL_ANON on a non-anonymous mapping; FOLL_NOFAULT on a page that needs a
 * fault; FOLL_DUMP on an unfaulted or zero page); EREMOTEIO (P2PDMA page without FOLL_PCI_P2PDMA);
 * EOPNOTSUPP (FOLL_LONGTERM on fsdax, FOLL_SPLIT_PMD on hugetlb); ENOMEM (faulting ran out of memory).
 * Flags that is_valid_gup_args refuses (internal flags, FOLL_GET, FOLL_LONGTERM | FOLL_PCI_P2PDMA) are
 * a WARN and, as the kernel's pin_user_pages returns 0, an empty array. Misuse of argument types
 * throws TypeError/RangeError.
 */
export function pinUserPages(mm: UserMm, start: bigint, nrPages: number, gupFlags: number): Result<PinnedPageArray> {
  const st = checkArgs(mm, start, 'nrPages', nrPages, gupFlags);
  const m = mm.machine;
  if (!validGupArgs(m, gupFlags) || nrPages === 0) return ok(emptyPages(mm, 'pin_user_pages', st, gupFlags));
  return pinPages(mm, 'pin_user_pages', st, nrPages, gupFlags);
}

/**
 * pin_user_pages_fast(): as pinUserPages (the same walk: GUP-fast falls back to the slow walk for
 * whatever it cannot pin, so the pages and short pins are the same), with the fast entry's own checks:
 * flags that is_valid_gup_args refuses, and flags outside gup_fast_fallback()'s mask (FOLL_DUMP,
 * FOLL_NOWAIT, FOLL_HWPOISON, FOLL_ANON, FOLL_SPLIT_PMD, FOLL_INTERRUPTIBLE), are a WARN and EINVAL; a
 * range that wraps is EOVERFLOW and one that ends above TASK_SIZE is EFAULT, before any page.
 */
export function pinUserPagesFast(mm: UserMm, start: bigint, nrPages: number, gupFlags: number): Result<PinnedPageArray> {
  const st = checkArgs(mm, start, 'nrPages', nrPages, gupFlags);
  const m = mm.machine, ps = m.pageSize;
  const s = Math.floor(st / ps) * ps;
  const bad = fastEntry(m, s, s + nrPages * ps, gupFlags);
  if (bad !== null) return bad;
  if (nrPages === 0) return ok(emptyPages(mm, 'pin_user_pages_fast', st, gupFlags));
  return pinPages(mm, 'pin_user_pages_fast', st, nrPages, gupFlags);
}

/** A 0-page result: linked to an empty record, so that unpinning it is the no-op it is in the kernel. */
function emptyPages(mm: UserMm, api: GupApi, st: number, gupFlags: number): PinnedPageArray {
  const m = mm.machine;
  const pin = m.pinTable.open(mm, api, st - (st % m.pageSize), gupFlags);
  return new PinnedPageArray(new Float64Array(0), { pageSize: m.pageSize }, pin);
}

// ---- phyr lists (pinUserPhyrs) ----

/**
 * The runs of a phyr walk: closed runs in (a, l, f) columns plus the open run, merged while physically
 * adjacent with equal flags. f is allocated when a run with non-zero flags closes.
 */
class RunSink {
  a: Float64Array;
  l: Float64Array;
  f: Uint32Array | null = null;
  n = 0;
  runA = -1;
  runL = 0;
  runF = 0;
  constructor(cap: number) {
    this.a = new Float64Array(cap);
    this.l = new Float64Array(cap);
  }

  /** Room for `more` more closed runs (plus the open one): exactly that when it is much more. */
  reserve(more: number): void {
    const need = this.n + more + 1;
    if (need <= this.a.length) return;
    const cap = need > this.a.length * 2 ? need : this.a.length * 2;
    const a = new Float64Array(cap); a.set(this.a.subarray(0, this.n)); this.a = a;
    const l = new Float64Array(cap); l.set(this.l.subarray(0, this.n)); this.l = l;
    if (this.f !== null) { const f = new Uint32Array(cap); f.set(this.f.subarray(0, this.n)); this.f = f; }
  }

  /** Closes the open run (if any). */
  close(): void {
    if (this.runL === 0) return;
    this.reserve(1);
    const n = this.n;
    this.a[n] = this.runA;
    this.l[n] = this.runL;
    if (this.runF !== 0 && this.f === null) this.f = new Uint32Array(this.a.length);
    if (this.f !== null) this.f[n] = this.runF;
    this.n = n + 1;
    this.runA = -1;
    this.runL = 0;
    this.runF = 0;
  }

  push(addr: number, len: number, flags: number): void {
    if (this.runL > 0 && this.runA + this.runL === addr && this.runF === flags) { this.runL += len; return; }
    this.close();
    this.runA = addr;
    this.runL = len;
    this.runF = flags;
  }
}

/**
 * An upper bound of the runs that entries [g, g1) of a 4 KiB anonymous VMA make: one per stretch of
 * consecutive pfns (the zero page repeated is not consecutive), plus one per page not present. Exact
 * unless faults create pages that merge. Sizes the list once, exactly, so that it needs no copy and
 * no more memory than it holds.
 */
function anonRunBound(lp: Float64Array, g: number, g1: number): number {
  let n = 0, next = -1;
  for (; g < g1; g++) {
    const p = lp[g];
    if (p !== next || p < 0) n++;
    next = p + 1;
  }
  return n;
}

/**
 * The hot loop of pinUserPhyrs over a 4 KiB anonymous VMA: from entry g, coalesces physically
 * contiguous present private pages into the sink's open run (flags 0); stops at the first entry that
 * is not present or maps the zero page (pfn zp). Returns the entry it stopped at. The caller has
 * reserved room in the sink for every run.
 */
function anonPhyrsFast(lp: Float64Array, g: number, g1: number, zp: number, ps: number, sink: RunSink): number {
  const a = sink.a, l = sink.l;
  let n = sink.n, ra = sink.runA, rl = sink.runL;
  for (; g < g1; g++) {
    const p = lp[g];
    if (p < 0 || p === zp) break;
    const pa = p * ps;
    if (ra + rl === pa) rl += ps;
    else {
      if (rl > 0) { a[n] = ra; l[n] = rl; n++; }
      ra = pa;
      rl = ps;
    }
  }
  sink.n = n;
  sink.runA = ra;
  sink.runL = rl;
  return g;
}

/**
 * Pages per call of the hot loops: the first call of a walk is short, so that the code after the loop
 * has run (and has type feedback) before the loop is optimised on stack; later calls are long.
 */
const FIRST_CHUNK = 64, CHUNK = 1 << 16;

/** A phyr walk's state besides its sink: pages covered, the error that stopped it. */
class PhyrsWalk {
  nrPages = 0;
  err: Err | null = null;
  constructor(readonly mm: UserMm, readonly flags: number, readonly sink: RunSink, readonly pin: Pin) {}
}

/** Walks the page-aligned [pos, vend) of v into w; stops at the first page that fails (w.err). */
function walkPhyrs(w: PhyrsWalk, v: Vma, pos: number, vend: number): void {
  const mm = w.mm, m = mm.machine, ps = m.pageSize, pin = w.pin, sink = w.sink;
  if (v.kind === VmaKind.Anon) {
    const lp = v.leafPfn!, lf = v.leafFolio!, base = v.slotBase, t = m.folios;
    let g = pos / ps - base;
    const g1 = vend / ps - base;
    if (sink.runF !== 0) sink.close();
    sink.reserve(anonRunBound(lp, g, g1));
    let chunk = FIRST_CHUNK;
    const gStart = g;
    while (g < g1) {
      const g0 = g, stop = Math.min(g1, g + chunk);
      chunk = CHUNK;
      g = anonPhyrsFast(lp, g, stop, m.zeroPfnIfAny(), ps, sink);
      t.pinEach(lf, g0, g);
      pin.rec.addEach(lf, g0, g);
      if (g === stop) continue;
      const pfn = gupPage(mm, v, (g + base) * ps, w.flags);
      if (typeof pfn !== 'number') { w.err = pfn; break; }
      if (lf[g] >= 0) continue; // faulted in: the fast loop takes it
      // The zero page: one frame repeated, so it never merges with the run before (or after) it.
      sink.push(pfn * ps, ps, 0);
      g++;
    }
    w.nrPages += g - gStart;
    return;
  }
  if (v.kind === VmaKind.PfnMap) {
    // No struct page: the range is returned, nothing is pinned (the mapping's owner keeps it).
    sink.push(v.basePfn * ps + (pos - v.start), vend - pos, v.region!.rangeFlags);
    w.nrPages += (vend - pos) / ps;
    return;
  }
  const flags = v.region === null ? 0 : v.region.rangeFlags;
  for (let va = pos; va < vend;) {
    const pfn = gupPage(mm, v, va, w.flags);
    if (typeof pfn !== 'number') { w.err = pfn; return; }
    const f = v.kind === VmaKind.DevPages ? m.zoneDeviceFolio(pfn) : mm.folioAt(v, va);
    if (f === ZERO_PAGE_FOLIO) { sink.push(pfn * ps, ps, 0); w.nrPages++; va += ps; continue; }
    const z = Math.min(v.kind === VmaKind.DevPages ? va + ps : folioStepEnd(mm, v, va, pfn, f), vend);
    const n = (z - va) / ps;
    sink.push(pfn * ps, z - va, flags);
    m.folios.pin(f, n);
    pin.rec.add(f, n);
    w.nrPages += n;
    va = z;
  }
}

/**
 * Pins [start, start+len) and returns it as a phyr list: one {addr, len} per physically contiguous
 * run (adjacent runs with equal flags merge, also across folio and VMA boundaries). Built per folio:
 * a PMD-mapped THP or a hugetlb page is one step whatever its size. start and len need not be
 * page-aligned: the first entry starts at start's offset, the last ends at start+len. Device memory
 * is included with its region's range flags; memory without struct page is not pinned (nothing to
 * pin; the mapping's owner keeps it alive), ZONE_DEVICE and RAM folios are. Each folio gains one pin
 * (and one reference) per base page the range touches in it, as pin_user_pages would count them.
 *
 * Pages are faulted in as pin_user_pages_fast does, and the flag rules are its own (see
 * pinUserPagesFast: WARN and EINVAL for flags outside the fast-path mask, FOLL_LONGTERM |
 * FOLL_PCI_P2PDMA, FOLL_GET and internal flags; EOVERFLOW / EFAULT for a range that wraps or ends above
 * TASK_SIZE). A read-only pin of untouched private memory returns the shared zero page (no pin), one
 * entry per page since the same frame repeats and cannot merge; a THP slot at 4 KiB pages returns the
 * huge zero folio (pinned like any folio), one 2 MiB entry per slot (at 16 and 64 KiB pages a THP
 * read fault maps the small zero page, one entry per page). With FOLL_LONGTERM both are unshared first
 * (gup_must_unshare()): the pin gets new private pages, as a write pin would.
 *
 * Short pins: the walk stops at the first page that cannot be pinned. The pages before it stay pinned
 * and the list covers [start, start + list.totalLen), list.totalLen < len, ending where that page
 * starts; list.nrPages counts the base pages it covers (pin_user_pages' return value). Only when the
 * first page fails is the error returned: EFAULT (hole, FOLL_WRITE on read-only without FOLL_FORCE or
 * on a shared mapping, FOLL_NOFAULT on a page that needs a fault); EREMOTEIO (P2PDMA pages without
 * FOLL_PCI_P2PDMA); EOPNOTSUPP (FOLL_LONGTERM on fsdax); ENOMEM (faulting).
 */
export function pinUserPhyrs(mm: UserMm, start: bigint, len: number, gupFlags: number): Result<PinnedPhyrList> {
  const st = checkArgs(mm, start, 'len', len, gupFlags);
  const m = mm.machine, ps = m.pageSize;
  const bad = fastEntry(m, st, st + len, gupFlags);
  if (bad !== null) return bad;
  const s = Math.floor(st / ps) * ps, e = Math.ceil((st + len) / ps) * ps;
  m.stats.gupPinCalls++;
  // Room for one folio per 4 KiB anonymous page up front, so the hot loop never grows anything; the
  // runs are counted per mapping (anonRunBound).
  const pin = m.pinTable.open(mm, 'pin_user_phyrs', st, gupFlags, anonPagesIn(mm, s, e) + 16);
  const w = new PhyrsWalk(mm, gupFlags, new RunSink(16), pin);
  let pos = len === 0 ? e : s;
  while (pos < e && w.err === null) {
    const v = mm.vmaAt(pos);
    if (v === undefined) { w.err = err('EFAULT', `no mapping at ${hex(pos)}`); break; }
    w.err = checkVma(v, gupFlags, false);
    if (w.err !== null) break;
    const vend = Math.min(v.end, e);
    walkPhyrs(w, v, pos, vend);
    pos = vend;
  }
  if (w.nrPages === 0 && w.err !== null) return w.err;
  w.sink.close();
  const sink = w.sink, n = sink.n;
  // The walk was page-granular: trim the first run to start and the last to start + len.
  const end = w.err === null ? st + len : s + w.nrPages * ps;
  if (n > 0) {
    const head = st - s;
    sink.a[0] += head;
    sink.l[0] -= head;
    sink.l[n - 1] -= Math.ceil(end / ps) * ps - end;
  }
  const total = end - st;
  pin.nrPages = w.nrPages;
  pin.len = total;
  commit(m, pin);
  // Keep the columns when they are at least half used; copy them otherwise.
  const small = n * 2 < sink.a.length;
  const a = small ? sink.a.slice(0, n) : sink.a.subarray(0, n);
  const l = small ? sink.l.slice(0, n) : sink.l.subarray(0, n);
  let f: Uint32Array | null = null, fc = 0;
  if (sink.f !== null) {
    const col = sink.f.subarray(0, n);
    fc = col[0];
    if (col.some((x) => x !== fc)) { f = col.slice(); fc = 0; }
  }
  return ok(new PinnedPhyrList(a, l, f, fc, n, total, w.nrPages, pin));
}

// ---- unpin ----

/**
 * For the (mm, list) form with a list that no pin returned: the folios its pfns are in, as
 * unpin_user_pages finds them from a page array (page_folio). Memory without struct page and the zero
 * page hold none (gup_put_folio skips is_zero_folio). A pfn in no folio is a BUG.
 */
function listFolios(mm: UserMm, list: PageArray | PhyrList): FolioRecord {
  const m = mm.machine, ps = m.pageSize, t = m.folios;
  const pageCols = list instanceof PageArray ? list.columns() : null;
  const runCols = list instanceof PageArray ? null : list.columns();
  const cols = pageCols ?? runCols!;
  const out = new FolioRecord();
  let f = -1, fHead = 0, fEnd = 0;
  for (let i = 0; i < cols.n; i++) {
    if (((cols.f === null ? cols.fc : cols.f[i]) & RANGE_NOPAGE) !== 0) continue;
    let p: number, p1: number;
    if (pageCols !== null) {
      p = pageCols.pfn[i];
      p1 = p + 1;
    } else {
      p = Math.floor(runCols!.a[i] / ps);
      p1 = Math.ceil((runCols!.a[i] + runCols!.l[i]) / ps);
    }
    while (p < p1) {
      if (p < fHead || p >= fEnd) {
        if (m.isZeroPfn(p)) { p++; continue; }
        f = t.find(p);
        if (f < 0) m.events.bug('gup', `unpin of pfn ${hex(p)} that belongs to no pinned folio`, { pfn: p });
        fHead = t.head[f];
        fEnd = fHead + 2 ** t.order[f];
      }
      const end = Math.min(p1, fEnd);
      out.add(f, end - p);
      p = end;
    }
  }
  return out;
}

/**
 * unpin_user_pages for one list: drops every pin of its record (the pin's own, or one found from the
 * list's pfns), then every reference (freeing folios whose last reference goes). A list unpinned
 * twice, or pins that are not held, are a BUG with nothing changed.
 */
function release(mm: UserMm, list: PageArray | PhyrList, pin: Pin | undefined, what: string): void {
  const m = mm.machine, t = m.folios;
  if (pin !== undefined && !pin.active) m.events.bug('gup', `${what}: the list was already unpinned`);
  const rec = pin === undefined ? listFolios(mm, list) : pin.rec;
  const bad = t.unpinRecord(rec);
  if (bad >= 0) {
    const x = rec.v[bad], f = x >= 0 ? x : -x - 1, r = x >= 0 ? 1 : rec.v[bad + 1];
    m.events.bug('gup', `${what}: folio at pfn ${hex(Math.max(0, t.head[f]))} is not pinned that often (pincount ${t.pincount[f]}, unpinning ${r})`,
      { pincount: t.pincount[f], unpin: r });
  }
  m.putRecord(rec);
  m.stats.gupPagesUnpinned += rec.pages;
  if (pin !== undefined) {
    pin.active = false;
    m.pinTable.remove(pin);
  }
}

function unpinCommon(a: unknown, b: unknown, kind: 'pages' | 'phyrs'): void {
  const name = kind === 'pages' ? 'unpinUserPages' : 'unpinUserPhyrs';
  const Cls = kind === 'pages' ? PageArray : PhyrList;
  const list = b === undefined ? a : b;
  if (!(list instanceof Cls)) throw new TypeError(`${name}: the list must be a ${Cls.name}, got ${String(list)}`);
  const l = list as PageArray | PhyrList;
  const pin = l instanceof PinnedPageArray || l instanceof PinnedPhyrList ? l.pin : undefined;
  if (b === undefined) {
    if (pin === undefined) throw new TypeError(`${name}: this ${Cls.name} was not returned by a pin; pass (mm, list)`);
    release(pin.mm, l, pin, name);
    return;
  }
  const mm = checkMm(a);
  if (pin !== undefined && pin.mm !== mm) throw new TypeError(`${name}: the list was pinned in process ${pin.mm.id}, not ${mm.id}`);
  release(mm, l, pin, name);
}

/**
 * Unpins what pinUserPages / pinUserPagesFast returned (unpin_user_pages). `(pages)` or `(mm, pages)`;
 * the second form also accepts a PageArray built elsewhere, resolved to folios by pfn. Zero-page
 * entries hold no pin and release none. Unpinning pages that are not pinned (twice, or never) is a
 * kernel BUG: recorded on machine.events and thrown as KernelBug, with nothing changed. Folios whose
 * last reference goes (munmapped while pinned) are freed here.
 */
export function unpinUserPages(pages: PageArray): void;
export function unpinUserPages(mm: UserMm, pages: PageArray): void;
export function unpinUserPages(a: UserMm | PageArray, b?: PageArray): void {
  unpinCommon(a, b, 'pages');
}

/** Unpins what pinUserPhyrs returned; `(list)` or `(mm, list)`, with the same rules as unpinUserPages. */
export function unpinUserPhyrs(list: PhyrList): void;
export function unpinUserPhyrs(mm: UserMm, list: PhyrList): void;
export function unpinUserPhyrs(a: UserMm | PhyrList, b?: PhyrList): void {
  unpinCommon(a, b, 'phyrs');
}

/**
 * Pins a whole range the way callers do that loop over pin calls (drivers/infiniband/core/umem.c:
 * ib_umem_get()'s `while (npages)`; drivers/iommu/iommufd/pages.c: pfn_reader_user_pin()): a short
 * pin is not an error, the next call goes on from where it stopped; only a call that pins nothing
 * fails the whole, with its errno. EFAULT when a retry gets no further than the pin before it.
 * Model deviation: the result is one pinned list, so after a short pin the rest is pinned (faulting
 * it in, or learning the errno), both pins let go and the whole range pinned again; the pages and
 * pincounts at the end are those of the caller's loop.
 */
export function pinUserPhyrsAll(mm: UserMm, start: bigint, len: number, gupFlags: number): Result<PinnedPhyrList> {
  return pinWhole((at, n) => pinUserPhyrs(mm, at, n, gupFlags), (l) => l.totalLen, (l) => unpinUserPhyrs(l), start, len, 1, 'bytes');
}

/** pinUserPhyrsAll for a page array: pin_user_pages_fast of nrPages from the page-aligned `start`. */
export function pinUserPagesAll(mm: UserMm, start: bigint, nrPages: number, gupFlags: number): Result<PinnedPageArray> {
  return pinWhole((at, n) => pinUserPages(mm, at, n, gupFlags), (a) => a.count, (a) => unpinUserPages(a), start, nrPages,
    mm.machine.pageSize, 'pages');
}

function pinWhole<T>(pin: (at: bigint, n: number) => Result<T>, got: (t: T) => number, unpin: (t: T) => void,
  start: bigint, n: number, unit: number, what: string): Result<T> {
  let r = pin(start, n);
  while (r.ok && got(r.value) < n) {
    const have = got(r.value);
    const at = start + BigInt(have * unit);
    const rest = pin(at, n - have);
    unpin(r.value);
    if (!rest.ok) return err(rest.errno, `pinned ${have} of ${n} ${what}; at 0x${at.toString(16)}: ${rest.message ?? rest.errno}`);
    unpin(rest.value);
    r = pin(start, n);
    if (r.ok && got(r.value) <= have) {
      unpin(r.value);
      return err('EFAULT', `pinned ${have} of ${n} ${what}, and no further on a retry at 0x${at.toString(16)}`);
    }
  }
  return r;
}
