// What it is: the `phyr` executable's entry point (bin/phyr.mjs and `npm run phyr` run this file).
// A `phyr compare` with the mapping section gets its worker threads started first, so that their
// start-up overlaps this thread's loading of the report's modules (mapping-pool.ts is light).
import { createMappingPool, defaultJobs, wantsDefaultWorkers } from './mapping-pool.ts';

// `phyr ... | head` closes the pipe before the output ends: stop quietly, as Unix tools do, instead
// of dying with an EPIPE stack trace.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(0);
  throw e;
});

const argv = process.argv.slice(2);
// Every configuration by default: they outnumber the workers defaultJobs allows.
const jobs = wantsDefaultWorkers(argv) ? defaultJobs(Number.MAX_SAFE_INTEGER) : 0;
const pool = jobs > 0 ? createMappingPool(jobs) : null;
const { runCliAsync } = await import('./program.ts');
process.exitCode = await runCliAsync(argv, { stdout: process.stdout, stderr: process.stderr, env: process.env }, pool);
