// What it is: the body of a sweep worker thread (sweep.ts): parses the scenario text it is sent,
// then takes runs from the shared counter until none is left and posts each run's row back.

import { parentPort } from 'node:worker_threads';
import { parseScenario, runSweepRun, type SweepRow, type SweepRun } from '../scenario/file/index.ts';

/** The sweep's one message to each worker. */
export interface SweepTask {
  readonly text: string;
  readonly source: string;
  readonly format?: 'yaml' | 'json';
  readonly runs: readonly SweepRun[];
  /** How many runs have been taken: an Int32 the workers and the main thread advance with Atomics.add. */
  readonly next: SharedArrayBuffer;
}

export type SweepMessage =
  | { readonly type: 'row'; readonly id: number; readonly row: SweepRow }
  | { readonly type: 'error'; readonly id: number; readonly name: string; readonly message: string };

const port = parentPort;
if (port === null) throw new Error('sweep-worker.ts runs only as a worker thread (sweep.ts starts it)');

port.on('message', (task: SweepTask) => {
  const next = new Int32Array(task.next);
  const scenario = parseScenario(task.text, { source: task.source, ...(task.format ? { format: task.format } : {}) });
  for (let k = Atomics.add(next, 0, 1); k < task.runs.length; k = Atomics.add(next, 0, 1)) {
    let msg: SweepMessage;
    try {
      msg = { type: 'row', id: k, row: runSweepRun(scenario, task.runs[k]) };
    } catch (e) {
      const err = e instanceof Error ? e : new Error(String(e));
      msg = { type: 'error', id: k, name: err.name, message: err.message };
    }
    port.postMessage(msg);
  }
});
