// Tests for the DMA mapping section: every successful mapping moved real bytes both ways, and the
// counters and entry counts agree with what the layout section and the machine say independently.
import { describe, expect, it } from 'vitest';
import { GiB, MiB } from '../base/index.ts';
import { createMachine } from '../machine/index.ts';
import {
  MAPPING_CONFIGS, MAPPING_CONFIG_NAMES, MAPPING_METHOD_NAMES, UNTRUSTED_MAP_OFFSET, compareMappingOptions, mappingBacking,
  mappingMachineConfig, runCompare, runMapping, runMappingConfig,
  verifyWindows, type CompareOptions, type CompareReport, type MappingConfigName, type MappingRow,
} from './index.ts';

const SMALL: CompareOptions = {
  ramGiB: 8, seed: 2, deviceGiB: 1, mapping: true, verifyWindows: 8,
  bufferLen: { anon: 4 * MiB, thp: 8 * MiB, hugetlb: GiB, device: 4 * MiB },
};

function o<T>(x: T | undefined): T {
  if (x === undefined) throw new Error('missing');
  return x;
}

function mrow(rep: CompareReport, config: string, buffer: string, method: string): MappingRow {
  const r = rep.mapping?.rows.find((x) => x.config === config && x.buffer === buffer && x.method === method);
  if (!r) throw new Error(`no mapping row ${config}/${buffer}/${method}`);
  return r;
}

/**
 * Physically contiguous runs of each buffer on a rebuilt machine of the configuration, found page by
 * page with mm.translate (same config and seed: the same physical pages as in the report).
 */
function runsOn(config: MappingConfigName): Map<string, number> {
  const o = compareMappingOptions(SMALL);
  const m = createMachine(mappingMachineConfig(o, config));
  const mm = m.newProcess();
  const out = new Map<string, number>();
  for (const b of o.buffers) {
    const start = mm.mmap({ len: b.len, backing: mappingBacking(b, config), populate: true });
    if (!start.ok) throw new Error(`mmap ${b.name}: ${start.errno}`);
    let runs = 0;
    let prev = -1n;
    for (let off = 0; off < b.len; off += 4096) {
      const phys = mm.translate(start.value + BigInt(off))!;
      if (phys !== prev + 4096n) runs++;
      prev = phys;
    }
    out.set(b.name, runs);
  }
  return out;
}

/** Bytes from byte `from` of the first buffer (anon) to the end of its physically contiguous run. */
function firstRunFrom(config: MappingConfigName, from: number): number {
  const o = compareMappingOptions(SMALL);
  const m = createMachine(mappingMachineConfig(o, config));
  const mm = m.newProcess();
  const b = o.buffers[0];
  const start = mm.mmap({ len: b.len, backing: mappingBacking(b, config), populate: true });
  if (!start.ok) throw new Error(`mmap ${b.name}: ${start.errno}`);
  const page = (off: number): bigint => mm.translate(start.value + BigInt(off))! & ~4095n;
  let end = 4096;
  while (end < b.len && page(end) === page(end - 4096) + 4096n) end += 4096;
  return end - from;
}

describe('verifyWindows', () => {
  it('spreads disjoint in-bounds windows over the buffer, first and last byte included', () => {
    for (const [len, n, w] of [[4 * MiB, 8, 4096], [4096, 8, 4096], [10000, 3, 4096], [3 * 4096, 32, 4096]] as const) {
      const ws = verifyWindows(len, n, w);
      expect(ws[0][0]).toBe(0);
      const last = ws[ws.length - 1];
      expect(last[0] + last[1]).toBe(len);
      for (let i = 1; i < ws.length; i++) expect(ws[i][0]).toBeGreaterThanOrEqual(ws[i - 1][0] + ws[i - 1][1]);
      expect(ws.length).toBeLessThanOrEqual(n);
    }
  });
});

describe('runCompare with the mapping section (small machine)', () => {
  const rep = runCompare(SMALL);
  const mr = rep.mapping!;
  const direct = runsOn('no-iommu');
  const strict = runsOn('iommu-strict');
  const windowBytes = (len: number): number => verifyWindows(len, 8, 4096).reduce((s, [, l]) => s + l, 0);

  it('has a row for every configuration, buffer and method', () => {
    expect(mr.rows).toHaveLength(MAPPING_CONFIG_NAMES.length * 4 * MAPPING_METHOD_NAMES.length);
    expect(JSON.parse(JSON.stringify(mr))).toEqual(mr);
  });

  it('every mapping that succeeded moved the sampled bytes both ways without a wrong byte', () => {
    const okRows = mr.rows.filter((r) => r.ok);
    expect(okRows.length).toBeGreaterThan(mr.rows.length / 2);
    for (const r of okRows) {
      const len = rep.buffers.find((b) => b.name === r.buffer)!.len - MAPPING_CONFIGS[r.config].offset;
      expect(r.bytesMismatched, `${r.config}/${r.buffer}/${r.method}`).toBe(0);
      expect(r.bytesVerified, `${r.config}/${r.buffer}/${r.method}`).toBe(2 * windowBytes(len));
    }
  });

  it('dma-direct: one DMA range per phyr, no IOMMU work; dmaMapPhyrs shares the input (0 bytes)', () => {
    for (const buffer of ['anon', 'thp', 'hugetlb']) {
      for (const method of MAPPING_METHOD_NAMES) {
        const r = mrow(rep, 'no-iommu', buffer, method);
        expect(r.ok).toBe(true);
        expect(r.dmaEntries).toBe(direct.get(buffer));
        expect(r.counters.iommuMapCalls + r.counters.iommuLeafPtesWritten + r.counters.bounceBytes).toBe(0);
      }
      expect(mrow(rep, 'no-iommu', buffer, 'map-phyrs').metadataBytes).toBe(0);
      expect(mrow(rep, 'no-iommu', buffer, 'map-phys').metadataBytes).toBe(16 * direct.get(buffer)!);
    }
  });

  it('behind a strict IOMMU: one IOVA window for two-step and dmaMapPhyrs, one invalidation per unmap for dmaMapPhys', () => {
    for (const buffer of ['anon', 'thp', 'hugetlb']) {
      const n = strict.get(buffer)!;
      for (const method of ['two-step', 'map-phyrs'] as const) {
        const r = mrow(rep, 'iommu-strict', buffer, method);
        expect(r.dmaEntries).toBe(1);
        expect(r.counters.iovaAllocs).toBe(1);
        expect(r.counters.iotlbInvalidations).toBe(1);
      }
      const pr = mrow(rep, 'iommu-strict', buffer, 'map-phys');
      expect(pr.dmaEntries).toBe(n);
      expect(pr.counters.iovaAllocs).toBe(n);
      expect(pr.counters.iotlbInvalidations).toBe(n);
      // lazy mode defers the invalidations to flush-queue flushes
      expect(mrow(rep, 'iommu-lazy', buffer, 'map-phys').counters.iotlbInvalidations).toBeLessThan(Math.max(2, n));
    }
    // 4 KiB pages need one leaf PTE each; a 1 GiB hugetlb page one leaf PTE
    expect(mrow(rep, 'iommu-strict', 'anon', 'map-phyrs').counters.iommuLeafPtesWritten).toBe((4 * MiB) / 4096);
    expect(mrow(rep, 'iommu-strict', 'hugetlb', 'map-phyrs').counters.iommuLeafPtesWritten).toBe(1);
  });

  it('device memory: no scatterlist without struct page; P2P through a switch uses bus addresses (no IOMMU work)', () => {
    expect(mrow(rep, 'iommu-strict', 'device', 'sgtable').errno).toBe('EFAULT');
    for (const method of MAPPING_METHOD_NAMES) {
      const r = mrow(rep, 'p2p-switch', 'device', method);
      expect(r.ok, `${method}: ${r.reason}`).toBe(true);
      expect(r.counters.iommuMapCalls).toBe(0);
      const h = mrow(rep, 'p2p-host-bridge', 'device', method);
      expect(h.ok, `${method}: ${h.reason}`).toBe(true);
      expect(h.counters.iommuMapCalls).toBeGreaterThan(0);
    }
  });

  it('untrusted: buffers mapped from a sub-page offset bounce their unaligned head through swiotlb', () => {
    expect(o(mr.configs.find((c) => c.name === 'untrusted'))).toMatchObject({ offset: UNTRUSTED_MAP_OFFSET });
    expect(UNTRUSTED_MAP_OFFSET % 4096).not.toBe(0);
    const head = 4096 - UNTRUSTED_MAP_OFFSET; // the partial first granule
    expect(rep.buffers[0].name).toBe('anon');
    // the two-step API bounces only the partial head granule: copied in at link, out at unlink
    for (const buffer of ['anon', 'thp', 'hugetlb']) {
      for (const method of ['two-step', 'map-phyrs'] as const) {
        const r = mrow(rep, 'untrusted', buffer, method);
        expect(r.ok, `${buffer}/${method}: ${r.reason}`).toBe(true);
        expect(r.bytesMismatched).toBe(0);
        expect(r.bytesVerified).toBeGreaterThan(0);
        expect(r.counters.bounceBytes, `${buffer}/${method}`).toBe(2 * head);
      }
    }
    // one mapping per range or sg entry bounces the whole unaligned first range, both ways ...
    const first = firstRunFrom('untrusted', UNTRUSTED_MAP_OFFSET);
    for (const method of ['map-phys', 'sgtable'] as const) {
      const r = mrow(rep, 'untrusted', 'anon', method);
      expect(r.ok, `${method}: ${r.reason}`).toBe(true);
      expect(r.bytesMismatched).toBe(0);
      expect(r.counters.bounceBytes, method).toBe(2 * first);
    }
    // ... which cannot work for a range above swiotlb's maximum mapping size (a 1 GiB page)
    expect(mrow(rep, 'untrusted', 'hugetlb', 'map-phys').errno).toBe('ENOMEM');
    expect(mrow(rep, 'untrusted', 'hugetlb', 'sgtable').errno).toBe('EIO');
    // MMIO cannot be bounced
    expect(mrow(rep, 'untrusted', 'device', 'two-step').errno).toBe('EPERM');
    // page-aligned buffers never bounce on a trusted device
    for (const method of MAPPING_METHOD_NAMES) expect(mrow(rep, 'iommu-strict', 'anon', method).counters.bounceBytes).toBe(0);
  });

  it('force-bounce guest: every byte of a successful mapping went through swiotlb', () => {
    const r = mrow(rep, 'force-bounce', 'anon', 'map-phys');
    expect(r.ok).toBe(true);
    expect(r.counters.bounceBytes).toBeGreaterThanOrEqual(4 * MiB);
    expect(r.counters.iommuMapCalls).toBe(0);
  });
});

describe('dma-debug in the mapping section (MappingOptions.dmaDebug)', () => {
  const opts = compareMappingOptions({ ...SMALL, mappingConfigs: ['iommu-strict', 'untrusted', 'p2p-switch'] });
  const untimed = (rows: readonly MappingRow[]): unknown[] => rows.map((r) => {
    const { mapMs: _m, unmapMs: _u, dmaDebugReports: _d, ...rest } = r;
    return rest;
  });
  const off = runMapping(opts);
  const on = runMapping({ ...opts, dmaDebug: true });

  it('is off by default: the rows carry no dmaDebugReports', () => {
    expect(off.rows.length).toBe(3 * 4 * 4);
    expect(off.rows.every((r) => !('dmaDebugReports' in r))).toBe(true);
  });

  it('on, it only observes: the same figures, and every row counts 0 reports', () => {
    expect(untimed(on.rows)).toEqual(untimed(off.rows));
    expect(on.rows.map((r) => r.dmaDebugReports)).toEqual(on.rows.map(() => 0));
  });

  it('runMappingConfig gives one configuration\'s rows, the same as runMapping\'s', () => {
    expect(untimed(runMappingConfig(opts, 'untrusted'))).toEqual(untimed(off.rows.filter((r) => r.config === 'untrusted')));
    expect(() => runMappingConfig(opts, 'nope' as MappingConfigName)).toThrow(RangeError);
    expect(() => runMapping({ ...opts, dmaDebug: 'yes' as unknown as boolean })).toThrow(TypeError);
  });
});

describe('16 and 64 KiB pages (an arm64 kernel): the IOMMU configurations walk ARM LPAE tables of that granule', () => {
  for (const pageSize of [16384, 65536]) {
    it(`${pageSize / 1024} KiB: every configuration makes a machine (it failed: x86-64 tables, a 16 KiB BAR) and the IOMMU rows move real bytes`, () => {
      const opts = compareMappingOptions({
        ...SMALL, pageSize, mappingConfigs: ['iommu-strict', 'untrusted', 'p2p-switch'],
        bufferLen: { anon: 4 * MiB, thp: 8 * MiB, hugetlb: GiB, device: 4 * MiB },
      });
      for (const name of MAPPING_CONFIG_NAMES) {
        const m = createMachine(mappingMachineConfig(opts, name));
        expect(m.pageSize).toBe(pageSize);
        if (MAPPING_CONFIGS[name].iommu !== null) expect(mappingMachineConfig(opts, name).iommu).toMatchObject({ format: 'arm-lpae' });
      }
      const rep = runMapping(opts);
      expect(rep.iommuTables).toContain(`ARM LPAE stage-1 tables (an arm64 SMMU), ${pageSize / 1024} KiB granule`);
      const strict = rep.rows.filter((r) => r.config === 'iommu-strict');
      expect(strict.length).toBe(16);
      // only the scatterlist of the page-less device memory fails (pinUserPages: EFAULT), as at 4 KiB
      expect(strict.filter((r) => !r.ok).map((r) => `${r.buffer}/${r.method}/${r.errno}`)).toEqual(['device/sgtable/EFAULT']);
      for (const r of strict.filter((x) => x.ok)) {
        expect(r.bytesMismatched, `${r.buffer} ${r.method}`).toBe(0);
        expect(r.bytesVerified, `${r.buffer} ${r.method}`).toBeGreaterThan(0);
      }
      // 4 MiB of anon at the granule: one leaf PTE per granule, whatever the method (no block fits scattered pages)
      for (const r of strict.filter((x) => x.buffer === 'anon')) expect(r.counters.iommuLeafPtesWritten, r.method).toBe(4 * MiB / pageSize);
      // the hugetlb GiB in blocks of the granule's level-2 size (32 MiB at 16 KiB, 512 MiB at 64 KiB)
      const block = pageSize === 16384 ? 32 * MiB : 512 * MiB;
      expect(strict.find((x) => x.buffer === 'hugetlb' && x.method === 'map-phyrs')!.counters.iommuLeafPtesWritten).toBe(GiB / block);
    });
  }
});
