// Models: the map and unmap loops of drivers/iommu/iommu.c (Linux 7.1: __iommu_map_domain_pgtbl,
// iommu_map_nosync's unwind, __iommu_unmap_domain_pgtbl) over the map_pages / unmap_pages ops of
// drivers/iommu/io-pgtable-arm.c (arm_lpae_map_pages, arm_lpae_unmap_pages), for the ARM LPAE
// domains of an SMMU (pagetable-arm.ts). The IOMMU core (core.ts) hands ARM domains to these two
// functions after its own argument checks; counters, errnos and the unwind are the core's.
// The SMMU flush ops (arm_smmu_tlb_inv_walk for a freed table, arm_smmu_tlb_inv_page_nosync for
// each cleared leaf) become: an immediate IOTLB range invalidation before a freed table goes back
// to RAM, and the unmapped range joining the gather.

import { err, ok, type Errno, type Result } from '../base/index.ts';
import { frameAddr } from './addr-num.ts';
import { IommuIotlbGather, type IommuDomain } from './domain.ts';
import type { ArmLpaePageTable } from './pagetable-arm.ts';
import { pgsizeGranules } from './pgsize.ts';
import { IOMMU_READ, IOMMU_WRITE } from './prot.ts';
import './counters.ts';

const OK_VOID: Result<void> = Object.freeze(ok());
const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const choice = { lg2: 0, count: 0 };
const freelist: number[] = [];


/** Flushes the walks of freed tables over [fromPfn, toPfn) from the IOTLB, then gives the pages back. */
function flushWalkAndFree(d: IommuDomain, fromPfn: number, toPfn: number): void {
  d.iotlb.invalidateRange(fromPfn, toPfn);
  d.iommu.mm.stats.iotlbRangeInvalidations++;
  d.releaseTables(freelist);
}

/**
 * The first test of __iommu_map_domain_pgtbl(): iova, paddr and size aligned to min_pagesz, the
 * domain's granule (4 KiB frames here, so only a 16 or 64 KiB granule can fail it). EINVAL, or null.
 */
export function armLpaeMapUnaligned(d: IommuDomain, iovaPfn: number, paPfn: number, pages: number): Result<void> | null {
  const gf = d.granule / 4096;
  if (gf === 1 || (iovaPfn % gf === 0 && paPfn % gf === 0 && pages % gf === 0)) return null;
  return err('EINVAL', `unaligned: iova ${frameAddr(iovaPfn)} pa ${frameAddr(paPfn)} size ${frameAddr(pages)} min_pagesz 0x${d.granule.toString(16)}`);
}

/**
 * iommu_map_nosync on an ARM LPAE domain, pages >= 1 and granule-aligned (armLpaeMapUnaligned) (the core has checked the arguments and
 * counted the call): map_pages calls of the iommu_pgsize batch, each stopping at the end of its
 * table, until all is mapped. Per call, as arm_lpae_map_pages: an IOVA beyond the input size or a
 * physical address beyond the output size is ERANGE with a WARN (so a range running past the input
 * size maps what fits first); a prot without READ or WRITE is EINVAL (no WARN); EEXIST (a live
 * leaf in the way) and ENOMEM from the walk. On failure what earlier calls mapped is unmapped
 * again (iommu_unmap), and tables the walk installed stay.
 */
export function armLpaeMapPfns(d: IommuDomain, pt: ArmLpaePageTable, iovaPfn: number, paPfn: number, pages: number,
  prot: number): Result<void> {
  const stats = d.iommu.mm.stats;
  const events = d.iommu.mm.events;
  const iova0 = iovaPfn, pa0 = paPfn, origPages = pages;
  let errno: Errno | null = null;
  let why = '';
  while (pages > 0) {
    pgsizeGranules(d.leafLg2s, iovaPfn, paPfn, pages, choice);
    stats.iommuMapPagesCalls++;
    const len = choice.count * 2 ** choice.lg2;
    if (iovaPfn >= pt.inputLimitPfn || paPfn >= pt.oaPfnLimit) {
      errno = 'ERANGE';
      why = iovaPfn >= pt.inputLimitPfn
        ? `: iova ${frameAddr(iovaPfn)} is beyond the ${pt.format.vaBits}-bit input size`
        : `: pa ${frameAddr(paPfn)} is beyond the ${pt.format.oaBits}-bit output size`;
      events.warn('io-pgtable-arm', `map_pages${why}`);
      break;
    }
    if (paPfn + len > pt.oaPfnLimit) {
      // Model deviation: arm_lpae_map_pages checks only where the physical range starts and would
      // write the out-of-range part folded into the descriptor's address bits; the model refuses
      // the call instead (ERANGE, nothing written by it).
      errno = 'ERANGE';
      why = `: pa ${frameAddr(paPfn)} + ${frameAddr(len)} exceeds the ${pt.format.oaBits}-bit output addresses`;
      break;
    }
    if (!(prot & (IOMMU_READ | IOMMU_WRITE))) {
      errno = 'EINVAL';
      why = `: prot 0x${prot.toString(16)} has neither IOMMU_READ nor IOMMU_WRITE`;
      break;
    }
    const e = pt.mapLeaves(iovaPfn, paPfn, choice.count, choice.lg2, prot, freelist);
    const mapped = pt.mappedPages;
    // tables a new leaf replaced: flushed (io_pgtable_tlb_flush_walk) and freed before the call returns
    if (freelist.length !== 0) flushWalkAndFree(d, iovaPfn, iovaPfn + len);
    pages -= mapped;
    if (e !== null) {
      errno = e;
      why = e === 'EEXIST' ? `: something is already mapped at or after iova ${frameAddr(iovaPfn + mapped)}` : ': no page for a table';
      break;
    }
    iovaPfn += mapped;
    paPfn += mapped;
  }
  if (errno !== null) {
    const done = origPages - pages;
    if (done > 0) {
      // iommu_unmap of what this call mapped
      stats.iommuUnmapCalls++;
      const g = new IommuIotlbGather();
      armLpaeUnmapPfns(d, pt, iova0, done, g);
      d.iotlbSync(g);
    }
    return err(errno, `map of iova ${frameAddr(iova0)} pa ${frameAddr(pa0)} size ${frameAddr(origPages)} failed after ${frameAddr(done)} bytes${why}`);
  }
  return OK_VOID;
}

/**
 * The unmap loop of __iommu_unmap on an ARM LPAE domain: unmap_pages calls of the iommu_pgsize
 * batch until `pages` frames are unmapped or a call unmaps nothing (a hole, a partial block, an
 * IOVA beyond the input size; each WARNs in pagetable-arm.ts). Tables freed by a call are flushed
 * from the IOTLB and given back at once; the unmapped range joins the gather (the leaves'
 * invalidation waits for the caller's sync or the flush queue). Returns the bytes unmapped.
 */
export function armLpaeUnmapPfns(d: IommuDomain, pt: ArmLpaePageTable, iovaPfn: number, pages: number, gather: IommuIotlbGather): number {
  const stats = d.iommu.mm.stats;
  const start = iovaPfn;
  let unmapped = 0;
  while (unmapped < pages) {
    // a frame count that is not a whole number of granules has no page size (callers pass granules)
    if (!pgsizeGranules(d.leafLg2s, iovaPfn, iovaPfn, pages - unmapped, choice)) break;
    stats.iommuUnmapPagesCalls++;
    const n = pt.unmapPages(iovaPfn, choice.lg2, choice.count, freelist);
    if (freelist.length !== 0) flushWalkAndFree(d, iovaPfn, iovaPfn + n);
    if (n === 0) break;
    iovaPfn += n;
    unmapped += n;
  }
  if (unmapped > 0) {
    // Model deviation: the SMMU adds each cleared leaf to the gather (iommu_iotlb_gather_add_page,
    // which syncs first when a leaf is disjoint from the gathered range or of another size); the
    // model's gather is one range, so the unmapped span joins it once (it may cover more, never less).
    const hi = start + unmapped;
    const endNum = hi * 4096 - 1;
    const s = endNum <= MAX_SAFE ? BigInt(start * 4096) : BigInt(start) << 12n;
    const e = endNum <= MAX_SAFE ? BigInt(endNum) : (BigInt(hi) << 12n) - 1n;
    if (s < gather.start) gather.start = s;
    if (e > gather.end) gather.end = e;
  }
  return unmapped * 4096;
}
