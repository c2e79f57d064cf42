// The web view's worker model in Node (no browser): every view of every step of the examples can
// be built, the views change nothing in the machine they show, and the rows the trace marks hold the
// traced addresses.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ScenarioRunner, parseScenario, traceBuffer } from '../../src/scenario/index.ts';
import { ViewModel } from '../../web/src/worker/model.ts';
import { traceOf } from '../../web/src/worker/trace.ts';
import { REPO } from '../fixtures/web.ts';

// small examples: a whole view after every step stays fast
const EXAMPLES = ['lazy-stale-iotlb', 'p2p-topology', 'swiotlb-exhaustion', 'untrusted-thunderbolt', 'cpu-write-device-owned', 'dmabuf-revoke'];
const text = (name: string): string => readFileSync(join(REPO, 'examples', `${name}.yaml`), 'utf8');

/** Builds every view the page can ask for at the current step; returns how many rows were read. */
function everyView(vm: ViewModel): number {
  const s = vm.snapshot();
  let rows = 0;
  for (const b of s.buffers.filter((x) => x.live)) {
    for (const l of vm.layouts(b.name)) if (l.error === null) rows += vm.rows(l.source, 0, 50).rows.length;
    rows += vm.rows(`phys:${b.name}`, 0, 50).rows.length;
    vm.setTrace(traceOf(vm, b.name, Math.min(16, b.len - 1)).points);
    vm.bytes(b.name, 0, 256);
  }
  for (const d of s.domains) {
    rows += vm.rows(`iova:${d.device}`, 0, 50).rows.length + vm.rows(`iotlb:${d.device}`, 0, 50).rows.length;
    if (d.format !== null) rows += vm.rows(`pt:${d.device}:`, 0, 512).rows.length;
  }
  const pci = s.pci.filter((n) => n.kind === 'endpoint');
  if (pci.length >= 2) vm.p2p(pci[0].name, pci[1].name);
  return rows + vm.rows('events', 0, 50).rows.length;
}

describe('the view model of the web page', () => {
  for (const name of EXAMPLES) {
    it(`${name}: every view after every step, and the run is the same as without the view (counters, events, results)`, () => {
      const vm = new ViewModel(text(name), `${name}.yaml`);
      let rows = everyView(vm);
      while (vm.step()) rows += everyView(vm);
      expect(vm.snapshot().state).toBe('done');
      expect(rows).toBeGreaterThan(0);
      const plain = new ScenarioRunner(parseScenario(text(name), { source: `${name}.yaml` }));
      while (plain.step() !== null) { /* every step */ }
      expect(vm.runner.results).toEqual(plain.results);
      expect(vm.machine.stats.snapshot()).toEqual(plain.machine.stats.snapshot());
      expect(vm.machine.events.list()).toEqual(plain.machine.events.list());
    });
  }

  it('the trace of a byte is the library\'s traceBuffer, and the rows it marks hold its addresses', () => {
    const vm = new ViewModel(text('p2p-topology'), 'p2p-topology.yaml');
    for (let i = 0; i < 7; i++) vm.step();
    const t = traceOf(vm, 'vram', 4100);
    const lib = traceBuffer(vm.runner, 'vram', 4100);
    const run = lib.runs[0];
    expect(t.points.find((p) => p.space === 'phys')?.addr).toBe(`0x${run.cpu.phys!.toString(16)}`);
    expect(t.points.filter((p) => p.space === 'dma').map((p) => p.addr)).toEqual(run.devices.map((d) => `0x${d.access.dmaAddr.toString(16)}`));
    vm.setTrace(t.points);
    // the page array entry of the byte's page (index 1: byte 4100 is in the second 4 KiB page), and only it
    const pa = vm.rows('layout:vram:pagearray', 0, 4);
    expect(pa.rows.map((r) => r.hit)).toEqual([false, true, false, false]);
    expect(pa.firstHit).toBe(1);
    // the IOVA range and the last-level table entry of the mapping through the host bridge
    const iova = vm.rows('iova:nic0', 0, 50);
    expect(iova.rows.filter((r) => r.hit)).toHaveLength(1);
    const leaf = [...run.devices.find((d) => d.device === 'nic0')!.access.iommu!.walk].pop()!;
    const table = vm.table('nic0', `0x${(leaf.tablePhys >> 12n).toString(16)}`);
    expect(table.entries.filter((e) => e.hit).map((e) => e.index)).toEqual([leaf.index]);
    expect(table.entries[leaf.index].raw).toBe(`0x${leaf.entry.toString(16)}`);
    // cleared: nothing marked
    vm.setTrace([]);
    expect(vm.rows('layout:vram:pagearray', 0, 4).rows.some((r) => r.hit)).toBe(false);
  });
});
