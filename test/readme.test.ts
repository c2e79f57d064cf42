// Runs every ```ts example in README.md as a program (through tsx) so the tour stays true:
// each example must exit 0; examples assert their own claims with node:assert.
import { describe, expect, it } from 'vitest';
import { readFileSync, writeFileSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..');
const readme = readFileSync(join(root, 'README.md'), 'utf8');
const blocks = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);

describe('README examples', () => {
  it('has examples', () => {
    expect(blocks.length).toBeGreaterThan(0);
  });
  blocks.forEach((code, i) => {
    it(`example ${i + 1} runs`, () => {
      const file = join(root, `.readme-example-${i + 1}.ts`);
      writeFileSync(file, code);
      try {
        execFileSync(process.execPath, ['--import', 'tsx', file], { cwd: root, stdio: 'pipe', timeout: 60_000 });
      } finally {
        rmSync(file, { force: true });
      }
    });
  });
});
