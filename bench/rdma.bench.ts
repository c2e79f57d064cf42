// RDMA memory registration (src/drivers/rdma): ibUmemGet (pinUserPhyrs + dmaMapPhyrs) + ibRegMr
// (ib_umem_find_best_pgsz, the mlx5 MTT) of
// - 1 TiB of 1 GiB hugetlb pages: the seeds' headline case (1,024 folios, 1,024 MTT entries of 1 GiB);
//   target <= 10 ms, no IOMMU;
// - 16 GiB of aged 4 KiB anonymous memory in pages/s, beside the kernel's design in the same run
//   (drivers/umem 'sgtable': pin_user_pages into a page array, sg_alloc_table_from_pages_segment,
//   dma_map_sgtable; no MTT), no IOMMU.
// dma-debug is off, as in production kernels and the other DMA benchmarks: on, its bookkeeping of
// every mapping would weigh more than the registration it watches. Deregistration and release run
// outside the timer. Wall time, median of the runs.
import { GiB, TiB, unwrap } from '../src/base/index.ts';
import {
  IB_ACCESS_LOCAL_WRITE, IB_ACCESS_REMOTE_READ, IB_ACCESS_REMOTE_WRITE, ibDeregMr, ibRegMr, ibUmemGet, ibUmemRelease, rdmaProbe, umemMap,
  type IbDevice, type IbMr,
} from '../src/drivers/index.ts';
import { createMachine } from '../src/machine/index.ts';
import type { UserMm } from '../src/mm/index.ts';
import type { BenchSection } from './harness.ts';

const ACCESS = IB_ACCESS_LOCAL_WRITE | IB_ACCESS_REMOTE_WRITE | IB_ACCESS_REMOTE_READ;
const PCI = [
  { name: 'hb0', type: 'host-bridge', vendor: 0x8086, device: 0x2030 },
  { name: 'rp0', type: 'root-port', parent: 'hb0' },
  { name: 'nic0', type: 'endpoint', parent: 'rp0' },
];

function median(fn: () => void, after: () => void, runs: number): number {
  fn(); after();
  const t: number[] = [];
  for (let i = 0; i < runs; i++) {
    const s = performance.now();
    fn();
    t.push(performance.now() - s);
    after();
  }
  t.sort((a, b) => a - b);
  return t[Math.floor(t.length / 2)];
}

function setup(ramBytes: number, extra: Record<string, unknown>, len: number, backing: 'anon' | 'hugetlb-1G'): { nic: IbDevice; mm: UserMm; va: bigint } {
  const m = createMachine({ ramBytes, seed: 1, cpu: { vendor: 'intel' }, pci: PCI, ...extra } as Parameters<typeof createMachine>[0]);
  m.dmaDebug.enabled = false;
  const nic = unwrap(rdmaProbe(m.device('nic0')));
  const mm = m.newProcess();
  const va = unwrap(mm.mmap({ len, backing, populate: true }));
  return { nic, mm, va };
}

function regBench(nic: IbDevice, mm: UserMm, va: bigint, len: number, runs: number): { ms: number; mr: { pageLen: number; mttCount: number } } {
  let mr: IbMr | null = null;
  let shape = { pageLen: 0, mttCount: 0 };
  const ms = median(() => {
    const u = unwrap(ibUmemGet(nic, mm, va, len, ACCESS));
    mr = unwrap(ibRegMr(nic, u, va));
  }, () => {
    const r = mr!;
    shape = { pageLen: r.pageLen, mttCount: r.mttCount };
    unwrap(ibDeregMr(nic, r));
    ibUmemRelease(r.umem!);
  }, runs);
  return { ms, mr: shape };
}

export default function rdmaBench(): BenchSection {
  const TIB = 1 * TiB;
  const huge = setup(TIB + 64 * GiB, { hugetlb: { '1G': TIB / GiB } }, TIB, 'hugetlb-1G');
  const h = regBench(huge.nic, huge.mm, huge.va, TIB, 5);

  const LEN = 16 * GiB;
  const pages = LEN / 4096;
  const anon = setup(96 * GiB, { aged: true }, LEN, 'anon');
  const a = regBench(anon.nic, anon.mm, anon.va, LEN, 3);
  // the umem alone (pin + map, no MR), the part the scatterlist design below also does
  let umem: ReturnType<typeof ibUmemGet> | null = null;
  const umemMs = median(() => { umem = ibUmemGet(anon.nic, anon.mm, anon.va, LEN, ACCESS); }, () => ibUmemRelease(unwrap(umem!)), 3);
  let undo: (() => void) | null = null;
  const sgMs = median(() => {
    const r = unwrap(umemMap(anon.nic.dev, anon.mm, anon.va, LEN, 'sgtable'));
    undo = () => r.unmap();
  }, () => undo!(), 3);
  const phyrRate = pages / (a.ms / 1e3);
  const sgRate = pages / (sgMs / 1e3);
  return {
    title: 'RDMA memory registration (ibUmemGet + ibRegMr)',
    rows: [
      { name: 'register 1 TiB of 1 GiB hugetlb (umem + MR)', value: h.ms, unit: 'ms', target: { op: '<=', value: 10 }, note: `HW page ${h.mr.pageLen / GiB} GiB, ${h.mr.mttCount} MTT entries` },
      { name: 'register 16 GiB aged 4 KiB anon (umem + MR)', value: phyrRate, unit: 'pages/s', note: `${a.ms.toFixed(0)} ms; HW page ${a.mr.pageLen} B, ${a.mr.mttCount} MTT entries written; dma-debug off` },
      { name: 'of which ibUmemGet alone (pinUserPhyrs + dmaMapPhyrs)', value: pages / (umemMs / 1e3), unit: 'pages/s', note: `${umemMs.toFixed(0)} ms; the MR's MTT is the rest` },
      { name: 'pinUserPages + scatterlist + dmaMapSgtable, same 16 GiB', value: sgRate, unit: 'pages/s',
        note: `${sgMs.toFixed(0)} ms, a umem without MR; ibUmemGet / this ${(pages / (umemMs / 1e3) / sgRate).toFixed(2)}x; dma-debug off` },
    ],
  };
}
