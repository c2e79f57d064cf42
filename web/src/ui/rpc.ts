// The page's end of the worker protocol: call(req) returns the worker's answer or throws its error.

import type { Answers, Envelope, Reply, Request } from '../protocol.ts';

export type Call = <R extends Request>(req: R) => Promise<Answers[R['type']]>;

export function connect(worker: Worker): Call {
  let nextId = 1;
  const waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  worker.onmessage = (ev: MessageEvent<Reply>) => {
    const r = ev.data;
    const w = waiting.get(r.id);
    if (!w) return;
    waiting.delete(r.id);
    if (r.ok) w.resolve(r.value);
    else w.reject(new Error(r.error));
  };
  worker.onerror = (ev) => {
    const e = new Error(`model worker failed: ${ev.message}`);
    for (const w of waiting.values()) w.reject(e);
    waiting.clear();
  };
  return (<R extends Request>(req: R) => new Promise<Answers[R['type']]>((resolve, reject) => {
    const id = nextId++;
    waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
    const env: Envelope = { id, req };
    worker.postMessage(env);
  })) as Call;
}
