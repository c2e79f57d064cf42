// Test support for pci/ (not exported by the layer): a minimal MachineMm holding only a physical
// memory map of device regions, an event log and counters, so topology and P2PDMA tests do not
// depend on the real machine. Memory contents and page allocation are not available.

import { EventLog, Prng, Stats } from '../base/index.ts';
import type { MachineMm, MemRegion, PhysMem } from '../mm/types.ts';
import { RANGE_DEVICE, RANGE_MMIO, RANGE_NOPAGE, withProvider } from '../phyr/flags.ts';

/** A device region whose rangeFlags follow its (mutable) providerId, as the real machine's do. */
class FakeRegion implements MemRegion {
  readonly kind = 'device' as const;
  readonly end: bigint;
  readonly mmio = true;
  providerId = 0;
  constructor(readonly id: number, readonly name: string, readonly start: bigint, readonly len: number,
    readonly hasStructPage: boolean, readonly pgmapId: number) {
    this.end = start + BigInt(len);
  }
  get rangeFlags(): number {
    const base = RANGE_DEVICE | RANGE_MMIO | (this.hasStructPage ? 0 : RANGE_NOPAGE);
    return withProvider(base, this.providerId);
  }
}

/**
 * A MachineMm with only device regions (placed from 64 GiB up, each aligned to its size).
 * Page facts, memory and the allocator throw: pci/ tests never need them.
 */
export function fakeMm(deviceMemory: ReadonlyArray<{ name: string; bytes: number; pgmap?: boolean }>): MachineMm {
  const regions: MemRegion[] = [];
  let cursor = 64n << 30n;
  let pgmaps = 0;
  for (const d of deviceMemory) {
    const len = BigInt(d.bytes);
    cursor = (cursor + len - 1n) / len * len;
    regions.push(new FakeRegion(regions.length, d.name, cursor, d.bytes, d.pgmap === true, d.pgmap ? ++pgmaps : 0));
    cursor += len;
  }
  const nope = (what: string) => (): never => {
    throw new Error(`fakeMm has no ${what}`);
  };
  return {
    pageSize: 4096,
    pageShift: 12,
    physAddrBits: 52,
    regions,
    mem: new Proxy({}, { get: (_t, k) => nope(`mem.${String(k)}`)() }) as PhysMem,
    events: new EventLog(),
    stats: new Stats(),
    rng: new Prng(1),
    regionAt: (addr: bigint) => regions.find((r) => addr >= r.start && addr < r.end),
    pfnFacts: nope('pfnFacts'),
    allocKernelPages: nope('allocKernelPages'),
    freeKernelPages: nope('freeKernelPages'),
    freePages: 0,
  };
}
