// What it is: `phyr trace FILE --buffer NAME [--offset N]`: runs a scenario file up to a step and
// prints every address a byte of one buffer (or the whole buffer, in runs) has at every layer
// (src/scenario/trace). Added to the program by buildProgram. Bad input is one message, exit 2.

import { readFileSync } from 'node:fs';
import { CommanderError, InvalidArgumentError, type Command } from 'commander';
import { ScenarioError, ScenarioRunner, parseScenario } from '../scenario/file/index.ts';
import { defaultTraceStep, renderTrace, traceBuffer, traceToJson } from '../scenario/trace/index.ts';

/** Exit code for invalid usage or input (as the program's other commands). */
const EXIT_USAGE = 2;

function usage(message: string): CommanderError {
  return new CommanderError(EXIT_USAGE, 'phyr.usage', `error: ${message}\n`);
}

function parseNonNegative(what: string): (v: string) => number {
  return (v: string): number => {
    const s = v.trim();
    const n = /^0x[0-9a-f]+$/i.test(s) ? parseInt(s, 16) : /^\d+$/.test(s) ? Number(s) : NaN;
    if (!Number.isSafeInteger(n) || n < 0) throw new InvalidArgumentError(`${what} must be a non-negative integer (decimal or 0x hex), got ${JSON.stringify(v)}.`);
    return n;
  };
}

interface TraceCliOptions {
  buffer: string;
  offset?: number;
  step?: number;
  config?: string;
  seed?: number;
  unmapped: boolean;
  json: boolean;
}

const HELP_AFTER = `
The scenario runs on the machine its file describes, step by step, up to the step the trace is taken
after: --step K (the index "phyr run" prints, from 0), or by default the last step after which the
buffer is still mapped by some device or IOAS (so a scenario that unmaps at its end is traced while its
mappings are live; a buffer no step maps is traced after the last step that leaves it mmapped). The run
then stops there: nothing is torn down, and taking the trace changes nothing (the IOTLB is peeked,
no counter moves).

For each byte: the user VA, the user page-table entry (level, index, the entry as the machine's page tables hold it:
x86-64 at 4 KiB pages, arm64 at 16 and 64 KiB),
pfn and folio (order, refcount, pincount), physical address, memory region and type, P2P provider;
then for each live device mapping of the buffer: the descriptor entry that carries the byte (sg
entry, DMA list entry, dma address, IOVA window), and the DMA address as the device resolves it: a
P2P bus address, a dma-direct address (with its dma_range_map entry), or an IOVA with each IOMMU
table level walked (table page physical address, index, the entry's bytes) and the IOTLB hit or miss
(a stale hit is flagged), down to the physical address, and the swiotlb slot when the byte is bounced.
For each IOAS mapping (ioas-map): the IOVA and its area, then per hw_pagetable its domain's walk of
the IOVA and the devices attached to it (each reaching the byte or not), and the devices an earlier
ioas-attach put on the IOAS that have left it (where their DMA at the IOVA lands now).
Without --offset the whole buffer is shown as runs: contiguous bytes sharing every entry (one user
PTE, one descriptor entry, one IOMMU leaf and IOTLB entry, one swiotlb slot).

--unmapped adds the buffer's mappings (and IOAS mappings) that were unmapped before the traced
step, marked UNMAPPED: where a device access with their old DMA addresses lands now. After a lazy unmap the IOTLB still
holds the translation (a STALE hit that reaches the byte); once flushed, or in strict mode, the
access faults.

--json prints the same trace as one JSON object (bigints as hex strings).
Exit code 0 on success, 2 for an invalid option, file, buffer, offset or step.

Example:
  phyr trace examples/hugepage-1g.yaml --buffer huge --offset 0x12345678
  phyr trace examples/lazy-stale-iotlb.yaml --buffer buf --offset 0x1000 --step 4 --unmapped
  phyr trace examples/iommufd-shared-ioas.yaml --buffer guest --offset 0x1234 --step 10
`;

/** Registers `phyr trace` on the program. */
export function addTraceCommand(program: Command, write: (s: string) => void): void {
  program
    .command('trace')
    .description('Every address a byte of a scenario buffer has at every layer: VA, user PTE, pfn and folio, physical address, ' +
      'memory type and P2P provider, and for each device mapping the descriptor entry, bus / dma-direct address or IOVA with the ' +
      'IOMMU walk and IOTLB state, and the swiotlb slot; for each IOAS mapping its area and each hw_pagetable\'s walk with its devices.')
    .argument('<file>', 'scenario file (YAML or JSON)')
    .requiredOption('--buffer <name>', 'the buffer to trace (a name from the file\'s buffers)')
    .option('--offset <n>', 'the byte to trace, from the buffer\'s start (decimal or 0x hex); default: the whole buffer in runs', parseNonNegative('--offset'))
    .option('--step <k>', 'trace after step k (the index phyr run prints, from 0); default: the last step after which the buffer is mapped', parseNonNegative('--step'))
    .option('--config <name>', 'a configuration of the file (its configs) applied over the machine')
    .option('--seed <n>', 'seed of the run (default: the machine\'s seed, else 1)', parseNonNegative('--seed'))
    .option('--unmapped', 'also follow the buffer\'s mappings that were unmapped already: where a device access with their old DMA addresses lands now (a stale IOTLB entry, a fault, a reused IOVA)', false)
    .option('--json', 'print the trace as JSON (bigints as hex strings)', false)
    .addHelpText('after', HELP_AFTER)
    .action((file: string, o: TraceCliOptions) => {
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (e) {
        throw usage(`cannot read scenario file ${JSON.stringify(file)}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
      try {
        const scenario = parseScenario(text, { source: file });
        const buf = scenario.buffers.find((b) => b.name === o.buffer);
        if (buf === undefined) {
          const names = scenario.buffers.map((b) => b.name);
          throw usage(`--buffer ${JSON.stringify(o.buffer)} is not a buffer of ${file}${names.length > 0 ? ` (buffers: ${names.join(', ')})` : ' (it has no buffers)'}`);
        }
        if (o.offset !== undefined && o.offset >= buf.len) {
          throw usage(`--offset ${o.offset} is outside buffer ${buf.name} (${buf.len} bytes: offsets 0 to ${buf.len - 1})`);
        }
        const last = scenario.steps.length - 1;
        if (o.step !== undefined && o.step > last) throw usage(`--step ${o.step} is beyond the scenario's last step (${last})`);
        const runOpts = { ...(o.seed !== undefined ? { seed: o.seed } : {}), ...(o.config !== undefined ? { config: o.config } : {}) };
        const step = o.step ?? defaultTraceStep(scenario, buf.name, runOpts);
        if (step === null) throw usage(`buffer ${buf.name} is never mmapped by a step of ${file}: nothing to trace`);
        const runner = new ScenarioRunner(scenario, runOpts);
        while (runner.index <= step && runner.step() !== null);
        if (runner.index <= step) {
          throw usage(`the run stopped at step ${runner.index - 1} (a step did not do what the file expects: see phyr run ${file}), before step ${step}`);
        }
        const b = runner.buffers.get(buf.name);
        if (b === undefined || !b.live) throw usage(`buffer ${buf.name} is not mmapped after step ${step}: trace after an earlier --step`);
        const t = traceBuffer(runner, buf.name, o.offset, { unmapped: o.unmapped });
        write(o.json ? `${JSON.stringify(traceToJson(t), null, 2)}\n` : renderTrace(t));
      } catch (e) {
        if (e instanceof ScenarioError) throw usage(e.message);
        throw e;
      }
    });
}
