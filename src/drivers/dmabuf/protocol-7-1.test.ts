// The Linux 7.1 dma-buf revoke protocol (drivers/dma-buf/dma-buf.c: dma_buf_invalidate_mappings,
// dma_buf_attach_revocable; drivers/vfio/pci/vfio_pci_dmabuf.c: vfio_pci_dma_buf_move;
// drivers/iommu/iommufd/pages.c: iopt_map_dmabuf, iopt_revoke_notify) and the mapping-type
// negotiation of the RFC "Add DMA-buf mapping types" (Feb 2026, not merged). After an invalidation
// completes no importer's device reaches the old memory: dynamic, pinned and iommufd importers.
import { describe, expect, it } from 'vitest';
import { makeMachine, pattern } from '../../../test/fixtures/dma-b-machines.ts';
import { KiB, MiB, unwrap } from '../../base/index.ts';
import { DMA_BIDIRECTIONAL } from '../../dma/index.ts';
import { iommuIovaToPhys } from '../../iommu/index.ts';
import { toPciDev } from '../../pci/index.ts';
import type { DmaList } from '../../phyr/index.ts';
import { iommufdIoasAlloc, iommufdIoasClose, iommufdIoasMapDmabuf, iommufdIoasMapDmabufPal } from '../iommufd/index.ts';
import { vfioPciDmabufExport, vfioPciDmabufs, vfioPciReset, vfioPciSetMemoryEnabled } from '../vfio/index.ts';
import {
  dmaBufAttach, dmaBufAttachments, dmaBufDetach, dmaBufMapAttachment, dmaBufMapPal, dmaBufPin, dmaBufUnmapAttachment,
  dmaBufUnmapPal, dmaBufUnpin, dmaResvLock, dmaResvUnlock, negotiateMapType, systemHeapAlloc,
} from './index.ts';

const IOVA = 0x1000_0000n;

describe('mapping-type negotiation (RFC "Add DMA-buf mapping types", not merged)', () => {
  it('the exporter picks the first of its types the importer accepts; none in common is EOPNOTSUPP; no list means sgt', () => {
    const m = makeMachine('strict');
    const vfio = unwrap(vfioPciDmabufExport(m.device('gpu0'), { bar: 0, offset: 0, len: 64 * KiB }));
    const heap = unwrap(systemHeapAlloc(m, 64 * KiB));
    expect(unwrap(negotiateMapType(vfio, ['pal', 'sgt']))).toBe('sgt');
    expect(unwrap(negotiateMapType(vfio, ['pal']))).toBe('pal');
    expect(unwrap(negotiateMapType(heap, ['sgt', 'pal']))).toBe('sgt');
    const none = negotiateMapType(heap, ['pal']);
    expect(none.ok ? null : none.errno).toBe('EOPNOTSUPP');
    expect(() => negotiateMapType(heap, ['bogus' as 'pal'])).toThrow(RangeError);
    const nic = m.device('nic0');
    const refused = dmaBufAttach(heap, nic, { dynamic: true, peer2peer: true, mapTypes: ['pal'], moveNotify: () => undefined });
    expect(refused.ok ? null : refused.errno).toBe('EOPNOTSUPP');
    expect(dmaBufAttachments(nic)).toEqual([]);
    const classic = unwrap(dmaBufAttach(vfio, nic, { dynamic: true, peer2peer: true, moveNotify: () => undefined }));
    expect(classic.mapType).toBe('sgt');
    dmaBufDetach(vfio, classic);
  });

  it('a PAL attachment gets the phys_vec and the provider, cannot map an sg table, and must hold the lock', () => {
    const m = makeMachine('strict');
    const gpu = m.device('gpu0');
    const buf = unwrap(vfioPciDmabufExport(gpu, { ranges: [{ offset: 0, len: 64 * KiB }, { offset: 1 * MiB, len: 8 * KiB }], bar: 0 }));
    const att = unwrap(dmaBufAttach(buf, m.device('nic0'), { dynamic: true, peer2peer: true, mapTypes: ['pal'], moveNotify: () => undefined }));
    expect(att.mapType).toBe('pal');
    const noLock = dmaBufMapPal(att);
    expect(noLock.ok ? null : noLock.errno).toBe('EINVAL');
    expect(m.events.count('WARN')).toBe(1);
    dmaResvLock(buf);
    const sg = dmaBufMapAttachment(att, DMA_BIDIRECTIONAL);
    expect(sg.ok ? null : sg.errno).toBe('EINVAL');
    const pal = unwrap(dmaBufMapPal(att));
    const bar = toPciDev(gpu).bars[0].region.start;
    expect([...pal.phys].map((r) => [r.addr - bar, r.len])).toEqual([[0n, 64 * KiB], [BigInt(MiB), 8 * KiB]]);
    expect(pal.provider.owner).toBe(gpu);
    expect(vfioPciDmabufs(gpu)[0].liveMaps).toBe(1);
    dmaBufUnmapPal(att, pal);
    dmaBufUnmapPal(att, pal);
    dmaResvUnlock(buf);
    expect(m.events.count('MODEL-CHECK')).toBe(1);
    expect(vfioPciDmabufs(gpu)[0].liveMaps).toBe(0);
    dmaBufDetach(buf, att);
  });
});

describe('VFIO_DEVICE_FEATURE_DMA_BUF range checks (validate_dmabuf_input, vfio_pci_core_fill_phys_vec)', () => {
  it('empty or unaligned ranges and ranges past the BAR are EINVAL, a BAR that is not one is ENODEV; an offset + length past 2^53 that does not wrap 64 bits is EINVAL, not EOVERFLOW', () => {
    const m = makeMachine('strict');
    const gpu = m.device('gpu0');
    const errno = (r: { ok: boolean; errno?: string }): string => (r.ok ? 'ok' : r.errno!);
    const big = 2 ** 53 - 4096;
    expect([
      errno(vfioPciDmabufExport(gpu, { bar: 0, ranges: [] })),
      errno(vfioPciDmabufExport(gpu, { bar: 0, offset: 0, len: 0 })),
      errno(vfioPciDmabufExport(gpu, { bar: 0, offset: 0x800, len: 4096 })),
      errno(vfioPciDmabufExport(gpu, { bar: 0, offset: 16 * 1024 * 1024, len: 4096 })),
      errno(vfioPciDmabufExport(gpu, { bar: 6, offset: 0, len: 4096 })),
      errno(vfioPciDmabufExport(gpu, { bar: 0, offset: big, len: 8192 })),
    ]).toEqual(['EINVAL', 'EINVAL', 'EINVAL', 'EINVAL', 'ENODEV', 'EINVAL']);
    expect(vfioPciDmabufs(gpu)).toEqual([]);
  });
});

describe('after an invalidation completes no importer reaches the old memory', () => {
  it('dynamic importer: invalidate_mappings unmaps, the old IOVA faults, a new map works once restored', () => {
    const m = makeMachine('strict');
    const gpu = m.device('gpu0'), nic = m.device('nic0');
    const buf = unwrap(vfioPciDmabufExport(gpu, { bar: 0, offset: 0, len: 64 * KiB }));
    const held: { list: DmaList | null } = { list: null };
    let told = 0;
    const att = unwrap(dmaBufAttach(buf, nic, {
      dynamic: true, peer2peer: true,
      moveNotify: (a) => { told++; if (held.list) dmaBufUnmapAttachment(a, held.list, DMA_BIDIRECTIONAL); held.list = null; },
    }));
    dmaResvLock(buf);
    held.list = unwrap(dmaBufMapAttachment(att, DMA_BIDIRECTIONAL));
    dmaResvUnlock(buf);
    const old = held.list.addrAt(0);
    const bytes = pattern(4096, 3);
    expect(nic.dmaWrite(old, bytes).ok).toBe(true);
    vfioPciSetMemoryEnabled(gpu, false);
    expect(told).toBe(1);
    expect(nic.dmaRead(old, 64).ok).toBe(false);
    expect(vfioPciDmabufs(gpu)[0].liveMaps).toBe(0);
    vfioPciSetMemoryEnabled(gpu, true);
    dmaResvLock(buf);
    const again = unwrap(dmaBufMapAttachment(att, DMA_BIDIRECTIONAL));
    expect(unwrap(nic.dmaRead(again.addrAt(0), 4096))).toEqual(bytes);
    dmaBufUnmapAttachment(att, again, DMA_BIDIRECTIONAL);
    dmaResvUnlock(buf);
    dmaBufDetach(buf, att);
    expect(m.events.count('MODEL-CHECK')).toBe(0);
    expect(m.teardown()).toBe(0);
  });

  it('restoring the BAR tells every importer again while the buffer is still revoked (vfio_pci_dma_buf_move(vdev, false) calls invalidate_mappings too); a restore of a buffer that is not revoked tells nobody', () => {
    const m = makeMachine('strict');
    const gpu = m.device('gpu0'), nic = m.device('nic0');
    const buf = unwrap(vfioPciDmabufExport(gpu, { bar: 0, offset: 0, len: 64 * KiB }));
    const seen: boolean[] = [];
    const att = unwrap(dmaBufAttach(buf, nic, { dynamic: true, peer2peer: true, moveNotify: (a) => { seen.push(a.dmabuf.revoked); } }));
    vfioPciSetMemoryEnabled(gpu, true);
    expect(seen).toEqual([]);
    vfioPciSetMemoryEnabled(gpu, false);
    expect(seen).toEqual([true]);
    vfioPciSetMemoryEnabled(gpu, true);
    // the second notification comes before priv->revoked is cleared
    expect(seen).toEqual([true, true]);
    expect(buf.revoked).toBe(false);
    vfioPciReset(gpu);
    expect(seen).toEqual([true, true, true, true]);
    dmaBufDetach(buf, att);
    expect(m.events.count('MODEL-CHECK')).toBe(0);
    expect(m.events.count('WARN')).toBe(0);
  });

  it('pinned dynamic importer ("vfio: Permit VFIO to work with pinned importers", 7.1): pin succeeds (VFIO has no pin op); invalidation still unmaps it and the old IOVA faults', () => {
    const m = makeMachine('strict');
    const gpu = m.device('gpu0'), nic = m.device('nic0');
    const buf = unwrap(vfioPciDmabufExport(gpu, { bar: 0, offset: 0, len: 64 * KiB }));
    const held: { list: DmaList | null } = { list: null };
    const att = unwrap(dmaBufAttach(buf, nic, {
      dynamic: true, peer2peer: true,
      moveNotify: (a) => { if (held.list) dmaBufUnmapAttachment(a, held.list, DMA_BIDIRECTIONAL); held.list = null; },
    }));
    dmaResvLock(buf);
    expect(dmaBufPin(att).ok).toBe(true);
    expect(att.pinCount).toBe(1);
    held.list = unwrap(dmaBufMapAttachment(att, DMA_BIDIRECTIONAL));
    dmaResvUnlock(buf);
    const old = held.list.addrAt(0);
    expect(nic.dmaRead(old, 64).ok).toBe(true);
    vfioPciSetMemoryEnabled(gpu, false);
    expect(held.list).toBeNull();
    expect(nic.dmaRead(old, 64).ok).toBe(false);
    dmaResvLock(buf);
    dmaBufUnpin(att);
    dmaResvUnlock(buf);
    dmaBufDetach(buf, att);
    expect(m.events.count('MODEL-CHECK')).toBe(0);
  });

  for (const pal of [false, true]) {
    it(`iommufd${pal ? ' as a PAL importer' : ''} pins its attachment; revoke of the pinned attachment is permanent: restoring the BAR does not remap, the IOVA keeps faulting`, () => {
      const m = makeMachine('strict');
      const gpu = m.device('gpu0'), nvme = m.device('nvme0');
      const buf = unwrap(vfioPciDmabufExport(gpu, { bar: 0, offset: 0, len: 64 * KiB }));
      const ioas = unwrap(iommufdIoasAlloc(m, nvme));
      unwrap(pal ? iommufdIoasMapDmabufPal(ioas, buf, IOVA) : iommufdIoasMapDmabuf(ioas, buf, IOVA));
      const att = dmaBufAttachments(nvme)[0];
      expect(att.pinCount).toBe(1);
      expect(att.mapType).toBe(pal ? 'pal' : 'sgt');
      expect(vfioPciDmabufs(gpu)[0].liveMaps).toBe(pal ? 1 : 0);
      expect(nvme.dmaWrite(IOVA, pattern(4096, 1)).ok).toBe(true);
      vfioPciSetMemoryEnabled(gpu, false);
      expect(nvme.dmaRead(IOVA, 64).ok).toBe(false);
      expect(vfioPciDmabufs(gpu)[0].liveMaps).toBe(0);
      vfioPciSetMemoryEnabled(gpu, true);
      expect(iommuIovaToPhys(ioas.domain!, IOVA)).toBe(0n);
      expect(nvme.dmaRead(IOVA, 64).ok).toBe(false);
      expect(ioas.areas[0].revoked).toBe(true);
      iommufdIoasClose(ioas);
      expect(dmaBufAttachments(nvme)).toEqual([]);
      expect(m.events.count('MODEL-CHECK')).toBe(0);
      expect(m.events.count('WARN')).toBe(0);
    });
  }

  it('iommufd as a PAL importer takes a VFIO buffer of several ranges, which the private interconnect refuses (EOPNOTSUPP)', () => {
    const m = makeMachine('strict');
    const gpu = m.device('gpu0'), nvme = m.device('nvme0');
    const bar = toPciDev(gpu).bars[0].region.start;
    const buf = unwrap(vfioPciDmabufExport(gpu, { bar: 0, ranges: [{ offset: 1 * MiB, len: 8 * KiB }, { offset: 0, len: 4 * KiB }] }));
    const ioas = unwrap(iommufdIoasAlloc(m, nvme));
    const old = iommufdIoasMapDmabuf(ioas, buf, IOVA);
    expect(old.ok ? null : old.errno).toBe('EOPNOTSUPP');
    unwrap(iommufdIoasMapDmabufPal(ioas, buf, IOVA));
    expect(ioas.areas[0].iommuMaps).toBe(2);
    const bytes = pattern(12 * KiB, 9);
    expect(nvme.dmaWrite(IOVA, bytes).ok).toBe(true);
    expect(m.mem.read(bar + BigInt(MiB), 8 * KiB)).toEqual(bytes.subarray(0, 8 * KiB));
    expect(m.mem.read(bar, 4 * KiB)).toEqual(bytes.subarray(8 * KiB));
    iommufdIoasClose(ioas);
    expect(vfioPciDmabufs(gpu)[0].liveMaps).toBe(0);
    expect(m.teardown()).toBe(0);
  });
});
