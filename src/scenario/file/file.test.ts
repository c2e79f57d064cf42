// The scenario runner: step-by-step state, expectations, stopping cleanly with everything torn down,
// determinism per seed, JSON output, sweeps.
import { describe, expect, it } from 'vitest';
import {
  ScenarioRunner, formatScenarioResult, parseScenario, parseSeeds, runScenario, runSweep, scenarioJson, sweepCsv, sweepRuns,
} from './index.ts';
import { p2pSwitchPci, rootPortPci } from '../../../test/fixtures/scenario-yaml.ts';

const BASE = `
name: t
machine:
  ramBytes: 256MiB
  pci:
${rootPortPci('nvme0')}
  iommu: { format: x86-64, mode: strict }
  swiotlb: { bytes: 1MiB }
configs:
  direct:
    machine: { iommu: null, swiotlb: { bytes: 1MiB, force: true } }
buffers:
  - { name: b0, process: app, len: 64KiB, backing: anon }
  - { name: b1, process: app, len: 1MiB, backing: thp }
steps:
`;

function scenarioText(...steps: string[]): string {
  return `${BASE}${steps.map((s) => `  - ${s}\n`).join('')}`;
}

function scenario(...steps: string[]): ReturnType<typeof parseScenario> {
  return parseScenario(scenarioText(...steps));
}

const ROUND_TRIP = [
  '{ op: mmap, buffer: b0 }',
  '{ op: populate, buffer: b0 }',
  '{ op: pin, name: p, buffer: b0, method: phyrs }',
  '{ op: map, name: m, device: nvme0, pin: p, method: phyrs }',
  '{ op: device-read, mapping: m }',
  '{ op: device-write, mapping: m, offset: 4KiB, len: 8KiB }',
  '{ op: unmap, mapping: m }',
  '{ op: cpu-read, buffer: b0 }',
  '{ op: unpin, pin: p }',
];

describe('ScenarioRunner', () => {
  it('runs step by step and shows the live buffers, pins and mappings with their DMA segments', () => {
    const r = new ScenarioRunner(scenario(...ROUND_TRIP));
    expect(r.index).toBe(0);
    for (let i = 0; i < 4; i++) expect(r.step()!.ok).toBe(true);
    expect(r.index).toBe(4);
    const b = r.buffers.get('b0')!;
    expect(b.len).toBe(65536);
    expect(typeof b.va).toBe('bigint');
    expect(r.pins.get('p')!.entries).toBeGreaterThanOrEqual(1);
    const m = r.mappings.get('m')!;
    expect(m).toMatchObject({ device: 'nvme0', method: 'phyrs', dir: 'bidirectional', len: 65536 });
    expect(m.segments.reduce((a, s) => a + s.len, 0)).toBe(65536);
    // the mapping's first DMA address is an IOVA the device can read through
    const got = r.machine.device('nvme0').dmaRead(m.segments[0].dmaAddr, 16);
    expect(got.ok).toBe(true);
    const res = r.runAll();
    expect(res.ok).toBe(true);
    expect(res.steps.map((s) => s.ok)).toEqual(ROUND_TRIP.map(() => true));
    expect(r.step()).toBeNull();
    // the device write came back: the CPU read checked 64 KiB, every byte as expected
    expect(res.steps[7].data).toMatchObject({ checked: 65536, mismatched: 0 });
  });

  it('a seed is 32 bits, as phyr run --seed takes it (2^32 + 7 gave seed 7\'s bytes on another machine)', () => {
    const s = scenario(...ROUND_TRIP);
    for (const bad of [2 ** 32, 2 ** 32 + 7, -1, 1.5]) {
      expect(() => new ScenarioRunner(s, { seed: bad }), String(bad)).toThrow(/^opts\.seed must be an integer in \[0, 2\^32 - 1\]/);
    }
    expect(new ScenarioRunner(s, { seed: 2 ** 32 - 1 }).seed).toBe(2 ** 32 - 1);
    expect(() => parseScenario(BASE.replace('  ramBytes: 256MiB', '  ramBytes: 256MiB\n  seed: 4294967296') + '  - { op: mmap, buffer: b0 }\n'))
      .toThrow(/machine\.seed/);
  });

  it('the same seed gives the same result; reset() starts over on a fresh machine', () => {
    const s = scenario(...ROUND_TRIP);
    const a = scenarioJson(runScenario(s, { seed: 7 }));
    expect(scenarioJson(runScenario(s, { seed: 7 }))).toBe(a);
    const r = new ScenarioRunner(s, { seed: 7 });
    r.step();
    r.step();
    r.reset();
    expect(r.index).toBe(0);
    expect(r.buffers.size).toBe(0);
    expect(scenarioJson(r.runAll())).toBe(a);
  });

  it('a step that fails unexpectedly stops the run and teardown undoes everything live, leaking nothing', () => {
    const s = scenario(
      '{ op: mmap, buffer: b0 }',
      '{ op: populate, buffer: b0 }',
      '{ op: pin, name: p, buffer: b0, method: pages }',
      '{ op: map, name: m, device: nvme0, pin: p, method: sg }',
      // 512 KiB of one THP: more than one swiotlb mapping can bounce (256 KiB) on the force-bounce config
      '{ op: mmap, buffer: b1 }',
      '{ op: map, name: big, device: nvme0, buffer: b1, method: phys, len: 512KiB }',
      '{ op: cpu-read, buffer: b0 }',
    );
    const res = runScenario(s, { config: 'direct' });
    expect(res.ok).toBe(false);
    expect(res.stoppedAt).toBe(5);
    expect(res.steps).toHaveLength(6);
    expect(res.steps[5]).toMatchObject({ ok: false, errno: 'ENOMEM' });
    expect(res.steps[5].unmet).toBe('failed with ENOMEM');
    expect(res.leaks.tornDown).toEqual(['mapping m', 'pin p', 'buffer b1', 'buffer b0']);
    expect(res.leaks.dmaDebugLeaks).toBe(0);
    expect(formatScenarioResult(res)).toMatch(/^result: FAILED at step 5 \(map\)$/m);
  });

  it('expect: errno makes an expected failure a success (errno names such as ENOMEM are accepted)', () => {
    const s = scenario(
      '{ op: mmap, buffer: b1 }',
      '{ op: map, name: big, device: nvme0, buffer: b1, method: phys, len: 512KiB, expect: { errno: ENOMEM } }',
    );
    const res = runScenario(s, { config: 'direct' });
    expect(res.ok).toBe(true);
    expect(res.steps[1]).toMatchObject({ ok: true, errno: 'ENOMEM' });
    // and the same expectation on a machine where the map succeeds is unmet
    const res2 = runScenario(s);
    expect(res2.steps[1]).toMatchObject({ ok: false, unmet: 'expected errno ENOMEM, got success' });
  });

  it('a step expected to fail makes no object: a later use of its name is refused before the run (the runner had none to undo and crashed)', () => {
    const text = (extra: string): string => scenarioText(
      '{ op: mmap, buffer: b1 }',
      '{ op: map, name: big, device: nvme0, buffer: b1, method: phys, len: 512KiB, expect: { errno: ENOMEM } }',
      extra,
    );
    expect(() => parseScenario(text('{ op: unmap, mapping: big }'))).toThrow(/steps\[2\]\.mapping: unknown mapping 'big'/);
    // a name an expected failure did not take can be made by a later step
    const res = runScenario(parseScenario(text('{ op: map, name: big, device: nvme0, buffer: b1, method: phys, len: 64KiB }')), { config: 'direct' });
    expect(res.ok).toBe(true);
  });

  it('a byte check catches bytes that are not what was written (CPU store while the device owns a bounced buffer)', () => {
    const steps = [
      '{ op: mmap, buffer: b0 }',
      '{ op: populate, buffer: b0 }',
      '{ op: map, name: m, device: nvme0, buffer: b0, method: phys, len: 16KiB, dir: from-device }',
      '{ op: cpu-write, buffer: b0, len: 4KiB }',
      '{ op: unmap, mapping: m }',
    ];
    const stale = runScenario(scenario(...steps, '{ op: cpu-read, buffer: b0, len: 4KiB }'), { config: 'direct' });
    expect(stale.steps[3].events.some((e) => e.startsWith('MODEL-CHECK'))).toBe(true);
    expect(stale.steps[5]).toMatchObject({ ok: false });
    expect(stale.steps[5].unmet).toMatch(/^4,0\d\d bytes differ$/);
    const expected = runScenario(scenario(...steps, '{ op: cpu-read, buffer: b0, len: 4KiB, expect: { mismatch: true } }'), { config: 'direct' });
    expect(expected.ok).toBe(true);
  });

  it('expect: segments and counters are checked exactly', () => {
    const s = scenario(
      '{ op: mmap, buffer: b0 }',
      '{ op: populate, buffer: b0 }',
      '{ op: map, name: m, device: nvme0, buffer: b0, method: two-step, expect: { segments: 1, counters: { iommuMapCalls: 1 } } }',
      '{ op: map, name: n, device: nvme0, buffer: b0, method: two-step, expect: { segments: 2 } }',
    );
    const res = runScenario(s);
    expect(res.steps[2].ok).toBe(true);
    expect(res.steps[3]).toMatchObject({ ok: false, unmet: 'expected 2 DMA segments, got 1' });
  });

  it('--json output: bigints as hex strings', () => {
    const res = runScenario(scenario(...ROUND_TRIP.slice(0, 4)));
    const j = JSON.parse(scenarioJson(res)) as { steps: Array<{ data?: { va?: string; firstDmaAddr?: string } }> };
    expect(j.steps[0].data!.va).toMatch(/^0x[0-9a-f]+$/);
    expect(j.steps[3].data!.firstDmaAddr).toMatch(/^0x[0-9a-f]+$/);
  });
});

describe('sweeps', () => {
  it('parseSeeds reads N, A..B and lists', () => {
    expect(parseSeeds('1..3,7,2')).toEqual([1, 2, 3, 7]);
    expect(() => parseSeeds('3..1')).toThrow(RangeError);
    expect(() => parseSeeds('x')).toThrow(/seeds must be/);
  });

  it('one row per (configuration, seed) in a fixed order; CSV has a column per counter', () => {
    const s = scenario(...ROUND_TRIP);
    const runs = sweepRuns([null, 'direct'], [2, 1]);
    expect(runs.map((r) => `${r.config}:${r.seed}`)).toEqual(['null:2', 'null:1', 'direct:2', 'direct:1']);
    const rows = runSweep(s, runs);
    expect(rows.every((r) => r.ok)).toBe(true);
    const csv = sweepCsv(rows).trim().split('\n');
    expect(csv).toHaveLength(5);
    expect(csv[0]).toMatch(/^config,seed,ok,stoppedAt,errno,stepsOk,steps,tornDown,dmaDebugLeaks,.*iommuMapCalls/);
    expect(csv[3].startsWith('direct,2,true,,,9,9,')).toBe(true);
  });
});

/** A 1 MiB namespace of lbaBytes blocks on nvme0, a 64 KiB buffer b mapped and written by the CPU, then steps. */
function nvmeScenario(lbaBytes: number, steps: string): ReturnType<typeof parseScenario> {
  return parseScenario(`name: t
machine:
  ramBytes: 256MiB
  pci:
    - { name: hb0, type: host-bridge, vendor: 0x8086, device: 0x2030 }
    - { name: rp0, type: root-port, parent: hb0 }
    - { name: nvme0, type: endpoint, parent: rp0, nvme: { sgls: true, mdts: 0, namespaces: [{ nsid: 1, bytes: 1MiB, lbaBytes: ${lbaBytes} }] } }
  iommu: { format: x86-64, mode: strict }
buffers:
  - { name: b, process: app, len: 64KiB, backing: anon }
steps:
  - { op: mmap, buffer: b, populate: true }
  - { op: cpu-write, buffer: b }
${steps}`);
}

describe('block-write / block-read at the end of the namespace (block/fops.c)', () => {
  it('a crossing write and read move the bytes up to the end and succeed short; ENOSPC for a write past it, 0 bytes for a read; no command fails', () => {
    const r = runScenario(nvmeScenario(512, `  - { op: block-write, device: nvme0, buffer: b, len: 16KiB, lba: 2040 }
  - { op: cpu-write, buffer: b, offset: 32KiB, len: 16KiB, pattern: 99 }
  - { op: block-read, device: nvme0, buffer: b, offset: 32KiB, len: 16KiB, lba: 2040 }
  - { op: cpu-read, buffer: b, offset: 32KiB, len: 16KiB }
  - { op: block-write, device: nvme0, buffer: b, len: 4KiB, lba: 2048, expect: { errno: ENOSPC } }
  - { op: block-read, device: nvme0, buffer: b, len: 4KiB, lba: 4000 }
  - { op: block-write, device: nvme0, buffer: b, len: 4KiB, lba: 2040 }
`));
    expect(r.steps.map((s) => [s.op, s.ok, s.errno ?? null])).toEqual([
      ['mmap', true, null], ['cpu-write', true, null], ['block-write', true, null], ['cpu-write', true, null], ['block-read', true, null],
      ['cpu-read', true, null], ['block-write', true, 'ENOSPC'], ['block-read', true, null], ['block-write', true, null],
    ]);
    expect(r.steps[2]!.data).toMatchObject({ bytes: 4096, requests: 1, checked: 4096, mismatched: 0 });
    expect(r.steps[2]!.summary).toMatch(/short: 4 KiB of 16 KiB moved, the device ends at LBA 2048; 4,096 bytes match/);
    expect(r.steps[4]!.data).toMatchObject({ bytes: 4096, checked: 4096, mismatched: 0 });
    // the read brought 4 KiB into the buffer and left the 12 KiB after them as the CPU wrote them
    expect(r.steps[5]!.data).toMatchObject({ checked: 16384, mismatched: 0 });
    expect(r.steps[7]!.data).toMatchObject({ bytes: 0, requests: 0 });
    expect(r.steps[7]!.summary).toMatch(/0 bytes, end of device/);
    expect(r.steps[8]!.data).toMatchObject({ bytes: 4096 });
    expect(r.counters.nvmeCtrlErrors ?? 0).toBe(0);
    expect(r.counters.nvmeCtrlCommands).toBe(3);
    expect(r.ok).toBe(true);
  });
});

describe('a step\'s lba counts the namespace\'s logical blocks, as an NVMe SLBA does', () => {
  it('on a 4 KiB-block namespace: block and premap I/O land at lba * 4096, read back what was written, and the end is named in those blocks', () => {
    const r = runScenario(nvmeScenario(4096, `  - { op: block-write, device: nvme0, buffer: b, len: 8KiB, lba: 3 }
  - { op: block-read, device: nvme0, buffer: b, offset: 16KiB, len: 8KiB, lba: 3 }
  - { op: cpu-read, buffer: b, offset: 16KiB, len: 8KiB }
  - { op: premap-register, name: d, device: nvme0, len: 16KiB }
  - { op: premap-write, token: d, len: 8KiB, lba: 10 }
  - { op: premap-read, token: d, offset: 8KiB, len: 8KiB, lba: 10 }
  - { op: block-write, device: nvme0, buffer: b, len: 16KiB, lba: 254 }
  - { op: premap-unregister, token: d }
`));
    expect(r.steps.map((s) => [s.op, s.ok, s.errno ?? null, s.unmet ?? null]).filter((x) => !x[1] || x[3] !== null)).toEqual([]);
    expect(r.steps[2]!.data).toMatchObject({ bytes: 8192, checked: 8192, mismatched: 0 });
    expect(r.steps[3]!.data).toMatchObject({ checked: 8192, mismatched: 0 });
    expect(r.steps[6]!.data).toMatchObject({ bytes: 8192, checked: 8192, mismatched: 0 });
    expect(r.steps[7]!.data).toMatchObject({ bytes: 8192, checked: 8192, mismatched: 0 });
    // a 1 MiB namespace of 4 KiB blocks ends at LBA 256: 8 KiB of the 16 KiB fit
    expect(r.steps[8]!.data).toMatchObject({ bytes: 8192, checked: 8192, mismatched: 0 });
    expect(r.steps[8]!.summary).toMatch(/short: 8 KiB of 16 KiB moved, the device ends at LBA 256;/);
    expect(r.ok).toBe(true);
  });
});

describe('block-write / block-read off the logical block size (block/fops.c: blkdev_dio_invalid)', () => {
  it('EINVAL before any pin or bio on a 4 KiB-block namespace, not the EIO of bio_unaligned', () => {
    const r = runScenario(nvmeScenario(4096, `  - { op: block-write, device: nvme0, buffer: b, len: 6KiB, expect: { errno: EINVAL } }
  - { op: block-read, device: nvme0, buffer: b, len: 2KiB, lba: 1, expect: { errno: EINVAL } }
`));
    expect(r.steps.slice(2).map((s) => [s.op, s.ok, s.errno ?? null])).toEqual([['block-write', true, 'EINVAL'], ['block-read', true, 'EINVAL']]);
    expect(r.steps[2]!.summary).toMatch(/blkdev_dio_invalid/);
    expect(r.counters.gupPinCalls ?? 0).toBe(0);
    expect(r.ok).toBe(true);
  });
});

describe('dmabuf-revoke: only an exporter with a revoke path revokes', () => {
  const DMABUF = `
name: revoke
machine:
  ramBytes: 256MiB
  pci:
${p2pSwitchPci()}
  iommu: { format: x86-64, mode: strict }
steps:
`;
  const doc = (exporter: string, ...tail: string[]): string => `${DMABUF}${[
    exporter === 'vfio-bar' ? '{ op: dmabuf-export, name: d, exporter: vfio-bar, device: gpu0, len: 64KiB }' : '{ op: dmabuf-export, name: d, exporter: system-heap, len: 64KiB }',
    '{ op: dmabuf-import, name: g, dmabuf: d, device: gpu1, importer: gpu }',
    '{ op: dmabuf-write, import: g }',
    '{ op: dmabuf-read, import: g }',
    ...tail,
  ].map((l) => `  - ${l}\n`).join('')}`;

  it('a system-heap dma-buf: the step is refused before the run, naming its dmabuf field (system_heap.c has no revoke)', () => {
    let issues: Array<{ path: string; expected: string; message: string }> = [];
    try {
      parseScenario(doc('system-heap', '{ op: dmabuf-revoke, dmabuf: d }'));
    } catch (e) {
      issues = [...(e as { issues: typeof issues }).issues];
    }
    expect(issues.map((i) => i.path)).toEqual(['steps[4].dmabuf']);
    expect(issues[0].expected).toBe('a vfio-bar dma-buf');
    expect(issues[0].message).toMatch(/system-heap buffer: the system heap has no revoke/);
    // the same buffer without the revoke: the importer moves bytes both ways
    const r = runScenario(parseScenario(doc('system-heap')));
    expect(r.ok).toBe(true);
    expect(r.steps.every((st) => st.ok)).toBe(true);
    expect(r.steps[3].data).toMatchObject({ checked: 65536, mismatched: 0 });
  });

  it('a vfio-bar dma-buf is revoked: the importer moved bytes before, its next access faults', () => {
    const r = runScenario(parseScenario(doc('vfio-bar', '{ op: dmabuf-revoke, dmabuf: d }', '{ op: dmabuf-read, import: g, expect: { errno: EFAULT } }')));
    expect(r.ok).toBe(true);
    expect(r.steps[3].data).toMatchObject({ checked: 65536, mismatched: 0 });
    expect(r.steps[5].errno).toBe('EFAULT');
  });
});
