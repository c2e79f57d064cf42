// IOVA allocator properties (drivers/iommu/iova.c: alloc_iova(), alloc_iova_fast(); dma-iommu.c:
// iommu_dma_alloc_iova(), queue_iova()): live allocations never overlap each
// other or a reserved region, are granule- and size-aligned, stay below the limit, are never 0;
// in lazy mode a freed IOVA is not handed out again before the flush queue has flushed it.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Device } from '../src/pci/index.ts';
import {
  createIommu, iommuDmaAllocIova, iommuDmaFlushQueueTick, iommuDmaFreeIova, IommuIotlbGather, type IommuConfig,
} from '../src/iommu/internal.ts';
import { TestMachine } from './fixtures/iommu-machine.ts';

type Op = { kind: 'alloc'; pages: number; limitSel: number } | { kind: 'free'; pick: number } | { kind: 'tick'; ms: number };

const arbOp: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('alloc' as const), pages: fc.oneof(fc.integer({ min: 1, max: 40 }), fc.integer({ min: 1, max: 5000 })), limitSel: fc.integer({ min: 0, max: 3 }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('free' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('tick' as const), ms: fc.integer({ min: 1, max: 12 }) }) },
);

const LIMITS = [(1n << 64n) - 1n, 0xffffffffn, 0x3ffffffn, 0xfffffffffn];

function roundPages(p: number): number {
  return p < 32 ? 2 ** Math.ceil(Math.log2(p)) : p;
}

describe.each([
  ['strict, rcaches on', { mode: 'strict' } as Partial<IommuConfig>],
  ['strict, rcaches off', { mode: 'strict', rcaches: false } as Partial<IommuConfig>],
  ['lazy (flush queue)', { mode: 'lazy' } as Partial<IommuConfig>],
  ['arm-lpae lazy', { mode: 'lazy', format: 'arm-lpae' } as Partial<IommuConfig>],
])('iommuDmaAllocIova properties: %s', (_name, cfg) => {
  it('never overlap, aligned, below the limit, never 0, never reserved; no reuse before the flush', () => {
    fc.assert(fc.property(fc.array(arbOp, { minLength: 1, maxLength: 120 }), fc.boolean(), (ops, pci32) => {
      const mm = new TestMachine();
      const iommu = createIommu(mm, { format: 'x86-64', ...cfg } as IommuConfig);
      const dev = new Device('dev');
      dev.pci32BitWorkaround = pci32;
      const d = iommu.probeDevice(dev);
      iommu.reserveRegion(0x2000000n, 0x2400000n, 'bridge-window');
      const reserved = iommu.reservedRegions;
      const live: Array<{ iova: bigint; len: bigint }> = [];
      const waiting: Array<{ iova: bigint; len: bigint }> = []; // queued in the flush queue
      const lazy = d.type === 'dma-fq';
      for (const op of ops) {
        if (op.kind === 'alloc') {
          const limit = LIMITS[op.limitSel];
          const size = op.pages * 4096;
          const a = iommuDmaAllocIova(d, size, limit, dev);
          if (a === 0n) continue;
          const len = BigInt(roundPages(op.pages)) * 4096n;
          const alignPages = 2 ** Math.ceil(Math.log2(op.pages));
          expect(a % (BigInt(alignPages) * 4096n)).toBe(0n);
          expect(a + len - 1n <= limit && a + len - 1n <= d.geometry.apertureEnd).toBe(true);
          for (const o of [...live, ...waiting]) expect(a + len <= o.iova || o.iova + o.len <= a).toBe(true);
          for (const r of reserved) expect(a + len <= r.start || r.end <= a).toBe(true);
          live.push({ iova: a, len });
        } else if (op.kind === 'free') {
          if (live.length === 0) continue;
          const [x] = live.splice(op.pick % live.length, 1);
          const g = new IommuIotlbGather();
          g.queued = lazy;
          iommuDmaFreeIova(d, x.iova, Number(x.len), g);
          if (lazy) waiting.push(x);
        } else {
          const before = mm.stats.flushQueueFlushes;
          iommuDmaFlushQueueTick(d, op.ms);
          if (mm.stats.flushQueueFlushes !== before) waiting.length = 0;
        }
        if (lazy) {
          expect(d.fq?.length).toBe(waiting.length); // nothing leaves the queue without a flush
        }
      }
      expect(mm.stats.iovaAllocs - mm.stats.iovaFrees).toBe(live.length + waiting.length);
    }), { numRuns: 40 });
  });
});
