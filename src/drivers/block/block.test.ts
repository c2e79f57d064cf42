import { describe, expect, it } from 'vitest';
import { PCI_NODES, allocPhys, gpuBar, makeMachine, pattern, phyrs } from '../../../test/fixtures/dma-b-machines.ts';
import { deviceReadSegs, mapRq, unmapRq } from '../../../test/fixtures/block-io.ts';
import { KiB, unwrap } from '../../base/index.ts';
import { PCI_P2PDMA_MAP_BUS_ADDR, PCI_P2PDMA_MAP_THRU_HOST_BRIDGE, type Device } from '../../pci/index.ts';
import { PageArray, PhyrList, RANGE_NOPAGE, toBvecList } from '../../phyr/index.ts';
import type { Machine } from '../../machine/index.ts';
import {
  BLK_STS_INVAL, BLK_STS_OK, BLK_STS_RESOURCE, REQ_OP_READ, REQ_OP_WRITE, bioFromRanges, blkCanDmaMapIova, blkMqInitQueue,
  blkRqBytes, blkRqMapSg, blkRqNrPhysSegments, blkSubmitBio, blkValidateLimits, getMaxIoSize, errnoToBlkStatus, BLK_STS_IOERR, BLK_STS_TARGET,
  type QueueLimitsInput, type ReqOp, type Request, BlkDmaIter, bdevNrBytes, bdevNrSectors, setCapacity, blkRqDmaMapCoalesce, blkRqDmaMapIterStart, blkRqDmaUnmap,
} from './index.ts';
import { DmaIovaState } from '../../dma/index.ts';

const PAGE = 4096;
const leafPtes = (m: Machine) => m.stats.iommuLeafPtesWritten - m.stats.iommuLeafPtesCleared;

function queue(dev: Device, lim: QueueLimitsInput = {}) {
  return unwrap(blkMqInitQueue(dev, lim));
}

function submit(dev: Device, pieces: Array<[bigint, number]>, lim: QueueLimitsInput = {}, op: ReqOp = REQ_OP_WRITE, flags = 0): Request[] {
  const bio = unwrap(bioFromRanges(op, 0n, phyrs(pieces, flags)));
  return unwrap(blkSubmitBio(queue(dev, lim), bio));
}

describe('bioFromRanges (bio_add_page merging)', () => {
  it('merges physically contiguous ranges into one multi-page bio_vec, also across a page line', () => {
    const m = makeMachine('none');
    const p = allocPhys(m, 2);
    const bio = unwrap(bioFromRanges(REQ_OP_READ, 8n, phyrs([[p + 0x800n, 0x800], [p + 0x1000n, 0x1000], [p + 0x2000n, 0x2000]])));
    expect(bio.vecs.count).toBe(1);
    expect(bio.vecs.offsetAt(0)).toBe(0x800);
    expect(bio.vecs.lenAt(0)).toBe(0x3800);
    expect(bio.size).toBe(0x3800);
    expect(bio.sector).toBe(8n);
    expect(bio.nomerge).toBe(false);
  });

  it('keeps non-contiguous ranges apart and does not look at the virt boundary', () => {
    const m = makeMachine('none');
    const a = allocPhys(m), b = allocPhys(m);
    const bio = unwrap(bioFromRanges(REQ_OP_WRITE, 0n, phyrs([[a + 0x200n, 0x200], [b + 0x400n, 0x200]])));
    expect(bio.vecs.count).toBe(2);
    expect([...bio].map((r) => [r.addr, r.len])).toEqual([[a + 0x200n, 0x200], [b + 0x400n, 0x200]]);
  });

  it('takes every layout: a page array and a bvec list give the same vectors as the phyr list', () => {
    const m = makeMachine('none');
    const p = allocPhys(m, 2), q = p + 3n * BigInt(PAGE);
    const list = phyrs([[p, 2 * PAGE], [q, PAGE]]);
    const arr = new PageArray(new Float64Array([Number(p) / PAGE, Number(p) / PAGE + 1, Number(q) / PAGE]), { pageSize: PAGE });
    const bv = unwrap(toBvecList(list, PAGE));
    const want = [...unwrap(bioFromRanges(REQ_OP_READ, 0n, list))].map((r) => [r.addr, r.len]);
    expect(want).toEqual([[p, 2 * PAGE], [q, PAGE]]);
    expect([...unwrap(bioFromRanges(REQ_OP_READ, 0n, arr))].map((r) => [r.addr, r.len])).toEqual(want);
    expect([...unwrap(bioFromRanges(REQ_OP_READ, 0n, bv))].map((r) => [r.addr, r.len])).toEqual(want);
  });

  it('refuses to mix P2PDMA memory with RAM (zone_device_pages_compatible), and sets REQ_NOMERGE for P2P', () => {
    const m = makeMachine('none');
    const bar = gpuBar(m);
    const mix = PhyrList.from([{ addr: allocPhys(m), len: PAGE, flags: 0 }, { addr: bar.start, len: PAGE, flags: bar.flags }]);
    const r = bioFromRanges(REQ_OP_READ, 0n, mix);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.errno).toBe('EINVAL');
    const p2p = unwrap(bioFromRanges(REQ_OP_READ, 0n, phyrs([[bar.start, PAGE], [bar.start + BigInt(PAGE), PAGE]], bar.flags)));
    expect(p2p.nomerge).toBe(true);
    expect(p2p.vecs.count).toBe(1);
  });

  it('EINVAL for no bytes, EFAULT for memory without struct page; misuse throws', () => {
    const m = makeMachine('none');
    const e = bioFromRanges(REQ_OP_READ, 0n, phyrs([]));
    expect(e.ok || e.errno).toBe('EINVAL');
    const f = bioFromRanges(REQ_OP_READ, 0n, phyrs([[allocPhys(m), PAGE]], RANGE_NOPAGE));
    expect(f.ok || f.errno).toBe('EFAULT');
    expect(() => bioFromRanges(7 as never, 0n, phyrs([]))).toThrow(RangeError);
    expect(() => bioFromRanges(REQ_OP_READ, -1n, phyrs([]))).toThrow(/sector/);
  });
});

describe('queue limits (blk_validate_limits)', () => {
  it('fills the kernel defaults', () => {
    const l = unwrap(blkValidateLimits({}));
    expect(l.logicalBlockSize).toBe(512);
    expect(l.maxHwSectors).toBe(255);
    expect(l.maxSectors).toBe(255);
    expect(l.maxSegments).toBe(128);
    expect(l.maxSegmentSize).toBe(65536);
    expect(l.segBoundaryMask).toBe(0xffffffffn);
    expect(l.dmaAlignment).toBe(511);
    expect(l.maxFastSegmentSize).toBe(4096);
  });

  it('max_sectors is capped at 4 MiB and rounded to the block; a virt boundary makes max_segment_size UINT_MAX', () => {
    const l = unwrap(blkValidateLimits({ maxHwSectors: 65535, logicalBlockSize: 4096, virtBoundaryMask: 4095 }));
    expect(l.maxHwSectors).toBe(65528);
    expect(l.maxSectors).toBe(8192);
    expect(l.maxSegmentSize).toBe(0xffffffff);
  });

  it('EINVAL where the kernel refuses', () => {
    expect(blkValidateLimits({ logicalBlockSize: 768 }).ok).toBe(false);
    expect(blkValidateLimits({ maxHwSectors: 7 }).ok).toBe(false);
    expect(blkValidateLimits({ maxSegmentSize: 2048 }).ok).toBe(false);
    expect(blkValidateLimits({ segBoundaryMask: 0x7ffn }).ok).toBe(false);
    expect(blkValidateLimits({ dmaAlignment: 8191 }).ok).toBe(false);
    expect(() => blkValidateLimits({ virtBoundaryMask: 4000 })).toThrow(RangeError);
  });
});

describe('blkSubmitBio: splitting to the limits (bio_split_rw)', () => {
  it('max_segments 2 over five scattered pages: requests of 2, 2 and 1 pages', () => {
    const m = makeMachine('none');
    const pages = Array.from({ length: 5 }, () => allocPhys(m, 1) + 0x1000n);
    const rqs = submit(m.device('nvme0'), pages.map((p) => [p, PAGE]), { maxSegments: 2 });
    expect(rqs.map((r) => [r.sector, blkRqBytes(r), blkRqNrPhysSegments(r)])).toEqual([[0n, 8192, 2], [16n, 8192, 2], [32n, 4096, 1]]);
    expect([...rqs[1].bio].map((r) => r.addr)).toEqual([pages[2], pages[3]]);
  });

  it('max_sectors splits a contiguous bio_vec in the middle', () => {
    const m = makeMachine('none');
    const p = allocPhys(m, 4);
    const rqs = submit(m.device('nvme0'), [[p, 64 * KiB]], { maxHwSectors: 32 });
    expect(rqs.map((r) => [r.sector, r.dataLen])).toEqual([[0n, 16384], [32n, 16384], [64n, 16384], [96n, 16384]]);
    expect([...rqs[2].bio].map((r) => r.addr)).toEqual([p + 32768n]);
  });

  it('a segment is cut at max_segment_size and at the segment boundary, not the request', () => {
    const m = makeMachine('none');
    const p = allocPhys(m, 5); // 128 KiB, aligned to 128 KiB
    const rq = submit(m.device('nvme0'), [[p + 48n * 1024n, 32 * KiB]], { maxSegmentSize: 8192, maxHwSectors: 1024 });
    expect(rq.length).toBe(1);
    expect(rq[0].nrPhysSegments).toBe(4);
    const rb = submit(m.device('nvme0'), [[p + 48n * 1024n, 32 * KiB]], { segBoundaryMask: 0xffffn, maxHwSectors: 1024 });
    expect(rb[0].nrPhysSegments).toBe(2);
    const mp = mapRq(rb[0], m.device('nvme0'));
    expect(mp.segs).toEqual([{ addr: p + 48n * 1024n, len: 16384 }, { addr: p + 64n * 1024n, len: 16384 }]);
    unmapRq(mp, m.device('nvme0'));
  });

  it('virt boundary: splits before a seam that is not aligned, never at a seam that merges', () => {
    const m = makeMachine('none');
    const a = allocPhys(m, 3), b = a + 0x2000n, c = a + 0x4000n;
    const rqs = submit(m.device('nvme0'), [[a, PAGE], [b + 0x200n, 0xe00], [c, PAGE]], { virtBoundaryMask: 4095 });
    expect(rqs.map((r) => [r.sector, r.dataLen])).toEqual([[0n, 4096], [8n, 0xe00 + 4096]]);
    const p = allocPhys(m, 1);
    const merged = submit(m.device('nvme0'), [[p + 0x200n, 0xe00], [p + 0x1000n, 0x200]], { virtBoundaryMask: 4095 });
    expect(merged.length).toBe(1);
  });

  it('records the physical gap of the seams (phys_gap_bit) and refuses IOVA coalescing across it', () => {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    const p = allocPhys(m, 2);
    const [gap] = submit(dev, [[p, 0x200], [p + 0x2400n, 0x200]]);
    expect(gap.physGapBit).toBe(10); // ffs(0x200 | 0x400): the first ends at 0x200
    expect(blkCanDmaMapIova(gap, dev)).toBe(false);
    const [aligned] = submit(dev, [[p, 0x1000], [p + 0x2000n, 0x200]]);
    expect(aligned.physGapBit).toBe(13); // ffs(0x1000 | 0): aligned to 4 KiB
    expect(blkCanDmaMapIova(aligned, dev)).toBe(true);
  });

  it('max_bytes is get_max_io_size() << 9 in 32 bits: 2^23 sectors wrap to 0 (EINVAL), 2^23 + 8 to 4 KiB requests', () => {
    const m = makeMachine('none');
    const p = allocPhys(m, 4);
    const bio = unwrap(bioFromRanges(REQ_OP_WRITE, 0n, phyrs([[p, 64 * KiB]])));
    const at = (s: number) => blkSubmitBio(queue(m.device('nvme0'), { maxHwSectors: s, maxUserSectors: s, maxSegmentSize: 1 << 20 }), bio);
    const fits = at(2 ** 23 - 8);
    expect(fits.ok && fits.value.map((r) => r.dataLen)).toEqual([64 * KiB]);
    const zero = at(2 ** 23);
    expect(zero.ok || zero.errno).toBe('EINVAL');
    const small = at(2 ** 23 + 8);
    expect(small.ok && small.value.map((r) => [r.sector, r.dataLen])).toEqual(Array.from({ length: 16 }, (_, i) => [BigInt(i * 8), PAGE]));
    // one vector within max_fast_segment_size is never split (bio_may_need_split), whatever max_bytes
    const one = blkSubmitBio(queue(m.device('nvme0'), { maxHwSectors: 2 ** 23, maxUserSectors: 2 ** 23 }),
      unwrap(bioFromRanges(REQ_OP_WRITE, 0n, phyrs([[p, PAGE]]))));
    expect(one.ok && one.value.map((r) => r.dataLen)).toEqual([PAGE]);
  });

  it('get_max_io_size(): start + max_sectors wraps in 32 bits, leaving max_sectors itself', () => {
    const m = makeMachine('none');
    const q = queue(m.device('nvme0'), { maxHwSectors: 0xffffffff, maxUserSectors: 0xffffffff, physicalBlockSize: 4096 });
    expect(q.limits.maxSectors).toBe(0xffffffff);
    const p = allocPhys(m, 0);
    expect(getMaxIoSize(q, unwrap(bioFromRanges(REQ_OP_WRITE, 0n, phyrs([[p, PAGE]]))))).toBe(0xfffffff8);
    // sector 2 of a 4 KiB physical block: (2 + 0xffffffff) & ~7 is 0, not above the start
    expect(getMaxIoSize(q, unwrap(bioFromRanges(REQ_OP_WRITE, 2n, phyrs([[p, PAGE]]))))).toBe(0xffffffff);
  });

  it('EINVAL for a vector off dma_alignment; EIO for a bio not a multiple of the logical block', () => {
    const m = makeMachine('none');
    const dev = m.device('nvme0');
    const q = queue(dev);
    const r1 = blkSubmitBio(q, unwrap(bioFromRanges(REQ_OP_READ, 0n, phyrs([[allocPhys(m), PAGE], [allocPhys(m) + 0x100n, 512]]))));
    expect(r1.ok || r1.errno).toBe('EINVAL');
    const r2 = blkSubmitBio(q, unwrap(bioFromRanges(REQ_OP_READ, 0n, phyrs([[allocPhys(m), 1000]]))));
    expect(r2.ok || r2.errno).toBe('EIO');
    const q4 = queue(dev, { logicalBlockSize: 4096, maxSegments: 1 });
    const p = allocPhys(m, 2);
    const r3 = blkSubmitBio(q4, unwrap(bioFromRanges(REQ_OP_READ, 0n, phyrs([[p + 0x1200n, 0xe00], [p, 0x200]]))));
    expect(r3.ok || r3.errno).toBe('EINVAL'); // the split would hold 0xe00 bytes: below one 4 KiB block
  });

  it('EIO for a bio that runs past the disk\'s capacity (bio_check_eod), logged; one that ends at the end passes', () => {
    const m = makeMachine('none');
    const q = queue(m.device('nvme0'));
    expect(bdevNrSectors(q)).toBeNull(); // no driver set a capacity: no end
    const p = allocPhys(m, 1);
    const bio = (sector: bigint, len: number) => unwrap(bioFromRanges(REQ_OP_WRITE, sector, phyrs([[p, len]])));
    expect(blkSubmitBio(q, bio(1n << 40n, 2 * PAGE)).ok).toBe(true);
    setCapacity(q, 64n);
    expect(bdevNrSectors(q)).toBe(64n);
    expect(bdevNrBytes(q)).toBe(64n * 512n);
    expect(unwrap(blkSubmitBio(q, bio(48n, 2 * PAGE)))).toHaveLength(1); // sectors 48..63: the last ones
    const from = m.events.total;
    for (const [sector, len] of [[49n, 2 * PAGE], [64n, 512], [1000n, 512], [0n, 64 * 512 + 512]] as const) {
      const r = blkSubmitBio(q, bio(sector, len));
      expect(r.ok || r.errno, `sector ${sector} len ${len}`).toBe('EIO');
      expect(r.ok || r.message).toMatch(/beyond end of device.*limit=64.*bio_check_eod/);
    }
    expect(m.events.since(from).filter((e) => e.source === 'block' && /attempt to access beyond end of device/.test(e.message))).toHaveLength(4);
    // checked before the alignment (submit_bio_noacct() before blk_mq_submit_bio()): same EIO, the end's reason
    const r = blkSubmitBio(q, unwrap(bioFromRanges(REQ_OP_READ, 70n, phyrs([[p, 1000]]))));
    expect(r.ok || r.message).toMatch(/bio_check_eod/);
    setCapacity(q, 0n);
    const infos = m.events.count('INFO');
    expect(blkSubmitBio(q, bio(0n, 512)).ok || 'EIO').toBe('EIO'); // a disk of no sectors takes nothing
    expect(m.events.count('INFO')).toBe(infos); // and bio_check_eod says nothing about it
    expect(() => setCapacity(q, -1n)).toThrow(RangeError);
  });
});

describe('blk_rq_dma_map_iter_start / _next', () => {
  it('dma-direct: one segment per physical segment at its physical address', () => {
    const m = makeMachine('none');
    const dev = m.device('nvme0');
    const a = allocPhys(m, 2), b = a + 0x2000n;
    const [rq] = submit(dev, [[a, PAGE], [b, 2 * PAGE]]);
    const mp = mapRq(rq, dev);
    expect(mp.status).toBe(BLK_STS_OK);
    expect(mp.coalesced).toBe(false);
    expect(mp.segs).toEqual([{ addr: a, len: PAGE }, { addr: b, len: 2 * PAGE }]);
    unmapRq(mp, dev);
    expect(m.events.count('DMA-DEBUG')).toBe(0);
  });

  it('strict IOMMU, aligned seams: the whole request in one IOVA window, one sync; destroy leaves nothing', () => {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    const p = allocPhys(m, 3);
    const pieces: Array<[bigint, number]> = [[p + 0x200n, PAGE - 0x200], [p + 0x2000n, 2 * PAGE], [p + 0x6000n, 0x600]];
    const [rq] = submit(dev, pieces);
    expect(blkCanDmaMapIova(rq, dev)).toBe(true);
    const links = m.stats.dmaIovaLinks;
    const mp = mapRq(rq, dev);
    expect(mp.coalesced).toBe(true);
    expect(mp.segs.length).toBe(1);
    expect(mp.segs[0].len).toBe(rq.dataLen);
    expect(m.stats.dmaIovaLinks - links).toBe(3);
    const data = pattern(rq.dataLen, 4);
    let at = 0;
    for (const [addr, len] of pieces) { m.mem.write(addr, data.subarray(at, at + len)); at += len; }
    expect(deviceReadSegs(dev, mp.segs)).toEqual(data);
    expect(unmapRq(mp, dev)).toBe(true);
    expect(leafPtes(m)).toBe(0);
    expect(m.events.count('DMA-DEBUG')).toBe(0);
  });

  it('strict IOMMU, a misaligned seam: per-segment dma_map_phys, and blk_rq_dma_unmap leaves the segments to the caller', () => {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    const a = allocPhys(m, 1), b = a + 0x1000n;
    const [rq] = submit(dev, [[a, 0x200], [b + 0x400n, 0x200]]);
    expect(blkCanDmaMapIova(rq, dev)).toBe(false);
    const mp = mapRq(rq, dev);
    expect(mp.coalesced).toBe(false);
    expect(mp.segs.length).toBe(2);
    expect(unmapRq(mp, dev)).toBe(false);
    expect(leafPtes(m)).toBe(0);
    expect(m.events.count('DMA-DEBUG')).toBe(0);
  });

  it('P2P through a switch: PCI bus addresses, nothing mapped; blk_rq_dma_unmap has nothing to do', () => {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    const bar = gpuBar(m);
    const [rq] = submit(dev, [[bar.start, PAGE], [bar.start + 0x10000n, PAGE]], {}, REQ_OP_WRITE, bar.flags);
    const mp = mapRq(rq, dev);
    expect(mp.iter.p2pdma.map).toBe(PCI_P2PDMA_MAP_BUS_ADDR);
    expect(mp.segs).toEqual([{ addr: bar.start + 0x1000_0000_0000n, len: PAGE }, { addr: bar.start + 0x10000n + 0x1000_0000_0000n, len: PAGE }]);
    expect(leafPtes(m)).toBe(0);
    expect(unmapRq(mp, dev)).toBe(true);
  });

  it('P2P through the host bridge: mapped as MMIO (one IOVA window behind the IOMMU)', () => {
    const m = makeMachine('strict');
    const dev = m.device('nic0');
    const bar = gpuBar(m);
    const [rq] = submit(dev, [[bar.start, 2 * PAGE]], {}, REQ_OP_WRITE, bar.flags);
    const mp = mapRq(rq, dev);
    expect(mp.iter.p2pdma.map).toBe(PCI_P2PDMA_MAP_THRU_HOST_BRIDGE);
    expect(mp.status).toBe(BLK_STS_OK);
    expect(leafPtes(m)).toBe(2);
    expect(unmapRq(mp, dev)).toBe(true);
    expect(leafPtes(m)).toBe(0);
    expect(m.events.count('DMA-DEBUG')).toBe(0);
  });

  it('P2P the topology does not support: BLK_STS_INVAL and nothing mapped', () => {
    const m = makeMachine('strict');
    const dev = m.device('far0');
    const bar = gpuBar(m);
    const [rq] = submit(dev, [[bar.start, PAGE]], {}, REQ_OP_READ, bar.flags);
    const mp = mapRq(rq, dev);
    expect(mp.segs.length).toBe(0);
    expect(mp.status).toBe(BLK_STS_INVAL);
    expect(leafPtes(m)).toBe(0);
  });

  it('a mapping failure ends with BLK_STS_RESOURCE (forced bounce larger than a swiotlb segment)', () => {
    const m = makeMachine('none', 1, { swiotlb: { bytes: 4 * 1024 * 1024, force: true } });
    const dev = m.device('nvme0');
    const p = allocPhys(m, 7); // 512 KiB contiguous: above the 256 KiB swiotlb mapping size
    const [rq] = submit(dev, [[p, 512 * KiB]], { maxHwSectors: 2048, maxSegmentSize: 1 << 20 });
    const mp = mapRq(rq, dev);
    expect(mp.segs.length).toBe(0);
    expect(mp.status).toBe(BLK_STS_RESOURCE);
  });

  it('kernel behaviour kept: a bio_vec cut by max_segment_size at a misaligned point fails the coalesced map (dma_iova_link WARN, BLK_STS_IOERR)', () => {
    // req_phys_gap_mask() sees only the seams between bio_vecs, not the cuts blk_map_iter_next()
    // makes inside one: the second piece starts 512 bytes into a granule at a non-zero window
    // offset, which dma_iova_link() refuses with WARN_ON_ONCE and -EIO; the window is destroyed.
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    const p = allocPhys(m, 1);
    const [rq] = submit(dev, [[p + 0x200n, 0x1200]], { maxSegmentSize: 4096 });
    expect(rq.nrPhysSegments).toBe(2);
    expect(blkCanDmaMapIova(rq, dev)).toBe(true);
    const mp = mapRq(rq, dev);
    expect(mp.segs.length).toBe(0);
    expect(mp.status).toBe(BLK_STS_IOERR);
    expect(m.events.count('WARN')).toBe(1);
    expect(leafPtes(m)).toBe(0);
    expect(m.stats.iovaAllocs - m.stats.iovaFrees).toBe(0);
  });

  it('errno_to_blk_status as block/blk-core.c has it', () => {
    expect(errnoToBlkStatus('ENOMEM')).toBe(BLK_STS_RESOURCE);
    expect(errnoToBlkStatus('EINVAL')).toBe(BLK_STS_INVAL);
    expect(errnoToBlkStatus('EREMOTEIO')).toBe(BLK_STS_TARGET);
    expect(errnoToBlkStatus('EFAULT')).toBe(BLK_STS_IOERR);
  });
});

describe('batched IOMMU map of a coalesced request (RequestQueue.batchIommuMap)', () => {
  it('links the request with one table walk: the same DMA window and bytes, fewer iommuTableWalkSteps than per-segment links', () => {
    const steps: number[] = [];
    const seen: string[] = [];
    for (const batch of [false, true]) {
      const m = makeMachine('strict');
      const dev = m.device('nvme0');
      const q = unwrap(blkMqInitQueue(dev, { virtBoundaryMask: 4095, maxSegmentSize: 0xffff_ffff }));
      q.batchIommuMap = batch;
      // eight scattered pages: eight segments, every seam page-aligned, so the request coalesces
      const base = allocPhys(m, 5);
      const src = PhyrList.from(Array.from({ length: 8 }, (_, i) => ({ addr: base + BigInt(i * 3 * PAGE), len: PAGE, flags: 0 })));
      const data = pattern(8 * PAGE, 5);
      let at = 0;
      for (const r of src) { m.mem.write(r.addr, data.subarray(at, at + r.len)); at += r.len; }
      const [rq] = unwrap(blkSubmitBio(q, unwrap(bioFromRanges(REQ_OP_WRITE, 0n, src))));
      const before = m.stats.iommuTableWalkSteps;
      const st = new DmaIovaState();
      const iter = new BlkDmaIter();
      expect(blkRqDmaMapIterStart(rq, dev, st, iter)).toBe(true);
      expect(blkRqDmaMapCoalesce(st)).toBe(true);
      steps.push(m.stats.iommuTableWalkSteps - before);
      const rd = dev.dmaRead(iter.addr, iter.len);
      expect(rd.ok && rd.value).toEqual(data);
      seen.push(`${iter.len} ${m.stats.dmaIovaLinks}`);
      expect(blkRqDmaUnmap(rq, dev, st, iter.len)).toBe(true);
      expect(m.stats.iommuLeafPtesWritten - m.stats.iommuLeafPtesCleared).toBe(0);
    }
    expect(seen[1]).toBe(seen[0]);
    // per segment: a walk from the root (3 levels above the leaf table) for each of the 8 links
    expect(steps[0]).toBe(8 * 3);
    expect(steps[1]).toBeLessThan(steps[0]);
  });
});

describe('PAGE_SIZE is the page size of the queue\'s machine (16 KiB and 64 KiB pages)', () => {
  const pageSizes = [16 * KiB, 64 * KiB];
  /** makeMachine('none') with pages of ps bytes (every BAR at least a page). */
  const machineWith = (ps: number) => makeMachine('none', 1, {
    pageSize: ps,
    pci: PCI_NODES.map((n) => (n.bars ? { ...n, bars: n.bars.map((b) => ({ ...b, bytes: Math.max(b.bytes, ps) })) } : n)),
  });
  const errno = (r: { ok: boolean; errno?: string }) => (r.ok ? 'ok' : r.errno);

  it.each(pageSizes)('blk_validate_limits at PAGE_SIZE %i: max_hw_sectors >= PAGE_SECTORS, fast segment and dma_alignment up to PAGE_SIZE', (ps) => {
    const m = machineWith(ps);
    const dev = m.device('nvme0');
    const dev4k = makeMachine('none').device('nvme0');
    const pageSectors = ps / 512;
    expect(queue(dev).pageSize).toBe(ps);
    // block/blk-settings.c: blk_validate_limits(): max_hw_sectors below PAGE_SECTORS is EINVAL;
    // one 4 KiB page of sectors is enough on a 4 KiB machine only
    expect(errno(blkMqInitQueue(dev, { maxHwSectors: 8 }))).toBe('EINVAL');
    expect(errno(blkMqInitQueue(dev4k, { maxHwSectors: 8 }))).toBe('ok');
    expect(errno(blkMqInitQueue(dev, { maxHwSectors: pageSectors - 1 }))).toBe('EINVAL');
    expect(queue(dev, { maxHwSectors: pageSectors }).limits.maxHwSectors).toBe(pageSectors);
    expect(errno(blkValidateLimits({ maxHwSectors: 8 }, ps))).toBe('EINVAL');
    // max_fast_segment_size = min(seg_size, PAGE_SIZE)
    expect(queue(dev).limits.maxFastSegmentSize).toBe(Math.min(ps, 64 * KiB));
    expect(queue(dev, { virtBoundaryMask: 4095 }).limits.maxFastSegmentSize).toBe(ps);
    expect(queue(dev4k, { virtBoundaryMask: 4095 }).limits.maxFastSegmentSize).toBe(4096);
    // dma_alignment may be up to PAGE_SIZE
    expect(queue(dev, { dmaAlignment: ps - 1 }).limits.dmaAlignment).toBe(ps - 1);
    expect(errno(blkMqInitQueue(dev4k, { dmaAlignment: ps - 1 }))).toBe('EINVAL');
    expect(errno(blkMqInitQueue(dev, { dmaAlignment: 2 * ps - 1 }))).toBe('EINVAL');
    // the floors that are BLK_MIN_SEGMENT_SIZE (block/blk.h), 4096 whatever PAGE_SIZE is
    expect(queue(dev, { maxSegmentSize: 4096 }).limits.maxFastSegmentSize).toBe(4096);
    expect(queue(dev, { segBoundaryMask: 4095n }).limits.maxFastSegmentSize).toBe(4096);
    expect(queue(dev, { maxUserSectors: 8 }).limits.maxSectors).toBe(8);
    expect(errno(blkMqInitQueue(dev, { maxSegmentSize: 2048 }))).toBe('EINVAL');
  });

  it.each(pageSizes)('bv_offset is bvec_phys mod PAGE_SIZE (%i), in the bio, in the requests and in the sg table', (ps) => {
    const m = machineWith(ps);
    const p = allocPhys(m, 1), q = allocPhys(m);
    const src = phyrs([[p + BigInt(ps) + 0x1200n, 0xe00], [q + 0x3000n, 0x1000]]);
    const bio = unwrap(bioFromRanges(REQ_OP_WRITE, 0n, src, { pageSize: m.pageSize }));
    expect(bio.pageSize).toBe(ps);
    const vecs = (b: typeof bio) => [0, 1].map((i) => [b.vecs.pfnAt(i), b.vecs.offsetAt(i)]);
    expect(vecs(bio)).toEqual([[p / BigInt(ps) + 1n, 0x1200], [q / BigInt(ps), 0x3000]]);
    // a bio built without the machine's page size has 4 KiB offsets until it meets the queue
    const bio4k = unwrap(bioFromRanges(REQ_OP_WRITE, 0n, src));
    expect(bio4k.vecs.offsetAt(1)).toBe(0);
    const [rq] = unwrap(blkSubmitBio(queue(m.device('nvme0')), bio4k));
    expect(rq.bio.pageSize).toBe(ps);
    expect(vecs(rq.bio)).toEqual(vecs(bio));
    expect([...rq.bio].map((r) => [r.addr, r.len])).toEqual([[p + BigInt(ps) + 0x1200n, 0xe00], [q + 0x3000n, 0x1000]]);
    // block/blk-mq-dma.c: __blk_rq_map_sg(): sg_set_page(phys_to_page(paddr), offset_in_page(paddr))
    const sgt = unwrap(blkRqMapSg(rq));
    expect(sgt.pageSize).toBe(ps);
    expect([0, 1].map((i) => [sgt.pfnAt(i), sgt.offsetAt(i), sgt.lengthAt(i)]))
      .toEqual([[p / BigInt(ps) + 1n, 0x1200, 0xe00], [q / BigInt(ps), 0x3000, 0x1000]]);
  });

  it.each(pageSizes)('dma_alignment and the virt boundary test bv_offset, an offset in a %i-byte page', (ps) => {
    const m = machineWith(ps);
    const dev = m.device('nvme0');
    const p = allocPhys(m), q = allocPhys(m);
    // block/blk-merge.c: bio_split_io_at(): bv_offset & dma_alignment (8191 is a valid mask at
    // PAGE_SIZE >= 8 KiB); two vectors, as block/blk.h: bio_may_need_split() lets one short vector by
    const aligned = queue(dev, { dmaAlignment: 8191 });
    const two = (off: bigint) => unwrap(bioFromRanges(REQ_OP_WRITE, 0n, phyrs([[p + off, 0x2000], [q, 0x2000]]), { pageSize: ps }));
    expect(errno(blkSubmitBio(aligned, two(0x1000n)))).toBe('EINVAL');
    expect(errno(blkSubmitBio(aligned, two(0x2000n)))).toBe('ok');
    // block/blk.h: bvec_gap_to_prev() with virt_boundary_mask PAGE_SIZE - 1: the second vector starts
    // 4 KiB into its page, a gap at this PAGE_SIZE (two requests) ...
    const pieces: Array<[bigint, number]> = [[p, ps], [q + 0x1000n, ps - 0x1000]];
    const data = pattern(2 * ps - 0x1000, 9);
    m.mem.write(p, data.subarray(0, ps));
    m.mem.write(q + 0x1000n, data.subarray(ps));
    const rqs = submit(dev, pieces, { virtBoundaryMask: ps - 1, maxHwSectors: 2048 });
    expect(rqs.map((r) => [r.sector, r.dataLen])).toEqual([[0n, ps], [BigInt(ps / 512), ps - 0x1000]]);
    // ... and the requests move the bytes
    const got: Uint8Array[] = [];
    for (const rq of rqs) {
      const mp = mapRq(rq, dev);
      expect(mp.status).toBe(BLK_STS_OK);
      got.push(deviceReadSegs(dev, mp.segs)!);
      unmapRq(mp, dev);
    }
    expect(Buffer.concat(got)).toEqual(Buffer.from(data));
    // ... but not on a 4 KiB machine, where the same physical layout has bv_offset 0 (one request)
    const m4 = makeMachine('none');
    const order = Math.log2(ps / 4096);
    const p4 = allocPhys(m4, order), q4 = allocPhys(m4, order);
    expect(submit(m4.device('nvme0'), [[p4, ps], [q4 + 0x1000n, ps - 0x1000]], { virtBoundaryMask: ps - 1, maxHwSectors: 2048 })
      .map((r) => r.dataLen)).toEqual([2 * ps - 0x1000]);
    expect(m.events.count('DMA-DEBUG')).toBe(0);
  });
});
