// Tests for the human rendering of the compare report and the progress bar.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { GiB, MiB, formatBytes, formatCount } from '../base/index.ts';
import { runCompare } from '../scenario/index.ts';
import { formatBytesExact, renderCompareReport, renderTable, wrapWords } from './format.ts';
import { ProgressBar, progressLine, wantProgress } from './progress.ts';

describe('renderTable', () => {
  it('aligns every column: each cell starts at the same offset on every line', () => {
    fc.assert(fc.property(
      fc.array(fc.array(fc.string({ unit: fc.constantFrom('a', 'b', '1', ','), maxLength: 9 }), { minLength: 3, maxLength: 3 }), { maxLength: 6 }),
      (rows) => {
        const header = ['Name', 'Value', 'X'];
        const text = renderTable(header, rows, ['l', 'r', 'l']).split('\n');
        expect(text).toHaveLength(rows.length + 2);
        const widths = header.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c].length)));
        const lines = [header, ...rows];
        lines.forEach((cells, i) => {
          const line = text[i === 0 ? 0 : i + 1];
          // column 1 is right-aligned: its last character sits at widths[0] + 2 + widths[1] - 1
          const start1 = widths[0] + 2;
          expect(line.slice(0, widths[0]).trimEnd()).toBe(cells[0]);
          expect(line.slice(start1, start1 + widths[1]).trimStart()).toBe(cells[1]);
          expect(line.slice(start1 + widths[1] + 2).trimEnd()).toBe(cells[2]);
        });
      },
    ));
  });
});

describe('wrapWords', () => {
  it('keeps every word, in order, and no line over the width unless one word is longer', () => {
    fc.assert(fc.property(fc.array(fc.stringMatching(/^[a-z0-9().,]{1,20}$/), { maxLength: 60 }), fc.integer({ min: 5, max: 40 }), (words, width) => {
      const lines = wrapWords(words.join(' '), width);
      expect(lines.join(' ').split(' ').filter((w) => w.length > 0)).toEqual(words);
      for (const l of lines) expect(l.length <= width || !l.includes(' ')).toBe(true);
      // greedy: the next line's first word would not have fitted
      for (let i = 0; i + 1 < lines.length; i++) expect(lines[i].length + 1 + lines[i + 1].split(' ')[0].length).toBeGreaterThan(width);
    }));
  });
});

describe('formatBytesExact', () => {
  it('adds the exact count only when the unit form is rounded', () => {
    expect(formatBytesExact(2 * MiB)).toBe('2 MiB');
    expect(formatBytesExact(16)).toBe('16 B');
    fc.assert(fc.property(fc.integer({ min: 1024, max: 2 ** 45 }), (n) => {
      const s = formatBytesExact(n);
      expect(s.startsWith(formatBytes(n))).toBe(true);
      if (s.includes('(')) expect(s).toContain(`(${formatCount(n)} B)`);
      else {
        const [v, unit] = s.split(' ');
        const scale = { KiB: 1024, MiB: MiB, GiB: GiB, TiB: 1024 * GiB }[unit]!;
        expect(Number(v) * scale).toBe(n);
      }
    }));
  });
});

describe('renderCompareReport', () => {
  const report = runCompare({
    ramGiB: 8, seed: 5, deviceGiB: 1, buffers: ['hugetlb', 'anon', 'device'],
    bufferLen: { anon: 4 * MiB, hugetlb: GiB, device: 2 * MiB },
  });
  const text = renderCompareReport(report);

  it('states the headline, the machine, the max segment and the legend', () => {
    expect(text).toContain('Headline: 1 GiB hugetlb page: 262,144 page entries (2 MiB of pointers) vs 1 phyr (16 B)');
    expect(text).toContain(report.machine.description);
    expect(text).toContain(report.maxSegmentNote);
    for (const k of Object.keys(report.legend)) expect(text).toContain(k);
  });

  it('prints the machine memmap and, under the device buffer, the memmap the page-based path needs beside none for phyr', () => {
    expect(text).toContain('Memmap: 128 MiB of struct page for RAM (64 B per 4 KiB page), 0 B for ZONE_DEVICE regions');
    const dev = report.buffers.find((b) => b.name === 'device')!;
    expect(text).toContain(`  Memmap: ${dev.memmap!.text}`);
    expect(text.indexOf(dev.memmap!.text)).toBeGreaterThan(text.indexOf(dev.label));
  });

  it('prints every row with thousands separators and binary units, and why a layout cannot describe a buffer', () => {
    for (const b of report.buffers) {
      expect(text).toContain(b.label);
      for (const r of b.rows) {
        const line = text.split('\n').find((l) => l.includes(r.label) && text.indexOf(l) > text.indexOf(b.label));
        expect(line, `${b.name}/${r.layout}`).toBeDefined();
        if (r.describes) {
          expect(line).toContain(formatCount(r.entries!));
          expect(line).toContain(formatBytes(r.kernelBytes!));
        } else {
          expect(line).toContain(`no: ${r.errno}`);
          expect(text).toContain(`${r.label} cannot describe it: ${r.reason}`);
        }
      }
    }
    const anonPages = formatCount((4 * MiB) / 4096);
    expect(anonPages).toBe('1,024');
    expect(text).toContain(anonPages);
  });
});

describe('progress bar', () => {
  it('draws on the given stream only, with a bar proportional to progress, and clears itself', () => {
    const writes: string[] = [];
    const bar = new ProgressBar({ write: (s: string) => writes.push(s), columns: 60 });
    bar.update(3, 12, 'step three');
    expect(writes[0]).toContain('[######------------------]');
    expect(writes[0]).toContain(' 3/12 step three');
    bar.done();
    expect(writes[writes.length - 1]).toBe('\r\x1b[K');
    expect(progressLine(1, 2, 'x'.repeat(200), 40).length).toBeLessThan(40);
    const unknownWidth: string[] = [];
    new ProgressBar({ write: (s: string) => unknownWidth.push(s), columns: 0 }).update(1, 2, 'half');
    expect(unknownWidth[0]).toContain('[############------------] 1/2 half');
  });

  it('is wanted only on a terminal, without --json, outside CI, unless --no-progress', () => {
    expect(wantProgress({ json: false, progress: true }, true, {})).toBe(true);
    expect(wantProgress({ json: true, progress: true }, true, {})).toBe(false);
    expect(wantProgress({ json: false, progress: false }, true, {})).toBe(false);
    expect(wantProgress({ json: false, progress: true }, false, {})).toBe(false);
    expect(wantProgress({ json: false, progress: true }, undefined, {})).toBe(false);
    expect(wantProgress({ json: false, progress: true }, true, { CI: 'true' })).toBe(false);
  });
});
