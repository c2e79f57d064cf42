// The web view's worker model in Node (no browser): every view of every step of the examples can
// be built, the views change nothing in the machine they show, and the rows the trace marks hold the
// traced addresses.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { FOLL_PCI_P2PDMA, FOLL_WRITE, HUGETLB_BYTES, hex, pinUserPhyrs, unpinUserPhyrs, type HugetlbSize } from '../../src/index.ts';
import { LAYOUT_NAMES, defaultMaxSegment, measureLayout } from '../../src/scenario/index.ts';
import { ScenarioRunner, parseScenario } from '../../src/scenario/file/index.ts';
import { traceBuffer } from '../../src/scenario/trace/index.ts';
import { ViewModel } from '../../web/src/worker/model.ts';
import { traceOf } from '../../web/src/worker/trace.ts';
import { REPO } from '../fixtures/web.ts';

// small examples: a whole view after every step stays fast
const EXAMPLES = ['lazy-stale-iotlb', 'p2p-topology', 'swiotlb-exhaustion', 'untrusted-thunderbolt', 'cpu-write-device-owned', 'dmabuf-revoke', 'arm64-64k-smmu', 'iommufd-shared-ioas', 'iommufd-ioas-copy', 'hugepage-512m-arm64'];
const text = (name: string): string => readFileSync(join(REPO, 'examples', `${name}.yaml`), 'utf8');

/** Builds every view the page can ask for at the current step; returns how many rows were read. */
function everyView(vm: ViewModel): number {
  const s = vm.snapshot();
  let rows = 0;
  for (const b of s.buffers.filter((x) => x.live)) {
    for (const l of vm.layouts(b.name)) if (l.error === null) rows += vm.rows(l.source, 0, 50).rows.length;
    rows += vm.rows(`phys:${b.name}`, 0, 50).rows.length;
    vm.setTrace(traceOf(vm, b.name, Math.min(16, b.len - 1)).points);
    vm.bytes(b.name, 0, 256);
  }
  for (const d of s.domains) {
    rows += vm.rows(`iova:${d.device}`, 0, 50).rows.length + vm.rows(`iotlb:${d.device}`, 0, 50).rows.length;
    if (d.format !== null) rows += vm.rows(`pt:${d.device}:`, 0, 512).rows.length;
  }
  const pci = s.pci.filter((n) => n.kind === 'endpoint');
  if (pci.length >= 2) vm.p2p(pci[0].name, pci[1].name);
  return rows + vm.rows('events', 0, 50).rows.length;
}

describe('the view model of the web page', () => {
  for (const name of EXAMPLES) {
    it(`${name}: every view after every step, and the run is the same as without the view (counters, events, results)`, () => {
      const vm = new ViewModel(text(name), `${name}.yaml`);
      let rows = everyView(vm);
      while (vm.step()) rows += everyView(vm);
      expect(vm.snapshot().state).toBe('done');
      expect(rows).toBeGreaterThan(0);
      const plain = new ScenarioRunner(parseScenario(text(name), { source: `${name}.yaml` }));
      while (plain.step() !== null) { /* every step */ }
      expect(vm.runner.results).toEqual(plain.results);
      expect(vm.machine.stats.snapshot()).toEqual(plain.machine.stats.snapshot());
      expect(vm.machine.events.list()).toEqual(plain.machine.events.list());
    });
  }

  it('each layout of a buffer is the model\'s: entries and kernel bytes as phyr compare measures them, the phyr list as pinUserPhyrs returns it (flags included)', () => {
    const ROW = ['pagearray+sg', 'bvec', 'phyr', 'pagelist'] as const;
    const SOURCE = { 'pagearray+sg': 'pagearray', bvec: 'bvec', phyr: 'phyr', pagelist: 'pagelist' } as const;
    let compared = 0, device = 0;
    for (const name of [...EXAMPLES, 'two-step-vs-sg']) {
      const vm = new ViewModel(text(name), `${name}.yaml`);
      do {
        for (const b of vm.snapshot().buffers.filter((x) => x.live)) {
          const view = vm.layouts(b.name);
          if (view.some((s) => s.error !== null)) continue; // pages not all present: the view takes no fault
          const mm = vm.runner.processes.get(b.process)!;
          const ps = vm.machine.pageSize;
          // phyr compare's own measurement (it pins and unpins again)
          for (const layout of ROW) {
            expect(LAYOUT_NAMES).toContain(layout);
            const lib = measureLayout(mm, BigInt(b.va), b.len, layout, { pageSize: ps, maxSegment: defaultMaxSegment(ps) });
            const shown = view.find((s) => s.source === `layout:${b.name}:${SOURCE[layout]}`)!;
            if (!lib.describes) continue; // P2PDMA pages: phyr compare pins without FOLL_PCI_P2PDMA
            expect([shown.entries, shown.kernelBytes, shown.parts], `${name} ${b.name} ${layout}`).toEqual([lib.entries, lib.kernelBytes, lib.parts]);
            compared++;
          }
          // the phyr list entry by entry, flags included (device memory too: pinned with FOLL_PCI_P2PDMA)
          const pinned = pinUserPhyrs(mm, BigInt(b.va), b.len, FOLL_WRITE | FOLL_PCI_P2PDMA);
          if (!pinned.ok) throw new Error(`${name} ${b.name}: ${pinned.errno}`);
          const l = pinned.value;
          const expected = Array.from({ length: l.count }, (_, i) => [hex(l.addrAt(i)), hex(l.lenAt(i)), hex(l.flagsAt(i))]);
          unpinUserPhyrs(l);
          if (expected.some((e) => e[2] !== '0x0')) device++;
          expect(vm.rows(`layout:${b.name}:phyr`, 0, l.count).rows.map((r) => r.cells.slice(1)), `${name} ${b.name} phyr list`).toEqual(expected);
        }
      } while (vm.step());
    }
    expect(compared).toBeGreaterThan(0);
    expect(device).toBeGreaterThan(0); // p2p-topology's vram: a buffer in a device BAR
  });

  it('the trace of a byte is the library\'s traceBuffer, and the rows it marks hold its addresses', () => {
    const vm = new ViewModel(text('p2p-topology'), 'p2p-topology.yaml');
    for (let i = 0; i < 7; i++) vm.step();
    const t = traceOf(vm, 'vram', 4100);
    const lib = traceBuffer(vm.runner, 'vram', 4100);
    const run = lib.runs[0];
    expect(t.points.find((p) => p.space === 'phys')?.addr).toBe(`0x${run.cpu.phys!.toString(16)}`);
    expect(t.points.filter((p) => p.space === 'dma').map((p) => p.addr)).toEqual(run.devices.map((d) => `0x${d.access.dmaAddr.toString(16)}`));
    vm.setTrace(t.points);
    // the page array entry of the byte's page (index 1: byte 4100 is in the second 4 KiB page), and only it
    const pa = vm.rows('layout:vram:pagearray', 0, 4);
    expect(pa.rows.map((r) => r.hit)).toEqual([false, true, false, false]);
    expect(pa.firstHit).toBe(1);
    // the IOVA range and the last-level table entry of the mapping through the host bridge
    const iova = vm.rows('iova:nic0', 0, 50);
    expect(iova.rows.filter((r) => r.hit)).toHaveLength(1);
    const leaf = [...run.devices.find((d) => d.device === 'nic0')!.access.iommu!.walk].pop()!;
    const table = vm.table('nic0', `0x${(leaf.tablePhys >> 12n).toString(16)}`);
    expect(table.entries.filter((e) => e.hit).map((e) => e.index)).toEqual([leaf.index]);
    expect(table.entries[leaf.index].raw).toBe(`0x${leaf.entry.toString(16)}`);
    // cleared: nothing marked
    vm.setTrace([]);
    expect(vm.rows('layout:vram:pagearray', 0, 4).rows.some((r) => r.hit)).toBe(false);
  });
  it('a 64 KiB-page machine with an ARM LPAE SMMU: a table page shows its 8192 entries and 64 KiB of bytes, and the trace marks the leaf', () => {
    const yaml = [
      'name: arm64k',
      'machine:',
      '  ramBytes: 1GiB',
      '  pageSize: 65536',
      '  pci:',
      '    - { name: hb0, type: host-bridge, vendor: 0x10de, device: 0x22b2 }',
      '    - { name: rp0, type: root-port, parent: hb0 }',
      '    - { name: nvme0, type: endpoint, parent: rp0 }',
      '  iommu: { format: arm-lpae, mode: strict }',
      'buffers:',
      '  - { name: buf, process: app, len: 128KiB, backing: anon }',
      'steps:',
      '  - { op: mmap, buffer: buf }',
      '  - { op: populate, buffer: buf }',
      '  - { op: map, name: m, device: nvme0, buffer: buf, method: phys, dir: bidirectional }',
    ].join('\n');
    const vm = new ViewModel(yaml, 'arm64k.yaml');
    for (let i = 0; i < 3; i++) vm.step();
    expect(everyView(vm)).toBeGreaterThan(0);
    const t = traceOf(vm, 'buf', 70000);
    vm.setTrace(t.points);
    const leaf = [...traceBuffer(vm.runner, 'buf', 70000).runs[0].devices[0].access.iommu!.walk].pop()!;
    expect(leaf.tablePhys % 65536n).toBe(0n);
    const table = vm.table('nvme0', `0x${(leaf.tablePhys / 65536n).toString(16)}`);
    expect(table.level).toBe(0);
    expect(table.entries).toHaveLength(8192);
    expect(table.hex).toHaveLength(4096);
    expect(table.hex[4095].startsWith('fff0: ')).toBe(true);
    expect(table.entries.filter((e) => e.hit).map((e) => e.index)).toEqual([leaf.index]);
    expect(table.entries[leaf.index].raw).toBe(`0x${leaf.entry.toString(16)}`);
    expect(vm.rows('pt:nvme0:', 0, 100).total).toBe(8192);
  });
  it('the snapshot lists the live IOASes: hw_pagetables with their devices, areas by mapping; none after ioas-destroy', () => {
    const vm = new ViewModel(text('iommufd-shared-ioas'), 'iommufd-shared-ioas.yaml');
    expect(vm.snapshot().ioases).toEqual([]);
    for (let i = 0; i < 6; i++) vm.step(); // mmap .. ioas-map: two devices on one hw_pagetable, one area
    expect(vm.snapshot().ioases).toEqual([{
      name: 'vm', devices: ['nvme0', 'nic0'], hwpts: [{ id: 3, auto: true, devices: ['nvme0', 'nic0'] }], iovaAlignment: 4096,
      areas: [{ iova: '0x100000', len: 65536, mapping: 'ram', pinned: true }],
    }]);
    while (vm.step()) { /* to the end: ioas-destroy */ }
    expect(vm.snapshot().ioases).toEqual([]);
  });

  it('a device attached to an IOAS has its hw_pagetable\'s domain, named by the IOAS; none on its DMA-API domain', () => {
    const vm = new ViewModel(text('iommufd-shared-ioas'), 'iommufd-shared-ioas.yaml');
    const hwpts = (): Array<[string, unknown]> => vm.snapshot().domains.map((d) => [d.device, d.hwpt]);
    expect(hwpts()).toEqual([['nvme0', null], ['nic0', null]]);
    for (let i = 0; i < 6; i++) vm.step(); // .. ioas-attach, ioas-map, ioas-attach: one automatic hw_pagetable, one domain
    const shared = { id: 3, ioas: 'vm', auto: true, devices: ['nvme0', 'nic0'] };
    expect(hwpts()).toEqual([['nvme0', shared], ['nic0', shared]]);
    const [a, b] = vm.snapshot().domains;
    expect([a.type, a.rootPfn]).toEqual([b.type, b.rootPfn]);
    for (let i = 6; i < 11; i++) vm.step(); // .. ioas-detach nic0: back to its DMA-API domain
    expect(hwpts()).toEqual([['nvme0', { ...shared, devices: ['nvme0'] }], ['nic0', null]]);
    while (vm.step()) { /* to the end: ioas-destroy */ }
    expect(hwpts()).toEqual([['nvme0', null], ['nic0', null]]);
  });

  it('the trace of a byte in an IOAS marks its IOVA and the hw_pagetable\'s entries for each device attached, and each device\'s table view hits the leaf', () => {
    const vm = new ViewModel(text('iommufd-shared-ioas'), 'iommufd-shared-ioas.yaml');
    for (let i = 0; i < 6; i++) vm.step(); // mmap .. ioas-map: two devices on one hw_pagetable
    const t = traceOf(vm, 'guest', 0x1234);
    const walk = traceBuffer(vm.runner, 'guest', 0x1234).runs[0].ioas[0].hwpts[0].iommu.walk;
    expect(t.points.filter((p) => p.space === 'iova').map((p) => [p.addr, p.layer.split(' on ')[1]])).toEqual([['0x101234', 'nvme0'], ['0x101234', 'nic0']]);
    vm.setTrace(t.points);
    for (const dev of ['nvme0', 'nic0']) {
      expect(t.points.filter((p) => p.space === 'pte' && p.layer.endsWith(` on ${dev}`)).map((p) => p.addr))
        .toEqual(walk.map((w) => `0x${(w.tablePhys / 4096n).toString(16)}:${w.index}`));
      const leaf = walk.at(-1)!;
      const table = vm.table(dev, `0x${(leaf.tablePhys / 4096n).toString(16)}`);
      expect(table.entries.filter((e) => e.hit).map((e) => e.index)).toEqual([leaf.index]);
    }
  });

  it('bytes() refuses an offset or length that is not a non-negative integer, naming it', () => {
    const vm = new ViewModel(text('lazy-stale-iotlb'), 'lazy-stale-iotlb.yaml');
    vm.step();
    expect(() => vm.bytes('buf', Number.NaN, 256)).toThrow(new RangeError('offset must be a non-negative integer, got NaN'));
    expect(() => vm.bytes('buf', 0, 1.5)).toThrow(new RangeError('len must be a non-negative integer, got 1.5'));
    expect(vm.bytes('buf', 16, 4).bytes).toHaveLength(4);
  });
  it('the hugetlb pools on the memory map: every pool page once, in use exactly while faulted in, in the RAM it came from; after reset all free', () => {
    const yaml = [
      'name: pools',
      'machine: { ramBytes: 4GiB, hugetlb: { 2M: 6, 1G: 1 } }',
      'buffers:',
      '  - { name: h, process: app, len: 4MiB, backing: hugetlb-2M }',
      'steps:',
      '  - { op: mmap, buffer: h, populate: true }',
      '  - { op: munmap, buffer: h }',
    ].join('\n');
    const vm = new ViewModel(yaml, 'pools.yaml');
    const m = vm.machine;
    const pages = (size: '2M' | '1G'): number[] => m.hugetlbPool(size).free.map((pfn) => pfn * m.pageSize).sort((a, b) => a - b);
    const pool = { '2M': pages('2M'), '1G': pages('1G') };
    /** The pool pages the runs cover, each with its state, in address order. */
    const covered = (): Array<[string, number, boolean]> => vm.snapshot().hugetlb.flatMap((r) => {
      const len = HUGETLB_BYTES[r.pool as HugetlbSize];
      const ram = m.regions.find((q) => q.name === r.region)!;
      expect(ram.kind).toBe('ram');
      expect(BigInt(r.start) >= ram.start && BigInt(r.end) <= ram.end).toBe(true);
      const out: Array<[string, number, boolean]> = [];
      for (let a = Number(BigInt(r.start)); a < Number(BigInt(r.end)); a += len) out.push([r.pool, a, r.inUse]);
      expect(out).toHaveLength(r.pages); // adjacent pages: a run has no holes
      return out;
    }).sort((a, b) => a[1] - b[1]);
    const all = (inUse: (size: string, a: number) => boolean): Array<[string, number, boolean]> =>
      (['2M', '1G'] as const).flatMap((size) => pool[size].map((a) => [size, a, inUse(size, a)] as [string, number, boolean])).sort((a, b) => a[1] - b[1]);
    // before step 0: every page free
    expect(covered()).toEqual(all(() => false));
    // the mmap faults in two 2 MiB pages: exactly those are in use (the buffer's pages)
    vm.step();
    const used = new Set(vm.snapshot().spans.filter((sp) => sp.buffer === 'h').flatMap((sp) => [Number(BigInt(sp.start)), Number(BigInt(sp.end)) - 1]));
    const inUse2M = pool['2M'].filter((a) => !m.hugetlbPool('2M').free.includes(a / m.pageSize));
    expect(inUse2M).toHaveLength(2);
    expect(covered()).toEqual(all((size, a) => size === '2M' && inUse2M.includes(a)));
    expect(used.size).toBeGreaterThan(0);
    for (const a of used) expect(inUse2M.some((p) => a >= p && a < p + 2 ** 21)).toBe(true);
    // munmap gives them back to the pool
    vm.step();
    expect(covered()).toEqual(all(() => false));
    // back to start on a fresh machine: the same pages, all free
    vm.reset();
    expect(covered()).toEqual(all(() => false));
    const labels = vm.snapshot().regions.filter((r) => r.kind === 'hugetlb').map((r) => r.label);
    expect(labels).toEqual([expect.stringMatching(/^hugetlb 2M pool: 6 pages, 6 free, 0 reserved, in 0x/), expect.stringMatching(/^hugetlb 1G pool: 1 page, 1 free, 0 reserved, in 0x/)]);
  });
  it('a scattered hugetlb pool (aged memory, 1,000 pages of 2 MiB) is drawn in at most 256 runs that still count every page', () => {
    const vm = new ViewModel('name: p\nmachine: { ramBytes: 16GiB, aged: true, hugetlb: { 2M: 1000 } }\nbuffers: []\nsteps: []\n', 'p.yaml');
    const m = vm.machine;
    const starts = m.hugetlbPool('2M').free.map((pfn) => pfn * m.pageSize).sort((a, b) => a - b);
    // the pages alone form more runs than are drawn: the merging is needed here
    const rawRuns = starts.filter((a, i) => i === 0 || starts[i - 1] + 2 ** 21 !== a).length;
    expect(rawRuns).toBeGreaterThan(256);
    const runs = vm.snapshot().hugetlb;
    expect(runs.length).toBeLessThanOrEqual(256);
    expect(runs.reduce((n, r) => n + r.pages, 0)).toBe(1000);
    let i = 0;
    for (const [k, r] of runs.entries()) {
      const lo = Number(BigInt(r.start)), hi = Number(BigInt(r.end));
      if (k > 0) expect(lo).toBeGreaterThanOrEqual(Number(BigInt(runs[k - 1].end)));
      // a run starts and ends on pool pages and holds exactly the pool pages between
      const inside = starts.filter((a) => a >= lo && a < hi);
      expect(inside.length).toBe(r.pages);
      expect([inside[0], inside[inside.length - 1] + 2 ** 21]).toEqual([lo, hi]);
      expect(starts.slice(i, i + r.pages)).toEqual(inside);
      i += r.pages;
      expect(r.label).toMatch(new RegExp(`^hugetlb 2M pool in ram\\d: ${r.pages} pages? free, `));
    }
  });
});
