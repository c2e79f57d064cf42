// Run by dma.bench.ts in a fresh process (node --import tsx bench/first-call-map.ts [path]):
// builds the DMA bench machine, times the FIRST map of its 1 GiB list by one DMA mapping path
// (nothing in this process has run a mapping path before), then the same map warm, and prints one
// JSON line: wall time, process CPU time (every thread: the JIT's background compiles included)
// and, on Linux, the main thread's own CPU time. The path: 'two-step' (default: a driver's
// dma_iova_try_alloc, one dma_iova_link per range, dma_iova_sync) or 'phyrs' (dmaMapPhyrs of the
// whole list). Warm is the median of calls 3 to 9: the second call still pays for
// re-optimisation after the first unmap (object shapes the unmap path changes).
import { readFileSync } from 'node:fs';
import { unwrap } from '../src/base/index.ts';
import { DMA_TO_DEVICE, dmaMapPhyrs, dmaUnmapPhyrs } from '../src/dma/index.ts';
import { dmaBenchSetup, twoStepMap, twoStepUnmap } from './two-step-setup.ts';

const path = process.argv[2] ?? 'two-step';
if (path !== 'two-step' && path !== 'phyrs') throw new Error(`path must be two-step or phyrs, got ${path}`);
const { dev, list } = dmaBenchSetup();
const map = path === 'two-step'
  ? (): (() => void) => {
    const x = twoStepMap(dev, list);
    return () => twoStepUnmap(dev, x);
  }
  : (): (() => void) => {
    const mp = unwrap(dmaMapPhyrs(dev, list, DMA_TO_DEVICE, 0));
    return () => dmaUnmapPhyrs(dev, mp, DMA_TO_DEVICE, 0);
  };

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
  const unmap = map();
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  const c = process.cpuUsage(c0);
  const mainMs = mainThreadMs() - m0;
  unmap();
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
