// Work counters on the machine: plain, always-on number fields named after what is counted. Each
// layer declares its own counters (declareCounters in its counters.ts, which also widens
// StatsCounters for the type checker); the machine's Stats object carries every declared counter.
// Reports and tests read them; reset() zeroes them all.

/**
 * The counters the layers declare. Empty here: each layer adds its fields by module augmentation
 * (`declare module '../base/stats.ts' { interface StatsCounters { ... } }`).
 */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type -- widened by each layer's counters.ts
export interface StatsCounters {}

interface Declared {
  readonly layer: string;
  readonly names: readonly string[];
}

const declared: Declared[] = [];
const declaredNames = new Set<string>();

/**
 * Declares a layer's counters (at module load, before any machine is built). A name may be
 * declared once. @throws TypeError naming the layer and the counter declared twice.
 */
export function declareCounters(layer: string, names: readonly string[]): void {
  for (const n of names) {
    if (declaredNames.has(n)) throw new TypeError(`counter ${n} of ${layer} is already declared`);
  }
  for (const n of names) declaredNames.add(n);
  declared.push({ layer, names: [...names] });
}

// A class and an interface of one name: the interface brings the declared counters' types.
// eslint-disable-next-line @typescript-eslint/no-empty-object-type, @typescript-eslint/no-unsafe-declaration-merging
export interface Stats extends StatsCounters {}

// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export class Stats {
  /** Every declared counter, at 0. */
  constructor() {
    const self = this as unknown as Record<string, number>;
    for (const d of declared) for (const n of d.names) self[n] = 0;
  }

  /** The declared counters, by the layer that declared them (in declaration order). */
  static layers(): ReadonlyArray<{ readonly layer: string; readonly names: readonly string[] }> {
    return declared;
  }

  /** Zeroes every counter. */
  reset(): void {
    for (const k of Object.keys(this) as Array<keyof this>) {
      if (typeof this[k] === 'number') (this as Record<keyof this, unknown>)[k] = 0;
    }
  }

  /** A plain copy of every counter. */
  snapshot(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, v] of Object.entries(this)) if (typeof v === 'number') out[k] = v;
    return out;
  }

  /** Counter differences since a snapshot (only the ones that changed). */
  diff(since: Record<string, number>): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, v] of Object.entries(this.snapshot())) {
      const d = v - (since[k] ?? 0);
      if (d !== 0) out[k] = d;
    }
    return out;
  }
}
