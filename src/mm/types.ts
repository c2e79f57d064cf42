// The machine's memory-management surface that upper layers (pci, iommu, dma, consumers) use.
// Implemented by src/mm/machine.ts; upper layers depend on these types only.

import type { EventLog, Prng, Result, Slots, Stats } from '../base/internal.ts';

export type RegionKind = 'ram' | 'reserved' | 'pmem' | 'device';

/** One entry of the physical memory map (like a line of /proc/iomem). */
export interface MemRegion {
  /** Region index in machine.regions. */
  readonly id: number;
  readonly name: string;
  readonly kind: RegionKind;
  /** First physical address. */
  readonly start: bigint;
  /** Length in bytes. */
  readonly len: number;
  /** Exclusive end address (start + len). */
  readonly end: bigint;
  /** true when the memory has struct page (System RAM; pmem/DAX configured with pages; P2P pgmap). */
  readonly hasStructPage: boolean;
  /** true for I/O memory that must be accessed uncached (device BARs). */
  readonly mmio: boolean;
  /** dev_pagemap id for ZONE_DEVICE pages (0 = none). Pages of different pgmaps never merge. */
  readonly pgmapId: number;
  /** P2P provider id registered by the PCI layer for this region (0 = none). Mutable by pci/. */
  providerId: number;
  /** Range flags (phyr/flags.ts) for memory in this region. */
  readonly rangeFlags: number;
}

/** Sparse byte contents of physical memory: unwritten memory reads as zero. */
export interface PhysMem {
  /**
   * Reads len bytes at addr. Throws RangeError (naming the address) if any byte is outside a
   * region or the access crosses a hole; nothing is read partially.
   */
  read(addr: bigint, len: number): Uint8Array;
  /** Writes bytes at addr; same checks as read; on error nothing is written. */
  write(addr: bigint, bytes: Uint8Array): void;
  /** Fills len bytes with a value (same checks). */
  fill(addr: bigint, len: number, value: number): void;
  /** Copies len bytes from src to dst (as a CPU or a bounce memcpy). */
  copy(dst: bigint, src: bigint, len: number): void;
  /** write() as a device's DMA engine does it: not a CPU store (dma-debug's CPU-write check skips it). */
  deviceWrite(addr: bigint, bytes: Uint8Array): void;
  /** copy() as swiotlb's bounce memcpy: not a driver's CPU store (dma-debug's CPU-write check skips it). */
  bounceCopy(dst: bigint, src: bigint, len: number): void;
  /**
   * A live, zero-copy view of len bytes at addr for hot paths (IOMMU table pages, bounce slots).
   * The range must lie inside one aligned chunk of chunkSize bytes of RAM or device memory; the
   * chunk's backing is allocated on first use. Throws RangeError otherwise.
   */
  view(addr: bigint, len: number): Uint8Array;
  /** Granule of the sparse backing store in bytes (4096). */
  readonly chunkSize: number;
  /** Bytes of backing store actually allocated (what the model costs, not the machine). */
  readonly residentBytes: number;
}

/** Facts about one page frame that upper layers need (is_zone_device_page, page_pgmap, ...). */
export interface PageFacts {
  readonly region: MemRegion;
  readonly hasStructPage: boolean;
  readonly pgmapId: number;
  readonly rangeFlags: number;
}

/**
 * memblock, the boot allocator that hands out RAM before the page allocator exists, as the layers
 * above mm see it while the machine is being built (swiotlb's default pool).
 */
export interface Memblock {
  /** Base page size. */
  readonly pageSize: number;
  /**
   * memblock_alloc_low(bytes, PAGE_SIZE) (mm/memblock.c): bytes rounded up to whole pages, from the
   * highest free RAM that ends at or below ARCH_LOW_ADDRESS_LIMIT (4 GiB - 1), page-aligned, top-down
   * as memblock_find_in_range_node() allocates by default. Returns the physical start address, or
   * -1 when no free range below 4 GiB is large enough.
   */
  allocLow(bytes: number): number;
  /**
   * memblock_reserve() of [start, start + bytes) rounded out to whole pages, for a boot allocation
   * whose place is known (a recorded kernel's swiotlb pool, which memblock put below the bootloader's
   * reservations). Returns start, or -1 when the range is not wholly free RAM.
   */
  allocAt(start: number, bytes: number): number;
}

/** The fault-injection points a kernel page allocation counts under (base/faults.ts). */
export type KernelPagesPoint = 'page-alloc' | 'iommu-pt';

/** What an allocKernelPages caller's gfp flags would say. */
export interface KernelPagesOptions {
  /**
   * The end (a physical address) of the zone asked for: pages wholly below it, as a GFP_DMA
   * (ZONE_DMA) or GFP_DMA32 (ZONE_DMA32) allocation gets them. Omitted: anywhere.
   */
  readonly zoneEnd?: bigint;
  /** __GFP_NOWARN: no WARN for an order above MAX_PAGE_ORDER. */
  readonly noWarn?: boolean;
}

/** What pci/, iommu/ and dma/ need from the machine. */
export interface MachineMm {
  readonly pageSize: number;
  readonly pageShift: number;
  /** The page allocator's largest order (MAX_PAGE_ORDER: 10 at 4 KiB pages, 11 at 16 KiB, 13 at 64 KiB). */
  readonly maxPageOrder: number;
  readonly physAddrBits: number;
  readonly regions: readonly MemRegion[];
  readonly mem: PhysMem;
  readonly events: EventLog;
  readonly stats: Stats;
  readonly rng: Prng;
  /** State the layers above keep per machine (PCI topology, memory-type lookup, ...), by typed key. */
  readonly slots: Slots;
  /** The region holding addr, or undefined for a hole. */
  regionAt(addr: bigint): MemRegion | undefined;
  /** Page facts for a pfn, or undefined if the pfn is in a hole. */
  pfnFacts(pfn: bigint): PageFacts | undefined;
  /**
   * PageReserved() of a page with a struct page: a boot (memblock) allocation not given back
   * (mm/memblock.c: memmap_init_reserved_pages()) or a ZONE_DEVICE page (mm/mm_init.c:
   * __init_zone_device_page()). False for a pfn without a struct page.
   */
  pageReserved(pfn: bigint): boolean;
  /**
   * Allocates 2^order contiguous base pages of System RAM for kernel use (page-table pages,
   * swiotlb pool, PRP lists), from a zone if opts.zoneEnd says so. Returns the first pfn, or ENOMEM
   * (an order above MAX_PAGE_ORDER also WARNs once per machine unless opts.noWarn).
   */
  allocKernelPages(order: number, point?: KernelPagesPoint, opts?: KernelPagesOptions): Result<bigint>;
  /** Frees what allocKernelPages returned (same pfn and order); a mismatch is a BUG. */
  freeKernelPages(pfn: bigint, order: number): void;
  /**
   * memblock_free_late: gives boot (memblock) memory back to the page allocator after boot. addr and
   * bytes must be page-aligned and describe what a Memblock allocation returned.
   */
  memblockFreeLate(addr: bigint, bytes: number): void;
  /** Free base pages in the buddy allocator now. */
  readonly freePages: number;
}

/** A hugetlb pool (struct hstate): free pages plus reservations taken by mmap. */
export interface HugetlbPool {
  /** Order of one huge page in base pages. */
  readonly order: number;
  readonly len: number;
  /** Pages in the pool (free + in use). */
  total: number;
  /** Free head pfns (a stack). */
  readonly free: number[];
  /** Pages promised to mappings but not yet faulted in (resv_huge_pages). */
  reserved: number;
}

/**
 * enum mmu_notifier_event (include/linux/mmu_notifier.h): why a range of a process's page tables
 * is being invalidated.
 */
export const MMU_NOTIFY_UNMAP = 0;
export const MMU_NOTIFY_CLEAR = 1;
export const MMU_NOTIFY_PROTECTION_VMA = 2;
export const MMU_NOTIFY_PROTECTION_PAGE = 3;
export const MMU_NOTIFY_SOFT_DIRTY = 4;
export const MMU_NOTIFY_RELEASE = 5;
export const MMU_NOTIFY_MIGRATE = 6;
export const MMU_NOTIFY_EXCLUSIVE = 7;
export type MmuNotifierEvent = 0 | 1 | 2 | 3 | 4 | 5 | 6 | 7;

/**
 * What a process address space calls around a change of present page-table entries
 * (mmu_notifier_invalidate_range_start / _end): implemented by mm/mmu-notifier.ts's
 * subscriptions, declared here so that user-mm.ts does not depend on it. start and end are user
 * addresses (end exclusive).
 */
export interface MmuNotifierHook {
  invalidateRangeStart(start: number, end: number, event: MmuNotifierEvent): void;
  invalidateRangeEnd(start: number, end: number, event: MmuNotifierEvent): void;
}
