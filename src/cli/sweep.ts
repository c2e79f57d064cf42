// What it is: `phyr sweep FILE --seeds 1..100 [--configs a,b] [--workers N] [--format csv|json]`:
// one run of the scenario per (configuration, seed), on worker threads (node:worker_threads, started
// as the mapping pool starts its workers); rows in a fixed order whatever thread ran them, so the
// output is the same for 1 and N workers. A progress bar on stderr when it is a terminal.

import type { Command } from 'commander';
import { InvalidArgumentError, Option } from 'commander';
import {
  ScenarioError, ScenarioRunner, parseSeeds, runSweep, sweepCsv, sweepRuns, scenarioJson, type Scenario, type SweepRow, type SweepRun,
} from '../scenario/file/index.ts';
import { defaultJobs, startWorkers } from './mapping-pool.ts';
import { ProgressBar, wantProgress, type ProgressStream } from './progress.ts';
import { loadScenarioFile, type ScenarioCliIo } from './run.ts';
import type { SweepMessage, SweepTask } from './sweep-worker.ts';

interface SweepCliOptions {
  seeds: number[];
  configs?: string;
  workers?: number;
  format: 'csv' | 'json';
  progress: boolean;
}

/** The configurations a sweep runs: the --configs list (`all`: every one, `base`: the file's machine alone), default the base machine. */
export function sweepConfigs(scenario: Scenario, arg: string | undefined): Array<string | null> {
  if (arg === undefined) return [null];
  const names = Object.keys(scenario.configs);
  if (arg.trim() === 'all') return names.length > 0 ? names : [null];
  const out: Array<string | null> = [];
  for (const n of arg.split(',').map((s) => s.trim()).filter((s) => s !== '')) {
    const v = n === 'base' ? null : n;
    if (v !== null && !names.includes(v)) {
      throw new ScenarioError([{ path: 'configs', value: n, expected: `base, all or one of: ${names.join(', ')}`, message: `--configs: unknown configuration '${n}' (expected base, all${names.length ? ` or one of: ${names.join(', ')}` : ''})` }], scenario.source);
    }
    if (out.includes(v)) throw new ScenarioError([{ path: 'configs', value: n, expected: 'each configuration once', message: `--configs: '${n}' is listed twice` }], scenario.source);
    out.push(v);
  }
  if (out.length === 0) throw new ScenarioError([{ path: 'configs', value: arg, expected: 'at least one configuration', message: '--configs: empty list' }], scenario.source);
  return out;
}

/** Runs the sweep's runs on `jobs` worker threads (and none here); rows in run order. */
export function runSweepOnWorkers(text: string, source: string, format: 'yaml' | 'json' | undefined, runs: readonly SweepRun[], jobs: number,
  onRun?: (done: number, total: number) => void): Promise<SweepRow[]> | null {
  const workers = startWorkers('sweep-worker', jobs);
  if (workers === null) return null;
  const rows = new Array<SweepRow>(runs.length);
  let finished = 0;
  return new Promise<SweepRow[]>((resolve, reject) => {
    let failed = false;
    const fail = (e: Error): void => {
      if (!failed) {
        failed = true;
        reject(e);
      }
    };
    if (runs.length === 0) {
      resolve(rows);
      return;
    }
    const next = new Int32Array(new SharedArrayBuffer(4));
    const task: SweepTask = { text, source, ...(format ? { format } : {}), runs, next: next.buffer as SharedArrayBuffer };
    for (const w of workers) {
      w.on('message', (m: SweepMessage) => {
        if (m.type === 'error') {
          fail(new Error(`run ${m.id} (${JSON.stringify(runs[m.id])}): ${m.name}: ${m.message}`));
          return;
        }
        rows[m.id] = m.row;
        finished++;
        onRun?.(finished, runs.length);
        if (finished === runs.length) resolve(rows);
      });
      w.on('error', (e) => fail(e instanceof Error ? e : new Error(String(e))));
      w.on('exit', (code) => {
        if (finished < runs.length) fail(new Error(`a sweep worker exited with code ${code} before the sweep was done`));
      });
      w.postMessage(task);
    }
  }).finally(() => Promise.all(workers.map((w) => w.terminate())));
}

const SWEEP_HELP_AFTER = `
Each run builds its own machine from the file (with the configuration applied) and the seed, runs every
step and tears down; the row has the verdict, the step that stopped the run and its errno, what
teardown undid, dma-debug's leak count and every counter (CSV: one column per counter any run moved).
Rows come in a fixed order (configurations as listed, seeds ascending): the output is the same with
--workers 0, 1 or N. The progress bar is drawn on stderr only when it is a terminal (not with CI set).

Examples:
  phyr sweep examples/swiotlb-exhaustion.yaml --seeds 1..100
  phyr sweep examples/untrusted-thunderbolt.yaml --seeds 1..20 --configs all --format json --workers 2
`;

function parseSeedsArg(v: string): number[] {
  try {
    return parseSeeds(v);
  } catch (e) {
    throw new InvalidArgumentError(`${(e as Error).message.replace(/^seeds/, '--seeds')}.`);
  }
}

function parseWorkersArg(v: string): number {
  const n = /^\d+$/.test(v.trim()) ? Number(v.trim()) : NaN;
  if (!Number.isSafeInteger(n) || n > 64) throw new InvalidArgumentError(`--workers must be an integer in [0, 64], got ${JSON.stringify(v)}.`);
  return n;
}

export function addSweepCommand(program: Command, io: ScenarioCliIo & { stderr: ProgressStream & { readonly isTTY?: boolean }; env: NodeJS.ProcessEnv },
  mode: 'sync' | 'workers'): void {
  program
    .command('sweep')
    .description('Run a scenario file once per seed (and configuration) on worker threads; print one row per run with its counters, as CSV or JSON.')
    .argument('<file>', 'the scenario file')
    .requiredOption('--seeds <list>', 'seeds: N, A..B, or a comma-separated list of them (e.g. 1..100)', parseSeedsArg)
    .option('--configs <list>', "comma-separated configurations of the file ('base' = the file's machine as written; 'all' = every config); default: base")
    .option('--workers <n>', 'worker threads (default: one per CPU but one, at most 4, at most one per run); 0 runs in this thread', parseWorkersArg)
    .addOption(new Option('--format <f>', 'output format').choices(['csv', 'json']).default('csv'))
    .option('--no-progress', 'never draw the progress bar')
    .addHelpText('after', SWEEP_HELP_AFTER)
    .action((file: string, o: SweepCliOptions) => {
      let runs: SweepRun[];
      let scenario: Scenario;
      let text: string;
      try {
        ({ scenario, text } = loadScenarioFile(file));
        runs = sweepRuns(sweepConfigs(scenario, o.configs), o.seeds);
        // every configuration must build a machine: check each once before the sweep starts
        for (const c of new Set(runs.map((r) => r.config))) void new ScenarioRunner(scenario, { seed: o.seeds[0], ...(c !== null ? { config: c } : {}) });
      } catch (e) {
        if (e instanceof ScenarioError) {
          io.exit(2, `${e.message}\n`);
          return;
        }
        throw e;
      }
      const bar = wantProgress({ json: false, progress: o.progress }, io.stderr.isTTY, io.env) ? new ProgressBar(io.stderr) : null;
      const onRun = bar ? (d: number, t: number): void => bar.update(d, t, `${d} of ${t} runs`) : undefined;
      const print = (rows: SweepRow[]): void => {
        bar?.done();
        io.out(o.format === 'json' ? `${scenarioJson(rows)}\n` : sweepCsv(rows));
      };
      const here = (): void => {
        try {
          print(runSweep(scenario, runs, onRun));
        } catch (e) {
          bar?.done();
          if (e instanceof ScenarioError) {
            io.exit(2, `${e.message}\n`);
            return;
          }
          throw e;
        }
      };
      const jobs = o.workers ?? defaultJobs(runs.length);
      if (mode === 'sync' || jobs === 0) {
        here();
        return;
      }
      const format = /\.json$/i.test(file) ? 'json' : undefined;
      const p = runSweepOnWorkers(text, file, format, runs, jobs, onRun);
      if (p === null) {
        here();
        return;
      }
      return p.then(print, (e: unknown) => {
        bar?.done();
        const msg = e instanceof Error ? e.message : String(e);
        // a machine a configuration cannot build is a usage error, as in `phyr run`
        if (/problem/.test(msg)) {
          io.exit(2, `${msg}\n`);
          return;
        }
        throw e;
      });
    });
}
