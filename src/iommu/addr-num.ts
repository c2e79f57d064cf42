// Model support (no kernel counterpart): the bigint -> number conversion of the hot map paths.
// Number(bigint) is a runtime call in V8 (~20 ns); two comparisons and a store through a
// BigUint64Array view read back as two u32 halves cost a fraction of that, with the same result.

const U64 = new BigUint64Array(1);
const U32 = new Uint32Array(U64.buffer);
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
const LO = LITTLE_ENDIAN ? 0 : 1;
const HI = 1 - LO;
const MAX_SAFE_BIG = BigInt(Number.MAX_SAFE_INTEGER);

/**
 * @internal `a` as an exact number when it is a bigint in [0, 2^53 - 1]; -1 otherwise (not a bigint,
 * negative, or too large for an exact number: the caller then takes its checked bigint path).
 */
export function safeBigToNum(a: unknown): number {
  if (typeof a !== 'bigint' || a < 0n || a > MAX_SAFE_BIG) return -1;
  U64[0] = a;
  return U32[LO] + U32[HI] * 4294967296;
}

/** A 4 KiB frame number (or frame count) as the hex byte address (or length) it stands for, for messages. */
export function frameAddr(pfn: number): string {
  return `0x${(BigInt(pfn) << 12n).toString(16)}`;
}
