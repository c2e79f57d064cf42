import { describe, expect, it } from 'vitest';
import { MiB, ok, unwrap } from '../../base/index.ts';
import { dmaContextOf, dmaGetMask, dmaGetMaxSegSize, dmaPhyrsMappings, DMA_BIT_MASK } from '../../dma/index.ts';
import { DmaList, PhyrList, sgAllocTable } from '../../phyr/index.ts';
import { dmaBufExport, dmaBufPut } from '../dmabuf/index.ts';
import type { Machine } from '../../machine/index.ts';
import type { UserMm } from '../../mm/index.ts';
import { makeMachine, pattern, PCI_NODES } from '../../../test/fixtures/dma-b-machines.ts';
import {
  IB_ACCESS_FLUSH_GLOBAL, IB_ACCESS_LOCAL_WRITE, IB_ACCESS_ON_DEMAND, IB_ACCESS_REMOTE_READ, IB_ACCESS_REMOTE_WRITE, IB_WC_LOC_LEN_ERR, IB_WC_LOC_PROT_ERR,
  IB_WC_REM_ACCESS_ERR, IB_WC_REM_INV_REQ_ERR, IB_WC_RNR_RETRY_EXC_ERR, IB_WC_SUCCESS, MLX5_IB_MTT_PRESENT, MLX5_IB_MTT_READ,
  MLX5_IB_MTT_WRITE, RDMA_DEFAULT_PGSZ_BITMAP, ibDeregMr, ibMrMttEntries, ibMrUpdateMtt, ibMrZapMtt, ibPostRdmaRead, ibPostRdmaWrite,
  ibPostRecv, ibPostSend, ibRegMr, ibRegOdpMr, ibUmemFindBestPgsz, ibUmemGet, ibUmemNumDmaBlocks, ibUmemRelease, ibWcStatusMsg,
  rdmaProbe, rdmaRemove, rdmaUmemForEachDmaBlock, type IbDevice, type IbMr,
} from './index.ts';
import { ibDeregDmabufMr, ibRegDmabufMr } from './umem-dmabuf.ts';

const RW = IB_ACCESS_LOCAL_WRITE | IB_ACCESS_REMOTE_WRITE | IB_ACCESS_REMOTE_READ;
const PAGE = 4096;

function setup(mode: 'strict' | 'none' = 'strict', nicName = 'nic0'): { m: Machine; nic: IbDevice; mm: UserMm } {
  const m = makeMachine(mode, 1, { hugetlb: { '2M': 8 } });
  const nic = rdmaProbe(m.device(nicName));
  if (!nic.ok) throw new Error(nic.errno);
  return { m, nic: nic.value, mm: m.newProcess() };
}

function mmap(mm: UserMm, len: number, backing: Parameters<UserMm['mmap']>[0]['backing'] = 'anon', prot: 'r' | 'rw' = 'rw'): bigint {
  const va = mm.mmap({ len, backing, populate: true, prot });
  if (!va.ok) throw new Error(va.errno);
  return va.value;
}

function reg(nic: IbDevice, mm: UserMm, va: bigint, len: number, access = RW): IbMr {
  const u = ibUmemGet(nic, mm, va, len, access);
  if (!u.ok) throw new Error(`${u.errno} ${u.message}`);
  const mr = ibRegMr(nic, u.value, va);
  if (!mr.ok) throw new Error(`${mr.errno} ${mr.message}`);
  return mr.value;
}

function release(nic: IbDevice, mr: IbMr): void {
  expect(ibDeregMr(nic, mr).ok).toBe(true);
  ibUmemRelease(mr.umem!);
}

function clean(m: Machine, nic: IbDevice): void {
  expect(m.listPins()).toEqual([]);
  expect(dmaPhyrsMappings(nic.dev)).toEqual([]);
  expect(nic.mttPool.nrActive).toBe(0);
  expect(nic.nic.mkeyCount).toBe(0);
  expect(rdmaRemove(nic).ok).toBe(true);
  expect(m.stats.iommuLeafPtesWritten - m.stats.iommuLeafPtesCleared).toBe(0);
  expect(m.teardown()).toBe(0);
}

describe('rdmaProbe', () => {
  it('sets the DMA parameters of mlx5 set_dma_caps(): 64-bit mask, 2 GiB max segment; default pgsz bitmap GENMASK(31, 12)', () => {
    const { m, nic } = setup();
    expect(dmaGetMask(m.device('nic0'))).toBe(DMA_BIT_MASK(64));
    expect(dmaGetMaxSegSize(m.device('nic0'))).toBe(2 * 1024 * MiB);
    expect(nic.pgszBitmap).toBe(RDMA_DEFAULT_PGSZ_BITMAP);
    expect(RDMA_DEFAULT_PGSZ_BITMAP).toBe(((1n << 32n) - 1n) & ~0xfffn);
    expect(rdmaProbe(m.device('nic0')).ok && rdmaProbe(m.device('nic0'))).toEqual({ ok: true, value: nic });
    expect(() => rdmaProbe(m.device('nvme0'), { pgszBitmap: 0x800n })).toThrow(/pgszBitmap/);
  });
});

describe('ib_umem_find_best_pgsz (hand-traced kernel examples)', () => {
  it('a 2 MiB hugetlb page registered at a 2 MiB-aligned IOVA: GENMASK(63, bits_per(0x1fffff)=21) caps it at 2 MiB -> 2 MiB', () => {
    const { m, nic, mm } = setup('none');
    const va = mmap(mm, 2 * MiB, 'hugetlb-2M');
    const u = ibUmemGet(nic, mm, va, 2 * MiB, RW);
    if (!u.ok) throw new Error(u.errno);
    expect(ibUmemFindBestPgsz(u.value, RDMA_DEFAULT_PGSZ_BITMAP, 0x200000n)).toBe(2 * MiB);
    expect(u.value.iova).toBe(0x200000n);
    // IOVA 0x201000: the DMA start ^ va has bit 12 set -> ctz(mask) = 12 -> 4 KiB
    expect(ibUmemFindBestPgsz(u.value, RDMA_DEFAULT_PGSZ_BITMAP, 0x201000n)).toBe(PAGE);
    // IOVA 0x200800: a 2 KiB offset no page size in the bitmap can carry -> 0
    expect(ibUmemFindBestPgsz(u.value, RDMA_DEFAULT_PGSZ_BITMAP, 0x200800n)).toBe(0);
    // the call: bitmap 0x1ff000 (4 KiB .. 1 MiB) at 0x10000: ctz(mask) = 16 from the IOVA -> 64 KiB
    expect(ibUmemFindBestPgsz(u.value, 0x1ff000n, 0x10000n)).toBe(64 * 1024);
    ibUmemRelease(u.value);
    clean(m, nic);
  });

  it('the first 8 KiB of a hugetlb page at IOVA 0: bits_per(0x1fff) = 13 keeps 8 KiB in the bitmap as the cap -> 8 KiB; 1 byte -> the smallest size', () => {
    const { m, nic, mm } = setup('none');
    const va = mmap(mm, 2 * MiB, 'hugetlb-2M');
    const u = ibUmemGet(nic, mm, va, 8192, RW);
    if (!u.ok) throw new Error(u.errno);
    expect(ibUmemFindBestPgsz(u.value, RDMA_DEFAULT_PGSZ_BITMAP, 0n)).toBe(8192);
    expect(ibUmemNumDmaBlocks(u.value, 8192)).toBe(1);
    ibUmemRelease(u.value);
    const one = ibUmemGet(nic, mm, va, 1, RW);
    if (!one.ok) throw new Error(one.errno);
    expect(ibUmemFindBestPgsz(one.value, RDMA_DEFAULT_PGSZ_BITMAP, 0n)).toBe(PAGE);
    ibUmemRelease(one.value);
    clean(m, nic);
  });

  it('an IOVA range across bit 63: bits_per(...) = 64 and GENMASK(63, 64) is all ones on x86-64 (the shift count is taken modulo 64) -> the smallest size', () => {
    const { m, nic, mm } = setup('none');
    const va = mmap(mm, 2 * MiB, 'hugetlb-2M');
    const u = ibUmemGet(nic, mm, va + 0xff000n, 0x2000, RW);
    if (!u.ok) throw new Error(u.errno);
    // across bit 62 the same layout (the DMA address and the IOVA agree below bit 20) takes 1 MiB pages
    expect(ibUmemFindBestPgsz(u.value, RDMA_DEFAULT_PGSZ_BITMAP, (1n << 62n) - 0x1000n)).toBe(MiB);
    expect(ibUmemFindBestPgsz(u.value, RDMA_DEFAULT_PGSZ_BITMAP, (1n << 63n) - 0x1000n)).toBe(PAGE);
    ibUmemRelease(u.value);
    clean(m, nic);
  });
});

describe('ibRegMr: mkey and MTT', () => {
  it.each(['none', 'strict'] as const)('MTT bytes (big-endian, | MLX5_IB_MTT_PRESENT) decode back to the umem DMA blocks; every byte translates to its DMA address (%s)', (mode) => {
    const { m, nic, mm } = setup(mode);
    const len = 96 * PAGE;
    const va = mmap(mm, len);
    const mr = reg(nic, mm, va + 0x300n, len - 0x300);
    const u = mr.umem!;
    const blocks: bigint[] = [];
    rdmaUmemForEachDmaBlock(u, mr.pageLen, (a) => blocks.push(a));
    expect(blocks.length).toBe(mr.mttCount);
    expect(mr.mttCount).toBe(ibUmemNumDmaBlocks(u, mr.pageLen));
    expect(ibMrMttEntries(mr)).toEqual(blocks.map((b) => b | BigInt(MLX5_IB_MTT_PRESENT)));
    // translate byte offsets through the MTT and through the DMA list: the same address
    const dma = u.dma;
    for (const t of [0, 1, 4095, 4096, 12345, len - 0x301]) {
      const iova = mr.iova + BigInt(t);
      const idx = Number((iova >> BigInt(Math.log2(mr.pageLen))) - (mr.iova >> BigInt(Math.log2(mr.pageLen))));
      const viaMtt = blocks[idx] + (iova & BigInt(mr.pageLen - 1));
      let pos = t + 0x300;
      let i = 0;
      while (pos >= dma.lenAt(i)) { pos -= dma.lenAt(i); i++; }
      expect(viaMtt).toBe(dma.addrAt(i) + BigInt(pos));
    }
    release(nic, mr);
    clean(m, nic);
  });

  it('a 2 MiB hugetlb buffer at a matching IOVA is one 2 MiB MTT entry; the same buffer at an IOVA off by 4 KiB is 512 entries', () => {
    const { m, nic, mm } = setup('none');
    const va = mmap(mm, 2 * MiB, 'hugetlb-2M');
    const mr = reg(nic, mm, va, 2 * MiB);
    expect([mr.pageLen, mr.mttCount, mr.mttBytes]).toEqual([2 * MiB, 1, 8]);
    expect(ibDeregMr(nic, mr).ok).toBe(true);
    const mr2 = ibRegMr(nic, mr.umem!, va + 0x1000n);
    if (!mr2.ok) throw new Error(mr2.errno);
    expect([mr2.value.pageLen, mr2.value.mttCount]).toEqual([PAGE, 512]);
    release(nic, mr2.value);
    clean(m, nic);
  });
});

describe('the NIC: RDMA WRITE, READ, SEND/RECV', () => {
  it('moves the bytes both ways; the CPU sees them on both sides', () => {
    const { m, nic, mm } = setup();
    const a = mmap(mm, 64 * PAGE);
    const b = mmap(mm, 2 * MiB, 'hugetlb-2M');
    const ma = reg(nic, mm, a, 64 * PAGE);
    const mb = reg(nic, mm, b, 2 * MiB);
    const src = pattern(40000, 7);
    expect(mm.writeUser(a + 100n, src).ok).toBe(true);
    const w = ibPostRdmaWrite(nic, { lkey: ma.lkey, laddr: a + 100n, rkey: mb.rkey, raddr: b + 5000n, len: src.length });
    expect(w.ok && w.value).toEqual({ status: IB_WC_SUCCESS, byteLen: src.length });
    const got = mm.readUser(b + 5000n, src.length);
    expect(got.ok && got.value).toEqual(src);
    const r = ibPostRdmaRead(nic, { lkey: ma.lkey, laddr: a + 200000n, rkey: mb.rkey, raddr: b + 5000n, len: src.length });
    expect(r.ok && r.value.status).toBe(IB_WC_SUCCESS);
    const back = mm.readUser(a + 200000n, src.length);
    expect(back.ok && back.value).toEqual(src);
    // SEND into a posted RECV
    expect(ibPostRecv(nic, { lkey: mb.lkey, addr: b + 1000000n, len: 4096 }).ok).toBe(true);
    const s = ibPostSend(nic, { lkey: ma.lkey, addr: a + 100n, len: 3000 });
    expect(s.ok && s.value).toEqual({ status: IB_WC_SUCCESS, byteLen: 3000, recv: { status: IB_WC_SUCCESS, byteLen: 3000 } });
    const rcv = mm.readUser(b + 1000000n, 3000);
    expect(rcv.ok && rcv.value).toEqual(src.subarray(0, 3000));
    release(nic, ma);
    release(nic, mb);
    clean(m, nic);
  });

  it('errors complete with the IB status and move nothing: bad rkey, out of bounds, no REMOTE_WRITE, bad lkey, no LOCAL_WRITE for a READ', () => {
    const { m, nic, mm } = setup();
    const a = mmap(mm, 16 * PAGE);
    const b = mmap(mm, 16 * PAGE);
    const ma = reg(nic, mm, a, 16 * PAGE);
    const mro = reg(nic, mm, b, 16 * PAGE, IB_ACCESS_REMOTE_READ); // remote read only, no local write
    expect(mm.writeUser(a, pattern(16 * PAGE, 1)).ok).toBe(true);
    const before = mm.readUser(b, 16 * PAGE);
    const bytes0 = m.stats.rdmaNicBytes;
    const cases: Array<[string, () => ReturnType<typeof ibPostRdmaWrite>, string]> = [
      ['bad rkey', () => ibPostRdmaWrite(nic, { lkey: ma.lkey, laddr: a, rkey: mro.rkey ^ 0x100, raddr: b, len: 64 }), IB_WC_REM_ACCESS_ERR],
      ['rkey variant byte wrong', () => ibPostRdmaWrite(nic, { lkey: ma.lkey, laddr: a, rkey: mro.rkey ^ 1, raddr: b, len: 64 }), IB_WC_REM_ACCESS_ERR],
      ['past the end', () => ibPostRdmaWrite(nic, { lkey: ma.lkey, laddr: a, rkey: ma.rkey, raddr: a + BigInt(16 * PAGE - 10), len: 64 }), IB_WC_REM_ACCESS_ERR],
      ['before the start', () => ibPostRdmaWrite(nic, { lkey: ma.lkey, laddr: a, rkey: ma.rkey, raddr: a - 1n, len: 64 }), IB_WC_REM_ACCESS_ERR],
      ['no REMOTE_WRITE', () => ibPostRdmaWrite(nic, { lkey: ma.lkey, laddr: a, rkey: mro.rkey, raddr: b, len: 64 }), IB_WC_REM_ACCESS_ERR],
      ['bad lkey', () => ibPostRdmaWrite(nic, { lkey: 0x12345, laddr: a, rkey: ma.rkey, raddr: a + 8192n, len: 64 }), IB_WC_LOC_PROT_ERR],
      ['local out of bounds', () => ibPostRdmaWrite(nic, { lkey: ma.lkey, laddr: a + BigInt(16 * PAGE), rkey: ma.rkey, raddr: a, len: 1 }), IB_WC_LOC_PROT_ERR],
      ['READ into an MR without LOCAL_WRITE', () => ibPostRdmaRead(nic, { lkey: mro.lkey, laddr: b, rkey: ma.rkey, raddr: a, len: 64 }), IB_WC_LOC_PROT_ERR],
    ];
    for (const [what, run, status] of cases) {
      const r = run();
      expect(r.ok && r.value, what).toEqual({ status, byteLen: 0 });
    }
    expect(m.stats.rdmaNicBytes).toBe(bytes0);
    expect(mm.readUser(b, 16 * PAGE)).toEqual(before);
    expect(ibWcStatusMsg(IB_WC_REM_ACCESS_ERR)).toBe('remote access error');
    release(nic, ma);
    release(nic, mro);
    clean(m, nic);
  });

  it('SEND: no RECV -> RNR retry exceeded; a RECV too small -> LOC_LEN_ERR at the receiver, REM_INV_REQ_ERR at the sender; nothing moved', () => {
    const { m, nic, mm } = setup();
    const a = mmap(mm, 4 * PAGE);
    const ma = reg(nic, mm, a, 4 * PAGE);
    expect(mm.writeUser(a, pattern(4 * PAGE, 2)).ok).toBe(true);
    const s0 = ibPostSend(nic, { lkey: ma.lkey, addr: a, len: 100 });
    expect(s0.ok && s0.value).toEqual({ status: IB_WC_RNR_RETRY_EXC_ERR, byteLen: 0, recv: null });
    expect(ibPostRecv(nic, { lkey: ma.lkey, addr: a + 8192n, len: 50 }).ok).toBe(true);
    const before = mm.readUser(a, 4 * PAGE);
    const s1 = ibPostSend(nic, { lkey: ma.lkey, addr: a, len: 100 });
    expect(s1.ok && s1.value).toEqual({ status: IB_WC_REM_INV_REQ_ERR, byteLen: 0, recv: { status: IB_WC_LOC_LEN_ERR, byteLen: 0 } });
    expect(mm.readUser(a, 4 * PAGE)).toEqual(before);
    expect(nic.nic.recvQueued).toBe(0);
    release(nic, ma);
    clean(m, nic);
  });
});

describe('bad input', () => {
  it('zero length is EINVAL; a wrapping range EINVAL; ON_DEMAND through ib_umem_get EOPNOTSUPP; nothing pinned', () => {
    const { m, nic, mm } = setup();
    const va = mmap(mm, 4 * PAGE);
    expect(ibUmemGet(nic, mm, va, 0, RW)).toMatchObject({ ok: false, errno: 'EINVAL' });
    expect(ibUmemGet(nic, mm, (1n << 64n) - 4096n, 8192, RW)).toMatchObject({ ok: false, errno: 'EINVAL' });
    expect(ibUmemGet(nic, mm, va, 4096, RW | IB_ACCESS_ON_DEMAND)).toMatchObject({ ok: false, errno: 'EOPNOTSUPP' });
    // the kernel's order: the overflow check comes before the ON_DEMAND one, the page count after it
    expect(ibUmemGet(nic, mm, (1n << 64n) - 4096n, 8192, RW | IB_ACCESS_ON_DEMAND)).toMatchObject({ ok: false, errno: 'EINVAL' });
    expect(ibUmemGet(nic, mm, va, 0, RW | IB_ACCESS_ON_DEMAND)).toMatchObject({ ok: false, errno: 'EOPNOTSUPP' });
    expect(m.listPins()).toEqual([]);
    clean(m, nic);
  });

  it('ib_umem_get counts pages from the address (ib_umem_num_pages): size 0 inside a page pins that page and registers; more than UINT_MAX pages is EINVAL before any pin', () => {
    const { m, nic, mm } = setup();
    const va = mmap(mm, 4 * PAGE);
    const u = ibUmemGet(nic, mm, va + 0x10n, 0, RW);
    if (!u.ok) throw new Error(`${u.errno} ${u.message}`);
    expect([u.value.nrPages, u.value.length]).toEqual([1, 0]);
    const mr = ibRegMr(nic, u.value, va + 0x10n);
    if (!mr.ok) throw new Error(`${mr.errno} ${mr.message}`);
    expect([mr.value.length, mr.value.pageLen, mr.value.mttCount]).toEqual([0, PAGE, 1]);
    release(nic, mr.value);
    const calls = m.stats.gupPinCalls;
    // 2^32 pages: npages > UINT_MAX, refused before pin_user_pages_fast is called (the range is not even mapped)
    expect(ibUmemGet(nic, mm, va, 2 ** 32 * PAGE, RW)).toMatchObject({ ok: false, errno: 'EINVAL' });
    expect(m.stats.gupPinCalls).toBe(calls);
    clean(m, nic);
  });

  it('ib_reg_mr checks the page offsets before the access flags (ib_uverbs_reg_mr): a flush flag at a bad IOVA is EINVAL, at a good one EOPNOTSUPP', () => {
    const { m, nic, mm } = setup();
    const va = mmap(mm, 4 * PAGE);
    const u = ibUmemGet(nic, mm, va, 2 * PAGE, RW);
    if (!u.ok) throw new Error(u.errno);
    expect(ibRegMr(nic, u.value, 0x10123n, RW | IB_ACCESS_FLUSH_GLOBAL)).toMatchObject({ ok: false, errno: 'EINVAL' });
    expect(ibRegMr(nic, u.value, 0x10000n, RW | IB_ACCESS_FLUSH_GLOBAL)).toMatchObject({ ok: false, errno: 'EOPNOTSUPP' });
    ibUmemRelease(u.value);
    clean(m, nic);
  });

  it('no HW page size fits: EINVAL with alloc_cacheable_mr\'s WARN_ON(!page_size), nothing allocated', () => {
    const m = makeMachine('none', 1, { hugetlb: { '2M': 8 } });
    const p = rdmaProbe(m.device('nic0'), { pgszBitmap: 1n << 21n });
    if (!p.ok) throw new Error(p.errno);
    const nic = p.value;
    const mm = m.newProcess();
    const va = mmap(mm, 4 * PAGE);
    const u = ibUmemGet(nic, mm, va, 2 * PAGE, RW);
    if (!u.ok) throw new Error(u.errno);
    const warns = m.events.count('WARN');
    expect(ibRegMr(nic, u.value, va)).toMatchObject({ ok: false, errno: 'EINVAL' });
    expect(m.events.count('WARN')).toBe(warns + 1);
    ibUmemRelease(u.value);
    clean(m, nic);
  });

  it('ib_umem_get maps with DMA_ATTR_REQUIRE_COHERENT: a non-coherent NIC, or one whose pages would bounce, cannot register', () => {
    const pci = PCI_NODES.map((n) => (n.name === 'nic0' ? { ...n, coherent: false } : n));
    for (const [mode, extra, name] of [
      ['none', { pci }, 'nic0'], // non-coherent: the map would need cache maintenance
      ['none', { swiotlb: { bytes: 4 * MiB, force: true } }, 'nic0'], // swiotlb=force: every page would bounce
    ] as const) {
      const m = makeMachine(mode, 1, extra);
      const nic = rdmaProbe(m.device(name));
      if (!nic.ok) throw new Error(nic.errno);
      const mm = m.newProcess();
      const va = mmap(mm, 4 * PAGE);
      const u = ibUmemGet(nic.value, mm, va + 0x100n, 2 * PAGE, RW);
      expect(u.ok).toBe(false);
      expect(m.listPins()).toEqual([]);
      expect(dmaPhyrsMappings(m.device(name))).toEqual([]);
    }
  });

  it('an unaligned buffer registers whole pages; an IOVA whose page offset differs from the address is EINVAL (ib_uverbs_reg_mr)', () => {
    const { m, nic, mm } = setup();
    const va = mmap(mm, 4 * PAGE);
    const u = ibUmemGet(nic, mm, va + 0x123n, 5000, RW);
    if (!u.ok) throw new Error(u.errno);
    expect(u.value.nrPages).toBe(2);
    expect(ibRegMr(nic, u.value, 0x10000n)).toMatchObject({ ok: false, errno: 'EINVAL' });
    expect(nic.mttPool.nrActive).toBe(0);
    const mr = ibRegMr(nic, u.value, 0x10123n);
    if (!mr.ok) throw new Error(mr.errno);
    const src = pattern(5000, 9);
    expect(mm.writeUser(va + 0x123n, src).ok).toBe(true);
    const r = ibPostRdmaRead(nic, { lkey: mr.value.lkey, laddr: 0x10123n + 4000n, rkey: mr.value.rkey, raddr: 0x10123n, len: 1000 });
    expect(r.ok && r.value.status).toBe(IB_WC_SUCCESS);
    const got = mm.readUser(va + 0x123n + 4000n, 1000);
    expect(got.ok && got.value).toEqual(src.subarray(0, 1000));
    release(nic, mr.value);
    clean(m, nic);
  });

  it('write access to a read-only mapping: ib_umem_get fails EFAULT (FOLL_WRITE); a read-only umem refuses a writable MR (EACCES)', () => {
    const { m, nic, mm } = setup();
    const va = mmap(mm, 4 * PAGE, 'anon', 'r');
    expect(ibUmemGet(nic, mm, va, 4 * PAGE, IB_ACCESS_LOCAL_WRITE)).toMatchObject({ ok: false, errno: 'EFAULT' });
    expect(m.listPins()).toEqual([]);
    const ro = ibUmemGet(nic, mm, va, 4 * PAGE, IB_ACCESS_REMOTE_READ);
    if (!ro.ok) throw new Error(ro.errno);
    expect(ibRegMr(nic, ro.value, va, RW)).toMatchObject({ ok: false, errno: 'EACCES' });
    expect(ibRegMr(nic, ro.value, va, IB_ACCESS_REMOTE_WRITE)).toMatchObject({ ok: false, errno: 'EINVAL' }); // remote write without local write
    ibUmemRelease(ro.value);
    clean(m, nic);
  });

  it('device memory: EREMOTEIO without P2P pinning; with it, a NIC that cannot reach the BAR fails EREMOTEIO with nothing pinned; one that can writes into the BAR', () => {
    const { m, nic, mm } = setup();
    const bar = mmap(mm, MiB, { device: 'gpu0.bar0' });
    expect(ibUmemGet(nic, mm, bar, MiB, RW)).toMatchObject({ ok: false, errno: 'EREMOTEIO' });
    const far = rdmaProbe(m.device('far0'));
    if (!far.ok) throw new Error(far.errno);
    expect(ibUmemGet(far.value, mm, bar, MiB, RW, { p2p: true })).toMatchObject({ ok: false, errno: 'EREMOTEIO' });
    expect(m.listPins()).toEqual([]);
    const u = ibUmemGet(nic, mm, bar, MiB, RW, { p2p: true });
    if (!u.ok) throw new Error(`${u.errno} ${u.message}`);
    const mr = ibRegMr(nic, u.value, bar);
    if (!mr.ok) throw new Error(mr.errno);
    const a = mmap(mm, 4 * PAGE);
    const ma = reg(nic, mm, a, 4 * PAGE);
    const src = pattern(10000, 4);
    expect(mm.writeUser(a, src).ok).toBe(true);
    const w = ibPostRdmaWrite(nic, { lkey: ma.lkey, laddr: a, rkey: mr.value.rkey, raddr: bar + 4096n, len: 10000 });
    expect(w.ok && w.value.status).toBe(IB_WC_SUCCESS);
    const got = mm.readUser(bar + 4096n, 10000);
    expect(got.ok && got.value).toEqual(src);
    release(nic, mr.value);
    release(nic, ma);
    clean(m, nic);
  });
});

describe('ODP MR hook', () => {
  it('the NIC faults on a zapped entry, the owner fills it, the NIC retries once; a fault left unresolved is an access error', () => {
    const { m, nic, mm } = setup();
    const buf = mmap(mm, 8 * PAGE);
    const pinned = reg(nic, mm, buf, 8 * PAGE); // the pages the handler "faults in"
    const blocks: bigint[] = [];
    rdmaUmemForEachDmaBlock(pinned.umem!, PAGE, (a) => blocks.push(a));
    const faults: Array<[bigint, number, boolean]> = [];
    let resolve = true;
    const odp = ibRegOdpMr(nic, { iova: 0x40000000n, length: 8 * PAGE, access: RW | IB_ACCESS_ON_DEMAND, pageShift: 12 }, (mr, iova, len, write) => {
      faults.push([iova, len, write]);
      if (!resolve) return false;
      const first = Number((iova - mr.iova) / 4096n);
      const last = Number((iova + BigInt(len) - 1n - mr.iova) / 4096n);
      ibMrUpdateMtt(mr, first, blocks.slice(first, last + 1), MLX5_IB_MTT_READ | (write ? MLX5_IB_MTT_WRITE : 0));
      return true;
    });
    if (!odp.ok) throw new Error(odp.errno);
    const o = odp.value;
    expect(ibMrMttEntries(o).every((e) => e === 0n)).toBe(true);
    const src = pattern(6000, 5);
    expect(mm.writeUser(buf + 0x2000n, src).ok).toBe(true);
    // RDMA READ from the ODP MR: faults (read) once, then reads
    const r = ibPostRdmaRead(nic, { lkey: pinned.lkey, laddr: buf, rkey: o.rkey, raddr: 0x40002000n, len: 6000 });
    expect(r.ok && r.value.status).toBe(IB_WC_SUCCESS);
    expect(faults).toEqual([[0x40002000n, 6000, false]]);
    expect(mm.readUser(buf, 6000)).toEqual({ ok: true, value: src });
    // a write into read-only entries faults again, for write
    const w = ibPostRdmaWrite(nic, { lkey: pinned.lkey, laddr: buf, rkey: o.rkey, raddr: 0x40002000n, len: 16 });
    expect(w.ok && w.value.status).toBe(IB_WC_SUCCESS);
    expect(faults.length).toBe(2);
    // zap, refuse the fault: remote access error, nothing moved
    ibMrZapMtt(o, 0, o.mttCount);
    resolve = false;
    const bytes = m.stats.rdmaNicBytes;
    const z = ibPostRdmaWrite(nic, { lkey: pinned.lkey, laddr: buf, rkey: o.rkey, raddr: 0x40002000n, len: 16 });
    expect(z.ok && z.value).toEqual({ status: IB_WC_REM_ACCESS_ERR, byteLen: 0 });
    expect(m.stats.rdmaNicBytes).toBe(bytes);
    expect([m.stats.rdmaNicPageFaults, m.stats.rdmaNicPageFaultsResolved]).toEqual([3, 2]);
    expect(ibDeregMr(nic, o).ok).toBe(true);
    expect(ibDeregMr(nic, o)).toMatchObject({ ok: false, errno: 'EINVAL' });
    release(nic, pinned);
    clean(m, nic);
  });

  it('ib_check_mr_access comes first: on a NIC without ODP, remote write without local write is EINVAL, a valid ODP access EOPNOTSUPP', () => {
    const m = makeMachine('none');
    const nic = unwrap(rdmaProbe(m.device('nic0'), { odp: false }));
    const attr = { iova: 0x40000000n, length: 8 * PAGE, pageShift: 12 };
    expect(ibRegOdpMr(nic, { ...attr, access: IB_ACCESS_REMOTE_WRITE | IB_ACCESS_ON_DEMAND }, null)).toMatchObject({ ok: false, errno: 'EINVAL' });
    expect(ibRegOdpMr(nic, { ...attr, access: RW | IB_ACCESS_ON_DEMAND }, null)).toMatchObject({ ok: false, errno: 'EOPNOTSUPP' });
    clean(m, nic);
  });

  it('a zap covers the whole 8-entry blocks the UMR writes (mlx5r_umr_update_xlt), clamped to the MTT', () => {
    const { m, nic } = setup('none');
    const odp = ibRegOdpMr(nic, { iova: 0x40000000n, length: 20 * PAGE, access: RW | IB_ACCESS_ON_DEMAND, pageShift: 12 }, null);
    if (!odp.ok) throw new Error(odp.errno);
    const o = odp.value;
    const fill = (): void => ibMrUpdateMtt(o, 0, Array.from({ length: 20 }, (_, i) => BigInt((i + 1) * PAGE)), MLX5_IB_MTT_READ);
    const zero = (): number[] => ibMrMttEntries(o).flatMap((e, i) => (e === 0n ? [i] : []));
    const range = (a: number, b: number): number[] => Array.from({ length: b - a }, (_, i) => a + i);
    const zapped = m.stats.rdmaMttEntriesZapped;
    fill();
    ibMrZapMtt(o, 3, 1);
    expect(zero()).toEqual(range(0, 8));
    fill();
    ibMrZapMtt(o, 6, 4);
    expect(zero()).toEqual(range(0, 16));
    fill();
    ibMrZapMtt(o, 17, 1);
    expect(zero()).toEqual(range(16, 20));
    fill();
    ibMrZapMtt(o, 5, 0);
    expect(zero()).toEqual([]);
    expect(m.stats.rdmaMttEntriesZapped - zapped).toBe(8 + 16 + 4);
    expect(ibDeregMr(nic, o).ok).toBe(true);
    clean(m, nic);
  });
});

describe('dma-buf MR blocks', () => {
  it('an exporter\'s DMA ranges contiguous but cut inside pages: each PAGE_SIZE block once, as rdma_umem_for_each_dma_block walks them', () => {
    const m = makeMachine('none');
    const nic = unwrap(rdmaProbe(m.device('nic0')));
    const base = unwrap(m.allocKernelPages(2)) * BigInt(PAGE);
    const size = 4 * PAGE;
    // as dma_buf_phys_vec_to_sgt cuts a range at UINT_MAX bytes: 6 KiB + 6 KiB + 4 KiB, one piece of memory
    const cuts = [[0, 0x1800], [0x1800, 0x1800], [0x3000, 0x1000]] as const;
    const b = DmaList.builder(3);
    for (const [off, len] of cuts) b.pushBigNoMerge(base + BigInt(off), len, 0);
    const list = b.build();
    const sgt = unwrap(sgAllocTable(3));
    cuts.forEach(([off, len], i) => sgt.setDma(i, base + BigInt(off), len));
    const buf = unwrap(dmaBufExport({
      mm: dmaContextOf(nic.dev).mm, size, priv: {},
      ops: { expName: 'cut', map: () => ok({ list, sgt }), unmap: () => {}, release: () => {}, physRanges: () => ok(PhyrList.from([{ addr: base, len: size }])) },
    }));
    const dmr = unwrap(ibRegDmabufMr(nic, buf, 0, size, 0x100000n, RW));
    expect(ibMrMttEntries(dmr.mr)).toEqual([0, 1, 2, 3].map((i) => (base + BigInt(i * PAGE)) | BigInt(MLX5_IB_MTT_PRESENT)));
    unwrap(ibDeregDmabufMr(nic, dmr));
    dmaBufPut(buf);
    m.freeKernelPages(base / BigInt(PAGE), 2);
    unwrap(rdmaRemove(nic));
    expect(m.teardown()).toBe(0);
  });
});
