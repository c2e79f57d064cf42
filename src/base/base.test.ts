import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  checkAddr, checkLen, EventLog, KernelBug, Prng, ilog2, ilog2Big, ffs, ffsBig, roundupPowOfTwo,
  alignUpBig, isPow2, err, ok, unwrap, Stats, declareCounters, formatBytes, patternBytes,
  Slots, countFaultPoints, faultInjected, faultsArmed, setFaults,
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

// The validators as they were written before their messages moved out of line (the reference the
// fast tests are checked against: same value returned, or the same error class and message).
function refCheckAddr(name: string, v: unknown, widthBits = 64): bigint {
  const describe = (x: unknown): string => (typeof x === 'bigint' ? `${x}n` : typeof x === 'string' ? JSON.stringify(x) : String(x));
  if (typeof v !== 'bigint') throw new TypeError(`${name} must be a bigint address, got ${typeof v} ${describe(v)}`);
  if (v < 0n) throw new RangeError(`${name} must be >= 0, got ${describe(v)}`);
  const limit = widthBits >= 64 ? 1n << 64n : 1n << BigInt(widthBits);
  if (v >= limit) throw new RangeError(`${name} must fit in ${widthBits} bits, got 0x${v.toString(16)}`);
  return v;
}

function refCheckLen(name: string, v: unknown, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const describe = (x: unknown): string => (typeof x === 'bigint' ? `${x}n` : typeof x === 'string' ? JSON.stringify(x) : String(x));
  if (typeof v !== 'number') throw new TypeError(`${name} must be a number, got ${typeof v} ${describe(v)}`);
  if (!Number.isSafeInteger(v) || v < min || v > max) {
    const bounds = max === Number.MAX_SAFE_INTEGER ? `a safe integer >= ${min}` : `an integer in [${min}, ${max}]`;
    throw new RangeError(`${name} must be ${bounds}, got ${describe(v)}`);
  }
  return v;
}

function outcome(f: () => unknown): unknown {
  try {
    return { value: f() };
  } catch (e) {
    return { error: (e as Error).constructor.name, message: (e as Error).message };
  }
}

describe('checkAddr and checkLen against their reference', () => {
  const edgeNums = [0, -0, 1, -1, 0.5, 4096, 2 ** 53 - 1, 2 ** 53, -(2 ** 53), NaN, Infinity, -Infinity, 63, 64, 65];
  const values = fc.oneof(
    fc.bigInt({ min: -(1n << 66n), max: 1n << 66n }),
    fc.constantFrom(0n, -1n, (1n << 64n) - 1n, 1n << 64n, (1n << 46n) - 1n, 1n << 46n),
    fc.double(), fc.integer(), fc.constantFrom(...edgeNums), fc.string(), fc.constantFrom(null, undefined, true, {}, [1]),
  );
  const widths = fc.oneof(fc.constantFrom(undefined, 64, 65, 46, 32, 12, 0), fc.integer({ min: 0, max: 80 }));
  const bounds = fc.oneof(fc.constantFrom(undefined, ...edgeNums), fc.integer({ min: -10, max: 10 }));
  it('checkAddr returns or throws exactly as the reference, for any value and width', () => {
    fc.assert(fc.property(values, widths, (v, w) => {
      expect(outcome(() => checkAddr('phys', v, w))).toEqual(outcome(() => refCheckAddr('phys', v, w)));
    }), { numRuns: 3000 });
  });
  it('checkLen returns or throws exactly as the reference, for any value and bounds', () => {
    fc.assert(fc.property(values, bounds, bounds, (v, min, max) => {
      expect(outcome(() => checkLen('len', v, min, max))).toEqual(outcome(() => refCheckLen('len', v, min, max)));
    }), { numRuns: 3000 });
  });
});

describe('faultsArmed', () => {
  it('is true exactly while the host has fault state, and then a guarded site still counts and fails', () => {
    const host = { slots: new Slots(), events: new EventLog() };
    const site = (): boolean => faultsArmed(host) && faultInjected(host, 'folio', 'order 0');
    expect(faultsArmed(host)).toBe(false);
    expect(site()).toBe(false);
    const counts = countFaultPoints(host, () => {
      expect(faultsArmed(host)).toBe(true);
      site();
      site();
    });
    expect(counts.folio).toBe(2);
    expect(faultsArmed(host)).toBe(false);
    setFaults(host, [{ point: 'folio', nth: 2 }]);
    expect(faultsArmed(host)).toBe(true);
    expect([site(), site(), site()]).toEqual([false, true, false]);
    expect(host.events.count('FAULT-INJECT')).toBe(1);
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

describe('EventLog.warnOnce (WARN_ONCE: one flag per call site per boot)', () => {
  it('records a site\'s first WARN only, each site on its own, each log on its own; clear() does not re-arm', () => {
    const a = new EventLog();
    const b = new EventLog();
    expect(a.warnOnce('site-1', 'src', 'first')).toBe(true);
    expect(a.warnOnce('site-1', 'src', 'second')).toBe(false);
    expect(a.warnOnce('site-2', 'src', 'other site')).toBe(true);
    expect(b.warnOnce('site-1', 'src', 'another machine')).toBe(true);
    expect(a.list().map((e) => [e.kind, e.message])).toEqual([['WARN', 'first'], ['WARN', 'other site']]);
    a.clear();
    expect(a.warnOnce('site-1', 'src', 'after clear')).toBe(false);
    expect(a.list()).toEqual([]);
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
