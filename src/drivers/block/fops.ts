// Models: what block/fops.c does with a user's read or write on a block device before any bio
// exists (blkdev_read_iter / blkdev_write_iter, then blkdev_direct_IO): the end of the device and
// the logical block size. Its callers are the paths that stand for I/O from user space (O_DIRECT
// pread / pwrite, io_uring's READ_FIXED / WRITE_FIXED, which reach f_op->read_iter / write_iter
// through io_uring/rw.c); an in-kernel bio submitter gets bio_check_eod() instead (request.ts).

import { err, ok, type Result } from '../../base/index.ts';
import { REQ_OP_WRITE, SECTOR_SHIFT, type ReqOp } from './bio.ts';
import { bdevNrBytes, type RequestQueue } from './queue.ts';

/**
 * The bytes a direct read or write of `len` bytes at 512-byte sector `sector` of q's disk moves:
 * blkdev_write_iter() fails a write at or past the end with ENOSPC, blkdev_read_iter() makes a read
 * there one of 0 bytes (end of file), and both cut an I/O that crosses the end to the device's size
 * (iov_iter_truncate); then blkdev_direct_IO() refuses a position or (cut) length that is not a
 * multiple of the logical block size with EINVAL (blkdev_dio_invalid). A queue without a capacity
 * has no end (queue.ts). Errors: ENOSPC, EINVAL, each naming the position and length.
 */
export function blkdevDirectIoBytes(q: RequestQueue, op: ReqOp, sector: bigint, len: number): Result<number> {
  const size = bdevNrBytes(q);
  const pos = sector << BigInt(SECTOR_SHIFT);
  let bytes = len;
  if (size !== null && pos + BigInt(len) > size) {
    if (pos >= size) {
      if (op !== REQ_OP_WRITE) return ok(0);
      return err('ENOSPC', `write at byte ${pos} of a ${size}-byte device: at or past its end (blkdev_write_iter)`);
    }
    bytes = Number(size - pos);
  }
  const lbs = q.limits.logicalBlockSize;
  if (bytes % lbs !== 0 || pos % BigInt(lbs) !== 0n) {
    return err('EINVAL', `${bytes} bytes at byte ${pos} (sector ${sector}): not aligned to the logical block size ${lbs} (blkdev_dio_invalid)`);
  }
  return ok(bytes);
}
