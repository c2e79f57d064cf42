import { describe, expect, it } from 'vitest';
import { premapRig } from '../../../test/fixtures/premap.ts';
import { patternBytes, unwrap } from '../../base/index.ts';
import { REQ_OP_READ, REQ_OP_WRITE } from '../block/index.ts';
import { dmaBufAttachments, dmaBufInvalidateMappings, dmaBufRevoke, dmaBufUnrevoke, gpuBoMigrate } from '../dmabuf/index.ts';
import {
  PremapToken, premapComplete, premapExecute, premapMaps, premapRegisterUserBuffer, premapSubmit, premapUnregister,
} from './index.ts';

const KiB = 1024;

/** Counter differences over fn. */
function counting(m: ReturnType<typeof premapRig>['m'], fn: () => void): Record<string, number> {
  const s = m.stats.snapshot();
  fn();
  return m.stats.diff(s) as Record<string, number>;
}

function moveNotify(rig: ReturnType<typeof premapRig>): void {
  rig.buf.resv.lock();
  dmaBufInvalidateMappings(rig.buf);
  rig.buf.resv.unlock();
}

describe('pre-mapped dma-buf I/O (RFC dmabuf read/write via io_uring, v3)', () => {
  it('moves real bytes: a write from the dma-buf lands in the namespace, a read brings them back', () => {
    const rig = premapRig({ len: 256 * KiB });
    const want = patternBytes(128 * KiB, 7);
    rig.write(64 * KiB, want);
    // the first inline issue has no map yet: EAGAIN, as io_import_dmabuf() answers without IO_URING_F_UNLOCKED
    const first = premapSubmit(rig.token, REQ_OP_WRITE, 8n, 64 * KiB, 128 * KiB);
    expect(first.ok ? 'ok' : first.errno).toBe('EAGAIN');
    const w = unwrap(premapSubmit(rig.token, REQ_OP_WRITE, 8n, 64 * KiB, 128 * KiB, { unlocked: true }));
    unwrap(premapComplete(w));
    expect(rig.ctrl.controller.readBlocks(1, 8n, 256)).toEqual(want);
    rig.write(64 * KiB, new Uint8Array(128 * KiB));
    const r = unwrap(premapSubmit(rig.token, REQ_OP_READ, 8n, 64 * KiB, 128 * KiB));
    unwrap(premapComplete(r));
    expect(rig.read(64 * KiB, 128 * KiB)).toEqual(want);
  });

  it('at the end of the namespace does what block/fops.c does: ENOSPC for a write there, 0 bytes for a read, a crossing request cut short', () => {
    const rig = premapRig({ len: 256 * KiB });
    const END = 256n * 2048n; // the 256 MiB namespace in 512-byte sectors
    const ns = (sector: bigint, len: number) => rig.ctrl.controller.readBlocks(1, sector, len / 512);
    const want = patternBytes(16 * KiB, 5);
    rig.write(0, want);
    const before = rig.m.stats.snapshot();
    // blkdev_write_iter(): iov_iter_truncate() to the 4 KiB left; the write moves those and succeeds with 4096
    const w = unwrap(premapSubmit(rig.token, REQ_OP_WRITE, END - 8n, 0, 16 * KiB, { unlocked: true }));
    expect([w.bytes, w.cmds.length, new DataView(w.cmds[0]!.sqe.buffer).getUint16(48, true)]).toEqual([4 * KiB, 1, 7]);
    expect(unwrap(premapComplete(w))).toBe(4 * KiB);
    expect(ns(END - 8n, 4 * KiB)).toEqual(want.subarray(0, 4 * KiB));
    // blkdev_read_iter(): the same cut; the buffer's bytes after the 4 KiB are left as they were
    rig.write(64 * KiB, new Uint8Array(16 * KiB).fill(0xee));
    const r = unwrap(premapSubmit(rig.token, REQ_OP_READ, END - 8n, 64 * KiB, 16 * KiB));
    expect(unwrap(premapComplete(r))).toBe(4 * KiB);
    expect(rig.read(64 * KiB, 4 * KiB)).toEqual(want.subarray(0, 4 * KiB));
    expect(rig.read(68 * KiB, 12 * KiB).every((b) => b === 0xee)).toBe(true);
    const d = rig.m.stats.diff(before) as Record<string, number>;
    expect([d.nvmeCtrlCommands, d.nvmeCtrlErrors ?? 0, d.nvmeCtrlDataBytes]).toEqual([2, 0, 8 * KiB]);
    // at or past the end: ENOSPC for a write, a read of 0 bytes, no command either way, no reference kept
    const at = rig.m.stats.snapshot();
    for (const sector of [END, END + 100n]) {
      const e = premapSubmit(rig.token, REQ_OP_WRITE, sector, 0, 4 * KiB);
      expect(e.ok || e.errno).toBe('ENOSPC');
      const eof = unwrap(premapSubmit(rig.token, REQ_OP_READ, sector, 0, 4 * KiB));
      expect([eof.bytes, eof.cmds.length]).toEqual([0, 0]);
      expect(unwrap(premapComplete(eof))).toBe(0);
    }
    expect(rig.m.stats.diff(at).nvmeCtrlCommands ?? 0).toBe(0);
    expect(rig.token.map!.refs).toBe(1);
    expect(rig.token.map!.inflight.size).toBe(0);
    // a request that ends exactly at the end is whole
    expect(unwrap(premapComplete(unwrap(premapSubmit(rig.token, REQ_OP_WRITE, END - 32n, 0, 16 * KiB))))).toBe(16 * KiB);
  });

  it('makes no IOVA allocation, IOMMU map or IOTLB invalidation per I/O once the map exists (strict IOMMU)', () => {
    const rig = premapRig({ len: 512 * KiB });
    // warm-up: the map, and the first PRP list page of the descriptor pool (coherent memory, mapped once)
    unwrap(premapComplete(unwrap(premapSubmit(rig.token, REQ_OP_WRITE, 0n, 0, 128 * KiB, { unlocked: true }))));
    const d = counting(rig.m, () => {
      for (let i = 0; i < 64; i++) {
        const len = i % 2 === 0 ? 4 * KiB : 128 * KiB;
        const io = unwrap(premapSubmit(rig.token, i % 3 === 0 ? REQ_OP_READ : REQ_OP_WRITE, BigInt(i * 8), (i % 3) * 128 * KiB, len));
        unwrap(premapComplete(io));
      }
    });
    expect(d.iovaAllocs ?? 0).toBe(0);
    expect(d.iommuMapCalls ?? 0).toBe(0);
    expect(d.iommuUnmapCalls ?? 0).toBe(0);
    expect((d.iotlbRangeInvalidations ?? 0) + (d.iotlbGlobalFlushes ?? 0)).toBe(0);
    expect(d.premapIos).toBe(64);
  });

  it('builds PRPs only (v3 has no SGL path): PRP1 + PRP2 for 8 KiB, a PRP list for 128 KiB from the per-4 KiB dma_list', () => {
    const rig = premapRig({ len: 256 * KiB });
    const io = unwrap(premapSubmit(rig.token, REQ_OP_WRITE, 0n, 4 * KiB, 8 * KiB, { unlocked: true }));
    const v = new DataView(io.cmds[0]!.sqe.buffer);
    expect(v.getUint8(1) >> 6).toBe(0);
    expect(v.getBigUint64(24, true)).toBe(io.map.dmaList[1]);
    expect(v.getBigUint64(32, true)).toBe(io.map.dmaList[2]);
    expect(io.descriptorBytes).toBe(0);
    unwrap(premapComplete(io));
    const big = unwrap(premapSubmit(rig.token, REQ_OP_READ, 0n, 0, 128 * KiB));
    expect(big.descriptorBytes).toBe(31 * 8);
    unwrap(premapComplete(big));
  });

  it('move_notify with I/O in flight: new inline I/O gets EAGAIN, the old map stays until its I/O completes, then its addresses fault; io-wq re-maps', () => {
    const rig = premapRig({ len: 256 * KiB });
    const want = patternBytes(16 * KiB, 3);
    rig.write(0, want);
    const io = unwrap(premapSubmit(rig.token, REQ_OP_WRITE, 0n, 0, 16 * KiB, { unlocked: true }));
    const old = io.map;
    moveNotify(rig);
    expect(rig.token.map).toBeNull();
    expect(old.released).toBe(false);
    expect(old.fence.signaled).toBe(false);
    const again = premapSubmit(rig.token, REQ_OP_WRITE, 0n, 0, 16 * KiB);
    expect(again.ok ? 'ok' : again.errno).toBe('EAGAIN');
    unwrap(premapComplete(io));
    expect(rig.ctrl.controller.readBlocks(1, 0n, 32)).toEqual(want);
    expect(old.released).toBe(true);
    expect(old.fence.signaled).toBe(true);
    for (const a of old.dmaList) expect(rig.ctrl.dev.dmaRead(a, 8).ok).toBe(false);
    const re = unwrap(premapSubmit(rig.token, REQ_OP_READ, 0n, 0, 16 * KiB, { unlocked: true }));
    expect(re.map).not.toBe(old);
    unwrap(premapComplete(re));
    expect(rig.m.stats.premapMapsCreated).toBe(2);
  });

  it('revoke waits for the map\'s fence: queued I/O is run to completion before the unmap; later I/O fails with the exporter\'s ENODEV', () => {
    const rig = premapRig({ len: 256 * KiB });
    const want = patternBytes(8 * KiB, 9);
    rig.write(8 * KiB, want);
    const io = unwrap(premapSubmit(rig.token, REQ_OP_WRITE, 16n, 8 * KiB, 8 * KiB, { unlocked: true }));
    const old = io.map;
    dmaBufRevoke(rig.buf);
    expect(io.completed).toBe(true);
    expect(io.cmds.every((c) => c.executed && c.status === 0)).toBe(true);
    expect(rig.ctrl.controller.readBlocks(1, 16n, 16)).toEqual(want);
    expect(old.released).toBe(true);
    const inline = premapSubmit(rig.token, REQ_OP_READ, 0n, 0, 4 * KiB);
    expect(inline.ok ? 'ok' : inline.errno).toBe('EAGAIN');
    const wq = premapSubmit(rig.token, REQ_OP_READ, 0n, 0, 4 * KiB, { unlocked: true });
    expect(wq.ok ? 'ok' : wq.errno).toBe('ENODEV');
    dmaBufUnrevoke(rig.buf);
    unwrap(premapComplete(unwrap(premapSubmit(rig.token, REQ_OP_READ, 0n, 0, 4 * KiB, { unlocked: true }))));
  });

  it('a GPU VRAM dma-buf reached P2P through the switch: bytes move by bus address with no IOMMU work, and a migration waits for queued I/O', () => {
    const rig = premapRig({ len: 64 * KiB, source: 'gpu-vram' });
    const want = patternBytes(32 * KiB, 5);
    rig.write(0, want);
    const d = counting(rig.m, () => {
      const io = unwrap(premapSubmit(rig.token, REQ_OP_WRITE, 0n, 0, 32 * KiB, { unlocked: true }));
      unwrap(premapComplete(io));
    });
    // the map itself: bus addresses through the switch, nothing in the IOMMU (the PRP list page of
    // the descriptor pool is the one IOMMU map: coherent memory mapped once)
    expect(d.iommuMapCalls ?? 0).toBe(1);
    const d2 = counting(rig.m, () => unwrap(premapComplete(unwrap(premapSubmit(rig.token, REQ_OP_WRITE, 0n, 0, 32 * KiB)))));
    expect(d2.iommuMapCalls ?? 0).toBe(0);
    expect(rig.ctrl.controller.readBlocks(1, 0n, 64)).toEqual(want);
    rig.write(0, new Uint8Array(32 * KiB));
    const rd = unwrap(premapSubmit(rig.token, REQ_OP_READ, 0n, 0, 32 * KiB, { unlocked: true }));
    unwrap(gpuBoMigrate(rig.bo!, 'system'));
    // the queued read ran before the move, so its bytes moved with the buffer
    expect(rd.completed).toBe(true);
    expect(rig.read(0, 32 * KiB)).toEqual(want);
    expect(rig.m.events.list().filter((e) => e.kind === 'MODEL-CHECK')).toEqual([]);
  });

  it('unregister with I/O in flight completes it, unmaps and detaches: nothing stays mapped or attached', () => {
    const rig = premapRig({ len: 128 * KiB });
    const io = unwrap(premapSubmit(rig.token, REQ_OP_WRITE, 0n, 0, 64 * KiB, { unlocked: true }));
    premapExecute(io);
    const map = io.map;
    premapUnregister(rig.token);
    expect(io.completed).toBe(true);
    expect(map.released).toBe(true);
    expect(premapMaps(rig.token)).toEqual([]);
    expect(dmaBufAttachments(rig.ctrl.dev)).toEqual([]);
    for (const a of map.dmaList) expect(rig.ctrl.dev.dmaRead(a, 8).ok).toBe(false);
    const after = premapSubmit(rig.token, REQ_OP_READ, 0n, 0, 4 * KiB, { unlocked: true });
    expect(after.ok ? 'ok' : after.errno).toBe('EFAULT');
  });

  it('refuses what io_import_dmabuf and the block layer refuse, leaving no reference behind', () => {
    const rig = premapRig({ len: 64 * KiB });
    unwrap(premapComplete(unwrap(premapSubmit(rig.token, REQ_OP_READ, 0n, 0, 4 * KiB, { unlocked: true }))));
    const map = rig.token.map!;
    const e = (r: ReturnType<typeof premapSubmit>): string => (r.ok ? 'ok' : r.errno);
    expect(e(premapSubmit(rig.token, REQ_OP_READ, 0n, 0, 0))).toBe('EFAULT');
    expect(e(premapSubmit(rig.token, REQ_OP_READ, 0n, 60 * KiB, 8 * KiB))).toBe('EFAULT');
    // a byte count that is not a multiple of the logical block size: block/fops.c blkdev_dio_invalid() -> -EINVAL
    const odd = premapSubmit(rig.token, REQ_OP_READ, 0n, 0, 1000);
    expect(e(odd)).toBe('EINVAL');
    expect(odd.ok ? '' : odd.message).toMatch(/logical block size 512/);
    expect(e(premapSubmit(rig.token, REQ_OP_READ, 0n, 2, 512))).toBe('EINVAL');
    expect(map.refs).toBe(1);
    expect(() => premapSubmit({} as PremapToken, REQ_OP_READ, 0n, 0, 512)).toThrow(TypeError);
  });

  it('a registered user buffer kept mapped (MAP_BUFFERS): one map at registration, none per I/O, unmapped and unpinned at unregister', () => {
    const rig = premapRig({ len: 64 * KiB });
    const mm = rig.m.newProcess();
    const start = unwrap(mm.mmap({ len: 256 * KiB, backing: 'anon', populate: true }));
    const want = patternBytes(64 * KiB, 11);
    unwrap(mm.writeUser(start, want));
    const tok = unwrap(premapRegisterUserBuffer(rig.ctrl, mm, start, 256 * KiB));
    unwrap(premapComplete(unwrap(premapSubmit(tok, REQ_OP_READ, 64n * 8n, 128 * KiB, 64 * KiB)))); // the pool's first page
    const d = counting(rig.m, () => {
      for (let i = 0; i < 8; i++) unwrap(premapComplete(unwrap(premapSubmit(tok, REQ_OP_WRITE, 0n, 0, 64 * KiB))));
    });
    expect((d.iovaAllocs ?? 0) + (d.iotlbRangeInvalidations ?? 0) + (d.iommuMapCalls ?? 0)).toBe(0);
    expect(rig.ctrl.controller.readBlocks(1, 0n, 128)).toEqual(want);
    const addrs = tok.map!.dmaList;
    premapUnregister(tok);
    expect(tok.userPin).toBeNull();
    for (const a of addrs) expect(rig.ctrl.dev.dmaRead(a, 8).ok).toBe(false);
    const misaligned = premapRegisterUserBuffer(rig.ctrl, mm, start + 512n, 4 * KiB);
    expect(misaligned.ok ? 'ok' : misaligned.errno).toBe('EINVAL');
  });
});
