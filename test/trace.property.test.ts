// The address trace against the model's own answers, checked independently: random buffers (anon,
// THP, hugetlb, a P2P BAR) mapped by each umem design for a device on machines with each IOMMU
// page-table format, dma-direct, forced swiotlb bouncing and P2P. For every traced byte the trace's
// physical address equals iommuIovaToPhys (or the direct translation), each IOMMU entry's bytes
// equal the table page's bytes read straight from machine memory, a device read at the traced DMA
// address returns the bytes the CPU sees at the traced VA (after a sync for the device where the
// trace says the byte is bounced), and taking the trace moves no counter and fills no IOTLB entry.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DMA_BIDIRECTIONAL, DMA_BIT_MASK, IO_TLB_SIZE, dmaSetMaskAndCoherent, dmaSyncSingleForDevice } from '../src/dma/index.ts';
import { iommuGetDomainForDev, iommuIovaToPhys } from '../src/iommu/index.ts';
import { GiB, KiB, MiB, patternBytes, unwrap } from '../src/base/index.ts';
import { umemMap, type UmemMethod } from '../src/drivers/index.ts';
import { createMachine, type Machine, type MachineConfig } from '../src/machine/index.ts';
import type { MmapBacking, UserMm } from '../src/mm/index.ts';
import type { PciNodeConfig } from '../src/pci/index.ts';
import { GART_BASE, opsMachine } from './fixtures/dma-ops-machines.ts';
import { ScenarioRunner, parseScenario } from '../src/scenario/file/index.ts';
import { hexBytes, traceBuffer, traceCpu, traceDevice, traceRange, type ByteTrace, type TraceMapping } from '../src/scenario/trace/index.ts';

const PCI: PciNodeConfig[] = [
  { name: 'hb0', type: 'host-bridge', vendor: 0x8086, device: 0x2030 },
  { name: 'rp0', type: 'root-port', parent: 'hb0' },
  { name: 'sw0', type: 'switch', parent: 'rp0', acsRedirect: false },
  { name: 'nvme0', type: 'endpoint', parent: 'sw0', bars: [{ bytes: 16 * KiB }] },
  { name: 'gpu0', type: 'endpoint', parent: 'sw0', bars: [{ bytes: 64 * MiB, p2p: true }] },
  { name: 'rp1', type: 'root-port', parent: 'hb0' },
  { name: 'nic0', type: 'endpoint', parent: 'rp1' },
];

const CONFIGS = {
  'x86-64': { iommu: { format: 'x86-64', mode: 'strict' } },
  'amd-v1': { iommu: { format: 'amd-v1', mode: 'strict' } },
  'arm-lpae': { iommu: { format: 'arm-lpae', mode: 'strict' } },
  direct: {},
  bounced: { swiotlb: { bytes: 4 * MiB, force: true } },
} as const satisfies Record<string, Partial<MachineConfig>>;
type ConfigName = keyof typeof CONFIGS;

function machine(config: ConfigName): Machine {
  return createMachine({
    ramBytes: 2 * GiB, seed: 7, hugetlb: { '2M': 2 }, pci: PCI, swiotlb: { bytes: 4 * MiB }, dmaDebug: { enabled: false },
    ...(CONFIGS[config] as Partial<MachineConfig>),
  });
}

type Backing = 'anon' | 'thp' | 'hugetlb-2M' | 'p2p';
const BACKINGS: Backing[] = ['anon', 'thp', 'hugetlb-2M', 'p2p'];
const METHODS: UmemMethod[] = ['sgtable', 'map-phys', 'two-step', 'map-phyrs'];

interface Setup {
  m: Machine;
  mm: UserMm;
  va: bigint;
  len: number;
  mapping: TraceMapping;
}

/** A buffer of `backing`, filled with a pattern, mapped for `device` by `method` from mapOff for mapLen bytes; null when the model refuses the mapping. */
function setup(config: ConfigName, backing: Backing, pages: number, device: string, method: UmemMethod, mapOffFrac: number, mapLenFrac: number): Setup | null {
  const m = machine(config);
  const dev = m.device(device);
  unwrap(dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(64)));
  const mm = m.newProcess();
  const len = backing === 'hugetlb-2M' ? 2 * MiB : pages * 4096;
  const b: MmapBacking = backing === 'p2p' ? { device: 'gpu0.bar0', offset: 4 * MiB } : backing;
  const va = unwrap(mm.mmap({ len, backing: b, populate: true }));
  unwrap(mm.writeUser(va, patternBytes(len, pages)));
  const off = Math.min(Math.floor(mapOffFrac * len), len - 1);
  const n = Math.max(1, Math.floor(mapLenFrac * (len - off)));
  const r = umemMap(dev, mm, va + BigInt(off), n, method, { p2p: backing === 'p2p', dir: DMA_BIDIRECTIONAL });
  if (!r.ok) return null; // e.g. MMIO that would need bouncing (EPERM): the model refuses, nothing to trace
  const segs = r.value.segments;
  const segments = Array.from({ length: segs.count }, (_, i) => ({ dmaAddr: segs.addrAt(i), len: segs.lenAt(i) }));
  return { m, mm, va, len, mapping: { name: 'm0', device, method, dir: 'bidirectional', offset: off, len: n, segments } };
}

/** Checks one traced byte against the model's answers; returns the route seen. */
function checkByte(s: Setup, t: ByteTrace): string {
  const { m, mm, va } = s;
  const cpuVa = va + BigInt(t.offset);
  // CPU side: the physical address is the page tables', the pfn its frame
  expect(t.cpu.va).toBe(cpuVa);
  expect(t.cpu.phys).toBe(mm.translate(cpuVa));
  expect(t.cpu.pfn).toBe(t.cpu.phys! >> 12n);
  expect(t.cpu.pte!.present).toBe(true);
  expect(t.cpu.pte!.entry & 0xffffffffff000n).toBe(t.cpu.pte!.pfn! << 12n);
  const inMap = t.offset >= s.mapping.offset && t.offset < s.mapping.offset + s.mapping.len;
  expect(t.devices.length).toBe(inMap ? 1 : 0);
  if (!inMap) return 'unmapped';
  if (t.cpu.memory!.kind === 'ram') expect(t.cpu.folio!.pincount).toBeGreaterThan(0); // the mapping pinned it
  const v = t.devices[0];
  const a = v.access;
  const dev = m.device(v.device);
  // the descriptor entry holds the byte's DMA address
  expect(a.dmaAddr >= v.descriptor.dmaAddr && a.dmaAddr < v.descriptor.dmaAddr + BigInt(v.descriptor.len)).toBe(true);
  expect(a.fault).toBeNull();
  if (a.addressKind === 'IOVA') {
    const d = iommuGetDomainForDev(dev)!;
    expect(a.iommu!.walkPhys).toBe(iommuIovaToPhys(d, a.dmaAddr));
    expect(a.iommu!.walk[0].tablePhys).toBe(BigInt(d.pt!.rootPfn) * 4096n);
    a.iommu!.walk.forEach((st, i, w) => {
      // the entry bytes are the table page's bytes, read from memory, not through the walker
      expect(st.entryBytes).toBe(hexBytes(m.mem.read(st.tablePhys + BigInt(st.index * 8), 8)));
      if (i < w.length - 1) {
        expect(st.kind).toBe('table');
        expect(w[i + 1].tablePhys).toBe(st.oa);
      } else {
        expect(st.kind).toBe('leaf');
      }
    });
  } else if (a.addressKind === 'dma-direct address') {
    expect(a.phys).toBe(a.dmaAddr); // no dma_range_map on these machines: phys_to_dma is the identity
  } else if (a.addressKind === 'bus address') {
    expect(a.phys).toBe(a.dmaAddr - a.p2p!.busOffset);
    expect(a.p2p!.device).toBe('gpu0');
  }
  // where the device lands is the CPU's byte, or a bounce slot holding it
  if (a.swiotlb !== null) {
    expect(a.swiotlb.origAddr).toBe(t.cpu.phys);
    expect(a.swiotlb.slotAddr).toBe(a.phys! - (a.phys! - a.swiotlb.poolStart) % BigInt(IO_TLB_SIZE));
  } else {
    expect(a.phys).toBe(t.cpu.phys);
  }
  expect(v.agrees).toBe(true);
  // a device read at the traced DMA address returns what the CPU sees at the traced VA
  const segEnd = v.descriptor.dmaAddr + BigInt(v.descriptor.len);
  const k = Math.min(16, Number(segEnd - a.dmaAddr), s.mapping.offset + s.mapping.len - t.offset);
  const fresh = patternBytes(k, t.offset + 99);
  unwrap(mm.writeUser(cpuVa, fresh));
  if (a.swiotlb !== null) dmaSyncSingleForDevice(dev, v.descriptor.dmaAddr, v.descriptor.len, DMA_BIDIRECTIONAL);
  expect(unwrap(dev.dmaRead(a.dmaAddr, k))).toEqual(unwrap(mm.readUser(cpuVa, k)));
  return `${a.addressKind}${a.swiotlb !== null ? '+swiotlb' : ''}`;
}

const caseArb = fc.record({
  config: fc.constantFrom<ConfigName>('x86-64', 'amd-v1', 'arm-lpae', 'direct', 'bounced'),
  backing: fc.constantFrom(...BACKINGS),
  pages: fc.integer({ min: 1, max: 40 }),
  device: fc.constantFrom('nvme0', 'nic0'),
  method: fc.constantFrom(...METHODS),
  // where the mapping starts and how much of the rest it covers, as fractions of the buffer
  mapOff: fc.double({ min: 0, max: 0.3, noNaN: true }),
  mapLen: fc.double({ min: 0.01, max: 1, noNaN: true }),
  // bytes to trace, as fractions of the mapped range (and one of the whole buffer)
  probes: fc.array(fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }), { minLength: 1, maxLength: 4 }),
  anywhere: fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }),
});

describe('the address trace agrees with the model', () => {
  it('phys = iommuIovaToPhys or the direct translation, entry bytes = the table pages, a device read = the CPU bytes; no counter moves', () => {
    const seen = new Set<string>();
    fc.assert(fc.property(caseArb, (c) => {
      const s = setup(c.config, c.backing, c.pages, c.device, c.method, c.mapOff, c.mapLen);
      if (s === null) return;
      const offsets = [...c.probes.map((p) => s.mapping.offset + Math.floor(p * s.mapping.len)), Math.floor(c.anywhere * s.len)];
      for (const offset of offsets) {
        const before = s.m.stats.snapshot();
        const dom = iommuGetDomainForDev(s.m.device(c.device));
        const tlbBefore = dom?.iotlb.size ?? 0;
        const t = traceRange({ machine: s.m, mm: s.mm, buffer: 'b', process: 'p', va: s.va, len: s.len, mappings: [s.mapping] }, offset);
        // a trace is a peek: no counter (IOTLB hits / misses, walks, DMA reads) moves, no IOTLB entry is filled
        expect(s.m.stats.diff(before)).toEqual({});
        expect(dom?.iotlb.size ?? 0).toBe(tlbBefore);
        expect(t.runs).toHaveLength(1);
        const got = `${c.config}:${checkByte(s, t.runs[0])}`;
        seen.add(got);
      }
    }), { numRuns: 120, seed: 1 });
    // every kind of route was exercised (a generator that stopped reaching one would hide it)
    for (const want of ['x86-64:IOVA', 'amd-v1:IOVA', 'arm-lpae:IOVA', 'direct:dma-direct address', 'bounced:dma-direct address+swiotlb', 'x86-64:bus address', 'direct:bus address']) {
      expect([...seen].sort()).toContain(want);
    }
  });

  it('a whole buffer is cut into runs that cover it once, and every byte of a run translates as its first byte moved by the offset', () => {
    fc.assert(fc.property(caseArb, fc.integer({ min: 0, max: 1000 }), (c, pick) => {
      const s = setup(c.config, c.backing === 'hugetlb-2M' ? 'thp' : c.backing, c.pages, c.device, c.method, c.mapOff, c.mapLen);
      if (s === null) return;
      const target = { machine: s.m, mm: s.mm, buffer: 'b', process: 'p', va: s.va, len: s.len, mappings: [s.mapping] };
      const whole = traceRange(target);
      let at = 0;
      for (const r of whole.runs) {
        expect(r.offset).toBe(at);
        expect(r.len).toBeGreaterThan(0);
        at += r.len;
      }
      expect(at).toBe(s.len);
      // a byte inside a run: the same entries, every address moved by its distance from the run's start
      const r = whole.runs[pick % whole.runs.length];
      const o = r.offset + (pick % r.len);
      const d = BigInt(o - r.offset);
      const one = traceRange(target, o).runs[0];
      expect(one.cpu.phys).toBe(r.cpu.phys! + d);
      expect(one.cpu.pte!.entry).toBe(r.cpu.pte!.entry);
      expect(one.devices.length).toBe(r.devices.length);
      one.devices.forEach((v, i) => {
        const w = r.devices[i];
        expect(v.descriptor.index).toBe(w.descriptor.index);
        expect(v.access.dmaAddr).toBe(w.access.dmaAddr + d);
        expect(v.access.phys).toBe(w.access.phys! + d);
        expect(v.access.swiotlb?.slot).toBe(w.access.swiotlb?.slot);
        expect(v.access.iommu?.walk.map((x) => x.entry)).toEqual(w.access.iommu?.walk.map((x) => x.entry));
      });
    }), { numRuns: 60, seed: 2 });
  });
});

describe('the trace and the IOTLB', () => {
  it('peeks the IOTLB: a miss before the first device access, a hit after it, and the trace itself fills nothing', () => {
    const s = setup('x86-64', 'anon', 4, 'nvme0', 'map-phyrs', 0, 1)!;
    const dev = s.m.device('nvme0');
    const dom = iommuGetDomainForDev(dev)!;
    const target = { machine: s.m, mm: s.mm, buffer: 'b', process: 'p', va: s.va, len: s.len, mappings: [s.mapping] };
    const first = traceRange(target, 100).runs[0].devices[0].access;
    expect(first.iommu!.iotlb.hit).toBe(false);
    // tracing twice is still a miss: the first trace did not fill the IOTLB
    expect(traceRange(target, 100).runs[0].devices[0].access.iommu!.iotlb.hit).toBe(false);
    unwrap(dev.dmaRead(first.dmaAddr, 1));
    const after = traceRange(target, 100).runs[0].devices[0].access;
    expect(after.iommu!.iotlb).toMatchObject({ hit: true, phys: first.phys, stale: false });
    expect(dom.iotlb.size).toBe(1);
  });

  it('shows a stale IOTLB entry after a lazy unmap: the device still lands on the old page while the tables hold a hole', () => {
    const m = createMachine({ ramBytes: 2 * GiB, seed: 7, pci: PCI, iommu: { format: 'x86-64', mode: 'lazy' }, dmaDebug: { enabled: false } });
    const dev = m.device('nvme0');
    unwrap(dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(64)));
    const mm = m.newProcess();
    const va = unwrap(mm.mmap({ len: 4096, backing: 'anon', populate: true }));
    const r = unwrap(umemMap(dev, mm, va, 4096, 'map-phys'));
    const iova = r.segments.addrAt(0);
    unwrap(dev.dmaRead(iova, 8)); // fills the IOTLB
    const phys = mm.translate(va)!;
    r.unmap(); // lazy: the IOVA waits in the flush queue, the IOTLB entry stays
    const t = traceDevice(m, 'nvme0', iova);
    expect(t.iommu!.walkPhys).toBeNull();
    expect(t.iommu!.iotlb).toMatchObject({ hit: true, phys, stale: true });
    expect(t.phys).toBe(phys);
    expect(iommuIovaToPhys(iommuGetDomainForDev(dev)!, iova)).toBe(0n);
  });
});

describe('traceCpu', () => {
  it('shows the PMD entry of a hugetlb page and the folio order 9, and nulls for an address no VMA covers', () => {
    const m = machine('direct');
    const mm = m.newProcess();
    const va = unwrap(mm.mmap({ len: 2 * MiB, backing: 'hugetlb-2M', populate: true }));
    const t = traceCpu(m, mm, va + 0x12345n);
    expect(t.pte).toMatchObject({ level: 'pmd', leafBytes: 2 * MiB, present: true, writable: true });
    expect(t.pte!.entry & 0x80n).toBe(0x80n); // PS
    expect(t.folio!.order).toBe(9);
    expect(t.phys).toBe(mm.translate(va + 0x12345n));
    const none = traceCpu(m, mm, 0x1000n);
    expect(none).toMatchObject({ vma: null, pte: null, phys: null });
  });

  it('inside a run of contiguous entries (16 and 64 KiB pages): the entry that maps the byte, and its physical address', () => {
    // at every byte of a 2 MiB hugetlb page and a 2 MiB THP folio (CONT_PTES entries on arm64), phys is
    // what the page tables translate to, and pfn is the frame of the byte
    for (const ps of [16384, 65536]) {
      const m = createMachine({ ramBytes: 2 * GiB, pageSize: ps, hugetlb: { '2M': 1 }, cpu: { vendor: 'other' } });
      const mm = m.newProcess();
      for (const backing of ['hugetlb-2M', 'thp'] as const) {
        const va = unwrap(mm.mmap({ len: 2 * MiB, backing, populate: true }));
        fc.assert(fc.property(fc.integer({ min: 0, max: 2 * MiB - 1 }), (off) => {
          const t = traceCpu(m, mm, va + BigInt(off));
          expect(t.phys).toBe(mm.translate(va + BigInt(off)));
          expect(t.pfn).toBe(t.phys! / BigInt(ps));
          expect(t.pte!.pfn).toBe(t.pfn); // one entry maps one base page
          expect(t.pte!.contig).toBe((2 * MiB) / ps);
        }), { numRuns: 50 });
      }
    }
  });

  it('a buffer trace cuts runs at each entry of a contiguous run: a 2 MiB hugetlb page at 64 KiB pages is 32 runs', () => {
    const yaml = [
      'name: cont', 'machine: { ramBytes: 2GiB, pageSize: 65536, hugetlb: { 2M: 1 }, cpu: { vendor: other } }',
      'buffers:', '  - { name: h, process: app, len: 2MiB, backing: hugetlb-2M }',
      'steps:', '  - { op: mmap, buffer: h, populate: true }',
    ].join('\n');
    const r = new ScenarioRunner(parseScenario(yaml, { source: 'cont.yaml' }));
    r.step();
    const runs = traceBuffer(r, 'h').runs;
    expect(runs.map((x) => x.len)).toEqual(new Array(32).fill(65536));
    // each run names the entry that maps it, and that entry's frame
    runs.forEach((x, k) => {
      expect(x.cpu.pte!.index).toBe(runs[0].cpu.pte!.index + k);
      expect(x.cpu.pte!.pfn).toBe(runs[0].cpu.pte!.pfn! + BigInt(k));
      expect(x.cpu.phys).toBe(runs[0].cpu.phys! + BigInt(k * 65536));
    });
  });

  it('shows the zero page for a read-faulted anonymous page, read-only and without a folio', () => {
    const m = machine('direct');
    const mm = m.newProcess();
    const va = unwrap(mm.mmap({ len: 4096, backing: 'anon' }));
    unwrap(mm.readUser(va, 1));
    const t = traceCpu(m, mm, va);
    expect(t.zeroPage).toBe(true);
    expect(t.pte).toMatchObject({ level: 'pte', writable: false, special: true }); // do_anonymous_page: pte_mkspecial(zero_pfn)
    expect(t.pte!.entry & 2n).toBe(0n);
    expect(t.folio).toBeNull();
  });

  it('shows the P2P provider and a special, uncached PTE for a mapping of a P2P BAR', () => {
    const m = machine('direct');
    const mm = m.newProcess();
    const va = unwrap(mm.mmap({ len: 4096, backing: { device: 'gpu0.bar0' }, populate: true }));
    const t = traceCpu(m, mm, va + 8n);
    expect(t.memory).toMatchObject({ region: 'gpu0.bar0', kind: 'device' });
    expect(t.p2p).toMatchObject({ device: 'gpu0', bar: 0 });
    expect(t.p2p!.busAddr).toBe(t.phys! + t.p2p!.busOffset);
  });
});

describe('traceDevice through a dma_map_ops family', () => {
  it('follows a GART aperture address to the byte the CPU sees (route dma-ops), and an address outside the mask faults', () => {
    const m = opsMachine({ kind: 'gart', busBase: GART_BASE, pages: 4096, force: true });
    const dev = m.device('nic0');
    unwrap(dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(32)));
    const mm = m.newProcess();
    const va = unwrap(mm.mmap({ len: 3 * 4096, backing: 'anon', populate: true }));
    unwrap(mm.writeUser(va, patternBytes(3 * 4096, 5)));
    const r = unwrap(umemMap(dev, mm, va + 10n, 3 * 4096 - 10, 'map-phyrs'));
    const segments = Array.from({ length: r.segments.count }, (_, i) => ({ dmaAddr: r.segments.addrAt(i), len: r.segments.lenAt(i) }));
    const t = traceRange({ machine: m, mm, buffer: 'b', process: 'p', va, len: 3 * 4096, mappings: [{ name: 'm', device: 'nic0', method: 'phyrs', dir: 'bidirectional', offset: 10, len: 3 * 4096 - 10, segments }] }, 5000);
    const v = t.runs[0].devices[0];
    expect(v.access).toMatchObject({ addressKind: 'dma-ops address', dmaOps: 'gart', phys: t.runs[0].cpu.phys });
    expect(v.access.dmaAddr >= GART_BASE).toBe(true);
    expect(v.agrees).toBe(true);
    expect(unwrap(dev.dmaRead(v.access.dmaAddr, 8))).toEqual(unwrap(mm.readUser(va + 5000n, 8)));
    expect(traceDevice(m, dev, 1n << 40n)).toMatchObject({ addressKind: 'fault', phys: null, fault: expect.stringMatching(/beyond the DMA mask/) as unknown });
  });
});

describe('the descriptor of a two-step mapping', () => {
  // drivers/iommu/dma-iommu.c: dma_iova_try_alloc() is false without a DMA domain; the caller maps
  // each range with dma_map_phys, so there is no IOVA window to name
  // the trace-iommu fixture's machine and buffer, with the IOMMU line replaced and steps of its own
  const fixture = readFileSync(join(import.meta.dirname, 'fixtures', 'scenarios', 'trace-iommu.yaml'), 'utf8');
  const text = (iommu: string): string => `${fixture.slice(0, fixture.indexOf('steps:')).replace(/^ {2}iommu: .*$/m, iommu)}steps:
  - { op: mmap, buffer: buf, populate: true }
  - { op: pin, name: p, buffer: buf, method: phyrs }
  - { op: map, name: m, device: nvme0, pin: p, method: two-step }
  - { op: map, name: u, device: nvme0, buffer: buf, method: two-step }
`;
  const kinds = (iommu: string): string[] => {
    const r = new ScenarioRunner(parseScenario(text(iommu)));
    while (r.step() !== null);
    return traceBuffer(r, 'buf', 0x1234).runs[0].devices.map((v) => `${v.mapping}: ${v.descriptor.kind} (${v.access.addressKind})`);
  };

  it('is an IOVA window behind a DMA domain and a dma address where it fell back to dma_map_phys', () => {
    expect(kinds('  iommu: { format: x86-64, mode: strict }')).toEqual(['m: IOVA window (IOVA)', 'u: IOVA window (IOVA)']);
    expect(kinds('')).toEqual(['m: dma address (dma-direct address)', 'u: dma address (dma-direct address)']);
    expect(kinds('  iommu: { format: x86-64, mode: passthrough }')).toEqual(['m: dma address (identity)', 'u: dma address (identity)']);
  });
});
