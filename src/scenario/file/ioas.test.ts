// The ioas-* steps: an IOAS shared by several devices, driven from a scenario file: one domain for
// the devices that share it (one set of PTEs), a device of its own domain (a second set), device
// access through an IOAS mapping checked against the buffer's bytes and faulting after a detach or an
// unmap, errnos of the model reported, and teardown leaving nothing (pins, page tables, IOASes).
import { describe, expect, it } from 'vitest';
import { iommufdIoases } from '../../drivers/index.ts';
import { ScenarioRunner, parseScenario, runScenario, scenarioJson, type IoasState } from './index.ts';
import { p2pSwitchPci, rootPortPci } from '../../../test/fixtures/scenario-yaml.ts';

const BASE = `
name: t
machine:
  ramBytes: 256MiB
  pci:
${rootPortPci('nvme0', 'nic0')}
  iommu: { format: x86-64, mode: strict }
buffers:
  - { name: g, process: vmm, len: 64KiB, backing: anon }
steps:
`;

function scenario(...steps: string[]): ReturnType<typeof parseScenario> {
  return parseScenario(`${BASE}${steps.map((s) => `  - ${s}\n`).join('')}`);
}

/** The P2P test machine with nic0 and nvme0, up to its steps: list. */
const P2P_HEAD = `name: t
machine:
  ramBytes: 256MiB
  pci:
${p2pSwitchPci('nic0', 'nvme0')}
  iommu: { format: x86-64, mode: strict }
steps:`;

const SHARED = [
  '{ op: mmap, buffer: g }',
  '{ op: populate, buffer: g }',
  '{ op: ioas-alloc, name: vm }',
  '{ op: ioas-attach, ioas: vm, device: nvme0 }',
  '{ op: ioas-attach, ioas: vm, device: nic0 }',
  '{ op: ioas-map, name: ram, ioas: vm, buffer: g }',
];

describe('ioas-* steps', () => {
  it('two devices on one IOAS share one domain: one map writes 16 PTEs once, both read the bytes, the runner lists one hw_pagetable', () => {
    const r = new ScenarioRunner(scenario(...SHARED,
      '{ op: device-read, mapping: ram, device: nvme0 }',
      '{ op: device-write, mapping: ram, device: nic0, offset: 8KiB, len: 4KiB }',
      '{ op: device-read, mapping: ram, device: nvme0 }',
      '{ op: cpu-read, buffer: g }'));
    const res = r.runAll();
    expect(res.ok).toBe(true);
    expect(res.steps[4].counters).toEqual({});
    expect(res.steps[5].counters.iommuLeafPtesWritten).toBe(16);
    expect(res.steps[5].counters.gupPagesPinned).toBe(16);
    // the IOVA the IOAS picked (no iova given): iopt_alloc_iova's first hole from PAGE_SIZE, 64 KiB aligned
    const iova = res.steps[5].data!.iova as bigint;
    expect(iova).toBe(0x10000n);
    expect(res.steps[5].data!.ioas).toEqual({
      name: 'vm', devices: ['nvme0', 'nic0'], hwpts: [{ id: 3, auto: true, devices: ['nvme0', 'nic0'] }],
      areas: [{ iova, len: 65536, mapping: 'ram', pinned: true }], iovaAlignment: 4096,
    });
    for (const k of [6, 8]) expect(res.steps[k].data).toMatchObject({ bytes: 65536, checked: 65536, mismatched: 0 });
    expect(res.steps[9].data).toMatchObject({ checked: 65536, mismatched: 0 });
  });

  it('hwpt: own gives a device a second domain: the areas are mapped into it again (16 more PTEs), pinned still once', () => {
    const res = runScenario(scenario(
      '{ op: mmap, buffer: g }',
      '{ op: populate, buffer: g }',
      '{ op: ioas-alloc, name: vm }',
      '{ op: ioas-attach, ioas: vm, device: nvme0 }',
      '{ op: ioas-map, name: ram, ioas: vm, buffer: g, iova: 0x200000 }',
      '{ op: ioas-attach, ioas: vm, device: nic0, hwpt: own }',
      '{ op: device-read, mapping: ram, device: nic0 }',
      '{ op: ioas-detach, device: nic0 }',
      '{ op: device-read, mapping: ram }'));
    expect(res.ok).toBe(true);
    const attach = res.steps[5];
    expect(attach.counters.iommuLeafPtesWritten).toBe(16);
    expect(attach.counters.gupPagesPinned ?? 0).toBe(0);
    expect((attach.data!.ioas as { hwpts: unknown }).hwpts).toEqual([
      { id: 3, auto: true, devices: ['nvme0'] }, { id: 5, auto: false, devices: ['nic0'] },
    ]);
    // its own hw_pagetable goes with it: its 16 PTEs cleared, nvme0's domain left whole
    expect(res.steps[7].counters.iommuLeafPtesCleared).toBe(16);
    expect((res.steps[7].data!.ioas as { hwpts: unknown }).hwpts).toEqual([{ id: 3, auto: true, devices: ['nvme0'] }]);
    expect(res.steps[8].data).toMatchObject({ checked: 65536, mismatched: 0 });
  });

  it('a detached device faults at the IOVA while the other still reads; after ioas-unmap both fault', () => {
    const res = runScenario(scenario(...SHARED,
      '{ op: ioas-detach, device: nic0 }',
      '{ op: device-read, mapping: ram, device: nic0, expect: { errno: EFAULT, event: { kind: FAULT } } }',
      '{ op: device-read, mapping: ram }',
      '{ op: ioas-unmap, ioas: vm, mapping: ram }',
      '{ op: device-read, mapping: ram, device: nvme0, afterUnmap: true, expect: { errno: EFAULT, event: { kind: FAULT } } }',
      '{ op: device-write, mapping: ram, device: nic0, afterUnmap: true, expect: { errno: EFAULT } }'));
    expect(res.ok).toBe(true);
    expect(res.steps[8].data).toMatchObject({ checked: 65536, mismatched: 0 });
    expect(res.steps[9].counters).toMatchObject({ gupPagesUnpinned: 16, iommuLeafPtesCleared: 16 });
    expect(res.steps.slice(7).map((s) => s.errno ?? 'ok')).toEqual(['EFAULT', 'ok', 'ok', 'EFAULT', 'EFAULT']);
  });

  it('the model\'s errnos reach the step: an overlapping IOVA is EEXIST, an unmap cutting an area ENOENT, a read-only map refuses a device write', () => {
    const res = runScenario(scenario(...SHARED.slice(0, 4),
      '{ op: ioas-map, name: a, ioas: vm, buffer: g, len: 16KiB, iova: 0x100000 }',
      '{ op: ioas-map, name: b, ioas: vm, buffer: g, offset: 16KiB, len: 16KiB, iova: 0x102000, expect: { errno: EEXIST } }',
      '{ op: ioas-unmap, ioas: vm, iova: 0x100000, len: 8KiB, expect: { errno: ENOENT } }',
      '{ op: ioas-map, name: ro, ioas: vm, buffer: g, offset: 32KiB, len: 16KiB, iova: 0x200000, writeable: false }',
      '{ op: device-read, mapping: ro }',
      '{ op: device-write, mapping: ro, expect: { errno: EFAULT } }',
      '{ op: ioas-unmap, ioas: vm, iova: 0x100000, len: 0x100000 }'));
    expect(res.ok).toBe(true);
    expect(res.steps[10].data).toMatchObject({ bytes: 16384 });
  });

  it('an ioas-attach of an attached device replaces it onto the other IOAS: it reads the new mapping, faults at the old one, and its old domain goes with its last device', () => {
    const res = runScenario(scenario(
      '{ op: mmap, buffer: g }',
      '{ op: populate, buffer: g }',
      '{ op: ioas-alloc, name: vm }',
      '{ op: ioas-attach, ioas: vm, device: nvme0 }',
      '{ op: ioas-map, name: low, ioas: vm, buffer: g, len: 32KiB, iova: 0x100000 }',
      '{ op: ioas-alloc, name: vm2 }',
      '{ op: ioas-map, name: high, ioas: vm2, buffer: g, offset: 32KiB, len: 32KiB, iova: 0x200000 }',
      '{ op: ioas-attach, ioas: vm2, device: nvme0 }',
      '{ op: device-read, mapping: high }',
      '{ op: device-read, mapping: low, device: nvme0, expect: { errno: EFAULT } }',
      '{ op: ioas-attach, ioas: vm2, device: nvme0 }',
      '{ op: ioas-destroy, ioas: vm }'));
    expect(res.ok).toBe(true);
    const replace = res.steps[7];
    expect(replace.summary).toMatch(/^attach nvme0 to vm2: replaced: off HWPT 3 of vm \(destroyed with its last device\), straight onto new HWPT 5: /);
    // vm's domain went (its 8 PTEs cleared, its pins dropped), vm2's got 8 PTEs
    expect(replace.counters).toMatchObject({ iommuLeafPtesCleared: 8, iommuLeafPtesWritten: 8, gupPagesUnpinned: 8, gupPagesPinned: 8 });
    expect(res.steps[8].data).toMatchObject({ checked: 32768, mismatched: 0 });
    expect(res.steps[10].summary).toMatch(/already on HWPT 5: nothing changes/);
    expect(res.steps[10].counters).toEqual({});
    expect(res.steps[11].errno).toBeUndefined();
  });

  it('ioas-detach of a device an iommufd import bound says it stays bound, in its blocking domain, where its DMA faults', () => {
    const res = runScenario(parseScenario(`${P2P_HEAD}
  - { op: dmabuf-export, name: slice, exporter: vfio-bar, device: gpu0, len: 64KiB }
  - { op: dmabuf-import, name: n, dmabuf: slice, device: nic0, importer: iommufd }
  - { op: ioas-alloc, name: vm1 }
  - { op: ioas-attach, ioas: vm1, device: nic0 }
  - { op: ioas-detach, device: nic0 }
  - { op: dmabuf-read, import: n, expect: { errno: EFAULT } }
`));
    expect(res.ok).toBe(true);
    expect(res.steps[4].summary).toMatch(/^detach nic0 from vm1: in its blocking domain, still bound to iommufd by dma-buf import n's IOAS, HWPT \d+ destroyed with its last device/);
    expect(res.steps[5].summary).toMatch(/blocked domain/);
  });

  it('ioas-destroy of an IOAS a device is attached to is EBUSY and changes nothing; teardown still takes it', () => {
    const r = new ScenarioRunner(scenario(...SHARED,
      '{ op: ioas-destroy, ioas: vm, expect: { errno: EBUSY } }',
      '{ op: device-read, mapping: ram, device: nvme0 }'));
    const res = r.runAll();
    expect(res.ok).toBe(true);
    expect(res.steps[6].summary).toMatch(/^IOMMU_DESTROY vm: EBUSY \(IOAS 1 is held by HWPT 3 \(nvme0, nic0 attached\): /);
    expect(res.steps[6].counters).toEqual({});
    expect(res.steps[7].data).toMatchObject({ checked: 65536, mismatched: 0 });
    expect(res.leaks.tornDown).toEqual(['ioas vm', 'buffer g']);
  });

  it('teardown destroys a live IOAS: devices detached, pages unpinned, page tables freed, nothing leaked', () => {
    const r = new ScenarioRunner(scenario(...SHARED));
    const res = r.runAll();
    expect(res.ok).toBe(true);
    expect(res.leaks.tornDown).toEqual(['ioas vm', 'buffer g']);
    expect(res.leaks.dmaDebugLeaks).toBe(0);
    expect(res.counters.gupPagesPinned).toBe(res.counters.gupPagesUnpinned);
    expect(res.counters.iommuTablePagesAllocated).toBe(res.counters.iommuTablePagesFreed);
    expect(iommufdIoases(r.machine)).toEqual([]);
    expect(r.ioases.size).toBe(0);
    expect([...r.ioasMappings.values()].map((m) => [m.name, m.live])).toEqual([['ram', false]]);
  });

  it('a mapping name freed by ioas-unmap can name a map step\'s mapping: device access goes through the live one', () => {
    const res = runScenario(scenario(...SHARED,
      '{ op: ioas-unmap, ioas: vm, mapping: ram }',
      '{ op: ioas-detach, device: nvme0 }',
      '{ op: map, name: ram, device: nvme0, buffer: g, method: phys }',
      '{ op: device-read, mapping: ram }'));
    expect(res.ok).toBe(true);
    expect(res.steps[9].summary).toMatch(/^nvme0 DMA read of 64 KiB through ram: 65,536 bytes match$/);
  });

  it('--json: an ioas step carries the IOAS (bigints as hex strings)', () => {
    const res = runScenario(scenario(...SHARED));
    const j = JSON.parse(scenarioJson(res)) as { steps: Array<{ data?: { iova?: string; ioas?: { areas: Array<{ iova: string }> } } }> };
    expect(j.steps[5].data!.iova).toBe('0x10000');
    expect(j.steps[5].data!.ioas!.areas[0].iova).toBe('0x10000');
  });

  it('a range ioas-unmap takes the mappings it covers: the checker frees the name again (it said still live, and the runner crashed on a second unmap)', () => {
    const res = runScenario(scenario(
      '{ op: mmap, buffer: g }',
      '{ op: populate, buffer: g }',
      '{ op: ioas-alloc, name: vm }',
      '{ op: ioas-attach, ioas: vm, device: nvme0 }',
      '{ op: ioas-map, name: a, ioas: vm, buffer: g, len: 16KiB, iova: 0x100000 }',
      '{ op: ioas-unmap, ioas: vm, iova: 0x100000, len: 64KiB }',
      '{ op: ioas-map, name: a, ioas: vm, buffer: g, offset: 16KiB, len: 16KiB, iova: 0x200000 }',
      '{ op: device-read, mapping: a }',
    ));
    expect(res.ok).toBe(true);
    expect(res.steps[5].summary).toContain('16 KiB unmapped from every domain (a)');
    expect(res.steps[7].data).toMatchObject({ checked: 16384, mismatched: 0 });
  });

  it('a mapping keeps the IOAS it went into: after ioas-destroy and a new IOAS of the same name, its access names no device of the new one', () => {
    const r = new ScenarioRunner(scenario(
      '{ op: mmap, buffer: g }',
      '{ op: ioas-alloc, name: vm }',
      '{ op: ioas-attach, ioas: vm, device: nvme0 }',
      '{ op: ioas-map, name: old, ioas: vm, buffer: g, len: 16KiB, iova: 0x100000 }',
      '{ op: ioas-detach, device: nvme0 }',
      '{ op: ioas-destroy, ioas: vm }',
      '{ op: ioas-alloc, name: vm }',
      '{ op: ioas-attach, ioas: vm, device: nic0 }',
      '{ op: ioas-map, name: new, ioas: vm, buffer: g, offset: 16KiB, len: 16KiB, iova: 0x100000 }',
      '{ op: device-read, mapping: old, afterUnmap: true, expect: { errno: ENODEV } }',
      '{ op: device-read, mapping: old, device: nvme0, afterUnmap: true, expect: { errno: EFAULT } }',
    ));
    const res = r.runAll();
    expect(res.ok).toBe(true);
    // nic0 sits on the new vm at the same IOVA: the old mapping's access must not pick it
    expect(res.steps[9].summary).toContain('ENODEV (mapping old is in a destroyed IOAS, which has 0 devices attached');
    expect(r.ioasObjectOfMapping('old')!.alive).toBe(false);
    expect(r.ioasDetachedDevices(r.ioasObjectOfMapping('old')!)).toEqual(['nvme0']);
  });

  describe('ioas-copy, ioas-allow-iovas, ioas-iova-ranges', () => {
    /** Two IOASes: vm1 with nvme0 holding the buffer at 0x100000 (mapping ram), vm2 with nic0 and nothing mapped. */
    const TWO = [
      '{ op: mmap, buffer: g }',
      '{ op: populate, buffer: g }',
      '{ op: ioas-alloc, name: vm1 }',
      '{ op: ioas-attach, ioas: vm1, device: nvme0 }',
      '{ op: ioas-map, name: ram, ioas: vm1, buffer: g, iova: 0x100000 }',
      '{ op: ioas-alloc, name: vm2 }',
      '{ op: ioas-attach, ioas: vm2, device: nic0 }',
    ];

    it('ioas-copy maps the source\'s pages in a second IOAS without pinning them again: bytes nic0 writes through the copy are what nvme0 and the CPU read through the source', () => {
      const r = new ScenarioRunner(scenario(...TWO,
        '{ op: ioas-copy, name: ram2, srcIoas: vm1, mapping: ram, dstIoas: vm2, dstIova: 0x300000 }',
        '{ op: device-write, mapping: ram2, offset: 4KiB, len: 8KiB }',
        '{ op: device-read, mapping: ram }',
        '{ op: cpu-read, buffer: g }',
        '{ op: ioas-unmap, ioas: vm1, mapping: ram }',
        '{ op: device-read, mapping: ram2 }'));
      const res = r.runAll();
      expect(res.ok, res.steps.map((x) => x.summary).join('\n')).toBe(true);
      const copy = res.steps[7];
      expect(copy.summary).toBe('IOMMU_IOAS_COPY vm1 [0x100000, +64 KiB) (ram) -> vm2: at IOVA 0x300000 as 1 area, mapped into 1 domain, sharing the source\'s pages; vm2: HWPT 6 [nic0]; 1 area');
      // 16 PTEs in nic0's domain, not one page pinned again
      expect(copy.counters.iommuLeafPtesWritten).toBe(16);
      expect(copy.counters.gupPagesPinned ?? 0).toBe(0);
      expect(copy.data).toMatchObject({ iova: 0x300000n, areas: 1, domains: 1 });
      expect((copy.data!.ioas as { areas: unknown }).areas).toEqual([{ iova: 0x300000n, len: 65536, mapping: 'ram2', pinned: true }]);
      // the device write went to the guest's pages: checked through the source mapping and by the CPU
      expect(res.steps[8].data).toMatchObject({ bytes: 8192 });
      expect(res.steps[9].data).toMatchObject({ checked: 65536, mismatched: 0 });
      expect(res.steps[10].data).toMatchObject({ checked: 65536, mismatched: 0 });
      // the source's unmap keeps the pages the copy still maps pinned
      expect(res.steps[11].counters.gupPagesUnpinned ?? 0).toBe(0);
      expect(res.steps[12].data).toMatchObject({ checked: 65536, mismatched: 0 });
      expect(r.ioasMappings.get('ram2')).toMatchObject({ op: 'ioas-copy', ioas: 'vm2', pieces: [{ buffer: 'g', dmabuf: null, offset: 0, len: 65536 }], len: 65536, copyOf: { ioas: 'vm1', mapping: 'ram', iova: 0x100000n } });
      expect(res.counters.gupPagesPinned).toBe(16);
      expect(res.counters.gupPagesUnpinned).toBe(16);
      expect(res.leaks.tornDown).toEqual(['ioas vm2', 'ioas vm1', 'buffer g']);
    });

    it('a copy of part of a mapping, and of an IOVA range over two abutting mappings of the buffer, is checked against those bytes; a range with a hole is ENOENT', () => {
      const r = new ScenarioRunner(scenario(
        '{ op: mmap, buffer: g }',
        '{ op: populate, buffer: g }',
        '{ op: ioas-alloc, name: vm1 }',
        '{ op: ioas-attach, ioas: vm1, device: nvme0 }',
        '{ op: ioas-map, name: lo, ioas: vm1, buffer: g, len: 32KiB, iova: 0x100000 }',
        '{ op: ioas-map, name: hi, ioas: vm1, buffer: g, offset: 32KiB, len: 32KiB, iova: 0x108000 }',
        '{ op: ioas-alloc, name: vm2 }',
        '{ op: ioas-attach, ioas: vm2, device: nic0 }',
        '{ op: ioas-copy, name: part, srcIoas: vm1, mapping: hi, offset: 8KiB, len: 8KiB, dstIoas: vm2 }',
        '{ op: ioas-copy, name: both, srcIoas: vm1, srcIova: 0x104000, len: 32KiB, dstIoas: vm2, dstIova: 0x400000 }',
        '{ op: device-write, mapping: both }',
        '{ op: device-read, mapping: lo }',
        '{ op: device-read, mapping: hi }',
        '{ op: device-read, mapping: part }',
        '{ op: ioas-copy, name: gap, srcIoas: vm1, srcIova: 0x10c000, len: 32KiB, dstIoas: vm2, expect: { errno: ENOENT } }'));
      const res = r.runAll();
      expect(res.ok, res.steps.map((x) => x.summary).join('\n')).toBe(true);
      expect(r.ioasMappings.get('part')).toMatchObject({ pieces: [{ buffer: 'g', dmabuf: null, offset: 40960, len: 8192 }], len: 8192 });
      // one area per source area the range meets
      expect(res.steps[9].data).toMatchObject({ iova: 0x400000n, areas: 2 });
      // the two source areas map contiguous bytes of g: one piece
      expect(r.ioasMappings.get('both')).toMatchObject({ pieces: [{ buffer: 'g', dmabuf: null, offset: 16384, len: 32768 }], len: 32768 });
      expect((res.steps[9].data!.ioas as IoasState).areas.map((a) => [a.iova, a.len, a.mapping])).toEqual([
        [0x2000n, 8192, 'part'], [0x400000n, 16384, 'both'], [0x404000n, 16384, 'both'],
      ]);
      for (const k of [11, 12, 13]) expect(res.steps[k].data).toMatchObject({ mismatched: 0 });
      expect(res.steps[11].data).toMatchObject({ checked: 32768 });
      expect(res.steps[14].summary).toMatch(/^IOMMU_IOAS_COPY vm1 \[0x10c000, \+32 KiB\) -> vm2: ENOENT \(0x110000 of \[0x10c000, 0x113fff\] is not mapped in IOAS 1/);
    });

    it('ioas-copy of a mapping a range unmap took (a map, or one area of a two-area copy) reports the kernel\'s ENOENT: the runner crashed reading its IOVA', () => {
      // the reviewer's file: a map at an IOVA the IOAS picked, then an unmap of [0, 1 GiB)
      const whole = runScenario(scenario(
        '{ op: mmap, buffer: g }',
        '{ op: populate, buffer: g }',
        '{ op: ioas-alloc, name: vm1 }',
        '{ op: ioas-attach, ioas: vm1, device: nvme0 }',
        '{ op: ioas-map, name: ram, ioas: vm1, buffer: g }',
        '{ op: ioas-unmap, ioas: vm1, iova: 0, len: 1GiB }',
        '{ op: ioas-copy, name: ram2, srcIoas: vm1, mapping: ram, dstIoas: vm1, expect: { errno: ENOENT } }'));
      expect(whole.ok, whole.steps.map((x) => x.summary).join('\n')).toBe(true);
      expect(whole.steps[6].summary).toBe('IOMMU_IOAS_COPY vm1 [0x10000, +64 KiB) (ram) -> vm1: ENOENT (0x10000 of [0x10000, 0x1ffff] is not mapped in IOAS 1)');
      // a copy of two areas, its second area unmapped by a range: the copy is no longer whole
      const part = runScenario(scenario(...TWO,
        '{ op: ioas-unmap, ioas: vm1, mapping: ram }',
        '{ op: ioas-map, name: lo, ioas: vm1, buffer: g, len: 32KiB, iova: 0x100000 }',
        '{ op: ioas-map, name: hi, ioas: vm1, buffer: g, offset: 32KiB, len: 32KiB, iova: 0x108000 }',
        '{ op: ioas-copy, name: both, srcIoas: vm1, srcIova: 0x104000, len: 32KiB, dstIoas: vm2, dstIova: 0x400000 }',
        '{ op: ioas-unmap, ioas: vm2, iova: 0x404000, len: 16KiB }',
        '{ op: ioas-copy, name: again, srcIoas: vm2, mapping: both, dstIoas: vm1, expect: { errno: ENOENT } }'));
      expect(part.ok, part.steps.map((x) => x.summary).join('\n')).toBe(true);
      expect(part.steps[12].summary).toBe('IOMMU_IOAS_COPY vm2 [0x400000, +32 KiB) (both) -> vm1: ENOENT (0x404000 of [0x400000, 0x407fff] is not mapped in IOAS 4 (a hole after the areas before it))');
    });

    it('a copy over mappings of two buffers maps a piece of each: device writes through it land in both buffers\' bytes, reads through it and through each source are checked piece by piece, a copy of part of it takes the pieces it covers', () => {
      // a second buffer h beside g
      const r = new ScenarioRunner(parseScenario(`${BASE.replace('steps:\n', '  - { name: h, process: vmm, len: 16KiB, backing: anon }\nsteps:\n')}${[
        '{ op: mmap, buffer: g }',
        '{ op: mmap, buffer: h }',
        '{ op: populate, buffer: g }',
        '{ op: populate, buffer: h }',
        '{ op: ioas-alloc, name: vm1 }',
        '{ op: ioas-attach, ioas: vm1, device: nvme0 }',
        '{ op: ioas-map, name: ma, ioas: vm1, buffer: g, len: 16KiB, iova: 0x100000 }',
        '{ op: ioas-map, name: mb, ioas: vm1, buffer: h, iova: 0x104000 }',
        '{ op: ioas-alloc, name: vm2 }',
        '{ op: ioas-attach, ioas: vm2, device: nic0 }',
        '{ op: ioas-copy, name: both, srcIoas: vm1, srcIova: 0x100000, len: 32KiB, dstIoas: vm2, dstIova: 0x400000 }',
        '{ op: device-read, mapping: both }',
        '{ op: device-write, mapping: both }',
        '{ op: device-read, mapping: both }',
        '{ op: device-read, mapping: ma }',
        '{ op: device-read, mapping: mb }',
        '{ op: cpu-read, buffer: g, len: 16KiB }',
        '{ op: cpu-read, buffer: h }',
        '{ op: ioas-copy, name: mid, srcIoas: vm2, mapping: both, offset: 8KiB, len: 16KiB, dstIoas: vm1, dstIova: 0x200000 }',
        '{ op: device-write, mapping: mid, offset: 4KiB, len: 8KiB }',
        '{ op: device-read, mapping: mid }',
        '{ op: device-read, mapping: both }',
        '{ op: cpu-read, buffer: h }',
      ].map((x) => `  - ${x}\n`).join('')}`));
      const res = r.runAll();
      expect(res.ok, res.steps.map((x) => x.summary).join('\n')).toBe(true);
      expect(r.ioasMappings.get('both')!.pieces).toEqual([
        { buffer: 'g', dmabuf: null, offset: 0, len: 16384 }, { buffer: 'h', dmabuf: null, offset: 0, len: 16384 },
      ]);
      // the populate patterns read through the copy: checked against g's bytes, then h's
      expect(res.steps[11].data).toMatchObject({ bytes: 32768, checked: 32768, mismatched: 0 });
      // nic0's write through the copy went to both buffers: the copy, each source and the CPU see it
      for (const k of [13, 14, 15, 16, 17]) expect(res.steps[k].data, res.steps[k].summary).toMatchObject({ mismatched: 0 });
      expect(res.steps[13].data).toMatchObject({ checked: 32768 });
      expect(res.steps[14].data).toMatchObject({ checked: 16384 });
      expect(res.steps[15].data).toMatchObject({ checked: 16384 });
      // a copy of the copy's middle: the end of g's piece, the start of h's
      expect(r.ioasMappings.get('mid')!.pieces).toEqual([
        { buffer: 'g', dmabuf: null, offset: 8192, len: 8192 }, { buffer: 'h', dmabuf: null, offset: 0, len: 8192 },
      ]);
      for (const k of [20, 21, 22]) expect(res.steps[k].data, res.steps[k].summary).toMatchObject({ mismatched: 0 });
      expect(res.steps[20].data).toMatchObject({ checked: 16384 });
      expect(res.steps[21].data).toMatchObject({ checked: 32768 });
    });

    it('a copy over two abutting mappings of one buffer whose bytes are not contiguous (g+32 KiB below g+0) maps two pieces of it: writes through it are checked at both places', () => {
      const r = new ScenarioRunner(scenario(
        '{ op: mmap, buffer: g }',
        '{ op: populate, buffer: g }',
        '{ op: ioas-alloc, name: vm1 }',
        '{ op: ioas-attach, ioas: vm1, device: nvme0 }',
        '{ op: ioas-map, name: hi, ioas: vm1, buffer: g, offset: 32KiB, len: 16KiB, iova: 0x100000 }',
        '{ op: ioas-map, name: lo, ioas: vm1, buffer: g, len: 16KiB, iova: 0x104000 }',
        '{ op: ioas-alloc, name: vm2 }',
        '{ op: ioas-attach, ioas: vm2, device: nic0 }',
        '{ op: ioas-copy, name: swap, srcIoas: vm1, srcIova: 0x100000, len: 32KiB, dstIoas: vm2 }',
        '{ op: device-write, mapping: swap }',
        '{ op: device-read, mapping: swap }',
        '{ op: device-read, mapping: hi }',
        '{ op: device-read, mapping: lo }',
        '{ op: cpu-read, buffer: g }'));
      const res = r.runAll();
      expect(res.ok, res.steps.map((x) => x.summary).join('\n')).toBe(true);
      expect(r.ioasMappings.get('swap')!.pieces).toEqual([
        { buffer: 'g', dmabuf: null, offset: 32768, len: 16384 }, { buffer: 'g', dmabuf: null, offset: 0, len: 16384 },
      ]);
      expect(res.steps[10].data).toMatchObject({ checked: 32768, mismatched: 0 });
      expect(res.steps[11].data).toMatchObject({ checked: 16384, mismatched: 0 });
      expect(res.steps[12].data).toMatchObject({ checked: 16384, mismatched: 0 });
      expect(res.steps[13].data).toMatchObject({ checked: 65536, mismatched: 0 });
    });

    it('a range unmap of only the second area of a two-area copy unmaps the copy: it no longer maps all its bytes, and its first area belongs to no mapping', () => {
      const r = new ScenarioRunner(scenario(...TWO,
        '{ op: ioas-unmap, ioas: vm1, mapping: ram }',
        '{ op: ioas-map, name: lo, ioas: vm1, buffer: g, len: 32KiB, iova: 0x100000 }',
        '{ op: ioas-map, name: hi, ioas: vm1, buffer: g, offset: 32KiB, len: 32KiB, iova: 0x108000 }',
        '{ op: ioas-copy, name: both, srcIoas: vm1, srcIova: 0x104000, len: 32KiB, dstIoas: vm2, dstIova: 0x400000 }',
        '{ op: ioas-unmap, ioas: vm2, iova: 0x404000, len: 16KiB }'));
      const res = r.runAll();
      expect(res.ok, res.steps.map((x) => x.summary).join('\n')).toBe(true);
      expect(res.steps[11].summary).toBe('IOMMU_IOAS_UNMAP vm2 [0x404000, +16 KiB): 16 KiB unmapped from every domain (both); vm2: HWPT 6 [nic0]; 1 area');
      expect(r.ioasMappings.get('both')!.live).toBe(false);
      expect((res.steps[11].data!.ioas as IoasState).areas.map((a) => [a.iova, a.len, a.mapping])).toEqual([[0x400000n, 16384, null]]);
    });

    it('ioas-allow-iovas: a range on a reserved region is EADDRINUSE and one with start >= last EINVAL (the old list stays); a range too small refuses a map without an IOVA (ENOSPC), a wider one takes it; a fixed IOVA is not held to them', () => {
      const res = runScenario(scenario(...TWO,
        '{ op: ioas-allow-iovas, ioas: vm2, ranges: [{ start: 0x400000, last: 0x40ffff }] }',
        '{ op: ioas-allow-iovas, ioas: vm2, ranges: [{ start: 0xfee00000, last: 0xfeefffff }], expect: { errno: EADDRINUSE } }',
        '{ op: ioas-allow-iovas, ioas: vm2, ranges: [{ start: 0x500000, last: 0x500000 }], expect: { errno: EINVAL } }',
        '{ op: ioas-map, name: a, ioas: vm2, buffer: g }',
        '{ op: ioas-map, name: b, ioas: vm2, buffer: g, offset: 32KiB, len: 32KiB, expect: { errno: ENOSPC } }',
        '{ op: ioas-allow-iovas, ioas: vm2, ranges: [{ start: 0x400000, last: 0x40ffff }, { start: 0x800000, last: 0x80ffff }] }',
        '{ op: ioas-map, name: b, ioas: vm2, buffer: g, offset: 32KiB, len: 32KiB }',
        '{ op: ioas-map, name: c, ioas: vm2, buffer: g, len: 4KiB, iova: 0x10000000 }',
        '{ op: ioas-allow-iovas, ioas: vm2, ranges: [] }',
        '{ op: device-read, mapping: b }'));
      expect(res.ok, res.steps.map((x) => x.summary).join('\n')).toBe(true);
      expect(res.steps[7].summary).toBe('IOMMU_IOAS_ALLOW_IOVAS vm2 [0x400000, 0x40ffff]: IOVAs the IOAS picks come from this range only');
      expect(res.steps[7].data).toMatchObject({ allowed: [{ start: 0x400000n, last: 0x40ffffn }], ioas: { name: 'vm2', devices: ['nic0'], areas: [] } });
      expect(res.steps[8].summary).toBe("IOMMU_IOAS_ALLOW_IOVAS vm2 [0xfee00000, 0xfeefffff]: EADDRINUSE ([0xfee00000, 0xfeefffff] meets nic0's reserved region [0xfee00000, 0xfeefffff])");
      expect(res.steps[9].summary).toBe('IOMMU_IOAS_ALLOW_IOVAS vm2 [0x500000, 0x500000]: EINVAL (ranges[0] [0x500000, 0x500000] does not have start < last)');
      expect(res.steps[10].data).toMatchObject({ iova: 0x400000n });
      expect(res.steps[13].data).toMatchObject({ iova: 0x800000n });
      expect(res.steps[14].data).toMatchObject({ iova: 0x10000000n });
      expect(res.steps[15].summary).toBe('IOMMU_IOAS_ALLOW_IOVAS vm2 (no range): no restriction: IOVAs the IOAS picks may be anywhere it has room');
      expect(res.steps[16].data).toMatchObject({ checked: 32768, mismatched: 0 });
    });

    it('ioas-iova-ranges reports the usable ranges and the alignment in its line and data; an array too small is EMSGSIZE with the total', () => {
      const res = runScenario(scenario(
        '{ op: ioas-alloc, name: vm }',
        '{ op: ioas-iova-ranges, ioas: vm }',
        '{ op: ioas-attach, ioas: vm, device: nvme0 }',
        '{ op: ioas-iova-ranges, ioas: vm }',
        '{ op: ioas-iova-ranges, ioas: vm, numIovas: 1, expect: { errno: EMSGSIZE } }'));
      expect(res.ok, res.steps.map((x) => x.summary).join('\n')).toBe(true);
      expect(res.steps[1].summary).toBe('IOMMU_IOAS_IOVA_RANGES vm: 1 usable range [0x0, 0xffffffffffffffff]; IOVA alignment 1 byte (no domain yet)');
      expect(res.steps[1].data).toEqual({
        ranges: [{ start: 0n, last: (1n << 64n) - 1n }], numIovas: 1, iovaAlignment: 1, ioas: { name: 'vm', devices: [], hwpts: [], areas: [], iovaAlignment: 1 },
      });
      // the domain's aperture (48 bits) and nvme0's MSI window
      expect(res.steps[3].summary).toBe('IOMMU_IOAS_IOVA_RANGES vm: 2 usable ranges [0x0, 0xfedfffff], [0xfef00000, 0x7fffffffffff]; IOVA alignment 4 KiB');
      expect(res.steps[3].data).toMatchObject({ ranges: [{ start: 0n, last: 0xfedfffffn }, { start: 0xfef00000n, last: 0x7fffffffffffn }], numIovas: 2, iovaAlignment: 4096, ioas: { name: 'vm', devices: ['nvme0'] } });
      expect(res.steps[4].errno).toBe('EMSGSIZE');
      expect(res.steps[4].summary).toBe('IOMMU_IOAS_IOVA_RANGES vm (room for 1): EMSGSIZE (IOAS 1 has 2 usable IOVA ranges, the array holds 1): 2 usable ranges [0x0, 0xfedfffff] (1 more not written); IOVA alignment 4 KiB');
      expect(res.steps[4].data).toMatchObject({ ranges: [{ start: 0n, last: 0xfedfffffn }], numIovas: 2, iovaAlignment: 4096, ioas: { name: 'vm' } });
    });
    it('the data of every ioas-* step carries the IOAS as it is after it (docs/cli.md says so), but ioas-destroy\'s: the IOAS is gone', () => {
      const r = new ScenarioRunner(scenario(...TWO,
        '{ op: ioas-iova-ranges, ioas: vm2 }',
        '{ op: ioas-allow-iovas, ioas: vm2, ranges: [{ start: 0x400000, last: 0x40ffff }] }',
        '{ op: ioas-copy, name: ram2, srcIoas: vm1, mapping: ram, dstIoas: vm2 }',
        '{ op: ioas-unmap, ioas: vm2, mapping: ram2 }',
        '{ op: ioas-detach, device: nic0 }',
        '{ op: ioas-destroy, ioas: vm2 }'));
      const res = r.runAll();
      expect(res.ok, res.steps.map((x) => x.summary).join('\n')).toBe(true);
      const steps = r.scenario.steps;
      const ops = new Set<string>();
      for (const x of res.steps) {
        const s = steps[x.index] as { op: string; ioas?: string; dstIoas?: string; device?: string };
        if (!s.op.startsWith('ioas-')) continue;
        ops.add(s.op);
        if (s.op === 'ioas-destroy') {
          expect(x.data, x.summary).toBeUndefined();
          continue;
        }
        const name = s.op === 'ioas-alloc' ? (s as unknown as { name: string }).name : s.op === 'ioas-detach' ? 'vm2' : s.dstIoas ?? s.ioas;
        expect((x.data as { ioas?: IoasState } | undefined)?.ioas?.name, `${s.op}: ${x.summary}`).toBe(name);
      }
      expect([...ops].sort()).toEqual([
        'ioas-alloc', 'ioas-allow-iovas', 'ioas-attach', 'ioas-copy', 'ioas-destroy', 'ioas-detach', 'ioas-iova-ranges', 'ioas-map', 'ioas-unmap',
      ]);
    });
  });

  describe('ioas-map of a dma-buf (IOMMU_IOAS_MAP_FILE)', () => {
    const P2P = `
name: t
machine:
  ramBytes: 256MiB
  pci:
${p2pSwitchPci('nic0', 'nvme0')}
  iommu: { format: x86-64, mode: strict }
steps:
`;
    const p2p = (...steps: string[]): ReturnType<typeof parseScenario> => parseScenario(`${P2P}${steps.map((x) => `  - ${x}\n`).join('')}`);

    it('a VFIO BAR slice mapped into an IOAS: nic0 writes into the BAR through it, the GPU import reads those bytes; a copy into a second IOAS reads them too; after revoke both fault', () => {
      const r = new ScenarioRunner(p2p(
        '{ op: dmabuf-export, name: slice, exporter: vfio-bar, device: gpu0, offset: 1MiB, len: 64KiB }',
        '{ op: ioas-alloc, name: vm }',
        '{ op: ioas-attach, ioas: vm, device: nic0 }',
        '{ op: ioas-map, name: bar, ioas: vm, dmabuf: slice, iova: 0x200000 }',
        '{ op: device-write, mapping: bar, len: 16KiB }',
        '{ op: dmabuf-import, name: g, dmabuf: slice, device: gpu1, importer: gpu }',
        '{ op: dmabuf-read, import: g, len: 16KiB }',
        '{ op: device-read, mapping: bar }',
        '{ op: ioas-alloc, name: vm2 }',
        '{ op: ioas-attach, ioas: vm2, device: nvme0 }',
        '{ op: ioas-copy, name: bar2, srcIoas: vm, mapping: bar, offset: 8KiB, len: 8KiB, dstIoas: vm2 }',
        '{ op: device-read, mapping: bar2 }',
        '{ op: dmabuf-revoke, dmabuf: slice }',
        '{ op: device-read, mapping: bar, expect: { errno: EFAULT, event: { kind: FAULT } } }',
        '{ op: device-read, mapping: bar2, expect: { errno: EFAULT, event: { kind: FAULT } } }',
        // a revoked VFIO dma-buf cannot be mapped again (vfio_pci_dma_buf_iommufd_map: ENODEV)
        '{ op: ioas-map, name: again, ioas: vm, dmabuf: slice, iova: 0x400000, expect: { errno: ENODEV } }'));
      const res = r.runAll();
      expect(res.ok, res.steps.map((x) => x.summary).join('\n')).toBe(true);
      expect(res.steps[15].summary).toMatch(/: ENODEV \(dmabuf:vfio-pci#1 is revoked\)$/);
      expect(res.steps[3].summary).toBe('IOMMU_IOAS_MAP_FILE slice+0 64 KiB into vm: at IOVA 0x200000, mapped as MMIO into 1 domain; vm: HWPT 3 [nic0]; 1 area');
      expect(r.ioasMappings.get('bar')).toMatchObject({ op: 'ioas-map', pieces: [{ buffer: null, dmabuf: 'slice', offset: 0, len: 65536 }], len: 65536 });
      expect(res.steps[6].data).toMatchObject({ checked: 16384, mismatched: 0 });
      expect(res.steps[7].data).toMatchObject({ bytes: 65536, checked: 16384, mismatched: 0 });
      expect(r.ioasMappings.get('bar2')).toMatchObject({ op: 'ioas-copy', pieces: [{ buffer: null, dmabuf: 'slice', offset: 8192, len: 8192 }], len: 8192 });
      expect(res.steps[11].data).toMatchObject({ checked: 8192, mismatched: 0 });
      expect(res.leaks.dmaDebugLeaks).toBe(0);
    });

    it('the model\'s errnos: an IOAS with no device attached is ENODEV (the model has no iommufd_global_device), a system-heap dma-buf EOPNOTSUPP', () => {
      const res = runScenario(p2p(
        '{ op: dmabuf-export, name: slice, exporter: vfio-bar, device: gpu0, len: 64KiB }',
        '{ op: dmabuf-export, name: heap, exporter: system-heap, len: 64KiB }',
        '{ op: ioas-alloc, name: vm }',
        '{ op: ioas-map, name: m, ioas: vm, dmabuf: slice, expect: { errno: ENODEV } }',
        '{ op: ioas-attach, ioas: vm, device: nic0 }',
        '{ op: ioas-map, name: m, ioas: vm, dmabuf: heap, expect: { errno: EOPNOTSUPP } }'));
      expect(res.ok, res.steps.map((x) => x.summary).join('\n')).toBe(true);
      expect(res.steps[5].summary).toMatch(/^IOMMU_IOAS_MAP_FILE heap\+0 64 KiB into vm: EOPNOTSUPP/);
    });
  });
});
