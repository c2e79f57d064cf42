// hugetlb page sizes per base page size against the kernel (Linux 7.1.5): x86-64's
// arch_hugetlb_valid_size() (arch/x86/mm/hugetlbpage.c: PMD_SIZE, PUD_SIZE with gbpages) at 4 KiB,
// arm64's __hugetlb_valid_size() (arch/arm64/mm/hugetlbpage.c: CONT_PTE_SIZE, PMD_SIZE,
// CONT_PMD_SIZE; PUD_SIZE only where pud_sect_supported(), i.e. 4 KiB pages) at 16 and 64 KiB, with
// the ARM64_CONT_PTE_SHIFT / ARM64_CONT_PMD_SHIFT defaults of arch/arm64/Kconfig. Before, every
// machine offered 2 MiB and 1 GiB pages, and a 1 GiB hugetlb page existed at 64 KiB pages.
import { describe, expect, it } from 'vitest';
import { GiB, MiB, unwrap } from '../src/base/index.ts';
import {
  FOLL_WRITE, HUGETLB_BYTES, createMmMachine, hugetlbSizes, pinUserPages, pinUserPhyrs, unpinUserPages, unpinUserPhyrs,
  type HugetlbSize,
} from '../src/mm/index.ts';
import { runCompare } from '../src/scenario/index.ts';

/** The kernel's table, computed from its definitions rather than listed. */
function kernelSizes(ps: number): number[] {
  const pmd = ps * (ps / 8); // a table of PTEs: PAGE_SIZE / sizeof(pte_t) entries
  if (ps === 4096) return [pmd, pmd * 512]; // x86-64: PMD, PUD (gbpages)
  const contPteShift = ps === 65536 ? 5 : 7; // ARM64_CONT_PTE_SHIFT
  const contPmdShift = 5; // ARM64_CONT_PMD_SHIFT at 16 and 64 KiB
  return [ps * 2 ** contPteShift, pmd, pmd * 2 ** contPmdShift].sort((a, b) => a - b);
}

const sizeOf = (s: HugetlbSize): number => HUGETLB_BYTES[s];

describe('hugetlb sizes (arch_hugetlb_valid_size, __hugetlb_valid_size)', () => {
  for (const ps of [4096, 16384, 65536]) {
    it(`a ${ps / 1024} KiB page machine offers the kernel's sizes and refuses the others`, () => {
      expect(hugetlbSizes(ps).map(sizeOf)).toEqual(kernelSizes(ps));
      for (const size of Object.keys(HUGETLB_BYTES) as HugetlbSize[]) {
        const offered = hugetlbSizes(ps).includes(size);
        const make = (): unknown => createMmMachine({ ramBytes: 4 * GiB, pageSize: ps, hugetlb: { [size]: 0 } });
        if (offered) expect(make).not.toThrow();
        else expect(make).toThrow(`config.hugetlb['${size}']: no ${size} hugetlb pages on a ${ps / 1024} KiB page machine: it has ${hugetlbSizes(ps).join(', ')}`);
        // MAP_HUGETLB with a size that has no hstate: ksys_mmap_pgoff() is EINVAL
        const mm = createMmMachine({ ramBytes: 4 * GiB, pageSize: ps }).newProcess();
        const r = mm.mmap({ len: sizeOf(size), backing: `hugetlb-${size}` });
        expect(r.ok ? 'ok' : r.errno).toBe(offered ? 'ENOMEM' : 'EINVAL'); // offered: an empty pool
      }
    });
  }

  it('at 64 KiB pages: 16 GiB pages carved from the top of RAM, 512 MiB and 2 MiB ones from the buddy allocator, each on its size', () => {
    const m = createMmMachine({ ramBytes: 40 * GiB, pageSize: 65536, hugetlb: { '2M': 3, '512M': 3, '16G': 1 } });
    const ps = 65536;
    const pages: Array<[number, number]> = [];
    for (const size of hugetlbSizes(ps)) {
      const pool = m.hugetlbPool(size);
      expect(pool.free.length).toBe(size === '2M' ? 3 : size === '512M' ? 3 : 1);
      expect(pool.len).toBe(sizeOf(size));
      for (const pfn of pool.free) {
        expect((pfn * ps) % pool.len).toBe(0);
        pages.push([pfn * ps, pfn * ps + pool.len]);
      }
    }
    pages.sort((a, b) => a[0] - b[0]);
    for (let i = 1; i < pages.length; i++) expect(pages[i][0]).toBeGreaterThanOrEqual(pages[i - 1][1]);
    const top = m.regions.filter((r) => r.kind === 'ram').at(-1)!;
    // the 16 GiB page (gigantic: above MAX_PAGE_ORDER 13) is the highest, at the top of RAM
    const big = m.hugetlbPool('16G').free[0] * ps;
    expect(big).toBe(Math.floor(top.endNum / (16 * GiB)) * 16 * GiB - 16 * GiB);
    for (const pfn of m.hugetlbPool('512M').free) expect(pfn * ps + 512 * MiB).toBeLessThanOrEqual(big);
    // everything else is the buddy allocator's
    expect(m.freePages * ps).toBe(40 * GiB - 16 * GiB - 3 * 512 * MiB - 3 * 2 * MiB);
    expect(() => m.hugetlbPool('1G')).toThrow('no 1G hugetlb pages on a 64 KiB page machine: it has 2M, 512M, 16G');
  });

  it('MAX_PAGE_ORDER is arm64\'s ARCH_FORCE_MAX_ORDER at 16 and 64 KiB pages (a PMD per block), 10 on x86-64', () => {
    for (const [ps, order] of [[4096, 10], [16384, 11], [65536, 13]]) {
      const m = createMmMachine({ ramBytes: 8 * GiB, pageSize: ps });
      expect(m.maxPageOrder).toBe(order);
      // a block of MAX_PAGE_ORDER is allocatable, one order more is ENOMEM with a WARN
      const r = m.allocKernelPages(order);
      expect(r.ok).toBe(true);
      expect(Number(unwrap(r)) % 2 ** order).toBe(0); // a pfn, naturally aligned
      const over = m.allocKernelPages(order + 1);
      expect(over.ok ? 'ok' : over.errno).toBe('ENOMEM');
      expect(m.events.list().some((e) => e.message.includes(`> MAX_PAGE_ORDER ${order}`))).toBe(true);
    }
    // so a PMD-sized hugetlb page comes from the buddy allocator there, not from boot memory
    const m16 = createMmMachine({ ramBytes: 8 * GiB, pageSize: 16384, hugetlb: { '32M': 2 } });
    expect(m16.freePages * 16384).toBe(8 * GiB - 2 * 32 * MiB);
  });

  it('a gigantic pool that does not fit in the top RAM range is a config error naming the pool', () => {
    // ram1 is [4 GiB, 9 GiB): no 16 GiB-aligned 16 GiB page inside it
    expect(() => createMmMachine({ ramBytes: 8 * GiB, pageSize: 65536, hugetlb: { '16G': 1 } }))
      .toThrow("config.hugetlb['16G'] 1 pages do not fit in RAM range ram1: gigantic pages are carved from its top, each 16 GiB-aligned, and the range holds 0 of them (5.00 GiB from 0x100000000): raise ramBytes");
    expect(() => createMmMachine({ ramBytes: 8 * GiB, pageSize: 16384, hugetlb: { '1G': 6 } }))
      .toThrow("config.hugetlb['1G'] 6 pages do not fit in RAM range ram1: gigantic pages are carved from its top, each 1 GiB-aligned, and the range holds 5 of them (5.00 GiB from 0x100000000): raise ramBytes");
  });

  it('the page tables: a PMD for 512 MiB, contiguous PTEs for 2 MiB and PMDs for 16 GiB at 64 KiB; a PUD for 1 GiB at 4 KiB', () => {
    const cases: Array<[number, HugetlbSize, string, number]> = [
      [65536, '2M', 'pte', 32], [65536, '512M', 'pmd', 1], [65536, '16G', 'pmd', 32],
      [16384, '2M', 'pte', 128], [16384, '32M', 'pmd', 1], [16384, '1G', 'pmd', 32],
      [4096, '2M', 'pmd', 1], [4096, '1G', 'pud', 1],
    ];
    for (const [ps, size, level, contig] of cases) {
      const len = sizeOf(size);
      const m = createMmMachine({ ramBytes: Math.max(4 * GiB, 2 * len + 4 * GiB), pageSize: ps, hugetlb: { [size]: 1 } });
      const mm = m.newProcess();
      const va = unwrap(mm.mmap({ len, backing: `hugetlb-${size}`, populate: true }));
      const at = va + BigInt(len / 2 + ps);
      const pte = mm.pteAt(at)!;
      expect([pte.level, pte.contig, pte.leafBytes, pte.vmaKind]).toEqual([level, contig, len, `hugetlb-${size}`]);
      expect(pte.leafVa).toBe(va);
      // the entry's index in its table (the VA bits of its level) and the frames that entry maps:
      // in a contiguous run, its own part of the page
      const entryBytes = len / contig;
      expect(pte.index).toBe(Math.floor(Number(at) / entryBytes) % (ps / 8));
      const runPfn = mm.pteAt(va)!.pfn!;
      expect(pte.pfn).toBe(runPfn + BigInt((Math.floor(Number(at - va) / entryBytes) * entryBytes) / ps));
      // the entry's output address: bits 51:12 on x86-64, 47:PAGE_SHIFT on arm64 (PAs below 2^48 here)
      const shift = BigInt(Math.log2(ps));
      const addrBits = ps === 4096 ? 52n : 48n;
      expect((pte.entry >> shift) & ((1n << (addrBits - shift)) - 1n)).toBe(pte.pfn);
      expect(mm.mappings[0].kind).toBe(`hugetlb-${size}`);
    }
  });

  it('a 512 MiB page at 64 KiB pages pins as 8,192 page pointers or one phyr, moves bytes, and goes back to its pool', () => {
    const ps = 65536;
    const m = createMmMachine({ ramBytes: 4 * GiB, pageSize: ps, hugetlb: { '512M': 2 } });
    const mm = m.newProcess();
    const va = unwrap(mm.mmap({ len: 512 * MiB, backing: 'hugetlb-512M', populate: true }));
    const pool = m.hugetlbPool('512M');
    expect([pool.free.length, pool.reserved]).toEqual([1, 0]);
    const bytes = Uint8Array.from({ length: 300 }, (_, i) => (i * 7 + 1) & 0xff);
    unwrap(mm.writeUser(va + BigInt(ps - 100), bytes));
    const pages = unwrap(pinUserPages(mm, va, 512 * MiB / ps, FOLL_WRITE));
    expect([pages.count, pages.kernelBytes]).toEqual([8192, 8 * 8192]);
    unpinUserPages(pages);
    const phyrs = unwrap(pinUserPhyrs(mm, va, 512 * MiB, FOLL_WRITE));
    expect(phyrs.count).toBe(1);
    const phys = phyrs.addrAt(0);
    expect(Number(phys) % (512 * MiB)).toBe(0);
    expect(m.mem.read(phys + BigInt(ps - 100), 300)).toEqual(bytes);
    unpinUserPhyrs(phyrs);
    unwrap(mm.munmap(va, 512 * MiB));
    expect([pool.free.length, pool.reserved]).toEqual([2, 0]);
  });

  it('phyr compare at 64 KiB pages takes 512 MiB hugetlb pages and pins one for its headline', () => {
    const rep = runCompare({ ramGiB: 8, pageSize: 65536, buffers: ['hugetlb'], bufferLen: { hugetlb: GiB }, mapping: false });
    expect([rep.machine.hugetlbSize, rep.machine.hugetlbPages]).toEqual(['512M', 2]);
    expect(rep.machine.description).toContain('hugetlb pool 2 x 512 MiB');
    expect(rep.buffers[0].label).toBe('1 GiB of 512 MiB hugetlb pages');
    expect(rep.buffers[0].backing).toBe('hugetlb-512M');
    expect(rep.headline!.text).toBe('512 MiB hugetlb page: 8,192 page entries (64 KiB of pointers) vs 1 phyr (16 B)');
    const x86 = runCompare({ ramGiB: 8, buffers: ['hugetlb'], bufferLen: { hugetlb: GiB }, mapping: false });
    expect([x86.machine.hugetlbSize, x86.buffers[0].backing]).toEqual(['1G', 'hugetlb-1G']);
  });
});
