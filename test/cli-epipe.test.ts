// `phyr ... | head`: the reader closes the pipe before the output ends; phyr must stop quietly
// (exit 0, no EPIPE stack trace on stderr), as Unix tools do.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..');

describe('phyr writing into a pipe closed early', () => {
  it('exits 0 with nothing on stderr when the reader has gone before the first line', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(root, 'src/cli/main.ts'), 'run', join(root, 'examples/hugepage-1g.yaml')],
      { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    // the reader goes away at once: phyr's first write meets a closed pipe
    child.stdout.destroy();
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    expect(stderr).not.toContain('EPIPE');
    expect(stderr).toBe('');
    expect(code).toBe(0);
  }, 60_000);
});
