// iommuMapBatch: one table walk for a whole list of ranges, byte-exact against iommuMapSg, and the
// iommuTableWalkSteps counter on every map path (x86-64, AMD v1, ARM LPAE).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Range, RangeSource } from '../phyr/index.ts';
import { createIommu, iommuIovaToPhys, iommuMap, iommuMapBatch, iommuMapSg, iommuUnmap, IOMMU_READ, IOMMU_WRITE, type IommuConfig } from './internal.ts';
import { TestMachine } from '../../test/fixtures/iommu-machine.ts';

const RW = IOMMU_READ | IOMMU_WRITE;
type Format = IommuConfig['format'];

function setup(format: Format) {
  const mm = new TestMachine();
  const iommu = createIommu(mm, { format, mode: 'strict' });
  const d = iommu.allocDomain('unmanaged');
  return { mm, d };
}

function src(ranges: ReadonlyArray<readonly [bigint, number]>): RangeSource {
  const list: Range[] = ranges.map(([addr, len]) => ({ addr, len, flags: 0 }));
  return {
    layout: 'phyr', count: list.length, totalLen: list.reduce((s, r) => s + r.len, 0), kernelBytes: 16 * list.length,
    addrFitsNumber: true, [Symbol.iterator]: () => list[Symbol.iterator](),
    cursor: () => { throw new Error('not used'); },
  };
}

/** Every table page of the domain with its bytes. */
function tableBytes(mm: TestMachine, d: ReturnType<typeof setup>['d']): Map<number, Uint8Array> {
  const out = new Map<number, Uint8Array>();
  for (const pfn of d.pt!.allTables()) out.set(pfn, mm.mem.read(BigInt(pfn) * 4096n, 4096));
  return out;
}

describe('iommuTableWalkSteps', () => {
  it.each<[Format, number]>([['x86-64', 3], ['amd-v1', 3], ['arm-lpae', 3]])(
    '%s: one 4 KiB map walks from the root to the leaf table (%i levels descended)', (format, steps) => {
      const { mm, d } = setup(format);
      const before = mm.stats.iommuTableWalkSteps;
      expect(iommuMap(d, 0x40000000n, 0x10000n, 4096, RW).ok).toBe(true);
      expect(mm.stats.iommuTableWalkSteps - before).toBe(steps);
      // a second map into the same leaf table walks from the root again (a new map_pages call)
      expect(iommuMap(d, 0x40001000n, 0x20000n, 4096, RW).ok).toBe(true);
      expect(mm.stats.iommuTableWalkSteps - before).toBe(2 * steps);
    });

  it('x86-64: 16 scattered pages cost 16 walks through iommuMapSg and one through iommuMapBatch', () => {
    const pages = Array.from({ length: 16 }, (_, i) => [BigInt(0x100000 + i * 0x3000), 4096] as const);
    const a = setup('x86-64');
    const b = setup('x86-64');
    const sa = a.mm.stats.iommuTableWalkSteps, sb = b.mm.stats.iommuTableWalkSteps;
    expect(iommuMapSg(a.d, 0x40000000n, src(pages), RW)).toEqual({ ok: true, value: 16 * 4096 });
    expect(iommuMapBatch(b.d, 0x40000000n, src(pages), RW)).toEqual({ ok: true, value: 16 * 4096 });
    expect(a.mm.stats.iommuTableWalkSteps - sa).toBe(16 * 3);
    expect(b.mm.stats.iommuTableWalkSteps - sb).toBe(3);
    expect(tableBytes(b.mm, b.d)).toEqual(tableBytes(a.mm, a.d));
  });

  it('a batch that crosses into the next leaf table descends one level, not from the root', () => {
    const { mm, d } = setup('x86-64');
    const before = mm.stats.iommuTableWalkSteps;
    // iova 0x401ff000: the last slot of one leaf table, then the first of the next (same level-1 table)
    expect(iommuMapBatch(d, 0x401ff000n, src([[0x10000n, 4096], [0x30000n, 4096]]), RW).ok).toBe(true);
    expect(mm.stats.iommuTableWalkSteps - before).toBe(3 + 1);
  });

  it('a failing batch unmaps what it mapped and leaves the next map walking from the root', () => {
    const { mm, d } = setup('x86-64');
    const r = iommuMapBatch(d, 0x40000000n, src([[0x10000n, 4096], [0x30001n, 4096]]), RW);
    expect(r.ok ? 'ok' : r.errno).toBe('ENXIO');
    expect(mm.stats.iommuLeafPtesWritten - mm.stats.iommuLeafPtesCleared).toBe(0);
    const before = mm.stats.iommuTableWalkSteps;
    expect(iommuMap(d, 0x40000000n, 0x10000n, 4096, RW).ok).toBe(true);
    expect(mm.stats.iommuTableWalkSteps - before).toBe(3);
  });
});

describe('iommuMapBatch property: table bytes identical to per-range maps', () => {
  const rangesArb = fc.array(fc.record({ pfn: fc.integer({ min: 16, max: 1 << 20 }), pages: fc.integer({ min: 1, max: 600 }), huge: fc.boolean() }),
    { minLength: 1, maxLength: 12 });
  it.each<Format>(['x86-64', 'amd-v1', 'arm-lpae'])('%s', (format) => {
    fc.assert(fc.property(rangesArb, fc.integer({ min: 0, max: 1023 }), (rs, iovaMb) => {
      // 2 MiB-aligned pieces now and then, so larger leaves appear where both sides line up
      const ranges = rs.map((r) => [BigInt(r.huge ? (r.pfn & ~511) : r.pfn) * 4096n, (r.huge ? 512 : r.pages) * 4096] as const);
      const iova = BigInt(iovaMb) << 21n;
      const a = setup(format);
      const b = setup(format);
      const ra = iommuMapSg(a.d, iova, src(ranges), RW);
      const rb = iommuMapBatch(b.d, iova, src(ranges), RW);
      expect(rb).toEqual(ra);
      expect(tableBytes(b.mm, b.d)).toEqual(tableBytes(a.mm, a.d));
      expect(b.mm.stats.iommuTableWalkSteps).toBeLessThanOrEqual(a.mm.stats.iommuTableWalkSteps);
      if (ra.ok) {
        expect(iommuUnmap(b.d, iova, ra.value)).toBe(ra.value);
        expect(iommuIovaToPhys(b.d, iova)).toBe(0n);
      }
    }), { numRuns: 12 });
  });
});
