// `npm start` end to end, spawned once as a user types it: tools/start.mjs, in one process, the build (tools/build.mjs bundles the CLI
// with esbuild) and the whole `phyr compare` report (layouts and the mapping section on its worker
// threads) from the bundle. Wall time carries the target; the report's own total (from the machine's creation to the
// last row: start-up and module loading excluded) is printed beside it. Both are wall times: on a
// machine other work loads, they say as much about the load as about the code.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchSection } from './harness.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

export default function startBench(): BenchSection {
  const t0 = process.hrtime.bigint();
  const r = spawnSync('npm', ['start', '--silent'], {
    cwd: root, encoding: 'utf8', env: { ...process.env, CI: '1' }, maxBuffer: 64 << 20,
  });
  const wallMs = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 0) throw new Error(`phyr compare exited with ${String(r.status)}: ${r.stderr}`);
  const total = /Total model time ([\d,.]+) ms/.exec(r.stdout);
  return {
    title: 'npm start (phyr compare, default options)',
    rows: [
      { name: 'npm start wall time (build + phyr compare)', value: wallMs, unit: 'ms', target: { op: '<=', value: 5000 } },
      ...(total ? [{ name: 'of which the report (its Total model time)', value: Number(total[1].replace(/,/g, '')), unit: 'ms' }] : []),
    ],
  };
}
