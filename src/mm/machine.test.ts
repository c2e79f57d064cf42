// Tests for machine.ts / layout.ts / physmem.ts: the memory map, config validation, sparse memory, kernel pages.
import { describe, expect, it } from 'vitest';
import { GiB, KernelBug, MiB, TiB, unwrap } from '../base/index.ts';
import { RANGE_DEVICE, RANGE_MMIO, RANGE_NOPAGE, RANGE_PMEM, RANGE_RAM } from '../phyr/index.ts';
import { MmMachine, createMmMachine } from './machine.ts';

describe('memory map', () => {
  const m = createMmMachine({
    ramBytes: 8 * GiB, hugetlb: { '2M': 4, '1G': 2 }, seed: 1,
    pmem: [{ name: 'pmem0', bytes: 2 * GiB, structPage: true }, { name: 'pmem1', bytes: GiB, structPage: false }],
    deviceMemory: [{ name: 'bar0', bytes: 16 * GiB }, { name: 'p2p', bytes: 3 * MiB, pgmap: true }],
  });
  it('lays out an x86-like map with regions aligned as documented', () => {
    const byName = Object.fromEntries(m.regions.map((r) => [r.name, r]));
    expect(m.regions.map((r) => r.name)).toEqual(['reserved', 'ram0', 'ram1', 'pmem0', 'pmem1', 'bar0', 'p2p']);
    expect(byName.ram0.start).toBe(BigInt(MiB));
    expect(byName.ram0.end).toBe(3n * BigInt(GiB));
    expect(byName.ram1.start).toBe(4n * BigInt(GiB));
    expect(byName.ram0.len + byName.ram1.len).toBe(8 * GiB);
    expect(byName.pmem0.start % BigInt(GiB)).toBe(0n);
    expect(byName.bar0.start % (16n * BigInt(GiB))).toBe(0n);
    expect(byName.p2p.start % (4n * BigInt(MiB))).toBe(0n);
    for (let i = 1; i < m.regions.length; i++) expect(m.regions[i].start >= m.regions[i - 1].end).toBe(true);
    expect(byName.ram0.rangeFlags).toBe(RANGE_RAM);
    expect(byName.pmem0.rangeFlags).toBe(RANGE_PMEM);
    expect(byName.pmem1.rangeFlags).toBe(RANGE_PMEM | RANGE_NOPAGE);
    expect(byName.bar0.rangeFlags).toBe(RANGE_DEVICE | RANGE_NOPAGE | RANGE_MMIO);
    expect(byName.p2p.rangeFlags).toBe(RANGE_DEVICE | RANGE_MMIO);
    expect(byName.p2p.hasStructPage && byName.p2p.pgmapId > 0 && byName.bar0.pgmapId === 0).toBe(true);
    byName.bar0.providerId = 7;
    expect(m.pfnFacts(byName.bar0.start / 4096n)!.rangeFlags >>> 8).toBe(7);
    byName.bar0.providerId = 0;
  });
  it('regionAt and pfnFacts find regions and holes', () => {
    expect(m.regionAt(3n * BigInt(GiB) + 5n)).toBeUndefined(); // PCI hole
    expect(m.regionAt(0n)!.kind).toBe('reserved');
    expect(m.pfnFacts(BigInt(MiB / 4096))!.hasStructPage).toBe(true);
    expect(m.pfnFacts(3n * BigInt(GiB) / 4096n)).toBeUndefined();
  });
  it('reserves hugetlb pools at boot', () => {
    expect(m.hugetlbPool('1G').free.length).toBe(2);
    expect(m.hugetlbPool('2M').free.length).toBe(4);
    for (const p of m.hugetlbPool('1G').free) expect((p * 4096) % GiB).toBe(0);
    // RAM minus the gigantic pages and the 2M pool is what the buddy allocator has.
    expect(m.freePages).toBe((8 * GiB - 2 * GiB - 4 * 2 * MiB) / 4096);
  });
});

describe('config validation names the field and the value', () => {
  const bad: Array<[Record<string, unknown>, RegExp]> = [
    [{ ramBytes: -1 }, /config\.ramBytes must be .* got -1/],
    [{ ramBytes: 4097 * 1024 }, /config\.ramBytes must be a multiple of the page size/],
    [{ ramBytes: GiB, pageSize: 8192 }, /config\.pageSize must be one of .* got 8192/],
    [{ ramBytes: GiB, physAddrBits: 60 }, /config\.physAddrBits .* got 60/],
    [{ ramBytes: GiB, hugetlb: { '4M': 1 } }, /config\.hugetlb\['4M'\]: no 4M hugetlb pages on a 4 KiB page machine: it has 2M, 1G/],
    [{ ramBytes: GiB, hugetlb: { '1G': 4 } }, /config\.hugetlb\['1G'\] 4/],
    [{ ramBytes: GiB, deviceMemory: [{ name: 'ram0', bytes: 4096 }] }, /deviceMemory\[0\]\.name must be a unique region name, got "ram0"/],
    [{ ramBytes: GiB, deviceMemory: [{ name: 'x', bytes: 100 }] }, /deviceMemory\[0\]\.bytes/],
    [{ ramBytes: GiB, pmem: [{ name: 'x', bytes: GiB }] }, /pmem\[0\]\.structPage must be a boolean/],
    [{ ramBytes: GiB, physAddrBits: 32, deviceMemory: [{ name: 'x', bytes: 8 * GiB }] }, /deviceMemory "x" does not fit a 32-bit/],
    [{ ramBytes: GiB, seed: 1.5 }, /config\.seed must be a safe integer, got 1.5/],
  ];
  for (const [cfg, re] of bad) {
    it(re.source, () => {
      expect(() => new MmMachine(cfg as never)).toThrow(re);
    });
  }
  it('non-number ramBytes is a TypeError', () => {
    expect(() => createMmMachine({ ramBytes: '1G' as never })).toThrow(TypeError);
  });
});

describe('sparse physical memory', () => {
  it('a 1 TiB machine is created fast and costs nothing until touched', () => {
    const m = createMmMachine({ ramBytes: TiB, aged: true, seed: 3 });
    expect(m.mem.residentBytes).toBe(0);
    expect(m.freePages).toBeGreaterThan(0);
    const addr = 900n * BigInt(GiB) + 12345n;
    expect(m.mem.read(addr, 64)).toEqual(new Uint8Array(64));
    const bytes = Uint8Array.from({ length: 10000 }, (_, i) => (i * 7 + 1) & 255);
    m.mem.write(addr, bytes);
    expect(m.mem.read(addr, 10000)).toEqual(bytes);
    expect(m.mem.residentBytes).toBe(3 * 4096); // 10000 bytes at offset 57 of a chunk span 3 chunks
  });
  it('accesses across a hole or into reserved memory throw and write nothing', () => {
    const m = createMmMachine({ ramBytes: 4 * GiB, deviceMemory: [{ name: 'bar0', bytes: GiB }] });
    const edge = 3n * BigInt(GiB) - 8n; // end of ram0, the PCI hole follows
    expect(() => m.mem.write(edge, new Uint8Array(16).fill(1))).toThrow(RangeError);
    expect(m.mem.read(edge, 8)).toEqual(new Uint8Array(8));
    expect(m.mem.residentBytes).toBe(0);
    expect(() => m.mem.read(edge, 16)).toThrow(/not backed by memory/);
    expect(() => m.mem.read(0n, 4)).toThrow(/reserved/);
    expect(() => m.mem.write(BigInt(MiB) - 2n, new Uint8Array(4))).toThrow(RangeError);
    expect(() => m.mem.read(1n << 46n, 1)).toThrow(/46 bits/);
    // RAM ranges and device memory are accessible; copy and fill move real bytes.
    const bar = m.region('bar0')!.start;
    m.mem.fill(bar + 100n, 50, 0xab);
    m.mem.copy(BigInt(2 * MiB), bar + 90n, 70);
    const got = m.mem.read(BigInt(2 * MiB), 70);
    expect([...got.slice(0, 10)].every((x) => x === 0) && [...got.slice(10, 60)].every((x) => x === 0xab)).toBe(true);
    const v = m.mem.view(BigInt(2 * MiB) + 4000n, 96);
    v[0] = 9;
    expect(m.mem.read(BigInt(2 * MiB) + 4000n, 1)[0]).toBe(9);
    expect(() => m.mem.view(BigInt(2 * MiB) + 4000n, 97)).toThrow(/chunk boundary/);
  });
});

describe('kernel pages and determinism', () => {
  it('allocKernelPages / freeKernelPages round trip, zeroed, mismatch is a BUG', () => {
    const m = createMmMachine({ ramBytes: 64 * MiB });
    const before = m.freePages;
    const pfn = unwrap(m.allocKernelPages(3));
    expect(pfn % 8n).toBe(0n);
    expect(m.freePages).toBe(before - 8);
    expect(m.kernelPagesInUse).toBe(8);
    m.mem.write(pfn * 4096n, new Uint8Array([1, 2, 3]));
    expect(() => m.freeKernelPages(pfn, 2)).toThrow(KernelBug);
    expect(m.events.count('BUG')).toBe(1);
    expect(m.kernelPagesInUse).toBe(8);
    m.freeKernelPages(pfn, 3);
    expect(m.freePages).toBe(before);
    expect(m.kernelPagesInUse).toBe(0);
    const again = unwrap(m.allocKernelPages(3));
    expect(m.mem.read(again * 4096n, 3)).toEqual(new Uint8Array(3));
    const r = m.allocKernelPages(11);
    expect(r.ok ? 'ok' : r.errno).toBe('ENOMEM');
    expect(m.events.count('WARN')).toBe(1);
    expect(() => m.allocKernelPages(-1)).toThrow(/order/);
  });
  it('same config and seed give the same physical layout; another seed differs', () => {
    const layout = (seed: number): bigint[] => {
      const m = createMmMachine({ ramBytes: 2 * GiB, aged: true, seed });
      const mm = m.newProcess();
      const va = unwrap(mm.mmap({ len: 4 * MiB, backing: 'anon', populate: true }));
      return Array.from({ length: 1024 }, (_, i) => mm.translate(va + BigInt(i * 4096))!);
    };
    expect(layout(1)).toEqual(layout(1));
    expect(layout(1)).not.toEqual(layout(2));
  });
});
