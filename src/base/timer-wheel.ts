// When a timer of the kernel's timer wheel runs (kernel/time/timer.c). A timer armed for jiffy
// `expires` goes into a bucket of the first level whose range holds its delay; level n counts in
// steps of 8^n jiffies and holds delays below 63 * 8^(n-1) jiffies (LVL_START). The bucket is
// the first step of that level after `expires` (calc_index() rounds up so that a timer never
// fires early), so a timer runs one jiffy late below 63 jiffies, at the next multiple of 8 jiffies
// below 504, of 64 below 4032, and so on. Delays beyond the last level run at its capacity.

/** Levels of the wheel: 9 when HZ > 100, else 8 (LVL_DEPTH). */
function wheelDepth(hz: number): number {
  return hz > 100 ? 9 : 8;
}

/**
 * The jiffy at which a timer armed at jiffy `now` for `delay` jiffies (mod_timer(now + delay)) runs
 * on a kernel with CONFIG_HZ `hz`: calc_wheel_index()'s bucket expiry, with the wheel's clock at
 * `now`.
 * @throws RangeError if now or delay is not a non-negative safe integer, or hz is not positive.
 */
export function timerWheelExpiry(now: number, delay: number, hz: number): number {
  if (!Number.isSafeInteger(now) || now < 0) throw new RangeError(`now must be a non-negative integer jiffy, got ${now}`);
  if (!Number.isSafeInteger(delay) || delay < 0) throw new RangeError(`delay must be a non-negative integer of jiffies, got ${delay}`);
  if (!(hz > 0)) throw new RangeError(`hz must be positive, got ${hz}`);
  const depth = wheelDepth(hz);
  let level = 0;
  while (level < depth - 1 && delay >= 63 * 8 ** level) level++;
  let d = delay;
  const cutoff = 63 * 8 ** (depth - 1);
  // the wheel's capacity: a longer timer runs at the last level's limit (WHEEL_TIMEOUT_MAX)
  if (level === depth - 1 && d >= cutoff) d = cutoff - 8 ** (depth - 1);
  const step = 8 ** level;
  return (Math.floor((now + d) / step) + 1) * step;
}
