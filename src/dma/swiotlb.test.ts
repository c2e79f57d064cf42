import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { DMA_BIDIRECTIONAL, DMA_BIT_MASK, DMA_FROM_DEVICE, DMA_MAPPING_ERROR, DMA_TO_DEVICE, DMA_ATTR_NO_WARN } from './constants.ts';
import {
  IO_TLB_SEGSIZE, IO_TLB_SIZE, isSwiotlbBuffer, swiotlbMap, swiotlbMaxMappingSize, swiotlbSlotInfo, swiotlbSyncSingleForCpu,
  swiotlbTblMapSingle, swiotlbTblUnmapSingle,
} from './swiotlb.ts';
import { dmaSetMask, dmaSetMinAlignMask } from './mask.ts';
import { GiB, KiB, MiB } from '../base/index.ts';
import { pattern, ramAt, smallMachine } from '../../test/fixtures/dma-machines.ts';

describe('swiotlb slot allocator (kernel/dma/swiotlb.c: swiotlb_find_slots, swiotlb_tbl_map_single)', () => {
  it('pool comes from machine RAM and has 2 KiB slots in 128-slot segments', () => {
    const m = smallMachine();
    const p = m.swiotlb!;
    expect(p.nslabs).toBe((4 * MiB) / IO_TLB_SIZE);
    expect(m.regionAt(p.start)?.kind).toBe('ram');
    expect(p.list[0]).toBe(IO_TLB_SEGSIZE);
    expect(p.list[127]).toBe(1);
    expect(p.list[128]).toBe(IO_TLB_SEGSIZE);
  });

  it('property: bounce & min_align_mask == orig & min_align_mask; no 128-slot segment crossed; free counts restored', () => {
    const m = smallMachine({ swiotlb: { bytes: 1 * MiB } });
    const dev = m.device('nvme0');
    const pool = m.swiotlb!;
    const base = ramAt(m, 1n << 32n, 64 * MiB);
    const listBefore = pool.list.slice();
    fc.assert(fc.property(
      fc.constantFrom(0, 0x7ff, 0xfff, 0x3fff),
      fc.constantFrom(0, 0xfff),
      fc.array(fc.record({ off: fc.integer({ min: 0, max: 8 * MiB }), len: fc.integer({ min: 1, max: 200 * KiB }) }), { minLength: 1, maxLength: 12 }),
      (minAlign, allocAlign, reqs) => {
        dmaSetMinAlignMask(dev, minAlign);
        const live: Array<{ tlb: bigint; len: number }> = [];
        for (const { off, len } of reqs) {
          const orig = base + BigInt(off);
          const tlb = swiotlbTblMapSingle(dev, orig, len, allocAlign, DMA_TO_DEVICE, DMA_ATTR_NO_WARN);
          if (tlb === DMA_MAPPING_ERROR) continue;
          expect(tlb & BigInt(minAlign)).toBe(orig & BigInt(minAlign));
          if (allocAlign) expect((tlb - pool.start) & BigInt(allocAlign) ^ (orig & BigInt(allocAlign & minAlign))).toBe(0n);
          const first = pool.slotOf(tlb);
          const last = pool.slotOf(tlb + BigInt(len - 1));
          expect(Math.floor(first / IO_TLB_SEGSIZE)).toBe(Math.floor(last / IO_TLB_SEGSIZE));
          live.push({ tlb, len });
        }
        // brute-force: live allocations' slot ranges never overlap
        const owner = new Map<number, number>();
        live.forEach(({ tlb, len }, k) => {
          for (let s = pool.slotOf(tlb); s <= pool.slotOf(tlb + BigInt(len - 1)); s++) {
            expect(owner.has(s)).toBe(false);
            owner.set(s, k);
          }
        });
        for (const { tlb, len } of live.reverse()) swiotlbTblUnmapSingle(dev, tlb, len, DMA_TO_DEVICE, 0);
        expect(pool.used).toBe(0);
        expect(pool.list).toEqual(listBefore);
      }), { numRuns: 60 });
    expect(m.events.list('WARN').map((e) => e.message).slice(0, 3)).toEqual([]);
  });

  it('max mapping size 256 KiB, 252 KiB with min_align_mask 4095; they fit and one slot more does not', () => {
    const m = smallMachine();
    const dev = m.device('nvme0');
    const orig = ramAt(m, 1n << 32n, MiB) + 0xabcn;
    expect(swiotlbMaxMappingSize(dev)).toBe(256 * KiB);
    let t = swiotlbTblMapSingle(dev, orig - 0xabcn, 256 * KiB, 0, DMA_TO_DEVICE, 0);
    expect(t).not.toBe(DMA_MAPPING_ERROR);
    swiotlbTblUnmapSingle(dev, t, 256 * KiB, DMA_TO_DEVICE, 0);
    expect(swiotlbTblMapSingle(dev, orig - 0xabcn, 256 * KiB + 1, 0, DMA_TO_DEVICE, DMA_ATTR_NO_WARN)).toBe(DMA_MAPPING_ERROR);
    dmaSetMinAlignMask(dev, 4095);
    expect(swiotlbMaxMappingSize(dev)).toBe(252 * KiB);
    t = swiotlbTblMapSingle(dev, orig, 252 * KiB, 0, DMA_TO_DEVICE, 0);
    expect(t).not.toBe(DMA_MAPPING_ERROR);
    expect(t & 0xfffn).toBe(0xabcn);
    swiotlbTblUnmapSingle(dev, t, 252 * KiB, DMA_TO_DEVICE, 0);
  });

  it('exhaustion is an error with a warning line, and nothing leaks', () => {
    const m = smallMachine({ swiotlb: { bytes: 1 * MiB } });
    const dev = m.device('nvme0');
    const pool = m.swiotlb!;
    const base = ramAt(m, 1n << 32n, 8 * MiB);
    const got: bigint[] = [];
    for (let i = 0; i < 5; i++) got.push(swiotlbTblMapSingle(dev, base + BigInt(i) * 256n * 1024n, 256 * KiB, 0, DMA_TO_DEVICE, 0));
    expect(got.slice(0, 4).every((t) => t !== DMA_MAPPING_ERROR)).toBe(true);
    expect(got[4]).toBe(DMA_MAPPING_ERROR);
    // dev_warn_ratelimited: a KERN_WARNING line (INFO, level warning), not a WARN()
    expect(m.events.count('WARN')).toBe(0);
    const full = m.events.list('INFO', 'swiotlb').at(-1);
    expect(full?.message).toMatch(/swiotlb buffer is full \(sz: 262144 bytes\), total 512 \(slots\), used 512 \(slots\)/);
    expect(full?.data?.level).toBe('warning');
    for (const t of got.slice(0, 4)) swiotlbTblUnmapSingle(dev, t, 256 * KiB, DMA_TO_DEVICE, 0);
    expect(pool.used).toBe(0);
    expect(got.slice(0, 4).some((t) => isSwiotlbBuffer(dev, t))).toBe(true);
  });

  it('copy-in always at map; copy-out only for FROM_DEVICE / BIDIRECTIONAL at unmap and sync', () => {
    const m = smallMachine();
    const dev = m.device('nvme0');
    const orig = ramAt(m, 1n << 32n, MiB);
    const len = 5000;
    for (const dir of [DMA_TO_DEVICE, DMA_FROM_DEVICE, DMA_BIDIRECTIONAL]) {
      const before = pattern(len, dir + 1);
      m.mem.write(orig, before);
      const tlb = swiotlbTblMapSingle(dev, orig, len, 0, dir, 0);
      expect(m.mem.read(tlb, len)).toEqual(before); // copy-in whatever dir
      const devData = pattern(len, dir + 10);
      m.mem.write(tlb, devData); // the device writes the bounce buffer
      swiotlbSyncSingleForCpu(dev, tlb, len, dir === DMA_TO_DEVICE ? DMA_TO_DEVICE : dir);
      const expected = dir === DMA_TO_DEVICE ? before : devData;
      expect(m.mem.read(orig, len)).toEqual(expected);
      m.mem.write(tlb, pattern(len, dir + 20));
      swiotlbTblUnmapSingle(dev, tlb, len, dir, 0);
      expect(m.mem.read(orig, len)).toEqual(dir === DMA_TO_DEVICE ? before : pattern(len, dir + 20));
    }
    expect(m.stats.swiotlbMaps).toBe(3);
  });

  it('pad slots record alloc_size like the data slots (swiotlb_search_pool_area), and unmap frees them all', () => {
    const m = smallMachine();
    const dev = m.device('nvme0');
    dmaSetMinAlignMask(dev, 0xfff);
    const orig = ramAt(m, 1n << 32n, MiB) + 0xa34n;
    // offset 0xa34 & 0xfff keeps 0xa34: one pad slot, then 0x234 into the first data slot; 8 KiB in all
    const tlb = swiotlbTblMapSingle(dev, orig, 5000, 0xfff, DMA_TO_DEVICE, 0);
    expect(tlb & 0xfffn).toBe(0xa34n);
    const pad = swiotlbSlotInfo(dev, tlb - 0x800n)!;
    expect([pad.inUse, pad.allocSize]).toEqual([false, 8192 - 0x234]);
    expect(swiotlbSlotInfo(dev, tlb)!.allocSize).toBe(8192 - 0x234 - IO_TLB_SIZE);
    expect(m.swiotlb!.used).toBe(4);
    swiotlbTblUnmapSingle(dev, tlb, 5000, DMA_TO_DEVICE, 0);
    expect(m.swiotlb!.used).toBe(0);
    expect(swiotlbSlotInfo(dev, tlb - 0x800n)!.allocSize).toBe(0);
  });

  it('unmap of an address inside a mapping frees from its slot to the mapping\'s end (swiotlb_release_slots)', () => {
    const m = smallMachine({ dmaDebug: { enabled: false } });
    const dev = m.device('nvme0');
    const tlb = swiotlbTblMapSingle(dev, ramAt(m, 1n << 32n, MiB), 8192, 0, DMA_TO_DEVICE, 0);
    const pool = m.swiotlb!;
    expect(pool.used).toBe(4);
    swiotlbTblUnmapSingle(dev, tlb + 4096n, 4096, DMA_TO_DEVICE, 0);
    expect(pool.used).toBe(2); // slots 2 and 3 freed, silently
    expect(m.events.count('WARN')).toBe(0);
    expect(swiotlbSlotInfo(dev, tlb + 4096n)!.inUse).toBe(false);
    expect(swiotlbSlotInfo(dev, tlb)!.inUse).toBe(true);
    // a slot already free is refused with a WARN (the kernel would corrupt its free list)
    swiotlbTblUnmapSingle(dev, tlb + 4096n, 4096, DMA_TO_DEVICE, 0);
    expect(pool.used).toBe(2);
    expect(m.events.list('WARN').map((e) => e.message)).toEqual([expect.stringMatching(/not a mapped bounce buffer/)]);
  });

  it('the first bounce clears dma_skip_sync', () => {
    const m = smallMachine();
    const dev = m.device('nvme0');
    expect(dev.dmaSkipSync).toBe(true);
    const t = swiotlbTblMapSingle(dev, ramAt(m, 1n << 32n, MiB), 4096, 0, DMA_TO_DEVICE, 0);
    expect(dev.dmaSkipSync).toBe(false);
    swiotlbTblUnmapSingle(dev, t, 4096, DMA_TO_DEVICE, 0);
  });

  it('a machine without swiotlb refuses to bounce, with a warning line (dev_warn_ratelimited), not a WARN', () => {
    const m = smallMachine({ swiotlb: false, ramBytes: 2 * GiB });
    expect(m.swiotlb).toBeNull();
    expect(swiotlbTblMapSingle(m.device('nvme0'), 0x100000n, 4096, 0, DMA_TO_DEVICE, 0)).toBe(DMA_MAPPING_ERROR);
    expect(m.events.count('WARN')).toBe(0);
    expect(m.events.list('INFO', 'swiotlb').map((e) => [e.message, e.data?.level])).toEqual([
      [expect.stringMatching(/nvme0: Can not allocate SWIOTLB buffer earlier/), 'warning'],
    ]);
  });

  it('swiotlb_map: a bounce buffer the device cannot reach is freed again with one WARN per boot (dev_WARN_ONCE)', () => {
    const m = smallMachine(); // the pool sits just below 3 GiB
    const dev = m.device('nvme0');
    expect(dmaSetMask(dev, DMA_BIT_MASK(30)).ok).toBe(true);
    const phys = ramAt(m, 1n << 32n, MiB);
    for (let i = 0; i < 3; i++) expect(swiotlbMap(dev, phys, 4096, DMA_TO_DEVICE, 0)).toBe(DMA_MAPPING_ERROR);
    expect(m.swiotlb!.used).toBe(0);
    expect(m.events.list('WARN').map((e) => e.message)).toEqual([expect.stringMatching(/nvme0: swiotlb addr 0x[0-9a-f]+\+4096 overflow/)]);
  });
});
