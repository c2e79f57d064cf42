// Internal to mm/ (not exported by the layer): how a misuse error message shows the bad value.

/** Strings quoted, bigints with their n, plain data as JSON, anything else as String(v). */
export function describeValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'bigint') return `${v}n`;
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v); // bigints inside, or a cycle
  }
}
