// From a parsed document to a Scenario: the schema's issues turned into one line each (field path,
// bad value, what was expected), then the cross references the schema cannot see, found before
// anything runs: device, buffer, pin and mapping names; steps out of order (unmap before map, use
// after unmap); ranges beyond a buffer, a mapping or a dma-buf; methods that do not fit their pin.

import type { z } from 'zod';
import { GPU_DRIVER_NAME, NVME_DRIVER_NAME, RDMA_DRIVER_NAME } from '../../drivers/index.ts';
import { Machine, type MachineConfig } from '../../machine/index.ts';
import { DMA_OPS_BIGINTS, scenarioSchema, type ScenarioDoc } from './schema.ts';
import { parseBigSize } from './sizes.ts';
import { ScenarioError, type Scenario, type ScenarioConfig, type ScenarioIssue } from './types.ts';

type Path = ReadonlyArray<PropertyKey>;

/** `steps[3].device` from ['steps', 3, 'device']. */
export function formatPath(path: Path): string {
  let s = '';
  for (const p of path) {
    if (typeof p === 'number') s += `[${p}]`;
    else s += s === '' ? String(p) : `.${String(p)}`;
  }
  return s === '' ? '(top level)' : s;
}

function valueAt(doc: unknown, path: Path): unknown {
  let v = doc;
  for (const p of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[p as string];
  }
  return v;
}

/** A value as a message shows it: strings quoted with ', objects as short JSON. */
export function showValue(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (typeof v === 'string') return `'${v}'`;
  if (typeof v === 'bigint') return `0x${v.toString(16)}`;
  try {
    const s = JSON.stringify(v);
    return s.length > 60 ? `${s.slice(0, 57)}...` : s;
  } catch {
    return String(v);
  }
}

interface ZodDefLike { readonly type: string; readonly [k: string]: unknown }
const defOf = (s: unknown): ZodDefLike => (s as { def: ZodDefLike }).def;

/** The schema at a path of the document (best effort: through optional, default, pipe, array, record, union by discriminator). */
function schemaAt(schema: unknown, path: Path, doc: unknown): unknown {
  let s: unknown = schema;
  let at: unknown = doc;
  const unwrap = (): void => {
    for (;;) {
      const d = defOf(s);
      if (d.type === 'optional' || d.type === 'default' || d.type === 'nullable') s = d.innerType;
      else if (d.type === 'pipe') s = d.in;
      else if (d.type === 'union') {
        const opts = d.options as unknown[];
        const disc = d.discriminator as string | undefined;
        const pick = disc !== undefined && at !== null && typeof at === 'object'
          ? opts.find((o) => {
            const lit = defOf((o as { shape: Record<string, unknown> }).shape[disc]);
            return (lit.values as unknown[] | undefined)?.includes((at as Record<string, unknown>)[disc]);
          })
          : opts.find((o) => defOf(o).type === 'object' && at !== null && typeof at === 'object');
        if (pick === undefined) return;
        s = pick;
      } else return;
    }
  };
  unwrap();
  for (const p of path) {
    const d = defOf(s);
    if (d.type === 'object') s = (s as { shape: Record<string, unknown> }).shape[p as string];
    else if (d.type === 'array') s = d.element;
    else if (d.type === 'record') s = d.valueType;
    else return undefined;
    if (s === undefined) return undefined;
    at = at !== null && typeof at === 'object' ? (at as Record<PropertyKey, unknown>)[p as string] : undefined;
    unwrap();
  }
  return s;
}

/** The description of the field at path, read from its parent object's shape (a size keeps it on its outer pipe, which schemaAt unwraps). */
function fieldDescription(path: Path, doc: unknown): string | undefined {
  if (path.length === 0) return undefined;
  const parent = schemaAt(scenarioSchema, path.slice(0, -1), doc);
  if (parent === undefined || defOf(parent).type !== 'object') return undefined;
  let f: unknown = (parent as { shape: Record<string, unknown> }).shape[path[path.length - 1] as string];
  while (f !== undefined) {
    const d = (f as { description?: string }).description;
    if (d !== undefined) return d;
    const def = defOf(f);
    f = def.type === 'optional' || def.type === 'default' || def.type === 'nullable' ? def.innerType : undefined;
  }
  return undefined;
}

function knownKeys(path: Path, doc: unknown): string[] | null {
  const s = schemaAt(scenarioSchema, path, doc);
  if (s === undefined || defOf(s).type !== 'object') return null;
  return Object.keys((s as { shape: Record<string, unknown> }).shape);
}

function issue(path: Path | string, value: unknown, problem: string, expected: string): ScenarioIssue {
  const p = typeof path === 'string' ? path : formatPath(path);
  return { path: p, value, expected, message: `${p}: ${problem} (expected ${expected})` };
}

/** One ScenarioIssue per zod issue (unknown keys: one per key). */
function fromZod(issues: readonly z.core.$ZodIssue[], doc: unknown): ScenarioIssue[] {
  const out: ScenarioIssue[] = [];
  for (const i of issues) {
    const path = i.path;
    const value = valueAt(doc, path);
    switch (i.code) {
      case 'unrecognized_keys': {
        const known = knownKeys(path, doc);
        for (const k of i.keys) {
          out.push(issue([...path, k], valueAt(doc, [...path, k]), `unknown field '${k}'`, known ? `one of: ${known.join(', ')}` : 'a known field'));
        }
        break;
      }
      case 'invalid_type':
        out.push(issue(path, value, value === undefined ? 'missing' : `${showValue(value)} is a ${Array.isArray(value) ? 'list' : value === null ? 'null' : typeof value}`,
          i.expected === 'object' ? 'a mapping of fields' : i.expected === 'array' ? 'a list' : `a ${i.expected}`));
        break;
      case 'invalid_value':
        out.push(issue(path, value, `${showValue(value)} is not allowed`, i.values.length === 1 ? showValue(i.values[0]) : `one of: ${i.values.map((v) => String(v)).join(', ')}`));
        break;
      case 'invalid_union': {
        const disc = (i as { discriminator?: string }).discriminator;
        if (disc !== undefined) {
          const opts = ((i as { options?: unknown[] }).options ?? []).map(String);
          out.push(issue(path, value, value === undefined ? `missing '${disc}'` : `unknown ${disc} ${showValue(value)}`, `one of: ${opts.join(', ')}`));
        } else {
          const s = schemaAt(scenarioSchema, path, doc);
          const desc = s !== undefined ? (s as { description?: string }).description : undefined;
          // a union of a literal/enum and objects: report the nearest branch's first problem
          const branch = i.errors.find((e) => e.length > 0 && e.every((x) => x.code !== 'invalid_type' || x.path.length > 0));
          if (branch !== undefined) out.push(...fromZod(branch.map((x) => ({ ...x, path: [...path, ...x.path] })), doc));
          // a required size or address left out: every branch says invalid_type of nothing
          else if (value === undefined) out.push(issue(path, value, 'missing', fieldDescription(path, doc) ?? desc ?? 'a value'));
          else out.push(issue(path, value, `${showValue(value)} is not allowed`, desc ?? 'another value'));
        }
        break;
      }
      case 'too_small':
      case 'too_big': {
        const bound = i.code === 'too_small' ? i.minimum : i.maximum;
        const what = i.origin === 'array' ? `a list of ${i.code === 'too_small' ? 'at least' : 'at most'} ${bound} entries`
          : i.origin === 'string' ? `a text of ${i.code === 'too_small' ? 'at least' : 'at most'} ${bound} characters`
            : `a number ${i.code === 'too_small' ? '>=' : '<='} ${bound}`;
        out.push(issue(path, value, `${showValue(value)} is too ${i.code === 'too_small' ? 'small' : 'large'}`, what));
        break;
      }
      case 'custom': {
        const exp = (i.params as { expected?: string } | undefined)?.expected ?? 'another value';
        out.push(issue(path, value, `${showValue(value)} is ${i.message}`, exp));
        break;
      }
      case 'invalid_format':
        out.push(issue(path, value, `${showValue(value)} is not allowed: ${i.message}`, i.format === 'regex' ? 'letters, digits, _ . -' : i.format));
        break;
      default:
        out.push(issue(path, value, i.message, 'another value'));
    }
  }
  // the same path reported twice (a union's branches) once
  const seen = new Set<string>();
  return out.filter((x) => (seen.has(x.message) ? false : (seen.add(x.message), true)));
}

/** dmaOps fields the model wants as bigints, converted (numbers or "0x..." strings). */
function fixDmaOps(v: Record<string, unknown> | undefined, where: string, issues: ScenarioIssue[]): Record<string, unknown> | undefined {
  if (v === undefined) return undefined;
  const out: Record<string, unknown> = { ...v };
  const big = (obj: Record<string, unknown>, k: string, w: string): void => {
    if (obj[k] === undefined) return;
    const b = parseBigSize(obj[k]);
    if (b === null) issues.push(issue(`${w}.${k}`, obj[k], `${showValue(obj[k])} is not an address`, 'a number or a string such as "0x80000000"'));
    else obj[k] = b;
  };
  for (const k of DMA_OPS_BIGINTS) big(out, k, where);
  if (out.ddw !== null && typeof out.ddw === 'object') {
    const ddw = { ...(out.ddw as Record<string, unknown>) };
    big(ddw, 'dmaOffset', `${where}.ddw`);
    big(ddw, 'busDmaLimit', `${where}.ddw`);
    out.ddw = ddw;
  }
  return out;
}

/** A machine config as a file gives it: every field, or (in a configuration) some, null removing one. */
type MachinePart = { readonly [K in keyof ScenarioDoc['machine']]?: ScenarioDoc['machine'][K] | null };

function fixMachine<T extends MachinePart>(m: T, where: string, issues: ScenarioIssue[]): T {
  const out: Record<string, unknown> = { ...m };
  if (m.dmaOps !== undefined && m.dmaOps !== null) out.dmaOps = fixDmaOps(m.dmaOps as Record<string, unknown>, `${where}.dmaOps`, issues);
  if (m.pci !== undefined && m.pci !== null) {
    out.pci = m.pci.map((n, i) => (n.dmaOps === undefined ? n : { ...n, dmaOps: fixDmaOps(n.dmaOps as Record<string, unknown>, `${where}.pci[${i}].dmaOps`, issues) }));
  }
  return out as T;
}

/** Device names (endpoint functions) and device-memory names of a machine config. */
function machineNames(m: MachinePart): { devices: string[]; nvme: string[]; memory: string[] } {
  const devices: string[] = [];
  const nvme: string[] = [];
  const memory: string[] = [];
  for (const n of m.pci ?? []) {
    if (n.type !== 'endpoint') continue;
    devices.push(n.name);
    for (let f = 1; f < (n.functions ?? 1); f++) devices.push(`${n.name}.${f}`);
    if (n.nvme !== undefined) nvme.push(n.name);
    (n.bars ?? []).forEach((_, i) => memory.push(`${n.name}.bar${i}`));
  }
  for (const d of m.deviceMemory ?? []) memory.push(d.name);
  for (const d of m.pmem ?? []) memory.push(d.name);
  return { devices, nvme, memory };
}

const oneOf = (names: readonly string[]): string => (names.length === 0 ? 'a declared name (none is declared)' : `one of: ${names.join(', ')}`);

/** Edit distance between a and b (insertions, deletions, substitutions), case-insensitive. */
function editDistance(a: string, b: string): number {
  const x = a.toLowerCase(), y = b.toLowerCase();
  let row = Array.from({ length: y.length + 1 }, (_, j) => j);
  for (let i = 1; i <= x.length; i++) {
    const next = [i];
    for (let j = 1; j <= y.length; j++) {
      next[j] = Math.min(row[j] + 1, next[j - 1] + 1, row[j - 1] + (x[i - 1] === y[j - 1] ? 0 : 1));
    }
    row = next;
  }
  return row[y.length];
}

/** What a name not in `names` should have been: the nearest few, when any is near. */
function nearest(name: string, names: readonly string[], what: string): string {
  const scored = names.map((n) => ({ n, d: editDistance(name, n) })).filter((x) => x.d <= Math.max(2, Math.floor(name.length / 3)));
  scored.sort((p, q) => p.d - q.d || p.n.localeCompare(q.n));
  return scored.length === 0 ? what : `${what}; did you mean ${scored.slice(0, 3).map((x) => x.n).join(' or ')}?`;
}

/**
 * An expect block's names (counters, the event kind) against what a machine has, and ok against
 * errno; `where` is its path (steps[i].expect or steps[i].expectIn.<config>).
 */
function checkExpect(x: NonNullable<ScenarioDoc['steps'][number]['expect']>, where: string, issues: ScenarioIssue[]): void {
  if (x.ok === true && x.errno !== undefined) {
    issues.push(issue(`${where}.ok`, true, `ok: true contradicts errno: ${x.errno} (an expected failure is the step's success)`, 'errno alone, or ok without errno'));
  }
  const kinds = Machine.eventKinds();
  if (x.event !== undefined && !kinds.includes(x.event.kind)) {
    issues.push(issue(`${where}.event.kind`, x.event.kind, `unknown event kind '${x.event.kind}'`, oneOf(kinds)));
  }
  const counters = Machine.counterNames();
  for (const k of Object.keys(x.counters ?? {})) {
    if (!counters.includes(k)) {
      issues.push(issue(`${where}.counters.${k}`, k, `unknown counter '${k}'`, nearest(k, counters, 'a counter of machine.stats')));
    }
  }
}

function configNamesOf(doc: ScenarioDoc): string[] {
  return Object.keys(doc.configs ?? {});
}

/**
 * A step that expects to fail in a run (its expect there: expectIn[config] when the run has that
 * configuration, else expect, as the runner applies them; errno or ok false): it makes no object
 * the later steps of that run can name.
 */
function failsIn(s: ScenarioDoc['steps'][number], config: string | null): boolean {
  const x = (config !== null ? s.expectIn?.[config] : undefined) ?? s.expect;
  return x?.errno !== undefined || x?.ok === false;
}

/**
 * Cross references and step order, for every run the file can make: the base machine (phyr run
 * without --config) and each configuration. Which objects exist after a step depends on which steps
 * failed as expected, and expectIn makes that differ between runs, so the state is followed once per
 * run. An issue every run finds is reported once as it is; one only some runs find says which
 * (`(in configuration x86-4k)`, `(without a configuration)` for the base machine). Issues are the
 * same when their path and problem are (what they expect may list what is live, which differs by
 * run: the first run's is kept); they are listed by step, in the runs' order within a step.
 */
function crossCheck(doc: ScenarioDoc, issues: ScenarioIssue[]): void {
  const runs: Array<string | null> = [null, ...configNamesOf(doc)];
  const found = runs.map((config) => {
    const is: ScenarioIssue[] = [];
    crossCheckRun(doc, config, is);
    return is;
  });
  // the path and the problem: the message without its "(expected ...)"
  const key = (x: ScenarioIssue): string => x.message.slice(0, x.message.length - ` (expected ${x.expected})`.length);
  const merged: ScenarioIssue[] = [];
  const inRuns = new Map<string, Set<string | null>>();
  found.forEach((is, r) => {
    for (const x of is) {
      const known = inRuns.get(key(x));
      if (known !== undefined) {
        known.add(runs[r]);
        continue;
      }
      inRuns.set(key(x), new Set([runs[r]]));
      merged.push(x);
    }
  });
  // by step (a stable sort: the runs' order within a step); issues outside the steps first
  const stepOf = (x: ScenarioIssue): number => {
    const m = /^steps\[(\d+)\]/.exec(x.path);
    return m === null ? -1 : Number(m[1]);
  };
  merged.sort((a, b) => stepOf(a) - stepOf(b));
  for (const x of merged) {
    const where = inRuns.get(key(x))!;
    if (where.size === runs.length) {
      issues.push(x);
      continue;
    }
    const named = runs.filter((c): c is string => c !== null && where.has(c));
    const configs = named.length === 0 ? '' : `in configuration${named.length === 1 ? '' : 's'} ${named.join(', ')}`;
    const which = where.has(null) ? `without a configuration${configs !== '' ? ` and ${configs}` : ''}` : configs;
    issues.push({ ...x, message: `${x.message} (${which})` });
  }
}

/** The cross-check of one run: `config` null for the base machine. */
function crossCheckRun(doc: ScenarioDoc, config: string | null, issues: ScenarioIssue[]): void {
  const fails = (s: ScenarioDoc['steps'][number]): boolean => failsIn(s, config);
  const all = [doc.machine, ...Object.values(doc.configs ?? {}).map((c) => c.machine ?? {})].map(machineNames);
  const devices = [...new Set(all.flatMap((x) => x.devices))];
  const nvme = [...new Set(all.flatMap((x) => x.nvme))];
  const memory = [...new Set(all.flatMap((x) => x.memory))];
  const checkDevices = (d: Record<string, unknown> | undefined, where: string): void => {
    for (const k of Object.keys(d ?? {})) {
      if (!devices.includes(k)) issues.push(issue(`${where}.${k}`, k, `unknown device '${k}'`, oneOf(devices)));
    }
  };
  checkDevices(doc.devices, 'devices');
  for (const [n, c] of Object.entries(doc.configs ?? {})) checkDevices(c.devices, `configs.${n}.devices`);

  const buffers = doc.buffers ?? [];
  const processes = doc.processes ?? [];
  const bufLen = new Map<string, number>();
  buffers.forEach((b, i) => {
    if (bufLen.has(b.name)) issues.push(issue(`buffers[${i}].name`, b.name, `buffer '${b.name}' is declared twice`, 'unique buffer names'));
    bufLen.set(b.name, b.len);
    if (doc.processes !== undefined && b.process !== undefined && !processes.includes(b.process)) {
      issues.push(issue(`buffers[${i}].process`, b.process, `unknown process '${b.process}'`, oneOf(processes)));
    }
    if (typeof b.backing === 'object' && !memory.includes(b.backing.device)) {
      issues.push(issue(`buffers[${i}].backing.device`, b.backing.device, `unknown device memory '${b.backing.device}'`, oneOf(memory)));
    }
  });
  const bufNames = [...bufLen.keys()];

  // objects by state as the steps run: buffers mapped (mmap .. munmap), pins and mappings live
  const mapped = new Map<string, number>(); // buffer -> step index of its mmap
  const everMapped = new Set<string>();
  // len: the bytes a pin or mapping covers (undefined when its buffer is unknown: reported already)
  const pins = new Map<string, { method: string; step: number; len: number | undefined }>();
  const pinsEver = new Map<string, number>();
  const maps = new Map<string, { method: string; step: number; len: number | undefined; device: string }>();
  const mapsEver = new Map<string, { method: string; len: number | undefined; device: string }>();
  const at = (i: number, f: string): string => `steps[${i}].${f}`;
  const tokens = new Map<string, { len: number; dmabuf: boolean; step: number }>();
  const tokensEver = new Set<string>();

  const needBuffer = (i: number, name: string, field = 'buffer'): boolean => {
    if (!bufLen.has(name)) {
      issues.push(issue(at(i, field), name, `unknown buffer '${name}'`, oneOf(bufNames)));
      return false;
    }
    if (!mapped.has(name)) {
      issues.push(issue(at(i, field), name, everMapped.has(name) ? `buffer '${name}' is used after its munmap` : `buffer '${name}' is used before its mmap`,
        'an mmap step for it earlier'));
      return false;
    }
    return true;
  };
  const checkRange = (i: number, total: number, what: string, offset: number | undefined, len: number | undefined): void => {
    const off = offset ?? 0;
    if (off > total) {
      issues.push(issue(at(i, 'offset'), off, `offset ${off} is beyond the ${what} (${total} bytes)`, `an offset <= ${total}`));
    } else if (len !== undefined && off + len > total) {
      issues.push(issue(at(i, 'len'), len, `offset ${off} + len ${len} runs past the ${what} (${total} bytes)`, `a len <= ${total - off}`));
    } else if (len === 0 || off === total) {
      issues.push(issue(at(i, 'len'), len ?? 0, 'the range is empty', 'at least one byte'));
    }
  };
  const needDevice = (i: number, name: string, list: readonly string[], what: string): void => {
    if (!list.includes(name)) issues.push(issue(at(i, 'device'), name, `unknown ${what} '${name}'`, oneOf(list)));
  };
  // iommufd: IOASes (ioas-alloc .. ioas-destroy), the device each attached device is on, the mappings
  // of ioas-map steps (device-read / device-write name them as they name a map step's mapping). A
  // step that expects to fail (expect.errno or ok: false) makes nothing: the runner keeps no object.
  const ioases = new Map<string, number>(); // live IOAS -> step index of its ioas-alloc
  const ioasesEver = new Set<string>();
  const attached = new Map<string, string>(); // device -> its IOAS
  const ioasMaps = new Map<string, { ioas: string; step: number; len: number | undefined; iova: bigint | undefined }>();
  const ioasMapsEver = new Map<string, { ioas: string; len: number | undefined }>();
  const mapNames = (): string[] => [...maps.keys(), ...ioasMaps.keys()];
  /** The name of a new IOAS mapping (ioas-map, ioas-copy): no live mapping of either kind has it. */
  const newIoasMapping = (i: number, name: string): void => {
    if (!maps.has(name) && !ioasMaps.has(name)) return;
    issues.push(issue(at(i, 'name'), name, `mapping '${name}' is still live (steps[${(maps.get(name) ?? ioasMaps.get(name))!.step}])`, `a new name or ${maps.has(name) ? 'an unmap' : 'an ioas-unmap'} first`));
  };
  /** An IOAS map or copy must grant some access (iommufd_ioas_map / iommufd_ioas_copy in ioas.c: EINVAL without IOMMU_IOAS_MAP_READABLE or _WRITEABLE), unless the step expects that. */
  const grantsAccess = (i: number, s: { readonly readable?: boolean; readonly writeable?: boolean } & ScenarioDoc['steps'][number], what: string): void => {
    if (s.readable !== false || s.writeable !== false || fails(s)) return;
    issues.push(issue(at(i, 'writeable'), false, `readable and writeable both false: the ${what} would grant no access (the kernel refuses it with EINVAL)`, 'readable or writeable true (or expect: { errno: EINVAL })'));
  };
  const ioasDevices = (ioas: string): string[] => [...attached].filter(([, v]) => v === ioas).map(([k]) => k);
  // who drives a device's DMA: a kernel driver the runner probed for a step (it stays bound to the
  // end of the run), or iommufd (an ioas-attach, or an iommufd dma-buf import: bound to the end).
  // Each excludes the other: iommu_device_claim_dma_owner() is EPERM while a driver uses the default
  // domain, and that driver's probe (iommu_device_use_default_domain()) EBUSY while iommufd owns it.
  const drivers = new Map<string, { driver: string; step: number }>();
  const iommufdImports = new Map<string, string>(); // device -> its iommufd import
  // iommufd imports whose device an ioas-attach moved off the import's IOAS (a replace): the step
  const importsMoved = new Map<string, { device: string; step: number }>();
  const iommufdOwner = (dev: string): string | null => {
    const ioas = attached.get(dev);
    if (ioas !== undefined) return `attached to IOAS '${ioas}'`;
    const imp = iommufdImports.get(dev);
    return imp !== undefined ? `bound to iommufd by its import '${imp}'` : null;
  };
  /**
   * A step that has the runner probe `driver` on dev (its first such step binds it, before the rest
   * of the step: the driver stays bound when the step then fails). `list`: the devices the step may
   * name (an unknown one is reported by needDevice already).
   */
  const probe = (i: number, s: ScenarioDoc['steps'][number], dev: string, driver: string, list: readonly string[]): void => {
    if (!list.includes(dev) || drivers.has(dev)) return;
    const owner = iommufdOwner(dev);
    if (owner !== null) {
      // the probe is EBUSY: no driver bound, which a step expecting to fail may say
      if (fails(s)) return;
      issues.push(issue(at(i, 'device'), dev, `device '${dev}' is ${owner}: iommufd owns its DMA, so the ${driver} driver's probe is EBUSY (iommu_device_use_default_domain)`,
        attached.has(dev) ? 'an ioas-detach first (or expect: { errno: EBUSY })' : 'another device (or expect: { errno: EBUSY })'));
      return;
    }
    drivers.set(dev, { driver, step: i });
  };
  /** A step that binds dev to iommufd: EPERM while a kernel driver drives it. */
  const driven = (i: number, s: ScenarioDoc['steps'][number], dev: string): boolean => {
    const d = drivers.get(dev);
    if (d === undefined || fails(s)) return false;
    issues.push(issue(at(i, 'device'), dev, `device '${dev}' is driven by ${d.driver} (probed for steps[${d.step}]): its DMA uses the default domain, so iommufd cannot own it (EPERM, iommu_device_claim_dma_owner)`,
      'a device no kernel driver drives (or expect: { errno: EPERM })'));
    return true;
  };
  const needIoas = (i: number, name: string, field = 'ioas'): boolean => {
    if (ioases.has(name)) return true;
    const names = [...ioases.keys()];
    issues.push(issue(at(i, field), name, ioasesEver.has(name) ? `IOAS '${name}' is used after its ioas-destroy` : `unknown IOAS '${name}'`,
      names.length === 0 ? 'an ioas-alloc step for it earlier' : `an IOAS allocated earlier: ${names.join(', ')}`));
    return false;
  };
  // this run's machine without an IOMMU: iommufd has no group for its devices (ENODEV); a
  // configuration's iommu replaces the base machine's (null removes it)
  const own = config !== null ? doc.configs?.[config]?.machine?.iommu : undefined;
  const noIommu = own === null || (own === undefined && doc.machine.iommu === undefined);
  const noIommuIssue = (i: number, dev: string): void => {
    issues.push(issue(at(i, 'device'), dev, `device '${dev}' has no IOMMU (the machine has no iommu): iommufd cannot own its DMA`, 'a machine with an iommu (or expect: { errno: ENODEV })'));
  };
  const needMapping = (i: number, name: string, allowUnmapped: boolean): { method: string; len: number | undefined; device: string } | null => {
    const live = maps.get(name);
    if (live) return live;
    const ever = mapsEver.get(name);
    if (ever && allowUnmapped) return ever;
    if (ioasMapsEver.has(name)) {
      issues.push(issue(at(i, 'mapping'), name, `mapping '${name}' is an IOAS mapping (ioas-map): it has no DMA API mapping to sync or unmap`, 'an ioas-unmap step for it, or a mapping of a map step'));
      return null;
    }
    if (ever) issues.push(issue(at(i, 'mapping'), name, `mapping '${name}' is used after its unmap`, 'a live mapping (or afterUnmap: true for a deliberate stale access)'));
    else issues.push(issue(at(i, 'mapping'), name, `unknown mapping '${name}'`, mapNames().length === 0 ? 'a map step for it earlier' : `a mapping made earlier: ${mapNames().join(', ')}`));
    return null;
  };

  const configNames = Object.keys(doc.configs ?? {});
  const mrs = new Map<string, number>(); // live MR -> len
  const mrsEver = new Set<string>();
  const dmabufs = new Map<string, number>(); // dma-buf -> len
  const heapDmabufs = new Set<string>(); // the system-heap ones: their exporter has no revoke
  const imports = new Map<string, string>(); // import -> its dma-buf
  const needLive = (i: number, field: string, kind: string, name: string, live: ReadonlyMap<string, unknown> | ReadonlySet<string>, ever?: ReadonlySet<string>): boolean => {
    if (live.has(name)) return true;
    const names = [...live.keys()];
    issues.push(issue(at(i, field), name, ever?.has(name) ? `${kind} '${name}' is used after it was released` : `unknown ${kind} '${name}'`,
      names.length === 0 ? `a step that makes it earlier` : `one made earlier: ${names.join(', ')}`));
    return false;
  };
  doc.steps.forEach((s, i) => {
    if (s.expect !== undefined) checkExpect(s.expect, `steps[${i}].expect`, issues);
    for (const [c, x] of Object.entries(s.expectIn ?? {})) {
      if (!configNames.includes(c)) issues.push(issue(`steps[${i}].expectIn.${c}`, c, `unknown configuration '${c}'`, oneOf(configNames)));
      checkExpect(x, `steps[${i}].expectIn.${c}`, issues);
    }
    switch (s.op) {
      case 'mmap':
        if (!bufLen.has(s.buffer)) issues.push(issue(at(i, 'buffer'), s.buffer, `unknown buffer '${s.buffer}'`, oneOf(bufNames)));
        else if (mapped.has(s.buffer)) issues.push(issue(at(i, 'buffer'), s.buffer, `buffer '${s.buffer}' is already mapped (steps[${mapped.get(s.buffer)}])`, 'a munmap first'));
        else if (!fails(s)) { mapped.set(s.buffer, i); everMapped.add(s.buffer); }
        break;
      case 'munmap':
        if (needBuffer(i, s.buffer)) mapped.delete(s.buffer);
        break;
      case 'populate': case 'cpu-write': case 'cpu-read':
        if (needBuffer(i, s.buffer)) checkRange(i, bufLen.get(s.buffer)!, `buffer '${s.buffer}'`, s.offset, s.len);
        break;
      case 'pin':
        if (pins.has(s.name)) issues.push(issue(at(i, 'name'), s.name, `pin '${s.name}' is still live (steps[${pins.get(s.name)!.step}])`, 'a new name or an unpin first'));
        if (needBuffer(i, s.buffer)) checkRange(i, bufLen.get(s.buffer)!, `buffer '${s.buffer}'`, s.offset, s.len);
        if (!fails(s)) {
          pins.set(s.name, { method: s.method, step: i, len: bufLen.has(s.buffer) ? s.len ?? bufLen.get(s.buffer)! - (s.offset ?? 0) : undefined });
          pinsEver.set(s.name, i);
        }
        break;
      case 'unpin':
        if (!pins.has(s.pin)) {
          issues.push(issue(at(i, 'pin'), s.pin, pinsEver.has(s.pin) ? `pin '${s.pin}' is already unpinned` : `unknown pin '${s.pin}'`,
            pins.size === 0 ? 'a pin step for it earlier' : `a live pin: ${[...pins.keys()].join(', ')}`));
        } else pins.delete(s.pin);
        break;
      case 'map': {
        needDevice(i, s.device, devices, 'device');
        if (maps.has(s.name)) issues.push(issue(at(i, 'name'), s.name, `mapping '${s.name}' is still live (steps[${maps.get(s.name)!.step}])`, 'a new name or an unmap first'));
        if (ioasMaps.has(s.name)) issues.push(issue(at(i, 'name'), s.name, `mapping '${s.name}' is an IOAS mapping still live (steps[${ioasMaps.get(s.name)!.step}])`, 'a new name or an ioas-unmap first'));
        if ((s.pin === undefined) === (s.buffer === undefined)) {
          issues.push(issue(at(i, s.pin === undefined ? 'pin' : 'buffer'), undefined, s.pin === undefined ? 'neither pin nor buffer is given' : 'both pin and buffer are given', 'exactly one of pin, buffer'));
        } else if (s.pin !== undefined) {
          const p = pins.get(s.pin);
          if (p === undefined) {
            issues.push(issue(at(i, 'pin'), s.pin, pinsEver.has(s.pin) ? `pin '${s.pin}' is used after its unpin` : `unknown pin '${s.pin}'`,
              pins.size === 0 ? 'a pin step for it earlier' : `a live pin: ${[...pins.keys()].join(', ')}`));
          } else {
            const pageMethod = s.method === 'page' || s.method === 'sg';
            const pagePin = p.method !== 'phyrs';
            if (pageMethod !== pagePin) {
              issues.push(issue(at(i, 'method'), s.method, `method '${s.method}' cannot map pin '${s.pin}' (pinned with method '${p.method}')`,
                pagePin ? 'page or sg for a page-array pin' : 'phys, phyrs or two-step for a phyrs pin'));
            }
          }
          if (s.offset !== undefined || s.len !== undefined) issues.push(issue(at(i, s.offset !== undefined ? 'offset' : 'len'), s.offset ?? s.len, 'a map of a pin maps the whole pin', 'offset and len on the pin step'));
        } else if (s.buffer !== undefined) {
          if (needBuffer(i, s.buffer)) checkRange(i, bufLen.get(s.buffer)!, `buffer '${s.buffer}'`, s.offset, s.len);
          if (s.method === 'page') issues.push(issue(at(i, 'method'), s.method, "method 'page' maps a page-array pin only", 'sg, phys, phyrs or two-step with buffer'));
          // umemMap takes no DMA attributes: the runner would map without them and say it had them
          if (s.attrs !== undefined && s.attrs.length > 0) {
            issues.push(issue(at(i, 'attrs'), s.attrs, 'a map of a buffer (drivers/umem) passes no DMA attributes', 'attrs on a map of a pin (a pin step, then map with pin)'));
          }
        }
        const len = s.pin !== undefined ? pins.get(s.pin)?.len
          : s.buffer !== undefined && bufLen.has(s.buffer) ? s.len ?? bufLen.get(s.buffer)! - (s.offset ?? 0) : undefined;
        if (!fails(s)) {
          maps.set(s.name, { method: s.method, step: i, len, device: s.device });
          mapsEver.set(s.name, { method: s.method, len, device: s.device });
        }
        break;
      }
      case 'sync': {
        const m = needMapping(i, s.mapping, false);
        if (m && m.method !== 'page' && m.method !== 'phys' && m.method !== 'sg') {
          issues.push(issue(at(i, 'mapping'), s.mapping, `mapping '${s.mapping}' (method ${m.method}) has no dma_sync_* call`, 'a mapping made with method page, phys or sg'));
        }
        break;
      }
      case 'device-read': case 'device-write': {
        // the device moves bytes through the mapping's DMA segments only: a range past them would
        // reach nothing (the runner would check or record bytes no DMA moved)
        if (s.device !== undefined) needDevice(i, s.device, devices, 'device');
        // a live mapping first (a name may be reused by the other kind after an unmap)
        const im = maps.has(s.mapping) ? undefined : ioasMaps.get(s.mapping) ?? (s.afterUnmap === true ? ioasMapsEver.get(s.mapping) : undefined);
        if (im !== undefined) {
          // an IOAS has no device of its own: the one attached, else the step names it
          const on = ioasDevices(im.ioas);
          if (s.device === undefined && on.length !== 1) {
            issues.push(issue(at(i, 'device'), undefined, `mapping '${s.mapping}' is in IOAS '${im.ioas}', which has ${on.length === 0 ? 'no device' : `${on.length} devices (${on.join(', ')})`} attached: name the device doing the DMA`,
              `device: ${on.length === 0 ? 'a device' : oneOf(on).replace('one of: ', 'one of ')}`));
          }
          if (im.len !== undefined) checkRange(i, im.len, `mapping '${s.mapping}'`, s.offset, s.len);
          break;
        }
        if (!maps.has(s.mapping) && ioasMapsEver.has(s.mapping)) {
          issues.push(issue(at(i, 'mapping'), s.mapping, `mapping '${s.mapping}' is used after its ioas-unmap (or its IOAS's ioas-destroy)`, 'a live mapping (or afterUnmap: true for a deliberate stale access)'));
          break;
        }
        const m = needMapping(i, s.mapping, s.afterUnmap === true);
        if (m !== null && s.device !== undefined && s.device !== m.device) {
          issues.push(issue(at(i, 'device'), s.device, `mapping '${s.mapping}' is ${m.device}'s DMA API mapping: its DMA addresses are for that device only`, `device: ${m.device}, or none`));
        }
        if (m !== null && m.len !== undefined) checkRange(i, m.len, `mapping '${s.mapping}'`, s.offset, s.len);
        break;
      }
      case 'unmap':
        if (needMapping(i, s.mapping, false)) maps.delete(s.mapping);
        break;
      case 'wait':
        break;
      case 'rdma-reg-mr':
        needDevice(i, s.device, devices, 'device');
        probe(i, s, s.device, RDMA_DRIVER_NAME, devices);
        if (mrs.has(s.name)) issues.push(issue(at(i, 'name'), s.name, `memory region '${s.name}' is still registered`, 'a new name or an rdma-dereg-mr first'));
        if (needBuffer(i, s.buffer)) checkRange(i, bufLen.get(s.buffer)!, `buffer '${s.buffer}'`, s.offset, s.len);
        if (!fails(s)) {
          mrs.set(s.name, s.len ?? (bufLen.get(s.buffer) ?? 0) - (s.offset ?? 0));
          mrsEver.add(s.name);
        }
        break;
      case 'rdma-write':
        if (needLive(i, 'mr', 'memory region', s.mr, mrs, mrsEver)) {
          const total = mrs.get(s.mr)!;
          checkRange(i, total, `memory region '${s.mr}'`, s.offset, s.len);
          if (s.to + s.len > total) issues.push(issue(at(i, 'to'), s.to, `to ${s.to} + len ${s.len} runs past memory region '${s.mr}' (${total} bytes)`, `a to <= ${Math.max(0, total - s.len)}`));
        }
        break;
      case 'rdma-dereg-mr':
        if (needLive(i, 'mr', 'memory region', s.mr, mrs, mrsEver)) mrs.delete(s.mr);
        break;
      case 'dmabuf-export':
        if (dmabufs.has(s.name)) issues.push(issue(at(i, 'name'), s.name, `dma-buf '${s.name}' is exported already`, 'a new name'));
        if (s.exporter === 'vfio-bar') {
          if (s.device === undefined) issues.push(issue(at(i, 'device'), undefined, 'a vfio-bar export needs the device whose BAR it exports', 'device: <endpoint with bars>'));
          else needDevice(i, s.device, devices, 'device');
        } else if (s.device !== undefined || s.offset !== undefined) {
          issues.push(issue(at(i, s.device !== undefined ? 'device' : 'offset'), s.device ?? s.offset, 'a system-heap export has no device or offset', 'exporter: vfio-bar for a BAR slice'));
        }
        if (!fails(s)) {
          dmabufs.set(s.name, s.len);
          if (s.exporter === 'system-heap') heapDmabufs.add(s.name);
        }
        break;
      case 'dmabuf-import':
        needDevice(i, s.device, devices, 'device');
        needLive(i, 'dmabuf', 'dma-buf', s.dmabuf, dmabufs);
        if (s.importer === 'gpu') {
          probe(i, s, s.device, GPU_DRIVER_NAME, devices);
        } else if (!driven(i, s, s.device) && !fails(s) && devices.includes(s.device)) {
          // the import binds the device with an IOAS of its own: a device bound already is EINVAL
          const owner = iommufdOwner(s.device);
          if (noIommu) {
            noIommuIssue(i, s.device);
          } else if (owner !== null) {
            issues.push(issue(at(i, 'device'), s.device, `device '${s.device}' is ${owner} already: a device is bound to iommufd once (EINVAL, VFIO_DEVICE_BIND_IOMMUFD)`,
              'a device not bound to iommufd (or expect: { errno: EINVAL })'));
          } else iommufdImports.set(s.device, s.name);
        }
        if (imports.has(s.name)) issues.push(issue(at(i, 'name'), s.name, `import '${s.name}' exists already`, 'a new name'));
        if (!fails(s)) imports.set(s.name, s.dmabuf);
        break;
      case 'dmabuf-write': case 'dmabuf-read':
        if (needLive(i, 'import', 'import', s.import, imports)) {
          const size = dmabufs.get(imports.get(s.import)!);
          if (size !== undefined && s.len !== undefined) checkRange(i, size, `dma-buf '${imports.get(s.import)!}'`, 0, s.len);
          const moved = importsMoved.get(s.import);
          if (moved !== undefined && !fails(s)) {
            issues.push(issue(at(i, 'import'), s.import, `import '${s.import}' has lost its device: the ioas-attach of steps[${moved.step}] moved ${moved.device} off the import's IOAS (VFIO's attach replaces), so its DMA there faults`,
              `the access before that ioas-attach (or expect: { errno: EFAULT })`));
          }
        }
        break;
      case 'dmabuf-revoke':
        // only an exporter with a revoke path of its own revokes (vfio_pci_dma_buf_move in
        // drivers/vfio/pci/vfio_pci_dmabuf.c); drivers/dma-buf/heaps/system_heap.c has none
        if (needLive(i, 'dmabuf', 'dma-buf', s.dmabuf, dmabufs) && heapDmabufs.has(s.dmabuf)) {
          issues.push(issue(at(i, 'dmabuf'), s.dmabuf, `dma-buf '${s.dmabuf}' is a system-heap buffer: the system heap has no revoke (only the exporter revokes, and vfio-pci does)`,
            'a vfio-bar dma-buf'));
        }
        break;
      case 'block-read': case 'block-write':
        needDevice(i, s.device, nvme, 'NVMe device');
        probe(i, s, s.device, NVME_DRIVER_NAME, nvme);
        if (needBuffer(i, s.buffer)) {
          checkRange(i, bufLen.get(s.buffer)!, `buffer '${s.buffer}'`, s.offset, s.len);
          const len = s.len ?? bufLen.get(s.buffer)! - (s.offset ?? 0);
          if (len % 512 !== 0) issues.push(issue(at(i, 'len'), len, `an I/O of ${len} bytes is not whole 512-byte sectors`, 'a multiple of 512'));
        }
        break;
      case 'ioas-alloc':
        if (ioases.has(s.name)) issues.push(issue(at(i, 'name'), s.name, `IOAS '${s.name}' is still live (steps[${ioases.get(s.name)!}])`, 'a new name or an ioas-destroy first'));
        if (!fails(s)) {
          ioases.set(s.name, i);
          ioasesEver.add(s.name);
        }
        break;
      case 'ioas-attach': {
        const known = devices.includes(s.device);
        needDevice(i, s.device, devices, 'device');
        if (known && noIommu && !fails(s)) noIommuIssue(i, s.device);
        const ok = needIoas(i, s.ioas);
        // an attached device is replaced onto this IOAS (VFIO_DEVICE_ATTACH_IOMMUFD_PT -> iommufd_device_replace)
        if (known && ok && !noIommu && !driven(i, s, s.device) && !fails(s)) {
          attached.set(s.device, s.ioas);
          const imp = iommufdImports.get(s.device);
          if (imp !== undefined && !importsMoved.has(imp)) importsMoved.set(imp, { device: s.device, step: i });
        }
        break;
      }
      case 'ioas-detach':
        needDevice(i, s.device, devices, 'device');
        if (devices.includes(s.device) && !attached.has(s.device)) {
          issues.push(issue(at(i, 'device'), s.device, `device '${s.device}' is not attached to an IOAS`, attached.size === 0 ? 'an ioas-attach step for it earlier' : `an attached device: ${[...attached.keys()].join(', ')}`));
        }
        attached.delete(s.device);
        break;
      case 'ioas-map': {
        newIoasMapping(i, s.name);
        const okIoas = needIoas(i, s.ioas);
        // the memory: a buffer (IOMMU_IOAS_MAP) or a dma-buf (IOMMU_IOAS_MAP_FILE), as map takes a pin or a buffer
        let total: number | undefined;
        if ((s.buffer === undefined) === (s.dmabuf === undefined)) {
          issues.push(issue(at(i, s.buffer === undefined ? 'buffer' : 'dmabuf'), undefined, s.buffer === undefined ? 'neither buffer nor dmabuf is given' : 'both buffer and dmabuf are given',
            'exactly one of buffer, dmabuf'));
        } else if (s.buffer !== undefined) {
          if (needBuffer(i, s.buffer)) total = bufLen.get(s.buffer)!;
          if (total !== undefined) checkRange(i, total, `buffer '${s.buffer}'`, s.offset, s.len);
        } else if (needLive(i, 'dmabuf', 'dma-buf', s.dmabuf!, dmabufs)) {
          total = dmabufs.get(s.dmabuf!)!;
          checkRange(i, total, `dma-buf '${s.dmabuf!}'`, s.offset, s.len);
        }
        grantsAccess(i, s, 'map');
        if (okIoas && !fails(s)) {
          const len = total !== undefined ? s.len ?? total - (s.offset ?? 0) : undefined;
          ioasMaps.set(s.name, { ioas: s.ioas, step: i, len, iova: s.iova });
          ioasMapsEver.set(s.name, { ioas: s.ioas, len });
        }
        break;
      }
      case 'ioas-unmap': {
        needIoas(i, s.ioas);
        if ((s.mapping === undefined) === (s.iova === undefined)) {
          issues.push(issue(at(i, s.mapping === undefined ? 'mapping' : 'iova'), undefined, s.mapping === undefined ? 'neither mapping nor iova is given' : 'both mapping and iova are given',
            'exactly one of mapping, iova (with len)'));
        } else if (s.mapping !== undefined) {
          if (s.len !== undefined) issues.push(issue(at(i, 'len'), s.len, 'an unmap of a mapping unmaps the whole mapping', 'len only with iova'));
          const im = ioasMaps.get(s.mapping);
          if (im === undefined) {
            issues.push(issue(at(i, 'mapping'), s.mapping, ioasMapsEver.has(s.mapping) ? `mapping '${s.mapping}' is unmapped already` : maps.has(s.mapping) ? `mapping '${s.mapping}' is a DMA API mapping (map step)` : `unknown mapping '${s.mapping}'`,
              ioasMaps.size === 0 ? 'an ioas-map step for it earlier' : `a live IOAS mapping: ${[...ioasMaps.keys()].join(', ')}`));
          } else if (im.ioas !== s.ioas) {
            issues.push(issue(at(i, 'mapping'), s.mapping, `mapping '${s.mapping}' is in IOAS '${im.ioas}', not '${s.ioas}'`, `ioas: ${im.ioas}`));
          } else if (!fails(s)) ioasMaps.delete(s.mapping);
        } else if (s.len === undefined) {
          issues.push(issue(at(i, 'len'), undefined, 'an unmap of an IOVA range needs its length', 'len: the bytes from iova'));
        } else if (s.iova !== undefined) {
          // the range takes the mappings it covers whole, where their IOVA is known (given at their ioas-map);
          // an ENOENT part way keeps what it unmapped (iopt_unmap_iova_range), so a failure takes them too
          const end = s.iova + BigInt(s.len);
          for (const [k, v] of [...ioasMaps]) {
            if (v.ioas === s.ioas && v.iova !== undefined && v.len !== undefined && v.iova >= s.iova && v.iova + BigInt(v.len) <= end) ioasMaps.delete(k);
          }
        }
        break;
      }
      case 'ioas-copy': {
        newIoasMapping(i, s.name);
        const okSrc = needIoas(i, s.srcIoas, 'srcIoas');
        const okDst = needIoas(i, s.dstIoas, 'dstIoas');
        // the source range: a live IOAS mapping of srcIoas (or a part of it), or an IOVA range with its
        // length; a copy from no valid source makes no mapping (the run could not make one)
        let len: number | undefined;
        let okFrom = false;
        if ((s.mapping === undefined) === (s.srcIova === undefined)) {
          issues.push(issue(at(i, s.mapping === undefined ? 'mapping' : 'srcIova'), undefined, s.mapping === undefined ? 'neither mapping nor srcIova is given' : 'both mapping and srcIova are given',
            'exactly one of mapping, srcIova (with len)'));
        } else if (s.mapping !== undefined) {
          const im = ioasMaps.get(s.mapping);
          if (im === undefined) {
            issues.push(issue(at(i, 'mapping'), s.mapping, ioasMapsEver.has(s.mapping) ? `mapping '${s.mapping}' is used after its ioas-unmap (or its IOAS's ioas-destroy)` : maps.has(s.mapping) ? `mapping '${s.mapping}' is a DMA API mapping (map step): it is in no IOAS` : `unknown mapping '${s.mapping}'`,
              ioasMaps.size === 0 ? 'an ioas-map step for it earlier' : `a live IOAS mapping: ${[...ioasMaps.keys()].join(', ')}`));
          } else if (okSrc && im.ioas !== s.srcIoas) {
            issues.push(issue(at(i, 'mapping'), s.mapping, `mapping '${s.mapping}' is in IOAS '${im.ioas}', not '${s.srcIoas}'`, `srcIoas: ${im.ioas}`));
          } else {
            okFrom = true;
            if (im.len !== undefined) {
              checkRange(i, im.len, `mapping '${s.mapping}'`, s.offset, s.len);
              len = s.len ?? im.len - (s.offset ?? 0);
            }
          }
        } else if (s.offset !== undefined) {
          issues.push(issue(at(i, 'offset'), s.offset, 'an offset is into a mapping', 'offset only with mapping (srcIova is where the range starts)'));
        } else if (s.len === undefined) {
          issues.push(issue(at(i, 'len'), undefined, 'a copy of an IOVA range needs its length', 'len: the bytes from srcIova'));
        } else {
          okFrom = true;
          len = s.len;
        }
        grantsAccess(i, s, 'copy');
        if (okSrc && okDst && okFrom && !fails(s)) {
          ioasMaps.set(s.name, { ioas: s.dstIoas, step: i, len, iova: s.dstIova });
          ioasMapsEver.set(s.name, { ioas: s.dstIoas, len });
        }
        break;
      }
      case 'ioas-allow-iovas': case 'ioas-iova-ranges':
        // the ranges are the model's to refuse (EINVAL, EADDRINUSE), as the kernel does: a step may expect that
        needIoas(i, s.ioas);
        break;
      case 'ioas-destroy':
        if (needIoas(i, s.ioas) && !fails(s)) {
          const held = ioasDevices(s.ioas);
          if (held.length > 0) {
            // the destroy fails (EBUSY): the IOAS and its mappings stay for the later steps
            issues.push(issue(at(i, 'ioas'), s.ioas, `IOAS '${s.ioas}' still has ${held.join(', ')} attached: IOMMU_DESTROY is EBUSY while a hw_pagetable holds it`,
              `an ioas-detach of ${held.length === 1 ? 'it' : 'each'} first (or expect: { errno: EBUSY })`));
            break;
          }
          ioases.delete(s.ioas);
          for (const [k, v] of [...ioasMaps]) if (v.ioas === s.ioas) ioasMaps.delete(k);
        }
        break;
      case 'premap-register':
        needDevice(i, s.device, nvme, 'NVMe device');
        probe(i, s, s.device, NVME_DRIVER_NAME, nvme);
        if (tokens.has(s.name)) issues.push(issue(at(i, 'name'), s.name, `registered buffer '${s.name}' is still registered (steps[${tokens.get(s.name)!.step}])`, 'a new name or a premap-unregister first'));
        if ((s.buffer === undefined) === (s.len === undefined)) {
          issues.push(issue(at(i, s.buffer === undefined ? 'buffer' : 'len'), undefined, s.buffer === undefined ? 'neither buffer nor len is given' : 'both buffer and len are given', 'exactly one of buffer (a user buffer), len (a new dma-buf)'));
        } else if (s.buffer !== undefined) {
          if (needBuffer(i, s.buffer) && !fails(s)) tokens.set(s.name, { len: bufLen.get(s.buffer)!, dmabuf: false, step: i });
        } else if (s.len !== undefined) {
          if (s.len % 4096 !== 0) issues.push(issue(at(i, 'len'), s.len, `a dma-buf of ${s.len} bytes is not whole 4 KiB pages`, 'a multiple of 4096'));
          if (!fails(s)) tokens.set(s.name, { len: s.len, dmabuf: true, step: i });
        }
        if (!fails(s)) tokensEver.add(s.name);
        break;
      case 'premap-write': case 'premap-read': case 'premap-invalidate': case 'premap-unregister': {
        const t = tokens.get(s.token);
        if (t === undefined) {
          issues.push(issue(at(i, 'token'), s.token, tokensEver.has(s.token) ? `registered buffer '${s.token}' is used after its premap-unregister` : `unknown registered buffer '${s.token}'`,
            tokens.size === 0 ? 'a premap-register step for it earlier' : `a registered buffer: ${[...tokens.keys()].join(', ')}`));
        } else if (s.op === 'premap-unregister') {
          tokens.delete(s.token);
        } else if (s.op === 'premap-invalidate') {
          if (!t.dmabuf) issues.push(issue(at(i, 'token'), s.token, `registered buffer '${s.token}' is a user buffer: it has no exporter to invalidate it`, 'a dma-buf registered with len'));
        } else {
          checkRange(i, t.len, `registered buffer '${s.token}'`, s.offset, s.len);
          const len = s.len ?? t.len - (s.offset ?? 0);
          if (len % 512 !== 0) issues.push(issue(at(i, 'len'), len, `an I/O of ${len} bytes is not whole 512-byte sectors`, 'a multiple of 512'));
        }
        break;
      }
    }
  });
}

/** Validates a parsed document. @throws ScenarioError listing every problem. */
export function validateScenario(doc: unknown, source?: string): Scenario {
  const r = scenarioSchema.safeParse(doc);
  if (!r.success) throw new ScenarioError(fromZod(r.error.issues, doc), source);
  const d = r.data;
  const issues: ScenarioIssue[] = [];
  crossCheck(d, issues);
  const machine = fixMachine(d.machine, 'machine', issues) as unknown as MachineConfig;
  const configs: Record<string, ScenarioConfig> = {};
  for (const [n, c] of Object.entries(d.configs ?? {})) {
    configs[n] = {
      ...(c.description !== undefined ? { description: c.description } : {}),
      machine: fixMachine(c.machine ?? {}, `configs.${n}.machine`, issues) as unknown as ScenarioConfig['machine'],
      devices: c.devices ?? {},
    };
  }
  if (issues.length > 0) throw new ScenarioError(issues, source);
  const processes = d.processes ?? [...new Set((d.buffers ?? []).map((b) => b.process).filter((p): p is string => p !== undefined))];
  if (processes.length === 0) processes.push('app');
  return {
    name: d.name,
    ...(d.description !== undefined ? { description: d.description } : {}),
    machine,
    configs,
    devices: d.devices ?? {},
    processes,
    buffers: (d.buffers ?? []).map((b) => ({ ...b, process: b.process ?? processes[0] })),
    steps: d.steps,
    ...(source !== undefined ? { source } : {}),
  };
}
