// Models: drivers/infiniband/core/umem.c: ib_umem_get(), ib_umem_release(), ib_umem_find_best_pgsz();
// include/rdma/ib_umem.h: ib_umem_num_dma_blocks(), ib_umem_offset(); include/rdma/iter.h and
// drivers/infiniband/core/iter.c: rdma_umem_for_each_dma_block() (__rdma_umem_block_iter_start,
// __rdma_block_iter_next, rdma_block_iter_dma_address). The kernel pins into a page array one page
// of pointers at a time, appends each batch to a scatterlist (sg_alloc_append_table_from_pages) and
// maps it with ib_dma_map_sgtable_attrs; this umem pins the same pages as a phyr list
// (pinUserPhyrs, one call where the kernel makes one per page of pointers) and maps it with
// dmaMapPhyrs: no page array and no scatterlist, and the DMA segments the block iterator and
// ib_umem_find_best_pgsz walk are the mapping's DMA list. What the kernel's structures would cost is
// computed beside it (kernelSgNents, kernelSgtBytes).
//
// As in the kernel the pin covers whole pages (ALIGN_DOWN(addr) .. PAGE_ALIGN(addr + size)), so
// the first DMA segment starts at a page boundary and ib_umem_offset() is the address's page offset.

import { checkLen, err, ok, type Result } from '../../base/index.ts';
import {
  DMA_ATTR_REQUIRE_COHERENT, DMA_ATTR_WEAK_ORDERING, DMA_BIDIRECTIONAL, dmaContextOf, dmaGetMaxSegSize, dmaMapPhyrs, dmaUnmapPhyrs, type DmaPhyrsMapping,
} from '../../dma/index.ts';
import {
  FOLL_LONGTERM, FOLL_PCI_P2PDMA, FOLL_WRITE, pinUserPhyrsAll, unpinUserPhyrs, UserMm, type PinnedPhyrList,
} from '../../mm/index.ts';
import { SCATTERLIST_BYTES, SG_APPEND_TABLE_BYTES, sgMaxSingleAlloc, type DmaList } from '../../phyr/index.ts';
import { IbDevice } from './device.ts';
import { IB_ACCESS_ON_DEMAND, IB_ACCESS_RELAXED_ORDERING, ibAccessWritable } from './verbs.ts';
import './counters.ts';

const U64 = (1n << 64n) - 1n;
const UINT_MAX = 0xffffffff;

export interface IbUmemOptions {
  /**
   * Pin device memory too (FOLL_PCI_P2PDMA), for a NIC that can reach a peer's BAR.
   * Model deviation: ib_umem_get() always pins with FOLL_LONGTERM, which the kernel refuses with
   * FOLL_PCI_P2PDMA (P2P pages cannot be pinned long term; Linux registers GPU memory through
   * dma-buf, ib_umem_dmabuf_get_pinned). The phyr umem takes P2P memory as ranges, as the phyr
   * design proposes, and pins it without FOLL_LONGTERM.
   */
  readonly p2p?: boolean;
}

/** What ib_umem_get's scatterlist would be: entries (orig_nents) and scatterlist slots allocated. */
export interface UmemSgLayout {
  readonly nents: number;
  readonly slots: number;
}

/**
 * The sg_append_table ib_umem_get() builds (drivers/infiniband/core/umem.c) for pinned pages that
 * form runs of runPages[i] physically contiguous, mergeable pages, in order: the pages come in
 * batches of PAGE_SIZE / sizeof(struct page *) (one page of pointers), each passed to
 * sg_alloc_append_table_from_pages (lib/scatterlist.c) with max_segment = maxSegSize rounded down to
 * pages and left_pages = the pages not pinned yet. An entry grows by whole pages up to max_segment,
 * across batches too (a batch first merges into the previous entry), so each run is
 * ceil(run / max_segment) entries, each made by the batch its first page is in. Slots: get_next_sg()
 * allocates min(needed, SG_MAX_SINGLE_ALLOC) at a time, where needed = the batch's entries still to
 * place + left_pages, and takes a new allocation (its old last slot becoming the chain link) when
 * only the last slot of the current one is left and more than one entry is needed; the left_pages
 * guess means a buffer of a few large runs still gets whole pages of slots.
 */
export function umemSgAppendLayout(runPages: ArrayLike<number>, pageSize: number, maxSegSize: number): UmemSgLayout {
  const batch = pageSize / 8;
  // ALIGN_DOWN(max_segment, PAGE_SIZE); the kernel WARNs and fails below a page (no NIC here sets that)
  const maxPages = Math.max(1, Math.floor(maxSegSize / pageSize));
  let total = 0;
  for (let i = 0; i < runPages.length; i++) total += runPages[i];
  const perBatch = new Uint32Array(Math.ceil(total / batch));
  let pos = 0;
  for (let i = 0; i < runPages.length; i++) {
    for (let s = pos; s < pos + runPages[i]; s += maxPages) perBatch[Math.floor(s / batch)]++;
    pos += runPages[i];
  }
  const chunkMax = sgMaxSingleAlloc(pageSize);
  let nents = 0, slots = 0;
  let size = 0, cur = -1; // slots of the current allocation, slot of the last entry placed
  for (let b = 0; b < perBatch.length; b++) {
    const chunks = perBatch[b];
    const left = Math.max(0, total - (b + 1) * batch);
    for (let i = 0; i < chunks; i++) {
      const needed = chunks - i + left;
      if (cur >= 0 && (cur + 1 < size - 1 || needed === 1)) {
        cur++;
      } else {
        size = Math.min(needed, chunkMax);
        slots += size;
        cur = 0;
      }
    }
    nents += chunks;
  }
  return { nents, slots };
}

/** struct ib_umem of a pinned (not ODP) registration. */
export class IbUmem {
  readonly ibdev: IbDevice;
  readonly mm: UserMm;
  /** umem->address: the user virtual address registered. */
  readonly address: bigint;
  /** umem->length. */
  readonly length: number;
  /** umem->iova: the address, until ib_umem_find_best_pgsz sets it to the MR's IOVA. */
  iova: bigint;
  readonly writable: boolean;
  readonly isOdp = false;
  readonly access: number;
  /** The pinned pages, whole pages, as a phyr list. */
  readonly pinned: PinnedPhyrList;
  /** The DMA mapping of pinned (its list is the umem's DMA segments). */
  readonly mapping: DmaPhyrsMapping;
  private live = true;

  /** @internal made by ibUmemGet. */
  constructor(ibdev: IbDevice, mm: UserMm, address: bigint, length: number, access: number, pinned: PinnedPhyrList, mapping: DmaPhyrsMapping) {
    this.ibdev = ibdev;
    this.mm = mm;
    this.address = address;
    this.length = length;
    this.iova = address;
    this.writable = ibAccessWritable(access);
    this.access = access;
    this.pinned = pinned;
    this.mapping = mapping;
  }

  /** The DMA segments in buffer order; the first starts at the page of address. */
  get dma(): DmaList {
    return this.mapping.list;
  }

  /** Base pages pinned (ib_umem_num_pages). */
  get nrPages(): number {
    return this.pinned.nrPages;
  }

  /** false after ibUmemRelease. */
  get released(): boolean {
    return !this.live;
  }

  /** Kernel bytes of the phyr umem's own lists: the pinned phyr list and the DMA list (16 B an entry each). */
  get phyrBytes(): number {
    return this.pinned.kernelBytes + this.mapping.list.kernelBytes;
  }

  /**
   * Scatterlist entries the kernel's umem would hold: each physically contiguous run split at
   * ib_dma_max_seg_size() (rounded down to pages), as sg_alloc_append_table_from_pages merges.
   */
  get kernelSgNents(): number {
    return this.sgLayout().nents;
  }

  /**
   * Bytes of the kernel umem's sg_append_table: its header and every scatterlist slot
   * sg_alloc_append_table_from_pages allocated over ib_umem_get's batches (umemSgAppendLayout).
   */
  get kernelSgtBytes(): number {
    return SG_APPEND_TABLE_BYTES + SCATTERLIST_BYTES * this.sgLayout().slots;
  }

  private sgCache: UmemSgLayout | null = null;

  private sgLayout(): UmemSgLayout {
    if (this.sgCache === null) {
      const ps = this.mm.machine.pageSize;
      const runs = new Float64Array(this.pinned.count);
      for (let i = 0; i < runs.length; i++) runs[i] = this.pinned.lenAt(i) / ps;
      this.sgCache = umemSgAppendLayout(runs, ps, dmaGetMaxSegSize(this.ibdev.dev));
    }
    return this.sgCache;
  }

  /** Bytes of a struct page * array of every pinned page (pin_user_pages'; ib_umem_get reuses one 4 KiB page of it per batch). */
  get kernelPageArrayBytes(): number {
    return 8 * this.pinned.nrPages;
  }

  /** @internal ibUmemRelease. */
  release(): boolean {
    if (!this.live) return false;
    this.live = false;
    return true;
  }
}

/**
 * ib_umem_get(): pins [addr, addr + size) of mm (whole pages, FOLL_LONGTERM, FOLL_WRITE when the
 * access is writable) and maps it DMA_BIDIRECTIONAL for the NIC (DMA_ATTR_WEAK_ORDERING with
 * IB_ACCESS_RELAXED_ORDERING). Errors, as the kernel's and in its order: EINVAL (the range wraps or
 * PAGE_ALIGN of its end does), EOPNOTSUPP (IB_ACCESS_ON_DEMAND: that is ib_umem_odp_get), EINVAL
 * (no page, which is size 0 at a page-aligned address: size 0 inside a page pins that page; more
 * than UINT_MAX pages), the pin's (EFAULT: a hole, a write to a read-only mapping, a PFN map;
 * EREMOTEIO: P2P memory without opts.p2p), the mapping's (EREMOTEIO: P2P memory the NIC cannot
 * reach). A pin that stops short is undone and its cause returned, as ib_umem_get's loop ends in
 * the failing call. On error nothing stays pinned or mapped.
 */
export function ibUmemGet(ibdev: IbDevice, mm: UserMm, addr: bigint, size: number, access: number, opts: IbUmemOptions = {}): Result<IbUmem> {
  if (!(ibdev instanceof IbDevice)) throw new TypeError(`ibdev must be an IbDevice (rdmaProbe), got ${String(ibdev)}`);
  if (!(mm instanceof UserMm)) throw new TypeError(`mm must be a UserMm, got ${String(mm)}`);
  if (typeof addr !== 'bigint' || addr < 0n || addr > U64) throw new RangeError(`addr must be a u64 bigint, got ${String(addr)}`);
  checkLen('size', size);
  if (!Number.isInteger(access) || access < 0) throw new RangeError(`access must be a non-negative integer of IB_ACCESS_* flags, got ${String(access)}`);
  const ps = BigInt(mm.machine.pageSize);
  const end = addr + BigInt(size);
  if (end > U64 || ((end + ps - 1n) & ~(ps - 1n)) > U64) return err('EINVAL', `[0x${addr.toString(16)}, +${size}) wraps the address space`);
  // (can_do_mlock()'s EPERM comes here in the kernel: the model has no RLIMIT_MEMLOCK)
  if ((access & IB_ACCESS_ON_DEMAND) !== 0) return err('EOPNOTSUPP', 'IB_ACCESS_ON_DEMAND: an ODP umem comes from ib_umem_odp_get');
  const start = addr & ~(ps - 1n);
  const pinLen = Number(((end + ps - 1n) & ~(ps - 1n)) - start);
  // ib_umem_num_pages() of the new umem (its iova is addr): 0 only for size 0 at a page boundary
  const npages = pinLen / Number(ps);
  if (npages === 0) return err('EINVAL', `size 0 at page-aligned 0x${addr.toString(16)}: no pages to pin`);
  if (npages > UINT_MAX) return err('EINVAL', `${npages} pages: more than UINT_MAX`);
  const writable = ibAccessWritable(access);
  const gup = (writable ? FOLL_WRITE : 0) | (opts.p2p === true ? FOLL_PCI_P2PDMA : FOLL_LONGTERM);
  // drivers/infiniband/core/umem.c: ib_umem_get() pins in a loop, each pin_user_pages_fast() going on
  // from where the last one stopped; a short pin is not an error, only a negative return is.
  // (pinUserPhyrsAll models that loop.)
  const pinned = pinUserPhyrsAll(mm, start, pinLen, gup);
  if (!pinned.ok) return err(pinned.errno, `pin_user_pages_fast: ${pinned.message ?? pinned.errno}`);
  // ib_umem_get() maps with DMA_ATTR_REQUIRE_COHERENT (a umem is never synced), adding
  // DMA_ATTR_WEAK_ORDERING for IB_ACCESS_RELAXED_ORDERING
  const attrs = DMA_ATTR_REQUIRE_COHERENT | ((access & IB_ACCESS_RELAXED_ORDERING) !== 0 ? DMA_ATTR_WEAK_ORDERING : 0);
  const mapped = dmaMapPhyrs(ibdev.dev, pinned.value, DMA_BIDIRECTIONAL, attrs);
  if (!mapped.ok) {
    unpinUserPhyrs(pinned.value);
    return err(mapped.errno, `ib_dma_map: ${mapped.message ?? mapped.errno}`);
  }
  const stats = dmaContextOf(ibdev.dev).mm.stats;
  stats.rdmaUmemGets++;
  stats.rdmaUmemPagesPinned += pinned.value.nrPages;
  return ok(new IbUmem(ibdev, mm, addr, size, access, pinned.value, mapped.value));
}

/** ib_umem_release(): unmaps and unpins. A second call does nothing. */
export function ibUmemRelease(umem: IbUmem): void {
  if (!(umem instanceof IbUmem)) throw new TypeError(`umem must be an IbUmem, got ${String(umem)}`);
  if (!umem.release()) return;
  dmaUnmapPhyrs(umem.ibdev.dev, umem.mapping, DMA_BIDIRECTIONAL, umem.mapping.attrs);
  unpinUserPhyrs(umem.pinned);
}

/** ib_umem_offset(): the address's offset in its page. */
export function ibUmemOffset(umem: IbUmem): number {
  return Number(umem.address % BigInt(umem.mm.machine.pageSize));
}

/** ib_umem_num_dma_blocks(): (ALIGN(iova + length, pgsz) - ALIGN_DOWN(iova, pgsz)) / pgsz. */
export function ibUmemNumDmaBlocks(umem: IbUmem, pgsz: number | bigint): number {
  const p = BigInt(pgsz);
  if (p <= 0n || (p & (p - 1n)) !== 0n) throw new RangeError(`pgsz must be a power of two, got ${String(pgsz)}`);
  const hi = (umem.iova + BigInt(umem.length) + p - 1n) & ~(p - 1n);
  const lo = umem.iova & ~(p - 1n);
  return Number((hi - lo) / p);
}

/** bits_per(n): bits needed to hold n, and 1 for 0 and 1. */
function bitsPer(n: bigint): number {
  return n <= 1n ? 1 : n.toString(2).length;
}

/**
 * GENMASK(BITS_PER_LONG - 1, l) over u64, for l = bits_per(...) in 1..64. At l = 64 the kernel's
 * `ULONG_MAX << l` shifts by the width of the type: x86-64 and arm64 take the count modulo 64, so
 * the mask is all ones (not 0).
 */
function genmaskFrom(l: number): bigint {
  return U64 & ~((1n << BigInt(l & 63)) - 1n);
}

/** count_trailing_zeros of a non-zero u64. */
function ctz(n: bigint): number {
  let c = 0;
  while ((n & 1n) === 0n) { n >>= 1n; c++; }
  return c;
}

/**
 * ib_umem_find_best_pgsz(): the largest page size of pgszBitmap with which [virt, virt + length)
 * maps onto the umem's DMA segments block by block (every seam between discontiguous segments on a
 * page boundary, VA and DMA address equal modulo the page size), no larger than the smallest aligned
 * block holding the whole range; 0 when none does. When no page size up to 2^63 holds the range
 * (it crosses bit 63 of the IOVA), the cap is the smallest size of the bitmap (GENMASK(63, 64), see
 * genmaskFrom). Sets umem.iova = virt, as the kernel does.
 */
export function ibUmemFindBestPgsz(umem: IbUmem, pgszBitmap: bigint, virt: bigint): number {
  if (!(umem instanceof IbUmem)) throw new TypeError(`umem must be an IbUmem, got ${String(umem)}`);
  if (typeof pgszBitmap !== 'bigint' || pgszBitmap < 0n || pgszBitmap > U64) throw new RangeError(`pgszBitmap must be a u64 bigint, got ${String(pgszBitmap)}`);
  if (typeof virt !== 'bigint' || virt < 0n || virt > U64) throw new RangeError(`virt must be a u64 bigint, got ${String(virt)}`);
  umem.iova = virt;
  return findBestPgszOf(umem.dma, ibUmemOffset(umem), umem.length, pgszBitmap, virt);
}

/** DMA segments as ib_umem_find_best_pgsz walks them (for_each_sgtable_dma_sg). */
export interface DmaSegmentsView {
  readonly count: number;
  addrAt(i: number): bigint;
  lenAt(i: number): number;
}

/**
 * The walk of ib_umem_find_best_pgsz() over DMA segments whose first starts pgoff bytes before the
 * registered address (the page offset), for a registration of length bytes at IOVA virt.
 */
export function findBestPgszOf(list: DmaSegmentsView, pgoffNum: number, length: number, pgszBitmap: bigint, virt: bigint): number {
  let va = virt;
  // the largest page size worth having: the smallest aligned block holding [virt, virt + length)
  let mask = pgszBitmap & genmaskFrom(bitsPer(BigInt.asUintN(64, BigInt(length) - 1n + virt) ^ virt));
  let pgoff = BigInt(pgoffNum);
  let currBase = U64;
  let currLen = 0n;
  for (let i = 0; i < list.count; i++) {
    const a = list.addrAt(i);
    const l = BigInt(list.lenAt(i));
    const end = currBase + currLen;
    if (end > U64 || end !== a) {
      // a seam: VA and DMA address must agree below the page size, and (but for the first) the VA
      // must start a page
      currBase = a;
      currLen = 0n;
      mask |= BigInt.asUintN(64, currBase + pgoff) ^ va;
      if (i !== 0) mask |= va;
    }
    currLen += l;
    va = BigInt.asUintN(64, va + l - pgoff);
    pgoff = 0n;
  }
  let bitmap = pgszBitmap;
  if (mask !== 0n) bitmap &= (1n << BigInt(ctz(mask) + 1)) - 1n;
  if (bitmap === 0n) return 0;
  return Number(1n << BigInt(bitmap.toString(2).length - 1));
}

/**
 * struct ib_block_iter over a umem's DMA segments: rdma_umem_for_each_dma_block() is
 * `for (it.start(umem, pgsz); it.next();) use(it.dmaAddress())`; it runs exactly
 * ib_umem_num_dma_blocks() times.
 */
export class IbBlockIter {
  private list: DmaList | null = null;
  private sg = 0;
  private nents = 0;
  private advance = 0n;
  private dmaAddr = 0n;
  /** The block size and its alignment mask, kept from start() (next() and dmaAddress() run per block). */
  private pg = 1n;
  private pgMask = ~0n;
  private numBlocks = 0;

  /** __rdma_umem_block_iter_start(). */
  start(umem: IbUmem, pgsz: number | bigint): this {
    return this.startList(umem.dma, ibUmemOffset(umem), ibUmemNumDmaBlocks(umem, BigInt(pgsz)), pgsz);
  }

  /**
   * __rdma_umem_block_iter_start() for any umem's DMA segments (a dma-buf umem's trimmed ranges):
   * __rdma_block_iter_start() over list, advanced by the umem's page offset aligned down to pgsz,
   * numBlocks blocks (ib_umem_num_dma_blocks).
   */
  startList(list: DmaList, pageOffset: number, numBlocks: number, pgsz: number | bigint): this {
    const p = BigInt(pgsz);
    if (p <= 0n || (p & (p - 1n)) !== 0n) throw new RangeError(`pgsz must be a power of two, got ${String(pgsz)}`);
    this.list = list;
    this.sg = 0;
    this.nents = list.count;
    this.pg = p;
    this.pgMask = ~(p - 1n);
    this.advance = BigInt(pageOffset) & this.pgMask;
    this.numBlocks = numBlocks;
    return this;
  }

  /** __rdma_umem_block_iter_next(): __rdma_block_iter_next() && numBlocks--. */
  next(): boolean {
    const list = this.list;
    if (list === null || this.nents === 0) return false;
    const pg = this.pg;
    this.dmaAddr = list.addrAt(this.sg) + this.advance;
    let delta = pg - (this.dmaAddr & (pg - 1n));
    while (this.nents > 0) {
      const rest = BigInt(list.lenAt(this.sg)) - this.advance;
      if (rest > delta) break;
      delta -= rest;
      this.advance = 0n;
      this.sg++;
      this.nents--;
    }
    this.advance += delta;
    return this.numBlocks-- > 0;
  }

  /** rdma_block_iter_dma_address(): the current block's aligned DMA address. */
  dmaAddress(): bigint {
    return this.dmaAddr & this.pgMask;
  }
}

/** rdma_umem_for_each_dma_block(): fn(aligned DMA address of block i, i) for each block. */
export function rdmaUmemForEachDmaBlock(umem: IbUmem, pgsz: number | bigint, fn: (dmaAddr: bigint, index: number) => void): number {
  const it = new IbBlockIter().start(umem, pgsz);
  let i = 0;
  while (it.next()) fn(it.dmaAddress(), i++);
  return i;
}
