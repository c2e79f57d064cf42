import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { GiB } from '../base/index.ts';
import { createMmMachine } from './internal.ts';

describe('SparsePhysMem CPU-write hook', () => {
  const setup = () => {
    const m = createMmMachine({ ramBytes: 1 * GiB, seed: 1 });
    const calls: Array<[number, number]> = [];
    m.mem.onCpuWrite = (a, len) => calls.push([a, len]);
    const base = m.regions.find((r) => r.kind === 'ram' && r.len >= 1 << 20)!.start;
    return { m, calls, base };
  };

  it('fires after write, fill and the destination of copy, with the address and length', () => {
    const { m, calls, base } = setup();
    m.mem.write(base + 5n, new Uint8Array([1, 2, 3]));
    m.mem.fill(base + 4090n, 20, 9); // crosses a chunk: one call
    m.mem.copy(base + 0x3000n, base, 4096);
    expect(calls).toEqual([[Number(base) + 5, 3], [Number(base) + 4090, 20], [Number(base) + 0x3000, 4096]]);
    expect(m.mem.read(base + 0x3005n, 3)).toEqual(new Uint8Array([1, 2, 3]));
  });

  it('does not fire for deviceWrite, bounceCopy, reads, empty writes or refused writes', () => {
    const { m, calls, base } = setup();
    m.mem.deviceWrite(base, new Uint8Array([7, 8]));
    m.mem.bounceCopy(base + 0x2000n, base, 2);
    expect(m.mem.read(base + 0x2000n, 2)).toEqual(new Uint8Array([7, 8]));
    m.mem.write(base, new Uint8Array(0));
    m.mem.view(base, 16)[0] = 1;
    expect(() => m.mem.write(0n, new Uint8Array(1))).toThrow(RangeError); // firmware-reserved
    expect(() => m.mem.deviceWrite(0n, new Uint8Array(1))).toThrow(/mem.deviceWrite/);
    expect(() => m.mem.bounceCopy(base, 0n, 1)).toThrow(/mem.bounceCopy src/);
    expect(calls).toEqual([]);
    m.mem.onCpuWrite = null;
    m.mem.write(base, new Uint8Array(1));
    expect(calls).toEqual([]);
  });
});

describe('SparsePhysMem copy and bounceCopy go chunk piece to chunk piece', () => {
  const setup = () => {
    const m = createMmMachine({ ramBytes: 1 * GiB, seed: 1 });
    const base = m.regions.find((r) => r.kind === 'ram' && r.len >= 1 << 20)!.start;
    return { m, base };
  };

  it('match a flat byte array under random writes, fills and copies (overlapping, unaligned, from never-written memory)', () => {
    const SPAN = 6 * 4096;
    const op = fc.oneof(
      fc.record({ k: fc.constant('write' as const), at: fc.nat(SPAN - 1), len: fc.integer({ min: 1, max: 9000 }), seed: fc.nat(255) }),
      fc.record({ k: fc.constant('fill' as const), at: fc.nat(SPAN - 1), len: fc.integer({ min: 1, max: 9000 }), seed: fc.nat(255) }),
      fc.record({ k: fc.constantFrom('copy' as const, 'bounce' as const), at: fc.nat(SPAN - 1), len: fc.integer({ min: 0, max: 9000 }), seed: fc.nat(SPAN - 1) }),
    );
    const { m, base } = setup();
    fc.assert(fc.property(fc.array(op, { maxLength: 12 }), (ops) => {
      m.mem.fill(base, SPAN, 0); // whole chunks: released, so every run starts from never-written memory
      expect(m.mem.residentBytes).toBe(0);
      const model = new Uint8Array(SPAN);
      for (const o of ops) {
        const len = Math.min(o.len, SPAN - o.at);
        if (o.k === 'write') {
          const b = new Uint8Array(len).map((_, i) => (o.seed + i * 13) & 0xff);
          m.mem.write(base + BigInt(o.at), b);
          model.set(b, o.at);
        } else if (o.k === 'fill') {
          m.mem.fill(base + BigInt(o.at), len, o.seed);
          model.fill(o.seed, o.at, o.at + len);
        } else {
          const n = Math.min(len, SPAN - o.seed);
          if (o.k === 'copy') m.mem.copy(base + BigInt(o.at), base + BigInt(o.seed), n);
          else m.mem.bounceCopy(base + BigInt(o.at), base + BigInt(o.seed), n);
          model.copyWithin(o.at, o.seed, o.seed + n);
        }
      }
      const got = m.mem.read(base, SPAN);
      expect(got.findIndex((b, i) => b !== model[i])).toBe(-1);
    }), { numRuns: 200 });
  });

  it('bounceCopy of never-written memory allocates no destination chunks (no len-byte temporary, no zero chunks)', () => {
    const { m, base } = setup();
    m.mem.bounceCopy(base + BigInt(1 << 20), base, 256 * 1024);
    expect(m.mem.residentBytes).toBe(0);
    m.mem.write(base + 10n, new Uint8Array([5]));
    m.mem.bounceCopy(base + BigInt(1 << 20), base, 256 * 1024);
    expect(m.mem.residentBytes).toBe(2 * 4096); // the written chunk and its one copy
    expect(m.mem.read(base + BigInt((1 << 20) + 10), 1)).toEqual(new Uint8Array([5]));
  });
});
