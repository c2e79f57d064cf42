// Fixed translation without state (issue family 4): ibmebus and the PS3 linear region are dma-direct
// with one dma_range_map offset; no table, nothing to allocate or free.
//  - arch/powerpc/platforms/pseries/ibmebus.c: ibmebus_map_phys() returns phys_to_virt(phys), i.e.
//    phys + PAGE_OFFSET (0xc000000000000000 on ppc64); ibmebus_map_sg() writes one segment per entry
//    (sg_virt), never merging; ibmebus_unmap_phys() does nothing.
//  - arch/powerpc/platforms/ps3/mm.c: dma_sb_map_area_linear() -> dma_sb_lpar_to_bus(): bus =
//    r->bus_addr + lpar - r->offset, where ps3_mm_phys_to_lpar() adds map.r1.offset above the real-mode
//    region and dma_sb_lpar_to_bus() takes it off again: one offset for the whole region, and an address
//    outside [r->offset, r->offset + r->len) is a BUG_ON (here: the range map has no entry, so
//    DMA_MAPPING_ERROR).
import { describe, expect, it } from 'vitest';
import { OPS_NODES, pattern } from './fixtures/dma-ops-machines.ts';
import { GiB, MiB, unwrap } from '../src/base/index.ts';
import { createMachine } from '../src/machine/index.ts';
import {
  DMA_BIDIRECTIONAL, DMA_BIT_MASK, DMA_FROM_DEVICE, dmaMapPhys, dmaMapSgtable, dmaSetMaskAndCoherent, dmaUnmapPhys, dmaUnmapSgtable,
} from '../src/dma/index.ts';
import { sgAllocTable } from '../src/phyr/index.ts';

const PAGE_OFFSET = 0xc000_0000_0000_0000n;

function machine(pageSize = 65536) {
  const m = createMachine({ ramBytes: 6 * GiB, seed: 1, pageSize, swiotlb: { bytes: 4 * MiB }, pci: OPS_NODES });
  const dev = m.device('nic0');
  unwrap(dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(64)));
  return { m, dev };
}

describe('fixed translation as dma-direct with a dma_range_map offset', () => {
  it('ibmebus (ibmebus_map_phys: phys_to_virt): dma = phys + PAGE_OFFSET, bytes move, unmap leaves nothing behind', () => {
    const { m, dev } = machine();
    dev.dmaRangeMap = [{ cpuStart: 0n, dmaStart: PAGE_OFFSET, len: 2 ** 52 }];
    const phys = 0x1_2345_6678n;
    const a = unwrap(dmaMapPhys(dev, phys, 0x3000, DMA_BIDIRECTIONAL));
    expect(a).toBe(phys + PAGE_OFFSET);
    const data = pattern(0x3000, 4);
    expect(dev.dmaWrite(a, data).ok).toBe(true);
    expect(m.mem.read(phys, 0x3000)).toEqual(data);
    dmaUnmapPhys(dev, a, 0x3000, DMA_BIDIRECTIONAL);
    expect(m.stats.swiotlbMaps).toBe(0);
    // no state: the same address still reaches the same bytes after unmap, as on the real bus
    expect(dev.dmaRead(a, 16).ok).toBe(true);
  });

  it('ibmebus_map_sg: one DMA segment per entry, each at its own phys + PAGE_OFFSET (dma-direct map_sg never merges either)', () => {
    const { dev } = machine();
    dev.dmaRangeMap = [{ cpuStart: 0n, dmaStart: PAGE_OFFSET, len: 2 ** 52 }];
    const sgt = unwrap(sgAllocTable(3, { pageSize: 65536 }));
    // two physically adjacent pages and one elsewhere
    sgt.setPage(0, 0x10000n, 65536, 0);
    sgt.setPage(1, 0x10001n, 65536, 0);
    sgt.setPage(2, 0x10100n, 4096, 0x100);
    unwrap(dmaMapSgtable(dev, sgt, DMA_FROM_DEVICE));
    expect(sgt.nents).toBe(3);
    expect([0, 1, 2].map((i) => sgt.dmaAddressAt(i))).toEqual([0x10000n << 16n, 0x10001n << 16n, (0x10100n << 16n) + 0x100n].map((p) => p + PAGE_OFFSET));
    dmaUnmapSgtable(dev, sgt, DMA_FROM_DEVICE);
  });

  it('PS3 linear region (dma_sb_lpar_to_bus): bus = bus_addr + phys - offset inside the region; outside it the map fails', () => {
    const { m, dev } = machine();
    // a region of 1 GiB of the LPAR's memory from 4 GiB, seen on the bus from 0x8000_0000
    const offset = 0x1_0000_0000n, busAddr = 0x8000_0000n;
    dev.dmaRangeMap = [{ cpuStart: offset, dmaStart: busAddr, len: 1 * GiB }];
    const phys = offset + 0x20_0000n;
    const a = unwrap(dmaMapPhys(dev, phys, 0x1000, DMA_BIDIRECTIONAL));
    expect(a).toBe(busAddr + 0x20_0000n);
    const data = pattern(0x1000, 5);
    expect(dev.dmaWrite(a, data).ok).toBe(true);
    expect(m.mem.read(phys, 0x1000)).toEqual(data);
    dmaUnmapPhys(dev, a, 0x1000, DMA_BIDIRECTIONAL);
    // outside the region there is no translation (the kernel BUG_ONs; dma-direct reports DMA_MAPPING_ERROR)
    expect(dmaMapPhys(dev, offset + BigInt(1 * GiB) + 0x1000n, 0x1000, DMA_BIDIRECTIONAL).ok).toBe(false);
  });
});
