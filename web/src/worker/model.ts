// The worker's side of the view: a scenario run (ScenarioRunner from src/scenario) and read-only
// views of its machine, built with the model's public API (each layer's index.ts) only. Nothing here
// changes the machine: pages come from the user page tables (UserMm.vmaAt / pfnAt, no fault), the
// layouts are built from those pages without a pin, page tables are read with dumpTablePage, and P2P
// map types are asked of a probe machine built from the same PCI config.

import {
  GiB, PCI_P2PDMA_MAP_NAMES, PageArray, hugetlbSizes, coalesce, createMachine, dumpTablePage, hex, iommuGetDomainForDev, iommufdIoasOf,
  pagesToBvecList, pciP2pdmaDistance, pciP2pdmaMapType, pcimP2pdmaInit, pcimP2pdmaProvider, sgAllocTableFromPagesSegment,
  toPageList, DmaList,
  type BvecList, type Device, type HugetlbSize, type IommuDomain, type Machine, type PageList, type PhyrList, type SgTable, type UserMm,
} from '../../../src/index.ts';
import {
  ScenarioRunner, counterText, parseScenario, stepStatus, type BufferState, type IoasState, type MappingState, type RunOptions, type Scenario, type StepResult,
} from '../../../src/scenario/file/index.ts';
import type {
  BufferRow, BytesAnswer, DomainRow, EventRow, HugetlbRun, LayoutSummary, P2pAnswer, PciNodeRow, PhysSpan, RegionRow, RowsAnswer,
  Snapshot, Space, StepRow, TableAnswer, TracePoint,
} from '../protocol.ts';

/** Spans drawn on the memory map at most; closer ones are merged for drawing. */
const MAX_SPANS = 2000;
/** Runs of one hugetlb pool drawn at most; runs with the smallest gaps are merged beyond that. */
const MAX_POOL_RUNS = 256;
const UINT_MAX = 0xffffffff;

/** A row of a list: its cells and the address range it covers (for trace highlighting). */
interface RowSource {
  readonly columns: readonly string[];
  readonly total: number;
  row(i: number): string[];
  /** The range row i covers in an address space ([lo, hi) as bigints), or null. */
  range?(i: number): { space: Space; lo: bigint; hi: bigint } | null;
  /** The key of a 'pte' point row i is (`<pfnHex>:<index>`). */
  key?(i: number): string;
}

/** A buffer in every layout, built from its pages as they are now (no pin taken). */
interface BufferLayouts {
  readonly summaries: LayoutSummary[];
  readonly sources: Map<string, RowSource>;
}

/** The user address space of a scenario process (the runner keeps one UserMm per process). */
function processMm(runner: ScenarioRunner, name: string): UserMm | null {
  return runner.processes.get(name) ?? null;
}

function backingText(b: BufferState['backing']): string {
  return typeof b === 'string' ? b : `device ${b.device}${b.offset ? ` +${hex(b.offset)}` : ''}`;
}

const big = (s: string): bigint => BigInt(s);

export class ViewModel {
  readonly scenario: Scenario;
  readonly runner: ScenarioRunner;
  /** events.total before each step ran (index = step). */
  private stepSeq: number[] = [];
  private layoutCache = new Map<string, BufferLayouts>();
  private pageCache = new Map<string, { pfns: Float64Array; offset: number; present: boolean }>();
  /** First row each list's trace hits, by source (cleared with a new trace or step). */
  private hitCache = new Map<string, number>();
  private points: readonly TracePoint[] = [];
  private probe: Machine | null = null;
  /** The head pfns of each hugetlb pool's pages, sorted (see poolPagesOf). */
  private poolPages: Partial<Record<HugetlbSize, number[]>> = {};

  /** opts: the configuration and seed of the run, as `phyr run --config --seed`. */
  constructor(text: string, source: string, opts: RunOptions = {}) {
    this.scenario = parseScenario(text, { source });
    this.runner = new ScenarioRunner(this.scenario, opts);
    this.poolPages = this.poolPagesOf();
  }

  /**
   * Every page of each hugetlb pool, taken from the freshly built machine: the pools are filled at
   * boot (the gigantic pages carved from the top of RAM, the others from the buddy allocator)
   * and, as no step resizes a pool, the same pages stay in it for the whole run, free or in use.
   */
  private poolPagesOf(): Partial<Record<HugetlbSize, number[]>> {
    const out: Partial<Record<HugetlbSize, number[]>> = {};
    for (const size of hugetlbSizes(this.machine.pageSize)) {
      const pool = this.machine.hugetlbPool(size);
      if (pool.free.length !== pool.total) throw new Error(`hugetlb ${size} pool: ${pool.total - pool.free.length} pages in use before step 0`);
      out[size] = pool.free.slice().sort((a, b) => a - b);
    }
    return out;
  }

  get machine(): Machine {
    return this.runner.machine;
  }

  /** Runs one step; false when nothing was left to run. */
  step(): boolean {
    const seq = this.machine.events.total;
    const r = this.runner.step();
    if (r === null) return false;
    this.stepSeq[r.index] = seq;
    this.layoutCache.clear();
    this.pageCache.clear();
    this.hitCache.clear();
    return true;
  }

  reset(): void {
    this.runner.reset();
    this.poolPages = this.poolPagesOf();
    this.stepSeq = [];
    this.layoutCache.clear();
    this.pageCache.clear();
    this.hitCache.clear();
    this.points = [];
  }

  setTrace(points: readonly TracePoint[]): void {
    this.points = points;
    this.hitCache.clear();
  }

  private get done(): boolean {
    return this.runner.done;
  }

  snapshot(): Snapshot {
    const m = this.machine;
    const results = this.runner.results;
    const steps: StepRow[] = this.scenario.steps.map((s, i) => {
      const r = results[i] as StepResult | undefined;
      const label = s.label ?? r?.label ?? s.op;
      if (r === undefined) return { index: i, label, status: 'pending', summary: '', result: '', counters: '' };
      return {
        index: i, label, status: r.ok ? 'ok' : 'failed', summary: r.summary, ...(r.errno ? { errno: r.errno } : {}),
        // the words of phyr run
        result: stepStatus(r),
        ...(r.unmet !== undefined ? { unmet: r.unmet } : {}),
        counters: counterText(r.counters),
      };
    });
    const last = results[results.length - 1] as StepResult | undefined;
    const stopped = last !== undefined && !last.ok;
    const regions: RegionRow[] = m.regions.map((r) => ({
      name: r.name, kind: r.kind, start: hex(r.start), end: hex(r.end), len: r.len,
      label: `${r.name}: ${r.kind}${r.mmio ? ' (MMIO)' : ''} ${hex(r.start)}-${hex(r.end - 1n)}`,
    }));
    if (m.swiotlb) {
      const s = m.swiotlb;
      regions.push({ name: 'swiotlb', kind: 'swiotlb', start: hex(s.start), end: hex(s.end), len: Number(s.end - s.start), label: `swiotlb bounce pool ${hex(s.start)}-${hex(s.end - 1n)}` });
    }
    const hugetlb = this.hugetlbRuns();
    for (const size of hugetlbSizes(m.pageSize)) {
      const pool = m.hugetlbPool(size);
      const runs = hugetlb.filter((r) => r.pool === size);
      if (pool.total === 0 || runs.length === 0) continue;
      const start = runs[0].start, end = runs[runs.length - 1].end;
      regions.push({
        name: `hugetlb-${size}`, kind: 'hugetlb', start, end, len: pool.total * pool.len,
        label: `hugetlb ${size} pool: ${pool.total} ${pool.total === 1 ? 'page' : 'pages'}, ${pool.free.length} free, ${pool.reserved} reserved, in ${start}-${hex(big(end) - 1n)}`,
      });
    }
    const physTop = m.regions.reduce((a, r) => (r.end > a ? r.end : a), 0n);
    const { spans, omitted } = this.physSpans(physTop);
    const buffers: BufferRow[] = [...this.runner.buffers.values()].map((b) => ({
      name: b.name, process: b.process, va: hex(b.va), len: b.len, backing: backingText(b.backing), live: b.live,
      pins: [...this.runner.pins.values()].filter((p) => p.buffer === b.name && p.live).map((p) => p.name),
      mappings: [...this.runner.mappings.values()].filter((mp) => this.bufferOfMapping(mp) === b.name && mp.live).map((mp) => mp.name),
    }));
    const ioases = [...this.runner.ioases.values()];
    const counters = Object.entries(m.stats.snapshot()).filter(([, v]) => v !== 0).sort((a, b) => a[0].localeCompare(b[0]));
    return {
      name: this.scenario.name,
      description: this.scenario.description ?? '',
      configs: Object.entries(this.scenario.configs).map(([name, c]) => ({ name, description: c.description ?? '' })),
      config: this.runner.options.config ?? null,
      seed: this.runner.seed,
      defaultSeed: this.scenario.machine.seed ?? 1,
      state: stopped ? 'stopped' : this.done ? 'done' : 'ready',
      index: this.runner.index,
      steps,
      regions,
      physTop: hex(physTop),
      spans,
      spansOmitted: omitted,
      hugetlb,
      buffers,
      pci: this.pciNodes(),
      domains: this.domains(ioases),
      ioases: ioases.map((x) => ({
        name: x.name, devices: x.devices, hwpts: x.hwpts, iovaAlignment: x.iovaAlignment,
        areas: x.areas.map((a) => ({ iova: hex(a.iova), len: a.len, mapping: a.mapping, pinned: a.pinned })),
      })),
      counters,
      events: this.events(),
      leaks: null,
    };
  }

  private bufferOfMapping(mp: MappingState): string {
    return mp.buffer;
  }

  private events(): EventRow[] {
    const out: EventRow[] = [];
    for (const e of this.machine.events.list()) {
      let step = -1;
      for (let i = 0; i < this.stepSeq.length; i++) if (this.stepSeq[i] !== undefined && e.seq >= this.stepSeq[i]) step = i;
      out.push({ seq: e.seq, kind: e.kind, source: e.source, message: e.message, step });
    }
    return out;
  }

  /**
   * The buffer's pages as pfns (-1: not present), with the byte offset into the first page; walked
   * once per step (UserMm.vmaAt + pfnAt: the page tables as they are, no fault taken).
   */
  private pagesOf(b: BufferState): { pfns: Float64Array; offset: number; present: boolean } {
    const key = `${b.name}@${this.runner.index}`;
    const hit = this.pageCache.get(key);
    if (hit) return hit;
    const ps = this.machine.pageSize;
    const mm = processMm(this.runner, b.process);
    const offset = Number(b.va % BigInt(ps));
    const n = Math.ceil((offset + b.len) / ps);
    const pfns = new Float64Array(n).fill(-1);
    let present = mm !== null && b.live;
    if (mm !== null && b.live) {
      const base = Number(b.va) - offset;
      let vma: ReturnType<UserMm['vmaAt']>;
      for (let i = 0; i < n; i++) {
        const va = base + i * ps;
        if (vma === undefined || va < vma.start || va >= vma.end) vma = mm.vmaAt(va);
        const pfn = vma === undefined ? -1 : mm.pfnAt(vma, va);
        if (pfn < 0) present = false;
        else pfns[i] = pfn;
      }
    }
    const out = { pfns, offset, present };
    this.pageCache.set(key, out);
    return out;
  }

  /** Pages of the buffer covered by [start, start+len) bytes from the buffer's first byte. */
  private markPages(out: boolean[], offset: number, start: number, len: number): void {
    const ps = this.machine.pageSize;
    const first = Math.floor((offset + start) / ps);
    const last = Math.min(out.length - 1, Math.floor((offset + start + Math.max(1, len) - 1) / ps));
    for (let i = first; i <= last; i++) out[i] = true;
  }

  /**
   * Physical spans of every live buffer, pinned or not (its live pins), mapped or not (its live
   * mappings); spans of one buffer and state closer than a pixel of a 2000-pixel map are merged.
   * Pages are sorted as typed-array keys (pfn * 4 + state), so a 1 GiB buffer of scattered 4 KiB
   * pages costs one native sort.
   */
  private physSpans(physTop: bigint): { spans: PhysSpan[]; omitted: number } {
    const ps = this.machine.pageSize;
    const gapPages = Math.max(1, Math.floor(Number(physTop) / MAX_SPANS / ps));
    const merged: Array<{ buffer: string; s: number; e: number; pinned: boolean; mapped: boolean }> = [];
    for (const b of this.runner.buffers.values()) {
      if (!b.live) continue;
      const { pfns, offset } = this.pagesOf(b);
      const pinned = new Array<boolean>(pfns.length).fill(false);
      for (const p of this.runner.pins.values()) if (p.live && p.buffer === b.name) this.markPages(pinned, offset, p.offset, p.len);
      const mapped = this.mappedPages(b, pfns.length, offset);
      const keys = new Float64Array(pfns.length);
      let n = 0;
      for (let i = 0; i < pfns.length; i++) if (pfns[i] >= 0) keys[n++] = pfns[i] * 4 + (pinned[i] ? 2 : 0) + (mapped[i] ? 1 : 0);
      const sorted = keys.subarray(0, n).sort();
      // per state, consecutive (or nearly) frames form one span
      const open: Array<{ s: number; e: number } | null> = [null, null, null, null];
      const flush = (st: number): void => {
        const o = open[st];
        if (o) merged.push({ buffer: b.name, s: o.s * ps, e: o.e * ps, pinned: (st & 2) !== 0, mapped: (st & 1) !== 0 });
        open[st] = null;
      };
      for (let k = 0; k < n; k++) {
        const pfn = Math.floor(sorted[k] / 4);
        const st = sorted[k] - pfn * 4;
        const o = open[st];
        if (o && pfn - o.e <= gapPages) o.e = pfn + 1;
        else {
          flush(st);
          open[st] = { s: pfn, e: pfn + 1 };
        }
      }
      for (let st = 0; st < 4; st++) flush(st);
    }
    const kept = merged.slice(0, MAX_SPANS);
    return {
      spans: kept.map((sp) => ({ buffer: sp.buffer, start: hex(BigInt(sp.s)), end: hex(BigInt(sp.e)), pinned: sp.pinned, mapped: sp.mapped })),
      omitted: merged.length - kept.length,
    };
  }

  /**
   * The hugetlb pools' pages on the physical map: runs of adjacent pages of one pool, in one RAM
   * region, all in use (a folio faulted into a process) or all free. A pool with more runs than
   * MAX_POOL_RUNS has its closest runs of the same state merged (the run says how many pages it
   * holds, so its text stays true).
   */
  private hugetlbRuns(): HugetlbRun[] {
    const m = this.machine;
    const ps = m.pageSize;
    const out: HugetlbRun[] = [];
    const ram = m.regions.filter((r) => r.kind === 'ram');
    const regionOf = (addr: number): string => ram.find((r) => addr >= r.startNum && addr < r.endNum)?.name ?? '?';
    for (const size of hugetlbSizes(ps)) {
      const pool = m.hugetlbPool(size);
      const free = new Set(pool.free);
      const pageLen = pool.len;
      let runs: Array<{ s: number; e: number; pages: number; inUse: boolean; region: string }> = [];
      for (const pfn of this.poolPages[size] ?? []) {
        const s = pfn * ps, inUse = !free.has(pfn), region = regionOf(s);
        const last = runs[runs.length - 1];
        if (last && last.e === s && last.inUse === inUse && last.region === region) {
          last.e = s + pageLen;
          last.pages++;
        } else runs.push({ s, e: s + pageLen, pages: 1, inUse, region });
      }
      for (let gap = pageLen; runs.length > MAX_POOL_RUNS; gap *= 2) {
        const merged: typeof runs = [];
        for (const r of runs) {
          const last = merged[merged.length - 1];
          if (last && r.s - last.e <= gap && last.inUse === r.inUse && last.region === r.region) {
            last.e = r.e;
            last.pages += r.pages;
          } else merged.push({ ...r });
        }
        runs = merged;
      }
      for (const r of runs) {
        const start = hex(BigInt(r.s)), end = hex(BigInt(r.e));
        out.push({
          pool: size, start, end, pages: r.pages, inUse: r.inUse, region: r.region,
          label: `hugetlb ${size} pool in ${r.region}: ${r.pages} ${r.pages === 1 ? 'page' : 'pages'} ${r.inUse ? 'in use' : 'free'}, ${start}-${hex(BigInt(r.e) - 1n)}`,
        });
      }
    }
    return out;
  }

  /** Which pages of the buffer a live mapping covers. */
  private mappedPages(b: BufferState, n: number, offset: number): boolean[] {
    const out = new Array<boolean>(n).fill(false);
    for (const mp of this.runner.mappings.values()) {
      if (!mp.live || this.bufferOfMapping(mp) !== b.name) continue;
      this.markPages(out, offset, mp.offset, mp.len);
    }
    return out;
  }

  // ---------------------------------------------------------------- layouts

  layouts(buffer: string): LayoutSummary[] {
    return this.buildLayouts(buffer).summaries;
  }

  private buildLayouts(buffer: string): BufferLayouts {
    const cached = this.layoutCache.get(buffer);
    if (cached) return cached;
    const b = this.runner.buffers.get(buffer);
    if (b === undefined) throw new RangeError(`buffer must be a buffer of the scenario, got ${JSON.stringify(buffer)}`);
    const m = this.machine;
    const ps = m.pageSize;
    const summaries: LayoutSummary[] = [];
    const sources = new Map<string, RowSource>();
    const id = (l: string): string => `layout:${buffer}:${l}`;
    const { pfns, offset, present } = this.pagesOf(b);
    const missing = present ? null : b.live ? 'not every page is present (populate or fault it in first)' : 'unmapped (munmap)';
    const fail = (l: string, label: string, error: string): void => {
      summaries.push({ source: id(l), label, entries: null, kernelBytes: null, parts: [], error });
    };
    const physRange = (addr: bigint, len: number) => ({ space: 'phys' as const, lo: addr, hi: addr + BigInt(len) });
    if (missing !== null) {
      for (const [l, label] of [['pagearray', 'page array + scatterlist'], ['bvec', 'bio_vec list'], ['phyr', 'phyr list'], ['pagelist', '8-byte page list']]) fail(l, label, missing);
    } else {
      // each page carries its region's range flags, as pinUserPages / pinUserPhyrs give them (device
      // memory: RANGE_DEVICE | RANGE_MMIO and the P2P provider id), so the phyr list built from the
      // page array has the flags a pin would return
      const flags = new Uint32Array(pfns.length);
      for (let i = 0; i < pfns.length; i++) flags[i] = m.pfnFacts(BigInt(pfns[i]))?.rangeFlags ?? 0;
      const pa = new PageArray(pfns, { pageSize: ps, offset, len: b.len, flags });
      const sg = sgAllocTableFromPagesSegment(pfns, offset, b.len, Math.floor(UINT_MAX / ps) * ps, { pageSize: ps });
      if (!sg.ok) {
        fail('pagearray', 'page array + scatterlist', `${sg.errno}: ${sg.message ?? ''}`);
      } else {
        const sgt: SgTable = sg.value;
        summaries.push({
          source: id('pagearray'), label: 'page array + scatterlist', entries: pa.count, kernelBytes: pa.kernelBytes + sgt.kernelBytes,
          parts: [{ name: 'page array', entries: pa.count, kernelBytes: pa.kernelBytes }, { name: 'sg_table', entries: sgt.origNents, kernelBytes: sgt.kernelBytes }],
          error: null,
        });
        sources.set(id('pagearray'), {
          columns: ['#', 'struct page * (pfn)', 'phys'], total: pa.count,
          row: (i) => [String(i), hex(pa.pfns[i]), hex(BigInt(pa.pfns[i]) * BigInt(ps))],
          range: (i) => physRange(BigInt(pa.pfns[i]) * BigInt(ps), ps),
        });
        summaries.push({
          source: id('sg'), label: 'scatterlist (sg_table)', entries: sgt.origNents, kernelBytes: sgt.kernelBytes,
          parts: [{ name: 'sg_table', entries: sgt.origNents, kernelBytes: sgt.kernelBytes }], error: null,
        });
        sources.set(id('sg'), {
          columns: ['#', 'page (pfn)', 'offset', 'length', 'phys'], total: sgt.origNents,
          row: (i) => [String(i), hex(sgt.pfnAt(i)), hex(sgt.offsetAt(i)), hex(sgt.lengthAt(i)), hex(sgt.physAt(i))],
          range: (i) => physRange(sgt.physAt(i), sgt.lengthAt(i)),
        });
      }
      const phyrs = coalesce(pa) as PhyrList;
      // as phyr compare: one bio_vec per contiguous run inside one folio (iov_iter_extract_bvecs)
      const bv = pagesToBvecList(pa, (pfn) => {
        const f = m.folioOf(BigInt(pfn));
        return f === undefined ? -1 : Number(f.head) + 2 ** f.order;
      });
      if (!bv.ok) fail('bvec', 'bio_vec list', `${bv.errno}: ${bv.message ?? ''}`);
      else {
        const l: BvecList = bv.value;
        summaries.push({ source: id('bvec'), label: 'bio_vec list', entries: l.count, kernelBytes: l.kernelBytes, parts: [{ name: 'bio_vec', entries: l.count, kernelBytes: l.kernelBytes }], error: null });
        sources.set(id('bvec'), {
          columns: ['#', 'bv_page (pfn)', 'bv_offset', 'bv_len', 'phys'], total: l.count,
          row: (i) => [String(i), hex(l.pfnAt(i)), hex(l.offsetAt(i)), hex(l.lenAt(i)), hex(l.addrAt(i))],
          range: (i) => physRange(l.addrAt(i), l.lenAt(i)),
        });
      }
      summaries.push({ source: id('phyr'), label: 'phyr list', entries: phyrs.count, kernelBytes: phyrs.kernelBytes, parts: [{ name: 'phyr', entries: phyrs.count, kernelBytes: phyrs.kernelBytes }], error: null });
      sources.set(id('phyr'), {
        columns: ['#', 'addr', 'len', 'flags'], total: phyrs.count,
        row: (i) => [String(i), hex(phyrs.addrAt(i)), hex(phyrs.lenAt(i)), hex(phyrs.flagsAt(i))],
        range: (i) => physRange(phyrs.addrAt(i), phyrs.lenAt(i)),
      });
      const pl = toPageList(phyrs, ps);
      if (!pl.ok) fail('pagelist', '8-byte page list', `${pl.errno}: ${pl.message ?? ''}`);
      else {
        const l: PageList = pl.value;
        summaries.push({ source: id('pagelist'), label: '8-byte page list', entries: l.count, kernelBytes: l.kernelBytes, parts: [{ name: 'page list', entries: l.count, kernelBytes: l.kernelBytes }], error: null });
        sources.set(id('pagelist'), {
          columns: ['#', 'pfn', 'order', 'bytes', 'phys'], total: l.count,
          row: (i) => [String(i), hex(l.pfnAt(i)), String(l.orderAt(i)), hex(ps * 2 ** l.orderAt(i)), hex(l.pfnAt(i) * BigInt(ps))],
          range: (i) => physRange(l.pfnAt(i) * BigInt(ps), ps * 2 ** l.orderAt(i)),
        });
      }
    }
    // the DMA side: one DMA list per live mapping of this buffer (what the device is handed)
    for (const mp of this.runner.mappings.values()) {
      if (!mp.live || this.bufferOfMapping(mp) !== buffer) continue;
      const dl = DmaList.from(mp.segments.map((s) => ({ addr: s.dmaAddr, len: s.len })));
      const l = `dma:${mp.name}`;
      summaries.push({
        source: id(l), label: `DMA list (${mp.name}: ${mp.method} on ${mp.device})`, entries: dl.count, kernelBytes: dl.kernelBytes,
        parts: [{ name: 'dma list', entries: dl.count, kernelBytes: dl.kernelBytes }], error: null,
      });
      sources.set(id(l), {
        columns: ['#', 'dma addr', 'len'], total: dl.count,
        row: (i) => [String(i), hex(dl.addrAt(i)), hex(dl.lenAt(i))],
        range: (i) => ({ space: 'dma', lo: dl.addrAt(i), hi: dl.addrAt(i) + BigInt(dl.lenAt(i)) }),
      });
    }
    // the physical runs with their folios
    const runs: Array<{ pfn: number; n: number; off: number }> = [];
    for (let i = 0; i < pfns.length; i++) {
      const p = runs[runs.length - 1];
      if (pfns[i] < 0) continue;
      if (p && p.pfn + p.n === pfns[i] && p.off + p.n === i) p.n++;
      else runs.push({ pfn: pfns[i], n: 1, off: i });
    }
    sources.set(`phys:${buffer}`, {
      columns: ['#', 'phys', 'len', 'buffer offset', 'region', 'folio head', 'order', 'pincount'], total: runs.length,
      row: (i) => {
        const r = runs[i];
        const f = m.folioOf(BigInt(r.pfn));
        return [String(i), hex(BigInt(r.pfn) * BigInt(ps)), hex(r.n * ps), hex(Math.max(0, r.off * ps - offset)), m.regionAt(BigInt(r.pfn) * BigInt(ps))?.name ?? '-',
          f ? hex(f.head) : '-', f ? String(f.order) : '-', f ? String(f.pincount) : '-'];
      },
      range: (i) => physRange(BigInt(runs[i].pfn) * BigInt(ps), runs[i].n * ps),
    });
    const out = { summaries, sources };
    this.layoutCache.set(buffer, out);
    return out;
  }

  // ---------------------------------------------------------------- lists

  private source(id: string): RowSource {
    const [kind, a] = id.split(':');
    if (kind === 'layout' || kind === 'phys') {
      const s = this.buildLayouts(a).sources.get(id);
      if (s) return s;
    }
    if (kind === 'iova') return this.iovaSource(a);
    if (kind === 'pt') return this.tableSource(a, id.split(':')[2] ?? null);
    if (kind === 'iotlb') return this.iotlbSource(a);
    if (kind === 'events') {
      const ev = this.events();
      return {
        columns: ['seq', 'step', 'kind', 'source', 'message'], total: ev.length,
        row: (i) => [String(ev[i].seq), ev[i].step < 0 ? 'setup' : String(ev[i].step), ev[i].kind, ev[i].source, ev[i].message],
      };
    }
    throw new RangeError(`source must be a list of the view, got ${JSON.stringify(id)}`);
  }

  rows(id: string, start: number, count: number): RowsAnswer {
    const src = this.source(id);
    const s = Math.max(0, Math.min(start, src.total));
    const e = Math.min(src.total, s + Math.max(0, count));
    const rows = [];
    for (let i = s; i < e; i++) rows.push({ cells: src.row(i), hit: this.hits(src, i) });
    let firstHit = this.hitCache.get(id) ?? -1;
    if (this.points.length > 0 && !this.hitCache.has(id)) {
      for (let i = 0; i < src.total; i++) {
        if (this.hits(src, i)) {
          firstHit = i;
          break;
        }
      }
      this.hitCache.set(id, firstHit);
    }
    return { source: id, columns: src.columns, total: src.total, start: s, rows, firstHit };
  }

  private hits(src: RowSource, i: number): boolean {
    if (this.points.length === 0) return false;
    const r = src.range?.(i) ?? null;
    const k = src.key?.(i);
    for (const p of this.points) {
      if (p.space === 'pte') {
        if (k !== undefined && k === p.addr) return true;
        continue;
      }
      if (r !== null && r.space === p.space) {
        const a = big(p.addr);
        if (a >= r.lo && a < r.hi) return true;
      }
    }
    return false;
  }

  // ---------------------------------------------------------------- IOMMU

  private domainOf(device: string): IommuDomain {
    const d = iommuGetDomainForDev(this.machine.device(device));
    if (d === null) throw new RangeError(`device ${device} has no IOMMU domain`);
    return d;
  }

  /** Every device's domain; ioases: the live IOASes of the scenario, to name a hw_pagetable's IOAS. */
  private domains(ioases: readonly IoasState[]): DomainRow[] {
    if (!this.machine.iommu) return [];
    const out: DomainRow[] = [];
    for (const dev of this.machine.devices()) {
      const d = iommuGetDomainForDev(dev);
      if (d === null) continue;
      // attached to an IOAS: the domain iommuGetDomainForDev gives is one of its hw_pagetables' (pt_ids are unique)
      const h = iommufdIoasOf(dev)?.hwpts.find((x) => x.domain === d) ?? null;
      const hwpt = h === null ? null : {
        id: h.id, auto: h.autoDomain, devices: h.devices.map((x) => x.name),
        ioas: ioases.find((x) => x.hwpts.some((y) => y.id === h.id))?.name ?? null,
      };
      out.push({
        hwpt,
        device: dev.name, type: d.type, format: d.format?.name ?? null, rootPfn: d.rootPfn === null ? null : hex(d.rootPfn),
        tablePageBytes: this.machine.pageSize,
        tablePages: d.pt === null ? 0 : d.tablePages, iovaRanges: d.iovad?.ranges().length ?? 0, iotlbEntries: d.iotlb.size,
        aperture: `${hex(d.geometry.apertureStart)}-${hex(d.geometry.apertureEnd)}`,
      });
    }
    return out;
  }

  private iovaSource(device: string): RowSource {
    const d = this.domainOf(device);
    const ranges = d.iovad?.ranges() ?? [];
    const g = BigInt(d.granule);
    return {
      columns: ['#', 'iova', 'last', 'pages'], total: ranges.length,
      row: (i) => [String(i), hex(ranges[i].pfnLo * g), hex((ranges[i].pfnHi + 1n) * g - 1n), String(ranges[i].pfnHi - ranges[i].pfnLo + 1n)],
      range: (i) => ({ space: 'iova', lo: ranges[i].pfnLo * g, hi: (ranges[i].pfnHi + 1n) * g }),
    };
  }

  private iotlbSource(device: string): RowSource {
    const d = this.domainOf(device);
    const entries = d.iotlb.entries();
    return {
      columns: ['#', 'iova', 'size', 'phys', 'prot'], total: entries.length,
      row: (i) => {
        const e = entries[i];
        return [String(i), hex(BigInt(e.leafIovaPfn) * 4096n), hex(4096 * 2 ** e.leafLg2), hex(BigInt(e.physPfn) * 4096n), hex(e.prot)];
      },
      range: (i) => ({ space: 'iova', lo: BigInt(entries[i].leafIovaPfn) * 4096n, hi: BigInt(entries[i].leafIovaPfn + 2 ** entries[i].leafLg2) * 4096n }),
    };
  }

  /** The entries of one table page ('pt:<device>:<pfnHex>'; no pfn: the root): 512, or 2048 / 8192 for ARM LPAE's 16 / 64 KiB granule. */
  private tableSource(device: string, pfn: string | null): RowSource {
    const t = this.table(device, pfn === '' ? null : pfn);
    return {
      columns: ['index', 'entry', 'kind', 'output addr', 'attributes'], total: t.entries.length,
      row: (i) => {
        const e = t.entries[i];
        return [String(e.index), e.raw, e.kind, e.oa, e.attrs];
      },
      key: (i) => `${t.pfn}:${i}`,
    };
  }

  table(device: string, pfn: string | null): TableAnswer {
    const d = this.domainOf(device);
    const p = pfn === null ? d.rootPfn : big(pfn);
    if (p === null) throw new RangeError(`device ${device}'s domain has no page table`);
    const t = dumpTablePage(d, p);
    const hexLines: string[] = [];
    // a table page is one IOMMU granule: 4 KiB, or 16 / 64 KiB for ARM LPAE on such a machine
    const width = (t.bytes.length - 1).toString(16).length;
    for (let i = 0; i < t.bytes.length; i += 16) {
      const line = [...t.bytes.subarray(i, i + 16)].map((x) => x.toString(16).padStart(2, '0')).join(' ');
      hexLines.push(`${i.toString(16).padStart(width, '0')}: ${line}`);
    }
    const byIndex = new Map(t.entries.map((e) => [e.index, e]));
    const pteKeys = new Set(this.points.filter((x) => x.space === 'pte').map((x) => x.addr));
    const entries = [];
    for (let i = 0; i < t.bytes.length / 8; i++) {
      const e = byIndex.get(i);
      entries.push({
        index: i, raw: e ? hex(e.raw) : '0x0', kind: e?.kind ?? 'empty', oa: e ? hex(e.oa) : '-', attrs: e?.attrs ?? '',
        hit: pteKeys.has(`${hex(t.pfn)}:${i}`),
      });
    }
    return { device, pfn: hex(t.pfn), level: t.level, hex: hexLines, entries };
  }

  // ---------------------------------------------------------------- PCI

  private pciNodes(): PciNodeRow[] {
    const topo = this.machine.topology;
    if (!topo) return [];
    const devs = topo.pciDevs();
    const out: PciNodeRow[] = topo.hostBridges.filter((hb) => !devs.some((p) => p.name === hb.name))
      .map((hb) => ({ name: hb.name, parent: null, kind: 'host-bridge', bdf: `${hb.domain.toString(16).padStart(4, '0')}:${hb.rootBus.toString(16).padStart(2, '0')}`, bars: [] }));
    for (const p of devs) {
      const bdf = `${p.domain.toString(16).padStart(4, '0')}:${p.bus.toString(16).padStart(2, '0')}:${(p.devfn >> 3).toString(16).padStart(2, '0')}.${p.devfn & 7}`;
      out.push({
        name: p.name, parent: p.upstream?.name ?? (p.name === p.hostBridge.name ? null : p.hostBridge.name), kind: p.kind, bdf,
        bars: p.bars.map((b) => `BAR${b.index} ${hex(b.region.start)} ${b.region.len >= GiB ? `${b.region.len / GiB} GiB` : hex(b.region.len)}${b.p2p ? ' p2p' : ''}`),
      });
    }
    return out;
  }

  /** P2P from a provider's first BAR to a client, asked of a probe machine with the same PCI tree. */
  p2p(provider: string, client: string): P2pAnswer {
    const topo = this.machine.topology;
    if (!topo) throw new RangeError('the machine has no PCI tree');
    const chain = (name: string): string[] => {
      const out: string[] = [];
      let p: ReturnType<typeof topo.pciDev> | null = topo.pciDev(name);
      while (p) {
        out.push(p.name);
        if (!p.upstream && p.name !== p.hostBridge.name) out.push(p.hostBridge.name);
        p = p.upstream;
      }
      return out;
    };
    const a = chain(provider), b = chain(client);
    const common = a.find((n) => b.includes(n)) ?? null;
    const path = common === null ? [...a, '(no common bridge)', ...[...b].reverse()]
      : [...a.slice(0, a.indexOf(common) + 1), ...b.slice(0, b.indexOf(common)).reverse()];
    if (this.probe === null) {
      // the run's machine: the configuration's fields over the base ones
      const c = this.runner.machineConfig();
      this.probe = createMachine({
        ramBytes: c.ramBytes, ...(c.physAddrBits !== undefined ? { physAddrBits: c.physAddrBits } : {}),
        ...(c.pageSize !== undefined ? { pageSize: c.pageSize } : {}), ...(c.cpu !== undefined ? { cpu: c.cpu } : {}),
        ...(c.deviceMemory !== undefined ? { deviceMemory: c.deviceMemory } : {}),
        pci: c.pci ?? [], swiotlb: false, dmaDebug: { enabled: false },
      });
    }
    const pm = this.probe;
    const pdev: Device = pm.device(provider);
    const cdev: Device = pm.device(client);
    pcimP2pdmaInit(pdev);
    const bar = pm.topology?.pciDev(provider).bars[0];
    const prov = bar === undefined ? null : pcimP2pdmaProvider(pdev, bar.index);
    const mapType = prov === null ? 'no memory BAR' : PCI_P2PDMA_MAP_NAMES[pciP2pdmaMapType(prov, cdev)];
    const distance = prov === null ? -1 : pciP2pdmaDistance(pdev, cdev);
    const via = common === null ? 'none' : topo.hostBridges.some((h) => h.name === common) ? `host bridge ${common}` : `switch ${common}`;
    return { provider, client, path, via, mapType, distance };
  }

  // ---------------------------------------------------------------- bytes

  bytes(buffer: string, offset: number, len: number): BytesAnswer {
    const b = this.runner.buffers.get(buffer);
    if (b === undefined) throw new RangeError(`buffer must be a buffer of the scenario, got ${JSON.stringify(buffer)}`);
    if (!Number.isSafeInteger(offset) || offset < 0) throw new RangeError(`offset must be a non-negative integer, got ${String(offset)}`);
    if (!Number.isSafeInteger(len) || len < 0) throw new RangeError(`len must be a non-negative integer, got ${String(len)}`);
    const m = this.machine;
    const mm = processMm(this.runner, b.process);
    const o = Math.max(0, Math.min(offset, b.len));
    const n = Math.max(0, Math.min(len, b.len - o));
    const out = new Array<number>(n).fill(-1);
    if (mm !== null && b.live) {
      const ps = m.pageSize;
      let i = 0;
      while (i < n) {
        const va = b.va + BigInt(o + i);
        const inPage = Math.min(n - i, ps - Number(va % BigInt(ps)));
        const pa = mm.translate(va);
        if (pa !== undefined) {
          try {
            const bytes = m.mem.read(pa, inPage);
            for (let k = 0; k < inPage; k++) out[i + k] = bytes[k];
          } catch {
            // MMIO without backing: shown as unreadable
          }
        }
        i += inPage;
      }
    }
    return { buffer, offset: o, bytes: out, len: b.len };
  }
}
