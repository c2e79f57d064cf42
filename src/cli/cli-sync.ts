// What it is: runCli, the whole CLI in the calling thread (the tests' runner): every command,
// the scenario-file ones included, registered at once. The executable runs runCliAsync
// (program.ts), which loads the scenario-file commands only when the command line may name one.
import * as scenarioCommands from './scenario-commands.ts';
import { buildProgram, exitCode, type CliIo } from './program.ts';

/**
 * Runs the CLI on argv (without the node and script entries) in the calling thread (--jobs is
 * checked but not used). Returns the exit code: 0 on success (and for --help / --version), 2 for
 * invalid usage; other errors propagate.
 */
export function runCli(argv: readonly string[], io: CliIo): number {
  const program = buildProgram(io, 'sync', null, scenarioCommands);
  try {
    program.parse([...argv], { from: 'user' });
    return 0;
  } catch (e) {
    return exitCode(e, io);
  }
}
