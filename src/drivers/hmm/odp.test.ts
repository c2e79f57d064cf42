// Tests for drivers/hmm: the HMM DMA map (two-step IOVA window / per-page dma_map_phys / P2P) and ODP
// MRs on the RDMA NIC: faults, invalidations on munmap / mprotect / PMD split / migration / COW,
// re-faults, and nothing left mapped after deregistration. Bytes are checked by the CPU on both sides.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { makeMachine, pattern, type IommuMode } from '../../../test/fixtures/dma-b-machines.ts';
import { MiB, unwrap } from '../../base/index.ts';
import { dmaUseIova } from '../../dma/index.ts';
import {
  HMM_PFN_DMA_MAPPED, HMM_PFN_P2PDMA_BUS, HMM_PFN_VALID, mmuIntervalNotifierInsert, mmuIntervalSetSeq, type UserMm,
} from '../../mm/index.ts';
import { PciP2pdmaMapState } from '../../pci/index.ts';
import {
  IB_ACCESS_LOCAL_WRITE, IB_ACCESS_ON_DEMAND, IB_ACCESS_REMOTE_READ, IB_ACCESS_REMOTE_WRITE, IB_WC_REM_ACCESS_ERR, IB_WC_SUCCESS,
  MLX5_IB_MTT_READ, MLX5_IB_MTT_WRITE, ibMrMttEntries, ibPostRdmaRead, ibPostRdmaWrite, rdmaProbe, rdmaRemove,
} from '../rdma/index.ts';
import { hmmDmaMapAlloc, hmmDmaMapFree, hmmDmaMapPfn, hmmDmaUnmapPfn } from './hmm-dma.ts';
import { ibDeregOdpUserMr, ibRegOdpUserMr, type IbOdpUserMr } from './odp.ts';

const PS = 4096;
const RW = IB_ACCESS_LOCAL_WRITE | IB_ACCESS_REMOTE_WRITE | IB_ACCESS_REMOTE_READ | IB_ACCESS_ON_DEMAND;

function setup(mode: IommuMode, backing: 'anon' | 'thp' = 'anon', pages = 16) {
  const m = makeMachine(mode);
  const ib = unwrap(rdmaProbe(m.device('nic0')));
  const mm = m.newProcess();
  const len = pages * PS;
  const src = unwrap(mm.mmap({ len, backing }));
  const dst = unwrap(mm.mmap({ len: Math.max(len, backing === 'thp' ? 2 * MiB : len), backing }));
  const s = unwrap(ibRegOdpUserMr(ib, mm, src, len, RW));
  const d = unwrap(ibRegOdpUserMr(ib, mm, dst, len, RW));
  return { m, ib, mm, src, dst, s, d, len };
}

/** RDMA WRITE of [off, off+n) from the src MR to the same offset of the dst MR. */
function write(ib: ReturnType<typeof setup>['ib'], s: IbOdpUserMr, d: IbOdpUserMr, off: number, n: number): string {
  return unwrap(ibPostRdmaWrite(ib, { lkey: s.mr.lkey, laddr: s.mr.iova + BigInt(off), rkey: d.mr.rkey, raddr: d.mr.iova + BigInt(off), len: n })).status;
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

describe('HMM DMA map', () => {
  it.each<IommuMode>(['strict', 'none'])('%s: with an IOMMU one IOVA window (entry i at window + i*size); without, dma_map_phys per entry', (mode) => {
    const m = makeMachine(mode);
    const dev = m.device('nic0');
    const map = unwrap(hmmDmaMapAlloc(dev, 8, PS));
    expect(dmaUseIova(map.state)).toBe(mode === 'strict');
    const p2p = new PciP2pdmaMapState();
    const pfn = unwrap(m.allocKernelPages(3));
    for (let i = 0; i < 8; i++) { map.pfnList[i] = Number(pfn) + i; map.flagList[i] = HMM_PFN_VALID; }
    const a3 = unwrap(hmmDmaMapPfn(dev, map, 3, p2p));
    if (mode === 'strict') expect(a3).toBe(map.state.addr + 3n * 4096n);
    else expect(a3).toBe((pfn + 3n) * 4096n);
    // a second map of a mapped entry returns the same address and maps nothing more
    const maps = m.stats.hmmDmaMapPfns;
    expect(unwrap(hmmDmaMapPfn(dev, map, 3, p2p))).toBe(a3);
    expect(m.stats.hmmDmaMapPfns).toBe(maps);
    m.mem.write((pfn + 3n) * 4096n, Uint8Array.of(7, 7));
    expect(unwrap(dev.dmaRead(a3, 2))).toEqual(Uint8Array.of(7, 7));
    expect(hmmDmaUnmapPfn(dev, map, 3)).toBe(true);
    expect(hmmDmaUnmapPfn(dev, map, 3)).toBe(false);
    expect(map.flagList[3] & HMM_PFN_DMA_MAPPED).toBe(0);
    if (mode === 'strict') expect(dev.dmaRead(a3, 2).ok).toBe(false);
    hmmDmaMapFree(dev, map);
    expect(m.teardown()).toBe(0);
  });

  it('P2P: a BAR page behind the same switch maps to its bus address (HMM_PFN_P2PDMA_BUS, nothing to unmap)', () => {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    const map = unwrap(hmmDmaMapAlloc(dev, 2, PS));
    const bar = m.device('gpu0');
    void bar;
    const region = m.regions.find((r) => r.kind === 'device' && r.providerId !== 0)!;
    map.pfnList[0] = Number(region.start / 4096n);
    map.flagList[0] = HMM_PFN_VALID;
    const a = unwrap(hmmDmaMapPfn(dev, map, 0, new PciP2pdmaMapState()));
    expect(a).toBe(region.start + 0x1000_0000_0000n);
    expect(map.flagList[0] & HMM_PFN_P2PDMA_BUS).toBe(HMM_PFN_P2PDMA_BUS);
    expect(hmmDmaUnmapPfn(dev, map, 0)).toBe(true);
    hmmDmaMapFree(dev, map);
    // through a non-whitelisted host bridge the page is unreachable
    const far = m.device('far0');
    const fmap = unwrap(hmmDmaMapAlloc(far, 1, PS));
    fmap.pfnList[0] = Number(region.start / 4096n);
    fmap.flagList[0] = HMM_PFN_VALID;
    expect(hmmDmaMapPfn(far, fmap, 0, new PciP2pdmaMapState())).toMatchObject({ ok: false, errno: 'EREMOTEIO' });
    hmmDmaMapFree(far, fmap);
    expect(m.teardown()).toBe(0);
  });
});

describe('ODP MR', () => {
  it.each<IommuMode>(['strict', 'none', 'passthrough'])('%s: registers without pinning or faulting; the NIC faults, the op completes; dereg leaves nothing mapped', (mode) => {
    const { m, ib, mm, src, dst, s, d, len } = setup(mode);
    expect(m.listPins()).toEqual([]);
    expect(mm.translate(src)).toBeUndefined();
    expect(ibMrMttEntries(d.mr).every((e) => e === 0n)).toBe(true);
    const bytes = pattern(len, 3);
    unwrap(mm.writeUser(src, bytes));
    expect(write(ib, s, d, 0, len)).toBe(IB_WC_SUCCESS);
    expect(same(unwrap(mm.readUser(dst, len)), bytes)).toBe(true);
    expect(m.stats.odpFaults).toBe(2);
    expect(m.listPins()).toEqual([]);
    expect(d.umem.npages).toBe(16);
    // a second write needs no fault
    expect(write(ib, s, d, PS, PS)).toBe(IB_WC_SUCCESS);
    expect(m.stats.odpFaults).toBe(2);
    unwrap(ibDeregOdpUserMr(ib, s));
    unwrap(ibDeregOdpUserMr(ib, d));
    expect(d.umem.map.mapped + s.umem.map.mapped).toBe(0);
    expect(m.stats.hmmDmaMapPfns).toBe(m.stats.hmmDmaUnmapPfns);
    expect(ibDeregOdpUserMr(ib, d)).toMatchObject({ ok: false, errno: 'EINVAL' });
    unwrap(rdmaRemove(ib));
    expect(m.teardown()).toBe(0);
  });

  it('registration takes a snapshot (mlx5_ib_init_odp_mr): pages the CPU maps already get their MTT entries, nothing is faulted in', () => {
    const m = makeMachine('strict');
    const ib = unwrap(rdmaProbe(m.device('nic0')));
    const mm = m.newProcess();
    const src = unwrap(mm.mmap({ len: 8 * PS, backing: 'anon' }));
    const dst = unwrap(mm.mmap({ len: 8 * PS, backing: 'anon' }));
    unwrap(mm.writeUser(dst, pattern(2 * PS, 1))); // pages 0, 1: private, writable
    unwrap(mm.readUser(dst + BigInt(4 * PS), 1)); // page 4: the zero page, read-only
    unwrap(mm.writeUser(src, pattern(8 * PS, 2)));
    const faults0 = m.stats.pageFaults;
    const d = unwrap(ibRegOdpUserMr(ib, mm, dst, 8 * PS, RW));
    expect(m.stats.pageFaults).toBe(faults0);
    expect(m.stats.odpFaults).toBe(0);
    expect(m.listPins()).toEqual([]);
    const mtt = ibMrMttEntries(d.mr);
    const rw = BigInt(MLX5_IB_MTT_READ | MLX5_IB_MTT_WRITE);
    expect([0, 1].map((i) => mtt[i] & rw)).toEqual([rw, rw]);
    expect(mtt[4] & rw).toBe(BigInt(MLX5_IB_MTT_READ));
    expect([2, 3, 5, 6, 7].map((i) => mtt[i])).toEqual([0n, 0n, 0n, 0n, 0n]);
    expect(d.umem.npages).toBe(3);
    expect(m.stats.odpPagesMapped).toBe(3);
    const s = unwrap(ibRegOdpUserMr(ib, mm, src, 8 * PS, RW));
    expect(s.umem.npages).toBe(8);
    // the snapshot entries serve the NIC without a fault; the zero page is COWed by the NIC's write fault
    const nicFaults = m.stats.rdmaNicPageFaults;
    expect(write(ib, s, d, 0, 2 * PS)).toBe(IB_WC_SUCCESS);
    expect(m.stats.rdmaNicPageFaults).toBe(nicFaults);
    expect(write(ib, s, d, 0, 8 * PS)).toBe(IB_WC_SUCCESS);
    expect(m.stats.odpFaults).toBe(1);
    expect(same(unwrap(mm.readUser(dst, 8 * PS)), unwrap(mm.readUser(src, 8 * PS)))).toBe(true);
    unwrap(ibDeregOdpUserMr(ib, s));
    unwrap(ibDeregOdpUserMr(ib, d));
    expect(m.stats.hmmDmaMapPfns).toBe(m.stats.hmmDmaUnmapPfns);
    unwrap(rdmaRemove(ib));
    expect(m.teardown()).toBe(0);
  });

  it('munmap zaps the MTT and unmaps the DMA; the NIC then fails (no VMA: EFAULT); a new mapping there is re-faulted', () => {
    const { m, ib, mm, src, dst, s, d, len } = setup('strict');
    unwrap(mm.writeUser(src, pattern(len, 1)));
    expect(write(ib, s, d, 0, len)).toBe(IB_WC_SUCCESS);
    const mapped = d.umem.map.mapped;
    unwrap(mm.munmap(dst + BigInt(4 * PS), 4 * PS));
    expect(m.stats.odpInvalidations).toBe(1);
    // the UMR zaps the whole block of 8 entries holding 4..7; pages 0..3 stay mapped
    expect(ibMrMttEntries(d.mr).slice(0, 8)).toEqual(new Array(8).fill(0n));
    expect(ibMrMttEntries(d.mr)[8]).not.toBe(0n);
    expect(d.umem.map.mapped).toBe(mapped - 4);
    expect(write(ib, s, d, 4 * PS, PS)).toBe(IB_WC_REM_ACCESS_ERR);
    unwrap(mm.mmap({ len: 4 * PS, backing: 'anon', addr: dst + BigInt(4 * PS) }));
    const next = pattern(len, 2);
    unwrap(mm.writeUser(src, next));
    expect(write(ib, s, d, 0, len)).toBe(IB_WC_SUCCESS);
    expect(same(unwrap(mm.readUser(dst, len)), next)).toBe(true);
    expect(m.stats.odpRemaps).toBe(4);
    unwrap(ibDeregOdpUserMr(ib, s));
    unwrap(ibDeregOdpUserMr(ib, d));
    unwrap(rdmaRemove(ib));
    expect(m.teardown()).toBe(0);
  });

  it('an invalidation zaps whole 8-entry blocks (mlx5r_umr_update_xlt): a valid neighbour faults once, and that fault refills its block', () => {
    const { m, ib, mm, src, dst, s, d, len } = setup('strict');
    unwrap(mm.writeUser(src, pattern(len, 3)));
    expect(write(ib, s, d, 0, len)).toBe(IB_WC_SUCCESS);
    // migrate page 5 of dst: only its entry is invalidated and unmapped, but the UMR zaps entries 0..7
    unwrap(mm.migratePage(dst + BigInt(5 * PS)));
    expect(ibMrMttEntries(d.mr).slice(0, 8)).toEqual(new Array(8).fill(0n));
    expect(ibMrMttEntries(d.mr)[8]).not.toBe(0n);
    // page 0 was never invalidated, yet the NIC faults on it; the fault writes the block's valid entries back
    const faults = m.stats.rdmaNicPageFaults, odpFaults = m.stats.odpFaults, remaps = m.stats.odpRemaps;
    expect(write(ib, s, d, 0, PS)).toBe(IB_WC_SUCCESS);
    expect(m.stats.rdmaNicPageFaults).toBe(faults + 1);
    expect(m.stats.odpRemaps).toBe(remaps);
    expect(ibMrMttEntries(d.mr).slice(0, 8).map((e) => e !== 0n)).toEqual([true, true, true, true, true, false, true, true]);
    // pages 1..4 and 6..7 need no fault; page 5 does (it was unmapped) and is mapped again
    expect(write(ib, s, d, PS, 4 * PS)).toBe(IB_WC_SUCCESS);
    expect(write(ib, s, d, 6 * PS, 2 * PS)).toBe(IB_WC_SUCCESS);
    expect(m.stats.odpFaults).toBe(odpFaults + 1);
    expect(write(ib, s, d, 5 * PS, PS)).toBe(IB_WC_SUCCESS);
    expect([m.stats.odpFaults, m.stats.odpRemaps]).toEqual([odpFaults + 2, remaps + 1]);
    expect(same(unwrap(mm.readUser(dst, len)), unwrap(mm.readUser(src, len)))).toBe(true);
    unwrap(ibDeregOdpUserMr(ib, s));
    unwrap(ibDeregOdpUserMr(ib, d));
    unwrap(rdmaRemove(ib));
    expect(m.teardown()).toBe(0);
  });

  it('mprotect read-only: a writable MR faults for write and fails (EPERM, remote access error, nothing moved); rw again works', () => {
    const { ib, mm, src, dst, s, d, len } = setup('none');
    unwrap(mm.writeUser(src, pattern(len, 5)));
    expect(write(ib, s, d, 0, len)).toBe(IB_WC_SUCCESS);
    unwrap(mm.mprotect(dst, len, 'r'));
    unwrap(mm.writeUser(src, pattern(len, 6)));
    expect(write(ib, s, d, 0, PS)).toBe(IB_WC_REM_ACCESS_ERR);
    expect(same(unwrap(mm.readUser(dst, PS)), pattern(len, 5).subarray(0, PS))).toBe(true);
    unwrap(mm.mprotect(dst, len, 'rw'));
    expect(write(ib, s, d, 0, len)).toBe(IB_WC_SUCCESS);
    expect(same(unwrap(mm.readUser(dst, len)), pattern(len, 6))).toBe(true);
  });

  it('migration: the NIC reads the page at its new place (new contents), never the old one', () => {
    const { m, ib, mm, src, dst, s, d, len } = setup('strict');
    unwrap(mm.writeUser(src, pattern(len, 8)));
    expect(write(ib, s, d, 0, len)).toBe(IB_WC_SUCCESS);
    const old = mm.translate(src + BigInt(2 * PS))!;
    const moved = unwrap(mm.migratePage(src + BigInt(2 * PS)));
    expect(moved).not.toBe(old);
    unwrap(mm.writeUser(src + BigInt(2 * PS), new Uint8Array(PS).fill(0x5a)));
    const faults = m.stats.odpFaults;
    expect(write(ib, s, d, 2 * PS, PS)).toBe(IB_WC_SUCCESS);
    expect(m.stats.odpFaults).toBe(faults + 1);
    expect(unwrap(mm.readUser(dst + BigInt(2 * PS), PS)).every((x) => x === 0x5a)).toBe(true);
  });

  it('a read-only MR over untouched memory maps the zero page; the CPU write (COW) invalidates it and the NIC sees the new page', () => {
    const m = makeMachine('strict');
    const ib = unwrap(rdmaProbe(m.device('nic0')));
    const mm = m.newProcess();
    const ro = unwrap(mm.mmap({ len: 4 * PS, backing: 'anon' }));
    const buf = unwrap(mm.mmap({ len: 4 * PS, backing: 'anon' }));
    const r = unwrap(ibRegOdpUserMr(ib, mm, ro, 4 * PS, IB_ACCESS_REMOTE_READ | IB_ACCESS_ON_DEMAND));
    const l = unwrap(ibRegOdpUserMr(ib, mm, buf, 4 * PS, RW));
    unwrap(mm.writeUser(buf, new Uint8Array(4 * PS).fill(1)));
    const rd = () => unwrap(ibPostRdmaRead(ib, { lkey: l.mr.lkey, laddr: l.mr.iova, rkey: r.mr.rkey, raddr: r.mr.iova, len: 4 * PS })).status;
    expect(rd()).toBe(IB_WC_SUCCESS);
    expect(unwrap(mm.readUser(buf, 4 * PS)).every((x) => x === 0)).toBe(true);
    expect(m.isZeroPfn(r.umem.map.pfnList[0])).toBe(true);
    unwrap(mm.writeUser(ro + 100n, Uint8Array.of(42)));
    expect(rd()).toBe(IB_WC_SUCCESS);
    expect(unwrap(mm.readUser(buf + 100n, 1))[0]).toBe(42);
    unwrap(ibDeregOdpUserMr(ib, r));
    unwrap(ibDeregOdpUserMr(ib, l));
    unwrap(rdmaRemove(ib));
    expect(m.teardown()).toBe(0);
  });

  it('THP: a PMD split invalidates the 2 MiB; the NIC re-faults it', () => {
    const { m, ib, mm, src, dst, s, d, len } = setup('strict', 'thp', 512);
    unwrap(mm.writeUser(src, pattern(len, 4)));
    expect(write(ib, s, d, 0, len)).toBe(IB_WC_SUCCESS);
    expect(mm.splitHugePmd(dst)).toBe(true);
    expect(ibMrMttEntries(d.mr).every((e) => e === 0n)).toBe(true);
    const f = m.stats.odpFaults;
    expect(write(ib, s, d, 0, len)).toBe(IB_WC_SUCCESS);
    expect(m.stats.odpFaults).toBe(f + 1);
    expect(same(unwrap(mm.readUser(dst, len)), pattern(len, 4))).toBe(true);
  });

  it('property: after any mix of CPU writes, munmap/remap, mprotect, migration and PMD split, every NIC access faults first where an invalidation zapped, and moves the bytes the CPU page tables show', () => {
    type Op = { op: 'cpu' | 'nicW' | 'nicR' | 'unmap' | 'ro' | 'rw' | 'migrate' | 'split'; page: number; n: number; seed: number };
    const opArb = fc.record({
      op: fc.constantFrom<Op['op']>('cpu', 'nicW', 'nicR', 'nicW', 'nicR', 'unmap', 'ro', 'rw', 'migrate', 'split'),
      page: fc.nat(15), n: fc.integer({ min: 1, max: 4 }), seed: fc.nat(1000),
    });
    fc.assert(fc.property(fc.constantFrom<IommuMode>('strict', 'none'), fc.constantFrom<'anon' | 'thp'>('anon', 'thp'), fc.array(opArb, { maxLength: 25 }), (mode, backing, ops) => {
      const { m, ib, mm, src, dst, s, d } = setup(mode, backing, 16);
      // a watcher beside the driver's notifier: which pages of dst were invalidated since the NIC last used them
      const stale = new Set<number>();
      unwrap(mmuIntervalNotifierInsert(mm as UserMm, dst, 16 * PS, {
        invalidate(sub, r, cur) {
          mmuIntervalSetSeq(sub, cur);
          for (let p = 0; p < 16; p++) {
            const a = dst + BigInt(p * PS);
            if (a >= r.start && a < r.end) stale.add(p);
          }
          return true;
        },
      }));
      unwrap(mm.writeUser(src, pattern(16 * PS, 99)));
      const ro = new Set<number>();
      const unmapped = new Set<number>();
      for (const o of ops) {
        const n = Math.min(o.n, 16 - o.page), a = dst + BigInt(o.page * PS);
        const span = Array.from({ length: n }, (_, k) => o.page + k);
        if (o.op === 'cpu') {
          unwrap(mm.writeUser(src + BigInt(o.page * PS), pattern(n * PS, o.seed)));
          if (span.every((p) => !unmapped.has(p) && !ro.has(p))) unwrap(mm.writeUser(a, pattern(n * PS, o.seed + 1)));
        } else if (o.op === 'unmap') {
          unwrap(mm.munmap(a, n * PS));
          span.forEach((p) => { unmapped.add(p); ro.delete(p); });
          // map the hole again (fresh zero pages) half of the time
          if (o.seed % 2 === 0) {
            for (const p of span) {
              if (unwrap(mm.mmap({ len: PS, backing: 'anon', addr: dst + BigInt(p * PS) })) !== dst + BigInt(p * PS)) throw new Error('fixed map');
              unmapped.delete(p);
            }
          }
        } else if (o.op === 'ro' || o.op === 'rw') {
          if (span.some((p) => unmapped.has(p))) continue;
          unwrap(mm.mprotect(a, n * PS, o.op === 'ro' ? 'r' : 'rw'));
          span.forEach((p) => (o.op === 'ro' ? ro.add(p) : ro.delete(p)));
        } else if (o.op === 'migrate') {
          void mm.migratePage(a);
        } else if (o.op === 'split') {
          mm.splitHugePmd(a);
        } else {
          // NIC access: every stale page in the span must be zapped in the MTT right now (so the NIC faults first)
          const mtt = ibMrMttEntries(d.mr);
          for (const p of span) if (stale.has(p)) expect(mtt[p]).toBe(0n);
          const faults = m.stats.rdmaNicPageFaults;
          const before = unwrap(mm.readUser(src + BigInt(o.page * PS), n * PS));
          const wr = { lkey: s.mr.lkey, laddr: s.mr.iova + BigInt(o.page * PS), rkey: d.mr.rkey, raddr: d.mr.iova + BigInt(o.page * PS), len: n * PS };
          const st = unwrap(o.op === 'nicW' ? ibPostRdmaWrite(ib, wr) : ibPostRdmaRead(ib, wr)).status;
          // a writable MR faults for write: read-only or unmapped pages fail the whole request
          const ok = span.every((p) => !unmapped.has(p) && !ro.has(p));
          expect(st === IB_WC_SUCCESS).toBe(ok);
          if (span.some((p) => stale.has(p))) expect(m.stats.rdmaNicPageFaults).toBeGreaterThan(faults);
          if (!ok) {
            if (o.op === 'nicR') expect(same(unwrap(mm.readUser(src + BigInt(o.page * PS), n * PS)), before)).toBe(true);
            continue;
          }
          span.forEach((p) => stale.delete(p));
          const dstBytes = unwrap(mm.readUser(a, n * PS)), srcBytes = unwrap(mm.readUser(src + BigInt(o.page * PS), n * PS));
          expect(same(dstBytes, srcBytes)).toBe(true);
        }
      }
      unwrap(ibDeregOdpUserMr(ib, s));
      unwrap(ibDeregOdpUserMr(ib, d));
      expect(s.umem.map.mapped + d.umem.map.mapped).toBe(0);
      expect(m.stats.hmmDmaMapPfns).toBe(m.stats.hmmDmaUnmapPfns);
      unwrap(rdmaRemove(ib));
      expect(m.teardown()).toBe(0);
    }), { numRuns: 40 });
  });
});
