// Models: mm/hmm.c hmm_dma_map_alloc / hmm_dma_map_free / hmm_dma_map_pfn / hmm_dma_unmap_pfn and
// include/linux/hmm-dma.h (Linux 6.16+, as in 7.1): DMA-mapping helpers for the pfns hmm_range_fault
// returns, one entry of dma_entry_size bytes per index. When the device is behind a DMA-translating
// IOMMU, hmm_dma_map_alloc reserves one IOVA window for every entry at once (dma_iova_try_alloc) and
// each hmm_dma_map_pfn links one entry at its fixed offset in it (dma_iova_link + dma_iova_sync), so
// an entry's DMA address never changes across invalidations and re-faults; without one, each entry is
// mapped by dma_map_phys and its address kept in dma_list when it must be unmapped
// (dma_need_unmap). P2P pages go through pci_p2pdma_state: by bus address (nothing to unmap), or
// through the host bridge as MMIO (DMA_ATTR_MMIO), or refused. Every map asks for
// DMA_ATTR_REQUIRE_COHERENT, and a device that would need syncs or bouncing is refused at alloc time
// (EOPNOTSUPP): HMM cannot hand buffer ownership back and forth.
//
// Layering: the kernel keeps these in mm/hmm.c beside hmm_range_fault, but they call the DMA API, and
// phyr's mm/ sits below dma/: they live here, in drivers/hmm, a driver-level unit that builds on
// mm/'s hmmRangeFault and dma/'s driver API.
//
// Model deviation: the map keeps the pfn and its HMM flags in two columns (pfnList, flagList), as
// mm/hmm.ts's HmmRange does (the kernel packs them in one unsigned long); dma_list is a bigint array.

import { checkLen, err, faultInjected, ok, type Result } from '../../base/index.ts';
import {
  DMA_ATTR_MMIO, DMA_ATTR_REQUIRE_COHERENT, DMA_BIDIRECTIONAL, DmaIovaState, dmaAddressingLimited, dmaContextOf, dmaIovaFree,
  dmaIovaLink, dmaIovaSync, dmaIovaTryAlloc, dmaIovaUnlink, dmaMapPhys, dmaNeedUnmap, dmaUnmapPhys, dmaUseIova,
} from '../../dma/index.ts';
import { HMM_PFN_DMA_MAPPED, HMM_PFN_P2PDMA, HMM_PFN_P2PDMA_BUS, HMM_PFN_VALID } from '../../mm/index.ts';
import {
  PCI_P2PDMA_MAP_BUS_ADDR, PCI_P2PDMA_MAP_NONE, PCI_P2PDMA_MAP_THRU_HOST_BRIDGE, pciP2pdmaBusAddrMap, pciP2pdmaState,
  type Device, type PciP2pdmaMapState,
} from '../../pci/index.ts';
import './counters.ts';

/** struct hmm_dma_map: the IOVA state, the pfn list (pfn + HMM flags per entry) and, without an IOVA window, the DMA addresses. */
export class HmmDmaMap {
  /** The IOVA window (dma_use_iova(state) when the device is behind a translating IOMMU). */
  readonly state: DmaIovaState;
  /** The pfn of each entry (what hmm_range_fault wrote; a view of it is the range's hmmPfns). */
  readonly pfnList: Float64Array;
  /** The HMM flags of each entry (HMM_PFN_VALID, _WRITE, _DMA_MAPPED, _P2PDMA, _P2PDMA_BUS; mm/hmm.ts's encoding). */
  readonly flagList: Uint16Array;
  /** Each entry's DMA address, kept only when there is no IOVA window and unmaps are needed (dma_need_unmap). */
  readonly dmaList: bigint[] | null;
  freed = false;

  /** @internal made by hmmDmaMapAlloc. */
  constructor(readonly dev: Device, readonly nrEntries: number, readonly dmaEntrySize: number, state: DmaIovaState, dmaList: boolean) {
    this.state = state;
    this.pfnList = new Float64Array(nrEntries);
    this.flagList = new Uint16Array(nrEntries);
    this.dmaList = dmaList ? new Array<bigint>(nrEntries).fill(0n) : null;
  }

  /** Entries mapped now (HMM_PFN_DMA_MAPPED set). */
  get mapped(): number {
    let n = 0;
    for (let i = 0; i < this.nrEntries; i++) if (this.flagList[i] & HMM_PFN_DMA_MAPPED) n++;
    return n;
  }
}

function checkMap(dev: Device, map: unknown): HmmDmaMap {
  if (!(map instanceof HmmDmaMap)) throw new TypeError(`map must be an HmmDmaMap, got ${String(map)}`);
  if (map.dev !== dev) throw new RangeError(`map belongs to ${map.dev.name}, not ${dev.name}`);
  if (map.freed) throw new RangeError('map was freed (hmmDmaMapFree)');
  return map;
}

function checkIdx(map: HmmDmaMap, idx: number): number {
  return checkLen('idx', idx, 0, map.nrEntries - 1);
}

/**
 * hmm_dma_map_alloc(): a map of nrEntries entries of dmaEntrySize bytes (a power of two, at least a
 * page). With an IOMMU it reserves the whole IOVA window (nrEntries * PAGE_SIZE bytes, as the kernel
 * sizes it) now. Errors: EOPNOTSUPP when the device needs DMA syncs (not coherent) or is
 * addressing-limited (swiotlb could bounce): HMM cannot transfer buffer ownership.
 */
export function hmmDmaMapAlloc(dev: Device, nrEntries: number, dmaEntrySize: number): Result<HmmDmaMap> {
  checkLen('nrEntries', nrEntries, 1);
  checkLen('dmaEntrySize', dmaEntrySize, 1);
  const mm = dmaContextOf(dev).mm, ps = mm.pageSize;
  if (Math.floor(nrEntries * ps / dmaEntrySize) === 0) mm.events.warn('hmm', `${dev.name}: hmm_dma_map_alloc: ${nrEntries} pages hold no ${dmaEntrySize}-byte entry`);
  if (!dev.dmaSkipSync || dmaAddressingLimited(dev)) {
    return err('EOPNOTSUPP', `${dev.name} needs DMA syncs or bounce buffering (${!dev.dmaSkipSync ? 'not coherent' : 'addressing limited'})`);
  }
  // the pfn_list kvcalloc, then (no IOVA window, unmaps needed) the dma_list one: either failing is
  // ENOMEM with nothing kept (the IOVA try failed already when dma_list is wanted)
  if (faultInjected(mm, 'dma-list', `${dev.name}: hmm pfn_list of ${nrEntries}`)) return err('ENOMEM', 'no memory for the pfn_list');
  const state = new DmaIovaState();
  const useIova = dmaIovaTryAlloc(dev, state, 0n, nrEntries * ps);
  const wantList = !useIova && dmaNeedUnmap(dev);
  if (wantList && faultInjected(mm, 'dma-list', `${dev.name}: hmm dma_list of ${nrEntries}`)) return err('ENOMEM', 'no memory for the dma_list');
  return ok(new HmmDmaMap(dev, nrEntries, dmaEntrySize, state, wantList));
}

/** hmm_dma_map_free(): gives the IOVA window back. Entries must be unmapped first (hmmDmaUnmapPfn). */
export function hmmDmaMapFree(dev: Device, map: HmmDmaMap): void {
  checkMap(dev, map);
  if (dmaUseIova(map.state)) dmaIovaFree(dev, map.state);
  map.freed = true;
}

/**
 * hmm_dma_map_pfn(): maps entry idx (pfnList[idx], which hmm_range_fault made valid) for DMA and
 * returns its DMA address. An entry mapped already (HMM_PFN_DMA_MAPPED) returns its address without
 * mapping again (the flags resync case). p2pdmaState is the caller's pci_p2pdma_map_state, kept across
 * the calls of one fault. An error stands for DMA_MAPPING_ERROR: EREMOTEIO for a P2P page the device
 * cannot reach, else the DMA layer's errno (EOPNOTSUPP / ENOMEM / ...); nothing stays mapped.
 */
export function hmmDmaMapPfn(dev: Device, map: HmmDmaMap, idx: number, p2pdmaState: PciP2pdmaMapState): Result<bigint> {
  checkMap(dev, map);
  checkIdx(map, idx);
  const flags = map.flagList;
  const f = flags[idx];
  if (!(f & HMM_PFN_VALID)) throw new RangeError(`entry ${idx} is not HMM_PFN_VALID`);
  const state = map.state, size = map.dmaEntrySize, offset = idx * size;
  const useIova = dmaUseIova(state);
  if ((f & HMM_PFN_DMA_MAPPED) && !(f & HMM_PFN_P2PDMA_BUS)) {
    if (useIova) return ok(state.addr + BigInt(offset));
    if (map.dmaList !== null) return ok(map.dmaList[idx]);
    // stateless direct mapping: map again below
  }
  const ctx = dmaContextOf(dev);
  const pfn = map.pfnList[idx], paddr = BigInt(pfn) * BigInt(ctx.mm.pageSize);
  const facts = ctx.mm.pfnFacts(BigInt(pfn));
  let attrs = DMA_ATTR_REQUIRE_COHERENT;
  const p2p = pciP2pdmaState(p2pdmaState, dev, facts === undefined ? 0 : facts.rangeFlags);
  if (p2p === PCI_P2PDMA_MAP_THRU_HOST_BRIDGE) {
    attrs |= DMA_ATTR_MMIO;
    flags[idx] |= HMM_PFN_P2PDMA;
  } else if (p2p === PCI_P2PDMA_MAP_BUS_ADDR) {
    flags[idx] |= HMM_PFN_P2PDMA_BUS | HMM_PFN_DMA_MAPPED;
    ctx.mm.stats.hmmDmaMapPfns++;
    return ok(pciP2pdmaBusAddrMap(p2pdmaState.mem!, paddr));
  } else if (p2p !== PCI_P2PDMA_MAP_NONE) {
    return err('EREMOTEIO', `${dev.name} cannot reach the P2P page at pfn ${pfn}`);
  }
  let dma: bigint;
  if (useIova) {
    const l = dmaIovaLink(dev, state, paddr, offset, size, DMA_BIDIRECTIONAL, attrs);
    if (!l.ok) { flags[idx] &= ~HMM_PFN_P2PDMA; return l; }
    const s = dmaIovaSync(dev, state, offset, size);
    if (!s.ok) {
      dmaIovaUnlink(dev, state, offset, size, DMA_BIDIRECTIONAL, attrs);
      flags[idx] &= ~HMM_PFN_P2PDMA;
      return s;
    }
    dma = state.addr + BigInt(offset);
  } else {
    if (dmaNeedUnmap(dev) && map.dmaList === null) {
      ctx.mm.events.warn('hmm', `${dev.name}: hmm_dma_map_pfn needs dma_list to unmap, and the map has none`);
      flags[idx] &= ~HMM_PFN_P2PDMA;
      return err('ENOMEM', 'no dma_list');
    }
    const r = dmaMapPhys(dev, paddr, size, DMA_BIDIRECTIONAL, attrs);
    if (!r.ok) { flags[idx] &= ~HMM_PFN_P2PDMA; return r; }
    dma = r.value;
    if (map.dmaList !== null) map.dmaList[idx] = dma;
  }
  flags[idx] |= HMM_PFN_DMA_MAPPED;
  ctx.mm.stats.hmmDmaMapPfns++;
  return ok(dma);
}

/**
 * hmm_dma_unmap_pfn(): undoes hmmDmaMapPfn for entry idx (IOVA unlink, dma_unmap_phys, or nothing
 * for a P2P bus address) and clears its DMA flags. Returns false when the entry was not a valid
 * mapped one (nothing done).
 */
export function hmmDmaUnmapPfn(dev: Device, map: HmmDmaMap, idx: number): boolean {
  checkMap(dev, map);
  checkIdx(map, idx);
  const flags = map.flagList, f = flags[idx];
  if ((f & (HMM_PFN_VALID | HMM_PFN_DMA_MAPPED)) !== (HMM_PFN_VALID | HMM_PFN_DMA_MAPPED)) return false;
  const attrs = DMA_ATTR_REQUIRE_COHERENT | (f & HMM_PFN_P2PDMA ? DMA_ATTR_MMIO : 0);
  const size = map.dmaEntrySize;
  if (f & HMM_PFN_P2PDMA_BUS) {
    // a bus address: nothing was mapped
  } else if (dmaUseIova(map.state)) {
    dmaIovaUnlink(dev, map.state, idx * size, size, DMA_BIDIRECTIONAL, attrs);
  } else if (dmaNeedUnmap(dev)) {
    dmaUnmapPhys(dev, map.dmaList![idx], size, DMA_BIDIRECTIONAL, attrs);
  }
  flags[idx] &= ~(HMM_PFN_DMA_MAPPED | HMM_PFN_P2PDMA | HMM_PFN_P2PDMA_BUS);
  dmaContextOf(dev).mm.stats.hmmDmaUnmapPfns++;
  return true;
}
