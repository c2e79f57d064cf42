// The layer rules of docs/architecture.md, checked on the real tree and shown to fail on broken ones.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { importCycles, importEdges, layerViolations, nodeGlobalUses, nodeOnlyImports, readTree, webViolations, type SourceFile } from './import-graph.ts';

const src = join(dirname(fileURLToPath(import.meta.url)), '..', 'src');
const tree = readTree(src);
const edges = importEdges(tree);

describe('the layers of src/', () => {
  it('reads a tree of the expected size (the rules are not checked on nothing)', () => {
    expect(tree.length).toBeGreaterThan(50);
    expect(edges.length).toBeGreaterThan(100);
  });
  it('has no import cycle between files (type-only imports count)', () => {
    expect(importCycles(edges)).toEqual([]);
  });
  it('imports only downwards, through each folder\'s public files, and never from test/', () => {
    expect(layerViolations(tree, edges)).toEqual([]);
  });
  it('uses Node-only modules only in cli/', () => {
    expect(nodeOnlyImports(tree)).toEqual([]);
  });
  it('uses Node globals (process, Buffer, require, ...) only in cli/: the library runs in a browser worker', () => {
    expect(nodeGlobalUses(tree)).toEqual([]);
  });
});

describe('the web view (web/src) as a consumer of the library', () => {
  const web = readTree(join(dirname(fileURLToPath(import.meta.url)), '..', 'web', 'src'));
  it('reads the view\'s files (the rule is not checked on nothing)', () => {
    expect(web.map((f) => f.path)).toContain('worker/model.ts');
  });
  it('imports only the package entry or a layer\'s index.ts, and nothing Node-only', () => {
    expect(webViolations(web)).toEqual([]);
  });
});

describe('the rules catch what they guard', () => {
  const synthetic = (files: Record<string, string>): SourceFile[] => Object.entries(files).map(([path, text]) => ({ path, text }));
  it('a cycle between two files', () => {
    const t = synthetic({
      'dma/a.ts': "import { b } from './b.ts';\nexport const a = 1;",
      'dma/b.ts': "import type { a } from './a.ts';\nexport const b = 2;",
      'dma/c.ts': "import { a } from './a.ts';",
    });
    expect(importCycles(importEdges(t))).toEqual([['dma/a.ts', 'dma/b.ts']]);
  });
  it('an upward import', () => {
    const t = synthetic({ 'mm/gup.ts': "import { x } from '../dma/index.ts';", 'dma/index.ts': 'export const x = 1;' });
    expect(layerViolations(t, importEdges(t))).toEqual([
      "mm/gup.ts imports '../dma/index.ts': upward import (mm sits below dma in base -> phyr -> mm -> pci -> iommu -> dma -> drivers -> machine -> scenario -> cli -> web)",
    ]);
  });
  it('a module augmentation may name the declaring file of a lower layer, never of a higher one', () => {
    const t = synthetic({
      'iommu/counters.ts': "export {};\ndeclare module '../base/stats.ts' { interface StatsCounters { x: number } }",
      'base/stats.ts': "export {};\ndeclare module '../dma/counters.ts' { interface X { y: number } }",
      'dma/counters.ts': '',
    });
    expect(layerViolations(t, importEdges(t))).toEqual([
      "base/stats.ts imports '../dma/counters.ts': upward import (base sits below dma in base -> phyr -> mm -> pci -> iommu -> dma -> drivers -> machine -> scenario -> cli -> web)",
    ]);
  });
  it('a cross-folder import that bypasses the public file', () => {
    const t = synthetic({ 'dma/map.ts': "import { pt } from '../iommu/pagetable.ts';", 'iommu/pagetable.ts': 'export const pt = 1;' });
    expect(layerViolations(t, importEdges(t))).toEqual([
      "dma/map.ts imports '../iommu/pagetable.ts': cross-folder import bypasses iommu/'s public files (index.ts, internal.ts)",
    ]);
  });
  it('between two drivers, through the other driver\'s public file only', () => {
    const t = synthetic({
      'drivers/nvme/prp.ts': "import { a } from '../block/iter.ts';\nimport { b } from '../block/index.ts';",
      'drivers/block/iter.ts': 'export const a = 1;',
      'drivers/block/index.ts': 'export const b = 1;',
    });
    expect(layerViolations(t, importEdges(t))).toEqual([
      "drivers/nvme/prp.ts imports '../block/iter.ts': cross-folder import bypasses drivers/block/'s public files (index.ts, internal.ts)",
    ]);
  });
  it('into and out of scenario/\'s units (scenario/file, scenario/trace), through their public files only', () => {
    const t = synthetic({
      'cli/run.ts': "import { p } from '../scenario/file/parse.ts';\nimport { q } from '../scenario/file/index.ts';\nimport { r } from '../scenario/index.ts';",
      'scenario/file/runner.ts': "import { m } from '../mapping.ts';\nimport { r } from '../index.ts';",
      'scenario/trace/scenario.ts': "import { q } from '../file/index.ts';",
      'scenario/file/parse.ts': 'export const p = 1;',
      'scenario/file/index.ts': 'export const q = 1;',
      'scenario/mapping.ts': 'export const m = 1;',
      'scenario/index.ts': 'export const r = 1;',
    });
    expect(layerViolations(t, importEdges(t))).toEqual([
      "cli/run.ts imports '../scenario/file/parse.ts': cross-folder import bypasses scenario/file/'s public files (index.ts, internal.ts)",
      "scenario/file/runner.ts imports '../mapping.ts': cross-folder import bypasses scenario/'s public files (index.ts, internal.ts)",
    ]);
  });
  it('a consumer reaching into a lower layer\'s internals', () => {
    const t = synthetic({
      'drivers/nvme/prp.ts': "import { iovaLink } from '../../dma/internal.ts';",
      'machine/machine.ts': "import { registerDmaDevice } from '../dma/internal.ts';",
      'dma/internal.ts': '',
    });
    expect(layerViolations(t, importEdges(t))).toEqual([
      "drivers/nvme/prp.ts imports '../../dma/internal.ts': drivers/ may use only the driver API (index.ts) of dma/",
    ]);
  });
  it('a library file importing test/, and the package entry re-exporting an internal', () => {
    const t = synthetic({
      'dma/x.ts': "import { f } from '../../test/fixtures.ts';",
      'dma/x.test.ts': "import { f } from '../../test/fixtures.ts';",
      'index.ts': "export * from './dma/internal.ts';",
      'dma/internal.ts': '',
    });
    expect(layerViolations(t, importEdges(t))).toEqual([
      "dma/x.ts imports '../../test/fixtures.ts': a src file outside tests imports from outside src/",
      "index.ts imports './dma/internal.ts': the package entry may re-export only a layer's index.ts",
    ]);
  });
  it('a Node-only module in the library', () => {
    const t = synthetic({ 'scenario/load.ts': "import { readFileSync } from 'node:fs';", 'cli/main.ts': "import { readFileSync } from 'node:fs';" });
    expect(nodeOnlyImports(t)).toEqual(["scenario/load.ts imports 'node:fs': Node-only modules belong in cli/"]);
  });
  it('a Node global in the library (process.hrtime, Buffer), but not a property or a local of that name', () => {
    const t = synthetic({
      'scenario/time.ts': 'export const t = process.hrtime.bigint();\nexport const b: Buffer | null = null;',
      'mm/pins.ts': 'export interface P { readonly process: number }\nexport const p = (o: { process: number }) => ({ process: o.process });',
      'dma/x.ts': 'export function f(process: number): number { return process + 1; }',
      'cli/main.ts': 'export const argv = process.argv;',
    });
    expect(nodeGlobalUses(t)).toEqual([
      "scenario/time.ts:1 uses the Node global 'process': Node-only APIs belong in cli/",
      "scenario/time.ts:2 uses the Node global 'Buffer': Node-only APIs belong in cli/",
    ]);
  });
  it('the web view reaching into internals, a deep file or Node', () => {
    const t = synthetic({
      'worker/a.ts': "import { x } from '../../../src/dma/internal.ts';\nimport { y } from '../../../src/iommu/inspect.ts';\nimport { z } from '../../../src/index.ts';\n" +
        "import { p } from '../../../src/scenario/file/index.ts';\nimport { q } from '../../../src/scenario/file/parse.ts';",
      'main.ts': "import { readFileSync } from 'node:fs';\nimport { s } from '../../src/scenario/index.ts';\nexport const e = process.env;",
    });
    expect(webViolations(t)).toEqual([
      "web/src/worker/a.ts imports '../../../src/dma/internal.ts': the web view may use only the package entry or a layer's (or a unit's) index.ts",
      "web/src/worker/a.ts imports '../../../src/iommu/inspect.ts': the web view may use only the package entry or a layer's (or a unit's) index.ts",
      "web/src/worker/a.ts imports '../../../src/scenario/file/parse.ts': the web view may use only the package entry or a layer's (or a unit's) index.ts",
      "web/src/main.ts imports 'node:fs': Node-only modules cannot run in the browser",
      "web/src/main.ts:3 uses the Node global 'process': Node-only APIs belong in cli/",
    ]);
  });
});
