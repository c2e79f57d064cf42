// Bad scenario files: every problem is one line naming the field path, the bad value and what was
// expected; found before anything runs; `phyr run` prints them without a stack trace, exit code 2.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ScenarioError, ScenarioRunner, parseScenario, type ScenarioIssue } from '../src/scenario/file/index.ts';
import { cli } from './fixtures/cli.ts';
import { p2pSwitchPci } from './fixtures/scenario-yaml.ts';

const MACHINE = `
machine:
  ramBytes: 256MiB
  pci:
    - { name: hb0, type: host-bridge, vendor: 0x8086, device: 0x2030 }
    - { name: rp0, type: root-port, parent: hb0 }
    - { name: nvme0, type: endpoint, parent: rp0 }
    - { name: gpu0, type: endpoint, parent: rp0, bars: [{ bytes: 1MiB, p2p: true }] }
buffers:
  - { name: b0, process: app, len: 16KiB, backing: anon }
`;

/** The issues a scenario text gets (fails the test when it parses). */
function issues(text: string): ScenarioIssue[] {
  try {
    parseScenario(text, { source: 'bad.yaml' });
  } catch (e) {
    expect(e).toBeInstanceOf(ScenarioError);
    return [...(e as ScenarioError).issues];
  }
  throw new Error('the scenario was accepted');
}

function steps(...lines: string[]): string {
  return `name: t\n${MACHINE}steps:\n${lines.map((l) => `  - ${l}`).join('\n')}\n`;
}

describe('scenario validation: one clear message per problem', () => {
  it('a valid file parses, with sizes as numbers', () => {
    const s = parseScenario(steps('{ op: mmap, buffer: b0 }'));
    expect(s.buffers[0].len).toBe(16384);
    expect(s.machine.ramBytes).toBe(256 * 1024 * 1024);
  });

  it('wrong types name the path, the value and the expected type', () => {
    const is = issues(steps('{ op: mmap, buffer: b0, populate: "yes" }'));
    expect(is).toHaveLength(1);
    expect(is[0]).toMatchObject({ path: 'steps[0].populate', value: 'yes', expected: 'a boolean' });
    expect(is[0].message).toBe("steps[0].populate: 'yes' is a string (expected a boolean)");
  });

  it('a size that is not one names the accepted forms', () => {
    const is = issues(steps('{ op: mmap, buffer: b0 }').replace('len: 16KiB', 'len: 16 furlongs'));
    expect(is.map((i) => i.path)).toEqual(['buffers[0].len']);
    expect(is[0].message).toContain('"4KiB"');
  });

  it('unknown fields are rejected (strict objects), with the known ones listed', () => {
    const is = issues(steps('{ op: mmap, buffer: b0, colour: red }').replace('name: t', 'name: t\nauthor: me'));
    expect(is.map((i) => i.path).sort()).toEqual(['author', 'steps[0].colour']);
    const step = is.find((i) => i.path === 'steps[0].colour')!;
    expect(step.message).toMatch(/^steps\[0\]\.colour: unknown field 'colour' \(expected one of: op, buffer, populate, label, expect/);
  });

  it('an unknown op lists the ops', () => {
    const is = issues(steps('{ op: frobnicate }'));
    expect(is[0].path).toBe('steps[0].op');
    expect(is[0].message).toContain("unknown op 'frobnicate' (expected one of: mmap, munmap,");
  });

  it('an unknown device names the devices of the machine', () => {
    const is = issues(steps('{ op: mmap, buffer: b0 }', '{ op: map, name: m, device: nvme9, buffer: b0, method: sg }'));
    expect(is).toHaveLength(1);
    expect(is[0].message).toBe("steps[1].device: unknown device 'nvme9' (expected one of: nvme0, gpu0)");
  });

  it('steps out of order: unmap before map, use after unmap, use before mmap, unpin twice', () => {
    const is = issues(steps(
      '{ op: unmap, mapping: m }',
      '{ op: pin, name: p, buffer: b0, method: phyrs }',
      '{ op: mmap, buffer: b0 }',
      '{ op: map, name: m, device: nvme0, buffer: b0, method: phyrs }',
      '{ op: unmap, mapping: m }',
      '{ op: device-read, mapping: m }',
      '{ op: unpin, pin: q }',
    ));
    expect(is.map((i) => i.message)).toEqual([
      "steps[0].mapping: unknown mapping 'm' (expected a map step for it earlier)",
      "steps[1].buffer: buffer 'b0' is used before its mmap (expected an mmap step for it earlier)",
      "steps[5].mapping: mapping 'm' is used after its unmap (expected a live mapping (or afterUnmap: true for a deliberate stale access))",
      "steps[6].pin: unknown pin 'q' (expected a live pin: p)",
    ]);
  });

  it('a method that does not fit its pin, and a range past the buffer', () => {
    const is = issues(steps(
      '{ op: mmap, buffer: b0 }',
      '{ op: pin, name: p, buffer: b0, method: pages, offset: 8KiB, len: 16KiB }',
      '{ op: map, name: m, device: nvme0, pin: p, method: phyrs }',
    ));
    expect(is.map((i) => i.path)).toEqual(['steps[1].len', 'steps[2].method']);
    expect(is[1].message).toContain("method 'phyrs' cannot map pin 'p' (pinned with method 'pages')");
  });

  it('a device access past its mapping, or a dma-buf access past the buffer, names the step field', () => {
    const is = issues(steps(
      '{ op: mmap, buffer: b0 }',
      '{ op: map, name: m, device: nvme0, buffer: b0, offset: 4KiB, len: 8KiB, method: phyrs }',
      '{ op: device-write, mapping: m, offset: 4KiB, len: 8KiB }',
      '{ op: device-read, mapping: m, offset: 12KiB }',
      '{ op: pin, name: p, buffer: b0, method: phyrs, len: 4KiB }',
      '{ op: map, name: q, device: nvme0, pin: p, method: phys }',
      '{ op: unmap, mapping: q }',
      '{ op: device-read, mapping: q, len: 8KiB, afterUnmap: true }',
      '{ op: dmabuf-export, name: d, exporter: system-heap, len: 64KiB }',
      '{ op: dmabuf-import, name: g, dmabuf: d, device: nvme0, importer: iommufd }',
      '{ op: dmabuf-write, import: g, len: 128KiB }',
      '{ op: dmabuf-read, import: g, len: 64KiB }',
    ));
    expect(is.map((i) => i.message)).toEqual([
      "steps[2].len: offset 4096 + len 8192 runs past the mapping 'm' (8192 bytes) (expected a len <= 4096)",
      "steps[3].offset: offset 12288 is beyond the mapping 'm' (8192 bytes) (expected an offset <= 8192)",
      "steps[7].len: offset 0 + len 8192 runs past the mapping 'q' (4096 bytes) (expected a len <= 4096)",
      // the machine has no IOMMU: the iommufd import itself fails (ENODEV)
      "steps[9].device: device 'nvme0' has no IOMMU (the machine has no iommu): iommufd cannot own its DMA (expected a machine with an iommu (or expect: { errno: ENODEV }))",
      "steps[10].len: offset 0 + len 131072 runs past the dma-buf 'd' (65536 bytes) (expected a len <= 65536)",
    ]);
  });

  it('attrs on a map of a buffer are refused: drivers/umem maps without them (they would be dropped)', () => {
    const is = issues(steps(
      '{ op: mmap, buffer: b0 }',
      '{ op: map, name: m, device: nvme0, buffer: b0, method: phys, attrs: [SKIP_CPU_SYNC] }',
      '{ op: pin, name: p, buffer: b0, method: phyrs }',
      '{ op: map, name: q, device: nvme0, pin: p, method: phys, attrs: [SKIP_CPU_SYNC] }',
    ));
    expect(is.map((i) => i.message)).toEqual([
      'steps[1].attrs: a map of a buffer (drivers/umem) passes no DMA attributes (expected attrs on a map of a pin (a pin step, then map with pin))',
    ]);
  });

  it('bad enum values and an unknown backing device', () => {
    const is = issues(steps('{ op: mmap, buffer: b0 }').replace('backing: anon', 'backing: { device: gpu9.bar0 }')
      .replace('ramBytes: 256MiB', 'ramBytes: 256MiB\n  iommu: { format: x86-64, mode: strikt }'));
    expect(is.map((i) => i.message)).toEqual([
      "machine.iommu.mode: 'strikt' is not allowed (expected one of: strict, lazy, passthrough)",
    ]);
    const is2 = issues(steps('{ op: mmap, buffer: b0 }').replace('backing: anon', 'backing: { device: gpu9.bar0 }'));
    expect(is2[0].message).toBe("buffers[0].backing.device: unknown device memory 'gpu9.bar0' (expected one of: gpu0.bar0)");
  });

  it('every problem of a kind is reported at once, each on its own line (field problems, then cross references)', () => {
    const message = (text: string): string[] => {
      try {
        parseScenario(text, { source: 'bad.yaml' });
      } catch (e) {
        return (e as ScenarioError).message.split('\n');
      }
      throw new Error('accepted');
    };
    expect(message(steps('{ op: wait, ms: -1 }', '{ op: mmap, buffer: b0, populate: 1 }'))).toEqual([
      'bad.yaml: 2 problems:',
      '  steps[0].ms: -1 is too small (expected a number >= 0)',
      '  steps[1].populate: 1 is a number (expected a boolean)',
    ]);
    expect(message(steps('{ op: mmap, buffer: nope }', '{ op: unmap, mapping: m }'))).toEqual([
      'bad.yaml: 2 problems:',
      "  steps[0].buffer: unknown buffer 'nope' (expected one of: b0)",
      "  steps[1].mapping: unknown mapping 'm' (expected a map step for it earlier)",
    ]);
  });

  it('expect names a counter and an event kind a machine has, and does not ask for ok and an errno at once', () => {
    const configs = '\nconfigs:\n  other: {}\n';
    const text = steps(
      '{ op: mmap, buffer: b0, expect: { counters: { iommuMapCall: 1, iommuMapCalls: 0 } } }',
      '{ op: munmap, buffer: b0, expect: { event: { kind: WARNING } } }',
      '{ op: mmap, buffer: b0, expect: { ok: true, errno: ENOMEM }, expectIn: { other: { counters: { noSuchThing: 2 } } } }',
    ).replace('buffers:', `${configs}buffers:`);
    const got = issues(text);
    expect(got.map((i) => i.path)).toEqual([
      'steps[0].expect.counters.iommuMapCall', 'steps[1].expect.event.kind', 'steps[2].expect.ok', 'steps[2].expectIn.other.counters.noSuchThing',
    ]);
    expect(got[0].message).toMatch(/unknown counter 'iommuMapCall' \(expected a counter of machine\.stats; did you mean iommuMapCalls/);
    expect(got[1].message).toMatch(/unknown event kind 'WARNING' \(expected one of: WARN, BUG, FAULT, INFO, .*DMA-DEBUG/);
    expect(got[2].message).toMatch(/ok: true contradicts errno: ENOMEM/);
    expect(got[3].message).toMatch(/unknown counter 'noSuchThing' \(expected a counter of machine\.stats\)$/);
    // every counter a machine has and every kind its log records are accepted
    const all = steps('{ op: mmap, buffer: b0 }', `{ op: munmap, buffer: b0, expect: { counters: { ${Object.keys(new ScenarioRunner(parseScenario(steps('{ op: mmap, buffer: b0 }'))).machine.stats.snapshot()).map((k) => `${k}: 0`).join(', ')} } } }`);
    expect(() => parseScenario(all)).not.toThrow();
  });

  it('a machine createMachine refuses is a ScenarioError naming the machine, not a TypeError', () => {
    const s = parseScenario(steps('{ op: mmap, buffer: b0 }').replace('type: endpoint, parent: rp0 }', 'type: endpoint, parent: rp7 }'));
    expect(() => new ScenarioRunner(s)).toThrow(ScenarioError);
    expect(() => new ScenarioRunner(s)).toThrow(/^ {2}machine: pci\[2\] \(nvme0\)/m);
  });

  it('a probe setting the device refuses is a ScenarioError naming the field, not a RangeError or a silently kept mask', () => {
    const withDevices = (devices: string, configs = ''): string => steps('{ op: mmap, buffer: b0 }').replace('buffers:', `devices:\n${devices}\n${configs}buffers:`);
    const problems = (text: string, config?: string): string[] => {
      try {
        void new ScenarioRunner(parseScenario(text), config !== undefined ? { config } : {});
      } catch (e) {
        expect(e).toBeInstanceOf(ScenarioError);
        return (e as ScenarioError).issues.map((i) => i.message);
      }
      throw new Error('the runner was built');
    };
    // dma-direct: kernel/dma/mapping.c dma_set_mask() is -EIO for a mask dma_supported() refuses
    expect(problems(withDevices('  nvme0: { dmaMask: 20, segBoundary: 0x1234 }\n  gpu0: { minAlignMask: 0x1234, maxSegSize: 0 }'))).toEqual([
      'devices.nvme0.dmaMask: dma_set_mask_and_coherent(DMA_BIT_MASK(20)) failed with EIO (mask 0xfffff is not supported by nvme0) (expected a mask the device can address)',
      'devices.nvme0.segBoundary: dma_set_seg_boundary: mask must be a non-zero 2^k - 1 boundary mask, got 0x1234 (expected a non-zero mask 2^k - 1)',
      'devices.gpu0.maxSegSize: dma_set_max_seg_size: n must be an integer in [1, 4294967295], got 0 (expected a size in [1, 0xffffffff])',
      'devices.gpu0.minAlignMask: dma_set_min_align_mask: mask must be 2^k - 1, got 0x1234 (expected a mask 2^k - 1 of at most 32 bits)',
    ]);
    // a configuration's setting is named by its own path
    const cfg = withDevices('  nvme0: { dmaMask: 32 }', 'configs:\n  narrow:\n    devices: { nvme0: { dmaMask: 16 } }\n');
    expect(() => new ScenarioRunner(parseScenario(cfg))).not.toThrow();
    expect(problems(cfg, 'narrow')).toEqual([
      'configs.narrow.devices.nvme0.dmaMask: dma_set_mask_and_coherent(DMA_BIT_MASK(16)) failed with EIO (mask 0xffff is not supported by nvme0) (expected a mask the device can address)',
    ]);
  });

  describe('ioas-* steps', () => {
    /** The scenario with an IOMMU on the machine (MACHINE has none). */
    const withIommu = (...lines: string[]): string => steps(...lines).replace('buffers:', '  iommu: { format: x86-64, mode: strict }\nbuffers:');
    const at = (is: ScenarioIssue[]): string[] => is.map((i) => `${i.path}: ${i.message.slice(i.path.length + 2)}`);

    it('unknown IOAS names, a use after ioas-destroy, a duplicate IOAS or mapping name, a buffer not mmapped', () => {
      const is = issues(withIommu(
        '{ op: ioas-alloc, name: vm }',
        '{ op: ioas-alloc, name: vm }',
        '{ op: ioas-attach, ioas: vn, device: nvme0 }',
        '{ op: ioas-map, name: r, ioas: vm, buffer: b0 }',
        '{ op: mmap, buffer: b0 }',
        '{ op: ioas-map, name: r, ioas: vm, buffer: b0, len: 32KiB }',
        '{ op: ioas-map, name: r, ioas: vm, buffer: b0 }',
        '{ op: ioas-destroy, ioas: vm }',
        '{ op: ioas-unmap, ioas: vm, mapping: r }',
      ));
      expect(at(is)).toEqual([
        "steps[1].name: IOAS 'vm' is still live (steps[0]) (expected a new name or an ioas-destroy first)",
        "steps[2].ioas: unknown IOAS 'vn' (expected an IOAS allocated earlier: vm)",
        "steps[3].buffer: buffer 'b0' is used before its mmap (expected an mmap step for it earlier)",
        "steps[5].name: mapping 'r' is still live (steps[3]) (expected a new name or an ioas-unmap first)",
        "steps[5].len: offset 0 + len 32768 runs past the buffer 'b0' (16384 bytes) (expected a len <= 16384)",
        "steps[6].name: mapping 'r' is still live (steps[5]) (expected a new name or an ioas-unmap first)",
        "steps[8].ioas: IOAS 'vm' is used after its ioas-destroy (expected an ioas-alloc step for it earlier)",
        "steps[8].mapping: mapping 'r' is unmapped already (expected an ioas-map step for it earlier)",
      ]);
    });

    it('a device without an IOMMU, an unknown one, one detached while not attached, an IOAS destroyed while a device is attached; an attach of an attached device is a replace', () => {
      const none = issues(steps('{ op: ioas-alloc, name: vm }', '{ op: ioas-attach, ioas: vm, device: nvme0 }'));
      expect(at(none)).toEqual(["steps[1].device: device 'nvme0' has no IOMMU (the machine has no iommu): iommufd cannot own its DMA (expected a machine with an iommu (or expect: { errno: ENODEV }))"]);
      const is = issues(withIommu(
        '{ op: ioas-alloc, name: vm }',
        '{ op: ioas-attach, ioas: vm, device: nvme9 }',
        '{ op: ioas-attach, ioas: vm, device: nvme0 }',
        '{ op: ioas-attach, ioas: vm, device: nvme0 }',
        '{ op: ioas-alloc, name: vm2 }',
        '{ op: ioas-attach, ioas: vm2, device: nvme0 }',
        '{ op: ioas-detach, device: gpu0 }',
        '{ op: ioas-destroy, ioas: vm }',
        '{ op: ioas-destroy, ioas: vm2 }',
        '{ op: ioas-destroy, ioas: vm2, expect: { errno: EBUSY } }',
      ));
      expect(at(is)).toEqual([
        "steps[1].device: unknown device 'nvme9' (expected one of: nvme0, gpu0)",
        "steps[6].device: device 'gpu0' is not attached to an IOAS (expected an attached device: nvme0)",
        "steps[8].ioas: IOAS 'vm2' still has nvme0 attached: IOMMU_DESTROY is EBUSY while a hw_pagetable holds it (expected an ioas-detach of it first (or expect: { errno: EBUSY }))",
      ]);
    });

    it('a kernel driver and iommufd exclude each other: a probe of an attached device is EBUSY, an attach or iommufd import of a driven one EPERM, an import of a bound one EINVAL; with those errnos expected the runner agrees', () => {
      const machine = `${MACHINE.replace('- { name: nvme0, type: endpoint, parent: rp0 }',
        '- { name: nvme0, type: endpoint, parent: rp0, bars: [{ bytes: 16KiB }], nvme: { sgls: true, mdts: 0, namespaces: [{ nsid: 1, bytes: 1GiB, lbaBytes: 512 }] } }')
        .replace('buffers:', '  iommu: { format: x86-64, mode: strict }\nbuffers:')}`;
      const lines = [
        '{ op: mmap, buffer: b0 }',
        '{ op: ioas-alloc, name: vm }',
        '{ op: ioas-attach, ioas: vm, device: nvme0 }',
        '{ op: block-write, device: nvme0, buffer: b0, len: 4KiB@EBUSY }',
        '{ op: ioas-detach, device: nvme0 }',
        '{ op: block-write, device: nvme0, buffer: b0, len: 4KiB }',
        '{ op: ioas-attach, ioas: vm, device: nvme0@EPERM }',
        '{ op: dmabuf-export, name: d, exporter: vfio-bar, device: gpu0, len: 16KiB }',
        '{ op: dmabuf-import, name: i1, dmabuf: d, device: nvme0, importer: iommufd@EPERM }',
        '{ op: ioas-attach, ioas: vm, device: gpu0 }',
        '{ op: dmabuf-import, name: i2, dmabuf: d, device: gpu0, importer: iommufd@EINVAL }',
        '{ op: dmabuf-import, name: i3, dmabuf: d, device: gpu0, importer: gpu@EBUSY }',
      ];
      const text = (withErrno: boolean): string => `name: t\n${machine}steps:\n${lines.map((l) => `  - ${l.replace(/@(\w+) }$/, withErrno ? ', expect: { errno: $1 } }' : ' }')}`).join('\n')}\n`;
      expect(at(issues(text(false)))).toEqual([
        "steps[3].device: device 'nvme0' is attached to IOAS 'vm': iommufd owns its DMA, so the nvme driver's probe is EBUSY (iommu_device_use_default_domain) (expected an ioas-detach first (or expect: { errno: EBUSY }))",
        "steps[6].device: device 'nvme0' is driven by nvme (probed for steps[5]): its DMA uses the default domain, so iommufd cannot own it (EPERM, iommu_device_claim_dma_owner) (expected a device no kernel driver drives (or expect: { errno: EPERM }))",
        "steps[8].device: device 'nvme0' is driven by nvme (probed for steps[5]): its DMA uses the default domain, so iommufd cannot own it (EPERM, iommu_device_claim_dma_owner) (expected a device no kernel driver drives (or expect: { errno: EPERM }))",
        "steps[10].device: device 'gpu0' is attached to IOAS 'vm' already: a device is bound to iommufd once (EINVAL, VFIO_DEVICE_BIND_IOMMUFD) (expected a device not bound to iommufd (or expect: { errno: EINVAL }))",
        "steps[11].device: device 'gpu0' is attached to IOAS 'vm': iommufd owns its DMA, so the amdgpu driver's probe is EBUSY (iommu_device_use_default_domain) (expected an ioas-detach first (or expect: { errno: EBUSY }))",
      ]);
      const res = new ScenarioRunner(parseScenario(text(true))).runAll();
      expect(res.steps.map((x) => x.errno ?? 'ok'), res.steps.map((x) => x.summary).join('\n'))
        .toEqual(['ok', 'ok', 'ok', 'EBUSY', 'ok', 'ok', 'EPERM', 'ok', 'EPERM', 'ok', 'EINVAL', 'EBUSY']);
      expect(res.ok).toBe(true);
    });

    describe('per configuration and driver ownership', () => {
      const head = (configs: string): string => `name: t
machine:
  ramBytes: 256MiB
  pci:
${p2pSwitchPci('nvme0')}
  iommu: { format: x86-64, mode: strict }
${configs}buffers:
  - { name: g, process: vmm, len: 64KiB, backing: anon }
steps:
`;
      const file = (configs: string, ...lines: string[]): string => `${head(configs)}${lines.map((l) => `  - ${l}\n`).join('')}`;

      it('a map or copy granting no access is refused before the run, unless the step expects the EINVAL the run then gives', () => {
        const lines = [
          '{ op: mmap, buffer: g }',
          '{ op: ioas-alloc, name: vm }',
          '{ op: ioas-attach, ioas: vm, device: nvme0 }',
          '{ op: ioas-map, name: ram, ioas: vm, buffer: g, iova: 0x100000 }',
          '{ op: ioas-map, name: none, ioas: vm, buffer: g, iova: 0x200000, readable: false, writeable: false@ }',
          '{ op: ioas-copy, name: c, srcIoas: vm, mapping: ram, dstIoas: vm, readable: false, writeable: false@ }',
        ];
        const text = (x: string): string => file('', ...lines.map((l) => l.replace('@ }', x)));
        expect(at(issues(text(' }')))).toEqual([
          'steps[4].writeable: readable and writeable both false: the map would grant no access (the kernel refuses it with EINVAL) (expected readable or writeable true (or expect: { errno: EINVAL }))',
          'steps[5].writeable: readable and writeable both false: the copy would grant no access (the kernel refuses it with EINVAL) (expected readable or writeable true (or expect: { errno: EINVAL }))',
        ]);
        const res = new ScenarioRunner(parseScenario(text(', expect: { errno: EINVAL } }'))).runAll();
        expect(res.steps.map((x) => x.errno ?? 'ok')).toEqual(['ok', 'ok', 'ok', 'ok', 'EINVAL', 'EINVAL']);
        expect(res.ok).toBe(true);
      });

      it('an issue some runs find is listed once, at its step, naming the runs; what it expects is the first run\'s', () => {
        const is = issues(file('configs:\n  a: {}\n',
          '{ op: mmap, buffer: g }',
          '{ op: ioas-alloc, name: vm, expect: { errno: ENOMEM }, expectIn: { a: {} } }',
          '{ op: ioas-attach, ioas: vm, device: nvme0 }',
          '{ op: ioas-alloc, name: w, expectIn: { a: { errno: ENOMEM } } }',
          '{ op: ioas-map, name: r, ioas: w, buffer: g, expectIn: { a: { errno: ENOSPC } } }',
          '{ op: ioas-unmap, ioas: w, mapping: r }',
          '{ op: ioas-attach, ioas: typo, device: nvme0 }'));
        expect(at(is)).toEqual([
          "steps[2].ioas: unknown IOAS 'vm' (expected an ioas-alloc step for it earlier) (without a configuration)",
          "steps[4].ioas: unknown IOAS 'w' (expected an IOAS allocated earlier: vm) (in configuration a)",
          "steps[5].ioas: unknown IOAS 'w' (expected an IOAS allocated earlier: vm) (in configuration a)",
          "steps[5].mapping: unknown mapping 'r' (expected an ioas-map step for it earlier) (in configuration a)",
          "steps[6].ioas: unknown IOAS 'typo' (expected an IOAS allocated earlier: w)",
        ]);
      });

      it('a configuration without an IOMMU: an attach there is ENODEV, which its expectIn may expect; the run agrees', () => {
        const lines = ['{ op: mmap, buffer: g }', '{ op: ioas-alloc, name: vm }', '{ op: ioas-attach, ioas: vm, device: nvme0@ }'];
        const text = (x: string): string => file('configs:\n  noi: { machine: { iommu: null } }\n', ...lines.map((l) => l.replace('@ }', x)));
        expect(at(issues(text(' }')))).toEqual([
          "steps[2].device: device 'nvme0' has no IOMMU (the machine has no iommu): iommufd cannot own its DMA (expected a machine with an iommu (or expect: { errno: ENODEV })) (in configuration noi)",
        ]);
        const ok = parseScenario(text(', expectIn: { noi: { errno: ENODEV } } }'));
        expect(new ScenarioRunner(ok, { config: 'noi' }).runAll().steps.map((x) => x.errno ?? 'ok')).toEqual(['ok', 'ok', 'ENODEV']);
        expect(new ScenarioRunner(ok).runAll().ok).toBe(true);
      });

      it('a step expected to fail after its probe leaves the driver bound: a later attach is EPERM; an unknown NVMe device gets one issue, not an EBUSY too', () => {
        expect(at(issues(file('',
          '{ op: dmabuf-export, name: slice, exporter: vfio-bar, device: gpu0, len: 64KiB }',
          '{ op: dmabuf-revoke, dmabuf: slice }',
          '{ op: dmabuf-import, name: i, dmabuf: slice, device: gpu1, importer: gpu, expect: { errno: ENODEV } }',
          '{ op: ioas-alloc, name: vm }',
          '{ op: ioas-attach, ioas: vm, device: gpu1 }',
          '{ op: ioas-attach, ioas: vm, device: gpu0 }',
          '{ op: mmap, buffer: g }',
          '{ op: block-read, device: gpu0, buffer: g, len: 4KiB }')))).toEqual([
          "steps[4].device: device 'gpu1' is driven by amdgpu (probed for steps[2]): its DMA uses the default domain, so iommufd cannot own it (EPERM, iommu_device_claim_dma_owner) (expected a device no kernel driver drives (or expect: { errno: EPERM }))",
          "steps[7].device: unknown NVMe device 'gpu0' (expected a declared name (none is declared))",
        ]);
      });

      it('an ioas-attach of the device of an iommufd import moves it off the import\'s IOAS: a later access of the import faults, and the run agrees', () => {
        const lines = [
          '{ op: dmabuf-export, name: slice, exporter: vfio-bar, device: gpu0, len: 64KiB }',
          '{ op: dmabuf-import, name: imp, dmabuf: slice, device: nvme0, importer: iommufd }',
          '{ op: dmabuf-read, import: imp }',
          '{ op: ioas-alloc, name: vm }',
          '{ op: ioas-attach, ioas: vm, device: nvme0 }',
          '{ op: dmabuf-read, import: imp@ }',
        ];
        const text = (x: string): string => file('', ...lines.map((l) => l.replace('@ }', x)));
        expect(at(issues(text(' }')))).toEqual([
          "steps[5].import: import 'imp' has lost its device: the ioas-attach of steps[4] moved nvme0 off the import's IOAS (VFIO's attach replaces), so its DMA there faults (expected the access before that ioas-attach (or expect: { errno: EFAULT }))",
        ]);
        const res = new ScenarioRunner(parseScenario(text(', expect: { errno: EFAULT } }'))).runAll();
        expect(res.steps.map((x) => x.errno ?? 'ok')).toEqual(['ok', 'ok', 'ok', 'ok', 'ok', 'EFAULT']);
        expect(res.ok).toBe(true);
      });
    });

    it('device access through an IOAS mapping: the device must be named when the IOAS has not one; a map mapping only by its own device; the kinds of unmap do not mix', () => {
      const is = issues(withIommu(
        '{ op: mmap, buffer: b0 }',
        '{ op: ioas-alloc, name: vm }',
        '{ op: ioas-map, name: r, ioas: vm, buffer: b0 }',
        '{ op: device-read, mapping: r }',
        '{ op: ioas-attach, ioas: vm, device: nvme0 }',
        '{ op: ioas-attach, ioas: vm, device: gpu0 }',
        '{ op: device-write, mapping: r, offset: 8KiB }',
        '{ op: device-read, mapping: r, device: gpu0, len: 32KiB }',
        '{ op: map, name: m, device: nvme0, buffer: b0, method: phys }',
        '{ op: device-read, mapping: m, device: gpu0 }',
        '{ op: unmap, mapping: r }',
        '{ op: ioas-unmap, ioas: vm, mapping: m }',
        '{ op: ioas-unmap, ioas: vm }',
        '{ op: ioas-unmap, ioas: vm, mapping: r }',
        '{ op: device-read, mapping: r, device: nvme0 }',
      ));
      expect(at(is)).toEqual([
        "steps[3].device: mapping 'r' is in IOAS 'vm', which has no device attached: name the device doing the DMA (expected device: a device)",
        "steps[6].device: mapping 'r' is in IOAS 'vm', which has 2 devices (nvme0, gpu0) attached: name the device doing the DMA (expected device: one of nvme0, gpu0)",
        "steps[7].len: offset 0 + len 32768 runs past the mapping 'r' (16384 bytes) (expected a len <= 16384)",
        "steps[9].device: mapping 'm' is nvme0's DMA API mapping: its DMA addresses are for that device only (expected device: nvme0, or none)",
        "steps[10].mapping: mapping 'r' is an IOAS mapping (ioas-map): it has no DMA API mapping to sync or unmap (expected an ioas-unmap step for it, or a mapping of a map step)",
        "steps[11].mapping: mapping 'm' is a DMA API mapping (map step) (expected a live IOAS mapping: r)",
        'steps[12].mapping: neither mapping nor iova is given (expected exactly one of mapping, iova (with len))',
        "steps[14].mapping: mapping 'r' is used after its ioas-unmap (or its IOAS's ioas-destroy) (expected a live mapping (or afterUnmap: true for a deliberate stale access))",
      ]);
    });

    it('ioas-copy: the source IOAS and mapping (of that IOAS, live), the range inside the mapping, a source given once, a live name, a use after unmap or destroy', () => {
      const is = issues(withIommu(
        '{ op: mmap, buffer: b0 }',
        '{ op: ioas-alloc, name: a }',
        '{ op: ioas-alloc, name: b }',
        '{ op: ioas-map, name: r, ioas: a, buffer: b0 }',
        '{ op: map, name: m, device: nvme0, buffer: b0, method: phys }',
        '{ op: ioas-copy, name: c, srcIoas: x, mapping: r, dstIoas: b }',
        '{ op: ioas-copy, name: c, srcIoas: b, mapping: r, dstIoas: a }',
        '{ op: ioas-copy, name: c, srcIoas: a, mapping: q, dstIoas: b }',
        '{ op: ioas-copy, name: c, srcIoas: a, mapping: m, dstIoas: b }',
        '{ op: ioas-copy, name: p, srcIoas: a, mapping: r, offset: 8KiB, len: 16KiB, dstIoas: b }',
        '{ op: ioas-copy, name: c, srcIoas: a, srcIova: 0x1000, dstIoas: b }',
        '{ op: ioas-copy, name: c, srcIoas: a, srcIova: 0x1000, offset: 4KiB, len: 4KiB, dstIoas: b }',
        '{ op: ioas-copy, name: c, srcIoas: a, dstIoas: b }',
        '{ op: ioas-copy, name: c, srcIoas: a, mapping: r, dstIoas: b }',
        '{ op: ioas-copy, name: c, srcIoas: b, mapping: c, dstIoas: b, readable: false, writeable: false }',
        '{ op: device-read, mapping: c, len: 32KiB }',
        '{ op: ioas-unmap, ioas: b, mapping: c }',
        '{ op: ioas-copy, name: d, srcIoas: b, mapping: c, dstIoas: a }',
        '{ op: ioas-destroy, ioas: b }',
        '{ op: ioas-copy, name: d, srcIoas: a, mapping: r, dstIoas: b }',
        '{ op: device-read, mapping: c, device: nvme0 }',
      ));
      expect(at(is)).toEqual([
        "steps[5].srcIoas: unknown IOAS 'x' (expected an IOAS allocated earlier: a, b)",
        "steps[6].mapping: mapping 'r' is in IOAS 'a', not 'b' (expected srcIoas: a)",
        "steps[7].mapping: unknown mapping 'q' (expected a live IOAS mapping: r)",
        "steps[8].mapping: mapping 'm' is a DMA API mapping (map step): it is in no IOAS (expected a live IOAS mapping: r)",
        "steps[9].len: offset 8192 + len 16384 runs past the mapping 'r' (16384 bytes) (expected a len <= 8192)",
        'steps[10].len: a copy of an IOVA range needs its length (expected len: the bytes from srcIova)',
        'steps[11].offset: an offset is into a mapping (expected offset only with mapping (srcIova is where the range starts))',
        'steps[12].mapping: neither mapping nor srcIova is given (expected exactly one of mapping, srcIova (with len))',
        "steps[14].name: mapping 'c' is still live (steps[13]) (expected a new name or an ioas-unmap first)",
        "steps[14].writeable: readable and writeable both false: the copy would grant no access (the kernel refuses it with EINVAL) (expected readable or writeable true (or expect: { errno: EINVAL }))",
        "steps[15].device: mapping 'c' is in IOAS 'b', which has no device attached: name the device doing the DMA (expected device: a device)",
        "steps[15].len: offset 0 + len 32768 runs past the mapping 'c' (16384 bytes) (expected a len <= 16384)",
        "steps[17].mapping: mapping 'c' is used after its ioas-unmap (or its IOAS's ioas-destroy) (expected a live IOAS mapping: r, p)",
        "steps[19].dstIoas: IOAS 'b' is used after its ioas-destroy (expected an IOAS allocated earlier: a)",
        "steps[20].mapping: mapping 'c' is used after its ioas-unmap (or its IOAS's ioas-destroy) (expected a live mapping (or afterUnmap: true for a deliberate stale access))",
      ]);
    });

    it('ioas-allow-iovas and ioas-iova-ranges name a live IOAS; a range is two addresses, and what the kernel refuses (start >= last, an overlap) is the run\'s errno, not a validation error', () => {
      const is = issues(withIommu(
        '{ op: ioas-alloc, name: vm }',
        '{ op: ioas-allow-iovas, ioas: vn, ranges: [] }',
        '{ op: ioas-iova-ranges, ioas: vn }',
        '{ op: ioas-destroy, ioas: vm }',
        '{ op: ioas-allow-iovas, ioas: vm, ranges: [{ start: 0x1000, last: 0x1fff }] }',
        '{ op: ioas-iova-ranges, ioas: vm, numIovas: 1 }',
      ));
      expect(at(is)).toEqual([
        "steps[1].ioas: unknown IOAS 'vn' (expected an IOAS allocated earlier: vm)",
        "steps[2].ioas: unknown IOAS 'vn' (expected an IOAS allocated earlier: vm)",
        "steps[4].ioas: IOAS 'vm' is used after its ioas-destroy (expected an ioas-alloc step for it earlier)",
        "steps[5].ioas: IOAS 'vm' is used after its ioas-destroy (expected an ioas-alloc step for it earlier)",
      ]);
      const bad = issues(withIommu('{ op: ioas-alloc, name: vm }', '{ op: ioas-allow-iovas, ioas: vm, ranges: [{ start: 0x1000, end: 0x2000 }] }'));
      expect(at(bad)).toEqual([
        'steps[1].ranges[0].last: missing (expected last IOVA, inclusive (struct iommu_iova_range): start < last, else EINVAL)',
        "steps[1].ranges[0].end: unknown field 'end' (expected one of: start, last)",
      ]);
      expect(() => parseScenario(withIommu(
        '{ op: ioas-alloc, name: vm }',
        '{ op: ioas-allow-iovas, ioas: vm, ranges: [{ start: 0x2000, last: 0x1000 }], expect: { errno: EINVAL } }',
      ))).not.toThrow();
    });

    it('ioas-map of a dma-buf: exactly one of buffer and dmabuf, a known dma-buf, a slice inside it, a device access inside the mapping', () => {
      const is = issues(withIommu(
        '{ op: mmap, buffer: b0 }',
        '{ op: ioas-alloc, name: vm }',
        '{ op: ioas-attach, ioas: vm, device: nvme0 }',
        '{ op: dmabuf-export, name: s, exporter: vfio-bar, device: gpu0, len: 64KiB }',
        '{ op: ioas-map, name: r1, ioas: vm }',
        '{ op: ioas-map, name: r2, ioas: vm, buffer: b0, dmabuf: s }',
        '{ op: ioas-map, name: r3, ioas: vm, dmabuf: t }',
        '{ op: ioas-map, name: r4, ioas: vm, dmabuf: s, offset: 32KiB, len: 64KiB }',
        '{ op: ioas-map, name: d, ioas: vm, dmabuf: s, offset: 32KiB }',
        '{ op: device-read, mapping: d, offset: 16KiB, len: 32KiB }',
      ));
      expect(at(is)).toEqual([
        'steps[4].buffer: neither buffer nor dmabuf is given (expected exactly one of buffer, dmabuf)',
        'steps[5].dmabuf: both buffer and dmabuf are given (expected exactly one of buffer, dmabuf)',
        "steps[6].dmabuf: unknown dma-buf 't' (expected one made earlier: s)",
        "steps[7].len: offset 32768 + len 65536 runs past the dma-buf 's' (65536 bytes) (expected a len <= 32768)",
        "steps[9].len: offset 16384 + len 32768 runs past the mapping 'd' (32768 bytes) (expected a len <= 16384)",
      ]);
    });
  });

  describe('expectIn: names and step order are checked in each configuration, with the expect it has there', () => {
    /** The scenario with an IOMMU and configurations `a` and `b` (MACHINE has no IOMMU and no configs). */
    const inConfigs = (...lines: string[]): string => steps(...lines)
      .replace('buffers:', '  iommu: { format: x86-64, mode: strict }\nconfigs:\n  a: {}\n  b: {}\nbuffers:');
    const messages = (text: string): string[] => issues(text).map((i) => i.message);

    it('a map that fails only in one configuration makes no mapping there: its later use is an issue of that configuration', () => {
      expect(messages(inConfigs(
        '{ op: mmap, buffer: b0 }',
        '{ op: ioas-alloc, name: vm }',
        '{ op: ioas-attach, ioas: vm, device: nvme0 }',
        '{ op: ioas-map, name: r, ioas: vm, buffer: b0, expectIn: { a: { errno: ENOSPC } } }',
        '{ op: device-read, mapping: r }',
        '{ op: ioas-unmap, ioas: vm, mapping: r }',
      ))).toEqual([
        "steps[4].mapping: unknown mapping 'r' (expected a map step for it earlier) (in configuration a)",
        "steps[5].mapping: unknown mapping 'r' (expected an ioas-map step for it earlier) (in configuration a)",
      ]);
    });

    it('an attach that fails everywhere but one configuration leaves two devices on the IOAS there: the device access must name one in that configuration', () => {
      expect(messages(inConfigs(
        '{ op: mmap, buffer: b0 }',
        '{ op: ioas-alloc, name: vm }',
        '{ op: ioas-attach, ioas: vm, device: nvme0 }',
        '{ op: ioas-attach, ioas: vm, device: gpu0, expect: { errno: EPERM }, expectIn: { b: { ok: true } } }',
        '{ op: ioas-map, name: r, ioas: vm, buffer: b0 }',
        '{ op: device-read, mapping: r }',
      ))).toEqual([
        "steps[5].device: mapping 'r' is in IOAS 'vm', which has 2 devices (nvme0, gpu0) attached: name the device doing the DMA (expected device: one of nvme0, gpu0) (in configuration b)",
      ]);
    });

    it('an issue of every run is listed once and plain; one of some runs names them, the base machine as "without a configuration"', () => {
      expect(messages(inConfigs(
        '{ op: mmap, buffer: b0 }',
        '{ op: ioas-alloc, name: vm, expectIn: { a: { errno: ENOMEM }, b: { errno: ENOMEM } } }',
        '{ op: ioas-alloc, name: vm, expectIn: { b: { errno: ENOMEM } } }',
        '{ op: ioas-attach, ioas: vm, device: nvme9 }',
        '{ op: ioas-alloc, name: w }',
        '{ op: ioas-map, name: r, ioas: w, buffer: b0, expect: { errno: EFAULT }, expectIn: { b: {} } }',
        '{ op: device-read, mapping: r, device: nvme0 }',
      ))).toEqual([
        "steps[2].name: IOAS 'vm' is still live (steps[1]) (expected a new name or an ioas-destroy first) (without a configuration)",
        "steps[3].device: unknown device 'nvme9' (expected one of: nvme0, gpu0)",
        "steps[3].ioas: unknown IOAS 'vm' (expected an ioas-alloc step for it earlier) (in configuration b)",
        "steps[6].mapping: unknown mapping 'r' (expected a map step for it earlier) (without a configuration and in configuration a)",
      ]);
    });

    it('a file without configurations is checked once, with expect', () => {
      expect(messages(steps(
        '{ op: mmap, buffer: b0 }',
        '{ op: ioas-alloc, name: vm }',
        '{ op: ioas-map, name: r, ioas: vm, buffer: b0, expect: { errno: EFAULT } }',
        '{ op: ioas-unmap, ioas: vm, mapping: r }',
      ).replace('buffers:', '  iommu: { format: x86-64, mode: strict }\nbuffers:'))).toEqual([
        "steps[3].mapping: unknown mapping 'r' (expected an ioas-map step for it earlier)",
      ]);
    });
  });

  it('an unknown --config is a ScenarioError', () => {
    const s = parseScenario(steps('{ op: mmap, buffer: b0 }'));
    expect(() => new ScenarioRunner(s, { config: 'fast' })).toThrow(/config: unknown configuration 'fast'/);
  });
});

describe('phyr run of a bad file: messages, no stack trace, exit code 2', () => {
  const dir = mkdtempSync(join(tmpdir(), 'phyr-bad-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, text: string): string => {
    const f = join(dir, name);
    writeFileSync(f, text);
    return f;
  };

  it('an invalid file', () => {
    const f = write('bad.yaml', steps('{ op: unmap, mapping: m }', '{ op: map, name: x, device: nvme9, buffer: b0, method: sg }'));
    const r = cli(['run', f]);
    expect(r.code).toBe(2);
    expect(r.out).toBe('');
    expect(r.err).toContain("steps[0].mapping: unknown mapping 'm'");
    expect(r.err).toContain("steps[1].device: unknown device 'nvme9' (expected one of: nvme0, gpu0)");
    expect(r.err).not.toMatch(/\n\s+at /);
  });

  it('a file that is not YAML, a missing file, a machine that cannot be built', () => {
    const notYaml = cli(['run', write('x.yaml', 'name: [unclosed\n')]);
    expect(notYaml.code).toBe(2);
    expect(notYaml.err).toMatch(/\(file\): /);
    const missing = cli(['run', join(dir, 'missing.yaml')]);
    expect(missing.code).toBe(2);
    expect(missing.err).toContain('no such file');
    const machine = cli(['run', write('m.yaml', steps('{ op: mmap, buffer: b0 }').replace('ramBytes: 256MiB', 'ramBytes: 1KiB'))]);
    expect(machine.code).toBe(2);
    expect(machine.err).toMatch(/machine: ramBytes/);
    for (const r of [notYaml, missing, machine]) expect(r.err).not.toMatch(/\n\s+at /);
  });

  it('a JSON file is read as JSON', () => {
    const f = write('ok.json', JSON.stringify({ name: 'j', machine: { ramBytes: '64MiB' }, steps: [] }));
    const r = cli(['run', f]);
    expect(r.code).toBe(0);
    expect(r.out).toContain('result: ok (0 steps)');
  });
});
