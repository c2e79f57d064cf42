// Fidelity of swiotlb and of dma-iommu's bounce path against Linux 7.1: an untrusted device with no
// active bounce pool, the boot pool's size rounding and placement, partial syncs that start in a
// later slot, and a property test that every byte the device and the CPU see through a bounce
// buffer follows the bouncing rules. Each regression test names the old behaviour it catches.

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { GiB, KiB, MiB, unwrap } from '../src/base/index.ts';
import { createMachine, type Machine } from '../src/machine/index.ts';
import type { Device } from '../src/pci/index.ts';
import {
  DMA_ATTR_SKIP_CPU_SYNC, DMA_BIDIRECTIONAL, DMA_BIT_MASK, DMA_FROM_DEVICE, DMA_TO_DEVICE, DmaIovaState,
  dmaIovaFree, dmaIovaLink, dmaIovaTryAlloc, dmaMapPhys, dmaSetMask, dmaSetMinAlignMask, dmaSyncSingleForCpu,
  dmaSyncSingleForDevice, dmaUnmapPhys, iommuDmaMaxMappingSize, swiotlbMaxMappingSize,
  type DmaDataDirection,
} from '../src/dma/internal.ts';
import { iommuGetDmaDomain, iommuIovaToPhys } from '../src/iommu/index.ts';
import { makeMachine, pattern } from './fixtures/dma-b-machines.ts';
import { SMALL_PCI } from './fixtures/dma-machines.ts';

const PAGE = 4096;
const GIB4 = 1n << 32n;

const warnings = (m: Machine, source?: string): string[] => m.events.list('WARN', source).map((e) => e.message);

describe('untrusted device without an active bounce pool (iommu_dma_map_swiotlb: !is_swiotlb_active)', () => {
  it('dmaMapPhys of an unaligned range fails with the warn-once message, instead of mapping whole granules (0xfffffa80)', () => {
    // Kernel: iommu_dma_map_phys() -> dev_use_swiotlb() is true for an untrusted device (CONFIG_SWIOTLB
    // is always built on x86-64) and 0x200a80 + 100 is not granule-aligned -> iommu_dma_map_swiotlb()
    // finds !is_swiotlb_active(dev): dev_warn_once(...) and DMA_MAPPING_ERROR. The old model mapped
    // the granule 0x200000 at IOVA 0xfffff000 and returned 0xfffffa80: the device could read the
    // other 3996 bytes of that page.
    const m = makeMachine('strict', 1, { swiotlb: false });
    expect(m.swiotlb).toBeNull();
    const dev = m.device('tb0');
    expect(dev.untrusted).toBe(true);
    const r = dmaMapPhys(dev, 0x200a80n, 100, DMA_TO_DEVICE);
    expect(r.ok ? `mapped at 0x${r.value.toString(16)}` : r.errno).toBe('ENOMEM');
    expect(warnings(m, 'dma-iommu')).toEqual(['tb0: DMA bounce buffers are inactive, unable to map unaligned transaction.']);
    // nothing was mapped: the page the old model exposed faults
    expect(dev.dmaRead(0xfffff000n, 1).ok).toBe(false);
    expect(m.stats.iommuLeafPtesWritten).toBe(0);
    // dev_warn_once: a second failure is silent
    expect(dmaMapPhys(dev, 0x300010n, 64, DMA_FROM_DEVICE).ok).toBe(false);
    expect(warnings(m, 'dma-iommu')).toHaveLength(1);
    // a granule-aligned range needs no bounce and maps as before
    const a = dmaMapPhys(dev, 0x200000n, PAGE, DMA_TO_DEVICE);
    expect(a.ok).toBe(true);
    if (a.ok) dmaUnmapPhys(dev, a.value, PAGE, DMA_TO_DEVICE);
    expect(m.events.count('DMA-DEBUG')).toBe(0);
  });

  it('dmaIovaLink of an unaligned 0x2000 bytes fails with ENOMEM, instead of linking whole granules', () => {
    // Kernel: dma_iova_link() -> dev_use_swiotlb() && iova_unaligned() -> iommu_dma_iova_link_swiotlb()
    // -> the head bounce in iommu_dma_iova_bounce_and_link() gets DMA_MAPPING_ERROR from
    // iommu_dma_map_swiotlb() (no active pool) -> -ENOMEM; nothing is linked.
    const m = makeMachine('strict', 1, { swiotlb: false });
    const dev = m.device('tb0');
    const state = new DmaIovaState();
    expect(dmaIovaTryAlloc(dev, state, 0x200a80n, 0x2000)).toBe(true);
    const r = dmaIovaLink(dev, state, 0x200a80n, 0, 0x2000, DMA_TO_DEVICE, 0);
    expect(r.ok ? 'linked' : r.errno).toBe('ENOMEM');
    expect(warnings(m, 'dma-iommu')).toEqual(['tb0: DMA bounce buffers are inactive, unable to map unaligned transaction.']);
    expect(m.stats.iommuLeafPtesWritten).toBe(0);
    expect(dev.dmaRead(state.addr, 1).ok).toBe(false);
    dmaIovaFree(dev, state);
  });

  it('the largest mapping stays swiotlb\'s limit for an untrusted device even without a pool (iommu_dma_max_mapping_size)', () => {
    const m = makeMachine('strict', 1, { swiotlb: false });
    expect(iommuDmaMaxMappingSize(m.device('tb0'))).toBe(swiotlbMaxMappingSize(m.device('tb0')));
    expect(iommuDmaMaxMappingSize(m.device('nic0'))).toBe(Number.MAX_SAFE_INTEGER);
  });
});

describe('swiotlb boot pool size (setup_io_tlb_npages, swiotlb_adjust_nareas -> round_up_default_nslabs)', () => {
  const slabsFor = (bytes: number): { nslabs: number; info: string[] } => {
    const m = createMachine({ ramBytes: 2 * GiB, swiotlb: { bytes } });
    return { nslabs: m.swiotlb!.nslabs, info: m.events.list('INFO', 'swiotlb').map((e) => e.message) };
  };

  it('3 MiB gives 2048 slots (rounded up to a power of two), not 1024 (rounded down to whole blocks)', () => {
    // 3 MiB = 1536 slots, ALIGN(1536, 128) = 1536, roundup_pow_of_two(1536) = 2048
    expect(slabsFor(3 * MiB)).toEqual({ nslabs: 2048, info: ['SWIOTLB bounce buffer size roundup to 4MB'] });
  });

  it('6 MiB gives 4096 slots, not 2048', () => {
    expect(slabsFor(6 * MiB).nslabs).toBe(4096);
  });

  it('a power of two stays as it is; below one segment becomes one segment; a partial slot counts as a slot', () => {
    expect(slabsFor(64 * MiB)).toEqual({ nslabs: 32768, info: [] });
    expect(slabsFor(100 * KiB).nslabs).toBe(128);
    // 1 MiB + 1 byte = 513 slots -> ALIGN to 640 -> 1024
    expect(slabsFor(MiB + 1).nslabs).toBe(1024);
  });

  it('when low RAM cannot hold it the slot count is halved until it fits (swiotlb_init_remap retry)', () => {
    // 6 MiB of RAM: [1 MiB, 7 MiB). 64 MiB, 32, 16 and 8 MiB do not fit; 4 MiB (2048 slots) does,
    // top-down: [3 MiB, 7 MiB)
    const m = createMachine({ ramBytes: 6 * MiB, swiotlb: {} });
    expect(m.swiotlb!.nslabs).toBe(2048);
    expect(m.swiotlb!.start).toBe(3n * BigInt(MiB));
    expect(m.events.list('INFO', 'swiotlb').map((e) => e.message)).toEqual(['SWIOTLB bounce buffer size adjusted 32768 -> 2048 slabs']);
  });
});

describe('swiotlb boot pool placement (swiotlb_memblock_alloc -> memblock_alloc_low)', () => {
  it('a 1 MiB pool on a 16 GiB machine lands at 0xbff00000, below 4 GiB, not at 0x440000000', () => {
    // memblock_alloc_low(1 MiB, PAGE_SIZE): free ranges from the top, clamped to
    // ARCH_LOW_ADDRESS_LIMIT 0xffffffff: [4 GiB, ...) clamps to nothing; [1 MiB, 3 GiB) gives
    // round_down(3 GiB - 1 MiB, 4096) = 0xbff00000
    const m = createMachine({ ramBytes: 16 * GiB, pci: SMALL_PCI, swiotlb: { bytes: MiB } });
    const pool = m.swiotlb!;
    expect(pool.start).toBe(0xbff00000n);
    expect(pool.end).toBe(3n << 30n);
    // memblock memory: never handed out by the page allocator
    expect(m.freePages).toBe(16 * GiB / PAGE - MiB / PAGE);
    expect(m.kernelPagesInUse).toBe(0);
  });

  it('a 32-bit device bounces memory above 4 GiB through it, where the old placement failed with "swiotlb addr overflow"', () => {
    // dma_direct_map_phys(): 0x100000010 + 5000 is beyond the 32-bit mask -> swiotlb_map() -> the
    // bounce buffer at 0xbff00010 is dma_capable
    const m = createMachine({ ramBytes: 16 * GiB, pci: SMALL_PCI, swiotlb: { bytes: MiB } });
    const dev = m.device('nvme0');
    unwrap(dmaSetMask(dev, DMA_BIT_MASK(32)));
    const buf = GIB4 + 0x10n;
    const data = pattern(5000, 3);
    m.mem.write(buf, data);
    const r = dmaMapPhys(dev, buf, 5000, DMA_TO_DEVICE);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value).toBe(0xbff00000n);
    const rd = dev.dmaRead(r.value, 5000);
    expect(rd.ok && rd.value).toEqual(data);
    dmaUnmapPhys(dev, r.value, 5000, DMA_TO_DEVICE);
    expect(warnings(m)).toEqual([]);
    expect(m.swiotlb!.used).toBe(0);
  });

  it('the pool sits below gigantic pages that memblock took first, and is given back whole by release()', () => {
    // 2 GiB of RAM with one 1 GiB page: ram0 [1 MiB, 2 GiB + 1 MiB), the gigantic page [1 GiB, 2 GiB);
    // top-down the 1 MiB tail above it fits a 1 MiB pool exactly
    const m = createMachine({ ramBytes: 2 * GiB, hugetlb: { '1G': 1 }, swiotlb: { bytes: MiB } });
    expect(m.swiotlb!.start).toBe(2n << 30n);
    const free0 = m.freePages;
    m.swiotlb!.release();
    expect(m.freePages).toBe(free0 + MiB / PAGE);
    // the released memory is ordinary free memory again: one order-8 block
    const p = unwrap(m.allocKernelPages(8));
    expect(p * BigInt(PAGE)).toBe(2n << 30n);
  });
});

describe('partial syncs starting in a later slot (swiotlb_bounce: a negative tlb_offset)', () => {
  it('a 256-byte sync at dma + 0x7ff copies exactly those 256 bytes, instead of WARNing "Access before mapping start" and copying nothing', () => {
    // min_align_mask 0xfff, buffer at ...010: swiotlb_tbl_map_single() keeps offset 0x10, so the
    // mapping starts at slot s + 0x10. dma + 0x7ff = slot s+1, byte 0xf. In swiotlb_bounce():
    //   tlb_offset = 0xf - swiotlb_align_offset(orig of slot s+1 = buf + 0x800) = 0xf - 0x10 = -1
    //   orig = buf + 0x800 - 1 = buf + 0x7ff; alloc_size = (3016 - 0x10 - 0x800) + 1 = 953 >= 256
    // so bytes [0x7ff, 0x8ff) of the buffer get the device's data and nothing else changes.
    const m = createMachine({ ramBytes: 2 * GiB, pci: SMALL_PCI, swiotlb: { bytes: 4 * MiB, force: true } });
    const dev = m.device('nvme0');
    unwrap(dmaSetMask(dev, DMA_BIT_MASK(64)));
    dmaSetMinAlignMask(dev, 0xfff);
    const buf = 0x1000_0010n;
    const before = pattern(3000, 1);
    m.mem.write(buf, before);
    const r = dmaMapPhys(dev, buf, 3000, DMA_FROM_DEVICE);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    const dma = r.value;
    expect(m.swiotlb!.contains(dma)).toBe(true);
    expect(dma & 0xfffn).toBe(0x010n);
    const devData = pattern(3000, 2);
    expect(dev.dmaWrite(dma, devData).ok).toBe(true);
    dmaSyncSingleForCpu(dev, dma + 0x7ffn, 256, DMA_FROM_DEVICE);
    const want = before.slice();
    want.set(devData.subarray(0x7ff, 0x7ff + 256), 0x7ff);
    expect(m.mem.read(buf, 3000)).toEqual(want);
    expect(warnings(m)).toEqual([]);
    dmaUnmapPhys(dev, dma, 3000, DMA_FROM_DEVICE);
    expect(m.mem.read(buf, 3000)).toEqual(devData);
    expect(m.events.count('DMA-DEBUG')).toBe(0);
  });

  it('a sync past the end of the mapping is cut to it, with one WARN for the boot (dev_WARN_ONCE)', () => {
    const m = createMachine({ ramBytes: 2 * GiB, pci: SMALL_PCI, swiotlb: { bytes: 4 * MiB, force: true } });
    const dev = m.device('nvme0');
    unwrap(dmaSetMask(dev, DMA_BIT_MASK(64)));
    m.dmaDebug.enabled = false; // the kernel without dma-debug: nothing stops the sync before swiotlb
    const buf = 0x1000_0000n;
    const r = dmaMapPhys(dev, buf, 1000, DMA_FROM_DEVICE);
    if (!r.ok) throw new Error('map');
    const devData = pattern(1000, 7);
    expect(dev.dmaWrite(r.value, devData).ok).toBe(true);
    const next = pattern(64, 8);
    m.mem.write(buf + 1000n, next);
    dmaSyncSingleForCpu(dev, r.value + 900n, 500, DMA_FROM_DEVICE);
    dmaSyncSingleForCpu(dev, r.value + 900n, 500, DMA_FROM_DEVICE);
    expect(m.mem.read(buf + 900n, 100)).toEqual(devData.subarray(900));
    expect(m.mem.read(buf + 1000n, 64)).toEqual(next); // nothing past the mapping
    expect(warnings(m, 'swiotlb')).toEqual(['nvme0: Buffer overflow detected. Allocation size: 100. Mapping size: 500.']);
    dmaUnmapPhys(dev, r.value, 1000, DMA_FROM_DEVICE);
  });
});

// ---------------------------------------------------------------------------------------------
// Property: on a machine where every mapping bounces, random map / partial sync / device access /
// CPU write / unmap sequences against a plain reference of the bouncing rules:
//   map (any dir)                     bounce = the CPU bytes (swiotlb copies in at every map)
//   sync_for_device TO/BIDI, sub      bounce[sub] = cpu[sub]
//   sync_for_cpu FROM/BIDI, sub       cpu[sub] = bounce[sub]
//   unmap FROM/BIDI without SKIP_CPU_SYNC   cpu = bounce
//   device write                      bounce[sub] = data;   device read returns bounce[sub]
// Every CPU byte of every buffer and every device-visible byte of every live mapping is compared.

type Variant = 'swiotlb=force' | '32-bit mask' | 'untrusted behind an IOMMU';
const NBUF = 4;
const BUF_BYTES = 16 * KiB;

interface Live { buf: number; off: number; len: number; dir: DmaDataDirection; dma: bigint; bounce: Uint8Array; deviceOwns: boolean }

/** The first index where two byte arrays differ (-1: equal), so a failure names the byte. */
function firstDiff(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

/**
 * A machine where every mapping of the test bounces: swiotlb=force (dma-direct bounces all), a
 * 32-bit device and buffers above 4 GiB (dma-direct bounces what it cannot reach), or an untrusted
 * device behind a strict IOMMU mapping granule-unaligned buffers (dma-iommu bounces them, with pad
 * slots when min_align_mask keeps an offset of 2 KiB or more).
 */
function bounceMachine(variant: Variant): { m: Machine; dev: Device; bufs: bigint[] } {
  const iommu = variant === 'untrusted behind an IOMMU';
  const m = createMachine({
    ramBytes: 8 * GiB, seed: 3, pci: SMALL_PCI, swiotlb: { bytes: 4 * MiB, force: variant === 'swiotlb=force' },
    ...(iommu ? { iommu: { format: 'x86-64' as const, levels: 4 as const, mode: 'strict' as const } } : {}),
  });
  const dev = m.device(iommu ? 'tb0' : 'nvme0');
  unwrap(dmaSetMask(dev, DMA_BIT_MASK(variant === '32-bit mask' ? 32 : 64)));
  // buffers above 4 GiB (a 32-bit device cannot reach them), 64 KiB apart
  const bufs = Array.from({ length: NBUF }, (_, i) => GIB4 + 0x10_0000n + BigInt(i) * 0x1_0000n);
  return { m, dev, bufs };
}

const opArb = fc.oneof(
  fc.record({ op: fc.constant('map' as const), buf: fc.nat(NBUF - 1), off: fc.nat(4095), len: fc.integer({ min: 1, max: 12 * KiB }),
    dir: fc.constantFrom<DmaDataDirection>(DMA_TO_DEVICE, DMA_FROM_DEVICE, DMA_BIDIRECTIONAL), skip: fc.boolean() }),
  fc.record({ op: fc.constantFrom('syncCpu' as const, 'syncDev' as const), k: fc.nat(), a: fc.nat(), b: fc.nat(),
    dir: fc.constantFrom<DmaDataDirection>(DMA_TO_DEVICE, DMA_FROM_DEVICE, DMA_BIDIRECTIONAL) }),
  fc.record({ op: fc.constant('devWrite' as const), k: fc.nat(), a: fc.nat(), b: fc.nat(), seed: fc.nat() }),
  fc.record({ op: fc.constant('cpuWrite' as const), buf: fc.nat(NBUF - 1), a: fc.nat(BUF_BYTES - 1), b: fc.nat(BUF_BYTES - 1), seed: fc.nat() }),
  fc.record({ op: fc.constant('unmap' as const), k: fc.nat(), skip: fc.boolean() }),
);

describe.each<Variant>(['swiotlb=force', '32-bit mask', 'untrusted behind an IOMMU'])('property: every byte through a bounce buffer (%s)', (variant) => {
  it('device and CPU views match the reference copy after random maps, partial syncs and unmaps', () => {
    fc.assert(fc.property(
      fc.constantFrom(0, 0x7ff, 0xfff),
      fc.array(opArb, { minLength: 1, maxLength: 40 }),
      (minAlign, ops) => {
        const { m, dev, bufs } = bounceMachine(variant);
        const iommu = variant === 'untrusted behind an IOMMU';
        // the bounce slot behind a DMA address (through the IOMMU when there is one)
        const slotOf = (dma: bigint): bigint => (iommu ? iommuIovaToPhys(iommuGetDmaDomain(dev)!, dma) : dma);
        dmaSetMinAlignMask(dev, minAlign);
        const cpu = bufs.map((b, i) => {
          const init = pattern(BUF_BYTES, 100 + i);
          m.mem.write(b, init);
          return init;
        });
        const live: Array<Live | null> = [];
        const busy = new Array<boolean>(NBUF).fill(false);
        const liveIdx = (k: number): number => {
          const idx = live.map((l, i) => (l ? i : -1)).filter((i) => i >= 0);
          return idx.length === 0 ? -1 : idx[k % idx.length];
        };
        // a sub-range [s, s + n) of a mapping of len bytes from two random numbers
        const sub = (len: number, a: number, b: number): [number, number] => {
          const s = a % len;
          return [s, 1 + (b % (len - s))];
        };
        const checkCpu = (i: number): void => expect(firstDiff(m.mem.read(bufs[i], BUF_BYTES), cpu[i])).toBe(-1);
        const checkDevice = (l: Live): void => {
          const rd = dev.dmaRead(l.dma, l.len);
          expect(rd.ok).toBe(true);
          if (rd.ok) expect(firstDiff(rd.value, l.bounce)).toBe(-1);
        };
        for (const o of ops) {
          if (o.op === 'map') {
            if (busy[o.buf]) continue;
            const off = iommu && o.off === 0 ? 1 : o.off; // granule-unaligned: dma-iommu bounces it
            const phys = bufs[o.buf] + BigInt(off);
            const r = dmaMapPhys(dev, phys, o.len, o.dir, o.skip ? DMA_ATTR_SKIP_CPU_SYNC : 0);
            expect(r.ok).toBe(true);
            if (!r.ok) return;
            // every mapping bounces, keeping the address bits min_align_mask covers
            const slot = slotOf(r.value);
            expect(m.swiotlb!.contains(slot)).toBe(true);
            expect(slot & BigInt(minAlign)).toBe(phys & BigInt(minAlign));
            busy[o.buf] = true;
            const l: Live = { buf: o.buf, off, len: o.len, dir: o.dir, dma: r.value, deviceOwns: true,
              bounce: cpu[o.buf].slice(off, off + o.len) };
            live.push(l);
            checkDevice(l);
          } else if (o.op === 'syncCpu' || o.op === 'syncDev') {
            const k = liveIdx(o.k);
            if (k < 0) continue;
            const l = live[k]!;
            // dma-debug allows a sync with the mapping's direction, or any direction on a bidirectional one
            const dir = l.dir === DMA_BIDIRECTIONAL ? o.dir : l.dir;
            const [s, n] = sub(l.len, o.a, o.b);
            if (o.op === 'syncCpu') {
              dmaSyncSingleForCpu(dev, l.dma + BigInt(s), n, dir);
              if (dir !== DMA_TO_DEVICE) cpu[l.buf].set(l.bounce.subarray(s, s + n), l.off + s);
              l.deviceOwns = false;
            } else {
              dmaSyncSingleForDevice(dev, l.dma + BigInt(s), n, dir);
              if (dir !== DMA_FROM_DEVICE) l.bounce.set(cpu[l.buf].subarray(l.off + s, l.off + s + n), s);
              l.deviceOwns = true;
            }
            checkCpu(l.buf);
            checkDevice(l);
          } else if (o.op === 'devWrite') {
            const k = liveIdx(o.k);
            if (k < 0) continue;
            const l = live[k]!;
            if (iommu && l.dir === DMA_TO_DEVICE) continue; // the IOMMU maps it read-only
            const [s, n] = sub(l.len, o.a, o.b);
            const data = pattern(n, o.seed + 1);
            expect(dev.dmaWrite(l.dma + BigInt(s), data).ok).toBe(true);
            l.bounce.set(data, s);
            checkDevice(l);
            checkCpu(l.buf); // the CPU's copy is untouched until a sync or the unmap
          } else if (o.op === 'cpuWrite') {
            // the CPU writes only where no mapping the device owns is (dma-debug's ownership rule)
            const l = live.find((x) => x && x.buf === o.buf);
            if (l && l.deviceOwns) continue;
            const s = Math.min(o.a, o.b), n = Math.abs(o.a - o.b) + 1;
            const data = pattern(n, o.seed + 2);
            m.mem.write(bufs[o.buf] + BigInt(s), data);
            cpu[o.buf].set(data, s);
            if (l) checkDevice(l); // the device's copy is untouched until a sync for the device
          } else if (o.op === 'unmap') {
            const k = liveIdx(o.k);
            if (k < 0) continue;
            const l = live[k]!;
            dmaUnmapPhys(dev, l.dma, l.len, l.dir, o.skip ? DMA_ATTR_SKIP_CPU_SYNC : 0);
            if (l.dir !== DMA_TO_DEVICE && !o.skip) cpu[l.buf].set(l.bounce, l.off);
            live[k] = null;
            busy[l.buf] = false;
            checkCpu(l.buf);
          }
        }
        for (let i = 0; i < NBUF; i++) checkCpu(i);
        for (const l of live) if (l) checkDevice(l);
        for (const l of live) if (l) dmaUnmapPhys(dev, l.dma, l.len, l.dir, DMA_ATTR_SKIP_CPU_SYNC);
        expect(m.swiotlb!.used).toBe(0);
        expect(warnings(m)).toEqual([]);
        expect(m.events.list('DMA-DEBUG').map((e) => e.message)).toEqual([]);
      }), { numRuns: 150 });
  });
});
