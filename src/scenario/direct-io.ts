// Models: how Linux 7.1.5 direct I/O turns a user buffer into bio_vecs (block/bio.c:
// bio_iov_iter_get_pages -> lib/iov_iter.c: iov_iter_extract_bvecs, get_contig_folio_len): the
// pages are pinned (pin_user_pages) and grouped one folio at a time, physically contiguous pages of
// one folio sharing a multi-page bio_vec (pagesToBvecList). Used by `phyr compare` (the bio_vec
// row) and `phyr block` (the bios it submits). And how an io_uring registered (fixed) buffer holds
// its bio_vecs (io_uring/rsrc.c), which its I/Os hand to the block layer as they are
// (block/bio.c: bio_iov_iter_get_pages -> bio_iov_bvec_set for a bvec iterator): `phyr premap`.

import type { Result } from '../base/index.ts';
import type { UserMm } from '../mm/index.ts';
import { pagesToBvecList, type BvecList, type PageArray } from '../phyr/index.ts';

/** The bio_vecs direct I/O builds from pinned pages of mm's machine (see the header). */
export function directIoBvecs(mm: UserMm, pages: PageArray): Result<BvecList> {
  const folios = mm.machine.folios;
  return pagesToBvecList(pages, (pfn) => {
    const f = folios.find(pfn);
    return f < 0 ? -1 : folios.head[f] + 2 ** folios.order[f];
  });
}

/**
 * The bio_vecs io_uring keeps for a registered buffer (io_uring/rsrc.c: io_sqe_buffer_register):
 * one per pinned page, unless io_check_coalesce_buffer() finds the pages to be whole folios of one
 * size larger than a page, contiguous inside each (the first and last folio may be partial), in
 * which case io_coalesce_buffer() keeps one bio_vec per folio.
 */
export function ioUringFixedBufferBvecs(mm: UserMm, pages: PageArray): Result<BvecList> {
  const folios = mm.machine.folios;
  const v = pages.columns();
  const pfns = v.pfn;
  const n = v.n;
  // the folio of a page: [index (-1: none), head pfn, pages in it]
  const folioOf = (pfn: number): [number, number, number] => {
    const f = folios.find(pfn);
    return f < 0 ? [-1, pfn, 1] : [f, folios.head[f], 2 ** folios.order[f]];
  };
  let coalesce = n > 1;
  let [cur, head, nrFolioPages] = folioOf(pfns[0]);
  const nrPagesMid = nrFolioPages; // every folio after the first must have this many pages
  let nrRun = 1; // pages of the current folio seen so far
  let nrFolios = 1;
  for (let i = 1; i < n && coalesce; i++) {
    const [f, h, nr] = folioOf(pfns[i]);
    if (f === cur && f >= 0 && pfns[i] === pfns[i - 1] + 1) {
      nrRun++;
      continue;
    }
    // a folio ends here: the first must end on its last page, a middle one be whole
    if (nrFolios === 1 ? pfns[i - 1] !== head + nrFolioPages - 1 : nrRun !== nrPagesMid) coalesce = false;
    // the next folio has the first one's size and starts at its first page
    else if (nr !== nrPagesMid || pfns[i] !== h) coalesce = false;
    cur = f;
    head = h;
    nrFolioPages = nr;
    nrRun = 1;
    nrFolios++;
  }
  if (coalesce && nrPagesMid > 1) {
    return pagesToBvecList(pages, (pfn) => {
      const [, h, nr] = folioOf(pfn);
      return h + nr;
    });
  }
  return pagesToBvecList(pages, (pfn) => pfn + 1);
}
