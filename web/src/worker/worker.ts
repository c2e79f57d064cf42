// The model worker: runs the scenario and answers the page's questions about its machine, so that
// a 1 GiB example never blocks the page. One request at a time, answered in order.

import type { Answers, Envelope, Reply, Request } from '../protocol.ts';
import { ViewModel } from './model.ts';
import { traceOf } from './trace.ts';

interface WorkerScope {
  onmessage: ((ev: MessageEvent<Envelope>) => void) | null;
  postMessage(msg: Reply): void;
}
const scope = self as unknown as WorkerScope;

let vm: ViewModel | null = null;

function need(): ViewModel {
  if (vm === null) throw new Error('no scenario loaded');
  return vm;
}

function handle(req: Request): Answers[keyof Answers] {
  switch (req.type) {
    case 'load':
      vm = new ViewModel(req.text, req.source, {
        ...(req.config !== undefined ? { config: req.config } : {}), ...(req.seed !== undefined ? { seed: req.seed } : {}),
      });
      return vm.snapshot();
    case 'step':
      need().step();
      return need().snapshot();
    case 'run': {
      const v = need();
      while (v.step()) { /* every step */ }
      return v.snapshot();
    }
    case 'reset':
      need().reset();
      return need().snapshot();
    case 'layouts':
      return need().layouts(req.buffer);
    case 'rows':
      return need().rows(req.source, req.start, req.count);
    case 'table':
      return need().table(req.device, req.pfn);
    case 'bytes':
      return need().bytes(req.buffer, req.offset, req.len);
    case 'trace': {
      const t = traceOf(need(), req.buffer, req.offset);
      need().setTrace(t.points);
      return t;
    }
    case 'clearTrace':
      need().setTrace([]);
      return null;
    case 'p2p':
      return need().p2p(req.provider, req.client);
  }
}

scope.onmessage = (ev) => {
  const { id, req } = ev.data;
  try {
    scope.postMessage({ id, ok: true, value: handle(req) });
  } catch (e) {
    scope.postMessage({ id, ok: false, error: e instanceof Error ? e.message : String(e) });
  }
};
