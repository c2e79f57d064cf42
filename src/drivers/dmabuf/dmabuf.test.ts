import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { makeMachine, pattern } from '../../../test/fixtures/dma-b-machines.ts';
import { KiB, MiB, unwrap, type Result } from '../../base/index.ts';
import { DMA_BIDIRECTIONAL, dmaSetMaxSegSize } from '../../dma/index.ts';
import type { Machine } from '../../machine/index.ts';
import { pinUserPages, FOLL_WRITE } from '../../mm/index.ts';
import type { DmaList, PhyrList } from '../../phyr/index.ts';
import { vfioPciDmabufExport, vfioPciReset, vfioPciSetMemoryEnabled } from '../vfio/index.ts';
import {
  DMA_RESV_USAGE_WRITE, dmaBufAttach, dmaBufDetach, dmaBufList, dmaBufMapAttachment, dmaBufMmap, dmaBufRevocable, dmaBufRevoke,
  dmaBufMapAttachmentSgt, dmaBufMapAttachmentUnlocked, dmaBufUnmapAttachment, dmaBufUnmapAttachmentUnlocked, dmaBufVmap, dmaBufVunmap, dmaFenceInit, dmaResvLock, dmaResvUnlock, gpuBoCreate, gpuBoExport, gpuBoMigrate,
  iosysMapPlainStore, iosysMapRd, iosysMapWr, systemHeapAlloc, type DmaBuf, type DmaBufAttachment,
} from './index.ts';

type Exporter = 'heap' | 'gpu-vram' | 'vfio';
const IMPORTERS = ['nvme0', 'nic0', 'far0'] as const; // BUS_ADDR, THRU_HOST_BRIDGE, NOT_SUPPORTED to gpu0

function makeBuf(m: Machine, exp: Exporter, len: number): DmaBuf {
  if (exp === 'heap') return unwrap(systemHeapAlloc(m, len));
  if (exp === 'gpu-vram') return unwrap(gpuBoExport(unwrap(gpuBoCreate(m.device('gpu0'), len, 'vram'))));
  return unwrap(vfioPciDmabufExport(m.device('gpu0'), { bar: 0, offset: 64 * KiB, len }));
}

function machine(mode: 'none' | 'strict'): Machine {
  const m = makeMachine(mode);
  for (const n of IMPORTERS) dmaSetMaxSegSize(m.device(n), 1 << 30);
  return m;
}

/** A dynamic importer that unmaps when told to (a well-behaved invalidate_mappings). */
function attachDynamic(buf: DmaBuf, m: Machine, name: string, held: { list: DmaList | null }): Result<DmaBufAttachment> {
  return dmaBufAttach(buf, m.device(name), {
    dynamic: true, peer2peer: true,
    moveNotify: (att) => {
      if (held.list) dmaBufUnmapAttachment(att, held.list, DMA_BIDIRECTIONAL);
      held.list = null;
    },
  });
}

function physOf(buf: DmaBuf, off: number): bigint {
  const r = unwrap(buf.ops.physRanges(buf));
  for (let i = 0; i < r.count; i++) {
    if (off < r.lenAt(i)) return r.addrAt(i) + BigInt(off);
    off -= r.lenAt(i);
  }
  throw new Error('offset beyond buffer');
}

/** DMA address of byte off of a mapping. */
function dmaOf(list: DmaList, off: number): bigint {
  for (let i = 0; i < list.count; i++) {
    if (off < list.lenAt(i)) return list.addrAt(i) + BigInt(off);
    off -= list.lenAt(i);
  }
  throw new Error('offset beyond mapping');
}

describe('dmaBufRevocable: which exporters have a revoke path', () => {
  it('vfio-pci does (vfio_pci_dma_buf_move); the system heap (system_heap.c) and the GPU exporter (it moves) do not', () => {
    const m = machine('strict');
    const heap = makeBuf(m, 'heap', 4 * 4096);
    expect(dmaBufRevocable(heap)).toBe(false);
    expect(dmaBufRevocable(makeBuf(m, 'gpu-vram', 4 * 4096))).toBe(false);
    expect(dmaBufRevocable(makeBuf(m, 'vfio', 4 * 4096))).toBe(true);
    // the heap buffer's importer keeps moving bytes: nothing in the kernel takes it back
    const held: { list: DmaList | null } = { list: null };
    const att = unwrap(attachDynamic(heap, m, 'nvme0', held));
    dmaResvLock(heap);
    const list = unwrap(dmaBufMapAttachment(att, DMA_BIDIRECTIONAL));
    dmaResvUnlock(heap);
    const p = pattern(256, 3);
    expect(m.device('nvme0').dmaWrite(dmaOf(list, 4096), p).ok).toBe(true);
    expect(m.mem.read(physOf(heap, 4096), 256)).toEqual(p);
    dmaBufUnmapAttachmentUnlocked(att, list, DMA_BIDIRECTIONAL);
  });
});

describe('dma-buf exporters x a device importer x topology', () => {
  it('each cell moves bytes both ways or fails with the kernel error; revoke leaves nothing reachable', () => {
    fc.assert(fc.property(
      fc.constantFrom<Exporter>('heap', 'gpu-vram', 'vfio'), fc.constantFrom(...IMPORTERS), fc.constantFrom<'none' | 'strict'>('none', 'strict'),
      fc.integer({ min: 1, max: 64 }), fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 1, max: 1 << 20 }),
      (exp, imp, mode, pages, offSeed, seed) => {
        const m = machine(mode);
        const len = pages * 4096;
        const buf = makeBuf(m, exp, len);
        const held: { list: DmaList | null } = { list: null };
        const att = attachDynamic(buf, m, imp, held);
        expect(att.ok).toBe(true);
        dmaResvLock(buf);
        const map = dmaBufMapAttachment(att.ok ? att.value : (null as never), DMA_BIDIRECTIONAL);
        dmaResvUnlock(buf);
        if (imp === 'far0' && exp === 'vfio') {
          // dma_buf_phys_vec_to_sgt: NOT_SUPPORTED is the default case, EINVAL
          expect(map.ok ? 'mapped' : map.errno).toBe('EINVAL');
          return;
        }
        expect(map.ok).toBe(true);
        if (!map.ok) return;
        held.list = map.value;
        if (exp === 'gpu-vram' && imp === 'far0') expect((buf.priv as { placement: string }).placement).toBe('system');
        // the 256 bytes stay inside one 4 KiB page: the CPU side reads them at one physical address
        // (physOf) and the device at one DMA address (dmaOf), and neither run of a heap buffer nor an
        // entry of its DMA list need continue past a page
        const off0 = (offSeed * 97) % (len - 256);
        const off = off0 % 4096 > 4096 - 256 ? off0 - (off0 % 4096) + 4096 - 256 : off0;
        const p = pattern(256, seed);
        const dev = m.device(imp);
        const at = dmaOf(map.value, off);
        expect(dev.dmaWrite(at, p).ok).toBe(true);
        expect(m.mem.read(physOf(buf, off), 256)).toEqual(p);
        const q = pattern(256, seed + 1);
        m.mem.write(physOf(buf, off), q);
        expect(unwrap(dev.dmaRead(at, 256))).toEqual(q);
        dmaBufRevoke(buf);
        expect(held.list).toBe(null);
        expect(att.ok && att.value.mappings.length).toBe(0);
        // no importer reaches the buffer through its old address once it is unmapped behind an IOMMU
        if (mode === 'strict' && !(exp !== 'heap' && imp === 'nvme0')) {
          expect(dev.dmaRead(at, 256).ok).toBe(false);
        }
        dmaResvLock(buf);
        const again = dmaBufMapAttachment(att.ok ? att.value : (null as never), DMA_BIDIRECTIONAL);
        dmaResvUnlock(buf);
        expect(again.ok ? 'mapped' : again.errno).toBe('ENODEV');
        expect(m.events.count('MODEL-CHECK')).toBe(0);
      }), { numRuns: 60 });
  });

  it('vfio: a static importer or one without peer2peer cannot attach (EOPNOTSUPP); BAR disable faults even a bus-address peer', () => {
    const m = machine('none');
    const buf = makeBuf(m, 'vfio', 64 * KiB);
    const st = dmaBufAttach(buf, m.device('nvme0'));
    expect(st.ok ? 'ok' : st.errno).toBe('EOPNOTSUPP');
    const noNotify = dmaBufAttach(buf, m.device('nvme0'), { dynamic: true, peer2peer: true });
    expect(noNotify.ok ? 'ok' : noNotify.errno).toBe('EOPNOTSUPP');
    const held: { list: DmaList | null } = { list: null };
    const att = unwrap(attachDynamic(buf, m, 'nvme0', held));
    dmaResvLock(buf);
    held.list = unwrap(dmaBufMapAttachment(att, DMA_BIDIRECTIONAL));
    dmaResvUnlock(buf);
    const at = held.list.addrAt(0);
    expect(m.device('nvme0').dmaRead(at, 64).ok).toBe(true);
    vfioPciSetMemoryEnabled(m.device('gpu0'), false);
    expect(held.list).toBe(null);
    expect(m.device('nvme0').dmaRead(at, 64).ok).toBe(false);
    expect(dmaBufAttach(buf, m.device('nic0'), { dynamic: true, peer2peer: true, moveNotify: () => {} })).toMatchObject({ ok: false, errno: 'ENODEV' });
    vfioPciSetMemoryEnabled(m.device('gpu0'), true);
    dmaResvLock(buf);
    expect(dmaBufMapAttachment(att, DMA_BIDIRECTIONAL).ok).toBe(true);
    dmaResvUnlock(buf);
    // reset: revoked, then restored; the importer was told and must map again
    vfioPciReset(m.device('gpu0'));
    expect(att.mappings.length).toBe(0);
  });
});

describe('GPU VRAM migration', () => {
  it('move to system memory notifies, keeps the bytes, and the old IOVA faults; a pinned buffer cannot move', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 32 }), fc.integer({ min: 1, max: 9999 }), (pages, seed) => {
      const m = machine('strict');
      const bo = unwrap(gpuBoCreate(m.device('gpu0'), pages * 4096, 'vram'));
      const buf = unwrap(gpuBoExport(bo));
      const bytes = pattern(pages * 4096, seed);
      m.mem.write(physOf(buf, 0), bytes);
      const held: { list: DmaList | null } = { list: null };
      const att = unwrap(attachDynamic(buf, m, 'nic0', held));
      dmaResvLock(buf);
      held.list = unwrap(dmaBufMapAttachment(att, DMA_BIDIRECTIONAL));
      // in-flight DMA, fenced: it completes before the move copies
      const late = pattern(64, seed + 7);
      const at = held.list.addrAt(0);
      buf.resv.addFence(dmaFenceInit(() => { m.device('nic0').dmaWrite(at, late); }), DMA_RESV_USAGE_WRITE);
      dmaResvUnlock(buf);
      expect(gpuBoMigrate(bo, 'system').ok).toBe(true);
      expect(held.list).toBe(null);
      const expected = bytes.slice();
      expected.set(late, 0);
      const got = new Uint8Array(pages * 4096);
      for (let i = 0; i < pages; i++) got.set(m.mem.read(physOf(buf, i * 4096), 4096), i * 4096);
      expect(got).toEqual(expected);
      expect(m.device('nic0').dmaRead(at, 64).ok).toBe(false);
      // a static importer's map pins: no move while mapped
      const st = unwrap(dmaBufAttach(buf, m.device('nvme0')));
      dmaResvLock(buf);
      const sm = unwrap(dmaBufMapAttachment(st, DMA_BIDIRECTIONAL));
      dmaResvUnlock(buf);
      expect(gpuBoMigrate(bo, 'vram')).toMatchObject({ ok: false, errno: 'EBUSY' });
      dmaResvLock(buf);
      dmaBufUnmapAttachment(st, sm, DMA_BIDIRECTIONAL);
      dmaResvUnlock(buf);
      expect(gpuBoMigrate(bo, 'vram').ok).toBe(true);
    }), { numRuns: 8 });
  });
});

describe('misuse is reported and leaves nothing behind', () => {
  it('map without the lock WARNs and maps nothing; double unmap and use after detach are MODEL-CHECKs', () => {
    const m = machine('strict');
    const buf = makeBuf(m, 'heap', 16 * KiB);
    const att = unwrap(dmaBufAttach(buf, m.device('nic0')));
    const w0 = m.events.count('WARN');
    expect(dmaBufMapAttachment(att, DMA_BIDIRECTIONAL).ok).toBe(false);
    expect(m.events.count('WARN')).toBe(w0 + 1);
    expect(att.mappings.length).toBe(0);
    dmaResvLock(buf);
    const map = unwrap(dmaBufMapAttachment(att, DMA_BIDIRECTIONAL));
    dmaBufUnmapAttachment(att, map, DMA_BIDIRECTIONAL);
    const c0 = m.events.count('MODEL-CHECK');
    dmaBufUnmapAttachment(att, map, DMA_BIDIRECTIONAL);
    expect(m.events.count('MODEL-CHECK')).toBe(c0 + 1);
    expect(m.device('nic0').dmaRead(map.addrAt(0), 16).ok).toBe(false);
    dmaResvUnlock(buf);
    dmaBufDetach(buf, att);
    dmaResvLock(buf);
    expect(dmaBufMapAttachment(att, DMA_BIDIRECTIONAL).ok).toBe(false);
    dmaResvUnlock(buf);
    expect(m.events.count('MODEL-CHECK')).toBe(c0 + 2);
    expect(buf.attachments.length).toBe(0);
    expect(dmaBufList(m)).toContain(buf);
  });
  it('detach with a live mapping unmaps it (MODEL-CHECK)', () => {
    const m = machine('strict');
    const buf = makeBuf(m, 'heap', 16 * KiB);
    const att = unwrap(dmaBufAttach(buf, m.device('nic0')));
    dmaResvLock(buf);
    const map = unwrap(dmaBufMapAttachment(att, DMA_BIDIRECTIONAL));
    dmaResvUnlock(buf);
    dmaBufDetach(buf, att);
    expect(m.events.count('MODEL-CHECK')).toBe(1);
    expect(m.device('nic0').dmaRead(map.addrAt(0), 16).ok).toBe(false);
  });
});

describe('iosys_map and mmap', () => {
  it('vmap of VRAM is I/O memory: accessors work, a plain store is flagged; heap is system memory', () => {
    const m = machine('none');
    const g = makeBuf(m, 'gpu-vram', 8 * KiB);
    dmaResvLock(g);
    const map = unwrap(dmaBufVmap(g));
    dmaResvUnlock(g);
    expect(map.isIomem).toBe(true);
    iosysMapWr(map, 8, 4, 0xdeadbeefn);
    expect(iosysMapRd(map, 8, 4)).toBe(0xdeadbeefn);
    iosysMapPlainStore(map, 0, new Uint8Array([1]));
    expect(m.events.count('MODEL-CHECK')).toBe(1);
    const h = makeBuf(m, 'heap', 8 * KiB);
    dmaResvLock(h);
    const hm = unwrap(dmaBufVmap(h));
    dmaResvUnlock(h);
    expect(hm.isIomem).toBe(false);
    iosysMapPlainStore(hm, 0, new Uint8Array([1]));
    expect(m.events.count('MODEL-CHECK')).toBe(1);
  });
  it('vmap needs the exporter\'s vmap op: vfio-pci has none (EINVAL); a second vmap returns the same map and counts it; amdgpu pins the object while it is vmapped', () => {
    const m = machine('none');
    const v = makeBuf(m, 'vfio', 64 * KiB);
    dmaResvLock(v);
    expect(dmaBufVmap(v)).toMatchObject({ ok: false, errno: 'EINVAL' });
    dmaResvUnlock(v);
    const bo = unwrap(gpuBoCreate(m.device('gpu0'), 2 * 4096, 'vram'));
    const g = unwrap(gpuBoExport(bo));
    dmaResvLock(g);
    const a = unwrap(dmaBufVmap(g));
    const b = unwrap(dmaBufVmap(g));
    expect(b).toBe(a);
    dmaResvUnlock(g);
    // amdgpu_dma_buf_vmap pinned it: it cannot move while the kernel mapping exists
    expect(gpuBoMigrate(bo, 'system')).toMatchObject({ ok: false, errno: 'EBUSY' });
    dmaResvLock(g);
    dmaBufVunmap(g, a);
    expect(a.isNull).toBe(false);
    dmaBufVunmap(g, b);
    expect(a.isNull).toBe(true);
    dmaResvUnlock(g);
    expect(gpuBoMigrate(bo, 'system').ok).toBe(true);
    expect(m.events.count('MODEL-CHECK')).toBe(0);
    expect(m.events.count('WARN')).toBe(0);
  });
  it('mmap: wc for VRAM, wb after the move, SIGBUS after revoke, pinUserPages EFAULT, vfio EINVAL', () => {
    const m = machine('none');
    const bo = unwrap(gpuBoCreate(m.device('gpu0'), 2 * 4096, 'vram'));
    const buf = unwrap(gpuBoExport(bo));
    const mm = m.newProcess();
    const va = unwrap(dmaBufMmap(buf, mm));
    const bytes = pattern(4096, 5);
    expect(mm.writeUser(va, bytes).ok).toBe(true);
    expect(mm.cacheModeAt(va)).toBe('wc');
    expect(m.mem.read(physOf(buf, 0), 4096)).toEqual(bytes);
    expect(pinUserPages(mm, va, 1, FOLL_WRITE)).toMatchObject({ ok: false, errno: 'EFAULT' });
    expect(gpuBoMigrate(bo, 'system').ok).toBe(true);
    expect(mm.translate(va)).toBe(undefined);
    expect(unwrap(mm.readUser(va, 4096))).toEqual(bytes);
    expect(mm.cacheModeAt(va)).toBe('wb');
    dmaBufRevoke(buf);
    const r = mm.readUser(va, 16);
    expect(r.ok ? 'read' : r.message?.startsWith('SIGBUS')).toBe(true);
    const v = makeBuf(m, 'vfio', 64 * KiB);
    expect(dmaBufMmap(v, mm)).toMatchObject({ ok: false, errno: 'EINVAL' });
    expect(MiB).toBeGreaterThan(0);
  });
});

describe('the exporters\' DMA attributes (amdgpu_dma_buf_map / _unmap, system_heap_map_dma_buf)', () => {
  /** The CPU's bytes of a list of RAM ranges, and a device's reads through a DMA list. */
  const cpuBytes = (m: Machine, r: { count: number; addrAt(i: number): bigint; lenAt(i: number): number }): Uint8Array => {
    const parts: Uint8Array[] = [];
    for (let i = 0; i < r.count; i++) parts.push(m.mem.read(r.addrAt(i), r.lenAt(i)));
    const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
    parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
    return out;
  };
  const devBytes = (m: Machine, dev: string, list: DmaList): Uint8Array => {
    const out = new Uint8Array(list.totalLen);
    for (let i = 0, at = 0; i < list.count; at += list.lenAt(i), i++) out.set(unwrap(m.device(dev).dmaRead(list.addrAt(i), list.lenAt(i))), at);
    return out;
  };

  it('amdgpu maps GTT pages with DMA_ATTR_SKIP_CPU_SYNC: swiotlb still copies the pages in (swiotlb_tbl_map_single always does); the unmap (attrs 0) copies the device\'s writes back', () => {
    const m = makeMachine('none', 1, { swiotlb: { bytes: 16 * MiB, force: true } });
    const bo = unwrap(gpuBoCreate(m.device('gpu0'), 4 * 4096, 'system'));
    const data = pattern(bo.size, 7);
    const r = bo.ranges();
    for (let i = 0, at = 0; i < r.count; at += r.lenAt(i), i++) m.mem.write(r.addrAt(i), data.subarray(at, at + r.lenAt(i)));
    const buf = unwrap(gpuBoExport(bo));
    const att = unwrap(dmaBufAttach(buf, m.device('nic0')));
    const list = unwrap(dmaBufMapAttachmentUnlocked(att, DMA_BIDIRECTIONAL));
    expect(Buffer.from(devBytes(m, 'nic0', list)).equals(Buffer.from(data))).toBe(true);
    const written = pattern(bo.size, 11);
    for (let i = 0, at = 0; i < list.count; at += list.lenAt(i), i++) unwrap(m.device('nic0').dmaWrite(list.addrAt(i), written.subarray(at, at + list.lenAt(i))));
    dmaBufUnmapAttachmentUnlocked(att, list, DMA_BIDIRECTIONAL);
    expect(Buffer.from(cpuBytes(m, bo.ranges())).equals(Buffer.from(written))).toBe(true);
    dmaBufDetach(buf, att);
  });

  it('a non-coherent importer: amdgpu\'s map of GTT pages cleans no cache line (DMA_ATTR_SKIP_CPU_SYNC), its unmap (attrs 0) invalidates; the system heap\'s map cleans', () => {
    const cacheOps = (m: Machine): number => m.stats.snapshot().cacheMaintenanceOps;
    for (const exp of ['gpu-gtt', 'heap'] as const) {
      const m = makeMachine('none');
      m.device('nic0').dmaCoherent = false;
      const buf = exp === 'heap' ? unwrap(systemHeapAlloc(m, 4 * 4096)) : unwrap(gpuBoExport(unwrap(gpuBoCreate(m.device('gpu0'), 4 * 4096, 'system'))));
      const att = unwrap(dmaBufAttach(buf, m.device('nic0')));
      const c0 = cacheOps(m);
      const list = unwrap(dmaBufMapAttachmentUnlocked(att, DMA_BIDIRECTIONAL));
      const atMap = cacheOps(m) - c0;
      dmaBufUnmapAttachmentUnlocked(att, list, DMA_BIDIRECTIONAL);
      const atUnmap = cacheOps(m) - c0 - atMap;
      if (exp === 'gpu-gtt') expect(atMap, exp).toBe(0);
      else expect(atMap, exp).toBeGreaterThan(0);
      expect(atUnmap, exp).toBeGreaterThan(0);
      expect(m.events.count('DMA-DEBUG'), exp).toBe(0);
      dmaBufDetach(buf, att);
    }
  });

  it('the system heap\'s sg_table has one entry per chunk it allocated (orders 8, 4, 0), never merged, even where chunks are physically adjacent', () => {
    const m = makeMachine('none');
    const buf = unwrap(systemHeapAlloc(m, 2 * MiB + 64 * KiB + 2 * 4096));
    const chunks = (buf.priv as { chunks: Array<{ order: number }> }).chunks;
    expect(chunks.map((c) => c.order)).toEqual([8, 8, 4, 0, 0]);
    const att = unwrap(dmaBufAttach(buf, m.device('nic0')));
    dmaResvLock(buf);
    const sgt = unwrap(dmaBufMapAttachmentSgt(att, DMA_BIDIRECTIONAL));
    // dma-direct maps entry by entry: orig_nents and nents are the chunk count
    expect([sgt.origNents, sgt.nents]).toEqual([5, 5]);
    expect(Array.from({ length: 5 }, (_, i) => sgt.dmaLengthAt(i))).toEqual([1 * MiB, 1 * MiB, 64 * KiB, 4096, 4096]);
    dmaBufUnmapAttachment(att, sgt, DMA_BIDIRECTIONAL);
    dmaResvUnlock(buf);
    dmaBufDetach(buf, att);
  });

  it('the system heap maps with attrs 0: under swiotlb=force its pages are copied into the bounce slots at map time', () => {
    const m = makeMachine('none', 1, { swiotlb: { bytes: 16 * MiB, force: true } });
    const buf = unwrap(systemHeapAlloc(m, 4 * 4096));
    const att = unwrap(dmaBufAttach(buf, m.device('nic0')));
    const list = unwrap(dmaBufMapAttachmentUnlocked(att, DMA_BIDIRECTIONAL));
    const pages = (buf.priv as { pages: PhyrList }).pages;
    expect(Buffer.from(devBytes(m, 'nic0', list)).equals(Buffer.from(cpuBytes(m, pages)))).toBe(true);
    dmaBufUnmapAttachmentUnlocked(att, list, DMA_BIDIRECTIONAL);
    dmaBufDetach(buf, att);
  });
});
