// What the kernel replay needed from the model: the VT-d second-stage page-table format
// (drivers/iommu/generic_pt/fmt/vtdss.h, used by drivers/iommu/intel/iommu.c:
// intel_iommu_domain_alloc_second_stage() in legacy mode), a swiotlb pool at the address a recorded
// boot put it, and a PCI hole where QEMU's q35 puts it. Each test names the old behaviour it catches.

import { describe, expect, it } from 'vitest';
import { GiB, MiB } from '../src/base/index.ts';
import {
  createIommu, iommuIovaToPhys, iommuMap, iommuUnmap, iommuWalk, IOMMU_READ, IOMMU_WRITE,
} from '../src/iommu/internal.ts';
import { createMachine, type Machine } from '../src/machine/index.ts';
import {
  DMA_TO_DEVICE, DmaIovaState, dmaIovaDestroy, dmaIovaFree, dmaIovaLink, dmaIovaTryAlloc, dmaIovaUnlink, dmaMapSgtable, dmaSetMaskAndCoherent, dmaSetMaxSegSize,
} from '../src/dma/index.ts';
import { allocPhys, makeMachine } from './fixtures/dma-b-machines.ts';
import { sgAllocTable } from '../src/phyr/index.ts';
import { TestMachine } from './fixtures/iommu-machine.ts';
import { iommuDmaFlushQueueTick, iommuGetDomainForDev } from '../src/iommu/internal.ts';
import { dmaMapPhys, dmaUnmapPhys } from '../src/dma/index.ts';

const RW = IOMMU_READ | IOMMU_WRITE;

describe('VT-d second-stage tables (fmt/vtdss.h)', () => {
  function vtd(levels: 3 | 4 | 5 = 3) {
    const mm = new TestMachine();
    return { mm, d: createIommu(mm, { format: 'vtd-ss', levels, mode: 'strict' }).allocDomain('unmanaged') };
  }

  it('3 levels translate 39 bits (aperture 2^39 - 1), not the 48 of x86-64 first-stage tables', () => {
    expect(vtd(3).d.geometry.apertureEnd).toBe((1n << 39n) - 1n);
    expect(vtd(4).d.geometry.apertureEnd).toBe((1n << 48n) - 1n);
    expect(vtd(5).d.geometry.apertureEnd).toBe((1n << 57n) - 1n);
    expect(vtd(3).d.format!.levels).toBe(3);
  });

  it('a leaf is R and/or W with the address, no present bit (vtdss_pt_iommu_set_prot); tables are R|W', () => {
    const { d } = vtd();
    expect(iommuMap(d, 0x1000n, 0x12345000n, 0x1000, IOMMU_READ).ok).toBe(true);
    expect(iommuMap(d, 0x2000n, 0x12346000n, 0x1000, IOMMU_WRITE).ok).toBe(true);
    expect(iommuMap(d, 0x3000n, 0x12347000n, 0x1000, RW).ok).toBe(true);
    const walk = iommuWalk(d, 0x1000n);
    expect(walk.map((s) => s.level)).toEqual([2, 1, 0]);
    expect(walk[0].pte & 0xfffn).toBe(3n);
    expect(walk.at(-1)?.pte).toBe(0x12345001n);
    expect(iommuWalk(d, 0x2000n).at(-1)?.pte).toBe(0x12346002n);
    expect(iommuWalk(d, 0x3000n).at(-1)?.pte).toBe(0x12347003n);
  });

  it('2 MiB and 1 GiB leaves carry PS (bit 7)', () => {
    const { d } = vtd();
    expect(iommuMap(d, 0x200000n, 0x40200000n, 0x200000, RW).ok).toBe(true);
    expect(iommuWalk(d, 0x200000n).at(-1)).toMatchObject({ level: 1, kind: 'leaf', pte: 0x40200083n });
    expect(iommuMap(d, 0x40000000n, 0x80000000n, 0x40000000, RW).ok).toBe(true);
    expect(iommuWalk(d, 0x40000000n).at(-1)).toMatchObject({ level: 2, kind: 'leaf', pte: 0x80000083n });
    expect(iommuIovaToPhys(d, 0x40123456n)).toBe(0x80123456n);
  });

  it('unmapping write-only leaves (DMA_FROM_DEVICE) clears them all, not stopping at the first as a present-bit test would', () => {
    const { d } = vtd();
    expect(iommuMap(d, 0x10000n, 0x500000n, 0x4000, IOMMU_WRITE).ok).toBe(true);
    expect(iommuUnmap(d, 0x10000n, 0x4000)).toBe(0x4000);
    for (let a = 0x10000n; a < 0x14000n; a += 0x1000n) expect(iommuIovaToPhys(d, a)).toBe(0n);
  });

  it('levels 3 is refused for the other formats', () => {
    const mm = new TestMachine();
    expect(() => createIommu(mm, { format: 'x86-64', levels: 3, mode: 'strict' })).toThrow(RangeError);
  });
});

describe('machine layout from a recorded boot', () => {
  it('swiotlb.start puts the pool at the recorded address, not at the top of RAM below 4 GiB', () => {
    const top = createMachine({ ramBytes: 256 * MiB, swiotlb: { bytes: 64 * MiB } });
    expect(top.swiotlb!.start).toBe(BigInt(MiB + 256 * MiB - 64 * MiB));
    const m = createMachine({ ramBytes: 256 * MiB, swiotlb: { bytes: 64 * MiB, start: 0x4000000n } });
    expect(m.swiotlb!.start).toBe(0x4000000n);
    expect(m.swiotlb!.end).toBe(0x8000000n);
  });

  it('a swiotlb.start outside free RAM leaves the machine without a pool (WARN), an unaligned one is a RangeError', () => {
    const m = createMachine({ ramBytes: 256 * MiB, swiotlb: { bytes: 64 * MiB, start: 0xf000000n } });
    expect(m.swiotlb).toBeNull();
    expect(m.events.count('WARN')).toBe(1);
    expect(() => createMachine({ ramBytes: 256 * MiB, swiotlb: { start: 0x4000800n } })).toThrow(RangeError);
  });

  it('pciHoleStart ends the low RAM there (q35 with 3 GiB: 2 GiB - 128 KiB), not at 3 GiB', () => {
    const low = 2 * GiB - 128 * 1024;
    const m = createMachine({ ramBytes: low - MiB + GiB, pciHoleStart: low });
    const ram = m.regions.filter((r) => r.kind === 'ram').map((r) => [r.start, r.end]);
    expect(ram).toEqual([[BigInt(MiB), BigInt(low)], [4n * BigInt(GiB), 5n * BigInt(GiB)]]);
    expect(() => createMachine({ ramBytes: 256 * MiB, pciHoleStart: 5 * GiB })).toThrow(RangeError);
  });
});

describe('iommu_dma_map_sg: __finalise_sg() compares max_len - cur_len as unsigned int', () => {
  // Recorded on Linux 7.1.5 (VT-d, max_segment_size 4096): an entry longer than max_len starts an
  // output segment, after which max_len - cur_len wraps and the next IOVA-contiguous entries join it.
  it('entries after an oversize one merge into one 24 KiB segment (2 segments), not 5', () => {
    const m = createMachine({
      ramBytes: 512 * MiB, swiotlb: false, iommu: { format: 'vtd-ss', levels: 3, mode: 'strict' },
      pci: [{ name: 'hb0', type: 'host-bridge', vendor: 0x8086, device: 0x29c0 }, { name: 'rp0', type: 'root-port', parent: 'hb0' },
        { name: 'edu', type: 'endpoint', parent: 'rp0' }],
    });
    const dev = m.device('edu');
    expect(dmaSetMaskAndCoherent(dev, (1n << 28n) - 1n).ok).toBe(true);
    dmaSetMaxSegSize(dev, 4096);
    const t = sgAllocTable(5);
    if (!t.ok) throw new Error(t.errno);
    const sgt = t.value;
    const ents: Array<[bigint, number]> = [[0x15d000n, 2482], [0x15e000n, 8192], [0x160000n, 8192], [0x164000n, 4096], [0x165000n, 4096]];
    ents.forEach(([phys, len], i) => sgt.setPage(i, phys >> 12n, len, 0));
    expect(dmaMapSgtable(dev, sgt, DMA_TO_DEVICE, 0).ok).toBe(true);
    expect(sgt.nents).toBe(2);
    const segs = [...sgt.dmaEntries()];
    expect(segs.map((r) => r.len)).toEqual([2482, 24576]);
    expect(segs[1].addr - segs[0].addr).toBe(0x1000n);
  });
});

describe('iommu_map of an unaligned range on a generic_pt domain (7.1: map_range, no iommu_map alignment check)', () => {
  it('is ENXIO for x86-64, VT-d second stage and AMD v1 (old: EINVAL), still EINVAL for ARM LPAE (io-pgtable)', () => {
    for (const format of ['x86-64', 'vtd-ss', 'amd-v1'] as const) {
      const d = createIommu(new TestMachine(), { format, mode: 'strict' }).allocDomain('unmanaged');
      const r = iommuMap(d, 0x1000n, 0x12345100n, 0x1000, RW);
      expect(r.ok ? 'ok' : r.errno, format).toBe('ENXIO');
    }
    const arm = createIommu(new TestMachine(), { format: 'arm-lpae', mode: 'strict' }).allocDomain('unmanaged');
    const r = iommuMap(arm, 0x1000n, 0x12345100n, 0x1000, RW);
    expect(r.ok ? 'ok' : r.errno).toBe('EINVAL');
  });

  it('so dma_iova_link of an unaligned head on an untrusted device without min_align_mask fails ENXIO', () => {
    // iommu_dma_iova_link_swiotlb bounces the head to a slot aligned to the granule (no
    // min_align_mask keeps the offset), then links bounce_phys - iova_start_pad: not granule-aligned.
    const m = makeMachine('strict');
    const dev = m.device('tb0');
    const phys = allocPhys(m) + 0x100n;
    const st = new DmaIovaState();
    expect(dmaIovaTryAlloc(dev, st, phys, 0x10000)).toBe(true);
    const r = dmaIovaLink(dev, st, phys, 0, 0x1000 - 0x100, DMA_TO_DEVICE, 0);
    expect(r.ok ? 'ok' : r.errno).toBe('ENXIO');
  });
});

describe('flush-queue timer on jiffies (kernel/time/timer.c: calc_index rounds an expiry up to its level\'s next step)', () => {
  /** A lazy VT-d machine with one endpoint that has mapped and unmapped one page: its IOVA waits in the flush queue. */
  function queuedOne(iommu: { hz: number; fqMode?: 'single' }): { m: Machine; d: NonNullable<ReturnType<typeof iommuGetDomainForDev>> } {
    const m = createMachine({
      ramBytes: 512 * MiB, swiotlb: false, iommu: { format: 'vtd-ss', levels: 3, mode: 'lazy', ...iommu },
      pci: [{ name: 'hb0', type: 'host-bridge', vendor: 0x8086, device: 0x29c0 }, { name: 'rp0', type: 'root-port', parent: 'hb0' },
        { name: 'edu', type: 'endpoint', parent: 'rp0' }],
    });
    const dev = m.device('edu');
    const r = dmaMapPhys(dev, 0x200000n, 4096, DMA_TO_DEVICE, 0);
    if (!r.ok) throw new Error(r.errno);
    dmaUnmapPhys(dev, r.value, 4096, DMA_TO_DEVICE, 0);
    return { m, d: iommuGetDomainForDev(dev)! };
  }

  it('with HZ=250 a 10 ms timeout fires at the 4th tick after the queue (16 ms), not after 10 ms', () => {
    const { m, d } = queuedOne({ hz: 250 });
    iommuDmaFlushQueueTick(d, 12);
    expect(m.stats.flushQueueFlushes).toBe(0);
    iommuDmaFlushQueueTick(d, 4);
    expect(m.stats.flushQueueFlushes).toBe(1);
  });

  it('with HZ=1000 the single queue\'s 1000 ms is a level-2 timer: it fires at the next multiple of 64 jiffies (1024 ms)', () => {
    const { m, d } = queuedOne({ hz: 1000, fqMode: 'single' });
    iommuDmaFlushQueueTick(d, 1023);
    expect(m.stats.flushQueueFlushes).toBe(0);
    iommuDmaFlushQueueTick(d, 1);
    expect(m.stats.flushQueueFlushes).toBe(1);
  });
});

describe('dma_iova_free in a lazy domain (drivers/iommu/dma-iommu.c: iommu_dma_free_iova with a null gather)', () => {
  it('gives the IOVA back at once, so the next window of the size reuses it; it is not queued for the flush queue', () => {
    const m = makeMachine('lazy');
    const dev = m.device('nvme0');
    const phys = allocPhys(m);
    const a = new DmaIovaState();
    expect(dmaIovaTryAlloc(dev, a, phys, 0x10000)).toBe(true);
    const r = dmaIovaLink(dev, a, phys, 0, 0x10000, DMA_TO_DEVICE, 0);
    expect(r.ok).toBe(true);
    dmaIovaUnlink(dev, a, 0, 0x10000, DMA_TO_DEVICE, 0);
    const first = a.addr;
    dmaIovaFree(dev, a);
    const queuedBefore = m.stats.flushQueueFlushes;
    const b = new DmaIovaState();
    expect(dmaIovaTryAlloc(dev, b, phys, 0x10000)).toBe(true);
    // old behaviour: the range sat in the flush queue and the allocator handed out the next one down
    expect(b.addr).toBe(first);
    expect(m.stats.flushQueueFlushes).toBe(queuedBefore);
    dmaIovaFree(dev, b);
  });

  it('while dma_iova_destroy (a queued gather) still leaves the IOVA to the flush queue', () => {
    const m = makeMachine('lazy');
    const dev = m.device('nvme0');
    const phys = allocPhys(m);
    const a = new DmaIovaState();
    expect(dmaIovaTryAlloc(dev, a, phys, 0x10000)).toBe(true);
    expect(dmaIovaLink(dev, a, phys, 0, 0x10000, DMA_TO_DEVICE, 0).ok).toBe(true);
    const first = a.addr;
    dmaIovaDestroy(dev, a, 0x10000, DMA_TO_DEVICE, 0);
    const b = new DmaIovaState();
    expect(dmaIovaTryAlloc(dev, b, phys, 0x10000)).toBe(true);
    expect(b.addr).not.toBe(first);
    dmaIovaFree(dev, b);
  });
});
