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
