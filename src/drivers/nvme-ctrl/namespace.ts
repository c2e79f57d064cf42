// Models: an NVMe namespace's media (NVM Express NVM Command Set: a namespace is nsze logical
// blocks of 2^LBADS bytes, no metadata here). Storage is sparse: only chunks that were written are
// allocated, so a 4 GiB namespace costs nothing until used; an unwritten block reads as zeroes
// (deallocated blocks read as zeroes when DLFEAT reports it; the model always does).

/** Bytes per allocated chunk of backing store. */
const CHUNK = 64 * 1024;

export class NvmeNamespace {
  readonly nsid: number;
  /** Logical block size in bytes. */
  readonly lbaBytes: number;
  /** Namespace size in logical blocks (NSZE). */
  readonly nsze: number;
  private readonly chunks = new Map<number, Uint8Array>();

  constructor(nsid: number, bytes: number, lbaBytes: number) {
    this.nsid = nsid;
    this.lbaBytes = lbaBytes;
    this.nsze = bytes / lbaBytes;
  }

  /** Capacity in bytes. */
  get bytes(): number {
    return this.nsze * this.lbaBytes;
  }

  /** Bytes of backing store allocated so far (a multiple of the chunk size). */
  allocatedBytes(): number {
    return this.chunks.size * CHUNK;
  }

  /** Copies [off, off + len) of the media into a new array (caller has checked the bounds). */
  read(off: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    let at = 0;
    while (at < len) {
      const pos = off + at;
      const idx = Math.floor(pos / CHUNK);
      const inChunk = pos - idx * CHUNK;
      const n = Math.min(len - at, CHUNK - inChunk);
      const c = this.chunks.get(idx);
      if (c !== undefined) out.set(c.subarray(inChunk, inChunk + n), at);
      at += n;
    }
    return out;
  }

  /** Stores data at byte offset off of the media (caller has checked the bounds). */
  write(off: number, data: Uint8Array): void {
    let at = 0;
    while (at < data.length) {
      const pos = off + at;
      const idx = Math.floor(pos / CHUNK);
      const inChunk = pos - idx * CHUNK;
      const n = Math.min(data.length - at, CHUNK - inChunk);
      let c = this.chunks.get(idx);
      if (c === undefined) {
        c = new Uint8Array(CHUNK);
        this.chunks.set(idx, c);
      }
      c.set(data.subarray(at, at + n), inChunk);
      at += n;
    }
  }
}
