// scenario/file: scenario files (YAML / JSON) -> a validated Scenario -> a run on a machine,
// step by step (ScenarioRunner) or whole (runScenario); text and JSON output.
export {
  ScenarioError, type BufferState, type CounterDelta, type DmaSegment, type IoasAreaState, type IoasHwptState, type IoasMappingPiece, type IoasMappingState, type IoasState, type LeakReport, type MappingState, type PinState,
  type Scenario, type ScenarioBacking, type ScenarioConfig, type ScenarioBuffer, type ScenarioDeviceSetup, type ScenarioDir, type ScenarioIssue,
  type ScenarioResult, type ScenarioStep, type StepBase, type StepExpect, type StepResult,
} from './types.ts';
export { parseScenario, type ParseOptions } from './parse.ts';
export { validateScenario, formatPath } from './check.ts';
export { parseSize, parseBigSize } from './sizes.ts';
export { STEP_OPS, STEP_SCHEMAS, scenarioSchema, type StepOp } from './schema.ts';
export { ScenarioRunner, runScenario, type RunOptions } from './runner.ts';
export { counterText, formatScenarioResult, scenarioJson, stepStatus } from './format.ts';
export { eventLine, ioasHeldRuns } from './runner.ts';
export { parseSeeds, runSweep, runSweepRun, sweepCsv, sweepRuns, type SweepRow, type SweepRun } from './sweep.ts';
export { machineHelp, scenarioHelp, stepHelp, stepsHelp } from './help.ts';
