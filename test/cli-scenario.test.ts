// phyr run, phyr sweep and phyr help's scenario reference, through the CLI.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCliAsync } from '../src/cli/program.ts';
import { STEP_OPS } from '../src/scenario/file/index.ts';
import { cli } from './fixtures/cli.ts';
import { EXAMPLES_DIR } from './fixtures/examples.ts';

const ex = (name: string): string => join(EXAMPLES_DIR, `${name}.yaml`);

async function cliAsync(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runCliAsync(args, {
    stdout: { write: (s: string) => { out += s; } },
    stderr: { write: (s: string) => { err += s; }, isTTY: false, columns: 100 },
    env: {},
  });
  return { code, out, err };
}

describe('phyr run', () => {
  it('prints each step, the counters, the teardown and the verdict; exit 0', () => {
    const r = cli(['run', ex('swiotlb-exhaustion')]);
    expect(r.code).toBe(0);
    expect(r.err).toBe('');
    expect(r.out).toMatch(/^\[ 6\] map {12}ok \(ENOMEM expected\) dma_map_phys/m);
    expect(r.out).toMatch(/^ {7}event: INFO swiotlb: nvme0: swiotlb buffer is full/m);
    expect(r.out).toMatch(/^counters: .*swiotlbBounceBytes \+/m);
    expect(r.out).toMatch(/^result: ok \(16 steps\)$/m);
  });

  it('--json prints the result objects with bigints as hex strings', () => {
    const r = cli(['run', ex('lazy-stale-iotlb'), '--json']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out) as { name: string; ok: boolean; steps: Array<{ op: string; data?: Record<string, unknown> }> };
    expect(j.name).toBe('lazy-stale-iotlb');
    expect(j.ok).toBe(true);
    expect(j.steps[0].data!.va).toMatch(/^0x[0-9a-f]+$/);
  });

  it('--config and --seed; a run that stops at an unmet step exits 1', () => {
    const strict = cli(['run', ex('lazy-stale-iotlb'), '--config', 'strict', '--seed', '3']);
    expect(strict.code).toBe(0);
    expect(strict.out).toMatch(/^scenario: lazy-stale-iotlb \[config strict\] \(seed 3\)$/m);
    const bad = cli(['run', ex('lazy-stale-iotlb'), '--config', 'nope']);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain("config: unknown configuration 'nope' (expected one of: strict)");
  });

  it('--json of the shared-IOAS example: each ioas step carries the IOAS (devices, hw_pagetables, areas) as the model holds it after the step', () => {
    const r = cli(['run', ex('iommufd-shared-ioas'), '--json']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out) as { ok: boolean; leaks: { tornDown: string[]; dmaDebugLeaks: number }; steps: Array<{ op: string; data?: { ioas?: unknown } }> };
    expect(j.ok).toBe(true);
    const ioas = (op: string, n = 0): unknown => j.steps.filter((s) => s.op === op)[n].data!.ioas;
    const area = { iova: '0x100000', len: 65536, mapping: 'ram', pinned: true };
    expect(ioas('ioas-map')).toEqual({
      name: 'vm', devices: ['nvme0'], hwpts: [{ id: 3, auto: true, devices: ['nvme0'] }], areas: [area], iovaAlignment: 4096,
    });
    // the second attach joins the hw_pagetable that already holds the area
    expect(ioas('ioas-attach', 1)).toEqual({
      name: 'vm', devices: ['nvme0', 'nic0'], hwpts: [{ id: 3, auto: true, devices: ['nvme0', 'nic0'] }], areas: [area], iovaAlignment: 4096,
    });
    expect(ioas('ioas-detach')).toMatchObject({ devices: ['nvme0'], hwpts: [{ id: 3, auto: true, devices: ['nvme0'] }] });
    expect(ioas('ioas-unmap')).toMatchObject({ areas: [] });
    expect(j.leaks).toEqual({ tornDown: ['buffer guest'], dmaDebugLeaks: 0 });
  });
});

describe('phyr sweep', () => {
  it('CSV: a header and one row per seed, in seed order', () => {
    const r = cli(['sweep', ex('swiotlb-exhaustion'), '--seeds', '1..3']);
    expect(r.code).toBe(0);
    const lines = r.out.trim().split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(/^config,seed,ok,stoppedAt,errno,stepsOk,steps,tornDown,dmaDebugLeaks,/);
    expect(lines.slice(1).map((l) => l.split(',').slice(0, 3).join(','))).toEqual([',1,true', ',2,true', ',3,true']);
  });

  it('--configs all and --format json', () => {
    const r = cli(['sweep', ex('lazy-stale-iotlb'), '--seeds', '1,2', '--configs', 'base,all'.replace(',all', ',strict'), '--format', 'json']);
    expect(r.code).toBe(0);
    const rows = JSON.parse(r.out) as Array<{ config: string | null; seed: number; ok: boolean }>;
    expect(rows.map((x) => `${x.config}:${x.seed}:${x.ok}`)).toEqual(['null:1:true', 'null:2:true', 'strict:1:true', 'strict:2:true']);
  });

  it('the same rows with 0 (this thread), 1 and 2 worker threads', async () => {
    const args = ['sweep', ex('cpu-write-device-owned'), '--seeds', '1..4', '--format', 'json'];
    const here = await cliAsync([...args, '--workers', '0']);
    const one = await cliAsync([...args, '--workers', '1']);
    const two = await cliAsync([...args, '--workers', '2']);
    expect([here.code, one.code, two.code]).toEqual([0, 0, 0]);
    expect(JSON.parse(two.out)).toHaveLength(4);
    expect(one.out).toBe(here.out);
    expect(two.out).toBe(here.out);
  }, 120_000);

  it('the progress bar is drawn on a terminal only', () => {
    const tty = cli(['sweep', ex('swiotlb-exhaustion'), '--seeds', '1..2'], { isTTY: true });
    expect(tty.err).toContain('2 of 2 runs');
    const pipe = cli(['sweep', ex('swiotlb-exhaustion'), '--seeds', '1..2']);
    expect(pipe.err).toBe('');
    expect(tty.out).toBe(pipe.out);
  });

  it('bad --seeds, --configs and files are usage errors (exit 2) without a stack trace', () => {
    const seeds = cli(['sweep', ex('swiotlb-exhaustion'), '--seeds', '5..1']);
    expect(seeds.code).toBe(2);
    expect(seeds.err).toContain('--seeds');
    const configs = cli(['sweep', ex('swiotlb-exhaustion'), '--seeds', '1', '--configs', 'fast']);
    expect(configs.code).toBe(2);
    expect(configs.err).toContain("--configs: unknown configuration 'fast'");
    for (const r of [seeds, configs]) expect(r.err).not.toMatch(/\n\s+at /);
  });
});

describe('phyr help', () => {
  it('lists run and sweep among the commands', () => {
    const r = cli(['--help']);
    expect(r.out).toMatch(/^ {2}run \[options\] <file>/m);
    expect(r.out).toMatch(/^ {2}sweep \[options\] <file>/m);
  });

  it('help scenario covers every top-level field, every machine field and every step op', () => {
    const r = cli(['help', 'scenario']);
    expect(r.code).toBe(0);
    for (const f of ['name:', 'configs?:', 'devices?:', 'processes?:', 'buffers?:', 'ramBytes:', 'iommu?:', 'swiotlb?:', 'dmaDebug?:', 'arch?:', 'dmaOps?:', 'cc?:', 'expectIn?:']) {
      expect(r.out).toContain(f);
    }
    for (const op of STEP_OPS) expect(r.out).toMatch(new RegExp(`^ {2}${op}: `, 'm'));
  });

  it('help run lists every step op of the schema (the list is STEP_OPS, so it cannot miss a new one), each line at most 100 characters', () => {
    const out = cli(['help', 'run']).out;
    const list = /steps \(([^)]*)\)/.exec(out.replace(/\n/g, ' '));
    expect(list).not.toBeNull();
    expect(list![1].split(', ')).toEqual(STEP_OPS);
    for (const l of out.split('\n')) expect(l.length, l).toBeLessThanOrEqual(100);
  });

  it('ioas-map\'s dmabuf: phyr help and docs/cli.md name the same errnos (EOPNOTSUPP for a non-VFIO dma-buf, ENODEV for a revoked one and before the first attach)', () => {
    const help = /^ {4}dmabuf\?: .*$/m.exec(cli(['help', 'ioas-map']).out)![0];
    const row = readFileSync(join(import.meta.dirname, '..', 'docs', 'cli.md'), 'utf8').split('\n').find((l) => l.startsWith('| `ioas-map` |'))!;
    const errnos = (t: string): string[] => [...new Set(t.match(/\bE[A-Z]{3,}\b/g) ?? [])].sort();
    expect(errnos(help)).toEqual(['ENODEV', 'EOPNOTSUPP']);
    expect(errnos(row.slice(row.indexOf('`dmabuf`')))).toEqual(errnos(help));
    expect(help).toMatch(/EOPNOTSUPP for a system-heap one/);
    expect(help).toMatch(/not a revoked one \(ENODEV/);
    expect(help).toMatch(/ENODEV before the first ioas-attach/);
  });

  it('help <op>, help <command>; an unknown topic is a usage error', () => {
    expect(cli(['help', 'map']).out).toMatch(/^map: .*\n {4}name: text/);
    expect(cli(['help', 'ioas-map']).out).toMatch(/^ioas-map: IOMMU_IOAS_MAP .*\n {4}name: text .*\n {4}ioas: text -- IOAS name\n {4}buffer\?: text .*\n {4}dmabuf\?: text -- dma-buf name/);
    expect(cli(['help', 'ioas-copy']).out).toMatch(/^ioas-copy: IOMMU_IOAS_COPY: .*\n {4}name: text .*\n {4}srcIoas: text .*\n {4}mapping\?: text /);
    expect(cli(['help', 'ioas-allow-iovas']).out).toMatch(/^ioas-allow-iovas: IOMMU_IOAS_ALLOW_IOVAS: .*\n {4}ioas: text -- IOAS name\n {4}ranges: list of fields .*\n {8}start: size -- first IOVA\n {8}last: size /);
    expect(cli(['help', 'ioas-iova-ranges']).out).toMatch(/^ioas-iova-ranges: IOMMU_IOAS_IOVA_RANGES: .*\n {4}ioas: text -- IOAS name\n {4}numIovas\?: integer /);
    expect(cli(['help', 'run']).out).toContain('--config <name>');
    const bad = cli(['help', 'frob']);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain("unknown help topic 'frob'");
  });
});
