// The import graph of src/ and the layer rules that guard it (docs/architecture.md, "Layers").
// Used by test/architecture.test.ts; kept separate so that the rules can be checked on a
// synthetic tree (a deliberately added cycle or upward import) as well as on the real one.
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import ts from 'typescript';

/** The layers from the bottom up; a file may import from its own layer or one listed before it. */
export const LAYER_ORDER = ['base', 'phyr', 'mm', 'pci', 'iommu', 'dma', 'drivers', 'machine', 'scenario', 'cli', 'web'] as const;

/** Files a layer offers to other layers: the driver API and the model's plumbing. */
export const PUBLIC_FILES = ['index.ts', 'internal.ts'] as const;

/**
 * Layers that may use another layer's internal.ts: the core of the model and the machine that
 * composes it. Consumers (drivers/) and everything above the machine see index.ts only, the API a
 * kernel driver sees.
 */
export const INTERNAL_USERS = ['base', 'phyr', 'mm', 'pci', 'iommu', 'dma', 'machine'] as const;

/** A source file: its path relative to src/ with '/' separators, and its text. */
export interface SourceFile {
  readonly path: string;
  readonly text: string;
}

/** One import edge, by src-relative paths. `target` is outside src/ when it starts with '../'. */
export interface ImportEdge {
  readonly from: string;
  readonly to: string;
  readonly spec: string;
  /**
   * A module augmentation (`declare module '../base/stats.ts' { ... }`): it widens a declaration
   * where it is made, so it names that file; the layer order still applies.
   */
  readonly augments: boolean;
}

const isTestFile = (p: string): boolean => /\.test\.ts$/.test(p);

/** Every .ts file under a directory, as src-relative '/'-paths (tests included). */
export function readTree(srcDir: string): SourceFile[] {
  const out: SourceFile[] = [];
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir).sort()) {
      const full = join(dir, name);
      if (statSync(full).isDirectory()) walk(full);
      else if (name.endsWith('.ts')) out.push({ path: relative(srcDir, full).split(sep).join('/'), text: readFileSync(full, 'utf8') });
    }
  };
  walk(srcDir);
  return out;
}

/** The relative imports, re-exports and dynamic imports of every file (type-only ones included). */
export function importEdges(files: readonly SourceFile[]): ImportEdge[] {
  const edges: ImportEdge[] = [];
  for (const f of files) {
    const info = ts.preProcessFile(f.text, true, true);
    const augmented = new Set<string>();
    const sf = ts.createSourceFile(f.path, f.text, ts.ScriptTarget.Latest, false);
    for (const st of sf.statements) {
      if (ts.isModuleDeclaration(st) && ts.isStringLiteral(st.name)) augmented.add(st.name.text);
    }
    for (const ref of info.importedFiles) {
      const spec = ref.fileName;
      if (!spec.startsWith('.')) continue;
      const to = relative('/src', resolve('/src', dirname(f.path), spec)).split(sep).join('/');
      edges.push({ from: f.path, to, spec, augments: augmented.has(spec) });
    }
  }
  return edges;
}

/** The top folder of a src-relative path ('dma' for 'dma/mapping.ts'); '' for files at the root. */
export function layerOf(path: string): string {
  const i = path.indexOf('/');
  return i < 0 ? '' : path.slice(0, i);
}

/**
 * Layers whose subfolders are units of their own, each behind its own public files: one folder per
 * consumer in drivers/ (drivers/nvme), and in scenario/ the scenario files (scenario/file: parsing
 * with zod and yaml, the runner) and the address trace (scenario/trace), which the report
 * (scenario/index.ts) does not need.
 */
export const UNIT_LAYERS = ['drivers', 'scenario'] as const;

/** The folder whose public file guards a path: 'drivers/nvme' or 'scenario/file' inside UNIT_LAYERS, else the layer. */
export function unitOf(path: string): string {
  const parts = path.split('/');
  if ((UNIT_LAYERS as readonly string[]).includes(parts[0]) && parts.length > 2) return `${parts[0]}/${parts[1]}`;
  return parts.length > 1 ? parts[0] : '';
}

/** Strongly connected components with more than one file (or a self-import): the import cycles. */
export function importCycles(edges: readonly ImportEdge[]): string[][] {
  const adj = new Map<string, string[]>();
  for (const e of edges) {
    if (!adj.has(e.from)) adj.set(e.from, []);
    adj.get(e.from)!.push(e.to);
  }
  // Tarjan's algorithm, iterative so that deep trees cannot overflow the stack.
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const out: string[][] = [];
  for (const start of adj.keys()) {
    if (idx.has(start)) continue;
    const work: Array<{ v: string; i: number }> = [{ v: start, i: 0 }];
    idx.set(start, index);
    low.set(start, index++);
    stack.push(start);
    onStack.add(start);
    while (work.length > 0) {
      const top = work[work.length - 1];
      const next = adj.get(top.v) ?? [];
      if (top.i < next.length) {
        const w = next[top.i++];
        if (!idx.has(w)) {
          idx.set(w, index);
          low.set(w, index++);
          stack.push(w);
          onStack.add(w);
          work.push({ v: w, i: 0 });
        } else if (onStack.has(w)) {
          low.set(top.v, Math.min(low.get(top.v)!, idx.get(w)!));
        }
        continue;
      }
      work.pop();
      if (work.length > 0) {
        const parent = work[work.length - 1].v;
        low.set(parent, Math.min(low.get(parent)!, low.get(top.v)!));
      }
      if (low.get(top.v) === idx.get(top.v)) {
        const comp: string[] = [];
        let w: string;
        do {
          w = stack.pop()!;
          onStack.delete(w);
          comp.push(w);
        } while (w !== top.v);
        const selfLoop = comp.length === 1 && (adj.get(comp[0]) ?? []).includes(comp[0]);
        if (comp.length > 1 || selfLoop) out.push(comp.sort());
      }
    }
  }
  return out;
}

/** Every import that breaks a layer rule, as a readable line naming the file, the import and the rule. */
export function layerViolations(files: readonly SourceFile[], edges: readonly ImportEdge[]): string[] {
  const rank = new Map<string, number>(LAYER_ORDER.map((l, i) => [l, i]));
  const known = new Set(files.map((f) => f.path));
  const bad: string[] = [];
  for (const e of edges) {
    const where = `${e.from} imports '${e.spec}'`;
    if (e.to.startsWith('..')) {
      if (e.to.startsWith('../test/') && isTestFile(e.from)) continue;
      bad.push(`${where}: a src file outside tests imports from outside src/`);
      continue;
    }
    if (!known.has(e.to)) {
      bad.push(`${where}: no such file`);
      continue;
    }
    // A unit test beside the code may build a whole machine and reach internals; it is no part of the library.
    if (isTestFile(e.from)) continue;
    const fromLayer = layerOf(e.from);
    const toLayer = layerOf(e.to);
    if (fromLayer === '') {
      // The package entry: it re-exports each layer's driver API and nothing else.
      if (!e.to.endsWith('/index.ts') || e.to.split('/').length !== 2) bad.push(`${where}: the package entry may re-export only a layer's index.ts`);
      continue;
    }
    const rf = rank.get(fromLayer);
    const rt = rank.get(toLayer);
    if (rf === undefined) bad.push(`${where}: ${fromLayer}/ is not a known layer (${LAYER_ORDER.join(' -> ')})`);
    else if (rt === undefined) bad.push(`${where}: ${toLayer || 'the package entry'} is not a layer a file may import`);
    else if (rt > rf) bad.push(`${where}: upward import (${fromLayer} sits below ${toLayer} in ${LAYER_ORDER.join(' -> ')})`);
    const fromUnit = unitOf(e.from);
    const toUnit = unitOf(e.to);
    if (fromUnit !== toUnit && !e.augments) {
      const file = e.to.slice(toUnit.length + 1);
      if (!(PUBLIC_FILES as readonly string[]).includes(file)) {
        bad.push(`${where}: cross-folder import bypasses ${toUnit}/'s public files (${PUBLIC_FILES.join(', ')})`);
      } else if (file === 'internal.ts' && !(INTERNAL_USERS as readonly string[]).includes(fromLayer)) {
        bad.push(`${where}: ${fromLayer}/ may use only the driver API (index.ts) of ${toUnit}/`);
      }
    }
  }
  return bad;
}

/** Globals that exist in Node but not in a browser (or a Web Worker). */
export const NODE_GLOBALS = ['process', 'Buffer', '__dirname', '__filename', 'require', 'module', 'global', 'setImmediate', 'clearImmediate'] as const;

/** Whether an identifier names a binding in an expression or type (not a property name or a declaration). */
function isGlobalReference(id: ts.Identifier): boolean {
  const p = id.parent;
  if (p === undefined) return false;
  if ((ts.isPropertyAccessExpression(p) || ts.isQualifiedName(p)) && (ts.isPropertyAccessExpression(p) ? p.name === id : p.right === id)) return false;
  if ((ts.isPropertyAssignment(p) || ts.isPropertySignature(p) || ts.isPropertyDeclaration(p) || ts.isMethodDeclaration(p)
    || ts.isMethodSignature(p) || ts.isGetAccessor(p) || ts.isSetAccessor(p) || ts.isEnumMember(p)) && p.name === id) return false;
  if ((ts.isVariableDeclaration(p) || ts.isParameter(p) || ts.isFunctionDeclaration(p) || ts.isClassDeclaration(p)
    || ts.isInterfaceDeclaration(p) || ts.isTypeAliasDeclaration(p) || ts.isBindingElement(p)) && p.name === id) return false;
  if (ts.isImportSpecifier(p) || ts.isExportSpecifier(p) || ts.isImportClause(p) || ts.isNamespaceImport(p) || ts.isLabeledStatement(p)) return false;
  return true;
}

/**
 * Node globals (process, Buffer, require, ...) used outside cli/, by file and line: the library must
 * run in a browser and a Web Worker, where they do not exist. A file that declares a binding of the
 * same name (a parameter or local called `process`) is not flagged for it.
 */
export function nodeGlobalUses(files: readonly SourceFile[]): string[] {
  const bad: string[] = [];
  const names = new Set<string>(NODE_GLOBALS);
  for (const f of files) {
    if (isTestFile(f.path) || layerOf(f.path) === 'cli') continue;
    const sf = ts.createSourceFile(f.path, f.text, ts.ScriptTarget.Latest, true);
    const declared = new Set<string>();
    const uses: Array<[string, number]> = [];
    const visit = (n: ts.Node): void => {
      if (ts.isIdentifier(n) && names.has(n.text)) {
        const p = n.parent;
        if ((ts.isVariableDeclaration(p) || ts.isParameter(p) || ts.isFunctionDeclaration(p) || ts.isBindingElement(p)) && p.name === n) declared.add(n.text);
        else if (isGlobalReference(n)) uses.push([n.text, sf.getLineAndCharacterOfPosition(n.getStart(sf)).line + 1]);
      }
      ts.forEachChild(n, visit);
    };
    visit(sf);
    for (const [name, line] of uses) {
      if (!declared.has(name)) bad.push(`${f.path}:${line} uses the Node global '${name}': Node-only APIs belong in cli/`);
    }
  }
  return bad;
}

/** Node-only modules used outside cli/: the library must run in a browser. */
export function nodeOnlyImports(files: readonly SourceFile[]): string[] {
  const bad: string[] = [];
  for (const f of files) {
    if (isTestFile(f.path) || layerOf(f.path) === 'cli') continue;
    const info = ts.preProcessFile(f.text, true, true);
    for (const ref of info.importedFiles) {
      if (/^node:|^(fs|path|url|os|child_process|worker_threads|process)$/.test(ref.fileName)) {
        bad.push(`${f.path} imports '${ref.fileName}': Node-only modules belong in cli/`);
      }
    }
  }
  return bad;
}

/**
 * The web view (web/src, paths relative to it) is a consumer of the library: it may import the
 * package entry (src/index.ts) and a layer's driver API (src/<layer>/index.ts, or a unit's in
 * UNIT_LAYERS: src/scenario/file/index.ts), never internal.ts or a deep file; and like the library it runs in a browser (no Node-only modules or globals).
 */
export function webViolations(files: readonly SourceFile[]): string[] {
  const bad: string[] = [];
  for (const f of files) {
    const info = ts.preProcessFile(f.text, true, true);
    for (const ref of info.importedFiles) {
      const spec = ref.fileName;
      const where = `web/src/${f.path} imports '${spec}'`;
      if (/^node:|^(fs|path|url|os|child_process|worker_threads|process)$/.test(spec)) {
        bad.push(`${where}: Node-only modules cannot run in the browser`);
        continue;
      }
      if (!spec.startsWith('.')) continue;
      const to = relative('/repo', resolve('/repo/web/src', dirname(f.path), spec)).split(sep).join('/');
      if (to.startsWith('web/')) continue;
      if (to.startsWith('src/')) {
        const parts = to.split('/');
        const ok = to === 'src/index.ts' || (parts.length === 3 && parts[2] === 'index.ts' && (LAYER_ORDER as readonly string[]).includes(parts[1])) ||
          (parts.length === 4 && parts[3] === 'index.ts' && (UNIT_LAYERS as readonly string[]).includes(parts[1]));
        if (!ok) bad.push(`${where}: the web view may use only the package entry or a layer's (or a unit's) index.ts`);
        continue;
      }
      if (to.startsWith('examples/')) continue;
      bad.push(`${where}: outside web/, src/ and examples/`);
    }
  }
  return [...bad, ...nodeGlobalUses(files.map((f) => ({ path: `web/src/${f.path}`, text: f.text })))];
}
