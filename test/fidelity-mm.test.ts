// The address-space calls of src/mm/user-mm.ts against mm/mprotect.c, mm/vma.c, mm/mmap.c and
// arch/x86 of Linux 7.1.5: each case is a place where the model answered otherwise than the kernel,
// with the kernel's answer. Test names say which old behaviour they catch.
import { describe, expect, it } from 'vitest';
import { MiB, unwrap } from '../src/base/index.ts';
import { TASK_SIZE, createMmMachine } from '../src/mm/index.ts';

const PS = 4096;
const errno = (r: { ok: boolean; errno?: string }): string => (r.ok ? 'ok' : r.errno!);

function world(): ReturnType<ReturnType<typeof createMmMachine>['newProcess']> {
  return createMmMachine({ ramBytes: 64 * MiB, hugetlb: { '2M': 4 }, seed: 5 }).newProcess();
}

describe('mprotect (do_mprotect_pkey, mprotect_fixup)', () => {
  it('a range that runs into a hole is ENOMEM, and the VMAs before the hole are changed (not left alone)', () => {
    const mm = world();
    const base = 0x40000000n;
    unwrap(mm.mmap({ len: 2 * PS, backing: 'anon', addr: base }));
    unwrap(mm.mmap({ len: PS, backing: 'anon', addr: base + BigInt(3 * PS) }));
    expect(errno(mm.mprotect(base + BigInt(PS), 4 * PS, 'r'))).toBe('ENOMEM');
    // [base+PS, base+2PS) was split off and made read-only; the VMA after the hole was not reached
    expect(mm.mappings.map((x) => [Number(x.start - base) / PS, Number(x.end - base) / PS, x.writable])).toEqual([
      [0, 1, true], [1, 2, false], [3, 4, true]]);
    expect(errno(mm.writeUser(base + BigInt(PS), Uint8Array.of(1)))).toBe('EFAULT');
    // a range that starts in a hole changes nothing
    expect(errno(mm.mprotect(base + BigInt(2 * PS), 2 * PS, 'r'))).toBe('ENOMEM');
    expect(mm.mappings.at(-1)!.writable).toBe(true);
    // a range whose last VMA ends before the range does: ENOMEM after changing it
    expect(errno(mm.mprotect(base + BigInt(3 * PS), 2 * PS, 'r'))).toBe('ENOMEM');
    expect(mm.mappings.at(-1)!.writable).toBe(false);
  });
  it('len 0 succeeds without touching anything (not a thrown RangeError); a misaligned addr is still EINVAL first', () => {
    const mm = world();
    const va = unwrap(mm.mmap({ len: PS, backing: 'anon' }));
    expect(errno(mm.mprotect(va, 0, 'r'))).toBe('ok');
    expect(errno(mm.mprotect(0x1000n, 0, 'r'))).toBe('ok'); // nothing mapped there: !len returns before the lookup
    expect(errno(mm.mprotect(va + 1n, 0, 'r'))).toBe('EINVAL');
    expect(mm.mappings[0].writable).toBe(true);
  });
  it('a hugetlb VMA that has the protection already is not split, so a cut inside its huge page is no EINVAL', () => {
    const mm = world();
    const h = unwrap(mm.mmap({ len: 2 * MiB, backing: 'hugetlb-2M' }));
    expect(errno(mm.mprotect(h, PS, 'rw'))).toBe('ok'); // mprotect_fixup returns before vma_modify_flags
    expect(mm.mappings).toHaveLength(1);
    expect(errno(mm.mprotect(h, PS, 'r'))).toBe('EINVAL'); // a change needs the split, which hugetlb refuses
    expect(mm.mappings[0].writable).toBe(true);
  });
});

describe('the top of user space and mmap_min_addr (x86-64 task_size_max(), __get_unmapped_area, do_vmi_munmap)', () => {
  const top = 2n ** 47n - 4096n; // (1 << 47) - PAGE_SIZE with 4-level paging
  it('TASK_SIZE is (1 << 47) - 4096: the last 4 KiB page below 2^47 cannot be mapped (ENOMEM), the one before can', () => {
    expect(TASK_SIZE).toBe(Number(top));
    const mm = world();
    expect(errno(mm.mmap({ len: PS, backing: 'anon', addr: top }))).toBe('ENOMEM');
    expect(errno(mm.mmap({ len: 2 * PS, backing: 'anon', addr: top - BigInt(PS) }))).toBe('ENOMEM');
    expect(unwrap(mm.mmap({ len: PS, backing: 'anon', addr: top - BigInt(PS) }))).toBe(top - BigInt(PS));
  });
  it('a fixed address beyond TASK_SIZE is ENOMEM, below mmap_min_addr EPERM, in __get_unmapped_area\'s order', () => {
    const mm = world();
    expect(errno(mm.mmap({ len: PS, backing: 'anon', addr: 2n ** 47n }))).toBe('ENOMEM');
    expect(errno(mm.mmap({ len: PS, backing: 'anon', addr: 2n ** 47n + 1n }))).toBe('ENOMEM'); // before the alignment check
    expect(errno(mm.mmap({ len: PS, backing: 'anon', addr: 0x1001n }))).toBe('EINVAL'); // alignment before mmap_min_addr
    expect(errno(mm.mmap({ len: PS, backing: 'anon', addr: 0x1000n }))).toBe('EPERM');
    // hugetlb_get_unmapped_area refuses a fixed addr off the huge page size before the TASK_SIZE check
    expect(errno(mm.mmap({ len: 2 * MiB, backing: 'hugetlb-2M', addr: 2n ** 47n + 4096n }))).toBe('EINVAL');
    expect(errno(mm.mmap({ len: 2 * MiB, backing: 'hugetlb-2M', addr: 2n ** 47n }))).toBe('ENOMEM');
    expect(mm.mappings).toEqual([]);
  });
  it('munmap: len 0 and a range leaving [0, TASK_SIZE) are EINVAL (not a thrown RangeError, not a silent success)', () => {
    const mm = world();
    const va = unwrap(mm.mmap({ len: PS, backing: 'anon' }));
    expect(errno(mm.munmap(va, 0))).toBe('EINVAL');
    expect(errno(mm.munmap(2n ** 47n, PS))).toBe('EINVAL');
    expect(errno(mm.munmap(va, Number(top - va) + 1))).toBe('EINVAL');
    expect(mm.mappings).toHaveLength(1);
    expect(errno(mm.munmap(va, Number(top - va)))).toBe('ok'); // up to TASK_SIZE exactly
    expect(mm.mappings).toEqual([]);
  });
});

describe('migratePage (move_pages of one page: add_folio_for_migration)', () => {
  it('a DAX (pmem) mapping is EFAULT (vma_migratable refuses vma_is_dax), not ENOENT; a P2P ZONE_DEVICE page stays ENOENT', () => {
    const m = createMmMachine({
      ramBytes: 64 * MiB, seed: 5,
      deviceMemory: [{ name: 'p2p', bytes: 4 * MiB, pgmap: true }],
      pmem: [{ name: 'pm-fs', bytes: 64 * MiB, structPage: true }, { name: 'pm-dev', bytes: 64 * MiB, structPage: true, mode: 'devdax' }],
    });
    const mm = m.newProcess();
    for (const device of ['pm-fs', 'pm-dev']) {
      const va = unwrap(mm.mmap({ len: PS, backing: { device } }));
      expect(errno(mm.migratePage(va))).toBe('EFAULT');
    }
    const p2p = unwrap(mm.mmap({ len: PS, backing: { device: 'p2p' } }));
    expect(errno(mm.migratePage(p2p))).toBe('ENOENT');
  });
});

describe('THP-backed anonymous mappings and their placement (mm/mmap.c __get_unmapped_area)', () => {
  const orderAt = (mm: ReturnType<typeof world>, m: ReturnType<typeof createMmMachine>, va: bigint): number =>
    m.folioOf(mm.translate(va)! / 4096n)!.order;
  it('a fixed address needs page alignment only (was EINVAL off 2 MiB): whole 2 MiB slots inside get a PMD folio, the cut edges PTEs', () => {
    const m = createMmMachine({ ramBytes: 64 * MiB, seed: 5 });
    const mm = m.newProcess();
    const start = 0x40000000n + 0x3000n; // 12 KiB past a 2 MiB line
    const len = 6 * MiB;
    expect(unwrap(mm.mmap({ len, backing: 'thp', addr: start, populate: true }))).toBe(start);
    // the slot [0x40200000, 0x40400000) lies wholly inside: one order-9 folio; the partial first
    // and last slots are mapped by 4 KiB pages
    expect(orderAt(mm, m, 0x40200000n)).toBe(9);
    expect(orderAt(mm, m, 0x40400000n)).toBe(9);
    expect(orderAt(mm, m, start)).toBe(0);
    expect(orderAt(mm, m, start + BigInt(len) - 1n)).toBe(0);
    // a fixed address off a page is still EINVAL
    expect(errno(mm.mmap({ len: 2 * MiB, backing: 'thp', addr: 0x50000800n }))).toBe('EINVAL');
  });
  it('without a fixed address: on 2 MiB when the length is a multiple of 2 MiB, else on a page', () => {
    const mm = world();
    const a = unwrap(mm.mmap({ len: 4 * MiB, backing: 'thp' }));
    expect(Number(a % BigInt(2 * MiB))).toBe(0);
    // top-down placement right below the last mapping: 2 MiB + 4 KiB ends at `a`, so it starts off 2 MiB
    const b = unwrap(mm.mmap({ len: 2 * MiB + PS, backing: 'thp' }));
    expect(b).toBe(a - BigInt(2 * MiB + PS));
  });
});
