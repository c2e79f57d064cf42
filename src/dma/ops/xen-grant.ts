// Models: drivers/xen/grant-dma-ops.c (Linux 7.1: grant_to_dma / dma_to_grant with
// XEN_GRANT_DMA_ADDR_OFF, xen_grant_dma_map_phys, xen_grant_dma_unmap_phys marking the device broken
// when the backend still maps a grant, xen_grant_dma_map_sg / unmap_sg per entry,
// xen_grant_dma_supported) over drivers/xen/grant-table.c (grant_entry_v1 { u16 flags; u16 domid;
// u32 frame } in a shared table in guest RAM; gnttab_alloc_grant_reference_seq,
// gnttab_grant_foreign_access_ref, gnttab_end_foreign_access_ref_v1 refusing while GTF_reading or
// GTF_writing is set; the first GNTTAB_NR_RESERVED_ENTRIES refs are never handed out).
// The free refs are kept as grant-table.c keeps them (GrantFreeList below): a list threaded through
// the refs, a bitmap, and a tail of consecutive free refs that ends the table, so one ref comes
// from the head of the list (the last one freed) and a run of refs from the tail while it is long
// enough, else from the lowest free run that fits.
// Model deviation: the grant table has a fixed number of frames (the kernel grows it on demand up
// to gnttab_max_grant_frames): where the kernel would expand it, the allocation fails (ENOSPC).
// Model deviation: the backend domain is a test hook (xenGrantBackendMap / Unmap) that sets and
// clears GTF_reading / GTF_writing, as Xen does when the backend maps the grant.

import { faultInjected, type Result } from '../../base/internal.ts';
import type { MachineMm } from '../../mm/index.ts';
import type { Device } from '../../pci/index.ts';
import { DMA_ATTR_MMIO, DMA_BIT_MASK, DMA_MAPPING_ERROR, DMA_TO_DEVICE } from '../constants.ts';
import { modelCheckEvent, printkWarning } from '../events.ts';
import { allocZeroed } from './gart.ts';
import { getDmaOps, mapSgEachEntry, type DmaMapOps, type DmaOpsEntry, type DmaOpsSeg, type DmaOpsState, type DmaOpsXlate } from './ops.ts';

export interface XenGrantOpsConfig {
  readonly kind: 'xen-grant';
  /** The backend domain the grants are for (domid_t). */
  readonly backendDomid: number;
  /** Grant table frames (512 v1 entries each). Default 4. */
  readonly frames?: number;
}

/** XEN_GRANT_DMA_ADDR_OFF: bit 63 tells the backend a grant from an MMIO address. */
export const XEN_GRANT_DMA_ADDR_OFF = 1n << 63n;
export const GTF_permit_access = 1;
export const GTF_readonly = 1 << 2;
export const GTF_reading = 1 << 3;
export const GTF_writing = 1 << 4;
export const GNTTAB_NR_RESERVED_ENTRIES = 8;
const XEN_PAGE = 4096;

/** printk's %#x: 0x and lowercase hex, but a bare 0 for zero. */
function hexAlt(v: number): string {
  return v === 0 ? '0' : `0x${v.toString(16)}`;
}

/** GNTTAB_LIST_END. */
const LIST_END = -1;
/** gnttab_free_tail_ptr values that are not an entry: NULL, and &gnttab_free_head. */
const TAIL_NULL = -2;
const TAIL_HEAD = -3;

/**
 * The free grant refs as drivers/xen/grant-table.c keeps them: a singly linked list through the
 * refs (gnttab_list, `next`), anchored in gnttab_free_head; gnttab_free_bitmap; gnttab_last_free;
 * and gnttab_free_tail_ptr, which names the slot (the head, or an entry's link) that holds the
 * first ref of the consecutive free refs ending at gnttab_last_free.
 */
export class GrantFreeList {
  /** gnttab_entry(ref): the next free ref, or LIST_END. */
  private readonly next: Int32Array;
  /** gnttab_free_bitmap (1 = free). */
  readonly bitmap: Uint8Array;
  private head = LIST_END;
  private lastFree = LIST_END;
  private tailPtr = TAIL_NULL;
  /** gnttab_free_count. */
  freeCount = 0;

  /** gnttab_init's gnttab_set_free(GNTTAB_NR_RESERVED_ENTRIES, size - reserved): refs reserved.. size-1 free, in order. */
  constructor(readonly size: number, reserved: number) {
    this.next = new Int32Array(size).fill(LIST_END);
    this.bitmap = new Uint8Array(size);
    if (size <= reserved) return;
    for (let i = reserved; i < size - 1; i++) this.next[i] = i + 1;
    this.head = reserved;
    this.tailPtr = TAIL_HEAD;
    this.freeCount = size - reserved;
    this.lastFree = size - 1;
    this.bitmap.fill(1, reserved);
  }

  private deref(ptr: number): number {
    return ptr === TAIL_HEAD ? this.head : this.next[ptr];
  }

  private store(ptr: number, v: number): void {
    if (ptr === TAIL_HEAD) this.head = v;
    else this.next[ptr] = v;
  }

  /** get_free_entries(count): count refs from the head of the list; -1 where the kernel would expand the table. */
  private takeHead(count: number): number {
    if (this.freeCount < count) return -1;
    const ref = this.head;
    let h = this.head;
    this.freeCount -= count;
    for (let left = count; left > 0; left--) {
      this.bitmap[h] = 0;
      if (this.tailPtr === h) this.tailPtr = TAIL_HEAD;
      if (left > 1) h = this.next[h];
    }
    this.head = this.next[h];
    this.next[h] = LIST_END;
    if (this.freeCount === 0) {
      this.lastFree = LIST_END;
      this.tailPtr = TAIL_NULL;
    }
    return ref;
  }

  /** get_seq_entry_count(): the free refs of the tail. */
  private tailCount(): number {
    if (this.lastFree === LIST_END || this.tailPtr === TAIL_NULL) return 0;
    const first = this.deref(this.tailPtr);
    return first === LIST_END ? 0 : this.lastFree - first + 1;
  }

  /** get_free_seq(count): the lowest free run that fits, the list rebuilt in ref order; -1 if none. */
  private takeLowestRun(count: number): number {
    const bm = this.bitmap, size = this.size;
    let ret = -1;
    this.tailPtr = TAIL_HEAD;
    let last = TAIL_HEAD;
    let from = bm.indexOf(1);
    if (from < 0) from = size;
    while (from < size) {
      let to = bm.indexOf(0, from + 1);
      if (to < 0) to = size;
      let skip = false;
      if (ret < 0 && to - from >= count) {
        ret = from;
        bm.fill(0, ret, ret + count);
        from += count;
        this.freeCount -= count;
        if (from === to) skip = true;
      }
      if (!skip) {
        while (from < to) {
          this.store(last, from);
          last = from;
          this.lastFree = from;
          from++;
        }
        if (to < size) this.tailPtr = to - 1;
      }
      const nx = to + 1 < size ? bm.indexOf(1, to + 1) : -1;
      from = nx < 0 ? size : nx;
    }
    this.store(last, LIST_END);
    if (this.lastFree !== size - 1) this.tailPtr = TAIL_NULL;
    return ret;
  }

  /** gnttab_alloc_grant_reference_seq(count): the first of count consecutive refs, or -1 (-ENOSPC). */
  allocSeq(count: number): number {
    if (count === 1) return this.takeHead(1);
    // get_free_entries_seq
    if (this.freeCount < count) return -1;
    if (this.tailCount() < count) return this.takeLowestRun(count);
    const ret = this.deref(this.tailPtr);
    this.store(this.tailPtr, this.next[ret + count - 1]);
    this.freeCount -= count;
    if (this.freeCount === 0) this.tailPtr = TAIL_NULL;
    this.bitmap.fill(0, ret, ret + count);
    return ret;
  }

  /** put_free_entry_locked(ref): back at the head of the list (reserved refs are never freed). */
  put(ref: number, reserved: number): void {
    if (ref < reserved) return;
    this.next[ref] = this.head;
    this.head = ref;
    if (this.freeCount === 0) this.lastFree = ref;
    if (this.tailPtr === TAIL_HEAD) this.tailPtr = ref;
    this.freeCount++;
    this.bitmap[ref] = 1;
  }

  /** gnttab_free_grant_reference_seq(first, count): the refs put back last to first. */
  freeSeq(first: number, count: number, reserved: number): void {
    for (let i = count; i > 0; i--) this.put(first + i - 1, reserved);
  }

  /** The refs on the list, head first (for tests: the bitmap must hold exactly these). */
  listed(): number[] {
    const out: number[] = [];
    for (let r = this.head; r !== LIST_END && out.length <= this.size; r = this.next[r]) out.push(r);
    return out;
  }
}

/** xen_grant_dma_ops with its xen_grant_dma_data and the guest's grant table. */
export class XenGrantOps implements DmaMapOps {
  readonly kind = 'xen-grant' as const;
  readonly backendDomid: number;
  /** xen_grant_dma_data.broken. */
  broken = false;
  readonly nrRefs: number;
  readonly tablePhys: bigint;
  /** The free refs, as grant-table.c keeps them. */
  readonly freeList: GrantFreeList;
  private readonly mm: MachineMm;

  constructor(mm: MachineMm, cfg: XenGrantOpsConfig) {
    this.mm = mm;
    this.backendDomid = cfg.backendDomid;
    this.nrRefs = (cfg.frames ?? 4) * (XEN_PAGE / 8);
    this.tablePhys = allocZeroed(mm, this.nrRefs * 8);
    this.freeList = new GrantFreeList(this.nrRefs, GNTTAB_NR_RESERVED_ENTRIES);
  }

  private view(ref: number): DataView {
    const v = this.mm.mem.view(this.tablePhys + BigInt(ref * 8), 8);
    return new DataView(v.buffer, v.byteOffset, 8);
  }

  /** grant_entry_v1 of ref: flags, domid, frame. */
  entry(ref: number): { flags: number; domid: number; frame: number } {
    const v = this.view(ref);
    return { flags: v.getUint16(0, true), domid: v.getUint16(2, true), frame: v.getUint32(4, true) };
  }

  /** The raw 64-bit value of a grant entry (little endian: flags | domid << 16 | frame << 32). */
  rawEntry(ref: number): bigint {
    return this.view(ref).getBigUint64(0, true);
  }

  /** gnttab_alloc_grant_reference_seq: the first of n consecutive free refs; -1 (ENOSPC) if none. */
  private allocSeq(n: number): number {
    if (faultInjected(this.mm, 'ops-space', `Xen grant references, ${n}`)) return -1;
    return this.freeList.allocSeq(n);
  }

  /** gnttab_grant_foreign_access_ref (gnttab_update_entry_v1). */
  private grant(ref: number, frame: number, readonly: boolean): void {
    const v = this.view(ref);
    v.setUint16(2, this.backendDomid, true);
    v.setUint32(4, frame, true);
    v.setUint16(0, GTF_permit_access | (readonly ? GTF_readonly : 0), true);
  }

  /** gnttab_end_foreign_access_ref_v1: false while the backend reads or writes through the grant. */
  private endAccess(ref: number): boolean {
    const v = this.view(ref);
    const flags = v.getUint16(0, true);
    if (flags & (GTF_reading | GTF_writing)) return false;
    v.setUint16(0, 0, true);
    return true;
  }

  mapPhys(dev: Device, phys: bigint, size: number, dir: number, attrs: number): bigint {
    if (attrs & DMA_ATTR_MMIO) return DMA_MAPPING_ERROR;
    if (this.broken) return DMA_MAPPING_ERROR;
    const off = Number(phys % BigInt(this.mm.pageSize));
    const dmaOffset = off % XEN_PAGE;
    const pfnOffset = Math.floor(off / XEN_PAGE);
    const n = Math.ceil((dmaOffset + size) / XEN_PAGE);
    if (n === 0) {
      // Model deviation: 0 bytes at a Xen page boundary (a zero-length scatterlist entry) make
      // gnttab_alloc_grant_reference_seq(0) take get_free_entries_seq's tail path: it reads
      // *gnttab_free_tail_ptr (NULL once the free tail is used up) and relinks the list through
      // ref - 1, an entry that is not on it. The model refuses the entry instead.
      modelCheckEvent(this.mm.events, `${dev.name}: xen_grant_dma_map_phys of 0 bytes at 0x${phys.toString(16)}: gnttab_alloc_grant_reference_seq(0) `
        + 'would dereference gnttab_free_tail_ptr and corrupt the free grant list; refused', { dev: dev.name });
      return DMA_MAPPING_ERROR;
    }
    const g = this.allocSeq(n);
    if (g < 0) return DMA_MAPPING_ERROR;
    // page_to_xen_pfn(phys_to_page(phys)): the Xen frame of the CPU page's start
    const base = Number((phys - BigInt(off)) / BigInt(XEN_PAGE));
    for (let i = 0; i < n; i++) this.grant(g + i, base + i + pfnOffset, dir === DMA_TO_DEVICE);
    return (XEN_GRANT_DMA_ADDR_OFF | (BigInt(g) << 12n)) + BigInt(dmaOffset);
  }

  unmapPhys(dev: Device, addr: bigint, size: number): void {
    if (this.broken) return;
    const dmaOffset = Number(addr % BigInt(XEN_PAGE));
    const n = Math.ceil((dmaOffset + size) / XEN_PAGE);
    const g = Number((addr & ~XEN_GRANT_DMA_ADDR_OFF) >> 12n);
    if (g + n > this.nrRefs) {
      // Model deviation: the kernel would clear flags in, and link into the free list, entries past
      // gnttab_shared and gnttab_list (memory that is not theirs); the model refuses the unmap
      modelCheckEvent(this.mm.events, `${dev.name}: xen_grant_dma_unmap_phys of 0x${addr.toString(16)}: grant refs ${g}..${g + n - 1} `
        + `are past the grant table (${this.nrRefs} refs); refused`, { dev: dev.name });
      return;
    }
    for (let i = 0; i < n; i++) {
      if (!this.endAccess(g + i)) {
        // gnttab_end_foreign_access_ref's pr_warn, then xen_grant_dma_unmap_phys's dev_alert
        printkWarning(this.mm.events, 'xen-grant', `WARNING: g.e. ${hexAlt(g + i)} still in use!`, { ref: g + i });
        this.mm.events.record('INFO', 'xen-grant', `${dev.name}: Grant still in use by backend domain, disabled for further use`, { dev: dev.name, ref: g + i, level: 'alert' });
        this.broken = true;
        return;
      }
    }
    this.freeList.freeSeq(g, n, GNTTAB_NR_RESERVED_ENTRIES);
  }

  mapSg(dev: Device, ents: readonly DmaOpsEntry[], dir: number, attrs: number): Result<DmaOpsSeg[]> {
    return mapSgEachEntry(ents, attrs, 'granted', (e, a) => this.mapPhys(dev, e.phys, e.len, dir, a),
      (done) => this.unmapSg(dev, done));
  }

  unmapSg(dev: Device, segs: readonly DmaOpsSeg[]): void {
    for (const s of segs) this.unmapPhys(dev, s.addr, s.len);
  }

  /** xen_grant_dma_supported: only a 64-bit mask (grant addresses use bit 63). */
  dmaSupported(_dev: Device, mask: bigint): boolean {
    return mask === DMA_BIT_MASK(64);
  }

  /** The backend maps grant ref (Xen sets GTF_reading, or GTF_writing for a writable grant). */
  backendMap(ref: number, write: boolean): void {
    const v = this.view(ref);
    v.setUint16(0, v.getUint16(0, true) | (write ? GTF_writing : GTF_reading), true);
  }

  /** The backend unmaps grant ref. */
  backendUnmap(ref: number): void {
    const v = this.view(ref);
    v.setUint16(0, v.getUint16(0, true) & ~(GTF_reading | GTF_writing), true);
  }

  translate(_dev: Device, addr: bigint, write: boolean): DmaOpsXlate {
    if (!(addr & XEN_GRANT_DMA_ADDR_OFF)) return `Xen grant: 0x${addr.toString(16)} is not a grant address`;
    const ref = Number((addr & ~XEN_GRANT_DMA_ADDR_OFF) >> 12n);
    if (ref >= this.nrRefs) return `Xen grant: ref ${ref} is beyond the grant table`;
    const e = this.entry(ref);
    if ((e.flags & 3) !== GTF_permit_access) return `Xen grant: ref ${ref} is not granted`;
    if (e.domid !== this.backendDomid) return `Xen grant: ref ${ref} is granted to domain ${e.domid}`;
    if (write && e.flags & GTF_readonly) return `Xen grant: ref ${ref} is read-only`;
    const o = Number(addr % BigInt(XEN_PAGE));
    return { phys: BigInt(e.frame) * BigInt(XEN_PAGE) + BigInt(o), len: XEN_PAGE - o };
  }

  inspect(): DmaOpsState {
    const entries: Array<[number, bigint]> = [];
    const allocated: number[] = [];
    for (let r = 0; r < this.nrRefs; r++) {
      const raw = this.rawEntry(r);
      if ((raw & 0xffffn) !== 0n) entries.push([r, raw]);
      if (r >= GNTTAB_NR_RESERVED_ENTRIES && !this.freeList.bitmap[r]) allocated.push(r);
    }
    return {
      kind: 'xen-grant', ops: 'xen_grant_dma_ops', entries, allocated, hints: {}, flushes: 0, bounceBytes: 0,
      extra: { backendDomid: this.backendDomid, broken: this.broken, nrRefs: this.nrRefs },
    };
  }
}

function grantOpsOf(dev: Device): XenGrantOps {
  const ops = getDmaOps(dev);
  if (!(ops instanceof XenGrantOps)) throw new TypeError(`dev must use xen_grant_dma_ops, got ${dev.name} with ${ops?.kind ?? 'no dma_ops'}`);
  return ops;
}

/**
 * The backend domain maps the grant behind DMA address addr (Xen sets GTF_reading, or GTF_writing
 * when write): until xenGrantBackendUnmap, gnttab_end_foreign_access_ref fails for it.
 */
export function xenGrantBackendMap(dev: Device, addr: bigint, write: boolean): void {
  grantOpsOf(dev).backendMap(Number((addr & ~XEN_GRANT_DMA_ADDR_OFF) >> 12n), write);
}

/** The backend domain unmaps the grant behind DMA address addr. */
export function xenGrantBackendUnmap(dev: Device, addr: bigint): void {
  grantOpsOf(dev).backendUnmap(Number((addr & ~XEN_GRANT_DMA_ADDR_OFF) >> 12n));
}
