// One IOAS, several devices (drivers/iommu/iommufd/device.c: iommufd_device_attach ->
// iommufd_device_auto_get_domain, iommufd_hw_pagetable_attach / _detach; hw_pagetable.c:
// iommufd_hwpt_paging_alloc, iommufd_hwpt_paging_destroy; io_pagetable.c: iopt_table_add_domain,
// iopt_table_remove_domain, iopt_table_enforce_dev_resv_regions, iopt_calculate_iova_alignment;
// pages.c: iopt_area_fill_domains / iopt_area_unfill_domains, iopt_revoke_notify): shared and own
// domains, checked with real device DMA, page-table pages, pin counts and a brute-force reference.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { makeMachine, pattern, pinCounts } from '../../../test/fixtures/dma-b-machines.ts';
import { MiB, ok } from '../../base/index.ts';
import { iommuGetDmaDomain, iommuGetDomainForDev, iommuIovaToPhys } from '../../iommu/index.ts';
import { deviceBindDriver, deviceReleaseDriver, driverProbe, toPciDev, type Device } from '../../pci/index.ts';
import { dmaBufRevoke } from '../dmabuf/index.ts';
import { vfioPciDmabufExport } from '../vfio/index.ts';
import {
  iommufdDeviceAttach, iommufdDeviceBind, iommufdDeviceDetach, iommufdHwptAlloc, iommufdHwptDestroy, iommufdIoasAlloc, iommufdIoasAllowIovas, iommufdIoasAttach, iommufdIoasClose, iommufdIoasDestroy,
  iommufdIoasDetach, iommufdIoasMap, iommufdIoasMapDmabuf, iommufdIoasOf, iommufdIoasUnmap, type Ioas, type IommufdHwpt,
} from './index.ts';

const PAGE = 4096;
const A = 0x4000_0000n;
const B = 0x5000_0000n;
const MSI = 0xfee0_0000n;

function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function unwrap<T>(r: { ok: true; value: T } | { ok: false; errno: string; message?: string }): T {
  if (!r.ok) throw new Error(`${r.errno}: ${r.message ?? ''}`);
  return r.value;
}

/** A machine, an IOAS allocated without a device, and a process with 16 populated pages holding a pattern. */
function setup() {
  const m = makeMachine('strict');
  const nvme = m.device('nvme0');
  const nic = m.device('nic0');
  const mm = m.newProcess();
  const va = unwrap(mm.mmap({ len: 16 * PAGE, backing: 'anon', populate: true }));
  const bytes = pattern(16 * PAGE, 7);
  unwrap(mm.writeUser(va, bytes));
  const ioas = unwrap(iommufdIoasAlloc(m));
  return { m, nvme, nic, mm, va, bytes, ioas };
}

function reads(dev: Device, iova: bigint, want: Uint8Array): boolean {
  const r = dev.dmaRead(iova, want.length);
  return r.ok && same(r.value, want);
}

describe('iommufd: one IOAS, several devices', () => {
  it('a device-less IOAS has no domain; two devices attached share one automatic domain: one page table, no refill, both DMA the same bytes through one IOVA', () => {
    const { m, nvme, nic, mm, va, bytes, ioas } = setup();
    expect(ioas.dev).toBe(null);
    expect(ioas.domain).toBe(null);
    expect(ioas.iovaAlignment).toBe(1);
    // no domain: recorded, nothing pinned
    expect(iommufdIoasMap(ioas, mm, va, 8 * PAGE, A)).toEqual({ ok: true, value: A });
    expect(m.listPins()).toEqual([]);
    const h1 = unwrap(iommufdDeviceAttach(ioas, nvme));
    expect(h1.autoDomain).toBe(true);
    expect(iommuGetDomainForDev(nvme)).toBe(h1.domain);
    const tables = h1.domain.pt!.tablePages;
    const maps = m.stats.iommuMapCalls;
    const free = m.freePages;
    const pins = m.listPins().length;
    // the second device joins the same hw_pagetable: same domain, same root, no page taken, no map call
    const h2 = unwrap(iommufdDeviceAttach(ioas, nic));
    expect(h2).toBe(h1);
    expect(iommuGetDomainForDev(nic)).toBe(h1.domain);
    expect(ioas.hwpts).toEqual([h1]);
    expect(ioas.devices).toEqual([nvme, nic]);
    expect(h1.domain.pt!.tablePages).toBe(tables);
    expect(m.stats.iommuMapCalls).toBe(maps);
    expect(m.freePages).toBe(free);
    expect(m.listPins().length).toBe(pins);
    expect(reads(nvme, A, bytes.subarray(0, 8 * PAGE))).toBe(true);
    expect(reads(nic, A, bytes.subarray(0, 8 * PAGE))).toBe(true);
    // a map after both attached lands once, in the one domain, for both
    expect(iommufdIoasMap(ioas, mm, va + 8n * BigInt(PAGE), 8 * PAGE, B)).toEqual({ ok: true, value: B });
    const w = pattern(8 * PAGE, 9);
    expect(nic.dmaWrite(B, w).ok).toBe(true);
    expect(reads(nvme, B, w)).toBe(true);
    const u = mm.readUser(va + 8n * BigInt(PAGE), 8 * PAGE);
    expect(u.ok && same(u.value, w)).toBe(true);
    // each device's reserved regions are in the IOAS's reserved tree (the union; here the same MSI window twice)
    expect(ioas.reserved.filter((r) => r.owner === 'device' && r.start === MSI).map((r) => r.by)).toEqual([nvme, nic]);
    iommufdIoasClose(ioas);
    expect(m.events.count('WARN')).toBe(0);
    expect(m.teardown()).toBe(0);
  });

  it('a device on a hw_pagetable of its own (IOMMU_HWPT_ALLOC): the new domain is filled with every area without pinning again; maps land in both domains; unmap empties both', () => {
    const { m, nvme, nic, mm, va, bytes, ioas } = setup();
    const h1 = unwrap(iommufdDeviceAttach(ioas, nvme));
    expect(iommufdIoasMap(ioas, mm, va, 8 * PAGE, A).ok).toBe(true);
    const pinned = pinCounts(m, mm, va, 16);
    const pinCalls = m.listPins().length;
    // an attach to the IOAS never picks a manual hw_pagetable; the device binds first
    expect(iommufdHwptAlloc(ioas, nic)).toMatchObject({ ok: false, errno: 'ENOENT' });
    const h2 = unwrap(iommufdHwptAlloc(ioas, nvme));
    expect(h2.autoDomain).toBe(false);
    expect(h2.domain).not.toBe(h1.domain);
    expect(h2.domain.pt!.rootPfn).not.toBe(h1.domain.pt!.rootPfn);
    expect(ioas.hwpts).toEqual([h1, h2]);
    // filled with the area already there, from the same pinned pages
    for (let i = 0; i < 8; i++) expect(iommuIovaToPhys(h2.domain, A + BigInt(i * PAGE))).toBe(mm.translate(va + BigInt(i * PAGE)));
    expect(pinCounts(m, mm, va, 16)).toEqual(pinned);
    expect(m.listPins().length).toBe(pinCalls);
    expect(unwrap(iommufdDeviceAttach(h2, nic))).toBe(h2);
    expect(iommuGetDomainForDev(nic)).toBe(h2.domain);
    expect(reads(nic, A, bytes.subarray(0, 8 * PAGE))).toBe(true);
    // a later map: in both domains, pinned once
    expect(iommufdIoasMap(ioas, mm, va + 8n * BigInt(PAGE), 8 * PAGE, B).ok).toBe(true);
    expect(pinCounts(m, mm, va, 16).slice(8)).toEqual(pinned.slice(0, 8));
    expect(reads(nvme, B, bytes.subarray(8 * PAGE))).toBe(true);
    expect(reads(nic, B, bytes.subarray(8 * PAGE))).toBe(true);
    // unmap: gone from both domains, both devices fault, unpinned
    const faults = m.stats.deviceDmaFaults;
    expect(iommufdIoasUnmap(ioas, A, 8 * PAGE)).toEqual({ ok: true, value: 8 * PAGE });
    expect(iommufdIoasUnmap(ioas, B, 8 * PAGE)).toEqual({ ok: true, value: 8 * PAGE });
    expect(nvme.dmaRead(A, PAGE).ok).toBe(false);
    expect(nic.dmaRead(A, PAGE).ok).toBe(false);
    expect(nvme.dmaRead(B, PAGE).ok).toBe(false);
    expect(nic.dmaRead(B, PAGE).ok).toBe(false);
    expect(m.stats.deviceDmaFaults).toBe(faults + 4);
    expect(iommuIovaToPhys(h1.domain, A)).toBe(0n);
    expect(iommuIovaToPhys(h2.domain, B)).toBe(0n);
    expect(m.listPins()).toEqual([]);
    iommufdIoasClose(ioas);
    expect(m.teardown()).toBe(0);
  });

  it('detach: the other device keeps working; the last device of an automatic domain frees its table pages and unpins; a manual one stays until destroyed (EBUSY while used)', () => {
    const { m, nvme, nic, mm, va, bytes, ioas } = setup();
    const free0 = m.freePages;
    const nicDefault = iommuGetDmaDomain(nic);
    const h1 = unwrap(iommufdDeviceAttach(ioas, nvme));
    unwrap(iommufdDeviceAttach(ioas, nic));
    expect(iommufdIoasMap(ioas, mm, va, 16 * PAGE, A).ok).toBe(true);
    iommufdDeviceDetach(nic);
    // nic is back in its DMA-API default domain; nvme still reaches the area
    expect(iommuGetDomainForDev(nic)).toBe(nicDefault);
    expect(nic.dmaIommu).toBe(true);
    expect(ioas.devices).toEqual([nvme]);
    expect(h1.domain.alive).toBe(true);
    expect(reads(nvme, A, bytes)).toBe(true);
    // the MSI window stays reserved while nvme is attached
    expect(iommufdIoasMap(ioas, mm, va, PAGE, MSI)).toMatchObject({ ok: false, errno: 'EINVAL' });
    const tables = h1.domain.pt!.tablePages;
    expect(tables).toBeGreaterThan(1);
    const free1 = m.freePages;
    iommufdDeviceDetach(nvme);
    // the automatic hw_pagetable went with its last device: domain freed, its table pages back, unpinned
    expect(h1.alive).toBe(false);
    expect(h1.domain.alive).toBe(false);
    expect(ioas.hwpts).toEqual([]);
    expect(ioas.domain).toBe(null);
    expect(ioas.iovaAlignment).toBe(1);
    expect(ioas.reserved).toEqual([]);
    expect(m.freePages).toBe(free1 + tables);
    expect(m.listPins()).toEqual([]);
    expect(ioas.areas.length).toBe(1);
    // a manual hw_pagetable survives its devices, and its destroy frees its tables too
    unwrap(iommufdDeviceAttach(ioas, nvme));
    const h2 = unwrap(iommufdHwptAlloc(ioas, nvme));
    unwrap(iommufdDeviceAttach(h2, nic));
    expect(iommufdHwptDestroy(h2)).toMatchObject({ ok: false, errno: 'EBUSY' });
    iommufdDeviceDetach(nic);
    expect(h2.alive).toBe(true);
    expect(reads(nvme, A, bytes)).toBe(true);
    const t2 = h2.domain.pt!.tablePages;
    const free2 = m.freePages;
    expect(iommufdHwptDestroy(h2)).toEqual({ ok: true, value: undefined });
    expect(m.freePages).toBe(free2 + t2);
    // the automatic domain still holds the area: its pages stay pinned, once
    expect(pinCounts(m, mm, va, 16)).toEqual(new Array(16).fill(1));
    expect(iommufdHwptDestroy(h2)).toMatchObject({ ok: false, errno: 'ENOENT' });
    expect(reads(nvme, A, bytes)).toBe(true);
    iommufdIoasClose(ioas);
    expect(m.freePages).toBe(free0);
    expect(m.teardown()).toBe(0);
  });

  it('a device bound with one IOAS and attached to another: destroying the first detaches it from the second before the unbind (it stayed listed there, and the second\'s destroy left it in its blocking domain)', () => {
    const { m, nvme, mm, va, bytes } = setup();
    const nvmeDefault = iommuGetDmaDomain(nvme);
    const a = unwrap(iommufdIoasAlloc(m, nvme, { attach: false }));
    const b = unwrap(iommufdIoasAlloc(m));
    const hb = unwrap(iommufdDeviceAttach(b, nvme));
    expect(iommufdIoasMap(b, mm, va, 4 * PAGE, A).ok).toBe(true);
    expect(reads(nvme, A, bytes.subarray(0, 4 * PAGE))).toBe(true);
    // detaching a's device does not undo its attachment to b
    iommufdIoasDetach(a);
    expect(b.devices).toEqual([nvme]);
    expect(reads(nvme, A, bytes.subarray(0, 4 * PAGE))).toBe(true);
    iommufdIoasClose(a);
    // closing the device detached it from b first: b's automatic hw_pagetable went with it
    expect(b.devices).toEqual([]);
    expect(hb.alive).toBe(false);
    expect(iommuGetDomainForDev(nvme)).toBe(nvmeDefault);
    iommufdIoasClose(b);
    expect(iommuGetDomainForDev(nvme)).toBe(nvmeDefault);
    expect(nvme.dmaIommu).toBe(true);
    expect(m.listPins()).toEqual([]);
    expect(m.teardown()).toBe(0);
  });

  it('object IDs come from one pool for IOASes, hw_pagetables and bound devices, the lowest free first (ictx->objects, XA_FLAGS_ALLOC1)', () => {
    const { m, nvme, nic, ioas } = setup();
    expect(ioas.id).toBe(1);
    const h = unwrap(iommufdDeviceAttach(ioas, nvme));
    // the bind takes 2 (the device), the automatic hw_pagetable 3
    expect(h.id).toBe(3);
    unwrap(iommufdDeviceAttach(ioas, nic));
    const second = unwrap(iommufdIoasAlloc(m));
    expect(second.id).toBe(5);
    // nic's unbind gives 4 back: the next object takes it
    iommufdDeviceDetach(nic);
    const third = unwrap(iommufdIoasAlloc(m));
    expect(third.id).toBe(4);
    // a failed call takes no ID
    expect(iommufdHwptAlloc(second, nic)).toMatchObject({ ok: false, errno: 'ENOENT' });
    iommufdIoasClose(ioas);
    expect(unwrap(iommufdIoasAlloc(m)).id).toBe(1);
    expect(unwrap(iommufdIoasAlloc(m)).id).toBe(2);
    expect(unwrap(iommufdIoasAlloc(m)).id).toBe(3);
    expect(unwrap(iommufdIoasAlloc(m)).id).toBe(6);
  });

  it('iommufdDeviceBind is VFIO_DEVICE_BIND_IOMMUFD alone: DMA-owned, attached to nothing; IOMMU_HWPT_ALLOC then needs no automatic domain; a second bind is EINVAL (vfio_df_ioctl_bind_iommufd)', () => {
    const { m, nic, ioas } = setup();
    const nicDefault = iommuGetDmaDomain(nic);
    const b = unwrap(iommufdDeviceBind(m, nic));
    expect(b.id).toBe(2);
    expect(b.hwpt).toBe(null);
    expect(iommuGetDomainForDev(nic)).not.toBe(nicDefault);
    expect(iommuGetDomainForDev(nic)!.type).toBe('blocked');
    expect(iommufdDeviceBind(m, nic)).toMatchObject({ ok: false, errno: 'EINVAL' });
    const own = unwrap(iommufdHwptAlloc(ioas, nic));
    expect(ioas.hwpts).toEqual([own]);
    unwrap(iommufdDeviceAttach(own, nic));
    expect(own.devices).toEqual([nic]);
    iommufdDeviceDetach(nic);
    expect(iommuGetDomainForDev(nic)).toBe(nicDefault);
    expect(unwrap(iommufdHwptDestroy(own))).toBe(undefined);
    iommufdIoasClose(ioas);
    expect(m.teardown()).toBe(0);
  });

  it('a device a kernel driver drives cannot be bound (EPERM: its DMA uses the default domain); vfio-pci, which manages its DMA, can', () => {
    const { m, nic, nvme, ioas } = setup();
    const nicDefault = iommuGetDmaDomain(nic);
    deviceBindDriver(nic, 'mlx5_core');
    expect(iommufdDeviceAttach(ioas, nic)).toMatchObject({ ok: false, errno: 'EPERM' });
    expect(iommufdDeviceBind(m, nic)).toMatchObject({ ok: false, errno: 'EPERM' });
    expect(iommuGetDomainForDev(nic)).toBe(nicDefault);
    expect(ioas.devices).toEqual([]);
    deviceReleaseDriver(nic, 'mlx5_core');
    expect(unwrap(iommufdDeviceAttach(ioas, nic)).devices).toEqual([nic]);
    deviceBindDriver(nvme, 'vfio-pci');
    expect(unwrap(iommufdDeviceAttach(ioas, nvme)).devices).toEqual([nic, nvme]);
    iommufdIoasClose(ioas);
    expect(m.teardown()).toBe(0);
  });

  it('an attach of an attached device replaces (iommufd_device_replace): it moves to the other IOAS with its reserved regions, straight from domain to domain, and the automatic domain it empties is destroyed', () => {
    const { m, nvme, nic, mm, va, bytes, ioas } = setup();
    const other = unwrap(iommufdIoasAlloc(m));
    unwrap(iommufdIoasMap(ioas, mm, va, 4 * PAGE, A));
    unwrap(iommufdIoasMap(other, mm, va + BigInt(8 * PAGE), 4 * PAGE, B));
    const h1 = unwrap(iommufdDeviceAttach(ioas, nvme));
    unwrap(iommufdDeviceAttach(ioas, nic));
    // record the domains nvme is attached to during the replace: the new one only, never the blocking domain
    const iommu = m.iommu!;
    const seen: string[] = [];
    const attach = iommu.attachDevice.bind(iommu);
    iommu.attachDevice = (dev, d) => { if (dev === nvme) seen.push(d.type); attach(dev, d); };
    const h2 = unwrap(iommufdDeviceAttach(other, nvme));
    iommu.attachDevice = attach;
    expect(seen).toEqual(['unmanaged']);
    expect(h2.ioas).toBe(other);
    expect(h2).not.toBe(h1);
    expect(iommuGetDomainForDev(nvme)).toBe(h2.domain);
    // nvme reaches other's mapping and no longer ioas's; nic keeps ioas's
    expect(reads(nvme, B, bytes.subarray(8 * PAGE, 12 * PAGE))).toBe(true);
    expect(nvme.dmaRead(A, PAGE).ok).toBe(false);
    expect(reads(nic, A, bytes.subarray(0, 4 * PAGE))).toBe(true);
    // nvme's reserved regions moved with it; nic's stay in ioas
    expect(ioas.reserved.filter((r) => r.owner === 'device').map((r) => r.by)).toEqual([nic]);
    expect(other.reserved.filter((r) => r.owner === 'device').map((r) => r.by)).toEqual([nvme]);
    expect(h1.alive).toBe(true);
    // nic leaves ioas's automatic domain empty: destroyed, its table pages freed, ioas's pins dropped
    const free = m.freePages;
    const tables = h1.domain.pt!.tablePages;
    unwrap(iommufdDeviceAttach(other, nic));
    expect(h1.alive).toBe(false);
    expect(ioas.hwpts).toEqual([]);
    expect(m.freePages).toBe(free + tables);
    expect(pinCounts(m, mm, va, 4)).toEqual([0, 0, 0, 0]);
    expect(other.devices).toEqual([nvme, nic]);
    // a replace onto the hw_pagetable the device is on changes nothing
    expect(unwrap(iommufdDeviceAttach(h2, nic))).toBe(h2);
    expect(unwrap(iommufdDeviceAttach(other, nic))).toBe(h2);
    expect(other.devices).toEqual([nvme, nic]);
    iommufdIoasClose(other);
    iommufdIoasClose(ioas);
    expect(m.teardown()).toBe(0);
  });

  it('a replace that fails changes nothing: a reserved region of the device meeting an area of the target IOAS is EADDRINUSE, and the device stays on its domain', () => {
    const { m, nvme, mm, va, bytes, ioas } = setup();
    const other = unwrap(iommufdIoasAlloc(m));
    unwrap(iommufdIoasMap(ioas, mm, va, 4 * PAGE, A));
    // other maps over the MSI window, which nvme's attach must reserve
    unwrap(iommufdIoasMap(other, mm, va + BigInt(8 * PAGE), PAGE, MSI));
    const h1 = unwrap(iommufdDeviceAttach(ioas, nvme));
    const r = iommufdDeviceAttach(other, nvme);
    expect(r).toMatchObject({ ok: false, errno: 'EADDRINUSE' });
    expect(iommuGetDomainForDev(nvme)).toBe(h1.domain);
    expect(h1.alive).toBe(true);
    expect(ioas.devices).toEqual([nvme]);
    expect(other.hwpts).toEqual([]);
    expect(other.reserved).toEqual([]);
    expect(reads(nvme, A, bytes.subarray(0, 4 * PAGE))).toBe(true);
    iommufdIoasClose(other);
    iommufdIoasClose(ioas);
    expect(m.teardown()).toBe(0);
  });

  it('a replace that fails after making a new automatic hw_pagetable destroys it again: its ID, table pages and pins given back, the alignment as before', () => {
    const { m, nvme, mm, va, bytes, ioas } = setup();
    unwrap(iommufdIoasMap(ioas, mm, va, 4 * PAGE, A));
    const h1 = unwrap(iommufdDeviceAttach(ioas, nvme));
    const other = unwrap(iommufdIoasAlloc(m));
    unwrap(iommufdIoasMap(other, mm, va + BigInt(8 * PAGE), 4 * PAGE, B));
    // an allowed range over the MSI window: the new domain is made and filled, then nvme's reserved region is refused
    unwrap(iommufdIoasAllowIovas(other, [{ start: B, last: B + 0xfff_ffffn }, { start: 0xfe00_0000n, last: 0xfeff_ffffn }]));
    const free = m.freePages;
    expect(iommufdDeviceAttach(other, nvme)).toMatchObject({ ok: false, errno: 'EADDRINUSE' });
    expect(m.freePages).toBe(free);
    expect(other.hwpts).toEqual([]);
    expect(other.iovaAlignment).toBe(1);
    expect(other.reserved).toEqual([]);
    expect(pinCounts(m, mm, va + BigInt(8 * PAGE), 4)).toEqual([0, 0, 0, 0]);
    expect(iommuGetDomainForDev(nvme)).toBe(h1.domain);
    expect(reads(nvme, A, bytes.subarray(0, 4 * PAGE))).toBe(true);
    // the failed hw_pagetable's ID is free again (iommufd_object_abort_and_destroy): the next object takes it
    expect(unwrap(iommufdIoasAlloc(m)).id).toBe(5);
    iommufdIoasClose(other);
    iommufdIoasClose(ioas);
    expect(m.teardown()).toBe(0);
  });

  it('the one-device shape after a replace: its device stays on the IOAS it moved to when its own IOAS is destroyed, and iommufdIoasOf names where it is', () => {
    const { m, nvme, mm, va, bytes } = setup();
    const a = unwrap(iommufdIoasAlloc(m, nvme));
    const b = unwrap(iommufdIoasAlloc(m));
    unwrap(iommufdIoasMap(b, mm, va, 4 * PAGE, B));
    const hb = unwrap(iommufdDeviceAttach(b, nvme));
    expect(iommufdIoasOf(nvme)).toBe(b);
    expect(a.hwpts).toEqual([]);
    expect(unwrap(iommufdIoasDestroy(a))).toBe(undefined);
    expect(b.devices).toEqual([nvme]);
    expect(hb.alive).toBe(true);
    expect(nvme.dmaUserOwner).toBe('iommufd');
    expect(iommuGetDomainForDev(nvme)).toBe(hb.domain);
    expect(reads(nvme, B, bytes.subarray(0, 4 * PAGE))).toBe(true);
    // now a device bound on its own: the close of b unbinds it
    iommufdIoasClose(b);
    expect(nvme.dmaUserOwner).toBe(null);
    expect(iommuGetDomainForDev(nvme)).toBe(iommuGetDmaDomain(nvme));
    // iommufdIoasAttach brings a moved device back; iommufdIoasClose of its own IOAS closes it wherever it is
    const c = unwrap(iommufdIoasAlloc(m, nvme));
    const d = unwrap(iommufdIoasAlloc(m));
    unwrap(iommufdDeviceAttach(d, nvme));
    unwrap(iommufdIoasAttach(c));
    expect(iommufdIoasOf(nvme)).toBe(c);
    expect(d.hwpts).toEqual([]);
    unwrap(iommufdDeviceAttach(d, nvme));
    iommufdIoasClose(c);
    expect(d.devices).toEqual([]);
    expect(nvme.dmaUserOwner).toBe(null);
    iommufdIoasClose(d);
    expect(m.teardown()).toBe(0);
  });

  it('a replace into a manual hw_pagetable of the same IOAS keeps the reserved regions and destroys the automatic one it empties; back to the IOAS makes a new automatic one', () => {
    const { m, nvme, mm, va, bytes, ioas } = setup();
    unwrap(iommufdIoasMap(ioas, mm, va, 4 * PAGE, A));
    const auto1 = unwrap(iommufdDeviceAttach(ioas, nvme));
    const manual = unwrap(iommufdHwptAlloc(ioas, nvme));
    expect(unwrap(iommufdDeviceAttach(manual, nvme))).toBe(manual);
    expect(auto1.alive).toBe(false);
    expect(ioas.hwpts).toEqual([manual]);
    expect(ioas.reserved.filter((r) => r.owner === 'device').map((r) => r.by)).toEqual([nvme]);
    expect(reads(nvme, A, bytes.subarray(0, 4 * PAGE))).toBe(true);
    expect(pinCounts(m, mm, va, 4)).toEqual([1, 1, 1, 1]);
    const auto2 = unwrap(iommufdDeviceAttach(ioas, nvme));
    expect(auto2.autoDomain).toBe(true);
    expect(auto2).not.toBe(auto1);
    expect(ioas.hwpts).toEqual([manual, auto2]);
    expect(manual.devices).toEqual([]);
    expect(reads(nvme, A, bytes.subarray(0, 4 * PAGE))).toBe(true);
    expect(pinCounts(m, mm, va, 4)).toEqual([1, 1, 1, 1]);
    iommufdIoasClose(ioas);
    expect(m.teardown()).toBe(0);
  });

  it('IOMMU_DESTROY of an IOAS a hw_pagetable holds is EBUSY (iommufd_object_remove), naming them; once free it goes, then ENOENT; iommufdIoasClose tears down in any state', () => {
    const { m, nvme, nic, mm, va, ioas } = setup();
    unwrap(iommufdIoasMap(ioas, mm, va, 4 * PAGE, A));
    const h = unwrap(iommufdDeviceAttach(ioas, nvme));
    const busy = iommufdIoasDestroy(ioas);
    expect(busy).toMatchObject({ ok: false, errno: 'EBUSY' });
    expect(!busy.ok && busy.message).toMatch(/^IOAS 1 is held by HWPT 3 \(nvme0 attached\): /);
    expect(ioas.alive).toBe(true);
    expect(pinCounts(m, mm, va, 4)).toEqual([1, 1, 1, 1]);
    iommufdDeviceDetach(nvme);
    // a manual hw_pagetable holds it too, with no device on it
    unwrap(iommufdDeviceBind(m, nic));
    const own = unwrap(iommufdHwptAlloc(ioas, nic));
    expect(iommufdIoasDestroy(ioas)).toMatchObject({ ok: false, errno: 'EBUSY' });
    unwrap(iommufdHwptDestroy(own));
    expect(h.alive).toBe(false);
    expect(iommufdIoasDestroy(ioas)).toEqual({ ok: true, value: undefined });
    expect(ioas.alive).toBe(false);
    expect(ioas.areas).toEqual([]);
    expect(iommufdIoasDestroy(ioas)).toMatchObject({ ok: false, errno: 'ENOENT' });
    // nic stays bound (its own fd): no kernel driver may probe it until it is unbound
    expect(iommuGetDomainForDev(nic)!.type).toBe('blocked');
    iommufdDeviceDetach(nic);
    // close: devices attached and a manual hw_pagetable, all gone in one call
    const again = unwrap(iommufdIoasAlloc(m));
    unwrap(iommufdDeviceAttach(again, nvme));
    unwrap(iommufdHwptAlloc(again, nvme));
    iommufdIoasClose(again);
    expect(again.alive).toBe(false);
    expect(iommuGetDomainForDev(nvme)).toBe(iommuGetDmaDomain(nvme));
    iommufdIoasClose(again);
    expect(m.teardown()).toBe(0);
  });

  it('a device iommufd owns cannot be probed by a kernel driver (EBUSY: iommu_device_use_default_domain), and no driver is left bound; after the unbind it can', () => {
    const { m, nic, ioas } = setup();
    unwrap(iommufdDeviceAttach(ioas, nic));
    expect(nic.dmaUserOwner).toBe('iommufd');
    let ran = false;
    const r = driverProbe(nic, 'mlx5_core', () => { ran = true; return ok(1); });
    expect(r).toMatchObject({ ok: false, errno: 'EBUSY' });
    expect(ran).toBe(false);
    expect(nic.driver).toBe(null);
    iommufdDeviceDetach(nic);
    expect(nic.dmaUserOwner).toBe(null);
    expect(driverProbe(nic, 'mlx5_core', () => ok(2))).toEqual({ ok: true, value: 2 });
    expect(nic.driver).toBe('mlx5_core');
    iommufdIoasClose(ioas);
    expect(m.teardown()).toBe(0);
  });

  it('reserved regions: a device whose region meets an area fails to attach and is rolled back, the others untouched; an allowed range blocks the first attach the same way', () => {
    const { m, nvme, nic, mm, va, ioas } = setup();
    const free0 = m.freePages;
    const nicDefault = iommuGetDmaDomain(nic);
    // an allowed range over the MSI window: the attach that would reserve it fails, nothing is left
    unwrap(iommufdIoasAllowIovas(ioas, [{ start: 0xfe00_0000n, last: 0xfeff_ffffn }]));
    expect(iommufdDeviceAttach(ioas, nvme)).toMatchObject({ ok: false, errno: 'EADDRINUSE' });
    expect(ioas.hwpts).toEqual([]);
    expect(ioas.reserved).toEqual([]);
    expect(ioas.iovaAlignment).toBe(1);
    expect(iommuGetDomainForDev(nvme)).toBe(iommuGetDmaDomain(nvme));
    expect(m.freePages).toBe(free0);
    unwrap(iommufdIoasAllowIovas(ioas, []));
    const h1 = unwrap(iommufdDeviceAttach(ioas, nvme));
    expect(iommufdIoasMap(ioas, mm, va, 4 * PAGE, 0x7000_0000n).ok).toBe(true);
    const reserved = [...ioas.reserved];
    // a region reported from now on (an RMRR over the area) is nvme's too, but nvme enforced its
    // regions at its attach: the next device to attach meets the area with it
    m.iommu!.reserveRegion(0x7000_0000n, 0x7010_0000n, 'rmrr');
    expect(iommufdDeviceAttach(ioas, nic)).toMatchObject({ ok: false, errno: 'EADDRINUSE' });
    expect(iommuGetDomainForDev(nic)).toBe(nicDefault);
    expect(ioas.reserved).toEqual(reserved);
    expect(ioas.devices).toEqual([nvme]);
    expect(h1.devices).toEqual([nvme]);
    expect(nvme.dmaRead(0x7000_0000n, PAGE).ok).toBe(true);
    // a second try fails the same way (nothing half-attached was left)
    expect(iommufdDeviceAttach(ioas, nic)).toMatchObject({ ok: false, errno: 'EADDRINUSE' });
    iommufdIoasClose(ioas);
    expect(m.teardown()).toBe(0);
  });

  it('the IOVA alignment is recalculated over every domain: 1 with none, the smallest page while any is left', () => {
    const { m, nvme, nic, mm, va, ioas } = setup();
    // no domain: any byte
    expect(iommufdIoasMap(ioas, mm, va + 1n, 3, 0x1001n).ok).toBe(true);
    // a domain needs 4 KiB: the odd area refuses it
    expect(iommufdDeviceAttach(ioas, nvme)).toMatchObject({ ok: false, errno: 'EADDRINUSE' });
    expect(iommufdIoasUnmap(ioas, 0x1001n, 3).ok).toBe(true);
    unwrap(iommufdDeviceAttach(ioas, nvme));
    expect(ioas.iovaAlignment).toBe(PAGE);
    const h2 = unwrap(iommufdHwptAlloc(ioas, nvme));
    unwrap(iommufdDeviceAttach(h2, nic));
    expect(ioas.iovaAlignment).toBe(PAGE);
    // one of the two domains goes: the other still asks for 4 KiB
    iommufdDeviceDetach(nvme);
    expect(ioas.hwpts).toEqual([h2]);
    expect(ioas.iovaAlignment).toBe(PAGE);
    expect(iommufdIoasMap(ioas, mm, va + 1n, 3, 0x2001n)).toMatchObject({ ok: false, errno: 'EINVAL' });
    iommufdDeviceDetach(nic);
    unwrap(iommufdHwptDestroy(h2));
    expect(ioas.iovaAlignment).toBe(1);
    expect(iommufdIoasMap(ioas, mm, va + 1n, 3, 0x2001n).ok).toBe(true);
    iommufdIoasClose(ioas);
    expect(m.teardown()).toBe(0);
  });

  it('a VFIO dma-buf area is mapped as MMIO in every domain and its revoke unmaps it from all of them', () => {
    const { m, nvme, nic, ioas } = setup();
    const gpu = m.device('gpu0');
    const bar = toPciDev(gpu).bars[0].region;
    const buf = unwrap(vfioPciDmabufExport(gpu, { bar: 0, offset: 0, len: 1 * MiB }));
    // no device yet: the model has no iommufd_global_device to attach the buffer for
    expect(iommufdIoasMapDmabuf(ioas, buf, A)).toMatchObject({ ok: false, errno: 'ENODEV' });
    const h1 = unwrap(iommufdDeviceAttach(ioas, nvme));
    expect(iommufdIoasMapDmabuf(ioas, buf, A)).toEqual({ ok: true, value: A });
    const h2 = unwrap(iommufdHwptAlloc(ioas, nvme));
    unwrap(iommufdDeviceAttach(h2, nic));
    const bytes = pattern(64 * 1024, 3);
    m.mem.write(bar.start, bytes);
    expect(reads(nvme, A, bytes)).toBe(true);
    expect(reads(nic, A, bytes)).toBe(true);
    dmaBufRevoke(buf);
    expect(iommuIovaToPhys(h1.domain, A)).toBe(0n);
    expect(iommuIovaToPhys(h2.domain, A)).toBe(0n);
    expect(nvme.dmaRead(A, PAGE).ok).toBe(false);
    expect(nic.dmaRead(A, PAGE).ok).toBe(false);
    expect(ioas.areas[0].revoked).toBe(true);
    iommufdIoasClose(ioas);
    expect(m.teardown()).toBe(0);
  });

  it('property: random attach / detach / map / unmap over three devices against a reference of what each attached device reaches, by device DMA', () => {
    const SLOTS = 4;
    const op = fc.oneof(
      fc.record({ k: fc.constant('attach' as const), d: fc.nat(2), manual: fc.boolean() }),
      fc.record({ k: fc.constant('detach' as const), d: fc.nat(2) }),
      fc.record({ k: fc.constant('map' as const), s: fc.nat(SLOTS - 1) }),
      fc.record({ k: fc.constant('unmap' as const), s: fc.nat(SLOTS - 1) }),
    );
    fc.assert(fc.property(fc.array(op, { minLength: 1, maxLength: 14 }), (ops) => {
      const { m, mm, va, ioas } = setup();
      const devs = [m.device('nvme0'), m.device('nic0'), m.device('tb0')];
      // reference: the slots mapped (slot s: 2 user pages at IOVA A + s * 1 MiB), the devices attached
      const mapped = new Set<number>();
      const attached = new Set<number>();
      let manual: IommufdHwpt | null = null;
      const iovaOf = (s: number): bigint => A + BigInt(s) * BigInt(MiB);
      for (const o of ops) {
        if (o.k === 'attach') {
          let to: Ioas | IommufdHwpt = ioas;
          if (o.manual && attached.size > 0) {
            manual ??= unwrap(iommufdHwptAlloc(ioas, devs[[...attached][0]]));
            to = manual;
          }
          // an attached device is replaced (VFIO_DEVICE_ATTACH_IOMMUFD_PT -> iommufd_device_replace)
          const r = iommufdDeviceAttach(to, devs[o.d]);
          expect(r.ok ? 'ok' : r.errno).toBe('ok');
          expect(r.ok && r.value.autoDomain).toBe(to === ioas);
          if (to !== ioas) expect(r.ok && r.value).toBe(manual);
          attached.add(o.d);
        } else if (o.k === 'detach') {
          iommufdDeviceDetach(devs[o.d]);
          attached.delete(o.d);
          expect(iommuGetDomainForDev(devs[o.d])).toBe(iommuGetDmaDomain(devs[o.d]));
        } else if (o.k === 'map') {
          const r = iommufdIoasMap(ioas, mm, va + BigInt(o.s * 2 * PAGE), 2 * PAGE, iovaOf(o.s));
          expect(r.ok ? 'ok' : r.errno).toBe(mapped.has(o.s) ? 'EEXIST' : 'ok');
          mapped.add(o.s);
        } else {
          const r = iommufdIoasUnmap(ioas, iovaOf(o.s), 2 * PAGE);
          expect(r.ok ? 'ok' : r.errno).toBe(mapped.has(o.s) ? 'ok' : 'ENOENT');
          mapped.delete(o.s);
        }
        // every attached device reaches exactly the mapped slots, each at its user pages
        expect(new Set(ioas.devices)).toEqual(new Set([...attached].map((d) => devs[d])));
        // one automatic hw_pagetable at most, and never an empty one (a replace destroys the one it empties)
        const autos = ioas.hwpts.filter((h) => h.autoDomain);
        expect(autos.length).toBeLessThanOrEqual(1);
        for (const h of autos) expect(h.devices.length).toBeGreaterThan(0);
        for (const d of attached) {
          for (let s = 0; s < SLOTS; s++) {
            const want = mm.readUser(va + BigInt(s * 2 * PAGE), 2 * PAGE);
            const got = devs[d].dmaRead(iovaOf(s), 2 * PAGE);
            if (mapped.has(s)) expect(got.ok && want.ok && same(got.value, want.value)).toBe(true);
            else expect(got.ok).toBe(false);
          }
        }
        // pinned exactly while a domain holds an area; never twice
        const pins = pinCounts(m, mm, va, 2 * SLOTS);
        const held = ioas.hwpts.length > 0;
        for (let s = 0; s < SLOTS; s++) {
          expect(pins.slice(2 * s, 2 * s + 2)).toEqual(held && mapped.has(s) ? [1, 1] : [0, 0]);
        }
      }
      iommufdIoasClose(ioas);
      expect(m.listPins()).toEqual([]);
      expect(m.teardown()).toBe(0);
    }), { numRuns: 60, seed: 7 });
  });
});
