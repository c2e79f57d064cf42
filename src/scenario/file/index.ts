// scenario/file: scenario files (YAML / JSON) -> a validated Scenario -> a run on a machine,
// step by step (ScenarioRunner) or whole (runScenario); text and JSON output.
export {
  ScenarioError, type BufferState, type CounterDelta, type DmaSegment, type LeakReport, type MappingState, type PinState,
  type Scenario, type ScenarioBacking, type ScenarioBuffer, type ScenarioDeviceSetup, type ScenarioDir, type ScenarioIssue,
  type ScenarioResult, type ScenarioStep, type StepBase, type StepExpect, type StepResult,
} from './types.ts';
export { parseScenario, validateScenario, type ParseOptions } from './parse.ts';
export { ScenarioRunner, runScenario, type RunOptions } from './runner.ts';
