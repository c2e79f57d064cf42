// Acceptance checks of the public API, called by the names and with the shapes a user would use:
// pinning, phyrs and scatterlists, then DMA mapping (IOMMU, two-step, P2P, dmaMapPhyrs).
import { describe, expect, it } from 'vitest';
import {
  createMachine, pinUserPages, pinUserPhyrs, unpinUserPhyrs, unpinUserPages, FOLL_WRITE,
  sgAllocTableFromPagesSegment, sgAllocAppendTableFromPages, SgAppendTable,
  dmaSetMaskAndCoherent, DMA_BIT_MASK, dmaMapPhys, dmaUnmapPhys, DMA_TO_DEVICE, DMA_BIDIRECTIONAL,
  iommuGetDmaDomain, iommuIovaToPhys, DmaIovaState, dmaIovaTryAlloc, dmaIovaLink, dmaIovaSync, dmaIovaDestroy,
  pcimP2pdmaProvider, pciP2pdmaMapType, pciP2pdmaDistance, PCI_P2PDMA_MAP_BUS_ADDR, dmaMapPhyrs, dmaUnmapPhyrs,
  PhyrList, GiB, MiB, KiB,
} from '../src/index.ts';

describe('acceptance: pinning, phyrs and scatterlists', () => {
  it('pins a 1 GiB hugetlb folio as 262144 pages or 1 phyr', () => {
    const m = createMachine({ ramBytes: 64 * GiB, hugetlb: { '1G': 8 },
      deviceMemory: [{ name: 'bar0', bytes: 16 * GiB }], aged: true, seed: 1 });
    const mm = m.newProcess();
    const r = mm.mmap({ len: GiB, backing: 'hugetlb-1G', populate: true });
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(typeof r.value).toBe('bigint');
    const pages = pinUserPages(mm, r.value, 262144, FOLL_WRITE);
    const phyrs = pinUserPhyrs(mm, r.value, GiB, FOLL_WRITE);
    expect(pages.ok && phyrs.ok).toBe(true);
    if (!pages.ok || !phyrs.ok) return;
    expect(pages.value.count).toBe(262144);
    expect(pages.value.kernelBytes).toBe(2 * MiB);
    expect(phyrs.value.count).toBe(1);
    expect(phyrs.value.kernelBytes).toBe(16);
    // The one phyr is the folio: its address is what the page tables say.
    expect([...phyrs.value][0].addr).toBe(mm.translate(r.value));
    const head = m.folioOf(mm.translate(r.value)! >> 12n)!;
    expect(head.pincount).toBeGreaterThan(0);
    unpinUserPages(pages.value);
    unpinUserPhyrs(phyrs.value);
    expect(m.folioOf(mm.translate(r.value)! >> 12n)!.pincount).toBe(0);
  });

  it('sgAllocTableFromPagesSegment([0n, 1n, 3n], 0, 3 * 4096, 0xfffff000) has 2 entries', () => {
    const sgt = sgAllocTableFromPagesSegment([0n, 1n, 3n], 0, 3 * 4096, 0xfffff000);
    expect(sgt.ok && sgt.value.nents).toBe(2);
  });

  it('appends with sgAllocAppendTableFromPages and reads append.sgt.nents', () => {
    const append = new SgAppendTable();
    expect(sgAllocAppendTableFromPages(append, [0n, 1n, 2n], 0, 3 * 4096, 0xfffff000, 3).ok).toBe(true);
    expect(sgAllocAppendTableFromPages(append, [3n, 4n, 5n], 0, 3 * 4096, 0xfffff000, 0).ok).toBe(true);
    expect(append.sgt.nents).toBe(1);
  });
});


function issue3Machine() {
  return createMachine({
    ramBytes: 16 * GiB, seed: 1,
    cpu: { vendor: 'intel' },
    iommu: { format: 'x86-64', levels: 4, mode: 'strict' },
    swiotlb: { bytes: 64 * MiB, force: false },
    pci: [
      { name: 'hb0', type: 'host-bridge', vendor: 0x8086, device: 0x2030 },
      { name: 'rp0', type: 'root-port', parent: 'hb0' },
      { name: 'sw0', type: 'switch', parent: 'rp0', acsRedirect: false },
      { name: 'nvme0', type: 'endpoint', parent: 'sw0', bars: [{ bytes: 16 * KiB }] },
      { name: 'gpu0', type: 'endpoint', parent: 'sw0', bars: [{ bytes: 16 * GiB, p2p: true }] },
      { name: 'rp1', type: 'root-port', parent: 'hb0' },
      { name: 'tb0', type: 'endpoint', parent: 'rp1', untrusted: true },
    ],
  });
}

describe('acceptance: DMA mapping', () => {
  it('maps through the IOMMU, two-step, P2P and dmaMapPhyrs as the issue calls them', () => {
    const m = issue3Machine();
    const dev = m.device('nvme0');
    expect(dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(64)).ok).toBe(true);
    const pfn = m.allocKernelPages(2);
    expect(pfn.ok).toBe(true);
    if (!pfn.ok) return;
    const phys = pfn.value << 12n;
    const a = dmaMapPhys(dev, phys, 4096, DMA_TO_DEVICE, 0);
    expect(a.ok).toBe(true);
    if (!a.ok) return;
    const dom = iommuGetDmaDomain(dev)!;
    expect(iommuIovaToPhys(dom, a.value)).toBe(phys);
    // A device reads what the CPU wrote, through the IOMMU.
    m.mem.write(phys, new Uint8Array([1, 2, 3, 4]));
    const read = dev.dmaRead(a.value, 4);
    expect(read.ok && [...read.value]).toEqual([1, 2, 3, 4]);
    dmaUnmapPhys(dev, a.value, 4096, DMA_TO_DEVICE, 0);
    expect(iommuIovaToPhys(dom, a.value)).toBe(0n);

    const state = new DmaIovaState();
    expect(dmaIovaTryAlloc(dev, state, phys, 3 * 4096)).toBe(true);
    expect(dmaIovaLink(dev, state, phys, 0, 4096, DMA_TO_DEVICE, 0).ok).toBe(true);
    expect(dmaIovaSync(dev, state, 0, 4096).ok).toBe(true);
    expect(iommuIovaToPhys(dom, state.addr)).toBe(phys);
    dmaIovaDestroy(dev, state, 4096, DMA_TO_DEVICE, 0);

    const provider = pcimP2pdmaProvider(m.device('gpu0'), 0)!;
    expect(pciP2pdmaMapType(provider, dev)).toBe(PCI_P2PDMA_MAP_BUS_ADDR);
    expect(pciP2pdmaDistance(m.device('gpu0'), dev)).toBe(4);

    const list = PhyrList.from([{ addr: phys, len: 8192 }, { addr: phys + 8192n, len: 4096 }]);
    const dl = dmaMapPhyrs(dev, list, DMA_BIDIRECTIONAL, 0);
    expect(dl.ok).toBe(true);
    if (!dl.ok) return;
    // dmaMapPhyrs returns a mapping handle; its DMA list is the field `list`
    expect(dl.value.list.count).toBe(1); // one contiguous IOVA window
    const segs = [...dl.value.list];
    expect(segs.reduce((s, r) => s + r.len, 0)).toBe(3 * 4096);
    const w = dev.dmaWrite(segs[0].addr, new Uint8Array(3 * 4096).fill(0xab));
    expect(w.ok).toBe(true);
    expect(m.mem.read(phys + 8192n, 4096).every((b) => b === 0xab)).toBe(true);
    dmaUnmapPhyrs(dev, dl.value, DMA_BIDIRECTIONAL, 0);
    expect(m.events.count('DMA-DEBUG')).toBe(0);
    expect(m.teardown()).toBe(0);
  });
});
