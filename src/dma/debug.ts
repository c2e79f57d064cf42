// Models: kernel/dma/debug.c (CONFIG_DMA_API_DEBUG; Linux 6.19; reference 14): every mapping is
// tracked per device; unmaps and syncs are checked against it (never mapped, double unmap, wrong
// size, wrong direction, wrong function, sg entry count, sync outside the mapping); leaks are reported
// when a device is released; and the ownership rule of reference 14.1 (the CPU must not write a
// buffer the device owns while it is bounced or the device is non-coherent) is checked on every CPU
// store through the machine's physical memory (the PhysMem onCpuWrite hook; a model addition: the
// kernel cannot see plain CPU stores).
// Violations are 'DMA-DEBUG' events on the machine's log, worded after the kernel's messages.
// Model deviation: the kernel's dma_need_unmap()/dma_need_sync() answer true whenever dma-debug is
// built in; here dma-debug only observes, and the API answers as a production kernel does. Mappings
// made while dma_need_unmap() was false (and not bounced) may be dropped without unmap: they are not
// reported as leaks (reference 14.8).

import type { MachineMm } from '../mm/index.ts';
import type { Device } from '../pci/index.ts';
import type { SgTable } from '../phyr/index.ts';
import type { EventLog } from '../base/index.ts';
import { dmaContextOf } from './context.ts';
import { DMA_BIDIRECTIONAL, DMA_FROM_DEVICE, DMA_MAPPING_ERROR, DMA_TO_DEVICE, dmaDirName } from './constants.ts';

/** How a mapping was made, as dma-debug's entry type. */
export type DmaDebugType = 'phys' | 'sg' | 'iova';

/** One tracked mapping (struct dma_debug_entry). */
export interface DmaDebugEntry {
  readonly dev: Device;
  readonly type: DmaDebugType;
  readonly devAddr: bigint;
  readonly size: number;
  /** The CPU physical address the driver mapped (the original, not the bounce buffer). */
  readonly paddr: bigint;
  readonly dir: number;
  readonly attrs: number;
  /** sg only: orig_nents of the mapping call, and the number of DMA entries it produced. */
  readonly sgCallEnts: number;
  readonly sgMappedEnts: number;
  /** Data goes through a bounce buffer. */
  readonly bounced: boolean;
  /** The device was cache-coherent at map time. */
  readonly coherent: boolean;
  /** The buffer belongs to the device (after map / sync_for_device) rather than the CPU. */
  deviceOwns: boolean;
  /** Mapped while dma_need_unmap() was false and not bounced: dropping it without unmap is allowed. */
  readonly unmapOptional: boolean;
}

const debugs = new WeakMap<MachineMm, DmaDebug>();

/** A mapping as the CPU-write index keys it: devAddr holds the entry's CPU physical address. */
interface PhysKey {
  readonly devAddr: bigint;
  readonly size: number;
  readonly entry: DmaDebugEntry;
}

/** Most entries in one chunk of a DevIndex; STRIDE (> CHUNK) spaces the positions of chunks. */
const CHUNK = 256;
const STRIDE = 512;
/** Slots of a chunk: room to grow at both ends. */
const CAP = 512;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/** What an address-ordered index needs of its items: a start (DMA or CPU physical) and a size. */
interface Keyed {
  readonly devAddr: bigint;
  readonly size: number;
}

/** floor(log2(size)) for size >= 1 (0 for 0): the size class of an entry. */
function sizeClass(size: number): number {
  if (size < 2) return 0;
  if (size < 0x100000000) return 31 - Math.clz32(size);
  return 63 - Math.clz32(Math.floor(size / 0x100000000));
}

/** Whether [start, start + size) contains addr (keys are Number(start) and Number(addr)). */
function contains(e: Keyed, key: number, addr: bigint, addrKey: number): boolean {
  if (key + e.size <= MAX_SAFE && addrKey <= MAX_SAFE) return key <= addrKey && addrKey < key + e.size;
  return e.devAddr <= addr && addr < e.devAddr + BigInt(e.size);
}

/**
 * A sorted run of at most CHUNK entries in CAP slots, used as a deque: the entries occupy
 * [start, start + len), so inserting or removing near either end moves only the entries on that side.
 */
class Chunk<T extends Keyed> {
  readonly keys = new Float64Array(CAP);
  readonly ents: Array<T | null> = new Array<T | null>(CAP).fill(null);
  start = CAP >> 2;
  len = 0;

  /** Moves the entries to the middle of the slots. */
  private recenter(): void {
    const to = (CAP - this.len) >> 1;
    const from = this.start;
    if (to === from) return;
    this.keys.copyWithin(to, from, from + this.len);
    const es = this.ents;
    if (to < from) for (let i = 0; i < this.len; i++) es[to + i] = es[from + i];
    else for (let i = this.len - 1; i >= 0; i--) es[to + i] = es[from + i];
    for (let i = from; i < to && i < from + this.len; i++) es[i] = null;
    for (let i = Math.max(to + this.len, from); i < from + this.len; i++) es[i] = null;
    this.start = to;
  }

  /** Inserts at index j (0..len). */
  insert(j: number, key: number, e: T): void {
    if ((j <= this.len - j && this.start === 0) || (j > this.len - j && this.start + this.len === CAP)) this.recenter();
    const s = this.start, keys = this.keys, es = this.ents;
    if (j <= this.len - j && s > 0) {
      keys.copyWithin(s - 1, s, s + j);
      for (let i = s - 1; i < s - 1 + j; i++) es[i] = es[i + 1];
      this.start = s - 1;
      keys[s - 1 + j] = key;
      es[s - 1 + j] = e;
    } else {
      keys.copyWithin(s + j + 1, s + j, s + this.len);
      for (let i = s + this.len; i > s + j; i--) es[i] = es[i - 1];
      keys[s + j] = key;
      es[s + j] = e;
    }
    this.len++;
  }

  /** Removes the entry at index j. */
  removeAt(j: number): void {
    const s = this.start, keys = this.keys, es = this.ents;
    if (j < this.len - 1 - j) {
      keys.copyWithin(s + 1, s, s + j);
      for (let i = s + j; i > s; i--) es[i] = es[i - 1];
      es[s] = null;
      this.start = s + 1;
    } else {
      keys.copyWithin(s + j, s + j + 1, s + this.len);
      for (let i = s + j; i < s + this.len - 1; i++) es[i] = es[i + 1];
      es[s + this.len - 1] = null;
    }
    this.len--;
  }

  /** Moves the entries from index `from` on into a new chunk, which is returned. */
  splitOff(from: number): Chunk<T> {
    const c = new Chunk<T>();
    const n = this.len - from;
    c.start = (CAP - n) >> 1;
    c.len = n;
    const s = this.start + from;
    c.keys.set(this.keys.subarray(s, s + n), c.start);
    for (let i = 0; i < n; i++) { c.ents[c.start + i] = this.ents[s + i]; this.ents[s + i] = null; }
    this.len = from;
    return c;
  }
}

/**
 * The tracked mappings of one device, ordered by DMA address (ties in insertion order): sorted
 * chunks of at most CHUNK entries, so add/remove/find cost O(log n + CHUNK) whatever the pattern, and
 * O(log n) when entries come and go at either end of a chunk, as they do for IOVAs allocated top-down
 * or linked bottom-up (dma-debug's hash buckets in the kernel; reference 14). Beside each entry its
 * sort key Number(devAddr) is kept: Number() is monotone, so (key, devAddr) orders exactly like
 * devAddr and the bigint is compared only on equal keys. Live entries are also counted per
 * power-of-two size class, which bounds how far below an address a mapping containing it can start.
 * Positions are chunk * STRIDE + index; -1 is "before the first"; they are valid until a change,
 * which `version` counts (the last exact lookup is remembered for the unmap that follows it).
 */
class DevIndex<T extends Keyed> {
  private readonly chunks: Array<Chunk<T>> = [];
  private readonly classCount = new Int32Array(64);
  private topClass = -1;
  private version = 0;
  private lastAddr = -1n;
  private lastPos = -1;
  private lastVersion = -1;
  count = 0;

  /** A size no live entry reaches (0 when empty). */
  private sizeBound(): number {
    return this.topClass < 0 ? 0 : 2 ** (this.topClass + 1);
  }

  private end(): number {
    return this.chunks.length * STRIDE;
  }

  private at(p: number): T {
    const c = this.chunks[Math.floor(p / STRIDE)];
    return c.ents[c.start + (p % STRIDE)]!;
  }

  private keyAt(p: number): number {
    const c = this.chunks[Math.floor(p / STRIDE)];
    return c.keys[c.start + (p % STRIDE)];
  }

  private prev(p: number): number {
    const j = p % STRIDE;
    if (j > 0) return p - 1;
    const c = Math.floor(p / STRIDE);
    return c === 0 ? -1 : (c - 1) * STRIDE + this.chunks[c - 1].len - 1;
  }

  private next(p: number): number {
    const c = Math.floor(p / STRIDE);
    return (p % STRIDE) + 1 < this.chunks[c].len ? p + 1 : (c + 1) * STRIDE;
  }

  /** -1, 0, 1 as entry j of chunk ch sorts before, with, after (key, addr). */
  private static cmp(ch: Chunk<Keyed>, j: number, key: number, addr: bigint): number {
    const k = ch.keys[ch.start + j];
    if (k !== key) return k < key ? -1 : 1;
    const a = ch.ents[ch.start + j]!.devAddr;
    return a < addr ? -1 : a > addr ? 1 : 0;
  }

  /** First position whose entry sorts after (after) or not before (!after) devAddr addr; end() when none. */
  private bound(key: number, addr: bigint, after: boolean): number {
    const chunks = this.chunks;
    const lim = after ? 0 : -1; // an entry is "before" the target when cmp <= lim
    let a = 0, b = chunks.length;
    while (a < b) {
      const m = (a + b) >> 1;
      if (DevIndex.cmp(chunks[m], 0, key, addr) <= lim) a = m + 1; else b = m;
    }
    if (a === 0) return 0;
    const c = a - 1;
    const ch = chunks[c];
    let x = 1, y = ch.len;
    while (x < y) {
      const m = (x + y) >> 1;
      if (DevIndex.cmp(ch, m, key, addr) <= lim) x = m + 1; else y = m;
    }
    return x < ch.len ? c * STRIDE + x : (c + 1) * STRIDE;
  }

  add(e: T): void {
    const key = Number(e.devAddr);
    const cls = sizeClass(e.size);
    this.classCount[cls]++;
    if (cls > this.topClass) this.topClass = cls;
    this.count++;
    this.version++;
    const chunks = this.chunks;
    if (chunks.length === 0) chunks.push(new Chunk<T>());
    let c: number, j: number;
    const lastCh = chunks[chunks.length - 1];
    if (lastCh.len === 0 || DevIndex.cmp(lastCh, lastCh.len - 1, key, e.devAddr) <= 0) {
      c = chunks.length - 1; j = lastCh.len; // at or above the last: append (IOVAs linked upwards)
    } else if (DevIndex.cmp(chunks[0], 0, key, e.devAddr) > 0) {
      c = 0; j = 0; // below the first: prepend (IOVAs allocated top-down)
    } else {
      const p = this.bound(key, e.devAddr, true);
      c = Math.floor(p / STRIDE); j = p % STRIDE;
      if (c === chunks.length) { c--; j = chunks[c].len; }
    }
    const ch = chunks[c];
    ch.insert(j, key, e);
    if (ch.len >= CHUNK) chunks.splice(c + 1, 0, ch.splitOff(ch.len >> 1));
  }

  private removeAtPos(p: number, e: T): void {
    const c = Math.floor(p / STRIDE);
    const ch = this.chunks[c];
    ch.removeAt(p % STRIDE);
    if (ch.len === 0) this.chunks.splice(c, 1);
    this.count--;
    this.version++;
    const cls = sizeClass(e.size);
    if (--this.classCount[cls] === 0 && cls === this.topClass) {
      while (this.topClass >= 0 && this.classCount[this.topClass] === 0) this.topClass--;
    }
  }

  /** Removes this very entry; false when it is not tracked here. */
  remove(e: T): boolean {
    if (this.lastVersion === this.version && this.lastAddr === e.devAddr && this.lastPos >= 0 && this.at(this.lastPos) === e) {
      this.removeAtPos(this.lastPos, e);
      return true;
    }
    const key = Number(e.devAddr);
    const end = this.end();
    for (let p = this.bound(key, e.devAddr, false); p < end && this.keyAt(p) === key; p = this.next(p)) {
      if (this.at(p) !== e) continue;
      this.removeAtPos(p, e);
      return true;
    }
    return false;
  }

  /** Position of the first entry (in insertion order) starting exactly at addr, or -1. */
  private firstPos(addr: bigint): number {
    if (this.lastVersion === this.version && this.lastAddr === addr) return this.lastPos;
    const key = Number(addr);
    const end = this.end();
    let found = -1;
    const chunks = this.chunks;
    const c0 = chunks[0];
    if (c0 === undefined) {
      found = -1;
    } else if (c0.ents[c0.start]!.devAddr === addr) {
      found = 0; // the lowest mapping (unmapped first after top-down allocation)
    } else {
      for (let p = this.bound(key, addr, false); p < end && this.keyAt(p) === key; p = this.next(p)) {
        if (this.at(p).devAddr === addr) { found = p; break; }
      }
    }
    this.lastAddr = addr;
    this.lastPos = found;
    this.lastVersion = this.version;
    return found;
  }

  /** The entries that start exactly at addr, in insertion order. */
  startingAt(addr: bigint): T[] {
    const out: T[] = [];
    const end = this.end();
    for (let p = this.firstPos(addr); p >= 0 && p < end && this.at(p).devAddr === addr; p = this.next(p)) out.push(this.at(p));
    return out;
  }

  /** The first entry (in insertion order) starting exactly at addr, or undefined. */
  firstAt(addr: bigint): T | undefined {
    const p = this.firstPos(addr);
    return p < 0 ? undefined : this.at(p);
  }

  /**
   * An entry containing addr: the first one starting there, else the one with the highest start
   * below it. Only starts above addr - sizeBound() can qualify, so the walk down stops there.
   */
  containing(addr: bigint): T | undefined {
    const exact = this.firstAt(addr);
    if (exact) return exact;
    const addrKey = Number(addr);
    const floor = addr - BigInt(this.sizeBound());
    const floorKey = Number(floor < 0n ? 0n : floor);
    for (let p = this.prev(this.bound(addrKey, addr, true)); p >= 0; p = this.prev(p)) {
      const k = this.keyAt(p);
      if (k < floorKey) break;
      const e = this.at(p);
      if (contains(e, k, addr, addrKey)) return e;
    }
    return undefined;
  }

  /**
   * Removes entries that overlapping() returned (ascending, all tracked here) in one pass over the
   * positions they span. Returns how many were removed.
   */
  removeSorted(hits: readonly T[]): number {
    if (hits.length === 0) return 0;
    if (hits.length < 8) {
      let n = 0;
      for (const e of hits) if (this.remove(e)) n++;
      return n;
    }
    const first = hits[0];
    const key = Number(first.devAddr);
    const p = this.bound(key, first.devAddr, false);
    let c = Math.floor(p / STRIDE);
    let j = p % STRIDE;
    let k = 0;
    let removed = 0;
    while (c < this.chunks.length && k < hits.length) {
      const ch = this.chunks[c];
      const s = ch.start;
      let w = s + j; // compact chunk c in place from index j on
      for (let r = s + j; r < s + ch.len; r++) {
        const e = ch.ents[r]!;
        if (k < hits.length && e === hits[k]) {
          k++;
          removed++;
          const cls = sizeClass(e.size);
          this.classCount[cls]--;
          continue;
        }
        ch.keys[w] = ch.keys[r];
        ch.ents[w] = e;
        w++;
      }
      for (let r = w; r < s + ch.len; r++) ch.ents[r] = null;
      ch.len = w - s;
      if (ch.len === 0) this.chunks.splice(c, 1);
      else c++;
      j = 0;
    }
    this.count -= removed;
    this.version++;
    // Entries not found in order (not expected) are removed one by one.
    for (; k < hits.length; k++) if (this.remove(hits[k])) removed++;
    while (this.topClass >= 0 && this.classCount[this.topClass] === 0) this.topClass--;
    return removed;
  }

  /** The entries overlapping [addr, end), ascending by start. */
  overlapping(addr: bigint, end: bigint): T[] {
    const out: T[] = [];
    const floor = addr - BigInt(this.sizeBound()) + 1n;
    const from = floor < 0n ? 0n : floor;
    const last = this.end();
    for (let p = this.bound(Number(from), from, false); p < last; p = this.next(p)) {
      const e = this.at(p);
      if (e.devAddr >= end) break;
      if (e.devAddr + BigInt(e.size) > addr) out.push(e);
    }
    return out;
  }

  /** Every entry, ascending by start. */
  all(out: T[]): void {
    for (const ch of this.chunks) for (let i = 0; i < ch.len; i++) out.push(ch.ents[ch.start + i]!);
  }
}

/** The dma-debug state of one machine. */
export class DmaDebug {
  readonly mm: MachineMm;
  /** Checks run when true (dma_debug_disabled() is false). */
  enabled = true;
  private readonly byDev = new Map<Device, DevIndex<DmaDebugEntry>>();
  private liveCount = 0;
  /**
   * The mappings the CPU-write check can flag (bounced, or on a non-coherent device), ordered by the
   * CPU physical address they cover, machine-wide: each is a PhysKey whose devAddr is the entry's paddr.
   */
  private readonly byPhys = new DevIndex<PhysKey>();
  private readonly physKeys = new Map<DmaDebugEntry, PhysKey>();

  constructor(mm: MachineMm) {
    this.mm = mm;
    debugs.set(mm, this);
  }

  get events(): EventLog {
    return this.mm.events;
  }

  /** Number of tracked mappings (of one device, or all). */
  count(dev?: Device): number {
    if (!dev) return this.liveCount;
    return this.byDev.get(dev)?.count ?? 0;
  }

  /** Tracked mappings (of one device, or all), each device's ascending by DMA address. */
  entries(dev?: Device): DmaDebugEntry[] {
    const out: DmaDebugEntry[] = [];
    if (dev) this.byDev.get(dev)?.all(out);
    else for (const ix of this.byDev.values()) ix.all(out);
    return out;
  }

  /** Starts tracking a mapping. */
  add(e: DmaDebugEntry): void {
    let ix = this.byDev.get(e.dev);
    if (!ix) this.byDev.set(e.dev, (ix = new DevIndex()));
    ix.add(e);
    this.liveCount++;
    if (e.bounced || !e.coherent) {
      const k: PhysKey = { devAddr: e.paddr, size: e.size, entry: e };
      this.physKeys.set(e, k);
      this.byPhys.add(k);
    }
  }

  /** Stops tracking a mapping (nothing happens when it is not tracked). */
  remove(e: DmaDebugEntry): void {
    if (this.byDev.get(e.dev)?.remove(e)) {
      this.liveCount--;
      this.forgetPhys(e);
    }
  }

  private forgetPhys(e: DmaDebugEntry): void {
    if (this.physKeys.size === 0) return;
    const k = this.physKeys.get(e);
    if (k === undefined) return;
    this.physKeys.delete(e);
    this.byPhys.remove(k);
  }

  /** Number of tracked mappings a CPU write could violate (bounced or non-coherent). */
  get cpuWriteWatchCount(): number {
    return this.byPhys.count;
  }

  /**
   * Tracked mappings that are bounced or non-coherent and whose CPU range [paddr, paddr + size)
   * overlaps [phys, phys + len), ascending by paddr.
   */
  watchedOverlapping(phys: bigint, len: number): DmaDebugEntry[] {
    if (this.byPhys.count === 0 || len <= 0) return [];
    return this.byPhys.overlapping(phys, phys + BigInt(len)).map((k) => k.entry);
  }

  /** true when some mapping of dev starts exactly at devAddr. */
  hasMappingAt(dev: Device, devAddr: bigint): boolean {
    return this.byDev.get(dev)?.firstAt(devAddr) !== undefined;
  }

  /** bucket_find_exact: the entry mapped at exactly devAddr, preferring one that matches size/dir/type. */
  findExact(dev: Device, devAddr: bigint, size: number, dir: number, type: DmaDebugType): DmaDebugEntry | undefined {
    const ix = this.byDev.get(dev);
    if (!ix) return undefined;
    const first = ix.firstAt(devAddr);
    if (!first) return undefined;
    if (first.size === size && first.dir === dir && first.type === type) return first;
    const l = ix.startingAt(devAddr);
    return l.find((e) => e.size === size && e.dir === dir && e.type === type)
      ?? l.find((e) => e.size === size) ?? l[0];
  }

  /** bucket_find_contain: an entry whose range contains devAddr (one starting there first). */
  findContaining(dev: Device, devAddr: bigint): DmaDebugEntry | undefined {
    return this.byDev.get(dev)?.containing(devAddr);
  }

  /** The mappings of dev that overlap [devAddr, devAddr + size), ascending by DMA address. */
  findOverlapping(dev: Device, devAddr: bigint, size: number): DmaDebugEntry[] {
    return this.byDev.get(dev)?.overlapping(devAddr, devAddr + BigInt(size)) ?? [];
  }

  /** Stops tracking entries of dev that findOverlapping returned (ascending by address). */
  removeSorted(dev: Device, hits: readonly DmaDebugEntry[]): void {
    const ix = this.byDev.get(dev);
    if (!ix) return;
    this.liveCount -= ix.removeSorted(hits);
    if (this.physKeys.size > 0) for (const e of hits) this.forgetPhys(e);
  }

  /** Records a dma-debug violation for dev. */
  report(dev: Device, message: string, data?: Record<string, unknown>): void {
    this.mm.events.dmaDebug(`${dev.name}: DMA-API: ${message}`, { dev: dev.name, ...data });
  }
}

/** The dma-debug state of a machine (created with it), or undefined. */
export function dmaDebugOf(mm: MachineMm): DmaDebug | undefined {
  return debugs.get(mm);
}

const hex = (a: bigint): string => `0x${a.toString(16).padStart(16, '0')}`;

function debugOf(dev: Device): DmaDebug | null {
  const d = dmaContextOf(dev).debug;
  return d.enabled ? d : null;
}

/** Facts about a fresh mapping that dma-debug cannot see from its arguments alone. */
export interface DebugMapFacts {
  readonly bounced: boolean;
  readonly unmapOptional: boolean;
}

/** check_unmap: the shared checks of every unmap; returns the matched entry (already removed) or undefined. */
function checkUnmap(d: DmaDebug, dev: Device, type: DmaDebugType, addr: bigint, size: number, dir: number,
  sgCallEnts = 0): DmaDebugEntry | undefined {
  const e = d.findExact(dev, addr, size, dir, type);
  if (!e) {
    d.report(dev, `device driver tries to free DMA memory it has not allocated [device address=${hex(addr)}] [size=${size} bytes]`,
      { check: 'not-mapped', addr, size });
    return undefined;
  }
  if (e.size !== size) {
    d.report(dev, `device driver frees DMA memory with different size [device address=${hex(addr)}] [map size=${e.size} bytes] [unmap size=${size} bytes]`,
      { check: 'size', addr, mapSize: e.size, unmapSize: size });
  }
  if (e.type !== type) {
    d.report(dev, `device driver frees DMA memory with wrong function [device address=${hex(addr)}] [size=${e.size} bytes] [mapped as ${e.type}] [unmapped as ${type}]`,
      { check: 'type', addr, mapType: e.type, unmapType: type });
  }
  if (type === 'sg' && e.type === 'sg' && sgCallEnts && sgCallEnts !== e.sgCallEnts) {
    d.report(dev, `device driver frees DMA sg list with different entry count [map count=${e.sgCallEnts}] [unmap count=${sgCallEnts}]`,
      { check: 'sg-count', mapCount: e.sgCallEnts, unmapCount: sgCallEnts });
  }
  if (e.dir !== dir) {
    d.report(dev, `device driver frees DMA memory with different direction [device address=${hex(addr)}] [size=${e.size} bytes] [mapped with ${dmaDirName(e.dir)}] [unmapped with ${dmaDirName(dir)}]`,
      { check: 'direction', addr, mapDir: e.dir, unmapDir: dir });
  }
  d.remove(e);
  return e;
}

/** Whether an unmap of (addr) for dev matches a tracked mapping (used to skip the backend on a bogus unmap). */
export function debugDmaIsMapped(dev: Device, addr: bigint): boolean {
  const d = debugOf(dev);
  if (!d) return true;
  return d.hasMappingAt(dev, addr);
}

/** debug_dma_map_phys: tracks a successful one-shot mapping (failed ones, DMA_MAPPING_ERROR, are not tracked). */
export function debugDmaMapPhys(dev: Device, phys: bigint, size: number, dir: number, addr: bigint, attrs: number,
  facts: DebugMapFacts = { bounced: false, unmapOptional: false }): void {
  if (addr === DMA_MAPPING_ERROR) return;
  trackSingle(dev, 'phys', phys, size, dir, addr, attrs, facts);
}

/** Records one single-range mapping ('phys' one-shot or 'iova' link) the device now owns. */
function trackSingle(dev: Device, type: 'phys' | 'iova', phys: bigint, size: number, dir: number, addr: bigint,
  attrs: number, facts: DebugMapFacts): void {
  const d = debugOf(dev);
  if (!d) return;
  d.add({
    dev, type, devAddr: addr, size, paddr: phys, dir, attrs, sgCallEnts: 0, sgMappedEnts: 0,
    bounced: facts.bounced, coherent: dev.dmaCoherent, deviceOwns: true, unmapOptional: facts.unmapOptional,
  });
}

/** debug_dma_unmap_phys: checks the unmap against the tracked mapping and forgets it. */
export function debugDmaUnmapPhys(dev: Device, addr: bigint, size: number, dir: number): void {
  const d = debugOf(dev);
  if (!d) return;
  checkUnmap(d, dev, 'phys', addr, size, dir);
}

/**
 * debug_dma_map_sg: one tracked entry per DMA segment of the mapped table (nents of them), each
 * remembering the call's entry count.
 */
export function debugDmaMapSg(dev: Device, sgt: SgTable, callEnts: number, mappedEnts: number, dir: number, attrs: number,
  facts: DebugMapFacts = { bounced: false, unmapOptional: false }): void {
  const d = debugOf(dev);
  if (!d) return;
  const shift = BigInt(d.mm.pageShift);
  for (let i = 0; i < mappedEnts; i++) {
    d.add({
      dev, type: 'sg', devAddr: sgt.dmaAddressAt(i), size: sgt.dmaLengthAt(i),
      paddr: (sgt.pfnAt(i) << shift) + BigInt(sgt.offsetAt(i)), dir, attrs, sgCallEnts: callEnts,
      sgMappedEnts: mappedEnts, bounced: facts.bounced, coherent: dev.dmaCoherent, deviceOwns: true,
      unmapOptional: facts.unmapOptional,
    });
  }
}

/** debug_dma_unmap_sg: checks each DMA segment the mapping produced (found from the first one's count). */
export function debugDmaUnmapSg(dev: Device, sgt: SgTable, callEnts: number, dir: number): void {
  const d = debugOf(dev);
  if (!d) return;
  let mapped = 1;
  for (let i = 0; i < mapped && i < callEnts; i++) {
    const addr = sgt.dmaAddressAt(i);
    const size = sgt.dmaLengthAt(i);
    if (i === 0) {
      const first = d.findExact(dev, addr, size, dir, 'sg');
      mapped = first?.type === 'sg' ? first.sgMappedEnts : 1;
    }
    checkUnmap(d, dev, 'sg', addr, size, dir, callEnts);
  }
}

/** check_sync: the sync must lie inside a tracked mapping, with a compatible direction; moves ownership. */
function checkSync(dev: Device, addr: bigint, size: number, dir: number, toCpu: boolean): void {
  const d = debugOf(dev);
  if (!d) return;
  const e = d.findContaining(dev, addr);
  if (!e) {
    d.report(dev, `device driver tries to sync DMA memory it has not allocated [device address=${hex(addr)}] [size=${size} bytes]`,
      { check: 'sync-not-mapped', addr, size });
    return;
  }
  const end = addr - e.devAddr + BigInt(size);
  if (end > BigInt(e.size)) {
    d.report(dev, `device driver syncs DMA memory outside allocated range [device address=${hex(e.devAddr)}] [allocation size=${e.size} bytes] [sync offset+size=${end}]`,
      { check: 'sync-range', addr, size });
  }
  if (e.dir !== DMA_BIDIRECTIONAL) {
    if (dir !== e.dir) {
      d.report(dev, `device driver syncs DMA memory with different direction [device address=${hex(addr)}] [size=${size} bytes] [mapped with ${dmaDirName(e.dir)}] [synced with ${dmaDirName(dir)}]`,
        { check: 'sync-direction', addr, mapDir: e.dir, syncDir: dir });
    }
    if (toCpu && e.dir !== DMA_FROM_DEVICE && dir !== DMA_TO_DEVICE) {
      d.report(dev, `device driver syncs device read-only DMA memory for cpu [device address=${hex(addr)}] [size=${size} bytes] [mapped with ${dmaDirName(e.dir)}] [synced with ${dmaDirName(dir)}]`,
        { check: 'sync-read-only', addr });
    }
    if (!toCpu && e.dir !== DMA_TO_DEVICE && dir !== DMA_FROM_DEVICE) {
      d.report(dev, `device driver syncs device write-only DMA memory to device [device address=${hex(addr)}] [size=${size} bytes] [mapped with ${dmaDirName(e.dir)}] [synced with ${dmaDirName(dir)}]`,
        { check: 'sync-write-only', addr });
    }
  }
  e.deviceOwns = !toCpu;
}

/** debug_dma_sync_single_for_cpu: checks the sync; the CPU owns the buffer afterwards. */
export function debugDmaSyncSingleForCpu(dev: Device, addr: bigint, size: number, dir: number): void {
  checkSync(dev, addr, size, dir, true);
}

/** debug_dma_sync_single_for_device: checks the sync; the device owns the buffer afterwards. */
export function debugDmaSyncSingleForDevice(dev: Device, addr: bigint, size: number, dir: number): void {
  checkSync(dev, addr, size, dir, false);
}

/** debug_dma_sync_sg_for_cpu/device over the DMA segments of a mapped table. */
export function debugDmaSyncSg(dev: Device, sgt: SgTable, dir: number, toCpu: boolean): void {
  for (let i = 0; i < sgt.nents; i++) checkSync(dev, sgt.dmaAddressAt(i), sgt.dmaLengthAt(i), dir, toCpu);
}

/** Tracks one dma_iova_link of [phys, phys + size) at IOVA addr. */
export function debugDmaIovaLink(dev: Device, phys: bigint, size: number, dir: number, addr: bigint, attrs: number,
  facts: DebugMapFacts = { bounced: false, unmapOptional: false }): void {
  trackSingle(dev, 'iova', phys, size, dir, addr, attrs, facts);
}

/**
 * Checks a dma_iova_unlink / destroy of [addr, addr + size): it must cover whole links (a partial
 * cover is a size error), at least one, each with the direction it was linked with.
 */
export function debugDmaIovaUnlink(dev: Device, addr: bigint, size: number, dir: number): void {
  const d = debugOf(dev);
  if (!d) return;
  const end = addr + BigInt(size);
  const hit = d.findOverlapping(dev, addr, size).filter((e) => e.type === 'iova');
  if (hit.length === 0) {
    d.report(dev, `device driver tries to free DMA memory it has not allocated [device address=${hex(addr)}] [size=${size} bytes]`,
      { check: 'not-mapped', addr, size });
    return;
  }
  for (const e of hit) {
    if (e.devAddr < addr || e.devAddr + BigInt(e.size) > end) {
      d.report(dev, `device driver frees DMA memory with different size [device address=${hex(e.devAddr)}] [map size=${e.size} bytes] [unmap size=${size} bytes]`,
        { check: 'size', addr: e.devAddr, mapSize: e.size, unmapSize: size });
    }
    if (e.dir !== dir) {
      d.report(dev, `device driver frees DMA memory with different direction [device address=${hex(e.devAddr)}] [size=${e.size} bytes] [mapped with ${dmaDirName(e.dir)}] [unmapped with ${dmaDirName(dir)}]`,
        { check: 'direction', addr: e.devAddr, mapDir: e.dir, unmapDir: dir });
    }
  }
  d.removeSorted(dev, hit);
}

/**
 * Reference 14.1: the CPU writes [phys, phys + len) — a violation for every overlapping mapping the
 * device owns that is bounced or on a non-coherent device (the device would not see the write).
 * Returns the number of violations recorded.
 */
export function debugDmaCheckCpuWrite(mm: MachineMm, phys: bigint, len: number): number {
  const d = debugs.get(mm);
  if (!d || !d.enabled || d.cpuWriteWatchCount === 0) return 0;
  let n = 0;
  for (const e of d.watchedOverlapping(phys, len)) {
    if (!e.deviceOwns) continue;
    n++;
    d.report(e.dev, `CPU writes to a buffer the device owns [phys=${hex(phys)}+${len}] [mapping ${hex(e.devAddr)} size=${e.size} ${dmaDirName(e.dir)}] [${e.bounced ? 'bounced' : 'non-coherent'}]`,
      { check: 'cpu-write', phys, len, devAddr: e.devAddr });
  }
  return n;
}

/**
 * The CPU-write hook the machine installs on its physical memory (PhysMem onCpuWrite): runs
 * debugDmaCheckCpuWrite for each CPU store, and costs two checks while nothing is watched.
 */
export function dmaDebugCpuWriteHook(mm: MachineMm): (addrNum: number, len: number) => void {
  return (addrNum, len) => {
    const d = debugs.get(mm);
    if (d === undefined || !d.enabled || d.cpuWriteWatchCount === 0) return;
    debugDmaCheckCpuWrite(mm, BigInt(addrNum), len);
  };
}

/**
 * dma_debug_device_change at driver release: reports the device's mappings still live (except those
 * that needed no unmap) as a leak. Returns the number of leaked mappings.
 */
export function dmaDebugCheckLeaks(dev: Device): number {
  const d = debugOf(dev);
  if (!d) return 0;
  const leaked = d.entries(dev).filter((e) => !e.unmapOptional);
  if (leaked.length > 0) {
    const e = leaked[0];
    d.report(dev, `device driver has pending DMA allocations while released from device [count=${leaked.length}] One of leaked entries details: [device address=${hex(e.devAddr)}] [size=${e.size} bytes] [mapped with ${dmaDirName(e.dir)}] [mapped as ${e.type}]`,
      { check: 'leak', count: leaked.length });
  }
  return leaked.length;
}
