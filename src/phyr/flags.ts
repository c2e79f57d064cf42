// Memory-type flags carried by every range, so later layers can route it (RAM vs MMIO vs a P2P
// provider) without looking the address up again. Layout of the 32-bit value:
//   bits 0-3  kind:   RANGE_RAM, RANGE_PMEM, RANGE_DEVICE
//   bit  4    RANGE_NOPAGE: no struct page behind this memory (device BAR, pmem without pages)
//   bit  5    RANGE_MMIO: I/O memory, must be mapped uncached (DMA_ATTR_MMIO when mapped)
//   bits 8-31 provider id (0 = none): the P2P provider whose BAR holds this memory

export const RANGE_KIND_MASK = 0xf;
export const RANGE_RAM = 0;
export const RANGE_PMEM = 1;
export const RANGE_DEVICE = 2;
export const RANGE_NOPAGE = 1 << 4;
export const RANGE_MMIO = 1 << 5;
export const RANGE_PROVIDER_SHIFT = 8;
export const RANGE_PROVIDER_MAX = 0xffffff;

export function rangeKind(flags: number): number {
  return flags & RANGE_KIND_MASK;
}

export function rangeHasPage(flags: number): boolean {
  return (flags & RANGE_NOPAGE) === 0;
}

export function rangeProvider(flags: number): number {
  return flags >>> RANGE_PROVIDER_SHIFT;
}

export function withProvider(flags: number, providerId: number): number {
  if (!Number.isInteger(providerId) || providerId < 0 || providerId > RANGE_PROVIDER_MAX) {
    throw new RangeError(`providerId must be an integer in [0, ${RANGE_PROVIDER_MAX}], got ${providerId}`);
  }
  return ((flags & 0xff) | (providerId << RANGE_PROVIDER_SHIFT)) >>> 0;
}

/** A short human name: 'ram', 'pmem', 'device', with '+mmio', '+nopage', '+p2p#N'. */
export function describeFlags(flags: number): string {
  const kind = ['ram', 'pmem', 'device'][rangeKind(flags)] ?? `kind${rangeKind(flags)}`;
  let s = kind;
  if (flags & RANGE_NOPAGE) s += '+nopage';
  if (flags & RANGE_MMIO) s += '+mmio';
  const p = rangeProvider(flags);
  if (p) s += `+p2p#${p}`;
  return s;
}
