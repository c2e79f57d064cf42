// Run by dma.bench.ts in a fresh process (node --import tsx bench/first-call-two-step.ts): builds
// the DMA bench machine, times the FIRST two-step map of its 1 GiB list (nothing in this process
// has run the link path before), then the same map warm, and prints one JSON line: wall time,
// process CPU time (every thread: the JIT's background compiles included) and, on Linux, the main
// thread's own CPU time. Warm is the median of calls 3 to 9: the second call still pays for
// re-optimisation after the first unmap (object shapes the unmap path changes).
import { readFileSync } from 'node:fs';
import { dmaBenchSetup, twoStepMap, twoStepUnmap } from './two-step-setup.ts';

const { dev, list } = dmaBenchSetup();

/** The main thread's time on a CPU in ms (Linux schedstat), or NaN. */
function mainThreadMs(): number {
  try {
    return Number(readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
  } catch {
    return NaN;
  }
}

function timeOne(): { ms: number; cpuMs: number; mainMs: number } {
  const m0 = mainThreadMs();
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const x = twoStepMap(dev, list);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const c = process.cpuUsage(c0);
  const mainMs = mainThreadMs() - m0;
  twoStepUnmap(dev, x);
  return { ms, cpuMs: (c.user + c.system) / 1e3, mainMs };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const first = timeOne();
const rest = Array.from({ length: 8 }, timeOne).slice(1);
console.log(JSON.stringify({
  pages: list.totalLen / 4096, entries: list.count,
  firstMs: first.ms, firstCpuMs: first.cpuMs, firstMainMs: first.mainMs,
  warmMs: median(rest.map((r) => r.ms)), warmCpuMs: median(rest.map((r) => r.cpuMs)), warmMainMs: median(rest.map((r) => r.mainMs)),
}));
