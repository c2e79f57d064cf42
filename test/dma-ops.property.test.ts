// Property tests over every dma_map_ops family: random range lists in every layout that can hold
// them, mapped per range (dmaMapPhys), batched (dmaMapPhyrs) and as a scatterlist (dmaMapSgtable),
// move the same bytes through the family's translation; the batch path gives dma_map_sg's segments;
// unmapping everything returns every allocator and table to its fresh state; no dma-debug report.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FAMILY_CONFIGS, deviceRead, deviceWrite, opsMachine, pattern } from './fixtures/dma-ops-machines.ts';
import { unwrap } from '../src/base/index.ts';
import {
  DmaList, PhyrList, sgAllocTable, toBvecList, toPageArray, type Range, type RangeSource,
} from '../src/phyr/index.ts';
import {
  DMA_BIDIRECTIONAL, DMA_BIT_MASK, DMA_FROM_DEVICE, DMA_TO_DEVICE, dmaMapPhys, dmaMapPhyrs, dmaMapSgtable, dmaOpsInspect,
  dmaSetMaskAndCoherent, dmaSyncSgtableForCpu, dmaUnmapPhys, dmaUnmapPhyrs, dmaUnmapSgtable, type DmaOpsState,
} from '../src/dma/index.ts';
import type { Machine } from '../src/machine/index.ts';

/** Ranges inside RAM above 4 GiB (needing translation on a 32-bit mask), scattered, adjacent or page-aligned. */
const rangesArb = (pageSize: number): fc.Arbitrary<Range[]> =>
  fc.array(
    fc.record({
      kind: fc.constantFrom('adjacent', 'page', 'page', 'any'),
      page: fc.integer({ min: 0, max: 0x2000 }),
      off: fc.integer({ min: 0, max: pageSize - 1 }),
      len: fc.oneof(fc.integer({ min: 1, max: 3 * 4096 }), fc.constantFrom(4096, 8192, pageSize)),
    }),
    { minLength: 1, maxLength: 6 },
  ).map((rs) => {
    const out: Range[] = [];
    const base = 0x1_0000_0000n;
    for (const r of rs) {
      const prev = out[out.length - 1];
      let addr: bigint;
      if (r.kind === 'adjacent' && prev) addr = prev.addr + BigInt(prev.len);
      else if (r.kind === 'any') addr = base + BigInt(r.page) * BigInt(pageSize) + BigInt(r.off);
      else addr = base + BigInt(r.page) * BigInt(pageSize);
      // no overlapping ranges: the bytes of each must be its own
      if (out.some((o) => addr < o.addr + BigInt(o.len) && o.addr < addr + BigInt(r.len))) continue;
      out.push({ addr, len: r.len, flags: 0 });
    }
    return out;
  });

function layouts(entries: Range[], pageSize: number): { name: string; src: RangeSource }[] {
  const phyr = PhyrList.from(entries);
  const out: { name: string; src: RangeSource }[] = [{ name: 'phyr', src: phyr }, { name: 'dmalist', src: DmaList.from(entries) }];
  const bv = toBvecList(phyr, pageSize);
  if (bv.ok) out.push({ name: 'bvec', src: bv.value });
  const pa = toPageArray(phyr, pageSize);
  if (pa.ok) out.push({ name: 'pagearray', src: pa.value });
  return out;
}

/** A family's state with counters left out: what must return to fresh after everything is unmapped. */
function tables(st: DmaOpsState, kind: string, fresh: DmaOpsState): unknown {
  // GART entries of unmapped pages keep pointing at the scratch page (gart_unmap_phys)
  const entries = kind.startsWith('gart') ? st.entries.filter(([, v]) => v !== (st.extra.unmappedEntry as bigint)) : st.entries;
  return { entries, allocated: st.allocated, fresh: fresh.allocated };
}

function cpuBytes(m: Machine, src: RangeSource): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const r of src) parts.push(m.mem.read(r.addr, r.len));
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

describe.each(Object.entries(FAMILY_CONFIGS))('dma_map_ops family %s', (name, fam) => {
  const ps = fam.pageSize ?? 4096;
  const m = opsMachine(fam.dmaOps, { pageSize: fam.pageSize });
  const dev = m.device('nic0');
  if (fam.mask64 || fam.dmaOps.kind.startsWith('xen')) unwrap(dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(64)));
  const fresh = dmaOpsInspect(dev)!;

  it('batched, per range and as a scatterlist: the device moves the same bytes both ways; all returns to fresh', () => {
    let seed = 0;
    fc.assert(fc.property(rangesArb(ps), fc.constantFrom(DMA_BIDIRECTIONAL, DMA_FROM_DEVICE, DMA_TO_DEVICE), (entries, dir) => {
      seed++;
      for (const { src } of layouts(entries, ps)) {
        // batch path: device writes (FROM_DEVICE / BIDIRECTIONAL) or reads (TO_DEVICE). The CPU
        // writes what the device is to read before mapping: a bouncing family (xen-swiotlb on a
        // range that is not bus-contiguous) copies it into the bounce slot at map time.
        const want = pattern(src.totalLen, seed);
        if (dir === DMA_TO_DEVICE) {
          let at = 0;
          for (const r of src) { m.mem.write(r.addr, want.subarray(at, at + r.len)); at += r.len; }
        }
        const mp = dmaMapPhyrs(dev, src, dir, 0);
        expect(mp.ok).toBe(true);
        if (!mp.ok) return;
        const segs = [...mp.value.list];
        if (dir === DMA_TO_DEVICE) {
          expect(deviceRead(dev, segs)).toEqual(want);
          dmaUnmapPhyrs(dev, mp.value, dir, 0);
        } else {
          const data = pattern(src.totalLen, seed + 1000);
          expect(deviceWrite(dev, segs, data)).toBe(true);
          dmaUnmapPhyrs(dev, mp.value, dir, 0);
          expect(cpuBytes(m, src)).toEqual(data);
        }
      }
      // per range through dma_map_phys
      if (dir !== DMA_TO_DEVICE) {
        const data = pattern(entries.reduce((n, r) => n + r.len, 0), seed + 2000);
        const addrs = entries.map((r) => unwrap(dmaMapPhys(dev, r.addr, r.len, dir)));
        expect(deviceWrite(dev, entries.map((r, i) => ({ addr: addrs[i], len: r.len })), data)).toBe(true);
        entries.forEach((r, i) => dmaUnmapPhys(dev, addrs[i], r.len, dir));
        expect(cpuBytes(m, PhyrList.from(entries))).toEqual(data);
      }
      expect(tables(dmaOpsInspect(dev)!, name, fresh)).toEqual(tables(fresh, name, fresh));
    }), {
      numRuns: 8,
      // always tried: a range over pfns 0x100000-0x100001, which the xen-swiotlb p2m swaps (not
      // bus-contiguous, so it bounces), read by the device
      examples: [[[{ addr: 0x1_0000_0000n, len: 4097, flags: 0 }], DMA_TO_DEVICE]],
    });
    expect(m.events.count('DMA-DEBUG')).toBe(0);
    expect(m.events.count('WARN')).toBe(0);
  });

  it('dma_map_sg on the same input gives the batch path\'s segments', () => {
    fc.assert(fc.property(rangesArb(ps), (entries) => {
      // one table entry per range, within a CPU page run (sg entries carry page + offset)
      const sgt = unwrap(sgAllocTable(entries.length, { pageSize: ps }));
      entries.forEach((r, i) => {
        const pfn = r.addr / BigInt(ps);
        sgt.setPage(i, pfn, r.len, Number(r.addr % BigInt(ps)));
      });
      const mp = unwrap(dmaMapPhyrs(dev, PhyrList.from(entries), DMA_BIDIRECTIONAL, 0));
      const batch = mp.opsSegments.map((s) => [s.first, s.count, s.len]);
      const batchAddrs = mp.opsSegments.map((s) => s.addr);
      dmaUnmapPhyrs(dev, mp, DMA_BIDIRECTIONAL, 0);
      unwrap(dmaMapSgtable(dev, sgt, DMA_BIDIRECTIONAL));
      const sg: number[][] = [];
      let first = 0;
      for (let i = 0; i < sgt.nents; i++) {
        let count = 0, len = 0;
        while (len < sgt.dmaLengthAt(i)) len += entries[first + count++].len;
        sg.push([first, count, sgt.dmaLengthAt(i)]);
        first += count;
      }
      dmaSyncSgtableForCpu(dev, sgt, DMA_BIDIRECTIONAL);
      dmaUnmapSgtable(dev, sgt, DMA_BIDIRECTIONAL);
      // the direct window splits a mixed list per range; arch_dma_map_sg_direct is all or nothing
      const mixed = fam.dmaOps.kind === 'tce' && fam.dmaOps.ddw !== undefined && batchAddrs.some((a) => a >= 1n << 59n)
        && batchAddrs.some((a) => a < 1n << 59n);
      if (!mixed) expect(sg).toEqual(batch);
      expect(tables(dmaOpsInspect(dev)!, name, fresh)).toEqual(tables(fresh, name, fresh));
    }), { numRuns: 8 });
    expect(m.events.count('DMA-DEBUG')).toBe(0);
  });
});
