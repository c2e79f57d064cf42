#!/usr/bin/env node
// npm run build: bundles the CLI for `npm start` with esbuild: dist/main.js (the executable's entry,
// src/cli/main.ts) and dist/mapping-worker.js (the mapping section's worker threads), sharing
// chunks of the model. Running the bundle skips tsx's per-module transform on the main thread
// and on every worker (about a second of start-up each); the code is the same sources, and
// `node --import tsx src/cli/main.ts` still runs them unbundled. npm packages stay external.
// The bundle is rebuilt only when a source (src/**, this file, package.json, the lock file) is
// newer than it, or with --force: a fresh checkout's files are all newer, so it always builds.
/* global process, console */
import { readdirSync, realpathSync, rmSync, statSync } from 'node:fs';
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

/**
 * Bundles the CLI into dist/ unless it is up to date (force: always). Returns an error message, or
 * null when dist/ is ready. tools/start.mjs (`npm start`) calls this in the process that then runs
 * the bundle, so that `npm start` starts one node process, not two (about 0.12 s each here).
 */
export async function ensureBuilt(force = false) {
  if (!force && upToDate()) return null;
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
    // nothing half-built is left for the up-to-date check to trust
    rmSync(outdir, { recursive: true, force: true });
    return `build failed: ${e instanceof Error ? e.message : String(e)}`;
  }
  return null;
}

// Run as a script (`npm run build`): build, and exit 1 with the message on failure.
if (process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const failed = await ensureBuilt(process.argv.includes('--force'));
  if (failed !== null) {
    console.error(failed);
    process.exit(1);
  }
}
