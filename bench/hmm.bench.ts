// ODP figures (src/drivers/hmm over src/drivers/rdma and src/mm/hmm.ts): NIC page faults resolved per
// second on an on-demand-paging MR. Each fault is a whole ODP round: the NIC finds an empty MTT entry,
// the driver runs mmu_interval_read_begin + hmm_range_fault over the populated page, hmm_dma_map_pfn
// (an IOVA link + sync with the IOMMU in strict mode, dma_map_phys without one), writes the MTT entry,
// and the NIC re-walks the MTT and moves the 4 KiB. Then the same region invalidated by munmap
// (zapping and unmapping every entry) in pages/s, and one fault that maps 16 MiB at once in pages/s.
// Figures for reference (the issue sets no target).
import { GiB, MiB, unwrap } from '../src/base/index.ts';
import { DMA_BIT_MASK, dmaSetMaskAndCoherent } from '../src/dma/index.ts';
import {
  IB_ACCESS_LOCAL_WRITE, IB_ACCESS_ON_DEMAND, IB_ACCESS_REMOTE_READ, IB_ACCESS_REMOTE_WRITE, ibDeregOdpUserMr, ibPostRdmaRead,
  ibRegOdpUserMr, rdmaProbe,
} from '../src/drivers/index.ts';
import { createMachine } from '../src/machine/index.ts';
import type { PciNodeConfig } from '../src/pci/index.ts';
import type { BenchSection } from './harness.ts';

const PS = 4096;
const LEN = 16 * MiB;
const PAGES = LEN / PS;
const ACCESS = IB_ACCESS_LOCAL_WRITE | IB_ACCESS_REMOTE_WRITE | IB_ACCESS_REMOTE_READ | IB_ACCESS_ON_DEMAND;
const NODES = [
  { name: 'hb0', type: 'host-bridge', vendor: 0x8086, device: 0x2030 },
  { name: 'rp0', type: 'root-port', parent: 'hb0' },
  { name: 'nic0', type: 'endpoint', parent: 'rp0' },
] as PciNodeConfig[];

interface Run { faultMs: number; zapMs: number; bigMs: number; faults: number }

function once(iommu: 'strict' | 'none'): Run {
  const m = createMachine({
    ramBytes: 2 * GiB, seed: 3, cpu: { vendor: 'intel' }, pci: NODES,
    ...(iommu === 'none' ? {} : { iommu: { format: 'x86-64', levels: 4, mode: iommu } }),
  } as Parameters<typeof createMachine>[0]);
  unwrap(dmaSetMaskAndCoherent(m.device('nic0'), DMA_BIT_MASK(64)));
  const ib = unwrap(rdmaProbe(m.device('nic0')));
  const mm = m.newProcess();
  // register first, then touch the pages: registration's snapshot (mlx5_ib_init_odp_mr) would map
  // pages that are present already, and the bench measures the NIC's faults
  const va = unwrap(mm.mmap({ len: LEN, backing: 'anon' }));
  const buf = unwrap(mm.mmap({ len: PS, backing: 'anon' }));
  const local = unwrap(ibRegOdpUserMr(ib, mm, buf, PS, ACCESS));
  const remote = unwrap(ibRegOdpUserMr(ib, mm, va, LEN, ACCESS));
  unwrap(mm.writeUser(va, new Uint8Array(LEN)));
  unwrap(mm.writeUser(buf, new Uint8Array(PS)));
  const read = (off: number, len: number): void => {
    const st = unwrap(ibPostRdmaRead(ib, { lkey: local.mr.lkey, laddr: local.mr.iova, rkey: remote.mr.rkey, raddr: remote.mr.iova + BigInt(off), len })).status;
    if (st !== 'IB_WC_SUCCESS') throw new Error(`ODP bench: RDMA READ completed with ${st}`);
  };
  read(0, PS); // fault the local buffer in
  const f0 = m.stats.odpFaults;
  let t = performance.now();
  for (let off = PS; off < LEN; off += PS) read(off, PS);
  const faultMs = performance.now() - t;
  const faults = m.stats.odpFaults - f0;
  // invalidate everything: munmap + map again (the zap and the DMA unmap of every entry)
  t = performance.now();
  unwrap(mm.munmap(va, LEN));
  const zapMs = performance.now() - t;
  unwrap(mm.mmap({ len: LEN, backing: 'anon', populate: true, addr: va }));
  // one fault of 16 MiB: a bigger local buffer
  const big = unwrap(mm.mmap({ len: LEN, backing: 'anon' }));
  const bigMr = unwrap(ibRegOdpUserMr(ib, mm, big, LEN, ACCESS));
  unwrap(mm.writeUser(big, new Uint8Array(LEN)));
  const f1 = m.stats.odpFaults;
  t = performance.now();
  const st = unwrap(ibPostRdmaRead(ib, { lkey: bigMr.mr.lkey, laddr: bigMr.mr.iova, rkey: remote.mr.rkey, raddr: remote.mr.iova, len: LEN })).status;
  const bigMs = performance.now() - t;
  if (st !== 'IB_WC_SUCCESS' || m.stats.odpFaults - f1 !== 2) throw new Error(`ODP bench: big read ${st}, ${m.stats.odpFaults - f1} faults`);
  unwrap(ibDeregOdpUserMr(ib, bigMr));
  unwrap(ibDeregOdpUserMr(ib, remote));
  unwrap(ibDeregOdpUserMr(ib, local));
  return { faultMs, zapMs, bigMs, faults };
}

function best(iommu: 'strict' | 'none'): Run {
  once(iommu); // warm-up
  const runs = [once(iommu), once(iommu), once(iommu)];
  runs.sort((a, b) => a.faultMs - b.faultMs);
  return runs[1];
}

export default function hmmBench(): BenchSection {
  const s = best('strict'), n = best('none');
  const per = (r: Run): number => r.faults / (r.faultMs / 1000);
  return {
    title: 'ODP: NIC page faults through hmm_range_fault + HMM DMA map (src/drivers/hmm)',
    rows: [
      { name: 'ODP faults/s, one 4 KiB page per fault, IOMMU strict', value: per(s), unit: 'faults/s', note: `${s.faults} faults in ${s.faultMs.toFixed(1)} ms (IOVA link + sync per page)` },
      { name: 'ODP faults/s, one 4 KiB page per fault, no IOMMU', value: per(n), unit: 'faults/s', note: `${n.faults} faults in ${n.faultMs.toFixed(1)} ms (dma_map_phys per page)` },
      { name: 'ODP one fault of 16 MiB (pages mapped/s), IOMMU strict', value: 2 * PAGES / (s.bigMs / 1000), unit: 'pages/s', note: `${s.bigMs.toFixed(1)} ms, both MRs faulted, 32 MiB moved` },
      { name: 'ODP invalidation by munmap of 16 MiB (pages zapped/s), IOMMU strict', value: PAGES / (s.zapMs / 1000), unit: 'pages/s', note: `${s.zapMs.toFixed(1)} ms incl. the page teardown` },
    ],
  };
}
