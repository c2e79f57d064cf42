// What it is: `phyr dmaops`, the dma_map_ops side-by-side report (src/scenario/dma-ops.ts): its
// commander command and its terminal rendering. Added to the program by buildProgram.

import { InvalidArgumentError, type Command } from 'commander';
import { formatCount } from '../base/index.ts';
import { DMAOPS_LAYOUTS, dmaOpsWrongBytes, runDmaOpsReport, type DmaOpsReport } from '../scenario/index.ts';
import { exitOnWrongBytes } from './wrong-bytes.ts';
import { renderTable } from './format.ts';

/** The report as one aligned table (a block of rows per configuration), then the configurations and the legend. */
export function renderDmaOpsReport(r: DmaOpsReport): string {
  const out = [`phyr dmaops: ${r.title}`, '', `The list (${r.list.length} ranges, ${formatCount(r.list.reduce((n, x) => n + x.len, 0))} bytes): ` +
    r.list.map((x) => `${x.addr}+${x.len.toString(16)}`).join(', '), ''];
  const rows = r.rows.map((x) => [
    x.config, x.layout, x.result, String(x.segments), String(x.entries), formatCount(x.bounceBytes), String(x.flushes), x.afterUnmap,
    formatCount(x.bytesVerified),
  ]);
  out.push(renderTable(['Configuration', 'Layout', 'Result', 'Segs', 'Entries', 'Bounce B', 'Flushes', 'After unmap', 'Verified B'],
    rows, ['l', 'l', 'l', 'r', 'r', 'r', 'r', 'l', 'r']));
  out.push('', 'Configurations (DMA mask; how each coalesces):');
  for (const c of r.configs) {
    const mask = `${c.mask}-bit${c.maskResult === 'ok' ? '' : ` (dma_set_mask: ${c.maskResult})`}${c.pageSize !== 4096 ? `, ${c.pageSize / 1024} KiB pages` : ''}`;
    out.push(`  ${c.label.padEnd(20)} ${c.kernel}; ${mask}: ${c.merge}`);
  }
  out.push('', `Layouts: ${DMAOPS_LAYOUTS.join(', ')} (phyr and bvec through dmaMapPhyrs, sg through dmaMapSgtable, per-range through dmaMapPhys).`);
  out.push('Columns:');
  for (const [k, v] of Object.entries(r.legend)) out.push(`  ${k.padEnd(14)} ${v}`);
  return `${out.join('\n')}\n`;
}

function parseSeed(v: string): number {
  const n = /^\d+$/.test(v.trim()) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n < 0 || n > 0xffffffff) throw new InvalidArgumentError(`--seed must be an integer in [0, 4294967295], got ${JSON.stringify(v)}.`);
  return n;
}

const HELP_AFTER = `
Every configuration runs on its own machine (6 GiB of RAM, nic0 below a switch, 4 MiB swiotlb); the same
list goes through it as a phyr list and a bio_vec list (dmaMapPhyrs), a scatterlist (dmaMapSgtable) and one
dmaMapPhys per range. The device writes the list and the CPU checks it after unmap; the CPU writes and the
device reads it through a second mapping; then a device write at the first old DMA address shows what an
access after unmap reaches (fault, the old buffer, the GART scratch page, a swiotlb slot).
--json prints { tool: 'phyr dmaops', version: 1, title, list, configs, rows, legend }. About 0.3 s of CPU.
Exit code 0 on success, 1 when a row read back wrong bytes through its mapping (a defect in the model:
the rows are named on stderr), 2 for an invalid option or value.
`;

/** Adds the `dmaops` command to the program (it inherits the program's output and exit handling). */
export function addDmaOpsCommand(program: Command, write: (s: string) => void, err: (s: string) => void): Command {
  return program.command('dmaops')
    .description('One phyr list through every dma_map_ops family side by side (dma-direct, dma-iommu, ARM32 iommu_ops, ibmebus, ' +
      'GART with and without merge, TCE with and without DDW, Xen swiotlb, Xen grants, dummy): DMA segments, table entries, ' +
      'bounce bytes, flushes, what a device reaches after unmap, bytes verified, errno of failures.')
    .option('--json', 'print the report as JSON on stdout instead of a table', false)
    .option('--seed <n>', 'seed of each machine\'s PRNG', parseSeed, 1)
    .addHelpText('after', HELP_AFTER)
    .action((o: { json: boolean; seed: number }) => {
      const r = runDmaOpsReport(o.seed);
      write(o.json ? `${JSON.stringify({ tool: 'phyr dmaops', version: 1, ...r }, null, 2)}\n` : renderDmaOpsReport(r));
      exitOnWrongBytes('dmaops', dmaOpsWrongBytes(r), err);
    });
}
