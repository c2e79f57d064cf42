// The web view in a real browser: Debian's chromium (playwright-core) on the static build served by
// a plain HTTP server. The page loads without console errors, runs two examples to the end, a click
// on a byte shows the same addresses as the library's trace, the hugetlb pools are drawn where the
// library put them, Play / Pause step the run over time, and each panel is photographed under
// test-output/web/. Waits are on explicit ready markers (data-state), never on sleeps, except where
// a test checks that nothing happens for a while (after Pause).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HUGETLB_BYTES, hugetlbSizes, iommuGetDomainForDev, iommufdIoasOf, type HugetlbSize } from '../../src/index.ts';
import { dumpTablePage } from '../../src/iommu/index.ts';
import { ScenarioRunner, parseScenario } from '../../src/scenario/file/index.ts';
import { renderTrace, traceBuffer } from '../../src/scenario/trace/index.ts';
import { cli } from '../fixtures/cli.ts';
import { CHROMIUM, CHROMIUM_ARGS, REPO, WEB_OUTPUT, buildWeb, removeDir, requireChromium, serveStatic } from '../fixtures/web.ts';

const PANELS = ['steps', 'memory', 'layouts', 'bytes', 'trace', 'pci', 'iommu', 'counters', 'events'];
const WAIT = { timeout: 45_000 };

let dir = '';
let server: Server | null = null;
let url = '';
let requests: string[] = [];
let browser: Browser | null = null;

beforeAll(async () => {
  requireChromium();
  dir = await buildWeb();
  ({ server, url, requests } = await serveStatic(dir));
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 60_000 });
  mkdirSync(WEB_OUTPUT, { recursive: true });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await new Promise<void>((ok) => (server ? server.close(() => ok()) : ok()));
  if (dir) removeDir(dir);
});

/** The example's text and a library run of it after `steps` steps (all: to the end). */
function libraryRun(example: string, steps = Infinity): { runner: ScenarioRunner; pools: Array<{ pool: string; start: number; end: number }> } {
  const runner = new ScenarioRunner(parseScenario(readFileSync(join(REPO, 'examples', `${example}.yaml`), 'utf8'), { source: `${example}.yaml` }));
  const m = runner.machine;
  // the pools are filled at boot: every page is free before step 0
  const pools = hugetlbSizes(m.pageSize).flatMap((size) => m.hugetlbPool(size).free.map((pfn) => ({ pool: size, start: pfn * m.pageSize, end: pfn * m.pageSize + m.hugetlbPool(size).len })));
  for (let i = 0; i < steps && runner.step() !== null; i++) { /* step */ }
  return { runner, pools };
}

/**
 * The hugetlb bands of the memory map against the library's pools: one band per run of adjacent pool
 * pages of one state (in use / free), nested in the bottom strip of the RAM box the pages come from,
 * at the place and with the width the pages have in that box. Returns the bands.
 */
async function checkPoolBands(page: Page, example: string, steps = Infinity): Promise<Array<{ start: number; end: number; inUse: boolean; x: number; w: number }>> {
  const { runner, pools } = libraryRun(example, steps);
  const m = runner.machine;
  const free = new Set(hugetlbSizes(m.pageSize).flatMap((size) => m.hugetlbPool(size).free.map((pfn) => pfn * m.pageSize)));
  const expected: Array<{ pool: string; start: number; end: number; inUse: boolean }> = [];
  for (const p of pools.sort((a, b) => a.start - b.start)) {
    const inUse = !free.has(p.start);
    const last = expected[expected.length - 1];
    if (last && last.end === p.start && last.pool === p.pool && last.inUse === inUse) last.end = p.end;
    else expected.push({ pool: p.pool, start: p.start, end: p.end, inUse });
  }
  expect(expected.length).toBeGreaterThan(0);
  const boxes = (sel: string) => page.locator(sel).evaluateAll((gs) => gs.map((g) => {
    const r = g.querySelector('rect')!;
    const d = (k: string): string => g.getAttribute(`data-${k}`) ?? '';
    return {
      pool: d('pool'), kind: d('kind'), start: Number(d('start')), end: Number(d('end')), cls: g.getAttribute('class') ?? '', title: g.querySelector('title')?.textContent ?? '',
      x: Number(r.getAttribute('x')), y: Number(r.getAttribute('y')), w: Number(r.getAttribute('width')), h: Number(r.getAttribute('height')),
    };
  }));
  const drawn = await boxes('#panel-memory g.hugetlb');
  const ram = await boxes('#panel-memory g.region[data-kind="ram"]');
  expect(drawn.map((d) => [d.pool, d.start, d.end, d.cls])).toEqual(expected.map((e) => [e.pool, e.start, e.end, `hugetlb ${e.inUse ? 'in-use' : 'free'}`]));
  for (const [i, d] of drawn.entries()) {
    const r = ram.find((q) => d.start >= q.start && d.end <= q.end);
    expect(r, `the RAM region holding ${d.start.toString(16)}`).toBeDefined();
    const span = r!.w + 1; // a region box is drawn 1 unit narrower than its share, as the bands are
    const at = (a: number): number => r!.x + ((a - r!.start) / (r!.end - r!.start)) * span;
    expect(d.x).toBeCloseTo(at(d.start), 2);
    expect(d.w + 1).toBeCloseTo(at(d.end) - at(d.start), 2);
    // nested in the RAM box, below its top part (which stays visible, with its name)
    expect(d.y).toBeGreaterThanOrEqual(r!.y + 12);
    expect(d.y + d.h).toBeLessThanOrEqual(r!.y + r!.h);
    // the text alternative of the colour
    const pages = (expected[i].end - expected[i].start) / HUGETLB_BYTES[expected[i].pool as HugetlbSize];
    expect(d.title).toMatch(new RegExp(`^hugetlb ${d.pool} pool in \\w+: ${pages} pages? ${expected[i].inUse ? 'in use' : 'free'}, 0x${d.start.toString(16)}-0x${(d.end - 1).toString(16)}$`));
  }
  const legend = await page.locator('#panel-memory .legend').first().textContent();
  expect(legend).toContain('hugetlb page in use');
  expect(legend).toContain('hugetlb page free');
  // and the text form of the map: the regions table lists the pools' pages
  const table = await page.locator('#panel-memory table[aria-label="Memory regions"]').textContent();
  for (const e of expected) expect(table).toContain(`0x${e.start.toString(16)}`);
  return drawn.map((d, i) => ({ start: d.start, end: d.end, inUse: expected[i].inUse, x: d.x, w: d.w }));
}

/** Presses Step n times, each step drawn (ok in the steps panel, the status ready) before the next. */
async function stepTimes(page: Page, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    await page.click('#step');
    await page.waitForSelector(`#panel-steps[data-state="ready"] li:nth-child(${i + 1}).ok`, { ...WAIT, state: 'attached' });
    await page.waitForSelector('#status[data-state="ready"]', { ...WAIT, state: 'attached' });
  }
}

/** A step's lines: [status, unmet line or null, counters line or null]. */
type StepLines = [string, string | null, string | null];

/** phyr run's lines of each step of file (args: --config, --seed). */
function printed(file: string, args: string[] = []): StepLines[] {
  const r = cli(['run', file, ...args]);
  const steps: StepLines[] = [];
  for (const line of r.out.split('\n')) {
    const head = /^\[\s*\d+\] \S+\s+(ok \(\w+ expected\)|ok|FAILED) /.exec(line);
    if (head) steps.push([head[1], null, null]);
    else if (line.startsWith('       unmet: ')) steps[steps.length - 1][1] = line.trim();
    else if (line.startsWith('       counters: ')) steps[steps.length - 1][2] = line.trim();
  }
  return steps;
}

/** The same lines as the steps panel shows them. */
function shownSteps(page: Page): Promise<StepLines[]> {
  return page.locator('#panel-steps li').evaluateAll((lis) => lis.map((li) => [
    li.querySelector('.badge')?.textContent ?? '', li.querySelector('.unmet')?.textContent ?? null, li.querySelector('.counters')?.textContent ?? null,
  ] as StepLines));
}

/** A page at 1280x800 that records console errors and uncaught exceptions (initScript: run before the page's own). */
async function openPage(query = '', initScript?: string): Promise<{ page: Page; errors: string[] }> {
  const page = await browser!.newPage({ viewport: { width: 1280, height: 800 } });
  if (initScript !== undefined) await page.addInitScript({ content: initScript });
  const errors: string[] = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(String(e)));
  page.setDefaultTimeout(WAIT.timeout);
  await page.goto(`${url}${query}`);
  await page.waitForSelector('html[data-ready="true"]', WAIT);
  return { page, errors };
}

describe('the web view in chromium', () => {
  it('loads from a plain static server (relative URLs) with no console errors, and every panel is there', async () => {
    const { page, errors } = await openPage();
    for (const p of PANELS) await expect(page.locator(`[data-panel="${p}"] h2`).isVisible()).resolves.toBe(true);
    // the worker and the assets came from the static server, by relative URLs
    expect(requests.some((r) => /\/assets\/worker-.*\.js$/.test(r))).toBe(true);
    expect(requests.some((r) => /\/assets\/index-.*\.js$/.test(r))).toBe(true);
    // every example of examples/ is bundled
    const bundled = await page.locator('#example option').allTextContents();
    expect(bundled).toEqual(expect.arrayContaining(['hugepage-1g.yaml', 'p2p-topology.yaml']));
    // a pasted scenario that does not validate: the field path, the bad value and what was expected
    await page.click('#paste-box summary');
    await page.fill('#paste', 'name: x\nmachine: { ramBytes: lots }\nsteps: []\n');
    await page.click('#load-paste');
    await page.waitForSelector('#status[data-state="error"]', { ...WAIT, state: 'attached' });
    expect(await page.textContent('#status')).toMatch(/machine\.ramBytes: 'lots' is not a size \(expected a size/);
    // an uploaded file
    await page.setInputFiles('#upload', join(REPO, 'examples', 'lazy-stale-iotlb.yaml'));
    await page.waitForSelector('#status[data-state="ready"]', { ...WAIT, state: 'attached' });
    expect(await page.textContent('#status')).toMatch(/^lazy-stale-iotlb: 0 of 8 steps ran/);
    expect(errors).toEqual([]);
    await page.close();
  });

  it('runs the 1 GiB hugepage example to the end (the model in the worker; long lists virtualised)', async () => {
    const { page, errors } = await openPage('?example=hugepage-1g');
    await page.waitForSelector('#status[data-state="ready"]', { ...WAIT, state: 'attached' });
    await page.click('#run');
    await page.waitForSelector('#status[data-state="done"]', { ...WAIT, state: 'attached' });
    const statuses = await page.locator('#panel-steps li').evaluateAll((lis) => lis.map((li) => li.className));
    expect(statuses.length).toBeGreaterThan(5);
    expect(statuses.every((c) => c.startsWith('ok'))).toBe(true);
    // the layouts of the 1 GiB buffer after the run (unmapped, unpinned, still populated): the page
    // array has 262,144 entries but only the rows in view are in the DOM
    await page.waitForSelector('#panel-layouts .layout .vlist[data-state="ready"]', { ...WAIT, state: 'attached' });
    const rows = await page.locator('#panel-layouts .layout').first().locator('.vrow').count();
    const total = await page.locator('#panel-layouts .layout').first().locator('.vlist').getAttribute('aria-rowcount');
    expect(Number(total)).toBeGreaterThan(1000);
    expect(rows).toBeLessThan(100);
    // the 1 GiB pool page, in use (still mapped), drawn in the RAM it was carved from
    const bands = await checkPoolBands(page, 'hugepage-1g');
    expect(bands.map((b) => b.inUse)).toEqual([true]);
    for (const p of ['steps', 'memory', 'layouts', 'counters', 'events']) {
      await page.locator(`[data-panel="${p}"]`).screenshot({ path: join(WEB_OUTPUT, `hugepage-1g-${p}.png`) });
    }
    expect(errors).toEqual([]);
    await page.close();
  });

  it('steps the P2P example; a click on a byte shows the same trace as phyr trace, marked in every panel; then runs to the end', async () => {
    const example = 'p2p-topology';
    const text = readFileSync(join(REPO, 'examples', `${example}.yaml`), 'utf8');
    const STEPS = 7; // both P2P mappings (via the switch, via the host bridge) are live
    const { page, errors } = await openPage(`?example=${example}`);
    await page.waitForSelector('#status[data-state="ready"]', { ...WAIT, state: 'attached' });
    await stepTimes(page, STEPS);
    await page.click('#panel-bytes button.b[data-offset="16"]');
    await page.waitForSelector('#panel-trace[data-state="ready"] pre.trace-text', { ...WAIT, state: 'attached' });
    const shown = await page.locator('#panel-trace pre.trace-text').textContent();

    // the library's trace of the same byte at the same step: what `phyr trace` prints
    const runner = new ScenarioRunner(parseScenario(text, { source: `${example}.yaml` }));
    for (let i = 0; i < STEPS; i++) expect(runner.step()?.ok).toBe(true);
    const expected = renderTrace(traceBuffer(runner, 'vram', 16));
    expect(shown).toBe(expected);
    // and the command line: phyr trace FILE --buffer vram --offset 16 --step 6 (after the 7th step)
    const printed = cli(['trace', join(REPO, 'examples', `${example}.yaml`), '--buffer', 'vram', '--offset', '16', '--step', String(STEPS - 1)]);
    expect(printed.code).toBe(0);
    expect(printed.out.trimEnd()).toBe(shown?.trimEnd());
    // a real trace: the byte is in gpu0's BAR, reached by bus address through the switch and by IOVA
    expect(shown).toMatch(/bus address/);
    expect(shown).toMatch(/IOVA 0x[0-9a-f]+/);

    // every panel marks the traced addresses
    const hits = async (sel: string): Promise<number> => page.locator(`${sel} .vrow.hit`).count();
    await page.waitForSelector('#panel-iommu .vlist[data-state="ready"] .vrow.hit', { ...WAIT, state: 'attached' });
    expect(await hits('#panel-layouts')).toBeGreaterThan(0);
    expect(await hits('#panel-iommu')).toBeGreaterThan(0);
    expect(await page.locator('#panel-memory text.traced').count()).toBeGreaterThan(0);
    expect(await page.locator('#panel-bytes button.b.hit').getAttribute('data-offset')).toBe('16');
    // P2P path between the provider and a client under the same switch
    await page.selectOption('#panel-pci select >> nth=0', 'gpu0');
    await page.selectOption('#panel-pci select >> nth=1', 'nvme0');
    await page.click('#panel-pci button:has-text("Show P2P path")');
    await page.waitForSelector('#p2p-result:has-text("PCI_P2PDMA_MAP_BUS_ADDR")', { ...WAIT, state: 'attached' });
    for (const p of PANELS) await page.locator(`[data-panel="${p}"]`).screenshot({ path: join(WEB_OUTPUT, `${example}-${p}.png`) });

    // the keyboard: the next byte, then Enter, traces byte 17
    await page.focus('#panel-bytes button.b[data-offset="16"]');
    await page.keyboard.press('ArrowRight');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#panel-trace[data-state="ready"] pre.trace-text:has-text("byte 17")', { ...WAIT, state: 'attached' });

    await page.click('#run');
    await page.waitForSelector('#status[data-state="done"]', { ...WAIT, state: 'attached' });
    const statuses = await page.locator('#panel-steps li').evaluateAll((lis) => lis.map((li) => li.className));
    expect(statuses.every((c) => c.startsWith('ok'))).toBe(true);
    // back to start: a fresh machine before step 0
    await page.click('#reset');
    await page.waitForSelector('#status[data-state="ready"]', { ...WAIT, state: 'attached' });
    expect(await page.locator('#panel-steps li.ok').count()).toBe(0);
    expect(errors).toEqual([]);
    await page.close();
  });
  it('draws the hugetlb pool pages as bands in the RAM they come from (in use and free, to scale), and a traced byte on them', async () => {
    // two 1 GiB pool pages carved from the top of ram1 (4 GiB-9 GiB): the lower one in use after the mmap
    const { page, errors } = await openPage('?example=dma-mask-32bit');
    await page.waitForSelector('#status[data-state="ready"]', { ...WAIT, state: 'attached' });
    await page.click('#step');
    await page.waitForSelector('#panel-steps[data-state="ready"] li:nth-child(1).ok', { ...WAIT, state: 'attached' });
    await page.waitForSelector('#status[data-state="ready"]', { ...WAIT, state: 'attached' });
    const bands = await checkPoolBands(page, 'dma-mask-32bit', 1);
    expect(bands.map((b) => [b.start.toString(16), b.inUse])).toEqual([['1c0000000', true], ['200000000', false]]);
    // a clicked byte of the buffer: its dashed line is on the page in use
    await page.click('#panel-bytes button.b[data-offset="16"]');
    await page.waitForSelector('#panel-trace[data-state="ready"] pre.trace-text', { ...WAIT, state: 'attached' });
    await page.waitForSelector('#panel-memory text.traced', { ...WAIT, state: 'attached' });
    const lineX = Number(await page.locator('#panel-memory svg line[stroke="var(--hit-line)"]').first().getAttribute('x1'));
    expect(lineX).toBeGreaterThanOrEqual(bands[0].x);
    expect(lineX).toBeLessThanOrEqual(bands[0].x + bands[0].w);
    expect(await page.locator('#panel-memory text.traced').textContent()).toBe('\u25C6 traced byte 0x1c0000010');
    await page.locator('[data-panel="memory"]').screenshot({ path: join(WEB_OUTPUT, 'dma-mask-32bit-memory.png') });
    expect(errors).toEqual([]);
    await page.close();
  });

  it('a file uploaded again (the same file, edited or not) is loaded again', async () => {
    const { page, errors } = await openPage();
    const text = readFileSync(join(REPO, 'examples', 'lazy-stale-iotlb.yaml'), 'utf8');
    const file = join(WEB_OUTPUT, 'reupload.yaml');
    writeFileSync(file, text);
    const statusIs = (s: string) => page.waitForSelector(`#status[data-state="ready"]:text-is("${s}")`, { ...WAIT, state: 'attached' });
    await page.setInputFiles('#upload', file);
    await statusIs('lazy-stale-iotlb: 0 of 8 steps ran');
    await page.click('#step');
    await statusIs('lazy-stale-iotlb: 1 of 8 steps ran');
    // the same file again, unchanged: a fresh run before step 0
    await page.setInputFiles('#upload', file);
    await statusIs('lazy-stale-iotlb: 0 of 8 steps ran');
    // edited in place (another name, one step fewer) and chosen again: the new text is what runs
    writeFileSync(file, text.replace('name: lazy-stale-iotlb', 'name: lazy-edited').replace(/ {2}- op: wait[^\n]*\n {4}ms: 10\n/, ''));
    await page.setInputFiles('#upload', file);
    await statusIs('lazy-edited: 0 of 7 steps ran');
    expect(errors).toEqual([]);
    await page.close();
  });

  it('draws the swiotlb pool up to its end (not its last byte), on the scale of the RAM box it lies in', async () => {
    // a 1 MiB pool at the top of 1 GiB (narrower than the 2 units a band is at least), and a 64 MiB one
    for (const [example, size] of [['swiotlb-exhaustion', 2 ** 20], ['dma-mask-32bit', 64 * 2 ** 20]] as const) {
      const { page, errors } = await openPage(`?example=${example}`);
      await page.waitForSelector('#status[data-state="ready"]', { ...WAIT, state: 'attached' });
      // where the pool is: the regions table (the text form of the map)
      const row = await page.locator('#panel-memory table[aria-label="Memory regions"] tr:has(td:text-is("swiotlb"))').locator('td').allTextContents();
      const [start, end] = [Number(row[2]), Number(row[3])];
      expect(end - start).toBe(size);
      const ram = await page.locator('#panel-memory g.region[data-kind="ram"]').evaluateAll((gs) => gs.map((g) => {
        const r = g.querySelector('rect')!;
        return { start: Number(g.getAttribute('data-start')), end: Number(g.getAttribute('data-end')), x: Number(r.getAttribute('x')), w: Number(r.getAttribute('width')) };
      }));
      const box = ram.find((r) => start >= r.start && end <= r.end)!;
      expect(box).toBeDefined();
      // a region box is drawn 1 unit narrower than its share
      const at = (a: number): number => box.x + ((a - box.start) / (box.end - box.start)) * (box.w + 1);
      const band = page.locator('#panel-memory svg rect[fill="var(--swiotlb)"]');
      expect(await band.count()).toBe(1);
      const x = Number(await band.getAttribute('x')), w = Number(await band.getAttribute('width'));
      // to a billionth of a unit (one byte of a 1 GiB box of some 900 units is about 1e-6 of a unit):
      // the band ends where the pool ends; a band narrower than 2 units is widened towards its start
      expect(x + w).toBeCloseTo(at(end), 9);
      expect(x).toBeCloseTo(Math.min(at(start), at(end) - 2), 9);
      expect(w).toBeGreaterThanOrEqual(2);
      expect(errors).toEqual([]);
      await page.close();
    }
  });

  it('asks the worker once for the physical runs of the buffer, and once for the IOMMU table page, each time they are drawn', async () => {
    // every request for rows the page sends to the worker, by source
    const { page, errors } = await openPage('?example=lazy-stale-iotlb', `
      window.rowsAsked = [];
      const post = Worker.prototype.postMessage;
      Worker.prototype.postMessage = function (msg, ...rest) {
        if (msg && msg.req && msg.req.type === 'rows') window.rowsAsked.push(msg.req.source);
        return post.call(this, msg, ...rest);
      };`);
    await page.waitForSelector('#status[data-state="ready"]', { ...WAIT, state: 'attached' });
    await stepTimes(page, 2);
    const asked = (prefix: string): Promise<string[]> => page.evaluate(`window.rowsAsked.filter((s) => s.startsWith(${JSON.stringify(prefix)}))`) as Promise<string[]>;
    await page.waitForSelector('#panel-memory .vlist[data-state="ready"]', { ...WAIT, state: 'attached' });
    const before = (await asked('phys:buf')).length;
    const tableBefore = (await asked('pt:')).length;
    expect(before).toBeGreaterThan(0);
    expect(tableBefore).toBeGreaterThan(0);
    await page.click('#step');
    await page.waitForSelector('#panel-steps[data-state="ready"] li:nth-child(3).ok', { ...WAIT, state: 'attached' });
    await page.waitForSelector('#status[data-state="ready"]', { ...WAIT, state: 'attached' });
    await page.waitForSelector('#panel-memory .vlist[data-state="ready"]', { ...WAIT, state: 'attached' });
    await page.waitForSelector('#panel-iommu .vlist[data-state="ready"]', { ...WAIT, state: 'attached' });
    expect(await page.locator('#panel-memory .vlist .vrow').count()).toBeGreaterThan(0);
    expect((await asked('phys:buf')).length - before).toBe(1);
    expect((await asked('pt:')).length - tableBefore).toBe(1);
    expect(errors).toEqual([]);
    await page.close();
  });

  it('lists the live IOASes of iommufd-shared-ioas as the library has them after each step, and a device attached shows its hw_pagetable\'s domain', async () => {
    const example = 'iommufd-shared-ioas';
    // every request the page sends to the worker: the IOAS section must add none (the snapshot has it all)
    const { page, errors } = await openPage(`?example=${example}`, `
      window.asked = [];
      const post = Worker.prototype.postMessage;
      Worker.prototype.postMessage = function (msg, ...rest) {
        if (msg && msg.req) window.asked.push(msg.req.type === 'rows' ? 'rows:' + msg.req.source.split(':')[0] : msg.req.type);
        return post.call(this, msg, ...rest);
      };`);
    await page.waitForSelector('#status[data-state="ready"]', { ...WAIT, state: 'attached' });
    const asked = (): Promise<string[]> => page.evaluate('window.asked.slice()') as Promise<string[]>;
    const { runner } = libraryRun(example, 0);
    const N = runner.scenario.steps.length;
    const section = '#panel-iommu .ioases';
    /** The IOASes the IOMMU panel lists, as data (the rows carry what they show). */
    const shown = () => page.locator(`${section} .ioas`).evaluateAll((boxes) => boxes.map((b) => ({
      name: b.getAttribute('data-ioas'),
      iovaAlignment: Number(b.getAttribute('data-alignment')),
      facts: b.querySelector('.ioas-facts')?.textContent ?? '',
      hwpts: [...b.querySelectorAll('tr.hwpt')].map((r) => ({
        id: Number(r.getAttribute('data-hwpt')), auto: r.getAttribute('data-auto') === 'true',
        devices: (r.getAttribute('data-devices') ?? '').split(',').filter((d: string) => d !== ''), text: r.textContent,
      })),
      areas: [...b.querySelectorAll('tr.area')].map((r) => ({
        iova: r.getAttribute('data-iova'), len: Number(r.getAttribute('data-len')), mapping: r.getAttribute('data-mapping') || null,
        pinned: r.getAttribute('data-pinned') === 'true', text: r.textContent,
      })),
    })));
    /** The library's IOASes as the panel should list them. */
    const expected = () => [...runner.ioases.values()].map((x) => ({
      name: x.name, iovaAlignment: x.iovaAlignment, devices: x.devices,
      hwpts: x.hwpts.map((h) => ({ id: h.id, auto: h.auto, devices: [...h.devices] })),
      areas: x.areas.map((a) => ({ iova: `0x${a.iova.toString(16)}`, len: a.len, mapping: a.mapping, pinned: a.pinned })),
    }));
    /** The Device picker on dev: its option text, and the facts line once drawn for dev's domain as the library has it. */
    const pick = async (dev: string): Promise<{ option: string; facts: string; hwpt: string }> => {
      const d = iommuGetDomainForDev(runner.machine.device(dev))!;
      await page.selectOption('#panel-iommu select[data-key="select:Device"]', dev);
      await page.waitForSelector(`#panel-iommu p.domain-facts:has-text("root table 0x${d.rootPfn!.toString(16)}")`, { ...WAIT, state: 'attached' });
      await page.waitForSelector('#panel-iommu .vlist[data-state="ready"]', { ...WAIT, state: 'attached' });
      return {
        option: (await page.locator(`#panel-iommu select[data-key="select:Device"] option[value="${dev}"]`).textContent()) ?? '',
        facts: (await page.locator('#panel-iommu p.domain-facts').textContent()) ?? '',
        hwpt: (await page.locator('#panel-iommu p.domain-facts').getAttribute('data-hwpt')) ?? '',
      };
    };
    /** The library's hw_pagetable of an attached device: it is the domain iommuGetDomainForDev gives. */
    const libHwpt = (dev: string) => {
      const d = iommuGetDomainForDev(runner.machine.device(dev))!;
      const h = iommufdIoasOf(runner.machine.device(dev))?.hwpts.find((x) => x.domain === d);
      expect(h, `${dev}'s domain is a hw_pagetable's`).toBeDefined();
      return { h: h!, d };
    };
    expect(await page.locator(section).count()).toBe(0);
    let sawDetach = false, sawUnmap = false, sawDestroy = false;
    for (let k = 1; k <= N; k++) {
      const before = (await asked()).length;
      await page.click('#step');
      await page.waitForSelector(`#panel-steps[data-state] li:nth-child(${k}).ok`, { ...WAIT, state: 'attached' });
      await page.waitForSelector(`#status[data-state="${k === N ? 'done' : 'ready'}"]`, { ...WAIT, state: 'attached' });
      const r = runner.step()!;
      expect(r.ok).toBe(true);
      const op = runner.scenario.steps[k - 1].op;
      const want = expected();
      if (want.length === 0) {
        // no IOAS live: nothing of them is shown
        expect(await page.locator(section).count(), `after step ${k - 1} (${op})`).toBe(0);
        if (op === 'ioas-destroy') sawDestroy = true;
        continue;
      }
      expect(await page.locator(section).count(), `after step ${k - 1} (${op})`).toBe(1);
      expect(await page.getAttribute(section, 'data-step')).toBe(String(k));
      const got = await shown();
      expect(got.map(({ name, iovaAlignment, hwpts, areas }) => ({
        name, iovaAlignment, hwpts: hwpts.map(({ id, auto, devices }) => ({ id, auto, devices })), areas: areas.map(({ iova, len, mapping, pinned }) => ({ iova, len, mapping, pinned })),
      })), `after step ${k - 1} (${op})`).toEqual(want.map(({ name, iovaAlignment, hwpts, areas }) => ({ name, iovaAlignment, hwpts, areas })));
      // what the step itself reported of its IOAS (data.ioas) is what is listed
      const data = (r.data as { ioas?: { name: string; hwpts: unknown; areas: ReadonlyArray<{ iova: bigint }> } } | undefined)?.ioas;
      if (data !== undefined) {
        const g = got.find((x) => x.name === data.name)!;
        expect(g.hwpts.map(({ id, auto, devices }) => ({ id, auto, devices }))).toEqual(data.hwpts);
        expect(g.areas.map((a) => a.iova)).toEqual(data.areas.map((a) => `0x${a.iova.toString(16)}`));
      }
      // the text says it too
      for (const [i, x] of want.entries()) {
        expect(got[i].facts).toContain(`IOAS ${x.name}: IOVA alignment ${x.iovaAlignment === 1 ? '1 (no domain yet)' : `4 KiB (0x${x.iovaAlignment.toString(16)})`}`);
        for (const [j, h] of x.hwpts.entries()) expect(got[i].hwpts[j].text).toBe(`HWPT ${h.id}${h.auto ? 'automatic (by the first attach to the IOAS)' : 'own (IOMMU_HWPT_ALLOC)'}${h.devices.join(', ') || 'none'}`);
        for (const [j, a] of x.areas.entries()) expect(got[i].areas[j].text).toContain(`${a.iova}0x${(BigInt(a.iova) + BigInt(a.len) - 1n).toString(16)}64 KiB${a.mapping}pinned`);
      }
      if (op === 'ioas-attach' && k - 1 === 4) {
        // both devices on HWPT 3: the picker and the facts line show its domain and page table
        for (const dev of ['nvme0', 'nic0']) {
          const { h, d } = libHwpt(dev);
          const p = await pick(dev);
          expect(p.option).toBe(`${dev} (HWPT ${h.id} of IOAS vm)`);
          expect(p.hwpt).toBe(String(h.id));
          expect(p.facts).toMatch(new RegExp(`^domain ${d.type}, HWPT ${h.id} of IOAS vm \\(automatic; devices nvme0, nic0\\), .*root table 0x${h.domain.rootPfn!.toString(16)} \\(HWPT ${h.id}'s page table\\)`));
        }
      }
      if (op === 'ioas-map') {
        // the step and, for the IOMMU panel, what it asked before: one table page and one request per list
        await page.waitForSelector('#panel-iommu .vlist[data-state="ready"]', { ...WAIT, state: 'attached' });
        const sent = (await asked()).slice(before);
        expect(sent.filter((x) => x === 'step')).toHaveLength(1);
        for (const x of ['table', 'rows:iova', 'rows:iotlb', 'rows:pt']) expect(sent.filter((y) => y === x), x).toHaveLength(1);
      }
      if (op === 'ioas-map') await page.locator('[data-panel="iommu"]').screenshot({ path: join(WEB_OUTPUT, `${example}-iommu.png`) });
      if (op === 'ioas-detach' && !sawDetach) {
        // the first detach (nic0); the second (nvme0) empties the IOAS before its destroy
        sawDetach = true;
        expect(want[0].hwpts).toEqual([{ id: want[0].hwpts[0].id, auto: true, devices: ['nvme0'] }]);
        // nic0 is back on its DMA-API domain: no hw_pagetable named; nvme0 still on the IOAS's
        const back = await pick('nic0');
        expect(back.option).toBe('nic0');
        expect(back.hwpt).toBe('');
        expect(back.facts).toMatch(new RegExp(`^domain ${iommuGetDomainForDev(runner.machine.device('nic0'))!.type}, format`));
        expect((await pick('nvme0')).option).toBe(`nvme0 (HWPT ${libHwpt('nvme0').h.id} of IOAS vm)`);
      }
      if (op === 'ioas-unmap') {
        sawUnmap = true;
        expect(got[0].areas).toEqual([]);
        expect(await page.locator(`${section} .ioas-no-area`).count()).toBe(1);
      }
    }
    expect([sawDetach, sawUnmap, sawDestroy]).toEqual([true, true, true]);
    // after the destroy nvme0 is on its DMA-API domain again
    expect((await pick('nvme0')).hwpt).toBe('');
    // back to start: no IOAS; three steps in, the new one (no hw_pagetable, no area) is listed
    await page.click('#reset');
    await page.waitForSelector('#status[data-state="ready"]', { ...WAIT, state: 'attached' });
    expect(await page.locator(section).count()).toBe(0);
    await stepTimes(page, 3);
    expect((await shown()).map((x) => [x.name, x.hwpts.length, x.areas.length])).toEqual([['vm', 0, 0]]);
    expect(errors).toEqual([]);
    await page.close();
  });

  it('a 64 KiB granule: clicking a table entry opens the table page it points to (the page asked for the 4 KiB frame and got an error)', async () => {
    const { page, errors } = await openPage('?example=arm64-64k-smmu');
    await page.waitForSelector('#status[data-state="ready"]', { ...WAIT, state: 'attached' });
    await stepTimes(page, 3);
    // the library's root table: its first entry points at the level-1 table page, a machine page of 64 KiB
    const { runner } = libraryRun('arm64-64k-smmu', 3);
    const d = iommuGetDomainForDev(runner.machine.device('nvme0'))!;
    const root = dumpTablePage(d, d.rootPfn!);
    const first = root.entries.find((e) => e.kind === 'table')!;
    const child = `0x${(first.oa / 65536n).toString(16)}`;
    const tableList = page.locator('#panel-iommu .vlist').nth(2);
    await page.waitForSelector('#panel-iommu .crumbs button', { ...WAIT, state: 'attached' });
    expect(await page.locator('#panel-iommu details summary').textContent()).toBe('The table page\'s 65536 bytes');
    await tableList.locator(`.vrow[data-index="${first.index}"]`).click();
    await page.waitForSelector(`#panel-iommu .crumbs button:text-is("${child}")`, { ...WAIT, state: 'attached' });
    expect(await page.locator('#panel-iommu .crumbs').textContent()).toContain(`level ${root.level - 1}, table page ${child}`);
    expect(errors).toEqual([]);
    await page.close();
  });

  it('the Bytes panel refuses an offset that is not a byte of the buffer, saying why, and goes to a good one', async () => {
    const { page, errors } = await openPage('?example=lazy-stale-iotlb');
    await page.waitForSelector('#status[data-state="ready"]', { ...WAIT, state: 'attached' });
    await stepTimes(page, 2);
    // the library's buffer: 16 KiB, so its last byte is 0x3fff
    const { runner } = libraryRun('lazy-stale-iotlb', 2);
    const len = runner.buffers.get('buf')!.len;
    const firstRow = (): Promise<string | null> => page.locator('#panel-bytes .hex .addr').first().textContent();
    expect(await firstRow()).toBe('+0x000000');
    for (const bad of ['zz', '', '0x', '12abc', '-1', '1e3', `0x${len.toString(16)}`]) {
      await page.fill('#bytes-offset', bad);
      await page.press('#bytes-offset', 'Enter');
      await page.waitForSelector('#bytes-offset-error:not([hidden])', { ...WAIT, state: 'attached' });
      expect(await page.textContent('#bytes-offset-error')).toBe(`Offset must be a byte of buf, 0x0 to 0x${(len - 1).toString(16)} (hex with 0x, or decimal); got ${JSON.stringify(bad)}.`);
      expect(await page.getAttribute('#bytes-offset', 'aria-invalid')).toBe('true');
      expect(await firstRow()).toBe('+0x000000'); // nothing moved
    }
    // a good one, in hex and in decimal: the grid moves there and the message is gone
    await page.fill('#bytes-offset', '0x100');
    await page.click('#panel-bytes button:has-text("Go")');
    await page.waitForSelector('#panel-bytes .hex .addr:text-is("+0x000100")', { ...WAIT, state: 'attached' });
    expect(await page.locator('#bytes-offset-error').isHidden()).toBe(true);
    expect(await page.getAttribute('#bytes-offset', 'aria-invalid')).toBeNull();
    await page.fill('#bytes-offset', String(len - 1));
    await page.press('#bytes-offset', 'Enter');
    await page.waitForSelector(`#panel-bytes .hex .addr:text-is("+0x${(len - 16).toString(16).padStart(6, '0')}")`, { ...WAIT, state: 'attached' });
    expect(errors).toEqual([]);
    await page.close();
  });

  it('keyboard only: Step, Run to end, Back to start and tracing a byte keep the focus where the user is', async () => {
    const { page, errors } = await openPage('?example=lazy-stale-iotlb');
    await page.waitForSelector('#status[data-state="ready"]', { ...WAIT, state: 'attached' });
    const N = libraryRun('lazy-stale-iotlb', 0).runner.scenario.steps.length;
    const focused = (): Promise<string> => page.locator('html').evaluate((h) => {
      const a = h.ownerDocument.activeElement;
      const offset = a?.getAttribute('data-offset');
      return a?.id || (offset ? `byte ${offset}` : a?.tagName ?? 'none');
    });
    const ranNow = async (n: number): Promise<void> => {
      await page.waitForSelector(`#panel-steps[data-state] li:nth-child(${n}).ok`, { ...WAIT, state: 'attached' });
      await page.waitForSelector('#status[data-state="ready"]', { ...WAIT, state: 'attached' });
      expect(await page.textContent('#status')).toBe(`lazy-stale-iotlb: ${n} of ${N} steps ran`);
    };
    // Enter on Step, twice: the second press needs the focus still on Step
    await page.focus('#step');
    await page.keyboard.press('Enter');
    await ranNow(1);
    expect(await focused()).toBe('step');
    await page.keyboard.press('Enter');
    await ranNow(2);
    expect(await focused()).toBe('step');
    // a byte: Enter traces it and the focus stays on it; the arrow keys go on from there
    await page.focus('#panel-bytes button.b[data-offset="0"]');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#panel-trace[data-state="ready"] p.mono:text-is("buf + 0x0")', { ...WAIT, state: 'attached' });
    await page.waitForSelector('#panel-bytes button.b.hit[data-offset="0"]', { ...WAIT, state: 'attached' });
    expect(await focused()).toBe('byte 0');
    await page.keyboard.press('ArrowRight');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#panel-trace[data-state="ready"] p.mono:text-is("buf + 0x1")', { ...WAIT, state: 'attached' });
    await page.waitForSelector('#panel-bytes button.b.hit[data-offset="1"]', { ...WAIT, state: 'attached' });
    expect(await focused()).toBe('byte 1');
    // Clear trace removes itself with the trace: the focus goes back to the byte's cell
    await page.focus('#panel-trace button[data-key="clear-trace"]');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#panel-bytes button.b[data-offset="1"]:not(.hit)', { ...WAIT, state: 'attached' });
    await page.waitForFunction('document.activeElement?.getAttribute("data-offset") === "1"', undefined, WAIT);
    expect(await focused()).toBe('byte 1');
    expect(await page.locator('#panel-trace p.mono').count()).toBe(0);
    // Run to end: the button is disabled at the end, so the focus goes to Back to start
    await page.focus('#run');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#status[data-state="done"]', { ...WAIT, state: 'attached' });
    expect(await focused()).toBe('reset');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#status[data-state="ready"]', { ...WAIT, state: 'attached' });
    expect(await page.textContent('#status')).toBe(`lazy-stale-iotlb: 0 of ${N} steps ran`);
    expect(await focused()).toBe('reset');
    expect(errors).toEqual([]);
    await page.close();
  });

  it('keeps the keyboard focus through a pasted load and in lists and controls that a step or a trace draws anew', async () => {
    const { page, errors } = await openPage();
    /** What has the focus: an id, a list (its label and active row) or the tag. */
    const focused = (): Promise<string> => page.locator('html').evaluate((h) => {
      const a = h.ownerDocument.activeElement;
      if (a?.classList.contains('vlist')) {
        const act = a.querySelector('.vrow.active');
        const desc = a.getAttribute('aria-activedescendant');
        if (!act) return `list ${a.getAttribute('aria-label')} row -`;
        return `list ${a.getAttribute('aria-label')} row ${act.getAttribute('data-index')}${desc === act.id ? '' : ' (not the active descendant)'}`;
      }
      return a?.id || a?.getAttribute('aria-label') || (a?.tagName ?? 'none');
    });
    /** Step pressed in the page itself, so that the focus stays where the test put it. */
    const stepInPlace = async (n: number, state = 'ready'): Promise<void> => {
      await page.locator('#step').evaluate((b) => b.click());
      await page.waitForSelector(`#panel-steps[data-state="${state}"] li:nth-child(${n}).ok`, { ...WAIT, state: 'attached' });
      await page.waitForSelector(`#status[data-state="${state}"]`, { ...WAIT, state: 'attached' });
      await page.waitForFunction('[...document.querySelectorAll(".vlist")].every((l) => l.getAttribute("data-state") !== "loading")', undefined, WAIT);
    };
    // Paste: a text that does not load leaves the box open with the focus on its button
    await page.click('#paste-box summary');
    await page.fill('#paste', 'name: x\nmachine: { ramBytes: lots }\nsteps: []\n');
    await page.focus('#load-paste');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#status[data-state="error"]', { ...WAIT, state: 'attached' });
    expect(await page.locator('#paste-box').evaluate((d) => d.open)).toBe(true);
    expect(await focused()).toBe('load-paste');
    // one that loads closes the box, and the focus goes to its toggle (not to <body>)
    await page.fill('#paste', readFileSync(join(REPO, 'examples', 'lazy-stale-iotlb.yaml'), 'utf8'));
    await page.focus('#load-paste');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#status[data-state="ready"]', { ...WAIT, state: 'attached' });
    expect(await page.locator('#paste-box').evaluate((d) => d.open)).toBe(false);
    expect(await focused()).toBe('paste-toggle');
    await stepTimes(page, 3); // mapped: every layout and list has rows
    // a layout list: on its second row; a step draws the layouts anew: the same list, the same row
    const LIST = 'page array + scatterlist entries';
    await page.focus(`#panel-layouts .vlist[aria-label="${LIST}"]`);
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press('ArrowDown');
    await expect.poll(focused).toBe(`list ${LIST} row 1`);
    await stepInPlace(4);
    await expect.poll(focused).toBe(`list ${LIST} row 1`);
    await page.keyboard.press('ArrowDown'); // and the keys go on from there
    await expect.poll(focused).toBe(`list ${LIST} row 2`);
    // the IOVA ranges (the lazy unmap leaves the range queued) and the physical runs: the same
    for (const [sel, label, n] of [['#panel-iommu', 'IOVA ranges of nvme0', 5], ['#panel-memory', 'Physical runs of buffer buf', 6]] as const) {
      await page.focus(`${sel} .vlist[aria-label="${label}"]`);
      await page.keyboard.press('Home');
      await expect.poll(focused).toBe(`list ${label} row 0`);
      await stepInPlace(n);
      await expect.poll(focused, { message: label }).toBe(`list ${label} row 0`);
    }
    // the event log, empty until the last step logs its FAULT
    await page.focus('#panel-events .vlist');
    await stepInPlace(7);
    await expect.poll(focused).toBe('list Event log row -');
    await stepInPlace(8, 'done');
    await expect.poll(focused).toBe('list Event log row -');
    await page.keyboard.press('Home');
    await expect.poll(focused).toBe('list Event log row 0');
    // a control a redraw replaces: Show P2P path, and the offset field after Enter
    await page.focus('#panel-pci button[data-key="p2p"]');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#p2p-result:not(:empty)', { ...WAIT, state: 'attached' });
    expect(await focused()).toBe('BUTTON');
    expect(await page.locator('#panel-pci button[data-key="p2p"]').evaluate((b) => b === b.ownerDocument.activeElement)).toBe(true);
    await page.fill('#bytes-offset', '0x100');
    await page.press('#bytes-offset', 'Enter');
    await page.waitForSelector('#panel-bytes .hex .addr:text-is("+0x000100")', { ...WAIT, state: 'attached' });
    expect(await focused()).toBe('bytes-offset');
    expect(errors).toEqual([]);
    await page.close();
  });

  it('loading another scenario forgets the last one\'s P2P path and byte offset', async () => {
    const { page, errors } = await openPage('?example=p2p-topology');
    await page.waitForSelector('#status[data-state="ready"]', { ...WAIT, state: 'attached' });
    await stepTimes(page, 2);
    await page.selectOption('#panel-pci select >> nth=0', 'gpu0');
    await page.selectOption('#panel-pci select >> nth=1', 'nvme0');
    await page.click('#panel-pci button:has-text("Show P2P path")');
    await page.waitForSelector('#p2p-result:has-text("PCI_P2PDMA_MAP_BUS_ADDR")', { ...WAIT, state: 'attached' });
    expect(await page.locator('#panel-pci .pci-node.on-path').count()).toBeGreaterThan(0);
    await page.fill('#bytes-offset', '0x100');
    await page.press('#bytes-offset', 'Enter');
    await page.waitForSelector('#panel-bytes .hex .addr:text-is("+0x000100")', { ...WAIT, state: 'attached' });
    // another scenario (its PCI tree has endpoints too, its buffer is longer than 0x100 bytes)
    await page.selectOption('#example', { label: 'lazy-stale-iotlb.yaml' });
    await page.click('#load');
    await page.waitForSelector('#status[data-state="ready"]', { ...WAIT, state: 'attached' });
    expect(await page.textContent('#status')).toMatch(/^lazy-stale-iotlb: 0 of/);
    expect(await page.textContent('#p2p-result')).toBe('');
    expect(await page.locator('#panel-pci .pci-node.on-path').count()).toBe(0);
    await page.click('#step');
    await page.waitForSelector('#panel-steps[data-state="ready"] li:nth-child(1).ok', { ...WAIT, state: 'attached' });
    await page.waitForSelector('#status[data-state="ready"]', { ...WAIT, state: 'attached' });
    expect(await page.inputValue('#bytes-offset')).toBe('0x0');
    expect(await page.locator('#panel-bytes .hex .addr').first().textContent()).toBe('+0x000000');
    expect(errors).toEqual([]);
    await page.close();
  });

  it('each step shows what phyr run prints for it: its status, why it failed (unmet) and the counters it changed', async () => {
    const { page, errors } = await openPage('?example=lazy-stale-iotlb');
    const shown = (): Promise<StepLines[]> => shownSteps(page);
    await page.waitForSelector('#status[data-state="ready"]', { ...WAIT, state: 'attached' });
    await page.click('#run');
    await page.waitForSelector('#status[data-state="done"]', { ...WAIT, state: 'attached' });
    const want = printed(join(REPO, 'examples', 'lazy-stale-iotlb.yaml'));
    expect(want.some(([st]) => st === 'ok (EFAULT expected)')).toBe(true);
    expect((await shown()).map(([b, u, c]) => [b.replace(/^\u2713 /, ''), u, c])).toEqual(want);
    // a step that does not meet its expectation: FAILED, and why
    const text = readFileSync(join(REPO, 'examples', 'lazy-stale-iotlb.yaml'), 'utf8').replace('expect: { errno: EFAULT, event: { kind: FAULT } }', 'expect: { errno: ENOMEM }');
    const file = join(WEB_OUTPUT, 'lazy-stale-iotlb-unmet.yaml');
    writeFileSync(file, text);
    const failing = printed(file);
    expect(failing[failing.length - 1].slice(0, 2)).toEqual(['FAILED', 'unmet: expected errno ENOMEM, got EFAULT']);
    await page.click('#paste-box summary');
    await page.fill('#paste', text);
    await page.click('#load-paste');
    await page.waitForSelector('#status[data-state="ready"]', { ...WAIT, state: 'attached' });
    await page.click('#run');
    await page.waitForSelector('#status[data-state="stopped"]', { ...WAIT, state: 'attached' });
    expect((await shown()).map(([b, u, c]) => [b.replace(/^\u2713 /, '').replace(/^\u2717 FAILED EFAULT$/, 'FAILED'), u, c])).toEqual(failing);
    expect(await page.textContent('#status')).toBe('lazy-stale-iotlb: stopped at step 7 (after the flush: expected errno ENOMEM, got EFAULT)');
    expect(errors).toEqual([]);
    await page.close();
  });

  it('runs a configuration and a seed of the scenario, as phyr run --config --seed does, in every panel; a bad seed is refused, saying why', async () => {
    const example = 'lazy-stale-iotlb';
    const file = join(REPO, 'examples', `${example}.yaml`);
    const text = readFileSync(file, 'utf8');
    const { page, errors } = await openPage(`?example=${example}`);
    await page.waitForSelector('#status[data-state="ready"]', { ...WAIT, state: 'attached' });
    /** The run as phyr run's first line names it: 'lazy-stale-iotlb [config strict] (seed 7)'. */
    const runOf = (args: string[]): string => /^scenario: (.*)$/m.exec(cli(['run', file, ...args]).out)![1];
    expect(runOf(['--config', 'strict', '--seed', '7'])).toBe(`${example} [config strict] (seed 7)`);
    const statusIs = (t: string, state = 'ready') => page.waitForSelector(`#status[data-state="${state}"]:text-is("${t}")`, { ...WAIT, state: 'attached' });
    const domainType = async (): Promise<string> => /^domain (\S+),/.exec((await page.locator('#panel-iommu p.mono').first().textContent()) ?? '')?.[1] ?? '';
    /** The library's domain type of nvme0 for a run with opts. */
    const libraryDomain = (opts: { config?: string; seed?: number }): string =>
      iommuGetDomainForDev(new ScenarioRunner(parseScenario(text, { source: file }), opts).machine.device('nvme0'))!.type;
    // the file's configurations, the base machine first; the run's seed
    expect(await page.locator('#config option').allTextContents()).toEqual(['base machine', 'strict: iommu.strict=1']);
    expect(await page.inputValue('#seed')).toBe('1');
    expect(await page.textContent('#panel-steps .run-of')).toBe('run: base machine, seed 1');
    expect(await domainType()).toBe(libraryDomain({}));
    // the configuration changes what the steps do: the comparison below can tell them apart
    const base = printed(file), strict = printed(file, ['--config', 'strict']);
    expect(strict).not.toEqual(base);
    await page.selectOption('#config', 'strict');
    await page.click('#apply');
    await statusIs(`${runOf(['--config', 'strict'])}: 0 of 8 steps ran`);
    expect(await page.textContent('#panel-steps .run-of')).toBe('run: configuration strict (iommu.strict=1), seed 1');
    expect(await domainType()).toBe(libraryDomain({ config: 'strict' }));
    expect(libraryDomain({ config: 'strict' })).not.toBe(libraryDomain({}));
    await page.click('#run');
    await page.waitForSelector('#status[data-state="done"]', { ...WAIT, state: 'attached' });
    expect((await shownSteps(page)).map(([b, u, c]) => [b.replace(/^\u2713 /, ''), u, c])).toEqual(strict);
    // seeds the command line refuses are refused here, with the reason, and nothing is loaded
    for (const bad of ['x', '-1', '1.5', '0x', '4294967296', '0x100000000', '1e3']) {
      await page.fill('#seed', bad);
      await page.press('#seed', 'Enter');
      await page.waitForSelector('#seed-error:not([hidden])', { ...WAIT, state: 'attached' });
      expect(await page.textContent('#seed-error')).toBe(`Seed must be an integer in [0, 4294967295] (decimal, or hex with 0x; empty: the file's own), got ${JSON.stringify(bad)}.`);
      expect(await page.getAttribute('#seed', 'aria-invalid')).toBe('true');
      expect(cli(['run', file, '--seed', bad]).code).toBe(2);
      expect(await page.textContent('#status')).toBe(`${runOf(['--config', 'strict'])}: all 8 steps ran`);
    }
    // a good one, in hex: the run starts again with it, as phyr run --config strict --seed 7
    await page.fill('#seed', '0x7');
    await page.click('#apply');
    await statusIs(`${runOf(['--config', 'strict', '--seed', '7'])}: 0 of 8 steps ran`);
    expect(await page.locator('#seed-error').isHidden()).toBe(true);
    expect(await page.getAttribute('#seed', 'aria-invalid')).toBeNull();
    expect(await page.inputValue('#seed')).toBe('7');
    await page.click('#run');
    await page.waitForSelector('#status[data-state="done"]', { ...WAIT, state: 'attached' });
    expect((await shownSteps(page)).map(([b, u, c]) => [b.replace(/^\u2713 /, ''), u, c])).toEqual(printed(file, ['--config', 'strict', '--seed', '7']));
    // and back to the base machine with the file's seed (an empty field)
    await page.selectOption('#config', '');
    await page.fill('#seed', '');
    await page.click('#apply');
    await statusIs(`${example}: 0 of 8 steps ran`);
    await page.click('#run');
    await page.waitForSelector('#status[data-state="done"]', { ...WAIT, state: 'attached' });
    expect((await shownSteps(page)).map(([b, u, c]) => [b.replace(/^\u2713 /, ''), u, c])).toEqual(base);
    // a link: ?config=&seed=, and a configuration the file does not have (phyr run's message)
    const linked = await openPage(`?example=${example}&config=strict&seed=3`);
    await linked.page.waitForSelector(`#status[data-state="ready"]:text-is("${runOf(['--config', 'strict', '--seed', '3'])}: 0 of 8 steps ran")`, { ...WAIT, state: 'attached' });
    const unknown = await openPage(`?example=${example}&config=nope`);
    await unknown.page.waitForSelector('#status[data-state="error"]', { ...WAIT, state: 'attached' });
    expect(await unknown.page.textContent('#status')).toContain("config: unknown configuration 'nope' (expected one of: strict)");
    expect(cli(['run', file, '--config', 'nope']).err).toContain("config: unknown configuration 'nope' (expected one of: strict)");
    expect([...errors, ...linked.errors, ...unknown.errors]).toEqual([]);
    for (const p of [page, linked.page, unknown.page]) await p.close();
  });

  it('Play runs the steps one at a time; Pause stops it between steps and with a step in flight; Play resumes; the end stops it; the keyboard too', async () => {
    const N = 8;
    const { page, errors } = await openPage('?example=lazy-stale-iotlb');
    await page.waitForSelector('#status[data-state="ready"]', { ...WAIT, state: 'attached' });
    // In the page (its elements are untyped here): log every status text with the time it was shown,
    // and press the Play button at exact moments of the run, which a test cannot hit from outside:
    // - when "2 of 8" is shown (Play waits before the next step): Pause and Play again at once;
    // - when "4 of 8" is shown: Pause between two steps;
    // - when the 7th step is sent to the worker ("running..." after "6 of 8"): Pause with it in flight.
    await page.locator('#status').evaluate((s, n) => {
      const w = s.ownerDocument.defaultView;
      const play = s.ownerDocument.querySelector('#play');
      const log: Array<[number, string]> = [];
      w.statusLog = log;
      w.pressAtMoments = true;
      let last = '';
      new w.MutationObserver(() => {
        const text = s.textContent ?? '';
        log.push([w.performance.now(), text]);
        if (!w.pressAtMoments) return;
        if (text.endsWith(`: 2 of ${n} steps ran`)) w.setTimeout(() => { play.click(); play.click(); }, 0);
        if (text.endsWith(`: 4 of ${n} steps ran`)) w.setTimeout(() => play.click(), 0);
        if (text === 'running...' && last.endsWith(`: 6 of ${n} steps ran`)) play.click();
        last = text;
      }).observe(s, { childList: true, characterData: true, subtree: true });
    }, N);
    const statusLog = (): Promise<Array<[number, string]>> => page.locator('#status').evaluate((s) => s.ownerDocument.defaultView.statusLog.slice());
    const focused = (): Promise<string | undefined> => page.locator('html').evaluate((h) => h.ownerDocument.activeElement?.id);
    /** Steps ran, as the status says once a step is drawn (null while one runs). */
    const ran = (text: string): number | null => {
      const m = /: (\d+) of \d+ steps ran$/.exec(text) ?? /: all (\d+) steps ran$/.exec(text);
      return m ? Number(m[1]) : null;
    };
    const controls = (): Promise<Record<string, unknown>> => page.locator('#controls').evaluate((c) => {
      const b = (id: string) => c.querySelector(`#${id}`);
      return { play: b('play').textContent, pressed: b('play').getAttribute('aria-pressed'), playDisabled: b('play').disabled,
        step: b('step').disabled, run: b('run').disabled, reset: b('reset').disabled };
    });
    const PLAYING = { play: '\u2016 Pause', pressed: 'true', playDisabled: false, step: true, run: true, reset: true };
    const PAUSED = { play: '\u25B6 Play', pressed: 'false', playDisabled: false, step: false, run: false, reset: false };
    const AT_END = { play: '\u25B6 Play', pressed: 'false', playDisabled: true, step: true, run: true, reset: false };
    /** Waits until Play has stopped and the last step is drawn; checks nothing moves for a while. */
    const stopsAt = async (n: number): Promise<void> => {
      await page.waitForSelector('#play[aria-pressed="false"]', { ...WAIT, state: 'attached' });
      await page.waitForSelector('#status[data-state="ready"]', { ...WAIT, state: 'attached' });
      expect(ran((await page.textContent('#status')) ?? '')).toBe(n);
      expect(await controls()).toEqual(PAUSED);
      const before = (await statusLog()).length;
      await page.waitForTimeout(600); // over twice the wait between two steps: nothing may happen
      expect((await statusLog()).length).toBe(before);
      expect(await page.locator('#panel-steps li.ok').count()).toBe(n);
    };

    await page.click('#play');
    // while playing only Pause is offered: a Step, Run or Back to start would race the loop
    expect(await controls()).toEqual(PLAYING);
    await stopsAt(4); // Paused between steps (after a Pause / Play at 2 that must not start a second loop)
    await page.click('#play'); // resumes from where it stopped
    await stopsAt(7); // Pause with the 7th step in flight: that step finishes, no other starts
    await page.click('#play');
    await page.waitForSelector('#status[data-state="done"]', { ...WAIT, state: 'attached' });
    expect(await controls()).toEqual(AT_END);
    expect(await page.locator('#panel-steps li.ok').count()).toBe(N);
    // one step at a time, each drawn: 1, 2, ..., N in order, at least the wait between steps apart
    // (but for the one right after the Pause / Play at 2: the new Play steps at once)
    const seen = (await statusLog()).map(([t, text]) => [t, ran(text)] as const).filter((e): e is readonly [number, number] => e[1] !== null);
    expect(seen.map(([, n]) => n)).toEqual(Array.from({ length: N }, (_, i) => i + 1));
    for (let i = 1; i < seen.length; i++) if (seen[i][1] !== 3) expect(seen[i][0] - seen[i - 1][0], `time between steps ${i} and ${i + 1}`).toBeGreaterThanOrEqual(200);
    // the user who pressed Play is left on the run controls, not on the now disabled button
    expect(await focused()).toBe('reset');
    await page.locator('#status').evaluate((s) => { s.ownerDocument.defaultView.pressAtMoments = false; });

    // the keyboard: Back to start (Enter), then Space plays, Space pauses, Enter resumes, Space pauses
    await page.keyboard.press('Enter');
    await page.waitForSelector('#status[data-state="ready"]', { ...WAIT, state: 'attached' });
    expect(ran((await page.textContent('#status')) ?? '')).toBe(0);
    await page.focus('#play');
    const pauseByKey = async (): Promise<number> => {
      await page.keyboard.press('Space');
      await page.waitForSelector('#play[aria-pressed="false"]', { ...WAIT, state: 'attached' });
      await page.waitForSelector('#status[data-state="ready"]', { ...WAIT, state: 'attached' });
      expect(await focused()).toBe('play');
      return ran((await page.textContent('#status')) ?? '')!;
    };
    await page.keyboard.press('Space');
    await page.waitForSelector('#play[aria-pressed="true"]', { ...WAIT, state: 'attached' });
    const k = await pauseByKey();
    expect(k).toBeGreaterThan(0);
    expect(await controls()).toEqual(PAUSED);
    await page.keyboard.press('Enter');
    await page.waitForSelector('#play[aria-pressed="true"]', { ...WAIT, state: 'attached' });
    expect(await controls()).toEqual(PLAYING);
    expect(await pauseByKey()).toBeGreaterThan(k);

    // loading a scenario stops Play: the new run stays before step 0
    await page.click('#reset');
    await page.waitForSelector('#status[data-state="ready"]', { ...WAIT, state: 'attached' });
    await page.click('#play');
    await page.click('#load');
    await page.waitForSelector('#status[data-state="ready"]', { ...WAIT, state: 'attached' });
    await page.waitForSelector('#play[aria-pressed="false"]', { ...WAIT, state: 'attached' });
    expect(ran((await page.textContent('#status')) ?? '')).toBe(0);
    await page.waitForTimeout(600);
    expect(ran((await page.textContent('#status')) ?? '')).toBe(0);
    expect(errors).toEqual([]);
    await page.close();
  });
});
