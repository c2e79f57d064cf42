// Models: drivers/dma-buf/heaps/system_heap.c (Linux 7.1): a buffer of pages from the page
// allocator, largest orders first (orders 8, 4, 0: system_heap_alloc_buffer / alloc_largest_available),
// mapped for each attachment with dma_map_sgtable (system_heap_map_dma_buf), never moved (no pin /
// unpin), CPU-mapped cached (write-back).

import { checkLen, err, ok, type Result } from '../../base/index.ts';
import type { DmaDataDirection } from '../../dma/index.ts';
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
}

const ops = {
  expName: 'system',
  map(att: DmaBufAttachment, dir: DmaDataDirection): Result<DmaBufMapped> {
    return dmaBufMapPages(att, (att.dmabuf.priv as SystemHeapBuffer).pages, dir);
  },
  unmap(att: DmaBufAttachment, mapped: DmaBufMapped, dir: DmaDataDirection): void {
    dmaBufFreeSgt(att, mapped as DmaBufDma, dir);
  },
  release(buf: DmaBuf): void {
    const b = buf.priv as SystemHeapBuffer;
    if (b.freed) return;
    b.freed = true;
    for (const c of b.chunks) b.mm.freeKernelPages(c.pfn, c.order);
  },
  mmapCache(): PageCacheMode {
    return 'wb';
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
export function systemHeapAlloc(mm: MachineMm, len: number): Result<DmaBuf> {
  checkLen('len', len);
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
      b.pushBig(addr, ps * 2 ** order, 0);
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
  const priv: SystemHeapBuffer = { mm, pages: b.build(), chunks, freed: false };
  const r = dmaBufExport({ mm, ops, size: Math.ceil(len / ps) * ps, priv });
  if (!r.ok) undo();
  return r;
}
