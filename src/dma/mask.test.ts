import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  DMA_ATTR_MMIO, DMA_ATTR_NO_WARN, DMA_ATTR_PRIVILEGED, DMA_ATTR_REQUIRE_COHERENT, DMA_ATTR_SKIP_CPU_SYNC,
  DMA_ATTR_WEAK_ORDERING, DMA_ATTR_WRITE_COMBINE, DMA_BIDIRECTIONAL, DMA_BIT_MASK, DMA_FROM_DEVICE,
  DMA_MAPPING_ERROR, DMA_NONE, DMA_TO_DEVICE, validDmaDirection, checkAttrs,
} from './constants.ts';
import {
  dmaAddressingLimited, dmaGetMask, dmaGetMaxSegSize, dmaGetMinAlignMask, dmaGetSegBoundary, dmaSetCoherentMask,
  dmaSetMask, dmaSetMaskAndCoherent, dmaSetMaxSegSize, dmaSetMinAlignMask, dmaSetSegBoundary, dmaGetRequiredMask,
} from './mask.ts';
import { Device } from '../pci/index.ts';
import { smallMachine } from '../../test/fixtures/dma-machines.ts';
import { GART_BASE, opsMachine } from '../../test/fixtures/dma-ops-machines.ts';

describe('DMA constants (include/linux/dma-mapping.h, dma-direction.h)', () => {
  it('have the kernel values', () => {
    expect([DMA_BIDIRECTIONAL, DMA_TO_DEVICE, DMA_FROM_DEVICE, DMA_NONE]).toEqual([0, 1, 2, 3]);
    expect(DMA_ATTR_WEAK_ORDERING).toBe(2);
    expect(DMA_ATTR_WRITE_COMBINE).toBe(4);
    expect(DMA_ATTR_SKIP_CPU_SYNC).toBe(32);
    expect(DMA_ATTR_NO_WARN).toBe(256);
    expect(DMA_ATTR_PRIVILEGED).toBe(512);
    expect(DMA_ATTR_MMIO).toBe(1024);
    expect(DMA_ATTR_REQUIRE_COHERENT).toBe(4096);
    expect(DMA_MAPPING_ERROR).toBe(0xffffffffffffffffn);
    expect(DMA_BIT_MASK(64)).toBe(0xffffffffffffffffn);
    expect(DMA_BIT_MASK(32)).toBe(0xffffffffn);
    expect(DMA_BIT_MASK(0)).toBe(0n);
    expect(() => DMA_BIT_MASK(65)).toThrow(/n must be an integer in \[0, 64\], got 65/);
  });
  it('DMA_BIT_MASK(n) has exactly the low n bits set', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 64 }), (n) => {
      const m = DMA_BIT_MASK(n);
      expect(m.toString(2).replace(/^0$/, '').length).toBe(n);
      expect((m + 1n) & m).toBe(0n);
    }));
  });
  it('validDmaDirection and checkAttrs', () => {
    expect([0, 1, 2, 3, -1, 1.5, '1'].map(validDmaDirection)).toEqual([true, true, true, false, false, false, false]);
    expect(checkAttrs(DMA_ATTR_MMIO | DMA_ATTR_SKIP_CPU_SYNC)).toBe(1056);
    expect(() => checkAttrs(1 << 20)).toThrow(/attrs must be a combination of DMA_ATTR_\* bits, got 1048576/);
  });
});

describe('masks and device DMA parameters (kernel/dma/mapping.c: dma_set_mask; drivers/pci/probe.c)', () => {
  it('defaults: 32-bit mask, 64 KiB max segment, a 4 GiB boundary for a PCI function (pci_device_add), not ULONG_MAX; no min align', () => {
    const m = smallMachine();
    const dev = m.device('nvme0');
    expect(dmaGetMask(dev)).toBe(DMA_BIT_MASK(32));
    expect(dmaGetMaxSegSize(dev)).toBe(65536);
    expect(dmaGetSegBoundary(dev)).toBe(DMA_BIT_MASK(32));
    expect(dmaGetMinAlignMask(dev)).toBe(0);
    const bare = new Device('bare'); // not a PCI function: no dma_parms set, the getters' defaults
    expect(dmaGetMaxSegSize(bare)).toBe(65536);
    expect(dmaGetSegBoundary(bare)).toBe(DMA_BIT_MASK(64));
    bare.dmaMask = null;
    expect(dmaGetMask(bare)).toBe(DMA_BIT_MASK(32));
    // include/linux/dma-mapping.h: dma_get_mask() also answers 32 bits for a *dma_mask of 0
    bare.dmaMask = 0n;
    expect(dmaGetMask(bare)).toBe(DMA_BIT_MASK(32));
  });
  it('dma_set_mask: 64 bits ok; below ZONE_DMA (24 bits) EIO and the mask is unchanged', () => {
    const m = smallMachine();
    const dev = m.device('nvme0');
    expect(dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(64))).toEqual({ ok: true, value: undefined });
    expect(dev.dmaMask).toBe(DMA_BIT_MASK(64));
    expect(dev.coherentDmaMask).toBe(DMA_BIT_MASK(64));
    expect(dmaSetMask(dev, DMA_BIT_MASK(24)).ok).toBe(true);
    const r = dmaSetMask(dev, DMA_BIT_MASK(20));
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.errno).toBe('EIO');
    expect(dev.dmaMask).toBe(DMA_BIT_MASK(24));
    expect(dmaSetCoherentMask(dev, DMA_BIT_MASK(16)).ok).toBe(false);
    expect(() => dmaSetMask(dev, -1n)).toThrow(RangeError);
    dev.dmaMask = null;
    const r2 = dmaSetMask(dev, DMA_BIT_MASK(64));
    expect(r2.ok ? 'ok' : r2.errno).toBe('EIO');
  });
  it('every mask of >= 24 bits is accepted, every smaller one refused (brute force over n)', () => {
    const m = smallMachine();
    const dev = m.device('nvme0');
    for (let n = 0; n <= 64; n++) expect(dmaSetMask(dev, DMA_BIT_MASK(n)).ok).toBe(n >= 24);
  });
  it('setters validate and set', () => {
    const m = smallMachine();
    const dev = m.device('nvme0');
    dmaSetMaxSegSize(dev, 2 * 1024 * 1024);
    expect(dmaGetMaxSegSize(dev)).toBe(2 * 1024 * 1024);
    expect(() => dmaSetMaxSegSize(dev, 0)).toThrow(/n must be an integer in \[1, 4294967295\], got 0/);
    dmaSetSegBoundary(dev, 0xffffffffn);
    expect(dmaGetSegBoundary(dev)).toBe(0xffffffffn);
    expect(() => dmaSetSegBoundary(dev, 0x1000n)).toThrow(/2\^k - 1/);
    dmaSetMinAlignMask(dev, 4095);
    expect(dmaGetMinAlignMask(dev)).toBe(4095);
    expect(() => dmaSetMinAlignMask(dev, 4096)).toThrow(/mask must be 2\^k - 1, got 0x1000/);
  });
  it('dma_addressing_limited: a 32-bit device on 8 GiB of RAM is limited, a 64-bit one is not', () => {
    const m = smallMachine();
    const dev = m.device('nvme0');
    const maxRam = m.regions.filter((r) => r.kind === 'ram').reduce((a, r) => (r.end > a ? r.end : a), 0n);
    const required = dmaGetRequiredMask(dev);
    expect(required >= maxRam - 1n && (required + 1n) & required).toBe(0n);
    expect(dmaAddressingLimited(dev)).toBe(true);
    dmaSetMask(dev, DMA_BIT_MASK(64));
    expect(dmaAddressingLimited(dev)).toBe(false);
    dev.busDmaLimit = DMA_BIT_MASK(32);
    expect(dmaAddressingLimited(dev)).toBe(true);
  });
  it('dma_get_required_mask follows the dma_map_ops: ->get_required_mask, else 32 bits (kernel/dma/mapping.c)', () => {
    const mib4 = 4 * 1024 * 1024;
    const direct = DMA_BIT_MASK(33); // opsMachine: 6 GiB of RAM, the last byte at 0x1_bfff_ffff
    const cases: Array<[Parameters<typeof opsMachine>[0], bigint, boolean]> = [
      // no ->get_required_mask: DMA_BIT_MASK(32), so a 32-bit device is not addressing-limited
      [{ kind: 'xen-swiotlb', p2m: [] }, DMA_BIT_MASK(32), false],
      [{ kind: 'xen-grant', backendDomid: 7 }, DMA_BIT_MASK(32), false], // (xen_grant_dma_supported wants 64 bits)
      // gart_dma_ops: dma_direct_get_required_mask
      [{ kind: 'gart', busBase: GART_BASE, pages: 16 }, direct, true],
      // dma_iommu_get_required_mask of a PCI device: the bypass mask, which dma_iommu_dma_supported
      // accepts because the window (offset 0) starts below it, not the table's 19 bits
      [{ kind: 'tce', offset: 0, size: 64, pageShift: 12 }, direct, true],
    ];
    for (const [cfg, required, limited] of cases) {
      const m = opsMachine(cfg, { swiotlb: mib4 });
      const dev = m.device('nic0');
      expect(dmaSetMask(dev, DMA_BIT_MASK(cfg.kind === 'xen-grant' ? 64 : 32)).ok).toBe(true);
      expect([cfg.kind, dmaGetRequiredMask(dev), dmaAddressingLimited(dev)]).toEqual([cfg.kind, required, limited]);
    }
  });
  it('dma_iommu_get_required_mask (arch/powerpc/kernel/dma-iommu.c): the bypass mask unless the window lies past it; asking may enable the dynamic window', () => {
    const mib4 = 4 * 1024 * 1024;
    // a window starting past the bypass mask (it_offset 2^22 > 0x1_ffff_ffff >> 12): the table's mask,
    // fls_long(2^22 + 64) + 12 = 35 bits, after dma_iommu_dma_supported's two dev_info lines
    const far = opsMachine({ kind: 'tce', offset: 1 << 22, size: 64, pageShift: 12 }, { swiotlb: mib4 });
    expect(dmaGetRequiredMask(far.device('nic0'))).toBe(DMA_BIT_MASK(35));
    expect(far.events.list('INFO', 'tce').map((e) => e.message)).toEqual([
      'nic0: Warning: IOMMU offset too big for device mask', 'nic0: mask: 0x1ffffffff, table offset: 0x400000000',
    ]);
    // a device that is not PCI skips the bypass question: the table's mask, fls_long(0 + 64) + 12 = 19 bits
    const plat = opsMachine({ kind: 'tce', offset: 0, size: 64, pageShift: 12 }, { swiotlb: mib4 }).addDevice(new Device('plat0'));
    expect(dmaGetRequiredMask(plat)).toBe(DMA_BIT_MASK(19));
    // with a dynamic window: the first answer is the bypass mask of RAM as it is before the window
    // (33 bits), and asking for it enabled the window (mask above 32 bits) and set dma_ops_bypass;
    // the next answer is RAM's end through archdata.dma_offset, 2^59 + 7 GiB: 60 bits
    const m = opsMachine({ kind: 'tce', offset: 0, size: 256, pageShift: 12, ddw: { dmaOffset: 1n << 59n, busDmaLimit: (1n << 59n) + 0x1_4000_0000n } }, { swiotlb: mib4 });
    const dev = m.device('nic0');
    expect(dev.busDmaLimit).toBe(0n);
    expect(dmaGetRequiredMask(dev)).toBe(DMA_BIT_MASK(33));
    expect(dev.busDmaLimit).toBe((1n << 59n) + 0x1_4000_0000n);
    expect(dmaGetRequiredMask(dev)).toBe(DMA_BIT_MASK(60));
    expect(dmaAddressingLimited(dev)).toBe(true);
    expect(m.events.list('INFO', 'tce').map((e) => e.message)).toEqual([
      'nic0: iommu: 64-bit OK but direct DMA is limited by 800000140000000',
      'nic0: dma_iommu_get_required_mask: returning bypass mask 0x1ffffffff',
      'nic0: iommu: 64-bit OK but direct DMA is limited by 800000140000000',
      'nic0: dma_iommu_get_required_mask: returning bypass mask 0xfffffffffffffff',
      'nic0: iommu: 64-bit OK but direct DMA is limited by 800000140000000',
      'nic0: dma_iommu_get_required_mask: returning bypass mask 0xfffffffffffffff',
    ]);
  });
  it('dma_direct_get_required_mask: the last RAM byte through the range map; untranslated, all ones (kernel/dma/direct.c)', () => {
    const m = smallMachine();
    const dev = m.addDevice(new Device('plat0'));
    dev.dmaMask = DMA_BIT_MASK(64);
    expect(dmaGetRequiredMask(dev)).toBe(DMA_BIT_MASK(34)); // RAM ends at 0x240100000
    const ram0 = m.regions.find((r) => r.kind === 'ram')!;
    dev.dmaRangeMap = [{ cpuStart: ram0.start, dmaStart: ram0.start, len: ram0.len }];
    expect(dmaGetRequiredMask(dev)).toBe(DMA_BIT_MASK(64));
    expect(dmaAddressingLimited(dev)).toBe(true);
  });
  it('dma_direct_supported: a mask below 32 bits must reach the last byte of RAM, not only its last page (kernel/dma/direct.c)', () => {
    const m = smallMachine({ ramBytes: 6 * 1024 * 1024 }); // RAM [1 MiB, 7 MiB)
    const dev = m.device('nvme0');
    expect(dmaSetMask(dev, 0x6f_f000n)).toMatchObject({ ok: false, errno: 'EIO' });
    expect(dmaSetMask(dev, 0x6f_ffffn).ok).toBe(true);
  });
});
