// ARM32 iommu_ops (arch/arm/mm/dma-mapping.c) as a configuration of dma-iommu: a strict domain whose
// IOVA comes from the bitmaps of arm_iommu_create_mapping(). Worked examples traced from
// arm_iommu_map_phys() / __alloc_iova() / arm_iommu_unmap_phys(), and a property test that random
// range lists in every layout move real bytes and give every bitmap bit back.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { OPS_NODES, deviceRead, deviceWrite, pattern } from './fixtures/dma-ops-machines.ts';
import { GiB, MiB, unwrap } from '../src/base/index.ts';
import { createMachine, type Machine } from '../src/machine/index.ts';
import {
  DMA_BIDIRECTIONAL, DMA_BIT_MASK, DMA_FROM_DEVICE, DMA_TO_DEVICE, DmaIovaState, dmaIovaTryAlloc, dmaMapPhys, dmaMapPhyrs,
  dmaMapSgtable, dmaPciP2pdmaSupported, dmaSetMaskAndCoherent, dmaUnmapPhys, dmaUnmapPhyrs, dmaUnmapSgtable,
} from '../src/dma/index.ts';
import { iommuGetDmaDomain, iommuIovaToPhys, type Arm32IommuMapping } from '../src/iommu/index.ts';
import { PhyrList, sgAllocTable, toBvecList, toPageArray, type Range, type RangeSource } from '../src/phyr/index.ts';

const BASE = 0x1000n;

/** Byte equality without vitest's element-wise diffing (lists reach hundreds of KiB). */
function same(a: Uint8Array | null, b: Uint8Array): boolean {
  if (a === null || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function arm32Machine(seed = 1): Machine {
  return createMachine({
    ramBytes: 6 * GiB, seed, swiotlb: { bytes: 4 * MiB }, pci: OPS_NODES,
    iommu: { format: 'arm-lpae', mode: 'strict', arm32Mapping: { base: BASE, size: 1n << 32n } },
  });
}

function mappingOf(m: Machine): Arm32IommuMapping {
  return iommuGetDmaDomain(m.device('nic0'))!.arm32!;
}

describe('ARM32 iommu_ops as dma-iommu with the ARM32 bitmap allocator', () => {
  it('arm_iommu_map_phys: PAGE_ALIGN(size + offset) of IOVA from bit 0 (aligned to its order), dma = iova + offset; unmap clears the bits and faults', () => {
    const m = arm32Machine();
    const dev = m.device('nic0');
    unwrap(dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(32)));
    const phys = 0x1_2345_6678n;
    // len = PAGE_ALIGN(0x2000 + 0x678) = 0x3000: 3 pages, order 2 -> bit 0 -> iova = base
    const a = unwrap(dmaMapPhys(dev, phys, 0x2000, DMA_BIDIRECTIONAL));
    expect(a).toBe(BASE + 0x678n);
    // one page: the first clear bit, 3 (not the 4-aligned slot a size-aligned rbtree allocation would take above)
    const b = unwrap(dmaMapPhys(dev, 0x1_0000_0000n, 0x1000, DMA_TO_DEVICE));
    expect(b).toBe(BASE + 0x3000n);
    // 5 pages: order 3 -> bit 8
    const c = unwrap(dmaMapPhys(dev, 0x1_4000_0000n, 0x5000, DMA_FROM_DEVICE));
    expect(c).toBe(BASE + 0x8000n);
    expect(mappingOf(m).allocated()).toEqual([[BASE, 4 * 0x1000], [BASE + 0x8000n, 5 * 0x1000]]);
    const domain = iommuGetDmaDomain(dev)!;
    expect(iommuIovaToPhys(domain, a)).toBe(phys);
    const data = pattern(0x2000, 1);
    expect(dev.dmaWrite(a, data).ok).toBe(true);
    expect(m.mem.read(phys, 0x2000)).toEqual(data);
    dmaUnmapPhys(dev, a, 0x2000, DMA_BIDIRECTIONAL);
    dmaUnmapPhys(dev, b, 0x1000, DMA_TO_DEVICE);
    dmaUnmapPhys(dev, c, 0x5000, DMA_FROM_DEVICE);
    expect(mappingOf(m).allocated()).toEqual([]);
    // iommu_unmap is synchronous (no flush queue): the device's next access faults
    expect(dev.dmaWrite(a, new Uint8Array(8)).ok).toBe(false);
    expect(m.events.count('WARN')).toBe(0);
  });

  it('the DMA mask does not steer __alloc_iova (it only looks at the mapping), and the IOVA rbtree is never used', () => {
    const m = arm32Machine();
    const dev = m.device('nic0');
    unwrap(dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(64)));
    // dma-iommu's rbtree allocator would go top-down below the mask; ARM32 starts at the base
    expect(unwrap(dmaMapPhys(dev, 0x1_0000_0000n, 0x1000, DMA_BIDIRECTIONAL))).toBe(BASE);
    expect(m.stats.iovaAllocs).toBe(0);
  });

  it('no two-step API and no P2PDMA: the device has dma_ops (use_dma_iommu false, dma_pci_p2pdma_supported false)', () => {
    const m = arm32Machine();
    const dev = m.device('nic0');
    unwrap(dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(32)));
    expect(dmaIovaTryAlloc(dev, new DmaIovaState(), 0n, 0x10000)).toBe(false);
    expect(dmaPciP2pdmaSupported(dev)).toBe(false);
    // a machine without arm32Mapping keeps both
    const n = createMachine({ ramBytes: 6 * GiB, pci: OPS_NODES, iommu: { format: 'arm-lpae', mode: 'strict' } });
    expect(dmaPciP2pdmaSupported(n.device('nic0'))).toBe(true);
  });

  it('the configuration needs strict mode and a mapping the kernel would create', () => {
    expect(() => createMachine({ ramBytes: 1 * GiB, pci: OPS_NODES, iommu: { format: 'arm-lpae', mode: 'lazy', arm32Mapping: { base: BASE, size: 1n << 32n } } }))
      .toThrow(/strict/);
    expect(() => createMachine({ ramBytes: 1 * GiB, pci: OPS_NODES, iommu: { format: 'arm-lpae', mode: 'strict', arm32Mapping: { base: BASE, size: 1n << 33n } } }))
      .toThrow(/ERANGE/);
  });
});

const rangesArb: fc.Arbitrary<Range[]> = fc.array(
  fc.record({
    kind: fc.constantFrom('adjacent', 'page', 'any'),
    page: fc.integer({ min: 0, max: 0x4000 }),
    off: fc.integer({ min: 0, max: 4095 }),
    len: fc.oneof(fc.integer({ min: 1, max: 3 * 4096 }), fc.constantFrom(4096, 8192, 65536)),
  }),
  { minLength: 1, maxLength: 6 },
).map((rs) => {
  const out: Range[] = [];
  for (const r of rs) {
    const prev = out[out.length - 1];
    const addr = r.kind === 'adjacent' && prev ? prev.addr + BigInt(prev.len)
      : 0x1_0000_0000n + BigInt(r.page) * 4096n + (r.kind === 'any' ? BigInt(r.off) : 0n);
    if (out.some((o) => addr < o.addr + BigInt(o.len) && o.addr < addr + BigInt(r.len))) continue;
    out.push({ addr, len: r.len, flags: 0 });
  }
  return out;
});

function layouts(entries: Range[]): RangeSource[] {
  const phyr = PhyrList.from(entries);
  const out: RangeSource[] = [phyr];
  const bv = toBvecList(phyr, 4096);
  if (bv.ok) out.push(bv.value);
  const pa = toPageArray(phyr, 4096);
  if (pa.ok) out.push(pa.value);
  return out;
}

describe('ARM32 iommu_ops property', () => {
  it('random lists in every layout, batched, per range and as a scatterlist, move the same bytes; every bitmap bit comes back', () => {
    const m = arm32Machine(3);
    const dev = m.device('nic0');
    unwrap(dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(32)));
    let seed = 0;
    fc.assert(fc.property(rangesArb, (entries) => {
      seed++;
      const total = entries.reduce((n, r) => n + r.len, 0);
      for (const src of layouts(entries)) {
        const mp = unwrap(dmaMapPhyrs(dev, src, DMA_FROM_DEVICE, 0));
        const data = pattern(total, seed);
        expect(deviceWrite(dev, [...mp.list], data)).toBe(true);
        dmaUnmapPhyrs(dev, mp, DMA_FROM_DEVICE, 0);
        let at = 0;
        for (const r of src) { expect(same(m.mem.read(r.addr, r.len), data.subarray(at, at + r.len))).toBe(true); at += r.len; }
      }
      // per range, device reads what the CPU wrote
      const want = pattern(total, seed + 500);
      let at = 0;
      for (const r of entries) { m.mem.write(r.addr, want.subarray(at, at + r.len)); at += r.len; }
      const addrs = entries.map((r) => unwrap(dmaMapPhys(dev, r.addr, r.len, DMA_TO_DEVICE)));
      expect(same(deviceRead(dev, entries.map((r, i) => ({ addr: addrs[i], len: r.len }))), want)).toBe(true);
      entries.forEach((r, i) => dmaUnmapPhys(dev, addrs[i], r.len, DMA_TO_DEVICE));
      // a scatterlist (one entry per range) through dma_map_sgtable
      const sgt = unwrap(sgAllocTable(entries.length));
      entries.forEach((r, i) => sgt.setPage(i, r.addr / 4096n, r.len, Number(r.addr % 4096n)));
      unwrap(dmaMapSgtable(dev, sgt, DMA_BIDIRECTIONAL));
      const segs = Array.from({ length: sgt.nents }, (_, i) => ({ addr: sgt.dmaAddressAt(i), len: sgt.dmaLengthAt(i) }));
      expect(same(deviceRead(dev, segs), want)).toBe(true);
      dmaUnmapSgtable(dev, sgt, DMA_BIDIRECTIONAL);
      expect(mappingOf(m).allocated()).toEqual([]);
    }), { numRuns: 25 });
    expect(m.events.count('WARN')).toBe(0);
  });
});
