// Models: drivers/iommu/iommufd/ (Linux 7.1): an IOAS (ioas.c, io_pagetable.c) with a paging domain
// of its own attached to the device (device.c: iommufd_device_bind -> iommu_device_claim_dma_owner,
// which takes the device out of its DMA-API default domain (__iommu_take_dma_ownership: EBUSY when it
// is attached elsewhere, EPERM for another owner); iommufd_device_attach -> a paging domain, the
// device's reserved regions kept out of the IOAS (iopt_table_enforce_dev_resv_regions));
// IOMMU_IOAS_MAP of user memory pinned FOLL_LONGTERM (iopt_map_user_pages; conv_iommu_prot adds
// IOMMU_CACHE); IOMMU_IOAS_MAP_FILE of a dma-buf (iopt_map_file_pages -> iopt_alloc_dmabuf_pages ->
// iopt_map_dmabuf: a dynamic, peer2peer, revocable attachment, dma_buf_pin under the reservation
// lock, then the physical range through the private VFIO interconnect vfio_pci_dma_buf_iommufd_map;
// batch_to_domain maps it with IOMMU_MMIO and without IOMMU_CACHE); revoke (iopt_revoke_notify:
// unmap from every domain, the IOTLB invalidated by iommu_unmap's sync; the area stays until
// userspace unmaps it, no automatic remap); IOMMU_IOAS_UNMAP (iopt_unmap_iova: the range must cover
// whole areas, ENOENT otherwise and when nothing was mapped); destroy (iopt_release_pages: unpin,
// detach; iommu_device_release_dma_owner: back to the default domain).
// Model deviation: an IOAS serves one device (the kernel's IOAS can hold several hw_pagetables and
// devices); it is created with its device bound and attached (bind + attach in one call). The
// dma-buf attachment is made for the IOAS's device where the kernel uses iommufd_global_device(), a
// faux device the model does not have; the attachment is never mapped through the DMA API either way.

import { SlotKey, err, ok, type Result } from '../../base/index.ts';
import { dmaContextOf } from '../../dma/index.ts';
import {
  IOMMU_CACHE, IOMMU_MMIO, IOMMU_READ, IOMMU_WRITE, iommuGetDmaDomain, iommuGetDomainForDev, iommuMap, iommuUnmap, type Iommu,
  type IommuDomain,
} from '../../iommu/index.ts';
import { FOLL_LONGTERM, FOLL_WRITE, pinUserPhyrsAll, unpinUserPhyrs, type MachineMm, type PinnedPhyrList, type UserMm } from '../../mm/index.ts';
import type { Device } from '../../pci/index.ts';
import { RANGE_DEVICE, rangeKind, slice } from '../../phyr/index.ts';
import {
  dmaBufAttach, dmaBufDetach, dmaBufMapPal, dmaBufPin, dmaBufUnmapPal, dmaBufUnpin, dmaResvLock, dmaResvUnlock, type DmaBuf,
  type DmaBufAttachment, type DmaBufMapType, type DmaBufPal,
} from '../dmabuf/index.ts';
import { vfioPciDmaBufIommufdMap } from '../vfio/index.ts';

const PAGE = 4096;
const U64_MAX = (1n << 64n) - 1n;

/** One mapped IOVA range of an IOAS (struct iopt_area with its iopt_pages). */
export interface IoasArea {
  readonly iova: bigint;
  readonly len: number;
  /** 'user': IOMMU_IOAS_MAP of pinned user memory; 'dmabuf': IOMMU_IOAS_MAP_FILE of a dma-buf. */
  readonly kind: 'user' | 'dmabuf';
  /** IOMMU_* prot the domain holds it with. */
  readonly prot: number;
  /** 'user': the pinned runs. */
  readonly pinned: PinnedPhyrList | null;
  /** 'dmabuf': the buffer, its attachment and the physical address of the first byte. */
  readonly buf: DmaBuf | null;
  readonly att: DmaBufAttachment | null;
  readonly paddr: bigint;
  /** 'dmabuf': revoked by the exporter (unmapped from the domain; the IOVA range stays taken). */
  revoked: boolean;
  /** IOMMU map calls made for it (one per physically contiguous run). */
  readonly iommuMaps: number;
  /** 'dmabuf' through the RFC's PAL mapping type: the PAL map held (null once unmapped on revoke). */
  pal?: DmaBufPal | null;
}

/** struct iommufd_ioas with its one device and paging domain. */
export class Ioas {
  readonly id: number;
  readonly dev: Device;
  readonly iommu: Iommu;
  /** The IOAS's own paging domain ('unmanaged'). */
  readonly domain: IommuDomain;
  /** The device's DMA-API default domain, which it goes back to at destroy. */
  readonly defaultDomain: IommuDomain | null;
  /** IOVA ranges no map may use ([start, last] inclusive): the device's reserved regions. */
  readonly reserved: ReadonlyArray<{ start: bigint; last: bigint }>;
  readonly areas: IoasArea[] = [];
  alive = true;

  /** @internal made by iommufdIoasAlloc. */
  constructor(id: number, dev: Device, iommu: Iommu, domain: IommuDomain, defaultDomain: IommuDomain | null,
    reserved: Array<{ start: bigint; last: bigint }>) {
    this.id = id;
    this.dev = dev;
    this.iommu = iommu;
    this.domain = domain;
    this.defaultDomain = defaultDomain;
    this.reserved = reserved;
  }

  toString(): string {
    return `IOAS ${this.id} (${this.dev.name})`;
  }
}

/** The iommufd context of a machine (struct iommufd_ctx: its objects). */
interface IommufdCtx {
  nextId: number;
  readonly ioases: Set<Ioas>;
}

const IOMMUFD_CTX = new SlotKey<IommufdCtx>('iommufd');
/** The IOAS a device is bound to (the DMA owner of its group). */
const DEVICE_IOAS = new SlotKey<Ioas>('iommufd-ioas');

function ctxOf(m: MachineMm): IommufdCtx {
  return m.slots.getOrCreate(IOMMUFD_CTX, () => ({ nextId: 1, ioases: new Set<Ioas>() }));
}

/** The live IOASes of a machine. */
export function iommufdIoases(m: MachineMm): Ioas[] {
  return [...(m.slots.get(IOMMUFD_CTX)?.ioases ?? [])];
}

/** The IOAS dev is bound to, or null. */
export function iommufdIoasOf(dev: Device): Ioas | null {
  const i = dev.slots.get(DEVICE_IOAS);
  return i !== undefined && i.alive ? i : null;
}

function checkIoas(ioas: unknown): Ioas {
  if (!(ioas instanceof Ioas)) throw new TypeError(`ioas must be an Ioas, got ${String(ioas)}`);
  return ioas;
}

/**
 * IOMMU_IOAS_ALLOC with dev bound and attached: claims DMA ownership of dev (it leaves its DMA-API
 * default domain), allocates a paging domain and attaches dev to it; the device's reserved regions
 * (the MSI window, RMRRs) are kept out of the IOAS. Errors: ENODEV (no IOMMU: no group), EBUSY
 * (dev is attached to another domain than its default one, or bound to an IOAS already), ENOMEM
 * (no page for the domain's top table).
 * @throws TypeError when dev is not a device of m.
 */
export function iommufdIoasAlloc(m: MachineMm, dev: Device): Result<Ioas> {
  const dctx = dmaContextOf(dev);
  if (dctx.mm !== m) throw new TypeError(`dev must be a device of machine m, got ${dev.name} of another machine`);
  const iommu = dctx.iommu;
  if (iommu === null) return err('ENODEV', `${dev.name} has no IOMMU group (iommu_device_claim_dma_owner)`);
  const bound = iommufdIoasOf(dev);
  if (bound !== null) return err('EBUSY', `${dev.name} is bound to ${bound} already`);
  const def = iommuGetDmaDomain(dev);
  const cur = iommuGetDomainForDev(dev);
  // __iommu_take_dma_ownership(): the group must be in its default domain
  if (cur !== def) return err('EBUSY', `${dev.name} is attached to a ${cur?.type ?? 'no'} domain that is not its default domain`);
  let domain: IommuDomain;
  try {
    domain = iommu.allocDomain('unmanaged');
  } catch (e) {
    return err('ENOMEM', `no page for ${dev.name}'s IOAS domain: ${(e as Error).message}`);
  }
  iommu.attachDevice(dev, domain);
  // iopt_table_enforce_dev_resv_regions(): iommu_get_resv_regions() of the device. The PCI bridge
  // windows are not among them: dma-iommu keeps them out of its own cookie only
  // (iova_reserve_pci_windows), and iommufd's user picks its IOVAs.
  const reserved = iommu.reservedRegions.filter((r) => r.kind !== 'bridge-window').map((r) => ({ start: r.start, last: r.end - 1n }));
  // iopt_table_add_domain(): nothing outside the domain's aperture
  const g = domain.geometry;
  if (g.apertureStart > 0n) reserved.push({ start: 0n, last: g.apertureStart - 1n });
  if (g.apertureEnd < U64_MAX) reserved.push({ start: g.apertureEnd + 1n, last: U64_MAX });
  const ctx = ctxOf(m);
  const ioas = new Ioas(ctx.nextId++, dev, iommu, domain, def, reserved);
  ctx.ioases.add(ioas);
  dev.slots.set(DEVICE_IOAS, ioas);
  return ok(ioas);
}

/** iopt_check_iova(): alignment, wrap, reserved ranges, overlap with an area. */
function checkIova(ioas: Ioas, iova: bigint, len: number): Result<void> {
  if (iova % BigInt(PAGE) !== 0n || len % PAGE !== 0 || len === 0) {
    return err('EINVAL', `iova 0x${iova.toString(16)} or length ${len} is not aligned to the IOAS's ${PAGE}-byte alignment`);
  }
  const last = iova + BigInt(len) - 1n;
  if (last > U64_MAX) return err('EOVERFLOW', `iova 0x${iova.toString(16)} + length ${len} wraps`);
  for (const r of ioas.reserved) {
    if (iova <= r.last && last >= r.start) return err('EINVAL', `[0x${iova.toString(16)}, 0x${last.toString(16)}] meets the reserved IOVA range [0x${r.start.toString(16)}, 0x${r.last.toString(16)}]`);
  }
  for (const a of ioas.areas) {
    if (iova <= a.iova + BigInt(a.len) - 1n && last >= a.iova) return err('EEXIST', `IOVA 0x${a.iova.toString(16)} is mapped already`);
  }
  return ok();
}

/**
 * iopt_alloc_area_pages() for a dma-buf slice: iopt_check_iova(), then iopt_insert_area(), which
 * refuses (EINVAL) a start that is not on a page boundary: its offset in the page (area->page_offset)
 * must be a multiple of the IOVA alignment.
 */
function checkAreaIova(ioas: Ioas, iova: bigint, start: number, len: number): Result<void> {
  const c = checkIova(ioas, iova, len);
  if (!c.ok) return c;
  if (start % PAGE !== 0) return err('EINVAL', `start ${start} is not page-aligned: its page offset ${start % PAGE} is not a multiple of the IOAS's ${PAGE}-byte IOVA alignment`);
  return ok();
}

/** Options of iommufdIoasMap and iommufdIoasMapDmabuf (IOMMU_IOAS_MAP_READABLE / _WRITEABLE). */
export interface IoasMapOptions {
  readonly readable?: boolean;
  readonly writeable?: boolean;
}

/**
 * The checks iommufd_ioas_map() / iommufd_ioas_map_file() (ioas.c) make before they look the IOAS
 * up: an iova or length of ULONG_MAX or more is EOVERFLOW, then no access flag is EINVAL; only then
 * a destroyed IOAS is ENOENT (iommufd_get_ioas).
 */
function ioctlChecks(ioas: Ioas, iova: bigint, len: number, prot: number): Result<void> {
  if (iova >= U64_MAX || BigInt(len) >= U64_MAX) return err('EOVERFLOW', `iova 0x${iova.toString(16)} or length ${len} is ULONG_MAX or more`);
  if ((prot & (IOMMU_READ | IOMMU_WRITE)) === 0) return err('EINVAL', 'neither IOMMU_IOAS_MAP_READABLE nor IOMMU_IOAS_MAP_WRITEABLE');
  if (!ioas.alive) return err('ENOENT', `${ioas} is destroyed`);
  return ok();
}

function protOf(opts: IoasMapOptions): number {
  // conv_iommu_prot(): iommufd requires a coherent IOMMU, so every map is IOMMU_CACHE
  return IOMMU_CACHE | (opts.readable ?? true ? IOMMU_READ : 0) | (opts.writeable ?? true ? IOMMU_WRITE : 0);
}

/**
 * IOMMU_IOAS_MAP with IOMMU_IOAS_MAP_FIXED_IOVA: pins [uptr, uptr + len) of a process
 * (pin_user_pages with FOLL_LONGTERM, and FOLL_WRITE when writeable) and maps it at iova, one
 * iommu_map per physically contiguous run. Errors: EINVAL (neither readable nor writeable; iova,
 * uptr or len not page-aligned or 0; a reserved IOVA), EOVERFLOW, EEXIST (overlaps an area), EFAULT
 * (a hole in the range, or device memory: pin_user_pages refuses VM_PFNMAP / VM_IO), the IOMMU's
 * errors; nothing stays pinned or mapped on failure.
 */
export function iommufdIoasMap(ioas: Ioas, mm: UserMm, uptr: bigint, len: number, iova: bigint, opts: IoasMapOptions = {}): Result<void> {
  checkIoas(ioas);
  const prot = protOf(opts);
  const k = ioctlChecks(ioas, iova, len, prot);
  if (!k.ok) return k;
  const c = checkIova(ioas, iova, len);
  if (!c.ok) return c;
  // io_pagetable.c: iopt_insert_area() refuses the area's page offset (uptr's offset in its page)
  // against the IOVA alignment only after iopt_check_iova(): an overlap is EEXIST before this
  if (uptr % BigInt(PAGE) !== 0n) return err('EINVAL', `uptr 0x${uptr.toString(16)} is not page-aligned`);
  const pin = pinUserPhyrsAll(mm, uptr, len, FOLL_LONGTERM | (prot & IOMMU_WRITE ? FOLL_WRITE : 0));
  if (!pin.ok) return pin;
  const list = pin.value;
  const undo = (mapped: number): void => {
    if (mapped > 0) iommuUnmap(ioas.domain, iova, mapped);
    unpinUserPhyrs(list);
  };
  let off = 0;
  for (let i = 0; i < list.count; i++) {
    if (rangeKind(list.flagsAt(i)) === RANGE_DEVICE) {
      undo(off);
      return err('EFAULT', `0x${(uptr + BigInt(off)).toString(16)} is device memory (pin_user_pages refuses VM_PFNMAP)`);
    }
    const r = iommuMap(ioas.domain, iova + BigInt(off), list.addrAt(i), list.lenAt(i), prot);
    if (!r.ok) {
      undo(off);
      return r;
    }
    off += list.lenAt(i);
  }
  ioas.areas.push({ iova, len, kind: 'user', prot, pinned: list, buf: null, att: null, paddr: list.addrAt(0), revoked: false, iommuMaps: list.count });
  return ok();
}

/** iopt_revoke_notify(): the exporter invalidates; the areas of this attachment leave the domain. */
function revokeNotify(ioas: Ioas, att: DmaBufAttachment): void {
  for (const a of ioas.areas) {
    if (a.att !== att || a.revoked) continue;
    // iommu_unmap() syncs the IOTLB: device DMA at these IOVAs faults from here on
    iommuUnmap(ioas.domain, a.iova, a.len);
    a.revoked = true;
    // a PAL importer unmaps after the invalidation (the lock is held: invalidate_mappings runs under it)
    if (a.pal) {
      dmaBufUnmapPal(att, a.pal);
      a.pal = null;
    }
  }
}

/** Options of iommufdIoasMapDmabuf: the slice of the buffer (IOMMU_IOAS_MAP_FILE start / length). */
export interface IoasMapDmabufOptions extends IoasMapOptions {
  readonly start?: number;
  readonly len?: number;
}

/**
 * The part both dma-buf imports share (iopt_map_file_pages(), iopt_alloc_dmabuf_pages(),
 * iopt_map_dmabuf()): checks the ioas, the slice [start, start + len) and the access; attaches
 * dynamic and peer2peer with the revoke callback (accepting only `mapTypes` when given); pins and
 * takes the buffer's ranges with `take` under the reservation lock. On failure nothing stays
 * attached or pinned; on success `release` (which gives the ranges back with `untake`, unpins and
 * detaches) undoes it.
 */
function attachPinnedTake<T>(ioas: Ioas, buf: DmaBuf, iova: bigint, opts: IoasMapDmabufOptions, mapTypes: readonly DmaBufMapType[] | undefined,
  take: (att: DmaBufAttachment) => Result<T>, untake: (att: DmaBufAttachment, v: T) => void,
): Result<{ att: DmaBufAttachment; taken: T; start: number; len: number; prot: number; release: () => void }> {
  checkIoas(ioas);
  const start = opts.start ?? 0;
  const len = opts.len ?? buf.size - start;
  const prot = protOf(opts);
  const k = ioctlChecks(ioas, iova, Math.max(len, 0), prot);
  if (!k.ok) return k;
  if (len <= 0) return err('EINVAL', 'length is 0');
  if (!Number.isSafeInteger(start + len)) return err('EOVERFLOW', `start ${start} + length ${len} wraps`);
  if (buf.size <= start + len - 1) return err('EINVAL', `[${start}, +${len}) is past the end of ${buf.size}-byte ${buf.name}`);
  const a = dmaBufAttach(buf, ioas.dev, {
    dynamic: true, peer2peer: true, importerPriv: ioas, ...(mapTypes !== undefined ? { mapTypes } : {}),
    moveNotify: (att) => revokeNotify(ioas, att),
  });
  if (!a.ok) return a;
  const att = a.value;
  dmaResvLock(buf);
  const p = dmaBufPin(att);
  if (!p.ok) {
    dmaResvUnlock(buf);
    dmaBufDetach(buf, att);
    return p;
  }
  const taken = take(att);
  if (!taken.ok) {
    dmaBufUnpin(att);
    dmaResvUnlock(buf);
    dmaBufDetach(buf, att);
    return taken;
  }
  dmaResvUnlock(buf);
  const release = (): void => {
    dmaResvLock(buf);
    untake(att, taken.value);
    dmaBufUnpin(att);
    dmaResvUnlock(buf);
    dmaBufDetach(buf, att);
  };
  return ok({ att, taken: taken.value, start, len, prot, release });
}

/**
 * IOMMU_IOAS_MAP_FILE of a dma-buf fd with a fixed IOVA: attaches (dynamic, peer2peer, with a
 * revoke callback), pins the attachment under the reservation lock, takes the buffer's one physical
 * range through the VFIO private interconnect and maps [start, start + len) of it at iova with
 * IOMMU_MMIO (no IOMMU_CACHE). Errors: EINVAL (len 0, a slice past the buffer's end, unaligned
 * iova or length, a start off a page boundary, a reserved IOVA), EOVERFLOW, EEXIST, EOPNOTSUPP (not a VFIO dma-buf, or one of
 * several ranges: the kernel's iommufd takes physical-range dma-bufs of VFIO only), ENODEV
 * (revoked), the attach's and the IOMMU's errors; nothing stays attached, pinned or mapped on
 * failure.
 */
export function iommufdIoasMapDmabuf(ioas: Ioas, buf: DmaBuf, iova: bigint, opts: IoasMapDmabufOptions = {}): Result<void> {
  const t = attachPinnedTake(ioas, buf, iova, opts, undefined, vfioPciDmaBufIommufdMap, () => undefined);
  if (!t.ok) return t;
  const { att, start, len, prot, release } = t.value;
  const phys = t.value.taken;
  // iopt_alloc_area_pages(): the IOVA range; then batch_to_domain() with BATCH_MMIO
  const c = checkAreaIova(ioas, iova, start, len);
  if (!c.ok) { release(); return c; }
  const mprot = (prot & ~IOMMU_CACHE) | IOMMU_MMIO;
  const paddr = phys.paddr + BigInt(start);
  const r = iommuMap(ioas.domain, iova, paddr, len, mprot);
  if (!r.ok) { release(); return r; }
  ioas.areas.push({ iova, len, kind: 'dmabuf', prot: mprot, pinned: null, buf, att, paddr, revoked: false, iommuMaps: 1 });
  return ok();
}

/**
 * IOMMU_IOAS_MAP_FILE of a dma-buf as the RFC "Add DMA-buf mapping types" (Feb 2026, not merged)
 * converts iommufd: a PAL importer. It attaches accepting only the 'pal' type (dynamic, peer2peer,
 * revocable), pins, takes the Physical Address List (the exporter's phys_vec ranges and their P2P
 * provider) instead of the private VFIO interconnect, and maps [start, start + len) of the ranges
 * at consecutive IOVAs from iova with IOMMU_MMIO (one iommu_map per range), so several ranges work.
 * Revoke unmaps the domain and the PAL, and is permanent, as for iommufdIoasMapDmabuf.
 * Errors: as iommufdIoasMapDmabuf, with EOPNOTSUPP for an exporter that offers no PAL (the
 * negotiation fails at attach).
 */
export function iommufdIoasMapDmabufPal(ioas: Ioas, buf: DmaBuf, iova: bigint, opts: IoasMapDmabufOptions = {}): Result<void> {
  const t = attachPinnedTake(ioas, buf, iova, opts, ['pal'], dmaBufMapPal, dmaBufUnmapPal);
  if (!t.ok) return t;
  const { att, start, len, prot, release } = t.value;
  const pal = t.value.taken;
  const c = checkAreaIova(ioas, iova, start, len);
  if (!c.ok) { release(); return c; }
  const mprot = (prot & ~IOMMU_CACHE) | IOMMU_MMIO;
  const part = slice(pal.phys, start, len);
  let at = iova;
  let maps = 0;
  for (const r of part) {
    const m = iommuMap(ioas.domain, at, r.addr, r.len, mprot);
    if (!m.ok) {
      if (at > iova) iommuUnmap(ioas.domain, iova, Number(at - iova));
      release();
      return m;
    }
    at += BigInt(r.len);
    maps++;
  }
  const paddr = [...part][0].addr;
  ioas.areas.push({ iova, len, kind: 'dmabuf', prot: mprot, pinned: null, buf, att, paddr, revoked: false, iommuMaps: maps, pal });
  return ok();
}

/** Takes one area out: out of the domain (unless revoked), unpinned, detached. */
function releaseArea(ioas: Ioas, a: IoasArea): void {
  if (a.kind === 'user') {
    iommuUnmap(ioas.domain, a.iova, a.len);
    unpinUserPhyrs(a.pinned!);
    return;
  }
  if (!a.revoked) iommuUnmap(ioas.domain, a.iova, a.len);
  // iopt_release_pages(): unpin under the reservation lock, then detach
  const buf = a.buf!;
  dmaResvLock(buf);
  if (a.pal) {
    dmaBufUnmapPal(a.att!, a.pal);
    a.pal = null;
  }
  dmaBufUnpin(a.att!);
  dmaResvUnlock(buf);
  dmaBufDetach(buf, a.att!);
}

/**
 * IOMMU_IOAS_UNMAP: removes the areas inside [iova, iova + len) in IOVA order and returns the bytes
 * unmapped. Errors: EINVAL (len 0), EOVERFLOW, ENOENT (nothing mapped there; or an area only partly
 * inside the range: areas are not split, and the areas below it that were inside are unmapped
 * already, as iopt_unmap_iova_range() leaves them). A revoked dma-buf area is removed like any other.
 */
export function iommufdIoasUnmap(ioas: Ioas, iova: bigint, len: number): Result<number> {
  checkIoas(ioas);
  if (!ioas.alive) return err('ENOENT', `${ioas} is destroyed`);
  if (len === 0) return err('EINVAL', 'length is 0');
  const last = iova + BigInt(len) - 1n;
  if (last > U64_MAX) return err('EOVERFLOW', `iova 0x${iova.toString(16)} + length ${len} wraps`);
  const hit = ioas.areas.filter((a) => a.iova <= last && a.iova + BigInt(a.len) - 1n >= iova).sort((a, b) => (a.iova < b.iova ? -1 : 1));
  // io_pagetable.c: iopt_unmap_iova_range() takes the areas one by one from the lowest IOVA and stops
  // with -ENOENT at the first that is not wholly inside, keeping what it has unmapped so far
  let n = 0;
  for (const a of hit) {
    if (a.iova < iova || a.iova + BigInt(a.len) - 1n > last) {
      return err('ENOENT', `the area at 0x${a.iova.toString(16)} (${a.len} bytes) is not inside the range${n > 0 ? ` (${n} bytes below it were unmapped)` : ''}`);
    }
    releaseArea(ioas, a);
    ioas.areas.splice(ioas.areas.indexOf(a), 1);
    n += a.len;
  }
  if (n === 0) return err('ENOENT', `nothing is mapped in [0x${iova.toString(16)}, 0x${last.toString(16)}]`);
  return ok(n);
}

/**
 * IOMMU_DESTROY of the IOAS with its device unbound: every area is released, the device goes back
 * to its default domain (iommu_device_release_dma_owner) and the paging domain is freed. A second
 * destroy does nothing.
 */
export function iommufdIoasDestroy(ioas: Ioas): void {
  checkIoas(ioas);
  if (!ioas.alive) return;
  for (const a of [...ioas.areas]) releaseArea(ioas, a);
  ioas.areas.length = 0;
  if (ioas.defaultDomain !== null && ioas.defaultDomain.alive) ioas.iommu.attachDevice(ioas.dev, ioas.defaultDomain);
  ioas.iommu.freeDomain(ioas.domain);
  ioas.alive = false;
  ioas.dev.slots.delete(DEVICE_IOAS);
  ctxOf(dmaContextOf(ioas.dev).mm).ioases.delete(ioas);
}
