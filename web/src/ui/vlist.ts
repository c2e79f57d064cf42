// A virtualised list: only the rows in view (plus a few) are asked of the worker and put in the
// DOM, so a 262,144-entry page array scrolls like a 20-entry one. Keyboard: the list is one tab
// stop; arrow keys, Page Up/Down, Home/End move the active row, Enter activates it. Rows the
// current trace hits are marked with a colour and a ◆ (and "traced" for screen readers).

import type { RowsAnswer } from '../protocol.ts';
import type { Call } from './rpc.ts';

const ROW_H = 18;
const OVERSCAN = 8;
let listIds = 0;

/** Where a list was: its active row and scroll offset, so that a list drawn in its place starts there. */
export interface ListView {
  readonly active: number;
  readonly scrollTop: number;
}

const byElement = new WeakMap<Element, VList>();

/** The list whose element is el (null: el is not a list's). */
export function listOf(el: Element): VList | null {
  return byElement.get(el) ?? null;
}

export interface VListOptions {
  readonly label: string;
  readonly onActivate?: (index: number, cells: readonly string[]) => void;
  readonly empty?: string;
}

export class VList {
  readonly el: HTMLDivElement;
  private readonly head: HTMLDivElement;
  private readonly body: HTMLDivElement;
  private source: string | null = null;
  private total = 0;
  private active = -1;
  private gen = 0;
  private pending = false;
  private rows = new Map<number, readonly string[]>();
  /** A scroll offset to apply once the rows' height is known (setSource with a view). */
  private pendingScroll: number | null = null;
  private readonly id = `vl${++listIds}`;

  constructor(parent: HTMLElement, private readonly call: Call, private readonly opts: VListOptions) {
    this.el = document.createElement('div');
    this.el.className = 'vlist';
    this.el.tabIndex = 0;
    this.el.setAttribute('role', 'grid');
    this.el.setAttribute('aria-label', opts.label);
    this.el.dataset.state = 'empty';
    // the list a redraw puts in this one's place has the same label: the focus goes back to it
    this.el.dataset.key = `list:${opts.label}`;
    byElement.set(this.el, this);
    this.head = document.createElement('div');
    this.head.className = 'vhead';
    this.head.setAttribute('role', 'row');
    this.body = document.createElement('div');
    this.body.style.position = 'relative';
    this.el.append(this.head, this.body);
    parent.append(this.el);
    this.el.addEventListener('scroll', () => this.schedule());
    this.el.addEventListener('keydown', (e) => this.key(e));
    this.body.addEventListener('click', (e) => {
      const row = (e.target as HTMLElement).closest<HTMLElement>('.vrow');
      if (!row) return;
      this.setActive(Number(row.dataset.index));
      this.activate();
    });
  }

  /**
   * Shows another list (null: nothing): from the top (to the first traced row, if any), or, with a
   * view (a list this one replaces), at that view's scroll offset and active row.
   */
  setSource(source: string | null, view?: ListView): Promise<void> {
    this.source = source;
    this.active = view?.active ?? -1;
    this.el.scrollTop = 0;
    this.pendingScroll = view?.scrollTop ?? null;
    return this.refresh(view === undefined);
  }

  /** The active row and scroll offset, for a list drawn in this one's place. */
  view(): ListView {
    return { active: this.active, scrollTop: this.pendingScroll ?? this.el.scrollTop };
  }

  get currentSource(): string | null {
    return this.source;
  }

  /** Asks the worker again for the rows in view (after a step or a new trace). */
  async refresh(scrollToHit = false): Promise<void> {
    const g = ++this.gen;
    if (this.source === null) {
      this.total = 0;
      this.pendingScroll = null;
      this.head.replaceChildren();
      this.body.replaceChildren(this.emptyNote());
      this.body.style.height = '';
      this.el.dataset.state = 'empty';
      return;
    }
    this.el.dataset.state = 'loading';
    const visible = Math.ceil((this.el.clientHeight || 200) / ROW_H);
    const first = Math.max(0, Math.floor((this.pendingScroll ?? this.el.scrollTop) / ROW_H) - OVERSCAN);
    let ans: RowsAnswer;
    try {
      ans = await this.call({ type: 'rows', source: this.source, start: first, count: visible + 2 * OVERSCAN });
    } catch (e) {
      if (g !== this.gen) return;
      this.body.replaceChildren(this.emptyNote(String((e as Error).message)));
      this.el.dataset.state = 'error';
      return;
    }
    if (g !== this.gen) return;
    if (scrollToHit && ans.firstHit >= 0 && (ans.firstHit < first || ans.firstHit >= first + visible)) {
      this.el.scrollTop = Math.max(0, ans.firstHit * ROW_H - ROW_H * 2);
      return this.refresh(false);
    }
    this.render(ans);
    this.el.dataset.state = 'ready';
    this.el.dataset.hits = String(ans.rows.filter((r) => r.hit).length);
    this.el.dataset.firstHit = String(ans.firstHit);
  }

  private emptyNote(text = this.opts.empty ?? 'nothing to show'): HTMLElement {
    const d = document.createElement('div');
    d.className = 'vempty';
    d.textContent = text;
    return d;
  }

  private render(ans: RowsAnswer): void {
    this.total = ans.total;
    this.el.setAttribute('aria-rowcount', String(ans.total + 1));
    this.head.replaceChildren(...ans.columns.map((c) => {
      const s = document.createElement('span');
      s.setAttribute('role', 'columnheader');
      s.textContent = c;
      return s;
    }));
    this.body.style.height = `${ans.total * ROW_H}px`;
    if (this.pendingScroll !== null) {
      this.el.scrollTop = this.pendingScroll;
      this.pendingScroll = null;
    }
    if (this.active >= ans.total) this.active = ans.total - 1;
    this.rows.clear();
    if (ans.total === 0) {
      this.body.replaceChildren(this.emptyNote());
      return;
    }
    const frag = document.createDocumentFragment();
    ans.rows.forEach((r, k) => {
      const i = ans.start + k;
      this.rows.set(i, r.cells);
      const row = document.createElement('div');
      row.className = `vrow${r.hit ? ' hit' : ''}${i === this.active ? ' active' : ''}`;
      row.id = `${this.id}-r${i}`;
      row.dataset.index = String(i);
      row.setAttribute('role', 'row');
      row.setAttribute('aria-rowindex', String(i + 2));
      row.style.top = `${i * ROW_H}px`;
      r.cells.forEach((c) => {
        const s = document.createElement('span');
        s.setAttribute('role', 'gridcell');
        s.textContent = c;
        row.append(s);
      });
      if (r.hit) {
        const sr = document.createElement('span');
        sr.className = 'sr';
        sr.style.flex = '0 0 auto';
        sr.textContent = 'traced';
        row.append(sr);
      }
      frag.append(row);
    });
    this.body.replaceChildren(frag);
    if (this.active >= 0 && this.rows.has(this.active)) this.el.setAttribute('aria-activedescendant', `${this.id}-r${this.active}`);
  }

  private schedule(): void {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      void this.refresh(false);
    });
  }

  private setActive(i: number): void {
    if (this.total === 0) return;
    this.active = Math.max(0, Math.min(this.total - 1, i));
    const top = this.active * ROW_H;
    const viewH = this.el.clientHeight - ROW_H;
    if (top < this.el.scrollTop) this.el.scrollTop = top;
    else if (top + ROW_H > this.el.scrollTop + viewH) this.el.scrollTop = top + 2 * ROW_H - viewH;
    for (const r of this.body.querySelectorAll('.vrow.active')) r.classList.remove('active');
    const row = this.body.querySelector<HTMLElement>(`#${this.id}-r${this.active}`);
    if (row) {
      row.classList.add('active');
      this.el.setAttribute('aria-activedescendant', row.id);
    }
    this.schedule();
  }

  private activate(): void {
    const cells = this.rows.get(this.active);
    if (cells && this.opts.onActivate) this.opts.onActivate(this.active, cells);
  }

  private key(e: KeyboardEvent): void {
    const page = Math.max(1, Math.floor(this.el.clientHeight / ROW_H) - 2);
    const moves: Record<string, number> = { ArrowDown: 1, ArrowUp: -1, PageDown: page, PageUp: -page };
    if (e.key in moves) this.setActive((this.active < 0 ? 0 : this.active) + (this.active < 0 ? 0 : moves[e.key]));
    else if (e.key === 'Home') this.setActive(0);
    else if (e.key === 'End') this.setActive(this.total - 1);
    else if (e.key === 'Enter') this.activate();
    else return;
    e.preventDefault();
  }
}
