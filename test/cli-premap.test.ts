import { describe, expect, it } from 'vitest';
import { cli } from './fixtures/cli.ts';

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
