import { describe, expect, it } from 'vitest';
import { allocPhys, gpuBar, makeMachine, pattern } from '../../test/fixtures/dma-b-machines.ts';
import { toPciDev } from '../pci/index.ts';
import { DMA_BIT_MASK, DMA_TO_DEVICE } from './constants.ts';
import { dmaMapPhys, dmaUnmapPhys } from './mapping.ts';
import { dmaSetMaskAndCoherent } from './mask.ts';

const PAGE = 4096;

describe('device DMA access', () => {
  it('direct path: DMA address = physical address; bytes move both ways', () => {
    const m = makeMachine('none');
    const dev = m.device('nic0');
    const p = allocPhys(m);
    const w = pattern(300, 1);
    expect(dev.dmaWrite(p + 7n, w).ok).toBe(true);
    expect(m.mem.read(p + 7n, 300)).toEqual(w);
    const r = dev.dmaRead(p + 7n, 300);
    expect(r.ok && r.value).toEqual(w);
    expect(m.stats.deviceDmaReads).toBe(1);
    expect(m.stats.deviceDmaWrites).toBe(1);
    expect(m.stats.deviceDmaBytes).toBe(600);
  });

  it('direct path: bus offset through dma_range_map', () => {
    const m = makeMachine('none');
    const dev = m.device('nic0');
    const p = allocPhys(m);
    dev.dmaRangeMap = [{ cpuStart: 0n, dmaStart: 0x8000_0000_0000n, len: 2 ** 40 }];
    expect(dev.dmaWrite(0x8000_0000_0000n + p, pattern(64, 2)).ok).toBe(true);
    expect(m.mem.read(p, 64)).toEqual(pattern(64, 2));
    const f = m.events.count('FAULT');
    expect(dev.dmaRead(p, 8).ok).toBe(false); // no range map entry covers it
    expect(m.events.count('FAULT')).toBe(f + 1);
  });

  it('routing an access reports no P2PDMA warnings and fills no map-type cache (the kernel is not asked)', () => {
    // far0 (below the unlisted hb1) and gpu0 are NOT_SUPPORTED: pci_p2pdma_map_type would warn, but a
    // device's own DMA to RAM involves no kernel call.
    const m = makeMachine('none');
    const p = allocPhys(m);
    for (const name of ['far0', 'nvme0', 'nic0']) expect(m.device(name).dmaRead(p, 64).ok).toBe(true);
    expect(m.events.list('INFO', 'pci-p2pdma')).toEqual([]);
    expect(m.stats.p2pMapTypeLookups).toBe(0);
    expect(toPciDev(m.device('gpu0')).p2pdma!.mapTypes.size).toBe(0);
    // the switch route itself is unchanged: nvme0 reaches gpu0's BAR by its bus address
    const bar = gpuBar(m);
    expect(m.device('nvme0').dmaWrite(bar.start + 0x1000_0000_0000n, pattern(32, 5)).ok).toBe(true);
    expect(m.mem.read(bar.start, 32)).toEqual(pattern(32, 5));
  });

  it('an address beyond the DMA mask faults and writes nothing', () => {
    const m = makeMachine('none');
    const dev = m.device('nic0');
    expect(dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(32)).ok).toBe(true);
    const hi = (1n << 32n) - 8n;
    const r = dev.dmaWrite(hi, new Uint8Array(16));
    expect(r.ok ? 'ok' : r.errno).toBe('EFAULT');
    const ev = m.events.list('FAULT').at(-1);
    expect(ev?.message).toMatch(/beyond the DMA mask/);
    expect(m.stats.deviceDmaFaults).toBe(1);
  });

  it('a hole in the physical map faults', () => {
    const m = makeMachine('none');
    const dev = m.device('nic0');
    const hole = m.regions.find((r) => r.kind === 'reserved')?.start ?? (1n << 45n);
    expect(dev.dmaRead(hole, 8).ok).toBe(false);
  });

  it('IOMMU: no translation and permission faults; a faulting write is all or nothing', () => {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    const p = allocPhys(m, 1);
    m.mem.write(p, pattern(2 * PAGE, 3));
    const r = dmaMapPhys(dev, p, PAGE, DMA_TO_DEVICE, 0);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    // read allowed, write not (TO_DEVICE = IOMMU_READ)
    expect(dev.dmaRead(r.value, PAGE).ok).toBe(true);
    const w = dev.dmaWrite(r.value, new Uint8Array(8));
    expect(w.ok ? 'ok' : w.errno).toBe('EFAULT');
    // crossing into an unmapped IOVA page: nothing of the access happens
    const x = dev.dmaRead(r.value, 2 * PAGE);
    expect(x.ok).toBe(false);
    expect(m.mem.read(p, 8)).toEqual(pattern(2 * PAGE, 3).subarray(0, 8));
    expect(m.events.list('FAULT').length).toBe(2);
    dmaUnmapPhys(dev, r.value, PAGE, DMA_TO_DEVICE, 0);
    expect(dev.dmaRead(r.value, 8).ok).toBe(false);
  });

  it('a blocked domain faults every access', () => {
    const m = makeMachine('strict');
    const dev = m.device('nic0');
    const iommu = m.iommu!;
    const blocked = iommu.allocDomain('blocked');
    iommu.attachDevice(dev, blocked);
    const r = dev.dmaRead(allocPhys(m), 8);
    expect(r.ok).toBe(false);
    expect(m.events.list('FAULT').at(-1)?.message).toMatch(/IOMMU/);
  });

  it('passthrough (identity) domain: DMA address = physical address', () => {
    const m = makeMachine('passthrough');
    const dev = m.device('nic0');
    const p = allocPhys(m);
    expect(dev.dmaWrite(p, pattern(32, 4)).ok).toBe(true);
    expect(m.mem.read(p, 32)).toEqual(pattern(32, 4));
  });
});
