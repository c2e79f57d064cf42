// Models: the part every DMA descriptor builder in drivers/ repeats (drivers/nvme/host/pci.c:
// nvme_pci_setup_data_prp() and nvme_pci_setup_data_sgl(); the SCSI HBAs' scsi_dma_map() + SGE
// loops, e.g. drivers/scsi/mpt3sas/mpt3sas_base.c: _base_build_sg_scmd(); RDMA MTTs; GPU page
// tables), written once: mapped DMA segments in, fixed-size hardware descriptors out, through
// per-driver hooks. The kernel has no such common helper; each driver open-codes it. What the
// hooks say:
//   - entry size and the encoder of a data entry (and of the end-of-list marking);
//   - how segments become entries: 'page' (PRP style: one entry per device page touched, the first
//     may start inside its page, every other entry starts a page and every entry but the last
//     ends one) or 'extent' (SGL style: one entry per piece of at most maxEntryLen bytes);
//   - what the command itself holds: up to inlineEntries entries with no list at all, else
//     inlineBeforeList entries followed by the pointer to the first list block;
//   - list chaining: entries per list block, the encoder of the link entry that takes a full
//     block's last slot (the entry that would have been there moves to the next block);
//   - the dma_pool each list block comes from.
// The helper writes the blocks' bytes into machine memory (a CPU store into coherent memory, where
// the device reads them) and returns what the command needs plus what to free afterwards.
// Model deviation: the kernel's loops write one SGL descriptor or SGE per DMA segment
// (nvme_pci_setup_data_sgl: nvme_pci_sgl_set_data with the segment's whole length;
// _base_build_sg_scmd: sg_dma_len() per SGE) and never cut one: the queue limits and
// dma_set_max_seg_size() the driver set keep every segment within what one entry carries. The
// 'extent' mode cuts a longer segment into entries of maxEntryLen instead. In 'page' mode a transfer
// that breaks the page rules is refused up front with EINVAL; nvme_pci_setup_data_prp() checks
// nothing ahead (the virt boundary of the queue rules such requests out) and only a segment too
// short for its PRP ends in its "Incorrectly formed request" error (BLK_STS_IOERR).

import { checkLen, err, ok, type Result } from '../../base/index.ts';
import { dmaContextOf, dmaPoolAlloc, dmaPoolFree, GFP_ATOMIC, type DmaPool } from '../../dma/index.ts';
import type { Device } from '../../pci/index.ts';

/** One mapped DMA segment: a device address and a length in bytes. */
export interface DmaSegment {
  readonly addr: bigint;
  readonly len: number;
}

/** The per-driver description of a descriptor format. */
export interface SglHooks {
  /** For messages. */
  readonly name: string;
  /** Bytes of one entry (8 for a PRP, 16 for an NVMe SGL descriptor). */
  readonly entrySize: number;
  /** 'page': PRP-style page splitting; 'extent': SGL-style extents of at most maxEntryLen. */
  readonly split: 'page' | 'extent';
  /** 'page' mode: the device page (a power of two). */
  readonly pageSize?: number;
  /** 'extent' mode: the largest length one entry may carry. */
  readonly maxEntryLen?: number;
  /** Entries the command holds when no list is needed (PRP: 2, NVMe SGL: 1 or 0; 0: always a list). */
  readonly inlineEntries: number;
  /** Entries the command holds ahead of the list pointer when a list is needed (PRP: 1, SGL: 0). */
  readonly inlineBeforeList: number;
  /** Slots of one list block (link slot included when the block is chained). */
  readonly entriesPerList: number;
  /** Writes a data entry at off. `last`: the last data entry of the whole transfer. */
  encodeData(view: DataView, off: number, addr: bigint, len: number, last: boolean): void;
  /**
   * Writes the link entry that ends a full block and points at the next one (nextEntries slots
   * used there; nextIsLast: the next block is not chained further). Absent: the format has no
   * chaining, and more entries than one block holds is an error (E2BIG).
   */
  encodeLink?(view: DataView, off: number, nextDma: bigint, nextEntries: number, nextIsLast: boolean): void;
  /** The pool for list block `index` (0 = the first) of a list of listEntries data entries. */
  poolFor(index: number, listEntries: number): DmaPool;
}

/** One list block the helper took from a pool and filled. */
export interface SglBlock {
  readonly pool: DmaPool;
  readonly cpuPhys: bigint;
  readonly dmaAddr: bigint;
  /** Slots used (link included). */
  readonly entries: number;
}

/** What a build gives the driver. */
export interface SglBuild {
  /** Entries, in order, that the command holds itself: all of them when `list` is null. */
  readonly inline: readonly DmaSegment[];
  /** The first list block (the command's list pointer) and its slot count, or null. */
  readonly list: { readonly dmaAddr: bigint; readonly entries: number } | null;
  /** Every block filled, in chain order (free them with sglFree after completion). */
  readonly blocks: readonly SglBlock[];
  /** Data entries in all (inline + list). */
  readonly nrEntries: number;
  /** Bytes the entries describe. */
  readonly totalLen: number;
  /** Bytes of list memory written (slots used x entry size). */
  readonly descriptorBytes: number;
}

/** Why a build was refused, besides pool exhaustion (ENOMEM). */
export type SglError = 'EINVAL' | 'E2BIG' | 'ENOMEM';

/**
 * Splits segments into entries per the hooks' mode. In 'page' mode a transfer that does not follow
 * the page rules (a segment that ends inside a page while more data follows, or a segment after the
 * first that starts inside a page) is EINVAL: no PRP list can describe it.
 */
export function sglEntries(hooks: SglHooks, segments: Iterable<DmaSegment>): Result<{ addrs: bigint[]; lens: number[]; totalLen: number }> {
  const addrs: bigint[] = [];
  const lens: number[] = [];
  let total = 0;
  if (hooks.split === 'page') {
    const page = hooks.pageSize ?? 4096;
    const pageBig = BigInt(page);
    let first = true;
    let prevEndsPage = true;
    for (const s of segments) {
      checkLen('segment len', s.len, 1);
      const off = Number(s.addr % pageBig);
      if (!prevEndsPage) return err('EINVAL', `${hooks.name}: a segment ends inside a page while more data follows`);
      if (!first && off !== 0) return err('EINVAL', `${hooks.name}: segment at 0x${s.addr.toString(16)} starts inside a page`);
      let a = s.addr;
      let left = s.len;
      let inPage = page - off;
      while (left > 0) {
        const n = Math.min(left, inPage);
        addrs.push(a);
        lens.push(n);
        a += BigInt(n);
        left -= n;
        inPage = page;
      }
      prevEndsPage = a % pageBig === 0n;
      total += s.len;
      first = false;
    }
  } else {
    const max = hooks.maxEntryLen ?? 0xffffffff;
    for (const s of segments) {
      checkLen('segment len', s.len, 1);
      if (s.len <= max) {
        // one entry (the usual case): no arithmetic on the address
        addrs.push(s.addr);
        lens.push(s.len);
        total += s.len;
        continue;
      }
      let a = s.addr;
      let left = s.len;
      while (left > 0) {
        const n = Math.min(left, max);
        addrs.push(a);
        lens.push(n);
        a += BigInt(n);
        left -= n;
      }
      total += s.len;
    }
  }
  return ok({ addrs, lens, totalLen: total });
}

/**
 * Builds the descriptors of a transfer: entries by sglEntries, then either all inline, or
 * inlineBeforeList inline and the rest in list blocks taken from the hooks' pools and written into
 * machine memory, chained through link entries when one block is not enough. Errors: EINVAL (page
 * rules), E2BIG (more entries than an unchained format holds), ENOMEM (a pool is exhausted); on
 * error every block taken is given back.
 */
export function sglBuild(dev: Device, hooks: SglHooks, segments: Iterable<DmaSegment>): Result<SglBuild> {
  const e = sglEntries(hooks, segments);
  if (!e.ok) return e;
  const { addrs, lens, totalLen } = e.value;
  const n = addrs.length;
  if (n === 0) return err('EINVAL', `${hooks.name}: no data`);
  if (n <= hooks.inlineEntries) {
    return ok({ inline: addrs.map((a, i) => ({ addr: a, len: lens[i] })), list: null, blocks: [], nrEntries: n, totalLen, descriptorBytes: 0 });
  }
  const head = hooks.inlineBeforeList;
  const listEntries = n - head;
  const per = hooks.entriesPerList;
  // slots per block: a block that is followed by another gives its last slot to the link
  const counts: number[] = [];
  for (let left = listEntries; left > 0;) {
    if (left <= per) {
      counts.push(left);
      left = 0;
    } else {
      if (hooks.encodeLink === undefined) return err('E2BIG', `${hooks.name}: ${listEntries} entries do not fit one list of ${per}`);
      counts.push(per - 1);
      left -= per - 1;
    }
  }
  const blocks: SglBlock[] = [];
  for (let b = 0; b < counts.length; b++) {
    const pool = hooks.poolFor(b, listEntries);
    const r = dmaPoolAlloc(pool, GFP_ATOMIC);
    if (!r.ok) {
      sglFree(blocks);
      return err('ENOMEM', `${hooks.name}: descriptor pool ${pool.name} exhausted`);
    }
    const slots = counts[b] + (b < counts.length - 1 ? 1 : 0);
    if (slots * hooks.entrySize > pool.size) throw new RangeError(`${hooks.name}: pool ${pool.name} blocks of ${pool.size} bytes cannot hold ${slots} entries`);
    blocks.push({ pool, cpuPhys: r.value.cpuPhys, dmaAddr: r.value.dmaAddr, entries: slots });
  }
  const mem = dmaContextOf(dev).mm.mem;
  let k = head;
  let bytes = 0;
  for (let b = 0; b < blocks.length; b++) {
    const blk = blocks[b];
    const buf = new Uint8Array(blk.entries * hooks.entrySize);
    const view = new DataView(buf.buffer);
    for (let i = 0; i < counts[b]; i++, k++) hooks.encodeData(view, i * hooks.entrySize, addrs[k], lens[k], k === n - 1);
    if (b < blocks.length - 1) {
      const next = blocks[b + 1];
      hooks.encodeLink!(view, counts[b] * hooks.entrySize, next.dmaAddr, next.entries, b + 1 === blocks.length - 1);
    }
    mem.write(blk.cpuPhys, buf);
    bytes += buf.length;
  }
  const inline: DmaSegment[] = [];
  for (let i = 0; i < head; i++) inline.push({ addr: addrs[i], len: lens[i] });
  return ok({ inline, list: { dmaAddr: blocks[0].dmaAddr, entries: blocks[0].entries }, blocks, nrEntries: n, totalLen, descriptorBytes: bytes });
}

/** Gives every block of a build back to its pool (after the device is done with them). */
export function sglFree(blocks: readonly SglBlock[]): void {
  for (const b of blocks) dmaPoolFree(b.pool, b.cpuPhys, b.dmaAddr);
}
