#!/usr/bin/env node
// Launches the phyr CLI through tsx so the TypeScript sources run as they are.
/* global process */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// --no-concurrent-recompilation and --single-threaded-gc: see docs/cli.md (TurboFan's background
// compiles and the GC's helper threads compete with the model's worker threads for the CPUs; doing
// that work on the thread that needs it is faster here)
const V8_FLAGS = ['--no-concurrent-recompilation', '--single-threaded-gc'];
// glibc's malloc settings of `npm start` (package.json; docs/cli.md says why). glibc reads them when
// a process starts, so they go to the child; a GLIBC_TUNABLES of the caller's own is kept.
const MALLOC_TUNABLES = 'glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824:glibc.malloc.top_pad=67108864';
const env = { ...process.env, GLIBC_TUNABLES: process.env.GLIBC_TUNABLES ?? MALLOC_TUNABLES };
const r = spawnSync(process.execPath, [...V8_FLAGS, '--import', 'tsx', join(root, 'src/cli/main.ts'), ...process.argv.slice(2)], { stdio: 'inherit', env });
process.exit(r.status ?? 1);
