// Models: drivers/iommu/dma-iommu.c (Linux 7.1): the IOVA flush queue
// (queue_iova, fq_ring_free, fq_flush_iotlb, fq_flush_timeout). In lazy mode an
// unmapped IOVA range is not invalidated at once: it waits in the queue, still allocated, until a
// global IOTLB flush (queue full, or the timer) passes it, and only then returns to the allocator.
// Time is a logical clock advanced by the caller (iommuDmaFlushQueueTick).
// Model deviation: one CPU, so one ring (the per-CPU rings of the kernel behave alike per CPU).

import { timerWheelExpiry } from '../base/index.ts';
import type { MachineMm } from '../mm/index.ts';
import type { IovaDomain } from './iova.ts';
import './counters.ts';

/**
 * What a flush queue needs of the DMA domain that owns it (an IommuDomain): its IOVA allocator,
 * the table pages its unmaps freed, and a global IOTLB flush.
 */
export interface FlushQueueOwner {
  readonly iovad: IovaDomain | null;
  readonly iommu: { readonly mm: MachineMm };
  releaseTables(freelist: number[]): void;
  flushIotlbAll(): void;
}

/** Ring size of a per-CPU flush queue (it holds one entry less: see FlushQueue.queue). */
export const IOVA_DEFAULT_FQ_SIZE = 256;
/** Timeout of the per-CPU flush queue in ms. */
export const IOVA_DEFAULT_FQ_TIMEOUT = 10;
/** Ring size of the single queue (shadow_on_flush drivers); it holds 32767 entries. */
export const IOVA_SINGLE_FQ_SIZE = 32768;
/** Timeout of the single queue in ms. */
export const IOVA_SINGLE_FQ_TIMEOUT = 1000;

interface FqEntry {
  readonly iovaPfn: number;
  readonly pages: number;
  readonly freelist: number[];
  readonly counter: number;
}

/** struct iova_fq plus the cookie's flush counters and timer. Counters: flushQueueEntries, flushQueueFlushes. */
export class FlushQueue {
  /** Ring size (fq_size, a power of two). The ring holds capacity - 1 entries: one slot stays free. */
  readonly capacity: number;
  readonly timeoutMs: number;
  /** fq_flush_start_cnt / fq_flush_finish_cnt. */
  flushStartCnt = 0;
  flushFinishCnt = 0;
  /** The logical clock, in ms. */
  nowMs = 0;
  timerOn = false;
  timerDeadlineMs = 0;
  private readonly ring: FqEntry[] = [];
  private head = 0;
  private readonly domain: FlushQueueOwner;
  /**
   * CONFIG_HZ: the timer runs on the timer wheel's ticks of 1000 / hz ms; 0 (no `iommu.hz`
   * configured): an exact timer of timeoutMs.
   */
  readonly hz: number;

  constructor(domain: FlushQueueOwner, capacity: number, timeoutMs: number, hz = 0) {
    this.domain = domain;
    this.capacity = capacity;
    this.timeoutMs = timeoutMs;
    this.hz = hz;
  }

  /** Entries waiting for their flush. */
  get length(): number {
    return this.ring.length - this.head;
  }

  /** IOVA frame ranges waiting, as [first frame, frames]. */
  pending(): Array<[number, number]> {
    return this.ring.slice(this.head).map((e) => [e.iovaPfn, e.pages]);
  }

  /** fq_ring_free: returns to the allocator every entry a finished flush has passed. */
  private ringFree(): void {
    const iovad = this.domain.iovad;
    while (this.head < this.ring.length && this.ring[this.head].counter < this.flushFinishCnt) {
      const e = this.ring[this.head++];
      iovad?.freeIovaFast(e.iovaPfn, e.pages);
      this.domain.releaseTables(e.freelist);
    }
    if (this.head > 1024 && this.head * 2 > this.ring.length) {
      this.ring.splice(0, this.head);
      this.head = 0;
    }
  }

  /** fq_flush_iotlb: one global IOTLB flush that every queued entry so far is covered by. */
  private flushIotlb(): void {
    this.flushStartCnt++;
    this.domain.flushIotlbAll();
    this.flushFinishCnt++;
    this.domain.iommu.mm.stats.flushQueueFlushes++;
  }

  /**
   * queue_iova: frees what earlier flushes have passed, forces a flush when the ring is full, then
   * queues the range (with the table pages its unmap unlinked) and arms the timer. The ring is full
   * at capacity - 1 entries (drivers/iommu/dma-iommu.c: fq_full() compares tail + 1 with head, so
   * one slot of the 256 is never used): the 256th queued entry of a per-CPU queue flushes first.
   */
  queue(iovaPfn: number, pages: number, freelist: number[]): void {
    this.ringFree();
    if (this.length >= this.capacity - 1) {
      this.flushIotlb();
      this.ringFree();
    }
    this.ring.push({ iovaPfn, pages, freelist: freelist.splice(0), counter: this.flushStartCnt });
    this.domain.iommu.mm.stats.flushQueueEntries++;
    if (!this.timerOn) {
      // mod_timer(jiffies + msecs_to_jiffies(fq_timeout)); the timer wheel runs it in the bucket
      // after its expiry (timerWheelExpiry): one jiffy late for the per-CPU queue's 10 ms, at the
      // next multiple of 64 jiffies for the single queue's 1000 ms at HZ=1000 (a level-2 timer)
      this.timerOn = true;
      if (this.hz === 0) {
        this.timerDeadlineMs = this.nowMs + this.timeoutMs;
      } else {
        const now = Math.floor(this.nowMs * this.hz / 1000);
        this.timerDeadlineMs = timerWheelExpiry(now, Math.ceil(this.timeoutMs * this.hz / 1000), this.hz) * 1000 / this.hz;
      }
    }
  }

  /** Advances the logical clock; runs fq_flush_timeout when the timer expires. */
  tick(ms: number): void {
    if (!(ms >= 0) || !Number.isFinite(ms)) throw new RangeError(`ms must be a finite number >= 0, got ${ms}`);
    this.nowMs += ms;
    this.domain.iovad?.tick(ms);
    if (this.timerOn && this.nowMs >= this.timerDeadlineMs) {
      this.timerOn = false;
      this.flushIotlb();
      this.ringFree();
    }
  }

  /** A flush now (iommu_dma_flush_fq / domain teardown): every queued entry is freed. */
  flush(): void {
    this.timerOn = false;
    this.flushIotlb();
    this.ringFree();
  }
}
