// Tests for core.ts: map/unmap errors and unwinding, gathers and the IOTLB, iommu_map_sg, default domains.
import { describe, expect, it } from 'vitest';
import { Device } from '../pci/index.ts';
import type { Range, RangeSource } from '../phyr/index.ts';
import {
  createIommu, iommuFlushIotlbAll, iommuGetDmaDomain, iommuGetDomainForDev, iommuIotlbGatherAddPage, IommuIotlbGather,
  iommuIotlbSync, iommuIovaToPhys, iommuMap, iommuMapNosync, iommuMapSg, iommuTranslate, iommuUnmap, iommuUnmapFast,
  IOMMU_READ, IOMMU_WRITE, type IommuConfig,
} from './internal.ts';
import { TestMachine } from '../../test/fixtures/iommu-machine.ts';

const RW = IOMMU_READ | IOMMU_WRITE;

function setup(cfg: Partial<IommuConfig> = {}) {
  const mm = new TestMachine();
  const iommu = createIommu(mm, { format: 'x86-64', mode: 'strict', ...cfg });
  const d = iommu.allocDomain('unmanaged');
  return { mm, iommu, d };
}

function src(ranges: Array<[bigint, number]>): RangeSource {
  const list: Range[] = ranges.map(([addr, len]) => ({ addr, len, flags: 0 }));
  return {
    layout: 'phyr', count: list.length, totalLen: list.reduce((s, r) => s + r.len, 0), kernelBytes: 16 * list.length,
    addrFitsNumber: true, [Symbol.iterator]: () => list[Symbol.iterator](),
    cursor: () => { throw new Error('not used'); },
  };
}

describe('iommuMap / iommuUnmap errors and unwinding', () => {
  it('unaligned input is ENXIO (generic_pt map_range) and maps nothing', () => {
    const { mm, d } = setup();
    for (const [iova, pa, size] of [[0x1001n, 0n, 4096], [0x1000n, 0x10n, 4096], [0x1000n, 0n, 4095]] as const) {
      const r = iommuMap(d, iova, pa, size, RW);
      expect(r.ok ? 'ok' : r.errno).toBe('ENXIO');
    }
    expect(mm.stats.iommuLeafPtesWritten).toBe(0);
    expect(iommuUnmap(d, 0x1001n, 4096)).toBe(0);
  });
  it('size 0 is EINVAL on generic_pt formats (make_range_ul refuses len 0, before any alignment test), ok on ARM LPAE', () => {
    for (const format of ['x86-64', 'vtd-ss', 'amd-v1'] as const) {
      const { d } = setup({ format });
      for (const iova of [0x10000n, 0x10200n]) {
        const r = iommuMapNosync(d, iova, 0x200000n, 0, RW);
        expect(r.ok ? 'ok' : r.errno).toBe('EINVAL');
        expect(r.ok ? '' : r.message).toMatch(/zero length/);
      }
      expect(iommuMap(d, 0x10000n, 0x200000n, 0, RW).ok).toBe(false);
    }
    const { d } = setup({ format: 'arm-lpae' });
    expect(iommuMapNosync(d, 0x10000n, 0x200000n, 0, RW).ok).toBe(true);
    const u = iommuMapNosync(d, 0x10200n, 0x200000n, 0, RW); // __iommu_map_domain_pgtbl's alignment test
    expect(u.ok ? 'ok' : u.errno).toBe('EINVAL');
  });
  it('generic_pt map_range tests prot, the output address and make_range before alignment: EINVAL (WARN), ERANGE, EOVERFLOW win over ENXIO', () => {
    for (const format of ['x86-64', 'vtd-ss', 'amd-v1'] as const) {
      const { mm, d } = setup({ format });
      const cases: Array<[bigint, bigint, number, number, string]> = [
        [0x1800n, 0n, 0x1000, 0, 'EINVAL'], // prot first, with the WARN
        [0x1000n, 1n << 52n, 0x1800, RW, 'ERANGE'], // paddr beyond the output bits
        [(1n << 64n) - 0x1000n, 0n, 0x1800, RW, 'EOVERFLOW'], // make_range: iova + len - 1 wraps
        [(1n << 64n) - 0x1000n, 0n, 0x2000, 0, 'EINVAL'], // prot before the wrap
        [0x1800n, 0n, 0x1000, RW, 'ENXIO'],
      ];
      for (const [iova, pa, size, prot, errno] of cases) {
        const r = iommuMapNosync(d, iova, pa, size, prot);
        expect(r.ok ? 'ok' : r.errno, `${format} ${iova.toString(16)} ${size.toString(16)} ${prot}`).toBe(errno);
      }
      expect(mm.events.count('WARN')).toBe(2);
    }
  });
  it('iova_to_phys above the input size: 0 on generic_pt, the alias below 2^48 on ARM LPAE (ARM_LPAE_LVL_IDX masks the index)', () => {
    const x86 = setup().d;
    expect(iommuMap(x86, 0x1000n, 0x40001000n, 0x1000, RW).ok).toBe(true);
    expect(iommuIovaToPhys(x86, (1n << 48n) + 0x1234n)).toBe(0n);
    const { d } = setup({ format: 'arm-lpae' });
    expect(iommuMap(d, 0x1000n, 0x40001000n, 0x1000, RW).ok).toBe(true);
    expect(iommuMap(d, 0x200000n, 0x40200000n, 0x200000, RW).ok).toBe(true);
    expect(iommuIovaToPhys(d, (1n << 48n) + 0x1234n)).toBe(0x40001234n);
    expect(iommuIovaToPhys(d, (0xabn << 52n) + 0x2f0123n)).toBe(0x402f0123n);
    expect(iommuIovaToPhys(d, (1n << 48n) + 0x5000n)).toBe(0n);
  });
  it('ARM LPAE: a map that wraps 2^64 is the ERANGE with a WARN of arm_lpae_map_pages (io-pgtable has no wrap test), not EOVERFLOW', () => {
    const { mm, d } = setup({ format: 'arm-lpae' });
    const r = iommuMapNosync(d, (1n << 64n) - 0x1000n, 0n, 0x2000, RW);
    expect(r.ok ? 'ok' : r.errno).toBe('ERANGE');
    expect(mm.events.list('WARN').map((e) => e.message)).toEqual([expect.stringMatching(/beyond the 48-bit input size/)]);
  });
  it('generic_pt refuses a map running past the IOVA space up front (check_map_range): no table allocated, nothing written', () => {
    for (const [format, top] of [['x86-64', 1n << 47n], ['vtd-ss', 1n << 48n], ['amd-v1', 1n << 48n]] as const) {
      const { mm, d } = setup({ format });
      const r = iommuMapNosync(d, top - 0x201000n, 0x1ff000n, 0x202000, RW);
      expect(r.ok ? 'ok' : r.errno).toBe('ERANGE');
      expect([d.tablePages, mm.stats.iommuLeafPtesWritten, mm.stats.iommuUnmapCalls]).toEqual([1, 0, 0]);
    }
  });
  it('prot without READ or WRITE is EINVAL with a WARN', () => {
    const { mm, d } = setup();
    const r = iommuMap(d, 0x1000n, 0x1000n, 4096, 0);
    expect(r.ok ? 'ok' : r.errno).toBe('EINVAL');
    expect(mm.events.count('WARN')).toBe(1);
  });
  it('misuse of the TS API throws, naming the argument', () => {
    const { d } = setup();
    expect(() => iommuMap(d, 4096 as unknown as bigint, 0n, 4096, RW)).toThrow(/iova must be a bigint address, got number 4096/);
    expect(() => iommuMap(d, 0n, -1n, 4096, RW)).toThrow(/paddr must be >= 0/);
    expect(() => iommuMap(d, 0n, 0n, -4096, RW)).toThrow(/size must be a safe integer >= 0, got -4096/);
  });
  it('mapping over an existing mapping is EADDRINUSE and the partial map is unrolled', () => {
    const { mm, d } = setup();
    expect(iommuMap(d, 0x5000n, 0x100000n, 4096, RW).ok).toBe(true);
    const r = iommuMap(d, 0x1000n, 0x200000n, 0x8000, RW); // 0x1000..0x9000 collides at 0x5000
    expect(r.ok ? 'ok' : r.errno).toBe('EADDRINUSE');
    expect(r.ok ? '' : r.message).toMatch(/pa 0x200000 size 0x8000 failed after 0x4000 bytes: something is already mapped at or after iova 0x5000/);
    for (let a = 0x1000n; a < 0x9000n; a += 0x1000n) expect(iommuIovaToPhys(d, a)).toBe(a === 0x5000n ? 0x100000n : 0n);
    expect(mm.stats.iommuLeafPtesCleared).toBe(4);
  });
  it('a table allocation failure is ENOMEM and unrolls what was mapped', () => {
    const { mm, d } = setup();
    mm.failAfter = 3; // PDPT, PD, PT for the first 2 MiB; the next PT fails
    const r = iommuMap(d, 0x1ff000n, 0x1000000n, 0x3000, RW);
    expect(r.ok ? 'ok' : r.errno).toBe('ENOMEM');
    expect(iommuIovaToPhys(d, 0x1ff000n)).toBe(0n);
    expect(mm.stats.iommuLeafPtesWritten).toBe(1);
    expect(mm.stats.iommuLeafPtesCleared).toBe(1);
  });
  it('blocked and identity domains are not paging: map is EINVAL, iovaToPhys follows the type', () => {
    const { iommu } = setup();
    const id = iommu.allocDomain('identity');
    const bl = iommu.allocDomain('blocked');
    expect(iommuMap(id, 0n, 0n, 4096, RW).ok).toBe(false);
    expect(iommuIovaToPhys(id, 0x1234n)).toBe(0x1234n);
    expect(iommuIovaToPhys(bl, 0x1234n)).toBe(0n);
    expect(iommuTranslate(bl, 0x1000n, false)).toEqual({ ok: false, reason: 'blocked domain' });
    expect(iommuTranslate(id, 0x1000n, true)).toMatchObject({ ok: true, phys: 0x1000n });
    expect(id.tablePages + bl.tablePages).toBe(0);
  });
  it('unmap stops at a hole and returns what it did unmap; an unmap ending inside a 2 MiB leaf removes it whole', () => {
    const { d } = setup();
    expect(iommuMap(d, 0x1000n, 0x1000n, 0x2000, RW).ok).toBe(true);
    expect(iommuUnmap(d, 0x1000n, 0x4000)).toBe(0x2000);
    expect(iommuMap(d, 0x200000n, 0x200000n, 0x200000, RW).ok).toBe(true);
    expect(iommuUnmap(d, 0x200000n, 0x1000)).toBe(0x200000);
    expect(iommuIovaToPhys(d, 0x3ff000n)).toBe(0n);
  });
  it('generic_pt unmap has no granule check (__iommu_unmap -> unmap_range): a ragged size takes the last byte\'s page, an iova inside a page unmaps nothing', () => {
    for (const format of ['x86-64', 'vtd-ss', 'amd-v1'] as const) {
      const { mm, d } = setup({ format });
      expect(iommuMap(d, 0x10000n, 0x100000n, 0x3000, RW).ok).toBe(true);
      expect(iommuUnmap(d, 0x10800n, 0x1000)).toBe(0); // starts inside a leaf: -EINVAL in the walk
      expect(iommuUnmap(d, 0x10000n, 0x1800)).toBe(0x2000); // [0x10000, 0x117ff] covers two leaves
      expect(iommuIovaToPhys(d, 0x12000n)).toBe(0x102000n);
      expect(mm.events.count('INFO')).toBe(0); // no "unaligned" message on this path
    }
    // io-pgtable (ARM LPAE) still goes through __iommu_unmap_domain_pgtbl's alignment check
    const { mm, d } = setup({ format: 'arm-lpae' });
    expect(iommuMap(d, 0x10000n, 0x100000n, 0x2000, RW).ok).toBe(true);
    expect(iommuUnmap(d, 0x10000n, 0x1800)).toBe(0);
    expect(mm.events.list('INFO').map((e) => e.message)).toEqual([expect.stringMatching(/^unaligned: iova 0x10000 size 0x1800/)]);
  });
  it('generic_pt unmap of a range running past the IOVA space unmaps nothing (make_range -> pt_check_range)', () => {
    const { d } = setup();
    const top = 1n << 47n;
    expect(iommuMap(d, top - 0x201000n, 0x1ff000n, 0x201000, RW).ok).toBe(true);
    expect(iommuUnmap(d, top - 0x201000n, 0x202000)).toBe(0);
    expect(iommuIovaToPhys(d, top - 0x201000n)).toBe(0x1ff000n);
    expect(iommuUnmap(d, top - 0x201000n, 0x201000)).toBe(0x201000);
  });
});

describe('IOTLB and gather', () => {
  it('a stale IOTLB entry keeps translating until the sync, then the access faults', () => {
    const { mm, d } = setup();
    expect(iommuMap(d, 0x10000n, 0x777000n, 4096, RW).ok).toBe(true);
    expect(iommuTranslate(d, 0x10010n, true)).toEqual({ ok: true, phys: 0x777010n, prot: RW });
    expect(mm.stats.iotlbMisses).toBe(1);
    const g = new IommuIotlbGather();
    expect(iommuUnmapFast(d, 0x10000n, 4096, g)).toBe(4096);
    expect(iommuIovaToPhys(d, 0x10000n)).toBe(0n);
    expect(iommuTranslate(d, 0x10020n, false)).toMatchObject({ ok: true, phys: 0x777020n });
    expect(mm.stats.iotlbHits).toBe(1);
    iommuIotlbSync(d, g);
    expect(mm.stats.iotlbRangeInvalidations).toBe(1);
    expect(iommuTranslate(d, 0x10020n, false)).toMatchObject({ ok: false });
  });
  it('a global flush also ends staleness; permissions come from the leaf', () => {
    const { d } = setup();
    expect(iommuMap(d, 0x20000n, 0x5000n, 4096, IOMMU_READ).ok).toBe(true);
    expect(iommuTranslate(d, 0x20000n, true)).toMatchObject({ ok: false, reason: expect.stringMatching(/read-only/) });
    expect(iommuTranslate(d, 0x20000n, false).ok).toBe(true);
    const g = new IommuIotlbGather();
    iommuUnmapFast(d, 0x20000n, 4096, g);
    expect(iommuTranslate(d, 0x20000n, false).ok).toBe(true);
    iommuFlushIotlbAll(d);
    expect(iommuTranslate(d, 0x20000n, false).ok).toBe(false);
  });
  it('add_page syncs on a disjoint range or a page-size change, and merges adjacent ranges', () => {
    const { mm, d } = setup();
    const g = new IommuIotlbGather();
    iommuIotlbGatherAddPage(d, g, 0x1000n, 4096);
    iommuIotlbGatherAddPage(d, g, 0x2000n, 4096); // adjacent: merged
    expect(mm.stats.iotlbRangeInvalidations).toBe(0);
    expect([g.start, g.end]).toEqual([0x1000n, 0x2fffn]);
    iommuIotlbGatherAddPage(d, g, 0x9000n, 4096); // disjoint: sync first
    expect(mm.stats.iotlbRangeInvalidations).toBe(1);
    expect([g.start, g.end]).toEqual([0x9000n, 0x9fffn]);
    iommuIotlbGatherAddPage(d, g, 0xa000n, 0x200000); // pgsize change: sync first
    expect(mm.stats.iotlbRangeInvalidations).toBe(2);
    expect([g.start, g.end, g.pgsize]).toEqual([0xa000n, 0x209fffn, 0x200000]);
  });
  it('only the invalidated range leaves the IOTLB', () => {
    const { d } = setup();
    expect(iommuMap(d, 0x100000n, 0x100000n, 0x4000, RW).ok).toBe(true);
    for (let a = 0x100000n; a < 0x104000n; a += 0x1000n) iommuTranslate(d, a, false);
    expect(d.iotlb.size).toBe(4);
    const g = new IommuIotlbGather();
    iommuUnmapFast(d, 0x101000n, 0x1000, g);
    iommuIotlbSync(d, g);
    expect(d.iotlb.entries().map((e) => e.leafIovaPfn).sort()).toEqual([0x100, 0x102, 0x103]);
  });
  it('a map whose leaves replace empty tables at two sizes flushes once, at the end of map_range', () => {
    const { mm, d } = setup();
    for (const a of [0n, 0x40000000n]) {
      expect(iommuMap(d, a, 0x100000n, 0x1000, RW).ok).toBe(true);
      expect(iommuUnmap(d, a, 0x1000)).toBe(0x1000); // the emptied tables stay
    }
    expect(d.tablePages).toBe(6);
    const inv = mm.stats.iotlbRangeInvalidations;
    // a 1 GiB leaf over the first level-1 table, then a 2 MiB leaf over the second 4 KiB table
    expect(iommuMap(d, 0n, 0n, 0x40200000, RW).ok).toBe(true);
    expect(mm.stats.iotlbRangeInvalidations - inv).toBe(1);
    expect(d.tablePages).toBe(3);
    expect(iommuIovaToPhys(d, 0x40123456n)).toBe(0x40123456n);
  });
  it('generic_pt gathers [iova, iova + unmapped), not the range asked for (gather_range_pages), and nothing when queued', () => {
    const { mm, d } = setup();
    expect(iommuMap(d, 0x10000n, 0x100000n, 0x1000, RW).ok).toBe(true);
    let g = new IommuIotlbGather();
    expect(iommuUnmapFast(d, 0x10000n, 0x3000, g)).toBe(0x1000); // stops at the hole
    expect([g.start, g.end]).toEqual([0x10000n, 0x10fffn]);
    // a 2 MiB leaf unmapped by a 4 KiB request: the whole leaf is gathered, and its IOTLB entry goes
    expect(iommuMap(d, 0x200000n, 0x400000n, 0x200000, RW).ok).toBe(true);
    iommuTranslate(d, 0x3ff000n, false);
    g = new IommuIotlbGather();
    expect(iommuUnmapFast(d, 0x200000n, 0x1000, g)).toBe(0x200000);
    expect([g.start, g.end]).toEqual([0x200000n, 0x3fffffn]);
    iommuIotlbSync(d, g);
    expect(d.iotlb.size).toBe(0);
    // nothing unmapped: iommu_iotlb_gather_add_range(iova, 0) leaves end below start (no invalidation)
    g = new IommuIotlbGather();
    const inv = mm.stats.iotlbRangeInvalidations;
    expect(iommuUnmapFast(d, 0x5000n, 0x1000, g)).toBe(0);
    expect([g.start, g.end]).toEqual([0x5000n, 0x4fffn]);
    iommuIotlbSync(d, g);
    expect(mm.stats.iotlbRangeInvalidations).toBe(inv);
    // a queued gather (flush queue) gets the unlinked tables but no range: the queue flushes all
    expect(iommuMap(d, 0x600000n, 0x100000n, 0x200000, RW).ok).toBe(true);
    g = new IommuIotlbGather();
    g.queued = true;
    expect(iommuUnmapFast(d, 0x600000n, 0x200000, g)).toBe(0x200000);
    expect([g.start, g.end, g.freelist.length]).toEqual([(1n << 64n) - 1n, 0n, 1]);
  });
});

describe('iommuMapSg', () => {
  it('coalesces contiguous ranges, skips bus addresses, maps back to back', () => {
    const { mm, d } = setup();
    const before = mm.stats.iommuMapCalls;
    const r = iommuMapSg(d, 0x400000n, src([[0x10000n, 0x1000], [0x11000n, 0x2000], [0x90000000n, 0x1000], [0x50000n, 0x1000]]), RW,
      (i) => i === 2);
    expect(r).toEqual({ ok: true, value: 0x4000 });
    expect(mm.stats.iommuMapCalls - before).toBe(2);
    expect(iommuIovaToPhys(d, 0x402000n)).toBe(0x12000n);
    expect(iommuIovaToPhys(d, 0x403000n)).toBe(0x50000n);
  });
  it('a last bus-address entry that continues the run leaves the run unmapped (iommu_map_sg re-reads the last entry)', () => {
    const { mm, d } = setup();
    const before = mm.stats.iommuMapCalls;
    const r = iommuMapSg(d, 0x400000n, src([[0x10000n, 0x2000], [0x12000n, 0x1000]]), RW, (i) => i === 1);
    expect(r).toEqual({ ok: true, value: 0 });
    expect(mm.stats.iommuMapCalls - before).toBe(0);
    expect(iommuIovaToPhys(d, 0x400000n)).toBe(0n);
    // one byte further on, the bus entry ends the run, which is mapped
    expect(iommuMapSg(d, 0x400000n, src([[0x10000n, 0x2000], [0x12001n, 0x1000]]), RW, (i) => i === 1)).toEqual({ ok: true, value: 0x2000 });
  });
  it('unmaps everything it mapped when a later range fails', () => {
    const { d } = setup();
    const r = iommuMapSg(d, 0x400000n, src([[0x10000n, 0x1000], [0x50001n, 0x1000]]), RW);
    expect(r.ok ? 'ok' : r.errno).toBe('ENXIO');
    expect(iommuIovaToPhys(d, 0x400000n)).toBe(0n);
  });
});

describe('default domains', () => {
  it('follow the mode; untrusted devices always get strict DMA', () => {
    const mm = new TestMachine();
    const lazy = createIommu(mm, { format: 'x86-64', mode: 'lazy' });
    const a = new Device('nvme0'), b = new Device('tbt0');
    b.untrusted = true;
    expect(lazy.probeDevice(a).type).toBe('dma-fq');
    expect(lazy.probeDevice(b).type).toBe('dma');
    expect(a.dmaIommu && b.dmaIommu).toBe(true);
    expect(iommuGetDmaDomain(a)).toBe(iommuGetDomainForDev(a));
    const pt = createIommu(mm, { format: 'x86-64', mode: 'passthrough' });
    const c = new Device('nic0');
    expect(pt.probeDevice(c).type).toBe('identity');
    expect(c.dmaIommu).toBe(false);
    const u = pt.allocDomain('unmanaged');
    pt.attachDevice(c, u);
    expect(iommuGetDomainForDev(c)).toBe(u);
    expect(iommuGetDmaDomain(c)?.type).toBe('identity');
  });
  it('freeing a domain gives every table page back', () => {
    const { mm, iommu, d } = setup();
    expect(iommuMapNosync(d, 0x7000000000n, 0x1000n, 0x10000, RW).ok).toBe(true);
    expect(mm.kernelPagesInUse).toBe(4);
    iommu.freeDomain(d);
    expect(mm.kernelPagesInUse).toBe(0);
    expect(mm.stats.iommuTablePagesFreed).toBe(mm.stats.iommuTablePagesAllocated);
  });
});
