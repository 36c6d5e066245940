// A small progress display for long runs on stderr: on a TTY one line redrawn
// in place (bar, step, loss, tokens/s, ETA); otherwise plain lines every
// `every` steps, so logs stay readable.

export function formatDuration(sec: number): string {
  if (!Number.isFinite(sec) || sec < 0) return '?';
  const s = Math.round(sec);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  const pad = (n: number) => String(n).padStart(2, '0');
  return h > 0 ? `${h}h${pad(m)}m${pad(r)}s` : m > 0 ? `${m}m${pad(r)}s` : `${r}s`;
}

export interface ProgressFields {
  step: number;
  steps: number;
  loss: number;
  tokensPerSec: number;
  etaSec: number;
}

export class ProgressBar {
  private lineOpen = false;
  private lastDraw = -Infinity;

  constructor(
    private readonly out: NodeJS.WriteStream = process.stderr,
    private readonly every = 10,
    private readonly width = 24,
  ) {}

  private get tty(): boolean {
    return this.out.isTTY === true;
  }

  update(p: ProgressFields): void {
    this.draw(
      p.step,
      p.steps,
      `step ${p.step}/${p.steps}  loss ${p.loss.toFixed(4)}  ${Math.round(p.tokensPerSec)} tok/s  ETA ${formatDuration(p.etaSec)}`,
    );
  }

  /** Progress of a stage of work: `label done/total  detail`. */
  stage(label: string, done: number, total: number, detail = ''): void {
    this.draw(done, total, `${label} ${done}/${total}${detail === '' ? '' : `  ${detail}`}`);
  }

  private draw(done: number, total: number, text: string): void {
    if (this.tty) {
      // Redraw at most 10 times a second (tiny configs run hundreds of steps a second).
      const now = performance.now();
      if (done !== total && now - this.lastDraw < 100) return;
      this.lastDraw = now;
      const filled = total > 0 ? Math.round((this.width * Math.min(done, total)) / total) : 0;
      const bar = '#'.repeat(filled) + '.'.repeat(this.width - filled);
      this.out.write(`\r\x1b[2K[${bar}] ${text}`);
      this.lineOpen = true;
    } else if (done % this.every === 0 || done === total || done === 1) {
      this.out.write(`${text}\n`);
    }
  }

  /** A line that stays (validation results, checkpoints), printed above the bar. */
  log(line: string): void {
    if (this.lineOpen) this.out.write('\r\x1b[2K');
    this.out.write(`${line}\n`);
    this.lineOpen = false;
  }

  done(): void {
    if (this.lineOpen) this.out.write('\n');
    this.lineOpen = false;
  }
}
