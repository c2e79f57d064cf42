// The Linux 7.1-7.3 figures: the struct page tax of device memory (memmap bytes a page-based
// P2PDMA path needs for a BAR, against none for a phyr) and the cache maintenance a non-coherent
// device costs per design: one dma_map_sg over a scattered buffer (7.1 batches: every segment's
// clean issued, one completion wait) against one dma_map_phys per range (a wait each), counted and
// timed in the same run. No targets: the issue asks for the figures.
// Run: npx tsx --expose-gc bench/run.ts linux73

import type { BenchRow, BenchSection } from './harness.ts';
import { GiB, MiB, unwrap } from '../src/base/index.ts';
import { createMachine, type Machine } from '../src/machine/index.ts';
import { memmapBytesFor } from '../src/mm/index.ts';
import { PhyrList, sgAllocTableFromPagesSegment, sgFreeTable } from '../src/phyr/index.ts';
import {
  DMA_BIT_MASK, DMA_TO_DEVICE, dmaMapPhys, dmaMapSgtable, dmaSetMaskAndCoherent, dmaUnmapPhys, dmaUnmapSgtable,
} from '../src/dma/index.ts';
import type { Device } from '../src/pci/index.ts';

const PAGE = 4096;

function nonCoherent(): { m: Machine; dev: Device } {
  const m = createMachine({
    ramBytes: 4 * GiB, seed: 1, aged: true, cpu: { vendor: 'intel' }, dmaDebug: { enabled: false }, swiotlb: { bytes: 4 * MiB },
    pci: [
      { name: 'hb0', type: 'host-bridge', vendor: 0x8086, device: 0x2030 },
      { name: 'rp0', type: 'root-port', parent: 'hb0' },
      { name: 'nic0', type: 'endpoint', parent: 'rp0', coherent: false },
    ],
  });
  m.events.mute('CACHE');
  const dev = m.device('nic0');
  unwrap(dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(64)));
  return { m, dev };
}

export default function linux73Bench(): BenchSection {
  const rows: BenchRow[] = [];
  // the struct page tax (LSF/MM/BPF 2026): 64 bytes of memmap per base page of a ZONE_DEVICE BAR
  for (const ps of [4096, 65536]) {
    const bytes = memmapBytesFor(80 * GiB, ps);
    rows.push({
      name: `memmap for an 80 GiB P2PDMA BAR, ${ps / 1024} KiB pages`, value: bytes / MiB, unit: 'MiB',
      note: 'struct pages (64 B each) the page-based path needs; a phyr list describes the BAR with none (16 B for one range)',
    });
  }
  // cache maintenance on a non-coherent device: 512 scattered pages (every other page of a 4 MiB block), map + unmap
  const { m, dev } = nonCoherent();
  const n = 512;
  const base = unwrap(m.allocKernelPages(10));
  const pfns = new Float64Array(n).map((_, i) => Number(base) + 2 * i);
  const list = PhyrList.from(Array.from(pfns, (p) => ({ addr: BigInt(p) * BigInt(PAGE), len: PAGE, flags: 0 })));
  const addrs = new Array<bigint>(n);
  const s0 = m.stats.snapshot();
  let t0 = performance.now();
  const REPS = 50;
  for (let r = 0; r < REPS; r++) {
    const sgt = unwrap(sgAllocTableFromPagesSegment(pfns, 0, n * PAGE, 0xffff_f000, { pageSize: PAGE }));
    unwrap(dmaMapSgtable(dev, sgt, DMA_TO_DEVICE, 0));
    dmaUnmapSgtable(dev, sgt, DMA_TO_DEVICE, 0);
    sgFreeTable(sgt);
  }
  const sgMs = (performance.now() - t0) / REPS;
  const sg = m.stats.diff(s0);
  const s1 = m.stats.snapshot();
  t0 = performance.now();
  for (let r = 0; r < REPS; r++) {
    for (let i = 0; i < n; i++) addrs[i] = unwrap(dmaMapPhys(dev, list.addrAt(i), PAGE, DMA_TO_DEVICE, 0));
    for (let i = 0; i < n; i++) dmaUnmapPhys(dev, addrs[i], PAGE, DMA_TO_DEVICE, 0);
  }
  const phMs = (performance.now() - t0) / REPS;
  const ph = m.stats.diff(s1);
  const per = (d: Record<string, number>, k: string): number => (d[k] ?? 0) / REPS;
  rows.push({
    name: `non-coherent dma_map_sg of ${n} pages: completion waits`, value: per(sg, 'cacheSyncBarriers'), unit: 'waits',
    note: `${per(sg, 'cacheCleans')} cleans, ${per(sg, 'cacheInvalidates')} invalidates, ${per(sg, 'cacheSyncBarriers')} completion waits per map + unmap; ${sgMs.toFixed(2)} ms`,
  });
  rows.push({
    name: `non-coherent dma_map_phys per range, ${n} pages: completion waits`, value: per(ph, 'cacheSyncBarriers'), unit: 'waits',
    note: `${per(ph, 'cacheCleans')} cleans, ${per(ph, 'cacheInvalidates')} invalidates, ${per(ph, 'cacheSyncBarriers')} completion waits per map + unmap; ${phMs.toFixed(2)} ms`,
  });
  return { title: 'Linux 7.1-7.3: the struct page tax of device memory, cache maintenance of a non-coherent device', rows };
}
