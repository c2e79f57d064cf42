import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MiB } from '../../base/index.ts';
import { dmaPhyrsMappings, dmaSetMaxSegSize } from '../../dma/index.ts';
import type { MmapBacking, UserMm } from '../../mm/index.ts';
import { SCATTERLIST_BYTES, SG_APPEND_TABLE_BYTES, SgAppendTable, sgAllocAppendTableFromPages } from '../../phyr/index.ts';
import { makeMachine } from '../../../test/fixtures/dma-b-machines.ts';
import {
  IB_ACCESS_LOCAL_WRITE, IB_ACCESS_REMOTE_READ, IB_ACCESS_REMOTE_WRITE, IB_WC_SUCCESS, ibDeregMr, ibMrMttEntries, ibPostRdmaRead,
  ibPostRdmaWrite, ibRegMr, ibUmemGet, ibUmemRelease, MLX5_IB_MTT_PRESENT, rdmaProbe, rdmaRemove, rdmaUmemForEachDmaBlock, umemSgAppendLayout, type IbMr,
} from './index.ts';
import { umemMap } from '../umem/index.ts';
import { findBestPgszOf } from './umem.ts';

const PAGE = 4096;
const U64 = (1n << 64n) - 1n;

/** Independent reference: try each page size of the bitmap by walking the layout page by page. */
function bruteBestPgsz(segs: Array<{ addr: bigint; len: number }>, pgoff: number, length: number, bitmap: bigint, virt: bigint): number {
  // sizes above the smallest one that already holds the whole range in one block buy nothing
  const lastVa = virt + BigInt(length) - 1n;
  const sizes: bigint[] = [];
  for (let b = 0n; b < 64n; b++) if ((bitmap >> b) & 1n) sizes.push(1n << b);
  // a range across bit 63 fits no block of any size: the kernel's GENMASK(63, 64) (all ones on
  // x86-64 and arm64) then leaves only the smallest size
  const across63 = ((virt ^ lastVa) >> 63n) !== 0n;
  const oneBlock = across63 ? sizes[0] : sizes.find((p) => virt / p === lastVa / p);
  let best = 0n;
  for (const p of sizes) {
    if (oneBlock !== undefined && p > oneBlock) continue;
    // byte t of the registration lies at DMA address d(t); seams are where d jumps
    let ok = true;
    let t = -pgoff; // the first segment starts pgoff bytes before the address
    let prevEnd: bigint | null = null;
    for (const s of segs) {
      if (prevEnd === null || s.addr !== prevEnd) {
        const dma = s.addr + BigInt(Math.max(0, -t));
        const va = virt + BigInt(Math.max(0, t));
        if ((dma - va) % p !== 0n && (va - dma) % p !== 0n) ok = false;
        if (prevEnd !== null && va % p !== 0n) ok = false;
      }
      prevEnd = s.addr + BigInt(s.len);
      t += s.len;
    }
    if (ok && p > best) best = p;
  }
  return Number(best);
}

const layout = fc.record({
  segs: fc.array(fc.record({ contig: fc.boolean(), frame: fc.integer({ min: 1, max: 1 << 22 }), align: fc.constantFrom(0, 9, 18), pages: fc.integer({ min: 1, max: 1100 }) }), { minLength: 1, maxLength: 6 }),
  pgoff: fc.integer({ min: 0, max: PAGE - 1 }),
  tail: fc.integer({ min: 0, max: PAGE - 1 }),
  bits: fc.array(fc.integer({ min: 12, max: 40 }), { maxLength: 8 }),
  virtKind: fc.constantFrom('same', 'shifted', 'random', 'bit63'),
  virtShift: fc.integer({ min: 0, max: 30 }),
  virtRand: fc.bigInt({ min: 0n, max: (1n << 52n) - 1n }),
});

describe('ib_umem_find_best_pgsz: the kernel walk agrees with a brute-force reference', () => {
  it('random DMA layouts, page offsets, IOVAs and bitmaps', () => {
    fc.assert(fc.property(layout, (g) => {
      const segs: Array<{ addr: bigint; len: number }> = [];
      for (const s of g.segs) {
        const prev = segs[segs.length - 1];
        const addr = s.contig && prev !== undefined ? prev.addr + BigInt(prev.len) : BigInt(((s.frame >> s.align) << s.align) * PAGE);
        segs.push({ addr, len: s.pages * PAGE });
      }
      const total = segs.reduce((n, s) => n + s.len, 0);
      const length = total - g.pgoff - g.tail;
      if (length <= 0 || segs[segs.length - 1].len <= g.tail) return;
      const base = segs[0].addr + BigInt(g.pgoff);
      const virt = g.virtKind === 'same' ? base : g.virtKind === 'shifted' ? (base + (1n << BigInt(g.virtShift))) & ((1n << 56n) - 1n)
        // IOVAs just below 2^63 that agree with the DMA address in their low 12..23 bits: most ranges cross bit 63
        : g.virtKind === 'bit63' ? (1n << 63n) - (1n << BigInt(12 + g.virtShift % 12)) + (base & ((1n << BigInt(12 + g.virtShift % 12)) - 1n))
          : g.virtRand;
      let bitmap = 0n;
      for (const b of g.bits) bitmap |= 1n << BigInt(b);
      const view = { count: segs.length, addrAt: (i: number) => segs[i].addr, lenAt: (i: number) => segs[i].len };
      expect(findBestPgszOf(view, g.pgoff, length, bitmap & U64, virt)).toBe(bruteBestPgsz(segs, g.pgoff, length, bitmap, virt));
    }), { numRuns: 3000 });
  });
});

/** The kernel's build, for real: ib_umem_get's batches of PAGE_SIZE / 8 pages appended with the pages left. */
function buildAppendTable(pfns: Float64Array, pageSize: number, maxSeg: number): SgAppendTable {
  const append = new SgAppendTable({ pageSize });
  const batch = pageSize / 8;
  for (let b = 0; b < pfns.length; b += batch) {
    const e = Math.min(pfns.length, b + batch);
    const r = sgAllocAppendTableFromPages(append, pfns.subarray(b, e), 0, (e - b) * pageSize, maxSeg, pfns.length - e, { pageSize });
    if (!r.ok) throw new Error(r.errno);
  }
  return append;
}

describe('umemSgAppendLayout: the sg_append_table ib_umem_get builds, against building it', () => {
  it('random runs, page sizes and max segment sizes: the same entries and the same slots allocated', () => {
    fc.assert(fc.property(
      fc.array(fc.integer({ min: 1, max: 1500 }), { minLength: 1, maxLength: 12 }),
      fc.constantFrom(4096, 16384),
      fc.oneof(fc.integer({ min: 1, max: 9 }), fc.constant(2 ** 19)),
      (runs, pageSize, maxPages) => {
        const total = runs.reduce((a, b) => a + b, 0);
        const pfns = new Float64Array(total);
        let k = 0;
        // each run at its own frame, never contiguous with the one before
        runs.forEach((r, i) => { for (let j = 0; j < r; j++) pfns[k++] = (i + 1) * 2 ** 20 + j; });
        const maxSeg = Math.min(0xffffffff, maxPages * pageSize + (maxPages % 3) * 100);
        const append = buildAppendTable(pfns, pageSize, maxSeg);
        const l = umemSgAppendLayout(runs, pageSize, maxSeg);
        expect(l.nents).toBe(append.sgt.origNents);
        expect(SG_APPEND_TABLE_BYTES + SCATTERLIST_BYTES * l.slots).toBe(append.kernelBytes);
      },
    ), { numRuns: 300 });
  });

  it('IbUmem.kernelSgtBytes of anon, THP and hugetlb registrations is the table built over its pinned pages', () => {
    const m = makeMachine('none', 3, { hugetlb: { '2M': 16 } });
    const nic = rdmaProbe(m.device('nic0'));
    if (!nic.ok) throw new Error(nic.errno);
    const mm = m.newProcess();
    for (const [backing, maxSeg] of [['anon', 2 ** 31], ['thp', 2 ** 31], ['hugetlb-2M', 2 ** 31], ['hugetlb-2M', 64 * 1024]] as const) {
      dmaSetMaxSegSize(nic.value.dev, maxSeg);
      const va = mm.mmap({ len: 8 * MiB, backing, populate: true });
      if (!va.ok) throw new Error(va.errno);
      const u = ibUmemGet(nic.value, mm, va.value + 0x800n, 8 * MiB - 0x1000, IB_ACCESS_LOCAL_WRITE);
      if (!u.ok) throw new Error(u.errno);
      const pfns = new Float64Array(u.value.nrPages);
      let k = 0;
      for (let i = 0; i < u.value.pinned.count; i++) {
        for (let off = 0; off < u.value.pinned.lenAt(i); off += PAGE) pfns[k++] = Number((u.value.pinned.addrAt(i) + BigInt(off)) / BigInt(PAGE));
      }
      const append = buildAppendTable(pfns, PAGE, maxSeg);
      expect([u.value.kernelSgNents, u.value.kernelSgtBytes]).toEqual([append.sgt.origNents, append.kernelBytes]);
      // and drivers/umem's scatterlist design built as ib_umem_get builds it (what `phyr rdma` reports)
      const built = umemMap(nic.value.dev, mm, va.value + 0x800n, 8 * MiB - 0x1000, 'sgtable', { ibUmemBatches: true });
      if (!built.ok) throw new Error(built.errno);
      expect(built.value.metadataBytes - u.value.kernelPageArrayBytes).toBe(u.value.kernelSgtBytes);
      built.value.unmap();
      ibUmemRelease(u.value);
    }
    expect(rdmaRemove(nic.value).ok).toBe(true);
    expect(m.teardown()).toBe(0);
  });
});

/** Index of the first differing byte, or -1 (toEqual on megabytes is slow). */
function firstDiff(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

const BACKINGS: MmapBacking[] = ['anon', 'thp', 'hugetlb-2M'];

describe('random registrations and RDMA operations', () => {
  it('move exactly the right bytes (the CPU checks both sides), and leave nothing pinned or mapped after deregistration', () => {
    fc.assert(fc.property(
      fc.constantFrom('strict', 'none'),
      fc.array(fc.record({ backing: fc.constantFrom(...BACKINGS), off: fc.integer({ min: 0, max: 3 * PAGE }), len: fc.integer({ min: 1, max: MiB + 5000 }), iovaHi: fc.integer({ min: 0, max: 1 << 20 }) }), { minLength: 2, maxLength: 3 }),
      fc.array(fc.record({ read: fc.boolean(), a: fc.nat(), b: fc.nat(), la: fc.nat(), lb: fc.nat(), len: fc.integer({ min: 0, max: 300000 }), oob: fc.integer({ min: 0, max: 9 }) }), { minLength: 1, maxLength: 8 }),
      (mode, regs, ops) => {
        const m = makeMachine(mode as 'strict' | 'none', 3, { hugetlb: { '2M': 16 } });
        const nicR = rdmaProbe(m.device('nic0'));
        if (!nicR.ok) throw new Error(nicR.errno);
        const nic = nicR.value;
        const mm: UserMm = m.newProcess();
        const mrs: IbMr[] = [];
        const shadow: Uint8Array[] = [];
        const vas: bigint[] = [];
        let seed = 1;
        for (const r of regs) {
          const len = Math.max(1, Math.min(r.len, 4 * MiB - r.off));
          const map = mm.mmap({ len: 4 * MiB, backing: r.backing, populate: true });
          if (!map.ok) throw new Error(map.errno);
          const va = map.value + BigInt(r.off);
          const bytes = new Uint8Array(len).map(() => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24);
          expect(mm.writeUser(va, bytes).ok).toBe(true);
          const u = ibUmemGet(nic, mm, va, len, IB_ACCESS_LOCAL_WRITE | IB_ACCESS_REMOTE_WRITE | IB_ACCESS_REMOTE_READ);
          if (!u.ok) throw new Error(`${u.errno} ${u.message}`);
          const iova = (BigInt(r.iovaHi) << 21n) | (va & 0xfffn);
          const mr = ibRegMr(nic, u.value, iova);
          if (!mr.ok) throw new Error(`${mr.errno} ${mr.message}`);
          // the MTT decodes to the umem's DMA blocks
          const blocks: bigint[] = [];
          rdmaUmemForEachDmaBlock(u.value, mr.value.pageLen, (x) => blocks.push(x | BigInt(MLX5_IB_MTT_PRESENT)));
          expect(ibMrMttEntries(mr.value)).toEqual(blocks);
          mrs.push(mr.value);
          shadow.push(bytes);
          vas.push(va);
        }
        for (const op of ops) {
          const A = mrs[op.a % mrs.length], B = mrs[op.b % mrs.length];
          const sa = shadow[op.a % mrs.length], sb = shadow[op.b % mrs.length];
          let len = Math.min(op.len, A.length, B.length);
          const la = op.la % (A.length - len + 1), lb = op.lb % (B.length - len + 1);
          const oob = op.oob === 0; // one op in ten runs past the remote MR's end
          if (oob) len = B.length - lb + 1;
          const wr = { lkey: A.lkey, laddr: A.iova + BigInt(la), rkey: B.rkey, raddr: B.iova + BigInt(lb), len };
          if (oob && len > A.length - la) continue;
          const wc = op.read ? ibPostRdmaRead(nic, wr) : ibPostRdmaWrite(nic, wr);
          if (!wc.ok) throw new Error(wc.errno);
          if (oob) {
            expect(wc.value.status).not.toBe(IB_WC_SUCCESS);
          } else {
            expect(wc.value).toEqual({ status: IB_WC_SUCCESS, byteLen: len });
            if (op.read) sa.set(sb.slice(lb, lb + len), la);
            else sb.set(sa.slice(la, la + len), lb);
          }
          for (let i = 0; i < mrs.length; i++) {
            const got = mm.readUser(vas[i], shadow[i].length);
            expect(got.ok && firstDiff(got.value, shadow[i])).toBe(-1);
          }
        }
        for (const mr of mrs) {
          expect(ibDeregMr(nic, mr).ok).toBe(true);
          ibUmemRelease(mr.umem!);
        }
        expect(m.listPins()).toEqual([]);
        expect(dmaPhyrsMappings(nic.dev)).toEqual([]);
        expect(rdmaRemove(nic).ok).toBe(true);
        expect(m.stats.iommuLeafPtesWritten - m.stats.iommuLeafPtesCleared).toBe(0);
        expect(m.teardown()).toBe(0);
      },
    ), { numRuns: 10, endOnFailure: true });
  });
});
