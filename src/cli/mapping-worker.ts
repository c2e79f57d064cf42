// What it is: the body of a mapping worker thread (see mapping-pool.ts): takes configurations of the
// mapping section from the shared counter until none is left, and posts each one's rows back, with a
// step message after each step for the progress bar.

import { parentPort } from 'node:worker_threads';
import { runMappingConfig, type MappingConfigName, type MappingOptions, type MappingRow } from '../scenario/index.ts';

/**
 * The pool's one message: the configurations of a report, the order to take them in (indices into
 * configs), and how many have been taken (an Int32 the workers and the main thread advance with
 * Atomics.add).
 */
export interface WorkerTask {
  readonly o: MappingOptions;
  readonly configs: readonly MappingConfigName[];
  readonly order: readonly number[];
  readonly next: SharedArrayBuffer;
}

/** Messages to the pool: a step done, a configuration's rows, or the error it threw. */
export type WorkerMessage =
  | { readonly type: 'step'; readonly label: string }
  | { readonly type: 'rows'; readonly id: number; readonly rows: MappingRow[] }
  | { readonly type: 'error'; readonly id: number; readonly name: string; readonly message: string; readonly stack?: string };

const port = parentPort;
if (port === null) throw new Error('mapping-worker.ts runs only as a worker thread (mapping-pool.ts starts it)');

port.on('message', (task: WorkerTask) => {
  const next = new Int32Array(task.next);
  const n = task.configs.length;
  for (let k = Atomics.add(next, 0, 1); k < n; k = Atomics.add(next, 0, 1)) {
    const id = task.order[k];
    let msg: WorkerMessage;
    try {
      const rows = runMappingConfig(task.o, task.configs[id], (label) => port.postMessage({ type: 'step', label } satisfies WorkerMessage));
      msg = { type: 'rows', id, rows };
    } catch (e) {
      const err = e instanceof Error ? e : new Error(String(e));
      msg = { type: 'error', id, name: err.name, message: err.message, ...(err.stack !== undefined ? { stack: err.stack } : {}) };
    }
    port.postMessage(msg);
  }
});
