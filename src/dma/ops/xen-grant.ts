// Models: drivers/xen/grant-dma-ops.c (Linux 7.1: grant_to_dma / dma_to_grant with
// XEN_GRANT_DMA_ADDR_OFF, xen_grant_dma_map_phys, xen_grant_dma_unmap_phys marking the device broken
// when the backend still maps a grant, xen_grant_dma_map_sg / unmap_sg per entry,
// xen_grant_dma_supported) over drivers/xen/grant-table.c (grant_entry_v1 { u16 flags; u16 domid;
// u32 frame } in a shared table in guest RAM; gnttab_alloc_grant_reference_seq,
// gnttab_grant_foreign_access_ref, gnttab_end_foreign_access_ref_v1 refusing while GTF_reading or
// GTF_writing is set; the first GNTTAB_NR_RESERVED_ENTRIES refs are never handed out).
// Model deviation: the grant table has a fixed number of frames (the kernel grows it on demand up
// to gnttab_max_grant_frames), and every allocation is first-fit over the free refs (the kernel
// takes a single ref from the head of its free list).
// Model deviation: the backend domain is a test hook (xenGrantBackendMap / Unmap) that sets and
// clears GTF_reading / GTF_writing, as Xen does when the backend maps the grant.

import { faultInjected, type Result } from '../../base/internal.ts';
import type { MachineMm } from '../../mm/index.ts';
import type { Device } from '../../pci/index.ts';
import { DMA_ATTR_MMIO, DMA_BIT_MASK, DMA_MAPPING_ERROR, DMA_TO_DEVICE } from '../constants.ts';
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

/** xen_grant_dma_ops with its xen_grant_dma_data and the guest's grant table. */
export class XenGrantOps implements DmaMapOps {
  readonly kind = 'xen-grant' as const;
  readonly backendDomid: number;
  /** xen_grant_dma_data.broken. */
  broken = false;
  readonly nrRefs: number;
  readonly tablePhys: bigint;
  /** Free refs (1 = free), as gnttab_free_bitmap. */
  private readonly free: Uint8Array;
  private readonly mm: MachineMm;

  constructor(mm: MachineMm, cfg: XenGrantOpsConfig) {
    this.mm = mm;
    this.backendDomid = cfg.backendDomid;
    this.nrRefs = (cfg.frames ?? 4) * (XEN_PAGE / 8);
    this.tablePhys = allocZeroed(mm, this.nrRefs * 8);
    this.free = new Uint8Array(this.nrRefs).fill(1, GNTTAB_NR_RESERVED_ENTRIES);
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

  /** gnttab_alloc_grant_reference_seq: n consecutive free refs, first-fit; -1 (ENOSPC) if none. */
  private allocSeq(n: number): number {
    if (faultInjected(this.mm, 'ops-space', `Xen grant references, ${n}`)) return -1;
    let run = 0;
    for (let r = 0; r < this.nrRefs; r++) {
      run = this.free[r] ? run + 1 : 0;
      if (run === n) {
        const first = r - n + 1;
        this.free.fill(0, first, r + 1);
        return first;
      }
    }
    return -1;
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
    const g = this.allocSeq(n);
    if (g < 0) return DMA_MAPPING_ERROR;
    // page_to_xen_pfn(phys_to_page(phys)): the Xen frame of the CPU page's start
    const base = Number((phys - BigInt(off)) / BigInt(XEN_PAGE));
    for (let i = 0; i < n; i++) this.grant(g + i, base + i + pfnOffset, dir === DMA_TO_DEVICE);
    void dev;
    return (XEN_GRANT_DMA_ADDR_OFF | (BigInt(g) << 12n)) + BigInt(dmaOffset);
  }

  unmapPhys(dev: Device, addr: bigint, size: number): void {
    if (this.broken) return;
    const dmaOffset = Number(addr % BigInt(XEN_PAGE));
    const n = Math.ceil((dmaOffset + size) / XEN_PAGE);
    const g = Number((addr & ~XEN_GRANT_DMA_ADDR_OFF) >> 12n);
    for (let i = 0; i < n; i++) {
      if (!this.endAccess(g + i)) {
        this.mm.events.record('INFO', 'xen-grant', `${dev.name}: Grant still in use by backend domain, disabled for further use`, { dev: dev.name, ref: g + i });
        this.broken = true;
        return;
      }
    }
    this.free.fill(1, g, g + n);
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
      if (r >= GNTTAB_NR_RESERVED_ENTRIES && !this.free[r]) allocated.push(r);
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
