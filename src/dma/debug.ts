// Models: kernel/dma/debug.c (CONFIG_DMA_API_DEBUG; Linux 6.19; reference 14): every mapping is
// tracked per device; unmaps and syncs are checked against it (never mapped, double unmap, wrong
// size, wrong direction, wrong function, sg entry count, sync outside the mapping); leaks are reported
// when a device is released; and the ownership rule of reference 14.1 (the CPU must not write a
// buffer the device owns while it is bounced or the device is non-coherent) is checked on request.
// Violations are 'DMA-DEBUG' events on the machine's log, worded after the kernel's messages.
// Model deviation: the kernel's dma_need_unmap()/dma_need_sync() answer true whenever dma-debug is
// built in; here dma-debug only observes, and the API answers as a production kernel does. Mappings
// made while dma_need_unmap() was false (and not bounced) may be dropped without unmap: they are not
// reported as leaks (reference 14.8).

import type { MachineMm } from '../mm/types.ts';
import type { Device } from '../pci/device.ts';
import type { SgTable } from '../phyr/index.ts';
import type { EventLog } from '../base/index.ts';
import { dmaContextOf } from './context.ts';
import { DMA_BIDIRECTIONAL, DMA_FROM_DEVICE, DMA_MAPPING_ERROR, DMA_TO_DEVICE, dmaDirName } from './constants.ts';

/** How a mapping was made, as dma-debug's entry type. */
export type DmaDebugType = 'phys' | 'sg' | 'iova';

/** One tracked mapping (struct dma_debug_entry). */
export interface DmaDebugEntry {
  readonly dev: Device;
  readonly type: DmaDebugType;
  readonly devAddr: bigint;
  readonly size: number;
  /** The CPU physical address the driver mapped (the original, not the bounce buffer). */
  readonly paddr: bigint;
  readonly dir: number;
  readonly attrs: number;
  /** sg only: orig_nents of the mapping call, and the number of DMA entries it produced. */
  readonly sgCallEnts: number;
  readonly sgMappedEnts: number;
  /** Data goes through a bounce buffer. */
  readonly bounced: boolean;
  /** The device was cache-coherent at map time. */
  readonly coherent: boolean;
  /** The buffer belongs to the device (after map / sync_for_device) rather than the CPU. */
  deviceOwns: boolean;
  /** Mapped while dma_need_unmap() was false and not bounced: dropping it without unmap is allowed. */
  readonly unmapOptional: boolean;
}

const debugs = new WeakMap<MachineMm, DmaDebug>();

/** The dma-debug state of one machine. */
export class DmaDebug {
  readonly mm: MachineMm;
  /** Checks run when true (dma_debug_disabled() is false). */
  enabled = true;
  private readonly byDev = new Map<Device, Map<bigint, DmaDebugEntry[]>>();
  private liveCount = 0;

  constructor(mm: MachineMm) {
    this.mm = mm;
    debugs.set(mm, this);
  }

  get events(): EventLog {
    return this.mm.events;
  }

  /** Number of tracked mappings (of one device, or all). */
  count(dev?: Device): number {
    if (!dev) return this.liveCount;
    let n = 0;
    for (const l of this.byDev.get(dev)?.values() ?? []) n += l.length;
    return n;
  }

  /** Tracked mappings (of one device, or all). */
  entries(dev?: Device): DmaDebugEntry[] {
    const out: DmaDebugEntry[] = [];
    const maps = dev ? [this.byDev.get(dev)] : [...this.byDev.values()];
    for (const m of maps) for (const l of m?.values() ?? []) out.push(...l);
    return out;
  }

  add(e: DmaDebugEntry): void {
    let m = this.byDev.get(e.dev);
    if (!m) this.byDev.set(e.dev, (m = new Map()));
    const l = m.get(e.devAddr);
    if (l) l.push(e);
    else m.set(e.devAddr, [e]);
    this.liveCount++;
  }

  remove(e: DmaDebugEntry): void {
    const m = this.byDev.get(e.dev);
    const l = m?.get(e.devAddr);
    if (!m || !l) return;
    const i = l.indexOf(e);
    if (i < 0) return;
    l.splice(i, 1);
    if (l.length === 0) m.delete(e.devAddr);
    this.liveCount--;
  }

  /** true when some mapping of dev starts exactly at devAddr. */
  hasMappingAt(dev: Device, devAddr: bigint): boolean {
    return (this.byDev.get(dev)?.get(devAddr)?.length ?? 0) > 0;
  }

  /** bucket_find_exact: the entry mapped at exactly devAddr, preferring one that matches size/dir/type. */
  findExact(dev: Device, devAddr: bigint, size: number, dir: number, type: DmaDebugType): DmaDebugEntry | undefined {
    const l = this.byDev.get(dev)?.get(devAddr);
    if (!l || l.length === 0) return undefined;
    return l.find((e) => e.size === size && e.dir === dir && e.type === type)
      ?? l.find((e) => e.size === size) ?? l[0];
  }

  /** bucket_find_contain: an entry whose range contains devAddr. */
  findContaining(dev: Device, devAddr: bigint): DmaDebugEntry | undefined {
    const m = this.byDev.get(dev);
    if (!m) return undefined;
    const exact = m.get(devAddr);
    if (exact && exact.length) return exact[0];
    for (const l of m.values()) {
      for (const e of l) if (devAddr >= e.devAddr && devAddr < e.devAddr + BigInt(e.size)) return e;
    }
    return undefined;
  }

  /** Records a dma-debug violation for dev. */
  report(dev: Device, message: string, data?: Record<string, unknown>): void {
    this.mm.events.dmaDebug(`${dev.name}: DMA-API: ${message}`, { dev: dev.name, ...data });
  }
}

/** The dma-debug state of a machine (created with it), or undefined. */
export function dmaDebugOf(mm: MachineMm): DmaDebug | undefined {
  return debugs.get(mm);
}

const hex = (a: bigint): string => `0x${a.toString(16).padStart(16, '0')}`;

function debugOf(dev: Device): DmaDebug | null {
  const d = dmaContextOf(dev).debug;
  return d.enabled ? d : null;
}

/** Facts about a fresh mapping that dma-debug cannot see from its arguments alone. */
export interface DebugMapFacts {
  readonly bounced: boolean;
  readonly unmapOptional: boolean;
}

/** check_unmap: the shared checks of every unmap; returns the matched entry (already removed) or undefined. */
function checkUnmap(d: DmaDebug, dev: Device, type: DmaDebugType, addr: bigint, size: number, dir: number,
  sgCallEnts = 0): DmaDebugEntry | undefined {
  const e = d.findExact(dev, addr, size, dir, type);
  if (!e) {
    d.report(dev, `device driver tries to free DMA memory it has not allocated [device address=${hex(addr)}] [size=${size} bytes]`,
      { check: 'not-mapped', addr, size });
    return undefined;
  }
  if (e.size !== size) {
    d.report(dev, `device driver frees DMA memory with different size [device address=${hex(addr)}] [map size=${e.size} bytes] [unmap size=${size} bytes]`,
      { check: 'size', addr, mapSize: e.size, unmapSize: size });
  }
  if (e.type !== type) {
    d.report(dev, `device driver frees DMA memory with wrong function [device address=${hex(addr)}] [size=${e.size} bytes] [mapped as ${e.type}] [unmapped as ${type}]`,
      { check: 'type', addr, mapType: e.type, unmapType: type });
  }
  if (type === 'sg' && e.type === 'sg' && sgCallEnts && sgCallEnts !== e.sgCallEnts) {
    d.report(dev, `device driver frees DMA sg list with different entry count [map count=${e.sgCallEnts}] [unmap count=${sgCallEnts}]`,
      { check: 'sg-count', mapCount: e.sgCallEnts, unmapCount: sgCallEnts });
  }
  if (e.dir !== dir) {
    d.report(dev, `device driver frees DMA memory with different direction [device address=${hex(addr)}] [size=${e.size} bytes] [mapped with ${dmaDirName(e.dir)}] [unmapped with ${dmaDirName(dir)}]`,
      { check: 'direction', addr, mapDir: e.dir, unmapDir: dir });
  }
  d.remove(e);
  return e;
}

/** Whether an unmap of (addr) for dev matches a tracked mapping (used to skip the backend on a bogus unmap). */
export function debugDmaIsMapped(dev: Device, addr: bigint): boolean {
  const d = debugOf(dev);
  if (!d) return true;
  return d.hasMappingAt(dev, addr);
}

/** debug_dma_map_phys: tracks a successful one-shot mapping (failed ones, DMA_MAPPING_ERROR, are not tracked). */
export function debugDmaMapPhys(dev: Device, phys: bigint, size: number, dir: number, addr: bigint, attrs: number,
  facts: DebugMapFacts = { bounced: false, unmapOptional: false }): void {
  const d = debugOf(dev);
  if (!d || addr === DMA_MAPPING_ERROR) return;
  d.add({
    dev, type: 'phys', devAddr: addr, size, paddr: phys, dir, attrs, sgCallEnts: 0, sgMappedEnts: 0,
    bounced: facts.bounced, coherent: dev.dmaCoherent, deviceOwns: true, unmapOptional: facts.unmapOptional,
  });
}

/** debug_dma_unmap_phys: checks the unmap against the tracked mapping and forgets it. */
export function debugDmaUnmapPhys(dev: Device, addr: bigint, size: number, dir: number): void {
  const d = debugOf(dev);
  if (!d) return;
  checkUnmap(d, dev, 'phys', addr, size, dir);
}

/**
 * debug_dma_map_sg: one tracked entry per DMA segment of the mapped table (nents of them), each
 * remembering the call's entry count.
 */
export function debugDmaMapSg(dev: Device, sgt: SgTable, callEnts: number, mappedEnts: number, dir: number, attrs: number,
  facts: DebugMapFacts = { bounced: false, unmapOptional: false }): void {
  const d = debugOf(dev);
  if (!d) return;
  const shift = BigInt(d.mm.pageShift);
  for (let i = 0; i < mappedEnts; i++) {
    d.add({
      dev, type: 'sg', devAddr: sgt.dmaAddressAt(i), size: sgt.dmaLengthAt(i),
      paddr: (sgt.pfnAt(i) << shift) + BigInt(sgt.offsetAt(i)), dir, attrs, sgCallEnts: callEnts,
      sgMappedEnts: mappedEnts, bounced: facts.bounced, coherent: dev.dmaCoherent, deviceOwns: true,
      unmapOptional: facts.unmapOptional,
    });
  }
}

/** debug_dma_unmap_sg: checks each DMA segment the mapping produced (found from the first one's count). */
export function debugDmaUnmapSg(dev: Device, sgt: SgTable, callEnts: number, dir: number): void {
  const d = debugOf(dev);
  if (!d) return;
  let mapped = 1;
  for (let i = 0; i < mapped && i < callEnts; i++) {
    const addr = sgt.dmaAddressAt(i);
    const size = sgt.dmaLengthAt(i);
    if (i === 0) {
      const first = d.findExact(dev, addr, size, dir, 'sg');
      mapped = first?.type === 'sg' ? first.sgMappedEnts : 1;
    }
    checkUnmap(d, dev, 'sg', addr, size, dir, callEnts);
  }
}

/** check_sync: the sync must lie inside a tracked mapping, with a compatible direction; moves ownership. */
function checkSync(dev: Device, addr: bigint, size: number, dir: number, toCpu: boolean): void {
  const d = debugOf(dev);
  if (!d) return;
  const e = d.findContaining(dev, addr);
  if (!e) {
    d.report(dev, `device driver tries to sync DMA memory it has not allocated [device address=${hex(addr)}] [size=${size} bytes]`,
      { check: 'sync-not-mapped', addr, size });
    return;
  }
  const end = addr - e.devAddr + BigInt(size);
  if (end > BigInt(e.size)) {
    d.report(dev, `device driver syncs DMA memory outside allocated range [device address=${hex(e.devAddr)}] [allocation size=${e.size} bytes] [sync offset+size=${end}]`,
      { check: 'sync-range', addr, size });
  }
  if (e.dir !== DMA_BIDIRECTIONAL) {
    if (dir !== e.dir) {
      d.report(dev, `device driver syncs DMA memory with different direction [device address=${hex(addr)}] [size=${size} bytes] [mapped with ${dmaDirName(e.dir)}] [synced with ${dmaDirName(dir)}]`,
        { check: 'sync-direction', addr, mapDir: e.dir, syncDir: dir });
    }
    if (toCpu && e.dir !== DMA_FROM_DEVICE && dir !== DMA_TO_DEVICE) {
      d.report(dev, `device driver syncs device read-only DMA memory for cpu [device address=${hex(addr)}] [size=${size} bytes] [mapped with ${dmaDirName(e.dir)}] [synced with ${dmaDirName(dir)}]`,
        { check: 'sync-read-only', addr });
    }
    if (!toCpu && e.dir !== DMA_TO_DEVICE && dir !== DMA_FROM_DEVICE) {
      d.report(dev, `device driver syncs device write-only DMA memory to device [device address=${hex(addr)}] [size=${size} bytes] [mapped with ${dmaDirName(e.dir)}] [synced with ${dmaDirName(dir)}]`,
        { check: 'sync-write-only', addr });
    }
  }
  e.deviceOwns = !toCpu;
}

/** debug_dma_sync_single_for_cpu: checks the sync; the CPU owns the buffer afterwards. */
export function debugDmaSyncSingleForCpu(dev: Device, addr: bigint, size: number, dir: number): void {
  checkSync(dev, addr, size, dir, true);
}

/** debug_dma_sync_single_for_device: checks the sync; the device owns the buffer afterwards. */
export function debugDmaSyncSingleForDevice(dev: Device, addr: bigint, size: number, dir: number): void {
  checkSync(dev, addr, size, dir, false);
}

/** debug_dma_sync_sg_for_cpu/device over the DMA segments of a mapped table. */
export function debugDmaSyncSg(dev: Device, sgt: SgTable, dir: number, toCpu: boolean): void {
  for (let i = 0; i < sgt.nents; i++) checkSync(dev, sgt.dmaAddressAt(i), sgt.dmaLengthAt(i), dir, toCpu);
}

/** Tracks one dma_iova_link of [phys, phys + size) at IOVA addr. */
export function debugDmaIovaLink(dev: Device, phys: bigint, size: number, dir: number, addr: bigint, attrs: number,
  facts: DebugMapFacts = { bounced: false, unmapOptional: false }): void {
  const d = debugOf(dev);
  if (!d) return;
  d.add({
    dev, type: 'iova', devAddr: addr, size, paddr: phys, dir, attrs, sgCallEnts: 0, sgMappedEnts: 0,
    bounced: facts.bounced, coherent: dev.dmaCoherent, deviceOwns: true, unmapOptional: facts.unmapOptional,
  });
}

/**
 * Checks a dma_iova_unlink / destroy of [addr, addr + size): it must cover whole links (a partial
 * cover is a size error), at least one, each with the direction it was linked with.
 */
export function debugDmaIovaUnlink(dev: Device, addr: bigint, size: number, dir: number): void {
  const d = debugOf(dev);
  if (!d) return;
  const end = addr + BigInt(size);
  const hit = d.entries(dev).filter((e) => e.type === 'iova' && e.devAddr < end && e.devAddr + BigInt(e.size) > addr);
  if (hit.length === 0) {
    d.report(dev, `device driver tries to free DMA memory it has not allocated [device address=${hex(addr)}] [size=${size} bytes]`,
      { check: 'not-mapped', addr, size });
    return;
  }
  for (const e of hit) {
    if (e.devAddr < addr || e.devAddr + BigInt(e.size) > end) {
      d.report(dev, `device driver frees DMA memory with different size [device address=${hex(e.devAddr)}] [map size=${e.size} bytes] [unmap size=${size} bytes]`,
        { check: 'size', addr: e.devAddr, mapSize: e.size, unmapSize: size });
    }
    if (e.dir !== dir) {
      d.report(dev, `device driver frees DMA memory with different direction [device address=${hex(e.devAddr)}] [size=${e.size} bytes] [mapped with ${dmaDirName(e.dir)}] [unmapped with ${dmaDirName(dir)}]`,
        { check: 'direction', addr: e.devAddr, mapDir: e.dir, unmapDir: dir });
    }
    d.remove(e);
  }
}

/**
 * Reference 14.1: the CPU writes [phys, phys + len) — a violation for every overlapping mapping the
 * device owns that is bounced or on a non-coherent device (the device would not see the write).
 * Returns the number of violations recorded.
 */
export function debugDmaCheckCpuWrite(mm: MachineMm, phys: bigint, len: number): number {
  const d = debugs.get(mm);
  if (!d || !d.enabled) return 0;
  const end = phys + BigInt(len);
  let n = 0;
  for (const e of d.entries()) {
    if (!e.deviceOwns || (!e.bounced && e.coherent)) continue;
    if (e.paddr < end && e.paddr + BigInt(e.size) > phys) {
      n++;
      d.report(e.dev, `CPU writes to a buffer the device owns [phys=${hex(phys)}+${len}] [mapping ${hex(e.devAddr)} size=${e.size} ${dmaDirName(e.dir)}] [${e.bounced ? 'bounced' : 'non-coherent'}]`,
        { check: 'cpu-write', phys, len, devAddr: e.devAddr });
    }
  }
  return n;
}

/**
 * dma_debug_device_change at driver release: reports the device's mappings still live (except those
 * that needed no unmap) as a leak. Returns the number of leaked mappings.
 */
export function dmaDebugCheckLeaks(dev: Device): number {
  const d = debugOf(dev);
  if (!d) return 0;
  const leaked = d.entries(dev).filter((e) => !e.unmapOptional);
  if (leaked.length > 0) {
    const e = leaked[0];
    d.report(dev, `device driver has pending DMA allocations while released from device [count=${leaked.length}] One of leaked entries details: [device address=${hex(e.devAddr)}] [size=${e.size} bytes] [mapped with ${dmaDirName(e.dir)}] [mapped as ${e.type}]`,
      { check: 'leak', count: leaked.length });
  }
  return leaked.length;
}
