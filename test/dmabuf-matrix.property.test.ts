// Every exporter x importer x topology cell of the dma-buf matrix, with random buffer sizes and
// seeds: it moves bytes correctly both ways or fails with the kernel's error; P2P the topology does
// not support never maps through the DMA API; after revoke or move the importer's old addresses
// fault and nothing stays mapped.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  DMABUF_EXPORTERS, DMABUF_IMPORTERS, DMABUF_IOMMU_MODES, DMABUF_TOPOLOGIES, runDmabufCell, type DmabufCell,
} from '../src/scenario/index.ts';

/** The errno each failing cell must have (the kernel's), by importer. */
function expectedFailure(c: DmabufCell): string | null {
  if (c.importer === 'iommufd') {
    if (c.iommu === 'none') return 'ENODEV'; // no IOMMU group: iommu_device_claim_dma_owner
    // vfio_pci_dma_buf_iommufd_map: not a VFIO dma-buf; an RDMA dma-buf already refuses iommufd's pin (uverbs_dmabuf_pin)
    return c.exporter === 'vfio-bar' ? null : 'EOPNOTSUPP';
  }
  if (c.importer === 'iommufd-pal') {
    if (c.iommu === 'none') return 'ENODEV';
    return c.exporter === 'vfio-bar' ? null : 'EOPNOTSUPP'; // the exporter offers no PAL mapping type (RFC negotiation)
  }
  if (c.importer === 'gpu-fabric') return c.exporter === 'gpu-vram' ? null : 'EOPNOTSUPP';
  // dma_buf_phys_vec_to_sgt() (VFIO and RDMA exporters): a map type other than BUS_ADDR / THRU_HOST_BRIDGE is EINVAL
  const physVecExporter = c.exporter === 'vfio-bar' || c.exporter === 'rdma-dm';
  if ((c.importer === 'gpu' || c.importer === 'rdma') && physVecExporter && c.mapType === 'PCI_P2PDMA_MAP_NOT_SUPPORTED') return 'EINVAL';
  return null;
}

describe('dma-buf matrix', () => {
  const cells = DMABUF_IOMMU_MODES.flatMap((iommu) => DMABUF_TOPOLOGIES.flatMap((topology) =>
    DMABUF_EXPORTERS.flatMap((exporter) => DMABUF_IMPORTERS.map((importer) => ({ exporter, importer, topology, iommu })))));

  it('property: every cell moves the bytes both ways or fails with the kernel\'s errno; revoke/move leaves nothing reachable', () => {
    fc.assert(fc.property(
      fc.constantFrom(...cells), fc.integer({ min: 1, max: 160 }), fc.integer({ min: 1, max: 1000 }),
      (cell, pages, seed) => {
        const c = runDmabufCell(cell.exporter, cell.importer, cell.topology, cell.iommu, pages * 4096, seed);
        const want = expectedFailure(c);
        if (want !== null) {
          expect(c.result).toBe(want);
          expect(c.revokeClean).toBe(true); // nothing stays attached
          return;
        }
        expect(c.result).toBe('ok');
        expect(c.revokeClean).toBe(true);
        if (c.importer === 'gpu-get-pfn') {
          // get_pfn hands CPU physical addresses: right only where nothing translates DMA addresses
          expect(c.bytesCorrect).toBe(c.iommu === 'none');
        } else {
          expect(c.bytesCorrect).toBe(true);
          expect(c.bytesVerified).toBe(2 * pages * 4096);
        }
        // the GPU's and the NIC's DMA-API path follows the map type; NOT_SUPPORTED never maps the BAR
        if (c.importer === 'gpu' || c.importer === 'rdma') {
          const want = c.exporter === 'system-heap' || c.mapType === 'PCI_P2PDMA_MAP_NOT_SUPPORTED' ? 'system'
            : c.mapType === 'PCI_P2PDMA_MAP_BUS_ADDR' ? 'p2p-bus' : 'p2p-host-bridge';
          expect(c.path).toBe(want);
        }
      },
    ), { numRuns: 60 });
  });

  it('every cell once at 64 KiB (the matrix phyr dmabuf prints)', () => {
    for (const cell of cells) {
      const c = runDmabufCell(cell.exporter, cell.importer, cell.topology, cell.iommu, 64 * 1024);
      expect(c.result).toBe(expectedFailure(c) ?? 'ok');
      expect(c.revokeClean).toBe(true);
    }
  });
});
