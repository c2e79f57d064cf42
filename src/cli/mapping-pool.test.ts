// The mapping section on worker threads: the same report as in one thread (times aside), errors
// carried back as the kind of error they were, and the default number of workers.
import { describe, expect, it } from 'vitest';
import { GiB, MiB } from '../base/index.ts';
import {
  MAPPING_CONFIG_NAMES, compareMappingOptions, runCompare, runCompareAsync, type CompareOptions, type CompareReport,
} from '../scenario/index.ts';
import { RUN_FIRST, createMappingPool, defaultJobs, runOrder, wantsDefaultWorkers } from './mapping-pool.ts';
import { runCli } from './cli-sync.ts';
import { runCliAsync } from './program.ts';
import { captureIo } from '../../test/fixtures/cli.ts';


/** The report without its timing fields (every key ending in Ms). */
function untimed(json: string): unknown {
  return JSON.parse(json, (k: string, v: unknown) => (/Ms$/.test(k) ? undefined : v));
}

describe('phyr compare on worker threads', () => {
  it('runCompareAsync on 2 workers + this thread gives runCompare\'s report, rows in configuration order, times aside', async () => {
    const opts: CompareOptions = {
      ramGiB: 8, seed: 3, deviceGiB: 1, mapping: true, verifyWindows: 4,
      bufferLen: { anon: 4 * MiB, thp: 8 * MiB, hugetlb: GiB, device: 4 * MiB },
    };
    const one = runCompare(opts);
    const pool = createMappingPool(2)!;
    let par: CompareReport;
    try {
      par = await runCompareAsync(opts, undefined, pool);
    } finally {
      await pool.close();
    }
    expect(untimed(JSON.stringify(par))).toEqual(untimed(JSON.stringify(one)));
    expect(par.mapping?.rows.map((r) => r.config)).toEqual(MAPPING_CONFIG_NAMES.flatMap((c) => Array(4 * 4).fill(c)));
  }, 120_000);

  it('the CLI\'s worker path prints what runCli prints (JSON, times aside)', async () => {
    const args = ['compare', '--json', '--ram', '8', '--buffers', 'device', '--configs', 'untrusted,p2p-switch,no-iommu'];
    const one = captureIo();
    expect(runCli(args, one)).toBe(0);
    const par = captureIo();
    expect(await runCliAsync([...args, '--jobs', '2'], par)).toBe(0);
    expect(par.err()).toBe('');
    expect(untimed(par.out())).toEqual(untimed(one.out()));
  }, 60_000);

  it('a configuration\'s RangeError comes back as a RangeError (the CLI makes it a usage error)', async () => {
    const pool = createMappingPool(1);
    expect(pool).not.toBeNull();
    const o = { ...compareMappingOptions({ ramGiB: 8, buffers: ['device'], bufferLen: { device: MiB } }), verifyWindows: 0 };
    try {
      await expect(pool!.run(o, ['no-iommu'], () => undefined)).rejects.toThrow(RangeError);
      await expect(pool!.run(o, ['no-iommu'], () => undefined)).rejects.toThrow(/one report only/);
    } finally {
      await pool!.close();
    }
  }, 60_000);
});

describe('which configuration first', () => {
  it('the costliest first, every configuration once; names RUN_FIRST does not know keep report order, last', () => {
    expect(runOrder([...MAPPING_CONFIG_NAMES]).map((i) => MAPPING_CONFIG_NAMES[i])).toEqual([...RUN_FIRST]);
    expect([...RUN_FIRST].sort()).toEqual([...MAPPING_CONFIG_NAMES].sort());
    expect(runOrder(['no-iommu', 'untrusted', 'force-bounce'])).toEqual([1, 0, 2]);
    expect(runOrder(['x', 'no-iommu', 'y'] as never)).toEqual([1, 0, 2]);
  });
});

describe('how many workers', () => {
  it('one per CPU but the main thread\'s (1 on 2 CPUs, not 2), at most 4 and one per configuration; none on one CPU', () => {
    expect(defaultJobs(7, 2)).toBe(1);
    expect(defaultJobs(7, 4)).toBe(3);
    expect(defaultJobs(7, 16)).toBe(4);
    expect(defaultJobs(3, 16)).toBe(3);
    expect(defaultJobs(7, 1)).toBe(0);
    expect(defaultJobs(0, 8)).toBe(0);
  });

  it('main.ts starts them early only for a compare with the default mapping section', () => {
    expect(wantsDefaultWorkers(['compare'])).toBe(true);
    expect(wantsDefaultWorkers(['compare', '--json', '--seed', '3'])).toBe(true);
    for (const a of [[], ['help', 'compare'], ['compare', '--no-mapping'], ['compare', '--jobs', '1'], ['compare', '--configs=no-iommu'], ['compare', '-h']]) {
      expect(wantsDefaultWorkers(a), a.join(' ')).toBe(false);
    }
  });
});
