// The messages between the page (main thread) and the model worker. Everything is plain
// structured-clone data: addresses travel as hex strings ('0x1000'), lengths and counts as numbers.
// The page asks, the worker answers with the same id: { id, ok, value } or { id, ok: false, error }.

/** An address space a row or a trace point lives in. */
export type Space = 'va' | 'phys' | 'dma' | 'iova' | 'pte';

/** One address of the traced byte: a space and an address there ('pte': `<tablePfnHex>:<index>`). */
export interface TracePoint {
  readonly space: Space;
  /** Hex address, or for 'pte' the table page pfn and entry index. */
  readonly addr: string;
  /** Where the point came from (a layer of the trace), for the legend. */
  readonly layer: string;
}

export interface StepRow {
  readonly index: number;
  readonly label: string;
  /** 'pending' before it runs; 'ok' / 'failed' after. */
  readonly status: 'pending' | 'ok' | 'failed';
  readonly summary: string;
  readonly errno?: string;
  /** The step's status as `phyr run` prints it: 'ok', 'ok (EFAULT expected)', 'FAILED' ('' before it runs). */
  readonly result: string;
  /** Why a failed step did not meet its expectation (`phyr run`'s "unmet:" line). */
  readonly unmet?: string;
  /** The counters the step changed, as `phyr run` prints them ('pageFaults +4, ...'; '' for none). */
  readonly counters: string;
}

export interface RegionRow {
  readonly name: string;
  readonly kind: string;
  readonly start: string;
  readonly end: string;
  readonly len: number;
  /** Text alternative for the colour: what this region is. */
  readonly label: string;
}

export interface BufferRow {
  readonly name: string;
  readonly process: string;
  readonly va: string;
  readonly len: number;
  readonly backing: string;
  readonly live: boolean;
  /** Pins and mappings of this buffer, by name. */
  readonly pins: readonly string[];
  readonly mappings: readonly string[];
}

/** A span drawn on the physical memory map: part of a buffer, pinned or not, mapped or not. */
export interface PhysSpan {
  readonly buffer: string;
  readonly start: string;
  readonly end: string;
  readonly pinned: boolean;
  readonly mapped: boolean;
}

/** Pages of a hugetlb pool on the physical memory map: adjacent, in one RAM region, of one state. */
export interface HugetlbRun {
  /** The pool's size name: '2M', '1G', '512M', ... */
  readonly pool: string;
  readonly start: string;
  readonly end: string;
  /** Huge pages in the run (a merged run may have gaps between them). */
  readonly pages: number;
  /** In use (a folio faulted into a process) or free in the pool. */
  readonly inUse: boolean;
  /** The System RAM region the pages come from. */
  readonly region: string;
  /** Text alternative for the colour. */
  readonly label: string;
}

export interface LayoutSummary {
  /** Row source id, e.g. 'layout:buf0:phyr'. */
  readonly source: string;
  readonly label: string;
  readonly entries: number | null;
  readonly kernelBytes: number | null;
  /** The parts counted (page array + sg_table). */
  readonly parts: ReadonlyArray<{ readonly name: string; readonly entries: number; readonly kernelBytes: number }>;
  /** Why the layout cannot describe the buffer. */
  readonly error: string | null;
}

export interface PciNodeRow {
  readonly name: string;
  readonly parent: string | null;
  readonly kind: string;
  readonly bdf: string;
  readonly bars: readonly string[];
}

export interface DomainRow {
  readonly device: string;
  readonly type: string;
  readonly format: string | null;
  readonly rootPfn: string | null;
  /** Bytes of one table page: a machine page (4 KiB, or the 16 / 64 KiB of ARM LPAE's granule there); table pfns count these. */
  readonly tablePageBytes: number;
  readonly tablePages: number;
  readonly iovaRanges: number;
  readonly iotlbEntries: number;
  readonly aperture: string;
  /**
   * The iommufd hw_pagetable whose domain this is (the device attached to an IOAS: ioas-attach), or
   * null (its DMA-API domain). ioas: the scenario's name of the IOAS (null: one no step named).
   */
  readonly hwpt: { readonly id: number; readonly ioas: string | null; readonly auto: boolean; readonly devices: readonly string[] } | null;
}

/** A live IOAS of the scenario (ioas-alloc): its hw_pagetables with their devices, and its areas. */
export interface IoasRow {
  readonly name: string;
  readonly devices: readonly string[];
  readonly hwpts: ReadonlyArray<{ readonly id: number; readonly auto: boolean; readonly devices: readonly string[] }>;
  /** Mapped IOVA ranges, lowest first; mapping: the ioas-map step's name (null: made otherwise). */
  readonly areas: ReadonlyArray<{ readonly iova: string; readonly len: number; readonly mapping: string | null; readonly pinned: boolean }>;
  readonly iovaAlignment: number;
}

export interface EventRow {
  readonly seq: number;
  readonly kind: string;
  readonly source: string;
  readonly message: string;
  /** The step that logged it (-1: machine setup). */
  readonly step: number;
}

/** Everything the page shows that is small enough to send whole after each step. */
export interface Snapshot {
  readonly name: string;
  readonly description: string;
  /** The scenario's configurations (`configs`), by name, with their descriptions. */
  readonly configs: ReadonlyArray<{ readonly name: string; readonly description: string }>;
  /** The configuration the run applies (null: the base machine), as `phyr run --config`. */
  readonly config: string | null;
  /** The run's seed (`phyr run --seed`), and the one it has without one (machine.seed, else 1). */
  readonly seed: number;
  readonly defaultSeed: number;
  readonly state: 'ready' | 'done' | 'stopped';
  /** Steps run so far. */
  readonly index: number;
  readonly steps: readonly StepRow[];
  readonly regions: readonly RegionRow[];
  readonly physTop: string;
  readonly spans: readonly PhysSpan[];
  /** Spans left out of `spans` (too many to draw: the list panel has them all). */
  readonly spansOmitted: number;
  /** The hugetlb pools' pages, drawn within the RAM they come from. */
  readonly hugetlb: readonly HugetlbRun[];
  readonly buffers: readonly BufferRow[];
  readonly pci: readonly PciNodeRow[];
  readonly domains: readonly DomainRow[];
  /** The IOASes the steps allocated and have not destroyed. */
  readonly ioases: readonly IoasRow[];
  readonly counters: ReadonlyArray<readonly [string, number]>;
  readonly events: readonly EventRow[];
  readonly leaks: string | null;
}

/** Rows of a list, for a virtualised list: only the visible ones are asked for. */
export interface RowsAnswer {
  readonly source: string;
  readonly columns: readonly string[];
  readonly total: number;
  readonly start: number;
  readonly rows: ReadonlyArray<{ readonly cells: readonly string[]; readonly hit: boolean }>;
  /** Index of the first row the current trace hits (-1: none). */
  readonly firstHit: number;
}

export interface TableAnswer {
  readonly device: string;
  readonly pfn: string;
  readonly level: number;
  /** The page's bytes (4096, or 16 / 64 KiB for ARM LPAE's larger granules) as lines of 16 hex bytes. */
  readonly hex: readonly string[];
  /** Every entry (512 for a 4 KiB page): index, raw, kind, output address, attributes. */
  readonly entries: ReadonlyArray<{ readonly index: number; readonly raw: string; readonly kind: string; readonly oa: string; readonly attrs: string; readonly hit: boolean }>;
}

export interface BytesAnswer {
  readonly buffer: string;
  readonly offset: number;
  /** Bytes as numbers (-1: not readable, no page). */
  readonly bytes: readonly number[];
  readonly len: number;
}

export interface TraceAnswer {
  readonly buffer: string;
  readonly offset: number;
  /** The trace as people read it (the same text as `phyr trace`). */
  readonly text: string;
  /** The trace as data (the same JSON as `phyr trace --json`). */
  readonly json: unknown;
  readonly points: readonly TracePoint[];
}

export interface P2pAnswer {
  readonly provider: string;
  readonly client: string;
  /** Device names from the provider up to the common ancestor and down to the client. */
  readonly path: readonly string[];
  /** Where the path turns: a switch port or the host bridge. */
  readonly via: string;
  readonly mapType: string;
  readonly distance: number;
}

export type Request =
  | { readonly type: 'load'; readonly text: string; readonly source: string; readonly config?: string; readonly seed?: number }
  | { readonly type: 'step' }
  | { readonly type: 'run' }
  | { readonly type: 'reset' }
  | { readonly type: 'layouts'; readonly buffer: string }
  | { readonly type: 'rows'; readonly source: string; readonly start: number; readonly count: number }
  | { readonly type: 'table'; readonly device: string; readonly pfn: string | null }
  | { readonly type: 'bytes'; readonly buffer: string; readonly offset: number; readonly len: number }
  | { readonly type: 'trace'; readonly buffer: string; readonly offset: number }
  | { readonly type: 'clearTrace' }
  | { readonly type: 'p2p'; readonly provider: string; readonly client: string };

export interface Answers {
  load: Snapshot;
  step: Snapshot;
  run: Snapshot;
  reset: Snapshot;
  layouts: LayoutSummary[];
  rows: RowsAnswer;
  table: TableAnswer;
  bytes: BytesAnswer;
  trace: TraceAnswer;
  clearTrace: null;
  p2p: P2pAnswer;
}

export type Envelope = { readonly id: number; readonly req: Request };
export type Reply = { readonly id: number; readonly ok: true; readonly value: unknown } | { readonly id: number; readonly ok: false; readonly error: string };
