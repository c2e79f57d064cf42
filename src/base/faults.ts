// Models: the kernel's fault-injection framework (lib/fault-inject.c: should_fail_ex() with its
// "interval"/"times" and "probability" knobs; mm/fail_page_alloc.c: should_fail_alloc_page();
// mm/failslab.c: should_failslab()) as named allocation points of the model. Each allocation site
// of the model asks faultInjected(host, point) before it allocates; when a spec armed on the
// machine says this call fails, the site takes the same path as a natural failure (the same errno,
// the same unwinding) and a FAULT-INJECT event names the point and the call number.
// Model deviation: the kernel's knobs are one attribute set per mechanism (fail_page_alloc,
// failslab, fail_make_request, ...) chosen by probability/interval/times and filtered by task or
// caller address; the model names each allocation point it has and fails "the Nth call" of one point
// or each call with probability p from a seeded PRNG, so every single-failure position of an
// operation can be reached deterministically.

import { declareEventKinds, type EventLog } from './events.ts';
import { Prng } from './prng.ts';
import { SlotKey, type Slots } from './slots.ts';

declare module './events.ts' {
  interface EventKinds {
    /** An allocation failed because a fault-injection spec said so (faults.ts). */
    'FAULT-INJECT': true;
  }
}
declareEventKinds('base/faults', ['FAULT-INJECT']);

/**
 * The model's allocation points, each standing for the kernel allocations named:
 * - `page-alloc`: pages from the page allocator for kernel use (alloc_pages: dma_alloc_coherent,
 *   dma_pool pages, the system heap, GART / TCE tables, GPU pages), mm/page_alloc.c;
 * - `iommu-pt`: an IOMMU page-table page (iommu_alloc_pages_node_sz from the page table's walk);
 * - `iova`: an IOVA range from a DMA cookie (drivers/iommu/dma-iommu.c: iommu_dma_alloc_iova ->
 *   alloc_iova_fast; ARM32's bitmap __alloc_iova);
 * - `swiotlb`: bounce slots (kernel/dma/swiotlb.c: swiotlb_find_slots from swiotlb_tbl_map_single);
 * - `dma-pool`: a block from a dma_pool (mm/dmapool.c: dma_pool_alloc; NVMe PRP / SGL lists, RDMA
 *   MTT chunks, SG pages, GPU page tables);
 * - `folio`: a user folio allocated by a page fault, GUP's faultin_page() included, or as a
 *   FOLL_LONGTERM migration target (mm/memory.c: do_anonymous_page, vma_alloc_folio);
 * - `sg-table`: the scatterlist chunks of an sg_table (lib/scatterlist.c: sg_kmalloc from
 *   __sg_alloc_table; failslab);
 * - `dma-list`: a kvcalloc'd array of DMA addresses (mm/hmm.c: hmm_dma_map_alloc's dma_list);
 * - `ops-space`: a dma_map_ops family's own address space (arch/x86/kernel/amd_gart_64.c:
 *   alloc_iommu; arch/powerpc/kernel/iommu.c: iommu_range_alloc, which the kernel's own fail_iommu
 *   attribute can fail; drivers/xen/grant-dma-ops.c:
 *   gnttab_alloc_grant_reference_seq).
 */
export const FAULT_POINTS = [
  'page-alloc', 'iommu-pt', 'iova', 'swiotlb', 'dma-pool', 'folio', 'sg-table', 'dma-list', 'ops-space',
] as const;

export type FaultPoint = (typeof FAULT_POINTS)[number];

/** Fail exactly the nth call (1-based, counted from when the spec was armed) of `point`. */
export interface FaultNth {
  readonly point: FaultPoint;
  readonly nth: number;
}

/** Fail each call of `point` with probability p, drawn from a PRNG seeded with `seed`. */
export interface FaultProbability {
  readonly point: FaultPoint;
  readonly probability: number;
  readonly seed: number;
}

export type FaultSpec = FaultNth | FaultProbability;

/** What the injector needs of a machine: its slots (where the state lives) and its event log. */
export interface FaultHost {
  readonly slots: Slots;
  readonly events: EventLog;
}

/** Calls per point, as counted since the specs were armed (or the count was reset). */
export type FaultCounts = Record<FaultPoint, number>;

interface Armed {
  readonly spec: FaultSpec;
  readonly rng: Prng | null;
}

class FaultState {
  readonly calls = new Map<FaultPoint, number>();
  readonly armed: Armed[] = [];
  /** Failures injected so far. */
  injected = 0;
}

const FAULTS = new SlotKey<FaultState>('faults');

const POINT_SET: ReadonlySet<string> = new Set(FAULT_POINTS);

/**
 * Checks a list of specs (field paths start with `field`, e.g. "config.faults").
 * @throws TypeError/RangeError naming the bad field and value.
 */
export function checkFaultSpecs(field: string, specs: unknown): FaultSpec[] {
  if (!Array.isArray(specs)) throw new TypeError(`${field} must be an array of { point, nth } or { point, probability, seed }, got ${specs === null ? 'null' : typeof specs}`);
  return specs.map((s: unknown, i) => {
    const f = `${field}[${i}]`;
    if (typeof s !== 'object' || s === null || Array.isArray(s)) throw new TypeError(`${f} must be an object, got ${s === null ? 'null' : typeof s}`);
    const o = s as Record<string, unknown>;
    if (typeof o.point !== 'string' || !POINT_SET.has(o.point)) {
      throw new RangeError(`${f}.point must be one of ${FAULT_POINTS.join(', ')}, got ${JSON.stringify(o.point)}`);
    }
    const nth = 'nth' in o, prob = 'probability' in o;
    const allowed = nth ? ['point', 'nth'] : ['point', 'probability', 'seed'];
    for (const k of Object.keys(o)) if (!allowed.includes(k)) throw new RangeError(`${f}.${k} is not an option (known: ${allowed.join(', ')})`);
    if (nth === prob) throw new RangeError(`${f} must have either nth or probability (with seed)`);
    if (nth) {
      if (typeof o.nth !== 'number' || !Number.isSafeInteger(o.nth) || o.nth < 1) throw new RangeError(`${f}.nth must be an integer >= 1, got ${String(o.nth)}`);
      return { point: o.point as FaultPoint, nth: o.nth };
    }
    if (typeof o.probability !== 'number' || !(o.probability >= 0 && o.probability <= 1)) {
      throw new RangeError(`${f}.probability must be a number in [0, 1], got ${String(o.probability)}`);
    }
    if (typeof o.seed !== 'number' || !Number.isSafeInteger(o.seed)) throw new RangeError(`${f}.seed must be a safe integer, got ${String(o.seed)}`);
    return { point: o.point as FaultPoint, probability: o.probability, seed: o.seed };
  });
}

/**
 * Arms `specs` on the host (replacing any armed before) and starts counting calls afresh: nth is
 * counted from here. An empty list disarms (calls are still counted).
 * @throws TypeError/RangeError for a bad spec.
 */
export function setFaults(host: FaultHost, specs: readonly FaultSpec[]): void {
  const checked = checkFaultSpecs('specs', specs);
  const st = new FaultState();
  for (const spec of checked) st.armed.push({ spec, rng: 'seed' in spec ? new Prng(spec.seed) : null });
  host.slots.set(FAULTS, st);
}

/** The specs armed now (setFaults or the machine's `faults` option). */
export function armedFaults(host: FaultHost): FaultSpec[] {
  return host.slots.get(FAULTS)?.armed.map((a) => a.spec) ?? [];
}

/** Calls per point since the specs were armed (all zero when never armed). */
export function faultCounts(host: FaultHost): FaultCounts {
  const st = host.slots.get(FAULTS);
  const out = {} as Record<FaultPoint, number>;
  for (const p of FAULT_POINTS) out[p] = st?.calls.get(p) ?? 0;
  return out;
}

/** Failures injected since the specs were armed. */
export function faultsInjected(host: FaultHost): number {
  return host.slots.get(FAULTS)?.injected ?? 0;
}

/**
 * Runs fn with no fault armed and counts the calls of each allocation point it makes (the positions
 * a single injected failure can take); the specs armed before are armed again afterwards, with
 * their counts as they were.
 */
export function countFaultPoints(host: FaultHost, fn: () => void): FaultCounts {
  const before = host.slots.get(FAULTS);
  host.slots.set(FAULTS, new FaultState());
  try {
    fn();
    return faultCounts(host);
  } finally {
    if (before === undefined) host.slots.delete(FAULTS);
    else host.slots.set(FAULTS, before);
  }
}

/**
 * true when the host has fault state (setFaults, countFaultPoints, the machine's `faults`), so that
 * faultInjected would count or fail the call. A hot allocation site asks this first and builds
 * faultInjected's `what` text only then: `faultsArmed(h) && faultInjected(h, point, text)`.
 */
export function faultsArmed(host: FaultHost): boolean {
  return host.slots.get(FAULTS) !== undefined;
}

/**
 * The allocation site's question: does this call of `point` fail? Counts the call when the host has
 * fault state (setFaults, countFaultPoints, the machine's `faults`). A failure is logged as a
 * FAULT-INJECT event naming the point, the call number and `what` (the allocation).
 */
export function faultInjected(host: FaultHost, point: FaultPoint, what?: string): boolean {
  const st = host.slots.get(FAULTS);
  if (st === undefined) return false;
  const n = (st.calls.get(point) ?? 0) + 1;
  st.calls.set(point, n);
  for (const a of st.armed) {
    if (a.spec.point !== point) continue;
    const fail = a.rng === null ? (a.spec as FaultNth).nth === n : a.rng.chance((a.spec as FaultProbability).probability);
    if (fail) {
      st.injected++;
      host.events.record('FAULT-INJECT', point, `${point} call ${n} failed by injection${what === undefined ? '' : `: ${what}`}`, { point, call: n });
      return true;
    }
  }
  return false;
}
