// The `dmaOps` configuration of a machine and of a PCI endpoint: which dma_map_ops family a device
// without an IOMMU domain gets (what the kernel's platform code installs with set_dma_ops:
// gart_iommu_init, pci_dma_dev_setup_pSeries + enable_ddw, xen_swiotlb / xen_grant_setup_dma_ops,
// acpi_dma_configure_id), its validation (errors name the field path) and the factory.

import { describeValue, failConfig } from '../../base/index.ts';
import type { MachineMm } from '../../mm/index.ts';
import type { Device } from '../../pci/index.ts';
import { DummyOps, type DummyOpsConfig } from './dummy.ts';
import { GartOps, type GartOpsConfig } from './gart.ts';
import { setDmaOps, type DmaMapOps } from './ops.ts';
import { TceOps, type TceOpsConfig } from './tce.ts';
import { XenGrantOps, type XenGrantOpsConfig } from './xen-grant.ts';
import { XenSwiotlbOps, type XenSwiotlbOpsConfig } from './xen-swiotlb.ts';

export type DmaOpsConfig = GartOpsConfig | TceOpsConfig | XenSwiotlbOpsConfig | XenGrantOpsConfig | DummyOpsConfig;
export type { GartOpsConfig, TceOpsConfig, XenSwiotlbOpsConfig, XenGrantOpsConfig, DummyOpsConfig };

/** What validation needs to know of the machine. */
export interface DmaOpsMachineFacts {
  readonly pageSize: number;
  /** [start, end) of every memory region (RAM, device memory). */
  readonly regions: ReadonlyArray<{ readonly start: bigint; readonly end: bigint; readonly name: string }>;
  /** [start, end) of the swiotlb pool, or null. */
  readonly swiotlb: { readonly start: bigint; readonly end: bigint } | null;
}

const KEYS: Record<string, readonly string[]> = {
  gart: ['kind', 'busBase', 'pages', 'merge', 'fullflush', 'force'],
  tce: ['kind', 'offset', 'size', 'pageShift', 'blockSize', 'ddw', 'novmerge'],
  'xen-swiotlb': ['kind', 'p2m'],
  'xen-grant': ['kind', 'backendDomid', 'frames'],
  dummy: ['kind'],
};


function isInt(v: unknown, min: number, max: number): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= min && v <= max;
}

function checkBool(where: string, field: string, v: unknown): void {
  if (v !== undefined && typeof v !== 'boolean') failConfig(where, field, 'must be a boolean', v);
}

/**
 * Checks a dmaOps config; `where` names it (e.g. `config.dmaOps` or `pci[3] (nic0).dmaOps`).
 * @throws RangeError naming the field path.
 */
export function checkDmaOpsConfig(where: string, v: unknown, m: DmaOpsMachineFacts): DmaOpsConfig {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new RangeError(`${where} must be a dmaOps object { kind, ... }, got ${describeValue(v)}`);
  const c = v as Record<string, unknown>;
  const keys = KEYS[c.kind as string];
  if (typeof c.kind !== 'string' || keys === undefined) failConfig(where, 'kind', `must be one of ${Object.keys(KEYS).map(describeValue).join(', ')}`, c.kind);
  for (const k of Object.keys(c)) if (!keys.includes(k)) failConfig(where, k, `is not a field of a ${c.kind} dmaOps`, c[k]);
  const overlaps = (s: bigint, e: bigint): string | null => {
    for (const r of m.regions) if (s < r.end && r.start < e) return r.name;
    return null;
  };
  switch (c.kind) {
    case 'gart': {
      if (m.pageSize !== 4096) failConfig(where, 'kind', `needs 4 KiB pages (the GART is x86-64's; config.pageSize is ${m.pageSize})`, c.kind);
      if (!isInt(c.pages, 2, 1 << 20)) failConfig(where, 'pages', 'must be an integer in [2, 2^20]', c.pages);
      if (typeof c.busBase !== 'bigint' || c.busBase <= 0n || c.busBase % 4096n !== 0n) failConfig(where, 'busBase', 'must be a positive bigint, 4 KiB aligned', c.busBase);
      const end = c.busBase + BigInt(c.pages) * 4096n;
      if (end > 1n << 32n) failConfig(where, 'busBase', `must put the aperture below 4 GiB (read_aperture), ends at 0x${end.toString(16)}`, c.busBase);
      const r = overlaps(c.busBase, end);
      if (r) failConfig(where, 'busBase', `must put the aperture in a hole of the memory map: [0x${c.busBase.toString(16)}, 0x${end.toString(16)}) overlaps ${r}`, c.busBase);
      checkBool(where, 'merge', c.merge);
      checkBool(where, 'fullflush', c.fullflush);
      checkBool(where, 'force', c.force);
      break;
    }
    case 'tce': {
      if (![12, 16, 21, 24].includes(c.pageShift as number)) failConfig(where, 'pageShift', 'must be 12, 16, 21 or 24', c.pageShift);
      if (!isInt(c.size, 2, 1 << 22)) failConfig(where, 'size', 'must be an integer in [2, 2^22] (TCEs)', c.size);
      if (!isInt(c.offset, 0, 2 ** 40)) failConfig(where, 'offset', 'must be an integer TCE number in [0, 2^40]', c.offset);
      const shift = c.pageShift as number;
      if ((c.offset + c.size) * 2 ** shift > 2 ** 52) failConfig(where, 'offset', 'must keep the window below 2^52', c.offset);
      if (c.blockSize !== undefined && (!isInt(c.blockSize, 1, 1 << 16) || (c.blockSize & (c.blockSize - 1)) !== 0)) {
        failConfig(where, 'blockSize', 'must be a power of two in [1, 65536]', c.blockSize);
      }
      checkBool(where, 'novmerge', c.novmerge);
      if (c.ddw !== undefined) {
        const d = c.ddw as Record<string, unknown>;
        if (d === null || typeof d !== 'object') failConfig(where, 'ddw', 'must be { dmaOffset, busDmaLimit }', d);
        for (const k of Object.keys(d)) if (k !== 'dmaOffset' && k !== 'busDmaLimit') failConfig(`${where}.ddw`, k, 'is not a ddw field', d[k]);
        const winEnd = BigInt(c.offset + c.size) << BigInt(shift);
        if (typeof d.dmaOffset !== 'bigint' || d.dmaOffset < winEnd || d.dmaOffset >= 1n << 63n) {
          failConfig(`${where}.ddw`, 'dmaOffset', `must be a bigint at or above the TCE window's end 0x${winEnd.toString(16)} (is_direct_handle) and below 2^63`, d.dmaOffset);
        }
        if (typeof d.busDmaLimit !== 'bigint' || d.busDmaLimit <= d.dmaOffset || d.busDmaLimit >= 1n << 64n) {
          failConfig(`${where}.ddw`, 'busDmaLimit', 'must be a bigint above dmaOffset, below 2^64', d.busDmaLimit);
        }
      }
      break;
    }
    case 'xen-swiotlb': {
      if (!Array.isArray(c.p2m)) failConfig(where, 'p2m', 'must be an array of [pfn, bfn] pairs (Xen 4 KiB frames)', c.p2m);
      const pfns = new Set<number>();
      const bfns = new Set<number>();
      let ramFrames = 0n;
      for (const r of m.regions) if (r.end / 4096n > ramFrames) ramFrames = r.end / 4096n;
      c.p2m.forEach((pair: unknown, i: number) => {
        const w = `${where}.p2m[${i}]`;
        if (!Array.isArray(pair) || pair.length !== 2 || !isInt(pair[0], 0, 2 ** 40) || !isInt(pair[1], 0, 2 ** 40)) {
          throw new RangeError(`${w} must be a [pfn, bfn] pair of integers in [0, 2^40], got ${describeValue(pair)}`);
        }
        if (pfns.has(pair[0])) throw new RangeError(`${w} lists pfn ${pair[0]} twice`);
        if (bfns.has(pair[1])) throw new RangeError(`${w} lists bfn ${pair[1]} twice`);
        pfns.add(pair[0]);
        bfns.add(pair[1]);
        if (m.swiotlb && BigInt(pair[0]) * 4096n >= m.swiotlb.start && BigInt(pair[0]) * 4096n < m.swiotlb.end) {
          throw new RangeError(`${w} moves pfn ${pair[0]} of the swiotlb pool (xen_swiotlb_fixup keeps it machine-contiguous)`);
        }
      });
      // a listed bfn must not be the bfn of an unlisted pfn (which maps to itself): the p2m is one to one
      for (const b of bfns) {
        if (!pfns.has(b) && BigInt(b) < ramFrames && overlaps(BigInt(b) * 4096n, BigInt(b) * 4096n + 1n)) {
          throw new RangeError(`${where}.p2m maps a pfn to bfn ${b}, which pfn ${b} already has (frames not listed map to themselves)`);
        }
      }
      break;
    }
    case 'xen-grant': {
      if (!isInt(c.backendDomid, 0, 0x7fef)) failConfig(where, 'backendDomid', 'must be a domid in [0, 0x7fef]', c.backendDomid);
      if (c.frames !== undefined && !isInt(c.frames, 1, 256)) failConfig(where, 'frames', 'must be an integer in [1, 256]', c.frames);
      break;
    }
    default:
      break;
  }
  return c as unknown as DmaOpsConfig;
}

/** A family instance for the config (its tables allocated in the machine's RAM). */
export function createDmaOps(mm: MachineMm, cfg: DmaOpsConfig): DmaMapOps {
  switch (cfg.kind) {
    case 'gart': return new GartOps(mm, cfg);
    case 'tce': return new TceOps(mm, cfg);
    case 'xen-swiotlb': return new XenSwiotlbOps(mm, cfg);
    case 'xen-grant': return new XenGrantOps(mm, cfg);
    case 'dummy': return new DummyOps(mm);
  }
}

/**
 * set_dma_ops for dev. A TCE table's dynamic DMA window is not set up here: as on pseries,
 * enable_ddw gives it to the device when the driver asks for a mask above 32 bits (TceOps.dmaSupported).
 */
export function installDmaOps(dev: Device, ops: DmaMapOps): void {
  setDmaOps(dev, ops, false);
}
