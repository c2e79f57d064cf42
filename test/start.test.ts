// `npm start` runs tools/start.mjs: it brings the bundle in dist/ up to date and runs the CLI from it
// in the same process, with the arguments it was given. A small comparison through it must give the
// report the CLI gives from the sources (every field but the times).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
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

describe('npm start (tools/start.mjs)', () => {
  it('builds dist/ when needed and runs the bundled CLI with its own arguments', () => {
    const args = ['--buffers', 'device', '--configs', 'no-iommu', '--jobs', '0'];
    const r = spawnSync(process.execPath, ['--no-concurrent-recompilation', '--single-threaded-gc', join(root, 'tools/start.mjs'), 'compare', ...args, '--json'],
      { cwd: root, encoding: 'utf8', env: { ...process.env, CI: '1' } });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(existsSync(join(root, 'dist/main.js'))).toBe(true);
    const report = JSON.parse(r.stdout) as unknown;
    const here = runCompare({ buffers: ['device'], mapping: true, mappingConfigs: ['no-iommu'] });
    expect(timeless(report)).toEqual(timeless(JSON.parse(JSON.stringify(here))));
  }, 120_000);
});
