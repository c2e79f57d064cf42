// Models: drivers/dma-buf/dma-buf-mapping.c (Linux 6.19+): dma_buf_phys_vec_to_sgt() and
// dma_buf_free_sgt(), the helper an exporter of physical ranges (MMIO of a P2P provider) uses to
// hand an importer a DMA mapping: one pci_p2pdma_map_type() per provider, then the bus address
// (BUS_ADDR), or the two-step IOVA API / dma_map_phys with DMA_ATTR_MMIO (THRU_HOST_BRIDGE); any
// other map type is EINVAL. The sg_table has only a DMA side (fill_sg_entry: no pages, entries cut
// at UINT_MAX). Beside it, two forms the model adds: the same ranges through dmaMapPhyrs (a DMA list
// without a scatterlist, with per-range P2P classification, for exporters whose memory may be RAM or
// a BAR) and pages through dma_map_sgtable (a heap exporter's map_dma_buf, as
// drivers/dma-buf/heaps/system_heap.c: system_heap_map_dma_buf does).

import { err, ok, type Errno, type Result } from '../../base/index.ts';
import {
  DMA_ATTR_MMIO, DmaIovaState, dmaContextOf, dmaIovaDestroy, dmaIovaLink, dmaIovaSync, dmaIovaTryAlloc, dmaMapPhyrs, dmaMapPhys,
  dmaMapSgtable, dmaUnmapPhyrs, dmaUnmapPhys, dmaUnmapSgtable, dmaUseIova, type DmaDataDirection, type DmaPhyrsMapping,
} from '../../dma/index.ts';
import {
  PCI_P2PDMA_MAP_BUS_ADDR, PCI_P2PDMA_MAP_NAMES, PCI_P2PDMA_MAP_THRU_HOST_BRIDGE, pciP2pdmaBusAddrMap, pciP2pdmaMapType,
  type P2pdmaProvider, type PciP2pdmaMapType,
} from '../../pci/index.ts';
import { DmaList, PhyrList, sgAllocTable, type SgTable } from '../../phyr/index.ts';
import type { DmaBufAttachment, DmaBufMapped } from './dma-buf.ts';

/** UINT_MAX: the longest sg entry (sg_dma_len is an unsigned int). */
const UINT_MAX = 0xffffffff;

/** How a DmaBufDma was made, so that dmaBufFreeSgt undoes exactly that. */
export type DmaBufDmaHow = 'bus-addr' | 'iova' | 'map-phys' | 'phyrs' | 'sgtable';

/** struct dma_buf_dma: a mapping for one attachment, as a DmaList and a DMA-only sg_table. */
export class DmaBufDma implements DmaBufMapped {
  readonly list: DmaList;
  readonly sgt: SgTable;
  readonly how: DmaBufDmaHow;
  /** dma->size: bytes mapped. */
  readonly size: number;
  /** The P2P map type the helper found (null for the phyrs and sgtable forms). */
  readonly mapType: PciP2pdmaMapType | null;
  /** @internal */ readonly state: DmaIovaState | null;
  /** @internal */ readonly phyrs: DmaPhyrsMapping | null;
  /** @internal the page sg table mapped with dma_map_sgtable ('sgtable'). */
  readonly pageSgt: SgTable | null;
  /** @internal the DMA_ATTR_* bits the 'sgtable' unmap passes: the map's, unless the exporter unmaps with others (dma-debug compares MMIO, REQUIRE_COHERENT and CC_SHARED since 7.2). */
  readonly attrs: number;
  private live = true;

  /** @internal made by the helpers of this file. */
  constructor(f: {
    list: DmaList; sgt: SgTable; how: DmaBufDmaHow; size: number; mapType: PciP2pdmaMapType | null;
    state?: DmaIovaState | null; phyrs?: DmaPhyrsMapping | null; pageSgt?: SgTable | null; attrs?: number;
  }) {
    this.attrs = f.attrs ?? 0;
    this.list = f.list;
    this.sgt = f.sgt;
    this.how = f.how;
    this.size = f.size;
    this.mapType = f.mapType;
    this.state = f.state ?? null;
    this.phyrs = f.phyrs ?? null;
    this.pageSgt = f.pageSgt ?? null;
  }

  get mapped(): boolean {
    return this.live;
  }

  /** @internal */
  markFreed(): void {
    this.live = false;
  }
}

/**
 * Entries (address, length) cut at UINT_MAX, as fill_sg_entry() writes them, into a DmaList and a
 * DMA-only sg_table, whose chunks hold a page of entries of the device's machine (pageSize).
 */
function buildTables(entries: ReadonlyArray<{ addr: bigint; len: number; flags: number }>, pageSize: number): { list: DmaList; sgt: SgTable } {
  const cut: Array<{ addr: bigint; len: number; flags: number }> = [];
  for (const e of entries) {
    let left = e.len;
    let a = e.addr;
    while (left > 0) {
      const n = Math.min(left, UINT_MAX);
      cut.push({ addr: a, len: n, flags: e.flags });
      a += BigInt(n);
      left -= n;
    }
  }
  const sgt = sgAllocTable(Math.max(1, cut.length), { pageSize });
  if (!sgt.ok) throw new Error(`sg_alloc_table(${cut.length}) failed: ${sgt.errno}`);
  // Model deviation: the kernel sets orig_nents to 0 (no CPU list); the model's SgTable keeps
  // nents <= orig_nents, so orig_nents = nents and the CPU side has no pages (hasPage() is false).
  const b = DmaList.builder(cut.length);
  cut.forEach((e, i) => {
    sgt.value.setDma(i, e.addr, e.len);
    b.pushBigNoMerge(e.addr, e.len, e.flags);
  });
  return { list: b.build(), sgt: sgt.value };
}

/**
 * dma_buf_phys_vec_to_sgt(): maps an exporter's physical ranges (all in one provider's BAR) for the
 * attachment's device. BUS_ADDR: the bus addresses, nothing mapped; THRU_HOST_BRIDGE: one IOVA
 * window linked range by range with DMA_ATTR_MMIO when dma_iova_try_alloc() gives one, else
 * dma_map_phys(DMA_ATTR_MMIO) per range; any other map type (NOT_SUPPORTED, NONE): EINVAL. Holds the
 * reservation lock (dma_resv_assert_held: a WARN otherwise). WARN and EINVAL without a provider.
 * Errors: EINVAL; ENOMEM from the DMA layer (nothing stays mapped).
 */
export function dmaBufPhysVecToSgt(att: DmaBufAttachment, provider: P2pdmaProvider | null, phys: PhyrList, dir: DmaDataDirection): Result<DmaBufDma> {
  if (!(phys instanceof PhyrList)) throw new TypeError(`phys must be a PhyrList, got ${String(phys)}`);
  const buf = att.dmabuf, dev = att.dev;
  buf.resv.assertHeld('dma_buf_phys_vec_to_sgt');
  if (provider === null) {
    buf.events.warn('dma-buf', 'dma_buf_phys_vec_to_sgt: WARN_ON(!provider): the helper is for MMIO of a P2P provider only');
    return err('EINVAL', 'no p2pdma provider');
  }
  const size = phys.totalLen;
  const mapType = pciP2pdmaMapType(provider, dev);
  let state: DmaIovaState | null = null;
  if (mapType === PCI_P2PDMA_MAP_THRU_HOST_BRIDGE) {
    state = new DmaIovaState();
    dmaIovaTryAlloc(dev, state, 0n, size);
  } else if (mapType !== PCI_P2PDMA_MAP_BUS_ADDR) {
    return err('EINVAL', `P2P from ${provider.owner.name} BAR ${provider.bar} to ${dev.name} is ${PCI_P2PDMA_MAP_NAMES[mapType]}`);
  }
  const entries: Array<{ addr: bigint; len: number; flags: number }> = [];
  let mappedLen = 0;
  for (let i = 0; i < phys.count; i++) {
    const paddr = phys.addrAt(i), len = phys.lenAt(i), flags = phys.flagsAt(i);
    if (state === null) {
      entries.push({ addr: pciP2pdmaBusAddrMap(provider, paddr), len, flags });
    } else if (dmaUseIova(state)) {
      // Model deviation: dma_buf_phys_vec_to_sgt() passes offset 0 to every dma_iova_link(), so a
      // second range would be linked over the first; the model links range i at the bytes mapped
      // before it, which is what the single sg entry for the whole window then describes.
      const r = dmaIovaLink(dev, state, paddr, mappedLen, len, dir, DMA_ATTR_MMIO);
      if (!r.ok) {
        // As Linux 7.1.5's err_unmap_dma: nothing is undone when the first link fails (i == 0), and
        // err_free_state frees the state without dma_iova_free(): the IOVA window leaks (a kernel
        // bug the model keeps; test/fault-injection.property.test.ts names it).
        if (mappedLen > 0) dmaIovaDestroy(dev, state, mappedLen, dir, DMA_ATTR_MMIO);
        return r;
      }
      mappedLen += len;
    } else {
      const r = dmaMapPhys(dev, paddr, len, dir, DMA_ATTR_MMIO);
      if (!r.ok) {
        for (const e of entries) dmaUnmapPhys(dev, e.addr, e.len, dir, DMA_ATTR_MMIO);
        return r;
      }
      entries.push({ addr: r.value, len, flags });
    }
  }
  if (state !== null && dmaUseIova(state)) {
    if (mappedLen !== size) buf.events.warn('dma-buf', `dma_buf_phys_vec_to_sgt: WARN_ON_ONCE(mapped_len ${mappedLen} != size ${size})`);
    const r = dmaIovaSync(dev, state, 0, mappedLen);
    if (!r.ok) {
      dmaIovaDestroy(dev, state, mappedLen, dir, DMA_ATTR_MMIO);
      return r;
    }
    entries.push({ addr: state.addr, len: mappedLen, flags: phys.count > 0 ? phys.flagsAt(0) : 0 });
  }
  const how: DmaBufDmaHow = state === null ? 'bus-addr' : dmaUseIova(state) ? 'iova' : 'map-phys';
  return ok(new DmaBufDma({ ...buildTables(entries, dmaContextOf(dev).mm.pageSize), how, size, mapType, state }));
}

/**
 * The DMA-list form: the exporter's ranges (RAM, or a BAR) through dmaMapPhyrs, which classifies
 * each range for the device (P2P bus address, host bridge with DMA_ATTR_MMIO, RAM) and returns a DMA
 * list without a scatterlist. Errors: EREMOTEIO (P2P between the memory and the device not
 * supported), EINVAL (a range in a hole of the memory map, an empty list), ENOMEM.
 */
export function dmaBufMapPhyrs(att: DmaBufAttachment, phys: PhyrList, dir: DmaDataDirection): Result<DmaBufDma> {
  if (!(phys instanceof PhyrList)) throw new TypeError(`phys must be a PhyrList, got ${String(phys)}`);
  att.dmabuf.resv.assertHeld('dma_buf map (phyrs)');
  const r = dmaMapPhyrs(att.dev, phys, dir, 0);
  if (!r.ok) return r;
  const list = r.value.list;
  const entries = [];
  for (let i = 0; i < list.count; i++) entries.push({ addr: list.addrAt(i), len: list.lenAt(i), flags: list.flagsAt(i) });
  const { sgt } = buildTables(entries, dmaContextOf(att.dev).mm.pageSize);
  return ok(new DmaBufDma({ list, sgt, how: 'phyrs', size: phys.totalLen, mapType: null, phyrs: r.value }));
}

/**
 * A heap exporter's map_dma_buf: the buffer's pages (a PhyrList of RAM, page-aligned) in an sg_table
 * mapped with dma_map_sgtable(). Errors: ENOMEM (the sg_table), and those of dma_map_sgtable
 * (ENOMEM, EINVAL, EIO), or `opts.mapErrno` instead for an exporter that returns its own errno when
 * dma_map_sgtable fails (amdgpu_dma_buf_map: -EBUSY). The unmap (dmaBufFreeSgt) passes the map's
 * attrs again, as the system heap does since 7.2, or `opts.unmapAttrs` for an exporter that
 * unmaps with others (amdgpu_dma_buf_unmap: 0 after a map with DMA_ATTR_SKIP_CPU_SYNC).
 */
export function dmaBufMapPages(att: DmaBufAttachment, pages: PhyrList, dir: DmaDataDirection, attrs = 0,
  opts: { readonly mapErrno?: Errno; readonly unmapAttrs?: number } = {}): Result<DmaBufDma> {
  const mapErrno = opts.mapErrno;
  if (!(pages instanceof PhyrList)) throw new TypeError(`pages must be a PhyrList, got ${String(pages)}`);
  att.dmabuf.resv.assertHeld('dma_buf map (pages)');
  const mm = dmaContextOf(att.dev).mm;
  const ps = mm.pageSize;
  const t = sgAllocTable(Math.max(1, pages.count), { pageSize: ps, faults: mm });
  if (!t.ok) return t;
  const sgt = t.value;
  for (let i = 0; i < pages.count; i++) {
    const a = pages.addrAt(i);
    sgt.setPage(i, a / BigInt(ps), pages.lenAt(i), Number(a % BigInt(ps)));
    sgt.setFlags(i, pages.flagsAt(i));
  }
  const r = dmaMapSgtable(att.dev, sgt, dir, attrs);
  if (!r.ok) return mapErrno === undefined ? r : err(mapErrno, `dma_map_sgtable failed (${r.errno}${r.message === undefined ? '' : `: ${r.message}`})`);
  const b = DmaList.builder(sgt.nents);
  for (let i = 0; i < sgt.nents; i++) b.pushBigNoMerge(sgt.dmaAddressAt(i), sgt.dmaLengthAt(i), 0);
  return ok(new DmaBufDma({ list: b.build(), sgt, how: 'sgtable', size: pages.totalLen, mapType: null, pageSgt: sgt, attrs: opts.unmapAttrs ?? attrs }));
}

/**
 * dma_buf_free_sgt(): undoes any of the helpers above (an exporter's unmap_dma_buf). Holds the
 * reservation lock (WARN otherwise). A second free is a MODEL-CHECK and does nothing.
 */
export function dmaBufFreeSgt(att: DmaBufAttachment, dma: DmaBufDma, dir: DmaDataDirection): void {
  if (!(dma instanceof DmaBufDma)) throw new TypeError(`dma must be a DmaBufDma, got ${String(dma)}`);
  const dev = att.dev;
  att.dmabuf.resv.assertHeld('dma_buf_free_sgt');
  if (!dma.mapped) {
    att.dmabuf.events.record('MODEL-CHECK', 'model-check', `dma_buf_free_sgt of a mapping freed already (${att})`, { dev: dev.name });
    return;
  }
  dma.markFreed();
  switch (dma.how) {
    case 'bus-addr':
      return;
    case 'iova':
      dmaIovaDestroy(dev, dma.state!, dma.size, dir, DMA_ATTR_MMIO);
      return;
    case 'map-phys':
      for (let i = 0; i < dma.list.count; i++) dmaUnmapPhys(dev, dma.list.addrAt(i), dma.list.lenAt(i), dir, DMA_ATTR_MMIO);
      return;
    case 'phyrs':
      dmaUnmapPhyrs(dev, dma.phyrs!, dir, 0);
      return;
    case 'sgtable':
      dmaUnmapSgtable(dev, dma.pageSgt!, dir, dma.attrs);
  }
}
