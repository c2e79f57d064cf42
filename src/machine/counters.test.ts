import { describe, expect, it } from 'vitest';
import { Stats } from '../base/index.ts';
import { createMachine } from './index.ts';

describe('counters declared by their layers', () => {
  it('every layer that counts declares its counters once, and a machine carries them all at 0', () => {
    const layers = Stats.layers().map((l) => l.layer);
    for (const l of ['mm', 'pci', 'iommu', 'dma']) expect(layers).toContain(l);
    const m = createMachine({ ramBytes: 1 << 30 });
    const snap = m.stats.snapshot();
    const all = Stats.layers().flatMap((l) => l.names);
    expect(new Set(all).size).toBe(all.length);
    for (const n of all) expect(snap[n], n).toBe(0);
  });
});
