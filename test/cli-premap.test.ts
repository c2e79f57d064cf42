import { describe, expect, it } from 'vitest';
import { cli } from './fixtures/cli.ts';
import { runPremap } from '../src/scenario/index.ts';

describe('phyr premap', () => {
  it('prints the table per size with every mode, the cost parameters and the published figures', () => {
    const r = cli(['premap', '--ios', '8', '--sizes', '4']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/4 KiB I\/O/);
    for (const m of ['no-iommu', 'passthrough', 'strict', 'lazy', 'registered', 'premapped']) expect(r.out).toMatch(new RegExp(`^${m}\\s+ok`, 'm'));
    expect(r.out).toMatch(/iommuMapCall\s+71/);
    expect(r.out).toMatch(/570,000/);
  });

  it('--json has one row per mode and size with per-I/O counts and predictions', () => {
    const r = cli(['premap', '--json', '--ios', '4', '--sizes', '4,128']);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out) as { tool: string; rows: Array<{ mode: string; perIo: { iovaAllocs: number }; iopsPerCore: number }> };
    expect(j.tool).toBe('phyr premap');
    expect(j.rows).toHaveLength(12);
    expect(j.rows.find((x) => x.mode === 'premapped')!.perIo.iovaAllocs).toBe(0);
  });

  it('refuses bad values with exit code 2', () => {
    expect(cli(['premap', '--sizes', '3']).code).toBe(2);
    expect(cli(['premap', '--dmabuf', 'vram']).code).toBe(2);
    expect(cli(['premap', '--ios', '1']).code).toBe(2);
  });
});

describe('phyr premap options', () => {
  it('--help shows the --sizes default in KiB, the unit of the option', () => {
    const r = cli(['premap', '--help']);
    expect(r.code).toBe(0);
    const line = r.out.split('\n').findIndex((l) => l.includes('--sizes <KiB,...>'));
    const text = r.out.split('\n').slice(line, line + 2).join(' ').replace(/\s+/g, ' ');
    expect(text).toMatch(/\(default: 4,128\)/);
    expect(text).not.toMatch(/4096/);
  });

  it('an invalid value points at `phyr help premap`, not at another command', () => {
    const r = cli(['premap', '--ios', '1']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--ios must be an integer in \[2, 65536\]/);
    expect(r.err).toMatch(/phyr help premap/);
    expect(r.err).not.toMatch(/help compare/);
  });

  it('refuses a size given twice (each size is one block of rows), in the CLI and in runPremap', () => {
    const r = cli(['premap', '--sizes', '4,128,4', '--ios', '2']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--sizes names 4 KiB twice/);
    expect(r.out).toBe('');
    expect(() => runPremap({ sizes: [4096, 4096], ios: 2 })).toThrow(/sizes\[\] must not repeat a size, got 4096 twice/);
  });
});
