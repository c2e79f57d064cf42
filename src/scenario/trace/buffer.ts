// The address trace of a buffer: one byte, or the whole buffer in runs of contiguous bytes with
// identical translation, with the CPU side (traceCpu) and, for each live device mapping that
// covers the byte, the descriptor entry carrying it and the device side (traceDevice).

import { IO_TLB_SIZE, DmaIovaState, DmaPhyrsMapping } from '../../dma/index.ts';
import type { Machine } from '../../machine/index.ts';
import type { UserMm } from '../../mm/index.ts';
import { SgTable } from '../../phyr/index.ts';
import { traceCpu } from './cpu.ts';
import { reachesByte, traceDevice } from './device.ts';
import { traceIoas, type TraceIoasMapping } from './ioas.ts';
import type { BufferTrace, ByteTrace, DescriptorTrace, DeviceTrace, DeviceViewTrace, IoasViewTrace, IommuTrace, TraceRun } from './types.ts';

/** One DMA segment a mapping hands the device. */
export interface TraceSegment {
  readonly dmaAddr: bigint;
  readonly len: number;
}

/** A device mapping of (part of) the buffer, its DMA segments in buffer byte order. */
export interface TraceMapping {
  readonly name: string;
  readonly device: string;
  readonly method: string;
  readonly dir: string;
  /** Offset in the buffer of the first mapped byte, and the bytes mapped. */
  readonly offset: number;
  readonly len: number;
  readonly segments: readonly TraceSegment[];
  /** What the segments are to the device ('sg entry', 'DMA list entry', ...); default from method. */
  readonly descriptor?: string;
  /** What the model returned for the mapping (sg table, DmaPhyrsMapping, ...): names the descriptor when `descriptor` is absent. */
  readonly handle?: unknown;
  /** The mapping was unmapped already: the trace shows where its old DMA addresses lead now. */
  readonly unmapped?: boolean;
}

/** Everything traceRange needs: the buffer's process and VA range, its live mappings. */
export interface TraceTarget {
  readonly machine: Machine;
  readonly mm: UserMm;
  readonly buffer: string;
  readonly process: string;
  readonly va: bigint;
  readonly len: number;
  readonly mappings: readonly TraceMapping[];
  /** Its IOAS mappings (ioas-map), in the order the trace shows them. Default none. */
  readonly ioasMappings?: readonly TraceIoasMapping[];
  /** Step index after which the trace is taken (-1: before any step). Default -1. */
  readonly afterStep?: number;
}

/** The descriptor kind of a mapping's segments, from the mapping's handle or method (traceRange calls a two-step 'IOVA window' a 'dma address' where the device's route is not an IOVA). */
export function descriptorKind(m: TraceMapping): string {
  if (m.descriptor !== undefined) return m.descriptor;
  const h = m.handle;
  if (h instanceof SgTable) return 'sg entry';
  if (h instanceof DmaPhyrsMapping) return h.how === 'iova' ? 'DMA list entry (IOVA window)' : 'DMA list entry';
  if (DmaIovaState.is(h)) return 'IOVA window';
  const meth = m.method.toLowerCase();
  if (meth.includes('sg')) return 'sg entry';
  if (meth.includes('phyrs')) return 'DMA list entry';
  if (meth.includes('iova') || meth.includes('two-step')) return 'IOVA window';
  if (meth.includes('prp')) return 'PRP entry';
  if (meth.includes('sgl')) return 'SGL descriptor';
  if (meth.includes('mtt') || meth.includes('mr')) return 'MTT entry';
  return 'dma address';
}

/** Starting offset (relative to the mapping) of each segment, plus the total at the end. */
function segmentStarts(m: TraceMapping): number[] {
  const out = [0];
  for (const s of m.segments) out.push(out[out.length - 1] + s.len);
  return out;
}

/** Index of the segment holding relative offset rel (starts ascending), or -1. */
function findSegment(starts: readonly number[], rel: number): number {
  let lo = 0, hi = starts.length - 2;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (rel < starts[mid]) hi = mid - 1;
    else if (rel >= starts[mid + 1]) lo = mid + 1;
    else return mid;
  }
  return -1;
}

interface Prepared {
  readonly m: TraceMapping;
  readonly starts: number[];
  readonly kind: string;
}

type Limit = (n: number | bigint) => void;

/** Cuts the run where the IOMMU's answer for addr changes: its IOTLB entry, its leaf (a 4 KiB page of a hole). */
function limitIommu(limit: Limit, io: IommuTrace, addr: bigint): void {
  const leaf = io.walk.at(-1);
  if (io.iotlb.hit && io.iotlb.leafIova !== null) limit(io.iotlb.leafIova + BigInt(io.iotlb.leafBytes) - addr);
  if (leaf !== undefined && leaf.kind === 'leaf') limit(BigInt(leaf.leafBytes) - addr % BigInt(leaf.leafBytes));
  else if (io.walk.length > 0) limit(4096n - addr % 4096n);
}

/** Cuts the run where a device access at dmaAddr changes: the IOMMU's answer, a dma_map_ops page, the dma_range_map entry, the swiotlb slot, the region. */
function limitAccess(t: TraceTarget, limit: Limit, access: DeviceTrace, dmaAddr: bigint): void {
  if (access.iommu !== null) limitIommu(limit, access.iommu, dmaAddr);
  if (access.dmaOps !== null) limit(4096n - dmaAddr % 4096n);
  if (access.rangeMap !== null) limit(access.rangeMap.dmaStart + BigInt(access.rangeMap.len) - dmaAddr);
  if (access.swiotlb !== null) limit(access.swiotlb.slotAddr + BigInt(IO_TLB_SIZE) - access.phys!);
  if (access.phys !== null) {
    const r = t.machine.regionAt(access.phys);
    if (r !== undefined) limit(r.end - access.phys);
  }
}

/** The trace of byte `offset` and how many bytes from it translate identically at every layer. */
function traceAt(t: TraceTarget, maps: readonly Prepared[], offset: number): { trace: ByteTrace; extent: number } {
  const ps = t.machine.pageSize;
  const va = t.va + BigInt(offset);
  const cpu = traceCpu(t.machine, t.mm, va);
  let extent = t.len - offset;
  const limit: Limit = (n) => {
    const x = typeof n === 'bigint' ? Number(n) : n;
    if (x > 0 && x < extent) extent = x;
  };
  // CPU side: one user page-table entry (the page's boundary when nothing maps it), one region
  if (cpu.pte !== null && cpu.pte.present) {
    // the entry's own bytes: one entry of a contiguous run (arm64) holds its part only
    const entryBytes = BigInt(cpu.pte.leafBytes / cpu.pte.contig);
    limit(entryBytes - va % entryBytes);
  }
  else limit(ps - Number(va % BigInt(ps)));
  if (cpu.phys !== null) {
    const r = t.machine.regionAt(cpu.phys);
    if (r !== undefined) limit(r.end - cpu.phys);
  }
  const devices: DeviceViewTrace[] = [];
  for (const p of maps) {
    const m = p.m;
    if (offset < m.offset) { limit(m.offset - offset); continue; }
    const rel = offset - m.offset;
    if (rel >= m.len) continue;
    const i = findSegment(p.starts, rel);
    if (i < 0) continue; // the segments cover less than len: nothing carries this byte
    const seg = m.segments[i];
    const within = rel - p.starts[i];
    limit(seg.len - within);
    const dmaAddr = seg.dmaAddr + BigInt(within);
    const access = traceDevice(t.machine, m.device, dmaAddr);
    limitAccess(t, limit, access, dmaAddr);
    // the two-step API has an IOVA window only behind a DMA domain: dma_iova_try_alloc()
    // (drivers/iommu/dma-iommu.c) is false without dma-iommu, and the caller then maps each range
    // with dma_map_phys (or hands out its bus address), so its segments are plain DMA addresses
    const kind = p.kind === 'IOVA window' && access.addressKind !== 'IOVA' ? 'dma address' : p.kind;
    const descriptor: DescriptorTrace = { kind, index: i, dmaAddr: seg.dmaAddr, len: seg.len };
    devices.push({ mapping: m.name, device: m.device, method: m.method, dir: m.dir, unmapped: m.unmapped === true, descriptor, access, agrees: reachesByte(cpu.phys, access) });
  }
  const ioas: IoasViewTrace[] = [];
  for (const m of t.ioasMappings ?? []) {
    if (offset < m.offset) { limit(m.offset - offset); continue; }
    const rel = offset - m.offset;
    if (rel >= m.len) continue;
    limit(m.len - rel);
    const iova = m.iova + BigInt(rel);
    const v = traceIoas(t.machine, m, iova, cpu.phys);
    if (v.area !== null) limit(v.area.iova + BigInt(v.area.len) - iova);
    for (const h of v.hwpts) {
      limitIommu(limit, h.iommu, iova);
      for (const d of h.devices) limitAccess(t, limit, d.access, iova);
    }
    for (const d of v.detached) limitAccess(t, limit, d.access, iova);
    ioas.push(v);
  }
  return { trace: { offset, cpu, devices, ioas }, extent: Math.max(1, extent) };
}

/**
 * The trace of a buffer described by `t`: byte `offset` alone (one run of length 1), or, without
 * an offset, the whole buffer as runs. A run is a stretch of contiguous bytes that share every
 * entry on the way: one user page-table entry (hence one folio), one region, and for each mapping
 * one descriptor entry, one IOTLB entry and IOMMU leaf (a 4 KiB page of a hole or of a dma_map_ops
 * table), one swiotlb slot; every address in it moves with the byte offset. Read-only.
 * @throws RangeError when offset is not a byte of the buffer.
 */
export function traceRange(t: TraceTarget, offset?: number): BufferTrace {
  if (offset !== undefined && (!Number.isSafeInteger(offset) || offset < 0 || offset >= t.len)) {
    throw new RangeError(`offset must be an integer in [0, ${t.len - 1}] (a byte of buffer ${JSON.stringify(t.buffer)}, ${t.len} bytes), got ${String(offset)}`);
  }
  const maps: Prepared[] = t.mappings.map((m) => ({ m, starts: segmentStarts(m), kind: descriptorKind(m) }));
  const runs: TraceRun[] = [];
  if (offset !== undefined) {
    runs.push({ ...traceAt(t, maps, offset).trace, len: 1 });
  } else {
    for (let o = 0; o < t.len;) {
      const { trace, extent } = traceAt(t, maps, o);
      runs.push({ ...trace, len: extent });
      o += extent;
    }
  }
  return { buffer: t.buffer, process: t.process, va: t.va, len: t.len, afterStep: t.afterStep ?? -1, offset: offset ?? null, runs };
}
