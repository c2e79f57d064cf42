// ARM LPAE with 16 and 64 KiB granules (drivers/iommu/io-pgtable-arm.c): random map/unmap sequences
// on an unmanaged domain of a 16 KiB- and a 64 KiB-page machine, checked after every step against a
// brute-force reference that keeps one entry per granule (iova granule -> phys granule) and knows
// nothing of levels, blocks or tables: iommuIovaToPhys at the start, middle and end of every live
// and every removed mapping, what each call returns, and that the tables are all given back.
// Maps go to free IOVA (or, on purpose, over the first granule of a live mapping: EEXIST, nothing
// changes); unmaps take a whole earlier mapping, or a piece of one made only of pages (a mapping
// smaller than the block size), so that io-pgtable-arm's partial-block refusal never applies.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createIommu, iommuIovaToPhys, iommuMap, iommuUnmap, iommuWalkInfo, IOMMU_READ, IOMMU_WRITE } from '../src/iommu/index.ts';
import { TestMachine } from './fixtures/iommu-machine.ts';

interface Live { iova: number; pa: number; granules: number }

type Op =
  | { op: 'map'; slot: number; at: number; granules: number; blocks: number; paSlot: number; skew: boolean }
  | { op: 'overlap'; pick: number }
  | { op: 'unmapAll'; pick: number }
  | { op: 'unmapPiece'; pick: number; from: number; len: number };

const arbOp: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({
    op: fc.constant('map' as const), slot: fc.integer({ min: 0, max: 3 }), at: fc.integer({ min: 0, max: 4095 }),
    granules: fc.integer({ min: 1, max: 600 }), blocks: fc.constantFrom(0, 0, 0, 1, 2), paSlot: fc.integer({ min: 1, max: 60 }), skew: fc.boolean(),
  }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('overlap' as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('unmapAll' as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('unmapPiece' as const), pick: fc.nat(), from: fc.nat(), len: fc.integer({ min: 1, max: 64 }) }) },
);

describe.each([
  ['16 KiB', 16384, 32 * 2 ** 20],
  ['64 KiB', 65536, 512 * 2 ** 20],
] as const)('ARM LPAE %s granule vs a brute-force iova -> phys map', (_name, granule, block) => {
  const perBlock = block / granule;
  /** IOVA slots (in granules): two block-aligned spans at the bottom, one at 1 TiB, one just below the top of the 48-bit input. */
  const SLOTS = [0, 4 * perBlock, 2 ** 40 / granule, 2 ** 48 / granule - 4 * perBlock];

  it('random map/unmap sequences translate as the reference says, and give every table back', () => {
    let blockLeaves = 0; // maps whose first leaf is a block: the sequences do reach the block level
    fc.assert(fc.property(fc.array(arbOp, { minLength: 1, maxLength: 25 }), (ops) => {
      const mm = new TestMachine(2 ** 36, granule);
      const iommu = createIommu(mm, { format: 'arm-lpae', mode: 'strict' });
      const d = iommu.allocDomain('unmanaged');
      const ref = new Map<number, number>(); // iova granule -> phys granule
      const live: Live[] = [];
      const gone: Live[] = [];
      let warns = 0; // the WARN of each map over a live leaf (arm_lpae_init_pte: "We require an unmap first")
      const addr = (g: number): bigint => BigInt(g) * BigInt(granule);
      const free = (iova: number, n: number): boolean => {
        for (let g = iova; g < iova + n; g++) if (ref.has(g)) return false;
        return true;
      };
      const drop = (iova: number, n: number): void => { for (let g = iova; g < iova + n; g++) ref.delete(g); };
      for (const o of ops) {
        let what: string = o.op;
        if (o.op === 'map') {
          // a block-aligned start when blocks are asked for; the physical address shares the IOVA's
          // offset in a block (blocks possible) or is one granule off it (pages only)
          const n = o.blocks * perBlock + o.granules;
          const iova = SLOTS[o.slot] + (o.blocks > 0 ? 0 : o.at);
          const pa = o.paSlot * 4 * perBlock + (iova % perBlock) + (o.skew ? 1 : 0);
          if (iova + n > 2 ** 48 / granule || !free(iova, n)) continue;
          what = `map(0x${addr(iova).toString(16)}, pa 0x${addr(pa).toString(16)}, ${n} granules)`;
          const r = iommuMap(d, addr(iova), addr(pa), n * granule, IOMMU_READ | IOMMU_WRITE);
          expect(r.ok ? 'ok' : r.errno, what).toBe('ok');
          for (let k = 0; k < n; k++) ref.set(iova + k, pa + k);
          const walk = iommuWalkInfo(d, addr(iova));
          if (walk[walk.length - 1].leafBytes === block) blockLeaves++;
          live.push({ iova, pa, granules: n });
        } else if (o.op === 'overlap') {
          if (live.length === 0) continue;
          const m = live[o.pick % live.length];
          what = `map over 0x${addr(m.iova).toString(16)}`;
          const r = iommuMap(d, addr(m.iova), addr(m.pa + 7), granule, IOMMU_READ);
          expect(r.ok ? 'ok' : r.errno, what).toBe('EEXIST');
          warns++;
        } else if (o.op === 'unmapAll') {
          if (live.length === 0) continue;
          const m = live.splice(o.pick % live.length, 1)[0];
          what = `unmap(0x${addr(m.iova).toString(16)}, ${m.granules} granules)`;
          expect(iommuUnmap(d, addr(m.iova), m.granules * granule), what).toBe(m.granules * granule);
          drop(m.iova, m.granules);
          gone.push(m);
        } else {
          // a piece of a mapping smaller than a block: all its leaves are pages
          const small = live.filter((m) => m.granules < perBlock);
          if (small.length === 0) continue;
          const m = small[o.pick % small.length];
          const from = o.from % m.granules;
          const len = Math.min(o.len, m.granules - from);
          what = `unmap piece (0x${addr(m.iova + from).toString(16)}, ${len} granules)`;
          expect(iommuUnmap(d, addr(m.iova + from), len * granule), what).toBe(len * granule);
          drop(m.iova + from, len);
          live.splice(live.indexOf(m), 1);
          if (from > 0) live.push({ iova: m.iova, pa: m.pa, granules: from });
          if (from + len < m.granules) live.push({ iova: m.iova + from + len, pa: m.pa + from + len, granules: m.granules - from - len });
          gone.push({ iova: m.iova + from, pa: m.pa + from, granules: len });
        }
        for (const m of [...live, ...gone]) {
          for (const g of [m.iova, m.iova + (m.granules >> 1), m.iova + m.granules - 1]) {
            const want = ref.get(g);
            for (const off of [0, 42, granule - 1]) {
              const a = addr(g) + BigInt(off);
              expect(iommuIovaToPhys(d, a), `${what}: iova_to_phys(0x${a.toString(16)})`).toBe(want === undefined ? 0n : addr(want) + BigInt(off));
            }
          }
        }
      }
      expect(mm.events.count('WARN')).toBe(warns);
      for (const m of live) expect(iommuUnmap(d, addr(m.iova), m.granules * granule)).toBe(m.granules * granule);
      for (const m of live) expect(iommuIovaToPhys(d, addr(m.iova))).toBe(0n);
      iommuIovaToPhys(d, 0n);
      iommu.freeDomain(d);
      expect(mm.kernelPagesInUse).toBe(0);
    }), { numRuns: 80 });
    expect(blockLeaves).toBeGreaterThan(0);
  });
});
