#!/usr/bin/env node
// npm start: brings the bundle in dist/ up to date (tools/build.mjs) and runs the CLI from it in
// this same process, with this process's arguments (`npm start` passes `compare`). One node process
// instead of a build step and a second node: node's own start-up is about 0.12 s on the 2-CPU
// machine the bench runs on. package.json runs this file with --no-concurrent-recompilation and
// --single-threaded-gc and with glibc's malloc settings in GLIBC_TUNABLES, all of which docs/cli.md
// explains: V8 flags and glibc tunables must be given when node starts, so they stay on that line.
/* global process, console */
import { ensureBuilt } from './build.mjs';

const failed = await ensureBuilt();
if (failed !== null) {
  console.error(failed);
  process.exit(1);
}
await import('../dist/main.js');
