// The address trace's data: every address one byte has at every layer, from the process's virtual
// address down to the physical byte a device's access lands on. Plain data (bigints, strings,
// numbers): traceToJson turns it into JSON with bigints as hex strings.

import type { UserPteInfo } from '../../mm/index.ts';

/** What the machine's memory map says about a physical address. */
export interface MemoryTrace {
  /** The region's name (e.g. 'System RAM', 'gpu0.bar0'). */
  readonly region: string;
  /** ram, pmem, device or reserved. */
  readonly kind: string;
  /** I/O memory, accessed uncached. */
  readonly mmio: boolean;
  /** The memory has struct page (RAM; pmem or a BAR with pages). */
  readonly structPage: boolean;
  /** The region's memory-type range flags in words (phyr's describeFlags: 'ram', 'device+mmio+p2p#1', ...). */
  readonly flags: string;
}

/** The P2P provider (pci_p2pdma) whose BAR holds a physical address. */
export interface P2pProviderTrace {
  readonly id: number;
  /** The PCI function that owns the BAR. */
  readonly device: string;
  readonly bar: number;
  /** Bus address - CPU physical address of the BAR. */
  readonly busOffset: bigint;
  /** The byte's PCI bus address (phys + busOffset). */
  readonly busAddr: bigint;
}

/** A folio as the trace shows it. */
export interface FolioTrace {
  /** First frame of the folio. */
  readonly head: bigint;
  readonly order: number;
  readonly refcount: number;
  readonly pincount: number;
}

/** The CPU side of one byte: VA -> user page-table entry -> pfn, folio -> physical address. */
export interface CpuTrace {
  readonly va: bigint;
  /** The VMA holding va (null: unmapped). */
  readonly vma: { readonly start: bigint; readonly end: bigint; readonly kind: string; readonly writable: boolean } | null;
  /** The user page-table entry (null: no VMA). */
  readonly pte: UserPteInfo | null;
  /** The frame holding the byte (null: not present). */
  readonly pfn: bigint | null;
  /** The folio holding the frame (null: none, e.g. a PFN map, the zero page or a page not present). */
  readonly folio: FolioTrace | null;
  /** The frame is the shared zero page (or part of the huge zero folio). */
  readonly zeroPage: boolean;
  /** The byte's physical address (null: not present). */
  readonly phys: bigint | null;
  readonly memory: MemoryTrace | null;
  readonly p2p: P2pProviderTrace | null;
}

/** One IOMMU page-table entry the walk visits. */
export interface IommuLevelTrace {
  /** Table level, 0 = the 4 KiB level; the walk starts at the top. */
  readonly level: number;
  /** Physical address of the table page. */
  readonly tablePhys: bigint;
  readonly index: number;
  /** The entry as a little-endian u64. */
  readonly entry: bigint;
  /** The entry's 8 bytes as they sit in memory, hex, lowest address first ('67 30 ...'). */
  readonly entryBytes: string;
  readonly kind: 'empty' | 'table' | 'leaf';
  /** The next table's or the leaf's physical address (0n for an empty entry). */
  readonly oa: bigint;
  /** Bytes a leaf maps (0 otherwise). */
  readonly leafBytes: number;
  /** The format's attribute bits in words. */
  readonly attrs: string;
}

/** The IOMMU part of a device access. */
export interface IommuTrace {
  /** The domain type: dma, dma-fq, identity, blocked, unmanaged. */
  readonly domainType: string;
  /** The page-table format (null for identity and blocked domains). */
  readonly format: string | null;
  /** The entries walked, top level first (empty without a page table). */
  readonly walk: readonly IommuLevelTrace[];
  /** Where the page tables send the address (null: a hole). */
  readonly walkPhys: bigint | null;
  /** IOMMU prot bits of the leaf walked (0 for a hole). */
  readonly prot: number;
  /**
   * The IOTLB, peeked (the trace neither fills it nor counts): hit with the cached translation, or
   * a miss (the device's next access walks the tables). stale: the cached translation differs from
   * the tables' (a lazy unmap's window).
   */
  readonly iotlb: { readonly hit: boolean; readonly phys: bigint | null; readonly leafIova: bigint | null; readonly leafBytes: number; readonly stale: boolean };
}

/** The device side of one DMA address: the route and where the access lands. */
export interface DeviceTrace {
  readonly device: string;
  readonly dmaAddr: bigint;
  /**
   * What the DMA address is: 'bus address' (P2P through a switch), 'IOVA' (through an IOMMU),
   * 'dma-direct address' (phys_to_dma), 'dma-ops address' (a dma_map_ops family's), 'identity' (an
   * identity domain) or 'fault'.
   */
  readonly addressKind: 'bus address' | 'IOVA' | 'dma-direct address' | 'dma-ops address' | 'identity' | 'fault';
  /** P2P through a switch: the provider answering the bus address. */
  readonly p2p: P2pProviderTrace | null;
  readonly iommu: IommuTrace | null;
  /** dma-direct: the dma_range_map entry used (null: identity, phys == DMA address). */
  readonly rangeMap: { readonly cpuStart: bigint; readonly dmaStart: bigint; readonly len: number } | null;
  /** The dma_map_ops family translating (gart, tce, xen-swiotlb, ...), or null. */
  readonly dmaOps: string | null;
  /** Where the device's access lands (the IOTLB's translation when it hits), or null on a fault. */
  readonly phys: bigint | null;
  readonly fault: string | null;
  readonly memory: MemoryTrace | null;
  /** The swiotlb bounce slot phys lies in (null: not in the device's pool). */
  readonly swiotlb: {
    readonly poolStart: bigint;
    readonly slot: number;
    readonly slotAddr: bigint;
    /** The original's physical address this byte of the slot bounces (null: a free or pad slot). */
    readonly origAddr: bigint | null;
  } | null;
}

/** The descriptor that carries a byte's DMA address to the device. */
export interface DescriptorTrace {
  /** What the entries are: 'sg entry' (sg_dma_address / sg_dma_len), 'DMA list entry', 'dma address', 'IOVA window', ... */
  readonly kind: string;
  readonly index: number;
  /** The entry's DMA address and length. */
  readonly dmaAddr: bigint;
  readonly len: number;
}

/** One device mapping of a traced byte. */
export interface DeviceViewTrace {
  /** The mapping's name in the scenario. */
  readonly mapping: string;
  readonly device: string;
  readonly method: string;
  readonly dir: string;
  /**
   * The mapping was unmapped already (traced on request): its old DMA address is followed to where
   * a device access with it lands now, e.g. through a stale IOTLB entry of a lazy unmap.
   */
  readonly unmapped: boolean;
  readonly descriptor: DescriptorTrace;
  /** Where the device's access at descriptor DMA address lands, layer by layer. */
  readonly access: DeviceTrace;
  /**
   * The device reaches the byte the CPU sees: its access lands on the CPU's physical address, or on
   * a swiotlb slot bouncing exactly that address. For an unmapped mapping true means a stale access
   * still reaches the byte.
   */
  readonly agrees: boolean;
}

/** A device's access at an IOAS mapping's IOVA. */
export interface IoasDeviceTrace {
  readonly device: string;
  /**
   * The device's DMA goes through the hw_pagetable's domain (iommu_get_domain_for_dev is that
   * domain). False for a device listed as detached, and for an attached one whose DMA goes elsewhere.
   */
  readonly throughHwpt: boolean;
  /** Where the device's access at the IOVA lands, layer by layer (traceDevice). */
  readonly access: DeviceTrace;
  /** The access reaches the byte the CPU sees. */
  readonly agrees: boolean;
  /** A device no longer attached: the IOAS it is attached to now (a replace moved it there), by its scenario name. */
  readonly nowOn?: string;
}

/** One hw_pagetable of an IOAS: its paging domain's view of the IOVA and the devices attached to it. */
export interface IoasHwptTrace {
  /** The hw_pagetable's object ID (pt_id). */
  readonly id: number;
  /** Made by an attach to the IOAS (shared by later attaches); false: IOMMU_HWPT_ALLOC (ioas-attach hwpt: own). */
  readonly auto: boolean;
  /** The domain's page-table walk for the IOVA and its IOTLB, peeked. */
  readonly iommu: IommuTrace;
  /** Where the domain sends the IOVA (its IOTLB's translation when cached), null: a fault. */
  readonly phys: bigint | null;
  readonly fault: string | null;
  readonly memory: MemoryTrace | null;
  /** The devices attached to it, in attach order, each reaching the IOVA. */
  readonly devices: readonly IoasDeviceTrace[];
}

/** An IOAS mapping (ioas-map) of a traced byte: the area, and each hw_pagetable's view of the byte's IOVA. */
export interface IoasViewTrace {
  /** The ioas-map mapping's name in the scenario. */
  readonly mapping: string;
  /** The IOAS's name in the scenario, and its object ID (null: destroyed). */
  readonly ioas: string;
  readonly ioasId: number | null;
  /** The mapping was unmapped already (traced on request): where its old IOVA leads now. */
  readonly unmapped: boolean;
  /** The byte's IOVA in the IOAS. */
  readonly iova: bigint;
  /** The area of the IOAS holding the IOVA (null: none, e.g. after the unmap). */
  readonly area: {
    readonly iova: bigint;
    readonly len: number;
    /** 'user' (IOMMU_IOAS_MAP) or 'dmabuf'. */
    readonly kind: string;
    /** IOMMU_* prot the domains hold it with. */
    readonly prot: number;
    /** Its pages are pinned (while a domain holds it). */
    readonly pinned: boolean;
  } | null;
  /** The IOAS's hw_pagetables, oldest first (empty: no device attached, or the IOAS destroyed). */
  readonly hwpts: readonly IoasHwptTrace[];
  /** Devices an earlier step attached to the IOAS that are no longer attached: where their access at the IOVA lands now. */
  readonly detached: readonly IoasDeviceTrace[];
}

/** Every address of one byte (or of the first byte of a run). */
export interface ByteTrace {
  /** Offset of the byte in its buffer. */
  readonly offset: number;
  readonly cpu: CpuTrace;
  /** The byte's live device mappings, in mapping order. */
  readonly devices: readonly DeviceViewTrace[];
  /** The byte's IOAS mappings (ioas-map), live ones in mapping order, then (on request) unmapped ones. */
  readonly ioas: readonly IoasViewTrace[];
}

/** Contiguous bytes with identical translation: the trace of the first byte, len bytes long. */
export interface TraceRun extends ByteTrace {
  readonly len: number;
}

/** A buffer's trace: one byte (runs of length 1) or the whole buffer in runs. */
export interface BufferTrace {
  readonly buffer: string;
  readonly process: string;
  readonly va: bigint;
  readonly len: number;
  /** Step index after which the trace was taken (-1: before any step). */
  readonly afterStep: number;
  /** The traced byte's offset, or null for the whole buffer. */
  readonly offset: number | null;
  readonly runs: readonly TraceRun[];
}
