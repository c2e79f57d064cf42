import { describe, expect, it } from 'vitest';
import { PREMAP_COST_PARAMS, premapPredict, runPremap, runPremapMode, type PremapCounts } from './premap.ts';

const KiB = 1024;

/** The per-I/O counts each mode must show (4 KiB and 128 KiB reads and writes of a pinned anon or dma-buf buffer). */
const EXPECTED: Record<string, Partial<PremapCounts>> = {
  // dma-direct: nothing but the request and its descriptors. A registered buffer of 4 KiB pages is
  // one bio_vec per page (io_sqe_buffer_register), so 128 KiB is 32 segments of 4 KiB on average,
  // below sgl_threshold (nvme_pci_avg_seg_size): PRP1 and a PRP list of 31 entries, even though
  // the pages are physically contiguous and the DMA mapping merges them into one segment
  'no-iommu 4096': { iovaAllocs: 0, iotlbRange: 0, iotlbGlobal: 0, pteWrites: 0, dmaSyncs: 0, descriptorBytes: 0 },
  'no-iommu 131072': { iovaAllocs: 0, iotlbRange: 0, iotlbGlobal: 0, pteWrites: 0, dmaSyncs: 0, descriptorBytes: 31 * 8 },
  // identity domain: dma-direct as well
  'passthrough 4096': { iovaAllocs: 0, iotlbRange: 0, iotlbGlobal: 0, pteWrites: 0, iommuMapCalls: 0, descriptorBytes: 0 },
  'passthrough 131072': { iovaAllocs: 0, iotlbRange: 0, iotlbGlobal: 0, pteWrites: 0, iommuMapCalls: 0, descriptorBytes: 31 * 8 },
  // strict: one IOVA, one walk of 3 steps to the leaf table, one PTE written and cleared per page, one range invalidation per unmap;
  // the request is one coalesced IOVA range (blk_rq_dma_map_coalesce: nvme_pci_avg_seg_size counts one segment), an SGL data block
  'strict 4096': { iovaAllocs: 1, walkSteps: 3, pteWrites: 2, iommuMapCalls: 1, iommuUnmapCalls: 1, iotlbRange: 1, iotlbGlobal: 0, fqEntries: 0 },
  'strict 131072': { iovaAllocs: 1, pteWrites: 64, iommuUnmapCalls: 1, iotlbRange: 1, iotlbGlobal: 0, fqEntries: 0, descriptorBytes: 0 },
  // lazy: the same map work, the unmap queued on the flush queue instead of invalidated
  'lazy 4096': { iovaAllocs: 1, walkSteps: 3, pteWrites: 2, iotlbRange: 0, fqEntries: 1 },
  'lazy 131072': { iovaAllocs: 1, pteWrites: 64, iotlbRange: 0, fqEntries: 1, descriptorBytes: 0 },
  // kept mapped: no IOMMU work at all; the v3 NVMe path syncs each 4 KiB page both ways and writes a PRP list
  'registered 4096': { iovaAllocs: 0, walkSteps: 0, pteWrites: 0, iotlbRange: 0, iotlbGlobal: 0, fqEntries: 0, dmaSyncs: 2, descriptorBytes: 0 },
  'registered 131072': { iovaAllocs: 0, walkSteps: 0, pteWrites: 0, iotlbRange: 0, iotlbGlobal: 0, dmaSyncs: 64, descriptorBytes: 31 * 8 },
  'premapped 4096': { iovaAllocs: 0, walkSteps: 0, pteWrites: 0, iotlbRange: 0, iotlbGlobal: 0, fqEntries: 0, dmaSyncs: 2, descriptorBytes: 0 },
  'premapped 131072': { iovaAllocs: 0, walkSteps: 0, pteWrites: 0, iotlbRange: 0, iotlbGlobal: 0, dmaSyncs: 64, descriptorBytes: 31 * 8 },
};

describe('phyr premap: per-I/O work of each mode', () => {
  const report = runPremap({ ios: 32 });

  it('every mode moves every byte', () => {
    for (const r of report.rows) {
      expect(r.failure, `${r.mode} ${r.ioBytes}`).toBeNull();
      expect(r.ok, `${r.mode} ${r.ioBytes}`).toBe(true);
      expect(r.bytesVerified).toBeGreaterThan(0);
    }
  });

  it('shows the expected per-I/O counts in every mode, zero IOVA allocations and IOTLB invalidations on the pre-mapped paths', () => {
    expect(report.rows).toHaveLength(12);
    for (const r of report.rows) {
      const want = EXPECTED[`${r.mode} ${r.ioBytes}`]!;
      for (const [k, v] of Object.entries(want)) expect(r.perIo[k as keyof PremapCounts], `${r.mode} ${r.ioBytes} ${k}`).toBe(v);
      expect(r.perIo.requests).toBe(1);
    }
  });

  it('lazy mode amortises one global flush over the flush queue\'s 255 entries (fq_full), not one per unmap', () => {
    const r = runPremapMode('lazy', 4 * KiB, { ios: 600 });
    expect(r.perIo.iotlbRange).toBe(0);
    // 600 unmaps + the warm-up's 2 queued: the ring (IOVA_DEFAULT_FQ_SIZE 256 holds 255) fills twice
    expect(r.perIo.iotlbGlobal * 600).toBe(2);
  });

  it('predicts from the counts alone: passthrough = ioBase, strict pays IOVA + map + unmap + invalidation', () => {
    const p = PREMAP_COST_PARAMS;
    const zero: PremapCounts = {
      iovaAllocs: 0, walkSteps: 0, pteWrites: 0, iommuMapCalls: 0, iommuUnmapCalls: 0, iotlbRange: 0, iotlbGlobal: 0, fqEntries: 0,
      swiotlbBytes: 0, descriptorBytes: 0, dmaSyncs: 0, requests: 1,
    };
    expect(premapPredict(zero).ns).toBe(p.ioBase.ns);
    // ioBase is per block request: an I/O split into 8 NVMe commands goes through the stack 8 times
    expect(premapPredict({ ...zero, requests: 8 }).breakdown.ioBase).toBe(8 * p.ioBase.ns);
    const strict = report.rows.find((r) => r.mode === 'strict' && r.ioBytes === 4 * KiB)!;
    expect(strict.ns).toBeCloseTo(p.ioBase.ns + p.iova.ns + p.iommuMapCall.ns + p.iommuUnmapCall.ns + p.iotlbRange.ns, 6);
    const pass = report.rows.find((r) => r.mode === 'passthrough' && r.ioBytes === 4 * KiB)!;
    expect(pass.ratioToPassthrough).toBe(1);
    expect(strict.ratioToPassthrough).toBeLessThan(0.2);
    for (const k of Object.keys(p) as Array<keyof typeof p>) {
      expect(p[k].source.length, k).toBeGreaterThan(10);
      // a source a reader can look up: the publication, not a file of this project's notes that the repository does not hold
      expect(p[k].source, k).not.toMatch(/shared\/|reference\/|\.md\b/);
    }
  });

  it('prices each block request of a split I/O: 256 KiB behind an IOMMU is two 128 KiB requests (max_sectors from dma_opt_mapping_size)', () => {
    const r = runPremapMode('premapped', 256 * KiB, { ios: 4 });
    expect(r.perIo.requests).toBe(2);
    expect(r.nsBreakdown.ioBase).toBe(2 * PREMAP_COST_PARAMS.ioBase.ns);
    const direct = runPremapMode('no-iommu', 256 * KiB, { ios: 4 });
    expect(direct.perIo.requests).toBe(1);
    expect(direct.nsBreakdown.ioBase).toBe(PREMAP_COST_PARAMS.ioBase.ns);
  });

  it('a VRAM dma-buf reached P2P needs no IOMMU work either', () => {
    const r = runPremapMode('premapped', 4 * KiB, { ios: 8, dmabuf: 'gpu-vram' });
    expect(r.ok).toBe(true);
    expect(r.perIo.iovaAllocs + r.perIo.iotlbRange + r.perIo.pteWrites).toBe(0);
  });

  it('names bad options', () => {
    expect(() => runPremap({ sizes: [1000] })).toThrow(/sizes/);
    expect(() => runPremap({ ios: 1 })).toThrow(/ios/);
    expect(() => runPremap({ dmabuf: 'x' as never })).toThrow(/dmabuf/);
  });
});
