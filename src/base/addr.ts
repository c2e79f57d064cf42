// Addresses are bigint at every public boundary (plain bigint: the kind of address is in the
// parameter's name, as the glossary names them); lengths and counts are numbers.
// Validators throw TypeError/RangeError naming the argument and the bad value, and return their input.

const U64_LIMIT = 1n << 64n;

function describe(v: unknown): string {
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'string') return JSON.stringify(v);
  return String(v);
}

/**
 * Checks that `v` is a bigint in [0, 2^widthBits) and returns it.
 * @throws TypeError if not a bigint; RangeError if negative or too wide.
 */
export function checkAddr(name: string, v: unknown, widthBits = 64): bigint {
  // The test alone, with the messages out of line: hot paths call this for every range, and V8
  // inlines what it calls within a per-caller budget that a long body would use up.
  if (typeof v === 'bigint' && v >= 0n && (widthBits >= 64 ? v < U64_LIMIT : v < 1n << BigInt(widthBits))) return v;
  return addrChecked(name, v, widthBits);
}

/** checkAddr's throwing path (it returns v for an input the fast test does not cover). */
function addrChecked(name: string, v: unknown, widthBits: number): bigint {
  if (typeof v !== 'bigint') {
    throw new TypeError(`${name} must be a bigint address, got ${typeof v} ${describe(v)}`);
  }
  if (v < 0n) throw new RangeError(`${name} must be >= 0, got ${describe(v)}`);
  const limit = widthBits >= 64 ? U64_LIMIT : 1n << BigInt(widthBits);
  if (v >= limit) {
    throw new RangeError(`${name} must fit in ${widthBits} bits, got 0x${v.toString(16)}`);
  }
  return v;
}

/**
 * Checks a length or count: a safe integer >= min (default 0). Returns it.
 * @throws TypeError if not a number; RangeError if fractional, negative, unsafe or below min.
 */
export function checkLen(name: string, v: unknown, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  // (as checkAddr: the test inline, the messages out of line)
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= min && v <= max) return v;
  return lenChecked(name, v, min, max);
}

/** checkLen's throwing path (it returns v for an input the fast test does not cover). */
function lenChecked(name: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number') throw new TypeError(`${name} must be a number, got ${typeof v} ${describe(v)}`);
  if (!Number.isSafeInteger(v) || v < min || v > max) {
    const bounds = max === Number.MAX_SAFE_INTEGER ? `a safe integer >= ${min}` : `an integer in [${min}, ${max}]`;
    throw new RangeError(`${name} must be ${bounds}, got ${describe(v)}`);
  }
  return v;
}

/** Checks that v is one of the allowed values. */
export function checkOneOf<T>(name: string, v: unknown, allowed: readonly T[]): T {
  if (!allowed.includes(v as T)) {
    throw new RangeError(`${name} must be one of ${allowed.map(describe).join(', ')}, got ${describe(v)}`);
  }
  return v as T;
}


