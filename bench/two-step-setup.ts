// The machine and buffer of the DMA mapping benchmarks, shared by dma.bench.ts and the fresh
// process that first-call-map.ts times: 1 GiB of aged 4 KiB anonymous memory, pinned with
// pinUserPhyrs, for an NVMe function behind a strict x86-64 4-level IOMMU, dma-debug off.
import { GiB, KiB, MiB, unwrap } from '../src/base/index.ts';
import { createMachine, type Machine } from '../src/machine/index.ts';
import { FOLL_WRITE, pinUserPhyrs } from '../src/mm/index.ts';
import type { PhyrList } from '../src/phyr/index.ts';
import {
  DMA_BIT_MASK, DMA_TO_DEVICE, DmaIovaState, dmaIovaDestroy, dmaIovaLink, dmaIovaSync, dmaIovaTryAlloc,
  dmaSetMaskAndCoherent,
} from '../src/dma/index.ts';
import type { Device } from '../src/pci/index.ts';
import { dmaDebugOf } from '../src/dma/internal.ts';

export interface DmaBenchSetup {
  readonly m: Machine;
  readonly dev: Device;
  readonly proc: ReturnType<Machine['newProcess']>;
  readonly va: bigint;
  /** 1 GiB pinned as a phyr list. */
  readonly list: PhyrList;
}

export function dmaBenchSetup(): DmaBenchSetup {
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
  dmaDebugOf(dev).enabled = false;
  const proc = m.newProcess();
  const va = unwrap(proc.mmap({ len: GiB, backing: 'anon', populate: true }));
  const list = unwrap(pinUserPhyrs(proc, va, GiB, FOLL_WRITE));
  return { m, dev, proc, va, list };
}

/** The two-step map of a whole list as a driver writes it: one window, one link per range, one sync. */
export function twoStepMap(dev: Device, list: PhyrList): { st: DmaIovaState; len: number } {
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

export function twoStepUnmap(dev: Device, x: { st: DmaIovaState; len: number }): void {
  dmaIovaDestroy(dev, x.st, x.len, DMA_TO_DEVICE, 0);
}
