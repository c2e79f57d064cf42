// Models: a GPU's own MMU as the DRM drivers program it. Like the GMMU of
// drivers/gpu/drm/nouveau/nvkm/subdev/mmu/vmmgp100.c (a page directory whose 2 MiB entries either
// are a leaf or point at a table of 64 KiB ("big") or 4 KiB pages; an aperture field saying whether
// an entry addresses the GPU's VRAM, system memory (snooped or not) or a peer) and the amdgpu VM of
// drivers/gpu/drm/amd/amdgpu/amdgpu_vm_pt.c (with the AMDGPU_PTE_VALID, _SYSTEM, _SNOOPED and
// _WRITEABLE bits of amdgpu_vm.h),
// in a simple format of the model's own, documented below. The tables live in system RAM, taken
// from a dma_pool of the GPU (coherent memory): the GPU walks them by DMA through its own path (its
// IOMMU domain included), as a GART walks its table. Leaf tables are filled from a DMA list through
// the common descriptor builder (drivers/sgl): a GPU page table is "basically a convoluted PRP".
//
// Format (every entry 8 bytes, little endian; GPU virtual addresses are 39 bits):
//   level 2 (root, one 4 KiB table): 512 entries of 1 GiB, each VALID pointing at a level-1 table;
//   level 1: 512 entries of 2 MiB, each either a 2 MiB leaf (BIG set), or VALID pointing at a leaf
//            table of 512 x 4 KiB entries, or (PT64 set) at one of 32 x 64 KiB entries (the rest of
//            its 4 KiB page is zero);
//   bit 0 VALID, bit 1 SYSTEM (the address is a DMA address the GPU issues on PCIe: system RAM, an
//   IOVA, a peer BAR's bus address; clear: an offset in its own VRAM), bit 2 SNOOP (coherent with
//   the CPU caches), bit 3 WRITE, bit 4 FABRIC (an offset in the VRAM of the peer GPU whose link id
//   is in bits 8-11, reached over the private fabric, not over PCIe), bit 5 BIG, bit 6 PT64,
//   bits 12-63 the address (4 KiB aligned). Table pointers are VALID | SYSTEM | SNOOP.
// Model deviation: the GPU has no TLB (every access walks the tables), GPU virtual addresses are
// handed out upwards in 2 MiB-aligned slots and never reused, and a 2 MiB slot holds one mapping
// (a mapping's tail slot is not shared), so the page size of each 2 MiB slot is chosen once.

import { SlotKey, checkLen, err, ok, type Result } from '../../base/index.ts';
import {
  dmaContextOf, dmaPoolCreate, dmaPoolDestroy, dmaPoolFree, dmaPoolZalloc, type DmaPool,
} from '../../dma/index.ts';
import { deviceReleaseDriver, driverProbe, toPciDev, type Device } from '../../pci/index.ts';
import { RANGE_MMIO, type DmaList } from '../../phyr/index.ts';
import { sglBuild, sglEntries, sglFree, type SglBlock, type SglHooks } from '../sgl/index.ts';
import './counters.ts';

export const GPU_PTE_VALID = 1 << 0;
export const GPU_PTE_SYSTEM = 1 << 1;
export const GPU_PTE_SNOOP = 1 << 2;
export const GPU_PTE_WRITE = 1 << 3;
export const GPU_PTE_FABRIC = 1 << 4;
export const GPU_PDE_BIG = 1 << 5;
export const GPU_PDE_PT64 = 1 << 6;
export const GPU_PTE_PEER_SHIFT = 8;
/** Bits 12-63: the address. */
const ADDR_MASK = ~0xfffn & ((1n << 64n) - 1n);

const SZ_4K = 4096;
const SZ_64K = 65536;
const SZ_2M = 2 * 1024 * 1024;
const SZ_1G = 1024 * 1024 * 1024;
/** The GPU's virtual address space: 39 bits. */
export const GPU_VA_BITS = 39;
const VA_LIMIT = 1n << BigInt(GPU_VA_BITS);
/** The first GPU virtual address handed out (the low 4 GiB stay for the driver's own use). */
const VA_BASE = 1n << 32n;

/** Where an entry's address points. */
export type GpuAperture = 'system' | 'vram' | { readonly fabricPeer: number };

/** One translated piece, as the GPU's MMU sees it. */
export interface GpuPte {
  readonly addr: bigint;
  readonly len: number;
  /** The entry's low bits (GPU_PTE_*). */
  readonly bits: number;
}

/** A GPU: its MMU's tables and its VRAM (BAR 0), kept on its device. */
export class Gpu {
  readonly dev: Device;
  /** Page-table pages: 4 KiB blocks of coherent memory. */
  readonly pool: DmaPool;
  readonly root: { readonly cpuPhys: bigint; readonly dmaAddr: bigint };
  /** Level-1 tables by root index. */
  readonly pd1 = new Map<number, { cpuPhys: bigint; dmaAddr: bigint }>();
  /** BAR 0 as the GPU's VRAM (CPU physical range), or null when the function has no BAR. */
  readonly vram: { readonly start: bigint; readonly len: number } | null;
  /** Peers on the private fabric, by link id (1-15). */
  readonly fabricPeers = new Map<number, Gpu>();
  /** Live mappings. */
  readonly mappings = new Set<GpuMapping>();
  nextVa = VA_BASE;
  alive = true;

  /** @internal use gpuProbe. */
  constructor(dev: Device, pool: DmaPool, root: { cpuPhys: bigint; dmaAddr: bigint }) {
    this.dev = dev;
    this.pool = pool;
    this.root = root;
    const bar = (dev.pci ? toPciDev(dev).bars : []).find((b) => b.index === 0);
    this.vram = bar ? { start: bar.region.start, len: bar.region.len } : null;
  }
}

/** One range of GPU virtual addresses mapped by gpuMapDmaList. */
export class GpuMapping {
  readonly gpu: Gpu;
  readonly va: bigint;
  readonly len: number;
  /** Leaf entries written, by page size. */
  readonly pte4k: number;
  readonly pte64k: number;
  readonly pte2m: number;
  /** Bytes of page-table memory this mapping took (leaf tables, 4 KiB each) and wrote (entries x 8). */
  readonly tableBytes: number;
  readonly entryBytes: number;
  /** Leaf tables (from sglBuild) and the level-1 slots written. */
  readonly blocks: SglBlock[];
  readonly slots: Array<{ pd: { cpuPhys: bigint }; index: number }>;
  live = true;

  /** @internal built by gpuMapDmaList. */
  constructor(gpu: Gpu, va: bigint, len: number, counts: { k4: number; k64: number; m2: number }, blocks: SglBlock[],
    slots: Array<{ pd: { cpuPhys: bigint }; index: number }>, entryBytes: number) {
    this.gpu = gpu;
    this.va = va;
    this.len = len;
    this.pte4k = counts.k4;
    this.pte64k = counts.k64;
    this.pte2m = counts.m2;
    this.blocks = blocks;
    this.slots = slots;
    this.tableBytes = blocks.length * SZ_4K;
    this.entryBytes = entryBytes;
  }

  /** Leaf entries in all. */
  get entries(): number {
    return this.pte4k + this.pte64k + this.pte2m;
  }
}

const GPU_SLOT = new SlotKey<Gpu>('gpu');

/**
 * The driver a probed GPU is bound to: amdgpu's PCI driver (drivers/gpu/drm/amd/amdgpu/amdgpu_drv.c:
 * amdgpu_kms_pci_driver.name is DRIVER_NAME, "amdgpu" in amdgpu_drv.h), the driver whose dma-buf
 * export the GPU buffer objects of drivers/dmabuf model.
 */
export const GPU_DRIVER_NAME = 'amdgpu';

/** The GPU driver bound to dev, or null. */
export function gpuOf(dev: Device): Gpu | null {
  const g = dev.slots.get(GPU_SLOT);
  return g !== undefined && g.alive ? g : null;
}

/**
 * Probes a GPU on dev: a dma_pool of 4 KiB table pages and the root table (zeroed). Probing twice
 * returns the same GPU. Errors: ENOMEM (no coherent memory for the pool or the root).
 */
export function gpuProbe(dev: Device): Result<Gpu> {
  const existing = gpuOf(dev);
  if (existing) return ok(existing);
  return driverProbe(dev, GPU_DRIVER_NAME, () => {
    const pool = dmaPoolCreate(`${dev.name}-gpu-pt`, dev, SZ_4K, SZ_4K, 0);
    if (!pool.ok) return pool;
    const root = dmaPoolZalloc(pool.value);
    if (!root.ok) {
      dmaPoolDestroy(pool.value);
      return root;
    }
    dmaContextOf(dev).mm.stats.gpuPtTablesAllocated++;
    const g = new Gpu(dev, pool.value, root.value);
    dev.slots.set(GPU_SLOT, g);
    return ok(g);
  });
}

/** Unbinds the GPU: every mapping is unmapped and the table pool destroyed. */
export function gpuRemove(gpu: Gpu): void {
  if (!gpu.alive) return;
  for (const mp of [...gpu.mappings]) gpuUnmap(mp);
  const mm = dmaContextOf(gpu.dev).mm;
  for (const t of gpu.pd1.values()) {
    dmaPoolFree(gpu.pool, t.cpuPhys, t.dmaAddr);
    mm.stats.gpuPtTablesFreed++;
  }
  gpu.pd1.clear();
  dmaPoolFree(gpu.pool, gpu.root.cpuPhys, gpu.root.dmaAddr);
  mm.stats.gpuPtTablesFreed++;
  dmaPoolDestroy(gpu.pool);
  for (const [id, peer] of gpu.fabricPeers) {
    gpu.fabricPeers.delete(id);
    for (const [pid, p] of peer.fabricPeers) if (p === gpu) peer.fabricPeers.delete(pid);
  }
  gpu.alive = false;
  gpu.dev.slots.delete(GPU_SLOT);
  deviceReleaseDriver(gpu.dev, GPU_DRIVER_NAME);
}

/**
 * Connects two GPUs by their private fabric (an XGMI / NVLink style link: no PCIe, no IOMMU).
 * Returns the link id each one uses for the other. @throws RangeError for a GPU linked to itself
 * or more than 15 peers.
 */
export function gpuFabricConnect(a: Gpu, b: Gpu): { aToB: number; bToA: number } {
  if (a === b) throw new RangeError(`b must be another GPU than a, got ${a.dev.name} twice`);
  const id = (g: Gpu, peer: Gpu): number => {
    for (const [k, p] of g.fabricPeers) if (p === peer) return k;
    for (let k = 1; k <= 15; k++) {
      if (!g.fabricPeers.has(k)) {
        g.fabricPeers.set(k, peer);
        return k;
      }
    }
    throw new RangeError(`${g.dev.name} has 15 fabric peers already`);
  };
  return { aToB: id(a, b), bToA: id(b, a) };
}

/** The 8-byte entry for an address and low bits. */
function entry(addr: bigint, bits: number): bigint {
  return (addr & ADDR_MASK) | BigInt(bits);
}

function writeEntry(gpu: Gpu, tableCpu: bigint, index: number, value: bigint): void {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, value, true);
  dmaContextOf(gpu.dev).mm.mem.write(tableCpu + BigInt(index * 8), b);
}

/** Options of gpuMapDmaList. */
export interface GpuMapOptions {
  /** GPU may write (GPU_PTE_WRITE). Default true. */
  readonly write?: boolean;
  /** What the list's addresses are. Default 'system' (DMA addresses). */
  readonly aperture?: GpuAperture;
}

/** The low bits of a leaf for a piece with range flags `flags`. */
function leafBits(aperture: GpuAperture, write: boolean, flags: number): number {
  let bits = GPU_PTE_VALID | (write ? GPU_PTE_WRITE : 0);
  if (aperture === 'system') {
    bits |= GPU_PTE_SYSTEM;
    // I/O memory (a peer BAR) is never snooped; system RAM is
    if ((flags & RANGE_MMIO) === 0) bits |= GPU_PTE_SNOOP;
  } else if (aperture !== 'vram') {
    bits |= GPU_PTE_FABRIC | (aperture.fabricPeer << GPU_PTE_PEER_SHIFT);
  }
  return bits;
}

interface Piece { addr: bigint; len: number; flags: number }

/** The level-1 table for root index i, allocated (zeroed) and linked on first use. */
function pd1For(gpu: Gpu, i: number): Result<{ cpuPhys: bigint; dmaAddr: bigint }> {
  const t = gpu.pd1.get(i);
  if (t) return ok(t);
  const r = dmaPoolZalloc(gpu.pool);
  if (!r.ok) return r;
  dmaContextOf(gpu.dev).mm.stats.gpuPtTablesAllocated++;
  gpu.pd1.set(i, r.value);
  writeEntry(gpu, gpu.root.cpuPhys, i, entry(r.value.dmaAddr, GPU_PTE_VALID | GPU_PTE_SYSTEM | GPU_PTE_SNOOP));
  return ok(r.value);
}

/** sglBuild hooks for one leaf table of pages of `page` bytes. */
function leafHooks(gpu: Gpu, page: number, bitsAt: (addr: bigint) => number): SglHooks {
  return {
    name: `${gpu.dev.name} GPU page table (${page === SZ_4K ? '4 KiB' : '64 KiB'} pages)`,
    entrySize: 8,
    split: 'page',
    pageSize: page,
    inlineEntries: 0,
    inlineBeforeList: 0,
    entriesPerList: SZ_2M / page,
    encodeData(view, off, addr) {
      view.setBigUint64(off, entry(addr, bitsAt(addr)), true);
    },
    poolFor: () => gpu.pool,
  };
}

/**
 * Maps a DMA list at a fresh GPU virtual address: per 2 MiB slot a 2 MiB leaf when the slot is one
 * 2 MiB-aligned piece, else a leaf table of 64 KiB pages when every piece is 64 KiB-aligned, else
 * one of 4 KiB pages; leaf tables are built by sglBuild. Entries of RAM are snooped, entries of
 * I/O memory (RANGE_MMIO) are not. Errors: EINVAL (an empty list, or one the GPU cannot page: a
 * piece that starts or ends inside a 4 KiB page), ENOSPC (no GPU virtual addresses left), ENOMEM
 * (no table page); nothing stays mapped on failure.
 */
export function gpuMapDmaList(gpu: Gpu, list: DmaList, opts: GpuMapOptions = {}): Result<GpuMapping> {
  if (!(gpu instanceof Gpu) || !gpu.alive) throw new TypeError(`gpu must be a probed GPU, got ${String(gpu)}`);
  const write = opts.write ?? true;
  const aperture = opts.aperture ?? 'system';
  const pieces: Piece[] = [];
  for (let i = 0; i < list.count; i++) pieces.push({ addr: list.addrAt(i), len: list.lenAt(i), flags: list.flagsAt(i) });
  if (pieces.length === 0) return err('EINVAL', `${gpu.dev.name}: empty DMA list`);
  // the descriptor builder's page rules, plus a first piece that starts and a last that ends a page
  const check = sglEntries(leafHooks(gpu, SZ_4K, () => 0), pieces);
  if (!check.ok) return check;
  const last = pieces[pieces.length - 1];
  if (pieces[0].addr % BigInt(SZ_4K) !== 0n || (last.addr + BigInt(last.len)) % BigInt(SZ_4K) !== 0n) {
    return err('EINVAL', `${gpu.dev.name}: a GPU maps whole 4 KiB pages; the list starts at 0x${pieces[0].addr.toString(16)} and is ${list.totalLen} bytes`);
  }
  const len = list.totalLen;
  const slotsNeeded = Math.ceil(len / SZ_2M);
  const va = gpu.nextVa;
  if (va + BigInt(slotsNeeded * SZ_2M) > VA_LIMIT) return err('ENOSPC', `${gpu.dev.name}: no GPU virtual addresses left for ${len} bytes`);
  const stats = dmaContextOf(gpu.dev).mm.stats;
  const blocks: SglBlock[] = [];
  const slots: Array<{ pd: { cpuPhys: bigint }; index: number }> = [];
  const counts = { k4: 0, k64: 0, m2: 0 };
  let entryBytes = 0;
  let p = 0;
  let pOff = 0;
  const undo = (): void => {
    for (const s of slots) writeEntry(gpu, s.pd.cpuPhys, s.index, 0n);
    sglFree(blocks);
    stats.gpuPtTablesFreed += blocks.length;
  };
  for (let s = 0; s < slotsNeeded; s++) {
    // the pieces of this 2 MiB slot
    const slot: Piece[] = [];
    let want = Math.min(SZ_2M, len - s * SZ_2M);
    while (want > 0) {
      const pc = pieces[p];
      const n = Math.min(want, pc.len - pOff);
      slot.push({ addr: pc.addr + BigInt(pOff), len: n, flags: pc.flags });
      want -= n;
      pOff += n;
      if (pOff === pc.len) { p++; pOff = 0; }
    }
    const slotVa = va + BigInt(s * SZ_2M);
    const ri = Number(slotVa / BigInt(SZ_1G)) % 512;
    const pi = Number((slotVa / BigInt(SZ_2M)) % 512n);
    const pd = pd1For(gpu, ri);
    if (!pd.ok) { undo(); return pd; }
    const bitsAt = (addr: bigint): number => {
      const pc = slot.find((x) => addr >= x.addr && addr < x.addr + BigInt(x.len)) ?? slot[0];
      return leafBits(aperture, write, pc.flags);
    };
    let pde: bigint;
    if (slot.length === 1 && slot[0].len === SZ_2M && slot[0].addr % BigInt(SZ_2M) === 0n) {
      pde = entry(slot[0].addr, bitsAt(slot[0].addr) | GPU_PDE_BIG);
      counts.m2++;
      stats.gpuPte2m++;
    } else {
      const big = slot.every((x) => x.addr % BigInt(SZ_64K) === 0n && x.len % SZ_64K === 0);
      const page = big ? SZ_64K : SZ_4K;
      const b = sglBuild(gpu.dev, leafHooks(gpu, page, bitsAt), slot);
      if (!b.ok) { undo(); return b; }
      const blk = b.value.blocks[0];
      blocks.push(blk);
      stats.gpuPtTablesAllocated++;
      // the builder wrote the used slots; the rest of the table page must read as invalid
      const used = b.value.descriptorBytes;
      if (used < SZ_4K) dmaContextOf(gpu.dev).mm.mem.fill(blk.cpuPhys + BigInt(used), SZ_4K - used, 0);
      entryBytes += used;
      if (big) { counts.k64 += b.value.nrEntries; stats.gpuPte64k += b.value.nrEntries; }
      else { counts.k4 += b.value.nrEntries; stats.gpuPte4k += b.value.nrEntries; }
      pde = entry(blk.dmaAddr, GPU_PTE_VALID | GPU_PTE_SYSTEM | GPU_PTE_SNOOP | (big ? GPU_PDE_PT64 : 0));
    }
    writeEntry(gpu, pd.value.cpuPhys, pi, pde);
    entryBytes += 8;
    slots.push({ pd: pd.value, index: pi });
  }
  gpu.nextVa = va + BigInt(slotsNeeded * SZ_2M);
  const mp = new GpuMapping(gpu, va, len, counts, blocks, slots, entryBytes);
  gpu.mappings.add(mp);
  return ok(mp);
}

/**
 * Unmaps a mapping: its level-1 entries are cleared and its leaf tables go back to the pool, so a
 * GPU access there faults from now on (there is no GPU TLB to invalidate). A second unmap is a
 * WARN and changes nothing.
 */
export function gpuUnmap(mp: GpuMapping): void {
  const gpu = mp.gpu;
  const mm = dmaContextOf(gpu.dev).mm;
  if (!mp.live) {
    mm.events.record('WARN', 'gpu', `${gpu.dev.name}: GPU mapping at 0x${mp.va.toString(16)} unmapped twice`);
    return;
  }
  for (const s of mp.slots) writeEntry(gpu, s.pd.cpuPhys, s.index, 0n);
  sglFree(mp.blocks);
  mm.stats.gpuPtTablesFreed += mp.blocks.length;
  mp.live = false;
  gpu.mappings.delete(mp);
}

/** Reads an 8-byte table entry as the GPU does: a DMA read through its own path. */
function gpuReadEntry(gpu: Gpu, tableDma: bigint, index: number): Result<bigint> {
  const r = gpu.dev.dmaRead(tableDma + BigInt(index * 8), 8);
  if (!r.ok) return r;
  return ok(new DataView(r.value.buffer, r.value.byteOffset, 8).getBigUint64(0, true));
}

/** What the MMU finds for va: the leaf's address for va, the bytes left in the leaf, and its bits. */
function walk(gpu: Gpu, va: bigint): Result<{ addr: bigint; left: number; bits: number }> {
  const mm = dmaContextOf(gpu.dev).mm;
  mm.stats.gpuPtWalks++;
  const fault = (why: string): Result<never> => {
    mm.stats.gpuMmuFaults++;
    mm.events.fault('gpu-mmu', `${gpu.dev.name}: GPU MMU fault at 0x${va.toString(16)}: ${why}`, { dev: gpu.dev.name, va });
    return err('EFAULT', why);
  };
  if (va < 0n || va >= VA_LIMIT) return fault('beyond the GPU virtual address space');
  const e2 = gpuReadEntry(gpu, gpu.root.dmaAddr, Number(va / BigInt(SZ_1G)));
  if (!e2.ok) return fault(`table read failed: ${e2.message ?? e2.errno}`);
  if ((e2.value & 1n) === 0n) return fault('no level-1 table');
  const e1 = gpuReadEntry(gpu, e2.value & ADDR_MASK, Number((va / BigInt(SZ_2M)) % 512n));
  if (!e1.ok) return fault(`table read failed: ${e1.message ?? e1.errno}`);
  const pde = e1.value;
  if ((pde & 1n) === 0n) return fault('invalid level-1 entry');
  const inSlot = Number(va % BigInt(SZ_2M));
  if ((Number(pde & 0xfffn) & GPU_PDE_BIG) !== 0) {
    return ok({ addr: (pde & ADDR_MASK) + BigInt(inSlot), left: SZ_2M - inSlot, bits: Number(pde & 0xfffn) });
  }
  const page = (Number(pde & 0xfffn) & GPU_PDE_PT64) !== 0 ? SZ_64K : SZ_4K;
  const e0 = gpuReadEntry(gpu, pde & ADDR_MASK, Math.floor(inSlot / page));
  if (!e0.ok) return fault(`table read failed: ${e0.message ?? e0.errno}`);
  const pte = e0.value;
  if ((pte & 1n) === 0n) return fault('invalid page entry');
  const off = inSlot % page;
  return ok({ addr: (pte & ADDR_MASK) + BigInt(off), left: page - off, bits: Number(pte & 0xfffn) });
}

interface Target { gpu: Gpu; bits: number; addr: bigint; len: number }

/** Translates [va, va + len) to targets, or the fault. */
function translate(gpu: Gpu, va: bigint, len: number, write: boolean): Result<Target[]> {
  const out: Target[] = [];
  let a = va;
  let left = len;
  while (left > 0) {
    const w = walk(gpu, a);
    if (!w.ok) return w;
    if (write && (w.value.bits & GPU_PTE_WRITE) === 0) {
      const mm = dmaContextOf(gpu.dev).mm;
      mm.stats.gpuMmuFaults++;
      mm.events.fault('gpu-mmu', `${gpu.dev.name}: GPU MMU fault at 0x${a.toString(16)}: write to a read-only page`, { dev: gpu.dev.name, va: a });
      return err('EFAULT', 'write to a read-only page');
    }
    const n = Math.min(left, w.value.left);
    out.push({ gpu, bits: w.value.bits, addr: w.value.addr, len: n });
    a += BigInt(n);
    left -= n;
  }
  return ok(out);
}

/** The VRAM physical address of a local or fabric target, or the reason it has none. */
function vramPhys(gpu: Gpu, t: Target): bigint | string {
  let owner = gpu;
  if ((t.bits & GPU_PTE_FABRIC) !== 0) {
    const peer = gpu.fabricPeers.get((t.bits >> GPU_PTE_PEER_SHIFT) & 0xf);
    if (!peer || !peer.alive) return 'no fabric peer with that link id';
    owner = peer;
  }
  if (!owner.vram || t.addr + BigInt(t.len) > BigInt(owner.vram.len)) return `offset 0x${t.addr.toString(16)} is beyond ${owner.dev.name}'s VRAM`;
  return owner.vram.start + t.addr;
}

function targetFault(gpu: Gpu, va: bigint, why: string): Result<never> {
  const mm = dmaContextOf(gpu.dev).mm;
  mm.stats.gpuMmuFaults++;
  mm.events.fault('gpu-mmu', `${gpu.dev.name}: GPU access at 0x${va.toString(16)} failed: ${why}`, { dev: gpu.dev.name, va });
  return err('EFAULT', why);
}

/**
 * The GPU reads len bytes at a GPU virtual address: its MMU translates, then system entries go
 * through its DMA path (dev.dmaRead: IOMMU, P2P routing), VRAM entries to its own memory, fabric
 * entries to the peer's VRAM over the link. Errors: EFAULT (an MMU fault or a faulting DMA,
 * reported on the event log).
 */
export function gpuRead(gpu: Gpu, va: bigint, len: number): Result<Uint8Array> {
  checkLen('len', len, 1);
  const t = translate(gpu, va, len, false);
  if (!t.ok) return t;
  const mm = dmaContextOf(gpu.dev).mm;
  const out = new Uint8Array(len);
  let at = 0;
  for (const x of t.value) {
    if ((x.bits & GPU_PTE_SYSTEM) !== 0) {
      const r = gpu.dev.dmaRead(x.addr, x.len);
      if (!r.ok) return targetFault(gpu, va + BigInt(at), `DMA read faulted (${r.errno})`);
      out.set(r.value, at);
      mm.stats.gpuSystemBytes += x.len;
    } else {
      const phys = vramPhys(gpu, x);
      if (typeof phys === 'string') return targetFault(gpu, va + BigInt(at), phys);
      out.set(mm.mem.read(phys, x.len), at);
      if ((x.bits & GPU_PTE_FABRIC) !== 0) mm.stats.gpuFabricBytes += x.len;
      else mm.stats.gpuVramBytes += x.len;
    }
    at += x.len;
  }
  return ok(out);
}

/**
 * The GPU writes bytes at a GPU virtual address (translation as gpuRead). Every page is translated
 * before a byte moves; a DMA fault on the way leaves the pieces before it written. Errors: EFAULT.
 */
export function gpuWrite(gpu: Gpu, va: bigint, bytes: Uint8Array): Result<void> {
  if (!(bytes instanceof Uint8Array)) throw new TypeError(`bytes must be a Uint8Array, got ${typeof bytes}`);
  checkLen('bytes.length', bytes.length, 1);
  const t = translate(gpu, va, bytes.length, true);
  if (!t.ok) return t;
  const mm = dmaContextOf(gpu.dev).mm;
  let at = 0;
  for (const x of t.value) {
    const chunk = bytes.subarray(at, at + x.len);
    if ((x.bits & GPU_PTE_SYSTEM) !== 0) {
      const r = gpu.dev.dmaWrite(x.addr, chunk);
      if (!r.ok) return targetFault(gpu, va + BigInt(at), `DMA write faulted (${r.errno})`);
      mm.stats.gpuSystemBytes += x.len;
    } else {
      const phys = vramPhys(gpu, x);
      if (typeof phys === 'string') return targetFault(gpu, va + BigInt(at), phys);
      mm.mem.deviceWrite(phys, chunk);
      if ((x.bits & GPU_PTE_FABRIC) !== 0) mm.stats.gpuFabricBytes += x.len;
      else mm.stats.gpuVramBytes += x.len;
    }
    at += x.len;
  }
  return ok();
}

/** The GPU's copy engine: len bytes from srcVa to dstVa, both through its MMU. Errors: EFAULT. */
export function gpuCopy(gpu: Gpu, dstVa: bigint, srcVa: bigint, len: number): Result<void> {
  const r = gpuRead(gpu, srcVa, len);
  if (!r.ok) return r;
  return gpuWrite(gpu, dstVa, r.value);
}

/**
 * Decodes the tables' bytes (read from memory by the CPU, not by the GPU) for [va, va + len):
 * the leaves in order, contiguous ones with equal bits merged. Invalid entries end the decode.
 */
export function gpuPtDecode(gpu: Gpu, va: bigint, len: number): GpuPte[] {
  const mem = dmaContextOf(gpu.dev).mm.mem;
  const rd = (tableCpu: bigint, i: number): bigint => new DataView(mem.read(tableCpu + BigInt(i * 8), 8).buffer).getBigUint64(0, true);
  // tables are found by DMA address; the model's pools are coherent memory, so look the CPU address up
  const cpuOf = new Map<bigint, bigint>();
  for (const t of gpu.pd1.values()) cpuOf.set(t.dmaAddr, t.cpuPhys);
  for (const mp of gpu.mappings) for (const b of mp.blocks) cpuOf.set(b.dmaAddr, b.cpuPhys);
  const out: GpuPte[] = [];
  const push = (addr: bigint, n: number, bits: number): void => {
    const prev = out[out.length - 1];
    if (prev && prev.bits === bits && prev.addr + BigInt(prev.len) === addr) out[out.length - 1] = { addr: prev.addr, len: prev.len + n, bits };
    else out.push({ addr, len: n, bits });
  };
  let a = va;
  let left = len;
  while (left > 0) {
    const e2 = rd(gpu.root.cpuPhys, Number(a / BigInt(SZ_1G)));
    if ((e2 & 1n) === 0n) break;
    const pd = cpuOf.get(e2 & ADDR_MASK);
    if (pd === undefined) break;
    const pde = rd(pd, Number((a / BigInt(SZ_2M)) % 512n));
    if ((pde & 1n) === 0n) break;
    const inSlot = Number(a % BigInt(SZ_2M));
    const pbits = Number(pde & 0xfffn);
    let n: number;
    if ((pbits & GPU_PDE_BIG) !== 0) {
      n = Math.min(left, SZ_2M - inSlot);
      push((pde & ADDR_MASK) + BigInt(inSlot), n, pbits & ~GPU_PDE_BIG);
    } else {
      const page = (pbits & GPU_PDE_PT64) !== 0 ? SZ_64K : SZ_4K;
      const pt = cpuOf.get(pde & ADDR_MASK);
      if (pt === undefined) break;
      const pte = rd(pt, Math.floor(inSlot / page));
      if ((pte & 1n) === 0n) break;
      const off = inSlot % page;
      n = Math.min(left, page - off);
      push((pte & ADDR_MASK) + BigInt(off), n, Number(pte & 0xfffn));
    }
    a += BigInt(n);
    left -= n;
  }
  return out;
}
