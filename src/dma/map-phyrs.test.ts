import { describe, expect, it } from 'vitest';
import { PCI_NODES, allocPhys, gpuBar, makeMachine, pattern, phyrs, type IommuMode } from '../../test/fixtures/dma-b-machines.ts';
import type { Machine } from '../machine/index.ts';
import type { Device } from '../pci/index.ts';
import { PageArray, PhyrList, RANGE_MMIO, type DmaList, type RangeSource } from '../phyr/index.ts';
import { MiB } from '../base/index.ts';
import { dmaSetMask } from './mask.ts';
import { dmaMapPhys } from './mapping.ts';
import { DMA_ATTR_MMIO, DMA_BIDIRECTIONAL, DMA_BIT_MASK, DMA_FROM_DEVICE, DMA_TO_DEVICE } from './constants.ts';
import { dmaMapPhyrs, dmaPhyrsMappings, dmaUnmapPhyrs } from './map-phyrs.ts';

const PAGE = 4096;
const leafPtes = (m: Machine) => m.stats.iommuLeafPtesWritten - m.stats.iommuLeafPtesCleared;

/** Device writes a pattern over the DMA list; returns it. */
function deviceWritesList(dev: Device, dl: DmaList, seed: number): Uint8Array {
  const data = pattern(dl.totalLen, seed);
  let at = 0;
  for (const r of dl) {
    expect(dev.dmaWrite(r.addr, data.subarray(at, at + r.len)).ok).toBe(true);
    at += r.len;
  }
  return data;
}

/** CPU bytes of a range source, in order. */
function cpuRead(m: Machine, src: RangeSource): Uint8Array {
  const out: number[] = [];
  for (const r of src) out.push(...m.mem.read(r.addr, r.len));
  return new Uint8Array(out);
}

function deviceReadsList(dev: Device, dl: DmaList): Uint8Array {
  const out: number[] = [];
  for (const r of dl) {
    const x = dev.dmaRead(r.addr, r.len);
    expect(x.ok).toBe(true);
    if (x.ok) out.push(...x.value);
  }
  return new Uint8Array(out);
}

describe('dmaMapPhyrs', () => {
  it('dma-direct without translation shares the input storage (zero copy)', () => {
    const m = makeMachine('none');
    const dev = m.device('nvme0');
    const list = phyrs([[allocPhys(m), PAGE], [allocPhys(m, 1) + 0x10n, 5000]]);
    const r = dmaMapPhyrs(dev, list, DMA_BIDIRECTIONAL, 0);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value.list.sharesStorage).toBe(true);
    expect(r.value.list.kernelBytes).toBe(0);
    const w = deviceWritesList(dev, r.value.list, 1);
    expect(cpuRead(m, list)).toEqual(w);
    dmaUnmapPhyrs(dev, r.value, DMA_BIDIRECTIONAL, 0);
    expect(m.events.count('DMA-DEBUG')).toBe(0);
  });

  it.each<IommuMode>(['strict', 'lazy'])('behind an IOMMU (%s): aligned seams give one contiguous DMA range', (mode) => {
    const m = makeMachine(mode);
    const dev = m.device('nvme0');
    const list = phyrs([[allocPhys(m) + 0x200n, PAGE - 0x200], [allocPhys(m, 2), 3 * PAGE], [allocPhys(m), 100]]);
    const r = dmaMapPhyrs(dev, list, DMA_BIDIRECTIONAL, 0);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value.how).toBe('iova');
    expect(r.value.list.count).toBe(1);
    expect(r.value.list.totalLen).toBe(list.totalLen);
    expect(m.stats.dmaIovaLinks).toBe(3);
    expect(m.stats.dmaIovaSyncs).toBe(1);
    const w = deviceWritesList(dev, r.value.list, 2);
    expect(cpuRead(m, list)).toEqual(w);
    const c = pattern(list.totalLen, 3);
    let at = 0;
    for (const x of list) { m.mem.write(x.addr, c.subarray(at, at + x.len)); at += x.len; }
    expect(deviceReadsList(dev, r.value.list)).toEqual(c);
    dmaUnmapPhyrs(dev, r.value, DMA_BIDIRECTIONAL, 0);
    expect(leafPtes(m)).toBe(0);
    expect(m.events.count('DMA-DEBUG')).toBe(0);
    expect(m.events.count('WARN')).toBe(0);
  });

  it('unaligned interior seams fall back to one mapping per range', () => {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    const list = phyrs([[allocPhys(m), 100], [allocPhys(m) + 8n, 200]]);
    const r = dmaMapPhyrs(dev, list, DMA_TO_DEVICE, 0);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value.how).toBe('ranges');
    expect(r.value.list.count).toBe(2);
    expect(m.stats.dmaIovaLinks).toBe(0);
    m.mem.write(list.addrAt(0), pattern(100, 1));
    m.mem.write(list.addrAt(1), pattern(200, 2));
    expect(deviceReadsList(dev, r.value.list)).toEqual(cpuRead(m, list));
    dmaUnmapPhyrs(dev, r.value, DMA_TO_DEVICE, 0);
    expect(leafPtes(m)).toBe(0);
    expect(m.events.count('DMA-DEBUG')).toBe(0);
  });

  it.each<IommuMode>(['strict', 'none'])('maps every range of a source that walks more ranges than its count says (%s)', (mode) => {
    // the columns classify starts with hold `count` rows: a walk with more must grow them (that a
    // walk of exactly `count` stops without growing them rests on DmaRangeIter.atEnd, tested in
    // map-iter.test.ts; the mapping is the same either way)
    const m = makeMachine(mode);
    const dev = m.device('nvme0');
    const inner = phyrs(Array.from({ length: 5 }, (_, i): [bigint, number] => [allocPhys(m), PAGE - 8 * i]));
    const lying: RangeSource = {
      layout: inner.layout, count: 1, totalLen: inner.totalLen, kernelBytes: inner.kernelBytes,
      addrFitsNumber: inner.addrFitsNumber, cursor: (o) => inner.cursor(o), [Symbol.iterator]: () => inner[Symbol.iterator](),
    };
    for (const src of [lying, inner]) {
      const r = dmaMapPhyrs(dev, src, DMA_TO_DEVICE, 0);
      expect(r.ok).toBe(true);
      if (!r.ok) return;
      expect(r.value.list.totalLen).toBe(inner.totalLen);
      const c = pattern(inner.totalLen, 7);
      let at = 0;
      for (const x of inner) { m.mem.write(x.addr, c.subarray(at, at + x.len)); at += x.len; }
      expect(deviceReadsList(dev, r.value.list)).toEqual(c);
      dmaUnmapPhyrs(dev, r.value, DMA_TO_DEVICE, 0);
    }
    expect(m.events.count('DMA-DEBUG')).toBe(0);
  });

  it('a window of MMIO only (P2P through the host bridge) is destroyed with DMA_ATTR_MMIO: no cache maintenance on I/O memory', () => {
    // nic0 reaches gpu0's BAR through the host bridge; made non-coherent, its RAM windows get
    // cache maintenance at unmap and its MMIO window must not (blk_rq_dma_unmap passes DMA_ATTR_MMIO)
    const m = makeMachine('strict', 1, { pci: PCI_NODES.map((n) => (n.name === 'nic0' ? { ...n, coherent: false } : n)) });
    const dev = m.device('nic0');
    expect(dev.dmaCoherent).toBe(false);
    const bar = gpuBar(m);
    const cacheOps = (list: RangeSource): number => {
      const r = dmaMapPhyrs(dev, list, DMA_FROM_DEVICE, 0);
      expect(r.ok).toBe(true);
      if (!r.ok) return -1;
      expect(r.value.how).toBe('iova');
      const w = deviceWritesList(dev, r.value.list, 5);
      expect(cpuRead(m, list)).toEqual(w);
      const before = m.events.count('CACHE');
      dmaUnmapPhyrs(dev, r.value, DMA_FROM_DEVICE, 0);
      return m.events.count('CACHE') - before;
    };
    expect(cacheOps(phyrs([[allocPhys(m, 1), 2 * PAGE]]))).toBeGreaterThan(0);
    expect(cacheOps(PhyrList.from([{ addr: bar.start, len: 2 * PAGE, flags: bar.flags }]))).toBe(0);
    expect(leafPtes(m)).toBe(0);
    expect(m.events.count('DMA-DEBUG')).toBe(0);
  });

  it('accepts any range source (a page array)', () => {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    const pfns = new Float64Array([Number(allocPhys(m) / 4096n), Number(allocPhys(m) / 4096n)]);
    const pa = new PageArray(pfns, { pageSize: PAGE, offset: 0x40 });
    const r = dmaMapPhyrs(dev, pa, DMA_FROM_DEVICE, 0);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value.list.totalLen).toBe(pa.totalLen);
    const w = deviceWritesList(dev, r.value.list, 4);
    expect(cpuRead(m, pa)).toEqual(w);
    dmaUnmapPhyrs(dev, r.value, DMA_FROM_DEVICE, 0);
  });

  it('P2P through a switch: the bus address, nothing mapped in the IOMMU', () => {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    const bar = gpuBar(m);
    const list = phyrs([[bar.start + 0x2000n, 2 * PAGE]], bar.flags);
    const r = dmaMapPhyrs(dev, list, DMA_FROM_DEVICE, 0);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value.list.addrAt(0)).toBe(bar.start + 0x2000n + 0x1000_0000_0000n);
    expect(leafPtes(m)).toBe(0);
    const w = deviceWritesList(dev, r.value.list, 5);
    expect(m.mem.read(bar.start + 0x2000n, 2 * PAGE)).toEqual(w);
    dmaUnmapPhyrs(dev, r.value, DMA_FROM_DEVICE, 0);
  });

  it('P2P through the host bridge: an MMIO mapping in the IOVA window', () => {
    const m = makeMachine('strict');
    const dev = m.device('nic0');
    const bar = gpuBar(m);
    const ram = allocPhys(m);
    const list = phyrs([[ram, PAGE]]);
    const mixed = phyrs([[bar.start, 2 * PAGE]], bar.flags);
    const r = dmaMapPhyrs(dev, mixed, DMA_BIDIRECTIONAL, 0);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value.how).toBe('iova');
    expect(r.value.list.addrAt(0)).not.toBe(bar.start);
    const w = deviceWritesList(dev, r.value.list, 6);
    expect(m.mem.read(bar.start, 2 * PAGE)).toEqual(w);
    m.mem.write(bar.start, pattern(2 * PAGE, 7));
    expect(deviceReadsList(dev, r.value.list)).toEqual(pattern(2 * PAGE, 7));
    dmaUnmapPhyrs(dev, r.value, DMA_BIDIRECTIONAL, 0);
    expect(leafPtes(m)).toBe(0);
    expect(list.count).toBe(1);
  });

  it('P2P not supported: EREMOTEIO and nothing mapped', () => {
    const m = makeMachine('strict');
    const dev = m.device('far0');
    const bar = gpuBar(m);
    const list = phyrs([[allocPhys(m), PAGE]]);
    const p2p = phyrs([[bar.start, PAGE]], bar.flags);
    const both = phyrs([[list.addrAt(0), PAGE], [p2p.addrAt(0), PAGE]]);
    expect(both.count).toBe(2);
    const r = dmaMapPhyrs(dev, p2p, DMA_TO_DEVICE, 0);
    expect(r.ok ? 'ok' : r.errno).toBe('EREMOTEIO');
    expect(m.stats.iovaAllocs).toBe(0);
    expect(leafPtes(m)).toBe(0);
  });

  it('an untrusted device cannot bounce MMIO: the error leaves nothing mapped', () => {
    const m = makeMachine('strict');
    const dev = m.device('tb0');
    const bar = gpuBar(m);
    // tb0 reaches gpu0 through the host bridge; an unaligned MMIO range would need a bounce
    const list = phyrs([[bar.start + 0x10n, 100]], bar.flags);
    const r = dmaMapPhyrs(dev, list, DMA_TO_DEVICE, 0);
    expect(r.ok).toBe(false);
    expect(leafPtes(m)).toBe(0);
    expect(m.stats.iovaAllocs).toBe(m.stats.iovaFrees);
  });

  it('double unmap and unmap of a foreign list are reported and do nothing', () => {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    const list = phyrs([[allocPhys(m), PAGE]]);
    const r = dmaMapPhyrs(dev, list, DMA_TO_DEVICE, 0);
    if (!r.ok) throw new Error(r.errno);
    dmaUnmapPhyrs(dev, r.value, DMA_TO_DEVICE, 0);
    dmaUnmapPhyrs(dev, r.value, DMA_TO_DEVICE, 0);
    expect(m.events.count('MODEL-CHECK')).toBe(1);
    expect(leafPtes(m)).toBe(0);
  });

  it('each device lists the mappings it holds, and the handle says whether it is still mapped', () => {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    const a = dmaMapPhyrs(dev, phyrs([[allocPhys(m), PAGE]]), DMA_TO_DEVICE, 0);
    const b = dmaMapPhyrs(dev, phyrs([[allocPhys(m) + 0x10n, 100], [allocPhys(m), PAGE]]), DMA_FROM_DEVICE, 0);
    if (!a.ok || !b.ok) throw new Error('map failed');
    expect(dmaPhyrsMappings(dev)).toEqual([a.value, b.value]);
    expect(b.value.how).toBe('ranges');
    dmaUnmapPhyrs(dev, a.value, DMA_TO_DEVICE, 0);
    expect(a.value.mapped).toBe(false);
    expect(b.value.mapped).toBe(true);
    expect(dmaPhyrsMappings(dev)).toEqual([b.value]);
    dmaUnmapPhyrs(dev, b.value, DMA_FROM_DEVICE, 0);
    expect(dmaPhyrsMappings(dev)).toEqual([]);
    expect(m.events.count('DMA-DEBUG')).toBe(0);
    expect(leafPtes(m)).toBe(0);
  });

  it('empty lists and bad arguments', () => {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    const r = dmaMapPhyrs(dev, phyrs([]), DMA_TO_DEVICE, 0);
    expect(r.ok ? 'ok' : r.errno).toBe('EINVAL');
    expect(() => dmaMapPhyrs(dev, {} as RangeSource, DMA_TO_DEVICE, 0)).toThrow(/list/);
    expect(() => dmaMapPhyrs(dev, phyrs([[0x10000n, 8]]), 7 as 0, 0)).toThrow();
  });

  describe('classifies from the memory, not the caller\'s flags (pci_p2pdma_state)', () => {
    /** The BAR range with no flags at all, as a caller that forgot them would pass it. */
    const bare = (addr: bigint, len: number): PhyrList => PhyrList.from([{ addr, len }]);

    it.each<IommuMode>(['strict', 'none'])('P2P not supported (%s): EREMOTEIO, nothing mapped', (mode) => {
      const m = makeMachine(mode);
      const dev = m.device('far0');
      const bar = gpuBar(m);
      const ram = allocPhys(m);
      for (const list of [bare(bar.start, PAGE), PhyrList.from([{ addr: ram, len: PAGE }, { addr: bar.start, len: PAGE }])]) {
        expect(list.flagsAt(list.count - 1)).toBe(0);
        const r = dmaMapPhyrs(dev, list, DMA_TO_DEVICE, 0);
        expect(r.ok ? 'ok' : r.errno).toBe('EREMOTEIO');
        if (!r.ok) expect(r.message).toMatch(/range \d .*not supported/);
      }
      expect(m.stats.iovaAllocs).toBe(0);
      expect(leafPtes(m)).toBe(0);
      expect(m.stats.dmaMapCalls).toBe(0);
      expect(m.dmaDebug.count()).toBe(0);
    });

    it.each<IommuMode>(['strict', 'none'])('P2P through a switch (%s): the bus address, no IOVA', (mode) => {
      const m = makeMachine(mode);
      const dev = m.device('nvme0');
      const bar = gpuBar(m);
      const r = dmaMapPhyrs(dev, bare(bar.start + 0x3000n, 2 * PAGE), DMA_FROM_DEVICE, 0);
      expect(r.ok).toBe(true);
      if (!r.ok) return;
      expect(r.value.list.addrAt(0)).toBe(bar.start + 0x3000n + 0x1000_0000_0000n);
      expect(r.value.list.flagsAt(0)).toBe(bar.flags);
      expect(m.stats.iovaAllocs).toBe(0);
      const w = deviceWritesList(dev, r.value.list, 11);
      expect(m.mem.read(bar.start + 0x3000n, 2 * PAGE)).toEqual(w);
      dmaUnmapPhyrs(dev, r.value, DMA_FROM_DEVICE, 0);
      expect(m.events.count('DMA-DEBUG')).toBe(0);
    });

    it('P2P through the host bridge: MMIO in the IOVA window; dma-direct: the physical address, MMIO', () => {
      for (const mode of ['strict', 'none'] as IommuMode[]) {
        const m = makeMachine(mode);
        const dev = m.device('nic0');
        const bar = gpuBar(m);
        const ram = allocPhys(m);
        const list = PhyrList.from([{ addr: ram, len: PAGE }, { addr: bar.start, len: 2 * PAGE }]);
        const r = dmaMapPhyrs(dev, list, DMA_BIDIRECTIONAL, 0);
        expect(r.ok).toBe(true);
        if (!r.ok) return;
        const flags = [...r.value.list].map((x) => x.flags);
        expect(flags[flags.length - 1] & RANGE_MMIO).toBe(RANGE_MMIO);
        expect(flags[flags.length - 1]).toBe(bar.flags);
        if (mode === 'strict') {
          expect(r.value.how).toBe('iova');
          expect(r.value.list.addrAt(0)).not.toBe(ram);
        } else {
          // the input carried no flags: the result cannot share it (its flags would be wrong)
          expect(r.value.list.sharesStorage).toBe(false);
          expect([...r.value.list].map((x) => x.addr)).toEqual([ram, bar.start]);
        }
        const w = deviceWritesList(dev, r.value.list, 12);
        expect(cpuRead(m, list)).toEqual(w);
        dmaUnmapPhyrs(dev, r.value, DMA_BIDIRECTIONAL, 0);
        expect(leafPtes(m)).toBe(0);
        expect(m.events.count('DMA-DEBUG') + m.events.count('WARN')).toBe(0);
      }
    });

    it('caller flags that claim P2P on RAM are ignored: RAM is mapped as RAM', () => {
      const m = makeMachine('none');
      const dev = m.device('far0');
      const bar = gpuBar(m);
      const ram = allocPhys(m);
      const r = dmaMapPhyrs(dev, phyrs([[ram, PAGE]], bar.flags), DMA_TO_DEVICE, 0);
      expect(r.ok).toBe(true);
      if (!r.ok) return;
      expect(r.value.list.addrAt(0)).toBe(ram);
      expect(r.value.list.flagsAt(0)).toBe(0);
      dmaUnmapPhyrs(dev, r.value, DMA_TO_DEVICE, 0);
    });

    it('a range in a hole or crossing from one region into another: EINVAL naming it, nothing mapped', () => {
      const m = makeMachine('strict');
      const dev = m.device('nvme0');
      const bar = gpuBar(m);
      const ram = allocPhys(m);
      const ramRegion = m.regions.find((x) => x.kind === 'ram' && x.end > ram && x.start <= ram)!;
      const cases: Array<[bigint, number]> = [
        [bar.start + BigInt(bar.len) - BigInt(PAGE), 2 * PAGE], // runs off the BAR
        [ramRegion.end - BigInt(PAGE), 2 * PAGE], // runs off a RAM region
        [1n << 51n, PAGE], // a hole
      ];
      for (const [addr, len] of cases) {
        const r = dmaMapPhyrs(dev, PhyrList.from([{ addr: ram, len: PAGE }, { addr, len }]), DMA_TO_DEVICE, 0);
        expect(r.ok ? 'ok' : r.errno).toBe('EINVAL');
        if (!r.ok) expect(r.message).toContain(`range 1 (0x${addr.toString(16)}+${len})`);
      }
      expect(m.stats.iovaAllocs).toBe(0);
      expect(leafPtes(m)).toBe(0);
    });
  });

  describe('MMIO that would need bouncing: EPERM (as dma_iova_link), dmaMapPhys stays ENOMEM', () => {
    it('force-bounce dma-direct: EPERM; the RAM range bounced before it is released', () => {
      const m = makeMachine('none', 1, { swiotlb: { bytes: 4 * MiB, force: true } });
      const dev = m.device('nic0');
      const bar = gpuBar(m);
      const ram = allocPhys(m);
      const r = dmaMapPhyrs(dev, PhyrList.from([{ addr: ram, len: PAGE }, { addr: bar.start, len: PAGE }]), DMA_TO_DEVICE, 0);
      expect(r.ok ? 'ok' : r.errno).toBe('EPERM');
      if (!r.ok) expect(r.message).toMatch(/range 1 .*MMIO/);
      expect(m.stats.swiotlbMaps).toBe(1);
      expect(m.stats.swiotlbUnmaps).toBe(1);
      expect(m.dmaDebug.count()).toBe(0);
      const one = dmaMapPhys(dev, bar.start, PAGE, DMA_TO_DEVICE, DMA_ATTR_MMIO);
      expect(one.ok ? 'ok' : one.errno).toBe('ENOMEM');
    });

    it('beyond the mask with a swiotlb pool: EPERM; without a pool: ENOMEM', () => {
      for (const pool of [true, false]) {
        const m = makeMachine('none', 1, pool ? {} : { swiotlb: false });
        const dev = m.device('nic0');
        const bar = gpuBar(m);
        expect(bar.start > DMA_BIT_MASK(32)).toBe(true);
        dmaSetMask(dev, DMA_BIT_MASK(32));
        const r = dmaMapPhyrs(dev, phyrs([[bar.start, PAGE]]), DMA_TO_DEVICE, 0);
        expect(r.ok ? 'ok' : r.errno).toBe(pool ? 'EPERM' : 'ENOMEM');
        expect(m.dmaDebug.count()).toBe(0);
      }
    });
  });
});
