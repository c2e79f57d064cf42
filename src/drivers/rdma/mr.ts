// Models: drivers/infiniband/hw/mlx5/mr.c: mlx5_ib_reg_user_mr() -> create_real_mr() -> reg_create()
// for a pinned umem: the HW page size from mlx5_umem_mkc_find_best_pgsz() (ib_umem_find_best_pgsz
// over the device's bitmap; 0 is EINVAL), ib_umem_num_dma_blocks() MTT entries filled by
// mlx5_ib_populate_pas() (rdma_umem_for_each_dma_block, cpu_to_be64(block | MLX5_IB_MTT_PRESENT)),
// then CREATE_MKEY with start_addr = iova, len, the access bits and log_page_size; lkey = rkey =
// the mkey. mlx5_ib_dereg_mr() destroys the mkey and frees the MTT. The MTT is written through the
// common descriptor helper (drivers/sgl: 'extent' entries of one HW page, 8-byte big-endian) into
// 4 KiB chunks from the device's MTT dma_pool, one chunk per 512 entries.
//
// The ODP hook (drivers/infiniband/hw/mlx5/odp.c): ibRegOdpMr makes an mkey whose MTT starts with
// every entry zero (not present); the MR's owner fills entries with ibMrUpdateMtt (mlx5r_umr_update_xlt
// / mlx5_odp_populate_xlt: the page's DMA address | MLX5_IB_MTT_READ [| MLX5_IB_MTT_WRITE]) and clears
// them with ibMrZapMtt (MLX5_IB_UPD_XLT_ZAP), and gets the NIC's page faults through its pageFault
// handler, after which the NIC re-reads the MTT once.
//
// ib_uverbs_reg_mr() refuses an IOVA whose page offset differs from the address's (EINVAL); mlx5
// refuses a writable MR over memory pinned read-only (as ib_umem_check_rereg: EACCES).

import { err, ok, type Result } from '../../base/index.ts';
import { dmaContextOf, dmaPoolFree, dmaPoolZalloc, GFP_KERNEL, type DmaPool } from '../../dma/index.ts';
import { sglBuild, type SglHooks } from '../sgl/index.ts';
import { IbDevice } from './device.ts';
import { MLX5_IB_MTT_PRESENT, MTT_ENTRIES_PER_CHUNK, MTT_ENTRY_BYTES, type RdmaNicPageFault } from './nic.ts';
import { IbBlockIter, IbUmem, ibUmemFindBestPgsz, ibUmemNumDmaBlocks } from './umem.ts';
import { ibAccessWritable, ibCheckMrAccess } from './verbs.ts';
import './counters.ts';

/** Number.MAX_SAFE_INTEGER as a bigint: an MTT address up to it converts to a number exactly. */
const MAX_SAFE_BIG = BigInt(Number.MAX_SAFE_INTEGER);

const U64 = (1n << 64n) - 1n;

/** One chunk of an MTT: MTT_ENTRIES_PER_CHUNK entries in a 4 KiB block of the MTT pool. */
export interface MttChunk {
  readonly cpuPhys: bigint;
  readonly dmaAddr: bigint;
  /** Entries used in this chunk. */
  readonly entries: number;
}

/** The MR owner's page-fault handler for an ODP MR (the NIC's upcall). */
export type IbOdpPageFault = (mr: IbMr, iova: bigint, len: number, write: boolean) => boolean;

/** What ibRegOdpMr needs: the IOVA range, access rights and the MTT page size. */
export interface IbOdpMrAttr {
  readonly iova: bigint;
  readonly length: number;
  readonly access: number;
  /** log2 of the MTT page size (the ODP umem's page_shift): 12 .. 30. */
  readonly pageShift: number;
}

/** struct mlx5_ib_mr of a registered region. */
export class IbMr {
  readonly ibdev: IbDevice;
  /** 'mtt': a pinned umem's blocks; 'odp': entries filled and zapped by the owner. */
  readonly kind: 'mtt' | 'odp';
  /** The pinned umem ('mtt'), or null. Deregistration does not release it. */
  readonly umem: IbUmem | null;
  readonly lkey: number;
  readonly rkey: number;
  /** Start IOVA (the mkey's start_addr). */
  readonly iova: bigint;
  readonly length: number;
  readonly access: number;
  /** The HW page size (1 << log_page_size). */
  readonly pageLen: number;
  /** MTT entries (ib_umem_num_dma_blocks at pageLen). */
  readonly mttCount: number;
  /** The MTT's chunks, in order. */
  readonly mtt: readonly MttChunk[];
  /** ODP: the owner's page-fault handler (replace with ibMrSetPageFault). */
  pageFault: IbOdpPageFault | null;
  private live = true;

  /** @internal made by ibRegMr / ibRegOdpMr. */
  constructor(ibdev: IbDevice, kind: 'mtt' | 'odp', umem: IbUmem | null, key: number, iova: bigint, length: number, access: number,
    pageLen: number, mttCount: number, mtt: readonly MttChunk[], pageFault: IbOdpPageFault | null) {
    this.ibdev = ibdev;
    this.kind = kind;
    this.umem = umem;
    this.lkey = key;
    this.rkey = key;
    this.iova = iova;
    this.length = length;
    this.access = access;
    this.pageLen = pageLen;
    this.mttCount = mttCount;
    this.mtt = mtt;
    this.pageFault = pageFault;
  }

  /** Bytes of MTT entries (8 each). */
  get mttBytes(): number {
    return this.mttCount * MTT_ENTRY_BYTES;
  }

  /** false after ibDeregMr. */
  get registered(): boolean {
    return this.live;
  }

  /** @internal */
  dereg(): boolean {
    if (!this.live) return false;
    this.live = false;
    return true;
  }
}

/** The MTT format for drivers/sgl: one 8-byte big-endian entry per HW page, no chaining, one pool block per build. */
function mttHooks(pool: DmaPool, pageLen: number, flags: bigint): SglHooks {
  if (flags > 0xffffffffn) throw new RangeError(`flags must fit the entry's low word, got 0x${flags.toString(16)}`);
  const flagsLo = Number(flags);
  return {
    name: 'mlx5 MTT',
    entrySize: MTT_ENTRY_BYTES,
    split: 'extent',
    maxEntryLen: pageLen,
    inlineEntries: 0,
    inlineBeforeList: 0,
    entriesPerList: MTT_ENTRIES_PER_CHUNK,
    encodeData(view, off, addr) {
      if (addr <= MAX_SAFE_BIG) {
        // the entry's two big-endian words from an exact number: no 64-bit BigInt arithmetic per entry
        const a = Number(addr);
        view.setUint32(off, Math.floor(a / 4294967296), false);
        view.setUint32(off + 4, ((a % 4294967296) | flagsLo) >>> 0, false);
      } else {
        view.setBigUint64(off, addr | flags, false);
      }
    },
    poolFor: () => pool,
  };
}

function freeChunks(pool: DmaPool, chunks: readonly MttChunk[]): void {
  for (const c of chunks) dmaPoolFree(pool, c.cpuPhys, c.dmaAddr);
}

/**
 * Registers a pinned umem at iova (mlx5_ib_reg_user_mr for a umem from ibUmemGet). access defaults
 * to the umem's. Errors, in this order: EINVAL (iova's page offset differs from the umem address's),
 * those of ib_check_mr_access (EINVAL; EOPNOTSUPP for ODP without it or flush flags), EINVAL (the
 * range wraps: a model check, see docs/model.md), EACCES (write access to memory pinned read-only),
 * EINVAL with a WARN (no HW page size fits: alloc_cacheable_mr's WARN_ON), ENOMEM (MTT pool). On
 * error nothing is left allocated.
 */
export function ibRegMr(ibdev: IbDevice, umem: IbUmem, iova: bigint, access: number = umem.access): Result<IbMr> {
  if (!(ibdev instanceof IbDevice)) throw new TypeError(`ibdev must be an IbDevice (rdmaProbe), got ${String(ibdev)}`);
  if (!(umem instanceof IbUmem)) throw new TypeError(`umem must be an IbUmem (ibUmemGet), got ${String(umem)}`);
  if (umem.released) throw new TypeError('umem was released');
  if (umem.ibdev !== ibdev) throw new TypeError(`umem was mapped for ${umem.ibdev.name}, not ${ibdev.name}`);
  if (typeof iova !== 'bigint' || iova < 0n || iova > U64) throw new RangeError(`iova must be a u64 bigint, got ${String(iova)}`);
  // ib_uverbs_reg_mr() (and UVERBS_METHOD_REG_MR) check the page offsets before the access flags
  const ps = BigInt(umem.mm.machine.pageSize);
  if ((iova & (ps - 1n)) !== (umem.address & (ps - 1n))) return err('EINVAL', `iova 0x${iova.toString(16)} and address 0x${umem.address.toString(16)} differ in their page offset`);
  const acc = ibCheckMrAccess(access, ibdev.odpCapable);
  if (!acc.ok) return acc;
  if (iova + BigInt(umem.length) > U64 + 1n) return err('EINVAL', 'iova + length wraps');
  if (ibAccessWritable(access) && !umem.writable) return err('EACCES', 'write access to a umem pinned read-only');
  const pgsz = ibUmemFindBestPgsz(umem, ibdev.pgszBitmap, iova);
  if (pgsz === 0) {
    // create_real_mr() -> alloc_cacheable_mr(): WARN_ON(!page_size), then EINVAL
    dmaContextOf(ibdev.dev).mm.events.warn('mlx5_ib', 'alloc_cacheable_mr: WARN_ON(!page_size)', { iova: `0x${iova.toString(16)}`, length: umem.length });
    return err('EINVAL', 'no HW page size fits the umem (mlx5_umem_mkc_find_best_pgsz returned 0)');
  }
  const n = ibUmemNumDmaBlocks(umem, pgsz);
  const hooks = mttHooks(ibdev.mttPool, pgsz, BigInt(MLX5_IB_MTT_PRESENT));
  const chunks: MttChunk[] = [];
  const it = new IbBlockIter().start(umem, pgsz);
  // the segments of one MTT chunk, reused from chunk to chunk (sglBuild copies what it keeps)
  const segs: Array<{ addr: bigint; len: number }> = [];
  let nSegs = 0;
  const flush = (): Result<void> => {
    segs.length = nSegs;
    const b = sglBuild(ibdev.dev, hooks, segs);
    nSegs = 0;
    if (!b.ok) return b;
    const blk = b.value.blocks[0];
    chunks.push({ cpuPhys: blk.cpuPhys, dmaAddr: blk.dmaAddr, entries: blk.entries });
    return ok(undefined);
  };
  while (it.next()) {
    if (nSegs < segs.length) {
      const sg = segs[nSegs];
      sg.addr = it.dmaAddress();
      sg.len = pgsz;
    } else {
      segs.push({ addr: it.dmaAddress(), len: pgsz });
    }
    nSegs++;
    if (nSegs === MTT_ENTRIES_PER_CHUNK) {
      const r = flush();
      if (!r.ok) { freeChunks(ibdev.mttPool, chunks); return err('ENOMEM', `MTT: ${r.message ?? r.errno}`); }
    }
  }
  if (nSegs > 0) {
    const r = flush();
    if (!r.ok) { freeChunks(ibdev.mttPool, chunks); return err('ENOMEM', `MTT: ${r.message ?? r.errno}`); }
  }
  const stats = dmaContextOf(ibdev.dev).mm.stats;
  stats.rdmaMttEntriesWritten += n;
  stats.rdmaMrRegs++;
  const pageShift = Math.log2(pgsz);
  const key = ibdev.nic.createMkey({ start: iova, length: umem.length, access, pageShift, mtt: chunks.map((c) => c.dmaAddr), nEntries: n, pageFault: null });
  return ok(new IbMr(ibdev, 'mtt', umem, key, iova, umem.length, access, pgsz, n, chunks, null));
}

/**
 * Registers an on-demand-paging MR: an mkey over [attr.iova, + attr.length) whose MTT (one entry per
 * 2^pageShift page) starts all zero, and whose invalid entries make the NIC call pageFault(mr, iova,
 * len, write) and then retry once. Errors: EINVAL / EOPNOTSUPP (ib_check_mr_access, then a device
 * without ODP), EINVAL (zero length, a wrapping range), ENOMEM (MTT pool).
 * @throws RangeError for a pageShift outside 12..30.
 */
export function ibRegOdpMr(ibdev: IbDevice, attr: IbOdpMrAttr, pageFault: IbOdpPageFault | null): Result<IbMr> {
  if (!(ibdev instanceof IbDevice)) throw new TypeError(`ibdev must be an IbDevice (rdmaProbe), got ${String(ibdev)}`);
  const { iova, length, access, pageShift } = attr;
  if (!Number.isInteger(pageShift) || pageShift < 12 || pageShift > 30) throw new RangeError(`attr.pageShift must be an integer in [12, 30], got ${String(pageShift)}`);
  if (typeof iova !== 'bigint' || iova < 0n || iova > U64) throw new RangeError(`attr.iova must be a u64 bigint, got ${String(iova)}`);
  if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`attr.length must be a safe non-negative integer, got ${String(length)}`);
  // ib_uverbs_reg_mr() runs ib_check_mr_access() (EINVAL before its EOPNOTSUPP for ODP) before the driver
  const acc = ibCheckMrAccess(access, ibdev.odpCapable);
  if (!acc.ok) return acc;
  if (!ibdev.odpCapable) return err('EOPNOTSUPP', `${ibdev.name} has no on-demand paging`);
  if (length === 0) return err('EINVAL', 'length 0');
  if (iova + BigInt(length) > U64 + 1n) return err('EINVAL', 'iova + length wraps');
  const p = 1n << BigInt(pageShift);
  const n = Number((((iova + BigInt(length) + p - 1n) & ~(p - 1n)) - (iova & ~(p - 1n))) / p);
  const chunks: MttChunk[] = [];
  for (let left = n; left > 0; left -= MTT_ENTRIES_PER_CHUNK) {
    const r = dmaPoolZalloc(ibdev.mttPool, GFP_KERNEL);
    if (!r.ok) { freeChunks(ibdev.mttPool, chunks); return err('ENOMEM', `MTT pool ${ibdev.mttPool.name} exhausted`); }
    chunks.push({ cpuPhys: r.value.cpuPhys, dmaAddr: r.value.dmaAddr, entries: Math.min(left, MTT_ENTRIES_PER_CHUNK) });
  }
  dmaContextOf(ibdev.dev).mm.stats.rdmaMrRegs++;
  let mr: IbMr | null = null;
  const upcall: RdmaNicPageFault = (a, l, w) => (mr !== null && mr.pageFault !== null ? mr.pageFault(mr, a, l, w) : false);
  const key = ibdev.nic.createMkey({ start: iova, length, access, pageShift, mtt: chunks.map((c) => c.dmaAddr), nEntries: n, pageFault: upcall });
  mr = new IbMr(ibdev, 'odp', null, key, iova, length, access, Number(p), n, chunks, pageFault);
  return ok(mr);
}

/** Installs (or clears) an ODP MR's page-fault handler. */
export function ibMrSetPageFault(mr: IbMr, pageFault: IbOdpPageFault | null): void {
  if (!(mr instanceof IbMr) || mr.kind !== 'odp') throw new TypeError('mr must be an ODP IbMr (ibRegOdpMr)');
  mr.pageFault = pageFault;
}

function checkRange(mr: IbMr, first: number, count: number): void {
  if (!Number.isInteger(first) || first < 0 || first > mr.mttCount) throw new RangeError(`first must be an integer in [0, ${mr.mttCount}], got ${String(first)}`);
  if (!Number.isInteger(count) || count < 0 || first + count > mr.mttCount) throw new RangeError(`count must be an integer in [0, ${mr.mttCount - first}], got ${String(count)}`);
}

/** Writes entries [first, first + n) as a CPU store into the MTT memory; values are whole entries. */
function writeEntries(mr: IbMr, first: number, values: (i: number) => bigint, n: number): void {
  const mem = dmaContextOf(mr.ibdev.dev).mm.mem;
  let i = 0;
  while (i < n) {
    const idx = first + i;
    const c = Math.floor(idx / MTT_ENTRIES_PER_CHUNK);
    const inC = idx % MTT_ENTRIES_PER_CHUNK;
    const k = Math.min(n - i, MTT_ENTRIES_PER_CHUNK - inC);
    const buf = new Uint8Array(k * MTT_ENTRY_BYTES);
    const view = new DataView(buf.buffer);
    for (let j = 0; j < k; j++) view.setBigUint64(j * MTT_ENTRY_BYTES, values(i + j), false);
    mem.write(mr.mtt[c].cpuPhys + BigInt(inC * MTT_ENTRY_BYTES), buf);
    i += k;
  }
}

/**
 * ODP: fills MTT entries [first, first + dmaAddrs.length) with each page's DMA address | flags
 * (MLX5_IB_MTT_READ, plus MLX5_IB_MTT_WRITE for a writable page), as mlx5_odp_populate_xlt does.
 * The caller passes the entries of the whole window mlx5r_umr_update_xlt writes (ibMrXltWindow);
 * the valid ones, as populate_mtt does (the others it leaves zero, as they are already).
 * @throws RangeError for entries outside the MTT, a DMA address not aligned to the MR's page, or flags outside the two bits.
 */
export function ibMrUpdateMtt(mr: IbMr, first: number, dmaAddrs: readonly bigint[], flags: number): void {
  if (!(mr instanceof IbMr)) throw new TypeError(`mr must be an IbMr, got ${String(mr)}`);
  if (!mr.registered) throw new TypeError('mr was deregistered');
  checkRange(mr, first, dmaAddrs.length);
  if (!Number.isInteger(flags) || (flags & ~MLX5_IB_MTT_PRESENT) !== 0) throw new RangeError(`flags must be MLX5_IB_MTT_READ / _WRITE bits, got ${String(flags)}`);
  const mask = BigInt(mr.pageLen - 1);
  dmaAddrs.forEach((a, i) => {
    if (typeof a !== 'bigint' || (a & mask) !== 0n || a < 0n || a > U64) throw new RangeError(`dmaAddrs[${i}] must be a u64 aligned to ${mr.pageLen}, got ${String(a)}`);
  });
  const f = BigInt(flags);
  writeEntries(mr, first, (i) => dmaAddrs[i] | f, dmaAddrs.length);
  dmaContextOf(mr.ibdev.dev).mm.stats.rdmaMttEntriesWritten += dmaAddrs.length;
}

/**
 * MLX5_UMR_MTT_NUM_ENTRIES_ALIGNMENT (include/linux/mlx5/device.h): UMR moves MTT entries in units of
 * MLX5_UMR_FLEX_ALIGNMENT (64) bytes, 8 entries.
 */
export const MLX5_UMR_MTT_NUM_ENTRIES_ALIGNMENT = 8;

/**
 * The MTT entries mlx5r_umr_update_xlt() (drivers/infiniband/hw/mlx5/umr.c) writes for [first,
 * first + count): the start aligned down and the count up to MLX5_UMR_MTT_NUM_ENTRIES_ALIGNMENT, the
 * end clamped to the MR's last entry. Returns [start, end).
 */
export function ibMrXltWindow(mr: IbMr, first: number, count: number): [number, number] {
  if (!(mr instanceof IbMr)) throw new TypeError(`mr must be an IbMr, got ${String(mr)}`);
  checkRange(mr, first, count);
  const a = MLX5_UMR_MTT_NUM_ENTRIES_ALIGNMENT;
  const start = first - (first % a);
  return [start, Math.min(mr.mttCount, start + Math.ceil((first + count - start) / a) * a)];
}

/**
 * ODP: zaps MTT entries [first, first + count) (mlx5r_umr_update_xlt with MLX5_IB_UPD_XLT_ZAP): the
 * NIC faults on them from now on. As the UMR moves whole blocks of 8 entries, the zap covers the
 * blocks that hold them (ibMrXltWindow): their neighbours in those blocks are zapped too, and fault
 * again at their next use although their pages stay mapped. count 0 zaps nothing.
 */
export function ibMrZapMtt(mr: IbMr, first: number, count: number): void {
  if (!(mr instanceof IbMr)) throw new TypeError(`mr must be an IbMr, got ${String(mr)}`);
  if (!mr.registered) throw new TypeError('mr was deregistered');
  checkRange(mr, first, count);
  if (count === 0) return;
  const [s, e] = ibMrXltWindow(mr, first, count);
  writeEntries(mr, s, () => 0n, e - s);
  dmaContextOf(mr.ibdev.dev).mm.stats.rdmaMttEntriesZapped += e - s;
}

/** The MTT entries as the CPU reads them back from machine memory (address | flags, decoded from big-endian). */
export function ibMrMttEntries(mr: IbMr): bigint[] {
  if (!(mr instanceof IbMr)) throw new TypeError(`mr must be an IbMr, got ${String(mr)}`);
  const mem = dmaContextOf(mr.ibdev.dev).mm.mem;
  const out: bigint[] = [];
  for (let c = 0; c < mr.mtt.length && out.length < mr.mttCount; c++) {
    const k = Math.min(MTT_ENTRIES_PER_CHUNK, mr.mttCount - out.length);
    const b = mem.read(mr.mtt[c].cpuPhys, k * MTT_ENTRY_BYTES);
    const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
    for (let j = 0; j < k; j++) out.push(v.getBigUint64(j * MTT_ENTRY_BYTES, false));
  }
  return out;
}

/** mlx5_ib_dereg_mr(): destroys the mkey and frees the MTT; the umem stays (ibUmemRelease). EINVAL for an MR deregistered already. */
export function ibDeregMr(ibdev: IbDevice, mr: IbMr): Result<void> {
  if (!(ibdev instanceof IbDevice)) throw new TypeError(`ibdev must be an IbDevice, got ${String(ibdev)}`);
  if (!(mr instanceof IbMr)) throw new TypeError(`mr must be an IbMr, got ${String(mr)}`);
  if (mr.ibdev !== ibdev) throw new TypeError(`mr belongs to ${mr.ibdev.name}, not ${ibdev.name}`);
  if (!mr.dereg()) return err('EINVAL', 'mr was deregistered already');
  ibdev.nic.destroyMkey(mr.lkey);
  freeChunks(ibdev.mttPool, mr.mtt);
  dmaContextOf(ibdev.dev).mm.stats.rdmaMrDeregs++;
  return ok(undefined);
}
