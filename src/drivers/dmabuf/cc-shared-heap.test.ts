import { describe, expect, it } from 'vitest';
import { GiB, KiB } from '../../base/index.ts';
import { DMA_ATTR_CC_SHARED, DMA_BIT_MASK, DMA_TO_DEVICE, dmaSetMask } from '../../dma/index.ts';
import { ccStateOf } from '../../dma/internal.ts';
import { pattern, smallMachine } from '../../../test/fixtures/dma-machines.ts';
import { dmaBufAttach, dmaBufDetach, dmaBufMapAttachmentUnlocked, dmaBufPut, dmaBufUnmapAttachmentUnlocked } from './dma-buf.ts';
import { systemHeapAlloc } from './system-heap.ts';

describe('system_cc_shared dma-buf heap (7.1 "dma-buf: heaps: system: add system_cc_shared heap")', () => {
  it('exists only in a CC guest; its pages are shared, mapped with CC_SHARED (no bounce), re-encrypted at release', () => {
    expect(systemHeapAlloc(smallMachine(), 64 * KiB, 'system_cc_shared')).toMatchObject({ ok: false, errno: 'ENODEV' });
    const m = smallMachine({ cc: { kind: 'sev-snp' }, ramBytes: 2 * GiB });
    const dev = m.device('nvme0');
    dmaSetMask(dev, DMA_BIT_MASK(64));
    const before = ccStateOf(m)!.sharedPages;
    const b = systemHeapAlloc(m, 64 * KiB, 'system_cc_shared');
    expect(b.ok).toBe(true);
    const buf = b.ok ? b.value : null!;
    expect(ccStateOf(m)!.sharedPages).toBe(before + 16);
    const pages = (buf.priv as { pages: { addrAt(i: number): bigint } }).pages;
    const data = pattern(4096, 11);
    m.mem.write(pages.addrAt(0), data);
    const att = dmaBufAttach(buf, dev);
    expect(att.ok).toBe(true);
    const a = att.ok ? att.value : null!;
    const mp = dmaBufMapAttachmentUnlocked(a, DMA_TO_DEVICE);
    expect(mp.ok).toBe(true);
    expect(m.stats.swiotlbMaps).toBe(0);
    const addr = mp.ok ? mp.value.addrAt(0) : 0n;
    const seen = dev.dmaRead(addr, 4096);
    expect(seen.ok && seen.value).toEqual(data);
    expect(m.dmaDebug.entries().every((e) => (e.attrs & DMA_ATTR_CC_SHARED) !== 0)).toBe(true);
    if (mp.ok) dmaBufUnmapAttachmentUnlocked(a, mp.value, DMA_TO_DEVICE);
    dmaBufDetach(buf, a);
    dmaBufPut(buf);
    expect(ccStateOf(m)!.sharedPages).toBe(before);
    expect(m.dmaDebug.errorCount).toBe(0);
    // the plain system heap in the same guest: private pages, bounced through the decrypted pool
    const p = systemHeapAlloc(m, 16 * KiB);
    expect(p.ok).toBe(true);
    expect(ccStateOf(m)!.sharedPages).toBe(before);
  });
});
