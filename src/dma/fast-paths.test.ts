// Tests for the number-based hot paths of the DMA layer against their general (bigint / accessor)
// counterparts and brute-force expectations: dmaMapPhyrs' run-wise DMA list, the two-step link's
// overlap check for links made in any order, the exact bigint path for addresses beyond 2^53, and
// iommu_dma_map_sg's one-walk entry reader against the entry-by-entry reader.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { allocPhys, gpuBar, makeMachine, pattern } from '../../test/fixtures/dma-b-machines.ts';
import { DmaList, PhyrList, sgAllocTable, type SgTable } from '../phyr/index.ts';
import { DMA_BIDIRECTIONAL, DMA_TO_DEVICE } from './constants.ts';
import { DmaIovaState, dmaIovaDestroy, dmaIovaLink, dmaIovaSync, dmaIovaTryAlloc } from './iova-state.ts';
import { dmaMapPhyrs, dmaUnmapPhyrs } from './map-phyrs.ts';
import { dmaMapSgtable } from './mapping.ts';
import { dmaSetMaxSegSize, dmaSetSegBoundary } from './mask.ts';

const PAGE = 4096;

describe('dmaMapPhyrs DMA list', () => {
  it('property: one entry per run of equal flags, as pushing every link would give; the device sees the CPU bytes', () => {
    fc.assert(fc.property(
      fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 1, max: 3 })), { minLength: 1, maxLength: 8 }),
      (pieces) => {
        const m = makeMachine('strict');
        const dev = m.device('nic0'); // reaches gpu0 through the host bridge: BAR ranges are MMIO links
        const bar = gpuBar(m);
        let barAt = bar.start;
        const ranges = pieces.map(([isBar, pages]) => {
          if (isBar) {
            const r = { addr: barAt, len: pages * PAGE, flags: bar.flags };
            barAt += BigInt(2 * pages * PAGE); // never contiguous with the next BAR piece
            return r;
          }
          return { addr: allocPhys(m, 2), len: pages * PAGE, flags: 0 };
        });
        const list = PhyrList.from(ranges);
        const r = dmaMapPhyrs(dev, list, DMA_BIDIRECTIONAL, 0);
        expect(r.ok).toBe(true);
        if (!r.ok) return;
        const mapping = r.value;
        const dl = mapping.list;
        expect(mapping.how).toBe('iova');
        // brute force: every link pushed on its own at window offset (the builder merges)
        const b = DmaList.builder();
        let off = 0;
        for (const x of ranges) { b.pushBig(dl.addrAt(0) + BigInt(off), x.len, x.flags); off += x.len; }
        expect([...dl]).toEqual([...b.build()]);
        const data = pattern(list.totalLen, pieces.length);
        let at = 0;
        for (const x of dl) {
          expect(dev.dmaWrite(x.addr, data.subarray(at, at + x.len)).ok).toBe(true);
          at += x.len;
        }
        at = 0;
        for (const x of ranges) {
          expect(m.mem.read(x.addr, x.len)).toEqual(data.subarray(at, at + x.len));
          at += x.len;
        }
        dmaUnmapPhyrs(dev, mapping, DMA_BIDIRECTIONAL, 0);
        expect(m.stats.iommuLeafPtesWritten).toBe(m.stats.iommuLeafPtesCleared);
        expect(m.events.count('DMA-DEBUG') + m.events.count('WARN')).toBe(0);
      }), { numRuns: 12 });
  });
});

describe('dmaIovaLink', () => {
  it('links made in any order: an overlap with an earlier, higher link is refused', () => {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    const p = [allocPhys(m), allocPhys(m), allocPhys(m), allocPhys(m)];
    const st = new DmaIovaState();
    expect(dmaIovaTryAlloc(dev, st, 0n, 4 * PAGE)).toBe(true);
    expect(dmaIovaLink(dev, st, p[2], 2 * PAGE, PAGE, DMA_TO_DEVICE, 0).ok).toBe(true);
    const bad = dmaIovaLink(dev, st, p[0], 0, 3 * PAGE, DMA_TO_DEVICE, 0);
    expect(bad.ok ? 'ok' : bad.errno).toBe('EINVAL');
    expect(m.events.count('MODEL-CHECK')).toBe(1);
    expect(dmaIovaLink(dev, st, p[0], 0, PAGE, DMA_TO_DEVICE, 0).ok).toBe(true);
    expect(dmaIovaLink(dev, st, p[1], PAGE, PAGE, DMA_TO_DEVICE, 0).ok).toBe(true);
    expect(dmaIovaLink(dev, st, p[3], 3 * PAGE, PAGE, DMA_TO_DEVICE, 0).ok).toBe(true);
    const again = dmaIovaLink(dev, st, p[1], PAGE, PAGE, DMA_TO_DEVICE, 0);
    expect(again.ok ? 'ok' : again.errno).toBe('EINVAL');
    expect(dmaIovaSync(dev, st, 0, 4 * PAGE).ok).toBe(true);
    for (let i = 0; i < 4; i++) {
      const rd = dev.dmaRead(st.addr + BigInt(i * PAGE), PAGE);
      expect(rd.ok && rd.value).toEqual(m.mem.read(p[i], PAGE));
    }
    dmaIovaDestroy(dev, st, 4 * PAGE, DMA_TO_DEVICE, 0);
    expect(m.stats.iommuLeafPtesWritten).toBe(m.stats.iommuLeafPtesCleared);
    expect(m.events.count('MODEL-CHECK')).toBe(2);
  });

  it('a phys beyond 2^53 takes the exact path: ERANGE from the page table, nothing linked', () => {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    const st = new DmaIovaState();
    expect(dmaIovaTryAlloc(dev, st, 0n, 2 * PAGE)).toBe(true);
    const r = dmaIovaLink(dev, st, (1n << 60n) + 0x3000n, 0, PAGE, DMA_TO_DEVICE, 0);
    expect(r.ok ? 'ok' : r.errno).toBe('ERANGE');
    expect(r.ok ? '' : r.message).toMatch(/pa 0x1000000000003000/);
    expect(m.stats.iommuLeafPtesWritten).toBe(0);
    const p = allocPhys(m);
    expect(dmaIovaLink(dev, st, p, 0, 2 * PAGE, DMA_TO_DEVICE, 0).ok).toBe(true); // nothing was linked
    dmaIovaDestroy(dev, st, 2 * PAGE, DMA_TO_DEVICE, 0);
    expect(m.events.count('DMA-DEBUG') + m.events.count('WARN')).toBe(0);
  });
});

describe('iommu_dma_map_sg entry reader', () => {
  it('property: the one-walk reader and the entry-by-entry reader (taken when an entry is empty) give the same segments', () => {
    fc.assert(fc.property(
      fc.array(fc.tuple(fc.integer({ min: 0, max: PAGE - 1 }), fc.integer({ min: 1, max: 3 * PAGE })), { minLength: 1, maxLength: 10 }),
      fc.constantFrom(0n, 0x3fffn, 0xffffn),
      fc.constantFrom(0, 8192, 5 * PAGE),
      (entries, boundary, maxSeg) => {
        const build = (withEmpty: boolean): { sgt: SgTable; nents: number; m: ReturnType<typeof makeMachine> } => {
          const m = makeMachine('strict');
          const dev = m.device('nvme0');
          if (boundary) dmaSetSegBoundary(dev, boundary);
          if (maxSeg) dmaSetMaxSegSize(dev, maxSeg);
          const base = allocPhys(m, 7) / BigInt(PAGE);
          const a = sgAllocTable(entries.length + (withEmpty ? 1 : 0));
          if (!a.ok) throw new Error(a.errno);
          const sgt = a.value;
          const first = withEmpty ? 1 : 0;
          if (withEmpty) sgt.setPage(0, base, 0, 0); // an empty entry: the walk would skip it
          entries.forEach(([off, len], i) => {
            const l = Math.min(len, 3 * PAGE - off);
            sgt.setPage(first + i, base + BigInt(4 * i + 1), l, off);
          });
          const r = dmaMapSgtable(dev, sgt, DMA_TO_DEVICE, 0);
          expect(r.ok).toBe(true);
          return { sgt, nents: sgt.nents, m };
        };
        const fast = build(false);
        const slow = build(true);
        // the empty first entry is a segment of its own, of length 0, at the start of the IOVA
        expect(slow.nents).toBe(fast.nents + 1);
        expect(slow.sgt.dmaLengthAt(0)).toBe(0);
        for (let i = 0; i < fast.nents; i++) {
          expect([slow.sgt.dmaAddressAt(i + 1), slow.sgt.dmaLengthAt(i + 1), slow.sgt.dmaFlagsAt(i + 1)])
            .toEqual([fast.sgt.dmaAddressAt(i), fast.sgt.dmaLengthAt(i), fast.sgt.dmaFlagsAt(i)]);
        }
        expect(slow.m.stats.iommuLeafPtesWritten).toBe(fast.m.stats.iommuLeafPtesWritten);
      }), { numRuns: 25 });
  });
});
