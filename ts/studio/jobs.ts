// Long studio tasks (token optimisation, evaluation) run in the background one at a time; the
// page polls their state, progress (the loss per epoch) and result.
import { randomBytes } from "node:crypto";

import { BusyError, NotFoundError } from "../errors";

export interface JobState {
  id: string;
  kind: string;
  state: "running" | "done" | "failed";
  /** Loss per finished epoch (optimisation), items done (evaluation). */
  progress: { losses: number[]; done: number; total: number };
  result?: unknown;
  error?: { code: string; message: string };
}

export interface JobContext {
  progress: JobState["progress"];
  signal: AbortSignal;
}

export class Jobs {
  readonly #jobs = new Map<string, JobState>();
  readonly #controller = new AbortController();
  #running: JobState | undefined;

  /** Starts `run` unless a job is running (a BusyError then); returns the job's state. */
  start(kind: string, run: (ctx: JobContext) => Promise<unknown>): JobState {
    if (this.#running) throw new BusyError(`a ${this.#running.kind} job (${this.#running.id}) is running; accepted: one job at a time, poll GET /api/jobs/${this.#running.id}`);
    const job: JobState = { id: randomBytes(6).toString("hex"), kind, state: "running", progress: { losses: [], done: 0, total: 0 } };
    this.#jobs.set(job.id, job);
    this.#running = job;
    run({ progress: job.progress, signal: this.#controller.signal }).then(
      (result) => {
        job.state = "done";
        job.result = result;
      },
      (error: unknown) => {
        job.state = "failed";
        const code = (error as { code?: unknown } | null)?.code;
        job.error = { code: typeof code === "string" ? code : "ERR_OVAM_INTERNAL", message: error instanceof Error ? error.message : String(error) };
      },
    ).finally(() => {
      this.#running = undefined;
    });
    return job;
  }

  get(id: string): JobState {
    const job = this.#jobs.get(id);
    if (!job) throw new NotFoundError(`no job "${id}"; accepted: an id returned by POST /api/jobs/optimize or /api/jobs/eval`);
    return job;
  }

  /** Aborts the running job (the studio is closing). */
  abort(): void {
    this.#controller.abort(new Error("the studio is closing"));
  }
}
