// Models: block/blk-mq-dma.c (blk_map_iter_next, blk_can_dma_map_iova, blk_dma_map_bus,
// blk_dma_map_direct, blk_rq_dma_map_iova, blk_dma_map_iter_start, blk_rq_dma_map_iter_start,
// blk_rq_dma_map_iter_next) and include/linux/blk-mq-dma.h (struct blk_dma_iter,
// blk_rq_dma_map_coalesce, blk_rq_dma_unmap); block/blk.h: biovec_phys_mergeable.
//
// A driver maps a request one DMA segment at a time: blkRqDmaMapIterStart() maps the first (and,
// when the whole request fits one IOVA window, all of it), blkRqDmaMapIterNext() each further one.
// false means no segment: either the request is done (iter.status BLK_STS_OK) or mapping failed
// (iter.status says why; what was mapped before stays mapped and is the caller's to undo).

import {
  DMA_ATTR_MMIO, DMA_FROM_DEVICE, DMA_TO_DEVICE, DmaIovaState, dmaContextOf, dmaGetMergeBoundary, dmaIovaDestroy,
  dmaIovaLink, dmaIovaLinkBatch, dmaIovaSize, dmaIovaSync, dmaIovaTryAlloc, dmaMapPhys, dmaNeedUnmap, dmaUseIova, memTypeLookup,
  type DmaDataDirection,
} from '../../dma/index.ts';
import {
  PCI_P2PDMA_MAP_BUS_ADDR, PCI_P2PDMA_MAP_NONE, PCI_P2PDMA_MAP_THRU_HOST_BRIDGE, PCI_P2PDMA_MAP_UNKNOWN, PciP2pdmaMapState,
  pciP2pdmaBusAddrMap, pciP2pdmaState, type Device, type PciP2pdmaMapType,
} from '../../pci/index.ts';
import { PhyrList, PhyrListBuilder, toSgTable, type SgTable } from '../../phyr/index.ts';
import type { Result } from '../../base/index.ts';
import { REQ_OP_WRITE, samePgmap } from './bio.ts';
import { getMaxSegmentSize } from './queue.ts';
import { Request, reqPhysGapMask } from './request.ts';
import { BLK_STS_INVAL, BLK_STS_OK, BLK_STS_RESOURCE, errnoToBlkStatus, type BlkStatus } from './status.ts';

const UINT_MAX = 0xffff_ffff;

/**
 * struct blk_dma_iter: after a call that returned true, addr and len are the DMA segment just
 * mapped; after one that returned false, status says why (BLK_STS_OK: no more segments). p2pdma is
 * the P2P state of the request's first segment (its map type is what blkRqDmaUnmap needs).
 */
export class BlkDmaIter {
  addr = 0n;
  len = 0;
  status: BlkStatus = BLK_STS_OK;
  readonly p2pdma = new PciP2pdmaMapState();
  /** @internal struct blk_map_iter: the request, bi_idx, bi_bvec_done, bi_size. */
  req: Request | null = null;
  idx = 0;
  done = 0;
  left = 0;
  /** @internal the physical start of the segment just produced (struct phys_vec). */
  paddr = 0;
}

/** rq_dma_dir(): DMA_TO_DEVICE for writes, DMA_FROM_DEVICE for reads. */
export function rqDmaDir(req: Request): DmaDataDirection {
  return req.op === REQ_OP_WRITE ? DMA_TO_DEVICE : DMA_FROM_DEVICE;
}

/** blk_rq_map_iter_init(): the walk starts at the request's bio. */
function mapIterInit(req: Request, iter: BlkDmaIter): void {
  iter.req = req;
  iter.idx = req.bio.iterIdx;
  iter.done = req.bio.iterDone;
  iter.left = req.bio.size;
}

/**
 * blk_map_iter_next(): the next physical segment (iter.paddr, returned length; 0 at the end): the
 * current bio_vec cut to get_max_segment_size(), then whole following bio_vecs merged in while they
 * are physically contiguous, of the same pgmap, inside the same segment boundary and the sum stays
 * within that first size (biovec_phys_mergeable()).
 */
function mapIterNext(iter: BlkDmaIter): number {
  if (iter.left === 0) return 0;
  const req = iter.req!, q = req.q, c = req.bio.cols;
  let i = iter.idx, d = iter.done, left = iter.left;
  const paddr = c.addr[i] + d;
  const flags = c.flags[i];
  const maxSize = getMaxSegmentSize(q, paddr, UINT_MAX);
  let len = Math.min(left, c.len[i] - d, maxSize);
  d += len;
  left -= len;
  if (d === c.len[i]) { i++; d = 0; }
  const b = q.segBoundary;
  while (left > 0 && d === 0) {
    const nl = Math.min(left, c.len[i]);
    const na = c.addr[i];
    if (len + nl > maxSize || paddr + len !== na || !samePgmap(flags, c.flags[i]) ||
        Math.floor(paddr / b) !== Math.floor((na + nl - 1) / b)) break;
    len += nl;
    left -= nl;
    if (nl === c.len[i]) i++;
    else d = nl;
  }
  iter.idx = i;
  iter.done = d;
  iter.left = left;
  iter.paddr = paddr;
  return len;
}

/**
 * __blk_rq_map_sg(): the request's physical segments, as blk_map_iter_next() makes them (cut to
 * get_max_segment_size() and merged while biovec_phys_mergeable()), one scatterlist entry each
 * (toSgTable: sg_set_page() per struct phys_vec, a WARN for a length beyond UINT_MAX). Every
 * segment comes from u32 bio_vec lengths bounded by max_size <= UINT_MAX, so for a request the WARN
 * cannot fire: a range beyond 4 GiB never reaches a bio (bioFromRanges refuses it, E2BIG).
 * Errors: those of toSgTable (EINVAL for a range without struct page, ENOMEM).
 */
export function blkRqMapSg(req: Request): Result<SgTable> {
  const iter = new BlkDmaIter();
  mapIterInit(req, iter);
  const b = new PhyrListBuilder(Math.max(1, req.bio.cols.n));
  for (;;) {
    // the segment's flags are those of the bio_vec it starts in (the walk's position before the step)
    const flags = req.bio.cols.flags[iter.idx];
    const len = mapIterNext(iter);
    if (len === 0) break;
    b.pushNoMerge(iter.paddr, len, flags);
  }
  // sg_set_page(sg, phys_to_page(paddr), len, offset_in_page(paddr)): pages of the machine's PAGE_SIZE
  const mm = dmaContextOf(req.q.dev).mm;
  return toSgTable(b.build(), mm.pageSize, mm.events, mm);
}

/**
 * blk_can_dma_map_iova(): no seam of the request is misaligned to the device's merge boundary
 * (req_phys_gap_mask() & dma_get_merge_boundary() is 0).
 */
export function blkCanDmaMapIova(req: Request, dmaDev: Device): boolean {
  return (reqPhysGapMask(req) & dmaGetMergeBoundary(dmaDev)) === 0n;
}

function mapBus(iter: BlkDmaIter, len: number): boolean {
  iter.addr = pciP2pdmaBusAddrMap(iter.p2pdma.mem!, BigInt(iter.paddr));
  iter.len = len;
  return true;
}

function mapDirect(req: Request, dev: Device, iter: BlkDmaIter, len: number): boolean {
  const attrs = iter.p2pdma.map === PCI_P2PDMA_MAP_THRU_HOST_BRIDGE ? DMA_ATTR_MMIO : 0;
  const r = dmaMapPhys(dev, BigInt(iter.paddr), len, rqDmaDir(req), attrs);
  if (!r.ok) {
    iter.status = BLK_STS_RESOURCE;
    return false;
  }
  iter.addr = r.value;
  iter.len = len;
  return true;
}

/** blk_rq_dma_map_iova(): links every segment into the window, one sync at the end. */
function mapIova(req: Request, dev: Device, state: DmaIovaState, iter: BlkDmaIter, firstLen: number): boolean {
  const dir = rqDmaDir(req);
  const attrs = iter.p2pdma.map === PCI_P2PDMA_MAP_THRU_HOST_BRIDGE ? DMA_ATTR_MMIO : 0;
  iter.addr = state.addr;
  iter.len = dmaIovaSize(state);
  if (req.q.batchIommuMap) return mapIovaBatch(dev, state, iter, firstLen, dir, attrs);
  let mapped = 0;
  let len = firstLen;
  do {
    const r = dmaIovaLink(dev, state, BigInt(iter.paddr), mapped, len, dir, attrs);
    if (!r.ok) return iovaFailed(dev, state, iter, mapped, dir, attrs, r.errno);
    mapped += len;
    len = mapIterNext(iter);
  } while (len !== 0);
  const s = dmaIovaSync(dev, state, 0, mapped);
  if (!s.ok) return iovaFailed(dev, state, iter, mapped, dir, attrs, s.errno);
  return true;
}

/** mapIova with every segment linked by one dmaIovaLinkBatch (RequestQueue.batchIommuMap). */
function mapIovaBatch(dev: Device, state: DmaIovaState, iter: BlkDmaIter, firstLen: number, dir: DmaDataDirection,
  attrs: number): boolean {
  const b = PhyrList.builder(16);
  let len = firstLen;
  do {
    b.pushNoMerge(iter.paddr, len, 0);
    len = mapIterNext(iter);
  } while (len !== 0);
  const r = dmaIovaLinkBatch(dev, state, 0, b.build(), dir, attrs);
  if (!r.ok) return iovaFailed(dev, state, iter, 0, dir, attrs, r.errno);
  const s = dmaIovaSync(dev, state, 0, r.value);
  if (!s.ok) return iovaFailed(dev, state, iter, r.value, dir, attrs, s.errno);
  return true;
}

function iovaFailed(dev: Device, state: DmaIovaState, iter: BlkDmaIter, mapped: number, dir: DmaDataDirection, attrs: number,
  errno: Parameters<typeof errnoToBlkStatus>[0]): boolean {
  dmaIovaDestroy(dev, state, mapped, dir, attrs);
  iter.status = errnoToBlkStatus(errno);
  return false;
}

function checkArgs(req: unknown, dmaDev: unknown, iter: unknown): void {
  if (!(req instanceof Request)) throw new TypeError(`req must be a Request, got ${String(req)}`);
  if (dmaDev === null || typeof dmaDev !== 'object' || typeof (dmaDev as Device).name !== 'string') {
    throw new TypeError(`dmaDev must be a Device, got ${String(dmaDev)}`);
  }
  if (!(iter instanceof BlkDmaIter)) throw new TypeError(`iter must be a BlkDmaIter, got ${String(iter)}`);
}

/**
 * blk_rq_dma_map_iter_start(): maps the request's first DMA segment for dmaDev. The first physical
 * segment's memory decides the request's P2P handling (pci_p2pdma_state()): P2P through a switch
 * maps to PCI bus addresses (nothing is mapped); P2P through the host bridge is mapped like RAM
 * with DMA_ATTR_MMIO; P2P the topology does not support ends with BLK_STS_INVAL. Then, when every
 * seam of the request is aligned to the device's merge boundary and the device has an IOVA window
 * to give (dmaIovaTryAlloc of the request's bytes), the whole request is linked into that window
 * and synced once: iter describes the window, blkRqDmaMapCoalesce(state) is true and there is no
 * next segment (a link or sync failure destroys the window: status from its errno). Otherwise the
 * segment is mapped with dmaMapPhys (failure: BLK_STS_RESOURCE) and the state is left unused.
 * Returns false with BLK_STS_OK for a request without data.
 * Model deviation: a first segment that lies in no memory region of the machine (the kernel's
 * phys_to_page() would be garbage) ends with BLK_STS_INVAL.
 * @throws TypeError when an argument is not of its type.
 */
export function blkRqDmaMapIterStart(req: Request, dmaDev: Device, state: DmaIovaState, iter: BlkDmaIter): boolean {
  checkArgs(req, dmaDev, iter);
  if (!DmaIovaState.is(state)) throw new TypeError(`state must be a DmaIovaState, got ${String(state)}`);
  mapIterInit(req, iter);
  iter.p2pdma.mem = null;
  iter.p2pdma.map = PCI_P2PDMA_MAP_NONE;
  iter.status = BLK_STS_OK;
  const len = mapIterNext(iter);
  if (len === 0) return false;
  const look = memTypeLookup(dmaContextOf(dmaDev).mm);
  const ri = look.index(iter.paddr, len);
  if (ri < 0) {
    iter.status = BLK_STS_INVAL;
    return false;
  }
  const t = pciP2pdmaState(iter.p2pdma, dmaDev, look.flagsOf(ri));
  if (t === PCI_P2PDMA_MAP_BUS_ADDR) return mapBus(iter, len);
  if (t !== PCI_P2PDMA_MAP_THRU_HOST_BRIDGE && t !== PCI_P2PDMA_MAP_NONE) {
    iter.status = BLK_STS_INVAL;
    return false;
  }
  if (blkCanDmaMapIova(req, dmaDev) && dmaIovaTryAlloc(dmaDev, state, BigInt(iter.paddr), req.dataLen)) {
    return mapIova(req, dmaDev, state, iter, len);
  }
  state.reset();
  return mapDirect(req, dmaDev, iter, len);
}

/**
 * blk_rq_dma_map_iter_next(): maps the next DMA segment (bus address for P2P through a switch,
 * dmaMapPhys otherwise: failure BLK_STS_RESOURCE); false with BLK_STS_OK after the last one.
 * @throws TypeError when an argument is not of its type or iter was never started.
 */
export function blkRqDmaMapIterNext(req: Request, dmaDev: Device, iter: BlkDmaIter): boolean {
  checkArgs(req, dmaDev, iter);
  if (iter.req !== req) throw new TypeError('iter must have been started on req with blkRqDmaMapIterStart');
  const len = mapIterNext(iter);
  if (len === 0) return false;
  if (iter.p2pdma.map === PCI_P2PDMA_MAP_BUS_ADDR) return mapBus(iter, len);
  return mapDirect(req, dmaDev, iter, len);
}

/** blk_rq_dma_map_coalesce(): true when blkRqDmaMapIterStart mapped the whole request as one IOVA window. */
export function blkRqDmaMapCoalesce(state: DmaIovaState): boolean {
  return dmaUseIova(state);
}

/**
 * blk_rq_dma_unmap(): undoes what can be undone without the segments: nothing for P2P bus
 * addresses, dma_iova_destroy() of mappedLen bytes for a coalesced request (true); otherwise true
 * only when per-segment mappings need no unmap (dma_need_unmap() is false) — on false the caller
 * unmaps every segment it mapped (dmaUnmapPhys). `map` is the request's P2P map type
 * (iter.p2pdma.map), as the kernel's fifth argument.
 */
export function blkRqDmaUnmap(req: Request, dmaDev: Device, state: DmaIovaState, mappedLen: number,
  map: PciP2pdmaMapType = PCI_P2PDMA_MAP_NONE): boolean {
  if (!(req instanceof Request)) throw new TypeError(`req must be a Request, got ${String(req)}`);
  if (map === PCI_P2PDMA_MAP_BUS_ADDR) return true;
  if (dmaUseIova(state)) {
    const attrs = map === PCI_P2PDMA_MAP_THRU_HOST_BRIDGE ? DMA_ATTR_MMIO : 0;
    dmaIovaDestroy(dmaDev, state, mappedLen, rqDmaDir(req), attrs);
    return true;
  }
  return !dmaNeedUnmap(dmaDev);
}

/** The P2P map type recorded in an iterator (PCI_P2PDMA_MAP_UNKNOWN before it was started). */
export function blkDmaIterMapType(iter: BlkDmaIter): PciP2pdmaMapType {
  return iter.req === null ? PCI_P2PDMA_MAP_UNKNOWN : iter.p2pdma.map;
}
