// `npm start` runs tools/start.mjs: it brings the bundle in dist/ up to date and runs the CLI from it
// in the same process, with the arguments it was given. A small comparison through it must give the
// report the CLI gives from the sources (every field but the times).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCompare } from '../src/scenario/index.ts';

const root = join(import.meta.dirname, '..');

/** The report without its *Ms fields (wall times differ between runs). */
function timeless(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(timeless);
  if (v !== null && typeof v === 'object') {
    return Object.fromEntries(Object.entries(v).filter(([k]) => !k.endsWith('Ms')).map(([k, x]) => [k, timeless(x)]));
  }
  return v;
}

const scripts = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts;

/** A package.json script as `VAR=value ... program args...`: its environment, program and arguments. */
function parseScript(line: string): { env: Record<string, string>; program: string; args: string[] } {
  const words = line.split(/\s+/);
  const env: Record<string, string> = {};
  while (/^[A-Z_]+=/.test(words[0])) {
    const w = words.shift()!;
    env[w.slice(0, w.indexOf('='))] = w.slice(w.indexOf('=') + 1);
  }
  return { env, program: words[0], args: words.slice(1) };
}

describe('npm start (tools/start.mjs)', () => {
  const start = parseScript(scripts.start);

  it('runs node with the V8 flags and glibc malloc settings docs/cli.md explains, as npm run phyr, npm run bench and bin/phyr.mjs do', () => {
    expect(start.program).toBe('node');
    expect(start.args).toEqual(['--no-concurrent-recompilation', '--single-threaded-gc', 'tools/start.mjs', 'compare']);
    expect(Object.keys(start.env)).toEqual(['GLIBC_TUNABLES']);
    const tunables = start.env.GLIBC_TUNABLES.split(':');
    expect(tunables).toEqual(['glibc.malloc.hugetlb=1', 'glibc.malloc.mmap_threshold=33554432', 'glibc.malloc.trim_threshold=1073741824', 'glibc.malloc.top_pad=67108864']);
    const phyr = parseScript(scripts.phyr);
    expect(phyr.env).toEqual(start.env);
    // the bench measures the model as npm start runs it
    expect(parseScript(scripts.bench).env).toEqual(start.env);
    expect(phyr.args.slice(0, 2)).toEqual(start.args.slice(0, 2));
    const bin = readFileSync(join(root, 'bin/phyr.mjs'), 'utf8');
    expect(bin).toContain(`const MALLOC_TUNABLES = '${start.env.GLIBC_TUNABLES}';`);
    expect(bin).toContain(`const V8_FLAGS = ['${start.args[0]}', '${start.args[1]}'];`);
  });

  it('builds dist/ when needed and runs the bundled CLI with its own arguments', () => {
    const args = ['--buffers', 'device', '--configs', 'no-iommu', '--jobs', '0'];
    // as npm start runs it: its environment, V8 flags and script, with the test's own arguments
    const r = spawnSync(process.execPath, [...start.args.slice(0, 2), join(root, start.args[2]), 'compare', ...args, '--json'],
      { cwd: root, encoding: 'utf8', env: { ...process.env, ...start.env, CI: '1' } });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(existsSync(join(root, 'dist/main.js'))).toBe(true);
    const report = JSON.parse(r.stdout) as unknown;
    const here = runCompare({ buffers: ['device'], mapping: true, mappingConfigs: ['no-iommu'] });
    expect(timeless(report)).toEqual(timeless(JSON.parse(JSON.stringify(here))));
  }, 120_000);
});
