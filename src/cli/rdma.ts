// What it is: `phyr rdma`, the RDMA memory registration report (src/scenario/rdma.ts): its
// commander command and its terminal rendering. Added to the program by buildProgram.

import { InvalidArgumentError, type Command } from 'commander';
import { formatBytes, formatCount } from '../base/index.ts';
import { RDMA_BUFFERS, RDMA_BUFFER_LABELS, RDMA_CONFIGS, odpReportLines, rdmaWrongBytes, runRdmaReport, type RdmaBuffer, type RdmaConfig, type RdmaReport } from '../scenario/index.ts';
import { renderTable } from './format.ts';
import { exitOnWrongBytes } from './wrong-bytes.ts';

/** The report as one aligned table per configuration, then the legend. */
export function renderRdmaReport(r: RdmaReport): string {
  const out = [`phyr rdma: ${r.title}`, ''];
  for (const config of RDMA_CONFIGS) {
    const rows = r.rows.filter((x) => x.config === config);
    if (rows.length === 0) continue;
    out.push(config === 'no-iommu' ? 'No IOMMU (dma-direct)' : 'IOMMU, strict');
    out.push(renderTable(
      ['Buffer', 'Result', 'Pages', 'Page array B', 'sg_table B', 'SG DMA', 'Phyr B', 'Phyrs/DMA', 'HW page', 'MTT', 'MTT B', 'IOMMU', 'Phyr ms', 'SG ms', 'Verified B'],
      rows.map((x) => [
        x.buffer, x.result, formatCount(x.pagesPinned), formatCount(x.pageArrayBytes), formatCount(x.sgTableBytes), formatCount(x.sgDmaEntries),
        formatCount(x.phyrBytes), `${formatCount(x.phyrEntries)}/${formatCount(x.dmaEntries)}`, x.hwPageSize > 0 ? formatBytes(x.hwPageSize) : '-',
        formatCount(x.mttEntries), formatCount(x.mttBytes), `${formatCount(x.iommuMaps)}/${formatCount(x.iommuPtes)}`,
        x.phyrMs.toFixed(1), x.sgtableMs.toFixed(1), formatCount(x.bytesVerified),
      ]),
      ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r'],
    ));
    out.push('');
  }
  if (r.odp !== null) out.push(...odpReportLines(r.odp), '');
  out.push('Buffers:');
  for (const b of RDMA_BUFFERS) out.push(`  ${b.padEnd(14)} ${RDMA_BUFFER_LABELS[b]}`);
  out.push('Columns:');
  for (const [k, v] of Object.entries(r.legend)) out.push(`  ${k.padEnd(16)} ${v}`);
  return `${out.join('\n')}\n`;
}

function parseList<T extends string>(what: string, all: readonly T[]): (v: string) => T[] {
  return (v: string): T[] => {
    const names = v.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
    if (names.length === 0) throw new InvalidArgumentError(`${what} needs at least one of ${all.join(', ')}, got ${JSON.stringify(v)}.`);
    for (const n of names) if (!(all as readonly string[]).includes(n)) throw new InvalidArgumentError(`unknown ${what.replace('--', '')} value ${JSON.stringify(n)}; choose from ${all.join(', ')}.`);
    if (new Set(names).size !== names.length) throw new InvalidArgumentError(`a value is listed twice in ${JSON.stringify(v)}.`);
    return names as T[];
  };
}

function parseSeed(v: string): number {
  const n = /^\d+$/.test(v.trim()) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n < 0 || n > 0xffffffff) throw new InvalidArgumentError(`--seed must be an integer in [0, 4294967295], got ${JSON.stringify(v)}.`);
  return n;
}

const HELP_AFTER = `
Each configuration runs on its own machine (8 GiB of aged RAM plus hugetlb pools; hb0 -> rp0 -> sw0 ->
{nic0, gpu0 with a 1 GiB P2P BAR}). For each buffer (1 GiB) the kernel's design (pin_user_pages,
sg_alloc_table_from_pages_segment, dma_map_sgtable) and the phyr design (ibUmemGet: pinUserPhyrs +
dmaMapPhyrs; ibRegMr: ib_umem_find_best_pgsz + an mlx5 MTT) register it; an RDMA WRITE through the MR
is checked by the CPU. Buffers: ${RDMA_BUFFERS.join(', ')}. Configurations: ${RDMA_CONFIGS.join(', ')}.
--json prints { tool: 'phyr rdma', version: 1, title, rows: [...], odp, legend }.
Exit code 0 on success, 1 when a row read back wrong bytes through its mapping (a defect in the model:
the rows are named on stderr), 2 for an invalid option or value.
`;

/** Adds the `rdma` command to the program. */
export function addRdmaCommand(program: Command, write: (s: string) => void, err: (s: string) => void): Command {
  return program.command('rdma')
    .description('RDMA memory registration of 1 GiB of aged 4 KiB anon, THP, hugetlb 2 MiB and 1 GiB, and a GPU BAR: pages pinned, ' +
      'page array + sg_table bytes vs phyr list bytes, HW page size, MTT entries and bytes, IOMMU maps, model time.')
    .option('--json', 'print the report as JSON on stdout instead of tables', false)
    .option('--buffers <list>', `comma-separated buffers (${RDMA_BUFFERS.join(', ')})`, parseList<RdmaBuffer>('--buffers', RDMA_BUFFERS))
    .option('--configs <list>', `comma-separated configurations (${RDMA_CONFIGS.join(', ')})`, parseList<RdmaConfig>('--configs', RDMA_CONFIGS))
    .option('--seed <n>', 'seed of each machine\'s PRNG', parseSeed, 1)
    .addHelpText('after', HELP_AFTER)
    .action((o: { json: boolean; buffers?: RdmaBuffer[]; configs?: RdmaConfig[]; seed: number }) => {
      const r = runRdmaReport({ buffers: o.buffers, configs: o.configs, seed: o.seed });
      write(o.json ? `${JSON.stringify({ tool: 'phyr rdma', version: 1, ...r }, null, 2)}\n` : renderRdmaReport(r));
      exitOnWrongBytes('rdma', rdmaWrongBytes(r.rows), err);
    });
}
