// GUP and machine-creation figures (src/mm): pinUserPhyrs over aged 4 KiB anon and over 1 GiB hugetlb,
// pinUserPages for reference, creating a 1 TiB aged machine. The anon rows time the pin only (the
// unpin of each run happens outside the timer and is reported in its own row); the hugetlb row times
// pin + unpin.
//
// The speed targets are ratios measured in the same run, so that other load on the machine cancels:
// - warm pinUserPhyrs against a bare coalescing loop over the same pfns in a Float64Array (the floor
//   of any phyr builder: read a pfn, extend or close a run; its output columns allocated once), >=
//   0.08x. Warm means the JIT and the memory allocator: a GC between runs (outside the timer) frees
//   the last run's list, so the allocator hands its memory to the next one, as in a long-running
//   process. Where first-touching fresh memory is slow (in a gVisor-like sandbox a 4 KiB page fault
//   costs ~10 us; the fault row measures it) a 16 GiB pin's 52 MiB list would otherwise measure the
//   sandbox, not GUP; the same ratio with no GC between runs is printed for reference.
// - the FIRST pinUserPhyrs call of a fresh process against the warm rate of later calls in that same
//   process, >= 0.5x (hot loops must optimise within the first call). The fresh process is this file
//   run as a script with --first-call; its warm runs get no GC between them, so that fresh memory
//   weighs on both sides and the ratio measures the JIT.
// Both ratios compare CPU time (process.cpuUsage: user + system, every thread of the process, so JIT
// and GC work count): on a machine shared with other jobs, wall time punishes the longer of two runs
// for the time it waits for a CPU. The other rows are wall time.
import { spawnSync } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { GiB, TiB, unwrap } from '../src/base/index.ts';
import { FOLL_WRITE, createMmMachine, pinUserPages, pinUserPhyrs, unpinUserPages, unpinUserPhyrs } from '../src/mm/index.ts';
import type { PhyrList } from '../src/phyr/index.ts';
import { defaultMallocEnv, type BenchSection } from './harness.ts';

const PS = 4096;
const LEN = 16 * GiB;
const PAGES = LEN / PS;

/** A clock in ms: wall time, or this process's CPU time. */
type Clock = () => number;
const wall: Clock = () => Number(process.hrtime.bigint()) / 1e6;
const cpu: Clock = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e3; };

/** Median ms of `runs` runs of fn (after one warm-up) on a clock; after() runs outside the timer. */
function median<T>(fn: () => T, after: (v: T) => void, runs = 5, clock: Clock = wall): number {
  after(fn());
  const t: number[] = [];
  for (let i = 0; i < runs; i++) {
    const s = clock();
    const v = fn();
    t.push(clock() - s);
    after(v);
  }
  t.sort((a, b) => a - b);
  return t[Math.floor(t.length / 2)];
}

/** The machine every anon row uses: 96 GiB aged, 16 GiB of 4 KiB anon populated. */
function agedAnon(): { mm: ReturnType<ReturnType<typeof createMmMachine>['newProcess']>; va: bigint } {
  const m = createMmMachine({ ramBytes: 96 * GiB, aged: true, seed: 1 });
  const mm = m.newProcess();
  const va = unwrap(mm.mmap({ len: LEN, backing: 'anon', populate: true }));
  return { mm, va };
}

/**
 * The bare loop: coalesces physically adjacent pages of a pfn column into (addr, len) runs written
 * to the given columns. Returns the number of runs.
 */
function bareCoalesce(pfns: Float64Array, ps: number, outA: Float64Array, outL: Float64Array): number {
  let n = 0, ra = -1, rl = 0;
  for (let i = 0; i < pfns.length; i++) {
    const a = pfns[i] * ps;
    if (ra + rl === a) rl += ps;
    else {
      if (rl > 0) { outA[n] = ra; outL[n] = rl; n++; }
      ra = a;
      rl = ps;
    }
  }
  if (rl > 0) { outA[n] = ra; outL[n] = rl; n++; }
  return n;
}

/**
 * CPU microseconds per 4 KiB page of first-touching a new 64 MiB array. The memory is fresh only
 * under glibc's default malloc, which maps a block this large with its own mmap every time (its
 * threshold never rises above 32 MiB); under `npm run bench`'s tunables it may be heap memory
 * touched before (measured: 0.16-0.28 us there against 11 us fresh). So the first-call child
 * measures it.
 */
function faultUs(): number {
  const n = 64 * 2 ** 20;
  const s = cpu();
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i += PS) b[i] = 1;
  return ((cpu() - s) * 1000) / (n / PS);
}

/**
 * Run as a script with --first-call: CPU ms of the first pin of a fresh process, then of warm ones,
 * then the first-touch probe (after the pins, so that it does not change what they measure).
 */
function firstCallChild(): void {
  const { mm, va } = agedAnon();
  const s = cpu();
  const l = unwrap(pinUserPhyrs(mm, va, LEN, FOLL_WRITE));
  const firstMs = cpu() - s;
  unpinUserPhyrs(l);
  const warmMs = median(() => unwrap(pinUserPhyrs(mm, va, LEN, FOLL_WRITE)), (x) => unpinUserPhyrs(x), 5, cpu);
  process.stdout.write(`${JSON.stringify({ firstMs, warmMs, faultUs: faultUs() })}\n`);
}

/**
 * Spawns the fresh process (glibc's default malloc: defaultMallocEnv says why); its first-call and
 * warm times in ms, and its first-touch cost per 4 KiB in us.
 */
function firstCall(): { firstMs: number; warmMs: number; faultUs: number } {
  const script = fileURLToPath(import.meta.url);
  const r = spawnSync(process.execPath, ['--import', 'tsx', script, '--first-call'], { encoding: 'utf8', maxBuffer: 1 << 20, env: defaultMallocEnv() });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  if (r.status !== 0 || !line.startsWith('{')) throw new Error(`first-call child failed (status ${r.status}): ${r.stderr}`);
  return JSON.parse(line) as { firstMs: number; warmMs: number; faultUs: number };
}

export default function gupBench(): BenchSection {
  const fresh = firstCall();
  const { mm, va } = agedAnon();

  let entries = 0;
  const phyrMs = median(() => unwrap(pinUserPhyrs(mm, va, LEN, FOLL_WRITE)), (l) => { entries = l.count; unpinUserPhyrs(l); });
  const phyrCpuMs = median(() => unwrap(pinUserPhyrs(mm, va, LEN, FOLL_WRITE)), (l) => unpinUserPhyrs(l), 5, cpu);
  const gc = (globalThis as { gc?: () => void }).gc ?? ((): void => {});
  const phyrGcCpuMs = median(() => unwrap(pinUserPhyrs(mm, va, LEN, FOLL_WRITE)), (l) => { unpinUserPhyrs(l); gc(); }, 5, cpu);
  const lists: PhyrList[] = [];
  for (let i = 0; i < 3; i++) lists.push(unwrap(pinUserPhyrs(mm, va, LEN, FOLL_WRITE)));
  const unpinMs = median(() => { const l = lists.pop(); if (l) unpinUserPhyrs(l); }, () => {}, 2);
  const pageMs = median(() => unwrap(pinUserPages(mm, va, PAGES, FOLL_WRITE)), (p) => unpinUserPages(p), 3);

  // Baseline: the bare coalescing loop over the same pfns in the same order.
  const pa = unwrap(pinUserPages(mm, va, PAGES, 0));
  const pfns = pa.pfns.slice();
  unpinUserPages(pa);
  const outA = new Float64Array(PAGES), outL = new Float64Array(PAGES);
  let bareRuns = 0;
  const bareMs = median(() => { bareRuns = bareCoalesce(pfns, PS, outA, outL); }, () => {}, 5);
  const bareCpuMs = median(() => { bareRuns = bareCoalesce(pfns, PS, outA, outL); }, () => {}, 5, cpu);
  if (bareRuns !== entries) throw new Error(`bare loop found ${bareRuns} runs, pinUserPhyrs ${entries}`);

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

  const rate = (ms: number): number => PAGES / (ms / 1000);
  return {
    title: 'GUP: pinUserPhyrs vs pinUserPages (src/mm)',
    rows: [
      { name: 'pinUserPhyrs 16 GiB aged 4 KiB anon (pin only, warm)', value: rate(phyrMs), unit: 'pages/s',
        target: { op: '>=', value: 20e6 }, note: `${entries} entries for ${PAGES} pages, ${phyrMs.toFixed(1)} ms` },
      { name: 'bare Float64Array coalescing loop, same pfns', value: rate(bareMs), unit: 'pages/s', note: `${bareMs.toFixed(1)} ms` },
      { name: 'pinUserPhyrs warm / bare loop (CPU time)', value: bareCpuMs / phyrGcCpuMs, unit: 'x', target: { op: '>=', value: 0.08 },
        note: `${phyrGcCpuMs.toFixed(1)} vs ${bareCpuMs.toFixed(1)} CPU ms; wall ${(bareMs / phyrMs).toFixed(3)}x` },
      { name: 'the same without a GC between pins', value: bareCpuMs / phyrCpuMs, unit: 'x',
        note: `${phyrCpuMs.toFixed(1)} CPU ms (with npm run bench's malloc tunables the lists reuse heap memory either way);`
          + ` a first touch of fresh memory costs ${fresh.faultUs.toFixed(2)} us of CPU per 4 KiB`
          + ' here (a new 64 MiB array in a child process with glibc\'s default malloc)' },
      { name: 'pinUserPhyrs first call in a fresh process / warm (CPU time)', value: fresh.warmMs / fresh.firstMs, unit: 'x',
        target: { op: '>=', value: 0.5 }, note: `first ${fresh.firstMs.toFixed(1)}, warm ${fresh.warmMs.toFixed(1)} CPU ms, child process with glibc's default malloc` },
      { name: 'unpinUserPhyrs 16 GiB aged 4 KiB anon', value: rate(unpinMs), unit: 'pages/s', note: `${unpinMs.toFixed(1)} ms` },
      { name: 'pinUserPages 16 GiB aged 4 KiB anon (reference, pin only)', value: rate(pageMs), unit: 'pages/s',
        note: `${pageMs.toFixed(1)} ms; ${(PAGES * 8 / 2 ** 20).toFixed(1)} MiB of page pointers vs ${(entries * 16 / 2 ** 20).toFixed(1)} MiB of phyrs` },
      { name: 'pinUserPhyrs+unpin 1 TiB of 1 GiB hugetlb', value: hugeMs, unit: 'ms', target: { op: '<=', value: 10 }, note: `${hugeEntries} entries` },
      { name: 'createMmMachine 1 TiB aged', value: createMs, unit: 'ms', target: { op: '<=', value: 1000 } },
    ],
  };
}

if (process.argv.includes('--first-call') && import.meta.url === pathToFileURL(process.argv[1]).href) firstCallChild();
