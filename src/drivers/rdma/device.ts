// Models: the probe of an RDMA NIC as drivers/net/ethernet/mellanox/mlx5/core/main.c: set_dma_caps()
// does it (dma_set_mask_and_coherent(64), falling back to 32 bits; dma_set_max_seg_size(2 GiB)), and
// the HW page sizes an MTT mkey can use (drivers/infiniband/hw/mlx5/mlx5_ib.h:
// mlx5_umem_mkc_find_best_pgsz(): GENMASK(max_log_entity_size, min_log_entity_size), 31 and 12 on
// a device without umr_log_entity_size_5). The ib_device the verbs below take, kept in a typed slot
// on the PCI function together with the NIC model (nic.ts) and the dma_pool the MTT chunks come from.

import { GiB, SlotKey, err, ok, type Result } from '../../base/index.ts';
import { DMA_BIT_MASK, dmaPoolCreate, dmaPoolDestroy, dmaSetMaskAndCoherent, dmaSetMaxSegSize, type DmaPool } from '../../dma/index.ts';
import { deviceReleaseDriver, driverProbe, type Device } from '../../pci/index.ts';
import { MTT_ENTRIES_PER_CHUNK, MTT_ENTRY_BYTES, RdmaNic } from './nic.ts';

/**
 * The PCI driver a ConnectX binds to (drivers/net/ethernet/mellanox/mlx5/core/main.c:
 * mlx5_core_driver.name is KBUILD_MODNAME, the module mlx5_core). mlx5_ib is an auxiliary driver
 * whose ib_device does its DMA through that PCI function (ib_register_device(..., &pdev->dev) in
 * drivers/infiniband/hw/mlx5/main.c), so dma-debug names "mlx5_core".
 */
export const RDMA_DRIVER_NAME = 'mlx5_core';

/** GENMASK(31, 12): 4 KiB .. 2 GiB, the MTT page sizes of a ConnectX without umr_log_entity_size_5. */
export const RDMA_DEFAULT_PGSZ_BITMAP = 0xfffff000n;
/** The max segment size mlx5's set_dma_caps() sets. */
export const RDMA_MAX_SEG_SIZE = 2 * GiB;

export interface RdmaProbeOptions {
  /** HW page sizes the MTT can use (a bitmap of powers of two, bit 12 at least). Default RDMA_DEFAULT_PGSZ_BITMAP. */
  readonly pgszBitmap?: bigint;
  /** The device supports on-demand paging (IBK_ON_DEMAND_PAGING). Default true. */
  readonly odp?: boolean;
}

/** struct ib_device of a probed NIC. */
export class IbDevice {
  readonly dev: Device;
  readonly name: string;
  readonly pgszBitmap: bigint;
  readonly odpCapable: boolean;
  /** The NIC model on the function. */
  readonly nic: RdmaNic;
  /** The dma_pool MTT chunks come from (4 KiB blocks, MTT_ENTRIES_PER_CHUNK entries each). */
  readonly mttPool: DmaPool;

  /** @internal made by rdmaProbe. */
  constructor(dev: Device, pgszBitmap: bigint, odp: boolean, nic: RdmaNic, mttPool: DmaPool) {
    this.dev = dev;
    this.name = `mlx5_${dev.name}`;
    this.pgszBitmap = pgszBitmap;
    this.odpCapable = odp;
    this.nic = nic;
    this.mttPool = mttPool;
  }
}

const IB_DEVICE = new SlotKey<IbDevice>('rdma-ib-device');

/** The ib_device probed on dev, or null. */
export function ibDeviceOf(dev: Device): IbDevice | null {
  return dev.slots.get(IB_DEVICE) ?? null;
}

/**
 * Probes an RDMA NIC on dev: DMA mask 64 bits (32 if that fails: EIO when neither is supported), max
 * segment size 2 GiB, the MTT pool, the NIC model. Probing a device again returns its ib_device.
 * @throws RangeError for a pgszBitmap without a page size of at least 4 KiB or with bits above 63.
 */
export function rdmaProbe(dev: Device, opts: RdmaProbeOptions = {}): Result<IbDevice> {
  const have = ibDeviceOf(dev);
  if (have !== null) return ok(have);
  const bitmap = opts.pgszBitmap ?? RDMA_DEFAULT_PGSZ_BITMAP;
  if (typeof bitmap !== 'bigint' || bitmap <= 0n || bitmap >> 64n !== 0n || (bitmap & ~0xfffn) === 0n) {
    throw new RangeError(`opts.pgszBitmap must be a bitmap of page sizes with one of at least 4 KiB (bits 12..63), got ${String(bitmap)}`);
  }
  return driverProbe(dev, RDMA_DRIVER_NAME, (): Result<IbDevice> => {
    // set_dma_caps(): 64-bit mask, else 32-bit
    let m = dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(64));
    if (!m.ok) m = dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(32));
    if (!m.ok) return err('EIO', `${dev.name}: no usable DMA mask`);
    dmaSetMaxSegSize(dev, RDMA_MAX_SEG_SIZE);
    const pool = dmaPoolCreate(`${dev.name}-mtt`, dev, MTT_ENTRIES_PER_CHUNK * MTT_ENTRY_BYTES, MTT_ENTRIES_PER_CHUNK * MTT_ENTRY_BYTES, 0);
    if (!pool.ok) return err(pool.errno, `dma_pool_create: ${pool.message ?? pool.errno}`);
    const ib = new IbDevice(dev, bitmap & ~0xfffn, opts.odp ?? true, new RdmaNic(dev), pool.value);
    return ok(dev.slots.set(IB_DEVICE, ib));
  });
}

/**
 * The driver's remove: frees the MTT pool and forgets the ib_device. EBUSY while memory keys exist
 * (every MR must be deregistered first, as ib_unregister_device waits for its users).
 */
export function rdmaRemove(ibdev: IbDevice): Result<void> {
  if (!(ibdev instanceof IbDevice)) throw new TypeError(`ibdev must be an IbDevice, got ${String(ibdev)}`);
  if (ibDeviceOf(ibdev.dev) !== ibdev) return err('ENODEV', `${ibdev.name} was removed`);
  if (ibdev.nic.mkeyCount > 0) return err('EBUSY', `${ibdev.name}: ${ibdev.nic.mkeyCount} memory keys are registered`);
  dmaPoolDestroy(ibdev.mttPool);
  ibdev.dev.slots.delete(IB_DEVICE);
  deviceReleaseDriver(ibdev.dev, RDMA_DRIVER_NAME);
  return ok(undefined);
}
