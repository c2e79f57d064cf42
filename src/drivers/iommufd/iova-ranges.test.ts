// IOMMU_IOAS_IOVA_RANGES and IOMMU_IOAS_ALLOW_IOVAS, checked against Linux 7.1.5
// drivers/iommu/iommufd/ioas.c (iommufd_ioas_iova_ranges, iommufd_ioas_load_iovas,
// iommufd_ioas_allow_iovas) and io_pagetable.c (iopt_set_allow_iova, iopt_reserve_iova,
// iopt_alloc_iova, iopt_check_iova, iopt_table_add_domain, iopt_table_enforce_dev_resv_regions).
// The expected values are worked out from the machine's layout: x86-64 4-level, so a 47-bit
// aperture ([2^47, ULONG_MAX] reserved once attached), and the device's one reserved region, the
// MSI window [0xfee00000, 0xfeefffff].

import { describe, expect, it } from 'vitest';
import { ioasOn } from '../../../test/fixtures/iommufd.ts';
import { makeMachine, pattern } from '../../../test/fixtures/dma-b-machines.ts';
import { MiB } from '../../base/index.ts';
import { iommuGetDomainForDev } from '../../iommu/index.ts';
import {
  iommufdIoasAlloc, iommufdIoasAllowIovas, iommufdIoasAttach, iommufdIoasClose, iommufdIoasDetach, iommufdIoasIovaRanges, iommufdIoasMap,
  iommufdIoasUnmap, type Ioas, type IoasIovaRange,
} from './index.ts';

const PAGE = 4096;
const U64_MAX = (1n << 64n) - 1n;
const TOP = 1n << 47n;
const MSI: IoasIovaRange = { start: 0xfee0_0000n, last: 0xfeef_ffffn };
/** The usable ranges of an attached IOAS of nvme0: below the MSI window, and from it to the aperture's end. */
const ATTACHED_RANGES: IoasIovaRange[] = [{ start: 0n, last: 0xfedf_ffffn }, { start: 0xfef0_0000n, last: TOP - 1n }];
/** A process address that nothing maps (an IOAS with no domain never reads it). */
const NOWHERE = 0x4000_0000n;

/** A Result as its errno, or its value in hex (bigint), or 'ok'. */
const show = (x: { ok: true; value: unknown } | { ok: false; errno: string }): string =>
  (x.ok ? (typeof x.value === 'bigint' ? `0x${x.value.toString(16)}` : 'ok') : x.errno);

function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function setup(attach: boolean): { m: ReturnType<typeof makeMachine>; ioas: Ioas; mm: ReturnType<ReturnType<typeof makeMachine>['newProcess']> } {
  const m = makeMachine('strict');
  const a = iommufdIoasAlloc(m, m.device('nvme0'), { attach });
  if (!a.ok) throw new Error(a.errno);
  return { m, ioas: a.value, mm: m.newProcess() };
}

describe('IOMMU_IOAS_IOVA_RANGES (iommufd_ioas_iova_ranges)', () => {
  it('lists the holes of the reserved tree: all of [0, ULONG_MAX] with no domain, the aperture less the MSI window once attached, all again after detach', () => {
    const { m, ioas, mm } = setup(false);
    expect(iommufdIoasIovaRanges(ioas)).toEqual({ ok: true, value: { ranges: [{ start: 0n, last: U64_MAX }], numIovas: 1, iovaAlignment: 1 } });
    expect(show(iommufdIoasAttach(ioas))).toBe('ok');
    expect(iommufdIoasIovaRanges(ioas)).toEqual({ ok: true, value: { ranges: ATTACHED_RANGES, numIovas: 2, iovaAlignment: PAGE } });
    // an area does not narrow the ranges (only the reserved tree counts), nor does an allowed range
    const va = mm.mmap({ len: 2 * MiB, backing: 'thp', populate: true });
    if (!va.ok) throw new Error(va.errno);
    expect(show(iommufdIoasMap(ioas, mm, va.value, PAGE, 0x10_0000n))).toBe('0x100000');
    expect(show(iommufdIoasAllowIovas(ioas, [{ start: 0x1000n, last: 0xf_ffffn }]))).toBe('ok');
    expect(iommufdIoasIovaRanges(ioas)).toEqual({ ok: true, value: { ranges: ATTACHED_RANGES, numIovas: 2, iovaAlignment: PAGE } });
    iommufdIoasDetach(ioas);
    expect(iommufdIoasIovaRanges(ioas)).toEqual({ ok: true, value: { ranges: [{ start: 0n, last: U64_MAX }], numIovas: 1, iovaAlignment: 1 } });
    iommufdIoasClose(ioas);
    expect(m.teardown()).toBe(0);
  });

  it('merges reserved regions that overlap or abut into one gap, lowest range first (interval_tree_for_each_span)', () => {
    const { m, ioas } = setup(false);
    // one region abutting the MSI window's end, one overlapping a third, all below the aperture's end
    ioas.iommu!.reserveRegion(0xfef0_0000n, 0xff00_0000n, 'reserved');
    ioas.iommu!.reserveRegion(0x10_0000n, 0x20_0000n, 'reserved');
    ioas.iommu!.reserveRegion(0x18_0000n, 0x30_0000n, 'reserved');
    expect(show(iommufdIoasAttach(ioas))).toBe('ok');
    const r = iommufdIoasIovaRanges(ioas);
    expect(r.ok && r.value.ranges).toEqual([
      { start: 0n, last: 0xf_ffffn }, { start: 0x30_0000n, last: 0xfedf_ffffn }, { start: 0xff00_0000n, last: TOP - 1n },
    ]);
    iommufdIoasClose(ioas);
    expect(m.teardown()).toBe(0);
  });

  it('num_iovas smaller than the list: EMSGSIZE carrying the total, the alignment and the ranges that fit; as large or larger: all of them', () => {
    const { m, ioas } = setup(true);
    const r0 = iommufdIoasIovaRanges(ioas, 0);
    expect(r0).toMatchObject({ ok: false, errno: 'EMSGSIZE', out: { ranges: [], numIovas: 2, iovaAlignment: PAGE } });
    const r1 = iommufdIoasIovaRanges(ioas, 1);
    expect(r1).toMatchObject({ ok: false, errno: 'EMSGSIZE', out: { ranges: [ATTACHED_RANGES[0]], numIovas: 2, iovaAlignment: PAGE } });
    expect(iommufdIoasIovaRanges(ioas, 2)).toEqual({ ok: true, value: { ranges: ATTACHED_RANGES, numIovas: 2, iovaAlignment: PAGE } });
    expect(iommufdIoasIovaRanges(ioas, 7)).toEqual({ ok: true, value: { ranges: ATTACHED_RANGES, numIovas: 2, iovaAlignment: PAGE } });
    iommufdIoasClose(ioas);
    expect(m.teardown()).toBe(0);
  });

  it('a destroyed IOAS is ENOENT; num_iovas must be a u32', () => {
    const { m, ioas } = setup(false);
    expect(() => iommufdIoasIovaRanges(ioas, -1)).toThrow(RangeError);
    expect(() => iommufdIoasIovaRanges(ioas, 2 ** 32)).toThrow(/numIovas/);
    expect(() => iommufdIoasIovaRanges(ioas, '1' as unknown as number)).toThrow(TypeError);
    expect(() => iommufdIoasIovaRanges({} as Ioas)).toThrow(/ioas must be an Ioas/);
    iommufdIoasClose(ioas);
    expect(show(iommufdIoasIovaRanges(ioas))).toBe('ENOENT');
    expect(m.teardown()).toBe(0);
  });
});

describe('IOMMU_IOAS_ALLOW_IOVAS (iommufd_ioas_allow_iovas, iopt_set_allow_iova)', () => {
  it('refuses start >= last (a one-byte range too) and a range meeting one given before it with EINVAL; abutting ranges are fine; the old list stays on failure', () => {
    const { m, ioas } = setup(false);
    const old = [{ start: 0x10_0000n, last: 0x1f_ffffn }];
    expect(show(iommufdIoasAllowIovas(ioas, old))).toBe('ok');
    expect(ioas.allowed).toEqual(old);
    expect(show(iommufdIoasAllowIovas(ioas, [{ start: 0x5000n, last: 0x5000n }]))).toBe('EINVAL');
    expect(show(iommufdIoasAllowIovas(ioas, [{ start: 0x6000n, last: 0x5000n }]))).toBe('EINVAL');
    expect(show(iommufdIoasAllowIovas(ioas, [{ start: 0x1000n, last: 0x4fffn }, { start: 0x4fffn, last: 0x8fffn }]))).toBe('EINVAL');
    // the overlap is found whichever comes first in the list
    expect(show(iommufdIoasAllowIovas(ioas, [{ start: 0x4fffn, last: 0x8fffn }, { start: 0x1000n, last: 0x4fffn }]))).toBe('EINVAL');
    expect(ioas.allowed).toEqual(old);
    // abutting: accepted, kept lowest first whatever order they came in
    expect(show(iommufdIoasAllowIovas(ioas, [{ start: 0x5000n, last: 0x8fffn }, { start: 0x1000n, last: 0x4fffn }]))).toBe('ok');
    expect(ioas.allowed).toEqual([{ start: 0x1000n, last: 0x4fffn }, { start: 0x5000n, last: 0x8fffn }]);
    iommufdIoasClose(ioas);
    expect(m.teardown()).toBe(0);
  });

  it('refuses a range meeting a reservation with EADDRINUSE (the MSI window, past the aperture), after checking every range loads; the old list stays; after detach the same list is accepted', () => {
    const { m, ioas } = setup(true);
    const old = [{ start: 0x1000n, last: 0xfffn + 0x10_0000n }];
    expect(show(iommufdIoasAllowIovas(ioas, old))).toBe('ok');
    const msi = [{ start: 0x1_0000_0000n, last: 0x1_ffff_ffffn }, { start: 0xfe00_0000n, last: 0xfee0_0000n }];
    expect(show(iommufdIoasAllowIovas(ioas, msi))).toBe('EADDRINUSE');
    expect(show(iommufdIoasAllowIovas(ioas, [{ start: TOP - 0x1000n, last: TOP }]))).toBe('EADDRINUSE');
    // iommufd_ioas_load_iovas() runs over the whole list before iopt_set_allow_iova() looks at reservations
    expect(show(iommufdIoasAllowIovas(ioas, [...msi, { start: 0x9000n, last: 0x9000n }]))).toBe('EINVAL');
    expect(ioas.allowed).toEqual(old);
    // just outside the window and just below the aperture's end
    expect(show(iommufdIoasAllowIovas(ioas, [{ start: 0xfe00_0000n, last: MSI.start - 1n }, { start: MSI.last + 1n, last: TOP - 1n }]))).toBe('ok');
    iommufdIoasDetach(ioas);
    expect(show(iommufdIoasAllowIovas(ioas, msi))).toBe('ok');
    expect(ioas.allowed).toEqual([msi[1], msi[0]]);
    iommufdIoasClose(ioas);
    expect(m.teardown()).toBe(0);
  });

  it('does not look at areas: a list that leaves an area outside, or covers one, is accepted, and the areas stay', () => {
    const { m, ioas, mm } = setup(false);
    expect(show(iommufdIoasMap(ioas, mm, NOWHERE, PAGE, 0x1_0000n))).toBe('0x10000');
    expect(show(iommufdIoasMap(ioas, mm, NOWHERE, PAGE, 0x100_0000n))).toBe('0x1000000');
    expect(show(iommufdIoasAllowIovas(ioas, [{ start: 0x80_0000n, last: 0x1ff_ffffn }]))).toBe('ok');
    expect(ioas.areas.map((a) => a.iova)).toEqual([0x1_0000n, 0x100_0000n]);
    // the automatic IOVA skips the area inside the allowed range: 0x800000, then past 0x1000000's page
    expect(show(iommufdIoasMap(ioas, mm, NOWHERE, 8 * MiB, null))).toBe('0x800000');
    expect(show(iommufdIoasMap(ioas, mm, NOWHERE, PAGE, null))).toBe('0x1001000');
    iommufdIoasClose(ioas);
    expect(m.teardown()).toBe(0);
  });

  it('is ENOENT on a destroyed IOAS before any range is looked at; bad arguments throw naming them', () => {
    const { m, ioas } = setup(false);
    expect(() => iommufdIoasAllowIovas(ioas, 'x' as unknown as IoasIovaRange[])).toThrow(/ranges must be an array/);
    expect(() => iommufdIoasAllowIovas(ioas, [{ start: 0n, last: 5n }, { start: 9n, last: 7 }] as unknown as IoasIovaRange[])).toThrow(TypeError);
    expect(() => iommufdIoasAllowIovas(ioas, [{ start: 0n, last: 5n }, { start: 9n, last: 7 }] as unknown as IoasIovaRange[])).toThrow(/ranges\[1\]\.last/);
    expect(() => iommufdIoasAllowIovas(ioas, [{ start: -1n, last: 5n }])).toThrow(RangeError);
    expect(() => iommufdIoasAllowIovas(ioas, [null] as unknown as IoasIovaRange[])).toThrow(/ranges\[0\]/);
    iommufdIoasClose(ioas);
    expect(show(iommufdIoasAllowIovas(ioas, [{ start: 5n, last: 5n }]))).toBe('ENOENT');
    expect(m.teardown()).toBe(0);
  });
});

describe('the allowed ranges and automatic IOVAs (iopt_alloc_iova)', () => {
  it('allocates inside the allowed ranges only, ENOSPC once they are full though IOVA is free elsewhere; an empty list lifts the restriction', () => {
    const { m, ioas, mm } = setup(false);
    expect(show(iommufdIoasAllowIovas(ioas, [{ start: 0x10_0000n, last: 0x10_ffffn }]))).toBe('ok');
    expect(show(iommufdIoasMap(ioas, mm, NOWHERE, 0x8000, null))).toBe('0x100000');
    expect(show(iommufdIoasMap(ioas, mm, NOWHERE, 0x8000, null))).toBe('0x108000');
    expect(show(iommufdIoasMap(ioas, mm, NOWHERE, PAGE, null))).toBe('ENOSPC');
    expect(show(iommufdIoasAllowIovas(ioas, []))).toBe('ok');
    expect(ioas.allowed).toEqual([]);
    expect(show(iommufdIoasMap(ioas, mm, NOWHERE, PAGE, null))).toBe('0x1000');
    iommufdIoasClose(ioas);
    expect(m.teardown()).toBe(0);
  });

  it('a map at a fixed IOVA outside the allowed ranges succeeds (iopt_check_iova looks at reserved ranges and areas only)', () => {
    const { m, ioas, mm } = setup(false);
    expect(show(iommufdIoasAllowIovas(ioas, [{ start: 0x10_0000n, last: 0x10_ffffn }]))).toBe('ok');
    expect(show(iommufdIoasMap(ioas, mm, NOWHERE, PAGE, 0x2000n))).toBe('0x2000');
    expect(show(iommufdIoasMap(ioas, mm, NOWHERE, PAGE, 0x10_f800n))).toBe('0x10f800');
    iommufdIoasClose(ioas);
    expect(m.teardown()).toBe(0);
  });

  it('abutting allowed ranges make one span: a 64 KiB map straddles two 32 KiB ranges', () => {
    const { m, ioas, mm } = setup(false);
    expect(show(iommufdIoasAllowIovas(ioas, [{ start: 0x1_8000n, last: 0x1_ffffn }, { start: 0x1_0000n, last: 0x1_7fffn }]))).toBe('ok');
    expect(show(iommufdIoasMap(ioas, mm, NOWHERE, 0x1_0000, null))).toBe('0x10000');
    iommufdIoasClose(ioas);
    // with a one-byte gap between them nothing of 64 KiB fits
    const b = setup(false);
    expect(show(iommufdIoasAllowIovas(b.ioas, [{ start: 0x1_8001n, last: 0x2_0000n }, { start: 0x1_0000n, last: 0x1_7fffn }]))).toBe('ok');
    expect(show(iommufdIoasMap(b.ioas, b.mm, NOWHERE, 0x1_0000, null))).toBe('ENOSPC');
    iommufdIoasClose(b.ioas);
    expect(m.teardown()).toBe(0);
    expect(b.m.teardown()).toBe(0);
  });

  it('passes over a span whose aligned start does not hold the length, and searches within [PAGE_SIZE, ULONG_MAX - PAGE_SIZE] only', () => {
    const { m, ioas, mm } = setup(false);
    // 8 KiB: [0x1000, 0x2fff] rounds up to 0x2000, leaving 4 KiB; the next span takes it
    expect(show(iommufdIoasAllowIovas(ioas, [{ start: 0x1000n, last: 0x2fffn }, { start: 0x1_0000n, last: 0x1_ffffn }]))).toBe('ok');
    expect(show(iommufdIoasMap(ioas, mm, NOWHERE, 2 * PAGE, null))).toBe('0x10000');
    // an allowed range wholly below PAGE_SIZE is never searched
    expect(show(iommufdIoasAllowIovas(ioas, [{ start: 0n, last: 0xfffn }]))).toBe('ok');
    expect(show(iommufdIoasMap(ioas, mm, NOWHERE, 1, null))).toBe('ENOSPC');
    // one from 0 is searched from PAGE_SIZE: never IOVA 0
    expect(show(iommufdIoasAllowIovas(ioas, [{ start: 0n, last: 0x1_ffffn }]))).toBe('ok');
    expect(show(iommufdIoasMap(ioas, mm, NOWHERE, PAGE, null))).toBe('0x1000');
    // the top: [ULONG_MAX - 0x3fff, ULONG_MAX] is cut at ULONG_MAX - PAGE_SIZE, so 12 KiB fits and 16 KiB does not
    expect(show(iommufdIoasAllowIovas(ioas, [{ start: U64_MAX - 0x3fffn, last: U64_MAX }]))).toBe('ok');
    expect(show(iommufdIoasMap(ioas, mm, NOWHERE, 4 * PAGE, null))).toBe('ENOSPC');
    expect(show(iommufdIoasMap(ioas, mm, NOWHERE, 3 * PAGE, null))).toBe('0xffffffffffffc000');
    iommufdIoasClose(ioas);
    expect(m.teardown()).toBe(0);
  });

  it('real bytes through an IOVA allocated inside an allowed range: the device writes, the process reads, and back', () => {
    const { m, nvme, ioas } = ioasOn('lazy');
    const mm = m.newProcess();
    expect(show(iommufdIoasAllowIovas(ioas, [{ start: 0x4000_0000n, last: 0x7fff_ffffn }]))).toBe('ok');
    const va = mm.mmap({ len: 2 * MiB, backing: 'thp', populate: true });
    if (!va.ok) throw new Error(va.errno);
    // a 2 MiB-aligned uptr, 2 MiB long: 2 MiB alignment, the allowed range's first byte
    const r = iommufdIoasMap(ioas, mm, va.value, 2 * MiB, null);
    expect(show(r)).toBe('0x40000000');
    const dev = pattern(2 * MiB, 51);
    expect(nvme.dmaWrite(0x4000_0000n, dev).ok).toBe(true);
    const u = mm.readUser(va.value, 2 * MiB);
    expect(u.ok && same(u.value, dev)).toBe(true);
    const cpu = pattern(PAGE, 52);
    expect(mm.writeUser(va.value + BigInt(MiB), cpu).ok).toBe(true);
    const rd = nvme.dmaRead(0x4010_0000n, PAGE);
    expect(rd.ok && same(rd.value, cpu)).toBe(true);
    // nothing was mapped below the allowed range
    expect(nvme.dmaRead(0x1000n, PAGE).ok).toBe(false);
    expect(iommufdIoasUnmap(ioas, 0x4000_0000n, 2 * MiB)).toEqual({ ok: true, value: 2 * MiB });
    iommufdIoasClose(ioas);
    expect(m.listPins()).toEqual([]);
    expect(m.teardown()).toBe(0);
  });
});

describe('the allowed ranges and attach (iopt_reserve_iova refuses a reservation meeting one)', () => {
  it("an allowed range over the MSI window fails the attach with EADDRINUSE: the device is back in the blocking domain, nothing reserved, the list kept", () => {
    const { m, ioas } = setup(false);
    expect(show(iommufdIoasAllowIovas(ioas, [{ start: 0xfe00_0000n, last: 0xfe_ffff_ffffn }]))).toBe('ok');
    const r = iommufdIoasAttach(ioas);
    expect(show(r)).toBe('EADDRINUSE');
    expect(r.ok ? '' : r.message).toMatch(/reserved region \(msi\).*allowed IOVA range/);
    expect(ioas.domain).toBe(null);
    expect(iommuGetDomainForDev(ioas.dev!)).toBe(ioas.blockingDomain);
    expect(ioas.reserved).toEqual([]);
    expect(ioas.iovaAlignment).toBe(1);
    expect(ioas.allowed).toEqual([{ start: 0xfe00_0000n, last: 0xfe_ffff_ffffn }]);
    expect(iommufdIoasIovaRanges(ioas)).toEqual({ ok: true, value: { ranges: [{ start: 0n, last: U64_MAX }], numIovas: 1, iovaAlignment: 1 } });
    iommufdIoasClose(ioas);
    expect(m.teardown()).toBe(0);
  });

  it("an allowed range past the aperture fails the attach at iopt_table_add_domain with EADDRINUSE, the device's regions reserved just before taken back out; inside the aperture the attach succeeds", () => {
    const { m, ioas } = setup(false);
    expect(show(iommufdIoasAllowIovas(ioas, [{ start: 0x1000n, last: 0xfff_ffffn }, { start: TOP - 0x1000n, last: TOP }]))).toBe('ok');
    const r = iommufdIoasAttach(ioas);
    expect(show(r)).toBe('EADDRINUSE');
    expect(r.ok ? '' : r.message).toMatch(/above the domain's aperture/);
    expect(ioas.domain).toBe(null);
    expect(ioas.reserved).toEqual([]);
    expect(show(iommufdIoasAllowIovas(ioas, [{ start: 0x1000n, last: 0xfff_ffffn }, { start: TOP - 0x1000n, last: TOP - 1n }]))).toBe('ok');
    expect(show(iommufdIoasAttach(ioas))).toBe('ok');
    expect(ioas.reserved.map((x) => [x.start, x.last])).toEqual([[MSI.start, MSI.last], [TOP, U64_MAX]]);
    iommufdIoasClose(ioas);
    expect(m.teardown()).toBe(0);
  });
});
