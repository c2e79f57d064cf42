import { describe, expect, it } from 'vitest';
import { KiB, MiB } from '../base/index.ts';
import { BLOCK_IO_LEGEND, runBlockIo, type BlockIoRow } from './block-io.ts';

// A small run: two configurations, two buffers, 4 KiB and 1 MiB (the whole matrix is `phyr block`).
const report = runBlockIo({ configs: ['no-iommu', 'iommu-strict'], buffers: ['anon', 'hugetlb'], sizes: [4 * KiB, MiB], seed: 3 });
const row = (config: string, buffer: string, size: number): BlockIoRow => {
  const r = report.rows.find((x) => x.config === config && x.buffer === buffer && x.ioBytes === size);
  if (!r) throw new Error(`no row ${config} ${buffer} ${size}`);
  return r;
};

describe('block I/O report (scenario/block-io.ts)', () => {
  it('every I/O completes and the controller moved the right bytes both ways', () => {
    expect(report.rows).toHaveLength(8);
    for (const r of report.rows) {
      expect(r.failure, `${r.config} ${r.buffer} ${r.ioBytes}`).toBeNull();
      expect(r.ok).toBe(true);
      expect(r.bytesMismatched).toBe(0);
      // 32 windows of 4 KiB (one for a 4 KiB I/O), checked after the Write and after the Read
      expect(r.bytesVerified).toBe(2 * Math.min(r.ioBytes, 32 * 4 * KiB));
      // the controller fetched by DMA exactly the descriptor bytes the driver wrote, for each I/O
      expect(r.ctrlDescriptorBytes).toBe(2 * r.descriptorBytes);
    }
  });

  it('the 128 KiB cap behind an IOMMU: a 1 MiB I/O is 8 requests, 1 on dma-direct', () => {
    expect(report.configs.map((c) => [c.name, c.maxHwBytes, c.maxBytes])).toEqual([['no-iommu', 8 * MiB, 4 * MiB], ['iommu-strict', 128 * KiB, 128 * KiB]]);
    expect(row('no-iommu', 'anon', MiB).requests).toBe(1);
    expect(row('no-iommu', 'hugetlb', MiB).requests).toBe(1);
    expect(row('iommu-strict', 'anon', MiB).requests).toBe(8);
    expect(row('iommu-strict', 'hugetlb', MiB).requests).toBe(8);
  });

  it('PRP for 4 KiB and for scattered pages on dma-direct, SGL for large contiguous segments; IOMMU work only behind the IOMMU', () => {
    const a = row('no-iommu', 'anon', MiB);
    expect(a.transfer).toBe('PRP');
    expect(a.dmaSegments).toBeGreaterThan(100); // an aged machine scatters 4 KiB pages
    expect(a.listPages).toBe(1);
    expect(a.descriptorBytes).toBe(2040); // 255 PRP list entries after PRP1
    expect(row('no-iommu', 'hugetlb', MiB)).toMatchObject({ transfer: 'SGL', dmaSegments: 1, descriptorBytes: 0 });
    expect(row('no-iommu', 'anon', 4 * KiB)).toMatchObject({ transfer: 'PRP', dmaSegments: 1, listPages: 0 });
    for (const r of report.rows.filter((x) => x.config === 'no-iommu')) expect([r.iommuMaps, r.tableWalkSteps, r.iotlbInvalidations]).toEqual([0, 0, 0]);
    // behind the IOMMU each 128 KiB request is one coalesced IOVA range: one segment, one SGL data block
    expect(row('iommu-strict', 'anon', MiB)).toMatchObject({ transfer: 'SGL', dmaSegments: 8 });
    const s = row('iommu-strict', 'hugetlb', MiB);
    expect(s.iommuMaps).toBe(16);
    expect(s.tableWalkSteps).toBeGreaterThan(0);
    // a coalesced request of many scattered pages: one walk for the batch against one per segment
    const many = row('iommu-strict', 'anon', MiB);
    expect(many.batchedWalkSteps).toBeGreaterThan(0);
    expect(many.batchedWalkSteps).toBeLessThan(many.tableWalkSteps);
    expect(s.iotlbInvalidations).toBe(16); // strict: every unmap invalidates
  });

  it('is deterministic for a seed (all but the times)', () => {
    const again = runBlockIo({ configs: ['iommu-strict'], buffers: ['anon'], sizes: [MiB], seed: 3 });
    const strip = (r: BlockIoRow) => ({ ...r, ms: 0 });
    expect(again.rows.map(strip)).toEqual([strip(row('iommu-strict', 'anon', MiB))]);
  });

  it('a GPU BAR buffer goes peer to peer through the switch: the data needs no IOMMU map, bytes verified', () => {
    const p = runBlockIo({ configs: ['p2p-switch'], buffers: ['gpu-bar'], sizes: [128 * KiB] });
    // Direct I/O gives each BAR page its own bio_vec (ZONE_DEVICE pages are folios of their own),
    // so the request has 32 physical segments: 4 KiB on average, below nvme's sgl_threshold (32 KiB),
    // and bus addresses do not coalesce into one IOVA (nvme_pci_avg_seg_size), so the driver writes
    // PRPs. The one IOMMU map is the PRP list pool's first page (dma_pool_alloc -> dma_alloc_coherent).
    expect(p.rows[0]).toMatchObject({ ok: true, requests: 1, dmaSegments: 1, transfer: 'PRP', listPages: 1, iommuMaps: 1,
      bounceBytes: 0, bytesMismatched: 0 });
    expect(p.rows[0]!.bytesVerified).toBe(2 * 32 * 4 * KiB);
  });

  it('rejects bad options by name', () => {
    expect(() => runBlockIo({ configs: ['nope' as never] })).toThrow(/configs must name mapping configurations/);
    expect(() => runBlockIo({ sizes: [1000] })).toThrow(/sizes\[\] must be multiples of 512/);
    expect(() => runBlockIo({ sizes: [16 * MiB] })).toThrow(/sizes\[\] must be an integer in \[512, 8388608\]/);
    expect(() => runBlockIo({ buffers: ['x' as never] })).toThrow(/buffers must be from/);
    expect(Object.keys(BLOCK_IO_LEGEND)).toContain('Walk steps');
  });
});
