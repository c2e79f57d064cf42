// The page: loads a scenario (a bundled example, an upload or pasted text) into the model worker,
// runs it (step, play, run to end, back to start) and shows the machine in panels. A click on a
// byte traces it; every panel then marks what the trace touches.

import './style.css';
import { connect } from './ui/rpc.ts';
import { renderSteps, renderCounters, renderMemory, EventsPanel, LayoutsPanel, BytesPanel, TracePanel, PciPanel, IommuPanel, type Ctx } from './ui/panels.ts';
import type { Snapshot } from './protocol.ts';

const examples = import.meta.glob<string>('../../examples/*.{yaml,yml,json}', { query: '?raw', import: 'default', eager: true });

const $ = <T extends HTMLElement>(sel: string): T => {
  const el = document.querySelector<T>(sel);
  if (!el) throw new Error(`missing element ${sel}`);
  return el;
};

const worker = new Worker(new URL('./worker/worker.ts', import.meta.url), { type: 'module' });
const call = connect(worker);

const status = $<HTMLOutputElement>('#status');
const select = $<HTMLSelectElement>('#example');
const buttons = {
  reset: $<HTMLButtonElement>('#reset'),
  step: $<HTMLButtonElement>('#step'),
  play: $<HTMLButtonElement>('#play'),
  run: $<HTMLButtonElement>('#run'),
};

const body = (id: string): HTMLElement => $<HTMLElement>(`#panel-${id} .body`);

const ctx: Ctx = {
  call,
  snapshot: null,
  buffer: null,
  onTrace: () => undefined,
  setStatus: (state, text) => setStatus(state, text),
};

const trace = new TracePanel(body('trace'), ctx);
const layouts = new LayoutsPanel(body('layouts'), ctx);
const bytes = new BytesPanel(body('bytes'), ctx);
const pci = new PciPanel(body('pci'), ctx);
const iommu = new IommuPanel(body('iommu'), ctx);
const events = new EventsPanel(body('events'), ctx);

function setStatus(state: string, text: string): void {
  status.dataset.state = state;
  status.textContent = text;
}

/** After a new trace (or none): every panel marks what it touches. */
ctx.onTrace = async () => {
  trace.render();
  if (ctx.snapshot) renderMemory(body('memory'), ctx);
  await Promise.all([layouts.refresh(true), bytes.refresh(), iommu.refresh(true), pci.refreshTrace(), events.refresh()]);
};

/** Milliseconds between two steps of Play (after the page has drawn the last one). */
const PLAY_INTERVAL = 250;

// Play state. Each Play gets a new token; Pause (or a load) takes a new one, so a loop that wakes
// up from its wait or from its last step sees it is stale and ends: never two loops at once.
let playing = false;
let playToken = 0;
/** A request to the worker is in flight (load, step, run, reset). */
let busy = false;
/** Ends the current wait between two steps at once (Pause). */
let wake: (() => void) | null = null;

function setButtons(snap: Snapshot | null): void {
  const more = snap !== null && snap.state === 'ready';
  // while playing, only Pause (and loading another scenario) are offered
  buttons.reset.disabled = busy || playing || snap === null;
  buttons.step.disabled = busy || playing || !more;
  buttons.run.disabled = busy || playing || !more;
  // Pause is always possible; Play needs a next step. Play stays enabled (and focused) while a
  // step paused in flight finishes: the next Play's first step waits for it (act's queue).
  buttons.play.disabled = !playing && !more;
  buttons.play.setAttribute('aria-pressed', String(playing));
  buttons.play.dataset.state = playing ? 'playing' : 'idle';
  buttons.play.textContent = playing ? '\u2016 Pause' : '\u25B6 Play';
}

async function show(snap: Snapshot): Promise<void> {
  ctx.snapshot = snap;
  if (ctx.buffer === null || !snap.buffers.some((b) => b.name === ctx.buffer)) ctx.buffer = snap.buffers[0]?.name ?? null;
  renderSteps(body('steps'), snap);
  renderMemory(body('memory'), ctx);
  renderCounters(body('counters'), snap);
  // a panel that cannot draw says so in its own body; the run and the other panels go on
  const guard = (id: string, p: Promise<void>): Promise<void> => p.catch((e: unknown) => {
    const note = document.createElement('p');
    note.className = 'panel-error';
    note.setAttribute('role', 'alert');
    note.textContent = `This panel could not be drawn: ${(e as Error).message}`;
    body(id).prepend(note);
  });
  await Promise.all([
    guard('layouts', layouts.update()), guard('bytes', bytes.update()), guard('pci', pci.update()), guard('iommu', iommu.update()),
    guard('events', events.update()), guard('trace', trace.update()),
  ]);
}

/**
 * The configuration and seed of a run as phyr run's first line names them (` [config strict] (seed 7)`);
 * '' for the base machine with the file's seed.
 */
function variant(snap: Snapshot): string {
  if (snap.config === null && snap.seed === snap.defaultSeed) return '';
  return `${snap.config !== null ? ` [config ${snap.config}]` : ''} (seed ${snap.seed})`;
}

function describe(snap: Snapshot): string {
  const failed = snap.steps.find((s) => s.status === 'failed');
  const name = `${snap.name}${variant(snap)}`;
  if (snap.state === 'stopped') return `${name}: stopped at step ${failed?.index ?? '?'} (${failed?.label ?? ''}${failed?.unmet ? `: ${failed.unmet}` : failed?.errno ? `: ${failed.errno}` : ''})`;
  if (snap.state === 'done') return `${name}: all ${snap.steps.length} steps ran`;
  return `${name}: ${snap.index} of ${snap.steps.length} steps ran`;
}

/** The configuration and seed a load runs with (none: the base machine, the file's seed). */
interface RunChoice {
  readonly config?: string;
  readonly seed?: number;
}

/** The text and name of the scenario loaded last: Run with these loads it again with other choices. */
let loaded: { readonly text: string; readonly source: string } | null = null;

const runForm = {
  config: $<HTMLSelectElement>('#config'),
  seed: $<HTMLInputElement>('#seed'),
  apply: $<HTMLButtonElement>('#apply'),
  error: $<HTMLElement>('#seed-error'),
};

/** The run form shows the loaded scenario's configurations and the run's configuration and seed. */
function fillRunForm(snap: Snapshot): void {
  const base = document.createElement('option');
  base.value = '';
  base.textContent = 'base machine';
  runForm.config.replaceChildren(base, ...snap.configs.map((c) => {
    const o = document.createElement('option');
    o.value = c.name;
    o.textContent = c.description ? `${c.name}: ${c.description}` : c.name;
    return o;
  }));
  runForm.config.value = snap.config ?? '';
  runForm.seed.value = String(snap.seed);
  showSeedError(null);
  for (const c of [runForm.config, runForm.seed, runForm.apply]) c.disabled = false;
}

function showSeedError(text: string | null): void {
  runForm.error.hidden = text === null;
  runForm.error.textContent = text ?? '';
  if (text === null) {
    runForm.seed.removeAttribute('aria-invalid');
    runForm.seed.removeAttribute('aria-errormessage');
  } else {
    runForm.seed.setAttribute('aria-invalid', 'true');
    runForm.seed.setAttribute('aria-errormessage', runForm.error.id);
  }
}

/**
 * A seed as `phyr run --seed` takes it: decimal or 0x hex, an integer in [0, 2^32-1]; empty: none
 * (the file's machine.seed, else 1). Throws RangeError with the reason.
 */
function parseSeed(text: string): number | undefined {
  const s = text.trim();
  if (s === '') return undefined;
  const n = /^0x[0-9a-f]+$/i.test(s) ? parseInt(s, 16) : /^\d+$/.test(s) ? Number(s) : NaN;
  if (!Number.isSafeInteger(n) || n < 0 || n > 0xffffffff) {
    throw new RangeError(`Seed must be an integer in [0, 4294967295] (decimal, or hex with 0x; empty: the file's own), got ${JSON.stringify(text)}.`);
  }
  return n;
}

/** The last request queued by act: requests run one after another, each drawn before the next. */
let queue: Promise<unknown> = Promise.resolve();

/**
 * One request to the worker and the snapshot it answers with; false when it failed. A request
 * made while another is being drawn waits for it (a Load pressed during a step, say), so that
 * two snapshots are never drawn at once. A load stops Play at once.
 */
function act(kind: 'load' | 'step' | 'run' | 'reset', text?: string, source?: string, opts: RunChoice = {}): Promise<boolean> {
  if (kind === 'load') stopPlay();
  const run = (): Promise<boolean> => actNow(kind, text, source, opts);
  const next = queue.then(run, run); // a request that threw does not block the ones after it
  queue = next;
  return next;
}

/**
 * The run control that had the keyboard focus before a request disabled it (a disabled button
 * loses the focus): it gets it back afterwards, or, when it stays disabled (Step or Run to end at
 * the end of the run), the first run control still enabled. Null: the focus was elsewhere.
 */
function focusedControl(): HTMLButtonElement | null {
  const a = document.activeElement;
  return Object.values(buttons).find((b) => b === a) ?? null;
}

function restoreFocus(had: HTMLButtonElement | null): void {
  if (had === null) return;
  const a = document.activeElement;
  if (a !== null && a !== document.body && a !== had) return; // the user has moved on
  const to = had.disabled ? [buttons.step, buttons.run, buttons.reset].find((b) => !b.disabled) : had;
  to?.focus();
}

async function actNow(kind: 'load' | 'step' | 'run' | 'reset', text?: string, source?: string, opts: RunChoice = {}): Promise<boolean> {
  const had = focusedControl();
  busy = true;
  setButtons(ctx.snapshot);
  let ok = true;
  setStatus(kind === 'load' ? 'loading' : 'running', kind === 'load' ? `loading ${source ?? ''}...` : 'running...');
  try {
    const snap = kind === 'load' ? await call({ type: 'load', text: text ?? '', source: source ?? 'pasted', ...opts }) : await call({ type: kind });
    if (kind === 'load') {
      loaded = { text: text ?? '', source: source ?? 'pasted' };
      fillRunForm(snap);
    }
    if (kind === 'load' || kind === 'reset') trace.clear();
    // a new scenario: nothing the last one's panels were showing carries over
    if (kind === 'load') for (const p of [bytes, pci, iommu]) p.forget();
    await show(snap);
    setStatus(snap.state === 'ready' ? 'ready' : snap.state, describe(snap));
  } catch (e) {
    setStatus('error', (e as Error).message);
    ok = false;
  }
  busy = false;
  setButtons(ctx.snapshot);
  // Play keeps its own focus rules (play() moves it when the run ends)
  if (had !== buttons.play) restoreFocus(had);
  return ok;
}

/** Stops Play: the loop ends after the step in flight (if any); its wait between steps ends now. */
function stopPlay(): void {
  if (!playing) return;
  playing = false;
  playToken++;
  wake?.();
}

/** Waits PLAY_INTERVAL ms after the next frame (the last step is drawn), or until stopPlay. */
function between(): Promise<void> {
  return new Promise((resolve) => {
    let timer = 0;
    const done = (): void => {
      if (wake === done) wake = null;
      clearTimeout(timer);
      resolve();
    };
    wake = done;
    requestAnimationFrame(() => {
      if (wake === done) timer = window.setTimeout(done, PLAY_INTERVAL);
    });
  });
}

/** Play: one step after another until Pause, the end, a failed step or an error. */
async function play(): Promise<void> {
  const token = ++playToken;
  playing = true;
  setButtons(ctx.snapshot);
  const current = (): boolean => token === playToken;
  while (current() && ctx.snapshot?.state === 'ready') {
    if (!(await act('step')) || !current() || ctx.snapshot?.state !== 'ready') break;
    await between();
  }
  if (!current()) return; // paused (or a load): stopPlay has already reset the controls
  const hadFocus = document.activeElement === buttons.play;
  playing = false;
  playToken++;
  setButtons(ctx.snapshot);
  // at the end the Play button is disabled: keep a keyboard user's focus on the run controls
  if (hadFocus && buttons.play.disabled) buttons.reset.focus();
}

function togglePlay(): void {
  if (playing) {
    stopPlay();
    setButtons(ctx.snapshot);
  } else if (!buttons.play.disabled) {
    void play();
  }
}

// ----------------------------------------------------------------- loading

const names = Object.keys(examples).sort();
for (const path of names) {
  const o = document.createElement('option');
  o.value = path;
  o.textContent = path.replace(/^.*\//, '');
  select.append(o);
}
if (names.length === 0) {
  const o = document.createElement('option');
  o.textContent = '(no examples bundled)';
  o.disabled = true;
  select.append(o);
}

$<HTMLFormElement>('#load-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const path = select.value;
  if (examples[path] !== undefined) void act('load', examples[path], path.replace(/^.*\//, ''));
});
$<HTMLInputElement>('#upload').addEventListener('change', async (e) => {
  const input = e.target as HTMLInputElement;
  const f = input.files?.[0];
  if (!f) return;
  const text = await f.text();
  // emptied, so that choosing the same file again (edited, or to start afresh) is a change too
  input.value = '';
  await act('load', text, f.name);
});
$<HTMLButtonElement>('#load-paste').addEventListener('click', async () => {
  const text = $<HTMLTextAreaElement>('#paste').value;
  const box = $<HTMLDetailsElement>('#paste-box');
  // a text that does not load leaves the box open to be fixed (the status line says why); one that
  // loads closes it, and the focus, if it was in the box, goes to its Paste toggle, not to <body>
  if (!(await act('load', text, 'pasted'))) return;
  const inBox = box.contains(document.activeElement);
  box.open = false;
  if (inBox) $<HTMLElement>('#paste-toggle').focus();
});
$<HTMLFormElement>('#run-form').addEventListener('submit', (e) => {
  e.preventDefault();
  if (loaded === null) return;
  let seed: number | undefined;
  try {
    seed = parseSeed(runForm.seed.value);
  } catch (err) {
    showSeedError((err as Error).message);
    return;
  }
  showSeedError(null);
  const config = runForm.config.value;
  void act('load', loaded.text, loaded.source, { ...(config !== '' ? { config } : {}), ...(seed !== undefined ? { seed } : {}) });
});
buttons.step.addEventListener('click', () => void act('step'));
buttons.run.addEventListener('click', () => void act('run'));
buttons.reset.addEventListener('click', () => void act('reset'));
buttons.play.addEventListener('click', togglePlay);

// ?example=NAME loads that example at once (links, tests), with &config=NAME and &seed=N if given
const params = new URLSearchParams(location.search);
const wanted = params.get('example');
if (wanted !== null) {
  const path = names.find((p) => p.endsWith(`/${wanted}`) || p.endsWith(`/${wanted}.yaml`));
  const config = params.get('config');
  let seed: number | undefined;
  try {
    seed = parseSeed(params.get('seed') ?? '');
  } catch (err) {
    seed = NaN;
    setStatus('error', (err as Error).message);
  }
  if (!path) setStatus('error', `no example named ${wanted}`);
  else if (!Number.isNaN(seed)) {
    select.value = path;
    void act('load', examples[path], path.replace(/^.*\//, ''), { ...(config !== null ? { config } : {}), ...(seed !== undefined ? { seed } : {}) });
  }
} else {
  document.documentElement.dataset.ready = 'true';
}
setButtons(null);
document.documentElement.dataset.ready = 'true';
