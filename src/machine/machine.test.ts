import { describe, expect, it } from 'vitest';
import { GiB, KiB, MiB } from '../base/index.ts';
import { createMachine, Machine } from './index.ts';
import { dmaContextOf, dmaMapPhys, dmaUnmapPhys, DMA_TO_DEVICE, DMA_BIT_MASK, dmaSetMask } from '../dma/index.ts';
import * as lib from '../index.ts';

const PCI = [
  { name: 'hb0', type: 'host-bridge' as const, vendor: 0x8086, device: 0x2030 },
  { name: 'rp0', type: 'root-port' as const, parent: 'hb0' },
  { name: 'sw0', type: 'switch' as const, parent: 'rp0', acsRedirect: false },
  { name: 'nvme0', type: 'endpoint' as const, parent: 'sw0', bars: [{ bytes: 16 * KiB }] },
  { name: 'gpu0', type: 'endpoint' as const, parent: 'sw0', bars: [{ bytes: 256 * MiB, p2p: true }] },
  { name: 'rp1', type: 'root-port' as const, parent: 'hb0' },
  { name: 'tb0', type: 'endpoint' as const, parent: 'rp1', untrusted: true },
];

describe('createMachine', () => {
  it('builds mm + PCI + IOMMU + swiotlb; BARs are device regions; devices have DMA contexts', () => {
    const m = createMachine({
      ramBytes: 16 * GiB, seed: 1, cpu: { vendor: 'intel' },
      iommu: { format: 'x86-64', levels: 4, mode: 'strict' }, swiotlb: { bytes: 64 * MiB, force: false }, pci: PCI,
    });
    expect(m).toBeInstanceOf(Machine);
    expect(lib.createMachine).toBe(createMachine);
    expect(m.devices().map((d) => d.name)).toEqual(['nvme0', 'gpu0', 'tb0']);
    const bar = m.regions.find((r) => r.name === 'gpu0.bar0');
    expect(bar?.kind).toBe('device');
    expect(bar?.len).toBe(256 * MiB);
    expect(m.swiotlb?.bytes).toBe(64 * MiB);
    expect(m.regionAt(m.swiotlb!.start)?.kind).toBe('ram');
    const dev = m.device('nvme0');
    expect(dmaContextOf(dev).iommu).toBe(m.iommu);
    expect(dev.dmaIommu).toBe(true);
    expect(dev.dmaSkipSync).toBe(true);
    expect(() => m.device('nope')).toThrow(RangeError);
    expect(m.teardown()).toBe(0);
  });
  it('passthrough IOMMU leaves devices on dma-direct; no swiotlb when disabled', () => {
    const m = createMachine({ ramBytes: 4 * GiB, iommu: { format: 'x86-64', mode: 'passthrough' }, swiotlb: false, pci: PCI });
    expect(m.swiotlb).toBeNull();
    expect(m.device('nvme0').dmaIommu).toBe(false);
  });
  it('without pci config it is an mm-only machine; device lookups throw', () => {
    const m = createMachine({ ramBytes: 1 * GiB, seed: 3 });
    expect(m.devices()).toEqual([]);
    expect(() => m.device('nvme0')).toThrow(/no pci config/);
    expect(m.freePages).toBeGreaterThan(0);
  });
  it('same config and seed: same layout; unknown options are refused', () => {
    const a = createMachine({ ramBytes: 4 * GiB, seed: 7, pci: PCI });
    const b = createMachine({ ramBytes: 4 * GiB, seed: 7, pci: PCI });
    expect(a.regions.map((r) => [r.name, r.start])).toEqual(b.regions.map((r) => [r.name, r.start]));
    expect(a.swiotlb!.start).toBe(b.swiotlb!.start);
    expect(() => createMachine({ ramBytes: GiB, iommmu: {} } as never)).toThrow(/config.iommmu is not a machine option/);
  });
  it('a mapping on an IOMMU machine goes through the dispatch and leaves nothing after unmap', () => {
    const m = createMachine({ ramBytes: 4 * GiB, iommu: { format: 'x86-64', levels: 4, mode: 'strict' }, pci: PCI });
    const dev = m.device('nvme0');
    dmaSetMask(dev, DMA_BIT_MASK(64));
    const phys = m.regions.find((r) => r.kind === 'ram' && r.start >= 1n << 32n)!.start + 0x3000n;
    m.mem.write(phys, new Uint8Array([1, 2, 3, 4]));
    const r = dmaMapPhys(dev, phys, 4, DMA_TO_DEVICE);
    expect(r.ok).toBe(true);
    const addr = r.ok ? r.value : 0n;
    const rd = dev.dmaRead(addr, 4);
    expect(rd.ok && [...rd.value]).toEqual([1, 2, 3, 4]);
    dmaUnmapPhys(dev, addr, 4, DMA_TO_DEVICE);
    expect(dev.dmaRead(addr, 4).ok).toBe(false);
    expect(m.events.count('DMA-DEBUG')).toBe(0);
    expect(m.teardown()).toBe(0);
  });
});
