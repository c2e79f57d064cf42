import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { allocPhys, makeMachine, pattern, phyrs, type IommuMode } from '../../../test/fixtures/dma-b-machines.ts';
import { DMA_BIDIRECTIONAL, dmaMapPhyrs, dmaUnmapPhyrs } from '../../dma/index.ts';
import { DmaList } from '../../phyr/index.ts';
import {
  GPU_PTE_SNOOP, GPU_PTE_SYSTEM, GPU_PTE_VALID, GPU_PTE_WRITE, gpuCopy, gpuFabricConnect, gpuMapDmaList, gpuProbe, gpuPtDecode,
  gpuRead, gpuRemove, gpuUnmap, gpuWrite,
} from './index.ts';

const K4 = 4096;
const K64 = 65536;
const M2 = 2 * 1024 * 1024;

/** Byte equality without vitest's element-by-element diff (slow on megabytes). */
function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Pieces of RAM: [order of the allocation, bytes used from its start]. */
function ramPieces(m: ReturnType<typeof makeMachine>, orders: number[]): Array<[bigint, number]> {
  return orders.map((o) => [allocPhys(m, o), K4 << o]);
}

describe('GPU page table', () => {
  it.each<IommuMode>(['none', 'strict', 'passthrough'])('%s: 4 KiB, 64 KiB and 2 MiB entries; GPU writes, CPU reads back, CPU writes, GPU reads; unmap faults', (mode) => {
    const m = makeMachine(mode);
    const dev = m.device('gpu0');
    const gpu = gpuProbe(dev);
    if (!gpu.ok) throw new Error(gpu.errno);
    // order 9 = 2 MiB (a 2 MiB leaf where the DMA address stays 2 MiB aligned), order 4 = 64 KiB, order 0 = 4 KiB
    const pieces = ramPieces(m, [9, 4, 4, 0, 0]);
    const map = dmaMapPhyrs(dev, phyrs(pieces), DMA_BIDIRECTIONAL, 0);
    if (!map.ok) throw new Error(map.errno);
    const list = map.value.list;
    const mp = gpuMapDmaList(gpu.value, list);
    if (!mp.ok) throw new Error(`${mp.errno} ${mp.message}`);
    expect(mp.value.entries).toBeGreaterThan(0);
    const len = list.totalLen;
    const bytes = pattern(len, 7);
    expect(gpuWrite(gpu.value, mp.value.va, bytes).ok).toBe(true);
    let at = 0;
    for (const [addr, n] of pieces) {
      expect(same(m.mem.read(addr, n), bytes.subarray(at, at + n))).toBe(true);
      at += n;
    }
    const back = pattern(len, 9);
    at = 0;
    for (const [addr, n] of pieces) { m.mem.write(addr, back.subarray(at, at + n)); at += n; }
    const r = gpuRead(gpu.value, mp.value.va, len);
    expect(r.ok && same(r.value, back)).toBe(true);
    // the copy engine: the first 64 KiB to the last 64 KiB
    expect(gpuCopy(gpu.value, mp.value.va + BigInt(len - K64), mp.value.va, K64).ok).toBe(true);
    const tail = gpuRead(gpu.value, mp.value.va + BigInt(len - K64), K64);
    expect(tail.ok && same(tail.value, back.subarray(0, K64))).toBe(true);
    gpuUnmap(mp.value);
    const faults = m.stats.gpuMmuFaults;
    expect(gpuRead(gpu.value, mp.value.va, K4).ok).toBe(false);
    expect(m.stats.gpuMmuFaults).toBe(faults + 1);
    gpuUnmap(mp.value);
    expect(m.events.count('WARN')).toBe(1);
    dmaUnmapPhyrs(dev, map.value, DMA_BIDIRECTIONAL, 0);
    gpuRemove(gpu.value);
    expect(m.stats.gpuPtTablesAllocated).toBe(m.stats.gpuPtTablesFreed);
    expect(m.teardown()).toBe(0);
  });

  it('chooses the entry size per 2 MiB slot: a 2 MiB leaf, a 64 KiB table, a 4 KiB table', () => {
    const m = makeMachine('none');
    const gpu = gpuProbe(m.device('gpu0'));
    if (!gpu.ok) throw new Error(gpu.errno);
    const big = allocPhys(m, 9);
    const mid = allocPhys(m, 9);
    const small = allocPhys(m, 0);
    const list = DmaList.from([{ addr: big, len: M2 }, { addr: mid, len: M2 }, { addr: small, len: K4 }]);
    const mp = gpuMapDmaList(gpu.value, list);
    if (!mp.ok) throw new Error(mp.errno);
    expect([mp.value.pte2m, mp.value.pte64k, mp.value.pte4k]).toEqual([2, 0, 1]);
    const l2 = DmaList.from([{ addr: mid, len: K64 * 3 }, { addr: big, len: K64 }]);
    const mp2 = gpuMapDmaList(gpu.value, l2);
    if (!mp2.ok) throw new Error(mp2.errno);
    expect([mp2.value.pte2m, mp2.value.pte64k, mp2.value.pte4k]).toEqual([0, 4, 0]);
    const l3 = DmaList.from([{ addr: mid, len: K4 }, { addr: big, len: K64 }]);
    const mp3 = gpuMapDmaList(gpu.value, l3);
    if (!mp3.ok) throw new Error(mp3.errno);
    expect([mp3.value.pte2m, mp3.value.pte64k, mp3.value.pte4k]).toEqual([0, 0, 17]);
  });

  it('refuses a list that is not whole pages (EINVAL), mapping nothing', () => {
    const m = makeMachine('none');
    const gpu = gpuProbe(m.device('gpu0'));
    if (!gpu.ok) throw new Error(gpu.errno);
    const a = allocPhys(m, 1);
    for (const list of [DmaList.from([{ addr: a + 512n, len: K4 }]), DmaList.from([{ addr: a, len: 100 }, { addr: a + 8192n, len: K4 }]), DmaList.from([])]) {
      const before = m.stats.gpuPtTablesAllocated;
      const r = gpuMapDmaList(gpu.value, list);
      expect(r.ok ? 'ok' : r.errno).toBe('EINVAL');
      expect(m.stats.gpuPtTablesAllocated).toBe(before);
    }
  });

  it('property: the table bytes decode back to the DMA list (RAM snooped and writable, MMIO not snooped)', () => {
    fc.assert(fc.property(
      fc.array(fc.record({ pages: fc.integer({ min: 1, max: 600 }), align: fc.constantFrom(K4, K64, M2), mmio: fc.boolean(), write: fc.boolean() }), { minLength: 1, maxLength: 6 }),
      fc.boolean(),
      (specs, write) => {
        const m = makeMachine('none');
        const gpu = gpuProbe(m.device('gpu0'));
        if (!gpu.ok) throw new Error(gpu.errno);
        // addresses need not be real memory for the table: the decode reads only the tables
        let base = 0x40_0000_0000n;
        const ranges = specs.map((s) => {
          base = (base + BigInt(s.align) - 1n) / BigInt(s.align) * BigInt(s.align);
          const r = { addr: base, len: s.pages * K4, flags: s.mmio ? 1 << 5 : 0 };
          base += BigInt(r.len + 7 * K4);
          return r;
        });
        const list = DmaList.from(ranges);
        const mp = gpuMapDmaList(gpu.value, list, { write });
        if (!mp.ok) throw new Error(mp.errno);
        const dec = gpuPtDecode(gpu.value, mp.value.va, list.totalLen);
        const want = ranges.map((r) => ({
          addr: r.addr, len: r.len,
          bits: GPU_PTE_VALID | GPU_PTE_SYSTEM | (write ? GPU_PTE_WRITE : 0) | (r.flags ? 0 : GPU_PTE_SNOOP),
        }));
        expect(dec).toEqual(want);
        expect(mp.value.entries * 8 + Math.ceil(list.totalLen / M2) * 8).toBe(mp.value.entryBytes + mp.value.pte2m * 8);
        gpuUnmap(mp.value);
        expect(gpuPtDecode(gpu.value, mp.value.va, list.totalLen)).toEqual([]);
      },
    ), { numRuns: 40 });
  });

  it('a read-only mapping faults on a GPU write and moves nothing', () => {
    const m = makeMachine('none');
    const gpu = gpuProbe(m.device('gpu0'));
    if (!gpu.ok) throw new Error(gpu.errno);
    const a = allocPhys(m, 0);
    m.mem.fill(a, K4, 0x5a);
    const mp = gpuMapDmaList(gpu.value, DmaList.from([{ addr: a, len: K4 }]), { write: false });
    if (!mp.ok) throw new Error(mp.errno);
    expect(gpuWrite(gpu.value, mp.value.va, new Uint8Array(K4)).ok).toBe(false);
    expect(m.mem.read(a, K4).every((b) => b === 0x5a)).toBe(true);
  });

  it('fabric entries reach the peer GPU VRAM without PCIe (no device DMA counted)', () => {
    const m = makeMachine('strict');
    const g0 = gpuProbe(m.device('gpu0'));
    const g1 = gpuProbe(m.device('nvme0'));
    if (!g0.ok || !g1.ok) throw new Error('probe');
    const link = gpuFabricConnect(g1.value, g0.value);
    const mp = gpuMapDmaList(g1.value, DmaList.from([{ addr: 0x10000n, len: K64 }]), { aperture: { fabricPeer: link.aToB } });
    if (!mp.ok) throw new Error(mp.errno);
    const dmaBefore = m.stats.deviceDmaBytes;
    const bytes = pattern(K64, 3);
    expect(gpuWrite(g1.value, mp.value.va, bytes).ok).toBe(true);
    expect(same(m.mem.read(g0.value.vram!.start + 0x10000n, K64), bytes)).toBe(true);
    expect(m.stats.gpuFabricBytes).toBe(K64);
    // only the MMU's table reads went over PCIe
    expect(m.stats.deviceDmaBytes - dmaBefore).toBe(8 * 3 * 1);
  });
});
