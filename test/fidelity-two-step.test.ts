// The two-step IOVA API (drivers/iommu/dma-iommu.c: dma_iova_link, __iommu_dma_iova_unlink,
// iommu_dma_iova_unlink_range_slow, dma_iova_destroy) against the kernel's answers on the
// smallest cases where an earlier model differed. Each test names the old behaviour it catches.

import { describe, expect, it } from 'vitest';
import { allocPhys, gpuBar, makeMachine, pattern } from './fixtures/dma-b-machines.ts';
import type { Machine } from '../src/machine/index.ts';
import { iommuDmaFlushQueueFlush, iommuGetDmaDomain, iommuIovaToPhys } from '../src/iommu/internal.ts';
import {
  DMA_ATTR_MMIO, DMA_ATTR_REQUIRE_COHERENT, DMA_ATTR_SKIP_CPU_SYNC, DMA_BIDIRECTIONAL, DMA_FROM_DEVICE, DMA_TO_DEVICE,
  DMA_IOVA_USE_SWIOTLB, DmaIovaState, dmaIovaDestroy, dmaIovaLink, dmaIovaSync, dmaIovaTryAlloc, dmaIovaUnlink,
  dmaSetMinAlignMask,
} from '../src/dma/index.ts';

const PAGE = 4096;
const errno = (r: { ok: boolean; errno?: string }): string => (r.ok ? 'ok' : r.errno!);
const live = (m: Machine): number => m.stats.iommuLeafPtesWritten - m.stats.iommuLeafPtesCleared;
const warns = (m: Machine, text: string): number => m.events.list('WARN').filter((e) => e.message.includes(text)).length;

describe('dma_iova_link: DMA_ATTR_REQUIRE_COHERENT after a bounced link (DMA_IOVA_USE_SWIOTLB)', () => {
  // Untrusted tb0 with NVMe's min_align_mask: link an unaligned head (bounced: the state gets
  // DMA_IOVA_USE_SWIOTLB), then an aligned page with REQUIRE_COHERENT. dma_iova_link():
  // WARN_ON_ONCE((__size & DMA_IOVA_USE_SWIOTLB) && (attrs & REQUIRE_COHERENT)) -> -EOPNOTSUPP.
  function setup() {
    const m = makeMachine('strict');
    const dev = m.device('tb0');
    dmaSetMinAlignMask(dev, PAGE - 1);
    const head = allocPhys(m) + 0x200n;
    const page = allocPhys(m);
    const st = new DmaIovaState();
    expect(dmaIovaTryAlloc(dev, st, head, (PAGE - 0x200) + PAGE)).toBe(true);
    return { m, dev, st, head, page };
  }

  it('is refused with EOPNOTSUPP and a WARN, not linked as before', () => {
    const { m, dev, st, head, page } = setup();
    expect(dmaIovaLink(dev, st, head, 0, PAGE - 0x200, DMA_TO_DEVICE, 0).ok).toBe(true);
    expect(st.rawSize & DMA_IOVA_USE_SWIOTLB).toBe(DMA_IOVA_USE_SWIOTLB);
    const leaves = live(m);
    const w = m.events.count('WARN');
    const r = dmaIovaLink(dev, st, page, PAGE - 0x200, PAGE, DMA_TO_DEVICE, DMA_ATTR_REQUIRE_COHERENT);
    expect(errno(r)).toBe('EOPNOTSUPP');
    expect(m.events.count('WARN')).toBe(w + 1);
    expect(warns(m, 'DMA_ATTR_REQUIRE_COHERENT')).toBe(1);
    expect(live(m)).toBe(leaves);
    expect(iommuIovaToPhys(iommuGetDmaDomain(dev)!, st.addr + BigInt(PAGE - 0x200))).toBe(0n);
    // the same link without the attribute goes through
    expect(dmaIovaLink(dev, st, page, PAGE - 0x200, PAGE, DMA_TO_DEVICE, 0).ok).toBe(true);
    dmaIovaDestroy(dev, st, 2 * PAGE - 0x200, DMA_TO_DEVICE, 0);
    expect(live(m)).toBe(0);
  });

  it('an unbounced state still links REQUIRE_COHERENT on a coherent device (the check is the swiotlb bit)', () => {
    const { m, dev, page } = setup();
    const st = new DmaIovaState();
    expect(dmaIovaTryAlloc(dev, st, 0n, PAGE)).toBe(true);
    expect(dmaIovaLink(dev, st, page, 0, PAGE, DMA_TO_DEVICE, DMA_ATTR_REQUIRE_COHERENT).ok).toBe(true);
    expect(m.events.count('WARN')).toBe(0);
    dmaIovaDestroy(dev, st, PAGE, DMA_TO_DEVICE, DMA_ATTR_REQUIRE_COHERENT);
  });
});

describe('dma_iova_link: untrusted device without an active bounce pool', () => {
  // Strict IOMMU, swiotlb: false, untrusted tb0. dma_iova_link -> iommu_dma_iova_link_swiotlb ->
  // iommu_dma_iova_bounce_and_link -> iommu_dma_map_swiotlb: !is_swiotlb_active(dev) ->
  // dev_warn_once("DMA bounce buffers are inactive, ...") and DMA_MAPPING_ERROR -> -ENOMEM.
  const MSG = 'DMA bounce buffers are inactive, unable to map unaligned transaction.';

  it('an unaligned 0x2000-byte link fails with ENOMEM and a WARN instead of mapping the whole granules (old: ok)', () => {
    const m = makeMachine('strict', 1, { swiotlb: false });
    const dev = m.device('tb0');
    const phys = allocPhys(m, 2) + 0xa80n;
    m.mem.write(phys - 0xa80n, pattern(0xa80, 5)); // kernel data next to the buffer
    const st = new DmaIovaState();
    expect(dmaIovaTryAlloc(dev, st, phys, 0x2000)).toBe(true);
    const r = dmaIovaLink(dev, st, phys, 0, 0x2000, DMA_TO_DEVICE, 0);
    expect(errno(r)).toBe('ENOMEM');
    expect(warns(m, MSG)).toBe(1);
    expect(live(m)).toBe(0);
    expect(m.stats.swiotlbMaps).toBe(0);
    expect(dmaIovaSync(dev, st, 0, 0x2000).ok).toBe(true);
    expect(dev.dmaRead(st.addr - 0xa80n, 16).ok).toBe(false); // the neighbouring bytes stay out of reach
    dmaIovaDestroy(dev, st, 0, DMA_TO_DEVICE, 0);
  });

  it('an aligned head with an unaligned tail: the linked middle is undone, ENOMEM', () => {
    const m = makeMachine('strict', 1, { swiotlb: false });
    const dev = m.device('tb0');
    const phys = allocPhys(m, 2);
    const st = new DmaIovaState();
    expect(dmaIovaTryAlloc(dev, st, phys, 0x2000 + 100)).toBe(true);
    expect(errno(dmaIovaLink(dev, st, phys, 0, 0x2000 + 100, DMA_TO_DEVICE, 0))).toBe('ENOMEM');
    expect(warns(m, MSG)).toBe(1);
    expect(live(m)).toBe(0);
    // aligned ranges need no bounce and still link
    expect(dmaIovaLink(dev, st, phys, 0, 0x2000, DMA_TO_DEVICE, 0).ok).toBe(true);
    dmaIovaDestroy(dev, st, 0x2000, DMA_TO_DEVICE, 0);
    expect(live(m)).toBe(0);
    expect(m.events.count('DMA-DEBUG')).toBe(0);
  });
});

describe('unlink of an MMIO link on a non-coherent device does no cache maintenance', () => {
  // __iommu_dma_iova_unlink() takes the slow path only for DMA_IOVA_USE_SWIOTLB or
  // (!coherent && !(attrs & (SKIP_CPU_SYNC | MMIO))); iommu_dma_iova_unlink_range_slow() syncs
  // for the CPU under the same condition. A BAR has no CPU cache lines to invalidate.
  function cacheOps(m: Machine, fn: string): number {
    return m.events.list('CACHE').filter((e) => e.data?.fn === fn).length;
  }

  it('dma_iova_unlink and dma_iova_destroy with DMA_ATTR_MMIO: no arch_sync_dma_for_cpu (old: one per granule)', () => {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    dev.dmaCoherent = false;
    const bar = gpuBar(m);
    const st = new DmaIovaState();
    expect(dmaIovaTryAlloc(dev, st, 0n, 4 * PAGE)).toBe(true);
    expect(dmaIovaLink(dev, st, bar.start, 0, 2 * PAGE, DMA_FROM_DEVICE, DMA_ATTR_MMIO).ok).toBe(true);
    expect(dmaIovaLink(dev, st, bar.start + BigInt(2 * PAGE), 2 * PAGE, 2 * PAGE, DMA_FROM_DEVICE, DMA_ATTR_MMIO).ok).toBe(true);
    expect(cacheOps(m, 'arch_sync_dma_for_device')).toBe(0); // __dma_iova_link skips MMIO too
    dmaIovaUnlink(dev, st, 0, 2 * PAGE, DMA_FROM_DEVICE, DMA_ATTR_MMIO);
    expect(cacheOps(m, 'arch_sync_dma_for_cpu')).toBe(0);
    dmaIovaDestroy(dev, st, 4 * PAGE, DMA_FROM_DEVICE, DMA_ATTR_MMIO);
    expect(m.events.count('CACHE')).toBe(0);
    expect(m.stats.cacheMaintenanceOps).toBe(0);
    expect(live(m)).toBe(0);
  });

  it('the same unlink of RAM without attributes invalidates each granule (the rule only skips MMIO / SKIP_CPU_SYNC)', () => {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    dev.dmaCoherent = false;
    const p = allocPhys(m, 1);
    const st = new DmaIovaState();
    expect(dmaIovaTryAlloc(dev, st, 0n, 2 * PAGE)).toBe(true);
    expect(dmaIovaLink(dev, st, p, 0, 2 * PAGE, DMA_FROM_DEVICE, 0).ok).toBe(true);
    dmaIovaUnlink(dev, st, 0, 2 * PAGE, DMA_FROM_DEVICE, DMA_ATTR_SKIP_CPU_SYNC);
    expect(cacheOps(m, 'arch_sync_dma_for_cpu')).toBe(0);
    expect(dmaIovaLink(dev, st, p, 0, 2 * PAGE, DMA_FROM_DEVICE, 0).ok).toBe(true);
    dmaIovaDestroy(dev, st, 2 * PAGE, DMA_FROM_DEVICE, 0);
    expect(cacheOps(m, 'arch_sync_dma_for_cpu')).toBe(2);
  });

  it('a state that used swiotlb still skips the CPU sync for an MMIO unlink (old: the slow path synced every granule)', () => {
    const m = makeMachine('strict');
    const dev = m.device('tb0');
    dev.dmaCoherent = false;
    dmaSetMinAlignMask(dev, PAGE - 1);
    const head = allocPhys(m) + 0x800n;
    const bar = gpuBar(m);
    const st = new DmaIovaState();
    expect(dmaIovaTryAlloc(dev, st, head, 0x800 + 2 * PAGE)).toBe(true);
    expect(dmaIovaLink(dev, st, head, 0, 0x800, DMA_BIDIRECTIONAL, 0).ok).toBe(true); // bounced
    expect(st.rawSize & DMA_IOVA_USE_SWIOTLB).toBe(DMA_IOVA_USE_SWIOTLB);
    expect(dmaIovaLink(dev, st, bar.start, 0x800, 2 * PAGE, DMA_BIDIRECTIONAL, DMA_ATTR_MMIO).ok).toBe(true);
    const before = cacheOps(m, 'arch_sync_dma_for_cpu');
    dmaIovaUnlink(dev, st, 0x800, 2 * PAGE, DMA_BIDIRECTIONAL, DMA_ATTR_MMIO);
    expect(cacheOps(m, 'arch_sync_dma_for_cpu')).toBe(before);
    expect(live(m)).toBe(1); // the bounced head granule
    dmaIovaDestroy(dev, st, 0x800, DMA_BIDIRECTIONAL, 0);
    expect(live(m)).toBe(0);
    expect(m.stats.swiotlbUnmaps).toBe(1);
  });
});

describe('dma_iova_destroy with a partial mapped_len frees iova_align(mapped_len + pad), not the window', () => {
  // __iommu_dma_iova_unlink(..., free_iova=true) -> iommu_dma_free_iova(domain, addr, span) ->
  // free_iova_fast(pfn, span pages): a span of <= 32 pages goes into the range cache of its own
  // order while the tree keeps the whole window; a longer span falls to free_iova(), which removes
  // the whole window's node.
  it('try_alloc 8 pages at 0xffff8000, link 0x1000, destroy 0x1000, try_alloc 0x1000: 0xffff8000 (old: 0xffff7000)', () => {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    const iovad = iommuGetDmaDomain(dev)!.iovad!;
    const st = new DmaIovaState();
    expect(dmaIovaTryAlloc(dev, st, 0n, 8 * PAGE)).toBe(true);
    expect(st.addr).toBe(0xffff8000n);
    expect(dmaIovaLink(dev, st, allocPhys(m), 0, PAGE, DMA_TO_DEVICE, 0).ok).toBe(true);
    expect(dmaIovaSync(dev, st, 0, PAGE).ok).toBe(true);
    dmaIovaDestroy(dev, st, PAGE, DMA_TO_DEVICE, 0);
    // what the kernel leaves allocated: the window's 8-page node stays in the tree, its first
    // frame sits in the order-0 range cache
    expect(iovad.findIova(0xffff8n)).toEqual({ pfnLo: 0xffff8n, pfnHi: 0xfffffn });
    expect(iovad.cachedCount).toBe(1);
    const st2 = new DmaIovaState();
    expect(dmaIovaTryAlloc(dev, st2, 0n, PAGE)).toBe(true);
    expect(st2.addr).toBe(0xffff8000n);
    // the rest of the window is still allocated: a tree allocation goes below it
    const st3 = new DmaIovaState();
    expect(dmaIovaTryAlloc(dev, st3, 0n, PAGE)).toBe(true);
    expect(st3.addr).toBe(0xffff7000n);
    expect(m.events.count('DMA-DEBUG')).toBe(0);
  });

  it('lazy: the queued free is the 1-page span; after the flush the 1-page allocation reuses 0xffff8000 (old: 0xffff7000)', () => {
    const m = makeMachine('lazy');
    const dev = m.device('nvme0');
    const d = iommuGetDmaDomain(dev)!;
    const st = new DmaIovaState();
    expect(dmaIovaTryAlloc(dev, st, 0n, 8 * PAGE)).toBe(true);
    expect(st.addr).toBe(0xffff8000n);
    expect(dmaIovaLink(dev, st, allocPhys(m), 0, PAGE, DMA_TO_DEVICE, 0).ok).toBe(true);
    dmaIovaDestroy(dev, st, PAGE, DMA_TO_DEVICE, 0);
    iommuDmaFlushQueueFlush(d);
    const st2 = new DmaIovaState();
    expect(dmaIovaTryAlloc(dev, st2, 0n, PAGE)).toBe(true);
    expect(st2.addr).toBe(0xffff8000n);
    expect(d.iovad!.findIova(0xfffffn)).toEqual({ pfnLo: 0xffff8n, pfnHi: 0xfffffn });
  });

  it('a partial span over 32 granules is too big for the range caches: free_iova removes the whole window', () => {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    const iovad = iommuGetDmaDomain(dev)!.iovad!;
    const ranges = iovad.rangeCount;
    const st = new DmaIovaState();
    expect(dmaIovaTryAlloc(dev, st, 0n, 64 * PAGE)).toBe(true);
    const p = allocPhys(m, 6);
    expect(dmaIovaLink(dev, st, p, 0, 40 * PAGE, DMA_TO_DEVICE, 0).ok).toBe(true);
    dmaIovaDestroy(dev, st, 40 * PAGE, DMA_TO_DEVICE, 0);
    expect(iovad.rangeCount).toBe(ranges);
    expect(iovad.cachedCount).toBe(0);
    expect(live(m)).toBe(0);
  });

  it('an unaligned window: the span counts the pad (iova_align(mapped_len + pad))', () => {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    const iovad = iommuGetDmaDomain(dev)!.iovad!;
    const phys = allocPhys(m, 1) + 0xe00n;
    const st = new DmaIovaState();
    expect(dmaIovaTryAlloc(dev, st, phys, 8 * PAGE)).toBe(true); // 9 granules -> 16 allocated
    const base = st.addr - 0xe00n;
    // 0x400 bytes at pad 0xe00 cross into the second granule: a 2-granule span (order 1)
    expect(dmaIovaLink(dev, st, phys, 0, 0x400, DMA_TO_DEVICE, 0).ok).toBe(true);
    dmaIovaDestroy(dev, st, 0x400, DMA_TO_DEVICE, 0);
    expect(live(m)).toBe(0);
    expect(iovad.cachedCount).toBe(1);
    const st2 = new DmaIovaState();
    expect(dmaIovaTryAlloc(dev, st2, 0n, 2 * PAGE)).toBe(true);
    expect(st2.addr).toBe(base);
  });
});
