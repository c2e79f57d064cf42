// Models: the classification half of block/blk-mq-dma.c (blk_dma_map_iter_start /
// blk_dma_map_iter_next with pci_p2pdma_state()) and mm/hmm.c (hmm_dma_map_pfn), over any range
// source: each range's memory type and P2P provider are looked up in the machine's memory map
// (page -> pgmap -> provider in the kernel) and the range is given the way it must be mapped.
// Unlike struct blk_dma_iter, a failure is the return value of next(), never a status field that
// a caller can forget to read. Also dma_get_max_seg_size / dma_get_seg_boundary /
// dma_get_merge_boundary as one set of cursor limits (include/linux/dma-mapping.h).

import { err, ok, type Result } from '../base/index.ts';
import type { Device } from '../pci/index.ts';
import {
  PCI_P2PDMA_MAP_BUS_ADDR, PCI_P2PDMA_MAP_NOT_SUPPORTED, PCI_P2PDMA_MAP_THRU_HOST_BRIDGE, PciP2pdmaMapState,
  pciP2pdmaBusAddrMap, pciP2pdmaState,
} from '../pci/index.ts';
import { RANGE_MMIO, rangeProvider, type CursorOptions, type RangeCursor, type RangeSource } from '../phyr/index.ts';
import { dmaContextOf } from './context.ts';
import { memTypeLookup, type MemTypeLookup } from './direct.ts';
import { iommuGetDmaDomain } from '../iommu/index.ts';
import { dmaGetMaxSegSize, dmaGetSegBoundary } from './mask.ts';

/** Normal memory: mapped as it is. */
export const DMA_RANGE_RAM = 0;
/** I/O memory, or P2P through the host bridge: mapped with DMA_ATTR_MMIO. */
export const DMA_RANGE_MMIO = 1;
/** P2P through a switch: the PCI bus address is the DMA address; nothing is mapped. */
export const DMA_RANGE_BUS = 2;
export type DmaRangeKind = typeof DMA_RANGE_RAM | typeof DMA_RANGE_MMIO | typeof DMA_RANGE_BUS;

const STEP: Result<boolean> = Object.freeze(ok(true));
const DONE: Result<boolean> = Object.freeze(ok(false));

/**
 * Walks a range source once and classifies each range for one device. After next() returns
 * { ok: true, value: true } the fields describe the current range; { value: false } ends the walk;
 * { ok: false } stops it: EINVAL (the range lies in a hole of the memory map or runs from one memory
 * region into another) or EREMOTEIO (P2P between the range's provider and the device is not
 * supported). The walk applies any segment limits passed in (dmaSegmentLimits gives the device's).
 */
export class DmaRangeIter {
  readonly dev: Device;
  /** Index of the current range in the walk (segments, when limits split entries). */
  index = -1;
  /** Start of the current range as a number: exact, since every memory region lies below 2^52. */
  addrNum = 0;
  len = 0;
  /** Range flags of the memory holding the range (phyr/flags.ts), not the caller's. */
  flags = 0;
  kind: DmaRangeKind = DMA_RANGE_RAM;
  /** The bus address when kind is DMA_RANGE_BUS (else 0n). */
  busAddr = 0n;
  /** false once a range's own flags differed from its memory's. */
  callerFlagsMatch = true;
  private readonly cursor: RangeCursor;
  private readonly fits: boolean;
  private readonly look: MemTypeLookup;
  private readonly p2p = new PciP2pdmaMapState();

  /** @throws TypeError when source is not a range source or dev is on no machine. */
  constructor(dev: Device, source: RangeSource, opts?: CursorOptions) {
    if (source === null || typeof source !== 'object' || typeof (source as RangeSource).cursor !== 'function') {
      throw new TypeError(`source must be a range source (RangeSource), got ${String(source)}`);
    }
    this.dev = dev;
    this.look = memTypeLookup(dmaContextOf(dev).mm);
    this.cursor = source.cursor(opts);
    this.fits = source.addrFitsNumber;
  }

  /** The current range's start as a bigint. */
  get addr(): bigint {
    return BigInt(this.addrNum);
  }

  /** Moves to the next range and classifies it; see the class comment for the results. */
  next(): Result<boolean> {
    const c = this.cursor;
    if (c.done) {
      if (c.stopReason !== 'virt-boundary') return DONE;
      return err('EINVAL', `range ${this.index + 1}: the seam before it is not aligned to the walk's virt boundary (split the request there)`);
    }
    const l = c.len;
    const n = this.index + 1;
    let a: number;
    let ri: number;
    if (this.fits) {
      a = c.addrNum;
      ri = this.look.index(a, l);
    } else {
      const ab = c.addr;
      ri = this.look.indexBig(ab, l);
      a = Number(ab);
    }
    if (ri < 0) return this.look.error(ri, `range ${n}`, this.fits ? BigInt(a) : c.addr, l);
    const flags = this.look.flagsOf(ri);
    if (c.flags !== flags) this.callerFlagsMatch = false;
    let kind: DmaRangeKind = (flags & RANGE_MMIO) !== 0 ? DMA_RANGE_MMIO : DMA_RANGE_RAM;
    let bus = 0n;
    if (rangeProvider(flags) !== 0) {
      const t = pciP2pdmaState(this.p2p, this.dev, flags);
      if (t === PCI_P2PDMA_MAP_NOT_SUPPORTED) {
        return err('EREMOTEIO', `range ${n} (0x${a.toString(16)}): P2P between its provider and ${this.dev.name} is not supported`);
      }
      if (t === PCI_P2PDMA_MAP_BUS_ADDR) {
        kind = DMA_RANGE_BUS;
        bus = pciP2pdmaBusAddrMap(this.p2p.mem!, BigInt(a));
      } else if (t === PCI_P2PDMA_MAP_THRU_HOST_BRIDGE) {
        kind = DMA_RANGE_MMIO;
      }
    }
    this.index = n;
    this.addrNum = a;
    this.len = l;
    this.flags = flags;
    this.kind = kind;
    this.busAddr = bus;
    c.next();
    return STEP;
  }
}

/** A device's segment limits as cursor options, with its merge boundary beside them. */
export interface DmaSegmentLimits extends CursorOptions {
  readonly maxSegmentLen: number;
  readonly segBoundaryMask: bigint;
  readonly merge: boolean;
  /**
   * dma_get_merge_boundary(): granule - 1 behind a dma-iommu domain, 0 (no merging by the DMA
   * layer) on dma-direct. A block driver that wants the IOMMU to merge segments uses it as its
   * virt boundary (blk_queue_can_use_dma_map_merging()); it is not applied to walks by itself.
   */
  readonly mergeBoundary: number;
}

/**
 * The segment limits a device puts on a walk: dma_get_max_seg_size() and dma_get_seg_boundary()
 * as cursor options; with merge on (the default), physically adjacent pieces with equal flags become
 * one segment, as blk_rq_map_sg() and blk_dma_map_iter_next() build them.
 */
export function dmaSegmentLimits(dev: Device, merge = true): DmaSegmentLimits {
  const domain = dev.dmaIommu ? iommuGetDmaDomain(dev) : null;
  return {
    maxSegmentLen: dmaGetMaxSegSize(dev),
    segBoundaryMask: dmaGetSegBoundary(dev),
    merge,
    mergeBoundary: domain !== null ? domain.granule - 1 : 0,
  };
}
