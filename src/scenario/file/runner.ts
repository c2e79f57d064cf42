// Runs a validated scenario step by step on a machine built from its config: each step calls the
// model's driver API (mm, dma, drivers) as a kernel driver would; a step that fails unexpectedly
// stops the run, and teardown undoes everything still live and reports leaks.

import type { Machine } from '../../machine/index.ts';
import type {
  BufferState, MappingState, PinState, Scenario, ScenarioResult, StepResult, LeakReport,
} from './types.ts';

export interface RunOptions {
  /** Seed of the machine (aged memory layout) and of the byte patterns. Default: machine.seed, else 1. */
  readonly seed?: number;
  /** A name of scenario.configs to apply over the machine config. */
  readonly config?: string;
}

/** Runs a scenario one step at a time. */
export class ScenarioRunner {
  readonly scenario: Scenario;
  readonly options: RunOptions;
  private m: Machine | null = null;
  private readonly res: StepResult[] = [];
  private next = 0;
  private readonly bufs = new Map<string, BufferState>();
  private readonly pinMap = new Map<string, PinState>();
  private readonly maps = new Map<string, MappingState>();

  constructor(scenario: Scenario, opts: RunOptions = {}) {
    this.scenario = scenario;
    this.options = opts;
  }

  get machine(): Machine {
    if (this.m === null) throw new Error('not implemented yet');
    return this.m;
  }
  /** Index of the next step to run. */
  get index(): number { return this.next; }
  get results(): readonly StepResult[] { return this.res; }
  get buffers(): ReadonlyMap<string, BufferState> { return this.bufs; }
  get pins(): ReadonlyMap<string, PinState> { return this.pinMap; }
  get mappings(): ReadonlyMap<string, MappingState> { return this.maps; }

  /** Runs the next step; null when every step ran or the run stopped. */
  step(): StepResult | null {
    throw new Error('not implemented yet');
  }

  /** Runs the remaining steps, tears down and returns the result. */
  runAll(): ScenarioResult {
    throw new Error('not implemented yet');
  }

  /** A fresh machine, back before step 0. */
  reset(): void {
    throw new Error('not implemented yet');
  }

  /** Unmaps, unpins and munmaps everything still live; returns the leaks report. */
  teardown(): LeakReport {
    throw new Error('not implemented yet');
  }
}

/** Runs a scenario to the end (see ScenarioRunner). */
export function runScenario(scenario: Scenario, opts: RunOptions = {}): ScenarioResult {
  return new ScenarioRunner(scenario, opts).runAll();
}
