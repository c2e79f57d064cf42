// The NVMe path end to end: bio -> requests -> nvmeQueueRq (PRP / SGL in machine memory) -> the
// controller model executes by DMA through the device's own path -> completion; written bytes read
// back through the namespace, read bytes land in memory, nothing stays mapped or held.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { GiB, KiB, MiB, unwrap } from '../src/base/index.ts';
import { createMachine, type Machine } from '../src/machine/index.ts';
import {
  BLK_STS_INVAL, REQ_OP_READ, REQ_OP_WRITE, bioFromRanges, blkSubmitBio, nvmeCompleteRq, nvmeExecute, nvmeProbe,
  nvmeQueueRq, nvmeReadBlocks, nvmeRemove, type NvmeCtrl, type ReqOp,
} from '../src/drivers/index.ts';
import { PhyrList } from '../src/phyr/index.ts';
import { pattern } from './fixtures/dma-machines.ts';

type Mode = 'direct' | 'strict' | 'bounce';

function machine(mode: Mode, sgls: boolean, mdts: number, ramBytes = 2 * GiB): Machine {
  return createMachine({
    ramBytes, seed: 3, cpu: { vendor: 'intel' },
    ...(mode === 'strict' ? { iommu: { format: 'x86-64', levels: 4, mode: 'strict' } } : {}),
    swiotlb: mode === 'bounce' ? { bytes: 16 * MiB, force: true } : { bytes: 4 * MiB },
    pci: [
      { name: 'hb0', type: 'host-bridge', vendor: 0x8086, device: 0x2030 },
      { name: 'rp0', type: 'root-port', parent: 'hb0' },
      { name: 'nvme0', type: 'endpoint', parent: 'rp0', bars: [{ bytes: 16 * KiB }],
        nvme: { sgls, mdts, namespaces: [{ nsid: 1, bytes: 4 * GiB, lbaBytes: 512 }] } },
      { name: 'rp1', type: 'root-port', parent: 'hb0' },
      { name: 'gpu0', type: 'endpoint', parent: 'rp1', bars: [{ bytes: 16 * MiB, p2p: true }] },
      { name: 'hb1', type: 'host-bridge', vendor: 0x1234, device: 0x0001 },
      { name: 'rp3', type: 'root-port', parent: 'hb1' },
      { name: 'gpu1', type: 'endpoint', parent: 'rp3', bars: [{ bytes: 16 * MiB, p2p: true }] },
    ],
  });
}

/** Runs one bio through the driver and the controller; returns the statuses (0 each on success). */
function runBio(ctrl: NvmeCtrl, op: ReqOp, sector: bigint, src: PhyrList): number[] {
  const bio = unwrap(bioFromRanges(op, sector, src));
  const rqs = unwrap(blkSubmitBio(ctrl.queue, bio));
  const out: number[] = [];
  const lim = ctrl.queue.limits;
  for (const rq of rqs) {
    expect(rq.dataLen).toBeLessThanOrEqual(lim.maxHwSectors * 512);
    expect(rq.nrPhysSegments).toBeLessThanOrEqual(lim.maxSegments);
    const io = unwrap(nvmeQueueRq(ctrl, 1, rq));
    expect(io.totalLen).toBe(rq.dataLen);
    expect(io.nrDescriptors).toBeLessThanOrEqual(5);
    if (!ctrl.sglSupported) expect(io.useSgl).toBe(false);
    out.push(unwrap(nvmeExecute(ctrl, io)).status);
    nvmeCompleteRq(ctrl, io);
  }
  return out;
}

function concat(m: Machine, pieces: Array<{ addr: bigint; len: number }>): Uint8Array {
  const out = new Uint8Array(pieces.reduce((s, p) => s + p.len, 0));
  let at = 0;
  for (const p of pieces) { out.set(m.mem.read(p.addr, p.len), at); at += p.len; }
  return out;
}

function expectClean(m: Machine, ctrl: NvmeCtrl): void {
  expect(ctrl.inflight.size).toBe(0);
  expect(ctrl.pools.small.nrActive + ctrl.pools.large.nrActive).toBe(0);
  nvmeRemove(ctrl);
  expect(m.teardown()).toBe(0); // no mapping, link or coherent allocation left
  expect(m.stats.swiotlbSlotsInUse).toBe(0);
  expect(m.events.list().filter((e) => e.kind === 'DMA-DEBUG' || e.kind === 'WARN' || e.kind === 'MODEL-CHECK' || e.kind === 'FAULT')).toEqual([]);
}

describe('NVMe end to end (the acceptance shape)', () => {
  it('16 GiB, strict IOMMU: a write of scattered ranges reaches the namespace byte for byte; reading it back fills memory', () => {
    const m = createMachine({
      ramBytes: 16 * GiB, seed: 1, cpu: { vendor: 'intel' }, iommu: { format: 'x86-64', levels: 4, mode: 'strict' },
      pci: [{ name: 'hb0', type: 'host-bridge', vendor: 0x8086, device: 0x2030 },
        { name: 'rp0', type: 'root-port', parent: 'hb0' },
        { name: 'nvme0', type: 'endpoint', parent: 'rp0', bars: [{ bytes: 16 * KiB }],
          nvme: { sgls: true, mdts: 0, namespaces: [{ nsid: 1, bytes: 4 * GiB, lbaBytes: 512 }] } }],
    });
    const ctrl = unwrap(nvmeProbe(m.device('nvme0')));
    expect(ctrl.queue.limits.maxHwSectors).toBe(256); // the 128 KiB cap behind an IOMMU
    // the first range starts 512 bytes into its pages (PRP1 / the first SGL entry carry the offset)
    const pieces = [0, 1, 2].map((i) => ({ addr: unwrap(m.allocKernelPages(1)) * 4096n + (i === 0 ? 512n : 0n), len: i === 0 ? 7680 : 8192 }));
    pieces.forEach((p, i) => m.mem.write(p.addr, pattern(p.len, i + 1)));
    const bio = unwrap(bioFromRanges(REQ_OP_WRITE, 0n, PhyrList.from(pieces)));
    const rqs = unwrap(blkSubmitBio(ctrl.queue, bio));
    const io = unwrap(nvmeQueueRq(ctrl, 1, rqs[0]));
    expect(io.sqe).toHaveLength(64);
    expect(unwrap(nvmeExecute(ctrl, io))).toEqual({ status: 0 });
    nvmeCompleteRq(ctrl, io);
    expect(nvmeReadBlocks(ctrl, 1, 0n, 47)).toEqual(concat(m, pieces));
    for (const p of pieces) m.mem.fill(p.addr, p.len, 0);
    expect(runBio(ctrl, REQ_OP_READ, 0n, PhyrList.from(pieces))).toEqual([0]);
    pieces.forEach((p, i) => expect(m.mem.read(p.addr, p.len)).toEqual(pattern(p.len, i + 1)));
    expectClean(m, ctrl);
  });

  it('a GPU BAR behind a host bridge without P2P support gets BLK_STS_INVAL', () => {
    const m = machine('direct', true, 0);
    const ctrl = unwrap(nvmeProbe(m.device('nvme0')));
    const bar = m.regions.find((r) => r.name.includes('gpu1'))!;
    const bio = unwrap(bioFromRanges(REQ_OP_WRITE, 0n, PhyrList.from([{ addr: bar.start, len: 8192, flags: bar.rangeFlags }])));
    const rq = unwrap(blkSubmitBio(ctrl.queue, bio))[0];
    expect(nvmeQueueRq(ctrl, 1, rq)).toMatchObject({ ok: false, blkStatus: BLK_STS_INVAL });
    expectClean(m, ctrl);
  });
});

describe('NVMe property: random sources, sizes and offsets on every configuration', () => {
  it('write then read back through the namespace; limits kept; everything freed and unmapped; dma-debug silent', () => {
    const piece = fc.record({ order: fc.integer({ min: 0, max: 3 }), off: fc.integer({ min: 0, max: 7 }), blocks: fc.integer({ min: 1, max: 40 }) });
    fc.assert(fc.property(
      fc.constantFrom<Mode>('direct', 'strict', 'bounce'), fc.boolean(), fc.constantFrom(0, 1, 3, 5),
      fc.array(piece, { minLength: 1, maxLength: 12 }), fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 0, max: 1 << 16 }),
      (mode, sgls, mdts, specs, sector, threshold) => {
        const m = machine(mode, sgls, mdts);
        const ctrl = unwrap(nvmeProbe(m.device('nvme0'), { sglThreshold: threshold }));
        const pieces = specs.map((s, i) => {
          const bytes = 4096 * 2 ** s.order;
          const off = Math.min(s.off * 512, bytes - 512);
          const len = Math.min(s.blocks * 512, bytes - off);
          const base = unwrap(m.allocKernelPages(s.order)) * 4096n;
          m.mem.write(base + BigInt(off), pattern(len, i + 7));
          return { addr: base + BigInt(off), len };
        });
        const want = concat(m, pieces);
        const src = PhyrList.from(pieces);
        expect(runBio(ctrl, REQ_OP_WRITE, BigInt(sector), src).every((s) => s === 0)).toBe(true);
        expect(nvmeReadBlocks(ctrl, 1, BigInt(sector), want.length / 512)).toEqual(want);
        for (const p of pieces) m.mem.fill(p.addr, p.len, 0);
        expect(runBio(ctrl, REQ_OP_READ, BigInt(sector), src).every((s) => s === 0)).toBe(true);
        expect(concat(m, pieces)).toEqual(want);
        expectClean(m, ctrl);
      }), { numRuns: 16 });
  });
});
