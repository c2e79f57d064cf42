// The single-failure property: every mapping path of the DMA API (dma_map_phys / page, dma_map_sgtable,
// dma_map_phyrs, the two-step IOVA API) on dma-direct, forced swiotlb, strict and lazy IOMMUs and
// each dma_map_ops family, GUP (pin pages / phyrs) and every consumer's map path is run once per
// possible single allocation failure (base/faults.ts): it fails with the kernel's errno, or succeeds
// where the kernel tolerates the failure, and leaves every pool and counter as it found it (pages,
// IOVA ranges, IOMMU PTEs, pins, swiotlb slots, dma_pool blocks, dma-debug entries).
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { GiB, KiB, MiB, countFaultPoints, err, ok, setFaults, unwrap, type FaultPoint, type Result } from '../src/base/index.ts';
import { createMachine, type Machine, type MachineConfig } from '../src/machine/index.ts';
import { PhyrList, sgAllocTable, type SgTable } from '../src/phyr/index.ts';
import {
  DMA_BIDIRECTIONAL, DMA_BIT_MASK, DMA_FROM_DEVICE, DMA_TO_DEVICE, DmaIovaState, dmaIovaDestroy, dmaIovaLink, dmaIovaSync, dmaIovaTryAlloc, dmaMapPage,
  dmaMapPhyrs, dmaMapPhys, dmaMapSgtable, dmaSetMask, dmaSetMinAlignMask, dmaUnmapPage, dmaUnmapPhyrs, dmaUnmapPhys, dmaUnmapSgtable,
  dmaAllocCoherent, dmaFreeCoherent, dmaPoolAlloc, dmaSetMaskAndCoherent, dmaPoolCreate, dmaPoolFree, type DmaCoherentMem, type DmaPhyrsMapping,
  type DmaPool,
} from '../src/dma/index.ts';
import {
  HmmDmaMap, IB_ACCESS_LOCAL_WRITE, IB_ACCESS_ON_DEMAND, IB_ACCESS_REMOTE_READ, IB_ACCESS_REMOTE_WRITE, REQ_OP_READ, REQ_OP_WRITE,
  bioFromRanges, blkSubmitBio, dmaBufAttach, dmaBufMapAttachmentUnlocked, dmaBufPut, dmaBufUnmapAttachmentUnlocked, hmmDmaMapAlloc,
  hmmDmaMapFree, hmmDmaMapPfn, hmmDmaUnmapPfn, ibDeregMr, ibDeregOdpUserMr, ibRegMr, ibRegOdpUserMr, ibUmemGet, ibUmemRelease,
  iommufdIoasAlloc, iommufdIoasAttach, iommufdIoasClose, iommufdIoasDetach, iommufdIoasMap, iommufdIoasMapDmabuf, iommufdIoasUnmap,
  nvmeCompleteRq, nvmeExecute,
  nvmeProbe, nvmeQueueRq, rdmaProbe, systemHeapAlloc, UMEM_METHODS, umemMap, type UmemMapping, vfioPciDmabufExport, type DmaBuf, type DmaBufAttachment, type IbDevice,
  type IbMr, type IbOdpUserMr, type IbUmem, type Ioas, type NvmeCtrl, type NvmeIo, type Request,
  HBA_SG_MAX_ENTRY_LEN, dmaBufDetach, gpuBoCreate, gpuBoExport, gpuBoMigrate, gpuFabricConnect, gpuImportDmabufFabric,
  gpuImportDmabufGetPfn, gpuImportDmabuf, gpuImportRelease, gpuImportRevalidate, gpuMapDmaList, gpuProbe, gpuRead, gpuRemove,
  gpuUnmap, gpuWrite, hbaBuildSgl, hbaFreeSgl, hbaReadSgl, hbaSetup, type Gpu, type GpuBo, type GpuImport, type GpuMapping,
  type GpuPlacement, type HbaCtrl, type HbaSgl,
} from '../src/drivers/index.ts';
import { HMM_PFN_VALID } from '../src/mm/index.ts';
import { PciP2pdmaMapState } from '../src/pci/index.ts';
import { allocPhys, makeMachine, pattern, phyrs, type IommuMode } from './fixtures/dma-b-machines.ts';
import type { DmaList } from '../src/phyr/index.ts';
import { FOLL_LONGTERM, FOLL_WRITE, pinUserPages, pinUserPhyrs, unpinUserPages, unpinUserPhyrs, type UserMm } from '../src/mm/index.ts';
import type { Device } from '../src/pci/index.ts';
import { SMALL_PCI, ramAt } from './fixtures/dma-machines.ts';
import { FAMILY_CONFIGS, opsMachine } from './fixtures/dma-ops-machines.ts';
import { expectSameState, runSingleFailures, snapshot, type FaultPath } from './fixtures/fault-paths.ts';

const PAGE = 4096;
const RW = IB_ACCESS_LOCAL_WRITE | IB_ACCESS_REMOTE_WRITE | IB_ACCESS_REMOTE_READ;

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
    expect(snapshot(m).iovaLive).toBe(snapshot(createMachine({ ramBytes: 8 * GiB, seed: 1, pci: SMALL_PCI, iommu: { format: 'x86-64', mode: 'strict' } })).iovaLive);
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

describe('single-failure property: dma_alloc_coherent and dma_pool_alloc', () => {
  for (const setup of ['direct', 'iommu-strict', 'iommu-lazy'] as Setup[]) {
    it(`${setup}: dma_alloc_coherent / dma_free_coherent`, () => {
      fc.assert(fc.property(fc.integer({ min: 1, max: 64 * 1024 }), fc.nat(1000), (size, pick) => {
        const counts = runSingleFailures<Device, DmaCoherentMem>({
          name: `coherent ${setup} ${size}`,
          machine: machineFor(setup),
          setup: (m) => {
            const dev = m.device('nvme0');
            unwrap(dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(64)));
            return dev;
          },
          run: (_m, dev) => dmaAllocCoherent(dev, size),
          undo: (_m, dev, v) => dmaFreeCoherent(dev, size, v.cpuPhys, v.dmaAddr),
        }, pick);
        expect(counts['page-alloc']).toBe(1);
      }), { numRuns: 3, seed: 14 });
    });
  }
  it('iommu-strict: dma_pool_create, then dma_pool_alloc of blocks until the pool grows', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 40 }), fc.constantFrom(64, 256, 4096), fc.nat(1000), (blocks, size, pick) => {
      runSingleFailures<DmaPool, DmaCoherentMem[]>({
        name: `dma_pool ${blocks} x ${size}`,
        machine: machineFor('iommu-strict'),
        setup: (m) => unwrap(dmaPoolCreate('fault-test', m.device('nvme0'), size, size, 0)),
        run: (_m, pool) => {
          const got: DmaCoherentMem[] = [];
          for (let i = 0; i < blocks; i++) {
            const b = dmaPoolAlloc(pool);
            if (!b.ok) {
              for (const g of got) dmaPoolFree(pool, g.cpuPhys, g.dmaAddr);
              return b;
            }
            got.push(b.value);
          }
          return ok(got);
        },
        undo: (_m, pool, got) => { for (const g of got) dmaPoolFree(pool, g.cpuPhys, g.dmaAddr); },
      }, pick);
    }), { numRuns: 3, seed: 15 });
  });
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


// ---- consumers ----

type NvmeMode = 'direct' | 'strict' | 'lazy' | 'bounce';
function nvmeMachine(mode: NvmeMode, sgls: boolean): () => Machine {
  return () => createMachine({
    ramBytes: 2 * GiB, seed: 3, cpu: { vendor: 'intel' },
    ...(mode === 'strict' || mode === 'lazy' ? { iommu: { format: 'x86-64', levels: 4, mode } } : {}),
    swiotlb: mode === 'bounce' ? { bytes: 16 * MiB, force: true } : { bytes: 4 * MiB },
    pci: [
      { name: 'hb0', type: 'host-bridge', vendor: 0x8086, device: 0x2030 },
      { name: 'rp0', type: 'root-port', parent: 'hb0' },
      { name: 'nvme0', type: 'endpoint', parent: 'rp0', bars: [{ bytes: 16 * KiB }],
        nvme: { sgls, mdts: 0, namespaces: [{ nsid: 1, bytes: 1 * GiB, lbaBytes: 512 }] } },
    ],
  });
}

describe('single-failure property: block / NVMe (nvme_queue_rq: blk_rq_dma_map, PRP / SGL lists)', () => {
  const arbIo = fc.record({
    pieces: fc.array(fc.record({ pages: fc.integer({ min: 1, max: 40 }), off: fc.constantFrom(0, 512, 1024) }), { minLength: 1, maxLength: 5 }),
    write: fc.boolean(),
  });
  for (const mode of ['direct', 'strict', 'lazy', 'bounce'] as NvmeMode[]) {
    for (const sgls of [false, true]) {
      it(`${mode}, ${sgls ? 'SGL' : 'PRP'}`, () => {
        const seen = new Set<string>();
        fc.assert(fc.property(arbIo, fc.nat(1000), (io, pick) => {
          const counts = runSingleFailures<{ ctrl: NvmeCtrl; rq: Request }, NvmeIo>({
            name: `nvme ${mode} ${sgls ? 'sgl' : 'prp'} ${JSON.stringify(io)}`,
            machine: nvmeMachine(mode, sgls),
            setup: (m) => {
              const ctrl = unwrap(nvmeProbe(m.device('nvme0')));
              // sector-aligned pieces: only the first starts inside a page (PRP rules), every piece ends on a sector
              let at = ramAt(m, 0x1000_0000n, 256 * PAGE);
              const ranges = io.pieces.map((p, i) => {
                const off = i === 0 ? p.off : 0;
                const len = p.pages * PAGE - off;
                const r = { addr: at + BigInt(off), len };
                at += BigInt((p.pages + 1) * PAGE);
                return r;
              });
              const bio = unwrap(bioFromRanges(io.write ? REQ_OP_WRITE : REQ_OP_READ, 8n, PhyrList.from(ranges)));
              const rqs = unwrap(blkSubmitBio(ctrl.queue, bio));
              return { ctrl, rq: rqs[0] };
            },
            run: (_m, s) => nvmeQueueRq(s.ctrl, 1, s.rq),
            undo: (_m, s, v) => {
              // the command runs (real bytes through the mapping) before it completes
              expect(unwrap(nvmeExecute(s.ctrl, v)).status).toBe(0);
              nvmeCompleteRq(s.ctrl, v);
            },
            // two-step IOVA allocation failing falls back to dma_map_phys per segment
            tolerated: ['iova'],
          }, pick);
          for (const [p, n] of Object.entries(counts)) if (n > 0) seen.add(p);
        }), { numRuns: 3, seed: 20 });
        const want = mode === 'strict' || mode === 'lazy' ? ['iova', 'iommu-pt'] : mode === 'bounce' ? ['swiotlb'] : [];
        for (const p of want) expect([...seen]).toContain(p);
      });
    }
  }
});

describe('single-failure property: RDMA (ib_umem_get: pin_user_phyrs + dma_map_phyrs; reg_mr: the MTT)', () => {
  const arbMr = fc.record({ pages: fc.integer({ min: 1, max: 700 }), off: fc.nat(PAGE - 1), thp: fc.boolean(), populate: fc.boolean() });
  for (const mode of ['strict', 'lazy', 'none'] as IommuMode[]) {
    it(`${mode}: ibUmemGet + ibRegMr, ibDeregMr + ibUmemRelease`, () => {
      const seen = new Set<string>();
      fc.assert(fc.property(arbMr, fc.nat(1000), (sh, pick) => {
        const counts = runSingleFailures<{ nic: IbDevice; mm: UserMm; va: bigint; len: number }, { mr: IbMr; umem: IbUmem }>({
          name: `rdma ${mode} ${JSON.stringify(sh)}`,
          machine: () => makeMachine(mode),
          setup: (m) => {
            const nic = unwrap(rdmaProbe(m.device('nic0')));
            const mm = m.newProcess();
            const len = sh.pages * PAGE - sh.off;
            const va = unwrap(mm.mmap({ len: sh.thp ? 4 * MiB : sh.pages * PAGE, backing: sh.thp ? 'thp' : 'anon', populate: sh.populate }));
            return { nic, mm, va: va + BigInt(sh.off), len };
          },
          run: (_m, s) => {
            const u = ibUmemGet(s.nic, s.mm, s.va, s.len, RW);
            if (!u.ok) return u;
            const mr = ibRegMr(s.nic, u.value, s.va);
            if (!mr.ok) { ibUmemRelease(u.value); return mr; }
            return ok({ mr: mr.value, umem: u.value });
          },
          undo: (_m, s, v) => { unwrap(ibDeregMr(s.nic, v.mr)); ibUmemRelease(v.umem); },
          // a THP that cannot be allocated falls back to base pages; ib_umem_get pins on after a short
          // pin (a fault that failed once is retried); dma_map_phyrs maps range by range without a window
          tolerated: ['folio', 'iova'],
        }, pick);
        for (const [p, n] of Object.entries(counts)) if (n > 0) seen.add(p);
      }), { numRuns: 3, seed: 21 });
      for (const p of mode === 'none' ? ['dma-pool'] : ['iova', 'iommu-pt', 'dma-pool']) expect([...seen]).toContain(p);
    });
  }
});

describe('single-failure property: HMM (hmm_dma_map_alloc / hmm_dma_map_pfn) and ODP MR registration', () => {
  const arbHmm = fc.record({ entries: fc.integer({ min: 1, max: 40 }), map: fc.array(fc.nat(39), { minLength: 1, maxLength: 6 }) });
  for (const mode of ['strict', 'lazy', 'none'] as IommuMode[]) {
    it(`${mode}: hmmDmaMapAlloc + hmmDmaMapPfn of some entries, unmapped and freed on error`, () => {
      fc.assert(fc.property(arbHmm, fc.nat(1000), (sh, pick) => {
        const idxs = [...new Set(sh.map.map((i) => i % sh.entries))];
        runSingleFailures<{ dev: Device; pfn: number }, HmmDmaMap>({
          name: `hmm ${mode} ${JSON.stringify(sh)}`,
          machine: () => makeMachine(mode),
          setup: (m) => ({ dev: m.device('nic0'), pfn: Number(ramAt(m, 0x1000_0000n, 64 * PAGE) / BigInt(PAGE)) }),
          run: (_m, s) => {
            const map = hmmDmaMapAlloc(s.dev, sh.entries, PAGE);
            if (!map.ok) return map;
            const p2p = new PciP2pdmaMapState();
            for (const i of idxs) {
              map.value.pfnList[i] = s.pfn + i;
              map.value.flagList[i] = HMM_PFN_VALID;
              const r = hmmDmaMapPfn(s.dev, map.value, i, p2p);
              if (!r.ok) {
                for (const j of idxs) hmmDmaUnmapPfn(s.dev, map.value, j);
                hmmDmaMapFree(s.dev, map.value);
                return r;
              }
            }
            return map;
          },
          undo: (_m, s, map) => {
            for (const j of idxs) expect(hmmDmaUnmapPfn(s.dev, map, j)).toBe(true);
            hmmDmaMapFree(s.dev, map);
          },
          // no IOVA window: each entry is mapped with dma_map_phys (hmm_dma_map_alloc tolerates it)
          tolerated: ['iova'],
        }, pick);
      }), { numRuns: 3, seed: 22 });
    });
    it(`${mode}: ibRegOdpUserMr / ibDeregOdpUserMr`, () => {
      fc.assert(fc.property(fc.integer({ min: 1, max: 600 }), fc.nat(1000), (pages, pick) => {
        runSingleFailures<{ nic: IbDevice; mm: UserMm; va: bigint }, IbOdpUserMr>({
          name: `odp ${mode} ${pages}`,
          machine: () => makeMachine(mode),
          setup: (m) => {
            const nic = unwrap(rdmaProbe(m.device('nic0')));
            const mm = m.newProcess();
            return { nic, mm, va: unwrap(mm.mmap({ len: pages * PAGE, backing: 'anon' })) };
          },
          run: (_m, s) => ibRegOdpUserMr(s.nic, s.mm, s.va, pages * PAGE, RW | IB_ACCESS_ON_DEMAND),
          undo: (_m, s, v) => unwrap(ibDeregOdpUserMr(s.nic, v)),
          tolerated: ['iova'],
        }, pick);
      }), { numRuns: 2, seed: 23 });
    });
  }
});

describe('single-failure property: the umem driver (pin + map by each design)', () => {
  const arbU = fc.record({ pages: fc.integer({ min: 1, max: 300 }), off: fc.nat(PAGE - 1), thp: fc.boolean() });
  for (const mode of ['strict', 'lazy', 'none'] as IommuMode[]) {
    for (const method of UMEM_METHODS) {
      it(`${mode}: umemMap ${method} / unmap`, () => {
        fc.assert(fc.property(arbU, fc.nat(1000), (sh, pick) => {
          runSingleFailures<{ dev: Device; mm: UserMm; va: bigint; len: number }, UmemMapping>({
            name: `umem ${mode} ${method} ${JSON.stringify(sh)}`,
            machine: () => makeMachine(mode),
            setup: (m) => {
              const mm = m.newProcess();
              const va = unwrap(mm.mmap({ len: sh.thp ? 4 * MiB : (sh.pages + 1) * PAGE, backing: sh.thp ? 'thp' : 'anon' }));
              return { dev: m.device('nic0'), mm, va: va + BigInt(sh.off), len: sh.pages * PAGE - (sh.off % PAGE === 0 ? 0 : sh.off) };
            },
            run: (_m, s) => umemMap(s.dev, s.mm, s.va, s.len, method),
            undo: (_m, _s, v) => v.unmap(),
            // a short pin is pinned on; a THP falls back to base pages; no IOVA window: per-range maps
            tolerated: ['folio', 'iova'],
            errnos: method === 'sgtable' ? ['ENOMEM', 'EIO'] : undefined,
          }, pick);
        }), { numRuns: 2, seed: 27 });
      });
    }
  }
});

describe('single-failure property: dma-buf, VFIO and iommufd', () => {
  const arbLen = fc.integer({ min: 1, max: 300 }).map((p) => p * PAGE);
  for (const mode of ['strict', 'lazy', 'none'] as IommuMode[]) {
    it(`${mode}: the system heap's allocation, and a static importer's map (sg_table + dma_map_sgtable)`, () => {
      fc.assert(fc.property(arbLen, fc.nat(1000), (len, pick) => {
        runSingleFailures<null, DmaBuf>({
          name: `system heap ${mode} ${len}`,
          machine: () => makeMachine(mode),
          setup: () => null,
          run: (m) => systemHeapAlloc(m, len),
          undo: (_m, _s, buf) => dmaBufPut(buf),
          // alloc_largest_available(): an order that fails is retried at the next smaller one
          tolerated: ['page-alloc'],
        }, pick);
        runSingleFailures<{ buf: DmaBuf; att: DmaBufAttachment }, DmaList>({
          name: `system heap map ${mode} ${len}`,
          machine: () => makeMachine(mode),
          setup: (m) => {
            const buf = unwrap(systemHeapAlloc(m, len));
            return { buf, att: unwrap(dmaBufAttach(buf, m.device('nic0'))) };
          },
          run: (_m, s) => dmaBufMapAttachmentUnlocked(s.att, DIR),
          undo: (_m, s, list) => dmaBufUnmapAttachmentUnlocked(s.att, list, DIR),
          errnos: ['ENOMEM', 'EIO'],
        }, pick);
      }), { numRuns: 2, seed: 24 });
    });
    it(`${mode}: a VFIO BAR slice mapped by a dynamic P2P importer through the host bridge (dma_buf_phys_vec_to_sgt)`, () => {
      fc.assert(fc.property(arbLen, fc.nat(1000), (len, pick) => {
        runSingleFailures<{ att: DmaBufAttachment }, DmaList>({
          name: `vfio map ${mode} ${len}`,
          machine: () => makeMachine(mode),
          setup: (m) => {
            const buf = unwrap(vfioPciDmabufExport(m.device('gpu0'), { bar: 0, offset: 0, len }));
            return { att: unwrap(dmaBufAttach(buf, m.device('nic0'), { dynamic: true, peer2peer: true, moveNotify: () => {} })) };
          },
          run: (_m, s) => dmaBufMapAttachmentUnlocked(s.att, DIR),
          undo: (_m, s, list) => dmaBufUnmapAttachmentUnlocked(s.att, list, DIR),
          // dma_iova_try_alloc failing: dma_map_phys per range instead
          tolerated: ['iova'],
          // Linux 7.1.5 dma_buf_phys_vec_to_sgt(): when the first dma_iova_link() fails, err_unmap_dma
          // skips dma_iova_destroy() (i == 0) and err_free_state only kfree()s the state: the IOVA
          // window stays allocated (one slice, so a table page failing is always the first link)
          kernelLeaks: (point) => (point === 'iommu-pt' ? { iovaLive: 1 } : undefined),
        }, pick);
      }), { numRuns: 2, seed: 25 });
    });
    if (mode === 'none') continue;
    it(`${mode}: iommufd IOAS alloc, pinned user memory and a VFIO dma-buf mapped at chosen IOVAs`, () => {
      fc.assert(fc.property(arbLen, fc.boolean(), fc.nat(1000), (len, populate, pick) => {
        runSingleFailures<null, Ioas>({
          name: `ioas alloc ${mode}`,
          machine: () => makeMachine(mode),
          setup: () => null,
          run: (m) => iommufdIoasAlloc(m, m.device('nvme0')),
          undo: (_m, _s, ioas) => iommufdIoasClose(ioas),
        }, pick);
        runSingleFailures<{ ioas: Ioas; mm: UserMm; va: bigint }, bigint>({
          name: `ioas map ${mode} ${len}`,
          machine: () => makeMachine(mode),
          setup: (m) => {
            const ioas = unwrap(iommufdIoasAlloc(m, m.device('nvme0')));
            const mm = m.newProcess();
            return { ioas, mm, va: unwrap(mm.mmap({ len, backing: 'anon', populate })) };
          },
          run: (_m, s) => iommufdIoasMap(s.ioas, s.mm, s.va, len, 0x4000_0000n),
          undo: (_m, s) => { unwrap(iommufdIoasUnmap(s.ioas, 0x4000_0000n, len)); },
          domains: (_m, s) => [s.ioas.domain!],
          // pfn_reader_user_pin() reads on after a short pin: a fault that failed once is retried
          tolerated: ['folio'],
        }, pick);
        runSingleFailures<{ ioas: Ioas; buf: DmaBuf }, bigint>({
          name: `ioas map dmabuf ${mode} ${len}`,
          machine: () => makeMachine(mode),
          setup: (m) => ({
            ioas: unwrap(iommufdIoasAlloc(m, m.device('nvme0'))),
            buf: unwrap(vfioPciDmabufExport(m.device('gpu0'), { bar: 0, offset: 0, len })),
          }),
          run: (_m, s) => iommufdIoasMapDmabuf(s.ioas, s.buf, 0x1000_0000n),
          undo: (_m, s) => { unwrap(iommufdIoasUnmap(s.ioas, 0x1000_0000n, len)); },
          domains: (_m, s) => [s.ioas.domain!],
        }, pick);
        // iommufd_device_attach of an IOAS holding both kinds of area (mapped with no domain, so the
        // user memory is pinned only now, by iopt_fill_domain): a failure leaves the IOAS domain-less
        runSingleFailures<{ ioas: Ioas }, void>({
          name: `ioas attach ${mode} ${len}`,
          machine: () => makeMachine(mode),
          setup: (m) => {
            const ioas = unwrap(iommufdIoasAlloc(m, m.device('nvme0'), { attach: false }));
            const mm = m.newProcess();
            // the user area below the dma-buf: a failure filling the dma-buf must unpin it again
            unwrap(iommufdIoasMap(ioas, mm, unwrap(mm.mmap({ len, backing: 'anon', populate })), len, 0x1000_0000n));
            unwrap(iommufdIoasMapDmabuf(ioas, unwrap(vfioPciDmabufExport(m.device('gpu0'), { bar: 0, offset: 0, len })), 0x4000_0000n));
            return { ioas };
          },
          run: (_m, s) => iommufdIoasAttach(s.ioas),
          undo: (_m, s) => iommufdIoasDetach(s.ioas),
          tolerated: ['folio'],
        }, pick);
      }), { numRuns: 2, seed: 26 });
    });
  }
});

// ---- GPU and HBA ----

type ConsumerMode = 'none' | 'strict' | 'lazy' | 'bounce';
const CONSUMER_MODES: ConsumerMode[] = ['none', 'strict', 'lazy', 'bounce'];
/** The machine of dma-b-machines (gpu0's 16 MiB P2P BAR behind a switch with nvme0; nic0 and far0 elsewhere). */
function consumerMachine(mode: ConsumerMode): () => Machine {
  return () => (mode === 'bounce' ? makeMachine('none', 1, { swiotlb: { bytes: 16 * MiB, force: true } }) : makeMachine(mode));
}

/** Byte equality without vitest's element-by-element diff. */
function same(a: Uint8Array | null, b: Uint8Array): boolean {
  return a !== null && a.length === b.length && a.every((x, i) => x === b[i]);
}

/** The CPU's view of a buffer object (wherever it is now), and a CPU store into it. */
function boBytes(m: Machine, bo: GpuBo): Uint8Array {
  const r = bo.ranges();
  const out = new Uint8Array(bo.size);
  for (let i = 0, at = 0; i < r.count; at += r.lenAt(i), i++) out.set(m.mem.read(r.addrAt(i), r.lenAt(i)), at);
  return out;
}
function boStore(m: Machine, bo: GpuBo, bytes: Uint8Array): void {
  const r = bo.ranges();
  for (let i = 0, at = 0; i < r.count; at += r.lenAt(i), i++) m.mem.write(r.addrAt(i), bytes.subarray(at, at + r.lenAt(i)));
}

/** A device reads (writes) bytes through a DMA list, entry by entry. */
function devReadList(dev: Device, list: DmaList): Uint8Array {
  const out = new Uint8Array(list.totalLen);
  for (let i = 0, at = 0; i < list.count; at += list.lenAt(i), i++) out.set(unwrap(dev.dmaRead(list.addrAt(i), list.lenAt(i))), at);
  return out;
}
function devWriteList(dev: Device, list: DmaList, bytes: Uint8Array): void {
  for (let i = 0, at = 0; i < list.count; at += list.lenAt(i), i++) unwrap(dev.dmaWrite(list.addrAt(i), bytes.subarray(at, at + list.lenAt(i))));
}

/**
 * The GPU reads what the CPU stored (now, when `storeNow`; else in the setup, before the map: a
 * bounce buffer is filled at map time), writes new bytes, and the import is released: the CPU
 * sees them. Stores are made only where needed: touching memory is what a failure's run costs.
 */
function gpuBytesThenRelease(m: Machine, imp: GpuImport, bo: GpuBo, seed: number, storeNow: boolean): void {
  const va = imp.va!;
  if (storeNow) boStore(m, bo, pattern(bo.size, seed));
  expect(same(unwrap(gpuRead(imp.gpu, va, bo.size)), pattern(bo.size, seed)), 'GPU reads the CPU\'s bytes').toBe(true);
  const out = pattern(bo.size, seed + 1);
  unwrap(gpuWrite(imp.gpu, va, out));
  gpuImportRelease(imp);
  expect(same(boBytes(m, bo), out), 'the CPU reads the GPU\'s bytes').toBe(true);
}

/** An exporter GPU's buffer object with the CPU's bytes in it, exported; the importer's GPU probed. */
interface GpuImportSetup { bo: GpuBo; buf: DmaBuf; from: GpuPlacement; gpu: Gpu; pd1: number }
function gpuImportSetup(m: Machine, pages: number, from: GpuPlacement, importer: string, seed: number, store: boolean): GpuImportSetup {
  const bo = unwrap(gpuBoCreate(m.device('gpu0'), pages * PAGE, from));
  if (store) boStore(m, bo, pattern(bo.size, seed));
  const buf = unwrap(gpuBoExport(bo));
  const gpu = unwrap(gpuProbe(m.device(importer)));
  return { bo, buf, from, gpu, pd1: gpu.pd1.size };
}
/** A buffer the exporter moved (amdgpu_dma_buf_map / _pin: ttm_bo_validate) stays moved: put it back. */
function boBack(s: { bo: GpuBo; from: GpuPlacement }): void {
  if (s.bo.placement !== s.from) unwrap(gpuBoMigrate(s.bo, s.from));
}
/**
 * After a failed or undone run no entry is left in the GPU's tables (a level-1 entry pointing at a
 * leaf table given back would be walked into); the level-1 tables (amdgpu's PDs) allocated on the
 * way are kept, linked from the root, as amdgpu_vm_ptes_update keeps them.
 */
function pd1Kept(m: Machine, s: { gpu: Gpu; pd1: number }): { poolBlocks: number } {
  const live = new Set<string>();
  for (const mp of s.gpu.mappings) for (const x of mp.slots) live.add(`${x.pd.cpuPhys}:${x.index}`);
  for (const t of s.gpu.pd1.values()) {
    const v = new DataView(m.mem.read(t.cpuPhys, PAGE).buffer);
    for (let i = 0; i < 512; i++) {
      if (v.getBigUint64(i * 8, true) !== 0n && !live.has(`${t.cpuPhys}:${i}`)) expect.fail(`level-1 entry ${i} of table 0x${t.cpuPhys.toString(16)} left behind`);
    }
  }
  return { poolBlocks: s.gpu.pd1.size - s.pd1 };
}

/**
 * Pages of a buffer object: under forced swiotlb an sg entry (pages that happen to be contiguous
 * merge into one) bounces whole, and swiotlb maps at most 256 KiB (IO_TLB_SEGSIZE slots) at once.
 */
const maxPages = (mode: ConsumerMode, n: number): number => (mode === 'bounce' ? 64 : n);

/**
 * The GPU exporter's map (amdgpu_dma_buf_map): a failed dma_map_sgtable of the GTT pages is -EBUSY,
 * everything else (drm_prime_pages_to_sg, amdgpu_vram_mgr_alloc_sgt, ttm_bo_validate, the GPU's
 * own tables) -ENOMEM.
 */
const GPU_ERRNOS = ['ENOMEM', 'EBUSY'];

/** What every GPU import path allows after a failure: the exporter's move undone, the GPU's level-1 tables kept, an IOVA window that falls back. */
const GPU_IMPORT_RULES = {
  settle: (_m: Machine, s: { bo: GpuBo; from: GpuPlacement }): void => boBack(s),
  kept: pd1Kept,
  tolerated: ['iova'] as const,
  errnos: GPU_ERRNOS,
};

function storePieces(m: Machine, pieces: ReadonlyArray<[bigint, number]>, seed: number): void {
  const bytes = pattern(pieces.reduce((n, p) => n + p[1], 0), seed);
  let at = 0;
  for (const [a, n] of pieces) { m.mem.write(a, bytes.subarray(at, at + n)); at += n; }
}

describe('single-failure property: GPU (probe, page tables, buffer objects, dma-buf export / import, migration)', () => {
  const wantSeen = (mode: ConsumerMode): string[] => (mode === 'strict' || mode === 'lazy' ? ['dma-pool', 'iova', 'iommu-pt'] : mode === 'bounce' ? ['dma-pool', 'swiotlb'] : ['dma-pool']);
  for (const mode of CONSUMER_MODES) {
    it(`${mode}: gpuProbe (the table pool and its zeroed root) / gpuRemove`, () => {
      const counts = runSingleFailures<Device, Gpu>({
        name: `gpu probe ${mode}`,
        machine: consumerMachine(mode),
        setup: (m) => m.device('gpu0'),
        run: (_m, dev) => gpuProbe(dev),
        undo: (_m, _dev, gpu) => gpuRemove(gpu),
      });
      expect([counts['dma-pool'], counts['page-alloc']]).toEqual([1, 1]);
    });

    it(`${mode}: gpuMapDmaList of a mapped DMA list (2 MiB, 64 KiB and 4 KiB slots); the GPU moves the bytes`, () => {
      const seen = new Set<string>();
      // more than one 2 MiB slot, so that a later slot's failure must undo the ones before (forced
      // swiotlb bounces at most 256 KiB per mapping (IO_TLB_SEGSIZE slots): one slot of pieces there)
      const bounce = mode === 'bounce';
      const arbOrders = bounce
        ? fc.array(fc.constantFrom(0, 4), { minLength: 1, maxLength: 4 })
        : fc.array(fc.constantFrom(0, 4, 9), { minLength: 1, maxLength: 4 }).map((a) => (a.includes(9) ? a : [...a, 9]));
      fc.assert(fc.property(arbOrders, fc.boolean(), fc.nat(1000), (ords, cross, pick) => {
        const counts = runSingleFailures<{ gpu: Gpu; pieces: Array<[bigint, number]>; pd1: number }, { map: DmaPhyrsMapping; mp: GpuMapping }>({
          name: `gpu map ${mode} ${JSON.stringify(ords)}${cross ? ' across 1 GiB' : ''}`,
          machine: consumerMachine(mode),
          setup: (m) => {
            const gpu = unwrap(gpuProbe(m.device('gpu0')));
            // the last 2 MiB slot below a 1 GiB boundary: a second slot needs a second level-1 table
            if (cross) gpu.nextVa = 5n * BigInt(GiB) - 2n * BigInt(MiB);
            const pieces = ords.map((o): [bigint, number] => [allocPhys(m, o), PAGE << o]);
            if (bounce) storePieces(m, pieces, 5);
            return { gpu, pieces, pd1: gpu.pd1.size };
          },
          run: (_m, s) => {
            const map = dmaMapPhyrs(s.gpu.dev, phyrs(s.pieces), DIR, 0);
            if (!map.ok) return map;
            const mp = gpuMapDmaList(s.gpu, map.value.list);
            if (!mp.ok) {
              dmaUnmapPhyrs(s.gpu.dev, map.value, DIR, 0);
              return mp;
            }
            return ok({ map: map.value, mp: mp.value });
          },
          undo: (m, s, v) => {
            const len = v.mp.len;
            if (!bounce) storePieces(m, s.pieces, 5);
            expect(same(unwrap(gpuRead(s.gpu, v.mp.va, len)), pattern(len, 5))).toBe(true);
            const out = pattern(len, 6);
            unwrap(gpuWrite(s.gpu, v.mp.va, out));
            gpuUnmap(v.mp);
            dmaUnmapPhyrs(s.gpu.dev, v.map, DIR, 0);
            let at = 0;
            for (const [a, n] of s.pieces) { expect(same(m.mem.read(a, n), out.subarray(at, at + n))).toBe(true); at += n; }
          },
          kept: pd1Kept,
          // no IOVA window: dma_map_phyrs maps range by range
          tolerated: ['iova'],
        }, pick);
        for (const [p, n] of Object.entries(counts)) if (n > 0) seen.add(p);
      }), { numRuns: 3, seed: 30 });
      for (const p of wantSeen(mode)) expect([...seen]).toContain(p);
    });

    it(`${mode}: a buffer object exported to a static importer (amdgpu_dma_buf_pin moves it to system memory, then dma_map_sgtable)`, () => {
      const arb = fc.record({ pages: fc.integer({ min: 1, max: 64 }), from: fc.constantFrom<GpuPlacement>('vram', 'system'), importer: fc.constantFrom('nvme0', 'nic0') });
      fc.assert(fc.property(arb, fc.nat(1000), (sh, pick) => {
        runSingleFailures<{ bo: GpuBo; buf: DmaBuf; from: GpuPlacement; dev: Device }, { att: DmaBufAttachment; list: DmaList }>({
          name: `gpu bo static import ${mode} ${JSON.stringify(sh)}`,
          machine: consumerMachine(mode),
          setup: (m) => {
            const bo = unwrap(gpuBoCreate(m.device('gpu0'), sh.pages * PAGE, sh.from));
            if (mode === 'bounce') boStore(m, bo, pattern(bo.size, 7));
            return { bo, buf: unwrap(gpuBoExport(bo)), from: sh.from, dev: m.device(sh.importer) };
          },
          run: (_m, s) => {
            const att = dmaBufAttach(s.buf, s.dev);
            if (!att.ok) return att;
            const list = dmaBufMapAttachmentUnlocked(att.value, DIR);
            if (!list.ok) {
              dmaBufDetach(s.buf, att.value);
              return list;
            }
            return ok({ att: att.value, list: list.value });
          },
          undo: (m, s, v) => {
            expect(s.bo.placement).toBe('system');
            if (mode !== 'bounce') boStore(m, s.bo, pattern(s.bo.size, 7));
            expect(same(devReadList(s.dev, v.list), pattern(s.bo.size, 7))).toBe(true);
            const out = pattern(s.bo.size, 8);
            devWriteList(s.dev, v.list, out);
            dmaBufUnmapAttachmentUnlocked(v.att, v.list, DIR);
            dmaBufDetach(s.buf, v.att);
            expect(same(boBytes(m, s.bo), out)).toBe(true);
            boBack(s);
          },
          settle: (_m, s) => boBack(s),
          errnos: GPU_ERRNOS,
        }, pick);
      }), { numRuns: 2, seed: 31 });
    });

    it(`${mode}: gpuImportDmabuf (a dynamic importer: dma_buf_map_attachment, the list into the GPU's tables) / gpuImportRelease`, () => {
      const seen = new Set<string>();
      // nvme0: the BAR by bus address (same switch); nic0: through the host bridge; far0: no P2P, the exporter moves the buffer to system memory
      const arb = fc.record({
        pages: fc.integer({ min: 1, max: maxPages(mode, 600) }), from: fc.constantFrom<GpuPlacement>('vram', 'system'),
        importer: fc.constantFrom('nvme0', 'nic0', 'far0'), p2p: fc.boolean(),
      });
      fc.assert(fc.property(arb, fc.nat(1000), (sh, pick) => {
        const counts = runSingleFailures<GpuImportSetup, GpuImport>({
          name: `gpu import ${mode} ${JSON.stringify(sh)}`,
          machine: consumerMachine(mode),
          setup: (m) => gpuImportSetup(m, sh.pages, sh.from, sh.importer, 9, mode === 'bounce'),
          run: (_m, s) => gpuImportDmabuf(s.gpu, s.buf, { peer2peer: sh.p2p }),
          undo: (m, s, imp) => {
            gpuBytesThenRelease(m, imp, s.bo, 9, mode !== 'bounce');
            boBack(s);
          },
          ...GPU_IMPORT_RULES,
        }, pick);
        for (const [p, n] of Object.entries(counts)) if (n > 0) seen.add(p);
      }), { numRuns: 4, seed: 32 });
      expect([...seen]).toContain('dma-pool');
    });

    it(`${mode}: a live import, the buffer migrated (page allocation, move_notify), the import revalidated`, () => {
      const seen = new Set<string>();
      const arb = fc.record({ pages: fc.integer({ min: 1, max: maxPages(mode, 160) }), from: fc.constantFrom<GpuPlacement>('vram', 'system'), importer: fc.constantFrom('nvme0', 'nic0') });
      fc.assert(fc.property(arb, fc.nat(1000), (sh, pick) => {
        const to: GpuPlacement = sh.from === 'vram' ? 'system' : 'vram';
        const counts = runSingleFailures<GpuImportSetup, GpuImport>({
          name: `gpu migrate ${mode} ${JSON.stringify(sh)}`,
          machine: consumerMachine(mode),
          // the CPU's bytes go in first: the move must carry them
          setup: (m) => gpuImportSetup(m, sh.pages, sh.from, sh.importer, 11, true),
          run: (_m, s) => {
            const imp = gpuImportDmabuf(s.gpu, s.buf);
            if (!imp.ok) return imp;
            const mv = gpuBoMigrate(s.bo, to);
            // the move told the importer: its entries and its mapping are gone until the next use
            const dropped = imp.value.mapping === null && imp.value.list === null;
            const r = mv.ok ? (dropped ? gpuImportRevalidate(imp.value) : err('EINVAL', 'move_notify did not drop the import')) : mv;
            if (!r.ok) {
              gpuImportRelease(imp.value);
              return r;
            }
            return ok(imp.value);
          },
          undo: (m, s, imp) => {
            expect(s.bo.placement).toBe(to);
            gpuBytesThenRelease(m, imp, s.bo, 11, false);
            boBack(s);
          },
          ...GPU_IMPORT_RULES,
        }, pick);
        for (const [p, n] of Object.entries(counts)) if (n > 0) seen.add(p);
      }), { numRuns: 3, seed: 33 });
      // (the IOMMU tables the import needs are there already: the GPU's table pool was mapped at probe)
      for (const p of [...wantSeen(mode).filter((x) => x !== 'iommu-pt'), 'page-alloc']) expect([...seen]).toContain(p);
    });

    it(`${mode}: the get_pfn importer and the fabric importer (no DMA API: only the GPU's tables)`, () => {
      fc.assert(fc.property(fc.integer({ min: 1, max: maxPages(mode, 600) }), fc.nat(1000), (pages, pick) => {
        // get_pfn: CPU physical addresses in the GPU's tables, right only where the DMA address is the physical one
        const pfnRight = mode === 'none' || mode === 'bounce';
        runSingleFailures<GpuImportSetup, GpuImport>({
          name: `gpu get_pfn ${mode} ${pages}`,
          machine: consumerMachine(mode),
          setup: (m) => gpuImportSetup(m, pages, 'system', 'nic0', 13, false),
          run: (_m, s) => gpuImportDmabufGetPfn(s.gpu, s.buf),
          undo: (m, s, imp) => {
            if (pfnRight) gpuBytesThenRelease(m, imp, s.bo, 13, true);
            else gpuImportRelease(imp);
          },
          kept: pd1Kept,
        }, pick);
        runSingleFailures<GpuImportSetup, GpuImport>({
          name: `gpu fabric ${mode} ${pages}`,
          machine: consumerMachine(mode),
          setup: (m) => {
            const s = gpuImportSetup(m, pages, 'vram', 'nvme0', 15, false);
            gpuFabricConnect(s.gpu, unwrap(gpuProbe(m.device('gpu0'))));
            return s;
          },
          run: (_m, s) => gpuImportDmabufFabric(s.gpu, s.buf),
          undo: (m, s, imp) => gpuBytesThenRelease(m, imp, s.bo, 15, true),
          kept: pd1Kept,
        }, pick);
      }), { numRuns: 2, seed: 34 });
    });
  }
});

function storeRanges(m: Machine, ranges: ReadonlyArray<{ addr: bigint; len: number }>, seed: number): void {
  const bytes = pattern(ranges.reduce((n, r) => n + r.len, 0), seed);
  for (let i = 0, o = 0; i < ranges.length; o += ranges[i].len, i++) m.mem.write(ranges[i].addr, bytes.subarray(o, o + ranges[i].len));
}

describe('single-failure property: HBA (scsi_dma_map: dma_map_sgtable or dma_map_phyrs, then SG pages from its dma_pool)', () => {
  it('hbaSetup allocates nothing: the SG page pool grows on first use', () => {
    const m = makeMachine('strict');
    const counts = countFaultPoints(m, () => { unwrap(hbaSetup(m.device('nic0'))).destroy(); });
    expect(Object.values(counts).every((n) => n === 0)).toBe(true);
  });
  const arbCmd = fc.record({
    pieces: fc.array(fc.record({ len: fc.integer({ min: 1, max: 200 * KiB }), off: fc.nat(PAGE - 1) }), { minLength: 1, maxLength: 5 }),
    // one-sector pieces, a page apart: 250 or more entries chain a second SG page
    sectors: fc.oneof(fc.constant(0), fc.integer({ min: 250, max: 300 })),
    write: fc.boolean(),
    method: fc.constantFrom('sgtable', 'phyrs'),
  });
  /** The segments cut at the adapter's 64 KiB per entry, as its walk returns them. */
  const cut = (segs: ReadonlyArray<{ addr: bigint; len: number }>): Array<{ addr: bigint; len: number }> => segs.flatMap((s) => {
    const out = [];
    for (let o = 0; o < s.len; o += HBA_SG_MAX_ENTRY_LEN) out.push({ addr: s.addr + BigInt(o), len: Math.min(HBA_SG_MAX_ENTRY_LEN, s.len - o) });
    return out;
  });
  for (const mode of CONSUMER_MODES) {
    it(`${mode}: map the command's buffer, build its SG list; the adapter walks it and moves the data`, () => {
      const seen = new Set<string>();
      fc.assert(fc.property(arbCmd, fc.nat(1000), (cmd, pick) => {
        const dir = cmd.write ? DMA_TO_DEVICE : DMA_FROM_DEVICE;
        interface H { ctrl: HbaCtrl; ranges: Array<{ addr: bigint; len: number }> }
        interface V { sgl: HbaSgl; segs: Array<{ addr: bigint; len: number }>; unmap: () => void }
        const counts = runSingleFailures<H, V>({
          name: `hba ${mode} ${JSON.stringify({ ...cmd, pieces: cmd.pieces.length })}`,
          machine: consumerMachine(mode),
          setup: (m) => {
            const ctrl = unwrap(hbaSetup(m.device('nic0')));
            const span = cmd.pieces.reduce((n, p) => n + p.off + p.len + PAGE, 0) + (cmd.sectors + 2) * PAGE;
            let at = ramAt(m, 0x1000_0000n, span);
            const ranges: Array<{ addr: bigint; len: number }> = [];
            for (const p of cmd.pieces) {
              ranges.push({ addr: at + BigInt(p.off), len: p.len });
              at = (at + BigInt(p.off + p.len + 2 * PAGE - 1)) & ~BigInt(PAGE - 1);
            }
            for (let i = 0; i < cmd.sectors; i++) ranges.push({ addr: at + BigInt(i * PAGE), len: 512 });
            // a WRITE's data bounces at map time: the CPU's bytes go in first there
            if (cmd.write && mode === 'bounce') storeRanges(m, ranges, 17);
            return { ctrl, ranges };
          },
          run: (m, s) => {
            const dev = s.ctrl.dev;
            let segs: Array<{ addr: bigint; len: number }>;
            let unmap: () => void;
            if (cmd.method === 'sgtable') {
              const t = sgtOf(m, s.ranges);
              if (!t.ok) return t;
              // scsi_dma_map(): dma_map_sg() mapped nothing is -ENOMEM, whatever the DMA layer's reason
              const r = dmaMapSgtable(dev, t.value, dir);
              if (!r.ok) return err('ENOMEM', `scsi_dma_map: ${r.errno}`);
              segs = Array.from({ length: t.value.nents }, (_, i) => ({ addr: t.value.dmaAddressAt(i), len: t.value.dmaLengthAt(i) }));
              unmap = () => dmaUnmapSgtable(dev, t.value, dir);
            } else {
              const r = dmaMapPhyrs(dev, PhyrList.from(s.ranges), dir, 0);
              if (!r.ok) return r;
              const l = r.value.list;
              segs = Array.from({ length: l.count }, (_, i) => ({ addr: l.addrAt(i), len: l.lenAt(i) }));
              unmap = () => dmaUnmapPhyrs(dev, r.value, dir, 0);
            }
            const sgl = hbaBuildSgl(s.ctrl, segs);
            if (!sgl.ok) {
              unmap();
              return sgl;
            }
            return ok({ sgl: sgl.value, segs, unmap });
          },
          undo: (m, s, v) => {
            const dev = s.ctrl.dev;
            const walked = unwrap(hbaReadSgl(s.ctrl, v.sgl.cmdEntry));
            expect(walked).toEqual(cut(v.segs));
            const total = s.ranges.reduce((n, r) => n + r.len, 0);
            if (cmd.write) {
              if (mode !== 'bounce') storeRanges(m, s.ranges, 17);
              // WRITE: the adapter reads the data the CPU left
              const got = new Uint8Array(total);
              for (let i = 0, o = 0; i < walked.length; o += walked[i].len, i++) got.set(unwrap(dev.dmaRead(walked[i].addr, walked[i].len)), o);
              expect(same(got, pattern(total, 17))).toBe(true);
            } else {
              const out = pattern(total, 18);
              for (let i = 0, o = 0; i < walked.length; o += walked[i].len, i++) unwrap(dev.dmaWrite(walked[i].addr, out.subarray(o, o + walked[i].len)));
            }
            hbaFreeSgl(v.sgl);
            v.unmap();
            if (!cmd.write) {
              const out = pattern(total, 18);
              for (let i = 0, o = 0; i < s.ranges.length; o += s.ranges[i].len, i++) {
                expect(same(m.mem.read(s.ranges[i].addr, s.ranges[i].len), out.subarray(o, o + s.ranges[i].len))).toBe(true);
              }
            }
          },
          // dma_map_phyrs without an IOVA window maps range by range
          tolerated: cmd.method === 'phyrs' ? ['iova'] : undefined,
        }, pick);
        for (const [p, n] of Object.entries(counts)) if (n > 0) seen.add(p);
      }), { numRuns: 3, seed: 35 });
      const want = mode === 'strict' || mode === 'lazy' ? ['dma-pool', 'iova', 'iommu-pt'] : mode === 'bounce' ? ['dma-pool', 'swiotlb'] : ['dma-pool'];
      for (const p of want) expect([...seen]).toContain(p);
    });
  }
});

describe('fault injection: the undo paths it found (regressions)', () => {
  it('ib_umem_get pins on after a short pin (a fault that failed once), not EFAULT ("short again")', () => {
    const m = makeMachine('strict');
    const nic = unwrap(rdmaProbe(m.device('nic0')));
    const mm = m.newProcess();
    const va = unwrap(mm.mmap({ len: 4 * PAGE, backing: 'anon' }));
    setFaults(m, [{ point: 'folio', nth: 3 }]);
    const u = ibUmemGet(nic, mm, va, 4 * PAGE, RW);
    expect(u.ok ? u.value.nrPages : u.errno).toBe(4);
    expect(m.events.count('FAULT-INJECT')).toBe(1);
    if (u.ok) ibUmemRelease(u.value);
    expect(m.listPins()).toEqual([]);
  });

  it.each(UMEM_METHODS)('umemMap (%s) pins on after a short pin, as ib_umem_get loops, not EFAULT ("short again")', (method) => {
    const m = makeMachine('strict');
    const mm = m.newProcess();
    const va = unwrap(mm.mmap({ len: 4 * PAGE, backing: 'anon' }));
    setFaults(m, [{ point: 'folio', nth: 2 }]);
    const u = umemMap(m.device('nic0'), mm, va, 4 * PAGE, method);
    expect(u.ok ? 'ok' : u.errno).toBe('ok');
    expect(m.events.count('FAULT-INJECT')).toBe(1);
    if (u.ok) u.value.unmap();
    expect(m.listPins()).toEqual([]);
  });

  it('IOMMU_IOAS_MAP reads on after a short pin (pfn_reader_user_pin), not EFAULT', () => {
    const m = makeMachine('strict');
    const mm = m.newProcess();
    const va = unwrap(mm.mmap({ len: 4 * PAGE, backing: 'anon' }));
    const ioas = unwrap(iommufdIoasAlloc(m, m.device('nvme0')));
    setFaults(m, [{ point: 'folio', nth: 2 }]);
    expect(iommufdIoasMap(ioas, mm, va, 4 * PAGE, 0x4000_0000n)).toEqual({ ok: true, value: 0x4000_0000n });
    expect(m.listPins().length).toBe(1);
    unwrap(iommufdIoasUnmap(ioas, 0x4000_0000n, 4 * PAGE));
    expect(m.listPins()).toEqual([]);
  });

  it.each([['strict', 'iova'], ['lazy', 'iommu-pt'], ['bounce', 'swiotlb']] as Array<[ConsumerMode, FaultPoint]>)(
    '%s: amdgpu_dma_buf_map fails with EBUSY when dma_map_sgtable of the GTT pages fails (%s), not with the DMA layer\'s ENOMEM / EIO',
    (mode, point) => {
      const m = consumerMachine(mode)();
      const bo = unwrap(gpuBoCreate(m.device('gpu0'), 4 * PAGE, 'system'));
      const buf = unwrap(gpuBoExport(bo));
      const att = unwrap(dmaBufAttach(buf, m.device('nic0')));
      const before = snapshot(m);
      setFaults(m, [{ point, nth: 1 }]);
      const r = dmaBufMapAttachmentUnlocked(att, DIR);
      expect(r.ok ? 'ok' : r.errno).toBe('EBUSY');
      expect(m.events.count('FAULT-INJECT')).toBe(1);
      setFaults(m, []);
      expectSameState(before, snapshot(m), 'after the failed map');
      expect(bo.pinCount).toBe(0);
      // drm_prime_pages_to_sg failing is its own -ENOMEM, returned as is
      setFaults(m, [{ point: 'sg-table', nth: 1 }]);
      const r2 = dmaBufMapAttachmentUnlocked(att, DIR);
      expect(r2.ok ? 'ok' : r2.errno).toBe('ENOMEM');
      setFaults(m, []);
      dmaBufDetach(buf, att);
      dmaBufPut(buf);
    });

  it('dma_buf_phys_vec_to_sgt leaks its IOVA window when the first dma_iova_link fails, as Linux 7.1.5 does (err_unmap_dma skips i == 0)', () => {
    const m = makeMachine('strict');
    const buf = unwrap(vfioPciDmabufExport(m.device('gpu0'), { bar: 0, offset: 0, len: 64 * KiB }));
    const att = unwrap(dmaBufAttach(buf, m.device('nic0'), { dynamic: true, peer2peer: true, moveNotify: () => {} }));
    const before = snapshot(m);
    setFaults(m, [{ point: 'iommu-pt', nth: 1 }]);
    const r = dmaBufMapAttachmentUnlocked(att, DIR);
    expect(r.ok ? 'ok' : r.errno).toBe('ENOMEM');
    const after = snapshot(m);
    expect(after.iovaLive).toBe(before.iovaLive + 1);
    expect({ ...after, iovaLive: 0, tables: [] }).toEqual({ ...before, iovaLive: 0, tables: [] });
  });
});
