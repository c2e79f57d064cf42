// One suite over every page-table format (the generic_pt kunit idea): random map/unmap sequences
// against a reference dictionary of mapped extents; iommuIovaToPhys, the device translation and
// the table-page accounting must agree with it after every step. ARM LPAE follows io-pgtable-arm's
// own rules (a block replaces a live table, partial block unmaps are refused) and has its own
// suite: test/arm-lpae.property.test.ts.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createIommu, iommuIovaToPhys, iommuMap, iommuTranslate, iommuUnmap, IOMMU_READ, IOMMU_WRITE, type IommuConfig } from '../src/iommu/internal.ts';
import { TestMachine } from './fixtures/iommu-machine.ts';

const FORMATS: Array<[string, Partial<IommuConfig>]> = [
  ['x86-64 4-level', { format: 'x86-64', levels: 4 }],
  ['x86-64 5-level', { format: 'x86-64', levels: 5 }],
  ['amd-v1 4-level (contiguous leaves)', { format: 'amd-v1', levels: 4 }],
  ['amd-v1 5-level', { format: 'amd-v1', levels: 5 }],
];

interface Extent { iova: bigint; pa: bigint; len: bigint; prot: number }

type Op =
  | { kind: 'map'; slot: number; pageOff: number; pages: number; huge: number; paSlot: number; prot: number }
  | { kind: 'unmapExtent'; pick: number }
  | { kind: 'unmapHole'; slot: number; pageOff: number };

const SLOT = 1n << 30n; // IOVA slots of 1 GiB so 2 MiB / 1 GiB leaves can occur
const arbOp: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    kind: fc.constant('map' as const), slot: fc.integer({ min: 0, max: 5 }), pageOff: fc.integer({ min: 0, max: 2047 }),
    pages: fc.integer({ min: 1, max: 1100 }), huge: fc.integer({ min: 0, max: 9 }), paSlot: fc.integer({ min: 1, max: 40 }),
    prot: fc.constantFrom(IOMMU_READ, IOMMU_WRITE, IOMMU_READ | IOMMU_WRITE),
  }),
  fc.record({ kind: fc.constant('unmapExtent' as const), pick: fc.nat() }),
  fc.record({ kind: fc.constant('unmapHole' as const), slot: fc.integer({ min: 0, max: 5 }), pageOff: fc.integer({ min: 0, max: 2047 }) }),
);

function lookup(ref: Extent[], iova: bigint): Extent | undefined {
  return ref.find((e) => iova >= e.iova && iova < e.iova + e.len);
}

describe.each(FORMATS)('page tables vs a reference dictionary: %s', (_name, cfg) => {
  it('random map/unmap sequences', () => {
    fc.assert(fc.property(fc.array(arbOp, { minLength: 1, maxLength: 25 }), fc.integer({ min: 0, max: 1 << 20 }), (ops, salt) => {
      const mm = new TestMachine();
      const iommu = createIommu(mm, { format: 'x86-64', mode: 'strict', ...cfg });
      const d = iommu.allocDomain('unmanaged');
      const ref: Extent[] = [];
      const check = (iova: bigint): void => {
        const e = lookup(ref, iova);
        const want = e ? e.pa + (iova - e.iova) : 0n;
        expect(iommuIovaToPhys(d, iova)).toBe(want);
        // a device access of the kind the mapping allows (AMD v1 has write-only mappings)
        const t = iommuTranslate(d, iova, e !== undefined && !(e.prot & IOMMU_READ));
        expect(t.ok ? t.phys : 0n).toBe(want);
      };
      for (const op of ops) {
        if (op.kind === 'map') {
          let iova: bigint, pa: bigint, len: bigint;
          if (op.huge === 0) { // a 1 GiB leaf
            iova = BigInt(op.slot) * SLOT; pa = BigInt(op.paSlot) * SLOT; len = SLOT;
          } else if (op.huge <= 3) { // 2 MiB aligned, 2 MiB multiple (plus a tail)
            iova = BigInt(op.slot) * SLOT + BigInt(op.pageOff % 512) * 0x200000n;
            pa = BigInt(op.paSlot) * SLOT + BigInt(op.pageOff % 512) * 0x200000n;
            len = BigInt(1 + (op.pages % 3)) * 0x200000n + BigInt(op.huge === 3 ? 0x3000 : 0);
          } else {
            iova = BigInt(op.slot) * SLOT + BigInt(op.pageOff) * 0x1000n;
            pa = BigInt(op.paSlot) * SLOT + BigInt((op.pageOff * 7 + salt) % 4096) * 0x1000n;
            len = BigInt(op.pages) * 0x1000n;
          }
          const overlaps = ref.some((e) => iova < e.iova + e.len && e.iova < iova + len);
          const r = iommuMap(d, iova, pa, Number(len), op.prot);
          if (overlaps) {
            expect(r.ok ? 'ok' : r.errno).toBe('EADDRINUSE');
          } else {
            expect(r.ok).toBe(true);
            ref.push({ iova, pa, len, prot: op.prot });
          }
          check(iova); check(iova + len - 1n); check(iova + len);
          if (iova > 0n) check(iova - 1n);
        } else if (op.kind === 'unmapExtent') {
          if (ref.length === 0) continue;
          const [e] = ref.splice(op.pick % ref.length, 1);
          expect(iommuUnmap(d, e.iova, Number(e.len))).toBe(Number(e.len));
          check(e.iova); check(e.iova + e.len - 1n);
        } else {
          const iova = BigInt(op.slot) * SLOT + BigInt(op.pageOff) * 0x1000n;
          if (lookup(ref, iova)) continue;
          expect(iommuUnmap(d, iova, 4096)).toBe(0);
        }
        // every extent still translates at its ends and one inner page; permissions follow prot
        for (const e of ref) {
          check(e.iova); check(e.iova + e.len - 1n); check(e.iova + ((e.len / 2n) & ~0xfffn));
          const w = iommuTranslate(d, e.iova, true);
          expect(w.ok).toBe((e.prot & IOMMU_WRITE) !== 0);
        }
        // table-page accounting: every page the domain holds is reachable, and RAM agrees
        expect(d.tablePages).toBe(d.pt?.allTables().length);
        expect(mm.kernelPagesInUse).toBe(d.tablePages);
      }
      iommu.freeDomain(d);
      expect(mm.kernelPagesInUse).toBe(0);
    }), { numRuns: 60 });
  });
});
