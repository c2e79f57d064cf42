// Models: posting work requests on one RC queue pair looped back to itself (ib_post_send with
// IB_WR_RDMA_WRITE / IB_WR_RDMA_READ / IB_WR_SEND, ib_post_recv) and polling its completion: the
// NIC model (nic.ts) executes each request when it is posted and the call returns the completion
// (struct ib_wc's status and byte_len). A request never fails as a call: what goes wrong completes
// with an IB status.

import { ok, type Result } from '../../base/index.ts';
import { IbDevice } from './device.ts';
import type { IbSendWc, IbWc } from './nic.ts';

const U64 = (1n << 64n) - 1n;

/** An RDMA WRITE or READ: one local SGE (lkey, laddr, len) and the remote address and key. */
export interface IbRdmaWr {
  readonly lkey: number;
  readonly laddr: bigint;
  readonly rkey: number;
  readonly raddr: bigint;
  readonly len: number;
}

/** One SGE of a SEND or RECV. */
export interface IbSge {
  readonly lkey: number;
  readonly addr: bigint;
  readonly len: number;
}

function checkDev(ibdev: IbDevice): void {
  if (!(ibdev instanceof IbDevice)) throw new TypeError(`ibdev must be an IbDevice (rdmaProbe), got ${String(ibdev)}`);
}

function checkKey(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`${name} must be a u32, got ${String(v)}`);
  return v;
}

function checkAddr(name: string, v: unknown): bigint {
  if (typeof v !== 'bigint' || v < 0n || v > U64) throw new RangeError(`${name} must be a u64 bigint, got ${String(v)}`);
  return v;
}

function checkLen(name: string, v: unknown): number {
  // the SGE length is a u32; an RDMA message may be up to 2^31 bytes
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0x80000000) throw new RangeError(`${name} must be an integer in [0, 2^31], got ${String(v)}`);
  return v;
}

function checkRdma(wr: IbRdmaWr): void {
  if (wr === null || typeof wr !== 'object') throw new TypeError(`wr must be { lkey, laddr, rkey, raddr, len }, got ${String(wr)}`);
  checkKey('wr.lkey', wr.lkey);
  checkAddr('wr.laddr', wr.laddr);
  checkKey('wr.rkey', wr.rkey);
  checkAddr('wr.raddr', wr.raddr);
  checkLen('wr.len', wr.len);
}

function checkSge(sge: IbSge): void {
  if (sge === null || typeof sge !== 'object') throw new TypeError(`sge must be { lkey, addr, len }, got ${String(sge)}`);
  checkKey('sge.lkey', sge.lkey);
  checkAddr('sge.addr', sge.addr);
  checkLen('sge.len', sge.len);
}

/** IB_WR_RDMA_WRITE: local [laddr, +len) (lkey) to remote [raddr, +len) (rkey, IB_ACCESS_REMOTE_WRITE). */
export function ibPostRdmaWrite(ibdev: IbDevice, wr: IbRdmaWr): Result<IbWc> {
  checkDev(ibdev);
  checkRdma(wr);
  return ok(ibdev.nic.rdmaWrite(wr.lkey, wr.laddr, wr.rkey, wr.raddr, wr.len));
}

/** IB_WR_RDMA_READ: remote [raddr, +len) (rkey, IB_ACCESS_REMOTE_READ) into local [laddr, +len) (lkey, IB_ACCESS_LOCAL_WRITE). */
export function ibPostRdmaRead(ibdev: IbDevice, wr: IbRdmaWr): Result<IbWc> {
  checkDev(ibdev);
  checkRdma(wr);
  return ok(ibdev.nic.rdmaRead(wr.lkey, wr.laddr, wr.rkey, wr.raddr, wr.len));
}

/** ib_post_recv: queues a receive buffer (checked when a SEND lands in it: IB_ACCESS_LOCAL_WRITE, bounds). */
export function ibPostRecv(ibdev: IbDevice, sge: IbSge): Result<void> {
  checkDev(ibdev);
  checkSge(sge);
  ibdev.nic.postRecv(sge.lkey, sge.addr, sge.len);
  return ok(undefined);
}

/** IB_WR_SEND: local [addr, +len) into the first queued receive; returns both completions. */
export function ibPostSend(ibdev: IbDevice, sge: IbSge): Result<IbSendWc> {
  checkDev(ibdev);
  checkSge(sge);
  return ok(ibdev.nic.send(sge.lkey, sge.addr, sge.len));
}
