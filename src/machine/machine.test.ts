import { describe, expect, it } from 'vitest';
import { GiB, KiB, MiB } from '../base/index.ts';
import { createMachine, Machine } from './internal.ts';
import {
  dmaContextOf, dmaMapPhys, dmaUnmapPhys, DMA_TO_DEVICE, DMA_BIT_MASK, dmaSetMask, DMA_BIDIRECTIONAL, DMA_FROM_DEVICE,
  dmaSyncSingleForCpu, dmaSyncSingleForDevice, dmaMaxMappingSize, SIZE_MAX,
} from '../dma/index.ts';
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
  it('memmapBytes: RAM and the p2p BAR (pci_p2pdma_add_resource: ZONE_DEVICE) have struct pages, the NVMe BAR none', () => {
    const m = createMachine({ ramBytes: 4 * GiB, swiotlb: false, pci: PCI });
    const b = m.memmapBytes();
    expect(b.ram).toBe((4 * GiB / 4096) * 64);
    expect(b.p2pdma).toBe((256 * MiB / 4096) * 64);
    expect(b.regions.filter((r) => r.zoneDevice).map((r) => r.name)).toEqual(['gpu0.bar0']);
    expect(b.total).toBe(b.ram + b.p2pdma);
  });
  it('passthrough IOMMU leaves devices on dma-direct; no swiotlb when disabled', () => {
    const m = createMachine({ ramBytes: 4 * GiB, iommu: { format: 'x86-64', mode: 'passthrough' }, swiotlb: false, pci: PCI });
    expect(m.swiotlb).toBeNull();
    expect(m.device('nvme0').dmaIommu).toBe(false);
  });
  it('the default swiotlb pool exists only where x86-64 sets one up: RAM above 4 GiB, a CC guest, Xen swiotlb; not with GART', () => {
    const pools = (over: Parameters<typeof createMachine>[0]): number | null => createMachine({ seed: 1, pci: PCI, ...over }).swiotlb?.bytes ?? null;
    expect(pools({ ramBytes: 2 * GiB })).toBeNull(); // pci_swiotlb_detect: max_possible_pfn <= MAX_DMA32_PFN
    expect(pools({ ramBytes: 3 * GiB - MiB })).toBeNull(); // RAM fills [1 MiB, 3 GiB) and stops there
    expect(pools({ ramBytes: 3 * GiB })).toBe(64 * MiB); // the last MiB goes above 4 GiB
    expect(pools({ ramBytes: 2 * GiB, swiotlb: { bytes: 4 * MiB } })).toBe(4 * MiB); // asked for: iommu=soft
    expect(pools({ ramBytes: 2 * GiB, cc: { kind: 'tdx' } })).toBe(64 * MiB);
    expect(pools({ ramBytes: 2 * GiB, dmaOps: { kind: 'xen-swiotlb', p2m: [] } })).toBe(64 * MiB);
    expect(pools({ ramBytes: 8 * GiB, dmaOps: { kind: 'gart', busBase: 0xe000_0000n, pages: 16 } })).toBeNull(); // gart_iommu_init: swiotlb off
    // without a pool a 30-bit device fails in dma-direct (err_overflow), and nothing limits its mapping size
    const m = createMachine({ ramBytes: 2 * GiB, seed: 1, pci: PCI });
    const dev = m.device('nvme0');
    expect(dmaSetMask(dev, DMA_BIT_MASK(30)).ok).toBe(true);
    expect(dmaMaxMappingSize(dev)).toBe(SIZE_MAX);
    const r = dmaMapPhys(dev, 0x6000_0000n, 4096, DMA_TO_DEVICE);
    expect(r.ok).toBe(false);
    expect(m.events.list('WARN').map((e) => e.message)).toEqual([expect.stringMatching(/nvme0: overflow 0x60000000\+4096 of DMA mask/)]);
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
  it('a BAR smaller than the machine\'s page size is refused naming the BAR (it was an error about deviceMemory[1])', () => {
    const pci = [{ name: 'hb0', type: 'host-bridge' as const, vendor: 0x8086, device: 0x2030 }, { name: 'rp0', type: 'root-port' as const, parent: 'hb0' },
      { name: 'nvme0', type: 'endpoint' as const, parent: 'rp0', bars: [{ bytes: 16 * KiB }] }];
    expect(() => createMachine({ ramBytes: GiB, pageSize: 65536, pci }))
      .toThrow(/^pci\[2\] \(nvme0\)\.bars\[0\]\.bytes must be at least the machine's page size \(65536\).*got 16384$/);
    const ok = createMachine({ ramBytes: GiB, pageSize: 16384, pci });
    expect(ok.regions.find((r) => r.name === 'nvme0.bar0')!.len).toBe(16 * KiB);
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

describe('host-bridge windows are reserved IOVA (dma-iommu.c: iova_reserve_pci_windows)', () => {
  // gpu0's 256 MiB p2p BAR sits above RAM in CPU space, but its busOffset puts its bus addresses at
  // [0xd0000000, 0xe0000000): inside the 32-bit IOVA space a 32-bit device allocates from top-down.
  const GPU_BUS = 0xd0000000n;
  const pci = (gpuCpu: bigint): lib.PciNodeConfig[] => [
    { name: 'hb0', type: 'host-bridge', vendor: 0x8086, device: 0x2030 },
    { name: 'rp0', type: 'root-port', parent: 'hb0' },
    { name: 'nvme0', type: 'endpoint', parent: 'rp0', bars: [{ bytes: 16 * KiB }] },
    { name: 'gpu0', type: 'endpoint', parent: 'rp0', bars: [{ bytes: 256 * MiB, p2p: true, busOffset: GPU_BUS - gpuCpu }] },
    { name: 'hb1', type: 'host-bridge', vendor: 0x8086, device: 0x2030 },
    { name: 'rp1', type: 'root-port', parent: 'hb1' },
    { name: 'nic0', type: 'endpoint', parent: 'rp1', bars: [{ bytes: 64 * KiB }, { bytes: 64 * KiB }] },
  ];
  const build = (): Machine => {
    // the BAR's CPU address is only known once the machine is laid out: build once to learn it
    const probe = createMachine({ ramBytes: 4 * GiB, swiotlb: false, pci: pci(0n) });
    const gpuCpu = probe.regions.find((r) => r.name === 'gpu0.bar0')!.start;
    return createMachine({ ramBytes: 4 * GiB, swiotlb: false, iommu: { format: 'x86-64', mode: 'strict' }, pci: pci(gpuCpu) });
  };

  it('every BAR bus range lies in a bridge-window reservation of its host bridge, in every DMA cookie', () => {
    const m = build();
    const windows = lib.pciHostBridgeWindows(m.topology!);
    const reserved = m.iommu!.reservedRegions.filter((r) => r.kind === 'bridge-window');
    expect(reserved.map((r) => [r.start, r.end])).toEqual(windows.map((w) => [w.start, w.end]));
    expect(new Set(windows.map((w) => w.hostBridge))).toEqual(new Set(['hb0', 'hb1']));
    let bars = 0;
    for (const p of m.topology!.pciDevs()) {
      for (const b of p.bars) {
        bars++;
        const bus = lib.pciBusAddress(p.device, b.index);
        expect(windows.some((w) => w.hostBridge === p.hostBridge.name && w.start <= bus && bus + BigInt(b.region.len) <= w.end)).toBe(true);
      }
    }
    expect(bars).toBe(4);
    expect(windows.some((w) => w.start === GPU_BUS && w.end === GPU_BUS + BigInt(256 * MiB))).toBe(true);
    // nic0's two BARs touch: one merged window
    expect(windows.filter((w) => w.hostBridge === 'hb1')).toHaveLength(1);
    for (const dev of m.devices()) {
      const ranges = lib.iommuGetDomainForDev(dev)!.iovad!.reservedRanges();
      for (const w of windows) {
        expect(ranges).toContainEqual({ pfnLo: w.start >> 12n, pfnHi: (w.end - 1n) >> 12n });
      }
    }
  });

  it('many IOVA allocations of a 32-bit device never land on a BAR bus window', () => {
    const m = build();
    const dev = m.device('nvme0');
    dmaSetMask(dev, DMA_BIT_MASK(32));
    const windows = lib.pciHostBridgeWindows(m.topology!);
    const phys = m.regions.find((r) => r.kind === 'ram' && r.len >= 64 * MiB)!.start;
    const got: Array<[bigint, number]> = [];
    let span = 0;
    for (let i = 0; i < 96; i++) {
      const size = (i % 3 === 0 ? 16 * MiB : 4 * MiB) + (i % 5) * 4096;
      const r = dmaMapPhys(dev, phys, size, DMA_TO_DEVICE);
      expect(r.ok).toBe(true);
      if (!r.ok) return;
      got.push([r.value, size]);
      span += size;
      for (const w of windows) expect(r.value + BigInt(size) <= w.start || r.value >= w.end).toBe(true);
    }
    // the allocations went past the window (top-down from 4 GiB), so they had to step around it
    expect(span).toBeGreaterThan(0x100000000 - Number(GPU_BUS));
    expect(got.some(([a]) => a < GPU_BUS)).toBe(true);
    for (const [a, size] of got) dmaUnmapPhys(dev, a, size, DMA_TO_DEVICE);
    expect(m.teardown()).toBe(0);
    expect(m.events.list('DMA-DEBUG')).toEqual([]);
  });
});

describe('the model-check of CPU stores (MODEL-CHECK, no kernel makes it): mem.write/fill/copy and writeUser, not device DMA or bounce copies', () => {
  const SMALL: lib.PciNodeConfig[] = [
    { name: 'hb0', type: 'host-bridge', vendor: 0x8086, device: 0x2030 },
    { name: 'rp0', type: 'root-port', parent: 'hb0' },
    { name: 'nvme0', type: 'endpoint', parent: 'rp0', bars: [{ bytes: 16 * KiB }] },
  ];
  const hex16 = (a: bigint): string => `0x${a.toString(16).padStart(16, '0')}`;
  const cpuWrites = (m: Machine): string[] =>
    m.events.list('MODEL-CHECK').map((e) => e.message).filter((s) => s.includes('CPU writes to a buffer the device owns'));
  const ramPage = (m: Machine): bigint => m.regions.find((r) => r.kind === 'ram' && r.len >= 64 * MiB)!.start + 0x200000n;

  it('force-bounce: a CPU write into a live mapping is one event naming the address; none after sync_for_cpu or unmap', () => {
    const m = createMachine({ ramBytes: 4 * GiB, seed: 2, pci: SMALL, swiotlb: { bytes: 4 * MiB, force: true } });
    const dev = m.device('nvme0');
    dmaSetMask(dev, DMA_BIT_MASK(64));
    const phys = ramPage(m);
    const r = dmaMapPhys(dev, phys, 8192, DMA_BIDIRECTIONAL);
    expect(r.ok).toBe(true);
    const addr = r.ok ? r.value : 0n;
    expect(m.regionAt(addr)?.start).toBe(m.regionAt(m.swiotlb!.start)?.start); // really bounced
    m.mem.write(phys + 0x1010n, new Uint8Array([1, 2, 3]));
    expect(cpuWrites(m)).toHaveLength(1);
    expect(cpuWrites(m)[0]).toContain(`phys=${hex16(phys + 0x1010n)}+3`);
    expect(cpuWrites(m)[0]).toMatch(/nvme0: .*\[bounced\]/);
    // the device writes its bounce slot, then sync_for_cpu copies it back: neither is a CPU store
    expect(dev.dmaWrite(addr, new Uint8Array(8192).fill(0xab)).ok).toBe(true);
    dmaSyncSingleForCpu(dev, addr, 8192, DMA_BIDIRECTIONAL);
    expect(m.mem.read(phys, 4)).toEqual(new Uint8Array([0xab, 0xab, 0xab, 0xab]));
    expect(cpuWrites(m)).toHaveLength(1);
    m.mem.write(phys, new Uint8Array(16)); // the CPU owns it now
    m.mem.fill(phys + 16n, 64, 7);
    expect(cpuWrites(m)).toHaveLength(1);
    dmaSyncSingleForDevice(dev, addr, 8192, DMA_BIDIRECTIONAL);
    m.mem.copy(phys + 0x1fffn, phys - 4096n, 2); // copy destination overlaps the last byte
    expect(cpuWrites(m)).toHaveLength(2);
    expect(cpuWrites(m)[1]).toContain(`phys=${hex16(phys + 0x1fffn)}+2`);
    m.mem.copy(phys - 4096n, phys, 4096); // the mapping is only the copy's source
    m.mem.write(phys + 8192n, new Uint8Array(4)); // just past the mapping
    expect(cpuWrites(m)).toHaveLength(2);
    dmaUnmapPhys(dev, addr, 8192, DMA_BIDIRECTIONAL);
    m.mem.write(phys + 0x1010n, new Uint8Array([1, 2, 3]));
    expect(cpuWrites(m)).toHaveLength(2);
    expect(m.events.count('MODEL-CHECK')).toBe(2);
    expect(m.events.count('DMA-DEBUG')).toBe(0);
    expect(m.teardown()).toBe(0);
  });

  it('writeUser into a page the device owns is flagged (bounced and non-coherent); not after sync_for_cpu', () => {
    for (const kind of ['bounce', 'non-coherent'] as const) {
      const m = createMachine({ ramBytes: 4 * GiB, seed: 3, pci: SMALL, swiotlb: { bytes: 4 * MiB, force: kind === 'bounce' } });
      const dev = m.device('nvme0');
      if (kind === 'non-coherent') dev.dmaCoherent = false;
      dmaSetMask(dev, DMA_BIT_MASK(64));
      const mm = m.newProcess();
      const va = mm.mmap({ len: 4 * 4096, backing: 'anon', populate: true });
      expect(va.ok).toBe(true);
      if (!va.ok) return;
      const phys = mm.translate(va.value + 4096n)!;
      const r = dmaMapPhys(dev, phys, 4096, DMA_FROM_DEVICE);
      const addr = r.ok ? r.value : 0n;
      expect(mm.writeUser(va.value, new Uint8Array(4096)).ok).toBe(true); // the page before: not mapped
      expect(cpuWrites(m)).toHaveLength(0);
      expect(mm.writeUser(va.value + 4096n + 100n, new Uint8Array([9])).ok).toBe(true);
      expect(cpuWrites(m)).toHaveLength(1);
      expect(cpuWrites(m)[0]).toContain(`phys=${hex16(phys + 100n)}+1`);
      expect(cpuWrites(m)[0]).toContain(kind === 'bounce' ? '[bounced]' : '[non-coherent]');
      expect(dev.dmaWrite(addr, new Uint8Array(4096).fill(5)).ok).toBe(true); // device DMA: not a CPU store
      expect(cpuWrites(m)).toHaveLength(1);
      dmaSyncSingleForCpu(dev, addr, 4096, DMA_FROM_DEVICE);
      expect(mm.readUser(va.value + 4096n, 2)).toEqual({ ok: true, value: new Uint8Array([5, 5]) });
      expect(mm.writeUser(va.value + 4096n, new Uint8Array(64)).ok).toBe(true);
      expect(cpuWrites(m)).toHaveLength(1);
      dmaUnmapPhys(dev, addr, 4096, DMA_FROM_DEVICE);
      expect(mm.writeUser(va.value + 4096n, new Uint8Array(64)).ok).toBe(true);
      expect(m.events.count('MODEL-CHECK')).toBe(1);
      expect(m.events.count('DMA-DEBUG')).toBe(0);
      expect(m.teardown()).toBe(0);
    }
  });

  it('coherent direct mappings are never flagged; disabled dma-debug flags nothing', () => {
    const m = createMachine({ ramBytes: 4 * GiB, seed: 4, pci: SMALL, swiotlb: { bytes: 4 * MiB } });
    const dev = m.device('nvme0');
    dmaSetMask(dev, DMA_BIT_MASK(64));
    const phys = ramPage(m);
    const r = dmaMapPhys(dev, phys, 4096, DMA_BIDIRECTIONAL);
    expect(r.ok && r.value === phys).toBe(true); // dma-direct, no bounce
    m.mem.write(phys, new Uint8Array(4096).fill(1));
    m.mem.fill(phys, 4096, 2);
    expect(m.events.count('MODEL-CHECK')).toBe(0);
    dmaUnmapPhys(dev, phys, 4096, DMA_BIDIRECTIONAL);
    dev.dmaCoherent = false;
    dmaSetMask(dev, DMA_BIT_MASK(64));
    const n = dmaMapPhys(dev, phys, 4096, DMA_BIDIRECTIONAL);
    m.dmaDebug.enabled = false;
    m.mem.write(phys, new Uint8Array(4));
    expect(m.events.count('MODEL-CHECK')).toBe(0);
    m.dmaDebug.enabled = true;
    m.mem.write(phys, new Uint8Array(4));
    expect(m.events.count('MODEL-CHECK')).toBe(1);
    dmaUnmapPhys(dev, n.ok ? n.value : 0n, 4096, DMA_BIDIRECTIONAL);
    expect(m.teardown()).toBe(0);
  });
});
