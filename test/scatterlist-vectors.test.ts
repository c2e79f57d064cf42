// The kernel's userspace scatterlist test table, ported: tools/testing/scatterlist/main.c (Linux 6.x; the
// table with the pfn_app append cases, run through struct sg_append_table as in the 5.15 rework of the
// harness), plus the one vector of the older table (sgmax = SCATTERLIST_MAX_SEGMENT, max_seg = sgmax + 1) that
// the newer table dropped. The harness's set_pages() makes page i the pointer (1 + pfn[i]) * PAGE_SIZE and
// its page_to_pfn() divides by PAGE_SIZE, so the model is fed pfn + 1.
import { describe, expect, it } from 'vitest';
import { EventLog } from '../src/base/index.ts';
import {
  SgAppendTable, sgAllocAppendTableFromPages, sgAllocTableFromPagesSegment, sgNents,
} from '../src/phyr/index.ts';

const PAGE_SIZE = 4096;
const sgmax = 0xffffffff; // UINT_MAX in the current main.c
const SCATTERLIST_MAX_SEGMENT = (0xffffffff & ~(PAGE_SIZE - 1)) >>> 0; // the older main.c's sgmax

interface Vector {
  allocRet: 0 | 'EINVAL';
  numPages: number;
  pfn: number[];
  pfnApp: number[] | null;
  size: number;
  maxSeg: number;
  expectedSegments: number;
}

const v = (allocRet: 0 | 'EINVAL', numPages: number, pfn: number[], pfnApp: number[] | null, size: number,
  maxSeg: number, expectedSegments: number): Vector => ({ allocRet, numPages, pfn, pfnApp, size, maxSeg, expectedSegments });

// tools/testing/scatterlist/main.c, tests[] (current form with pfn_app), in order.
const MAIN_C: Vector[] = [
  v('EINVAL', 1, [0], null, PAGE_SIZE, 0, 1),
  v(0, 1, [0], null, PAGE_SIZE, PAGE_SIZE + 1, 1),
  v(0, 1, [0], null, PAGE_SIZE, sgmax, 1),
  v(0, 1, [0], null, 1, sgmax, 1),
  v(0, 2, [0, 1], null, 2 * PAGE_SIZE, sgmax, 1),
  v(0, 2, [1, 0], null, 2 * PAGE_SIZE, sgmax, 2),
  v(0, 3, [0, 1, 2], null, 3 * PAGE_SIZE, sgmax, 1),
  v(0, 3, [0, 1, 2], null, 3 * PAGE_SIZE, sgmax, 1),
  v(0, 3, [0, 1, 2], [3, 4, 5], 3 * PAGE_SIZE, sgmax, 1),
  v(0, 3, [0, 1, 2], [4, 5, 6], 3 * PAGE_SIZE, sgmax, 2),
  v(0, 3, [0, 2, 1], null, 3 * PAGE_SIZE, sgmax, 3),
  v(0, 3, [0, 1, 3], null, 3 * PAGE_SIZE, sgmax, 2),
  v(0, 3, [1, 2, 4], null, 3 * PAGE_SIZE, sgmax, 2),
  v(0, 3, [1, 3, 4], null, 3 * PAGE_SIZE, sgmax, 2),
  v(0, 4, [0, 1, 3, 4], null, 4 * PAGE_SIZE, sgmax, 2),
  v(0, 5, [0, 1, 3, 4, 5], null, 5 * PAGE_SIZE, sgmax, 2),
  v(0, 5, [0, 1, 3, 4, 6], null, 5 * PAGE_SIZE, sgmax, 3),
  v(0, 5, [0, 1, 2, 3, 4], null, 5 * PAGE_SIZE, sgmax, 1),
  v(0, 5, [0, 1, 2, 3, 4], null, 5 * PAGE_SIZE, 2 * PAGE_SIZE, 3),
  v(0, 6, [0, 1, 2, 3, 4, 5], null, 6 * PAGE_SIZE, 2 * PAGE_SIZE, 3),
  v(0, 6, [0, 2, 3, 4, 5, 6], null, 6 * PAGE_SIZE, 2 * PAGE_SIZE, 4),
  v(0, 6, [0, 1, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12], 6 * PAGE_SIZE, 12 * PAGE_SIZE, 2),
];

// The older main.c (sg_alloc_table_from_pages_segment era, sgmax = SCATTERLIST_MAX_SEGMENT): the one vector
// the current table no longer has.
const OLDER_MAIN_C: Vector[] = [
  v(0, 1, [0], null, PAGE_SIZE, SCATTERLIST_MAX_SEGMENT + 1, 1),
  v(0, 1, [0], null, PAGE_SIZE, SCATTERLIST_MAX_SEGMENT, 1),
];

const pages = (pfn: number[]): bigint[] => pfn.map((p) => BigInt(1 + p));

function runVector(t: Vector): void {
  const events = new EventLog();
  if (t.pfnApp) {
    // Harness: first call with left_pages = num_pages, then the append with left_pages = 0.
    const append = new SgAppendTable();
    const r1 = sgAllocAppendTableFromPages(append, pages(t.pfn), 0, t.size, t.maxSeg, t.numPages, { events });
    expect(r1.ok ? 0 : r1.errno).toBe(t.allocRet);
    if (!r1.ok) return;
    const r2 = sgAllocAppendTableFromPages(append, pages(t.pfnApp), 0, t.size, t.maxSeg, 0, { events });
    expect(r2.ok ? 0 : r2.errno).toBe(t.allocRet);
    expect(append.sgt.nents).toBe(t.expectedSegments);
    // Beyond the harness: the closed list is walkable by sg_next to exactly nents entries.
    expect(sgNents(append.sgt)).toBe(append.sgt.nents);
  } else {
    const r = sgAllocTableFromPagesSegment(pages(t.pfn), 0, t.size, t.maxSeg, { events });
    expect(r.ok ? 0 : r.errno).toBe(t.allocRet);
    if (!r.ok) {
      expect(events.count('WARN')).toBe(1); // WARN_ON(max_segment < PAGE_SIZE)
      return;
    }
    expect(r.value.nents).toBe(t.expectedSegments);
    expect(r.value.origNents).toBe(t.expectedSegments);
    expect(sgNents(r.value)).toBe(t.expectedSegments);
    expect(events.count('WARN')).toBe(0); // WARN_ON(total_nents != orig_nents) did not fire
  }
}

describe('tools/testing/scatterlist/main.c vectors', () => {
  it('has the whole table (22 vectors, 3 with pfn_app)', () => {
    expect(MAIN_C.length).toBe(22);
    expect(MAIN_C.filter((t) => t.pfnApp).length).toBe(3);
  });
  MAIN_C.forEach((t, i) => {
    const name = `#${i}: pfn(${t.pfn.join(',')})${t.pfnApp ? ` + append(${t.pfnApp.join(',')})` : ''} size=${t.size} max_seg=0x${t.maxSeg.toString(16)} -> ${t.allocRet === 0 ? t.expectedSegments : t.allocRet}`;
    it(name, () => runVector(t));
  });
  OLDER_MAIN_C.forEach((t, i) => {
    it(`older table #${i}: max_seg=0x${t.maxSeg.toString(16)} -> ${t.expectedSegments}`, () => runVector(t));
  });
  it('acceptance call from the issue', () => {
    const r = sgAllocTableFromPagesSegment([0n, 1n, 3n], 0, 3 * 4096, 0xfffff000);
    expect(r.ok).toBe(true);
    if (r.ok) expect(r.value.nents).toBe(2);
  });
});
