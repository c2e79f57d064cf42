// RDMA <-> dma-buf: a NIC registers an MR over a dma-buf of each exporter (system heap, GPU VRAM
// that migrates, a VFIO BAR slice, another NIC's device memory) and moves real bytes both ways with
// RDMA WRITE / READ; a move or revoke zaps the MR's MTT so the NIC faults (a move: the fault maps
// the new place; a revoke: the request completes with an access error until the exporter restores
// the buffer); pinned importers block moves; RDMA's own exported dma-buf takes P2P importers only,
// refuses pinning, and is revoked for good when its device memory goes. Nothing stays attached,
// mapped, pinned or registered afterwards.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  IB_ACCESS_LOCAL_WRITE, IB_ACCESS_MW_BIND, IB_ACCESS_REMOTE_READ, IB_ACCESS_REMOTE_WRITE, IB_WC_REM_ACCESS_ERR, IB_WC_SUCCESS,
  dmaBufAttach, dmaBufAttachments, dmaBufRevoke, dmaBufUnrevoke, gpuBoCreate, gpuBoExport, gpuBoMigrate, gpuImportDmabuf,
  gpuImportRelease, gpuImportRevalidate, gpuProbe, gpuRead, gpuRemove, gpuWrite, ibAllocDm, ibDeallocDm, ibDeregDmabufMr, ibDeregMr,
  ibDmabufAlloc, ibDmabufDestroy, ibMrMttEntries, ibPostRdmaRead, ibPostRdmaWrite, ibRegDmabufMr, ibRegMr, ibUmemDmabufGet,
  ibUmemDmabufGetPinned, ibUmemDmabufMapPages, ibUmemDmabufRelease, ibUmemGet, ibUmemRelease, iommufdIoasAlloc, iommufdIoasClose,
  iommufdIoasMapDmabuf, rdmaProbe, rdmaRemove, systemHeapAlloc, vfioPciDmaBufMove, vfioPciDmabufExport, type DmaBuf, type GpuBo,
  type IbDevice, type IbDmabufMrMode, type IbMr, type IbWcStatus,
} from '../src/drivers/index.ts';
import { dmaPhyrsMappings } from '../src/dma/index.ts';
import type { Machine } from '../src/machine/index.ts';
import type { UserMm } from '../src/mm/index.ts';
import { dmabufMachine } from '../src/scenario/index.ts';
import { patternBytes as pattern } from '../src/base/index.ts';

const RW = IB_ACCESS_LOCAL_WRITE | IB_ACCESS_REMOTE_WRITE | IB_ACCESS_REMOTE_READ;
const PAGE = 4096;
const EXPORTERS = ['system-heap', 'gpu-vram', 'vfio-bar', 'rdma-dm'] as const;
type Exporter = (typeof EXPORTERS)[number];


/** The buffer's bytes [off, off + len) through the exporter's physical ranges (the CPU's view). */
function cpuRead(m: Machine, buf: DmaBuf, off: number, len: number): Uint8Array {
  const r = buf.ops.physRanges(buf);
  if (!r.ok) throw new Error(r.errno);
  const all = new Uint8Array(buf.size);
  let at = 0;
  for (let i = 0; i < r.value.count; i++) { all.set(m.mem.read(r.value.addrAt(i), r.value.lenAt(i)), at); at += r.value.lenAt(i); }
  return all.slice(off, off + len);
}

function cpuWrite(m: Machine, buf: DmaBuf, off: number, bytes: Uint8Array): void {
  const r = buf.ops.physRanges(buf);
  if (!r.ok) throw new Error(r.errno);
  let at = 0;
  for (let i = 0; i < r.value.count; i++) {
    const a = r.value.addrAt(i), l = r.value.lenAt(i);
    const lo = Math.max(at, off), hi = Math.min(at + l, off + bytes.length);
    if (lo < hi) m.mem.write(a + BigInt(lo - at), bytes.subarray(lo - off, hi - off));
    at += l;
  }
}

interface Rig {
  m: Machine;
  nic: IbDevice;
  mm: UserMm;
  staging: IbMr;
  va: bigint;
  buf: DmaBuf;
  bo: GpuBo | null;
  exporterNic: IbDevice | null;
  dm: ReturnType<typeof ibAllocDm> | null;
}

function rig(exporter: Exporter, iommu: 'strict' | 'none', nicDev: string, bufLen: number, seed: number): Rig {
  const m = dmabufMachine(iommu, seed);
  const n = rdmaProbe(m.device(nicDev));
  if (!n.ok) throw new Error(n.errno);
  const mm = m.newProcess();
  const v = mm.mmap({ len: bufLen, backing: 'anon', populate: true, prot: 'rw' });
  if (!v.ok) throw new Error(v.errno);
  const u = ibUmemGet(n.value, mm, v.value, bufLen, RW);
  if (!u.ok) throw new Error(u.errno);
  const s = ibRegMr(n.value, u.value, v.value);
  if (!s.ok) throw new Error(s.errno);
  let buf: DmaBuf, bo: GpuBo | null = null, exporterNic: IbDevice | null = null, dm: Rig['dm'] = null;
  const gpu0 = m.device('gpu0');
  if (exporter === 'system-heap') {
    const r = systemHeapAlloc(m, bufLen); if (!r.ok) throw new Error(r.errno); buf = r.value;
  } else if (exporter === 'gpu-vram') {
    const b = gpuBoCreate(gpu0, bufLen, 'vram'); if (!b.ok) throw new Error(b.errno);
    bo = b.value;
    const r = gpuBoExport(bo); if (!r.ok) throw new Error(r.errno); buf = r.value;
  } else if (exporter === 'vfio-bar') {
    const r = vfioPciDmabufExport(gpu0, { bar: 0, offset: 0, len: bufLen }); if (!r.ok) throw new Error(r.errno); buf = r.value;
  } else {
    const e = rdmaProbe(gpu0); if (!e.ok) throw new Error(e.errno);
    exporterNic = e.value;
    dm = ibAllocDm(e.value, bufLen); if (!dm.ok) throw new Error(dm.errno);
    const r = ibDmabufAlloc(dm.value); if (!r.ok) throw new Error(r.errno); buf = r.value;
  }
  return { m, nic: n.value, mm, staging: s.value, va: v.value, buf, bo, exporterNic, dm };
}

/** RDMA WRITE of bytes from staging into the dma-buf MR at raddr; the completion status. */
function nicWrite(r: Rig, rkey: number, raddr: bigint, bytes: Uint8Array): IbWcStatus {
  expect(r.mm.writeUser(r.va, bytes).ok).toBe(true);
  const wc = ibPostRdmaWrite(r.nic, { lkey: r.staging.lkey, laddr: r.va, rkey, raddr, len: bytes.length });
  if (!wc.ok) throw new Error(wc.errno);
  return wc.value.status;
}

/** RDMA READ of len bytes from the dma-buf MR at raddr into staging; the bytes, or the status on error. */
function nicRead(r: Rig, rkey: number, raddr: bigint, len: number): Uint8Array | IbWcStatus {
  expect(r.mm.writeUser(r.va, new Uint8Array(len)).ok).toBe(true);
  const wc = ibPostRdmaRead(r.nic, { lkey: r.staging.lkey, laddr: r.va, rkey, raddr, len });
  if (!wc.ok) throw new Error(wc.errno);
  if (wc.value.status !== IB_WC_SUCCESS) return wc.value.status;
  const b = r.mm.readUser(r.va, len);
  if (!b.ok) throw new Error(b.errno);
  return b.value;
}

/** Nothing of the NIC's is left: no attachment, no phyr mapping, no MTT chunk, no key; IOMMU PTEs balanced; no leak. */
function expectClean(r: Rig): void {
  expect(ibDeregMr(r.nic, r.staging).ok).toBe(true);
  ibUmemRelease(r.staging.umem!);
  expect(dmaBufAttachments(r.nic.dev)).toEqual([]);
  expect(r.buf.attachments.filter((a) => a.dev === r.nic.dev)).toEqual([]);
  expect(dmaPhyrsMappings(r.nic.dev)).toEqual([]);
  expect(r.nic.mttPool.nrActive).toBe(0);
  expect(r.nic.nic.mkeyCount).toBe(0);
  expect(rdmaRemove(r.nic).ok).toBe(true);
  expect(r.m.listPins()).toEqual([]);
  expect(r.m.stats.iommuLeafPtesWritten - r.m.stats.iommuLeafPtesCleared).toBe(0);
  expect(r.m.teardown()).toBe(0);
}

const IOVA_BASE = 0x7000_0000_0000n;

describe('RDMA MR over a dma-buf (ib_umem_dmabuf_get, mlx5 dma-buf MR)', () => {
  it('property: bytes move both ways through the NIC for every exporter; a move remaps on the next fault, a revoke fails the NIC until restored', () => {
    fc.assert(fc.property(
      fc.constantFrom(...EXPORTERS), fc.constantFrom('strict' as const, 'none' as const), fc.constantFrom('gpu1', 'gpu2'),
      fc.integer({ min: 1, max: 24 }), fc.nat(), fc.nat(), fc.integer({ min: 1, max: 500 }),
      (exporter, iommu, nicDev, pages, offSeed, lenSeed, seed) => {
        const bufLen = pages * PAGE;
        const r = rig(exporter, iommu, nicDev, bufLen, seed);
        const off = offSeed % bufLen;
        const len = 1 + (lenSeed % (bufLen - off));
        const iova = IOVA_BASE + BigInt(off % PAGE) + BigInt(PAGE * (seed % 7));
        const d = ibRegDmabufMr(r.nic, r.buf, off, len, iova, RW);
        if (!d.ok) throw new Error(`${exporter} ${d.errno} ${d.message}`);
        const dmr = d.value;
        // device writes, CPU reads back; CPU writes, device reads
        const out = pattern(len, seed);
        expect(nicWrite(r, dmr.rkey, iova, out)).toBe(IB_WC_SUCCESS);
        expect(cpuRead(r.m, r.buf, off, len)).toEqual(out);
        const inn = pattern(len, seed + 1);
        cpuWrite(r.m, r.buf, off, inn);
        expect(nicRead(r, dmr.rkey, iova, len)).toEqual(inn);
        // move or revoke: the MTT is zapped and the attachment unmapped before the exporter returns
        const faults0 = r.m.stats.rdmaNicPageFaults;
        if (exporter === 'gpu-vram') expect(gpuBoMigrate(r.bo!, r.bo!.placement === 'vram' ? 'system' : 'vram').ok).toBe(true);
        else if (exporter === 'vfio-bar') vfioPciDmaBufMove(r.m.device('gpu0'), true);
        else if (exporter === 'system-heap') dmaBufRevoke(r.buf);
        else ibDeallocDm(r.dm!.ok ? r.dm!.value : (undefined as never));
        expect(ibMrMttEntries(dmr.mr).every((e) => e === 0n)).toBe(true);
        expect(dmr.umem.att.live.size).toBe(0);
        expect(dmr.umem.sgt).toBeNull();
        const next = pattern(len, seed + 2);
        if (exporter === 'gpu-vram') {
          // the fault maps the buffer where it is now; the bytes moved with it
          expect(nicRead(r, dmr.rkey, iova, len)).toEqual(inn);
          expect(dmr.remaps).toBe(1);
          expect(nicWrite(r, dmr.rkey, iova, next)).toBe(IB_WC_SUCCESS);
          expect(cpuRead(r.m, r.buf, off, len)).toEqual(next);
        } else {
          // the fault cannot map a revoked buffer: the request completes with an access error, moving nothing
          expect(nicWrite(r, dmr.rkey, iova, next)).toBe(IB_WC_REM_ACCESS_ERR);
          expect(nicRead(r, dmr.rkey, iova, len)).toBe(IB_WC_REM_ACCESS_ERR);
          expect(dmr.remaps).toBe(0);
          if (exporter !== 'rdma-dm') {
            // the exporter restores the buffer: the next access faults and remaps
            if (exporter === 'vfio-bar') vfioPciDmaBufMove(r.m.device('gpu0'), false);
            else dmaBufUnrevoke(r.buf);
            expect(nicWrite(r, dmr.rkey, iova, next)).toBe(IB_WC_SUCCESS);
            expect(cpuRead(r.m, r.buf, off, len)).toEqual(next);
            expect(dmr.remaps).toBe(1);
          }
        }
        expect(r.m.stats.rdmaNicPageFaults).toBeGreaterThan(faults0);
        expect(ibDeregDmabufMr(r.nic, dmr).ok).toBe(true);
        expect(ibDeregDmabufMr(r.nic, dmr)).toMatchObject({ ok: false, errno: 'EINVAL' });
        expect(dmr.umem.released).toBe(true);
        expectClean(r);
      },
    ), { numRuns: 30 });
  });

  it('P2P the topology cannot do: a BAR exporter behind another host bridge is EINVAL (dma_buf_phys_vec_to_sgt), nothing attached', () => {
    for (const exporter of ['vfio-bar', 'rdma-dm'] as const) {
      const r = rig(exporter, 'strict', 'gpu3', 4 * PAGE, 3);
      expect(ibRegDmabufMr(r.nic, r.buf, 0, 4 * PAGE, IOVA_BASE, RW)).toMatchObject({ ok: false, errno: 'EINVAL' });
      expectClean(r);
    }
  });

  it('argument checks of UVERBS_METHOD_REG_DMABUF_MR / ib_umem_dmabuf_get: EINVAL for page-offset mismatch, a range past the end, size 0, an access bit it does not take', () => {
    const r = rig('system-heap', 'strict', 'gpu1', 4 * PAGE, 5);
    expect(ibRegDmabufMr(r.nic, r.buf, 0x10, PAGE, IOVA_BASE + 0x20n, RW)).toMatchObject({ ok: false, errno: 'EINVAL' });
    expect(ibRegDmabufMr(r.nic, r.buf, PAGE, 4 * PAGE, IOVA_BASE, RW)).toMatchObject({ ok: false, errno: 'EINVAL' });
    expect(ibRegDmabufMr(r.nic, r.buf, 0, 0, IOVA_BASE, RW)).toMatchObject({ ok: false, errno: 'EINVAL' });
    expect(ibRegDmabufMr(r.nic, r.buf, 0, PAGE, IOVA_BASE, RW | IB_ACCESS_MW_BIND)).toMatchObject({ ok: false, errno: 'EINVAL' });
    expect(() => ibRegDmabufMr(r.nic, r.buf, -1, PAGE, IOVA_BASE, RW)).toThrow(RangeError);
    // a NIC without on-demand paging has no dma-buf MRs
    const m2 = dmabufMachine('strict', 5);
    const noOdp = rdmaProbe(m2.device('gpu1'), { odp: false });
    const heap2 = systemHeapAlloc(m2, PAGE);
    expect(noOdp.ok && heap2.ok && ibRegDmabufMr(noOdp.value, heap2.value, 0, PAGE, IOVA_BASE, RW)).toMatchObject({ ok: false, errno: 'EOPNOTSUPP' });
    expect(r.buf.attachments).toEqual([]);
    expectClean(r);
  });

  it('ib_umem_dmabuf_map_pages trims the exporter\'s ranges to the pages of [offset, offset + length); a revoked umem is EINVAL', () => {
    const r = rig('system-heap', 'strict', 'gpu1', 64 * PAGE, 9);
    const u = ibUmemDmabufGet(r.nic, r.buf, 3 * PAGE + 100, 5 * PAGE, RW);
    expect(u.ok).toBe(true);
    if (!u.ok) return;
    r.buf.resv.lock();
    expect(ibUmemDmabufMapPages(u.value).ok).toBe(true);
    expect(u.value.dma!.totalLen).toBe(6 * PAGE); // pages 3..8
    expect(u.value.dma!.addrAt(0)).toBe(u.value.sgt!.addrAt(0) + BigInt(3 * PAGE)); // the heap's first chunk is contiguous
    r.buf.resv.unlock();
    ibUmemDmabufRelease(u.value);
    expect(u.value.revoked).toBe(true);
    r.buf.resv.lock();
    expect(ibUmemDmabufMapPages(u.value)).toMatchObject({ ok: false, errno: 'EINVAL' });
    r.buf.resv.unlock();
    expectClean(r);
  });
});

describe('pinned dma-buf importers (ib_umem_dmabuf_get_pinned, _pinned_revocable_and_lock)', () => {
  const modes: IbDmabufMrMode[] = ['pinned', 'pinned-revocable'];
  it('property: a pinned MR moves bytes both ways and the GPU buffer cannot move under it (EBUSY) until deregistration', () => {
    fc.assert(fc.property(fc.constantFrom(...modes), fc.constantFrom('strict' as const, 'none' as const), fc.integer({ min: 1, max: 16 }),
      fc.integer({ min: 1, max: 500 }), (mode, iommu, pages, seed) => {
        const len = pages * PAGE;
        const r = rig('gpu-vram', iommu, 'gpu1', len, seed);
        const d = ibRegDmabufMr(r.nic, r.buf, 0, len, IOVA_BASE, RW, { mode });
        if (!d.ok) throw new Error(d.errno);
        const out = pattern(len, seed);
        expect(nicWrite(r, d.value.rkey, IOVA_BASE, out)).toBe(IB_WC_SUCCESS);
        expect(cpuRead(r.m, r.buf, 0, len)).toEqual(out);
        const before = r.bo!.placement;
        expect(gpuBoMigrate(r.bo!, before === 'vram' ? 'system' : 'vram')).toMatchObject({ ok: false, errno: 'EBUSY' });
        expect(r.bo!.placement).toBe(before);
        expect(nicRead(r, d.value.rkey, IOVA_BASE, len)).toEqual(out);
        expect(r.m.stats.rdmaNicPageFaults).toBe(0);
        expect(ibDeregDmabufMr(r.nic, d.value).ok).toBe(true);
        expect(r.bo!.pinCount).toBe(0);
        expect(gpuBoMigrate(r.bo!, before === 'vram' ? 'system' : 'vram').ok).toBe(true);
        expectClean(r);
      }), { numRuns: 12 });
  });

  it('vfio refuses a pinned importer without invalidate_mappings (EOPNOTSUPP); the revocable one works until the revoke, then fails for good', () => {
    const r = rig('vfio-bar', 'strict', 'gpu1', 8 * PAGE, 11);
    expect(ibRegDmabufMr(r.nic, r.buf, 0, 8 * PAGE, IOVA_BASE, RW, { mode: 'pinned' })).toMatchObject({ ok: false, errno: 'EOPNOTSUPP' });
    const d = ibRegDmabufMr(r.nic, r.buf, 0, 8 * PAGE, IOVA_BASE, RW, { mode: 'pinned-revocable' });
    if (!d.ok) throw new Error(d.errno);
    const out = pattern(8 * PAGE, 1);
    expect(nicWrite(r, d.value.rkey, IOVA_BASE, out)).toBe(IB_WC_SUCCESS);
    expect(cpuRead(r.m, r.buf, 0, 8 * PAGE)).toEqual(out);
    vfioPciDmaBufMove(r.m.device('gpu0'), true);
    expect(d.value.umem.revoked).toBe(true);
    expect(d.value.umem.pinned).toBe(false);
    expect(nicWrite(r, d.value.rkey, IOVA_BASE, out)).toBe(IB_WC_REM_ACCESS_ERR);
    vfioPciDmaBufMove(r.m.device('gpu0'), false);
    // the revoke callback runs once and the umem stays revoked: no remap after the BAR comes back
    expect(nicWrite(r, d.value.rkey, IOVA_BASE, out)).toBe(IB_WC_REM_ACCESS_ERR);
    expect(ibDeregDmabufMr(r.nic, d.value).ok).toBe(true);
    expectClean(r);
  });

  it('ib_umem_dmabuf_get_pinned of an RDMA dma-buf fails: the exporter refuses the pin (EOPNOTSUPP), nothing stays attached', () => {
    const r = rig('rdma-dm', 'strict', 'gpu1', 4 * PAGE, 12);
    expect(ibUmemDmabufGetPinned(r.nic, r.buf, 0, 4 * PAGE, RW)).toMatchObject({ ok: false, errno: 'EOPNOTSUPP' });
    expect(ibRegDmabufMr(r.nic, r.buf, 0, 4 * PAGE, IOVA_BASE, RW, { mode: 'pinned' })).toMatchObject({ ok: false, errno: 'EOPNOTSUPP' });
    expect(r.buf.attachments).toEqual([]);
    expectClean(r);
  });
});

describe('RDMA exporting a dma-buf (uverbs DMABUF_ALLOC of NIC device memory, 7.0)', () => {
  it('property: a GPU importer moves bytes both ways through the NIC\'s BAR; freeing the device memory revokes for good', () => {
    fc.assert(fc.property(fc.constantFrom('strict' as const, 'none' as const), fc.constantFrom('gpu1', 'gpu2'), fc.integer({ min: 1, max: 32 }),
      fc.integer({ min: 1, max: 500 }), (iommu, gpuDev, pages, seed) => {
        const m = dmabufMachine(iommu, seed);
        const nic = rdmaProbe(m.device('gpu0'));
        if (!nic.ok) throw new Error(nic.errno);
        const dm = ibAllocDm(nic.value, pages * PAGE);
        if (!dm.ok) throw new Error(dm.errno);
        const buf = ibDmabufAlloc(dm.value);
        if (!buf.ok) throw new Error(buf.errno);
        const gpu = gpuProbe(m.device(gpuDev));
        if (!gpu.ok) throw new Error(gpu.errno);
        const imp = gpuImportDmabuf(gpu.value, buf.value);
        if (!imp.ok) throw new Error(imp.errno);
        const va = imp.value.mapping!.va;
        const out = pattern(pages * PAGE, seed);
        expect(gpuWrite(gpu.value, va, out).ok).toBe(true);
        expect(m.mem.read(dm.value.address, pages * PAGE)).toEqual(out);
        const inn = pattern(pages * PAGE, seed + 1);
        m.mem.write(dm.value.address, inn);
        const back = gpuRead(gpu.value, va, pages * PAGE);
        expect(back.ok && back.value).toEqual(inn);
        ibDeallocDm(dm.value);
        expect(imp.value.mapping).toBeNull();
        expect(imp.value.att.live.size).toBe(0);
        expect(gpuRead(gpu.value, va, 64).ok).toBe(false);
        expect(gpuImportRevalidate(imp.value)).toMatchObject({ ok: false, errno: 'ENODEV' });
        expect(ibDmabufAlloc(dm.value)).toMatchObject({ ok: false, errno: 'EIO' });
        gpuImportRelease(imp.value);
        expect(ibDmabufDestroy(buf.value)).toBe(true);
        expect(dmaBufAttachments(m.device(gpuDev))).toEqual([]);
        gpuRemove(gpu.value);
        expect(rdmaRemove(nic.value).ok).toBe(true);
        expect(m.teardown()).toBe(0);
      }), { numRuns: 12 });
  });

  it('P2P importers only (uverbs_dmabuf_attach: EOPNOTSUPP), pinning refused (iommufd: EOPNOTSUPP), nothing left attached', () => {
    const m = dmabufMachine('strict', 2);
    const nic = rdmaProbe(m.device('gpu0'));
    if (!nic.ok) throw new Error(nic.errno);
    const dm = ibAllocDm(nic.value, 8 * PAGE);
    if (!dm.ok) throw new Error(dm.errno);
    const buf = ibDmabufAlloc(dm.value);
    if (!buf.ok) throw new Error(buf.errno);
    expect(buf.value.movable).toBe(true); // it has pin/unpin: a static importer's map would pin, and fail
    expect(dmaBufAttach(buf.value, m.device('gpu1'))).toMatchObject({ ok: false, errno: 'EOPNOTSUPP' });
    expect(dmaBufAttach(buf.value, m.device('gpu1'), { dynamic: true, peer2peer: false, moveNotify: () => {} })).toMatchObject({ ok: false, errno: 'EOPNOTSUPP' });
    const gpu = gpuProbe(m.device('gpu1'));
    expect(gpu.ok && gpuImportDmabuf(gpu.value, buf.value, { peer2peer: false })).toMatchObject({ ok: false, errno: 'EOPNOTSUPP' });
    const ioas = iommufdIoasAlloc(m, m.device('gpu2'));
    if (!ioas.ok) throw new Error(ioas.errno);
    expect(iommufdIoasMapDmabuf(ioas.value, buf.value, 0x1000_0000n)).toMatchObject({ ok: false, errno: 'EOPNOTSUPP' });
    iommufdIoasClose(ioas.value);
    if (gpu.ok) gpuRemove(gpu.value);
    expect(buf.value.attachments).toEqual([]);
    expect(ibAllocDm(nic.value, 0)).toMatchObject({ ok: false, errno: 'EINVAL' });
    expect(ibAllocDm(nic.value, 1024 * 1024 * 1024)).toMatchObject({ ok: false, errno: 'ENOMEM' });
    expect(ibDmabufDestroy(buf.value)).toBe(true);
    expect(buf.value.released).toBe(true);
    ibDeallocDm(dm.value);
    expect(rdmaRemove(nic.value).ok).toBe(true);
    expect(m.teardown()).toBe(0);
  });
});
