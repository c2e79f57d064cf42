// timerWheelExpiry against a brute-force wheel: the bucket a timer lands in is the first boundary of
// its level's granularity strictly after its expiry, the level being the first whose range holds
// the delay (kernel/time/timer.c: LVL_START(n) = 63 << 3(n-1), LVL_GRAN(n) = 8^n, calc_index()).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { timerWheelExpiry } from './timer-wheel.ts';

/** Reference: scans the levels' ranges and granularities one by one, as a table. */
function reference(now: number, delay: number, hz: number): number {
  const depth = hz > 100 ? 9 : 8;
  const starts = Array.from({ length: depth + 1 }, (_, n) => (n === 0 ? 0 : 63 * 2 ** (3 * (n - 1))));
  let expires = now + delay;
  let level = depth - 1;
  for (let n = 0; n < depth - 1; n++) {
    if (delay < starts[n + 1]) { level = n; break; }
  }
  if (level === depth - 1 && delay >= starts[depth]) expires = now + starts[depth] - 2 ** (3 * (depth - 1));
  const gran = 2 ** (3 * level);
  let t = 0;
  while (t <= expires) t += gran;
  return Math.min(t, Number.MAX_SAFE_INTEGER);
}

describe('timerWheelExpiry (kernel/time/timer.c: calc_wheel_index, calc_index)', () => {
  it('known cases: one jiffy late below 63 jiffies, the next multiple of 8 below 504, of 64 below 4032', () => {
    expect(timerWheelExpiry(0, 10, 1000)).toBe(11); // the per-CPU flush queue's 10 ms at HZ=1000
    expect(timerWheelExpiry(5, 62, 1000)).toBe(68);
    expect(timerWheelExpiry(0, 63, 1000)).toBe(64); // level 1 starts at 63
    expect(timerWheelExpiry(3, 100, 1000)).toBe(104); // IOVA_DEPOT_DELAY at HZ=1000
    expect(timerWheelExpiry(0, 1000, 1000)).toBe(1024); // the single flush queue's 1000 ms: level 2
    expect(timerWheelExpiry(1000, 1000, 1000)).toBe(2048);
    expect(timerWheelExpiry(0, 4032, 1000)).toBe(4096); // level 3
  });

  it('a delay beyond the wheel runs at its capacity (WHEEL_TIMEOUT_MAX), by HZ: 9 levels above HZ=100, 8 at 100', () => {
    const cutoff9 = 63 * 8 ** 8;
    expect(timerWheelExpiry(0, cutoff9 * 4, 1000)).toBe(timerWheelExpiry(0, cutoff9 - 8 ** 8, 1000));
    const cutoff8 = 63 * 8 ** 7;
    expect(timerWheelExpiry(0, cutoff8 * 2, 100)).toBe(timerWheelExpiry(0, cutoff8 - 8 ** 7, 100));
    expect(timerWheelExpiry(0, cutoff8 * 2, 1000)).not.toBe(timerWheelExpiry(0, cutoff8 * 2, 100));
  });

  it('matches the brute-force wheel for random times and delays, and never fires early', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 1e6 }), fc.integer({ min: 0, max: 40000 }), fc.constantFrom(100, 250, 300, 1000),
      (now, delay, hz) => {
        const got = timerWheelExpiry(now, delay, hz);
        expect(got).toBe(reference(now, delay, hz));
        expect(got).toBeGreaterThan(now + delay);
      }), { numRuns: 500 });
  });

  it('rejects bad arguments, naming them', () => {
    expect(() => timerWheelExpiry(-1, 1, 1000)).toThrow(/now.*-1/);
    expect(() => timerWheelExpiry(0, 1.5, 1000)).toThrow(/delay.*1\.5/);
    expect(() => timerWheelExpiry(0, 1, 0)).toThrow(/hz.*0/);
  });
});
