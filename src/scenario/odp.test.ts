// Tests for the ODP run of the rdma report: every step behaves as the kernel would, nothing is left.
import { describe, expect, it } from 'vitest';
import { odpReportLines, runOdpScenario } from './odp.ts';

describe('ODP run', () => {
  it.each(['strict', 'none'] as const)('%s: faults, invalidations, re-maps; failures where the memory is gone or read-only; nothing left', (iommu) => {
    const r = runOdpScenario({ iommu, len: 256 * 1024 });
    expect(r.steps.map((s) => s.status)).toEqual(['IB_WC_SUCCESS', 'IB_WC_REM_ACCESS_ERR', 'IB_WC_SUCCESS', 'IB_WC_REM_ACCESS_ERR', 'IB_WC_SUCCESS', 'IB_WC_SUCCESS']);
    expect(r.steps[0].odpFaults).toBe(2);
    expect(r.steps[0].pagesMapped).toBe(128);
    expect(r.steps[1].odpInvalidations).toBe(1);
    expect(r.steps[1].pagesZapped).toBe(16);
    expect(r.steps[2].odpRemaps).toBe(16);
    expect(r.steps[3].pagesZapped).toBe(16);
    expect(r.steps[5].odpInvalidations).toBe(16);
    expect([r.leftMapped, r.pins, r.leaks]).toEqual([0, 0, 0]);
    expect(r.totals.bytesVerified).toBe(2 * (256 * 1024 * 2 + 64 * 1024 * 2));
    expect(odpReportLines(r).length).toBe(r.steps.length + 3);
  });
});
