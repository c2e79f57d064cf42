// The GART and TCE allocators, driven through the DMA API, against plain references written from
// the kernel sources with one boolean per entry and the kernel's own control flow:
// arch/x86/kernel/amd_gart_64.c (alloc_iommu's next_bit rotor, need_flush on wrap and with
// iommu_fullflush, free_iommu, flush_gart), arch/powerpc/kernel/iommu.c (iommu_range_alloc's pools,
// large pool, hints rounded to it_blocksize, the sg handle, the DMA-mask clamp, the pass order;
// ppc_iommu_map_sg's merge rule) and lib/iommu-helper.c (iommu_area_alloc, iommu_is_span_boundary).
// The model keeps its bitmap in byte runs with per-chunk free counts and its own loops; every answer
// (DMA address, failure, flush count, hints, the table's bits and entries) must be the reference's.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { GART_BASE, opsMachine } from '../../../test/fixtures/dma-ops-machines.ts';
import { KernelBug, unwrap } from '../../base/index.ts';
import { sgAllocTable } from '../../phyr/index.ts';
import {
  DMA_BIDIRECTIONAL, DMA_BIT_MASK, DMA_TO_DEVICE, dmaMapPhys, dmaMapSgtable, dmaOpsInspect, dmaSetMask, dmaSetSegBoundary,
  dmaUnmapPhys, dmaUnmapSgtable,
} from '../index.ts';

/** lib/bitmap.c: bitmap_find_next_zero_area, one entry at a time. */
function findNextZeroArea(map: boolean[], size: number, start: number, nr: number, alignMask: number): number {
  for (;;) {
    let index = start;
    while (index < size && map[index]) index++;
    index = Math.ceil(index / (alignMask + 1)) * (alignMask + 1);
    const end = index + nr;
    if (end > size) return end;
    let i = index;
    while (i < end && !map[i]) i++;
    if (i === end) return index;
    start = i + 1;
  }
}

/** The kernel's iommu_area_alloc never returns: it restarts its search at the index it just refused. */
const LOCKUP = -2;

/** lib/iommu-helper.c: iommu_area_alloc (never the last entry below size). */
function areaAlloc(map: boolean[], size: number, start: number, nr: number, shift: number, boundary: number, alignMask: number): number {
  size -= 1;
  for (;;) {
    const index = findNextZeroArea(map, size, start, nr, alignMask);
    if (index >= size) return -1;
    if (((shift + index) % boundary) + nr > boundary) {
      const next = Math.ceil((shift + index) / boundary) * boundary - shift;
      if (next === index) return LOCKUP;
      start = next;
      continue;
    }
    for (let i = index; i < index + nr; i++) map[i] = true;
    return index;
  }
}

function numPages(addr: bigint, len: number, io: number): number {
  return Math.ceil((Number(addr % BigInt(io)) + len) / io);
}

function setBits(map: boolean[]): number[] {
  const out: number[] = [];
  map.forEach((b, i) => { if (b) out.push(i); });
  return out;
}

/** amd_gart_64.c with force_iommu (every map through the GART). */
class RefGart {
  readonly map: boolean[];
  nextBit = 0;
  needFlush = false;
  flushes = 1; // enable_gart_translations
  constructor(readonly pages: number, readonly fullflush: boolean) {
    this.map = new Array<boolean>(pages).fill(false);
  }

  private alloc(size: number, segBoundary: bigint): number {
    const baseIndex = Number(((GART_BASE & segBoundary) + 4095n) / 4096n);
    const boundary = Number((segBoundary >> 12n) + 1n);
    let off = areaAlloc(this.map, this.pages, this.nextBit, size, baseIndex, boundary, 0);
    if (off === LOCKUP) return LOCKUP;
    if (off === -1) {
      this.needFlush = true;
      off = areaAlloc(this.map, this.pages, 0, size, baseIndex, boundary, 0);
      if (off === LOCKUP) return LOCKUP;
    }
    if (off !== -1) {
      this.nextBit = off + size;
      if (this.nextBit >= this.pages) {
        this.nextBit = 0;
        this.needFlush = true;
      }
    }
    if (this.fullflush) this.needFlush = true;
    return off;
  }

  /** gart_map_phys: the bus address, or null (iommu_full: the device cannot reach phys), or 'lockup'. */
  mapPhys(phys: bigint, size: number, segBoundary: bigint): bigint | null | 'lockup' {
    const page = this.alloc(numPages(phys, size, 4096), segBoundary);
    if (page === LOCKUP) return 'lockup';
    if (this.needFlush) {
      this.flushes++;
      this.needFlush = false;
    }
    return page === -1 ? null : GART_BASE + BigInt(page * 4096) + (phys & 4095n);
  }

  /** gart_unmap_phys: addresses outside the aperture were passed through and are left alone. */
  unmapPhys(addr: bigint, size: number): void {
    if (addr < GART_BASE || addr >= GART_BASE + BigInt(this.pages * 4096)) return;
    const page = Number((addr - GART_BASE) / 4096n);
    const n = numPages(addr, size, 4096);
    for (let i = page; i < page + n; i++) this.map[i] = false;
    if (page >= this.nextBit) this.nextBit = page + n;
  }

  private flushGart(): void {
    if (this.needFlush) {
      this.flushes++;
      this.needFlush = false;
    }
  }

  /** iommu_full lines logged. */
  full = 0;

  /**
   * gart_map_sg with force_iommu and iommu_merge as given, for a device with a 32-bit mask: the
   * segments, or null (-ENOMEM), or 'lockup'.
   */
  mapSg(ents: ReadonlyArray<{ phys: bigint; len: number }>, force: boolean, merge: boolean, maxSeg: number, segBoundary: bigint): Array<[bigint, number]> | null | 'lockup' {
    const capable = (e: { phys: bigint; len: number }): boolean => e.phys + BigInt(e.len) - 1n <= 0xffff_ffffn;
    const off = (e: { phys: bigint }): number => Number(e.phys % 4096n);
    const out: Array<[bigint, number]> = [];
    let need = false, start = 0, pages = 0, segSize = 0;
    const cont = (first: number, count: number): boolean | 'lockup' => {
      if (!need) {
        out.push([ents[first].phys, ents[first].len]);
        return true;
      }
      const iommuStart = this.alloc(pages, segBoundary);
      if (iommuStart === LOCKUP) return 'lockup';
      if (iommuStart === -1) return false;
      let len = 0;
      for (let k = first; k < first + count; k++) len += ents[k].len;
      out.push([GART_BASE + BigInt(iommuStart * 4096 + off(ents[first])), len]);
      return true;
    };
    let failed = false;
    for (let i = 0; i < ents.length && !failed; i++) {
      const e = ents[i];
      const nextneed = force || !capable(e);
      if (i > start) {
        const ps = ents[i - 1];
        if (!merge || !nextneed || !need || off(e) !== 0 || e.len + segSize > maxSeg || (off(ps) + ps.len) % 4096 !== 0) {
          const r = cont(start, i - start);
          if (r === 'lockup') return r;
          if (!r) { failed = true; break; }
          segSize = 0;
          pages = 0;
          start = i;
        }
      }
      segSize += e.len;
      need = nextneed;
      pages += numPages(e.phys % 4096n, e.len, 4096);
    }
    if (!failed) {
      const r = cont(start, ents.length - start);
      if (r === 'lockup') return r;
      if (!r) failed = true;
    }
    this.flushGart();
    if (!failed) return out;
    for (const [a, l] of out) this.unmapPhys(a, l);
    if (force || merge) {
      // dma_map_sg_nonforce: entry by entry, only what the device cannot reach
      const segs: Array<[bigint, number]> = [];
      let ok = true;
      for (const e of ents) {
        let addr = e.phys;
        if (!capable(e)) {
          const page = this.alloc(numPages(e.phys, e.len, 4096), segBoundary);
          if (page === LOCKUP) return 'lockup';
          if (page === -1) {
            this.full++;
            for (const [a, l] of segs) this.unmapPhys(a, l);
            ok = false;
            break;
          }
          addr = GART_BASE + BigInt(page * 4096) + (e.phys & 4095n);
        }
        segs.push([addr, e.len]);
      }
      this.flushGart();
      if (ok) return segs;
    }
    this.full++;
    return null;
  }
}

interface RefPool { start: number; end: number; hint: number }

/** arch/powerpc/kernel/iommu.c over one iommu_table, pool 0 for the one CPU. */
class RefTce {
  readonly map: boolean[];
  readonly nrPools: number;
  readonly pools: RefPool[] = [];
  readonly large: RefPool;
  /** TCE values by absolute entry. */
  readonly tces = new Map<number, bigint>();
  constructor(readonly offset: number, readonly size: number, readonly shift: number, readonly blocksize: number, readonly cpuShift: number) {
    this.map = new Array<boolean>(size).fill(false);
    if (offset === 0) this.map[0] = true;
    this.nrPools = size * 2 ** shift >= 2 ** 30 ? 4 : 1;
    const poolsize = Math.floor(Math.floor(size * 3 / 4) / this.nrPools);
    for (let i = 0; i < this.nrPools; i++) this.pools.push({ start: poolsize * i, hint: poolsize * i, end: poolsize * (i + 1) });
    this.large = { start: poolsize * this.nrPools, hint: poolsize * this.nrPools, end: size };
  }

  get io(): number {
    return 2 ** this.shift;
  }

  rangeAlloc(npages: number, handle: { v: number } | null, mask: bigint, alignOrder: number, boundary: number): number {
    const largealloc = npages > 15;
    const alignMask = 2 ** alignOrder - 1;
    let poolNr = 0;
    let pool = largealloc ? this.large : this.pools[poolNr];
    let pass = 0;
    for (;;) {
      let start = pass === 0 && handle !== null && handle.v !== 0 && handle.v >= pool.start && handle.v < pool.end ? handle.v : pool.hint;
      let limit = pool.end;
      if (start >= limit) start = pool.start;
      if (BigInt(limit + this.offset) > mask) {
        limit = Number(mask - BigInt(this.offset) + 1n);
        if (Number(BigInt(start) & mask) >= limit || pass > 0) {
          pool = this.pools[0];
          start = pool.start;
        } else {
          start = Number(BigInt(start) & mask);
        }
      }
      const n = areaAlloc(this.map, limit, start, npages, this.offset, boundary, alignMask);
      if (n === LOCKUP) return LOCKUP;
      if (n === -1) {
        if (pass === 0) {
          pool.hint = pool.start;
        } else if (pass <= this.nrPools) {
          poolNr = (poolNr + 1) & (this.nrPools - 1);
          pool = this.pools[poolNr];
          pool.hint = pool.start;
        } else if (pass === this.nrPools + 1) {
          pool = this.large;
          pool.hint = pool.start;
        } else {
          return -1;
        }
        pass++;
        continue;
      }
      const end = n + npages;
      pool.hint = largealloc ? end : Math.ceil(end / this.blocksize) * this.blocksize;
      if (handle !== null) handle.v = end;
      return n;
    }
  }

  private align(phys: bigint, size: number): number {
    const page = 2 ** this.cpuShift;
    return this.shift < this.cpuShift && size >= page && phys % BigInt(page) === 0n ? this.cpuShift - this.shift : 0;
  }

  private build(entry: number, npages: number, phys: bigint, dir: number): void {
    const base = (phys >> BigInt(this.shift)) << BigInt(this.shift);
    for (let i = 0; i < npages; i++) this.tces.set(entry + i, (dir === DMA_TO_DEVICE ? 1n : 3n) | (base + BigInt(i * this.io)));
  }

  /** iommu_map_phys: the DMA address, null, or 'lockup'. */
  mapPhys(phys: bigint, size: number, dir: number, mask: bigint, boundary: number): bigint | null | 'lockup' {
    const npages = numPages(phys, size, this.io);
    const n = this.rangeAlloc(npages, null, mask >> BigInt(this.shift), this.align(phys, size), boundary);
    if (n === LOCKUP) return 'lockup';
    if (n === -1) return null;
    this.build(n + this.offset, npages, phys, dir);
    return (BigInt(n + this.offset) << BigInt(this.shift)) | (phys & BigInt(this.io - 1));
  }

  free(addr: bigint, size: number): void {
    const entry = Number(addr >> BigInt(this.shift));
    const n = numPages(addr, size, this.io);
    for (let i = 0; i < n; i++) {
      this.map[entry - this.offset + i] = false;
      this.tces.delete(entry + i);
    }
  }

  /** ppc_iommu_map_sg: the segments, or null (everything mapped so far freed), or 'lockup'. */
  mapSg(ents: ReadonlyArray<{ phys: bigint; len: number }>, dir: number, mask: bigint, boundary: number, maxSeg: number): Array<[bigint, number]> | null | 'lockup' {
    const handle = { v: 0 };
    const out: Array<[bigint, number]> = [[0n, 0]];
    let segstart = 0;
    let dmaNext = 0n;
    for (let i = 0; i < ents.length; i++) {
      const { phys, len } = ents[i];
      if (len === 0) {
        dmaNext = 0n;
        continue;
      }
      const npages = numPages(phys, len, this.io);
      const n = this.rangeAlloc(npages, handle, mask >> BigInt(this.shift), this.align(phys, len), boundary);
      if (n === LOCKUP) return 'lockup';
      if (n === -1) {
        for (const [a, l] of out) if (l !== 0) this.free(a, l);
        return null;
      }
      const dma = (BigInt(n + this.offset) << BigInt(this.shift)) | (phys & BigInt(this.io - 1));
      this.build(n + this.offset, npages, phys, dir);
      if (segstart !== i) {
        const cur = out[out.length - 1];
        if (dma !== dmaNext || cur[1] + len > maxSeg) {
          segstart = i;
          out.push([0n, 0]);
        } else {
          cur[1] += len;
        }
      }
      if (segstart === i) out[out.length - 1] = [dma, len];
      dmaNext = dma + BigInt(len);
    }
    return out;
  }

  hints(): Record<string, number> {
    const h: Record<string, number> = {};
    this.pools.forEach((p, i) => { h[`pool${i}`] = p.hint; });
    h.large = this.large.hint;
    return h;
  }
}

/** RAM above 4 GiB on the ops test machine (6 GiB: [4 GiB, 7 GiB)), beyond a 32-bit mask. */
const HIGH = 0x1_0000_0000n;

type MapOp = { kind: 'map'; page: number; off: number; len: number; dir: number };
type FreeOp = { kind: 'free'; pick: number };
type SgOp = { kind: 'sg'; ents: Array<{ page: number; off: number; len: number }> };

/** A 4 KiB page above 4 GiB; every 16th is 64 KiB aligned (iommu_map_phys aligns those under 64 KiB CPU pages). */
const pageArb = fc.oneof(fc.nat(0x3ffff), fc.nat(0x3fff).map((x) => x * 16));

const mapArb = (maxLen: number): fc.Arbitrary<MapOp> => fc.record({
  kind: fc.constant('map' as const), page: pageArb, off: fc.oneof(fc.constant(0), fc.nat(4095)),
  len: fc.oneof(fc.integer({ min: 1, max: 4096 }), fc.integer({ min: 1, max: maxLen })), dir: fc.constantFrom(DMA_BIDIRECTIONAL, DMA_TO_DEVICE),
});
const freeArb: fc.Arbitrary<FreeOp> = fc.record({ kind: fc.constant('free' as const), pick: fc.nat() });

/** RAM below 4 GiB on the ops test machine ([1 MiB, 3 GiB)), within a 32-bit mask. */
const LOW = 0x1000_0000n;

describe('allocators against references written from the kernel sources', () => {
  it('property: gart_map_sg (iommu_merge, force_iommu, the dma_map_sg_nonforce fallback) gives the reference\'s segments, flushes and bits', () => {
    const entArb = fc.record({
      high: fc.boolean(), page: fc.nat(0x3ffff), off: fc.oneof({ weight: 3, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.nat(4095) }),
      len: fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 1, max: 4 }).map((n) => n * 4096) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 20_000 }) }),
    });
    const opArb = fc.oneof(
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('sg' as const), ents: fc.array(entArb, { minLength: 1, maxLength: 10 }) }) },
      { weight: 1, arbitrary: freeArb },
    );
    fc.assert(fc.property(
      fc.integer({ min: 2, max: 120 }), fc.boolean(), fc.boolean(), fc.boolean(), fc.option(fc.integer({ min: 13, max: 16 }), { nil: undefined }),
      fc.array(opArb, { minLength: 5, maxLength: 40 }),
      (pages, mergeCfg, forceCfg, fullflush, maxSegLg2, ops) => {
        const merge = mergeCfg;
        const force = forceCfg || merge; // iommu=merge sets force_iommu too
        const m = opsMachine({ kind: 'gart', busBase: GART_BASE, pages, merge, force, fullflush });
        const dev = m.device('nic0');
        const maxSeg = maxSegLg2 === undefined ? 65536 : 2 ** maxSegLg2;
        if (maxSegLg2 !== undefined) dev.dmaParms.maxSegmentSize = maxSeg;
        const ref = new RefGart(pages, fullflush);
        const live: Array<{ free: () => void; ref: () => void }> = [];
        for (const op of ops) {
          if (op.kind === 'sg') {
            const ents = op.ents.map((e) => ({ phys: (e.high ? HIGH : LOW) + BigInt(e.page) * 4096n + BigInt(e.off), len: e.len }));
            const sgt = unwrap(sgAllocTable(ents.length));
            ents.forEach((e, i) => sgt.setPage(i, e.phys >> 12n, e.len, Number(e.phys & 4095n)));
            const want = ref.mapSg(ents, force, merge, maxSeg, DMA_BIT_MASK(32));
            if (want === 'lockup') {
              expect(() => dmaMapSgtable(dev, sgt, DMA_BIDIRECTIONAL)).toThrow(KernelBug);
              return;
            }
            const got = dmaMapSgtable(dev, sgt, DMA_BIDIRECTIONAL);
            expect(got.ok ? [...Array(sgt.nents).keys()].map((i) => [sgt.dmaAddressAt(i), sgt.dmaLengthAt(i)]) : got.errno).toEqual(want ?? 'ENOMEM');
            if (want !== null) live.push({ free: () => dmaUnmapSgtable(dev, sgt, DMA_BIDIRECTIONAL), ref: () => { for (const [a, l] of want) ref.unmapPhys(a, l); } });
          } else if (live.length > 0) {
            const l = live.splice(op.pick % live.length, 1)[0];
            l.free();
            l.ref();
          }
          const st = dmaOpsInspect(dev)!;
          expect([st.flushes, st.hints.nextBit, st.allocated]).toEqual([ref.flushes, ref.nextBit, setBits(ref.map)]);
          expect(m.events.list('INFO', 'gart').length).toBe(ref.full);
        }
      }), { numRuns: 150 });
  });

  it('property: GART (force) alloc_iommu / free_iommu / flush_gart give the reference\'s bus addresses, flushes, rotor and bits', () => {
    fc.assert(fc.property(
      fc.integer({ min: 2, max: 300 }), fc.boolean(), fc.option(fc.integer({ min: 15, max: 31 }), { nil: undefined }),
      fc.array(fc.oneof({ weight: 3, arbitrary: mapArb(40_000) }, { weight: 2, arbitrary: freeArb }), { minLength: 10, maxLength: 80 }),
      (pages, fullflush, boundaryBits, ops) => {
        const m = opsMachine({ kind: 'gart', busBase: GART_BASE, pages, force: true, fullflush });
        const dev = m.device('nic0');
        const segBoundary = boundaryBits === undefined ? DMA_BIT_MASK(32) : DMA_BIT_MASK(boundaryBits);
        dmaSetSegBoundary(dev, segBoundary);
        const ref = new RefGart(pages, fullflush);
        const live: Array<[bigint, number, number]> = [];
        for (const op of ops) {
          if (op.kind === 'map') {
            const phys = HIGH + BigInt(op.page) * 4096n + BigInt(op.off);
            const want = ref.mapPhys(phys, op.len, segBoundary);
            if (want === 'lockup') {
              // a run longer than the segment boundary: the kernel spins in iommu_area_alloc
              expect(() => dmaMapPhys(dev, phys, op.len, op.dir)).toThrow(KernelBug);
              return;
            }
            const got = dmaMapPhys(dev, phys, op.len, op.dir);
            expect(got.ok ? got.value : null).toBe(want);
            if (got.ok) live.push([got.value, op.len, op.dir]);
          } else if (live.length > 0) {
            const [a, len, dir] = live.splice(op.pick % live.length, 1)[0];
            dmaUnmapPhys(dev, a, len, dir);
            ref.unmapPhys(a, len);
          }
          const st = dmaOpsInspect(dev)!;
          expect([st.flushes, st.hints.nextBit, st.allocated]).toEqual([ref.flushes, ref.nextBit, setBits(ref.map)]);
        }
      }), { numRuns: 150 });
  });

  it('property: TCE iommu_range_alloc (pools, large pool, hints, mask clamp, boundary) and ppc_iommu_map_sg give the reference\'s addresses, segments, hints and TCEs', () => {
    const cfgArb = fc.record({
      offset: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 4096 })),
      // 16 MiB TCEs make a window of 64 entries or more 1 GiB: iommu_init_table splits it into 4 pools
      size: fc.integer({ min: 8, max: 600 }),
      pageShift: fc.constantFrom(12, 16, 24),
      cpu64k: fc.boolean(),
      blockSize: fc.constantFrom(1, 4, 16),
      maskBits: fc.option(fc.integer({ min: 20, max: 40 }), { nil: undefined }),
      boundaryBits: fc.option(fc.integer({ min: 16, max: 31 }), { nil: undefined }),
      maxSeg: fc.option(fc.integer({ min: 4096, max: 1 << 20 }), { nil: undefined }),
    });
    const sgArb: fc.Arbitrary<SgOp> = fc.record({
      kind: fc.constant('sg' as const),
      ents: fc.array(fc.record({
        page: pageArb, off: fc.oneof(fc.constant(0), fc.nat(4095)),
        len: fc.oneof({ weight: 1, arbitrary: fc.constant(0) }, { weight: 4, arbitrary: fc.constantFrom(4096, 65536) }, { weight: 4, arbitrary: fc.integer({ min: 1, max: 70_000 }) }),
      }), { minLength: 1, maxLength: 8 }),
    });
    fc.assert(fc.property(cfgArb, fc.array(fc.oneof({ weight: 3, arbitrary: mapArb(200_000) }, { weight: 2, arbitrary: freeArb }, { weight: 1, arbitrary: sgArb }), { minLength: 10, maxLength: 60 }),
      (c, ops) => {
        const cpuShift = c.cpu64k ? 16 : 12;
        // dma-debug off: a list that starts with a zero-length entry leaves its TCEs behind an empty
        // first segment, which dma-debug would not let the unmap see either way
        const m = opsMachine({ kind: 'tce', offset: c.offset, size: c.size, pageShift: c.pageShift, blockSize: c.blockSize },
          { dmaDebug: false, ...(c.cpu64k ? { pageSize: 65536 } : {}) });
        const dev = m.device('nic0');
        // a mask dma_iommu_dma_supported accepts: the window must start at or below it
        const mask = c.maskBits === undefined ? DMA_BIT_MASK(32) : DMA_BIT_MASK(c.maskBits);
        if (BigInt(c.offset) > mask >> BigInt(c.pageShift)) return;
        unwrap(dmaSetMask(dev, mask));
        const segBoundary = c.boundaryBits === undefined ? DMA_BIT_MASK(32) : DMA_BIT_MASK(c.boundaryBits);
        dmaSetSegBoundary(dev, segBoundary);
        if (c.maxSeg !== undefined) dev.dmaParms.maxSegmentSize = c.maxSeg;
        const boundary = Number((segBoundary >> BigInt(c.pageShift)) + 1n);
        const ref = new RefTce(c.offset, c.size, c.pageShift, c.blockSize, cpuShift);
        const live: Array<{ free: () => void; ref: () => void }> = [];
        for (const op of ops) {
          if (op.kind === 'map') {
            const phys = HIGH + BigInt(op.page) * 4096n + BigInt(op.off);
            const want = ref.mapPhys(phys, op.len, op.dir, mask, boundary);
            if (want === 'lockup') {
              expect(() => dmaMapPhys(dev, phys, op.len, op.dir)).toThrow(KernelBug);
              return;
            }
            const got = dmaMapPhys(dev, phys, op.len, op.dir);
            expect(got.ok ? got.value : null).toBe(want);
            if (got.ok) {
              const a = got.value;
              live.push({ free: () => dmaUnmapPhys(dev, a, op.len, op.dir), ref: () => ref.free(a, op.len) });
            }
          } else if (op.kind === 'sg') {
            const sgt = unwrap(sgAllocTable(op.ents.length));
            const ents = op.ents.map((e) => ({ phys: HIGH + BigInt(e.page) * 4096n + BigInt(e.off), len: e.len }));
            const cpuMask = BigInt(2 ** cpuShift - 1);
            ents.forEach((e, i) => sgt.setPage(i, e.phys >> BigInt(cpuShift), e.len, Number(e.phys & cpuMask)));
            const want = ref.mapSg(ents, DMA_BIDIRECTIONAL, mask, boundary, c.maxSeg ?? 65536);
            if (want === 'lockup') {
              expect(() => dmaMapSgtable(dev, sgt, DMA_BIDIRECTIONAL)).toThrow(KernelBug);
              return;
            }
            const got = dmaMapSgtable(dev, sgt, DMA_BIDIRECTIONAL);
            const segs = got.ok ? [...Array(sgt.nents).keys()].map((i) => [sgt.dmaAddressAt(i), sgt.dmaLengthAt(i)]) : null;
            if (want !== null && want[0][1] === 0) {
              // the list starts with zero-length entries: sg[0] keeps length 0 (and its old address),
              // and ppc_iommu_unmap_sg stops there, so the unmap frees nothing, in the kernel and here
              expect(segs?.slice(1)).toEqual(want.slice(1));
              expect(segs?.[0][1]).toBe(0);
              live.push({ free: () => dmaUnmapSgtable(dev, sgt, DMA_BIDIRECTIONAL), ref: () => undefined });
            } else {
              expect(segs).toEqual(want);
              if (want !== null) live.push({ free: () => dmaUnmapSgtable(dev, sgt, DMA_BIDIRECTIONAL), ref: () => { for (const [a, l] of want) ref.free(a, l); } });
            }
          } else if (live.length > 0) {
            const l = live.splice(op.pick % live.length, 1)[0];
            l.free();
            l.ref();
          }
          const st = dmaOpsInspect(dev)!;
          expect(st.allocated).toEqual(setBits(ref.map));
          expect(st.hints).toEqual(ref.hints());
          expect(st.entries).toEqual([...ref.tces].sort((a, b) => a[0] - b[0]));
        }
      }), { numRuns: 150 });
  });
});
