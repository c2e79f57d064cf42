import { describe, expect, it } from 'vitest';
import { GiB, KiB, MiB } from '../../base/index.ts';
import { DMA_TO_DEVICE } from '../../dma/index.ts';
import { createMachine } from '../../machine/index.ts';
import {
  NVME_DEFAULT, TestHost, buildSqe, bytesDiff, bytesOf, concat, nvmeMachine, nvmePci, sglDesc, u64s, type NvmeMachineMode,
} from '../../../test/fixtures/nvme-ctrl.ts';
import {
  NVME_CTRL_OP_READ as READ, NVME_CTRL_OP_WRITE as WRITE, NVME_CTRL_SGL_DATA_BLOCK as DATA,
  NVME_CTRL_SGL_LAST_SEGMENT as LAST, NVME_CTRL_SGL_SEGMENT as SEG, NVME_CTRL_STATUS as S, nvmeControllerOf,
  nvmeCtrlStatusName, type NvmeController,
} from './index.ts';

const PAGE = 4096;

function setup(mode: NvmeMachineMode, nvme = NVME_DEFAULT): { host: TestHost; ctrl: NvmeController } {
  const m = nvmeMachine(mode, nvme);
  const ctrl = nvmeControllerOf(m.device('nvme0'));
  if (!ctrl) throw new Error('nvme0 has no controller');
  return { host: new TestHost(m), ctrl };
}

describe('NVMe controller: attached by createMachine from the endpoint\'s nvme config', () => {
  it('reports its Identify data; other devices have no controller', () => {
    const { host, ctrl } = setup('direct', { sgls: false, mdts: 5, namespaces: [{ nsid: 3, bytes: 1 * MiB, lbaBytes: 4096 }] });
    expect(ctrl.identify).toMatchObject({
      vid: 0x144d, mdts: 5, maxDataBytes: 128 * KiB, sgls: false, sglsField: 0, mpsmin: 0, nn: 3,
      namespaces: [{ nsid: 3, nsze: 256, lbaBytes: 4096 }],
    });
    expect(nvmeControllerOf(host.m.device('nic0'))).toBeNull();
    expect(nvmeControllerOf(host.m.device('gpu0'))).toBeNull();
    expect(ctrl.dev).toBe(host.m.device('nvme0'));
  });

  it('mdts 0 means no limit; sgls true sets SGLS to 1 (byte-aligned SGLs)', () => {
    const { ctrl } = setup('direct');
    expect(ctrl.identify.maxDataBytes).toBeNull();
    expect(ctrl.identify.sglsField).toBe(1);
  });

  it('a 4 GiB namespace allocates backing store only for the chunks written', () => {
    const { ctrl } = setup('direct');
    const ns = ctrl.namespace(1);
    expect(ns.bytes).toBe(4 * GiB);
    expect(ns.allocatedBytes()).toBe(0);
    expect(bytesDiff(ctrl.readBlocks(1, (4n * BigInt(GiB)) / 512n - 8n, 8), new Uint8Array(4096))).toBeNull();
    ctrl.writeBlocks(1, 2n ** 20n, bytesOf(4096, 1));
    expect(ns.allocatedBytes()).toBe(64 * KiB);
    expect(bytesDiff(ctrl.readBlocks(1, 2n ** 20n, 8), bytesOf(4096, 1))).toBeNull();
  });

  it('readBlocks / writeBlocks reject bad arguments by name', () => {
    const { ctrl } = setup('direct');
    expect(() => ctrl.readBlocks(9, 0n, 1)).toThrow(/nsid must be an active namespace/);
    expect(() => ctrl.readBlocks(2, 16383n, 2)).toThrow(/slba \+ nlb must be <=/);
    expect(() => ctrl.writeBlocks(1, 0n, new Uint8Array(100))).toThrow(/multiple of the block size 512/);
    expect(() => ctrl.execute(new Uint8Array(63))).toThrow(/sqe must be 64 bytes/);
  });

  it('the pci config names a bad nvme field', () => {
    const bad = (nvme: unknown) => () => createMachine({ ramBytes: 1 * GiB, pci: nvmePci(nvme as typeof NVME_DEFAULT) });
    expect(bad({ sgls: 1, mdts: 0, namespaces: [] })).toThrow(/pci\[3\] \(nvme0\)\.nvme\.sgls is required: a boolean, got 1/);
    expect(bad({ sgls: true, mdts: -1, namespaces: [] })).toThrow(/\.nvme\.mdts must be an integer in \[0, 40\]/);
    expect(bad({ sgls: true, mdts: 0, namespaces: [] })).toThrow(/\.nvme\.namespaces is required/);
    expect(bad({ sgls: true, mdts: 0, namespaces: [{ nsid: 1, bytes: 1000, lbaBytes: 512 }] }))
      .toThrow(/\.nvme\.namespaces\[0\]\.bytes must be a positive safe integer, a multiple of lbaBytes \(512\), got 1000/);
    expect(bad({ sgls: true, mdts: 0, namespaces: [{ nsid: 1, bytes: 4096, lbaBytes: 768 }] })).toThrow(/namespaces\[0\]\.lbaBytes must be a power of two/);
    expect(bad({ sgls: true, mdts: 0, namespaces: [{ nsid: 1, bytes: 4096, lbaBytes: 512 }, { nsid: 1, bytes: 4096, lbaBytes: 512 }] }))
      .toThrow(/namespaces\[1\]\.nsid duplicates an earlier namespace/);
    expect(bad({ sgls: true, mdts: 0, namespaces: [{ nsid: 0, bytes: 4096, lbaBytes: 512 }] })).toThrow(/namespaces\[0\]\.nsid must be an integer in \[1, 4294967294\]/);
    expect(bad({ sgls: true, mdts: 0, extra: 1, namespaces: [{ nsid: 1, bytes: 4096, lbaBytes: 512 }] })).toThrow(/\.nvme\.extra is not an NVMe controller field/);
    expect(() => createMachine({ ramBytes: 1 * GiB, pci: [{ name: 'hb0', type: 'host-bridge', vendor: 1, device: 1, nvme: NVME_DEFAULT } as never] }))
      .toThrow(/pci\[0\] \(hb0\)\.nvme is not a field of a host-bridge node/);
  });
});

for (const mode of ['direct', 'strict'] as const) {
  describe(`NVMe controller on a ${mode === 'direct' ? 'dma-direct' : 'strict-IOMMU'} machine: bytes move both ways`, () => {
    it('PRP1 alone, with an offset: a 1 KiB write and read back', () => {
      const { host, ctrl } = setup(mode);
      const p = host.page();
      const data = bytesOf(1024, 1);
      const a = host.put(p + 0x200n, data);
      expect(ctrl.execute(buildSqe({ opcode: WRITE, nsid: 1, prp1: a, slba: 10n, nlb: 1, cid: 7 }))).toEqual({ status: 0, cid: 7, dnr: false });
      expect(bytesDiff(ctrl.readBlocks(1, 10n, 2), data)).toBeNull();
      const q = host.page();
      const b = host.mapData(q + 0x404n, 1024, false);
      expect(ctrl.execute(buildSqe({ opcode: READ, nsid: 1, prp1: b, slba: 10n, nlb: 1 })).status).toBe(0);
      expect(bytesDiff(host.m.mem.read(q + 0x404n, 1024), data)).toBeNull();
      expect(host.m.mem.read(q + 0x400n, 4)).toEqual(new Uint8Array(4).fill(0xee)); // nothing outside
      expect(host.m.stats.nvmeCtrlDataBytes).toBe(2048);
      expect(host.m.stats.nvmeCtrlDescriptorLists).toBe(0);
    });

    it('PRP1 + PRP2 as the second page (no list): 6 KiB from an offset of 0x800', () => {
      const { host, ctrl } = setup(mode);
      const p1 = host.page(); const p2 = host.page();
      const data = bytesOf(0x1800, 2);
      const a1 = host.put(p1 + 0x800n, data.subarray(0, 0x800));
      const a2 = host.put(p2, data.subarray(0x800));
      expect(ctrl.execute(buildSqe({ opcode: WRITE, nsid: 1, prp1: a1, prp2: a2, nlb: 11 })).status).toBe(0);
      expect(bytesDiff(ctrl.readBlocks(1, 0n, 12), data)).toBeNull();
      expect(host.m.stats.nvmeCtrlDescriptorLists).toBe(0);
    });

    it('a PRP list at an offset inside its page (small-pool style): 5 pages', () => {
      const { host, ctrl } = setup(mode);
      const data = bytesOf(5 * PAGE, 3);
      const pages = [0, 1, 2, 3, 4].map(() => host.page());
      const addrs = pages.map((p, i) => host.put(p, data.subarray(i * PAGE, (i + 1) * PAGE)));
      const lp = host.page();
      const list = host.put(lp + 0x100n, u64s(addrs.slice(1)));
      expect(ctrl.execute(buildSqe({ opcode: WRITE, nsid: 2, prp1: addrs[0], prp2: list, slba: 3n, nlb: 4 })).status).toBe(0);
      expect(bytesDiff(ctrl.readBlocks(2, 3n, 5), data)).toBeNull();
      expect(host.m.stats.nvmeCtrlDescriptorLists).toBe(1);
      expect(host.m.stats.nvmeCtrlDescriptorBytes).toBe(32);
      // read back into other pages: a list of 2 slots at 0xff0 (one entry, then a link to the other 3)
      const back = [0, 1, 2, 3, 4].map(() => host.page());
      const ba = back.map((p) => host.mapData(p, PAGE, false));
      const tail = host.put(host.page(), u64s(ba.slice(2)));
      const head = host.put(host.page() + 0xff0n, u64s([ba[1]!, tail]));
      expect(ctrl.execute(buildSqe({ opcode: READ, nsid: 2, prp1: ba[0], prp2: head, slba: 3n, nlb: 4 })).status).toBe(0);
      expect(bytesDiff(concat(back.map((p) => host.m.mem.read(p, PAGE))), data)).toBeNull();
      expect(host.m.stats.nvmeCtrlDescriptorLists).toBe(3);
      expect(host.m.stats.nvmeCtrlDescriptorBytes).toBe(32 + 16 + 24);
    });

    it('513 pages: PRP1 + one full list page of 512 entries, no link; 514 pages: the 512th entry links to a second list', () => {
      for (const n of [513, 514]) {
        const { host, ctrl } = setup(mode);
        const data = bytesOf(n * PAGE, n);
        const chunk = host.page(10); // 1024 contiguous pages, mapped page by page
        const addrs: bigint[] = [];
        for (let i = 0; i < n; i++) addrs.push(host.put(chunk + BigInt(i * PAGE), data.subarray(i * PAGE, (i + 1) * PAGE)));
        const l1 = host.page(); const l2 = host.page();
        let prp2: bigint;
        if (n === 513) {
          prp2 = host.put(l1, u64s(addrs.slice(1)));
        } else {
          const second = host.put(l2, u64s(addrs.slice(512)));
          prp2 = host.put(l1, u64s([...addrs.slice(1, 512), second]));
        }
        expect(ctrl.execute(buildSqe({ opcode: WRITE, nsid: 2, prp1: addrs[0], prp2, nlb: n - 1 })).status).toBe(0);
        expect(bytesDiff(ctrl.readBlocks(2, 0n, n), data)).toBeNull();
        expect(host.m.stats.nvmeCtrlDescriptorLists).toBe(n === 513 ? 1 : 2);
        expect(host.m.stats.nvmeCtrlDescriptorBytes).toBe(n === 513 ? 4096 : 4096 + 16);
      }
    });

    it('SGL: one inline Data Block; a Last Segment list; a Segment chaining to a Last Segment', () => {
      const { host, ctrl } = setup(mode);
      const data = bytesOf(3000, 4);
      // inline
      const a = host.put(host.page(1) + 0x7n, data.subarray(0, 1536));
      expect(ctrl.execute(buildSqe({ opcode: WRITE, psdt: 1, nsid: 1, sgl: { addr: a, len: 1536, type: DATA }, slba: 0n, nlb: 2 })).status).toBe(0);
      expect(bytesDiff(ctrl.readBlocks(1, 0n, 3), data.subarray(0, 1536))).toBeNull();
      // last segment: three pieces of odd sizes at odd offsets
      const cuts = [0, 100, 1001, 1536];
      const descs = cuts.slice(1).map((end, i) => sglDesc(host.put(host.page() + BigInt(13 * i + 1), data.subarray(cuts[i], end)), end - cuts[i]!, DATA));
      const seg = host.put(host.page() + 0x30n, concat(descs));
      expect(ctrl.execute(buildSqe({ opcode: WRITE, psdt: 1, nsid: 1, sgl: { addr: seg, len: 48, type: LAST }, slba: 3n, nlb: 2 })).status).toBe(0);
      expect(bytesDiff(ctrl.readBlocks(1, 3n, 3), data.subarray(0, 1536))).toBeNull();
      expect(host.m.stats.nvmeCtrlDescriptorLists).toBe(1);
      expect(host.m.stats.nvmeCtrlDescriptorBytes).toBe(48);
      // read 1536 bytes back through Segment -> Last Segment, with a zero-length Data Block inside
      const outs = [host.page(), host.page(), host.page()];
      const d0 = host.mapData(outs[0]! + 5n, 700, false);
      const d1 = host.mapData(outs[1]!, 800, false);
      const d2 = host.mapData(outs[2]! + 4000n, 36, false);
      const last = host.put(host.page(), concat([sglDesc(d1, 800, DATA), sglDesc(d2, 36, DATA)]));
      const first = host.put(host.page(), concat([sglDesc(d0, 700, DATA), sglDesc(0n, 0, DATA), sglDesc(last, 32, LAST)]));
      expect(ctrl.execute(buildSqe({ opcode: READ, psdt: 1, nsid: 1, sgl: { addr: first, len: 48, type: SEG }, slba: 3n, nlb: 2 })).status).toBe(0);
      const got = concat([host.m.mem.read(outs[0]! + 5n, 700), host.m.mem.read(outs[1]!, 800), host.m.mem.read(outs[2]! + 4000n, 36)]);
      expect(bytesDiff(got, data.subarray(0, 1536))).toBeNull();
      expect(host.m.stats.nvmeCtrlDescriptorLists).toBe(3);
    });

    it('Flush succeeds on an active namespace and on NSID FFFFFFFFh, moving nothing', () => {
      const { host, ctrl } = setup(mode);
      expect(ctrl.execute(buildSqe({ opcode: 0, nsid: 1, nlb: 0 })).status).toBe(0);
      expect(ctrl.execute(buildSqe({ opcode: 0, nsid: 0xffffffff, nlb: 0 })).status).toBe(0);
      expect(ctrl.execute(buildSqe({ opcode: 0, nsid: 5, nlb: 0 })).status).toBe(S.INVALID_NAMESPACE);
      expect(host.m.stats.nvmeCtrlDataBytes).toBe(0);
    });
  });
}

describe('NVMe controller: a chained PRP list read back across pages is exact', () => {
  it('a list page with 2 slots at offset 0xff0: entry, link; the linked list holds the rest', () => {
    const { host, ctrl } = setup('strict');
    const data = bytesOf(4 * PAGE, 9);
    ctrl.writeBlocks(2, 0n, data);
    const out = [0, 1, 2, 3].map(() => host.page());
    const a = out.map((p) => host.mapData(p, PAGE, false));
    const tail = host.put(host.page(), u64s([a[2]!, a[3]!]));
    const head = host.put(host.page() + 0xff0n, u64s([a[1]!, tail]));
    expect(ctrl.execute(buildSqe({ opcode: READ, nsid: 2, prp1: a[0], prp2: head, nlb: 3 })).status).toBe(0);
    expect(bytesDiff(concat(out.map((p) => host.m.mem.read(p, PAGE))), data)).toBeNull();
    expect(host.m.stats.nvmeCtrlDescriptorLists).toBe(2);
    expect(host.m.stats.nvmeCtrlDescriptorBytes).toBe(16 + 16);
  });
});

/**
 * Runs a malformed command: its status is as expected and no byte moved (the namespace, every
 * watched host range and the data counters are unchanged).
 */
function expectRefused(host: TestHost, ctrl: NvmeController, sqe: Uint8Array, status: number,
  watch: Array<[bigint, number]>, ns: Array<[number, bigint, number]> = [[1, 0n, 64]]): void {
  const hostBefore = watch.map(([p, l]) => host.m.mem.read(p, l));
  const nsBefore = ns.map(([id, s, n]) => ctrl.readBlocks(id, s, n));
  const moved = host.m.stats.nvmeCtrlDataBytes;
  const c = ctrl.execute(sqe);
  expect(nvmeCtrlStatusName(c.status)).toBe(nvmeCtrlStatusName(status));
  expect(c.dnr).toBe(true);
  watch.forEach(([p, l], i) => expect(bytesDiff(host.m.mem.read(p, l), hostBefore[i]!)).toBeNull());
  ns.forEach(([id, s, n], i) => expect(bytesDiff(ctrl.readBlocks(id, s, n), nsBefore[i]!)).toBeNull());
  expect(host.m.stats.nvmeCtrlDataBytes).toBe(moved);
}

for (const mode of ['direct', 'strict'] as const) {
  describe(`NVMe controller (${mode}): malformed commands get the controller's status and move no byte`, () => {
    /** A host with 4 data pages (pattern, mapped both ways) and namespace 1 pre-filled. */
    function bed(nvme = NVME_DEFAULT) {
      const { host, ctrl } = setup(mode, nvme);
      ctrl.writeBlocks(1, 0n, bytesOf(64 * 512, 77));
      const pages = [0, 1, 2, 3].map((i) => { const p = host.page(); host.m.mem.write(p, bytesOf(PAGE, 100 + i)); return p; });
      const da = pages.map((p) => host.map(p, PAGE, 0 /* DMA_BIDIRECTIONAL */));
      const watch: Array<[bigint, number]> = pages.map((p) => [p, PAGE]);
      return { host, ctrl, pages, da, watch };
    }

    for (const op of [WRITE, READ]) {
      const w = op === WRITE ? 'Write' : 'Read';
      it(`${w}: PRP1 not dword-aligned -> PRP Offset Invalid (0x13)`, () => {
        const { host, ctrl, da, watch } = bed();
        expectRefused(host, ctrl, buildSqe({ opcode: op, nsid: 1, prp1: da[0]! + 2n, nlb: 0 }), S.PRP_OFFSET_INVALID, watch);
      });
      it(`${w}: PRP2 as the second page with an offset -> PRP Offset Invalid`, () => {
        const { host, ctrl, da, watch } = bed();
        expectRefused(host, ctrl, buildSqe({ opcode: op, nsid: 1, prp1: da[0], prp2: da[1]! + 8n, nlb: 15 }), S.PRP_OFFSET_INVALID, watch);
      });
      it(`${w}: a PRP list entry with an offset (the last one) -> PRP Offset Invalid`, () => {
        const { host, ctrl, da, watch } = bed();
        const list = host.put(host.page(), u64s([da[1]!, da[2]!, da[3]! + 0x200n]));
        expectRefused(host, ctrl, buildSqe({ opcode: op, nsid: 1, prp1: da[0], prp2: list, nlb: 31 }), S.PRP_OFFSET_INVALID, watch);
      });
      it(`${w}: a PRP list link with an offset -> PRP Offset Invalid`, () => {
        const { host, ctrl, da, watch } = bed();
        const tail = host.put(host.page(), u64s([da[2]!, da[3]!]));
        const head = host.put(host.page() + 0xff0n, u64s([da[1]!, tail + 8n]));
        expectRefused(host, ctrl, buildSqe({ opcode: op, nsid: 1, prp1: da[0], prp2: head, nlb: 31 }), S.PRP_OFFSET_INVALID, watch);
      });
      it(`${w}: a PRP list pointer not qword-aligned -> PRP Offset Invalid`, () => {
        const { host, ctrl, da, watch } = bed();
        const list = host.put(host.page(), u64s([0n, da[1]!, da[2]!]));
        expectRefused(host, ctrl, buildSqe({ opcode: op, nsid: 1, prp1: da[0], prp2: list + 4n, nlb: 23 }), S.PRP_OFFSET_INVALID, watch);
      });
      it(`${w}: SGL1 of an unsupported type (Bit Bucket 1h, Keyed 4h, sub type 1h) -> SGL Descriptor Type Invalid (0x11)`, () => {
        const { host, ctrl, da, watch } = bed();
        for (const type of [0x10, 0x40, 0x01, 0x21]) {
          expectRefused(host, ctrl, buildSqe({ opcode: op, psdt: 1, nsid: 1, sgl: { addr: da[0]!, len: 512, type }, nlb: 0 }), S.SGL_DESCRIPTOR_TYPE_INVALID, watch);
        }
      });
      it(`${w}: a Bit Bucket descriptor inside a segment -> SGL Descriptor Type Invalid, after valid data descriptors`, () => {
        const { host, ctrl, da, watch } = bed();
        const seg = host.put(host.page(), concat([sglDesc(da[0]!, 512, DATA), sglDesc(0n, 512, 0x10)]));
        expectRefused(host, ctrl, buildSqe({ opcode: op, psdt: 1, nsid: 1, sgl: { addr: seg, len: 32, type: LAST }, nlb: 1 }), S.SGL_DESCRIPTOR_TYPE_INVALID, watch);
      });
      it(`${w}: a (Last) Segment descriptor of length 0 or not a multiple of 16 -> Invalid SGL Segment Descriptor (0x0D)`, () => {
        const { host, ctrl, da, watch } = bed();
        const seg = host.put(host.page(), concat([sglDesc(da[0]!, 512, DATA), sglDesc(da[1]!, 512, DATA)]));
        for (const [len, type] of [[0, LAST], [24, LAST], [0, SEG], [20, SEG]] as const) {
          expectRefused(host, ctrl, buildSqe({ opcode: op, psdt: 1, nsid: 1, sgl: { addr: seg, len, type }, nlb: 1 }), S.INVALID_SGL_SEGMENT_DESCRIPTOR, watch);
        }
      });
      it(`${w}: the segment of a Last Segment descriptor ending in a Segment descriptor -> Invalid SGL Segment Descriptor`, () => {
        const { host, ctrl, da, watch } = bed();
        const next = host.put(host.page(), sglDesc(da[1]!, 512, DATA));
        const seg = host.put(host.page(), concat([sglDesc(da[0]!, 512, DATA), sglDesc(next, 16, LAST)]));
        expectRefused(host, ctrl, buildSqe({ opcode: op, psdt: 1, nsid: 1, sgl: { addr: seg, len: 32, type: LAST }, nlb: 1 }), S.INVALID_SGL_SEGMENT_DESCRIPTOR, watch);
      });
      it(`${w}: a Segment descriptor that is not last in its segment -> Invalid Number of SGL Descriptors (0x0E)`, () => {
        const { host, ctrl, da, watch } = bed();
        const next = host.put(host.page(), sglDesc(da[1]!, 512, DATA));
        const seg = host.put(host.page(), concat([sglDesc(next, 16, LAST), sglDesc(da[0]!, 512, DATA)]));
        expectRefused(host, ctrl, buildSqe({ opcode: op, psdt: 1, nsid: 1, sgl: { addr: seg, len: 32, type: SEG }, nlb: 1 }), S.INVALID_NUMBER_OF_SGL_DESCRIPTORS, watch);
      });
      it(`${w}: Data Blocks short of or beyond the transfer length -> Data SGL Length Invalid (0x0F)`, () => {
        const { host, ctrl, da, watch } = bed();
        expectRefused(host, ctrl, buildSqe({ opcode: op, psdt: 1, nsid: 1, sgl: { addr: da[0]!, len: 511, type: DATA }, nlb: 0 }), S.DATA_SGL_LENGTH_INVALID, watch);
        expectRefused(host, ctrl, buildSqe({ opcode: op, psdt: 1, nsid: 1, sgl: { addr: da[0]!, len: 513, type: DATA }, nlb: 0 }), S.DATA_SGL_LENGTH_INVALID, watch);
        const short = host.put(host.page(), concat([sglDesc(da[0]!, 512, DATA), sglDesc(da[1]!, 511, DATA)]));
        expectRefused(host, ctrl, buildSqe({ opcode: op, psdt: 1, nsid: 1, sgl: { addr: short, len: 32, type: LAST }, nlb: 1 }), S.DATA_SGL_LENGTH_INVALID, watch);
        const long = host.put(host.page(), concat([sglDesc(da[0]!, 512, DATA), sglDesc(da[1]!, 512, DATA), sglDesc(da[2]!, 1, DATA)]));
        expectRefused(host, ctrl, buildSqe({ opcode: op, psdt: 1, nsid: 1, sgl: { addr: long, len: 48, type: LAST }, nlb: 1 }), S.DATA_SGL_LENGTH_INVALID, watch);
      });
      it(`${w}: a Segment that moves nothing and points at itself -> Invalid SGL Segment Descriptor (no endless walk)`, () => {
        const { host, ctrl, da, watch } = bed();
        const p = host.page();
        const self = host.map(p, 32, DMA_TO_DEVICE);
        host.m.mem.write(p, concat([sglDesc(0n, 0, DATA), sglDesc(self, 32, SEG)]));
        expectRefused(host, ctrl, buildSqe({ opcode: op, psdt: 1, nsid: 1, sgl: { addr: self, len: 32, type: SEG }, nlb: 0 }), S.INVALID_SGL_SEGMENT_DESCRIPTOR, watch);
        void da;
      });
      it(`${w}: PSDT 11b, FUSE set, or an SGL on a controller without SGL support -> Invalid Field in Command (0x02)`, () => {
        const { host, ctrl, da, watch } = bed();
        expectRefused(host, ctrl, buildSqe({ opcode: op, psdt: 3, nsid: 1, prp1: da[0], nlb: 0 }), S.INVALID_FIELD, watch);
        expectRefused(host, ctrl, buildSqe({ opcode: op, fuse: 1, nsid: 1, prp1: da[0], nlb: 0 }), S.INVALID_FIELD, watch);
        const noSgl = bed({ ...NVME_DEFAULT, sgls: false });
        expectRefused(noSgl.host, noSgl.ctrl, buildSqe({ opcode: op, psdt: 1, nsid: 1, sgl: { addr: noSgl.da[0]!, len: 512, type: DATA }, nlb: 0 }),
          S.INVALID_FIELD, noSgl.watch);
      });
      it(`${w}: a transfer over MDTS -> Invalid Field in Command; at MDTS it runs`, () => {
        const { host, ctrl, da, watch } = bed({ ...NVME_DEFAULT, mdts: 1 }); // 8 KiB
        const list = host.put(host.page(), u64s([da[1]!, da[2]!]));
        expectRefused(host, ctrl, buildSqe({ opcode: op, nsid: 1, prp1: da[0], prp2: list, nlb: 16 }), S.INVALID_FIELD, watch);
        expect(ctrl.execute(buildSqe({ opcode: op, nsid: 1, prp1: da[0], prp2: da[1], nlb: 15 })).status).toBe(0);
      });
      it(`${w}: an inactive NSID -> Invalid Namespace or Format (0x0B); beyond the namespace -> LBA Out of Range (0x80)`, () => {
        const { host, ctrl, da, watch } = bed();
        for (const nsid of [0, 3, 0xffffffff]) expectRefused(host, ctrl, buildSqe({ opcode: op, nsid, prp1: da[0], nlb: 0 }), S.INVALID_NAMESPACE, watch);
        expectRefused(host, ctrl, buildSqe({ opcode: op, nsid: 2, prp1: da[0], slba: 16383n, nlb: 1 }), S.LBA_OUT_OF_RANGE, watch, [[2, 16382n, 2]]);
        expectRefused(host, ctrl, buildSqe({ opcode: op, nsid: 2, prp1: da[0], slba: 2n ** 64n - 1n, nlb: 0 }), S.LBA_OUT_OF_RANGE, watch, [[2, 0n, 1]]);
        expect(ctrl.execute(buildSqe({ opcode: op, nsid: 2, prp1: da[0], slba: 16383n, nlb: 0 })).status).toBe(0);
      });
    }

    it('an unknown opcode -> Invalid Command Opcode (0x01)', () => {
      const { host, ctrl, da, watch } = bed();
      for (const opcode of [0x03, 0x7f, 0x80]) expectRefused(host, ctrl, buildSqe({ opcode, nsid: 1, prp1: da[0], nlb: 0 }), S.INVALID_OPCODE, watch);
    });

    it('counters: every command counts, errors count apart', () => {
      const { host, ctrl, da } = bed();
      const before = host.m.stats.snapshot();
      ctrl.execute(buildSqe({ opcode: READ, nsid: 1, prp1: da[0], nlb: 0 }));
      ctrl.execute(buildSqe({ opcode: READ, nsid: 9, prp1: da[0], nlb: 0 }));
      expect(host.m.stats.diff(before)).toMatchObject({ nvmeCtrlCommands: 2, nvmeCtrlErrors: 1, nvmeCtrlDataBytes: 512, nvmeCtrlDataTransfers: 1 });
    });
  });
}

describe('NVMe controller behind a strict IOMMU: DMA faults are Data Transfer Errors', () => {
  it('an unmapped PRP list page: 0x04, nothing moved, the fault is on the event log', () => {
    const { host, ctrl } = setup('strict');
    ctrl.writeBlocks(1, 0n, bytesOf(64 * 512, 5));
    const ps = [host.page(), host.page(), host.page()];
    const da = ps.map((p) => host.map(p, PAGE, 0));
    const lp = host.page();
    host.m.mem.write(lp, u64s([da[1]!, da[2]!]));
    // the list is never mapped: its physical address means nothing to the IOMMU
    const faults = host.m.events.count('FAULT');
    expectRefused(host, ctrl, buildSqe({ opcode: READ, nsid: 1, prp1: da[0], prp2: lp + 0x10000000n, nlb: 23 }),
      S.DATA_TRANSFER_ERROR, ps.map((p) => [p, PAGE] as [bigint, number]));
    expect(host.m.events.count('FAULT')).toBe(faults + 1);
  });

  it('a Write whose last data page is not mapped: 0x04 and the namespace is untouched', () => {
    const { host, ctrl } = setup('strict');
    const ps = [host.page(), host.page()];
    const a0 = host.map(ps[0]!, PAGE, DMA_TO_DEVICE);
    expectRefused(host, ctrl, buildSqe({ opcode: WRITE, nsid: 2, prp1: a0, prp2: a0 + 0x100000n, nlb: 1 }), S.DATA_TRANSFER_ERROR,
      [], [[2, 0n, 2]]);
  });

  it('a Read into a page mapped DMA_TO_DEVICE (read-only in the IOMMU): 0x04; pieces before the fault were written, as on hardware', () => {
    const { host, ctrl } = setup('strict');
    const data = bytesOf(2 * PAGE, 6);
    ctrl.writeBlocks(2, 0n, data);
    const p0 = host.page(); const p1 = host.page();
    const a0 = host.mapData(p0, PAGE, false);
    const a1 = host.map(p1, PAGE, DMA_TO_DEVICE);
    const c = ctrl.execute(buildSqe({ opcode: READ, nsid: 2, prp1: a0, prp2: a1, nlb: 1 }));
    expect(c.status).toBe(S.DATA_TRANSFER_ERROR);
    expect(bytesDiff(host.m.mem.read(p0, PAGE), data.subarray(0, PAGE))).toBeNull();
    expect(bytesDiff(host.m.mem.read(p1, PAGE), new Uint8Array(PAGE).fill(0xee))).toBeNull();
  });
});
