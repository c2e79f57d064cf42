// Worked examples traced by hand from each family's kernel source, and every failure mode.
import { describe, expect, it } from 'vitest';
import { GART_BASE, OPS_NODES, deviceRead, deviceWrite, opsMachine, pattern } from '../../../test/fixtures/dma-ops-machines.ts';
import { createMachine } from '../../machine/index.ts';
import { GiB, KernelBug, MiB, TiB, unwrap } from '../../base/index.ts';
import { PhyrList, SgAppendTable, sgAllocTable } from '../../phyr/index.ts';
import {
  DMA_ATTR_NO_WARN, DMA_BIDIRECTIONAL, DMA_BIT_MASK, DMA_FROM_DEVICE, DMA_MAPPING_ERROR, DMA_TO_DEVICE, dmaMapPhys, dmaMapPhyrs, dmaMapResource, dmaMapSgtable,
  dmaMaxMappingSize, dmaOpsInspect, dmaPciP2pdmaSupported, dmaSetMask, dmaSetMaskAndCoherent, dmaSetSegBoundary, dmaSyncSingleForCpu,
  dmaUnmapPhys, dmaUnmapPhyrs, dmaUnmapSgtable, xenGrantBackendMap, xenGrantBackendUnmap,
} from '../index.ts';
import { GartOps, TceOps, XenGrantOps } from '../internal.ts';
import { devDmaOps, getDmaOps } from './ops.ts';
import { dmaGoDirect } from '../mapping.ts';

const PHYS = 0x1_2345_6678n;

describe('GART (arch/x86/kernel/amd_gart_64.c)', () => {
  it('gart_map_phys -> dma_map_area: 3 GATT entries from next_bit 0, GPTE_ENCODE bytes, bus = base + offset', () => {
    const m = opsMachine({ kind: 'gart', busBase: GART_BASE, pages: 16 });
    const dev = m.device('nic0');
    const g = getDmaOps(dev) as GartOps;
    // 32-bit mask: 0x1_2345_6678 needs the GART (need_iommu: !dma_capable)
    const addr = unwrap(dmaMapPhys(dev, PHYS, 0x2000, DMA_BIDIRECTIONAL));
    expect(addr).toBe(GART_BASE + 0x678n);
    // GPTE_ENCODE(0x1_2345_6678) = 0x23456000 | (0x1 << 4) | VALID | COHERENT, then +0x1000 per page
    const raw = m.mem.read(g.gattPhys, 16);
    expect([...raw]).toEqual([0x13, 0x60, 0x45, 0x23, 0x13, 0x70, 0x45, 0x23, 0x13, 0x80, 0x45, 0x23, 0, 0, 0, 0]);
    const st = dmaOpsInspect(dev)!;
    expect(st.allocated).toEqual([0, 1, 2]);
    expect(st.hints.nextBit).toBe(3);
    expect(st.flushes).toBe(2); // enable_gart_translations + fullflush
    const data = pattern(0x2000, 1);
    expect(dev.dmaWrite(addr, data).ok).toBe(true);
    expect(m.mem.read(PHYS, 0x2000)).toEqual(data);
    dmaUnmapPhys(dev, addr, 0x2000, DMA_BIDIRECTIONAL);
    // unmapped entries point at the scratch page (gart_unmapped_entry), not 0
    expect(dmaOpsInspect(dev)!.entries.map(([i, v]) => [i, Number(v)])).toEqual([0, 1, 2].map((i) => [i, g.unmappedEntry]));
    expect(dmaOpsInspect(dev)!.allocated).toEqual([]);
    // a late device write reaches the scratch page, as the northbridge would, never the old buffer
    expect(dev.dmaWrite(addr, new Uint8Array(16).fill(0xee)).ok).toBe(true);
    expect(m.mem.read(PHYS, 16)).toEqual(data.subarray(0, 16));
    expect(m.mem.read(g.scratchPhys + 0x678n, 16)).toEqual(new Uint8Array(16).fill(0xee));
    expect(m.events.count('DMA-DEBUG')).toBe(0);
  });

  it('passthrough when the device reaches the range (need_iommu false): phys returned, no entry, unmap does nothing', () => {
    const m = opsMachine({ kind: 'gart', busBase: GART_BASE, pages: 16 });
    const dev = m.device('nic0');
    const phys = 0x4000_0000n;
    expect(unwrap(dmaMapPhys(dev, phys, 4096, DMA_TO_DEVICE))).toBe(phys);
    expect(dmaOpsInspect(dev)!.entries).toEqual([]);
    dmaUnmapPhys(dev, phys, 4096, DMA_TO_DEVICE);
    expect(dmaOpsInspect(dev)!.allocated).toEqual([]);
  });

  it('refuses MMIO (gart_map_phys: DMA_ATTR_MMIO) and what lies past 1 TiB (GART_MAX_PHYS_ADDR), leaving no state', () => {
    const m = opsMachine({ kind: 'gart', busBase: GART_BASE, pages: 16, force: true });
    const dev = m.device('nic0');
    const bar = m.regions.find((r) => r.name === 'nic0.bar0')!.start;
    expect(dmaMapResource(dev, bar, 4096, DMA_BIDIRECTIONAL).ok).toBe(false);
    expect(dmaMapPhys(dev, (1n << 40n) - 4096n, 8192, DMA_BIDIRECTIONAL).ok).toBe(false);
    expect(dmaOpsInspect(dev)!.allocated).toEqual([]);
    expect(dmaOpsInspect(dev)!.entries).toEqual([]);
  });

  it('out of IOMMU space: 16 entries hold 15 pages (iommu_area_alloc never uses the last), then ENOMEM and the log line', () => {
    const m = opsMachine({ kind: 'gart', busBase: GART_BASE, pages: 16 });
    const dev = m.device('nic0');
    const a = unwrap(dmaMapPhys(dev, PHYS & ~0xfffn, 15 * 4096, DMA_BIDIRECTIONAL));
    const before = dmaOpsInspect(dev)!;
    expect(before.allocated.length).toBe(15);
    const r = dmaMapPhys(dev, PHYS & ~0xfffn, 4096, DMA_BIDIRECTIONAL);
    expect(r.ok).toBe(false);
    expect(m.events.list('INFO', 'gart').map((e) => [e.message, e.data?.level])).toEqual([['nic0: PCI-DMA: Out of IOMMU space for 4096 bytes', 'err']]);
    expect(dmaOpsInspect(dev)!.allocated).toEqual(before.allocated);
    dmaUnmapPhys(dev, a, 15 * 4096, DMA_BIDIRECTIONAL);
  });

  it('gart_unmap_phys of DMA_MAPPING_ERROR: WARN_ON_ONCE, once per boot, nothing freed', () => {
    // dma-debug off: with it on, an unmap of what was never mapped goes to dma-debug alone (docs/model.md)
    const m = opsMachine({ kind: 'gart', busBase: GART_BASE, pages: 16, force: true }, { dmaDebug: false });
    const dev = m.device('nic0');
    const a = unwrap(dmaMapPhys(dev, PHYS, 4096, DMA_BIDIRECTIONAL));
    for (let i = 0; i < 2; i++) dmaUnmapPhys(dev, DMA_MAPPING_ERROR, 4096, DMA_BIDIRECTIONAL);
    expect(m.events.list('WARN').map((e) => e.message)).toEqual(['nic0: gart_unmap_phys: WARN_ON_ONCE(dma_addr == DMA_MAPPING_ERROR)']);
    expect(dmaOpsInspect(dev)!.allocated).toEqual([0, 1]);
    dmaUnmapPhys(dev, a, 4096, DMA_BIDIRECTIONAL);
  });

  it('gart_unmap_phys running past the aperture is refused (MODEL-CHECK): the kernel would write past the GATT and its bitmap', () => {
    const m = opsMachine({ kind: 'gart', busBase: GART_BASE, pages: 16, force: true }, { dmaDebug: false });
    const dev = m.device('nic0');
    const g = getDmaOps(dev) as GartOps;
    const after = m.mem.read(g.gattPhys + 64n, 8);
    dmaUnmapPhys(dev, GART_BASE + 14n * 4096n, 4 * 4096, DMA_BIDIRECTIONAL);
    expect(m.events.list('MODEL-CHECK').map((e) => e.message)).toEqual([`nic0: gart_unmap_phys of 0x${(GART_BASE + 14n * 4096n).toString(16)}+16384: GATT entries 14..17 run past the aperture's 16; refused`]);
    expect(m.mem.read(g.gattPhys + 64n, 8)).toEqual(after);
    expect(dmaOpsInspect(dev)!.entries).toEqual([]);
  });

  it('gart_map_sg: a zero-length entry is BUG_ON(s->length == 0), whether or not it needs the GART', () => {
    for (const force of [false, true]) {
      const m = opsMachine({ kind: 'gart', busBase: GART_BASE, pages: 16, force });
      const dev = m.device('nic0');
      const sgt = unwrap(sgAllocTable(2));
      sgt.setPage(0, 0x123456n, 4096, 0);
      sgt.setPage(1, 0x40000n, 0, 0); // below 4 GiB: passthrough unless forced
      expect(() => dmaMapSgtable(dev, sgt, DMA_BIDIRECTIONAL)).toThrow(KernelBug);
      expect(m.events.list('BUG').map((e) => e.message)).toEqual(['nic0: gart_map_sg: BUG_ON(s->length == 0), entry 1']);
    }
  });

  it('gart_map_sg does not check GART_MAX_PHYS_ADDR: GPTE_ENCODE of a page past 1 TiB spills bit 40 onto bit 12', () => {
    const m = createMachine({
      ramBytes: TiB + 8 * GiB, seed: 1, swiotlb: { bytes: 4 * MiB }, pci: OPS_NODES,
      dmaOps: { kind: 'gart', busBase: GART_BASE, pages: 16, force: true },
    });
    const dev = m.device('nic0');
    const g = getDmaOps(dev) as GartOps;
    const phys = (1n << 40n) + 0x4000_0000n;
    // dma_map_area refuses it (phys + size > GART_MAX_PHYS_ADDR)
    expect(dmaMapPhys(dev, phys, 4096, DMA_BIDIRECTIONAL).ok).toBe(false);
    // __dma_map_cont writes GPTE_ENCODE(phys): 0x4000_0000 | (0x100 << 4) | VALID | COHERENT
    const sgt = unwrap(sgAllocTable(1));
    sgt.setPage(0, phys >> 12n, 4096, 0);
    unwrap(dmaMapSgtable(dev, sgt, DMA_BIDIRECTIONAL));
    expect(sgt.dmaAddressAt(0)).toBe(GART_BASE);
    expect(g.pte(0)).toBe(0x4000_1003);
    // the northbridge decodes it as physical 0x4000_1000: the device's write lands there, not at phys
    m.mem.write(phys, new Uint8Array(16).fill(0x11));
    expect(dev.dmaWrite(GART_BASE, new Uint8Array(16).fill(0xee)).ok).toBe(true);
    expect(m.mem.read(0x4000_1000n, 16)).toEqual(new Uint8Array(16).fill(0xee));
    expect(m.mem.read(phys, 16)).toEqual(new Uint8Array(16).fill(0x11));
    dmaUnmapSgtable(dev, sgt, DMA_BIDIRECTIONAL);
  });

  it('a map longer than the segment boundary: iommu_area_alloc never returns (a lockup: BUG, KernelBug)', () => {
    const m = opsMachine({ kind: 'gart', busBase: GART_BASE, pages: 64, force: true });
    const dev = m.device('nic0');
    dmaSetSegBoundary(dev, DMA_BIT_MASK(15)); // 8 pages
    // 10 pages span a boundary wherever they start; the first free run starts at 0, on a boundary,
    // and the search restarts there for ever
    expect(() => dmaMapPhys(dev, PHYS & ~0xfffn, 10 * 4096, DMA_BIDIRECTIONAL)).toThrow(KernelBug);
    expect(m.events.list('BUG').map((e) => e.message)).toEqual([
      'nic0: iommu_area_alloc: a run of 10 pages spans every 8-page segment boundary, and the search restarts at the same index for ever (lockup)',
    ]);
    // the same in iommu_range_alloc: entry 0 is reserved, 1..10 spans 8, the search moves to 8
    const t = opsMachine({ kind: 'tce', offset: 0, size: 64, pageShift: 12 });
    dmaSetSegBoundary(t.device('nic0'), DMA_BIT_MASK(15));
    expect(() => dmaMapPhys(t.device('nic0'), PHYS & ~0xfffn, 10 * 4096, DMA_BIDIRECTIONAL)).toThrow(KernelBug);
    expect(t.events.list('BUG').map((e) => e.source)).toEqual(['tce']);
    // 8 pages fit
    const m2 = opsMachine({ kind: 'gart', busBase: GART_BASE, pages: 64, force: true });
    dmaSetSegBoundary(m2.device('nic0'), DMA_BIT_MASK(15));
    expect(unwrap(dmaMapPhys(m2.device('nic0'), PHYS & ~0xfffn, 8 * 4096, DMA_BIDIRECTIONAL))).toBe(GART_BASE);
  });

  it('dma_supported is dma_direct_supported: a mask below ZONE_DMA (24 bits) is EIO, and the mask stays', () => {
    const m = opsMachine({ kind: 'gart', busBase: GART_BASE, pages: 16 });
    const dev = m.device('nic0');
    expect(dmaSetMask(dev, DMA_BIT_MASK(20))).toMatchObject({ ok: false, errno: 'EIO' });
    expect(dev.dmaMask).toBe(DMA_BIT_MASK(32));
    expect(dmaSetMask(dev, DMA_BIT_MASK(24)).ok).toBe(true);
  });

  it('gart_map_sg merges page-aligned entries into one allocation only with iommu=merge', () => {
    for (const merge of [false, true]) {
      const m = opsMachine({ kind: 'gart', busBase: GART_BASE, pages: 64, force: true, merge });
      const dev = m.device('nic0');
      const sgt = unwrap(sgAllocTable(3));
      const pfns = [0x123456n, 0x100010n, 0x150000n];
      pfns.forEach((p, i) => sgt.setPage(i, p, 4096, 0));
      expect(dmaMapSgtable(dev, sgt, DMA_BIDIRECTIONAL).ok).toBe(true);
      expect(sgt.nents).toBe(merge ? 1 : 3);
      expect(sgt.dmaAddressAt(0)).toBe(GART_BASE);
      if (merge) expect(sgt.dmaLengthAt(0)).toBe(3 * 4096);
      // the three GATT entries point at the three scattered pages
      const g = getDmaOps(dev) as GartOps;
      expect([0, 1, 2].map((i) => g.pte(i))).toEqual(pfns.map((p) => Number(((p << 12n) & 0xfffff000n) | ((p >> 20n) << 4n) | 3n)));
      dmaUnmapSgtable(dev, sgt, DMA_BIDIRECTIONAL);
      expect(dmaOpsInspect(dev)!.allocated).toEqual([]);
    }
  });

  it('gart_map_sg leaves sg_dma_address = sg_phys in the entries past its segments, and sg_dma_len 0 in the first of them', () => {
    const m = opsMachine({ kind: 'gart', busBase: GART_BASE, pages: 64, merge: true });
    const dev = m.device('nic0');
    const sgt = unwrap(sgAllocTable(3));
    const pfns = [0x123456n, 0x100010n, 0x150000n];
    pfns.forEach((p, i) => { sgt.setPage(i, p, 4096, 0); sgt.setDma(i, 0xdead000n, 99); });
    unwrap(dmaMapSgtable(dev, sgt, DMA_BIDIRECTIONAL));
    expect([0, 1, 2].map((i) => [sgt.dmaAddressAt(i), sgt.dmaLengthAt(i)])).toEqual([
      [GART_BASE, 3 * 4096], [0x100010n << 12n, 0], [0x150000n << 12n, 99],
    ]);
    dmaUnmapSgtable(dev, sgt, DMA_BIDIRECTIONAL);
    expect(dmaOpsInspect(dev)!.allocated).toEqual([]);
  });
});

describe('PowerPC TCE (arch/powerpc/kernel/iommu.c, platforms/pseries/iommu.c)', () => {
  it('iommu_map_phys under 64 KiB pages: 16 TCEs from the large pool, aligned to 16; tce_build_pSeries bytes (big endian)', () => {
    const m = opsMachine({ kind: 'tce', offset: 0, size: 64, pageShift: 12 }, { pageSize: 65536 });
    const dev = m.device('nic0');
    const t = getDmaOps(dev) as TceOps;
    // iommu_init_table: one pool of floor(64 * 3 / 4) = 48 entries, large pool [48, 64); entry 0 reserved
    expect(t.poolsize).toBe(48);
    const phys = 0x1_0001_0000n;
    const a = unwrap(dmaMapPhys(dev, phys, 0x10000, DMA_BIDIRECTIONAL));
    // npages = 16 > 15: the large pool [48, 64) first, but iommu_area_alloc never uses its last entry
    // (limit 64 -> 63), so 16 do not fit; pass 1 retries it from its start, pass 2 moves to pool 0:
    // entry 0 reserved, align = PAGE_SHIFT - it_page_shift = 4 -> index 16
    expect(a).toBe(16n << 12n);
    const raw = m.mem.read(t.tablePhys + 16n * 8n, 16);
    expect([...raw]).toEqual([0, 0, 0, 1, 0, 1, 0, 0x03, 0, 0, 0, 1, 0, 1, 0x10, 0x03]);
    // a large allocation leaves the hint at its end (no block rounding)
    expect(dmaOpsInspect(dev)!.hints.pool0).toBe(32);
    // a small one: pool 0 from its hint 32; the hint then rounds up to the block (it_blocksize 16)
    const b = unwrap(dmaMapPhys(dev, phys + 0x100n, 0x200, DMA_TO_DEVICE));
    expect(b).toBe((32n << 12n) | 0x100n);
    expect(t.tce(32)).toBe(phys | 1n); // TO_DEVICE: TCE_PCI_READ only
    expect(dmaOpsInspect(dev)!.hints.pool0).toBe(48);
    // the device may read but not write a TO_DEVICE TCE
    expect(dev.dmaRead(b, 0x200).ok).toBe(true);
    expect(dev.dmaWrite(b, new Uint8Array(4)).ok).toBe(false);
    dmaUnmapPhys(dev, a, 0x10000, DMA_BIDIRECTIONAL);
    dmaUnmapPhys(dev, b, 0x200, DMA_TO_DEVICE);
    expect(dmaOpsInspect(dev)!.entries).toEqual([]);
    expect(dmaOpsInspect(dev)!.allocated).toEqual([0]);
    expect(dev.dmaRead(a, 16).ok).toBe(false); // after unmap the TCE is 0: the access faults
  });

  it('dma_iommu_map_phys / dma_iommu_map_sg clamp to dma_get_mask(dev): a *dma_mask of 0 is 32 bits there', () => {
    // dma_set_mask(dev, 0) passes dma_iommu_dma_supported (it_offset 0 <= 0 >> 12), and dma_get_mask()
    // then answers DMA_BIT_MASK(32), so iommu_range_alloc sees the whole window, not a limit of 1
    const m = opsMachine({ kind: 'tce', offset: 0, size: 64, pageShift: 12 });
    const dev = m.device('nic0');
    unwrap(dmaSetMask(dev, 0n));
    expect(dev.dmaMask).toBe(0n);
    expect(unwrap(dmaMapPhys(dev, PHYS, 4096, DMA_BIDIRECTIONAL))).toBe((1n << 12n) | 0x678n);
    const sgt = unwrap(sgAllocTable(1));
    sgt.setPage(0, 0x100000n, 4096, 0);
    unwrap(dmaMapSgtable(dev, sgt, DMA_BIDIRECTIONAL));
    expect(sgt.dmaAddressAt(0)).toBe(16n << 12n); // pool 0's hint rounded up to it_blocksize after the first
  });

  it('ppc_iommu_map_sg skips a zero-length entry and resets dma_next, so the entries around it do not merge', () => {
    const m = opsMachine({ kind: 'tce', offset: 0, size: 64, pageShift: 12 });
    const dev = m.device('nic0');
    const sgt = unwrap(sgAllocTable(3));
    sgt.setPage(0, 0x100000n, 4096, 0);
    sgt.setPage(1, 0x100001n, 0, 0);
    sgt.setPage(2, 0x100002n, 4096, 0);
    sgt.setDma(2, 0xdead000n, 99); // left over from an earlier mapping of the table
    unwrap(dmaMapSgtable(dev, sgt, DMA_BIDIRECTIONAL));
    // entries 1 and 2 of the table: adjacent TCEs, but two segments; sg[2] gets the dma_length 0 mark
    expect(sgt.nents).toBe(2);
    expect([0, 1, 2].map((i) => [sgt.dmaAddressAt(i), sgt.dmaLengthAt(i)])).toEqual([[0x1000n, 4096], [0x2000n, 4096], [0xdead000n, 0]]);
    expect(dmaOpsInspect(dev)!.allocated).toEqual([0, 1, 2]);
    dmaUnmapSgtable(dev, sgt, DMA_BIDIRECTIONAL);
    expect(dmaOpsInspect(dev)!.allocated).toEqual([0]);
  });

  it('ppc_iommu_map_sg with a zero-length first entry: an empty first segment, and ppc_iommu_unmap_sg then frees nothing', () => {
    const m = opsMachine({ kind: 'tce', offset: 0, size: 64, pageShift: 12 }, { dmaDebug: false });
    const dev = m.device('nic0');
    const sgt = unwrap(sgAllocTable(3));
    sgt.setPage(0, 0x100000n, 0, 0);
    sgt.setPage(1, 0x100001n, 4096, 0);
    sgt.setPage(2, 0x100002n, 4096, 0);
    sgt.setDma(0, 0xabc000n, 77); // left over from an earlier mapping of the table
    unwrap(dmaMapSgtable(dev, sgt, DMA_BIDIRECTIONAL));
    // outcount starts at 1 with sg[0].dma_length = 0; entry 1 cannot merge into it (dma_next 0), so it
    // opens sg[1]; entry 2 merges. sg[0].dma_address is never written.
    expect(sgt.nents).toBe(2);
    expect([sgt.dmaAddressAt(0), sgt.dmaLengthAt(0), sgt.dmaAddressAt(1), sgt.dmaLengthAt(1)]).toEqual([0xabc000n, 0, 0x1000n, 8192]);
    dmaUnmapSgtable(dev, sgt, DMA_BIDIRECTIONAL);
    // the unmap stops at sg[0] (dma_length 0): both TCEs stay, and the device still reaches the pages
    expect(dmaOpsInspect(dev)!.allocated).toEqual([0, 1, 2]);
    expect(dev.dmaRead(0x1000n, 8192).ok).toBe(true);
  });

  it('ppc_iommu_map_sg out of TCEs: EIO, the backout frees without it_ops->flush; DMA_ATTR_NO_WARN silences the dev_info', () => {
    for (const attrs of [0, DMA_ATTR_NO_WARN]) {
      const m = opsMachine({ kind: 'tce', offset: 0, size: 8, pageShift: 12 });
      const dev = m.device('nic0');
      const sgt = unwrap(sgAllocTable(2));
      sgt.setPage(0, 0x100000n, 4096, 0);
      sgt.setPage(1, 0x100010n, 64 * 1024, 0);
      const flushes = dmaOpsInspect(dev)!.flushes;
      expect(dmaMapSgtable(dev, sgt, DMA_BIDIRECTIONAL, attrs)).toMatchObject({ ok: false, errno: 'EIO' });
      expect(dmaOpsInspect(dev)!.allocated).toEqual([0]);
      expect(dmaOpsInspect(dev)!.entries).toEqual([]);
      expect(dmaOpsInspect(dev)!.flushes).toBe(flushes);
      expect(m.events.list('INFO', 'tce').map((e) => e.message)).toEqual(attrs ? [] : ['nic0: iommu_alloc failed, npages 16']);
      expect(dmaMapPhys(dev, PHYS, 64 * 1024, DMA_BIDIRECTIONAL, attrs).ok).toBe(false);
      expect(m.events.list('INFO', 'tce').length).toBe(attrs ? 0 : 2);
    }
  });

  it('iommu_free_check: an unmap outside the window prints the table facts (KERN_INFO) and WARN_ON(1), and frees nothing', () => {
    // dma-debug off: with it on, an unmap of what was never mapped goes to dma-debug alone (docs/model.md)
    const m = opsMachine({ kind: 'tce', offset: 0, size: 64, pageShift: 12 }, { dmaDebug: false });
    const dev = m.device('nic0');
    const a = unwrap(dmaMapPhys(dev, PHYS, 4096, DMA_BIDIRECTIONAL));
    dmaUnmapPhys(dev, 0x40_0000n, 4096, DMA_BIDIRECTIONAL); // entry 0x400, past it_size 0x40
    expect(m.events.list('INFO', 'tce').map((e) => e.message)).toEqual([
      'iommu_free: invalid entry', '\tentry     = 0x400', '\tdma_addr  = 0x400000', '\tsize      = 0x40', '\tstartOff  = 0x0',
    ]);
    expect(m.events.list('WARN').map((e) => e.message)).toEqual(['nic0: iommu_free_check: WARN_ON(1)']);
    expect(dmaOpsInspect(dev)!.allocated).toEqual([0, 1, 2]); // PHYS + 4 KiB spans two TCEs
    dmaUnmapPhys(dev, a, 4096, DMA_BIDIRECTIONAL);
  });

  it('a DMA mask below the window (the default 32 bits, window at 16 GiB): the kernel\'s limit wraps; the model fails the map (MODEL-CHECK)', () => {
    const m = opsMachine({ kind: 'tce', offset: 1 << 22, size: 64, pageShift: 12 });
    const dev = m.device('nic0');
    expect(dmaSetMask(dev, DMA_BIT_MASK(32)).ok).toBe(false); // dma_iommu_dma_supported: offset too big
    expect(dmaMapPhys(dev, PHYS, 4096, DMA_BIDIRECTIONAL).ok).toBe(false);
    expect(m.events.list('MODEL-CHECK').map((e) => e.message)).toEqual([
      'nic0: iommu_range_alloc with DMA mask 0xffffffff below the TCE window at entry 0x400000: the kernel would search past the table\'s bitmap; failed',
    ]);
    expect(dmaOpsInspect(dev)!.allocated).toEqual([]);
    unwrap(dmaSetMask(dev, DMA_BIT_MASK(35)));
    expect(unwrap(dmaMapPhys(dev, PHYS, 4096, DMA_BIDIRECTIONAL))).toBe(((1n << 22n) << 12n) | 0x678n);
  });

  it('table full: DMA_MAPPING_ERROR, nothing left allocated', () => {
    const m = opsMachine({ kind: 'tce', offset: 0, size: 8, pageShift: 12 });
    const dev = m.device('nic0');
    expect(dmaMapPhys(dev, PHYS, 64 * 1024, DMA_BIDIRECTIONAL).ok).toBe(false);
    expect(dmaOpsInspect(dev)!.allocated).toEqual([0]);
  });

  it('DDW comes with the first mask above 32 bits (enable_ddw); dma_supported sets and clears dma_ops_bypass, the window stays', () => {
    const off = 1n << 59n, limit = off + 0x1_4000_0000n;
    const m = opsMachine({ kind: 'tce', offset: 0, size: 256, pageShift: 12, ddw: { dmaOffset: off, busDmaLimit: limit } });
    const dev = m.device('nic0');
    const bypass = (): boolean => devDmaOps(dev)!.bypass;
    // the default 32-bit mask: no window yet, everything through the table
    expect([dev.busDmaLimit, bypass()]).toEqual([0n, false]);
    const a = unwrap(dmaMapPhys(dev, 0x1000_0000n, 4096, DMA_BIDIRECTIONAL));
    expect(a).toBe(1n << 12n);
    dmaUnmapPhys(dev, a, 4096, DMA_BIDIRECTIONAL);
    expect(dev.dmaRead(off + 0x1000_0000n, 4).ok).toBe(false); // the window does not exist yet
    // dma_set_mask(64): iommu_bypass_supported_pSeriesLP -> enable_ddw, dma_ops_bypass set
    unwrap(dmaSetMask(dev, DMA_BIT_MASK(64)));
    expect([dev.busDmaLimit, bypass()]).toEqual([limit, true]);
    expect(m.events.list('INFO', 'tce').map((e) => e.message)).toEqual(['nic0: iommu: 64-bit OK but direct DMA is limited by 800000140000000']);
    const b = unwrap(dmaMapPhys(dev, 0x1000_0000n, 4096, DMA_BIDIRECTIONAL));
    expect(b).toBe(off + 0x1000_0000n);
    dmaUnmapPhys(dev, b, 4096, DMA_BIDIRECTIONAL);
    // back to 32 bits: the table check passes and clears dma_ops_bypass, but bus_dma_limit stays, so
    // arch_dma_map_phys_direct still sends RAM below it to dma-direct, whose address the mask refuses
    unwrap(dmaSetMask(dev, DMA_BIT_MASK(32)));
    expect([dev.busDmaLimit, bypass()]).toEqual([limit, false]);
    expect(dmaMapPhys(dev, 0x1000_0000n, 4096, DMA_BIDIRECTIONAL).ok).toBe(false);
    // a device that never asked keeps the table (each PCI function gets its window when it asks)
    const gpu = m.device('gpu0');
    expect(unwrap(dmaMapPhys(gpu, 0x1000_0000n, 4096, DMA_BIDIRECTIONAL)) < off).toBe(true);
  });

  it('dma_set_mask -> dma_setup_need_sync: a device that bypasses to dma-direct syncs by its coherence, not by the ops\' sync callbacks', () => {
    // a window whose bus_dma_limit reaches RAM's end through dma_offset (2^35 + 7 GiB: 36 bits), so
    // dma_map_direct holds with a 64-bit mask; nic0 is not DMA-coherent
    const off = 1n << 35n;
    const m = createMachine({
      ramBytes: 6 * GiB, seed: 1, swiotlb: { bytes: 4 * MiB },
      pci: OPS_NODES.map((n) => (n.name === 'nic0' ? { ...n, coherent: false } : n)),
      dmaOps: { kind: 'tce', offset: 0, size: 256, pageShift: 12, ddw: { dmaOffset: off, busDmaLimit: (1n << 36n) - 1n } },
    });
    const dev = m.device('nic0');
    expect(dev.dmaSkipSync).toBe(true); // dma_iommu_ops has no sync callbacks
    unwrap(dmaSetMask(dev, DMA_BIT_MASK(64)));
    expect(dmaGoDirect(dev)).toBe(true);
    expect(dev.dmaSkipSync).toBe(false);
    const a = unwrap(dmaMapPhys(dev, 0x1000_0000n, 4096, DMA_FROM_DEVICE));
    expect(a).toBe(off + 0x1000_0000n);
    const before = m.events.count('CACHE');
    dmaSyncSingleForCpu(dev, a, 4096, DMA_FROM_DEVICE);
    expect(m.events.count('CACHE')).toBeGreaterThan(before); // dma_direct_sync_single_for_cpu's invalidate
    dmaUnmapPhys(dev, a, 4096, DMA_FROM_DEVICE);
  });

  it('DDW: ranges the direct window covers go to dma-direct at phys + dma_offset, the rest to the table, in one phyr list', () => {
    const off = 1n << 59n;
    const m = opsMachine({ kind: 'tce', offset: 0, size: 256, pageShift: 12, ddw: { dmaOffset: off, busDmaLimit: off + 0x1_4000_0000n } });
    const dev = m.device('nic0');
    unwrap(dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(64)));
    const low = 0x1_0000_3000n, high = 0x1_8000_0000n;
    const list = PhyrList.from([{ addr: low, len: 8192, flags: 0 }, { addr: high, len: 4096, flags: 0 }]);
    const r = unwrap(dmaMapPhyrs(dev, list, DMA_BIDIRECTIONAL, 0));
    expect(r.how).toBe('ops');
    const segs = r.opsSegments;
    expect(segs[0].addr).toBe(low + off);
    expect(segs[1].addr < off).toBe(true);
    const data = pattern(12288, 3);
    expect(deviceWrite(dev, segs, data)).toBe(true);
    expect(m.mem.read(low, 8192)).toEqual(data.subarray(0, 8192));
    expect(m.mem.read(high, 4096)).toEqual(data.subarray(8192));
    dmaUnmapPhyrs(dev, r, DMA_BIDIRECTIONAL, 0);
    expect(dmaOpsInspect(dev)!.entries).toEqual([]);
    expect(m.events.count('DMA-DEBUG')).toBe(0);
  });
});

describe('Xen swiotlb (drivers/xen/swiotlb-xen.c)', () => {
  const p2m: Array<[number, number]> = [[0x100000, 0x100001], [0x100001, 0x100000]];
  it('xen_phys_to_bus: the bus address is the bfn, the device reaches the pfn', () => {
    const m = opsMachine({ kind: 'xen-swiotlb', p2m });
    const dev = m.device('nic0');
    unwrap(dmaSetMask(dev, DMA_BIT_MASK(64)));
    const a = unwrap(dmaMapPhys(dev, 0x1_0000_0010n, 100, DMA_FROM_DEVICE));
    expect(a).toBe(0x1_0000_1010n);
    const d = pattern(100, 5);
    expect(dev.dmaWrite(a, d).ok).toBe(true);
    dmaUnmapPhys(dev, a, 100, DMA_FROM_DEVICE);
    expect(m.mem.read(0x1_0000_0010n, 100)).toEqual(d);
    expect(dmaOpsInspect(dev)!.bounceBytes).toBe(0);
  });

  it('range_straddles_page_boundary forces a bounce; copied back at unmap', () => {
    const m = opsMachine({ kind: 'xen-swiotlb', p2m });
    const dev = m.device('nic0');
    unwrap(dmaSetMask(dev, DMA_BIT_MASK(64)));
    // pfn 0x100001 -> bfn 0x100000 and pfn 0x100002 -> itself: not bus-contiguous
    const phys = 0x1_0000_1800n;
    const a = unwrap(dmaMapPhys(dev, phys, 0x1000, DMA_FROM_DEVICE));
    expect(m.swiotlb!.start <= a && a < m.swiotlb!.end).toBe(true);
    const d = pattern(0x1000, 6);
    expect(dev.dmaWrite(a, d).ok).toBe(true);
    expect(m.mem.read(phys, 16)).not.toEqual(d.subarray(0, 16));
    dmaSyncSingleForCpu(dev, a, 0x1000, DMA_FROM_DEVICE);
    expect(m.mem.read(phys, 0x1000)).toEqual(d);
    dmaUnmapPhys(dev, a, 0x1000, DMA_FROM_DEVICE);
    expect(dmaOpsInspect(dev)!.bounceBytes).toBe(0x1000);
    expect(m.swiotlb!.used).toBe(0);
  });

  it('a bounced range over 256 KiB fails (max_mapping_size = swiotlb_max_mapping_size); MMIO passes untranslated', () => {
    const m = opsMachine({ kind: 'xen-swiotlb', p2m });
    const dev = m.device('nic0');
    unwrap(dmaSetMask(dev, DMA_BIT_MASK(64)));
    expect(dmaMaxMappingSize(dev)).toBe(256 * 1024);
    expect(dmaMapPhys(dev, 0x1_0000_0000n, 256 * 1024 + 4096, DMA_BIDIRECTIONAL).ok).toBe(false);
    expect(m.swiotlb!.used).toBe(0);
    const bar = m.regions.find((r) => r.name === 'nic0.bar0')!.start;
    expect(unwrap(dmaMapResource(dev, bar, 4096, DMA_BIDIRECTIONAL))).toBe(bar);
  });

  it('xen_swiotlb_dma_supported: the mask must reach the pool\'s last byte on the bus; without a pool only 64 bits do', () => {
    const m = opsMachine({ kind: 'xen-swiotlb', p2m });
    const dev = m.device('nic0');
    const last = m.swiotlb!.end - 1n; // identity-mapped frames: the bus address is the physical one
    const bits = last.toString(2).length;
    expect(dmaSetMask(dev, DMA_BIT_MASK(bits - 1)).ok).toBe(false);
    expect(dmaSetMask(dev, DMA_BIT_MASK(bits)).ok).toBe(true);
    const none = createMachine({ ramBytes: 6 * GiB, seed: 1, swiotlb: false, pci: OPS_NODES, dmaOps: { kind: 'xen-swiotlb', p2m } });
    const d2 = none.device('nic0');
    expect(dmaSetMask(d2, DMA_BIT_MASK(63)).ok).toBe(false);
    expect(dmaSetMask(d2, DMA_BIT_MASK(64)).ok).toBe(true);
  });

  it('MMIO beyond the mask: DMA_MAPPING_ERROR, reported once per boot (dev_err_once + WARN_ON_ONCE)', () => {
    const m = opsMachine({ kind: 'xen-swiotlb', p2m });
    const dev = m.device('nic0');
    const bar = m.regions.find((r) => r.name === 'nic0.bar0')!.start;
    expect(bar > DMA_BIT_MASK(32)).toBe(true);
    for (let i = 0; i < 2; i++) expect(dmaMapResource(dev, bar, 4096, DMA_BIDIRECTIONAL).ok).toBe(false);
    expect(m.events.list('WARN').map((e) => e.message)).toEqual([`nic0: DMA addr 0x${bar.toString(16)}+4096 overflow (mask ffffffff, bus limit 0).`]);
  });
});

describe('Xen grants (drivers/xen/grant-dma-ops.c)', () => {
  it('grant refs as DMA addresses: 1 << 63 | ref << 12 | offset, one v1 entry per Xen page', () => {
    const m = opsMachine({ kind: 'xen-grant', backendDomid: 7 });
    const dev = m.device('nic0');
    expect(dmaSetMask(dev, DMA_BIT_MASK(32)).ok).toBe(false); // xen_grant_dma_supported: 64-bit only
    unwrap(dmaSetMask(dev, DMA_BIT_MASK(64)));
    const phys = 0x1_0000_5010n;
    const a = unwrap(dmaMapPhys(dev, phys, 5000, DMA_TO_DEVICE));
    // n = XEN_PFN_UP(0x10 + 5000) = 2 consecutive refs from the first free (8: GNTTAB_NR_RESERVED_ENTRIES)
    expect(a).toBe((1n << 63n) | (8n << 12n) | 0x10n);
    const g = getDmaOps(dev) as XenGrantOps;
    // grant_entry_v1: flags = permit_access | readonly, domid 7, frame = 0x100005, 0x100006
    expect([...m.mem.read(g.tablePhys + 64n, 16)]).toEqual([5, 0, 7, 0, 5, 0, 0x10, 0, 5, 0, 7, 0, 6, 0, 0x10, 0]);
    m.mem.write(phys, pattern(5000, 9));
    expect(deviceRead(dev, [{ addr: a, len: 5000 }])).toEqual(pattern(5000, 9));
    expect(dev.dmaWrite(a, new Uint8Array(4)).ok).toBe(false); // read-only grant
    dmaUnmapPhys(dev, a, 5000, DMA_TO_DEVICE);
    expect(dmaOpsInspect(dev)!.allocated).toEqual([]);
    expect(dev.dmaRead(a, 4).ok).toBe(false);
  });

  it('a grant the backend still maps at unmap breaks the device: later maps fail', () => {
    const m = opsMachine({ kind: 'xen-grant', backendDomid: 1 });
    const dev = m.device('nic0');
    unwrap(dmaSetMask(dev, DMA_BIT_MASK(64)));
    const a = unwrap(dmaMapPhys(dev, 0x1_0000_0000n, 4096, DMA_BIDIRECTIONAL));
    xenGrantBackendMap(dev, a, true);
    dmaUnmapPhys(dev, a, 4096, DMA_BIDIRECTIONAL);
    // gnttab_end_foreign_access_ref's pr_warn (ref 8: the first after GNTTAB_NR_RESERVED_ENTRIES), then the dev_alert
    expect(m.events.list('INFO', 'xen-grant').map((e) => [e.message, e.data?.level])).toEqual([
      ['WARNING: g.e. 0x8 still in use!', 'warning'], ['nic0: Grant still in use by backend domain, disabled for further use', 'alert'],
    ]);
    expect(dmaOpsInspect(dev)!.extra.broken).toBe(true);
    expect(dmaMapPhys(dev, 0x1_0000_1000n, 4096, DMA_BIDIRECTIONAL).ok).toBe(false);
    xenGrantBackendUnmap(dev, a);
  });
});

describe('Xen grants: a zero-length entry', () => {
  it('at a Xen page boundary asks for 0 grant refs, which corrupts the kernel\'s free list: refused (MODEL-CHECK), the list intact', () => {
    const m = opsMachine({ kind: 'xen-grant', backendDomid: 1 });
    const dev = m.device('nic0');
    unwrap(dmaSetMask(dev, DMA_BIT_MASK(64)));
    const sgt = unwrap(sgAllocTable(2));
    sgt.setPage(0, 0x100000n, 4096, 0);
    sgt.setPage(1, 0x100001n, 0, 0);
    expect(dmaMapSgtable(dev, sgt, DMA_BIDIRECTIONAL)).toMatchObject({ ok: false, errno: 'EIO' });
    expect(m.events.list('MODEL-CHECK').map((e) => e.message)).toEqual([expect.stringMatching(/^nic0: xen_grant_dma_map_phys of 0 bytes at 0x100001000: gnttab_alloc_grant_reference_seq\(0\)/)]);
    // entry 0's grant was ended and freed again: the next map gets ref 8 once more
    expect(dmaOpsInspect(dev)!.allocated).toEqual([]);
    expect(unwrap(dmaMapPhys(dev, 0x1_0000_0000n, 4096, DMA_BIDIRECTIONAL))).toBe((1n << 63n) | (8n << 12n));
    // 0 bytes inside a Xen page still take one ref (XEN_PFN_UP of the offset), as in the kernel
    sgt.setPage(1, 0x100001n, 0, 0x80);
    unwrap(dmaMapSgtable(dev, sgt, DMA_BIDIRECTIONAL));
    expect(sgt.nents).toBe(2);
  });
});

describe('Xen grants: an unmap of refs past the grant table', () => {
  it('is refused (MODEL-CHECK): the kernel would write past gnttab_shared and gnttab_list', () => {
    // dma-debug off: with it on, an unmap of what was never mapped goes to dma-debug alone (docs/model.md)
    const m = opsMachine({ kind: 'xen-grant', backendDomid: 1 }, { dmaDebug: false });
    const dev = m.device('nic0');
    unwrap(dmaSetMask(dev, DMA_BIT_MASK(64)));
    dmaUnmapPhys(dev, (1n << 63n) | (100_000n << 12n), 4096, DMA_BIDIRECTIONAL);
    expect(m.events.list('MODEL-CHECK').map((e) => e.message)).toEqual(['nic0: xen_grant_dma_unmap_phys of 0x80000000186a0000: grant refs 100000..100000 are past the grant table (2048 refs); refused']);
    // the free list is as it was: the next map gets ref 8
    expect(unwrap(dmaMapPhys(dev, 0x1_0000_0000n, 4096, DMA_BIDIRECTIONAL))).toBe((1n << 63n) | (8n << 12n));
  });
});

describe('dma_dummy_ops (kernel/dma/dummy.c)', () => {
  it('every map fails with the kernel\'s error; dma_set_mask gets EIO; unmap WARNs once', () => {
    const m = opsMachine({ kind: 'dummy' });
    const dev = m.device('nic0');
    expect(dmaSetMask(dev, DMA_BIT_MASK(64))).toMatchObject({ ok: false, errno: 'EIO' });
    expect(dmaMapPhys(dev, 0x1_0000_0000n, 4096, DMA_BIDIRECTIONAL).ok).toBe(false);
    const sgt = unwrap(sgAllocTable(1));
    sgt.setPage(0, 0x100000n, 4096, 0);
    expect(dmaMapSgtable(dev, sgt, DMA_BIDIRECTIONAL)).toMatchObject({ ok: false, errno: 'EINVAL' });
    expect(dmaMapPhyrs(dev, PhyrList.from([{ addr: 0x1_0000_0000n, len: 4096, flags: 0 }]), DMA_BIDIRECTIONAL, 0)).toMatchObject({ ok: false, errno: 'EINVAL' });
    expect(dev.dmaRead(0x1_0000_0000n, 4).ok).toBe(false);
  });

  it('the unmap WARN_ON_ONCE fires once per machine, whichever device and ops instance (one flag per call site)', () => {
    // two endpoints, each with its own dma_dummy_ops instance: the kernel has one dma_dummy_ops and
    // one WARN_ON_ONCE flag in dma_dummy_unmap_phys() for the whole boot
    // dma-debug off: with it on, the model hands an unmap of an address it never saw mapped to
    // dma-debug alone (docs/model.md), and these unmaps are of nothing
    const m = opsMachine({ kind: 'dummy' }, { perEndpoint: true, dmaDebug: false });
    const warns = (): number => m.events.list('WARN', 'dma-dummy').length;
    const nic = m.device('nic0');
    const gpu = m.device('gpu0');
    expect(getDmaOps(nic)).not.toBe(getDmaOps(gpu));
    dmaUnmapPhys(nic, 0x1000n, 4096, DMA_BIDIRECTIONAL);
    expect(warns()).toBe(1);
    expect(m.events.list('WARN', 'dma-dummy')[0].message).toContain('nic0: dma_dummy_unmap_phys');
    dmaUnmapPhys(nic, 0x2000n, 4096, DMA_BIDIRECTIONAL);
    dmaUnmapPhys(gpu, 0x1000n, 4096, DMA_BIDIRECTIONAL);
    expect(warns()).toBe(1);
    // a second machine has its own boot
    const m2 = opsMachine({ kind: 'dummy' }, { dmaDebug: false });
    dmaUnmapPhys(m2.device('nic0'), 0x1000n, 4096, DMA_BIDIRECTIONAL);
    expect(m2.events.list('WARN', 'dma-dummy').length).toBe(1);
    expect(warns()).toBe(1);
  });
});

describe('dispatch (kernel/dma/mapping.c)', () => {
  it('an empty table: gart, TCE and dummy map_sg say EINVAL; the xen families map 0 entries, which __dma_map_sg_attrs turns into WARN + EIO', () => {
    const cases: Array<[Parameters<typeof opsMachine>[0], string, number]> = [
      [{ kind: 'gart', busBase: GART_BASE, pages: 16 }, 'EINVAL', 0],
      [{ kind: 'tce', offset: 0, size: 64, pageShift: 12 }, 'EINVAL', 0],
      [{ kind: 'tce', offset: 0, size: 256, pageShift: 12, ddw: { dmaOffset: 1n << 59n, busDmaLimit: (1n << 59n) + 0x1_4000_0000n } }, 'EIO', 1],
      [{ kind: 'dummy' }, 'EINVAL', 0],
      [{ kind: 'xen-grant', backendDomid: 7 }, 'EIO', 1],
    ];
    for (const [cfg, errno, warns] of cases) {
      const m = opsMachine(cfg);
      // a 64-bit mask gives the TCE device its dynamic window (enable_ddw), and with it
      // arch_dma_map_sg_direct, which every entry of an empty list passes
      if (cfg.kind === 'tce' && cfg.ddw) unwrap(dmaSetMask(m.device('nic0'), DMA_BIT_MASK(64)));
      const r = dmaMapSgtable(m.device('nic0'), new SgAppendTable().sgt, DMA_TO_DEVICE);
      expect([cfg.kind, r.ok ? 'ok' : r.errno, m.events.count('WARN')]).toEqual([cfg.kind, errno, warns]);
    }
  });
  it('dma_pci_p2pdma_supported is false for every ops device; P2P memory gets EREMOTEIO', () => {
    const m = opsMachine({ kind: 'tce', offset: 0, size: 64, pageShift: 12 });
    const dev = m.device('nic0');
    expect(dmaPciP2pdmaSupported(dev)).toBe(false);
    const bar = m.regions.find((r) => r.name === 'gpu0.bar0')!;
    const r = dmaMapPhyrs(dev, PhyrList.from([{ addr: bar.start, len: 4096, flags: bar.rangeFlags }]), DMA_BIDIRECTIONAL, 0);
    expect(r).toMatchObject({ ok: false, errno: 'EREMOTEIO' });
  });

  it('config errors name the field path', () => {
    expect(() => opsMachine({ kind: 'gart', busBase: 0x1000_0000n, pages: 16 })).toThrow(/config\.dmaOps\.busBase must put the aperture in a hole .* overlaps ram0/);
    expect(() => opsMachine({ kind: 'tce', offset: 0, size: 64, pageShift: 13 })).toThrow(/config\.dmaOps\.pageShift must be 12, 16, 21 or 24, got 13/);
    expect(() => opsMachine({ kind: 'xen-swiotlb', p2m: [[0x100000, 0x100001]] })).toThrow(/config\.dmaOps\.p2m maps a pfn to bfn 1048577/);
    expect(() => opsMachine({ kind: 'bogus' } as never)).toThrow(/config\.dmaOps\.kind must be one of/);
  });
});
