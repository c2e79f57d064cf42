import { describe, expect, it } from 'vitest';
import { allocPhys, gpuBar, makeMachine, phyrs } from '../../test/fixtures/dma-b-machines.ts';
import { PhyrList, RANGE_MMIO } from '../phyr/index.ts';
import { DMA_RANGE_BUS, DMA_RANGE_MMIO, DMA_RANGE_RAM, DmaRangeIter, dmaSegmentLimits } from './map-iter.ts';
import { dmaSetMaxSegSize, dmaSetSegBoundary } from './mask.ts';

const PAGE = 4096;

/** Every (index, addr, len, kind, bus) the iterator yields, or the errno that stopped it. */
function walk(it: DmaRangeIter): { ranges: Array<[number, bigint, number, number, bigint]>; errno: string | null } {
  const ranges: Array<[number, bigint, number, number, bigint]> = [];
  for (;;) {
    const r = it.next();
    if (!r.ok) return { ranges, errno: r.errno };
    if (!r.value) return { ranges, errno: null };
    ranges.push([it.index, it.addr, it.len, it.kind, it.busAddr]);
  }
}

describe('DmaRangeIter', () => {
  it('classifies RAM, MMIO, and P2P by bus address or through the host bridge, from the memory map', () => {
    const m = makeMachine('strict');
    const ram = allocPhys(m);
    const bar = gpuBar(m);
    // nvme0 sits under the switch with gpu0: bus address; nic0 reaches it through the host bridge
    const list = PhyrList.from([{ addr: ram, len: PAGE }, { addr: bar.start, len: PAGE }]);
    const viaSwitch = walk(new DmaRangeIter(m.device('nvme0'), list));
    expect(viaSwitch.errno).toBeNull();
    expect(viaSwitch.ranges.map((r) => r[3])).toEqual([DMA_RANGE_RAM, DMA_RANGE_BUS]);
    expect(viaSwitch.ranges[1][4]).not.toBe(0n);
    expect(viaSwitch.ranges[1][4]).not.toBe(bar.start);
    const viaHostBridge = walk(new DmaRangeIter(m.device('nic0'), list));
    expect(viaHostBridge.ranges.map((r) => r[3])).toEqual([DMA_RANGE_RAM, DMA_RANGE_MMIO]);
    expect(viaHostBridge.ranges[1][4]).toBe(0n);
  });

  it('ignores the caller\'s flags and says whether they matched', () => {
    const m = makeMachine('strict');
    const ram = allocPhys(m);
    const it = new DmaRangeIter(m.device('nvme0'), phyrs([[ram, PAGE]], RANGE_MMIO));
    expect(walk(it).ranges.map((r) => r[3])).toEqual([DMA_RANGE_RAM]);
    expect(it.callerFlagsMatch).toBe(false);
  });

  it('stops with EINVAL at a range in a hole, after the ranges before it', () => {
    const m = makeMachine('strict');
    const ram = allocPhys(m);
    const hole = 1n << 50n;
    const w = walk(new DmaRangeIter(m.device('nvme0'), phyrs([[ram, PAGE], [hole, PAGE]])));
    expect(w.ranges.length).toBe(1);
    expect(w.errno).toBe('EINVAL');
  });

  it('applies segment limits through the walk: the device\'s max segment size and boundary', () => {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    dmaSetMaxSegSize(dev, 2 * PAGE);
    dmaSetSegBoundary(dev, 0xffffn);
    const base = allocPhys(m, 4); // 16 pages, 64 KiB aligned at least to a page
    const lim = dmaSegmentLimits(dev);
    expect(lim.maxSegmentLen).toBe(2 * PAGE);
    expect(lim.segBoundaryMask).toBe(0xffffn);
    expect(lim.mergeBoundary).toBe(PAGE - 1);
    const w = walk(new DmaRangeIter(dev, phyrs([[base + 0x800n, 5 * PAGE]]), lim));
    expect(w.errno).toBeNull();
    // brute force: cut at every 2-page length and every 64 KiB line
    const want: Array<[bigint, number]> = [];
    let a = base + 0x800n;
    let left = 5 * PAGE;
    while (left > 0) {
      const toLine = Number(((a | 0xffffn) + 1n) - a);
      const n = Math.min(left, 2 * PAGE, toLine);
      want.push([a, n]);
      a += BigInt(n);
      left -= n;
    }
    expect(w.ranges.map((r) => [r[1], r[2]])).toEqual(want);
  });

  it('refuses what is not a range source', () => {
    const m = makeMachine('strict');
    expect(() => new DmaRangeIter(m.device('nvme0'), {} as PhyrList)).toThrow(/source must be a range source/);
  });
});
