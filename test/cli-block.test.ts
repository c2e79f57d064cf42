// `phyr block` through runCli (in-process): help, the table, --json, and usage errors.
import { describe, expect, it } from 'vitest';
import { cli } from './fixtures/cli.ts';
import { BLOCK_IO_BUFFERS, BLOCK_IO_LEGEND, MAPPING_CONFIG_NAMES, type BlockIoReport } from '../src/scenario/index.ts';


describe('phyr block --help', () => {
  it('exits 0 and explains every option, configuration, buffer and column', () => {
    const { code, out } = cli(['block', '--help']);
    expect(code).toBe(0);
    for (const opt of ['--json', '--seed <n>', '--no-aged', '--configs <list>', '--buffers <list>', '--sizes <list>']) expect(out, opt).toContain(opt);
    for (const c of MAPPING_CONFIG_NAMES) expect(out).toMatch(new RegExp(`^  ${c} `, 'm'));
    for (const b of BLOCK_IO_BUFFERS) expect(out).toMatch(new RegExp(`^  ${b} `, 'm'));
    for (const k of Object.keys(BLOCK_IO_LEGEND)) expect(out).toContain(k);
    expect(cli(['help', 'block']).out).toContain('--sizes <list>');
    expect(cli(['--help']).out).toMatch(/^ {2}block /m);
  });
});

describe('phyr block', () => {
  it('prints a table per configuration with the queue cap and the figures', () => {
    const { code, out, err } = cli(['block', '--configs', 'no-iommu,iommu-strict', '--buffers', 'hugetlb', '--sizes', '4k,1m']);
    expect(code).toBe(0);
    expect(err).toBe('');
    expect(out).toContain('no-iommu: no IOMMU (dma-direct), nvme0 [nvme0, max_sectors 4 MiB (max_hw_sectors 8 MiB), 256 segments]');
    expect(out).toContain('iommu-strict: IOMMU strict, nvme0 [nvme0, max_sectors 128 KiB, 33 segments]');
    expect(out).toMatch(/^ {2}hugetlb +1 MiB +8 +8 +SGL /m); // the 128 KiB cap: 8 requests
    expect(out).toMatch(/^ {2}hugetlb +1 MiB +1 +1 +SGL /m);
  });

  it('--json prints the report', () => {
    const { code, out } = cli(['block', '--json', '--configs', 'iommu-lazy', '--buffers', 'anon', '--sizes', '4096']);
    expect(code).toBe(0);
    const r = JSON.parse(out) as BlockIoReport;
    expect(r.configs.map((c) => c.name)).toEqual(['iommu-lazy']);
    expect(r.rows).toHaveLength(1);
    expect(r.rows[0]).toMatchObject({ config: 'iommu-lazy', buffer: 'anon', ioBytes: 4096, ok: true, requests: 1 });
  });

  it('a bad value is a usage error (exit 2) naming the option', () => {
    const s = cli(['block', '--sizes', '1000']);
    expect(s.code).toBe(2);
    expect(s.err).toMatch(/--sizes takes 4k, 128k, 1m, 8m or byte counts/);
    const c = cli(['block', '--configs', 'nope']);
    expect(c.code).toBe(2);
    expect(c.err).toMatch(/unknown config "nope"/);
  });
});
