// phyr dmabuf through runCli: the tables, the JSON, the help and a bad option value.
import { describe, expect, it } from 'vitest';
import { cli } from './fixtures/cli.ts';
import { DMABUF_EXPORTERS, DMABUF_IMPORTERS, DMABUF_IOMMU_MODES, DMABUF_TOPOLOGIES, type DmabufReport } from '../src/scenario/index.ts';


describe('phyr dmabuf', () => {
  it('--json prints every cell of the matrix', () => {
    const { code, out } = cli(['dmabuf', '--json', '--size', '16']);
    expect(code).toBe(0);
    const r = JSON.parse(out) as DmabufReport & { tool: string; version: number };
    expect(r.tool).toBe('phyr dmabuf');
    expect(r.bufferBytes).toBe(16 * 1024);
    expect(r.cells.length).toBe(DMABUF_EXPORTERS.length * DMABUF_IMPORTERS.length * DMABUF_TOPOLOGIES.length * DMABUF_IOMMU_MODES.length);
    expect(r.cells.every((c) => c.revokeClean)).toBe(true);
    expect(r.cells.some((c) => c.path === 'p2p-bus') && r.cells.some((c) => c.path === 'iommufd-ioas') && r.cells.some((c) => c.path === 'fabric')).toBe(true);
  });

  it('prints the tables with a legend', () => {
    const { code, out } = cli(['dmabuf', '--size', '16']);
    expect(code).toBe(0);
    expect(out).toMatch(/^phyr dmabuf: dma-buf export\/import matrix/);
    expect(out).toContain('IOMMU none, importer behind another host bridge (gpu3)');
    expect(out).toContain('Columns:');
  });

  it('--help names the options; a bad --size is a usage error (exit 2)', () => {
    const h = cli(['dmabuf', '--help']);
    expect(h.code).toBe(0);
    for (const o of ['--json', '--size <KiB>', '--seed <n>']) expect(h.out).toContain(o);
    const top = cli(['--help']);
    expect(top.out).toContain('dmabuf [options]');
    const bad = cli(['dmabuf', '--size', '3']);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('--size must be a multiple of 4');
  });
});
