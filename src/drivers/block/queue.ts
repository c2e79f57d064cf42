// Models: struct queue_limits and its validation (include/linux/blkdev.h; block/blk-settings.c:
// blk_set_default_limits / blk_validate_limits; include/linux/blkdev.h: enum blk_default_limits;
// block/blk.h: BLK_DEF_MAX_SECTORS_CAP, BLK_MIN_SEGMENT_SIZE) and a blk-mq request queue
// (blk_mq_alloc_queue) holding the device whose DMA it maps and its limits, and the capacity of
// the disk on it (block/genhd.c: set_capacity; include/linux/blkdev.h: bdev_nr_sectors,
// bdev_nr_bytes).
//
// Model deviation: the model has no gendisk or block_device; the queue stands for the disk and
// carries its capacity. A queue whose driver never set one (test queues, the HBA report) has no
// end: bio_check_eod() is not applied to it, where a kernel disk of capacity 0 fails every bio.
//
// PAGE_SIZE is the page size of the machine the queue's device is on (4, 16 or 64 KiB): the
// kernel's blk_validate_limits() checks max_hw_sectors against PAGE_SECTORS, caps
// max_fast_segment_size at PAGE_SIZE and dma_alignment at PAGE_SIZE, while its other floors
// (max_user_sectors, seg_boundary_mask, max_segment_size) are BLK_MIN_SEGMENT_SIZE, 4096 whatever
// PAGE_SIZE is.

import { err, ok, type Result } from '../../base/index.ts';
import { dmaContextOf } from '../../dma/index.ts';
import type { Device } from '../../pci/index.ts';
import { SECTOR_SHIFT, SECTOR_SIZE, checkBlkPageSize } from './bio.ts';

export const BLK_MAX_SEGMENTS = 128;
export const BLK_SAFE_MAX_SECTORS = 255;
export const BLK_MAX_SEGMENT_SIZE = 65536;
export const BLK_SEG_BOUNDARY_MASK = 0xffff_ffffn;
/** block/blk.h: BLK_DEF_MAX_SECTORS_CAP, 4 MiB in sectors. */
export const BLK_DEF_MAX_SECTORS_CAP = (4 << 20) >> SECTOR_SHIFT;
/** block/blk.h: BLK_MIN_SEGMENT_SIZE, 4096 bytes whatever PAGE_SIZE is. */
export const BLK_MIN_SEGMENT_SIZE = 4096;
/**
 * include/linux/blkdev.h: BLK_MAX_BLOCK_SIZE, SZ_64K with CONFIG_TRANSPARENT_HUGEPAGE (the model's
 * kernels have THP), whatever PAGE_SIZE is.
 */
export const BLK_MAX_BLOCK_SIZE = 65536;
const UINT_MAX = 0xffff_ffff;
const USHRT_MAX = 0xffff;

/** struct queue_limits, the fields the read/write path uses (after blk_validate_limits()). */
export interface QueueLimits {
  readonly logicalBlockSize: number;
  readonly physicalBlockSize: number;
  /** max_hw_sectors: what the hardware takes per request, in 512-byte sectors. */
  readonly maxHwSectors: number;
  /** max_sectors: the soft limit splitting uses (min of max_hw_sectors, max_dev_sectors, a user value or the 4 MiB cap). */
  readonly maxSectors: number;
  readonly maxDevSectors: number;
  readonly maxUserSectors: number;
  readonly maxSegments: number;
  /** max_segment_size in bytes. */
  readonly maxSegmentSize: number;
  /** seg_boundary_mask: a segment never crosses a multiple of mask + 1 (2^k - 1, at least 4095). */
  readonly segBoundaryMask: bigint;
  /** virt_boundary_mask: 0, or 2^k - 1; every seam between segments must be aligned to it. */
  readonly virtBoundaryMask: number;
  /** dma_alignment: every bio_vec's offset and length must be aligned to it (a mask: 511 by default). */
  readonly dmaAlignment: number;
  /** max_fast_segment_size: min(max_segment_size, seg_boundary_mask + 1, PAGE_SIZE), for the split fast path. */
  readonly maxFastSegmentSize: number;
  readonly ioMin: number;
  readonly ioOpt: number;
}

/** What a driver sets before blk_validate_limits() fills in the rest (0 or absent: the default). */
export type QueueLimitsInput = { -readonly [K in keyof QueueLimits]?: QueueLimits[K] };

function isPow2(x: number): boolean {
  return Number.isSafeInteger(x) && x > 0 && 2 ** Math.round(Math.log2(x)) === x;
}

function checkU32(name: string, v: unknown): number {
  if (v === undefined) return 0;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > UINT_MAX) {
    throw new RangeError(`limits.${name} must be an integer in [0, ${UINT_MAX}], got ${String(v)}`);
  }
  return v;
}

/**
 * blk_validate_limits() in a kernel whose PAGE_SIZE is `pageSize` (default 4096; a queue's is its
 * machine's, blkMqInitQueue): fills the defaults (512-byte blocks, max_hw_sectors
 * BLK_SAFE_MAX_SECTORS, max_sectors capped at 4 MiB unless io_opt / io_min or a user value say
 * otherwise, 128 segments, 64 KiB segments unless a virt boundary is set (then UINT_MAX), a 4 GiB
 * segment boundary, dma_alignment 511, max_fast_segment_size at most PAGE_SIZE) and rounds
 * max_hw_sectors / max_sectors down to the logical block size.
 * EINVAL as the kernel returns it: a bad block size, max_hw_sectors below a page (PAGE_SECTORS) or
 * below a block, max_user_sectors below 4 KiB, a segment boundary below 4095, a max_segment_size
 * below 4096 without a virt boundary, dma_alignment above PAGE_SIZE.
 * @throws TypeError/RangeError naming a field that is not a number of its range, or a mask that is
 * not 2^k - 1 (the kernel's masks always are), or a pageSize that is not a power of two from 4096.
 */
export function blkValidateLimits(input: QueueLimitsInput = {}, pageSize = 4096): Result<QueueLimits> {
  if (input === null || typeof input !== 'object') throw new TypeError(`limits must be an object, got ${String(input)}`);
  checkBlkPageSize(pageSize);
  let lbs = checkU32('logicalBlockSize', input.logicalBlockSize);
  let pbs = checkU32('physicalBlockSize', input.physicalBlockSize);
  let maxHw = checkU32('maxHwSectors', input.maxHwSectors);
  const maxDev = checkU32('maxDevSectors', input.maxDevSectors);
  const maxUser = checkU32('maxUserSectors', input.maxUserSectors);
  let maxSegs = checkU32('maxSegments', input.maxSegments);
  let maxSegSize = checkU32('maxSegmentSize', input.maxSegmentSize);
  const vbm = checkU32('virtBoundaryMask', input.virtBoundaryMask);
  let dmaAlign = checkU32('dmaAlignment', input.dmaAlignment);
  let ioMin = checkU32('ioMin', input.ioMin);
  let ioOpt = checkU32('ioOpt', input.ioOpt);
  let sbm = input.segBoundaryMask ?? 0n;
  if (typeof sbm !== 'bigint' || sbm < 0n || sbm >= 1n << 64n || (sbm & (sbm + 1n)) !== 0n) {
    throw new RangeError(`limits.segBoundaryMask must be 0n or a bigint 2^k - 1 below 2^64, got ${String(sbm)}`);
  }
  if ((vbm & (vbm + 1)) !== 0 && vbm !== 0) throw new RangeError(`limits.virtBoundaryMask must be 0 or 2^k - 1, got ${vbm}`);
  if (!lbs) lbs = SECTOR_SIZE;
  else if (lbs < 512 || lbs > BLK_MAX_BLOCK_SIZE || !isPow2(lbs)) return err('EINVAL', `invalid logical block size (${lbs})`);
  if (pbs < lbs) pbs = lbs;
  else if (!isPow2(pbs)) return err('EINVAL', `invalid physical block size (${pbs})`);
  if (ioMin < pbs) ioMin = pbs;
  ioOpt -= ioOpt % pbs;
  if (!maxHw) maxHw = BLK_SAFE_MAX_SECTORS;
  const lbSectors = lbs >> SECTOR_SHIFT;
  // block/blk-settings.c: blk_validate_limits(): at least PAGE_SECTORS (include/linux/blk_types.h)
  if (maxHw < pageSize >> SECTOR_SHIFT) return err('EINVAL', `max_hw_sectors ${maxHw} is below a page (PAGE_SIZE ${pageSize})`);
  if (lbSectors > maxHw) return err('EINVAL', `max_hw_sectors ${maxHw} is below the logical block size`);
  maxHw -= maxHw % lbSectors;
  const hw = maxDev ? Math.min(maxHw, maxDev) : maxHw;
  let maxSectors: number;
  if (maxUser) {
    if (maxUser < BLK_MIN_SEGMENT_SIZE / SECTOR_SIZE) return err('EINVAL', `max_user_sectors ${maxUser} is below 4 KiB`);
    maxSectors = Math.min(hw, maxUser);
  } else if (ioOpt > BLK_DEF_MAX_SECTORS_CAP << SECTOR_SHIFT) {
    maxSectors = Math.min(hw, Math.floor(ioOpt / SECTOR_SIZE));
  } else if (ioMin > BLK_DEF_MAX_SECTORS_CAP << SECTOR_SHIFT) {
    maxSectors = Math.min(hw, Math.floor(ioMin / SECTOR_SIZE));
  } else {
    maxSectors = Math.min(hw, BLK_DEF_MAX_SECTORS_CAP);
  }
  maxSectors -= maxSectors % lbSectors;
  if (!maxSegs) maxSegs = BLK_MAX_SEGMENTS;
  if (maxSegs > USHRT_MAX) throw new RangeError(`limits.maxSegments must be at most ${USHRT_MAX}, got ${maxSegs}`);
  if (!sbm) sbm = BLK_SEG_BOUNDARY_MASK;
  if (sbm < BigInt(BLK_MIN_SEGMENT_SIZE - 1)) return err('EINVAL', `seg_boundary_mask 0x${sbm.toString(16)} is below 4095`);
  if (vbm) {
    if (!maxSegSize) maxSegSize = UINT_MAX;
  } else {
    if (!maxSegSize) maxSegSize = BLK_MAX_SEGMENT_SIZE;
    if (maxSegSize < BLK_MIN_SEGMENT_SIZE) return err('EINVAL', `max_segment_size ${maxSegSize} is below 4096`);
  }
  const segSize = sbm > BigInt(maxSegSize - 1) ? maxSegSize : Number(sbm) + 1;
  const maxFast = Math.min(segSize, pageSize);
  if (!dmaAlign) dmaAlign = SECTOR_SIZE - 1;
  if (dmaAlign > pageSize) return err('EINVAL', `dma_alignment ${dmaAlign} is above PAGE_SIZE ${pageSize}`);
  return ok(Object.freeze({
    logicalBlockSize: lbs, physicalBlockSize: pbs, maxHwSectors: maxHw, maxSectors, maxDevSectors: maxDev,
    maxUserSectors: maxUser, maxSegments: maxSegs, maxSegmentSize: maxSegSize, segBoundaryMask: sbm,
    virtBoundaryMask: vbm, dmaAlignment: dmaAlign, maxFastSegmentSize: maxFast, ioMin, ioOpt,
  }));
}

/** struct request_queue: the device that maps the queue's DMA, and its validated limits. */
export class RequestQueue {
  readonly dev: Device;
  readonly limits: QueueLimits;
  /** PAGE_SIZE of the queue's kernel: the page size of the machine its device is on. */
  readonly pageSize: number;
  /** @internal seg_boundary_mask + 1 as a number (a power of two up to 2^64: exact). */
  readonly segBoundary: number;
  /**
   * Map a coalesced request's segments into its IOVA window with one page-table walk
   * (dmaIovaLinkBatch, the seed's batched map of a bio_vec array) instead of one dma_iova_link per
   * segment as block/blk-mq-dma.c does. Default false: the kernel's way. A model switch for
   * comparing the two designs (iommuTableWalkSteps).
   */
  batchIommuMap = false;
  /**
   * The disk's size in 512-byte sectors (get_capacity()), set by its driver with setCapacity();
   * null: none set (see the header).
   */
  private capacitySectors: bigint | null = null;

  /** @internal Use blkMqInitQueue(). */
  constructor(dev: Device, limits: QueueLimits, pageSize: number) {
    this.dev = dev;
    this.limits = limits;
    this.pageSize = pageSize;
    this.segBoundary = Number(limits.segBoundaryMask) + 1;
  }

  /** @internal the capacity setCapacity() gave, or null. */
  get capacity(): bigint | null {
    return this.capacitySectors;
  }

  /** @internal use setCapacity(). */
  setCapacitySectors(sectors: bigint): void {
    this.capacitySectors = sectors;
  }
}

function checkQueue(q: unknown): asserts q is RequestQueue {
  if (!(q instanceof RequestQueue)) throw new TypeError(`q must be a RequestQueue, got ${String(q)}`);
}

/**
 * set_capacity() (block/genhd.c): the disk on q is `sectors` 512-byte sectors long, as a driver
 * sets it from what the device reports (NVMe: Identify Namespace NSZE, nvme_update_ns_info()).
 * @throws TypeError/RangeError for a q that is not a queue or a sectors that is not a non-negative bigint below 2^64.
 */
export function setCapacity(q: RequestQueue, sectors: bigint): void {
  checkQueue(q);
  if (typeof sectors !== 'bigint' || sectors < 0n || sectors >= 1n << 64n) {
    throw new RangeError(`sectors must be a bigint in [0, 2^64), got ${String(sectors)}`);
  }
  q.setCapacitySectors(sectors);
}

/** bdev_nr_sectors(): the disk's size in 512-byte sectors; null when no driver set one. */
export function bdevNrSectors(q: RequestQueue): bigint | null {
  checkQueue(q);
  return q.capacity;
}

/** bdev_nr_bytes(): the disk's size in bytes (its sectors << SECTOR_SHIFT); null when no driver set one. */
export function bdevNrBytes(q: RequestQueue): bigint | null {
  checkQueue(q);
  const s = q.capacity;
  return s === null ? null : s << BigInt(SECTOR_SHIFT);
}

/**
 * blk_mq_alloc_queue(set, lim): a request queue for `dev` (the device whose DMA API maps the
 * requests, as a driver's dma_dev) with the limits blk_validate_limits() makes of `limits` at the
 * PAGE_SIZE of dev's machine.
 * @throws TypeError if dev is not a Device of a built machine.
 */
export function blkMqInitQueue(dev: Device, limits: QueueLimitsInput = {}): Result<RequestQueue> {
  if (dev === null || typeof dev !== 'object' || typeof (dev as Device).name !== 'string') {
    throw new TypeError(`dev must be a Device, got ${String(dev)}`);
  }
  const pageSize = dmaContextOf(dev).mm.pageSize;
  const lim = blkValidateLimits(limits, pageSize);
  if (!lim.ok) return lim;
  return ok(new RequestQueue(dev, lim.value, pageSize));
}

/**
 * block/blk.h: get_max_segment_size(): the bytes of a segment starting at paddr that stay within
 * the segment boundary and max_segment_size, at most len.
 */
export function getMaxSegmentSize(q: RequestQueue, paddr: number, len: number): number {
  const b = q.segBoundary;
  return Math.min(len, b - (paddr % b), q.limits.maxSegmentSize);
}
