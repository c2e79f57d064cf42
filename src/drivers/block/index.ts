// drivers/block: the block layer's read/write path as a driver sees it: bios over any range
// source (block/bio.c), request queues and their limits (block/blk-settings.c), splitting bios into
// requests (block/blk-merge.c, block/blk-mq.c; the end-of-device check of block/blk-core.c), the
// disk's capacity (block/genhd.c), a user's direct I/O checks (block/fops.c), and mapping requests
// for DMA (block/blk-mq-dma.c).
export {
  BIO_MAX_SIZE, Bio, REQ_OP_READ, REQ_OP_WRITE, SECTOR_SHIFT, SECTOR_SIZE, bioFromRanges, isP2pdmaFlags,
  type BioFromRangesOptions, type ReqOp,
} from './bio.ts';
export {
  BLK_DEF_MAX_SECTORS_CAP, BLK_MAX_SEGMENTS, BLK_MAX_SEGMENT_SIZE, BLK_MIN_SEGMENT_SIZE, BLK_SAFE_MAX_SECTORS,
  BLK_SEG_BOUNDARY_MASK, RequestQueue, bdevNrBytes, bdevNrSectors, blkMqInitQueue, blkValidateLimits, getMaxSegmentSize,
  setCapacity, type QueueLimits, type QueueLimitsInput,
} from './queue.ts';
export {
  Request, bioSplitRwAt, blkRqBytes, blkRqNrPhysSegments, blkSubmitBio, getMaxIoSize, reqPhysGapMask, type BioSplit,
} from './request.ts';
export {
  BlkDmaIter, blkCanDmaMapIova, blkDmaIterMapType, blkRqDmaMapCoalesce, blkRqDmaMapIterNext, blkRqDmaMapIterStart,
  blkRqDmaUnmap, blkRqMapSg, rqDmaDir,
} from './dma.ts';
export { blkdevDirectIoBytes } from './fops.ts';
export * from './status.ts';
