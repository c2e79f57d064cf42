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
const r = spawnSync(process.execPath, ['--no-concurrent-recompilation', '--single-threaded-gc', '--import', 'tsx', join(root, 'src/cli/main.ts'), ...process.argv.slice(2)], { stdio: 'inherit' });
process.exit(r.status ?? 1);
