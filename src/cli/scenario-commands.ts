// What it is: the commands that read scenario files or trace them (`phyr trace`, `phyr run`,
// `phyr sweep`) and `phyr help`, whose topics include the scenario file reference. They need
// scenario/file (its zod schema and the yaml parser, about 0.2 s to load on the 2-CPU development
// machine), which the report commands (`phyr compare` and its worker threads, block, dmabuf,
// dmaops, rdma, premap) never use: runCliAsync imports this module only when the command line
// may name one of these (program.ts, needsScenarioCommands).
export { addTraceCommand } from './trace.ts';
export { addRunCommand, type ScenarioCliIo } from './run.ts';
export { addSweepCommand } from './sweep.ts';
export { addHelpCommand } from './help.ts';
