// The IOAS side of the address trace: a byte mapped into an iommufd IOAS (IOMMU_IOAS_MAP) at an
// IOVA, the area holding it, and for each hw_pagetable of the IOAS its paging domain's walk of that
// IOVA (iommuWalkInfo, the IOTLB peeked) and the devices attached to it, each access followed as the
// device's DMA engine resolves it (traceDevice); devices an earlier step attached and that have left
// are followed too, to show where their access at the IOVA lands now. Read-only.

import type { Ioas } from '../../drivers/index.ts';
import { iommuGetDomainForDev } from '../../iommu/index.ts';
import type { Machine } from '../../machine/index.ts';
import { memoryAt } from './cpu.ts';
import { reachesByte, traceDevice, traceIommuDomain } from './device.ts';
import type { IoasDeviceTrace, IoasHwptTrace, IoasViewTrace } from './types.ts';

/** An IOAS mapping (ioas-map) of (part of) a buffer, or a piece of a buffer an ioas-copy maps (a copy may map several). */
export interface TraceIoasMapping {
  readonly name: string;
  /** The IOAS's name in the scenario. */
  readonly ioas: string;
  /** The model's IOAS (null, or not alive: destroyed). */
  readonly object: Ioas | null;
  /** Offset in the buffer of the first mapped byte, the bytes mapped, and the IOVA of the first. */
  readonly offset: number;
  readonly len: number;
  readonly iova: bigint;
  /** The mapping was unmapped already: the trace shows where its old IOVA leads now. */
  readonly unmapped?: boolean;
  /** Devices attached to the IOAS by earlier steps and no longer attached (followed to where they land now). */
  readonly detached?: readonly string[];
  /** The IOAS a device is attached to now, by the scenario's name for it (a replace moved it there), or undefined. */
  readonly nowOn?: (device: string) => string | undefined;
}

/**
 * traceIoas(machine, m, iova, cpuPhys): IOVA `iova` of IOAS mapping m: the area holding it, each
 * hw_pagetable's domain walk and the accesses of its devices, and those of m.detached; an access
 * agrees when it lands on cpuPhys (the byte the CPU sees).
 */
export function traceIoas(machine: Machine, m: TraceIoasMapping, iova: bigint, cpuPhys: bigint | null): IoasViewTrace {
  const ioas = m.object !== null && m.object.alive ? m.object : null;
  const a = ioas?.areas.find((x) => iova >= x.iova && iova < x.iova + BigInt(x.len)) ?? null;
  const area = a === null ? null : { iova: a.iova, len: a.len, kind: a.kind, prot: a.prot, pinned: a.pinned };
  const hwpts: IoasHwptTrace[] = (ioas?.hwpts ?? []).map((h) => {
    const r = traceIommuDomain(h.domain, iova);
    const devices = h.devices.map((d): IoasDeviceTrace => {
      const access = traceDevice(machine, d, iova);
      return { device: d.name, throughHwpt: iommuGetDomainForDev(d) === h.domain, access, agrees: reachesByte(cpuPhys, access) };
    });
    return { id: h.id, auto: h.autoDomain, iommu: r.iommu, phys: r.phys, fault: r.fault, memory: r.phys === null ? null : memoryAt(machine, r.phys), devices };
  });
  const detached = (m.detached ?? []).map((name): IoasDeviceTrace => {
    const access = traceDevice(machine, name, iova);
    const on = m.nowOn?.(name);
    return { device: name, throughHwpt: false, access, agrees: reachesByte(cpuPhys, access), ...(on !== undefined ? { nowOn: on } : {}) };
  });
  return { mapping: m.name, ioas: m.ioas, ioasId: ioas?.id ?? null, unmapped: m.unmapped === true, iova, area, hwpts, detached };
}
