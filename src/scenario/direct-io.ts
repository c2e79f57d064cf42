// Models: how Linux 7.1.5 direct I/O turns a user buffer into bio_vecs (block/bio.c:
// bio_iov_iter_get_pages -> lib/iov_iter.c: iov_iter_extract_bvecs, get_contig_folio_len): the
// pages are pinned (pin_user_pages) and grouped one folio at a time, physically contiguous pages of
// one folio sharing a multi-page bio_vec (pagesToBvecList). Used by `phyr compare` (the bio_vec
// row) and `phyr block` (the bios it submits).

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
