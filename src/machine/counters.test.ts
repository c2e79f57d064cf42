import { describe, expect, it } from 'vitest';
import { Stats, declareEventKinds, type EventKind } from '../base/index.ts';
import { Machine, createMachine } from './index.ts';

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

describe('event kinds declared by their layers', () => {
  it('the kinds declared at run time are exactly the EventKinds type\'s, and the machine lists its counters', () => {
    // a kind added to the type and not declared at run time fails here (the record must name every
    // key of the type, or the test does not compile)
    const typed: Record<EventKind, true> = {
      WARN: true, BUG: true, FAULT: true, INFO: true, 'DMA-DEBUG': true, 'MODEL-CHECK': true, CACHE: true, 'FAULT-INJECT': true,
    };
    expect([...Machine.eventKinds()].sort()).toEqual(Object.keys(typed).sort());
    expect(Machine.counterNames()).toEqual(Stats.layers().flatMap((l) => l.names));
    expect(Machine.counterNames()).toContain('iommuMapCalls');
    expect(() => declareEventKinds('test', ['WARN'])).toThrow(/event kind WARN of test is already declared/);
  });
});

