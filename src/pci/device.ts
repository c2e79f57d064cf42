// Models: the DMA-relevant fields of struct device (include/linux/device.h) and
// struct device_dma_parameters (include/linux/device.h, Linux 7.1).
// One Device object per PCI function (or platform device); the PCI layer fills `pci`,
// the DMA layer reads and sets the DMA fields through dmaSet* functions.
// Identity as the kernel prints it: dev_name() (`devName`: a PCI function's "dddd:bb:dd.f" from
// pci_setup_device() in drivers/pci/probe.c; a platform device's own name, platform_device_add()
// in drivers/base/platform.c with PLATFORM_DEVID_NONE), the bus (dev->bus->name: "pci" or
// "platform") and the bound driver (dev->driver->name), which dev_driver_string() combines.
// `name` is the model's short name (nvme0, gpu0, ...) that configs, scenarios and the CLI use.
// Model deviation: a Device built directly (not by the PCI topology) is a platform device whose
// dev_name is its short name (no ".N" instance suffix); devices have no class (dev->class), so
// dev_driver_string() never falls back to a class name.
// Model deviation: several of the model's drivers may drive one device (e.g. a GPU model that is
// also exported through VFIO); dev->driver names the first that bound it, until it unbinds.

/** One entry of dev->dma_range_map (struct bus_dma_region, include/linux/dma-direct.h). */
export interface BusDmaRegion {
  readonly cpuStart: bigint;
  readonly dmaStart: bigint;
  readonly len: number;
}

/** struct device_dma_parameters with the kernel's defaults applied on read (dma_get_max_seg_size ...). */
export interface DeviceDmaParms {
  /** 0 = unset: dma_get_max_seg_size() reports 64 KiB. */
  maxSegmentSize: number;
  minAlignMask: number;
  /** 0n = unset: dma_get_seg_boundary() reports ULONG_MAX. */
  segmentBoundaryMask: bigint;
}

import { Slots, err, type Result } from '../base/internal.ts';

/** How a device's DMA reaches memory: installed by the DMA layer when the machine is built. */
export interface DeviceDmaAccess {
  read(dev: Device, addr: bigint, len: number): Result<Uint8Array>;
  write(dev: Device, addr: bigint, bytes: Uint8Array): Result<void>;
}

/** How a device is named and which bus it sits on (defaults: a platform device named by its short name). */
export interface DeviceIdentity {
  /** dev_name(). Default: the short name. */
  readonly devName?: string;
  /** dev->bus->name. Default 'platform'. */
  readonly busName?: string;
}

export class Device {
  /** The model's short name (nvme0, gpu0, ...): what configs, scenarios and the CLI call the device. */
  readonly name: string;
  /** dev_name(dev): "dddd:bb:dd.f" for a PCI function, the platform device's name otherwise. */
  readonly devName: string;
  /** dev->bus->name: "pci" (pci_bus_type, drivers/pci/pci-driver.c) or "platform" (platform_bus_type). */
  readonly busName: string;
  /** dev->driver->name: the bound driver, null when none is (set by deviceBindDriver / deviceReleaseDriver). */
  driver: string | null = null;
  /**
   * group->owner of the device's IOMMU group: the user-space DMA owner that claimed it
   * (iommu_device_claim_dma_owner(): iommufd while the device is bound to it), null while the
   * kernel's DMA API may use the default domain. A kernel driver's probe is EBUSY meanwhile.
   */
  dmaUserOwner: string | null = null;
  /** *dev->dma_mask; null models a device with no dma_mask pointer (WARN in dma_map_phys). */
  dmaMask: bigint | null = (1n << 32n) - 1n;
  coherentDmaMask: bigint = (1n << 32n) - 1n;
  /** dev->bus_dma_limit from firmware (0n = none). */
  busDmaLimit = 0n;
  /** dev->dma_range_map; null = identity phys_to_dma. */
  dmaRangeMap: BusDmaRegion[] | null = null;
  readonly dmaParms: DeviceDmaParms = { maxSegmentSize: 0, minAlignMask: 0, segmentBoundaryMask: 0n };
  /** dev_is_dma_coherent(); always true on x86. */
  dmaCoherent = true;
  /** dev->dma_skip_sync: set at mask setup for coherent direct-mapped devices; cleared by the first bounce. */
  dmaSkipSync = false;
  /** dev->dma_iommu: a DMA-API IOMMU domain is attached (use_dma_iommu). Set by the iommu layer. */
  dmaIommu = false;
  /** dev->removable / external-facing port: dev_is_untrusted(). */
  untrusted = false;
  /** dev->iommu->pci_32bit_workaround: try 32-bit IOVAs first (cleared permanently on failure). */
  pci32BitWorkaround = true;
  /** PCI identity and topology, when this is a PCI function (filled by pci/). */
  pci: unknown = null;

  /**
   * State the layers above keep on the device (its machine's DMA context, IOMMU domains, mappings,
   * ...), each under its layer's typed key; `slots.list()` shows all of it.
   */
  readonly slots = new Slots();

  /** The device's DMA engine path (IOMMU / direct / P2P routing); set by the DMA layer. */
  dmaAccess: DeviceDmaAccess | null = null;

  constructor(name: string, identity: DeviceIdentity = {}) {
    this.name = name;
    this.devName = identity.devName ?? name;
    this.busName = identity.busName ?? 'platform';
  }

  /**
   * The device reads len bytes at a DMA address through its real path. Faults (no translation,
   * permission, beyond the mask, blocked domain) are { ok: false, errno: 'EFAULT' } with the reason
   * on the event log.
   */
  dmaRead(addr: bigint, len: number): Result<Uint8Array> {
    if (!this.dmaAccess) throw new Error(`${this.name} has no DMA path: build it with createMachine`);
    return this.dmaAccess.read(this, addr, len);
  }

  /** The device writes bytes at a DMA address through its real path; on a fault nothing is written. */
  dmaWrite(addr: bigint, bytes: Uint8Array): Result<void> {
    if (!this.dmaAccess) throw new Error(`${this.name} has no DMA path: build it with createMachine`);
    return this.dmaAccess.write(this, addr, bytes);
  }

  toString(): string {
    return `Device(${this.name})`;
  }
}

/**
 * dev_driver_string() (drivers/base/core.c): the bound driver's name, else the bus name
 * (dev_bus_name() in include/linux/device.h; the model's devices have no class).
 */
export function devDriverString(dev: Device): string {
  return dev.driver ?? dev.busName;
}

/**
 * A driver binds the device (really_probe() in drivers/base/dd.c sets dev->driver before the
 * driver's probe runs). A device already bound keeps its driver (see the file comment); returns
 * whether `driver` is now the one bound.
 */
export function deviceBindDriver(dev: Device, driver: string): boolean {
  if (dev.driver === null) dev.driver = driver;
  return dev.driver === driver;
}

/**
 * The driver unbinds (__device_release_driver() -> device_unbind_cleanup() in drivers/base/dd.c
 * clears dev->driver before BUS_NOTIFY_UNBOUND_DRIVER goes out). With `driver`, only when that
 * driver is the one bound.
 */
export function deviceReleaseDriver(dev: Device, driver?: string): void {
  if (driver === undefined || dev.driver === driver) dev.driver = null;
}

/**
 * really_probe() (drivers/base/dd.c) for a driver's probe: dev->driver is set before the probe
 * runs, and a probe that fails leaves the device without a driver (a device another model driver
 * holds keeps it either way). Every model driver that probes this way does its DMA through the
 * kernel DMA API (none sets driver_managed_dma), so the bus's dma_configure
 * (pci_dma_configure() -> iommu_device_use_default_domain()) comes first: EBUSY, and no driver
 * bound, while a user DMA owner (iommufd) holds the device's group.
 */
export function driverProbe<T>(dev: Device, driver: string, probe: () => Result<T>): Result<T> {
  if (dev.dmaUserOwner !== null && dev.driver !== driver) {
    return err('EBUSY', `${dev.name}'s IOMMU group is DMA-owned by ${dev.dmaUserOwner}: ${driver} cannot use its default domain (iommu_device_use_default_domain)`);
  }
  const bound = deviceBindDriver(dev, driver);
  const r = probe();
  if (!r.ok && bound) deviceReleaseDriver(dev, driver);
  return r;
}
