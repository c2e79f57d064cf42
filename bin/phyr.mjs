#!/usr/bin/env node
// Launches the phyr CLI through tsx so the TypeScript sources run as they are.
/* global process */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
// --no-concurrent-recompilation: see docs/cli.md (TurboFan's background compiles compete with the
// model's worker threads for the CPUs; compiling on the thread that asks is faster here)
const r = spawnSync(process.execPath, ['--no-concurrent-recompilation', '--import', 'tsx', join(root, 'src/cli/main.ts'), ...process.argv.slice(2)], { stdio: 'inherit' });
process.exit(r.status ?? 1);
