// Models: iommu_pgsize() of drivers/iommu/iommu.c (Linux 7.1): the page-size choice
// for one map_pages/unmap_pages batch. The bigint version is the kernel's arithmetic on a
// pgsize_bitmap; the number version is the same rule in granule units for the hot map path.

import { checkAddr, checkLen } from '../base/index.ts';

const TWO32 = 4294967296;

/** Count of trailing zero bits of a positive safe integer (__ffs). */
export function ctzNum(n: number): number {
  const lo = n >>> 0; // n mod 2^32, exact for any integer below 2^53 (no fmod call)
  if (lo !== 0) return 31 - Math.clz32(lo & -lo);
  const hi = Math.floor(n / TWO32);
  return 32 + (31 - Math.clz32(hi & -hi));
}

/** floor(log2(n)) of a positive safe integer (__fls). */
export function flsNum(n: number): number {
  if (n < TWO32) return 31 - Math.clz32(n);
  return 32 + (31 - Math.clz32(Math.floor(n / TWO32)));
}

function flsBig(n: bigint): number {
  return n.toString(2).length - 1;
}

function ffsBig(n: bigint): number {
  return flsBig(n & -n);
}

/** The result of iommu_pgsize: the leaf size in bytes and how many leaves of it to map in one batch. */
export interface PgsizeChoice {
  readonly pgsize: number;
  readonly count: number;
}

/**
 * iommu_pgsize: the largest page size of pgsizeBitmap that fits both the alignment of iova|paddr
 * and size, and how many of them to map before the next larger size becomes usable (the batch
 * stops at the next size's alignment when iova and paddr share that alignment and at least one
 * whole larger page would follow).
 * @throws RangeError if no size of the bitmap fits (the kernel BUG_ON(!pgsizes)); TypeError/RangeError on bad arguments.
 */
export function iommuPgsize(pgsizeBitmap: bigint, iova: bigint, paddr: bigint, size: number): PgsizeChoice {
  checkAddr('pgsizeBitmap', pgsizeBitmap);
  checkAddr('iova', iova);
  checkAddr('paddr', paddr);
  checkLen('size', size, 1);
  let sizeLeft = BigInt(size);
  const addrMerge = iova | paddr;
  // sizes no bigger than size
  let pgsizes = pgsizeBitmap & ((1n << BigInt(flsBig(sizeLeft) + 1)) - 1n);
  // sizes the address alignment allows
  if (addrMerge !== 0n) pgsizes &= (1n << BigInt(ffsBig(addrMerge) + 1)) - 1n;
  if (pgsizes === 0n) {
    throw new RangeError(`no page size of pgsizeBitmap 0x${pgsizeBitmap.toString(16)} fits iova 0x${iova.toString(16)} paddr 0x${paddr.toString(16)} size ${size}`);
  }
  const pgsizeIdx = flsBig(pgsizes);
  const pgsize = 1n << BigInt(pgsizeIdx);
  const bigger = pgsizeBitmap & ~((1n << BigInt(pgsizeIdx + 1)) - 1n);
  if (bigger !== 0n) {
    const next = 1n << BigInt(ffsBig(bigger));
    if (((iova ^ paddr) & (next - 1n)) === 0n) {
      const offset = next - (addrMerge & (next - 1n));
      if (offset + next <= sizeLeft) sizeLeft = offset;
    }
  }
  return { pgsize: Number(pgsize), count: Number(sizeLeft >> BigInt(pgsizeIdx)) };
}

/** POW2[k] = 2^k for k < 64, so the hot path never calls Math.pow. */
const POW2: readonly number[] = Array.from({ length: 64 }, (_, k) => 2 ** k);

/**
 * The same choice in granule units, for the hot path: `lg2s` are the supported leaf sizes as log2
 * of granules, ascending; iovaPfn/paPfn/pages are in granules (safe integers). Writes the result to
 * `out` (no allocation). Returns false when no size fits (cannot happen for granule-aligned input
 * when lg2s[0] === 0).
 */
export function pgsizeGranules(lg2s: readonly number[], iovaPfn: number, paPfn: number, pages: number,
  out: { lg2: number; count: number }): boolean {
  if (pages === 1) {
    // the common single-granule case: the smallest size, one page
    if (lg2s[0] !== 0) return false;
    out.lg2 = 0;
    out.count = 1;
    return true;
  }
  let lim = flsNum(pages);
  if (iovaPfn !== 0) { const a = ctzNum(iovaPfn); if (a < lim) lim = a; }
  if (paPfn !== 0) { const a = ctzNum(paPfn); if (a < lim) lim = a; }
  let i = -1;
  while (i + 1 < lg2s.length && lg2s[i + 1] <= lim) i++;
  if (i < 0) return false;
  const lg2 = lg2s[i];
  let len = pages;
  if (i + 1 < lg2s.length) {
    const next = POW2[lg2s[i + 1]];
    const im = iovaPfn - Math.floor(iovaPfn / next) * next;
    if (im === paPfn - Math.floor(paPfn / next) * next) {
      const offset = next - im;
      if (offset + next <= pages) len = offset;
    }
  }
  out.lg2 = lg2;
  out.count = lg2 === 0 ? len : Math.floor(len / POW2[lg2]);
  return true;
}
