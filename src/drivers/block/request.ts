// Models: splitting a read/write bio to a queue's limits and turning each piece into a request
// (block/blk-merge.c: bio_split_io_at, bvec_split_segs, get_max_io_size, bio_split_rw,
// bvec_seg_gap; block/blk.h: bio_may_need_split, __bio_split_to_limits, bvec_gap_to_prev;
// block/blk-core.c: submit_bio_noacct, bio_check_eod;
// block/blk-mq.c: bio_unaligned, blk_mq_submit_bio, blk_mq_bio_to_request;
// include/linux/blk-mq.h: req_phys_gap_mask, blk_rq_bytes, blk_rq_nr_phys_segments).

import { err, ok, type Result } from '../../base/index.ts';
import { Bio, bioAtPageSize, bioSlice, SECTOR_SHIFT, SECTOR_SIZE, type ReqOp } from './bio.ts';
import { dmaContextOf } from '../../dma/index.ts';
import { getMaxSegmentSize, type QueueLimits, type RequestQueue } from './queue.ts';

/** ffs(): 1 + the index of the lowest set bit of a u32, 0 for 0. */
export function ffs(x: number): number {
  x >>>= 0;
  return x === 0 ? 0 : 32 - Math.clz32(x & -x);
}

/**
 * struct request for a read or write: the queue, op, start sector (__sector), bytes (__data_len),
 * nr_phys_segments as bio splitting counted them, the bios (one: the model does not merge bios
 * into requests) and phys_gap_bit (the request's physical gap tracking: ffs() of the or of every
 * seam between its bio_vecs that does not merge, 0 when there is none).
 */
export class Request {
  readonly q: RequestQueue;
  readonly op: ReqOp;
  readonly sector: bigint;
  readonly dataLen: number;
  readonly nrPhysSegments: number;
  readonly bio: Bio;
  readonly physGapBit: number;

  /** @internal Made by blkSubmitBio(). */
  constructor(q: RequestQueue, bio: Bio, nrPhysSegments: number) {
    this.q = q;
    this.op = bio.op;
    this.sector = bio.sector;
    this.dataLen = bio.size;
    this.nrPhysSegments = nrPhysSegments;
    this.bio = bio;
    this.physGapBit = bio.bvecGapBit;
  }

  /** rq->bio .. rq->biotail: the bios of the request. */
  get bios(): readonly Bio[] {
    return [this.bio];
  }
}

/** blk_rq_bytes(): bytes of the request. */
export function blkRqBytes(req: Request): number {
  return req.dataLen;
}

/** blk_rq_nr_phys_segments(). */
export function blkRqNrPhysSegments(req: Request): number {
  return req.nrPhysSegments;
}

/**
 * req_phys_gap_mask(): every bit from phys_gap_bit - 1 up (0n when the request has no gap): a seam
 * of the request is misaligned at most to the lowest of these bits.
 */
export function reqPhysGapMask(req: Request): bigint {
  if (req.physGapBit === 0) return 0n;
  return ~((1n << BigInt(req.physGapBit - 1)) - 1n) & 0xffff_ffff_ffff_ffffn;
}

/** Where bio_split_rw_at() says to split: 0 sectors for none. */
export interface BioSplit {
  /** Sectors of the front bio; 0: the bio fits as it is. */
  readonly splitSectors: number;
  /** Segments of the front bio (of the whole bio when splitSectors is 0). */
  readonly nrSegs: number;
  /** ffs() of the or of the seams seen (bi_bvec_gap_bit). */
  readonly gapBit: number;
}

/** block/blk.h: bvec_gap_to_prev() with the previous vector's offset + length already added. */
function gapToPrev(vbm: number, prevEnd: number, offset: number): boolean {
  return vbm !== 0 && ((offset & vbm) !== 0 || (prevEnd & vbm) !== 0);
}

/**
 * bio_split_rw_at() = bio_split_io_at(bio, lim, segs, max_bytes, lim->dma_alignment): walks the
 * bio's vectors (bv_offset at the queue's PAGE_SIZE: a bio built at another is re-expressed at
 * it); EINVAL for a vector whose offset or length breaks dma_alignment; splits before a
 * vector whose seam to the previous one is a virt-boundary gap, or where max_segments or maxBytes
 * is reached (a vector longer than a segment counts as several, get_max_segment_size(), and the
 * walk stops inside it at a virt-boundary misaligned segment end: bvec_split_segs()). The split is
 * rounded down to the logical block size; EINVAL when that leaves nothing.
 */
export function bioSplitRwAt(q: RequestQueue, bio: Bio, maxBytes: number): Result<BioSplit> {
  bio = bioAtPageSize(bio, q.pageSize);
  const lim = q.limits;
  const c = bio.cols;
  const startMask = lim.dmaAlignment, lenMask = lim.dmaAlignment;
  const vbm = lim.virtBoundaryMask;
  const maxSegs = lim.maxSegments, maxFast = lim.maxFastSegmentSize;
  let nsegs = 0, bytes = 0, gaps = 0;
  let havePrev = false, prevEnd = 0;
  let i = bio.iterIdx, d = bio.iterDone, left = bio.size;
  let split = false;
  for (; left > 0; i++, d = 0) {
    const bvOff = c.off[i] + d;
    const bvLen = Math.min(left, c.len[i] - d);
    const phys = c.addr[i] + d;
    left -= bvLen;
    if ((bvOff & startMask) !== 0 || (bvLen & lenMask) !== 0) {
      return err('EINVAL', `bio_vec ${i} (offset ${bvOff}, len ${bvLen}) breaks the queue's dma_alignment mask ${startMask}`);
    }
    if (havePrev) {
      if (gapToPrev(vbm, prevEnd, bvOff)) { split = true; break; }
      gaps |= bvOff | prevEnd;
    }
    if (nsegs < maxSegs && bytes + bvLen <= maxBytes && bvOff + bvLen <= maxFast) {
      nsegs++;
      bytes += bvLen;
    } else {
      // bvec_split_segs()
      const maxLen = maxBytes - bytes;
      let len = Math.min(bvLen, maxLen);
      let total = 0;
      while (len > 0 && nsegs < maxSegs) {
        const seg = getMaxSegmentSize(q, phys + total, len);
        nsegs++;
        total += seg;
        len -= seg;
        if (((bvOff + total) & vbm) !== 0) break;
      }
      bytes += total;
      if (len > 0 || bvLen > maxLen) { split = true; break; }
    }
    havePrev = true;
    prevEnd = (bvOff + bvLen) >>> 0;
  }
  if (!split) return ok({ splitSectors: 0, nrSegs: nsegs, gapBit: ffs(gaps) });
  bytes -= bytes % splitAlignment(lim);
  if (bytes === 0) {
    return err('EINVAL', 'the bio cannot be split into a valid I/O (too many segments or a virt-boundary gap before one logical block)');
  }
  return ok({ splitSectors: bytes >> SECTOR_SHIFT, nrSegs: nsegs, gapBit: ffs(gaps) });
}

/** bio_split_alignment(): the logical block size (zoned write granularity is not modelled). */
function splitAlignment(lim: QueueLimits): number {
  return lim.logicalBlockSize;
}

/**
 * get_max_io_size(): sectors from the bio's start that one request may hold: max_sectors, its end
 * aligned to the physical block size when that leaves something, else to the logical block size.
 * The sum start + max_sectors is an unsigned int in block/blk-merge.c: get_max_io_size(), so with
 * max_sectors near UINT_MAX it wraps, the aligned end falls at or below the start and the answer is
 * max_sectors rounded down to the logical block size.
 */
export function getMaxIoSize(q: RequestQueue, bio: Bio): number {
  const lim = q.limits;
  const pbs = lim.physicalBlockSize >> SECTOR_SHIFT, lbs = lim.logicalBlockSize >> SECTOR_SHIFT;
  const maxSectors = lim.maxSectors;
  const start = Number(bio.sector & BigInt(pbs - 1));
  const sum = (start + maxSectors) >>> 0;
  const end = sum - (sum % pbs);
  if (end > start) return end - start;
  return maxSectors - (maxSectors % lbs);
}

/**
 * The max_bytes bio_split_rw() hands bio_split_rw_at() (block/blk-merge.c): get_max_io_size() <<
 * SECTOR_SHIFT in unsigned int arithmetic, so from 2^23 sectors up it wraps modulo 2^32 (to 0
 * at exactly 4 GiB, which makes every split fail with EINVAL, or to a small byte count).
 */
function splitMaxBytes(q: RequestQueue, bio: Bio): number {
  return (getMaxIoSize(q, bio) * SECTOR_SIZE) % 0x1_0000_0000;
}

/** bio_may_need_split(): false only for a single vector within max_fast_segment_size. */
function bioMayNeedSplit(q: RequestQueue, bio: Bio): boolean {
  const c = bio.cols, i = bio.iterIdx;
  if (bio.size > c.len[i] - bio.iterDone) return true;
  return c.len[i] + c.off[i] > q.limits.maxFastSegmentSize;
}

/**
 * bio_check_eod() (block/blk-core.c, from submit_bio_noacct()): a bio of at least one sector that
 * does not fit below the disk's capacity fails with EIO, and the kernel logs the attempt, except on
 * a disk of no sectors, which it fails without a word. A queue with no capacity set has no end
 * (queue.ts).
 */
function bioCheckEod(q: RequestQueue, bio: Bio): Result<void> {
  const max = q.capacity;
  const n = BigInt(bio.size >> SECTOR_SHIFT);
  if (max === null || n === 0n || (n <= max && bio.sector <= max - n)) return ok();
  const why = `rw=${bio.op}, sector=${bio.sector}, nr_sectors = ${n} limit=${max}`;
  if (max === 0n) return err('EIO', `a disk of no sectors: ${why} (bio_check_eod)`);
  dmaContextOf(q.dev).mm.events.record('INFO', 'block', `${q.dev.name}: attempt to access beyond end of device (${why})`, { dev: q.dev.name });
  return err('EIO', `attempt to access beyond end of device: ${why} (bio_check_eod)`);
}

/**
 * submit_bio() to a blk-mq queue as submit_bio_noacct() and blk_mq_submit_bio() handle a read or
 * write (a bio built at another PAGE_SIZE than the queue's is first re-expressed at the queue's, so
 * the split and the requests' bios have the bv_offsets of the queue's kernel): EIO for a bio that
 * runs past the end of the disk (bioCheckEod) and for a bio
 * whose size or start is not a multiple of the logical block size (bio_unaligned(), the bio ends
 * with BLK_STS_IOERR); then bio_split_rw() again and again: each front piece becomes a request
 * (blk_mq_bio_to_request(): sector, bytes, nr_phys_segments, phys_gap_bit), the rest is submitted
 * anew. A split failure (EINVAL) fails the whole bio.
 * Model deviation: the requests are returned rather than dispatched, the submitted bio is left as
 * it was (the kernel shortens it to each remainder), no request is merged with another, and when a
 * later piece fails no request of the bio is returned (the kernel would already have issued the
 * front pieces).
 * @throws TypeError if q or bio is not what it says.
 */
export function blkSubmitBio(q: RequestQueue, bio: Bio): Result<Request[]> {
  if (!(bio instanceof Bio)) throw new TypeError(`bio must be a Bio, got ${String(bio)}`);
  if (q === null || typeof q !== 'object' || q.limits === undefined) throw new TypeError(`q must be a RequestQueue, got ${String(q)}`);
  const eod = bioCheckEod(q, bio);
  if (!eod.ok) return eod;
  const lim = q.limits;
  const bsMask = BigInt(lim.logicalBlockSize - 1);
  if ((bio.size % lim.logicalBlockSize) !== 0 || ((bio.sector << BigInt(SECTOR_SHIFT)) & bsMask) !== 0n) {
    return err('EIO', `bio at sector ${bio.sector} of ${bio.size} bytes is not aligned to the logical block size ${lim.logicalBlockSize}`);
  }
  const out: Request[] = [];
  let cur = bioAtPageSize(bio, q.pageSize);
  for (;;) {
    if (!bioMayNeedSplit(q, cur)) {
      out.push(new Request(q, cur, 1));
      return ok(out);
    }
    const s = bioSplitRwAt(q, cur, splitMaxBytes(q, cur));
    if (!s.ok) return s;
    if (s.value.splitSectors === 0) {
      out.push(new Request(q, bioSlice(cur, 0, cur.size, cur.sector, cur.nomerge, s.value.gapBit), s.value.nrSegs));
      return ok(out);
    }
    const frontBytes = s.value.splitSectors * SECTOR_SIZE;
    // Model deviation: the front bio keeps the gap bit bio_split_io_at() computed. In the kernel
    // bio_split() makes the front a clone (bio_alloc_clone(): bio_init() zeroes bi_bvec_gap_bit and
    // __bio_clone() does not copy it), so a split request has phys_gap_bit 0 and
    // blk_can_dma_map_iova() would coalesce it even across misaligned seams, where dma_iova_link()
    // then fails (the I/O ends with an error). The remainder keeps the bit, as the kernel's
    // re-submitted bio does.
    out.push(new Request(q, bioSlice(cur, 0, frontBytes, cur.sector, true, s.value.gapBit), s.value.nrSegs));
    cur = bioSlice(cur, frontBytes, cur.size - frontBytes, cur.sector + BigInt(s.value.splitSectors), cur.nomerge, s.value.gapBit);
  }
}
