// traceBuffer: the address trace of a scenario's buffer at the runner's current step, with every
// live mapping of that buffer (directly or through its pins).

import type { ScenarioRunner } from '../file/index.ts';
import { traceRange, type TraceMapping } from './buffer.ts';
import type { BufferTrace } from './types.ts';

/** The live mappings of buffer `name`: mapped directly or through one of its pins, in mapping order. */
export function liveMappingsOf(runner: ScenarioRunner, name: string): TraceMapping[] {
  const out: TraceMapping[] = [];
  for (const m of runner.mappings.values()) {
    if (!m.live) continue;
    const pin = runner.pins.get(m.source);
    const buffer = pin !== undefined ? pin.buffer : m.source;
    if (buffer !== name) continue;
    out.push({ name: m.name, device: m.device, method: m.method, dir: m.dir, offset: m.offset, len: m.len, segments: m.segments, handle: m.handle });
  }
  return out;
}

/**
 * traceBuffer(runner, bufferName, offset?): every address of byte `offset` of the buffer (or of the
 * whole buffer, in runs) at the runner's current step: the CPU side and each live device mapping.
 * @throws RangeError for an unknown or unmapped buffer, or an offset outside it.
 */
export function traceBuffer(runner: ScenarioRunner, bufferName: string, offset?: number): BufferTrace {
  const b = runner.buffers.get(bufferName);
  if (b === undefined) {
    const known = [...runner.buffers.keys()];
    throw new RangeError(`buffer ${JSON.stringify(bufferName)} is not a buffer of this scenario${known.length > 0 ? ` (buffers: ${known.join(', ')})` : ' (it has none yet)'}`);
  }
  if (!b.live) throw new RangeError(`buffer ${JSON.stringify(bufferName)} is not mapped at this step (it was unmapped)`);
  return traceRange({
    machine: runner.machine, mm: runner.processes.get(b.process)!, buffer: b.name, process: b.process, va: b.va, len: b.len,
    mappings: liveMappingsOf(runner, bufferName), afterStep: runner.index - 1,
  }, offset);
}
