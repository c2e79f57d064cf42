// runCliAsync leaves the scenario-file commands (and the parsers they load) out of the report
// commands' command lines; what any command line prints must not change with that.
import { describe, expect, it } from 'vitest';
import * as scenarioCommands from './scenario-commands.ts';
import { runCli } from './cli-sync.ts';
import { REPORT_COMMANDS, buildProgram, needsScenarioCommands, runCliAsync } from './program.ts';
import { captureIo } from '../../test/fixtures/cli.ts';


const names = (withScenario: boolean): string[] =>
  buildProgram(captureIo(), 'sync', null, withScenario ? scenarioCommands : null).commands.map((c) => c.name());

describe('the report commands without the scenario-file commands', () => {
  it('REPORT_COMMANDS are exactly the commands the program has without the scenario-file module', () => {
    expect([...names(false)].sort()).toEqual([...REPORT_COMMANDS].sort());
    const all = names(true);
    for (const c of REPORT_COMMANDS) expect(all).toContain(c);
    expect(all.filter((c) => !REPORT_COMMANDS.includes(c)).sort()).toEqual(['help', 'run', 'sweep', 'trace']);
  });
  it('needsScenarioCommands: only a command line that starts with a report command goes without them', () => {
    for (const c of REPORT_COMMANDS) expect(needsScenarioCommands([c, '--json'])).toBe(false);
    for (const argv of [[], ['--help'], ['help', 'compare'], ['run', 'x.yaml'], ['sweep'], ['trace', 'x.yaml'], ['comapre']]) {
      expect(needsScenarioCommands(argv)).toBe(true);
    }
  });
  it('prints what runCli prints for --help, a report command\'s --help, help <command>, an unknown command and a bad option', async () => {
    for (const argv of [['--help'], ['compare', '--help'], ['help', 'compare'], ['comapre'], ['compare', '--seed', 'x'], ['dmaops', '--help']]) {
      const a = captureIo();
      const b = captureIo();
      const codeAsync = await runCliAsync(argv, a);
      const codeSync = runCli(argv, b);
      expect({ argv, code: codeAsync, out: a.out(), err: a.err() }).toEqual({ argv, code: codeSync, out: b.out(), err: b.err() });
    }
  });
});
