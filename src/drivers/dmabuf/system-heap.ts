// Models: drivers/dma-buf/heaps/system_heap.c (Linux 7.1.5): a buffer of pages from the page
// allocator, largest orders first (orders 8, 4, 0: system_heap_alloc_buffer / alloc_largest_available),
// mapped for each attachment with dma_map_sgtable (system_heap_map_dma_buf), never moved (no pin /
// unpin), CPU-mapped cached (write-back). The "system_cc_shared" heap (7.1, "dma-buf: heaps: system:
// add system_cc_shared heap"), registered only when cc_platform_has(CC_ATTR_MEM_ENCRYPT): the same
// buffer with every page set_memory_decrypted at allocation, mapped with DMA_ATTR_CC_SHARED, and
// set_memory_encrypted again at release (a page that cannot be re-encrypted is leaked, never freed).

import { checkLen, err, ok, type Result } from '../../base/index.ts';
import { DMA_ATTR_CC_SHARED, ccPlatformHas, setMemoryDecrypted, setMemoryEncrypted, type DmaDataDirection } from '../../dma/index.ts';
import type { MachineMm, PageCacheMode } from '../../mm/index.ts';
import { PhyrList } from '../../phyr/index.ts';
import { dmaBufExport, type DmaBuf, type DmaBufAttachment, type DmaBufMapped } from './dma-buf.ts';
import { DmaBufDma, dmaBufFreeSgt, dmaBufMapPages } from './mapping.ts';

/** orders[] of system_heap.c: 1 MiB, 64 KiB, 4 KiB chunks on 4 KiB pages. */
export const SYSTEM_HEAP_ORDERS: readonly number[] = [8, 4, 0];

/** The heap buffer behind a system-heap dma-buf (struct system_heap_buffer). */
export interface SystemHeapBuffer {
  readonly mm: MachineMm;
  /** The pages, one range per allocated chunk, in buffer order. */
  readonly pages: PhyrList;
  readonly chunks: ReadonlyArray<{ pfn: bigint; order: number }>;
  freed: boolean;
  /** buffer->cc_shared: the pages are shared with the host (the system_cc_shared heap). */
  readonly ccShared: boolean;
}

/** The heaps of system_heap.c, by dma_heap name. */
export type SystemHeapName = 'system' | 'system_cc_shared';

const ops = {
  expName: 'system',
  map(att: DmaBufAttachment, dir: DmaDataDirection): Result<DmaBufMapped> {
    const b = att.dmabuf.priv as SystemHeapBuffer;
    return dmaBufMapPages(att, b.pages, dir, b.ccShared ? DMA_ATTR_CC_SHARED : 0);
  },
  unmap(att: DmaBufAttachment, mapped: DmaBufMapped, dir: DmaDataDirection): void {
    dmaBufFreeSgt(att, mapped as DmaBufDma, dir);
  },
  release(buf: DmaBuf): void {
    const b = buf.priv as SystemHeapBuffer;
    if (b.freed) return;
    b.freed = true;
    for (const c of b.chunks) {
      if (b.ccShared && !setMemoryEncrypted(b.mm, c.pfn * BigInt(b.mm.pageSize), 2 ** c.order).ok) continue; // leaked
      b.mm.freeKernelPages(c.pfn, c.order);
    }
  },
  mmapCache(): PageCacheMode {
    return 'wb';
  },
  // system_heap_vmap(): a vmap of the pages (no pin: the heap never moves them)
  vmap(buf: DmaBuf): Result<PhyrList> {
    if (buf.revoked) return err('ENODEV', `${buf.name} is revoked`);
    return ok((buf.priv as SystemHeapBuffer).pages);
  },
  physRanges(buf: DmaBuf): Result<PhyrList> {
    if (buf.revoked) return err('ENODEV', `${buf.name} is revoked`);
    return ok((buf.priv as SystemHeapBuffer).pages);
  },
};

/**
 * dma_heap_buffer_alloc() on the system heap: len bytes (rounded up to pages), zeroed, exported as
 * a dma-buf. Errors: ENOMEM when the page allocator cannot supply the pages (nothing is kept),
 * EINVAL for len 0 (dma_heap_buffer_alloc refuses a zero length... as PAGE_ALIGN(0) allocates nothing).
 * @throws RangeError if len is not a safe non-negative integer.
 */
export function systemHeapAlloc(mm: MachineMm, len: number, heap: SystemHeapName = 'system'): Result<DmaBuf> {
  checkLen('len', len);
  if (heap !== 'system' && heap !== 'system_cc_shared') throw new RangeError(`heap must be 'system' or 'system_cc_shared', got ${String(heap)}`);
  // system_heap_create(): the cc_shared heap exists only in a guest with encrypted memory
  if (heap === 'system_cc_shared' && !ccPlatformHas(mm, 'CC_ATTR_MEM_ENCRYPT')) return err('ENODEV', 'no system_cc_shared heap: not a confidential-computing guest');
  const ccShared = heap === 'system_cc_shared';
  if (len === 0) return err('EINVAL', 'len is 0');
  const ps = mm.pageSize;
  let left = Math.ceil(len / ps);
  const chunks: Array<{ pfn: bigint; order: number }> = [];
  const b = PhyrList.builder();
  const undo = (): void => {
    for (const c of chunks) mm.freeKernelPages(c.pfn, c.order);
  };
  // alloc_largest_available(): never an order above the last one that worked
  let maxOrder = SYSTEM_HEAP_ORDERS[0];
  while (left > 0) {
    let got = false;
    for (const order of SYSTEM_HEAP_ORDERS) {
      if (2 ** order > left || order > maxOrder) continue;
      const r = mm.allocKernelPages(order);
      if (!r.ok) continue;
      chunks.push({ pfn: r.value, order });
      const addr = r.value * BigInt(ps);
      mm.mem.fill(addr, ps * 2 ** order, 0);
      // one sg entry per chunk, as system_heap_allocate() sg_set_page()s each page it got: never merged
      b.pushBigNoMerge(addr, ps * 2 ** order, 0);
      left -= 2 ** order;
      maxOrder = order;
      got = true;
      break;
    }
    if (!got) {
      undo();
      return err('ENOMEM', `system heap: no pages left for ${len} bytes`);
    }
  }
  if (ccShared) {
    // system_heap_set_page_decrypted() per chunk, after the pages are zeroed
    for (const c of chunks) {
      if (!setMemoryDecrypted(mm, c.pfn * BigInt(ps), 2 ** c.order).ok) {
        undo();
        return err('ENOMEM', 'system_cc_shared heap: set_memory_decrypted failed');
      }
    }
  }
  const priv: SystemHeapBuffer = { mm, pages: b.build(), chunks, freed: false, ccShared };
  const r = dmaBufExport({ mm, ops, size: Math.ceil(len / ps) * ps, priv });
  if (!r.ok) undo();
  return r;
}
