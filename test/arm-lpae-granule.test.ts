// ARM LPAE with 16 and 64 KiB granules (drivers/iommu/io-pgtable-arm.c, Linux 7.1): the kernel's own
// self-test table, exact descriptor bytes derived from the ARM_LPAE_* macros, the granule reaching
// the IOMMU core and dma-iommu, the config checks of a 16/64 KiB-page machine, and device DMA that
// moves real bytes through a 64 KiB-granule SMMU.
import { describe, expect, it } from 'vitest';
import { GiB, KiB, MiB } from '../src/base/index.ts';
import {
  DMA_BIDIRECTIONAL, DMA_BIT_MASK, DMA_FROM_DEVICE, DMA_TO_DEVICE, DmaIovaState, dmaIovaDestroy, dmaIovaLink, dmaIovaSync,
  dmaIovaTryAlloc, dmaMapPhys, dmaMapSgtable, dmaOptMappingSize, dmaSetMaskAndCoherent, dmaSetMinAlignMask, dmaUnmapPhys, dmaUnmapSgtable,
} from '../src/dma/index.ts';
import {
  ArmLpaePageTable, createIommu, dumpTablePage, iommuGetDmaDomain, iommuIovaToPhys, iommuMap, iommuUnmap, iommuWalkInfo,
  IOMMU_CACHE, IOMMU_NOEXEC, IOMMU_READ, IOMMU_WRITE, type IommuDomain,
} from '../src/iommu/internal.ts';
import { createMachine, type Machine } from '../src/machine/index.ts';
import type { PciNodeConfig } from '../src/pci/index.ts';
import { sgAllocTable } from '../src/phyr/index.ts';
import { TestMachine } from './fixtures/iommu-machine.ts';

const RW = IOMMU_READ | IOMMU_WRITE;
const K16 = 16 * KiB, K64 = 64 * KiB, M32 = 32 * MiB, M512 = 512 * MiB;

function armDomain(pageSize: 16384 | 65536): { mm: TestMachine; d: IommuDomain; pt: ArmLpaePageTable } {
  const mm = new TestMachine(2 ** 36, pageSize);
  const d = createIommu(mm, { format: 'arm-lpae', mode: 'strict' }).allocDomain('unmanaged');
  if (!(d.pt instanceof ArmLpaePageTable)) throw new Error('not an ARM LPAE table');
  return { mm, d, pt: d.pt };
}

/**
 * drivers/iommu/io-pgtable-arm-selftests.c: arm_lpae_run_tests() as arm_lpae_do_selftests() runs it
 * for pgsize_bitmap SZ_16K | SZ_32M and SZ_64K | SZ_512M, ARM_64_LPAE_S1, IAS = OAS = 48 (the one
 * input/output size the model builds): the ops are map_pages / unmap_pages of one page of each size
 * (ArmLpaePageTable.mapLeaves / unmapPages) and iova_to_phys (iommuIovaToPhys).
 */
describe.each([
  ['16 KiB', 16384, [K16, M32]],
  ['64 KiB', 65536, [K64, M512]],
] as const)('io-pgtable-arm-selftests.c arm_lpae_run_tests, %s granule, IAS = OAS = 48', (_name, pageSize, sizes) => {
  it('empty tables translate nothing; each page size maps, refuses an overlap, translates, unmaps, remaps; the last page of the IAS', () => {
    const { d, pt } = armDomain(pageSize);
    const free: number[] = [];
    const lg2 = (size: number): number => Math.log2(size) - 12;
    for (const a of [42n, BigInt(GiB) + 42n, 2n * BigInt(GiB) + 42n]) expect(iommuIovaToPhys(d, a)).toBe(0n);
    // distinct mappings of each size, 1 GiB apart, iova = phys
    let iova = 0;
    for (const size of sizes) {
      const f = iova / 4096;
      expect(pt.mapLeaves(f, f, 1, lg2(size), IOMMU_READ | IOMMU_WRITE | IOMMU_NOEXEC | IOMMU_CACHE, free)).toBeNull();
      // overlapping mapping: must fail
      expect(pt.mapLeaves(f, f + size / 4096, 1, lg2(size), IOMMU_READ | IOMMU_NOEXEC, free)).toBe('EEXIST');
      expect(iommuIovaToPhys(d, BigInt(iova) + 42n)).toBe(BigInt(iova) + 42n);
      iova += GiB;
    }
    // full unmap, then remap of the full block
    iova = 0;
    for (const size of sizes) {
      const f = iova / 4096;
      expect(pt.unmapPages(f, lg2(size), 1, free) * 4096).toBe(size);
      expect(iommuIovaToPhys(d, BigInt(iova) + 42n)).toBe(0n);
      expect(pt.mapLeaves(f, f, 1, lg2(size), IOMMU_WRITE, free)).toBeNull();
      expect(iommuIovaToPhys(d, BigInt(iova) + 42n)).toBe(BigInt(iova) + 42n);
      iova += GiB;
    }
    // the last largest page of the IAS (corner cases of the start level's small table)
    const big = sizes[sizes.length - 1];
    const last = 2 ** 48 - big;
    expect(pt.mapLeaves(last / 4096, last / 4096, 1, lg2(big), IOMMU_READ | IOMMU_WRITE | IOMMU_NOEXEC | IOMMU_CACHE, free)).toBeNull();
    expect(pt.mappedPages * 4096).toBe(big);
    expect(iommuIovaToPhys(d, BigInt(last) + 42n)).toBe(BigInt(last) + 42n);
    expect(pt.unmapPages(last / 4096, lg2(big), 1, free) * 4096).toBe(big);
    expect(free).toEqual([]);
  });
});

/**
 * Descriptor bytes from the kernel's macros (io-pgtable-arm.c), for prot READ | WRITE | CACHE (what
 * dma_info_to_prot gives a coherent device's bidirectional mapping):
 *   arm_lpae_prot_to_pte, ARM_64_LPAE_S1: ARM_LPAE_PTE_nG (1 << 11 = 0x800); no AP_RDONLY (WRITE
 *   is set); AP_UNPRIV (1 << 6 = 0x40, no IOMMU_PRIV); AttrIndx ARM_LPAE_MAIR_ATTR_IDX_CACHE (1) <<
 *   ARM_LPAE_PTE_ATTRINDX_SHIFT (2) = 0x4; SH_IS (3 << 8 = 0x300, IOMMU_CACHE); AF (1 << 10 =
 *   0x400): 0x800 | 0x40 | 0x4 | 0x300 | 0x400 = 0xf44.
 *   __arm_lpae_init_pte: ARM_LPAE_PTE_TYPE_PAGE (3) at lvl 3, ARM_LPAE_PTE_TYPE_BLOCK (1) above:
 *   a page is 0xf47, a block 0xf45.
 *   paddr_to_iopte(pa) = (pa | pa >> 36) & GENMASK_ULL(47, 12): with pa < 2^48 and granule-aligned,
 *   pa >> 36 only reaches bits [11:0] (pa's bits [47:36]), which the mask drops; bits [15:12] (the
 *   64 KiB granule's PA[51:48] slot) stay 0. So the descriptor is pa | 0xf47 (page) or pa | 0xf45
 *   (block).
 *   Table descriptors: paddr_to_iopte(table) | ARM_LPAE_PTE_TYPE_TABLE (3).
 * Index of the entry: ARM_LPAE_LVL_IDX = iova >> ARM_LPAE_LVL_SHIFT(lvl) masked to the level's bits,
 * LVL_SHIFT(l) = (4 - l) * (s - 3) + 3: 64 KiB (s = 16): lvl 3: 16, lvl 2: 29, lvl 1: 42 (64-entry
 * pgd, 48 - 42 = 6 bits); 16 KiB (s = 14): lvl 3: 14, lvl 2: 25, lvl 1: 36, lvl 0: 47 (2-entry pgd).
 */
describe('descriptor bytes of the 16 and 64 KiB granules (ARM_LPAE_* macros)', () => {
  const PROT = IOMMU_READ | IOMMU_WRITE | IOMMU_CACHE;

  /** The 8 bytes the walk of iova ends on, read back from machine memory, and the walk. */
  function leafBytes(mm: TestMachine, d: IommuDomain, iova: bigint): { raw: bigint; steps: ReturnType<typeof iommuWalkInfo> } {
    const steps = iommuWalkInfo(d, iova);
    const leaf = steps[steps.length - 1];
    expect(leaf.kind).toBe('leaf');
    const bytes = mm.mem.read(leaf.tablePhys + BigInt(leaf.index * 8), 8);
    const raw = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
    expect(raw).toBe(leaf.pte);
    // every table descriptor on the way: the next table's physical address | TYPE_TABLE
    for (let i = 0; i + 1 < steps.length; i++) expect(steps[i].pte).toBe(steps[i + 1].tablePhys | 3n);
    return { raw, steps };
  }

  it('64 KiB granule: a page at level 3 is pa | 0xf47, in a 3-level walk (64-entry pgd)', () => {
    const { mm, d } = armDomain(65536);
    const iova = 0x0000_7abc_dee0_0000n + 0x3n * 0x10000n; // bits 47..42 = 0x1e: pgd index 30
    const pa = 0x0000_8765_4321_0000n;
    expect(iommuMap(d, iova, pa, K64, PROT).ok).toBe(true);
    const { raw, steps } = leafBytes(mm, d, iova);
    expect(raw).toBe(0x0000_8765_4321_0f47n);
    expect(steps.map((s) => s.level)).toEqual([2, 1, 0]);
    expect(steps[0].index).toBe(Number(iova >> 42n));
    expect(steps[1].index).toBe(Number((iova >> 29n) & 0x1fffn));
    expect(steps[2].index).toBe(Number((iova >> 16n) & 0x1fffn));
    expect(steps[2].leafBytes).toBe(K64);
    expect(iommuIovaToPhys(d, iova + 0x1234n)).toBe(pa + 0x1234n);
    // the table pages are 64 KiB: the dump has 8192 entries' bytes
    expect(dumpTablePage(d, steps[2].tablePfn).bytes.length).toBe(K64);
  });

  it('64 KiB granule: a 512 MiB block at level 2 is pa | 0xf45', () => {
    const { mm, d } = armDomain(65536);
    const iova = 0x0000_1234_4000_0000n; // 512 MiB-aligned
    const pa = 0x0000_8765_4000_0000n;
    expect(iommuMap(d, iova, pa, M512, PROT).ok).toBe(true);
    const { raw, steps } = leafBytes(mm, d, iova);
    expect(raw).toBe(0x0000_8765_4000_0f45n);
    // pgd index iova >> 42 = 4; level-2 index (iova >> 29) & 0x1fff = 0x91a2 & 0x1fff = 0x11a2
    expect(steps.map((s) => [s.level, s.index])).toEqual([[2, 4], [1, 0x11a2]]);
    expect(steps[1].leafBytes).toBe(M512);
    expect(iommuIovaToPhys(d, iova + 0x1ffff123n)).toBe(pa + 0x1ffff123n);
  });

  it('16 KiB granule: a 32 MiB block at level 2 is pa | 0xf45, a page pa | 0xf47, in a 4-level walk (2-entry pgd)', () => {
    const { mm, d } = armDomain(16384);
    const iova = 0x0000_8abc_4200_0000n; // bit 47 set: pgd index 1
    const pa = 0x0000_8765_4200_0000n;
    expect(iommuMap(d, iova, pa, M32, PROT).ok).toBe(true);
    const block = leafBytes(mm, d, iova);
    expect(block.raw).toBe(0x0000_8765_4200_0f45n);
    expect(block.steps.map((s) => s.level)).toEqual([3, 2, 1]);
    expect(block.steps.map((s) => s.index)).toEqual([1, Number((iova >> 36n) & 0x7ffn), Number((iova >> 25n) & 0x7ffn)]);
    expect(block.steps[2].leafBytes).toBe(M32);
    const pIova = iova + BigInt(M32) + 0x4000n;
    expect(iommuMap(d, pIova, pa + 0x8000n, K16, PROT).ok).toBe(true);
    const page = leafBytes(mm, d, pIova);
    expect(page.raw).toBe(0x0000_8765_4200_8f47n);
    expect(page.steps.map((s) => s.level)).toEqual([3, 2, 1, 0]);
    expect(page.steps[3].index).toBe(Number((pIova >> 14n) & 0x7ffn));
    expect(dumpTablePage(d, page.steps[3].tablePfn).bytes.length).toBe(K16);
  });
});

describe('the granule above the page table (iommu core, IOVA allocator)', () => {
  it.each([[16384, 0x2004000n], [65536, 0x20010000n]] as const)('pageSize %i: granule, pgsize_bitmap, IOVA allocator granule', (ps, bitmap) => {
    const mm = new TestMachine(2 ** 36, ps);
    const iommu = createIommu(mm, { format: 'arm-lpae', mode: 'strict' });
    const d = iommu.allocDomain('dma');
    expect(d.granule).toBe(ps);
    expect(d.granuleShift).toBe(Math.log2(ps));
    expect(d.pgsizeBitmap).toBe(bitmap);
    expect(d.iovad?.granule).toBe(ps);
  });

  it('64 KiB granule: a 4 KiB-aligned but not granule-aligned map is EINVAL (min_pagesz 0x10000), an unaligned unmap unmaps nothing', () => {
    const { mm, d } = armDomain(65536);
    const r = iommuMap(d, 0x11000n, 0x20000n, K64, RW);
    expect(r.ok ? 'ok' : r.errno).toBe('EINVAL');
    expect(r.ok ? '' : r.message).toContain('min_pagesz 0x10000');
    const s = iommuMap(d, 0x10000n, 0x20000n, 0x1000, RW);
    expect(s.ok ? 'ok' : s.errno).toBe('EINVAL');
    // the alignment test comes before size 0's nothing-to-map (__iommu_map_domain_pgtbl)
    const z = iommuMap(d, 0x11000n, 0x20000n, 0, RW);
    expect(z.ok ? 'ok' : z.errno).toBe('EINVAL');
    expect(iommuMap(d, 0x10000n, 0x20000n, 0, RW).ok).toBe(true);
    expect(d.tablePages).toBe(1);
    expect(iommuMap(d, 0x10000n, 0x20000n, 2 * K64, RW).ok).toBe(true);
    expect(iommuUnmap(d, 0x11000n, K64)).toBe(0);
    expect(iommuUnmap(d, 0x10000n, 0x1000)).toBe(0);
    expect(mm.events.list('INFO', 'iommu').filter((e) => e.message.includes('min_pagesz 0x10000')).length).toBe(2);
    expect(iommuUnmap(d, 0x10000n, 2 * K64)).toBe(2 * K64);
    expect(iommuIovaToPhys(d, 0x10000n)).toBe(0n);
  });
});

describe('config: x86-64, vtd-ss and amd-v1 tables have 4 KiB pages only', () => {
  it.each([
    ['x86-64', 16384], ['vtd-ss', 65536], ['amd-v1', 16384],
  ] as const)('%s on a %i-byte-page machine is refused at createMachine, naming config.iommu.format and arm-lpae', (format, pageSize) => {
    expect(() => createMachine({ ramBytes: GiB, pageSize, iommu: { format, mode: 'strict' } }))
      .toThrow(/^config\.iommu\.format "[a-z0-9-]+" has 4 KiB page tables only: on a machine with \d+-byte pages the format is "arm-lpae"/);
    expect(() => createMachine({ ramBytes: GiB, pageSize, iommu: { format, mode: 'strict' } })).toThrow(RangeError);
  });

  it('arm-lpae on 16 and 64 KiB pages builds; ARM32 iommu_ops need 4 KiB pages; 4 KiB pages keep every format', () => {
    for (const pageSize of [16384, 65536] as const) {
      const m = createMachine({ ramBytes: GiB, pageSize, iommu: { format: 'arm-lpae', mode: 'strict' } });
      expect(m.iommu?.allocDomain('dma').granule).toBe(pageSize);
    }
    expect(() => createMachine({ ramBytes: GiB, pageSize: 16384, iommu: { format: 'arm-lpae', mode: 'strict', arm32Mapping: { base: 0x1000_0000n, size: 1n << 30n } } }))
      .toThrow(/^config\.iommu\.arm32Mapping needs 4 KiB pages/);
    for (const format of ['x86-64', 'vtd-ss', 'amd-v1', 'arm-lpae'] as const) {
      expect(createMachine({ ramBytes: GiB, iommu: { format, mode: 'strict' } }).iommu?.allocDomain('dma').granule).toBe(4096);
    }
    // the IOMMU itself refuses too (an mm built without createMachine)
    expect(() => createIommu(new TestMachine(GiB, 65536), { format: 'x86-64', mode: 'strict' })).toThrow(/^cfg\.format "x86-64" has 4 KiB page tables only/);
  });

  it('arm-lpae\'s levels are its granule\'s for a 48-bit IOVA: 4 at 4 and 16 KiB, 3 at 64 KiB (levels: 4 on 64 KiB was taken and 3 built)', () => {
    for (const [pageSize, levels] of [[4096, 4], [16384, 4], [65536, 3]] as const) {
      const m = createMachine({ ramBytes: GiB, pageSize, iommu: { format: 'arm-lpae', mode: 'strict', levels } });
      expect(m.iommu?.allocDomain('dma').format?.levels).toBe(levels);
      for (const bad of [3, 4, 5].filter((l) => l !== levels)) {
        expect(() => createMachine({ ramBytes: GiB, pageSize, iommu: { format: 'arm-lpae', mode: 'strict', levels: bad as 3 | 4 | 5 } }), `${pageSize} ${bad}`)
          .toThrow(new RegExp(`^cfg\\.levels of "arm-lpae" follows its ${pageSize / 1024} KiB granule: ${levels} levels for a 48-bit IOVA \\(or leave it out\\), got ${bad}$`));
      }
    }
  });
});

/** hb0 - rp0 - nvme0 (64 KiB BAR), rp1 - tb0 (untrusted). */
const PCI64: PciNodeConfig[] = [
  { name: 'hb0', type: 'host-bridge', vendor: 0x10de, device: 0x22b2 },
  { name: 'rp0', type: 'root-port', parent: 'hb0' },
  { name: 'nvme0', type: 'endpoint', parent: 'rp0', bars: [{ bytes: 64 * KiB }] },
  { name: 'rp1', type: 'root-port', parent: 'hb0' },
  { name: 'tb0', type: 'endpoint', parent: 'rp1', untrusted: true },
];

/** A 64 KiB-page arm64 machine (a Grace-like CONFIG_ARM64_64K_PAGES kernel) with an SMMU in strict or lazy mode. */
function machine64(mode: 'strict' | 'lazy' = 'strict'): Machine {
  const m = createMachine({ ramBytes: 4 * GiB, pageSize: 65536, seed: 7, pci: PCI64, swiotlb: { bytes: 4 * MiB }, iommu: { format: 'arm-lpae', mode } });
  for (const name of ['nvme0', 'tb0']) expect(dmaSetMaskAndCoherent(m.device(name), DMA_BIT_MASK(64)).ok).toBe(true);
  return m;
}

/** A fresh RAM page (64 KiB) of m filled with a pattern; returns its physical address. */
function page64(m: Machine, seed: number, order = 0): bigint {
  const r = m.allocKernelPages(order);
  if (!r.ok) throw new Error(r.errno);
  const phys = r.value * 65536n;
  const len = 65536 * 2 ** order;
  m.mem.write(phys, Uint8Array.from({ length: len }, (_, i) => (i * 7 + seed) & 0xff));
  return phys;
}

function ok<T>(r: { ok: true; value: T } | { ok: false; errno: string }): T {
  if (!r.ok) throw new Error(r.errno);
  return r.value;
}

describe('device DMA through a 64 KiB-granule SMMU moves the right bytes', () => {
  it.each(['strict', 'lazy'] as const)('dmaMapPhys (%s): an unaligned 100000-byte buffer keeps its offset in the 64 KiB granule; reads and writes reach RAM', (mode) => {
    const m = machine64(mode);
    const dev = m.device('nvme0');
    const phys = page64(m, 3, 1) + 0x1234n;
    const dma = ok(dmaMapPhys(dev, phys, 100000, DMA_BIDIRECTIONAL));
    expect(dma & 0xffffn).toBe(0x1234n);
    const d = iommuGetDmaDomain(dev)!;
    expect(d.granule).toBe(65536);
    // two granules mapped, each a 64 KiB page leaf
    const walk = iommuWalkInfo(d, dma);
    expect(walk[walk.length - 1].leafBytes).toBe(65536);
    expect(iommuIovaToPhys(d, dma + 70000n)).toBe(phys + 70000n);
    expect(dev.dmaRead(dma + 65000n, 1000)).toEqual({ ok: true, value: m.mem.read(phys + 65000n, 1000) });
    expect(dev.dmaWrite(dma + 99990n, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])).ok).toBe(true);
    expect(m.mem.read(phys + 99990n, 10)).toEqual(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]));
    dmaUnmapPhys(dev, dma, 100000, DMA_BIDIRECTIONAL);
    expect(iommuIovaToPhys(d, dma)).toBe(0n);
    if (mode === 'strict') expect(dev.dmaRead(dma, 4).ok).toBe(false);
  });

  it('an untrusted device bounces a buffer that is not 64 KiB-granule aligned (iova_unaligned), not an aligned one', () => {
    const m = machine64();
    const tb = m.device('tb0');
    const phys = page64(m, 5);
    const before = m.stats.swiotlbBounceBytes;
    // 4 KiB-aligned but not granule-aligned: bounced, the rest of the bounce granule zeroed
    const small = ok(dmaMapPhys(tb, phys + 0x1000n, 0x1000, DMA_TO_DEVICE));
    expect(m.stats.swiotlbBounceBytes - before).toBe(0x1000);
    expect(tb.dmaRead(small, 0x1000)).toEqual({ ok: true, value: m.mem.read(phys + 0x1000n, 0x1000) });
    const granule = small & ~0xffffn;
    const rest = tb.dmaRead(small + 0x1000n, Number(granule + 0x10000n - small - 0x1000n));
    expect(rest.ok && rest.value.every((b) => b === 0)).toBe(true);
    dmaUnmapPhys(tb, small, 0x1000, DMA_TO_DEVICE);
    // a whole granule: mapped in place, no bounce
    const whole = ok(dmaMapPhys(tb, phys, 65536, DMA_FROM_DEVICE));
    expect(m.stats.swiotlbBounceBytes - before).toBe(0x1000);
    expect(tb.dmaWrite(whole + 0x8000n, new Uint8Array([0xaa, 0xbb])).ok).toBe(true);
    expect(m.mem.read(phys + 0x8000n, 2)).toEqual(new Uint8Array([0xaa, 0xbb]));
    dmaUnmapPhys(tb, whole, 65536, DMA_FROM_DEVICE);
  });

  it('dmaMapSgtable: scattered 64 KiB pages become one IOVA range; every segment reads and writes its own page', () => {
    const m = machine64();
    const dev = m.device('nvme0');
    const pages = [page64(m, 1), page64(m, 2), page64(m, 3)];
    const sgt = ok(sgAllocTable(3, { pageSize: 65536 }));
    sgt.setPage(0, pages[0] / 65536n, 65536 - 0x300, 0x300); // ends at the granule's end
    sgt.setPage(1, pages[1] / 65536n, 65536, 0);
    sgt.setPage(2, pages[2] / 65536n, 5000, 0);
    expect(dmaMapSgtable(dev, sgt, DMA_BIDIRECTIONAL, 0).ok).toBe(true);
    // granule-contiguous in IOVA: __finalise_sg merges them (max segment 64 KiB: one segment each)
    expect(sgt.nents).toBe(3);
    const a0 = sgt.dmaAddressAt(0);
    expect(a0 & 0xffffn).toBe(0x300n);
    expect(sgt.dmaAddressAt(1)).toBe((a0 & ~0xffffn) + 0x10000n);
    expect(sgt.dmaAddressAt(2)).toBe((a0 & ~0xffffn) + 0x20000n);
    for (let i = 0; i < 3; i++) {
      const off = i === 0 ? 0x300n : 0n;
      expect(dev.dmaRead(sgt.dmaAddressAt(i), 256)).toEqual({ ok: true, value: m.mem.read(pages[i] + off, 256) });
    }
    expect(dev.dmaWrite(sgt.dmaAddressAt(1) + 65534n, new Uint8Array([0x11, 0x22, 0x33, 0x44])).ok).toBe(true);
    expect(m.mem.read(pages[1] + 65534n, 2)).toEqual(new Uint8Array([0x11, 0x22]));
    expect(m.mem.read(pages[2], 2)).toEqual(new Uint8Array([0x33, 0x44]));
    dmaUnmapSgtable(dev, sgt, DMA_BIDIRECTIONAL, 0);
    expect(iommuIovaToPhys(iommuGetDmaDomain(dev)!, a0)).toBe(0n);
  });

  it('two-step dma_iova_*: three 64 KiB pages linked into one window; the device writes across the seams', () => {
    const m = machine64();
    const dev = m.device('nvme0');
    const pages = [page64(m, 9), page64(m, 10), page64(m, 11)];
    const st = new DmaIovaState();
    expect(dmaIovaTryAlloc(dev, st, pages[0], 3 * 65536)).toBe(true);
    expect(st.addr & 0xffffn).toBe(0n);
    pages.forEach((p, i) => expect(dmaIovaLink(dev, st, p, i * 65536, 65536, DMA_BIDIRECTIONAL, 0).ok).toBe(true));
    expect(dmaIovaSync(dev, st, 0, 3 * 65536).ok).toBe(true);
    const data = Uint8Array.from({ length: 65536 + 8 }, (_, i) => (i * 13) & 0xff);
    expect(dev.dmaWrite(st.addr + 65536n - 4n, data).ok).toBe(true);
    expect(m.mem.read(pages[0] + 65532n, 4)).toEqual(data.subarray(0, 4));
    expect(m.mem.read(pages[1], 65536)).toEqual(data.subarray(4, 65540));
    expect(m.mem.read(pages[2], 4)).toEqual(data.subarray(65540));
    expect(dev.dmaRead(st.addr + 2n * 65536n + 100n, 16)).toEqual({ ok: true, value: m.mem.read(pages[2] + 100n, 16) });
    dmaIovaDestroy(dev, st, 3 * 65536, DMA_BIDIRECTIONAL, 0);
    expect(dev.dmaRead(st.addr, 4).ok).toBe(false);
  });

  /**
   * dma-iommu.c: iommu_dma_iova_bounce_and_link() links the bounce slot at bounce_phys -
   * iova_start_pad, which is granule-aligned only when swiotlb kept the data's offset in the
   * granule: swiotlb_align_offset() keeps addr & min_align_mask & (alloc_align_mask | (IO_TLB_SIZE -
   * 1)). With NVMe's min_align_mask 0xfff a head that starts 0x200 into the first 4 KiB of a 64 KiB
   * granule links; with no min_align_mask the slot starts at offset 0 and the link is refused
   * (EINVAL from iommu_map's min_pagesz test), on the kernel as here.
   */
  it('two-step on an untrusted device: a head inside a 64 KiB granule is bounced, a whole granule is mapped in place', () => {
    const m = machine64();
    const tb = m.device('tb0');
    dmaSetMinAlignMask(tb, 0xfff);
    const pages = [page64(m, 21), page64(m, 22)];
    const st = new DmaIovaState();
    const head = 65536 - 0x200;
    expect(dmaIovaTryAlloc(tb, st, pages[0] + 0x200n, head + 65536)).toBe(true);
    expect(st.addr & 0xffffn).toBe(0x200n);
    const before = m.stats.swiotlbBounceBytes;
    expect(dmaIovaLink(tb, st, pages[0] + 0x200n, 0, head, DMA_TO_DEVICE, 0).ok).toBe(true);
    expect(m.stats.swiotlbBounceBytes - before).toBe(head);
    expect(dmaIovaLink(tb, st, pages[1], head, 65536, DMA_TO_DEVICE, 0).ok).toBe(true);
    expect(m.stats.swiotlbBounceBytes - before).toBe(head);
    expect(dmaIovaSync(tb, st, 0, head + 65536).ok).toBe(true);
    // the device reads the bounced head and the in-place page across the seam
    const want = new Uint8Array([...m.mem.read(pages[0] + 65536n - 8n, 8), ...m.mem.read(pages[1], 8)]);
    expect(tb.dmaRead(st.addr + BigInt(head) - 8n, 16)).toEqual({ ok: true, value: want });
    expect(iommuIovaToPhys(iommuGetDmaDomain(tb)!, st.addr + BigInt(head))).toBe(pages[1]);
    dmaIovaDestroy(tb, st, head + 65536, DMA_TO_DEVICE, 0);
    expect(m.events.count('WARN')).toBe(0);
  });

  it('two-step on an untrusted device without a min_align_mask: the bounced head\'s slot is not granule-aligned, the link is EINVAL', () => {
    const m = machine64();
    const tb = m.device('tb0');
    const phys = page64(m, 23) + 0x200n;
    const st = new DmaIovaState();
    expect(dmaIovaTryAlloc(tb, st, phys, 65536 - 0x200)).toBe(true);
    const r = dmaIovaLink(tb, st, phys, 0, 65536 - 0x200, DMA_TO_DEVICE, 0);
    expect(r.ok ? 'ok' : r.errno).toBe('EINVAL');
    expect(r.ok ? '' : r.message).toContain('min_pagesz 0x10000');
  });

  it('dma_opt_mapping_size is iova_rcache_range(): PAGE_SIZE << 5 = 2 MiB with 64 KiB pages', () => {
    expect(dmaOptMappingSize(machine64().device('nvme0'))).toBe(2 * MiB);
  });
});
