// Tests for hmm.ts (hmm_range_fault), mmu-notifier.ts (interval notifiers and the read_begin / retry
// protocol) and the page-table changes that fire them (munmap, mprotect, PMD split, migration, COW).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MiB, unwrap } from '../base/index.ts';
import { createMmMachine } from './machine.ts';
import {
  HMM_PFN_DMA_MAPPED, HMM_PFN_ERROR, HMM_PFN_REQ_FAULT, HMM_PFN_REQ_WRITE, HMM_PFN_VALID, HMM_PFN_WRITE, hmmPfnToMapOrder, hmmRangeFault,
  type HmmRange,
} from './hmm.ts';
import {
  mmuIntervalNotifierInsert, mmuIntervalNotifierRemove, mmuIntervalReadBegin, mmuIntervalReadRetry, mmuIntervalSetSeq,
  type MmuIntervalNotifier, type MmuNotifierRange,
} from './mmu-notifier.ts';
import { MMU_NOTIFY_CLEAR, MMU_NOTIFY_PROTECTION_VMA, MMU_NOTIFY_UNMAP } from './types.ts';
import { pinUserPages, unpinUserPages, FOLL_LONGTERM, FOLL_WRITE } from './gup.ts';
import type { UserMm } from './user-mm.ts';

const PS = 4096;
const mk = () => createMmMachine({
  ramBytes: 256 * MiB, hugetlb: { '2M': 4 }, seed: 7, deviceMemory: [{ name: 'bar0', bytes: 1 * MiB }],
});

/** A notifier over [va, va+len) that records every invalidation and sets the seq, as a driver must. */
function watch(mm: UserMm, va: bigint, len: number): { sub: MmuIntervalNotifier; seen: MmuNotifierRange[] } {
  const seen: MmuNotifierRange[] = [];
  const sub = unwrap(mmuIntervalNotifierInsert(mm, va, len, {
    invalidate(s, range, cur) { seen.push(range); mmuIntervalSetSeq(s, cur); return true; },
  }));
  return { sub, seen };
}

function range(sub: MmuIntervalNotifier, start: bigint, len: number, defaultFlags: number): HmmRange {
  const n = len / PS;
  return {
    notifier: sub, notifierSeq: mmuIntervalReadBegin(sub), start, end: start + BigInt(len),
    hmmPfns: new Float64Array(n), hmmFlags: new Uint16Array(n), defaultFlags, pfnFlagsMask: 0,
  };
}

/** The caller's loop (ib_umem_odp_map_dma_and_lock): read_begin again and retry while hmm_range_fault says EBUSY. */
function faultRetry(r: HmmRange): ReturnType<typeof hmmRangeFault> {
  for (let tries = 0; ; tries++) {
    const res = hmmRangeFault(r);
    if (res.ok || res.errno !== 'EBUSY' || tries > 10) return res;
    r.notifierSeq = mmuIntervalReadBegin(r.notifier);
  }
}

describe('hmm_range_fault', () => {
  it('faults anonymous pages in for write: VALID|WRITE with the pfn the CPU page table maps', () => {
    const m = mk();
    const mm = m.newProcess();
    const va = unwrap(mm.mmap({ len: 8 * PS, backing: 'anon' }));
    const { sub } = watch(mm, va, 8 * PS);
    const r = range(sub, va, 8 * PS, HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE);
    unwrap(hmmRangeFault(r));
    for (let i = 0; i < 8; i++) {
      expect(r.hmmFlags[i]).toBe(HMM_PFN_VALID | HMM_PFN_WRITE);
      expect(BigInt(r.hmmPfns[i]) * 4096n).toBe(mm.translate(va + BigInt(i * PS)));
    }
    expect(m.stats.hmmRangeFaults).toBe(1);
  });

  it('read-only mapping: a read fault gives VALID without WRITE; asking for write is EPERM (not EFAULT)', () => {
    const m = mk();
    const mm = m.newProcess();
    const va = unwrap(mm.mmap({ len: 4 * PS, backing: 'anon', prot: 'r' }));
    const { sub } = watch(mm, va, 4 * PS);
    const r = range(sub, va, 4 * PS, HMM_PFN_REQ_FAULT);
    unwrap(hmmRangeFault(r));
    // untouched private memory read-faults to the shared zero page: readable, never writable
    expect([...r.hmmFlags]).toEqual([HMM_PFN_VALID, HMM_PFN_VALID, HMM_PFN_VALID, HMM_PFN_VALID]);
    const w = range(sub, va, 4 * PS, HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE);
    expect(hmmRangeFault(w)).toMatchObject({ ok: false, errno: 'EPERM' });
  });

  it('a write request over the zero page breaks COW: a new pfn, and the notifier sees MMU_NOTIFY_CLEAR', () => {
    const m = mk();
    const mm = m.newProcess();
    const va = unwrap(mm.mmap({ len: 2 * PS, backing: 'anon' }));
    unwrap(mm.touch(va, 2 * PS, false));
    const zero = mm.translate(va)!;
    const { sub, seen } = watch(mm, va, 2 * PS);
    const r = range(sub, va, 2 * PS, HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE);
    // its own COW invalidates the range it is reading: EBUSY, as in the kernel, and the caller retries
    expect(hmmRangeFault(r)).toMatchObject({ ok: false, errno: 'EBUSY' });
    unwrap(faultRetry(r));
    expect(BigInt(r.hmmPfns[0]) * 4096n).not.toBe(zero);
    expect(r.hmmFlags[0]).toBe(HMM_PFN_VALID | HMM_PFN_WRITE);
    expect(seen.map((x) => x.event)).toEqual([MMU_NOTIFY_CLEAR, MMU_NOTIFY_CLEAR]);
  });

  it('without REQ_FAULT reports what is there (0 for absent pages) and faults nothing', () => {
    const m = mk();
    const mm = m.newProcess();
    const va = unwrap(mm.mmap({ len: 4 * PS, backing: 'anon' }));
    unwrap(mm.touch(va + BigInt(PS), 1, true));
    const { sub } = watch(mm, va, 4 * PS);
    const faults = m.stats.pageFaults;
    const r = range(sub, va, 4 * PS, 0);
    r.hmmFlags[2] = HMM_PFN_DMA_MAPPED; // sticky flag survives
    unwrap(hmmRangeFault(r));
    expect([...r.hmmFlags]).toEqual([0, HMM_PFN_VALID | HMM_PFN_WRITE, HMM_PFN_DMA_MAPPED, 0]);
    expect(m.stats.pageFaults).toBe(faults);
  });

  it('per-page requests through pfnFlagsMask fault only the pages that ask', () => {
    const m = mk();
    const mm = m.newProcess();
    const va = unwrap(mm.mmap({ len: 4 * PS, backing: 'anon' }));
    const { sub } = watch(mm, va, 4 * PS);
    const r = { ...range(sub, va, 4 * PS, 0), pfnFlagsMask: HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE };
    r.hmmFlags[3] = HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE;
    unwrap(hmmRangeFault(r));
    expect(r.hmmFlags[3]).toBe(HMM_PFN_VALID | HMM_PFN_WRITE);
    // hmm_vma_fault faults from the first needing page to the end of the PMD range: page 3 only here
    expect(mm.translate(va)).toBeUndefined();
  });

  it('holes and PFN maps: HMM_PFN_ERROR without a fault request, EFAULT with one', () => {
    const m = mk();
    const mm = m.newProcess();
    const va = unwrap(mm.mmap({ len: 4 * PS, backing: 'anon' }));
    unwrap(mm.munmap(va + BigInt(PS), PS));
    const bar = unwrap(mm.mmap({ len: 2 * PS, backing: { device: 'bar0' } }));
    const { sub } = watch(mm, va, 4 * PS);
    const r = range(sub, va, 4 * PS, 0);
    unwrap(hmmRangeFault(r));
    expect(r.hmmFlags[1]).toBe(HMM_PFN_ERROR);
    expect(hmmRangeFault(range(sub, va, 4 * PS, HMM_PFN_REQ_FAULT))).toMatchObject({ ok: false, errno: 'EFAULT' });
    const b = watch(mm, bar, 2 * PS);
    const rb = range(b.sub, bar, 2 * PS, 0);
    unwrap(hmmRangeFault(rb));
    expect([...rb.hmmFlags]).toEqual([HMM_PFN_ERROR, HMM_PFN_ERROR]);
    // the kernel's header says EINVAL for a device file VMA; mm/hmm.c returns EFAULT (hmm_vma_walk_test)
    expect(hmmRangeFault(range(b.sub, bar, 2 * PS, HMM_PFN_REQ_FAULT))).toMatchObject({ ok: false, errno: 'EFAULT' });
  });

  it('a hugetlb page a read fault mapped is VALID without WRITE; a write request faults it writable (hugetlb_wp)', () => {
    const m = createMmMachine({ ramBytes: 1024 * MiB, hugetlb: { '2M': 1 } });
    const mm = m.newProcess();
    const va = unwrap(mm.mmap({ len: 2 * MiB, backing: 'hugetlb-2M' }));
    unwrap(mm.readUser(va, 1));
    const { sub } = watch(mm, va, 2 * MiB);
    const r = range(sub, va, 2 * MiB, 0);
    unwrap(hmmRangeFault(r));
    expect(r.hmmFlags[0] & (HMM_PFN_VALID | HMM_PFN_WRITE)).toBe(HMM_PFN_VALID);
    const faults = m.stats.pageFaults;
    const w = range(sub, va, 2 * MiB, HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE);
    unwrap(faultRetry(w));
    expect(m.stats.pageFaults).toBe(faults + 1);
    expect(w.hmmFlags[0] & (HMM_PFN_VALID | HMM_PFN_WRITE)).toBe(HMM_PFN_VALID | HMM_PFN_WRITE);
    expect(w.hmmPfns[0]).toBe(r.hmmPfns[0]); // the same page, made writable in place
  });

  it('a 2 MiB THP at 16 and 64 KiB pages is PTE-mapped (a multi-size THP): map order 0, consecutive pfns', () => {
    for (const ps of [16384, 65536]) {
      const m = createMmMachine({ ramBytes: 2 * 1024 * MiB, pageSize: ps });
      const mm = m.newProcess();
      const va = unwrap(mm.mmap({ len: 2 * MiB, backing: 'thp' }));
      const { sub } = watch(mm, va, 2 * MiB);
      const n = (2 * MiB) / ps;
      const r: HmmRange = {
        notifier: sub, notifierSeq: mmuIntervalReadBegin(sub), start: va, end: va + BigInt(2 * MiB),
        hmmPfns: new Float64Array(n), hmmFlags: new Uint16Array(n), defaultFlags: HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE, pfnFlagsMask: 0,
      };
      unwrap(hmmRangeFault(r));
      expect(mm.pteAt(va)!.contig).toBe(n); // one 2 MiB folio
      for (let k = 0; k < n; k++) {
        expect(hmmPfnToMapOrder(r.hmmFlags[k])).toBe(0);
        expect(r.hmmFlags[k] & (HMM_PFN_VALID | HMM_PFN_WRITE)).toBe(HMM_PFN_VALID | HMM_PFN_WRITE);
        expect(r.hmmPfns[k]).toBe(r.hmmPfns[0] + k);
      }
    }
  });

  it('THP gives map order 9 with consecutive pfns; hugetlb 2 MiB likewise; a split PMD gives order 0', () => {
    const m = mk();
    const mm = m.newProcess();
    const va = unwrap(mm.mmap({ len: 2 * MiB, backing: 'thp' }));
    const { sub, seen } = watch(mm, va, 2 * MiB);
    const r = range(sub, va, 2 * MiB, HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE);
    unwrap(hmmRangeFault(r));
    expect(hmmPfnToMapOrder(r.hmmFlags[0])).toBe(9);
    expect(r.hmmPfns[511]).toBe(r.hmmPfns[0] + 511);
    expect(mm.splitHugePmd(va)).toBe(true);
    expect(seen.at(-1)).toMatchObject({ event: MMU_NOTIFY_CLEAR, start: va, end: va + BigInt(2 * MiB) });
    const r2 = range(sub, va, 2 * MiB, HMM_PFN_REQ_FAULT);
    unwrap(hmmRangeFault(r2));
    expect(hmmPfnToMapOrder(r2.hmmFlags[0])).toBe(0);
    expect(r2.hmmPfns[5]).toBe(r.hmmPfns[5]);
    const h = unwrap(mm.mmap({ len: 2 * MiB, backing: 'hugetlb-2M' }));
    const hw = watch(mm, h, 2 * MiB);
    const rh = range(hw.sub, h, 2 * MiB, HMM_PFN_REQ_FAULT);
    unwrap(hmmRangeFault(rh));
    // a read fault maps the private huge page read-only (hugetlb_no_page): VALID, no WRITE
    expect(rh.hmmFlags[7]).toBe(HMM_PFN_VALID | 9);
  });

  it('returns EBUSY when the notifier was invalidated after read_begin (mmu_interval_check_retry)', () => {
    const m = mk();
    const mm = m.newProcess();
    const va = unwrap(mm.mmap({ len: 4 * PS, backing: 'anon' }));
    const { sub } = watch(mm, va, 4 * PS);
    const r = range(sub, va, 4 * PS, HMM_PFN_REQ_FAULT);
    unwrap(mm.mprotect(va, PS, 'r'));
    expect(hmmRangeFault(r)).toMatchObject({ ok: false, errno: 'EBUSY' });
    r.notifierSeq = mmuIntervalReadBegin(sub);
    unwrap(hmmRangeFault(r));
  });
});

describe('mmu interval notifiers', () => {
  it('munmap, mprotect, migration fire the intersecting notifiers only, with the kernel events', () => {
    const m = mk();
    const mm = m.newProcess();
    const va = unwrap(mm.mmap({ len: 16 * PS, backing: 'anon', populate: true }));
    const a = watch(mm, va, 4 * PS);
    const b = watch(mm, va + BigInt(8 * PS), 8 * PS);
    unwrap(mm.munmap(va + BigInt(12 * PS), 2 * PS));
    expect(a.seen).toEqual([]);
    expect(b.seen.map((x) => [x.event, x.start - va, x.end - va])).toEqual([[MMU_NOTIFY_UNMAP, BigInt(12 * PS), BigInt(14 * PS)]]);
    unwrap(mm.mprotect(va, 2 * PS, 'r'));
    expect(a.seen.map((x) => x.event)).toEqual([MMU_NOTIFY_PROTECTION_VMA]);
    expect(b.seen.length).toBe(1);
    const old = mm.translate(va + BigInt(9 * PS))!;
    unwrap(mm.writeUser(va + BigInt(9 * PS), Uint8Array.of(1, 2, 3)));
    const moved = unwrap(mm.migratePage(va + BigInt(9 * PS)));
    expect(moved).not.toBe(old);
    expect(b.seen.at(-1)!.event).toBe(MMU_NOTIFY_CLEAR);
    expect(m.mem.read(moved, 3)).toEqual(Uint8Array.of(1, 2, 3));
    expect(unwrap(mm.readUser(va + BigInt(9 * PS), 3))).toEqual(Uint8Array.of(1, 2, 3));
    mmuIntervalNotifierRemove(b.sub);
    unwrap(mm.munmap(va + BigInt(8 * PS), 4 * PS));
    expect(b.seen.length).toBe(2);
  });

  it('munmap of a hole and mprotect to the protection a VMA has send nothing; mprotect sends one range per VMA it changes', () => {
    const m = mk();
    const mm = m.newProcess();
    const va = unwrap(mm.mmap({ len: 16 * PS, backing: 'anon', populate: true }));
    unwrap(mm.munmap(va + BigInt(4 * PS), 4 * PS));
    const w = watch(mm, va, 16 * PS);
    // do_vmi_munmap: no VMA in the range, nothing unmapped, no invalidation
    unwrap(mm.munmap(va + BigInt(5 * PS), 2 * PS));
    // mprotect_fixup: the flags are the VMA's already
    unwrap(mm.mprotect(va, 4 * PS, 'rw'));
    expect(w.seen).toEqual([]);
    unwrap(mm.mprotect(va + BigInt(10 * PS), 2 * PS, 'r'));
    w.seen.length = 0;
    // [2, 4) and [8, 10) change; [10, 12) is read-only already; [4, 8) is a hole (mprotect: ENOMEM)
    unwrap(mm.mprotect(va + BigInt(8 * PS), 4 * PS, 'r'));
    unwrap(mm.mprotect(va + BigInt(2 * PS), 2 * PS, 'r'));
    expect(w.seen.map((x) => [x.event, Number(x.start - va) / PS, Number(x.end - va) / PS])).toEqual([
      [MMU_NOTIFY_PROTECTION_VMA, 8, 10], [MMU_NOTIFY_PROTECTION_VMA, 2, 4],
    ]);
    // munmap over a hole and a VMA: one range, the whole munmap range (vms->start, vms->end)
    w.seen.length = 0;
    unwrap(mm.munmap(va + BigInt(6 * PS), 4 * PS));
    expect(w.seen.map((x) => [x.event, Number(x.start - va) / PS, Number(x.end - va) / PS])).toEqual([[MMU_NOTIFY_UNMAP, 6, 10]]);
  });

  it('migration of a folio mapped by several VMAs: one CLEAR range per VMA, clipped to it (try_to_migrate_one), none over a hole', () => {
    const m = mk();
    const mm = m.newProcess();
    const t = unwrap(mm.mmap({ len: 2 * MiB, backing: 'thp', populate: true }));
    unwrap(mm.mprotect(t, 4 * PS, 'r')); // splits the PMD: one 2 MiB folio mapped by PTEs of two VMAs
    unwrap(mm.munmap(t + BigInt(8 * PS), 4 * PS));
    const w = watch(mm, t, 2 * MiB);
    unwrap(mm.writeUser(t + BigInt(20 * PS), Uint8Array.of(9)));
    const np = unwrap(mm.migratePage(t + BigInt(20 * PS)));
    expect(m.folioOf(np / 4096n)!.order).toBe(9);
    expect(w.seen.map((x) => [x.event, Number(x.start - t) / PS, Number(x.end - t) / PS])).toEqual([
      [MMU_NOTIFY_CLEAR, 0, 4], [MMU_NOTIFY_CLEAR, 4, 8], [MMU_NOTIFY_CLEAR, 12, 512],
    ]);
    expect(unwrap(mm.readUser(t + BigInt(20 * PS), 1))[0]).toBe(9);
  });

  it('munmap / mprotect cutting a PMD-mapped THP: the VMA split sends the PMD split (CLEAR) first, then UNMAP / PROTECTION_VMA', () => {
    const m = mk();
    const mm = m.newProcess();
    const t = unwrap(mm.mmap({ len: 4 * MiB, backing: 'thp', populate: true }));
    const w = watch(mm, t, 4 * MiB);
    const seen = () => w.seen.splice(0).map((x) => [x.event, Number(x.start - t) / PS, Number(x.end - t) / PS]);
    unwrap(mm.mprotect(t + BigInt(4 * PS), 4 * PS, 'r'));
    expect(seen()).toEqual([[MMU_NOTIFY_CLEAR, 0, 512], [MMU_NOTIFY_PROTECTION_VMA, 4, 8]]);
    unwrap(mm.munmap(t + BigInt(600 * PS), 4 * PS));
    expect(seen()).toEqual([[MMU_NOTIFY_CLEAR, 512, 1024], [MMU_NOTIFY_UNMAP, 600, 604]]);
  });

  it('read_begin / read_retry: an invalidation in between forces a retry; none does not', () => {
    const m = mk();
    const mm = m.newProcess();
    const va = unwrap(mm.mmap({ len: 4 * PS, backing: 'anon', populate: true }));
    const { sub } = watch(mm, va, 4 * PS);
    let seq = mmuIntervalReadBegin(sub);
    expect(mmuIntervalReadRetry(sub, seq)).toBe(false);
    unwrap(mm.migratePage(va));
    expect(mmuIntervalReadRetry(sub, seq)).toBe(true);
    seq = mmuIntervalReadBegin(sub);
    expect(mmuIntervalReadRetry(sub, seq)).toBe(false);
    expect(seq % 2).toBe(1);
  });

  it('an insert during an invalidation is deferred and starts with the running seq (a read side begun now retries)', () => {
    const m = mk();
    const mm = m.newProcess();
    const va = unwrap(mm.mmap({ len: 4 * PS, backing: 'anon', populate: true }));
    let late: MmuIntervalNotifier | null = null;
    let lateSeen = 0;
    unwrap(mmuIntervalNotifierInsert(mm, va, 4 * PS, {
      invalidate(s, _r, cur) {
        mmuIntervalSetSeq(s, cur);
        late ??= unwrap(mmuIntervalNotifierInsert(mm, va, 4 * PS, { invalidate() { lateSeen++; return true; } }));
        return true;
      },
    }));
    unwrap(mm.mprotect(va, PS, 'r'));
    expect(lateSeen).toBe(0);
    const seq = late!.invalidateSeq;
    expect(seq % 2).toBe(1);
    unwrap(mm.mprotect(va, PS, 'rw'));
    expect(lateSeen).toBe(1);
    expect(mmuIntervalReadRetry(late!, seq)).toBe(false); // it never set its seq: a broken driver does not see the collision
  });

  it('insert refuses an empty interval (EOVERFLOW, as the kernel)', () => {
    const mm = mk().newProcess();
    expect(mmuIntervalNotifierInsert(mm, 0x10000n, 0, { invalidate: () => true })).toMatchObject({ ok: false, errno: 'EOVERFLOW' });
  });
});

describe('mprotect, migration', () => {
  it('mprotect r: user writes fail with EFAULT and GUP for write fails; rw restores; a hole is ENOMEM', () => {
    const m = mk();
    const mm = m.newProcess();
    const va = unwrap(mm.mmap({ len: 4 * PS, backing: 'anon', populate: true }));
    unwrap(mm.mprotect(va + BigInt(PS), PS, 'r'));
    expect(mm.mappings.map((x) => x.writable)).toEqual([true, false, true]);
    expect(mm.writeUser(va + BigInt(PS), Uint8Array.of(1))).toMatchObject({ ok: false, errno: 'EFAULT' });
    expect(unwrap(mm.writeUser(va, Uint8Array.of(1)))).toBeUndefined();
    expect(pinUserPages(mm, va + BigInt(PS), 1, FOLL_WRITE)).toMatchObject({ ok: false });
    unwrap(mm.mprotect(va, 4 * PS, 'rw'));
    expect(unwrap(mm.writeUser(va + BigInt(PS), Uint8Array.of(1)))).toBeUndefined();
    unwrap(mm.munmap(va + BigInt(2 * PS), PS));
    expect(mm.mprotect(va, 4 * PS, 'r')).toMatchObject({ ok: false, errno: 'ENOMEM' });
    expect(mm.mprotect(va + 1n, PS, 'r')).toMatchObject({ ok: false, errno: 'EINVAL' });
  });

  it('mprotect of part of a PMD-mapped THP splits the PMD and keeps every byte', () => {
    const m = mk();
    const mm = m.newProcess();
    const va = unwrap(mm.mmap({ len: 2 * MiB, backing: 'thp', populate: true }));
    unwrap(mm.writeUser(va + BigInt(3 * PS), Uint8Array.of(9, 8, 7)));
    const p = mm.translate(va + BigInt(3 * PS));
    unwrap(mm.mprotect(va, 4 * PS, 'r'));
    expect(mm.translate(va + BigInt(3 * PS))).toBe(p);
    expect(unwrap(mm.readUser(va + BigInt(3 * PS), 3))).toEqual(Uint8Array.of(9, 8, 7));
    unwrap(mm.munmap(va, 2 * MiB));
    expect(m.folios.count).toBe(0);
  });

  it('a pinned page does not migrate (EBUSY); the zero page is EFAULT, an absent page ENOENT; a THP moves whole', () => {
    const m = mk();
    const mm = m.newProcess();
    const va = unwrap(mm.mmap({ len: 3 * PS, backing: 'anon' }));
    unwrap(mm.touch(va, PS, true));
    unwrap(mm.touch(va + BigInt(PS), PS, false));
    const pin = unwrap(pinUserPages(mm, va, 1, FOLL_WRITE | FOLL_LONGTERM));
    expect(mm.migratePage(va)).toMatchObject({ ok: false, errno: 'EBUSY' });
    unpinUserPages(pin);
    expect(mm.migratePage(va).ok).toBe(true);
    expect(mm.migratePage(va + BigInt(PS))).toMatchObject({ ok: false, errno: 'EFAULT' });
    expect(mm.migratePage(va + BigInt(2 * PS))).toMatchObject({ ok: false, errno: 'ENOENT' });
    const t = unwrap(mm.mmap({ len: 2 * MiB, backing: 'thp', populate: true }));
    unwrap(mm.writeUser(t + 12345n, Uint8Array.of(5, 6)));
    const free0 = m.freePages;
    const np = unwrap(mm.migratePage(t + 12345n));
    expect(m.folioOf(np / 4096n)!.order).toBe(9);
    expect(unwrap(mm.readUser(t + 12345n, 2))).toEqual(Uint8Array.of(5, 6));
    expect(m.freePages).toBe(free0);
    unwrap(mm.munmap(va, 3 * PS));
    unwrap(mm.munmap(t, 2 * MiB));
    expect(m.folios.count).toBe(0);
  });

  it('property: hmm_range_fault flags follow the VMA (write only where writable, never on the zero page)', () => {
    fc.assert(fc.property(
      fc.array(fc.record({ op: fc.constantFrom('touchR', 'touchW', 'ro', 'rw', 'migrate'), page: fc.nat(15) }), { maxLength: 20 }),
      fc.boolean(),
      (ops, write) => {
        const m = mk();
        const mm = m.newProcess();
        const va = unwrap(mm.mmap({ len: 16 * PS, backing: 'anon' }));
        const { sub } = watch(mm, va, 16 * PS);
        for (const o of ops) {
          const a = va + BigInt(o.page * PS);
          if (o.op === 'touchR') unwrap(mm.touch(a, 1, false));
          else if (o.op === 'touchW') void mm.touch(a, 1, true);
          else if (o.op === 'ro' || o.op === 'rw') unwrap(mm.mprotect(a, PS, o.op === 'ro' ? 'r' : 'rw'));
          else void mm.migratePage(a);
        }
        const r = range(sub, va, 16 * PS, HMM_PFN_REQ_FAULT | (write ? HMM_PFN_REQ_WRITE : 0));
        const res = faultRetry(r);
        const ro = mm.mappings.some((x) => !x.writable);
        if (write && ro) { expect(res).toMatchObject({ ok: false, errno: 'EPERM' }); return; }
        unwrap(res);
        for (let i = 0; i < 16; i++) {
          const a = va + BigInt(i * PS);
          const writable = mm.mappings.find((x) => x.start <= a && a < x.end)!.writable;
          const zero = m.isZeroPfn(r.hmmPfns[i]);
          expect(r.hmmFlags[i] & HMM_PFN_VALID).toBe(HMM_PFN_VALID);
          expect((r.hmmFlags[i] & HMM_PFN_WRITE) !== 0).toBe(writable && !zero);
          expect(BigInt(r.hmmPfns[i]) * 4096n).toBe(mm.translate(a));
        }
      },
    ), { numRuns: 60 });
  });
});
