// Models: the byte contents of physical memory (RAM, pmem, device BARs) as a sparse store.
// Nothing is allocated until written; unwritten memory reads as zero. Chunks of 4 KiB.

import { checkAddr, checkLen, hex } from '../base/index.ts';
import type { Region } from './layout.ts';
import type { PhysMem } from './types.ts';

const CHUNK_SHIFT = 12;
const CHUNK = 1 << CHUNK_SHIFT;

/** Sparse physical memory over the accessible regions of a memory map. */
export class SparsePhysMem implements PhysMem {
  readonly chunkSize = CHUNK;
  private readonly chunks = new Map<number, Uint8Array>();
  private readonly regions: readonly Region[];
  private readonly addrBits: number;
  /**
   * Called after every CPU store that went through write/fill/copy (the destination of a copy), with
   * the physical address as a number and the length; null (the default) costs one check. The
   * machine registers the DMA layer's ownership check here (a model check: kernel/dma/debug.c has
   * none; debugDmaCheckCpuWrite in src/dma/debug.ts). Device DMA writes and
   * swiotlb bounce copies use deviceWrite/bounceCopy, which do not call it; stores through view()
   * (page-table pages, bounce slots) do not either.
   */
  onCpuWrite: ((addrNum: number, len: number) => void) | null = null;

  constructor(regions: readonly Region[], physAddrBits: number) {
    this.regions = regions;
    this.addrBits = physAddrBits;
  }

  get residentBytes(): number {
    return this.chunks.size * CHUNK;
  }

  /** Checks [addr, addr+len) lies in accessible regions without holes; returns addr as a number. */
  private check(what: string, addr: unknown, len: number): number {
    const a = Number(checkAddr(`${what} addr`, addr, this.addrBits));
    const end = a + len;
    let pos = a;
    const regs = this.regions;
    let i = 0;
    while (i < regs.length && regs[i].endNum <= pos) i++;
    do {
      const r = regs[i];
      if (r === undefined || r.startNum > pos || !r.accessible) {
        throw new RangeError(`${what}: physical range [${hex(a)}, ${hex(end)}) ${r && r.startNum <= pos ? `touches ${r.kind} region ${r.name}` : 'is not backed by memory'} at ${hex(pos)}`);
      }
      pos = r.endNum;
      i++;
    } while (pos < end);
    return a;
  }

  private chunkFor(idx: number): Uint8Array {
    let c = this.chunks.get(idx);
    if (c === undefined) {
      c = new Uint8Array(CHUNK);
      this.chunks.set(idx, c);
    }
    return c;
  }

  /** read() without the checks: [a, a+len) is known to be accessible. */
  private readAt(a: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    let done = 0;
    while (done < len) {
      const p = a + done;
      const idx = Math.floor(p / CHUNK);
      const off = p - idx * CHUNK;
      const n = Math.min(CHUNK - off, len - done);
      const c = this.chunks.get(idx);
      if (c !== undefined) out.set(n === CHUNK ? c : c.subarray(off, off + n), done);
      done += n;
    }
    return out;
  }

  /** write() without the checks: [a, a+bytes.length) is known to be accessible. */
  private writeAt(a: number, bytes: Uint8Array): void {
    const len = bytes.length;
    let done = 0;
    while (done < len) {
      const p = a + done;
      const idx = Math.floor(p / CHUNK);
      const off = p - idx * CHUNK;
      const n = Math.min(CHUNK - off, len - done);
      this.chunkFor(idx).set(bytes.subarray(done, done + n), off);
      done += n;
    }
  }

  /**
   * Copies [s, s+len) to [d, d+len) chunk piece to chunk piece, with no temporary of len bytes
   * (both known to be accessible). A source chunk never written reads as zero: its piece zeroes the
   * destination, and allocates nothing when the destination chunk is not resident either. Ranges
   * that overlap go through a temporary, for memmove semantics.
   */
  private copyAt(d: number, s: number, len: number): void {
    if (len === 0 || d === s) return;
    if (s < d + len && d < s + len) {
      this.writeAt(d, this.readAt(s, len));
      return;
    }
    let done = 0;
    while (done < len) {
      const sp = s + done;
      const dp = d + done;
      const si = Math.floor(sp / CHUNK);
      const so = sp - si * CHUNK;
      const di = Math.floor(dp / CHUNK);
      const dOff = dp - di * CHUNK;
      const n = Math.min(CHUNK - so, CHUNK - dOff, len - done);
      const sc = this.chunks.get(si);
      if (sc !== undefined) {
        this.chunkFor(di).set(n === CHUNK ? sc : sc.subarray(so, so + n), dOff);
      } else {
        const dc = this.chunks.get(di);
        if (dc !== undefined) dc.fill(0, dOff, dOff + n);
      }
      done += n;
    }
  }

  /** Reads len bytes at addr (a fresh copy). Throws RangeError for holes / reserved memory. */
  read(addr: bigint, len: number): Uint8Array {
    checkLen('len', len);
    return this.readAt(this.check('mem.read', addr, len), len);
  }

  /** Writes bytes at addr. Throws RangeError (and writes nothing) for holes / reserved memory. */
  write(addr: bigint, bytes: Uint8Array): void {
    if (!(bytes instanceof Uint8Array)) throw new TypeError(`bytes must be a Uint8Array, got ${typeof bytes}`);
    const a = this.check('mem.write', addr, bytes.length);
    this.writeAt(a, bytes);
    if (this.onCpuWrite !== null && bytes.length > 0) this.onCpuWrite(a, bytes.length);
  }

  /** write() by a device's DMA engine: the same checks, but no CPU-write hook. */
  deviceWrite(addr: bigint, bytes: Uint8Array): void {
    if (!(bytes instanceof Uint8Array)) throw new TypeError(`bytes must be a Uint8Array, got ${typeof bytes}`);
    this.writeAt(this.check('mem.deviceWrite', addr, bytes.length), bytes);
  }

  /** Fills len bytes at addr with value (0..255). A zero fill of whole chunks releases them. */
  fill(addr: bigint, len: number, value: number): void {
    checkLen('len', len);
    checkLen('value', value, 0, 255);
    const a = this.check('mem.fill', addr, len);
    let done = 0;
    while (done < len) {
      const p = a + done;
      const idx = Math.floor(p / CHUNK);
      const off = p - idx * CHUNK;
      const n = Math.min(CHUNK - off, len - done);
      if (value === 0 && n === CHUNK) this.chunks.delete(idx);
      else if (value !== 0 || this.chunks.has(idx)) this.chunkFor(idx).fill(value, off, off + n);
      done += n;
    }
    if (this.onCpuWrite !== null && len > 0) this.onCpuWrite(a, len);
  }

  /** Copies len bytes from src to dst (memmove semantics); both ranges are checked before anything is written. */
  copy(dst: bigint, src: bigint, len: number): void {
    checkLen('len', len);
    const s = this.check('mem.copy src', src, len);
    const d = this.check('mem.copy dst', dst, len);
    this.copyAt(d, s, len);
    if (this.onCpuWrite !== null && len > 0) this.onCpuWrite(d, len);
  }

  /** copy() done by swiotlb between a buffer and its bounce slot: the same checks, but no CPU-write hook. */
  bounceCopy(dst: bigint, src: bigint, len: number): void {
    checkLen('len', len);
    const s = this.check('mem.bounceCopy src', src, len);
    const d = this.check('mem.bounceCopy dst', dst, len);
    this.copyAt(d, s, len);
  }

  /** A live view of len bytes inside one 4 KiB chunk of accessible memory. */
  view(addr: bigint, len: number): Uint8Array {
    checkLen('len', len, 1, CHUNK);
    const a = this.check('mem.view', addr, len);
    const idx = Math.floor(a / CHUNK);
    const off = a - idx * CHUNK;
    if (off + len > CHUNK) throw new RangeError(`mem.view: [${hex(a)}, +${len}) crosses a ${CHUNK}-byte chunk boundary`);
    return this.chunkFor(idx).subarray(off, off + len);
  }

  /**
   * Drops the backing of [addr, addr+len) (both chunk-aligned), so it reads as zero again: the
   * model's clear_page for freshly allocated user pages. Costs O(min(chunks in range, resident chunks)).
   */
  discard(addrNum: number, len: number): void {
    const first = Math.floor(addrNum / CHUNK);
    const last = Math.ceil((addrNum + len) / CHUNK);
    if (this.chunks.size === 0) return;
    if (last - first > this.chunks.size) {
      for (const k of this.chunks.keys()) if (k >= first && k < last) this.chunks.delete(k);
    } else {
      for (let k = first; k < last; k++) this.chunks.delete(k);
    }
  }
}
