// The scenario file reference, generated from the schema's field descriptions (schema.ts): what
// `phyr help scenario` / `phyr help steps` / `phyr help <op>` print and docs/cli.md mirrors.

import { STEP_OPS, STEP_SCHEMAS, machineShape, scenarioSchema, type StepOp } from './schema.ts';

interface Def { readonly type: string; readonly [k: string]: unknown }
const defOf = (s: unknown): Def => (s as { def: Def }).def;
const descOf = (s: unknown): string | undefined => (s as { description?: string }).description;

/** Whether a field may be left out, its inner schema and a short type name. */
function describe(s: unknown): { optional: boolean; inner: unknown; type: string; desc: string } {
  let optional = false;
  let cur = s;
  let desc = descOf(s);
  for (;;) {
    const d = defOf(cur);
    if (d.type === 'optional' || d.type === 'default') {
      optional = true;
      cur = d.innerType;
    } else break;
    desc ??= descOf(cur);
  }
  desc ??= descOf(cur);
  return { optional, inner: cur, type: typeName(cur), desc: desc ?? '' };
}

function typeName(s: unknown): string {
  const d = defOf(s);
  switch (d.type) {
    case 'pipe': return 'size';
    case 'string': return 'text';
    case 'number': return 'integer';
    case 'boolean': return 'true|false';
    case 'literal': return (d.values as unknown[]).map((v) => String(v)).join('|');
    case 'enum': return Object.values(d.entries as Record<string, string>).join('|');
    case 'array': return `list of ${typeName(d.element)}`;
    case 'record': return `map of name -> ${typeName(d.valueType)}`;
    case 'object': return 'fields';
    case 'union': return (d.options as unknown[]).map(typeName).join(' | ');
    case 'optional': return typeName(d.innerType);
    default: return d.type;
  }
}

/** Lines for the fields of an object schema, nested objects indented below their field. */
function fieldLines(shape: Record<string, unknown>, indent: string, depth: number): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(shape)) {
    const f = describe(v);
    out.push(`${indent}${k}${f.optional ? '?' : ''}: ${f.type}${f.desc ? ` -- ${f.desc}` : ''}`);
    // a machine override's fields are the machine's, listed once under machine:
    if (depth <= 0 || k === 'machine') continue;
    let inner = f.inner;
    let d = defOf(inner);
    if (d.type === 'array' || d.type === 'record') {
      inner = d.type === 'array' ? d.element : d.valueType;
      d = defOf(inner);
    }
    if (d.type === 'union') inner = (d.options as unknown[]).find((o) => defOf(o).type === 'object') ?? inner;
    if (defOf(inner).type === 'object') out.push(...fieldLines((inner as { shape: Record<string, unknown> }).shape, `${indent}    `, depth - 1));
  }
  return out;
}

/** The help of one step op: its description and fields. @throws RangeError for an unknown op. */
export function stepHelp(op: string): string {
  if (!(STEP_OPS as readonly string[]).includes(op)) throw new RangeError(`op must be one of ${STEP_OPS.join(', ')}, got ${JSON.stringify(op)}`);
  const s = STEP_SCHEMAS[op as StepOp] as unknown as { shape: Record<string, unknown> };
  const { op: opField, label: _l, expect: _e, expectIn: _x, ...rest } = s.shape;
  void _l; void _e; void _x;
  return [`${op}: ${descOf(opField) ?? ''}`, ...fieldLines(rest, '    ', 2)].join('\n');
}

/** Every step op with its fields. */
export function stepsHelp(): string {
  const { label, expect, expectIn } = (STEP_SCHEMAS.mmap as unknown as { shape: Record<string, unknown> }).shape;
  return [
    'Steps (each a mapping with `op:`), run in order:',
    ...STEP_OPS.map((op) => `  ${stepHelp(op).replace(/\n/g, '\n  ')}`),
    'Every step also takes:',
    ...fieldLines({ label, expect, expectIn }, '    ', 2),
  ].join('\n');
}

/** The machine's fields. */
export function machineHelp(): string {
  return ['machine: the createMachine config', ...fieldLines(machineShape as unknown as Record<string, unknown>, '    ', 2)].join('\n');
}

/** The whole file reference: top-level fields, the machine, the steps. */
export function scenarioHelp(): string {
  const top = (scenarioSchema as unknown as { shape: Record<string, unknown> }).shape;
  const { machine: _m, steps: _s, ...rest } = top;
  void _m; void _s;
  return [
    'A scenario file (YAML or JSON) has these top-level fields (? = optional; sizes are bytes or "4KiB", "1GiB", "0x1000"):',
    ...fieldLines(rest, '  ', 3),
    '',
    machineHelp(),
    '',
    stepsHelp(),
    '',
  ].join('\n');
}
