import { describe, expect, it } from 'vitest';
import { MiB } from '../base/index.ts';
import { sgAllocTableFromPagesSegment } from '../phyr/index.ts';
import type { Machine, MachineConfig } from '../machine/index.ts';
import {
  DMA_ATTR_CC_SHARED, DMA_ATTR_MMIO, DMA_ATTR_REQUIRE_COHERENT, DMA_BIT_MASK, DMA_TO_DEVICE, DMA_FROM_DEVICE,
  __DMA_ATTR_ALLOC_CC_SHARED,
} from './constants.ts';
import { dmaMapPhys, dmaMapSgtable, dmaUnmapPhys, dmaUnmapSgtable } from './mapping.ts';
import { dmaSetMask, dmaSetMaskAndCoherent } from './mask.ts';
import { ccPlatformHas, ccStateOf, forceDmaUnencrypted, setMemoryDecrypted, setMemoryEncrypted } from './cc.ts';
import { dmaAllocCoherent, dmaFreeCoherent } from './coherent.ts';
import { pattern, ramAt, smallMachine } from '../../test/fixtures/dma-machines.ts';

const LEN = 3 * 4096;
const HIGH = 1n << 32n;

type Guest = 'guest' | 'host';
type Memory = 'shared' | 'private';
type Path = 'direct' | 'swiotlb' | 'dma-iommu' | 'ops';

function machineFor(guest: Guest, path: Path): Machine {
  const over: Partial<MachineConfig> = {};
  if (guest === 'guest') Object.assign(over, { cc: { kind: 'tdx' } });
  if (path === 'dma-iommu') Object.assign(over, { iommu: { format: 'x86-64', levels: 4, mode: 'strict' } });
  if (path === 'ops') Object.assign(over, { dmaOps: { kind: 'tce', offset: 0, size: 2048, pageShift: 12 } });
  // the swiotlb row: a host whose swiotlb bounces everything (swiotlb=force), or a CC guest (always)
  if (path === 'swiotlb' && guest === 'host') Object.assign(over, { swiotlb: { bytes: 4 * MiB, force: true } });
  return smallMachine(over);
}

/**
 * One row: map LEN bytes with or without CC_SHARED; result 'fail', or what the device reads:
 * 'plain' (the CPU's bytes) or 'cipher' (every byte differs). `bounced` says whether swiotlb was used.
 */
function row(guest: Guest, mem: Memory, path: Path, attrs: number): { result: 'fail' | 'plain' | 'cipher'; bounced: boolean } {
  const m = machineFor(guest, path);
  const dev = m.device('nvme0');
  dmaSetMask(dev, DMA_BIT_MASK(64));
  const phys = ramAt(m, HIGH, MiB);
  const data = pattern(LEN, 7);
  m.mem.write(phys, data);
  if (mem === 'shared') expect(setMemoryDecrypted(m, phys, LEN / 4096).ok).toBe(true);
  const r = dmaMapPhys(dev, phys, LEN, DMA_TO_DEVICE, attrs);
  if (!r.ok) {
    expect(m.teardown()).toBe(0);
    return { result: 'fail', bounced: false };
  }
  const seen = dev.dmaRead(r.value, LEN);
  expect(seen.ok).toBe(true);
  const bytes = seen.ok ? seen.value : new Uint8Array();
  const bounced = m.stats.swiotlbMaps > 0;
  dmaUnmapPhys(dev, r.value, LEN, DMA_TO_DEVICE, attrs);
  expect(m.teardown()).toBe(0);
  if (bytes.every((b, i) => b === data[i])) return { result: 'plain', bounced };
  expect(bytes.every((b, i) => b !== data[i])).toBe(true);
  return { result: 'cipher', bounced };
}

// The decision table of docs/model.md "Confidential-computing guests" (kernel/dma/mapping.c:
// dma_map_phys(), kernel/dma/direct.h: dma_direct_map_phys() in 7.1.5). 'direct' is a host or guest
// without IOMMU; in a guest that path is force-bounce (the 'swiotlb' row is the same machine).
const TABLE: ReadonlyArray<[Guest, Memory, Path, 'cc' | 'plain', 'fail' | 'plain' | 'cipher', boolean]> = [
  // guest, memory, path, attrs, the device reads, bounced through swiotlb
  ['guest', 'private', 'direct', 'plain', 'plain', true], // force-bounce: the decrypted pool carries plaintext
  ['guest', 'shared', 'direct', 'plain', 'plain', true], // still bounced without the attribute
  ['guest', 'shared', 'direct', 'cc', 'plain', false], // CC_SHARED: phys_to_dma_unencrypted, no swiotlb
  ['guest', 'private', 'direct', 'cc', 'cipher', false], // misuse: mapped, the device reads ciphertext
  ['host', 'private', 'direct', 'plain', 'plain', false],
  ['host', 'private', 'direct', 'cc', 'fail', false], // no force-bounce: DMA_MAPPING_ERROR
  ['host', 'private', 'swiotlb', 'plain', 'plain', true], // swiotlb=force host
  ['host', 'private', 'swiotlb', 'cc', 'plain', false], // force-bounce + CC_SHARED maps directly
  ['guest', 'shared', 'dma-iommu', 'cc', 'fail', false],
  ['guest', 'private', 'dma-iommu', 'plain', 'cipher', false], // a guest IOMMU does not decrypt
  ['guest', 'shared', 'dma-iommu', 'plain', 'plain', false],
  ['host', 'private', 'dma-iommu', 'cc', 'fail', false],
  ['guest', 'shared', 'ops', 'cc', 'fail', false],
  ['host', 'private', 'ops', 'cc', 'fail', false],
  ['host', 'private', 'ops', 'plain', 'plain', false],
];

describe('DMA_ATTR_CC_SHARED decision table (7.1 dma_map_phys / dma_direct_map_phys), each row a device read', () => {
  it.each(TABLE)('%s, %s memory, %s, attrs %s: %s (bounced %s)', (guest, mem, path, a, want, bounced) => {
    const got = row(guest, mem, path, a === 'cc' ? DMA_ATTR_CC_SHARED : 0);
    expect(got.result).toBe(want);
    if (want !== 'fail') expect(got.bounced).toBe(bounced);
  });
});

describe('confidential-computing guest', () => {
  it('cc implies force-bounce, a decrypted swiotlb pool and force_dma_unencrypted; cc_platform_has answers per kind', () => {
    const m = smallMachine({ cc: { kind: 'sev-snp' } });
    expect(m.swiotlb!.forceBounce).toBe(true);
    expect(m.swiotlb!.decrypted).toBe(true);
    expect(ccStateOf(m)!.sharedPages).toBe(m.swiotlb!.bytes / 4096);
    expect(forceDmaUnencrypted(m.device('nvme0'))).toBe(true);
    expect(ccPlatformHas(m, 'CC_ATTR_GUEST_SEV_SNP')).toBe(true);
    const t = smallMachine({ cc: { kind: 'tdx' } });
    expect(ccPlatformHas(t, 'CC_ATTR_GUEST_SEV_SNP')).toBe(false);
    expect(ccPlatformHas(t, 'CC_ATTR_MEM_ENCRYPT')).toBe(true);
    expect(ccPlatformHas(smallMachine(), 'CC_ATTR_MEM_ENCRYPT')).toBe(false);
    expect(() => smallMachine({ cc: { kind: 'tdx' }, swiotlb: false })).toThrow(RangeError);
    expect(() => smallMachine({ cc: { kind: 'snp' as 'tdx' } })).toThrow(/config.cc.kind/);
  });

  it('a device write into private memory leaves the CPU reading it decrypted (garbage); into shared memory, the bytes', () => {
    const m = smallMachine({ cc: { kind: 'tdx' } });
    const dev = m.device('nvme0');
    dmaSetMask(dev, DMA_BIT_MASK(64));
    const phys = ramAt(m, HIGH, MiB);
    const data = pattern(4096, 3);
    // a guest IOMMU-less device writing straight to a private page (as a buggy or hostile device could)
    expect(dev.dmaWrite(phys, data).ok).toBe(true);
    const cpu = m.mem.read(phys, 4096);
    expect(cpu.every((b, i) => b !== data[i])).toBe(true);
    // and reading it back through the bus gives the device its bytes again
    const back = dev.dmaRead(phys, 4096);
    expect(back.ok && back.value).toEqual(data);
    expect(setMemoryDecrypted(m, phys, 1).ok).toBe(true);
    expect(dev.dmaWrite(phys, data).ok).toBe(true);
    expect(m.mem.read(phys, 4096)).toEqual(data);
    expect(setMemoryEncrypted(m, phys, 1).ok).toBe(true);
    expect(ccStateOf(m)!.isShared(Number(phys))).toBe(false);
  });

  it('an unaligned address: a WARN once and the page holding it is converted (__set_memory_enc_pgtable); outside a guest a silent no-op', () => {
    const m = smallMachine({ cc: { kind: 'tdx' } });
    const phys = ramAt(m, HIGH, MiB);
    const cc = ccStateOf(m)!;
    const shared0 = cc.sharedPages;
    expect(setMemoryDecrypted(m, phys + 0x10n, 2).ok).toBe(true);
    expect([0n, 1n, 2n].map((i) => cc.isShared(Number(phys + i * 4096n)))).toEqual([true, true, false]);
    expect(setMemoryEncrypted(m, phys + 4096n + 0x800n, 1).ok).toBe(true);
    expect([0n, 1n].map((i) => cc.isShared(Number(phys + i * 4096n)))).toEqual([true, false]);
    expect(cc.sharedPages).toBe(shared0 + 1);
    const warns = m.events.list('WARN').map((e) => e.message);
    expect(warns).toEqual([`misaligned address: 0x${(phys + 0x10n).toString(16)}`]); // WARN_ONCE
    const host = smallMachine();
    expect(setMemoryDecrypted(host, phys + 0x10n, 1).ok).toBe(true);
    expect(host.events.list('WARN')).toEqual([]);
  });

  it('FROM_DEVICE through the bounce pool: the CPU gets the device bytes in plaintext', () => {
    const m = smallMachine({ cc: { kind: 'sev-snp' } });
    const dev = m.device('nvme0');
    dmaSetMask(dev, DMA_BIT_MASK(64));
    const phys = ramAt(m, HIGH, MiB);
    const r = dmaMapPhys(dev, phys, 8192, DMA_FROM_DEVICE);
    expect(r.ok).toBe(true);
    const data = pattern(8192, 9);
    expect(dev.dmaWrite(r.ok ? r.value : 0n, data).ok).toBe(true);
    dmaUnmapPhys(dev, r.ok ? r.value : 0n, 8192, DMA_FROM_DEVICE);
    expect(m.mem.read(phys, 8192)).toEqual(data);
    expect(m.teardown()).toBe(0);
  });

  it('an encrypted swiotlb pool is refused for a device that must DMA unencrypted (7.3 pool encryption state)', () => {
    const m = smallMachine({ cc: { kind: 'tdx', encryptedSwiotlb: true } });
    const dev = m.device('nvme0');
    dmaSetMask(dev, DMA_BIT_MASK(64));
    const phys = ramAt(m, HIGH, MiB);
    expect(dmaMapPhys(dev, phys, 4096, DMA_TO_DEVICE).ok).toBe(false);
    expect(m.events.list('WARN').some((e) => /no decrypted swiotlb pool/.test(e.message))).toBe(true);
  });

  it('CC_SHARED with MMIO or REQUIRE_COHERENT in a guest skips swiotlb as the kernel orders the checks', () => {
    const m = smallMachine({ cc: { kind: 'tdx' } });
    const dev = m.device('nvme0');
    dmaSetMask(dev, DMA_BIT_MASK(64));
    const phys = ramAt(m, HIGH, MiB);
    expect(setMemoryDecrypted(m, phys, 1).ok).toBe(true);
    // REQUIRE_COHERENT alone fails under force-bounce; with CC_SHARED it maps directly
    expect(dmaMapPhys(dev, phys, 4096, DMA_TO_DEVICE, DMA_ATTR_REQUIRE_COHERENT).ok).toBe(false);
    const r = dmaMapPhys(dev, phys, 4096, DMA_TO_DEVICE, DMA_ATTR_REQUIRE_COHERENT | DMA_ATTR_CC_SHARED);
    expect(r).toMatchObject({ ok: true, value: phys });
    dmaUnmapPhys(dev, phys, 4096, DMA_TO_DEVICE, DMA_ATTR_REQUIRE_COHERENT | DMA_ATTR_CC_SHARED);
    const bar = m.regions.find((x) => x.kind === 'device')!.start;
    expect(dmaMapPhys(dev, bar, 4096, DMA_TO_DEVICE, DMA_ATTR_MMIO).ok).toBe(false);
    expect(dmaMapPhys(dev, bar, 4096, DMA_TO_DEVICE, DMA_ATTR_MMIO | DMA_ATTR_CC_SHARED).ok).toBe(true);
  });

  it('__DMA_ATTR_ALLOC_CC_SHARED (bit 14, 7.3) is internal: a caller passing it is refused', () => {
    const m = smallMachine({ cc: { kind: 'tdx' } });
    const dev = m.device('nvme0');
    expect(__DMA_ATTR_ALLOC_CC_SHARED).toBe(1 << 14);
    expect(DMA_ATTR_CC_SHARED).toBe(1 << 13);
    expect(() => dmaMapPhys(dev, 0x100000n, 4096, DMA_TO_DEVICE, __DMA_ATTR_ALLOC_CC_SHARED)).toThrow(/__DMA_ATTR_ALLOC_CC_SHARED/);
  });

  it('dma_map_sg with CC_SHARED on dma-direct maps every entry directly; dma-iommu ignores the bit (7.1.5 iommu_dma_map_sg)', () => {
    for (const iommu of [false, true]) {
      const m = smallMachine({ cc: { kind: 'tdx' }, ...(iommu ? { iommu: { format: 'x86-64', levels: 4, mode: 'strict' } } : {}) });
      const dev = m.device('nvme0');
      dmaSetMask(dev, DMA_BIT_MASK(64));
      const phys = ramAt(m, HIGH, MiB);
      const data = pattern(2 * 4096, 5);
      m.mem.write(phys, data);
      expect(setMemoryDecrypted(m, phys, 2).ok).toBe(true);
      const pfn = phys / 4096n;
      const t = sgAllocTableFromPagesSegment([pfn + 1n, pfn], 0, 2 * 4096, 4096);
      expect(t.ok).toBe(true);
      const sgt = t.ok ? t.value : null!;
      expect(dmaMapSgtable(dev, sgt, DMA_TO_DEVICE, DMA_ATTR_CC_SHARED).ok).toBe(true);
      expect(m.stats.swiotlbMaps).toBe(0);
      const got = dev.dmaRead(sgt.dmaAddressAt(0), 4096);
      expect(got.ok && got.value).toEqual(data.subarray(4096));
      dmaUnmapSgtable(dev, sgt, DMA_TO_DEVICE, DMA_ATTR_CC_SHARED);
      expect(m.teardown()).toBe(0);
    }
  });
});

describe('coherent memory in a confidential-computing guest (kernel/dma/direct.c: dma_direct_alloc / dma_direct_free)', () => {
  it('dma-direct shares PFN_UP(size) pages before handing them out and makes them private again at free', () => {
    const m = smallMachine({ cc: { kind: 'tdx' } });
    const dev = m.device('nvme0');
    dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(64));
    const cc = ccStateOf(m)!;
    const shared0 = cc.sharedPages;
    const free0 = m.freePages;
    // 3 pages asked: get_order gives 4 pages, dma_set_decrypted converts PFN_UP(12288) = 3 of them
    const mem = dmaAllocCoherent(dev, 3 * 4096);
    expect(mem.ok).toBe(true);
    const { cpuPhys, dmaAddr } = mem.ok ? mem.value : { cpuPhys: 0n, dmaAddr: 0n };
    expect(free0 - m.freePages).toBe(4);
    expect(cc.sharedPages - shared0).toBe(3);
    expect([0n, 1n, 2n, 3n].map((i) => cc.isShared(Number(cpuPhys + i * 4096n)))).toEqual([true, true, true, false]);
    // the device reads the CPU's bytes and the CPU reads the device's: no bounce, no ciphertext
    const data = pattern(3 * 4096, 11);
    m.mem.write(cpuPhys, data);
    const seen = dev.dmaRead(dmaAddr, data.length);
    expect(seen.ok && seen.value).toEqual(data);
    const back = pattern(4096, 12);
    expect(dev.dmaWrite(dmaAddr + 4096n, back).ok).toBe(true);
    expect(m.mem.read(cpuPhys + 4096n, 4096)).toEqual(back);
    expect(m.stats.swiotlbMaps).toBe(0);
    dmaFreeCoherent(dev, 3 * 4096, cpuPhys, dmaAddr);
    expect(cc.sharedPages).toBe(shared0);
    expect(cc.isShared(Number(cpuPhys))).toBe(false);
    expect(m.freePages).toBe(free0);
    expect(m.teardown()).toBe(0);
  });

  it('dma-iommu does not decrypt (drivers/iommu/dma-iommu.c: iommu_dma_alloc): the device reads ciphertext', () => {
    const m = smallMachine({ cc: { kind: 'sev-snp' }, iommu: { format: 'x86-64', levels: 4, mode: 'strict' } });
    const dev = m.device('nvme0');
    dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(64));
    const shared0 = ccStateOf(m)!.sharedPages;
    const mem = dmaAllocCoherent(dev, 4096);
    expect(mem.ok).toBe(true);
    const { cpuPhys, dmaAddr } = mem.ok ? mem.value : { cpuPhys: 0n, dmaAddr: 0n };
    expect(ccStateOf(m)!.sharedPages).toBe(shared0);
    const data = pattern(4096, 13);
    m.mem.write(cpuPhys, data);
    const seen = dev.dmaRead(dmaAddr, 4096);
    expect(seen.ok).toBe(true);
    expect((seen.ok ? seen.value : data).every((b, i) => b !== data[i])).toBe(true);
    dmaFreeCoherent(dev, 4096, cpuPhys, dmaAddr);
    expect(ccStateOf(m)!.sharedPages).toBe(shared0);
    expect(m.teardown()).toBe(0);
  });
});
