// What it is: the dma-buf export/import matrix. Every exporter (system heap, a GPU buffer object in
// VRAM that can migrate, a VFIO BAR slice, an RDMA NIC's device memory) meets every importer (a GPU
// through the DMA API, iommufd, iommufd as a PAL importer of the "Add DMA-buf mapping types" RFC, a
// GPU through the get_pfn RFC, a GPU over a private fabric, an RDMA NIC's dma-buf MR) on every topology (importer
// below the exporter's switch, behind another root port of a whitelisted host bridge, behind
// another host bridge; IOMMU strict or none). Each cell runs on a fresh machine: import, the
// device writes and the CPU reads back, the CPU writes and the device reads, then the exporter
// revokes (VFIO, heap, RDMA device memory freed) or migrates (GPU buffer) and the importer's old
// addresses must fault and nothing may stay mapped; a GPU importer then maps again where it can, and
// the NIC's next access faults and remaps where it can.

import { MiB, KiB } from '../base/index.ts';
import {
  dmaBufAttachments, dmaBufRevoke, gpuBoCreate, gpuBoExport, gpuBoMigrate, gpuFabricConnect, gpuImportDmabuf, gpuImportDmabufFabric,
  gpuImportDmabufGetPfn, gpuImportRelease, gpuImportRevalidate, gpuProbe, gpuRead, gpuWrite, iommufdIoasAlloc, iommufdIoasClose,
  iommufdIoasMapDmabuf, iommufdIoasMapDmabufPal, systemHeapAlloc, vfioPciDmabufExport, type DmaBuf, type GpuBo, type GpuImport, type Ioas,
  IB_ACCESS_LOCAL_WRITE, IB_ACCESS_REMOTE_READ, IB_ACCESS_REMOTE_WRITE, IB_WC_SUCCESS, ibAllocDm, ibDeallocDm, ibDeregDmabufMr, ibDeregMr,
  ibDmabufAlloc, ibMrMttEntries, ibPostRdmaRead, ibPostRdmaWrite, ibRegDmabufMr, ibRegMr, ibUmemGet, ibUmemRelease, rdmaProbe, type IbDm,
  type IbDmabufMr,
} from '../drivers/index.ts';
import { iommuIovaToPhys } from '../iommu/index.ts';
import { createMachine, type Machine } from '../machine/index.ts';
import { PCI_P2PDMA_MAP_NAMES, pcimP2pdmaProvider, pciP2pdmaMapType, type Device, type PciNodeConfig } from '../pci/index.ts';
import { patternBytes as pattern } from '../base/index.ts';

export const DMABUF_EXPORTERS = ['system-heap', 'gpu-vram', 'vfio-bar', 'rdma-dm'] as const;
export const DMABUF_IMPORTERS = ['gpu', 'iommufd', 'iommufd-pal', 'gpu-get-pfn', 'gpu-fabric', 'rdma'] as const;
export const DMABUF_TOPOLOGIES = ['switch', 'host-bridge', 'cross-host-bridge'] as const;
export const DMABUF_IOMMU_MODES = ['strict', 'none'] as const;
export type DmabufExporter = (typeof DMABUF_EXPORTERS)[number];
export type DmabufImporter = (typeof DMABUF_IMPORTERS)[number];
export type DmabufTopology = (typeof DMABUF_TOPOLOGIES)[number];
export type DmabufIommuMode = (typeof DMABUF_IOMMU_MODES)[number];

/** The importer device of each topology (the exporter GPU is gpu0 below sw0). */
const IMPORTER_DEV: Record<DmabufTopology, string> = { 'switch': 'gpu1', 'host-bridge': 'gpu2', 'cross-host-bridge': 'gpu3' };

/**
 * hb0 (whitelisted Intel) -> rp0 -> sw0 -> { gpu0 (exporter: 64 MiB VRAM BAR, bus offset), gpu1 }
 *                         -> rp1 -> gpu2
 * hb1 (not whitelisted)   -> rp2 -> gpu3
 */
export const DMABUF_PCI_NODES: readonly PciNodeConfig[] = [
  { name: 'hb0', type: 'host-bridge', vendor: 0x8086, device: 0x2030 },
  { name: 'rp0', type: 'root-port', parent: 'hb0' },
  { name: 'sw0', type: 'switch', parent: 'rp0', acsRedirect: false },
  { name: 'gpu0', type: 'endpoint', parent: 'sw0', bars: [{ bytes: 64 * MiB, p2p: true, busOffset: 0x1000_0000_0000n }] },
  { name: 'gpu1', type: 'endpoint', parent: 'sw0', bars: [{ bytes: 16 * MiB, p2p: true }] },
  { name: 'rp1', type: 'root-port', parent: 'hb0' },
  { name: 'gpu2', type: 'endpoint', parent: 'rp1', bars: [{ bytes: 16 * MiB, p2p: true }] },
  { name: 'hb1', type: 'host-bridge', vendor: 0x1234, device: 0x0001 },
  { name: 'rp2', type: 'root-port', parent: 'hb1' },
  { name: 'gpu3', type: 'endpoint', parent: 'rp2', bars: [{ bytes: 16 * MiB, p2p: true }] },
] as PciNodeConfig[];

/** The machine of one cell: 1 GiB of RAM, the tree above, 64-bit DMA masks. */
export function dmabufMachine(iommu: DmabufIommuMode, seed = 1): Machine {
  const m = createMachine({
    ramBytes: 1024 * MiB, seed, cpu: { vendor: 'intel' }, swiotlb: { bytes: 4 * MiB }, pci: DMABUF_PCI_NODES,
    ...(iommu === 'none' ? {} : { iommu: { format: 'x86-64', levels: 4, mode: iommu } }),
  });
  for (const d of m.devices()) {
    d.dmaMask = (1n << 64n) - 1n;
    d.coherentDmaMask = (1n << 64n) - 1n;
  }
  return m;
}

/** One cell of the matrix. */
export interface DmabufCell {
  readonly exporter: DmabufExporter;
  readonly importer: DmabufImporter;
  readonly topology: DmabufTopology;
  readonly iommu: DmabufIommuMode;
  /** ok, or the errno of the import. */
  readonly result: string;
  /** How the importer reaches the bytes ('-' when the import failed). */
  readonly path: string;
  /** pci_p2pdma_map_type between the exporter's memory and the importer ('-' for RAM). */
  readonly mapType: string;
  /** Entries the importer holds (DMA-list entries for the DMA API; page-table leaves of the GPU; IOAS areas). */
  readonly entries: number;
  /** Bytes of metadata: the DMA list (16 B per entry) plus GPU page-table bytes written, or get_pfn's 16 B per query. */
  readonly metadataBytes: number;
  /** IOMMU map and unmap calls and IOTLB range invalidations during the import. */
  readonly iommuMaps: number;
  readonly iommuUnmaps: number;
  readonly iotlbInvalidations: number;
  /** Bytes the device moved and the CPU (or device) checked: both directions. */
  readonly bytesVerified: number;
  /** false when a device reached the wrong bytes without a fault (what a path cannot check). */
  readonly bytesCorrect: boolean;
  /** What the revoke or move did to the importer. */
  readonly revoke: string;
  /** After revoke or move: the old addresses faulted and nothing stayed mapped. */
  readonly revokeClean: boolean;
}

export interface DmabufReport {
  readonly title: string;
  readonly bufferBytes: number;
  readonly cells: DmabufCell[];
  readonly legend: Record<string, string>;
}

export const DMABUF_LEGEND: Record<string, string> = {
  'path': 'system: RAM through the importer\'s DMA path; p2p-bus: the exporter\'s BAR by bus address through the switch; p2p-host-bridge: the BAR through the host bridge (IOVA, MMIO); iommufd-ioas: the BAR at a chosen IOVA of the importer\'s own domain (VFIO\'s private interconnect); iommufd-pal: the same through the Physical Address List mapping type the importer negotiated (RFC "Add DMA-buf mapping types", not merged; exporters without it: EOPNOTSUPP); get-pfn: CPU physical addresses from the exporter, untranslated; fabric: the peer GPU\'s VRAM over the private link; rdma importer: the same words for the DMA ranges behind the NIC\'s dma-buf MR (mlx5 MTT mode: bytes moved by RDMA WRITE / READ from a registered staging buffer); rdma-dm exporter: NIC device memory (MEMIC) of gpu0\'s BAR exported through uverbs (Linux 7.0: P2P importers only, pinning refused)',
  'mapType': 'pci_p2pdma_map_type() of the exporter\'s BAR for the importer (BUS_ADDR, THRU_HOST_BRIDGE, NOT_SUPPORTED); - for RAM',
  'metadataBytes': 'DMA list (16 B per entry) + GPU page-table entries written (8 B each); get-pfn: 16 B per query; iommufd: 0 (its pages live in the IOMMU domain only)',
  'iommu': 'IOMMU map calls / unmap calls / IOTLB range invalidations during the import, the GPU\'s page-table pages (coherent memory, mapped for the GPU) included; a P2P bus-address mapping itself makes none',
  'bytesCorrect': 'false: the device\'s accesses faulted or reached other bytes than the buffer\'s (get_pfn cannot check the device\'s address space: its physical addresses are not DMA addresses behind an IOMMU)',
  'revoke': 'VFIO and heap buffers are revoked (dmaBufRevoke), RDMA device memory is freed (rdma_user_mmap_entry_remove revokes for good), the GPU buffer migrates to the other placement; then the importer re-maps where it can (the NIC: its MTT is zapped and its next access faults and remaps)',
};


function same(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The buffer's bytes as the CPU sees them (through the exporter's physical ranges). */
function cpuRead(m: Machine, buf: DmaBuf): Uint8Array {
  const r = buf.ops.physRanges(buf);
  if (!r.ok) throw new Error(`physRanges: ${r.errno}`);
  const out = new Uint8Array(buf.size);
  let at = 0;
  for (let i = 0; i < r.value.count; i++) {
    out.set(m.mem.read(r.value.addrAt(i), r.value.lenAt(i)), at);
    at += r.value.lenAt(i);
  }
  return out;
}

function cpuWrite(m: Machine, buf: DmaBuf, bytes: Uint8Array): void {
  const r = buf.ops.physRanges(buf);
  if (!r.ok) throw new Error(`physRanges: ${r.errno}`);
  let at = 0;
  for (let i = 0; i < r.value.count; i++) {
    m.mem.write(r.value.addrAt(i), bytes.subarray(at, at + r.value.lenAt(i)));
    at += r.value.lenAt(i);
  }
}

const IOAS_IOVA = 0x1000_0000n;

/** What a cell needs from an importer: device write, device read, and whether it is still mapped. */
interface Imported {
  write(bytes: Uint8Array): boolean;
  read(len: number): Uint8Array | null;
  entries: number;
  metadataBytes: number;
  path: string;
}

function exportBuffer(m: Machine, exporter: DmabufExporter, len: number): { buf: DmaBuf; bo: GpuBo | null; dm: IbDm | null } {
  const gpu0 = m.device('gpu0');
  if (exporter === 'system-heap') {
    const r = systemHeapAlloc(m, len);
    if (!r.ok) throw new Error(`systemHeapAlloc: ${r.errno}`);
    return { buf: r.value, bo: null, dm: null };
  }
  if (exporter === 'gpu-vram') {
    const bo = gpuBoCreate(gpu0, len, 'vram');
    if (!bo.ok) throw new Error(`gpuBoCreate: ${bo.errno}`);
    const r = gpuBoExport(bo.value);
    if (!r.ok) throw new Error(`gpuBoExport: ${r.errno}`);
    return { buf: r.value, bo: bo.value, dm: null };
  }
  if (exporter === 'rdma-dm') {
    // gpu0 as an RDMA NIC: device memory in its BAR 0, exported through uverbs DMABUF_ALLOC
    const nic = rdmaProbe(gpu0);
    if (!nic.ok) throw new Error(`rdmaProbe: ${nic.errno}`);
    const dm = ibAllocDm(nic.value, len);
    if (!dm.ok) throw new Error(`ibAllocDm: ${dm.errno}`);
    const r = ibDmabufAlloc(dm.value);
    if (!r.ok) throw new Error(`ibDmabufAlloc: ${r.errno}`);
    return { buf: r.value, bo: null, dm: dm.value };
  }
  const r = vfioPciDmabufExport(gpu0, { bar: 0, offset: 0, len });
  if (!r.ok) throw new Error(`vfioPciDmabufExport: ${r.errno}`);
  return { buf: r.value, bo: null, dm: null };
}

const RDMA_IOVA = 0x7000_0000_0000n;
const RDMA_RW = IB_ACCESS_LOCAL_WRITE | IB_ACCESS_REMOTE_WRITE | IB_ACCESS_REMOTE_READ;

/** The RDMA importer: a NIC on dev, a dma-buf MR over the buffer and a registered staging buffer in a process. */
interface RdmaImport {
  readonly dmr: IbDmabufMr;
  write(bytes: Uint8Array): boolean;
  read(len: number): Uint8Array | null;
  release(): void;
}

function rdmaImport(m: Machine, dev: Device, buf: DmaBuf, len: number): { ok: true; value: RdmaImport } | { ok: false; errno: string } {
  const nic = rdmaProbe(dev);
  if (!nic.ok) return nic;
  const mm = m.newProcess();
  const va = mm.mmap({ len, backing: 'anon', populate: true, prot: 'rw' });
  if (!va.ok) return va;
  const u = ibUmemGet(nic.value, mm, va.value, len, RDMA_RW);
  if (!u.ok) return u;
  const staging = ibRegMr(nic.value, u.value, va.value);
  if (!staging.ok) { ibUmemRelease(u.value); return staging; }
  const d = ibRegDmabufMr(nic.value, buf, 0, len, RDMA_IOVA, RDMA_RW);
  if (!d.ok) {
    ibDeregMr(nic.value, staging.value);
    ibUmemRelease(u.value);
    return d;
  }
  const dmr = d.value;
  return {
    ok: true,
    value: {
      dmr,
      write(bytes) {
        if (!mm.writeUser(va.value, bytes).ok) return false;
        const wc = ibPostRdmaWrite(nic.value, { lkey: staging.value.lkey, laddr: va.value, rkey: dmr.rkey, raddr: RDMA_IOVA, len: bytes.length });
        return wc.ok && wc.value.status === IB_WC_SUCCESS;
      },
      read(n) {
        const wc = ibPostRdmaRead(nic.value, { lkey: staging.value.lkey, laddr: va.value, rkey: dmr.rkey, raddr: RDMA_IOVA, len: n });
        if (!wc.ok || wc.value.status !== IB_WC_SUCCESS) return null;
        const b = mm.readUser(va.value, n);
        return b.ok ? b.value : null;
      },
      release() {
        ibDeregDmabufMr(nic.value, dmr);
        ibDeregMr(nic.value, staging.value);
        ibUmemRelease(u.value);
      },
    },
  };
}

function gpuImported(imp: GpuImport): Imported {
  const mp = imp.mapping!;
  const listBytes = imp.list !== null ? imp.list.kernelBytes : 0;
  return {
    write: (bytes) => gpuWrite(imp.gpu, mp.va, bytes).ok,
    read: (len) => { const r = gpuRead(imp.gpu, mp.va, len); return r.ok ? r.value : null; },
    entries: mp.entries,
    metadataBytes: listBytes + mp.entryBytes + (imp.how === 'get-pfn' ? 16 * imp.pfnQueries : 0),
    path: imp.path ?? '-',
  };
}

/** Runs one cell on a fresh machine. */
export function runDmabufCell(exporter: DmabufExporter, importer: DmabufImporter, topology: DmabufTopology, iommu: DmabufIommuMode,
  len = 256 * KiB, seed = 1): DmabufCell {
  const m = dmabufMachine(iommu, seed);
  const dev: Device = m.device(IMPORTER_DEV[topology]);
  const gpu0 = m.device('gpu0');
  const { buf, bo, dm } = exportBuffer(m, exporter, len);
  const provider = pcimP2pdmaProvider(gpu0, 0);
  const memIsBar = exporter !== 'system-heap';
  const mapType = memIsBar && provider ? PCI_P2PDMA_MAP_NAMES[pciP2pdmaMapType(provider, dev)] ?? '?' : '-';
  // the importer GPU's own table memory is mapped at probe: counted apart from the import
  const viaIommufd = importer === 'iommufd' || importer === 'iommufd-pal';
  const gpu = viaIommufd || importer === 'rdma' ? null : gpuProbe(dev);
  if (importer === 'gpu-fabric') {
    const g0 = gpuProbe(gpu0);
    if (gpu !== null && gpu.ok && g0.ok) gpuFabricConnect(gpu.value, g0.value);
  }
  const s0 = { maps: m.stats.iommuMapCalls, unmaps: m.stats.iommuUnmapCalls, inv: m.stats.iotlbRangeInvalidations };
  const base = { exporter, importer, topology, iommu, mapType };
  const fail = (errno: string): DmabufCell => ({
    ...base, result: errno, path: '-', entries: 0, metadataBytes: 0,
    iommuMaps: m.stats.iommuMapCalls - s0.maps, iommuUnmaps: m.stats.iommuUnmapCalls - s0.unmaps,
    iotlbInvalidations: m.stats.iotlbRangeInvalidations - s0.inv, bytesVerified: 0, bytesCorrect: true, revoke: '-',
    revokeClean: dmaBufAttachments(dev).length === 0,
  });
  let imp: GpuImport | null = null;
  let ioas: Ioas | null = null;
  let rdma: RdmaImport | null = null;
  let got: Imported;
  if (importer === 'rdma') {
    const r = rdmaImport(m, dev, buf, len);
    if (!r.ok) return fail(r.errno);
    rdma = r.value;
    const inBar = exporter === 'vfio-bar' || exporter === 'rdma-dm' || (bo !== null && bo.placement === 'vram');
    const list = rdma.dmr.umem.sgt;
    got = {
      write: rdma.write, read: rdma.read, entries: rdma.dmr.mr.mttCount,
      metadataBytes: rdma.dmr.mr.mttBytes + (list !== null ? list.kernelBytes : 0),
      path: !inBar ? 'system' : mapType === 'PCI_P2PDMA_MAP_BUS_ADDR' ? 'p2p-bus' : 'p2p-host-bridge',
    };
  } else if (viaIommufd) {
    const a = iommufdIoasAlloc(m, dev);
    if (!a.ok) return fail(a.errno);
    ioas = a.value;
    const r = importer === 'iommufd' ? iommufdIoasMapDmabuf(ioas, buf, IOAS_IOVA) : iommufdIoasMapDmabufPal(ioas, buf, IOAS_IOVA);
    if (!r.ok) { iommufdIoasClose(ioas); return fail(r.errno); }
    got = {
      write: (bytes) => dev.dmaWrite(IOAS_IOVA, bytes).ok,
      read: (n) => { const x = dev.dmaRead(IOAS_IOVA, n); return x.ok ? x.value : null; },
      entries: ioas.areas.length, metadataBytes: 0, path: importer === 'iommufd' ? 'iommufd-ioas' : 'iommufd-pal',
    };
  } else {
    if (gpu === null || !gpu.ok) return fail(gpu?.errno ?? 'ENODEV');
    const r = importer === 'gpu' ? gpuImportDmabuf(gpu.value, buf)
      : importer === 'gpu-get-pfn' ? gpuImportDmabufGetPfn(gpu.value, buf) : gpuImportDmabufFabric(gpu.value, buf);
    if (!r.ok) return fail(r.errno);
    imp = r.value;
    got = gpuImported(imp);
  }
  const iommuMaps = m.stats.iommuMapCalls - s0.maps;
  const iommuUnmaps = m.stats.iommuUnmapCalls - s0.unmaps;
  const iotlbInvalidations = m.stats.iotlbRangeInvalidations - s0.inv;
  // device writes, CPU reads back; CPU writes, device reads
  const out = pattern(len, seed * 7 + 1);
  const wrote = got.write(out);
  let correct = wrote && same(cpuRead(m, buf), out);
  const inn = pattern(len, seed * 7 + 2);
  cpuWrite(m, buf, inn);
  const back = got.read(len);
  correct = correct && back !== null && same(back, inn);
  // revoke or move; then the old addresses must fault and nothing may stay mapped
  let revoke: string;
  let clean: boolean;
  const faults = (): number => m.stats.deviceDmaFaults + m.stats.gpuMmuFaults + m.stats.rdmaNicPageFaults;
  const faultsBefore = faults();
  const oldVa = imp?.mapping?.va ?? null;
  // the GPU buffer moves to the other placement (an import without P2P already moved it to system memory)
  const to = bo?.placement === 'vram' ? 'system' : 'vram';
  if (bo !== null) gpuBoMigrate(bo, to);
  else if (dm !== null) ibDeallocDm(dm);
  else dmaBufRevoke(buf);
  const what = bo !== null ? `moved to ${to === 'vram' ? 'VRAM' : 'system memory'}` : dm !== null ? 'device memory freed, revoked' : 'revoked';
  if (rdma !== null) {
    // the MTT is zapped and the attachment unmapped; the NIC's next access faults and remaps where it can
    const dmr = rdma.dmr;
    clean = dmr.umem.sgt === null && dmr.umem.att.live.size === 0 && ibMrMttEntries(dmr.mr).every((e) => e === 0n);
    const ok2 = rdma.write(out) && same(cpuRead(m, buf), out);
    if (ok2) revoke = `${what}: MTT zapped; the NIC's fault remapped as ${bo !== null && bo.placement === 'vram' ? 'VRAM' : 'system memory'}, bytes verified`;
    else {
      revoke = `${what}: MTT zapped; the NIC's fault fails: work requests complete with IB_WC_REM_ACCESS_ERR`;
      if (bo !== null) correct = false;
    }
    rdma.release();
    clean = clean && dmaBufAttachments(dev).length === 0;
  } else if (ioas !== null) {
    const stillMapped = iommuIovaToPhys(ioas.domain!, IOAS_IOVA) !== 0n;
    const faulted = !dev.dmaWrite(IOAS_IOVA, new Uint8Array(64)).ok;
    clean = !stillMapped && faulted;
    revoke = `${what}: IOVA unmapped, IOTLB invalidated, device DMA faults; no remap`;
    iommufdIoasClose(ioas);
  } else {
    const i = imp!;
    const faulted = oldVa !== null && !gpuRead(i.gpu, oldVa, 64).ok;
    clean = i.mapping === null && i.list === null && i.att.live.size === 0 && faulted;
    const again = gpuImportRevalidate(i);
    if (again.ok) {
      const ok2 = gpuWrite(i.gpu, i.mapping!.va, out).ok && same(cpuRead(m, buf), out);
      revoke = `${what}: GPU entries dropped; remapped as ${i.path}${ok2 ? ', bytes verified' : ', BYTES WRONG'}`;
      if (!ok2) correct = false;
    } else {
      revoke = `${what}: GPU entries dropped; remap fails ${again.errno}`;
    }
    gpuImportRelease(i);
  }
  clean = clean && faults() > faultsBefore;
  return {
    ...base, result: 'ok', path: got.path, entries: got.entries, metadataBytes: got.metadataBytes, iommuMaps, iommuUnmaps,
    iotlbInvalidations, bytesVerified: correct ? 2 * len : 0, bytesCorrect: correct, revoke, revokeClean: clean,
  };
}

/** Runs every cell (4 exporters x 6 importers x 3 topologies x 2 IOMMU modes). */
export function runDmabufMatrix(len = 256 * KiB, seed = 1): DmabufReport {
  const cells: DmabufCell[] = [];
  for (const iommu of DMABUF_IOMMU_MODES) {
    for (const topology of DMABUF_TOPOLOGIES) {
      for (const exporter of DMABUF_EXPORTERS) {
        for (const importer of DMABUF_IMPORTERS) cells.push(runDmabufCell(exporter, importer, topology, iommu, len, seed));
      }
    }
  }
  return { title: 'dma-buf export/import matrix', bufferBytes: len, cells, legend: DMABUF_LEGEND };
}
