#!/usr/bin/env node
// npm run build: bundles the CLI for `npm start` with esbuild: dist/main.js (the executable's entry,
// src/cli/main.ts) and dist/mapping-worker.js (the mapping section's worker threads), sharing
// chunks of the model. Running the bundle skips tsx's per-module transform on the main thread
// and on every worker (about a second of start-up each); the code is the same sources, and
// `node --import tsx src/cli/main.ts` still runs them unbundled. npm packages stay external.
// The bundle is rebuilt only when a source (src/**, this file, package.json, the lock file) is
// newer than it, or with --force: a fresh checkout's files are all newer, so it always builds.
/* global process, console */
import { readdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outdir = join(root, 'dist');
const stamp = join(outdir, 'main.js');

/** Newest modification time (ms) of the files under dir, recursively. */
function newest(dir) {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

function upToDate() {
  let built;
  try {
    built = statSync(stamp).mtimeMs;
  } catch {
    return false;
  }
  const inputs = [fileURLToPath(import.meta.url), join(root, 'package.json'), join(root, 'package-lock.json')];
  return newest(join(root, 'src')) <= built && inputs.every((f) => statSync(f).mtimeMs <= built);
}

if (!process.argv.includes('--force') && upToDate()) process.exit(0);
rmSync(outdir, { recursive: true, force: true });
try {
  // loaded only when there is something to build: the up-to-date check alone (every `npm start`)
  // then costs a few stat calls instead of loading esbuild's API (about 0.15 s)
  const { build } = await import('esbuild');
  await build({
    absWorkingDir: root,
    entryPoints: ['src/cli/main.ts', 'src/cli/mapping-worker.ts', 'src/cli/sweep-worker.ts'],
    outdir,
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    packages: 'external',
    sourcemap: true,
    logLevel: 'warning',
  });
} catch (e) {
  console.error(`build failed: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
}
