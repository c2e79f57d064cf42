// Models: mm/mmu_notifier.c and include/linux/mmu_notifier.h (Linux 7.1), the interval-notifier half:
// mmu_interval_notifier_insert / _remove, the invalidate callback run by
// mmu_notifier_invalidate_range_start() for every subscription whose interval intersects the range,
// and the collision-retry protocol a secondary MMU (a NIC's MTT, a GPU's page table) uses to build
// its translations: mmu_interval_read_begin() before reading the CPU page tables (hmm_range_fault),
// mmu_interval_read_retry() under the driver's lock before publishing them, mmu_interval_set_seq()
// from the invalidate callback under that same lock.
//
// The sequence numbers follow mm/mmu_notifier.c: the mm's invalidate_seq is even while no range is
// being invalidated and odd (|= 1) from the first invalidate_range_start that hits a subscription
// until the last invalidate_range_end; a subscription's own invalidate_seq is odd and differs from
// the mm's while idle (insert sets it to the mm's seq - 1), and becomes the mm's odd cur_seq when its
// callback calls mmu_interval_set_seq(). Inserts and removes that arrive while an invalidation is
// running are deferred to its end (mn_itree_inv_end), as the kernel does.
//
// Model deviation: the model runs one thread, so mmu_interval_read_begin() never sleeps: it is
// only ever called while an invalidation runs when a driver calls it from inside its own
// invalidate callback (a deadlock in the kernel); the model reports that as a WARN and returns.
// Model deviation: the interval tree is a plain list scanned per invalidation (a handful of
// subscriptions per process in every workload the model runs).

import { checkAddr, checkLen, err, hex, ok, type Result } from '../base/index.ts';
import { describeValue } from '../base/index.ts';
import type { MmuNotifierEvent, MmuNotifierHook } from './types.ts';
import type { UserMm } from './user-mm.ts';
import './counters.ts';

/** MMU_NOTIFIER_RANGE_BLOCKABLE: the invalidation may sleep (always set by invalidate_range_start). */
export const MMU_NOTIFIER_RANGE_BLOCKABLE = 1;

/** struct mmu_notifier_range: the range being invalidated (user addresses, end exclusive) and why. */
export interface MmuNotifierRange {
  readonly mm: UserMm;
  readonly start: bigint;
  readonly end: bigint;
  readonly flags: number;
  readonly event: MmuNotifierEvent;
}

/** struct mmu_interval_notifier_ops: invalidate() (the single-pass form). */
export interface MmuIntervalNotifierOps {
  /**
   * Called before the CPU page tables of an intersecting range change. On return the caller must
   * have stopped using (zapped) its translations of that range; it must call mmuIntervalSetSeq(sub,
   * curSeq) under the lock its read side takes for mmuIntervalReadRetry. Return false only when it
   * would have to sleep and range.flags lacks MMU_NOTIFIER_RANGE_BLOCKABLE.
   */
  invalidate(sub: MmuIntervalNotifier, range: MmuNotifierRange, curSeq: number): boolean;
}

/** struct mmu_interval_notifier: one subscription to invalidations of [start, last] of an mm. */
export class MmuIntervalNotifier {
  /** @internal interval_sub->invalidate_seq. */
  invalidateSeq = 0;
  /** @internal In the interval tree (not RB_EMPTY_NODE). */
  inTree = false;
  /** @internal On the deferred list (an insert or remove waiting for the invalidation's end). */
  deferred = false;
  /** Removed by mmuIntervalNotifierRemove. */
  removed = false;

  /** @internal Made by mmuIntervalNotifierInsert only. */
  constructor(
    readonly mm: UserMm,
    /** First user address covered. */
    readonly start: number,
    /** Last user address covered (inclusive, as the kernel's interval tree). */
    readonly last: number,
    readonly ops: MmuIntervalNotifierOps,
  ) {}
}

/**
 * struct mmu_notifier_subscriptions of one mm: the interval tree, the invalidation sequence and the
 * deferred list. Created by the first mmuIntervalNotifierInsert on the mm (mmu_notifier_register).
 */
export class MmuNotifierSubscriptions implements MmuNotifierHook {
  /** Even while idle; odd while an invalidation that hit a subscription runs. Starts at 2 (mmu_notifier_register). */
  invalidateSeq = 2;
  activeInvalidateRanges = 0;
  readonly itree: MmuIntervalNotifier[] = [];
  readonly deferredList: MmuIntervalNotifier[] = [];

  constructor(readonly mm: UserMm) {}

  /** mn_itree_is_invalidating. */
  get invalidating(): boolean {
    return (this.invalidateSeq & 1) === 1;
  }

  /**
   * __mmu_notifier_invalidate_range_start -> mn_itree_invalidate: every subscription whose interval
   * intersects [start, end) gets its invalidate callback with the mm's (now odd) sequence number.
   */
  invalidateRangeStart(start: number, end: number, event: MmuNotifierEvent): void {
    this.activeInvalidateRanges++;
    const hit = this.itree.filter((s) => s.start <= end - 1 && s.last >= start);
    if (hit.length === 0) return;
    this.invalidateSeq |= 1;
    const curSeq = this.invalidateSeq;
    const range: MmuNotifierRange = {
      mm: this.mm, start: BigInt(start), end: BigInt(end), flags: MMU_NOTIFIER_RANGE_BLOCKABLE, event,
    };
    const stats = this.mm.machine.stats;
    for (const sub of hit) {
      stats.mmuIntervalInvalidates++;
      if (!sub.ops.invalidate(sub, range, curSeq)) {
        // a blockable range must not be refused (WARN_ON(mmu_notifier_range_blockable(range)))
        this.mm.machine.events.warn('mmu_notifier', `invalidate of [${hex(start)}, ${hex(end)}) refused on a blockable range`);
      }
    }
  }

  /** __mmu_notifier_invalidate_range_end -> mn_itree_inv_end: the last end makes the seq even and runs the deferred list. */
  invalidateRangeEnd(): void {
    if (--this.activeInvalidateRanges > 0 || !this.invalidating) return;
    this.invalidateSeq++;
    for (const sub of this.deferredList) {
      sub.deferred = false;
      if (!sub.inTree) {
        this.itree.push(sub);
        sub.inTree = true;
      } else {
        this.itree.splice(this.itree.indexOf(sub), 1);
        sub.inTree = false;
      }
    }
    this.deferredList.length = 0;
  }
}

function checkSub(sub: unknown): MmuIntervalNotifier {
  if (!(sub instanceof MmuIntervalNotifier)) throw new TypeError(`interval_sub must be an MmuIntervalNotifier, got ${describeValue(sub)}`);
  return sub;
}

function subscriptionsOf(sub: MmuIntervalNotifier): MmuNotifierSubscriptions {
  return sub.mm.notifierSubscriptions as MmuNotifierSubscriptions;
}

/** The mm's subscriptions (mm->notifier_subscriptions), or null before the first insert. */
export function mmuNotifierSubscriptions(mm: UserMm): MmuNotifierSubscriptions | null {
  const s = mm.notifierSubscriptions;
  return s instanceof MmuNotifierSubscriptions ? s : null;
}

/**
 * mmu_interval_notifier_insert(): subscribes ops to invalidations of [start, start + length) of mm.
 * Errors: EOVERFLOW (length 0, or start + length - 1 beyond 64 bits), as the kernel. Inserted while
 * an invalidation runs, the subscription joins the tree at its end but starts with the running
 * (odd) sequence number, so a read side begun now must retry.
 */
export function mmuIntervalNotifierInsert(mm: UserMm, start: bigint, length: number, ops: MmuIntervalNotifierOps): Result<MmuIntervalNotifier> {
  const s = checkAddr('start', start, 64);
  checkLen('length', length);
  if (ops === null || typeof ops !== 'object' || typeof ops.invalidate !== 'function') {
    throw new TypeError(`ops must have an invalidate function, got ${describeValue(ops)}`);
  }
  if (length === 0 || s + BigInt(length) - 1n > (1n << 64n) - 1n) return err('EOVERFLOW', `interval [${hex(s)}, +${length}) is empty or overflows`);
  let subs = mmuNotifierSubscriptions(mm);
  if (subs === null) {
    subs = new MmuNotifierSubscriptions(mm);
    mm.notifierSubscriptions = subs;
  }
  const sub = new MmuIntervalNotifier(mm, Number(s), Number(s + BigInt(length) - 1n), ops);
  if (subs.activeInvalidateRanges > 0) {
    if (subs.invalidating) {
      subs.deferredList.push(sub);
      sub.deferred = true;
    } else {
      subs.invalidateSeq |= 1;
      subs.itree.push(sub);
      sub.inTree = true;
    }
    sub.invalidateSeq = subs.invalidateSeq;
  } else {
    sub.invalidateSeq = subs.invalidateSeq - 1;
    subs.itree.push(sub);
    sub.inTree = true;
  }
  return ok(sub);
}

/**
 * mmu_interval_notifier_remove(): no callback runs for sub after this returns. Removing twice is a
 * misuse (WARN, nothing done).
 */
export function mmuIntervalNotifierRemove(sub: MmuIntervalNotifier): void {
  checkSub(sub);
  const subs = subscriptionsOf(sub);
  if (sub.removed) {
    sub.mm.machine.events.warn('mmu_notifier', `mmu_interval_notifier_remove of an interval at ${hex(sub.start)} removed already`);
    return;
  }
  sub.removed = true;
  if (subs.invalidating) {
    if (!sub.inTree) {
      subs.deferredList.splice(subs.deferredList.indexOf(sub), 1);
      sub.deferred = false;
    } else {
      subs.deferredList.push(sub);
      sub.deferred = true;
    }
    return;
  }
  subs.itree.splice(subs.itree.indexOf(sub), 1);
  sub.inTree = false;
}

/**
 * mmu_interval_read_begin(): opens a read-side critical section (before hmm_range_fault); pass the
 * result to mmuIntervalReadRetry / mmuIntervalCheckRetry and to HmmRange.notifierSeq.
 */
export function mmuIntervalReadBegin(sub: MmuIntervalNotifier): number {
  checkSub(sub);
  const subs = subscriptionsOf(sub);
  const seq = sub.invalidateSeq;
  if (seq === subs.invalidateSeq) {
    // The kernel sleeps here until the running invalidation ends; with one thread that can only be
    // a call from inside the invalidation itself.
    sub.mm.machine.events.warn('mmu_notifier', `mmu_interval_read_begin at ${hex(sub.start)} while its range is being invalidated (would wait forever)`);
  }
  return seq;
}

/** mmu_interval_read_retry(): true when an invalidation collided with the section begun with seq. */
export function mmuIntervalReadRetry(sub: MmuIntervalNotifier, seq: number): boolean {
  return checkSub(sub).invalidateSeq !== seq;
}

/** mmu_interval_check_retry(): the same test, usable inside the section (hmm_range_fault's loop). */
export function mmuIntervalCheckRetry(sub: MmuIntervalNotifier, seq: number): boolean {
  return checkSub(sub).invalidateSeq !== seq;
}

/** mmu_interval_set_seq(): called by the invalidate callback, under the driver's lock, with curSeq. */
export function mmuIntervalSetSeq(sub: MmuIntervalNotifier, curSeq: number): void {
  checkSub(sub).invalidateSeq = curSeq;
}
