// What it is: the `phyr` command line (commander): `phyr compare` here, the other commands from
// their own files. Option values are validated here; a bad value is an error naming the option and
// the value, with exit code 2. runCliAsync (the executable's) runs the mapping section's
// configurations on worker threads (mapping-pool.ts) and loads the scenario-file commands only when
// the command line may name one; runCli (cli-sync.ts) runs everything in the calling thread, with
// the same report.

import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import {
  BUFFER_NAMES, LEGEND, MAX_RAM_GIB, MAPPING_CONFIGS, MAPPING_CONFIG_NAMES, MAPPING_LEGEND, UNTRUSTED_MAP_OFFSET, mappingWrongBytes, runCompare, runCompareAsync,
  type BufferName, type CompareOptions, type CompareReport, type MappingConfigName,
} from '../scenario/index.ts';
import { addBlockCommand } from './block.ts';
import { addDmabufCommand } from './dmabuf.ts';
import { addPremapCommand } from './premap.ts';
import { addDmaOpsCommand } from './dma-ops.ts';
import { addRdmaCommand } from './rdma.ts';
import { renderCompareReport } from './format.ts';
import { exitOnWrongBytes } from './wrong-bytes.ts';
import { MAX_DEFAULT_JOBS, createMappingPool, defaultJobs, type MappingPool } from './mapping-pool.ts';
import { ProgressBar, wantProgress, type ProgressStream } from './progress.ts';
// Types only: the module itself is loaded on demand (runCliAsync) or by cli-sync.ts.
import type * as ScenarioCommands from './scenario-commands.ts';

/** The scenario-file commands' module (scenario-commands.ts), once loaded. */
export type ScenarioCommandsModule = typeof ScenarioCommands;

/** Where the CLI writes: stdout for the report, stderr for errors and the progress bar. */
export interface CliIo {
  readonly stdout: { write(s: string): unknown };
  readonly stderr: ProgressStream & { readonly isTTY?: boolean };
  readonly env: NodeJS.ProcessEnv;
}

/** Exit code for invalid usage (bad option value, unknown option or command). */
export const EXIT_USAGE = 2;

function parseIntArg(what: string, min: number, max: number): (v: string) => number {
  return (v: string): number => {
    const s = v.trim();
    const n = /^0x[0-9a-f]+$/i.test(s) ? parseInt(s, 16) : /^\d+$/.test(s) ? Number(s) : NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`${what} must be an integer in [${min}, ${max}], got ${JSON.stringify(v)}.`);
    }
    return n;
  };
}

function parseConfigs(v: string): MappingConfigName[] {
  const names = v.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  if (names.length === 0) throw new InvalidArgumentError(`--configs needs at least one of ${MAPPING_CONFIG_NAMES.join(', ')}, got ${JSON.stringify(v)}.`);
  for (const n of names) {
    if (!(MAPPING_CONFIG_NAMES as readonly string[]).includes(n)) {
      throw new InvalidArgumentError(`unknown configuration ${JSON.stringify(n)}; choose from ${MAPPING_CONFIG_NAMES.join(', ')}.`);
    }
  }
  if (new Set(names).size !== names.length) throw new InvalidArgumentError(`a configuration is listed twice in ${JSON.stringify(v)}.`);
  return names as MappingConfigName[];
}

function parseBuffers(v: string): BufferName[] {
  const names = v.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  if (names.length === 0) throw new InvalidArgumentError(`--buffers needs at least one of ${BUFFER_NAMES.join(', ')}, got ${JSON.stringify(v)}.`);
  const out: BufferName[] = [];
  for (const n of names) {
    if (!(BUFFER_NAMES as readonly string[]).includes(n)) {
      throw new InvalidArgumentError(`unknown buffer ${JSON.stringify(n)}; choose from ${BUFFER_NAMES.join(', ')}.`);
    }
    if (out.includes(n as BufferName)) throw new InvalidArgumentError(`buffer ${JSON.stringify(n)} is listed twice.`);
    out.push(n as BufferName);
  }
  return out;
}

const COMPARE_HELP_AFTER = `
Buffers (--buffers, default all, in this order):
  anon      1 GiB of anonymous memory in base pages (mostly scattered on an aged machine)
  thp       1 GiB of anonymous memory with transparent huge pages (2 MiB folios where available)
  hugetlb   4 GiB of 1 GiB hugetlb pages (the pool is reserved at boot; 512 MiB pages at --page-size
            65536: arm64 with 64 KiB pages has no 1 GiB page)
  device    256 MiB of a 16 GiB device memory region (bar0: no struct page, MMIO) mapped into the process

Columns:
${Object.entries(LEGEND).map(([k, v]) => `  ${k.padEnd(26)} ${v}`).join('\n')}

Mapping section (on by default; --no-mapping leaves it out): configurations (--configs, default all):
${MAPPING_CONFIG_NAMES.map((n) => `  ${n.padEnd(16)} ${MAPPING_CONFIGS[n].label}`).join('\n')}
Methods: scatterlist + dmaMapSgtable; dmaMapPhys per phyr; two-step dmaIovaTryAlloc/Link/Sync (falls back to
dmaMapPhys per range without dma-iommu); dmaMapPhyrs. Mapping columns:
${Object.entries(MAPPING_LEGEND).map(([k, v]) => `  ${k.padEnd(26)} ${v}`).join('\n')}
The untrusted configuration maps each buffer from byte ${UNTRUSTED_MAP_OFFSET} (a sub-page offset) to its end, so the
swiotlb bouncing of unaligned heads shows in Bounce bytes; every other configuration maps whole buffers.
The configurations run on worker threads (--jobs) while the main thread measures the layouts; with the
default buffers the mapping section is about 12 s of CPU time (7 machines; about 200,000 DMA ranges per
anonymous buffer per method); --no-mapping, --buffers or --configs make it shorter. dma-debug is off, as
in the production kernels performance is compared on (it only observes: the figures are the same);
--dma-debug turns it on and adds its reports to each mapping row.

The machine always reserves the hugetlb pool (4 x 1 GiB, 8 x 512 MiB at 64 KiB pages), whatever --buffers says, so every run of a
seed has the same physical layout: --ram must leave room for it.

Every figure except the times is deterministic for a seed. --json prints the same report as one JSON
object (addresses as hex strings); the progress bar is drawn on stderr only when stderr is a terminal,
--json is not given and CI is not set. Exit code 0 on success, 1 when a mapping row read back wrong bytes through
its mapping (a defect in the model: the rows are named on stderr), 2 for an invalid option or value.

Example:
  phyr compare --ram 16 --buffers hugetlb,device --seed 7
`;

interface CompareCliOptions {
  mapping: boolean;
  configs?: MappingConfigName[];
  json: boolean;
  seed: number;
  ram: number;
  aged: boolean;
  buffers?: BufferName[];
  maxSegment?: number;
  pageSize: number;
  progress: boolean;
  jobs?: number;
  dmaDebug: boolean;
}

/** How the compare action runs the mapping section: in this thread, or on worker threads. */
type Mode = 'sync' | 'workers';

/**
 * The commands that need no scenario file: a command line that starts with one of them builds the
 * program without the scenario-file commands (see scenario-commands.ts), and so never loads the
 * scenario parsers. Any other command line (help, --help, run, a typo) gets every command.
 */
export const REPORT_COMMANDS: readonly string[] = ['compare', 'block', 'dmabuf', 'dmaops', 'rdma', 'premap'];

/** Whether argv may name a scenario-file command (or ask for the list of all commands). */
export function needsScenarioCommands(argv: readonly string[]): boolean {
  return argv.length === 0 || !REPORT_COMMANDS.includes(argv[0]);
}

/**
 * Builds the commander program. mode 'sync' runs `compare` in this thread (parse); 'workers' runs
 * its mapping configurations on --jobs workers, using `prewarmed` when it has that many
 * (parseAsync). `scenario`: the scenario-file commands' module, or null to leave those commands out.
 */
export function buildProgram(io: CliIo, mode: Mode, prewarmed: MappingPool | null, scenario: ScenarioCommandsModule | null): Command {
  const program = new Command('phyr');
  program
    .description('An executable model of the Linux physical-range (phyr) DMA stack on a simulated machine.')
    .version('0.1.0')
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
    })
    .showHelpAfterError('(run "phyr help" for the commands)')
    .exitOverride();

  program
    .command('compare')
    .description('Set the seeds\' claims side by side: one pinned user buffer described as a page array + scatterlist, ' +
      'a bio_vec list, a phyr list and an 8-byte page list, with entries, kernel bytes, whether the layout can describe ' +
      'the buffer, and the model\'s time to build it.')
    .option('--json', 'print the report as JSON on stdout (for programs) instead of tables', false)
    .option('--seed <n>', 'seed of the machine\'s PRNG: same seed, same physical layout and figures', parseIntArg('--seed', 0, 0xffffffff), 1)
    .option('--ram <GiB>', 'System RAM of the simulated machine, in GiB', parseIntArg('--ram', 1, MAX_RAM_GIB), 64)
    .option('--no-aged', 'use a freshly booted machine (free memory not fragmented); default: aged, as a long-running system')
    .option('--buffers <list>', `comma-separated buffers to compare, from ${BUFFER_NAMES.join(',')} (default: all)`, parseBuffers)
    .option('--max-segment <bytes>', 'max_segment for the scatterlist (sgAllocTableFromPagesSegment); default UINT_MAX rounded down to the page size, as sg_alloc_table_from_pages',
      parseIntArg('--max-segment', 4096, 0xffffffff))
    .addOption(new Option('--page-size <bytes>', 'base page size of the machine (16384 and 65536: arm64-style, the IOMMU walks ARM LPAE tables of that granule)').choices(['4096', '16384', '65536']).default('4096'))
    .option('--mapping', `include the DMA mapping section (the default): the buffers mapped for a PCI device on ${MAPPING_CONFIG_NAMES.length} machine configurations by 4 methods, with a device round trip`, true)
    .option('--no-mapping', 'leave the DMA mapping section out (the layout comparison alone takes about 1 s)')
    .option('--configs <list>', `comma-separated mapping configurations, from ${MAPPING_CONFIG_NAMES.join(',')} (default: all; ignored with --no-mapping)`, parseConfigs)
    .option('--dma-debug', 'run the mapping machines with dma-debug (CONFIG_DMA_API_DEBUG) checking every mapping; the rows then count its reports (default: off, as production kernels)', false)
    .option('--jobs <n>', `worker threads for the mapping configurations besides the main thread, which joins them after the layouts (default: one per CPU but one, at most ${MAX_DEFAULT_JOBS}); 0 runs everything in the main thread`,
      parseIntArg('--jobs', 0, 64))
    .option('--no-progress', 'never draw the progress bar on stderr (it is drawn only when stderr is a terminal, without --json, outside CI)')
    .addHelpText('after', COMPARE_HELP_AFTER)
    .action((raw: Omit<CompareCliOptions, 'pageSize'> & { pageSize: string }) => {
      const o: CompareCliOptions = { ...raw, pageSize: Number(raw.pageSize) };
      if (o.maxSegment !== undefined && o.maxSegment < o.pageSize) {
        throw usageError(`option '--max-segment <bytes>' argument ${o.maxSegment} is invalid. --max-segment must be at least the page size (${o.pageSize}).`);
      }
      const opts: CompareOptions = {
        ramGiB: o.ram, seed: o.seed, aged: o.aged, pageSize: o.pageSize,
        ...(o.buffers ? { buffers: o.buffers } : {}),
        ...(o.maxSegment !== undefined ? { maxSegment: o.maxSegment } : {}),
        mapping: o.mapping,
        ...(o.configs ? { mappingConfigs: o.configs } : {}),
        ...(o.dmaDebug ? { dmaDebug: true } : {}),
      };
      const bar = wantProgress(o, io.stderr.isTTY, io.env) ? new ProgressBar(io.stderr) : null;
      const progress = bar ? (d: number, t: number, l: string): void => bar.update(d, t, l) : undefined;
      // Invalid combinations of values (e.g. too little RAM for the hugetlb pool) are usage errors.
      const failed = (e: unknown): never => {
        bar?.done();
        if (e instanceof RangeError || e instanceof TypeError) {
          // the pool does not shrink with --buffers (a seed gives one layout), which a small --ram meets first
          const hint = e.message.startsWith('config.hugetlb') ? '; the hugetlb pool is reserved whatever --buffers says: raise --ram' : '';
          throw usageError(`these option values do not make a machine (--ram ${o.ram}, --page-size ${o.pageSize}): ${e.message}${hint}`);
        }
        throw e;
      };
      const print = (report: CompareReport): void => {
        bar?.done();
        io.stdout.write(o.json ? `${JSON.stringify(report, null, 2)}\n` : renderCompareReport(report));
        exitOnWrongBytes('compare', mappingWrongBytes(report.mapping?.rows ?? []), (s) => io.stderr.write(s));
      };
      const jobs = o.jobs ?? defaultJobs(o.mapping ? (o.configs ?? MAPPING_CONFIG_NAMES).length : 0);
      const pool = mode !== 'workers' || !o.mapping || jobs === 0 ? null
        : prewarmed !== null && prewarmed.size === jobs ? prewarmed : createMappingPool(jobs);
      if (pool === null) {
        let report: CompareReport;
        try {
          report = runCompare(opts, progress);
        } catch (e) {
          return failed(e);
        }
        print(report);
        return;
      }
      return runCompareAsync(opts, progress, pool).then(print, failed).finally(() => pool.close());
    });

  addBlockCommand(program, io);
  const err = (s: string): void => { io.stderr.write(s); };
  addDmabufCommand(program, (s) => io.stdout.write(s));
  addDmaOpsCommand(program, (s) => io.stdout.write(s), err);
  addRdmaCommand(program, (s) => io.stdout.write(s), err);
  scenario?.addTraceCommand(program, (s) => io.stdout.write(s));
  addPremapCommand(program, (s) => io.stdout.write(s));
  if (scenario !== null) {
    const scenarioIo: ScenarioCommands.ScenarioCliIo = {
      out: (s) => io.stdout.write(s),
      err: (s) => io.stderr.write(s),
      exit: (code, message) => {
        throw new CommanderError(code, code === EXIT_USAGE ? 'phyr.usage' : 'phyr.exit', message ?? '');
      },
    };
    scenario.addRunCommand(program, scenarioIo);
    scenario.addSweepCommand(program, { ...scenarioIo, stderr: io.stderr, env: io.env }, mode);
    scenario.addHelpCommand(program, scenarioIo);
  }
  // a usage error points at the options of the command it was made for (commander copies the
  // program's hint into each command made after it; the help command keeps the program's)
  for (const c of program.commands) {
    if (c.name() !== 'help') c.showHelpAfterError(`(run "phyr help ${c.name()}" for the options)`);
  }

  return program;
}

function usageError(message: string): CommanderError {
  return new CommanderError(EXIT_USAGE, 'phyr.usage', `error: ${message}\n`);
}

/** The exit code for what parse threw: 0 for --help and --version, else the command's or 2. */
export function exitCode(e: unknown, io: CliIo): number {
  if (e instanceof CommanderError) {
    if (e.exitCode === 0) return 0;
    if (e.code === 'phyr.usage') io.stderr.write(e.message);
    if (e.code === 'phyr.exit') return e.exitCode;
    return EXIT_USAGE;
  }
  throw e;
}

/**
 * runCli (cli-sync.ts) as the executable runs it: the mapping section's configurations on --jobs
 * worker threads (and this thread, once it has measured the layouts). The same output, apart from
 * the times. The scenario-file commands are loaded only when argv may name one (needsScenarioCommands).
 * `prewarmed`: workers started early (main.ts), used when the run wants that many; closed at the end
 * either way.
 */
export async function runCliAsync(argv: readonly string[], io: CliIo, prewarmed: MappingPool | null = null): Promise<number> {
  try {
    const scenario = needsScenarioCommands(argv) ? await import('./scenario-commands.ts') : null;
    await buildProgram(io, 'workers', prewarmed, scenario).parseAsync([...argv], { from: 'user' });
    return 0;
  } catch (e) {
    return exitCode(e, io);
  } finally {
    await prewarmed?.close();
  }
}
