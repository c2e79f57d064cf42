import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { makeMachine } from '../../../test/fixtures/dma-b-machines.ts';
import { unwrap } from '../../base/index.ts';
import { dmaPoolCreate, type DmaPool } from '../../dma/index.ts';
import type { Machine } from '../../machine/index.ts';
import { sglBuild, sglEntries, sglFree, type SglHooks } from './index.ts';

/** A toy format: 8-byte entries (addr u32, len u32), 4 per list block, link = addr with len 0. */
function toyHooks(pool: DmaPool, split: 'page' | 'extent', inlineEntries = 2, inlineBeforeList = 1): SglHooks {
  return {
    name: 'toy', entrySize: 8, split, pageSize: 4096, maxEntryLen: 1000, inlineEntries, inlineBeforeList, entriesPerList: 4,
    encodeData: (v, off, addr, len, last) => { v.setUint32(off, Number(addr), true); v.setUint32(off + 4, last ? len | 0x80000000 : len, true); },
    encodeLink: (v, off, next, n) => { v.setUint32(off, Number(next), true); v.setUint32(off + 4, 0x40000000 | n, true); },
    poolFor: () => pool,
  };
}

function setup(): { m: Machine; pool: DmaPool } {
  const m = makeMachine('none');
  return { m, pool: unwrap(dmaPoolCreate('toy', m.device('nvme0'), 32, 32, 0)) };
}

describe('sglEntries: segments to entries', () => {
  it('page mode: the first entry keeps its offset, the others are whole pages, the last may be short', () => {
    const { pool } = setup();
    const e = unwrap(sglEntries(toyHooks(pool, 'page'), [{ addr: 0x10f00n, len: 0x100 + 0x2000 + 0x10 }]));
    expect(e.addrs).toEqual([0x10f00n, 0x11000n, 0x12000n, 0x13000n]);
    expect(e.lens).toEqual([0x100, 0x1000, 0x1000, 0x10]);
  });

  it('page mode refuses a segment ending inside a page before more data, and one starting inside a page after the first', () => {
    const { pool } = setup();
    const h = toyHooks(pool, 'page');
    expect(sglEntries(h, [{ addr: 0x1000n, len: 0x800 }, { addr: 0x5000n, len: 0x1000 }])).toMatchObject({ ok: false, errno: 'EINVAL' });
    expect(sglEntries(h, [{ addr: 0x1000n, len: 0x1000 }, { addr: 0x5200n, len: 0x100 }])).toMatchObject({ ok: false, errno: 'EINVAL' });
    // a first segment may start anywhere, a last one end anywhere
    expect(sglEntries(h, [{ addr: 0x1800n, len: 0x800 }, { addr: 0x5000n, len: 0x10 }]).ok).toBe(true);
  });

  it('extent mode cuts at maxEntryLen and ignores pages', () => {
    const { pool } = setup();
    const e = unwrap(sglEntries(toyHooks(pool, 'extent'), [{ addr: 0xff0n, len: 2500 }, { addr: 0x9000n, len: 3 }]));
    expect(e.addrs).toEqual([0xff0n, 0xff0n + 1000n, 0xff0n + 2000n, 0x9000n]);
    expect(e.lens).toEqual([1000, 1000, 500, 3]);
  });
});

describe('sglBuild: inline, list, chaining', () => {
  it('fits inline: no list block is taken', () => {
    const { m, pool } = setup();
    const b = unwrap(sglBuild(m.device('nvme0'), toyHooks(pool, 'page'), [{ addr: 0x10800n, len: 0x1000 }]));
    expect(b.list).toBeNull();
    expect(b.inline).toEqual([{ addr: 0x10800n, len: 0x800 }, { addr: 0x11000n, len: 0x800 }]);
    expect(pool.nrActive).toBe(0);
  });

  it('exactly one full block needs no link (4 list entries); one more chains 3 + link, then 2', () => {
    const { m, pool } = setup();
    const dev = m.device('nvme0');
    const h = toyHooks(pool, 'page');
    const five = unwrap(sglBuild(dev, h, [{ addr: 0x100000n, len: 5 * 4096 }]));
    expect(five.blocks.map((b) => b.entries)).toEqual([4]);
    expect(five.inline).toEqual([{ addr: 0x100000n, len: 4096 }]);
    const bytes = m.mem.read(five.blocks[0].cpuPhys, 32);
    const v = new DataView(bytes.buffer);
    expect([0, 1, 2, 3].map((i) => v.getUint32(i * 8, true))).toEqual([0x101000, 0x102000, 0x103000, 0x104000]);
    expect(v.getUint32(3 * 8 + 4, true)).toBe(0x80001000); // the last data entry is marked
    sglFree(five.blocks);
    const six = unwrap(sglBuild(dev, h, [{ addr: 0x100000n, len: 6 * 4096 }]));
    expect(six.blocks.map((b) => b.entries)).toEqual([4, 2]);
    const b0 = new DataView(m.mem.read(six.blocks[0].cpuPhys, 32).buffer);
    expect(b0.getUint32(24, true)).toBe(Number(six.blocks[1].dmaAddr));
    expect(b0.getUint32(28, true)).toBe(0x40000002);
    const b1 = new DataView(m.mem.read(six.blocks[1].cpuPhys, 16).buffer);
    expect([b1.getUint32(0, true), b1.getUint32(8, true)]).toEqual([0x104000, 0x105000]);
    expect(six.descriptorBytes).toBe(48);
    sglFree(six.blocks);
    expect(pool.nrActive).toBe(0);
  });

  it('without encodeLink more entries than a block holds is E2BIG, and nothing is taken', () => {
    const { m, pool } = setup();
    const h = { ...toyHooks(pool, 'extent', 1, 0), encodeLink: undefined };
    const r = sglBuild(m.device('nvme0'), h, [{ addr: 0n, len: 5000 }]);
    expect(r).toMatchObject({ ok: false, errno: 'E2BIG' });
    expect(pool.nrActive).toBe(0);
  });

  it('property: a walk of inline + chained blocks gives back the entries in order; blocks all freed', () => {
    fc.assert(fc.property(fc.array(fc.integer({ min: 1, max: 5000 }), { minLength: 1, maxLength: 30 }), (lens) => {
      const { m, pool } = setup();
      const h = toyHooks(pool, 'extent', 1, 0);
      let a = 0x200000;
      const segs = lens.map((len) => { const s = { addr: BigInt(a), len }; a += len + 64; return s; });
      const want = unwrap(sglEntries(h, segs));
      const b = unwrap(sglBuild(m.device('nvme0'), h, segs));
      const got: number[] = [];
      if (b.list === null) got.push(Number(b.inline[0].addr));
      else {
        let next: number | null = Number(b.list.dmaAddr);
        let n = b.list.entries;
        while (next !== null) {
          const v: DataView = new DataView(m.mem.read(BigInt(next), n * 8).buffer);
          next = null;
          for (let i = 0; i < n; i++) {
            const w = v.getUint32(i * 8 + 4, true);
            if (w & 0x40000000) { next = v.getUint32(i * 8, true); n = w & 0xffff; } else got.push(v.getUint32(i * 8, true));
          }
        }
      }
      expect(got).toEqual(want.addrs.map(Number));
      sglFree(b.blocks);
      expect(pool.nrActive).toBe(0);
    }), { numRuns: 60 });
  });
});
