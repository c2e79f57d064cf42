// Regression tests for the 7.1-7.3 DMA-core items: the two fixed bugs (each test names the bug it
// guards), dma-debug's attribute check (7.2) and batched cache maintenance on non-coherent devices (7.1).
import { describe, expect, it } from 'vitest';
import { MiB } from '../base/index.ts';
import { allocPhys, gpuBar, makeMachine, pattern } from '../../test/fixtures/dma-b-machines.ts';
import { SMALL_PCI, ramAt, smallMachine } from '../../test/fixtures/dma-machines.ts';
import { sgAllocTable, sgAllocTableFromPagesSegment, SG_DMA_BUS_ADDRESS } from '../phyr/index.ts';
import type { PciNodeConfig } from '../pci/index.ts';
import {
  DMA_ATTR_REQUIRE_COHERENT, DMA_BIDIRECTIONAL as DMA_BIDIR, DMA_BIT_MASK, DMA_FROM_DEVICE, DMA_TO_DEVICE,
} from './constants.ts';
import { dmaMapPhys, dmaMapResource, dmaMapSgtable, dmaSyncSgtableForDevice, dmaUnmapPhys, dmaUnmapSgtable } from './mapping.ts';
import { DmaIovaState, dmaIovaDestroy, dmaIovaLink, dmaIovaSync, dmaIovaTryAlloc } from './iova-state.ts';
import { dmaSetMask, dmaSetMinAlignMask } from './mask.ts';

const PAGE = 4096;

describe('fixed bug "iommu/dma: fix swiotlb path in iommu_dma_iova_link" (7.1, 6ec91df8aff7; in 7.0.y)', () => {
  it('an unaligned link with no aligned middle links (the old code mapped a size-0 middle, which iommupt refuses)', () => {
    const m = makeMachine('strict', 1, { swiotlb: { bytes: 4 * MiB } });
    const dev = m.device('tb0');
    dmaSetMinAlignMask(dev, PAGE - 1); // as NVMe does: the bounce keeps the offset inside the page
    const base = allocPhys(m, 2);
    const phys = base + 0x200n;
    const len = PAGE; // head 0xe00 bytes in the first granule, tail 0x200 in the next: middle empty
    const data = pattern(len, 21);
    m.mem.write(phys, data);
    const st = new DmaIovaState();
    expect(dmaIovaTryAlloc(dev, st, phys, len)).toBe(true);
    const r = dmaIovaLink(dev, st, phys, 0, len, DMA_TO_DEVICE, 0);
    expect(r).toEqual({ ok: true, value: undefined });
    expect(dmaIovaSync(dev, st, 0, len).ok).toBe(true);
    expect(m.stats.swiotlbMaps).toBe(2);
    // two bounced granules linked, and no iommu_map of the empty middle (7.1 iommupt refuses size 0)
    expect(m.stats.iommuMapCalls).toBe(2);
    const seen = dev.dmaRead(st.addr, len);
    expect(seen.ok && seen.value).toEqual(data);
    dmaIovaDestroy(dev, st, len, DMA_TO_DEVICE, 0);
    expect(m.events.count('WARN')).toBe(0);
    expect(m.teardown()).toBe(0);
  });

  it('a failed link unlinks only what it mapped, from its own offset (the old code unlinked from offset 0, tearing down the link before it)', () => {
    // no swiotlb: the untrusted device's tail bounce fails after the aligned middle was linked
    const m = makeMachine('strict', 1, { swiotlb: false });
    const dev = m.device('tb0');
    const a = allocPhys(m, 2);
    const b = allocPhys(m, 3);
    const dataA = pattern(2 * PAGE, 22);
    m.mem.write(a, dataA);
    const st = new DmaIovaState();
    expect(dmaIovaTryAlloc(dev, st, a, 8 * PAGE)).toBe(true);
    expect(dmaIovaLink(dev, st, a, 0, 2 * PAGE, DMA_TO_DEVICE, 0).ok).toBe(true);
    const r = dmaIovaLink(dev, st, b, 2 * PAGE, PAGE + 0x200, DMA_TO_DEVICE, 0);
    expect(r.ok ? 'ok' : r.errno).toBe('ENOMEM');
    expect(dmaIovaSync(dev, st, 0, 2 * PAGE).ok).toBe(true);
    // the first link survives whole
    const seen = dev.dmaRead(st.addr, 2 * PAGE);
    expect(seen.ok && seen.value).toEqual(dataA);
    // and the failed link's middle page is gone
    expect(dev.dmaRead(st.addr + BigInt(2 * PAGE), 16).ok).toBe(false);
    dmaIovaDestroy(dev, st, 2 * PAGE, DMA_TO_DEVICE, 0);
    expect(m.stats.iommuLeafPtesWritten - m.stats.iommuLeafPtesCleared).toBe(0);
  });
});

describe('fixed bug "iommu/dma-iommu: Fix wrong scatterlist length assignment in P2PDMA path" (7.2, db50fb87015b; 6.16 to 7.1.4)', () => {
  it('every P2P bus-address segment of iommu_dma_map_sg keeps its own length (the old code gave each the first entry\'s)', () => {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    const bar = gpuBar(m);
    const barPfn = bar.start / BigInt(PAGE);
    const lens = [PAGE, 3 * PAGE, 2 * PAGE];
    const t = sgAllocTable(lens.length);
    if (!t.ok) throw new Error(t.errno);
    const sgt = t.value;
    lens.forEach((l, i) => sgt.setPage(i, barPfn + BigInt(8 * i), l, 0));
    for (let i = 0; i < lens.length; i++) sgt.setFlags(i, m.pfnFacts(barPfn + BigInt(8 * i))?.rangeFlags ?? 0);
    expect(dmaMapSgtable(dev, sgt, DMA_FROM_DEVICE, 0).ok).toBe(true);
    for (let i = 0; i < lens.length; i++) {
      expect(sgt.dmaFlagsAt(i) & SG_DMA_BUS_ADDRESS).toBe(SG_DMA_BUS_ADDRESS);
      expect(sgt.dmaLengthAt(i)).toBe(lens[i]);
      // the device moves the whole segment into the BAR
      const w = pattern(lens[i], 30 + i);
      expect(dev.dmaWrite(sgt.dmaAddressAt(i), w).ok).toBe(true);
      expect(m.mem.read(bar.start + BigInt(8 * i * PAGE), lens[i])).toEqual(w);
    }
    dmaUnmapSgtable(dev, sgt, DMA_FROM_DEVICE, 0);
    expect(m.teardown()).toBe(0);
  });
});

describe('dma-debug: mappings released with matching attributes (7.2, "dma-debug: Ensure mappings are created and released with matching attributes")', () => {
  it('records attrs per mapping and reports an unmap whose MMIO / REQUIRE_COHERENT / CC_SHARED bits differ', () => {
    const m = smallMachine({ dmaDebug: { allErrors: true } });
    const dev = m.device('nvme0');
    dmaSetMask(dev, DMA_BIT_MASK(64));
    const phys = ramAt(m, 1n << 32n, MiB);
    const r = dmaMapPhys(dev, phys, PAGE, DMA_TO_DEVICE, DMA_ATTR_REQUIRE_COHERENT);
    expect(r.ok).toBe(true);
    expect(m.dmaDebug.entries()[0].attrs).toBe(DMA_ATTR_REQUIRE_COHERENT);
    dmaUnmapPhys(dev, phys, PAGE, DMA_TO_DEVICE, 0);
    const ev = m.events.list('DMA-DEBUG');
    expect(ev.map((e) => e.data?.check)).toEqual(['unmap-attrs']);
    expect(ev[0].message).toMatch(/different attributes .*\[mapped with REQUIRE_COHERENT\] \[unmapped with none\]/);
    // MMIO: dma_map_resource then a plain dma_unmap_phys
    const bar = m.regions.find((x) => x.kind === 'device')!.start;
    const mr = dmaMapResource(dev, bar, PAGE, DMA_TO_DEVICE);
    expect(mr.ok).toBe(true);
    dmaUnmapPhys(dev, mr.ok ? mr.value : 0n, PAGE, DMA_TO_DEVICE, 0);
    expect(m.events.list('DMA-DEBUG').at(-1)!.message).toMatch(/\[mapped with MMIO\] \[unmapped with none\]/);
    expect(m.teardown()).toBe(0);
  });

  it('matching attributes (and bits outside the three, e.g. SKIP_CPU_SYNC) are not reported; sg tables are checked too', () => {
    const m = smallMachine({ dmaDebug: { allErrors: true } });
    const dev = m.device('nvme0');
    dmaSetMask(dev, DMA_BIT_MASK(64));
    const phys = ramAt(m, 1n << 32n, MiB);
    const r = dmaMapPhys(dev, phys, PAGE, DMA_TO_DEVICE, DMA_ATTR_REQUIRE_COHERENT);
    dmaUnmapPhys(dev, r.ok ? r.value : 0n, PAGE, DMA_TO_DEVICE, DMA_ATTR_REQUIRE_COHERENT | 1 << 5);
    expect(m.events.count('DMA-DEBUG')).toBe(0);
    const pfn = phys / BigInt(PAGE);
    const t = sgAllocTableFromPagesSegment([pfn, pfn + 2n], 0, 2 * PAGE, 0xfffff000);
    const sgt = t.ok ? t.value : null!;
    expect(dmaMapSgtable(dev, sgt, DMA_TO_DEVICE, DMA_ATTR_REQUIRE_COHERENT).ok).toBe(true);
    dmaUnmapSgtable(dev, sgt, DMA_TO_DEVICE, 0);
    expect(m.events.list('DMA-DEBUG').map((e) => e.data?.check)).toEqual(['unmap-attrs', 'unmap-attrs']);
  });
});

/** SMALL_PCI with nvme0 not cache-coherent (arm64-style). */
const NONCOHERENT_PCI: PciNodeConfig[] = SMALL_PCI.map((n) => (n.name === 'nvme0' ? { ...n, coherent: false } : n));

describe('non-coherent devices: cache maintenance issued per segment, waited for once (7.1 batch mode)', () => {
  it('pci[].coherent: false makes the device non-coherent (dev_is_dma_coherent)', () => {
    const m = smallMachine({ pci: NONCOHERENT_PCI });
    expect(m.device('nvme0').dmaCoherent).toBe(false);
    expect(m.device('tb0').dmaCoherent).toBe(true);
  });

  it('dma_map_sg / unmap_sg: one clean per segment then one barrier; N single maps wait N times', () => {
    const m = smallMachine({ pci: NONCOHERENT_PCI });
    const dev = m.device('nvme0');
    dmaSetMask(dev, DMA_BIT_MASK(64));
    const phys = ramAt(m, 1n << 32n, MiB);
    const pfn = phys / BigInt(PAGE);
    const t = sgAllocTableFromPagesSegment([pfn, pfn + 2n, pfn + 4n, pfn + 6n], 0, 4 * PAGE, 0xfffff000);
    const sgt = t.ok ? t.value : null!;
    expect(sgt.origNents).toBe(4);
    expect(dmaMapSgtable(dev, sgt, DMA_BIDIR, 0).ok).toBe(true);
    // arm64 arch_sync_dma_for_device cleans only, even for BIDIRECTIONAL
    expect([m.stats.cacheCleans, m.stats.cacheInvalidates, m.stats.cacheSyncBarriers]).toEqual([4, 0, 1]);
    dmaSyncSgtableForDevice(dev, sgt, DMA_BIDIR);
    expect(m.stats.cacheSyncBarriers).toBe(2);
    dmaUnmapSgtable(dev, sgt, DMA_BIDIR, 0);
    expect([m.stats.cacheCleans, m.stats.cacheInvalidates, m.stats.cacheSyncBarriers]).toEqual([8, 4, 3]);
    // the same four pages mapped one by one: a barrier after each map and each unmap
    const before = m.stats.cacheSyncBarriers;
    for (let i = 0; i < 4; i++) {
      const p = phys + BigInt(2 * i * PAGE);
      const r = dmaMapPhys(dev, p, PAGE, DMA_TO_DEVICE);
      dmaUnmapPhys(dev, r.ok ? r.value : 0n, PAGE, DMA_TO_DEVICE);
    }
    expect(m.stats.cacheSyncBarriers - before).toBe(8);
    expect(m.teardown()).toBe(0);
  });

  it('a coherent device issues and waits for nothing', () => {
    const m = smallMachine();
    const dev = m.device('nvme0');
    dmaSetMask(dev, DMA_BIT_MASK(64));
    const phys = ramAt(m, 1n << 32n, MiB);
    const pfn = phys / BigInt(PAGE);
    const t = sgAllocTableFromPagesSegment([pfn, pfn + 2n], 0, 2 * PAGE, 0xfffff000);
    const sgt = t.ok ? t.value : null!;
    expect(dmaMapSgtable(dev, sgt, DMA_TO_DEVICE, 0).ok).toBe(true);
    dmaUnmapSgtable(dev, sgt, DMA_TO_DEVICE, 0);
    expect([m.stats.cacheCleans, m.stats.cacheInvalidates, m.stats.cacheSyncBarriers]).toEqual([0, 0, 0]);
  });

  it('dma_iova_link issues a clean per link and leaves the wait to dma_iova_sync (7.1.5 __dma_iova_link / dma_iova_sync)', () => {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    dev.dmaCoherent = false;
    const st = new DmaIovaState();
    const ranges = [allocPhys(m, 1), allocPhys(m, 2), allocPhys(m, 1)];
    const lens = [PAGE, 2 * PAGE, PAGE];
    expect(dmaIovaTryAlloc(dev, st, ranges[0], 4 * PAGE)).toBe(true);
    let off = 0;
    ranges.forEach((p, i) => {
      expect(dmaIovaLink(dev, st, p, off, lens[i], DMA_TO_DEVICE, 0).ok).toBe(true);
      off += lens[i];
    });
    expect([m.stats.cacheCleans, m.stats.cacheSyncBarriers]).toEqual([3, 0]);
    expect(dmaIovaSync(dev, st, 0, off).ok).toBe(true);
    expect(m.stats.cacheSyncBarriers).toBe(1);
    dmaIovaDestroy(dev, st, off, DMA_TO_DEVICE, 0);
    // TO_DEVICE: nothing to invalidate at unlink, but iommu_dma_iova_unlink_range_slow still waits once
    expect([m.stats.cacheInvalidates, m.stats.cacheSyncBarriers]).toEqual([0, 2]);
  });

  it('MMIO and REQUIRE_COHERENT are never cache-maintained', () => {
    const m = smallMachine({ pci: NONCOHERENT_PCI });
    const dev = m.device('nvme0');
    dmaSetMask(dev, DMA_BIT_MASK(64));
    const bar = m.regions.find((x) => x.kind === 'device')!.start;
    const r = dmaMapResource(dev, bar, PAGE, DMA_TO_DEVICE);
    expect(r.ok).toBe(true);
    expect(dmaMapPhys(dev, ramAt(m, 1n << 32n, MiB), PAGE, DMA_TO_DEVICE, DMA_ATTR_REQUIRE_COHERENT).ok).toBe(false);
    expect(m.stats.cacheMaintenanceOps).toBe(0);
  });
});
