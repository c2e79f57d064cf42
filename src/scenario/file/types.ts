// The shapes of a scenario file after validation, and of what running one produces. A scenario is a
// machine (createMachine's config), processes and their buffers, and a list of steps that a kernel
// driver would do to them (mmap, pin, map, device access, sync, unmap, ...). These types are the
// contract the CLI (phyr run / sweep), the address trace and the web view share.

import type { Errno } from '../../base/index.ts';
import type { MachineConfig } from '../../machine/index.ts';
import type { HugetlbSize } from '../../mm/index.ts';
import type { ScenarioStepDoc } from './schema.ts';

/** One problem found in a scenario file: where, what was there, what was expected, and a sentence. */
export interface ScenarioIssue {
  /** The field path, e.g. `steps[3].device` or `machine.iommu.mode`. */
  readonly path: string;
  /** The bad value (undefined for a missing field). */
  readonly value: unknown;
  /** What would have been accepted, e.g. `one of: nvme0, gpu0`. */
  readonly expected: string;
  /** One line, `path: message (expected ...)`. */
  readonly message: string;
}

/** A scenario file that failed validation: every problem, one line each in `message`. */
export class ScenarioError extends Error {
  readonly issues: readonly ScenarioIssue[];
  constructor(issues: readonly ScenarioIssue[], source?: string) {
    const head = source ? `${source}: ` : '';
    super(`${head}${issues.length} problem${issues.length === 1 ? '' : 's'}:\n${issues.map((i) => `  ${i.message}`).join('\n')}`);
    this.name = 'ScenarioError';
    this.issues = issues;
  }
}

/** A DMA data direction as a scenario names it. */
export type ScenarioDir = 'to-device' | 'from-device' | 'bidirectional';

/** mmap backings a scenario buffer can have. */
export type ScenarioBacking = 'anon' | 'thp' | `hugetlb-${HugetlbSize}` | { readonly device: string; readonly offset?: number };

/** A buffer: a VA range of a process, created by an `mmap` step. */
export interface ScenarioBuffer {
  readonly name: string;
  readonly process: string;
  readonly len: number;
  readonly backing: ScenarioBacking;
}

/** What a step may declare as its expected outcome (an expected failure is a success). */
export interface StepExpect {
  /** The step fails with this errno. */
  readonly errno?: Errno;
  /** The step succeeds (default when no errno is given). */
  readonly ok?: boolean;
  /** An event of this kind (e.g. 'DMA-DEBUG', 'FAULT', 'WARN'), optionally whose message contains `message`, is logged by the step. */
  readonly event?: { readonly kind: string; readonly message?: string };
  /** A byte check of the step (cpu-read, device-read) finds this many differing bytes (true: any). */
  readonly mismatch?: number | boolean;
  /** Counter deltas the step must produce exactly (e.g. { swiotlbBounceBytes: 4096 }). */
  readonly counters?: Readonly<Record<string, number>>;
  /** The number of DMA segments a map step produces. */
  readonly segments?: number;
}

/** Fields every step has. */
export interface StepBase {
  readonly op: string;
  /** A label shown in the output (default: generated from the op). */
  readonly label?: string;
  readonly expect?: StepExpect;
}

/** Every step kind (discriminated by op); schema.ts (STEP_SCHEMAS) describes each field. */
export type ScenarioStep = ScenarioStepDoc;

/** A named variant of the machine: fields replacing the base machine's, and device settings. */
export interface ScenarioConfig {
  readonly description?: string;
  /** Fields replacing the base machine's; null removes the base field. */
  readonly machine: { readonly [K in keyof MachineConfig]?: MachineConfig[K] | null };
  readonly devices: Readonly<Record<string, ScenarioDeviceSetup>>;
}

/** A validated scenario. */
export interface Scenario {
  readonly name: string;
  readonly description?: string;
  /** The createMachine config (sizes already numbers). */
  readonly machine: MachineConfig;
  /** Named overrides of machine fields (shallow merge per top-level field), chosen by --config. */
  readonly configs: Readonly<Record<string, ScenarioConfig>>;
  /** Driver probe settings per device (dma mask, min_align_mask, max segment size, ...). */
  readonly devices: Readonly<Record<string, ScenarioDeviceSetup>>;
  readonly processes: readonly string[];
  readonly buffers: readonly ScenarioBuffer[];
  readonly steps: readonly ScenarioStep[];
  /** Where it came from (file name), for messages. */
  readonly source?: string;
}

/** What a device's driver sets at probe. */
export interface ScenarioDeviceSetup {
  /** dma_set_mask_and_coherent(DMA_BIT_MASK(n)). */
  readonly dmaMask?: number;
  /** dma_set_min_align_mask. */
  readonly minAlignMask?: number;
  /** dma_set_max_seg_size. */
  readonly maxSegSize?: number;
  /** dma_set_seg_boundary. */
  readonly segBoundary?: bigint;
}

/** Counter deltas (machine.stats names), zero entries dropped. */
export type CounterDelta = Readonly<Record<string, number>>;

/** The outcome of one step. */
export interface StepResult {
  readonly index: number;
  readonly op: string;
  readonly label?: string;
  /** The step did what it was expected to (an expected failure is ok). */
  readonly ok: boolean;
  /** The model's errno if the operation failed (expected or not). */
  readonly errno?: Errno;
  /** One line for people. */
  readonly summary: string;
  /** Why ok is false when the expectation was not met (null otherwise). */
  readonly unmet?: string;
  readonly counters: CounterDelta;
  /** Event lines the step logged (`KIND source: message`). */
  readonly events: readonly string[];
  /** Step-specific facts for programs (segment counts, bytes checked, addresses...). */
  readonly data?: Readonly<Record<string, unknown>>;
}

/** Leaks found at teardown. */
export interface LeakReport {
  /** Mappings / IOVA links dma-debug found live at driver unbind (Machine.teardown()). */
  readonly dmaDebugLeaks: number;
  /** Scenario objects the steps left live and teardown undid, as `kind name` (e.g. `mapping m0`). */
  readonly tornDown: readonly string[];
}

/** The outcome of a whole run. */
export interface ScenarioResult {
  readonly name: string;
  readonly config: string | null;
  readonly seed: number;
  readonly steps: readonly StepResult[];
  /** Counter deltas of the whole run (teardown included). */
  readonly counters: CounterDelta;
  /** The machine's event log lines (`KIND source: message`). */
  readonly events: readonly string[];
  readonly leaks: LeakReport;
  /** Index of the step that failed unexpectedly and stopped the run (absent: ran to the end). */
  readonly stoppedAt?: number;
  /** Every step met its expectation and nothing leaked before teardown counted as a failure. */
  readonly ok: boolean;
}

/** One DMA segment a mapping hands the device. */
export interface DmaSegment {
  readonly dmaAddr: bigint;
  readonly len: number;
}

/** A live buffer. */
export interface BufferState {
  readonly name: string;
  readonly process: string;
  readonly va: bigint;
  readonly len: number;
  readonly backing: ScenarioBacking;
  /** False after munmap. */
  readonly live: boolean;
}

/** A live pin. */
export interface PinState {
  readonly name: string;
  readonly buffer: string;
  readonly method: 'pages' | 'pages-fast' | 'phyrs';
  readonly offset: number;
  readonly len: number;
  /** The PinnedPageArray or PinnedPhyrList the mm layer returned. */
  readonly handle: unknown;
  /** Entries of the pinned list (pages or phyrs). */
  readonly entries: number;
  readonly live: boolean;
}

/** A live DMA mapping. */
export interface MappingState {
  readonly name: string;
  readonly device: string;
  readonly method: string;
  readonly dir: ScenarioDir;
  readonly attrs: readonly string[];
  /** The pin (or buffer) it maps. */
  readonly source: string;
  /** The buffer whose bytes it maps. */
  readonly buffer: string;
  /** Offset into the buffer of the first mapped byte, and the bytes mapped. */
  readonly offset: number;
  readonly len: number;
  /** What the model returned: sg table, DmaPhyrsMapping, DmaIovaState, dma addresses, ... */
  readonly handle: unknown;
  /** DMA segments in buffer byte order. */
  readonly segments: readonly DmaSegment[];
  readonly live: boolean;
}

/**
 * A stretch of the bytes an IOAS mapping maps, in IOVA order: `len` bytes of a buffer (IOMMU_IOAS_MAP)
 * or of a dma-buf (IOMMU_IOAS_MAP_FILE) from `offset`; neither set for bytes the run does not follow
 * (an area no ioas-map of the scenario made).
 */
export interface IoasMappingPiece {
  readonly buffer: string | null;
  readonly dmabuf: string | null;
  readonly offset: number;
  readonly len: number;
}

/**
 * A mapping an ioas-map step made (a buffer range, IOMMU_IOAS_MAP; or a dma-buf slice,
 * IOMMU_IOAS_MAP_FILE) or an ioas-copy step made (IOMMU_IOAS_COPY of such memory): at an IOVA of an IOAS.
 */
export interface IoasMappingState {
  readonly name: string;
  readonly ioas: string;
  /** The step that made it. */
  readonly op: 'ioas-map' | 'ioas-copy';
  /**
   * What it maps, in IOVA order, their lengths adding up to len: one piece for an ioas-map; for a
   * copy, what the source range mapped (io_pagetable.c: iopt_get_pages takes one iopt_pages window per
   * source area): one piece per stretch of one buffer's (or one dma-buf's) contiguous bytes, so a copy
   * over mappings of two buffers, or of one buffer's bytes out of order, has several.
   */
  readonly pieces: readonly IoasMappingPiece[];
  readonly len: number;
  /** ioas-copy: the source mapping when the copy named one (else null), and the source IOAS. */
  readonly copyOf: { readonly ioas: string; readonly mapping: string | null; readonly iova: bigint } | null;
  /** The IOVA mapped (the one given, or the one the IOAS picked). */
  readonly iova: bigint;
  readonly readable: boolean;
  readonly writeable: boolean;
  /** False after its ioas-unmap (or the IOAS's destroy). */
  readonly live: boolean;
}

/** A hw_pagetable of an IOAS: one IOMMU domain holding every area, and the devices attached to it. */
export interface IoasHwptState {
  /** The pt_id iommufd gave it. */
  readonly id: number;
  /** Made by an attach to the IOAS (shared by later attaches), else by ioas-attach's hwpt: own. */
  readonly auto: boolean;
  readonly devices: readonly string[];
}

/** An area of an IOAS: an IOVA range and what it maps. */
export interface IoasAreaState {
  readonly iova: bigint;
  readonly len: number;
  /** The IOAS mapping (ioas-map, ioas-copy) it belongs to (null: none of the scenario's names). */
  readonly mapping: string | null;
  /** Its pages are pinned (some domain holds it). */
  readonly pinned: boolean;
}

/** A live IOAS (ioas-alloc) as the model holds it now. */
export interface IoasState {
  readonly name: string;
  /** The devices attached, hw_pagetable by hw_pagetable. */
  readonly devices: readonly string[];
  readonly hwpts: readonly IoasHwptState[];
  readonly areas: readonly IoasAreaState[];
  /** iopt->iova_alignment: 1 without a domain, else the domains' largest smallest page. */
  readonly iovaAlignment: number;
}
