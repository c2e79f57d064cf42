// What a range of bytes should hold: the runner records every write it makes (CPU pattern writes,
// device writes, block reads) as pattern pieces, so a later read can be checked without keeping a
// copy of the buffer. Bytes nothing wrote are unknown and not checked.

import { patternBytes } from '../../base/index.ts';

/** Bytes [off, off+len) hold patternBytes(skip + len, seed) from index skip. */
interface Piece { readonly off: number; readonly len: number; readonly seed: number; readonly skip: number }

/** Pieces longer than this are split, so a check never generates more than this many pattern bytes per piece. */
const CHUNK = 1 << 20;

export class Shadow {
  private pieces: Piece[] = [];

  /** Records that [off, off+len) now holds the pattern of `seed` (in chunks of 1 MiB, seed + chunk index). */
  write(off: number, len: number, seed: number): void {
    for (let k = 0, at = 0; at < len; k++, at += CHUNK) this.add({ off: off + at, len: Math.min(CHUNK, len - at), seed: (seed + k) >>> 0, skip: 0 });
  }

  /** The pattern bytes of a write of [off, off+len) with seed, as write() lays them out. */
  static bytes(len: number, seed: number): Uint8Array {
    if (len <= CHUNK) return patternBytes(len, seed >>> 0);
    const out = new Uint8Array(len);
    for (let k = 0, at = 0; at < len; k++, at += CHUNK) out.set(patternBytes(Math.min(CHUNK, len - at), (seed + k) >>> 0), at);
    return out;
  }

  /** Records that [off, off+len) became unknown. */
  forget(off: number, len: number): void {
    this.cut(off, off + len);
  }

  /** Copies what `src` knows of [srcOff, srcOff+len) to [dstOff, ...) here (unknown stays unknown). */
  copyFrom(src: Shadow, srcOff: number, dstOff: number, len: number): void {
    this.cut(dstOff, dstOff + len);
    for (const p of src.pieces) {
      const a = Math.max(p.off, srcOff);
      const b = Math.min(p.off + p.len, srcOff + len);
      if (a >= b) continue;
      this.pieces.push({ off: dstOff + (a - srcOff), len: b - a, seed: p.seed, skip: p.skip + (a - p.off) });
    }
  }

  /** The expected bytes of [off, off+len) and which of them are known (1) or not (0). */
  expected(off: number, len: number): { bytes: Uint8Array; known: Uint8Array } {
    const bytes = new Uint8Array(len);
    const known = new Uint8Array(len);
    for (const p of this.pieces) {
      const a = Math.max(p.off, off);
      const b = Math.min(p.off + p.len, off + len);
      if (a >= b) continue;
      const pat = patternBytes(p.skip + p.len, p.seed);
      bytes.set(pat.subarray(p.skip + (a - p.off), p.skip + (b - p.off)), a - off);
      known.fill(1, a - off, b - off);
    }
    return { bytes, known };
  }

  private add(p: Piece): void {
    this.cut(p.off, p.off + p.len);
    this.pieces.push(p);
  }

  /** Removes [a, b) from every piece (pieces stay disjoint). */
  private cut(a: number, b: number): void {
    const out: Piece[] = [];
    for (const p of this.pieces) {
      const e = p.off + p.len;
      if (e <= a || p.off >= b) {
        out.push(p);
        continue;
      }
      if (p.off < a) out.push({ ...p, len: a - p.off });
      if (e > b) out.push({ off: b, len: e - b, seed: p.seed, skip: p.skip + (b - p.off) });
    }
    this.pieces = out;
  }
}

/** Bytes that differ where known. */
export function countMismatches(got: Uint8Array, exp: { bytes: Uint8Array; known: Uint8Array }): { checked: number; bad: number } {
  let checked = 0;
  let bad = 0;
  for (let i = 0; i < got.length; i++) {
    if (exp.known[i] === 0) continue;
    checked++;
    if (got[i] !== exp.bytes[i]) bad++;
  }
  return { checked, bad };
}
