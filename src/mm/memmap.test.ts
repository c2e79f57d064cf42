// Tests for the memmap accounting (mm/sparse-vmemmap.c for RAM, mm/memremap.c for ZONE_DEVICE):
// 64 bytes of struct page per base page of RAM and of every region with a dev_pagemap, none for
// device memory without one; the LSF/MM/BPF 2026 figures for an 80 GB GPU BAR.
import { describe, expect, it } from 'vitest';
import { GiB, KiB, MiB } from '../base/index.ts';
import { createMmMachine } from './machine.ts';
import { STRUCT_PAGE_SIZE, memmapBytesFor } from './memmap.ts';

describe('memmapBytes', () => {
  it('struct page is 64 bytes: RAM costs 1/64 of itself at 4 KiB pages and 1/1024 at 64 KiB', () => {
    expect(STRUCT_PAGE_SIZE).toBe(64);
    const m4 = createMmMachine({ ramBytes: GiB });
    expect(m4.memmapBytes()).toMatchObject({ ram: 16 * MiB, p2pdma: 0, pmem: 0, zoneDevice: 0, total: 16 * MiB, pageSize: 4096 });
    const m64 = createMmMachine({ ramBytes: GiB, pageSize: 64 * KiB });
    expect(m64.memmapBytes()).toMatchObject({ ram: MiB, total: MiB, pageSize: 64 * KiB });
  });

  it('RAM split around the PCI hole is counted per region; the low reserved MiB has no struct page here', () => {
    const m = createMmMachine({ ramBytes: 4 * GiB });
    const b = m.memmapBytes();
    expect(b.regions.map((r) => r.name)).toEqual(['ram0', 'ram1']);
    expect(b.ram).toBe((4 * GiB / 4096) * 64);
    expect(b.regions.every((r) => !r.zoneDevice)).toBe(true);
  });

  it('a P2PDMA BAR (pgmap) is ZONE_DEVICE memmap; a BAR without pgmap costs nothing', () => {
    const m = createMmMachine({
      ramBytes: GiB,
      deviceMemory: [{ name: 'p2pbar', bytes: 256 * MiB, pgmap: true }, { name: 'mmio', bytes: 256 * MiB }],
      pmem: [{ name: 'pmem0', bytes: GiB, structPage: true }, { name: 'pmem1', bytes: GiB, structPage: false }],
    });
    const b = m.memmapBytes();
    expect(b.p2pdma).toBe(4 * MiB);
    expect(b.pmem).toBe(16 * MiB);
    expect(b.zoneDevice).toBe(20 * MiB);
    expect(b.total).toBe(16 * MiB + 20 * MiB);
    expect(b.regions.map((r) => [r.name, r.zoneDevice])).toEqual([['ram0', false], ['pmem0', true], ['p2pbar', true]]);
  });

  it('80 GiB of GPU memory as a P2PDMA BAR: about 1.2 GB of memmap at 4 KiB pages, about 83 MB at 64 KiB', () => {
    const vram = { name: 'vram', bytes: 80 * GiB, pgmap: true };
    const at4k = createMmMachine({ ramBytes: GiB, deviceMemory: [vram] }).memmapBytes();
    // 20,971,520 struct pages x 64 B
    expect(at4k.p2pdma).toBe(1_342_177_280);
    expect(at4k.p2pdma / 2 ** 30).toBeCloseTo(1.25, 5);
    const at64k = createMmMachine({ ramBytes: GiB, pageSize: 64 * KiB, deviceMemory: [vram] }).memmapBytes();
    // 1,310,720 struct pages x 64 B
    expect(at64k.p2pdma).toBe(83_886_080);
    expect(Math.floor(at64k.p2pdma / 1e6)).toBe(83);
    // The same memory as a phyr: one 16-byte {addr, len}, and no struct page.
    const plain = createMmMachine({ ramBytes: GiB, deviceMemory: [{ name: 'vram', bytes: 80 * GiB }] }).memmapBytes();
    expect(plain.p2pdma).toBe(0);
  });

  it('memmapBytesFor counts a partial page as a page and checks its arguments', () => {
    expect(memmapBytesFor(0)).toBe(0);
    expect(memmapBytesFor(1)).toBe(64);
    expect(memmapBytesFor(4097)).toBe(128);
    expect(memmapBytesFor(80 * GiB, 64 * KiB)).toBe(83_886_080);
    expect(() => memmapBytesFor(-1)).toThrow(RangeError);
    expect(() => memmapBytesFor(4096, 3000)).toThrow(/pageSize/);
  });
});
