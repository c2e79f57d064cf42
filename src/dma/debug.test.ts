// dma-debug's storage against plain reference code: the column hash must find what a direct
// reading of kernel/dma/debug.c's __hash_bucket_find / bucket_find_exact / bucket_find_contain
// finds over per-bucket lists in insertion order, for any sequence of adds and removes, with
// addresses on both sides of 2^53 (where Number() rounds) and up to 2^64; the model's ordered index
// must return every entry overlapping a range, as a scan of all entries does.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { EntryTable, HASH_FN_SHIFT, HASH_SIZE, OrderedIndex } from './debug-table.ts';
import { DmaDebug } from './debug.ts';
import { TestMachine } from '../../test/fixtures/iommu-machine.ts';
import { Device } from '../pci/index.ts';

const BASES = [0x1000n, 0x7fff00000000n, (1n << 53n) - 0x3000n, (1n << 64n) - (1n << 40n)];

interface Ref {
  readonly slot: number;
  readonly seq: number;
  readonly dev: number;
  readonly addr: bigint;
  readonly size: number;
  readonly type: number;
  readonly dir: number;
  readonly sgCall: number;
}

const bucketOf = (a: bigint): number => Number((a >> BigInt(HASH_FN_SHIFT)) % BigInt(HASH_SIZE));

/** __hash_bucket_find over one bucket's list (insertion order), written from the kernel source. */
function refBucketFind(list: readonly Ref[], ref: Omit<Ref, 'slot' | 'seq'>, contain: boolean): Ref | null {
  let best: Ref | null = null;
  let matches = 0;
  let last = -1;
  for (const e of list) {
    const hit = e.dev === ref.dev && (contain
      ? e.addr <= ref.addr && e.addr + BigInt(e.size) >= ref.addr + BigInt(ref.size)
      : e.addr === ref.addr);
    if (!hit) continue;
    matches++;
    const lvl = Number(e.size === ref.size) + Number(e.type === ref.type) + Number(e.dir === ref.dir) + Number(e.sgCall === ref.sgCall);
    if (lvl === 4) return e;
    if (lvl > last) { last = lvl; best = e; }
  }
  return matches === 1 ? best : null;
}

function refFind(live: readonly Ref[], ref: Omit<Ref, 'slot' | 'seq'>, contain: boolean): Ref | null {
  const buckets = new Map<number, Ref[]>();
  for (const e of [...live].sort((x, y) => x.seq - y.seq)) {
    const b = bucketOf(e.addr);
    buckets.set(b, [...(buckets.get(b) ?? []), e]);
  }
  if (!contain) return refBucketFind(buckets.get(bucketOf(ref.addr)) ?? [], ref, false);
  let idx = ref.addr;
  const limit = Math.min(HASH_SIZE, Number(ref.addr >> BigInt(HASH_FN_SHIFT)) + 1);
  for (let i = 0; i < limit; i++) {
    const e = refBucketFind(buckets.get(bucketOf(idx)) ?? [], ref, true);
    if (e) return e;
    idx -= 1n << BigInt(HASH_FN_SHIFT);
  }
  return null;
}

type Op =
  | { kind: 'add'; base: number; off: number; size: number; type: number; dir: number; sg: number; dev: number; dup: number }
  | { kind: 'remove'; pick: number }
  | { kind: 'query'; pick: number; delta: number; size: number; type: number; dir: number; sg: number; dev: number; mode: number; frac: number };

const arbOp: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({
    kind: fc.constant('add' as const), base: fc.nat(BASES.length - 1), off: fc.nat(0x80000),
    size: fc.oneof(fc.integer({ min: 1, max: 0x6000 }), fc.constantFrom(4096, 8192, 0x200000)),
    type: fc.constantFrom(1, 4), dir: fc.nat(2), sg: fc.constantFrom(0, 1, 3), dev: fc.nat(1), dup: fc.nat(),
  }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('remove' as const), pick: fc.nat() }) },
  { weight: 4, arbitrary: fc.record({
    kind: fc.constant('query' as const), pick: fc.nat(), delta: fc.integer({ min: -0x3000, max: 0x3000 }),
    size: fc.integer({ min: 0, max: 0x4000 }), type: fc.constantFrom(0, 1, 4), dir: fc.nat(2), sg: fc.constantFrom(0, 1, 3),
    dev: fc.nat(1), mode: fc.nat(3), frac: fc.double({ min: 0, max: 1, noNaN: true }),
  }) },
);

describe('EntryTable: the kernel hash', () => {
  it('bucket_find_exact / bucket_find_contain answer as the kernel\'s algorithm over per-bucket lists', () => {
    fc.assert(fc.property(fc.array(arbOp, { minLength: 1, maxLength: 160, size: 'max' }), (ops) => {
      const t = new EntryTable(4);
      const live: Ref[] = [];
      let seq = 0;
      for (const op of ops) {
        if (op.kind === 'add') {
          // a third start where a live one starts (duplicates, as dma-direct makes them)
          const same = op.dup % 3 === 0 && live.length > 0 ? live[(op.dup >> 2) % live.length] : undefined;
          const addr = same ? same.addr : BASES[op.base] + BigInt(op.off) * 16n;
          const size = addr + BigInt(op.size) > (1n << 64n) ? 4096 : op.size;
          const s = t.alloc();
          t.devId[s] = op.dev;
          t.type[s] = op.type;
          t.dir[s] = op.dir;
          t.sgCall[s] = op.sg;
          const addrNum = t.toNum(addr);
          t.setAddr(s, addrNum, addrNum + size > Number.MAX_SAFE_INTEGER ? addr : null, size);
          expect(t.exactAddr(s)).toBe(addr);
          t.hashAdd(s);
          live.push({ slot: s, seq: seq++, dev: op.dev, addr, size, type: op.type, dir: op.dir, sgCall: op.sg });
        } else if (op.kind === 'remove') {
          if (live.length === 0) continue;
          const [e] = live.splice(op.pick % live.length, 1);
          t.hashDel(e.slot);
          t.release(e.slot);
        } else {
          const e = live.length > 0 ? live[op.pick % live.length] : undefined;
          const base = e ? e.addr : BASES[op.pick % BASES.length];
          // at a live start, near it, or anywhere inside it (deep in a 2 MiB entry: many buckets back)
          let addr = op.mode === 0 || !e ? base
            : op.mode === 1 ? base + BigInt(Math.floor(op.frac * e.size)) : base + BigInt(op.delta);
          if (addr < 0n) addr = 0n;
          if (addr + BigInt(op.size) >= 1n << 64n) addr = (1n << 64n) - BigInt(op.size) - 1n;
          const ref = { dev: op.dev, addr, size: op.size, type: op.type, dir: op.dir, sgCall: op.sg };
          const addrNum = t.toNum(addr);
          const big = addrNum + op.size > Number.MAX_SAFE_INTEGER ? addr : null;
          const exact = t.findExact(op.dev, addrNum, big, op.size, op.type, op.dir, op.sg);
          expect(exact < 0 ? null : exact).toBe(refFind(live, ref, false)?.slot ?? null);
          const contain = t.findContain(op.dev, addrNum, big, op.size, op.type, op.dir, op.sg);
          expect(contain < 0 ? null : contain).toBe(refFind(live, ref, true)?.slot ?? null);
        }
        expect(t.hashed).toBe(live.length);
      }
    }), { numRuns: 40 });
  });

  it('reuses the last freed slot first, as dma_entry_alloc takes the head of free_entries', () => {
    const t = new EntryTable(2);
    const a = t.alloc(), b = t.alloc(), c = t.alloc();
    t.release(a);
    t.release(c);
    expect(t.alloc()).toBe(c);
    expect(t.alloc()).toBe(a);
    expect(t.alloc()).not.toBe(b);
  });

  it('toNum rounds as Number() does, up to 2^64 - 1', () => {
    const t = new EntryTable(1);
    fc.assert(fc.property(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), (b) => {
      expect(t.toNum(b)).toBe(Number(b));
    }), { numRuns: 2000 });
    for (const b of [0n, (1n << 53n) - 1n, 1n << 53n, (1n << 53n) + 1n, (1n << 64n) - 1n]) expect(t.toNum(b)).toBe(Number(b));
  });
});

describe('OrderedIndex: the model checks\' address index', () => {
  it('scan visits every entry overlapping a range and removes exactly what the callback asks', () => {
    const arb = fc.array(fc.oneof(
      fc.record({ kind: fc.constant('add' as const), base: fc.nat(2), off: fc.nat(0x4000), size: fc.oneof(fc.integer({ min: 1, max: 0x3000 }), fc.constant(0x100000)), run: fc.integer({ min: 1, max: 600 }) }),
      fc.record({ kind: fc.constant('remove' as const), pick: fc.nat() }),
      fc.record({ kind: fc.constant('scan' as const), base: fc.nat(2), off: fc.nat(0x4000), len: fc.integer({ min: 1, max: 0x8000 }), drop: fc.boolean() }),
    ), { minLength: 1, maxLength: 120, size: 'max' });
    fc.assert(fc.property(arb, (ops) => {
      const t = new EntryTable(4);
      const ix = new OrderedIndex(t, true);
      const live: number[] = [];
      const bases = [0x1000, 0x40000000, 2 ** 52];
      for (const op of ops) {
        if (op.kind === 'add') {
          // a run of ascending entries (IOVA links), starting anywhere (a window below the last)
          let a = bases[op.base] + op.off * 64;
          for (let i = 0; i < op.run; i++) {
            const s = t.alloc();
            t.paddr[s] = a;
            t.size[s] = op.size;
            ix.add(s);
            live.push(s);
            a += op.size;
          }
        } else if (op.kind === 'remove') {
          if (live.length === 0) continue;
          const [s] = live.splice(op.pick % live.length, 1);
          expect(ix.remove(s)).toBe(true);
          expect(ix.remove(s)).toBe(false);
          t.release(s);
        } else {
          const lo = bases[op.base] + op.off * 64;
          const hi = lo + op.len;
          const want = live.filter((s) => t.paddr[s] < hi && t.paddr[s] + t.size[s] > lo);
          const got: number[] = [];
          let prev = -Infinity;
          ix.scan(lo, hi, (s) => {
            expect(t.paddr[s]).toBeGreaterThanOrEqual(prev);
            prev = t.paddr[s];
            if (!(t.paddr[s] < hi && t.paddr[s] + t.size[s] > lo)) return false;
            got.push(s);
            return op.drop;
          });
          expect(new Set(got)).toEqual(new Set(want));
          if (op.drop) for (const s of got) { live.splice(live.indexOf(s), 1); t.release(s); }
        }
        expect(ix.count).toBe(live.length);
      }
      const all: number[] = [];
      ix.all(all);
      expect(new Set(all)).toEqual(new Set(live));
      expect(all.map((s) => t.paddr[s])).toEqual(all.map((s) => t.paddr[s]).sort((x, y) => x - y));
    }), { numRuns: 80 });
  });
});

describe('DmaDebug: IOVA link records beyond 2^53', () => {
  it('keep exact addresses: listed exactly, a whole unlink is silent, a partial one is reported', () => {
    const m = new TestMachine();
    const d = new DmaDebug(m);
    const dev = new Device('nvme0');
    const base = (1n << 60n) + 0x1000n;
    d.iovaLink(dev, 0x10000n, 4096, 1, base, false);
    d.iovaLink(dev, 0x30000n, 4096, 1, base + 4096n, false);
    d.iovaLink(dev, 0x50000n, 4096, 1, base + 8192n, false);
    expect(d.entries(dev).map((e) => e.devAddr)).toEqual([base, base + 4096n, base + 8192n]);
    d.iovaUnlink(dev, base + 4096n, 4096, 1); // exactly the middle link: Number() cannot tell these apart
    expect(m.events.count('MODEL-CHECK')).toBe(0);
    expect(d.entries(dev).map((e) => e.devAddr)).toEqual([base, base + 8192n]);
    d.iovaUnlink(dev, base + 8192n + 1n, 100, 1);
    expect(m.events.list('MODEL-CHECK').map((e) => e.data?.check)).toEqual(['iova-unlink-partial']);
    expect(d.count(dev)).toBe(1);
  });
});

describe('debug_dma_mapping_error with the per-bucket count of unchecked entries', () => {
  // The model skips or shortens the kernel's bucket walk when the bucket holds no or one unchecked
  // entry (kernel/dma/debug.c: debug_dma_mapping_error walks the whole bucket for the first
  // unchecked entry of this device and address). Random maps (debug_dma_map_phys checks the new
  // handle first, which marks an older unchecked entry at the same address) and checks over three
  // addresses in one bucket, two of them equal, must leave every entry as the full walk would.
  it('property: map-error states match a reference of the kernel\'s forward walk', () => {
    const A = 0x4000_0000n, B = 0x4000_1000n; // one bucket: same address >> HASH_FN_SHIFT
    expect(A >> BigInt(HASH_FN_SHIFT)).toBe(B >> BigInt(HASH_FN_SHIFT));
    const op = fc.record({ map: fc.boolean(), at: fc.constantFrom(A, A, B) });
    fc.assert(fc.property(fc.array(op, { maxLength: 12 }), (ops) => {
      const m = new TestMachine();
      const d = new DmaDebug(m);
      const dev = new Device('nvme0');
      const ref: Array<{ addr: bigint; checked: boolean }> = [];
      const check = (addr: bigint): void => {
        const e = ref.find((x) => !x.checked && x.addr === addr);
        if (e) e.checked = true;
      };
      let phys = 0x10_0000n;
      for (const o of ops) {
        if (o.map) {
          d.mapPhys(dev, phys, 4096, 1, o.at, 0, false);
          phys += 0x1000n;
          check(o.at);
          ref.push({ addr: o.at, checked: false });
        } else {
          d.mappingError(dev, o.at);
          check(o.at);
        }
      }
      expect(d.entries(dev).map((e) => [e.devAddr, e.mapErr === 'dma map error checked'])).toEqual(ref.map((e) => [e.addr, e.checked]));
    }), { numRuns: 300 });
  });
});
