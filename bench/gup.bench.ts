// GUP and machine-creation figures (src/mm): pinUserPhyrs over aged 4 KiB anon and over 1 GiB hugetlb,
// pinUserPages for reference, creating a 1 TiB aged machine. The anon rows time the pin only (the
// unpin of each run happens outside the timer and is reported in its own row); the hugetlb row times
// pin + unpin. A baseline row times PhyrListBuilder.push alone over the same number of scattered
// pages, the floor any pinUserPhyrs built on that builder can reach.
import { GiB, TiB, unwrap } from '../src/base/index.ts';
import { FOLL_WRITE, createMmMachine, pinUserPages, pinUserPhyrs, unpinUserPages, unpinUserPhyrs } from '../src/mm/index.ts';
import { PhyrListBuilder } from '../src/phyr/index.ts';
import type { BenchSection } from './harness.ts';

/** Median ms of `runs` runs of fn (after one warm-up); after() runs outside the timer. */
function median<T>(fn: () => T, after: (v: T) => void, runs = 5): number {
  after(fn());
  const t: number[] = [];
  for (let i = 0; i < runs; i++) {
    const s = process.hrtime.bigint();
    const v = fn();
    t.push(Number(process.hrtime.bigint() - s) / 1e6);
    after(v);
  }
  t.sort((a, b) => a - b);
  return t[Math.floor(t.length / 2)];
}

export default function gupBench(): BenchSection {
  const ps = 4096;
  const m = createMmMachine({ ramBytes: 96 * GiB, aged: true, seed: 1 });
  const mm = m.newProcess();
  const len = 16 * GiB;
  const pages = len / ps;
  const va = unwrap(mm.mmap({ len, backing: 'anon', populate: true }));

  let entries = 0;
  const phyrMs = median(() => unwrap(pinUserPhyrs(mm, va, len, FOLL_WRITE)), (l) => { entries = l.count; unpinUserPhyrs(l); });
  const lists: ReturnType<typeof unwrap<import('../src/phyr/index.ts').PhyrList>>[] = [];
  for (let i = 0; i < 3; i++) lists.push(unwrap(pinUserPhyrs(mm, va, len, FOLL_WRITE)));
  const unpinMs = median(() => { const l = lists.pop(); if (l) unpinUserPhyrs(l); }, () => {}, 2);
  const pageMs = median(() => unwrap(pinUserPages(mm, va, pages, FOLL_WRITE)), (p) => unpinUserPages(p), 3);

  // Baseline: the builder alone over the same pfns in the same order.
  const pa = unwrap(pinUserPages(mm, va, pages, 0));
  const pfns = pa.pfns;
  unpinUserPages(pa);
  const builderMs = median(() => {
    const b = new PhyrListBuilder(64);
    for (let i = 0; i < pfns.length; i++) b.push(pfns[i] * ps, ps, 0);
    return b.build();
  }, () => {}, 3);

  const big = createMmMachine({ ramBytes: 1040 * GiB, hugetlb: { '1G': 1024 }, seed: 1 });
  const bmm = big.newProcess();
  const bva = unwrap(bmm.mmap({ len: TiB, backing: 'hugetlb-1G', populate: true }));
  let hugeEntries = 0;
  const hugeMs = median(() => {
    const l = unwrap(pinUserPhyrs(bmm, bva, TiB, FOLL_WRITE));
    hugeEntries = l.count;
    unpinUserPhyrs(l);
  }, () => {}, 7);

  const createMs = median(() => createMmMachine({ ramBytes: TiB, aged: true, seed: 7 }), () => {}, 3);

  return {
    title: 'GUP: pinUserPhyrs vs pinUserPages (src/mm)',
    rows: [
      { name: 'pinUserPhyrs 16 GiB aged 4 KiB anon (pin only)', value: pages / (phyrMs / 1000), unit: 'pages/s',
        target: { op: '>=', value: 20e6 }, note: `${entries} entries for ${pages} pages, ${phyrMs.toFixed(1)} ms` },
      { name: 'PhyrListBuilder.push alone, same pfns (floor)', value: pages / (builderMs / 1000), unit: 'pages/s',
        note: `${builderMs.toFixed(1)} ms; pin/builder = ${(phyrMs / builderMs).toFixed(2)}x` },
      { name: 'unpinUserPhyrs 16 GiB aged 4 KiB anon', value: pages / (unpinMs / 1000), unit: 'pages/s', note: `${unpinMs.toFixed(1)} ms` },
      { name: 'pinUserPages 16 GiB aged 4 KiB anon (reference, pin only)', value: pages / (pageMs / 1000), unit: 'pages/s',
        note: `${pageMs.toFixed(1)} ms; ${(pages * 8 / 2 ** 20).toFixed(1)} MiB of page pointers vs ${(entries * 16 / 2 ** 20).toFixed(1)} MiB of phyrs` },
      { name: 'pinUserPhyrs+unpin 1 TiB of 1 GiB hugetlb', value: hugeMs, unit: 'ms', target: { op: '<=', value: 10 }, note: `${hugeEntries} entries` },
      { name: 'createMmMachine 1 TiB aged', value: createMs, unit: 'ms', target: { op: '<=', value: 1000 } },
    ],
  };
}
