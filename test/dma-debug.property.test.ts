// dma-debug properties (kernel/dma/debug.c, Linux 7.1), on dma-direct (coherent, 32-bit bouncing,
// non-coherent), forced swiotlb, and strict and lazy IOMMUs, with a trusted and an untrusted device:
// (a) random correct use of the DMA API (dma_map_phys / map_page, dma_map_sgtable, partial and whole
//     syncs, both ways of checking a handle, device DMA moving real bytes) leaves no DMA-DEBUG report
//     and no MODEL-CHECK; error_count stays 0;
// (b) the same run with one misuse injected at a random point gives exactly the reports a debug
//     kernel prints for it, from a table of its checks (check_unmap, check_sync, err_printk on leaks).
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { GiB, MiB, type Result } from '../src/base/index.ts';
import type { Machine, MachineConfig } from '../src/machine/index.ts';
import { sgAllocTableFromPagesSegment, type SgTable } from '../src/phyr/index.ts';
import {
  DMA_BIDIRECTIONAL, DMA_BIT_MASK, DMA_FROM_DEVICE, DMA_MAPPING_ERROR, DMA_TO_DEVICE, dmaMapPage, dmaMapPhys,
  dmaMapSgtable, dmaMappingError, dmaSetMask, dmaSyncSgtableForCpu, dmaSyncSgtableForDevice, dmaSyncSingleForCpu,
  dmaSyncSingleForDevice, dmaUnmapPhys, dmaUnmapSgtable,
} from '../src/dma/index.ts';
import type { Device } from '../src/pci/index.ts';
import { pattern, ramAt, smallMachine } from './fixtures/dma-machines.ts';

type Setup = 'direct' | 'direct-noncoherent' | 'swiotlb-force' | 'iommu-strict' | 'iommu-lazy';
const SETUPS: Record<Setup, Partial<MachineConfig>> = {
  'direct': {},
  'direct-noncoherent': {},
  'swiotlb-force': { swiotlb: { bytes: 16 * MiB, force: true } },
  'iommu-strict': { iommu: { format: 'x86-64', mode: 'strict' } },
  'iommu-lazy': { iommu: { format: 'x86-64', mode: 'lazy' } },
};
const DIRS = [DMA_BIDIRECTIONAL, DMA_TO_DEVICE, DMA_FROM_DEVICE];
const PAGE = 4096;
/** Each mapping gets its own 64 KiB slot of memory: no two live mappings share a byte or cacheline. */
const SLOT = 0x10000;
const SLOTS = 48;

type Op =
  | { kind: 'map'; dev: number; pages: number; off: number; dir: number; how: number }
  | { kind: 'sg'; dev: number; pages: number; gap: number; dir: number }
  | { kind: 'unmap'; pick: number; write: number }
  | { kind: 'sync'; pick: number; toCpu: boolean; from: number; len: number };

const arbOp: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('map' as const), dev: fc.nat(1), pages: fc.integer({ min: 1, max: 4 }), off: fc.nat(4095), dir: fc.constantFrom(...DIRS), how: fc.nat(2) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('sg' as const), dev: fc.nat(1), pages: fc.integer({ min: 1, max: 6 }), gap: fc.nat(3), dir: fc.constantFrom(...DIRS) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('unmap' as const), pick: fc.nat(), write: fc.nat(255) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('sync' as const), pick: fc.nat(), toCpu: fc.boolean(), from: fc.double({ min: 0, max: 1, noNaN: true }), len: fc.double({ min: 0, max: 1, noNaN: true }) }) },
);

interface Single { kind: 'single'; dev: Device; addr: bigint; phys: bigint; size: number; dir: number; slot: number }
interface Sg { kind: 'sg'; dev: Device; sgt: SgTable; dir: number; slot: number }
type Live = Single | Sg;

/** What a run does besides the random ops: a misuse from the table, injected before op `at`. */
type Misuse =
  | 'unmap-never-mapped' | 'double-unmap' | 'unmap-wrong-size' | 'unmap-wrong-dir' | 'unmap-size-and-dir'
  | 'unmap-unchecked' | 'unmap-error-handle' | 'sync-past-end' | 'sync-never-mapped' | 'sync-wrong-dir'
  | 'sync-cpu-of-to-device' | 'sync-device-of-from-device' | 'sg-double-unmap' | 'sg-unmap-wrong-dir'
  | 'sg-sync-wrong-dir' | 'leak';
const MISUSES: Misuse[] = [
  'unmap-never-mapped', 'double-unmap', 'unmap-wrong-size', 'unmap-wrong-dir', 'unmap-size-and-dir', 'unmap-unchecked',
  'unmap-error-handle', 'sync-past-end', 'sync-never-mapped', 'sync-wrong-dir', 'sync-cpu-of-to-device',
  'sync-device-of-from-device', 'sg-double-unmap', 'sg-unmap-wrong-dir', 'sg-sync-wrong-dir', 'leak',
];

/** The kernel's check (data.check of the DMA-DEBUG event) for each report a misuse gives. */
const KERNEL_MESSAGE: Record<string, RegExp> = {
  'unmap-not-allocated': /^device driver tries to free DMA memory it has not allocated \[device address=0x[0-9a-f]{16}\] \[size=\d+ bytes\]$/,
  'unmap-invalid-address': /^device driver tries to free an invalid DMA memory address$/,
  'unmap-size': /^device driver frees DMA memory with different size \[device address=0x[0-9a-f]{16}\] \[map size=\d+ bytes\] \[unmap size=\d+ bytes\]$/,
  'unmap-direction': /^device driver frees DMA memory with different direction \[device address=0x[0-9a-f]{16}\] \[size=\d+ bytes\] \[mapped with DMA_\w+\] \[unmapped with DMA_\w+\]$/,
  'map-error-not-checked': /^device driver failed to check map error\[device address=0x[0-9a-f]{16}\] \[size=\d+ bytes\] \[mapped as phy\]$/,
  'sync-not-allocated': /^device driver tries to sync DMA memory it has not allocated \[device address=0x[0-9a-f]{16}\] \[size=\d+ bytes\]$/,
  'sync-direction': /^device driver syncs DMA memory with different direction \[device address=0x[0-9a-f]{16}\] \[size=\d+ bytes\] \[mapped with DMA_\w+\] \[synced with DMA_\w+\]$/,
  'sync-read-only': /^device driver syncs device read-only DMA memory for cpu /,
  'sync-write-only': /^device driver syncs device write-only DMA memory to device /,
  'leak': /^device driver has pending DMA allocations while released from device \[count=1\] One of leaked entries details: /,
};

function checkedAddr(r: Result<bigint>): bigint {
  if (!r.ok) throw new Error(`map failed: ${r.errno}`);
  return r.value;
}

interface RunResult { checks: string[]; messages: string[]; errorCount: number; modelChecks: number }

/** Runs ops on a fresh machine (the misuse, if any, before op `at`); returns what dma-debug reported. */
function run(setup: Setup, ops: readonly Op[], misuse: Misuse | null, at: number, expected: string[]): RunResult {
  const m: Machine = smallMachine({ ...SETUPS[setup], dmaDebug: { allErrors: true } });
  const devs = [m.device('nvme0'), m.device('tb0')];
  dmaSetMask(devs[0], DMA_BIT_MASK(64)); // tb0 keeps a 32-bit mask: bounces high memory on dma-direct
  if (setup === 'direct-noncoherent') {
    devs[0].dmaCoherent = false;
    dmaSetMask(devs[0], DMA_BIT_MASK(64));
  }
  // slots in RAM above 4 GiB, so the 32-bit device bounces on dma-direct
  const base = ramAt(m, 5n * BigInt(GiB), SLOTS * SLOT);
  const free = Array.from({ length: SLOTS }, (_, i) => i);
  const live: Live[] = [];
  let round = 0;

  const mapSingle = (dev: Device, pages: number, off: number, dir: number, how: number): Single | null => {
    const slot = free.pop();
    if (slot === undefined) return null;
    const phys = base + BigInt(slot * SLOT + off);
    const size = pages * PAGE - off;
    // three ways a driver checks the handle: the result's ok, dma_mapping_error(), or map_page's ok
    let addr: bigint;
    if (how === 0) addr = checkedAddr(dmaMapPhys(dev, phys, size, dir));
    else if (how === 1) {
      addr = (dmaMapPhys(dev, phys, size, dir) as unknown as { value: bigint }).value;
      expect(dmaMappingError(dev, addr).ok).toBe(true);
    } else addr = checkedAddr(dmaMapPage(dev, phys >> 12n, off, size, dir));
    return { kind: 'single', dev, addr, phys, size, dir, slot };
  };
  const mapSg = (dev: Device, pages: number, gap: number, dir: number): Sg | null => {
    const slot = free.pop();
    if (slot === undefined) return null;
    const first = (base + BigInt(slot * SLOT)) >> 12n;
    // pages with holes every `gap` pages: several CPU entries, merged or not by the IOMMU
    const pfns = Array.from({ length: pages }, (_, i) => first + BigInt(i + (gap === 0 ? 0 : Math.floor(i / gap))));
    const t = sgAllocTableFromPagesSegment(pfns, 0, pages * PAGE, 0xfffff000);
    if (!t.ok) throw new Error('sg');
    const r = dmaMapSgtable(dev, t.value, dir);
    if (!r.ok) throw new Error(`sg map failed: ${r.errno}`);
    return { kind: 'sg', dev, sgt: t.value, dir, slot };
  };
  const unmap = (l: Live, write: number): void => {
    if (l.kind === 'single') {
      const bytes = pattern(l.size, write + round++);
      const devWrites = l.dir !== DMA_TO_DEVICE;
      if (devWrites) expect(l.dev.dmaWrite(l.addr, bytes).ok).toBe(true);
      dmaUnmapPhys(l.dev, l.addr, l.size, l.dir);
      // the CPU sees what the device wrote (compared as buffers: a deep toEqual of 16 KiB is slow)
      if (devWrites) expect(Buffer.compare(m.mem.read(l.phys, l.size), bytes)).toBe(0);
    } else {
      dmaUnmapSgtable(l.dev, l.sgt, l.dir);
    }
    free.push(l.slot);
  };
  const take = (pick: number, kind: Live['kind']): Live | undefined => {
    const c = live.filter((l) => l.kind === kind);
    if (c.length === 0) return undefined;
    const l = c[pick % c.length];
    live.splice(live.indexOf(l), 1);
    return l;
  };

  const inject = (what: Misuse): void => {
    const dev = devs[0];
    const own = (dir = DMA_TO_DEVICE, size = 8192): Single => mapSingle(dev, size / PAGE, 0, dir, 0)!;
    const ownSg = (dir = DMA_TO_DEVICE): Sg => mapSg(dev, 3, 1, dir)!;
    switch (what) {
      case 'unmap-never-mapped': {
        const addr = (1n << 52n) + 0x5000n;
        dmaUnmapPhys(dev, addr, PAGE, DMA_TO_DEVICE);
        expected.push('unmap-not-allocated');
        return;
      }
      case 'unmap-error-handle':
        dmaUnmapPhys(dev, DMA_MAPPING_ERROR, PAGE, DMA_TO_DEVICE);
        expected.push('unmap-invalid-address');
        return;
      case 'sync-never-mapped':
        dmaSyncSingleForCpu(dev, (1n << 52n) + 0x5000n, 64, DMA_FROM_DEVICE);
        expected.push('sync-not-allocated');
        return;
      case 'leak':
        own(); // never unmapped
        expected.push('leak');
        return;
      default:
    }
    if (what.startsWith('sg-')) {
      const s = ownSg(DMA_TO_DEVICE);
      const n = s.sgt.nents;
      if (what === 'sg-double-unmap') {
        dmaUnmapSgtable(dev, s.sgt, DMA_TO_DEVICE);
        dmaUnmapSgtable(dev, s.sgt, DMA_TO_DEVICE);
        // one check_unmap per CPU entry; merged-away entries hold DMA_MAPPING_ERROR
        for (let i = 0; i < s.sgt.origNents; i++) {
          expected.push(s.sgt.dmaAddressAt(i) === DMA_MAPPING_ERROR ? 'unmap-invalid-address' : 'unmap-not-allocated');
        }
      } else if (what === 'sg-unmap-wrong-dir') {
        dmaUnmapSgtable(dev, s.sgt, DMA_FROM_DEVICE);
        for (let i = 0; i < n; i++) expected.push('unmap-direction');
      } else {
        dmaSyncSgtableForDevice(dev, s.sgt, DMA_FROM_DEVICE);
        for (let i = 0; i < n; i++) expected.push('sync-direction');
        dmaUnmapSgtable(dev, s.sgt, DMA_TO_DEVICE);
      }
      free.push(s.slot);
      return;
    }
    const o = what === 'sync-device-of-from-device' ? own(DMA_FROM_DEVICE) : own();
    let unmapped = false;
    switch (what) {
      case 'double-unmap':
        dmaUnmapPhys(dev, o.addr, o.size, o.dir);
        dmaUnmapPhys(dev, o.addr, o.size, o.dir);
        expected.push('unmap-not-allocated');
        unmapped = true;
        break;
      case 'unmap-wrong-size':
        dmaUnmapPhys(dev, o.addr, o.size - 512, o.dir);
        expected.push('unmap-size');
        unmapped = true;
        break;
      case 'unmap-wrong-dir':
        dmaUnmapPhys(dev, o.addr, o.size, DMA_BIDIRECTIONAL);
        expected.push('unmap-direction');
        unmapped = true;
        break;
      case 'unmap-size-and-dir':
        dmaUnmapPhys(dev, o.addr, PAGE, DMA_FROM_DEVICE);
        expected.push('unmap-size', 'unmap-direction');
        unmapped = true;
        break;
      case 'unmap-unchecked': {
        dmaUnmapPhys(dev, o.addr, o.size, o.dir);
        const x = (dmaMapPhys(dev, o.phys, o.size, o.dir) as unknown as { value: bigint }).value;
        dmaUnmapPhys(dev, x, o.size, o.dir);
        expected.push('map-error-not-checked');
        unmapped = true;
        break;
      }
      case 'sync-past-end':
        dmaSyncSingleForCpu(dev, o.addr + BigInt(o.size / 2), o.size, o.dir);
        expected.push('sync-not-allocated');
        break;
      case 'sync-wrong-dir':
        dmaSyncSingleForDevice(dev, o.addr, o.size, DMA_FROM_DEVICE);
        expected.push('sync-direction');
        break;
      case 'sync-cpu-of-to-device':
        dmaSyncSingleForCpu(dev, o.addr, o.size, DMA_BIDIRECTIONAL);
        expected.push('sync-direction', 'sync-read-only');
        break;
      case 'sync-device-of-from-device':
        dmaSyncSingleForDevice(dev, o.addr, o.size, DMA_BIDIRECTIONAL);
        expected.push('sync-direction', 'sync-write-only');
        break;
      default:
        throw new Error(what);
    }
    if (!unmapped) dmaUnmapPhys(dev, o.addr, o.size, o.dir);
    free.push(o.slot);
  };

  ops.forEach((op, i) => {
    if (misuse !== null && i === at) inject(misuse);
    if (op.kind === 'map') {
      const l = mapSingle(devs[op.dev], op.pages, op.off, op.dir, op.how);
      if (l) live.push(l);
    } else if (op.kind === 'sg') {
      const l = mapSg(devs[op.dev], op.pages, op.gap, op.dir);
      if (l) live.push(l);
    } else if (op.kind === 'unmap') {
      const l = take(op.pick, op.pick % 3 === 0 ? 'sg' : 'single') ?? take(op.pick, op.pick % 3 === 0 ? 'single' : 'sg');
      if (l) unmap(l, op.write);
    } else if (live.length > 0) {
      const l = live[op.pick % live.length];
      if (l.kind === 'sg') {
        if (op.toCpu) dmaSyncSgtableForCpu(l.dev, l.sgt, l.dir);
        else dmaSyncSgtableForDevice(l.dev, l.sgt, l.dir);
      } else {
        const from = Math.min(l.size - 1, Math.floor(op.from * l.size));
        const len = Math.max(1, Math.floor(op.len * (l.size - from)));
        if (op.toCpu) dmaSyncSingleForCpu(l.dev, l.addr + BigInt(from), len, l.dir);
        else dmaSyncSingleForDevice(l.dev, l.addr + BigInt(from), len, l.dir);
      }
    }
  });
  if (misuse !== null && at >= ops.length) inject(misuse);
  for (const l of [...live]) unmap(l, 7);
  m.teardown();
  const evs = m.events.list('DMA-DEBUG');
  return {
    checks: evs.map((e) => String(e.data?.check)),
    messages: evs.map((e) => e.message),
    errorCount: m.dmaDebug.errorCount,
    modelChecks: m.events.count('MODEL-CHECK'),
  };
}

describe('dma-debug: random correct use is silent; each injected misuse gives exactly the kernel\'s reports', () => {
  it.each(Object.keys(SETUPS) as Setup[])('%s', (setup) => {
    fc.assert(fc.property(
      fc.array(arbOp, { minLength: 0, maxLength: 30, size: 'max' }),
      fc.constantFrom(...MISUSES),
      fc.nat(),
      (ops, misuse, atSeed) => {
        const clean = run(setup, ops, null, 0, []);
        expect(clean.messages).toEqual([]);
        expect(clean.errorCount).toBe(0);
        expect(clean.modelChecks).toBe(0);
        const expected: string[] = [];
        const bad = run(setup, ops, misuse, atSeed % (ops.length + 1), expected);
        expect(bad.checks).toEqual(expected);
        expect(bad.errorCount).toBe(expected.length);
        bad.messages.forEach((msg, i) => {
          const body = msg.replace(/^DMA-API: pci 0000:01:00\.0: /, ''); // nvme0, no driver bound
          expect(body).not.toBe(msg);
          const re = KERNEL_MESSAGE[bad.checks[i]];
          if (re) expect(body).toMatch(re);
        });
        expect(bad.modelChecks).toBe(0);
      },
    ), { numRuns: 80 });
  });
});

describe('the CPU-store model check: its physical-address index agrees with a scan of every mapping', () => {
  const WATCH: Setup[] = ['swiotlb-force', 'direct-noncoherent'];
  it.each(WATCH)('%s', (setup) => {
    fc.assert(fc.property(
      fc.array(fc.tuple(arbOp, fc.nat(), fc.integer({ min: -8192, max: 20000 }), fc.integer({ min: 1, max: 20000 })), { minLength: 1, maxLength: 40 }),
      (steps) => {
        const m = smallMachine({ ...SETUPS[setup], dmaDebug: { allErrors: true } });
        const dev = m.device('nvme0');
        if (setup === 'direct-noncoherent') dev.dmaCoherent = false;
        dmaSetMask(dev, DMA_BIT_MASK(64));
        const base = ramAt(m, 5n * BigInt(GiB), SLOTS * SLOT);
        const live: Single[] = [];
        const free = Array.from({ length: SLOTS }, (_, i) => i);
        let expected = 0;
        for (const [op, wpick, wdelta, wlen] of steps) {
          if (op.kind === 'map' || op.kind === 'sg') {
            const off = op.kind === 'map' ? op.off : 0;
            const size = op.pages * PAGE - off;
            const slot = free.pop();
            if (slot === undefined) continue;
            const phys = base + BigInt(slot * SLOT + off);
            live.push({ kind: 'single', dev, addr: checkedAddr(dmaMapPhys(dev, phys, size, op.dir)), phys, size, dir: op.dir, slot });
          } else if (live.length > 0 && op.kind === 'unmap') {
            const [l] = live.splice(op.pick % live.length, 1);
            dmaUnmapPhys(dev, l.addr, l.size, l.dir);
            free.push(l.slot);
          } else if (live.length > 0 && op.kind === 'sync') {
            const l = live[op.pick % live.length];
            if (op.toCpu) dmaSyncSingleForCpu(dev, l.addr, l.size, l.dir);
            else dmaSyncSingleForDevice(dev, l.addr, l.size, l.dir);
          }
          // the CPU writes near a live mapping (before, into, across or after it)
          const near = live.length > 0 ? live[wpick % live.length].phys : base;
          const phys = near + BigInt(wdelta) < base ? base : near + BigInt(wdelta);
          expected += m.dmaDebug.entries().filter((e) => e.deviceOwns && (e.bounced || !e.coherent)
            && e.phys < phys + BigInt(wlen) && e.phys + BigInt(e.len) > phys).length;
          m.mem.fill(phys, wlen, 0x5a);
          expect(m.events.count('MODEL-CHECK')).toBe(expected);
        }
        const found = m.events.list('MODEL-CHECK');
        expect(found.every((e) => e.data?.check === 'cpu-write' && /CPU writes to a buffer the device owns/.test(e.message))).toBe(true);
        expect(m.events.count('DMA-DEBUG')).toBe(0);
      },
    ), { numRuns: 60 });
  });
});
