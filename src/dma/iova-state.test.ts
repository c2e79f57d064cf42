import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { allocPhys, makeMachine, pattern, type IommuMode } from '../../test/fixtures/dma-b-machines.ts';
import { iommuGetDmaDomain, iommuWalk } from '../iommu/index.ts';
import { DMA_ATTR_MMIO, DMA_ATTR_PRIVILEGED, DMA_ATTR_SKIP_CPU_SYNC, DMA_BIDIRECTIONAL, DMA_FROM_DEVICE, DMA_TO_DEVICE } from './constants.ts';
import {
  DMA_IOVA_USE_SWIOTLB, DmaIovaState, dmaIovaDestroy, dmaIovaFree, dmaIovaLink, dmaIovaLinkBatch, dmaIovaSize, dmaIovaSync,
  dmaIovaTryAlloc, dmaIovaUnlink, dmaUseIova,
} from './iova-state.ts';
import { PhyrList } from '../phyr/index.ts';
import { iommuIovaToPhys } from '../iommu/index.ts';
import { dmaSetMinAlignMask } from './mask.ts';
import { gpuBar } from '../../test/fixtures/dma-b-machines.ts';

const PAGE = 4096;

describe('dmaIovaTryAlloc', () => {
  it.each<IommuMode>(['none', 'passthrough'])('returns false and leaves the state zeroed without a DMA domain (%s)', (mode) => {
    const m = makeMachine(mode);
    const dev = m.device('nvme0');
    const st = new DmaIovaState();
    st.addr = 123n;
    expect(dmaIovaTryAlloc(dev, st, 0n, 3 * PAGE)).toBe(false);
    expect(dmaUseIova(st)).toBe(false);
    expect(st.addr).toBe(0n);
    expect(dmaIovaSize(st)).toBe(0);
  });

  it('warns and fails for size 0', () => {
    const m = makeMachine('strict');
    const st = new DmaIovaState();
    const w = m.events.count('WARN');
    expect(dmaIovaTryAlloc(m.device('nvme0'), st, 0n, 0)).toBe(false);
    expect(m.events.count('WARN')).toBe(w + 1);
  });

  it('keeps the phys hint offset inside the granule', () => {
    const m = makeMachine('strict');
    const st = new DmaIovaState();
    expect(dmaIovaTryAlloc(m.device('nvme0'), st, 0x1234_5a00n, 2 * PAGE)).toBe(true);
    expect(st.addr & 0xfffn).toBe(0xa00n);
    expect(dmaIovaSize(st)).toBe(2 * PAGE);
    expect(st.rawSize).toBe(BigInt(2 * PAGE));
    expect(st.kernelBytes).toBe(16);
    dmaIovaFree(m.device('nvme0'), st);
    expect(m.stats.iovaAllocs).toBe(m.stats.iovaFrees + 0);
  });
});

// high: a 5-level x86-64 table and no 32-bit first try (iommu.forcedac), so the window lies above 2^53
describe.each<[IommuMode, boolean]>([['strict', false], ['lazy', false], ['strict', true]])('two-step round trip (%s, window above 2^53: %s)', (mode, high) => {
  it('links scattered pages into one contiguous window; the device and the CPU see the same bytes', () => {
    const m = makeMachine(mode, 1, high ? { iommu: { format: 'x86-64', levels: 5, mode } } : {});
    const dev = m.device('nvme0');
    if (high) dev.pci32BitWorkaround = false;
    const pages = [allocPhys(m), allocPhys(m, 1) + BigInt(PAGE), allocPhys(m)];
    const st = new DmaIovaState();
    expect(dmaIovaTryAlloc(dev, st, pages[0], 3 * PAGE)).toBe(true);
    expect(st.addr >= 1n << 53n).toBe(high);
    pages.forEach((p, i) => expect(dmaIovaLink(dev, st, p, i * PAGE, PAGE, DMA_BIDIRECTIONAL, 0)).toEqual({ ok: true, value: undefined }));
    expect(dmaIovaSync(dev, st, 0, 3 * PAGE).ok).toBe(true);
    expect(m.stats.dmaIovaLinks).toBe(3);
    expect(m.stats.dmaIovaSyncs).toBe(1);

    // device -> CPU
    const data = pattern(3 * PAGE, 7);
    expect(dev.dmaWrite(st.addr, data).ok).toBe(true);
    pages.forEach((p, i) => expect(m.mem.read(p, PAGE)).toEqual(data.subarray(i * PAGE, (i + 1) * PAGE)));
    // CPU -> device
    const back = pattern(3 * PAGE, 8);
    pages.forEach((p, i) => m.mem.write(p, back.subarray(i * PAGE, (i + 1) * PAGE)));
    const r = dev.dmaRead(st.addr, 3 * PAGE);
    expect(r.ok && r.value).toEqual(back);

    dmaIovaDestroy(dev, st, 3 * PAGE, DMA_BIDIRECTIONAL, 0);
    expect(m.stats.iommuLeafPtesWritten).toBeGreaterThanOrEqual(3);
    if (mode === 'strict') {
      const f = m.events.count('FAULT');
      expect(dev.dmaRead(st.addr, 16).ok).toBe(false);
      expect(m.events.count('FAULT')).toBe(f + 1);
    }
    expect(m.events.count('DMA-DEBUG')).toBe(0);
    expect(m.events.count('WARN')).toBe(0);
  });

  it('an unaligned first link starts the window at its offset; interior seams stay contiguous', () => {
    const m = makeMachine(mode);
    const dev = m.device('nvme0');
    const a = allocPhys(m) + 0x300n;
    const b = allocPhys(m);
    const st = new DmaIovaState();
    expect(dmaIovaTryAlloc(dev, st, a, (PAGE - 0x300) + 100)).toBe(true);
    expect(dmaIovaLink(dev, st, a, 0, PAGE - 0x300, DMA_TO_DEVICE, 0).ok).toBe(true);
    expect(dmaIovaLink(dev, st, b, PAGE - 0x300, 100, DMA_TO_DEVICE, 0).ok).toBe(true);
    expect(dmaIovaSync(dev, st, 0, PAGE - 0x300 + 100).ok).toBe(true);
    const x = pattern(PAGE - 0x300, 1), y = pattern(100, 2);
    m.mem.write(a, x);
    m.mem.write(b, y);
    const r = dev.dmaRead(st.addr, x.length + y.length);
    expect(r.ok && r.value).toEqual(new Uint8Array([...x, ...y]));
    // TO_DEVICE: the device may not write
    expect(dev.dmaWrite(st.addr, new Uint8Array(4)).ok).toBe(false);
    expect(m.mem.read(a, 4)).toEqual(x.subarray(0, 4));
    dmaIovaDestroy(dev, st, x.length + y.length, DMA_TO_DEVICE, 0);
  });
});

describe('two-step misuse leaves nothing mapped', () => {
  function setup() {
    const m = makeMachine('strict');
    const dev = m.device('nvme0');
    const st = new DmaIovaState();
    expect(dmaIovaTryAlloc(dev, st, 0n, 2 * PAGE)).toBe(true);
    return { m, dev, st, p: allocPhys(m, 1) };
  }
  const mapped = (m: ReturnType<typeof setup>['m']) => m.stats.iommuLeafPtesWritten - m.stats.iommuLeafPtesCleared;

  it('a link past the window: EINVAL and a model-check report (no kernel hook)', () => {
    const { m, dev, st, p } = setup();
    const r = dmaIovaLink(dev, st, p, PAGE, 2 * PAGE, DMA_TO_DEVICE, 0);
    expect(r.ok ? 'ok' : r.errno).toBe('EINVAL');
    expect(m.events.count('MODEL-CHECK')).toBe(1);
    expect(mapped(m)).toBe(0);
    dmaIovaFree(dev, st);
  });

  it('an unaligned phys at a non-zero offset: EIO with a WARN', () => {
    const { m, dev, st, p } = setup();
    const r = dmaIovaLink(dev, st, p + 8n, PAGE, 64, DMA_TO_DEVICE, 0);
    expect(r.ok ? 'ok' : r.errno).toBe('EIO');
    expect(m.events.count('WARN')).toBe(1);
    expect(mapped(m)).toBe(0);
    dmaIovaFree(dev, st);
  });

  it('a zero-length link of an aligned phys maps nothing: EINVAL from the x86-64 table (generic_pt make_range_ul), ok on ARM LPAE', () => {
    const { m, dev, st, p } = setup();
    const r = dmaIovaLink(dev, st, p, 0, 0, DMA_TO_DEVICE, 0);
    expect(r.ok ? 'ok' : r.errno).toBe('EINVAL');
    expect(r.ok ? '' : r.message).toMatch(/size 0x0 failed: a zero length is refused by the x86-64 page table/);
    expect(mapped(m)).toBe(0);
    // a window of its own is untouched: the next link works
    expect(dmaIovaLink(dev, st, p, 0, PAGE, DMA_TO_DEVICE, 0).ok).toBe(true);
    dmaIovaDestroy(dev, st, PAGE, DMA_TO_DEVICE, 0);
    expect(m.events.count('DMA-DEBUG')).toBe(0);

    const a = makeMachine('strict', 1, { iommu: { format: 'arm-lpae', mode: 'strict' } });
    const adev = a.device('nvme0');
    const ast = new DmaIovaState();
    expect(dmaIovaTryAlloc(adev, ast, 0n, 2 * PAGE)).toBe(true);
    expect(dmaIovaLink(adev, ast, allocPhys(a, 1), 0, 0, DMA_TO_DEVICE, 0).ok).toBe(true);
    expect(mapped(a)).toBe(0);
    dmaIovaFree(adev, ast);
  });

  it('a zero-length link of an unaligned phys maps nothing and is ok (model deviation: the kernel maps a granule of padding)', () => {
    const { m, dev, st, p } = setup();
    expect(dmaIovaLink(dev, st, p + 8n, 0, 0, DMA_TO_DEVICE, 0).ok).toBe(true);
    expect(mapped(m)).toBe(0);
    dmaIovaFree(dev, st);
  });

  it('a double unlink is reported and changes nothing; unlink keeps the window for a re-link', () => {
    const { m, dev, st, p } = setup();
    expect(dmaIovaLink(dev, st, p, 0, 2 * PAGE, DMA_FROM_DEVICE, 0).ok).toBe(true);
    expect(dmaIovaSync(dev, st, 0, 2 * PAGE).ok).toBe(true);
    dmaIovaUnlink(dev, st, 0, 2 * PAGE, DMA_FROM_DEVICE, 0);
    expect(mapped(m)).toBe(0);
    expect(dev.dmaWrite(st.addr, new Uint8Array(8)).ok).toBe(false);
    dmaIovaUnlink(dev, st, 0, 2 * PAGE, DMA_FROM_DEVICE, 0);
    expect(m.events.count('MODEL-CHECK')).toBe(1);
    expect(m.stats.dmaIovaUnlinks).toBe(1);
    // re-link the same window
    expect(dmaIovaLink(dev, st, p, 0, PAGE, DMA_FROM_DEVICE, 0).ok).toBe(true);
    expect(dmaIovaSync(dev, st, 0, PAGE).ok).toBe(true);
    expect(dev.dmaWrite(st.addr, pattern(PAGE, 3)).ok).toBe(true);
    expect(m.mem.read(p, PAGE)).toEqual(pattern(PAGE, 3));
    dmaIovaDestroy(dev, st, PAGE, DMA_FROM_DEVICE, 0);
    expect(mapped(m)).toBe(0);
    expect(m.stats.iovaAllocs).toBe(m.stats.iovaFrees);
  });

  it('links after destroy are use-after-free: reported, EINVAL', () => {
    const { m, dev, st, p } = setup();
    dmaIovaDestroy(dev, st, 0, DMA_TO_DEVICE, 0);
    const r = dmaIovaLink(dev, st, p, 0, PAGE, DMA_TO_DEVICE, 0);
    expect(r.ok ? 'ok' : r.errno).toBe('EINVAL');
    expect(m.events.count('MODEL-CHECK')).toBe(1);
    expect(mapped(m)).toBe(0);
  });

  it('overlapping links are refused', () => {
    const { m, dev, st, p } = setup();
    expect(dmaIovaLink(dev, st, p, 0, PAGE, DMA_TO_DEVICE, 0).ok).toBe(true);
    const r = dmaIovaLink(dev, st, p, 0, PAGE, DMA_TO_DEVICE, 0);
    expect(r.ok ? 'ok' : r.errno).toBe('EINVAL');
    dmaIovaDestroy(dev, st, PAGE, DMA_TO_DEVICE, 0);
    expect(mapped(m)).toBe(0);
  });

  it('bad arguments throw naming the argument', () => {
    const { dev, st } = setup();
    expect(() => dmaIovaLink(dev, st, -1n, 0, PAGE, DMA_TO_DEVICE, 0)).toThrow(/phys/);
    expect(() => dmaIovaLink(dev, st, 0n, -4096, PAGE, DMA_TO_DEVICE, 0)).toThrow(/offset/);
    expect(() => dmaIovaLink(dev, st, 0n, 0, 1.5, DMA_TO_DEVICE, 0)).toThrow(/size/);
    expect(() => dmaIovaTryAlloc(dev, {} as DmaIovaState, 0n, PAGE)).toThrow(/state/);
  });
});

describe('untrusted device: swiotlb for unaligned ends', () => {
  it('bounces head and tail granules, links the middle, copies back at destroy', () => {
    const m = makeMachine('strict');
    const dev = m.device('tb0');
    dmaSetMinAlignMask(dev, PAGE - 1); // as NVMe does: the bounce keeps the offset inside the page
    const base = allocPhys(m, 2);
    const phys = base + 0x200n;
    const len = 2 * PAGE + 0x100; // head: 0xe00 bytes bounced, 1 page linked, tail 0x300 bounced
    const st = new DmaIovaState();
    expect(dmaIovaTryAlloc(dev, st, phys, len)).toBe(true);
    expect(dmaIovaLink(dev, st, phys, 0, len, DMA_FROM_DEVICE, 0).ok).toBe(true);
    expect(st.rawSize & DMA_IOVA_USE_SWIOTLB).toBe(DMA_IOVA_USE_SWIOTLB);
    expect(dmaIovaSync(dev, st, 0, len).ok).toBe(true);
    expect(m.stats.swiotlbMaps).toBe(2);
    const data = pattern(len, 11);
    expect(dev.dmaWrite(st.addr, data).ok).toBe(true);
    // the linked middle page is written directly; the bounced ends only at unlink
    expect(m.mem.read(phys + 0xe00n, PAGE)).toEqual(data.subarray(0xe00, 0xe00 + PAGE));
    expect(m.mem.read(phys, 0x10)).toEqual(new Uint8Array(0x10));
    dmaIovaDestroy(dev, st, len, DMA_FROM_DEVICE, 0);
    expect(m.mem.read(phys, len)).toEqual(data);
    expect(m.stats.swiotlbUnmaps).toBe(2);
    expect(m.events.count('WARN')).toBe(0);
    expect(m.stats.iommuLeafPtesWritten - m.stats.iommuLeafPtesCleared).toBe(0);
  });

  it('MMIO that would need bouncing: EPERM, nothing mapped', () => {
    const m = makeMachine('strict');
    const dev = m.device('tb0');
    const bar = gpuBar(m);
    const st = new DmaIovaState();
    expect(dmaIovaTryAlloc(dev, st, bar.start + 0x10n, 100)).toBe(true);
    const r = dmaIovaLink(dev, st, bar.start + 0x10n, 0, 100, DMA_TO_DEVICE, DMA_ATTR_MMIO);
    expect(r.ok ? 'ok' : r.errno).toBe('EPERM');
    expect(m.stats.swiotlbMaps).toBe(0);
    expect(m.stats.iommuLeafPtesWritten).toBe(0);
    dmaIovaFree(dev, st);
  });
});

describe('dmaIovaLink fast path', () => {
  // iovaLink's fast path (a live window in 4 KiB granules, links above every linked
  // granule, kept as a run until something else touches the bitmap) must give what the checked
  // path gives. Clearing state.fastDev routes every link of a state through the checked path;
  // random sequences (an ascending fill of the window's start, as drivers link, then random links
  // and unlinks, then destroy) run both ways on identical machines, with windows below 2^53 and,
  // on a 5-level x86-64 table without the 32-bit first try (iommu.forcedac), above it.
  it('property: links, unlinks and destroy give the same results, events, counters, page-table entries and dma-debug records as the checked path', () => {
    const op = fc.record({
      unlink: fc.boolean(), // else a link
      at: fc.double({ min: 0, max: 1, noNaN: true }), // where in the window the span starts
      pad: fc.constantFrom(0, 0, 0, 0x200, 0xe00), // offset of phys in its page (only valid at window offset 0)
      pages: fc.integer({ min: 1, max: 70 }),
      attrs: fc.constantFrom(0, 0, DMA_ATTR_SKIP_CPU_SYNC, DMA_ATTR_MMIO, DMA_ATTR_PRIVILEGED),
      dir: fc.constantFrom(DMA_TO_DEVICE, DMA_FROM_DEVICE, DMA_BIDIRECTIONAL),
    });
    fc.assert(fc.property(
      fc.constantFrom(8, 100), fc.double({ min: 0, max: 1, noNaN: true }), fc.array(op, { maxLength: 8 }),
      fc.boolean(), fc.constantFrom(0, 0x200), fc.constantFrom('nvme0', 'tb0'), fc.constantFrom('x86-64', 'arm-lpae'), fc.boolean(),
      (windowPages, fill, ops, coherent, windowPad, name, format, high57) => {
        const high = high57 && format === 'x86-64';
        const run = (fast: boolean) => {
          // ARM LPAE leaves record the prot bits DMA attributes change (MMIO, PRIVILEGED); x86-64 leaves do not
          const m = makeMachine('strict', 1, { iommu: { format, mode: 'strict', ...(high ? { levels: 5 } : {}) } });
          const dev = m.device(name);
          dev.dmaCoherent = coherent;
          if (high) dev.pci32BitWorkaround = false;
          if (name === 'tb0') dmaSetMinAlignMask(dev, PAGE - 1);
          const base = allocPhys(m, 7);
          const len = windowPages * PAGE - windowPad;
          const st = new DmaIovaState();
          expect(dmaIovaTryAlloc(dev, st, base + BigInt(windowPad), len)).toBe(true);
          expect(st.addr >= 1n << 53n).toBe(high);
          if (!fast) st.fastDev = null;
          const results: string[] = [];
          // window page p starts at window offset p * PAGE - windowPad (page 0 at offset 0)
          const offsetOf = (p: number): number => (p === 0 ? 0 : p * PAGE - windowPad);
          const filled = Math.floor(fill * windowPages);
          for (let p = 0; p < filled; p++) {
            const r = dmaIovaLink(dev, st, base + BigInt(p * PAGE + (p === 0 ? windowPad : 0)), offsetOf(p),
              offsetOf(p + 1) - offsetOf(p), DMA_TO_DEVICE, 0);
            results.push(r.ok ? 'ok' : `${r.errno}: ${r.message}`);
          }
          for (const { unlink, at, pad, pages, attrs, dir } of ops) {
            const p = Math.floor(at * windowPages);
            const offset = offsetOf(p);
            const size = Math.min(pages * PAGE, len - offset);
            if (unlink) {
              dmaIovaUnlink(dev, st, offset, size, dir, attrs);
              results.push(`unlinked ${st.linkedGranules}`);
            } else {
              const r = dmaIovaLink(dev, st, base + BigInt(p * PAGE + pad), offset, size, dir, attrs);
              results.push(r.ok ? 'ok' : `${r.errno}: ${r.message}`);
            }
          }
          const domain = iommuGetDmaDomain(dev)!;
          const window = st.addr - BigInt(windowPad);
          const table = Array.from({ length: windowPages }, (_, i) => iommuWalk(domain, window + BigInt(i * PAGE)));
          const debug = m.dmaDebug.entries().map((e) => ({ ...e, dev: e.dev.name }));
          const linked = st.linkedGranules;
          dmaIovaDestroy(dev, st, len, DMA_BIDIRECTIONAL, 0);
          const events = m.events.list().map((e) => `${e.kind} ${e.message}`);
          return { results, table, debug, linked, events, stats: m.stats.snapshot() };
        };
        expect(run(true)).toEqual(run(false));
      }), { numRuns: 100 });
  });
});

describe('dmaIovaLinkBatch (one table walk for a request)', () => {
  // A batch of ranges linked at once must leave what the same ranges linked one dmaIovaLink at a
  // time leave (every window byte translating to the same physical byte, the device reading the
  // same bytes, the same counters and dma-debug records), in no more table-walk steps, and in
  // fewer whenever there are several ranges and the batch qualifies; a batch with a misaligned
  // interior seam falls back to per-range links and gives their results, errors included.
  it('property: same translations, bytes, counters and records as per-range links; fewer walk steps', () => {
    fc.assert(fc.property(
      fc.array(fc.record({ pages: fc.integer({ min: 1, max: 5 }), gap: fc.integer({ min: 1, max: 3 }) }), { minLength: 1, maxLength: 8 }),
      fc.constantFrom(0, 0x200), fc.constantFrom(0, 0x300), fc.boolean(), fc.constantFrom('x86-64', 'amd-v1', 'arm-lpae'),
      (pieces, headPad, tailTrim, misalign, format) => {
        const run = (batched: boolean) => {
          const m = makeMachine('strict', 1, { iommu: { format, mode: 'strict' } });
          const dev = m.device('nvme0');
          dmaSetMinAlignMask(dev, 0);
          const base = allocPhys(m, 7);
          const b = PhyrList.builder(pieces.length);
          let at = 0;
          pieces.forEach(({ pages, gap }, i) => {
            const start = Number(base) + at * PAGE + (i === 0 ? headPad : 0) + (misalign && i === 1 ? 0x100 : 0);
            let len = pages * PAGE - (i === 0 ? headPad : 0) - (misalign && i === 1 ? 0x100 : 0);
            if (i === pieces.length - 1) len -= tailTrim;
            b.pushNoMerge(start, len, 0);
            m.mem.write(BigInt(start), pattern(len, i + 1));
            at += pages + gap;
          });
          const list = b.build();
          const total = list.totalLen;
          const st = new DmaIovaState();
          expect(dmaIovaTryAlloc(dev, st, base + BigInt(headPad), total)).toBe(true);
          const steps0 = m.stats.iommuTableWalkSteps;
          const results: string[] = [];
          if (batched) {
            const r = dmaIovaLinkBatch(dev, st, 0, list, DMA_TO_DEVICE, 0);
            results.push(r.ok ? `ok ${r.value}` : `${r.errno}: ${r.message}`);
          } else {
            let off = 0;
            const c = list.cursor();
            const rs: string[] = [];
            let failed = false;
            for (; !c.done && !failed; c.next()) {
              const r = dmaIovaLink(dev, st, c.addr, off, c.len, DMA_TO_DEVICE, 0);
              if (!r.ok) { rs.push(`${r.errno}: ${r.message}`); failed = true; dmaIovaUnlink(dev, st, 0, off, DMA_TO_DEVICE, 0); break; }
              off += c.len;
            }
            results.push(failed ? rs[0] : `ok ${off}`);
          }
          const steps = m.stats.iommuTableWalkSteps - steps0;
          expect(dmaIovaSync(dev, st, 0, total).ok).toBe(true);
          const domain = iommuGetDmaDomain(dev)!;
          const xlate: string[] = [];
          for (let o = 0; o < total; o += 512) xlate.push(iommuIovaToPhys(domain, st.addr + BigInt(o)).toString(16));
          const rd = dev.dmaRead(st.addr, total);
          const bytes = rd.ok ? Array.from(rd.value.subarray(0, 64)) : rd.errno;
          const debug = m.dmaDebug.entries().map((e) => ({ ...e, dev: e.dev.name }));
          const links = m.stats.dmaIovaLinks;
          dmaIovaDestroy(dev, st, results[0].startsWith('ok') ? total : 0, DMA_TO_DEVICE, 0);
          return {
            same: { results, xlate, bytes, debug, links, live: m.stats.iommuLeafPtesWritten - m.stats.iommuLeafPtesCleared, warns: m.events.count('WARN') },
            steps,
          };
        };
        const per = run(false);
        const one = run(true);
        expect(one.same).toEqual(per.same);
        expect(per.same.live).toBe(0);
        expect(one.steps).toBeLessThanOrEqual(per.steps);
        if (!misalign && pieces.length > 1) expect(one.steps).toBeLessThan(per.steps);
      }), { numRuns: 60 });
  });
});
