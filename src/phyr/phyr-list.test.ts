import { describe, expect, it } from 'vitest';
import { PhyrList, PhyrListBuilder } from './phyr-list.ts';
import { RANGE_MMIO } from './flags.ts';
import { refSegments, segsOnly, walkCursor } from '../../test/fixtures/phyr-reference.ts';

describe('PhyrListBuilder', () => {
  it('merges physically adjacent entries with equal flags, appends otherwise', () => {
    const b = new PhyrListBuilder(1);
    b.push(0x1000, 0x1000, 0);
    b.push(0x2000, 0x1000, 0); // adjacent: merges
    b.push(0x3000, 0x1000, RANGE_MMIO); // flags differ
    b.push(0x5000, 0x10, RANGE_MMIO); // gap
    b.pushNoMerge(0x5010, 0x10, RANGE_MMIO); // adjacent but no merge
    expect(b.count).toBe(4);
    expect(b.totalLen).toBe(0x3020);
    const l = b.build();
    expect([...l]).toEqual([
      { addr: 0x1000n, len: 0x2000, flags: 0 },
      { addr: 0x3000n, len: 0x1000, flags: RANGE_MMIO },
      { addr: 0x5000n, len: 0x10, flags: RANGE_MMIO },
      { addr: 0x5010n, len: 0x10, flags: RANGE_MMIO },
    ]);
    expect(l.kernelBytes).toBe(64);
    expect(l.layout).toBe('phyr');
    expect(l.addrFitsNumber).toBe(true);
    expect(l.addrNumAt(1)).toBe(0x3000);
    expect(l.lenAt(3)).toBe(0x10);
    expect(l.flagsAt(0)).toBe(0);
    expect(() => b.push(0, 1, 0)).toThrow(TypeError);
  });

  it('grows past its initial capacity and keeps every entry', () => {
    const b = PhyrList.builder(2);
    for (let i = 0; i < 1000; i++) b.push(i * 8192, 4096, i % 3);
    const l = b.build();
    expect(l.count).toBe(1000);
    for (let i = 0; i < 1000; i += 97) expect(l.at(i)).toEqual({ addr: BigInt(i * 8192), len: 4096, flags: i % 3 });
  });

  it('keeps exact 64-bit addresses through pushBig and merges them exactly', () => {
    const b = PhyrList.builder();
    const hi = 0xffff_ffff_ffff_0000n;
    b.pushBig(hi, 0x100, 0);
    b.pushBig(hi + 0x100n, 0x100, 0); // merges
    b.pushBig(hi + 0x201n, 0x10, 0); // 1-byte gap: rounding must not merge it
    b.pushBig((1n << 53n) - 0x1000n, 0x2000, 0); // crosses 2^53
    b.pushBig((1n << 53n) + 0x1000n, 0x10, 0); // adjacent to the crossing entry: merges
    const l = b.build();
    expect(l.addrFitsNumber).toBe(false);
    expect([...l].map((r) => [r.addr, r.len])).toEqual([
      [hi, 0x200], [hi + 0x201n, 0x10], [(1n << 53n) - 0x1000n, 0x2010],
    ].map(([a, n]) => [a, Number(n)]));
    // the cursor's exact addr too, with a boundary split on a 64 KiB line
    const segs = segsOnly(walkCursor(l.cursor({ segBoundaryMask: 0xffffn })));
    expect(segs[0]).toEqual({ addr: hi, len: 0x200, flags: 0 });
    expect(segs[2]).toEqual({ addr: (1n << 53n) - 0x1000n, len: 0x1000, flags: 0 });
    expect(segs[3]).toEqual({ addr: 1n << 53n, len: 0x1010, flags: 0 });
    for (const o of [{ segBoundaryMask: 0xfffn }, { virtBoundaryMask: 0xff, merge: true }, { maxSegmentLen: 0x300, skip: 0x155 }]) {
      expect(walkCursor(l.cursor(o), 0x777)).toEqual(refSegments([...l], o, 0x777));
    }
  });

  it('rejects bad arguments naming them', () => {
    const b = new PhyrListBuilder();
    expect(() => b.push(-1, 1, 0)).toThrow(/addr.*-1/);
    expect(() => b.push(1.5, 1, 0)).toThrow(/addr.*1\.5/);
    expect(() => b.push(0, 0, 0)).toThrow(/len.*0/);
    expect(() => b.push(0, -4096, 0)).toThrow(/len.*-4096/);
    expect(() => b.push(0, 1, -1)).toThrow(/flags.*-1/);
    expect(() => b.push(2 ** 53 - 1, 2, 0)).toThrow(/pushBig/);
    expect(() => b.push('1' as unknown as number, 1, 0)).toThrow(TypeError);
    expect(() => b.pushBig(1 as unknown as bigint, 1, 0)).toThrow(/addr must be a bigint/);
    expect(() => b.pushBig(-1n, 1, 0)).toThrow(RangeError);
    expect(() => b.pushBig(1n << 64n, 1, 0)).toThrow(RangeError);
    expect(() => b.pushBig((1n << 64n) - 1n, 2, 0)).toThrow(/2\^64/);
    expect(() => PhyrList.from([{ addr: 0n, len: 1 }, { addr: 5 as unknown as bigint, len: 1 }])).toThrow(/ranges\[1\]\.addr/);
    expect(() => PhyrList.from([{ addr: 0n, len: 0.5 }])).toThrow(/ranges\[0\]\.len.*0\.5/);
    expect(() => PhyrList.from([{ addr: 0n, len: 1, flags: 2 ** 32 }])).toThrow(/ranges\[0\]\.flags/);
    expect(() => PhyrList.from(5 as unknown as [])).toThrow(/ranges must be/);
    expect(b.count).toBe(0);
  });

  it('from() keeps entries as given, without merging', () => {
    const l = PhyrList.from([{ addr: 0n, len: 10 }, { addr: 10n, len: 10 }, { addr: 100n, len: 1, flags: 7 }]);
    expect(l.count).toBe(3);
    expect(l.at(2)).toEqual({ addr: 100n, len: 1, flags: 7 });
    expect(l.totalLen).toBe(21);
    expect(() => l.at(3)).toThrow(/i must be/);
    expect(PhyrList.empty().count).toBe(0);
  });
});

describe('PhyrList cursor', () => {
  const entries = [
    { addr: 0x0n, len: 0x3000, flags: 0 },
    { addr: 0x3000n, len: 0x800, flags: 0 },
    { addr: 0x3800n, len: 0x800, flags: 1 },
    { addr: 0x10200n, len: 0x1e00, flags: 1 },
    { addr: 0x12000n, len: 0x2000, flags: 1 },
  ];
  const l = PhyrList.from(entries);

  it('walks the entries as stored by default', () => {
    expect(segsOnly(walkCursor(l.cursor()))).toEqual(entries);
  });

  it('matches the byte-by-byte reference under every combination of limits', () => {
    const optsList = [
      { merge: true },
      { maxSegmentLen: 0x1000 },
      { maxSegmentLen: 0x1100, merge: true },
      { segBoundaryMask: 0xfffn },
      { segBoundaryMask: 0x1fffn, merge: true, maxSegmentLen: 0xc00 },
      { virtBoundaryMask: 0xfff },
      { virtBoundaryMask: 0xfff, merge: true },
      { budget: 0x2500 },
      { budget: 0x2500, skip: 0x123, merge: true, maxSegmentLen: 0x700 },
      { skip: 0x3000 },
    ];
    for (const o of optsList) {
      expect(walkCursor(l.cursor(o), 0x1234), JSON.stringify(o, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v)))
        .toEqual(refSegments(entries, o, 0x1234));
    }
  });

  it('stops at a virt-boundary gap and resumes', () => {
    const c = l.cursor({ virtBoundaryMask: 0xfff, merge: true });
    expect([c.addr, c.len]).toEqual([0n, 0x3800]); // flags change at 0x3800, seam 0x3000 is aligned
    expect(c.next()).toBe(false); // the seam at 0x3800 is not 4 KiB aligned
    expect(c.stopReason).toBe('virt-boundary');
    expect(c.consumed).toBe(0x3800);
    c.resume();
    expect([c.addr, c.len, c.flags]).toEqual([0x3800n, 0x800, 1]);
    expect(c.next()).toBe(false); // the seam 0x4000 -> 0x10200 is a gap too
    expect(c.stopReason).toBe('virt-boundary');
    c.resume(0x100);
    expect([c.addr, c.len]).toEqual([0x10200n, 0x100]);
    c.next();
    expect(c.stopReason).toBe('budget');
  });

  it('clone saves the position; advance() moves inside a segment', () => {
    const c = l.cursor({ merge: true });
    c.advance(0x1000);
    expect(c.addr).toBe(0x1000n);
    expect(c.len).toBe(0x2800);
    expect(c.consumed).toBe(0x1000);
    const d = c.clone();
    c.next();
    expect(d.addr).toBe(0x1000n);
    expect(c.addr).toBe(0x3800n);
    expect(() => c.advance(0)).toThrow(/bytes/);
    expect(() => c.advance(c.len + 1)).toThrow(/bytes/);
    expect(() => l.cursor({ maxSegmentLen: 0 })).toThrow(/maxSegmentLen/);
    expect(() => l.cursor({ segBoundaryMask: 0x1000n })).toThrow(/segBoundaryMask/);
    expect(() => l.cursor({ virtBoundaryMask: 6 })).toThrow(/virtBoundaryMask/);
    expect(() => l.cursor({ skip: l.totalLen + 1 })).toThrow(/skip/);
    expect(() => l.cursor({ budget: -1 })).toThrow(/budget/);
  });
});
