// Regression tests for IOMMU and PCI fidelity fixes, each traced from the kernel function it
// follows and named for the old model behaviour it catches:
//   - the flush queue's ring holds one entry less than its size (drivers/iommu/dma-iommu.c: fq_full);
//   - PCI functions get a 64 KiB max segment and a 4 GiB segment boundary (drivers/pci/probe.c:
//     pci_device_add), which iommu_dma_map_sg's IOVA padding then follows;
//   - AMD v1 leaves carry FC (drivers/iommu/generic_pt/fmt/amdv1.h: amdv1pt_iommu_set_prot);
//   - ARM LPAE follows drivers/iommu/io-pgtable-arm.c (__arm_lpae_map, __arm_lpae_unmap).
import { describe, expect, it } from 'vitest';
import { GiB } from '../src/base/index.ts';
import { DMA_BIT_MASK, DMA_TO_DEVICE } from '../src/dma/index.ts';
import { dmaMapPhys, dmaMapSgtable, dmaUnmapPhys, dmaUnmapSgtable } from '../src/dma/index.ts';
import { dmaGetMaxSegSize, dmaGetSegBoundary, dmaSetMaskAndCoherent, dmaSetMaxSegSize, dmaSetSegBoundary } from '../src/dma/index.ts';
import { DmaIovaState, dmaIovaDestroy, dmaIovaLink, dmaIovaTryAlloc } from '../src/dma/index.ts';
import { ramAt, smallMachine } from './fixtures/dma-machines.ts';
import {
  createIommu, dumpTablePage, iommuDmaAllocIova, iommuDmaFreeIova, iommuIovaToPhys, iommuMap, iommuTranslate, iommuUnmap,
  iommuWalk, IOMMU_CACHE, IOMMU_MMIO, IOMMU_READ, IOMMU_WRITE, type IommuDomain,
} from '../src/iommu/internal.ts';
import { TestMachine } from './fixtures/iommu-machine.ts';
import { Device } from '../src/pci/index.ts';
import { sgAllocTable } from '../src/phyr/index.ts';

const RW = IOMMU_READ | IOMMU_WRITE;
const ULONG_MAX = (1n << 64n) - 1n;

describe('flush queue depth (dma-iommu.c: fq_full is ((tail + 1) & mod_mask) == head)', () => {
  it('a per-CPU ring of 256 holds 255, not 256: map 256 x 4 KiB, unmap all, map 4 KiB gives 0xfff01000, not 0xffeff000', () => {
    const m = smallMachine({ iommu: { format: 'x86-64', mode: 'lazy' } });
    const dev = m.device('nvme0'); // 32-bit DMA mask: IOVAs top-down from 4 GiB
    const buf = ramAt(m, 0n, 257 * 4096);
    const dma: bigint[] = [];
    for (let i = 0; i < 256; i++) {
      const r = dmaMapPhys(dev, buf + BigInt(i) * 4096n, 4096, DMA_TO_DEVICE);
      if (!r.ok) throw new Error(r.errno);
      dma.push(r.value);
    }
    expect(dma[0]).toBe(0xfffff000n);
    expect(dma[255]).toBe(0xfff00000n);
    // each unmap queues its IOVA; the 256th queue_iova finds 255 entries (full), flushes, and the
    // 255 freed IOVAs go to the range cache, last one freed on top
    for (const a of dma) dmaUnmapPhys(dev, a, 4096, DMA_TO_DEVICE);
    expect(m.stats.flushQueueFlushes).toBe(1);
    const again = dmaMapPhys(dev, buf + 256n * 4096n, 4096, DMA_TO_DEVICE);
    expect(again).toEqual({ ok: true, value: 0xfff01000n });
    // and the bytes move through it
    m.mem.write(buf + 256n * 4096n, new Uint8Array([1, 2, 3, 4]));
    expect(dev.dmaRead(0xfff01000n, 4)).toEqual({ ok: true, value: new Uint8Array([1, 2, 3, 4]) });
  });

  it('the single queue of 32768 holds 32767, not 32768: the 32768th queued free flushes first', () => {
    const mm = new TestMachine();
    const d = createIommu(mm, { format: 'x86-64', mode: 'lazy', fqMode: 'single' }).allocDomain('dma-fq');
    const dev = new Device('t');
    dev.pci32BitWorkaround = false;
    const mask = DMA_BIT_MASK(48);
    for (let i = 0; i < 32767; i++) iommuDmaFreeIova(d, iommuDmaAllocIova(d, 4096, mask, dev), 4096, null);
    expect(d.fq?.length).toBe(32767);
    expect(mm.stats.flushQueueFlushes).toBe(0);
    iommuDmaFreeIova(d, iommuDmaAllocIova(d, 4096, mask, dev), 4096, null);
    expect(mm.stats.flushQueueFlushes).toBe(1);
    expect(d.fq?.length).toBe(1);
  });
});

describe('PCI DMA parameters (probe.c: pci_device_add sets max_seg_size 65536 and seg_boundary 0xffffffff)', () => {
  it('every PCI function gets a 4 GiB segment boundary, not ULONG_MAX; a non-PCI device keeps the ULONG_MAX default', () => {
    const m = smallMachine();
    for (const name of ['nvme0', 'tb0', 'rp0', 'hb0']) {
      const dev = m.device(name);
      expect(dmaGetSegBoundary(dev), name).toBe(0xffffffffn);
      expect(dmaGetMaxSegSize(dev), name).toBe(65536);
      expect(dev.dmaParms.maxSegmentSize, name).toBe(65536); // set, not the getter's fallback
    }
    expect(dmaGetSegBoundary(new Device('platform'))).toBe(ULONG_MAX);
  });

  /**
   * iommu_dma_map_sg: entry 0 is 4 GiB - 4 KiB, entry 1 is 8 KiB. Laying out entry 1 at IOVA offset
   * 0xfffff000 would cross a 4 GiB line: pad_len = (mask - iova_len + 1) & mask = 0x1000 < 0x2000 - 1,
   * so entry 0's IOVA length grows by 0x1000 and entry 1 starts at offset 0x100000000. With
   * ULONG_MAX the pad is never < s_length - 1 and entry 1 follows at 0xfffff000.
   */
  function mapAcross4G(setBoundary?: bigint): { seg1: bigint; base: bigint; bytes: Uint8Array } {
    const m = smallMachine({ ramBytes: 16 * GiB, iommu: { format: 'x86-64', mode: 'strict' } });
    const dev = m.device('nvme0');
    expect(dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(64)).ok).toBe(true);
    // entries of almost 4 GiB: a max_segment_size below them would let __finalise_sg's unsigned
    // max_len - cur_len wrap and merge what follows
    dmaSetMaxSegSize(dev, 0xffffffff);
    if (setBoundary !== undefined) dmaSetSegBoundary(dev, setBoundary);
    const big = 0x100000000 - 0x1000;
    const p0 = ramAt(m, 1n << 32n, big + 0x1000);
    const p1 = ramAt(m, p0 + BigInt(big) + 0x100000n, 0x2000);
    const a = sgAllocTable(2);
    if (!a.ok) throw new Error(a.errno);
    const sgt = a.value;
    sgt.setPage(0, p0 >> 12n, big, 0);
    sgt.setPage(1, p1 >> 12n, 0x2000, 0);
    m.mem.write(p1, new Uint8Array([0xde, 0xad, 0xbe, 0xef]));
    expect(dmaMapSgtable(dev, sgt, DMA_TO_DEVICE, 0).ok).toBe(true);
    expect(sgt.nents).toBe(2);
    const base = sgt.dmaAddressAt(0);
    expect(sgt.dmaLengthAt(0)).toBe(big);
    const seg1 = sgt.dmaAddressAt(1);
    expect(sgt.dmaLengthAt(1)).toBe(0x2000);
    const rd = dev.dmaRead(seg1, 4);
    const bytes = rd.ok ? rd.value : new Uint8Array();
    dmaUnmapSgtable(dev, sgt, DMA_TO_DEVICE, 0);
    return { seg1, base, bytes };
  }

  it('map_sg pads the IOVA layout so no segment crosses a 4 GiB line (0x100000000 from the base, not 0xfffff000)', () => {
    const { seg1, base, bytes } = mapAcross4G();
    expect(seg1 - base).toBe(0x100000000n);
    expect(seg1 & 0xffffffffn).toBe(0n);
    expect(bytes).toEqual(new Uint8Array([0xde, 0xad, 0xbe, 0xef]));
  });

  it('a driver that sets a ULONG_MAX boundary gets the unpadded layout (what every PCI device got before)', () => {
    const { seg1, base, bytes } = mapAcross4G(ULONG_MAX);
    expect(seg1 - base).toBe(0xfffff000n);
    expect(bytes).toEqual(new Uint8Array([0xde, 0xad, 0xbe, 0xef]));
  });

  it('map_sg does not merge DMA segments across a 4 GiB IOVA line (__finalise_sg): 3 segments, not 2', () => {
    const run = (boundary?: bigint): Array<[bigint, number]> => {
      const m = smallMachine({ ramBytes: 16 * GiB, iommu: { format: 'x86-64', mode: 'strict' } });
      const dev = m.device('nvme0');
      expect(dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(64)).ok).toBe(true);
      dmaSetMaxSegSize(dev, 0xffffffff); // see mapAcross4G
      if (boundary !== undefined) dmaSetSegBoundary(dev, boundary);
      const big = 0x100000000 - 0x8000;
      const p0 = ramAt(m, 1n << 32n, big);
      const p1 = ramAt(m, p0 + BigInt(big) + 0x100000n, 0x8000);
      const p2 = p1 + 0x100000n;
      const a = sgAllocTable(3);
      if (!a.ok) throw new Error(a.errno);
      const sgt = a.value;
      sgt.setPage(0, p0 >> 12n, big, 0);
      sgt.setPage(1, p1 >> 12n, 0x8000, 0);
      sgt.setPage(2, p2 >> 12n, 0x8000, 0);
      m.mem.write(p2, new Uint8Array([5, 6, 7]));
      expect(dmaMapSgtable(dev, sgt, DMA_TO_DEVICE, 0).ok).toBe(true);
      const segs: Array<[bigint, number]> = [];
      for (let i = 0; i < sgt.nents; i++) segs.push([sgt.dmaAddressAt(i) - sgt.dmaAddressAt(0), sgt.dmaLengthAt(i)]);
      // entry 2's bytes are where the layout put them
      expect(dev.dmaRead(sgt.dmaAddressAt(0) + 0x100000000n, 3)).toEqual({ ok: true, value: new Uint8Array([5, 6, 7]) });
      dmaUnmapSgtable(dev, sgt, DMA_TO_DEVICE, 0);
      return segs;
    };
    // entries 1 and 2 are IOVA-contiguous and fit 64 KiB together, but entry 2 starts on the 4 GiB line
    expect(run()).toEqual([[0n, 0xffff8000], [0xffff8000n, 0x8000], [0x100000000n, 0x8000]]);
    expect(run(ULONG_MAX)).toEqual([[0n, 0xffff8000], [0xffff8000n, 0x10000]]);
  });

  it('the two-step API ignores the segment boundary (dma_iova_link has none): one contiguous IOVA range across a 4 GiB line', () => {
    const m = smallMachine({ ramBytes: 16 * GiB, iommu: { format: 'x86-64', mode: 'strict' } });
    const dev = m.device('nvme0');
    expect(dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(64)).ok).toBe(true);
    expect(dmaGetSegBoundary(dev)).toBe(0xffffffffn);
    const big = 0x100000000 - 0x1000;
    const p0 = ramAt(m, 1n << 32n, big);
    const p1 = ramAt(m, p0 + BigInt(big) + 0x100000n, 0x2000);
    const state = new DmaIovaState();
    expect(dmaIovaTryAlloc(dev, state, p0, big + 0x2000)).toBe(true);
    expect(dmaIovaLink(dev, state, p0, 0, big, DMA_TO_DEVICE, 0).ok).toBe(true);
    expect(dmaIovaLink(dev, state, p1, big, 0x2000, DMA_TO_DEVICE, 0).ok).toBe(true);
    // the window's bytes big .. big + 0x2000 sit right after entry 0, across the 4 GiB IOVA line
    const at = state.addr + BigInt(big);
    expect((at & ~0xffffffffn) !== ((at + 0x1fffn) & ~0xffffffffn)).toBe(true);
    m.mem.write(p1 + 0x1ffcn, new Uint8Array([9, 8, 7, 6]));
    expect(dev.dmaRead(at + 0x1ffcn, 4)).toEqual({ ok: true, value: new Uint8Array([9, 8, 7, 6]) });
    dmaIovaDestroy(dev, state, big + 0x2000, DMA_TO_DEVICE, 0);
  });
});

describe('AMD v1 FC bit (amdv1pt_iommu_set_prot with PT_FEAT_AMDV1_FORCE_COHERENCE, set by amd/iommu.c)', () => {
  it('a read-only 4 KiB leaf is 0x3000000000001001 (FC | IR | PR), not 0x2000000000001001', () => {
    const mm = new TestMachine();
    const d = createIommu(mm, { format: 'amd-v1', mode: 'strict' }).allocDomain('unmanaged');
    expect(iommuMap(d, 0x1000n, 0x1000n, 0x1000, IOMMU_READ).ok).toBe(true);
    expect(iommuWalk(d, 0x1000n).at(-1)?.pte).toBe(0x3000000000001001n);
    // table entries have no FC
    expect(iommuWalk(d, 0x1000n)[0].pte & (1n << 60n)).toBe(0n);
  });
});

describe('ARM LPAE follows io-pgtable-arm.c, not the generic_pt rules', () => {
  function arm(): { mm: TestMachine; d: IommuDomain } {
    const mm = new TestMachine();
    return { mm, d: createIommu(mm, { format: 'arm-lpae', mode: 'strict' }).allocDomain('unmanaged') };
  }

  it('map(0x1ff000, 0x2000) is two map_pages calls and its unmap two unmap_pages calls (arm_lpae_max_entries), not one each', () => {
    const { mm, d } = arm();
    expect(iommuMap(d, 0x1ff000n, 0x40000000n, 0x2000, RW).ok).toBe(true);
    expect(mm.stats.iommuMapPagesCalls).toBe(2);
    expect(iommuUnmap(d, 0x1ff000n, 0x2000)).toBe(0x2000);
    expect(mm.stats.iommuUnmapPagesCalls).toBe(2);
  });

  it('a partial unmap of a block is refused (WARN_ONCE, returns 0, the block stays), not split or unmapped whole', () => {
    const { mm, d } = arm();
    expect(iommuMap(d, 0x200000n, 0x40200000n, 0x200000, RW).ok).toBe(true);
    expect(iommuUnmap(d, 0x200000n, 0x1000)).toBe(0);
    expect(iommuUnmap(d, 0x3ff000n, 0x1000)).toBe(0);
    const warns = mm.events.list('WARN');
    expect(warns.map((e) => e.message)).toEqual(['Unmap of a partial large IOPTE is not allowed']); // once
    expect(iommuIovaToPhys(d, 0x200123n)).toBe(0x40200123n);
    expect(iommuUnmap(d, 0x200000n, 0x200000)).toBe(0x200000);
  });

  it('a block-sized unmap over a sparse table frees the table and returns the block size, not the bytes up to the first hole', () => {
    const { mm, d } = arm();
    expect(iommuMap(d, 0x200000n, 0x40000000n, 0x1000, RW).ok).toBe(true);
    expect(iommuMap(d, 0x205000n, 0x40005000n, 0x1000, RW).ok).toBe(true);
    expect(d.tablePages).toBe(4);
    expect(iommuUnmap(d, 0x200000n, 0x200000)).toBe(0x200000);
    expect(d.tablePages).toBe(3);
    expect(mm.kernelPagesInUse).toBe(3); // freed at once, not after a sync
    expect(iommuIovaToPhys(d, 0x205000n)).toBe(0n);
    expect(mm.events.count('WARN')).toBe(0);
  });

  it('mapping over a live page is EEXIST with a WARN, not EADDRINUSE', () => {
    const { mm, d } = arm();
    expect(iommuMap(d, 0x5000n, 0x100000n, 0x1000, RW).ok).toBe(true);
    const r = iommuMap(d, 0x5000n, 0x200000n, 0x1000, RW);
    expect(r.ok ? 'ok' : r.errno).toBe('EEXIST');
    expect(mm.events.count('WARN')).toBe(1);
    expect(iommuIovaToPhys(d, 0x5000n)).toBe(0x100000n);
  });

  it('a block mapped over a table holding live pages replaces it (arm_lpae_init_pte -> __arm_lpae_unmap), not EADDRINUSE', () => {
    const { mm, d } = arm();
    expect(iommuMap(d, 0x203000n, 0x7000n, 0x1000, RW).ok).toBe(true);
    expect(iommuTranslate(d, 0x203000n, false)).toMatchObject({ ok: true, phys: 0x7000n }); // cached in the IOTLB
    expect(d.tablePages).toBe(4);
    expect(iommuMap(d, 0x200000n, 0x40200000n, 0x200000, RW).ok).toBe(true);
    expect(d.tablePages).toBe(3);
    expect(mm.kernelPagesInUse).toBe(3);
    expect(iommuIovaToPhys(d, 0x203000n)).toBe(0x40203000n);
    // the walk flush dropped the stale translation of the old page
    expect(iommuTranslate(d, 0x203000n, false)).toMatchObject({ ok: true, phys: 0x40203000n });
    expect(iommuWalk(d, 0x203000n).at(-1)).toMatchObject({ level: 1, kind: 'leaf' });
    expect(mm.events.count('WARN')).toBe(0);
  });

  it('an overlapping map is checked before anything is written: no leaf written, none cleared (no unwind)', () => {
    const { mm, d } = arm();
    expect(iommuMap(d, 0x3000n, 0x100000n, 0x1000, RW).ok).toBe(true);
    const written = mm.stats.iommuLeafPtesWritten;
    const r = iommuMap(d, 0x1000n, 0x201000n, 0x4000, RW); // 0x1000..0x5000, 0x3000 is live
    expect(r.ok ? 'ok' : r.errno).toBe('EEXIST');
    expect(mm.stats.iommuLeafPtesWritten).toBe(written);
    expect(mm.stats.iommuLeafPtesCleared).toBe(0);
    expect(mm.stats.iommuUnmapCalls).toBe(0);
    for (const a of [0x1000n, 0x2000n, 0x4000n]) expect(iommuIovaToPhys(d, a)).toBe(0n);
  });

  it('a map running past the 48-bit input range is ERANGE after mapping what fits (then unwound), not refused up front', () => {
    const { mm, d } = arm();
    const top = 1n << 48n;
    const r = iommuMap(d, top - 0x1000n, 0x100000n, 0x2000, RW);
    expect(r.ok ? 'ok' : r.errno).toBe('ERANGE');
    expect(mm.stats.iommuMapPagesCalls).toBe(2); // the page below the line, then the refused call
    expect(mm.stats.iommuLeafPtesWritten).toBe(1);
    expect(mm.stats.iommuLeafPtesCleared).toBe(1); // iommu_map_nosync's unwind
    expect(mm.events.list('WARN').map((e) => e.message)).toEqual([expect.stringMatching(/beyond the 48-bit input size/)]);
    expect(iommuIovaToPhys(d, top - 0x1000n)).toBe(0n);
    expect(d.tablePages).toBe(4); // the tables the walk installed stay
  });

  it('emptied intermediate tables are kept: unmapping 512 x 1 GiB empties a level-1 table that stays, not freed as generic_pt does', () => {
    const { mm, d } = arm();
    expect(iommuMap(d, 0n, 0n, 2 ** 39, RW).ok).toBe(true); // 512 blocks of 1 GiB: one level-1 table full
    expect(mm.stats.iommuMapPagesCalls).toBe(1);
    expect(d.tablePages).toBe(2);
    // there is no 512 GiB page size, so __arm_lpae_unmap clears the 512 blocks and keeps their table
    expect(iommuUnmap(d, 0n, 2 ** 39)).toBe(2 ** 39);
    expect(d.tablePages).toBe(2);
    expect(mm.kernelPagesInUse).toBe(2);
    expect(dumpTablePage(d, d.rootPfn!).entries.map((e) => e.kind)).toEqual(['table']);
    // a 4 KiB table emptied page by page stays as well; a 2 MiB-sized unmap of it frees it
    expect(iommuMap(d, 0x400000n, 0x40001000n, 0x2000, IOMMU_READ).ok).toBe(true);
    expect(d.tablePages).toBe(4);
    expect(iommuUnmap(d, 0x400000n, 0x1000)).toBe(0x1000);
    expect(iommuUnmap(d, 0x401000n, 0x1000)).toBe(0x1000);
    expect(d.tablePages).toBe(4);
    expect(iommuMap(d, 0x400000n, 0x40001000n, 0x1000, IOMMU_READ).ok).toBe(true);
    expect(iommuUnmap(d, 0x400000n, 0x200000)).toBe(0x200000);
    expect(d.tablePages).toBe(3);
  });

  it('Model deviation: a physical range that starts below 2^48 but runs past it is refused (ERANGE, no WARN), where the kernel checks only its start', () => {
    const { mm, d } = arm();
    const r = iommuMap(d, 0x10000n, (1n << 48n) - 0x1000n, 0x2000, RW);
    expect(r.ok ? 'ok' : r.errno).toBe('ERANGE');
    expect(r.ok ? '' : r.message).toMatch(/exceeds the 48-bit output addresses/);
    expect(mm.stats.iommuLeafPtesWritten).toBe(0);
    expect(mm.events.count('WARN')).toBe(0);
  });

  it('leaf attributes: MMIO without CACHE is 0x180000e4b (AttrIndx DEV, SH=OS), with CACHE 0x180000f4b (arm_lpae_prot_to_pte)', () => {
    const { d } = arm();
    expect(iommuMap(d, 0x10000n, 0x180000000n, 0x1000, RW | IOMMU_MMIO).ok).toBe(true);
    expect(iommuMap(d, 0x11000n, 0x180000000n, 0x1000, RW | IOMMU_MMIO | IOMMU_CACHE).ok).toBe(true);
    const t = dumpTablePage(d, iommuWalk(d, 0x10000n)[3].tablePfn);
    expect(t.entries.map((e) => e.raw)).toEqual([0x180000e4bn, 0x180000f4bn]);
  });
});
