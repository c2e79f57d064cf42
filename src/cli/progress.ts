// What it is: a one-line progress bar for long CLI runs, drawn on a terminal stream (stderr) with
// carriage returns, never on stdout.

/** The minimal stream the bar writes to (process.stderr in the CLI). */
export interface ProgressStream {
  write(s: string): unknown;
  readonly columns?: number;
}

/** Renders one frame: "[#####-----]  5/10 label", clipped to width columns. */
export function progressLine(done: number, total: number, label: string, width = 80): string {
  const barLen = 24;
  const frac = total > 0 ? Math.min(1, Math.max(0, done / total)) : 1;
  const filled = Math.round(frac * barLen);
  const count = `${String(done).padStart(String(total).length)}/${total}`;
  const line = `[${'#'.repeat(filled)}${'-'.repeat(barLen - filled)}] ${count} ${label}`;
  return line.length > width - 1 ? line.slice(0, Math.max(0, width - 1)) : line;
}

/** Whether the CLI should draw a bar: a terminal stderr, not --json, not CI, not --no-progress. */
export function wantProgress(opts: { json: boolean; progress: boolean }, isTTY: boolean | undefined, env: NodeJS.ProcessEnv): boolean {
  return Boolean(isTTY) && !opts.json && opts.progress && !env.CI;
}

/** A progress bar on `stream`: update() redraws the line, done() clears it. */
export class ProgressBar {
  private drawn = false;
  constructor(private readonly stream: ProgressStream) {}

  /** Redraws the bar for done of total steps. */
  update(done: number, total: number, label: string): void {
    const cols = this.stream.columns;
    // A terminal that does not report its width (0 or undefined) gets 80 columns.
    const line = progressLine(done, total, label, cols !== undefined && cols >= 20 ? cols : 80);
    this.stream.write(`\r${line}\x1b[K`);
    this.drawn = true;
  }

  /** Clears the bar's line so that later output starts clean. */
  done(): void {
    if (this.drawn) this.stream.write('\r\x1b[K');
    this.drawn = false;
  }
}
