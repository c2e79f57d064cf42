// Pre-mapped dma-buf I/O under random mixes of I/O, move_notify (dma_buf_invalidate_mappings) and
// revoke: the device never reaches memory through a map after that map's invalidation completed
// (its fence signaled and it was unmapped: a device read at each of its addresses faults in the
// strict IOMMU), every request's bytes arrive exactly once (a shadow of the namespace and of the
// buffer, and the controller's byte count), and at the end nothing stays mapped or attached.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { patternBytes } from '../src/base/index.ts';
import {
  REQ_OP_READ, REQ_OP_WRITE, dmaBufAttachments, dmaBufInvalidateMappings, dmaBufRevoke, dmaBufUnrevoke, premapComplete, premapExecute,
  premapSubmit, premapUnregister, type PremapIo, type PremapMap,
} from '../src/drivers/index.ts';
import { premapRig } from './fixtures/premap.ts';

const PAGE = 4096;
const SLOTS = 16;

type Op =
  | { t: 'submit'; write: boolean; buf: number; ns: number; pages: number; unlocked: boolean }
  | { t: 'execute'; i: number }
  | { t: 'complete'; i: number }
  | { t: 'move' }
  | { t: 'revoke' }
  | { t: 'unrevoke' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({
    t: fc.constant('submit' as const), write: fc.boolean(), buf: fc.nat(SLOTS - 1), ns: fc.nat(SLOTS - 1), pages: fc.integer({ min: 1, max: 6 }),
    unlocked: fc.boolean(),
  }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('execute' as const), i: fc.nat(20) }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('complete' as const), i: fc.nat(20) }) },
  { weight: 1, arbitrary: fc.constant({ t: 'move' as const }) },
  { weight: 1, arbitrary: fc.constant({ t: 'revoke' as const }) },
  { weight: 1, arbitrary: fc.constant({ t: 'unrevoke' as const }) },
);

/** The first index where a and b differ (-1: equal); deep equality of large typed arrays is slow in expect. */
function firstDiff(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

interface Pending { io: PremapIo; write: boolean; bufOff: number; nsOff: number; len: number; applied: boolean }

function run(ops: Op[], source: 'system-heap' | 'gpu-vram', seed: number): void {
  const rig = premapRig({ iommu: 'strict', len: SLOTS * PAGE, source, seed });
  const dev = rig.ctrl.dev;
  const buf = patternBytes(SLOTS * PAGE, seed);
  rig.write(0, buf);
  const ns = new Uint8Array(SLOTS * PAGE + 6 * PAGE);
  const pending: Pending[] = [];
  const maps = new Set<PremapMap>();
  const checkedReleased = new Set<PremapMap>();
  const bytes0 = rig.m.stats.nvmeCtrlDataBytes;
  let moved = 0;
  // the device runs a command only through a map that is not released (PRP1 is one of its addresses)
  const ctl = rig.ctrl.controller as { execute(sqe: Uint8Array): { status: number } };
  const execute = ctl.execute.bind(ctl);
  ctl.execute = (sqe: Uint8Array) => {
    const prp1 = new DataView(sqe.buffer, sqe.byteOffset).getBigUint64(24, true) & ~BigInt(PAGE - 1);
    const owners = [...maps].filter((m) => m.dmaList.includes(prp1));
    expect(owners.length).toBeGreaterThan(0);
    expect(owners.some((m) => !m.released)).toBe(true);
    return execute(sqe);
  };

  const settle = (): void => {
    // apply what the device ran, in submission order (the order every completion path runs them in)
    for (const p of pending) {
      if (p.applied || !p.io.cmds.every((c) => c.executed)) continue;
      expect(p.io.cmds.every((c) => c.status === 0)).toBe(true);
      if (p.write) ns.set(buf.subarray(p.bufOff, p.bufOff + p.len), p.nsOff);
      else buf.set(ns.subarray(p.nsOff, p.nsOff + p.len), p.bufOff);
      p.applied = true;
      moved += p.len;
    }
    if (rig.token.map !== null) maps.add(rig.token.map);
    for (const m of maps) {
      if (!m.released || checkedReleased.has(m)) continue;
      checkedReleased.add(m);
      expect(m.fence.signaled).toBe(true);
      expect(m.inflight.size).toBe(0);
      // a later map may have been given the same IOVA: only addresses no live map holds must fault.
      // P2P bus addresses through the switch never pass the IOMMU: nothing can make them fault, so
      // for VRAM only the driver's side holds (no command through a released map, checked above)
      if (source === 'gpu-vram') continue;
      const live = new Set<bigint>();
      for (const o of maps) if (!o.released) for (const a of o.dmaList) live.add(a);
      for (const a of m.dmaList) if (!live.has(a)) expect(dev.dmaRead(a, 8).ok).toBe(false);
    }
  };

  const open = (): Pending[] => pending.filter((p) => !p.io.completed);
  for (const op of ops) {
    if (op.t === 'submit') {
      const pages = Math.min(op.pages, SLOTS - op.buf);
      const len = pages * PAGE;
      const r = premapSubmit(rig.token, op.write ? REQ_OP_WRITE : REQ_OP_READ, BigInt((op.ns * PAGE) / 512), op.buf * PAGE, len,
        { unlocked: op.unlocked });
      if (r.ok) {
        maps.add(r.value.map);
        expect(r.value.map.released).toBe(false);
        pending.push({ io: r.value, write: op.write, bufOff: op.buf * PAGE, nsOff: op.ns * PAGE, len, applied: false });
      } else {
        // EAGAIN on an inline issue without a live map; ENODEV from the revoked exporter
        expect(['EAGAIN', 'ENODEV']).toContain(r.errno);
      }
    } else if (op.t === 'execute' || op.t === 'complete') {
      const o = open();
      if (o.length > 0) {
        const p = o[op.i % o.length]!;
        if (op.t === 'execute') premapExecute(p.io);
        else expect(premapComplete(p.io).ok).toBe(true);
      }
    } else if (op.t === 'move') {
      rig.buf.resv.lock();
      dmaBufInvalidateMappings(rig.buf);
      rig.buf.resv.unlock();
    } else if (op.t === 'revoke') {
      dmaBufRevoke(rig.buf);
      // revoke waits for every fence: nothing of the old maps is in flight
      expect(open().every((p) => p.io.map === rig.token.map)).toBe(true);
    } else {
      dmaBufUnrevoke(rig.buf);
    }
    settle();
  }
  premapUnregister(rig.token);
  settle();
  expect(open()).toEqual([]);
  expect(pending.every((p) => p.applied)).toBe(true);
  expect(rig.m.stats.nvmeCtrlDataBytes - bytes0).toBe(moved);
  expect(firstDiff(rig.ctrl.controller.readBlocks(1, 0n, ns.length / 512), ns)).toBe(-1);
  expect(firstDiff(rig.read(0, SLOTS * PAGE), buf)).toBe(-1);
  for (const m of maps) {
    expect(m.released).toBe(true);
    if (source === 'system-heap') for (const a of m.dmaList) expect(dev.dmaRead(a, 8).ok).toBe(false);
  }
  expect(rig.token.maps.size).toBe(0);
  expect(dmaBufAttachments(dev)).toEqual([]);
  expect(rig.m.events.list().filter((e) => e.kind === 'MODEL-CHECK' || e.kind === 'WARN')).toEqual([]);
}

describe('pre-mapped dma-buf I/O with invalidations (property)', () => {
  it('system heap pages behind a strict IOMMU: no access after invalidation, no lost or doubled bytes, nothing left mapped', () => {
    fc.assert(fc.property(fc.array(opArb, { minLength: 1, maxLength: 40 }), fc.integer({ min: 1, max: 1000 }), (ops, seed) => {
      run(ops, 'system-heap', seed);
    }), { numRuns: 40 });
  });

  it('GPU VRAM reached P2P: the same, with revokes and moves', () => {
    fc.assert(fc.property(fc.array(opArb, { minLength: 1, maxLength: 30 }), fc.integer({ min: 1, max: 1000 }), (ops, seed) => {
      run(ops, 'gpu-vram', seed);
    }), { numRuns: 15 });
  });
});
