// phyr dmaops through runCli: the JSON, the table, the help and a bad option value; the figures that
// show each family's own behaviour on the same list.
import { describe, expect, it } from 'vitest';
import { cli } from './fixtures/cli.ts';
import { DMAOPS_CONFIGS, DMAOPS_LAYOUTS, DMAOPS_LIST, type DmaOpsReport, type DmaOpsRow } from '../src/scenario/index.ts';


describe('phyr dmaops', () => {
  const { code, out } = cli(['dmaops', '--json']);
  const r = JSON.parse(out) as DmaOpsReport & { tool: string; version: number };
  const row = (config: string, layout: string): DmaOpsRow => r.rows.find((x) => x.config === config && x.layout === layout)!;
  const total = DMAOPS_LIST.reduce((n, x) => n + x.len, 0);

  it('--json: every configuration in every layout; every mapping that succeeds moves the bytes both ways', () => {
    expect(code).toBe(0);
    expect(r.tool).toBe('phyr dmaops');
    expect(r.rows.length).toBe(DMAOPS_CONFIGS.length * DMAOPS_LAYOUTS.length);
    for (const x of r.rows) expect(x.bytesVerified).toBe(x.result === 'ok' ? 2 * total : 0);
  });

  it('each family keeps its own rule on the same list', () => {
    // dma_dummy_ops: map_sg -EINVAL, map_phys DMA_MAPPING_ERROR; dma_set_mask fails (dma_dummy_supported)
    expect(row('dummy', 'sg').result).toBe('EINVAL');
    expect(row('dummy', 'per-range').result).toBe('ENOMEM');
    expect(r.configs.find((c) => c.label === 'dummy')!.maskResult).toBe('EIO');
    // GART with iommu=merge gives dma_map_sg fewer segments than without
    expect(row('gart merge', 'sg').segments).toBeLessThan(row('gart', 'sg').segments);
    // after unmap: GART entries point at the scratch page, TCEs and IOMMU PTEs are gone, dma-direct and a DDW range still reach the buffer
    expect(row('gart', 'phyr').afterUnmap).toBe('GART scratch page');
    expect(row('tce', 'phyr').afterUnmap).toBe('fault');
    expect(row('dma-iommu (strict)', 'phyr').afterUnmap).toBe('fault');
    expect(row('fixed (ibmebus)', 'phyr').afterUnmap).toBe('the old buffer');
    expect(row('tce + DDW (64K)', 'phyr').afterUnmap).toBe('the old buffer');
    // DDW: the phyr path sends the window's ranges direct (1 TCE for the range past it); dma_map_sg bypasses only all or nothing
    expect(row('tce + DDW (64K)', 'per-range').entries).toBe(1);
    expect(row('tce + DDW (64K)', 'sg').entries).toBeGreaterThan(1);
    // bounces: dma-direct above the 32-bit mask, Xen across frames that are not machine-contiguous; none through tables
    expect(row('dma-direct', 'phyr').bounceBytes).toBeGreaterThan(0);
    expect(row('xen-swiotlb', 'phyr').bounceBytes).toBeGreaterThan(0);
    expect(row('gart', 'phyr').bounceBytes).toBe(0);
    // ARM32's bitmap allocator, not dma-iommu's IOVA window: the same PTE count
    expect(row('arm32 iommu_ops', 'per-range').entries).toBe(row('dma-iommu (strict)', 'per-range').entries);
  });

  it('prints the table, the configurations and the legend; --help names the options; a bad --seed exits 2', () => {
    const t = cli(['dmaops']);
    expect(t.code).toBe(0);
    expect(t.out).toMatch(/^phyr dmaops: one phyr list through every dma_map_ops family/);
    expect(t.out).toContain('arch/arm/mm/dma-mapping.c');
    expect(t.out).toContain('Columns:');
    const h = cli(['dmaops', '--help']);
    expect(h.code).toBe(0);
    for (const o of ['--json', '--seed <n>']) expect(h.out).toContain(o);
    const b = cli(['dmaops', '--seed', 'x']);
    expect(b.code).toBe(2);
    expect(b.err).toContain('--seed');
  });
});
