// Model-based tests of the DMA layer (fast-check commands): random sequences of one-shot maps,
// two-step windows (link, unlink, re-link), dmaMapPhyrs, syncs, unmaps, CPU writes and device reads
// and writes, run against a simple reference model of what every DMA address should read as.
// Checked at every step: device accesses return the reference bytes or fault exactly when the model
// says so; live DMA ranges never overlap; lengths are conserved; at the end, after unmapping
// everything, nothing is left mapped and dma-debug / WARN stayed silent (correct use).

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { allocPhys, makeMachine, pattern, type IommuMode } from './fixtures/dma-b-machines.ts';
import type { Machine } from '../src/machine/index.ts';
import type { Device } from '../src/pci/index.ts';
import { PhyrList } from '../src/phyr/index.ts';
import {
  DMA_BIDIRECTIONAL, DMA_FROM_DEVICE, DMA_TO_DEVICE, DmaIovaState, dmaIovaDestroy, dmaIovaLink, dmaIovaSync,
  dmaIovaTryAlloc, dmaIovaUnlink, dmaMapPhyrs, dmaMapPhys, dmaSyncSingleForCpu, dmaSyncSingleForDevice,
  dmaUnmapPhyrs, dmaUnmapPhys, type DmaDataDirection,
} from '../src/dma/index.ts';
import type { DmaPhyrsMapping } from '../src/dma/index.ts';

const PAGE = 4096;
const NBUF = 6;
const BUF_PAGES = 4;

/** One piece of a mapping: DMA address -> buffer bytes. linked=false: the device must fault there. */
interface Seg { dma: bigint; buf: number; off: number; len: number; linked: boolean }

interface Mapping {
  kind: 'phys' | 'iova' | 'phyrs';
  dir: DmaDataDirection;
  segs: Seg[];
  bufs: number[];
  // real-side handles
  addr?: bigint;
  len?: number;
  state?: DmaIovaState;
  perm?: number[];
  dl?: DmaPhyrsMapping;
}

interface Model {
  iommu: boolean;
  /** Expected bytes of every buffer. */
  bytes: Uint8Array[];
  busy: boolean[];
  maps: Mapping[];
}

interface Real {
  m: Machine;
  dev: Device;
  bufPhys: bigint[];
}

const canWrite = (model: Model, dir: DmaDataDirection) => !model.iommu || dir !== DMA_TO_DEVICE;
// The x86-64 page-table format has a R/W bit but no way to deny reads: a FROM_DEVICE (IOMMU_WRITE
// only) mapping is still readable by the device, as on real x86 IOMMUs with first-stage tables.
const canRead = (_model: Model, _dir: DmaDataDirection) => true;

/** The segments an access of [off, off+len) of a mapping covers, in order. */
function pieces(mp: Mapping, off: number, len: number): Array<{ seg: Seg; at: number; n: number }> {
  const out: Array<{ seg: Seg; at: number; n: number }> = [];
  let pos = 0;
  for (const seg of mp.segs) {
    const s = Math.max(off, pos), e = Math.min(off + len, pos + seg.len);
    if (s < e) out.push({ seg, at: s - pos, n: e - s });
    pos += seg.len;
  }
  return out;
}

/** Device accesses within a mapping must be DMA-contiguous: the mapping's DMA address of offset `off`. */
function dmaOf(mp: Mapping, off: number): bigint {
  let pos = 0;
  for (const seg of mp.segs) {
    if (off < pos + seg.len) return seg.dma + BigInt(off - pos);
    pos += seg.len;
  }
  throw new Error('offset past mapping');
}

/** Whether [off, off+len) of the mapping is one contiguous DMA range. */
function contiguous(mp: Mapping, off: number, len: number): boolean {
  const ps = pieces(mp, off, len);
  for (let i = 1; i < ps.length; i++) {
    const a = ps[i - 1], b = ps[i];
    if (a.seg.dma + BigInt(a.at + a.n) !== b.seg.dma + BigInt(b.at)) return false;
  }
  return true;
}

const mapLen = (mp: Mapping) => mp.segs.reduce((s, x) => s + x.len, 0);

function checkNoOverlap(model: Model): void {
  if (!model.iommu) return;
  const spans = model.maps.flatMap((mp) => mp.segs.map((s) => [s.dma, s.dma + BigInt(s.len)] as const));
  spans.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  for (let i = 1; i < spans.length; i++) expect(spans[i][0] >= spans[i - 1][1]).toBe(true);
}

type Cmd = fc.Command<Model, Real>;

class MapPhys implements Cmd {
  constructor(readonly buf: number, readonly off: number, readonly len: number, readonly dir: DmaDataDirection) {}
  check(model: Readonly<Model>) { return !model.busy[this.buf]; }
  run(model: Model, real: Real) {
    const len = Math.min(this.len, BUF_PAGES * PAGE - this.off);
    const r = dmaMapPhys(real.dev, real.bufPhys[this.buf] + BigInt(this.off), len, this.dir, 0);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    model.busy[this.buf] = true;
    model.maps.push({ kind: 'phys', dir: this.dir, bufs: [this.buf], addr: r.value, len,
      segs: [{ dma: r.value, buf: this.buf, off: this.off, len, linked: true }] });
    if (!model.iommu) expect(r.value).toBe(real.bufPhys[this.buf] + BigInt(this.off));
    checkNoOverlap(model);
  }
  toString() { return `MapPhys(${this.buf}, ${this.off}, ${this.len}, ${this.dir})`; }
}

/** Two-step: the buffer's pages linked one by one into a fresh window, in a shuffled order. */
class IovaMap implements Cmd {
  constructor(readonly buf: number, readonly perm: number[], readonly dir: DmaDataDirection) {}
  check(model: Readonly<Model>) { return model.iommu && !model.busy[this.buf]; }
  run(model: Model, real: Real) {
    const st = new DmaIovaState();
    expect(dmaIovaTryAlloc(real.dev, st, 0n, BUF_PAGES * PAGE)).toBe(true);
    const segs: Seg[] = [];
    this.perm.forEach((p, j) => {
      expect(dmaIovaLink(real.dev, st, real.bufPhys[this.buf] + BigInt(p * PAGE), j * PAGE, PAGE, this.dir, 0).ok).toBe(true);
      segs.push({ dma: st.addr + BigInt(j * PAGE), buf: this.buf, off: p * PAGE, len: PAGE, linked: true });
    });
    expect(dmaIovaSync(real.dev, st, 0, BUF_PAGES * PAGE).ok).toBe(true);
    model.busy[this.buf] = true;
    model.maps.push({ kind: 'iova', dir: this.dir, bufs: [this.buf], segs, state: st, perm: this.perm });
    checkNoOverlap(model);
  }
  toString() { return `IovaMap(${this.buf}, [${this.perm}], ${this.dir})`; }
}

/** Unlink one page of a window (keeps the reservation), or re-link it if it is unlinked. */
class IovaToggle implements Cmd {
  constructor(readonly pick: number, readonly page: number) {}
  check(model: Readonly<Model>) { return model.maps.some((mp) => mp.kind === 'iova'); }
  run(model: Model, real: Real) {
    const ws = model.maps.filter((mp) => mp.kind === 'iova');
    const mp = ws[this.pick % ws.length];
    const seg = mp.segs[this.page];
    if (seg.linked) {
      dmaIovaUnlink(real.dev, mp.state!, this.page * PAGE, PAGE, mp.dir, 0);
    } else {
      expect(dmaIovaLink(real.dev, mp.state!, real.bufPhys[seg.buf] + BigInt(seg.off), this.page * PAGE, PAGE, mp.dir, 0).ok).toBe(true);
      expect(dmaIovaSync(real.dev, mp.state!, this.page * PAGE, PAGE).ok).toBe(true);
    }
    seg.linked = !seg.linked;
  }
  toString() { return `IovaToggle(${this.pick}, ${this.page})`; }
}

/** dmaMapPhyrs of 1..3 page-aligned pieces taken from free buffers. */
class MapPhyrs implements Cmd {
  constructor(readonly bufs: number[], readonly dir: DmaDataDirection, readonly pagesEach: number) {}
  check(model: Readonly<Model>) {
    const u = [...new Set(this.bufs)];
    return u.length === this.bufs.length && u.every((b) => !model.busy[b]);
  }
  run(model: Model, real: Real) {
    const len = this.pagesEach * PAGE;
    const list = PhyrList.from(this.bufs.map((b) => ({ addr: real.bufPhys[b], len })));
    const r = dmaMapPhyrs(real.dev, list, this.dir, 0);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.value.list.totalLen).toBe(list.totalLen); // lengths conserved
    // DMA entries cover the buffers in order
    const segs: Seg[] = [];
    let bi = 0, boff = 0;
    for (const e of r.value.list) {
      let left = e.len, dma = e.addr;
      while (left > 0) {
        const n = Math.min(left, len - boff);
        segs.push({ dma, buf: this.bufs[bi], off: boff, len: n, linked: true });
        dma += BigInt(n); left -= n; boff += n;
        if (boff === len) { bi++; boff = 0; }
      }
    }
    for (const b of this.bufs) model.busy[b] = true;
    model.maps.push({ kind: 'phyrs', dir: this.dir, bufs: [...this.bufs], segs, dl: r.value });
    checkNoOverlap(model);
  }
  toString() { return `MapPhyrs([${this.bufs}], ${this.dir}, ${this.pagesEach})`; }
}

function unmapReal(real: Real, mp: Mapping): void {
  if (mp.kind === 'phys') dmaUnmapPhys(real.dev, mp.addr!, mp.len!, mp.dir, 0);
  else if (mp.kind === 'phyrs') dmaUnmapPhyrs(real.dev, mp.dl!, mp.dir, 0);
  else {
    // relink what was unlinked so destroy covers exactly the linked window
    mp.segs.forEach((seg, j) => {
      if (!seg.linked) {
        expect(dmaIovaLink(real.dev, mp.state!, real.bufPhys[seg.buf] + BigInt(seg.off), j * PAGE, PAGE, mp.dir, 0).ok).toBe(true);
        seg.linked = true;
      }
    });
    dmaIovaDestroy(real.dev, mp.state!, BUF_PAGES * PAGE, mp.dir, 0);
  }
}

class Unmap implements Cmd {
  constructor(readonly pick: number) {}
  check(model: Readonly<Model>) { return model.maps.length > 0; }
  run(model: Model, real: Real) {
    const i = this.pick % model.maps.length;
    const mp = model.maps[i];
    unmapReal(real, mp);
    for (const b of mp.bufs) model.busy[b] = false;
    model.maps.splice(i, 1);
  }
  toString() { return `Unmap(${this.pick})`; }
}

class Sync implements Cmd {
  constructor(readonly pick: number, readonly toCpu: boolean) {}
  check(model: Readonly<Model>) { return model.maps.some((mp) => mp.kind === 'phys'); }
  run(model: Model, real: Real) {
    const ps = model.maps.filter((mp) => mp.kind === 'phys');
    const mp = ps[this.pick % ps.length];
    if (this.toCpu) dmaSyncSingleForCpu(real.dev, mp.addr!, mp.len!, mp.dir);
    else dmaSyncSingleForDevice(real.dev, mp.addr!, mp.len!, mp.dir);
  }
  toString() { return `Sync(${this.pick}, ${this.toCpu ? 'cpu' : 'device'})`; }
}

class CpuWrite implements Cmd {
  constructor(readonly buf: number, readonly off: number, readonly len: number, readonly seed: number) {}
  check() { return true; }
  run(model: Model, real: Real) {
    const len = Math.min(this.len, BUF_PAGES * PAGE - this.off);
    const data = pattern(len, this.seed);
    real.m.mem.write(real.bufPhys[this.buf] + BigInt(this.off), data);
    model.bytes[this.buf].set(data, this.off);
  }
  toString() { return `CpuWrite(${this.buf}, ${this.off}, ${this.len})`; }
}

class DeviceAccess implements Cmd {
  constructor(readonly pick: number, readonly off: number, readonly len: number, readonly write: boolean, readonly seed: number) {}
  check(model: Readonly<Model>) { return model.maps.length > 0; }
  run(model: Model, real: Real) {
    const mp = model.maps[this.pick % model.maps.length];
    const total = mapLen(mp);
    const off = this.off % total;
    let len = Math.max(1, Math.min(this.len, total - off));
    while (!contiguous(mp, off, len)) len--; // keep to one DMA-contiguous range
    const ps = pieces(mp, off, len);
    const addr = dmaOf(mp, off);
    const allowed = ps.every((p) => p.seg.linked) && (this.write ? canWrite(model, mp.dir) : canRead(model, mp.dir));
    const faults = real.m.events.count('FAULT');
    if (this.write) {
      const data = pattern(len, this.seed);
      const r = real.dev.dmaWrite(addr, data);
      expect(r.ok).toBe(allowed);
      if (allowed) {
        let at = 0;
        for (const p of ps) { model.bytes[p.seg.buf].set(data.subarray(at, at + p.n), p.seg.off + p.at); at += p.n; }
      }
    } else {
      const r = real.dev.dmaRead(addr, len);
      expect(r.ok).toBe(allowed);
      if (r.ok) {
        const want = new Uint8Array(len);
        let at = 0;
        for (const p of ps) { want.set(model.bytes[p.seg.buf].subarray(p.seg.off + p.at, p.seg.off + p.at + p.n), at); at += p.n; }
        expect(r.value).toEqual(want);
      }
    }
    expect(real.m.events.count('FAULT')).toBe(faults + (allowed ? 0 : 1));
    // the CPU view always equals the model (no bounce for this trusted device)
    for (const p of ps) {
      const b = p.seg.buf;
      expect(real.m.mem.read(real.bufPhys[b] + BigInt(p.seg.off + p.at), p.n))
        .toEqual(model.bytes[b].subarray(p.seg.off + p.at, p.seg.off + p.at + p.n));
    }
  }
  toString() { return `DeviceAccess(${this.pick}, ${this.off}, ${this.len}, ${this.write ? 'W' : 'R'})`; }
}

const dirArb = fc.constantFrom<DmaDataDirection>(DMA_BIDIRECTIONAL, DMA_TO_DEVICE, DMA_FROM_DEVICE);
const bufArb = fc.integer({ min: 0, max: NBUF - 1 });
const offArb = fc.integer({ min: 0, max: BUF_PAGES * PAGE - 1 });
const lenArb = fc.integer({ min: 1, max: BUF_PAGES * PAGE });

const commands = [
  fc.tuple(bufArb, offArb, lenArb, dirArb).map(([b, o, l, d]) => new MapPhys(b, o, l, d)),
  fc.tuple(bufArb, fc.shuffledSubarray([0, 1, 2, 3], { minLength: 4, maxLength: 4 }), dirArb).map(([b, p, d]) => new IovaMap(b, p, d)),
  fc.tuple(fc.nat(), fc.integer({ min: 0, max: BUF_PAGES - 1 })).map(([p, g]) => new IovaToggle(p, g)),
  fc.tuple(fc.uniqueArray(bufArb, { minLength: 1, maxLength: 3 }), dirArb, fc.integer({ min: 1, max: BUF_PAGES }))
    .map(([bs, d, n]) => new MapPhyrs(bs, d, n)),
  fc.nat().map((p) => new Unmap(p)),
  fc.tuple(fc.nat(), fc.boolean()).map(([p, c]) => new Sync(p, c)),
  fc.tuple(bufArb, offArb, lenArb, fc.nat()).map(([b, o, l, s]) => new CpuWrite(b, o, l, s)),
  fc.tuple(fc.nat(), fc.nat(), lenArb, fc.boolean(), fc.nat()).map(([p, o, l, w, s]) => new DeviceAccess(p, o, l, w, s)),
];

describe.each<IommuMode>(['strict', 'lazy', 'none'])('DMA layer against a reference model (%s)', (mode) => {
  it('random map / link / unlink / sync / device access sequences', () => {
    fc.assert(fc.property(fc.commands(commands, { maxCommands: 40 }), (cmds) => {
      const m = makeMachine(mode);
      const dev = m.device('nvme0');
      const bufPhys = Array.from({ length: NBUF }, () => allocPhys(m, 2));
      const model: Model = {
        iommu: mode !== 'none', bytes: Array.from({ length: NBUF }, () => new Uint8Array(BUF_PAGES * PAGE)),
        busy: new Array(NBUF).fill(false), maps: [],
      };
      const real: Real = { m, dev, bufPhys };
      fc.modelRun(() => ({ model, real }), cmds);
      for (const mp of [...model.maps]) unmapReal(real, mp);
      model.maps = [];
      expect(m.stats.iommuLeafPtesWritten - m.stats.iommuLeafPtesCleared).toBe(0);
      if (mode === 'strict') expect(m.stats.iovaFrees).toBe(m.stats.iovaAllocs);
      expect(m.events.count('DMA-DEBUG')).toBe(0);
      expect(m.events.count('WARN')).toBe(0);
      expect(m.events.count('BUG')).toBe(0);
    }), { numRuns: 20 });
  });
});
