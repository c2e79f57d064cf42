import { describe, expect, it } from 'vitest';
import { SlotKey, Slots } from './slots.ts';

describe('Slots', () => {
  it('keeps one value per key, typed, and lists what is stored by key name', () => {
    const a = new SlotKey<number>('layer-a');
    const b = new SlotKey<{ x: string }>('layer-b');
    const s = new Slots();
    expect(s.get(a)).toBeUndefined();
    s.set(a, 3);
    expect(s.get(a)).toBe(3);
    expect(s.getOrCreate(b, () => ({ x: 'made' })).x).toBe('made');
    expect(s.getOrCreate(b, () => ({ x: 'again' })).x).toBe('made');
    expect(s.list()).toEqual([{ name: 'layer-a', value: 3 }, { name: 'layer-b', value: { x: 'made' } }]);
    s.delete(a);
    expect(s.get(a)).toBeUndefined();
    expect(s.list().map((e) => e.name)).toEqual(['layer-b']);
  });
  it('keeps holders apart', () => {
    const k = new SlotKey<string>('k');
    const s1 = new Slots();
    const s2 = new Slots();
    s1.set(k, 'one');
    expect(s2.get(k)).toBeUndefined();
  });
  it('refuses a nameless key', () => {
    expect(() => new SlotKey('')).toThrow(/name must be a non-empty string/);
  });
});
