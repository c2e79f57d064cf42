// The counters of mm/: page allocator, faults, GUP. Imported for its effect by every mm/ file that counts.
import { declareCounters } from '../base/internal.ts';

declare module '../base/stats.ts' {
  interface StatsCounters {
    /** Base pages handed out / given back by the page allocator. */
    pagesAllocated: number;
    pagesFreed: number;
    /** Page faults taken (populate, user copies, GUP). */
    pageFaults: number;
    /** pin_user_pages* / the phyr pin calls, pages pinned, folios visited, pages unpinned. */
    gupPinCalls: number;
    gupPagesPinned: number;
    gupFoliosVisited: number;
    gupPagesUnpinned: number;
    /** hmm_range_fault calls, and invalidate callbacks run by mmu interval notifiers. */
    hmmRangeFaults: number;
    mmuIntervalInvalidates: number;
  }
}

declareCounters('mm', ['pagesAllocated', 'pagesFreed', 'pageFaults', 'gupPinCalls', 'gupPagesPinned', 'gupFoliosVisited', 'gupPagesUnpinned', 'hmmRangeFaults', 'mmuIntervalInvalidates']);
