// What it is: the human (terminal) rendering of a `phyr compare` report: aligned tables with thousands
// separators and binary units, the seed's headline, the machine description and a legend.

import { formatBytes, formatCount } from '../base/index.ts';
import {
  MAPPING_METHOD_LABELS, type BufferReport, type CompareReport, type LayoutRow, type MappingReport,
} from '../scenario/index.ts';

type Align = 'l' | 'r';

/**
 * Lays out rows of cells as an aligned text table (two spaces between columns, header underlined).
 * `align` gives each column's alignment (default left).
 */
export function renderTable(header: readonly string[], rows: ReadonlyArray<readonly string[]>, align: readonly Align[] = []): string {
  const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => (r[c] ?? '').length)));
  const line = (cells: readonly string[]): string => cells
    .map((s, c) => (align[c] === 'r' ? s.padStart(widths[c]) : s.padEnd(widths[c])))
    .join('  ')
    .trimEnd();
  const out = [line(header), line(widths.map((w) => '-'.repeat(w)))];
  for (const r of rows) out.push(line(r));
  return out.join('\n');
}

/** Bytes as a binary unit, with the exact count added when the unit form is rounded: "8.06 MiB (8,450,112 B)". */
export function formatBytesExact(n: number): string {
  const s = formatBytes(n);
  if (n < 1024) return s;
  const [v, unit] = s.split(' ');
  const scale = { KiB: 2 ** 10, MiB: 2 ** 20, GiB: 2 ** 30, TiB: 2 ** 40 }[unit] ?? 1;
  return Number(v) * scale === n ? s : `${s} (${formatCount(n)} B)`;
}

/** A time in ms with one decimal ("12.3"), or "-" for 0 (nothing was done in that step). */
export function formatMs(ms: number): string {
  return ms === 0 ? '-' : ms < 10 ? ms.toFixed(2) : ms.toFixed(1);
}

function entriesCell(row: LayoutRow): string {
  if (!row.describes || row.entries === null) return '-';
  if (row.layout === 'pagearray+sg') {
    const sg = row.parts.find((p) => p.name === 'sg_table');
    return `${formatCount(row.entries)} + ${formatCount(sg?.entries ?? 0)} sg`;
  }
  return formatCount(row.entries);
}

function ratioCell(row: LayoutRow, phyrBytes: number | null): string {
  if (!row.describes || row.kernelBytes === null || !phyrBytes) return '-';
  const r = row.kernelBytes / phyrBytes;
  return r >= 100 ? `${formatCount(r)}x` : `${r.toFixed(r >= 10 ? 1 : 2)}x`;
}

/** Renders one buffer: a title line, the layout table and the reasons for layouts that cannot describe it. */
export function renderBuffer(b: BufferReport): string {
  const title = `${b.label}  [${b.backing}, ${formatBytesExact(b.len)}` +
    (b.userAddr ? ` at ${b.userAddr}, mmap+populate ${formatMs(b.mmapMs)} ms]` : ']');
  if (b.mmapErrno) return `${title}\n  mmap failed: ${b.mmapErrno}${b.mmapMessage ? ` (${b.mmapMessage})` : ''}`;
  const phyr = b.rows.find((r) => r.layout === 'phyr');
  const phyrBytes = phyr?.describes ? phyr.kernelBytes : null;
  const header = ['Layout', 'Entries', 'Kernel bytes', 'vs phyr', 'Describes', 'Pin ms', 'Build ms'];
  const rows = b.rows.map((r) => [
    r.label,
    entriesCell(r),
    r.describes && r.kernelBytes !== null ? formatBytesExact(r.kernelBytes) : '-',
    ratioCell(r, phyrBytes),
    r.describes ? 'yes' : `no: ${r.errno}`,
    formatMs(r.pinMs),
    formatMs(r.buildMs),
  ]);
  const table = renderTable(header, rows, ['l', 'r', 'r', 'r', 'l', 'r', 'r']);
  const notes = b.rows.filter((r) => !r.describes).map((r) => `  ${r.label} cannot describe it: ${r.reason}`);
  if (b.memmap) notes.push(`  Memmap: ${b.memmap.text}`);
  return [title, table.split('\n').map((l) => `  ${l}`).join('\n'), ...notes].join('\n');
}

/** Splits text into lines of at most width characters at spaces (a longer word gets a line of its own). */
export function wrapWords(text: string, width: number): string[] {
  const lines: string[] = [];
  let cur = '';
  for (const w of text.split(/\s+/).filter((x) => x.length > 0)) {
    if (cur.length > 0 && cur.length + 1 + w.length > width) {
      lines.push(cur);
      cur = w;
    } else {
      cur = cur.length > 0 ? `${cur} ${w}` : w;
    }
  }
  if (cur.length > 0) lines.push(cur);
  return lines;
}

/** Renders the DMA mapping section: one table per machine configuration. */
export function renderMapping(mr: MappingReport): string {
  const out: string[] = ['DMA mapping: each buffer mapped DMA_BIDIRECTIONAL by each method, then a device round trip',
    `IOMMU configurations: ${mr.iommuTables}`];
  const labelOf = new Map(mr.buffers.map((b) => [b.name, b.name]));
  for (const c of mr.configs) {
    out.push('');
    out.push(`${c.name}: ${c.label}`);
    if (c.note) for (const line of wrapWords(c.note, 108)) out.push(`  ${line}`);
    const rows = mr.rows.filter((r) => r.config === c.name);
    // With --dma-debug the rows count dma-debug's reports: one more column.
    const debug = rows.some((r) => r.dmaDebugReports !== undefined);
    // A non-coherent device's cache maintenance: one more column where any row did some.
    const cache = rows.some((r) => (r.counters.cacheCleans ?? 0) + (r.counters.cacheInvalidates ?? 0) + (r.counters.cacheSyncBarriers ?? 0) > 0);
    const header = ['Buffer', 'Method', 'DMA entries', 'Meta bytes', 'IOMMU maps', 'PTEs', 'IOTLB inv', 'Bounce bytes',
      ...(cache ? ['Cache ops'] : []), 'Verified', ...(debug ? ['dma-debug'] : []), 'Map ms'];
    const cells = rows.map((r) => [
      labelOf.get(r.buffer) ?? r.buffer,
      MAPPING_METHOD_LABELS[r.method],
      r.ok ? formatCount(r.dmaEntries ?? 0) : `no: ${r.errno}`,
      r.ok ? formatBytesExact(r.metadataBytes ?? 0) : '-',
      formatCount(r.counters.iommuMapCalls),
      formatCount(r.counters.iommuLeafPtesWritten),
      formatCount(r.counters.iotlbInvalidations),
      formatBytes(r.counters.bounceBytes),
      ...(cache ? [`${formatCount(r.counters.cacheCleans ?? 0)}/${formatCount(r.counters.cacheInvalidates ?? 0)}/${formatCount(r.counters.cacheSyncBarriers ?? 0)}`] : []),
      r.ok ? (r.bytesMismatched === 0 ? formatBytes(r.bytesVerified) : `${formatCount(r.bytesMismatched)} B WRONG`) : '-',
      ...(debug ? [r.dmaDebugReports === undefined ? '-' : r.dmaDebugReports === 0 ? '0' : `${formatCount(r.dmaDebugReports)} REPORTS`] : []),
      formatMs(r.mapMs),
    ]);
    out.push(renderTable(header, cells, header.map((_, i) => (i < 2 ? 'l' : 'r'))).split('\n').map((l) => `  ${l}`).join('\n'));
    for (const r of rows.filter((x) => !x.ok)) out.push(`  ${r.buffer} / ${MAPPING_METHOD_LABELS[r.method]}: ${r.errno}: ${r.reason}`);
  }
  out.push('');
  out.push('Mapping legend:');
  const legend = Object.entries(mr.legend);
  if (mr.rows.some((r) => r.dmaDebugReports !== undefined)) {
    legend.push(['dma-debug', 'dma-debug reports over map, round trip and unmap, and a leak check after the unmap (--dma-debug; 0 for correct use)']);
  }
  const w = Math.max(...legend.map(([k]) => k.length));
  for (const [k, v] of legend) out.push(`  ${k.padEnd(w)}  ${v}`);
  return out.join('\n');
}

/** The whole human report, ending with a newline. */
export function renderCompareReport(report: CompareReport): string {
  const out: string[] = [];
  out.push('phyr compare: one pinned user buffer described four ways');
  out.push(`Machine: ${report.machine.description}`);
  out.push(`Scatterlist: ${report.maxSegmentNote}`);
  const mm = report.machine.memmap;
  out.push(`Memmap: ${formatBytes(mm.ram)} of struct page for RAM (${mm.structPageSize} B per ${formatBytes(mm.pageSize)} page), ` +
    `${formatBytes(mm.zoneDevice)} for ZONE_DEVICE regions`);
  out.push('');
  if (report.headline) out.push(`Headline: ${report.headline.text}`);
  else out.push('Headline: not measured (the hugetlb buffer is not part of this run or could not be mapped)');
  out.push('');
  for (const b of report.buffers) {
    out.push(renderBuffer(b));
    out.push('');
  }
  if (report.mapping) {
    out.push(renderMapping(report.mapping));
    out.push('');
  }
  out.push('Legend:');
  const legendRows = Object.entries(report.legend).map(([k, v]) => [`  ${k}`, v]);
  const w = Math.max(...legendRows.map((r) => r[0].length));
  for (const [k, v] of legendRows) out.push(`${k.padEnd(w)}  ${v}`);
  out.push('');
  out.push(`Total model time ${formatMs(report.totalMs)} ms (times vary between runs; every other figure is deterministic for a seed).`);
  return `${out.join('\n')}\n`;
}
