// Models: drivers/vfio/pci/vfio_pci_dmabuf.c (Linux 6.19+, as in 7.1): VFIO_DEVICE_FEATURE_DMA_BUF
// exports slices of a BAR as a dma-buf of physical ranges (vfio_pci_core_feature_dma_buf,
// validate_dmabuf_input, vfio_pci_core_fill_phys_vec); the attach check (peer2peer required, not
// revoked, the importer revocable: vfio_pci_dma_buf_attach); the map through
// dma_buf_phys_vec_to_sgt (vfio_pci_dma_buf_map); revocation when the BAR stops decoding or the
// function resets, and restoration after (vfio_pci_dma_buf_move, called from vfio_pci_config.c on a
// PCI_COMMAND write and from vfio_pci_ioctl_reset); and the private interconnect to iommufd
// (vfio_pci_dma_buf_iommufd_map: the one physical range, handed to a cooperating driver).
// Model deviation: one struct device per function stands for the vfio_pci_core_device: the model
// has no VFIO group/cdev, so the export takes the Device directly and the function's memory-enable
// bit is PciDev.memoryEnabled.

import { SlotKey, checkLen, err, ok, type Result } from '../../base/index.ts';
import { dmaContextOf, type DmaDataDirection } from '../../dma/index.ts';
import {
  dmaBufAttachRevocable, dmaBufExport, dmaBufFreeSgt, dmaBufPhysVecToSgt, dmaBufRevoke, dmaBufUnrevoke, type DmaBuf,
  type DmaBufAttachment, type DmaBufDma, type DmaBufMapType, type DmaBufMapped, type DmaBufPal,
} from '../dmabuf/index.ts';
import {
  PCI_STD_NUM_BARS, deviceBindDriver, pcimP2pdmaInit, pcimP2pdmaProvider, toPciDev, type Device, type P2pdmaProvider,
} from '../../pci/index.ts';
import { PhyrList } from '../../phyr/index.ts';

/** One range of VFIO_DEVICE_FEATURE_DMA_BUF (struct vfio_region_dma_range): offset and length in the BAR. */
export interface VfioRegionDmaRange {
  readonly offset: number;
  readonly len: number;
}

/** What vfioPciDmabufExport takes: one slice ({ bar, offset, len }) or several ({ bar, ranges }). */
export type VfioDmaBufRequest =
  | { readonly bar: number; readonly offset: number; readonly len: number }
  | { readonly bar: number; readonly ranges: readonly VfioRegionDmaRange[] };

/** struct vfio_pci_dma_buf. */
export class VfioPciDmaBuf {
  readonly dev: Device;
  readonly provider: P2pdmaProvider;
  /** priv->phys_vec. */
  readonly physVec: PhyrList;
  readonly size: number;
  /**
   * priv->revoked: the exported buffer's revoked state, so that every revoke (vfio_pci_dma_buf_move,
   * or a scenario's dmaBufRevoke of the buffer) is the one VFIO's attach, map and the iommufd
   * interconnect check. False before the export.
   */
  get revoked(): boolean {
    return this.dmabuf !== null && this.dmabuf.revoked;
  }
  /** Mappings handed out and not yet unmapped (the kref of vfio_pci_dma_buf_map / _unmap). */
  liveMaps = 0;
  dmabuf: DmaBuf | null = null;

  /** @internal */
  constructor(dev: Device, provider: P2pdmaProvider, physVec: PhyrList) {
    this.dev = dev;
    this.provider = provider;
    this.physVec = physVec;
    this.size = physVec.totalLen;
  }
}

/** The dma-bufs a function exported (vdev->dmabufs). */
/** The driver a function must be bound to for VFIO (drivers/vfio/pci/vfio_pci.c: vfio_pci_driver.name). */
export const VFIO_PCI_DRIVER_NAME = 'vfio-pci';

const VFIO_DMABUFS = new SlotKey<Set<VfioPciDmaBuf>>('vfio-pci-dmabufs');

/** The dma-bufs dev exported and that are not released. */
export function vfioPciDmabufs(dev: Device): VfioPciDmaBuf[] {
  return [...(dev.slots.get(VFIO_DMABUFS) ?? [])];
}

function privOf(buf: DmaBuf): VfioPciDmaBuf {
  return buf.priv as VfioPciDmaBuf;
}

const vfioOps = {
  expName: 'vfio-pci',
  // vfio_pci_dma_buf_move(): priv->revoked, checked by attach and map
  revocable: true,
  attach(buf: DmaBuf, att: DmaBufAttachment): Result<void> {
    if (!att.peer2peer) return err('EOPNOTSUPP', `${att.dev.name} does not allow peer2peer (vfio_pci_dma_buf_attach)`);
    if (privOf(buf).revoked) return err('ENODEV', `${buf.name} is revoked`);
    if (!dmaBufAttachRevocable(att)) return err('EOPNOTSUPP', `${att.dev.name} cannot be revoked (no invalidate_mappings)`);
    return ok();
  },
  map(att: DmaBufAttachment, dir: DmaDataDirection): Result<DmaBufMapped> {
    const p = privOf(att.dmabuf);
    att.dmabuf.resv.assertHeld('vfio_pci_dma_buf_map');
    if (p.revoked) return err('ENODEV', `${att.dmabuf.name} is revoked`);
    const r = dmaBufPhysVecToSgt(att, p.provider, p.physVec, dir);
    if (r.ok) p.liveMaps++;
    return r;
  },
  unmap(att: DmaBufAttachment, mapped: DmaBufMapped, dir: DmaDataDirection): void {
    dmaBufFreeSgt(att, mapped as DmaBufDma, dir);
    privOf(att.dmabuf).liveMaps--;
  },
  release(buf: DmaBuf): void {
    const p = privOf(buf);
    p.dev.slots.get(VFIO_DMABUFS)?.delete(p);
  },
  physRanges(buf: DmaBuf): Result<PhyrList> {
    const p = privOf(buf);
    if (p.revoked) return err('ENODEV', `${buf.name} is revoked`);
    return ok(p.physVec);
  },
  // RFC "Add DMA-buf mapping types" (Feb 2026, not merged; "vfio: ... convert vfio/iommufd to use
  // them"): VFIO offers the classic sg_table and a Physical Address List of its phys_vec with the
  // BAR's provider, which replaces the private interconnect to iommufd. The classic type first, so
  // an importer that accepts both keeps getting what it got before.
  mapTypes: ['sgt', 'pal'] as readonly DmaBufMapType[],
  mapPal(att: DmaBufAttachment): Result<DmaBufPal> {
    const p = privOf(att.dmabuf);
    att.dmabuf.resv.assertHeld('vfio_pci_dma_buf_map (PAL)');
    if (p.revoked) return err('ENODEV', `${att.dmabuf.name} is revoked`);
    // like a map, a PAL handed out holds the kref the revoke waits on
    p.liveMaps++;
    return ok({ phys: p.physVec, provider: p.provider });
  },
  unmapPal(att: DmaBufAttachment): void {
    privOf(att.dmabuf).liveMaps--;
  },
};

/**
 * VFIO_DEVICE_FEATURE_DMA_BUF: exports BAR slices of a PCI function as a dma-buf of physical ranges
 * (the BAR's provider id in their flags). The function becomes a P2P provider (pcim_p2pdma_init,
 * done at vfio_pci_core_register). The buffer starts revoked when the function's memory decode is
 * off. Errors: EINVAL (no ranges, a range of length 0 or not page-aligned, beyond the BAR, no
 * provider for the BAR); ENODEV (bar is not a memory BAR of the function: vfio_pci_core_setup_barmap
 * fails); EOVERFLOW (the BAR's start + offset + length wraps 64 bits).
 * @throws TypeError if dev is not a PCI function; RangeError for non-integer numbers.
 */
export function vfioPciDmabufExport(dev: Device, req: VfioDmaBufRequest): Result<DmaBuf> {
  const pdev = toPciDev(dev);
  // only a function bound to vfio-pci has a VFIO device to ask (vfio_pci_driver.name in
  // drivers/vfio/pci/vfio_pci.c); the model binds it at the first export and never unbinds it
  deviceBindDriver(dev, VFIO_PCI_DRIVER_NAME);
  if (req === null || typeof req !== 'object') throw new TypeError(`req must be { bar, offset, len } or { bar, ranges }, got ${String(req)}`);
  const ranges: readonly VfioRegionDmaRange[] = 'ranges' in req ? req.ranges : [{ offset: req.offset, len: req.len }];
  if (!Array.isArray(ranges)) throw new TypeError(`req.ranges must be an array, got ${String(ranges)}`);
  if (!Number.isInteger(req.bar)) throw new RangeError(`req.bar must be an integer, got ${String(req.bar)}`);
  ranges.forEach((r, i) => {
    checkLen(`ranges[${i}].offset`, r.offset);
    checkLen(`ranges[${i}].len`, r.len);
  });
  if (ranges.length === 0) return err('EINVAL', 'nr_ranges is 0');
  if (req.bar < 0 || req.bar >= PCI_STD_NUM_BARS) return err('ENODEV', `region ${req.bar} is not a BAR`);
  const bar = pdev.bars.find((b) => b.index === req.bar);
  if (bar === undefined) return err('ENODEV', `${dev.name} has no memory BAR ${req.bar}`);
  const ps = dmaContextOf(dev).mm.pageSize;
  // validate_dmabuf_input()
  for (const r of ranges) {
    if (r.len === 0 || r.offset % ps !== 0 || r.len % ps !== 0) return err('EINVAL', `range { offset ${r.offset}, len ${r.len} } is empty or not page-aligned`);
  }
  const pi = pcimP2pdmaInit(dev);
  if (!pi.ok) return pi;
  const provider = pcimP2pdmaProvider(dev, req.bar);
  if (provider === null) return err('EINVAL', `BAR ${req.bar} of ${dev.name} has no p2pdma provider`);
  // vfio_pci_core_fill_phys_vec()
  const b = PhyrList.builder(ranges.length);
  // the sums are phys_addr_t (u64): EOVERFLOW only when start + offset or paddr + length wraps 64
  // bits; a range past the BAR's end is EINVAL (the JS sum offset + length may pass 2^53 without
  // wrapping, which is not an overflow)
  const U64_MAX = (1n << 64n) - 1n;
  const maxAddr = bar.region.start + BigInt(bar.region.len);
  for (const r of ranges) {
    const paddr = bar.region.start + BigInt(r.offset);
    const end = paddr + BigInt(r.len);
    if (paddr > U64_MAX || end > U64_MAX) return err('EOVERFLOW', `BAR start + offset ${r.offset} + length ${r.len} overflows`);
    if (end > maxAddr) return err('EINVAL', `range [${r.offset}, +${r.len}) is beyond BAR ${req.bar} (${bar.region.len} bytes)`);
    b.pushBigNoMerge(paddr, r.len, bar.region.rangeFlags);
  }
  const priv = new VfioPciDmaBuf(dev, provider, b.build());
  const e = dmaBufExport({ mm: dmaContextOf(dev).mm, ops: vfioOps, size: priv.size, priv });
  if (!e.ok) return e;
  priv.dmabuf = e.value;
  // a function whose memory decode is off exports a buffer that starts revoked
  e.value.revoked = !pdev.memoryEnabled;
  dev.slots.getOrCreate(VFIO_DMABUFS, () => new Set()).add(priv);
  return e;
}

/**
 * vfio_pci_dma_buf_move(): revokes (revoked = true) or restores every dma-buf of the function whose
 * state differs: in both directions importers are told to drop their mappings (invalidate_mappings)
 * and fences are waited for; on revoke every mapping is gone when this returns (the kernel waits for
 * the importers' unmaps), on restore the buffer is marked usable after the notification.
 */
export function vfioPciDmaBufMove(dev: Device, revoked: boolean): void {
  for (const p of vfioPciDmabufs(dev)) {
    if (p.revoked === revoked || p.dmabuf === null || p.dmabuf.released) continue;
    // a restore tells the importers again before priv->revoked is cleared (dmaBufUnrevoke)
    if (revoked) dmaBufRevoke(p.dmabuf);
    else dmaBufUnrevoke(p.dmabuf);
  }
}

/**
 * A PCI_COMMAND write through VFIO's config space (vfio_pci_config.c: vfio_basic_config_write):
 * clearing PCI_COMMAND_MEMORY revokes the function's dma-bufs before the BAR stops decoding;
 * setting it restores them. After a disable, a device's DMA to the BAR faults.
 */
export function vfioPciSetMemoryEnabled(dev: Device, enabled: boolean): void {
  const pdev = toPciDev(dev);
  if (typeof enabled !== 'boolean') throw new TypeError(`enabled must be a boolean, got ${String(enabled)}`);
  if (!enabled) {
    vfioPciDmaBufMove(dev, true);
    pdev.memoryEnabled = false;
  } else {
    pdev.memoryEnabled = true;
    vfioPciDmaBufMove(dev, false);
  }
}

/**
 * VFIO_DEVICE_RESET (vfio_pci_ioctl_reset): revoke, reset the function, restore when memory decode
 * is on afterwards (the reset restores the saved command register). Importers must map again.
 */
export function vfioPciReset(dev: Device): Result<void> {
  const pdev = toPciDev(dev);
  vfioPciDmaBufMove(dev, true);
  if (pdev.memoryEnabled) vfioPciDmaBufMove(dev, false);
  return ok();
}

/**
 * vfio_pci_dma_buf_iommufd_map(): the private interconnect between VFIO and iommufd: the one
 * physical range of a VFIO dma-buf. Holds the reservation lock (WARN otherwise). Errors: EOPNOTSUPP
 * (not a VFIO dma-buf, or more than one range), ENODEV (revoked).
 */
export function vfioPciDmaBufIommufdMap(att: DmaBufAttachment): Result<{ paddr: bigint; len: number; flags: number }> {
  const buf = att.dmabuf;
  buf.resv.assertHeld('vfio_pci_dma_buf_iommufd_map');
  if (buf.ops !== vfioOps) return err('EOPNOTSUPP', `${buf.name} is not a VFIO dma-buf`);
  const p = privOf(buf);
  if (p.revoked) return err('ENODEV', `${buf.name} is revoked`);
  if (p.physVec.count !== 1) return err('EOPNOTSUPP', `${buf.name} has ${p.physVec.count} ranges; iommufd takes one`);
  return ok({ paddr: p.physVec.addrAt(0), len: p.physVec.lenAt(0), flags: p.physVec.flagsAt(0) });
}

/** Whether buf was exported by vfio-pci. */
export function isVfioPciDmaBuf(buf: DmaBuf): boolean {
  return buf.ops === vfioOps;
}
