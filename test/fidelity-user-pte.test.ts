// The user page-table entries of the 16 and 64 KiB page machines against arm64's (Linux 7.1.5):
// the bits come from arch/arm64/include/asm/pgtable-hwdef.h and pgtable-prot.h, the protections
// from protection_map (PAGE_READONLY for private memory, PAGE_SHARED for shared), the write fault's
// pte_mkwrite(pte_mkdirty()) (mm/memory.c: do_anonymous_page), pte_mkspecial, pte_mkhuge (a block)
// and arch_make_huge_pte's PTE_CONT. Before, these machines printed x86-64 entries. Then the cases
// both architectures share: a fault-time PFN map (a dma-buf's mmap) is clean, and the huge zero
// folio is special (mm/huge_memory.c: set_huge_zero_folio -> pmd_mkspecial).
import { describe, expect, it } from 'vitest';
import { GiB, MiB, ok, unwrap } from '../src/base/index.ts';
import { FOLL_FORCE, FOLL_WRITE, createMmMachine, pinUserPages, unpinUserPages } from '../src/mm/index.ts';
import { arm64UserEntry } from '../src/mm/internal.ts';

const BIT = (n: number): bigint => 1n << BigInt(n);
// pgtable-hwdef.h
const PTE_TYPE_PAGE = 3n, PTE_TABLE_BIT = BIT(1), PTE_USER = BIT(6), PTE_RDONLY = BIT(7), PTE_SHARED = 3n << 8n;
const PTE_AF = BIT(10), PTE_NG = BIT(11), PTE_DBM = BIT(51), PTE_CONT = BIT(52), PTE_PXN = BIT(53), PTE_UXN = BIT(54);
const PTE_ATTRINDX = (t: number): bigint => BigInt(t) << 2n;
// pgtable-prot.h and memory.h
const PTE_WRITE = PTE_DBM, PTE_DIRTY = BIT(55), PTE_SPECIAL = BIT(56);
const MT_NORMAL = 0, MT_DEVICE_nGnRnE = 3;
const _PAGE_DEFAULT = PTE_TYPE_PAGE | PTE_AF | PTE_SHARED | PTE_ATTRINDX(MT_NORMAL);
const PAGE_READONLY = _PAGE_DEFAULT | PTE_USER | PTE_RDONLY | PTE_NG | PTE_PXN | PTE_UXN;
const PAGE_SHARED = _PAGE_DEFAULT | PTE_USER | PTE_RDONLY | PTE_NG | PTE_PXN | PTE_UXN | PTE_WRITE;
/** pte_mkwrite(pte_mkdirty(pte)) of a private page after a write fault. */
const written = (pte: bigint): bigint => (pte | PTE_DIRTY | PTE_WRITE) & ~PTE_RDONLY;
/** pgprot_noncached */
const noncached = (pte: bigint): bigint => (pte & ~PTE_ATTRINDX(7)) | PTE_ATTRINDX(MT_DEVICE_nGnRnE);
/** pte_mkhuge: a block descriptor */
const block = (pte: bigint): bigint => pte & ~PTE_TABLE_BIT;

describe('arm64 user page-table entries (16 and 64 KiB pages)', () => {
  for (const ps of [16384, 65536]) {
    it(`${ps / 1024} KiB pages: anon, zero page, hugetlb block and contiguous run, a PFN map of MMIO`, () => {
      const big = ps === 65536 ? '512M' : '32M';
      const m = createMmMachine({
        ramBytes: 4 * GiB, pageSize: ps, hugetlb: { '2M': 1, [big]: 1 },
        deviceMemory: [{ name: 'bar0', bytes: 64 * MiB }],
      });
      const mm = m.newProcess();
      const addr = (va: bigint): bigint => mm.translate(va)! & ~BigInt(ps - 1);
      // a private page written to, and one only read (the shared zero page)
      const anon = unwrap(mm.mmap({ len: 2 * ps, backing: 'anon' }));
      unwrap(mm.writeUser(anon, Uint8Array.of(1)));
      unwrap(mm.readUser(anon + BigInt(ps), 1));
      expect(mm.pteAt(anon)!.entry).toBe(written(PAGE_READONLY) | addr(anon));
      expect(mm.pteAt(anon + BigInt(ps))!.entry).toBe(PAGE_READONLY | PTE_SPECIAL | addr(anon + BigInt(ps)));
      // read-only mapping, populated: PAGE_READONLY
      const ro = unwrap(mm.mmap({ len: ps, backing: 'anon', prot: 'r', populate: true }));
      // populated by read faults: the shared zero page
      const r = mm.pteAt(ro)!;
      expect([r.zeroPage, r.special]).toEqual([true, true]);
      expect(r.entry).toBe(PAGE_READONLY | PTE_SPECIAL | addr(ro));
      // hugetlb: a PMD block, and a run of contiguous PTEs (each entry its own frames)
      const hb = unwrap(mm.mmap({ len: Number(BigInt(m.hugetlbPool(big).len)), backing: `hugetlb-${big}`, populate: true }));
      expect(mm.pteAt(hb)!.entry).toBe(block(written(PAGE_READONLY)) | addr(hb));
      const h2 = unwrap(mm.mmap({ len: 2 * MiB, backing: 'hugetlb-2M', populate: true }));
      const inRun = h2 + BigInt(5 * ps);
      expect(mm.pteAt(inRun)!.entry).toBe(written(PAGE_READONLY) | PTE_CONT | addr(inRun));
      // a shared PFN map of an MMIO region: PAGE_SHARED, noncached, special, clean
      const dev = unwrap(mm.mmap({ len: ps, backing: { device: 'bar0' }, populate: true }));
      expect(mm.pteAt(dev)!.entry).toBe(noncached(PAGE_SHARED) | PTE_SPECIAL | addr(dev));
    });
  }

  it('52-bit physical addresses: PA[51:48] in bits 15:12 at 64 KiB (FEAT_LPA), PA[51:50] in bits 9:8 at 16 KiB (LPA2, no SH bits)', () => {
    const pa = 0xf_1234_5678_0000;
    const e64 = arm64UserEntry(pa, 65536, 52, false, false, false, false, 'wb', false);
    expect(e64).toBe(PAGE_READONLY | 0x1234_5678_0000n | (0xfn << 12n));
    const pa16 = 0xf_1234_5678_c000;
    const e16 = arm64UserEntry(pa16, 16384, 52, false, false, false, false, 'wb', false);
    expect(e16).toBe((PAGE_READONLY & ~PTE_SHARED) | 0x3_1234_5678_c000n | (0x3n << 8n));
    // below 2^48 the address is in place, with SH at 16 KiB when the PA is 48 bits
    expect(arm64UserEntry(0x1234_0000, 16384, 48, false, false, false, false, 'wb', false)).toBe(PAGE_READONLY | 0x1234_0000n);
  });
});

describe('user entries on both architectures', () => {
  it('a fault-time PFN map (vmf_insert_pfn_prot: insert_pfn without mkwrite) is writable, clean and special', () => {
    for (const ps of [4096, 65536]) {
      const m = createMmMachine({ ramBytes: 4 * GiB, pageSize: ps });
      const mm = m.newProcess();
      const target = m.regions.find((r) => r.kind === 'ram')!.startNum / ps + 64;
      const va = unwrap(mm.mmap({ len: ps, backing: { pfnmap: { name: 'dmabuf', fault: (pgoff) => ok({ pfn: target + pgoff, cache: 'wb' }) } } }));
      unwrap(mm.readUser(va, 1));
      const p = mm.pteAt(va)!;
      expect([p.writable, p.special]).toEqual([true, true]);
      const pa = BigInt(target * ps);
      if (ps === 4096) expect(p.entry).toBe(0x1n | 0x2n | 0x4n | 0x20n | 0x200n | (1n << 63n) | pa); // P RW US A SPECIAL NX, no D
      else expect(p.entry).toBe(PAGE_SHARED | PTE_SPECIAL | pa); // PTE_RDONLY still set: clean
    }
  });

  it('the huge zero folio of a THP slot read first is a special PMD on x86-64', () => {
    const m = createMmMachine({ ramBytes: 4 * GiB });
    const mm = m.newProcess();
    const va = unwrap(mm.mmap({ len: 2 * MiB, backing: 'thp' }));
    unwrap(mm.readUser(va + 5n, 1));
    const p = mm.pteAt(va)!;
    expect([p.level, p.zeroPage, p.special, p.writable]).toEqual(['pmd', true, true, false]);
    expect(p.entry & 0x200n).toBe(0x200n); // _PAGE_SPECIAL
    expect(p.entry & 0x82n).toBe(0x80n); // PS, not RW
  });

  it('a read fault in a THP slot maps the huge zero folio where the THP is a PMD (4 KiB), the small zero page at 16 and 64 KiB', () => {
    for (const ps of [4096, 16384, 65536]) {
      const m = createMmMachine({ ramBytes: 4 * GiB, pageSize: ps });
      const mm = m.newProcess();
      const va = unwrap(mm.mmap({ len: 2 * MiB, backing: 'thp' }));
      unwrap(mm.readUser(va + BigInt(3 * ps), 1));
      const p = mm.pteAt(va + BigInt(3 * ps))!;
      expect([p.zeroPage, p.special, p.writable]).toEqual([true, true, false]);
      expect([p.level, p.contig, p.leafBytes]).toEqual(ps === 4096 ? ['pmd', 1, 2 * MiB] : ['pte', 1, ps]);
      // the other pages of the slot stay unmapped at 16 and 64 KiB (one zero PTE, no run)
      expect(mm.pteAt(va)!.present).toBe(ps === 4096);
    }
  });

  it('a private hugetlb page a read fault mapped stays read-only and clean until a write fault (hugetlb_no_page, hugetlb_wp)', () => {
    for (const ps of [4096, 65536]) {
      const m = createMmMachine({ ramBytes: 4 * GiB, pageSize: ps, hugetlb: { '2M': 2 } });
      const mm = m.newProcess();
      const va = unwrap(mm.mmap({ len: 2 * MiB, backing: 'hugetlb-2M' }));
      unwrap(mm.readUser(va, 1));
      const pa = mm.translate(va)!;
      const ro = mm.pteAt(va)!;
      expect([ro.writable, ro.special]).toEqual([false, false]);
      if (ps === 4096) expect(ro.entry).toBe(0x1n | 0x4n | 0x20n | 0x80n | (1n << 63n) | pa); // P US A PS NX: no RW, no D
      else expect(ro.entry).toBe(PAGE_READONLY | PTE_CONT | pa);
      // a write takes one more fault and makes it writable and dirty in place
      const faults = m.stats.pageFaults;
      unwrap(mm.writeUser(va + 7n, Uint8Array.of(9)));
      expect(m.stats.pageFaults).toBe(faults + 1);
      expect(mm.translate(va)).toBe(pa);
      const rw = mm.pteAt(va)!;
      expect(rw.writable).toBe(true);
      if (ps === 4096) expect(rw.entry).toBe(0x1n | 0x2n | 0x4n | 0x20n | 0x40n | 0x80n | (1n << 63n) | pa);
      else expect(rw.entry).toBe(written(PAGE_READONLY) | PTE_CONT | pa);
      // a FOLL_WRITE pin of a read-faulted huge page takes the write fault first
      const v2 = unwrap(mm.mmap({ len: 2 * MiB, backing: 'hugetlb-2M' }));
      unwrap(mm.readUser(v2, 1));
      const f2 = m.stats.pageFaults;
      const pins = unwrap(pinUserPages(mm, v2, 1, FOLL_WRITE));
      expect(m.stats.pageFaults).toBe(f2 + 1);
      expect(mm.pteAt(v2)!.writable).toBe(true);
      unpinUserPages(pins);
    }
  });

  it('mprotect to read-only keeps the dirty bit of a written private page (pte_modify)', () => {
    for (const ps of [4096, 16384]) {
      const m = createMmMachine({ ramBytes: 4 * GiB, pageSize: ps });
      const mm = m.newProcess();
      const va = unwrap(mm.mmap({ len: ps, backing: 'anon' }));
      unwrap(mm.writeUser(va, Uint8Array.of(1)));
      unwrap(mm.mprotect(va, ps, 'r'));
      const p = mm.pteAt(va)!;
      expect(p.writable).toBe(false);
      const pa = mm.translate(va)!;
      if (ps === 4096) expect(p.entry).toBe(0x1n | 0x4n | 0x20n | 0x40n | (1n << 63n) | pa); // D kept, RW gone
      else expect(p.entry).toBe(PAGE_READONLY | PTE_DIRTY | pa); // PTE_DIRTY kept, no PTE_WRITE, PTE_RDONLY set
    }
  });

  it('a mprotect leaves written hugetlb pages read-only and dirty, r or rw (hugetlb_change_protection); FOLL_FORCE follows without a fault', () => {
    const m = createMmMachine({ ramBytes: 4 * GiB, hugetlb: { '2M': 2 } });
    const mm = m.newProcess();
    const va = unwrap(mm.mmap({ len: 2 * MiB, backing: 'hugetlb-2M', populate: true })); // write faults
    const pa = mm.translate(va)!;
    const RO_DIRTY = 0x1n | 0x4n | 0x20n | 0x40n | 0x80n | (1n << 63n) | pa; // P US A D PS NX
    unwrap(mm.mprotect(va, 2 * MiB, 'r'));
    expect(mm.pteAt(va)!.entry).toBe(RO_DIRTY);
    unwrap(mm.mprotect(va, 2 * MiB, 'rw'));
    expect(mm.pteAt(va)!.entry).toBe(RO_DIRTY); // not upgraded to writable
    const faults = m.stats.pageFaults;
    unwrap(mm.writeUser(va, Uint8Array.of(3)));
    expect(m.stats.pageFaults).toBe(faults + 1); // hugetlb_wp again
    expect(mm.pteAt(va)!.entry).toBe(RO_DIRTY | 0x2n);
    // FOLL_WRITE | FOLL_FORCE on a read-only private mapping whose page a read fault mapped: followed as it is
    const ro = unwrap(mm.mmap({ len: 2 * MiB, backing: 'hugetlb-2M', prot: 'r' }));
    unwrap(mm.readUser(ro, 1));
    const f2 = m.stats.pageFaults;
    const pins = unwrap(pinUserPages(mm, ro, 1, FOLL_WRITE | FOLL_FORCE));
    expect(m.stats.pageFaults).toBe(f2);
    expect([mm.pteAt(ro)!.writable, mm.pteAt(ro)!.entry & 0x40n]).toEqual([false, 0n]);
    unpinUserPages(pins);
  });
});
