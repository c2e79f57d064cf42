import { describe, expect, it } from 'vitest';
import { PCI_NODES, allocPhys, gpuBar, makeMachine, pattern } from '../../../test/fixtures/dma-b-machines.ts';
import { DMA_BIT_MASK, DMA_FROM_DEVICE, DMA_RANGE_BUS, DmaRangeIter, dmaSetMaskAndCoherent } from '../../dma/index.ts';
import { iommuGetDmaDomain, iommuIovaToPhys } from '../../iommu/index.ts';
import type { Machine } from '../../machine/index.ts';
import { FOLL_PCI_P2PDMA, FOLL_WRITE, pinUserPhyrsAll, unpinUserPhyrs, type UserMm } from '../../mm/index.ts';
import { UMEM_METHODS, umemMap, umemMapPinned, type UmemSegments } from './umem.ts';
import { PhyrList } from '../../phyr/index.ts';

const PAGE = 4096;

describe('umemMap', () => {
  it.each(UMEM_METHODS)('%s: maps a user buffer, moves bytes both ways, and its undo leaves nothing pinned or mapped', (method) => {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(64));
    const mm = m.newProcess();
    const len = 64 * PAGE;
    const va = mm.mmap({ len, backing: 'anon', populate: true });
    if (!va.ok) throw new Error(va.errno);
    const start = va.value + 0x200n;
    const n = len - 0x200;
    const cpu = new Uint8Array(n).map((_, i) => (i * 7 + 3) & 0xff);
    expect(mm.writeUser(start, cpu).ok).toBe(true);
    const r = umemMap(dev, mm, start, n, method);
    if (!r.ok) throw new Error(`${r.errno} ${r.message}`);
    const mp = r.value;
    const segs = mp.segments;
    let total = 0;
    for (let i = 0; i < segs.count; i++) total += segs.lenAt(i);
    expect(total).toBe(n);
    // the device reads what the CPU wrote, in buffer order, then overwrites it
    const seen = new Uint8Array(n);
    let at = 0;
    for (let i = 0; i < segs.count; i++) {
      const x = dev.dmaRead(segs.addrAt(i), segs.lenAt(i));
      if (!x.ok) throw new Error(x.errno);
      seen.set(x.value, at);
      at += x.value.length;
      expect(dev.dmaWrite(segs.addrAt(i), new Uint8Array(segs.lenAt(i)).fill(0xc3)).ok).toBe(true);
    }
    expect(seen).toEqual(cpu);
    mp.unmap();
    mp.unmap();
    const back = mm.readUser(start, n);
    expect(back.ok && back.value.every((b) => b === 0xc3)).toBe(true);
    expect(m.stats.iommuLeafPtesWritten - m.stats.iommuLeafPtesCleared).toBe(0);
    expect(m.events.count('DMA-DEBUG')).toBe(0);
    expect(m.teardown()).toBe(0);
  });

  it.each(UMEM_METHODS)('%s: a buffer that runs into a hole is refused whole (the short pin is undone), naming where', (method) => {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    const mm = m.newProcess();
    const va = mm.mmap({ len: 8 * PAGE, backing: 'anon', populate: true });
    if (!va.ok) throw new Error(va.errno);
    expect(mm.munmap(va.value + BigInt(4 * PAGE), 4 * PAGE).ok).toBe(true);
    const r = umemMap(dev, mm, va.value, 8 * PAGE, method);
    expect(r.ok ? 'ok' : r.errno).toBe('EFAULT');
    if (!r.ok) expect(r.message).toMatch(/pinned .* of .*; at 0x/);
    expect(m.listPins()).toEqual([]);
    expect(m.teardown()).toBe(0);
  });

  it('ibUmemBatches: the same DMA segments as one table build; the table is ib_umem_get\'s, whole chunks of 128 entries while pages are left', () => {
    const m = makeMachine('none', 1, { hugetlb: { '2M': 4 } });
    const dev = m.device('nvme0');
    const mm = m.newProcess();
    const len = 4 * 1024 * 1024;
    const va = mm.mmap({ len, backing: 'hugetlb-2M', populate: true });
    if (!va.ok) throw new Error(va.errno);
    const segs = (u: { segments: { count: number; addrAt(i: number): bigint; lenAt(i: number): number } }): string[] =>
      Array.from({ length: u.segments.count }, (_, i) => `${u.segments.addrAt(i)}+${u.segments.lenAt(i)}`);
    const one = umemMap(dev, mm, va.value + 0x100n, len - 0x200, 'sgtable');
    const batched = umemMap(dev, mm, va.value + 0x100n, len - 0x200, 'sgtable', { ibUmemBatches: true });
    if (!one.ok || !batched.ok) throw new Error('umemMap');
    expect(segs(batched.value)).toEqual(segs(one.value));
    const pageArray = 8 * (len / PAGE);
    // 64 entries (nvme0's 64 KiB max segment): one sg_table sized to them, against ib_umem_get's
    // first append, which is told 512 more pages follow and takes a whole chunk of 128
    expect(one.value.segments.count).toBe(64);
    expect(one.value.metadataBytes - pageArray).toBe(16 + 64 * 32);
    expect(batched.value.metadataBytes - pageArray).toBe(32 + 128 * 32);
    one.value.unmap();
    batched.value.unmap();
    expect(m.listPins()).toEqual([]);
    expect(m.teardown()).toBe(0);
  });

  it('names the call that failed, and leaves nothing pinned', () => {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    const mm = m.newProcess();
    const r = umemMap(dev, mm, 0x10000n, PAGE, 'map-phyrs');
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.message).toMatch(/^pinUserPhyrs: /);
    expect(m.teardown()).toBe(0);
  });
});

/**
 * One user VA range over three adjacent VMAs: anon RAM, a PFN map of gpu0's P2P BAR (gpu0 and
 * nvme0 share a switch: PCI_P2PDMA_MAP_BUS_ADDR for nvme0), anon RAM again: the kind of range an
 * RDMA MR may span.
 */
function mixedBuffer(m: Machine): { mm: UserMm; va: bigint; len: number; barOff: number; barLen: number } {
  const mm = m.newProcess();
  const barLen = 4 * PAGE;
  const bar = mm.mmap({ len: barLen, backing: { device: 'gpu0.bar0' } });
  if (!bar.ok) throw new Error(bar.errno);
  const below = mm.mmap({ len: 3 * PAGE, backing: 'anon', populate: true, addr: bar.value - BigInt(3 * PAGE) });
  const above = mm.mmap({ len: 2 * PAGE, backing: 'anon', populate: true, addr: bar.value + BigInt(barLen) });
  if (!below.ok || !above.ok) throw new Error('mmap');
  return { mm, va: below.value, len: 9 * PAGE, barOff: 3 * PAGE, barLen };
}

const segList = (s: UmemSegments): Array<[bigint, number]> => Array.from({ length: s.count }, (_, i): [bigint, number] => [s.addrAt(i), s.lenAt(i)]);

describe('a range mixing RAM and a P2P BAR reached by bus address', () => {
  it('the list really is mixed: the pin gives RAM, BAR and RAM ranges and the middle one is a bus address for nvme0', () => {
    const m = makeMachine('strict');
    const { mm, va, len } = mixedBuffer(m);
    const p = pinUserPhyrsAll(mm, va, len, FOLL_WRITE | FOLL_PCI_P2PDMA);
    if (!p.ok) throw new Error(p.errno);
    const it = new DmaRangeIter(m.device('nvme0'), p.value);
    const kinds: number[] = [];
    for (let r = it.next(); r.ok && r.value; r = it.next()) kinds.push(it.kind);
    expect(kinds.filter((k) => k === DMA_RANGE_BUS).length).toBe(1);
    expect(kinds.length).toBeGreaterThanOrEqual(3);
    unpinUserPhyrs(p.value);
    expect(m.teardown()).toBe(0);
  });

  it.each(UMEM_METHODS)('%s: the BAR is given by its bus address, never linked into an IOVA; bytes move both ways; unmap undoes exactly that', (method) => {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    const { mm, va, len, barOff, barLen } = mixedBuffer(m);
    const bar = gpuBar(m);
    const busOffset = 0x1000_0000_0000n;
    const cpu = pattern(len, 11);
    expect(mm.writeUser(va, cpu).ok).toBe(true);
    const ptes = m.stats.iommuLeafPtesWritten;
    const r = umemMap(dev, mm, va, len, method, { p2p: true });
    if (!r.ok) throw new Error(`${r.errno} ${r.message}`);
    const segs = segList(r.value.segments);
    // buffer order: RAM (3 pages), the BAR's bus address (4 pages), RAM (2 pages)
    let at = 0;
    const barSeg = segs.findIndex(([a]) => a === bar.start + busOffset);
    expect(barSeg).toBeGreaterThan(0);
    for (let i = 0; i < barSeg; i++) at += segs[i][1];
    expect(at).toBe(barOff);
    expect(segs[barSeg][1]).toBe(barLen);
    expect(segs.reduce((n, [, l]) => n + l, 0)).toBe(len);
    // only the RAM is mapped: 5 pages of IOMMU leaf entries, none for the BAR
    expect(m.stats.iommuLeafPtesWritten - ptes).toBe(5);
    const dom = iommuGetDmaDomain(dev)!;
    for (const [a, l] of segs) {
      if (a === bar.start + busOffset) continue;
      for (let o = 0; o < l; o += PAGE) {
        const phys = iommuIovaToPhys(dom, a + BigInt(o));
        expect(phys >= bar.start && phys < bar.start + BigInt(bar.len)).toBe(false);
      }
    }
    // the device reads what the CPU wrote, in buffer order, then overwrites it
    const seen = new Uint8Array(len);
    at = 0;
    for (const [a, l] of segs) {
      const x = dev.dmaRead(a, l);
      if (!x.ok) throw new Error(`${x.errno} at 0x${a.toString(16)}`);
      seen.set(x.value, at);
      at += l;
    }
    expect(seen).toEqual(cpu);
    const out = pattern(len, 12);
    at = 0;
    for (const [a, l] of segs) {
      expect(dev.dmaWrite(a, out.subarray(at, at + l)).ok).toBe(true);
      at += l;
    }
    r.value.unmap();
    const back = mm.readUser(va, len);
    expect(back.ok ? back.value : null).toEqual(out);
    expect(m.mem.read(bar.start, barLen)).toEqual(out.subarray(barOff, barOff + barLen));
    expect(m.stats.iommuLeafPtesWritten - m.stats.iommuLeafPtesCleared).toBe(0);
    expect(m.events.count('DMA-DEBUG')).toBe(0);
    expect(m.events.count('MODEL-CHECK')).toBe(0);
    expect(m.events.count('WARN')).toBe(0);
    expect(m.listPins()).toEqual([]);
    expect(m.teardown()).toBe(0);
  });

  it('two-step: one window sized to the RAM only, its two pieces around the bus address, the same segments as dmaMapPhyrs', () => {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    const { mm, va, len, barOff, barLen } = mixedBuffer(m);
    const two = umemMap(dev, mm, va, len, 'two-step', { p2p: true });
    if (!two.ok) throw new Error(`${two.errno} ${two.message}`);
    const segs = segList(two.value.segments);
    expect(segs.map(([, l]) => l)).toEqual([barOff, barLen, len - barOff - barLen]);
    // the window is contiguous over the RAM: the piece after the bus address follows the first
    expect(segs[2][0]).toBe(segs[0][0] + BigInt(barOff));
    // the dma_iova_state and one kept bus-address segment
    expect(two.value.metadataBytes).toBe(32);
    two.value.unmap();
    const phyrs = umemMap(dev, mm, va, len, 'map-phyrs', { p2p: true });
    if (!phyrs.ok) throw new Error(phyrs.errno);
    expect(segList(phyrs.value.segments).map(([, l]) => l)).toEqual([barOff, barLen, len - barOff - barLen]);
    phyrs.value.unmap();
    expect(m.teardown()).toBe(0);
  });

  it('two-step from a bus address first: the window is allocated for the RAM after it', () => {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    const { mm, va, len, barOff } = mixedBuffer(m);
    const start = va + BigInt(barOff);
    const n = len - barOff;
    const cpu = pattern(n, 13);
    expect(mm.writeUser(start, cpu).ok).toBe(true);
    const r = umemMap(dev, mm, start, n, 'two-step', { p2p: true });
    if (!r.ok) throw new Error(`${r.errno} ${r.message}`);
    const segs = segList(r.value.segments);
    expect(segs.map(([, l]) => l)).toEqual([4 * PAGE, 2 * PAGE]);
    expect(segs[0][0]).toBe(gpuBar(m).start + 0x1000_0000_0000n);
    const got = segs.map(([a, l]) => dev.dmaRead(a, l));
    expect(got.every((x) => x.ok)).toBe(true);
    expect(Uint8Array.from(got.flatMap((x) => (x.ok ? [...x.value] : [])))).toEqual(cpu);
    r.value.unmap();
    expect(m.stats.iommuLeafPtesWritten - m.stats.iommuLeafPtesCleared).toBe(0);
    expect(m.teardown()).toBe(0);
  });

  it('umemMapPinned: a caller\'s pin mapped by two-step; unmap leaves the pin', () => {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    const { mm, va, len } = mixedBuffer(m);
    const p = pinUserPhyrsAll(mm, va, len, FOLL_WRITE | FOLL_PCI_P2PDMA);
    if (!p.ok) throw new Error(p.errno);
    const r = umemMapPinned(dev, p.value, 'two-step');
    if (!r.ok) throw new Error(`${r.errno} ${r.message}`);
    expect(r.value.iova).not.toBeNull();
    expect(r.value.segments.count).toBe(3);
    r.value.unmap();
    r.value.unmap();
    expect(m.listPins().length).toBeGreaterThan(0);
    expect(m.stats.iommuLeafPtesWritten - m.stats.iommuLeafPtesCleared).toBe(0);
    unpinUserPhyrs(p.value);
    expect(() => umemMapPinned(dev, p.value, 'sgtable')).toThrow(RangeError);
    expect(m.teardown()).toBe(0);
  });
});

describe('umemMapPinned two-step: a window of MMIO only', () => {
  it('is destroyed with DMA_ATTR_MMIO (blk_rq_dma_unmap for THRU_HOST_BRIDGE): a non-coherent device gets no cache maintenance on the BAR, and does on RAM', () => {
    const m = makeMachine('strict', 1, { pci: PCI_NODES.map((n) => (n.name === 'nic0' ? { ...n, coherent: false } : n)) });
    const dev = m.device('nic0');
    const bar = gpuBar(m);
    const cacheOps = (list: PhyrList): number => {
      const r = umemMapPinned(dev, list, 'two-step', { dir: DMA_FROM_DEVICE });
      expect(r.ok).toBe(true);
      if (!r.ok) return -1;
      expect(r.value.iova).not.toBeNull();
      const bytes = pattern(list.totalLen, 9);
      expect(dev.dmaWrite(r.value.segments.addrAt(0), bytes).ok).toBe(true);
      expect(m.mem.read(list.addrAt(0), list.totalLen)).toEqual(bytes);
      const before = m.events.count('CACHE');
      r.value.unmap();
      return m.events.count('CACHE') - before;
    };
    expect(cacheOps(PhyrList.from([{ addr: allocPhys(m, 1), len: 8192, flags: 0 }]))).toBeGreaterThan(0);
    expect(cacheOps(PhyrList.from([{ addr: bar.start, len: 8192, flags: bar.flags }]))).toBe(0);
    expect(m.events.count('DMA-DEBUG')).toBe(0);
  });
});

