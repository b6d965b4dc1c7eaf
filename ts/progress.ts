// What the command line tells the user while it works: a progress bar on a terminal, one line
// per event otherwise, or JSON-lines records (one object per event) for programs.

/** The part of a stream the reporter uses (process.stderr, process.stdout, or a test double). */
export interface Sink {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface Task {
  /** `done` of `total` units finished; `loss` is shown and recorded with the update when given. */
  update(done: number, extra?: { loss?: number }): void;
  /** Ends the task (a finished bar stays on screen as one line). */
  end(): void;
}

export type ReporterMode = "tty" | "plain" | "json";

/** Seconds as "4.2s" or "m:ss". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  const whole = Math.round(seconds);
  return `${Math.floor(whole / 60)}:${String(whole % 60).padStart(2, "0")}`;
}

const BAR_WIDTH = 24;

export class Reporter {
  readonly mode: ReporterMode;
  readonly #out: Sink;
  readonly #err: Sink;
  readonly #now: () => number;
  #barShown = false;

  /** Mode "json" writes records to `out`; otherwise a bar (`err` a TTY) or lines go to `err`. */
  constructor(options: { json: boolean; out: Sink; err: Sink; now?: () => number }) {
    this.mode = options.json ? "json" : options.err.isTTY ? "tty" : "plain";
    this.#out = options.out;
    this.#err = options.err;
    this.#now = options.now ?? (() => performance.now() / 1000);
  }

  /** One JSON-lines record (json mode only). */
  record(event: string, fields: Record<string, unknown>): void {
    if (this.mode === "json") this.#out.write(`${JSON.stringify({ event, ...fields })}\n`);
  }

  /** A remark for people (stderr), or a "note" record. */
  note(message: string): void {
    if (this.mode === "json") this.record("note", { message });
    else this.#line(message);
  }

  /** The command's outcome: `fields` as the "result" record, or `text` on stdout. */
  result(fields: Record<string, unknown>, text: string): void {
    if (this.mode === "json") this.record("result", fields);
    else this.#out.write(text.endsWith("\n") ? text : `${text}\n`);
  }

  /** Starts reporting `total` units ("step", "epoch") of the job `name`; `rate` also shows units per second. */
  start(name: string, unit: string, total: number, options: { rate?: boolean } = {}): Task {
    const started = this.#now();
    let last = 0;
    const timing = (done: number) => {
      const elapsed = this.#now() - started;
      return { elapsed, remaining: done > 0 ? (elapsed / done) * (total - done) : NaN, rate: elapsed > 0 ? done / elapsed : NaN };
    };
    return {
      update: (done, extra = {}) => {
        last = done;
        const { elapsed, remaining, rate } = timing(done);
        const loss = extra.loss === undefined ? "" : `  loss ${extra.loss.toPrecision(5)}`;
        const counts = `${unit} ${done}/${total}`;
        const speed = options.rate ? `, ${Number.isFinite(rate) ? rate.toPrecision(3) : "?"} ${unit}/s` : "";
        if (this.mode === "json")
          this.record("progress", { task: name, unit, done, total, elapsed_s: round(elapsed), remaining_s: round(remaining), ...(options.rate ? { rate_per_s: round(rate) } : {}), ...extra });
        else if (this.mode === "plain") this.#line(`${name}: ${counts}${loss}  ${formatDuration(elapsed)} elapsed, ~${formatDuration(remaining)} left${speed}`);
        else {
          if (loss) this.#line(`${name}: ${counts}${loss}`);
          const filled = Math.round((BAR_WIDTH * done) / Math.max(1, total));
          const bar = `${"█".repeat(filled)}${"░".repeat(BAR_WIDTH - filled)}`;
          const text = `${name} ${bar} ${counts}  ${formatDuration(elapsed)} elapsed, ~${formatDuration(remaining)} left${speed}`;
          this.#err.write(`\r${text.slice(0, (this.#err.columns || 80) - 1)}\x1b[K`); // a pty may report 0 columns
          this.#barShown = true;
        }
      },
      end: () => {
        const { elapsed } = timing(last);
        if (this.mode === "json") this.record("done", { task: name, unit, done: last, total, elapsed_s: round(elapsed) });
        else this.#line(`${name}: ${last}/${total} ${unit}s in ${formatDuration(elapsed)}`);
      },
    };
  }

  // A permanent line on stderr, clearing an unfinished bar first.
  #line(text: string): void {
    this.#err.write(`${this.#barShown ? "\r\x1b[K" : ""}${text}\n`);
    this.#barShown = false;
  }
}

function round(seconds: number): number | null {
  return Number.isFinite(seconds) ? Math.round(seconds * 1000) / 1000 : null;
}
