#!/usr/bin/env node
// npm run build: bundles the CLI for `npm start` with esbuild: dist/main.js (the executable's entry,
// src/cli/main.ts) and dist/mapping-worker.js (the mapping section's worker threads), sharing
// chunks of the model. Running the bundle skips tsx's per-module transform on the main thread
// and on every worker (about a second of start-up each); the code is the same sources, and
// `node --import tsx src/cli/main.ts` still runs them unbundled. npm packages stay external.
/* global process, console */
import { build } from 'esbuild';
import { rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outdir = join(root, 'dist');
rmSync(outdir, { recursive: true, force: true });
try {
  await build({
    absWorkingDir: root,
    entryPoints: ['src/cli/main.ts', 'src/cli/mapping-worker.ts'],
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
