// Tests for user-mm.ts: mmap/munmap, faults (THP, hugetlb, device mappings), user memory access.
import { describe, expect, it } from 'vitest';
import { GiB, MiB, unwrap } from '../base/index.ts';
import { createMmMachine } from './machine.ts';

const mk = (aged = false) => createMmMachine({
  ramBytes: 256 * MiB, hugetlb: { '2M': 8 }, aged, seed: 4,
  deviceMemory: [{ name: 'bar0', bytes: 8 * MiB }],
});

describe('user address space', () => {
  it('faults pages in on first touch and frees them at munmap', () => {
    const m = mk();
    const mm = m.newProcess();
    const free0 = m.freePages;
    const va = unwrap(mm.mmap({ len: 10 * 4096, backing: 'anon' }));
    expect(mm.translate(va)).toBeUndefined();
    expect(unwrap(mm.touch(va + 5000n, 1, true))).toBeUndefined();
    expect(mm.translate(va)).toBeUndefined();
    const phys = mm.translate(va + 5000n)!;
    expect(phys % 4096n).toBe(5000n % 4096n);
    expect(m.folioOf(phys / 4096n)).toEqual({ head: phys / 4096n, order: 0, refcount: 1, pincount: 0 });
    expect(m.freePages).toBe(free0 - 1);
    expect(m.stats.pageFaults).toBe(1);
    unwrap(mm.munmap(va, 10 * 4096));
    expect(m.freePages).toBe(free0);
    expect(m.folioOf(phys / 4096n)).toBeUndefined();
    expect(mm.translate(va + 5000n)).toBeUndefined();
  });
  it('user reads and writes go through the page tables to physical memory', () => {
    const m = mk();
    const mm = m.newProcess();
    const va = unwrap(mm.mmap({ len: 64 * 1024, backing: 'anon' }));
    const bytes = Uint8Array.from({ length: 20000 }, (_, i) => (i * 13 + 5) & 255);
    unwrap(mm.writeUser(va + 3000n, bytes));
    expect(unwrap(mm.readUser(va + 3000n, 20000))).toEqual(bytes);
    for (const off of [3000, 4095, 4096, 12345, 22999]) {
      const phys = mm.translate(va + BigInt(off))!;
      expect(m.mem.read(phys, 1)[0]).toBe(bytes[off - 3000]);
    }
  });
  it('fresh pages read as zero even after a previous owner wrote them', () => {
    const m = mk();
    const mm = m.newProcess();
    const va = unwrap(mm.mmap({ len: 4096, backing: 'anon' }));
    unwrap(mm.writeUser(va, new Uint8Array(4096).fill(0xee)));
    unwrap(mm.munmap(va, 4096));
    const vb = unwrap(mm.mmap({ len: 4096, backing: 'anon' }));
    expect(unwrap(mm.readUser(vb, 4096))).toEqual(new Uint8Array(4096));
  });
  it('THP: 2 MiB folios where possible; a partial munmap splits the PMD', () => {
    const m = mk();
    const mm = m.newProcess();
    const va = unwrap(mm.mmap({ len: 4 * MiB, backing: 'thp', populate: true }));
    expect(va % BigInt(2 * MiB)).toBe(0n);
    const p0 = mm.translate(va)!;
    const f = m.folioOf(p0 / 4096n)!;
    expect(f.order).toBe(9);
    expect(mm.translate(va + 4096n * 511n)).toBe(p0 + 4096n * 511n);
    const free0 = m.freePages;
    unwrap(mm.munmap(va + 4096n, 4096));
    expect(mm.translate(va + 4096n)).toBeUndefined();
    expect(mm.translate(va + 8192n)).toBe(p0 + 8192n);
    expect(m.folioOf(p0 / 4096n)!.refcount).toBe(511); // one per remaining PTE
    expect(m.freePages).toBe(free0); // the folio stays until its last page is unmapped
    unwrap(mm.munmap(va, 2 * MiB));
    expect(m.freePages).toBe(free0 + 512);
  });
  it('hugetlb reserves at mmap and fails with ENOMEM when the pool is short', () => {
    const m = mk();
    const mm = m.newProcess();
    const r = mm.mmap({ len: 20 * MiB, backing: 'hugetlb-2M' });
    expect(r.ok ? 'ok' : r.errno).toBe('ENOMEM');
    const va = unwrap(mm.mmap({ len: 3 * MiB, backing: 'hugetlb-2M' })); // rounded up to 2 pages
    expect(m.hugetlbPool('2M').reserved).toBe(2);
    expect(mm.mmap({ len: 14 * MiB, backing: 'hugetlb-2M' }).ok).toBe(false);
    unwrap(mm.touch(va + 100n, 1, false));
    expect(m.hugetlbPool('2M').reserved).toBe(1);
    const munBad = mm.munmap(va + 4096n, 4096);
    expect(munBad.ok ? 'ok' : munBad.errno).toBe('EINVAL');
    unwrap(mm.munmap(va, 4 * MiB));
    expect(m.hugetlbPool('2M').reserved).toBe(0);
    expect(m.hugetlbPool('2M').free.length).toBe(8);
  });
  it('device mappings are PFN maps of the BAR, read-only mappings refuse writes', () => {
    const m = mk();
    const mm = m.newProcess();
    const bar = m.region('bar0')!;
    const va = unwrap(mm.mmap({ len: MiB, backing: { device: 'bar0', offset: 2 * MiB } }));
    expect(mm.translate(va + 10n)).toBe(bar.start + BigInt(2 * MiB) + 10n);
    unwrap(mm.writeUser(va, new Uint8Array([7, 8])));
    expect(m.mem.read(bar.start + BigInt(2 * MiB), 2)).toEqual(new Uint8Array([7, 8]));
    const ro = unwrap(mm.mmap({ len: 4096, backing: 'anon', prot: 'r' }));
    const w = mm.writeUser(ro, new Uint8Array([1]));
    expect(w.ok ? 'ok' : w.errno).toBe('EFAULT');
    expect(mm.translate(ro)).toBeUndefined(); // nothing was faulted
    expect(unwrap(mm.readUser(ro, 2))).toEqual(new Uint8Array(2));
    const outside = mm.mmap({ len: 8 * MiB, backing: { device: 'bar0', offset: 4096 } });
    expect(outside.ok ? 'ok' : outside.errno).toBe('EINVAL');
    expect(() => mm.mmap({ len: 4096, backing: { device: 'nope' } })).toThrow(/opts\.backing\.device .* "nope"/);
    expect(() => mm.mmap({ len: 0, backing: 'anon' })).toThrow(/opts\.len/);
    expect(() => mm.mmap({ len: 4096, backing: 'huge' as never })).toThrow(/opts\.backing/);
  });
  it('fixed addresses: EEXIST on overlap, EINVAL when misaligned; unmapped access is EFAULT', () => {
    const m = mk();
    const mm = m.newProcess();
    const at = 0x100000000n;
    expect(unwrap(mm.mmap({ len: 8192, backing: 'anon', addr: at }))).toBe(at);
    const o = mm.mmap({ len: 4096, backing: 'anon', addr: at + 4096n });
    expect(o.ok ? 'ok' : o.errno).toBe('EEXIST');
    const mis = mm.mmap({ len: 4096, backing: 'anon', addr: at + 1n });
    expect(mis.ok ? 'ok' : mis.errno).toBe('EINVAL');
    const t = mm.touch(at + 4096n, 8192, false);
    expect(t.ok ? 'ok' : t.errno).toBe('EFAULT');
    expect(mm.translate(at + 4096n)).toBeUndefined(); // checks come before any fault
    expect(() => mm.touch(at, -1, false)).toThrow(/len/);
    expect(() => mm.translate(5 as never)).toThrow(/va must be a bigint/);
  });
  it('populate failure undoes the mapping (ENOMEM)', () => {
    const m = mk();
    const mm = m.newProcess();
    const free0 = m.freePages;
    const r = mm.mmap({ len: GiB, backing: 'anon', populate: true });
    expect(r.ok ? 'ok' : r.errno).toBe('ENOMEM');
    expect(mm.mappings.length).toBe(0);
    expect(m.freePages).toBe(free0);
  });
  it('aged machine: 4 KiB anon comes out mostly non-contiguous, THP still gets some 2 MiB folios', () => {
    const m = createMmMachine({ ramBytes: 2 * GiB, aged: true, seed: 21 });
    const mm = m.newProcess();
    const n = 8192;
    const va = unwrap(mm.mmap({ len: n * 4096, backing: 'anon', populate: true }));
    let adjacent = 0;
    for (let i = 1; i < n; i++) {
      if (mm.translate(va + BigInt(i * 4096)) === mm.translate(va + BigInt((i - 1) * 4096))! + 4096n) adjacent++;
    }
    expect(adjacent / n).toBeLessThan(0.4);
    const thpVa = unwrap(mm.mmap({ len: 64 * MiB, backing: 'thp', populate: true }));
    let huge = 0;
    for (let s = 0; s < 32; s++) if (m.folioOf(mm.translate(thpVa + BigInt(s * 2 * MiB))! / 4096n)!.order === 9) huge++;
    expect(huge).toBeGreaterThan(4);
    // the same on a fresh machine: every 4 KiB page follows its predecessor
    const fresh = createMmMachine({ ramBytes: 2 * GiB, seed: 21 });
    const fm = fresh.newProcess();
    const fva = unwrap(fm.mmap({ len: 64 * 4096, backing: 'anon', populate: true }));
    expect(fm.translate(fva + 63n * 4096n)).toBe(fm.translate(fva)! + 63n * 4096n);
  });
});
