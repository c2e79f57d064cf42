// Models: drivers/iommu/iommufd/ (Linux 7.1): an IOAS (ioas.c, io_pagetable.c) holding any number
// of devices and paging hw_pagetables (device.c: iommufd_device_bind -> iommu_device_claim_dma_owner,
// which takes the device out of its DMA-API default domain into the group's blocking domain
// (__iommu_take_dma_ownership: EBUSY when it is attached elsewhere, EPERM for another owner);
// iommufd_device_attach of the IOAS -> iommufd_device_auto_get_domain: the IOAS's automatic
// hw_pagetables tried in turn (EINVAL, an incompatible domain, means the next), else
// iommufd_hwpt_paging_alloc with immediate attach: a paging domain, the device attached to it with its
// reserved regions kept out of the IOAS (iommufd_hw_pagetable_attach ->
// iopt_table_enforce_dev_resv_regions, owned by the device), then iopt_table_add_domain: the IOAS's
// iova_alignment raised to the domain's smallest page, the aperture reserved and every area filled
// into the domain; IOMMU_HWPT_ALLOC (hw_pagetable.c: iommufd_hwpt_alloc) of a manual hw_pagetable
// that an attach names; maps fill and unmaps empty every domain (pages.c: iopt_area_fill_domains,
// iopt_area_unfill_domains), user pages pinned once for all of them; iommufd_device_detach: back to
// the blocking domain, the device's reserved regions out, an automatic hw_pagetable destroyed with
// its last device (iommufd_hw_pagetable_put -> iommufd_hwpt_paging_destroy ->
// iopt_table_remove_domain: unfilled, iopt_calculate_iova_alignment over the domains left));
// the IOAS's iova_alignment (io_pagetable.c: iopt_init_table starts it at 1, a domain-less IOAS
// takes any byte) checked by every map; IOMMU_IOAS_MAP of user memory, pinned FOLL_LONGTERM only
// while a domain holds the area (iopt_map_user_pages; iopt_area_fill_domains does nothing without
// a domain; conv_iommu_prot adds IOMMU_CACHE); IOMMU_IOAS_MAP_FILE of a dma-buf
// (iopt_map_file_pages -> iopt_alloc_dmabuf_pages -> iopt_map_dmabuf: a dynamic, peer2peer,
// revocable attachment, dma_buf_pin under the reservation lock, then the physical range through the
// private VFIO interconnect vfio_pci_dma_buf_iommufd_map; batch_to_domain maps it with IOMMU_MMIO
// and without IOMMU_CACHE); revoke (iopt_revoke_notify: unmap from every domain, the IOTLB
// invalidated by iommu_unmap's sync; the area stays until userspace unmaps it, no automatic remap);
// IOMMU_IOAS_UNMAP (iopt_unmap_iova: the range must cover whole areas, ENOENT otherwise and when
// nothing was mapped); IOMMU_DESTROY (iommufd_object_remove: EBUSY while a hw_pagetable holds the
// IOAS; iopt_release_pages: unpin), and the close-down of a VMM (iommufdIoasClose: devices detached
// and unbound, iommu_device_release_dma_owner: back to the default domain, then the destroy).
// Both maps take the IOVA given (IOMMU_IOAS_MAP_FIXED_IOVA) or, given null, let the IOAS pick it and
// return it as the kernel returns cmd->iova (IOPT_ALLOC_IOVA: iopt_alloc_area_pages ->
// iopt_alloc_iova: alignment from the length and the low bits of uptr or the dma-buf's file offset,
// capped at HPAGE_SIZE, EINVAL below iova_alignment; within the allowed ranges, [PAGE_SIZE,
// ULONG_MAX - PAGE_SIZE] when there are none, the first hole between reserved ranges and areas
// that fits, ENOSPC when none does).
// IOMMU_IOAS_COPY (ioas.c: iommufd_ioas_copy -> iopt_get_pages, iopt_map_pages): the source range,
// wholly covered by abutting areas, mapped again in another (or the same) IOAS, the new areas
// sharing the source areas' iopt_pages (IoptPages): user pages pinned once, by runs, and unpinned
// when no pinned area of the pages covers them (__iopt_area_unfill_domain); a dma-buf released with
// its last area (iopt_put_pages) and revoked in every IOAS that maps it (iopt_revoke_notify).
// IOMMU_IOAS_IOVA_RANGES (ioas.c: iommufd_ioas_iova_ranges: the holes of the reserved tree, lowest
// first, out_iova_alignment, num_iovas and EMSGSIZE for a short array) and IOMMU_IOAS_ALLOW_IOVAS
// (iommufd_ioas_load_iovas: EINVAL for start >= last or an overlap; iopt_set_allow_iova: EADDRINUSE
// when a new range meets a reservation, the old list kept; an empty list lifts the restriction;
// iopt_reserve_iova refuses a reservation meeting an allowed range, so such an attach fails with
// EADDRINUSE; fixed-IOVA maps are not held to the allowed ranges).
// iommufdIoasAlloc(m, dev) keeps a one-device shape: the IOAS is made with dev bound (unbound at its
// destroy) and attached unless asked not to. The machine has one IOMMU and every device is its own
// group, so every automatic domain takes every device (the EINVAL-means-next path and the group rule
// never come into play). Model deviation: the dma-buf attachment is made for the IOAS's own device,
// else its first attached device, where the kernel uses iommufd_global_device(), a faux device the
// model does not have (a dma-buf map into an IOAS with no device is ENODEV); the attachment is never
// mapped through the DMA API either way. The ioctls' __reserved (EOPNOTSUPP), user-copy (EFAULT) and
// allocation (ENOMEM) failures have no counterpart in the model's calls.

import { SlotKey, checkAddr, checkLen, err, ok, type Err, type Ok, type Result } from '../../base/index.ts';
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
import { VFIO_PCI_DRIVER_NAME, vfioPciDmaBufIommufdMap } from '../vfio/index.ts';

const U64_MAX = (1n << 64n) - 1n;

/** One mapped IOVA range of an IOAS (struct iopt_area with its iopt_pages). */
export interface IoasArea {
  readonly iova: bigint;
  readonly len: number;
  /** 'user': IOMMU_IOAS_MAP of user memory; 'dmabuf': IOMMU_IOAS_MAP_FILE of a dma-buf. */
  readonly kind: 'user' | 'dmabuf';
  /** IOMMU_* prot the domain holds it with. */
  readonly prot: number;
  /** area->page_offset: the offset of the first byte in its PAGE_SIZE page (of uptr, or of the dma-buf start). */
  readonly pageOffset: number;
  /** 'user': the process and its address mapped (iopt_pages source_mm and uptr); null / 0n for a dma-buf. */
  readonly mm: UserMm | null;
  readonly uptr: bigint;
  /**
   * 'user': whether the area holds its pages pinned (while a domain holds it); the pins themselves
   * are the shared pages' (pages.pins), taken once per page however many areas use it.
   */
  pinned: boolean;
  /** The iopt_pages the area is a window of, shared with the areas IOMMU_IOAS_COPY made from it (or it from). */
  readonly pages: IoptPages;
  /** 'dmabuf': the buffer, its attachment and the offset of the slice in it (IOMMU_IOAS_MAP_FILE start). */
  readonly buf: DmaBuf | null;
  readonly att: DmaBufAttachment | null;
  readonly start: number;
  /** The physical address of the first byte: a dma-buf's from the map on; user memory's while pinned (else null). */
  paddr: bigint | null;
  /** 'dmabuf': revoked by the exporter (unmapped from the domain; the IOVA range stays taken). */
  revoked: boolean;
  /** IOMMU map calls made for it into the IOAS's domain (one per physically contiguous run); 0 with no domain. */
  iommuMaps: number;
  /** 'dmabuf' through the RFC's PAL mapping type: the PAL map held (null once unmapped on revoke). */
  pal?: DmaBufPal | null;
}

/**
 * struct iopt_pages (io_pagetable.h): what one IOMMU_IOAS_MAP or IOMMU_IOAS_MAP_FILE made, shared
 * by every area that maps part of it (the area the map made and those IOMMU_IOAS_COPY made from it,
 * in any IOAS). Its areas are its references (the kernel's kref, which iopt_get_pages takes for
 * each copied area): it is released (a dma-buf unpinned and detached) when the last area goes.
 * User memory is pinned once per page while at least one area covering the page is in a domain
 * (pages->domains_itree: __iopt_area_unfill_domain unpins only what no other area still covers).
 */
export interface IoptPages {
  readonly kind: 'user' | 'dmabuf';
  /** PAGE_SIZE of the machine. */
  readonly pageSize: number;
  /** pages->writable: the map asked for IOMMU_IOAS_MAP_WRITEABLE (pinned with FOLL_WRITE; a copy asking to write is EPERM without it). */
  readonly writable: boolean;
  /**
   * 'user': the pin calls held, [start, end) page-aligned user ranges that do not overlap; a page is
   * in one exactly while an area of these pages covering it is pinned (in a domain).
   */
  readonly pins: UserPin[];
  /** The areas holding it and their IOASes. */
  readonly users: Map<IoasArea, Ioas>;
  /** 'dmabuf': the PAL held (RFC importer), null once unmapped on revoke. */
  pal: DmaBufPal | null;
}

/** One pin call an iopt_pages holds: the user range [start, end), page-aligned, and what it pinned. */
export interface UserPin {
  readonly start: bigint;
  readonly end: bigint;
  readonly list: PinnedPhyrList;
}

/** An IOVA range the IOAS keeps out of every map ([start, last] inclusive) and who put it there. */
export interface IoasReserved {
  readonly start: bigint;
  readonly last: bigint;
  /** 'device': a reserved region of an attached device; 'domain': outside a domain's aperture. */
  readonly owner: 'device' | 'domain';
  /** The owner itself (iopt_reserved->owner): the device, or the domain, whose going takes the range out again. */
  readonly by: Device | IommuDomain;
}

/** An inclusive IOVA range [start, last] (struct iommu_iova_range of include/uapi/linux/iommufd.h). */
export interface IoasIovaRange {
  readonly start: bigint;
  readonly last: bigint;
}

/**
 * struct iommufd_device: a device bound to iommufd (iommufd_device_bind: the DMA owner of its group,
 * parked in the group's blocking domain while no hw_pagetable holds it), attached to at most one
 * hw_pagetable. Every device is its own IOMMU group in the model (iommu/domain.ts), so the group
 * rule (iommufd_hw_pagetable_attach: every device of a group on the group's one hw_pagetable) holds
 * by construction.
 */
export class IommufdDevice {
  /** The object ID the bind handed out (VFIO_DEVICE_BIND_IOMMUFD's out_devid). */
  readonly id: number;
  readonly dev: Device;
  readonly iommu: Iommu;
  /** The device's DMA-API default domain, which it goes back to when unbound. */
  readonly defaultDomain: IommuDomain | null;
  /** The group's blocking domain (group->blocking_domain: made once, kept with the group). */
  readonly blockingDomain: IommuDomain;
  /** The IOAS iommufdIoasAlloc bound it with (unbound when that IOAS is destroyed), or null when iommufdDeviceAttach bound it. */
  owner: Ioas | null = null;
  /** @internal */
  hwptNow: IommufdHwpt | null = null;
  /** @internal */
  bound = true;

  /** @internal made by the bind. */
  constructor(id: number, dev: Device, iommu: Iommu, defaultDomain: IommuDomain | null, blockingDomain: IommuDomain) {
    this.id = id;
    this.dev = dev;
    this.iommu = iommu;
    this.defaultDomain = defaultDomain;
    this.blockingDomain = blockingDomain;
  }

  /** The hw_pagetable the device is attached to, or null (in its blocking domain). */
  get hwpt(): IommufdHwpt | null {
    return this.hwptNow;
  }
}

/**
 * struct iommufd_hwpt_paging of an IOAS: a paging domain ('unmanaged') holding every area of the
 * IOAS, and the devices attached to it (the attach's device_array). An automatic one
 * (iommufd_device_auto_get_domain) goes with its last device; one IOMMU_HWPT_ALLOC made
 * (iommufdHwptAlloc) stays until iommufdHwptDestroy or iommufdIoasClose (and holds the IOAS: its
 * IOMMU_DESTROY is EBUSY meanwhile).
 */
export class IommufdHwpt {
  readonly id: number;
  readonly ioas: Ioas;
  readonly domain: IommuDomain;
  /** hwpt_paging->auto_domain: made by an attach to the IOAS, and the only kind an attach to the IOAS picks. */
  readonly autoDomain: boolean;
  /** @internal */
  readonly devicesNow: IommufdDevice[] = [];
  alive = true;

  /** @internal made by the attach or iommufdHwptAlloc. */
  constructor(id: number, ioas: Ioas, domain: IommuDomain, autoDomain: boolean) {
    this.id = id;
    this.ioas = ioas;
    this.domain = domain;
    this.autoDomain = autoDomain;
  }

  /** The devices attached to it, in attach order. */
  get devices(): Device[] {
    return this.devicesNow.map((d) => d.dev);
  }

  toString(): string {
    return `HWPT ${this.id} of ${this.ioas}`;
  }
}

/**
 * struct iommufd_ioas: areas, reserved and allowed IOVA ranges, and the hw_pagetables (each a paging
 * domain filled with every area) with the devices attached to them.
 */
export class Ioas {
  readonly id: number;
  /** The device iommufdIoasAlloc bound with the IOAS (iommufdIoasAttach / iommufdIoasDetach act on it), or null. */
  readonly dev: Device | null;
  /** dev's IOMMU (null without dev). */
  readonly iommu: Iommu | null;
  /** dev's DMA-API default domain, which it goes back to at destroy (null without dev). */
  readonly defaultDomain: IommuDomain | null;
  /** dev's group's blocking domain, where dev sits while no domain of the IOAS holds it (kept after destroy; null without dev). */
  readonly blockingDomain: IommuDomain | null;
  readonly areas: IoasArea[] = [];
  alive = true;
  /** PAGE_SIZE of the machine. */
  readonly pageSize: number;
  /** The machine the IOAS was allocated on. */
  readonly mm: MachineMm;
  /** @internal ioas->hwpt_list, oldest first (also the order of iopt->domains the model keeps). */
  readonly hwptsNow: IommufdHwpt[] = [];
  /** @internal */
  alignmentNow = 1;
  /** @internal */
  readonly reservedNow: IoasReserved[] = [];
  /** @internal */
  readonly allowedNow: IoasIovaRange[] = [];

  /** @internal made by iommufdIoasAlloc. */
  constructor(id: number, m: MachineMm, idev: IommufdDevice | null) {
    this.id = id;
    this.mm = m;
    this.dev = idev?.dev ?? null;
    this.iommu = idev?.iommu ?? null;
    this.defaultDomain = idev?.defaultDomain ?? null;
    this.blockingDomain = idev?.blockingDomain ?? null;
    this.pageSize = m.pageSize;
  }

  /**
   * The paging domain of the IOAS's first hw_pagetable (for an IOAS allocated with its device, the
   * domain that device is attached to), or null while it has none.
   */
  get domain(): IommuDomain | null {
    return this.hwptsNow[0]?.domain ?? null;
  }

  /** The hw_pagetables of the IOAS, oldest first. */
  get hwpts(): ReadonlyArray<IommufdHwpt> {
    return this.hwptsNow;
  }

  /** The devices attached to the IOAS's hw_pagetables, hw_pagetable by hw_pagetable, in attach order. */
  get devices(): Device[] {
    return this.hwptsNow.flatMap((h) => h.devices);
  }

  /**
   * iopt->iova_alignment (what IOMMU_IOAS_IOVA_RANGES reports as out_iova_alignment): 1 with no
   * domain, else the largest of the domains' smallest pages; every map's iova, length and page
   * offset must be multiples of it.
   */
  get iovaAlignment(): number {
    return this.alignmentNow;
  }

  /** IOVA ranges no map may use: every attached device's reserved regions and what lies outside each domain's aperture (they may overlap). */
  get reserved(): ReadonlyArray<IoasReserved> {
    return this.reservedNow;
  }

  /**
   * The allowed IOVA ranges IOMMU_IOAS_ALLOW_IOVAS set (iopt->allowed_itree), lowest first: no
   * reservation may meet them, and automatic IOVAs come from them only. Empty: no restriction.
   */
  get allowed(): ReadonlyArray<IoasIovaRange> {
    return this.allowedNow;
  }

  toString(): string {
    return this.dev !== null ? `IOAS ${this.id} (${this.dev.name})` : `IOAS ${this.id}`;
  }
}

/** The iommufd context of a machine (struct iommufd_ctx: its objects). */
interface IommufdCtx {
  /** IDs of the live objects (IOASes, hw_pagetables, bound devices): ictx->objects. */
  readonly ids: Set<number>;
  readonly ioases: Set<Ioas>;
}

/**
 * An object ID as iommufd_object_alloc_ucmd() / _iommufd_object_alloc() takes it: one xarray for
 * every kind of object (ictx->objects, XA_FLAGS_ALLOC1 in iommufd_fops_open()), so the lowest free
 * ID from 1, a destroyed object's ID used again.
 */
function allocObjectId(ctx: IommufdCtx): number {
  let id = 1;
  while (ctx.ids.has(id)) id++;
  ctx.ids.add(id);
  return id;
}

const IOMMUFD_CTX = new SlotKey<IommufdCtx>('iommufd');
/** The iommufd_device of a bound device (the DMA owner of its group). */
const DEVICE_IDEV = new SlotKey<IommufdDevice>('iommufd-device');
/** The blocking domain of a device's group (group->blocking_domain: made once, kept with the group). */
const DEVICE_BLOCKING_DOMAIN = new SlotKey<IommuDomain>('iommu-blocking-domain');

function ctxOf(m: MachineMm): IommufdCtx {
  return m.slots.getOrCreate(IOMMUFD_CTX, () => ({ ids: new Set<number>(), ioases: new Set<Ioas>() }));
}

/** The live IOASes of a machine. */
export function iommufdIoases(m: MachineMm): Ioas[] {
  return [...(m.slots.get(IOMMUFD_CTX)?.ioases ?? [])];
}

/** The IOAS dev is attached to, or else the one it is bound with (iommufdIoasAlloc), or null. */
export function iommufdIoasOf(dev: Device): Ioas | null {
  const i = idevOf(dev);
  const ioas = i?.hwptNow?.ioas ?? i?.owner ?? null;
  return ioas !== null && ioas.alive ? ioas : null;
}

/** The iommufd_device of dev while bound, or undefined. */
function idevOf(dev: Device): IommufdDevice | undefined {
  const i = dev.slots.get(DEVICE_IDEV);
  return i !== undefined && i.bound ? i : undefined;
}

function checkIoas(ioas: unknown): Ioas {
  if (!(ioas instanceof Ioas)) throw new TypeError(`ioas must be an Ioas, got ${String(ioas)}`);
  return ioas;
}

const hex = (v: bigint): string => `0x${v.toString(16)}`;

/** The areas in IOVA order (the kernel walks its area interval tree). */
function areasByIova(ioas: Ioas): IoasArea[] {
  return [...ioas.areas].sort((a, b) => (a.iova < b.iova ? -1 : a.iova > b.iova ? 1 : 0));
}

/** The first area (in IOVA order) meeting [start, last], or undefined (iopt_area_iter_first). */
function areaIn(ioas: Ioas, start: bigint, last: bigint): IoasArea | undefined {
  return areasByIova(ioas).find((a) => start <= a.iova + BigInt(a.len) - 1n && last >= a.iova);
}

/** 1 << __ffs(pgsize_bitmap): the domain's smallest page. */
function smallestPage(d: IommuDomain): number {
  const b = d.pgsizeBitmap;
  return Number(b & -b);
}

/** Takes out the reserved ranges of one owner, a device or a domain (iopt_remove_reserved_iova / __iopt_remove_reserved_iova). */
function removeReserved(ioas: Ioas, by: Device | IommuDomain): void {
  const keep = ioas.reservedNow.filter((r) => r.by !== by);
  ioas.reservedNow.length = 0;
  ioas.reservedNow.push(...keep);
}

/** The first allowed range meeting [start, last], or undefined (iopt_allowed_iter_first). */
function allowedIn(ioas: Ioas, start: bigint, last: bigint): IoasIovaRange | undefined {
  return ioas.allowedNow.find((r) => start <= r.last && last >= r.start);
}

/**
 * iopt_reserve_iova(): keeps [start, last] out of the IOAS; EADDRINUSE when an area already uses
 * part of it, or when it meets an allowed range (the promise IOMMU_IOAS_ALLOW_IOVAS made: a
 * reservation there is refused, so the attach that asks for it fails).
 */
function reserveIova(ioas: Ioas, start: bigint, last: bigint, owner: IoasReserved['owner'], by: Device | IommuDomain, what: string): Result<void> {
  const a = areaIn(ioas, start, last);
  if (a !== undefined) {
    return err('EADDRINUSE', `the area at ${hex(a.iova)} (${a.len} bytes) lies in ${what} [${hex(start)}, ${hex(last)}], which the IOAS must keep free`);
  }
  const al = allowedIn(ioas, start, last);
  if (al !== undefined) {
    return err('EADDRINUSE', `${what} [${hex(start)}, ${hex(last)}] meets the allowed IOVA range [${hex(al.start)}, ${hex(al.last)}] (IOMMU_IOAS_ALLOW_IOVAS)`);
  }
  ioas.reservedNow.push({ start, last, owner, by });
  return ok();
}

/**
 * iopt_check_iova_alignment(): every area's iova, length and page offset must be multiples of a
 * raised alignment; EADDRINUSE names the first that is not.
 */
function checkAreasAligned(ioas: Ioas, align: number): Result<void> {
  const mask = BigInt(align - 1);
  for (const a of areasByIova(ioas)) {
    const bad = (a.iova & mask) !== 0n ? `iova ${hex(a.iova)}` : a.len % align !== 0 ? `length ${a.len}` : a.pageOffset % align !== 0 ? `page offset ${a.pageOffset}` : null;
    if (bad !== null) return err('EADDRINUSE', `the area at ${hex(a.iova)} (${a.len} bytes) has ${bad}, not a multiple of the ${align}-byte IOVA alignment the domain needs`);
  }
  return ok();
}

/**
 * iopt_area_fill_domain() for one area: pins user memory (pfn_reader: pin_user_pages with
 * FOLL_LONGTERM, FOLL_WRITE when writeable; device memory refused with EFAULT, as for a PFN map)
 * and maps each physically contiguous run (batch_to_domain); a dma-buf's slice is mapped from its
 * ranges, a revoked one not at all. On failure nothing of the area stays pinned or mapped.
 */
function fillArea(d: IommuDomain, a: IoasArea): Result<void> {
  if (a.kind === 'dmabuf') {
    if (a.revoked) return ok();
    const runs = a.pal ? [...slice(a.pal.phys, a.start, a.len)] : [{ addr: a.paddr!, len: a.len }];
    let at = a.iova;
    for (const r of runs) {
      const m = iommuMap(d, at, r.addr, r.len, a.prot);
      if (!m.ok) {
        if (at > a.iova) iommuUnmap(d, a.iova, Number(at - a.iova));
        return m;
      }
      at += BigInt(r.len);
    }
    a.iommuMaps = runs.length;
    return ok();
  }
  const pages = a.pages;
  const ps = BigInt(pages.pageSize);
  const first = a.uptr - (a.uptr % ps);
  const end = roundUp(a.uptr + BigInt(a.len), ps);
  // pfn_reader: pages another pinned area covers are read back, not pinned again; the rest are pinned
  // one run at a time
  const taken: UserPin[] = [];
  const undoPins = (): void => {
    for (const t of taken) {
      unpinUserPhyrs(t.list);
      pages.pins.splice(pages.pins.indexOf(t), 1);
    }
  };
  for (const gap of holesOf(pages.pins.map((x) => ({ start: x.start, last: x.end - 1n })), first, end - 1n)) {
    const r = pinRun(a, gap.start, gap.last + 1n);
    if (!r.ok) { undoPins(); return r; }
    taken.push(r.value);
    pages.pins.push(r.value);
  }
  const runs = physRuns(pages, a.uptr, BigInt(a.len));
  let off = 0n;
  for (const r of runs) {
    const m = iommuMap(d, a.iova + off, r.addr, r.len, a.prot);
    if (!m.ok) {
      if (off > 0n) iommuUnmap(d, a.iova, Number(off));
      undoPins();
      return m;
    }
    off += BigInt(r.len);
  }
  a.pinned = true;
  a.paddr = runs[0].addr;
  a.iommuMaps = runs.length;
  return ok();
}

function roundUp(v: bigint, to: bigint): bigint {
  return ((v + to - 1n) / to) * to;
}

/**
 * Pins the user pages [start, end) of the area's pages (pin_user_pages with FOLL_LONGTERM, and
 * FOLL_WRITE when the pages are writable); device memory is EFAULT (VM_PFNMAP), nothing kept.
 */
function pinRun(a: IoasArea, start: bigint, end: bigint): Result<UserPin> {
  const pin = pinUserPhyrsAll(a.mm!, start, Number(end - start), FOLL_LONGTERM | (a.pages.writable ? FOLL_WRITE : 0));
  if (!pin.ok) return pin;
  const list = pin.value;
  let off = 0n;
  for (let i = 0; i < list.count; i++) {
    if (rangeKind(list.flagsAt(i)) === RANGE_DEVICE) {
      unpinUserPhyrs(list);
      const at = start + off > a.uptr ? start + off : a.uptr;
      return err('EFAULT', `${hex(at)} is device memory (pin_user_pages refuses VM_PFNMAP)`);
    }
    off += BigInt(list.lenAt(i));
  }
  return ok({ start, end, list });
}

/** The physically contiguous runs of the pinned user bytes [uptr, uptr + len) of pages, in order. */
function physRuns(pages: IoptPages, uptr: bigint, len: bigint): Array<{ addr: bigint; len: number }> {
  const out: Array<{ addr: bigint; len: number }> = [];
  const end = uptr + len;
  for (const p of [...pages.pins].sort((x, y) => (x.start < y.start ? -1 : 1))) {
    if (p.end <= uptr || p.start >= end) continue;
    let at = p.start;
    for (let i = 0; i < p.list.count && at < end; i++) {
      const l = BigInt(p.list.lenAt(i));
      const from = at > uptr ? at : uptr;
      const to = at + l < end ? at + l : end;
      if (from < to) {
        const addr = p.list.addrAt(i) + (from - at);
        const top = out[out.length - 1];
        if (top !== undefined && top.addr + BigInt(top.len) === addr) top.len += Number(to - from);
        else out.push({ addr, len: Number(to - from) });
      }
      at += l;
    }
  }
  return out;
}

/**
 * After area a left its domain: every pin of its pages that no pinned area covers any more goes
 * (__iopt_area_unfill_domain unpins what no other area in pages->domains_itree covers). A pin only
 * partly still covered keeps those pages: they are pinned again as a pin of their own first, then
 * the old pin is let go (the model's pins are whole calls; the pincounts end as the kernel's, which
 * unpins page ranges).
 */
function dropPins(a: IoasArea): void {
  const pages = a.pages;
  const ps = BigInt(pages.pageSize);
  const first = a.uptr - (a.uptr % ps);
  const end = roundUp(a.uptr + BigInt(a.len), ps);
  const still = [...pages.users.keys()].filter((x) => x !== a && x.pinned)
    .map((x) => ({ start: x.uptr - (x.uptr % ps), last: roundUp(x.uptr + BigInt(x.len), ps) - 1n }));
  for (const p of pages.pins.filter((x) => x.start < end && x.end > first)) {
    const free = [...holesOf(still, p.start, p.end - 1n)];
    if (free.length === 0) continue;
    const kept = [...holesOf(free, p.start, p.end - 1n)];
    for (const k of kept) {
      const r = pinRun(a, k.start, k.last + 1n);
      // the pages are pinned already: pinning them again cannot fail or move them
      if (!r.ok || physRuns({ ...pages, pins: [r.value] }, k.start, k.last + 1n - k.start)[0].addr !== physRuns({ ...pages, pins: [p] }, k.start, k.last + 1n - k.start)[0].addr) {
        throw new Error(`iommufd: re-pinning [${hex(k.start)}, ${hex(k.last)}] of a pin still in use failed`);
      }
      pages.pins.push(r.value);
    }
    unpinUserPhyrs(p.list);
    pages.pins.splice(pages.pins.indexOf(p), 1);
  }
}

/**
 * One area out of one domain (a revoked dma-buf is out already). When it was the area's last
 * domain (iopt_area_unfill_domain, the area's storage domain going) its user memory is unpinned;
 * while another domain still holds it only the IOVA range is unmapped (iopt_area_unmap_domain: the
 * iopt_pages keep their pins for the domains left).
 */
function unfillArea(d: IommuDomain, a: IoasArea, last = true): void {
  if (a.kind === 'user') {
    iommuUnmap(d, a.iova, a.len);
    if (!last) return;
    a.pinned = false;
    dropPins(a);
    a.paddr = null;
  } else if (!a.revoked) {
    iommuUnmap(d, a.iova, a.len);
  }
  if (last) a.iommuMaps = 0;
}

/** iopt->domains: the paging domains of the IOAS's hw_pagetables, oldest first. */
function domainsOf(ioas: Ioas): IommuDomain[] {
  return ioas.hwptsNow.map((h) => h.domain);
}

/**
 * iopt_area_fill_domains() (pages.c): the area into every domain of the IOAS, oldest first; user
 * memory is pinned once, by the first (the later ones read the same pinned pages: pfn_reader takes
 * them from the iopt_pages, not from pin_user_pages again). On failure the domains filled are
 * emptied again, nothing stays pinned. Nothing to do without a domain.
 */
function fillDomains(ioas: Ioas, a: IoasArea): Result<void> {
  const done: IommuDomain[] = [];
  for (const d of domainsOf(ioas)) {
    const f = fillArea(d, a);
    if (!f.ok) {
      done.forEach((x, i) => unfillArea(x, a, i === done.length - 1));
      return f;
    }
    done.unshift(d);
  }
  return ok();
}

/** iopt_area_unfill_domains() (pages.c): the area out of every domain of the IOAS, the last one dropping its pins. */
function unfillDomains(ioas: Ioas, a: IoasArea): void {
  const ds = domainsOf(ioas);
  ds.forEach((d, i) => unfillArea(d, a, i === ds.length - 1));
}

/**
 * iopt_table_add_domain(): the alignment becomes max(the domain's smallest page, the current one):
 * EINVAL above PAGE_SIZE, EADDRINUSE when it rises and an area does not conform
 * (iopt_check_iova_alignment); EADDRINUSE when an area lies outside the aperture; then every area
 * is filled into the domain in IOVA order (iopt_fill_domain), undone on failure. On failure the IOAS
 * is as it was.
 */
function addDomain(ioas: Ioas, d: IommuDomain): Result<void> {
  const align = Math.max(smallestPage(d), ioas.alignmentNow);
  if (align > ioas.pageSize) return err('EINVAL', `the domain's smallest page ${align} is larger than PAGE_SIZE ${ioas.pageSize}`);
  if (align !== ioas.alignmentNow) {
    const c = checkAreasAligned(ioas, align);
    if (!c.ok) return c;
  }
  const g = d.geometry;
  const aperture = (): Result<void> => {
    if (g.apertureStart > 0n) {
      const r = reserveIova(ioas, 0n, g.apertureStart - 1n, 'domain', d, 'the range below the domain\'s aperture');
      if (!r.ok) return r;
    }
    if (g.apertureEnd < U64_MAX) return reserveIova(ioas, g.apertureEnd + 1n, U64_MAX, 'domain', d, 'the range above the domain\'s aperture');
    return ok();
  };
  const ap = aperture();
  if (!ap.ok) {
    removeReserved(ioas, d);
    return ap;
  }
  // iopt_fill_domain(): user memory is pinned only by the first domain; a later one maps the pages
  // the iopt_pages hold already
  const first = ioas.hwptsNow.length === 0;
  const done: IoasArea[] = [];
  for (const a of areasByIova(ioas)) {
    const f = fillArea(d, a);
    if (!f.ok) {
      for (const x of done) unfillArea(d, x, first);
      removeReserved(ioas, d);
      return f;
    }
    done.push(a);
  }
  ioas.alignmentNow = align;
  return ok();
}

/**
 * iommufd_hwpt_paging_destroy() -> iopt_table_remove_domain(): the hw_pagetable leaves the IOAS,
 * every area is unmapped from its domain (unpinned when it was the last domain), the domain's
 * aperture reservation goes, the alignment is recalculated (iopt_calculate_iova_alignment); then
 * iommu_domain_free() gives the domain's table pages back.
 */
function removeHwpt(hwpt: IommufdHwpt): void {
  const ioas = hwpt.ioas;
  const d = hwpt.domain;
  ioas.hwptsNow.splice(ioas.hwptsNow.indexOf(hwpt), 1);
  const last = ioas.hwptsNow.length === 0;
  for (const a of areasByIova(ioas)) unfillArea(d, a, last);
  removeReserved(ioas, d);
  ioas.alignmentNow = calculateIovaAlignment(ioas);
  hwpt.alive = false;
  ctxOf(ioas.mm).ids.delete(hwpt.id);
  d.iommu.freeDomain(d);
}

/**
 * iopt_calculate_iova_alignment(): 1 (PAGE_SIZE only when large pages are disabled, which only the
 * VFIO type1 compatibility does, not modelled), raised to the smallest page of each domain (and
 * of each access, not modelled).
 */
function calculateIovaAlignment(ioas: Ioas): number {
  return domainsOf(ioas).reduce((al, d) => Math.max(al, smallestPage(d)), 1);
}

/** The device's reserved regions as iommufd keeps them out (iopt_table_enforce_dev_resv_regions). */
function deviceResvRegions(iommu: Iommu): Array<{ start: bigint; last: bigint; kind: string }> {
  // iommu_get_resv_regions() of the device. The PCI bridge windows are not among them: dma-iommu
  // keeps them out of its own cookie only (iova_reserve_pci_windows), and iommufd's user picks its
  // IOVAs.
  return iommu.reservedRegions.filter((r) => r.kind !== 'bridge-window').map((r) => ({ start: r.start, last: r.end - 1n, kind: r.kind }));
}

/** Options of iommufdIoasAlloc. */
export interface IoasAllocOptions {
  /**
   * Attach the device to a domain of the IOAS now (iommufd_device_attach; default true). false
   * leaves it bound only, in the blocking domain: the IOAS has no domain and an alignment of 1
   * until iommufdIoasAttach. Only with a device.
   */
  readonly attach?: boolean;
}

/**
 * VFIO_DEVICE_BIND_IOMMUFD -> iommufd_device_bind(): dev's group DMA-owned by iommufd
 * (iommu_device_claim_dma_owner -> __iommu_take_dma_ownership: dev leaves its DMA-API default domain
 * for the group's blocking domain; group->owner set, so a kernel driver's probe is EBUSY until the
 * unbind). Errors: EINVAL (bound already: vfio_df_ioctl_bind_iommufd() in drivers/vfio/device_cdev.c
 * binds a device once), ENODEV (no IOMMU: iommufd_get_group finds no group), EBUSY (attached to
 * another domain than its default one), EPERM (a kernel driver other than vfio-pci drives it).
 */
function bind(m: MachineMm, dev: Device): Result<IommufdDevice> {
  const dctx = dmaContextOf(dev);
  if (dctx.mm !== m) throw new TypeError(`dev must be a device of machine m, got ${dev.name} of another machine`);
  const iommu = dctx.iommu;
  if (iommu === null) return err('ENODEV', `${dev.name} has no IOMMU group (iommu_device_claim_dma_owner)`);
  const bound = idevOf(dev);
  if (bound !== undefined) {
    const where = bound.owner ?? bound.hwptNow?.ioas;
    return err('EINVAL', `${dev.name} is bound to ${where ?? 'iommufd'} already (a device is bound once: VFIO_DEVICE_BIND_IOMMUFD)`);
  }
  // a kernel driver without driver_managed_dma (all but vfio-pci) took the group's default domain at
  // probe (pci_dma_configure -> iommu_device_use_default_domain): owner_cnt with another owner is EPERM
  if (dev.driver !== null && dev.driver !== VFIO_PCI_DRIVER_NAME) {
    return err('EPERM', `${dev.name} is driven by ${dev.driver}, whose DMA uses the default domain (iommu_device_claim_dma_owner)`);
  }
  const def = iommuGetDmaDomain(dev);
  const cur = iommuGetDomainForDev(dev);
  // __iommu_take_dma_ownership(): the group must be in its default domain
  if (cur !== def) return err('EBUSY', `${dev.name} is attached to a ${cur?.type ?? 'no'} domain that is not its default domain`);
  // __iommu_group_alloc_blocking_domain() makes the group's blocking domain the first time only
  const blocking = dev.slots.getOrCreate(DEVICE_BLOCKING_DOMAIN, () => iommu.allocDomain('blocked'));
  iommu.attachDevice(dev, blocking);
  const idev = new IommufdDevice(allocObjectId(ctxOf(m)), dev, iommu, def, blocking);
  dev.slots.set(DEVICE_IDEV, idev);
  dev.dmaUserOwner = 'iommufd';
  return ok(idev);
}

/**
 * The unbind of closing the device: iommufd_device_detach() first (vfio_iommufd_physical_unbind()
 * in drivers/vfio/iommufd.c detaches before it unbinds, whichever IOAS the device is attached to),
 * then iommufd_device_unbind() -> iommu_device_release_dma_owner(): dev goes back to its default
 * domain (the blocking domain stays with the group).
 */
function unbind(idev: IommufdDevice): void {
  if (!idev.bound) return;
  hwptDetach(idev);
  idev.bound = false;
  ctxOf(dmaContextOf(idev.dev).mm).ids.delete(idev.id);
  idev.dev.slots.delete(DEVICE_IDEV);
  idev.dev.dmaUserOwner = null;
  if (idev.defaultDomain !== null && idev.defaultDomain.alive) idev.iommu.attachDevice(idev.dev, idev.defaultDomain);
}

/**
 * IOMMU_IOAS_ALLOC. Without dev (null or omitted) the IOAS holds no device and no domain (alignment
 * 1) until devices are attached with iommufdDeviceAttach. With dev, dev is bound with it (and
 * attached unless opts.attach is false): claims DMA ownership of dev (it leaves its DMA-API default
 * domain for the blocking domain), then as iommufdIoasAttach. Errors: ENODEV (no IOMMU: no group), EPERM (a kernel driver drives dev),
 * EINVAL (dev is bound already), EBUSY (dev is attached to another domain than its default one), ENOMEM (no
 * page for the domain's top table); on failure dev stays in its default domain.
 * @throws TypeError when dev is neither null nor a device of m, or opts.attach is not a boolean or
 * is given without dev.
 */
export function iommufdIoasAlloc(m: MachineMm, dev: Device | null = null, opts: IoasAllocOptions = {}): Result<Ioas> {
  if (opts.attach !== undefined && typeof opts.attach !== 'boolean') throw new TypeError(`opts.attach must be a boolean, got ${typeof opts.attach}`);
  const ctx = ctxOf(m);
  if (dev === null) {
    if (opts.attach !== undefined) throw new TypeError('opts.attach needs a device: an IOAS allocated without one has none to attach');
    const ioas = new Ioas(allocObjectId(ctx), m, null);
    ctx.ioases.add(ioas);
    return ok(ioas);
  }
  if (typeof dev !== 'object' || !('slots' in dev)) throw new TypeError(`dev must be a Device or null, got ${String(dev)}`);
  const b = bind(m, dev);
  if (!b.ok) return b;
  const idev = b.value;
  const ioas = new Ioas(allocObjectId(ctx), m, idev);
  idev.owner = ioas;
  if (opts.attach ?? true) {
    const a = iommufdIoasAttach(ioas);
    if (!a.ok) {
      ctx.ids.delete(ioas.id);
      unbind(idev);
      return a;
    }
  }
  ctx.ioases.add(ioas);
  return ok(ioas);
}

/**
 * A bound device onto a hw_pagetable. Attached to nothing: iommufd_hw_pagetable_attach(). Attached
 * already: iommufd_device_do_replace() (VFIO attaches an attached device by replacing), a no-op
 * when hwpt is the one it is on. Its reserved regions are kept out of hwpt's IOAS unless they are
 * there already, a replace within one IOAS (iommufd_device_attach_reserved_iova /
 * iommufd_group_do_replace_reserved_iova -> iopt_table_enforce_dev_resv_regions: EADDRINUSE when an
 * area or an allowed range lies in one, its other regions taken out again); then the group goes to
 * the domain (iommu_attach_group_handle, or iommu_group_replace_domain: straight from the old
 * domain, never through the blocking one; EINVAL for a domain of another IOMMU, which the model's
 * one IOMMU per machine never makes). A replace then takes the device's regions out of the old IOAS
 * and the device out of the old hw_pagetable, an automatic one it was the last device of destroyed
 * (the put in iommufd_device_change_pt). On failure the device is where it was.
 */
function hwptAttach(hwpt: IommufdHwpt, idev: IommufdDevice): Result<void> {
  const old = idev.hwptNow;
  if (hwpt === old) return ok();
  const enforce = old === null || hwpt.ioas !== old.ioas;
  if (enforce) {
    const c = reserveDeviceRegions(hwpt.ioas, idev);
    if (!c.ok) return c;
  }
  if (hwpt.domain.iommu !== idev.iommu) {
    if (enforce) removeReserved(hwpt.ioas, idev.dev);
    return err('EINVAL', `${hwpt}'s domain belongs to another IOMMU than ${idev.dev.name}'s`);
  }
  idev.iommu.attachDevice(idev.dev, hwpt.domain);
  hwpt.devicesNow.push(idev);
  idev.hwptNow = hwpt;
  if (old !== null) {
    old.devicesNow.splice(old.devicesNow.indexOf(idev), 1);
    if (enforce) removeReserved(old.ioas, idev.dev);
    if (old.autoDomain && old.devicesNow.length === 0) removeHwpt(old);
  }
  return ok();
}

/**
 * iopt_table_enforce_dev_resv_regions() for one device: its reserved regions kept out of the IOAS;
 * on failure (EADDRINUSE: an area or an allowed range lies in one) none of them stays.
 */
function reserveDeviceRegions(ioas: Ioas, idev: IommufdDevice): Result<void> {
  for (const r of deviceResvRegions(idev.iommu)) {
    const c = reserveIova(ioas, r.start, r.last, 'device', idev.dev, `${idev.dev.name}'s reserved region (${r.kind})`);
    if (!c.ok) {
      removeReserved(ioas, idev.dev);
      return c;
    }
  }
  return ok();
}


/**
 * iommufd_hw_pagetable_detach() and the put after it: the device leaves the hw_pagetable for its
 * blocking domain (iommu_detach_group_handle: it was its group's last device), its reserved regions
 * leave the IOAS; an automatic hw_pagetable whose last device this was is destroyed
 * (iommufd_hw_pagetable_put -> iommufd_hwpt_paging_destroy).
 */
function hwptDetach(idev: IommufdDevice): void {
  const hwpt = leaveHwpt(idev);
  if (hwpt !== null && hwpt.autoDomain && hwpt.devicesNow.length === 0) removeHwpt(hwpt);
}

/** The device out of its hw_pagetable, into its blocking domain, its reserved regions out of the IOAS; returns the hw_pagetable left. */
function leaveHwpt(idev: IommufdDevice): IommufdHwpt | null {
  const hwpt = idev.hwptNow;
  if (hwpt === null) return null;
  hwpt.devicesNow.splice(hwpt.devicesNow.indexOf(idev), 1);
  idev.iommu.attachDevice(idev.dev, idev.blockingDomain);
  removeReserved(hwpt.ioas, idev.dev);
  idev.hwptNow = null;
  return hwpt;
}

/**
 * iommufd_hwpt_paging_alloc(): a new paging domain for idev's IOMMU added to the IOAS
 * (iopt_table_add_domain: alignment, aperture, every area filled), idev attached to it first when
 * `immediate` (immediate_attach, as iommufd_device_auto_get_domain asks for an attach, not for a
 * replace). `auto`: an automatic hw_pagetable (auto_domain). On failure nothing is left: idev is
 * where it was, the domain freed.
 */
function hwptPagingAlloc(ioas: Ioas, idev: IommufdDevice, auto: boolean, immediate = auto): Result<IommufdHwpt> {
  let domain: IommuDomain;
  try {
    domain = idev.iommu.allocDomain('unmanaged');
  } catch (e) {
    return err('ENOMEM', `no page for ${idev.dev.name}'s IOAS domain: ${(e as Error).message}`);
  }
  const ctx = ctxOf(ioas.mm);
  // the ID is taken when the object is (iommufd_object_alloc) and given back on failure (iommufd_object_abort)
  const hwpt = new IommufdHwpt(allocObjectId(ctx), ioas, domain, auto);
  const abort = <T>(r: Result<T>): Result<T> => {
    ctx.ids.delete(hwpt.id);
    idev.iommu.freeDomain(domain);
    return r;
  };
  if (immediate) {
    const a = hwptAttach(hwpt, idev);
    if (!a.ok) return abort(a);
  }
  const add = addDomain(ioas, domain);
  if (!add.ok) {
    if (immediate) leaveHwpt(idev);
    return abort(add);
  }
  ioas.hwptsNow.push(hwpt);
  return ok(hwpt);
}

/**
 * iommufd_device_auto_get_domain(): each automatic hw_pagetable of the IOAS in turn (a manual one,
 * from iommufdHwptAlloc, is never picked), EINVAL from one (an incompatible domain) meaning try the
 * next and any other error ending the attach; with none taking the device, a new automatic one
 * filled with every area (iommufd_hwpt_paging_alloc: with immediate attach for a device attached to
 * nothing; for an attached device the new one is made first and the device replaced into it, the
 * new one destroyed again when that fails). An attached device is replaced (iommufd_device_replace:
 * an automatic hw_pagetable it is on already takes it with nothing done).
 */
function autoGetDomain(ioas: Ioas, idev: IommufdDevice): Result<IommufdHwpt> {
  const replace = idev.hwptNow !== null;
  for (const hwpt of ioas.hwptsNow) {
    if (!hwpt.autoDomain) continue;
    const a = hwptAttach(hwpt, idev);
    if (a.ok) return ok(hwpt);
    if (a.errno !== 'EINVAL') return a;
  }
  const h = hwptPagingAlloc(ioas, idev, true, !replace);
  if (!h.ok || !replace) return h;
  const r = hwptAttach(h.value, idev);
  if (r.ok) return h;
  removeHwpt(h.value);
  return r;
}

/**
 * iommufd_device_attach of the IOAS's device (the one iommufdIoasAlloc bound) to the IOAS, as
 * iommufdDeviceAttach does it: the automatic hw_pagetable the IOAS has already (no new page table,
 * nothing refilled) or a new one. The device's reserved regions are kept out of the IOAS (EADDRINUSE
 * when an area or an allowed range lies in one); a new domain raises the IOAS's iova_alignment to
 * its smallest page (EADDRINUSE when an area's iova, length or page offset is not a multiple of it;
 * EINVAL when that page is larger than PAGE_SIZE), keeps the range outside its aperture out
 * (EADDRINUSE when an area or an allowed range lies there), and has every area mapped into it, user
 * memory pinned now unless another domain holds it already (EFAULT for a hole or device memory).
 * A device attached already is replaced (as iommufdDeviceAttach: nothing done when it is on the
 * IOAS's automatic hw_pagetable). Errors also: ENOENT (destroyed), ENOMEM, the IOMMU's. On failure
 * the device is where it was and the IOAS as it was.
 * @throws TypeError when the IOAS was allocated without a device (use iommufdDeviceAttach).
 */
export function iommufdIoasAttach(ioas: Ioas): Result<void> {
  checkIoas(ioas);
  if (!ioas.alive) return err('ENOENT', `${ioas} is destroyed`);
  const idev = ownIdev(ioas);
  if (idev === null) throw new TypeError(`${ioas} was allocated without a device: attach devices with iommufdDeviceAttach`);
  const a = autoGetDomain(ioas, idev);
  return a.ok ? ok() : a;
}

/** The iommufd_device of the device iommufdIoasAlloc bound with the IOAS, while bound, or null. */
function ownIdev(ioas: Ioas): IommufdDevice | null {
  if (ioas.dev === null) return null;
  const i = idevOf(ioas.dev);
  return i !== undefined && i.owner === ioas ? i : null;
}

/**
 * iommufd_device_detach of the IOAS's device (the one iommufdIoasAlloc bound): it goes to the
 * blocking domain, its reserved regions leave the IOAS, and the automatic hw_pagetable it leaves
 * empty is destroyed (iopt_table_remove_domain: every area unmapped from its domain, user memory
 * unpinned when no other domain holds it; iopt_calculate_iova_alignment over the domains left).
 * The areas stay. Does nothing when the device is not attached to this IOAS, the IOAS is destroyed, or it was allocated without a device.
 */
export function iommufdIoasDetach(ioas: Ioas): void {
  checkIoas(ioas);
  const idev = ownIdev(ioas);
  // the device may have been attached to another IOAS since: that attachment is not this IOAS's to undo
  if (!ioas.alive || idev === null || idev.hwptNow?.ioas !== ioas) return;
  hwptDetach(idev);
}

function checkDevice(dev: unknown): Device {
  if (typeof dev !== 'object' || dev === null || !('slots' in dev) || !('name' in dev)) throw new TypeError(`dev must be a Device, got ${String(dev)}`);
  return dev as Device;
}

/**
 * What VFIO_DEVICE_BIND_IOMMUFD and VFIO_DEVICE_ATTACH_IOMMUFD_PT do for a device: binds dev to
 * iommufd unless it is bound (iommufd_device_bind: DMA ownership of its group, out of its DMA-API
 * default domain) and attaches it (iommufd_device_attach) to `to`; a device attached already is
 * replaced (vfio_iommufd_physical_attach_ioas() in drivers/vfio/iommufd.c calls
 * iommufd_device_replace(): it moves to `to` without passing through its blocking domain, leaves
 * its old hw_pagetable (destroyed when automatic and now empty), and stays where it was on failure;
 * `to` the hw_pagetable it is on, or an IOAS whose automatic hw_pagetable it is on, changes nothing). `to` an IOAS:
 * iommufd_device_auto_get_domain, the IOAS's automatic hw_pagetable shared when one takes the
 * device (every domain of the machine's one IOMMU does: the device joins it with no new page table
 * and nothing refilled), else a new one filled with every area; `to` a hw_pagetable
 * (iommufdHwptAlloc): that one. The device's reserved regions join the IOAS's (their union over the
 * attached devices). Returns the hw_pagetable (the pt_id written back). Errors: ENOENT (destroyed),
 * ENODEV (dev on no IOMMU), EPERM (a kernel driver other than vfio-pci drives dev), EBUSY (in another domain than its default one),
 * EADDRINUSE (a reserved region of dev meets an area or an allowed range; a new domain's aperture
 * or alignment does not fit an area), EINVAL, ENOMEM, EFAULT and the IOMMU's (a new domain); on
 * failure nothing changes (a device bound here is unbound again).
 * @throws TypeError when dev is not a Device of the IOAS's machine or `to` neither an Ioas nor an IommufdHwpt.
 */
export function iommufdDeviceAttach(to: Ioas | IommufdHwpt, dev: Device): Result<IommufdHwpt> {
  if (!(to instanceof Ioas) && !(to instanceof IommufdHwpt)) throw new TypeError(`to must be an Ioas or an IommufdHwpt, got ${String(to)}`);
  checkDevice(dev);
  const ioas = to instanceof Ioas ? to : to.ioas;
  if (dmaContextOf(dev).mm !== ioas.mm) throw new TypeError(`dev must be a device of ${ioas}'s machine, got ${dev.name} of another machine`);
  if (!ioas.alive || !to.alive) return err('ENOENT', `${to} is destroyed`);
  let idev = idevOf(dev);
  const fresh = idev === undefined;
  if (idev === undefined) {
    const b = bind(ioas.mm, dev);
    if (!b.ok) return b;
    idev = b.value;
  }
  let r: Result<IommufdHwpt>;
  if (to instanceof Ioas) {
    r = autoGetDomain(to, idev);
  } else {
    const a = hwptAttach(to, idev);
    r = a.ok ? ok(to) : a;
  }
  if (!r.ok && fresh) unbind(idev);
  return r;
}

/**
 * VFIO_DEVICE_BIND_IOMMUFD alone (iommufd_device_bind): dev's group DMA-owned by iommufd, dev in its
 * blocking domain, attached to nothing until iommufdDeviceAttach; iommufdDeviceDetach unbinds it.
 * Returns the bound device (its `id` is the dev_id written back). Errors: EINVAL (bound already),
 * ENODEV (no IOMMU), EBUSY (in another domain than its default one), EPERM (a kernel driver other
 * than vfio-pci drives it).
 * @throws TypeError when dev is not a Device of machine m.
 */
export function iommufdDeviceBind(m: MachineMm, dev: Device): Result<IommufdDevice> {
  checkDevice(dev);
  return bind(m, dev);
}

/**
 * VFIO_DEVICE_DETACH_IOMMUFD_PT and the unbind of closing the device (iommufd_device_detach,
 * iommufd_device_unbind): dev leaves its hw_pagetable (an automatic one it was the last device of
 * is destroyed: its areas unmapped, its page tables freed) and its reserved regions leave the IOAS;
 * it goes back to its DMA-API default domain. A device iommufdIoasAlloc bound with its IOAS stays
 * bound to it, in its blocking domain, as iommufdIoasDetach leaves it. Does nothing for a device
 * not bound.
 * @throws TypeError when dev is not a Device.
 */
export function iommufdDeviceDetach(dev: Device): void {
  checkDevice(dev);
  const idev = idevOf(dev);
  if (idev === undefined) return;
  hwptDetach(idev);
  if (idev.owner === null) unbind(idev);
}

/**
 * IOMMU_HWPT_ALLOC of a paging hw_pagetable in the IOAS for dev's IOMMU (iommufd_hwpt_alloc ->
 * iommufd_hwpt_paging_alloc without immediate attach): a new domain added to the IOAS
 * (iopt_table_add_domain: filled with every area, alignment and aperture as for an attach), no
 * device attached (dev's reserved regions join only when it attaches). An attach to the IOAS never
 * picks it (it is not automatic): devices attach to it by passing it to iommufdDeviceAttach, which
 * is how a device gets a domain of its own next to the IOAS's automatic one. It stays, with or
 * without devices, until iommufdHwptDestroy or iommufdIoasClose (iommufdIoasDestroy is EBUSY
 * while it lives). Errors: ENOENT (the IOAS
 * destroyed, or dev not bound: iommufd_get_device), ENOMEM, and iopt_table_add_domain's (EINVAL,
 * EADDRINUSE, EFAULT, the IOMMU's); nothing is left on failure.
 * @throws TypeError when ioas is not an Ioas or dev not a Device.
 */
export function iommufdHwptAlloc(ioas: Ioas, dev: Device): Result<IommufdHwpt> {
  checkIoas(ioas);
  checkDevice(dev);
  const idev = idevOf(dev);
  if (idev === undefined) return err('ENOENT', `${dev.name} is not bound to iommufd`);
  if (!ioas.alive) return err('ENOENT', `${ioas} is destroyed`);
  return hwptPagingAlloc(ioas, idev, false);
}

/**
 * IOMMU_DESTROY of a hw_pagetable iommufdHwptAlloc made: EBUSY while a device is attached to it
 * (iommufd_object_remove), ENOENT when destroyed already; else iommufd_hwpt_paging_destroy
 * (iopt_table_remove_domain, the domain freed).
 * @throws TypeError when hwpt is not an IommufdHwpt.
 */
export function iommufdHwptDestroy(hwpt: IommufdHwpt): Result<void> {
  if (!(hwpt instanceof IommufdHwpt)) throw new TypeError(`hwpt must be an IommufdHwpt, got ${String(hwpt)}`);
  if (!hwpt.alive) return err('ENOENT', `${hwpt} is destroyed`);
  if (hwpt.devicesNow.length > 0) return err('EBUSY', `${hwpt} still has ${hwpt.devices.map((d) => d.name).join(', ')} attached`);
  removeHwpt(hwpt);
  return ok();
}

/**
 * HPAGE_SIZE, the largest alignment iopt_alloc_iova() asks for (the kernel's with
 * CONFIG_TRANSPARENT_HUGEPAGE, which the model's kernels have; a PMD: 2 MiB, the model's THP size
 * whatever PAGE_SIZE is, as mm/machine.ts's thpOrder).
 */
const HPAGE_SIZE = 2n * 1024n * 1024n;

/** roundup_pow_of_two() for a bigint > 0. */
function roundupPow2(n: bigint): bigint {
  let p = 1n;
  while (p < n) p <<= 1n;
  return p;
}

/**
 * __alloc_iova_check_range() (io_pagetable.c): the candidate IOVA for the span [start, last] is
 * start rounded up to align (null if that wraps) with the page offset's bits ORed in (an OR, not an
 * add: the kernel's own arithmetic); it fits when it lies below last (strictly: a 1-byte map never
 * takes the span's last byte) and len bytes from it end at last or before.
 */
function fitInSpan(start: bigint, last: bigint, len: bigint, align: bigint, pageOffset: bigint): bigint | null {
  const up = start + align - 1n;
  if (up > U64_MAX) return null;
  const at = (up & ~(align - 1n)) | pageOffset;
  if (at >= last || last - at < len - 1n) return null;
  return at;
}

/**
 * The holes of [first, last] that none of the ranges touches, lowest first, each as wide as it goes
 * (the is_hole spans of interval_tree_for_each_span / interval_tree_for_each_double_span: ranges
 * that overlap or abut make one used span).
 */
function* holesOf(ranges: ReadonlyArray<IoasIovaRange>, first: bigint, last: bigint): Generator<IoasIovaRange> {
  const used = ranges.filter((u) => u.start <= last && u.last >= first).sort((x, y) => (x.start < y.start ? -1 : x.start > y.start ? 1 : 0));
  let at = first;
  for (const u of used) {
    if (u.start > at) yield { start: at, last: u.start - 1n };
    if (u.last >= last) return;
    if (u.last + 1n > at) at = u.last + 1n;
  }
  if (at <= last) yield { start: at, last };
}

/**
 * The used spans of [first, last] (clipped to it): ranges that overlap or abut merged into one, as
 * interval_tree_span_iter_next_gap() rolls them (its `last + 1 == start` test), lowest first.
 */
function usedSpansOf(ranges: ReadonlyArray<IoasIovaRange>, first: bigint, last: bigint): IoasIovaRange[] {
  const clipped = ranges.filter((u) => u.start <= last && u.last >= first)
    .map((u) => ({ start: u.start < first ? first : u.start, last: u.last > last ? last : u.last }))
    .sort((x, y) => (x.start < y.start ? -1 : x.start > y.start ? 1 : 0));
  const out: Array<{ start: bigint; last: bigint }> = [];
  for (const u of clipped) {
    const top = out[out.length - 1];
    if (top !== undefined && u.start <= top.last + 1n) {
      if (u.last > top.last) top.last = u.last;
    } else {
      out.push({ ...u });
    }
  }
  return out;
}

/**
 * The holes of [first, last] that no reserved range and no area touches, lowest first, each as wide
 * as it goes (interval_tree_for_each_double_span over reserved_itree and area_itree, is_used == 0).
 */
function freeSpans(ioas: Ioas, first: bigint, last: bigint): Generator<IoasIovaRange> {
  return holesOf([
    ...ioas.reservedNow,
    ...ioas.areas.map((a) => ({ start: a.iova, last: a.iova + BigInt(a.len) - 1n })),
  ], first, last);
}

/**
 * iopt_alloc_iova() (io_pagetable.c), for a map without IOMMU_IOAS_MAP_FIXED_IOVA (IOPT_ALLOC_IOVA)
 * of len bytes whose first byte is at addr (the user address, or the dma-buf's file offset:
 * iopt_alloc_area_pages() takes the first iopt_pages' uptr or start plus start_byte). The alignment
 * asked is roundup_pow_of_two(len), lowered to addr's lowest set bit when addr is not 0, capped at
 * HPAGE_SIZE; below the IOAS's iova_alignment it is EINVAL. The search walks the used spans of the
 * allowed tree within [PAGE_SIZE, ULONG_MAX - PAGE_SIZE] (allowed ranges that abut make one span;
 * with no allowed range, as before any IOMMU_IOAS_ALLOW_IOVAS or after an empty one, that whole
 * range is the one span: IOVA 0 is never returned), lowest first; a span whose start brought to the
 * candidate form does not hold the length is passed over, else the search takes the first hole
 * between reserved ranges and areas from that candidate to the span's end whose candidate
 * (fitInSpan) fits: first fit. ENOSPC when none does. EOVERFLOW for a length of 0 or
 * of ULONG_MAX / 2 or more cannot happen here (the model's lengths are safe integers and a length
 * of 0 is refused before), but is checked first as the kernel does.
 */
function allocIova(ioas: Ioas, addr: bigint, len: number): Result<bigint> {
  const length = BigInt(len);
  if (length === 0n || length >= U64_MAX / 2n) return err('EOVERFLOW', `length ${len} is 0 or ULONG_MAX / 2 or more`);
  const ps = BigInt(ioas.pageSize);
  const pageOffset = addr % ps;
  let align = roundupPow2(length);
  if (addr !== 0n && (addr & -addr) < align) align = addr & -addr;
  if (align >= HPAGE_SIZE) align = HPAGE_SIZE;
  if (align < BigInt(ioas.alignmentNow)) {
    return err('EINVAL', `the ${align}-byte alignment ${hex(addr)} and length ${len} allow is below the IOAS's ${ioas.alignmentNow}-byte IOVA alignment`);
  }
  // interval_tree_for_each_span(&allowed_span, &iopt->allowed_itree, PAGE_SIZE, ULONG_MAX - PAGE_SIZE)
  const spans = ioas.allowedNow.length === 0 ? [{ start: ps, last: U64_MAX - ps }] : usedSpansOf(ioas.allowedNow, ps, U64_MAX - ps);
  for (const span of spans) {
    // __alloc_iova_check_used() moves the span's start to the candidate before the inner walk
    const from = fitInSpan(span.start, span.last, length, align, pageOffset);
    if (from === null) continue;
    for (const hole of freeSpans(ioas, from, span.last)) {
      const at = fitInSpan(hole.start, hole.last, length, align, pageOffset);
      if (at !== null) return ok(at);
    }
  }
  const where = ioas.allowedNow.length === 0 ? '' : ' within its allowed IOVA ranges';
  return err('ENOSPC', `no free ${align}-aligned IOVA range of ${len} bytes in ${ioas}${where}`);
}

/**
 * iopt_alloc_area_pages() (io_pagetable.c): the length must be a multiple of the IOAS's
 * iova_alignment (EINVAL, as is a length of 0); then with iova null the IOAS picks the IOVA
 * (allocIova: EINVAL, ENOSPC), else iopt_check_iova(): the iova must be a multiple of the alignment
 * (EINVAL), then wrap (EOVERFLOW), reserved ranges (EINVAL), overlap with an area (EEXIST); then
 * iopt_insert_area(): the area's page offset must be a multiple of the alignment too (EINVAL).
 * Returns the IOVA the area goes at.
 */
function placeArea(ioas: Ioas, iova: bigint | null, addr: bigint, len: number, pageOffset: number, what: string): Result<bigint> {
  const align = ioas.alignmentNow;
  if (len === 0) return err('EINVAL', 'length is 0');
  if (len % align !== 0) return err('EINVAL', `length ${len} is not a multiple of the IOAS's ${align}-byte IOVA alignment`);
  let at: bigint;
  if (iova === null) {
    const a = allocIova(ioas, addr, len);
    if (!a.ok) return a;
    at = a.value;
  } else {
    if (iova % BigInt(align) !== 0n) return err('EINVAL', `iova ${hex(iova)} is not a multiple of the IOAS's ${align}-byte IOVA alignment`);
    const last = iova + BigInt(len) - 1n;
    if (last > U64_MAX) return err('EOVERFLOW', `iova ${hex(iova)} + length ${len} wraps`);
    for (const r of ioas.reservedNow) {
      if (iova <= r.last && last >= r.start) return err('EINVAL', `[${hex(iova)}, ${hex(last)}] meets the reserved IOVA range [${hex(r.start)}, ${hex(r.last)}]`);
    }
    const a = areaIn(ioas, iova, last);
    if (a !== undefined) return err('EEXIST', `IOVA ${hex(a.iova)} is mapped already`);
    at = iova;
  }
  if (pageOffset % align !== 0) {
    return err('EINVAL', `${what}'s offset ${pageOffset} in its ${ioas.pageSize}-byte page is not a multiple of the IOAS's ${align}-byte IOVA alignment`);
  }
  return ok(at);
}

/**
 * The iova argument of the map functions: a u64 bigint (IOMMU_IOAS_MAP_FIXED_IOVA) or null (the
 * IOAS picks the IOVA).
 */
function checkIovaArg(iova: unknown): bigint | null {
  if (iova === null) return null;
  if (typeof iova !== 'bigint') throw new TypeError(`iova must be a bigint address or null (the IOAS picks it), got ${typeof iova} ${String(iova)}`);
  return checkAddr('iova', iova);
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
  if (iova >= U64_MAX || BigInt(len) >= U64_MAX) return err('EOVERFLOW', `iova ${hex(iova)} or length ${len} is ULONG_MAX or more`);
  if ((prot & (IOMMU_READ | IOMMU_WRITE)) === 0) return err('EINVAL', 'neither IOMMU_IOAS_MAP_READABLE nor IOMMU_IOAS_MAP_WRITEABLE');
  if (!ioas.alive) return err('ENOENT', `${ioas} is destroyed`);
  return ok();
}

function protOf(opts: IoasMapOptions): number {
  // conv_iommu_prot(): iommufd requires a coherent IOMMU, so every map is IOMMU_CACHE
  return IOMMU_CACHE | (opts.readable ?? true ? IOMMU_READ : 0) | (opts.writeable ?? true ? IOMMU_WRITE : 0);
}

/**
 * IOMMU_IOAS_MAP: maps [uptr, uptr + len) of a process at iova (IOMMU_IOAS_MAP_FIXED_IOVA), or,
 * with iova null, at an IOVA the IOAS picks (no IOMMU_IOAS_MAP_FIXED_IOVA: iopt_alloc_iova, see
 * allocIova: aligned to roundup_pow_of_two(len), at most uptr's lowest set bit, at most 2 MiB; the
 * lowest hole between areas and reserved ranges that fits, inside the allowed ranges, or inside
 * [PAGE_SIZE, ULONG_MAX - PAGE_SIZE] while there are none).
 * Returns the IOVA mapped (what the kernel writes back to cmd->iova). With a domain attached the
 * memory is pinned now (pin_user_pages with FOLL_LONGTERM, and FOLL_WRITE when writeable) and
 * mapped, one iommu_map per physically contiguous run; with none the area is only recorded (the
 * kernel keeps a lazy reference) and pinned when a domain is attached. iova, len and uptr's offset
 * in its page must be multiples of the IOAS's iovaAlignment (1 with no domain: any byte).
 * Errors: EINVAL (neither readable nor writeable; len 0; iova, len or uptr's page offset not
 * aligned; a reserved IOVA; with iova null, an alignment from len and uptr below iovaAlignment),
 * EOVERFLOW, EEXIST (overlaps an area), ENOSPC (iova null and no hole fits), EFAULT (a hole in the
 * range, or device memory: pin_user_pages refuses VM_PFNMAP / VM_IO), the IOMMU's errors; nothing
 * stays pinned or mapped on failure.
 * @throws TypeError/RangeError when uptr is not a u64 bigint, iova neither a u64 bigint nor null, or
 * len not a safe integer >= 0.
 */
export function iommufdIoasMap(ioas: Ioas, mm: UserMm, uptr: bigint, len: number, iova: bigint | null, opts: IoasMapOptions = {}): Result<bigint> {
  checkIoas(ioas);
  checkAddr('uptr', uptr);
  checkLen('len', len);
  const fixed = checkIovaArg(iova);
  const prot = protOf(opts);
  // without IOMMU_IOAS_MAP_FIXED_IOVA the kernel still checks cmd->iova, which the model takes as 0
  const k = ioctlChecks(ioas, fixed ?? 0n, len, prot);
  if (!k.ok) return k;
  // pages.c: iopt_alloc_user_pages() refuses a wrapping user range, iopt_alloc_pages() a length of 0
  if (uptr + BigInt(len) > U64_MAX) return err('EOVERFLOW', `uptr ${hex(uptr)} + length ${len} wraps`);
  // iopt_insert_area() checks the page offset only after iopt_check_iova(): an overlap is EEXIST before it
  const pageOffset = Number(uptr % BigInt(ioas.pageSize));
  // IOPT_ADDRESS_USER: iopt_alloc_area_pages() aligns from pages->uptr + start_byte, i.e. uptr
  const c = placeArea(ioas, fixed, uptr, len, pageOffset, `uptr ${hex(uptr)}`);
  if (!c.ok) return c;
  // iopt_alloc_user_pages(): writable when the map asks for IOMMU_WRITE
  const pages: IoptPages = { kind: 'user', pageSize: ioas.pageSize, writable: (prot & IOMMU_WRITE) !== 0, pins: [], users: new Map(), pal: null };
  const a: IoasArea = {
    iova: c.value, len, kind: 'user', prot, pageOffset, mm, uptr, pinned: false, pages, buf: null, att: null, start: 0, paddr: null, revoked: false, iommuMaps: 0,
  };
  // iopt_area_fill_domains(): every domain (nothing to do without one)
  const f = fillDomains(ioas, a);
  if (!f.ok) return f;
  addArea(ioas, a);
  return ok(c.value);
}

/**
 * The iopt_pages a dma-buf attachment iommufd made belongs to (pages->dmabuf.attach): found through
 * the areas of the machine's IOASes that map it (the area that made it, or the copies of it that
 * outlive that one), so that the state stays listable rather than kept in a side table.
 */
function pagesOfAttachment(att: DmaBufAttachment): IoptPages | undefined {
  for (const ioas of iommufdIoases(dmaContextOf(att.dev).mm)) {
    for (const a of ioas.areas) if (a.att === att) return a.pages;
  }
  return undefined;
}

/**
 * iopt_revoke_notify(): the exporter invalidates; every area of the attachment's pages, in whatever
 * IOAS (pages->dmabuf.tracker holds each area with each domain it is in), leaves its domain.
 */
function revokeNotify(att: DmaBufAttachment): void {
  const pages = pagesOfAttachment(att);
  if (pages === undefined) return;
  for (const [a, ioas] of pages.users) {
    if (a.revoked) continue;
    // iommu_unmap() syncs the IOTLB: device DMA at these IOVAs faults from here on, in every domain
    // (pages->dmabuf.tracker holds the area once per domain it is in)
    for (const d of domainsOf(ioas)) iommuUnmap(d, a.iova, a.len);
    a.revoked = true;
    if (a.pal) a.pal = null;
  }
  // a PAL importer unmaps after the invalidation (the lock is held: invalidate_mappings runs under it)
  if (pages.pal !== null) {
    dmaBufUnmapPal(att, pages.pal);
    pages.pal = null;
  }
}

/** The area joins its IOAS and takes its reference on its pages (area->pages set: the map or copy is done). */
function addArea(ioas: Ioas, a: IoasArea): void {
  ioas.areas.push(a);
  a.pages.users.set(a, ioas);
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
function attachPinnedTake<T>(ioas: Ioas, buf: DmaBuf, iova: bigint | null, opts: IoasMapDmabufOptions, mapTypes: readonly DmaBufMapType[] | undefined,
  take: (att: DmaBufAttachment) => Result<T>, untake: (att: DmaBufAttachment, v: T) => void,
): Result<{ att: DmaBufAttachment; taken: T; start: number; len: number; prot: number; release: () => void }> {
  checkIoas(ioas);
  checkIovaArg(iova);
  const start = checkLen('opts.start', opts.start ?? 0);
  const len = opts.len ?? buf.size - start;
  if (opts.len !== undefined) checkLen('opts.len', opts.len);
  const prot = protOf(opts);
  const k = ioctlChecks(ioas, iova ?? 0n, Math.max(len, 0), prot);
  if (!k.ok) return k;
  if (len <= 0) return err('EINVAL', len === 0 ? 'length is 0' : `start ${start} is past the end of ${buf.size}-byte ${buf.name}`);
  if (!Number.isSafeInteger(start + len)) return err('EOVERFLOW', `start ${start} + length ${len} wraps`);
  if (buf.size <= start + len - 1) return err('EINVAL', `[${start}, +${len}) is past the end of ${buf.size}-byte ${buf.name}`);
  // the model has no iommufd_global_device(): the attachment is made for the IOAS's own device, else
  // for the first device attached to it
  const dev = ioas.dev ?? ioas.devices[0];
  if (dev === undefined) return err('ENODEV', `${ioas} has no device to attach ${buf.name} for (the model has no iommufd_global_device)`);
  const a = dmaBufAttach(buf, dev, {
    dynamic: true, peer2peer: true, importerPriv: ioas, ...(mapTypes !== undefined ? { mapTypes } : {}),
    moveNotify: (att) => revokeNotify(att),
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
 * The common end of both dma-buf imports: iopt_alloc_area_pages() (the IOVA range, picked when iova
 * is null, and the slice's page offset checked against the alignment: iopt_map_file_pages() makes
 * the start's offset in its page the area's page offset), then the domain filled with IOMMU_MMIO and without IOMMU_CACHE
 * (batch_to_domain with BATCH_MMIO) when there is one. On failure `release` undoes the attachment.
 */
function addDmabufArea(ioas: Ioas, iova: bigint | null, buf: DmaBuf, att: DmaBufAttachment, start: number, len: number, prot: number,
  paddr: bigint, pal: DmaBufPal | undefined, release: () => void): Result<bigint> {
  const pageOffset = start % ioas.pageSize;
  // IOPT_ADDRESS_DMABUF: iopt_alloc_area_pages() aligns from pages->dmabuf.start + start_byte, i.e. start
  const c = placeArea(ioas, iova, BigInt(start), len, pageOffset, `start ${start}`);
  if (!c.ok) { release(); return c; }
  const mprot = (prot & ~IOMMU_CACHE) | IOMMU_MMIO;
  const pages: IoptPages = { kind: 'dmabuf', pageSize: ioas.pageSize, writable: (prot & IOMMU_WRITE) !== 0, pins: [], users: new Map(), pal: pal ?? null };
  const a: IoasArea = {
    iova: c.value, len, kind: 'dmabuf', prot: mprot, pageOffset, mm: null, uptr: 0n, pinned: false, pages, buf, att, start, paddr, revoked: false, iommuMaps: 0,
    ...(pal !== undefined ? { pal } : {}),
  };
  const f = fillDomains(ioas, a);
  if (!f.ok) { release(); return f; }
  addArea(ioas, a);
  return ok(c.value);
}

/**
 * IOMMU_IOAS_MAP_FILE of a dma-buf fd: attaches (dynamic, peer2peer, with a revoke callback), pins
 * the attachment under the reservation lock, takes the buffer's one physical range through the VFIO
 * private interconnect and maps [start, start + len) of it with IOMMU_MMIO (no IOMMU_CACHE) when a
 * domain is attached (else when one is): at iova (IOMMU_IOAS_MAP_FIXED_IOVA), or with iova null at
 * an IOVA the IOAS picks as iommufdIoasMap does, its alignment taken from the file offset start
 * where iommufdIoasMap takes it from uptr. Returns the IOVA mapped. Errors: EINVAL (len 0, a slice
 * past the buffer's end, an iova, length or start page offset that is not a multiple of the IOAS's
 * iovaAlignment, a reserved IOVA, with iova null an alignment from len and start below it),
 * EOVERFLOW, EEXIST, ENOSPC (iova null and no hole fits), EOPNOTSUPP (not a VFIO dma-buf, or one of
 * several ranges: the kernel's iommufd takes physical-range dma-bufs of VFIO only), ENODEV
 * (revoked), the attach's and the IOMMU's errors, the IOVA's after the attach and pin, as
 * iopt_map_file_pages() allocates the pages first; nothing stays attached, pinned or mapped on
 * failure.
 * @throws TypeError/RangeError when iova is neither a u64 bigint nor null, or opts.start / opts.len
 * not a safe integer >= 0.
 */
export function iommufdIoasMapDmabuf(ioas: Ioas, buf: DmaBuf, iova: bigint | null, opts: IoasMapDmabufOptions = {}): Result<bigint> {
  const t = attachPinnedTake(ioas, buf, iova, opts, undefined, vfioPciDmaBufIommufdMap, () => undefined);
  if (!t.ok) return t;
  const { att, start, len, prot, release } = t.value;
  return addDmabufArea(ioas, iova, buf, att, start, len, prot, t.value.taken.paddr + BigInt(start), undefined, release);
}

/**
 * IOMMU_IOAS_MAP_FILE of a dma-buf as the RFC "Add DMA-buf mapping types" (Feb 2026, not merged)
 * converts iommufd: a PAL importer. It attaches accepting only the 'pal' type (dynamic, peer2peer,
 * revocable), pins, takes the Physical Address List (the exporter's phys_vec ranges and their P2P
 * provider) instead of the private VFIO interconnect, and maps [start, start + len) of the ranges
 * at consecutive IOVAs from iova (or from the IOVA the IOAS picks when iova is null, as
 * iommufdIoasMapDmabuf) with IOMMU_MMIO (one iommu_map per range), so several ranges work.
 * Revoke unmaps the domain and the PAL, and is permanent, as for iommufdIoasMapDmabuf.
 * Errors: as iommufdIoasMapDmabuf, with EOPNOTSUPP for an exporter that offers no PAL (the
 * negotiation fails at attach).
 */
export function iommufdIoasMapDmabufPal(ioas: Ioas, buf: DmaBuf, iova: bigint | null, opts: IoasMapDmabufOptions = {}): Result<bigint> {
  const t = attachPinnedTake(ioas, buf, iova, opts, ['pal'], dmaBufMapPal, dmaBufUnmapPal);
  if (!t.ok) return t;
  const { att, start, len, prot, release } = t.value;
  const pal = t.value.taken;
  const paddr = [...slice(pal.phys, start, len)][0].addr;
  return addDmabufArea(ioas, iova, buf, att, start, len, prot, paddr, pal, release);
}

/** Takes one area out: out of the domain (unless revoked), its pages' pins dropped; the last area of a dma-buf's pages unpins and detaches it. */
function releaseArea(ioas: Ioas, a: IoasArea): void {
  unfillDomains(ioas, a);
  // iopt_put_pages(): the pages go with their last area only
  const pages = a.pages;
  pages.users.delete(a);
  a.pal = null;
  if (a.kind === 'user' || pages.users.size > 0) return;
  // iopt_release_pages(): unpin under the reservation lock, then detach
  const buf = a.buf!;
  dmaResvLock(buf);
  if (pages.pal !== null) {
    dmaBufUnmapPal(a.att!, pages.pal);
    pages.pal = null;
  }
  dmaBufUnpin(a.att!);
  dmaResvUnlock(buf);
  dmaBufDetach(buf, a.att!);
}

/**
 * IOMMU_IOAS_UNMAP: removes the areas inside [iova, iova + len) in IOVA order and returns the bytes
 * unmapped; no alignment is asked of the range (iopt_unmap_iova checks none). Errors: EINVAL (len
 * 0), EOVERFLOW, ENOENT (nothing mapped there; or an area only partly inside the range: areas are
 * not split, and the areas below it that were inside are unmapped already, as
 * iopt_unmap_iova_range() leaves them). A revoked dma-buf area is removed like any other.
 * @throws TypeError/RangeError when iova is not a u64 bigint or len not a safe integer >= 0.
 */
export function iommufdIoasUnmap(ioas: Ioas, iova: bigint, len: number): Result<number> {
  checkIoas(ioas);
  checkAddr('iova', iova);
  checkLen('len', len);
  if (!ioas.alive) return err('ENOENT', `${ioas} is destroyed`);
  if (len === 0) return err('EINVAL', 'length is 0');
  const last = iova + BigInt(len) - 1n;
  if (last > U64_MAX) return err('EOVERFLOW', `iova ${hex(iova)} + length ${len} wraps`);
  const hit = areasByIova(ioas).filter((a) => a.iova <= last && a.iova + BigInt(a.len) - 1n >= iova);
  // io_pagetable.c: iopt_unmap_iova_range() takes the areas one by one from the lowest IOVA and stops
  // with -ENOENT at the first that is not wholly inside, keeping what it has unmapped so far
  let n = 0;
  for (const a of hit) {
    if (a.iova < iova || a.iova + BigInt(a.len) - 1n > last) {
      return err('ENOENT', `the area at ${hex(a.iova)} (${a.len} bytes) is not inside the range${n > 0 ? ` (${n} bytes below it were unmapped)` : ''}`);
    }
    releaseArea(ioas, a);
    ioas.areas.splice(ioas.areas.indexOf(a), 1);
    n += a.len;
  }
  if (n === 0) return err('ENOENT', `nothing is mapped in [${hex(iova)}, ${hex(last)}]`);
  return ok(n);
}

/**
 * IOMMU_IOAS_COPY (ioas.c: iommufd_ioas_copy; io_pagetable.c: iopt_get_pages, iopt_map_pages):
 * maps at dstIova in dst (IOMMU_IOAS_MAP_FIXED_IOVA), or with dstIova null at an IOVA dst picks (as
 * iommufdIoasMap, its alignment from the source's first byte: the user address, or the dma-buf's
 * file offset), the same memory [srcIova, srcIova + len) maps in src, and returns the IOVA used.
 * The new areas share the source areas' pages (one area per source area the range meets, each the
 * part of it inside the range): nothing is pinned again where a pinned area already holds the pages;
 * with no domain in dst nothing is pinned or mapped until one is attached; either side can be
 * unmapped later without the other, the pins going with the last area covering them. dma-buf areas
 * are copied as any other (mapped as MMIO; a revoke unmaps every copy). src and dst may be one IOAS.
 * Errors, in the kernel's order: EOVERFLOW (srcIova, dstIova or len ULONG_MAX or more), EINVAL
 * (neither readable nor writeable); ENOENT (src destroyed); iopt_get_pages: EINVAL (len 0),
 * EOVERFLOW (srcIova + len wraps), ENOENT (the range is not wholly covered by areas abutting one
 * another, the first holding srcIova); ENOENT (dst destroyed); then at dst as iommufdIoasMap: EINVAL
 * (len, dstIova or a part's page offset not a multiple of dst's iovaAlignment; a reserved IOVA; an
 * allocated alignment below it), EOVERFLOW, EEXIST, ENOSPC, EPERM (writeable asked of memory mapped
 * read-only: iopt_insert_area's pages->writable check, made per part after the IOVA's), and the
 * pin's and the IOMMU's errors; nothing is mapped, pinned or referenced on failure.
 * The ioctl's unknown flags (EOPNOTSUPP) have no counterpart: opts carries the two access flags
 * only, and FIXED_IOVA is dstIova not null.
 * @throws TypeError/RangeError when dst or src is not an Ioas, srcIova not a u64 bigint, dstIova
 * neither a u64 bigint nor null, or len not a safe integer >= 0.
 */
export function iommufdIoasCopy(dst: Ioas, src: Ioas, srcIova: bigint, len: number, dstIova: bigint | null, opts: IoasMapOptions = {}): Result<bigint> {
  checkIoas(dst);
  checkIoas(src);
  checkAddr('srcIova', srcIova);
  checkLen('len', len);
  const fixed = checkIovaArg(dstIova);
  const prot = protOf(opts);
  // iommufd_ioas_copy(): cmd->dst_iova is checked whether or not FIXED_IOVA is set (taken as 0 here without it)
  if (BigInt(len) >= U64_MAX || srcIova >= U64_MAX || (fixed ?? 0n) >= U64_MAX) {
    return err('EOVERFLOW', `length ${len}, src_iova ${hex(srcIova)} or dst_iova ${hex(fixed ?? 0n)} is ULONG_MAX or more`);
  }
  if ((prot & (IOMMU_READ | IOMMU_WRITE)) === 0) return err('EINVAL', 'neither IOMMU_IOAS_MAP_READABLE nor IOMMU_IOAS_MAP_WRITEABLE');
  if (!src.alive) return err('ENOENT', `the source ${src} is destroyed`);
  // iopt_get_pages(): the areas covering the range, each from where the range meets it
  if (len === 0) return err('EINVAL', 'length is 0');
  const srcLast = srcIova + BigInt(len) - 1n;
  if (srcLast > U64_MAX) return err('EOVERFLOW', `src_iova ${hex(srcIova)} + length ${len} wraps`);
  const parts: Array<{ from: IoasArea; at: bigint; len: number }> = [];
  // iopt_area_contig_init / _next: the first area must hold srcIova, each next one start where the
  // last ended (areas never overlap, so an area holding that next IOVA starts there)
  let cur = srcIova;
  for (;;) {
    const a = src.areas.find((x) => x.iova <= cur && cur <= x.iova + BigInt(x.len) - 1n);
    if (a === undefined) {
      return err('ENOENT', `${hex(cur)} of [${hex(srcIova)}, ${hex(srcLast)}] is not mapped in ${src}${parts.length > 0 ? ' (a hole after the areas before it)' : ''}`);
    }
    const aLast = a.iova + BigInt(a.len) - 1n;
    const last = aLast < srcLast ? aLast : srcLast;
    parts.push({ from: a, at: cur, len: Number(last - cur + 1n) });
    if (last === srcLast) break;
    cur = last + 1n;
  }
  if (!dst.alive) return err('ENOENT', `the destination ${dst} is destroyed`);
  // iopt_alloc_area_pages(): the IOVA from the first part's first byte (pages->uptr or the dma-buf start, plus start_byte)
  const p0 = parts[0];
  const addr = p0.from.kind === 'user' ? p0.from.uptr + (p0.at - p0.from.iova) : BigInt(p0.from.start) + (p0.at - p0.from.iova);
  const c = placeArea(dst, fixed, addr, len, 0, 'the source');
  if (!c.ok) return c;
  // iopt_insert_area() for each part in order: pages->writable, then the part's page offset
  const made: IoasArea[] = [];
  let iova = c.value;
  for (const pt of parts) {
    const a = pt.from;
    if ((prot & IOMMU_WRITE) !== 0 && !a.pages.writable) {
      return err('EPERM', `the source area at ${hex(a.iova)} was mapped without IOMMU_IOAS_MAP_WRITEABLE; the copy asks for it`);
    }
    const skip = pt.at - a.iova;
    const pageOffset = (a.pageOffset + Number(skip)) % dst.pageSize;
    if (pageOffset % dst.alignmentNow !== 0) {
      return err('EINVAL', `the part at ${hex(pt.at)} begins at offset ${pageOffset} in its ${dst.pageSize}-byte page, not a multiple of ${dst}'s ${dst.alignmentNow}-byte IOVA alignment`);
    }
    const dmabuf = a.kind === 'dmabuf';
    made.push({
      iova, len: pt.len, kind: a.kind, prot: dmabuf ? (prot & ~IOMMU_CACHE) | IOMMU_MMIO : prot, pageOffset, mm: a.mm,
      uptr: dmabuf ? 0n : a.uptr + skip, pinned: false, pages: a.pages, buf: a.buf, att: a.att, start: dmabuf ? a.start + Number(skip) : 0,
      paddr: !dmabuf ? null : a.pages.pal !== null ? [...slice(a.pages.pal.phys, a.start + Number(skip), pt.len)][0].addr : a.paddr! + skip,
      revoked: a.revoked, iommuMaps: 0,
      ...(dmabuf && a.pages.pal !== null ? { pal: a.pages.pal } : {}),
    });
    iova += BigInt(pt.len);
  }
  // iopt_fill_domains_pages(): each new area into every domain of dst, the ones before undone on a failure
  if (dst.hwptsNow.length > 0) {
    const done: IoasArea[] = [];
    for (const a of made) {
      const f = fillDomains(dst, a);
      if (!f.ok) {
        for (const x of done.reverse()) unfillDomains(dst, x);
        for (const x of done) x.pages.users.delete(x);
        return f;
      }
      // the pins of a later part must see this one's (it is in pages->domains_itree from here on)
      a.pages.users.set(a, dst);
      done.push(a);
    }
    for (const a of done) a.pages.users.delete(a);
  }
  for (const a of made) addArea(dst, a);
  return ok(c.value);
}

/** What IOMMU_IOAS_IOVA_RANGES writes back to userspace. */
export interface IoasIovaRanges {
  /**
   * The ranges written to the caller's array (allowed_iovas): the first min(numIovas asked, total)
   * usable ranges, lowest IOVA first.
   */
  readonly ranges: IoasIovaRange[];
  /** cmd->num_iovas on return: the total number of usable ranges, however many were written. */
  readonly numIovas: number;
  /** cmd->out_iova_alignment: iopt->iova_alignment, which every map's iova and length must be a multiple of. */
  readonly iovaAlignment: number;
}

/**
 * IOMMU_IOAS_IOVA_RANGES failing with EMSGSIZE because the caller's array was too small: the kernel
 * has still written num_iovas, out_iova_alignment and the ranges that fit (iommufd_ucmd_respond()
 * runs before the EMSGSIZE), all in `out`.
 */
export type IoasIovaRangesTooSmall = Err & { readonly errno: 'EMSGSIZE'; readonly out: IoasIovaRanges };

const U32_MAX = 0xffff_ffff;

/**
 * IOMMU_IOAS_IOVA_RANGES (ioas.c: iommufd_ioas_iova_ranges): the IOVA ranges a map may use, the
 * holes of the reserved tree over [0, ULONG_MAX] (interval_tree_for_each_span over reserved_itree:
 * whatever the domain's aperture and the device's reserved regions leave), lowest first, reserved
 * ranges that overlap or abut making one gap. The allowed ranges and the areas play no part (an
 * area lies inside a range; the allowed ranges were checked against reservations when set and are
 * inside the ranges by construction). numIovas is the length of the caller's array
 * (cmd->num_iovas on input, a u32); the first numIovas ranges are written, and when there are more
 * the result is EMSGSIZE carrying what the kernel wrote back (the total in numIovas, to size the
 * retry, and the alignment). Omitted, the array is taken to hold them all. Errors: ENOENT
 * (destroyed), EMSGSIZE. The ioctl's EOPNOTSUPP (__reserved not 0) and EFAULT (the user array) have
 * no counterpart here.
 * @throws TypeError/RangeError when numIovas is not an integer in [0, 2^32 - 1].
 */
export function iommufdIoasIovaRanges(ioas: Ioas, numIovas?: number): Ok<IoasIovaRanges> | IoasIovaRangesTooSmall | Err {
  checkIoas(ioas);
  const max = numIovas === undefined ? U32_MAX : checkLen('numIovas', numIovas, 0, U32_MAX);
  // iommufd_get_ioas()
  if (!ioas.alive) return err('ENOENT', `${ioas} is destroyed`);
  const all = [...holesOf(ioas.reservedNow, 0n, U64_MAX)];
  const out: IoasIovaRanges = { ranges: all.slice(0, max), numIovas: all.length, iovaAlignment: ioas.alignmentNow };
  if (all.length > max) {
    return { ok: false, errno: 'EMSGSIZE', message: `${ioas} has ${all.length} usable IOVA ranges, the array holds ${max}`, out };
  }
  return ok(out);
}

/** The ranges argument of iommufdIoasAllowIovas, checked: an array of { start, last } u64 bigints. */
function checkRangesArg(ranges: unknown): IoasIovaRange[] {
  if (!Array.isArray(ranges)) throw new TypeError(`ranges must be an array of { start, last } IOVA ranges, got ${typeof ranges} ${String(ranges)}`);
  if (ranges.length > U32_MAX) throw new RangeError(`ranges must hold at most 2^32 - 1 ranges (num_iovas is a u32), got ${ranges.length}`);
  return ranges.map((r: unknown, i) => {
    if (typeof r !== 'object' || r === null) throw new TypeError(`ranges[${i}] must be a { start, last } IOVA range, got ${String(r)}`);
    const o = r as { start?: unknown; last?: unknown };
    return { start: checkAddr(`ranges[${i}].start`, o.start), last: checkAddr(`ranges[${i}].last`, o.last) };
  });
}

/**
 * IOMMU_IOAS_ALLOW_IOVAS (ioas.c: iommufd_ioas_allow_iovas, iommufd_ioas_load_iovas; io_pagetable.c:
 * iopt_set_allow_iova): replaces the IOAS's allowed ranges with `ranges` (an empty list lifts the
 * restriction). Each range, in the order given, must have start < last (a range of one byte is
 * EINVAL too) and must not meet one given before it (EINVAL; abutting is fine); then the new list
 * must meet no reserved range (EADDRINUSE: the domain's aperture or a device's reserved region
 * already narrows the IOVA ranges there), checked lowest range first. On any failure the old list
 * stays. Nothing else is checked: areas may lie inside or outside the new ranges. From then on a
 * reservation meeting an allowed range is refused (an attach whose aperture or reserved regions
 * would cut into one fails with EADDRINUSE), and a map without an IOVA picks one inside the allowed
 * ranges only; a map at a fixed IOVA is not held to them (iopt_check_iova looks at reserved ranges
 * and areas only). Errors: ENOENT (destroyed), EINVAL, EADDRINUSE. The ioctl's EOPNOTSUPP
 * (__reserved), EFAULT and ENOMEM have no counterpart here.
 * @throws TypeError/RangeError when ranges is not an array of { start, last } u64 bigints.
 */
export function iommufdIoasAllowIovas(ioas: Ioas, ranges: ReadonlyArray<IoasIovaRange>): Result<void> {
  checkIoas(ioas);
  const given = checkRangesArg(ranges);
  if (!ioas.alive) return err('ENOENT', `${ioas} is destroyed`);
  // iommufd_ioas_load_iovas(): into a new tree, one range at a time
  const loaded: IoasIovaRange[] = [];
  for (const [i, r] of given.entries()) {
    if (r.start >= r.last) return err('EINVAL', `ranges[${i}] [${hex(r.start)}, ${hex(r.last)}] does not have start < last`);
    const o = loaded.find((x) => r.start <= x.last && r.last >= x.start);
    if (o !== undefined) return err('EINVAL', `ranges[${i}] [${hex(r.start)}, ${hex(r.last)}] meets [${hex(o.start)}, ${hex(o.last)}] given before it`);
    loaded.push(r);
  }
  const byStart = (x: IoasIovaRange, y: IoasIovaRange): number => (x.start < y.start ? -1 : x.start > y.start ? 1 : 0);
  loaded.sort(byStart);
  const reserved = [...ioas.reservedNow].sort(byStart);
  // iopt_set_allow_iova(): swapped in, checked in tree order (iopt_reserved_iter_first names the
  // lowest clash), swapped back out on one
  for (const r of loaded) {
    const res = reserved.find((x) => r.start <= x.last && r.last >= x.start);
    if (res !== undefined) {
      const who = res.owner === 'device' ? `${(res.by as Device).name}'s reserved region` : "the range outside the domain's aperture";
      return err('EADDRINUSE', `[${hex(r.start)}, ${hex(r.last)}] meets ${who} [${hex(res.start)}, ${hex(res.last)}]`);
    }
  }
  ioas.allowedNow.length = 0;
  ioas.allowedNow.push(...loaded);
  return ok();
}

/**
 * IOMMU_DESTROY of the IOAS (iommufd_destroy -> iommufd_object_remove): EBUSY while a hw_pagetable
 * holds it (each takes a reference on the IOAS: a device is attached to an automatic one, or one
 * iommufdHwptAlloc made is not destroyed yet), ENOENT when destroyed already; else every area is
 * released (unpinned already: no domain holds them) and the ID given back. A device bound with the
 * IOAS by iommufdIoasAlloc is unbound with it when it is attached nowhere (that one-device shape
 * closes its device with its IOAS); attached to another IOAS since (a replace), it stays there,
 * bound as any device. iommufdIoasClose tears everything down in the order a VMM closing down does.
 */
export function iommufdIoasDestroy(ioas: Ioas): Result<void> {
  checkIoas(ioas);
  if (!ioas.alive) return err('ENOENT', `${ioas} is destroyed`);
  if (ioas.hwptsNow.length > 0) {
    const held = ioas.hwptsNow.map((h) => `HWPT ${h.id}${h.devicesNow.length > 0 ? ` (${h.devices.map((d) => d.name).join(', ')} attached)` : ''}`);
    return err('EBUSY', `${ioas} is held by ${held.join(', ')}: detach its devices and destroy its hw_pagetables first`);
  }
  releaseOwn(ioas);
  releaseIoas(ioas);
  return ok();
}

/**
 * The one-device shape's binding at its IOAS's IOMMU_DESTROY: its device unbound unless it is
 * attached elsewhere (a replace moved it to another IOAS: IOMMU_DESTROY touches no attachment), where
 * it stays as a device bound on its own.
 */
function releaseOwn(ioas: Ioas): void {
  const own = ownIdev(ioas);
  if (own === null) return;
  if (own.hwptNow !== null && own.hwptNow.ioas !== ioas) own.owner = null;
  else unbind(own);
}

/**
 * What a VMM closing down does to an IOAS: closes the VFIO devices attached to it
 * (vfio_iommufd_physical_unbind(): each is detached, then unbound and back in its default domain,
 * iommu_device_release_dma_owner; a device iommufdIoasAlloc bound with another IOAS is only
 * detached, and stays bound to that one), and the IOAS's own device (closed: detached from
 * wherever a replace moved it, then unbound); destroys the hw_pagetables
 * iommufdHwptAlloc made; then the IOAS (IOMMU_DESTROY: every area released). A closed IOAS closes
 * again with nothing done.
 */
export function iommufdIoasClose(ioas: Ioas): void {
  checkIoas(ioas);
  if (!ioas.alive) return;
  for (const h of [...ioas.hwptsNow]) {
    for (const idev of [...h.devicesNow]) {
      hwptDetach(idev);
      if (idev.owner === null) unbind(idev);
    }
    if (h.alive) removeHwpt(h);
  }
  const own = ownIdev(ioas);
  if (own !== null) unbind(own);
  releaseIoas(ioas);
}

/** The IOAS's end once nothing holds it: every area released, the object and its ID gone. */
function releaseIoas(ioas: Ioas): void {
  for (const a of [...ioas.areas]) releaseArea(ioas, a);
  ioas.areas.length = 0;
  ioas.alive = false;
  ctxOf(ioas.mm).ioases.delete(ioas);
  ctxOf(ioas.mm).ids.delete(ioas.id);
}
