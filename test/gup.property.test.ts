// GUP properties: pinned buffers match the page tables byte for byte, pin counts balance, failed
// pins leave nothing pinned, and each error case returns the kernel's errno.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { GiB, KernelBug, MiB, unwrap } from '../src/base/index.ts';
import { PhyrList, RANGE_DEVICE, RANGE_MMIO, RANGE_NOPAGE, type RangeSource } from '../src/phyr/index.ts';
import {
  FOLL_GET, FOLL_NOFAULT, FOLL_PCI_P2PDMA, FOLL_PIN, FOLL_WRITE, createMmMachine, pinUserPages, pinUserPagesFast, pinUserPhyrs,
  unpinUserPages, unpinUserPhyrs, type MmMachine, type MmapBacking, type UserMm,
} from '../src/mm/index.ts';

const PS = 4096;

function machine(aged: boolean, seed: number): MmMachine {
  return createMmMachine({
    ramBytes: 4 * GiB, hugetlb: { '2M': 16, '1G': 1 }, aged, seed,
    deviceMemory: [{ name: 'bar0', bytes: 4 * MiB }, { name: 'p2p', bytes: 4 * MiB, pgmap: true }],
  });
}

/** Every byte the source walks, in order, must be the physical address translate() gives. */
function expectMatchesPageTables(mm: UserMm, src: RangeSource, start: number, len: number): void {
  expect(src.totalLen).toBe(len);
  let off = 0;
  for (const r of src) {
    expect(r.len).toBeGreaterThan(0);
    for (let i = 0; i < r.len; i += r.len > 512 ? 61 : 1) {
      expect(r.addr + BigInt(i)).toBe(mm.translate(BigInt(start + off + i)));
    }
    // always check the last byte of every range too
    expect(r.addr + BigInt(r.len - 1)).toBe(mm.translate(BigInt(start + off + r.len - 1)));
    off += r.len;
  }
  expect(off).toBe(len);
}

/**
 * The folio heads a pin of [start, end) holds, one per base page, read from the page tables right
 * after the pin (a later copy on write of a zero page must not move them). No struct page and the
 * zero page hold none.
 */
function pinnedHeads(m: MmMachine, mm: UserMm, start: number, end: number): bigint[] {
  const out: bigint[] = [];
  for (let pg = Math.floor(start / PS); pg < Math.ceil(end / PS); pg++) {
    const phys = mm.translate(BigInt(pg * PS));
    if (phys === undefined) continue;
    const f = m.folioOf(phys / BigInt(PS));
    if (f !== undefined) out.push(f.head);
  }
  return out;
}

/** Reference pin counts: for every live pin, one per base page it holds, by folio head. */
function expectedPins(live: Array<{ heads: bigint[] }>): Map<bigint, number> {
  const out = new Map<bigint, number>();
  for (const p of live) for (const h of p.heads) out.set(h, (out.get(h) ?? 0) + 1);
  return out;
}

const backingArb = fc.constantFrom<MmapBacking>('anon', 'thp', 'hugetlb-2M', { device: 'bar0', offset: 0 }, { device: 'p2p', offset: 4096 });

interface World { m: MmMachine; mm: UserMm; maps: Array<{ va: number; len: number; backing: MmapBacking }> }

function build(aged: boolean, seed: number, specs: Array<{ backing: MmapBacking; pages: number; touch: number }>): World {
  const m = machine(aged, seed);
  const mm = m.newProcess();
  const maps: World['maps'] = [];
  for (const s of specs) {
    const len = typeof s.backing === 'object' ? Math.min(s.pages, 200) * PS : s.backing === 'hugetlb-2M' ? 2 * MiB : s.pages * PS;
    const r = mm.mmap({ len, backing: s.backing });
    if (!r.ok) continue;
    const va = Number(r.value);
    const t = Math.min(s.touch, len - 1);
    unwrap(mm.touch(BigInt(va + t), 1, true));
    maps.push({ va, len, backing: s.backing });
  }
  return { m, mm, maps };
}

const specArb = fc.array(fc.record({ backing: backingArb, pages: fc.integer({ min: 1, max: 700 }), touch: fc.nat({ max: 3 * MiB }) }), { minLength: 1, maxLength: 4 });

describe('pinned buffers match the page tables', () => {
  it('pinUserPhyrs and pinUserPages cover every byte once, in order', () => {
    fc.assert(fc.property(fc.boolean(), fc.integer({ min: 1, max: 1000 }), specArb, fc.nat(), fc.nat(), fc.nat(),
      (aged, seed, specs, which, offRaw, lenRaw) => {
        const w = build(aged, seed, specs);
        if (w.maps.length === 0) return;
        const mp = w.maps[which % w.maps.length];
        const start = mp.va + (offRaw % mp.len);
        const len = 1 + (lenRaw % Math.min(64 * 1024, mp.va + mp.len - start));
        const flags = FOLL_WRITE | FOLL_PCI_P2PDMA;
        const phyrs = unwrap(pinUserPhyrs(w.mm, BigInt(start), len, flags));
        expectMatchesPageTables(w.mm, phyrs, start, len);
        // adjacent entries never continue each other with equal flags (the builder merged them)
        for (let i = 1; i < phyrs.count; i++) {
          expect(phyrs.addrAt(i - 1) + BigInt(phyrs.lenAt(i - 1)) === phyrs.addrAt(i) && phyrs.flagsAt(i - 1) === phyrs.flagsAt(i)).toBe(false);
        }
        const isPfnMap = typeof mp.backing === 'object' && 'device' in mp.backing && mp.backing.device === 'bar0';
        if (isPfnMap) {
          for (const r of phyrs) expect(r.flags).toBe(RANGE_DEVICE | RANGE_MMIO | RANGE_NOPAGE);
        }
        const nr = Math.ceil((start + len) / PS) - Math.floor(start / PS);
        const pages = pinUserPages(w.mm, BigInt(start), nr, flags);
        if (isPfnMap) {
          expect(pages.ok ? 'ok' : pages.errno).toBe('EFAULT');
        } else {
          const pa = unwrap(pages);
          expect(pa.count).toBe(nr);
          expect(pa.kernelBytes).toBe(8 * nr);
          expectMatchesPageTables(w.mm, pa, start, nr * PS - (start % PS));
          unpinUserPages(pa);
        }
        unpinUserPhyrs(phyrs);
      }), { numRuns: 40 });
  });
  it('a pin across adjacent mappings continues the list across the seam', () => {
    const m = machine(false, 1);
    const mm = m.newProcess();
    const base = 0x200000000;
    unwrap(mm.mmap({ len: 3 * PS, backing: 'anon', addr: BigInt(base) }));
    unwrap(mm.mmap({ len: 2 * MiB, backing: 'hugetlb-2M', addr: BigInt(base + 2 * MiB) }));
    unwrap(mm.mmap({ len: 2 * MiB - 3 * PS, backing: 'anon', addr: BigInt(base + 3 * PS) }));
    const l = unwrap(pinUserPhyrs(mm, BigInt(base + 100), 3 * MiB, 0));
    expectMatchesPageTables(mm, l, base + 100, 3 * MiB);
    unpinUserPhyrs(l);
  });
});

describe('pin counts', () => {
  it('random pin/unpin sequences keep pincounts equal to the live pins and restore them', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 100 }), specArb,
      fc.array(fc.record({ pin: fc.boolean(), phyrs: fc.boolean(), which: fc.nat(), off: fc.nat(), len: fc.nat() }), { maxLength: 12 }),
      (seed, specs, ops) => {
        const w = build(true, seed, specs);
        if (w.maps.length === 0) return;
        const heads = new Set<bigint>();
        const live: Array<{ heads: bigint[]; list: PhyrList | import('../src/phyr/index.ts').PageArray }> = [];
        const check = (): void => {
          const exp = expectedPins(live);
          for (const h of exp.keys()) heads.add(h);
          for (const h of heads) expect(w.m.folioOf(h)?.pincount ?? 0).toBe(exp.get(h) ?? 0);
        };
        for (const op of ops) {
          if (op.pin || live.length === 0) {
            const mp = w.maps[op.which % w.maps.length];
            if (typeof mp.backing === 'object' && 'device' in mp.backing && mp.backing.device === 'bar0' && !op.phyrs) continue;
            const start = mp.va + (op.off % mp.len);
            const len = 1 + (op.len % Math.min(3 * MiB, mp.va + mp.len - start));
            if (op.phyrs) {
              const list = unwrap(pinUserPhyrs(w.mm, BigInt(start), len, FOLL_PCI_P2PDMA));
              live.push({ heads: pinnedHeads(w.m, w.mm, start, start + len), list });
            } else {
              const s = Math.floor(start / PS) * PS;
              const nr = Math.ceil((start + len - s) / PS);
              const pin = op.len % 2 === 0 ? pinUserPages : pinUserPagesFast;
              const list = unwrap(pin(w.mm, BigInt(start), nr, FOLL_PCI_P2PDMA | (op.off % 2) * FOLL_WRITE));
              live.push({ heads: pinnedHeads(w.m, w.mm, s, s + nr * PS), list });
            }
          } else {
            const p = live.splice(op.which % live.length, 1)[0];
            if (p.list instanceof PhyrList) unpinUserPhyrs(p.list); else unpinUserPages(p.list);
          }
          check();
        }
        while (live.length > 0) {
          const p = live.pop()!;
          if (p.list instanceof PhyrList) unpinUserPhyrs(w.mm, p.list); else unpinUserPages(w.mm, p.list);
        }
        check();
        expect(w.m.events.count('BUG')).toBe(0);
      }), { numRuns: 30 });
  });
  it('pinned twice and unpinned once stays pinned; a third unpin is a BUG that changes nothing', () => {
    const m = machine(false, 2);
    const mm = m.newProcess();
    const va = unwrap(mm.mmap({ len: 2 * PS, backing: 'anon', populate: true }));
    const pfn = mm.translate(va)! / 4096n;
    const a = unwrap(pinUserPhyrs(mm, va, 2 * PS, FOLL_WRITE));
    const b = unwrap(pinUserPages(mm, va, 2, FOLL_WRITE));
    expect(m.folioOf(pfn)!.pincount).toBe(2);
    unpinUserPhyrs(a);
    expect(m.folioOf(pfn)!.pincount).toBe(1);
    expect(() => unpinUserPhyrs(a)).toThrow(KernelBug);
    expect(m.events.count('BUG')).toBe(1);
    expect(m.folioOf(pfn)!.pincount).toBe(1);
    // a list that was never pinned, unpinned through (mm, list): resolved by address and refused
    const twice = PhyrList.from([{ addr: pfn * 4096n, len: PS }, { addr: pfn * 4096n, len: PS }]);
    expect(() => unpinUserPhyrs(mm, twice)).toThrow(KernelBug);
    expect(m.folioOf(pfn)!.pincount).toBe(1);
    unpinUserPages(b);
    expect(m.folioOf(pfn)!.pincount).toBe(0);
    expect(() => unpinUserPhyrs(PhyrList.from([{ addr: 0n, len: 1 }]))).toThrow(/was not returned by a pin/);
  });
  it('munmap of a pinned range defers the free until the last unpin', () => {
    const m = machine(false, 3);
    const mm = m.newProcess();
    const free0 = m.freePages;
    const va = unwrap(mm.mmap({ len: 2 * MiB, backing: 'thp', populate: true }));
    unwrap(mm.writeUser(va + 5n, new Uint8Array([42])));
    const l = unwrap(pinUserPhyrs(mm, va, 2 * MiB, FOLL_WRITE));
    expect(l.count).toBe(1);
    unwrap(mm.munmap(va, 2 * MiB));
    expect(m.freePages).toBe(free0 - 512);
    expect(m.mem.read(l.addrAt(0) + 5n, 1)[0]).toBe(42); // the device could still DMA here
    unpinUserPhyrs(l);
    expect(m.freePages).toBe(free0);
  });
});

describe('a pin stops at the first page that fails (short pins)', () => {
  it('pages before a hole, a read-only mapping or an ENOMEM stay pinned and are returned; errors only when nothing was pinned', () => {
    const m = createMmMachine({ ramBytes: 16 * MiB, seed: 1 });
    const mm = m.newProcess();
    const base = 0x300000000;
    unwrap(mm.mmap({ len: 8 * PS, backing: 'anon', addr: BigInt(base), populate: true }));
    unwrap(mm.mmap({ len: 4 * PS, backing: 'anon', addr: BigInt(base + 8 * PS), prot: 'r', populate: true }));
    const zero = mm.translate(BigInt(base + 8 * PS))! / 4096n; // read-only populate maps the zero page
    expect(m.folioOf(zero)).toBeUndefined();
    const pincounts = (): number[] => Array.from({ length: 8 }, (_, i) => m.folioOf(mm.translate(BigInt(base + i * PS))! / 4096n)!.pincount);
    const hole = unwrap(pinUserPhyrs(mm, BigInt(base), 13 * PS, 0));
    expect([hole.totalLen, hole.nrPages]).toEqual([12 * PS, 12]);
    const hole2 = unwrap(pinUserPages(mm, BigInt(base), 13, 0));
    expect(hole2.count).toBe(12);
    expect(hole2.pfnAt(11)).toBe(zero);
    const ro = unwrap(pinUserPhyrs(mm, BigInt(base), 12 * PS, FOLL_WRITE));
    expect(ro.totalLen).toBe(8 * PS);
    expect(pincounts()).toEqual(new Array(8).fill(3));
    const roOnly = pinUserPhyrs(mm, BigInt(base + 8 * PS), 4 * PS, FOLL_WRITE);
    expect(roOnly.ok ? 'ok' : roOnly.errno).toBe('EFAULT');
    for (const l of [hole, ro]) unpinUserPhyrs(l);
    unpinUserPages(hole2);
    expect(pincounts()).toEqual(new Array(8).fill(0));
    // ENOMEM half-way: the pages faulted in before it are pinned and returned
    const big = unwrap(mm.mmap({ len: 32 * MiB, backing: 'anon' }));
    const r = unwrap(pinUserPhyrs(mm, big, 32 * MiB, FOLL_WRITE));
    expect(r.totalLen).toBeGreaterThan(0);
    expect(r.totalLen).toBeLessThan(32 * MiB);
    expect(m.freePages).toBe(0);
    const p0 = mm.translate(big)!;
    expect(m.folioOf(p0 / 4096n)!.pincount).toBe(1);
    const r2 = unwrap(pinUserPages(mm, big, 8192, FOLL_WRITE));
    expect(r2.count * PS).toBe(r.totalLen);
    expect(m.folioOf(p0 / 4096n)!.pincount).toBe(2);
    unpinUserPhyrs(r);
    unpinUserPages(r2);
    expect(m.folioOf(p0 / 4096n)!.pincount).toBe(0);
    const none = pinUserPhyrs(mm, big + BigInt(r.totalLen), PS, FOLL_WRITE);
    expect(none.ok ? 'ok' : none.errno).toBe('ENOMEM');
  });
});

describe('errors as GUP has them', () => {
  const m = machine(false, 9);
  const mm = m.newProcess();
  const bar = unwrap(mm.mmap({ len: MiB, backing: { device: 'bar0', offset: 0 } }));
  const p2p = unwrap(mm.mmap({ len: MiB, backing: { device: 'p2p', offset: 0 } }));
  const anon = unwrap(mm.mmap({ len: 4 * PS, backing: 'anon' }));
  const errno = (r: { ok: boolean; errno?: string }): string => (r.ok ? 'ok' : r.errno!);
  it('unmapped range: EFAULT', () => {
    expect(errno(pinUserPhyrs(mm, 0x1000n, PS, 0))).toBe('EFAULT');
    expect(errno(pinUserPages(mm, 0x1000n, 1, 0))).toBe('EFAULT');
  });
  it('device memory without struct page: EFAULT for pinUserPages, included by pinUserPhyrs', () => {
    expect(errno(pinUserPages(mm, bar, 4, FOLL_WRITE))).toBe('EFAULT');
    const l = unwrap(pinUserPhyrs(mm, bar + 10n, MiB - 10, FOLL_WRITE));
    expect(l.count).toBe(1);
    expect(l.addrAt(0)).toBe(m.region('bar0')!.start + 10n);
    expect(l.flagsAt(0)).toBe(RANGE_DEVICE | RANGE_MMIO | RANGE_NOPAGE);
    unpinUserPhyrs(l);
  });
  it('P2PDMA pages need FOLL_PCI_P2PDMA (EREMOTEIO otherwise) and are pinned with it', () => {
    expect(errno(pinUserPages(mm, p2p, 1, 0))).toBe('EREMOTEIO');
    expect(errno(pinUserPhyrs(mm, p2p, PS, 0))).toBe('EREMOTEIO');
    const pa = unwrap(pinUserPages(mm, p2p, 2, FOLL_PCI_P2PDMA));
    expect(pa.flagsAt(0)).toBe(RANGE_DEVICE | RANGE_MMIO);
    expect(m.folioOf(pa.pfnAt(1))!.pincount).toBe(1);
    unpinUserPages(pa);
    expect(m.folioOf(pa.pfnAt(1))).toBeUndefined();
  });
  it('FOLL_NOFAULT on a page that is not present: EFAULT', () => {
    expect(errno(pinUserPhyrs(mm, anon, PS, FOLL_NOFAULT))).toBe('EFAULT');
    expect(mm.translate(anon)).toBeUndefined();
  });
  it('FOLL_PIN / FOLL_GET / internal flags from the caller: WARN; EINVAL from the fast entry points, 0 pages from pin_user_pages', () => {
    const w = m.events.count('WARN');
    expect(errno(pinUserPhyrs(mm, anon, PS, FOLL_PIN))).toBe('EINVAL');
    expect(errno(pinUserPagesFast(mm, anon, 1, FOLL_GET))).toBe('EINVAL');
    expect(unwrap(pinUserPages(mm, anon, 1, FOLL_GET)).count).toBe(0);
    expect(unwrap(pinUserPages(mm, anon, 1, 1 << 16)).count).toBe(0);
    expect(m.events.count('WARN')).toBe(w + 4);
    expect(mm.translate(anon)).toBeUndefined(); // nothing was faulted
  });
  it('bad argument types throw naming the argument', () => {
    expect(() => pinUserPhyrs(mm, 4096 as never, PS, 0)).toThrow(/start must be a bigint/);
    expect(() => pinUserPhyrs(mm, anon, -1, 0)).toThrow(/len must be/);
    expect(() => pinUserPages(mm, anon, 1.5, 0)).toThrow(/nrPages must be/);
    expect(() => pinUserPages(mm, anon, 1, '1' as never)).toThrow(/gupFlags must be a number/);
    expect(() => pinUserPages({} as never, anon, 1, 0)).toThrow(/mm must be a UserMm/);
    expect(() => unpinUserPages('x' as never)).toThrow(/must be a PageArray/);
    expect(() => pinUserPhyrs(mm, -1n, PS, 0)).toThrow(RangeError);
  });
});

describe('acceptance', () => {
  it('1 GiB hugetlb: 262144 pages (2 MiB of struct page pointers) vs one phyr (16 bytes)', () => {
    const m = createMmMachine({ ramBytes: 64 * GiB, hugetlb: { '1G': 8 }, deviceMemory: [{ name: 'bar0', bytes: 16 * GiB }], aged: true, seed: 1 });
    const mm = m.newProcess();
    const r = mm.mmap({ len: GiB, backing: 'hugetlb-1G', populate: true });
    const va = unwrap(r);
    const pages = unwrap(pinUserPages(mm, va, 262144, FOLL_WRITE));
    expect(pages.count).toBe(262144);
    expect(pages.kernelBytes).toBe(2 * MiB);
    const visited = m.stats.gupFoliosVisited;
    const phyrs = unwrap(pinUserPhyrs(mm, va, GiB, FOLL_WRITE));
    expect(phyrs.count).toBe(1);
    expect(phyrs.kernelBytes).toBe(16);
    expect(m.stats.gupFoliosVisited - visited).toBe(1); // one folio, not 2^18 pages
    expect(phyrs.addrAt(0)).toBe(mm.translate(va));
    expect(phyrs.addrAt(0) % BigInt(GiB)).toBe(0n);
    const f = m.folioOf(phyrs.addrAt(0) / 4096n + 777n)!;
    expect(f.order).toBe(18);
    expect(f.pincount).toBe(2 * 262144);
    unpinUserPages(pages);
    unpinUserPhyrs(phyrs);
    expect(m.folioOf(phyrs.addrAt(0) / 4096n)!.pincount).toBe(0);
  });
});
