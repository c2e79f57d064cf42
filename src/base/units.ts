// Byte-size constants and human formatting used across the model and its reports.

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;
export const TiB = 1024 * GiB;

/** Formats a byte count with a binary unit, exact where it divides ("2 MiB", "16 B", "1.5 KiB"). */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  const units: Array<[number, string]> = [[TiB, 'TiB'], [GiB, 'GiB'], [MiB, 'MiB'], [KiB, 'KiB']];
  for (const [u, name] of units) {
    if (Math.abs(n) >= u) {
      const v = n / u;
      return `${Number.isInteger(v) ? v : v.toFixed(v < 10 ? 2 : 1)} ${name}`;
    }
  }
  return `${n} B`;
}

/** Formats an integer with thousands separators: 262144 -> "262,144". */
export function formatCount(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** Formats a bigint address as 0x-prefixed hex. */
export function hex(a: bigint | number): string {
  return `0x${a.toString(16)}`;
}
