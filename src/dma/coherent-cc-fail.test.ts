// Failed page conversions under dma_alloc_coherent / dma_free_coherent in a confidential-computing
// guest (kernel/dma/direct.c: dma_direct_alloc()'s out_leak_pages, dma_direct_free() after a failed
// dma_set_encrypted()). The model's set_memory_* fail only for a range that is not RAM, which a
// coherent allocation never is, so this file swaps in versions that fail on demand.
import { describe, expect, it, vi } from 'vitest';
import { err } from '../base/index.ts';
import { DMA_BIT_MASK } from './constants.ts';
import { ccStateOf } from './cc.ts';
import { dmaAllocCoherent, dmaCoherentAllocations, dmaFreeCoherent } from './coherent.ts';
import { dmaSetMaskAndCoherent } from './mask.ts';
import { smallMachine } from '../../test/fixtures/dma-machines.ts';

const fail = vi.hoisted(() => ({ decrypt: false, encrypt: false }));

vi.mock('./cc.ts', async (importOriginal) => {
  const real = await importOriginal<typeof import('./cc.ts')>();
  return {
    ...real,
    setMemoryDecrypted: (...a: Parameters<typeof real.setMemoryDecrypted>) =>
      fail.decrypt ? err('EIO', 'injected') : real.setMemoryDecrypted(...a),
    setMemoryEncrypted: (...a: Parameters<typeof real.setMemoryEncrypted>) =>
      fail.encrypt ? err('EIO', 'injected') : real.setMemoryEncrypted(...a),
  };
});

function guest() {
  const m = smallMachine({ cc: { kind: 'tdx' } });
  const dev = m.device('nvme0');
  expect(dmaSetMaskAndCoherent(dev, DMA_BIT_MASK(64)).ok).toBe(true);
  return { m, dev };
}

describe('dma-direct coherent memory whose encryption cannot be changed is leaked, never reused', () => {
  it('set_memory_decrypted fails: NULL, and the pages stay allocated (out_leak_pages)', () => {
    const { m, dev } = guest();
    const free0 = m.freePages;
    fail.decrypt = true;
    try {
      expect(dmaAllocCoherent(dev, 2 * 4096)).toMatchObject({ ok: false, errno: 'ENOMEM' });
    } finally {
      fail.decrypt = false;
    }
    // the order-1 block never goes back to the buddy allocator, and nothing is tracked for it
    expect(free0 - m.freePages).toBe(2);
    expect(dmaCoherentAllocations(dev)).toEqual([]);
    expect(m.dmaDebug.count(dev)).toBe(0);
    expect(m.stats.dmaCoherentAllocs).toBe(0);
  });

  it('set_memory_encrypted fails at free: "leaking DMA memory that can\'t be re-encrypted", the pages stay out', () => {
    const { m, dev } = guest();
    const free0 = m.freePages;
    const shared0 = ccStateOf(m)!.sharedPages;
    const r = dmaAllocCoherent(dev, 4096);
    expect(r.ok).toBe(true);
    const mem = r.ok ? r.value : { cpuPhys: 0n, dmaAddr: 0n };
    fail.encrypt = true;
    try {
      dmaFreeCoherent(dev, 4096, mem.cpuPhys, mem.dmaAddr);
    } finally {
      fail.encrypt = false;
    }
    const warns = m.events.list().filter((e) => /leaking DMA memory that can't be re-encrypted/.test(e.message));
    expect(warns).toHaveLength(1);
    expect(warns[0].data).toMatchObject({ level: 'warning' });
    // still shared, still allocated: a shared page must not reach the next user of the allocator
    expect(ccStateOf(m)!.sharedPages).toBe(shared0 + 1);
    expect(free0 - m.freePages).toBe(1);
    expect(dmaCoherentAllocations(dev)).toEqual([]);
    expect(m.dmaDebug.count(dev)).toBe(0);
    expect(m.stats.dmaCoherentFrees).toBe(0);
  });
});
