// The ODP run of the `phyr rdma` report: two on-demand-paging MRs of one process on the RDMA NIC
// (drivers/hmm over drivers/rdma), and a sequence of RDMA WRITEs between them while the process's
// memory changes under them: the first touch (every page faulted by the NIC), munmap of part of the
// destination (its MTT entries zapped; the NIC's write there fails), a new mapping there (re-fault),
// mprotect read-only and back (the writable MR's fault for write fails, then succeeds), and
// migration of source pages (the NIC reads them at their new place). After each step the CPU reads
// both sides back; the counters are the drivers/hmm and drivers/rdma ones.

import { GiB, MiB, unwrap } from '../base/index.ts';
import { DMA_BIT_MASK, dmaSetMaskAndCoherent } from '../dma/index.ts';
import {
  IB_ACCESS_LOCAL_WRITE, IB_ACCESS_ON_DEMAND, IB_ACCESS_REMOTE_READ, IB_ACCESS_REMOTE_WRITE, ibDeregOdpUserMr,
  ibPostRdmaWrite, ibRegOdpUserMr, rdmaProbe, rdmaRemove, type IbOdpUserMr,
} from '../drivers/index.ts';
import { createMachine, type Machine } from '../machine/index.ts';
import type { PciNodeConfig } from '../pci/index.ts';
import { patternBytes as fillPattern } from '../base/index.ts';

/** One step of the ODP run. */
export interface OdpStep {
  readonly name: string;
  /** Completion status of the step's RDMA WRITE (IB_WC_* name). */
  readonly status: string;
  /** What the step expected (a failure is expected after munmap and mprotect). */
  readonly expected: string;
  readonly odpFaults: number;
  readonly odpInvalidations: number;
  readonly odpRemaps: number;
  readonly pagesZapped: number;
  readonly pagesMapped: number;
  /** Bytes the CPU read back on both sides and found equal after the step. */
  readonly bytesVerified: number;
}

/** The ODP run's result. */
export interface OdpReport {
  readonly iommu: 'strict' | 'none';
  readonly len: number;
  readonly steps: readonly OdpStep[];
  /** After deregistration: entries still DMA-mapped, live pins, dma-debug leaks (all 0 for a correct run). */
  readonly leftMapped: number;
  readonly pins: number;
  readonly leaks: number;
  readonly totals: { readonly odpFaults: number; readonly odpInvalidations: number; readonly odpRemaps: number; readonly bytesVerified: number };
}

const NODES: PciNodeConfig[] = [
  { name: 'hb0', type: 'host-bridge', vendor: 0x8086, device: 0x2030 },
  { name: 'rp0', type: 'root-port', parent: 'hb0' },
  { name: 'nic0', type: 'endpoint', parent: 'rp0' },
] as PciNodeConfig[];

function odpMachine(iommu: 'strict' | 'none'): Machine {
  const m = createMachine({
    ramBytes: 1 * GiB, seed: 8, cpu: { vendor: 'intel' }, swiotlb: { bytes: 4 * MiB }, pci: NODES,
    ...(iommu === 'none' ? {} : { iommu: { format: 'x86-64', levels: 4, mode: iommu } }),
  } as Parameters<typeof createMachine>[0]);
  unwrap(dmaSetMaskAndCoherent(m.device('nic0'), DMA_BIT_MASK(64)));
  return m;
}


/**
 * Runs the ODP sequence over two regions of len bytes (default 1 MiB) of anonymous memory.
 * Throws if a step does not behave as the kernel would (a wrong status or bytes that differ).
 */
export function runOdpScenario(opts: { iommu?: 'strict' | 'none'; len?: number } = {}): OdpReport {
  const iommu = opts.iommu ?? 'strict', len = opts.len ?? MiB, ps = 4096;
  const m = odpMachine(iommu);
  const ib = unwrap(rdmaProbe(m.device('nic0')));
  const mm = m.newProcess();
  const src = unwrap(mm.mmap({ len, backing: 'anon' }));
  const dst = unwrap(mm.mmap({ len, backing: 'anon' }));
  const access = IB_ACCESS_LOCAL_WRITE | IB_ACCESS_REMOTE_WRITE | IB_ACCESS_REMOTE_READ | IB_ACCESS_ON_DEMAND;
  const s = unwrap(ibRegOdpUserMr(ib, mm, src, len, access));
  const d = unwrap(ibRegOdpUserMr(ib, mm, dst, len, access));
  const st = m.stats;
  const steps: OdpStep[] = [];
  const hole = Math.min(64 * 1024, len / 4), holeOff = len / 2;
  let seed = 1;

  const rdmaWrite = (a: IbOdpUserMr, b: IbOdpUserMr, off: number, n: number): string =>
    unwrap(ibPostRdmaWrite(ib, { lkey: a.mr.lkey, laddr: a.mr.iova + BigInt(off), rkey: b.mr.rkey, raddr: b.mr.iova + BigInt(off), len: n })).status;
  const verify = (off: number, n: number): number => {
    const x = unwrap(mm.readUser(src + BigInt(off), n)), y = unwrap(mm.readUser(dst + BigInt(off), n));
    for (let i = 0; i < n; i++) if (x[i] !== y[i]) throw new Error(`ODP run: byte ${off + i} differs after the NIC's write`);
    return 2 * n;
  };
  const step = (name: string, expected: string, act: () => { status: string; bytes: number }): void => {
    const f0 = st.odpFaults, i0 = st.odpInvalidations, r0 = st.odpRemaps, z0 = st.odpPagesZapped, p0 = st.odpPagesMapped;
    const { status, bytes } = act();
    if (status !== expected) throw new Error(`ODP run: step '${name}' completed with ${status}, expected ${expected}`);
    steps.push({
      name, status, expected, odpFaults: st.odpFaults - f0, odpInvalidations: st.odpInvalidations - i0, odpRemaps: st.odpRemaps - r0,
      pagesZapped: st.odpPagesZapped - z0, pagesMapped: st.odpPagesMapped - p0, bytesVerified: bytes,
    });
  };

  unwrap(mm.writeUser(src, fillPattern(len, seed++)));
  step('touch: first RDMA WRITE (NIC faults every page)', 'IB_WC_SUCCESS', () => {
    const status = rdmaWrite(s, d, 0, len);
    return { status, bytes: verify(0, len) };
  });
  step(`munmap ${hole / 1024} KiB of the target, write there`, 'IB_WC_REM_ACCESS_ERR', () => {
    unwrap(mm.munmap(dst + BigInt(holeOff), hole));
    return { status: rdmaWrite(s, d, holeOff, hole), bytes: 0 };
  });
  step('map it again, write everything (re-fault)', 'IB_WC_SUCCESS', () => {
    unwrap(mm.mmap({ len: hole, backing: 'anon', addr: dst + BigInt(holeOff) }));
    unwrap(mm.writeUser(src, fillPattern(len, seed++)));
    const status = rdmaWrite(s, d, 0, len);
    return { status, bytes: verify(0, len) };
  });
  step(`mprotect ${hole / 1024} KiB of the target read-only, write there`, 'IB_WC_REM_ACCESS_ERR', () => {
    unwrap(mm.mprotect(dst, hole, 'r'));
    return { status: rdmaWrite(s, d, 0, hole), bytes: 0 };
  });
  step('mprotect read-write again, write there', 'IB_WC_SUCCESS', () => {
    unwrap(mm.mprotect(dst, hole, 'rw'));
    const status = rdmaWrite(s, d, 0, hole);
    return { status, bytes: verify(0, hole) };
  });
  step(`migrate ${hole / ps} source pages, change them, write`, 'IB_WC_SUCCESS', () => {
    for (let off = 0; off < hole; off += ps) unwrap(mm.migratePage(src + BigInt(off)));
    unwrap(mm.writeUser(src, fillPattern(hole, seed++)));
    const status = rdmaWrite(s, d, 0, hole);
    return { status, bytes: verify(0, hole) };
  });
  unwrap(ibDeregOdpUserMr(ib, s));
  unwrap(ibDeregOdpUserMr(ib, d));
  const leftMapped = s.umem.map.mapped + d.umem.map.mapped;
  unwrap(rdmaRemove(ib));
  const pins = m.listPins().length;
  const leaks = m.teardown();
  const sum = (k: 'odpFaults' | 'odpInvalidations' | 'odpRemaps' | 'bytesVerified'): number => steps.reduce((a, x) => a + x[k], 0);
  return {
    iommu, len, steps, leftMapped, pins, leaks,
    totals: { odpFaults: sum('odpFaults'), odpInvalidations: sum('odpInvalidations'), odpRemaps: sum('odpRemaps'), bytesVerified: sum('bytesVerified') },
  };
}

/** The ODP run as report lines (a section of `phyr rdma`). */
export function odpReportLines(r: OdpReport): string[] {
  const pad = (x: string | number, n: number): string => String(x).padStart(n);
  const lines = [
    `On-demand paging (ODP MR, ${r.len / 1024} KiB source and target, IOMMU ${r.iommu}): nothing pinned at registration; the NIC faults through hmm_range_fault`,
    `${'step'.padEnd(52)} ${'completion'.padEnd(22)} ${pad('faults', 6)} ${pad('invals', 6)} ${pad('remaps', 6)} ${pad('zapped', 6)} ${pad('mapped', 6)} ${pad('verified', 10)}`,
  ];
  for (const s of r.steps) {
    lines.push(`${s.name.padEnd(52)} ${s.status.padEnd(22)} ${pad(s.odpFaults, 6)} ${pad(s.odpInvalidations, 6)} ${pad(s.odpRemaps, 6)} ${pad(s.pagesZapped, 6)} ${pad(s.pagesMapped, 6)} ${pad(s.bytesVerified, 10)}`);
  }
  lines.push(`after deregistration: ${r.leftMapped} entries DMA-mapped, ${r.pins} pins, ${r.leaks} dma-debug leaks; totals: ${r.totals.odpFaults} faults, ${r.totals.odpInvalidations} invalidations, ${r.totals.odpRemaps} re-maps, ${r.totals.bytesVerified} bytes verified`);
  return lines;
}
