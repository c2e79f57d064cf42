import { describe, expect, it } from 'vitest';
import { GiB } from '../base/index.ts';
import { runRdmaReport } from './rdma.ts';

describe('runRdmaReport', () => {
  it('hugetlb 1 GiB and the GPU BAR: one phyr, one 1 GiB MTT entry, an RDMA WRITE verified; the kernel design costs a 2 MiB page array', () => {
    const r = runRdmaReport({ buffers: ['hugetlb-1G', 'gpu-bar'], configs: ['no-iommu'], odp: false });
    expect(r.odp).toBeNull();
    const [h, bar] = r.rows;
    expect(h).toMatchObject({ result: 'ok', pagesPinned: GiB / 4096, pageArrayBytes: 2 * 1024 * 1024, phyrEntries: 1, hwPageSize: GiB, mttEntries: 1, mttBytes: 8, bytesVerified: 256 * 1024 });
    // one scatterlist entry, but ib_umem_get's first append is told 261,632 more pages follow: a whole chunk of 128
    expect(h.sgTableBytes).toBe(32 + 128 * 32);
    expect(bar).toMatchObject({ result: 'ok', pageArrayBytes: 0, mttEntries: 1, hwPageSize: GiB, bytesVerified: 256 * 1024 });
  });

  it('runs the on-demand paging section: faults, invalidations and re-faults, nothing left mapped or pinned', () => {
    const r = runRdmaReport({ buffers: ['hugetlb-2M'], configs: ['iommu-strict'] });
    expect(r.odp).not.toBeNull();
    const odp = r.odp!;
    expect(odp.steps.length).toBeGreaterThan(2);
    expect(odp.steps.reduce((n, s) => n + s.odpFaults, 0)).toBeGreaterThan(0);
    expect([odp.leftMapped, odp.pins]).toEqual([0, 0]);
  });
});
