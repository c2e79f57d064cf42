// Ground truth from a real kernel: every recording under test/kernel-recordings/ (Linux 7.1.5 in QEMU,
// made by `npm run kernel:record`, see tools/kernel-oracle/) is replayed on a model machine built
// like the recorded one, and every answer must be the kernel's: DMA addresses, errors, nents and
// segments, iommu_iova_to_phys of every granule, two-step IOVA states, the bytes the edu device
// moved (through the IOMMU and swiotlb, every checksum, including bytes a bounce buffer copied back
// from what the driver wrote into its pages when it allocated them) and every dma-debug report.

import { describe, expect, it } from 'vitest';
import { join } from 'node:path';
import {
  DEVIATION_UNMAP_SIZE, DEVIATION_UNMAP_UNKNOWN, loadRecordings, oracleFnv, oraclePattern, replay, type RecOp, type Recording,
} from './fixtures/kernel-replay.ts';

const DIR = join(import.meta.dirname, 'kernel-recordings', '7.1.5');
const recordings = loadRecordings(DIR);

describe('kernel recordings (Linux 7.1.5 under QEMU)', () => {
  it('are complete and cover at least five configurations and 2,000 operations', () => {
    expect(recordings.length).toBeGreaterThanOrEqual(5);
    for (const r of recordings) {
      expect(r.header.kernel, r.name).toBe('7.1.5');
      expect(r.header.complete, r.name).toBe(true);
    }
    expect(recordings.reduce((n, r) => n + r.ops.length, 0)).toBeGreaterThanOrEqual(2000);
  });

  it('say what the driver wrote into every page it maps before the script ran (the pages line)', () => {
    for (const r of recordings) {
      const pages = r.ops.find((o) => o.op === 'pages');
      expect(pages?.init, r.name).toBe('pattern');
      for (const k of ['blkSeed', 'lowSeed', 'singleSeed']) expect(typeof pages?.[k], `${r.name} ${k}`).toBe('number');
    }
  });

  it('the driver pattern and checksum match the C code (pat_byte, fnv) on known values', () => {
    // x = 1 * 2654435761 + 0 = 0x9e3779b1: 0xb1 ^ (x >> 7 = ...f3) ^ (x >> 13 = ...bb)
    const x = 2654435761;
    expect(oraclePattern(1, 1)[0]).toBe((x ^ (x >>> 7) ^ (x >>> 13)) & 0xff);
    expect(oracleFnv(new Uint8Array(0))).toBe('811c9dc5');
    expect(oracleFnv(new TextEncoder().encode('a'))).toBe('e40c292c');
  });
});

for (const rec of recordings) {
  describe(`replay ${rec.name} (${rec.header.memory}, ${rec.header.qemu.includes('intel-iommu') ? 'VT-d' : rec.header.qemu.includes('amd-iommu') ? 'AMD-Vi' : 'no IOMMU'})`, () => {
    it(`every one of ${rec.ops.length} operations gives the kernel's answer`, () => {
      const report = replay(rec);
      expect(report.mismatches.slice(0, 10)).toEqual([]);
      // Only these named deviations may stop the state comparison: the misuse at the end.
      for (const name of Object.keys(report.deviations)) {
        expect([DEVIATION_UNMAP_SIZE, DEVIATION_UNMAP_UNKNOWN]).toContain(name);
      }
      const skipped = Object.values(report.deviations).reduce((a, b) => a + b, 0);
      expect(skipped).toBeLessThanOrEqual(6);
      expect(report.compared).toBeGreaterThanOrEqual(1200);
      expect(report.compared + skipped).toBe(rec.ops.filter((o) => o.op !== 'trailer').length);
      // every checksum in the recording was compared (none skipped as unknowable)
      const recorded = rec.ops.reduce((n, o) => n + ['rd', 'wr', 'cpu'].filter((k) => o[k] !== undefined).length, 0);
      expect(report.checksums).toBe(recorded);
      expect(report.checksums).toBeGreaterThan(0);
    });
  });
}

describe('the replay can fail', () => {
  function mutate(rec: Recording, pick: (o: RecOp) => boolean, change: (o: RecOp) => RecOp): Recording {
    let done = false;
    const ops = rec.ops.map((o) => {
      if (done || !pick(o)) return o;
      done = true;
      return change(o);
    });
    expect(done).toBe(true);
    return { ...rec, ops };
  }
  const first = recordings.find((r) => r.header.qemu.includes('intel-iommu')) ?? recordings[0];

  it('a DMA address one page off is a mismatch', () => {
    const bad = mutate(first, (o) => o.op === 'map_phys' && typeof o.dma === 'string',
      (o) => ({ ...o, dma: `0x${(BigInt(o.dma as string) + 0x1000n).toString(16)}` }));
    expect(replay(bad).mismatches.some((x) => x.field === 'dma')).toBe(true);
  });

  it('a different checksum of the moved bytes is a mismatch', () => {
    const bad = mutate(first, (o) => o.op === 'map_phys' && typeof o.rd === 'string', (o) => ({ ...o, rd: '00000000' }));
    expect(replay(bad).mismatches.some((x) => x.field === 'rd')).toBe(true);
  });

  /** Byte ranges [start, end) the script wrote (CPU fills, device writes) in ops before seq `before`. */
  function writtenBefore(rec: Recording, before: number): Array<[bigint, bigint]> {
    const out: Array<[bigint, bigint]> = [];
    const physOf = new Map<number, bigint>();
    const at = (a: unknown, n: unknown): [bigint, bigint] => [BigInt(a as string), BigInt(a as string) + BigInt(n as number)];
    for (const o of rec.ops) {
      if (o.seq >= before) break;
      if (o.op === 'map_phys') {
        physOf.set(o.seq, BigInt(o.phys as string));
        if (o.xfer === 1 && o.dir !== 'from') out.push(at(o.phys, o.len));
        if (o.wseed !== undefined) out.push(at(o.phys, o.wrLen));
      } else if (o.op === 'iova_link' && o.dir !== 'from') {
        out.push(at(o.phys, o.len));
      } else if ((o.op === 'sync_cpu' || o.op === 'sync_device') && physOf.has(o.of as number)) {
        // a sync of [dma + off, + len) of the mapping `of` writes at the same offset of its pages
        const mapOp = rec.ops.find((x) => x.seq === o.of) as RecOp;
        const off = BigInt(o.dma as string) - BigInt(mapOp.dma as string);
        const base = `0x${((physOf.get(o.of as number) as bigint) + off).toString(16)}`;
        if (o.wseed !== undefined) out.push(at(base, o.wrLen));
        if (o.fillSeed !== undefined) out.push(at(base, o.len));
      }
    }
    return out;
  }

  // A FROM_DEVICE / BIDIRECTIONAL mapping the device never wrote: at its unmap the CPU checksums
  // the whole range ("cpu"), including bytes the script never wrote, which hold what the driver
  // gave the page at allocation (through a bounce slot: copied in at map and back at unmap,
  // kernel/dma/swiotlb.c: swiotlb_tbl_map_single, __swiotlb_tbl_unmap_single).
  for (const name of ['swiotlb-force-256m', 'vtd-untrusted-3g', 'vtd-strict']) {
    it(`${name}: one never-written byte of a page's allocation-time contents wrong in the model is a checksum mismatch`, () => {
      const rec = recordings.find((r) => r.name === name) as Recording;
      expect(rec, name).toBeDefined();
      let target: { byte: bigint; unmap: RecOp } | undefined;
      for (const map of rec.ops) {
        if (map.op !== 'map_phys' || map.dir === 'to' || map.xfer !== undefined || map.dma === undefined) continue;
        const unmap = rec.ops.find((u) => u.op === 'unmap_phys' && u.of === map.seq && u.cpu !== undefined);
        if (unmap === undefined) continue;
        const written = writtenBefore(rec, unmap.seq);
        const start = BigInt(map.phys as string), end = start + BigInt(map.len as number);
        for (let b = start; b < end && target === undefined; b++) {
          if (!written.some(([s, e]) => b >= s && b < e)) target = { byte: b, unmap };
        }
        if (target !== undefined) break;
      }
      expect(target, name).toBeDefined();
      const { byte, unmap } = target as { byte: bigint; unmap: RecOp };
      const bad = replay(rec, { afterInitialContents: (m) => m.mem.write(byte, Uint8Array.of(m.mem.read(byte, 1)[0] ^ 0x01)) });
      expect(bad.mismatches.length, name).toBeGreaterThan(0);
      expect(['rd', 'wr', 'cpu']).toContain(bad.mismatches[0].field);
      expect(bad.mismatches[0].seq).toBeLessThanOrEqual(unmap.seq);
    });
  }

  it('the allocation-time pattern with another seed shows in the checksums of every configuration that bounces', () => {
    for (const name of ['swiotlb-force-256m', 'vtd-untrusted-3g']) {
      const rec = recordings.find((r) => r.name === name) as Recording;
      expect(rec, name).toBeDefined();
      const bad = mutate(rec, (o) => o.op === 'pages', (o) => ({ ...o, lowSeed: (o.lowSeed as number) + 1 }));
      const report = replay(bad);
      expect(report.mismatches.length, name).toBeGreaterThan(0);
      expect(report.mismatches.every((x) => x.op === 'unmap_phys' && (x.field === 'wr' || x.field === 'cpu')), name).toBe(true);
    }
  });

  it('a recording that does not say what its pages held is refused, not replayed against zeroes', () => {
    const bad = mutate(first, (o) => o.op === 'pages', (o) => ({ ...o, init: undefined }));
    expect(() => replay(bad)).toThrow(/does not say what the driver's memory held/);
  });

  it('a dma-debug line the model does not print is a mismatch', () => {
    const bad = mutate(first, (o) => o.op === 'unmap_phys' && o.kmsg === undefined,
      (o) => ({ ...o, kmsg: ['DMA-API: phyr-oracle 0000:00:10.0: device driver frees DMA memory with different size'] }));
    expect(replay(bad).mismatches.some((x) => x.field === 'dma-debug')).toBe(true);
  });

  it('dma-debug lines are compared whole: the same report naming another driver or device is a mismatch', () => {
    const withReport = first.ops.find((o) => (o.kmsg ?? []).some((l) => l.startsWith('DMA-API: phyr-oracle 0000:00:10.0: ')));
    expect(withReport).toBeDefined();
    expect(replay(first).mismatches).toEqual([]);
    for (const [from, to] of [['phyr-oracle 0000:00:10.0', 'nvme 0000:00:10.0'], ['phyr-oracle 0000:00:10.0', 'phyr-oracle 0000:01:00.0']]) {
      const bad = mutate(first, (o) => o.seq === withReport!.seq, (o) => ({ ...o, kmsg: o.kmsg!.map((l) => l.replace(from, to)) }));
      expect(replay(bad).mismatches.filter((x) => x.field === 'dma-debug').map((x) => x.seq)).toEqual([withReport!.seq]);
    }
  });
});
