// Tests for the page-table walker and formats: hand-encoded entries of x86-64, ARM LPAE and AMD v1.
import { describe, expect, it } from 'vitest';
import { createIommu, dumpTablePage, iommuIovaToPhys, iommuMap, iommuUnmap, iommuWalk, IOMMU_CACHE, IOMMU_MMIO, IOMMU_NOEXEC,
  IOMMU_READ, IOMMU_WRITE, type IommuConfig } from './internal.ts';
import { TestMachine } from '../../test/fixtures/iommu-machine.ts';

function setup(cfg: Partial<IommuConfig> = {}) {
  const mm = new TestMachine();
  const iommu = createIommu(mm, { format: 'x86-64', mode: 'strict', ...cfg });
  const d = iommu.allocDomain('unmanaged');
  return { mm, iommu, d };
}

function u64(bytes: Uint8Array, index: number): bigint {
  return new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(index * 8, true);
}

describe('x86-64 page table, byte-exact', () => {
  it('a 2 MiB leaf is one PDE with P|RW|U|A|D|PS and the address in bits 12..51', () => {
    const { mm, d } = setup();
    expect(d.tablePages).toBe(1);
    const iova = 0x40000000n + 3n * 0x200000n; // PML4 0, PDPT 1, PD 3
    const pa = 0x123400000n;
    expect(iommuMap(d, iova, pa, 0x200000, IOMMU_READ | IOMMU_WRITE).ok).toBe(true);
    const walk = iommuWalk(d, iova);
    expect(walk.map((s) => [s.level, s.index, s.kind])).toEqual([[3, 0, 'table'], [2, 1, 'table'], [1, 3, 'leaf']]);
    const pd = dumpTablePage(d, walk[2].tablePfn);
    expect(pd.level).toBe(1);
    // hand-computed: P(1) RW(2) U(4) A(0x20) D(0x40) PS(0x80) = 0xe7
    expect(u64(pd.bytes, 3)).toBe(0x123400000n | 0xe7n);
    expect(pd.bytes.slice(24, 32)).toEqual(new Uint8Array([0xe7, 0x00, 0x40, 0x23, 0x01, 0, 0, 0]));
    expect(pd.entries).toHaveLength(1);
    expect(pd.entries[0].attrs).toBe('P RW U A D PS');
    // the table entries above: P|RW|U|A = 0x27 and the next table's address
    const pml4 = dumpTablePage(d, walk[0].tablePfn);
    expect(u64(pml4.bytes, 0)).toBe((walk[1].tablePfn << 12n) | 0x27n);
    // a page that is not one of the tables is refused, with a level given too (it was read and its view cached)
    expect(() => dumpTablePage(d, pa >> 12n, 0)).toThrow(/^pfn 0x123400 is not a table page of this domain$/);
    // tables come from RAM and are counted there
    expect(d.tablePages).toBe(3);
    expect(mm.stats.iommuTablePagesAllocated).toBe(3);
    expect(mm.kernelPagesInUse).toBe(3);
    expect(mm.stats.iommuMapPagesCalls).toBe(1);
    expect(mm.stats.iommuLeafPtesWritten).toBe(1);
    expect(iommuIovaToPhys(d, iova + 0x1234n)).toBe(pa + 0x1234n);
  });
  it('a read-only 4 KiB leaf is P|U|A (no RW, no D, no PS) and a table page never keeps allocator garbage', () => {
    const { d } = setup();
    expect(iommuMap(d, 0x5000n, 0xabc000n, 4096, IOMMU_READ).ok).toBe(true);
    const walk = iommuWalk(d, 0x5000n);
    expect(walk).toHaveLength(4);
    const pt = dumpTablePage(d, walk[3].tablePfn);
    expect(pt.entries).toEqual([expect.objectContaining({ index: 5, raw: 0xabc000n | 0x25n, kind: 'leaf', oa: 0xabc000n })]);
    // every other byte of the freshly allocated (dirtied) page is zero
    expect(pt.bytes.reduce((s, b) => s + b, 0)).toBe(0x25 + 0xc0 + 0xab);
  });
  it('1 GiB leaves, 5 levels and the upper canonical half', () => {
    const { d } = setup({ levels: 5 });
    expect(iommuMap(d, 0x40000000n, 0x80000000n, 0x40000000, IOMMU_READ | IOMMU_WRITE).ok).toBe(true);
    const walk = iommuWalk(d, 0x40000000n);
    expect(walk.map((s) => s.kind)).toEqual(['table', 'table', 'leaf']);
    expect(walk[2].level).toBe(2);
    expect(walk[2].pte).toBe(0x80000000n | 0xe7n);
    // upper half of a 57-bit space: sign-extended from bit 56
    const hi = (1n << 64n) - (1n << 56n) + 0x7000n;
    expect(iommuMap(d, hi, 0x9000n, 4096, IOMMU_READ).ok).toBe(true);
    expect(iommuWalk(d, hi)[0].index).toBe(256);
    expect(iommuIovaToPhys(d, hi + 5n)).toBe(0x9005n);
    // non-canonical addresses cannot be mapped
    const r = iommuMap(d, 1n << 56n, 0x9000n, 4096, IOMMU_READ);
    expect(r.ok ? 'ok' : r.errno).toBe('ERANGE');
  });
  it('unmapping a whole 2 MiB range of 4 KiB leaves frees its table after the flush', () => {
    const { mm, d } = setup();
    expect(iommuMap(d, 0x200000n, 0x10000000n + 0x1000n, 0x200000, IOMMU_READ).ok).toBe(true);
    expect(mm.stats.iommuLeafPtesWritten).toBe(512);
    expect(d.tablePages).toBe(4);
    expect(iommuUnmap(d, 0x200000n, 0x200000)).toBe(0x200000);
    expect(d.tablePages).toBe(3);
    expect(mm.stats.iommuTablePagesFreed).toBe(1);
    expect(mm.kernelPagesInUse).toBe(3);
    expect(iommuIovaToPhys(d, 0x200000n)).toBe(0n);
  });
  it('a 2 MiB leaf replaces an emptied table (clear_contig) and the table goes back to RAM', () => {
    const { mm, d } = setup();
    expect(iommuMap(d, 0x200000n, 0x1000n, 4096, IOMMU_READ).ok).toBe(true);
    expect(iommuUnmap(d, 0x200000n, 4096)).toBe(4096);
    expect(d.tablePages).toBe(4); // the PT stays: the unmap did not cover it
    expect(iommuMap(d, 0x200000n, 0x400000n, 0x200000, IOMMU_READ).ok).toBe(true);
    expect(d.tablePages).toBe(3);
    expect(mm.kernelPagesInUse).toBe(3);
    expect(iommuWalk(d, 0x200000n).at(-1)?.kind).toBe('leaf');
  });
});

describe('ARM LPAE 4 KiB granule (entries of arm_lpae_prot_to_pte)', () => {
  it('a 2 MiB block and a 4 KiB page descriptor, hand-encoded', () => {
    const { d } = setup({ format: 'arm-lpae' });
    expect(iommuMap(d, 0x600000n, 0x80200000n, 0x200000, IOMMU_READ | IOMMU_WRITE | IOMMU_CACHE).ok).toBe(true);
    const w = iommuWalk(d, 0x600000n);
    // block: type 01, AttrIndx 1 (<<2), AP[1] unpriv (0x40), SH inner (0x300), AF (0x400), nG (0x800)
    expect(w.at(-1)?.pte).toBe(0x80200000n | 0x1n | 0x4n | 0x40n | 0x300n | 0x400n | 0x800n);
    expect(iommuMap(d, 0x1000n, 0x2000n, 4096, IOMMU_READ | IOMMU_MMIO | IOMMU_NOEXEC).ok).toBe(true);
    const w2 = iommuWalk(d, 0x1000n);
    // page: type 11, AttrIndx 2 (DEV), AP[2] read-only (0x80), AP[1], SH outer (0x200), AF, nG, XN bits 53-54
    expect(w2.at(-1)?.pte).toBe(0x2000n | 0x3n | 0x8n | 0x80n | 0x40n | 0x200n | 0x400n | 0x800n | (3n << 53n));
    const tbl = dumpTablePage(d, w2[0].tablePfn);
    expect(tbl.entries[0].raw).toBe((w2[1].tablePfn << 12n) | 3n);
    expect(tbl.entries[0].kind).toBe('table');
    expect(dumpTablePage(d, w2[3].tablePfn).entries[0].prot).toBe(IOMMU_READ | IOMMU_MMIO | IOMMU_NOEXEC);
  });
  it('48-bit input addresses only (ERANGE with a WARN, as arm_lpae_map_pages)', () => {
    const { mm, d } = setup({ format: 'arm-lpae' });
    const r = iommuMap(d, 1n << 48n, 0n, 4096, IOMMU_READ);
    expect(r.ok ? 'ok' : r.errno).toBe('ERANGE');
    expect(r.ok ? '' : r.message).toMatch(/iova 0x1000000000000 is beyond the 48-bit input size/);
    // output addresses are 48 bits too
    const pa = iommuMap(d, 0x10000n, 1n << 48n, 8192, IOMMU_READ);
    expect(pa.ok ? 'ok' : pa.errno).toBe('ERANGE');
    expect(pa.ok ? '' : pa.message).toMatch(/pa 0x1000000000000 is beyond the 48-bit output size/);
    expect(mm.events.count('WARN')).toBe(2);
    expect(iommuMap(d, (1n << 48n) - 4096n, 0x5000n, 4096, IOMMU_READ).ok).toBe(true);
  });
});

describe('AMD v1 through the same walker: contiguous leaves', () => {
  it('a 64 KiB leaf is 16 level-0 entries with NextLevel 7 and the size in the low OA bits', () => {
    const { mm, d } = setup({ format: 'amd-v1' });
    expect(d.pgsizeBitmap).toBe(((1n << 48n) - (1n << 12n)) & ~(1n << 39n));
    expect(iommuMap(d, 0x30000n, 0x40000n, 0x10000, IOMMU_READ | IOMMU_WRITE).ok).toBe(true);
    expect(mm.stats.iommuMapPagesCalls).toBe(1);
    const w = iommuWalk(d, 0x35000n);
    expect(w.map((s) => s.kind)).toEqual(['table', 'table', 'table', 'leaf']);
    // PR | NextLevel 7 (0xe00) | OA 0x40 + (2^3 - 1) frames | FC (bit 60) | IR (bit 61) | IW (bit 62)
    expect(w[3].pte).toBe(0x7000000000047e01n);
    const pt = dumpTablePage(d, w[3].tablePfn);
    expect(pt.entries.map((e) => e.index)).toEqual(Array.from({ length: 16 }, (_, i) => 0x30 + i));
    expect(new Set(pt.entries.map((e) => e.raw)).size).toBe(1);
    expect(pt.entries[0].oa).toBe(0x40000n);
    expect(pt.entries[0].attrs).toBe('PR NL=7 size=65536 FC IR IW');
    // table entries: PR | NextLevel = their level | IR | IW (no FC)
    expect(w[0].pte).toBe((w[1].tablePfn << 12n) | 0x601n | 0x6000000000000000n);
    expect(w[2].pte).toBe((w[3].tablePfn << 12n) | 0x201n | 0x6000000000000000n);
    expect(iommuIovaToPhys(d, 0x3f123n)).toBe(0x4f123n);
    // unmapping from the middle of a contiguous leaf is refused; from its start the whole leaf goes
    expect(iommuUnmap(d, 0x34000n, 0x1000)).toBe(0);
    expect(iommuUnmap(d, 0x30000n, 0x1000)).toBe(0x10000);
    expect(dumpTablePage(d, w[3].tablePfn).entries).toEqual([]);
  });
  it('a 4 MiB leaf is two level-1 entries; a read-only leaf has FC and IR only', () => {
    const { d } = setup({ format: 'amd-v1' });
    expect(iommuMap(d, 0x800000n, 0x1000000n, 0x400000, IOMMU_READ).ok).toBe(true);
    const w = iommuWalk(d, 0xa00000n);
    expect(w.at(-1)?.level).toBe(1);
    expect(w.at(-1)?.pte).toBe(0x3000000000000000n | ((0x1000n + 0x1ffn) << 12n) | 0xe01n);
    expect(iommuIovaToPhys(d, 0xbfffffn)).toBe(0x13fffffn);
    const r = iommuMap(d, 0x400000n, 0x0n, 0x800000, IOMMU_READ); // overlaps the 4 MiB leaf
    expect(r.ok ? 'ok' : r.errno).toBe('EADDRINUSE');
    expect(iommuIovaToPhys(d, 0x400000n)).toBe(0n);
  });
});

describe('on the real machine memory model', () => {
  it('table pages come out of the buddy allocator and their bytes are in physical memory', async () => {
    const { createMmMachine } = await import('../mm/index.ts');
    const mm = createMmMachine({ ramBytes: 1024 * 1024 * 1024 });
    const free0 = mm.freePages;
    const iommu = createIommu(mm, { format: 'x86-64', mode: 'strict' });
    const d = iommu.allocDomain('unmanaged');
    expect(iommuMap(d, 0x200000n, 0x40000000n, 0x200000, IOMMU_READ | IOMMU_WRITE).ok).toBe(true);
    expect(mm.freePages).toBe(free0 - d.tablePages);
    const w = iommuWalk(d, 0x200000n);
    const bytes = mm.mem.read((w[2].tablePfn << 12n) + 8n, 8);
    expect(u64(bytes, 0)).toBe(0x40000000n | 0xe7n);
    iommu.freeDomain(d);
    expect(mm.freePages).toBe(free0);
  });
});
