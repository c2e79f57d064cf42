// Property: whatever valid PRP or SGL layout the host builds for a command (random offsets, list
// pointers near the end of their page so lists chain, random piece sizes, segment chains with
// zero-length Data Blocks), a Write stores exactly the host's bytes in the namespace and a Read
// puts exactly the namespace's bytes into the host's pieces and not one byte beside them, on a
// dma-direct machine and behind a strict IOMMU. The layouts are built here from the specification's
// rules, independently of the controller's walk.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  TestHost, buildSqe, bytesDiff, concat, nvmeMachine, sglDesc, u64s, type NvmeMachineMode,
} from '../../../test/fixtures/nvme-ctrl.ts';
import {
  NVME_CTRL_OP_READ, NVME_CTRL_OP_WRITE, NVME_CTRL_SGL_DATA_BLOCK as DATA, NVME_CTRL_SGL_LAST_SEGMENT as LAST,
  NVME_CTRL_SGL_SEGMENT as SEG, nvmeControllerOf,
} from './index.ts';

const PAGE = 4096;
const FILL = 0xee;

type Layout =
  | { kind: 'prp'; off1: number; listOff: number }
  | { kind: 'sgl'; cuts: number[]; offs: number[]; groups: number; zeros: number[]; lastType: number; inline: boolean };

/** Where the host put the data: the pieces in data order (physical start, length, allocation end). */
interface Placed { sqeFields: { prp1?: bigint; prp2?: bigint; sgl?: { addr: bigint; len: number; type: number }; psdt: number };
  pieces: Array<{ phys: bigint; len: number; allocStart: bigint; allocEnd: bigint }> }

/** Allocates room for len bytes at byte offset off of fresh pages; returns the physical start and allocation bounds. */
function room(host: TestHost, off: number, len: number): { phys: bigint; allocStart: bigint; allocEnd: bigint } {
  let order = 0;
  while ((PAGE << order) < off + len) order++;
  const base = host.page(order, FILL);
  return { phys: base + BigInt(off), allocStart: base, allocEnd: base + BigInt(PAGE << order) };
}

function placePrp(host: TestHost, len: number, write: boolean, off1: number, listOff: number, data: Uint8Array | null): Placed {
  const pieces: Placed['pieces'] = [];
  const first = Math.min(len, PAGE - off1);
  const r0 = room(host, off1, first);
  pieces.push({ ...r0, len: first });
  const dma: bigint[] = [];
  for (let at = first; at < len; at += PAGE) {
    const r = room(host, 0, Math.min(PAGE, len - at));
    pieces.push({ ...r, len: Math.min(PAGE, len - at) });
  }
  let at = 0;
  for (const p of pieces) {
    if (data) host.m.mem.write(p.phys, data.subarray(at, at + p.len));
    dma.push(host.mapData(p.phys, p.len, write));
    at += p.len;
  }
  const rest = dma.slice(1);
  let prp2 = 0n;
  if (rest.length === 1) prp2 = rest[0]!;
  else if (rest.length > 1) {
    // lists are written last to first so each page can name the next one's DMA address
    const pagesOfList: bigint[][] = [];
    let left = rest;
    let slots = (PAGE - listOff) / 8;
    while (left.length > slots) {
      pagesOfList.push(left.slice(0, slots - 1));
      left = left.slice(slots - 1);
      slots = PAGE / 8;
    }
    pagesOfList.push(left);
    let next = 0n;
    for (let i = pagesOfList.length - 1; i >= 0; i--) {
      const entries = i === pagesOfList.length - 1 ? pagesOfList[i]! : [...pagesOfList[i]!, next];
      const off = i === 0 ? listOff : 0;
      next = host.put(host.page(0, FILL) + BigInt(off), u64s(entries));
    }
    prp2 = next;
  }
  return { sqeFields: { prp1: dma[0]!, prp2, psdt: 0 }, pieces };
}

function placeSgl(host: TestHost, len: number, write: boolean, l: Extract<Layout, { kind: 'sgl' }>, data: Uint8Array | null): Placed {
  const cuts = [...new Set(l.cuts.map((c) => 1 + (c % Math.max(1, len - 1))).filter((c) => c < len))].sort((a, b) => a - b);
  const bounds = [0, ...cuts, len];
  const pieces: Placed['pieces'] = [];
  const descs: Uint8Array[] = [];
  for (let i = 0; i + 1 < bounds.length; i++) {
    const n = bounds[i + 1]! - bounds[i]!;
    const r = room(host, l.offs[i % l.offs.length]! % PAGE, n);
    pieces.push({ ...r, len: n });
    if (data) host.m.mem.write(r.phys, data.subarray(bounds[i]!, bounds[i + 1]!));
    descs.push(sglDesc(host.mapData(r.phys, n, write), n, DATA));
  }
  if (l.inline && descs.length === 1) {
    const dv = new DataView(descs[0]!.buffer);
    return { sqeFields: { sgl: { addr: dv.getBigUint64(0, true), len, type: DATA }, psdt: 1 }, pieces };
  }
  // zero-length Data Blocks anywhere, then the descriptors split into consecutive segments
  for (const z of l.zeros) descs.splice(z % (descs.length + 1), 0, sglDesc(0n, 0, DATA));
  const groups: Uint8Array[][] = [];
  const per = Math.ceil(descs.length / Math.min(l.groups, descs.length));
  for (let i = 0; i < descs.length; i += per) groups.push(descs.slice(i, i + per));
  // every segment but the last must move data (a segment of zero-length blocks only is refused)
  for (let g = 0; g + 1 < groups.length; g++) {
    if (groups[g]!.every((d) => new DataView(d.buffer).getUint32(8, true) === 0)) {
      groups[g + 1] = [...groups[g]!, ...groups[g + 1]!];
      groups.splice(g, 1);
      g--;
    }
  }
  let ptr: { addr: bigint; len: number; type: number } | null = null;
  for (let g = groups.length - 1; g >= 0; g--) {
    const body = ptr ? [...groups[g]!, sglDesc(ptr.addr, ptr.len, ptr.type)] : groups[g]!;
    const bytes = concat(body);
    const off = (l.offs[g % l.offs.length]! % (PAGE - bytes.length + 16)) & ~15;
    const at = off + bytes.length <= PAGE ? off : 0;
    const r = room(host, at, bytes.length);
    const addr = host.put(r.phys, bytes);
    // the final segment may be named by a Last Segment or a Segment descriptor; earlier ones by Segment
    ptr = { addr, len: bytes.length, type: g === groups.length - 1 ? l.lastType : SEG };
  }
  return { sqeFields: { sgl: ptr!, psdt: 1 }, pieces };
}

function place(host: TestHost, len: number, write: boolean, l: Layout, data: Uint8Array | null): Placed {
  return l.kind === 'prp' ? placePrp(host, len, write, l.off1, l.listOff, data) : placeSgl(host, len, write, l, data);
}

const layout: fc.Arbitrary<Layout> = fc.oneof(
  fc.record({
    kind: fc.constant('prp' as const),
    off1: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 1023 }).map((x) => x * 4)),
    listOff: fc.oneof(fc.constant(0), fc.constantFrom(0x100, 0xfe0, 0xff0, 0xff8), fc.integer({ min: 0, max: 511 }).map((x) => x * 8)),
  }),
  fc.record({
    kind: fc.constant('sgl' as const),
    cuts: fc.array(fc.nat(), { maxLength: 10 }),
    offs: fc.array(fc.nat({ max: 8191 }), { minLength: 1, maxLength: 12 }),
    groups: fc.integer({ min: 1, max: 4 }),
    zeros: fc.array(fc.nat(), { maxLength: 3 }),
    lastType: fc.constantFrom(LAST, SEG),
    inline: fc.boolean(),
  }),
);

for (const mode of ['direct', 'strict'] as NvmeMachineMode[]) {
  describe(`NVMe controller property (${mode})`, () => {
    it('random PRP / SGL layouts of random data round-trip exactly, Write then Read, and touch no byte beside the pieces', () => {
      const m = nvmeMachine(mode);
      const ctrl = nvmeControllerOf(m.device('nvme0'))!;
      fc.assert(fc.property(
        fc.constantFrom(1, 2), fc.integer({ min: 1, max: 72 }), fc.nat(), fc.integer({ min: 1, max: 0xffff }), layout, layout,
        (nsid, blocks, slbaSeed, seed, wl, rl) => {
          const host = new TestHost(m);
          const ns = ctrl.namespace(nsid);
          const len = blocks * ns.lbaBytes;
          const slba = BigInt(slbaSeed % (ns.nsze - blocks + 1));
          const data = new Uint8Array(len);
          let x = seed;
          for (let i = 0; i < len; i++) { x = (x * 1103515245 + 12345) >>> 0; data[i] = x >>> 24; }
          const before = m.stats.nvmeCtrlDataBytes;

          const w = place(host, len, true, wl, data);
          const wc = ctrl.execute(buildSqe({ opcode: NVME_CTRL_OP_WRITE, nsid, slba, nlb: blocks - 1, ...w.sqeFields }));
          expect(wc.status).toBe(0);
          expect(bytesDiff(ctrl.readBlocks(nsid, slba, blocks), data)).toBeNull();

          const r = place(host, len, false, rl, null);
          const rc = ctrl.execute(buildSqe({ opcode: NVME_CTRL_OP_READ, nsid, slba, nlb: blocks - 1, ...r.sqeFields }));
          expect(rc.status).toBe(0);
          expect(bytesDiff(concat(r.pieces.map((p) => m.mem.read(p.phys, p.len))), data)).toBeNull();
          for (const p of r.pieces) {
            const pre = Number(p.phys - p.allocStart);
            const post = Number(p.allocEnd - p.phys) - p.len;
            expect(m.mem.read(p.allocStart, pre).every((b) => b === FILL)).toBe(true);
            expect(m.mem.read(p.phys + BigInt(p.len), post).every((b) => b === FILL)).toBe(true);
          }
          expect(m.stats.nvmeCtrlDataBytes - before).toBe(2 * len);
          host.release();
        },
      ), { numRuns: 60, seed: mode === 'direct' ? 11 : 12 });
      // every descriptor fetch used the device's own DMA path: behind the IOMMU nothing faulted
      expect(m.events.count('FAULT')).toBe(0);
    });
  });
}
