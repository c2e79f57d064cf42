// Tests for the frame-number entry points the DMA layer uses (iommuMapPfns, iommuMapPfnsSync,
// iommuUnmapFastPfns, iommuDmaAllocIovaPfn / iommuDmaFreeIovaPfn) against the bigint API, and for
// the page table's cached 4 KiB-level table (lookup and unmap take it) against a brute-force map.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Device } from '../pci/index.ts';
import {
  createIommu, iommuDmaAllocIova, iommuDmaAllocIovaPfn, iommuDmaFreeIova, iommuDmaFreeIovaPfn, IommuIotlbGather,
  iommuIotlbSync, iommuIovaToPhys, iommuMap, iommuMapNosync, iommuMapPfns, iommuMapPfnsSync, iommuUnmapFast,
  iommuUnmapFastPfns, iommuWalk, IOMMU_READ, IOMMU_WRITE, type IommuDomain,
} from './internal.ts';
import { TestMachine } from '../../test/fixtures/iommu-machine.ts';

const RW = IOMMU_READ | IOMMU_WRITE;

type Op =
  | { kind: 'map'; iova: number; pages: number; pa: number; prot: number }
  | { kind: 'unmap'; iova: number; pages: number }
  | { kind: 'lookup'; iova: number };

// IOVA frames in 3 tables' worth of space around a 2 MiB line, so ops share, fill and free tables.
// pa frames are odd, iova frames even + odd mixes: (iova ^ pa) & 1 is often 1 (4 KiB leaves only),
// and sometimes 0, where x86-64 and amd-v1 pick larger leaves.
const BASE = 0x40000; // frame of IOVA 1 GiB
const arbOp: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    kind: fc.constant('map' as const), iova: fc.integer({ min: 0, max: 1535 }), pages: fc.integer({ min: 1, max: 600 }),
    pa: fc.integer({ min: 0, max: 1 << 20 }), prot: fc.constantFrom(IOMMU_READ, IOMMU_WRITE, RW, 0),
  }),
  fc.record({ kind: fc.constant('unmap' as const), iova: fc.integer({ min: 0, max: 1535 }), pages: fc.integer({ min: 1, max: 600 }) }),
  fc.record({ kind: fc.constant('lookup' as const), iova: fc.integer({ min: 0, max: 2200 }) }),
);

function domainOn(format: 'x86-64' | 'amd-v1'): { mm: TestMachine; d: IommuDomain } {
  const mm = new TestMachine();
  return { mm, d: createIommu(mm, { format, mode: 'strict' }).allocDomain('unmanaged') };
}

describe('frame-number fast paths', () => {
  it.each(['x86-64', 'amd-v1'] as const)('property (%s): iommuMapPfns / iommuUnmapFastPfns behave exactly as the bigint API', (format) => {
    fc.assert(fc.property(fc.array(arbOp, { minLength: 1, maxLength: 40 }), (ops) => {
      const a = domainOn(format); // bigint API
      const b = domainOn(format); // frame-number API
      const ref = new Map<number, number>(); // iova frame -> pa frame, for 4 KiB-leaf maps only
      let refValid = true; // larger leaves make the brute-force map inexact; then only A and B are compared
      for (const op of ops) {
        if (op.kind === 'map') {
          const iova = BASE + op.iova;
          const ra = iommuMapNosync(a.d, BigInt(iova) * 4096n, BigInt(op.pa) * 4096n, op.pages * 4096, op.prot);
          const rb = iommuMapPfns(b.d, iova, op.pa, op.pages, op.prot);
          expect(rb).toEqual(ra);
          if (ra.ok) {
            if (((iova ^ op.pa) & 1) === 0 && op.pages > 1) refValid = false;
            for (let k = 0; k < op.pages; k++) ref.set(iova + k, op.pa + k);
          }
        } else if (op.kind === 'unmap') {
          const iova = BASE + op.iova;
          const ga = new IommuIotlbGather();
          const gb = new IommuIotlbGather();
          const na = iommuUnmapFast(a.d, BigInt(iova) * 4096n, op.pages * 4096, ga);
          const nb = iommuUnmapFastPfns(b.d, iova, op.pages, gb);
          expect(nb).toBe(na);
          expect([gb.start, gb.end, gb.freelist.length]).toEqual([ga.start, ga.end, ga.freelist.length]);
          iommuIotlbSync(a.d, ga);
          iommuIotlbSync(b.d, gb);
          if (refValid) {
            // unmapping stops at the first hole
            let k = 0;
            while (k < op.pages && ref.has(iova + k)) ref.delete(iova + k++);
            expect(na).toBe(k * 4096);
          } else {
            for (let k = 0; k < na / 4096; k++) ref.delete(iova + k);
          }
        } else {
          const iova = BigInt(BASE + op.iova) * 4096n + 0x123n;
          const pa = iommuIovaToPhys(a.d, iova);
          expect(iommuIovaToPhys(b.d, iova)).toBe(pa);
          if (refValid) {
            const f = ref.get(BASE + op.iova);
            expect(pa).toBe(f === undefined ? 0n : BigInt(f) * 4096n + 0x123n);
          }
        }
      }
      expect({ ...b.mm.stats }).toEqual({ ...a.mm.stats });
      expect(b.d.tablePages).toBe(a.d.tablePages);
    }), { numRuns: 60 });
  });

  it.each(['x86-64', 'vtd-ss', 'arm-lpae'] as const)('property (%s): a short run written into the cached table (mapRunCached) is what the general map path writes', (format) => {
    // B is A with the short-run step switched off, so every multi-page map of B goes through
    // map_pages batches (mapLeaves); maps of 2-12 pages next to the last one hit A's cached table.
    let taken = 0;
    const arbRun: fc.Arbitrary<Op> = fc.oneof(
      arbOp,
      fc.record({
        kind: fc.constant('map' as const), iova: fc.integer({ min: 0, max: 1535 }), pages: fc.integer({ min: 2, max: 12 }),
        pa: fc.integer({ min: 0, max: 1 << 20 }), prot: fc.constantFrom(RW, RW, IOMMU_READ),
      }),
    );
    fc.assert(fc.property(fc.array(arbRun, { minLength: 1, maxLength: 40 }), (ops) => {
      const mk = () => {
        const mm = new TestMachine();
        return { mm, d: createIommu(mm, { format, mode: 'strict' }).allocDomain('unmanaged') };
      };
      const a = mk();
      const b = mk();
      const pa = a.d.pt!, pb = b.d.pt!;
      const run = pa.mapRunCached.bind(pa);
      pa.mapRunCached = (...args) => {
        const r = run(...args);
        if (r) taken++;
        return r;
      };
      pb.mapRunCached = () => false;
      let last = -1;
      // every run starts with a page and a short run right after it (the cached table: the fast step)
      const lead: Op[] = [{ kind: 'map', iova: 700, pages: 1, pa: 0x1235, prot: RW }, { kind: 'map', iova: 701, pages: 3, pa: 0x4321, prot: RW }];
      for (const op of [...lead, ...ops]) {
        if (op.kind === 'map') {
          // half the short runs start right after the last map, in its table
          const iova = BASE + (op.pages <= 12 && last >= 0 && (op.pa & 1) === 0 ? last : op.iova);
          const rb = iommuMapPfns(b.d, iova, op.pa, op.pages, op.prot);
          expect(iommuMapPfns(a.d, iova, op.pa, op.pages, op.prot)).toEqual(rb);
          if (rb.ok) last = iova - BASE + op.pages;
        } else if (op.kind === 'unmap') {
          const ga = new IommuIotlbGather();
          const gb = new IommuIotlbGather();
          expect(iommuUnmapFastPfns(a.d, BASE + op.iova, op.pages, ga)).toBe(iommuUnmapFastPfns(b.d, BASE + op.iova, op.pages, gb));
          iommuIotlbSync(a.d, ga);
          iommuIotlbSync(b.d, gb);
        }
      }
      expect({ ...a.mm.stats }).toEqual({ ...b.mm.stats });
      expect(a.d.tablePages).toBe(b.d.tablePages);
      for (let f = BASE; f < BASE + 2200; f++) expect(iommuWalk(a.d, BigInt(f) * 4096n)).toEqual(iommuWalk(b.d, BigInt(f) * 4096n));
    }), { numRuns: 40 });
    expect(taken).toBeGreaterThanOrEqual(40); // at least the lead run of each of the 40 runs
  });

  it('iommuMapPfnsSync is iommuMap in frames: same result, same counters, same failure unrolling', () => {
    const a = domainOn('x86-64');
    const b = domainOn('x86-64');
    expect(iommuMapPfnsSync(b.d, 0x1000, 0x2001, 3, RW)).toEqual(iommuMap(a.d, 0x1000n * 4096n, 0x2001n * 4096n, 3 * 4096, RW));
    // overlapping the first map after two fresh pages: EADDRINUSE, the two are unrolled
    const ra = iommuMap(a.d, 0xffen * 4096n, 0x5001n * 4096n, 4 * 4096, RW);
    const rb = iommuMapPfnsSync(b.d, 0xffe, 0x5001, 4, RW);
    expect(ra.ok ? 'ok' : ra.errno).toBe('EADDRINUSE');
    expect(rb).toEqual(ra);
    expect(iommuIovaToPhys(b.d, 0xffen * 4096n)).toBe(0n);
    expect(iommuIovaToPhys(b.d, 0x1002n * 4096n)).toBe(0x2003n * 4096n);
    expect({ ...b.mm.stats }).toEqual({ ...a.mm.stats });
  });

  it('iommuDmaAllocIovaPfn / iommuDmaFreeIovaPfn hand out and take back what the bigint calls would', () => {
    const mk = () => {
      const mm = new TestMachine();
      return { mm, d: createIommu(mm, { format: 'x86-64', mode: 'strict' }).allocDomain('dma'), dev: new Device('t') };
    };
    const a = mk();
    const b = mk();
    const mask = (1n << 64n) - 1n;
    const sizes = [1, 3, 8, 40, 1, 300, 2, 64];
    const pa: bigint[] = [], pb: number[] = [];
    for (const s of sizes) {
      pa.push(iommuDmaAllocIova(a.d, s * 4096, mask, a.dev));
      pb.push(iommuDmaAllocIovaPfn(b.d, s, mask, b.dev));
    }
    expect(pb.map((p) => BigInt(p) * 4096n)).toEqual(pa);
    expect(new Set(pb).size).toBe(sizes.length);
    for (let i = 0; i < sizes.length; i += 2) {
      iommuDmaFreeIova(a.d, pa[i], sizes[i] * 4096, null);
      iommuDmaFreeIovaPfn(b.d, pb[i], sizes[i], null);
    }
    expect(iommuDmaAllocIovaPfn(b.d, 5, mask, b.dev)).toBe(Number(iommuDmaAllocIova(a.d, 5 * 4096, mask, a.dev) / 4096n));
    expect(b.d.iovad!.ranges()).toEqual(a.d.iovad!.ranges());
    expect({ ...b.mm.stats }).toEqual({ ...a.mm.stats });
  });

  it('the cached 4 KiB-level table is dropped when its table is freed: no stale translation', () => {
    const { d } = domainOn('x86-64');
    const iova = 0x200000n * 8n; // 2 MiB-aligned
    expect(iommuMap(d, iova, 0x1001000n, 512 * 4096, RW).ok).toBe(true);
    expect(iommuIovaToPhys(d, iova + 0x5000n)).toBe(0x1006000n); // lookup caches the table
    const tables = d.tablePages;
    const g = new IommuIotlbGather();
    expect(iommuUnmapFast(d, iova, 512 * 4096, g)).toBe(512 * 4096); // covers the whole table: freed
    iommuIotlbSync(d, g);
    expect(d.tablePages).toBe(tables - 1);
    expect(iommuIovaToPhys(d, iova + 0x5000n)).toBe(0n);
    // a 2 MiB leaf where the table was, then 4 KiB pages again in a fresh table
    expect(iommuMap(d, iova, 0x40000000n, 512 * 4096, RW).ok).toBe(true);
    expect(iommuIovaToPhys(d, iova + 0x5000n)).toBe(0x40005000n);
    const g2 = new IommuIotlbGather();
    expect(iommuUnmapFast(d, iova, 512 * 4096, g2)).toBe(512 * 4096);
    iommuIotlbSync(d, g2);
    expect(iommuMap(d, iova + 0x3000n, 0x7000n, 4096, IOMMU_READ).ok).toBe(true);
    expect(iommuIovaToPhys(d, iova + 0x3000n)).toBe(0x7000n);
    expect(iommuIovaToPhys(d, iova + 0x5000n)).toBe(0n);
  });
});
