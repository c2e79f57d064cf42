// The scenario file's schema (zod 4): every object is strict (an unknown field is an error), every
// field carries its one-line description (`phyr help` prints them from here), and sizes accept
// "4KiB"-style strings. Cross references (names of devices, buffers, pins, mappings; step order) are
// checked after the schema, in check.ts.

import { z } from 'zod';
import { ERRNO_VALUES, FAULT_POINTS } from '../../base/index.ts';
import { parseBigSize, parseSize, SIZE_EXPECTED } from './sizes.ts';

/** A size in bytes: a number or "4KiB", "1GiB", "0x1000". */
export function size(what: string): z.ZodType<number> {
  return z.union([z.number(), z.string()]).transform((v, ctx) => {
    const n = parseSize(v);
    if (n === null) {
      ctx.addIssue({ code: 'custom', message: `not a size`, params: { expected: SIZE_EXPECTED } });
      return z.NEVER;
    }
    return n;
  }).describe(what) as unknown as z.ZodType<number>;
}

/** An address or mask as a bigint: a number or "0x1_0000_0000". */
export function bigSize(what: string): z.ZodType<bigint> {
  return z.union([z.number(), z.string()]).transform((v, ctx) => {
    const n = parseBigSize(v);
    if (n === null) {
      ctx.addIssue({ code: 'custom', message: `not an address`, params: { expected: 'an address: a number or a string such as "0x100000000"' } });
      return z.NEVER;
    }
    return n;
  }).describe(what) as unknown as z.ZodType<bigint>;
}

const int = (what: string, min = 0, max = Number.MAX_SAFE_INTEGER): z.ZodNumber => z.number().int().min(min).max(max).describe(what);
const name = (what: string): z.ZodString => z.string().regex(/^[A-Za-z0-9_.-]+$/, 'names are letters, digits, _ . -').describe(what);

// ---- machine ----

const barSchema = z.strictObject({
  bytes: size('BAR size in bytes: a power of two >= 4096'),
  p2p: z.boolean().optional().describe('P2PDMA memory (pci_p2pdma_add_resource): ZONE_DEVICE pages and a provider'),
  busOffset: bigSize('bus address - CPU physical address (default 0)').optional(),
});

const nvmeSchema = z.strictObject({
  sgls: z.boolean().describe('the controller supports SGLs (Identify SGLS bits 1:0 = 01b)'),
  mdts: int('MDTS: largest transfer is 2^mdts * 4 KiB (0 = no limit)', 0, 40),
  namespaces: z.array(z.strictObject({
    nsid: int('namespace ID', 1, 0xfffffffe),
    bytes: size('capacity in bytes (a multiple of lbaBytes)'),
    lbaBytes: int('logical block size: a power of two in [512, 65536]', 512, 65536),
  })).min(1).describe('the active namespaces'),
});

const pciNodeSchema = z.strictObject({
  name: name('node name; an endpoint is a device steps name (functions > 1: name.0, name.1, ...)'),
  type: z.enum(['host-bridge', 'root-port', 'switch', 'endpoint']).describe('node type'),
  parent: z.string().optional().describe('parent node: a host bridge for a root port, a root port or switch otherwise (or a host bridge: an endpoint on the root bus)'),
  slot: int('child of a host bridge only: its device number on the root bus (default: the lowest free from 1)', 1, 31).optional(),
  vendor: int('PCI vendor id (required for a host bridge: matched by the P2PDMA whitelist)', 0, 0xffff).optional(),
  device: int('PCI device id (required for a host bridge)', 0, 0xffff).optional(),
  acsRedirect: z.boolean().optional().describe('ACS redirect set (root port, switch downstream ports, endpoint functions)'),
  acsRedirectPorts: z.array(z.string()).optional().describe('switch only: children whose downstream port has ACS redirect'),
  externalFacing: z.boolean().optional().describe('root port only: external-facing (Thunderbolt): tunneled devices below are untrusted (not a switch directly below it nor the endpoints on that switch, unless the port is an Intel integrated Thunderbolt root port)'),
  functions: int('endpoint only: number of functions', 1, 8).optional(),
  bars: z.array(barSchema).max(6).optional().describe('endpoint only: BARs of function 0; BAR i is device memory "<name>.bar<i>"'),
  untrusted: z.boolean().optional().describe('endpoint only: dev->untrusted'),
  coherent: z.boolean().optional().describe('endpoint only: dev_is_dma_coherent() (false: arm64-style, needs cache maintenance)'),
  nvme: nvmeSchema.optional().describe('endpoint only: function 0 is an NVMe controller'),
  dmaOps: z.looseObject({
    kind: z.enum(['gart', 'tce', 'xen-swiotlb', 'xen-grant', 'dummy']).describe('dma_map_ops family'),
  }).optional().describe('endpoint only: dma_map_ops family on a machine without IOMMU (fields as the machine dmaOps)'),
});

/** Fields of a dmaOps config that the model takes as bigints. */
const DMA_OPS_BIGINTS = ['busBase'] as const;

const dmaOpsSchema = z.looseObject({
  kind: z.enum(['gart', 'tce', 'xen-swiotlb', 'xen-grant', 'dummy']).describe('dma_map_ops family'),
}).describe('dma_map_ops for every PCI device of a machine without an IOMMU: { kind: gart, busBase, pages } | { kind: tce, offset, size, pageShift, ddw? } | { kind: xen-swiotlb, p2m } | { kind: xen-grant, backendDomid, frames } | { kind: dummy }');

const iommuSchema = z.strictObject({
  format: z.enum(['x86-64', 'amd-v1', 'arm-lpae']).describe('page-table format of paging domains'),
  levels: z.union([z.literal(4), z.literal(5)]).optional().describe('x86-64 / amd-v1: 4 (default) or 5 levels'),
  mode: z.enum(['strict', 'lazy', 'passthrough']).describe('default domain: strict (iommu.strict=1), lazy (flush queue), passthrough'),
  iotlbCapacity: int('IOTLB entries per domain (default 4096)', 1, 1 << 24).optional(),
  rcaches: z.boolean().optional().describe('IOVA range caches (default true)'),
  fqMode: z.enum(['percpu', 'single']).optional().describe("flush queue flavour: 'percpu' (256 entries, 10 ms) or 'single' (32768, 1000 ms)"),
  reserveMsiWindow: z.boolean().optional().describe('report the MSI window as a reserved region (default true; x86 reserves it in every DMA cookie, ARM SW_MSI only in iommufd)'),
  htRangeIgnore: z.boolean().optional().describe('amd-v1: the IOMMU has FEATURE_HT_RANGE_IGNORE (default false: the HyperTransport hole 0xfd00000000..0xffffffffff is reserved)'),
  arm32Mapping: z.looseObject({}).optional().describe('ARM32 arm_iommu_create_mapping(base, size) bitmaps instead of the IOVA rbtree'),
});

export const machineShape = {
  ramBytes: size('bytes of System RAM (>= 4 MiB)'),
  pageSize: z.union([z.literal(4096), z.literal(16384), z.literal(65536)]).optional().describe('base page size (default 4096)'),
  physAddrBits: int('physical address width (default 46)', 32, 52).optional(),
  hugetlb: z.strictObject({
    '2M': int('2 MiB huge pages reserved at boot').optional(),
    '32M': int('32 MiB huge pages reserved at boot (16 KiB pages only)').optional(),
    '512M': int('512 MiB huge pages reserved at boot (64 KiB pages only)').optional(),
    '1G': int('1 GiB huge pages reserved at boot (4 and 16 KiB pages)').optional(),
    '16G': int('16 GiB huge pages reserved at boot (64 KiB pages only)').optional(),
  }).optional().describe('hugetlb pools reserved at boot, of the sizes the page size offers: 2M and 1G at 4 KiB, 2M, 32M and 1G at 16 KiB, 2M, 512M and 16G at 64 KiB'),
  deviceMemory: z.array(z.strictObject({
    name: name('region name (a buffer backing { device: name })'),
    bytes: size('region size'),
    pgmap: z.boolean().optional().describe('ZONE_DEVICE struct pages'),
  })).optional().describe('device memory regions outside the PCI tree'),
  pmem: z.array(z.strictObject({
    name: name('region name'),
    bytes: size('region size'),
    structPage: z.boolean().describe('with struct pages'),
    mode: z.enum(['fsdax', 'devdax']).optional().describe('how the namespace is mapped (default fsdax)'),
  })).optional().describe('persistent memory (DAX) regions'),
  aged: z.boolean().optional().describe('fragment free memory as a long-running system would (default false)'),
  seed: int('seed of the machine PRNG and of the byte patterns, in [0, 2^32 - 1] (default 1; phyr run --seed overrides it)', 0, 0xffffffff).optional(),
  cpu: z.strictObject({
    vendor: z.enum(['intel', 'amd', 'other']).describe('CPU vendor, for P2PDMA host-bridge decisions'),
    family: int('x86 family (cpuinfo_x86.x86)', 0, 0xff).optional(),
  }).optional().describe('CPU (default intel)'),
  pci: z.array(pciNodeSchema).optional().describe('the PCI tree (omitted: no devices)'),
  iommu: iommuSchema.optional().describe('an IOMMU (omitted: dma-direct)'),
  swiotlb: z.union([z.literal(false), z.strictObject({
    bytes: size('pool size (default 64 MiB)').optional(),
    force: z.boolean().optional().describe('swiotlb=force: bounce every dma-direct mapping'),
  })]).optional().describe('the swiotlb bounce pool, or false for none (omitted: a 64 MiB pool where an x86-64 boot sets one up: RAM above 4 GiB, a CC guest, Xen swiotlb ops; none with machine-wide GART)'),
  dmaDebug: z.strictObject({
    enabled: z.boolean().optional().describe('CONFIG_DMA_API_DEBUG (default true)'),
    allErrors: z.boolean().optional().describe('dma-api/all_errors (default false)'),
    numErrors: int('dma-api/num_errors (default 1)', 0, 0xffffffff).optional(),
    driverFilter: z.string().optional().describe("dma_debug_driver=: a driver name (e.g. 'nvme'); devices without a driver never pass"),
  }).optional().describe("dma-debug's settings"),
  arch: z.strictObject({
    dmaCacheAlignment: int('dma_get_cache_alignment(): a power of two (x86-64: 1, arm64: 64)', 1, 4096).optional(),
    bounceUnalignedKmalloc: z.boolean().optional().describe('CONFIG_DMA_BOUNCE_UNALIGNED_KMALLOC'),
  }).optional().describe('architecture facts (default x86-64)'),
  dmaOps: dmaOpsSchema.optional(),
  cc: z.strictObject({
    kind: z.enum(['tdx', 'sev-snp']).describe('confidential-computing guest kind'),
    encryptedSwiotlb: z.boolean().optional().describe('leave the swiotlb pool encrypted (default false)'),
  }).optional().describe('a confidential-computing guest: private RAM, swiotlb forced through a shared pool'),
  faults: z.array(z.union([
    z.strictObject({
      point: z.enum(FAULT_POINTS).describe('the allocation point'),
      nth: int('fail exactly this call of the point (1 = the first after boot)', 1),
    }),
    z.strictObject({
      point: z.enum(FAULT_POINTS).describe('the allocation point'),
      probability: z.number().min(0).max(1).describe('fail each call with this probability'),
      seed: int('seed of the PRNG that draws the failures'),
    }),
  ])).optional().describe(`fault injection: { point, nth } or { point, probability, seed }; points: ${FAULT_POINTS.join(', ')}`),
};

const machineSchema = z.strictObject(machineShape).describe('the createMachine config');
const partialMachineSchema = z.strictObject(Object.fromEntries(Object.entries(machineShape).map(([k, v]) => [k, (v as z.ZodType).nullable().optional()])) as {
  [K in keyof typeof machineShape]: z.ZodOptional<z.ZodNullable<(typeof machineShape)[K]>>
}).describe('machine fields replacing the base machine\'s (top-level fields; null removes one, e.g. iommu: null)');

const deviceSetupSchema = z.strictObject({
  dmaMask: int('dma_set_mask_and_coherent(DMA_BIT_MASK(n)), n in [1, 64] (default 64)', 1, 64).optional(),
  minAlignMask: size('dma_set_min_align_mask (nvme: 0xfff)').optional(),
  maxSegSize: size('dma_set_max_seg_size (default: 0xffffffff as nvme sets it)').optional(),
  segBoundary: bigSize('dma_set_seg_boundary mask').optional(),
}).describe('what the device driver sets at probe');

const devicesSchema = z.record(z.string(), deviceSetupSchema).describe('driver probe settings per device name');

// ---- buffers ----

const backingSchema = z.union([
  z.enum(['anon', 'thp', 'hugetlb-2M', 'hugetlb-32M', 'hugetlb-512M', 'hugetlb-1G', 'hugetlb-16G']),
  z.strictObject({
    device: z.string().describe('device memory region: a BAR "<endpoint>.bar<i>", a deviceMemory or pmem name'),
    offset: size('offset into the region').optional(),
  }),
]).describe("anon | thp | hugetlb-<size> (2M, 32M, 512M, 1G, 16G: those the page size offers) | { device: 'gpu0.bar0', offset? } (a PFN map of a BAR)");

const bufferSchema = z.strictObject({
  name: name('buffer name'),
  process: name('process that maps it (default: the first process)').optional(),
  len: size('bytes'),
  backing: backingSchema,
});

// ---- steps ----

const ERRNOS = Object.keys(ERRNO_VALUES) as [string, ...string[]];

const expectSchema = z.strictObject({
  errno: z.enum(ERRNOS).optional().describe('the step fails with this errno (an expected failure is a success)'),
  ok: z.boolean().optional().describe('the step succeeds (default unless errno is given)'),
  event: z.strictObject({
    kind: z.string().describe('event kind: WARN, FAULT, DMA-DEBUG, MODEL-CHECK, INFO, ...'),
    message: z.string().optional().describe('text the event message contains'),
  }).optional().describe('the step logs this event'),
  mismatch: z.union([z.boolean(), z.number().int().min(0)]).optional().describe('a byte check finds this many differing bytes (true: some, false: none)'),
  counters: z.record(z.string(), z.number().int()).optional().describe('exact counter deltas of the step (machine.stats names)'),
  segments: int('DMA segments a map step produces').optional(),
}).describe('what the step must do; a step without expect must succeed');

const common = {
  label: z.string().optional().describe('text shown in the output'),
  expect: expectSchema.optional(),
  expectIn: z.record(z.string(), expectSchema).optional().describe('per configuration (--config name): an expect replacing `expect` in that configuration'),
};
const deviceOfAccess = z.string().optional().describe(
  "the device doing the DMA: an IOAS mapping's device (default: the IOAS's one attached device; needed when it has several or none, e.g. a device after its ioas-detach); a map step's mapping: its own device only");
const dirSchema = z.enum(['to-device', 'from-device', 'bidirectional']).describe('DMA direction (default bidirectional)');
const range = {
  offset: size('byte offset into the buffer (default 0)').optional(),
  len: size('bytes (default: to the end)').optional(),
};

/** Every step, by op. Help text: the `op` literal's description. */
export const STEP_SCHEMAS = {
  mmap: z.strictObject({
    op: z.literal('mmap').describe('mmap a buffer into its process'),
    buffer: z.string().describe('buffer name'),
    populate: z.boolean().optional().describe('MAP_POPULATE: fault every page in now'),
    ...common,
  }),
  munmap: z.strictObject({
    op: z.literal('munmap').describe('munmap a buffer'),
    buffer: z.string().describe('buffer name'),
    ...common,
  }),
  populate: z.strictObject({
    op: z.literal('populate').describe('CPU fills the buffer (or a range) with pattern bytes from the run seed'),
    buffer: z.string().describe('buffer name'),
    ...range,
    pattern: int('pattern number (default: the step index); the bytes are patternBytes(len, seed + pattern)').optional(),
    ...common,
  }),
  'cpu-write': z.strictObject({
    op: z.literal('cpu-write').describe('CPU writes pattern bytes into a range of the buffer'),
    buffer: z.string().describe('buffer name'),
    ...range,
    pattern: int('pattern number (default: the step index)').optional(),
    ...common,
  }),
  'cpu-read': z.strictObject({
    op: z.literal('cpu-read').describe('CPU reads a range and checks it holds the bytes last written there (by CPU, device or block read)'),
    buffer: z.string().describe('buffer name'),
    ...range,
    ...common,
  }),
  pin: z.strictObject({
    op: z.literal('pin').describe('pin a range of a buffer: pin_user_pages (page array), pin_user_pages_fast, or pin_user_phyrs (phyr list)'),
    name: name('pin name'),
    buffer: z.string().describe('buffer name'),
    method: z.enum(['pages', 'pages-fast', 'phyrs']).describe('pages | pages-fast | phyrs'),
    ...range,
    write: z.boolean().optional().describe('FOLL_WRITE (default true)'),
    longterm: z.boolean().optional().describe('FOLL_LONGTERM (default false)'),
    p2p: z.boolean().optional().describe('FOLL_PCI_P2PDMA (default: true for a device-memory buffer)'),
    ...common,
  }),
  unpin: z.strictObject({
    op: z.literal('unpin').describe('unpin a pin'),
    pin: z.string().describe('pin name'),
    ...common,
  }),
  map: z.strictObject({
    op: z.literal('map').describe('map a pin (or a buffer, pinned as drivers/umem does) for a device'),
    name: name('mapping name'),
    device: z.string().describe('device name (a PCI endpoint function)'),
    pin: z.string().optional().describe('pin to map (page methods need a pages pin, phyr methods a phyrs pin)'),
    buffer: z.string().optional().describe('buffer to pin and map in one step (drivers/umem: FOLL_WRITE, unpinned at unmap)'),
    ...range,
    method: z.enum(['page', 'sg', 'phys', 'phyrs', 'two-step']).describe(
      'page: dma_map_page per page | sg: sg_alloc_table_from_pages + dma_map_sgtable | phys: dma_map_phys per phyr | phyrs: dmaMapPhyrs | two-step: dma_iova_try_alloc + dma_iova_link + dma_iova_sync'),
    dir: dirSchema.optional(),
    attrs: z.array(z.enum(['WEAK_ORDERING', 'WRITE_COMBINE', 'SKIP_CPU_SYNC', 'NO_WARN', 'PRIVILEGED', 'MMIO', 'DEBUGGING_IGNORE_CACHELINES', 'REQUIRE_COHERENT', 'CC_SHARED']))
      .optional().describe('DMA_ATTR_* names without the prefix (a map of a pin only: drivers/umem maps a buffer with none)'),
    ...common,
  }),
  sync: z.strictObject({
    op: z.literal('sync').describe('dma_sync_*_for_cpu / _for_device of a mapping (page, phys, sg methods)'),
    mapping: z.string().describe('mapping name'),
    for: z.enum(['cpu', 'device']).describe('cpu: the CPU may read what the device wrote; device: the device may read what the CPU wrote'),
    ...common,
  }),
  'device-read': z.strictObject({
    op: z.literal('device-read').describe("the device's DMA engine reads through the mapping's DMA addresses (an IOAS mapping's IOVAs) and checks the bytes (a buffer's, or a dma-buf's for an IOAS mapping of one)"),
    mapping: z.string().describe('mapping name: of a map step, or of an ioas-map or ioas-copy step'),
    device: deviceOfAccess,
    offset: size('byte offset into the mapping (default 0)').optional(),
    len: size('bytes (default: the mapping, sampled in 4 KiB windows when above 1 MiB)').optional(),
    afterUnmap: z.boolean().optional().describe('allowed after the unmap: the device uses a stale DMA address on purpose'),
    ...common,
  }),
  'device-write': z.strictObject({
    op: z.literal('device-write').describe("the device's DMA engine writes pattern bytes through the mapping (an IOAS mapping's IOVAs)"),
    mapping: z.string().describe('mapping name: of a map step, or of an ioas-map or ioas-copy step'),
    device: deviceOfAccess,
    offset: size('byte offset into the mapping (default 0)').optional(),
    len: size('bytes (default: the mapping, sampled in 4 KiB windows when above 1 MiB)').optional(),
    pattern: int('pattern number (default: the step index)').optional(),
    afterUnmap: z.boolean().optional().describe('allowed after the unmap: the device uses a stale DMA address on purpose'),
    ...common,
  }),
  unmap: z.strictObject({
    op: z.literal('unmap').describe('unmap a mapping (and unpin it when the map step pinned a buffer)'),
    mapping: z.string().describe('mapping name'),
    ...common,
  }),
  wait: z.strictObject({
    op: z.literal('wait').describe("advance every IOMMU domain's logical clock: the flush-queue timer (10 ms) fires when due"),
    ms: int('milliseconds', 0, 1e9),
    ...common,
  }),
  'block-write': z.strictObject({
    op: z.literal('block-write').describe('direct I/O write of a buffer range to an NVMe namespace: pin_user_pages, a bio_vec per folio run, blk-mq split, nvme PRP/SGL, controller DMA; ENOSPC at or past the end of the namespace, cut short when it crosses it'),
    device: z.string().describe('an NVMe endpoint (pci node with nvme)'),
    buffer: z.string().describe('buffer name'),
    ...range,
    lba: int('first logical block, in the namespace\'s lbaBytes blocks as an NVMe SLBA (default 0)').optional(),
    ...common,
  }),
  'block-read': z.strictObject({
    op: z.literal('block-read').describe('direct I/O read from an NVMe namespace into a buffer range; 0 bytes at or past the end of the namespace, cut short when it crosses it'),
    device: z.string().describe('an NVMe endpoint (pci node with nvme)'),
    buffer: z.string().describe('buffer name'),
    ...range,
    lba: int('first logical block, in the namespace\'s lbaBytes blocks as an NVMe SLBA (default 0)').optional(),
    ...common,
  }),
  'rdma-reg-mr': z.strictObject({
    op: z.literal('rdma-reg-mr').describe('register a buffer range as an RDMA memory region: ib_umem_get (pin_user_phyrs + dmaMapPhyrs), ib_reg_mr (MTT at the best HW page size)'),
    name: name('memory region name'),
    device: z.string().describe('the RDMA NIC (a PCI endpoint)'),
    buffer: z.string().describe('buffer name'),
    ...range,
    ...common,
  }),
  'rdma-write': z.strictObject({
    op: z.literal('rdma-write').describe('an RDMA WRITE inside one MR: the NIC reads [offset, +len) through its MTT and writes it at [to, +len); the CPU checks the destination'),
    mr: z.string().describe('memory region name'),
    offset: size('source offset in the MR (default 0)').optional(),
    to: size('destination offset in the MR'),
    len: size('bytes'),
    ...common,
  }),
  'rdma-dereg-mr': z.strictObject({
    op: z.literal('rdma-dereg-mr').describe('ib_dereg_mr + ib_umem_release: the MTT entries go, the umem is unmapped and unpinned'),
    mr: z.string().describe('memory region name'),
    ...common,
  }),
  'dmabuf-export': z.strictObject({
    op: z.literal('dmabuf-export').describe('export a dma-buf: system-heap (pages of RAM) or vfio-bar (a slice of a PCI BAR, VFIO_DEVICE_FEATURE_DMA_BUF)'),
    name: name('dma-buf name'),
    exporter: z.enum(['system-heap', 'vfio-bar']).describe('system-heap | vfio-bar'),
    device: z.string().optional().describe('vfio-bar: the endpoint whose BAR 0 is exported'),
    offset: size('vfio-bar: offset into BAR 0 (default 0)').optional(),
    len: size('bytes'),
    ...common,
  }),
  'dmabuf-import': z.strictObject({
    op: z.literal('dmabuf-import').describe("import a dma-buf for a device: gpu (dma_buf_attach + map through the DMA API into the GPU's page table) or iommufd (an IOAS with its own domain, the buffer at IOVA 0x10000000)"),
    name: name('import name'),
    dmabuf: z.string().describe('dma-buf name'),
    device: z.string().describe('the importing device'),
    importer: z.enum(['gpu', 'iommufd']).describe('gpu | iommufd'),
    ...common,
  }),
  'dmabuf-write': z.strictObject({
    op: z.literal('dmabuf-write').describe('the importing device writes pattern bytes into the dma-buf through its import'),
    import: z.string().describe('import name'),
    len: size('bytes from the start (default: the whole buffer)').optional(),
    pattern: int('pattern number (default: the step index)').optional(),
    ...common,
  }),
  'dmabuf-read': z.strictObject({
    op: z.literal('dmabuf-read').describe('the importing device reads the dma-buf through its import and checks the bytes'),
    import: z.string().describe('import name'),
    len: size('bytes from the start (default: the whole buffer)').optional(),
    ...common,
  }),
  'dmabuf-revoke': z.strictObject({
    op: z.literal('dmabuf-revoke').describe("the exporter revokes the dma-buf (vfio_pci_dma_buf_move() -> dma_buf_invalidate_mappings()): importers' mappings are torn down"),
    dmabuf: z.string().describe('dma-buf name: a vfio-bar export (the system heap has no revoke)'),
    ...common,
  }),
  'ioas-alloc': z.strictObject({
    op: z.literal('ioas-alloc').describe("IOMMU_IOAS_ALLOC: an empty I/O address space (a VM's guest memory as its passthrough devices see it); devices join it with ioas-attach, memory with ioas-map"),
    name: name('IOAS name'),
    ...common,
  }),
  'ioas-attach': z.strictObject({
    op: z.literal('ioas-attach').describe("VFIO_DEVICE_BIND_IOMMUFD + VFIO_DEVICE_ATTACH_IOMMUFD_PT: the device leaves its DMA-API domain and joins the IOAS: its automatic hw_pagetable (one IOMMU domain shared by every device on it: nothing is mapped again) or, with hwpt: own, a hw_pagetable of its own (IOMMU_HWPT_ALLOC: a second domain holding every area). A device attached already is replaced (iommufd_device_replace): it moves straight to the new hw_pagetable, and the one it leaves goes with its last device"),
    ioas: z.string().describe('IOAS name'),
    device: z.string().describe('device name (a PCI endpoint function behind the IOMMU)'),
    hwpt: z.enum(['auto', 'own']).optional().describe("auto (default): the IOAS's automatic hw_pagetable, made by the first device; own: a new one for this device alone, destroyed at its ioas-detach"),
    ...common,
  }),
  'ioas-detach': z.strictObject({
    op: z.literal('ioas-detach').describe("VFIO_DEVICE_DETACH_IOMMUFD_PT and unbind: the device leaves its hw_pagetable (the last device of one destroys it: its areas unmapped from that domain) and goes back to its DMA-API domain (a device an iommufd dma-buf import bound stays bound to it, in its blocking domain); the IOAS's areas stay for the others"),
    device: z.string().describe('an attached device'),
    ...common,
  }),
  'ioas-map': z.strictObject({
    op: z.literal('ioas-map').describe("IOMMU_IOAS_MAP of a buffer range (user memory): pinned FOLL_LONGTERM once and mapped into every domain of the IOAS (at attach when it has none yet); with dmabuf, IOMMU_IOAS_MAP_FILE of a dma-buf slice (attached, pinned, mapped as MMIO; unmapped on revoke); a mapping device-read / device-write name"),
    name: name('mapping name (device-read, device-write and ioas-unmap name it)'),
    ioas: z.string().describe('IOAS name'),
    buffer: z.string().optional().describe('buffer name (or give dmabuf)'),
    dmabuf: z.string().optional().describe('dma-buf name (dmabuf-export; instead of buffer): IOMMU_IOAS_MAP_FILE of its slice [offset, +len); iommufd takes VFIO dma-bufs only (EOPNOTSUPP for a system-heap one), not a revoked one (ENODEV, vfio_pci_dma_buf_iommufd_map), and in the model the attachment needs a device attached to the IOAS (ENODEV before the first ioas-attach; the kernel attaches for iommufd_global_device())'),
    offset: size('byte offset into the buffer or dma-buf (default 0)').optional(),
    len: size('bytes (default: to the end)').optional(),
    iova: bigSize('IOVA to map at (IOMMU_IOAS_MAP_FIXED_IOVA; default: the IOAS picks one, iopt_alloc_iova)').optional(),
    readable: z.boolean().optional().describe('IOMMU_IOAS_MAP_READABLE: devices may read it (default true)'),
    writeable: z.boolean().optional().describe('IOMMU_IOAS_MAP_WRITEABLE: devices may write it (default true)'),
    ...common,
  }),
  'ioas-unmap': z.strictObject({
    op: z.literal('ioas-unmap').describe("IOMMU_IOAS_UNMAP: the areas inside the range leave every domain of the IOAS and are unpinned; devices' next accesses there fault"),
    ioas: z.string().describe('IOAS name'),
    mapping: z.string().optional().describe('an IOAS mapping (ioas-map or ioas-copy) of the IOAS: its IOVA range (or give iova and len)'),
    iova: bigSize('first IOVA of the range (with len; instead of mapping)').optional(),
    len: size('bytes of the range (with iova)').optional(),
    ...common,
  }),
  'ioas-copy': z.strictObject({
    op: z.literal('ioas-copy').describe("IOMMU_IOAS_COPY: the memory a range of one IOAS maps, mapped again in another (or the same) IOAS; the new areas share the source's pages (nothing pinned again while a domain holds them), and either side can be unmapped without the other; a mapping device-read / device-write name"),
    name: name('the new mapping (device-read, device-write and ioas-unmap name it)'),
    srcIoas: z.string().describe('the IOAS copied from'),
    mapping: z.string().optional().describe('an IOAS mapping of srcIoas (ioas-map or ioas-copy): the range it maps, or the part offset and len pick (or give srcIova and len)'),
    offset: size('with mapping: byte offset into it (default 0)').optional(),
    len: size('bytes (with mapping: default to its end; with srcIova: required)').optional(),
    srcIova: bigSize('first IOVA of the range in srcIoas (with len; instead of mapping): mapped whole, by areas that abut one another').optional(),
    dstIoas: z.string().describe('the IOAS copied into (srcIoas itself is allowed)'),
    dstIova: bigSize('IOVA in dstIoas (IOMMU_IOAS_MAP_FIXED_IOVA; default: dstIoas picks one, iopt_alloc_iova)').optional(),
    readable: z.boolean().optional().describe('IOMMU_IOAS_MAP_READABLE (default true)'),
    writeable: z.boolean().optional().describe('IOMMU_IOAS_MAP_WRITEABLE (default true; EPERM when the source was mapped without it)'),
    ...common,
  }),
  'ioas-allow-iovas': z.strictObject({
    op: z.literal('ioas-allow-iovas').describe('IOMMU_IOAS_ALLOW_IOVAS: replaces the IOVA ranges of the IOAS that IOVAs it picks come from (an empty list lifts the restriction); later reservations meeting one are refused (an attach whose reserved regions or aperture meet one fails with EADDRINUSE); maps at a fixed IOVA are not held to them'),
    ioas: z.string().describe('IOAS name'),
    ranges: z.array(z.strictObject({
      start: bigSize('first IOVA'),
      last: bigSize('last IOVA, inclusive (struct iommu_iova_range): start < last, else EINVAL'),
    })).describe('the allowed ranges, in any order; ranges that overlap are EINVAL, one meeting a reserved range EADDRINUSE (the old list stays)'),
    ...common,
  }),
  'ioas-iova-ranges': z.strictObject({
    op: z.literal('ioas-iova-ranges').describe("IOMMU_IOAS_IOVA_RANGES: the IOVA ranges a map may use now (what the domains' apertures and the attached devices' reserved regions leave, lowest first) and the IOVA alignment; shown in the step's line and data (ranges, numIovas, iovaAlignment, and the IOAS)"),
    ioas: z.string().describe('IOAS name'),
    numIovas: int("ranges the caller's array holds (cmd->num_iovas; default: every one); fewer than there are is EMSGSIZE, the total and the alignment still reported", 0, 0xffffffff).optional(),
    ...common,
  }),
  'ioas-destroy': z.strictObject({
    op: z.literal('ioas-destroy').describe('IOMMU_DESTROY of the IOAS: every area released; EBUSY while a device is attached (its hw_pagetable holds the IOAS): ioas-detach them first'),
    ioas: z.string().describe('IOAS name'),
    ...common,
  }),
  'premap-register': z.strictObject({
    op: z.literal('premap-register').describe('register a buffer for pre-mapped I/O to an NVMe device: a new system-heap dma-buf of len bytes (the RFC "dmabuf read/write via io_uring": mapped on its first I/O, invalidated by move_notify / revoke), or a user buffer pinned and mapped once (IORING_REGISTER_MAP_BUFFERS)'),
    name: name('registered buffer (token) name'),
    device: z.string().describe('an NVMe endpoint (pci node with nvme)'),
    buffer: z.string().optional().describe('user buffer to register kept mapped (4 KiB aligned; the whole buffer)'),
    len: size('bytes of a new system-heap dma-buf (a multiple of 4 KiB, at most 1 GiB)').optional(),
    ...common,
  }),
  'premap-write': z.strictObject({
    op: z.literal('premap-write').describe('IORING_OP_WRITE_FIXED from a registered buffer: PRPs from the pre-mapped addresses, no per-I/O mapping (a dma-buf range is first filled with pattern bytes by the CPU); ENOSPC at or past the end of the namespace, cut short when it crosses it'),
    token: z.string().describe('registered buffer name'),
    ...range,
    lba: int('first logical block, in the namespace\'s lbaBytes blocks as an NVMe SLBA (default 0)').optional(),
    nowait: z.boolean().optional().describe('RWF_NOWAIT: an EAGAIN (no live map after an invalidation) fails the I/O instead of going to io-wq, which re-maps'),
    pattern: int('pattern number of a dma-buf fill (default: the step index)').optional(),
    ...common,
  }),
  'premap-read': z.strictObject({
    op: z.literal('premap-read').describe('IORING_OP_READ_FIXED into a registered buffer; the bytes are checked; 0 bytes at or past the end of the namespace, cut short when it crosses it'),
    token: z.string().describe('registered buffer name'),
    ...range,
    lba: int('first logical block, in the namespace\'s lbaBytes blocks as an NVMe SLBA (default 0)').optional(),
    nowait: z.boolean().optional().describe('RWF_NOWAIT: an EAGAIN fails the I/O instead of going to io-wq'),
    ...common,
  }),
  'premap-invalidate': z.strictObject({
    op: z.literal('premap-invalidate').describe("the dma-buf's exporter: move-notify (dma_buf_invalidate_mappings under the reservation lock), revoke (and wait for fences), or unrevoke"),
    token: z.string().describe('registered dma-buf name'),
    how: z.enum(['move-notify', 'revoke', 'unrevoke']).describe('move-notify | revoke | unrevoke'),
    ...common,
  }),
  'premap-unregister': z.strictObject({
    op: z.literal('premap-unregister').describe('unregister: wait for in-flight I/O, unmap, detach (a user buffer: unmap and unpin)'),
    token: z.string().describe('registered buffer name'),
    ...common,
  }),
} as const;

export type StepOp = keyof typeof STEP_SCHEMAS;
export const STEP_OPS = Object.keys(STEP_SCHEMAS) as StepOp[];

const S = STEP_SCHEMAS;
const stepSchema = z.discriminatedUnion('op', [
  S.mmap, S.munmap, S.populate, S['cpu-write'], S['cpu-read'], S.pin, S.unpin, S.map, S.sync, S['device-read'], S['device-write'],
  S.unmap, S.wait, S['block-write'], S['block-read'], S['rdma-reg-mr'], S['rdma-write'], S['rdma-dereg-mr'], S['dmabuf-export'],
  S['dmabuf-import'], S['dmabuf-write'], S['dmabuf-read'], S['dmabuf-revoke'], S['premap-register'], S['premap-write'], S['premap-read'],
  S['premap-invalidate'], S['premap-unregister'], S['ioas-alloc'], S['ioas-attach'], S['ioas-detach'], S['ioas-map'], S['ioas-unmap'], S['ioas-destroy'],
  S['ioas-copy'], S['ioas-allow-iovas'], S['ioas-iova-ranges'],
]);

export const scenarioSchema = z.strictObject({
  name: z.string().min(1).describe('scenario name'),
  description: z.string().optional().describe('what the scenario shows'),
  machine: machineSchema,
  configs: z.record(z.string(), z.strictObject({
    description: z.string().optional().describe('what the configuration changes'),
    machine: partialMachineSchema.optional(),
    devices: devicesSchema.optional(),
  })).optional().describe('named variants: machine fields and device settings replacing the base ones (phyr run --config, phyr sweep --configs)'),
  devices: devicesSchema.optional(),
  processes: z.array(name('process name')).optional().describe('process names (default: those the buffers name, else one "app")'),
  buffers: z.array(bufferSchema).optional().describe('user buffers, created by mmap steps'),
  steps: z.array(stepSchema).describe('what the run does, in order'),
});

export type ScenarioDoc = z.output<typeof scenarioSchema>;
export type ScenarioStepDoc = z.output<typeof stepSchema>;

export { DMA_OPS_BIGINTS, dmaOpsSchema, machineSchema, partialMachineSchema, pciNodeSchema, backingSchema, bufferSchema, expectSchema, deviceSetupSchema };
