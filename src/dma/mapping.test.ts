import { describe, expect, it } from 'vitest';
import { GiB, KiB, MiB, KernelBug } from '../base/index.ts';
import { Device } from '../pci/index.ts';
import { SgAppendTable, sgAllocTableFromPagesSegment } from '../phyr/index.ts';
import {
  DMA_ATTR_MMIO, DMA_ATTR_REQUIRE_COHERENT, DMA_ATTR_SKIP_CPU_SYNC, DMA_BIDIRECTIONAL, DMA_BIT_MASK,
  DMA_FROM_DEVICE, DMA_MAPPING_ERROR, DMA_NONE, DMA_TO_DEVICE, SIZE_MAX,
} from './constants.ts';
import {
  dmaGetMergeBoundary, dmaMapPage, dmaMapPhys, dmaMapResource, dmaMapSgtable, dmaMappingError, dmaMaxMappingSize,
  dmaNeedSync, dmaNeedUnmap, dmaOptMappingSize, dmaSyncSingleForCpu, dmaSyncSingleForDevice, dmaUnmapPhys,
  dmaUnmapSgtable,
} from './mapping.ts';
import { dmaSetMask, dmaSetMinAlignMask } from './mask.ts';
import { physToDma, dmaToPhys } from './direct-addr.ts';
import { debugDmaCheckCpuWrite } from './debug.ts';
import { pattern, ramAt, smallMachine } from '../../test/fixtures/dma-machines.ts';
import { GART_BASE, OPS_NODES } from '../../test/fixtures/dma-ops-machines.ts';
import { createMachine } from '../machine/index.ts';

const HIGH = 1n << 32n;

/** The device writes `bytes` at a DMA address; the CPU reads them back at phys after unmap. */
function deviceWrites(dev: Device, addr: bigint, bytes: Uint8Array): void {
  const r = dev.dmaWrite(addr, bytes);
  expect(r.ok).toBe(true);
}
function deviceReads(dev: Device, addr: bigint, len: number): Uint8Array {
  const r = dev.dmaRead(addr, len);
  expect(r.ok).toBe(true);
  return r.ok ? r.value : new Uint8Array();
}

describe('dma-direct (kernel/dma/direct.h: dma_direct_map_phys; include/linux/dma-direct.h)', () => {
  it('64-bit device: identity translation, CPU->device and device->CPU bytes, no bounce, nothing logged', () => {
    const m = smallMachine();
    const dev = m.device('nvme0');
    dmaSetMask(dev, DMA_BIT_MASK(64));
    const phys = ramAt(m, HIGH, MiB) + 0x10n;
    const out = pattern(10000, 1);
    m.mem.write(phys, out);
    const r = dmaMapPhys(dev, phys, out.length, DMA_TO_DEVICE);
    expect(r).toEqual({ ok: true, value: phys });
    expect(deviceReads(dev, phys, out.length)).toEqual(out);
    dmaUnmapPhys(dev, phys, out.length, DMA_TO_DEVICE);
    const r2 = dmaMapPhys(dev, phys, 8192, DMA_FROM_DEVICE);
    const inb = pattern(8192, 2);
    deviceWrites(dev, r2.ok ? r2.value : 0n, inb);
    dmaUnmapPhys(dev, phys, 8192, DMA_FROM_DEVICE);
    expect(m.mem.read(phys, 8192)).toEqual(inb);
    expect(m.stats.swiotlbMaps).toBe(0);
    expect(m.events.total).toBe(0);
    expect(m.teardown()).toBe(0);
  });

  it('translates through dma_range_map (bus offsets) and back', () => {
    const m = smallMachine();
    const dev = m.addDevice(new Device('plat0'));
    dev.dmaMask = DMA_BIT_MASK(64);
    const ram = m.regions.filter((r) => r.kind === 'ram');
    dev.dmaRangeMap = [
      { cpuStart: ram[0].start, dmaStart: 0x8000_0000_0000n, len: ram[0].len },
      { cpuStart: ram[1].start, dmaStart: 0x1000_0000_0000n, len: ram[1].len },
    ];
    const table: Array<[bigint, bigint]> = [
      [ram[0].start, 0x8000_0000_0000n], [ram[0].start + 0x1234n, 0x8000_0000_1234n],
      [ram[1].start + 0x5000n, 0x1000_0000_5000n], [ram[1].end - 1n, 0x1000_0000_0000n + BigInt(ram[1].len) - 1n],
    ];
    for (const [p, d] of table) {
      expect(physToDma(dev, p)).toBe(d);
      expect(dmaToPhys(dev, d)).toBe(p);
    }
    expect(physToDma(dev, 0n)).toBe(DMA_MAPPING_ERROR); // below RAM: not reachable
    const phys = ram[1].start + 0x5000n;
    const data = pattern(4096, 3);
    m.mem.write(phys, data);
    const r = dmaMapPhys(dev, phys, 4096, DMA_BIDIRECTIONAL);
    expect(r).toEqual({ ok: true, value: 0x1000_0000_5000n });
    expect(deviceReads(dev, 0x1000_0000_5000n, 4096)).toEqual(data);
    dmaUnmapPhys(dev, 0x1000_0000_5000n, 4096, DMA_BIDIRECTIONAL);
    expect(m.events.count('DMA-DEBUG')).toBe(0);
  });

  it('beyond the 32-bit mask: falls back to swiotlb, bytes still round-trip both ways', () => {
    const m = smallMachine();
    const dev = m.device('nvme0');
    const phys = ramAt(m, HIGH, MiB) + 0x200n;
    const out = pattern(6000, 4);
    m.mem.write(phys, out);
    const r = dmaMapPhys(dev, phys, 6000, DMA_BIDIRECTIONAL);
    expect(r.ok).toBe(true);
    const addr = r.ok ? r.value : 0n;
    expect(addr < HIGH).toBe(true);
    expect(addr).not.toBe(phys);
    expect(deviceReads(dev, addr, 6000)).toEqual(out);
    const inb = pattern(6000, 5);
    deviceWrites(dev, addr, inb);
    expect(m.mem.read(phys, 6000)).toEqual(out); // not yet copied back
    dmaSyncSingleForCpu(dev, addr, 6000, DMA_BIDIRECTIONAL);
    expect(m.mem.read(phys, 6000)).toEqual(inb);
    dmaSyncSingleForDevice(dev, addr, 6000, DMA_BIDIRECTIONAL);
    dmaUnmapPhys(dev, addr, 6000, DMA_BIDIRECTIONAL);
    expect(m.swiotlb!.used).toBe(0);
    expect(m.events.count('DMA-DEBUG')).toBe(0);
    expect(m.teardown()).toBe(0);
  });

  it('beyond the mask without swiotlb: ENOMEM (DMA_MAPPING_ERROR) with an overflow WARN once per boot, nothing mapped', () => {
    const m = smallMachine({ swiotlb: false });
    const dev = m.device('nvme0');
    const phys = ramAt(m, HIGH, MiB);
    for (let i = 0; i < 3; i++) {
      const r = dmaMapPhys(dev, phys + BigInt(i * 4096), 4096, DMA_TO_DEVICE);
      expect(r.ok ? 'ok' : r.errno).toBe('ENOMEM');
    }
    // err_overflow is a dev_WARN_ONCE (kernel/dma/direct.h)
    expect(m.events.list('WARN', 'dma-direct').map((e) => e.message)).toEqual([expect.stringMatching(/overflow/)]);
    expect(dmaMappingError(dev, DMA_MAPPING_ERROR)).toEqual({ ok: false, errno: 'ENOMEM' });
    expect(m.dmaDebug.count(dev)).toBe(0);
  });

  it('force bounce (CoCo guest): every mapping bounces, MMIO is refused', () => {
    const m = smallMachine({ swiotlb: { bytes: 4 * MiB, force: true } });
    const dev = m.device('nvme0');
    dmaSetMask(dev, DMA_BIT_MASK(64));
    const phys = ramAt(m, 0n, MiB) + 0x40n;
    const data = pattern(3000, 6);
    m.mem.write(phys, data);
    const r = dmaMapPhys(dev, phys, 3000, DMA_TO_DEVICE);
    const addr = r.ok ? r.value : 0n;
    expect(m.swiotlb!.contains(addr)).toBe(true);
    expect(deviceReads(dev, addr, 3000)).toEqual(data);
    dmaUnmapPhys(dev, addr, 3000, DMA_TO_DEVICE);
    const bar = m.regions.find((x) => x.kind === 'device')!;
    const mm = dmaMapPhys(dev, bar.start, 4096, DMA_TO_DEVICE, DMA_ATTR_MMIO);
    expect(mm.ok).toBe(false);
    expect(m.swiotlb!.used).toBe(0);
  });

  it('MMIO is never translated or bounced; beyond the mask it fails', () => {
    const m = smallMachine();
    const dev = m.device('nvme0');
    dmaSetMask(dev, DMA_BIT_MASK(64));
    const bar = m.regions.find((x) => x.kind === 'device')!;
    const r = dmaMapResource(dev, bar.start, 4096, DMA_BIDIRECTIONAL);
    expect(r).toEqual({ ok: true, value: bar.start });
    dmaUnmapPhys(dev, bar.start, 4096, DMA_BIDIRECTIONAL, DMA_ATTR_MMIO);
    dmaSetMask(dev, DMA_BIT_MASK(32));
    if (bar.start >= HIGH) {
      const r2 = dmaMapResource(dev, bar.start, 4096, DMA_BIDIRECTIONAL);
      expect(r2.ok).toBe(false);
      expect(m.swiotlb!.used).toBe(0);
    }
  });

  it('dma_map_resource of RAM maps it as MMIO (7.1 dropped the pfn_valid refusal); dma-debug reports it', () => {
    for (const enabled of [true, false]) {
      const m = smallMachine({ dmaDebug: { enabled } });
      const dev = m.device('nvme0');
      dmaSetMask(dev, DMA_BIT_MASK(64));
      dev.dmaCoherent = false;
      const ram = ramAt(m, 0n, MiB);
      const r = dmaMapResource(dev, ram, 4096, DMA_TO_DEVICE);
      expect(r).toEqual({ ok: true, value: ram });
      expect(m.events.count('WARN')).toBe(0);
      expect(m.events.count('CACHE')).toBe(0); // MMIO: no cache maintenance
      expect(m.stats.swiotlbMaps).toBe(0);
      const reports = m.events.list('DMA-DEBUG').map((e) => e.message);
      if (enabled) expect(reports).toEqual([expect.stringMatching(/dma_map_resource called for RAM address 0x/)]);
      else expect(reports).toEqual([]);
      dmaUnmapPhys(dev, ram, 4096, DMA_TO_DEVICE, DMA_ATTR_MMIO);
      expect(m.teardown()).toBe(0);
    }
  });

  it('non-coherent device: cache maintenance events at map, sync and unmap; none with SKIP_CPU_SYNC', () => {
    const m = smallMachine();
    const dev = m.device('nvme0');
    dmaSetMask(dev, DMA_BIT_MASK(64));
    dev.dmaCoherent = false;
    const phys = ramAt(m, HIGH, MiB);
    const r = dmaMapPhys(dev, phys, 4096, DMA_FROM_DEVICE);
    const addr = r.ok ? r.value : 0n;
    dmaSyncSingleForCpu(dev, addr, 4096, DMA_FROM_DEVICE);
    dmaSyncSingleForDevice(dev, addr, 4096, DMA_FROM_DEVICE);
    dmaUnmapPhys(dev, addr, 4096, DMA_FROM_DEVICE);
    const ev = m.events.list('CACHE').map((e) => `${e.data!.fn}:${e.data!.op}`);
    expect(ev).toEqual([
      // arm64 cleans before the device runs whatever the direction, invalidates after
      'arch_sync_dma_for_device:clean', 'arch_sync_dma_for_cpu:invalidate',
      'arch_sync_dma_for_device:clean', 'arch_sync_dma_for_cpu:invalidate',
    ]);
    expect(m.stats.cacheMaintenanceOps).toBe(4);
    const r2 = dmaMapPhys(dev, phys, 4096, DMA_TO_DEVICE, DMA_ATTR_SKIP_CPU_SYNC);
    dmaUnmapPhys(dev, r2.ok ? r2.value : 0n, 4096, DMA_TO_DEVICE, DMA_ATTR_SKIP_CPU_SYNC);
    expect(m.stats.cacheMaintenanceOps).toBe(4);
    expect(dmaMapPhys(dev, phys, 4096, DMA_TO_DEVICE, DMA_ATTR_REQUIRE_COHERENT).ok).toBe(false);
  });

  it('dma_map_page rejects MMIO attrs; zero length and an invalid direction are refused', () => {
    const m = smallMachine();
    const dev = m.device('nvme0');
    const pfn = ramAt(m, 0n, MiB) >> 12n;
    expect(dmaMapPage(dev, pfn, 0, 4096, DMA_TO_DEVICE, DMA_ATTR_MMIO).ok).toBe(false);
    const z = dmaMapPhys(dev, pfn << 12n, 0, DMA_TO_DEVICE);
    expect(z.ok ? 'ok' : z.errno).toBe('ENOMEM');
    expect(() => dmaMapPhys(dev, pfn << 12n, 4096, DMA_NONE)).toThrow(KernelBug);
    expect(() => dmaMapPhys(dev, pfn << 12n, 4096, 7)).toThrow(KernelBug);
    expect(m.events.count('BUG')).toBe(2);
    expect(() => dmaMapPhys(dev, -1n, 4096, DMA_TO_DEVICE)).toThrow(/phys must be >= 0, got -1n/);
    expect(m.dmaDebug.count()).toBe(0);
  });
});

describe('dma_map_page_attrs and ZONE_DEVICE pages (kernel/dma/mapping.c)', () => {
  it('refused with a WARN_ON_ONCE only on a dma-debug kernel; mapped like any page without it', () => {
    for (const enabled of [true, false]) {
      const m = createMachine({ ramBytes: 4 * GiB, seed: 1, pci: OPS_NODES, swiotlb: { bytes: 4 * MiB }, dmaDebug: { enabled } });
      const dev = m.device('nic0');
      dmaSetMask(dev, DMA_BIT_MASK(64));
      const bar = m.regions.find((r) => r.name === 'gpu0.bar0')!;
      expect(bar.pgmapId).not.toBe(0);
      const pfn = bar.start >> 12n;
      const results = [dmaMapPage(dev, pfn, 0, 4096, DMA_TO_DEVICE), dmaMapPage(dev, pfn + 1n, 0, 4096, DMA_TO_DEVICE)];
      if (enabled) {
        expect(results.map((r) => (r.ok ? 'ok' : r.errno))).toEqual(['ENOMEM', 'ENOMEM']);
        expect(m.events.list('WARN').map((e) => e.message)).toEqual([expect.stringMatching(/WARN_ON_ONCE\(is_zone_device_page\(page\)\)/)]);
      } else {
        expect(results).toEqual([{ ok: true, value: bar.start }, { ok: true, value: bar.start + 4096n }]);
        expect(m.events.count('WARN')).toBe(0);
      }
    }
  });
});

describe('dma_need_unmap / dma_need_sync truth table (kernel/dma/mapping.c)', () => {
  it('production kernel (dma-debug off), coherent direct: neither until the first bounce, then both; non-coherent: both', () => {
    const m = smallMachine({ dmaDebug: { enabled: false } });
    const dev = m.device('nvme0');
    expect(dev.dmaSkipSync).toBe(true);
    expect(dmaNeedUnmap(dev)).toBe(false);
    const low = ramAt(m, 0n, MiB);
    expect(dmaNeedSync(dev, low)).toBe(false);
    const keep = dmaMapPhys(dev, low, 4096, DMA_TO_DEVICE);
    expect(keep.ok).toBe(true);
    const r = dmaMapPhys(dev, ramAt(m, HIGH, MiB), 4096, DMA_TO_DEVICE); // bounces
    expect(dev.dmaSkipSync).toBe(false);
    expect(dmaNeedUnmap(dev)).toBe(true);
    const addr = r.ok ? r.value : 0n;
    expect(dmaNeedSync(dev, addr)).toBe(true);
    expect(dmaNeedSync(dev, low)).toBe(false); // coherent, not a bounce buffer
    dmaUnmapPhys(dev, addr, 4096, DMA_TO_DEVICE);
    const dev2 = m.device('tb0');
    dev2.dmaCoherent = false;
    dmaSetMask(dev2, DMA_BIT_MASK(64)); // dma_setup_need_sync
    expect(dmaNeedUnmap(dev2)).toBe(true);
    expect(dmaNeedSync(dev2, low)).toBe(true);
  });
  it('dma-debug kernel: dma_need_unmap() is true even for a coherent direct device, so a dropped mapping is a leak', () => {
    const m = smallMachine();
    const dev = m.device('nvme0');
    expect(dev.dmaSkipSync).toBe(true);
    expect(dmaNeedUnmap(dev)).toBe(true); // IS_ENABLED(CONFIG_DMA_API_DEBUG)
    const low = ramAt(m, 0n, MiB);
    expect(dmaNeedSync(dev, low)).toBe(false); // __dma_need_sync: coherent, not a bounce buffer
    // dma_dev_need_sync() ignores dma_skip_sync on a debug kernel: a device that is not direct asks
    // nothing more (__dma_need_sync is true), here one behind GART dma_map_ops with no sync callbacks
    for (const enabled of [true, false]) {
      const g = createMachine({
        ramBytes: 6 * GiB, seed: 1, pci: OPS_NODES, swiotlb: { bytes: 4 * MiB }, dmaDebug: { enabled },
        dmaOps: { kind: 'gart', busBase: GART_BASE, pages: 16, force: true },
      });
      const gd = g.device('nic0');
      expect(gd.dmaSkipSync).toBe(true);
      expect(dmaNeedSync(gd, GART_BASE)).toBe(enabled);
    }
    const keep = dmaMapPhys(dev, low, 4096, DMA_TO_DEVICE);
    expect(keep.ok).toBe(true);
    expect(m.teardown()).toBe(1);
    expect(m.events.list('DMA-DEBUG').at(-1)!.message).toMatch(/pending DMA allocations while released from device \[count=1\]/);
    dmaUnmapPhys(dev, keep.ok ? keep.value : 0n, 4096, DMA_TO_DEVICE);
    expect(m.teardown()).toBe(0);
  });
  it('the dma_sync_* wrappers return at once while dma_dev_need_sync() is false: no BUG_ON for a bad direction, no backend; the call still counts', () => {
    // include/linux/dma-mapping.h: dma_sync_single_for_cpu() tests dma_dev_need_sync() before
    // __dma_sync_single_for_cpu(), whose first act is BUG_ON(!valid_dma_direction(dir))
    const BAD_DIR = 7;
    const m = smallMachine({ dmaDebug: { enabled: false } });
    const dev = m.device('nvme0');
    const low = ramAt(m, 0n, MiB);
    const a = dmaMapPhys(dev, low, 4096, DMA_TO_DEVICE);
    expect(a.ok && dev.dmaSkipSync).toBe(true);
    const addr = a.ok ? a.value : 0n;
    const calls0 = m.stats.dmaSyncCalls;
    dmaSyncSingleForCpu(dev, addr, 4096, BAD_DIR);
    dmaSyncSingleForDevice(dev, addr, 4096, BAD_DIR);
    expect(m.events.list('BUG')).toHaveLength(0);
    expect(m.stats.dmaSyncCalls).toBe(calls0 + 2);
    // once the device bounced (dma_reset_need_sync), the same call reaches the BUG_ON
    const b = dmaMapPhys(dev, ramAt(m, HIGH, MiB), 4096, DMA_TO_DEVICE);
    expect(b.ok && !dev.dmaSkipSync).toBe(true);
    expect(() => dmaSyncSingleForCpu(dev, addr, 4096, BAD_DIR)).toThrow(KernelBug);
    // a debug kernel always calls through (IS_ENABLED(CONFIG_DMA_API_DEBUG))
    const md = smallMachine();
    const dd = md.device('nvme0');
    expect(dd.dmaSkipSync).toBe(true);
    const c = dmaMapPhys(dd, ramAt(md, 0n, MiB), 4096, DMA_TO_DEVICE);
    expect(() => dmaSyncSingleForDevice(dd, c.ok ? c.value : 0n, 4096, BAD_DIR)).toThrow(KernelBug);
  });
  it('mapping-size hints: unlimited direct, swiotlb max when addressing-limited, 252 KiB with min_align 4095', () => {
    const m = smallMachine();
    const dev = m.device('nvme0');
    expect(dmaMaxMappingSize(dev)).toBe(256 * KiB); // 32-bit device on 8 GiB: may bounce
    dmaSetMinAlignMask(dev, 4095);
    expect(dmaMaxMappingSize(dev)).toBe(252 * KiB);
    expect(dmaOptMappingSize(dev)).toBe(252 * KiB);
    dmaSetMask(dev, DMA_BIT_MASK(64));
    expect(dmaMaxMappingSize(dev)).toBe(SIZE_MAX);
    expect(dmaGetMergeBoundary(dev)).toBe(0n);
    const forced = smallMachine({ swiotlb: { force: true, bytes: MiB } }).device('nvme0');
    dmaSetMask(forced, DMA_BIT_MASK(64));
    expect(dmaMaxMappingSize(forced)).toBe(256 * KiB);
  });
});

describe('dma_map_sgtable on dma-direct (kernel/dma/mapping.c)', () => {
  it('nents == origNents, DMA addresses = phys, bytes move, unmap leaves nothing', () => {
    const m = smallMachine({ ramBytes: 2 * GiB });
    const dev = m.device('nvme0');
    const base = ramAt(m, 0n, 4 * MiB) >> 12n;
    const pfns = [base, base + 1n, base + 3n, base + 7n, base + 8n];
    const t = sgAllocTableFromPagesSegment(pfns, 0x100, 5 * 4096 - 0x200, 0xfffff000);
    expect(t.ok).toBe(true);
    if (!t.ok) return;
    const sgt = t.value;
    expect(sgt.origNents).toBe(3);
    const r = dmaMapSgtable(dev, sgt, DMA_FROM_DEVICE);
    expect(r.ok).toBe(true);
    expect(sgt.nents).toBe(sgt.origNents);
    let total = 0;
    for (let i = 0; i < sgt.nents; i++) {
      expect(sgt.dmaAddressAt(i)).toBe((sgt.pfnAt(i) << 12n) + BigInt(sgt.offsetAt(i)));
      expect(sgt.dmaLengthAt(i)).toBe(sgt.lengthAt(i));
      deviceWrites(dev, sgt.dmaAddressAt(i), pattern(sgt.dmaLengthAt(i), 40 + i));
      total += sgt.dmaLengthAt(i);
    }
    expect(total).toBe(5 * 4096 - 0x200);
    dmaUnmapSgtable(dev, sgt, DMA_FROM_DEVICE);
    for (let i = 0; i < sgt.nents; i++) {
      expect(m.mem.read((sgt.pfnAt(i) << 12n) + BigInt(sgt.offsetAt(i)), sgt.lengthAt(i))).toEqual(pattern(sgt.lengthAt(i), 40 + i));
    }
    expect(m.events.count('DMA-DEBUG')).toBe(0);
    expect(m.dmaDebug.count()).toBe(0);
  });
  it('an entry that cannot be mapped: EIO, and the entries before it are unmapped', () => {
    const m = smallMachine({ swiotlb: false });
    const dev = m.device('nvme0');
    const lo = ramAt(m, 0n, MiB) >> 12n;
    const hi = ramAt(m, HIGH, MiB) >> 12n;
    const t = sgAllocTableFromPagesSegment([lo, hi], 0, 8192, 0xfffff000);
    if (!t.ok) throw new Error('sg');
    const r = dmaMapSgtable(dev, t.value, DMA_TO_DEVICE);
    expect(r.ok ? 'ok' : r.errno).toBe('EIO');
    expect(m.dmaDebug.count()).toBe(0);
  });
});

describe('__dma_map_sg_attrs checks (kernel/dma/mapping.c)', () => {
  it('DMA_ATTR_REQUIRE_COHERENT on a non-coherent device: EOPNOTSUPP, nothing mapped, no cache maintenance', () => {
    const m = smallMachine();
    const dev = m.device('nvme0');
    dmaSetMask(dev, DMA_BIT_MASK(64));
    dev.dmaCoherent = false;
    const pfn = ramAt(m, HIGH, MiB) >> 12n;
    const t = sgAllocTableFromPagesSegment([pfn], 0, 4096, 0xfffff000);
    if (!t.ok) throw new Error('sg');
    const r = dmaMapSgtable(dev, t.value, DMA_TO_DEVICE, DMA_ATTR_REQUIRE_COHERENT);
    expect(r).toEqual({ ok: false, errno: 'EOPNOTSUPP', message: expect.stringMatching(/REQUIRE_COHERENT on nvme0/) });
    expect(m.dmaDebug.count()).toBe(0);
    expect(m.events.count('CACHE')).toBe(0);
    // the same attribute on a coherent device maps
    dev.dmaCoherent = true;
    expect(dmaMapSgtable(dev, t.value, DMA_TO_DEVICE, DMA_ATTR_REQUIRE_COHERENT).ok).toBe(true);
    dmaUnmapSgtable(dev, t.value, DMA_TO_DEVICE, DMA_ATTR_REQUIRE_COHERENT);
    expect(m.teardown()).toBe(0);
  });
  it('a device without dma_mask: dma_map_phys fails and dma_map_sgtable maps 0, each WARN_ON_ONCE once per boot', () => {
    const m = smallMachine();
    const dev = m.device('nvme0');
    dev.dmaMask = null;
    const pfn = ramAt(m, HIGH, MiB) >> 12n;
    for (let i = 0; i < 2; i++) {
      expect(dmaMapPhys(dev, pfn << 12n, 4096, DMA_TO_DEVICE).ok).toBe(false);
      const t = sgAllocTableFromPagesSegment([pfn], 0, 4096, 0xfffff000);
      expect(t.ok).toBe(true);
      if (!t.ok) return;
      expect(dmaMapSgtable(dev, t.value, DMA_TO_DEVICE)).toEqual({ ok: true, value: undefined });
      expect(t.value.nents).toBe(0);
    }
    expect(m.events.list('WARN').map((e) => e.message)).toEqual([
      'nvme0: dma_map_phys: WARN_ON_ONCE(!dev->dma_mask)', 'nvme0: dma_map_sgtable: WARN_ON_ONCE(!dev->dma_mask)',
    ]);
  });
  it('an empty table: dma_direct_map_sg returns 0, so WARN_ON_ONCE and EIO (one WARN per boot)', () => {
    const m = smallMachine();
    const dev = m.device('nvme0');
    const sgt = new SgAppendTable().sgt;
    expect(sgt.origNents).toBe(0);
    for (let i = 0; i < 2; i++) {
      const r = dmaMapSgtable(dev, sgt, DMA_TO_DEVICE);
      expect(r.ok ? 'ok' : r.errno).toBe('EIO');
    }
    expect(m.events.list('WARN').map((e) => e.message)).toEqual([expect.stringMatching(/dma_map_sgtable: WARN_ON_ONCE\(ents == 0\)/)]);
    expect(m.dmaDebug.count()).toBe(0);
  });
});

describe('dma-debug (kernel/dma/debug.c: check_unmap, check_sync)', () => {
  it('names each misuse as a debug kernel prints it (all_errors set); correct use is silent', () => {
    const m = smallMachine({ dmaDebug: { allErrors: true } });
    const dev = m.device('nvme0');
    dmaSetMask(dev, DMA_BIT_MASK(64));
    const phys = ramAt(m, HIGH, MiB);
    const msgs = (): string[] => m.events.list('DMA-DEBUG').map((e) => e.message);
    const a = dmaMapPhys(dev, phys, 4096, DMA_TO_DEVICE);
    const addr = a.ok ? a.value : 0n;
    dmaSyncSingleForCpu(dev, addr, 4096, DMA_TO_DEVICE);
    dmaSyncSingleForDevice(dev, addr, 4096, DMA_TO_DEVICE);
    dmaUnmapPhys(dev, addr, 4096, DMA_TO_DEVICE);
    expect(msgs()).toEqual([]);
    dmaUnmapPhys(dev, addr, 4096, DMA_TO_DEVICE); // double unmap
    expect(msgs()[0]).toMatch(/tries to free DMA memory it has not allocated \[device address=0x0*[0-9a-f]+\] \[size=4096 bytes\]/);
    dmaUnmapPhys(dev, 0x1234000n, 512, DMA_TO_DEVICE); // never mapped
    expect(msgs()).toHaveLength(2);
    const b = dmaMapPhys(dev, phys, 8192, DMA_FROM_DEVICE);
    const baddr = b.ok ? b.value : 0n;
    // past the end: no mapping contains it (containing_match), so check_sync stops at "not allocated"
    dmaSyncSingleForCpu(dev, baddr + 4096n, 8192, DMA_FROM_DEVICE);
    expect(msgs()).toHaveLength(3);
    expect(msgs()[2]).toMatch(/tries to sync DMA memory it has not allocated/);
    dmaSyncSingleForCpu(dev, baddr, 4096, DMA_TO_DEVICE);
    expect(msgs().slice(3)).toEqual([expect.stringMatching(/syncs DMA memory with different direction/)]);
    dmaSyncSingleForCpu(dev, 0x99990000n, 16, DMA_FROM_DEVICE);
    expect(msgs().at(-1)).toMatch(/tries to sync DMA memory it has not allocated/);
    const n = msgs().length;
    dmaUnmapPhys(dev, baddr, 4096, DMA_TO_DEVICE); // wrong size and direction
    expect(msgs().slice(n)).toEqual([
      expect.stringMatching(/frees DMA memory with different size .*\[map size=8192 bytes\] \[unmap size=4096 bytes\]/),
      expect.stringMatching(/frees DMA memory with different direction .*\[mapped with DMA_FROM_DEVICE\] \[unmapped with DMA_TO_DEVICE\]/),
    ]);
    expect(m.teardown()).toBe(0);
    // a debug kernel's dma_need_unmap() is true: a coherent direct mapping dropped without unmap is a leak
    const c = dmaMapPhys(dev, phys, 4096, DMA_BIDIRECTIONAL);
    expect(m.teardown()).toBe(1);
    expect(msgs().at(-1)).toMatch(/pending DMA allocations while released from device \[count=1\]/);
    dmaUnmapPhys(dev, c.ok ? c.value : 0n, 4096, DMA_BIDIRECTIONAL);
    expect(m.dmaDebug.errorCount).toBe(msgs().length);
  });
  it('CPU writes to a buffer the device owns: a MODEL-CHECK when bounced or non-coherent, not after sync_for_cpu', () => {
    const m = smallMachine();
    const dev = m.device('nvme0');
    const high = ramAt(m, HIGH, MiB);
    const low = ramAt(m, 0n, MiB);
    const r = dmaMapPhys(dev, high, 4096, DMA_BIDIRECTIONAL); // bounces (32-bit mask)
    const addr = r.ok ? r.value : 0n;
    const l = dmaMapPhys(dev, low, 4096, DMA_BIDIRECTIONAL); // direct, coherent
    expect(debugDmaCheckCpuWrite(m.dmaDebug, low + 16n, 8)).toBe(0);
    expect(debugDmaCheckCpuWrite(m.dmaDebug, high + 16n, 8)).toBe(1);
    expect(m.events.list('MODEL-CHECK').at(-1)!.message).toMatch(/CPU writes to a buffer the device owns .*bounced/);
    dmaSyncSingleForCpu(dev, addr, 4096, DMA_BIDIRECTIONAL);
    expect(debugDmaCheckCpuWrite(m.dmaDebug, high, 4096)).toBe(0);
    dmaSyncSingleForDevice(dev, addr, 4096, DMA_BIDIRECTIONAL);
    expect(debugDmaCheckCpuWrite(m.dmaDebug, high, 1)).toBe(1);
    dmaUnmapPhys(dev, addr, 4096, DMA_BIDIRECTIONAL);
    dmaUnmapPhys(dev, l.ok ? l.value : 0n, 4096, DMA_BIDIRECTIONAL);
    expect(debugDmaCheckCpuWrite(m.dmaDebug, high, 4096)).toBe(0);
  });
});
