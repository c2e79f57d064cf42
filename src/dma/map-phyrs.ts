// Models: the entry point the phyr seeds asked for and Linux lacks (reference 1.1-1.3: "a phyr in,
// a DMA range list out"): dmaMapPhyrs / dmaUnmapPhyrs. It composes what Linux does piecemeal in
// block/blk-mq-dma.c (blk_dma_map_iter_start: P2P classification, blk_can_dma_map_iova, IOVA
// coalescing with per-segment fallback; reference 4.4) and mm/hmm.c, over any range source walked
// through the cursor protocol.

import { checkLen, err, ok, type Result } from '../base/index.ts';
import { iommuGetDmaDomain } from '../iommu/index.ts';
import type { Device } from '../pci/index.ts';
import {
  PCI_P2PDMA_MAP_BUS_ADDR, PCI_P2PDMA_MAP_NOT_SUPPORTED, PCI_P2PDMA_MAP_THRU_HOST_BRIDGE, PciP2pdmaMapState,
  pciP2pdmaBusAddrMap, pciP2pdmaState,
} from '../pci/index.ts';
import { DmaList, DmaListBuilder, PhyrList, RANGE_MMIO, rangeProvider, type RangeSource } from '../phyr/index.ts';
import { DMA_ATTR_MMIO, DMA_BIDIRECTIONAL, checkAttrs, validDmaDirection, type DmaDataDirection } from './constants.ts';
import { dmaContextOf } from './context.ts';
import { dmaCapable, memTypeLookup } from './direct.ts';
import { devUseSwiotlb, iovaOffset } from './iommu-dma.ts';
import { isSwiotlbActive, isSwiotlbForceBounce } from './swiotlb.ts';
import { dmaMapPhys, dmaUnmapPhys } from './mapping.ts';
import { DmaIovaState, dmaIovaDestroy, dmaIovaSync, dmaIovaTryAlloc, iovaLink } from './iova-state.ts';

/** How each input range is mapped. */
const K_RAM = 0; // normal memory
const K_MMIO = 1; // I/O memory, P2P through the host bridge: mapped with DMA_ATTR_MMIO
const K_BUS = 2; // P2P through a switch: the PCI bus address, nothing mapped

/** What dmaMapPhyrs did, so that dmaUnmapPhyrs undoes exactly that. */
interface PhyrsMapping {
  readonly dev: Device;
  readonly dir: DmaDataDirection;
  readonly attrs: number;
  /** 'iova': one window of the two-step API; 'ranges': one dmaMapPhys per non-bus range. */
  readonly how: 'iova' | 'ranges';
  readonly state: DmaIovaState | null;
  readonly mappedLen: number;
  /** 'ranges': DMA address, length and kind of each input range. */
  readonly addrs: BigUint64Array | null;
  readonly lens: Float64Array | null;
  readonly kinds: Uint8Array | null;
  unmapped: boolean;
}

const mappings = new WeakMap<DmaList, PhyrsMapping>();

/** How dmaMapPhyrs mapped a list: 'iova' (one two-step window), 'ranges' (per range), or null if unknown. */
export function dmaPhyrsMappingKind(dl: DmaList): 'iova' | 'ranges' | null {
  return mappings.get(dl)?.how ?? null;
}

/** Input ranges in columns, with their classification. */
interface Classified {
  n: number;
  /** Start addresses as numbers: exact, with exact ends, when addrBig is null. */
  addrNum: Float64Array;
  /** Start addresses as bigints, only for sources with addresses (or ends) beyond 2^53 - 1. */
  addrBig: bigint[] | null;
  len: Float64Array;
  kind: Uint8Array;
  /** Range flags of the memory behind each range (from the memory map). */
  flags: Uint32Array;
  /** Whether every range's own flags equal its memory's (the input can then be shared as is). */
  callerFlagsMatch: boolean;
  bus: Map<number, bigint>;
  ioLen: number;
}

const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/** Reusable columns of classify (dmaMapPhyrs never runs re-entrantly: nothing it calls maps a list). */
const scratch = {
  addrNum: new Float64Array(256), len: new Float64Array(256), kind: new Uint8Array(256), flags: new Uint32Array(256),
};

/** Start address of input range i, exact. */
function addrAt(cl: Classified, i: number): bigint {
  return cl.addrBig !== null ? cl.addrBig[i] : BigInt(cl.addrNum[i]);
}

/**
 * Walks the source once: address, length, memory flags and kind of each range. Addresses stay
 * numbers when the source says they fit (and every range also ends below 2^53); otherwise the walk
 * is redone keeping exact bigints.
 * The memory type and P2P provider of a range come from the region of the memory map that holds it
 * (page -> pgmap -> provider in the kernel; reference 4.4, 5.2), one lookup per range with the last
 * region tried first. The flags the caller put on a range are ignored: a range without flags on a
 * P2P BAR is P2P all the same (they only decide whether the input can be shared as the result).
 * Errors: EINVAL (a range in a hole, or crossing from one region into another), EREMOTEIO.
 */
function classify(dev: Device, list: RangeSource, big = !list.addrFitsNumber): Result<Classified> {
  const n0 = Math.max(1, list.count);
  const addrBig: bigint[] | null = big ? [] : null;
  // the columns are scratch space, reused by the next call (mapRanges copies what it keeps)
  if (scratch.len.length < n0) {
    scratch.addrNum = new Float64Array(n0);
    scratch.len = new Float64Array(n0);
    scratch.kind = new Uint8Array(n0);
    scratch.flags = new Uint32Array(n0);
  }
  let addrNum = scratch.addrNum;
  let len = scratch.len;
  let kind = scratch.kind;
  let flagsCol = scratch.flags;
  const bus = new Map<number, bigint>();
  const p2p = new PciP2pdmaMapState();
  const look = memTypeLookup(dmaContextOf(dev).mm);
  let callerFlagsMatch = true;
  let n = 0;
  let ioLen = 0;
  const c = list.cursor();
  while (!c.done) {
    if (n === len.length) {
      const a2 = new Float64Array(n * 2); a2.set(addrNum); addrNum = scratch.addrNum = a2;
      const l2 = new Float64Array(n * 2); l2.set(len); len = scratch.len = l2;
      const k2 = new Uint8Array(n * 2); k2.set(kind); kind = scratch.kind = k2;
      const f2 = new Uint32Array(n * 2); f2.set(flagsCol); flagsCol = scratch.flags = f2;
    }
    const l = c.len;
    let a = 0;
    let ri: number;
    if (addrBig !== null) {
      addrBig[n] = c.addr;
      ri = look.indexBig(addrBig[n], l);
    } else {
      a = c.addrNum;
      if (a + l > MAX_SAFE) return classify(dev, list, true);
      ri = look.index(a, l);
    }
    if (ri < 0) return look.error(ri, `range ${n}`, addrBig !== null ? addrBig[n] : BigInt(a), l);
    const flags = look.flagsOf(ri);
    if (c.flags !== flags) callerFlagsMatch = false;
    let k = (flags & RANGE_MMIO) ? K_MMIO : K_RAM;
    if (rangeProvider(flags) !== 0) {
      const ab = addrBig !== null ? addrBig[n] : BigInt(a);
      const t = pciP2pdmaState(p2p, dev, flags);
      if (t === PCI_P2PDMA_MAP_NOT_SUPPORTED) {
        return err('EREMOTEIO', `range ${n} (0x${ab.toString(16)}): P2P between its provider and ${dev.name} is not supported`);
      }
      if (t === PCI_P2PDMA_MAP_BUS_ADDR) {
        k = K_BUS;
        bus.set(n, pciP2pdmaBusAddrMap(p2p.mem!, ab));
      } else if (t === PCI_P2PDMA_MAP_THRU_HOST_BRIDGE) {
        k = K_MMIO;
      }
    }
    addrNum[n] = a;
    len[n] = l;
    kind[n] = k;
    flagsCol[n] = flags;
    if (k !== K_BUS) ioLen += l;
    n++;
    c.next();
  }
  return ok({ n, addrNum, addrBig, len, kind, flags: flagsCol, callerFlagsMatch, bus, ioLen });
}

/** blk_can_dma_map_iova() for a whole list: every interior seam between mapped ranges is granule-aligned. */
function seamsAligned(cl: Classified, granule: number): boolean {
  if (cl.addrBig !== null) {
    const gm = BigInt(granule - 1);
    let prevEnd = -1n;
    for (let i = 0; i < cl.n; i++) {
      if (cl.kind[i] === K_BUS) continue;
      const a = cl.addrBig[i];
      if (prevEnd >= 0n && ((prevEnd | a) & gm) !== 0n) return false;
      prevEnd = a + BigInt(cl.len[i]);
    }
    return true;
  }
  // numbers (exact: every end is below 2^53); x - floor(x / g) * g is x % g without an fmod call
  const g = granule;
  let prevEnd = -1;
  for (let i = 0; i < cl.n; i++) {
    if (cl.kind[i] === K_BUS) continue;
    const a = cl.addrNum[i];
    if (prevEnd >= 0 && (prevEnd - Math.floor(prevEnd / g) * g !== 0 || a - Math.floor(a / g) * g !== 0)) return false;
    prevEnd = a + cl.len[i];
  }
  return true;
}

/**
 * Maps every range of `list` (any range source) for DMA by dev and returns the DMA range list.
 * Each range is classified from the memory it lies in (the machine's memory map: RAM; MMIO; P2P by
 * bus address; P2P through the host bridge, mapped as MMIO; unsupported P2P), never from the
 * range's own flags, which are ignored; the DMA list's entries carry the memory's flags. Behind a
 * dma-iommu domain the ranges go into ONE contiguous IOVA window through the two-step API when every
 * interior seam is granule-aligned (one DMA entry, plus an entry per bus-address range); otherwise
 * each range is mapped with dmaMapPhys. When dma-direct maps every range to its own physical address
 * (and the input's flags are the memory's), the result shares the input PhyrList's storage (zero copy).
 * Errnos: EINVAL (empty list; a range in a hole of the memory map or crossing from one memory
 * region into another, named in the message), EREMOTEIO (P2P not supported between a provider and
 * dev), and what the mapping reports: ENOMEM (IOVA/swiotlb exhausted, address beyond the mask without swiotlb),
 * EPERM (an MMIO range that would need bouncing: swiotlb forced, beyond the mask with a swiotlb
 * pool, unaligned for a bouncing device; dmaMapPhys itself says ENOMEM there, as the kernel's
 * DMA_MAPPING_ERROR), EIO. On failure nothing stays mapped.
 */
export function dmaMapPhyrs(dev: Device, list: RangeSource, dir: DmaDataDirection, attrs: number): Result<DmaList> {
  if (list === null || typeof list !== 'object' || typeof (list as RangeSource).cursor !== 'function') {
    throw new TypeError(`list must be a range source (RangeSource), got ${String(list)}`);
  }
  checkAttrs(attrs);
  const ctx = dmaContextOf(dev);
  if (!validDmaDirection(dir)) ctx.mm.events.bug('dma-mapping', `dmaMapPhyrs: invalid DMA direction ${String(dir)}`, { dev: dev.name, dir });
  if (list.totalLen === 0) return err('EINVAL', 'list is empty');
  const c = classify(dev, list);
  if (!c.ok) return c;
  const cl = c.value;

  if (dev.dmaIommu && cl.ioLen > 0) {
    const r = mapIova(dev, cl, dir, attrs);
    if (r !== null) return r;
  }
  return mapRanges(dev, list, cl, dir, attrs);
}

/** The two-step path; null when it does not apply (seams, no window): the caller falls back. */
function mapIova(dev: Device, cl: Classified, dir: DmaDataDirection, attrs: number): Result<DmaList> | null {
  const domain = iommuGetDmaDomain(dev);
  if (!domain || !seamsAligned(cl, domain.granule)) return null;
  const state = new DmaIovaState();
  let first = -1;
  for (let i = 0; i < cl.n; i++) if (cl.kind[i] !== K_BUS) { first = i; break; }
  if (!dmaIovaTryAlloc(dev, state, addrAt(cl, first), cl.ioLen)) return null;
  const b = new DmaListBuilder(1 + cl.bus.size);
  // The DMA entries: the builder merges DMA-contiguous pushes with equal flags, so a run of links
  // with equal flags is pushed once, as the merged entry it would become.
  let runStart = 0, runLen = 0, runFlags = 0;
  const pushRun = (): void => {
    if (runLen === 0) return;
    if (state.addrNum >= 0) b.push(state.addrNum + runStart, runLen, runFlags);
    else b.pushBig(state.addr + BigInt(runStart), runLen, runFlags);
    runLen = 0;
  };
  const addrBig = cl.addrBig, addrNum = cl.addrNum, lens = cl.len, kinds = cl.kind, flags = cl.flags;
  const n = cl.n;
  const attrsMmio = attrs | DMA_ATTR_MMIO;
  let offset = 0;
  for (let i = 0; i < n; i++) {
    const len = lens[i];
    const k = kinds[i];
    if (k === K_BUS) {
      pushRun();
      b.pushBig(cl.bus.get(i)!, len, flags[i]);
      continue;
    }
    // arguments validated here (attrs, dir) or by the range source (addresses, lengths)
    const r = addrBig !== null
      ? iovaLink(dev, state, addrBig[i], -1, offset, len, dir, k === K_MMIO ? attrsMmio : attrs)
      : iovaLink(dev, state, null, addrNum[i], offset, len, dir, k === K_MMIO ? attrsMmio : attrs);
    if (!r.ok) {
      dmaIovaDestroy(dev, state, offset, dir, attrs);
      return r;
    }
    const f = flags[i];
    if (runLen !== 0 && f !== runFlags) pushRun();
    if (runLen === 0) { runStart = offset; runFlags = f; }
    runLen += len;
    offset += len;
  }
  pushRun();
  const s = dmaIovaSync(dev, state, 0, offset);
  if (!s.ok) {
    dmaIovaDestroy(dev, state, offset, dir, attrs);
    return s;
  }
  const dl = b.build();
  mappings.set(dl, {
    dev, dir, attrs, how: 'iova', state, mappedLen: offset, addrs: null, lens: null, kinds: null, unmapped: false,
  });
  return ok(dl);
}

/** The per-range path: dmaMapPhys for each RAM/MMIO range, the bus address for each BUS_ADDR range. */
function mapRanges(dev: Device, list: RangeSource, cl: Classified, dir: DmaDataDirection, attrs: number): Result<DmaList> {
  const addrs = new BigUint64Array(cl.n);
  let identity = list instanceof PhyrList && !dev.dmaIommu && cl.callerFlagsMatch;
  for (let i = 0; i < cl.n; i++) {
    const k = cl.kind[i];
    if (k === K_BUS) {
      addrs[i] = cl.bus.get(i)!;
      identity = false;
      continue;
    }
    const a = addrAt(cl, i);
    const r = dmaMapPhys(dev, a, cl.len[i], dir, k === K_MMIO ? attrs | DMA_ATTR_MMIO : attrs);
    if (!r.ok) {
      for (let j = i - 1; j >= 0; j--) {
        if (cl.kind[j] !== K_BUS) dmaUnmapPhys(dev, addrs[j], cl.len[j], dir, cl.kind[j] === K_MMIO ? attrs | DMA_ATTR_MMIO : attrs);
      }
      // dma_map_phys only says DMA_MAPPING_ERROR; say EPERM, as dma_iova_link does (reference 2.3),
      // when the range is MMIO and it failed because it would need a bounce buffer
      if (k === K_MMIO && mmioNeedsBounce(dev, a, cl.len[i])) {
        return err('EPERM', `range ${i} (0x${a.toString(16)}+${cl.len[i]}) is MMIO and would need bouncing for ${dev.name}`);
      }
      return r;
    }
    addrs[i] = r.value;
    if (r.value !== a) identity = false;
  }
  let dl: DmaList;
  if (identity) {
    dl = DmaList.sharing(list as PhyrList);
  } else {
    const b = new DmaListBuilder(cl.n);
    for (let i = 0; i < cl.n; i++) b.pushBig(addrs[i], cl.len[i], cl.flags[i]);
    dl = b.build();
  }
  mappings.set(dl, {
    dev, dir, attrs, how: 'ranges', state: null, mappedLen: cl.ioLen, addrs, lens: cl.len.slice(0, cl.n),
    kinds: cl.kind.slice(0, cl.n), unmapped: false,
  });
  return ok(dl);
}

/**
 * Whether mapping MMIO [phys, phys + len) for dev would take a bounce buffer, which MMIO cannot
 * use: dma-direct with swiotlb forced (CoCo), or beyond the DMA limit with a swiotlb pool
 * (reference 3.4); dma-iommu for a device that bounces (untrusted) a granule-unaligned range (3.5).
 */
function mmioNeedsBounce(dev: Device, phys: bigint, len: number): boolean {
  if (!dev.dmaIommu) {
    return isSwiotlbForceBounce(dev) || (isSwiotlbActive(dev) && !dmaCapable(dev, phys, len, false));
  }
  const domain = iommuGetDmaDomain(dev);
  if (!domain || !devUseSwiotlb(dev, len, DMA_BIDIRECTIONAL)) return false;
  return iovaOffset(domain, phys) !== 0 || len % domain.granule !== 0;
}

/**
 * Undoes dmaMapPhyrs exactly: destroys the IOVA window, or unmaps each range mapped with dmaMapPhys
 * (bus-address ranges need nothing). Unmapping a list twice, a list dmaMapPhyrs did not return, or
 * with another device or direction is reported (MODEL-CHECK: dmaMapPhyrs has no kernel counterpart)
 * and, for the first two, does nothing.
 */
export function dmaUnmapPhyrs(dev: Device, dl: DmaList, dir: DmaDataDirection, attrs: number): void {
  checkAttrs(attrs);
  const ctx = dmaContextOf(dev);
  const m = dl instanceof DmaList ? mappings.get(dl) : undefined;
  if (!m) {
    ctx.mm.events.modelCheck(`${dev.name}: dmaUnmapPhyrs of a DMA list that dmaMapPhyrs did not map`, { dev: dev.name });
    return;
  }
  if (m.unmapped) {
    ctx.mm.events.modelCheck(`${dev.name}: dmaUnmapPhyrs of a DMA list already unmapped`, { dev: dev.name });
    return;
  }
  if (m.dev !== dev) {
    ctx.mm.events.modelCheck(`${dev.name}: dmaUnmapPhyrs of a list mapped for ${m.dev.name}`, { dev: dev.name });
    return;
  }
  if (m.dir !== dir) {
    ctx.mm.events.modelCheck(`${dev.name}: dmaUnmapPhyrs with direction ${dir}, mapped with ${m.dir}`, { dev: dev.name, dir, mappedDir: m.dir });
  }
  m.unmapped = true;
  if (m.how === 'iova') {
    dmaIovaDestroy(dev, m.state!, m.mappedLen, m.dir, attrs);
    return;
  }
  const n = m.kinds!.length;
  for (let i = n - 1; i >= 0; i--) {
    const k = m.kinds![i];
    if (k === K_BUS) continue;
    dmaUnmapPhys(dev, m.addrs![i], checkLen('len', m.lens![i], 1), m.dir, k === K_MMIO ? attrs | DMA_ATTR_MMIO : attrs);
  }
}
