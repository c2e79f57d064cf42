// Models: the memmap (the struct page array) of mm/sparse.c and mm/sparse-vmemmap.c
// (sparse_init_nid, __populate_section_memmap) for System RAM and of mm/memremap.c
// (memremap_pages -> pagemap_range -> move_pfn_range_to_zone(ZONE_DEVICE)) for a dev_pagemap: what
// struct page memory a machine spends on its RAM, on pmem with pages and on P2PDMA BARs
// (drivers/pci/p2pdma.c: pci_p2pdma_add_resource -> devm_memremap_pages).
//
// sizeof(struct page) is 64 bytes on x86-64 and arm64 (include/linux/mm_types.h, without
// CONFIG_MEMCG_V1-era extras or debug options) whatever the base page size, so the memmap is
// 64 / PAGE_SIZE of the memory it describes: 1/64 at 4 KiB pages, 1/1024 at 64 KiB. A phyr
// ({phys_addr_t, size_t}) describes the same memory with no struct page at all.
//
// Model deviation: memmap is counted per page of each region. The kernel populates it per memory
// section (128 MiB on x86-64; subsections of 2 MiB for ZONE_DEVICE), so holes inside a present section
// also get struct pages, and the vmemmap of hugetlb pages may be freed again (HugeTLB Vmemmap
// Optimization); neither is modeled. Where a pmem namespace keeps its memmap (in RAM, or on the
// device through an altmap) is not modeled either: it is counted as pmem's own line.

import type { MemRegion } from './types.ts';

/** sizeof(struct page) on x86-64 (and arm64) in bytes. */
export const STRUCT_PAGE_SIZE = 64;

/** The memmap of one region that has struct pages. */
export interface MemmapRegion {
  readonly name: string;
  readonly kind: 'ram' | 'pmem' | 'device';
  /** Base pages of the region. */
  readonly nrPages: number;
  /** nrPages * STRUCT_PAGE_SIZE. */
  readonly bytes: number;
  /** ZONE_DEVICE (a dev_pagemap: pmem with pages, a P2PDMA BAR) or ordinary RAM zones. */
  readonly zoneDevice: boolean;
}

/** A machine's struct page memory, by kind. */
export interface MemmapBreakdown {
  readonly structPageSize: number;
  readonly pageSize: number;
  /** Memmap of System RAM. */
  readonly ram: number;
  /** Memmap of ZONE_DEVICE device memory (P2PDMA BARs with a pgmap). */
  readonly p2pdma: number;
  /** Memmap of pmem with struct pages (fsdax / devdax, ZONE_DEVICE). */
  readonly pmem: number;
  /** p2pdma + pmem. */
  readonly zoneDevice: number;
  /** Everything. */
  readonly total: number;
  readonly regions: readonly MemmapRegion[];
}

/**
 * The memmap bytes that struct pages for `len` bytes of memory at `pageSize` cost: one 64-byte
 * struct page per base page (a partial page counts as a page).
 * @throws RangeError if len is negative or not an integer, or pageSize not a power of two >= 4096.
 */
export function memmapBytesFor(len: number, pageSize = 4096): number {
  if (!Number.isSafeInteger(len) || len < 0) throw new RangeError(`len must be a non-negative integer, got ${String(len)}`);
  if (!Number.isSafeInteger(pageSize) || pageSize < 4096 || (pageSize & (pageSize - 1)) !== 0) {
    throw new RangeError(`pageSize must be a power of two >= 4096, got ${String(pageSize)}`);
  }
  return Math.ceil(len / pageSize) * STRUCT_PAGE_SIZE;
}

/** The memmap of these regions at pageSize: RAM, and every region with a dev_pagemap. */
export function memmapOf(regions: readonly MemRegion[], pageSize: number): MemmapBreakdown {
  const out: MemmapRegion[] = [];
  let ram = 0;
  let p2pdma = 0;
  let pmem = 0;
  for (const r of regions) {
    if (!r.hasStructPage || r.kind === 'reserved') continue;
    const nrPages = Math.ceil(r.len / pageSize);
    const bytes = nrPages * STRUCT_PAGE_SIZE;
    const kind = r.kind;
    out.push({ name: r.name, kind, nrPages, bytes, zoneDevice: kind !== 'ram' });
    if (kind === 'ram') ram += bytes;
    else if (kind === 'pmem') pmem += bytes;
    else p2pdma += bytes;
  }
  return {
    structPageSize: STRUCT_PAGE_SIZE, pageSize, ram, p2pdma, pmem, zoneDevice: p2pdma + pmem, total: ram + p2pdma + pmem,
    regions: out,
  };
}
