// Models: mm/gup.c pin_user_pages / unpin_user_pages (Linux 6.x) and the pin/unpin of N phyrs that the
// phyr proposal planned for mm/gup.c (reference 1.1): one {addr, len} per physically contiguous run,
// built from folios, including device memory without struct page.

import { checkAddr, checkLen, err, hex, ok, type Err, type Result } from '../base/index.ts';
import { PageArray, PhyrList, PhyrListBuilder, RANGE_NOPAGE } from '../phyr/index.ts';
import type { MmMachine } from './machine.ts';
import { TASK_SIZE, UserMm, Vma, VmaKind } from './user-mm.ts';
import './counters.ts';

// FOLL_* values as include/linux/mm_types.h (public) and mm/internal.h (internal) define them.
/** Require a writable mapping (and fault for write). */
export const FOLL_WRITE = 1 << 0;
/** Take a plain reference (get_user_pages); pin_user_* callers must not pass it. */
export const FOLL_GET = 1 << 1;
export const FOLL_DUMP = 1 << 2;
/** Ignore VMA permissions (ptrace). Accepted, not modeled. */
export const FOLL_FORCE = 1 << 3;
export const FOLL_NOWAIT = 1 << 4;
/** Do not fault pages in: a page that is not present fails the pin with EFAULT. */
export const FOLL_NOFAULT = 1 << 5;
export const FOLL_HWPOISON = 1 << 6;
export const FOLL_ANON = 1 << 7;
/** The pin is held indefinitely (RDMA, VFIO). Accepted; migration out of ZONE_MOVABLE/CMA is not modeled. */
export const FOLL_LONGTERM = 1 << 8;
export const FOLL_SPLIT_PMD = 1 << 9;
/** Allow returning PCI P2PDMA (ZONE_DEVICE pgmap) pages; without it they fail with EREMOTEIO. */
export const FOLL_PCI_P2PDMA = 1 << 10;
export const FOLL_INTERRUPTIBLE = 1 << 11;
export const FOLL_HONOR_NUMA_FAULT = 1 << 12;
// Internal (mm/internal.h): gup sets these itself; a caller passing one is a WARN and EINVAL.
export const FOLL_TOUCH = 1 << 16;
export const FOLL_TRIED = 1 << 17;
export const FOLL_REMOTE = 1 << 18;
/** Set internally by pin_user_*: pages must be released with unpin_user_*. */
export const FOLL_PIN = 1 << 19;
export const FOLL_FAST_ONLY = 1 << 20;
export const FOLL_UNLOCKABLE = 1 << 21;
export const FOLL_MADV_POPULATE = 1 << 22;

const PUBLIC_FOLL_MASK = (1 << 13) - 1;
const CALLER_FOLL_MASK = PUBLIC_FOLL_MASK & ~FOLL_GET;

/** What one pin took, so the unpin can give back exactly that (kept in a WeakMap per returned list). */
class PinRecord {
  f: Int32Array;
  r: Float64Array;
  n = 0;
  /** ZONE_DEVICE pfns pinned (one page each). */
  zd: number[] = [];
  pages = 0;
  active = true;
  constructor(readonly mm: UserMm, cap: number) {
    this.f = new Int32Array(Math.max(16, cap));
    this.r = new Float64Array(Math.max(16, cap));
  }
  /** Makes room for `more` entries. */
  reserve(more: number): void {
    const need = this.n + more;
    if (need <= this.f.length) return;
    const cap = Math.max(need, this.f.length * 2);
    const nf = new Int32Array(cap); nf.set(this.f.subarray(0, this.n)); this.f = nf;
    const nr = new Float64Array(cap); nr.set(this.r.subarray(0, this.n)); this.r = nr;
  }
  /** Adds refs pins of folio f (merged into the last entry when it is the same folio). */
  add(f: number, refs: number): void {
    const n = this.n;
    if (n > 0 && this.f[n - 1] === f) { this.r[n - 1] += refs; return; }
    this.reserve(1);
    this.f[n] = f;
    this.r[n] = refs;
    this.n = n + 1;
  }
}

const pins = new WeakMap<object, PinRecord>();

function checkMm(mm: unknown): UserMm {
  if (!(mm instanceof UserMm)) throw new TypeError(`mm must be a UserMm (machine.newProcess()), got ${String(mm)}`);
  return mm;
}

/**
 * What every pin_user_* entry point does first: checks its arguments (TypeError/RangeError), then
 * the caller's gup flags (is_valid_gup_args: FOLL_GET/FOLL_PIN and internal flags are not the
 * caller's to pass: WARN and EINVAL), then counts the call. Returns start as a number, or the EINVAL.
 */
function beginPin(mm: unknown, start: bigint, countName: string, count: number, flags: unknown): number | Err {
  const m = checkMm(mm).machine;
  const st = Number(checkAddr('start', start, 64));
  checkLen(countName, count);
  if (typeof flags !== 'number') throw new TypeError(`gupFlags must be a number, got ${typeof flags} ${String(flags)}`);
  if (!Number.isInteger(flags) || flags < 0 || flags > 0xffffffff) throw new RangeError(`gupFlags must be a u32, got ${flags}`);
  if ((flags & ~CALLER_FOLL_MASK) !== 0) {
    m.events.warn('gup', `invalid gup_flags ${hex(flags)} passed to pin_user_*`, { gupFlags: flags });
    return err('EINVAL', `gupFlags ${hex(flags)} has bits a pin_user_* caller may not pass`);
  }
  m.stats.gupPinCalls++;
  return st;
}

/** VMA-level checks for a pin of [s, e): EFAULT for holes and write to read-only; per-kind rules. */
function checkVmas(mm: UserMm, s: number, e: number, flags: number, legacy: boolean): Err | null {
  if (e > TASK_SIZE) return err('EFAULT', `range [${hex(s)}, ${hex(e)}) extends beyond user space`);
  const bad = mm.checkAccess(s, e, (flags & FOLL_WRITE) !== 0);
  if (bad !== null) return bad;
  let pos = s;
  while (pos < e) {
    const v = mm.vmaAt(pos)!;
    if (legacy && v.kind === VmaKind.PfnMap) {
      // check_vma_flags(): VM_IO | VM_PFNMAP mappings have no struct page to return.
      return err('EFAULT', `mapping at ${hex(v.start)} is a PFN map of ${v.region!.name} (no struct page)`);
    }
    if (v.kind === VmaKind.DevPages && v.region!.kind === 'device' && (flags & FOLL_PCI_P2PDMA) === 0) {
      // try_grab_folio(): P2PDMA pages need FOLL_PCI_P2PDMA.
      return err('EREMOTEIO', `mapping at ${hex(v.start)} holds PCI P2PDMA pages of ${v.region!.name} and FOLL_PCI_P2PDMA is not set`);
    }
    pos = v.end;
  }
  return null;
}

/** Makes a page present (or fails): EFAULT under FOLL_NOFAULT, ENOMEM when the allocator is dry. */
function faultIn(mm: UserMm, v: Vma, va: number, flags: number): number | Err {
  if ((flags & FOLL_NOFAULT) !== 0) return err('EFAULT', `page at ${hex(va)} is not present and FOLL_NOFAULT is set`);
  const pfn = mm.faultPage(v, va);
  if (pfn < 0) return err('ENOMEM', `out of memory faulting ${hex(va)}`);
  return pfn;
}

/** The pfn mapped at va, faulting it in when it is not present (faultIn's errors). */
function presentPfn(mm: UserMm, v: Vma, va: number, flags: number): number | Err {
  const pfn = mm.pfnAt(v, va);
  return pfn >= 0 ? pfn : faultIn(mm, v, va, flags);
}

/**
 * In a hugetlb or THP VMA: the end (exclusive VA) of the step that starts at va in folio f mapped
 * at pfn: the end of the page for a THP slot split into PTEs, else the end of the granule (PMD or
 * huge page), and never beyond the folio.
 */
function folioStepEnd(mm: UserMm, v: Vma, va: number, pfn: number, f: number): number {
  const ps = mm.machine.pageSize, t = mm.machine.folios;
  const granule = Math.floor(va / v.granuleLen);
  const pteMapped = v.kind === VmaKind.Thp && v.leafPfn![granule - v.slotBase] === -2;
  const stepEnd = pteMapped ? (Math.floor(va / ps) + 1) * ps : (granule + 1) * v.granuleLen;
  const folioEnd = va - (va % ps) + (t.head[f] + 2 ** t.order[f] - pfn) * ps;
  return Math.min(stepEnd, folioEnd);
}

function applyPins(m: MmMachine, rec: PinRecord): void {
  const t = m.folios;
  for (let i = 0; i < rec.n; i++) {
    const f = rec.f[i], r = rec.r[i];
    t.refcount[f] += r;
    t.pincount[f] += r;
  }
  for (const pfn of rec.zd) {
    const f = m.zoneDeviceFolio(pfn);
    t.refcount[f] += 1;
    t.pincount[f] += 1;
  }
  m.stats.gupPagesPinned += rec.pages;
  m.stats.gupFoliosVisited += rec.n + rec.zd.length;
}

/**
 * Pins the pages of [alignDown(start), alignDown(start) + nrPages * pageSize): the legacy result, one
 * struct page pointer per base page (PageArray, 8 bytes each). start is rounded down to its page as
 * gup_fast does (start & PAGE_MASK); the PageArray's offset is start's offset in its first page, so its
 * walk covers [start, page-aligned end). Pages are faulted in as needed (they stay mapped even if the
 * pin then fails, as in the kernel).
 * Model deviation: the kernel may return fewer pages than asked (a short pin); the model pins all
 * or nothing, and a failed pin leaves nothing pinned.
 * Errors: EFAULT (a hole in the range, FOLL_WRITE on a read-only mapping, a PFN-mapped device
 * region without struct page, a non-present page under FOLL_NOFAULT); EREMOTEIO (P2PDMA pages
 * without FOLL_PCI_P2PDMA); ENOMEM (faulting ran out of memory); EINVAL (FOLL_GET/FOLL_PIN/internal
 * flags passed, with a WARN). Misuse of argument types throws TypeError/RangeError.
 */
export function pinUserPages(mm: UserMm, start: bigint, nrPages: number, gupFlags: number): Result<PageArray> {
  const st = beginPin(mm, start, 'nrPages', nrPages, gupFlags);
  if (typeof st !== 'number') return st;
  const m = mm.machine, ps = m.pageSize;
  const s = Math.floor(st / ps) * ps;
  const offset = st - s;
  if (nrPages === 0) return ok(new PageArray(new Float64Array(0), { pageSize: ps }));
  const e = s + nrPages * ps;
  const bad = checkVmas(mm, s, e, gupFlags, true);
  if (bad !== null) return bad;
  const pfns = new Float64Array(nrPages);
  let flagsCol: Uint32Array | null = null;
  let flags0 = -1;
  const rec = new PinRecord(mm, 64);
  let i = 0;
  let pos = s;
  while (pos < e) {
    const v = mm.vmaAt(pos)!;
    const vend = Math.min(v.end, e);
    const vflags = v.region === null ? 0 : v.region.rangeFlags;
    const i0 = i;
    if (v.kind === VmaKind.Anon) {
      const lp = v.leafPfn!, lf = v.leafFolio!;
      const g0 = pos / ps - v.slotBase, g1 = vend / ps - v.slotBase;
      for (let g = g0; g < g1; g++) {
        let pfn = lp[g];
        if (pfn < 0) {
          const r = faultIn(mm, v, (g + v.slotBase) * ps, gupFlags);
          if (typeof r !== 'number') return r;
          pfn = r;
        }
        pfns[i++] = pfn;
        rec.add(lf[g], 1);
      }
    } else if (v.kind === VmaKind.DevPages) {
      const p0 = v.basePfn + (pos - v.start) / ps;
      for (let k = 0; k < (vend - pos) / ps; k++) {
        pfns[i++] = p0 + k;
        rec.zd.push(p0 + k);
      }
    } else {
      // Hugetlb and THP: one folio lookup per folio, then its pages.
      let va = pos;
      while (va < vend) {
        const pfn = presentPfn(mm, v, va, gupFlags);
        if (typeof pfn !== 'number') return pfn;
        const f = mm.folioAt(v, va);
        const n = (Math.min(folioStepEnd(mm, v, va, pfn, f), vend) - va) / ps;
        for (let k = 0; k < n; k++) pfns[i++] = pfn + k;
        rec.add(f, n);
        va += n * ps;
      }
    }
    if (flags0 === -1) flags0 = vflags;
    else if (vflags !== flags0 && flagsCol === null) {
      flagsCol = new Uint32Array(nrPages).fill(flags0, 0, i0);
    }
    if (flagsCol !== null) flagsCol.fill(vflags, i0, i);
    pos = vend;
  }
  rec.pages = nrPages;
  applyPins(m, rec);
  const pa = new PageArray(pfns, { pageSize: ps, offset, flags: flagsCol ?? flags0 });
  pins.set(pa, rec);
  return ok(pa);
}

/**
 * The hot loop of pinUserPhyrs over a 4 KiB anonymous VMA: coalesces physically contiguous pages
 * locally, pushes one run at a time, and appends to the pin record in place. Returns an error or null.
 */
function anonPhyrs(mm: UserMm, v: Vma, pos: number, vend: number, gupFlags: number, b: PhyrListBuilder, rec: PinRecord): Err | null {
  const ps = mm.machine.pageSize;
  const lp = v.leafPfn!, lf = v.leafFolio!, base = v.slotBase;
  const g0 = Math.floor(pos / ps) - base, g1 = Math.ceil(vend / ps) - base;
  rec.reserve(g1 - g0);
  const rf = rec.f, rr = rec.r;
  let rn = rec.n;
  let lastF = rn > 0 ? rf[rn - 1] : -1;
  let runAddr = -1, runLen = 0;
  for (let g = g0; g < g1; g++) {
    let pfn = lp[g];
    if (pfn < 0) {
      const r = faultIn(mm, v, (g + base) * ps, gupFlags);
      if (typeof r !== 'number') { rec.n = rn; return r; }
      pfn = r;
    }
    let a = pfn * ps, n = ps;
    if (g === g0 || g === g1 - 1) {
      const pageVa = (g + base) * ps;
      const lo = Math.max(pageVa, pos), hi = Math.min(pageVa + ps, vend);
      a += lo - pageVa;
      n = hi - lo;
    }
    if (runAddr + runLen === a) runLen += n;
    else {
      if (runLen > 0) b.push(runAddr, runLen, 0);
      runAddr = a;
      runLen = n;
    }
    const f = lf[g];
    if (f === lastF) rr[rn - 1] += 1;
    else { rf[rn] = f; rr[rn] = 1; rn++; lastF = f; }
  }
  if (runLen > 0) b.push(runAddr, runLen, 0);
  rec.n = rn;
  return null;
}

/**
 * Pins [start, start+len) and returns it as a phyr list: one {addr, len} per physically contiguous
 * run (adjacent runs with equal flags merge, also across folio and VMA boundaries). Built per folio:
 * a PMD-mapped THP or a hugetlb page is one step whatever its size. start and len need not be
 * page-aligned: the first entry starts at start's offset, the last ends at start+len. Device memory
 * is included with its region's range flags; memory without struct page is not pinned (nothing to
 * pin; the mapping's owner keeps it alive), ZONE_DEVICE and RAM folios are. Each folio gains one pin
 * (and one reference) per base page the range touches in it, as pin_user_pages would count them.
 * Errors: EFAULT (hole, FOLL_WRITE on read-only, non-present under FOLL_NOFAULT); EREMOTEIO (P2PDMA
 * pages without FOLL_PCI_P2PDMA); ENOMEM (faulting); EINVAL (caller-forbidden flags, WARN).
 * Nothing is left pinned on failure.
 */
export function pinUserPhyrs(mm: UserMm, start: bigint, len: number, gupFlags: number): Result<PhyrList> {
  const s = beginPin(mm, start, 'len', len, gupFlags);
  if (typeof s !== 'number') return s;
  const m = mm.machine, ps = m.pageSize;
  if (len === 0) return ok(PhyrList.empty());
  const e = s + len;
  const bad = checkVmas(mm, s, e, gupFlags, false);
  if (bad !== null) return bad;
  let anonPages = 0;
  for (let p = s; p < e;) {
    const v = mm.vmaAt(p)!;
    const z = Math.min(v.end, e);
    if (v.kind === VmaKind.Anon) anonPages += Math.ceil(z / ps) - Math.floor(p / ps);
    p = z;
  }
  const b = new PhyrListBuilder(Math.min(anonPages + 16, 1 << 22));
  const rec = new PinRecord(mm, Math.min(anonPages + 16, 1 << 22));
  let pages = 0;
  let pos = s;
  while (pos < e) {
    const v = mm.vmaAt(pos)!;
    const vend = Math.min(v.end, e);
    if (v.kind === VmaKind.Anon) {
      const r = anonPhyrs(mm, v, pos, vend, gupFlags, b, rec);
      if (r !== null) return r;
      pages += Math.ceil(vend / ps) - Math.floor(pos / ps);
    } else if (v.kind === VmaKind.PfnMap || v.kind === VmaKind.DevPages) {
      b.push(v.basePfn * ps + (pos - v.start), vend - pos, v.region!.rangeFlags);
      if (v.kind === VmaKind.DevPages) {
        const p0 = v.basePfn + Math.floor((pos - v.start) / ps), p1 = v.basePfn + Math.ceil((vend - v.start) / ps);
        for (let p = p0; p < p1; p++) rec.zd.push(p);
        pages += p1 - p0;
      }
    } else {
      let va = pos;
      while (va < vend) {
        const pfn = presentPfn(mm, v, va, gupFlags);
        if (typeof pfn !== 'number') return pfn;
        const f = mm.folioAt(v, va);
        const z = Math.min(folioStepEnd(mm, v, va, pfn, f), vend);
        b.push(pfn * ps + (va % ps), z - va, 0);
        const np = Math.ceil(z / ps) - Math.floor(va / ps);
        rec.add(f, np);
        pages += np;
        va = z;
      }
    }
    pos = vend;
  }
  rec.pages = pages;
  applyPins(m, rec);
  const list = b.build();
  pins.set(list, rec);
  return ok(list);
}

/** Builds a record from the addresses of a list that this module did not return (the (mm, list) form). */
function resolveRecord(mm: UserMm, list: PageArray | PhyrList): PinRecord {
  const m = mm.machine, ps = m.pageSize, t = m.folios;
  const rec = new PinRecord(mm, 64);
  const addPfns = (p0: number, p1: number): void => {
    let p = p0;
    while (p < p1) {
      const f = t.find(p);
      if (f < 0) m.events.bug('gup', `unpin of pfn ${hex(p)} that belongs to no pinned folio`, { pfn: p });
      const end = Math.min(p1, t.head[f] + 2 ** t.order[f]);
      rec.add(f, end - p);
      rec.pages += end - p;
      p = end;
    }
  };
  if (list instanceof PageArray) {
    for (let i = 0; i < list.count; i++) {
      if ((list.flagsAt(i) & RANGE_NOPAGE) !== 0) continue;
      const p = list.pfns[i];
      addPfns(p, p + 1);
    }
  } else {
    for (let i = 0; i < list.count; i++) {
      if ((list.flagsAt(i) & RANGE_NOPAGE) !== 0) continue;
      const a = list.addrNumAt(i), l = list.lenAt(i);
      addPfns(Math.floor(a / ps), Math.ceil((a + l) / ps));
    }
  }
  return rec;
}

function release(mm: UserMm, rec: PinRecord, what: string): void {
  const m = mm.machine, t = m.folios;
  if (!rec.active) m.events.bug('gup', `${what}: the list was already unpinned`);
  const zdIdx: number[] = [];
  for (const pfn of rec.zd) {
    const f = t.byHeadPfn(pfn);
    if (f < 0) m.events.bug('gup', `${what}: ZONE_DEVICE pfn ${hex(pfn)} is not pinned`, { pfn });
    zdIdx.push(f);
  }
  // Drop the pin counts first; if one would go negative, restore what was dropped and BUG, so a
  // bad unpin changes nothing. Only then drop the references (which may free folios).
  const n = rec.n, fs = rec.f, rs = rec.r;
  const undo = (upto: number, zdUpto: number): void => {
    for (let j = 0; j < upto; j++) t.pincount[fs[j]] += rs[j];
    for (let j = 0; j < zdUpto; j++) t.pincount[zdIdx[j]] += 1;
  };
  for (let i = 0; i < n; i++) {
    const f = fs[i];
    const left = t.pincount[f] - rs[i];
    if (left < 0 || t.head[f] < 0) {
      const had = t.pincount[f];
      undo(i, 0);
      m.events.bug('gup', `${what}: folio at pfn ${hex(Math.max(0, t.head[f]))} is not pinned that often (pincount ${had}, unpinning ${rs[i]})`,
        { pincount: had, unpin: rs[i] });
    }
    t.pincount[f] = left;
  }
  for (let i = 0; i < zdIdx.length; i++) {
    const f = zdIdx[i];
    if (t.pincount[f] < 1) {
      undo(n, i);
      m.events.bug('gup', `${what}: ZONE_DEVICE page at pfn ${hex(t.head[f])} is not pinned`, { pfn: t.head[f] });
    }
    t.pincount[f] -= 1;
  }
  rec.active = false;
  for (let i = 0; i < n; i++) m.folioPut(fs[i], rs[i]);
  for (const f of zdIdx) m.folioPut(f, 1);
  m.stats.gupPagesUnpinned += rec.pages;
}

function unpinCommon(a: unknown, b: unknown, kind: 'pages' | 'phyrs'): void {
  const name = kind === 'pages' ? 'unpinUserPages' : 'unpinUserPhyrs';
  const Cls = kind === 'pages' ? PageArray : PhyrList;
  const list = b === undefined ? a : b;
  if (!(list instanceof Cls)) throw new TypeError(`${name}: the list must be a ${Cls.name}, got ${String(list)}`);
  const rec = pins.get(list);
  if (b === undefined) {
    if (rec === undefined) throw new TypeError(`${name}: this ${Cls.name} was not returned by a pin; pass (mm, list)`);
    release(rec.mm, rec, name);
    return;
  }
  const mm = checkMm(a);
  if (rec !== undefined) {
    if (rec.mm !== mm) throw new TypeError(`${name}: the list was pinned in process ${rec.mm.id}, not ${mm.id}`);
    release(mm, rec, name);
    return;
  }
  release(mm, resolveRecord(mm, list as PageArray | PhyrList), name);
}

/**
 * Unpins what pinUserPages returned (unpin_user_pages). `(pages)` or `(mm, pages)`; the second form
 * also accepts a PageArray built elsewhere, resolved to folios by pfn. Unpinning pages that are not
 * pinned (twice, or never) is a kernel BUG: recorded on machine.events and thrown as KernelBug, with
 * nothing changed. Folios whose last reference goes (munmapped while pinned) are freed here.
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
