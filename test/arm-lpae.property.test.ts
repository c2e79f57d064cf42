// ARM LPAE (4 KiB granule, 48-bit input size, 4 KiB / 2 MiB / 1 GiB leaves): random map/unmap
// sequences on an unmanaged domain, compared after every step with the brute-force io-pgtable-arm
// reference of test/fixtures/arm-lpae-reference.ts: the return values (errno of iommuMap, bytes of
// iommuUnmap), the number of map_pages / unmap_pages calls, the WARNs, the leaf descriptors
// written and cleared, iommuIovaToPhys around each op's range, the number of table pages,
// and every table page's bytes as they sit in the machine's physical memory (leaf descriptors word
// for word; table descriptors by their attribute bits and the table they point to, since which
// RAM page a table gets is the page allocator's choice, not the format's).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createIommu, iommuIovaToPhys, iommuMap, iommuUnmap } from '../src/iommu/index.ts';
import { TestMachine } from './fixtures/iommu-machine.ts';
import { CACHE, diffTables, MMIO, NOEXEC, PRIV, R, RefLpae, W } from './fixtures/arm-lpae-reference.ts';

const K4 = 0x1000n, M2 = 0x200000n, G1 = 0x40000000n;
/** IOVA bases: the bottom, two 1 GiB slots, and 4 MiB below the top of the 48-bit input space. */
const BASES = [0n, G1, 2n * G1, (1n << 48n) - 2n * M2];
/** Page offsets inside a 2 MiB block that put ranges at, next to and across table ends. */
const PAGE_PICKS = [0, 1, 2, 255, 509, 510, 511];

interface Place { base: number; blk: number; page: number; pageRandom: number; pickPage: boolean }
const arbPlace: fc.Arbitrary<Place> = fc.record({
  base: fc.integer({ min: 0, max: BASES.length - 1 }), blk: fc.integer({ min: 0, max: 3 }),
  page: fc.integer({ min: 0, max: PAGE_PICKS.length - 1 }), pageRandom: fc.integer({ min: 0, max: 511 }), pickPage: fc.boolean(),
});

function iovaOf(p: Place): bigint {
  return BASES[p.base] + BigInt(p.blk) * M2 + BigInt(p.pickPage ? PAGE_PICKS[p.page] : p.pageRandom) * K4;
}

/** Sizes: 4 KiB pages, 2 MiB multiples (with or without a tail), or one 1 GiB (block-aligned op). */
type SizeKind = { kind: 'pages'; n: number } | { kind: 'blocks'; n: number; tail: number } | { kind: 'giga' };
const arbSize: fc.Arbitrary<SizeKind> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('pages' as const), n: fc.integer({ min: 1, max: 1100 }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('blocks' as const), n: fc.integer({ min: 1, max: 3 }), tail: fc.constantFrom(0, 1, 3) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('giga' as const) }) },
);

type Op =
  | { op: 'map'; at: Place; size: SizeKind; paSlot: number; skew: boolean; prot: number }
  | { op: 'unmap'; at: Place; size: SizeKind }
  | { op: 'unmapEarlier'; pick: number; how: 'all' | 'head' | 'tail' | 'block' };

const arbProt = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom(R, W, R | W, R | W | CACHE, R | CACHE | NOEXEC, R | W | MMIO, R | W | MMIO | CACHE, R | PRIV) },
  { weight: 1, arbitrary: fc.constantFrom(0, CACHE) }, // no READ or WRITE: EINVAL
);
const arbOp: fc.Arbitrary<Op> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ op: fc.constant('map' as const), at: arbPlace, size: arbSize, paSlot: fc.integer({ min: 1, max: 30 }), skew: fc.boolean(), prot: arbProt }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('unmap' as const), at: arbPlace, size: arbSize }) },
  // an earlier map's range: all of it, its first or last page, or the 2 MiB block around its start
  { weight: 2, arbitrary: fc.record({ op: fc.constant('unmapEarlier' as const), pick: fc.nat(), how: fc.constantFrom('all' as const, 'head' as const, 'tail' as const, 'block' as const) }) },
);

/** The [iova, size) of an op: a 1 GiB op sits at its slot's 1 GiB line (an aligned block). */
function rangeOf(at: Place, size: SizeKind): [bigint, bigint] {
  if (size.kind === 'giga') return [BASES[at.base] & ~(G1 - 1n), G1];
  const iova = iovaOf(at);
  if (size.kind === 'pages') return [iova, BigInt(size.n) * K4];
  return [iova & ~(M2 - 1n), BigInt(size.n) * M2 + BigInt(size.tail) * K4];
}

describe('ARM LPAE page tables vs an independent io-pgtable-arm reference', () => {
  it('random map/unmap sequences: same results, calls, WARNs, table pages and table bytes', () => {
    fc.assert(fc.property(fc.array(arbOp, { minLength: 1, maxLength: 30 }), (ops) => {
      const mm = new TestMachine();
      const iommu = createIommu(mm, { format: 'arm-lpae', mode: 'strict' });
      const d = iommu.allocDomain('unmanaged');
      const ref = new RefLpae();
      const read = (pfn: bigint): Uint8Array => mm.mem.read(pfn * 4096n, 4096);
      const earlier: Array<[bigint, bigint]> = [];
      for (const o of ops) {
        let iova: bigint, size: bigint;
        if (o.op === 'unmapEarlier') {
          if (earlier.length === 0) continue;
          const [a, n] = earlier[o.pick % earlier.length];
          [iova, size] = o.how === 'all' ? [a, n] : o.how === 'head' ? [a, K4] : o.how === 'tail' ? [a + n - K4, K4] : [a & ~(M2 - 1n), M2];
        } else {
          [iova, size] = rangeOf(o.at, o.size);
        }
        let what: string;
        if (o.op === 'map') {
          // the physical address shares the IOVA's offset in a 1 GiB block (so blocks can be used),
          // or is 4 KiB off it (4 KiB pages only)
          const pa = BigInt(o.paSlot) * G1 + (iova & (G1 - 1n)) + (o.skew && o.size.kind !== 'giga' ? K4 : 0n);
          const r = iommuMap(d, iova, pa, Number(size), o.prot);
          const want = ref.map(iova, pa, size, o.prot);
          what = `map(0x${iova.toString(16)}, pa 0x${pa.toString(16)}, 0x${size.toString(16)}, prot ${o.prot})`;
          expect(r.ok ? 'ok' : r.errno, what).toBe(want);
          earlier.push([iova, size]);
        } else {
          const n = iommuUnmap(d, iova, Number(size));
          const want = ref.unmap(iova, size);
          what = `unmap(0x${iova.toString(16)}, 0x${size.toString(16)})`;
          expect(BigInt(n), what).toBe(want);
        }
        expect(mm.stats.iommuMapPagesCalls, `${what}: map_pages calls`).toBe(ref.mapPagesCalls);
        expect(mm.stats.iommuUnmapPagesCalls, `${what}: unmap_pages calls`).toBe(ref.unmapPagesCalls);
        expect(mm.events.count('WARN'), `${what}: WARNs`).toBe(ref.warns);
        // a call checks all its slots before it writes a leaf: nothing written to be unwound
        expect(mm.stats.iommuLeafPtesWritten, `${what}: leaves written`).toBe(ref.leavesWritten);
        expect(mm.stats.iommuLeafPtesCleared, `${what}: leaves cleared`).toBe(ref.leavesCleared);
        expect(d.tablePages, `${what}: table pages`).toBe(ref.tables());
        expect(mm.kernelPagesInUse).toBe(ref.tables());
        expect(diffTables(read, d.rootPfn!, ref.root, 0), what).toBeNull();
        // translations at and around the op's range, through the IOMMU core's walk
        for (const a of [iova, iova + size / 2n + 0x123n, iova + size - 1n, iova + size, iova - 1n]) {
          if (a >= 0n && a < 1n << 64n) expect(iommuIovaToPhys(d, a), `${what}: iova_to_phys(0x${a.toString(16)})`).toBe(ref.lookup(a));
        }
      }
      iommu.freeDomain(d);
      expect(mm.kernelPagesInUse).toBe(0);
    }), { numRuns: 150 });
  });

  it('the reference catches a model that frees emptied tables (the generic_pt rule): self-check of the comparison', () => {
    const mm = new TestMachine();
    const d = createIommu(mm, { format: 'arm-lpae', mode: 'strict' }).allocDomain('unmanaged');
    const ref = new RefLpae();
    expect(iommuMap(d, 0x200000n, 0x40200000n, 0x1000, R | W).ok).toBe(true);
    ref.map(0x200000n, 0x40200000n, 0x1000n, R | W);
    expect(iommuUnmap(d, 0x200000n, 0x1000)).toBe(0x1000);
    ref.unmap(0x200000n, 0x1000n);
    const read = (pfn: bigint): Uint8Array => mm.mem.read(pfn * 4096n, 4096);
    expect(diffTables(read, d.rootPfn!, ref.root, 0)).toBeNull();
    // a reference that dropped the emptied 4 KiB table would see a table descriptor it does not have
    const l1 = ref.root.entries.get(0);
    const l2 = l1 && 'table' in l1 ? l1.table.entries.get(0) : undefined;
    if (l2 === undefined || !('table' in l2)) throw new Error('reference has no level-2 table');
    l2.table.entries.delete(1);
    expect(diffTables(read, d.rootPfn!, ref.root, 0)).toMatch(/level 2 index 1 .*reference empty/);
  });
});
