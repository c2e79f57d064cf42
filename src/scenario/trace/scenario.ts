// traceBuffer: the address trace of a scenario's buffer at the runner's current step, with every
// live mapping of that buffer (directly or through its pins).

import { ScenarioRunner, ioasHeldRuns, type MappingState, type RunOptions, type Scenario } from '../file/index.ts';
import { traceRange, type TraceMapping } from './buffer.ts';
import type { TraceIoasMapping } from './ioas.ts';
import type { BufferTrace } from './types.ts';

/** What traceBuffer takes besides the buffer and offset. */
export interface TraceBufferOptions {
  /** Also follow the mappings of the buffer that were unmapped already (default false). */
  readonly unmapped?: boolean;
}

/** The mappings of buffer `name` (mapped directly or through one of its pins), live ones in mapping order, then (opts.unmapped) unmapped ones. */
export function mappingsOf(runner: ScenarioRunner, name: string, opts: TraceBufferOptions = {}): TraceMapping[] {
  const out: TraceMapping[] = [];
  const add = (m: MappingState, unmapped: boolean): void => {
    const pin = runner.pins.get(m.source);
    const buffer = (m as { buffer?: string }).buffer ?? (pin !== undefined ? pin.buffer : m.source);
    if (buffer !== name) return;
    out.push({ name: m.name, device: m.device, method: m.method, dir: m.dir, offset: m.offset, len: m.len, segments: m.segments, handle: m.handle, unmapped });
  };
  for (const m of runner.mappings.values()) if (m.live) add(m, false);
  if (opts.unmapped === true) for (const m of runner.unmappedMappings.values()) add(m, true);
  return out;
}

/**
 * The IOAS mappings (ioas-map, ioas-copy) of buffer `name`: live ones in mapping order, then
 * (opts.unmapped) those after their ioas-unmap. A copy over several buffers (or over one buffer's
 * bytes out of order) is listed once per piece of this buffer it maps, each at its offset in the
 * buffer and its IOVA.
 */
export function ioasMappingsOf(runner: ScenarioRunner, name: string, opts: TraceBufferOptions = {}): TraceIoasMapping[] {
  const out: TraceIoasMapping[] = [];
  for (const m of runner.ioasMappings.values()) {
    // the IOAS the mapping went into (a later IOAS may have its name)
    const obj = runner.ioasObjectOfMapping(m.name);
    const alive = obj !== undefined && obj.alive ? obj : null;
    let at = 0;
    for (const p of m.pieces) {
      const iova = m.iova + BigInt(at);
      at += p.len;
      if (p.buffer !== name) continue;
      // a range unmap may have taken only some areas of a mapping (a copy is several): the runs its
      // IOAS's areas still hold are live, the others unmapped
      const runs = m.live ? [{ off: 0, len: p.len, held: true }] : ioasHeldRuns(alive, iova, p.len);
      for (const r of runs) {
        if (!r.held && opts.unmapped !== true) continue;
        out.push({
          name: m.name, ioas: m.ioas, object: alive, offset: p.offset + r.off, len: r.len, iova: iova + BigInt(r.off),
          unmapped: !r.held, detached: obj !== undefined ? runner.ioasDetachedDevices(obj) : [], nowOn: runner.ioasNameOfDevice.bind(runner),
        });
      }
    }
  }
  // live first, as the device mappings
  return [...out.filter((m) => m.unmapped !== true), ...out.filter((m) => m.unmapped === true)];
}

/**
 * traceBuffer(runner, bufferName, offset?): every address of byte `offset` of the buffer (or of the
 * whole buffer, in runs) at the runner's current step: the CPU side and each live device mapping
 * (with opts.unmapped, also where the old DMA addresses of its unmapped mappings lead now).
 * @throws RangeError for an unknown or unmapped buffer, or an offset outside it.
 */
export function traceBuffer(runner: ScenarioRunner, bufferName: string, offset?: number, opts: TraceBufferOptions = {}): BufferTrace {
  const b = runner.buffers.get(bufferName);
  if (b === undefined) {
    const known = [...runner.buffers.keys()];
    throw new RangeError(`buffer ${JSON.stringify(bufferName)} is not a buffer of this scenario${known.length > 0 ? ` (buffers: ${known.join(', ')})` : ' (it has none yet)'}`);
  }
  if (!b.live) throw new RangeError(`buffer ${JSON.stringify(bufferName)} is not mapped at this step (it was unmapped)`);
  return traceRange({
    machine: runner.machine, mm: runner.processes.get(b.process)!, buffer: b.name, process: b.process, va: b.va, len: b.len,
    mappings: mappingsOf(runner, bufferName, opts), ioasMappings: ioasMappingsOf(runner, bufferName, opts), afterStep: runner.index - 1,
  }, offset);
}

/**
 * The step after which `phyr trace` traces `buffer` by default: the last step after which some live
 * mapping of the buffer exists (so a scenario that unmaps at its end is traced while mapped), else
 * the last step after which the buffer is mmapped, else null (no step mmaps it). Runs the scenario
 * once on a runner of its own.
 */
export function defaultTraceStep(scenario: Scenario, buffer: string, opts: RunOptions = {}): number | null {
  const r = new ScenarioRunner(scenario, opts);
  let mapped: number | null = null;
  let live: number | null = null;
  for (let res = r.step(); res !== null; res = r.step()) {
    const b = r.buffers.get(buffer);
    if (b === undefined || !b.live) continue;
    live = res.index;
    if (mappingsOf(r, buffer).length > 0 || ioasMappingsOf(r, buffer).length > 0) mapped = res.index;
  }
  return mapped ?? live;
}
