// DMA mapping designs side by side on one machine (issue #3, engineer B): 1 GiB of aged 4 KiB
// anonymous memory, pinned with pinUserPhyrs / pinUserPages, mapped for a device behind a strict
// IOMMU with each design. Times are the model's own wall time (median of runs); each map is
// followed by its unmap outside the timed region. dma-debug is off, as in a production kernel
// (CONFIG_DMA_API_DEBUG=n), so the figures measure the mapping paths, not the checker; the last rows
// repeat dmaMapPhyrs with dma-debug on (as createMachine builds machines) and give its cost as the
// on/off time ratio measured in the same run (target <= 2).
// Run: npx tsx --expose-gc bench/run.ts dma

import type { BenchRow, BenchSection } from './harness.ts';
import { GiB, KiB, MiB, unwrap } from '../src/base/index.ts';
import { createMachine } from '../src/machine/index.ts';
import { FOLL_WRITE, pinUserPages, pinUserPhyrs } from '../src/mm/index.ts';
import { sgAllocTableFromPagesSegment, type PhyrList } from '../src/phyr/index.ts';
import {
  type DmaPhyrsMapping,
  DMA_BIT_MASK, DMA_TO_DEVICE, DmaIovaState, dmaIovaDestroy, dmaIovaLink, dmaIovaSync, dmaIovaTryAlloc,
  dmaMapPhyrs, dmaMapPhys, dmaMapSgtable, dmaSetMaskAndCoherent, dmaUnmapPhyrs, dmaUnmapPhys, dmaUnmapSgtable,
} from '../src/dma/index.ts';
import { dmaDebugOf } from '../src/dma/internal.ts';
import type { Device } from '../src/pci/index.ts';

const PAGE = 4096;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Runs map() then unmap() `runs` times after a warm-up; returns the median map time in ms. */
function timeMap<T>(map: () => T, unmap: (t: T) => void, runs = 3): number {
  unmap(map());
  const t: number[] = [];
  for (let i = 0; i < runs; i++) {
    const s = process.hrtime.bigint();
    const x = map();
    t.push(Number(process.hrtime.bigint() - s) / 1e6);
    unmap(x);
  }
  return median(t);
}

function twoStepMap(dev: Device, list: PhyrList): { st: DmaIovaState; len: number } {
  const st = new DmaIovaState();
  if (!dmaIovaTryAlloc(dev, st, list.addrAt(0), list.totalLen)) throw new Error('dmaIovaTryAlloc failed');
  let off = 0;
  const n = list.count;
  for (let i = 0; i < n; i++) {
    const len = list.lenAt(i);
    unwrap(dmaIovaLink(dev, st, BigInt(list.addrNumAt(i)), off, len, DMA_TO_DEVICE, 0));
    off += len;
  }
  unwrap(dmaIovaSync(dev, st, 0, off));
  return { st, len: off };
}

export default function dmaBench(): BenchSection {
  const m = createMachine({
    ramBytes: 8 * GiB, seed: 1, aged: true, cpu: { vendor: 'intel' },
    iommu: { format: 'x86-64', levels: 4, mode: 'strict' }, swiotlb: { bytes: 4 * MiB },
    pci: [
      { name: 'hb0', type: 'host-bridge', vendor: 0x8086, device: 0x2030 },
      { name: 'rp0', type: 'root-port', parent: 'hb0' },
      { name: 'nvme0', type: 'endpoint', parent: 'rp0', bars: [{ bytes: 16 * KiB }] },
    ],
  });
  const dev = m.device('nvme0');
  unwrap(dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(64)));
  const debug = dmaDebugOf(dev);
  debug.enabled = false;

  const proc = m.newProcess();
  const va = unwrap(proc.mmap({ len: GiB, backing: 'anon', populate: true }));
  const list = unwrap(pinUserPhyrs(proc, va, GiB, FOLL_WRITE));
  const pages = GiB / PAGE;
  const rows: BenchRow[] = [];
  const rate = (ms: number): number => pages / (ms / 1e3);
  const note = `${list.count} phyr entries for ${pages} pages`;

  // 1. scatterlist + dmaMapSgtable (page array from pinUserPages, sg table built inside the timed region)
  const pa = unwrap(pinUserPages(proc, va, pages, FOLL_WRITE));
  const sgMs = timeMap(() => {
    const sgt = unwrap(sgAllocTableFromPagesSegment(pa.pfns, 0, GiB, 0xfffff000, { pageSize: PAGE }));
    unwrap(dmaMapSgtable(dev, sgt, DMA_TO_DEVICE, 0));
    return sgt;
  }, (sgt) => dmaUnmapSgtable(dev, sgt, DMA_TO_DEVICE, 0), 3);
  rows.push({ name: 'scatterlist + dmaMapSgtable, 1 GiB aged 4 KiB, strict', value: rate(sgMs), unit: 'pages/s',
    note: `${sgMs.toFixed(0)} ms incl. sg table build; dma-debug off` });

  // 2. per-range dmaMapPhys
  const perMs = timeMap(() => {
    const addrs: bigint[] = [];
    for (let i = 0; i < list.count; i++) addrs.push(unwrap(dmaMapPhys(dev, list.addrAt(i), list.lenAt(i), DMA_TO_DEVICE, 0)));
    return addrs;
  }, (addrs) => { for (let i = 0; i < addrs.length; i++) dmaUnmapPhys(dev, addrs[i], list.lenAt(i), DMA_TO_DEVICE, 0); }, 3);
  rows.push({ name: 'per-range dmaMapPhys, 1 GiB aged 4 KiB, strict', value: rate(perMs), unit: 'pages/s',
    note: `${perMs.toFixed(0)} ms, one IOVA + IOTLB sync per range; dma-debug off` });

  // 3. two-step dmaIova*
  const twoMs = timeMap(() => twoStepMap(dev, list), ({ st, len }) => dmaIovaDestroy(dev, st, len, DMA_TO_DEVICE, 0), 5);
  rows.push({ name: 'two-step dmaIova*, 1 GiB aged 4 KiB, strict', value: rate(twoMs), unit: 'pages/s',
    target: { op: '>=', value: 5e6 }, note: `${twoMs.toFixed(0)} ms; ${note}; dma-debug off` });

  // 4. dmaMapPhyrs
  const mapPhyrs = (): DmaPhyrsMapping => unwrap(dmaMapPhyrs(dev, list, DMA_TO_DEVICE, 0));
  const unmapPhyrs = (mp: DmaPhyrsMapping): void => dmaUnmapPhyrs(dev, mp, DMA_TO_DEVICE, 0);
  const phyrsMs = timeMap(mapPhyrs, unmapPhyrs, 5);
  rows.push({ name: 'dmaMapPhyrs, 1 GiB aged 4 KiB, strict', value: rate(phyrsMs), unit: 'pages/s',
    note: `${phyrsMs.toFixed(0)} ms; two-step window inside; dma-debug off` });

  // 5. small request: 256 x 4 KiB, map + unmap
  const small = unwrap(pinUserPhyrs(proc, va, 256 * PAGE, FOLL_WRITE));
  const reps = 200;
  const smallTwo = timeMap(() => {
    for (let r = 0; r < reps; r++) {
      const x = twoStepMap(dev, small);
      dmaIovaDestroy(dev, x.st, x.len, DMA_TO_DEVICE, 0);
    }
    return 0;
  }, () => undefined, 3);
  rows.push({ name: 'two-step map + unmap of 256 x 4 KiB', value: (smallTwo * 1e6) / (reps * 256), unit: 'ns/page',
    note: `${((smallTwo * 1e3) / reps).toFixed(1)} us per request; dma-debug off` });
  const smallPhyrs = timeMap(() => {
    for (let r = 0; r < reps; r++) dmaUnmapPhyrs(dev, unwrap(dmaMapPhyrs(dev, small, DMA_TO_DEVICE, 0)), DMA_TO_DEVICE, 0);
    return 0;
  }, () => undefined, 3);
  rows.push({ name: 'dmaMapPhyrs map + unmap of 256 x 4 KiB', value: (smallPhyrs * 1e6) / (reps * 256), unit: 'ns/page',
    note: `${((smallPhyrs * 1e3) / reps).toFixed(1)} us per request; dma-debug off` });

  // 6. dmaMapPhyrs again with dma-debug on, last (its 200 k tracked links would weigh on the GC of
  // the rows above), alternating with dma-debug off so both see the same machine load: the row
  // gives the median of the per-pair on/off time ratios
  const timeOnce = (on: boolean): number => {
    debug.enabled = on;
    const s = process.hrtime.bigint();
    const dl = mapPhyrs();
    const ms = Number(process.hrtime.bigint() - s) / 1e6;
    unmapPhyrs(dl);
    return ms;
  };
  timeOnce(true);
  const onMs: number[] = [], offMs: number[] = [], ratios: number[] = [];
  for (let i = 0; i < 9; i++) {
    const off = timeOnce(false);
    const on = timeOnce(true);
    offMs.push(off);
    onMs.push(on);
    ratios.push(on / off);
  }
  debug.enabled = false;
  const phyrsDebugMs = median(onMs);
  rows.push({ name: 'dmaMapPhyrs, 1 GiB aged 4 KiB, strict, dma-debug on', value: rate(phyrsDebugMs), unit: 'pages/s',
    note: `${phyrsDebugMs.toFixed(0)} ms; the model records each of the ${list.count} links (no kernel dma-debug entry)` });
  rows.push({ name: 'dmaMapPhyrs time, dma-debug on / off (same run)', value: median(ratios), unit: 'x',
    target: { op: '<=', value: 2 }, note: `median of ${ratios.length} alternating pairs; off ${median(offMs).toFixed(0)} ms, on ${phyrsDebugMs.toFixed(0)} ms` });

  return { title: 'DMA mapping designs (strict IOMMU, x86-64 4-level)', rows };
}
