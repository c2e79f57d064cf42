// How a misuse error message shows the bad value (every layer's argument and config checks).

/**
 * Strings quoted, bigints with their n, arrays element by element, plain data as JSON, anything
 * else as String(v).
 */
export function describeValue(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'bigint') return `${v}n`;
  if (Array.isArray(v)) return `[${v.map(describeValue).join(', ')}]`;
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v); // bigints inside, or a cycle
  }
}

/** Throws the RangeError of a config check: `<where>.<field> <what>, got <value>`. */
export function failConfig(where: string, field: string, what: string, v: unknown): never {
  throw new RangeError(`${where}.${field} ${what}, got ${describeValue(v)}`);
}
