// The single-failure property: every mapping path of the DMA API (dma_map_phys / page, dma_map_sgtable,
// dma_map_phyrs, the two-step IOVA API) on dma-direct, forced swiotlb, strict and lazy IOMMUs and
// each dma_map_ops family, GUP (pin pages / phyrs) and every consumer's map path is run once per
// possible single allocation failure (base/faults.ts): it fails with the kernel's errno, or succeeds
// where the kernel tolerates the failure, and leaves every pool and counter as it found it (pages,
// IOVA ranges, IOMMU PTEs, pins, swiotlb slots, dma_pool blocks, dma-debug entries).
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { GiB, MiB, ok, setFaults, type Result } from '../src/base/index.ts';
import { createMachine, type Machine, type MachineConfig } from '../src/machine/index.ts';
import { PhyrList, sgAllocTable, type SgTable } from '../src/phyr/index.ts';
import {
  DMA_BIDIRECTIONAL, DMA_BIT_MASK, DmaIovaState, dmaIovaDestroy, dmaIovaLink, dmaIovaSync, dmaIovaTryAlloc, dmaMapPage,
  dmaMapPhyrs, dmaMapPhys, dmaMapSgtable, dmaSetMask, dmaSetMinAlignMask, dmaUnmapPage, dmaUnmapPhyrs, dmaUnmapPhys, dmaUnmapSgtable,
  type DmaPhyrsMapping,
} from '../src/dma/index.ts';
import { FOLL_LONGTERM, FOLL_WRITE, pinUserPages, pinUserPhyrs, unpinUserPages, unpinUserPhyrs, type UserMm } from '../src/mm/index.ts';
import type { Device } from '../src/pci/index.ts';
import { SMALL_PCI, ramAt } from './fixtures/dma-machines.ts';
import { FAMILY_CONFIGS, opsMachine } from './fixtures/dma-ops-machines.ts';
import { runSingleFailures, snapshot, type FaultPath } from './fixtures/fault-paths.ts';

const PAGE = 4096;

/** A buffer shape: pieces of RAM (pages long, starting `off` bytes into a page), `gap` pages apart. */
interface Shape { pieces: Array<{ pages: number; off: number; tail: number }>; gap: number; high: boolean }
const arbShape: fc.Arbitrary<Shape> = fc.record({
  pieces: fc.array(fc.record({ pages: fc.integer({ min: 1, max: 3 }), off: fc.nat(PAGE / 64 - 1).map((x) => x * 64), tail: fc.nat(PAGE - 1) }), { minLength: 1, maxLength: 4 }),
  gap: fc.integer({ min: 0, max: 2 }),
  high: fc.boolean(),
});

/** The ranges of a shape, placed in RAM above 4 GiB (high) or above 256 MiB. */
function rangesOf(m: Machine, sh: Shape): Array<{ addr: bigint; len: number }> {
  const span = sh.pieces.reduce((s, p) => s + (p.pages + 1 + sh.gap) * PAGE, 0);
  let at = ramAt(m, sh.high ? 0x1_0000_0000n : 0x1000_0000n, span);
  const out: Array<{ addr: bigint; len: number }> = [];
  for (const p of sh.pieces) {
    const len = Math.max(1, p.pages * PAGE - p.off - p.tail);
    out.push({ addr: at + BigInt(p.off), len });
    at += BigInt((p.pages + 1 + sh.gap) * PAGE);
  }
  return out;
}

type Setup = 'direct' | 'direct-32bit' | 'swiotlb-force' | 'iommu-strict' | 'iommu-lazy' | 'iommu-untrusted';
const SETUPS: Record<Setup, { config: Partial<MachineConfig>; dev: string; mask32?: boolean; minAlign?: number }> = {
  'direct': { config: {}, dev: 'nvme0' },
  'direct-32bit': { config: {}, dev: 'nvme0', mask32: true },
  'swiotlb-force': { config: { swiotlb: { bytes: 4 * MiB, force: true } }, dev: 'nvme0' },
  'iommu-strict': { config: { iommu: { format: 'x86-64', mode: 'strict' } }, dev: 'nvme0' },
  'iommu-lazy': { config: { iommu: { format: 'x86-64', mode: 'lazy' } }, dev: 'nvme0' },
  // as NVMe sets it (NVME_CTRL_PAGE_SIZE - 1): without min_align_mask an unaligned bounce cannot be linked
  'iommu-untrusted': { config: { iommu: { format: 'x86-64', mode: 'lazy' } }, dev: 'tb0', minAlign: PAGE - 1 },
};

function machineFor(setup: Setup): () => Machine {
  const c = SETUPS[setup];
  return () => {
    const m = createMachine({ ramBytes: 8 * GiB, seed: 1, pci: SMALL_PCI, swiotlb: { bytes: 4 * MiB }, ...c.config });
    if (c.mask32) dmaSetMask(m.device(c.dev), DMA_BIT_MASK(32));
    if (c.minAlign !== undefined) dmaSetMinAlignMask(m.device(c.dev), c.minAlign);
    return m;
  };
}

interface Api { dev: Device; ranges: Array<{ addr: bigint; len: number }> }
const DIR = DMA_BIDIRECTIONAL;

/** dma_map_phys of every range in turn, unmapping those done when one fails (a driver's loop). */
function mapEachPhys(dev: Device, ranges: ReadonlyArray<{ addr: bigint; len: number }>): Result<bigint[]> {
  const done: bigint[] = [];
  for (const r of ranges) {
    const a = dmaMapPhys(dev, r.addr, r.len, DIR, 0);
    if (!a.ok) {
      done.forEach((d, i) => dmaUnmapPhys(dev, d, ranges[i].len, DIR, 0));
      return a;
    }
    done.push(a.value);
  }
  return ok(done);
}

function sgtOf(m: Machine, ranges: ReadonlyArray<{ addr: bigint; len: number }>): Result<SgTable> {
  const t = sgAllocTable(ranges.length, { faults: m });
  if (!t.ok) return t;
  ranges.forEach((r, i) => t.value.setPage(i, r.addr / BigInt(PAGE), r.len, Number(r.addr % BigInt(PAGE))));
  return t;
}

/** The two-step API as a driver uses it: one window linked range by range, or dma_map_phys per range. */
type TwoStep = { state: DmaIovaState; total: number } | { phys: bigint[] };
function twoStepMap(dev: Device, ranges: ReadonlyArray<{ addr: bigint; len: number }>): Result<TwoStep> {
  const total = ranges.reduce((s, r) => s + r.len, 0);
  const state = new DmaIovaState();
  if (!dmaIovaTryAlloc(dev, state, ranges[0].addr, total)) {
    const r = mapEachPhys(dev, ranges);
    return r.ok ? ok({ phys: r.value }) : r;
  }
  let mapped = 0;
  for (const r of ranges) {
    const l = dmaIovaLink(dev, state, r.addr, mapped, r.len, DIR, 0);
    if (!l.ok) {
      dmaIovaDestroy(dev, state, mapped, DIR, 0);
      return l;
    }
    mapped += r.len;
  }
  const s = dmaIovaSync(dev, state, 0, mapped);
  if (!s.ok) {
    dmaIovaDestroy(dev, state, mapped, DIR, 0);
    return s;
  }
  return ok({ state, total });
}
function twoStepUnmap(dev: Device, ranges: ReadonlyArray<{ addr: bigint; len: number }>, v: TwoStep): void {
  if ('state' in v) dmaIovaDestroy(dev, v.state, v.total, DIR, 0);
  else v.phys.forEach((a, i) => dmaUnmapPhys(dev, a, ranges[i].len, DIR, 0));
}

type Method = 'map_phys' | 'map_page' | 'map_sgtable' | 'map_phyrs' | 'two-step';
const METHODS: Method[] = ['map_phys', 'map_page', 'map_sgtable', 'map_phyrs', 'two-step'];

function apiPath(name: string, machine: () => Machine, devName: string, method: Method, sh: Shape,
  extra: { errnos?: string[]; tolerated?: FaultPath<Api, unknown>['tolerated'] } = {}): FaultPath<Api, unknown> {
  const base = {
    name: `${name} ${method}`,
    machine,
    setup: (m: Machine): Api => ({ dev: m.device(devName), ranges: rangesOf(m, sh) }),
    errnos: extra.errnos ?? (method === 'map_sgtable' ? ['ENOMEM', 'EIO'] : undefined),
    tolerated: extra.tolerated,
  };
  switch (method) {
    case 'map_phys':
      return { ...base, run: (_m, s) => mapEachPhys(s.dev, s.ranges), undo: (_m, s, v) => (v as bigint[]).forEach((a, i) => dmaUnmapPhys(s.dev, a, s.ranges[i].len, DIR, 0)) };
    case 'map_page':
      return {
        ...base,
        run: (_m, s) => {
          const r = s.ranges[0];
          return dmaMapPage(s.dev, r.addr / BigInt(PAGE), Number(r.addr % BigInt(PAGE)), r.len, DIR);
        },
        undo: (_m, s, v) => dmaUnmapPage(s.dev, v as bigint, s.ranges[0].len, DIR),
      };
    case 'map_sgtable':
      return {
        ...base,
        run: (m, s) => {
          const t = sgtOf(m, s.ranges);
          if (!t.ok) return t;
          const r = dmaMapSgtable(s.dev, t.value, DIR);
          return r.ok ? ok(t.value) : r;
        },
        undo: (_m, s, v) => dmaUnmapSgtable(s.dev, v as SgTable, DIR),
      };
    case 'map_phyrs':
      return { ...base, run: (_m, s) => dmaMapPhyrs(s.dev, PhyrList.from(s.ranges), DIR, 0), undo: (_m, s, v) => dmaUnmapPhyrs(s.dev, v as DmaPhyrsMapping, DIR, 0) };
    case 'two-step':
      // dma_iova_link: only the first range may start, and only the last end, inside a granule
      return { ...base,
        setup: (m: Machine): Api => ({ dev: m.device(devName), ranges: rangesOf(m, {
          ...sh, pieces: sh.pieces.map((p, i, a) => ({ ...p, off: i === 0 ? p.off : 0, tail: i === a.length - 1 ? p.tail : 0 })),
        }) }), run: (_m, s) => twoStepMap(s.dev, s.ranges), undo: (_m, s, v) => twoStepUnmap(s.dev, s.ranges, v as TwoStep) };
  }
}

describe('fault injection: the machine option and the injector', () => {
  it('fails exactly the nth call of a point, with the natural errno, and logs FAULT-INJECT naming point and call', () => {
    const m = createMachine({ ramBytes: GiB, seed: 1, faults: [{ point: 'page-alloc', nth: 2 }] });
    expect(m.allocKernelPages(0).ok).toBe(true);
    const r = m.allocKernelPages(0);
    expect(r.ok ? 'ok' : r.errno).toBe('ENOMEM');
    expect(m.allocKernelPages(0).ok).toBe(true);
    const ev = m.events.list('FAULT-INJECT');
    expect(ev.map((e) => [e.source, e.data])).toEqual([['page-alloc', { point: 'page-alloc', call: 2 }]]);
    expect(ev[0].message).toContain('page-alloc call 2');
  });

  it('probability mode is deterministic from the seed, and differs between seeds', () => {
    const fails = (seed: number): number[] => {
      const m = createMachine({ ramBytes: GiB, seed: 1, faults: [{ point: 'page-alloc', probability: 0.3, seed }] });
      const out: number[] = [];
      for (let i = 1; i <= 64; i++) {
        const r = m.allocKernelPages(0);
        if (!r.ok) out.push(i); else m.freeKernelPages(r.value, 0);
      }
      return out;
    };
    expect(fails(7)).toEqual(fails(7));
    expect(fails(7)).not.toEqual(fails(8));
    expect(fails(7).length).toBeGreaterThan(5);
    expect(fails(7).length).toBeLessThan(40);
  });

  it('rejects bad specs naming the field', () => {
    expect(() => createMachine({ ramBytes: GiB, faults: [{ point: 'nope', nth: 1 }] as never })).toThrow(/config\.faults\[0\]\.point must be one of/);
    expect(() => createMachine({ ramBytes: GiB, faults: [{ point: 'iova', nth: 0 }] })).toThrow(/config\.faults\[0\]\.nth must be an integer >= 1/);
    expect(() => createMachine({ ramBytes: GiB, faults: [{ point: 'iova', probability: 2, seed: 1 }] })).toThrow(/probability must be a number in \[0, 1\]/);
    expect(() => createMachine({ ramBytes: GiB, faults: [{ point: 'iova', nth: 1, seed: 1 }] as never })).toThrow(/config\.faults\[0\]\.seed is not an option/);
    expect(() => createMachine({ ramBytes: GiB, faults: {} as never })).toThrow(/config\.faults must be an array/);
  });

  it('boot allocations are never failed: calls are counted from the end of boot', () => {
    const m = createMachine({ ramBytes: 8 * GiB, seed: 1, pci: SMALL_PCI, iommu: { format: 'x86-64', mode: 'strict' }, faults: [{ point: 'iommu-pt', nth: 1 }] });
    expect(m.events.count('FAULT-INJECT')).toBe(0);
    // the first table page after boot fails: a fresh IOVA in an empty region of the table needs some
    const dev = m.device('nvme0');
    const r = dmaMapPhys(dev, 0x2000_0000n, PAGE, DIR, 0);
    expect(r.ok ? 'ok' : r.errno).toBe('ENOMEM');
    expect(m.events.count('FAULT-INJECT')).toBe(1);
    expect(snapshot(m).iovaLive).toEqual(snapshot(createMachine({ ramBytes: 8 * GiB, seed: 1, pci: SMALL_PCI, iommu: { format: 'x86-64', mode: 'strict' } })).iovaLive);
  });

  it('setFaults([]) disarms; countFaultPoints counts without failing', () => {
    const m = createMachine({ ramBytes: GiB, seed: 1, faults: [{ point: 'page-alloc', nth: 1 }] });
    setFaults(m, []);
    expect(m.allocKernelPages(0).ok).toBe(true);
    setFaults(m, [{ point: 'page-alloc', nth: 1 }]);
    expect(m.allocKernelPages(0).ok).toBe(false);
  });
});

describe('single-failure property: the DMA API mapping methods', () => {
  const tolerated: Partial<Record<Method, FaultPath<Api, unknown>['tolerated']>> = {
    // dma_iova_try_alloc failing is not an error: the driver maps each range with dma_map_phys
    'two-step': ['iova'],
  };
  for (const setup of Object.keys(SETUPS) as Setup[]) {
    for (const method of METHODS) {
      it(`${setup}: ${method}`, () => {
        const seen = new Set<string>();
        fc.assert(fc.property(arbShape, fc.nat(1000), (sh, pick) => {
          const counts = runSingleFailures(apiPath(setup, machineFor(setup), SETUPS[setup].dev, method, sh, { tolerated: tolerated[method] }), pick);
          for (const [p, n] of Object.entries(counts)) if (n > 0) seen.add(p);
        }), { numRuns: 3, seed: 10 });
        // the points this setup must have exercised
        const want = setup.startsWith('iommu') ? ['iova', 'iommu-pt'] : setup === 'direct' ? [] : ['swiotlb'];
        if (method === 'map_sgtable') want.push('sg-table');
        for (const p of want) expect([...seen], `${setup} ${method}`).toContain(p);
      });
    }
  }
});

describe('single-failure property: the dma_map_ops families', () => {
  for (const [name, fam] of Object.entries(FAMILY_CONFIGS)) {
    for (const method of ['map_phys', 'map_sgtable', 'map_phyrs'] as Method[]) {
      it(`${name}: ${method}`, () => {
        fc.assert(fc.property(arbShape, fc.nat(1000), (sh, pick) => {
          const machine = (): Machine => {
            const m = opsMachine(fam.dmaOps, { ...(fam.pageSize ? { pageSize: fam.pageSize } : {}) });
            if (fam.mask64) dmaSetMask(m.device('nic0'), DMA_BIT_MASK(64));
            return m;
          };
          runSingleFailures(apiPath(name, machine, 'nic0', method, fam.pageSize ? { ...sh, pieces: sh.pieces.slice(0, 1) } : sh, {
            // map_sg of a family: ENOMEM (GART), EIO (TCE, Xen grants, xen-swiotlb per entry)
            errnos: ['ENOMEM', 'EIO'],
            // GART: a buffer the device can reach is used untranslated when the aperture is full
            tolerated: ['ops-space'],
          }), pick);
        }), { numRuns: 2, seed: 11 });
      });
    }
  }
});

describe('single-failure property: GUP', () => {
  const gupMachine = (): Machine => createMachine({ ramBytes: 2 * GiB, seed: 1 });
  interface G { mm: UserMm; start: bigint; len: number }
  const gupSetup = (sh: { pages: number; off: number; thp: boolean }) => (m: Machine): G => {
    const mm = m.newProcess();
    const len = sh.pages * PAGE;
    const r = mm.mmap({ len: sh.thp ? 4 * MiB : len + PAGE, backing: sh.thp ? 'thp' : 'anon' });
    if (!r.ok) throw new Error(r.errno);
    return { mm, start: r.value + BigInt(sh.off * PAGE), len };
  };
  const arbGup = fc.record({ pages: fc.integer({ min: 1, max: 12 }), off: fc.nat(1), thp: fc.boolean() });
  it('pin_user_pages (FOLL_WRITE | FOLL_LONGTERM) faulting the pages in', () => {
    fc.assert(fc.property(arbGup, fc.nat(1000), (sh, pick) => {
      const counts = runSingleFailures({
        name: `pin_user_pages ${JSON.stringify(sh)}`, machine: gupMachine, setup: gupSetup(sh),
        run: (_m, s) => pinUserPages(s.mm, s.start, s.len / PAGE, FOLL_WRITE | FOLL_LONGTERM),
        undo: (_m, _s, v) => unpinUserPages(v),
        // a failed fault after the first page is a short pin (__get_user_pages returns the pages it
        // pinned); a THP that cannot be allocated falls back to base pages
        tolerated: ['folio'],
      }, pick);
      expect(counts.folio).toBeGreaterThan(0);
    }), { numRuns: 4, seed: 12 });
  });
  it('pin_user_phyrs (FOLL_WRITE | FOLL_LONGTERM) faulting the pages in', () => {
    fc.assert(fc.property(arbGup, fc.nat(1000), (sh, pick) => {
      const counts = runSingleFailures({
        name: `pin_user_phyrs ${JSON.stringify(sh)}`, machine: gupMachine, setup: gupSetup(sh),
        run: (_m, s) => pinUserPhyrs(s.mm, s.start, s.len, FOLL_WRITE | FOLL_LONGTERM),
        undo: (_m, _s, v) => unpinUserPhyrs(v),
        tolerated: ['folio'],
      }, pick);
      expect(counts.folio).toBeGreaterThan(0);
    }), { numRuns: 4, seed: 13 });
  });
});

