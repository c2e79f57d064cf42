// Models: blk_status_t (include/linux/blk_types.h: BLK_STS_*) and the errno table of
// block/blk-core.c (blk_errors[], errno_to_blk_status(), blk_status_to_errno()).
//
// A status is the kernel's small number (BLK_STS_OK is 0), not a string: drivers compare it and
// store it as the kernel does; blkStatusName() gives the name for messages.

import type { Errno } from '../../base/index.ts';

/** blk_status_t: one of the BLK_STS_* numbers below. */
export type BlkStatus = number;

export const BLK_STS_OK = 0;
export const BLK_STS_NOTSUPP = 1;
export const BLK_STS_TIMEOUT = 2;
export const BLK_STS_NOSPC = 3;
export const BLK_STS_TRANSPORT = 4;
export const BLK_STS_TARGET = 5;
export const BLK_STS_RESV_CONFLICT = 6;
export const BLK_STS_MEDIUM = 7;
export const BLK_STS_PROTECTION = 8;
export const BLK_STS_RESOURCE = 9;
export const BLK_STS_IOERR = 10;
export const BLK_STS_DM_REQUEUE = 11;
export const BLK_STS_AGAIN = 12;
export const BLK_STS_DEV_RESOURCE = 13;
export const BLK_STS_ZONE_OPEN_RESOURCE = 14;
export const BLK_STS_ZONE_ACTIVE_RESOURCE = 15;
export const BLK_STS_OFFLINE = 16;
export const BLK_STS_DURATION_LIMIT = 17;
export const BLK_STS_INVAL = 19;

const NAMES: Readonly<Record<number, string>> = {
  0: 'BLK_STS_OK', 1: 'BLK_STS_NOTSUPP', 2: 'BLK_STS_TIMEOUT', 3: 'BLK_STS_NOSPC', 4: 'BLK_STS_TRANSPORT',
  5: 'BLK_STS_TARGET', 6: 'BLK_STS_RESV_CONFLICT', 7: 'BLK_STS_MEDIUM', 8: 'BLK_STS_PROTECTION', 9: 'BLK_STS_RESOURCE',
  10: 'BLK_STS_IOERR', 11: 'BLK_STS_DM_REQUEUE', 12: 'BLK_STS_AGAIN', 13: 'BLK_STS_DEV_RESOURCE',
  14: 'BLK_STS_ZONE_OPEN_RESOURCE', 15: 'BLK_STS_ZONE_ACTIVE_RESOURCE', 16: 'BLK_STS_OFFLINE',
  17: 'BLK_STS_DURATION_LIMIT', 19: 'BLK_STS_INVAL',
};

/** The constant's name ('BLK_STS_INVAL'), or 'BLK_STS_<n>' for a number the kernel does not define. */
export function blkStatusName(status: BlkStatus): string {
  return NAMES[status] ?? `BLK_STS_${status}`;
}

// The errnos of block/blk-core.c: blk_errors[] that the model's Errno type can name.
const TO_ERRNO: Readonly<Record<number, Errno>> = {
  [BLK_STS_NOTSUPP]: 'EOPNOTSUPP', [BLK_STS_TIMEOUT]: 'ETIMEDOUT', [BLK_STS_NOSPC]: 'ENOSPC',
  [BLK_STS_TARGET]: 'EREMOTEIO', [BLK_STS_RESOURCE]: 'ENOMEM', [BLK_STS_DEV_RESOURCE]: 'EBUSY',
  [BLK_STS_AGAIN]: 'EAGAIN', [BLK_STS_OFFLINE]: 'ENODEV', [BLK_STS_INVAL]: 'EINVAL', [BLK_STS_IOERR]: 'EIO',
};

/**
 * errno_to_blk_status(): the status of an errno as block/blk-core.c's table has it; an errno the
 * table does not hold is BLK_STS_IOERR, as in the kernel.
 */
export function errnoToBlkStatus(errno: Errno): BlkStatus {
  for (const k in TO_ERRNO) if (TO_ERRNO[k] === errno) return Number(k);
  return BLK_STS_IOERR;
}

/**
 * blk_status_to_errno(): null for BLK_STS_OK, else the errno of the table (EIO for a status the
 * table does not hold, as the kernel's fallback; statuses whose errno the model cannot name, e.g.
 * BLK_STS_TRANSPORT's ENOLINK, also give EIO).
 */
export function blkStatusToErrno(status: BlkStatus): Errno | null {
  if (status === BLK_STS_OK) return null;
  return TO_ERRNO[status] ?? 'EIO';
}
