// dma_map_ops families side by side (issue: "a batch map of 1 GiB of aged 4 KiB memory through each
// family beside dma-iommu, in pages per second"): for each configuration a fresh aged machine (8 GiB,
// seed 1), 1 GiB of anonymous memory pinned with pinUserPhyrs, then dmaMapPhyrs of the whole list
// (the batch path: a family's map_sg with no scatterlist in between; dma-iommu's two-step window) and
// its unmap outside the timed region. dma-debug off. No targets: the issue gives none; the figures
// are for reference beside dma-iommu's in the same run.
// Run: npx tsx --expose-gc bench/run.ts dma-ops

import type { BenchRow, BenchSection } from './harness.ts';
import { GiB, KiB, MiB, unwrap } from '../src/base/index.ts';
import { createMachine, type MachineConfig } from '../src/machine/index.ts';
import { FOLL_WRITE, pinUserPhyrs } from '../src/mm/index.ts';
import { PhyrList, type Range } from '../src/phyr/index.ts';
import { DMA_BIT_MASK, DMA_TO_DEVICE, dmaMapPhyrs, dmaSetMaskAndCoherent, dmaUnmapPhyrs } from '../src/dma/index.ts';
import { dmaDebugOf } from '../src/dma/internal.ts';

const PAGE = 4096;

interface Family {
  readonly name: string;
  readonly mask: 32 | 64;
  readonly cfg: Partial<MachineConfig>;
  /** Map only this many bytes of the list (a table that cannot hold 1 GiB). */
  readonly bytes?: number;
  readonly note?: string;
}

const FAMILIES: readonly Family[] = [
  { name: 'dma-iommu (strict, two-step window)', mask: 64, cfg: { iommu: { format: 'x86-64', levels: 4, mode: 'strict' } } },
  { name: 'dma-direct', mask: 64, cfg: {} },
  { name: 'ARM32 iommu_ops (bitmap IOVA)', mask: 32, cfg: { iommu: { format: 'arm-lpae', mode: 'strict', arm32Mapping: { base: 0x1000n, size: 1n << 32n } } },
    note: 'no two-step API: dmaMapPhyrs maps per range' },
  { name: 'GART (force, merge off)', mask: 32, cfg: { dmaOps: { kind: 'gart', busBase: 0xc000_0000n, pages: 0x3_ff00, force: true } } },
  { name: 'GART (force, iommu=merge)', mask: 32, cfg: { dmaOps: { kind: 'gart', busBase: 0xc000_0000n, pages: 0x3_ff00, force: true, merge: true } } },
  { name: 'TCE (4 KiB TCEs, 2 GiB window)', mask: 64, cfg: { dmaOps: { kind: 'tce', offset: 0, size: 1 << 19, pageShift: 12 } } },
  { name: 'TCE + DDW covering RAM', mask: 64,
    cfg: { dmaOps: { kind: 'tce', offset: 0, size: 2048, pageShift: 12, ddw: { dmaOffset: 1n << 59n, busDmaLimit: (1n << 59n) + 16n * BigInt(GiB) } } } },
  { name: 'Xen swiotlb (identity p2m)', mask: 64, cfg: { dmaOps: { kind: 'xen-swiotlb', p2m: [] } } },
  { name: 'Xen grants (256 grant frames)', mask: 64, cfg: { dmaOps: { kind: 'xen-grant', backendDomid: 1, frames: 256 } },
    bytes: 256 * MiB, note: '256 MiB: 256 grant frames hold 131072 references, fewer than 1 GiB of pages' },
];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function prefix(list: PhyrList, bytes: number): PhyrList {
  const out: Range[] = [];
  let left = bytes;
  for (let i = 0; i < list.count && left > 0; i++) {
    const len = Math.min(list.lenAt(i), left);
    out.push({ addr: list.addrAt(i), len, flags: 0 });
    left -= len;
  }
  return PhyrList.from(out);
}

export default function dmaOpsBench(): BenchSection {
  const rows: BenchRow[] = [];
  for (const f of FAMILIES) {
    const m = createMachine({
      ramBytes: 8 * GiB, seed: 1, aged: true, cpu: { vendor: 'intel' }, swiotlb: { bytes: 4 * MiB },
      pci: [
        { name: 'hb0', type: 'host-bridge', vendor: 0x8086, device: 0x2030 },
        { name: 'rp0', type: 'root-port', parent: 'hb0' },
        { name: 'nvme0', type: 'endpoint', parent: 'rp0', bars: [{ bytes: 16 * KiB }] },
      ],
      ...f.cfg,
    } as MachineConfig);
    const dev = m.device('nvme0');
    unwrap(dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(f.mask)));
    dmaDebugOf(dev).enabled = false;
    const proc = m.newProcess();
    const va = unwrap(proc.mmap({ len: GiB, backing: 'anon', populate: true }));
    const full = unwrap(pinUserPhyrs(proc, va, GiB, FOLL_WRITE));
    const list = f.bytes !== undefined ? prefix(full, f.bytes) : full;
    const pages = list.totalLen / PAGE;
    const t: number[] = [];
    let segs = 0;
    let how = '';
    for (let r = 0; r < 4; r++) {
      const s = process.hrtime.bigint();
      const mp = unwrap(dmaMapPhyrs(dev, list, DMA_TO_DEVICE, 0));
      const ms = Number(process.hrtime.bigint() - s) / 1e6;
      if (r > 0) t.push(ms);
      segs = mp.list.count;
      how = mp.how;
      dmaUnmapPhyrs(dev, mp, DMA_TO_DEVICE, 0);
    }
    const ms = median(t);
    rows.push({
      name: `dmaMapPhyrs ${f.bytes !== undefined ? `${f.bytes / MiB} MiB` : '1 GiB'} aged 4 KiB: ${f.name}`, value: pages / (ms / 1e3), unit: 'pages/s',
      note: `${ms.toFixed(0)} ms; ${list.count} phyr entries -> ${segs} DMA segments (${how}), ${f.mask}-bit mask${f.note ? `; ${f.note}` : ''}`,
    });
  }
  return { title: 'dma_map_ops families: batch map of aged 4 KiB memory (dmaMapPhyrs)', rows };
}
