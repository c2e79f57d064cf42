import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { makeMachine, pattern } from '../../test/fixtures/dma-b-machines.ts';
import { GiB, MiB, unwrap } from '../base/index.ts';
import { createMachine } from '../machine/index.ts';
import { iommuGetDmaDomain, iommuIovaToPhys } from '../iommu/index.ts';
import { DMA_ATTR_FORCE_CONTIGUOUS, DMA_ATTR_NO_WARN, DMA_BIT_MASK } from './constants.ts';
import { dmaAllocCoherent, dmaCoherentAllocations, dmaFreeCoherent, GFP_ATOMIC, GFP_KERNEL, __GFP_COMP, __GFP_NOWARN } from './coherent.ts';
import { dmaSetCoherentMask, dmaSetMinAlignMask } from './mask.ts';
import { dmaPoolAlloc, dmaPoolCreate, dmaPoolDestroy, dmaPoolFree, dmaPoolsOf, dmaPoolZalloc } from './pool.ts';

const dmaDebugEvents = (m: ReturnType<typeof makeMachine>) => m.events.list().filter((e) => e.kind === 'DMA-DEBUG');

describe('dma_alloc_coherent on dma-direct (kernel/dma/direct.c: dma_direct_alloc)', () => {
  it('hands out 2^get_order(size) zeroed pages of RAM at phys_to_dma of the pages, tracked by dma-debug', () => {
    const m = makeMachine('none');
    const dev = m.device('nvme0');
    const free0 = m.freePages;
    const mem = unwrap(dmaAllocCoherent(dev, 5000));
    expect(mem.dmaAddr).toBe(mem.cpuPhys);
    expect(mem.cpuPhys % 8192n).toBe(0n); // an order-1 block is naturally aligned
    expect(free0 - m.freePages).toBe(2); // get_order(5000) = 1
    expect(m.regionAt(mem.cpuPhys)?.kind).toBe('ram');
    expect(m.mem.read(mem.cpuPhys, 8192).every((b) => b === 0)).toBe(true);
    const recs = m.dmaDebug.entries(dev);
    expect(recs).toHaveLength(1);
    expect(recs[0]).toMatchObject({ type: 'coherent', devAddr: mem.dmaAddr, len: 5000, dir: 0, phys: mem.cpuPhys,
      mapErr: 'dma map error check not applicable' });
    expect(dmaCoherentAllocations(dev).map((r) => r.via)).toEqual(['direct']);
    dmaFreeCoherent(dev, 5000, mem.cpuPhys, mem.dmaAddr);
    expect(m.freePages).toBe(free0);
    expect(m.dmaDebug.count(dev)).toBe(0);
    expect(dmaCoherentAllocations(dev)).toEqual([]);
    expect(m.teardown()).toBe(0);
    expect(dmaDebugEvents(m)).toEqual([]);
  });

  it('applies the dma_range_map offset (phys_to_dma_direct), and the device reaches the CPU memory through it', () => {
    const m = makeMachine('none');
    const dev = m.device('nic0');
    dev.dmaRangeMap = [{ cpuStart: 0n, dmaStart: 0x8000_0000_0000n, len: 2 ** 40 }];
    const mem = unwrap(dmaAllocCoherent(dev, 4096));
    expect(mem.dmaAddr).toBe(mem.cpuPhys + 0x8000_0000_0000n);
    unwrap(dev.dmaWrite(mem.dmaAddr + 16n, pattern(64, 1)));
    expect(m.mem.read(mem.cpuPhys + 16n, 64)).toEqual(pattern(64, 1));
    dmaFreeCoherent(dev, 4096, mem.cpuPhys, mem.dmaAddr);
  });

  it('refuses pages beyond the coherent mask (dma_coherent_ok) with ENOMEM and gives them back', () => {
    const m = makeMachine('none');
    const dev = m.device('nic0');
    dev.dmaRangeMap = [{ cpuStart: 0n, dmaStart: 0xffff_f000n, len: 2 ** 40 }];
    unwrap(dmaSetCoherentMask(dev, DMA_BIT_MASK(32)));
    const free0 = m.freePages;
    const r = dmaAllocCoherent(dev, 8192);
    expect(r).toMatchObject({ ok: false, errno: 'ENOMEM' });
    expect(m.freePages).toBe(free0);
    expect(m.dmaDebug.count(dev)).toBe(0);
  });

  it('dma_coherent_ok sees the page-aligned size: a bus_dma_limit inside the last page refuses it', () => {
    const m = makeMachine('none');
    const dev = m.device('nvme0');
    const x = unwrap(dmaAllocCoherent(dev, 4096));
    const y = unwrap(dmaAllocCoherent(dev, 4096));
    dmaFreeCoherent(dev, 4096, y.cpuPhys, y.dmaAddr);
    // 2048 bytes at y would end at y + 2047, but dma_direct_alloc asks about PAGE_ALIGN(2048) bytes:
    // y (the head of the free list, in ZONE_DMA32) is refused and given back, and the retry in
    // ZONE_DMA takes a page below 16 MiB
    dev.busDmaLimit = y.dmaAddr + 2047n;
    expect(y.cpuPhys).toBeGreaterThanOrEqual(1n << 24n);
    const free0 = m.freePages;
    const low = unwrap(dmaAllocCoherent(dev, 2048));
    expect(low.cpuPhys).toBeLessThan(1n << 24n);
    dmaFreeCoherent(dev, 2048, low.cpuPhys, low.dmaAddr);
    expect(m.freePages).toBe(free0);
    // with the limit at the page's end the same page is handed out: only the rounding refused it
    dev.busDmaLimit = y.dmaAddr + 4095n;
    const z = unwrap(dmaAllocCoherent(dev, 2048));
    expect(z.cpuPhys).toBe(y.cpuPhys);
    dev.busDmaLimit = 0n;
    dmaFreeCoherent(dev, 2048, z.cpuPhys, z.dmaAddr);
    dmaFreeCoherent(dev, 4096, x.cpuPhys, x.dmaAddr);
    expect(m.teardown()).toBe(0);
  });

  it('__GFP_COMP is refused with a WARN (dma_alloc_attrs)', () => {
    const m = makeMachine('none');
    expect(dmaAllocCoherent(m.device('nic0'), 4096, __GFP_COMP)).toMatchObject({ ok: false, errno: 'ENOMEM' });
    expect(m.events.list().some((e) => e.kind === 'WARN' && /__GFP_COMP/.test(e.message))).toBe(true);
    // WARN_ON_ONCE: the second refusal is silent, as is the second allocation with no coherent mask
    expect(dmaAllocCoherent(m.device('nic0'), 4096, __GFP_COMP).ok).toBe(false);
    m.device('nic0').coherentDmaMask = 0n;
    for (let i = 0; i < 2; i++) dmaAllocCoherent(m.device('nic0'), 4096);
    expect(m.events.list('WARN').map((e) => e.message.replace(/^nic0: dma_alloc_attrs: /, ''))).toEqual([
      'WARN_ON_ONCE(flag & __GFP_COMP)', 'WARN_ON_ONCE(!dev->coherent_dma_mask)',
    ]);
  });

  it('above MAX_PAGE_ORDER: ENOMEM, the page allocator WARNs once per boot, never under __GFP_NOWARN or DMA_ATTR_NO_WARN', () => {
    const m = makeMachine('none');
    const dev = m.device('nvme0');
    const big = 8 * 1024 * 1024; // order 11 with 4 KiB pages; MAX_PAGE_ORDER is 10
    const warns = () => m.events.list('WARN').filter((e) => /MAX_PAGE_ORDER/.test(e.message)).length;
    // dma_direct_alloc: DMA_ATTR_NO_WARN -> __GFP_NOWARN; WARN_ON_ONCE_GFP stays silent and unspent
    expect(dmaAllocCoherent(dev, big, GFP_KERNEL, DMA_ATTR_NO_WARN)).toMatchObject({ ok: false, errno: 'ENOMEM' });
    expect(dmaAllocCoherent(dev, big, GFP_KERNEL | __GFP_NOWARN)).toMatchObject({ ok: false, errno: 'ENOMEM' });
    expect(warns()).toBe(0);
    expect(dmaAllocCoherent(dev, big)).toMatchObject({ ok: false, errno: 'ENOMEM' });
    expect(warns()).toBe(1);
    expect(dmaAllocCoherent(m.device('nic0'), big)).toMatchObject({ ok: false, errno: 'ENOMEM' });
    expect(warns()).toBe(1); // once per boot, whatever the device
    // the largest order still works
    const ok = unwrap(dmaAllocCoherent(dev, 4 * 1024 * 1024));
    dmaFreeCoherent(dev, 4 * 1024 * 1024, ok.cpuPhys, ok.dmaAddr);
    expect(m.teardown()).toBe(0);
  });

  it('MAX_PAGE_ORDER is the machine\'s: 13 at 64 KiB pages (arm64 ARCH_FORCE_MAX_ORDER), so 512 MiB is one allocation there', () => {
    const m = createMachine({
      ramBytes: 4 * GiB, pageSize: 65536, cpu: { vendor: 'other' }, iommu: { format: 'arm-lpae', mode: 'strict' },
      pci: [
        { name: 'hb0', type: 'host-bridge', vendor: 0x10de, device: 0x2f95 },
        { name: 'rp0', type: 'root-port', parent: 'hb0' },
        { name: 'nvme0', type: 'endpoint', parent: 'rp0', bars: [{ bytes: 65536 }] },
      ],
    });
    const dev = m.device('nvme0');
    unwrap(dmaSetCoherentMask(dev, DMA_BIT_MASK(64)));
    for (const gfp of [GFP_KERNEL, GFP_ATOMIC]) {
      const a = unwrap(dmaAllocCoherent(dev, 512 * MiB, gfp)); // order 13
      dmaFreeCoherent(dev, 512 * MiB, a.cpuPhys, a.dmaAddr);
    }
    const r = dmaAllocCoherent(dev, 1024 * MiB, GFP_KERNEL); // order 14
    expect(r).toMatchObject({ ok: false, errno: 'ENOMEM' });
    expect(r.ok ? '' : r.message).toMatch(/need order 14 > MAX_PAGE_ORDER 13/);
    expect(m.teardown()).toBe(0);
  });

  it('dma-iommu: DMA_ATTR_NO_WARN is not turned into __GFP_NOWARN; the blocking (remap) path has no order WARN', () => {
    const big = 8 * 1024 * 1024;
    const warns = (m: ReturnType<typeof makeMachine>) => m.events.list('WARN').filter((e) => /MAX_PAGE_ORDER/.test(e.message)).length;
    const a = makeMachine('strict');
    expect(dmaAllocCoherent(a.device('nvme0'), big, GFP_KERNEL)).toMatchObject({ ok: false, errno: 'ENOMEM' });
    expect(warns(a)).toBe(0);
    expect(dmaAllocCoherent(a.device('nvme0'), big, GFP_ATOMIC, DMA_ATTR_NO_WARN)).toMatchObject({ ok: false, errno: 'ENOMEM' });
    expect(warns(a)).toBe(1);
    const b = makeMachine('strict');
    expect(dmaAllocCoherent(b.device('nvme0'), big, GFP_KERNEL, DMA_ATTR_FORCE_CONTIGUOUS)).toMatchObject({ ok: false, errno: 'ENOMEM' });
    expect(warns(b)).toBe(1);
  });

  it('misuse goes to dma-debug: wrong size, wrong CPU address, never allocated (debug_dma_free_coherent)', () => {
    const m = makeMachine('none', 1, { dmaDebug: { allErrors: true } });
    const dev = m.device('nvme0');
    const a = unwrap(dmaAllocCoherent(dev, 4096));
    dmaFreeCoherent(dev, 4096, a.cpuPhys + 4096n, a.dmaAddr);
    const b = unwrap(dmaAllocCoherent(dev, 4096));
    dmaFreeCoherent(dev, 2048, b.cpuPhys, b.dmaAddr);
    // a CPU address with a struct page (the first RAM page): debug_dma_free_coherent checks only those
    dmaFreeCoherent(dev, 4096, 0x100000n, 0x1000n);
    const msgs = dmaDebugEvents(m).map((e) => e.message);
    expect(msgs.some((s) => s.includes('different CPU address'))).toBe(true);
    expect(msgs.some((s) => s.includes('different size') && s.includes('[map size=4096 bytes] [unmap size=2048 bytes]'))).toBe(true);
    expect(msgs.some((s) => s.includes('has not allocated'))).toBe(true);
    // the model freed what was allocated both times
    expect(dmaCoherentAllocations(dev)).toEqual([]);
  });
});

describe('dma-direct coherent pages come from the zone the limit falls in (kernel/dma/direct.c: __dma_direct_alloc_pages)', () => {
  const G4 = 1n << 32n;
  /**
   * An 8 GiB machine whose free lists hand out memory above 4 GiB first: RAM below 4 GiB taken in
   * 4 MiB blocks until a block comes from above it, then one page there, then one low block given back.
   */
  function highFirst(): { m: ReturnType<typeof makeMachine>; held: bigint[]; lowFreed: bigint } {
    const m = makeMachine('none', 1, { ramBytes: 8 * 2 ** 30 });
    const held: bigint[] = [];
    for (;;) {
      const pfn = unwrap(m.allocKernelPages(10));
      if (pfn * 4096n >= G4) { m.freeKernelPages(pfn, 10); break; }
      held.push(pfn);
    }
    held.push(unwrap(m.allocKernelPages(0))); // above 4 GiB: its block's other pages are now listed
    const lowFreed = held.shift()!;
    m.freeKernelPages(lowFreed, 10);
    return { m, held, lowFreed };
  }

  it('a 32-bit coherent mask gets ZONE_DMA32 pages even when the free lists hand out high memory first (was ENOMEM)', () => {
    const { m } = highFirst();
    // a 64-bit mask takes the pages where the allocator gives them: above 4 GiB here
    const dev64 = m.device('nvme0');
    const high = unwrap(dmaAllocCoherent(dev64, 4096));
    expect(high.cpuPhys).toBeGreaterThanOrEqual(G4);
    expect(unwrap(m.allocKernelPages(1)) * 4096n).toBeGreaterThanOrEqual(G4); // so does an order-1 block
    const dev = m.device('nic0');
    unwrap(dmaSetCoherentMask(dev, DMA_BIT_MASK(32)));
    const mem = unwrap(dmaAllocCoherent(dev, 8192));
    expect(mem.cpuPhys + 8191n).toBeLessThan(G4);
    expect(m.mem.read(mem.cpuPhys, 8192).every((b) => b === 0)).toBe(true);
    dmaFreeCoherent(dev64, 4096, high.cpuPhys, high.dmaAddr);
    dmaFreeCoherent(dev, 8192, mem.cpuPhys, mem.dmaAddr);
  });

  it('a 24-bit coherent mask gets ZONE_DMA pages (below 16 MiB); with ZONE_DMA full it is ENOMEM', () => {
    const m = makeMachine('none');
    const dev = m.device('nic0');
    unwrap(dmaSetCoherentMask(dev, DMA_BIT_MASK(24)));
    const got: bigint[] = [];
    for (;;) {
      const r = dmaAllocCoherent(dev, 1 << 20);
      if (!r.ok) {
        expect(r.errno).toBe('ENOMEM');
        break;
      }
      expect(r.value.cpuPhys + (1n << 20n)).toBeLessThanOrEqual(1n << 24n);
      got.push(r.value.cpuPhys);
    }
    // ZONE_DMA holds RAM from 1 MiB (the first MiB is reserved) to 16 MiB: 15 blocks of 1 MiB at most
    expect(got.length).toBeGreaterThan(0);
    expect(got.length).toBeLessThanOrEqual(15);
    for (const p of got) dmaFreeCoherent(dev, 1 << 20, p, p);
    expect(m.teardown()).toBe(0);
  });
});

describe('dma_alloc_coherent behind an IOMMU (drivers/iommu/dma-iommu.c: iommu_dma_alloc)', () => {
  it('maps an IOVA range below the coherent mask onto the pages; unmapped again at free', () => {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    unwrap(dmaSetCoherentMask(dev, DMA_BIT_MASK(32)));
    const domain = iommuGetDmaDomain(dev)!;
    const mem = unwrap(dmaAllocCoherent(dev, 12288));
    expect(mem.dmaAddr).not.toBe(mem.cpuPhys);
    expect(mem.dmaAddr < 1n << 32n).toBe(true);
    for (let i = 0n; i < 3n; i++) expect(iommuIovaToPhys(domain, mem.dmaAddr + i * 4096n)).toBe(mem.cpuPhys + i * 4096n);
    unwrap(dev.dmaWrite(mem.dmaAddr + 8190n, pattern(8, 2)));
    expect(m.mem.read(mem.cpuPhys + 8190n, 8)).toEqual(pattern(8, 2));
    expect(dmaCoherentAllocations(dev).map((r) => r.via)).toEqual(['iommu']);
    dmaFreeCoherent(dev, 12288, mem.cpuPhys, mem.dmaAddr);
    expect(iommuIovaToPhys(domain, mem.dmaAddr)).toBe(0n);
    expect(dev.dmaRead(mem.dmaAddr, 8).ok).toBe(false); // the IOTLB was invalidated (strict)
    expect(m.teardown()).toBe(0);
  });
});

describe('dma_alloc_coherent behind an IOMMU: the contiguous path is __iommu_dma_map (iommu_dma_alloc)', () => {
  it('a min_align_mask wider than the granule fails GFP_ATOMIC and FORCE_CONTIGUOUS (one WARN), not the remap path', () => {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    dmaSetMinAlignMask(dev, 0x1fff); // 8 KiB - 1 against a 4 KiB IOVA granule
    const free0 = m.freePages;
    const warns = () => m.events.list('WARN').filter((e) => /Unsupported alignment constraint/.test(e.message)).length;
    expect(dmaAllocCoherent(dev, 4096, GFP_ATOMIC)).toMatchObject({ ok: false, errno: 'ENOMEM' });
    expect(warns()).toBe(1);
    expect(dmaAllocCoherent(dev, 4096, GFP_KERNEL, DMA_ATTR_FORCE_CONTIGUOUS)).toMatchObject({ ok: false, errno: 'ENOMEM' });
    expect(warns()).toBe(1); // dev_WARN_ONCE
    expect(m.dmaDebug.count(dev)).toBe(0);
    expect(m.freePages).toBe(free0); // the refused allocations gave their pages back
    // __iommu_dma_alloc_noncontiguous() has no such check
    const mem = unwrap(dmaAllocCoherent(dev, 4096, GFP_KERNEL));
    dmaFreeCoherent(dev, 4096, mem.cpuPhys, mem.dmaAddr);
    expect(dmaCoherentAllocations(dev)).toEqual([]);
    expect(m.teardown()).toBe(0);
  });

  it('GFP_ATOMIC maps an IOVA range below the coherent mask onto the pages, like the blocking path', () => {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    unwrap(dmaSetCoherentMask(dev, DMA_BIT_MASK(32)));
    const domain = iommuGetDmaDomain(dev)!;
    const mem = unwrap(dmaAllocCoherent(dev, 8192, GFP_ATOMIC));
    expect(mem.dmaAddr < 1n << 32n).toBe(true);
    for (let i = 0n; i < 2n; i++) expect(iommuIovaToPhys(domain, mem.dmaAddr + i * 4096n)).toBe(mem.cpuPhys + i * 4096n);
    dmaFreeCoherent(dev, 8192, mem.cpuPhys, mem.dmaAddr);
    expect(iommuIovaToPhys(domain, mem.dmaAddr)).toBe(0n);
    expect(m.teardown()).toBe(0);
  });
});

describe('dma_pool (mm/dmapool.c)', () => {
  it('256-byte blocks aligned 256: 16 per page from offset 0, a new page only when the list is empty', () => {
    const m = makeMachine('none');
    const dev = m.device('nvme0');
    const pool = unwrap(dmaPoolCreate('prp list 256', dev, 256, 256, 0));
    expect([pool.size, pool.allocation, pool.boundary]).toEqual([256, 4096, 4096]);
    const blocks = Array.from({ length: 16 }, () => unwrap(dmaPoolAlloc(pool)));
    const base = blocks[0].cpuPhys;
    expect(blocks.map((b) => Number(b.cpuPhys - base))).toEqual(Array.from({ length: 16 }, (_, i) => i * 256));
    expect(pool.nrPages).toBe(1);
    const next = unwrap(dmaPoolAlloc(pool));
    expect(pool.nrPages).toBe(2);
    expect(next.cpuPhys >= base && next.cpuPhys < base + 4096n).toBe(false);
    // last freed first
    dmaPoolFree(pool, blocks[5].cpuPhys, blocks[5].dmaAddr);
    dmaPoolFree(pool, blocks[9].cpuPhys, blocks[9].dmaAddr);
    expect(unwrap(dmaPoolAlloc(pool)).cpuPhys).toBe(blocks[9].cpuPhys);
    expect(unwrap(dmaPoolAlloc(pool)).cpuPhys).toBe(blocks[5].cpuPhys);
    expect(dmaPoolsOf(dev)).toEqual([pool]);
    // the pages are the coherent allocations dma-debug knows
    expect(m.dmaDebug.entries(dev).map((e) => e.type)).toEqual(['coherent', 'coherent']);
  });

  it('a block never crosses the boundary: 48-byte blocks with boundary 128 sit at 0, 48, 128, 176, ...', () => {
    const m = makeMachine('none');
    const pool = unwrap(dmaPoolCreate('b', m.device('nvme0'), 48, 16, 128));
    const first = unwrap(dmaPoolAlloc(pool));
    const offs = [0];
    for (let i = 0; i < 5; i++) offs.push(Number(unwrap(dmaPoolAlloc(pool)).cpuPhys - first.cpuPhys));
    expect(offs).toEqual([0, 48, 128, 176, 256, 304]);
    expect(pool.nrBlocks).toBe(64);
  });

  it('rounds tiny blocks up to sizeof(struct dma_block) and rejects bad align / boundary (dma_pool_create_node)', () => {
    const m = makeMachine('none');
    const dev = m.device('nvme0');
    expect(unwrap(dmaPoolCreate('t', dev, 8, 0, 0)).size).toBe(16);
    expect(unwrap(dmaPoolCreate('t', dev, 100, 64, 0)).size).toBe(128);
    expect(unwrap(dmaPoolCreate('big', dev, 5000, 8, 0)).allocation).toBe(5000);
    expect(dmaPoolCreate('t', dev, 64, 3, 0)).toMatchObject({ ok: false, errno: 'EINVAL' });
    expect(dmaPoolCreate('t', dev, 128, 8, 64)).toMatchObject({ ok: false, errno: 'EINVAL' });
    expect(dmaPoolCreate('t', dev, 128, 8, 384)).toMatchObject({ ok: false, errno: 'EINVAL' });
    expect(dmaPoolCreate('t', dev, 0, 8, 0)).toMatchObject({ ok: false, errno: 'EINVAL' });
  });

  it('zalloc zeroes a reused block; plain alloc does not', () => {
    const m = makeMachine('none');
    const pool = unwrap(dmaPoolCreate('z', m.device('nvme0'), 64, 64, 0));
    const a = unwrap(dmaPoolAlloc(pool));
    m.mem.write(a.cpuPhys, pattern(64, 3));
    dmaPoolFree(pool, a.cpuPhys, a.dmaAddr);
    const b = unwrap(dmaPoolAlloc(pool));
    expect(m.mem.read(b.cpuPhys, 64)).toEqual(pattern(64, 3));
    dmaPoolFree(pool, b.cpuPhys, b.dmaAddr);
    const c = unwrap(dmaPoolZalloc(pool));
    expect(c.cpuPhys).toBe(a.cpuPhys);
    expect(m.mem.read(c.cpuPhys, 64).every((x) => x === 0)).toBe(true);
  });

  it('double free and foreign blocks are reported (DMAPOOL_DEBUG checks) and not put on the list', () => {
    const m = makeMachine('none');
    const pool = unwrap(dmaPoolCreate('d', m.device('nvme0'), 64, 64, 0));
    const a = unwrap(dmaPoolAlloc(pool));
    dmaPoolFree(pool, a.cpuPhys, a.dmaAddr);
    dmaPoolFree(pool, a.cpuPhys, a.dmaAddr);
    dmaPoolFree(pool, 0x1000n, 0x1000n);
    const checks = m.events.list().filter((e) => e.kind === 'MODEL-CHECK').map((e) => e.data?.check);
    expect(checks).toEqual(['dmapool-double-free', 'dmapool-bad-dma']);
    expect(pool.nrActive).toBe(0);
    expect(pool.nrFree).toBe(pool.nrBlocks);
  });

  it('destroy frees the pages; a busy pool is logged and its pages leak (dma-debug sees them at unbind)', () => {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    const free0 = m.freePages;
    const p1 = unwrap(dmaPoolCreate('p1', dev, 4096, 4096, 0));
    const x = unwrap(dmaPoolAlloc(p1));
    unwrap(dmaPoolAlloc(p1));
    dmaPoolDestroy(p1);
    expect(m.events.list().some((e) => e.source === 'dmapool' && e.message.includes('dma_pool_destroy p1 busy'))).toBe(true);
    expect(dmaCoherentAllocations(dev)).toHaveLength(2);
    expect(m.teardown()).toBe(2);
    const p2 = unwrap(dmaPoolCreate('p2', dev, 256, 256, 0));
    const y = unwrap(dmaPoolAlloc(p2));
    dmaPoolFree(p2, y.cpuPhys, y.dmaAddr);
    dmaPoolDestroy(p2);
    expect(dmaCoherentAllocations(dev)).toHaveLength(2);
    expect(dmaPoolsOf(dev)).toEqual([]);
    expect(() => dmaPoolAlloc(p2)).toThrow(TypeError);
    expect(x.dmaAddr).not.toBe(x.cpuPhys);
    expect(free0 - m.freePages).toBeGreaterThanOrEqual(2);
  });

  it('property: blocks are aligned, inside a page, never cross the boundary, never overlap; all pages freed at destroy', () => {
    fc.assert(fc.property(
      fc.integer({ min: 1, max: 6000 }), fc.integer({ min: 0, max: 8 }), fc.integer({ min: 0, max: 4 }),
      fc.array(fc.boolean(), { minLength: 1, maxLength: 120 }), fc.constantFrom('none', 'strict'),
      (size, alignLog, extraBoundaryLog, ops, mode) => {
        const m = makeMachine(mode as 'none' | 'strict');
        const dev = m.device('nvme0');
        const free0 = m.freePages;
        const align = 2 ** alignLog;
        const blk = Math.ceil(Math.max(size, 16) / align) * align;
        let boundary = 1;
        while (boundary < blk) boundary *= 2;
        boundary *= 2 ** extraBoundaryLog;
        const pool = unwrap(dmaPoolCreate('p', dev, size, align, boundary));
        const bnd = pool.boundary;
        const live: Array<{ cpuPhys: bigint; dmaAddr: bigint }> = [];
        for (const alloc of ops) {
          if (alloc || live.length === 0) {
            const b = unwrap(dmaPoolAlloc(pool));
            const c = Number(b.cpuPhys);
            expect(c % align).toBe(0);
            const page = pool.pages.find((p) => c >= Number(p.cpuPhys) && c + pool.size <= Number(p.cpuPhys) + pool.allocation)!;
            expect(page).toBeDefined();
            expect(b.dmaAddr - page.dmaAddr).toBe(b.cpuPhys - page.cpuPhys);
            const off = c - Number(page.cpuPhys);
            expect(Math.floor(off / bnd)).toBe(Math.floor((off + pool.size - 1) / bnd));
            for (const o of live) expect(o.cpuPhys + BigInt(pool.size) <= b.cpuPhys || b.cpuPhys + BigInt(pool.size) <= o.cpuPhys).toBe(true);
            live.push(b);
          } else {
            const b = live.splice(live.length >> 1, 1)[0];
            dmaPoolFree(pool, b.cpuPhys, b.dmaAddr);
          }
        }
        expect(pool.nrActive).toBe(live.length);
        for (const b of live) dmaPoolFree(pool, b.cpuPhys, b.dmaAddr);
        dmaPoolDestroy(pool);
        // behind an IOMMU the page-table pages it grew stay
        if (mode === 'none') expect(m.freePages).toBe(free0);
        expect(dmaCoherentAllocations(dev)).toEqual([]);
        expect(m.teardown()).toBe(0);
        expect(m.events.list().filter((e) => e.kind !== 'INFO')).toEqual([]);
      }), { numRuns: 40 });
  });
});
