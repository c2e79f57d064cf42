// Test helpers: a brute-force reference for the walk of the generated cursors
// (src/phyr/cursors.generated.ts), and walkers that record what a real cursor produces in the same form.

import type { CursorOptions, Range, RangeCursor, RangeSource } from '../src/phyr/types.ts';

export type Seg = { addr: bigint; len: number; flags: number } | { stop: 'budget' | 'virt-boundary' };

/**
 * The segmentation rules, judged at every byte of the walk (the reference the generated cursors
 * must match). Entries of length 0 are passed over. Physically adjacent entries with equal flags
 * form one run when `merge` is set: their seam is never split and is no virt-boundary gap. At each
 * byte, in order: the walk stops for 'budget' once `budget` bytes were taken since the start or
 * the last stop; it stops for 'virt-boundary' at the first byte of an entry whose seam to the
 * previous entry is unmerged and not aligned to the mask (unless nothing was taken since the start
 * or the last stop); a new segment starts at an unmerged entry start, after maxSegmentLen bytes, on
 * a (segBoundaryMask+1)-aligned address and after a stop. After a stop the walk resumes with
 * `resumeBudget`.
 *
 * `byteByByte` applies the rules to one byte at a time; otherwise a run of bytes at which no rule
 * can fire is taken at once (the same result, for lengths far beyond what a per-byte loop walks).
 */
export function refSegments(entries: readonly Range[], opts: CursorOptions = {}, resumeBudget?: number, byteByByte = false): Seg[] {
  const es = entries.filter((r) => r.len > 0);
  const out: Seg[] = [];
  const merge = opts.merge === true;
  const maxSeg = opts.maxSegmentLen ?? Infinity;
  const mask = opts.segBoundaryMask;
  const bnd = mask === undefined || mask === (1n << 64n) - 1n ? 0n : mask + 1n;
  const vb = BigInt((opts.virtBoundaryMask ?? 0) + 1);
  if (resumeBudget === 0) throw new Error('refSegments: a resume budget of 0 never progresses');
  let budget = opts.budget ?? Infinity;
  let skip = opts.skip ?? 0;
  let cur: { addr: bigint; len: number; flags: number } | null = null;
  let sinceResume = 0;
  const flush = (): void => {
    if (cur) out.push(cur);
    cur = null;
  };
  for (let e = 0; e < es.length; e++) {
    const r = es[e];
    const prev = e > 0 ? es[e - 1] : null;
    const prevEnd = prev === null ? 0n : prev.addr + BigInt(prev.len);
    const merged = prev !== null && merge && prevEnd === r.addr && prev.flags === r.flags;
    const gap = prev !== null && !merged && vb > 1n && (prevEnd % vb !== 0n || r.addr % vb !== 0n);
    let k = 0;
    if (skip > 0) {
      k = Math.min(skip, r.len);
      skip -= k;
    }
    while (k < r.len) {
      // The rules at byte k.
      if (sinceResume >= budget) {
        flush();
        out.push({ stop: 'budget' });
        sinceResume = 0;
        budget = resumeBudget ?? Infinity;
      }
      if (k === 0 && gap && sinceResume > 0) {
        flush();
        out.push({ stop: 'virt-boundary' });
        sinceResume = 0;
        budget = resumeBudget ?? Infinity;
      }
      const a = r.addr + BigInt(k);
      const c = cur as { addr: bigint; len: number; flags: number } | null;
      if (c === null || (k === 0 && !merged) || c.len >= maxSeg || (bnd !== 0n && a % bnd === 0n)) {
        flush();
        cur = { addr: a, len: 0, flags: r.flags };
      }
      const seg = cur as unknown as { addr: bigint; len: number; flags: number };
      // Bytes k+1 .. k+take-1 fire no rule: not an entry start, below maxSeg, no boundary line, within budget.
      let take = 1;
      if (!byteByByte) {
        take = Math.min(r.len - k, maxSeg - seg.len, budget - sinceResume);
        if (bnd !== 0n) {
          const toLine = bnd - (a % bnd);
          if (toLine < BigInt(take)) take = Number(toLine);
        }
      }
      seg.len += take;
      sinceResume += take;
      k += take;
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
