// Models: an NVMe controller on PCIe executing NVM command set I/O (NVM Express Base Specification
// 2.x: the 64-byte submission queue entry, "Physical Region Page Entry and List", "Scatter Gather
// List (SGL)", the Generic Command Status values; NVM Command Set: Read 02h, Write 01h, Flush 00h).
// It is the device side of what drivers/nvme/host/pci.c builds (nvme_pci_setup_data_prp,
// nvme_pci_setup_data_sgl): it reads the data pointer of a command, fetches PRP list pages and SGL
// segments from host memory by DMA through the device's own path (dev.dmaRead / dev.dmaWrite:
// IOMMU, dma_range_map, P2P), then moves the data between the namespace and host memory.
//
// Validation comes first and is complete: the whole descriptor walk is done (every list page and
// segment fetched, every entry checked) before any byte of data moves, so a malformed command
// changes neither the namespace nor host memory. The statuses are the ones the Linux kernel's own
// controller implementation returns (drivers/nvme/target/pci-epf.c: nvmet_pci_epf_iod_parse_prps,
// nvmet_pci_epf_iod_parse_sgls, nvmet_pci_epf_alloc_iod_data_buf) where it checks the case, and the
// specification's status descriptions otherwise (include/linux/nvme.h names them NVME_SC_*).
// Model deviation: a DMA fault while fetching a PRP list page or an SGL segment is Data Transfer
// Error here, as QEMU's hw/nvme (nvme_map_prp, nvme_map_sgl) reports it; pci-epf answers it with
// Internal Error (NVME_SC_INTERNAL, 0x06: nvmet_pci_epf_get_prp_list / _get_sgl_segment failing),
// the status it also gives its own allocation failures.
//
// A status is the 15-bit Status Field of the completion queue entry without its DNR, More and CRD
// bits: SCT << 8 | SC, as the host driver reads it (nvme_req(req)->status = cqe.status >> 1, masked
// with NVME_SCT_SC_MASK). Every failure here is one a retry cannot fix, so completions also carry
// dnr: true (NVME_STATUS_DNR), as pci-epf sets it.

import { SlotKey, checkLen, type Stats } from '../../base/index.ts';
import { dmaContextOf } from '../../dma/index.ts';
import type { Device, PciNvmeConfig } from '../../pci/index.ts';
import { NvmeNamespace } from './namespace.ts';
import './counters.ts';

/** The controller's memory page size: CAP.MPSMIN = 0 and CC.MPS = 0 select 4 KiB (the host's NVME_CTRL_PAGE_SIZE). */
const CTRL_PAGE_SIZE = 4096;
const PAGE = CTRL_PAGE_SIZE;
const PAGE_MASK = BigInt(PAGE - 1);
const U64_LIMIT = 1n << 64n;

/** Bytes of a submission queue entry and of an SGL descriptor. */
export const NVME_SQE_BYTES = 64;
export const NVME_SGL_DESC_BYTES = 16;

/** I/O command opcodes of the NVM command set (enum nvme_opcode). */
export const NVME_CTRL_OP_FLUSH = 0x00;
export const NVME_CTRL_OP_WRITE = 0x01;
export const NVME_CTRL_OP_READ = 0x02;

/** PSDT (CDW0 bits 15:14, bits 7:6 of byte 1): 00b PRPs, 01b SGL (NVME_CMD_SGL_METABUF), 10b SGL + MPTR SGL, 11b reserved. */
export const NVME_CTRL_PSDT_PRP = 0;
export const NVME_CTRL_PSDT_SGL = 1;
export const NVME_CTRL_PSDT_SGL_MPTR_SGL = 2;

/**
 * SGL identifier byte (byte 15 of a descriptor): descriptor type in bits 7:4, sub type in bits 3:0
 * (0h = address). NVME_SGL_FMT_DATA_DESC / _SEG_DESC / _LAST_SEG_DESC << 4 with NVME_SGL_FMT_ADDRESS.
 */
export const NVME_CTRL_SGL_DATA_BLOCK = 0x00;
export const NVME_CTRL_SGL_SEGMENT = 0x20;
export const NVME_CTRL_SGL_LAST_SEGMENT = 0x30;

/**
 * Status values (SCT << 8 | SC; all are SCT 0h, Generic Command Status). Spec names; the kernel's
 * NVME_SC_* names in brackets.
 */
export const NVME_CTRL_STATUS = Object.freeze({
  /** Successful Completion [NVME_SC_SUCCESS]. */
  SUCCESS: 0x00,
  /** Invalid Command Opcode [NVME_SC_INVALID_OPCODE]. */
  INVALID_OPCODE: 0x01,
  /** Invalid Field in Command [NVME_SC_INVALID_FIELD]: reserved PSDT/FUSE, SGL without SGL support, over MDTS. */
  INVALID_FIELD: 0x02,
  /** Data Transfer Error [NVME_SC_DATA_XFER_ERROR]: a DMA of a list, segment or data faulted. */
  DATA_TRANSFER_ERROR: 0x04,
  /** Invalid Namespace or Format [NVME_SC_INVALID_NS]. */
  INVALID_NAMESPACE: 0x0b,
  /** Invalid SGL Segment Descriptor [NVME_SC_SGL_INVALID_LAST]: bad (Last) Segment length, a Last Segment that chains. */
  INVALID_SGL_SEGMENT_DESCRIPTOR: 0x0d,
  /** Invalid Number of SGL Descriptors [NVME_SC_SGL_INVALID_COUNT]: a (Last) Segment descriptor not last in its segment. */
  INVALID_NUMBER_OF_SGL_DESCRIPTORS: 0x0e,
  /** Data SGL Length Invalid [NVME_SC_SGL_INVALID_DATA]: the data blocks' total is not the transfer length. */
  DATA_SGL_LENGTH_INVALID: 0x0f,
  /** SGL Descriptor Type Invalid [NVME_SC_SGL_INVALID_TYPE]. */
  SGL_DESCRIPTOR_TYPE_INVALID: 0x11,
  /** PRP Offset Invalid [NVME_SC_PRP_INVALID_OFFSET]. */
  PRP_OFFSET_INVALID: 0x13,
  /** LBA Out of Range [NVME_SC_LBA_RANGE]. */
  LBA_OUT_OF_RANGE: 0x80,
});

const STATUS_NAMES: Readonly<Record<number, string>> = {
  0x00: 'Successful Completion', 0x01: 'Invalid Command Opcode', 0x02: 'Invalid Field in Command',
  0x04: 'Data Transfer Error', 0x0b: 'Invalid Namespace or Format', 0x0d: 'Invalid SGL Segment Descriptor',
  0x0e: 'Invalid Number of SGL Descriptors', 0x0f: 'Data SGL Length Invalid', 0x11: 'SGL Descriptor Type Invalid',
  0x13: 'PRP Offset Invalid', 0x80: 'LBA Out of Range',
};

/** The specification's name of a status this controller returns, or its hex value. */
export function nvmeCtrlStatusName(status: number): string {
  return STATUS_NAMES[status] ?? `status 0x${status.toString(16)}`;
}

/**
 * Model deviation: the most SGL descriptors one command may use (data and segment descriptors of
 * all its segments). The specification leaves the bound to the controller; this one keeps a
 * pathological SGL (e.g. millions of zero-length data blocks) from running without end.
 */
export const NVME_CTRL_MAX_SGL_DESCRIPTORS = 1 << 20;

/** One namespace as Identify Namespace reports it. */
export interface NvmeIdentifyNamespace {
  readonly nsid: number;
  /** NSZE: size in logical blocks. */
  readonly nsze: number;
  /** Logical block size (2^LBADS of the active LBA format). */
  readonly lbaBytes: number;
}

/** The Identify data the host driver reads (the fields the model gives meaning to). */
export interface NvmeIdentify {
  /** PCI vendor ID (VID). */
  readonly vid: number;
  /** Model number (MN). */
  readonly mn: string;
  /** MDTS: the largest data transfer is 2^mdts units of CAP.MPSMIN (4 KiB); 0 = no limit. */
  readonly mdts: number;
  /** The MDTS limit in bytes, or null for none. */
  readonly maxDataBytes: number | null;
  /** SGLs supported (SGLS bits 1:0 non-zero). */
  readonly sgls: boolean;
  /** The SGLS field: 1 (NVME_CTRL_SGLS_BYTE_ALIGNED: SGLs, no alignment requirement) or 0. */
  readonly sglsField: number;
  /** CAP.MPSMIN: the minimum memory page size is 2^(12 + mpsmin); 0 here. */
  readonly mpsmin: number;
  /** NN: the largest namespace ID. */
  readonly nn: number;
  /** The active namespaces, by ascending NSID. */
  readonly namespaces: readonly NvmeIdentifyNamespace[];
}

/** A completion queue entry as far as the host needs it. */
export interface NvmeCompletion {
  /** SCT << 8 | SC (0 = success); see nvmeCtrlStatusName. */
  readonly status: number;
  /** The command identifier of the submission (CID). */
  readonly cid: number;
  /** Do Not Retry: set on every failure of this model (none is transient). */
  readonly dnr: boolean;
}

/** The DMA pieces a command's data pointer describes, in data order, physically contiguous runs merged. */
interface Pieces {
  readonly addrs: bigint[];
  readonly lens: number[];
}

type Walk = Pieces | number;

/** An SGL (Last) Segment descriptor: where the next segment is and its length. */
interface SegmentDesc { readonly type: number; readonly addr: bigint; readonly len: number }

function addPiece(p: Pieces, addr: bigint, len: number): void {
  const n = p.addrs.length;
  if (n > 0 && p.addrs[n - 1]! + BigInt(p.lens[n - 1]!) === addr) p.lens[n - 1]! += len;
  else {
    p.addrs.push(addr);
    p.lens.push(len);
  }
}

const S = NVME_CTRL_STATUS;

/** The device model of one NVMe controller, attached to its PCI function. */
export class NvmeController {
  readonly dev: Device;
  readonly identify: NvmeIdentify;
  private readonly ns = new Map<number, NvmeNamespace>();
  private readonly stats: Stats;

  constructor(dev: Device, config: PciNvmeConfig, vid = 0) {
    this.dev = dev;
    this.stats = dmaContextOf(dev).mm.stats;
    for (const n of config.namespaces) this.ns.set(n.nsid, new NvmeNamespace(n.nsid, n.bytes, n.lbaBytes));
    const namespaces = [...this.ns.values()].sort((a, b) => a.nsid - b.nsid)
      .map((n) => Object.freeze({ nsid: n.nsid, nsze: n.nsze, lbaBytes: n.lbaBytes }));
    this.identify = Object.freeze({
      vid, mn: 'phyr NVMe controller model', mdts: config.mdts,
      maxDataBytes: config.mdts === 0 ? null : 2 ** config.mdts * PAGE,
      sgls: config.sgls, sglsField: config.sgls ? 1 : 0, mpsmin: 0,
      nn: Math.max(...namespaces.map((n) => n.nsid)),
      namespaces: Object.freeze(namespaces),
    });
  }

  /** The namespace with this NSID. @throws RangeError for an NSID that is not active. */
  namespace(nsid: number): NvmeNamespace {
    const n = this.ns.get(nsid);
    if (n === undefined) throw new RangeError(`nsid must be an active namespace of ${this.dev.name} (${[...this.ns.keys()].join(', ')}), got ${String(nsid)}`);
    return n;
  }

  /**
   * Executes one I/O submission queue entry (64 bytes, little-endian, as the host wrote it) and
   * returns its completion. On any non-zero status no data byte moved, except after a DMA fault on
   * the data of a Read, where earlier pieces had already reached host memory (as on hardware).
   * @throws TypeError / RangeError if sqe is not a 64-byte Uint8Array.
   */
  execute(sqe: Uint8Array): NvmeCompletion {
    if (!(sqe instanceof Uint8Array)) throw new TypeError(`sqe must be a Uint8Array, got ${typeof sqe}`);
    if (sqe.length !== NVME_SQE_BYTES) throw new RangeError(`sqe must be ${NVME_SQE_BYTES} bytes, got ${sqe.length}`);
    const dv = new DataView(sqe.buffer, sqe.byteOffset, NVME_SQE_BYTES);
    const cid = dv.getUint16(2, true);
    const status = this.run(dv);
    this.stats.nvmeCtrlCommands++;
    if (status !== 0) this.stats.nvmeCtrlErrors++;
    return { status, cid, dnr: status !== 0 };
  }

  private run(dv: DataView): number {
    const opcode = dv.getUint8(0);
    const flags = dv.getUint8(1);
    const fuse = flags & 0x3;
    const psdt = flags >> 6;
    const nsid = dv.getUint32(4, true);
    if (opcode !== NVME_CTRL_OP_READ && opcode !== NVME_CTRL_OP_WRITE && opcode !== NVME_CTRL_OP_FLUSH) return S.INVALID_OPCODE;
    // Fused operations are not supported (FUSES = 0); PSDT 11b is reserved.
    if (fuse !== 0 || psdt === 3) return S.INVALID_FIELD;
    if (opcode === NVME_CTRL_OP_FLUSH) {
      // NSID FFFFFFFFh flushes every namespace (VWC.FB reports that it is allowed).
      return nsid === 0xffffffff || this.ns.has(nsid) ? S.SUCCESS : S.INVALID_NAMESPACE;
    }
    const ns = this.ns.get(nsid);
    if (ns === undefined) return S.INVALID_NAMESPACE;
    if (psdt !== NVME_CTRL_PSDT_PRP && !this.identify.sgls) return S.INVALID_FIELD;
    const slba = dv.getBigUint64(40, true);
    const blocks = (dv.getUint32(48, true) & 0xffff) + 1;
    const len = blocks * ns.lbaBytes;
    // Checked in this order as QEMU's hw/nvme does (nvme_check_mdts, then nvme_check_bounds); the
    // specification leaves the order to the controller.
    const max = this.identify.maxDataBytes;
    if (max !== null && len > max) return S.INVALID_FIELD;
    if (slba + BigInt(blocks) > BigInt(ns.nsze)) return S.LBA_OUT_OF_RANGE;

    const walk = psdt === NVME_CTRL_PSDT_PRP ? this.walkPrps(dv, len) : this.walkSgl(dv, len);
    if (typeof walk === 'number') return walk;
    const off = Number(slba) * ns.lbaBytes;
    return opcode === NVME_CTRL_OP_WRITE ? this.hostToMedia(ns, off, len, walk) : this.mediaToHost(ns, off, walk);
  }

  /** Fetches a PRP list page or SGL segment piece by DMA; null when the read faulted. */
  private fetch(addr: bigint, len: number): DataView | null {
    const r = this.dev.dmaRead(addr, len);
    if (!r.ok) return null;
    this.stats.nvmeCtrlDescriptorBytes += len;
    return new DataView(r.value.buffer, r.value.byteOffset, len);
  }

  /**
   * The PRP walk: PRP1 (a dword-aligned offset allowed); then, if the data crosses one more page,
   * PRP2 is that page (offset 0), else PRP2 points to a PRP list. A list page holds
   * (4096 - offset) / 8 entries; when more pages remain than entries, its last entry points to the
   * next list page. Every entry after PRP1, and every list link, has offset 0.
   */
  private walkPrps(dv: DataView, len: number): Walk {
    const prp1 = dv.getBigUint64(24, true);
    const prp2 = dv.getBigUint64(32, true);
    const off1 = Number(prp1 & PAGE_MASK);
    // bits 1:0 of a PRP entry are 00b (nvmet_pci_epf_iod_parse_prps: ofst & 0x3)
    if ((off1 & 3) !== 0) return S.PRP_OFFSET_INVALID;
    const p: Pieces = { addrs: [], lens: [] };
    const first = Math.min(len, PAGE - off1);
    addPiece(p, prp1, first);
    let left = len - first;
    if (left === 0) return p;
    if (left <= PAGE) {
      if ((prp2 & PAGE_MASK) !== 0n) return S.PRP_OFFSET_INVALID;
      addPiece(p, prp2, left);
      return p;
    }
    // PRP2 is a PRP List pointer: its offset may be non-zero but is qword-aligned (entries are qwords).
    let list = prp2;
    if ((list & 7n) !== 0n) return S.PRP_OFFSET_INVALID;
    let pages = Math.ceil(left / PAGE);
    while (pages > 0) {
      const slots = (PAGE - Number(list & PAGE_MASK)) / 8;
      const link = pages > slots;
      const n = link ? slots : pages;
      const entries = this.fetch(list, n * 8);
      if (entries === null) return S.DATA_TRANSFER_ERROR;
      this.stats.nvmeCtrlDescriptorLists++;
      const data = link ? n - 1 : n;
      for (let i = 0; i < data; i++) {
        const e = entries.getBigUint64(i * 8, true);
        if ((e & PAGE_MASK) !== 0n) return S.PRP_OFFSET_INVALID;
        const l = Math.min(left, PAGE);
        addPiece(p, e, l);
        left -= l;
      }
      pages -= data;
      if (link) {
        list = entries.getBigUint64((n - 1) * 8, true);
        if ((list & PAGE_MASK) !== 0n) return S.PRP_OFFSET_INVALID;
      }
    }
    return p;
  }

  /**
   * The SGL walk: SGL1 in the command is a Data Block (the whole transfer) or a (Last) Segment
   * descriptor pointing to a segment of 16-byte descriptors. A segment's last descriptor may be a
   * Segment (another segment follows) or Last Segment (the final one follows) descriptor; anywhere
   * else that is "Invalid Number of SGL Descriptors", and in the segment of a Last Segment
   * descriptor it is "Invalid SGL Segment Descriptor". Data Blocks must add up to exactly the
   * transfer length: this controller does not report SGLS bit 18 (SGL length larger than data).
   * Zero-length Data Blocks move nothing. Bit Bucket, Keyed and Transport descriptors and any sub
   * type other than 0h (address) are "SGL Descriptor Type Invalid" (a PCIe controller without them:
   * nvmet_pci_epf_iod_parse_sgl_segments compares the whole identifier byte).
   */
  private walkSgl(dv: DataView, len: number): Walk {
    const type = dv.getUint8(39);
    const addr = dv.getBigUint64(24, true);
    const dlen = dv.getUint32(32, true);
    const p: Pieces = { addrs: [], lens: [] };
    if (type === NVME_CTRL_SGL_DATA_BLOCK) {
      if (dlen !== len || addr + BigInt(dlen) > U64_LIMIT) return S.DATA_SGL_LENGTH_INVALID;
      addPiece(p, addr, dlen);
      return p;
    }
    if (type !== NVME_CTRL_SGL_SEGMENT && type !== NVME_CTRL_SGL_LAST_SEGMENT) return S.SGL_DESCRIPTOR_TYPE_INVALID;
    let seg: SegmentDesc | null = { type, addr, len: dlen };
    let left = len;
    let descriptors = 0;
    while (seg !== null) {
      if (seg.len === 0 || seg.len % NVME_SGL_DESC_BYTES !== 0) return S.INVALID_SGL_SEGMENT_DESCRIPTOR;
      if (seg.addr + BigInt(seg.len) > U64_LIMIT) return S.DATA_SGL_LENGTH_INVALID;
      const n = seg.len / NVME_SGL_DESC_BYTES;
      descriptors += n;
      if (descriptors > NVME_CTRL_MAX_SGL_DESCRIPTORS) return S.INVALID_NUMBER_OF_SGL_DESCRIPTORS;
      this.stats.nvmeCtrlDescriptorLists++;
      const before = left;
      let next: SegmentDesc | null = null;
      // fetched 256 descriptors (one 4 KiB page) at a time
      for (let base = 0; base < n; base += 256) {
        const count = Math.min(256, n - base);
        const d = this.fetch(seg.addr + BigInt(base * NVME_SGL_DESC_BYTES), count * NVME_SGL_DESC_BYTES);
        if (d === null) return S.DATA_TRANSFER_ERROR;
        for (let j = 0; j < count; j++) {
          const at = j * NVME_SGL_DESC_BYTES;
          const t = d.getUint8(at + 15);
          const a = d.getBigUint64(at, true);
          const l = d.getUint32(at + 8, true);
          if (t === NVME_CTRL_SGL_SEGMENT || t === NVME_CTRL_SGL_LAST_SEGMENT) {
            if (base + j !== n - 1) return S.INVALID_NUMBER_OF_SGL_DESCRIPTORS;
            if (seg.type === NVME_CTRL_SGL_LAST_SEGMENT) return S.INVALID_SGL_SEGMENT_DESCRIPTOR;
            next = { type: t, addr: a, len: l };
            continue;
          }
          if (t !== NVME_CTRL_SGL_DATA_BLOCK) return S.SGL_DESCRIPTOR_TYPE_INVALID;
          if (l === 0) continue;
          if (l > left || a + BigInt(l) > U64_LIMIT) return S.DATA_SGL_LENGTH_INVALID;
          addPiece(p, a, l);
          left -= l;
        }
      }
      // Model deviation: a segment that moves no data but chains to another is refused (as QEMU's
      // hw/nvme nvme_map_sgl does), so a segment that points to itself cannot loop for ever.
      if (next !== null && left === before) return S.INVALID_SGL_SEGMENT_DESCRIPTOR;
      seg = next;
    }
    if (left !== 0) return S.DATA_SGL_LENGTH_INVALID;
    return p;
  }

  /** Write: reads every piece from host memory first (a fault stores nothing), then stores them in order. */
  private hostToMedia(ns: NvmeNamespace, off: number, len: number, p: Pieces): number {
    const got: Uint8Array[] = [];
    for (let i = 0; i < p.addrs.length; i++) {
      const r = this.dev.dmaRead(p.addrs[i]!, p.lens[i]!);
      if (!r.ok) return S.DATA_TRANSFER_ERROR;
      got.push(r.value);
    }
    let at = off;
    for (const piece of got) {
      ns.write(at, piece);
      at += piece.length;
    }
    this.stats.nvmeCtrlDataTransfers += p.addrs.length;
    this.stats.nvmeCtrlDataBytes += len;
    return S.SUCCESS;
  }

  /** Read: writes the media's bytes to each piece in order. */
  private mediaToHost(ns: NvmeNamespace, off: number, p: Pieces): number {
    let at = off;
    for (let i = 0; i < p.addrs.length; i++) {
      const l = p.lens[i]!;
      const r = this.dev.dmaWrite(p.addrs[i]!, ns.read(at, l));
      this.stats.nvmeCtrlDataTransfers++;
      if (!r.ok) return S.DATA_TRANSFER_ERROR;
      at += l;
      this.stats.nvmeCtrlDataBytes += l;
    }
    return S.SUCCESS;
  }

  /** Checks a block range of a namespace; returns the namespace and the byte offset. */
  private range(nsid: number, slba: bigint, nlb: number): { ns: NvmeNamespace; off: number } {
    const ns = this.namespace(nsid);
    if (typeof slba !== 'bigint' || slba < 0n) throw new RangeError(`slba must be a bigint >= 0, got ${String(slba)}`);
    checkLen('nlb', nlb);
    if (slba + BigInt(nlb) > BigInt(ns.nsze)) {
      throw new RangeError(`slba + nlb must be <= the namespace size (${ns.nsze} blocks), got ${slba} + ${nlb}`);
    }
    return { ns, off: Number(slba) * ns.lbaBytes };
  }

  /** The bytes of nlb blocks (a count, not zero-based) from slba of a namespace (for checks; no DMA, no counters). */
  readBlocks(nsid: number, slba: bigint, nlb: number): Uint8Array {
    const { ns, off } = this.range(nsid, slba, nlb);
    return ns.read(off, nlb * ns.lbaBytes);
  }

  /** Stores whole blocks at slba of a namespace (for set-up and checks; no DMA, no counters). */
  writeBlocks(nsid: number, slba: bigint, data: Uint8Array): void {
    if (!(data instanceof Uint8Array)) throw new TypeError(`data must be a Uint8Array, got ${typeof data}`);
    const lba = this.namespace(nsid).lbaBytes;
    if (data.length % lba !== 0) throw new RangeError(`data.length must be a multiple of the block size ${lba}, got ${data.length}`);
    const { ns, off } = this.range(nsid, slba, data.length / lba);
    ns.write(off, data);
  }
}

/** The slot on a device that holds its NVMe controller model. */
const NVME_CONTROLLER = new SlotKey<NvmeController>('nvme-controller');

/** The NVMe controller model of a device, or null when the device is not one. */
export function nvmeControllerOf(dev: Device): NvmeController | null {
  return dev.slots.get(NVME_CONTROLLER) ?? null;
}

/**
 * Makes dev an NVMe controller with this (validated: src/pci checks the `nvme` field) config.
 * createMachine calls it for every endpoint with an `nvme` field, after the device's DMA path is set
 * up. @throws RangeError if the device already has one.
 */
export function attachNvmeController(dev: Device, config: PciNvmeConfig, vid = 0): NvmeController {
  if (dev.slots.get(NVME_CONTROLLER) !== undefined) throw new RangeError(`dev ${dev.name} already has an NVMe controller`);
  return dev.slots.set(NVME_CONTROLLER, new NvmeController(dev, config, vid));
}
