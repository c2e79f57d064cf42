// The ioas-* steps: an IOAS shared by several devices, driven from a scenario file: one domain for
// the devices that share it (one set of PTEs), a device of its own domain (a second set), device
// access through an IOAS mapping checked against the buffer's bytes and faulting after a detach or an
// unmap, errnos of the model reported, and teardown leaving nothing (pins, page tables, IOASes).
import { describe, expect, it } from 'vitest';
import { iommufdIoases } from '../../drivers/index.ts';
import { ScenarioRunner, parseScenario, runScenario, scenarioJson } from './index.ts';

const BASE = `
name: t
machine:
  ramBytes: 256MiB
  pci:
    - { name: hb0, type: host-bridge, vendor: 0x8086, device: 0x2030 }
    - { name: rp0, type: root-port, parent: hb0 }
    - { name: nvme0, type: endpoint, parent: rp0 }
    - { name: rp1, type: root-port, parent: hb0 }
    - { name: nic0, type: endpoint, parent: rp1 }
  iommu: { format: x86-64, mode: strict }
buffers:
  - { name: g, process: vmm, len: 64KiB, backing: anon }
steps:
`;

function scenario(...steps: string[]): ReturnType<typeof parseScenario> {
  return parseScenario(`${BASE}${steps.map((s) => `  - ${s}\n`).join('')}`);
}

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
});

