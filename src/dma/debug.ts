// Models: kernel/dma/debug.c (CONFIG_DMA_API_DEBUG, Linux 7.1.5, plus 7.2's "dma-debug: Ensure mappings are
// created and released with matching attributes": attrs recorded per entry, an unmap whose MMIO,
// REQUIRE_COHERENT or CC_SHARED bits differ is reported): the checks a debug kernel makes and
// the messages it prints, as 'DMA-DEBUG' events on the machine's log. Entries live in the 16384-bucket
// hash (hash_fn) and are found as the kernel finds them: check_unmap() through bucket_find_exact(),
// check_sync() through bucket_find_contain() walking back bucket by bucket, both with the best-fit
// rule of __hash_bucket_find() (a perfect fit, else the only match, else nothing). map_err_type
// records whether dma_mapping_error() saw the handle; add_dma_entry() tracks the first cacheline of
// each mapping (active_cacheline_insert); dma_debug_device_change() reports leaks at driver unbind;
// err_printk() prints the first error and counts the rest unless all_errors is set, and honours the
// driver filter.
// The model's own checks, which no kernel makes (two-step IOVA misuse: the kernel has no dma-debug
// hooks in dma_iova_link/unlink; CPU stores into a buffer the device owns: debug_dma_assert_idle was
// removed in 5.9), are 'MODEL-CHECK' events (source 'model-check'); docs/model.md lists them.
// Messages are err_printk()'s: "DMA-API: <dev_driver_string> <dev_name>: <message>" (the bound
// driver, else the bus name "pci" / "platform"; e.g. "DMA-API: nvme 0000:03:00.0: ..."), and the
// driver filter compares the bound driver's name (driver_filter()), so it never passes a device
// without a driver, nor a leak report (the unbind notifier runs after dev->driver is cleared).
// MODEL-CHECK events keep the model's short device name ("nvme0: ..."): no kernel prints them.
// Model deviation: there are no kernel stacks, text or vmalloc areas, so check_for_stack(),
// check_for_illegal_area() and debug_dma_map_single()'s address checks never fire; no stack traces.

import type { MachineMm } from '../mm/index.ts';
import { devDriverString, type Device } from '../pci/index.ts';
import type { SgTable } from '../phyr/index.ts';
import type { EventLog, Ok } from '../base/index.ts';
import { SlotKey } from '../base/internal.ts';
import { dmaContextIfAny, dmaContextOf } from './context.ts';
import { dmaDebugEvent, modelCheckEvent } from './events.ts';
import {
  DMA_ATTR_CC_SHARED, DMA_ATTR_DEBUGGING_IGNORE_CACHELINES, DMA_ATTR_MMIO, DMA_ATTR_REQUIRE_COHERENT, DMA_ATTR_SKIP_CPU_SYNC,
  DMA_BIDIRECTIONAL, DMA_FROM_DEVICE, DMA_MAPPING_ERROR, DMA_TO_DEVICE, dmaDirName,
} from './constants.ts';
import { dmaGetMaxSegSize, dmaGetSegBoundary } from './mask.ts';
import { isSwiotlbActive } from './swiotlb.ts';
import {
  EntryTable, F_BOUNCED, F_CACHE_CLEAN, F_DEVICE_OWNS, F_IN_HASH, F_NONCOHERENT, F_WATCHED, HASH_SIZE,
  MAP_ERR_CHECK_NOT_APPLICABLE, MAP_ERR_CHECKED, MAP_ERR_NOT_CHECKED, OrderedIndex, T_COHERENT, T_LINK, T_NONCOHERENT, T_PHY,
  T_SG, T_SINGLE, hashOf,
} from './debug-table.ts';

/** An entry's type as dma-debug prints it (type2name), or the model's record of a two-step link. */
export type DmaDebugType = 'single' | 'scatter-gather' | 'coherent' | 'noncoherent' | 'phy' | 'iova-link';
const TYPE_NAMES: readonly DmaDebugType[] = ['single', 'scatter-gather', 'coherent', 'noncoherent', 'phy', 'iova-link'];

/** map_err_type as maperr2str prints it. */
export type DmaMapErrState = 'dma map error check not applicable' | 'dma map error not checked' | 'dma map error checked';
const MAP_ERR_NAMES: readonly DmaMapErrState[] = [
  'dma map error check not applicable', 'dma map error not checked', 'dma map error checked',
];

/** One tracked mapping, as listed by DmaDebug.entries() (a copy; the store keeps columns). */
export interface DmaDebugRecord {
  readonly dev: Device;
  readonly type: DmaDebugType;
  readonly devAddr: bigint;
  readonly len: number;
  readonly dir: number;
  /** The CPU physical address the driver mapped (the original, not a bounce slot). */
  readonly phys: bigint;
  readonly mapErr: DmaMapErrState;
  /** sg entries: the nents of the map call and the number of DMA segments it produced (0 otherwise). */
  readonly sgCallEnts: number;
  readonly sgMappedEnts: number;
  /** The hash bucket (hash_fn) of a kernel entry; -1 for an IOVA link. */
  readonly bucket: number;
  readonly bounced: boolean;
  readonly coherent: boolean;
  /** The device owns the buffer (after map / sync_for_device), rather than the CPU. */
  readonly deviceOwns: boolean;
  /** 'dma-debug': an entry of the kernel's hash; 'model-check': a two-step link only the model records. */
  readonly trackedBy: 'dma-debug' | 'model-check';
  /** The DMA_ATTR_* bits the mapping was made with (recorded since 7.2; 0 for an IOVA link). */
  readonly attrs: number;
}

/**
 * The attributes an unmap must repeat (7.2, "dma-debug: Ensure mappings are created and released
 * with matching attributes"): each changes what the unmap does (MMIO and REQUIRE_COHERENT skip sync
 * and swiotlb; CC_SHARED skips the unmap off dma-direct).
 */
export const DMA_DEBUG_MATCHED_ATTRS = DMA_ATTR_MMIO | DMA_ATTR_REQUIRE_COHERENT | DMA_ATTR_CC_SHARED;

const ATTR_NAMES: ReadonlyArray<[number, string]> = [
  [DMA_ATTR_MMIO, 'MMIO'], [DMA_ATTR_REQUIRE_COHERENT, 'REQUIRE_COHERENT'], [DMA_ATTR_CC_SHARED, 'CC_SHARED'],
];
/** The matched attribute bits by name, '|'-joined ('none' for 0). */
function attrNames(a: number): string {
  const n = ATTR_NAMES.filter(([b]) => (a & b) !== 0).map(([, x]) => x);
  return n.length === 0 ? 'none' : n.join('|');
}

/** dma-debug's settings: the kernel's boot parameters and debugfs files, and the arch facts it reads. */
export interface DmaDebugOptions {
  /** CONFIG_DMA_API_DEBUG: false gives a production kernel (no checks; dma_need_unmap() as production). Default true. */
  readonly enabled?: boolean;
  /** dma-api/all_errors: print every error, not only the first num_errors. Default false. */
  readonly allErrors?: boolean;
  /** dma-api/num_errors: how many errors are printed while all_errors is off. Default 1. */
  readonly numErrors?: number;
  /** dma_debug_driver=: print only the errors of devices bound to the driver of this name (e.g. 'nvme'). Default '' (all). */
  readonly driverFilter?: string;
  /** dma_get_cache_alignment() (ARCH_DMA_MINALIGN / cache_line_size()). Default 1, as x86-64. */
  readonly dmaCacheAlignment?: number;
  /** CONFIG_DMA_BOUNCE_UNALIGNED_KMALLOC (arm64 selects it). Default false, as x86-64. */
  readonly bounceUnalignedKmalloc?: boolean;
}

/** L1_CACHE_SHIFT / L1_CACHE_BYTES (6 / 64 on x86-64 and arm64). */
const L1_CACHE_BYTES = 64;
/** ACTIVE_CACHELINE_MAX_OVERLAP: (1 << RADIX_TREE_MAX_TAGS) - 1, with XA_MAX_MARKS = 3. */
const ACTIVE_CACHELINE_MAX_OVERLAP = 7;
/** NAME_MAX_LEN - 1: the longest driver filter. */
const FILTER_MAX = 63;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const U64 = (1n << 64n) - 1n;

/** 0x%016llx, as the kernel prints DMA and physical addresses. */
const hex = (a: bigint | number): string => `0x${a.toString(16).padStart(16, '0')}`;

/** The exact bigint of an address when it, or its end, is beyond 2^53 - 1 (null otherwise). */
function bigOrNull(addr: bigint, addrNum: number, size: number): bigint | null {
  return addrNum + size <= MAX_SAFE ? null : addr;
}

/** Facts about a fresh mapping that dma-debug cannot see from its arguments alone. */
export interface DebugMapFacts {
  readonly bounced: boolean;
  /** Ignored: a debug kernel's dma_need_unmap() is always true, so every mapping must be unmapped. */
  readonly unmapOptional?: boolean;
}

const NOT_BOUNCED: DebugMapFacts = Object.freeze({ bounced: false });

/**
 * The dma-debug state of one machine (owned by its DmaContext): the kernel's entries and settings,
 * and the model's records of IOVA links and device-owned buffers.
 */
export class DmaDebug {
  readonly mm: MachineMm;
  /** dma-debug runs (CONFIG_DMA_API_DEBUG=y and not disabled). */
  enabled: boolean;
  /** show_all_errors (debugfs dma-api/all_errors). */
  allErrors: boolean;
  /** show_num_errors (debugfs dma-api/num_errors): errors still to be printed while allErrors is off. */
  numErrors: number;
  /** dma_get_cache_alignment() of the modeled architecture. */
  readonly dmaCacheAlignment: number;
  /** CONFIG_DMA_BOUNCE_UNALIGNED_KMALLOC. */
  readonly bounceUnalignedKmalloc: boolean;
  /** @internal the entry columns and the kernel's hash. */
  readonly t = new EntryTable();
  private errors = 0;
  private filterName = '';
  private overlapWarned = false;
  private readonly devs: Device[] = [];
  private readonly ids = new Map<Device, number>();
  private lastDev: Device | null = null;
  private lastId = -1;
  /** Per device: kernel entries and IOVA links. */
  private readonly kernelCount: number[] = [];
  private readonly linkCount: number[] = [];
  /** Per device: its IOVA links and watched kernel entries, by DMA address (model checks). */
  private readonly byDev: Array<OrderedIndex | undefined> = [];
  /** Watched mappings (bounced or non-coherent) of every device, by CPU physical address. */
  private readonly byPhys: OrderedIndex;
  /** dma_active_cacheline: cacheline number -> slot * 8 + overlap count. */
  private readonly clines = new Map<number, number>();

  /** Creates the machine's dma-debug and hangs it on the machine (one per machine). */
  constructor(mm: MachineMm, opts: DmaDebugOptions = {}) {
    this.mm = mm;
    mm.slots.set(DMA_DEBUG, this);
    this.enabled = opts.enabled ?? true;
    this.allErrors = opts.allErrors ?? false;
    this.numErrors = opts.numErrors ?? 1;
    // dma_debug_driver_setup(): the boot parameter's first 63 characters, verbatim
    this.filterName = (opts.driverFilter ?? '').slice(0, FILTER_MAX);
    this.dmaCacheAlignment = opts.dmaCacheAlignment ?? 1;
    this.bounceUnalignedKmalloc = opts.bounceUnalignedKmalloc ?? false;
    this.byPhys = new OrderedIndex(this.t, true);
  }

  get events(): EventLog {
    return this.mm.events;
  }

  /** error_count (debugfs dma-api/error_count): every error, printed or not. */
  get errorCount(): number {
    return this.errors;
  }

  /** current_driver_name (debugfs dma-api/driver_filter); '' when off. */
  get driverFilter(): string {
    return this.filterName;
  }

  /**
   * filter_write(): the first whitespace-separated token of the first 63 characters; a text that
   * does not start with a letter or digit switches the filter off.
   */
  set driverFilter(text: string) {
    if (typeof text !== 'string') throw new TypeError(`driverFilter must be a string, got ${typeof text}`);
    const buf = text.slice(0, FILTER_MAX);
    if (!/^[A-Za-z0-9]/.test(buf)) {
      this.filterName = '';
      return;
    }
    this.filterName = buf.split(/[\s]/)[0];
  }

  /** @internal the device's index in the columns. */
  idOf(dev: Device): number {
    if (dev === this.lastDev) return this.lastId;
    let id = this.ids.get(dev);
    if (id === undefined) {
      id = this.devs.length;
      this.devs.push(dev);
      this.ids.set(dev, id);
      this.kernelCount.push(0);
      this.linkCount.push(0);
      this.byDev.push(undefined);
    }
    this.lastDev = dev;
    this.lastId = id;
    return id;
  }

  private devIndex(id: number): OrderedIndex {
    let ix = this.byDev[id];
    if (ix === undefined) this.byDev[id] = ix = new OrderedIndex(this.t, false);
    return ix;
  }

  /** Tracked mappings: kernel entries and IOVA links (of one device, or all). */
  count(dev?: Device): number {
    if (dev === undefined) return this.t.live;
    const id = this.ids.get(dev);
    return id === undefined ? 0 : this.kernelCount[id] + this.linkCount[id];
  }

  /**
   * The tracked mappings (of one device, or all): the kernel's entries in the order its dump
   * prints them (bucket by bucket, debug_dma_dump_mappings), then each device's IOVA links by address.
   */
  entries(dev?: Device): DmaDebugRecord[] {
    const out: DmaDebugRecord[] = [];
    const t = this.t;
    const want = dev === undefined ? -1 : this.ids.get(dev);
    if (want === undefined) return out;
    for (let b = 0; b < HASH_SIZE; b++) {
      for (let s = t.head[b]; s >= 0; s = t.next[s]) if (want < 0 || t.devId[s] === want) out.push(this.record(s, b));
    }
    for (let id = 0; id < this.devs.length; id++) {
      if (want >= 0 && id !== want) continue;
      const slots: number[] = [];
      this.byDev[id]?.all(slots);
      for (const s of slots) if (t.type[s] === T_LINK) out.push(this.record(s, -1));
    }
    return out;
  }

  private record(s: number, bucket: number): DmaDebugRecord {
    const t = this.t;
    const f = t.flags[s];
    const link = t.type[s] === T_LINK; // links set only the fields they use
    return {
      dev: this.devs[t.devId[s]], type: TYPE_NAMES[t.type[s]], devAddr: t.exactAddr(s), len: t.size[s], dir: t.dir[s],
      phys: BigInt(t.paddr[s]), mapErr: MAP_ERR_NAMES[link ? 0 : t.mapErr[s]], sgCallEnts: link ? 0 : t.sgCall[s],
      sgMappedEnts: link ? 0 : t.sgMapped[s],
      bucket, bounced: (f & F_BOUNCED) !== 0, coherent: (f & F_NONCOHERENT) === 0, deviceOwns: (f & F_DEVICE_OWNS) !== 0,
      trackedBy: (f & F_IN_HASH) !== 0 ? 'dma-debug' : 'model-check',
      attrs: link ? 0 : t.attrs[s],
    };
  }

  /** Number of tracked mappings a CPU store could violate (bounced or non-coherent). */
  get cpuWriteWatchCount(): number {
    return this.byPhys.count;
  }

  /**
   * err_printk(): counts the error; records it (a 'DMA-DEBUG' event) when the driver filter lets the
   * device through and all_errors is set or num_errors is not used up; uses up one of num_errors.
   */
  report(dev: Device, message: string, data: Record<string, unknown>): void {
    this.errors++;
    if (this.filterPasses(dev) && (this.allErrors || this.numErrors > 0)) {
      // err_printk(): pr_fmt's "DMA-API: ", then dev_driver_string() and dev_name()
      dmaDebugEvent(this.mm.events, `DMA-API: ${devDriverString(dev)} ${dev.devName}: ${message}`, { dev: dev.name, ...data });
    }
    if (!this.allErrors && this.numErrors > 0) this.numErrors--;
  }

  /** A model check's finding: always recorded, as a 'MODEL-CHECK' event. */
  reportModel(dev: Device, message: string, data: Record<string, unknown>): void {
    modelCheckEvent(this.mm.events, `${dev.name}: ${message}`, { dev: dev.name, ...data });
  }

  /**
   * driver_filter(): off, or the device is bound to a driver whose name matches the filter in its
   * first 63 characters (strncmp with NAME_MAX_LEN - 1); a device without a driver never passes.
   */
  private filterPasses(dev: Device): boolean {
    if (this.filterName === '') return true;
    return dev.driver !== null && dev.driver.slice(0, FILTER_MAX) === this.filterName;
  }

  // ---- the kernel's checks ----

  /** add_dma_entry(): hash, then the first cacheline (overlaps reported where the arch needs it). */
  private addEntry(s: number, dev: Device, attrs: number, bounced: boolean): void {
    const t = this.t;
    let f = t.flags[s] | F_DEVICE_OWNS;
    t.attrs[s] = attrs >>> 0;
    if (attrs & (DMA_ATTR_DEBUGGING_IGNORE_CACHELINES | DMA_ATTR_REQUIRE_COHERENT)) f |= F_CACHE_CLEAN;
    if (bounced) f |= F_BOUNCED;
    if (!dev.dmaCoherent) f |= F_NONCOHERENT;
    t.flags[s] = f;
    t.hashAdd(s);
    this.kernelCount[t.devId[s]]++;
    if (t.dir[s] !== DMA_TO_DEVICE) {
      const overlapClean = this.cachelineInsert(s);
      if (overlapClean !== -1
        && !(attrs & DMA_ATTR_SKIP_CPU_SYNC)
        && !((f & F_CACHE_CLEAN) !== 0 && overlapClean === 1)
        && this.dmaCacheAlignment >= L1_CACHE_BYTES
        && !(this.bounceUnalignedKmalloc && isSwiotlbActive(dev))) {
        this.report(dev, 'cacheline tracking EEXIST, overlapping mappings aren\'t supported', { check: 'cacheline-overlap' });
      }
    }
    // a coherent allocation is never cached on the device's behalf: CPU stores into it are fine
    if ((bounced || !dev.dmaCoherent) && t.type[s] !== T_COHERENT) this.watch(s);
  }

  /**
   * active_cacheline_insert() for a mapping the device may write: -1 when its first cacheline was
   * not tracked (now it is), else (EEXIST) whether the entry tracked there is cache-clean (0 / 1),
   * the overlap count going up to ACTIVE_CACHELINE_MAX_OVERLAP (WARN_ONCE past it).
   */
  private cachelineInsert(s: number): number {
    const t = this.t;
    const cln = Math.floor(t.paddr[s] / L1_CACHE_BYTES);
    const v = this.clines.get(cln);
    if (v === undefined) {
      this.clines.set(cln, s * 8);
      return -1;
    }
    const existing = Math.floor(v / 8);
    const overlap = (v % 8) + 1;
    if (overlap > ACTIVE_CACHELINE_MAX_OVERLAP) {
      if ((t.flags[s] & F_CACHE_CLEAN) === 0 && !this.overlapWarned) {
        this.overlapWarned = true;
        this.mm.events.warn('dma-debug',
          `DMA-API: exceeded ${ACTIVE_CACHELINE_MAX_OVERLAP} overlapping mappings of cacheline ${hex(cln)}`,
          { dev: this.devs[t.devId[s]].name, cacheline: cln });
      }
    } else {
      this.clines.set(cln, existing * 8 + overlap);
    }
    return (t.flags[existing] & F_CACHE_CLEAN) !== 0 ? 1 : 0;
  }

  /** active_cacheline_remove(): the overlap count goes down; the line is dropped below zero. */
  private cachelineRemove(s: number): void {
    const t = this.t;
    if (t.dir[s] === DMA_TO_DEVICE) return;
    const cln = Math.floor(t.paddr[s] / L1_CACHE_BYTES);
    const v = this.clines.get(cln);
    const overlap = (v === undefined ? 0 : v % 8) - 1;
    if (overlap < 0) this.clines.delete(cln);
    else this.clines.set(cln, Math.floor(v! / 8) * 8 + overlap);
  }

  /** check_unmap() and dma_entry_free(): the ref is the unmap call's view of the mapping. */
  checkUnmap(dev: Device, type: number, addr: bigint, size: number, dir: number, sgCall: number, paddr = -1, attrs = -1): void {
    const t = this.t;
    const id = this.idOf(dev);
    const addrNum = this.t.toNum(addr);
    const addrBig = bigOrNull(addr, addrNum, size);
    const s = t.findExact(id, addrNum, addrBig, size, type, dir, sgCall);
    if (s < 0) {
      // dma_mapping_error() on the handle: also marks a matching entry checked
      this.mappingError(dev, addr);
      if (addr === DMA_MAPPING_ERROR) {
        this.report(dev, 'device driver tries to free an invalid DMA memory address', { check: 'unmap-invalid-address' });
      } else {
        this.report(dev, `device driver tries to free DMA memory it has not allocated [device address=${hex(addr)}] [size=${size} bytes]`,
          { check: 'unmap-not-allocated', addr, size });
      }
      return;
    }
    if (size !== t.size[s]) {
      this.report(dev, `device driver frees DMA memory with different size [device address=${hex(addr)}] [map size=${t.size[s]} bytes] [unmap size=${size} bytes]`,
        { check: 'unmap-size', addr, mapSize: t.size[s], unmapSize: size });
    }
    if (type !== t.type[s]) {
      this.report(dev, `device driver frees DMA memory with wrong function [device address=${hex(addr)}] [size=${size} bytes] [mapped as ${TYPE_NAMES[t.type[s]]}] [unmapped as ${TYPE_NAMES[type]}]`,
        { check: 'unmap-type', addr, mapType: TYPE_NAMES[t.type[s]], unmapType: TYPE_NAMES[type] });
    } else if ((t.type[s] === T_COHERENT || t.type[s] === T_NONCOHERENT) && paddr >= 0 && paddr !== t.paddr[s]) {
      // the kernel's format puts "0x" before %pa, which prints its own "0x": both addresses read "0x0x..."
      this.report(dev, `device driver frees DMA memory with different CPU address [device address=${hex(addr)}] [size=${size} bytes] [cpu alloc address=0x${hex(t.paddr[s])}] [cpu free address=0x${hex(paddr)}]`,
        { check: 'free-cpu-address', addr, allocPhys: BigInt(t.paddr[s]), freePhys: BigInt(paddr) });
    }
    if (sgCall !== 0 && type === T_SG && sgCall !== t.sgCall[s]) {
      this.report(dev, `device driver frees DMA sg list with different entry count [map count=${t.sgCall[s]}] [unmap count=${sgCall}]`,
        { check: 'unmap-sg-count', mapCount: t.sgCall[s], unmapCount: sgCall });
    }
    if (dir !== t.dir[s]) {
      this.report(dev, `device driver frees DMA memory with different direction [device address=${hex(addr)}] [size=${size} bytes] [mapped with ${dmaDirName(t.dir[s])}] [unmapped with ${dmaDirName(dir)}]`,
        { check: 'unmap-direction', addr, mapDir: t.dir[s], unmapDir: dir });
    }
    if (attrs >= 0 && ((attrs ^ t.attrs[s]) & DMA_DEBUG_MATCHED_ATTRS) !== 0) {
      // Model deviation: the message text is the model's (the 7.2 check is confirmed from its commit
      // subject, not its source).
      this.report(dev, `device driver frees DMA memory with different attributes [device address=${hex(addr)}] [size=${size} bytes] [mapped with ${attrNames(t.attrs[s] & DMA_DEBUG_MATCHED_ATTRS)}] [unmapped with ${attrNames(attrs & DMA_DEBUG_MATCHED_ATTRS)}]`,
        { check: 'unmap-attrs', addr, mapAttrs: t.attrs[s], unmapAttrs: attrs });
    }
    if (t.mapErr[s] === MAP_ERR_NOT_CHECKED) {
      // the kernel's format has no space before the first bracket
      this.report(dev, `device driver failed to check map error[device address=${hex(addr)}] [size=${size} bytes] [mapped as ${TYPE_NAMES[t.type[s]]}]`,
        { check: 'map-error-not-checked', addr, size });
    }
    this.freeEntry(s);
  }

  /** hash_bucket_del() and dma_entry_free(). */
  private freeEntry(s: number): void {
    const t = this.t;
    t.hashDel(s);
    this.kernelCount[t.devId[s]]--;
    this.cachelineRemove(s);
    if (t.flags[s] & F_WATCHED) this.unwatch(s);
    t.release(s);
  }

  /** debug_dma_mapping_error(): the first unchecked entry at exactly addr becomes checked. */
  mappingError(dev: Device, addr: bigint): void {
    const t = this.t;
    const id = this.idOf(dev);
    const addrNum = this.t.toNum(addr);
    const addrBig = bigOrNull(addr, addrNum, 0);
    const b = hashOf(addrNum, addrBig);
    // The kernel walks the whole bucket (list_for_each_entry) for the first unchecked exact match.
    // Model shortcut with the same outcome: with no unchecked entry in the bucket the walk changes
    // nothing, and with exactly one it can only mark that one, which a walk from the tail (where a
    // new mapping was just appended) finds sooner. Otherwise the forward walk, as the kernel's.
    const n = t.unchecked[b];
    if (n === 0) return;
    if (n === 1) {
      for (let s = t.tail[b]; s >= 0; s = t.prev[s]) {
        if (t.mapErr[s] !== MAP_ERR_NOT_CHECKED) continue;
        if (t.devId[s] === id && t.sameAddr(s, addrNum, addrBig)) {
          t.mapErr[s] = MAP_ERR_CHECKED;
          t.unchecked[b]--;
        }
        return;
      }
      return;
    }
    for (let s = t.head[b]; s >= 0; s = t.next[s]) {
      if (t.devId[s] !== id || !t.sameAddr(s, addrNum, addrBig)) continue;
      if (t.mapErr[s] === MAP_ERR_NOT_CHECKED) {
        t.mapErr[s] = MAP_ERR_CHECKED;
        t.unchecked[b]--;
        break;
      }
    }
  }

  /** debug_dma_map_phys(): a 'phy' entry, map error not yet checked. */
  mapPhys(dev: Device, phys: bigint, size: number, dir: number, addr: bigint, attrs: number, bounced: boolean): void {
    // dma_mapping_error() on the new handle, itself hooked: it marks an older unchecked entry at
    // the same address checked (dma-direct maps a buffer mapped twice at one address)
    this.mappingError(dev, addr);
    if (addr === DMA_MAPPING_ERROR) return;
    const t = this.t;
    const s = t.alloc();
    t.devId[s] = this.idOf(dev);
    t.type[s] = T_PHY;
    t.paddr[s] = this.t.toNum(phys);
    const addrNum = this.t.toNum(addr);
    t.setAddr(s, addrNum, bigOrNull(addr, addrNum, size), size);
    t.dir[s] = dir;
    t.mapErr[s] = MAP_ERR_NOT_CHECKED;
    if (attrs & DMA_ATTR_MMIO) {
      // pfn_valid() && !PageReserved(): RAM with a struct page that is neither ZONE_DEVICE nor a
      // boot (memblock) allocation such as the swiotlb pool
      const pfn = phys >> BigInt(this.mm.pageShift);
      const facts = this.mm.pfnFacts(pfn);
      if (facts !== undefined && facts.hasStructPage && !this.mm.pageReserved(pfn)) {
        this.report(dev, `dma_map_resource called for RAM address ${hex(phys)}`, { check: 'map-resource-ram', phys });
      }
    }
    this.addEntry(s, dev, attrs, bounced);
  }

  /**
   * debug_dma_alloc_coherent(): a 'coherent' entry for [addr, addr + size) over the CPU memory at
   * phys, DMA_BIDIRECTIONAL, with no map-error check to make.
   */
  allocCoherent(dev: Device, size: number, addr: bigint, phys: bigint, attrs: number): void {
    const t = this.t;
    const s = t.alloc();
    t.devId[s] = this.idOf(dev);
    t.type[s] = T_COHERENT;
    t.paddr[s] = this.t.toNum(phys);
    const addrNum = this.t.toNum(addr);
    t.setAddr(s, addrNum, bigOrNull(addr, addrNum, size), size);
    t.dir[s] = DMA_BIDIRECTIONAL;
    t.mapErr[s] = MAP_ERR_CHECK_NOT_APPLICABLE;
    this.addEntry(s, dev, attrs, false);
  }

  /**
   * debug_dma_free_coherent(): check_unmap() of a 'coherent' ref, its CPU address compared too. A
   * CPU address that is neither vmalloc nor virt_addr_valid() is not checked at all (the entry
   * stays, and is a leak at unbind); in the model, whose CPU addresses are linear-map physical
   * addresses, that is one whose page frame has no struct page. Returns whether it was checked.
   */
  freeCoherent(dev: Device, size: number, phys: bigint, addr: bigint): boolean {
    const facts = this.mm.pfnFacts(phys >> BigInt(this.mm.pageShift));
    if (facts === undefined || !facts.hasStructPage) return false;
    this.checkUnmap(dev, T_COHERENT, addr, size, DMA_BIDIRECTIONAL, 0, this.t.toNum(phys));
    return true;
  }

  /** debug_dma_map_sg(): one 'scatter-gather' entry per DMA segment, each checked by check_sg_segment(). */
  mapSg(dev: Device, sgt: SgTable, callEnts: number, mappedEnts: number, dir: number, attrs: number, bounced: boolean): void {
    const t = this.t;
    const id = this.idOf(dev);
    const pageSize = this.mm.pageSize;
    const maxSeg = dmaGetMaxSegSize(dev);
    const boundary = dmaGetSegBoundary(dev) & U64;
    const outside = ~boundary & U64;
    for (let i = 0; i < mappedEnts; i++) {
      const s = t.alloc();
      t.devId[s] = id;
      t.type[s] = T_SG;
      t.paddr[s] = this.t.toNum(sgt.pfnAt(i)) * pageSize + sgt.offsetAt(i);
      const addr = sgt.dmaAddressAt(i);
      const addrNum = this.t.toNum(addr);
      const len = sgt.dmaLengthAt(i);
      t.setAddr(s, addrNum, bigOrNull(addr, addrNum, len), len);
      t.dir[s] = dir;
      t.sgCall[s] = callEnts;
      t.sgMapped[s] = mappedEnts;
      // check_sg_segment(): the CPU entry's length against max_seg_size, the DMA segment against the boundary
      const cpuLen = sgt.lengthAt(i);
      if (cpuLen > maxSeg) {
        this.report(dev, `mapping sg segment longer than device claims to support [len=${cpuLen}] [max=${maxSeg}]`,
          { check: 'sg-segment-length', len: cpuLen, max: maxSeg });
      }
      if (outside !== 0n) {
        const end = (addr + BigInt(len) - 1n) & U64;
        if (((addr ^ end) & outside) !== 0n) {
          this.report(dev, `mapping sg segment across boundary [start=${hex(addr)}] [end=${hex(end)}] [boundary=${hex(boundary)}]`,
            { check: 'sg-segment-boundary', start: addr, end, boundary });
        }
      }
      this.addEntry(s, dev, attrs, bounced);
    }
  }

  /** get_nr_mapped_entries(): sg_mapped_ents of the best fit for the first entry, 0 if none. */
  private nrMapped(id: number, addr: bigint, size: number, dir: number, sgCall: number): number {
    const addrNum = this.t.toNum(addr);
    const s = this.t.findExact(id, addrNum, bigOrNull(addr, addrNum, size), size, T_SG, dir, sgCall);
    return s < 0 ? 0 : this.t.sgMapped[s];
  }

  /** debug_dma_unmap_sg(): check_unmap() per entry, up to the mapped count found for the first. */
  unmapSg(dev: Device, sgt: SgTable, callEnts: number, dir: number, attrs = -1): void {
    const id = this.idOf(dev);
    let mapped = 0;
    for (let i = 0; i < callEnts; i++) {
      if (mapped !== 0 && i >= mapped) break;
      const addr = sgt.dmaAddressAt(i);
      const size = sgt.dmaLengthAt(i);
      if (i === 0) mapped = this.nrMapped(id, addr, size, dir, callEnts);
      this.checkUnmap(dev, T_SG, addr, size, dir, callEnts, -1, attrs);
    }
  }

  /** check_sync(): the sync must lie inside one mapping (bucket_find_contain), with a fitting direction. */
  checkSync(dev: Device, type: number, addr: bigint, size: number, dir: number, sgCall: number, toCpu: boolean): void {
    const t = this.t;
    const id = this.idOf(dev);
    const addrNum = this.t.toNum(addr);
    const addrBig = bigOrNull(addr, addrNum, size);
    const s = t.findContain(id, addrNum, addrBig, size, type, dir, sgCall);
    if (s < 0) {
      this.report(dev, `device driver tries to sync DMA memory it has not allocated [device address=${hex(addr)}] [size=${size} bytes]`,
        { check: 'sync-not-allocated', addr, size });
      return;
    }
    const eSize = t.size[s];
    const eDir = t.dir[s];
    if (size > eSize) {
      // unreachable while containing_match() holds (the kernel keeps the check)
      this.report(dev, `device driver syncs DMA memory outside allocated range [device address=${hex(t.exactAddr(s))}] [allocation size=${eSize} bytes] [sync offset+size=${size}]`,
        { check: 'sync-outside', addr, size });
    }
    if (eDir === DMA_BIDIRECTIONAL) return;
    const dirs = `[mapped with ${dmaDirName(eDir)}] [synced with ${dmaDirName(dir)}]`;
    if (dir !== eDir) {
      this.report(dev, `device driver syncs DMA memory with different direction [device address=${hex(addr)}] [size=${eSize} bytes] ${dirs}`,
        { check: 'sync-direction', addr, mapDir: eDir, syncDir: dir });
    }
    if (toCpu && eDir !== DMA_FROM_DEVICE && dir !== DMA_TO_DEVICE) {
      this.report(dev, `device driver syncs device read-only DMA memory for cpu [device address=${hex(addr)}] [size=${eSize} bytes] ${dirs}`,
        { check: 'sync-read-only', addr });
    }
    if (!toCpu && eDir !== DMA_TO_DEVICE && dir !== DMA_FROM_DEVICE) {
      this.report(dev, `device driver syncs device write-only DMA memory to device [device address=${hex(addr)}] [size=${eSize} bytes] ${dirs}`,
        { check: 'sync-write-only', addr });
    }
    if (sgCall !== 0 && type === T_SG && sgCall !== t.sgCall[s]) {
      this.report(dev, `device driver syncs DMA sg list with different entry count [map count=${t.sgCall[s]}] [sync count=${sgCall}]`,
        { check: 'sync-sg-count', mapCount: t.sgCall[s], syncCount: sgCall });
    }
  }

  /** debug_dma_sync_sg_for_cpu/device(): check_sync() per entry, up to the mapped count found for the first. */
  syncSg(dev: Device, sgt: SgTable, nelems: number, dir: number, toCpu: boolean): void {
    const id = this.idOf(dev);
    let mapped = 0;
    for (let i = 0; i < nelems; i++) {
      const addr = sgt.dmaAddressAt(i);
      const size = sgt.dmaLengthAt(i);
      if (i === 0) mapped = this.nrMapped(id, addr, size, dir, nelems);
      if (i >= mapped) break;
      this.checkSync(dev, T_SG, addr, size, dir, nelems, toCpu);
    }
  }

  /**
   * dma_debug_device_change(BUS_NOTIFY_UNBOUND_DRIVER): the device's entries still in the hash are
   * a leak, reported once with the last one found (device_dma_allocations walks bucket by bucket).
   * The device's IOVA links still linked are a model-check leak. Returns both counts added.
   */
  checkLeaks(dev: Device): number {
    const id = this.ids.get(dev);
    if (id === undefined) return 0;
    const t = this.t;
    let count = 0, last = -1;
    if (this.kernelCount[id] > 0) {
      for (let b = 0; b < HASH_SIZE; b++) {
        for (let s = t.head[b]; s >= 0; s = t.next[s]) if (t.devId[s] === id) { count++; last = s; }
      }
      // Model deviation: the kernel's message is two lines ("\nOne of leaked ..."); an event is one
      // line, so a space joins them.
      this.report(dev, `device driver has pending DMA allocations while released from device [count=${count}] One of leaked entries details: [device address=${hex(t.exactAddr(last))}] [size=${t.size[last]} bytes] [mapped with ${dmaDirName(t.dir[last])}] [mapped as ${TYPE_NAMES[t.type[last]]}]`,
        { check: 'leak', count });
    }
    const links = this.linkCount[id];
    if (links > 0) {
      const slots: number[] = [];
      this.byDev[id]!.all(slots);
      const s = slots.find((x) => t.type[x] === T_LINK)!;
      this.reportModel(dev, `dma_iova_link()ed ranges still linked while released from device [count=${links}] One of them: [device address=${hex(t.exactAddr(s))}] [size=${t.size[s]} bytes] [linked with ${dmaDirName(t.dir[s])}]`,
        { check: 'iova-leak', count: links });
    }
    return count + links;
  }

  /** Whether some entry of dev starts exactly at addr (exact_match in its bucket). */
  isMapped(dev: Device, addr: bigint): boolean {
    const t = this.t;
    const id = this.idOf(dev);
    const addrNum = this.t.toNum(addr);
    const addrBig = bigOrNull(addr, addrNum, 0);
    for (let s = t.head[hashOf(addrNum, addrBig)]; s >= 0; s = t.next[s]) {
      if (t.devId[s] === id && t.sameAddr(s, addrNum, addrBig)) return true;
    }
    return false;
  }

  /** The size of the entry check_unmap() would find for a dma_unmap_phys(addr, size, dir), or -1. */
  mappedSize(dev: Device, addr: bigint, size: number, dir: number): number {
    const addrNum = this.t.toNum(addr);
    const s = this.t.findExact(this.idOf(dev), addrNum, bigOrNull(addr, addrNum, size), size, T_PHY, dir, 0);
    return s < 0 ? -1 : this.t.size[s];
  }

  // ---- the model's own records and checks ----

  /** Adds slot s to the model's ownership and CPU-write indexes. */
  private watch(s: number): void {
    this.t.flags[s] |= F_WATCHED;
    this.devIndex(this.t.devId[s]).add(s);
    this.byPhys.add(s);
  }

  private unwatch(s: number): void {
    this.t.flags[s] &= ~F_WATCHED;
    this.byDev[this.t.devId[s]]!.remove(s);
    this.byPhys.remove(s);
  }

  /** Records one dma_iova_link() of [phys, phys + size) at IOVA addr (the kernel records nothing). */
  iovaLink(dev: Device, phys: bigint, size: number, dir: number, addr: bigint, bounced: boolean): void {
    const addrNum = this.t.toNum(addr);
    if (addrNum + size <= MAX_SAFE) {
      this.iovaLinkNum(dev, this.t.toNum(phys), size, dir, addrNum, bounced);
      return;
    }
    const s = this.iovaLinkNum(dev, this.t.toNum(phys), size, dir, 0, bounced);
    // beyond 2^53: re-key the slot with its exact address
    const ix = this.byDev[this.t.devId[s]]!;
    ix.remove(s);
    this.t.setAddr(s, addrNum, addr, size);
    ix.add(s);
  }

  /**
   * iovaLink with the CPU physical and IOVA addresses as numbers (both exact, the IOVA's end below
   * 2^53), as the two-step fast path has them: no bigint is made per link. Returns the slot.
   */
  iovaLinkNum(dev: Device, physNum: number, size: number, dir: number, addrNum: number, bounced: boolean): number {
    const t = this.t;
    const s = t.allocRaw();
    const id = dev === this.lastDev ? this.lastId : this.idOf(dev);
    t.devId[s] = id;
    t.type[s] = T_LINK;
    t.dir[s] = dir;
    t.paddr[s] = physNum;
    t.addr[s] = addrNum;
    t.size[s] = size;
    const watched = bounced || !dev.dmaCoherent;
    t.flags[s] = F_DEVICE_OWNS | (bounced ? F_BOUNCED : 0) | (dev.dmaCoherent ? 0 : F_NONCOHERENT) | (watched ? F_WATCHED : 0);
    this.linkCount[id]++;
    (this.byDev[id] ?? this.devIndex(id)).add(s);
    if (watched) this.byPhys.add(s);
    return s;
  }

  /**
   * Checks a dma_iova_unlink / dma_iova_destroy of [addr, addr + size) against the recorded links: it
   * must cover at least one, only whole ones, each unlinked with the direction it was linked with.
   * The covered links are forgotten.
   */
  iovaUnlink(dev: Device, addr: bigint, size: number, dir: number): void {
    const t = this.t;
    const id = this.idOf(dev);
    const ix = this.byDev[id];
    const addrNum = this.t.toNum(addr);
    const addrBig = bigOrNull(addr, addrNum, size);
    let hits = 0;
    if (ix !== undefined && this.linkCount[id] > 0) {
      ix.scan(addrNum, addrNum + size, (s) => {
        if (t.type[s] !== T_LINK || !t.overlapsRange(s, addrNum, addrBig, size)) return false;
        hits++;
        if (!t.withinRange(s, addrNum, addrBig, size)) {
          this.reportModel(dev, `IOVA unlink covers part of a link [link address=${hex(t.exactAddr(s))}] [link size=${t.size[s]} bytes] [unlink address=${hex(addr)}] [unlink size=${size} bytes]`,
            { check: 'iova-unlink-partial', addr: t.exactAddr(s), linkSize: t.size[s], unlinkSize: size });
        }
        if (t.dir[s] !== dir) {
          this.reportModel(dev, `IOVA unlink with another direction than the link [device address=${hex(t.exactAddr(s))}] [size=${t.size[s]} bytes] [linked with ${dmaDirName(t.dir[s])}] [unlinked with ${dmaDirName(dir)}]`,
            { check: 'iova-unlink-direction', addr: t.exactAddr(s), linkDir: t.dir[s], unlinkDir: dir });
        }
        this.linkCount[id]--;
        if (t.flags[s] & F_WATCHED) this.byPhys.remove(s);
        t.release(s);
        return true;
      });
    }
    if (hits === 0) {
      this.reportModel(dev, `IOVA unlink of a range where nothing is linked [device address=${hex(addr)}] [size=${size} bytes]`,
        { check: 'iova-unlink-nothing-linked', addr, size });
    }
  }

  /** A sync hands the buffer to the CPU (toCpu) or the device: every watched mapping it overlaps. */
  setOwner(dev: Device, addr: bigint, size: number, toCpu: boolean): void {
    const id = this.ids.get(dev);
    const ix = id === undefined ? undefined : this.byDev[id];
    if (ix === undefined || ix.count === 0) return;
    const t = this.t;
    const addrNum = this.t.toNum(addr);
    const addrBig = bigOrNull(addr, addrNum, size);
    ix.scan(addrNum, addrNum + size, (s) => {
      if (t.overlapsRange(s, addrNum, addrBig, Math.max(size, 1))) {
        if (toCpu) t.flags[s] &= ~F_DEVICE_OWNS; else t.flags[s] |= F_DEVICE_OWNS;
      }
      return false;
    });
  }

  /**
   * The CPU stores [phys, phys + len): a model-check finding for every mapping it overlaps that the
   * device owns while bounced or non-coherent (the device would not see the store, or a later cache
   * invalidation would drop it). Returns the number of findings.
   */
  checkCpuWrite(phys: number, len: number): number {
    if (!this.enabled || this.byPhys.count === 0 || len <= 0) return 0;
    const t = this.t;
    let n = 0;
    this.byPhys.scan(phys, phys + len, (s) => {
      if ((t.flags[s] & F_DEVICE_OWNS) === 0 || t.paddr[s] >= phys + len || t.paddr[s] + t.size[s] <= phys) return false;
      n++;
      const dev = this.devs[t.devId[s]];
      this.reportModel(dev, `CPU writes to a buffer the device owns [phys=${hex(phys)}+${len}] [mapping ${hex(t.exactAddr(s))} size=${t.size[s]} ${dmaDirName(t.dir[s])}] [${(t.flags[s] & F_BOUNCED) ? 'bounced' : 'non-coherent'}]`,
        { check: 'cpu-write', phys: BigInt(phys), len, devAddr: t.exactAddr(s) });
      return false;
    });
    return n;
  }
}

/** The slot on a machine that holds its dma-debug (the kernel's global dma_entry_hash and settings). */
const DMA_DEBUG = new SlotKey<DmaDebug>('dma-debug');

/** The dma-debug of the machine dev is on. @throws TypeError if dev is on no built machine. */
export function dmaDebugOf(dev: Device): DmaDebug {
  return dmaContextOf(dev).mm.slots.get(DMA_DEBUG)!;
}

/** The machine's dma-debug when it runs for dev, else null. */
function debugOf(dev: Device): DmaDebug | null {
  const d = dmaDebugOf(dev);
  return d.enabled ? d : null;
}

/**
 * The Ok result dmaMapPhys returns while dma-debug runs. Reading `ok` (which a caller must do before
 * it may use `value`) is the driver's dma_mapping_error() on the handle: the first read tells
 * dma-debug (debug_dma_mapping_error), so an unmap does not report "failed to check map error".
 * A caller that takes `value` without looking at `ok` has not checked, as in the kernel.
 * Model deviation: the kernel's dma_map_phys returns a bare dma_addr_t and only an explicit
 * dma_mapping_error() checks it; the model's Result must be looked at to be used, so that look is
 * the check (an explicit dmaMappingError still works).
 */
export class DmaMapOk implements Ok<bigint> {
  declare readonly ok: true;
  readonly value: bigint;
  readonly #debug: DmaDebug;
  readonly #dev: Device;
  #checked = false;

  static readonly #okProperty: PropertyDescriptor = {
    enumerable: true,
    get(this: DmaMapOk): true {
      if (!this.#checked) {
        this.#checked = true;
        if (this.#debug.enabled) this.#debug.mappingError(this.#dev, this.value);
      }
      return true;
    },
  };

  constructor(debug: DmaDebug, dev: Device, value: bigint) {
    // an own, enumerable `ok`, so the result compares and spreads like a plain { ok, value }
    Object.defineProperty(this, 'ok', DmaMapOk.#okProperty);
    this.value = value;
    this.#debug = debug;
    this.#dev = dev;
  }
}

/** debug_dma_mapping_error: dma_mapping_error() was called on addr. */
export function debugDmaMappingError(dev: Device, addr: bigint): void {
  const ctx = dmaContextIfAny(dev);
  const d = ctx?.mm.slots.get(DMA_DEBUG);
  if (d !== undefined && d.enabled) d.mappingError(dev, addr);
}

/** Whether an unmap of (addr) for dev matches a tracked mapping (used to skip the backend on a bogus unmap). */
export function debugDmaIsMapped(dev: Device, addr: bigint): boolean {
  const d = debugOf(dev);
  return d === null || d.isMapped(dev, addr);
}

/** debug_dma_map_phys: tracks a successful one-shot mapping (DMA_MAPPING_ERROR is not tracked). */
export function debugDmaMapPhys(dev: Device, phys: bigint, size: number, dir: number, addr: bigint, attrs: number,
  facts: DebugMapFacts = NOT_BOUNCED): void {
  debugOf(dev)?.mapPhys(dev, phys, size, dir, addr, attrs, facts.bounced);
}

/** debug_dma_unmap_phys: check_unmap() of a 'phy' ref. */
export function debugDmaUnmapPhys(dev: Device, addr: bigint, size: number, dir: number, attrs = -1): void {
  debugOf(dev)?.checkUnmap(dev, T_PHY, addr, size, dir, 0, -1, attrs);
}

/** debug_dma_alloc_coherent: tracks a successful coherent allocation. */
export function debugDmaAllocCoherent(dev: Device, size: number, addr: bigint, phys: bigint, attrs: number): void {
  debugOf(dev)?.allocCoherent(dev, size, addr, phys, attrs);
}

/**
 * debug_dma_free_coherent: check_unmap() of a 'coherent' ref, unless the CPU address is not a valid
 * one (no struct page). Returns whether dma-debug checked the call.
 */
export function debugDmaFreeCoherent(dev: Device, size: number, phys: bigint, addr: bigint): boolean {
  return debugOf(dev)?.freeCoherent(dev, size, phys, addr) ?? false;
}

/** debug_dma_map_sg: one entry per DMA segment of the mapped table (mappedEnts of them). */
export function debugDmaMapSg(dev: Device, sgt: SgTable, callEnts: number, mappedEnts: number, dir: number, attrs: number,
  facts: DebugMapFacts = NOT_BOUNCED): void {
  debugOf(dev)?.mapSg(dev, sgt, callEnts, mappedEnts, dir, attrs, facts.bounced);
}

/** debug_dma_unmap_sg: check_unmap() per entry of the table (callEnts = the nents of the map call). */
export function debugDmaUnmapSg(dev: Device, sgt: SgTable, callEnts: number, dir: number, attrs = -1): void {
  debugOf(dev)?.unmapSg(dev, sgt, callEnts, dir, attrs);
}

/** debug_dma_sync_single_for_cpu: check_sync() of a 'single' ref; the CPU owns the buffer afterwards. */
export function debugDmaSyncSingleForCpu(dev: Device, addr: bigint, size: number, dir: number): void {
  const d = debugOf(dev);
  if (d === null) return;
  d.checkSync(dev, T_SINGLE, addr, size, dir, 0, true);
  d.setOwner(dev, addr, size, true);
}

/** debug_dma_sync_single_for_device: check_sync() of a 'single' ref; the device owns the buffer afterwards. */
export function debugDmaSyncSingleForDevice(dev: Device, addr: bigint, size: number, dir: number): void {
  const d = debugOf(dev);
  if (d === null) return;
  d.checkSync(dev, T_SINGLE, addr, size, dir, 0, false);
  d.setOwner(dev, addr, size, false);
}

/** debug_dma_sync_sg_for_cpu/device over the table's orig_nents entries (as dma_sync_sgtable_* passes them). */
export function debugDmaSyncSg(dev: Device, sgt: SgTable, dir: number, toCpu: boolean): void {
  const d = debugOf(dev);
  if (d === null) return;
  d.syncSg(dev, sgt, sgt.origNents, dir, toCpu);
  for (let i = 0; i < sgt.nents; i++) d.setOwner(dev, sgt.dmaAddressAt(i), sgt.dmaLengthAt(i), toCpu);
}

/** A model record of one dma_iova_link of [phys, phys + size) at IOVA addr (no kernel hook exists). */
export function debugDmaIovaLink(dev: Device, phys: bigint, size: number, dir: number, addr: bigint, _attrs: number,
  facts: DebugMapFacts = NOT_BOUNCED): void {
  debugOf(dev)?.iovaLink(dev, phys, size, dir, addr, facts.bounced);
}

/**
 * debugDmaIovaLink for callers that hold the machine's DmaDebug and exact numbers (the IOVA's end
 * below 2^53): the two-step fast path, which then makes no bigint per link.
 */
export function debugDmaIovaLinkNum(debug: DmaDebug, dev: Device, physNum: number, size: number, dir: number, addrNum: number,
  bounced: boolean): void {
  if (debug.enabled) debug.iovaLinkNum(dev, physNum, size, dir, addrNum, bounced);
}

/**
 * Model check of a dma_iova_unlink / destroy of [addr, addr + size): it must cover whole links (a
 * partial cover is reported), at least one, each with the direction it was linked with.
 */
export function debugDmaIovaUnlink(dev: Device, addr: bigint, size: number, dir: number): void {
  debugOf(dev)?.iovaUnlink(dev, addr, size, dir);
}

/**
 * Model check: the CPU writes [phys, phys + len); a MODEL-CHECK event for every overlapping mapping
 * the device owns that is bounced or non-coherent. Returns the number of findings.
 */
export function debugDmaCheckCpuWrite(debug: DmaDebug, phys: bigint, len: number): number {
  return debug.checkCpuWrite(Number(phys), len);
}

/**
 * The CPU-write hook the machine installs on its physical memory (PhysMem onCpuWrite): costs two
 * checks while nothing is watched.
 */
export function dmaDebugCpuWriteHook(debug: DmaDebug): (addrNum: number, len: number) => void {
  return (addrNum, len) => {
    if (!debug.enabled || debug.cpuWriteWatchCount === 0) return;
    debug.checkCpuWrite(addrNum, len);
  };
}

/**
 * dma_debug_device_change at driver unbind: reports the device's entries still mapped (and, as a
 * model check, its IOVA links still linked). Returns how many there are.
 */
export function dmaDebugCheckLeaks(dev: Device): number {
  return debugOf(dev)?.checkLeaks(dev) ?? 0;
}

