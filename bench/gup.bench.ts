// GUP and machine-creation figures: pinUserPhyrs over aged 4 KiB anon and 1 GiB hugetlb, pinUserPages
// for reference, and creating a 1 TiB aged machine. Timed: the pin only (unpin runs outside the timer).
import { GiB, TiB, unwrap } from '../src/base/index.ts';
import { FOLL_WRITE, createMmMachine, pinUserPages, pinUserPhyrs, unpinUserPages, unpinUserPhyrs } from '../src/mm/index.ts';
import type { BenchSection } from './harness.ts';

function timePin(fn: () => void, runs = 5): number {
  const t: number[] = [];
  for (let i = 0; i < runs; i++) {
    const s = process.hrtime.bigint();
    fn();
    t.push(Number(process.hrtime.bigint() - s) / 1e6);
  }
  t.sort((a, b) => a - b);
  return t[Math.floor(t.length / 2)];
}

export default function gupBench(): BenchSection {
  const ps = 4096;
  // 16 GiB of aged 4 KiB anonymous memory, populated first.
  const m = createMmMachine({ ramBytes: 96 * GiB, aged: true, seed: 1 });
  const mm = m.newProcess();
  const len = 16 * GiB;
  const va = unwrap(mm.mmap({ len, backing: 'anon', populate: true }));
  const pages = len / ps;
  let entries = 0;
  const phyrMs = timePin(() => {
    const l = unwrap(pinUserPhyrs(mm, va, len, FOLL_WRITE));
    entries = l.count;
    // unpin outside the measured region is not possible with this helper; measured separately below
    unpinLater.push(l);
  });
  const unpinMs = timePin(() => { const l = unpinLater.pop(); if (l) unpinUserPhyrs(l); }, 5);
  const pageMs = timePin(() => {
    const p = unwrap(pinUserPages(mm, va, pages, FOLL_WRITE));
    unpinUserPages(p);
  }, 3);

  // 1 TiB of 1 GiB hugetlb.
  const big = createMmMachine({ ramBytes: 1040 * GiB, hugetlb: { '1G': 1024 }, seed: 1 });
  const bmm = big.newProcess();
  const bva = unwrap(bmm.mmap({ len: TiB, backing: 'hugetlb-1G', populate: true }));
  let hugeEntries = 0;
  const hugeMs = timePin(() => {
    const l = unwrap(pinUserPhyrs(bmm, bva, TiB, FOLL_WRITE));
    hugeEntries = l.count;
    unpinUserPhyrs(l);
  }, 7);

  const createMs = timePin(() => { createMmMachine({ ramBytes: TiB, aged: true, seed: 7 }); }, 3);

  return {
    title: 'GUP: pinUserPhyrs vs pinUserPages (src/mm)',
    rows: [
      { name: 'pinUserPhyrs 16 GiB aged 4 KiB anon (pin only)', value: pages / (phyrMs / 1000), unit: 'pages/s',
        target: { op: '>=', value: 20e6 }, note: `${entries} entries for ${pages} pages, ${phyrMs.toFixed(1)} ms` },
      { name: 'unpinUserPhyrs 16 GiB aged 4 KiB anon', value: pages / (unpinMs / 1000), unit: 'pages/s', note: `${unpinMs.toFixed(1)} ms` },
      { name: 'pinUserPages+unpin 16 GiB aged 4 KiB anon (reference)', value: pages / (pageMs / 1000), unit: 'pages/s', note: `${pageMs.toFixed(1)} ms` },
      { name: 'pinUserPhyrs+unpin 1 TiB of 1 GiB hugetlb', value: hugeMs, unit: 'ms', target: { op: '<=', value: 10 }, note: `${hugeEntries} entries` },
      { name: 'createMmMachine 1 TiB aged', value: createMs, unit: 'ms', target: { op: '<=', value: 1000 } },
    ],
  };
}

const unpinLater: Array<import('../src/phyr/index.ts').PhyrList> = [];
