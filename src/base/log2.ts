// Bit arithmetic on numbers (exact for safe integers) and bigints: log2, ffs/fls, alignment.
// Names follow include/linux/log2.h and bitops (ilog2, is_power_of_2, __ffs, __fls, ALIGN).

/** true when n is a positive power of two. */
export function isPow2(n: number): boolean {
  return Number.isInteger(n) && n > 0 && 2 ** Math.floor(Math.log2(n)) === n;
}

/** floor(log2(n)) for a positive safe integer. */
export function ilog2(n: number): number {
  if (!(n >= 1)) throw new RangeError(`ilog2 needs n >= 1, got ${n}`);
  if (n < 2 ** 31) return 31 - Math.clz32(n);
  let r = Math.floor(Math.log2(n));
  if (2 ** r > n) r--;
  else if (2 ** (r + 1) <= n) r++;
  return r;
}

/** floor(log2(n)) for a positive bigint. */
export function ilog2Big(n: bigint): number {
  if (n <= 0n) throw new RangeError(`ilog2 needs n >= 1, got ${n}`);
  return n.toString(2).length - 1;
}

/** Index of the lowest set bit (__ffs); n must be non-zero. */
export function ffs(n: number): number {
  if (n <= 0 || !Number.isSafeInteger(n)) throw new RangeError(`ffs needs a positive safe integer, got ${n}`);
  const lo = n % 4294967296;
  if (lo !== 0) return 31 - Math.clz32(lo & -lo);
  return 32 + ffs(Math.floor(n / 4294967296));
}

export function ffsBig(n: bigint): number {
  if (n <= 0n) throw new RangeError(`ffs needs n > 0, got ${n}`);
  return ilog2Big(n & -n);
}

/** Index of the highest set bit (__fls). */
export function fls(n: number): number {
  return ilog2(n);
}

export function roundupPowOfTwo(n: number): number {
  if (n <= 1) return 1;
  const l = ilog2(n);
  return 2 ** l === n ? n : 2 ** (l + 1);
}

/** ALIGN(x, a) for numbers; a a power of two. */
export function alignUp(x: number, a: number): number {
  return Math.ceil(x / a) * a;
}

export function alignDown(x: number, a: number): number {
  return Math.floor(x / a) * a;
}

export function alignUpBig(x: bigint, a: bigint): bigint {
  return (x + a - 1n) & ~(a - 1n);
}

export const U64_MAX = (1n << 64n) - 1n;
export const U32_MAX = 0xffffffff;
