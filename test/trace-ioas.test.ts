// The address trace of a byte mapped into an iommufd IOAS (ioas-map), checked against the model:
// each hw_pagetable's walk ends where iommuIovaToPhys of its domain says, each entry's bytes are the
// table page's bytes in machine memory, each device the trace says reaches the byte reads the CPU's
// byte at the IOVA, a detached device is listed as no longer reaching it, and an unmapped area
// leaves no IOAS layer (unless --unmapped asks for it). Then a property: random IOAS maps (offset,
// length, IOVA, IOMMU format, a second device on the same or its own hw_pagetable), every traced
// IOVA translates to the traced physical address and a device read there returns the buffer's byte.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { unwrap } from '../src/base/index.ts';
import { iommuIovaToPhys } from '../src/iommu/index.ts';
import { ScenarioRunner, parseScenario } from '../src/scenario/file/index.ts';
import { hexBytes, ioasMappingsOf, renderTrace, traceBuffer, type ByteTrace, type IoasViewTrace } from '../src/scenario/trace/index.ts';

const REPO = join(import.meta.dirname, '..');
const SHARED = join(REPO, 'examples', 'iommufd-shared-ioas.yaml');
const OWN = join(REPO, 'test', 'fixtures', 'scenarios', 'trace-ioas-own.yaml');
const COPY = join(REPO, 'examples', 'iommufd-ioas-copy.yaml');

/** The head of a scenario file, up to its buffers: nvme0 and nic0 each on a root port, behind an IOMMU of `format`. */
function twoDeviceMachine(name: string, format: string): string[] {
  return [
    `name: ${name}`,
    'machine:',
    '  ramBytes: 1GiB',
    '  pci:',
    '    - { name: hb0, type: host-bridge, vendor: 0x8086, device: 0x2030 }',
    '    - { name: rp0, type: root-port, parent: hb0 }',
    '    - { name: nvme0, type: endpoint, parent: rp0 }',
    '    - { name: rp1, type: root-port, parent: hb0 }',
    '    - { name: nic0, type: endpoint, parent: rp1 }',
    `  iommu: { format: ${format}, mode: strict }`,
  ];
}

/** A runner of `text` after step `step`, every step up to it done as the file expects. */
function after(text: string, step: number): ScenarioRunner {
  const r = new ScenarioRunner(parseScenario(text, { source: 'test.yaml' }));
  while (r.index <= step && r.step() !== null);
  expect(r.results.every((x) => x.ok), r.results.map((x) => x.summary).join('\n')).toBe(true);
  expect(r.index).toBe(step + 1);
  return r;
}

/**
 * Checks an IOAS view of byte t against the model: the walk of each hw_pagetable's domain (found
 * through the runner's Ioas, not the trace) and the bytes of its entries, and for each attached
 * device the trace calls reaching, a DMA read of the IOVA returning the CPU's byte (done last: a
 * read fills the IOTLB).
 */
function checkIoasView(r: ScenarioRunner, buffer: string, t: ByteTrace, v: IoasViewTrace): void {
  const m = r.machine;
  const ioas = r.ioasObjects.get(v.ioas)!;
  expect(v.ioasId).toBe(ioas.id);
  expect(v.hwpts.map((h) => h.id)).toEqual(ioas.hwpts.map((h) => h.id));
  for (const h of v.hwpts) {
    const d = ioas.hwpts.find((x) => x.id === h.id)!.domain;
    expect(h.iommu.walk[0].tablePhys).toBe(BigInt(d.pt!.rootPfn) * 4096n);
    expect(h.iommu.walkPhys).toBe(iommuIovaToPhys(d, v.iova));
    if (!h.iommu.iotlb.stale) expect(h.phys).toBe(h.iommu.walkPhys);
    h.iommu.walk.forEach((s, i, w) => {
      expect(s.entryBytes).toBe(hexBytes(m.mem.read(s.tablePhys + BigInt(s.index * 8), 8)));
      if (i < w.length - 1) expect(w[i + 1].tablePhys).toBe(s.oa);
    });
    expect(h.devices.map((x) => x.device)).toEqual(ioas.hwpts.find((x) => x.id === h.id)!.devices.map((x) => x.name));
    for (const x of h.devices) {
      expect(x.throughHwpt).toBe(true);
      expect(x.access.phys).toBe(h.phys);
      expect(x.agrees).toBe(h.phys !== null && h.phys === t.cpu.phys);
    }
  }
  const cpuByte = unwrap(r.processes.get(r.buffers.get(buffer)!.process)!.readUser(t.cpu.va, 1))[0];
  for (const h of v.hwpts) {
    for (const x of h.devices) {
      const read = m.device(x.device).dmaRead(v.iova, 1);
      if (x.agrees) expect(unwrap(read)[0], `${x.device} at 0x${v.iova.toString(16)}`).toBe(cpuByte);
      else expect(read.ok).toBe(false);
    }
  }
}

describe('the trace of an IOAS mapping', () => {
  const shared = readFileSync(SHARED, 'utf8');

  it('two devices on one hw_pagetable (after the second attach and the map): one walk, both devices reach the byte', () => {
    const r = after(shared, 5);
    const t = traceBuffer(r, 'guest', 0x1234).runs[0];
    expect(t.devices).toEqual([]);
    expect(t.ioas).toHaveLength(1);
    const v = t.ioas[0];
    expect(v).toMatchObject({ mapping: 'ram', ioas: 'vm', unmapped: false, iova: 0x101234n, area: { iova: 0x100000n, len: 0x10000, kind: 'user', pinned: true } });
    expect(v.hwpts).toHaveLength(1);
    expect(v.hwpts[0].auto).toBe(true);
    expect(v.hwpts[0].iommu.walk).toHaveLength(4);
    expect(v.hwpts[0].phys).toBe(t.cpu.phys);
    expect(v.hwpts[0].devices.map((d) => [d.device, d.agrees])).toEqual([['nvme0', true], ['nic0', true]]);
    expect(v.detached).toEqual([]);
    checkIoasView(r, 'guest', t, v);
  });

  it('a device on a hw_pagetable of its own (hwpt: own): two walks of the same IOVA, one device under each, both at the byte', () => {
    const r = after(readFileSync(OWN, 'utf8'), 6);
    const t = traceBuffer(r, 'guest', 0x1234).runs[0];
    const v = t.ioas[0];
    expect(v.hwpts.map((h) => [h.auto, h.devices.map((d) => d.device)])).toEqual([[true, ['nvme0']], [false, ['nic0']]]);
    expect(v.hwpts[0].iommu.walk[0].tablePhys).not.toBe(v.hwpts[1].iommu.walk[0].tablePhys);
    for (const h of v.hwpts) expect(h.phys).toBe(t.cpu.phys);
    checkIoasView(r, 'guest', t, v);
    // its detach destroys the own hw_pagetable: one walk left, nic0 detached and faulting
    const r2 = after(readFileSync(OWN, 'utf8'), 7);
    const v2 = traceBuffer(r2, 'guest', 0x1234).runs[0].ioas[0];
    expect(v2.hwpts.map((h) => h.devices.map((d) => d.device))).toEqual([['nvme0']]);
    expect(v2.detached.map((d) => [d.device, d.agrees])).toEqual([['nic0', false]]);
  });

  it('after the detach: the device is gone from its hw_pagetable, listed as detached, its DMA at the IOVA faults', () => {
    const r = after(shared, 10);
    const t = traceBuffer(r, 'guest', 0x1234).runs[0];
    const v = t.ioas[0];
    expect(v.hwpts.map((h) => h.devices.map((d) => d.device))).toEqual([['nvme0']]);
    expect(v.detached).toHaveLength(1);
    const nic = v.detached[0];
    expect(nic).toMatchObject({ device: 'nic0', throughHwpt: false, agrees: false });
    expect(nic.access.fault).toMatch(/no translation/);
    checkIoasView(r, 'guest', t, v);
    expect(r.machine.device('nic0').dmaRead(v.iova, 1).ok).toBe(false);
  });

  it('a device a replace moved to another IOAS is listed as detached from the first, naming where it is now; its DMA there walks the new domain', () => {
    const text = shared.replace(/steps:\n[\s\S]*$/, `steps:
  - { op: mmap, buffer: guest }
  - { op: populate, buffer: guest }
  - { op: ioas-alloc, name: vm }
  - { op: ioas-attach, ioas: vm, device: nvme0 }
  - { op: ioas-map, name: ram, ioas: vm, buffer: guest, iova: 0x100000 }
  - { op: ioas-alloc, name: vm2 }
  - { op: ioas-attach, ioas: vm2, device: nvme0 }
`);
    const r = after(text, 6);
    const v = traceBuffer(r, 'guest', 0).runs[0].ioas[0];
    expect(v.hwpts).toEqual([]);
    expect(v.detached.map((d) => [d.device, d.nowOn, d.agrees])).toEqual([['nvme0', 'vm2', false]]);
    expect(renderTrace(traceBuffer(r, 'guest', 0))).toContain('nvme0 detached from vm (an earlier step attached it; now on vm2): its DMA at the IOVA now:');
  });

  it('a range unmap that took one area of a two-area copy: the piece still held is traced live, the other only with --unmapped', () => {
    const text = shared.replace(/steps:\n[\s\S]*$/, `steps:
  - { op: mmap, buffer: guest }
  - { op: populate, buffer: guest }
  - { op: ioas-alloc, name: vm }
  - { op: ioas-attach, ioas: vm, device: nvme0 }
  - { op: ioas-map, name: a, ioas: vm, buffer: guest, len: 32KiB, iova: 0x100000 }
  - { op: ioas-map, name: b, ioas: vm, buffer: guest, offset: 32KiB, iova: 0x108000 }
  - { op: ioas-alloc, name: vm2 }
  - { op: ioas-attach, ioas: vm2, device: nic0 }
  - { op: ioas-copy, name: all, srcIoas: vm, srcIova: 0x100000, len: 64KiB, dstIoas: vm2, dstIova: 0x200000 }
  - { op: ioas-unmap, ioas: vm2, iova: 0x200000, len: 32KiB }
`);
    const r = after(text, 9);
    const second = traceBuffer(r, 'guest', 0x8100).runs[0].ioas;
    expect(second.map((v) => [v.mapping, v.unmapped, v.iova])).toEqual([['b', false, 0x108100n], ['all', false, 0x208100n]]);
    expect(second[1].hwpts[0].devices.map((d) => [d.device, d.agrees])).toEqual([['nic0', true]]);
    const first = traceBuffer(r, 'guest', 0x100).runs[0].ioas;
    expect(first.map((v) => [v.mapping, v.unmapped])).toEqual([['a', false]]);
    const old = traceBuffer(r, 'guest', 0x100, { unmapped: true }).runs[0].ioas;
    expect(old.map((v) => [v.mapping, v.unmapped, v.iova])).toEqual([['a', false, 0x100100n], ['all', true, 0x200100n]]);
  });

  it('after the unmap: no IOAS layer; --unmapped shows the old IOVA walked to an empty entry, no device reaching the byte', () => {
    const r = after(shared, 13);
    const t = traceBuffer(r, 'guest', 0x1234).runs[0];
    expect(t.ioas).toEqual([]);
    const u = traceBuffer(r, 'guest', 0x1234, { unmapped: true }).runs[0].ioas;
    expect(u).toHaveLength(1);
    expect(u[0]).toMatchObject({ mapping: 'ram', unmapped: true, area: null });
    expect(u[0].hwpts[0].iommu.walk.at(-1)!.kind).toBe('empty');
    expect(u[0].hwpts[0].devices.map((d) => d.agrees)).toEqual([false]);
    expect(u[0].detached.map((d) => d.agrees)).toEqual([false]);
  });

  it('the whole buffer in runs: one run per 4 KiB leaf, each byte of a run at its run\'s addresses plus the offset', () => {
    const r = after(shared, 5);
    const t = traceBuffer(r, 'guest');
    expect(t.runs.map((x) => x.len)).toEqual(Array(16).fill(4096));
    for (const run of t.runs) {
      const probe = run.offset + 0x777;
      const b = traceBuffer(r, 'guest', probe).runs[0].ioas[0];
      expect(b.iova).toBe(run.ioas[0].iova + 0x777n);
      expect(b.hwpts[0].phys).toBe(run.ioas[0].hwpts[0].phys! + 0x777n);
    }
  });

  it('runs are cut where the IOMMU leaf ends, not only the CPU page: a THP mapped into the IOAS by 4 KiB leaves', () => {
    const r = after(ioasScenario('x86-64', 512, 1, 2, 0x201000n, 'auto', 'thp'), 5);
    const t = traceBuffer(r, 'buf');
    expect(t.runs[0].cpu.pte!.leafBytes).toBe(2 * 1024 * 1024);
    expect(t.runs.map((x) => [x.offset, x.len, x.ioas.length])).toEqual([[0, 4096, 0], [4096, 4096, 1], [8192, 4096, 1], [12288, 2 * 1024 * 1024 - 12288, 0]]);
    for (const run of t.runs.filter((x) => x.ioas.length > 0)) {
      expect(run.ioas[0].hwpts[0].iommu.walk.at(-1)!.leafBytes).toBe(4096);
      checkIoasView(r, 'buf', run, run.ioas[0]);
    }
  });

  it('a copied mapping (ioas-copy) is traced as an ioas-map one: the byte at its IOVA in the second IOAS, walked in that IOAS\'s domain to the same page', () => {
    const copy = readFileSync(COPY, 'utf8');
    const r = after(copy, 10);
    const t = traceBuffer(r, 'guest', 0x1234).runs[0];
    expect(t.ioas.map((v) => [v.mapping, v.ioas, v.iova])).toEqual([['ram', 'vm1', 0x101234n], ['ram2', 'vm2', 0x401234n]]);
    const [orig, copied] = t.ioas;
    expect(copied.area).toMatchObject({ iova: 0x400000n, len: 0x10000, kind: 'user', pinned: true });
    expect(copied.hwpts.map((h) => h.devices.map((d) => [d.device, d.agrees]))).toEqual([[['nic0', true]]]);
    // two domains, two walks, one physical page
    expect(copied.hwpts[0].iommu.walk[0].tablePhys).not.toBe(orig.hwpts[0].iommu.walk[0].tablePhys);
    expect(copied.hwpts[0].phys).toBe(t.cpu.phys);
    for (const v of t.ioas) checkIoasView(r, 'guest', t, v);
    // after the original's unmap: the copies alone, the unmapped original only on request
    const r2 = after(copy, 18);
    const t2 = traceBuffer(r2, 'guest', 0x9234).runs[0];
    expect(t2.ioas.map((v) => [v.mapping, v.iova])).toEqual([['ram2', 0x409234n], ['upper', 0x801234n]]);
    for (const v of t2.ioas) checkIoasView(r2, 'guest', t2, v);
    const u = traceBuffer(r2, 'guest', 0x9234, { unmapped: true }).runs[0].ioas;
    expect(u.map((v) => [v.mapping, v.unmapped])).toEqual([['ram2', false], ['upper', false], ['ram', true]]);
  });

  it('a copy over mappings of two buffers is traced under each buffer, at that buffer\'s offsets and the copy\'s IOVAs of them; a copy of one buffer\'s bytes out of order, at each of its pieces', () => {
    const text = [
      ...twoDeviceMachine('trace-copy-pieces', 'x86-64'),
      'buffers:',
      '  - { name: a, process: vmm, len: 64KiB, backing: anon }',
      '  - { name: b, process: vmm, len: 16KiB, backing: anon }',
      'steps:',
      '  - { op: mmap, buffer: a }',
      '  - { op: mmap, buffer: b }',
      '  - { op: populate, buffer: a }',
      '  - { op: populate, buffer: b }',
      '  - { op: ioas-alloc, name: vm1 }',
      '  - { op: ioas-attach, ioas: vm1, device: nvme0 }',
      '  - { op: ioas-map, name: ma, ioas: vm1, buffer: a, len: 16KiB, iova: 0x100000 }',
      '  - { op: ioas-map, name: mb, ioas: vm1, buffer: b, iova: 0x104000 }',
      '  - { op: ioas-alloc, name: vm2 }',
      '  - { op: ioas-attach, ioas: vm2, device: nic0 }',
      '  - { op: ioas-copy, name: both, srcIoas: vm1, srcIova: 0x100000, len: 32KiB, dstIoas: vm2, dstIova: 0x400000 }',
      // a's upper half below its lower quarter, copied as one range
      '  - { op: ioas-map, name: hi, ioas: vm1, buffer: a, offset: 32KiB, len: 16KiB, iova: 0x200000 }',
      '  - { op: ioas-map, name: lo, ioas: vm1, buffer: a, len: 16KiB, iova: 0x204000 }',
      '  - { op: ioas-copy, name: swap, srcIoas: vm1, srcIova: 0x200000, len: 32KiB, dstIoas: vm2, dstIova: 0x800000 }',
    ].join('\n');
    const r = after(text, 13);
    expect(ioasMappingsOf(r, 'b').map((m) => [m.name, m.ioas, m.offset, m.len, m.iova])).toEqual([
      ['mb', 'vm1', 0, 16384, 0x104000n], ['both', 'vm2', 0, 16384, 0x404000n],
    ]);
    const tb = traceBuffer(r, 'b', 0x100).runs[0];
    expect(tb.ioas.map((v) => [v.mapping, v.ioas, v.iova])).toEqual([['mb', 'vm1', 0x104100n], ['both', 'vm2', 0x404100n]]);
    for (const v of tb.ioas) checkIoasView(r, 'b', tb, v);
    expect(tb.ioas[1].hwpts[0].devices.map((d) => [d.device, d.agrees])).toEqual([['nic0', true]]);
    // a's byte 0x100: through ma and the copy's first piece; its byte 0x8100 is in no mapping but swap
    const ta = traceBuffer(r, 'a', 0x100).runs[0];
    expect(ta.ioas.map((v) => [v.mapping, v.iova])).toEqual([['ma', 0x100100n], ['both', 0x400100n], ['lo', 0x204100n], ['swap', 0x804100n]]);
    for (const v of ta.ioas) checkIoasView(r, 'a', ta, v);
    const hi = traceBuffer(r, 'a', 0x8100).runs[0];
    expect(hi.ioas.map((v) => [v.mapping, v.iova])).toEqual([['hi', 0x200100n], ['swap', 0x800100n]]);
    for (const v of hi.ioas) checkIoasView(r, 'a', hi, v);
    expect(traceBuffer(r, 'a', 0x4100).runs[0].ioas).toEqual([]);
  });

  it('taking the trace moves no counter and fills no IOTLB entry', () => {
    const r = after(shared, 5);
    const before = r.machine.stats.snapshot();
    traceBuffer(r, 'guest');
    expect(r.machine.stats.snapshot()).toEqual(before);
    expect(traceBuffer(r, 'guest', 0x1234).runs[0].ioas[0].hwpts[0].iommu.iotlb.hit).toBe(false);
  });
});

const FORMATS = ['x86-64', 'amd-v1', 'arm-lpae'] as const;

/** An IOAS scenario: a buffer of `pages` pages, nvme0 attached, nic0 too (on the same hw_pagetable or its own), `mapPages` pages from `offPages` mapped at IOVA `iova`. */
function ioasScenario(format: string, pages: number, offPages: number, mapPages: number, iova: bigint, second: 'none' | 'auto' | 'own', backing = 'anon'): string {
  return [
    ...twoDeviceMachine('trace-ioas-property', format),
    'buffers:',
    `  - { name: buf, process: vmm, len: ${pages * 4096}, backing: ${backing} }`,
    'steps:',
    '  - { op: mmap, buffer: buf }',
    '  - { op: populate, buffer: buf }',
    '  - { op: ioas-alloc, name: vm }',
    '  - { op: ioas-attach, ioas: vm, device: nvme0 }',
    ...(second === 'none' ? [] : [`  - { op: ioas-attach, ioas: vm, device: nic0, hwpt: ${second} }`]),
    `  - { op: ioas-map, name: ram, ioas: vm, buffer: buf, offset: ${offPages * 4096}, len: ${mapPages * 4096}, iova: 0x${iova.toString(16)} }`,
  ].join('\n');
}

describe('property: every traced IOAS IOVA translates to the traced physical address, and a device read there returns the buffer\'s byte', () => {
  it('random maps, formats and hw_pagetable sharing', () => {
    let checked = 0;
    fc.assert(fc.property(
      fc.constantFrom(...FORMATS), fc.integer({ min: 1, max: 12 }), fc.double({ min: 0, max: 1, noNaN: true }), fc.double({ min: 0, max: 1, noNaN: true }),
      fc.integer({ min: 1, max: (1 << 20) - 64 }), fc.constantFrom('none', 'auto', 'own'), fc.double({ min: 0, max: 1, noNaN: true }),
      (format, pages, offFrac, lenFrac, iovaPage, second: 'none' | 'auto' | 'own', byteFrac) => {
        const offPages = Math.min(pages - 1, Math.floor(offFrac * pages));
        const mapPages = Math.max(1, Math.floor(lenFrac * (pages - offPages)));
        const text = ioasScenario(format, pages, offPages, mapPages, BigInt(iovaPage) * 4096n, second);
        const r = new ScenarioRunner(parseScenario(text, { source: 'p.yaml' }));
        while (r.step() !== null);
        expect(r.results.every((x) => x.ok), r.results.map((x) => x.summary).join('\n')).toBe(true);
        const offset = Math.min(pages * 4096 - 1, Math.floor(byteFrac * pages * 4096));
        const run = traceBuffer(r, 'buf', offset).runs[0];
        const inMap = offset >= offPages * 4096 && offset < (offPages + mapPages) * 4096;
        expect(run.ioas).toHaveLength(inMap ? 1 : 0);
        if (!inMap) return;
        const v = run.ioas[0];
        expect(v.iova).toBe(BigInt(iovaPage) * 4096n + BigInt(offset - offPages * 4096));
        expect(v.hwpts).toHaveLength(second === 'own' ? 2 : 1);
        expect(v.hwpts.flatMap((h) => h.devices.map((d) => d.device)).sort()).toEqual(second === 'none' ? ['nvme0'] : ['nic0', 'nvme0']);
        const cpuByte = unwrap(r.processes.get('vmm')!.readUser(run.cpu.va, 1))[0];
        const ioas = r.ioasObjects.get('vm')!;
        for (const h of v.hwpts) {
          const d = ioas.hwpts.find((x) => x.id === h.id)!.domain;
          expect(h.phys).toBe(run.cpu.phys);
          expect(iommuIovaToPhys(d, v.iova)).toBe(h.phys);
          for (const s of h.iommu.walk) expect(s.entryBytes).toBe(hexBytes(r.machine.mem.read(s.tablePhys + BigInt(s.index * 8), 8)));
          for (const x of h.devices) {
            expect(x.agrees).toBe(true);
            expect(unwrap(r.machine.device(x.device).dmaRead(v.iova, 1))[0]).toBe(cpuByte);
            checked++;
          }
        }
      },
    ), { numRuns: 60, seed: 0x10a5 });
    expect(checked).toBeGreaterThan(30);
  });
});
