import { describe, expect, it } from 'vitest';
import { Device } from '../pci/index.ts';
import {
  createIommu, iommuDmaAllocIova, iommuDmaFlushQueueFlush, iommuDmaFlushQueueTick, iommuDmaFreeIova, IommuIotlbGather,
  iommuMap, iommuTranslate, iommuUnmapFast, iovaRcacheRange, IOMMU_READ, IovaDomain, type IommuConfig,
} from './internal.ts';
import { TestMachine } from '../../test/fixtures/iommu-machine.ts';

const M64 = (1n << 64n) - 1n;
const M32 = 0xffffffffn;

function setup(cfg: Partial<IommuConfig> = {}, type: 'dma' | 'dma-fq' = 'dma') {
  const mm = new TestMachine();
  const iommu = createIommu(mm, { format: 'x86-64', mode: 'strict', ...cfg });
  const d = iommu.allocDomain(type);
  const dev = new Device('nvme0');
  return { mm, iommu, d, dev };
}

describe('IovaDomain (alloc_iova)', () => {
  it('allocates top-down, size-aligned, never frame 0', () => {
    const mm = new TestMachine();
    const iovad = new IovaDomain(4096, 0n, mm.stats, mm.events);
    expect(iovad.startPfn).toBe(1n);
    expect(iovad.allocIova(1, 0xff, true)).toBe(0xff);
    expect(iovad.allocIova(3, 0xff, true)).toBe(0xfc); // aligned to 4, below 0xff
    expect(iovad.allocIova(4, 0xff, true)).toBe(0xf8);
    expect(iovad.allocIova(0xf0, 0xff, true)).toBe(0); // needs 256-alignment: only frame 0 would do
    // max32_alloc_size: a 32-bit request at least as big as a failed one fails at once
    expect(iovad.max32AllocSize).toBe(0xf0);
    expect(iovad.allocIova(0xf7, 0xff, false)).toBe(0);
    expect(iovad.allocIova(0xef, 0xff, false)).toBe(9);
    expect(iovad.allocIova(8, 0xff, false)).toBe(1);
    expect(iovad.allocIova(1, 0xff, true)).toBe(0);
    // a hole above the cached node is found again by the retry from the limit
    expect(iovad.freeIova(0xfd)).toBe(true);
    expect(iovad.allocIova(2, 0xff, true)).toBe(0xfc);
  });
  it('reserved ranges are never handed out', () => {
    const mm = new TestMachine();
    const iovad = new IovaDomain(4096, 1n, mm.stats, mm.events);
    iovad.reserveIova(0x10n, 0x1fn);
    const got: number[] = [];
    for (;;) {
      const p = iovad.allocIova(1, 0x3f, true);
      if (p === 0) break;
      got.push(p);
    }
    expect(got.length).toBe(0x3f - 16);
    expect(got.some((p) => p >= 0x10 && p <= 0x1f)).toBe(false);
  });
});

describe('IovaDomain: 32-bit requests (iova.c: alloc_iova() passes limit_pfn + 1)', () => {
  it('an inclusive limit of exactly dma_32bit_pfn searches from the 64-bit cached node', () => {
    const mm = new TestMachine();
    const iovad = new IovaDomain(4096, 1n, mm.stats, mm.events);
    expect(iovad.allocIovaFast(1, 0xfffff, false)).toBe(0xfffff); // 32-bit: cached32 node
    // limit + 1 = 0x100001 > dma_32bit_pfn: the walk starts at the anchor and 0x100000 is free
    expect(iovad.allocIovaFast(1, 0x100000, false)).toBe(0x100000);
  });
  it('max32_alloc_size does not refuse a request whose inclusive limit is dma_32bit_pfn', () => {
    const mm = new TestMachine();
    const iovad = new IovaDomain(4096, 1n, mm.stats, mm.events);
    iovad.reserveIova(1n, 0xfffffn);
    expect(iovad.allocIovaFast(1, 0xfffff, false)).toBe(0);
    expect(iovad.max32AllocSize).toBe(1);
    expect(iovad.allocIovaFast(1, 0xfffff, false)).toBe(0); // a 32-bit request: short-circuited
    expect(iovad.allocIovaFast(1, 0x100000, false)).toBe(0x100000); // not a 32-bit request
  });
});

describe('IovaDomain: rcache depot (iova.c: iova_depot_push/pop, iova_depot_work_func)', () => {
  const L = 2 ** 36; // far above 4 GiB
  /** 509 one-frame IOVAs freed into the rcache: depot B (p127..253), C (p254..380), D (p381..507, the head). */
  function fill(hz = 0) {
    const mm = new TestMachine();
    const iovad = new IovaDomain(4096, 1n, mm.stats, mm.events, true, hz);
    const p: number[] = [];
    for (let i = 0; i < 509; i++) p.push(iovad.allocIovaFast(1, L, false));
    const free = () => { for (const x of p) iovad.freeIovaFast(x, 1); };
    const back = () => p.map((x, i) => (iovad.findIova(BigInt(x)) === null ? i : -1)).filter((i) => i >= 0);
    const span = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, k) => a + k);
    return { iovad, p, free, back, span };
  }
  it('the work frees the newest magazine (the depot head), not the oldest', () => {
    const { iovad, free, back, span } = fill();
    free();
    expect(back()).toEqual([]);
    iovad.tick(100);
    expect(back()).toEqual(span(381, 507));
    iovad.tick(100); // it re-armed itself: the next head, C
    expect(back()).toEqual(span(254, 507));
    iovad.tick(1000); // one magazine left (one CPU): the work stops
    expect(back()).toEqual(span(254, 507));
  });
  it('the work is queued by the push to the depot and runs IOVA_DEPOT_DELAY later, not on a grid from creation', () => {
    const { iovad, free, back, span } = fill();
    iovad.tick(90);
    free(); // pushes at t = 90: the work runs at t = 190
    iovad.tick(10);
    expect(back()).toEqual([]);
    iovad.tick(89);
    expect(back()).toEqual([]);
    iovad.tick(1);
    expect(back()).toEqual(span(381, 507));
    iovad.tick(1000);
    expect(back()).toEqual(span(254, 507));
  });
  it('with CONFIG_HZ=1000 the 100-jiffy timer lands on level 1 of the timer wheel: the next multiple of 8 jiffies', () => {
    const { iovad, free, back, span } = fill(1000);
    iovad.tick(90);
    free(); // expires at jiffy 190, bucket 192
    iovad.tick(101);
    expect(back()).toEqual([]);
    iovad.tick(1);
    expect(back()).toEqual(span(381, 507));
  });
});

describe('iommuDmaAllocIova', () => {
  it('granule 4 KiB, power-of-two rounding below 32 granules, size alignment', () => {
    const { d, dev } = setup();
    dev.pci32BitWorkaround = false;
    expect(d.granule).toBe(4096);
    const a = iommuDmaAllocIova(d, 3 * 4096, M64, dev);
    expect(a % (4n * 4096n)).toBe(0n);
    expect(d.iovad?.findIova(a >> 12n)).toEqual({ pfnLo: a >> 12n, pfnHi: (a >> 12n) + 3n }); // rounded to 4 granules
    const b = iommuDmaAllocIova(d, 33 * 4096, M64, dev);
    expect(d.iovad?.findIova(b >> 12n)).toEqual({ pfnLo: b >> 12n, pfnHi: (b >> 12n) + 32n }); // not rounded
    expect(b % (64n * 4096n)).toBe(0n); // but aligned to the next power of two
    expect(a + 4n * 4096n).toBeLessThanOrEqual(1n << 47n);
  });
  it('tries 32-bit first, then falls back for good with an INFO event', () => {
    const { mm, d, dev } = setup();
    expect(dev.pci32BitWorkaround).toBe(true);
    const a = iommuDmaAllocIova(d, 4096, M64, dev);
    expect(a).toBeLessThanOrEqual(M32);
    expect(a).toBe(0xfffff000n);
    // 1 GiB pieces: the top one holds the MSI window, the bottom one frame 0
    expect(iommuDmaAllocIova(d, 0x40000000, M32, dev)).toBe(0x80000000n);
    expect(iommuDmaAllocIova(d, 0x40000000, M32, dev)).toBe(0x40000000n);
    const big = iommuDmaAllocIova(d, 0x40000000, M64, dev); // no 1 GiB left below 4 GiB
    expect(big).toBeGreaterThan(M32);
    expect(dev.pci32BitWorkaround).toBe(false);
    expect(mm.stats.iova32BitFallbacks).toBe(1);
    expect(mm.events.list('INFO', 'iommu').map((e) => e.message)).toEqual(['nvme0: Using 47-bit DMA addresses']);
    // permanent: even a small allocation now comes from the top
    expect(iommuDmaAllocIova(d, 4096, M64, dev)).toBeGreaterThan(M32);
  });
  it('respects the device mask, bus_dma_limit and never returns 0 or the MSI window', () => {
    const { d, dev } = setup();
    dev.busDmaLimit = 0xfffffffn;
    const got: bigint[] = [];
    for (let i = 0; i < 64; i++) got.push(iommuDmaAllocIova(d, 0x100000, M64, dev));
    expect(got.every((a) => a > 0n && a + 0x100000n - 1n <= 0xfffffffn)).toBe(true);
    const { d: d2, dev: dev2 } = setup();
    let n = 0;
    for (;;) {
      const a = iommuDmaAllocIova(d2, 0x100000, M32, dev2);
      if (a === 0n) break;
      n++;
      expect(a + 0x100000n <= 0xfee00000n || a >= 0xfef00000n).toBe(true);
    }
    expect(n).toBe(4095 - 1); // 4096 MiB minus frame 0's MiB and the MSI MiB
  });
  it('freed sizes up to 128 KiB come back from the rcache', () => {
    const { mm, d, dev } = setup();
    expect(iovaRcacheRange()).toBe(128 * 1024);
    const a = iommuDmaAllocIova(d, 32 * 4096, M32, dev);
    iommuDmaFreeIova(d, a, 32 * 4096, null);
    expect(d.iovad?.findIova(a >> 12n)).not.toBeNull(); // still held by the cache
    expect(iommuDmaAllocIova(d, 32 * 4096, M32, dev)).toBe(a);
    expect(mm.stats.iovaRcacheHits).toBe(1);
    const b = iommuDmaAllocIova(d, 33 * 4096, M32, dev);
    iommuDmaFreeIova(d, b, 33 * 4096, null);
    expect(d.iovad?.findIova(b >> 12n)).toBeNull(); // too big for the caches: freed to the tree
  });
  it('rcache entries above the limit are not used', () => {
    const { mm, d, dev } = setup();
    dev.pci32BitWorkaround = false;
    const hi = iommuDmaAllocIova(d, 4096, M64, dev);
    iommuDmaFreeIova(d, hi, 4096, null);
    const lo = iommuDmaAllocIova(d, 4096, M32, dev);
    expect(lo).toBeLessThanOrEqual(M32);
    expect(mm.stats.iovaRcacheMisses).toBeGreaterThan(0);
  });
});

describe('reserved regions in DMA cookies (dma-iommu.c: iova_reserve_iommu_regions())', () => {
  it('ARM: the IOMMU_RESV_SW_MSI window is listed but not reserved: dma-iommu manages it itself', () => {
    const { iommu, d, dev } = setup({ format: 'arm-lpae' });
    expect(iommu.reservedRegions).toContainEqual({ start: 0x8000000n, end: 0x8100000n, kind: 'sw-msi' });
    const m28 = (1n << 28n) - 1n;
    const got = [0, 1, 2].map(() => iommuDmaAllocIova(d, 64 << 20, m28, dev));
    expect(got).toEqual([0xc000000n, 0x8000000n, 0x4000000n]);
  });
  it('AMD: the HyperTransport hole 0xfd_0000_0000..0xff_ffff_ffff is reserved (amd_iommu_get_resv_regions())', () => {
    const { iommu, d, dev } = setup({ format: 'amd-v1' });
    expect(iommu.reservedRegions).toContainEqual({ start: 0xfd00000000n, end: 0x10000000000n, kind: 'reserved' });
    dev.pci32BitWorkaround = false;
    expect(iommuDmaAllocIova(d, 4096, (1n << 40n) - 1n, dev)).toBe(0xfcfffff000n);
  });
  it('AMD with FEATURE_HT_RANGE_IGNORE (htRangeIgnore): no HyperTransport hole', () => {
    const { iommu, d, dev } = setup({ format: 'amd-v1', htRangeIgnore: true });
    expect(iommu.reservedRegions.some((r) => r.kind === 'reserved')).toBe(false);
    dev.pci32BitWorkaround = false;
    expect(iommuDmaAllocIova(d, 4096, (1n << 40n) - 1n, dev)).toBe(0xfffffff000n);
  });
  it('htRangeIgnore is refused on other formats and when not a boolean, naming the field', () => {
    expect(() => setup({ format: 'x86-64', htRangeIgnore: false })).toThrow(/cfg\.htRangeIgnore .*needs format "amd-v1", got "x86-64"/);
    expect(() => setup({ format: 'amd-v1', htRangeIgnore: 1 as unknown as boolean })).toThrow(/cfg\.htRangeIgnore must be a boolean, got 1/);
  });
});

describe('flush queue (lazy mode)', () => {
  function lazy(cfg: Partial<IommuConfig> = {}) {
    const s = setup({ mode: 'lazy', ...cfg }, 'dma-fq');
    s.dev.pci32BitWorkaround = false;
    return s;
  }
  function mapAndQueueFree(s: ReturnType<typeof lazy>, size: number): bigint {
    const a = iommuDmaAllocIova(s.d, size, M64, s.dev);
    expect(iommuMap(s.d, a, 0x100000n, size, IOMMU_READ).ok).toBe(true);
    expect(iommuTranslate(s.d, a, false).ok).toBe(true);
    const g = new IommuIotlbGather();
    g.queued = true;
    iommuUnmapFast(s.d, a, size, g);
    iommuDmaFreeIova(s.d, a, size, g);
    return a;
  }
  it('an IOVA is not reused and stays translatable (stale) until the timeout flush', () => {
    const s = lazy({ rcaches: false });
    const a = mapAndQueueFree(s, 4096);
    expect(s.mm.stats.flushQueueEntries).toBe(1);
    expect(iommuTranslate(s.d, a, false).ok).toBe(true); // stale IOTLB entry
    const b = iommuDmaAllocIova(s.d, 4096, M64, s.dev);
    expect(b).not.toBe(a);
    iommuDmaFlushQueueTick(s.d, 9);
    expect(s.mm.stats.flushQueueFlushes).toBe(0);
    iommuDmaFlushQueueTick(s.d, 1);
    expect(s.mm.stats.flushQueueFlushes).toBe(1);
    expect(s.mm.stats.iotlbGlobalFlushes).toBe(1);
    expect(iommuTranslate(s.d, a, false).ok).toBe(false);
    expect(iommuDmaAllocIova(s.d, 4096, M64, s.dev)).toBe(a); // top-down first fit finds it again
  });
  it('a full queue forces a flush at 255 entries, not 256 (fq_full leaves one ring slot free); explicit flush frees everything', () => {
    const s = lazy();
    const first = mapAndQueueFree(s, 4096);
    for (let i = 1; i < 255; i++) mapAndQueueFree(s, 4096);
    expect(s.d.fq?.length).toBe(255);
    expect(s.mm.stats.flushQueueFlushes).toBe(0);
    mapAndQueueFree(s, 4096); // the 256th queue_iova finds the ring full
    expect(s.mm.stats.flushQueueFlushes).toBe(1);
    expect(s.d.fq?.length).toBe(1);
    expect(s.d.iovad?.findIova(first >> 12n)).not.toBeNull(); // freed into the rcache, still held
    iommuDmaFlushQueueFlush(s.d);
    expect(s.d.fq?.length).toBe(0);
  });
  it('table pages unlinked by a queued unmap are released only when the entry is freed', () => {
    const s = lazy();
    const a = iommuDmaAllocIova(s.d, 0x200000, M64, s.dev);
    expect(iommuMap(s.d, a, 0x40001000n, 0x200000, IOMMU_READ).ok).toBe(true); // 512 x 4 KiB, own PT
    const pages = s.d.tablePages;
    const g = new IommuIotlbGather();
    g.queued = true;
    iommuUnmapFast(s.d, a, 0x200000, g);
    iommuDmaFreeIova(s.d, a, 0x200000, g);
    expect(s.d.tablePages).toBe(pages);
    iommuDmaFlushQueueTick(s.d, 10);
    expect(s.d.tablePages).toBe(pages - 1);
  });
  it('a dma-fq domain queues a queued gather\'s free but gives a null gather\'s back at once (iommu_dma_free_iova); a strict domain warns about a queued gather', () => {
    const s = lazy();
    const a = iommuDmaAllocIova(s.d, 4096, M64, s.dev);
    iommuDmaFreeIova(s.d, a, 4096, null);
    expect(s.d.fq?.pending()).toEqual([]);
    expect(iommuDmaAllocIova(s.d, 4096, M64, s.dev)).toBe(a);
    const q = new IommuIotlbGather();
    q.queued = true;
    iommuDmaFreeIova(s.d, a, 4096, q);
    expect(s.d.fq?.pending()).toEqual([[Number(a >> 12n), 1]]);
    const t = setup();
    const b = iommuDmaAllocIova(t.d, 4096, M64, t.dev);
    const g = new IommuIotlbGather();
    g.queued = true;
    iommuDmaFreeIova(t.d, b, 4096, g);
    expect(t.mm.events.count('WARN')).toBe(1);
    expect(t.mm.stats.iotlbGlobalFlushes).toBe(1);
    expect(t.d.fq).toBeNull();
  });
});
