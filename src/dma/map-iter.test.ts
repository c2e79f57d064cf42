import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { allocPhys, gpuBar, makeMachine, phyrs, type IommuMode } from '../../test/fixtures/dma-b-machines.ts';
import { PhyrList, RANGE_MMIO, type Range } from '../phyr/index.ts';
import { DMA_RANGE_BUS, DMA_RANGE_MMIO, DMA_RANGE_RAM, DmaRangeIter, dmaSegmentLimits, type DmaRangeColumns } from './map-iter.ts';
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

/** Columns for fill(), n rows. */
function columns(n: number): DmaRangeColumns {
  return { addrNum: new Float64Array(n), len: new Float64Array(n), flags: new Uint32Array(n), kind: new Uint8Array(n) };
}

/** Every row fill() gives in batches of at most `batch`, as walk() shapes them, or the errno that stopped it. */
function walkFill(it: DmaRangeIter, batch: number): { ranges: Array<[number, bigint, number, number, bigint]>; flags: number[]; errno: string | null } {
  const ranges: Array<[number, bigint, number, number, bigint]> = [];
  const flags: number[] = [];
  const cols = columns(batch);
  for (;;) {
    const r = it.fill(cols, batch);
    if (r.ok && r.value === 0) return { ranges, flags, errno: null };
    // on an error, the rows before the failed range (up to index) are filled
    const k = r.ok ? r.value : it.index + 1 - ranges.length;
    for (let j = 0; j < k; j++) {
      const index = ranges.length;
      const kind = cols.kind[j];
      ranges.push([index, BigInt(cols.addrNum[j]), cols.len[j], kind, kind === DMA_RANGE_BUS ? it.busAddrs.get(index)! : 0n]);
      flags.push(cols.flags[j]);
    }
    if (!r.ok) return { ranges, flags, errno: r.errno };
  }
}

describe('DmaRangeIter.fill', () => {
  const PIECE_KINDS = ['ram', 'bar', 'hole', 'crosses'] as const;

  /**
   * A machine, a device on it and the pieces a random list is made of: RAM pages, pieces of gpu0's
   * P2P BAR (a bus address for nvme0, MMIO through the host bridge for nic0, refused for far0), a
   * hole of the memory map, and a range running past the end of the BAR's region.
   */
  function world(mode: IommuMode, devName: string) {
    const m = makeMachine(mode);
    const pages = Array.from({ length: 6 }, () => allocPhys(m, 1));
    const bar = gpuBar(m);
    const piece = (kind: typeof PIECE_KINDS[number], which: number, off: number, len: number): Range => {
      switch (kind) {
        case 'ram': return { addr: pages[which % pages.length] + BigInt(off), len, flags: 0 };
        case 'bar': return { addr: bar.start + BigInt(which * 2 * PAGE + off), len, flags: bar.flags };
        case 'hole': return { addr: (1n << 50n) + BigInt(off), len, flags: 0 };
        default: return { addr: bar.start + BigInt(bar.len - PAGE + off), len: PAGE + len, flags: bar.flags };
      }
    };
    return { m, dev: m.device(devName), piece };
  }

  const pieceArb = fc.record({
    kind: fc.constantFrom(...PIECE_KINDS),
    which: fc.nat(20),
    off: fc.constantFrom(0, 0x200, PAGE - 8),
    len: fc.integer({ min: 1, max: PAGE }),
    callerMmio: fc.boolean(),
  }, { requiredKeys: ['kind', 'which', 'off', 'len', 'callerMmio'] });

  it('gives the rows, flags, kinds, bus addresses and errors of next(), in any batch size (property, next() as reference)', () => {
    const cases: Array<[IommuMode, string]> = [['strict', 'nvme0'], ['strict', 'nic0'], ['strict', 'far0'], ['none', 'nvme0']];
    for (const [mode, devName] of cases) {
      const { dev, piece } = world(mode, devName);
      fc.assert(fc.property(
        fc.array(pieceArb.filter((p) => p.kind !== 'hole' && p.kind !== 'crosses'), { minLength: 1, maxLength: 24 }),
        fc.option(pieceArb, { nil: null }), fc.nat(24), fc.integer({ min: 1, max: 30 }),
        (good, bad, at, batch) => {
          const ranges = good.map((p) => piece(p.kind, p.which, p.off, p.off + p.len > 2 * PAGE ? 2 * PAGE - p.off : p.len));
          const withCaller = ranges.map((r, i) => (good[i].callerMmio ? { ...r, flags: r.flags ^ RANGE_MMIO } : r));
          if (bad !== null) withCaller.splice(Math.min(at, withCaller.length), 0, piece(bad.kind, bad.which, bad.off, bad.len));
          const list = PhyrList.from(withCaller);
          const ref = new DmaRangeIter(dev, list);
          const want = walk(ref);
          const it = new DmaRangeIter(dev, list);
          const got = walkFill(it, batch);
          expect(got.errno).toBe(want.errno);
          expect(got.ranges).toEqual(want.ranges);
          // a walk that failed stays stopped at its error, by fill() and next() alike
          const errnoOf = (r: { ok: boolean; errno?: string }): string | null => (r.ok ? null : r.errno ?? null);
          expect(errnoOf(it.fill(columns(batch), batch))).toBe(want.errno);
          expect(errnoOf(it.next())).toBe(want.errno);
          expect(errnoOf(ref.next())).toBe(want.errno);
          expect(it.atEnd).toBe(want.errno === null);
          expect(it.index).toBe(ref.index);
          expect(it.callerFlagsMatch).toBe(ref.callerFlagsMatch);
          expect(it.seamsMergeable).toBe(ref.seamsMergeable);
          expect(it.mappedLen).toBe(want.ranges.reduce((s, r) => s + (r[3] === DMA_RANGE_BUS ? 0 : r[2]), 0));
          expect(ref.mappedLen).toBe(it.mappedLen);
          expect(it.kindsSeen).toBe(want.ranges.reduce((m, r) => m | (1 << r[3]), 0));
          expect(ref.kindsSeen).toBe(it.kindsSeen);
          expect(it.index).toBe(ref.index);
          expect([...it.busAddrs]).toEqual([...ref.busAddrs]);
          // the memory's flags, whatever the caller said
          const viaNext = new DmaRangeIter(dev, list);
          const flags: number[] = [];
          for (let r = viaNext.next(); r.ok && r.value; r = viaNext.next()) flags.push(viaNext.flags);
          expect(got.flags).toEqual(flags);
        },
      ), { numRuns: 60 });
    }
  });

  it('seamsMergeable: every seam between mapped ranges on the IOMMU granule, bus ranges skipped (property, bigint reference)', () => {
    for (const mode of ['strict', 'none'] as const) {
      const { dev, piece } = world(mode, 'nvme0');
      const g = mode === 'none' ? 1n : 4096n;
      fc.assert(fc.property(fc.array(pieceArb.filter((p) => p.kind === 'ram' || p.kind === 'bar'), { minLength: 1, maxLength: 16 }), (ps) => {
        const list = PhyrList.from(ps.map((p) => piece(p.kind, p.which, p.off, Math.min(p.len, 2 * PAGE - p.off))));
        const it = new DmaRangeIter(dev, list);
        const rows = walkFill(it, 5);
        expect(rows.errno).toBeNull();
        let want = true;
        let prevEnd = -1n;
        for (const [, a, len, kind] of rows.ranges) {
          if (kind === DMA_RANGE_BUS) continue;
          if (prevEnd >= 0n && (prevEnd % g !== 0n || a % g !== 0n)) want = false;
          prevEnd = a + BigInt(len);
        }
        expect(it.seamsMergeable).toBe(want);
      }), { numRuns: 100 });
    }
  });

  it('walks a source with addresses past 2^53 (one next() per row): the hole there is EINVAL after the rows before it', () => {
    const m = makeMachine('strict');
    const ram = allocPhys(m);
    const list = phyrs([[ram, PAGE], [ram + BigInt(PAGE), 8], [1n << 60n, PAGE]]);
    expect(list.addrFitsNumber).toBe(false);
    const it = new DmaRangeIter(m.device('nvme0'), list);
    const w = walkFill(it, 8);
    expect(w.errno).toBe('EINVAL');
    expect(w.ranges.map((r) => [r[1], r[2], r[3]])).toEqual([[ram, PAGE, DMA_RANGE_RAM], [ram + BigInt(PAGE), 8, DMA_RANGE_RAM]]);
    expect(it.seamsMergeable).toBe(true);
  });

  it('ends a walk stopped by the virt boundary with next()\'s EINVAL, after its rows', () => {
    const m = makeMachine('strict');
    const a = allocPhys(m, 2);
    const list = phyrs([[a, 0x800], [a + 0x2000n, PAGE]]);
    const opts = { virtBoundaryMask: 0xfff };
    const want = walk(new DmaRangeIter(m.device('nvme0'), list, opts));
    const got = walkFill(new DmaRangeIter(m.device('nvme0'), list, opts), 4);
    expect(want.errno).toBe('EINVAL');
    expect(got.errno).toBe('EINVAL');
    expect(got.ranges).toEqual(want.ranges);
    expect(got.ranges.length).toBe(1);
  });

  it('atEnd: false until the walk has nothing left to report, a pending virt-boundary EINVAL included', () => {
    const m = makeMachine('strict');
    const a = allocPhys(m, 2);
    const it = new DmaRangeIter(m.device('nvme0'), phyrs([[a, PAGE], [a + BigInt(2 * PAGE), PAGE]]));
    expect(it.atEnd).toBe(false);
    expect(it.fill(columns(2), 2)).toEqual({ ok: true, value: 2 });
    expect(it.atEnd).toBe(true);
    expect(it.fill(columns(2), 2)).toEqual({ ok: true, value: 0 });
    const cut = new DmaRangeIter(m.device('nvme0'), phyrs([[a, 0x800], [a + 0x2000n, PAGE]]), { virtBoundaryMask: 0xfff });
    expect(cut.fill(columns(4), 4)).toEqual({ ok: true, value: 1 });
    expect(cut.atEnd).toBe(false);
    const r = cut.fill(columns(4), 4);
    expect(r.ok ? null : r.errno).toBe('EINVAL');
  });

  it('refuses columns of the wrong type and a max beyond the columns, naming them', () => {
    const m = makeMachine('strict');
    const it = new DmaRangeIter(m.device('nvme0'), phyrs([[allocPhys(m), PAGE]]));
    expect(() => it.fill({ ...columns(4), kind: new Uint16Array(4) as unknown as Uint8Array }, 4)).toThrow(/cols\.kind must be a Uint8Array/);
    expect(() => it.fill({ ...columns(4), flags: null as unknown as Uint32Array }, 4)).toThrow(/cols\.flags must be a Uint32Array/);
    expect(() => it.fill({ ...columns(4), len: new Float64Array(2) }, 3)).toThrow(/max must be an integer in \[0, 2\]/);
    expect(() => it.fill(columns(4), 1.5)).toThrow(RangeError);
    expect(() => it.fill(null as unknown as DmaRangeColumns, 1)).toThrow(/cols must be DmaRangeColumns/);
    expect(it.fill(columns(4), 0)).toEqual({ ok: true, value: 0 });
    expect(it.index).toBe(-1);
  });
});

