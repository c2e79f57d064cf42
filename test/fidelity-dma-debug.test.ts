// dma-debug against kernel/dma/debug.c (Linux 7.1): for each difference found between the model and
// a debug kernel, the smallest reproducer and what the kernel prints. Each test names the old model
// behaviour it catches. Machines record every error (all_errors) unless the test is about the
// default output policy.
import { describe, expect, it } from 'vitest';
import { GiB, KiB, MiB, unwrap, type Result } from '../src/base/index.ts';
import { createMachine, type Machine, type MachineConfig } from '../src/machine/index.ts';
import { sgAllocTable, sgAllocTableFromPagesSegment, type SgTable } from '../src/phyr/index.ts';
import {
  DMA_ATTR_DEBUGGING_IGNORE_CACHELINES, DMA_ATTR_MMIO, DMA_ATTR_REQUIRE_COHERENT, DMA_ATTR_SKIP_CPU_SYNC,
  DMA_BIDIRECTIONAL, DMA_BIT_MASK, DMA_FROM_DEVICE, DMA_MAPPING_ERROR, DMA_TO_DEVICE, DmaIovaState, dmaAllocCoherent,
  dmaFreeCoherent, dmaIovaDestroy, dmaIovaLink, dmaIovaSync, dmaIovaTryAlloc, dmaMapPhys, dmaMapSgtable, dmaMappingError,
  dmaSetCoherentMask, dmaSetMask, dmaSetSegBoundary,
  dmaSyncSgtableForCpu, dmaSyncSingleForCpu, dmaUnmapPhys, dmaUnmapSgtable,
} from '../src/dma/index.ts';
import { Device, devDriverString, deviceBindDriver, type PciNodeConfig } from '../src/pci/index.ts';
import {
  GPU_DRIVER_NAME, HBA_DRIVER_NAME, NVME_DRIVER_NAME, RDMA_DRIVER_NAME, VFIO_PCI_DRIVER_NAME, gpuProbe, gpuRemove, hbaSetup,
  nvmeProbe, nvmeRemove, rdmaProbe, rdmaRemove, vfioPciDmabufExport, type NvmeControllerPort,
} from '../src/drivers/index.ts';
import { ramAt, smallMachine } from './fixtures/dma-machines.ts';

const HIGH = 5n * BigInt(GiB);

/** nvme0 (0000:01:00.0) bound to the nvme driver, as the driver whose misuse each test shows. */
function direct(over: Partial<MachineConfig> = {}): { m: Machine; dev: Device } {
  const m = smallMachine({ dmaDebug: { allErrors: true }, ...over });
  const dev = m.device('nvme0');
  deviceBindDriver(dev, 'nvme');
  dmaSetMask(dev, DMA_BIT_MASK(64));
  return { m, dev };
}

function behindIommu(over: Partial<MachineConfig> = {}): { m: Machine; dev: Device } {
  return direct({ iommu: { format: 'x86-64', mode: 'strict' }, ...over });
}

const msgs = (m: Machine): string[] => m.events.list('DMA-DEBUG').map((e) => e.message);
const checks = (m: Machine): unknown[] => m.events.list('DMA-DEBUG').map((e) => e.data?.check);

/** The address of a successful map, reading `ok` first: the driver's dma_mapping_error(). */
function checked(r: Result<bigint>): bigint {
  if (!r.ok) throw new Error(`map failed: ${r.errno}`);
  return r.value;
}

/** The address of a map taken without looking at whether it failed (no dma_mapping_error()). */
function unchecked(r: Result<bigint>): bigint {
  return (r as unknown as { value: bigint }).value;
}

/** A one-entry sg table for [phys, phys + len) whose DMA side says (addr, len), as a driver builds it by hand. */
function oneEntryTable(phys: bigint, len: number, addr: bigint): SgTable {
  const r = sgAllocTable(1);
  if (!r.ok) throw new Error('sg');
  const t = r.value;
  t.setPage(0, phys >> 12n, len, Number(phys & 0xfffn));
  t.setDma(0, addr, len);
  t.nents = 1;
  return t;
}

describe('8. check_unmap: "device driver failed to check map error" (was: dmaMappingError never told dma-debug)', () => {
  it('a handle never checked is reported at unmap; dmaMappingError or reading the result\'s ok marks it checked', () => {
    const { m, dev } = direct();
    const phys = ramAt(m, HIGH, MiB);
    const a = unchecked(dmaMapPhys(dev, phys, 4096, DMA_TO_DEVICE));
    expect(m.dmaDebug.entries(dev)[0].mapErr).toBe('dma map error not checked');
    dmaUnmapPhys(dev, a, 4096, DMA_TO_DEVICE);
    expect(msgs(m)).toEqual([
      `DMA-API: nvme 0000:01:00.0: device driver failed to check map error[device address=0x${a.toString(16).padStart(16, '0')}] [size=4096 bytes] [mapped as phy]`,
    ]);
    const b = unchecked(dmaMapPhys(dev, phys, 4096, DMA_TO_DEVICE));
    expect(dmaMappingError(dev, b).ok).toBe(true);
    expect(m.dmaDebug.entries(dev)[0].mapErr).toBe('dma map error checked');
    dmaUnmapPhys(dev, b, 4096, DMA_TO_DEVICE);
    const c = checked(dmaMapPhys(dev, phys, 4096, DMA_TO_DEVICE));
    dmaUnmapPhys(dev, c, 4096, DMA_TO_DEVICE);
    expect(msgs(m)).toHaveLength(1);
  });

  it('sg entries are "check not applicable"; dma_mapping_error marks the first unchecked entry at an address, and mapping one address again is such a call', () => {
    const { m, dev } = direct();
    const phys = ramAt(m, HIGH, MiB);
    const t = sgAllocTableFromPagesSegment([phys >> 12n], 0, 4096, 0xfffff000);
    if (!t.ok) throw new Error('sg');
    expect(dmaMapSgtable(dev, t.value, DMA_TO_DEVICE).ok).toBe(true);
    expect(m.dmaDebug.entries(dev).map((e) => e.mapErr)).toEqual(['dma map error check not applicable']);
    dmaUnmapSgtable(dev, t.value, DMA_TO_DEVICE);
    // dma-direct maps the same buffer twice at the same address. debug_dma_map_phys() calls
    // dma_mapping_error() on the new handle first, which marks the older unchecked entry checked
    const a1 = unchecked(dmaMapPhys(dev, phys, 4096, DMA_TO_DEVICE));
    const a2 = unchecked(dmaMapPhys(dev, phys, 4096, DMA_TO_DEVICE));
    expect(a1).toBe(a2);
    expect(m.dmaDebug.entries(dev).map((e) => e.mapErr)).toEqual(['dma map error checked', 'dma map error not checked']);
    const a3 = unchecked(dmaMapPhys(dev, phys, 4096, DMA_TO_DEVICE));
    dmaMappingError(dev, a3); // the first unchecked one: the third stays unchecked until then
    expect(m.dmaDebug.entries(dev).map((e) => e.mapErr)).toEqual(['dma map error checked', 'dma map error checked', 'dma map error checked']);
    const a4 = unchecked(dmaMapPhys(dev, phys, 4096, DMA_TO_DEVICE));
    for (const a of [a1, a2, a3]) dmaUnmapPhys(dev, a, 4096, DMA_TO_DEVICE); // perfect fits, first in the bucket first
    expect(msgs(m)).toEqual([]);
    dmaUnmapPhys(dev, a4, 4096, DMA_TO_DEVICE);
    expect(checks(m)).toEqual(['map-error-not-checked']);
  });
});

describe('9. lookup through the hash with best fit (was: lookup by start address)', () => {
  it('a sync inside a mapping, over a smaller one nested at a later address, is silent (was three reports)', () => {
    const { m, dev } = direct();
    const p = ramAt(m, HIGH, MiB);
    const outer = checked(dmaMapPhys(dev, p, 16 * KiB, DMA_FROM_DEVICE));
    const inner = checked(dmaMapPhys(dev, p + 8192n, 4096, DMA_TO_DEVICE));
    dmaSyncSingleForCpu(dev, outer + 8192n, 8192, DMA_FROM_DEVICE);
    expect(msgs(m)).toEqual([]);
    dmaUnmapPhys(dev, inner, 4096, DMA_TO_DEVICE);
    dmaUnmapPhys(dev, outer, 16 * KiB, DMA_FROM_DEVICE);
    expect(msgs(m)).toEqual([]);
  });

  it('a sync past the end of a mapping is "not allocated" and nothing else (was "outside allocated range" plus direction errors)', () => {
    const { m, dev } = direct();
    const a = checked(dmaMapPhys(dev, ramAt(m, HIGH, MiB), 8192, DMA_FROM_DEVICE));
    dmaSyncSingleForCpu(dev, a + 4096n, 8192, DMA_TO_DEVICE); // past the end, and the wrong direction
    expect(msgs(m)).toEqual([
      `DMA-API: nvme 0000:01:00.0: device driver tries to sync DMA memory it has not allocated [device address=0x${(a + 4096n).toString(16).padStart(16, '0')}] [size=8192 bytes]`,
    ]);
    dmaUnmapPhys(dev, a, 8192, DMA_FROM_DEVICE);
  });

  it('the kernel\'s false positive: the same buffer mapped twice on dma-direct (phy entries, a single ref): a sync is "not allocated"', () => {
    const { m, dev } = direct();
    const p = ramAt(m, HIGH, MiB);
    const a = checked(dmaMapPhys(dev, p, 4096, DMA_BIDIRECTIONAL));
    dmaSyncSingleForCpu(dev, a, 4096, DMA_BIDIRECTIONAL);
    expect(msgs(m)).toEqual([]); // one match: the best fit is enough
    const b = checked(dmaMapPhys(dev, p, 4096, DMA_BIDIRECTIONAL));
    expect(b).toBe(a);
    dmaSyncSingleForCpu(dev, a, 4096, DMA_BIDIRECTIONAL);
    expect(checks(m)).toEqual(['sync-not-allocated']);
    dmaUnmapPhys(dev, a, 4096, DMA_BIDIRECTIONAL);
    dmaUnmapPhys(dev, b, 4096, DMA_BIDIRECTIONAL);
    expect(m.dmaDebug.count()).toBe(0);
    // behind an IOMMU the two maps get two IOVAs: no false positive
    const io = behindIommu();
    const q = ramAt(io.m, HIGH, MiB);
    const x = checked(dmaMapPhys(io.dev, q, 4096, DMA_BIDIRECTIONAL));
    const y = checked(dmaMapPhys(io.dev, q, 4096, DMA_BIDIRECTIONAL));
    expect(x).not.toBe(y);
    dmaSyncSingleForCpu(io.dev, x, 4096, DMA_BIDIRECTIONAL);
    expect(msgs(io.m)).toEqual([]);
  });

  it('a mapping found bucket by bucket: a sync 1 MiB into a 2 MiB mapping walks back 128 buckets to it', () => {
    const { m, dev } = direct();
    const a = checked(dmaMapPhys(dev, ramAt(m, HIGH, 4 * MiB), 2 * MiB, DMA_TO_DEVICE));
    expect(m.dmaDebug.entries(dev)[0].bucket).toBe(Number((a >> 13n) & 16383n));
    dmaSyncSingleForCpu(dev, a + BigInt(MiB), 4096, DMA_TO_DEVICE);
    expect(msgs(m)).toEqual([]);
    dmaUnmapPhys(dev, a, 2 * MiB, DMA_TO_DEVICE);
  });
});

describe('10. sg checks (was: none at map time, one report per unmap call)', () => {
  it('check_sg_segment: an entry longer than max_seg_size (64 KiB unset) and one across the segment boundary', () => {
    const { m, dev } = direct();
    const p = ramAt(m, HIGH, 4 * MiB);
    // one 128 KiB entry from 32 contiguous pages
    const pfns = Array.from({ length: 32 }, (_, i) => (p >> 12n) + BigInt(i));
    const t = sgAllocTableFromPagesSegment(pfns, 0, 128 * KiB, 0xfffff000);
    if (!t.ok) throw new Error('sg');
    expect(t.value.origNents).toBe(1);
    expect(dmaMapSgtable(dev, t.value, DMA_TO_DEVICE).ok).toBe(true);
    expect(msgs(m)).toEqual(['DMA-API: nvme 0000:01:00.0: mapping sg segment longer than device claims to support [len=131072] [max=65536]']);
    dmaUnmapSgtable(dev, t.value, DMA_TO_DEVICE);
    dmaSetSegBoundary(dev, 0xffffn);
    const q = p + 0xf000n; // 8 KiB across a 64 KiB line
    const u = sgAllocTableFromPagesSegment([q >> 12n, (q >> 12n) + 1n], 0, 8192, 0xfffff000);
    if (!u.ok) throw new Error('sg');
    expect(dmaMapSgtable(dev, u.value, DMA_TO_DEVICE).ok).toBe(true);
    const h = (a: bigint): string => `0x${a.toString(16).padStart(16, '0')}`;
    expect(msgs(m)[1]).toBe(`DMA-API: nvme 0000:01:00.0: mapping sg segment across boundary [start=${h(q)}] [end=${h(q + 8191n)}] [boundary=${h(0xffffn)}]`);
    dmaUnmapSgtable(dev, u.value, DMA_TO_DEVICE);
    expect(msgs(m)).toHaveLength(2);
  });

  it('sync_sg through a table with another entry count: "different entry count" (not for a BIDIRECTIONAL mapping)', () => {
    for (const dir of [DMA_FROM_DEVICE, DMA_BIDIRECTIONAL]) {
      const { m, dev } = direct();
      const p = ramAt(m, HIGH, MiB);
      const t = sgAllocTableFromPagesSegment([p >> 12n, (p >> 12n) + 2n], 0, 8192, 0xfffff000);
      if (!t.ok) throw new Error('sg');
      expect(dmaMapSgtable(dev, t.value, dir).ok).toBe(true);
      expect(t.value.nents).toBe(2);
      const one = oneEntryTable(p, 4096, t.value.dmaAddressAt(0));
      dmaSyncSgtableForCpu(dev, one, dir);
      expect(msgs(m)).toEqual(dir === DMA_BIDIRECTIONAL ? []
        : ['DMA-API: nvme 0000:01:00.0: device driver syncs DMA sg list with different entry count [map count=2] [sync count=1]']);
      dmaUnmapSgtable(dev, t.value, dir);
    }
  });

  it('a single mapping unmapped through a 1-entry sg table: wrong function and different entry count', () => {
    const { m, dev } = direct();
    const p = ramAt(m, HIGH, MiB);
    const a = checked(dmaMapPhys(dev, p, 4096, DMA_TO_DEVICE));
    dmaUnmapSgtable(dev, oneEntryTable(p, 4096, a), DMA_TO_DEVICE);
    expect(checks(m)).toEqual(['unmap-type', 'unmap-sg-count']);
    expect(msgs(m)[0]).toMatch(/wrong function .*\[size=4096 bytes\] \[mapped as phy\] \[unmapped as scatter-gather\]$/);
    expect(msgs(m)[1]).toMatch(/frees DMA sg list with different entry count \[map count=0\] \[unmap count=1\]$/);
    expect(m.dmaDebug.count()).toBe(0);
  });

  it('a double unmap_sg: one report per CPU entry, "invalid DMA memory address" for the merged-away tail entries', () => {
    const { m, dev } = behindIommu();
    const p = ramAt(m, HIGH, MiB) >> 12n;
    const t = sgAllocTableFromPagesSegment([p, p + 2n, p + 4n], 0, 3 * 4096, 0xfffff000);
    if (!t.ok) throw new Error('sg');
    expect(t.value.origNents).toBe(3);
    expect(dmaMapSgtable(dev, t.value, DMA_TO_DEVICE).ok).toBe(true);
    expect(t.value.nents).toBe(1); // merged into one IOVA segment
    expect(t.value.dmaAddressAt(1)).toBe(DMA_MAPPING_ERROR);
    dmaUnmapSgtable(dev, t.value, DMA_TO_DEVICE);
    expect(msgs(m)).toEqual([]);
    dmaUnmapSgtable(dev, t.value, DMA_TO_DEVICE);
    expect(checks(m)).toEqual(['unmap-not-allocated', 'unmap-invalid-address', 'unmap-invalid-address']);
    expect(msgs(m)[1]).toBe('DMA-API: nvme 0000:01:00.0: device driver tries to free an invalid DMA memory address');
    // on dma-direct every entry keeps its address: three "not allocated"
    const d = direct();
    const q = ramAt(d.m, HIGH, MiB) >> 12n;
    const u = sgAllocTableFromPagesSegment([q, q + 2n, q + 4n], 0, 3 * 4096, 0xfffff000);
    if (!u.ok) throw new Error('sg');
    expect(dmaMapSgtable(d.dev, u.value, DMA_TO_DEVICE).ok).toBe(true);
    dmaUnmapSgtable(d.dev, u.value, DMA_TO_DEVICE);
    dmaUnmapSgtable(d.dev, u.value, DMA_TO_DEVICE);
    expect(checks(d.m)).toEqual(['unmap-not-allocated', 'unmap-not-allocated', 'unmap-not-allocated']);
  });

  it('unmap_phys(DMA_MAPPING_ERROR): "device driver tries to free an invalid DMA memory address"', () => {
    const { m, dev } = direct();
    dmaUnmapPhys(dev, DMA_MAPPING_ERROR, 4096, DMA_TO_DEVICE);
    expect(msgs(m)).toEqual(['DMA-API: nvme 0000:01:00.0: device driver tries to free an invalid DMA memory address']);
  });
});

describe('11. leaks and duplicates (was: coherent direct mappings optional, duplicates matched by start)', () => {
  it('dma_need_unmap() is true on a debug kernel: a coherent dma-direct mapping left at unbind is a leak', () => {
    const { m, dev } = direct();
    const a = checked(dmaMapPhys(dev, ramAt(m, 0n, MiB), 4096, DMA_TO_DEVICE));
    expect(m.teardown()).toBe(1);
    // dma_debug_device_change() runs after the unbind cleared dev->driver: the bus name is printed
    expect(msgs(m)).toEqual([
      `DMA-API: pci 0000:01:00.0: device driver has pending DMA allocations while released from device [count=1] One of leaked entries details: [device address=0x${a.toString(16).padStart(16, '0')}] [size=4096 bytes] [mapped with DMA_TO_DEVICE] [mapped as phy]`,
    ]);
  });

  it('a wrong-direction unmap of a buffer mapped twice is "not allocated" and keeps both entries', () => {
    const { m, dev } = direct();
    const p = ramAt(m, HIGH, MiB);
    const a = checked(dmaMapPhys(dev, p, 4096, DMA_TO_DEVICE));
    checked(dmaMapPhys(dev, p, 4096, DMA_TO_DEVICE));
    dmaUnmapPhys(dev, a, 4096, DMA_FROM_DEVICE);
    expect(checks(m)).toEqual(['unmap-not-allocated']);
    expect(m.dmaDebug.count(dev)).toBe(2);
    dmaUnmapPhys(dev, a, 4096, DMA_TO_DEVICE);
    dmaUnmapPhys(dev, a, 4096, DMA_TO_DEVICE);
    expect(msgs(m)).toHaveLength(1);
    expect(m.dmaDebug.count(dev)).toBe(0);
  });
});

describe('12. output policy (was: every error printed)', () => {
  const misuse = (m: Machine, name: string): void => dmaUnmapPhys(m.device(name), 0x1234000n, 4096, DMA_TO_DEVICE);

  it('by default the first error is printed and every error counted (all_errors=0, num_errors=1)', () => {
    const m = smallMachine();
    misuse(m, 'nvme0');
    misuse(m, 'nvme0');
    misuse(m, 'tb0');
    expect(m.events.count('DMA-DEBUG')).toBe(1);
    expect(m.dmaDebug.errorCount).toBe(3);
    expect(m.dmaDebug.numErrors).toBe(0);
  });

  it('allErrors prints all; numErrors prints that many', () => {
    const all = smallMachine({ dmaDebug: { allErrors: true } });
    for (let i = 0; i < 3; i++) misuse(all, 'nvme0');
    expect(all.events.count('DMA-DEBUG')).toBe(3);
    const two = smallMachine({ dmaDebug: { numErrors: 2 } });
    for (let i = 0; i < 3; i++) misuse(two, 'nvme0');
    expect(two.events.count('DMA-DEBUG')).toBe(2);
    expect(two.dmaDebug.errorCount).toBe(3);
  });

  it('the driver filter hides other drivers\' errors; a hidden error still uses up num_errors, as err_printk does', () => {
    const all = smallMachine({ dmaDebug: { allErrors: true, driverFilter: 'mlx5_core' } });
    deviceBindDriver(all.device('nvme0'), 'nvme');
    deviceBindDriver(all.device('tb0'), 'mlx5_core');
    misuse(all, 'nvme0');
    misuse(all, 'tb0');
    expect(msgs(all)).toEqual([expect.stringMatching(/^DMA-API: mlx5_core 0000:02:00\.0: device driver tries to free DMA memory it has not allocated/)]);
    const first = smallMachine({ dmaDebug: { driverFilter: 'mlx5_core' } });
    deviceBindDriver(first.device('tb0'), 'mlx5_core');
    misuse(first, 'nvme0');
    misuse(first, 'tb0');
    expect(first.events.count('DMA-DEBUG')).toBe(0);
    expect(first.dmaDebug.errorCount).toBe(2);
    // debugfs driver_filter: the first token; a leading non-alphanumeric switches it off
    all.dmaDebug.driverFilter = 'nvme0 tb0';
    expect(all.dmaDebug.driverFilter).toBe('nvme0');
    all.dmaDebug.driverFilter = ' nvme0';
    expect(all.dmaDebug.driverFilter).toBe('');
  });

  it('driver_filter() compares the bound driver\'s name: not the device\'s short name, never a device without a driver', () => {
    const m = smallMachine({ dmaDebug: { allErrors: true, driverFilter: 'nvme0' } });
    deviceBindDriver(m.device('nvme0'), 'nvme');
    misuse(m, 'nvme0');
    expect(m.events.count('DMA-DEBUG')).toBe(0);
    m.dmaDebug.driverFilter = 'nvme';
    misuse(m, 'nvme0');
    expect(msgs(m)).toEqual([expect.stringMatching(/^DMA-API: nvme 0000:01:00\.0: device driver tries to free/)]);
    // tb0 has no driver: dev_driver_string() is the bus name, but the filter needs dev->driver
    m.dmaDebug.driverFilter = 'pci';
    misuse(m, 'tb0');
    expect(m.events.count('DMA-DEBUG')).toBe(1);
    m.dmaDebug.driverFilter = '';
    misuse(m, 'tb0');
    expect(msgs(m)[1]).toMatch(/^DMA-API: pci 0000:02:00\.0: device driver tries to free DMA memory it has not allocated/);
    // the leak report comes after unbind cleared dev->driver: a filter hides it, error_count counts it
    m.dmaDebug.driverFilter = 'nvme';
    const a = dmaMapPhys(m.device('nvme0'), ramAt(m, 0n, MiB), 4096, DMA_TO_DEVICE);
    expect(a.ok).toBe(true);
    const before = m.dmaDebug.errorCount;
    expect(m.teardown()).toBe(1);
    expect(m.device('nvme0').driver).toBeNull();
    expect(m.events.count('DMA-DEBUG')).toBe(2);
    expect(m.dmaDebug.errorCount).toBe(before + 1);
  });

  it('machine options are validated, naming the field', () => {
    const base = { ramBytes: GiB };
    expect(() => createMachine({ ...base, dmaDebug: 5 as never })).toThrow(/config\.dmaDebug must be an object, got number/);
    expect(() => createMachine({ ...base, dmaDebug: { allErrors: 'yes' as never } })).toThrow(/config\.dmaDebug\.allErrors must be a boolean/);
    expect(() => createMachine({ ...base, dmaDebug: { numErrors: -1 } })).toThrow(/config\.dmaDebug\.numErrors must be an integer/);
    expect(() => createMachine({ ...base, dmaDebug: { driverFilter: 3 as never } })).toThrow(/config\.dmaDebug\.driverFilter must be a string/);
    expect(() => createMachine({ ...base, dmaDebug: { bogus: 1 } as never })).toThrow(/config\.dmaDebug\.bogus is not an option/);
    expect(() => createMachine({ ...base, arch: { dmaCacheAlignment: 48 } })).toThrow(/config\.arch\.dmaCacheAlignment must be a power of two/);
    expect(() => createMachine({ ...base, arch: { bounceUnalignedKmalloc: 1 as never } })).toThrow(/config\.arch\.bounceUnalignedKmalloc must be a boolean/);
    expect(createMachine({ ...base, dmaDebug: { enabled: false } }).dmaDebug.enabled).toBe(false);
  });
});

describe('13. cacheline tracking (was: none)', () => {
  const ARM64_NO_BOUNCE: Partial<MachineConfig> = { arch: { dmaCacheAlignment: 64 } };
  /** Maps [p, p + 32) then [p + 32, p + 64): two mappings of one cacheline. */
  function twoInOneLine(over: Partial<MachineConfig>, dir1: number, dir2: number, attrs1 = 0, attrs2 = 0): Machine {
    const { m, dev } = direct(over);
    const p = ramAt(m, HIGH, MiB);
    checked(dmaMapPhys(dev, p, 32, dir1, attrs1));
    checked(dmaMapPhys(dev, p + 32n, 32, dir2, attrs2));
    return m;
  }
  const EEXIST = 'DMA-API: nvme 0000:01:00.0: cacheline tracking EEXIST, overlapping mappings aren\'t supported';

  it('reported where dma_get_cache_alignment() >= L1_CACHE_BYTES (arm64 without kmalloc bouncing), not on x86-64', () => {
    expect(msgs(twoInOneLine(ARM64_NO_BOUNCE, DMA_FROM_DEVICE, DMA_FROM_DEVICE))).toEqual([EEXIST]);
    expect(msgs(twoInOneLine({}, DMA_FROM_DEVICE, DMA_FROM_DEVICE))).toEqual([]);
    // arm64 with kmalloc bouncing: not while the device's swiotlb is active
    expect(msgs(twoInOneLine({ arch: { dmaCacheAlignment: 64, bounceUnalignedKmalloc: true } }, DMA_FROM_DEVICE, DMA_FROM_DEVICE))).toEqual([]);
    expect(msgs(twoInOneLine({ arch: { dmaCacheAlignment: 64, bounceUnalignedKmalloc: true }, swiotlb: false }, DMA_FROM_DEVICE, DMA_FROM_DEVICE)))
      .toEqual([EEXIST]);
  });

  it('not for TO_DEVICE mappings, DMA_ATTR_SKIP_CPU_SYNC, or when both are DEBUGGING_IGNORE_CACHELINES / REQUIRE_COHERENT', () => {
    expect(msgs(twoInOneLine(ARM64_NO_BOUNCE, DMA_TO_DEVICE, DMA_FROM_DEVICE))).toEqual([]);
    expect(msgs(twoInOneLine(ARM64_NO_BOUNCE, DMA_FROM_DEVICE, DMA_TO_DEVICE))).toEqual([]);
    expect(msgs(twoInOneLine(ARM64_NO_BOUNCE, DMA_FROM_DEVICE, DMA_BIDIRECTIONAL, 0, DMA_ATTR_SKIP_CPU_SYNC))).toEqual([]);
    const IGN = DMA_ATTR_DEBUGGING_IGNORE_CACHELINES;
    expect(msgs(twoInOneLine(ARM64_NO_BOUNCE, DMA_FROM_DEVICE, DMA_FROM_DEVICE, IGN, IGN))).toEqual([]);
    expect(msgs(twoInOneLine(ARM64_NO_BOUNCE, DMA_FROM_DEVICE, DMA_FROM_DEVICE, DMA_ATTR_REQUIRE_COHERENT, DMA_ATTR_REQUIRE_COHERENT))).toEqual([]);
    expect(msgs(twoInOneLine(ARM64_NO_BOUNCE, DMA_FROM_DEVICE, DMA_FROM_DEVICE, 0, IGN))).toEqual([EEXIST]);
  });

  it('unmaps balance maps: a line mapped again after both unmaps is free; past 7 overlaps one WARN_ONCE on any arch', () => {
    const { m, dev } = direct(ARM64_NO_BOUNCE);
    const p = ramAt(m, HIGH, MiB);
    const a = checked(dmaMapPhys(dev, p, 32, DMA_FROM_DEVICE));
    const b = checked(dmaMapPhys(dev, p + 32n, 32, DMA_FROM_DEVICE));
    dmaUnmapPhys(dev, a, 32, DMA_FROM_DEVICE);
    dmaUnmapPhys(dev, b, 32, DMA_FROM_DEVICE);
    checked(dmaMapPhys(dev, p, 64, DMA_FROM_DEVICE));
    expect(msgs(m)).toEqual([EEXIST]);
    const x86 = direct();
    const q = ramAt(x86.m, HIGH, MiB);
    for (let i = 0; i < 10; i++) checked(dmaMapPhys(x86.dev, q, 64, DMA_FROM_DEVICE));
    expect(x86.m.events.list('WARN').map((e) => e.message)).toEqual([
      `DMA-API: exceeded 7 overlapping mappings of cacheline 0x${(q >> 6n).toString(16).padStart(16, '0')}`,
    ]);
    expect(msgs(x86.m)).toEqual([]);
  });
});

describe('14. what no kernel checks is a MODEL-CHECK, not DMA-DEBUG (was: reported "as dma-debug would")', () => {
  it('CPU stores into a bounced buffer the device owns: MODEL-CHECK from source model-check', () => {
    const { m, dev } = direct({ swiotlb: { bytes: 4 * MiB, force: true } });
    const p = ramAt(m, HIGH, MiB);
    const a = checked(dmaMapPhys(dev, p, 4096, DMA_BIDIRECTIONAL));
    m.mem.write(p + 8n, new Uint8Array([1]));
    expect(m.events.list('MODEL-CHECK').map((e) => [e.source, e.data?.check])).toEqual([['model-check', 'cpu-write']]);
    expect(msgs(m)).toEqual([]);
    dmaUnmapPhys(dev, a, 4096, DMA_BIDIRECTIONAL);
  });

  it('two-step misuse and leaked links are MODEL-CHECKs; a dma_sync_single on a linked IOVA is the kernel\'s "not allocated"', () => {
    const { m, dev } = behindIommu();
    const p = ramAt(m, HIGH, MiB);
    const st = new DmaIovaState();
    expect(dmaIovaTryAlloc(dev, st, p, 8192)).toBe(true);
    expect(dmaIovaLink(dev, st, p, 0, 8192, DMA_TO_DEVICE, 0).ok).toBe(true);
    expect(dmaIovaSync(dev, st, 0, 8192).ok).toBe(true);
    expect(m.dmaDebug.entries(dev).map((e) => [e.type, e.trackedBy])).toEqual([['iova-link', 'model-check']]);
    dmaSyncSingleForCpu(dev, st.addr, 4096, DMA_TO_DEVICE);
    expect(checks(m)).toEqual(['sync-not-allocated']);
    expect(m.teardown()).toBe(1);
    expect(m.events.list('MODEL-CHECK').map((e) => e.data?.check)).toEqual(['iova-leak']);
    dmaIovaDestroy(dev, st, 8192, DMA_FROM_DEVICE, 0);
    expect(m.events.list('MODEL-CHECK').map((e) => e.data?.check)).toEqual(['iova-leak', 'iova-unlink-direction']);
    expect(checks(m)).toEqual(['sync-not-allocated']);
    expect(m.teardown()).toBe(0);
  });
});

describe('dma_map_resource of RAM and the listing API', () => {
  it('DMA_ATTR_MMIO on RAM with a struct page: "dma_map_resource called for RAM address"', () => {
    const { m, dev } = direct();
    const p = ramAt(m, HIGH, MiB);
    const a = checked(dmaMapPhys(dev, p, 4096, DMA_TO_DEVICE, DMA_ATTR_MMIO));
    expect(msgs(m)).toEqual([`DMA-API: nvme 0000:01:00.0: dma_map_resource called for RAM address 0x${p.toString(16).padStart(16, '0')}`]);
    dmaUnmapPhys(dev, a, 4096, DMA_TO_DEVICE, DMA_ATTR_MMIO);
  });

  it('entries(dev) lists type, device address, length, direction and phys of every tracked mapping', () => {
    const { m, dev } = direct();
    const p = ramAt(m, HIGH, MiB);
    const a = checked(dmaMapPhys(dev, p, 4096, DMA_FROM_DEVICE));
    const t = sgAllocTableFromPagesSegment([(p >> 12n) + 4n], 0, 4096, 0xfffff000);
    if (!t.ok) throw new Error('sg');
    dmaMapSgtable(dev, t.value, DMA_TO_DEVICE);
    const list = m.dmaDebug.entries(dev).map(({ type, devAddr, len, dir, phys, trackedBy }) => ({ type, devAddr, len, dir, phys, trackedBy }));
    expect(list).toEqual([
      { type: 'phy', devAddr: a, len: 4096, dir: DMA_FROM_DEVICE, phys: p, trackedBy: 'dma-debug' },
      { type: 'scatter-gather', devAddr: p + 0x4000n, len: 4096, dir: DMA_TO_DEVICE, phys: p + 0x4000n, trackedBy: 'dma-debug' },
    ]);
    expect(m.dmaDebug.entries(m.device('tb0'))).toEqual([]);
    expect(m.dmaDebug.count(dev)).toBe(2);
  });
});

describe('15. the 7.1.5 audit of kernel/dma/debug.c', () => {
  const h16 = (a: bigint): string => a.toString(16).padStart(16, '0');

  it('check_unmap: "different CPU address" prints each CPU address as "0x%pa", which reads 0x0x (was: one 0x)', () => {
    const { m, dev } = direct();
    dmaSetCoherentMask(dev, DMA_BIT_MASK(64));
    const r = dmaAllocCoherent(dev, 4096);
    if (!r.ok) throw new Error(r.errno);
    const { cpuPhys, dmaAddr } = r.value;
    dmaFreeCoherent(dev, 4096, cpuPhys + 4096n, dmaAddr);
    expect(msgs(m)).toEqual([
      `DMA-API: nvme 0000:01:00.0: device driver frees DMA memory with different CPU address [device address=0x${h16(dmaAddr)}] [size=4096 bytes] [cpu alloc address=0x0x${h16(cpuPhys)}] [cpu free address=0x0x${h16(cpuPhys + 4096n)}]`,
    ]);
  });

  it('debug_dma_free_coherent: a CPU address that is not valid (no struct page) is not checked; the entry stays and leaks (was: checked)', () => {
    const { m, dev } = direct();
    dmaSetCoherentMask(dev, DMA_BIT_MASK(64));
    const r = dmaAllocCoherent(dev, 4096);
    if (!r.ok) throw new Error(r.errno);
    const hole = 0xd000_0000n; // between the RAM below 4 GiB and the RAM above it
    expect(m.regionAt(hole)).toBeUndefined();
    dmaFreeCoherent(dev, 4096, hole, r.value.dmaAddr);
    expect(msgs(m)).toEqual([]);
    expect(m.dmaDebug.entries(dev).map((e) => e.type)).toEqual(['coherent']);
    expect(m.teardown()).toBe(1);
    // dma_debug_device_change() runs after the unbind cleared dev->driver: the bus name is printed
    expect(msgs(m)).toEqual([
      `DMA-API: pci 0000:01:00.0: device driver has pending DMA allocations while released from device [count=1] One of leaked entries details: [device address=0x${h16(r.value.dmaAddr)}] [size=4096 bytes] [mapped with DMA_BIDIRECTIONAL] [mapped as coherent]`,
    ]);
    // nothing allocated there: dma-debug did not look, so the model's own WARN says it
    dmaFreeCoherent(dev, 4096, hole, 0x1000n);
    expect(m.events.list('WARN').map((e) => e.message)).toEqual([
      'nvme0: dma_free_attrs of 0x1000 that is not a coherent allocation',
    ]);
  });

  it('debug_dma_map_phys: dma_map_resource of RAM that is PageReserved (a memblock allocation: the swiotlb pool) is not reported (was: reported)', () => {
    const { m, dev } = direct();
    const pool = m.swiotlb!.start;
    const a = checked(dmaMapPhys(dev, pool, 4096, DMA_TO_DEVICE, DMA_ATTR_MMIO));
    dmaUnmapPhys(dev, a, 4096, DMA_TO_DEVICE, DMA_ATTR_MMIO);
    expect(msgs(m)).toEqual([]);
    // the page below the pool is ordinary RAM: reported
    const below = pool - 4096n;
    checked(dmaMapPhys(dev, below, 4096, DMA_TO_DEVICE, DMA_ATTR_MMIO));
    expect(msgs(m)).toEqual([`DMA-API: nvme 0000:01:00.0: dma_map_resource called for RAM address 0x${h16(below)}`]);
  });
});

describe('16. err_printk() names the driver and dev_name() (was: the short device name; no drivers)', () => {
  const nodes: PciNodeConfig[] = [
    { name: 'hb0', type: 'host-bridge', vendor: 0x8086, device: 0x2030 },
    { name: 'rp0', type: 'root-port', parent: 'hb0' },
    { name: 'nvme0', type: 'endpoint', parent: 'rp0' },
    { name: 'rp1', type: 'root-port', parent: 'hb0' },
    { name: 'nic0', type: 'endpoint', parent: 'rp1' },
    { name: 'rp2', type: 'root-port', parent: 'hb0' },
    { name: 'gpu0', type: 'endpoint', parent: 'rp2', bars: [{ bytes: MiB, p2p: true }] },
    { name: 'rp3', type: 'root-port', parent: 'hb0' },
    { name: 'hba0', type: 'endpoint', parent: 'rp3' },
  ];
  const controller = (namespaces: number): NvmeControllerPort => ({
    identify: { sgls: true, mdts: 0, namespaces: Array.from({ length: namespaces }, (_, i) => ({ nsid: i + 1, nsze: 1 << 11, lbaBytes: 512 })) },
    execute: () => ({ status: 0 }),
    readBlocks: (_nsid, _slba, nlb) => new Uint8Array(nlb * 512),
  });
  /** unmap of something never mapped: one report naming the device as err_printk() does. */
  const misuse = (m: Machine, name: string): string => {
    const n = m.events.count('DMA-DEBUG');
    dmaUnmapPhys(m.device(name), 0x1234000n, 4096, DMA_TO_DEVICE);
    const got = m.events.list('DMA-DEBUG').slice(n).map((e) => e.message);
    expect(got).toHaveLength(1);
    return got[0].replace(/ device driver tries to free DMA memory it has not allocated.*$/, '');
  };

  it('each model driver binds its kernel driver name at probe and lets go at remove', () => {
    const m = createMachine({ ramBytes: GiB, seed: 1, dmaDebug: { allErrors: true }, pci: nodes });
    expect(['nvme0', 'nic0', 'gpu0', 'hba0'].map((n) => misuse(m, n))).toEqual([
      'DMA-API: pci 0000:01:00.0:', 'DMA-API: pci 0000:02:00.0:', 'DMA-API: pci 0000:03:00.0:', 'DMA-API: pci 0000:04:00.0:',
    ]);
    const nvme = unwrap(nvmeProbe(m.device('nvme0'), { controller: controller(1) }));
    const nic = unwrap(rdmaProbe(m.device('nic0')));
    const gpu = unwrap(gpuProbe(m.device('gpu0')));
    const hba = unwrap(hbaSetup(m.device('hba0')));
    expect(['nvme0', 'nic0', 'gpu0', 'hba0'].map((n) => misuse(m, n))).toEqual([
      'DMA-API: nvme 0000:01:00.0:', 'DMA-API: mlx5_core 0000:02:00.0:', 'DMA-API: amdgpu 0000:03:00.0:', 'DMA-API: phyr-hba 0000:04:00.0:',
    ]);
    // a device driven already keeps its driver: the GPU's BAR exported through VFIO is still amdgpu's
    unwrap(vfioPciDmabufExport(m.device('gpu0'), { bar: 0, offset: 0, len: 4096 }));
    expect(m.device('gpu0').driver).toBe(GPU_DRIVER_NAME);
    nvmeRemove(nvme);
    unwrap(rdmaRemove(nic));
    gpuRemove(gpu);
    hba.destroy();
    expect(['nvme0', 'nic0', 'gpu0', 'hba0'].map((n) => m.device(n).driver)).toEqual([null, null, null, null]);
    expect(misuse(m, 'nvme0')).toBe('DMA-API: pci 0000:01:00.0:');
    unwrap(vfioPciDmabufExport(m.device('gpu0'), { bar: 0, offset: 0, len: 4096 }));
    expect(misuse(m, 'gpu0')).toBe(`DMA-API: ${VFIO_PCI_DRIVER_NAME} 0000:03:00.0:`);
    expect([NVME_DRIVER_NAME, RDMA_DRIVER_NAME, HBA_DRIVER_NAME]).toEqual(['nvme', 'mlx5_core', 'phyr-hba']);
  });

  it('a probe that fails leaves the device without a driver (really_probe() unbinds)', () => {
    const m = createMachine({ ramBytes: GiB, seed: 1, pci: nodes });
    const r = nvmeProbe(m.device('nvme0'), { controller: controller(0) });
    expect(r.ok ? 'ok' : r.errno).toBe('ENODEV');
    expect(m.device('nvme0').driver).toBeNull();
    expect(devDriverString(m.device('nvme0'))).toBe('pci');
  });

  it('a device outside the PCI tree is a platform device: "platform <name>" until a driver binds it', () => {
    const m = createMachine({ ramBytes: GiB, seed: 1, dmaDebug: { allErrors: true } });
    const dev = m.addDevice(new Device('dmac0'));
    expect(misuse(m, 'dmac0')).toBe('DMA-API: platform dmac0:');
    deviceBindDriver(dev, 'pl330');
    expect(misuse(m, 'dmac0')).toBe('DMA-API: pl330 dmac0:');
  });
});
