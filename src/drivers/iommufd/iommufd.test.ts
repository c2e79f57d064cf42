import { describe, expect, it } from 'vitest';
import { makeMachine, pattern } from '../../../test/fixtures/dma-b-machines.ts';
import { MiB } from '../../base/index.ts';
import { DMA_BIDIRECTIONAL, dmaMapPhys, dmaUnmapPhys } from '../../dma/index.ts';
import { IOMMU_CACHE, IOMMU_MMIO, iommuGetDmaDomain, iommuGetDomainForDev, iommuIovaToPhys } from '../../iommu/index.ts';
import { toPciDev } from '../../pci/index.ts';
import { dmaBufAttachments, dmaBufRevoke, systemHeapAlloc } from '../dmabuf/index.ts';
import { vfioPciDmabufExport, vfioPciReset, vfioPciSetMemoryEnabled } from '../vfio/index.ts';
import {
  iommufdIoasAlloc, iommufdIoasAttach, iommufdIoasClose, iommufdIoasDetach, iommufdIoasMap, iommufdIoasMapDmabuf, iommufdIoasOf, iommufdIoases,
  iommufdIoasUnmap, type Ioas,
} from './index.ts';

/** A Result as its errno, or 'ok'. */
const errno = (x: { ok: boolean; errno?: string }): string => (x.ok ? 'ok' : x.errno!);

const PAGE = 4096;
const IOVA = 0x1000_0000n;

function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}


/**
 * A strict machine, a process with 16 populated pages at va, a VFIO dma-buf `one` of the first 16
 * pages of gpu0's BAR 0, and an IOAS on nvme0 (made in that order).
 */
function strictWithSlice() {
  const m = makeMachine('strict');
  const nvme = m.device('nvme0');
  const gpu = m.device('gpu0');
  const mm = m.newProcess();
  const va = mm.mmap({ len: 16 * PAGE, backing: 'anon', populate: true });
  if (!va.ok) throw new Error(va.errno);
  const one = vfioPciDmabufExport(gpu, { bar: 0, offset: 0, len: 16 * PAGE });
  if (!one.ok) throw new Error(one.errno);
  const ioas = iommufdIoasAlloc(m, nvme);
  if (!ioas.ok) throw new Error(ioas.errno);
  return { m, nvme, gpu, mm, va: va.value, one: one.value, ioas: ioas.value };
}

describe('iommufd IOAS', () => {
  it('the acceptance shape: a VFIO BAR slice mapped in an IOAS, device DMA reaches the BAR both ways; revoke unmaps and the IOTLB forgets it', () => {
    const m = makeMachine('strict');
    const gpu = m.device('gpu0');
    const nvme = m.device('nvme0');
    const bar = toPciDev(gpu).bars[0].region;
    const buf = vfioPciDmabufExport(gpu, { bar: 0, offset: 0, len: 1 * MiB });
    if (!buf.ok) throw new Error(buf.errno);
    const def = iommuGetDomainForDev(nvme);
    const ioas = iommufdIoasAlloc(m, nvme);
    if (!ioas.ok) throw new Error(ioas.errno);
    // the device left its DMA-API domain for the IOAS's own
    expect(iommuGetDomainForDev(nvme)).toBe(ioas.value.domain);
    expect(ioas.value.domain!.type).toBe('unmanaged');
    expect(nvme.dmaIommu).toBe(false);
    const r = iommufdIoasMapDmabuf(ioas.value, buf.value, IOVA);
    expect(r).toEqual({ ok: true, value: IOVA });
    expect(ioas.value.areas[0].prot & IOMMU_MMIO).toBe(IOMMU_MMIO);
    expect(ioas.value.areas[0].prot & IOMMU_CACHE).toBe(0);
    const bytes = pattern(1 * MiB, 5);
    expect(nvme.dmaWrite(IOVA, bytes).ok).toBe(true);
    expect(same(m.mem.read(bar.start, 1 * MiB), bytes)).toBe(true);
    const back = pattern(64 * 1024, 6);
    m.mem.write(bar.start + 0x8000n, back);
    const rd = nvme.dmaRead(IOVA + 0x8000n, back.length);
    expect(rd.ok && same(rd.value, back)).toBe(true);
    // the attachment is pinned by iommufd
    const att = dmaBufAttachments(nvme)[0];
    expect(att.pinCount).toBe(1);
    // revoke: the exporter invalidates, iommufd unmaps, the device's DMA at the IOVA faults
    const faults = m.stats.deviceDmaFaults;
    dmaBufRevoke(buf.value);
    expect(iommuIovaToPhys(ioas.value.domain!, IOVA)).toBe(0n);
    expect(nvme.dmaWrite(IOVA, new Uint8Array(PAGE)).ok).toBe(false);
    expect(nvme.dmaRead(IOVA + 0x8000n, PAGE).ok).toBe(false);
    expect(m.stats.deviceDmaFaults).toBe(faults + 2);
    expect(ioas.value.areas[0].revoked).toBe(true);
    // no automatic remap: userspace unmaps the area (it keeps its IOVA range until then)
    expect(iommufdIoasMapDmabuf(ioas.value, buf.value, IOVA).ok).toBe(false);
    expect(iommufdIoasUnmap(ioas.value, IOVA, 1 * MiB)).toEqual({ ok: true, value: 1 * MiB });
    expect(dmaBufAttachments(nvme)).toEqual([]);
    expect(iommufdIoasUnmap(ioas.value, IOVA, 1 * MiB).ok ? 'ok' : 'ENOENT').toBe('ENOENT');
    iommufdIoasClose(ioas.value);
    expect(iommuGetDomainForDev(nvme)).toBe(def);
    expect(nvme.dmaIommu).toBe(true);
    expect(iommufdIoases(m)).toEqual([]);
    expect(m.events.count('MODEL-CHECK')).toBe(0);
    expect(m.events.count('WARN')).toBe(0);
    expect(m.teardown()).toBe(0);
  });

  it('maps pinned user memory at a chosen IOVA; the device writes, the process reads; destroy unpins and the device is back on the DMA API', () => {
    const m = makeMachine('lazy');
    const nvme = m.device('nvme0');
    const mm = m.newProcess();
    const va = mm.mmap({ len: 64 * PAGE, backing: 'anon', populate: true });
    if (!va.ok) throw new Error(va.errno);
    const ioas = iommufdIoasAlloc(m, nvme);
    if (!ioas.ok) throw new Error(ioas.errno);
    expect(iommufdIoasMap(ioas.value, mm, va.value, 64 * PAGE, 0x4000_0000n)).toEqual({ ok: true, value: 0x4000_0000n });
    expect(m.listPins().length).toBe(1);
    const bytes = pattern(64 * PAGE, 1);
    expect(nvme.dmaWrite(0x4000_0000n, bytes).ok).toBe(true);
    const u = mm.readUser(va.value, 64 * PAGE);
    expect(u.ok && same(u.value, bytes)).toBe(true);
    // overlapping, unaligned, reserved (the MSI window), empty
    expect(iommufdIoasMap(ioas.value, mm, va.value, PAGE, 0x4000_0000n + 4096n).ok ? 'ok' : 'x').toBe('x');
    const codes = [
      iommufdIoasMap(ioas.value, mm, va.value, PAGE, 0x4000_0000n + 4096n),
      iommufdIoasMap(ioas.value, mm, va.value, PAGE, 0x5000_0800n),
      iommufdIoasMap(ioas.value, mm, va.value, PAGE, 0xfee0_0000n),
      iommufdIoasMap(ioas.value, mm, va.value, 0, 0x6000_0000n),
      iommufdIoasMap(ioas.value, mm, va.value, PAGE, 0x6000_0000n, { readable: false, writeable: false }),
    ].map((x) => (x.ok ? 'ok' : x.errno));
    expect(codes).toEqual(['EEXIST', 'EINVAL', 'EINVAL', 'EINVAL', 'EINVAL']);
    // a range that only partly covers the area is refused (areas are not split)
    expect(iommufdIoasUnmap(ioas.value, 0x4000_0000n, PAGE).ok ? 'ok' : 'ENOENT').toBe('ENOENT');
    iommufdIoasClose(ioas.value);
    expect(m.listPins()).toEqual([]);
    expect(nvme.dmaWrite(0x4000_0000n, bytes).ok).toBe(false);
    expect(iommuGetDomainForDev(nvme)).toBe(iommuGetDmaDomain(nvme));
    const d = dmaMapPhys(nvme, 0x100000n, PAGE, DMA_BIDIRECTIONAL, 0);
    expect(d.ok).toBe(true);
    if (d.ok) dmaUnmapPhys(nvme, d.value, PAGE, DMA_BIDIRECTIONAL, 0);
    expect(m.teardown()).toBe(0);
  });

  it("refuses what the kernel refuses: no IOMMU (ENODEV), a second bind (EINVAL), a heap dma-buf or a multi-range VFIO one (EOPNOTSUPP), a revoked one (ENODEV), a slice past the end (EINVAL); nothing stays attached", () => {
    const none = makeMachine('none');
    expect((iommufdIoasAlloc(none, none.device('nvme0')) as { errno?: string }).errno).toBe('ENODEV');
    const m = makeMachine('strict');
    const nvme = m.device('nvme0');
    const gpu = m.device('gpu0');
    const ioas = iommufdIoasAlloc(m, nvme);
    if (!ioas.ok) throw new Error(ioas.errno);
    expect(iommufdIoasOf(nvme)).toBe(ioas.value);
    expect((iommufdIoasAlloc(m, nvme) as { errno?: string }).errno).toBe('EINVAL');
    const heap = systemHeapAlloc(m, 16 * PAGE);
    if (!heap.ok) throw new Error(heap.errno);
    const multi = vfioPciDmabufExport(gpu, { bar: 0, ranges: [{ offset: 0, len: PAGE }, { offset: 2 * PAGE, len: PAGE }] });
    if (!multi.ok) throw new Error(multi.errno);
    const one = vfioPciDmabufExport(gpu, { bar: 0, offset: 0, len: 16 * PAGE });
    if (!one.ok) throw new Error(one.errno);
    expect(errno(iommufdIoasMapDmabuf(ioas.value, heap.value, IOVA))).toBe('EOPNOTSUPP');
    expect(errno(iommufdIoasMapDmabuf(ioas.value, multi.value, IOVA))).toBe('EOPNOTSUPP');
    expect(errno(iommufdIoasMapDmabuf(ioas.value, one.value, IOVA, { start: 8 * PAGE, len: 9 * PAGE }))).toBe('EINVAL');
    expect(errno(iommufdIoasMapDmabuf(ioas.value, one.value, IOVA + 0x800n, { len: PAGE }))).toBe('EINVAL');
    vfioPciSetMemoryEnabled(gpu, false);
    expect(errno(iommufdIoasMapDmabuf(ioas.value, one.value, IOVA))).toBe('ENODEV');
    vfioPciSetMemoryEnabled(gpu, true);
    expect(dmaBufAttachments(nvme)).toEqual([]);
    expect(ioas.value.areas).toEqual([]);
    // a slice at an offset: device DMA reaches that part of the BAR; a reset revokes it
    expect(errno(iommufdIoasMapDmabuf(ioas.value, one.value, IOVA, { start: 4 * PAGE, len: 4 * PAGE }))).toBe('ok');
    const bar = toPciDev(gpu).bars[0].region;
    expect(nvme.dmaWrite(IOVA, new Uint8Array(PAGE).fill(9)).ok).toBe(true);
    expect(m.mem.read(bar.start + BigInt(4 * PAGE), 1)[0]).toBe(9);
    vfioPciReset(gpu);
    expect(nvme.dmaWrite(IOVA, new Uint8Array(PAGE)).ok).toBe(false);
    iommufdIoasClose(ioas.value);
    expect(dmaBufAttachments(nvme)).toEqual([]);
    expect(m.events.count('MODEL-CHECK')).toBe(0);
  });

  it('checks in the kernel\'s order: EOVERFLOW and the access flags before the IOAS lookup (ENOENT), an overlap (EEXIST) before an unaligned uptr, a dma-buf slice at a start off a page boundary is EINVAL after attach and pin (nothing stays attached)', () => {
    const { m, nvme, mm, va, one, ioas } = strictWithSlice();
    expect(errno(iommufdIoasMap(ioas, mm, va, PAGE, IOVA))).toBe('ok');
    // iopt_check_iova (EEXIST) runs before iopt_insert_area's page-offset check (EINVAL)
    expect(errno(iommufdIoasMap(ioas, mm, va + 0x100n, PAGE, IOVA))).toBe('EEXIST');
    expect(errno(iommufdIoasMap(ioas, mm, va + 0x100n, PAGE, IOVA + 0x10_0000n))).toBe('EINVAL');
    // IOMMU_IOAS_MAP_FILE: start 0x100 with an aligned IOVA and length
    expect(errno(iommufdIoasMapDmabuf(ioas, one, IOVA + 0x20_0000n, { start: 0x100, len: PAGE }))).toBe('EINVAL');
    expect(dmaBufAttachments(nvme)).toEqual([]);
    expect(errno(iommufdIoasMap(ioas, mm, va, PAGE, (1n << 64n) - 1n))).toBe('EOVERFLOW');
    iommufdIoasClose(ioas);
    expect(errno(iommufdIoasMap(ioas, mm, va, PAGE, IOVA, { readable: false, writeable: false }))).toBe('EINVAL');
    expect(errno(iommufdIoasMapDmabuf(ioas, one, IOVA, { readable: false, writeable: false }))).toBe('EINVAL');
    expect(errno(iommufdIoasMap(ioas, mm, va, PAGE, IOVA))).toBe('ENOENT');
    expect(m.events.count('MODEL-CHECK')).toBe(0);
  });

  it('IOMMU_IOAS_UNMAP over a range whose last area sticks out: ENOENT, and the areas below it are unmapped (iopt_unmap_iova_range); one sticking out at the bottom: ENOENT, nothing unmapped', () => {
    const m = makeMachine('strict');
    const nvme = m.device('nvme0');
    const mm = m.newProcess();
    const va = mm.mmap({ len: 16 * PAGE, backing: 'anon', populate: true });
    if (!va.ok) throw new Error(va.errno);
    const ioas = iommufdIoasAlloc(m, nvme);
    if (!ioas.ok) throw new Error(ioas.errno);
    const A = IOVA, B = IOVA + 0x10_0000n;
    expect(iommufdIoasMap(ioas.value, mm, va.value, 4 * PAGE, A).ok).toBe(true);
    expect(iommufdIoasMap(ioas.value, mm, va.value + BigInt(4 * PAGE), 4 * PAGE, B).ok).toBe(true);
    // [B + PAGE, ...) leaves B's first page out: B sticks out at the bottom, nothing is unmapped
    expect(iommufdIoasUnmap(ioas.value, B + BigInt(PAGE), 0x10_0000)).toMatchObject({ ok: false, errno: 'ENOENT' });
    expect(ioas.value.areas.length).toBe(2);
    // [A, B + PAGE): A is wholly inside, B is not
    expect(iommufdIoasUnmap(ioas.value, A, Number(B - A) + PAGE)).toMatchObject({ ok: false, errno: 'ENOENT' });
    expect(ioas.value.areas.map((a) => a.iova)).toEqual([B]);
    expect(iommuIovaToPhys(ioas.value.domain!, A)).toBe(0n);
    expect(m.listPins().length).toBe(1);
    iommufdIoasClose(ioas.value);
    expect(m.listPins()).toEqual([]);
    expect(m.teardown()).toBe(0);
  });

  // io_pagetable.c: the IOAS's iova_alignment. iopt_init_table() starts it at 1; iopt_table_add_domain()
  // raises it to the domain's smallest page (1 << __ffs(pgsize_bitmap)), refusing with EADDRINUSE
  // (iopt_check_iova_alignment) when an area does not conform; iopt_table_remove_domain() recomputes
  // it (iopt_calculate_iova_alignment); maps check it in iopt_alloc_area_pages (length),
  // iopt_check_iova (iova) and iopt_insert_area (page offset).

  /** The errno of a result, or 'ok'. */

  /** What an attach that fails must leave as it was. */
  function state(m: ReturnType<typeof makeMachine>, ioas: Ioas): unknown {
    return {
      domain: ioas.domain, alignment: ioas.iovaAlignment, reserved: [...ioas.reserved], devDomain: iommuGetDomainForDev(ioas.dev!),
      domains: m.iommu!.domains.size, freePages: m.freePages, pins: m.listPins().length,
      areas: ioas.areas.map((a) => ({ ...a })),
    };
  }

  it('an IOAS with no domain takes a map at any byte (alignment 1, nothing pinned); attaching a domain whose smallest page is 4 KiB to it fails with EADDRINUSE for an unaligned iova, length or page offset and leaves everything as it was', () => {
    const m = makeMachine('strict');
    const nvme = m.device('nvme0');
    const mm = m.newProcess();
    const va = mm.mmap({ len: 16 * PAGE, backing: 'anon', populate: true });
    if (!va.ok) throw new Error(va.errno);
    const a = iommufdIoasAlloc(m, nvme, { attach: false });
    if (!a.ok) throw new Error(a.errno);
    const ioas = a.value;
    // bound only: the device is in the blocking domain, the IOAS has no domain and no reserved range
    expect(ioas.domain).toBe(null);
    expect(ioas.iovaAlignment).toBe(1);
    expect(iommuGetDomainForDev(nvme)).toBe(ioas.blockingDomain);
    expect(ioas.blockingDomain!.type).toBe('blocked');
    expect(ioas.reserved).toEqual([]);
    expect(nvme.dmaRead(IOVA, 64).ok).toBe(false);
    // each of the three conditions of iopt_check_iova_alignment() alone
    const cases: Array<[string, bigint, number, bigint, RegExp]> = [
      ['iova', va.value, PAGE, IOVA + 0x10n, /iova 0x10000010/],
      ['length', va.value, PAGE + 100, IOVA, /length 4196/],
      ['page offset', va.value + 3n, PAGE, IOVA, /page offset 3/],
    ];
    for (const [what, uptr, len, iova, msg] of cases) {
      expect(errno(iommufdIoasMap(ioas, mm, uptr, len, iova)), what).toBe('ok');
      expect(ioas.areas[0].pinned, what).toBe(false);
      expect(m.listPins(), what).toEqual([]);
      const before = state(m, ioas);
      const r = iommufdIoasAttach(ioas);
      expect(errno(r), what).toBe('EADDRINUSE');
      expect(r.ok ? '' : r.message, what).toMatch(msg);
      expect(state(m, ioas), what).toEqual(before);
      expect(iommuGetDomainForDev(nvme), what).toBe(ioas.blockingDomain);
      expect(iommufdIoasUnmap(ioas, iova, len), what).toEqual({ ok: true, value: len });
    }
    // a byte-sized area at an odd IOVA and user address is fine too, until a domain comes
    expect(errno(iommufdIoasMap(ioas, mm, va.value + 0x123n, 5, IOVA + 7n))).toBe('ok');
    expect(ioas.areas[0].pageOffset).toBe(0x123);
    expect(errno(iommufdIoasAttach(ioas))).toBe('EADDRINUSE');
    expect(iommufdIoasUnmap(ioas, IOVA, PAGE)).toEqual({ ok: true, value: 5 });
    // nothing unaligned left: the attach succeeds and the alignment is the domain's smallest page
    expect(errno(iommufdIoasAttach(ioas))).toBe('ok');
    expect(ioas.domain!.pgsizeBitmap & -ioas.domain!.pgsizeBitmap).toBe(4096n);
    expect(ioas.iovaAlignment).toBe(4096);
    expect(iommuGetDomainForDev(nvme)).toBe(ioas.domain);
    iommufdIoasClose(ioas);
    expect(iommuGetDomainForDev(nvme)).toBe(iommuGetDmaDomain(nvme));
    // the group keeps its blocking domain: a second bind finds the same one
    const again = iommufdIoasAlloc(m, nvme, { attach: false });
    expect(again.ok && again.value.blockingDomain).toBe(ioas.blockingDomain);
    if (again.ok) iommufdIoasClose(again.value);
    expect(m.events.count('MODEL-CHECK')).toBe(0);
    expect(m.teardown()).toBe(0);
  });

  it("after attach an unaligned map gets the kernel's EINVAL (length, iova, page offset; a dma-buf's start and length too) while unmap asks no alignment; detach recomputes the alignment to 1 and the same maps are taken again", () => {
    const { m, nvme, mm, va, one, ioas } = strictWithSlice();
    expect(ioas.iovaAlignment).toBe(4096);
    expect(errno(iommufdIoasMap(ioas, mm, va, 4 * PAGE, IOVA))).toBe('ok');
    const maps = () => [
      iommufdIoasMap(ioas, mm, va, 100, IOVA + 0x10_0000n),
      iommufdIoasMap(ioas, mm, va, PAGE, IOVA + 0x18_0001n),
      iommufdIoasMap(ioas, mm, va + 0x80n, PAGE, IOVA + 0x20_0000n),
      iommufdIoasMapDmabuf(ioas, one, IOVA + 0x30_0000n, { start: 0x100, len: PAGE }),
      iommufdIoasMapDmabuf(ioas, one, IOVA + 0x40_0000n, { start: 0, len: 0x300 }),
    ];
    const refused = maps();
    expect(refused.map(errno)).toEqual(['EINVAL', 'EINVAL', 'EINVAL', 'EINVAL', 'EINVAL']);
    for (const r of refused) expect(r.ok ? '' : r.message).toMatch(/4096-byte IOVA alignment/);
    expect(dmaBufAttachments(nvme)).toEqual([]);
    // IOMMU_IOAS_UNMAP: no alignment check, only whole areas (ENOENT for a range that cuts one)
    expect(errno(iommufdIoasUnmap(ioas, IOVA + 1n, 4 * PAGE))).toBe('ENOENT');
    expect(m.listPins().length).toBe(1);
    // detach: the domain leaves, the pins go, the alignment is back to 1
    iommufdIoasDetach(ioas);
    expect(ioas.domain).toBe(null);
    expect(ioas.iovaAlignment).toBe(1);
    expect(m.listPins()).toEqual([]);
    expect(iommuGetDomainForDev(nvme)).toBe(ioas.blockingDomain);
    iommufdIoasDetach(ioas);
    expect(maps().map(errno)).toEqual(['ok', 'ok', 'ok', 'ok', 'ok']);
    expect(ioas.areas.map((x) => x.pageOffset)).toEqual([0, 0, 0, 0x80, 0x100, 0]);
    // a dma-buf is attached and pinned at map whether or not there is a domain (iopt_map_dmabuf)
    expect(dmaBufAttachments(nvme).map((x) => x.pinCount)).toEqual([1, 1]);
    expect(errno(iommufdIoasAttach(ioas))).toBe('EADDRINUSE');
    expect(ioas.iovaAlignment).toBe(1);
    iommufdIoasClose(ioas);
    expect(dmaBufAttachments(nvme)).toEqual([]);
    expect(m.events.count('MODEL-CHECK')).toBe(0);
    expect(m.teardown()).toBe(0);
  });

  it('attach fills a domain-less IOAS: user memory is pinned then, and device DMA reads what the CPU wrote and writes what the CPU reads, as does a VFIO BAR slice mapped before; detach unpins and blocks the device; attach again maps it all again', () => {
    const m = makeMachine('lazy');
    const nvme = m.device('nvme0');
    const gpu = m.device('gpu0');
    const bar = toPciDev(gpu).bars[0].region;
    const mm = m.newProcess();
    const va = mm.mmap({ len: 32 * PAGE, backing: 'anon', populate: true });
    if (!va.ok) throw new Error(va.errno);
    const buf = vfioPciDmabufExport(gpu, { bar: 0, offset: 0, len: 16 * PAGE });
    if (!buf.ok) throw new Error(buf.errno);
    const a = iommufdIoasAlloc(m, nvme, { attach: false });
    if (!a.ok) throw new Error(a.errno);
    const ioas = a.value;
    const UIOVA = 0x4000_0000n;
    expect(errno(iommufdIoasMap(ioas, mm, va.value, 32 * PAGE, UIOVA))).toBe('ok');
    expect(errno(iommufdIoasMapDmabuf(ioas, buf.value, IOVA, { start: 4 * PAGE, len: 8 * PAGE }))).toBe('ok');
    expect(m.listPins()).toEqual([]);
    expect(ioas.areas.map((x) => x.iommuMaps)).toEqual([0, 0]);
    const cpu = pattern(32 * PAGE, 11);
    expect(mm.writeUser(va.value, cpu).ok).toBe(true);
    const barBytes = pattern(8 * PAGE, 12);
    m.mem.write(bar.start + BigInt(4 * PAGE), barBytes);
    const maps0 = m.stats.iommuMapCalls;
    expect(errno(iommufdIoasAttach(ioas))).toBe('ok');
    expect(m.stats.iommuMapCalls - maps0).toBe(ioas.areas[0].iommuMaps + 1);
    expect(m.listPins().length).toBe(1);
    expect(ioas.areas[0].pinned).toBe(true);
    const rd = nvme.dmaRead(UIOVA, 32 * PAGE);
    expect(rd.ok && same(rd.value, cpu)).toBe(true);
    const dev = pattern(32 * PAGE, 13);
    expect(nvme.dmaWrite(UIOVA, dev).ok).toBe(true);
    const u = mm.readUser(va.value, 32 * PAGE);
    expect(u.ok && same(u.value, dev)).toBe(true);
    const rb = nvme.dmaRead(IOVA, 8 * PAGE);
    expect(rb.ok && same(rb.value, barBytes)).toBe(true);
    // detach: unpinned, the device is in the blocking domain and faults
    const faults = m.stats.deviceDmaFaults;
    iommufdIoasDetach(ioas);
    expect(m.listPins()).toEqual([]);
    expect(ioas.areas[0].pinned).toBe(false);
    expect(nvme.dmaRead(UIOVA, PAGE).ok).toBe(false);
    expect(nvme.dmaRead(IOVA, PAGE).ok).toBe(false);
    expect(m.stats.deviceDmaFaults).toBe(faults + 2);
    // the process's memory keeps what the device wrote; attach again maps both areas again
    expect(mm.writeUser(va.value, cpu.subarray(0, PAGE)).ok).toBe(true);
    expect(errno(iommufdIoasAttach(ioas))).toBe('ok');
    const again = nvme.dmaRead(UIOVA, 2 * PAGE);
    expect(again.ok && same(again.value, new Uint8Array([...cpu.subarray(0, PAGE), ...dev.subarray(PAGE, 2 * PAGE)]))).toBe(true);
    // attached already: a replace onto the hw_pagetable it is on changes nothing (iommufd_device_do_replace)
    const hwptBefore = ioas.hwpts[0];
    const tables = m.stats.iommuTablePagesAllocated;
    expect(errno(iommufdIoasAttach(ioas))).toBe('ok');
    expect(ioas.hwpts).toEqual([hwptBefore]);
    expect(m.stats.iommuTablePagesAllocated).toBe(tables);
    // a revoke while detached: attach maps nothing for the revoked slice
    iommufdIoasDetach(ioas);
    dmaBufRevoke(buf.value);
    expect(ioas.areas[1].revoked).toBe(true);
    expect(errno(iommufdIoasAttach(ioas))).toBe('ok');
    expect(iommuIovaToPhys(ioas.domain!, IOVA)).toBe(0n);
    expect(nvme.dmaRead(IOVA, PAGE).ok).toBe(false);
    iommufdIoasClose(ioas);
    expect(m.listPins()).toEqual([]);
    expect(dmaBufAttachments(nvme)).toEqual([]);
    expect(errno(iommufdIoasAttach(ioas))).toBe('ENOENT');
    expect(m.events.count('MODEL-CHECK')).toBe(0);
    expect(m.teardown()).toBe(0);
  });

  it("the device's reserved regions are kept out only while it is attached: an area in the MSI window mapped before makes the attach fail with EADDRINUSE (iopt_table_enforce_dev_resv_regions); a hole in user memory fails it with EFAULT when the pin comes (iopt_fill_domain); either way as it was", () => {
    const m = makeMachine('strict');
    const nvme = m.device('nvme0');
    const mm = m.newProcess();
    const va = mm.mmap({ len: 8 * PAGE, backing: 'anon', populate: true });
    if (!va.ok) throw new Error(va.errno);
    const a = iommufdIoasAlloc(m, nvme, { attach: false });
    if (!a.ok) throw new Error(a.errno);
    const ioas = a.value;
    const MSI = 0xfee0_0000n;
    expect(errno(iommufdIoasMap(ioas, mm, va.value, PAGE, MSI))).toBe('ok');
    let before = state(m, ioas);
    const r = iommufdIoasAttach(ioas);
    expect(errno(r)).toBe('EADDRINUSE');
    expect(r.ok ? '' : r.message).toMatch(/reserved region \(msi\)/);
    expect(state(m, ioas)).toEqual(before);
    expect(iommufdIoasUnmap(ioas, MSI, PAGE).ok).toBe(true);
    // an aligned area over an unmapped page: recorded now, refused when the domain pins it
    expect(errno(iommufdIoasMap(ioas, mm, va.value, 4 * PAGE, IOVA))).toBe('ok');
    expect(errno(iommufdIoasMap(ioas, mm, va.value + BigInt(6 * PAGE), 4 * PAGE, IOVA + 0x10_0000n))).toBe('ok');
    before = state(m, ioas);
    expect(errno(iommufdIoasAttach(ioas))).toBe('EFAULT');
    expect(state(m, ioas)).toEqual(before);
    expect(iommufdIoasUnmap(ioas, IOVA + 0x10_0000n, 4 * PAGE).ok).toBe(true);
    expect(errno(iommufdIoasAttach(ioas))).toBe('ok');
    expect(ioas.reserved.some((x) => x.owner === 'device' && x.start === MSI)).toBe(true);
    expect(errno(iommufdIoasMap(ioas, mm, va.value, PAGE, MSI))).toBe('EINVAL');
    iommufdIoasDetach(ioas);
    expect(ioas.reserved).toEqual([]);
    iommufdIoasClose(ioas);
    expect(m.listPins()).toEqual([]);
    expect(m.teardown()).toBe(0);
  });
});
