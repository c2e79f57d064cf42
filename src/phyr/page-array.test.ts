import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PageArray } from './page-array.ts';
import { refSegments, walkCursor, segsOnly } from '../../test/fixtures/phyr-reference.ts';

describe('PageArray', () => {
  const pfns = new Float64Array([5, 6, 7, 20, 21, 3]);
  const pa = new PageArray(pfns, { pageSize: 4096, offset: 0x100, len: 5 * 4096 - 0x100 + 0x10, flags: 0 });

  it('walks one page per entry, trimmed by offset and len', () => {
    expect(pa.layout).toBe('pagearray');
    expect(pa.count).toBe(6);
    expect(pa.kernelBytes).toBe(48);
    expect(pa.totalLen).toBe(5 * 4096 - 0x100 + 0x10);
    expect(pa.pfnAt(3)).toBe(20n);
    const rs = [...pa];
    expect(rs[0]).toEqual({ addr: 5n * 4096n + 0x100n, len: 4096 - 0x100, flags: 0 });
    expect(rs[1]).toEqual({ addr: 6n * 4096n, len: 4096, flags: 0 });
    expect(rs[5]).toEqual({ addr: 3n * 4096n, len: 0x10, flags: 0 });
    expect(segsOnly(walkCursor(pa.cursor()))).toEqual(rs);
  });

  it('merges contiguous pages and matches the reference under limits', () => {
    const rs = [...pa];
    expect(segsOnly(walkCursor(pa.cursor({ merge: true })))).toEqual([
      { addr: 5n * 4096n + 0x100n, len: 3 * 4096 - 0x100, flags: 0 },
      { addr: 20n * 4096n, len: 2 * 4096, flags: 0 },
      { addr: 3n * 4096n, len: 0x10, flags: 0 },
    ]);
    for (const o of [{ merge: true, maxSegmentLen: 5000 }, { merge: true, segBoundaryMask: 0x1fffn }, { virtBoundaryMask: 0xfff, merge: true }, { budget: 9000, skip: 77 }]) {
      expect(walkCursor(pa.cursor(o), 3000)).toEqual(refSegments(rs, o, 3000));
    }
  });

  it('per-page flags split merged runs', () => {
    const p = new PageArray(new Float64Array([1, 2, 3]), { pageSize: 4096, flags: new Uint32Array([0, 0, 1]) });
    expect(segsOnly(walkCursor(p.cursor({ merge: true }))).map((s) => [s.addr, s.len, s.flags])).toEqual([
      [4096n, 8192, 0], [3n * 4096n, 4096, 1],
    ]);
    expect(p.flagsAt(2)).toBe(1);
  });

  it('fill() gives each page its exact address, up to the largest pfn (a bigint reference)', () => {
    fc.assert(fc.property(
      fc.integer({ min: 9, max: 30 }), fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { minLength: 1, maxLength: 40 }),
      fc.integer({ min: 1, max: 40 }), fc.nat(),
      (shift, fracs, max, offSeed) => {
        const ps = 2 ** shift;
        const maxPfn = Math.floor(2 ** 53 / ps) - 1;
        const pfns = new Float64Array(fracs.map((f, i) => (i === 0 ? maxPfn : Math.floor(f * maxPfn))));
        const offset = offSeed % ps;
        const p = new PageArray(pfns, { pageSize: ps, offset });
        const cols = { addr: new Float64Array(max), len: new Float64Array(max), flags: null };
        const got: bigint[] = [];
        const c = p.cursor();
        while (!c.done) {
          const k = c.fill(cols, max);
          for (let j = 0; j < k; j++) got.push(BigInt(cols.addr[j]));
        }
        const want = Array.from(pfns, (pfn, i) => BigInt(pfn) * BigInt(ps) + (i === 0 ? BigInt(offset) : 0n));
        expect(got).toEqual(want);
      },
    ));
  });

  it('walks under limits like the reference over bigint page addresses, up to the largest pfn', () => {
    fc.assert(fc.property(
      fc.integer({ min: 9, max: 30 }), fc.array(fc.tuple(fc.double({ min: 0, max: 1, noNaN: true }), fc.boolean()), { minLength: 1, maxLength: 12 }),
      fc.nat(), fc.boolean(), fc.option(fc.integer({ min: 1, max: 64 })), fc.option(fc.integer({ min: -2, max: 12 })),
      (shift, picks, offSeed, merge, segPart, bndPlus) => {
        const ps = 2 ** shift;
        // limits within a few pieces a page, so that a walk stays short at 1 GiB pages
        const maxSegmentLen = segPart === null ? null : Math.ceil((ps * segPart) / 8);
        const bndShift = bndPlus === null ? null : shift + bndPlus;
        const maxPfn = Math.floor(2 ** 53 / ps) - 1;
        // the largest pfn first; then either the next page (a run to merge) or one anywhere
        const pfns = new Float64Array(picks.length);
        picks.forEach(([f, next], i) => {
          pfns[i] = i === 0 ? maxPfn : next && pfns[i - 1] < maxPfn ? pfns[i - 1] + 1 : Math.floor(f * maxPfn);
        });
        const offset = offSeed % ps;
        const p = new PageArray(pfns, { pageSize: ps, offset });
        const ranges = Array.from(pfns, (pfn, i) => ({
          addr: BigInt(pfn) * BigInt(ps) + (i === 0 ? BigInt(offset) : 0n), len: i === 0 ? ps - offset : ps, flags: 0,
        }));
        const o = {
          merge, ...(maxSegmentLen === null ? {} : { maxSegmentLen }),
          ...(bndShift === null ? {} : { segBoundaryMask: (1n << BigInt(bndShift)) - 1n }),
        };
        expect(walkCursor(p.cursor(o))).toEqual(refSegments(ranges, o));
      },
    ));
  });

  it('rejects bad arguments naming them', () => {
    expect(() => new PageArray([1] as unknown as Float64Array, { pageSize: 4096 })).toThrow(/pfns/);
    expect(() => new PageArray(new Float64Array([1.5]), { pageSize: 4096 })).toThrow(/pfns\[0\]/);
    expect(() => new PageArray(new Float64Array([-1]), { pageSize: 4096 })).toThrow(/pfns\[0\]/);
    expect(() => new PageArray(new Float64Array([1]), { pageSize: 3000 })).toThrow(/pageSize/);
    expect(() => new PageArray(new Float64Array([1]), { pageSize: 4096, offset: 4096 })).toThrow(/offset/);
    expect(() => new PageArray(new Float64Array([1, 2]), { pageSize: 4096, len: 4096 })).toThrow(/len/);
    expect(() => new PageArray(new Float64Array([1, 2]), { pageSize: 4096, len: 8193 })).toThrow(/len/);
    expect(() => new PageArray(new Float64Array([1, 2]), { pageSize: 4096, flags: new Uint32Array(1) })).toThrow(/flags/);
    expect(() => pa.pfnAt(6)).toThrow(/i must be/);
  });
});
