// End-to-end tests of the `phyr` CLI: in-process through runCli (fast), and a few real processes
// (node --import tsx src/cli/main.ts) for exit codes and stream separation.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli } from './fixtures/cli.ts';
import type { CompareReport } from '../src/scenario/index.ts';
import { BUFFER_NAMES, LAYOUT_NAMES, LEGEND, MAPPING_CONFIG_NAMES, MAPPING_LEGEND } from '../src/scenario/index.ts';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');


function spawnCli(args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(root, 'src/cli/main.ts'), ...args], {
    cwd: root, encoding: 'utf8', env: { ...process.env, CI: '1' }, timeout: 60_000,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const FAST = ['--ram', '8', '--buffers', 'device,hugetlb', '--no-mapping'];

describe('phyr compare --help', () => {
  const { code, out } = cli(['compare', '--help']);
  it('exits 0 and explains every option, buffer and column', () => {
    expect(code).toBe(0);
    for (const opt of ['--json', '--seed <n>', '--ram <GiB>', '--no-aged', '--buffers <list>', '--max-segment <bytes>',
      '--no-progress', '--page-size <bytes>', '--mapping', '--no-mapping', '--configs <list>', '--help']) {
      expect(out, opt).toContain(opt);
    }
    for (const b of BUFFER_NAMES) expect(out).toMatch(new RegExp(`^  ${b} `, 'm'));
    for (const k of Object.keys(LEGEND)) expect(out).toContain(k);
    for (const k of Object.keys(MAPPING_LEGEND)) expect(out).toContain(k);
    for (const c of MAPPING_CONFIG_NAMES) expect(out).toMatch(new RegExp(`^  ${c} `, 'm'));
  });

  it('--mapping counts the configurations there are (it said 7 after the eighth, non-coherent, came)', () => {
    expect(out.replace(/\s+/g, ' ')).toContain(`on ${MAPPING_CONFIG_NAMES.length} machine configurations by 4 methods`);
  });

  it('a usage error points at the options of the command it was made for, and `phyr help` shows them', () => {
    for (const cmd of ['compare', 'block', 'dmabuf', 'dmaops', 'rdma', 'premap', 'trace', 'run', 'sweep']) {
      const r = cli([cmd, '--no-such-option']);
      expect(r.code, cmd).toBe(2);
      expect(r.err, cmd).toContain(`(run "phyr help ${cmd}" for the options)`);
      const h = cli(['help', cmd]);
      expect(h.code, cmd).toBe(0);
      expect(h.out, cmd).toContain(`phyr ${cmd}`);
    }
    const top = cli(['--no-such-option']);
    expect(top.code).toBe(2);
    expect(top.err).toContain('(run "phyr help" for the commands)');
  });

  it('phyr help compare and phyr --help work too', () => {
    const h = cli(['help', 'compare']);
    expect(h.code).toBe(0);
    expect(h.out).toContain('--max-segment <bytes>');
    const top = cli(['--help']);
    expect(top.code).toBe(0);
    expect(top.out).toContain('compare');
  });
});

describe('phyr compare', () => {
  it('--json prints one JSON object of the documented shape on stdout and nothing on stderr', () => {
    const { code, out, err } = cli(['compare', '--json', ...FAST, '--seed', '9'], { isTTY: true });
    expect(code).toBe(0);
    expect(err).toBe('');
    const rep = JSON.parse(out) as CompareReport;
    expect(rep.tool).toBe('phyr compare');
    expect(rep.version).toBe(2);
    expect([rep.machine.hugetlbSize, rep.machine.hugetlbPages]).toEqual(['1G', 4]);
    expect(rep.machine.ramBytes).toBe(8 * 2 ** 30);
    expect(rep.machine.seed).toBe(9);
    expect(rep.machine.aged).toBe(true);
    expect(rep.buffers.map((b) => b.name)).toEqual(['device', 'hugetlb']);
    for (const b of rep.buffers) {
      expect(b.userAddr).toMatch(/^0x[0-9a-f]+$/);
      expect(b.rows.map((r) => r.layout)).toEqual([...LAYOUT_NAMES]);
      for (const r of b.rows) {
        expect(typeof r.describes).toBe('boolean');
        expect(typeof r.timeMs).toBe('number');
        expect(r.timeMs).toBeCloseTo(r.pinMs + r.buildMs, 6);
      }
    }
    // 4 GiB of 1 GiB pages: 1,048,576 page pointers (8 MiB); the headline is per 1 GiB page.
    expect(rep.buffers[1].rows[0].entries).toBe(1 << 20);
    expect(rep.headline?.pageEntries).toBe(262144);
    expect(rep.headline?.phyrBytes).toBe(16);
    expect(rep.buffers[0].rows[1]).toMatchObject({ describes: false, errno: 'EFAULT' });
    expect(rep.mapping).toBeNull();
  });

  it('the mapping section is on by default; --no-mapping leaves it out', () => {
    const on = cli(['compare', '--json', '--ram', '8', '--buffers', 'device', '--configs', 'p2p-switch']);
    expect(on.code, on.err).toBe(0);
    const rep = JSON.parse(on.out) as CompareReport;
    expect(rep.mapping?.configs.map((c) => c.name)).toEqual(['p2p-switch']);
    expect(rep.mapping?.rows.map((r) => r.method)).toEqual(['sgtable', 'map-phys', 'two-step', 'map-phyrs']);
    const off = cli(['compare', '--json', '--ram', '8', '--buffers', 'device', '--configs', 'p2p-switch', '--no-mapping']);
    expect((JSON.parse(off.out) as CompareReport).mapping).toBeNull();
  });

  it('--mapping --configs adds the mapping section for those configurations only', () => {
    const { code, out } = cli(['compare', '--json', '--ram', '8', '--buffers', 'device', '--mapping', '--configs', 'p2p-switch,iommu-strict']);
    expect(code).toBe(0);
    const rep = JSON.parse(out) as CompareReport;
    expect(rep.mapping?.configs.map((c) => c.name)).toEqual(['p2p-switch', 'iommu-strict']);
    expect(rep.mapping?.rows).toHaveLength(2 * 4);
    expect(rep.mapping?.rows.every((r) => r.bytesMismatched === 0)).toBe(true);
    const human = cli(['compare', '--ram', '8', '--buffers', 'device', '--mapping', '--configs', 'p2p-switch']).out;
    expect(human).toContain('p2p-switch: P2P through a switch');
    expect(human).toContain('Mapping legend:');
  });

  it('human output: headline, tables and legend; the progress bar only on a terminal stderr', () => {
    const tty = cli(['compare', ...FAST, '--no-aged'], { isTTY: true });
    expect(tty.code).toBe(0);
    expect(tty.out).toContain('Headline: 1 GiB hugetlb page: 262,144 page entries (2 MiB of pointers) vs 1 phyr (16 B)');
    expect(tty.out).toContain('1,048,576');
    expect(tty.out).toContain('Legend:');
    expect(tty.out).not.toContain('\r');
    expect(tty.err).toMatch(/\[#+-*\]/);
    expect(tty.err.endsWith('\r\x1b[K')).toBe(true);
    expect(cli(['compare', ...FAST], { isTTY: false }).err).toBe('');
    expect(cli(['compare', ...FAST], { isTTY: true, env: { CI: 'true' } }).err).toBe('');
    expect(cli(['compare', ...FAST, '--no-progress'], { isTTY: true }).err).toBe('');
  });

  it('invalid option values exit 2 with the option and the value named', () => {
    const cases: Array<[string[], RegExp]> = [
      [['--seed', 'abc'], /--seed.*abc/],
      [['--seed', '-1'], /--seed.*-1/],
      [['--ram', '0'], /--ram.*0/],
      [['--ram', '1.5'], /--ram.*1\.5/],
      // the memory map's limit (16 TiB), where the option said [1, 1048576] and the machine then refused
      [['--ram', '16385'], /--ram must be an integer in \[1, 16384\], got "16385"/],
      // too little RAM for the hugetlb pool, which --buffers does not shrink: the message says so
      [['--ram', '6', '--buffers', 'anon', '--no-mapping'], /hugetlb\['1G'\] 4 pages do not fit.*reserved whatever --buffers says: raise --ram/],
      [['--buffers', 'anon,pmem'], /--buffers.*pmem/],
      [['--buffers', 'anon,anon'], /--buffers.*anon/],
      [['--max-segment', '100'], /--max-segment.*100/],
      [['--page-size', '8192'], /--page-size.*8192/],
      [['--bogus'], /--bogus/],
      [['--configs', 'iommu-strict,nope'], /--configs.*nope/],
    ];
    for (const [args, re] of cases) {
      const r = cli(['compare', ...args]);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.err, args.join(' ')).toMatch(re);
      expect(r.out).toBe('');
    }
    // A value that is valid alone but not with the others (max segment below a 64 KiB page).
    const r = cli(['compare', '--page-size', '65536', '--max-segment', '4096']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--max-segment.*4096/);
  });
});

describe('the real process', () => {
  it('exits 2 on a bad value, naming the option, with nothing on stdout', () => {
    const r = spawnCli(['compare', '--ram', 'lots']);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/--ram.*lots/);
    expect(r.out).toBe('');
  });

  it('exits 0 with parseable JSON on stdout', () => {
    const r = spawnCli(['compare', '--json', '--ram', '8', '--buffers', 'device', '--no-mapping']);
    expect(r.code, r.err).toBe(0);
    const rep = JSON.parse(r.out) as CompareReport;
    expect(rep.buffers[0].rows.find((x) => x.layout === 'phyr')?.entries).toBe(1);
  });
});
