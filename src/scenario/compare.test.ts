// Tests for runCompare: every figure of the report is checked against an independent calculation made
// by walking the same buffer page by page through mm.translate on a rebuilt machine.
import { describe, expect, it } from 'vitest';
import { GiB, MiB } from '../base/index.ts';
import { createMmMachine } from '../mm/index.ts';
import {
  BUFFER_NAMES, LAYOUT_NAMES, compareMachineConfig, compareSteps, defaultMaxSegment, mapCompareBuffer,
  resolveCompareOptions, runCompare, type BufferName, type CompareOptions, type CompareReport, type LayoutRow,
} from './index.ts';

const SMALL: CompareOptions = {
  ramGiB: 8, seed: 3, deviceGiB: 1,
  bufferLen: { anon: 8 * MiB, thp: 16 * MiB, hugetlb: GiB, device: 4 * MiB },
};

/**
 * Physically contiguous runs of [start, start+len), found page by page with mm.translate: [firstPfn, pages][].
 * Also (into `folioRuns`) the same runs cut wherever the folio changes (MmMachine.folioOf's head).
 */
function runsByTranslate(
  opts: CompareOptions, report: CompareReport, folioRuns = new Map<BufferName, number>(),
): Map<BufferName, Array<[number, number]>> {
  const o = resolveCompareOptions(opts);
  const m = createMmMachine(compareMachineConfig(opts));
  const mm = m.newProcess();
  const out = new Map<BufferName, Array<[number, number]>>();
  for (const b of report.buffers) {
    const r = mapCompareBuffer(mm, b.name, b.len);
    if (!r.ok) throw new Error(`mmap ${b.name} failed: ${r.errno}`);
    // Same config and seed: the same user address (and, below, the same physical pages).
    expect(`0x${r.value.toString(16)}`).toBe(b.userAddr);
    const runs: Array<[number, number]> = [];
    let inFolio = 0;
    let prevPfn = -2;
    let prevHead: bigint | undefined;
    for (let off = 0; off < b.len; off += o.pageSize) {
      const phys = mm.translate(r.value + BigInt(off));
      if (phys === undefined) throw new Error(`${b.name}: page at +${off} not mapped`);
      const pfn = Number(phys / BigInt(o.pageSize));
      const last = runs[runs.length - 1];
      if (last && last[0] + last[1] === pfn) last[1]++;
      else runs.push([pfn, 1]);
      const head = m.folioOf(BigInt(pfn))?.head;
      if (head === undefined || head !== prevHead || pfn !== prevPfn + 1) inFolio++;
      prevPfn = pfn;
      prevHead = head;
    }
    out.set(b.name, runs);
    folioRuns.set(b.name, inFolio);
  }
  return out;
}

/** Entries of the naturally aligned power-of-two decomposition of each run (Gunthorpe's page list). */
function pageListEntries(runs: Array<[number, number]>): number {
  let n = 0;
  for (const [first, pages] of runs) {
    let s = first;
    const e = first + pages;
    while (s < e) {
      let order = 0;
      while (s % 2 ** (order + 1) === 0 && s + 2 ** (order + 1) <= e) order++;
      s += 2 ** order;
      n++;
    }
  }
  return n;
}

/** Scatterlist entries sg_alloc_table_from_pages makes: a run splits every maxSegment bytes. */
function sgEntries(runs: Array<[number, number]>, pageSize: number, maxSegment: number): number {
  const perSeg = Math.floor(maxSegment / pageSize);
  return runs.reduce((s, [, pages]) => s + Math.ceil(pages / perSeg), 0);
}

/**
 * 32 B per scatterlist slot, + 16 B sg_table. A chunk is a page of entries (SG_MAX_SINGLE_ALLOC =
 * PAGE_SIZE / 32: 128 with 4 KiB pages), all usable but one chain link, except the last chunk.
 */
function sgBytes(nents: number, pageSize = 4096): number {
  const max = pageSize / 32;
  let slots = 0;
  let left = nents;
  while (left > max) { slots += max; left -= max - 1; }
  return 32 * (slots + left) + 16;
}

function row(report: CompareReport, buffer: BufferName, layout: LayoutRow['layout']): LayoutRow {
  const b = report.buffers.find((x) => x.name === buffer);
  const r = b?.rows.find((x) => x.layout === layout);
  if (!r) throw new Error(`no row ${buffer}/${layout}`);
  return r;
}

function withoutTimes(v: unknown): unknown {
  return JSON.parse(JSON.stringify(v, (k, x) => (/Ms$/.test(k) ? 0 : x)));
}

describe('runCompare on a small machine', () => {
  const report = runCompare(SMALL);
  const folioRuns = new Map<BufferName, number>();
  const runs = runsByTranslate(SMALL, report, folioRuns);
  const pageSize = 4096;

  it('reports every buffer and every layout, in order', () => {
    expect(report.buffers.map((b) => b.name)).toEqual([...BUFFER_NAMES]);
    for (const b of report.buffers) {
      expect(b.mmapErrno).toBeNull();
      expect(b.rows.map((r) => r.layout)).toEqual([...LAYOUT_NAMES]);
    }
  });

  it('phyr entries are the physically contiguous runs found by mm.translate; 16 B each', () => {
    for (const name of BUFFER_NAMES) {
      const r = row(report, name, 'phyr');
      expect(r.describes).toBe(true);
      expect(r.entries).toBe(runs.get(name)!.length);
      expect(r.kernelBytes).toBe(16 * runs.get(name)!.length);
    }
    // The aged 4 KiB buffer is scattered; the 1 GiB hugetlb page is one run.
    expect(runs.get('anon')!.length).toBeGreaterThan(1);
    expect(row(report, 'hugetlb', 'phyr').entries).toBe(1);
  });

  it('page array + scatterlist: one pointer per page plus the sg table built over it', () => {
    for (const name of ['anon', 'thp', 'hugetlb'] as const) {
      const r = row(report, name, 'pagearray+sg');
      const pages = report.buffers.find((b) => b.name === name)!.len / pageSize;
      const nents = sgEntries(runs.get(name)!, pageSize, report.maxSegment);
      expect(r.entries).toBe(pages);
      expect(r.parts).toEqual([
        { name: 'page array', entries: pages, kernelBytes: 8 * pages },
        { name: 'sg_table', entries: nents, kernelBytes: sgBytes(nents) },
      ]);
      expect(r.kernelBytes).toBe(8 * pages + sgBytes(nents));
    }
    expect(report.maxSegment).toBe(defaultMaxSegment(4096));
    expect(report.maxSegment).toBe(0xfffff000);
  });

  it('bio_vec entries are contiguous runs inside one folio (iov_iter_extract_bvecs); page list entries are aligned power-of-two chunks', () => {
    for (const name of ['anon', 'thp', 'hugetlb'] as const) {
      const bv = row(report, name, 'bvec');
      expect(bv.entries).toBe(folioRuns.get(name));
      expect(bv.kernelBytes).toBe(16 * folioRuns.get(name)!);
    }
    // 4 KiB anonymous pages are order-0 folios: one bio_vec per page even where pages are adjacent
    // (the aged buffer has such runs), and a 2 MiB THP is at most one bio_vec.
    const anonPages = SMALL.bufferLen!.anon! / pageSize;
    expect(runs.get('anon')!.length).toBeLessThan(anonPages);
    expect(row(report, 'anon', 'bvec').entries).toBe(anonPages);
    expect(row(report, 'thp', 'bvec').entries).toBeGreaterThanOrEqual(SMALL.bufferLen!.thp! / (2 * MiB));
    for (const name of BUFFER_NAMES) {
      const pl = row(report, name, 'pagelist');
      expect(pl.describes).toBe(true);
      expect(pl.entries).toBe(pageListEntries(runs.get(name)!));
      expect(pl.kernelBytes).toBe(8 * pl.entries! + 16);
    }
  });

  it('device memory: page array, scatterlist and bio_vec cannot describe it (EFAULT); phyr and page list can', () => {
    for (const layout of ['pagearray+sg', 'bvec'] as const) {
      const r = row(report, 'device', layout);
      expect(r.describes).toBe(false);
      expect(r.errno).toBe('EFAULT');
      expect(r.reason).toMatch(/pinUserPages: EFAULT/);
      expect(r.entries).toBeNull();
      expect(r.kernelBytes).toBeNull();
    }
    expect(row(report, 'device', 'phyr').describes).toBe(true);
    expect(row(report, 'device', 'pagelist').describes).toBe(true);
  });

  it('device memory: the page-based path needs ZONE_DEVICE memmap (64 B per page), the phyr list none; RAM buffers carry no memmap line', () => {
    const dev = report.buffers.find((b) => b.name === 'device')!;
    // 1 GiB region / 4 KiB x 64 B = 16 MiB; the 4 MiB buffer's own pages: 64 KiB.
    expect(dev.memmap).toMatchObject({ structPageSize: 64, pageSize: 4096, region: 'bar0', regionLen: GiB,
      regionBytes: 16 * MiB, bufferBytes: 64 * 1024, phyrBytes: 0 });
    expect(dev.memmap!.text).toMatch(/16 MiB of memmap for the 1 GiB region .*64 KiB for this buffer's pages.*phyr list needs none/);
    for (const b of report.buffers.filter((x) => x.name !== 'device')) expect(b.memmap).toBeNull();
    // The compare machine's own memmap: 8 GiB of RAM at 4 KiB pages; bar0 has no pgmap.
    expect(report.machine.memmap).toMatchObject({ ram: 128 * MiB, zoneDevice: 0 });
  });

  it('states the headline from measured figures: 262,144 page entries (2 MiB) vs 1 phyr (16 B)', () => {
    expect(report.headline).not.toBeNull();
    const h = report.headline!;
    expect([h.pageEntries, h.pageArrayBytes, h.phyrEntries, h.phyrBytes]).toEqual([GiB / pageSize, 8 * (GiB / pageSize), 1, 16]);
    expect(h.text).toBe('1 GiB hugetlb page: 262,144 page entries (2 MiB of pointers) vs 1 phyr (16 B)');
  });

  it('is JSON-serialisable as is, and deterministic except the times', () => {
    expect(JSON.parse(JSON.stringify(report))).toEqual(report);
    const again = runCompare(SMALL);
    expect(withoutTimes(again)).toEqual(withoutTimes(report));
    const other = runCompare({ ...SMALL, seed: 4, buffers: ['anon'] });
    expect(other.buffers[0].rows[2].entries).not.toBe(row(report, 'anon', 'phyr').entries);
  });
});

describe('runCompare options', () => {
  it('reports progress for every step, ending at the total', () => {
    const opts: CompareOptions = { ...SMALL, buffers: ['device', 'thp'] };
    const calls: Array<[number, number, string]> = [];
    runCompare(opts, (d, t, l) => calls.push([d, t, l]));
    const total = compareSteps(opts);
    expect(total).toBe(1 + 2 * (1 + LAYOUT_NAMES.length));
    expect(calls.map((c) => c[0])).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    expect(calls.every((c) => c[1] === total)).toBe(true);
  });

  it('a smaller max segment splits the scatterlist as sg_alloc_table_from_pages does', () => {
    const opts: CompareOptions = { ...SMALL, buffers: ['thp'], maxSegment: 64 * 1024 + 100 };
    const rep = runCompare(opts);
    const runs = runsByTranslate(opts, rep).get('thp')!;
    const sg = rep.buffers[0].rows[0].parts[1];
    expect(sg.entries).toBe(sgEntries(runs, 4096, 64 * 1024));
    expect(sg.entries).toBeGreaterThanOrEqual((16 * MiB) / (64 * 1024));
    expect(rep.maxSegmentNote).toMatch(/set by option/);
  });

  it('with 16 KiB pages the scatterlist chains a chunk every 512 entries (a page of entries)', () => {
    const ps = 16384;
    const opts: CompareOptions = { ...SMALL, pageSize: ps, buffers: ['anon'], bufferLen: { anon: 32 * MiB } };
    const rep = runCompare(opts);
    const runs = runsByTranslate(opts, rep).get('anon')!;
    const sg = rep.buffers[0].rows[0].parts[1];
    const nents = sgEntries(runs, ps, rep.maxSegment);
    expect(nents).toBeGreaterThan(512);
    expect(sg.entries).toBe(nents);
    expect(sg.kernelBytes).toBe(sgBytes(nents, ps));
    expect(sg.kernelBytes).not.toBe(sgBytes(nents, 4096));
  });

  it('a buffer that cannot be mapped is reported with its errno, not thrown', () => {
    const rep = runCompare({ ...SMALL, buffers: ['hugetlb'], hugetlbPages: 0 });
    expect(rep.buffers[0].mmapErrno).not.toBeNull();
    expect(rep.buffers[0].rows).toEqual([]);
    expect(rep.headline).toBeNull();
  });

  it('rejects bad options with the option and value named', () => {
    expect(() => runCompare({ ramGiB: 0 })).toThrow(/ramGiB.*0/);
    expect(() => runCompare({ seed: 1.5 })).toThrow(/seed.*1\.5/);
    expect(() => runCompare({ buffers: ['anon', 'nope' as BufferName] })).toThrow(/buffers.*"nope"/);
    expect(() => runCompare({ buffers: [] })).toThrow(/buffers/);
    expect(() => runCompare({ maxSegment: 100 })).toThrow(/maxSegment.*100/);
    expect(() => runCompare({ bufferLen: { thp: 3 * MiB } })).toThrow(/bufferLen\.thp.*3145728/);
    expect(() => runCompare({ deviceGiB: 1, bufferLen: { device: 2 * GiB } })).toThrow(/bufferLen\.device/);
    expect(() => runCompare({ pageSize: 8192 })).toThrow(/pageSize.*8192/);
  });
});
