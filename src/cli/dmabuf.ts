// What it is: `phyr dmabuf`, the dma-buf export/import matrix (src/scenario/dmabuf.ts): its
// commander command and its terminal rendering. Added to the program by buildProgram.

import { InvalidArgumentError, type Command } from 'commander';
import { formatCount } from '../base/index.ts';
import {
  DMABUF_EXPORTERS, DMABUF_IMPORTERS, DMABUF_IOMMU_MODES, DMABUF_TOPOLOGIES, runDmabufMatrix, type DmabufReport,
} from '../scenario/index.ts';
import { renderTable } from './format.ts';

/** The matrix as aligned tables, one per IOMMU mode and topology, then the legend. */
export function renderDmabufReport(r: DmabufReport): string {
  const out = [`phyr dmabuf: ${r.title} (${formatCount(r.bufferBytes)}-byte buffers; exporter gpu0 below switch sw0)`, ''];
  for (const iommu of DMABUF_IOMMU_MODES) {
    for (const topo of DMABUF_TOPOLOGIES) {
      out.push(`IOMMU ${iommu}, importer ${topo === 'switch' ? 'below the same switch (gpu1)' : topo === 'host-bridge' ? 'behind another root port of the host bridge (gpu2)' : 'behind another host bridge (gpu3)'}`);
      const rows = r.cells.filter((c) => c.iommu === iommu && c.topology === topo).map((c) => [
        c.exporter, c.importer, c.result, c.path, c.mapType.replace('PCI_P2PDMA_MAP_', ''), String(c.entries), formatCount(c.metadataBytes),
        `${c.iommuMaps}/${c.iommuUnmaps}/${c.iotlbInvalidations}`, formatCount(c.bytesVerified), c.bytesCorrect ? 'yes' : 'NO',
        c.revokeClean ? 'yes' : 'NO', c.revoke,
      ]);
      out.push(renderTable(['Exporter', 'Importer', 'Result', 'Path', 'Map type', 'Entries', 'Meta B', 'IOMMU map/unmap/inv', 'Verified B', 'Bytes ok', 'Clean', 'Revoke / move'],
        rows, ['l', 'l', 'l', 'l', 'l', 'r', 'r', 'r', 'r', 'l', 'l', 'l']));
      out.push('');
    }
  }
  out.push('Columns:');
  for (const [k, v] of Object.entries(r.legend)) out.push(`  ${k.padEnd(14)} ${v}`);
  out.push('  Clean          after the revoke or move the importer\'s old addresses fault and nothing stays mapped (for a failed import: nothing stays attached)');
  return `${out.join('\n')}\n`;
}

function parseSize(v: string): number {
  const n = /^\d+$/.test(v.trim()) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n < 4 || n > 16384 || n % 4 !== 0) {
    throw new InvalidArgumentError(`--size must be a multiple of 4 in [4, 16384] (KiB), got ${JSON.stringify(v)}.`);
  }
  return n;
}

function parseSeed(v: string): number {
  const n = /^\d+$/.test(v.trim()) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n < 0 || n > 0xffffffff) throw new InvalidArgumentError(`--seed must be an integer in [0, 4294967295], got ${JSON.stringify(v)}.`);
  return n;
}

const HELP_AFTER = `
Every cell runs on a fresh machine (1 GiB of RAM; hb0 (whitelisted Intel) -> rp0 -> sw0 -> {gpu0, gpu1},
rp1 -> gpu2; hb1 (not whitelisted) -> rp2 -> gpu3): gpu0 exports, the importer at the topology's device
imports, the device writes and the CPU reads back, the CPU writes and the device reads, then the exporter
revokes (VFIO, heap) or moves (the GPU buffer) and the old addresses must fault.
Exporters: ${DMABUF_EXPORTERS.join(', ')}. Importers: ${DMABUF_IMPORTERS.join(', ')}.
Topologies: ${DMABUF_TOPOLOGIES.join(', ')}; IOMMU: ${DMABUF_IOMMU_MODES.join(', ')}.
--json prints { tool: 'phyr dmabuf', version: 1, title, bufferBytes, cells: [...], legend } with the cells'
fields as named in the columns. Exit code 0 on success, 2 for an invalid option or value.
`;

/** Adds the `dmabuf` command to the program (it inherits the program's output and exit handling). */
export function addDmabufCommand(program: Command, write: (s: string) => void): Command {
  return program.command('dmabuf')
    .description('The dma-buf export/import matrix: exporter (system heap, GPU VRAM that migrates, VFIO BAR slice) x importer ' +
      '(GPU through the DMA API, iommufd, iommufd as a PAL importer (RFC mapping types), GPU through get_pfn, GPU over a private fabric) x topology: path, map type, entries, ' +
      'metadata bytes, IOMMU operations, bytes a device verified, what revoke or move did.')
    .option('--json', 'print the matrix as JSON on stdout instead of tables', false)
    .option('--size <KiB>', 'buffer size in KiB (a multiple of 4, at most 16384)', parseSize, 256)
    .option('--seed <n>', 'seed of each machine\'s PRNG', parseSeed, 1)
    .addHelpText('after', HELP_AFTER)
    .action((o: { json: boolean; size: number; seed: number }) => {
      const r = runDmabufMatrix(o.size * 1024, o.seed);
      write(o.json ? `${JSON.stringify({ tool: 'phyr dmabuf', version: 1, ...r }, null, 2)}\n` : renderDmabufReport(r));
    });
}
