// The panels of the page. Each draws from the last snapshot and asks the worker for the rest
// (rows of long lists, table pages, bytes, traces). Colour is never the only signal: every
// coloured mark has a text label, a legend entry or a <title>.

import { select } from 'd3-selection';
import { scaleLinear } from 'd3-scale';
import { stratify, tree, type HierarchyPointNode } from 'd3-hierarchy';
import type { DomainRow, IoasRow, Snapshot, TraceAnswer, PciNodeRow, RegionRow, TracePoint } from '../protocol.ts';
import type { Call } from './rpc.ts';
import { VList, listOf, type ListView } from './vlist.ts';

export interface Ctx {
  readonly call: Call;
  snapshot: Snapshot | null;
  /** The buffer the layouts and bytes panels show. */
  buffer: string | null;
  /** The current trace (null: none). */
  trace?: TraceAnswer | null;
  onTrace: () => Promise<void> | void;
  setStatus(state: string, text: string): void;
}

const el = <K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, text?: string): HTMLElementTagNameMap[K] => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
};

export function formatBytes(n: number): string {
  const units: Array<[number, string]> = [[2 ** 40, 'TiB'], [2 ** 30, 'GiB'], [2 ** 20, 'MiB'], [2 ** 10, 'KiB']];
  for (const [u, name] of units) if (n >= u) return `${+(n / u).toFixed(2)} ${name}`;
  return `${n} B`;
}

/**
 * What had the keyboard focus under root before a redraw replaces root's children: the key
 * (`data-key`) of the focused control or of the list it is in, and that list's view. Null: the
 * focus was elsewhere.
 */
interface Held {
  readonly key: string;
  readonly view: ListView | null;
}

function holdFocus(root: HTMLElement): Held | null {
  const a = document.activeElement;
  const keyed = a instanceof HTMLElement && root.contains(a) ? a.closest<HTMLElement>('[data-key]') : null;
  if (keyed === null || !root.contains(keyed)) return null;
  return { key: keyed.dataset.key ?? '', view: listOf(keyed)?.view() ?? null };
}

/**
 * After the redraw: the control with the same key as the one held gets the focus back, if the focus
 * fell with the old one (to <body>); a user who has moved on keeps it. Returns the list given the
 * focus back and where it was, for its setSource.
 */
function giveFocusBack(root: HTMLElement, held: Held | null): { list: VList | null; view: ListView | undefined } {
  const none = { list: null, view: undefined };
  if (held === null) return none;
  const a = document.activeElement;
  if (a !== null && a !== document.body) return none;
  const to = [...root.querySelectorAll<HTMLElement>('[data-key]')].find((e) => e.dataset.key === held.key);
  if (to === undefined) return none;
  to.focus({ preventScroll: true });
  const list = listOf(to);
  return list === null ? none : { list, view: held.view ?? undefined };
}

/** root's children replaced by nodes; the focused control's counterpart among them keeps the focus. */
function replaceKeepingFocus(root: HTMLElement, ...nodes: Node[]): void {
  const held = holdFocus(root);
  root.replaceChildren(...nodes);
  giveFocusBack(root, held);
}

/** A labelled <select> of names (text: what an option shows, the name by default), keeping `current` selected when it is still there. */
function nameSelect(label: string, names: readonly string[], current: string | null, onChange: (v: string) => void, text: (n: string) => string = (n) => n): HTMLLabelElement {
  const l = el('label', {}, `${label} `);
  const s = el('select', { 'data-key': `select:${label}` });
  for (const n of names) {
    const o = el('option', { value: n }, text(n));
    if (n === current) o.selected = true;
    s.append(o);
  }
  s.addEventListener('change', () => onChange(s.value));
  l.append(s);
  return l;
}

// ----------------------------------------------------------------- steps

export function renderSteps(root: HTMLElement, snap: Snapshot): void {
  const ol = el('ol', { class: 'steps', 'aria-label': 'Steps of the scenario' });
  for (const s of snap.steps) {
    const next = s.index === snap.index && snap.state === 'ready';
    const li = el('li', { class: `${s.status}${next ? ' next' : ''}` });
    const badge = s.status === 'ok' ? `\u2713 ${s.result}` : s.status === 'failed' ? `\u2717 ${s.result}${s.errno ? ` ${s.errno}` : ''}` : next ? '\u2192 next' : '\u00B7 pending';
    li.append(el('span', { class: 'badge' }, badge), `${s.index}. ${s.label}`);
    if (s.summary) li.append(el('div', { class: 'muted mono summary' }, s.summary));
    if (s.unmet !== undefined) li.append(el('div', { class: 'mono unmet' }, `unmet: ${s.unmet}`));
    if (s.counters) li.append(el('div', { class: 'muted mono counters' }, `counters: ${s.counters}`));
    if (next) li.setAttribute('aria-current', 'step');
    ol.append(li);
  }
  const head = el('p', { class: 'muted' }, snap.description || snap.name);
  // what the run is, as phyr run's --config and --seed say it
  const conf = snap.configs.find((c) => c.name === snap.config);
  const runOf = el('p', { class: 'mono run-of' }, `run: ${conf ? `configuration ${conf.name}${conf.description ? ` (${conf.description})` : ''}` : 'base machine'}, seed ${snap.seed}`);
  root.replaceChildren(head, runOf, ol);
  // keep the next (or the failed) step in view
  const cur = ol.querySelector<HTMLElement>('li.next, li.failed');
  if (cur) ol.scrollTop = Math.max(0, cur.offsetTop - ol.offsetTop - ol.clientHeight / 2);
  root.closest('section')!.setAttribute('data-state', snap.state);
}

// ----------------------------------------------------------------- counters

export function renderCounters(root: HTMLElement, snap: Snapshot): void {
  const t = el('table', { class: 'facts', 'aria-label': 'Counters that are not zero' });
  t.append(el('tr', {}, ''));
  t.rows[0].append(el('th', { scope: 'col' }, 'counter'), el('th', { scope: 'col' }, 'value'));
  for (const [k, v] of snap.counters) {
    const tr = el('tr');
    tr.append(el('td', {}, k), el('td', { class: 'num' }, v.toLocaleString('en-US')));
    t.append(tr);
  }
  const wrap = el('div', { style: 'max-height: 300px; overflow: auto', tabindex: '0', role: 'region', 'aria-label': 'Counters', 'data-key': 'counters' });
  wrap.append(t);
  const note = el('p', { class: 'muted' }, 'Since the machine was built (setup included); each step\'s changes are listed under it in Steps.');
  replaceKeepingFocus(root, note, snap.counters.length === 0 ? el('p', { class: 'muted' }, 'All counters are zero.') : wrap);
}

// ----------------------------------------------------------------- memory map

const REGION_FILL: Record<string, string> = {
  ram: 'var(--ram)', reserved: 'var(--reserved)', device: 'var(--device)', pmem: 'var(--pmem)', swiotlb: 'var(--swiotlb)', hugetlb: 'var(--hugetlb)',
};

/**
 * The physical map on a piecewise scale: each region gets a width that grows with log2 of its
 * size (a 16 KiB BAR is visible next to 64 GiB of RAM), addresses are linear inside a region.
 */
function physScale(regions: readonly RegionRow[], width: number): {
  x: (a: bigint) => number | null;
  /** The position of an exclusive end address (the end of a region maps to its box's right edge). */
  xEnd: (a: bigint) => number | null;
  boxes: Array<{ r: RegionRow; x0: number; x1: number }>;
} {
  const rs = regions.filter((r) => r.kind !== 'hugetlb' && r.kind !== 'swiotlb').slice().sort((a, b) => (BigInt(a.start) < BigInt(b.start) ? -1 : 1));
  const weights = rs.map((r) => Math.max(1, Math.log2(Math.max(2, r.len)) - 10));
  const sum = weights.reduce((a, b) => a + b, 0) || 1;
  const boxes: Array<{ r: RegionRow; x0: number; x1: number }> = [];
  let x = 0;
  rs.forEach((r, i) => {
    const w = (weights[i] / sum) * width;
    boxes.push({ r, x0: x, x1: x + w });
    x += w;
  });
  const scales = boxes.map((b) => ({ b, s: scaleLinear().domain([Number(BigInt(b.r.start)), Number(BigInt(b.r.end))]).range([b.x0, b.x1]) }));
  return {
    boxes,
    x: (a) => {
      const n = Number(a);
      const hit = scales.find(({ b }) => a >= BigInt(b.r.start) && a < BigInt(b.r.end));
      return hit ? hit.s(n) : null;
    },
    xEnd: (a) => {
      const hit = scales.find(({ b }) => a > BigInt(b.r.start) && a <= BigInt(b.r.end));
      return hit ? hit.s(Number(a)) : null;
    },
  };
}

export function renderMemory(root: HTMLElement, ctx: Ctx): void {
  const snap = ctx.snapshot;
  if (!snap) return;
  const width = 1000;
  const buffers = snap.buffers.filter((b) => b.live);
  const bandH = 16;
  const rows = 1 + buffers.length * 3 + (snap.regions.some((r) => r.kind === 'swiotlb') ? 1 : 0);
  const pools = snap.hugetlb;
  // the hugetlb pools are drawn in a strip at the bottom of the RAM box they come from
  const poolH = pools.length > 0 ? 14 : 0;
  const height = 20 + rows * (bandH + 4) + poolH + 16;
  const { x, xEnd, boxes } = physScale(snap.regions, width - 110);
  const X0 = 110;
  const svgEl = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  const svg = select(svgEl).attr('viewBox', `0 0 ${width} ${height}`).attr('width', '100%').attr('role', 'img')
    .attr('aria-label', `Physical memory map: ${snap.regions.map((r) => r.label).join('; ')}`);
  const defs = svg.append('defs');
  defs.append('pattern').attr('id', 'pat-pinned').attr('width', 6).attr('height', 6).attr('patternUnits', 'userSpaceOnUse')
    .attr('patternTransform', 'rotate(45)').call((p) => {
      p.append('rect').attr('width', 6).attr('height', 6).attr('fill', '#cfdcef');
      p.append('line').attr('x1', 0).attr('y1', 0).attr('x2', 0).attr('y2', 6).attr('stroke', 'var(--pinned)').attr('stroke-width', 3);
    });
  defs.append('pattern').attr('id', 'pat-hugetlb').attr('width', 4).attr('height', 4).attr('patternUnits', 'userSpaceOnUse').call((p) => {
    p.append('rect').attr('width', 4).attr('height', 4).attr('fill', 'var(--hugetlb)');
    p.append('circle').attr('cx', 2).attr('cy', 2).attr('r', 0.9).attr('fill', '#8a7a00');
  });
  let y = 14;
  const band = (label: string): number => {
    svg.append('text').attr('x', 2).attr('y', y + bandH - 4).text(label);
    const yy = y;
    y += bandH + 4;
    return yy;
  };
  const y0 = band('regions');
  y += poolH;
  for (const b of boxes) {
    const g = svg.append('g').attr('class', 'region').attr('data-kind', b.r.kind).attr('data-start', b.r.start).attr('data-end', b.r.end);
    g.append('rect').attr('x', X0 + b.x0).attr('y', y0).attr('width', Math.max(1, b.x1 - b.x0 - 1)).attr('height', bandH + poolH)
      .attr('fill', REGION_FILL[b.r.kind] ?? '#eee').attr('stroke', '#555').attr('stroke-width', 0.5);
    g.append('title').text(b.r.label);
    if (b.x1 - b.x0 > 40) g.append('text').attr('x', X0 + b.x0 + 3).attr('y', y0 + bandH - 4).text(`${b.r.name} ${formatBytes(b.r.len)}`);
  }
  // hugetlb pool pages: nested in the bottom strip of their RAM box, which stays visible above them
  for (const p of pools) {
    const a = x(BigInt(p.start)), e = xEnd(BigInt(p.end));
    if (a === null || e === null) continue;
    const w = Math.max(2, e - a - 1);
    const g = svg.append('g').attr('class', `hugetlb ${p.inUse ? 'in-use' : 'free'}`).attr('data-pool', p.pool)
      .attr('data-start', p.start).attr('data-end', p.end).attr('aria-label', p.label);
    g.append('rect').attr('x', X0 + a).attr('y', y0 + bandH).attr('width', w).attr('height', poolH - 2)
      .attr('fill', p.inUse ? 'url(#pat-hugetlb)' : 'var(--hugetlb)').attr('stroke', '#8a7a00').attr('stroke-width', p.inUse ? 1.5 : 0.5)
      .attr('stroke-dasharray', p.inUse ? null : '3 2');
    g.append('title').text(p.label);
    if (w > 50) g.append('text').attr('x', X0 + a + 3).attr('y', y0 + bandH + poolH - 5).style('font-size', '9px').text(`${p.pool} ${p.inUse ? 'in use' : 'free'}`);
  }
  const sw = snap.regions.find((r) => r.kind === 'swiotlb');
  if (sw) {
    const ys = band('swiotlb');
    const a = x(BigInt(sw.start)), e = xEnd(BigInt(sw.end));
    if (a !== null && e !== null) {
      // up to the pool's end; a pool narrower than 2 units is widened towards its start, so that
      // the band never passes the end of the RAM it lies in
      const w = Math.max(2, e - a);
      const g = svg.append('g');
      g.append('rect').attr('x', X0 + e - w).attr('y', ys).attr('width', w).attr('height', bandH).attr('fill', 'var(--swiotlb)').attr('stroke', '#2a7d2a');
      g.append('title').text(sw.label);
      // near the right edge the label goes to the left of the band, so that it is not cut off
      const right = X0 + e > width * 0.75;
      g.append('text').attr('x', right ? X0 + e - w - 3 : X0 + e + 3).attr('y', ys + bandH - 4).attr('text-anchor', right ? 'end' : 'start').text(`swiotlb ${formatBytes(sw.len)}`);
    }
  }
  for (const b of buffers) {
    const spans = snap.spans.filter((s) => s.buffer === b.name);
    const yb = band(`${b.name} pages`);
    const yp = band(`${b.name} pinned`);
    const ym = band(`${b.name} mapped`);
    for (const s of spans) {
      const a = x(BigInt(s.start));
      const e = x(BigInt(s.end) - 1n);
      if (a === null || e === null) continue;
      const w = Math.max(1.5, e - a);
      const title = `${b.name}: ${s.start}-${s.end}${s.pinned ? ', pinned' : ''}${s.mapped ? ', mapped for DMA' : ''}`;
      svg.append('rect').attr('x', X0 + a).attr('y', yb).attr('width', w).attr('height', bandH).attr('fill', '#7a9cc6').append('title').text(title);
      if (s.pinned) svg.append('rect').attr('x', X0 + a).attr('y', yp).attr('width', w).attr('height', bandH).attr('fill', 'url(#pat-pinned)').attr('stroke', 'var(--pinned)').attr('stroke-width', 0.5).append('title').text(title);
      if (s.mapped) svg.append('rect').attr('x', X0 + a).attr('y', ym).attr('width', w).attr('height', bandH).attr('fill', 'none').attr('stroke', 'var(--mapped)').attr('stroke-width', 2).append('title').text(title);
    }
  }
  for (const p of ctx.trace?.points ?? []) {
    if (p.space !== 'phys') continue;
    const px = x(BigInt(p.addr));
    if (px === null) continue;
    svg.append('line').attr('x1', X0 + px).attr('x2', X0 + px).attr('y1', 4).attr('y2', y).attr('stroke', 'var(--hit-line)').attr('stroke-width', 2).attr('stroke-dasharray', '4 2');
    // near the right edge the label goes to the left of the line, so that it is not cut off
    const right = X0 + px > width * 0.75;
    svg.append('text').attr('x', X0 + px + (right ? -3 : 3)).attr('y', y + 10).attr('text-anchor', right ? 'end' : 'start').attr('class', 'traced').text(`\u25C6 traced byte ${p.addr}`);
  }
  const legend = el('div', { class: 'legend' });
  const item = (style: string, text: string): void => {
    const s = el('span');
    s.append(el('span', { class: 'sw', style, 'aria-hidden': 'true' }), text);
    legend.append(s);
  };
  item('background: var(--ram)', 'System RAM');
  item('background: var(--device)', 'device BAR (MMIO)');
  item('background: var(--pmem)', 'pmem');
  item('background: var(--reserved)', 'reserved');
  item('background: var(--swiotlb)', 'swiotlb pool');
  if (pools.length > 0) {
    item('background: radial-gradient(circle, #8a7a00 0 1px, var(--hugetlb) 1px) 0 0 / 4px 4px; border-color: #8a7a00', 'hugetlb page in use (dotted, in the strip under its RAM)');
    item('background: var(--hugetlb); border: 1px dashed #8a7a00', 'hugetlb page free (dashed outline)');
  }
  item('background: #7a9cc6', 'buffer pages (band "<buffer> pages")');
  item('background: repeating-linear-gradient(45deg, var(--pinned) 0 2px, #cfdcef 2px 5px)', 'pinned (hatched band)');
  item('border: 2px solid var(--mapped); background: none', 'mapped for DMA (outlined band)');
  item('border-left: 2px dashed var(--hit-line); background: none', 'traced byte');
  const hug = snap.regions.filter((r) => r.kind === 'hugetlb').map((r) => r.label);
  const note = el('p', { class: 'muted' }, `${hug.join('; ')}${snap.spansOmitted > 0 ? `${hug.length ? '; ' : ''}${snap.spansOmitted} more spans not drawn (see the list)` : ''}`);
  // the regions as a table: the text form of the map
  const t = el('table', { class: 'facts', 'aria-label': 'Memory regions' });
  const hr = el('tr');
  for (const h of ['region', 'kind', 'start', 'end', 'size']) hr.append(el('th', { scope: 'col' }, h));
  t.append(hr);
  for (const r of snap.regions.filter((q) => q.kind !== 'hugetlb')) {
    const tr = el('tr');
    tr.append(el('td', {}, r.name), el('td', {}, r.kind), el('td', { class: 'num' }, r.start), el('td', { class: 'num' }, r.end), el('td', { class: 'num' }, formatBytes(r.len)));
    t.append(tr);
  }
  for (const p of pools) {
    const tr = el('tr');
    const len = Number(BigInt(p.end) - BigInt(p.start));
    tr.append(el('td', {}, `hugetlb-${p.pool} in ${p.region}`), el('td', {}, `hugetlb, ${p.pages} ${p.pages === 1 ? 'page' : 'pages'} ${p.inUse ? 'in use' : 'free'}`),
      el('td', { class: 'num' }, p.start), el('td', { class: 'num' }, p.end), el('td', { class: 'num' }, formatBytes(len)));
    t.append(tr);
  }
  const details = el('details');
  details.append(el('summary', {}, 'Regions as a table'), t);
  const runsHost = el('div');
  runsHost.append(el('h3', {}, `Physical runs of ${ctx.buffer ?? '(no buffer)'} with their folios`));
  const held = holdFocus(root);
  root.replaceChildren(svgEl, legend, note, details, runsHost);
  const runs = new VList(runsHost, ctx.call, { label: `Physical runs of buffer ${ctx.buffer ?? ''}`, empty: 'no buffer pages present' });
  const back = giveFocusBack(root, held);
  // setSource asks for the rows in view (scrolled to the traced run, if any): once is enough
  void runs.setSource(ctx.buffer === null ? null : `phys:${ctx.buffer}`, back.list === runs ? back.view : undefined);
}

// ----------------------------------------------------------------- layouts

export class LayoutsPanel {
  private lists: VList[] = [];

  constructor(private readonly root: HTMLElement, private readonly ctx: Ctx) {}

  async update(): Promise<void> {
    const snap = this.ctx.snapshot;
    if (!snap) return;
    const names = snap.buffers.map((b) => b.name);
    const controls = el('div', { class: 'row-controls' });
    controls.append(nameSelect('Buffer', names, this.ctx.buffer, (v) => {
      this.ctx.buffer = v;
      void this.update();
    }));
    if (this.ctx.buffer === null) {
      replaceKeepingFocus(this.root, controls, el('p', { class: 'muted' }, 'No buffer yet: run the mmap step.'));
      return;
    }
    const sums = await this.ctx.call({ type: 'layouts', buffer: this.ctx.buffer });
    const b = snap.buffers.find((q) => q.name === this.ctx.buffer);
    const facts = el('p', { class: 'mono' }, b ? `${b.name}: ${formatBytes(b.len)} ${b.backing} at ${b.va} (process ${b.process})${b.live ? '' : ' - unmapped'}; pins: ${b.pins.join(', ') || 'none'}; mappings: ${b.mappings.join(', ') || 'none'}` : '');
    const t = el('table', { class: 'facts', 'aria-label': 'Entries and kernel bytes of each layout' });
    const hr = el('tr');
    for (const h of ['layout', 'entries', 'kernel bytes', 'parts']) hr.append(el('th', { scope: 'col' }, h));
    t.append(hr);
    for (const s of sums) {
      const tr = el('tr');
      tr.append(el('td', {}, s.label), el('td', { class: 'num' }, s.entries === null ? '-' : s.entries.toLocaleString('en-US')),
        el('td', { class: 'num' }, s.kernelBytes === null ? '-' : `${s.kernelBytes.toLocaleString('en-US')} (${formatBytes(s.kernelBytes)})`),
        el('td', {}, s.error ?? s.parts.map((p) => `${p.name}: ${p.entries} entries, ${p.kernelBytes} B`).join('; ')));
      t.append(tr);
    }
    const side = el('div', { class: 'layouts' });
    this.lists = [];
    for (const s of sums) {
      const card = el('div', { class: `layout${s.error ? ' error' : ''}`, 'data-layout': s.source });
      card.append(el('h3', {}, s.label));
      card.append(el('div', { class: 'nums' }, s.error ? `cannot describe it: ${s.error}` : `${s.entries?.toLocaleString('en-US')} entries, ${formatBytes(s.kernelBytes ?? 0)}`));
      side.append(card);
      if (!s.error) {
        const l = new VList(card, this.ctx.call, { label: `${s.label} entries` });
        this.lists.push(l);
      }
    }
    // the lists are new ones (of this step's layouts): a keyboard user in one stays in it, on its row
    const held = holdFocus(this.root);
    this.root.replaceChildren(controls, facts, t, side);
    const back = giveFocusBack(this.root, held);
    const withRows = sums.filter((s) => !s.error);
    await Promise.all(this.lists.map((l, i) => l.setSource(withRows[i].source, back.list === l ? back.view : undefined)));
    if (this.ctx.trace) await this.refresh(true);
  }

  async refresh(toHit: boolean): Promise<void> {
    await Promise.all(this.lists.map((l) => l.refresh(toHit)));
  }
}

// ----------------------------------------------------------------- bytes

export class BytesPanel {
  private offset = 0;
  private focusIndex = 0;

  constructor(private readonly root: HTMLElement, private readonly ctx: Ctx) {}

  /** Another scenario was loaded: back to its first bytes. */
  forget(): void {
    this.offset = 0;
    this.focusIndex = 0;
  }

  async update(): Promise<void> {
    const snap = this.ctx.snapshot;
    if (!snap) return;
    const b = snap.buffers.find((q) => q.name === this.ctx.buffer);
    if (!b) {
      this.root.replaceChildren(el('p', { class: 'muted' }, 'No buffer yet.'));
      return;
    }
    if (this.offset >= b.len) this.offset = 0;
    const controls = el('div', { class: 'row-controls' });
    controls.append(nameSelect('Buffer', snap.buffers.map((q) => q.name), this.ctx.buffer, (v) => {
      this.ctx.buffer = v;
      this.offset = 0;
      void this.update();
    }));
    const offLabel = el('label', {}, 'Offset ');
    const off = el('input', { type: 'text', value: `0x${this.offset.toString(16)}`, 'aria-describedby': 'bytes-help', id: 'bytes-offset' });
    offLabel.append(off);
    off.dataset.key = 'offset';
    const go = el('button', { type: 'button', 'data-key': 'go' }, 'Go');
    const prev = el('button', { type: 'button', 'aria-label': 'Previous 256 bytes', 'data-key': 'prev' }, '\u25C0 256');
    const next = el('button', { type: 'button', 'aria-label': 'Next 256 bytes', 'data-key': 'next' }, '256 \u25B6');
    const goTo = (o: number): void => {
      this.offset = Math.max(0, Math.min(Math.floor(o / 16) * 16, Math.max(0, b.len - 1) - ((b.len - 1) % 16)));
      void this.update();
    };
    const problem = el('p', { class: 'panel-error', id: 'bytes-offset-error', role: 'alert' });
    problem.hidden = true;
    // the typed offset: hex (0x...) or decimal, inside the buffer; anything else is refused with a reason
    const goToTyped = (): void => {
      const text = off.value.trim();
      const o = /^0x[0-9a-f]+$/i.test(text) ? parseInt(text.slice(2), 16) : /^[0-9]+$/.test(text) ? Number(text) : NaN;
      if (!Number.isSafeInteger(o) || o >= b.len) {
        off.setAttribute('aria-invalid', 'true');
        off.setAttribute('aria-errormessage', problem.id);
        problem.textContent = `Offset must be a byte of ${b.name}, 0x0 to 0x${(b.len - 1).toString(16)} (hex with 0x, or decimal); got ${JSON.stringify(off.value)}.`;
        problem.hidden = false;
        return;
      }
      goTo(o);
    };
    go.addEventListener('click', goToTyped);
    off.addEventListener('keydown', (e) => { if (e.key === 'Enter') goToTyped(); });
    prev.addEventListener('click', () => goTo(this.offset - 256));
    next.addEventListener('click', () => goTo(this.offset + 256));
    controls.append(offLabel, go, prev, next);
    const help = el('p', { class: 'muted', id: 'bytes-help' }, `${formatBytes(b.len)} at ${b.va}. Arrow keys move between bytes, Enter traces one.`);
    const ans = await this.ctx.call({ type: 'bytes', buffer: b.name, offset: this.offset, len: 256 });
    const grid = el('div', { class: 'hex', role: 'grid', 'aria-label': `Bytes of ${b.name} from offset 0x${this.offset.toString(16)}` });
    const tracedOff = this.ctx.trace && this.ctx.trace.buffer === b.name ? this.ctx.trace.offset : -1;
    const cells: HTMLButtonElement[] = [];
    for (let r = 0; r < ans.bytes.length; r += 16) {
      const row = el('div', { role: 'row', style: 'display: contents' });
      row.append(el('span', { class: 'addr', role: 'rowheader' }, `+0x${(ans.offset + r).toString(16).padStart(6, '0')}`));
      for (let c = 0; c < 16 && r + c < ans.bytes.length; c++) {
        const v = ans.bytes[r + c];
        const o = ans.offset + r + c;
        const btn = el('button', {
          type: 'button', class: `b${v < 0 ? ' na' : ''}${o === tracedOff ? ' hit' : ''}`, role: 'gridcell', tabindex: '-1', 'data-offset': String(o),
          'aria-label': `offset 0x${o.toString(16)}: ${v < 0 ? 'no page' : `0x${v.toString(16).padStart(2, '0')}`}${o === tracedOff ? ', traced' : ''}`,
        }, v < 0 ? '--' : v.toString(16).padStart(2, '0'));
        btn.addEventListener('click', () => void this.trace(o));
        btn.addEventListener('keydown', (e) => this.key(e, cells, r + c));
        cells.push(btn);
        row.append(btn);
      }
      grid.append(row);
    }
    const fi = Math.min(this.focusIndex, cells.length - 1);
    if (cells[fi]) cells[fi].tabIndex = 0;
    // the grid is drawn anew (after a trace, a step): a keyboard user on a byte stays on its cell
    const inGrid = this.root.querySelector('.hex')?.contains(document.activeElement) ?? false;
    replaceKeepingFocus(this.root, controls, problem, help, grid);
    if (inGrid) cells[fi]?.focus();
  }

  private key(e: KeyboardEvent, cells: HTMLButtonElement[], i: number): void {
    const d: Record<string, number> = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: 16, ArrowUp: -16, Home: -(i % 16), End: 15 - (i % 16) };
    if (!(e.key in d)) return;
    e.preventDefault();
    const j = Math.max(0, Math.min(cells.length - 1, i + d[e.key]));
    cells[i].tabIndex = -1;
    cells[j].tabIndex = 0;
    cells[j].focus();
    this.focusIndex = j;
  }

  async trace(offset: number): Promise<void> {
    if (this.ctx.buffer === null) return;
    this.focusIndex = offset - this.offset;
    const section = this.root.closest('section');
    const tracePanel = document.querySelector<HTMLElement>('#panel-trace');
    tracePanel?.setAttribute('data-state', 'loading');
    section?.setAttribute('data-state', 'loading');
    try {
      this.ctx.trace = await this.ctx.call({ type: 'trace', buffer: this.ctx.buffer, offset });
      await this.ctx.onTrace();
      tracePanel?.setAttribute('data-state', 'ready');
    } catch (e) {
      this.ctx.setStatus('error', (e as Error).message);
      tracePanel?.setAttribute('data-state', 'error');
    }
    section?.setAttribute('data-state', 'ready');
  }

  async refresh(): Promise<void> {
    await this.update();
  }
}

// ----------------------------------------------------------------- trace

export class TracePanel {
  constructor(private readonly root: HTMLElement, private readonly ctx: Ctx) {
    this.clear();
  }

  clear(): void {
    this.ctx.trace = null;
    this.root.replaceChildren(el('p', { class: 'muted' }, 'Click a byte in the Bytes panel (or press Enter on it) to see every address it has, from the user VA down to the device.'));
  }

  async update(): Promise<void> {
    const t = this.ctx.trace;
    if (!t) return this.clear();
    // the trace is of the state it was taken in: take it again after a step
    try {
      this.ctx.trace = await this.ctx.call({ type: 'trace', buffer: t.buffer, offset: t.offset });
    } catch {
      return this.clear();
    }
    this.render();
  }

  render(): void {
    const t = this.ctx.trace;
    if (!t) return this.clear();
    const head = el('p', { class: 'mono' }, `${t.buffer} + 0x${t.offset.toString(16)}`);
    const pre = el('pre', { class: 'trace-text', tabindex: '0', 'aria-label': 'Trace text', 'data-key': 'trace-text' }, t.text);
    const t2 = el('table', { class: 'facts', 'aria-label': 'Addresses of the traced byte, marked in every panel' });
    const hr = el('tr');
    for (const h of ['layer', 'space', 'address']) hr.append(el('th', { scope: 'col' }, h));
    t2.append(hr);
    for (const p of t.points) {
      const tr = el('tr', { 'data-space': p.space });
      tr.append(el('td', {}, p.layer), el('td', {}, p.space), el('td', { class: 'num' }, p.addr));
      t2.append(tr);
    }
    const clear = el('button', { type: 'button', 'data-key': 'clear-trace' }, 'Clear trace');
    clear.addEventListener('click', async () => {
      const hadFocus = document.activeElement === clear;
      await this.ctx.call({ type: 'clearTrace' });
      this.clear();
      await this.ctx.onTrace();
      // the button is gone with the trace: a keyboard user goes back to the byte grid's current cell
      if (hadFocus) document.querySelector<HTMLElement>('#panel-bytes .hex [tabindex="0"]')?.focus();
    });
    const json = el('details');
    json.append(el('summary', {}, 'The trace as JSON (phyr trace --json)'), el('pre', { tabindex: '0', 'aria-label': 'Trace JSON', 'data-key': 'trace-json' }, JSON.stringify(t.json, null, 2)));
    replaceKeepingFocus(this.root, head, t2, pre, json, clear);
  }
}

// ----------------------------------------------------------------- PCI

export class PciPanel {
  private provider: string | null = null;
  private client: string | null = null;
  private path: readonly string[] = [];
  private result = '';

  constructor(private readonly root: HTMLElement, private readonly ctx: Ctx) {}

  /** Another scenario was loaded: its P2P path has not been asked for. */
  forget(): void {
    this.provider = this.client = null;
    this.path = [];
    this.result = '';
  }

  async update(): Promise<void> {
    const snap = this.ctx.snapshot;
    if (!snap) return;
    if (snap.pci.length === 0) {
      this.root.replaceChildren(el('p', { class: 'muted' }, 'This machine has no PCI tree.'));
      return;
    }
    const endpoints = snap.pci.filter((n) => n.kind === 'endpoint').map((n) => n.name);
    if (this.provider === null || !endpoints.includes(this.provider)) this.provider = endpoints[0] ?? null;
    if (this.client === null || !endpoints.includes(this.client)) this.client = endpoints[1] ?? endpoints[0] ?? null;
    this.draw(snap.pci);
  }

  private draw(nodes: readonly PciNodeRow[]): void {
    const rows: Array<{ name: string; parent: string | null; node: PciNodeRow | null }> = nodes.map((n) => ({ name: n.name, parent: n.parent, node: n }));
    const roots = rows.filter((r) => r.parent === null);
    if (roots.length > 1) {
      rows.push({ name: '(CPU)', parent: null, node: null });
      for (const r of roots) r.parent = '(CPU)';
    }
    const h = stratify<(typeof rows)[number]>().id((d) => d.name).parentId((d) => d.parent)(rows);
    const leaves = h.leaves().length;
    const width = Math.max(400, leaves * 130);
    const depth = h.height + 1;
    const height = depth * 62 + 10;
    const laid = tree<(typeof rows)[number]>().size([width - 120, height - 50])(h);
    const svgEl = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
    const onPath = new Set(this.path);
    const traced = new Set((this.ctx.trace?.points ?? []).map((p) => p.layer.split(' on ')[1]).filter((x): x is string => x !== undefined));
    const svg = select(svgEl).attr('viewBox', `0 0 ${width} ${height}`).attr('width', '100%').attr('style', `max-height: ${height}px`).attr('role', 'img')
      .attr('aria-label', `PCI tree: ${nodes.map((n) => `${n.name} (${n.kind}) below ${n.parent ?? 'the CPU'}`).join('; ')}`);
    const g = svg.append('g').attr('transform', 'translate(60, 20)');
    for (const l of laid.links()) {
      const on = onPath.has(l.source.id ?? '') && onPath.has(l.target.id ?? '');
      g.append('path').attr('class', `pci-link${on ? ' on-path' : ''}`).attr('d', `M${l.source.x},${l.source.y + 12} L${l.target.x},${l.target.y - 12}`);
    }
    laid.each((n: HierarchyPointNode<(typeof rows)[number]>) => {
      const on = onPath.has(n.data.name);
      const ng = g.append('g').attr('class', `pci-node${on ? ' on-path' : ''}`).attr('transform', `translate(${n.x},${n.y})`);
      ng.append('rect').attr('x', -56).attr('y', -12).attr('width', 112).attr('height', 26).attr('rx', 3);
      const kind = n.data.node?.kind ?? 'cpu';
      ng.append('text').attr('text-anchor', 'middle').attr('y', 0).text(`${n.data.name}${on ? ' \u25C6' : ''}${traced.has(n.data.name) ? ' \u2190 traced' : ''}`);
      ng.append('text').attr('text-anchor', 'middle').attr('y', 11).attr('font-size', 9).text(kind);
      ng.append('title').text(`${n.data.name}: ${kind}${n.data.node ? ` ${n.data.node.bdf}${n.data.node.bars.length ? `; ${n.data.node.bars.join('; ')}` : ''}` : ''}${on ? ' (on the P2P path)' : ''}`);
    });
    const endpoints = nodes.filter((n) => n.kind === 'endpoint').map((n) => n.name);
    const controls = el('div', { class: 'row-controls' });
    controls.append(nameSelect('Provider (BAR owner)', endpoints, this.provider, (v) => { this.provider = v; }));
    controls.append(nameSelect('Client', endpoints, this.client, (v) => { this.client = v; }));
    const btn = el('button', { type: 'button', 'data-key': 'p2p' }, 'Show P2P path');
    btn.addEventListener('click', () => void this.showP2p());
    controls.append(btn);
    const res = el('p', { class: 'mono', 'aria-live': 'polite', id: 'p2p-result' }, this.result);
    replaceKeepingFocus(this.root, controls, res, svgEl);
  }

  private async showP2p(): Promise<void> {
    if (this.provider === null || this.client === null) return;
    try {
      const a = await this.ctx.call({ type: 'p2p', provider: this.provider, client: this.client });
      this.path = a.path;
      this.result = `${a.provider} -> ${a.client}: ${a.mapType}, distance ${a.distance}, via ${a.via}; path ${a.path.join(' -> ')}`;
    } catch (e) {
      this.path = [];
      this.result = (e as Error).message;
    }
    if (this.ctx.snapshot) this.draw(this.ctx.snapshot.pci);
  }

  async refreshTrace(): Promise<void> {
    if (this.ctx.snapshot && this.ctx.snapshot.pci.length > 0) this.draw(this.ctx.snapshot.pci);
  }
}

// ----------------------------------------------------------------- IOMMU

/** A hw_pagetable as the IOMMU panel names it: 'HWPT 3 of IOAS vm'. */
function hwptName(h: NonNullable<DomainRow['hwpt']>): string {
  return `HWPT ${h.id} of IOAS ${h.ioas ?? '(unnamed)'}`;
}

/**
 * The live IOASes (iommufd, ioas-alloc), from the snapshot (no request): each with its IOVA
 * alignment, its hw_pagetables (automatic or own, the devices attached) and its areas. Null when
 * none is live: nothing is shown.
 */
function ioasSection(snap: Snapshot): HTMLElement | null {
  if (snap.ioases.length === 0) return null;
  const wrap = el('div', {
    class: 'ioases', role: 'region', tabindex: '0', 'data-key': 'ioases', 'data-state': 'ready', 'data-step': String(snap.index),
    'aria-label': `iommufd I/O address spaces: ${snap.ioases.map((x) => x.name).join(', ')}`,
  });
  wrap.append(el('h3', {}, 'iommufd I/O address spaces (IOAS)'));
  const table = (label: string, heads: readonly string[]): HTMLTableElement => {
    const t = el('table', { class: 'facts', 'aria-label': label });
    const hr = el('tr');
    for (const h of heads) hr.append(el('th', { scope: 'col' }, h));
    t.append(hr);
    return t;
  };
  for (const x of snap.ioases) wrap.append(ioasBox(x, table));
  return wrap;
}

function ioasBox(x: IoasRow, table: (label: string, heads: readonly string[]) => HTMLTableElement): HTMLElement {
  const box = el('div', { class: 'ioas', 'data-ioas': x.name, 'data-alignment': String(x.iovaAlignment) });
  const align = x.iovaAlignment === 1 ? '1 (no domain yet)' : `${formatBytes(x.iovaAlignment)} (0x${x.iovaAlignment.toString(16)})`;
  box.append(el('p', { class: 'ioas-facts' },
    `IOAS ${x.name}: IOVA alignment ${align}; ${x.hwpts.length} hw_pagetable${x.hwpts.length === 1 ? '' : 's'}, devices ${x.devices.join(', ') || 'none'}; ${x.areas.length} area${x.areas.length === 1 ? '' : 's'}`));
  if (x.hwpts.length === 0) box.append(el('p', { class: 'muted ioas-no-hwpt' }, 'No hw_pagetable: no device attached, so no domain holds the areas (nothing pinned).'));
  else {
    const t = table(`hw_pagetables of IOAS ${x.name}`, ['hw_pagetable', 'made', 'devices attached (their IOMMU domain)']);
    for (const h of x.hwpts) {
      const tr = el('tr', { class: 'hwpt', 'data-hwpt': String(h.id), 'data-auto': String(h.auto), 'data-devices': h.devices.join(',') });
      tr.append(el('td', { class: 'num' }, `HWPT ${h.id}`), el('td', {}, h.auto ? 'automatic (by the first attach to the IOAS)' : 'own (IOMMU_HWPT_ALLOC)'),
        el('td', {}, h.devices.join(', ') || 'none'));
      t.append(tr);
    }
    box.append(t);
  }
  if (x.areas.length === 0) box.append(el('p', { class: 'muted ioas-no-area' }, 'No area: nothing mapped (ioas-map).'));
  else {
    const t = table(`Areas of IOAS ${x.name}`, ['IOVA', 'last', 'length', 'mapping', 'pinned']);
    for (const a of x.areas) {
      const last = `0x${(BigInt(a.iova) + BigInt(a.len) - 1n).toString(16)}`;
      const tr = el('tr', { class: 'area', 'data-iova': a.iova, 'data-len': String(a.len), 'data-mapping': a.mapping ?? '', 'data-pinned': String(a.pinned) });
      tr.append(el('td', { class: 'num' }, a.iova), el('td', { class: 'num' }, last), el('td', { class: 'num' }, formatBytes(a.len)),
        el('td', {}, a.mapping ?? '(not named by a step)'), el('td', {}, a.pinned ? 'pinned' : 'not pinned'));
      t.append(tr);
    }
    box.append(t);
  }
  return box;
}

export class IommuPanel {
  private device: string | null = null;
  private tableStack: Array<string | null> = [null];
  private iova: VList | null = null;
  private iotlb: VList | null = null;
  private table: VList | null = null;
  private hexBox: HTMLPreElement | null = null;
  private crumbs: HTMLElement | null = null;

  constructor(private readonly root: HTMLElement, private readonly ctx: Ctx) {}

  /** Another scenario was loaded: its first device's root table (table pages are of the old machine). */
  forget(): void {
    this.device = null;
    this.tableStack = [null];
  }

  async update(): Promise<void> {
    const snap = this.ctx.snapshot;
    if (!snap) return;
    const ioases = ioasSection(snap);
    if (snap.domains.length === 0) {
      replaceKeepingFocus(this.root, el('p', { class: 'muted' }, 'No IOMMU on this machine: devices use dma-direct (bus address = physical address + offset) or swiotlb.'), ...(ioases ? [ioases] : []));
      this.iova = this.iotlb = this.table = null;
      return;
    }
    const devs = snap.domains.map((d) => d.device);
    if (this.device === null || !devs.includes(this.device)) {
      this.device = devs[0];
      this.tableStack = [null];
    }
    const d = snap.domains.find((q) => q.device === this.device)!;
    const controls = el('div', { class: 'row-controls' });
    // a device attached to an IOAS: its domain is that hw_pagetable's (the option says which)
    const hwptOf = (n: string): string => {
      const h = snap.domains.find((q) => q.device === n)?.hwpt ?? null;
      return h === null ? n : `${n} (${hwptName(h)})`;
    };
    controls.append(nameSelect('Device', devs, this.device, (v) => {
      this.device = v;
      this.tableStack = [null];
      void this.update();
    }, hwptOf));
    const h = d.hwpt;
    const shared = h === null ? '' : `, ${hwptName(h)} (${h.auto ? 'automatic' : 'own'}; devices ${h.devices.join(', ')})`;
    const facts = el('p', { class: 'mono domain-facts', 'data-hwpt': h === null ? '' : String(h.id) },
      `domain ${d.type}${shared}, format ${d.format ?? '-'}, root table ${d.rootPfn ?? '-'}${h === null ? '' : ` (HWPT ${h.id}'s page table)`}, ${d.tablePages} table pages, ${d.iovaRanges} IOVA ranges, ${d.iotlbEntries} IOTLB entries, aperture ${d.aperture}`);
    const split = el('div', { class: 'split' });
    const c1 = el('div'), c2 = el('div'), c3 = el('div');
    c1.append(el('h3', {}, 'IOVA ranges allocated'));
    c2.append(el('h3', {}, 'IOTLB'));
    c3.append(el('h3', {}, 'Page table (Enter or click a table entry to open it)'));
    this.crumbs = el('div', { class: 'crumbs', role: 'navigation', 'aria-label': 'Table pages opened' });
    c3.append(this.crumbs);
    split.append(c1, c2, c3);
    // an IOAS's domain has no IOVA allocator: its IOVAs are the IOAS's areas (listed above)
    this.iova = new VList(c1, this.ctx.call, { label: `IOVA ranges of ${this.device}`, empty: h === null ? 'no IOVA allocated' : `no IOVA allocator: the IOVAs are IOAS ${h.ioas ?? ''}'s areas` });
    this.iotlb = new VList(c2, this.ctx.call, { label: `IOTLB of ${this.device}`, empty: 'IOTLB empty' });
    this.table = new VList(c3, this.ctx.call, {
      label: `Page-table entries of ${this.device}`,
      onActivate: (_i, cells) => {
        if (cells[2] === 'table' && cells[3] !== '-') {
          // a table entry's output address over the table page size: the machine pfn the worker's table() takes
          this.tableStack.push(`0x${(BigInt(cells[3]) / BigInt(d.tablePageBytes)).toString(16)}`);
          void this.showTable();
        }
      },
    });
    const bytesToggle = el('details');
    bytesToggle.append(el('summary', {}, `The table page's ${d.tablePageBytes} bytes`));
    this.hexBox = el('pre', { tabindex: '0', 'aria-label': 'Table page bytes', 'data-key': 'table-bytes' });
    bytesToggle.append(this.hexBox);
    c3.append(bytesToggle);
    const held = holdFocus(this.root);
    this.root.replaceChildren(...(ioases ? [ioases] : []), controls, facts, split);
    const back = giveFocusBack(this.root, held);
    const view = (l: VList): ListView | undefined => (back.list === l ? back.view : undefined);
    if (d.format === null) this.tableStack = [];
    await Promise.all([this.iova.setSource(`iova:${this.device}`, view(this.iova)), this.iotlb.setSource(`iotlb:${this.device}`, view(this.iotlb)), this.showTable(view(this.table))]);
  }

  /** Follows the trace down the tables of the traced device, when there is one. */
  private followTrace(points: readonly TracePoint[]): void {
    const ptes = points.filter((p) => p.space === 'pte' && p.layer.endsWith(` on ${this.device}`));
    if (ptes.length === 0) return;
    this.tableStack = [null, ...ptes.slice(1).map((p) => p.addr.split(':')[0])];
  }

  /** Shows the table page on top of the stack (view: where the list it replaces was). */
  private async showTable(view?: ListView): Promise<void> {
    if (!this.table || !this.device || this.tableStack.length === 0) {
      await this.table?.setSource(null);
      return;
    }
    let top = this.tableStack[this.tableStack.length - 1];
    let ans;
    try {
      ans = await this.ctx.call({ type: 'table', device: this.device, pfn: top });
    } catch {
      // the table page is gone (unmapped and freed, or a new machine): back to the root
      this.tableStack = [null];
      top = null;
      ans = await this.ctx.call({ type: 'table', device: this.device, pfn: null });
    }
    if (this.crumbs) {
      const held = holdFocus(this.crumbs);
      this.crumbs.replaceChildren(...this.tableStack.map((p, i) => {
        const b = el('button', { type: 'button', 'data-key': `crumb:${i}` }, i === 0 ? `root ${i === this.tableStack.length - 1 ? `(L${ans.level} ${ans.pfn})` : ''}` : `${p}`);
        if (i === this.tableStack.length - 1) b.setAttribute('aria-current', 'page');
        b.addEventListener('click', () => {
          this.tableStack = this.tableStack.slice(0, i + 1);
          void this.showTable();
        });
        return b;
      }));
      this.crumbs.append(el('span', { class: 'muted' }, ` level ${ans.level}, table page ${ans.pfn}`));
      giveFocusBack(this.crumbs, held);
    }
    if (this.hexBox) this.hexBox.textContent = ans.hex.join('\n');
    // setSource asks for the rows in view (scrolled to the traced entry without a view to keep): once is enough
    await this.table.setSource(`pt:${this.device}:${top ?? ''}`, view);
  }

  async refresh(toHit: boolean): Promise<void> {
    if (!this.iova) return;
    if (this.ctx.trace) {
      // the device whose IOVA the trace walked (else the first device mapping the byte)
      const pts = this.ctx.trace.points;
      const dev = (pts.find((p) => p.space === 'iova') ?? pts.find((p) => p.space === 'dma'))?.layer.split(' on ')[1];
      if (dev && dev !== this.device && this.ctx.snapshot?.domains.some((d) => d.device === dev)) {
        this.device = dev;
        this.followTrace(this.ctx.trace.points);
        return this.update();
      }
      this.followTrace(this.ctx.trace.points);
    }
    await Promise.all([this.iova.refresh(toHit), this.iotlb?.refresh(toHit), this.showTable()]);
  }
}

// ----------------------------------------------------------------- events

const KIND_MARK: Record<string, string> = { WARN: 'W', BUG: 'B', FAULT: 'F', INFO: 'i', 'DMA-DEBUG': 'D', 'MODEL-CHECK': 'M', CACHE: 'C' };
const KIND_COLOUR: Record<string, string> = { WARN: '#d08a00', BUG: '#a00', FAULT: '#c0392b', INFO: '#888', 'DMA-DEBUG': '#7b3fa0', 'MODEL-CHECK': '#2f6db3', CACHE: '#2a7d2a' };

export class EventsPanel {
  private list: VList | null = null;

  constructor(private readonly root: HTMLElement, private readonly ctx: Ctx) {}

  async update(): Promise<void> {
    const snap = this.ctx.snapshot;
    if (!snap) return;
    const n = snap.steps.length;
    const width = 600;
    const perStep = new Map<number, number>();
    const height = 30 + Math.min(8, Math.max(1, ...[...snap.events.reduce((m, e) => m.set(e.step, (m.get(e.step) ?? 0) + 1), new Map<number, number>()).values()], 1)) * 14 + 20;
    const xs = scaleLinear().domain([-1, Math.max(1, n)]).range([30, width - 10]);
    const svgEl = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
    const kinds = [...new Set(snap.events.map((e) => e.kind))];
    const svg = select(svgEl).attr('viewBox', `0 0 ${width} ${height}`).attr('width', '100%').attr('role', 'img')
      .attr('aria-label', `Timeline of ${snap.events.length} events over ${n} steps: ${kinds.map((k) => `${snap.events.filter((e) => e.kind === k).length} ${k}`).join(', ') || 'none'}`);
    svg.append('line').attr('x1', xs(-1)).attr('x2', xs(n)).attr('y1', 20).attr('y2', 20).attr('stroke', '#888');
    for (let i = -1; i < n; i++) {
      svg.append('line').attr('x1', xs(i)).attr('x2', xs(i)).attr('y1', 16).attr('y2', 24).attr('stroke', i < snap.index ? '#333' : '#bbb');
      if (n <= 40 || i % Math.ceil(n / 40) === 0) svg.append('text').attr('x', xs(i)).attr('y', 12).attr('text-anchor', 'middle').attr('font-size', 9).text(i < 0 ? 'setup' : String(i));
    }
    for (const e of snap.events) {
      const k = perStep.get(e.step) ?? 0;
      perStep.set(e.step, k + 1);
      if (k >= 8) continue;
      const g = svg.append('g').attr('transform', `translate(${xs(e.step) + 6},${34 + k * 14})`);
      g.append('circle').attr('r', 6).attr('fill', KIND_COLOUR[e.kind] ?? '#555');
      g.append('text').attr('text-anchor', 'middle').attr('y', 4).attr('fill', '#fff').attr('font-size', 9).attr('font-weight', 'bold').text(KIND_MARK[e.kind] ?? '?');
      g.append('title').text(`#${e.seq} step ${e.step < 0 ? 'setup' : e.step}: ${e.kind} ${e.source}: ${e.message}`);
    }
    const legend = el('div', { class: 'legend' });
    for (const [k, m] of Object.entries(KIND_MARK)) {
      const s = el('span');
      s.append(el('span', { class: 'sw', style: `background:${KIND_COLOUR[k]}; color: #fff; font-size: 9px; text-align: center; line-height: 10px; width: 14px`, 'aria-hidden': 'true' }, m), `${k}`);
      legend.append(s);
    }
    const host = el('div');
    const held = holdFocus(this.root);
    this.root.replaceChildren(svgEl, legend, host);
    this.list = new VList(host, this.ctx.call, { label: 'Event log', empty: 'no events logged' });
    const back = giveFocusBack(this.root, held);
    if (back.list === this.list) {
      // a keyboard user in the log stays where they were in it
      await this.list.setSource('events', back.view);
      return;
    }
    await this.list.setSource('events');
    this.list.el.scrollTop = this.list.el.scrollHeight;
  }

  async refresh(): Promise<void> {
    await this.list?.refresh(false);
  }
}
