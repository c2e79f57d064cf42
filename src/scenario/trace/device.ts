// The device side of the address trace: one DMA address as a device's DMA engine resolves it (a
// peer BAR's bus address, an IOVA walked through the IOMMU's tables, a dma-direct address or a
// dma_map_ops family's), down to the physical byte, with the swiotlb slot when that byte is a
// bounce slot. Read-only: the IOTLB is peeked, never filled, and no counter moves, so a trace
// leaves the machine as it found it.

import { checkAddr } from '../../base/index.ts';
import { dmaDeviceRoute, swiotlbSlotInfo } from '../../dma/index.ts';
import { iommuWalkInfo, iotlbPeek, type IommuDomain } from '../../iommu/index.ts';
import type { Machine } from '../../machine/index.ts';
import type { Device } from '../../pci/index.ts';
import { memoryAt, p2pProviderAt } from './cpu.ts';
import type { DeviceTrace, IommuTrace } from './types.ts';

/** Bytes as hex pairs, lowest address first. */
export function hexBytes(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(' ');
}

/**
 * traceIommuDomain(d, iova): the IOMMU's view of iova in domain d: the entries iommuWalkInfo walks,
 * the IOTLB peeked, and where an access goes (the cached translation when there is one).
 */
export function traceIommuDomain(d: IommuDomain, iova: bigint): { iommu: IommuTrace; phys: bigint | null; fault: string | null } {
  if (d.type === 'blocked') {
    return { iommu: { domainType: d.type, format: null, walk: [], walkPhys: null, prot: 0, iotlb: { hit: false, phys: null, leafIova: null, leafBytes: 0, stale: false } }, phys: null, fault: 'blocked domain' };
  }
  if (d.type === 'identity' || d.pt === null) {
    return { iommu: { domainType: d.type, format: null, walk: [], walkPhys: iova, prot: 0, iotlb: { hit: false, phys: null, leafIova: null, leafBytes: 0, stale: false } }, phys: iova, fault: null };
  }
  const steps = iommuWalkInfo(d, iova);
  const walk = steps.map((s) => ({
    level: s.level, tablePhys: s.tablePhys, index: s.index, entry: s.pte, entryBytes: hexBytes(s.entryBytes),
    kind: s.kind, oa: s.oa, leafBytes: s.leafBytes, attrs: s.attrs,
  }));
  const leaf = steps[steps.length - 1];
  const walkPhys = leaf !== undefined && leaf.kind === 'leaf' ? leaf.oa + (iova - leaf.leafIova) : null;
  const peek = iotlbPeek(d, iova);
  const iotlb = peek === null
    ? { hit: false, phys: null, leafIova: null, leafBytes: 0, stale: false }
    : { hit: true, phys: peek.phys, leafIova: peek.leafIova, leafBytes: peek.leafBytes, stale: peek.phys !== walkPhys };
  // the device uses a cached translation when there is one, stale or not (iommuTranslate)
  const phys = peek !== null ? peek.phys : walkPhys;
  const fault = phys === null ? `no translation for iova 0x${iova.toString(16)}` : null;
  return { iommu: { domainType: d.type, format: d.format?.name ?? null, walk, walkPhys, prot: leaf?.kind === 'leaf' ? leaf.prot : 0, iotlb }, phys, fault };
}

/**
 * traceDevice(machine, device, dmaAddr): how `device`'s DMA engine resolves dmaAddr, layer by
 * layer: the route (P2P bus address, IOVA with each table level walked and the IOTLB peeked,
 * dma-direct address with its dma_range_map entry, a dma_map_ops family's address), the physical
 * address the access lands on, its memory type and P2P provider, and the swiotlb slot if it is one.
 */
export function traceDevice(machine: Machine, device: Device | string, dmaAddr: bigint): DeviceTrace {
  checkAddr('dmaAddr', dmaAddr);
  const dev = typeof device === 'string' ? machine.device(device) : device;
  const route = dmaDeviceRoute(dev, dmaAddr);
  const base = { device: dev.name, dmaAddr, p2p: null, iommu: null, rangeMap: null, dmaOps: null, phys: null, fault: null, memory: null, swiotlb: null };
  let t: DeviceTrace;
  switch (route.kind) {
    case 'fault':
      return { ...base, addressKind: 'fault', fault: route.reason };
    case 'p2p-bus':
      t = { ...base, addressKind: 'bus address', p2p: p2pProviderAt(machine, route.phys), phys: route.phys };
      break;
    case 'iommu': {
      const r = traceIommuDomain(route.domain, dmaAddr);
      t = { ...base, addressKind: route.domain.type === 'identity' ? 'identity' : route.domain.type === 'blocked' ? 'fault' : 'IOVA', iommu: r.iommu, phys: r.phys, fault: r.fault };
      break;
    }
    case 'dma-ops':
      t = { ...base, addressKind: 'dma-ops address', dmaOps: route.ops, phys: route.phys };
      break;
    case 'direct':
      t = { ...base, addressKind: 'dma-direct address', rangeMap: route.rangeMap, phys: route.phys };
      break;
  }
  if (t.phys === null) return t;
  const memory = memoryAt(machine, t.phys);
  const slot = swiotlbSlotInfo(dev, t.phys);
  return {
    ...t, memory,
    p2p: t.p2p ?? p2pProviderAt(machine, t.phys),
    fault: t.fault ?? (memory === null ? `no memory at physical address 0x${t.phys.toString(16)}` : null),
    swiotlb: slot === null ? null : { poolStart: slot.poolStart, slot: slot.slot, slotAddr: slot.slotAddr, origAddr: slot.origAddr },
  };
}

/** A device access reaches the byte the CPU sees at cpuPhys: it lands there, or on a swiotlb slot bouncing exactly that address. */
export function reachesByte(cpuPhys: bigint | null, a: DeviceTrace): boolean {
  return cpuPhys !== null && a.fault === null && (a.phys === cpuPhys || (a.swiotlb !== null && a.swiotlb.origAddr === cpuPhys));
}
