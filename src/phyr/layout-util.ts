// Internal helpers shared by the range-list layouts of src/phyr (phyr-list, dma-list, bvec, page-list,
// page-array, convert, scatterlist): growing a typed-array column, the argument checks whose logic
// and messages are the same in every layout, and the shared body of PhyrList.from / DmaList.from.
// Not exported from src/phyr/index.ts.
//
// Only cold code lives here (growth, construction, error paths): the builders' per-entry push paths
// keep their own inline checks and call in here only to throw.

import { checkAddr, checkLen } from '../base/index.ts';

/** A typed-array column of the layouts' storage. */
export type Column = Float64Array | Uint32Array | Uint8Array | BigUint64Array;

/**
 * A new column of the same type as `col` with `cap` entries (cap >= col.length), holding col's
 * entries at the front and zeros after them.
 */
export function grown<T extends Column>(col: T, cap: number): T {
  const out = new (col.constructor as new (length: number) => T)(cap);
  (out as Column).set(col as never);
  return out;
}

/**
 * A builder's initial capacity: initialCapacity (an integer >= 0) raised to at least 1.
 * @throws TypeError/RangeError naming initialCapacity.
 */
export function checkInitialCapacity(initialCapacity: unknown): number {
  return Math.max(1, checkLen('initialCapacity', initialCapacity, 0));
}

/** The error every builder throws when used after build(). */
export function alreadyBuilt(): TypeError {
  return new TypeError('builder already built; create a new one');
}

/**
 * Checks an entry index of a list of `count` entries.
 * @throws RangeError naming i and its value unless i is an integer in [0, count - 1].
 */
export function checkIndex(i: number, count: number): void {
  // the message out of line: every per-entry accessor inlines this test (see checkLen)
  if (!Number.isInteger(i) || i < 0 || i >= count) badIndex(i, count);
}

function badIndex(i: number, count: number): never {
  throw new RangeError(`i must be an integer in [0, ${count - 1}], got ${String(i)}`);
}

/**
 * Checks a flags argument (flags.ts): a number that is a u32.
 * @throws TypeError for a non-number, RangeError for a number that is not a u32; both name `name`.
 */
export function checkFlagsArg(name: string, flags: unknown): number {
  if (typeof flags !== 'number') throw new TypeError(`${name} must be a number, got ${typeof flags} ${String(flags)}`);
  if ((flags >>> 0) !== flags) throw new RangeError(`${name} must be a u32, got ${flags}`);
  return flags;
}

/**
 * An optional flags value: undefined or null give 0, anything else must be a u32 number.
 * @throws RangeError naming `name` and the value otherwise (also for a non-number).
 */
export function checkOptionalFlagsU32(name: string, flags: unknown): number {
  const f = flags ?? 0;
  if (typeof f !== 'number' || (f >>> 0) !== f) throw new RangeError(`${name} must be a u32, got ${String(f)}`);
  return f;
}

/**
 * The body of PhyrList.from / DmaList.from: checks that `ranges` is iterable and every entry
 * (naming its index and field; `readFlags` checks and defaults the flags field), then appends each
 * entry to `b` without merging and returns b.build().
 * @throws TypeError/RangeError naming the entry index and the bad field.
 */
export function buildFromRanges<T>(
  b: { pushBigNoMerge(addr: bigint, len: number, flags: number): void; build(): T },
  ranges: Iterable<{ addr: bigint; len: number; flags?: number }>,
  readFlags: (name: string, flags: unknown) => number,
): T {
  if (ranges === null || typeof ranges !== 'object' || typeof (ranges as Iterable<unknown>)[Symbol.iterator] !== 'function') {
    throw new TypeError(`ranges must be an iterable of { addr, len, flags? }, got ${String(ranges)}`);
  }
  let i = 0;
  for (const r of ranges) {
    if (r === null || typeof r !== 'object') throw new TypeError(`ranges[${i}] must be an object, got ${String(r)}`);
    checkAddr(`ranges[${i}].addr`, r.addr);
    checkLen(`ranges[${i}].len`, r.len, 1);
    const flags = readFlags(`ranges[${i}].flags`, r.flags);
    if (r.addr + BigInt(r.len) > 1n << 64n) {
      throw new RangeError(`ranges[${i}]: addr + len must be <= 2^64, got 0x${r.addr.toString(16)} + ${r.len}`);
    }
    b.pushBigNoMerge(r.addr, r.len, flags);
    i++;
  }
  return b.build();
}
