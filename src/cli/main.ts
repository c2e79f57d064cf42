// What it is: the `phyr` executable's entry point (bin/phyr.mjs and `npm run phyr` run this file).
import { runCliAsync } from './program.ts';

process.exitCode = await runCliAsync(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, env: process.env });
