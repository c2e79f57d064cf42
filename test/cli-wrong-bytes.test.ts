// A report row that reads back other bytes than were written is a defect in the model: the report
// commands print the report and exit 1, naming the rows on stderr (src/cli/wrong-bytes.ts). No
// correct model produces such a row, so the scenario module is wrapped to corrupt one row of each
// report after it ran for real.
import { describe, expect, it, vi } from 'vitest';
import { cli } from './fixtures/cli.ts';

const corrupt = { on: false };

vi.mock('../src/scenario/index.ts', async (importOriginal) => {
  const real = await importOriginal<typeof import('../src/scenario/index.ts')>();
  const first = <T>(rows: readonly T[], change: (r: T) => T): T[] => rows.map((r, i) => (corrupt.on && i === 0 ? change(r) : r));
  return {
    ...real,
    runCompare: (...a: Parameters<typeof real.runCompare>) => {
      const r = real.runCompare(...a);
      return r.mapping === null ? r : { ...r, mapping: { ...r.mapping, rows: first(r.mapping.rows, (x) => ({ ...x, bytesMismatched: 7 })) } };
    },
    runBlockIo: (...a: Parameters<typeof real.runBlockIo>) => {
      const r = real.runBlockIo(...a);
      return { ...r, rows: first(r.rows, (x) => ({ ...x, bytesMismatched: 9 })) };
    },
    runDmaOpsReport: (...a: Parameters<typeof real.runDmaOpsReport>) => {
      const r = real.runDmaOpsReport(...a);
      return { ...r, rows: first(r.rows, (x) => ({ ...x, bytesVerified: x.bytesVerified - 1 })) };
    },
    runRdmaReport: (...a: Parameters<typeof real.runRdmaReport>) => {
      const r = real.runRdmaReport(...a);
      return { ...r, rows: first(r.rows, (x) => ({ ...x, bytesVerified: 0 })) };
    },
  };
});

const CASES: Array<[string, string[], RegExp]> = [
  ['compare', ['compare', '--ram', '8', '--buffers', 'hugetlb', '--configs', 'no-iommu', '--jobs', '0', '--no-progress'], /no-iommu \/ hugetlb \/ \S+: 7 bytes differ/],
  ['block', ['block', '--configs', 'no-iommu', '--buffers', 'anon', '--sizes', '4k'], /no-iommu \/ anon \/ 4096 B: 9 bytes differ/],
  ['dmaops', ['dmaops'], /dma-direct \/ \S+: \d+ of \d+ bytes verified/],
  ['rdma', ['rdma', '--buffers', 'hugetlb-1G', '--configs', 'no-iommu'], /no-iommu \/ hugetlb-1G: the RDMA WRITE's bytes differ/],
];

describe('a report row with wrong bytes', () => {
  for (const [name, args, row] of CASES) {
    it(`phyr ${name}: prints the report, names the row on stderr and exits 1; exits 0 when every row is right`, () => {
      corrupt.on = false;
      const good = cli(args);
      expect(good.code, good.err).toBe(0);
      expect(good.err).not.toContain('wrong bytes');
      corrupt.on = true;
      try {
        const bad = cli(args);
        expect(bad.code).toBe(1);
        expect(bad.out.length).toBeGreaterThan(0);
        expect(bad.err).toContain(`phyr ${name}: one row read back wrong bytes through the mapping (a defect in the model):`);
        expect(bad.err).toMatch(row);
      } finally {
        corrupt.on = false;
      }
    });
  }
});
