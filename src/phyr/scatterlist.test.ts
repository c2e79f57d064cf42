// Tests for scatterlist.ts and its generated cursors (SgCursor, SgDmaCursor): sg_alloc_table*, chaining, append, DMA flags, the cursor vs references.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EventLog, KernelBug } from '../base/index.ts';
import type { CursorOptions, Range, RangeCursor, RangeSource } from './types.ts';
import {
  SG_APPEND_TABLE_BYTES, SG_DMA_BUS_ADDRESS, SG_DMA_SWIOTLB, SgAppendTable, SgTable, sgAllocAppendTableFromPages,
  sgAllocTable, sgAllocTableFromPages, sgAllocTableFromPagesSegment, sgDmaIsBusAddress, sgDmaIsSwiotlb,
  sgChainLinks, sgDmaMarkBusAddress, sgDmaMarkSwiotlb, sgDmaUnmarkBusAddress, sgFreeAppendTable, sgFreeTable,
  sgMaxSingleAlloc, sgNents,
} from './scatterlist.ts';

const P = 4096;

function must<T>(r: { ok: true; value: T } | { ok: false; errno: string }): T {
  if (!r.ok) throw new Error(`unexpected ${r.errno}`);
  return r.value;
}

/** Entries of a table as plain values, through the per-index accessors. */
function entries(sgt: SgTable): Array<{ pfn: bigint; offset: number; length: number }> {
  const out = [];
  for (let i = 0; i < sgt.origNents; i++) out.push({ pfn: sgt.pfnAt(i), offset: sgt.offsetAt(i), length: sgt.lengthAt(i) });
  return out;
}

/**
 * Brute-force reference of sg_alloc_table_from_pages_segment: pages grouped greedily, a group ending at a
 * pfn discontinuity, a pgmap change, or when it holds floor(maxSegment / P) pages.
 */
function refMerge(pfns: number[], offset: number, size: number, maxSegment: number, pgmap?: (p: number) => number) {
  const perGroup = Math.floor(maxSegment / P);
  const groups: number[][] = [];
  for (let i = 0; i < pfns.length; i++) {
    const g = groups[groups.length - 1];
    const join = g !== undefined && pfns[i] === pfns[i - 1] + 1 && g.length < perGroup
      && (pgmap === undefined || pgmap(pfns[i]) === pgmap(pfns[i - 1]));
    if (join) g.push(pfns[i]);
    else groups.push([pfns[i]]);
  }
  let left = size;
  return groups.map((g, k) => {
    const off = k === 0 ? offset : 0;
    const length = Math.min(left, g.length * P - off);
    left -= length;
    return { pfn: BigInt(g[0]), offset: off, length };
  });
}

const pfnArrays = fc.array(
  fc.oneof(fc.constant('next'), fc.constant('jump'), fc.constant('back')), { minLength: 1, maxLength: 40 },
).chain((steps) => fc.integer({ min: 0, max: 1000 }).map((start) => {
  const out: number[] = [];
  let p = start;
  for (const s of steps) {
    out.push(p);
    p = s === 'next' ? p + 1 : s === 'jump' ? p + 2 + (p % 7) : Math.max(0, p - 3);
  }
  return out;
}));

describe('sgAllocTable: chained chunks', () => {
  it('300 entries: 3 chunks, chain links at the end of chunks 0 and 1, SG_END on the last entry', () => {
    const sgt = must(sgAllocTable(300));
    expect(sgt.chunkCount).toBe(3);
    expect([0, 1, 2].map((k) => sgt.chunkSizeAt(k))).toEqual([128, 128, 46]);
    expect(sgt.rawEntry(0, 127)).toMatchObject({ isChain: true, chainTo: 1, isEnd: false, offset: 0, length: 0, index: null });
    expect(sgt.rawEntry(1, 127)).toMatchObject({ isChain: true, chainTo: 2, index: null });
    expect(sgt.rawEntry(0, 126)).toMatchObject({ isChain: false, index: 126 });
    // Logical entries 127 and 254 are the first ones reached through a chain link.
    expect(sgt.rawEntry(1, 0).index).toBe(127);
    expect(sgt.rawEntry(2, 0).index).toBe(254);
    expect(sgt.slotOf(127)).toBe(128);
    expect(sgt.slotOf(254)).toBe(256);
    expect(sgt.isEnd(299)).toBe(true);
    expect(sgt.rawEntry(2, 45)).toMatchObject({ isEnd: true, index: 299 });
    for (let i = 0; i < 299; i++) expect(sgt.isEnd(i)).toBe(false);
    expect(sgNents(sgt)).toBe(300);
    expect(sgt.nents).toBe(300);
    expect(sgt.origNents).toBe(300);
  });

  it('128 fits one chunk without a chain; 129 needs a chain', () => {
    const a = must(sgAllocTable(128));
    expect(a.chunkCount).toBe(1);
    expect(a.rawEntry(0, 127)).toMatchObject({ isChain: false, isEnd: true, index: 127 });
    const b = must(sgAllocTable(129));
    expect(b.chunkCount).toBe(2);
    expect([b.chunkSizeAt(0), b.chunkSizeAt(1)]).toEqual([128, 2]);
    expect(sgNents(b)).toBe(129);
  });

  it('kernelBytes = 16 + 32 per slot, checked against a brute-force count of the chunk storage', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 2000 }), (n) => {
      const sgt = must(sgAllocTable(n));
      let slots = 0;
      let chains = 0;
      for (let k = 0; k < sgt.chunkCount; k++) {
        for (let s = 0; s < sgt.chunkSizeAt(k); s++) {
          slots++;
          if (sgt.rawEntry(k, s).isChain) chains++;
        }
      }
      expect(slots).toBe(n + chains);
      expect(chains).toBe(n <= 128 ? 0 : Math.ceil((n - 128) / 127));
      expect(sgt.kernelBytes).toBe(16 + 32 * slots);
      expect(sgNents(sgt)).toBe(n);
    }), { numRuns: 200 });
  });

  it('EINVAL for 0 entries; misuse throws naming the argument', () => {
    const r = sgAllocTable(0);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.errno).toBe('EINVAL');
    expect(() => sgAllocTable(-1)).toThrow(/nents.*-1/);
    expect(() => sgAllocTable(1.5)).toThrow(RangeError);
    expect(() => sgAllocTable('3' as unknown as number)).toThrow(TypeError);
  });

  it('entries of sg_alloc_table have no page until setPage; sgFreeTable empties the table', () => {
    const sgt = must(sgAllocTable(3));
    expect(sgt.hasPage(1)).toBe(false);
    expect(() => sgt.pfnAt(1)).toThrow(/no page/);
    sgt.setPage(1, 7n, 100, 12);
    expect(sgt.pfnAt(1)).toBe(7n);
    expect(sgt.physAt(1)).toBe(7n * 4096n + 12n);
    expect(sgt.physAt(1, 65536)).toBe(7n * 65536n + 12n);
    expect(sgt.isEnd(2)).toBe(true); // sg_set_page keeps the marks
    sgFreeTable(sgt);
    expect(sgt.origNents).toBe(0);
    expect(sgt.chunkCount).toBe(0);
    expect(sgt.kernelBytes).toBe(16);
    expect(() => sgt.lengthAt(0)).toThrow(/index/);
    sgFreeTable(sgt); // freeing twice is a no-op
    expect(sgt.chunkCount).toBe(0);
  });
});

describe('entry accessors, DMA fields and marks', () => {
  it('setDma / dma flags / bus address helpers', () => {
    const sgt = must(sgAllocTableFromPages([10n, 11n, 20n], 0, 3 * P));
    expect(sgt.dmaAddressAt(0)).toBe(0n);
    sgt.setDma(0, 0xffff_ffff_ffff_f000n, 8192);
    sgt.setDma(1, 0x1000n, 4096);
    expect(sgt.dmaAddressAt(0)).toBe(0xffff_ffff_ffff_f000n);
    expect(sgt.dmaLengthAt(1)).toBe(4096);
    expect(sgDmaIsBusAddress(sgt, 1)).toBe(false);
    sgDmaMarkBusAddress(sgt, 1);
    sgDmaMarkSwiotlb(sgt, 1);
    expect(sgt.dmaFlagsAt(1)).toBe(SG_DMA_BUS_ADDRESS | SG_DMA_SWIOTLB);
    sgDmaUnmarkBusAddress(sgt, 1);
    expect(sgDmaIsBusAddress(sgt, 1)).toBe(false);
    expect(sgDmaIsSwiotlb(sgt, 1)).toBe(true);
    expect(sgt.rawEntry(0, 1)).toMatchObject({ dmaAddress: 0x1000n, dmaLength: 4096, dmaFlags: SG_DMA_SWIOTLB });
    expect(() => sgt.setDma(0, -1n, 4)).toThrow(/addr/);
    expect(() => sgt.setDma(0, 1n, 2 ** 32)).toThrow(/len/);
    expect(() => sgt.setDma(5, 1n, 4)).toThrow(/index/);
    expect(() => sgt.setPage(0, 1n << 53n, 4, 0)).toThrow(/pfn/);
  });

  it('nents vs origNents: the DMA side walks nents entries of dma_address/dma_length', () => {
    const sgt = must(sgAllocTableFromPages([1n, 3n, 5n, 7n], 0, 4 * P));
    expect(sgt.origNents).toBe(4);
    sgt.setDma(0, 0x10000n, 3 * P);
    sgt.setDma(1, 0x20000n, P);
    sgt.nents = 2;
    expect(() => { sgt.nents = 5; }).toThrow(/nents/);
    const dma = sgt.dmaEntries();
    expect(dma.layout).toBe('dmalist');
    expect(dma.count).toBe(2);
    expect(dma.totalLen).toBe(4 * P);
    expect(dma.sharesStorage).toBe(true);
    expect([...dma]).toEqual([{ addr: 0x10000n, len: 3 * P, flags: 0 }, { addr: 0x20000n, len: P, flags: 0 }]);
    expect(sgt.count).toBe(4);
    expect([...sgt].map((r) => r.addr)).toEqual([1n, 3n, 5n, 7n].map((p) => p * 4096n));
  });

  it('totalLen of both sides sums every entry through the chain links', () => {
    const sgt = must(sgAllocTable(300));
    let cpu = 0;
    let dma = 0;
    for (let i = 0; i < 300; i++) {
      sgt.setPage(i, BigInt(2 * i), 100 + i, 0);
      cpu += 100 + i;
      if (i < 290) {
        sgt.setDma(i, BigInt(i) << 20n, 7 * i + 1);
        dma += 7 * i + 1;
      }
    }
    sgt.nents = 290;
    expect(sgt.chunkCount).toBe(3);
    expect(sgt.totalLen).toBe(cpu);
    expect(sgt.dmaEntries().totalLen).toBe(dma);
    expect([...sgt].reduce((t, r) => t + r.len, 0)).toBe(cpu);
    expect([...sgt.dmaEntries()].reduce((t, r) => t + r.len, 0)).toBe(dma);
  });

  it('sgMarkEnd / sgUnmarkEnd / sgNext follow the storage', () => {
    const sgt = must(sgAllocTable(200));
    expect(sgt.sgNext(126)).toBe(127);
    sgt.sgMarkEnd(150);
    expect(sgt.sgNext(150)).toBeNull();
    expect(sgNents(sgt)).toBe(151);
    sgt.sgUnmarkEnd(150);
    expect(sgNents(sgt)).toBe(200);
  });
});

describe('sgAllocTableFromPagesSegment against a brute-force merger', () => {
  it('random pfns / offset / size / maxSegment / pgmaps', () => {
    fc.assert(fc.property(
      pfnArrays, fc.integer({ min: 0, max: P - 1 }), fc.integer({ min: 0, max: P - 1 }),
      fc.oneof(fc.integer({ min: P, max: 6 * P }), fc.constant(0xffffffff)), fc.integer({ min: 0, max: 3 }),
      fc.constantFrom('f64', 'big', 'u64'),
      (pfns, offset, tailCut, maxSegment, pgmapMod, kind) => {
        const size = Math.max(pfns.length * P - offset - tailCut, (pfns.length - 1) * P - offset + 1, 0);
        const pgmap = pgmapMod === 0 ? undefined : (p: number) => Math.floor(p / (pgmapMod * 3)) % 2;
        const input = kind === 'f64' ? Float64Array.from(pfns)
          : kind === 'big' ? pfns.map(BigInt) : BigUint64Array.from(pfns.map(BigInt));
        const sgt = must(sgAllocTableFromPagesSegment(input, offset, size, maxSegment, { pgmapOf: pgmap }));
        const want = refMerge(pfns, offset, size, maxSegment, pgmap);
        expect(entries(sgt)).toEqual(want);
        expect(sgt.nents).toBe(want.length);
        expect(sgNents(sgt)).toBe(want.length);
        // Every byte of the input pages, exactly once and in order.
        const bytes: number[] = [];
        for (const r of sgt) for (let b = 0; b < r.len; b += 512) bytes.push(Number(r.addr) + b);
        const wantBytes: number[] = [];
        for (let i = 0, pos = 0; i < pfns.length; i++) {
          for (let b = i === 0 ? offset : 0; b < P && pos < size; b += 512, pos += 512) wantBytes.push(pfns[i] * P + b);
        }
        if (offset % 512 === 0 && size % 512 === 0) expect(bytes).toEqual(wantBytes);
        expect(sgt.totalLen).toBe(size);
        const cap = Math.floor(maxSegment / P) * P;
        for (const e of entries(sgt)) expect(e.length).toBeLessThanOrEqual(cap);
        // Pages of different pgmaps never share an entry.
        if (pgmap) {
          for (let i = 0; i < sgt.origNents; i++) {
            const first = Number(sgt.pfnAt(i));
            const n = Math.ceil((sgt.offsetAt(i) + sgt.lengthAt(i)) / P);
            for (let k = 1; k < n; k++) expect(pgmap(first + k)).toBe(pgmap(first));
          }
        }
        // sg_alloc_table_from_pages_segment sizes the chunks exactly: total_nents == orig_nents.
        const chains = sgt.chunkCount - 1;
        expect(sgt.slotCount).toBe(sgt.origNents + chains);
      }), { numRuns: 300 });
  });

  // SG_MAX_SINGLE_ALLOC is PAGE_SIZE / sizeof(struct scatterlist) (include/linux/scatterlist.h):
  // a chunk is one page of 32-byte entries, so 512 with 16 KiB pages and 2048 with 64 KiB.
  it('chunks hold a page of entries: 128, 512 or 2048 by page size (sg_alloc_table and from pages)', () => {
    expect([4096, 16384, 65536].map(sgMaxSingleAlloc)).toEqual([128, 512, 2048]);
    // Chunk sizes by the kernel's rule (__sg_alloc_table, get_next_sg): take min(left, max) slots;
    // a chunk that is not the last gives its last slot to the chain link.
    const chunksOf = (n: number, ps: number): number[] => {
      const max = ps / 32;
      const out: number[] = [];
      for (let left = n; left > 0;) {
        const alloc = Math.min(left, max);
        out.push(alloc);
        left -= alloc === left ? alloc : alloc - 1;
      }
      return out;
    };
    fc.assert(fc.property(fc.integer({ min: 1, max: 5000 }), fc.constantFrom(4096, 16384, 65536), (n, ps) => {
      const want = chunksOf(n, ps);
      for (const sgt of [
        must(sgAllocTable(n, { pageSize: ps })),
        must(sgAllocTableFromPages(Float64Array.from({ length: n }, (_, i) => i * 2), 0, n * ps, { pageSize: ps })),
      ]) {
        expect(Array.from({ length: sgt.chunkCount }, (_, k) => sgt.chunkSizeAt(k))).toEqual(want);
        expect(sgt.kernelBytes).toBe(16 + 32 * (n + want.length - 1));
        expect(sgChainLinks(n, ps)).toBe(want.length - 1);
        expect(sgNents(sgt)).toBe(n);
      }
    }), { numRuns: 150 });
    // The helper's example: 200 entries on 64 KiB pages are one chunk, no chain link.
    const t = must(sgAllocTable(200, { pageSize: 65536 }));
    expect(t.chunkCount).toBe(1);
    expect(t.kernelBytes).toBe(16 + 32 * 200);
  });

  it('a long non-contiguous array chains 127 + 1 per chunk', () => {
    const pfns = Float64Array.from({ length: 1000 }, (_, i) => i * 2);
    const sgt = must(sgAllocTableFromPagesSegment(pfns, 0, 1000 * P, 0xffffffff));
    expect(sgt.origNents).toBe(1000);
    expect(sgt.chunkCount).toBe(8);
    for (let k = 0; k < 7; k++) expect(sgt.rawEntry(k, 127).isChain).toBe(true);
    expect(sgt.chunkSizeAt(7)).toBe(1000 - 7 * 127);
    expect(sgt.pfnAt(999)).toBe(1998n);
    expect(sgt.kernelBytes).toBe(16 + 32 * (1000 + 7));
  });

  it('flagsOf sets the CPU entry flags from the first page', () => {
    const sgt = must(sgAllocTableFromPages([1n, 2n, 9n], 0, 3 * P, { flagsOf: (p) => (p >= 9 ? 0x105 : 0) }));
    expect([...sgt].map((r: Range) => r.flags)).toEqual([0, 0x105]);
  });

  it('EINVAL with a WARN when maxSegment rounds below a page; misuse throws naming the argument', () => {
    const events = new EventLog();
    const r = sgAllocTableFromPagesSegment([1n], 0, P, P - 1, { events });
    expect(r.ok ? 'ok' : r.errno).toBe('EINVAL');
    expect(events.list('WARN', 'scatterlist').length).toBe(1);
    expect(() => sgAllocTableFromPagesSegment([], 0, 0, P)).toThrow(/pfns/);
    expect(() => sgAllocTableFromPagesSegment([1n], P, 1, P)).toThrow(/offset/);
    expect(() => sgAllocTableFromPagesSegment([1n, 2n], 0, P, P)).toThrow(/size/);
    expect(() => sgAllocTableFromPagesSegment([1n], 0, P + 1, P)).toThrow(/size/);
    expect(() => sgAllocTableFromPagesSegment([1n], 0, P, 2 ** 32)).toThrow(/maxSegment/);
    expect(() => sgAllocTableFromPagesSegment([-1n], 0, P, P)).toThrow(/pfns\[0\]/);
    expect(() => sgAllocTableFromPagesSegment(Float64Array.of(1.5), 0, P, P)).toThrow(/pfns\[0\]/);
    expect(() => sgAllocTableFromPagesSegment([1 as unknown as bigint], 0, P, P)).toThrow(TypeError);
    expect(() => sgAllocTableFromPagesSegment([1n], 0, P, P, { pageSize: 3000 })).toThrow(/pageSize/);
  });

  it('above 2^53 (bigint arithmetic) a walk is the same walk at low addresses, shifted: merges and limits included', () => {
    const BASE = (1n << 52n) - 64n; // pfn base: addresses near 2^64, aligned far beyond the boundary masks
    // Entries at random places or (cont) right after the previous one, so that merges happen.
    const entries = fc.array(fc.record({
      p: fc.integer({ min: 0, max: 12 }), len: fc.integer({ min: 0, max: 9000 }), off: fc.integer({ min: 0, max: 4095 }),
      fl: fc.constantFrom(0, 0, 0x105), cont: fc.boolean(),
    }), { minLength: 1, maxLength: 6 }).map((es) => {
      let end = 0;
      return es.map((e, i) => {
        const addr = e.cont && i > 0 ? end : e.p * P + e.off;
        end = addr + e.len;
        return { p: Math.floor(addr / P), off: addr % P, len: e.len, fl: e.fl };
      });
    });
    const opts = fc.record({
      maxSegmentLen: fc.option(fc.integer({ min: 300, max: 9000 }), { nil: undefined }),
      segBoundaryMask: fc.option(fc.constantFrom(0x7ffn, 0xfffn, 0x1fffn), { nil: undefined }),
      merge: fc.boolean(),
    });
    fc.assert(fc.property(entries, opts, (es, o) => {
      const walk = (pfnBase: bigint) => {
        const sgt = must(sgAllocTable(es.length));
        es.forEach((e, i) => {
          sgt.setPage(i, pfnBase + BigInt(e.p), e.len, e.off);
          sgt.setFlags(i, e.fl);
        });
        const segs: Array<[bigint, number, number]> = [];
        for (const c = sgt.cursor(o); !c.done; c.next()) segs.push([c.addr - pfnBase * 4096n, c.len, c.flags]);
        return { fits: sgt.addrFitsNumber, segs };
      };
      const low = walk(0n);
      const high = walk(BASE);
      expect([low.fits, high.fits]).toEqual([true, false]);
      expect(high.segs).toEqual(low.segs);
    }), { numRuns: 200 });
  });

  it('huge pfns: bigint addresses stay exact (addrFitsNumber false)', () => {
    const top = (1n << 52n) - 4n;
    const sgt = must(sgAllocTableFromPages([top, top + 1n, top + 3n], 100, 3 * P - 100));
    expect(sgt.addrFitsNumber).toBe(false);
    expect([...sgt]).toEqual([
      { addr: top * 4096n + 100n, len: 2 * P - 100, flags: 0 },
      { addr: (top + 3n) * 4096n, len: P, flags: 0 },
    ]);
    const c = sgt.cursor({ segBoundaryMask: 0xfffn, maxSegmentLen: 3000 });
    const segs: Array<[bigint, number]> = [];
    for (; !c.done; c.next()) segs.push([c.addr, c.len]);
    expect(segs).toEqual([
      [top * 4096n + 100n, 3000], [top * 4096n + 3100n, 996], [(top + 1n) * 4096n, 3000], [(top + 1n) * 4096n + 3000n, 1096],
      [(top + 3n) * 4096n, 3000], [(top + 3n) * 4096n + 3000n, 1096],
    ]);
  });
});

describe('sgAllocAppendTableFromPages', () => {
  it('appending in pieces gives the same entries as one call', () => {
    fc.assert(fc.property(
      pfnArrays, fc.integer({ min: 0, max: P - 1 }), fc.integer({ min: 0, max: P - 1 }),
      fc.integer({ min: 1, max: 5 }), fc.array(fc.integer({ min: 1, max: 10 }), { minLength: 1, maxLength: 6 }),
      fc.integer({ min: 0, max: 2 }),
      (pfns, offset, tailCut, segPages, cuts, pgmapMod) => {
        const maxSegment = segPages * P + 123;
        // A short last page only when it is passed alone in one call (see the size quirk test below).
        const size = cuts.length === 1 && cuts[0] >= pfns.length
          ? Math.max(pfns.length * P - offset - tailCut, (pfns.length - 1) * P - offset + 1, 0)
          : pfns.length * P - offset;
        const pgmap = pgmapMod === 0 ? undefined : (p: number) => Math.floor(p / (pgmapMod * 4)) % 2;
        const want = refMerge(pfns, offset, size, maxSegment, pgmap);
        const append = new SgAppendTable();
        let at = 0;
        let ci = 0;
        while (at < pfns.length) {
          const n = Math.min(cuts[ci++ % cuts.length], pfns.length - at);
          const last = at + n === pfns.length;
          const off = at === 0 ? offset : 0;
          const sz = last ? size - (at === 0 ? 0 : at * P - offset) : n * P - off;
          must(sgAllocAppendTableFromPages(append, pfns.slice(at, at + n).map(BigInt), off, sz, maxSegment,
            pfns.length - at - n, { pgmapOf: pgmap }));
          at += n;
        }
        expect(entries(append.sgt)).toEqual(want);
        expect(append.sgt.nents).toBe(want.length);
        expect(append.prv).toBe(want.length - 1);
        expect(sgNents(append.sgt)).toBe(want.length);
        // total_nents = allocated slots minus chain links; kernelBytes counts every slot.
        expect(append.totalNents).toBe(append.sgt.slotCount - (append.sgt.chunkCount - 1));
        expect(append.totalNents).toBeGreaterThanOrEqual(append.sgt.origNents);
        expect(append.kernelBytes).toBe(SG_APPEND_TABLE_BYTES + 32 * append.sgt.slotCount);
      }), { numRuns: 300 });
  });

  it('pgmapEnd only saves pgmapOf calls: the same entries, one call per run of contiguous frames in a pgmap', () => {
    fc.assert(fc.property(pfnArrays, fc.integer({ min: 1, max: 3 }), (pfns, m) => {
      const block = m * 3;
      const pgmapOf = (p: number) => Math.floor(p / block) % 2;
      const pgmapEnd = (p: number) => (Math.floor(p / block) + 1) * block;
      const size = pfns.length * P;
      const plain = must(sgAllocTableFromPagesSegment(Float64Array.from(pfns), 0, size, 0xffffffff, { pgmapOf }));
      const hinted = must(sgAllocTableFromPagesSegment(Float64Array.from(pfns), 0, size, 0xffffffff, { pgmapOf, pgmapEnd }));
      expect(entries(hinted)).toEqual(entries(plain));
    }), { numRuns: 300 });
    // 1024 contiguous frames across two pgmaps (a region boundary at frame 1536)
    const pfns = Float64Array.from({ length: 1024 }, (_, i) => 1024 + i);
    let calls = 0;
    const pgmapOf = (p: number) => { calls++; return p < 1536 ? 1 : 2; };
    const sgt = must(sgAllocTableFromPagesSegment(pfns, 0, 1024 * P, 0xffffffff, { pgmapOf, pgmapEnd: (p) => (p < 1536 ? 1536 : 4096) }));
    expect(entries(sgt)).toEqual([{ pfn: 1024n, offset: 0, length: 512 * P }, { pfn: 1536n, offset: 0, length: 512 * P }]);
    expect(calls).toBeLessThanOrEqual(8);
  });

  it('merges into the previous entry only up to maxSegment, and never across pgmaps', () => {
    const append = new SgAppendTable();
    must(sgAllocAppendTableFromPages(append, [10n, 11n], 0, 2 * P, 3 * P, 2));
    must(sgAllocAppendTableFromPages(append, [12n, 13n], 0, 2 * P, 3 * P, 0));
    expect(entries(append.sgt)).toEqual([{ pfn: 10n, offset: 0, length: 3 * P }, { pfn: 13n, offset: 0, length: P }]);

    const b = new SgAppendTable();
    const pgmapOf = (p: number) => (p >= 12 ? 7 : 0);
    must(sgAllocAppendTableFromPages(b, [10n, 11n], 0, 2 * P, 0xffffffff, 2, { pgmapOf }));
    must(sgAllocAppendTableFromPages(b, [12n, 13n], 0, 2 * P, 0xffffffff, 0, { pgmapOf }));
    expect(entries(b.sgt)).toEqual([{ pfn: 10n, offset: 0, length: 2 * P }, { pfn: 12n, offset: 0, length: 2 * P }]);
  });

  it('size quirk: pages merged into the previous entry add whole pages, whatever size says', () => {
    const append = new SgAppendTable();
    must(sgAllocAppendTableFromPages(append, [5n], 0, P, 0xffffffff, 1));
    must(sgAllocAppendTableFromPages(append, [6n], 0, 100, 0xffffffff, 0));
    expect(entries(append.sgt)).toEqual([{ pfn: 5n, offset: 0, length: 2 * P }]);
    const b = new SgAppendTable();
    must(sgAllocAppendTableFromPages(b, [5n], 0, P, 0xffffffff, 1));
    must(sgAllocAppendTableFromPages(b, [8n], 0, 100, 0xffffffff, 0));
    expect(entries(b.sgt)).toEqual([{ pfn: 5n, offset: 0, length: P }, { pfn: 8n, offset: 0, length: 100 }]);
  });

  it('leftPages sizes the chunks: an under-announced chunk is chained early', () => {
    const append = new SgAppendTable();
    // 3 separate entries now, 2 more pages announced: chunk of min(3 + 2, 128) = 5 slots.
    must(sgAllocAppendTableFromPages(append, [1n, 3n, 5n], 0, 3 * P, 0xffffffff, 2));
    expect(append.sgt.chunkSizeAt(0)).toBe(5);
    expect(append.totalNents).toBe(5);
    // Break the promise politely: announce more pages again; the 5th slot becomes a chain link.
    must(sgAllocAppendTableFromPages(append, [7n, 9n], 0, 2 * P, 0xffffffff, 4));
    expect(append.sgt.chunkCount).toBe(2);
    expect(append.sgt.rawEntry(0, 4)).toMatchObject({ isChain: true, chainTo: 1 });
    must(sgAllocAppendTableFromPages(append, [11n, 13n, 15n, 17n], 0, 4 * P, 0xffffffff, 0));
    expect(append.sgt.origNents).toBe(9);
    expect(entries(append.sgt).map((e) => e.pfn)).toEqual([1n, 3n, 5n, 7n, 9n, 11n, 13n, 15n, 17n]);
    expect(sgNents(append.sgt)).toBe(9);
    expect(append.totalNents).toBe(append.sgt.slotCount - 1);
  });

  it('EINVAL (with a WARN) for a non-zero offset when appending; nothing changes', () => {
    const events = new EventLog();
    const append = new SgAppendTable();
    must(sgAllocAppendTableFromPages(append, [1n], 0, P, 0xffffffff, 1));
    const before = entries(append.sgt);
    const r = sgAllocAppendTableFromPages(append, [2n], 8, P - 8, 0xffffffff, 0, { events });
    expect(r.ok ? 'ok' : r.errno).toBe('EINVAL');
    expect(events.count('WARN')).toBe(1);
    expect(entries(append.sgt)).toEqual(before);
  });

  it('appending a new entry after the list was closed is the kernel NULL dereference: BUG, state restored', () => {
    const events = new EventLog();
    const append = new SgAppendTable();
    must(sgAllocAppendTableFromPages(append, [1n, 2n], 0, 2 * P, 0xffffffff, 0));
    // Pages that merge entirely into the last entry are fine even after closing.
    must(sgAllocAppendTableFromPages(append, [3n], 0, P, 0xffffffff, 0));
    expect(entries(append.sgt)).toEqual([{ pfn: 1n, offset: 0, length: 3 * P }]);
    expect(() => sgAllocAppendTableFromPages(append, [4n, 9n], 0, 2 * P, 0xffffffff, 0, { events })).toThrow(KernelBug);
    expect(events.count('BUG')).toBe(1);
    expect(entries(append.sgt)).toEqual([{ pfn: 1n, offset: 0, length: 3 * P }]);
    expect(() => sgAllocAppendTableFromPages(append, [9n], 0, P, 0xffffffff, 0)).toThrow(KernelBug);
    sgFreeAppendTable(append);
    expect(append.prv).toBeNull();
    expect(append.sgt.origNents).toBe(0);
  });
});

// ---- the cursor protocol against a byte-by-byte reference ----

interface Seg { addr: number; len: number; flags: number }

/** Walks ranges byte by byte applying the limits; returns the segments of every stop and the stop reasons. */
function refWalk(rs: Array<{ addr: number; len: number; flags: number }>, o: CursorOptions, resumeBudget: number | undefined) {
  const total = rs.reduce((s, r) => s + r.len, 0);
  const ba = new Float64Array(total);
  const be = new Int32Array(total);
  const bf = new Int32Array(total);
  let k = 0;
  rs.forEach((r, e) => { for (let b = 0; b < r.len; b++, k++) { ba[k] = r.addr + b; be[k] = e; bf[k] = r.flags; } });
  const segs: Seg[][] = [[]];
  const stops: string[] = [];
  const maxSeg = o.maxSegmentLen ?? Infinity;
  const bSize = o.segBoundaryMask === undefined ? 0 : Number(o.segBoundaryMask) + 1;
  const vm = o.virtBoundaryMask ?? 0;
  const skip = o.skip ?? 0;
  let i = skip;
  let budgetLeft = o.budget ?? Infinity;
  let waive = -1;
  let cur: Seg | null = null;
  const stop = (why: string) => {
    stops.push(why); segs.push([]); cur = null; waive = i; budgetLeft = resumeBudget ?? Infinity;
  };
  while (i < total) {
    if (budgetLeft === 0) { stop('budget'); continue; }
    const contiguous = i > 0 && ba[i - 1] + 1 === ba[i] && bf[i - 1] === bf[i];
    const newEntry = i > 0 && be[i - 1] !== be[i];
    if (i > skip && i !== waive && newEntry && !(o.merge === true && contiguous) && vm !== 0
      && (((ba[i - 1] + 1) | ba[i]) & vm) !== 0) { stop('virt-boundary'); continue; }
    const extend = cur !== null && (cur as Seg).len < maxSeg && !(bSize && ba[i] % bSize === 0)
      && (!newEntry || (o.merge === true && contiguous));
    if (extend) (cur as unknown as Seg).len++;
    else { cur = { addr: ba[i], len: 1, flags: bf[i] }; segs[segs.length - 1].push(cur); }
    budgetLeft--;
    i++;
  }
  stops.push('end');
  return { segs, stops };
}

function cursorWalk(src: RangeSource, o: CursorOptions, resumeBudget: number | undefined) {
  const c: RangeCursor = src.cursor(o);
  const segs: Seg[][] = [[]];
  const stops: string[] = [];
  for (let guard = 0; guard < 100000; guard++) {
    if (c.done) {
      stops.push(c.stopReason!);
      if (c.stopReason === 'end') break;
      segs.push([]);
      c.resume(resumeBudget);
      continue;
    }
    segs[segs.length - 1].push({ addr: c.addrNum, len: c.len, flags: c.flags });
    if (c.addr !== BigInt(c.addrNum)) throw new Error('addr and addrNum disagree');
    c.next();
  }
  return { segs, stops };
}

/** Joins adjacent pieces of the same contiguous run, so split-by-advance walks compare with whole walks. */
function bytesOf(segs: Seg[]): number[] {
  const out: number[] = [];
  for (const s of segs) for (let b = 0; b < s.len; b++) out.push(s.addr + b);
  return out;
}

describe('SgTable cursor (CursorOptions) against a byte-by-byte reference', () => {
  const tables = fc.record({
    pfns: fc.array(fc.integer({ min: 0, max: 12 }), { minLength: 1, maxLength: 6 }),
    offset: fc.integer({ min: 0, max: 4095 }),
    lens: fc.array(fc.integer({ min: 0, max: 9000 }), { minLength: 6, maxLength: 6 }),
    offs: fc.array(fc.integer({ min: 0, max: 4095 }), { minLength: 6, maxLength: 6 }),
    flags: fc.array(fc.constantFrom(0, 0, 0x105), { minLength: 6, maxLength: 6 }),
  });
  const options = fc.record({
    maxSegmentLen: fc.option(fc.integer({ min: 300, max: 9000 }), { nil: undefined }),
    segBoundaryMask: fc.option(fc.constantFrom(0x7ffn, 0xfffn, 0x1fffn), { nil: undefined }),
    virtBoundaryMask: fc.option(fc.constantFrom(0x1ff, 0xfff), { nil: undefined }),
    merge: fc.boolean(),
    budget: fc.option(fc.integer({ min: 0, max: 20000 }), { nil: undefined }),
    skip: fc.option(fc.integer({ min: 0, max: 3000 }), { nil: undefined }),
  });

  it('segments, stop reasons and resume match the reference', () => {
    fc.assert(fc.property(tables, options, fc.option(fc.integer({ min: 1, max: 9000 }), { nil: undefined }), (t, o, rb) => {
      // A hand-built table (sgAllocTable + setPage) so entries can touch, overlap pages and carry flags.
      const sgt = must(sgAllocTable(t.pfns.length));
      const rs: Array<{ addr: number; len: number; flags: number }> = [];
      t.pfns.forEach((p, i) => {
        sgt.setPage(i, BigInt(p), t.lens[i], t.offs[i]);
        sgt.setFlags(i, t.flags[i]);
        rs.push({ addr: p * P + t.offs[i], len: t.lens[i], flags: t.flags[i] });
      });
      const total = rs.reduce((s, r) => s + r.len, 0);
      const opts = { ...o, skip: o.skip === undefined ? undefined : Math.min(o.skip, total) };
      const want = refWalk(rs, opts, rb);
      const got = cursorWalk(sgt, opts, rb);
      expect(got.stops).toEqual(want.stops);
      expect(got.segs).toEqual(want.segs);
      for (const s of got.segs.flat()) {
        if (opts.maxSegmentLen) expect(s.len).toBeLessThanOrEqual(opts.maxSegmentLen);
        if (opts.segBoundaryMask) {
          const m = Number(opts.segBoundaryMask);
          expect(Math.floor(s.addr / (m + 1))).toBe(Math.floor((s.addr + s.len - 1) / (m + 1)));
        }
      }
    }), { numRuns: 300 });
  });

  it('clone and partial advance: split walks concatenate to the whole walk', () => {
    fc.assert(fc.property(pfnArrays, fc.integer({ min: 1000, max: 9000 }), fc.integer({ min: 0, max: 30 }), (pfns, maxSeg, cutAt) => {
      const sgt = must(sgAllocTableFromPages(pfns.map(BigInt), 0, pfns.length * P));
      const o = { maxSegmentLen: maxSeg, merge: true };
      const whole = cursorWalk(sgt, o, undefined).segs.flat();
      const c = sgt.cursor(o);
      for (let k = 0; k < cutAt && !c.done; k++) c.next();
      const saved = c.clone();
      const rest: Seg[] = [];
      for (; !c.done; c.next()) rest.push({ addr: c.addrNum, len: c.len, flags: c.flags });
      const again: Seg[] = [];
      for (; !saved.done; saved.next()) again.push({ addr: saved.addrNum, len: saved.len, flags: saved.flags });
      expect(again).toEqual(rest);
      expect(whole.slice(whole.length - rest.length)).toEqual(rest);
      // Advancing by odd byte counts covers the same bytes.
      const d = sgt.cursor(o);
      const pieces: Seg[] = [];
      let consumed = 0;
      while (!d.done) {
        const n = Math.max(1, Math.min(d.len, 777));
        if (d.consumed !== consumed) throw new Error(`consumed ${d.consumed} != ${consumed}`);
        pieces.push({ addr: d.addrNum, len: n, flags: d.flags });
        consumed += n;
        d.advance(n);
      }
      const pb = bytesOf(pieces);
      const wb = bytesOf(whole);
      expect(pb.length).toBe(pfns.length * P);
      expect(pb.every((x, k) => x === wb[k])).toBe(true);
    }), { numRuns: 60 });
  });

  it('misuse of the cursor throws naming the argument', () => {
    const sgt = must(sgAllocTableFromPages([1n, 2n], 0, 2 * P));
    expect(() => sgt.cursor({ maxSegmentLen: 0 })).toThrow(/maxSegmentLen/);
    expect(() => sgt.cursor({ segBoundaryMask: 0x1000n })).toThrow(/segBoundaryMask/);
    expect(() => sgt.cursor({ skip: 2 * P + 1 })).toThrow(/skip/);
    const c = sgt.cursor();
    expect(() => c.advance(c.len + 1)).toThrow(/bytes/);
    c.next();
    expect(c.done).toBe(true);
    expect(() => c.advance(1)).toThrow(/done/);
  });
});
