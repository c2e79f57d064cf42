// What it is: the mapping section of `phyr compare` on worker threads. Each configuration builds its
// own machine (scenario/mapping.ts: runMappingConfig), so configurations are independent: the
// workers, and the main thread once it has measured the layouts, take the next configuration from a
// shared counter (Atomics, so that a busy main thread never holds a worker up), and the rows come
// back in report order whatever order the configurations finish in. The report is the one a single
// thread makes, apart from the times.
//
// The workers run the code the main thread runs: from the bundle `npm run build` writes (what
// `npm start` runs), each starts from the bundled worker entry beside main.js; from the TypeScript
// sources (bin/phyr.mjs, `npm run phyr`), each registers tsx's ESM loader (tsx/esm/api) and imports
// mapping-worker.ts, about 0.6 s of CPU per worker to start (tsx's CommonJS loader starts faster,
// 0.35 s, but its modules run a configuration about 40% slower: every call into another module
// goes through an export getter). After that a configuration takes the CPU time it takes in the
// main thread. Workers start when the pool is created (main.ts creates it before it loads the
// report's modules), so their start-up overlaps the main thread's.

import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
// Types only: main.ts starts the pool before it loads the report's modules.
import type { MappingConfigName, MappingConfigRunner, MappingRow } from '../scenario/index.ts';
import type { WorkerMessage, WorkerTask } from './mapping-worker.ts';

/** Most workers the default --jobs starts (each holds a machine of --ram GiB: about 350 MB for 64). */
export const MAX_DEFAULT_JOBS = 4;

/**
 * The default number of workers for `configs` configurations, besides the main thread (which takes
 * configurations too once the layouts are measured): one per CPU but the main thread's, at most
 * MAX_DEFAULT_JOBS and one per configuration; so 0 (all in the main thread) on a single CPU. More
 * threads than CPUs cost CPU time and gain nothing: measured on 2 CPUs, 2 workers took 10-15% more
 * CPU time and longer than 1 (each isolate compiles the hot code and collects its garbage itself).
 */
export function defaultJobs(configs: number, cpus: number = availableParallelism()): number {
  return Math.max(0, Math.min(configs, cpus - 1, MAX_DEFAULT_JOBS));
}

/**
 * The configurations the threads take first: the costliest first, so that the last one to finish is
 * a cheap one and no thread waits long for the others (CPU seconds each with the default buffers,
 * warm, measured on this machine: untrusted 1.9, p2p-host-bridge 1.9, p2p-switch 1.8, iommu-strict
 * 1.6, iommu-lazy 1.5, no-iommu 1.0, force-bounce 0.5). Only the order of the work: the rows come
 * back in report order.
 */
export const RUN_FIRST: readonly MappingConfigName[] = [
  'untrusted', 'p2p-host-bridge', 'p2p-switch', 'iommu-strict', 'iommu-lazy', 'no-iommu', 'non-coherent', 'force-bounce',
];

/** Indices into configs in the order the threads take them (RUN_FIRST, then the rest in report order). */
export function runOrder(configs: readonly MappingConfigName[]): number[] {
  const rank = (c: MappingConfigName): number => {
    const r = RUN_FIRST.indexOf(c);
    return r < 0 ? RUN_FIRST.length : r;
  };
  return configs.map((_, i) => i).sort((a, b) => rank(configs[a]) - rank(configs[b]) || a - b);
}

/** The error a worker reported, as the same kind of Error (RangeError and TypeError are usage errors in the CLI). */
function revive(m: { name: string; message: string; stack?: string }): Error {
  const e = m.name === 'RangeError' ? new RangeError(m.message) : m.name === 'TypeError' ? new TypeError(m.message) : new Error(m.message);
  if (m.stack !== undefined) e.stack = m.stack;
  return e;
}

/**
 * true when this code runs from the bundle `npm run build` writes (dist/*.js): the workers then
 * start from the bundled worker entry, without tsx; from the sources (src/*.ts) they load through tsx.
 */
const BUNDLED = import.meta.url.endsWith('.js');

/** The URL of tsx's ESM register API, or null when tsx cannot be found. */
function tsxEsmApi(): string | null {
  try {
    return import.meta.resolve('tsx/esm/api');
  } catch {
    return null;
  }
}

/**
 * Starts `jobs` worker threads running the CLI module `name` (mapping-worker, sweep-worker): from the
 * bundle when this code is bundled, else through tsx's ESM loader; null when tsx cannot be found.
 */
export function startWorkers(name: string, jobs: number): Worker[] | null {
  const workers: Worker[] = [];
  if (BUNDLED) {
    // the build (tools/build.mjs) writes the worker's entry beside this file's chunk
    const entry = new URL(`./${name}.js`, import.meta.url);
    for (let k = 0; k < jobs; k++) workers.push(new Worker(entry));
  } else {
    const api = tsxEsmApi();
    if (api === null) return null;
    const entry = new URL(`./${name}.ts`, import.meta.url).href;
    // An eval'd worker is a CommonJS script; its dynamic import() loads ESM.
    const boot = `import(${JSON.stringify(api)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(entry)}); });\n`;
    for (let k = 0; k < jobs; k++) workers.push(new Worker(boot, { eval: true }));
  }
  return workers;
}

/** A pool of mapping workers. close() ends them: call it once the report is done or has failed. */
export interface MappingPool extends MappingConfigRunner {
  /** Workers in the pool. */
  readonly size: number;
  close(): Promise<void>;
}

/**
 * A pool of `jobs` workers (at least 1), started now, for one runCompareAsync; or null when workers
 * cannot load the sources (tsx not found): the caller then runs everything in this thread.
 */
export function createMappingPool(jobs: number): MappingPool | null {
  if (!Number.isSafeInteger(jobs) || jobs < 1) throw new RangeError(`jobs must be an integer >= 1, got ${String(jobs)}`);
  const workers = startWorkers('mapping-worker', jobs);
  if (workers === null) return null;
  let closed = false;
  let started = false;
  // Set by run(): the main thread's share of the work (helpHere).
  let local: ((runConfig: Parameters<NonNullable<MappingConfigRunner['helpHere']>>[0]) => void) | null = null;

  return {
    size: jobs,
    run(o, configs, onStep) {
      return new Promise<MappingRow[][]>((resolve, reject) => {
        if (closed || started) {
          reject(new Error(closed ? 'the mapping pool is closed' : 'the mapping pool runs one report only'));
          return;
        }
        started = true;
        const n = configs.length;
        const results: MappingRow[][] = new Array<MappingRow[]>(n);
        let finished = 0;
        let failed = false;
        const fail = (e: Error): void => {
          if (failed) return;
          failed = true;
          reject(e);
        };
        const done = (id: number, rows: MappingRow[]): void => {
          results[id] = rows;
          finished++;
          if (finished === n && !failed) resolve(results);
        };
        if (n === 0) {
          resolve(results);
          return;
        }
        // How many configurations have been taken (in runOrder), shared by the workers and this thread.
        const next = new Int32Array(new SharedArrayBuffer(4));
        const order = runOrder(configs);
        const task: WorkerTask = { o, configs, order, next: next.buffer as SharedArrayBuffer };
        for (const w of workers) {
          w.on('message', (m: WorkerMessage) => {
            if (m.type === 'step') onStep(m.label);
            else if (m.type === 'rows') done(m.id, m.rows);
            else fail(revive(m));
          });
          w.on('error', (e) => fail(e instanceof Error ? e : new Error(String(e))));
          w.on('exit', (code) => {
            if (!closed && finished < n) fail(new Error(`a mapping worker exited with code ${code} before the mapping section was done`));
          });
          w.postMessage(task);
        }
        local = (runMappingConfig) => {
          for (let k = Atomics.add(next, 0, 1); k < n && !failed; k = Atomics.add(next, 0, 1)) {
            const id = order[k];
            try {
              done(id, runMappingConfig(o, configs[id], onStep));
            } catch (e) {
              fail(e instanceof Error ? e : new Error(String(e)));
            }
          }
        };
      });
    },
    helpHere(runConfig) {
      const f = local;
      local = null;
      f?.(runConfig);
    },
    async close(): Promise<void> {
      closed = true;
      await Promise.all(workers.map((w) => w.terminate()));
    },
  };
}

/**
 * Whether argv (of main.ts) looks like a `phyr compare` that runs the mapping section with the
 * default number of workers, so that main.ts may start them before it loads the report's modules.
 * A guess, not a parse: a wrong guess costs time, never output (runCliAsync uses the early pool only
 * when the parsed options want as many workers, and closes it either way).
 */
export function wantsDefaultWorkers(argv: readonly string[]): boolean {
  return argv[0] === 'compare' && !argv.some((a) => /^(--no-mapping|--jobs|--configs|--help|-h|--version|-V)(=|$)/.test(a));
}
