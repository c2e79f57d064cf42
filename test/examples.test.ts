// Every example scenario (examples/*.yaml) against its golden output (examples/<name>.golden.txt):
// `phyr run` of the file and of each of its configs. A difference is a change in what the model or the
// output does; if it is meant, regenerate the goldens with `npm run golden` and review the diff.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { exampleNames, goldenPath, goldenText } from './fixtures/examples.ts';

const UPDATE = process.env.UPDATE_GOLDEN === '1';

describe('examples match their golden output', () => {
  const names = exampleNames();
  it('has at least ten examples, each with a golden file', () => {
    expect(names.length).toBeGreaterThanOrEqual(10);
    if (!UPDATE) for (const n of names) expect(existsSync(goldenPath(n)), `${n}.golden.txt`).toBe(true);
  });
  for (const name of names) {
    it(`${name}`, () => {
      const text = goldenText(name);
      if (UPDATE) {
        writeFileSync(goldenPath(name), text);
        return;
      }
      expect(text).toBe(readFileSync(goldenPath(name), 'utf8'));
      // every run of an example meets its expectations: a story, not a crash
      expect(text).not.toMatch(/^result: FAILED/m);
    }, 60_000);
  }
});
