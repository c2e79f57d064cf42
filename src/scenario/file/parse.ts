// Reads a scenario file (YAML or JSON), validates it with the schema (schema.ts), then checks the
// cross references the schema cannot see (names of devices, buffers, pins and mappings; step order).

import { parse as parseYaml } from 'yaml';
import { validateScenario } from './check.ts';
import { ScenarioError, type Scenario } from './types.ts';

export interface ParseOptions {
  /** Default: JSON when the text starts with `{`, else YAML. */
  readonly format?: 'yaml' | 'json';
  /** File name for messages. */
  readonly source?: string;
}

/** Parses and validates a scenario. @throws ScenarioError listing every problem. */
export function parseScenario(text: string, opts: ParseOptions = {}): Scenario {
  if (typeof text !== 'string') throw new TypeError(`text must be a string, got ${typeof text}`);
  const format = opts.format ?? (text.trimStart().startsWith('{') ? 'json' : 'yaml');
  let doc: unknown;
  try {
    doc = format === 'json' ? JSON.parse(text) : parseYaml(text);
  } catch (e) {
    throw new ScenarioError([{ path: '(file)', value: undefined, expected: `valid ${format.toUpperCase()}`, message: `(file): ${(e as Error).message.split('\n')[0]}` }], opts.source);
  }
  return validateScenario(doc, opts.source);
}

