// GUP against mm/gup.c, mm/memory.c and mm/huge_memory.c of Linux 7.1: each case is the smallest
// reproducer of a place where the model used to pin where the kernel refuses (or the reverse), with
// the kernel's answer. Test names say which old behaviour they catch.
import { describe, expect, it } from 'vitest';
import { GiB, MiB, unwrap } from '../src/base/index.ts';
import {
  FOLL_ANON, FOLL_DUMP, FOLL_FORCE, FOLL_GET, FOLL_HONOR_NUMA_FAULT, FOLL_HWPOISON, FOLL_INTERRUPTIBLE, FOLL_LONGTERM,
  FOLL_NOFAULT, FOLL_NOWAIT, FOLL_PCI_P2PDMA, FOLL_SPLIT_PMD, FOLL_WRITE, createMmMachine,
  pinUserPages, pinUserPagesFast, pinUserPhyrs, unpinUserPages, unpinUserPhyrs, type MmMachine, type UserMm,
} from '../src/mm/index.ts';

const PS = 4096;
const errno = (r: { ok: boolean; errno?: string }): string => (r.ok ? 'ok' : r.errno!);

function world(cfg: Partial<Parameters<typeof createMmMachine>[0]> = {}): { m: MmMachine; mm: UserMm } {
  const m = createMmMachine({
    ramBytes: 256 * MiB, hugetlb: { '2M': 4 }, seed: 3,
    deviceMemory: [{ name: 'p2p', bytes: 4 * MiB, pgmap: true }],
    pmem: [{ name: 'pmem-fs', bytes: GiB, structPage: true }, { name: 'pmem-dev', bytes: GiB, structPage: true, mode: 'devdax' }],
    ...cfg,
  });
  return { m, mm: m.newProcess() };
}

describe('FOLL_* values are those of include/linux/mm_types.h and mm/internal.h (7.1)', () => {
  it('public and internal flag bits', () => {
    expect([FOLL_WRITE, FOLL_GET, FOLL_DUMP, FOLL_FORCE, FOLL_NOWAIT, FOLL_NOFAULT, FOLL_HWPOISON, FOLL_ANON, FOLL_LONGTERM,
      FOLL_SPLIT_PMD, FOLL_PCI_P2PDMA, FOLL_INTERRUPTIBLE, FOLL_HONOR_NUMA_FAULT]).toEqual(Array.from({ length: 13 }, (_, i) => 1 << i));
  });
});

describe('1. is_valid_gup_args', () => {
  it('FOLL_LONGTERM | FOLL_PCI_P2PDMA is a WARN and EINVAL from the fast entry points and 0 pages from pin_user_pages, not a pin', () => {
    const { m, mm } = world();
    const p2p = unwrap(mm.mmap({ len: 2 * PS, backing: { device: 'p2p' } }));
    const flags = FOLL_LONGTERM | FOLL_PCI_P2PDMA;
    const w = m.events.count('WARN');
    expect(errno(pinUserPhyrs(mm, p2p, 2 * PS, flags))).toBe('EINVAL');
    expect(errno(pinUserPagesFast(mm, p2p, 2, flags))).toBe('EINVAL');
    const slow = unwrap(pinUserPages(mm, p2p, 2, flags)); // pin_user_pages returns 0 when the args are invalid
    expect(slow.count).toBe(0);
    expect(m.events.count('WARN')).toBe(w + 3);
    expect(unwrap(pinUserPages(mm, p2p, 0, flags)).count).toBe(0); // checked before nr_pages: a WARN too
    expect(m.events.count('WARN')).toBe(w + 4);
    expect(m.folioOf(mm.translate(p2p)! / 4096n)).toBeUndefined(); // no ZONE_DEVICE page was grabbed
    expect(m.listPins()).toEqual([]);
    unpinUserPages(slow); // unpinning 0 pages is a no-op
  });
});

describe('2. the shared zero page and the huge zero folio', () => {
  it('a read-only pin of untouched private anon returns the zero pfn and takes no reference, not a private page', () => {
    const { m, mm } = world();
    const va = unwrap(mm.mmap({ len: 4 * PS, backing: 'anon' }));
    const pa = unwrap(pinUserPages(mm, va, 4, 0));
    const zero = pa.pfnAt(0);
    expect([1, 2, 3].map((i) => pa.pfnAt(i))).toEqual([zero, zero, zero]);
    expect(m.folioOf(zero)).toBeUndefined(); // no folio record: nothing counted on it
    expect(m.stats.gupPagesPinned).toBe(0);
    expect(m.listPins()[0]).toMatchObject({ nrPages: 4, pinnedPages: 0, folios: 0 });
    unpinUserPages(pa);
    expect(m.listPins()).toEqual([]);
  });
  it('FOLL_NOFAULT | FOLL_WRITE on a zero-page mapping is EFAULT (a write needs a fault); FOLL_NOFAULT alone returns it', () => {
    const { mm } = world();
    const va = unwrap(mm.mmap({ len: PS, backing: 'anon' }));
    unwrap(mm.touch(va, 1, false)); // read fault: the zero page
    const zero = mm.translate(va);
    expect(errno(pinUserPhyrs(mm, va, PS, FOLL_NOFAULT | FOLL_WRITE))).toBe('EFAULT');
    expect(mm.translate(va)).toBe(zero);
    const l = unwrap(pinUserPhyrs(mm, va, PS, FOLL_NOFAULT));
    expect(l.addrAt(0)).toBe(zero);
    unpinUserPhyrs(l);
  });
  it('a write after a zero-page pin copies on write to a private page; the pin keeps the zero page', () => {
    const { m, mm } = world();
    const va = unwrap(mm.mmap({ len: PS, backing: 'anon' }));
    const ro = unwrap(pinUserPhyrs(mm, va, PS, 0));
    const zero = ro.addrAt(0);
    unwrap(mm.writeUser(va, new Uint8Array([7])));
    const priv = mm.translate(va)!;
    expect(priv).not.toBe(zero);
    expect(m.folioOf(priv / 4096n)).toMatchObject({ order: 0, refcount: 1, pincount: 0 });
    expect(m.mem.read(zero, 1)[0]).toBe(0);
    expect(unwrap(mm.readUser(va, 1))[0]).toBe(7);
    // a write pin faults the private page in for write: FOLL_WRITE never returns the zero page
    const rw = unwrap(pinUserPhyrs(mm, va, PS, FOLL_WRITE));
    expect(rw.addrAt(0)).toBe(priv);
    unpinUserPhyrs(ro);
    unpinUserPhyrs(rw);
    expect(m.folioOf(priv / 4096n)!.pincount).toBe(0);
  });
  it('1 GiB read-only pin of untouched memory on a 64 MiB machine: 262144 zero-pfn entries, not ENOMEM', () => {
    const m = createMmMachine({ ramBytes: 64 * MiB, seed: 1 });
    const mm = m.newProcess();
    const va = unwrap(mm.mmap({ len: GiB, backing: 'anon' }));
    const free0 = m.freePages;
    const pa = unwrap(pinUserPages(mm, va, 262144, 0));
    expect(pa.count).toBe(262144);
    const zero = pa.pfns[0];
    expect(pa.pfns.every((p) => p === zero)).toBe(true);
    expect(m.freePages).toBe(free0 - 1); // the zero page itself, taken on first use
    // The phyr list: the same 4 KiB frame repeated never merges, so one entry per page.
    const l = unwrap(pinUserPhyrs(mm, va, GiB, 0));
    expect(l.count).toBe(262144);
    expect(l.kernelBytes).toBe(16 * 262144);
    expect(l.addrAt(262143)).toBe(BigInt(zero) * 4096n);
    expect(l.lenAt(262143)).toBe(PS);
    unpinUserPages(pa);
    unpinUserPhyrs(l);
  });
  it('a read pin of an untouched THP slot returns the huge zero folio, pinned like any folio (is_zero_folio is the small page only)', () => {
    const { m, mm } = world();
    const va = unwrap(mm.mmap({ len: 4 * MiB, backing: 'thp' }));
    const l = unwrap(pinUserPhyrs(mm, va, 4 * MiB, 0));
    expect(l.count).toBe(2); // one 2 MiB entry per slot, the same folio twice
    expect(l.addrAt(0)).toBe(l.addrAt(1));
    expect(l.lenAt(0)).toBe(2 * MiB);
    const hz = m.folioOf(l.addrAt(0) / 4096n)!;
    expect(hz.order).toBe(9);
    expect(hz.pincount).toBe(1024);
    // A write fault over the huge zero PMD maps a new THP (do_huge_zero_wp_pmd).
    unwrap(mm.writeUser(va, new Uint8Array([1])));
    const thp = mm.translate(va)!;
    expect(thp).not.toBe(l.addrAt(0));
    expect(m.folioOf(thp / 4096n)).toMatchObject({ order: 9, refcount: 1 });
    unpinUserPhyrs(l);
    expect(m.folioOf(l.addrAt(0) / 4096n)).toMatchObject({ pincount: 0, refcount: 1 }); // the huge zero folio stays
  });
});

describe('3. short pins', () => {
  it('pinUserPages(va, 2, FOLL_WRITE) over [untouched anon page, hole] returns 1 page, not EFAULT', () => {
    const { m, mm } = world();
    const base = 0x40000000n;
    unwrap(mm.mmap({ len: PS, backing: 'anon', addr: base }));
    const pa = unwrap(pinUserPages(mm, base, 2, FOLL_WRITE));
    expect(pa.count).toBe(1);
    const phys = mm.translate(base)!; // faulted in and pinned
    expect(pa.pfnAt(0)).toBe(phys / 4096n);
    expect(m.folioOf(phys / 4096n)!.pincount).toBe(1);
    const fast = unwrap(pinUserPagesFast(mm, base, 2, FOLL_WRITE));
    expect(fast.count).toBe(1);
    // pinUserPhyrs: the list covers what was pinned; nrPages is the kernel's count.
    const l = unwrap(pinUserPhyrs(mm, base + 100n, 2 * PS, FOLL_WRITE));
    expect([l.count, l.totalLen, l.nrPages]).toEqual([1, PS - 100, 1]);
    expect(m.listPins().map((p) => [p.api, p.nrPages, p.len])).toEqual([
      ['pin_user_pages', 1, PS], ['pin_user_pages_fast', 1, PS], ['pin_user_phyrs', 1, PS - 100]]);
    // The caller asks again from where it stopped and learns why.
    expect(errno(pinUserPages(mm, base + BigInt(PS), 1, FOLL_WRITE))).toBe('EFAULT');
    unpinUserPages(pa);
    unpinUserPages(fast);
    unpinUserPhyrs(l);
    expect(m.folioOf(phys / 4096n)!.pincount).toBe(0);
  });
});

describe('4. the first failing page decides the error', () => {
  it('a P2PDMA page then a hole without FOLL_PCI_P2PDMA is EREMOTEIO (try_grab_folio), not EFAULT', () => {
    const { mm } = world();
    const base = 0x40000000n;
    unwrap(mm.mmap({ len: PS, backing: { device: 'p2p' }, addr: base }));
    expect(errno(pinUserPages(mm, base, 2, 0))).toBe('EREMOTEIO');
    expect(errno(pinUserPhyrs(mm, base, 2 * PS, 0))).toBe('EREMOTEIO');
    // and an anon page before it makes it a short pin of 1
    unwrap(mm.mmap({ len: PS, backing: 'anon', addr: base - BigInt(PS) }));
    const pa = unwrap(pinUserPages(mm, base - BigInt(PS), 3, FOLL_WRITE));
    expect(pa.count).toBe(1);
    unpinUserPages(pa);
  });
});

describe('5. pmem in fsdax or devdax mode', () => {
  it('FOLL_LONGTERM on an fsdax mapping is EOPNOTSUPP (check_vma_flags: vma_is_fsdax), not a pin; devdax pins', () => {
    const { m, mm } = world();
    const fs = unwrap(mm.mmap({ len: 2 * PS, backing: { device: 'pmem-fs' } }));
    const dev = unwrap(mm.mmap({ len: 2 * PS, backing: { device: 'pmem-dev' } }));
    expect(m.region('pmem-fs')!.daxMode).toBe('fsdax'); // ndctl's default mode
    expect(errno(pinUserPages(mm, fs, 2, FOLL_LONGTERM | FOLL_WRITE))).toBe('EOPNOTSUPP');
    expect(errno(pinUserPagesFast(mm, fs, 2, FOLL_LONGTERM))).toBe('EOPNOTSUPP');
    expect(errno(pinUserPhyrs(mm, fs, 2 * PS, FOLL_LONGTERM))).toBe('EOPNOTSUPP');
    const shortTerm = unwrap(pinUserPages(mm, fs, 2, FOLL_WRITE));
    const longTerm = unwrap(pinUserPages(mm, dev, 2, FOLL_LONGTERM | FOLL_WRITE));
    expect([shortTerm.count, longTerm.count]).toEqual([2, 2]);
    expect(m.folioOf(longTerm.pfnAt(1))!.pincount).toBe(1);
    unpinUserPages(shortTerm);
    unpinUserPages(longTerm);
    expect(() => createMmMachine({ ramBytes: GiB, pmem: [{ name: 'x', bytes: GiB, structPage: true, mode: 'raw' as never }] }))
      .toThrow(/pmem\[0\]\.mode must be 'fsdax' or 'devdax'/);
  });
});

describe('6. FOLL_FORCE', () => {
  it('FOLL_WRITE | FOLL_FORCE on a read-only private mapping pins and breaks COW (a private copy of the zero page), not EFAULT', () => {
    const { m, mm } = world();
    const va = unwrap(mm.mmap({ len: 2 * PS, backing: 'anon', prot: 'r' }));
    unwrap(mm.touch(va, 1, false));
    const zero = mm.translate(va)!;
    expect(errno(pinUserPages(mm, va, 2, FOLL_WRITE))).toBe('EFAULT');
    const pa = unwrap(pinUserPages(mm, va, 2, FOLL_WRITE | FOLL_FORCE));
    expect(pa.count).toBe(2);
    const priv = mm.translate(va)!;
    expect(priv).not.toBe(zero);
    expect(pa.pfnAt(0)).toBe(priv / 4096n);
    expect(m.folioOf(priv / 4096n)!.pincount).toBe(1);
    expect(errno(mm.writeUser(va, new Uint8Array([1])))).toBe('EFAULT'); // the mapping stays read-only
    unpinUserPages(pa);
  });
  it('FOLL_WRITE | FOLL_FORCE on a read-only shared mapping is still EFAULT', () => {
    const { mm } = world();
    const va = unwrap(mm.mmap({ len: PS, backing: { device: 'pmem-dev' }, prot: 'r' }));
    expect(errno(pinUserPages(mm, va, 1, FOLL_WRITE | FOLL_FORCE))).toBe('EFAULT');
    expect(errno(pinUserPhyrs(mm, va, PS, FOLL_WRITE | FOLL_FORCE))).toBe('EFAULT');
    const ro = unwrap(pinUserPages(mm, va, 1, 0));
    unpinUserPages(ro);
  });
});

describe('7. flags outside gup_fast_fallback()\'s mask', () => {
  it('FOLL_ANON, FOLL_SPLIT_PMD, FOLL_DUMP (and NOWAIT, HWPOISON, INTERRUPTIBLE) are a WARN and EINVAL for the fast entry points, not ignored', () => {
    const { m, mm } = world();
    const va = unwrap(mm.mmap({ len: PS, backing: 'anon', populate: true }));
    for (const f of [FOLL_DUMP, FOLL_NOWAIT, FOLL_HWPOISON, FOLL_ANON, FOLL_SPLIT_PMD, FOLL_INTERRUPTIBLE]) {
      const w = m.events.count('WARN');
      expect(errno(pinUserPagesFast(mm, va, 1, f))).toBe('EINVAL');
      expect(errno(pinUserPhyrs(mm, va, PS, f))).toBe('EINVAL');
      expect(m.events.count('WARN')).toBe(w + 2);
    }
    // FOLL_GET is caught before the mask, by is_valid_gup_args
    expect(errno(pinUserPagesFast(mm, va, 1, FOLL_GET))).toBe('EINVAL');
    for (const f of [FOLL_FORCE, FOLL_HONOR_NUMA_FAULT, FOLL_NOFAULT]) unpinUserPages(unwrap(pinUserPagesFast(mm, va, 1, f)));
  });
  it('pin_user_pages (slow) applies them: FOLL_ANON refuses hugetlb (EFAULT), FOLL_SPLIT_PMD refuses hugetlb (EOPNOTSUPP) and splits a THP', () => {
    const { m, mm } = world();
    const anon = unwrap(mm.mmap({ len: PS, backing: 'anon', populate: true }));
    const huge = unwrap(mm.mmap({ len: 2 * MiB, backing: 'hugetlb-2M', populate: true }));
    const thp = unwrap(mm.mmap({ len: 2 * MiB, backing: 'thp', populate: true }));
    expect(errno(pinUserPages(mm, huge, 1, FOLL_ANON))).toBe('EFAULT');
    expect(errno(pinUserPages(mm, huge, 1, FOLL_SPLIT_PMD))).toBe('EOPNOTSUPP');
    const a = unwrap(pinUserPages(mm, anon, 1, FOLL_ANON | FOLL_NOWAIT | FOLL_HWPOISON | FOLL_INTERRUPTIBLE));
    const head = mm.translate(thp)! / 4096n;
    expect(m.folioOf(head)).toMatchObject({ order: 9, refcount: 1 }); // one PMD
    const t = unwrap(pinUserPages(mm, thp + BigInt(PS), 2, FOLL_SPLIT_PMD));
    expect(t.count).toBe(2);
    expect(m.folioOf(head)).toMatchObject({ order: 9, refcount: 512 + 2, pincount: 2 }); // 512 PTEs now
    unpinUserPages(a);
    unpinUserPages(t);
  });
  it('pin_user_pages (slow) with FOLL_DUMP: EFAULT for unfaulted memory and the zero page (no fault), pins faulted pages', () => {
    const { mm } = world();
    const va = unwrap(mm.mmap({ len: 3 * PS, backing: 'anon' }));
    expect(errno(pinUserPages(mm, va, 1, FOLL_DUMP))).toBe('EFAULT');
    expect(mm.translate(va)).toBeUndefined();
    unwrap(mm.touch(va + BigInt(PS), 1, false)); // zero page
    expect(errno(pinUserPages(mm, va + BigInt(PS), 1, FOLL_DUMP))).toBe('EFAULT');
    unwrap(mm.touch(va, 1, true));
    const pa = unwrap(pinUserPages(mm, va, 3, FOLL_DUMP));
    expect(pa.count).toBe(1); // stops at the zero page
    unpinUserPages(pa);
  });
});

describe('8. FOLL_LONGTERM read pins unshare the zero page (gup_must_unshare)', () => {
  it('a FOLL_LONGTERM read pin of untouched private anon pins private zeroed pages, not the zero page', () => {
    const { m, mm } = world();
    const va = unwrap(mm.mmap({ len: 2 * PS, backing: 'anon' }));
    unwrap(mm.touch(va, 1, false)); // the first page maps the zero page, the second is not present
    const zero = mm.translate(va)! / 4096n;
    const pa = unwrap(pinUserPages(mm, va, 2, FOLL_LONGTERM));
    expect(pa.count).toBe(2);
    expect(pa.pfnAt(0)).not.toBe(zero);
    expect(pa.pfnAt(1)).not.toBe(zero);
    expect(pa.pfnAt(0)).not.toBe(pa.pfnAt(1));
    for (const i of [0, 1]) {
      expect(mm.translate(va + BigInt(i * PS))).toBe(pa.pfnAt(i) * 4096n); // the mapping now holds the copy
      expect(m.folioOf(pa.pfnAt(i))).toMatchObject({ order: 0, refcount: 2, pincount: 1 }); // PTE + pin
      expect(m.mem.read(pa.pfnAt(i) * 4096n, PS).every((b) => b === 0)).toBe(true);
    }
    expect(m.listPins()[0]).toMatchObject({ nrPages: 2, pinnedPages: 2 });
    unpinUserPages(pa);
  });
  it('the same through pinUserPhyrs (the fast rules), on a read-only private mapping too (is_cow_mapping), and on a THP slot', () => {
    const { m, mm } = world();
    const ro = unwrap(mm.mmap({ len: PS, backing: 'anon', prot: 'r' }));
    const l = unwrap(pinUserPhyrs(mm, ro, PS, FOLL_LONGTERM));
    const priv = l.addrAt(0);
    expect(priv).toBe(mm.translate(ro));
    expect(m.folioOf(priv / 4096n)).toMatchObject({ refcount: 2, pincount: 1 });
    expect(errno(mm.writeUser(ro, new Uint8Array([1])))).toBe('EFAULT'); // still read-only
    const thp = unwrap(mm.mmap({ len: 2 * MiB, backing: 'thp' }));
    const t = unwrap(pinUserPhyrs(mm, thp, 2 * MiB, FOLL_LONGTERM));
    expect([t.count, t.lenAt(0)]).toEqual([1, 2 * MiB]);
    const f = m.folioOf(t.addrAt(0) / 4096n)!;
    expect(f).toMatchObject({ order: 9, refcount: 1 + 512, pincount: 512 }); // a new THP, not the huge zero folio
    expect(mm.translate(thp)).toBe(t.addrAt(0));
    unpinUserPhyrs(l);
    unpinUserPhyrs(t);
  });
  it('FOLL_LONGTERM | FOLL_NOFAULT over the zero page is EFAULT (the unshare needs a fault)', () => {
    const { mm } = world();
    const va = unwrap(mm.mmap({ len: PS, backing: 'anon' }));
    unwrap(mm.touch(va, 1, false));
    const zero = mm.translate(va);
    expect(errno(pinUserPhyrs(mm, va, PS, FOLL_LONGTERM | FOLL_NOFAULT))).toBe('EFAULT');
    expect(mm.translate(va)).toBe(zero);
  });
});
