// Ranges beyond 4 GiB (Linux 7.0: "types: move phys_vec definition to common header" makes
// phys_vec.len a size_t; "nvme-pci: Use size_t for length fields to handle larger sizes"): a 6 GiB
// physically contiguous hugetlb buffer is one phyr, maps with one dma_map_phys on a 64-bit device
// (direct and through dma-iommu) and moves real bytes at every part of it; converting it to a
// scatterlist (block/blk-mq-dma.c: __blk_rq_map_sg) hits WARN_ON_ONCE(overflows_type(vec.len,
// unsigned int)) and keeps the low 32 bits of the length. Through a bio it never gets that far.
import { describe, expect, it } from 'vitest';
import {
  DMA_BIDIRECTIONAL, DMA_BIT_MASK, DMA_TO_DEVICE, FOLL_WRITE, GiB, KiB, MiB, PhyrList, createMachine, dmaMapPhys, dmaSetMaskAndCoherent,
  dmaUnmapPhys, pinUserPhyrs, toSgTable, unpinUserPhyrs, unwrap, type Machine,
} from '../src/index.ts';
import {
  REQ_OP_WRITE, bioFromRanges, blkMqInitQueue, blkRqMapSg, blkSubmitBio, BlkDmaIter, blkRqDmaMapIterStart, blkRqDmaMapIterNext,
} from '../src/drivers/index.ts';
import { DmaIovaState } from '../src/dma/index.ts';

const PCI = [
  { name: 'hb0', type: 'host-bridge' as const, vendor: 0x8086, device: 0x2030 },
  { name: 'rp0', type: 'root-port' as const, parent: 'hb0' },
  { name: 'dev0', type: 'endpoint' as const, parent: 'rp0' },
];
const SIX_GIB = 6 * GiB;

function hugeMachine(iommu: boolean): Machine {
  return createMachine({
    ramBytes: 10 * GiB, hugetlb: { '1G': 6 }, swiotlb: false, pci: PCI, seed: 2,
    ...(iommu ? { iommu: { format: 'x86-64' as const, mode: 'strict' as const } } : {}),
  });
}

/** A 6 GiB hugetlb buffer pinned as phyrs, with a marker written by the CPU at 0, 4 GiB + 3 and the last byte. */
function sixGiB(m: Machine) {
  const mm = m.newProcess();
  const va = unwrap(mm.mmap({ len: SIX_GIB, backing: 'hugetlb-1G', populate: true }));
  const list = unwrap(pinUserPhyrs(mm, va, SIX_GIB, FOLL_WRITE));
  return { mm, va, list };
}

const MARKS: Array<[number, number]> = [[0, 0x11], [4 * GiB + 3, 0x42], [SIX_GIB - 1, 0x7f]];

describe('a range beyond 4 GiB (phys_vec.len is size_t since 7.0)', () => {
  it('a 6 GiB hugetlb buffer is one 6 GiB phyr (six contiguous 1 GiB folios)', () => {
    const m = hugeMachine(false);
    const { list } = sixGiB(m);
    expect(list.count).toBe(1);
    expect(list.lenAt(0)).toBe(SIX_GIB);
    expect(list.totalLen).toBe(SIX_GIB);
    unpinUserPhyrs(list);
  });

  for (const iommu of [false, true]) {
    it(`maps with one dma_map_phys of 6 GiB on a 64-bit ${iommu ? 'dma-iommu' : 'direct'} device and the device reads bytes past 4 GiB`, () => {
      const m = hugeMachine(iommu);
      const dev = m.device('dev0');
      unwrap(dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(64)));
      const { list } = sixGiB(m);
      const phys = list.addrAt(0);
      for (const [off, v] of MARKS) m.mem.write(phys + BigInt(off), new Uint8Array([v]));
      const r = dmaMapPhys(dev, phys, SIX_GIB, DMA_BIDIRECTIONAL);
      expect(r.ok).toBe(true);
      const dma = unwrap(r);
      if (!iommu) expect(dma).toBe(phys);
      for (const [off, v] of MARKS) expect(unwrap(dev.dmaRead(dma + BigInt(off), 1))[0], `byte at +${off}`).toBe(v);
      // The device writes 5 GiB in; the CPU sees it in the buffer.
      unwrap(dev.dmaWrite(dma + BigInt(5 * GiB), new Uint8Array([0xab, 0xcd])));
      expect([...m.mem.read(phys + BigInt(5 * GiB), 2)]).toEqual([0xab, 0xcd]);
      dmaUnmapPhys(dev, dma, SIX_GIB, DMA_BIDIRECTIONAL);
      if (iommu) expect(dev.dmaRead(dma, 1).ok).toBe(false);
      unpinUserPhyrs(list);
      expect(m.teardown()).toBe(0);
      expect(m.events.list().filter((e) => e.kind === 'WARN' || e.kind === 'DMA-DEBUG')).toEqual([]);
    });
  }

  it('converting it to a scatterlist WARNs (overflows_type(vec.len, unsigned int)) and keeps the low 32 bits: 2 GiB', () => {
    const m = hugeMachine(false);
    const { list } = sixGiB(m);
    const sgt = unwrap(toSgTable(list, 4096, m.events));
    expect(sgt.nents).toBe(1);
    expect(sgt.lengthAt(0)).toBe(2 * GiB);
    expect(sgt.pfnAt(0)).toBe(list.addrAt(0) / 4096n);
    const warns = m.events.list().filter((e) => e.kind === 'WARN');
    expect(warns.map((e) => e.message)).toEqual([expect.stringMatching(/__blk_rq_map_sg: WARN_ON_ONCE\(overflows_type\(vec\.len, unsigned int\)\).*6442450944 bytes; sg length keeps 2147483648/)]);
    unpinUserPhyrs(list);
  });

  it('the boundary: UINT_MAX bytes convert silently, exactly 4 GiB warns and leaves a zero-length entry', () => {
    const m = hugeMachine(false);
    const base = 4n * BigInt(GiB);
    const ok = unwrap(toSgTable(PhyrList.from([{ addr: base, len: 0xffffffff }]), 4096, m.events));
    expect(ok.lengthAt(0)).toBe(0xffffffff);
    expect(m.events.list().filter((e) => e.kind === 'WARN')).toEqual([]);
    const four = unwrap(toSgTable(PhyrList.from([{ addr: base, len: 4 * GiB }, { addr: base + 8n * BigInt(GiB), len: 4 * KiB }]), 4096, m.events));
    expect([four.lengthAt(0), four.lengthAt(1)]).toEqual([0, 4 * KiB]);
    expect(m.events.list().filter((e) => e.kind === 'WARN')).toHaveLength(1);
  });

  it('a bio cannot hold it (BIO_MAX_SIZE: E2BIG), and a request of the same memory maps to sg entries of at most UINT_MAX without a WARN', () => {
    const m = hugeMachine(false);
    const dev = m.device('dev0');
    unwrap(dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(64)));
    const { list } = sixGiB(m);
    const r = bioFromRanges(REQ_OP_WRITE, 0n, list);
    expect(r.ok ? 'ok' : r.errno).toBe('E2BIG');
    // 4 MiB of it, 4 GiB in: four 1 MiB pieces out of order, so the request has several segments
    const phys = list.addrAt(0) + BigInt(4 * GiB);
    const pieces = PhyrList.from([0, 2, 3, 1].map((k) => ({ addr: phys + BigInt(k * MiB), len: MiB })));
    const q = unwrap(blkMqInitQueue(dev, { maxSegmentSize: 0xffffffff, maxHwSectors: 8192 }));
    const reqs = unwrap(blkSubmitBio(q, unwrap(bioFromRanges(REQ_OP_WRITE, 0n, pieces))));
    expect(reqs).toHaveLength(1);
    const sgt = unwrap(blkRqMapSg(reqs[0]));
    // blk_map_iter_next merges pieces 2 and 3 (physically adjacent): three segments
    expect(sgt.nents).toBe(3);
    const segs = [];
    for (let i = 0; i < sgt.nents; i++) segs.push([sgt.pfnAt(i) * 4096n + BigInt(sgt.offsetAt(i)), sgt.lengthAt(i)]);
    // The DMA iterator walks the same segments.
    const iter = new BlkDmaIter();
    const state = new DmaIovaState();
    const dmaSegs = [];
    for (let ok = blkRqDmaMapIterStart(reqs[0], dev, state, iter); ok; ok = blkRqDmaMapIterNext(reqs[0], dev, iter)) dmaSegs.push([iter.addr, iter.len]);
    expect(segs).toEqual(dmaSegs);
    expect(sgt.lengthAt(1)).toBe(2 * MiB);
    for (const [a, l] of dmaSegs) dmaUnmapPhys(dev, a as bigint, l as number, DMA_TO_DEVICE);
    expect(m.events.list().filter((e) => e.kind === 'WARN')).toEqual([]);
    unpinUserPhyrs(list);
  });
});
