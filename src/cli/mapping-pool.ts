// What it is: the mapping section of `phyr compare` on worker threads. Each configuration builds its
// own machine (scenario/mapping.ts: runMappingConfig), so configurations are independent: a pool of
// workers takes them one at a time, in report order, and the rows come back in that order whatever
// order the configurations finish in. The report is the one a single thread makes, apart from the
// times.
//
// The workers run the TypeScript sources as the main thread does: each registers tsx's ESM loader
// (tsx/esm/api) and imports mapping-worker.ts. Measured on this machine, per worker: about 0.6 s of
// CPU to start, and then a configuration takes the CPU time it takes in the main thread. tsx's
// CommonJS loader starts faster (0.35 s) but its modules run a configuration about 40% slower (every
// call into another module goes through an export getter), so it loses from the first configuration
// on.

import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { MappingConfigRunner, MappingRow } from '../scenario/index.ts';
import type { WorkerJob, WorkerMessage } from './mapping-worker.ts';

/** Most workers the default --jobs starts (each holds a machine of --ram GiB: about 350 MB for 64). */
export const MAX_DEFAULT_JOBS = 4;

/**
 * The default number of workers for `configs` configurations: one per CPU, at most MAX_DEFAULT_JOBS
 * and at most one per configuration; 0 (all in the main thread) on a single CPU, where workers only
 * add their start-up time.
 */
export function defaultJobs(configs: number, cpus: number = availableParallelism()): number {
  if (cpus < 2) return 0;
  return Math.max(0, Math.min(configs, cpus, MAX_DEFAULT_JOBS));
}

/** The error a worker reported, as the same kind of Error (RangeError and TypeError are usage errors in the CLI). */
function revive(m: { name: string; message: string; stack?: string }): Error {
  const e = m.name === 'RangeError' ? new RangeError(m.message) : m.name === 'TypeError' ? new TypeError(m.message) : new Error(m.message);
  if (m.stack !== undefined) e.stack = m.stack;
  return e;
}

/** The URL of tsx's ESM register API, or null when tsx cannot be found. */
function tsxEsmApi(): string | null {
  try {
    return import.meta.resolve('tsx/esm/api');
  } catch {
    return null;
  }
}

/** A pool of mapping workers; close() ends them (call it once the report is done or failed). */
export interface MappingPool {
  readonly run: MappingConfigRunner;
  close(): Promise<void>;
}

/**
 * A pool of `jobs` workers (at least 1) for runCompareAsync, or null when workers cannot load the
 * sources (tsx not found): the caller then runs everything in this thread.
 */
export function createMappingPool(jobs: number): MappingPool | null {
  if (!Number.isSafeInteger(jobs) || jobs < 1) throw new RangeError(`jobs must be an integer >= 1, got ${String(jobs)}`);
  const api = tsxEsmApi();
  if (api === null) return null;
  const entry = new URL('./mapping-worker.ts', import.meta.url).href;
  // An eval'd worker is a CommonJS script; its dynamic import() loads ESM.
  const boot = `import(${JSON.stringify(api)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(entry)}); });\n`;
  const workers: Worker[] = [];
  let closed = false;

  const run: MappingConfigRunner = (o, configs, onStep) => new Promise<MappingRow[][]>((resolve, reject) => {
    if (closed) {
      reject(new Error('the mapping pool is closed'));
      return;
    }
    const results: MappingRow[][] = new Array<MappingRow[]>(configs.length);
    let next = 0;
    let finished = 0;
    let failed = false;
    const fail = (e: Error): void => {
      if (failed) return;
      failed = true;
      reject(e);
    };
    const give = (w: Worker): void => {
      if (next < configs.length) {
        const job: WorkerJob = { id: next, o, name: configs[next] };
        next++;
        w.postMessage(job);
      }
    };
    const n = Math.min(jobs, configs.length);
    if (n === 0) {
      resolve(results);
      return;
    }
    for (let k = 0; k < n; k++) {
      const w = new Worker(boot, { eval: true });
      workers.push(w);
      let busy = true;
      w.on('message', (m: WorkerMessage) => {
        if (m.type === 'step') {
          onStep(m.label);
        } else if (m.type === 'rows') {
          results[m.id] = m.rows;
          finished++;
          busy = false;
          if (finished === configs.length) resolve(results);
          else if (next < configs.length) {
            busy = true;
            give(w);
          }
        } else {
          fail(revive(m));
        }
      });
      w.on('error', (e) => fail(e instanceof Error ? e : new Error(String(e))));
      w.on('exit', (code) => {
        if (busy && !closed) fail(new Error(`a mapping worker exited with code ${code} before its configuration was done`));
      });
      give(w);
    }
  });

  return {
    run,
    async close(): Promise<void> {
      closed = true;
      await Promise.all(workers.map((w) => w.terminate()));
      workers.length = 0;
    },
  };
}
