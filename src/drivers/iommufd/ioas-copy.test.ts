// IOMMU_IOAS_COPY (ioas.c: iommufd_ioas_copy; io_pagetable.c: iopt_get_pages, iopt_map_pages,
// iopt_alloc_area_pages, iopt_insert_area): rule by rule, real bytes through two devices, and the pin
// accounting of shared iopt_pages checked against the folio pin counts.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { makeMachine, pattern, pinCounts } from '../../../test/fixtures/dma-b-machines.ts';
import { MiB } from '../../base/index.ts';
import { IOMMU_MMIO, iommuIovaToPhys } from '../../iommu/index.ts';
import { toPciDev } from '../../pci/index.ts';
import { dmaBufAttachments, dmaBufRevoke } from '../dmabuf/index.ts';
import { vfioPciDmabufExport } from '../vfio/index.ts';
import {
  iommufdIoasAlloc, iommufdIoasAllowIovas, iommufdIoasAttach, iommufdIoasCopy, iommufdIoasClose, iommufdIoasMap, iommufdIoasMapDmabuf, iommufdIoasUnmap, type Ioas,
} from './index.ts';

const PAGE = 4096;
const errno = (x: { ok: boolean; errno?: string }): string => (x.ok ? 'ok' : x.errno!);
const U64_MAX = (1n << 64n) - 1n;

function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** A machine with two IOASes (nvme0 and nic0, different groups) and a process with 16 populated pages. */
function setup(opts: { dstAttach?: boolean } = {}) {
  const m = makeMachine('strict');
  const nvme = m.device('nvme0');
  const nic = m.device('nic0');
  const mm = m.newProcess();
  const va = mm.mmap({ len: 16 * PAGE, backing: 'anon', populate: true });
  if (!va.ok) throw new Error(va.errno);
  const src = iommufdIoasAlloc(m, nvme);
  const dst = iommufdIoasAlloc(m, nic, { attach: opts.dstAttach ?? true });
  if (!src.ok || !dst.ok) throw new Error('alloc');
  return { m, nvme, nic, mm, va: va.value, src: src.value, dst: dst.value };
}

describe('IOMMU_IOAS_COPY', () => {
  it('the destination device reaches the source memory through the copied IOVA; no second pin; either side unmapped alone keeps the other working; both unmapped unpin', () => {
    const { m, nvme, nic, mm, va, src, dst } = setup();
    const before = pinCounts(m, mm, va, 16);
    expect(iommufdIoasMap(src, mm, va, 16 * PAGE, 0x4000_0000n)).toEqual({ ok: true, value: 0x4000_0000n });
    const mapped = pinCounts(m, mm, va, 16);
    // one map pins every page once more than before
    expect(mapped.every((c, i) => c > before[i])).toBe(true);
    const pins = m.listPins().length;
    expect(iommufdIoasCopy(dst, src, 0x4000_0000n, 16 * PAGE, 0x9000_0000n)).toEqual({ ok: true, value: 0x9000_0000n });
    // the copy shares the iopt_pages: no pin call, no pin count raised
    expect(m.listPins().length).toBe(pins);
    expect(pinCounts(m, mm, va, 16)).toEqual(mapped);
    expect(dst.areas[0].pages).toBe(src.areas[0].pages);
    // the destination domain translates to the same physical pages
    for (let i = 0; i < 16; i++) {
      expect(iommuIovaToPhys(dst.domain!, 0x9000_0000n + BigInt(i * PAGE))).toBe(mm.translate(va + BigInt(i * PAGE)));
    }
    // bytes: nic writes through the copy, nvme and the process read them
    const bytes = pattern(16 * PAGE, 3);
    expect(nic.dmaWrite(0x9000_0000n, bytes).ok).toBe(true);
    const r = nvme.dmaRead(0x4000_0000n, 16 * PAGE);
    expect(r.ok && same(r.value, bytes)).toBe(true);
    const u = mm.readUser(va, 16 * PAGE);
    expect(u.ok && same(u.value, bytes)).toBe(true);
    // unmap the source: the destination still maps and holds the pins
    expect(iommufdIoasUnmap(src, 0x4000_0000n, 16 * PAGE)).toEqual({ ok: true, value: 16 * PAGE });
    expect(pinCounts(m, mm, va, 16)).toEqual(mapped);
    expect(nvme.dmaRead(0x4000_0000n, PAGE).ok).toBe(false);
    const back = pattern(16 * PAGE, 4);
    expect(mm.writeUser(va, back).ok).toBe(true);
    const r2 = nic.dmaRead(0x9000_0000n, 16 * PAGE);
    expect(r2.ok && same(r2.value, back)).toBe(true);
    // unmap the destination too: unpinned
    expect(iommufdIoasUnmap(dst, 0x9000_0000n, 16 * PAGE)).toEqual({ ok: true, value: 16 * PAGE });
    expect(pinCounts(m, mm, va, 16)).toEqual(before);
    expect(m.listPins()).toEqual([]);
    iommufdIoasClose(src);
    iommufdIoasClose(dst);
    expect(m.events.count('WARN')).toBe(0);
    expect(m.teardown()).toBe(0);
  });

  it('a part of an area: only its pages stay pinned once the source goes; the destination first, then the source', () => {
    const { m, mm, va, src, dst, nic } = setup();
    const before = pinCounts(m, mm, va, 16);
    iommufdIoasMap(src, mm, va, 16 * PAGE, 0x4000_0000n);
    const mapped = pinCounts(m, mm, va, 16);
    // pages 4..7 copied
    expect(iommufdIoasCopy(dst, src, 0x4000_0000n + 4n * BigInt(PAGE), 4 * PAGE, 0x9000_0000n).ok).toBe(true);
    expect(dst.areas[0].uptr).toBe(va + 4n * BigInt(PAGE));
    iommufdIoasUnmap(src, 0x4000_0000n, 16 * PAGE);
    // pages 4..7 keep their pin, the others lose it
    expect(pinCounts(m, mm, va, 16)).toEqual(before.map((b, i) => (i >= 4 && i < 8 ? mapped[i] : b)));
    const rd = nic.dmaRead(0x9000_0000n, 4 * PAGE);
    const want = mm.readUser(va + 4n * BigInt(PAGE), 4 * PAGE);
    expect(rd.ok && want.ok && same(rd.value, want.value)).toBe(true);
    iommufdIoasUnmap(dst, 0x9000_0000n, 4 * PAGE);
    expect(pinCounts(m, mm, va, 16)).toEqual(before);
    // the other order: unmap the destination first, the source keeps everything
    iommufdIoasMap(src, mm, va, 16 * PAGE, 0x4000_0000n);
    iommufdIoasCopy(dst, src, 0x4000_0000n, 8 * PAGE, 0x9000_0000n);
    iommufdIoasUnmap(dst, 0x9000_0000n, 8 * PAGE);
    expect(pinCounts(m, mm, va, 16)).toEqual(mapped);
    iommufdIoasClose(src);
    expect(pinCounts(m, mm, va, 16)).toEqual(before);
    iommufdIoasClose(dst);
    expect(m.teardown()).toBe(0);
  });

  it('a range over two abutting areas makes two areas; one with a hole or not starting in an area is ENOENT (iopt_get_pages, iopt_area_contig_*)', () => {
    const { m, mm, va, src, dst } = setup();
    iommufdIoasMap(src, mm, va, 4 * PAGE, 0x4000_0000n);
    iommufdIoasMap(src, mm, va + 8n * BigInt(PAGE), 4 * PAGE, 0x4000_4000n);
    iommufdIoasMap(src, mm, va + 12n * BigInt(PAGE), 4 * PAGE, 0x4001_0000n);
    // [0x4000_2000, 0x4000_6000): the end of one area and the start of the next
    expect(iommufdIoasCopy(dst, src, 0x4000_2000n, 4 * PAGE, 0x9000_0000n)).toEqual({ ok: true, value: 0x9000_0000n });
    expect(dst.areas.map((a) => [a.iova, a.len, a.uptr])).toEqual([
      [0x9000_0000n, 2 * PAGE, va + 2n * BigInt(PAGE)], [0x9000_2000n, 2 * PAGE, va + 8n * BigInt(PAGE)],
    ]);
    // the two destination areas are separate: one can be unmapped alone
    expect(iommufdIoasUnmap(dst, 0x9000_2000n, 2 * PAGE)).toEqual({ ok: true, value: 2 * PAGE });
    // a hole between 0x4000_8000 and 0x4001_0000
    expect(errno(iommufdIoasCopy(dst, src, 0x4000_6000n, 0xc000, 0xa000_0000n))).toBe('ENOENT');
    // the first byte outside any area, the rest inside
    expect(errno(iommufdIoasCopy(dst, src, 0x3fff_f000n, 2 * PAGE, 0xa000_0000n))).toBe('ENOENT');
    // past the end of the last area
    expect(errno(iommufdIoasCopy(dst, src, 0x4001_3000n, 2 * PAGE, 0xa000_0000n))).toBe('ENOENT');
    expect(dst.areas.length).toBe(1);
    iommufdIoasClose(src);
    iommufdIoasClose(dst);
    expect(m.listPins()).toEqual([]);
    expect(m.teardown()).toBe(0);
  });

  it("errors in iommufd_ioas_copy's order: EOVERFLOW and EINVAL before the source is looked at, the source's ENOENT before the destination's EEXIST / EINVAL / EPERM", () => {
    const { m, mm, va, src, dst } = setup();
    iommufdIoasMap(src, mm, va, 4 * PAGE, 0x4000_0000n);
    iommufdIoasMap(src, mm, va + 4n * BigInt(PAGE), 4 * PAGE, 0x5000_0000n, { writeable: false });
    iommufdIoasMap(dst, mm, va + 8n * BigInt(PAGE), 4 * PAGE, 0x9000_0000n);
    const none = { readable: false, writeable: false };
    const codes = [
      // EOVERFLOW: dst_iova of ULONG_MAX, before no access flag and the unmapped source
      iommufdIoasCopy(dst, src, 0x1000n, PAGE, U64_MAX, none),
      iommufdIoasCopy(dst, src, U64_MAX, PAGE, 0x9000_0000n, none),
      // EINVAL: no access flag, before the unmapped source
      iommufdIoasCopy(dst, src, 0x1000n, PAGE, 0x9000_0000n, none),
      // EINVAL: length 0 (iopt_get_pages), before ENOENT of the source
      iommufdIoasCopy(dst, src, 0x1000n, 0, 0x9000_0000n),
      // EOVERFLOW: src_iova + length wraps
      iommufdIoasCopy(dst, src, U64_MAX - 0xfffn, 2 * PAGE, 0x9000_0000n),
      // ENOENT: nothing at the source, even though the destination is taken
      iommufdIoasCopy(dst, src, 0x1000n, PAGE, 0x9000_0000n),
      // EEXIST at the destination
      iommufdIoasCopy(dst, src, 0x4000_0000n, PAGE, 0x9000_0000n),
      // EINVAL: an unaligned destination (4 KiB alignment with the domain), and the MSI window
      iommufdIoasCopy(dst, src, 0x4000_0000n, PAGE, 0xa000_0800n),
      iommufdIoasCopy(dst, src, 0x4000_0000n, PAGE, 0xfee0_0000n),
      // EINVAL: a length not a multiple of the alignment, before EEXIST
      iommufdIoasCopy(dst, src, 0x4000_0000n, 100, 0x9000_0000n),
      // EPERM: writeable asked of a read-only map (iopt_insert_area), after the IOVA checks
      iommufdIoasCopy(dst, src, 0x5000_0000n, PAGE, 0xa000_0000n),
      iommufdIoasCopy(dst, src, 0x5000_0000n, PAGE, 0x9000_0000n),
    ].map(errno);
    expect(codes).toEqual(['EOVERFLOW', 'EOVERFLOW', 'EINVAL', 'EINVAL', 'EOVERFLOW', 'ENOENT', 'EEXIST', 'EINVAL', 'EINVAL', 'EINVAL', 'EPERM', 'EEXIST']);
    // read-only is fine
    expect(iommufdIoasCopy(dst, src, 0x5000_0000n, PAGE, 0xa000_0000n, { writeable: false }).ok).toBe(true);
    // a destroyed source is ENOENT before the range; a destroyed destination after the source's range
    const ghost = iommufdIoasAlloc(m, m.device('tb0'));
    if (!ghost.ok) throw new Error(ghost.errno);
    iommufdIoasClose(ghost.value);
    // (a length of 0 is EINVAL from a live source: the destroyed one is refused before its range is looked at)
    expect(errno(iommufdIoasCopy(dst, ghost.value, 0x4000_0000n, 0, 0xb000_0000n))).toBe('ENOENT');
    expect(errno(iommufdIoasCopy(ghost.value, src, 0x4000_0000n, 0, 0xb000_0000n))).toBe('EINVAL');
    expect(errno(iommufdIoasCopy(ghost.value, src, 0x4000_0000n, PAGE, 0xb000_0000n))).toBe('ENOENT');
    // EINVAL: the part's page offset (0x800 in its page) is not a multiple of dst's 4 KiB alignment,
    // though length and dst_iova are (iopt_insert_area); a domain-less source took it (alignment 1)
    const loose = iommufdIoasAlloc(m, m.device('tb0'), { attach: false });
    if (!loose.ok) throw new Error(loose.errno);
    expect(iommufdIoasMap(loose.value, mm, va + 0x800n, 2 * PAGE, 0x7000_0000n).ok).toBe(true);
    expect(errno(iommufdIoasCopy(dst, loose.value, 0x7000_0000n, PAGE, 0xb000_0000n))).toBe('EINVAL');
    expect(errno(iommufdIoasCopy(dst, loose.value, 0x7000_0800n, PAGE, 0xb000_0000n))).toBe('ok');
    iommufdIoasClose(loose.value);
    // misuse
    expect(() => iommufdIoasCopy(dst, {} as Ioas, 0n, PAGE, null)).toThrow(TypeError);
    expect(() => iommufdIoasCopy(dst, src, -1n, PAGE, null)).toThrow(/srcIova/);
    expect(() => iommufdIoasCopy(dst, src, 0n, 1.5, null)).toThrow(/len/);
    expect(() => iommufdIoasCopy(dst, src, 0n, PAGE, 5 as unknown as bigint)).toThrow(TypeError);
    iommufdIoasClose(src);
    iommufdIoasClose(dst);
    expect(m.listPins()).toEqual([]);
    expect(m.teardown()).toBe(0);
  });

  it('an allocated destination IOVA takes its alignment from the source user address (iopt_alloc_area_pages on the first part); ENOSPC when no hole fits', () => {
    const { m, mm, va, src, dst } = setup();
    iommufdIoasMap(src, mm, va, 16 * PAGE, 0x4000_0000n);
    // from va + 3 pages: alignment min(roundup(8 pages), lowest bit of the address)
    const from = va + 3n * BigInt(PAGE);
    const want = from & -from;
    const align = want < 8n * BigInt(PAGE) ? want : 8n * BigInt(PAGE);
    const r = iommufdIoasCopy(dst, src, 0x4000_3000n, 8 * PAGE, null);
    if (!r.ok) throw new Error(r.errno);
    // the empty destination's lowest fit: PAGE_SIZE rounded up to the alignment (an alignment from
    // the length alone, 32 KiB, would put it elsewhere)
    expect(align < 8n * BigInt(PAGE)).toBe(true);
    expect(r.value).toBe(((BigInt(PAGE) + align - 1n) / align) * align);
    // only [0xc000_0000, 0xc000_2fff] allowed for automatic IOVAs: 2 pages fit, 4 do not
    expect(iommufdIoasAllowIovas(dst, [{ start: 0xc000_0000n, last: 0xc000_2fffn }]).ok).toBe(true);
    expect(errno(iommufdIoasCopy(dst, src, 0x4000_0000n, 4 * PAGE, null))).toBe('ENOSPC');
    expect(iommufdIoasCopy(dst, src, 0x4000_0000n, 2 * PAGE, null)).toEqual({ ok: true, value: 0xc000_0000n });
    iommufdIoasClose(src);
    iommufdIoasClose(dst);
    expect(m.teardown()).toBe(0);
  });

  it('a destination with no domain pins nothing until attached; attach pins only what no pinned area holds', () => {
    const { m, mm, va, src, dst, nic } = setup({ dstAttach: false });
    iommufdIoasMap(src, mm, va, 8 * PAGE, 0x4000_0000n);
    const mapped = pinCounts(m, mm, va, 8);
    const pins = m.listPins().length;
    expect(iommufdIoasCopy(dst, src, 0x4000_0000n, 8 * PAGE, 0x9000_0000n).ok).toBe(true);
    expect(dst.areas[0].pinned).toBe(false);
    iommufdIoasUnmap(src, 0x4000_0000n, 8 * PAGE);
    // the source gone and the destination not in a domain: nothing pinned
    expect(m.listPins().length).toBe(pins - 1);
    expect(iommufdIoasAttach(dst).ok).toBe(true);
    expect(pinCounts(m, mm, va, 8)).toEqual(mapped);
    const bytes = pattern(8 * PAGE, 9);
    expect(nic.dmaWrite(0x9000_0000n, bytes).ok).toBe(true);
    const u = mm.readUser(va, 8 * PAGE);
    expect(u.ok && same(u.value, bytes)).toBe(true);
    iommufdIoasClose(dst);
    iommufdIoasClose(src);
    expect(m.listPins()).toEqual([]);
    expect(m.teardown()).toBe(0);
  });

  it('a VFIO dma-buf area is copied too (IOPT_ADDRESS_DMABUF pages shared, mapped as MMIO); the attachment goes with the last area; a revoke unmaps every copy', () => {
    const { m, nvme, nic, src, dst } = setup();
    const gpu = m.device('gpu0');
    const bar = toPciDev(gpu).bars[0].region;
    const buf = vfioPciDmabufExport(gpu, { bar: 0, offset: 0, len: 1 * MiB });
    if (!buf.ok) throw new Error(buf.errno);
    expect(iommufdIoasMapDmabuf(src, buf.value, 0x4000_0000n).ok).toBe(true);
    expect(iommufdIoasCopy(dst, src, 0x4001_0000n, 64 * 1024, 0x9000_0000n)).toEqual({ ok: true, value: 0x9000_0000n });
    expect(dst.areas[0].prot & IOMMU_MMIO).toBe(IOMMU_MMIO);
    expect(iommuIovaToPhys(dst.domain!, 0x9000_0000n)).toBe(bar.start + 0x1_0000n);
    const bytes = pattern(64 * 1024, 7);
    expect(nic.dmaWrite(0x9000_0000n, bytes).ok).toBe(true);
    expect(same(m.mem.read(bar.start + 0x1_0000n, 64 * 1024), bytes)).toBe(true);
    // one attachment for both (the copy attaches nothing)
    expect(dmaBufAttachments(nvme).length).toBe(1);
    expect(dmaBufAttachments(nic).length).toBe(0);
    iommufdIoasUnmap(src, 0x4000_0000n, 1 * MiB);
    expect(dmaBufAttachments(nvme).length).toBe(1);
    expect(nic.dmaRead(0x9000_0000n, PAGE).ok).toBe(true);
    // a second copy back into src, then revoke: both copies leave their domains
    expect(iommufdIoasCopy(src, dst, 0x9000_0000n, PAGE, 0x5000_0000n).ok).toBe(true);
    dmaBufRevoke(buf.value);
    expect(nic.dmaRead(0x9000_0000n, PAGE).ok).toBe(false);
    expect(nvme.dmaRead(0x5000_0000n, PAGE).ok).toBe(false);
    expect([...src.areas, ...dst.areas].every((a) => a.revoked)).toBe(true);
    iommufdIoasUnmap(dst, 0x9000_0000n, 64 * 1024);
    expect(dmaBufAttachments(nvme).length).toBe(1);
    iommufdIoasUnmap(src, 0x5000_0000n, PAGE);
    expect(dmaBufAttachments(nvme)).toEqual([]);
    iommufdIoasClose(src);
    iommufdIoasClose(dst);
    expect(m.teardown()).toBe(0);
  });

  it('property: random maps, copies and unmaps on two IOASes leave exactly the pages some pinned area covers pinned', () => {
    type Op = { k: 'copy'; from: number; page: number; n: number } | { k: 'unmap'; side: number; pick: number };
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ k: fc.constant('copy' as const), from: fc.nat(1), page: fc.nat(15), n: fc.integer({ min: 1, max: 16 }) }),
      fc.record({ k: fc.constant('unmap' as const), side: fc.nat(1), pick: fc.nat() }),
    );
    fc.assert(fc.property(fc.array(op, { maxLength: 12 }), (ops) => {
      const { m, mm, va, src, dst } = setup();
      const base = pinCounts(m, mm, va, 16);
      iommufdIoasMap(src, mm, va, 16 * PAGE, 0x4000_0000n);
      const pinnedOnce = pinCounts(m, mm, va, 16);
      const sides = [src, dst];
      let next = 0x8000_0000n;
      for (const o of ops) {
        if (o.k === 'copy') {
          const from = sides[o.from];
          const a = from.areas[o.page % Math.max(from.areas.length, 1)];
          if (a === undefined) continue;
          const n = Math.min(o.n, a.len / PAGE);
          iommufdIoasCopy(sides[1 - o.from], from, a.iova, n * PAGE, next);
          next += 0x10_0000n;
        } else {
          const side = sides[o.side];
          const a = side.areas[o.pick % Math.max(side.areas.length, 1)];
          if (a !== undefined) iommufdIoasUnmap(side, a.iova, a.len);
        }
      }
      // reference: page i is pinned (once) iff some area of either IOAS maps user page i
      const want = base.map((b, i) => {
        const p = va + BigInt(i * PAGE);
        return [...src.areas, ...dst.areas].some((a) => a.uptr <= p && p < a.uptr + BigInt(a.len)) ? pinnedOnce[i] : b;
      });
      expect(pinCounts(m, mm, va, 16)).toEqual(want);
      iommufdIoasClose(src);
      iommufdIoasClose(dst);
      expect(pinCounts(m, mm, va, 16)).toEqual(base);
      expect(m.teardown()).toBe(0);
    }), { numRuns: 40, seed: 7 });
  });
});
