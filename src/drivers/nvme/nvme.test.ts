import { describe, expect, it } from 'vitest';
import { allocPhys, gpuBar, makeMachine, phyrs } from '../../../test/fixtures/dma-b-machines.ts';
import { GiB, KiB, MiB, patternBytes, unwrap } from '../../base/index.ts';
import { dmaGetMaxSegSize, dmaGetMinAlignMask } from '../../dma/index.ts';
import { createMachine, type Machine } from '../../machine/index.ts';
import { PhyrList } from '../../phyr/index.ts';
import {
  BLK_STS_INVAL, BLK_STS_IOERR, REQ_OP_READ, REQ_OP_WRITE, bdevNrSectors, bioFromRanges, blkSubmitBio, type ReqOp, type Request,
  type RequestQueue,
} from '../block/index.ts';
import {
  IOD_DATA_MMIO, IOD_DATA_P2P, IOD_SINGLE_SEGMENT, IOD_SMALL_DESCRIPTOR, NvmeCtrl, nvmeCompleteRq, nvmeProbe, nvmeQueueRq,
  nvmeExecute, nvmeReadBlocks, nvmeRemove, type NvmeControllerPort, type NvmeIo,
} from './index.ts';

/** A controller port that records the commands it is given. */
function port(sgls: boolean, mdts = 0): NvmeControllerPort & { sqes: Uint8Array[] } {
  const sqes: Uint8Array[] = [];
  return {
    identify: { sgls, mdts, namespaces: [{ nsid: 1, nsze: 1 << 21, lbaBytes: 512 }] },
    execute: (sqe) => { sqes.push(sqe); return { status: 0 }; },
    readBlocks: (_nsid, _slba, nlb) => new Uint8Array(nlb * 512),
    sqes,
  };
}

function probe(m: Machine, sgls: boolean, devName = 'nvme0', mdts = 0): NvmeCtrl {
  return unwrap(nvmeProbe(m.device(devName), { controller: port(sgls, mdts) }));
}

function request(ctrl: NvmeCtrl, pieces: Array<[bigint, number]>, flags = 0): Request {
  const bio = unwrap(bioFromRanges(REQ_OP_WRITE, 0n, phyrs(pieces, flags)));
  const rqs = unwrap(blkSubmitBio(ctrl.queue, bio));
  expect(rqs).toHaveLength(1);
  return rqs[0];
}

/** Little-endian hex of a 64-bit value. */
function le64(x: bigint): string {
  return x.toString(16).padStart(16, '0').match(/../g)!.reverse().join('');
}
function hex(b: Uint8Array): string {
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
}
function u64s(m: Machine, phys: bigint, n: number): bigint[] {
  const v = new DataView(m.mem.read(phys, n * 8).buffer);
  return Array.from({ length: n }, (_, i) => v.getBigUint64(i * 8, true));
}

/** The SQE a write of nlb 512-byte blocks at LBA 0 of namespace 1, command id cid, has, with dptr (32 hex digits). */
function sqeHex(cid: number, flags: number, dptr: string, nlb: number): string {
  return '01' + flags.toString(16).padStart(2, '0') + cid.toString(16).padStart(4, '0').match(/../g)!.reverse().join('')
    + '01000000' + '00'.repeat(8) + '00'.repeat(8) + dptr + '00'.repeat(8)
    + (nlb - 1).toString(16).padStart(4, '0').match(/../g)!.reverse().join('') + '00'.repeat(14);
}

function finish(m: Machine, ctrl: NvmeCtrl, io: NvmeIo): void {
  nvmeCompleteRq(ctrl, io);
  expect(ctrl.pools.small.nrActive + ctrl.pools.large.nrActive).toBe(0);
  expect(m.dmaDebug.count(ctrl.dev)).toBe(ctrl.pools.small.nrPages + ctrl.pools.large.nrPages); // only the pool pages
}

describe('nvmeProbe: the limits nvme_pci_alloc_dev and nvme_set_ctrl_limits give', () => {
  it('dma-direct: 64-bit masks, min_align_mask 4095, max segment 0xffffffff, 8 MiB, 256 segments; virt boundary only without SGLs', () => {
    const m = makeMachine('none');
    const c = probe(m, true);
    expect(c.dev.dmaMask).toBe((1n << 64n) - 1n);
    expect(c.dev.coherentDmaMask).toBe((1n << 64n) - 1n);
    expect(dmaGetMinAlignMask(c.dev)).toBe(4095);
    expect(dmaGetMaxSegSize(c.dev)).toBe(0xffffffff);
    expect(c.queue.limits).toMatchObject({ maxHwSectors: 16384, maxSegments: 256, virtBoundaryMask: 0, maxSegmentSize: 0xffffffff, dmaAlignment: 3 });
    expect(c.adminQueue.limits.virtBoundaryMask).toBe(4095);
    expect(probe(makeMachine('none'), false).queue.limits.virtBoundaryMask).toBe(4095);
  });

  it('behind an IOMMU dma_opt_mapping_size caps a command at 128 KiB, and max_segments follows it (33, not 256: nvme_max_drv_segments)', () => {
    const c = probe(makeMachine('strict'), true);
    expect(c.queue.limits).toMatchObject({ maxHwSectors: 256, maxSegments: 33 });
  });

  it('MDTS caps max_hw_sectors (2^mdts controller pages) and with it max_segments', () => {
    const c = probe(makeMachine('none'), true, 'nvme0', 3);
    expect(c.queue.limits).toMatchObject({ maxHwSectors: 64, maxSegments: 9 });
  });

  it('each namespace\'s disk is NSZE blocks long in 512-byte sectors (nvme_update_ns_info); a bio past it never reaches the controller', () => {
    const m = createMachine({
      ramBytes: 256 * MiB, seed: 1,
      pci: [
        { name: 'hb0', type: 'host-bridge', vendor: 0x8086, device: 0x2030 },
        { name: 'rp0', type: 'root-port', parent: 'hb0' },
        { name: 'nvme0', type: 'endpoint', parent: 'rp0',
          nvme: { sgls: true, mdts: 0, namespaces: [{ nsid: 1, bytes: 1 * MiB, lbaBytes: 512 }, { nsid: 2, bytes: 2 * MiB, lbaBytes: 4096 }] } },
      ],
    });
    const c = unwrap(nvmeProbe(m.device('nvme0')));
    expect(bdevNrSectors(c.queues.get(1)!)).toBe(2048n);
    expect(bdevNrSectors(c.queues.get(2)!)).toBe(4096n);
    expect(bdevNrSectors(probe(makeMachine('none'), true).queue)).toBe(1n << 21n); // a port's NSZE
    const p = unwrap(m.allocKernelPages(1)) * 4096n;
    const run = (q: RequestQueue, sector: bigint) => {
      const rqs = blkSubmitBio(q, unwrap(bioFromRanges(REQ_OP_READ, sector, phyrs([[p, 4096]]))));
      if (!rqs.ok) return rqs.errno;
      const io = unwrap(nvmeQueueRq(c, 1, rqs.value[0]!));
      const st = unwrap(nvmeExecute(c, io)).status;
      nvmeCompleteRq(c, io);
      return st;
    };
    const commands = () => m.stats.nvmeCtrlCommands;
    expect([run(c.queues.get(1)!, 2040n), run(c.queues.get(2)!, 4088n)]).toEqual([0, 0]); // the last 4 KiB of each
    const before = commands();
    expect([run(c.queues.get(1)!, 2041n), run(c.queues.get(2)!, 4096n)]).toEqual(['EIO', 'EIO']); // bio_check_eod
    expect(commands()).toBe(before);
  });
});

describe('PRPs, byte for byte (nvme_pci_setup_data_simple / nvme_pci_setup_data_prp)', () => {
  it('one page with an offset: PRP1 only', () => {
    const m = makeMachine('none');
    const c = probe(m, false);
    const p = allocPhys(m, 0);
    const io = unwrap(nvmeQueueRq(c, 1, request(c, [[p + 0x200n, 0xe00]])));
    expect(hex(io.sqe)).toBe(sqeHex(0, 0, le64(p + 0x200n) + le64(0n), 7));
    expect(io.flags & IOD_SINGLE_SEGMENT).toBeTruthy();
    expect([io.useSgl, io.nrDescriptors, io.totalLen]).toEqual([false, 0, 0xe00]);
    finish(m, c, io);
  });

  it('offset data over two pages: PRP2 is the second page', () => {
    const m = makeMachine('none');
    const c = probe(m, false);
    const p = allocPhys(m, 1);
    const io = unwrap(nvmeQueueRq(c, 1, request(c, [[p + 0x200n, 0x1000]])));
    expect(hex(io.sqe.subarray(24, 40))).toBe(le64(p + 0x200n) + le64(p + 0x1000n));
    finish(m, c, io);
  });

  it('five pages: PRP2 points at a list of four entries in a 256-byte small-pool block', () => {
    const m = makeMachine('none');
    const c = probe(m, false);
    const p = allocPhys(m, 3);
    const io = unwrap(nvmeQueueRq(c, 1, request(c, [[p, 5 * 4096]])));
    expect(io.nrDescriptors).toBe(1);
    expect(io.flags & IOD_SMALL_DESCRIPTOR).toBeTruthy();
    const list = c.pools.small.pages[0].cpuPhys; // the first block of the small pool
    expect(hex(io.sqe.subarray(24, 40))).toBe(le64(p) + le64(list));
    expect(u64s(m, list, 4)).toEqual([1n, 2n, 3n, 4n].map((i) => p + i * 4096n));
    expect(io.descriptorBytes).toBe(32);
    finish(m, c, io);
  });

  it('513 pages: PRP1 + one full list of 512 entries and no link', () => {
    const m = makeMachine('none');
    const c = probe(m, false);
    const p = allocPhys(m, 10);
    const io = unwrap(nvmeQueueRq(c, 1, request(c, [[p, 513 * 4096]])));
    expect(io.nrDescriptors).toBe(1);
    const list = new DataView(io.sqe.buffer).getBigUint64(32, true);
    const entries = u64s(m, list, 512); // dma-direct: list DMA address = its physical address
    expect(entries).toEqual(Array.from({ length: 512 }, (_, i) => p + BigInt(i + 1) * 4096n));
    finish(m, c, io);
  });

  it('514 pages: the first list holds 511 entries and a link in its last slot; the second list the last 2', () => {
    const m = makeMachine('none');
    const c = probe(m, false);
    const p = allocPhys(m, 10);
    const io = unwrap(nvmeQueueRq(c, 1, request(c, [[p, 514 * 4096]])));
    expect(io.nrDescriptors).toBe(2);
    const list1 = new DataView(io.sqe.buffer).getBigUint64(32, true);
    const e1 = u64s(m, list1, 512);
    expect(e1.slice(0, 511)).toEqual(Array.from({ length: 511 }, (_, i) => p + BigInt(i + 1) * 4096n));
    const list2 = e1[511];
    expect(u64s(m, list2, 2)).toEqual([p + 512n * 4096n, p + 513n * 4096n]);
    expect(io.descriptorBytes).toBe(4096 + 16);
    finish(m, c, io);
  });

  it('IOVA-coalesced: three scattered pages behind a strict IOMMU are one window; PRP1 + a list of two', () => {
    const m = makeMachine('strict');
    const c = probe(m, false);
    const pages = [allocPhys(m, 0), allocPhys(m, 0), allocPhys(m, 0)];
    const io = unwrap(nvmeQueueRq(c, 1, request(c, pages.map((x) => [x, 4096] as [bigint, number]))));
    expect(io.segments).toHaveLength(1);
    const iova = io.segments[0].addr;
    expect(io.segments[0].len).toBe(12288);
    const v = new DataView(io.sqe.buffer);
    expect(v.getBigUint64(24, true)).toBe(iova);
    const list = v.getBigUint64(32, true);
    const listPhys = c.pools.small.pages[0].cpuPhys;
    expect(u64s(m, listPhys, 2)).toEqual([iova + 4096n, iova + 8192n]);
    // the device reads the list through its IOMMU at the list's DMA address
    expect(hex(unwrap(c.dev.dmaRead(list, 16)))).toBe(le64(iova + 4096n) + le64(iova + 8192n));
    finish(m, c, io);
  });
});

describe('SGLs, byte for byte (nvme_pci_setup_data_sgl)', () => {
  it('one 64 KiB segment: a data block descriptor inline, PSDT = 01b', () => {
    const m = makeMachine('none');
    const c = probe(m, true);
    const p = allocPhys(m, 4);
    const io = unwrap(nvmeQueueRq(c, 1, request(c, [[p, 0x10000]])));
    expect(hex(io.sqe)).toBe(sqeHex(0, 0x40, le64(p) + '00000100' + '000000' + '00', 128));
    expect([io.useSgl, io.nrDescriptors]).toEqual([true, 0]);
    finish(m, c, io);
  });

  it('three 40 KiB segments (average >= 32 KiB): a last-segment descriptor to a list of three data descriptors', () => {
    const m = makeMachine('none');
    const c = probe(m, true);
    const a = allocPhys(m, 4), b = allocPhys(m, 4), d = allocPhys(m, 4);
    const io = unwrap(nvmeQueueRq(c, 1, request(c, [[a, 40960], [b, 40960], [d, 40960]])));
    const list = c.pools.small.pages[0].cpuPhys;
    expect(hex(io.sqe.subarray(24, 40))).toBe(le64(list) + '30000000' + '000000' + '30');
    expect(hex(m.mem.read(list, 48))).toBe([a, b, d].map((x) => le64(x) + '00a00000' + '000000' + '00').join(''));
    expect(io.nrDescriptors).toBe(1);
    finish(m, c, io);
  });

  it('two physical segments that map as one DMA segment: a one-entry small-pool list, not an inline data block', () => {
    // nvme_pci_setup_data_sgl() keeps the descriptor in the command only when
    // blk_rq_nr_phys_segments() is 1 or the request was IOVA-coalesced; blk_map_iter_next() merging
    // contiguous vectors into one DMA segment does not count
    const m = makeMachine('none');
    const c = probe(m, true);
    const p = allocPhys(m, 4);
    const bio = unwrap(bioFromRanges(REQ_OP_WRITE, 0n, phyrs([[p, 0x8000], [p + 0x8000n, 0x8000]]), { merge: false }));
    const rq = unwrap(blkSubmitBio(c.queue, bio));
    expect(rq).toHaveLength(1);
    expect(rq[0].nrPhysSegments).toBe(2);
    const io = unwrap(nvmeQueueRq(c, 1, rq[0]));
    expect(io.segments).toEqual([{ addr: p, len: 0x10000 }]);
    const list = c.pools.small.pages[0].cpuPhys;
    expect(hex(io.sqe)).toBe(sqeHex(0, 0x40, le64(list) + '10000000' + '000000' + '30', 128));
    expect(hex(m.mem.read(list, 16))).toBe(le64(p) + '00000100' + '000000' + '00');
    expect([io.useSgl, io.nrDescriptors, io.descriptorBytes, io.totalLen]).toEqual([true, 1, 16, 0x10000]);
    expect(io.flags & IOD_SMALL_DESCRIPTOR).toBeTruthy();
    expect(c.pools.small.nrActive).toBe(1);
    finish(m, c, io);
  });

  it('behind a strict IOMMU a seam inside a page blocks coalescing: the merged DMA segment still goes in a list (SGL_FORCED)', () => {
    const m = makeMachine('strict');
    const c = probe(m, true);
    const p = allocPhys(m, 4);
    const bio = unwrap(bioFromRanges(REQ_OP_WRITE, 0n, phyrs([[p, 0x8200], [p + 0x8200n, 0x7e00]]), { merge: false }));
    const rq = unwrap(blkSubmitBio(c.queue, bio))[0];
    expect(rq.nrPhysSegments).toBe(2);
    const io = unwrap(nvmeQueueRq(c, 1, rq));
    expect(io.segments).toHaveLength(1);
    const iova = io.segments[0].addr;
    const v = new DataView(io.sqe.buffer);
    const listDma = v.getBigUint64(24, true);
    expect(hex(io.sqe.subarray(32, 40))).toBe('10000000' + '000000' + '30');
    expect(hex(unwrap(c.dev.dmaRead(listDma, 16)))).toBe(le64(iova) + '00000100' + '000000' + '00');
    expect(io.nrDescriptors).toBe(1);
    finish(m, c, io);
  });

  it('an IOVA-coalesced request of several physical segments keeps one data block in the command', () => {
    const m = makeMachine('strict');
    const c = probe(m, true);
    const a = allocPhys(m, 4), b = allocPhys(m, 4), d = allocPhys(m, 4);
    const io = unwrap(nvmeQueueRq(c, 1, request(c, [[a, 40960], [b, 40960], [d, 40960]])));
    expect(io.req.nrPhysSegments).toBe(3);
    expect(io.segments).toHaveLength(1);
    expect(hex(io.sqe.subarray(24, 40))).toBe(le64(io.segments[0].addr) + '00e00100' + '000000' + '00');
    expect(io.nrDescriptors).toBe(0);
    finish(m, c, io);
  });

  it('a gap inside a controller page forces SGLs whatever the sizes (SGL_FORCED)', () => {
    const m = makeMachine('none');
    const c = probe(m, true);
    const a = allocPhys(m, 0), b = allocPhys(m, 0);
    const io = unwrap(nvmeQueueRq(c, 1, request(c, [[a + 0x200n, 0x800], [b, 0x200]])));
    expect(io.useSgl).toBe(true);
    expect(io.sqe[39]).toBe(0x30);
    finish(m, c, io);
  });
});

describe('io.flags', () => {
  it('carries the bit values of enum nvme_iod_flags', () => {
    expect([IOD_SMALL_DESCRIPTOR, IOD_SINGLE_SEGMENT, IOD_DATA_P2P, IOD_DATA_MMIO]).toEqual([1 << 1, 1 << 2, 1 << 3, 1 << 5]);
    const m = makeMachine('none');
    const c = probe(m, true);
    const simple = unwrap(nvmeQueueRq(c, 1, request(c, [[allocPhys(m, 0), 4096]])));
    expect(simple.flags).toBe(1 << 2);
    finish(m, c, simple);
    const prp = probe(m, false, 'far0');
    const list = unwrap(nvmeQueueRq(prp, 1, request(prp, [[allocPhys(m, 3), 5 * 4096]])));
    expect(list.flags).toBe(1 << 1);
    finish(m, prp, list);
    const bar = gpuBar(m);
    const p2p = unwrap(nvmeQueueRq(c, 1, request(c, [[bar.start, 8192]], bar.flags)));
    expect(p2p.flags).toBe(1 << 3);
    nvmeCompleteRq(c, p2p);
  });
});

describe('refusals', () => {
  it('a request that breaks PRP rules reaching a PRP path gets BLK_STS_IOERR with nothing mapped (admin queue)', () => {
    const m = makeMachine('strict');
    const c = probe(m, true);
    const a = allocPhys(m, 0), b = allocPhys(m, 0);
    const r = nvmeQueueRq(c, 0, request(c, [[a + 0x200n, 0x800], [b, 0x1000]]));
    expect(r).toMatchObject({ ok: false, blkStatus: BLK_STS_IOERR, errno: 'EIO' });
    expect(m.dmaDebug.count(c.dev)).toBe(0);
    expect(c.pools.small.nrActive + c.pools.large.nrActive).toBe(0);
    expect(m.events.list('WARN').some((e) => e.message.includes('nvme_pci_setup_data_prp'))).toBe(true);
  });

  it('P2P memory the device cannot reach gets BLK_STS_INVAL; P2P through a switch is sent as bus addresses', () => {
    const m = makeMachine('none');
    const bar = gpuBar(m);
    const far = probe(m, true, 'far0');
    const r = nvmeQueueRq(far, 1, request(far, [[bar.start, 8192]], bar.flags));
    expect(r).toMatchObject({ ok: false, blkStatus: BLK_STS_INVAL });
    const near = probe(m, true, 'nvme0');
    const io = unwrap(nvmeQueueRq(near, 1, request(near, [[bar.start, 8192]], bar.flags)));
    expect(io.flags & IOD_DATA_P2P).toBeTruthy();
    expect(io.segments[0].addr).toBe(bar.start + 0x1000_0000_0000n);
    nvmeCompleteRq(near, io);
    expect(() => nvmeCompleteRq(near, io)).toThrow(TypeError);
  });
});

describe('a 16 KiB-page machine: the block layer at its PAGE_SIZE, PRPs at NVME_CTRL_PAGE_SIZE (4 KiB)', () => {
  const PS = 16 * KiB;
  /** A 16 KiB-page machine without an IOMMU (dma-direct) with an NVMe controller model. */
  function machine16(mdts: number, bounce = false, pageSize = PS): Machine {
    return createMachine({
      ramBytes: 2 * GiB, pageSize, seed: 3, swiotlb: { bytes: 4 * MiB, force: bounce },
      pci: [
        { name: 'hb0', type: 'host-bridge', vendor: 0x8086, device: 0x2030 },
        { name: 'rp0', type: 'root-port', parent: 'hb0' },
        { name: 'nvme0', type: 'endpoint', parent: 'rp0', bars: [{ bytes: 16 * KiB }],
          nvme: { sgls: false, mdts, namespaces: [{ nsid: 1, bytes: 1 * GiB, lbaBytes: 512 }] } },
      ],
    });
  }

  it('MDTS of two controller pages (8 KiB) is below PAGE_SECTORS: the probe fails with EINVAL, as on 4 KiB pages it does not', () => {
    // drivers/nvme/host/core.c: nvme_init_identify() caps max_hw_sectors by MDTS, and
    // block/blk-settings.c: blk_validate_limits() refuses a max_hw_sectors below PAGE_SECTORS
    const r = nvmeProbe(machine16(1).device('nvme0'));
    expect(r.ok || r.errno).toBe('EINVAL');
    expect(unwrap(nvmeProbe(machine16(1, false, 4096).device('nvme0'))).queue.limits.maxHwSectors).toBe(16);
    expect(unwrap(nvmeProbe(machine16(2).device('nvme0'))).queue.limits.maxHwSectors).toBe(32);
  });

  it.each([false, true])('write and read back a bio over 16 KiB pages (swiotlb force %s): bv_offset in 16 KiB pages, PRP entries every 4 KiB', (bounce) => {
    const m = machine16(0, bounce);
    const ctrl = unwrap(nvmeProbe(m.device('nvme0')));
    expect(ctrl.queue.pageSize).toBe(PS);
    expect(ctrl.queue.limits).toMatchObject({ virtBoundaryMask: 4095, maxFastSegmentSize: PS });
    // the first page of a two-page block each, so that no two pieces are contiguous
    const page = () => unwrap(m.allocKernelPages(1)) * BigInt(PS);
    const a = page(), b = page(), c = page();
    // the first piece starts 0x1200 into its 16 KiB page, 0x200 into a controller page
    const pieces = [{ addr: a + 0x1200n, len: PS - 0x1200 }, { addr: b, len: PS }, { addr: c, len: 0x1000 }];
    const total = pieces.reduce((t, p) => t + p.len, 0);
    const data = patternBytes(total, 11);
    let at = 0;
    for (const p of pieces) { m.mem.write(p.addr, data.subarray(at, at + p.len)); at += p.len; }
    const run = (op: ReqOp): void => {
      const rqs = unwrap(blkSubmitBio(ctrl.queue, unwrap(bioFromRanges(op, 8n, PhyrList.from(pieces), { pageSize: m.pageSize }))));
      expect(rqs).toHaveLength(1);
      expect([0, 1, 2].map((i) => rqs[0].bio.vecs.offsetAt(i))).toEqual([0x1200, 0, 0]);
      const io = unwrap(nvmeQueueRq(ctrl, 1, rqs[0]));
      expect(io.useSgl).toBe(false);
      if (!bounce) {
        // drivers/nvme/host/pci.c: nvme_pci_setup_data_prp(): PRP1 at the data, then one entry per
        // NVME_CTRL_PAGE_SIZE, whatever PAGE_SIZE is
        const prp = new DataView(io.sqe.buffer, io.sqe.byteOffset);
        expect(prp.getBigUint64(24, true)).toBe(a + 0x1200n);
        const step = (base: bigint, n: number) => Array.from({ length: n }, (_, i) => base + BigInt(i * 4096));
        expect(u64s(m, prp.getBigUint64(32, true), 7)).toEqual([...step(a + 0x2000n, 2), ...step(b, 4), c]);
      }
      expect(unwrap(nvmeExecute(ctrl, io)).status).toBe(0);
      nvmeCompleteRq(ctrl, io);
    };
    run(REQ_OP_WRITE);
    expect(nvmeReadBlocks(ctrl, 1, 8n, total / 512)).toEqual(data);
    for (const p of pieces) m.mem.fill(p.addr, p.len, 0);
    run(REQ_OP_READ);
    at = 0;
    for (const p of pieces) { expect(m.mem.read(p.addr, p.len)).toEqual(data.subarray(at, at + p.len)); at += p.len; }
    expect(ctrl.inflight.size).toBe(0);
    nvmeRemove(ctrl);
    expect(m.teardown()).toBe(0);
    expect(m.events.list().filter((e) => e.kind === 'DMA-DEBUG' || e.kind === 'WARN' || e.kind === 'FAULT')).toEqual([]);
  });
});
