// Models: RDMA exporting a dma-buf (Linux 7.0): drivers/infiniband/core/uverbs_std_types_dmabuf.c
// (UVERBS_METHOD_DMABUF_ALLOC of UVERBS_OBJECT_DMABUF, uverbs_dmabuf_ops,
// uverbs_dmabuf_fd_destroy_uobj) with drivers/infiniband/core/ib_core_uverbs.c:
// rdma_user_mmap_entry_remove() and the mlx5 side, drivers/infiniband/hw/mlx5/main.c:
// mlx5_ib_mmap_get_pfns() / phys_addr_to_bar() (pcim_p2pdma_init at mlx5_ib_stage_init_init) and
// dm.c (MEMIC device memory: ibv_alloc_dm, an mmap entry in BAR 0 at memic_bar_start_addr).
//
// What the kernel does: a user mmap entry of the NIC (here MEMIC device memory) is exported as one
// physical range (struct phys_vec) of the BAR it lies in, with the BAR's p2pdma provider
// (EOPNOTSUPP without one). The exporter takes only P2P importers (uverbs_dmabuf_attach: EOPNOTSUPP
// without attach->peer2peer), refuses pinning (uverbs_dmabuf_pin: EOPNOTSUPP, so the pinned RDMA
// umem and iommufd cannot import it), maps through dma_buf_phys_vec_to_sgt (ENODEV once revoked)
// and is revoked, for good, when the fd's object is destroyed or the driver removes the mmap entry
// (dealloc of the device memory): revoked = true, dma_buf_invalidate_mappings, wait for every
// fence, then wait for every mapping to be unmapped (the kref / completion).

import { SlotKey, err, ok, type Result } from '../../base/index.ts';
import { dmaContextOf, type DmaDataDirection } from '../../dma/index.ts';
import {
  dmaBufExport, dmaBufFreeSgt, dmaBufPhysVecToSgt, dmaBufPut, dmaBufRevoke, type DmaBuf, type DmaBufAttachment, type DmaBufDma,
  type DmaBufMapped,
} from '../dmabuf/index.ts';
import type { PageCacheMode } from '../../mm/index.ts';
import { pcimP2pdmaInit, pcimP2pdmaProvider, toPciDev, type P2pdmaProvider } from '../../pci/index.ts';
import { PhyrList } from '../../phyr/index.ts';
import { IbDevice } from './device.ts';

const PAGE = 4096;
/** The BAR MEMIC device memory lies in (mlx5: memic_bar_start_addr is an offset into BAR 0). */
const DM_BAR = 0;

/** An allocation of NIC device memory (struct mlx5_ib_dm_memic with its mmap entry). */
export class IbDm {
  readonly ibdev: IbDevice;
  /** Offset in the BAR. */
  readonly barOffset: number;
  /** Bytes (whole pages: the mmap entry's npages * PAGE_SIZE). */
  readonly size: number;
  /** mentry->address: the CPU physical address of the memory. */
  readonly address: bigint;
  /** entry->driver_removed: the entry is gone; new exports are EIO. */
  removed = false;
  /** entry->dmabufs: the dma-bufs exported from this entry and not yet revoked. */
  readonly dmabufs = new Set<DmaBuf>();

  /** @internal made by ibAllocDm. */
  constructor(ibdev: IbDevice, barOffset: number, size: number, address: bigint) {
    this.ibdev = ibdev;
    this.barOffset = barOffset;
    this.size = size;
    this.address = address;
  }
}

/** struct ib_uverbs_dmabuf_file: the exporter's private data. */
export class IbUverbsDmabuf {
  readonly dm: IbDm;
  readonly physVec: PhyrList;
  readonly provider: P2pdmaProvider;
  revoked = false;
  /** Mappings handed out and not yet unmapped (what the kref counts beyond the file's own reference). */
  liveMaps = 0;

  /** @internal */
  constructor(dm: IbDm, physVec: PhyrList, provider: P2pdmaProvider) {
    this.dm = dm;
    this.physVec = physVec;
    this.provider = provider;
  }
}

/** The NIC's device-memory allocator (the firmware's MEMIC bitmap): [offset, len) pieces of the BAR in use. */
const DM_HEAP = new SlotKey<Array<{ offset: number; len: number }>>('rdma-dm-heap');

function privOf(buf: DmaBuf): IbUverbsDmabuf {
  return buf.priv as IbUverbsDmabuf;
}

const uverbsDmabufOps = {
  expName: 'ib_uverbs',
  // rdma_user_mmap_entry_remove(): uverbs_dmabuf->revoked, for good
  revocable: true,
  attach(_buf: DmaBuf, att: DmaBufAttachment): Result<void> {
    // uverbs_dmabuf_attach: the memory is MMIO without struct page: P2P importers only
    if (!att.peer2peer) return err('EOPNOTSUPP', `${att.dev.name} does not allow peer2peer (uverbs_dmabuf_attach)`);
    return ok();
  },
  pin(): Result<void> {
    // uverbs_dmabuf_pin: the exporter can revoke at any time, so it never promises to stay
    return err('EOPNOTSUPP', 'an RDMA dma-buf cannot be pinned (uverbs_dmabuf_pin)');
  },
  unpin(): void {
    // uverbs_dmabuf_unpin: nothing to undo
  },
  map(att: DmaBufAttachment, dir: DmaDataDirection): Result<DmaBufMapped> {
    const p = privOf(att.dmabuf);
    att.dmabuf.resv.assertHeld('uverbs_dmabuf_map');
    if (p.revoked) return err('ENODEV', `${att.dmabuf.name} is revoked`);
    const r = dmaBufPhysVecToSgt(att, p.provider, p.physVec, dir);
    if (r.ok) p.liveMaps++;
    return r;
  },
  unmap(att: DmaBufAttachment, mapped: DmaBufMapped, dir: DmaDataDirection): void {
    att.dmabuf.resv.assertHeld('uverbs_dmabuf_unmap');
    dmaBufFreeSgt(att, mapped as DmaBufDma, dir);
    privOf(att.dmabuf).liveMaps--;
  },
  release(buf: DmaBuf): void {
    privOf(buf).dm.dmabufs.delete(buf);
  },
  mmapCache(): PageCacheMode {
    // mlx5_ib_mmap_offset: MEMIC is mapped write-combining
    return 'wc';
  },
  physRanges(buf: DmaBuf): Result<PhyrList> {
    const p = privOf(buf);
    if (p.revoked) return err('ENODEV', `${buf.name} is revoked`);
    return ok(p.physVec);
  },
};

/**
 * ibv_alloc_dm of MEMIC device memory (mlx5_ib_alloc_dm -> mlx5_cmd_alloc_memic): length bytes of
 * the NIC's BAR 0, rounded up to whole pages, zeroed, with an mmap entry.
 * Errors: EINVAL (length 0), ENOMEM (no room in the BAR).
 * Model deviation: mlx5 allocates MEMIC in 64-byte units (MLX5_MEMIC_BASE_SIZE) and its mmap entry
 * covers the pages around it; the model allocates whole pages, so the entry is the allocation.
 * @throws TypeError if the NIC is not a PCI function with a memory BAR 0.
 */
export function ibAllocDm(ibdev: IbDevice, length: number): Result<IbDm> {
  if (!(ibdev instanceof IbDevice)) throw new TypeError(`ibdev must be an IbDevice (rdmaProbe), got ${String(ibdev)}`);
  if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`length must be a safe non-negative integer, got ${String(length)}`);
  const pdev = toPciDev(ibdev.dev);
  const bar = pdev.bars.find((b) => b.index === DM_BAR);
  if (bar === undefined) throw new TypeError(`${ibdev.dev.name} has no memory BAR ${DM_BAR} (device memory)`);
  if (length === 0) return err('EINVAL', 'length 0');
  const size = Math.ceil(length / PAGE) * PAGE;
  const used = ibdev.dev.slots.getOrCreate(DM_HEAP, () => []);
  let at = 0;
  for (const u of used) {
    if (u.offset - at >= size) break;
    at = Math.max(at, u.offset + u.len);
  }
  if (at + size > bar.region.len) return err('ENOMEM', `no ${size} bytes of device memory left in ${ibdev.dev.name} BAR ${DM_BAR}`);
  used.push({ offset: at, len: size });
  used.sort((a, b) => a.offset - b.offset);
  const address = bar.region.start + BigInt(at);
  dmaContextOf(ibdev.dev).mm.mem.fill(address, size, 0);
  return ok(new IbDm(ibdev, at, size, address));
}

/** Revokes one exported buffer (the loop body of rdma_user_mmap_entry_remove / the fd's destroy). */
function revoke(buf: DmaBuf): void {
  const p = privOf(buf);
  if (p.revoked) return;
  p.revoked = true;
  p.dm.dmabufs.delete(buf);
  // revoked, dma_buf_invalidate_mappings, dma_resv_wait_timeout(BOOKKEEP), then wait for the unmaps
  dmaBufRevoke(buf);
}

/**
 * ibv_free_dm: rdma_user_mmap_entry_remove() revokes every dma-buf of the entry (importers are told
 * and their mappings are gone on return), then the memory goes back to the NIC. A second call does
 * nothing.
 */
export function ibDeallocDm(dm: IbDm): void {
  if (!(dm instanceof IbDm)) throw new TypeError(`dm must be an IbDm (ibAllocDm), got ${String(dm)}`);
  if (dm.removed) return;
  dm.removed = true;
  for (const buf of [...dm.dmabufs]) revoke(buf);
  const used = dm.ibdev.dev.slots.get(DM_HEAP) ?? [];
  const i = used.findIndex((u) => u.offset === dm.barOffset);
  if (i >= 0) used.splice(i, 1);
}

/**
 * UVERBS_METHOD_DMABUF_ALLOC: exports the device memory's mmap entry as a dma-buf of one physical
 * range (mlx5_ib_mmap_get_pfns: the entry's address and npages * PAGE_SIZE, the provider of the BAR
 * it is in). The function becomes a P2P provider on first use.
 * Errors: EIO (the entry was removed: ibDeallocDm), EINVAL (the address is in no BAR of the
 * function), EOPNOTSUPP (no p2pdma provider for the BAR).
 * Model deviation: mlx5 calls pcim_p2pdma_init once at probe (mlx5_ib_stage_init_init); the model
 * calls it at the first export so that NICs that never export keep their BARs out of the P2P
 * providers.
 */
export function ibDmabufAlloc(dm: IbDm): Result<DmaBuf> {
  if (!(dm instanceof IbDm)) throw new TypeError(`dm must be an IbDm (ibAllocDm), got ${String(dm)}`);
  const dev = dm.ibdev.dev;
  const pdev = toPciDev(dev);
  // phys_addr_to_bar()
  const bar = pdev.bars.find((b) => dm.address >= b.region.start && dm.address < b.region.start + BigInt(b.region.len));
  if (bar === undefined) return err('EINVAL', `0x${dm.address.toString(16)} is in no BAR of ${dev.name}`);
  const pi = pcimP2pdmaInit(dev);
  if (!pi.ok && pi.errno !== 'EOPNOTSUPP') return pi;
  const provider = pcimP2pdmaProvider(dev, bar.index);
  if (provider === null) return err('EOPNOTSUPP', `${dev.name} BAR ${bar.index} has no p2pdma provider`);
  const physVec = PhyrList.from([{ addr: dm.address, len: dm.size, flags: provider.region.rangeFlags }]);
  const priv = new IbUverbsDmabuf(dm, physVec, provider);
  const r = dmaBufExport({ mm: dmaContextOf(dev).mm, ops: uverbsDmabufOps, size: dm.size, priv });
  if (!r.ok) return r;
  // the entry may have been removed meanwhile: the new buffer goes away again
  if (dm.removed) {
    priv.revoked = true;
    dmaBufPut(r.value);
    return err('EIO', 'the mmap entry was removed');
  }
  dm.dmabufs.add(r.value);
  return r;
}

/** Whether buf was exported by ibDmabufAlloc. */
export function isIbUverbsDmabuf(buf: DmaBuf): boolean {
  return buf.ops === uverbsDmabufOps;
}

/**
 * Closing the dma-buf's uverbs object (uverbs_dmabuf_fd_destroy_uobj): revoke if not revoked yet;
 * then the exporter's reference goes (dma_buf_put) once no importer is attached (an attached
 * importer holds its own reference in the kernel). Returns whether the buffer was released.
 */
export function ibDmabufDestroy(buf: DmaBuf): boolean {
  if (!isIbUverbsDmabuf(buf)) throw new TypeError(`buf must be a dma-buf of ibDmabufAlloc, got ${String(buf)}`);
  revoke(buf);
  if (!buf.released && buf.attachments.length === 0) dmaBufPut(buf);
  return buf.released;
}
