// Models: an RDMA NIC (the device, not its driver) in the manner of a ConnectX HCA driven by
// drivers/infiniband/hw/mlx5: memory keys whose context holds the start IOVA, length, access rights
// and log page size (mlx5_ifc.h: struct mlx5_ifc_mkc_bits: start_addr, len, lr/lw/rr/rw/a,
// log_page_size) and whose translation table (MTT) is a run of 8-byte big-endian entries, each a
// page's DMA address with the read/write bits in its low bits (mlx5_ib.h: MLX5_IB_MTT_READ,
// MLX5_IB_MTT_WRITE, MLX5_IB_MTT_PRESENT; mem.c: mlx5_ib_populate_pas()). The NIC executes RDMA
// WRITE, RDMA READ and SEND/RECV on one loopback RC queue pair: key lookup, bounds and access
// checks, MTT lookup (entries fetched by DMA through the NIC's own path), then the data moves by DMA
// (dev.dmaRead / dev.dmaWrite: IOMMU, dma-direct, P2P into a BAR).
//
// Every check and every translation of both sides of a work request happens before any byte moves,
// so a request that completes with an error status has moved nothing. The statuses are the ones
// the InfiniBand spec (and so enum ib_wc_status) gives a requester: a bad lkey, a local address out
// of the MR or a local access the MR does not allow is a local protection error; the same on the
// remote side (rkey) is a remote access error; a receive buffer too small is a local length error at
// the receiver and a remote invalid request error at the sender; no receive posted is an RNR retry
// exceeded after the retries.
//
// On-demand paging: an MTT entry without the bit the access needs (zapped or never filled) makes the
// NIC raise a page fault to the key's owner (mlx5: the page-fault EQE handled by
// drivers/infiniband/hw/mlx5/odp.c: mlx5_ib_eqe_pf_action -> pagefault_single_data_segment), which
// fills the entries; the NIC then re-reads the MTT once. A fault that does not resolve completes the
// request with the protection / access error of that side.
//
// Model deviation: the MTT lives in host coherent memory the NIC reads by DMA, where a ConnectX keeps
// it in ICM (host pages the firmware owns) and the driver writes it with UMR work requests; the
// entries, their format and their count are the same. The loopback queue pair never enters the
// error state: a failed request completes with its status and the next request runs (a real RC QP
// moves to the error state and flushes what follows with IB_WC_WR_FLUSH_ERR).

import { type Stats } from '../../base/index.ts';
import { dmaContextOf } from '../../dma/index.ts';
import type { Device } from '../../pci/index.ts';
import {
  IB_ACCESS_LOCAL_WRITE, IB_ACCESS_REMOTE_READ, IB_ACCESS_REMOTE_WRITE, IB_WC_GENERAL_ERR, IB_WC_LOC_LEN_ERR, IB_WC_LOC_PROT_ERR,
  IB_WC_REM_ACCESS_ERR, IB_WC_REM_INV_REQ_ERR, IB_WC_REM_OP_ERR, IB_WC_RNR_RETRY_EXC_ERR, IB_WC_SUCCESS, type IbWcStatus,
} from './verbs.ts';
import './counters.ts';

/** MTT entry bits (enum mlx5_ib_mtt_access_flags): the page may be read / written by the NIC. */
export const MLX5_IB_MTT_READ = 1;
export const MLX5_IB_MTT_WRITE = 2;
/** MLX5_IB_MTT_PRESENT: both bits, what a pinned registration writes. */
export const MLX5_IB_MTT_PRESENT = MLX5_IB_MTT_READ | MLX5_IB_MTT_WRITE;
/** Bytes of one MTT entry (__be64). */
export const MTT_ENTRY_BYTES = 8;
/** MTT entries per translation chunk the NIC is given (one 4 KiB page of entries). */
export const MTT_ENTRIES_PER_CHUNK = 512;
/** The NIC's low bits of an entry that are flags, not address (MLX5_ADAPTER_PAGE_SHIFT: pages are at least 4 KiB). */
const ENTRY_FLAG_MASK = 0xfffn;

/**
 * The NIC's page-fault upcall for a key with on-demand paging: make [iova, iova + len) of the MR
 * translatable for this access (filling MTT entries). Returns whether it did; the NIC re-reads the
 * MTT once afterwards either way.
 */
export type RdmaNicPageFault = (iova: bigint, len: number, write: boolean) => boolean;

/** A memory key's context as the driver creates it (CREATE_MKEY): what the NIC checks and translates with. */
export interface RdmaMkeyContext {
  /** Start IOVA (mkc.start_addr). */
  readonly start: bigint;
  /** Bytes (mkc.len). */
  readonly length: number;
  /** IB_ACCESS_* the key grants (mkc.lw / rr / rw; local read is always granted). */
  readonly access: number;
  /** log2 of the MTT page size (mkc.log_page_size). */
  readonly pageShift: number;
  /** DMA addresses of the MTT chunks, MTT_ENTRIES_PER_CHUNK entries each. */
  readonly mtt: readonly bigint[];
  /** Entries in all. */
  readonly nEntries: number;
  /** On-demand paging: the upcall on an invalid entry (null: an invalid entry is an error). */
  readonly pageFault: RdmaNicPageFault | null;
}

interface Mkey extends RdmaMkeyContext {
  readonly key: number;
}

/** One work completion. */
export interface IbWc {
  readonly status: IbWcStatus;
  /** Bytes the operation moved (0 unless IB_WC_SUCCESS). */
  readonly byteLen: number;
}

/** A send completion with the receive completion it produced (null when no receive was consumed). */
export interface IbSendWc extends IbWc {
  readonly recv: IbWc | null;
}

/** One DMA piece of a translated range. */
interface Piece { dma: bigint; len: number }

type Side = 'local' | 'remote';
type Translation = { ok: true; pieces: Piece[] } | { ok: false; status: IbWcStatus; why: string };

interface RecvWqe { lkey: number; addr: bigint; len: number }

/** The NIC model on a PCI function. */
export class RdmaNic {
  readonly dev: Device;
  private readonly stats: Stats;
  private readonly mkeys = new Map<number, Mkey>();
  private nextIndex = 1;
  private variant = 0;
  private readonly rq: RecvWqe[] = [];

  constructor(dev: Device) {
    this.dev = dev;
    this.stats = dmaContextOf(dev).mm.stats;
  }

  /** CREATE_MKEY: returns the key (index << 8 | variant byte, as mlx5_idx_to_mkey() and the key byte make it). */
  createMkey(ctx: RdmaMkeyContext): number {
    const index = this.nextIndex++;
    this.variant = (this.variant + 1) & 0xff;
    const key = ((index << 8) | this.variant) >>> 0;
    this.mkeys.set(index, { ...ctx, key });
    return key;
  }

  /** DESTROY_MKEY. Returns whether the key existed. */
  destroyMkey(key: number): boolean {
    const k = this.mkeys.get(key >>> 8);
    if (k === undefined || k.key !== key) return false;
    this.mkeys.delete(key >>> 8);
    return true;
  }

  /** Keys the NIC holds now. */
  get mkeyCount(): number {
    return this.mkeys.size;
  }

  /** The receive queue's depth. */
  get recvQueued(): number {
    return this.rq.length;
  }

  /** Queues a receive buffer (validated when a send consumes it). */
  postRecv(lkey: number, addr: bigint, len: number): void {
    this.rq.push({ lkey, addr, len });
  }

  /** RDMA WRITE: local [laddr, +len) under lkey to remote [raddr, +len) under rkey. */
  rdmaWrite(lkey: number, laddr: bigint, rkey: number, raddr: bigint, len: number): IbWc {
    const src = this.translate(lkey, laddr, len, 'local', false);
    if (!src.ok) return this.fail(src.status);
    const dst = this.translate(rkey, raddr, len, 'remote', true);
    if (!dst.ok) return this.fail(dst.status);
    return this.move(src.pieces, dst.pieces, len);
  }

  /** RDMA READ: remote [raddr, +len) under rkey into local [laddr, +len) under lkey. */
  rdmaRead(lkey: number, laddr: bigint, rkey: number, raddr: bigint, len: number): IbWc {
    const dst = this.translate(lkey, laddr, len, 'local', true);
    if (!dst.ok) return this.fail(dst.status);
    const src = this.translate(rkey, raddr, len, 'remote', false);
    if (!src.ok) return this.fail(src.status);
    return this.move(src.pieces, dst.pieces, len);
  }

  /** SEND of local [addr, +len) under lkey into the first queued receive. */
  send(lkey: number, addr: bigint, len: number): IbSendWc {
    const src = this.translate(lkey, addr, len, 'local', false);
    if (!src.ok) return { ...this.fail(src.status), recv: null };
    const r = this.rq.shift();
    if (r === undefined) return { ...this.fail(IB_WC_RNR_RETRY_EXC_ERR), recv: null };
    if (len > r.len) {
      return { ...this.fail(IB_WC_REM_INV_REQ_ERR), recv: { status: IB_WC_LOC_LEN_ERR, byteLen: 0 } };
    }
    const dst = this.translate(r.lkey, r.addr, len, 'local', true);
    if (!dst.ok) {
      return { ...this.fail(IB_WC_REM_OP_ERR), recv: { status: dst.status, byteLen: 0 } };
    }
    const wc = this.move(src.pieces, dst.pieces, len);
    return { ...wc, recv: { status: wc.status, byteLen: wc.byteLen } };
  }

  private fail(status: IbWcStatus): IbWc {
    this.stats.rdmaNicWrs++;
    this.stats.rdmaNicErrors++;
    return { status, byteLen: 0 };
  }

  /** Reads source pieces, then writes destination pieces; the byte counts are equal (len). */
  private move(src: Piece[], dst: Piece[], len: number): IbWc {
    const buf = new Uint8Array(len);
    let at = 0;
    for (const p of src) {
      const r = this.dev.dmaRead(p.dma, p.len);
      if (!r.ok) return this.fail(IB_WC_GENERAL_ERR);
      buf.set(r.value, at);
      at += p.len;
    }
    at = 0;
    for (const p of dst) {
      const w = this.dev.dmaWrite(p.dma, buf.subarray(at, at + p.len));
      if (!w.ok) return this.fail(IB_WC_GENERAL_ERR);
      at += p.len;
    }
    this.stats.rdmaNicWrs++;
    this.stats.rdmaNicBytes += len;
    return { status: IB_WC_SUCCESS, byteLen: len };
  }

  /** Key lookup, bounds, access, then the MTT walk (with one ODP fault and retry). */
  private translate(key: number, addr: bigint, len: number, side: Side, write: boolean): Translation {
    const bad: IbWcStatus = side === 'local' ? IB_WC_LOC_PROT_ERR : IB_WC_REM_ACCESS_ERR;
    if (len === 0) return { ok: true, pieces: [] };
    const k = this.mkeys.get(key >>> 8);
    if (k === undefined || k.key !== key) return { ok: false, status: bad, why: `no key 0x${key.toString(16)}` };
    if (addr < k.start || addr + BigInt(len) > k.start + BigInt(k.length)) return { ok: false, status: bad, why: 'out of bounds' };
    const need = side === 'local' ? (write ? IB_ACCESS_LOCAL_WRITE : 0) : (write ? IB_ACCESS_REMOTE_WRITE : IB_ACCESS_REMOTE_READ);
    if ((k.access & need) !== need) return { ok: false, status: bad, why: 'access' };
    let t = this.walk(k, addr, len, write);
    if (t === 'invalid' && k.pageFault !== null) {
      this.stats.rdmaNicPageFaults++;
      const resolved = k.pageFault(addr, len, write);
      t = this.walk(k, addr, len, write);
      if (resolved && t !== 'invalid' && t !== 'dma') this.stats.rdmaNicPageFaultsResolved++;
    }
    if (t === 'invalid') return { ok: false, status: bad, why: 'invalid MTT entry' };
    if (t === 'dma') return { ok: false, status: IB_WC_GENERAL_ERR, why: 'MTT fetch faulted' };
    return { ok: true, pieces: t };
  }

  /** Reads the MTT entries of [addr, addr+len) by DMA and returns the DMA pieces (contiguous ones merged). */
  private walk(k: Mkey, addr: bigint, len: number, write: boolean): Piece[] | 'invalid' | 'dma' {
    const shift = BigInt(k.pageShift);
    const pgsz = 1n << shift;
    const first = Number((addr >> shift) - (k.start >> shift));
    const last = Number(((addr + BigInt(len) - 1n) >> shift) - (k.start >> shift));
    if (last >= k.nEntries) return 'invalid';
    const needBit = BigInt(write ? MLX5_IB_MTT_WRITE : MLX5_IB_MTT_READ);
    const pieces: Piece[] = [];
    let i = first;
    let pos = addr;
    let left = len;
    while (i <= last) {
      const chunk = Math.floor(i / MTT_ENTRIES_PER_CHUNK);
      const inChunk = i % MTT_ENTRIES_PER_CHUNK;
      const n = Math.min(last - i + 1, MTT_ENTRIES_PER_CHUNK - inChunk);
      const r = this.dev.dmaRead(k.mtt[chunk] + BigInt(inChunk * MTT_ENTRY_BYTES), n * MTT_ENTRY_BYTES);
      if (!r.ok) return 'dma';
      this.stats.rdmaNicMttReads += n;
      const view = new DataView(r.value.buffer, r.value.byteOffset, r.value.byteLength);
      for (let j = 0; j < n; j++, i++) {
        const e = view.getBigUint64(j * MTT_ENTRY_BYTES, false);
        if ((e & needBit) === 0n) return 'invalid';
        const off = pos & (pgsz - 1n);
        const take = Math.min(left, Number(pgsz - off));
        const dma = (e & ~ENTRY_FLAG_MASK & ~(pgsz - 1n)) + off;
        const prev = pieces.length > 0 ? pieces[pieces.length - 1] : null;
        if (prev !== null && prev.dma + BigInt(prev.len) === dma) prev.len += take;
        else pieces.push({ dma, len: take });
        pos += BigInt(take);
        left -= take;
      }
    }
    return pieces;
  }
}
