// Models: on-demand paging (ODP) memory regions: drivers/infiniband/core/umem_odp.c (ib_umem_odp_get,
// ib_umem_odp_map_dma_and_lock, ib_umem_odp_unmap_dma_pages, ib_umem_odp_release) and the mlx5 side,
// drivers/infiniband/hw/mlx5/odp.c (pagefault_real_mr + populate_mtt, mlx5_ib_invalidate_range), on
// the NIC model of drivers/rdma (ibRegOdpMr, ibMrUpdateMtt, ibMrZapMtt, the NIC's page-fault upcall).
//
// Registration pins nothing: the umem allocates an HMM DMA map (hmm_dma_map_alloc: one IOVA window for
// the whole range when the NIC is behind an IOMMU) and subscribes an mmu interval notifier to the
// range; then mlx5_ib_init_odp_mr takes a snapshot of the range (hmm_range_fault without fault
// flags) and fills the MTT entries of the pages the CPU page tables map already (read-only ones
// without MLX5_IB_MTT_WRITE), faulting nothing in: untouched pages stay empty. When the NIC meets an MTT entry without the bit the access needs
// it raises a page fault: the driver faults the pages in through hmm_range_fault (for write when the
// MR is writable, whatever the access), under the mmu_interval_read_begin / read_retry protocol
// (retried on EBUSY and on a collision), maps each page with hmm_dma_map_pfn and writes the MTT
// entries (DMA address | MLX5_IB_MTT_READ [| MLX5_IB_MTT_WRITE when the CPU page is writable]); the
// NIC then re-reads the MTT and the operation completes. Before the CPU page tables of the range
// change (munmap, mprotect, a PMD split, migration, COW of the zero page), the notifier's invalidate
// zaps the MTT entries of the pages that were valid and then unmaps their DMA (hmm_dma_unmap_pfn), so
// the NIC faults again before it touches them. MTT updates and zaps cover whole blocks of 8 entries
// (mlx5r_umr_update_xlt): a zap clears the valid neighbours in its blocks as well, and the next fill
// of a block restores them.
//
// Model deviation: only page_shift = PAGE_SHIFT umems (no IB_ACCESS_HUGETLB ODP, no implicit ODP
// MRs, no prefetch advice); ib_umem_odp_map_dma_and_lock's one-second HMM_RANGE_DEFAULT_TIMEOUT is a
// cap of ODP_FAULT_RETRIES retries (the model has no clock and only collisions a fault itself
// causes); npages counts DMA-mapped entries (populate_mtt also counts entries mapped already; the
// kernel only tests it for zero); pages are not marked dirty at unmap (no writeback in the model).

import { err, hex, ok, unwrap, type Result } from '../../base/index.ts';
import {
  HMM_PFN_DMA_MAPPED, HMM_PFN_REQ_FAULT, HMM_PFN_REQ_WRITE, HMM_PFN_VALID, HMM_PFN_WRITE, hmmRangeFault, mmuIntervalNotifierInsert,
  mmuIntervalNotifierRemove, mmuIntervalReadBegin, mmuIntervalReadRetry, mmuIntervalSetSeq, UserMm, type MmuIntervalNotifier,
  type MmuNotifierRange,
} from '../../mm/index.ts';
import { PciP2pdmaMapState } from '../../pci/index.ts';
import {
  IB_ACCESS_ON_DEMAND, IbDevice, IbMr, MLX5_IB_MTT_READ, MLX5_IB_MTT_WRITE, ibAccessWritable, ibDeregMr, ibMrUpdateMtt, ibMrXltWindow,
  ibMrZapMtt, ibRegOdpMr,
} from '../rdma/index.ts';
import { HmmDmaMap, hmmDmaMapAlloc, hmmDmaMapFree, hmmDmaMapPfn, hmmDmaUnmapPfn } from './hmm-dma.ts';
import './counters.ts';

/** How many times a fault re-reads the range after EBUSY or a collision before it gives up (EBUSY). */
export const ODP_FAULT_RETRIES = 16;

/** struct ib_umem_odp: the user range, its HMM DMA map and notifier, and the MR it backs. */
export class IbUmemOdp {
  /** Page-aligned start and end of the range (ib_umem_start / ib_umem_end). */
  readonly start: number;
  readonly end: number;
  readonly pageShift = 12;
  /** Entries DMA-mapped now. */
  npages = 0;
  /** The MR whose MTT this umem fills (umem_odp->private), or null before / after. */
  mr: IbMr | null = null;
  /** Entries mapped at least once (a later fill is a re-map). */
  readonly everMapped: Uint8Array;
  released = false;
  /** @internal set by ibUmemOdpGet. */
  notifier!: MmuIntervalNotifier;

  /** @internal made by ibUmemOdpGet. */
  constructor(
    readonly ibdev: IbDevice,
    readonly mm: UserMm,
    /** The user address and length registered. */
    readonly address: bigint,
    readonly length: number,
    readonly writable: boolean,
    readonly map: HmmDmaMap,
    start: number,
    end: number,
  ) {
    this.start = start;
    this.end = end;
    this.everMapped = new Uint8Array(map.nrEntries);
  }
}

/**
 * ib_umem_odp_get(): an ODP umem over [addr, addr + size) of mm: no page is touched or pinned.
 * Errors: EINVAL (access without IB_ACCESS_ON_DEMAND, a WARN in the kernel; size 0); EOVERFLOW (the
 * range wraps); EOPNOTSUPP (hmm_dma_map_alloc: the NIC needs syncs or bouncing).
 */
export function ibUmemOdpGet(ibdev: IbDevice, mm: UserMm, addr: bigint, size: number, access: number): Result<IbUmemOdp> {
  if (!(ibdev instanceof IbDevice)) throw new TypeError(`ibdev must be an IbDevice (rdmaProbe), got ${String(ibdev)}`);
  if (!(mm instanceof UserMm)) throw new TypeError(`mm must be a UserMm, got ${String(mm)}`);
  const ps = mm.machine.pageSize;
  if (!(access & IB_ACCESS_ON_DEMAND)) {
    mm.machine.events.warn('umem_odp', 'ib_umem_odp_get without IB_ACCESS_ON_DEMAND');
    return err('EINVAL', 'access lacks IB_ACCESS_ON_DEMAND');
  }
  if (!Number.isSafeInteger(size) || size <= 0) return err('EINVAL', `size ${String(size)}`);
  const a = Number(addr);
  if (addr < 0n || a + size > 2 ** 64) return err('EOVERFLOW', `[${hex(addr)}, +${size}) wraps`);
  const start = Math.floor(a / ps) * ps, end = Math.ceil((a + size) / ps) * ps;
  const map = hmmDmaMapAlloc(ibdev.dev, (end - start) / ps, ps);
  if (!map.ok) return map;
  const odp = new IbUmemOdp(ibdev, mm, addr, size, ibAccessWritable(access), map.value, start, end);
  const sub = mmuIntervalNotifierInsert(mm, BigInt(start), end - start, {
    invalidate: (s, range, curSeq) => invalidateRange(odp, s, range, curSeq),
  });
  if (!sub.ok) { hmmDmaMapFree(ibdev.dev, map.value); return sub; }
  odp.notifier = sub.value;
  return ok(odp);
}

/**
 * mlx5_ib_invalidate_range(): records the sequence, zaps the MTT entries of the pages that were
 * valid in the invalidated part of the umem (in whole blocks of 8 entries, as the UMR writes them:
 * valid neighbours in those blocks fault once more), then unmaps their DMA and forgets them.
 */
function invalidateRange(odp: IbUmemOdp, sub: MmuIntervalNotifier, range: MmuNotifierRange, curSeq: number): boolean {
  mmuIntervalSetSeq(sub, curSeq);
  const mr = odp.mr;
  if (odp.npages === 0 || mr === null) return true;
  const ps = 1 << odp.pageShift;
  const s = Math.max(odp.start, Number(range.start)), e = Math.min(odp.end, Number(range.end));
  const flags = odp.map.flagList;
  let zapped = 0;
  let run = -1;
  const first = (s - odp.start) / ps, last = (e - odp.start) / ps;
  for (let idx = first; idx <= last; idx++) {
    const valid = idx < last && (flags[idx] & HMM_PFN_VALID) !== 0;
    if (valid && run < 0) run = idx;
    if (!valid && run >= 0) {
      ibMrZapMtt(mr, run, idx - run);
      zapped += idx - run;
      run = -1;
    }
  }
  const stats = odp.mm.machine.stats;
  if (zapped > 0) {
    stats.odpInvalidations++;
    stats.odpPagesZapped += zapped;
  }
  ibUmemOdpUnmapDmaPages(odp, BigInt(s), BigInt(e));
  return true;
}

/**
 * ib_umem_odp_unmap_dma_pages(): unmaps the DMA of every mapped entry in [virt, bound) of the umem
 * and clears the entries' HMM flags (the next use faults again). The MTT must have been zapped first.
 */
export function ibUmemOdpUnmapDmaPages(odp: IbUmemOdp, virt: bigint, bound: bigint): void {
  const ps = 1 << odp.pageShift;
  const s = Math.max(odp.start, Number(virt)), e = Math.min(odp.end, Number(bound));
  const dev = odp.ibdev.dev, map = odp.map;
  for (let va = s; va < e; va += ps) {
    const idx = (va - odp.start) / ps;
    if (hmmDmaUnmapPfn(dev, map, idx)) odp.npages--;
    map.flagList[idx] = 0;
  }
}

/**
 * ib_umem_odp_map_dma_and_lock(): faults [userVirt, userVirt + bcnt) through hmm_range_fault (for
 * write when accessMask has HMM_PFN_WRITE), retrying on EBUSY and when mmu_interval_read_retry reports
 * a collision, and returns the number of pages of the range (from the first page of userVirt); the
 * caller maps them (hmm_dma_map_pfn) and writes its device's table. Errors: EFAULT (outside the umem,
 * or hmm_range_fault's EFAULT), EPERM (write on a read-only mapping), EBUSY (too many collisions).
 */
export function ibUmemOdpMapDmaAndLock(odp: IbUmemOdp, userVirt: bigint, bcnt: number, accessMask: number, fault: boolean): Result<number> {
  const ps = 1 << odp.pageShift;
  const va = Number(userVirt);
  if (va < odp.start || va + bcnt > odp.end) return err('EFAULT', `[${hex(va)}, +${bcnt}) is outside the umem`);
  const rs = Math.floor(va / ps) * ps, re = Math.ceil((va + bcnt) / ps) * ps;
  const i0 = (rs - odp.start) / ps, n = (re - rs) / ps;
  const range = {
    notifier: odp.notifier, notifierSeq: 0, start: BigInt(rs), end: BigInt(re),
    hmmPfns: odp.map.pfnList.subarray(i0, i0 + n), hmmFlags: odp.map.flagList.subarray(i0, i0 + n),
    defaultFlags: fault ? HMM_PFN_REQ_FAULT | (accessMask & HMM_PFN_WRITE ? HMM_PFN_REQ_WRITE : 0) : 0, pfnFlagsMask: 0,
  };
  for (let tries = 0; tries <= ODP_FAULT_RETRIES; tries++) {
    const seq = mmuIntervalReadBegin(odp.notifier);
    range.notifierSeq = seq;
    const r = hmmRangeFault(range);
    if (!r.ok) {
      if (r.errno === 'EBUSY') continue;
      return r;
    }
    // umem_mutex taken: publish only if no invalidation collided
    if (mmuIntervalReadRetry(odp.notifier, seq)) continue;
    return ok(n);
  }
  return err('EBUSY', `the range kept being invalidated (${ODP_FAULT_RETRIES} retries)`);
}

/**
 * ib_umem_odp_release(): unmaps every page still mapped, removes the notifier and frees the HMM DMA
 * map (its IOVA window). Releasing twice is EINVAL.
 */
export function ibUmemOdpRelease(odp: IbUmemOdp): Result<void> {
  if (!(odp instanceof IbUmemOdp)) throw new TypeError(`odp must be an IbUmemOdp, got ${String(odp)}`);
  if (odp.released) return err('EINVAL', 'umem released already');
  ibUmemOdpUnmapDmaPages(odp, BigInt(odp.start), BigInt(odp.end));
  mmuIntervalNotifierRemove(odp.notifier);
  hmmDmaMapFree(odp.ibdev.dev, odp.map);
  odp.released = true;
  return ok();
}

/** An ODP user MR: the NIC's mkey and the umem that fills it. */
export interface IbOdpUserMr {
  readonly mr: IbMr;
  readonly umem: IbUmemOdp;
}

/**
 * pagefault_real_mr() + populate_mtt() over [userVa, userVa + len) of the umem: reads the range
 * through ib_umem_odp_map_dma_and_lock (faulting it in when `fault`; a snapshot of what the CPU page
 * tables hold now otherwise), maps each valid entry with hmm_dma_map_pfn and writes its MTT entry.
 * Entries the walk left invalid (a snapshot of a page not present) are skipped, as populate_mtt does.
 * Returns the number of pages of the range; errors: those of ibUmemOdpMapDmaAndLock, EFAULT when a
 * page cannot be DMA-mapped (populate_mtt's answer to DMA_MAPPING_ERROR).
 */
function mapRange(umem: IbUmemOdp, mr: IbMr, userVa: bigint, len: number, fault: boolean): Result<number> {
  const stats = umem.mm.machine.stats, ps = 1 << umem.pageShift;
  // pagefault_real_mr: access_mask has HMM_PFN_WRITE for a writable umem (no downgrade in the model)
  const np = ibUmemOdpMapDmaAndLock(umem, userVa, len, umem.writable ? HMM_PFN_WRITE : 0, fault);
  if (!np.ok) return np;
  const start = (Math.floor(Number(userVa) / ps) * ps - umem.start) / ps;
  const map = umem.map, dev = umem.ibdev.dev, p2p = new PciP2pdmaMapState();
  // mlx5r_umr_update_xlt() writes whole blocks of 8 entries: populate_mtt fills the valid entries of
  // the blocks around the range too (those an earlier zap of a neighbour cleared come back)
  const [ws, we] = ibMrXltWindow(mr, start, np.value);
  // consecutive entries with the same access bits go to the MTT in one update
  let runFirst = ws, runFlags = -1;
  let runAddrs: bigint[] = [];
  const flush = (): void => { if (runAddrs.length > 0) ibMrUpdateMtt(mr, runFirst, runAddrs, runFlags); runAddrs = []; };
  for (let idx = ws; idx < we; idx++) {
    const f = map.flagList[idx];
    if (!(f & HMM_PFN_VALID)) continue;
    const wasMapped = (f & HMM_PFN_DMA_MAPPED) !== 0;
    const dma = hmmDmaMapPfn(dev, map, idx, p2p);
    if (!dma.ok) {
      flush();
      return err('EFAULT', `hmm_dma_map_pfn of entry ${idx} failed: ${dma.errno}`);
    }
    const bits = MLX5_IB_MTT_READ | (f & HMM_PFN_WRITE ? MLX5_IB_MTT_WRITE : 0);
    if (bits !== runFlags || idx !== runFirst + runAddrs.length) { flush(); runFirst = idx; runFlags = bits; }
    runAddrs.push(dma.value);
    if (!wasMapped) {
      umem.npages++;
      stats.odpPagesMapped++;
      if (umem.everMapped[idx]) stats.odpRemaps++;
      umem.everMapped[idx] = 1;
    }
  }
  flush();
  return np;
}

/**
 * The NIC's page fault on [iova, iova + len) of the MR (pagefault_mr -> pagefault_real_mr): faults
 * the pages in and fills their MTT entries. Returns false (the NIC then completes the request with
 * an access error) when the fault or a map fails.
 */
function pageFault(umem: IbUmemOdp, mr: IbMr, iova: bigint, len: number): boolean {
  const userVa = umem.address + (iova - mr.iova);
  const r = mapRange(umem, mr, userVa, len, true);
  if (!r.ok) {
    umem.mm.machine.events.record('INFO', 'odp', `${umem.ibdev.name}: page fault at ${hex(userVa)} (+${len}) failed: ${r.errno}${r.message === undefined ? '' : ` (${r.message})`}`);
    return false;
  }
  umem.mm.machine.stats.odpFaults++;
  return true;
}

/**
 * mlx5_ib_reg_user_mr() with IB_ACCESS_ON_DEMAND: an ODP umem over [va, va + len) of mm and an mkey
 * at iova (default va) whose MTT the NIC's page faults fill. Nothing is pinned or faulted in; pages
 * the process has mapped already are DMA-mapped and entered in the MTT at registration (the snapshot
 * of mlx5_ib_init_odp_mr). Errors: those of ibUmemOdpGet and ibRegOdpMr (EOPNOTSUPP on a NIC without
 * ODP, EINVAL for bad access bits), EFAULT when a present page cannot be DMA-mapped; nothing is left
 * behind on failure.
 */
export function ibRegOdpUserMr(ibdev: IbDevice, mm: UserMm, va: bigint, len: number, access: number, iova: bigint = va): Result<IbOdpUserMr> {
  const umem = ibUmemOdpGet(ibdev, mm, va, len, access);
  if (!umem.ok) return umem;
  const ps = 1 << umem.value.pageShift;
  if ((iova & BigInt(ps - 1)) !== (va & BigInt(ps - 1))) {
    ibUmemOdpRelease(umem.value);
    return err('EINVAL', `iova ${hex(iova)} and va ${hex(va)} differ in their page offset`);
  }
  const u = umem.value;
  const mr = ibRegOdpMr(ibdev, { iova, length: len, access, pageShift: u.pageShift }, (m, a, l) => pageFault(u, m, a, l));
  if (!mr.ok) { ibUmemOdpRelease(u); return mr; }
  u.mr = mr.value;
  // mlx5_ib_init_odp_mr (drivers/infiniband/hw/mlx5/odp.c, called by create_user_odp_mr in mr.c):
  // pagefault_real_mr over the whole umem with MLX5_PF_FLAGS_SNAPSHOT, so pages the CPU page tables
  // map already get their MTT entries now, without faulting anything in; a failure fails the
  // registration (the mkey is deregistered).
  const snap = mapRange(u, mr.value, u.address, u.length, false);
  if (!snap.ok) {
    unwrap(ibDeregOdpUserMr(ibdev, { mr: mr.value, umem: u }));
    return snap;
  }
  return ok({ mr: mr.value, umem: u });
}

/**
 * mlx5_ib_dereg_mr() of an ODP MR: the mkey goes first (the NIC stops using the MTT), then the umem
 * (every page's DMA unmapped, notifier removed, IOVA window freed). EINVAL for an MR deregistered already.
 */
export function ibDeregOdpUserMr(ibdev: IbDevice, odpMr: IbOdpUserMr): Result<void> {
  const r = ibDeregMr(ibdev, odpMr.mr);
  if (!r.ok) return r;
  odpMr.umem.mr = null;
  return ibUmemOdpRelease(odpMr.umem);
}
