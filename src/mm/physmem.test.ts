import { describe, expect, it } from 'vitest';
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
