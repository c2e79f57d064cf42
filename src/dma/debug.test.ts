// dma-debug's per-device index (ordered by DMA address, chunked) against a brute-force list: every
// lookup the checks use (exact start, containing address, overlapping range, counts) must answer as a
// linear scan over the live mappings would, for any order of adds and removes, with addresses on
// both sides of 2^53 (where Number() rounds) and sizes from 1 byte to 4 GiB.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { TestMachine } from '../../test/fixtures/iommu-machine.ts';
import { Device } from '../pci/index.ts';
import { DmaDebug, type DmaDebugEntry, type DmaDebugType } from './debug.ts';

const TYPES: DmaDebugType[] = ['phys', 'sg', 'iova'];
const BASES = [0x1000n, 0x7fff00000000n, (1n << 53n) - 0x3000n, (1n << 64n) - (1n << 40n)];

type Op =
  | { kind: 'add'; base: number; off: number; size: number; type: number; dir: number; dup: number }
  | { kind: 'remove'; pick: number }
  | { kind: 'drop'; base: number; off: number; len: number }
  | { kind: 'query'; base: number; off: number; size: number; near: number };

const arbOp: fc.Arbitrary<Op> = fc.oneof(
  { weight: 6, arbitrary: fc.record({
    kind: fc.constant('add' as const), base: fc.nat(BASES.length - 1), off: fc.nat(0x40000),
    size: fc.oneof(fc.integer({ min: 1, max: 0x3000 }), fc.constantFrom(4096, 8192, 0x200000, 2 ** 32)),
    type: fc.nat(2), dir: fc.nat(2), dup: fc.nat(),
  }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('remove' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({
    kind: fc.constant('drop' as const), base: fc.nat(BASES.length - 1), off: fc.nat(0x1000000), len: fc.integer({ min: 1, max: 0x1000000 }),
  }) },
  { weight: 3, arbitrary: fc.record({
    kind: fc.constant('query' as const), base: fc.nat(BASES.length - 1), off: fc.nat(0x40000), size: fc.integer({ min: 1, max: 0x5000 }),
    near: fc.nat(),
  }) },
);

function entry(dev: Device, devAddr: bigint, size: number, type: DmaDebugType, dir: number): DmaDebugEntry {
  return {
    dev, type, devAddr, size, paddr: 0n, dir, attrs: 0, sgCallEnts: 0, sgMappedEnts: 0, bounced: false,
    coherent: true, deviceOwns: true, unmapOptional: false,
  };
}

const within = (e: DmaDebugEntry, a: bigint): boolean => e.devAddr <= a && a < e.devAddr + BigInt(e.size);
const byAddr = (a: DmaDebugEntry, b: DmaDebugEntry): number => (a.devAddr < b.devAddr ? -1 : a.devAddr > b.devAddr ? 1 : 0);

describe('DmaDebug index', () => {
  it('answers every lookup as a linear scan of the live mappings would', () => {
    // big: some mappings of 2 MiB and 4 GiB (they widen every containment search); else all below 12 KiB
    fc.assert(fc.property(fc.array(arbOp, { minLength: 1, maxLength: 700, size: 'max' }), fc.boolean(), (ops, big) => {
      const d = new DmaDebug(new TestMachine());
      const dev = new Device('nvme0');
      const other = new Device('nic0');
      const live: DmaDebugEntry[] = []; // insertion order
      for (const op of ops) {
        if (op.kind === 'add') {
          const size = big ? op.size : (op.size % 0x3000) + 1;
          // spread over 16 MiB per base so that most mappings do not overlap; a quarter start where a live one does
          const same = op.dup % 4 === 0 && live.length > 0 ? live[(op.dup >> 2) % live.length] : undefined;
          const addr = same ? same.devAddr : BASES[op.base] + BigInt(op.off & ~0xf) * 64n;
          const e = entry(op.off % 3 === 0 ? other : dev, addr, size, TYPES[op.type], op.dir);
          d.add(e);
          live.push(e);
        } else if (op.kind === 'remove') {
          if (live.length === 0) continue;
          const [e] = live.splice(op.pick % live.length, 1);
          d.remove(e);
          d.remove(e); // a second remove of the same entry changes nothing
        } else if (op.kind === 'drop') {
          // what an IOVA unlink does: forget every mapping of dev overlapping a range, in one pass
          // one in four drops everything the device has (whole chunks empty)
          const all = op.off % 4 === 0;
          const a = all ? 0n : BASES[op.base] + BigInt(op.off);
          const len = all ? Number.MAX_SAFE_INTEGER : op.len;
          const end = all ? 1n << 64n : a + BigInt(len);
          const hits = all ? d.entries(dev) : d.findOverlapping(dev, a, len);
          d.removeSorted(dev, hits);
          const gone = live.filter((e) => e.dev === dev && e.devAddr < end && e.devAddr + BigInt(e.size) > a);
          expect(new Set(hits)).toEqual(new Set(gone));
          for (const e of gone) live.splice(live.indexOf(e), 1);
          expect(d.findOverlapping(dev, a, len)).toEqual([]);
        } else {
          const mine = live.filter((e) => e.dev === dev);
          // queries start in or just after a live mapping, at its first byte, at its end, end where it
          // starts, or land anywhere
          const mode = op.near % 5;
          const t = mode !== 4 && mine.length > 0 ? mine[Math.floor(op.near / 5) % mine.length] : undefined;
          const a = !t ? BASES[op.base] + BigInt(op.off) * 64n
            : mode === 0 ? t.devAddr + BigInt(op.off % (t.size + 0x1000))
              : mode === 1 ? t.devAddr
                : mode === 2 ? t.devAddr + BigInt(t.size) : t.devAddr - BigInt(op.size);
          const qSize = t && op.near % 2 === 0 ? t.size : op.size;
          const at = mine.filter((e) => e.devAddr === a);
          expect(d.hasMappingAt(dev, a)).toBe(at.length > 0);
          // bucket_find_exact: a full match first, then the size, then the first mapped there
          const want = at.find((e) => e.size === qSize && e.dir === 0 && e.type === 'phys')
            ?? at.find((e) => e.size === qSize) ?? at[0];
          expect(d.findExact(dev, a, qSize, 0, 'phys')).toBe(want);
          // containing: the first one starting there, else the one with the highest start
          const c = d.findContaining(dev, a);
          const containing = mine.filter((e) => within(e, a));
          if (containing.length === 0) expect(c).toBeUndefined();
          else if (at.length > 0) expect(c).toBe(at[0]);
          else {
            expect(c && within(c, a)).toBe(true);
            expect(c!.devAddr).toBe(containing.reduce((m, e) => (e.devAddr > m ? e.devAddr : m), 0n));
          }
          const end = a + BigInt(op.size);
          const over = mine.filter((e) => e.devAddr < end && e.devAddr + BigInt(e.size) > a);
          const got = d.findOverlapping(dev, a, op.size);
          expect(new Set(got)).toEqual(new Set(over));
          expect(got.length).toBe(over.length);
          expect([...got].sort(byAddr)).toEqual(got);
        }
        expect(d.count()).toBe(live.length);
      }
      expect(d.count(dev)).toBe(live.filter((e) => e.dev === dev).length);
      expect(new Set(d.entries(dev))).toEqual(new Set(live.filter((e) => e.dev === dev)));
      expect(d.entries().length).toBe(live.length);
    }), { numRuns: 80 });
  });

  it('keeps its order across many chunks (descending, ascending and interleaved addresses)', () => {
    const d = new DmaDebug(new TestMachine());
    const dev = new Device('nvme0');
    const es: DmaDebugEntry[] = [];
    for (let i = 0; i < 3000; i++) {
      const a = i % 3 === 0 ? 0x7fff00000000n - BigInt(i) * 0x2000n : 0x40000000n + BigInt(i) * 0x2000n;
      const e = entry(dev, a, 0x1000, 'phys', 0);
      d.add(e);
      es.push(e);
    }
    expect(d.entries(dev)).toEqual([...es].sort(byAddr));
    for (const e of es) expect(d.findContaining(dev, e.devAddr + 0xfffn)).toBe(e);
    expect(d.findContaining(dev, es[1].devAddr + 0x1000n)).toBeUndefined(); // the gap after a mapping
    for (let i = es.length - 1; i >= 0; i -= 2) d.remove(es[i]);
    expect(d.count(dev)).toBe(1500);
    expect(d.entries(dev)).toEqual(es.filter((_, i) => i % 2 === 0).sort(byAddr));
  });
});
