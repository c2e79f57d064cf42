import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { allocPhys, gpuBar, makeMachine, pattern, type IommuMode } from '../../test/fixtures/dma-b-machines.ts';
import { sgAllocTable, sgAllocTableFromPagesSegment, SG_DMA_BUS_ADDRESS, type SgTable } from '../phyr/index.ts';
import type { Machine } from '../machine/index.ts';
import { DMA_ATTR_MMIO, DMA_ATTR_PRIVILEGED, DMA_BIDIRECTIONAL, DMA_FROM_DEVICE, DMA_TO_DEVICE } from './constants.ts';
import {
  IOMMU_CACHE, IOMMU_MMIO, IOMMU_PRIV, IOMMU_READ, IOMMU_WRITE, iommuGetDmaDomain, iommuUnmap, iommuWalk,
  iommuWalkInfo,
} from '../iommu/index.ts';
import { dmaMapPhys, dmaMapSgtable, dmaSyncSingleForCpu, dmaUnmapPhys, dmaUnmapSgtable } from './mapping.ts';
import { iommuDmaGetMergeBoundary, iommuDmaMaxMappingSize, iommuDmaOptMappingSize, dmaInfoToProt, mapSgPieces, type SgEntries } from './iommu-dma.ts';
import { dmaSetMaxSegSize, dmaSetMinAlignMask, dmaSetSegBoundary } from './mask.ts';
import { iommuDmaAllocIova } from '../iommu/internal.ts';

const PAGE = 4096;
const leafPtes = (m: Machine) => m.stats.iommuLeafPtesWritten - m.stats.iommuLeafPtesCleared;

describe('dma_info_to_prot', () => {
  it('maps directions and attributes to IOMMU prot bits (dma-iommu.c: dma_info_to_prot)', () => {
    expect(dmaInfoToProt(DMA_BIDIRECTIONAL, true, 0)).toBe(1 | 2 | 4);
    expect(dmaInfoToProt(DMA_TO_DEVICE, false, 0)).toBe(1);
    expect(dmaInfoToProt(DMA_FROM_DEVICE, false, 1 << 9)).toBe(2 | 32);
    expect(dmaInfoToProt(DMA_TO_DEVICE, true, 1 << 10)).toBe(1 | 16);
    expect(dmaInfoToProt(3, true, 0)).toBe(0);
  });

  it('DMA_ATTR_MMIO gives IOMMU_MMIO instead of IOMMU_CACHE, not both, on a coherent device', () => {
    // dma_info_to_prot(): prot = IOMMU_MMIO for MMIO, else IOMMU_CACHE when coherent; PRIV and the
    // direction bits are added to either
    expect(dmaInfoToProt(DMA_BIDIRECTIONAL, true, DMA_ATTR_MMIO)).toBe(IOMMU_MMIO | IOMMU_READ | IOMMU_WRITE);
    expect(dmaInfoToProt(DMA_FROM_DEVICE, false, DMA_ATTR_MMIO | DMA_ATTR_PRIVILEGED)).toBe(IOMMU_MMIO | IOMMU_PRIV | IOMMU_WRITE);
    expect(dmaInfoToProt(DMA_BIDIRECTIONAL, true, DMA_ATTR_PRIVILEGED)).toBe(IOMMU_CACHE | IOMMU_PRIV | IOMMU_READ | IOMMU_WRITE);
  });

  it('ARM LPAE: a coherent device mapping a BAR with DMA_ATTR_MMIO gets a Device-memory leaf with SH=OS (0xe4b), not SH=IS (0xf4b)', () => {
    // arm_lpae_prot_to_pte(): IOMMU_MMIO selects AttrIndx DEV; without IOMMU_CACHE the shareability
    // is outer (0x200), with it inner (0x300). Worked leaf for a read/write page at the BAR:
    //   BAR | 0x800 nG | 0x400 AF | 0x200 SH=OS | 0x40 AP[1] | 2 << 2 AttrIndx=DEV | 0x3 page
    const m = makeMachine('strict', 1, { iommu: { format: 'arm-lpae', levels: 4, mode: 'strict' } });
    const dev = m.device('nic0');
    expect(dev.dmaCoherent).toBe(true);
    const bar = m.regions.find((x) => x.kind === 'device' && x.len === 4 * PAGE)!.start; // nvme0's 16 KiB BAR
    const r = dmaMapPhys(dev, bar, PAGE, DMA_BIDIRECTIONAL, DMA_ATTR_MMIO);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    const leaf = iommuWalk(iommuGetDmaDomain(dev)!, r.value).at(-1)!;
    expect(leaf.kind).toBe('leaf');
    expect(leaf.pte).toBe(bar | 0xe4bn);
    dmaUnmapPhys(dev, r.value, PAGE, DMA_BIDIRECTIONAL, DMA_ATTR_MMIO);
    expect(m.events.count('WARN')).toBe(0);
  });
});

describe.each<IommuMode>(['strict', 'lazy'])('iommuDmaMapPhys through dmaMapPhys (%s)', (mode) => {
  it('device writes a pattern the CPU reads back, and the reverse; unmap removes the translation', () => {
    const m = makeMachine(mode);
    const dev = m.device('nvme0');
    const phys = allocPhys(m, 2) + 0x123n;
    const len = 3 * PAGE;
    const r = dmaMapPhys(dev, phys, len, DMA_BIDIRECTIONAL, 0);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value & 0xfffn).toBe(0x123n);
    expect(r.value).not.toBe(phys);
    const w = pattern(len, 5);
    expect(dev.dmaWrite(r.value, w).ok).toBe(true);
    expect(m.mem.read(phys, len)).toEqual(w);
    const c = pattern(len, 6);
    m.mem.write(phys, c);
    const rd = dev.dmaRead(r.value, len);
    expect(rd.ok && rd.value).toEqual(c);
    dmaUnmapPhys(dev, r.value, len, DMA_BIDIRECTIONAL, 0);
    expect(leafPtes(m)).toBe(0);
    if (mode === 'strict') expect(dev.dmaRead(r.value, 1).ok).toBe(false);
    expect(m.events.count('DMA-DEBUG')).toBe(0);
    expect(m.events.count('WARN')).toBe(0);
  });
});

describe('__iommu_dma_map: min_align_mask wider than the IOVA granule', () => {
  it('is refused with DMA_MAPPING_ERROR and one WARN ("Unsupported alignment constraint"); nothing is allocated', () => {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    const d = iommuGetDmaDomain(dev)!;
    const phys = allocPhys(m) + 0x234n;
    dmaSetMinAlignMask(dev, 0xfff); // the granule mask itself: fine
    const a = dmaMapPhys(dev, phys, 512, DMA_TO_DEVICE, 0);
    expect(a.ok && (a.value & 0xfffn)).toBe(0x234n);
    if (a.ok) dmaUnmapPhys(dev, a.value, 512, DMA_TO_DEVICE, 0);
    const ranges = d.iovad!.rangeCount;
    const cached = d.iovad!.cachedCount;
    dmaSetMinAlignMask(dev, 0xffff);
    const w0 = m.events.count('WARN');
    expect(dmaMapPhys(dev, phys, 512, DMA_TO_DEVICE, 0).ok).toBe(false);
    expect(m.events.count('WARN') - w0).toBe(1);
    expect(m.events.list().some((e) => /Unsupported alignment constraint/.test(e.message))).toBe(true);
    expect(dmaMapPhys(dev, phys, 512, DMA_TO_DEVICE, 0).ok).toBe(false);
    expect(m.events.count('WARN') - w0).toBe(1); // dev_WARN_ONCE
    expect([d.iovad!.rangeCount, d.iovad!.cachedCount]).toEqual([ranges, cached]);
  });
});

describe('untrusted device: one-shot bounce', () => {
  it('an unaligned buffer is bounced: device writes reach memory at unmap, never directly', () => {
    const m = makeMachine('strict');
    const dev = m.device('tb0');
    const phys = allocPhys(m, 1) + 0x80n;
    const len = 1000;
    const r = dmaMapPhys(dev, phys, len, DMA_FROM_DEVICE, 0);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(m.stats.swiotlbMaps).toBe(1);
    const w = pattern(len, 9);
    expect(dev.dmaWrite(r.value, w).ok).toBe(true);
    expect(m.mem.read(phys, len)).toEqual(new Uint8Array(len));
    // the rest of the bounce granule reads as zeros (no stale data exposed)
    const whole = dev.dmaRead(r.value - (r.value & 0xfffn), PAGE);
    expect(whole.ok).toBe(true);
    dmaSyncSingleForCpu(dev, r.value, len, DMA_FROM_DEVICE);
    expect(m.mem.read(phys, len)).toEqual(w);
    dmaUnmapPhys(dev, r.value, len, DMA_FROM_DEVICE, 0);
    expect(m.stats.swiotlbUnmaps).toBe(1);
    expect(leafPtes(m)).toBe(0);
    expect(iommuDmaMaxMappingSize(dev)).toBeLessThanOrEqual(256 * 1024);
  });

  it('page-aligned buffers are not bounced', () => {
    const m = makeMachine('strict');
    const dev = m.device('tb0');
    const phys = allocPhys(m, 1);
    const r = dmaMapPhys(dev, phys, 2 * PAGE, DMA_TO_DEVICE, 0);
    expect(r.ok).toBe(true);
    expect(m.stats.swiotlbMaps).toBe(0);
    if (r.ok) dmaUnmapPhys(dev, r.value, 2 * PAGE, DMA_TO_DEVICE, 0);
  });
});

describe('size hints', () => {
  it('merge boundary is granule - 1, opt mapping size is 128 KiB, unlimited max for trusted devices', () => {
    const m = makeMachine('strict');
    expect(iommuDmaGetMergeBoundary(m.device('nvme0'))).toBe(4095n);
    expect(iommuDmaOptMappingSize(m.device('nvme0'))).toBe(128 * 1024);
    expect(iommuDmaMaxMappingSize(m.device('nvme0'))).toBe(Number.MAX_SAFE_INTEGER);
  });
});

/** Builds an sg table over pages, with range flags from the machine (P2P provider ids). */
function sgOf(m: Machine, pfns: bigint[], offset: number, size: number, maxSegment = 0xfffff000): SgTable {
  const r = sgAllocTableFromPagesSegment(pfns, offset, size, maxSegment, {
    pageSize: PAGE, flagsOf: (pfn: number) => m.pfnFacts(BigInt(pfn))?.rangeFlags ?? 0,
  });
  if (!r.ok) throw new Error(r.errno);
  return r.value;
}

/**
 * A table of hand-built entries (sg_set_page) with (offset, length) each, on every third page of
 * fresh memory (never physically contiguous), each filled with its own pattern.
 */
function sgOfEntries(m: Machine, entries: ReadonlyArray<readonly [number, number]>): SgTable {
  const base = allocPhys(m, 6) / BigInt(PAGE);
  const a = sgAllocTable(entries.length);
  if (!a.ok) throw new Error(a.errno);
  const sgt = a.value;
  entries.forEach(([off, len], i) => {
    const l = Math.min(len, 2 * PAGE - off);
    sgt.setPage(i, base + BigInt(3 * i), l, off);
    m.mem.write(base * BigInt(PAGE) + BigInt(3 * i * PAGE + off), pattern(l, i + 1));
  });
  return sgt;
}

/** Concatenated CPU bytes of the table's entries. */
function cpuBytes(m: Machine, sgt: SgTable): Uint8Array {
  const parts: number[] = [];
  for (let i = 0; i < sgt.origNents; i++) parts.push(...m.mem.read(sgt.physAt(i, PAGE), sgt.lengthAt(i)));
  return new Uint8Array(parts);
}

describe('iommuDmaMapSg', () => {
  it('property: one IOVA allocation, segments within limits, lengths conserved, the device reads the CPU bytes in order', () => {
    fc.assert(fc.property(
      fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 12 }),
      fc.integer({ min: 0, max: PAGE - 1 }),
      fc.integer({ min: 1, max: 5 }),
      fc.constantFrom(0, 0xffffn, 0x1ffffn),
      fc.constantFrom(0, 8192, 3 * PAGE),
      (gaps, offset, tailCut, boundary, maxSeg) => {
        const m = makeMachine('strict');
        const dev = m.device('nvme0');
        if (boundary) dmaSetSegBoundary(dev, boundary as bigint);
        if (maxSeg) dmaSetMaxSegSize(dev, maxSeg);
        const base = allocPhys(m, 6) / BigInt(PAGE);
        const pfns: bigint[] = [];
        let p = base;
        for (const g of gaps) { p += BigInt(g); pfns.push(p); p += 1n; }
        const size = Math.max(1, pfns.length * PAGE - offset - tailCut * 100);
        const limit = maxSeg || 65536;
        // as drivers do: CPU entries built within the device's max segment size
        const sgt = sgOf(m, pfns, offset, size, limit);
        const data = pattern(size, gaps.length);
        let at = 0;
        for (let i = 0; i < sgt.origNents; i++) { m.mem.write(sgt.physAt(i, PAGE), data.subarray(at, at + sgt.lengthAt(i))); at += sgt.lengthAt(i); }
        const allocs = m.stats.iovaAllocs;
        const r = dmaMapSgtable(dev, sgt, DMA_TO_DEVICE, 0);
        expect(r.ok).toBe(true);
        expect(m.stats.iovaAllocs - allocs).toBe(1);
        expect(sgt.nents).toBeGreaterThanOrEqual(1);
        expect(sgt.nents).toBeLessThanOrEqual(sgt.origNents);
        const seen: number[] = [];
        let sum = 0;
        for (let i = 0; i < sgt.nents; i++) {
          const a = sgt.dmaAddressAt(i), l = sgt.dmaLengthAt(i);
          sum += l;
          expect(l).toBeLessThanOrEqual(limit);
          if (boundary) expect((a & ~(boundary as bigint)) === ((a + BigInt(l) - 1n) & ~(boundary as bigint))).toBe(true);
          const rd = dev.dmaRead(a, l);
          expect(rd.ok).toBe(true);
          if (rd.ok) seen.push(...rd.value);
        }
        expect(sum).toBe(size);
        expect(new Uint8Array(seen)).toEqual(cpuBytes(m, sgt));
        dmaUnmapSgtable(dev, sgt, DMA_TO_DEVICE, 0);
        expect(leafPtes(m)).toBe(0);
        expect(m.stats.iovaFrees).toBe(m.stats.iovaAllocs);
        expect(m.events.count('DMA-DEBUG')).toBe(0);
      }), { numRuns: 15 });
  });

  it('property: hand-built entries with arbitrary offsets and lengths (sg_set_page) read back exactly', () => {
    fc.assert(fc.property(
      fc.array(fc.tuple(fc.integer({ min: 0, max: PAGE - 1 }), fc.integer({ min: 1, max: 2 * PAGE })), { minLength: 1, maxLength: 10 }),
      (entries) => {
        const m = makeMachine('strict');
        const dev = m.device('nvme0');
        const sgt = sgOfEntries(m, entries);
        expect(dmaMapSgtable(dev, sgt, DMA_BIDIRECTIONAL, 0).ok).toBe(true);
        const seen: number[] = [];
        let sum = 0;
        for (let i = 0; i < sgt.nents; i++) {
          const rd = dev.dmaRead(sgt.dmaAddressAt(i), sgt.dmaLengthAt(i));
          expect(rd.ok).toBe(true);
          if (rd.ok) seen.push(...rd.value);
          sum += sgt.dmaLengthAt(i);
        }
        expect(sum).toBe(sgt.totalLen);
        expect(new Uint8Array(seen)).toEqual(cpuBytes(m, sgt));
        dmaUnmapSgtable(dev, sgt, DMA_BIDIRECTIONAL, 0);
        expect(leafPtes(m)).toBe(0);
      }), { numRuns: 15 });
  });

  it('IOVAs above 2^53 (5-level table, iommu.forcedac): the same segments as below 2^53, shifted, and the device reads the CPU bytes', () => {
    // With the 32-bit first try off (dev->iommu->pci_32bit_workaround = !iommu_dma_forcedac,
    // drivers/iommu/dma-iommu.c) the allocator hands out IOVAs from the top of the 57-bit space,
    // past what a double holds exactly: the mapping and the segment cuts must not depend on it.
    const five = { iommu: { format: 'x86-64', levels: 5, mode: 'strict' } };
    fc.assert(fc.property(
      fc.array(fc.tuple(fc.integer({ min: 0, max: PAGE - 1 }), fc.integer({ min: 1, max: 2 * PAGE })), { minLength: 1, maxLength: 12 }),
      fc.constantFrom(0xffff, 0xffffffff),
      (entries, boundary) => {
        const layouts: Array<{ base: bigint; segs: Array<[bigint, number]> }> = [];
        for (const high of [false, true]) {
          const m = makeMachine('strict', 1, high ? five : {});
          const dev = m.device('nvme0');
          if (high) dev.pci32BitWorkaround = false;
          dmaSetSegBoundary(dev, BigInt(boundary));
          const sgt = sgOfEntries(m, entries);
          expect(dmaMapSgtable(dev, sgt, DMA_BIDIRECTIONAL, 0).ok).toBe(true);
          const first = sgt.dmaAddressAt(0);
          expect(first >= 1n << 53n).toBe(high);
          const seen: number[] = [];
          const segs: Array<[bigint, number]> = [];
          for (let i = 0; i < sgt.nents; i++) {
            const rd = dev.dmaRead(sgt.dmaAddressAt(i), sgt.dmaLengthAt(i));
            expect(rd.ok).toBe(true);
            if (rd.ok) seen.push(...rd.value);
            segs.push([sgt.dmaAddressAt(i) - first, sgt.dmaLengthAt(i)]);
          }
          expect(new Uint8Array(seen)).toEqual(cpuBytes(m, sgt));
          layouts.push({ base: first, segs });
          dmaUnmapSgtable(dev, sgt, DMA_BIDIRECTIONAL, 0);
          expect(leafPtes(m)).toBe(0);
          expect(m.events.count('WARN')).toBe(0);
        }
        // both windows come top-down from a limit whose low 32 bits are all ones, so they share the
        // low bits the boundary looks at, and the segment cuts must be the same
        expect(layouts[1].base & 0xffffffffn).toBe(layouts[0].base & 0xffffffffn);
        expect(layouts[1].segs).toEqual(layouts[0].segs);
      }), { numRuns: 15 });
  });

  it('page-aligned contiguous IOVA pieces concatenate up to the max segment size', () => {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    const base = allocPhys(m, 5) / BigInt(PAGE);
    const pfns = Array.from({ length: 20 }, (_, i) => base + BigInt(2 * i)); // never physically contiguous
    const sgt = sgOf(m, pfns, 0, 20 * PAGE);
    expect(sgt.origNents).toBe(20);
    expect(dmaMapSgtable(dev, sgt, DMA_TO_DEVICE, 0).ok).toBe(true);
    // 20 pages in one IOVA run, cut at 64 KiB (16 pages)
    expect(sgt.nents).toBe(2);
    expect(sgt.dmaLengthAt(0)).toBe(16 * PAGE);
    expect(sgt.dmaAddressAt(1)).toBe(sgt.dmaAddressAt(0) + BigInt(16 * PAGE));
    dmaUnmapSgtable(dev, sgt, DMA_TO_DEVICE, 0);
    expect(leafPtes(m)).toBe(0);
  });

  it('P2P: a bus-address entry gets its bus address and no IOVA', () => {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    const bar = gpuBar(m);
    const ram = allocPhys(m) / BigInt(PAGE);
    const barPfn = bar.start / BigInt(PAGE);
    const sgt = sgOf(m, [ram, barPfn, barPfn + 1n], 0, 3 * PAGE);
    expect(sgt.origNents).toBe(2);
    const r = dmaMapSgtable(dev, sgt, DMA_FROM_DEVICE, 0);
    expect(r.ok).toBe(true);
    expect(sgt.nents).toBe(2);
    expect(sgt.dmaFlagsAt(1) & SG_DMA_BUS_ADDRESS).toBe(SG_DMA_BUS_ADDRESS);
    expect(sgt.dmaAddressAt(1)).toBe(bar.start + 0x1000_0000_0000n);
    const w = pattern(2 * PAGE, 3);
    expect(dev.dmaWrite(sgt.dmaAddressAt(1), w).ok).toBe(true);
    expect(m.mem.read(bar.start, 2 * PAGE)).toEqual(w);
    expect(leafPtes(m)).toBe(1);
    dmaUnmapSgtable(dev, sgt, DMA_FROM_DEVICE, 0);
    expect(leafPtes(m)).toBe(0);
  });

  it('P2P: a bus-address entry between two physically adjacent RAM entries splits the run (iommu_map_sg tests contiguity before skipping it)', () => {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    const d = iommuGetDmaDomain(dev)!;
    const X = allocPhys(m, 9); // 2 MiB, 2 MiB-aligned
    const bar = gpuBar(m);
    const a = sgAllocTable(3);
    if (!a.ok) throw new Error(a.errno);
    const sgt = a.value;
    sgt.setPage(0, X / 4096n, 256 * PAGE, 0); // [X, X + 1 MiB)
    sgt.setPage(1, bar.start / 4096n, PAGE, 0); // a page of gpu0's P2P BAR: a bus address for nvme0
    sgt.setPage(2, X / 4096n + 256n, 256 * PAGE, 0); // [X + 1 MiB, X + 2 MiB)
    const calls = m.stats.iommuMapCalls;
    expect(dmaMapSgtable(dev, sgt, DMA_TO_DEVICE, 0).ok).toBe(true);
    expect(sgt.nents).toBe(3);
    // two iommu_map calls of 1 MiB each, so 4 KiB leaves, not one 2 MiB leaf
    expect(m.stats.iommuMapCalls - calls).toBe(2);
    for (const i of [0, 2]) {
      const w = iommuWalkInfo(d, sgt.dmaAddressAt(i));
      expect(w[w.length - 1].leafBytes).toBe(PAGE);
    }
    expect(sgt.dmaAddressAt(2)).toBe(sgt.dmaAddressAt(0) + BigInt(256 * PAGE));
    dmaUnmapSgtable(dev, sgt, DMA_TO_DEVICE, 0);
    expect(leafPtes(m)).toBe(0);
  });

  it('iommu_map_sg loop end: a last bus-address entry that continues the run leaves it unmapped (short map)', () => {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    const d = iommuGetDmaDomain(dev)!;
    const F = Number(allocPhys(m, 3) / 4096n);
    const ents = (busFrame: number, busOff: number): SgEntries => ({
      frame: Float64Array.from([F, busFrame]), frameOff: Float64Array.from([0, busOff]),
      len: Float64Array.from([4 * PAGE, PAGE]), off: Float64Array.from([0, 0]), flags: Uint32Array.from([0, 0]),
    });
    const kind = Uint8Array.from([0, 1]); // RAM, then bus address
    const sIovaLen = Float64Array.from([4 * PAGE, 0]);
    const iova = iommuDmaAllocIova(d, 4 * PAGE, (1n << 64n) - 1n, dev);
    // the bus entry starts where the RAM run ends: the final re-read of it does not flush the run
    const short = mapSgPieces(d, iova, ents(F + 4, 0), kind, sIovaLen, IOMMU_READ);
    expect(short.ok && short.value).toBe(0);
    expect(leafPtes(m)).toBe(0);
    // anywhere else (here one byte further) the run is flushed and mapped
    for (const [f, o] of [[F + 4, 1], [F + 5, 0]]) {
      const full = mapSgPieces(d, iova, ents(f, o), kind, sIovaLen, IOMMU_READ);
      expect(full.ok && full.value).toBe(4 * PAGE);
      expect(leafPtes(m)).toBe(4);
      iommuUnmap(d, iova, 4 * PAGE);
    }
  });

  it('P2P not supported: EREMOTEIO and nothing mapped', () => {
    const m = makeMachine('strict');
    const dev = m.device('far0');
    const bar = gpuBar(m);
    const sgt = sgOf(m, [allocPhys(m) / BigInt(PAGE), bar.start / BigInt(PAGE)], 0, 2 * PAGE);
    const r = dmaMapSgtable(dev, sgt, DMA_TO_DEVICE, 0);
    expect(r.ok ? 'ok' : r.errno).toBe('EREMOTEIO');
    expect(m.stats.iovaAllocs).toBe(0);
    expect(leafPtes(m)).toBe(0);
  });

  it('untrusted device: entries mapped one by one (bounced when unaligned), no merging', () => {
    const m = makeMachine('strict');
    const dev = m.device('tb0');
    const base = allocPhys(m, 3) / BigInt(PAGE);
    const sgt = sgOf(m, [base, base + 2n, base + 4n], 0x10, 3 * PAGE - 0x30);
    const data = pattern(sgt.totalLen, 4);
    expect(dmaMapSgtable(dev, sgt, DMA_BIDIRECTIONAL, 0).ok).toBe(true);
    expect(sgt.nents).toBe(sgt.origNents);
    let at = 0;
    for (let i = 0; i < sgt.nents; i++) {
      expect(dev.dmaWrite(sgt.dmaAddressAt(i), data.subarray(at, at + sgt.dmaLengthAt(i))).ok).toBe(true);
      at += sgt.dmaLengthAt(i);
    }
    dmaUnmapSgtable(dev, sgt, DMA_BIDIRECTIONAL, 0);
    expect(cpuBytes(m, sgt)).toEqual(data);
    expect(m.stats.swiotlbMaps).toBe(m.stats.swiotlbUnmaps);
    expect(m.stats.swiotlbMaps).toBeGreaterThanOrEqual(2);
    expect(leafPtes(m)).toBe(0);
  });
});

describe.each<IommuMode>(['strict', 'none'])('sg mapping classifies from the memory, not the table\'s flags (%s; iommu_dma_map_sg)', (mode) => {
  /** Two BAR pages in a table built with no flagsOf: every entry's recorded flags are 0. */
  function barTable(pfns: bigint[]): SgTable {
    const r = sgAllocTableFromPagesSegment(pfns, 0, pfns.length * PAGE, 0xfffff000);
    if (!r.ok) throw new Error(r.errno);
    for (let i = 0; i < r.value.origNents; i++) expect(r.value.flagsAt(i)).toBe(0);
    return r.value;
  }
  const barPfn = (m: Machine): bigint => gpuBar(m).start / BigInt(PAGE);

  it('P2P not supported: EREMOTEIO, nothing left mapped (also after a RAM entry)', () => {
    const m = makeMachine(mode);
    const dev = m.device('far0');
    const b = barPfn(m);
    for (const pfns of [[b, b + 1n], [allocPhys(m) / BigInt(PAGE), b]]) {
      const sgt = barTable(pfns);
      const r = dmaMapSgtable(dev, sgt, DMA_TO_DEVICE, 0);
      expect(r.ok ? 'ok' : r.errno).toBe('EREMOTEIO');
    }
    expect(m.stats.iovaAllocs).toBe(0);
    expect(leafPtes(m)).toBe(0);
    expect(m.stats.swiotlbMaps).toBe(0);
    expect(m.dmaDebug.count()).toBe(0);
  });

  it('P2P through a switch: the bus address, marked, no IOVA', () => {
    const m = makeMachine(mode);
    const dev = m.device('nvme0');
    const bar = gpuBar(m);
    const sgt = barTable([barPfn(m), barPfn(m) + 1n]);
    expect(dmaMapSgtable(dev, sgt, DMA_FROM_DEVICE, 0).ok).toBe(true);
    expect(sgt.nents).toBe(1);
    expect(sgt.dmaAddressAt(0)).toBe(bar.start + 0x1000_0000_0000n);
    expect(sgt.dmaFlagsAt(0) & SG_DMA_BUS_ADDRESS).toBe(SG_DMA_BUS_ADDRESS);
    expect(m.stats.iovaAllocs).toBe(0);
    const w = pattern(2 * PAGE, 21);
    expect(dev.dmaWrite(sgt.dmaAddressAt(0), w).ok).toBe(true);
    expect(m.mem.read(bar.start, 2 * PAGE)).toEqual(w);
    dmaUnmapSgtable(dev, sgt, DMA_FROM_DEVICE, 0);
    expect(m.events.count('DMA-DEBUG')).toBe(0);
  });

  it('P2P through the host bridge: mapped (an IOVA behind the IOMMU, the physical address without)', () => {
    const m = makeMachine(mode);
    const dev = m.device('nic0');
    const bar = gpuBar(m);
    const sgt = barTable([barPfn(m), barPfn(m) + 1n]);
    expect(dmaMapSgtable(dev, sgt, DMA_BIDIRECTIONAL, 0).ok).toBe(true);
    expect(sgt.dmaFlagsAt(0) & SG_DMA_BUS_ADDRESS).toBe(0);
    if (mode === 'none') expect(sgt.dmaAddressAt(0)).toBe(bar.start);
    else expect(sgt.dmaAddressAt(0)).not.toBe(bar.start);
    const w = pattern(2 * PAGE, 22);
    expect(dev.dmaWrite(sgt.dmaAddressAt(0), w).ok).toBe(true);
    expect(m.mem.read(bar.start, 2 * PAGE)).toEqual(w);
    dmaUnmapSgtable(dev, sgt, DMA_BIDIRECTIONAL, 0);
    expect(leafPtes(m)).toBe(0);
  });

  it('an entry running off the end of its memory region: EINVAL naming it, nothing mapped', () => {
    const m = makeMachine(mode);
    const dev = m.device('nvme0');
    const bar = gpuBar(m);
    const last = (bar.start + BigInt(bar.len)) / BigInt(PAGE) - 1n;
    const sgt = barTable([allocPhys(m) / BigInt(PAGE), last, last + 1n]);
    expect(sgt.origNents).toBe(2);
    const r = dmaMapSgtable(dev, sgt, DMA_TO_DEVICE, 0);
    expect(r.ok ? 'ok' : r.errno).toBe('EINVAL');
    if (!r.ok) expect(r.message).toMatch(/entry 1 \(0x[0-9a-f]+\+8192\) crosses/);
    expect(m.stats.iovaAllocs).toBe(0);
    expect(leafPtes(m)).toBe(0);
    expect(m.dmaDebug.count()).toBe(0);
  });
});

describe.each<IommuMode>(['strict', 'lazy'])('dmaUnmapPhys with the wrong size (%s; Model deviation in mapping.ts)', (mode) => {
  it('too small: reported, yet the whole mapping goes: the device faults on every page, the IOVA is reused', () => {
    const m = makeMachine(mode);
    const dev = m.device('nvme0');
    const phys = allocPhys(m, 1);
    const r = dmaMapPhys(dev, phys, 2 * PAGE, DMA_BIDIRECTIONAL, 0);
    if (!r.ok) throw new Error(r.errno);
    const a = r.value;
    expect(dev.dmaRead(a + BigInt(PAGE), 16).ok).toBe(true);
    dmaUnmapPhys(dev, a, PAGE, DMA_BIDIRECTIONAL, 0);
    expect(m.events.count('DMA-DEBUG')).toBe(1);
    expect(m.events.list('DMA-DEBUG')[0].message).toMatch(/different size/);
    expect(m.events.count('WARN')).toBe(0);
    if (mode === 'strict') {
      // (lazy: the IOTLB may still translate until the flush queue drains, as on real hardware)
      expect(dev.dmaRead(a, 16).ok).toBe(false);
      expect(dev.dmaRead(a + BigInt(PAGE), 16).ok).toBe(false);
    }
    expect(leafPtes(m)).toBe(0);
    expect(m.dmaDebug.count()).toBe(0);
    // the same IOVA serves the next mapping of that size, and maps the new memory
    const phys2 = allocPhys(m, 1);
    m.mem.write(phys2, pattern(2 * PAGE, 31));
    const r2 = dmaMapPhys(dev, phys2, 2 * PAGE, DMA_TO_DEVICE, 0);
    if (!r2.ok) throw new Error(r2.errno);
    if (mode === 'strict') expect(r2.value).toBe(a);
    const back = dev.dmaRead(r2.value, 2 * PAGE);
    expect(back.ok && back.value).toEqual(pattern(2 * PAGE, 31));
    dmaUnmapPhys(dev, r2.value, 2 * PAGE, DMA_TO_DEVICE, 0);
    expect(leafPtes(m)).toBe(0);
    expect(m.stats.iovaAllocs).toBe(2);
  });

  it('too large: reported, and only the mapping itself goes: the neighbouring mapping stays live', () => {
    const m = makeMachine(mode);
    const dev = m.device('nvme0');
    const pb = allocPhys(m);
    const pa = allocPhys(m);
    const b = dmaMapPhys(dev, pb, PAGE, DMA_BIDIRECTIONAL, 0);
    const a = dmaMapPhys(dev, pa, PAGE, DMA_BIDIRECTIONAL, 0);
    if (!a.ok || !b.ok) throw new Error('map');
    expect(a.value + BigInt(PAGE)).toBe(b.value); // top-down allocation: b sits right above a
    dmaUnmapPhys(dev, a.value, 2 * PAGE, DMA_BIDIRECTIONAL, 0);
    expect(m.events.count('DMA-DEBUG')).toBe(1);
    expect(m.events.count('WARN')).toBe(0);
    if (mode === 'strict') expect(dev.dmaRead(a.value, 16).ok).toBe(false);
    m.mem.write(pb, pattern(PAGE, 32));
    const back = dev.dmaRead(b.value, PAGE);
    expect(back.ok && back.value).toEqual(pattern(PAGE, 32));
    dmaUnmapPhys(dev, b.value, PAGE, DMA_BIDIRECTIONAL, 0);
    expect(leafPtes(m)).toBe(0);
    expect(m.events.count('DMA-DEBUG')).toBe(1);
  });
});
