// The web view in a real browser: Debian's chromium (playwright-core) on the static build served by
// a plain HTTP server. The page loads without console errors, runs two examples to the end, a click
// on a byte shows the same addresses as the library's trace, and each panel is photographed under
// test-output/web/. Waits are on explicit ready markers (data-state), never on sleeps.
import { mkdirSync, readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ScenarioRunner, parseScenario, renderTrace, traceBuffer } from '../../src/scenario/index.ts';
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

/** A page at 1280x800 that records console errors and uncaught exceptions. */
async function openPage(query = ''): Promise<{ page: Page; errors: string[] }> {
  const page = await browser!.newPage({ viewport: { width: 1280, height: 800 } });
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
    for (let i = 0; i < STEPS; i++) {
      await page.click('#step');
      await page.waitForSelector(`#panel-steps[data-state="ready"] li:nth-child(${i + 1}).ok`, { ...WAIT, state: 'attached' });
      await page.waitForSelector('#status[data-state="ready"]', { ...WAIT, state: 'attached' });
    }
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
});
