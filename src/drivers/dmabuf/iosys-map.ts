// Models: include/linux/iosys-map.h (the former dma-buf-map.h): a pointer to a buffer that is either
// system memory (vaddr: plain loads and stores, memcpy) or I/O memory (vaddr_iomem: readb/w/l/q,
// writeb/w/l/q, memcpy_fromio / memcpy_toio, memset_io), and dma_buf_vmap() / dma_buf_vunmap()
// (drivers/dma-buf/dma-buf.c: under the reservation lock) that hand one out for a whole buffer.
// A plain store through the pointer of I/O memory (what iosys_map exists to prevent: sparse's
// __iomem check, a fault or lost write on architectures that need the accessors) is a MODEL-CHECK.
// Model deviation: the map addresses the buffer by byte offset over its physical ranges (the
// kernel's vmap makes one virtually contiguous kernel mapping of them).

import { checkLen, err, ok, type Result } from '../../base/index.ts';
import type { MachineMm } from '../../mm/index.ts';
import type { PhyrList } from '../../phyr/index.ts';
import { modelCheckEvent, type DmaBuf } from './dma-buf.ts';

/** struct iosys_map over a buffer's physical ranges. */
export class IosysMap {
  readonly mm: MachineMm;
  /** is_iomem: some of the memory is I/O memory (a BAR): the I/O accessors must be used. */
  readonly isIomem: boolean;
  readonly len: number;
  /** I/O accessor calls (readX / writeX / memcpy_*io / memset_io) made through this map. */
  ioAccesses = 0;
  private ranges: PhyrList | null;

  /** @internal made by dmaBufVmap / iosysMapFromRanges. */
  constructor(mm: MachineMm, ranges: PhyrList, isIomem: boolean) {
    this.mm = mm;
    this.ranges = ranges;
    this.isIomem = isIomem;
    this.len = ranges.totalLen;
  }

  /** iosys_map_is_null(). */
  get isNull(): boolean {
    return this.ranges === null;
  }

  /** iosys_map_clear(). */
  clear(): void {
    this.ranges = null;
  }

  /** @internal calls fn(phys, offsetInRequest, n) for each physical piece of [offset, offset + len). */
  each(offset: number, len: number, fn: (phys: bigint, at: number, n: number) => void): void {
    const r = this.ranges;
    if (r === null) throw new TypeError('map is null (iosys_map_clear or dmaBufVunmap)');
    checkLen('offset', offset);
    checkLen('len', len);
    if (offset + len > this.len) throw new RangeError(`[offset, offset + len) must lie in the ${this.len}-byte map, got [${offset}, ${offset + len})`);
    let skip = offset, at = 0, left = len;
    for (let i = 0; i < r.count && left > 0; i++) {
      const l = r.lenAt(i);
      if (skip >= l) { skip -= l; continue; }
      const n = Math.min(l - skip, left);
      fn(r.addrAt(i) + BigInt(skip), at, n);
      skip = 0;
      at += n;
      left -= n;
    }
  }
}

/** An iosys_map of ranges: I/O memory when any range lies in an MMIO region of the memory map. */
export function iosysMapFromRanges(mm: MachineMm, ranges: PhyrList): IosysMap {
  let io = false;
  for (let i = 0; i < ranges.count && !io; i++) io = mm.regionAt(ranges.addrAt(i))?.mmio === true;
  return new IosysMap(mm, ranges, io);
}

function checkMap(map: unknown): IosysMap {
  if (!(map instanceof IosysMap)) throw new TypeError(`map must be an IosysMap, got ${String(map)}`);
  return map;
}

/** iosys_map_memcpy_to(): memcpy_toio for I/O memory, memcpy otherwise. */
export function iosysMapMemcpyTo(map: IosysMap, offset: number, src: Uint8Array): void {
  checkMap(map);
  if (!(src instanceof Uint8Array)) throw new TypeError(`src must be a Uint8Array, got ${String(src)}`);
  if (map.isIomem) map.ioAccesses++;
  map.each(offset, src.length, (p, at, n) => map.mm.mem.write(p, src.subarray(at, at + n)));
}

/** iosys_map_memcpy_from(): memcpy_fromio for I/O memory, memcpy otherwise. */
export function iosysMapMemcpyFrom(map: IosysMap, offset: number, len: number): Uint8Array {
  checkMap(map);
  if (map.isIomem) map.ioAccesses++;
  const out = new Uint8Array(len);
  map.each(offset, len, (p, at, n) => out.set(map.mm.mem.read(p, n), at));
  return out;
}

/** iosys_map_memset(): memset_io for I/O memory, memset otherwise. */
export function iosysMapMemset(map: IosysMap, offset: number, value: number, len: number): void {
  checkMap(map);
  checkLen('value', value, 0, 255);
  if (map.isIomem) map.ioAccesses++;
  map.each(offset, len, (p, _at, n) => map.mm.mem.fill(p, n, value));
}

function checkSize(size: unknown): asserts size is 1 | 2 | 4 | 8 {
  if (size !== 1 && size !== 2 && size !== 4 && size !== 8) throw new RangeError(`size must be 1, 2, 4 or 8, got ${String(size)}`);
}

/** iosys_map_rd(): a little-endian load of size bytes (readb/w/l/q for I/O memory). */
export function iosysMapRd(map: IosysMap, offset: number, size: 1 | 2 | 4 | 8): bigint {
  checkSize(size);
  const b = iosysMapMemcpyFrom(map, offset, size);
  let v = 0n;
  for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
  return v;
}

/** iosys_map_wr(): a little-endian store of size bytes (writeb/w/l/q for I/O memory). */
export function iosysMapWr(map: IosysMap, offset: number, size: 1 | 2 | 4 | 8, value: bigint): void {
  checkSize(size);
  if (typeof value !== 'bigint' || value < 0n || value >= 1n << BigInt(size * 8)) throw new RangeError(`value must be a ${size * 8}-bit unsigned bigint, got ${String(value)}`);
  const b = new Uint8Array(size);
  for (let i = 0; i < size; i++) b[i] = Number((value >> BigInt(8 * i)) & 0xffn);
  iosysMapMemcpyTo(map, offset, b);
}

/**
 * A plain store through map.vaddr (`*(u32 *)map.vaddr = x`, memcpy to it) instead of the accessors.
 * Correct for system memory; for I/O memory the kernel has no runtime check (sparse flags the
 * __iomem dereference at build time, and some architectures fault or lose the write), so the model
 * reports a MODEL-CHECK, and the bytes are stored (x86 would store them).
 */
export function iosysMapPlainStore(map: IosysMap, offset: number, bytes: Uint8Array): void {
  checkMap(map);
  if (!(bytes instanceof Uint8Array)) throw new TypeError(`bytes must be a Uint8Array, got ${String(bytes)}`);
  if (map.isIomem) {
    modelCheckEvent(map.mm.events, `plain store of ${bytes.length} bytes at offset ${offset} into I/O memory through an iosys_map (use iosys_map_wr / memcpy_toio)`, { offset, len: bytes.length });
  }
  map.each(offset, bytes.length, (p, at, n) => map.mm.mem.write(p, bytes.subarray(at, at + n)));
}

/**
 * dma_buf_vmap(): a kernel mapping of the whole buffer as an iosys_map (I/O memory for a BAR), under
 * the reservation lock (WARN and EINVAL without it: Model deviation, the kernel's lockdep WARNs and
 * carries on). While a mapping is out, another call returns the same map and counts it
 * (vmapping_counter). Errors: EINVAL (the exporter has no vmap op, e.g. vfio-pci; no lock), the
 * exporter's vmap errors (ENODEV once revoked) with the kernel's WARN_ON_ONCE.
 */
export function dmaBufVmap(buf: DmaBuf): Result<IosysMap> {
  if (!buf.resv.assertHeld('dma_buf_vmap')) return err('EINVAL', 'dma_buf_vmap without the reservation lock');
  // drivers/dma-buf/dma-buf.c: dma_buf_vmap() returns -EINVAL when ops->vmap is NULL
  if (buf.ops.vmap === undefined) return err('EINVAL', `${buf.name}: the exporter (${buf.ops.expName}) has no vmap`);
  if (buf.vmappingCounter > 0 && buf.vmapPtr instanceof IosysMap) {
    buf.vmappingCounter++;
    return ok(buf.vmapPtr);
  }
  const r = buf.ops.vmap(buf);
  if (!r.ok) {
    buf.events.warnOnce('dma_buf_vmap:ret', 'dma-buf', `dma_buf_vmap: WARN_ON_ONCE(ret): ${buf.ops.expName}'s vmap of ${buf.name} failed (${r.errno})`);
    return r;
  }
  const map = iosysMapFromRanges(buf.mm, r.value);
  buf.vmapPtr = map;
  buf.vmappingCounter = 1;
  return ok(map);
}

/**
 * dma_buf_vunmap(): drops one count; the last one calls the exporter's vunmap and clears the map.
 * Needs the lock (WARN otherwise, and it goes ahead). A map that is not the buffer's current one
 * (the kernel's BUG_ON) is a MODEL-CHECK and changes nothing.
 */
export function dmaBufVunmap(buf: DmaBuf, map: IosysMap): void {
  checkMap(map);
  buf.resv.assertHeld('dma_buf_vunmap');
  if (buf.vmappingCounter === 0 || buf.vmapPtr !== map) {
    modelCheckEvent(buf.events, `dma_buf_vunmap of a map ${buf.name} did not hand out (or unmapped already)`, { buf: buf.name });
    return;
  }
  if (--buf.vmappingCounter > 0) return;
  buf.ops.vunmap?.(buf);
  buf.vmapPtr = null;
  map.clear();
}
