import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  checkAddr, checkLen, EventLog, KernelBug, Prng, ilog2, ilog2Big, ffs, ffsBig, roundupPowOfTwo,
  alignUpBig, isPow2, err, ok, unwrap, Stats, declareCounters, formatBytes, patternBytes,
} from './internal.ts';

describe('address and length validators', () => {
  it('return valid input unchanged', () => {
    expect(checkAddr('phys', 0x1000n)).toBe(0x1000n);
    expect(checkLen('len', 4096, 1)).toBe(4096);
  });
  it('name the argument and the value in errors', () => {
    expect(() => checkAddr('phys', 4096)).toThrow(TypeError);
    expect(() => checkAddr('phys', 4096)).toThrow(/phys must be a bigint address, got number 4096/);
    expect(() => checkAddr('phys', -1n)).toThrow(/phys must be >= 0, got -1n/);
    expect(() => checkAddr('iova', 1n << 64n)).toThrow(RangeError);
    expect(() => checkAddr('phys', 1n << 46n, 46)).toThrow(/phys must fit in 46 bits, got 0x400000000000/);
    expect(() => checkLen('len', -4096, 1)).toThrow(/len must be a safe integer >= 1, got -4096/);
    expect(() => checkLen('len', 1.5)).toThrow(RangeError);
    expect(() => checkLen('len', 2 ** 60)).toThrow(RangeError);
    expect(() => checkLen('len', '4096')).toThrow(TypeError);
  });
});

describe('log2 helpers agree with bigint arithmetic', () => {
  it('ilog2/ffs over safe integers', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }), (n) => {
      const b = BigInt(n);
      expect(ilog2(n)).toBe(ilog2Big(b));
      expect(ffs(n)).toBe(ffsBig(b));
      const r = roundupPowOfTwo(n);
      expect(isPow2(r)).toBe(true);
      expect(r >= n && r / 2 < n).toBe(true);
    }));
  });
  it('alignUpBig', () => {
    expect(alignUpBig(4097n, 4096n)).toBe(8192n);
    expect(alignUpBig(4096n, 4096n)).toBe(4096n);
  });
});

describe('Prng', () => {
  it('is deterministic per seed and differs across seeds', () => {
    const a = new Prng(1), b = new Prng(1), c = new Prng(2);
    const sa = Array.from({ length: 8 }, () => a.u32());
    const sb = Array.from({ length: 8 }, () => b.u32());
    const sc = Array.from({ length: 8 }, () => c.u32());
    expect(sa).toEqual(sb);
    expect(sa).not.toEqual(sc);
  });
  it('int(n) stays in range', () => {
    const p = new Prng(7);
    for (let i = 0; i < 1000; i++) {
      const v = p.int(10);
      expect(v >= 0 && v < 10 && Number.isInteger(v)).toBe(true);
    }
  });
});

describe('EventLog and Result', () => {
  it('records warnings and throws KernelBug on bug()', () => {
    const log = new EventLog(2);
    log.warn('gup', 'a');
    log.warn('gup', 'b');
    log.warn('gup', 'c');
    expect(log.count('WARN')).toBe(3);
    expect(log.list('WARN').map((e) => e.message)).toEqual(['b', 'c']);
    expect(() => log.bug('mm', 'bad pincount')).toThrow(KernelBug);
    expect(log.count('BUG')).toBe(1);
  });
  it('Result helpers', () => {
    expect(unwrap(ok(5))).toBe(5);
    expect(() => unwrap(err('EFAULT', 'unmapped'))).toThrow(/EFAULT: unmapped/);
  });
  it('Stats carries every declared counter at 0, resets and diffs them', () => {
    declareCounters('base-test', ['baseTestEvents', 'baseTestBytes']);
    expect(() => declareCounters('other', ['baseTestBytes'])).toThrow(/counter baseTestBytes of other is already declared/);
    expect(Stats.layers().find((l) => l.layer === 'base-test')?.names).toEqual(['baseTestEvents', 'baseTestBytes']);
    const s = new Stats() as Stats & { baseTestEvents: number; baseTestBytes: number };
    expect(s.baseTestEvents).toBe(0);
    const snap = s.snapshot();
    s.baseTestEvents += 3;
    expect(s.diff(snap)).toEqual({ baseTestEvents: 3 });
    s.reset();
    expect(s.baseTestEvents).toBe(0);
    expect(formatBytes(2 * 1024 * 1024)).toBe('2 MiB');
  });
});

describe('EventLog.mute', () => {
  it('a muted kind is counted, not stored; unmuting stores again; WARN, BUG and FAULT cannot be muted', () => {
    const log = new EventLog();
    log.mute('CACHE');
    expect(log.isMuted('CACHE')).toBe(true);
    log.record('CACHE', 'dma', 'clean');
    log.countMuted('CACHE');
    log.record('INFO', 'x', 'kept');
    expect(log.count('CACHE')).toBe(2);
    expect(log.list('CACHE')).toEqual([]);
    expect(log.list('INFO').length).toBe(1);
    log.mute('CACHE', false);
    log.record('CACHE', 'dma', 'invalidate');
    expect(log.list('CACHE').map((e) => e.message)).toEqual(['invalidate']);
    expect(() => log.mute('WARN')).toThrow(RangeError);
    expect(() => log.mute('FAULT')).toThrow(RangeError);
  });
});

describe('patternBytes', () => {
  it('the same seed gives the same bytes, another seed other bytes; the stream is xorshift32 from seed * 2654435761', () => {
    expect(patternBytes(64, 7)).toEqual(patternBytes(64, 7));
    expect(patternBytes(64, 7)).not.toEqual(patternBytes(64, 8));
    expect(patternBytes(16, 7).subarray(0, 8)).toEqual(patternBytes(8, 7));
    let x = (1 * 2654435761) >>> 0;
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    expect(patternBytes(1, 1)[0]).toBe(x & 0xff);
    expect(patternBytes(0, 1).length).toBe(0);
  });
});
