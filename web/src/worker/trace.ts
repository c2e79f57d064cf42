// The trace of one byte for the page: the scenario layer's address trace (traceBuffer, the data and
// text `phyr trace` prints), turned into the points every panel marks: user VA, physical address,
// each mapping's DMA address (an IOVA behind an IOMMU), the page-table entries walked, and where the
// device's access lands (a swiotlb slot when bounced); for an IOAS mapping, its IOVA and its
// hw_pagetable's walk for each device attached to it.

import {
  hex,
} from '../../../src/index.ts';
import { renderTrace, traceBuffer, traceToJson, type BufferTrace } from '../../../src/scenario/trace/index.ts';
import type { TraceAnswer, TracePoint } from '../protocol.ts';
import type { ViewModel } from './model.ts';

/**
 * The addresses of a byte trace, by space, for the panels' marks. A page-table entry is named by its
 * table page's machine pfn (physical address / pageSize, the machine's page size) and its index.
 */
export function tracePoints(t: BufferTrace, pageSize: number): TracePoint[] {
  const ps = BigInt(pageSize);
  const out: TracePoint[] = [];
  const run = t.runs[0];
  if (run === undefined) return out;
  const c = run.cpu;
  out.push({ space: 'va', addr: hex(c.va), layer: 'user VA' });
  if (c.phys !== null) out.push({ space: 'phys', addr: hex(c.phys), layer: `physical (${c.memory?.region ?? '?'})` });
  for (const d of run.devices) {
    const a = d.access;
    out.push({ space: 'dma', addr: hex(a.dmaAddr), layer: `${d.mapping} on ${d.device}` });
    if (a.addressKind === 'IOVA') out.push({ space: 'iova', addr: hex(a.dmaAddr), layer: `IOVA on ${d.device}` });
    for (const w of a.iommu?.walk ?? []) {
      out.push({ space: 'pte', addr: `${hex(w.tablePhys / ps)}:${w.index}`, layer: `L${w.level} entry on ${d.device}` });
    }
    if (a.phys !== null && a.phys !== c.phys) {
      out.push({ space: 'phys', addr: hex(a.phys), layer: a.swiotlb ? `swiotlb slot ${a.swiotlb.slot} on ${d.device}` : `device lands on ${d.device}` });
    }
  }
  // an IOAS mapping: the IOVA, and the walk of its hw_pagetable's domain, for each device attached
  // to one (every device of a hw_pagetable walks the same table pages)
  for (const v of run.ioas) {
    for (const h of v.hwpts) {
      for (const d of h.devices) {
        out.push({ space: 'dma', addr: hex(v.iova), layer: `${v.mapping} on ${d.device}` });
        out.push({ space: 'iova', addr: hex(v.iova), layer: `IOVA (IOAS ${v.ioas}, HWPT ${h.id}) on ${d.device}` });
        for (const w of h.iommu.walk) {
          out.push({ space: 'pte', addr: `${hex(w.tablePhys / ps)}:${w.index}`, layer: `L${w.level} entry of HWPT ${h.id} on ${d.device}` });
        }
        const p = d.access.phys;
        if (p !== null && p !== c.phys) out.push({ space: 'phys', addr: hex(p), layer: `device lands on ${d.device}` });
      }
    }
  }
  return out;
}

export function traceOf(vm: ViewModel, buffer: string, offset: number): TraceAnswer {
  const t = traceBuffer(vm.runner, buffer, offset);
  return { buffer, offset, text: renderTrace(t), json: traceToJson(t), points: tracePoints(t, vm.machine.pageSize) };
}
