// Benchmark harness: each bench module measures its figures side by side in one run and returns
// rows with a target, so run.ts can print them with ratios and a verdict. Never part of npm test.

export interface BenchRow {
  /** What was measured, e.g. 'pinUserPhyrs 16 GiB aged 4 KiB anon'. */
  readonly name: string;
  readonly value: number;
  /** Unit of value: 'pages/s', 'ms', 'MiB', 'x', 'ns/page', 'allocs/s'. */
  readonly unit: string;
  /** Target, e.g. { op: '>=', value: 20e6 } ; omitted for figures printed for reference. */
  readonly target?: { readonly op: '>=' | '<='; readonly value: number };
  /** Extra text: the baseline it is compared with, the anchor, the ratio. */
  readonly note?: string;
}

export interface BenchSection {
  readonly title: string;
  readonly rows: readonly BenchRow[];
}

export type BenchModule = () => Promise<BenchSection> | BenchSection;

/** Median wall time in ms of fn over `runs` runs after one warm-up. */
export function timeMs(fn: () => void, runs = 5): number {
  fn();
  const t: number[] = [];
  for (let i = 0; i < runs; i++) {
    const s = process.hrtime.bigint();
    fn();
    t.push(Number(process.hrtime.bigint() - s) / 1e6);
  }
  t.sort((a, b) => a - b);
  return t[Math.floor(t.length / 2)];
}

/** Heap used now, after forcing GC when node runs with --expose-gc. */
export function heapUsed(): number {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) { g(); g(); }
  return process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
}

export function meets(row: BenchRow): boolean | undefined {
  if (!row.target) return undefined;
  return row.target.op === '>=' ? row.value >= row.target.value : row.value <= row.target.value;
}

/**
 * The environment for a first-call child process: this one's, without GLIBC_TUNABLES, so that the
 * child's malloc runs with glibc's defaults. A first-call row compares a fresh process's first call
 * with its warm calls to measure how early the JIT optimises the path. With `npm run bench`'s malloc
 * settings (package.json; docs/cli.md) warm calls reuse the memory earlier calls freed while the
 * first call must first-touch fresh pages, which this VM makes slow, so the ratio would mix the
 * allocator's warm-up into the JIT's; with glibc's defaults warm calls map fresh memory for their
 * large arrays as the first does (in part: glibc raises its mmap threshold as large blocks are
 * freed, so some warm calls get reused heap memory instead).
 */
export function defaultMallocEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.GLIBC_TUNABLES;
  return env;
}
