// Runs a validated scenario step by step on a machine built from its config: each step calls the
// model's driver API (mm, dma, drivers) as a kernel driver would; a step that fails unexpectedly
// stops the run, and teardown undoes everything still live and reports leaks.

import { formatBytes, formatCount, type Errno, type KernelEvent, type Result } from '../../base/index.ts';
import {
  DMA_ATTR_CC_SHARED, DMA_ATTR_DEBUGGING_IGNORE_CACHELINES, DMA_ATTR_MMIO, DMA_ATTR_NO_WARN, DMA_ATTR_PRIVILEGED,
  DMA_ATTR_REQUIRE_COHERENT, DMA_ATTR_SKIP_CPU_SYNC, DMA_ATTR_WEAK_ORDERING, DMA_ATTR_WRITE_COMBINE, DMA_BIDIRECTIONAL,
  DMA_BIT_MASK, DMA_FROM_DEVICE, DMA_TO_DEVICE, dmaDeviceRoute, dmaMapPage, dmaMapPhyrs, dmaMapSgtable, dmaSetMaskAndCoherent,
  dmaSetMaxSegSize, dmaSetMinAlignMask, dmaSetSegBoundary, dmaGetMaxSegSize, dmaSyncSgtableForCpu, dmaSyncSgtableForDevice,
  dmaSyncSingleForCpu, dmaSyncSingleForDevice, dmaUnmapPage, dmaUnmapPhyrs, dmaUnmapSgtable, type DmaDataDirection,
} from '../../dma/index.ts';
import {
  IB_ACCESS_LOCAL_WRITE, IB_ACCESS_REMOTE_READ, IB_ACCESS_REMOTE_WRITE, IB_WC_SUCCESS, REQ_OP_READ, REQ_OP_WRITE, bdevNrSectors, dmaBufInvalidateMappings,
  dmaBufPut, dmaBufRevocable, dmaBufRevoke, dmaBufUnrevoke, gpuImportDmabuf, gpuImportRelease, gpuProbe, gpuRead, gpuRemove, gpuWrite, ibDeregMr,
  ibPostRdmaWrite, ibRegMr, ibUmemGet, ibUmemRelease, iommufdDeviceAttach, iommufdDeviceBind, iommufdDeviceDetach, iommufdHwptAlloc, iommufdHwptDestroy, iommufdIoasAlloc,
  iommufdIoasAllowIovas, iommufdIoasClose, iommufdIoasCopy, iommufdIoasDestroy, iommufdIoasIovaRanges, iommufdIoasMap, iommufdIoasMapDmabuf, iommufdIoasOf,
  iommufdIoasUnmap, nvmeProbe, nvmeRemove,
  premapComplete, premapIssue, premapRegisterDmabuf, premapRegisterUserBuffer, premapUnregister, rdmaProbe, rdmaRemove, systemHeapAlloc,
  umemMap, umemMapPinned, vfioPciDmabufExport, type DmaBuf, type Gpu, type GpuImport, type IbDevice, type IbMr, type IbUmem, type Ioas, type NvmeCtrl,
  type IoasArea, type IommufdHwpt, type PremapToken, type SystemHeapBuffer, type UmemMethod,
} from '../../drivers/index.ts';
import { iommuDmaFlushQueueTick, iommuGetDmaDomain } from '../../iommu/index.ts';
import { createMachine, type Machine, type MachineConfig } from '../../machine/index.ts';
import {
  FOLL_LONGTERM, FOLL_PCI_P2PDMA, FOLL_WRITE, pinUserPages, pinUserPagesFast, pinUserPhyrs, unpinUserPages, unpinUserPhyrs,
  type PinnedPageArray, type PinnedPhyrList, type UserMm,
} from '../../mm/index.ts';
import type { Device } from '../../pci/index.ts';
import { sgAllocTableFromPagesSegment, sgFreeTable, type RangeSource, type SgTable } from '../../phyr/index.ts';
import { blockDirectIo, verifyWindows } from '../index.ts';
import { Shadow, countMismatches } from './shadow.ts';
import {
  ScenarioError, type BufferState, type CounterDelta, type DmaSegment, type IoasMappingPiece, type IoasMappingState, type IoasState, type LeakReport, type MappingState, type PinState,
  type Scenario, type ScenarioDeviceSetup, type ScenarioIssue, type ScenarioDir, type ScenarioResult, type ScenarioStep, type StepResult,
} from './types.ts';

export interface RunOptions {
  /** Seed of the machine (aged memory layout) and of the byte patterns. Default: machine.seed, else 1. */
  readonly seed?: number;
  /** A name of scenario.configs to apply over the machine config. */
  readonly config?: string;
}

const DIRS: Readonly<Record<ScenarioDir, DmaDataDirection>> = {
  'to-device': DMA_TO_DEVICE, 'from-device': DMA_FROM_DEVICE, bidirectional: DMA_BIDIRECTIONAL,
};
const ATTRS: Readonly<Record<string, number>> = {
  WEAK_ORDERING: DMA_ATTR_WEAK_ORDERING, WRITE_COMBINE: DMA_ATTR_WRITE_COMBINE, SKIP_CPU_SYNC: DMA_ATTR_SKIP_CPU_SYNC,
  NO_WARN: DMA_ATTR_NO_WARN, PRIVILEGED: DMA_ATTR_PRIVILEGED, MMIO: DMA_ATTR_MMIO,
  DEBUGGING_IGNORE_CACHELINES: DMA_ATTR_DEBUGGING_IGNORE_CACHELINES, REQUIRE_COHERENT: DMA_ATTR_REQUIRE_COHERENT,
  CC_SHARED: DMA_ATTR_CC_SHARED,
};
const UMEM_OF: Readonly<Record<string, UmemMethod>> = { sg: 'sgtable', phys: 'map-phys', 'two-step': 'two-step', phyrs: 'map-phyrs' };
/** Device accesses above this many bytes are checked on sampled 4 KiB windows (16 of them). */
const SAMPLE_ABOVE = 1 << 20;

/** A step's raw outcome before its expectation is applied. */
interface Outcome {
  readonly summary: string;
  readonly errno?: Errno;
  readonly mismatch?: number;
  readonly segments?: number;
  readonly data?: Record<string, unknown>;
}

interface Live<T> { state: T; undo: () => void }

/** The event line a result shows: `KIND source: message`. */
export function eventLine(e: KernelEvent): string {
  return `${e.kind} ${e.source}: ${e.message}`;
}

function nonZero(d: Record<string, number>): CounterDelta {
  const out: Record<string, number> = {};
  for (const k of Object.keys(d).sort()) if (d[k] !== 0) out[k] = d[k];
  return out;
}

/** The segments of a range source's walk. */
function segmentsOf(src: RangeSource): DmaSegment[] {
  const out: DmaSegment[] = [];
  for (const c = src.cursor(); !c.done; c.next()) out.push({ dmaAddr: c.addr, len: c.len });
  return out;
}

/** Pieces (dmaAddr, len) of the mapping bytes [off, off+len). */
function piecesOf(segs: readonly DmaSegment[], off: number, len: number): Array<[bigint, number]> {
  const out: Array<[bigint, number]> = [];
  let start = 0;
  for (const s of segs) {
    const end = start + s.len;
    if (end > off && len > 0) {
      const inner = off - start;
      const n = Math.min(len, s.len - inner);
      out.push([s.dmaAddr + BigInt(inner), n]);
      off += n;
      len -= n;
    }
    start = end;
    if (len === 0) break;
  }
  return out;
}

/**
 * What a device access goes through: its device, its DMA segments, and the bytes they map in order
 * (one stretch of a buffer for a map step's mapping; an IOAS mapping's pieces), each with the shadow
 * of its buffer or dma-buf (undefined: bytes the run does not follow) and its offset there.
 */
interface AccessTarget {
  readonly device: string;
  readonly segments: readonly DmaSegment[];
  readonly bytes: ReadonlyArray<{ readonly shadow: Shadow | undefined; readonly offset: number; readonly len: number }>;
  readonly len: number;
  readonly live: boolean;
}

/** What one run of the steps creates, under the file's names: replaced whole by ScenarioRunner.reset(). */
function freshNamed() {
  return {
    procs: new Map<string, UserMm>(),
    bufs: new Map<string, Live<BufferState>>(),
    pinMap: new Map<string, Live<PinState>>(),
    maps: new Map<string, Live<MappingState>>(),
    /** Mappings after their unmap (a deliberate stale access names them). */
    unmapped: new Map<string, MappingState>(),
    shadows: new Map<string, Shadow>(),
    nvme: new Map<string, { ctrl: NvmeCtrl; ns: Shadow }>(),
    nics: new Map<string, IbDevice>(),
    mrs: new Map<string, { nic: IbDevice; umem: IbUmem; mr: IbMr; buffer: string; offset: number; len: number }>(),
    gpus: new Map<string, Gpu>(),
    dmabufs: new Map<string, { buf: DmaBuf; shadow: Shadow }>(),
    imports: new Map<string, { dmabuf: string; device: string; gpu: GpuImport | null; ioas: Ioas | null }>(),
    /** Registered buffers (premap-register): the token, its device, and its bytes' shadow (the user buffer's, or the dma-buf's own). */
    tokens: new Map<string, { token: PremapToken; device: string; buf: DmaBuf | null; buffer: string | null; shadow: Shadow }>(),
    /** IOASes (ioas-alloc), and the hw_pagetables ioas-attach made for one device (hwpt: own), by device. */
    ioases: new Map<string, Ioas>(),
    ownHwpts: new Map<string, IommufdHwpt>(),
    /** IOAS mappings (ioas-map, ioas-copy), live and after their ioas-unmap (a deliberate stale access names them). */
    ioasMaps: new Map<string, IoasMappingState>(),
    ioasUnmapped: new Map<string, IoasMappingState>(),
    /** The IOAS object each IOAS mapping (ioas-map, ioas-copy) went into (a name may be given to a new IOAS after a destroy). */
    ioasOfMap: new Map<string, Ioas>(),
    /**
     * What the first byte of each area an ioas-map or ioas-copy made holds: a buffer's or a dma-buf's
     * byte (the scenario's side of the kernel's area->pages and iopt_area_start_byte()). A copy reads
     * its source range's bytes from here, area by area, as iopt_get_pages() walks the source areas.
     */
    areaSource: new WeakMap<IoasArea, IoasMappingPiece>(),
    /** Every device an ioas-attach put on each IOAS object. */
    everAttached: new Map<Ioas, Set<string>>(),
  };
}

/** Runs a scenario one step at a time. */
export class ScenarioRunner {
  readonly scenario: Scenario;
  readonly options: RunOptions;
  private m!: Machine;
  private res: StepResult[] = [];
  private next = 0;
  private stopped = false;
  private finished: ScenarioResult | null = null;
  /** The processes, buffers, pins, mappings, devices' drivers and dma-bufs the steps made, by name. */
  private named = freshNamed();
  private since: Record<string, number> = {};
  private eventsFrom = 0;

  /** @throws ScenarioError when createMachine refuses the machine config, a device refuses a probe setting (devices.*), or --config names no configuration. */
  constructor(scenario: Scenario, opts: RunOptions = {}) {
    this.scenario = scenario;
    this.options = opts;
    if (opts.config !== undefined && !Object.hasOwn(scenario.configs, opts.config)) {
      const names = Object.keys(scenario.configs);
      throw new ScenarioError([{
        path: 'config', value: opts.config, expected: names.length ? `one of: ${names.join(', ')}` : 'no --config (the scenario has no configs)',
        message: `config: unknown configuration '${opts.config}' (expected ${names.length ? `one of: ${names.join(', ')}` : 'none: the scenario has no configs'})`,
      }], scenario.source);
    }
    // the byte patterns take the seed as 32 bits (patternSeed), so a larger one would repeat a smaller one's bytes
    if (opts.seed !== undefined && (!Number.isSafeInteger(opts.seed) || opts.seed < 0 || opts.seed > 0xffffffff)) {
      throw new RangeError(`opts.seed must be an integer in [0, 2^32 - 1] (as phyr run --seed), got ${String(opts.seed)}`);
    }
    this.build();
  }

  /** The run's seed. */
  get seed(): number {
    return this.options.seed ?? this.scenario.machine.seed ?? 1;
  }
  get machine(): Machine { return this.m; }
  /** Index of the next step to run. */
  get index(): number { return this.next; }
  get results(): readonly StepResult[] { return this.res; }
  get buffers(): ReadonlyMap<string, BufferState> { return new Map([...this.named.bufs].map(([k, v]) => [k, v.state])); }
  get pins(): ReadonlyMap<string, PinState> { return new Map([...this.named.pinMap].map(([k, v]) => [k, v.state])); }
  get mappings(): ReadonlyMap<string, MappingState> { return new Map([...this.named.maps].map(([k, v]) => [k, v.state])); }
  /** The processes by name (their address spaces), for the address trace. */
  get processes(): ReadonlyMap<string, UserMm> { return this.named.procs; }
  /** Mappings already unmapped (live false), by name: what a stale access or the trace's --unmapped names. */
  get unmappedMappings(): ReadonlyMap<string, MappingState> { return this.named.unmapped; }
  /** The live IOASes (ioas-alloc) by name: their devices, hw_pagetables and areas as the model holds them now. */
  get ioases(): ReadonlyMap<string, IoasState> {
    return new Map([...this.named.ioases].map(([k, v]) => [k, this.ioasState(k, v)]));
  }
  /** The live IOASes by name as the model's objects (hw_pagetables with their domains, areas), for the address trace. */
  get ioasObjects(): ReadonlyMap<string, Ioas> { return this.named.ioases; }
  /** The IOAS object an ioas-map mapping went into (destroyed or not: not alive then), or undefined for another name. */
  ioasObjectOfMapping(name: string): Ioas | undefined { return this.named.ioasOfMap.get(name); }
  /** The devices an ioas-attach put on this IOAS object that are no longer attached to it (all of them once it is destroyed). */
  /**
   * What the scenario calls a live IOAS: its name (ioas-alloc), or for the IOAS of an iommufd
   * dma-buf import "dma-buf import <name>'s IOAS"; undefined for one the run does not know.
   */
  ioasNameOf(ioas: Ioas): string | undefined {
    const named = [...this.named.ioases].find(([, v]) => v === ioas)?.[0];
    if (named !== undefined) return named;
    const imp = [...this.named.imports].find(([, v]) => v.ioas === ioas)?.[0];
    return imp !== undefined ? `dma-buf import ${imp}'s IOAS` : undefined;
  }

  /** The IOAS a device is attached to now, as ioasNameOf names it, or undefined. */
  ioasNameOfDevice(devName: string): string | undefined {
    const ioas = iommufdIoasOf(this.m.device(devName));
    return ioas !== null && ioas.hwpts.some((h) => h.devices.some((d) => d.name === devName)) ? this.ioasNameOf(ioas) : undefined;
  }

  ioasDetachedDevices(ioas: Ioas): string[] {
    const now = new Set(ioas.alive ? ioas.devices.map((d) => d.name) : []);
    return [...this.named.everAttached.get(ioas) ?? []].filter((d) => !now.has(d));
  }
  /** The IOAS mappings (ioas-map, ioas-copy), live ones and (live false) those after their ioas-unmap, by name. */
  get ioasMappings(): ReadonlyMap<string, IoasMappingState> {
    return new Map([...this.named.ioasMaps, ...this.named.ioasUnmapped]);
  }
  /** The run stopped at a step that did not meet its expectation, or ran every step. */
  get done(): boolean { return this.stopped || this.next >= this.scenario.steps.length; }

  /** The machine config of this run: the configuration's machine fields over the base ones, and the run's seed. */
  machineConfig(): MachineConfig {
    const c = this.options.config !== undefined ? this.scenario.configs[this.options.config] : undefined;
    const merged: Record<string, unknown> = { ...this.scenario.machine, ...(c?.machine ?? {}), seed: this.seed };
    // a configuration removes a base field with null (iommu: null: no IOMMU)
    for (const k of Object.keys(merged)) if (merged[k] === null) delete merged[k];
    return merged as unknown as MachineConfig;
  }

  private build(): void {
    const cfg = this.machineConfig();
    const where = this.options.config !== undefined ? `machine (with configs.${this.options.config})` : 'machine';
    try {
      this.m = createMachine(cfg);
    } catch (e) {
      if (!(e instanceof TypeError || e instanceof RangeError)) throw e;
      const msg = e.message.replace(/^config\./, '');
      throw new ScenarioError([{ path: where, value: undefined, expected: 'a machine createMachine accepts', message: `${where}: ${msg}` }], this.scenario.source);
    }
    // one CACHE event per cache maintenance operation would flood a non-coherent run; they stay counted
    this.m.events.mute('CACHE');
    const c = this.options.config !== undefined ? this.scenario.configs[this.options.config] : undefined;
    const setups: Record<string, ScenarioDeviceSetup> = { ...this.scenario.devices };
    // the field path each device setting came from, for a setting the device refuses
    const from = (prefix: string, k: string, v: ScenarioDeviceSetup): Record<string, string> =>
      Object.fromEntries(Object.keys(v).map((f) => [f, `${prefix}devices.${k}.${f}`]));
    const paths: Record<string, Record<string, string>> = {};
    for (const [k, v] of Object.entries(this.scenario.devices)) paths[k] = from('', k, v);
    for (const [k, v] of Object.entries(c?.devices ?? {})) {
      setups[k] = { ...(setups[k] ?? {}), ...v };
      paths[k] = { ...(paths[k] ?? {}), ...from(`configs.${this.options.config!}.`, k, v) };
    }
    // what a driver does at probe: a 64-bit mask, and (as nvme_pci_alloc_dev) dma_set_max_seg_size(0xffffffff)
    const issues: ScenarioIssue[] = [];
    for (const d of this.m.devices()) {
      const s = setups[d.name] ?? {};
      const path = (f: keyof ScenarioDeviceSetup): string => paths[d.name]?.[f] ?? `devices.${d.name}.${f} (default)`;
      const refused = (f: keyof ScenarioDeviceSetup, value: unknown, why: string, expected: string): void => {
        issues.push({ path: path(f), value, expected, message: `${path(f)}: ${why} (expected ${expected})` });
      };
      // kernel/dma/mapping.c: dma_set_mask() is -EIO when dma_supported() refuses the mask; a driver's
      // probe fails there, so the run must not go on with the mask the device had before
      const bits = s.dmaMask ?? 64;
      const m = dmaSetMaskAndCoherent(d, DMA_BIT_MASK(bits));
      if (!m.ok) refused('dmaMask', bits, `dma_set_mask_and_coherent(DMA_BIT_MASK(${bits})) failed with ${m.errno}${m.message ? ` (${m.message})` : ''}`, 'a mask the device can address');
      // the model's setters refuse what no driver passes (a boundary or alignment mask not 2^k - 1)
      const set = (f: keyof ScenarioDeviceSetup, value: number | bigint | undefined, call: string, expected: string, fn: () => void): void => {
        try {
          fn();
        } catch (e) {
          if (!(e instanceof TypeError || e instanceof RangeError)) throw e;
          refused(f, value, `${call}: ${e.message}`, expected);
        }
      };
      set('maxSegSize', s.maxSegSize, 'dma_set_max_seg_size', 'a size in [1, 0xffffffff]', () => dmaSetMaxSegSize(d, s.maxSegSize ?? 0xffffffff));
      if (s.minAlignMask !== undefined) set('minAlignMask', s.minAlignMask, 'dma_set_min_align_mask', 'a mask 2^k - 1 of at most 32 bits', () => dmaSetMinAlignMask(d, s.minAlignMask!));
      if (s.segBoundary !== undefined) set('segBoundary', s.segBoundary, 'dma_set_seg_boundary', 'a non-zero mask 2^k - 1', () => dmaSetSegBoundary(d, s.segBoundary!));
    }
    if (issues.length > 0) throw new ScenarioError(issues, this.scenario.source);
    for (const p of this.scenario.processes) this.named.procs.set(p, this.m.newProcess());
    this.since = this.m.stats.snapshot();
    this.eventsFrom = this.m.events.total;
  }

  /** A fresh machine, back before step 0. */
  reset(): void {
    this.res = [];
    this.next = 0;
    this.stopped = false;
    this.finished = null;
    this.named = freshNamed();
    this.build();
  }

  private patternSeed(pattern: number): number {
    return (Math.imul(this.seed, 0x9e3779b1) + Math.imul(pattern + 1, 0x85ebca6b)) >>> 0;
  }

  private dev(name: string): Device {
    return this.m.device(name);
  }

  /** Runs the next step; null when every step ran or the run stopped. */
  step(): StepResult | null {
    if (this.done) return null;
    const i = this.next++;
    const s = this.scenario.steps[i];
    const snap = this.m.stats.snapshot();
    const ev0 = this.m.events.total;
    let out: Outcome;
    try {
      out = this.exec(s, i);
    } catch (e) {
      if (e instanceof ScenarioError) throw e;
      // a modeled kernel BUG or an argument the model refused: the step fails, the run stops
      const name = e instanceof Error ? e.name : 'Error';
      out = { summary: `${name}: ${e instanceof Error ? e.message : String(e)}`, errno: undefined, data: { exception: name } };
      this.stopped = true;
    }
    const counters = nonZero(this.m.stats.diff(snap));
    const events = this.m.events.since(ev0);
    const unmet = this.unmet(s, out, counters, events);
    const r: StepResult = {
      index: i, op: s.op, ...(s.label !== undefined ? { label: s.label } : {}),
      ok: unmet === null && !(out.data?.exception !== undefined),
      ...(out.errno !== undefined ? { errno: out.errno } : {}),
      summary: out.summary, ...(unmet !== null ? { unmet } : {}),
      counters, events: events.map(eventLine), ...(out.data !== undefined ? { data: out.data } : {}),
    };
    this.res.push(r);
    if (!r.ok) this.stopped = true;
    return r;
  }

  /** Why the outcome does not meet the step's expectation, or null. */
  private unmet(s: ScenarioStep, o: Outcome, counters: CounterDelta, events: readonly KernelEvent[]): string | null {
    const x = (this.options.config !== undefined ? s.expectIn?.[this.options.config] : undefined) ?? s.expect ?? {};
    const why: string[] = [];
    if (x.errno !== undefined) {
      if (o.errno !== x.errno) why.push(`expected errno ${x.errno}, got ${o.errno ?? 'success'}`);
    } else if (x.ok === false) {
      if (o.errno === undefined) why.push('expected a failure, got success');
    } else if (o.errno !== undefined) {
      why.push(`failed with ${o.errno}`);
    }
    const mm = o.mismatch ?? 0;
    if (x.mismatch !== undefined) {
      const okm = x.mismatch === true ? mm > 0 : x.mismatch === false ? mm === 0 : mm === x.mismatch;
      if (!okm) why.push(`expected ${x.mismatch === true ? 'differing bytes' : x.mismatch === false ? 'no differing bytes' : `${x.mismatch} differing bytes`}, got ${mm}`);
    } else if (mm > 0) {
      why.push(`${formatCount(mm)} bytes differ`);
    }
    if (x.event !== undefined) {
      const { kind, message } = x.event;
      if (!events.some((e) => e.kind === kind && (message === undefined || e.message.includes(message)))) {
        why.push(`expected a ${kind} event${message !== undefined ? ` containing '${message}'` : ''}, none was logged`);
      }
    }
    for (const [k, v] of Object.entries(x.counters ?? {})) {
      const got = counters[k] ?? 0;
      if (got !== v) why.push(`expected counter ${k} +${v}, got +${got}`);
    }
    if (x.segments !== undefined && o.segments !== x.segments) why.push(`expected ${x.segments} DMA segments, got ${o.segments ?? 'none'}`);
    return why.length === 0 ? null : why.join('; ');
  }

  private exec(s: ScenarioStep, i: number): Outcome {
    switch (s.op) {
      case 'mmap': return this.mmap(s.buffer, s.populate === true);
      case 'munmap': return this.munmap(s.buffer);
      case 'populate': case 'cpu-write': return this.cpuWrite(s.buffer, s.offset, s.len, s.pattern ?? i);
      case 'cpu-read': return this.cpuRead(s.buffer, s.offset, s.len);
      case 'pin': return this.pin(s);
      case 'unpin': {
        const p = this.named.pinMap.get(s.pin)!;
        p.undo();
        this.named.pinMap.delete(s.pin);
        const n = p.state.entries;
        return { summary: `unpinned ${s.pin} (${formatCount(n)} ${p.state.method === 'phyrs' ? 'phyr' : 'page'}${n === 1 ? '' : 's'})` };
      }
      case 'map': return this.map(s);
      case 'sync': return this.sync(s.mapping, s.for);
      case 'device-read': return this.deviceAccess('read', s.mapping, s.device, s.offset, s.len, 0);
      case 'device-write': return this.deviceAccess('write', s.mapping, s.device, s.offset, s.len, s.pattern ?? i);
      case 'unmap': {
        const mp = this.named.maps.get(s.mapping)!;
        mp.undo();
        this.named.maps.delete(s.mapping);
        this.named.unmapped.set(s.mapping, { ...mp.state, live: false });
        return { summary: `unmapped ${s.mapping} (${formatCount(mp.state.segments.length)} segment${mp.state.segments.length === 1 ? '' : 's'})` };
      }
      case 'wait': {
        let domains = 0;
        for (const d of this.m.devices()) {
          const dom = this.m.iommu ? iommuGetDmaDomain(d) : null;
          if (dom) {
            iommuDmaFlushQueueTick(dom, s.ms);
            domains++;
          }
        }
        return { summary: `${s.ms} ms passed (${domains} DMA domain clock${domains === 1 ? '' : 's'} advanced)` };
      }
      case 'block-write': case 'block-read': return this.block(s.op, s.device, s.buffer, s.offset, s.len, s.lba ?? 0);
      case 'rdma-reg-mr': return this.regMr(s.name, s.device, s.buffer, s.offset, s.len);
      case 'rdma-write': return this.rdmaWrite(s.mr, s.offset ?? 0, s.to, s.len);
      case 'rdma-dereg-mr': {
        const r = this.named.mrs.get(s.mr)!;
        const d = ibDeregMr(r.nic, r.mr);
        ibUmemRelease(r.umem);
        this.named.mrs.delete(s.mr);
        if (!d.ok) return { summary: `ib_dereg_mr ${s.mr}: ${d.errno}${d.message ? ` (${d.message})` : ''}`, errno: d.errno };
        return { summary: `ib_dereg_mr ${s.mr}, ib_umem_release: unmapped and unpinned` };
      }
      case 'dmabuf-export': return this.dmabufExport(s.name, s.exporter, s.device, s.offset ?? 0, s.len);
      case 'dmabuf-import': return this.dmabufImport(s.name, s.dmabuf, s.device, s.importer);
      case 'dmabuf-write': case 'dmabuf-read': return this.dmabufAccess(s.op === 'dmabuf-write', s.import, s.len, s.op === 'dmabuf-write' ? s.pattern ?? i : 0);
      case 'dmabuf-revoke': {
        const d = this.named.dmabufs.get(s.dmabuf)!;
        // the check refuses a heap buffer first: no kernel path revokes one (system_heap.c)
        if (!dmaBufRevocable(d.buf)) return { summary: `revoke ${s.dmabuf}: EOPNOTSUPP (${d.buf.ops.expName} exporter has no revoke)`, errno: 'EOPNOTSUPP' };
        dmaBufRevoke(d.buf);
        return { summary: `revoked ${s.dmabuf}: every importer's mapping torn down` };
      }
      case 'premap-register': return this.premapRegister(s.name, s.device, s.buffer, s.len);
      case 'premap-write': case 'premap-read':
        return this.premapIo(s.op === 'premap-write', s.token, s.offset, s.len, s.lba ?? 0, s.nowait === true, s.op === 'premap-write' ? s.pattern ?? i : 0);
      case 'premap-invalidate': return this.premapInvalidate(s.token, s.how);
      case 'premap-unregister': {
        const t = this.named.tokens.get(s.token)!;
        this.premapRelease(t);
        this.named.tokens.delete(s.token);
        return { summary: `unregistered ${s.token}: in-flight I/O waited for, unmapped${t.buf !== null ? ', detached' : ', unpinned'}` };
      }
      case 'ioas-alloc': {
        const a = iommufdIoasAlloc(this.m);
        if (!a.ok) return { summary: `IOMMU_IOAS_ALLOC ${s.name}: ${a.errno}${a.message ? ` (${a.message})` : ''}`, errno: a.errno };
        this.named.ioases.set(s.name, a.value);
        return { summary: `IOMMU_IOAS_ALLOC ${s.name}: IOAS ${a.value.id}, no device, no domain`, data: { ioas: this.ioasState(s.name, a.value) } };
      }
      case 'ioas-attach': return this.ioasAttach(s.ioas, s.device, s.hwpt ?? 'auto');
      case 'ioas-detach': return this.ioasDetach(s.device);
      case 'ioas-map': return this.ioasMap(s);
      case 'ioas-unmap': return this.ioasUnmap(s.ioas, s.mapping, s.iova, s.len);
      case 'ioas-copy': return this.ioasCopy(s);
      case 'ioas-allow-iovas': return this.ioasAllowIovas(s.ioas, s.ranges);
      case 'ioas-iova-ranges': return this.ioasIovaRanges(s.ioas, s.numIovas);
      case 'ioas-destroy': {
        const ioas = this.named.ioases.get(s.ioas)!;
        const areas = ioas.areas.length;
        const r = iommufdIoasDestroy(ioas);
        if (!r.ok) return { summary: `IOMMU_DESTROY ${s.ioas}: ${r.errno}${r.message ? ` (${r.message})` : ''}`, errno: r.errno };
        this.settleIoasMaps(s.ioas);
        this.named.ioases.delete(s.ioas);
        return { summary: `IOMMU_DESTROY ${s.ioas}: ${formatCount(areas)} area${areas === 1 ? '' : 's'} released` };
      }
    }
  }

  /** The IOAS as the scenario names it: devices, hw_pagetables and areas read from the model. */
  private ioasState(name: string, ioas: Ioas): IoasState {
    // an area belongs to the live mapping whose IOVA range holds it (a copy of several areas makes several)
    const maps = [...this.named.ioasMaps.values()].filter((mp) => mp.ioas === name && this.named.ioasOfMap.get(mp.name) === ioas);
    const mappingOf = (iova: bigint): string | null => maps.find((mp) => mp.iova <= iova && iova < mp.iova + BigInt(mp.len))?.name ?? null;
    return {
      name,
      devices: ioas.devices.map((d) => d.name),
      hwpts: ioas.hwpts.map((h) => ({ id: h.id, auto: h.autoDomain, devices: h.devices.map((d) => d.name) })),
      areas: [...ioas.areas].sort((a, b) => (a.iova < b.iova ? -1 : 1)).map((a) => ({ iova: a.iova, len: a.len, mapping: mappingOf(a.iova), pinned: a.pinned })),
      iovaAlignment: ioas.iovaAlignment,
    };
  }

  /** One line of an IOAS's state: its hw_pagetables with their devices, and its areas. */
  private ioasText(name: string): string {
    const st = this.ioasState(name, this.named.ioases.get(name)!);
    const hw = st.hwpts.length === 0 ? 'no hw_pagetable'
      : st.hwpts.map((h) => `HWPT ${h.id}${h.auto ? '' : ' (own)'} [${h.devices.join(', ') || 'no device'}]`).join(', ');
    return `${name}: ${hw}; ${formatCount(st.areas.length)} area${st.areas.length === 1 ? '' : 's'}`;
  }

  private ioasAttach(name: string, devName: string, hwpt: 'auto' | 'own'): Outcome {
    const ioas = this.named.ioases.get(name)!;
    const dev = this.dev(devName);
    const what = `attach ${devName} to ${name}${hwpt === 'own' ? ' on a hw_pagetable of its own' : ''}`;
    const fail = (r: { errno: Errno; message?: string }, call: string): Outcome =>
      ({ summary: `${what}: ${call} ${r.errno}${r.message ? ` (${r.message})` : ''}`, errno: r.errno });
    const before = new Set(ioas.hwpts);
    // an attached device is replaced (VFIO_DEVICE_ATTACH_IOMMUFD_PT -> iommufd_device_replace): it is bound already
    const from = iommufdIoasOf(dev);
    const fromName = from === null ? undefined : this.ioasNameOf(from);
    const fromHwpt = from !== null ? from.hwpts.find((x) => x.devices.includes(dev)) ?? null : null;
    let own: IommufdHwpt | null = null;
    if (hwpt === 'own') {
      // as a VMM does it: VFIO_DEVICE_BIND_IOMMUFD, IOMMU_HWPT_ALLOC for the bound device, then the attach
      if (from === null) {
        const bind = iommufdDeviceBind(this.m, dev);
        if (!bind.ok) return fail(bind, 'VFIO_DEVICE_BIND_IOMMUFD');
      }
      const h = iommufdHwptAlloc(ioas, dev);
      if (!h.ok) {
        if (from === null) iommufdDeviceDetach(dev);
        return fail(h, 'IOMMU_HWPT_ALLOC');
      }
      own = h.value;
    }
    const r = iommufdDeviceAttach(own ?? ioas, dev);
    if (!r.ok) {
      if (own !== null) {
        iommufdHwptDestroy(own);
        if (from === null) iommufdDeviceDetach(dev);
      }
      return fail(r, 'VFIO_DEVICE_ATTACH_IOMMUFD_PT');
    }
    const h = r.value;
    // a hw_pagetable an earlier ioas-attach made for this device alone goes when the device leaves it
    const oldOwn = this.named.ownHwpts.get(devName);
    if (oldOwn !== undefined && oldOwn !== h) {
      if (oldOwn.alive) iommufdHwptDestroy(oldOwn);
      this.named.ownHwpts.delete(devName);
    }
    if (hwpt === 'own') this.named.ownHwpts.set(devName, h);
    const ever = this.named.everAttached.get(ioas) ?? new Set<string>();
    this.named.everAttached.set(ioas, ever.add(devName));
    const moved = fromHwpt === null ? '' : fromHwpt === h ? `already on HWPT ${h.id}: nothing changes; `
      : `replaced: off HWPT ${fromHwpt.id}${fromName !== undefined && fromName !== name ? ` of ${fromName}` : ''}${fromHwpt.alive ? '' : fromHwpt.autoDomain ? ' (destroyed with its last device)' : ' (its own: destroyed)'}, straight onto `;
    const how = fromHwpt === h ? '' : !before.has(h) ? `new HWPT ${h.id}: a domain holding ${formatCount(ioas.areas.length)} area${ioas.areas.length === 1 ? '' : 's'}`
      : `${moved === '' ? 'joined ' : ''}HWPT ${h.id} (its domain is shared with ${h.devices.filter((d) => d !== dev).map((d) => d.name).join(', ')}: nothing mapped again)`;
    return { summary: `${what}: ${moved}${how}${how === '' ? '' : '; '}${this.ioasText(name)}`, data: { hwpt: h.id, newDomain: !before.has(h), ioas: this.ioasState(name, ioas) } };
  }

  private ioasDetach(devName: string): Outcome {
    const dev = this.dev(devName);
    const ioas = iommufdIoasOf(dev);
    const name = [...this.named.ioases].find(([, v]) => v === ioas)?.[0];
    const h = ioas !== null ? ioas.hwpts.find((x) => x.devices.includes(dev)) : undefined;
    iommufdDeviceDetach(dev);
    // a hw_pagetable ioas-attach made for this device alone goes with it (IOMMU_DESTROY)
    const own = this.named.ownHwpts.get(devName);
    if (own !== undefined) {
      if (own.alive) iommufdHwptDestroy(own);
      this.named.ownHwpts.delete(devName);
    }
    const gone = h !== undefined && !h.alive;
    const rest = name !== undefined ? `; ${this.ioasText(name)}` : '';
    // a device an iommufd import bound stays bound to it (its IOAS's one device), in its blocking domain
    const still = iommufdIoasOf(dev);
    const where = still === null ? 'back to its DMA-API domain' : `in its blocking domain, still bound to iommufd by ${this.ioasNameOf(still) ?? `IOAS ${still.id}`}`;
    return {
      summary: `detach ${devName}${name !== undefined ? ` from ${name}` : ''}: ${where}${h !== undefined ? gone ? `, HWPT ${h.id} destroyed with its last device` : `, HWPT ${h.id} kept for ${h.devices.map((d) => d.name).join(', ')}` : ''}${rest}`,
      ...(name !== undefined ? { data: { ioas: this.ioasState(name, ioas!) } } : {}),
    };
  }

  private ioasMap(s: Extract<ScenarioStep, { op: 'ioas-map' }>): Outcome {
    const ioas = this.named.ioases.get(s.ioas)!;
    const off = s.offset ?? 0;
    const readable = s.readable ?? true;
    const writeable = s.writeable ?? true;
    const access = accessText(readable, writeable);
    let what: string;
    let len: number;
    let r: Result<bigint>;
    const before = new Set(ioas.areas);
    if (s.dmabuf !== undefined) {
      // IOMMU_IOAS_MAP_FILE of the dma-buf's fd (ioas.c: iommufd_ioas_map_file -> iopt_map_file_pages)
      const d = this.named.dmabufs.get(s.dmabuf)!;
      len = s.len ?? d.buf.size - off;
      what = `IOMMU_IOAS_MAP_FILE ${s.dmabuf}+${offText(off)} ${formatBytes(len)} into ${s.ioas}${access}`;
      r = iommufdIoasMapDmabuf(ioas, d.buf, s.iova ?? null, { start: off, len, readable, writeable });
    } else {
      const b = this.buffer(s.buffer!).state;
      len = s.len ?? b.len - off;
      what = `IOMMU_IOAS_MAP ${s.buffer!}+${offText(off)} ${formatBytes(len)} into ${s.ioas}${access}`;
      r = iommufdIoasMap(ioas, this.named.procs.get(b.process)!, b.va + BigInt(off), len, s.iova ?? null, { readable, writeable });
    }
    if (!r.ok) return { summary: `${what}: ${r.errno}${r.message ? ` (${r.message})` : ''}`, errno: r.errno };
    const pieces = [{ buffer: s.buffer ?? null, dmabuf: s.dmabuf ?? null, offset: off, len }];
    this.addIoasMapping({ name: s.name, ioas: s.ioas, op: 'ioas-map', pieces, len, copyOf: null, iova: r.value, readable, writeable, live: true }, ioas, before);
    const domains = ioas.hwpts.length;
    const held = s.dmabuf !== undefined
      ? (domains === 0 ? 'no domain yet (mapped at the first attach)' : `mapped as MMIO into ${domains} domain${domains === 1 ? '' : 's'}`)
      : (domains === 0 ? 'no domain yet (pinned and mapped at the first attach)' : `pinned once, mapped into ${domains} domain${domains === 1 ? '' : 's'}`);
    return {
      summary: `${what}: at IOVA 0x${r.value.toString(16)}${s.iova === undefined ? ' (the IOAS picked it)' : ''}, ${held}; ${this.ioasText(s.ioas)}`,
      data: { iova: r.value, domains, ioas: this.ioasState(s.ioas, ioas) },
    };
  }

  /**
   * Records a mapping an ioas-map or ioas-copy step made in IOAS object `ioas`, and what the first
   * byte of each area it made holds (the areas not in `before`, inside its IOVA range).
   */
  private addIoasMapping(state: IoasMappingState, ioas: Ioas, before: ReadonlySet<IoasArea>): void {
    this.named.ioasMaps.set(state.name, state);
    this.named.ioasUnmapped.delete(state.name);
    this.named.ioasOfMap.set(state.name, ioas);
    for (const a of ioas.areas) {
      if (before.has(a) || a.iova < state.iova || a.iova >= state.iova + BigInt(state.len)) continue;
      // an area is a window of one iopt_pages: one buffer's or one dma-buf's bytes
      const p = slicePieces(state.pieces, Number(a.iova - state.iova), a.len);
      if (p.length === 1 && (p[0].buffer !== null || p[0].dmabuf !== null)) this.named.areaSource.set(a, p[0]);
    }
  }

  /**
   * IOMMU_IOAS_COPY (ioas.c: iommufd_ioas_copy): the source range is a named mapping of the source
   * IOAS (or the part offset / len pick) or an IOVA range; the new mapping maps what that range maps
   * (pieces of one or more buffers and dma-bufs, in IOVA order), so device accesses through it are
   * checked against those bytes, piece by piece.
   */
  private ioasCopy(s: Extract<ScenarioStep, { op: 'ioas-copy' }>): Outcome {
    const src = this.named.ioases.get(s.srcIoas)!;
    const dst = this.named.ioases.get(s.dstIoas)!;
    const readable = s.readable ?? true;
    const writeable = s.writeable ?? true;
    let srcIova: bigint;
    let len: number;
    if (s.mapping !== undefined) {
      // a mapping an earlier range unmap took (whole, or an area of a copy of several): its range
      // again, as ioasUnmap does; the kernel then finds no area there (iopt_get_pages: ENOENT)
      const mp = this.named.ioasMaps.get(s.mapping) ?? this.named.ioasUnmapped.get(s.mapping);
      if (mp === undefined) return { summary: `IOMMU_IOAS_COPY ${s.srcIoas}: no mapping '${s.mapping}'`, errno: 'ENOENT' };
      const off = s.offset ?? 0;
      srcIova = mp.iova + BigInt(off);
      len = s.len ?? mp.len - off;
    } else {
      srcIova = s.srcIova!;
      len = s.len!;
    }
    // what the range maps, read before the copy (src may be dst: the copy adds areas to it)
    const pieces = ioasPiecesAt(src, srcIova, len, this.named.areaSource);
    const access = accessText(readable, writeable);
    const what = `IOMMU_IOAS_COPY ${s.srcIoas} [0x${srcIova.toString(16)}, +${formatBytes(len)})${s.mapping !== undefined ? ` (${s.mapping})` : ''} -> ${s.dstIoas}${access}`;
    const before = new Set(dst.areas);
    const r = iommufdIoasCopy(dst, src, srcIova, len, s.dstIova ?? null, { readable, writeable });
    if (!r.ok) return { summary: `${what}: ${r.errno}${r.message ? ` (${r.message})` : ''}`, errno: r.errno };
    const made = dst.areas.filter((a) => !before.has(a)).length;
    this.addIoasMapping({
      name: s.name, ioas: s.dstIoas, op: 'ioas-copy', pieces, len,
      copyOf: { ioas: s.srcIoas, mapping: s.mapping ?? null, iova: srcIova }, iova: r.value, readable, writeable, live: true,
    }, dst, before);
    const domains = dst.hwpts.length;
    const held = domains === 0 ? 'no domain yet (pinned and mapped at the first attach)' : `mapped into ${domains} domain${domains === 1 ? '' : 's'}, sharing the source's pages`;
    return {
      summary: `${what}: at IOVA 0x${r.value.toString(16)}${s.dstIova === undefined ? ' (the IOAS picked it)' : ''} as ${made} area${made === 1 ? '' : 's'}, ${held}; ${this.ioasText(s.dstIoas)}`,
      data: { iova: r.value, areas: made, domains, ioas: this.ioasState(s.dstIoas, dst) },
    };
  }

  /** IOMMU_IOAS_ALLOW_IOVAS (ioas.c: iommufd_ioas_allow_iovas): the IOAS's allowed ranges replaced (the data: them and the IOAS), or the model's errno. */
  private ioasAllowIovas(name: string, ranges: ReadonlyArray<{ start: bigint; last: bigint }>): Outcome {
    const ioas = this.named.ioases.get(name)!;
    const what = `IOMMU_IOAS_ALLOW_IOVAS ${name} ${ranges.length === 0 ? '(no range)' : rangesText(ranges)}`;
    const r = iommufdIoasAllowIovas(ioas, ranges.map((x) => ({ start: x.start, last: x.last })));
    if (!r.ok) return { summary: `${what}: ${r.errno}${r.message ? ` (${r.message})` : ''}`, errno: r.errno };
    return {
      summary: `${what}: ${ranges.length === 0 ? 'no restriction: IOVAs the IOAS picks may be anywhere it has room' : `IOVAs the IOAS picks come from ${ranges.length === 1 ? 'this range' : 'these ranges'} only`}`,
      data: { allowed: ioas.allowed.map((x) => ({ start: x.start, last: x.last })), ioas: this.ioasState(name, ioas) },
    };
  }

  /** IOMMU_IOAS_IOVA_RANGES (ioas.c: iommufd_ioas_iova_ranges): the usable ranges and the alignment, shown in the line and the data (with the IOAS, as every ioas-* step's). */
  private ioasIovaRanges(name: string, numIovas: number | undefined): Outcome {
    const ioas = this.named.ioases.get(name)!;
    const what = `IOMMU_IOAS_IOVA_RANGES ${name}${numIovas !== undefined ? ` (room for ${formatCount(numIovas)})` : ''}`;
    const r = iommufdIoasIovaRanges(ioas, numIovas);
    // EMSGSIZE: the kernel wrote the count, the alignment and the ranges that fit before failing
    if (!r.ok && !('out' in r)) return { summary: `${what}: ${r.errno}${r.message ? ` (${r.message})` : ''}`, errno: r.errno };
    const out = r.ok ? r.value : r.out;
    const data = {
      ranges: out.ranges.map((x) => ({ start: x.start, last: x.last })), numIovas: out.numIovas, iovaAlignment: out.iovaAlignment, ioas: this.ioasState(name, ioas),
    };
    const list = `${formatCount(out.numIovas)} usable range${out.numIovas === 1 ? '' : 's'}${out.ranges.length > 0 ? ` ${rangesText(out.ranges)}` : ''}`;
    const more = out.ranges.length < out.numIovas ? ` (${formatCount(out.numIovas - out.ranges.length)} more not written)` : '';
    const text = `${list}${more}; IOVA alignment ${out.iovaAlignment === 1 ? '1 byte (no domain yet)' : formatBytes(out.iovaAlignment)}`;
    if (!r.ok) return { summary: `${what}: ${r.errno} (${r.message ?? ''}): ${text}`, errno: r.errno, data };
    return { summary: `${what}: ${text}`, data };
  }

  private ioasUnmap(name: string, mapping: string | undefined, iova: bigint | undefined, len: number | undefined): Outcome {
    const ioas = this.named.ioases.get(name)!;
    // a mapping an earlier range unmap took: its range again (the kernel then finds no area: ENOENT)
    const mp = mapping !== undefined ? this.named.ioasMaps.get(mapping) ?? this.named.ioasUnmapped.get(mapping) : undefined;
    if (mapping !== undefined && mp === undefined) return { summary: `IOMMU_IOAS_UNMAP ${name}: no mapping '${mapping}'`, errno: 'ENOENT' };
    const at = mp?.iova ?? iova!;
    const n = mp?.len ?? len!;
    const what = `IOMMU_IOAS_UNMAP ${name} [0x${at.toString(16)}, +${formatBytes(n)})${mapping !== undefined ? ` (${mapping})` : ''}`;
    const r = iommufdIoasUnmap(ioas, at, n);
    // the mappings whose area is gone (an ENOENT part way keeps what it unmapped, as the kernel does)
    const gone = this.settleIoasMaps(name);
    if (!r.ok) return { summary: `${what}: ${r.errno}${r.message ? ` (${r.message})` : ''}`, errno: r.errno };
    return {
      summary: `${what}: ${formatBytes(r.value)} unmapped ${ioas.hwpts.length === 0 ? '(no domain held it yet)' : 'from every domain'}${mapping === undefined && gone.length > 0 ? ` (${gone.join(', ')})` : ''}; ${this.ioasText(name)}`,
      data: { bytes: r.value, ioas: this.ioasState(name, ioas) },
    };
  }

  /** Moves the IOAS's named mappings whose area is gone (or every one, the IOAS destroyed) to the unmapped ones; returns their names. */
  private settleIoasMaps(name: string): string[] {
    const ioas = this.named.ioases.get(name);
    const out: string[] = [];
    for (const [k, v] of [...this.named.ioasMaps]) {
      if (v.ioas !== name) continue;
      // live while areas of its IOAS still hold every byte of it (a copy may be several areas; a range
      // unmap may take some of them)
      if (ioas !== undefined && ioas.alive && this.named.ioasOfMap.get(k) === ioas && coveredByAreas(ioas, v.iova, v.len)) continue;
      this.named.ioasMaps.delete(k);
      this.named.ioasUnmapped.set(k, { ...v, live: false });
      out.push(k);
    }
    return out;
  }

  /** The teardown of a named IOAS (iommufdIoasClose: its devices detached and unbound, its areas unmapped) and its names released. */
  private ioasRelease(name: string): void {
    const ioas = this.named.ioases.get(name)!;
    for (const d of ioas.devices) this.named.ownHwpts.delete(d.name);
    iommufdIoasClose(ioas);
    this.settleIoasMaps(name);
    this.named.ioases.delete(name);
  }

  private nic(name: string): IbDevice | Outcome {
    const have = this.named.nics.get(name);
    if (have) return have;
    const p = rdmaProbe(this.dev(name));
    if (!p.ok) return { summary: `rdma probe ${name}: ${p.errno}${p.message ? ` (${p.message})` : ''}`, errno: p.errno };
    this.named.nics.set(name, p.value);
    return p.value;
  }

  private regMr(name: string, devName: string, bufName: string, offset: number | undefined, len: number | undefined): Outcome {
    const nic = this.nic(devName);
    if (!('dev' in nic)) return nic;
    const b = this.buffer(bufName).state;
    const off = offset ?? 0;
    const n = len ?? b.len - off;
    const va = b.va + BigInt(off);
    const access = IB_ACCESS_LOCAL_WRITE | IB_ACCESS_REMOTE_WRITE | IB_ACCESS_REMOTE_READ;
    const u = ibUmemGet(nic, this.named.procs.get(b.process)!, va, n, access, { p2p: typeof b.backing === 'object' });
    const what = `ib_reg_mr ${bufName}+${offText(off)} ${formatBytes(n)} on ${devName}`;
    if (!u.ok) return { summary: `${what}: ib_umem_get ${u.errno}${u.message ? ` (${u.message})` : ''}`, errno: u.errno };
    const mr = ibRegMr(nic, u.value, va);
    if (!mr.ok) {
      ibUmemRelease(u.value);
      return { summary: `${what}: ${mr.errno}${mr.message ? ` (${mr.message})` : ''}`, errno: mr.errno };
    }
    this.named.mrs.set(name, { nic, umem: u.value, mr: mr.value, buffer: bufName, offset: off, len: n });
    const m = mr.value;
    return {
      summary: `${what}: ${formatCount(u.value.nrPages)} pages pinned as ${formatCount(u.value.pinned.count)} phyr${u.value.pinned.count === 1 ? '' : 's'}, ` +
        `${formatCount(u.value.dma.count)} DMA range${u.value.dma.count === 1 ? '' : 's'}; MTT ${formatCount(m.mttCount)} entr${m.mttCount === 1 ? 'y' : 'ies'} of ${formatBytes(m.pageLen)} (${formatBytes(m.mttBytes)})`,
      segments: m.mttCount,
      data: { pagesPinned: u.value.nrPages, phyrs: u.value.pinned.count, dmaRanges: u.value.dma.count, pageLen: m.pageLen, mttEntries: m.mttCount, mttBytes: m.mttBytes, lkey: m.lkey, rkey: m.rkey },
    };
  }

  private rdmaWrite(name: string, from: number, to: number, len: number): Outcome {
    const r = this.named.mrs.get(name)!;
    const b = this.buffer(r.buffer).state;
    const base = b.va + BigInt(r.offset);
    const wc = ibPostRdmaWrite(r.nic, { lkey: r.mr.lkey, laddr: base + BigInt(from), rkey: r.mr.rkey, raddr: base + BigInt(to), len });
    const what = `RDMA WRITE ${formatBytes(len)} ${name}+${offText(from)} -> ${name}+${offText(to)}`;
    if (!wc.ok) return { summary: `${what}: ${wc.errno}`, errno: wc.errno };
    if (wc.value.status !== IB_WC_SUCCESS) return { summary: `${what}: completion status ${wc.value.status}`, errno: 'EIO', data: { status: wc.value.status } };
    const shadow = this.named.shadows.get(r.buffer)!;
    shadow.copyFrom(shadow, r.offset + from, r.offset + to, len);
    const got = this.named.procs.get(b.process)!.readUser(base + BigInt(to), len);
    const c = countMismatches(got.ok ? got.value : new Uint8Array(len), shadow.expected(r.offset + to, len));
    return { summary: `${what}: IB_WC_SUCCESS; ${checkText(c.checked, c.bad)}`, mismatch: c.bad, data: { checked: c.checked, mismatched: c.bad } };
  }

  private dmabufExport(name: string, exporter: 'system-heap' | 'vfio-bar', devName: string | undefined, offset: number, len: number): Outcome {
    const r = exporter === 'system-heap' ? systemHeapAlloc(this.m, len) : vfioPciDmabufExport(this.dev(devName!), { bar: 0, offset, len });
    const what = exporter === 'system-heap' ? `system heap dma-buf ${name} of ${formatBytes(len)}` : `VFIO dma-buf ${name}: ${devName} BAR 0 +${offText(offset)}, ${formatBytes(len)}`;
    if (!r.ok) return { summary: `${what}: ${r.errno}${r.message ? ` (${r.message})` : ''}`, errno: r.errno };
    this.named.dmabufs.set(name, { buf: r.value, shadow: new Shadow() });
    return { summary: `exported ${what}` };
  }

  private dmabufImport(name: string, bufName: string, devName: string, importer: 'gpu' | 'iommufd'): Outcome {
    const d = this.named.dmabufs.get(bufName)!;
    const dev = this.dev(devName);
    const what = `${importer === 'gpu' ? 'GPU' : 'iommufd'} import of ${bufName} by ${devName}`;
    if (importer === 'gpu') {
      let gpu = this.named.gpus.get(devName);
      if (gpu === undefined) {
        const p = gpuProbe(dev);
        if (!p.ok) return { summary: `gpu probe ${devName}: ${p.errno}`, errno: p.errno };
        gpu = p.value;
        this.named.gpus.set(devName, gpu);
      }
      const r = gpuImportDmabuf(gpu, d.buf);
      if (!r.ok) return { summary: `${what}: ${r.errno}${r.message ? ` (${r.message})` : ''}`, errno: r.errno };
      this.named.imports.set(name, { dmabuf: bufName, device: devName, gpu: r.value, ioas: null });
      const mp = r.value.mapping!;
      return { summary: `${what}: ${r.value.path ?? '-'}, ${formatCount(mp.entries)} GPU page-table entr${mp.entries === 1 ? 'y' : 'ies'} at GPU VA 0x${mp.va.toString(16)}`, segments: mp.entries, data: { path: r.value.path, entries: mp.entries, va: mp.va } };
    }
    const a = iommufdIoasAlloc(this.m, dev);
    if (!a.ok) return { summary: `${what}: iommufd IOAS ${a.errno}`, errno: a.errno };
    const r = iommufdIoasMapDmabuf(a.value, d.buf, IOAS_IOVA);
    if (!r.ok) {
      iommufdIoasClose(a.value);
      return { summary: `${what}: ${r.errno}${r.message ? ` (${r.message})` : ''}`, errno: r.errno };
    }
    this.named.imports.set(name, { dmabuf: bufName, device: devName, gpu: null, ioas: a.value });
    return { summary: `${what}: mapped at IOVA 0x${IOAS_IOVA.toString(16)} in its own domain (${a.value.areas.length} area${a.value.areas.length === 1 ? '' : 's'})` };
  }

  private dmabufAccess(write: boolean, name: string, len: number | undefined, pattern: number): Outcome {
    const im = this.named.imports.get(name)!;
    const d = this.named.dmabufs.get(im.dmabuf)!;
    const n = len ?? d.buf.size;
    const what = `${im.device} ${write ? 'writes' : 'reads'} ${formatBytes(n)} of ${im.dmabuf} through ${name}`;
    const gpu = im.gpu;
    if (gpu !== null && gpu.mapping === null) return { summary: `${what}: EFAULT (the import's mapping is gone)`, errno: 'EFAULT' };
    if (write) {
      const seed = this.patternSeed(pattern);
      const bytes = Shadow.bytes(n, seed);
      const r = gpu !== null ? gpuWrite(gpu.gpu, gpu.mapping!.va, bytes) : this.dev(im.device).dmaWrite(IOAS_IOVA, bytes);
      if (!r.ok) return { summary: `${what}: ${r.errno}${r.message ? ` (${r.message})` : ''}`, errno: r.errno };
      d.shadow.write(0, n, seed);
      return { summary: `${what}: pattern ${pattern}` };
    }
    const r = gpu !== null ? gpuRead(gpu.gpu, gpu.mapping!.va, n) : this.dev(im.device).dmaRead(IOAS_IOVA, n);
    if (!r.ok) return { summary: `${what}: ${r.errno}${r.message ? ` (${r.message})` : ''}`, errno: r.errno };
    const c = countMismatches(r.value, d.shadow.expected(0, n));
    return { summary: `${what}: ${checkText(c.checked, c.bad)}`, mismatch: c.bad, data: { checked: c.checked, mismatched: c.bad } };
  }

  private nvmeOf(devName: string): { ctrl: NvmeCtrl; ns: Shadow } | Outcome {
    let n = this.named.nvme.get(devName);
    if (n === undefined) {
      const p = nvmeProbe(this.dev(devName));
      if (!p.ok) return { summary: `nvme probe ${devName}: ${p.errno}${p.message ? ` (${p.message})` : ''}`, errno: p.errno };
      n = { ctrl: p.value, ns: new Shadow() };
      this.named.nvme.set(devName, n);
    }
    return n;
  }

  private premapRegister(name: string, devName: string, bufName: string | undefined, len: number | undefined): Outcome {
    const n = this.nvmeOf(devName);
    if (!('ctrl' in n)) return n;
    if (bufName !== undefined) {
      const b = this.buffer(bufName).state;
      const r = premapRegisterUserBuffer(n.ctrl, this.named.procs.get(b.process)!, b.va, b.len);
      if (!r.ok) return { summary: `register ${bufName} kept mapped for ${devName}: ${r.errno}${r.message ? ` (${r.message})` : ''}`, errno: r.errno };
      this.named.tokens.set(name, { token: r.value, device: devName, buf: null, buffer: bufName, shadow: this.named.shadows.get(bufName)! });
      return { summary: `registered ${bufName} (${formatBytes(b.len)}) for ${devName} kept mapped: ${formatCount(r.value.map!.dmaList.length)} pre-mapped 4 KiB pages` };
    }
    const buf = systemHeapAlloc(this.m, len!);
    if (!buf.ok) return { summary: `system heap dma-buf of ${formatBytes(len!)}: ${buf.errno}`, errno: buf.errno };
    const r = premapRegisterDmabuf(n.ctrl, buf.value);
    if (!r.ok) {
      dmaBufPut(buf.value);
      return { summary: `register a ${formatBytes(len!)} dma-buf for ${devName}: ${r.errno}${r.message ? ` (${r.message})` : ''}`, errno: r.errno };
    }
    this.named.tokens.set(name, { token: r.value, device: devName, buf: buf.value, buffer: null, shadow: new Shadow() });
    return { summary: `registered a ${formatBytes(len!)} system-heap dma-buf as ${name} for ${devName} (mapped on its first I/O)` };
  }

  /** The dma-buf's bytes [off, off+n): through its pages (the CPU's view). */
  private dmabufBytes(buf: DmaBuf, off: number, n: number, write?: Uint8Array): Uint8Array {
    const pages = (buf.priv as SystemHeapBuffer).pages;
    const out = new Uint8Array(n);
    let base = 0, at = 0;
    for (let k = 0; k < pages.count && at < n; k++) {
      const rl = pages.lenAt(k);
      if (off + at < base + rl) {
        const c = Math.min(rl - (off + at - base), n - at);
        const a = pages.addrAt(k) + BigInt(off + at - base);
        if (write) this.m.mem.write(a, write.subarray(at, at + c));
        else out.set(this.m.mem.read(a, c), at);
        at += c;
      }
      base += rl;
    }
    return out;
  }

  private premapIo(write: boolean, name: string, offset: number | undefined, len: number | undefined, lba: number, nowait: boolean, pattern: number): Outcome {
    const t = this.named.tokens.get(name)!;
    const n = this.named.nvme.get(t.device)!;
    const off = offset ?? 0;
    const bytes = len ?? t.token.size - off;
    if (write && t.buf !== null) {
      // the application fills its dma-buf range (through its CPU mapping) before the write
      const seed = this.patternSeed(pattern);
      this.dmabufBytes(t.buf, off, bytes, Shadow.bytes(bytes, seed));
      t.shadow.write(off, bytes, seed);
    }
    const what = `${write ? 'write' : 'read'} ${formatBytes(bytes)} ${write ? `${name}+${off} -> ${t.device} LBA ${lba}` : `${t.device} LBA ${lba} -> ${name}+${off}`}`;
    const shift = lbaShiftOf(n.ctrl);
    const io = premapIssue(t.token, write ? REQ_OP_WRITE : REQ_OP_READ, sectorOf(lba, shift), off, bytes, { nowait });
    if (!io.ok) return { summary: `${what}: ${io.errno}${io.message ? ` (${io.message})` : ''}`, errno: io.errno };
    const done = premapComplete(io.value);
    const figures = `${io.value.cmds.length} command${io.value.cmds.length === 1 ? '' : 's'}, PRP list ${formatBytes(io.value.descriptorBytes)}`;
    if (!done.ok) return { summary: `${what}: ${done.errno} after ${figures}`, errno: done.errno };
    // the bytes the I/O moved: fewer than asked when block/fops.c cut it at the device's end
    const moved = done.value;
    const data = { commands: io.value.cmds.length, descriptorBytes: io.value.descriptorBytes, bytes: moved };
    if (moved === 0) return { summary: `${what}: 0 bytes, ${endText(n.ctrl)}`, data: { ...data, checked: 0, mismatched: 0 } };
    let got: Uint8Array;
    if (write) got = n.ctrl.controller.readBlocks(1, BigInt(lba), moved / 2 ** shift);
    else if (t.buf !== null) got = this.dmabufBytes(t.buf, off, moved);
    else {
      const b = this.buffer(t.buffer!).state;
      const r = this.named.procs.get(b.process)!.readUser(b.va + BigInt(off), moved);
      got = r.ok ? r.value : new Uint8Array(moved);
    }
    const at = lba * 2 ** shift;
    const c = countMismatches(got, write ? t.shadow.expected(off, moved) : n.ns.expected(at, moved));
    if (write) n.ns.copyFrom(t.shadow, off, at, moved);
    else t.shadow.copyFrom(n.ns, at, off, moved);
    return { summary: `${what}: ${figures}; ${shortText(n.ctrl, moved, bytes)}${checkText(c.checked, c.bad)}`, mismatch: c.bad, data: { ...data, checked: c.checked, mismatched: c.bad } };
  }

  private premapInvalidate(name: string, how: 'move-notify' | 'revoke' | 'unrevoke'): Outcome {
    const t = this.named.tokens.get(name)!;
    const buf = t.buf!;
    if (how === 'revoke') dmaBufRevoke(buf);
    else if (how === 'unrevoke') dmaBufUnrevoke(buf);
    else {
      buf.resv.lock();
      dmaBufInvalidateMappings(buf);
      buf.resv.unlock();
    }
    const what = how === 'unrevoke' ? 'maps may be made again'
      : how === 'revoke' ? 'the map is dropped and, its I/O done, unmapped; new maps fail until unrevoke'
        : 'the map is dropped; the next I/O re-maps from io-wq';
    return { summary: `${how} of ${name}: ${what}` };
  }

  private premapRelease(t: { token: PremapToken; buf: DmaBuf | null }): void {
    premapUnregister(t.token);
    if (t.buf !== null) dmaBufPut(t.buf);
  }

  private buffer(name: string): Live<BufferState> {
    return this.named.bufs.get(name)!;
  }

  private mmap(name: string, populate: boolean): Outcome {
    const b = this.scenario.buffers.find((x) => x.name === name)!;
    const mm = this.named.procs.get(b.process)!;
    const r = mm.mmap({ len: b.len, backing: b.backing, populate });
    if (!r.ok) return { summary: `mmap ${name} (${formatBytes(b.len)} ${backingText(b.backing)}): ${r.errno}${r.message ? ` (${r.message})` : ''}`, errno: r.errno };
    const va = r.value;
    const state: BufferState = { name, process: b.process, va, len: b.len, backing: b.backing, live: true };
    this.named.bufs.set(name, { state, undo: () => { mm.munmap(va, b.len); } });
    this.named.shadows.set(name, new Shadow());
    return { summary: `mmap ${name}: ${formatBytes(b.len)} ${backingText(b.backing)} at VA 0x${va.toString(16)}${populate ? ', populated' : ''}`, data: { va } };
  }

  private munmap(name: string): Outcome {
    const b = this.buffer(name);
    b.undo();
    this.named.bufs.delete(name);
    return { summary: `munmap ${name}` };
  }

  private cpuWrite(name: string, offset: number | undefined, len: number | undefined, pattern: number): Outcome {
    const b = this.buffer(name).state;
    const off = offset ?? 0;
    const n = len ?? b.len - off;
    const mm = this.named.procs.get(b.process)!;
    const seed = this.patternSeed(pattern);
    const bytes = Shadow.bytes(n, seed);
    const r = mm.writeUser(b.va + BigInt(off), bytes);
    if (!r.ok) return { summary: `CPU write ${formatBytes(n)} at ${name}+${offText(off)}: ${r.errno}`, errno: r.errno };
    this.named.shadows.get(name)!.write(off, n, seed);
    return { summary: `CPU wrote ${formatBytes(n)} of pattern ${pattern} at ${name}+${offText(off)}` };
  }

  private cpuRead(name: string, offset: number | undefined, len: number | undefined): Outcome {
    const b = this.buffer(name).state;
    const off = offset ?? 0;
    const n = len ?? b.len - off;
    const mm = this.named.procs.get(b.process)!;
    const r = mm.readUser(b.va + BigInt(off), n);
    if (!r.ok) return { summary: `CPU read ${formatBytes(n)} at ${name}+${offText(off)}: ${r.errno}`, errno: r.errno };
    const { checked, bad } = countMismatches(r.value, this.named.shadows.get(name)!.expected(off, n));
    return { summary: `CPU read ${formatBytes(n)} at ${name}+${offText(off)}: ${checkText(checked, bad)}`, mismatch: bad, data: { checked, mismatched: bad } };
  }

  private pin(s: Extract<ScenarioStep, { op: 'pin' }>): Outcome {
    const b = this.buffer(s.buffer).state;
    const mm = this.named.procs.get(b.process)!;
    const off = s.offset ?? 0;
    const len = s.len ?? b.len - off;
    const start = b.va + BigInt(off);
    const p2p = s.p2p ?? typeof b.backing === 'object';
    const flags = (s.write === false ? 0 : FOLL_WRITE) | (s.longterm ? FOLL_LONGTERM : 0) | (p2p ? FOLL_PCI_P2PDMA : 0);
    const what = `${s.method === 'phyrs' ? 'pin_user_phyrs' : s.method === 'pages-fast' ? 'pin_user_pages_fast' : 'pin_user_pages'} ${s.buffer}+${offText(off)} ${formatBytes(len)}`;
    let handle: PinnedPageArray | PinnedPhyrList;
    if (s.method === 'phyrs') {
      const r = pinUserPhyrs(mm, start, len, flags);
      if (!r.ok) return { summary: `${what}: ${r.errno}${r.message ? ` (${r.message})` : ''}`, errno: r.errno };
      handle = r.value;
      if (handle.totalLen < len) {
        unpinUserPhyrs(handle);
        return { summary: `${what}: short pin, ${formatBytes(handle.totalLen)}`, errno: 'EFAULT' };
      }
    } else {
      const ps = this.m.pageSize;
      const nr = Math.ceil((Number(start % BigInt(ps)) + len) / ps);
      const r = (s.method === 'pages' ? pinUserPages : pinUserPagesFast)(mm, start, nr, flags);
      if (!r.ok) return { summary: `${what}: ${r.errno}${r.message ? ` (${r.message})` : ''}`, errno: r.errno };
      handle = r.value;
      if (handle.count < nr) {
        unpinUserPages(handle);
        return { summary: `${what}: short pin, ${handle.count} of ${nr} pages`, errno: 'EFAULT' };
      }
    }
    const entries = handle.count;
    const h = handle;
    const state: PinState = { name: s.name, buffer: s.buffer, method: s.method, offset: off, len, handle, entries, live: true };
    this.named.pinMap.set(s.name, { state, undo: () => (s.method === 'phyrs' ? unpinUserPhyrs(h as PinnedPhyrList) : unpinUserPages(h as PinnedPageArray)) });
    const unit = s.method === 'phyrs' ? 'phyr' : 'page';
    return {
      summary: `${what}: ${formatCount(entries)} ${unit}${entries === 1 ? '' : 's'}, ${formatBytes(h.kernelBytes)} of list`,
      segments: entries, data: { entries, listBytes: h.kernelBytes },
    };
  }

  private map(s: Extract<ScenarioStep, { op: 'map' }>): Outcome {
    const dev = this.dev(s.device);
    const dirName = s.dir ?? 'bidirectional';
    const dir = DIRS[dirName];
    const attrs = (s.attrs ?? []).reduce((a, n) => a | ATTRS[n], 0);
    let r: { ok: true; segments: DmaSegment[]; handle: unknown; undo: () => void; meta: number } | { ok: false; errno: Errno; message: string };
    let bufName: string;
    let offset: number;
    let len: number;
    if (s.buffer !== undefined) {
      const b = this.buffer(s.buffer).state;
      bufName = s.buffer;
      offset = s.offset ?? 0;
      len = s.len ?? b.len - offset;
      const u = umemMap(dev, this.named.procs.get(b.process)!, b.va + BigInt(offset), len, UMEM_OF[s.method], { p2p: typeof b.backing === 'object', dir });
      if (!u.ok) r = { ok: false, errno: u.errno, message: u.message ?? u.errno };
      else {
        const segs: DmaSegment[] = [];
        for (let k = 0; k < u.value.segments.count; k++) segs.push({ dmaAddr: u.value.segments.addrAt(k), len: u.value.segments.lenAt(k) });
        r = { ok: true, segments: segs, handle: u.value, undo: () => u.value.unmap(), meta: u.value.metadataBytes };
      }
    } else {
      const p = this.named.pinMap.get(s.pin!)!.state;
      bufName = p.buffer;
      offset = p.offset;
      len = p.len;
      r = this.mapPinned(dev, p, s.method, dir, attrs);
    }
    const what = `${METHOD_TEXT[s.method]} ${s.pin ?? `${bufName}+${offText(offset)}`} -> ${s.device} ${dirName}${attrs ? ` attrs ${(s.attrs ?? []).join('|')}` : ''}`;
    if (!r.ok) return { summary: `${what}: ${r.errno} (${r.message})`, errno: r.errno };
    const state: MappingState = {
      name: s.name, device: s.device, method: s.method, dir: dirName, attrs: s.attrs ?? [], source: s.pin ?? bufName, buffer: bufName,
      offset, len, handle: r.handle, segments: r.segments, live: true,
    };
    this.named.maps.set(s.name, { state, undo: r.undo });
    const n = r.segments.length;
    const first = n > 0 ? ` first 0x${r.segments[0].dmaAddr.toString(16)}` : '';
    return {
      summary: `${what}: ${formatCount(n)} DMA segment${n === 1 ? '' : 's'},${first} (${formatBytes(r.meta)} of metadata)`,
      segments: n, data: { segments: n, metadataBytes: r.meta, firstDmaAddr: n > 0 ? r.segments[0].dmaAddr : null },
    };
  }

  /** Maps a pinned list by one method of the DMA API; undo unmaps exactly what was mapped. */
  private mapPinned(dev: Device, p: PinState, method: string, dir: DmaDataDirection, attrs: number):
    { ok: true; segments: DmaSegment[]; handle: unknown; undo: () => void; meta: number } | { ok: false; errno: Errno; message: string } {
    const ps = this.m.pageSize;
    if (method === 'page') {
      const pages = p.handle as PinnedPageArray;
      const segs: DmaSegment[] = [];
      const undo = (): void => { for (const sg of segs) dmaUnmapPage(dev, sg.dmaAddr, sg.len, dir, attrs); };
      let left = p.len;
      let off = pages.offset;
      for (let k = 0; k < pages.count && left > 0; k++) {
        const n = Math.min(ps - off, left);
        const r = dmaMapPage(dev, BigInt(pages.pfns[k]), off, n, dir, attrs);
        if (!r.ok) {
          undo();
          return { ok: false, errno: r.errno, message: `dma_map_page(page ${k}): ${r.message ?? r.errno}` };
        }
        segs.push({ dmaAddr: r.value, len: n });
        left -= n;
        off = 0;
      }
      return { ok: true, segments: segs, handle: segs, undo, meta: 16 * segs.length };
    }
    if (method === 'sg') {
      const pages = p.handle as PinnedPageArray;
      const m = this.m;
      const sg = sgAllocTableFromPagesSegment(pages.pfns, pages.offset, p.len, dmaGetMaxSegSize(dev), {
        pageSize: ps, events: m.events,
        pgmapOf: (pfn) => m.pfnFacts(BigInt(pfn))?.pgmapId ?? 0,
        flagsOf: (pfn) => m.pfnFacts(BigInt(pfn))?.rangeFlags ?? 0,
      });
      if (!sg.ok) return { ok: false, errno: sg.errno, message: `sg_alloc_table_from_pages_segment: ${sg.message ?? sg.errno}` };
      const sgt: SgTable = sg.value;
      const r = dmaMapSgtable(dev, sgt, dir, attrs);
      if (!r.ok) {
        sgFreeTable(sgt);
        return { ok: false, errno: r.errno, message: `dma_map_sgtable: ${r.message ?? r.errno}` };
      }
      return {
        ok: true, segments: segmentsOf(sgt.dmaEntries()), handle: sgt, meta: sgt.kernelBytes,
        undo: () => { dmaUnmapSgtable(dev, sgt, dir, attrs); sgFreeTable(sgt); },
      };
    }
    const list = p.handle as PinnedPhyrList;
    if (method === 'phyrs') {
      const r = dmaMapPhyrs(dev, list, dir, attrs);
      if (!r.ok) return { ok: false, errno: r.errno, message: `dmaMapPhyrs: ${r.message ?? r.errno}` };
      const mp = r.value;
      return { ok: true, segments: segmentsOf(mp.list), handle: mp, meta: mp.list.kernelBytes, undo: () => dmaUnmapPhyrs(dev, mp, dir, attrs) };
    }
    // phys and two-step: drivers/umem's designs over the pinned list (each range classified by
    // pci_p2pdma_state(); a bus address is handed out, never mapped nor linked into the window)
    const u = umemMapPinned(dev, list, UMEM_OF[method], { dir, attrs });
    if (!u.ok) return { ok: false, errno: u.errno, message: u.message ?? u.errno };
    const um = u.value;
    const segs: DmaSegment[] = [];
    for (let k = 0; k < um.segments.count; k++) segs.push({ dmaAddr: um.segments.addrAt(k), len: um.segments.lenAt(k) });
    // the handle a trace reads: the IOVA window's state, else the per-range segments
    return { ok: true, segments: segs, handle: um.iova ?? segs, meta: um.metadataBytes, undo: () => um.unmap() };
  }

  private sync(name: string, forWhom: 'cpu' | 'device'): Outcome {
    const mp = this.named.maps.get(name)!.state;
    const dev = this.dev(mp.device);
    const dir = DIRS[mp.dir];
    if (mp.method === 'sg' && mp.handle !== null && typeof mp.handle === 'object' && 'dmaEntries' in (mp.handle as object)) {
      (forWhom === 'cpu' ? dmaSyncSgtableForCpu : dmaSyncSgtableForDevice)(dev, mp.handle as SgTable, dir);
      return { summary: `dma_sync_sgtable_for_${forWhom} ${name} (${formatCount(mp.segments.length)} segment${mp.segments.length === 1 ? '' : 's'})` };
    }
    // a P2P bus address (pci_p2pdma_state() said PCI_P2PDMA_MAP_BUS_ADDR) was handed out, not mapped by
    // the DMA API: a driver neither syncs nor unmaps it (include/linux/blk-mq-dma.h: blk_rq_dma_unmap()
    // returns at once for it), so dma-debug has no entry to sync against
    let bus = 0;
    for (const s of mp.segments) {
      if (dmaDeviceRoute(dev, s.dmaAddr).kind === 'p2p-bus') bus++;
      else (forWhom === 'cpu' ? dmaSyncSingleForCpu : dmaSyncSingleForDevice)(dev, s.dmaAddr, s.len, dir);
    }
    const n = mp.segments.length - bus;
    const skipped = bus > 0 ? `; ${formatCount(bus)} P2P bus address${bus === 1 ? '' : 'es'} not synced (not mapped by the DMA API)` : '';
    return { summary: `dma_sync_single_for_${forWhom} ${name} (${formatCount(n)} segment${n === 1 ? '' : 's'}${skipped})` };
  }

  /**
   * What a device access goes through: a map step's mapping (its device, its DMA segments), or an
   * ioas-map mapping (one IOVA range; the device named, else the IOAS's one attached device).
   */
  private accessTarget(name: string, device: string | undefined): AccessTarget | { failure: string } {
    // a live mapping first (a name may be reused by the other kind after an unmap)
    const im = this.named.maps.has(name) ? undefined : this.named.ioasMaps.get(name) ?? this.named.ioasUnmapped.get(name);
    if (im === undefined) {
      const mp = this.named.maps.get(name)?.state ?? this.named.unmapped.get(name)!;
      return {
        device: mp.device, segments: mp.segments, len: mp.len, live: this.named.maps.has(name),
        bytes: [{ shadow: this.named.shadows.get(mp.buffer), offset: mp.offset, len: mp.len }],
      };
    }
    let devName = device;
    if (devName === undefined) {
      // the IOAS the mapping went into, not a later one of the same name
      const ioas = this.named.ioasOfMap.get(name);
      const on = ioas !== undefined && ioas.alive ? ioas.devices : [];
      // check.ts found one device attached to the IOAS of that name in this run's configuration (it
      // follows each configuration's expectIn); the mapping's own IOAS may be a destroyed one whose
      // name a later IOAS took (an afterUnmap access): no device then
      if (on.length !== 1) {
        return { failure: `mapping ${name} is in ${ioas?.alive === false ? 'a destroyed IOAS' : `IOAS ${im.ioas}`}, which has ${on.length} devices attached: no device to do the DMA (name one with device:)` };
      }
      devName = on[0].name;
    }
    // the bytes it maps, piece by piece (a copy may map several buffers' and dma-bufs'): a piece of
    // neither is bytes the run does not follow
    const bytes = im.pieces.map((p) => ({
      shadow: p.buffer !== null ? this.named.shadows.get(p.buffer) : p.dmabuf !== null ? this.named.dmabufs.get(p.dmabuf)?.shadow : undefined,
      offset: p.offset, len: p.len,
    }));
    return { device: devName, segments: [{ dmaAddr: im.iova, len: im.len }], bytes, len: im.len, live: im.live };
  }

  private deviceAccess(kind: 'read' | 'write', name: string, device: string | undefined, offset: number | undefined, len: number | undefined, pattern: number): Outcome {
    const mp = this.accessTarget(name, device);
    if ('failure' in mp) return { summary: `${device ?? 'device'} DMA ${kind} through ${name}: ENODEV (${mp.failure})`, errno: 'ENODEV' };
    const dev = this.dev(mp.device);
    const off = offset ?? 0;
    const n = len ?? mp.len - off;
    const windows: Array<[number, number]> = len === undefined && n > SAMPLE_ABOVE ? verifyWindows(n, 16, 4096).map(([o, l]) => [off + o, l]) : [[off, n]];
    const sampled = windows.length > 1 ? ` (${windows.length} sampled 4 KiB windows)` : '';
    const stale = !mp.live ? ' after unmap' : '';
    let moved = 0;
    let checked = 0;
    let bad = 0;
    const seed = this.patternSeed(pattern);
    for (const [wo, wl] of windows) {
      const pieces = piecesOf(mp.segments, wo, wl);
      const got = new Uint8Array(wl);
      const bytes = kind === 'write' ? Shadow.bytes(wl, (seed + wo) >>> 0) : null;
      let at = 0;
      for (const [a, pn] of pieces) {
        const r = kind === 'read' ? dev.dmaRead(a, pn) : dev.dmaWrite(a, bytes!.subarray(at, at + pn));
        if (!r.ok) {
          return {
            summary: `${mp.device} DMA ${kind}${stale} of ${formatBytes(pn)} at 0x${a.toString(16)} (${name}+${offText(wo + at)}): ${r.errno}${r.message ? ` (${r.message})` : ''}`,
            errno: r.errno, data: { dmaAddr: a },
          };
        }
        if (kind === 'read') got.set(r.value as Uint8Array, at);
        at += pn;
        moved += pn;
      }
      // check (or record) the window's bytes against each stretch of the mapping it meets
      let written: Shadow | null = null;
      for (let pos = 0, k = 0; k < mp.bytes.length; pos += mp.bytes[k].len, k++) {
        const p = mp.bytes[k];
        const a = Math.max(pos, wo);
        const b = Math.min(pos + p.len, wo + wl);
        if (a >= b || p.shadow === undefined) continue;
        if (kind === 'read') {
          const c = countMismatches(got.subarray(a - wo, b - wo), p.shadow.expected(p.offset + (a - pos), b - a));
          checked += c.checked;
          bad += c.bad;
        } else {
          // the window's pattern as the device wrote it, its part [a, b) into the piece's bytes
          if (written === null) {
            written = new Shadow();
            written.write(0, wl, (seed + wo) >>> 0);
          }
          p.shadow.copyFrom(written, a - wo, p.offset + (a - pos), b - a);
        }
      }
    }
    if (kind === 'write') return { summary: `${mp.device} DMA write${stale} of ${formatBytes(moved)} through ${name}${sampled}: pattern ${pattern}`, data: { bytes: moved } };
    return {
      summary: `${mp.device} DMA read${stale} of ${formatBytes(moved)} through ${name}${sampled}: ${checkText(checked, bad)}`,
      mismatch: bad, data: { bytes: moved, checked, mismatched: bad },
    };
  }

  private block(op: 'block-write' | 'block-read', devName: string, bufName: string, offset: number | undefined, len: number | undefined, lba: number): Outcome {
    let n = this.named.nvme.get(devName);
    if (n === undefined) {
      const p = nvmeProbe(this.dev(devName));
      if (!p.ok) return { summary: `nvme probe ${devName}: ${p.errno}${p.message ? ` (${p.message})` : ''}`, errno: p.errno };
      n = { ctrl: p.value, ns: new Shadow() };
      this.named.nvme.set(devName, n);
    }
    const b = this.buffer(bufName).state;
    const off = offset ?? 0;
    const bytes = len ?? b.len - off;
    const mm = this.named.procs.get(b.process)!;
    const shadow = this.named.shadows.get(bufName)!;
    const write = op === 'block-write';
    const shift = lbaShiftOf(n.ctrl);
    const f = blockDirectIo(n.ctrl, mm, write ? REQ_OP_WRITE : REQ_OP_READ, b.va + BigInt(off), bytes, typeof b.backing === 'object', sectorOf(lba, shift));
    const what = `${write ? 'write' : 'read'} ${formatBytes(bytes)} ${write ? `${bufName}+${offText(off)} -> ${devName} LBA ${lba}` : `${devName} LBA ${lba} -> ${bufName}+${offText(off)}`}`;
    const transfer = f.prp > 0 && f.sgl > 0 ? 'PRP+SGL' : f.sgl > 0 ? 'SGL' : f.prp > 0 ? 'PRP' : 'no';
    const figures = `${f.requests} request${f.requests === 1 ? '' : 's'}, ${formatCount(f.segments)} DMA segment${f.segments === 1 ? '' : 's'}, ${transfer} descriptors (${formatBytes(f.descriptorBytes)})`;
    const data = {
      requests: f.requests, segments: f.segments, prp: f.prp, sgl: f.sgl, descriptorBytes: f.descriptorBytes, listPages: f.listPages, bytes: f.bytes,
    };
    if (f.failure !== null) return { summary: `${what}: ${f.errno ?? 'EIO'} (${f.failure}) after ${figures}`, errno: f.errno ?? 'EIO', data };
    // the bytes the I/O moved: fewer than asked when block/fops.c cut it at the device's end
    const moved = f.bytes;
    if (moved === 0) return { summary: `${what}: 0 bytes, ${endText(n.ctrl)}`, segments: 0, data: { ...data, checked: 0, mismatched: 0 } };
    // check what arrived: the namespace's blocks after a write, the buffer after a read
    const got = write ? n.ctrl.controller.readBlocks(1, BigInt(lba), moved / 2 ** shift) : (() => {
      const r = mm.readUser(b.va + BigInt(off), moved);
      return r.ok ? r.value : new Uint8Array(moved);
    })();
    const at = lba * 2 ** shift;
    const exp = write ? shadow.expected(off, moved) : n.ns.expected(at, moved);
    const c = countMismatches(got, exp);
    if (write) n.ns.copyFrom(shadow, off, at, moved);
    else shadow.copyFrom(n.ns, at, off, moved);
    return {
      summary: `${what}: ${figures}; ${shortText(n.ctrl, moved, bytes)}${checkText(c.checked, c.bad)}`, mismatch: c.bad, segments: f.segments,
      data: { ...data, checked: c.checked, mismatched: c.bad },
    };
  }

  /** Runs the remaining steps, tears down and returns the result (the same object on a second call). */
  runAll(): ScenarioResult {
    if (this.finished) return this.finished;
    while (this.step() !== null) { /* each step */ }
    const leaks = this.teardown();
    const stoppedAt = this.res.find((r) => !r.ok)?.index;
    this.finished = {
      name: this.scenario.name, config: this.options.config ?? null, seed: this.seed, steps: this.res,
      counters: nonZero(this.m.stats.diff(this.since)),
      events: this.m.events.since(this.eventsFrom).map(eventLine), leaks,
      ...(stoppedAt !== undefined ? { stoppedAt } : {}),
      ok: stoppedAt === undefined && leaks.dmaDebugLeaks === 0,
    };
    return this.finished;
  }

  /** Unmaps, unpins and munmaps everything still live (newest first); returns the leaks report. */
  teardown(): LeakReport {
    const tornDown: string[] = [];
    for (const k of [...this.named.ioases.keys()].reverse()) {
      this.ioasRelease(k);
      tornDown.push(`ioas ${k}`);
    }
    for (const [k, v] of [...this.named.imports].reverse()) {
      if (v.gpu !== null) gpuImportRelease(v.gpu);
      if (v.ioas !== null) iommufdIoasClose(v.ioas);
      tornDown.push(`import ${k}`);
    }
    this.named.imports.clear();
    for (const [k, v] of [...this.named.tokens].reverse()) {
      this.premapRelease(v);
      tornDown.push(`registered buffer ${k}`);
    }
    this.named.tokens.clear();
    for (const [k, v] of [...this.named.maps].reverse()) {
      v.undo();
      tornDown.push(`mapping ${k}`);
      this.named.unmapped.set(k, { ...v.state, live: false });
    }
    this.named.maps.clear();
    for (const [k, v] of [...this.named.mrs].reverse()) {
      ibDeregMr(v.nic, v.mr);
      ibUmemRelease(v.umem);
      tornDown.push(`mr ${k}`);
    }
    this.named.mrs.clear();
    for (const [k, v] of [...this.named.pinMap].reverse()) {
      v.undo();
      tornDown.push(`pin ${k}`);
    }
    this.named.pinMap.clear();
    for (const [k, v] of [...this.named.bufs].reverse()) {
      v.undo();
      tornDown.push(`buffer ${k}`);
    }
    this.named.bufs.clear();
    for (const [k, v] of [...this.named.dmabufs].reverse()) {
      dmaBufPut(v.buf);
      tornDown.push(`dma-buf ${k}`);
    }
    this.named.dmabufs.clear();
    for (const [k, v] of this.named.nics) {
      rdmaRemove(v);
      tornDown.push(`rdma ${k}`);
    }
    this.named.nics.clear();
    for (const [k, v] of this.named.gpus) {
      gpuRemove(v);
      tornDown.push(`gpu ${k}`);
    }
    this.named.gpus.clear();
    // the nvme driver's remove: its queues and descriptor pools go back (drivers/nvme/host/pci.c: nvme_remove())
    for (const [k, v] of this.named.nvme) {
      nvmeRemove(v.ctrl);
      tornDown.push(`nvme ${k}`);
    }
    this.named.nvme.clear();
    this.stopped = true;
    // driver unbind: dma-debug reports what is still mapped after every scenario object was undone
    return { dmaDebugLeaks: this.m.teardown(), tornDown };
  }
}

/** Inclusive IOVA ranges as the output shows them: [0x1000, 0x1fff], ... */
function rangesText(ranges: ReadonlyArray<{ start: bigint; last: bigint }>): string {
  return ranges.map((x) => `[0x${x.start.toString(16)}, 0x${x.last.toString(16)}]`).join(', ');
}

/** How an IOAS map or copy step names what it grants, after the range: '' for read and write. */
function accessText(readable: boolean, writeable: boolean): string {
  return readable && writeable ? '' : readable ? ' read-only' : writeable ? ' write-only' : ' with no access';
}

/** Whether the areas of the IOAS hold every byte of [iova, iova + len). */
function coveredByAreas(ioas: Ioas, iova: bigint, len: number): boolean {
  return ioasHeldRuns(ioas, iova, len).every((r) => r.held);
}

/** [iova, iova + len) in runs (offsets from iova) that areas of the IOAS hold or not; all not held without an IOAS. */
export function ioasHeldRuns(ioas: Ioas | null, iova: bigint, len: number): Array<{ off: number; len: number; held: boolean }> {
  const out: Array<{ off: number; len: number; held: boolean }> = [];
  const push = (off: number, n: number, held: boolean): void => {
    if (n <= 0) return;
    const last = out[out.length - 1];
    if (last !== undefined && last.held === held) last.len += n;
    else out.push({ off, len: n, held });
  };
  const end = iova + BigInt(len);
  let at = iova;
  for (const a of ioas === null ? [] : [...ioas.areas].sort((x, y) => (x.iova < y.iova ? -1 : x.iova > y.iova ? 1 : 0))) {
    const aEnd = a.iova + BigInt(a.len);
    if (aEnd <= at || a.iova >= end) continue;
    if (a.iova > at) push(Number(at - iova), Number(a.iova - at), false);
    const to = aEnd < end ? aEnd : end;
    push(Number((a.iova > at ? a.iova : at) - iova), Number(to - (a.iova > at ? a.iova : at)), true);
    at = to;
  }
  push(Number(at - iova), Number(end - at), false);
  return out;
}

/** Pushes piece p after the pieces in `out`, made one with the last when it continues its bytes (or both are bytes the run does not follow). */
function pushPiece(out: IoasMappingPiece[], p: IoasMappingPiece): void {
  const last = out[out.length - 1];
  const known = p.buffer !== null || p.dmabuf !== null;
  if (last !== undefined && last.buffer === p.buffer && last.dmabuf === p.dmabuf && (!known || last.offset + last.len === p.offset)) {
    out[out.length - 1] = { ...last, len: last.len + p.len };
  } else out.push(p);
}

/** The pieces of [off, off + len) of a mapping whose bytes are `pieces` (in IOVA order). */
function slicePieces(pieces: readonly IoasMappingPiece[], off: number, len: number): IoasMappingPiece[] {
  const out: IoasMappingPiece[] = [];
  let pos = 0;
  for (const p of pieces) {
    const a = Math.max(pos, off);
    const b = Math.min(pos + p.len, off + len);
    if (a < b) pushPiece(out, { ...p, offset: p.buffer !== null || p.dmabuf !== null ? p.offset + (a - pos) : 0, len: b - a });
    pos += p.len;
  }
  return out;
}

/**
 * What [iova, iova + len) of an IOAS maps, in IOVA order, walked as io_pagetable.c:
 * iopt_get_pages() walks it for IOMMU_IOAS_COPY: each area covering the range from where the range
 * meets it (iopt_area_start_byte), read from `sources` (what the first byte of each area the steps
 * made holds). Bytes of an area no step made, and a hole (the copy is then ENOENT), are a piece of
 * neither buffer nor dma-buf; pieces continuing one buffer's (or dma-buf's) bytes are one.
 */
function ioasPiecesAt(ioas: Ioas, iova: bigint, len: number, sources: WeakMap<IoasArea, IoasMappingPiece>): IoasMappingPiece[] {
  const out: IoasMappingPiece[] = [];
  const end = iova + BigInt(len);
  for (let at = iova; at < end;) {
    const a = ioas.areas.find((x) => x.iova <= at && at < x.iova + BigInt(x.len));
    let stop = end;
    if (a === undefined) {
      // a hole, up to the next area
      for (const x of ioas.areas) if (x.iova > at && x.iova < stop) stop = x.iova;
    } else if (a.iova + BigInt(a.len) < end) stop = a.iova + BigInt(a.len);
    const n = Number(stop - at);
    const src = a !== undefined ? sources.get(a) : undefined;
    pushPiece(out, src !== undefined ? { ...src, offset: src.offset + Number(at - a!.iova), len: n } : { buffer: null, dmabuf: null, offset: 0, len: n });
    at = stop;
  }
  return out;
}

/** Where an iommufd import maps a dma-buf in its IOAS. */
const IOAS_IOVA = 0x1000_0000n;

/** An offset as the output shows it: whole KiB as sizes, else bytes. */
function offText(n: number): string {
  return n > 0 && n % 1024 === 0 ? formatBytes(n).replace(' ', '') : String(n);
}

const METHOD_TEXT: Readonly<Record<string, string>> = {
  page: 'dma_map_page', sg: 'dma_map_sgtable', phys: 'dma_map_phys', phyrs: 'dmaMapPhyrs', 'two-step': 'dma_iova_link',
};

function backingText(b: BufferState['backing']): string {
  return typeof b === 'string' ? b : `${b.device}${b.offset ? `+${b.offset}` : ''}`;
}

/**
 * log2 of namespace 1's logical block size: a step's `lba` counts those blocks, as an NVMe
 * command's SLBA does; the block layer below takes 512-byte sectors (SECTOR_SHIFT).
 */
function lbaShiftOf(ctrl: NvmeCtrl): number {
  return ctrl.nsOf(ctrl.queue).lbaShift;
}

/** The 512-byte sector where logical block `lba` starts. */
function sectorOf(lba: number, shift: number): bigint {
  return BigInt(lba) << BigInt(shift - 9);
}

/** The namespace's end in its logical blocks ('?' when the queue has no capacity). */
function endLba(ctrl: NvmeCtrl): string {
  const sectors = bdevNrSectors(ctrl.queue);
  return sectors === null ? '?' : String(sectors >> BigInt(lbaShiftOf(ctrl) - 9));
}

/** A read at or past the end of the device (block/fops.c: blkdev_read_iter returns 0), in the step's words. */
function endText(ctrl: NvmeCtrl): string {
  return `end of device: it ends at LBA ${endLba(ctrl)} (blkdev_read_iter returns 0)`;
}

/** For an I/O cut at the end of the device (block/fops.c truncates it): what it moved, else nothing. */
function shortText(ctrl: NvmeCtrl, moved: number, asked: number): string {
  if (moved >= asked) return '';
  return `short: ${formatBytes(moved)} of ${formatBytes(asked)} moved, the device ends at LBA ${endLba(ctrl)}; `;
}

function checkText(checked: number, bad: number): string {
  if (checked === 0) return 'nothing to check (no bytes written there yet)';
  return bad === 0 ? `${formatCount(checked)} bytes match` : `${formatCount(bad)} of ${formatCount(checked)} bytes differ`;
}

/** Runs a scenario to the end (see ScenarioRunner). @throws ScenarioError when the machine cannot be built or a device refuses a probe setting. */
export function runScenario(scenario: Scenario, opts: RunOptions = {}): ScenarioResult {
  return new ScenarioRunner(scenario, opts).runAll();
}
