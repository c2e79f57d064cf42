// The block layer's read/write path on one machine without an IOMMU and one behind a strict
// IOMMU: bio (bioFromRanges) -> request (blkSubmitBio, split to NVMe-like limits) ->
// blk_rq_dma_map_iter_start/next -> blk_rq_dma_unmap (+ per-segment unmap when it says so), for
// 4 KiB I/Os in I/Os per second and 1 MiB I/Os (256 scattered 4 KiB pages) in pages per second.
// Each figure stands beside the same work done the older way in the same run: a scatterlist built
// from the pages (sgAllocTableFromPagesSegment) and one dmaMapPhys per range. dma-debug is off, as
// in a production kernel. The NVMe rows run the whole read path of issue 7: bio -> request ->
// nvmeQueueRq (blk_rq_dma_map + PRP list or SGL in machine memory + the 64-byte command) ->
// nvmeExecute (the controller model reads the command and the descriptors by DMA and moves the
// data) -> nvmeCompleteRq (unmap, descriptors back to their pools), beside the same pages mapped
// per range with dmaMapPhys from a scatterlist (no command, no controller) in the same run.
// Run: npx tsx --expose-gc bench/run.ts block

import type { BenchRow, BenchSection } from './harness.ts';
import { GiB, MiB, unwrap } from '../src/base/index.ts';
import { createMachine, type Machine } from '../src/machine/index.ts';
import { DMA_BIT_MASK, DMA_TO_DEVICE, DmaIovaState, dmaMapPhys, dmaSetMaskAndCoherent, dmaUnmapPhys } from '../src/dma/index.ts';
import { PhyrList, sgAllocTableFromPagesSegment, sgFreeTable } from '../src/phyr/index.ts';
import {
  BlkDmaIter, REQ_OP_READ, REQ_OP_WRITE, bioFromRanges, blkMqInitQueue, blkRqDmaMapCoalesce, blkRqDmaMapIterNext,
  blkRqDmaMapIterStart, blkRqDmaUnmap, blkSubmitBio, nvmeCompleteRq, nvmeExecute, nvmeProbe, nvmeQueueRq, type NvmeCtrl,
  type RequestQueue,
} from '../src/drivers/index.ts';
import type { Device } from '../src/pci/index.ts';

const PAGE = 4096;

function machine(iommu: boolean): { m: Machine; dev: Device } {
  const m = createMachine({
    ramBytes: 4 * GiB, seed: 1, cpu: { vendor: 'intel' }, dmaDebug: { enabled: false }, swiotlb: { bytes: 4 * MiB },
    ...(iommu ? { iommu: { format: 'x86-64', levels: 4, mode: 'strict' } } : {}),
    pci: [
      { name: 'hb0', type: 'host-bridge', vendor: 0x8086, device: 0x2030 },
      { name: 'rp0', type: 'root-port', parent: 'hb0' },
      {
        name: 'nvme0', type: 'endpoint', parent: 'rp0', bars: [{ bytes: 16 * 1024 }],
        nvme: { sgls: true, mdts: 0, namespaces: [{ nsid: 1, bytes: 4 * GiB, lbaBytes: 512 }] },
      },
    ],
  });
  const dev = m.device('nvme0');
  unwrap(dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(64)));
  return { m, dev };
}

/** 256 scattered pages (every other page of a 2 MiB block) per source, `n` sources. */
function scatteredSources(m: Machine, n: number, pagesEach: number): PhyrList[] {
  const out: PhyrList[] = [];
  for (let k = 0; k < n; k++) {
    const base = unwrap(m.allocKernelPages(Math.ceil(Math.log2(pagesEach * 2)))) * BigInt(PAGE);
    out.push(PhyrList.from(Array.from({ length: pagesEach }, (_, i) => ({ addr: base + BigInt(2 * i * PAGE), len: PAGE, flags: 0 }))));
  }
  return out;
}

const iter = new BlkDmaIter();
const segAddr: bigint[] = [];
const segLen: number[] = [];

/** One I/O through the block layer: bio, request(s), map, unmap. Returns the pages moved. */
function blockIo(q: RequestQueue, dev: Device, src: PhyrList): number {
  const bio = unwrap(bioFromRanges(REQ_OP_WRITE, 0n, src));
  const rqs = unwrap(blkSubmitBio(q, bio));
  for (const rq of rqs) {
    const state = new DmaIovaState();
    let n = 0, total = 0;
    let more = blkRqDmaMapIterStart(rq, dev, state, iter);
    if (more && blkRqDmaMapCoalesce(state)) {
      total = iter.len;
    } else {
      while (more) {
        segAddr[n] = iter.addr; segLen[n] = iter.len; n++; total += iter.len;
        more = blkRqDmaMapIterNext(rq, dev, iter);
      }
      if (iter.status !== 0) throw new Error(`map failed: status ${iter.status}`);
    }
    if (!blkRqDmaUnmap(rq, dev, state, total, iter.p2pdma.map)) {
      for (let i = 0; i < n; i++) dmaUnmapPhys(dev, segAddr[i], segLen[i], DMA_TO_DEVICE, 0);
    }
  }
  return src.totalLen / PAGE;
}

/** One read through the whole NVMe path: bio, request(s), command + descriptors, controller, completion. */
function nvmeIo(ctrl: NvmeCtrl, src: PhyrList): number {
  const bio = unwrap(bioFromRanges(REQ_OP_READ, 0n, src));
  for (const rq of unwrap(blkSubmitBio(ctrl.queue, bio))) {
    const io = unwrap(nvmeQueueRq(ctrl, 1, rq));
    const c = unwrap(nvmeExecute(ctrl, io));
    nvmeCompleteRq(ctrl, io);
    if (c.status !== 0) throw new Error(`NVMe status 0x${c.status.toString(16)}`);
  }
  return src.totalLen / PAGE;
}

/** The same work the older way: a scatterlist from the pages, then one dmaMapPhys per range, then unmap. */
function sgIo(dev: Device, src: PhyrList, pfns: Float64Array): number {
  const sgt = unwrap(sgAllocTableFromPagesSegment(pfns, 0, src.totalLen, 0xffff_f000, { pageSize: PAGE }));
  const n = src.count;
  for (let i = 0; i < n; i++) segAddr[i] = unwrap(dmaMapPhys(dev, src.addrAt(i), src.lenAt(i), DMA_TO_DEVICE, 0));
  for (let i = 0; i < n; i++) dmaUnmapPhys(dev, segAddr[i], src.lenAt(i), DMA_TO_DEVICE, 0);
  sgFreeTable(sgt);
  return src.totalLen / PAGE;
}

/** Runs io over the sources round-robin for about `ms` (after a warm-up); returns [ios/s, pages/s]. */
function rate(srcs: readonly PhyrList[], io: (s: PhyrList, i: number) => number, ms: number): [number, number] {
  for (let i = 0; i < 2000; i++) io(srcs[i % srcs.length], i % srcs.length);
  let ios = 0, pages = 0;
  const t0 = performance.now();
  let t = t0;
  while (t - t0 < ms) {
    for (let k = 0; k < 64; k++, ios++) pages += io(srcs[ios % srcs.length], ios % srcs.length);
    t = performance.now();
  }
  const s = (t - t0) / 1e3;
  return [ios / s, pages / s];
}

export default function blockBench(): BenchSection {
  const rows: BenchRow[] = [];
  for (const iommu of [false, true]) {
    const { m, dev } = machine(iommu);
    const where = iommu ? 'strict IOMMU' : 'no IOMMU';
    const q = unwrap(blkMqInitQueue(dev, { maxHwSectors: 2048, maxSegments: 256, maxSegmentSize: 0xffff_ffff, virtBoundaryMask: 4095 }));
    const small = scatteredSources(m, 256, 1);
    const smallPfns = small.map((s) => new Float64Array([Number(s.addrAt(0)) / PAGE]));
    const [blkIops] = rate(small, (s) => blockIo(q, dev, s), 400);
    const [sgIops] = rate(small, (s, i) => sgIo(dev, s, smallPfns[i]), 400);
    rows.push({ name: `block path 4 KiB I/O (bio, request, map, unmap), ${where}`, value: blkIops, unit: 'IO/s',
      note: `per-range dmaMapPhys + scatterlist: ${(sgIops / 1e3).toFixed(0)} k IO/s in the same run` });
    rows.push({ name: `  per-range dmaMapPhys + scatterlist, 4 KiB, ${where}`, value: sgIops, unit: 'IO/s' });
    const big = scatteredSources(m, 16, 256);
    const bigPfns = big.map((s) => new Float64Array(Array.from({ length: s.count }, (_, i) => Number(s.addrAt(i)) / PAGE)));
    const [, blkPages] = rate(big, (s) => blockIo(q, dev, s), 400);
    const [, sgPages] = rate(big, (s, i) => sgIo(dev, s, bigPfns[i]), 400);
    rows.push({ name: `block path 1 MiB I/O (256 scattered pages), ${where}`, value: blkPages, unit: 'pages/s',
      note: `per-range dmaMapPhys + scatterlist: ${(sgPages / 1e6).toFixed(2)} M pages/s in the same run${iommu ? '; one IOVA window per request' : ''}` });
    rows.push({ name: `  per-range dmaMapPhys + scatterlist, 1 MiB, ${where}`, value: sgPages, unit: 'pages/s' });
    // the whole NVMe read path, with the queue limits nvmeProbe sets (behind the IOMMU: 128 KiB requests)
    const ctrl = unwrap(nvmeProbe(dev));
    const [nvmeIops] = rate(small, (s) => nvmeIo(ctrl, s), 400);
    rows.push({ name: `NVMe 4 KiB read, whole path, ${where}`, value: nvmeIops, unit: 'IO/s',
      note: `per-range dmaMapPhys + scatterlist: ${(sgIops / 1e3).toFixed(0)} k IO/s in the same run (mapping only)` });
    const [, nvmePages] = rate(big, (s) => nvmeIo(ctrl, s), 400);
    rows.push({ name: `NVMe 1 MiB read (256 scattered pages), whole path, ${where}`, value: nvmePages, unit: 'pages/s',
      note: `per-range dmaMapPhys + scatterlist: ${(sgPages / 1e6).toFixed(2)} M pages/s in the same run (mapping only); ` +
        `${ctrl.queue.limits.maxSectors * 512 / 1024} KiB requests` });
  }
  return { title: 'Block layer and NVMe: bio -> request -> blk_rq_dma_map -> (PRP/SGL, controller) -> unmap', rows };
}
