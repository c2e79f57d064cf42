// Sizes and addresses as a scenario file writes them: a number of bytes, or a string with a binary
// unit ("4KiB", "2 MiB", "1G"), hex ("0x1000") or plain digits.

const UNITS: Readonly<Record<string, number>> = {
  '': 1, b: 1, k: 2 ** 10, kib: 2 ** 10, m: 2 ** 20, mib: 2 ** 20, g: 2 ** 30, gib: 2 ** 30, t: 2 ** 40, tib: 2 ** 40,
};

/** A size or address as a bigint, or null when the text is not one. */
export function parseBigSize(v: unknown): bigint | null {
  if (typeof v === 'bigint') return v >= 0n ? v : null;
  if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0 ? BigInt(v) : null;
  if (typeof v !== 'string') return null;
  const s = v.trim().replace(/_/g, '');
  if (/^0x[0-9a-f]+$/i.test(s)) return BigInt(s);
  const m = /^(\d+)\s*([a-z]*)$/i.exec(s);
  if (m === null) return null;
  const unit = UNITS[m[2].toLowerCase()];
  if (unit === undefined) return null;
  return BigInt(m[1]) * BigInt(unit);
}

/** A size as a safe integer number of bytes, or null when the text is not one (or too large). */
export function parseSize(v: unknown): number | null {
  const b = parseBigSize(v);
  if (b === null || b > BigInt(Number.MAX_SAFE_INTEGER)) return null;
  return Number(b);
}

/** The words a message uses for what a size field accepts. */
export const SIZE_EXPECTED = 'a size: bytes as a number, or a string such as "4KiB", "2MiB", "1GiB", "0x1000"';
