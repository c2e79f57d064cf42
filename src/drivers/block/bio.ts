// Models: struct bio with multi-page bio_vecs (include/linux/blk_types.h, include/linux/bvec.h) as
// bio_add_page() builds it (block/bio.c: bio_add_page, bvec_try_merge_page, __bio_add_page;
// block/blk.h: zone_device_pages_compatible; include/linux/mmzone.h:
// zone_device_pages_have_same_pgmap), from any range source.
//
// A Bio's vectors are a phyr BvecList (the bi_io_vec array, shared by the bios a split makes) and
// its bvec_iter is (iterIdx, iterDone, size) into them. Number columns of the same vectors are kept
// beside the list for the split and map loops.

import { checkAddr, checkLen, err, ok, type Result } from '../../base/index.ts';
import {
  BvecList, RANGE_KIND_MASK, RANGE_NOPAGE, RANGE_RAM, rangeProvider, type CursorOptions, type Range, type RangeCursor,
  type RangeSource,
} from '../../phyr/index.ts';

export const REQ_OP_READ = 0;
export const REQ_OP_WRITE = 1;
/** enum req_op: the data operations the model has. */
export type ReqOp = typeof REQ_OP_READ | typeof REQ_OP_WRITE;

export const SECTOR_SHIFT = 9;
export const SECTOR_SIZE = 512;
/** include/linux/blk_types.h: BIO_MAX_SIZE, the largest bi_size (UINT_MAX). */
export const BIO_MAX_SIZE = 0xffff_ffff;

/**
 * @internal A kernel's PAGE_SIZE as the block layer takes it: a power of two from 4096 (the model's
 * machines have 4, 16 or 64 KiB pages).
 * @throws TypeError/RangeError naming pageSize.
 */
export function checkBlkPageSize(pageSize: unknown): number {
  const ps = checkLen('pageSize', pageSize, 4096, 2 ** 30);
  if ((ps & (ps - 1)) !== 0) throw new RangeError(`pageSize must be a power of two, got ${ps}`);
  return ps;
}

/** @internal The number columns of a bio_vec array (shared by every bio that a split makes of it). */
export interface BioVecs {
  readonly n: number;
  /** bvec_phys() of each vector (exact: physical addresses of a model machine are below 2^52). */
  readonly addr: Float64Array;
  readonly len: Uint32Array;
  /** bv_offset: bvec_phys % PAGE_SIZE (the page size of the bio's vecs). */
  readonly off: Uint32Array;
  readonly flags: Uint32Array;
}

const BIO_TOKEN = Symbol('Bio');

/** true when memory with these range flags is a PCI P2PDMA page (is_pci_p2pdma_page()). */
export function isP2pdmaFlags(flags: number): boolean {
  return rangeProvider(flags) !== 0;
}

/**
 * The identity of the page's dev_pagemap as range flags show it: 0 for ordinary memory (no
 * ZONE_DEVICE pgmap), else the memory type with its provider (one pgmap per provider / region kind).
 */
function pgmapKey(flags: number): number {
  const kindAndProvider = (flags & RANGE_KIND_MASK) | (rangeProvider(flags) << 8);
  return (flags & RANGE_KIND_MASK) === RANGE_RAM && rangeProvider(flags) === 0 ? 0 : kindAndProvider + 1;
}

/** zone_device_pages_have_same_pgmap() on range flags. */
export function samePgmap(a: number, b: number): boolean {
  return pgmapKey(a) === pgmapKey(b);
}

/**
 * struct bio for a read or write: op (bi_opf's operation), sector (bi_iter.bi_sector), the bio_vec
 * array (bi_io_vec) and the position in it (bi_iter: iterIdx = bi_idx, iterDone = bi_bvec_done,
 * size = bi_size). Immutable: a split makes new bios over the same vectors. A Bio is a range source
 * (layout 'bvec') of exactly its bytes.
 */
export class Bio implements RangeSource {
  readonly layout = 'bvec' as const;
  readonly op: ReqOp;
  readonly sector: bigint;
  /**
   * bi_io_vec: the vectors as a phyr bvec list (all of them, also those before bi_idx), each
   * (bv_page, bv_offset) at the bio's PAGE_SIZE (vecs.pageSize).
   */
  readonly vecs: BvecList;
  readonly iterIdx: number;
  readonly iterDone: number;
  /** bi_iter.bi_size in bytes. */
  readonly size: number;
  /** REQ_NOMERGE: set by __bio_add_page() for P2PDMA pages, and on the front bio of a split. */
  readonly nomerge: boolean;
  /** bi_bvec_gap_bit: ffs() of the or of the bio's seams, as bio_split_io_at() records it (0: none seen). */
  readonly bvecGapBit: number;
  /** @internal */
  readonly cols: BioVecs;
  /** @internal bytes of the vectors before the bio's first byte. */
  readonly skipBytes: number;

  /** @internal Use bioFromRanges(). */
  constructor(
    op: ReqOp, sector: bigint, vecs: BvecList, cols: BioVecs, iterIdx: number, iterDone: number, skipBytes: number,
    size: number, nomerge: boolean, bvecGapBit: number, token: symbol,
  ) {
    if (token !== BIO_TOKEN) throw new TypeError('use bioFromRanges() to make a Bio');
    this.op = op;
    this.sector = sector;
    this.vecs = vecs;
    this.cols = cols;
    this.iterIdx = iterIdx;
    this.iterDone = iterDone;
    this.skipBytes = skipBytes;
    this.size = size;
    this.nomerge = nomerge;
    this.bvecGapBit = bvecGapBit;
  }

  /** PAGE_SIZE of the kernel the bio's vectors are expressed in: bv_offset = bvec_phys % pageSize. */
  get pageSize(): number {
    return this.vecs.pageSize;
  }

  /** Bytes of the bio (bi_size), as a range source's total. */
  get totalLen(): number {
    return this.size;
  }

  /** Vectors the bio's bytes touch (bio_for_each_bvec steps). */
  get count(): number {
    const c = this.cols;
    let i = this.iterIdx, left = this.size, d = this.iterDone, n = 0;
    while (left > 0 && i < c.n) {
      left -= Math.min(left, c.len[i] - d);
      d = 0;
      i++;
      n++;
    }
    return n;
  }

  /** 16 bytes per bio_vec the bio touches (the struct bio itself is not counted). */
  get kernelBytes(): number {
    return 16 * this.count;
  }

  get addrFitsNumber(): boolean {
    return this.vecs.addrFitsNumber;
  }

  /** A cursor over exactly the bio's bytes (opts.skip and opts.budget count from the bio's first byte). */
  cursor(opts?: CursorOptions): RangeCursor {
    const skip = opts?.skip ?? 0;
    if (skip > this.size) throw new RangeError(`opts.skip must be <= the bio's size ${this.size}, got ${skip}`);
    const rest = this.size - skip;
    const budget = opts?.budget === undefined ? rest : Math.min(opts.budget, rest);
    const whole = this.skipBytes === 0 && this.size === this.vecs.totalLen;
    return this.vecs.cursor({ ...opts, skip: this.skipBytes + skip, budget: whole && opts?.budget === undefined ? undefined : budget });
  }

  /** One Range per bio_vec step (bio_for_each_bvec), cut to the bio's bytes. */
  *[Symbol.iterator](): Iterator<Range> {
    const c = this.cols;
    let i = this.iterIdx, left = this.size, d = this.iterDone;
    while (left > 0 && i < c.n) {
      const l = Math.min(left, c.len[i] - d);
      yield { addr: BigInt(c.addr[i] + d), len: l, flags: c.flags[i] };
      left -= l;
      d = 0;
      i++;
    }
  }
}

/** The (bv_page, bv_offset) list of the vectors at pageSize, and the bv_offset column. */
function buildVecs(addr: Float64Array, len: Uint32Array, flg: Uint32Array, n: number, pageSize: number): { vecs: BvecList; off: Uint32Array } {
  const b = BvecList.builder(pageSize, n);
  const off = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    off[i] = addr[i] % pageSize;
    b.push((addr[i] - off[i]) / pageSize, off[i], len[i], flg[i]);
  }
  return { vecs: b.build(), off };
}

/**
 * @internal The bio with its vectors expressed at pageSize (the same bio when they already are):
 * the same bytes, bi_iter, flags and gap bit; each bv_offset becomes bvec_phys % pageSize. The
 * block layer calls it for a queue whose PAGE_SIZE is not the one the bio was built with (a model
 * bio may be built before it meets its kernel; in Linux a bio and its queue share one PAGE_SIZE).
 */
export function bioAtPageSize(bio: Bio, pageSize: number): Bio {
  if (bio.vecs.pageSize === pageSize) return bio;
  const c = bio.cols;
  const { vecs, off } = buildVecs(c.addr, c.len, c.flags, c.n, pageSize);
  const cols: BioVecs = { n: c.n, addr: c.addr, len: c.len, off, flags: c.flags };
  return new Bio(bio.op, bio.sector, vecs, cols, bio.iterIdx, bio.iterDone, bio.skipBytes, bio.size, bio.nomerge, bio.bvecGapBit,
    BIO_TOKEN);
}

/** @internal A bio over the same vectors starting `bytes` further, `size` bytes long (bio_advance + bi_size). */
export function bioSlice(bio: Bio, bytes: number, size: number, sector: bigint, nomerge: boolean, gapBit: number): Bio {
  const c = bio.cols;
  let i = bio.iterIdx, d = bio.iterDone + bytes;
  while (i < c.n && d >= c.len[i]) {
    d -= c.len[i];
    i++;
  }
  return new Bio(bio.op, sector, bio.vecs, c, i, d, bio.skipBytes + bytes, size, nomerge, gapBit, BIO_TOKEN);
}

export interface BioFromRangesOptions {
  /** Merge contiguous ranges as bio_add_page() does (default true); false: __bio_add_page(), one vector per range. */
  readonly merge?: boolean;
  /**
   * PAGE_SIZE of the kernel building the bio (default 4096): the page size of the machine whose
   * memory the ranges are (Machine.pageSize, RequestQueue.pageSize). Each vector's bv_offset is
   * its address modulo it.
   */
  readonly pageSize?: number;
}

/** @throws TypeError/RangeError naming op. */
export function checkReqOp(op: unknown): ReqOp {
  if (op !== REQ_OP_READ && op !== REQ_OP_WRITE) {
    throw new RangeError(`op must be REQ_OP_READ (0) or REQ_OP_WRITE (1), got ${String(op)}`);
  }
  return op;
}

/**
 * A bio for `op` at `sector` holding the bytes of `source` (any range source: phyr list, bvec list,
 * page list or array, scatterlist, another bio) in order, each range added as bio_add_page() adds
 * it: a range physically contiguous with the last vector and of the same pgmap extends that
 * vector (bvec_try_merge_page()); anything else starts a new multi-page vector, whose bv_offset is
 * its address modulo opts.pageSize (PAGE_SIZE: the callers of bio_add_page() pass offset_in_page()
 * or a folio offset % PAGE_SIZE, include/linux/bvec.h: bvec_set_folio()). Virt-boundary gaps
 * are not checked here (the kernel checks them when it splits the bio for a queue).
 *
 * Failures (Result):
 * - EINVAL: the source is empty; or it mixes P2PDMA memory of one provider with other memory,
 *   which bio_add_page() refuses (zone_device_pages_compatible()): a bio's DMA mapping classifies
 *   its first segment only.
 * - EFAULT: a range has no struct page (RANGE_NOPAGE), which a bio_vec cannot name.
 * - E2BIG: more than BIO_MAX_SIZE (4 GiB - 1) bytes, the bound bio_add_page() keeps bi_size in.
 * With opts.merge false every range is its own vector, as __bio_add_page() adds them (the
 * mapping walk still merges contiguous vectors: blk_map_iter_next()).
 * Model deviation: a bio holds any number of vectors (bio_alloc() bounds bi_max_vecs, BIO_MAX_VECS
 * = 256, and the direct-I/O path then starts the next bio); one model bio stands for that chain.
 * Model deviation: the bio is not tied to a block device (bio_alloc() takes one), so it does not
 * know its kernel's PAGE_SIZE unless opts.pageSize says it; submitted to a queue of another
 * PAGE_SIZE it is re-expressed at the queue's (blkSubmitBio), the same bytes with the offsets that
 * kernel would have given them.
 * @throws TypeError/RangeError naming op, sector, source or opts.pageSize.
 */
export function bioFromRanges(op: ReqOp, sector: bigint, source: RangeSource, opts: BioFromRangesOptions = {}): Result<Bio> {
  checkReqOp(op);
  if (opts === null || typeof opts !== 'object') throw new TypeError(`opts must be an object, got ${String(opts)}`);
  const merge = opts.merge ?? true;
  const pageSize = opts.pageSize === undefined ? 4096 : checkBlkPageSize(opts.pageSize);
  checkAddr('sector', sector);
  if (source === null || typeof source !== 'object' || typeof (source as RangeSource).cursor !== 'function') {
    throw new TypeError(`source must be a range source (RangeSource), got ${String(source)}`);
  }
  if (source.totalLen === 0) return err('EINVAL', 'bioFromRanges: the source holds no bytes');
  if (source.totalLen > BIO_MAX_SIZE) {
    return err('E2BIG', `bioFromRanges: ${source.totalLen} bytes exceed BIO_MAX_SIZE (${BIO_MAX_SIZE})`);
  }
  let cap = Math.max(4, Math.min(source.count, 1 << 20));
  let addr = new Float64Array(cap), len = new Uint32Array(cap), flg = new Uint32Array(cap);
  let n = 0;
  const c = source.cursor();
  let idx = 0;
  let nomerge = false;
  for (; !c.done; c.next(), idx++) {
    const a = source.addrFitsNumber ? c.addrNum : Number(c.addr);
    const l = c.len, f = c.flags;
    if (f & RANGE_NOPAGE) return err('EFAULT', `bioFromRanges: range ${idx} (0x${c.addr.toString(16)}) has no struct page`);
    if (isP2pdmaFlags(f)) nomerge = true;
    if (n > 0) {
      const pf = flg[n - 1];
      if ((isP2pdmaFlags(pf) || isP2pdmaFlags(f)) && !samePgmap(pf, f)) {
        return err('EINVAL', `bioFromRanges: range ${idx} (0x${c.addr.toString(16)}) is P2PDMA memory of another pgmap than the bio's ` +
          'last vector (zone_device_pages_compatible)');
      }
      if (merge && addr[n - 1] + len[n - 1] === a && samePgmap(pf, f)) {
        len[n - 1] += l;
        continue;
      }
    }
    if (n === cap) {
      cap *= 2;
      const a2 = new Float64Array(cap), l2 = new Uint32Array(cap), f2 = new Uint32Array(cap);
      a2.set(addr); l2.set(len); f2.set(flg);
      addr = a2; len = l2; flg = f2;
    }
    addr[n] = a;
    len[n] = l;
    flg[n] = f;
    n++;
  }
  const { vecs, off } = buildVecs(addr, len, flg, n, pageSize);
  const cols: BioVecs = { n, addr: addr.subarray(0, n), len: len.subarray(0, n), off, flags: flg.subarray(0, n) };
  return ok(new Bio(op, sector, vecs, cols, 0, 0, 0, source.totalLen, nomerge, 0, BIO_TOKEN));
}
