// What it is: `phyr block`, the block I/O report (scenario/block-io.ts): direct I/O of 4 KiB to 8 MiB
// from four kinds of user buffer through the block layer, the NVMe driver and the NVMe controller
// model, on the machine configurations of the mapping section; and its terminal rendering.

import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { formatBytes, formatCount } from '../base/index.ts';
import {
  BLOCK_IO_BUFFERS, BLOCK_IO_BUFFER_LABELS, BLOCK_IO_LEGEND, BLOCK_IO_SIZES, MAPPING_CONFIGS, MAPPING_CONFIG_NAMES, blockIoWrongBytes, runBlockIo,
  type BlockIoBuffer, type BlockIoOptions, type BlockIoReport, type MappingConfigName,
} from '../scenario/index.ts';
import { formatMs, renderTable, wrapWords } from './format.ts';
import { exitOnWrongBytes } from './wrong-bytes.ts';

/** Renders the block I/O report: one table per configuration, then the legend. */
export function renderBlockIoReport(r: BlockIoReport): string {
  const out: string[] = [
    'Block I/O: one Write of each size from the buffer to an NVMe namespace, then one Read back into it',
    '(bio -> split to the queue limits -> blk_rq_dma_map -> PRP or SGL -> the controller walks them by DMA -> completion, unmap)',
  ];
  for (const c of r.configs) {
    out.push('');
    const cap = c.maxHwBytes === null || c.maxBytes === null ? 'no queue'
      : `max_sectors ${formatBytes(c.maxBytes)}${c.maxBytes !== c.maxHwBytes ? ` (max_hw_sectors ${formatBytes(c.maxHwBytes)})` : ''}, ` +
        `${formatCount(c.maxSegments ?? 0)} segments`;
    out.push(`${c.name}: ${c.label} [${c.device}, ${cap}${c.offset ? `, I/O from byte ${c.offset} of each buffer` : ''}]`);
    const rows = r.rows.filter((x) => x.config === c.name);
    const header = ['Buffer', 'Size', 'Reqs', 'Segs', 'Data', 'Desc B', 'Lists', 'IOMMU maps', 'Walk steps', 'Batched', 'IOTLB inv', 'Bounce B',
      'Verified', 'ms'];
    const cells = rows.map((x) => [
      x.buffer,
      formatBytes(x.ioBytes),
      formatCount(x.requests),
      x.ok ? formatCount(x.dmaSegments) : '-',
      x.ok ? x.transfer : `no: ${x.errno}`,
      x.ok ? formatCount(x.descriptorBytes) : '-',
      x.ok ? formatCount(x.listPages) : '-',
      formatCount(x.iommuMaps),
      formatCount(x.tableWalkSteps),
      x.ok ? formatCount(x.batchedWalkSteps) : '-',
      formatCount(x.iotlbInvalidations),
      formatBytes(x.bounceBytes),
      x.bytesMismatched === 0 ? (x.bytesVerified ? formatBytes(x.bytesVerified) : '-') : `${formatCount(x.bytesMismatched)} B WRONG`,
      formatMs(x.ms),
    ]);
    out.push(renderTable(header, cells, header.map((_, i) => (i === 0 || i === 4 ? 'l' : 'r'))).split('\n').map((l) => `  ${l}`).join('\n'));
    const seen = new Set<string>();
    for (const x of rows.filter((y) => !y.ok && y.failure !== null)) {
      const line = `${x.buffer}: ${x.failure}`;
      if (seen.has(line)) continue;
      seen.add(line);
      for (const [i, l] of wrapWords(line, 106).entries()) out.push(`  ${i === 0 ? '' : '  '}${l}`);
    }
  }
  out.push('');
  out.push('Buffers:');
  for (const b of r.buffers) out.push(`  ${b.name.padEnd(10)} ${b.label}`);
  out.push('Columns:');
  for (const [k, v] of Object.entries(r.legend)) {
    const lines = wrapWords(v, 96);
    lines.forEach((l, i) => out.push(`  ${(i === 0 ? k : '').padEnd(12)} ${l}`));
  }
  return `${out.join('\n')}\n`;
}

function parseList<T extends string>(what: string, all: readonly T[]): (v: string) => T[] {
  return (v: string): T[] => {
    const names = v.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
    if (names.length === 0) throw new InvalidArgumentError(`${what} needs at least one of ${all.join(', ')}, got ${JSON.stringify(v)}.`);
    for (const n of names) {
      if (!(all as readonly string[]).includes(n)) throw new InvalidArgumentError(`unknown ${what.replace(/^--/, '').replace(/s$/, '')} ${JSON.stringify(n)}; choose from ${all.join(', ')}.`);
    }
    if (new Set(names).size !== names.length) throw new InvalidArgumentError(`a name is listed twice in ${JSON.stringify(v)}.`);
    return names as T[];
  };
}

const SIZE_NAMES: Readonly<Record<string, number>> = { '4k': 4096, '128k': 128 * 1024, '1m': 1 << 20, '8m': 8 << 20 };

function parseSizes(v: string): number[] {
  const out: number[] = [];
  for (const s of v.split(',').map((x) => x.trim().toLowerCase()).filter((x) => x.length > 0)) {
    const n = SIZE_NAMES[s] ?? (/^\d+$/.test(s) ? Number(s) : NaN);
    if (!Number.isSafeInteger(n) || n < 512 || n > 8 << 20 || n % 512 !== 0) {
      throw new InvalidArgumentError(`--sizes takes 4k, 128k, 1m, 8m or byte counts that are multiples of 512 up to 8 MiB, got ${JSON.stringify(s)}.`);
    }
    out.push(n);
  }
  if (out.length === 0) throw new InvalidArgumentError(`--sizes needs at least one size, got ${JSON.stringify(v)}.`);
  return out;
}

const BLOCK_HELP_AFTER = `
Configurations (--configs, default all; the mapping section's machines, each device an NVMe controller
with SGL support, no MDTS limit and one 64 GiB namespace of 512-byte blocks):
${MAPPING_CONFIG_NAMES.map((n) => `  ${n.padEnd(16)} ${MAPPING_CONFIGS[n].label}`).join('\n')}
Buffers (--buffers, default all): each mapped into one process of a 4 GiB aged machine; every I/O
starts at the buffer's start (at byte 512 on the untrusted configuration, as in the mapping section):
${BLOCK_IO_BUFFERS.map((b) => `  ${b.padEnd(10)} ${BLOCK_IO_BUFFER_LABELS[b]}`).join('\n')}
Sizes (--sizes, default ${BLOCK_IO_SIZES.map((s) => formatBytes(s)).join(', ')}): 4k, 128k, 1m, 8m or bytes.

Columns:
${Object.entries(BLOCK_IO_LEGEND).map(([k, v]) => `  ${k.padEnd(12)} ${v}`).join('\n')}

Behind an IOMMU the NVMe driver caps max_hw_sectors at dma_opt_mapping_size() (128 KiB: the IOVA
rcache's largest size), so a 1 MiB I/O is 8 requests where dma-direct sends 1 (bios are split to
max_sectors, at most 4 MiB by default, and to max_segments). Every figure except
the times is deterministic for a seed. The whole report is about 5 s of CPU time (the 8 MiB I/Os
move most of the bytes); --sizes, --buffers or --configs make it shorter.
Exit code 0 on success, 1 when a row read back wrong bytes (a defect in the model: the rows are
named on stderr), 2 for an invalid option or value.

Example:
  phyr block --configs no-iommu,iommu-strict --sizes 4k,1m
`;

interface BlockCliOptions {
  json: boolean;
  seed: number;
  aged: boolean;
  configs?: MappingConfigName[];
  buffers?: BlockIoBuffer[];
  sizes?: number[];
}

/** Adds `phyr block` to the program (it inherits the program's output and exit settings). */
export function addBlockCommand(program: Command, io: { stdout: { write(s: string): unknown }; stderr: { write(s: string): unknown } }): void {
  program
    .command('block')
    .description('Block I/O through the whole stack: 4 KiB to 8 MiB written from and read back into user buffers ' +
      '(anonymous 4 KiB pages, THP, hugetlb, a GPU BAR over P2P) through the block layer, the NVMe driver and the ' +
      'NVMe controller model, on the mapping section\'s machine configurations: requests, DMA segments, PRP or SGL, ' +
      'descriptor bytes, IOMMU work, bounce bytes and the bytes the controller moved.')
    .option('--json', 'print the report as JSON on stdout (for programs) instead of tables', false)
    .option('--seed <n>', 'seed of the machines\' PRNG', (v: string) => {
      const n = /^\d+$/.test(v.trim()) ? Number(v.trim()) : NaN;
      if (!Number.isSafeInteger(n) || n > 0xffffffff) throw new InvalidArgumentError(`--seed must be an integer in [0, 4294967295], got ${JSON.stringify(v)}.`);
      return n;
    }, 1)
    .option('--no-aged', 'use freshly booted machines (free memory not fragmented); default: aged')
    .option('--configs <list>', `comma-separated configurations, from ${MAPPING_CONFIG_NAMES.join(',')} (default: all)`, parseList('--configs', MAPPING_CONFIG_NAMES))
    .option('--buffers <list>', `comma-separated buffers, from ${BLOCK_IO_BUFFERS.join(',')} (default: all)`, parseList('--buffers', BLOCK_IO_BUFFERS))
    .option('--sizes <list>', 'comma-separated I/O sizes: 4k, 128k, 1m, 8m, or bytes (multiples of 512, at most 8 MiB); default all four', parseSizes)
    .addHelpText('after', BLOCK_HELP_AFTER)
    .action((o: BlockCliOptions) => {
      const opts: BlockIoOptions = {
        seed: o.seed, aged: o.aged,
        ...(o.configs ? { configs: o.configs } : {}),
        ...(o.buffers ? { buffers: o.buffers } : {}),
        ...(o.sizes ? { sizes: o.sizes } : {}),
      };
      const report = runBlockIo(opts);
      io.stdout.write(o.json ? `${JSON.stringify(report, null, 2)}\n` : renderBlockIoReport(report));
      exitOnWrongBytes('block', blockIoWrongBytes(report.rows), (s) => io.stderr.write(s));
    });
}
