// Models: the kernel's WARN/BUG reporting and dma-debug's error log, as an inspectable event log.
// Violated kernel invariants and DMA API misuse are recorded here; a BUG also throws KernelBug.
// 'DMA-DEBUG' holds what a CONFIG_DMA_API_DEBUG kernel prints (kernel/dma/debug.c); 'MODEL-CHECK'
// holds misuse the model detects and no kernel reports (docs/model.md lists each check).

export type EventKind = 'WARN' | 'BUG' | 'DMA-DEBUG' | 'MODEL-CHECK' | 'FAULT' | 'CACHE' | 'INFO';

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
  private seq = 0;
  private readonly counts = new Map<EventKind, number>();
  private dropped = 0;
  readonly capacity: number;

  constructor(capacity = 100_000) {
    this.capacity = capacity;
  }

  record(kind: EventKind, source: string, message: string, data?: Record<string, unknown>): KernelEvent {
    const ev: KernelEvent = data === undefined
      ? { seq: this.seq++, kind, source, message }
      : { seq: this.seq++, kind, source, message, data };
    this.counts.set(kind, (this.counts.get(kind) ?? 0) + 1);
    this.entries.push(ev);
    if (this.entries.length > this.capacity) {
      const cut = this.entries.length - this.capacity;
      this.entries.splice(0, cut);
      this.dropped += cut;
    }
    return ev;
  }

  warn(source: string, message: string, data?: Record<string, unknown>): KernelEvent {
    return this.record('WARN', source, message, data);
  }

  /** Records a BUG and throws KernelBug. */
  bug(source: string, message: string, data?: Record<string, unknown>): never {
    throw new KernelBug(this.record('BUG', source, message, data));
  }

  dmaDebug(message: string, data?: Record<string, unknown>): KernelEvent {
    return this.record('DMA-DEBUG', 'dma-debug', message, data);
  }

  /** A misuse only the model checks (source 'model-check'; not printed by any kernel). */
  modelCheck(message: string, data?: Record<string, unknown>): KernelEvent {
    return this.record('MODEL-CHECK', 'model-check', message, data);
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
    return this.entries.filter((e) => (kind === undefined || e.kind === kind) && (source === undefined || e.source === source));
  }

  get total(): number {
    return this.seq;
  }

  get droppedCount(): number {
    return this.dropped;
  }

  /** Events with seq >= from: lets a test look at what one operation logged. */
  since(from: number): KernelEvent[] {
    return this.entries.filter((e) => e.seq >= from);
  }

  clear(): void {
    this.entries = [];
    this.counts.clear();
    this.dropped = 0;
  }
}
