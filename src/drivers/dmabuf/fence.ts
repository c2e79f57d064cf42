// Models: the parts of drivers/dma-buf/dma-fence.c and drivers/dma-buf/dma-resv.c a move needs: a
// fence that signals once (dma_fence_signal), the reservation object's lock (a ww_mutex:
// dma_resv_lock / dma_resv_unlock, dma_resv_assert_held) and its fence list by usage
// (dma_resv_add_fence, dma_resv_test_signaled, dma_resv_wait_timeout).
// Model deviation: the model has no concurrency. An unsignaled fence stands for work a device has
// queued; waiting for it runs that work to completion (the callback given at dmaFenceInit) and
// signals it, so "wait for in-flight DMA, then move" happens in that order.

import type { EventLog } from '../../base/index.ts';

/** enum dma_resv_usage (include/linux/dma-resv.h), in the kernel's order: a wait for one usage waits for all lower ones. */
export const DMA_RESV_USAGE_KERNEL = 0;
export const DMA_RESV_USAGE_WRITE = 1;
export const DMA_RESV_USAGE_READ = 2;
export const DMA_RESV_USAGE_BOOKKEEP = 3;
export type DmaResvUsage = 0 | 1 | 2 | 3;

let nextFenceContext = 1;

/** struct dma_fence: signals once; `work` is what the fence waits for (in-flight DMA), run by a wait. */
export class DmaFence {
  readonly context: number;
  readonly seqno: number;
  private done = false;
  private work: (() => void) | null;

  constructor(work: (() => void) | null = null, context = nextFenceContext++, seqno = 1) {
    this.work = work;
    this.context = context;
    this.seqno = seqno;
  }

  /** dma_fence_is_signaled(). */
  get signaled(): boolean {
    return this.done;
  }

  /** dma_fence_signal(): true the first time; false if it was signaled already (the kernel's -EINVAL). */
  signal(): boolean {
    if (this.done) return false;
    this.done = true;
    this.work = null;
    return true;
  }

  /** dma_fence_wait(): the queued work completes, then the fence signals. */
  wait(): void {
    if (this.done) return;
    const w = this.work;
    this.work = null;
    if (w !== null) w();
    this.signal();
  }
}

/** dma_fence_init() with the work the fence completes (null: signaled by someone calling signal()). */
export function dmaFenceInit(work: (() => void) | null = null): DmaFence {
  if (work !== null && typeof work !== 'function') throw new TypeError(`work must be a function or null, got ${String(work)}`);
  return new DmaFence(work);
}

/** struct dma_resv: the ww_mutex (held or not) and the fences with their usage. */
export class DmaResv {
  private held = false;
  private readonly fences: Array<{ fence: DmaFence; usage: DmaResvUsage }> = [];
  readonly events: EventLog;
  /** Who the lock is for (the dma-buf's name), for the event log. */
  readonly name: string;

  constructor(events: EventLog, name: string) {
    this.events = events;
    this.name = name;
  }

  get locked(): boolean {
    return this.held;
  }

  /** ww_mutex_lock(resv, NULL). Taking it twice is a self-deadlock: lockdep's WARN, and nothing changes. */
  lock(): void {
    if (this.held) {
      this.events.warn('dma-resv', `possible recursive locking detected: dma_resv_lock of ${this.name} already held`, { buf: this.name });
      return;
    }
    this.held = true;
  }

  /** ww_mutex_unlock(). Unlocking a lock not held is a WARN (mutex debugging) and changes nothing. */
  unlock(): void {
    if (!this.held) {
      this.events.warn('dma-resv', `dma_resv_unlock of ${this.name}, which is not locked`, { buf: this.name });
      return;
    }
    this.held = false;
  }

  /**
   * dma_resv_assert_held(): lockdep's WARN when the lock is not held (the kernel then carries on);
   * returns whether it was held.
   */
  assertHeld(what: string): boolean {
    if (this.held) return true;
    this.events.warn('dma-resv', `${what}: dma_resv_assert_held(${this.name}) failed: the reservation lock is not held`, { buf: this.name, what });
    return false;
  }

  /** dma_resv_add_fence(): needs the lock (WARN otherwise; the fence is still added, as the kernel would). */
  addFence(fence: DmaFence, usage: DmaResvUsage): void {
    if (!(fence instanceof DmaFence)) throw new TypeError(`fence must be a DmaFence, got ${String(fence)}`);
    checkUsage(usage);
    this.assertHeld('dma_resv_add_fence');
    // a later fence of the same context replaces the earlier one
    const i = this.fences.findIndex((f) => f.fence.context === fence.context);
    if (i >= 0) this.fences[i] = { fence, usage };
    else this.fences.push({ fence, usage });
  }

  /** dma_resv_test_signaled(): every fence of `usage` or a lower usage has signaled. */
  testSignaled(usage: DmaResvUsage): boolean {
    checkUsage(usage);
    return this.fences.every((f) => f.usage > usage || f.fence.signaled);
  }

  /** dma_resv_wait_timeout() with MAX_SCHEDULE_TIMEOUT: waits for the fences of `usage` and lower; how many it waited for. */
  waitTimeout(usage: DmaResvUsage): number {
    checkUsage(usage);
    let n = 0;
    for (const f of [...this.fences]) {
      if (f.usage > usage || f.fence.signaled) continue;
      f.fence.wait();
      n++;
    }
    // signaled fences are pruned, as dma_resv_reserve_fences does on the next add
    for (let i = this.fences.length - 1; i >= 0; i--) if (this.fences[i].fence.signaled) this.fences.splice(i, 1);
    return n;
  }

  /** Fences not yet signaled. */
  get pending(): number {
    return this.fences.filter((f) => !f.fence.signaled).length;
  }
}

function checkUsage(usage: unknown): asserts usage is DmaResvUsage {
  if (usage !== 0 && usage !== 1 && usage !== 2 && usage !== 3) {
    throw new RangeError(`usage must be a DMA_RESV_USAGE_* value (0..3), got ${String(usage)}`);
  }
}
