// Sweeps: one scenario run for every (configuration, seed) pair, each run on its own machine, so runs
// are independent and may go to any thread in any order; a row per run with its counters, in a fixed
// order (configurations as given, seeds ascending), as CSV or JSON.

import { runScenario } from './runner.ts';
import type { Scenario } from './types.ts';

/** One run of a sweep. */
export interface SweepRun {
  /** Configuration name, or null for the base machine. */
  readonly config: string | null;
  readonly seed: number;
}

/** What one run of a sweep produced. */
export interface SweepRow extends SweepRun {
  readonly ok: boolean;
  /** The step that stopped the run, or null. */
  readonly stoppedAt: number | null;
  /** Its errno (or null: it failed a byte or event expectation, or nothing failed). */
  readonly errno: string | null;
  readonly stepsOk: number;
  readonly steps: number;
  readonly tornDown: number;
  readonly dmaDebugLeaks: number;
  /** Counter deltas of the whole run. */
  readonly counters: Readonly<Record<string, number>>;
}

/** Parses "1..100", "5", "1,2,7" or "1..10,20" into ascending distinct seeds. @throws RangeError naming the text. */
export function parseSeeds(text: string): number[] {
  const out = new Set<number>();
  for (const part of text.split(',').map((s) => s.trim()).filter((s) => s !== '')) {
    const m = /^(\d+)(?:\.\.(\d+))?$/.exec(part);
    if (m === null) throw new RangeError(`seeds must be N, A..B or a comma-separated list of them, got ${JSON.stringify(text)}`);
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (!Number.isSafeInteger(a) || !Number.isSafeInteger(b) || b < a || a > 0xffffffff || b > 0xffffffff) {
      throw new RangeError(`seeds must be integers in [0, 2^32 - 1] with A <= B, got ${JSON.stringify(part)}`);
    }
    if (b - a >= 100_000) throw new RangeError(`seeds must name at most 100000 runs, got ${JSON.stringify(part)}`);
    for (let s = a; s <= b; s++) out.add(s);
  }
  if (out.size === 0) throw new RangeError(`seeds must name at least one seed, got ${JSON.stringify(text)}`);
  return [...out].sort((x, y) => x - y);
}

/** The runs of a sweep in row order: each configuration (null: the base machine), every seed. */
export function sweepRuns(configs: ReadonlyArray<string | null>, seeds: readonly number[]): SweepRun[] {
  return configs.flatMap((config) => seeds.map((seed) => ({ config, seed })));
}

/** Runs one run of a sweep. */
export function runSweepRun(scenario: Scenario, run: SweepRun): SweepRow {
  const r = runScenario(scenario, { seed: run.seed, ...(run.config !== null ? { config: run.config } : {}) });
  const stopped = r.stoppedAt !== undefined ? r.steps[r.stoppedAt] : undefined;
  return {
    config: run.config, seed: run.seed, ok: r.ok, stoppedAt: r.stoppedAt ?? null, errno: stopped?.errno ?? null,
    stepsOk: r.steps.filter((s) => s.ok).length, steps: scenario.steps.length, tornDown: r.leaks.tornDown.length,
    dmaDebugLeaks: r.leaks.dmaDebugLeaks, counters: r.counters,
  };
}

/** Runs every run in this thread, in row order. */
export function runSweep(scenario: Scenario, runs: readonly SweepRun[], onRun?: (done: number, total: number) => void): SweepRow[] {
  return runs.map((run, i) => {
    const row = runSweepRun(scenario, run);
    onRun?.(i + 1, runs.length);
    return row;
  });
}

const FIXED = ['config', 'seed', 'ok', 'stoppedAt', 'errno', 'stepsOk', 'steps', 'tornDown', 'dmaDebugLeaks'] as const;

/** The rows as CSV: the fixed columns, then every counter any run moved (sorted; 0 where a run did not). */
export function sweepCsv(rows: readonly SweepRow[]): string {
  const counters = [...new Set(rows.flatMap((r) => Object.keys(r.counters)))].sort();
  const cell = (v: unknown): string => {
    const s = v === null || v === undefined ? '' : String(v);
    return /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  const lines = [[...FIXED, ...counters].join(',')];
  for (const r of rows) lines.push([...FIXED.map((k) => cell(r[k])), ...counters.map((k) => String(r.counters[k] ?? 0))].join(','));
  return `${lines.join('\n')}\n`;
}
