// Models: what a PCIe device's DMA engine does with a DMA address (no kernel file: the hardware side
// of the mapping, where every address a device issues must translate). An access is routed like a
// memory TLP: a peer BAR reachable by bus address
// below a common switch (P2P BUS_ADDR) takes it directly; everything else goes upstream, through the
// IOMMU of the device's domain (IOTLB, page tables, permissions, blocked/identity domains), through
// the translation of the device's dma_map_ops family (GART aperture and GATT, TCE window and
// table or direct window, the Xen p2m, grant references), or, with none of these, through
// dma_range_map / identity translation. Faults are logged (kind 'FAULT') and the
// access does nothing (errno EFAULT): a write is all or nothing. In a confidential-computing guest
// the private RAM a device reaches crosses the bus as ciphertext (the model cipher of cc.ts).

import { SlotKey, checkAddr, checkLen, err, ok, type Result } from '../base/internal.ts';
import { iommuGetDomainForDev, iommuTranslate } from '../iommu/internal.ts';
import type { MachineMm } from '../mm/index.ts';
import {
  PCI_P2PDMA_MAP_BUS_ADDR, pciP2pdmaMapTypePeek, type Device, type DeviceDmaAccess, type P2pdmaProvider,
} from '../pci/internal.ts';
import { dmaContextOf } from './context.ts';
import { getDmaOps, type DmaOpsKind } from './ops/ops.ts';
import { ccStateOf } from './cc.ts';
import './counters.ts';

/** One translated piece of an access: CPU physical address and length. */
interface Piece { phys: bigint; len: number }

/** A peer BAR window on the bus that a device reaches without going upstream. */
interface BusWindow { busStart: bigint; busEnd: bigint; busOffset: bigint }

/** The slot on a device that caches the peer BAR windows it reaches by bus address. */
const BUS_WINDOWS = new SlotKey<BusWindow[]>('dma-p2p-bus-windows');

/**
 * Peer BARs this device reaches by bus address through a switch (map type BUS_ADDR). The fabric
 * routes a TLP without asking the kernel, so the map types are peeked: no lookup is counted, no
 * map-type cache entry is filled and no pci_warn is reported (the kernel computes a map type only
 * when a driver maps P2P memory or asks a distance: drivers/pci/p2pdma.c pci_p2pdma_map_type,
 * pci_p2pdma_distance_many). peek: also leave the windows uncached on the device (dmaDeviceRoute).
 */
function busWindows(dev: Device, peek = false): BusWindow[] {
  const cached = dev.slots.get(BUS_WINDOWS);
  if (cached !== undefined) return cached;
  const ctx = dmaContextOf(dev);
  const out: BusWindow[] = [];
  const topo = ctx.topology;
  if (topo && dev.pci) {
    const seen = new Set<number>();
    for (const region of ctx.mm.regions) {
      const id = region.providerId;
      if (!id || seen.has(id)) continue;
      seen.add(id);
      const provider = topo.providerById(id) as P2pdmaProvider | null;
      if (!provider) continue;
      if (pciP2pdmaMapTypePeek(provider, dev) !== PCI_P2PDMA_MAP_BUS_ADDR) continue;
      const r = provider.region;
      out.push({ busStart: r.start + provider.busOffset, busEnd: r.end + provider.busOffset, busOffset: provider.busOffset });
    }
  }
  if (!peek) dev.slots.set(BUS_WINDOWS, out);
  return out;
}

/** min_not_zero(*dev->dma_mask, dev->bus_dma_limit): the highest address the device can drive. */
function addressLimit(dev: Device): bigint | null {
  const mask = dev.dmaMask;
  if (mask === null || mask === 0n) return null;
  const lim = dev.busDmaLimit;
  return lim !== 0n && lim < mask ? lim : mask;
}

function fault(dev: Device, mm: MachineMm, write: boolean, addr: bigint, len: number, reason: string): Result<never> {
  mm.stats.deviceDmaFaults++;
  mm.events.fault('dma-device', `${dev.name}: DMA ${write ? 'write' : 'read'} of ${len} bytes at 0x${addr.toString(16)} faulted: ${reason}`,
    { dev: dev.name, addr, len, write, reason });
  return err('EFAULT', reason);
}

/** Translates [addr, addr+len) into CPU physical pieces, or the reason it cannot. */
function translate(dev: Device, mm: MachineMm, addr: bigint, len: number, write: boolean): Piece[] | string {
  const limit = addressLimit(dev);
  if (limit === null) return 'device has no DMA mask';
  const last = addr + BigInt(len) - 1n;
  if (last > limit) return `address 0x${last.toString(16)} is beyond the DMA mask 0x${limit.toString(16)}`;
  const pieces: Piece[] = [];
  const windows = busWindows(dev);
  const domain = iommuGetDomainForDev(dev);
  const ops = domain ? null : getDmaOps(dev);
  let a = addr;
  let left = len;
  while (left > 0) {
    let phys: bigint;
    let n = left;
    const w = windows.find((x) => a >= x.busStart && a < x.busEnd);
    if (w) {
      // P2P through the switch: the peer BAR answers its bus address; never reaches the IOMMU.
      phys = a - w.busOffset;
      n = Math.min(left, Number(w.busEnd - a));
    } else if (domain) {
      const g = domain.granule || mm.pageSize;
      const off = Number(a % BigInt(g));
      n = Math.min(left, g - off);
      const t = iommuTranslate(domain, a, write);
      if (!t.ok) return `IOMMU: ${t.reason}`;
      phys = t.phys;
    } else if (ops) {
      const t = ops.translate(dev, a, write);
      if (typeof t === 'string') return t;
      phys = t.phys;
      n = Math.min(left, t.len);
    } else {
      const map = dev.dmaRangeMap;
      if (map) {
        const m = map.find((x) => a >= x.dmaStart && a - x.dmaStart < BigInt(x.len));
        if (!m) return `DMA address 0x${a.toString(16)} is in no dma_range_map entry`;
        phys = m.cpuStart + (a - m.dmaStart);
        n = Math.min(left, Number(m.dmaStart + BigInt(m.len) - a));
      } else {
        phys = a;
      }
    }
    const region = mm.regionAt(phys);
    if (!region || (region.kind !== 'ram' && region.kind !== 'device' && region.kind !== 'pmem')) {
      return `no memory at physical address 0x${phys.toString(16)}`;
    }
    n = Math.min(n, Number(region.end - phys));
    if (region.providerId !== 0) {
      // a BAR of a function whose memory decode is off claims nothing (PCI_COMMAND_MEMORY clear)
      const owner = (dmaContextOf(dev).topology?.providerById(region.providerId) as P2pdmaProvider | null)?.owner.pci as { memoryEnabled?: boolean } | null;
      if (owner && owner.memoryEnabled === false) return `${region.name} does not decode: PCI_COMMAND_MEMORY of its function is off`;
    }
    const prev = pieces[pieces.length - 1];
    if (prev && prev.phys + BigInt(prev.len) === phys) prev.len += n;
    else pieces.push({ phys, len: n });
    a += BigInt(n);
    left -= n;
  }
  return pieces;
}

/** The DMA engine of a device: reads and writes by DMA address through its real translation path. */
class DeviceDma implements DeviceDmaAccess {
  read(dev: Device, addr: bigint, len: number): Result<Uint8Array> {
    checkAddr('addr', addr);
    checkLen('len', len);
    const mm = dmaContextOf(dev).mm;
    const pieces = translate(dev, mm, addr, len, false);
    if (typeof pieces === 'string') return fault(dev, mm, false, addr, len, pieces);
    const out = new Uint8Array(len);
    const cc = ccStateOf(mm);
    let at = 0;
    for (const p of pieces) {
      out.set(mm.mem.read(p.phys, p.len), at);
      // a confidential-computing guest's private RAM crosses the bus encrypted (cc.ts)
      if (cc !== null) cc.deviceView(mm, out, at, p.phys, p.len);
      at += p.len;
    }
    mm.stats.deviceDmaReads++;
    mm.stats.deviceDmaBytes += len;
    return ok(out);
  }

  write(dev: Device, addr: bigint, bytes: Uint8Array): Result<void> {
    checkAddr('addr', addr);
    if (!(bytes instanceof Uint8Array)) throw new TypeError(`bytes must be a Uint8Array, got ${typeof bytes}`);
    const mm = dmaContextOf(dev).mm;
    const len = bytes.length;
    const pieces = translate(dev, mm, addr, len, true);
    if (typeof pieces === 'string') return fault(dev, mm, true, addr, len, pieces);
    const cc = ccStateOf(mm);
    // what the CPU will read of private RAM is the device's bytes decrypted (cc.ts)
    const src = cc === null ? bytes : bytes.slice();
    let at = 0;
    for (const p of pieces) {
      if (cc !== null) cc.deviceView(mm, src, at, p.phys, p.len);
      mm.mem.deviceWrite(p.phys, src.subarray(at, at + p.len));
      at += p.len;
    }
    mm.stats.deviceDmaWrites++;
    mm.stats.deviceDmaBytes += len;
    return ok();
  }
}

/** Stateless: one engine serves every device (each call names its device). */
const deviceDma = new DeviceDma();

/**
 * Gives a device its DMA engine (dev.dmaRead / dev.dmaWrite). createMachine calls this for every
 * device after the device's DMA context is registered.
 */
export function installDeviceDmaAccess(dev: Device): void {
  dev.dmaAccess = deviceDma;
  dev.slots.delete(BUS_WINDOWS);
}

/**
 * Where a device's access to one DMA address goes, as the engine above routes it (dmaDeviceRoute).
 * - 'p2p-bus': a peer BAR below a common switch answers the bus address; phys = addr - busOffset.
 * - 'iommu': upstream through the IOMMU of `domain` (the caller walks it: iommu's iommuWalkInfo / iotlbPeek).
 * - 'dma-ops': through the device's dma_map_ops family's translation (GART, TCE, Xen ...).
 * - 'direct': dma-direct: through the `rangeMap` entry, or identity when the device has none.
 * - 'fault': the address is beyond the device's DMA mask, or no translation covers it.
 */
export type DmaDeviceRoute =
  | { readonly kind: 'p2p-bus'; readonly phys: bigint; readonly busOffset: bigint; readonly providerId: number }
  | { readonly kind: 'iommu'; readonly domain: NonNullable<ReturnType<typeof iommuGetDomainForDev>> }
  | { readonly kind: 'dma-ops'; readonly ops: DmaOpsKind; readonly phys: bigint; readonly len: number }
  | { readonly kind: 'direct'; readonly phys: bigint; readonly rangeMap: { cpuStart: bigint; dmaStart: bigint; len: number } | null }
  | { readonly kind: 'fault'; readonly reason: string };

/**
 * The route a DMA access at addr takes from dev (the first byte's; see DmaDeviceRoute), for traces
 * and reports. Read-only: no counter moves, no event is logged and no IOTLB entry is filled; the
 * IOMMU route names the domain and leaves the walk to the caller.
 */
export function dmaDeviceRoute(dev: Device, addr: bigint): DmaDeviceRoute {
  checkAddr('addr', addr);
  const limit = addressLimit(dev);
  if (limit === null) return { kind: 'fault', reason: 'device has no DMA mask' };
  if (addr > limit) return { kind: 'fault', reason: `address 0x${addr.toString(16)} is beyond the DMA mask 0x${limit.toString(16)}` };
  const w = busWindows(dev, true).find((x) => addr >= x.busStart && addr < x.busEnd);
  if (w) {
    const phys = addr - w.busOffset;
    return { kind: 'p2p-bus', phys, busOffset: w.busOffset, providerId: dmaContextOf(dev).mm.regionAt(phys)?.providerId ?? 0 };
  }
  const domain = iommuGetDomainForDev(dev);
  if (domain) return { kind: 'iommu', domain };
  const ops = getDmaOps(dev);
  if (ops) {
    const t = ops.translate(dev, addr, false);
    if (typeof t === 'string') return { kind: 'fault', reason: t };
    return { kind: 'dma-ops', ops: ops.kind, phys: t.phys, len: t.len };
  }
  const map = dev.dmaRangeMap;
  if (map) {
    const m = map.find((x) => addr >= x.dmaStart && addr - x.dmaStart < BigInt(x.len));
    if (!m) return { kind: 'fault', reason: `DMA address 0x${addr.toString(16)} is in no dma_range_map entry` };
    return { kind: 'direct', phys: m.cpuStart + (addr - m.dmaStart), rangeMap: { cpuStart: m.cpuStart, dmaStart: m.dmaStart, len: m.len } };
  }
  return { kind: 'direct', phys: addr, rangeMap: null };
}
