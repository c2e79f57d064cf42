// The text `phyr run` prints (and the examples' golden files hold) and the JSON form of a result
// (bigints as hex strings). No Node-only modules: the web view formats with these too.

import type { ScenarioResult, StepResult } from './types.ts';

/** Counter deltas as `phyr run` prints them: `name +1, other -2`. */
export function counterText(c: Readonly<Record<string, number>>): string {
  return Object.entries(c).map(([k, v]) => `${k} ${v > 0 ? '+' : ''}${v}`).join(', ');
}

/** A step's status word as `phyr run` prints it: ok, ok (ENOMEM expected), FAILED. */
export function stepStatus(r: Pick<StepResult, 'ok' | 'errno'>): string {
  return r.ok ? (r.errno !== undefined ? `ok (${r.errno} expected)` : 'ok') : 'FAILED';
}

function stepLines(r: StepResult): string[] {
  const status = stepStatus(r);
  const head = `[${String(r.index).padStart(2)}] ${r.op.padEnd(14)} ${status.padEnd(6)} ${r.label !== undefined ? `${r.label}: ` : ''}${r.summary}`;
  const out = [head];
  if (r.unmet !== undefined) out.push(`       unmet: ${r.unmet}`);
  for (const e of r.events.slice(0, 8)) out.push(`       event: ${e}`);
  if (r.events.length > 8) out.push(`       ... ${r.events.length - 8} more events`);
  if (Object.keys(r.counters).length > 0) out.push(`       counters: ${counterText(r.counters)}`);
  return out;
}

/** The run as text: one block per step (result, events, counter deltas), then totals, leaks and the verdict. */
export function formatScenarioResult(r: ScenarioResult, opts: { description?: string } = {}): string {
  const lines: string[] = [];
  lines.push(`scenario: ${r.name}${r.config !== null ? ` [config ${r.config}]` : ''} (seed ${r.seed})`);
  if (opts.description !== undefined) for (const l of opts.description.trim().split('\n')) lines.push(`  ${l}`);
  lines.push('');
  for (const s of r.steps) lines.push(...stepLines(s));
  lines.push('');
  lines.push(`counters: ${Object.keys(r.counters).length > 0 ? counterText(r.counters) : 'none'}`);
  const torn = r.leaks.tornDown.length > 0 ? `undid ${r.leaks.tornDown.join(', ')}` : 'nothing left live';
  lines.push(`teardown: ${torn}; dma-debug leaks after it: ${r.leaks.dmaDebugLeaks}`);
  lines.push(r.ok ? `result: ok (${r.steps.length} steps)` : `result: FAILED${r.stoppedAt !== undefined ? ` at step ${r.stoppedAt} (${r.steps[r.stoppedAt]?.op})` : ''}`);
  return `${lines.join('\n')}\n`;
}

/** JSON.stringify with bigints as "0x..." strings and typed arrays / handles left out. */
export function scenarioJson(value: unknown, space = 2): string {
  return JSON.stringify(value, (_k, v: unknown) => {
    if (typeof v === 'bigint') return `0x${v.toString(16)}`;
    if (ArrayBuffer.isView(v)) return undefined;
    return v;
  }, space);
}
