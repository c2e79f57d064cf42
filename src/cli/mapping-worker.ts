// What it is: the body of a mapping worker thread (see mapping-pool.ts): runs one configuration of
// the mapping section per job it is sent and posts the rows back, with a step message after each
// step for the progress bar.

import { parentPort } from 'node:worker_threads';
import { runMappingConfig, type MappingConfigName, type MappingOptions, type MappingRow } from '../scenario/index.ts';

/** A job from the pool: one configuration of the mapping section. */
export interface WorkerJob {
  readonly id: number;
  readonly o: MappingOptions;
  readonly name: MappingConfigName;
}

/** Messages to the pool: a step done, a configuration's rows, or the error it threw. */
export type WorkerMessage =
  | { readonly type: 'step'; readonly label: string }
  | { readonly type: 'rows'; readonly id: number; readonly rows: MappingRow[] }
  | { readonly type: 'error'; readonly id: number; readonly name: string; readonly message: string; readonly stack?: string };

const port = parentPort;
if (port === null) throw new Error('mapping-worker.ts runs only as a worker thread (mapping-pool.ts starts it)');

port.on('message', (job: WorkerJob) => {
  let msg: WorkerMessage;
  try {
    const rows = runMappingConfig(job.o, job.name, (label) => port.postMessage({ type: 'step', label } satisfies WorkerMessage));
    msg = { type: 'rows', id: job.id, rows };
  } catch (e) {
    const err = e instanceof Error ? e : new Error(String(e));
    msg = { type: 'error', id: job.id, name: err.name, message: err.message, ...(err.stack !== undefined ? { stack: err.stack } : {}) };
  }
  port.postMessage(msg);
});
