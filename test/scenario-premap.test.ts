// The scenario file's pre-mapped I/O steps: what the cross-check refuses, and a run that shows the
// RFC's behaviour (examples/premap-dmabuf.yaml is the full example with its golden output).
import { describe, expect, it } from 'vitest';
import { ScenarioError, ScenarioRunner, parseScenario } from '../src/scenario/file/index.ts';

const MACHINE = `
machine:
  ramBytes: 256MiB
  pci:
    - { name: hb0, type: host-bridge, vendor: 0x8086, device: 0x2030 }
    - { name: rp0, type: root-port, parent: hb0 }
    - name: nvme0
      type: endpoint
      parent: rp0
      nvme: { sgls: true, mdts: 0, namespaces: [{ nsid: 1, bytes: 16MiB, lbaBytes: 512 }] }
    - { name: gpu0, type: endpoint, parent: rp0 }
  iommu: { format: x86-64, mode: strict }
`;

function issues(steps: string): string[] {
  try {
    parseScenario(`name: t\n${MACHINE}buffers:\n  - { name: u, process: app, len: 64KiB, backing: anon }\nsteps:\n${steps}`);
  } catch (e) {
    if (e instanceof ScenarioError) return e.issues.map((x) => x.message);
    throw e;
  }
  return [];
}

describe('scenario premap steps', () => {
  it('refuses a token never registered, or used after its unregister, a register with both or neither source, and a user token invalidated', () => {
    expect(issues('  - { op: premap-read, token: x }')).toEqual([expect.stringMatching(/unknown registered buffer 'x'/)]);
    expect(issues('  - { op: premap-register, name: d, device: nvme0, len: 64KiB }\n  - { op: premap-unregister, token: d }\n  - { op: premap-read, token: d }'))
      .toEqual([expect.stringMatching(/used after its premap-unregister/)]);
    expect(issues('  - { op: mmap, buffer: u }\n  - { op: premap-register, name: d, device: nvme0, len: 64KiB, buffer: u }'))
      .toEqual([expect.stringMatching(/both buffer and len/)]);
    expect(issues('  - { op: premap-register, name: d, device: gpu0, len: 64KiB }')).toEqual([expect.stringMatching(/unknown NVMe device 'gpu0'/)]);
    expect(issues('  - { op: mmap, buffer: u }\n  - { op: premap-register, name: r, device: nvme0, buffer: u }\n  - { op: premap-invalidate, token: r, how: revoke }'))
      .toEqual([expect.stringMatching(/user buffer: it has no exporter/)]);
    expect(issues('  - { op: premap-register, name: d, device: nvme0, len: 64KiB }\n  - { op: premap-write, token: d, offset: 60KiB, len: 8KiB }'))
      .toEqual([expect.stringMatching(/runs past the registered buffer 'd'/)]);
  });

  it('runs: EAGAIN with RWF_NOWAIT after move_notify, a re-map otherwise, ENODEV after revoke, bytes checked, nothing left', () => {
    const sc = parseScenario(`name: t\n${MACHINE}steps:
  - { op: premap-register, name: d, device: nvme0, len: 64KiB }
  - { op: premap-write, token: d, len: 32KiB }
  - { op: premap-invalidate, token: d, how: move-notify }
  - { op: premap-read, token: d, offset: 32KiB, len: 32KiB, nowait: true, expect: { errno: EAGAIN } }
  - { op: premap-read, token: d, offset: 32KiB, len: 32KiB, expect: { counters: { premapMapsCreated: 1 } } }
  - { op: premap-invalidate, token: d, how: revoke }
  - { op: premap-write, token: d, len: 4KiB, expect: { errno: ENODEV } }
`);
    const r = new ScenarioRunner(sc).runAll();
    expect(r.steps.map((s) => [s.op, s.ok, s.unmet ?? null])).toEqual([
      ['premap-register', true, null], ['premap-write', true, null], ['premap-invalidate', true, null], ['premap-read', true, null],
      ['premap-read', true, null], ['premap-invalidate', true, null], ['premap-write', true, null],
    ]);
    expect(r.steps[4]!.data).toMatchObject({ checked: 32768, mismatched: 0 });
    expect(r.ok).toBe(true);
    expect(r.leaks.tornDown).toContain('registered buffer d');
    expect(r.leaks.dmaDebugLeaks).toBe(0);
  });

  it('at the end of the 16 MiB namespace (LBA 32768): a crossing write and read are short successes, ENOSPC for a write past it, 0 bytes for a read', () => {
    const sc = parseScenario(`name: t\n${MACHINE}steps:
  - { op: premap-register, name: d, device: nvme0, len: 64KiB }
  - { op: premap-write, token: d, len: 16KiB, lba: 32760 }
  - { op: premap-read, token: d, offset: 32KiB, len: 16KiB, lba: 32760 }
  - { op: premap-write, token: d, len: 4KiB, lba: 32768, expect: { errno: ENOSPC } }
  - { op: premap-read, token: d, len: 4KiB, lba: 40000 }
  - { op: premap-unregister, token: d }
`);
    const r = new ScenarioRunner(sc).runAll();
    expect(r.steps.map((s) => [s.op, s.ok, s.errno ?? null])).toEqual([
      ['premap-register', true, null], ['premap-write', true, null], ['premap-read', true, null], ['premap-write', true, 'ENOSPC'],
      ['premap-read', true, null], ['premap-unregister', true, null],
    ]);
    expect(r.steps[1]!.data).toMatchObject({ bytes: 4096, checked: 4096, mismatched: 0 });
    expect(r.steps[1]!.summary).toMatch(/short: 4 KiB of 16 KiB moved, the device ends at LBA 32768; 4,096 bytes match/);
    expect(r.steps[2]!.data).toMatchObject({ bytes: 4096, checked: 4096, mismatched: 0 });
    expect(r.steps[4]!.data).toMatchObject({ bytes: 0, commands: 0 });
    expect(r.steps[4]!.summary).toMatch(/0 bytes, end of device/);
    expect(r.counters.nvmeCtrlErrors ?? 0).toBe(0);
    expect(r.ok).toBe(true);
  });
});
