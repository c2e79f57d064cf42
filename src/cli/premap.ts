// What it is: `phyr premap`, pre-mapped dma-buf I/O against per-I/O mapping (src/scenario/premap.ts):
// its commander command and its terminal rendering. Added to the program by buildProgram.

import { InvalidArgumentError, Option, type Command } from 'commander';
import { formatCount } from '../base/index.ts';
import { PREMAP_DMABUFS, PREMAP_MODES, PREMAP_MODE_LABELS, runPremap, type PremapDmabufSource, type PremapReport } from '../scenario/index.ts';
import { renderTable } from './format.ts';

function num(x: number, digits = 2): string {
  if (x === 0) return '0';
  if (Number.isInteger(x)) return formatCount(x);
  return x.toFixed(digits);
}

/** The table (one block per I/O size), the cost parameters with their sources, the published figures. */
export function renderPremapReport(r: PremapReport): string {
  const out = [`phyr premap: per-I/O work of each mapping mode (${r.ios} I/Os per row, half writes then half reads; pre-mapped dma-buf from ${r.dmabuf})`, ''];
  for (const size of r.sizes) {
    out.push(`${formatCount(size / 1024)} KiB I/O`);
    const rows = r.rows.filter((x) => x.ioBytes === size).map((x) => [
      x.mode, x.ok ? 'ok' : `FAIL ${x.failure ?? 'bytes'}`, num(x.perIo.iovaAllocs), num(x.perIo.walkSteps), num(x.perIo.pteWrites),
      num(x.perIo.iotlbRange), num(x.perIo.iotlbGlobal, 4), num(x.perIo.fqEntries), num(x.perIo.swiotlbBytes), num(x.perIo.descriptorBytes),
      num(x.perIo.dmaSyncs), x.ns.toFixed(0), `${(x.iopsPerCore / 1e6).toFixed(2)} M`, x.ratioToPassthrough.toFixed(2), x.qd1LatencyUs.toFixed(2),
    ]);
    out.push(renderTable(['Mode', 'Result', 'IOVA', 'Walk', 'PTE', 'Inv range', 'Inv global', 'FQ', 'Bounce B', 'Desc B', 'Syncs', 'ns/IO', 'IOPS/core', 'x pass', 'QD1 us'],
      rows, ['l', 'l', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r', 'r']));
    out.push('');
  }
  out.push('Modes:');
  for (const m of PREMAP_MODES) out.push(`  ${m.padEnd(12)} ${PREMAP_MODE_LABELS[m]}`);
  out.push('', 'Cost model (ns per counted operation; not fitted to the published IOPS below):');
  for (const [k, p] of Object.entries(r.params)) out.push(`  ${k.padEnd(15)} ${String(p.ns).padStart(6)}  ${p.what}. Source: ${p.source}${p.verified ? '' : ' (not re-read here)'}`);
  const pub = r.published;
  const pass = pub.before.passthrough;
  out.push('', `Published (${pub.source}):`);
  out.push(`  before: strict ${formatCount(pub.before.strict)} (x pass ${(pub.before.strict / pass).toFixed(2)}), lazy ${formatCount(pub.before.lazy)} (x pass ${(pub.before.lazy / pass).toFixed(2)}), passthrough ${formatCount(pass)} IOPS; after (pre-mapped): ${formatCount(pub.after.strict)} in every mode`);
  out.push('', 'Columns:');
  for (const [k, v] of Object.entries(r.legend)) out.push(`  ${k.padEnd(11)} ${v}`);
  return `${out.join('\n')}\n`;
}

function parseIos(v: string): number {
  const n = /^\d+$/.test(v.trim()) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n < 2 || n > 65536) throw new InvalidArgumentError(`--ios must be an integer in [2, 65536], got ${JSON.stringify(v)}.`);
  return n;
}

function parseSizes(v: string): number[] {
  const sizes = v.split(',').map((s) => {
    const n = /^\d+$/.test(s.trim()) ? Number(s) : NaN;
    if (!Number.isSafeInteger(n) || n < 4 || n > 1024 || n % 4 !== 0) {
      throw new InvalidArgumentError(`--sizes must be KiB multiples of 4 in [4, 1024], comma-separated, got ${JSON.stringify(v)}.`);
    }
    return n * 1024;
  });
  const dup = sizes.find((s, i) => sizes.indexOf(s) !== i);
  if (dup !== undefined) throw new InvalidArgumentError(`--sizes names ${dup / 1024} KiB twice, got ${JSON.stringify(v)}.`);
  return sizes;
}

function parseDmabuf(v: string): PremapDmabufSource {
  if (!(PREMAP_DMABUFS as readonly string[]).includes(v)) throw new InvalidArgumentError(`--dmabuf must be one of ${PREMAP_DMABUFS.join(', ')}, got ${JSON.stringify(v)}.`);
  return v as PremapDmabufSource;
}

function parseSeed(v: string): number {
  const n = /^\d+$/.test(v.trim()) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n) || n < 0 || n > 0xffffffff) throw new InvalidArgumentError(`--seed must be an integer in [0, 4294967295], got ${JSON.stringify(v)}.`);
  return n;
}

const HELP_AFTER = `
Each (mode, size) runs on a fresh machine (512 MiB of RAM; hb0 -> rp0 -> sw0 -> {nvme0 with an NVMe
controller model, gpu0 with a 64 MiB P2P VRAM BAR}): one warm-up write and read, then --ios I/Os (half
writes of the buffer to the namespace, then half reads back into the cleared buffer), real bytes
checked. Counts are per I/O (averages: the lazy flush queue's global flushes are amortised).
Modes: ${PREMAP_MODES.join(', ')}.
--json prints { tool: 'phyr premap', version: 1, dmabuf, sizes, ios, rows: [...], params, published, legend }.
Exit code 0 on success, 2 for an invalid option or value.
`;

/** Adds the `premap` command to the program (it inherits the program's output and exit handling). */
export function addPremapCommand(program: Command, write: (s: string) => void): Command {
  return program.command('premap')
    .description('Pre-mapped dma-buf I/O (the RFC "dmabuf read/write via io_uring") against per-I/O mapping in every IOMMU mode and a ' +
      'registered user buffer kept mapped: per-I/O IOVA allocations, walk steps, PTE writes, IOTLB invalidations, bounce and descriptor ' +
      'bytes, and a cost model\'s predicted ns/IO, IOPS per core and ratio to passthrough.')
    .option('--json', 'print the report as JSON on stdout instead of tables', false)
    // the default is kept in bytes, as runPremap takes it; the help shows it in the option's unit
    .addOption(new Option('--sizes <KiB,...>', 'I/O sizes in KiB, each once (multiples of 4, at most 1024)')
      .argParser(parseSizes).default([4 * 1024, 128 * 1024], '4,128'))
    .option('--ios <n>', 'I/Os per mode and size', parseIos, 512)
    .option('--dmabuf <source>', `memory of the pre-mapped dma-buf: ${PREMAP_DMABUFS.join(' or ')}`, parseDmabuf, 'system-heap')
    .option('--seed <n>', 'seed of each machine\'s PRNG', parseSeed, 1)
    .addHelpText('after', HELP_AFTER)
    .action((o: { json: boolean; sizes: number[]; ios: number; dmabuf: PremapDmabufSource; seed: number }) => {
      const r = runPremap({ sizes: o.sizes, ios: o.ios, dmabuf: o.dmabuf, seed: o.seed });
      write(o.json ? `${JSON.stringify({ tool: 'phyr premap', version: 1, ...r }, null, 2)}\n` : renderPremapReport(r));
    });
}
