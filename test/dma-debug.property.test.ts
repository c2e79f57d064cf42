// dma-debug properties (reference 14): a correct random sequence of map / unmap / sync calls on a
// device leaves no DMA-DEBUG event; the same sequence with exactly one misuse injected at a random
// point leaves exactly one, whose message names that misuse. Run on an IOMMU machine, a
// force-bounce swiotlb machine and a non-coherent device on dma-direct (all need every unmap).
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { GiB, KiB, MiB } from '../src/base/index.ts';
import { createMachine, type Machine, type MachineConfig } from '../src/machine/index.ts';
import type { PciNodeConfig } from '../src/pci/index.ts';
import {
  DMA_BIDIRECTIONAL, DMA_BIT_MASK, DMA_FROM_DEVICE, DMA_TO_DEVICE, dmaMapPhys, dmaSetMask, dmaSyncSingleForCpu,
  dmaSyncSingleForDevice, dmaUnmapPhys, type DmaDebugEntry,
} from '../src/dma/index.ts';

const PCI: PciNodeConfig[] = [
  { name: 'hb0', type: 'host-bridge', vendor: 0x8086, device: 0x2030 },
  { name: 'rp0', type: 'root-port', parent: 'hb0' },
  { name: 'nvme0', type: 'endpoint', parent: 'rp0', bars: [{ bytes: 16 * KiB }] },
];

type Setup = 'iommu-strict' | 'swiotlb-force' | 'direct-noncoherent';
const CONFIGS: Record<Setup, MachineConfig> = {
  'iommu-strict': { ramBytes: 2 * GiB, pci: PCI, swiotlb: { bytes: 4 * MiB }, iommu: { format: 'x86-64', mode: 'strict' } },
  'swiotlb-force': { ramBytes: 2 * GiB, pci: PCI, swiotlb: { bytes: 4 * MiB, force: true } },
  'direct-noncoherent': { ramBytes: 2 * GiB, pci: PCI, swiotlb: { bytes: 4 * MiB } },
};

const DIRS = [DMA_BIDIRECTIONAL, DMA_TO_DEVICE, DMA_FROM_DEVICE];

type Op =
  | { kind: 'map'; slot: number; pages: number; off: number; dir: number }
  | { kind: 'unmap'; pick: number }
  | { kind: 'sync'; pick: number; toCpu: boolean; from: number; len: number };

const arbOp: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('map' as const), slot: fc.nat({ max: 31 }), pages: fc.integer({ min: 1, max: 4 }), off: fc.nat({ max: 4095 }), dir: fc.constantFrom(...DIRS) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('unmap' as const), pick: fc.nat() }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('sync' as const), pick: fc.nat(), toCpu: fc.boolean(), from: fc.double({ min: 0, max: 1, noNaN: true }), len: fc.double({ min: 0, max: 1, noNaN: true }) }) },
);

type Misuse = 'wrong-size' | 'wrong-direction' | 'double-unmap' | 'never-mapped' | 'sync-outside' | 'leak';
const MISUSE_MESSAGE: Record<Misuse, RegExp> = {
  'wrong-size': /frees DMA memory with different size/,
  'wrong-direction': /frees DMA memory with different direction/,
  'double-unmap': /tries to free DMA memory it has not allocated/,
  'never-mapped': /tries to free DMA memory it has not allocated/,
  'sync-outside': /syncs DMA memory outside allocated range/,
  'leak': /pending DMA allocations while released from device \[count=1\]/,
};

interface Live { addr: bigint; size: number; dir: number }

/** Runs ops on a fresh machine, the misuse (if any) before op `at`; returns the DMA-DEBUG messages. */
function run(setup: Setup, ops: readonly Op[], misuse: Misuse | null, at: number): string[] {
  const m: Machine = createMachine({ ...CONFIGS[setup], seed: 5 });
  const dev = m.device('nvme0');
  if (setup === 'direct-noncoherent') dev.dmaCoherent = false;
  dmaSetMask(dev, DMA_BIT_MASK(64));
  const base = m.regions.find((r) => r.kind === 'ram' && r.len >= 64 * MiB)!.start + 0x100000n;
  const live: Live[] = [];
  const map = (slot: number, size: number, off: number, dir: number): Live => {
    const r = dmaMapPhys(dev, base + BigInt(slot * 0x10000 + off), size, dir);
    if (!r.ok) throw new Error(`map failed: ${r.errno}`);
    return { addr: r.value, size, dir };
  };
  const injectMisuse = (what: Misuse): void => {
    if (what === 'never-mapped') {
      let addr = 0x7654000n;
      while (live.some((l) => l.addr === addr)) addr += 0x1000n;
      dmaUnmapPhys(dev, addr, 4096, DMA_TO_DEVICE);
      return;
    }
    const own = map(40, 8192, 0, DMA_TO_DEVICE);
    if (what === 'wrong-size') dmaUnmapPhys(dev, own.addr, own.size - 1, own.dir);
    else if (what === 'wrong-direction') dmaUnmapPhys(dev, own.addr, own.size, DMA_BIDIRECTIONAL);
    else if (what === 'double-unmap') {
      dmaUnmapPhys(dev, own.addr, own.size, own.dir);
      dmaUnmapPhys(dev, own.addr, own.size, own.dir);
    } else if (what === 'sync-outside') {
      dmaSyncSingleForCpu(dev, own.addr + 4096n, 8192, own.dir);
      dmaUnmapPhys(dev, own.addr, own.size, own.dir);
    }
    // 'leak': `own` is never unmapped
  };
  ops.forEach((op, i) => {
    if (misuse !== null && i === at) injectMisuse(misuse);
    if (op.kind === 'map') {
      live.push(map(op.slot, op.pages * 4096 - (op.off % 4096 === 0 ? 0 : op.off), op.off, op.dir));
    } else if (live.length > 0 && op.kind === 'unmap') {
      const [l] = live.splice(op.pick % live.length, 1);
      dmaUnmapPhys(dev, l.addr, l.size, l.dir);
    } else if (live.length > 0 && op.kind === 'sync') {
      const l = live[op.pick % live.length];
      const from = Math.min(l.size - 1, Math.floor(op.from * l.size));
      const len = Math.max(1, Math.floor(op.len * (l.size - from)));
      if (op.toCpu) dmaSyncSingleForCpu(dev, l.addr + BigInt(from), len, l.dir);
      else dmaSyncSingleForDevice(dev, l.addr + BigInt(from), len, l.dir);
    }
  });
  if (misuse !== null && at >= ops.length) injectMisuse(misuse);
  for (const l of live) dmaUnmapPhys(dev, l.addr, l.size, l.dir);
  m.teardown();
  return m.events.list('DMA-DEBUG').map((e) => e.message);
}

describe('dma-debug: exactly one report per injected misuse, none without', () => {
  it.each(Object.keys(CONFIGS) as Setup[])('%s', (setup) => {
    fc.assert(fc.property(
      fc.array(arbOp, { minLength: 0, maxLength: 30 }),
      fc.constantFrom(...(Object.keys(MISUSE_MESSAGE) as Misuse[])),
      fc.nat(),
      (ops, misuse, atSeed) => {
        expect(run(setup, ops, null, 0)).toEqual([]);
        const msgs = run(setup, ops, misuse, atSeed % (ops.length + 1));
        expect(msgs).toHaveLength(1);
        expect(msgs[0]).toMatch(MISUSE_MESSAGE[misuse]);
        expect(msgs[0]).toMatch(/^nvme0: DMA-API: /);
      },
    ), { numRuns: 100 });
  });
});

describe('dma-debug CPU-write check: the physical-address index agrees with a scan of every mapping', () => {
  /** The scan debugDmaCheckCpuWrite did before it had an index. */
  const bruteForce = (entries: readonly DmaDebugEntry[], phys: bigint, len: number): number =>
    entries.filter((e) => e.deviceOwns && (e.bounced || !e.coherent)
      && e.paddr < phys + BigInt(len) && e.paddr + BigInt(e.size) > phys).length;

  it.each(Object.keys(CONFIGS) as Setup[])('%s', (setup) => {
    fc.assert(fc.property(
      fc.array(fc.tuple(arbOp, fc.nat(), fc.integer({ min: -8192, max: 20000 }), fc.integer({ min: 1, max: 20000 })), { minLength: 1, maxLength: 40 }),
      (steps) => {
        const m = createMachine({ ...CONFIGS[setup], seed: 6 });
        const dev = m.device('nvme0');
        if (setup === 'direct-noncoherent') dev.dmaCoherent = false;
        dmaSetMask(dev, DMA_BIT_MASK(64));
        const base = m.regions.find((r) => r.kind === 'ram' && r.len >= 64 * MiB)!.start + 0x100000n;
        const live: Array<Live & { phys: bigint }> = [];
        let expected = 0;
        for (const [op, wpick, wdelta, wlen] of steps) {
          if (op.kind === 'map') {
            const size = op.pages * 4096 - (op.off % 4096 === 0 ? 0 : op.off);
            const phys = base + BigInt(op.slot * 0x10000 + op.off);
            const r = dmaMapPhys(dev, phys, size, op.dir);
            if (r.ok) live.push({ addr: r.value, size, dir: op.dir, phys });
          } else if (live.length > 0 && op.kind === 'unmap') {
            const [l] = live.splice(op.pick % live.length, 1);
            dmaUnmapPhys(dev, l.addr, l.size, l.dir);
          } else if (live.length > 0 && op.kind === 'sync') {
            const l = live[op.pick % live.length];
            if (op.toCpu) dmaSyncSingleForCpu(dev, l.addr, l.size, l.dir);
            else dmaSyncSingleForDevice(dev, l.addr, l.size, l.dir);
          }
          // the CPU writes near a live mapping (before, into, across or after it)
          const near = live.length > 0 ? live[wpick % live.length].phys : base;
          const phys = near + BigInt(wdelta) < base ? base : near + BigInt(wdelta);
          expected += bruteForce(m.dmaDebug.entries(), phys, wlen);
          m.mem.fill(phys, wlen, 0x5a);
          expect(m.events.count('DMA-DEBUG')).toBe(expected);
        }
        const msgs = m.events.list('DMA-DEBUG').map((e) => e.message);
        expect(msgs).toHaveLength(expected);
        expect(msgs.every((s) => /CPU writes to a buffer the device owns/.test(s))).toBe(true);
      },
    ), { numRuns: 60 });
  });
});
