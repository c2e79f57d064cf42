// Tests of `phyr premap`'s option handling and help (src/cli/premap.ts).
import { describe, expect, it } from 'vitest';
import { cli } from '../../test/fixtures/cli.ts';
import { runPremap } from '../scenario/index.ts';

describe('phyr premap options', () => {
  it('--help shows the --sizes default in KiB, the unit of the option', () => {
    const r = cli(['premap', '--help']);
    expect(r.code).toBe(0);
    const line = r.out.split('\n').findIndex((l) => l.includes('--sizes <KiB,...>'));
    const text = r.out.split('\n').slice(line, line + 2).join(' ').replace(/\s+/g, ' ');
    expect(text).toMatch(/\(default: 4,128\)/);
    expect(text).not.toMatch(/4096/);
  });

  it('an invalid value points at `phyr help premap`, not at another command', () => {
    const r = cli(['premap', '--ios', '1']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--ios must be an integer in \[2, 65536\]/);
    expect(r.err).toMatch(/phyr help premap/);
    expect(r.err).not.toMatch(/help compare/);
  });

  it('refuses a size given twice (each size is one block of rows), in the CLI and in runPremap', () => {
    const r = cli(['premap', '--sizes', '4,128,4', '--ios', '2']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--sizes names 4 KiB twice/);
    expect(r.out).toBe('');
    expect(() => runPremap({ sizes: [4096, 4096], ios: 2 })).toThrow(/sizes\[\] must not repeat a size, got 4096 twice/);
  });
});
