// directIoBvecs and ioUringFixedBufferBvecs against io_uring/rsrc.c (io_sqe_buffer_register,
// io_check_coalesce_buffer) and lib/iov_iter.c (iov_iter_extract_bvecs) of Linux 7.1.5.
import { describe, expect, it } from 'vitest';
import { MiB, unwrap } from '../base/index.ts';
import { FOLL_WRITE, createMmMachine, pinUserPages, unpinUserPages } from '../mm/index.ts';
import { directIoBvecs, ioUringFixedBufferBvecs } from './direct-io.ts';

const PS = 4096;

function proc() {
  const m = createMmMachine({ ramBytes: 64 * MiB, seed: 3 });
  return { m, mm: m.newProcess() };
}

describe('io_uring registered buffers (io_sqe_buffer_register)', () => {
  it('4 KiB pages are one bio_vec each, even physically contiguous ones (nr_pages_mid == 1: no coalescing)', () => {
    const { mm } = proc();
    const va = unwrap(mm.mmap({ len: 64 * PS, backing: 'anon', populate: true }));
    const pages = unwrap(pinUserPages(mm, va, 64, FOLL_WRITE));
    let contiguous = 0;
    for (let i = 1; i < 64; i++) if (pages.pfns[i] === pages.pfns[i - 1] + 1) contiguous++;
    expect(contiguous).toBeGreaterThan(0); // the case that matters: bio_add_page would merge these
    const b = unwrap(ioUringFixedBufferBvecs(mm, pages));
    expect(b.count).toBe(64);
    expect(b.totalLen).toBe(64 * PS);
    unpinUserPages(mm, pages);
  });

  it('whole THPs of one size are one bio_vec per folio (io_coalesce_buffer), also when adjacent', () => {
    const { m, mm } = proc();
    const va = unwrap(mm.mmap({ len: 8 * MiB, backing: 'thp', populate: true }));
    const pages = unwrap(pinUserPages(mm, va, (8 * MiB) / PS, FOLL_WRITE));
    const folios = new Set<number>();
    for (const p of pages.pfns) folios.add(m.folios.find(p));
    expect(folios.size).toBe(4);
    const b = unwrap(ioUringFixedBufferBvecs(mm, pages));
    expect(b.count).toBe(4);
    expect(b.totalLen).toBe(8 * MiB);
    // a buffer starting inside the first THP and ending inside the last: head and tail partial, still coalesced
    const part = unwrap(pinUserPages(mm, va + BigInt(MiB), (6 * MiB) / PS, FOLL_WRITE));
    expect(unwrap(ioUringFixedBufferBvecs(mm, part)).count).toBe(4);
    unpinUserPages(mm, part);
    unpinUserPages(mm, pages);
  });

  it('folios of two sizes are not coalesced: one bio_vec per page, where direct I/O makes one per folio run', () => {
    const { mm } = proc();
    const base = 0x40000000n;
    unwrap(mm.mmap({ len: 2 * MiB, backing: 'thp', addr: base, populate: true }));
    unwrap(mm.mmap({ len: 8 * PS, backing: 'anon', addr: base + BigInt(2 * MiB), populate: true }));
    const n = (2 * MiB) / PS + 8;
    const pages = unwrap(pinUserPages(mm, base, n, FOLL_WRITE));
    expect(unwrap(ioUringFixedBufferBvecs(mm, pages)).count).toBe(n);
    const dio = unwrap(directIoBvecs(mm, pages));
    // the THP is one bio_vec; each 4 KiB page of the anon mapping is a folio of its own
    expect(dio.count).toBe(1 + 8);
    expect(dio.totalLen).toBe(n * PS);
    unpinUserPages(mm, pages);
  });
});
