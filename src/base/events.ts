// Models: the kernel's WARN/BUG reporting (include/asm-generic/bug.h) as an inspectable event log.
// Violated kernel invariants are recorded here; a BUG also throws KernelBug. The kinds of the
// kernel's own reporting are declared here; a layer that reports more declares its kinds itself
// (dma/events.ts: DMA-DEBUG, MODEL-CHECK, CACHE).

/**
 * The event kinds, as keys. WARN, BUG, FAULT (a device access the IOMMU or bus refused) and INFO
 * (a kernel log line) here; each layer widens this interface with its own kinds by module
 * augmentation (`declare module '../base/events.ts' { interface EventKinds { ... } }`) and
 * declares the same kinds at run time (declareEventKinds).
 */
export interface EventKinds {
  WARN: true;
  BUG: true;
  FAULT: true;
  INFO: true;
}

export type EventKind = Extract<keyof EventKinds, string>;

/** The kinds at run time, in declaration order: this file's, then each layer's (declareEventKinds). */
const declaredKinds: string[] = ['WARN', 'BUG', 'FAULT', 'INFO'];

/**
 * Declares at run time the kinds a layer adds to EventKinds (at module load, beside its module
 * augmentation), so that input naming a kind (a scenario file's expect.event.kind) can be checked.
 * @throws TypeError naming the layer and a kind declared twice.
 */
export function declareEventKinds(layer: string, kinds: readonly string[]): void {
  for (const k of kinds) {
    if (declaredKinds.includes(k)) throw new TypeError(`event kind ${k} of ${layer} is already declared`);
  }
  declaredKinds.push(...kinds);
}

/** Every event kind declared so far (those of the layers loaded). */
export function eventKinds(): readonly string[] {
  return declaredKinds;
}

export interface KernelEvent {
  readonly seq: number;
  readonly kind: EventKind;
  /** Subsystem that raised it, e.g. 'gup', 'dma-debug', 'iommu', 'swiotlb'. */
  readonly source: string;
  readonly message: string;
  readonly data?: Readonly<Record<string, unknown>>;
}

/** Thrown when the modeled kernel hits BUG(): the simulated machine would have crashed. */
export class KernelBug extends Error {
  readonly event: KernelEvent;
  constructor(event: KernelEvent) {
    super(`kernel BUG in ${event.source}: ${event.message}`);
    this.name = 'KernelBug';
    this.event = event;
  }
}

/**
 * The machine's event log. Counts are exact; the stored entries are capped (oldest dropped first)
 * so a long run that records millions of cache-maintenance events stays bounded.
 */
export class EventLog {
  private entries: KernelEvent[] = [];
  /** Index of the oldest stored event in `entries` (those before it are dropped; compacted in bulk). */
  private head = 0;
  private seq = 0;
  private readonly counts = new Map<EventKind, number>();
  private dropped = 0;
  private readonly muted = new Set<EventKind>();
  /** The *_ONCE call sites that have fired (warnOnce). */
  private readonly firedOnce = new Set<string>();
  readonly capacity: number;

  constructor(capacity = 100_000) {
    this.capacity = capacity;
  }

  /**
   * Stops (or, with on false, resumes) keeping events of one kind: they are still counted
   * (count()) but neither formatted by callers that ask isMuted() first nor stored. For long runs
   * that read only counts (a report over hundreds of thousands of cache operations). WARN, BUG
   * and FAULT cannot be muted.
   * @throws RangeError for WARN, BUG or FAULT.
   */
  mute(kind: EventKind, on = true): void {
    if (kind === 'WARN' || kind === 'BUG' || kind === 'FAULT') throw new RangeError(`kind must not be WARN, BUG or FAULT, got ${kind}`);
    if (on) this.muted.add(kind); else this.muted.delete(kind);
  }

  /** Whether events of this kind are only counted (mute()). */
  isMuted(kind: EventKind): boolean {
    return this.muted.size !== 0 && this.muted.has(kind);
  }

  /** Counts an event of a muted kind without building it (the caller checked isMuted()). */
  countMuted(kind: EventKind): void {
    this.counts.set(kind, (this.counts.get(kind) ?? 0) + 1);
  }

  record(kind: EventKind, source: string, message: string, data?: Record<string, unknown>): KernelEvent {
    if (this.muted.size !== 0 && this.muted.has(kind)) {
      this.countMuted(kind);
      return { seq: -1, kind, source, message };
    }
    const ev: KernelEvent = data === undefined
      ? { seq: this.seq++, kind, source, message }
      : { seq: this.seq++, kind, source, message, data };
    this.counts.set(kind, (this.counts.get(kind) ?? 0) + 1);
    this.entries.push(ev);
    if (this.entries.length - this.head > this.capacity) {
      // drop the oldest; the array is compacted once per `capacity` drops, not shifted per event
      this.head++;
      this.dropped++;
      if (this.head >= this.capacity) {
        this.entries = this.entries.slice(this.head);
        this.head = 0;
      }
    }
    return ev;
  }

  warn(source: string, message: string, data?: Record<string, unknown>): KernelEvent {
    return this.record('WARN', source, message, data);
  }

  /**
   * WARN_ONCE / WARN_ON_ONCE / dev_WARN_ONCE: a WARN the first time `site` fires on this machine
   * (one log per boot), nothing after: the kernel keeps one flag per call site for the whole boot.
   * Returns whether it recorded. clear() does not re-arm a site; only a new machine does.
   */
  warnOnce(site: string, source: string, message: string, data?: Record<string, unknown>): boolean {
    if (this.firedOnce.has(site)) return false;
    this.firedOnce.add(site);
    this.warn(source, message, data);
    return true;
  }

  /** Records a BUG and throws KernelBug. */
  bug(source: string, message: string, data?: Record<string, unknown>): never {
    throw new KernelBug(this.record('BUG', source, message, data));
  }

  fault(source: string, message: string, data?: Record<string, unknown>): KernelEvent {
    return this.record('FAULT', source, message, data);
  }

  /** Number of events of a kind ever recorded (not limited by the capacity). */
  count(kind: EventKind): number {
    return this.counts.get(kind) ?? 0;
  }

  /** Stored events, optionally of one kind and/or source. */
  list(kind?: EventKind, source?: string): KernelEvent[] {
    const out: KernelEvent[] = [];
    for (let i = this.head; i < this.entries.length; i++) {
      const e = this.entries[i];
      if ((kind === undefined || e.kind === kind) && (source === undefined || e.source === source)) out.push(e);
    }
    return out;
  }

  get total(): number {
    return this.seq;
  }

  get droppedCount(): number {
    return this.dropped;
  }

  /** Events with seq >= from: lets a test look at what one operation logged. */
  since(from: number): KernelEvent[] {
    return this.list().filter((e) => e.seq >= from);
  }

  clear(): void {
    this.entries = [];
    this.head = 0;
    this.counts.clear();
    this.dropped = 0;
  }
}
