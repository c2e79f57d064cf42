// iommufd's automatic IOVA allocation (IOMMU_IOAS_MAP / IOMMU_IOAS_MAP_FILE without
// IOMMU_IOAS_MAP_FIXED_IOVA), checked against Linux 7.1.5 drivers/iommu/iommufd/io_pagetable.c:
// iopt_alloc_area_pages() takes the address the alignment comes from (uptr, or the dma-buf's file
// offset) and calls iopt_alloc_iova(): the alignment is roundup_pow_of_two(length), at most the
// address's lowest set bit (when the address is not 0), at most HPAGE_SIZE (2 MiB), and EINVAL
// below the IOAS's iova_alignment; the allowed tree being empty, the search runs over
// [PAGE_SIZE, ULONG_MAX - PAGE_SIZE]; __alloc_iova_check_range() rounds a span's start up, ORs the
// page offset in and wants the result strictly below the span's last byte; the first hole (between
// reserved ranges and areas, interval_tree_for_each_double_span) whose candidate fits wins; ENOSPC
// when none does. The last property adds IOMMU_IOAS_ALLOW_IOVAS: the search then runs over the
// allowed ranges' spans (interval_tree_for_each_span over allowed_itree within that range).

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ioasOn } from '../../../test/fixtures/iommufd.ts';
import { PCI_NODES, makeMachine, pattern } from '../../../test/fixtures/dma-b-machines.ts';
import { GiB, MiB } from '../../base/index.ts';
import { toPciDev, type PciNodeConfig } from '../../pci/index.ts';
import { dmaBufAttachments } from '../dmabuf/index.ts';
import { vfioPciDmabufExport } from '../vfio/index.ts';
import {
  iommufdIoasAlloc, iommufdIoasAllowIovas, iommufdIoasAttach, iommufdIoasClose, iommufdIoasDetach, iommufdIoasIovaRanges, iommufdIoasMap,
  iommufdIoasMapDmabuf, iommufdIoasMapDmabufPal, iommufdIoasUnmap, type Ioas,
} from './index.ts';

const PAGE = 4096;
const P = BigInt(PAGE);
const U64_MAX = (1n << 64n) - 1n;
/** Where a process address that nothing maps lies (an IOAS without a domain never reads it). */
const NOWHERE = 0x4000_0000n;

/** A Result as its errno, or its value in hex. */
const show = (x: { ok: true; value: bigint } | { ok: false; errno: string }): string => (x.ok ? `0x${x.value.toString(16)}` : x.errno);

function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** An IOAS of nvme0 with no domain (iova_alignment 1, no reserved range, nothing pinned). */
function bare(): { m: ReturnType<typeof makeMachine>; ioas: Ioas; mm: ReturnType<ReturnType<typeof makeMachine>['newProcess']> } {
  const m = makeMachine('strict');
  const a = iommufdIoasAlloc(m, m.device('nvme0'), { attach: false });
  if (!a.ok) throw new Error(a.errno);
  return { m, ioas: a.value, mm: m.newProcess() };
}

describe('iommufd automatic IOVA (iopt_alloc_iova)', () => {
  it('never returns IOVA 0: the search starts at PAGE_SIZE, for a page and for a single byte', () => {
    const { ioas, mm } = bare();
    expect(show(iommufdIoasMap(ioas, mm, NOWHERE, PAGE, null))).toBe('0x1000');
    const b = bare();
    expect(show(iommufdIoasMap(b.ioas, b.mm, NOWHERE, 1, null))).toBe('0x1000');
  });

  it('aligns to the length rounded up to a power of two: 3 pages go at the next 16 KiB boundary', () => {
    const { ioas, mm } = bare();
    expect(show(iommufdIoasMap(ioas, mm, NOWHERE, PAGE, null))).toBe('0x1000');
    // roundup_pow_of_two(12 KiB) = 16 KiB; NOWHERE's lowest set bit (1 GiB) does not lower it
    expect(show(iommufdIoasMap(ioas, mm, NOWHERE, 3 * PAGE, null))).toBe('0x4000');
    // 5 pages: 32 KiB
    expect(show(iommufdIoasMap(ioas, mm, NOWHERE, 5 * PAGE, null))).toBe('0x8000');
  });

  it("lowers the alignment to the address's lowest set bit: uptr 4 KiB-aligned only takes the next page, uptr 0 keeps the length's", () => {
    const { ioas, mm } = bare();
    expect(show(iommufdIoasMap(ioas, mm, NOWHERE, PAGE, null))).toBe('0x1000');
    // 8 pages (32 KiB) from an address whose lowest set bit is 4 KiB: 4 KiB alignment
    expect(show(iommufdIoasMap(ioas, mm, NOWHERE + P, 8 * PAGE, null))).toBe('0x2000');
    // the same length from a 1 GiB-aligned address: 32 KiB alignment, past the area just made
    expect(show(iommufdIoasMap(ioas, mm, NOWHERE, 8 * PAGE, null))).toBe('0x10000');
    // address 0 has no lowest set bit: the length alone (16 KiB) decides; the hole [0xa000, 0xffff]
    // rounds up to 0xc000, which holds 12 KiB
    expect(show(iommufdIoasMap(ioas, mm, 0n, 3 * PAGE, null))).toBe('0xc000');
  });

  it('caps the alignment at HPAGE_SIZE (2 MiB): 8 MiB from a 1 GiB-aligned address goes at 2 MiB', () => {
    const { ioas, mm } = bare();
    expect(show(iommufdIoasMap(ioas, mm, NOWHERE, 8 * MiB, null))).toBe('0x200000');
    expect(show(iommufdIoasMap(ioas, mm, NOWHERE, 8 * MiB, null))).toBe('0xa00000');
  });

  it('takes the first hole that fits, lowest IOVA first, skipping holes too small once aligned', () => {
    const { ioas, mm } = bare();
    for (const [iova, len] of [[0x1000n, 0x2000], [0x4000n, 0x1000], [0x10000n, 0x10000]] as const) {
      expect(show(iommufdIoasMap(ioas, mm, NOWHERE, len, iova))).toBe(`0x${iova.toString(16)}`);
    }
    // holes: [0x3000, 0x3fff], [0x5000, 0xffff], [0x20000, ...]
    expect(show(iommufdIoasMap(ioas, mm, NOWHERE, PAGE, null))).toBe('0x3000');
    // 8 KiB-aligned: 0x5000 rounds up to 0x6000, which fits
    expect(show(iommufdIoasMap(ioas, mm, NOWHERE, 2 * PAGE, null))).toBe('0x6000');
    // 64 KiB: [0x5000, 0x5fff] and [0x8000, 0xffff] are too small, 0x20000 is the first that fits
    expect(show(iommufdIoasMap(ioas, mm, NOWHERE, 16 * PAGE, null))).toBe('0x20000');
    // unmapping frees a hole for the next map
    expect(iommufdIoasUnmap(ioas, 0x3000n, PAGE)).toEqual({ ok: true, value: PAGE });
    expect(show(iommufdIoasMap(ioas, mm, NOWHERE, PAGE, null))).toBe('0x3000');
  });

  it("never takes a hole's last byte (__alloc_iova_check_range wants the start strictly below it): a 1-byte map skips a 1-byte hole", () => {
    const { ioas, mm } = bare();
    expect(show(iommufdIoasMap(ioas, mm, NOWHERE, PAGE, 0x1000n))).toBe('0x1000');
    expect(show(iommufdIoasMap(ioas, mm, NOWHERE, PAGE - 1, 0x2001n))).toBe('0x2001');
    // the hole [0x2000, 0x2000] would hold one byte; the kernel passes it over
    expect(show(iommufdIoasMap(ioas, mm, NOWHERE, 1, null))).toBe('0x3000');
    // a 2-byte hole takes a 1-byte map at its first byte
    expect(show(iommufdIoasMap(ioas, mm, NOWHERE, PAGE - 2, 0x3002n))).toBe('0x3002');
    expect(iommufdIoasUnmap(ioas, 0x3000n, 1)).toEqual({ ok: true, value: 1 });
    expect(show(iommufdIoasMap(ioas, mm, NOWHERE, 1, null))).toBe('0x3000');
  });

  it("ORs the address's page offset into the rounded-up start (no domain, alignment 1): 0x1128 | 0x123 is 0x112b", () => {
    const { ioas, mm } = bare();
    // uptr ends in 0x123: alignment min(8, 1) = 1, the page offset 0x123 ORed into PAGE_SIZE
    expect(show(iommufdIoasMap(ioas, mm, NOWHERE + 0x123n, 5, null))).toBe('0x1123');
    // the next hole starts at 0x1128; with 0x123 ORed in: 0x112b, not 0x1128 or 0x1123 + a page
    expect(show(iommufdIoasMap(ioas, mm, NOWHERE + 0x123n, 5, null))).toBe('0x112b');
    expect(ioas.areas.map((a) => a.pageOffset)).toEqual([0x123, 0x123]);
  });

  it("refuses an alignment below the IOAS's iova_alignment with EINVAL (a domain's 4 KiB), for user memory and for a dma-buf's start, nothing attached; a bad length is EINVAL before any search", () => {
    const { m, nvme, ioas } = ioasOn('strict');
    const mm = m.newProcess();
    expect(ioas.iovaAlignment).toBe(PAGE);
    const r = iommufdIoasMap(ioas, mm, NOWHERE + 0x800n, PAGE, null);
    expect(show(r)).toBe('EINVAL');
    // iopt_alloc_iova's own check, not iopt_insert_area's page offset one (which it never reaches)
    expect(r.ok ? '' : r.message).toMatch(/2048-byte alignment .* below the IOAS's 4096-byte IOVA alignment/);
    const buf = vfioPciDmabufExport(m.device('gpu0'), { bar: 0, offset: 0, len: 1 * MiB });
    if (!buf.ok) throw new Error(buf.errno);
    const d = iommufdIoasMapDmabuf(ioas, buf.value, null, { start: 0x800, len: PAGE });
    expect(show(d)).toBe('EINVAL');
    expect(d.ok ? '' : d.message).toMatch(/below the IOAS's 4096-byte IOVA alignment/);
    expect(dmaBufAttachments(nvme)).toEqual([]);
    // iopt_alloc_area_pages() checks the length first: a length too large to fit anywhere but not
    // a multiple of the alignment is EINVAL, not ENOSPC
    expect(show(iommufdIoasMap(ioas, mm, NOWHERE, 2 ** 48 + 1, null))).toBe('EINVAL');
    expect(show(iommufdIoasMap(ioas, mm, NOWHERE, 2 ** 48, null))).toBe('ENOSPC');
    expect(ioas.areas).toEqual([]);
    expect(m.listPins()).toEqual([]);
    iommufdIoasClose(ioas);
    expect(m.teardown()).toBe(0);
  });

  it("keeps out of the domain's aperture: ENOSPC exactly when the length no longer fits below 2^47 (the IOVA is found, then the pin of nothing faults)", () => {
    const m = makeMachine('strict');
    const a = iommufdIoasAlloc(m, m.device('nvme0'));
    if (!a.ok) throw new Error(a.errno);
    const ioas = a.value;
    const mm = m.newProcess();
    // x86-64 4-level: a 47-bit aperture; the MSI window is the device's one reserved region
    expect(ioas.reserved.map((r) => [r.start, r.last])).toEqual([[0xfee0_0000n, 0xfeef_ffffn], [1n << 47n, U64_MAX]]);
    // 2 MiB alignment: the holes are [2 MiB, 0xfedfffff] and [0xff000000 (0xfef00000 rounded up), 2^47 - 1]
    const fits = 2 ** 47 - 0xff00_0000;
    expect(show(iommufdIoasMap(ioas, mm, NOWHERE, fits, null))).toBe('EFAULT');
    expect(show(iommufdIoasMap(ioas, mm, NOWHERE, fits + 2 * MiB, null))).toBe('ENOSPC');
    expect(ioas.areas).toEqual([]);
    expect(m.listPins()).toEqual([]);
    iommufdIoasClose(ioas);
    expect(m.teardown()).toBe(0);
  });

  it("skips the device's reserved MSI window: with [2 MiB, 0xfee00000) taken by a dma-buf, a 2 MiB map goes at 0xff000000, and the device's DMA there reaches the process's memory", () => {
    // gpu0 with an 8 GiB BAR, enough to cover the IOVA space below the MSI window
    const nodes = PCI_NODES.map((n) => (n.name === 'gpu0' ? { ...n, bars: [{ bytes: 8 * GiB, p2p: true, busOffset: 0x1000_0000_0000n }] } : n)) as PciNodeConfig[];
    const { m, nvme, ioas } = ioasOn('strict', { pci: nodes });
    const low = 0xfee0_0000 - 2 * MiB;
    const buf = vfioPciDmabufExport(m.device('gpu0'), { bar: 0, offset: 0, len: low });
    if (!buf.ok) throw new Error(buf.errno);
    expect(show(iommufdIoasMapDmabuf(ioas, buf.value, 0x20_0000n))).toBe('0x200000');
    const mm = m.newProcess();
    const va = mm.mmap({ len: 2 * MiB, backing: 'thp', populate: true });
    if (!va.ok) throw new Error(va.errno);
    expect(va.value % BigInt(2 * MiB)).toBe(0n);
    const r = iommufdIoasMap(ioas, mm, va.value, 2 * MiB, null);
    expect(show(r)).toBe('0xff000000');
    // a page still fits below 2 MiB
    expect(show(iommufdIoasMap(ioas, mm, va.value, PAGE, null))).toBe('0x1000');
    const bytes = pattern(2 * MiB, 21);
    expect(nvme.dmaWrite(0xff00_0000n, bytes).ok).toBe(true);
    const u = mm.readUser(va.value, 2 * MiB);
    expect(u.ok && same(u.value, bytes)).toBe(true);
    iommufdIoasClose(ioas);
    expect(m.listPins()).toEqual([]);
    expect(m.events.count('MODEL-CHECK')).toBe(0);
    expect(m.teardown()).toBe(0);
  });

  it('user memory at an automatic IOVA moves real bytes both ways, and unmapping at the returned IOVA takes the area out', () => {
    const { m, nvme, ioas } = ioasOn('lazy');
    const mm = m.newProcess();
    const va = mm.mmap({ len: 4 * MiB, backing: 'thp', populate: true });
    if (!va.ok) throw new Error(va.errno);
    // 3 pages at a 2 MiB-aligned uptr: 16 KiB alignment, so 0x4000
    const small = iommufdIoasMap(ioas, mm, va.value, 3 * PAGE, null);
    expect(show(small)).toBe('0x4000');
    // 1 MiB from 1 MiB into the buffer: 1 MiB alignment, so 0x100000
    const big = iommufdIoasMap(ioas, mm, va.value + BigInt(MiB), MiB, null);
    expect(show(big)).toBe('0x100000');
    const cpu = pattern(MiB, 31);
    expect(mm.writeUser(va.value + BigInt(MiB), cpu).ok).toBe(true);
    const rd = nvme.dmaRead(0x10_0000n, MiB);
    expect(rd.ok && same(rd.value, cpu)).toBe(true);
    const dev = pattern(3 * PAGE, 32);
    expect(nvme.dmaWrite(0x4000n, dev).ok).toBe(true);
    const u = mm.readUser(va.value, 3 * PAGE);
    expect(u.ok && same(u.value, dev)).toBe(true);
    expect(iommufdIoasUnmap(ioas, 0x4000n, 3 * PAGE)).toEqual({ ok: true, value: 3 * PAGE });
    expect(nvme.dmaRead(0x4000n, PAGE).ok).toBe(false);
    iommufdIoasClose(ioas);
    expect(m.listPins()).toEqual([]);
    expect(m.teardown()).toBe(0);
  });

  it("a dma-buf slice takes its alignment from the file offset (IOPT_ADDRESS_DMABUF): start 64 KiB, 1 MiB long, goes at 64 KiB; the device's DMA there reaches that part of the BAR, through the PAL importer too", () => {
    const m = makeMachine('strict');
    const nvme = m.device('nvme0');
    const gpu = m.device('gpu0');
    const bar = toPciDev(gpu).bars[0].region;
    const a = iommufdIoasAlloc(m, nvme);
    if (!a.ok) throw new Error(a.errno);
    const ioas = a.value;
    const buf = vfioPciDmabufExport(gpu, { bar: 0, offset: 0, len: 4 * MiB });
    if (!buf.ok) throw new Error(buf.errno);
    const r = iommufdIoasMapDmabuf(ioas, buf.value, null, { start: 0x1_0000, len: MiB });
    expect(show(r)).toBe('0x10000');
    const bytes = pattern(MiB, 41);
    expect(nvme.dmaWrite(0x1_0000n, bytes).ok).toBe(true);
    expect(same(m.mem.read(bar.start + 0x1_0000n, MiB), bytes)).toBe(true);
    // the PAL importer: start 2 MiB, 1 MiB long: 1 MiB alignment, the first free 1 MiB boundary past [64 KiB, 1 MiB + 64 KiB)
    const p = iommufdIoasMapDmabufPal(ioas, buf.value, null, { start: 2 * MiB, len: MiB });
    expect(show(p)).toBe('0x200000');
    const back = pattern(PAGE, 42);
    m.mem.write(bar.start + BigInt(2 * MiB), back);
    const rd = nvme.dmaRead(0x20_0000n, PAGE);
    expect(rd.ok && same(rd.value, back)).toBe(true);
    iommufdIoasClose(ioas);
    expect(dmaBufAttachments(nvme)).toEqual([]);
    expect(m.teardown()).toBe(0);
  });

  it('keeps the argument checks: iova must be a u64 bigint or null', () => {
    const { ioas, mm } = bare();
    expect(() => iommufdIoasMap(ioas, mm, NOWHERE, PAGE, undefined as unknown as null)).toThrow(/iova must be a bigint address or null/);
    expect(() => iommufdIoasMap(ioas, mm, NOWHERE, PAGE, -1n)).toThrow(RangeError);
  });
});

// A brute-force reference of the allocator, written from the kernel's rules rather than from the
// model's code: the holes are found from the used ranges' ends (not by a sweep), and for an
// address without a page offset a second reference asks for the lowest aligned IOVA whose bytes
// (two at least: a 1-byte map never takes a hole's last byte) are all free.

interface Span { readonly start: bigint; readonly last: bigint }

const HPAGE = 2n * BigInt(MiB);
const LO = P;
const HI = U64_MAX - P;

/** roundup_pow_of_two(len), lowered to the largest power of two dividing addr (addr not 0), at most 2 MiB. */
function refAlignment(addr: bigint, len: bigint): bigint {
  let a = 1n;
  while (a < len) a *= 2n;
  if (addr !== 0n) {
    let low = 1n;
    while ((addr / low) % 2n === 0n) low *= 2n;
    if (low < a) a = low;
  }
  return a > HPAGE ? HPAGE : a;
}

const isFree = (used: readonly Span[], x: bigint): boolean => !used.some((u) => u.start <= x && x <= u.last);

/** The holes of [from, HI] between used ranges, lowest first. */
function refHoles(used: readonly Span[], from: bigint): Span[] {
  const starts = [from, ...used.map((u) => u.last + 1n)].filter((x) => x >= from && x <= HI && isFree(used, x));
  return [...new Set(starts)].sort((x, y) => (x < y ? -1 : 1)).map((h) => {
    const ends = used.filter((u) => u.start > h).map((u) => u.start - 1n);
    return { start: h, last: ends.reduce((m, e) => (e < m ? e : m), HI) };
  });
}

const covered = (ranges: readonly Span[], x: bigint): boolean => ranges.some((r) => r.start <= x && x <= r.last);

/**
 * The stretches of [PAGE_SIZE, ULONG_MAX - PAGE_SIZE] the allowed ranges cover without a gap (the
 * whole of it when there are none), lowest first: each starts at a covered IOVA whose predecessor
 * is not covered (or at PAGE_SIZE) and runs while the next byte is covered.
 */
function refAllowedSpans(allowed: readonly Span[]): Span[] {
  if (allowed.length === 0) return [{ start: LO, last: HI }];
  const starts = [LO, ...allowed.map((r) => r.start)].filter((x) => x >= LO && x <= HI && covered(allowed, x) && (x === LO || !covered(allowed, x - 1n)));
  return [...new Set(starts)].sort((x, y) => (x < y ? -1 : 1)).map((st) => {
    let e = st;
    for (;;) {
      e = allowed.filter((r) => r.start <= e && e <= r.last).reduce((m, r) => (r.last > m ? r.last : m), e);
      if (e >= HI || !covered(allowed, e + 1n)) break;
      e += 1n;
    }
    return { start: st, last: e > HI ? HI : e };
  });
}

/**
 * What iopt_alloc_iova returns for used ranges, the address and the length, with the IOAS's
 * alignment and allowed ranges: per allowed stretch, its start's candidate must hold the length,
 * then the holes from there to the stretch's end are tried in order.
 */
function refAlloc(used: readonly Span[], addr: bigint, len: bigint, ioasAlign: bigint, allowed: readonly Span[] = []): bigint | 'EINVAL' | 'ENOSPC' {
  const a = refAlignment(addr, len);
  if (a < ioasAlign) return 'EINVAL';
  const po = addr % P;
  const cand = (x: bigint): bigint | null => (x + a - 1n > U64_MAX ? null : (((x + a - 1n) / a) * a) | po);
  const fits = (c: bigint | null, last: bigint): c is bigint => c !== null && c < last && last - c >= len - 1n;
  for (const sp of refAllowedSpans(allowed)) {
    const s = cand(sp.start);
    if (!fits(s, sp.last)) continue;
    for (const h of refHoles(used, s)) {
      if (h.start > sp.last) break;
      const c = cand(h.start);
      if (fits(c, h.last < sp.last ? h.last : sp.last)) return c;
    }
  }
  return 'ENOSPC';
}

/**
 * The lowest multiple of a at or above PAGE_SIZE with max(len, 2) free bytes from it, all inside
 * the allowed ranges (walked byte run by byte run) when there are any, or null.
 */
function refLowest(used: readonly Span[], len: bigint, a: bigint, allowed: readonly Span[] = []): bigint | null {
  const need = len < 2n ? 2n : len;
  const up = (x: bigint): bigint => ((x + a - 1n) / a) * a;
  const inAllowed = (v: bigint): boolean => {
    if (allowed.length === 0) return true;
    for (let x = v; x <= v + need - 1n;) {
      const r = allowed.find((q) => q.start <= x && x <= q.last);
      if (r === undefined) return false;
      x = r.last + 1n;
    }
    return true;
  };
  const free = (v: bigint): boolean => v + need - 1n <= HI && !used.some((u) => u.start <= v + need - 1n && u.last >= v) && inAllowed(v);
  const pts = [LO, ...used.map((u) => u.last + 1n), ...allowed.map((r) => r.start)].map(up).filter((v) => v >= LO && free(v));
  return pts.length === 0 ? null : pts.reduce((m, v) => (v < m ? v : m));
}

const overlaps = (used: readonly Span[], s: Span): boolean => used.some((u) => u.start <= s.last && u.last >= s.start);

/** Checks one automatic map's result against the references and the invariants; returns the new area or null. */
function checkAuto(r: { ok: true; value: bigint } | { ok: false; errno: string }, used: readonly Span[], addr: bigint, len: number, ioasAlign: bigint,
  allowed: readonly Span[] = []): Span | null {
  const L = BigInt(len);
  const want = refAlloc(used, addr, L, ioasAlign, allowed);
  expect(show(r)).toBe(typeof want === 'bigint' ? `0x${want.toString(16)}` : want);
  if (!r.ok) {
    if (r.errno === 'ENOSPC' && addr % P === 0n) expect(refLowest(used, L, refAlignment(addr, L), allowed)).toBe(null);
    return null;
  }
  const at = r.value, area = { start: at, last: at + L - 1n };
  expect(at % refAlignment(addr, L)).toBe(0n);
  expect(at >= LO && area.last <= HI).toBe(true);
  expect(overlaps(used, area)).toBe(false);
  if (allowed.length > 0) expect(covered(allowed, at) && covered(allowed, area.last)).toBe(true);
  if (addr % P === 0n) expect(at).toBe(refLowest(used, L, refAlignment(addr, L), allowed));
  return area;
}

type Op =
  | { readonly k: 'fixed'; readonly where: number; readonly off: number; readonly len: number }
  | { readonly k: 'auto'; readonly addr: number; readonly off: number; readonly len: number }
  | { readonly k: 'huge'; readonly gap: number; readonly delta: number; readonly off: number }
  | { readonly k: 'unmap'; readonly pick: number };

describe('iommufd automatic IOVA against a brute-force reference', () => {
  it('an IOAS with no domain (alignment 1, any byte): random fixed and automatic maps and unmaps', () => {
    const addrs = [0n, NOWHERE, NOWHERE + 0x123n, 0x7f12_3456_7000n, 0x1_0000_0000n];
    const op: fc.Arbitrary<Op> = fc.oneof(
      // where 1: two bytes past an area's end, leaving a 1-byte hole
      fc.record({ k: fc.constant('fixed' as const), where: fc.nat(1), off: fc.nat(0x4_0000), len: fc.oneof(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 0x8000 })) }),
      fc.record({ k: fc.constant('auto' as const), addr: fc.nat(addrs.length - 1), off: fc.oneof(fc.nat(0x3000), fc.nat(3).map((x) => x * PAGE)), len: fc.oneof(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 0x1_0000 }), fc.integer({ min: 1, max: 4 * MiB })) }),
      fc.record({ k: fc.constant('unmap' as const), pick: fc.nat() }),
    );
    fc.assert(fc.property(fc.array(op, { minLength: 5, maxLength: 40 }), (ops) => {
      const { m, ioas, mm } = bare();
      const areas: Span[] = [];
      for (const o of ops) {
        if (o.k === 'fixed') {
          const at = o.where === 1 && areas.length > 0 ? areas[o.off % areas.length].last + 2n : BigInt(o.off);
          const s = { start: at, last: at + BigInt(o.len - 1) };
          const r = iommufdIoasMap(ioas, mm, NOWHERE, o.len, s.start);
          expect(show(r)).toBe(overlaps(areas, s) ? 'EEXIST' : `0x${s.start.toString(16)}`);
          if (r.ok) areas.push(s);
        } else if (o.k === 'auto') {
          // the offset moves the address's low bits: page offsets and lowest set bits of all kinds
          const addr = addrs[o.addr] + BigInt(o.off);
          const got = checkAuto(iommufdIoasMap(ioas, mm, addr, o.len, null), areas, addr, o.len, 1n);
          if (got !== null) areas.push(got);
        } else if (o.k === 'unmap' && areas.length > 0) {
          const [s] = areas.splice(o.pick % areas.length, 1);
          expect(iommufdIoasUnmap(ioas, s.start, Number(s.last - s.start + 1n))).toEqual({ ok: true, value: Number(s.last - s.start + 1n) });
        }
      }
      const key = (s: Span): string => `${s.start}-${s.last}`;
      expect(ioas.areas.map((a) => key({ start: a.iova, last: a.iova + BigInt(a.len) - 1n })).sort()).toEqual(areas.map(key).sort());
      iommufdIoasClose(ioas);
      expect(m.teardown()).toBe(0);
    }), { numRuns: 150, seed: 71 });
  });

  it("an attached IOAS (alignment 4 KiB, the MSI window and the aperture's end reserved): pinned user maps, fixed and automatic, lengths at the size of a hole (ENOSPC only when the reference finds none), unmaps; the device reads each automatic area's bytes", () => {
    const RESERVED: Span[] = [{ start: 0xfee0_0000n, last: 0xfeef_ffffn }, { start: 1n << 47n, last: U64_MAX }];
    const WINDOWS = [0n, 0xfe00_0000n, (1n << 47n) - BigInt(16 * MiB)];
    const BUF_PAGES = 1024;
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ k: fc.constant('fixed' as const), where: fc.nat(WINDOWS.length - 1), off: fc.nat(4095), len: fc.integer({ min: 1, max: 16 }) }),
      // addr: a byte offset into the page, mostly 0 (any other is below the domain's 4 KiB: EINVAL)
      fc.record({ k: fc.constant('auto' as const), addr: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, fc.nat(PAGE - 1)), off: fc.nat(BUF_PAGES - 1), len: fc.integer({ min: 1, max: BUF_PAGES }) }),
      fc.record({ k: fc.constant('huge' as const), gap: fc.nat(), delta: fc.integer({ min: -3, max: 3 }), off: fc.nat(1023) }),
      fc.record({ k: fc.constant('unmap' as const), pick: fc.nat() }),
    );
    fc.assert(fc.property(fc.array(op, { minLength: 10, maxLength: 30 }), (ops) => {
      const { m, nvme, ioas } = ioasOn('lazy');
      expect(ioas.reserved.map((r) => ({ start: r.start, last: r.last }))).toEqual(RESERVED);
      const mm = m.newProcess();
      const va = mm.mmap({ len: BUF_PAGES * PAGE, backing: 'thp', populate: true });
      if (!va.ok) throw new Error(va.errno);
      const cpu = pattern(BUF_PAGES * PAGE, 61);
      expect(mm.writeUser(va.value, cpu).ok).toBe(true);
      const areas: Span[] = [];
      const used = (): Span[] => [...RESERVED, ...areas];
      for (const o of ops) {
        if (o.k === 'fixed') {
          const s = { start: WINDOWS[o.where] + BigInt(o.off) * P, last: WINDOWS[o.where] + BigInt(o.off + o.len) * P - 1n };
          const r = iommufdIoasMap(ioas, mm, va.value, o.len * PAGE, s.start);
          // iopt_check_iova: a reserved range (EINVAL) before an area (EEXIST)
          expect(show(r)).toBe(overlaps(RESERVED, s) ? 'EINVAL' : overlaps(areas, s) ? 'EEXIST' : `0x${s.start.toString(16)}`);
          if (r.ok) areas.push(s);
        } else if (o.k === 'auto') {
          const pages = Math.min(o.len, BUF_PAGES - o.off);
          const uptr = va.value + BigInt(o.off) * P + BigInt(o.addr);
          const got = checkAuto(iommufdIoasMap(ioas, mm, uptr, pages * PAGE, null), used(), uptr, pages * PAGE, P);
          if (got !== null) {
            areas.push(got);
            const rd = nvme.dmaRead(got.start, pages * PAGE);
            expect(rd.ok && same(rd.value, cpu.subarray(o.off * PAGE, (o.off + pages) * PAGE))).toBe(true);
          }
        } else if (o.k === 'huge') {
          // a length at the size of one of the holes (give or take a few pages), from memory that is
          // not there: the allocator runs first, so ENOSPC when nothing fits, else the pin's EFAULT
          const holes = refHoles(used(), LO);
          const h = holes[o.gap % holes.length];
          const len = Number((h.last - h.start + 1n) / P) * PAGE + o.delta * PAGE;
          if (len <= 0 || !Number.isSafeInteger(len)) continue;
          const uptr = 0x1000_0000_0000n + BigInt(o.off) * P;
          const want = refAlloc(used(), uptr, BigInt(len), P);
          const before = ioas.areas.length;
          expect(show(iommufdIoasMap(ioas, mm, uptr, len, null))).toBe(want === 'ENOSPC' ? 'ENOSPC' : 'EFAULT');
          expect(ioas.areas.length).toBe(before);
        } else if (o.k === 'unmap' && areas.length > 0) {
          const [s] = areas.splice(o.pick % areas.length, 1);
          const n = Number(s.last - s.start + 1n);
          expect(iommufdIoasUnmap(ioas, s.start, n)).toEqual({ ok: true, value: n });
        }
      }
      iommufdIoasClose(ioas);
      expect(m.listPins()).toEqual([]);
      expect(m.teardown()).toBe(0);
    }), { numRuns: 40, seed: 72 });
  });
});

type AllowOp =
  | Op
  | { readonly k: 'allow'; readonly ranges: ReadonlyArray<{ readonly where: number; readonly off: number; readonly pages: number; readonly tail: number | 'end'; readonly abut: boolean }> }
  | { readonly k: 'toggle' }
  | { readonly k: 'ranges'; readonly room: number };

describe('iommufd allowed IOVA ranges against a brute-force reference', () => {
  it('random allow-lists (valid and not), fixed and automatic maps, unmaps, detach and attach, IOVA_RANGES: every result as the reference says; the device reads each automatic area while attached', () => {
    const RESERVED: Span[] = [{ start: 0xfee0_0000n, last: 0xfeef_ffffn }, { start: 1n << 47n, last: U64_MAX }];
    // near 0, below and across the MSI window, across the aperture's end, and just under ULONG_MAX - PAGE_SIZE
    const BASES = [0n, 0xfe00_0000n, 0xfee0_0000n - 0x8000n, (1n << 47n) - 0x8000n, U64_MAX - 0x1_ffffn, U64_MAX - 0x1_ffffn];
    const WINDOWS = [0n, 0xfe00_0000n, 0xfee0_0000n - 0x8000n];
    const BUF_PAGES = 64;
    // abut: the range starts right after the one before it in the list (interval_tree_span_iter rolls them into one span)
    const range = fc.record({
      where: fc.nat(BASES.length - 1), off: fc.oneof(fc.constant(0), fc.nat(31)), pages: fc.nat(16), tail: fc.constantFrom<number | 'end'>(-1, -1, -1, 0, 1, 'end'),
      abut: fc.boolean(),
    });
    const op: fc.Arbitrary<AllowOp> = fc.oneof(
      { weight: 3, arbitrary: fc.record({ k: fc.constant('allow' as const), ranges: fc.array(range, { maxLength: 4 }) }) },
      { weight: 2, arbitrary: fc.record({ k: fc.constant('fixed' as const), where: fc.nat(WINDOWS.length - 1), off: fc.nat(31), len: fc.integer({ min: 1, max: 8 }) }) },
      { weight: 5, arbitrary: fc.record({ k: fc.constant('auto' as const), addr: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, fc.nat(PAGE - 1)), off: fc.nat(BUF_PAGES - 1), len: fc.integer({ min: 1, max: 16 }) }) },
      { weight: 2, arbitrary: fc.record({ k: fc.constant('unmap' as const), pick: fc.nat() }) },
      { weight: 1, arbitrary: fc.record({ k: fc.constant('toggle' as const) }) },
      { weight: 1, arbitrary: fc.record({ k: fc.constant('ranges' as const), room: fc.nat(3) }) },
    );
    fc.assert(fc.property(fc.array(op, { minLength: 10, maxLength: 40 }), (ops) => {
      const { m, nvme, ioas } = ioasOn('lazy');
      const mm = m.newProcess();
      const va = mm.mmap({ len: BUF_PAGES * PAGE, backing: 'thp', populate: true });
      if (!va.ok) throw new Error(va.errno);
      const cpu = pattern(BUF_PAGES * PAGE, 81);
      expect(mm.writeUser(va.value, cpu).ok).toBe(true);
      let attached = true;
      let allowed: Span[] = [];
      const areas: Array<Span & { readonly pageOffset: bigint }> = [];
      const reserved = (): Span[] => (attached ? RESERVED : []);
      const used = (): Span[] => [...reserved(), ...areas];
      for (const o of ops) {
        if (o.k === 'allow') {
          const list: Span[] = [];
          for (const r of o.ranges) {
            const prev = list[list.length - 1];
            const start = r.abut && prev !== undefined && prev.last < U64_MAX ? prev.last + 1n : BASES[r.where] + BigInt(r.off) * P;
            // tail -1: a whole number of pages; 0: last = start + pages pages (start == last for 0 pages); 1: one byte
            // more; 'end': up to ULONG_MAX
            const last = r.tail === 'end' ? U64_MAX : start + BigInt(r.pages) * P + BigInt(r.tail);
            list.push({ start, last: last > U64_MAX ? U64_MAX : last });
          }
          // iommufd_ioas_load_iovas: start < last, no two meeting; then iopt_set_allow_iova: none meets a reservation
          const bad = list.some((r, i) => r.start >= r.last || list.slice(0, i).some((q) => overlaps([q], r)));
          const want = bad ? 'EINVAL' : list.some((r) => overlaps(reserved(), r)) ? 'EADDRINUSE' : 'ok';
          const r = iommufdIoasAllowIovas(ioas, list);
          expect(r.ok ? 'ok' : r.errno).toBe(want);
          if (r.ok) allowed = list;
          const key = (x: Span): string => `${x.start}-${x.last}`;
          expect(ioas.allowed.map(key).sort()).toEqual(allowed.map(key).sort());
        } else if (o.k === 'fixed') {
          const s = { start: WINDOWS[o.where] + BigInt(o.off) * P, last: WINDOWS[o.where] + BigInt(o.off + o.len) * P - 1n };
          const r = iommufdIoasMap(ioas, mm, va.value, o.len * PAGE, s.start);
          // the allowed ranges play no part in a fixed map
          expect(show(r)).toBe(overlaps(reserved(), s) ? 'EINVAL' : overlaps(areas, s) ? 'EEXIST' : `0x${s.start.toString(16)}`);
          if (r.ok) areas.push({ ...s, pageOffset: 0n });
        } else if (o.k === 'auto') {
          const pages = Math.min(o.len, BUF_PAGES - o.off);
          const uptr = va.value + BigInt(o.off) * P + BigInt(o.addr);
          const got = checkAuto(iommufdIoasMap(ioas, mm, uptr, pages * PAGE, null), used(), uptr, pages * PAGE, attached ? P : 1n, allowed);
          if (got !== null) {
            areas.push({ ...got, pageOffset: BigInt(o.addr) });
            if (attached) {
              const rd = nvme.dmaRead(got.start, pages * PAGE);
              expect(rd.ok && same(rd.value, cpu.subarray(o.off * PAGE + o.addr, (o.off + pages) * PAGE + o.addr))).toBe(true);
            }
          }
        } else if (o.k === 'unmap' && areas.length > 0) {
          const [s] = areas.splice(o.pick % areas.length, 1);
          const n = Number(s.last - s.start + 1n);
          expect(iommufdIoasUnmap(ioas, s.start, n)).toEqual({ ok: true, value: n });
        } else if (o.k === 'toggle') {
          if (attached) {
            iommufdIoasDetach(ioas);
            attached = false;
          } else {
            // every attach failure here is EADDRINUSE: an area in the MSI window or past the aperture, an
            // area not 4 KiB-aligned (iova or page offset), or an allowed range a reservation would cut
            const clash = areas.some((x) => overlaps(RESERVED, x) || x.start % P !== 0n || x.pageOffset !== 0n) || allowed.some((x) => overlaps(RESERVED, x));
            const r = iommufdIoasAttach(ioas);
            expect(r.ok ? 'ok' : r.errno).toBe(clash ? 'EADDRINUSE' : 'ok');
            attached = r.ok;
            expect(ioas.reserved.length).toBe(attached ? 2 : 0);
          }
        } else if (o.k === 'ranges') {
          // the gaps between reservations, written independently: the two fixed layouts
          const want: Span[] = attached ? [{ start: 0n, last: RESERVED[0].start - 1n }, { start: RESERVED[0].last + 1n, last: RESERVED[1].start - 1n }] : [{ start: 0n, last: U64_MAX }];
          const out = { ranges: want.slice(0, o.room), numIovas: want.length, iovaAlignment: attached ? PAGE : 1 };
          const r = iommufdIoasIovaRanges(ioas, o.room);
          if (o.room < want.length) expect(r).toMatchObject({ ok: false, errno: 'EMSGSIZE', out });
          else expect(r).toEqual({ ok: true, value: out });
        }
      }
      const key = (x: Span): string => `${x.start}-${x.last}`;
      expect(ioas.areas.map((x) => key({ start: x.iova, last: x.iova + BigInt(x.len) - 1n })).sort()).toEqual(areas.map(key).sort());
      iommufdIoasClose(ioas);
      expect(m.listPins()).toEqual([]);
      expect(m.teardown()).toBe(0);
    }), { numRuns: 120, seed: 73 });
  });
});
