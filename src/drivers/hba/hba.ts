// Models: a SCSI-style host bus adapter driver's scatter-gather list, in the shape the kernel's
// HBA drivers use (e.g. drivers/scsi/mpt3sas: 64-bit simple SGEs with a last-element flag, a chain
// element pointing to the next SGE page; drivers/scsi/megaraid: IEEE SGLs of addr/len/flags), built
// with the common descriptor builder (drivers/sgl).
// Model deviation: the format is the model's own, kept simple and documented here, not any one
// real adapter's:
//   entry (16 bytes, little-endian): addr u64 @0 | len u32 @8 | flags u32 @12
//   flags bit 0 END_OF_LIST: the last data entry of the command
//   flags bit 1 CHAIN: addr is the next SG page, len the bytes of entries used there
//   a data entry carries 1 .. 65536 bytes at any byte address (no page rules);
//   the command holds one entry: the data entry of a one-entry transfer, else a CHAIN to the
//   first SG page; an SG page (4 KiB from a dma_pool) holds 256 entries, the last of a full page
//   that is followed by another being the CHAIN.
// The probe sets the DMA layer's segment limits as the SCSI midlayer does when it sets up the
// queue of a device found on the host (drivers/scsi/scsi_scan.c: scsi_alloc_sdev() ->
// drivers/scsi/scsi_lib.c: scsi_init_limits(), which calls dma_set_seg_boundary(shost->dma_boundary) and
// dma_set_max_seg_size(shost->max_segment_size), with drivers/scsi/hosts.c: scsi_host_alloc()'s
// defaults for a template that sets neither: dma_boundary 0xffffffff and BLK_MAX_SEGMENT_SIZE
// (64 KiB)), which is also what one entry of this format carries.
// Model deviation: there is no Scsi_Host and no request queue, so the block layer's limits
// (max_segments from sg_tablesize, max_segment_size, seg_boundary_mask) are not applied to the
// segments a caller passes: a segment over 64 KiB, which a kernel LLD never gets from
// scsi_dma_map(), is cut into 64 KiB entries by the builder, and the SG list has no entry limit.

import { err, ok, type Result } from '../../base/index.ts';
import {
  DMA_BIT_MASK, dmaPoolCreate, dmaPoolDestroy, dmaSetMaskAndCoherent, dmaSetMaxSegSize, dmaSetSegBoundary, type DmaPool,
} from '../../dma/index.ts';
import { deviceReleaseDriver, driverProbe, type Device } from '../../pci/index.ts';
import { sglBuild, sglFree, type DmaSegment, type SglBuild, type SglHooks } from '../sgl/index.ts';

export const HBA_SG_ENTRY_BYTES = 16;
export const HBA_SG_MAX_ENTRY_LEN = 64 * 1024;
export const HBA_SG_ENTRIES_PER_PAGE = 4096 / HBA_SG_ENTRY_BYTES;
export const HBA_SG_END_OF_LIST = 1;
export const HBA_SG_CHAIN = 2;
/**
 * The adapter driver's name, as dev_driver_string() reports it. Model deviation: the SG format is
 * the model's own, so is the driver: no kernel driver is called this.
 */
export const HBA_DRIVER_NAME = 'phyr-hba';
/** shost->dma_boundary when the host template leaves it 0 (drivers/scsi/hosts.c: scsi_host_alloc()). */
export const HBA_DMA_BOUNDARY = 0xffffffffn;

/** One adapter set up for DMA: its device and its SG page pool. */
export interface HbaCtrl {
  readonly dev: Device;
  readonly pool: DmaPool;
  readonly hooks: SglHooks;
  /** Gives the pool back (every SG list freed first). */
  destroy(): void;
}

/** A command's SG list: the command's own entry, and the SG pages behind it. */
export interface HbaSgl {
  /** The 16-byte entry in the command. */
  readonly cmdEntry: Uint8Array;
  readonly build: SglBuild;
}

function writeEntry(view: DataView, off: number, addr: bigint, len: number, flags: number): void {
  view.setBigUint64(off, addr, true);
  view.setUint32(off + 8, len, true);
  view.setUint32(off + 12, flags, true);
}

/**
 * The adapter's probe: 64-bit DMA masks, the host's segment limits in the DMA layer (64 KiB
 * segments, a 4 GiB boundary) and its SG page pool (4 KiB pages, 4 KiB aligned).
 */
export function hbaSetup(dev: Device): Result<HbaCtrl> {
  return driverProbe(dev, HBA_DRIVER_NAME, () => hbaSetupBound(dev));
}

function hbaSetupBound(dev: Device): Result<HbaCtrl> {
  const m = dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(64));
  if (!m.ok) return m;
  // drivers/scsi/scsi_lib.c: scsi_init_limits() hands the host's limits to the DMA layer, so that
  // dma_map_sg() merges no segment past what one SG entry carries or across the boundary
  dmaSetSegBoundary(dev, HBA_DMA_BOUNDARY);
  dmaSetMaxSegSize(dev, HBA_SG_MAX_ENTRY_LEN);
  const p = dmaPoolCreate('hba sg page', dev, 4096, 4096, 0);
  if (!p.ok) return p;
  const pool = p.value;
  const hooks: SglHooks = {
    name: 'hba',
    entrySize: HBA_SG_ENTRY_BYTES,
    split: 'extent',
    maxEntryLen: HBA_SG_MAX_ENTRY_LEN,
    inlineEntries: 1,
    inlineBeforeList: 0,
    entriesPerList: HBA_SG_ENTRIES_PER_PAGE,
    encodeData: (view, off, addr, len, last) => writeEntry(view, off, addr, len, last ? HBA_SG_END_OF_LIST : 0),
    encodeLink: (view, off, next, nextEntries) => writeEntry(view, off, next, nextEntries * HBA_SG_ENTRY_BYTES, HBA_SG_CHAIN),
    poolFor: () => pool,
  };
  return ok({
    dev, pool, hooks, destroy: () => {
      dmaPoolDestroy(pool);
      deviceReleaseDriver(dev, HBA_DRIVER_NAME);
    },
  });
}

/** Builds a command's SG list from mapped segments. Errors as sglBuild (ENOMEM: no SG page). */
export function hbaBuildSgl(ctrl: HbaCtrl, segments: Iterable<DmaSegment>): Result<HbaSgl> {
  const b = sglBuild(ctrl.dev, ctrl.hooks, segments);
  if (!b.ok) return b;
  const cmdEntry = new Uint8Array(HBA_SG_ENTRY_BYTES);
  const view = new DataView(cmdEntry.buffer);
  const build = b.value;
  if (build.list === null) writeEntry(view, 0, build.inline[0].addr, build.inline[0].len, HBA_SG_END_OF_LIST);
  else writeEntry(view, 0, build.list.dmaAddr, build.list.entries * HBA_SG_ENTRY_BYTES, HBA_SG_CHAIN);
  return ok({ cmdEntry, build });
}

/** Gives a command's SG pages back. */
export function hbaFreeSgl(sgl: HbaSgl): void {
  sglFree(sgl.build.blocks);
}

/**
 * The adapter's side: walks a command's SG list by DMA through the device's own path and returns
 * the data segments it describes. EIO for a malformed list (no END_OF_LIST, an entry over 64 KiB, a
 * CHAIN length that is not whole entries); EFAULT when a read faults.
 */
export function hbaReadSgl(ctrl: HbaCtrl, cmdEntry: Uint8Array): Result<DmaSegment[]> {
  const out: DmaSegment[] = [];
  let page: DataView = new DataView(cmdEntry.buffer, cmdEntry.byteOffset, HBA_SG_ENTRY_BYTES);
  let count = 1;
  for (let guard = 0; guard < 1 << 20; guard++) {
    for (let i = 0; i < count; i++) {
      const off = i * HBA_SG_ENTRY_BYTES;
      const addr = page.getBigUint64(off, true);
      const len = page.getUint32(off + 8, true);
      const flags = page.getUint32(off + 12, true);
      if (flags & HBA_SG_CHAIN) {
        if (i !== count - 1 || len === 0 || len % HBA_SG_ENTRY_BYTES !== 0 || len > 4096) return err('EIO', `bad chain entry ${i}`);
        const r = ctrl.dev.dmaRead(addr, len);
        if (!r.ok) return r;
        page = new DataView(r.value.buffer, r.value.byteOffset, len);
        count = len / HBA_SG_ENTRY_BYTES;
        break;
      }
      if (len === 0 || len > HBA_SG_MAX_ENTRY_LEN) return err('EIO', `entry ${i} has length ${len}`);
      out.push({ addr, len });
      if (flags & HBA_SG_END_OF_LIST) return ok(out);
      if (i === count - 1) return err('EIO', 'list ends without END_OF_LIST');
    }
  }
  return err('EIO', 'chain loop');
}
