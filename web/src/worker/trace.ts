// The trace of one byte for the page: the scenario layer's trace (the same data `phyr trace` prints)
// when it is there, else the view's own walk (user VA, physical address, DMA addresses, table entries).

import type { TraceAnswer } from '../protocol.ts';
import type { ViewModel } from './model.ts';

export function traceOf(vm: ViewModel, buffer: string, offset: number): TraceAnswer {
  const t = vm.basicTrace(buffer, offset);
  return { buffer, offset, text: t.text, json: null, points: t.points };
}
