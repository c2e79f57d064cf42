// `phyr trace`: the address trace of a scenario file's buffer, run in-process; its JSON agrees with
// the CPU view, the default step keeps a mapping live, and bad input is one message with exit 2.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cli } from './fixtures/cli.ts';

const FILE = 'test/fixtures/scenarios/trace-iommu.yaml';

interface JsonView { mapping: string; agrees: boolean; unmapped: boolean; descriptor: { kind: string; index: number }; access: { phys: string | null; fault: string | null; addressKind: string; swiotlb: { origAddr: string } | null; iommu: { walk: Array<{ entryBytes: string }> } | null } }
interface JsonRun { offset: number; len: number; cpu: { phys: string; va: string }; devices: JsonView[] }
interface JsonTrace { buffer: string; afterStep: number; offset: number | null; runs: JsonRun[] }

function json(args: string[]): JsonTrace {
  const r = cli(['trace', ...args, '--json']);
  expect(r.err).toBe('');
  expect(r.code).toBe(0);
  return JSON.parse(r.out) as JsonTrace;
}

/** The temporary directories tmpScenario made, removed when the file's tests are done. */
const tmpDirs: string[] = [];
afterAll(() => {
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
});

function tmpScenario(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'phyr-trace-'));
  tmpDirs.push(dir);
  const f = join(dir, 's.yaml');
  writeFileSync(f, text);
  return f;
}

describe('phyr trace', () => {
  it('traces a byte after the last step that leaves the buffer mapped, through the IOMMU walk, as text', () => {
    const r = cli(['trace', FILE, '--buffer', 'buf', '--offset', '0x1234']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^trace of buffer buf \(process app, va 0x[0-9a-f]+, 16 KiB\) after step 6: byte 4660/);
    expect(r.out).toMatch(/user PTE #\d+ = 0x[0-9a-f]+ \(4 KiB/);
    expect(r.out).toMatch(/DEV {3}nvme0 via mapping m0 \(sg, bidirectional\): sg entry 0/);
    expect(r.out).toMatch(/level 0 table 0x[0-9a-f]+ \[\s*\d+\] = ([0-9a-f]{2} ){7}[0-9a-f]{2} {2}leaf 4 KiB/);
    // step 5 read the mapping through the device: its translation is in the IOTLB
    expect(r.out).toMatch(/IOTLB hit/);
    expect(r.out).toContain('agrees with the CPU view');
    expect(r.out).not.toContain('m1'); // unmapped by step 6
  });

  it('--step keeps both mappings; --json gives the same addresses as hex strings, the device phys equal to the CPU phys', () => {
    const t = json([FILE, '--buffer', 'buf', '--offset', '4660', '--step', '4']);
    expect(t).toMatchObject({ buffer: 'buf', afterStep: 4, offset: 4660 });
    const run = t.runs[0];
    expect(run.cpu.phys).toMatch(/^0x[0-9a-f]+$/);
    expect(run.devices.map((v) => v.mapping)).toEqual(['m0', 'm1']);
    for (const v of run.devices) {
      expect(v.access.addressKind).toBe('IOVA');
      expect(v.access.phys).toBe(run.cpu.phys);
      expect(v.agrees).toBe(true);
      expect(v.access.iommu!.walk).toHaveLength(4);
    }
    expect(run.devices.map((v) => v.descriptor.kind)).toEqual(['sg entry', 'DMA list entry']);
  });

  it('without --offset shows the whole buffer in runs that cover it', () => {
    const t = json([FILE, '--buffer', 'buf', '--step', '4']);
    expect(t.offset).toBeNull();
    expect(t.runs.map((r) => [r.offset, r.len, r.devices.length])).toEqual([
      [0, 4096, 1], [4096, 4096, 2], [8192, 4096, 2], [12288, 4096, 1],
    ]);
  });

  it('shows the swiotlb slot of a bounced byte and the original it bounces', () => {
    const f = tmpScenario(`
name: bounced
machine:
  ramBytes: 1GiB
  swiotlb: { bytes: 4MiB, force: true }
  pci:
    - { name: hb0, type: host-bridge, vendor: 0x8086, device: 0x2030 }
    - { name: rp0, type: root-port, parent: hb0 }
    - { name: nvme0, type: endpoint, parent: rp0, bars: [{ bytes: 16KiB }] }
buffers:
  - { name: buf, len: 8KiB, backing: anon }
steps:
  - { op: mmap, buffer: buf, populate: true }
  - { op: map, name: m0, device: nvme0, buffer: buf, offset: 100, len: 5000, method: phys }
  - { op: unmap, mapping: m0 }
`);
    const t = json([f, '--buffer', 'buf', '--offset', '3000']);
    const v = t.runs[0].devices[0];
    expect(t.afterStep).toBe(1);
    expect(v.access.addressKind).toBe('dma-direct address');
    expect(v.access.swiotlb!.origAddr).toBe(t.runs[0].cpu.phys);
    expect(v.access.phys).not.toBe(t.runs[0].cpu.phys);
    expect(cli(['trace', f, '--buffer', 'buf', '--offset', '3000']).out).toMatch(/swiotlb slot \d+ at 0x[0-9a-f]+ \(pool 0x[0-9a-f]+\): bounces phys 0x/);
  });

  it('--unmapped follows an unmapped mapping\'s old IOVA: a STALE IOTLB hit reaching the byte in the lazy window, a fault once the flush queue flushed', () => {
    const lazy = 'test/fixtures/scenarios/trace-lazy.yaml';
    // without --unmapped an unmapped mapping is not shown
    expect(json([lazy, '--buffer', 'buf', '--offset', '100', '--step', '3']).runs[0].devices).toEqual([]);
    const stale = json([lazy, '--buffer', 'buf', '--offset', '100', '--step', '3', '--unmapped']).runs[0];
    expect(stale.devices).toHaveLength(1);
    expect(stale.devices[0]).toMatchObject({ mapping: 'm', unmapped: true, agrees: true, access: { phys: stale.cpu.phys, iommu: { walkPhys: null, iotlb: { hit: true, stale: true } } } });
    const text = cli(['trace', lazy, '--buffer', 'buf', '--offset', '100', '--step', '3', '--unmapped']).out;
    expect(text).toContain('UNMAPPED, its old address');
    expect(text).toContain('STALE: an access with the old address still reaches the byte');
    const flushed = json([lazy, '--buffer', 'buf', '--offset', '100', '--step', '4', '--unmapped']).runs[0].devices[0];
    expect(flushed).toMatchObject({ unmapped: true, agrees: false, access: { phys: null, iommu: { iotlb: { hit: false } } } });
    expect(flushed.access).toMatchObject({ fault: expect.stringMatching(/no translation for iova/) as unknown });
  });

  it.each([
    [['--buffer', 'nope'], /error: --buffer "nope" is not a buffer of .*trace-iommu\.yaml \(buffers: buf\)/],
    [['--buffer', 'buf', '--offset', '16384'], /error: --offset 16384 is outside buffer buf \(16384 bytes: offsets 0 to 16383\)/],
    [['--buffer', 'buf', '--offset', '-1'], /--offset must be a non-negative integer/],
    [['--buffer', 'buf', '--step', '9'], /error: --step 9 is beyond the scenario's last step \(8\)/],
  ])('bad input %j is one message, exit 2, no stack trace', (args, msg) => {
    const r = cli(['trace', FILE, ...args]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(msg);
    expect(r.err).not.toMatch(/\n\s+at /);
    expect(r.out).toBe('');
  });

  it('--step 0 (the mmap alone) traces the CPU side with no device view', () => {
    const r = cli(['trace', FILE, '--buffer', 'buf', '--step', '0', '--offset', '1']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/after step 0: byte 1/);
    expect(r.out).toContain('no live device mapping covers this byte');
  });

  it('a missing file, an invalid scenario file and a missing --buffer are one message each, exit 2', () => {
    const missing = cli(['trace', 'no/such/file.yaml', '--buffer', 'buf']);
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/cannot read scenario file "no\/such\/file\.yaml": ENOENT/);
    const bad = cli(['trace', tmpScenario('name: x\nmachine: { ramBytes: lots }\nsteps: []\n'), '--buffer', 'buf']);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/machine\.ramBytes/);
    expect(bad.err).not.toMatch(/\n\s+at /);
    const noBuf = cli(['trace', FILE]);
    expect(noBuf.code).toBe(2);
    expect(noBuf.err).toMatch(/required option '--buffer <name>'/);
  });
});

/** The `$ phyr trace ...` examples of docs/cli.md: the command's arguments and the output the doc shows. */
const DOC_EXAMPLES = [...readFileSync(join(import.meta.dirname, '..', 'docs', 'cli.md'), 'utf8').matchAll(/```\n\$ phyr (trace [^\n]+)\n([\s\S]*?)```/g)]
  .map((m) => ({ command: m[1], args: m[1].split(/\s+/), shown: m[2] }));

describe('docs/cli.md\'s phyr trace examples', () => {
  it('has the DMA-API and the IOAS examples', () => {
    expect(DOC_EXAMPLES.map((e) => e.args[1])).toEqual(expect.arrayContaining(['test/fixtures/scenarios/trace-iommu.yaml', 'examples/iommufd-shared-ioas.yaml']));
  });
  it.each(DOC_EXAMPLES.map((e) => [e.command, e] as const))('%s prints what the doc shows', (_c, e) => {
    const r = cli(e.args);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toBe(e.shown);
  });
});
