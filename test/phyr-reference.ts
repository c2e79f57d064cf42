// Test helpers: a brute-force, byte-by-byte reference for the cursor protocol of src/phyr/cursor.ts,
// and a walker that records what a real cursor produces in the same form.

import type { CursorOptions, Range, RangeCursor, RangeSource } from '../src/phyr/types.ts';

export type Seg = { addr: bigint; len: number; flags: number } | { stop: 'budget' | 'virt-boundary' };

/**
 * Segments the entries byte by byte: a new segment starts at an entry start unless merging joins
 * it, when the segment reached maxSegmentLen, at a (segBoundaryMask+1)-aligned address, and after a
 * stop. Budget / virt-boundary stops are recorded, then the walk resumes with `resumeBudget`.
 */
export function refSegments(entries: readonly Range[], opts: CursorOptions = {}, resumeBudget?: number): Seg[] {
  const out: Seg[] = [];
  const maxSeg = opts.maxSegmentLen ?? Infinity;
  const bnd = opts.segBoundaryMask === undefined ? 0n : opts.segBoundaryMask + 1n;
  const vb = BigInt((opts.virtBoundaryMask ?? 0) + 1);
  let budget = opts.budget ?? Infinity;
  let skip = opts.skip ?? 0;
  let cur: { addr: bigint; len: number; flags: number } | null = null;
  let sinceResume = 0;
  const flush = (): void => {
    if (cur) out.push(cur);
    cur = null;
  };
  for (let e = 0; e < entries.length; e++) {
    const r = entries[e];
    // Per-entry facts in bigint; the per-byte loop then needs only numbers.
    const adjacentToPrev = e > 0 && entries[e - 1].addr + BigInt(entries[e - 1].len) === r.addr;
    const sameFlags = e > 0 && entries[e - 1].flags === r.flags;
    const seamGap = e > 0 && ((entries[e - 1].addr + BigInt(entries[e - 1].len)) % vb !== 0n || r.addr % vb !== 0n);
    const baseMod = bnd === 0n ? 0 : Number(r.addr % bnd);
    const bndNum = Number(bnd);
    for (let k = 0; k < r.len; k++) {
      if (skip > 0) {
        skip--;
        continue;
      }
      // Stops happen before taking this byte.
      if (sinceResume >= budget) {
        flush();
        out.push({ stop: 'budget' });
        sinceResume = 0;
        budget = resumeBudget ?? Infinity;
      }
      const atSeam = k === 0 && seamGap;
      if (atSeam && sinceResume > 0) {
        flush();
        out.push({ stop: 'virt-boundary' });
        sinceResume = 0;
        budget = resumeBudget ?? Infinity;
      }
      let startNew = cur === null;
      if (!startNew && k === 0) {
        const joinable = opts.merge === true && adjacentToPrev && sameFlags && !atSeam;
        if (!joinable) startNew = true;
      }
      if (!startNew && cur !== null && cur.len >= maxSeg) startNew = true;
      if (!startNew && bndNum !== 0 && (baseMod + k) % bndNum === 0) startNew = true;
      if (startNew) {
        flush();
        cur = { addr: r.addr + BigInt(k), len: 0, flags: r.flags };
      }
      cur!.len++;
      sinceResume++;
    }
  }
  flush();
  return out;
}

/** Walks a cursor to the end with next(), resuming after every stop with `resumeBudget`. */
export function walkCursor(c: RangeCursor, resumeBudget?: number, maxStops = 1e5): Seg[] {
  const out: Seg[] = [];
  let stops = 0;
  for (;;) {
    while (!c.done) {
      out.push({ addr: c.addr, len: c.len, flags: c.flags });
      c.next();
    }
    if (c.stopReason === 'end') return out;
    out.push({ stop: c.stopReason as 'budget' | 'virt-boundary' });
    if (++stops > maxStops) throw new Error('too many stops');
    c.resume(resumeBudget);
  }
}

/** Walks a cursor with next() until it stops for any reason (no resume). */
export function walkOnce(c: RangeCursor): { addr: bigint; len: number; flags: number }[] {
  const out: { addr: bigint; len: number; flags: number }[] = [];
  while (!c.done) {
    out.push({ addr: c.addr, len: c.len, flags: c.flags });
    c.next();
  }
  return out;
}

/** Only the segments (stop markers dropped). */
export function segsOnly(s: readonly Seg[]): { addr: bigint; len: number; flags: number }[] {
  return s.filter((x): x is { addr: bigint; len: number; flags: number } => 'addr' in x);
}

/** Expands ranges to their (addr, flags) byte coverage in order, joining adjacent runs. */
export function coverage(rs: Iterable<{ addr: bigint; len: number; flags?: number }>): [bigint, number, number][] {
  const out: [bigint, number, number][] = [];
  for (const r of rs) {
    const f = r.flags ?? 0;
    const last = out[out.length - 1];
    if (last && last[0] + BigInt(last[1]) === r.addr && last[2] === f) last[1] += r.len;
    else if (r.len > 0) out.push([r.addr, r.len, f]);
  }
  return out;
}

/** Walks a source's cursor with no limits and returns its segments. */
export function segmentsOf(src: RangeSource, opts?: CursorOptions): { addr: bigint; len: number; flags: number }[] {
  return segsOnly(walkCursor(src.cursor(opts)));
}
