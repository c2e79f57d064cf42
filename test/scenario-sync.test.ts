// The sync step: what a driver syncs of a mapping, and only that.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseScenario, runScenario } from '../src/scenario/file/index.ts';
import { EXAMPLES_DIR } from './fixtures/examples.ts';

/** The p2p-topology example's machine and buffer (gpu0's P2P BAR beside nvme0 under a switch, nic0 behind another root port), with these steps. */
function p2p(...steps: string[]): ReturnType<typeof parseScenario> {
  const text = readFileSync(join(EXAMPLES_DIR, 'p2p-topology.yaml'), 'utf8');
  return parseScenario(`${text.slice(0, text.indexOf('\nsteps:'))}\nsteps:\n${steps.map((s) => `  - ${s}\n`).join('')}`);
}

describe('sync', () => {
  it('skips a P2P bus address: the DMA API never mapped it, so dma-debug has nothing to sync (blk_rq_dma_unmap skips it too)', () => {
    const res = runScenario(p2p(
      '{ op: mmap, buffer: vram }',
      '{ op: pin, name: p, buffer: vram, method: phyrs, len: 64KiB }',
      '{ op: map, name: bus, device: nvme0, pin: p, method: phys }',
      '{ op: sync, mapping: bus, for: cpu }',
      '{ op: map, name: mmio, device: nic0, pin: p, method: phys }',
      '{ op: sync, mapping: mmio, for: device }',
      '{ op: map, name: ubus, device: nvme0, buffer: vram, len: 64KiB, method: phys }',
      '{ op: sync, mapping: ubus, for: device }',
    ));
    expect(res.ok).toBe(true);
    for (const i of [3, 5, 7]) expect(res.steps[i].events).toEqual([]);
    expect(res.steps[3].summary).toBe('dma_sync_single_for_cpu bus (0 segments; 1 P2P bus address not synced (not mapped by the DMA API))');
    expect(res.steps[3].counters).toEqual({});
    // through the host bridge the range was mapped (DMA_ATTR_MMIO): it is synced
    expect(res.steps[5].summary).toBe('dma_sync_single_for_device mmio (1 segment)');
    expect(res.steps[7].summary).toBe('dma_sync_single_for_device ubus (0 segments; 1 P2P bus address not synced (not mapped by the DMA API))');
  });
});
