// Test support (not part of the public surface): a small MachineMm with sparse RAM, a page
// allocator that can be told to fail, and the real base counters/event log, so the IOMMU tests
// do not depend on the full memory model.

import { EventLog, Prng, Stats, err, ok, type Result } from '../base/index.ts';
import type { MachineMm, MemRegion, PageFacts, PhysMem } from '../mm/types.ts';

/** A MachineMm for IOMMU tests: RAM [0, ramLen), 4 KiB pages, kernel pages from the top of RAM. */
export class TestMachine implements MachineMm {
  readonly pageSize = 4096;
  readonly pageShift = 12;
  readonly physAddrBits = 46;
  readonly regions: readonly MemRegion[];
  readonly mem: PhysMem;
  readonly events = new EventLog();
  readonly stats = new Stats();
  readonly rng = new Prng(1);
  /** Allocations left before allocKernelPages fails with ENOMEM (Infinity = never). */
  failAfter = Infinity;
  private readonly chunks = new Map<number, Uint8Array>();
  private readonly freeList: number[] = [];
  private nextPfn: number;
  private readonly lowPfn: number;
  readonly allocated = new Set<number>();

  constructor(ramLen = 2 ** 36) {
    const region: MemRegion = {
      id: 0, name: 'System RAM', kind: 'ram', start: 0n, len: ramLen, end: BigInt(ramLen),
      hasStructPage: true, mmio: false, pgmapId: 0, providerId: 0, rangeFlags: 0,
    };
    this.regions = [region];
    this.nextPfn = ramLen / 4096 - 1;
    this.lowPfn = ramLen / 4096 / 2;
    const chunks = this.chunks;
    const chunk = (addr: bigint): Uint8Array => {
      if (addr < 0n || addr >= BigInt(ramLen)) throw new RangeError(`address 0x${addr.toString(16)} is outside RAM`);
      const i = Number(addr >> 12n);
      let c = chunks.get(i);
      if (c === undefined) { c = new Uint8Array(4096); chunks.set(i, c); }
      return c;
    };
    this.mem = {
      chunkSize: 4096,
      get residentBytes() { return chunks.size * 4096; },
      read(addr, len) {
        const out = new Uint8Array(len);
        for (let o = 0; o < len;) {
          const a = addr + BigInt(o), off = Number(a & 4095n), n = Math.min(len - o, 4096 - off);
          out.set(chunk(a).subarray(off, off + n), o);
          o += n;
        }
        return out;
      },
      write(addr, bytes) {
        for (let o = 0; o < bytes.length;) {
          const a = addr + BigInt(o), off = Number(a & 4095n), n = Math.min(bytes.length - o, 4096 - off);
          chunk(a).set(bytes.subarray(o, o + n), off);
          o += n;
        }
      },
      fill(addr, len, value) { this.write(addr, new Uint8Array(len).fill(value)); },
      copy(dst, src, len) { this.write(dst, this.read(src, len)); },
      view(addr, len) {
        const off = Number(addr & 4095n);
        if (off + len > 4096) throw new RangeError(`view at 0x${addr.toString(16)} len ${len} crosses a chunk`);
        return chunk(addr).subarray(off, off + len);
      },
    };
  }

  regionAt(addr: bigint): MemRegion | undefined {
    return addr >= 0n && addr < this.regions[0].end ? this.regions[0] : undefined;
  }

  pfnFacts(pfn: bigint): PageFacts | undefined {
    const r = this.regionAt(pfn << 12n);
    return r === undefined ? undefined : { region: r, hasStructPage: true, pgmapId: 0, rangeFlags: 0 };
  }

  allocKernelPages(order: number): Result<bigint> {
    if (order !== 0) return err('EINVAL', 'test machine allocates order 0 only');
    if (this.failAfter <= 0) return err('ENOMEM');
    this.failAfter--;
    let pfn = this.freeList.pop();
    if (pfn === undefined) {
      if (this.nextPfn < this.lowPfn) return err('ENOMEM');
      pfn = this.nextPfn--;
    }
    // dirty the page so tests notice a table that is not zeroed on allocation
    this.mem.view(BigInt(pfn) * 4096n, 4096).fill(0xa5);
    this.allocated.add(pfn);
    this.stats.pagesAllocated++;
    return ok(BigInt(pfn));
  }

  freeKernelPages(pfn: bigint, order: number): void {
    const p = Number(pfn);
    if (order !== 0 || !this.allocated.has(p)) this.events.bug('mm', `bad free of kernel page ${pfn} order ${order}`);
    this.allocated.delete(p);
    this.freeList.push(p);
    this.stats.pagesFreed++;
  }

  get freePages(): number {
    return this.nextPfn - this.lowPfn + 1 + this.freeList.length;
  }
}
