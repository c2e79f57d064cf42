// What it is: `phyr run FILE [--json] [--config NAME] [--seed N]`: a scenario file (YAML or JSON)
// validated and run step by step (scenario/file), printed as text or JSON. A file that is missing or
// invalid is one message per problem on stderr, never a stack trace, and exit code 2; a run whose
// step failed unexpectedly prints its result and exits 1.

import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { InvalidArgumentError } from 'commander';
import { STEP_OPS, ScenarioError, formatScenarioResult, parseScenario, runScenario, scenarioJson, type Scenario } from '../scenario/file/index.ts';
import { wrapWords } from './format.ts';

/** Exit code of a run that stopped at a step that did not meet its expectation. */
export const EXIT_RUN_FAILED = 1;

/** Where the scenario commands write, and how they end with an exit code. */
export interface ScenarioCliIo {
  readonly out: (s: string) => void;
  readonly err: (s: string) => void;
  /** Ends the command with an exit code (the CLI's usage error for 2). */
  readonly exit: (code: number, message?: string) => void;
}

/** Reads and validates a scenario file. Throws ScenarioError (one line per problem) for a bad or unreadable file. */
export function loadScenarioFile(file: string): { scenario: Scenario; text: string } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as { code?: string }).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory' : code ?? (e as Error).message;
    throw new ScenarioError([{ path: '(file)', value: file, expected: 'a readable scenario file (YAML or JSON)', message: `cannot read ${file}: ${why}` }], file);
  }
  const format = /\.json$/i.test(file) ? 'json' : /\.ya?ml$/i.test(file) ? 'yaml' : undefined;
  return { scenario: parseScenario(text, { source: file, ...(format ? { format } : {}) }), text };
}

export function parseSeedArg(v: string): number {
  const s = v.trim();
  const n = /^0x[0-9a-f]+$/i.test(s) ? parseInt(s, 16) : /^\d+$/.test(s) ? Number(s) : NaN;
  if (!Number.isSafeInteger(n) || n < 0 || n > 0xffffffff) throw new InvalidArgumentError(`--seed must be an integer in [0, 4294967295], got ${JSON.stringify(v)}.`);
  return n;
}

/**
 * The text after `phyr run --help`. The step ops are the schema's (STEP_OPS, the ops a file may
 * use), so the list follows a new step without an edit here.
 */
export function runHelpAfter(): string {
  const intro = `The file names a machine (the createMachine config), optional named configs, processes, buffers and steps (${STEP_OPS.join(', ')}). "phyr help scenario" lists every field; "phyr help steps" every step; "phyr help <op>" one step. Examples are in examples/ (each with its expected output beside it).`;
  return `\n${wrapWords(intro, 100).join('\n')}\n${RUN_HELP_REST}`;
}

const RUN_HELP_REST = `
Output: one block per step (its result, the events it logged, its counter deltas), then the run's
counters, what teardown had to undo and dma-debug's leak check. A step may expect a failure
(expect: { errno: ENOMEM }), an event or byte mismatches; a step that does not meet its expectation
stops the run, everything live is torn down, and the exit code is 1. An invalid file: one line per
problem on stderr (field path, bad value, what was expected), exit code 2.

Example:
  phyr run examples/hugepage-1g.yaml
  phyr run examples/untrusted-thunderbolt.yaml --config no-min-align --json
`;

export function addRunCommand(program: Command, io: ScenarioCliIo): void {
  program
    .command('run')
    .description('Run a scenario file (YAML or JSON): a machine, buffers and the steps a driver takes; print each step\'s result and counters.')
    .argument('<file>', 'the scenario file')
    .option('--json', 'print the full result as JSON (bigints as hex strings)', false)
    .option('--config <name>', 'run with one of the file\'s configs applied')
    .option('--seed <n>', 'seed of the machine and the byte patterns (default: machine.seed, else 1)', parseSeedArg)
    .addHelpText('after', runHelpAfter())
    .action((file: string, o: { json: boolean; config?: string; seed?: number }) => {
      try {
        const { scenario } = loadScenarioFile(file);
        const r = runScenario(scenario, { ...(o.config !== undefined ? { config: o.config } : {}), ...(o.seed !== undefined ? { seed: o.seed } : {}) });
        io.out(o.json ? `${scenarioJson(r)}\n` : formatScenarioResult(r, scenario.description !== undefined ? { description: scenario.description } : {}));
        if (!r.ok) io.exit(EXIT_RUN_FAILED);
      } catch (e) {
        if (e instanceof ScenarioError) {
          io.exit(2, `${e.message}\n`);
          return;
        }
        throw e;
      }
    });
}
