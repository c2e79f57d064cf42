// The address trace as text for people (renderTrace) and as JSON for programs (traceToJson:
// bigints as hex strings).

import { formatBytes } from '../../base/index.ts';
import { IOMMU_READ, IOMMU_WRITE } from '../../iommu/index.ts';
import type { BufferTrace, CpuTrace, DeviceTrace, DeviceViewTrace, IoasDeviceTrace, IoasViewTrace, IommuTrace, MemoryTrace, TraceRun } from './types.ts';

const hx = (v: bigint | number): string => `0x${v.toString(16)}`;

/** JSON.stringify replacer: bigints as '0x...' strings. */
export function bigintHex(_key: string, v: unknown): unknown {
  return typeof v === 'bigint' ? hx(v) : v;
}

/** The trace as a JSON-ready value (bigints as hex strings). */
export function traceToJson(t: BufferTrace): unknown {
  return JSON.parse(JSON.stringify(t, bigintHex)) as unknown;
}

function protName(p: number): string {
  return `${p & IOMMU_READ ? 'R' : '-'}${p & IOMMU_WRITE ? 'W' : '-'}`;
}

function cpuLines(c: CpuTrace): string[] {
  const out: string[] = [];
  const vma = c.vma === null ? 'no VMA' : `vma [${hx(c.vma.start)}, ${hx(c.vma.end)}) ${c.vma.kind} ${c.vma.writable ? 'rw' : 'r'}`;
  out.push(`  CPU   va ${hx(c.va)}  ${vma}`);
  const p = c.pte;
  if (p !== null) {
    const flags = p.present
      ? [p.writable ? 'writable' : 'read-only', p.cache, ...(p.special ? ['special'] : []), ...(p.zeroPage ? ['zero page'] : [])].join(', ')
      : 'not present';
    const run = p.contig > 1 ? `, ${p.contig} contiguous entries` : '';
    out.push(`        user ${p.level.toUpperCase()} #${p.index} = ${hx(p.entry)} (${formatBytes(p.leafBytes)} at va ${hx(p.leafVa)}${run}; ${flags})`);
  }
  if (c.pfn !== null) {
    const folio = c.folio === null ? (c.zeroPage ? 'the zero page (no folio)' : 'no folio')
      : `folio head pfn ${hx(c.folio.head)} order ${c.folio.order} refcount ${c.folio.refcount} pincount ${c.folio.pincount}`;
    out.push(`        pfn ${hx(c.pfn)}  ${folio}`);
  }
  if (c.phys !== null) {
    const mem = c.memory === null ? 'no memory' : `${c.memory.region} (${c.memory.flags}${c.memory.structPage ? ', struct page' : ', no struct page'})`;
    out.push(`        phys ${hx(c.phys)}  ${mem}`);
    out.push(`        P2P provider: ${c.p2p === null ? 'none' : `${c.p2p.device} BAR${c.p2p.bar}, bus address ${hx(c.p2p.busAddr)}`}`);
  }
  return out;
}

/** The entries an IOMMU walk visited, top level first, and the IOTLB's answer, each line indented by `pad`. */
function iommuLines(io: IommuTrace, pad: string): string[] {
  const out: string[] = [];
  for (const s of io.walk) {
    const what = s.kind === 'empty' ? 'empty' : s.kind === 'table' ? `table -> ${hx(s.oa)}` : `leaf ${formatBytes(s.leafBytes)} -> ${hx(s.oa)}`;
    out.push(`${pad}level ${s.level} table ${hx(s.tablePhys)} [${String(s.index).padStart(3)}] = ${s.entryBytes}  ${what}${s.attrs ? ` (${s.attrs})` : ''}`);
  }
  if (io.format !== null) {
    const tlb = io.iotlb.hit ? `hit (${formatBytes(io.iotlb.leafBytes)} entry -> ${hx(io.iotlb.phys!)}${io.iotlb.stale ? ', STALE: the tables say otherwise' : ''})` : 'miss';
    out.push(`${pad}IOTLB ${tlb}; ${io.walk.at(-1)?.kind === 'leaf' ? `leaf prot ${protName(io.prot)}` : 'the walk ends at an empty entry'}`);
  }
  return out;
}

function memText(m: MemoryTrace | null): string {
  return m === null ? 'no memory' : `${m.region} (${m.flags})`;
}

function deviceLines(a: DeviceTrace): string[] {
  const out: string[] = [];
  if (a.addressKind === 'bus address') {
    out.push(`        bus address ${hx(a.dmaAddr)}: P2P through the switch to ${a.p2p?.device ?? '?'} BAR${a.p2p?.bar ?? '?'} (bus offset ${hx(a.p2p?.busOffset ?? 0n)})`);
  } else if (a.addressKind === 'dma-direct address') {
    out.push(`        dma-direct address ${hx(a.dmaAddr)}${a.rangeMap === null ? ' (phys == DMA address)' : ` (dma_range_map: DMA ${hx(a.rangeMap.dmaStart)} = phys ${hx(a.rangeMap.cpuStart)})`}`);
  } else if (a.addressKind === 'dma-ops address') {
    out.push(`        ${a.dmaOps} address ${hx(a.dmaAddr)}`);
  } else if (a.iommu !== null) {
    const io = a.iommu;
    out.push(`        ${a.addressKind === 'identity' ? 'address' : 'IOVA'} ${hx(a.dmaAddr)}  IOMMU ${io.domainType} domain${io.format !== null ? ` (${io.format})` : ''}`);
    out.push(...iommuLines(io, '          '));
  } else {
    out.push(`        DMA address ${hx(a.dmaAddr)}`);
  }
  if (a.fault !== null) out.push(`        FAULT: ${a.fault}`);
  if (a.phys !== null) out.push(`        phys ${hx(a.phys)}  ${memText(a.memory)}`);
  if (a.swiotlb !== null) {
    const orig = a.swiotlb.origAddr === null ? 'free or pad slot' : `bounces phys ${hx(a.swiotlb.origAddr)}`;
    out.push(`        swiotlb slot ${a.swiotlb.slot} at ${hx(a.swiotlb.slotAddr)} (pool ${hx(a.swiotlb.poolStart)}): ${orig}`);
  }
  return out;
}

function viewLines(v: DeviceViewTrace): string[] {
  const d = v.descriptor;
  return [
    `  DEV   ${v.device} via mapping ${v.mapping} (${v.method}, ${v.dir})${v.unmapped ? ' UNMAPPED, its old address' : ''}: ${d.kind} ${d.index} = [${hx(d.dmaAddr)} + ${hx(d.len)}]`,
    ...deviceLines(v.access),
    `        ${v.unmapped
      ? (v.agrees ? 'STALE: an access with the old address still reaches the byte' : 'an access with the old address no longer reaches the byte')
      : (v.agrees ? 'agrees with the CPU view' : 'DOES NOT reach the byte the CPU sees')}`,
  ];
}

/** What a device's access at an IOAS IOVA comes to, in words. */
function reachText(d: IoasDeviceTrace, unmapped: boolean): string {
  if (d.agrees) return unmapped ? 'STALE: still reaches the byte' : 'reaches the byte';
  return unmapped || !d.throughHwpt ? 'no longer reaches the byte' : 'DOES NOT reach the byte the CPU sees';
}

/** An attached device of a hw_pagetable: one line when its DMA goes through the walk shown above, else its own route. */
function hwptDeviceLines(d: IoasDeviceTrace, unmapped: boolean): string[] {
  const a = d.access;
  if (d.throughHwpt) {
    const lands = a.phys === null ? `faults (${a.fault ?? '?'})` : `lands on ${hx(a.phys)}${a.fault !== null ? ` and faults (${a.fault})` : ''}`;
    return [`          ${d.device} attached: DMA at ${hx(a.dmaAddr)} ${lands}: ${reachText(d, unmapped)}`];
  }
  return [`          ${d.device} attached, but its DMA goes through another domain:`, ...deviceLines(a).map((l) => `    ${l}`), `            ${reachText(d, unmapped)}`];
}

function ioasLines(v: IoasViewTrace): string[] {
  const who = `${v.ioas}${v.ioasId !== null ? ` (IOAS ${v.ioasId})` : ' (destroyed)'}`;
  const area = v.area === null ? 'no area holds it'
    : `area [${hx(v.area.iova)} + ${hx(v.area.len)}] (${v.area.kind}, ${protName(v.area.prot)}${v.area.pinned ? ', pinned' : ''})`;
  const out = [`  IOAS  ${who} via mapping ${v.mapping}${v.unmapped ? ' UNMAPPED, its old IOVA' : ''}: IOVA ${hx(v.iova)}, ${area}`];
  if (v.hwpts.length === 0) out.push(`        ${v.ioasId === null ? 'no hw_pagetable: the IOAS is gone' : 'no hw_pagetable: no device is attached'}`);
  for (const h of v.hwpts) {
    out.push(`        HWPT ${h.id}${h.auto ? '' : ' (own)'}: IOMMU ${h.iommu.domainType} domain${h.iommu.format !== null ? ` (${h.iommu.format})` : ''}, ` +
      `${h.devices.length} device${h.devices.length === 1 ? '' : 's'} attached`);
    out.push(...iommuLines(h.iommu, '          '));
    out.push(h.phys !== null ? `          phys ${hx(h.phys)}  ${memText(h.memory)}` : `          FAULT: ${h.fault ?? '?'}`);
    for (const d of h.devices) out.push(...hwptDeviceLines(d, v.unmapped));
  }
  for (const d of v.detached) {
    const now = d.nowOn !== undefined ? `; now on ${d.nowOn}` : '';
    out.push(`        ${d.device} detached from ${v.ioas} (an earlier step attached it${now}): its DMA at the IOVA now:`);
    // its route indented under the line that names it, as an attached device's own route is
    out.push(...deviceLines(d.access).map((l) => `  ${l}`), `          ${reachText(d, v.unmapped)}`);
  }
  return out;
}

function runLines(r: TraceRun, whole: boolean): string[] {
  const head = whole ? `bytes ${hx(r.offset)}..${hx(r.offset + r.len - 1)} (${formatBytes(r.len)})` : `byte ${hx(r.offset)}`;
  const out = [head, ...cpuLines(r.cpu)];
  if (r.devices.length === 0 && r.ioas.length === 0) out.push('  DEV   no live device mapping covers this byte');
  for (const v of r.devices) out.push(...viewLines(v));
  for (const v of r.ioas) out.push(...ioasLines(v));
  return out;
}

/** The trace for people: a header, then each run (or the one byte) layer by layer. */
export function renderTrace(t: BufferTrace): string {
  const when = t.afterStep < 0 ? 'before any step' : `after step ${t.afterStep}`;
  const what = t.offset === null ? `${t.runs.length} run${t.runs.length === 1 ? '' : 's'} of identical translation` : `byte ${t.offset}`;
  const out = [`trace of buffer ${t.buffer} (process ${t.process}, va ${hx(t.va)}, ${formatBytes(t.len)}) ${when}: ${what}`, ''];
  for (const r of t.runs) out.push(...runLines(r, t.offset === null), '');
  return `${out.join('\n').trimEnd()}\n`;
}
