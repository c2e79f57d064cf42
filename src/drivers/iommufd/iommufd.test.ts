import { describe, expect, it } from 'vitest';
import { makeMachine, pattern } from '../../../test/fixtures/dma-b-machines.ts';
import { MiB } from '../../base/index.ts';
import { DMA_BIDIRECTIONAL, dmaMapPhys, dmaUnmapPhys } from '../../dma/index.ts';
import { IOMMU_CACHE, IOMMU_MMIO, iommuGetDmaDomain, iommuGetDomainForDev, iommuIovaToPhys } from '../../iommu/index.ts';
import { toPciDev } from '../../pci/index.ts';
import { dmaBufAttachments, dmaBufRevoke, systemHeapAlloc } from '../dmabuf/index.ts';
import { vfioPciDmabufExport, vfioPciReset, vfioPciSetMemoryEnabled } from '../vfio/index.ts';
import {
  iommufdIoasAlloc, iommufdIoasDestroy, iommufdIoasMap, iommufdIoasMapDmabuf, iommufdIoasOf, iommufdIoases, iommufdIoasUnmap,
} from './index.ts';

const PAGE = 4096;
const IOVA = 0x1000_0000n;

function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
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
    expect(ioas.value.domain.type).toBe('unmanaged');
    expect(nvme.dmaIommu).toBe(false);
    const r = iommufdIoasMapDmabuf(ioas.value, buf.value, IOVA);
    expect(r).toEqual({ ok: true, value: undefined });
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
    expect(iommuIovaToPhys(ioas.value.domain, IOVA)).toBe(0n);
    expect(nvme.dmaWrite(IOVA, new Uint8Array(PAGE)).ok).toBe(false);
    expect(nvme.dmaRead(IOVA + 0x8000n, PAGE).ok).toBe(false);
    expect(m.stats.deviceDmaFaults).toBe(faults + 2);
    expect(ioas.value.areas[0].revoked).toBe(true);
    // no automatic remap: userspace unmaps the area (it keeps its IOVA range until then)
    expect(iommufdIoasMapDmabuf(ioas.value, buf.value, IOVA).ok).toBe(false);
    expect(iommufdIoasUnmap(ioas.value, IOVA, 1 * MiB)).toEqual({ ok: true, value: 1 * MiB });
    expect(dmaBufAttachments(nvme)).toEqual([]);
    expect(iommufdIoasUnmap(ioas.value, IOVA, 1 * MiB).ok ? 'ok' : 'ENOENT').toBe('ENOENT');
    iommufdIoasDestroy(ioas.value);
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
    expect(iommufdIoasMap(ioas.value, mm, va.value, 64 * PAGE, 0x4000_0000n)).toEqual({ ok: true, value: undefined });
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
    iommufdIoasDestroy(ioas.value);
    expect(m.listPins()).toEqual([]);
    expect(nvme.dmaWrite(0x4000_0000n, bytes).ok).toBe(false);
    expect(iommuGetDomainForDev(nvme)).toBe(iommuGetDmaDomain(nvme));
    const d = dmaMapPhys(nvme, 0x100000n, PAGE, DMA_BIDIRECTIONAL, 0);
    expect(d.ok).toBe(true);
    if (d.ok) dmaUnmapPhys(nvme, d.value, PAGE, DMA_BIDIRECTIONAL, 0);
    expect(m.teardown()).toBe(0);
  });

  it("refuses what the kernel refuses: no IOMMU (ENODEV), a second bind (EBUSY), a heap dma-buf or a multi-range VFIO one (EOPNOTSUPP), a revoked one (ENODEV), a slice past the end (EINVAL); nothing stays attached", () => {
    const none = makeMachine('none');
    expect((iommufdIoasAlloc(none, none.device('nvme0')) as { errno?: string }).errno).toBe('ENODEV');
    const m = makeMachine('strict');
    const nvme = m.device('nvme0');
    const gpu = m.device('gpu0');
    const ioas = iommufdIoasAlloc(m, nvme);
    if (!ioas.ok) throw new Error(ioas.errno);
    expect(iommufdIoasOf(nvme)).toBe(ioas.value);
    expect((iommufdIoasAlloc(m, nvme) as { errno?: string }).errno).toBe('EBUSY');
    const heap = systemHeapAlloc(m, 16 * PAGE);
    if (!heap.ok) throw new Error(heap.errno);
    const multi = vfioPciDmabufExport(gpu, { bar: 0, ranges: [{ offset: 0, len: PAGE }, { offset: 2 * PAGE, len: PAGE }] });
    if (!multi.ok) throw new Error(multi.errno);
    const one = vfioPciDmabufExport(gpu, { bar: 0, offset: 0, len: 16 * PAGE });
    if (!one.ok) throw new Error(one.errno);
    const errno = (x: { ok: boolean; errno?: string }): string => (x.ok ? 'ok' : x.errno!);
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
    iommufdIoasDestroy(ioas.value);
    expect(dmaBufAttachments(nvme)).toEqual([]);
    expect(m.events.count('MODEL-CHECK')).toBe(0);
  });

  it('checks in the kernel\'s order: EOVERFLOW and the access flags before the IOAS lookup (ENOENT), an overlap (EEXIST) before an unaligned uptr, a dma-buf slice at a start off a page boundary is EINVAL after attach and pin (nothing stays attached)', () => {
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
    const errno = (x: { ok: boolean; errno?: string }): string => (x.ok ? 'ok' : x.errno!);
    expect(errno(iommufdIoasMap(ioas.value, mm, va.value, PAGE, IOVA))).toBe('ok');
    // iopt_check_iova (EEXIST) runs before iopt_insert_area's page-offset check (EINVAL)
    expect(errno(iommufdIoasMap(ioas.value, mm, va.value + 0x100n, PAGE, IOVA))).toBe('EEXIST');
    expect(errno(iommufdIoasMap(ioas.value, mm, va.value + 0x100n, PAGE, IOVA + 0x10_0000n))).toBe('EINVAL');
    // IOMMU_IOAS_MAP_FILE: start 0x100 with an aligned IOVA and length
    expect(errno(iommufdIoasMapDmabuf(ioas.value, one.value, IOVA + 0x20_0000n, { start: 0x100, len: PAGE }))).toBe('EINVAL');
    expect(dmaBufAttachments(nvme)).toEqual([]);
    expect(errno(iommufdIoasMap(ioas.value, mm, va.value, PAGE, (1n << 64n) - 1n))).toBe('EOVERFLOW');
    iommufdIoasDestroy(ioas.value);
    expect(errno(iommufdIoasMap(ioas.value, mm, va.value, PAGE, IOVA, { readable: false, writeable: false }))).toBe('EINVAL');
    expect(errno(iommufdIoasMapDmabuf(ioas.value, one.value, IOVA, { readable: false, writeable: false }))).toBe('EINVAL');
    expect(errno(iommufdIoasMap(ioas.value, mm, va.value, PAGE, IOVA))).toBe('ENOENT');
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
    expect(iommuIovaToPhys(ioas.value.domain, A)).toBe(0n);
    expect(m.listPins().length).toBe(1);
    iommufdIoasDestroy(ioas.value);
    expect(m.listPins()).toEqual([]);
    expect(m.teardown()).toBe(0);
  });
});
