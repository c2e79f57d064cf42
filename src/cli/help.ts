// What it is: `phyr help [topic]`: a command's help (as `phyr <command> --help`), or the scenario
// file reference generated from its schema: `scenario` (every field), `machine`, `steps`, or one
// step op (`phyr help map`).

import type { Command } from 'commander';
import { STEP_OPS, machineHelp, scenarioHelp, stepHelp, stepsHelp } from '../scenario/file/index.ts';
import type { ScenarioCliIo } from './run.ts';

export function addHelpCommand(program: Command, io: ScenarioCliIo): void {
  program.helpCommand(false);
  program
    .command('help')
    .description('Show help: "phyr help <command>", or the scenario file reference: "phyr help scenario", "phyr help machine", "phyr help steps", "phyr help <step op>".')
    .argument('[topic]', `a command, scenario, machine, steps, or a step op (${STEP_OPS.join(', ')})`)
    .action((topic?: string) => {
      if (topic === undefined) {
        program.outputHelp();
        return;
      }
      const cmd = program.commands.find((c) => c.name() === topic && c.name() !== 'help');
      if (cmd !== undefined) {
        cmd.outputHelp();
        return;
      }
      if (topic === 'scenario') io.out(scenarioHelp());
      else if (topic === 'machine') io.out(`${machineHelp()}\n`);
      else if (topic === 'steps') io.out(`${stepsHelp()}\n`);
      else if ((STEP_OPS as readonly string[]).includes(topic)) io.out(`${stepHelp(topic)}\n`);
      else {
        const cmds = program.commands.map((c) => c.name()).filter((n) => n !== 'help');
        io.exit(2, `error: unknown help topic '${topic}' (expected a command: ${cmds.join(', ')}; or scenario, machine, steps, or a step op)\n`);
      }
    });
}
