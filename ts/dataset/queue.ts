// The dataset queue's producer side (BullMQ on Redis): one job per item, id = dataset id + item
// index, so enqueueing again adds nothing; then it follows the run as the manifest's single
// writer. Workers (./worker.ts) return each item's manifest line as the job's return value; the
// producer appends the lines of completed jobs it has not written yet, so the manifest gets
// exactly one line per item however many workers, retries and restarts there were. If the
// producer stops, completed jobs keep their lines in Redis and the next producer run writes them.
// Status reads the same job states.
import { createHash } from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";

import { Job, Queue, type ConnectionOptions, type JobType } from "bullmq";

import { AbortError, InvalidArgumentError, QueueError } from "../errors";
import { invalidOption } from "../options";
import { load, type Pipeline } from "../pipeline";
import { DATASET_FILE } from "./layout";
import { appendManifestLine, readManifest, type ManifestLine } from "./manifest";
import { datasetRecord, loadClassTokens, loadOptionsOf, loadSpec, modelFolder, prepareDatasetFolder, removeStaleTemporaries, writeSplit, type RunOptions } from "./run";
import { itemCount, planItem, type DatasetSpec, type Item } from "./spec";

/** The BullMQ queue every producer and worker uses unless told another. */
export const DEFAULT_QUEUE_NAME = "ovam-dataset";

/** What one job carries: where the dataset is and which item to make (the spec is in the dataset's folder). */
export interface ItemJobData {
  /** The dataset's id: a digest of its folder and dataset.json. */
  dataset: string;
  /** The dataset folder, a path every worker's machine mounts. */
  out: string;
  /** The folder the spec's relative paths (token files) start from. */
  baseDir: string;
  /** The producer's model folder (a worker's --model replaces it). */
  model: string;
  item: Item;
}

/** Where the queue lives: a redis:// or rediss:// URL and the BullMQ queue's name. */
export interface QueueTarget {
  /** redis://[user:password@]host:port[/db] or rediss://… (TLS). */
  queue: string;
  /** The BullMQ queue's name (default "ovam-dataset"). */
  queueName?: string;
}

/** `url` with its password replaced by "***", for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString();
  } catch {
    return "(a Redis URL that does not parse)";
  }
}

/**
 * The connection options of a checked Redis URL. maxRetriesPerRequest null: commands wait for
 * Redis to come back (BullMQ requires it of workers, and a producer should wait as well); ioredis
 * reconnects on its own, and rediss:// turns TLS on.
 */
export function connectionOptions(url: unknown, where: string): ConnectionOptions {
  const accepted = "redis://[user:password@]host:port[/db] or rediss://… (TLS)";
  if (typeof url !== "string" || url === "") throw invalidOption(where, "queue", url, accepted);
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw invalidOption(where, "queue", redactUrl(url), accepted);
  }
  if (parsed.protocol !== "redis:" && parsed.protocol !== "rediss:") throw invalidOption(where, "queue", redactUrl(url), accepted);
  return { url, maxRetriesPerRequest: null } as ConnectionOptions;
}

/** The dataset's id: a digest of its folder and its dataset.json (spec and model), so another spec or folder is another dataset. */
export function datasetId(out: string, record: string): string {
  return createHash("sha256").update(`${path.resolve(out)}\n${record}`).digest("hex").slice(0, 16);
}

/** Job id of item `index` of dataset `id`. */
export function jobId(id: string, index: number): string {
  return `${id}-${index}`;
}

// Errors no reconnection cures: a wrong password or user, missing rights, a certificate refused.
const FATAL = /WRONGPASS|NOAUTH|NOPERM|invalid username-password|certificate|self[- ]signed|SSL routines|wrong version number/i;

/** Whether a Redis connection error is one no reconnection cures. */
export function isFatalRedisError(error: Error): boolean {
  return FATAL.test(error.message);
}

/** `report(message)` unless the same message was reported in the last `ms` (ioredis repeats an error on every reconnection attempt). */
export function throttled(report: ((message: string) => void) | undefined, ms = 10_000): (message: string) => void {
  const last = new Map<string, number>();
  return (message) => {
    const now = Date.now();
    if ((last.get(message) ?? -Infinity) > now - ms) return;
    last.set(message, now);
    report?.(message);
  };
}

/**
 * Resolves once Redis at `target` answers PING. An error no reconnection cures (a wrong password,
 * an untrusted certificate) rejects at once; an unreachable server is tried every second until
 * `waitMs` has passed (Infinity: until the signal aborts), with a note (URL redacted) per 10 s.
 * Run before BullMQ connects: its connections retry such errors forever.
 */
export async function checkRedis(target: QueueTarget, where: string, o: { waitMs: number; signal?: AbortSignal; onNote?: (message: string) => void }): Promise<void> {
  const url = redactUrl(target.queue);
  const note = throttled(o.onNote);
  const deadline = Date.now() + o.waitMs;
  for (;;) {
    // No reconnection: one attempt per round, which ends with the answer or the first error.
    const probe = new Queue(target.queueName ?? DEFAULT_QUEUE_NAME, {
      connection: { ...connectionOptions(target.queue, where), retryStrategy: () => null, maxRetriesPerRequest: 1, connectTimeout: 5000 } as ConnectionOptions,
    });
    probe.on("error", () => undefined);
    let failure: Error | undefined;
    try {
      // ioredis's client under BullMQ's generic type.
      await ((await probe.waitUntilReady()) as unknown as { ping(): Promise<string> }).ping();
    } catch (error) {
      failure = error as Error;
    } finally {
      await probe.close().catch(() => undefined);
    }
    if (!failure) return;
    if (isFatalRedisError(failure)) throw new QueueError(`${where}: Redis at ${url} refused the connection (${failure.message})`, { cause: failure });
    if (Date.now() >= deadline) throw new QueueError(`${where}: cannot reach Redis at ${url} (${failure.message})`, { cause: failure });
    note(`Redis ${url}: ${failure.message} (trying again)`);
    await abortable(sleep(1000), o.signal, where);
  }
}

/**
 * A BullMQ queue for the producer and status (after checkRedis): connection errors are reported
 * (URL redacted, once per 10 s) while ioredis reconnects, and `run` rejects what it awaits once an
 * error no reconnection cures occurs or the signal aborts; commands otherwise wait for Redis.
 */
export class QueueHandle {
  readonly queue: Queue;
  readonly #where: string;
  readonly #url: string;
  readonly #fatal: Promise<never>;

  constructor(target: QueueTarget, where: string, options: { onNote?: (message: string) => void; retries?: "wait" | "fail" } = {}) {
    const connection = connectionOptions(target.queue, where);
    // Status reads fail fast (a few retries) instead of waiting for a Redis that is down.
    if (options.retries === "fail") Object.assign(connection, { maxRetriesPerRequest: 2 });
    this.queue = new Queue(target.queueName ?? DEFAULT_QUEUE_NAME, { connection });
    this.#where = where;
    this.#url = redactUrl(target.queue);
    const note = throttled(options.onNote);
    let reject: (error: Error) => void;
    this.#fatal = new Promise<never>((_, r) => (reject = r));
    this.#fatal.catch(() => undefined);
    this.queue.on("error", (error) => {
      if (isFatalRedisError(error)) reject(new QueueError(`${where}: Redis at ${this.#url} refused the connection (${error.message})`, { cause: error }));
      else note(`Redis ${this.#url}: ${error.message} (reconnecting)`);
    });
  }

  /** `promise`, rejected early by a fatal connection error or the signal's abort. */
  run<T>(promise: Promise<T>, signal?: AbortSignal): Promise<T> {
    return abortable(Promise.race([promise, this.#fatal]), signal, this.#where);
  }

  async close(): Promise<void> {
    await this.queue.close().catch(() => undefined);
  }
}

// Job states an item can be in, and those that mean "still to run".
const STATES = ["completed", "failed", "active", "waiting", "paused", "delayed", "prioritized", "waiting-children"] as const satisfies readonly JobType[];
type State = (typeof STATES)[number];
const PENDING: readonly State[] = ["waiting", "paused", "delayed", "prioritized", "waiting-children"];
const waitingIn = (states: Record<State, string[]>) => PENDING.reduce((n, s) => n + states[s].length, 0);

/** The job ids of dataset `id` in each state (the state's whole list or set, filtered by the id prefix). */
async function jobStates(queue: Queue, id: string): Promise<Record<State, string[]>> {
  const prefix = `${id}-`;
  const entries = await Promise.all(STATES.map(async (state) => [state, (await queue.getRanges([state], 0, -1)).filter((j) => j.startsWith(prefix))] as const));
  return Object.fromEntries(entries) as Record<State, string[]>;
}

const indexOf = (job: string) => Number(job.slice(job.lastIndexOf("-") + 1));

/** An item that failed every attempt. */
export interface ItemFailure {
  id: string;
  index: number;
  /** The last attempt's error message. */
  error: string;
  attempts: number;
}

function failureOf(job: Job<ItemJobData>): ItemFailure {
  return { id: job.data.item.id, index: job.data.item.index, error: job.failedReason ?? "unknown error", attempts: job.attemptsMade };
}

/** A snapshot of a queued run. */
export interface QueueProgress {
  total: number;
  /** Items in the manifest. */
  done: number;
  /** Items a worker is making now. */
  running: number;
  /** Items waiting for a worker (or for their retry's back-off). */
  waiting: number;
  /** Items that failed every attempt. */
  failed: number;
}

export interface QueueRunOptions extends QueueTarget, Pick<RunOptions, "out" | "layout" | "baseDir" | "pipeline" | "signal"> {
  /** Attempts per item before it is recorded as failed (default 3). */
  attempts?: number;
  /** Back-off before the first retry, doubled for each next one (ms, default 2000). */
  backoffMs?: number;
  /** Follow the run until every item is done or failed (default true); false enqueues and returns. */
  follow?: boolean;
  /** How often the producer looks at the queue while following (ms, default 500). */
  pollMs?: number;
  /** How long to try reaching Redis at the start (ms, default 10000); later outages are waited out. */
  connectMs?: number;
  /** Called once the plan is known, before anything is enqueued. */
  onStart?: (info: { id: string; spec: DatasetSpec; pipeline: Pipeline; total: number; finished: number }) => void;
  /** Called after each item's manifest line is appended. */
  onItem?: (line: ManifestLine, progress: QueueProgress) => void;
  /** Called when an item has failed its last attempt. */
  onFailed?: (failure: ItemFailure, progress: QueueProgress) => void;
  /** Called whenever the counts change. */
  onProgress?: (progress: QueueProgress) => void;
  /** Remarks: connection trouble (URL redacted), items given back to the queue. */
  onNote?: (message: string) => void;
}

export interface QueueRunResult {
  id: string;
  out: string;
  spec: DatasetSpec;
  /** Items in the whole plan. */
  planned: number;
  /** Jobs this call added (0 when every item was already queued or finished). */
  enqueued: number;
  /** Failed items of an earlier run given their attempts again. */
  retried: number;
  /** Items in the manifest at the end. */
  done: number;
  failures: ItemFailure[];
}

// Resolves the first of `promise` and the signal's abort.
function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined, where: string): Promise<T> {
  if (!signal) return promise;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new AbortError(`${where} was aborted`, { cause: signal.reason }));
    if (signal.aborted) return onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * Makes the dataset `spec` describes through the queue: prepares the folder as the local runner
 * does (dataset.json, layout folders), enqueues every unfinished item (failed ones of an earlier
 * run get their attempts again), then, unless `follow` is false, writes the manifest lines of
 * completed items until each item is done or has failed its last attempt.
 */
export async function runQueued(spec: string | object, options: QueueRunOptions): Promise<QueueRunResult> {
  const where = "dataset.runQueued()";
  if (typeof options !== "object" || options === null || typeof options.out !== "string" || options.out === "")
    throw invalidOption(where, "out", options?.out, "the dataset folder (a non-empty string)");
  const attempts = options.attempts ?? 3;
  if (!Number.isSafeInteger(attempts) || attempts < 1 || attempts > 100) throw invalidOption(where, "attempts", attempts, "an integer from 1 to 100");
  const backoffMs = options.backoffMs ?? 2000;
  if (!Number.isFinite(backoffMs) || backoffMs < 0) throw invalidOption(where, "backoffMs", backoffMs, "a number of milliseconds ≥ 0");
  const pollMs = options.pollMs ?? 500;
  if (!Number.isFinite(pollMs) || pollMs < 10) throw invalidOption(where, "pollMs", pollMs, "a number of milliseconds ≥ 10");
  connectionOptions(options.queue, where);
  const { signal } = options;
  const out = path.resolve(options.out);
  const baseDir = typeof spec === "string" ? path.dirname(path.resolve(spec)) : path.resolve(options.baseDir ?? ".");
  const resolved = await loadSpec(spec, { baseDir, layout: options.layout });

  // The producer loads the model as the local runner does: dataset.json records it, and token widths are checked against it.
  const model = modelFolder(resolved, baseDir);
  const pipeline = options.pipeline ?? (await load(model, loadOptionsOf(resolved)));
  const total = itemCount(resolved);
  let id: string;
  let written: Set<string>;
  try {
    await loadClassTokens(resolved, pipeline, baseDir);
    // Temporaries are left alone: on a shared folder their writers may be alive on other machines.
    await prepareDatasetFolder(out, resolved, pipeline, { staleTemporaries: false });
    id = datasetId(out, datasetRecord(resolved, pipeline));
    written = new Set((await readManifest(out)).map((l) => l.id));
    options.onStart?.({ id, spec: resolved, pipeline, total, finished: written.size });
  } finally {
    if (!options.pipeline) pipeline.dispose();
  }

  await checkRedis(options, where, { waitMs: options.connectMs ?? 10_000, signal, onNote: options.onNote });
  const handle = new QueueHandle(options, where, { onNote: options.onNote });
  const { queue } = handle;
  const run = <T>(promise: Promise<T>) => handle.run(promise, signal);
  try {
    const job = (item: Item) => ({
      name: "item",
      data: { dataset: id, out, baseDir, model, item } satisfies ItemJobData,
      opts: { jobId: jobId(id, item.index), attempts, backoff: { type: "exponential", delay: backoffMs }, removeOnComplete: false, removeOnFail: false },
    });
    const enqueueMissing = async (states: Record<State, string[]>): Promise<number> => {
      const known = new Set(Object.values(states).flat().map(indexOf));
      const missing: Item[] = [];
      for (let i = 0; i < total; i++) {
        if (known.has(i)) continue;
        const item = planItem(resolved, i);
        if (!written.has(item.id)) missing.push(item);
      }
      // addBulk leaves a job whose id exists as it is, so a job that moved between the reads of two states is not added twice.
      for (let at = 0; at < missing.length; at += 1000) await run(queue.addBulk(missing.slice(at, at + 1000).map(job)));
      return missing.length;
    };

    let states = await run(jobStates(queue, id));
    // A new run gives the failed items of an earlier one their attempts again (the token file may be there now).
    let retried = 0;
    for (const failedJob of states.failed) {
      const found = await Job.fromId(queue, failedJob);
      if (found && !written.has(found.data.item.id)) {
        await found.retry("failed", { resetAttemptsMade: true, resetAttemptsStarted: true });
        retried++;
      }
    }
    if (retried > 0) states = await run(jobStates(queue, id));
    const enqueued = await enqueueMissing(states);
    const result = { id, out, spec: resolved, planned: total, enqueued, retried };
    if (options.follow === false) return { ...result, done: written.size, failures: [] };

    const failures = new Map<string, ItemFailure>();
    let last = "";
    let first = true;
    for (;;) {
      // The job states are read again only when the queue's counts moved (cheap while nothing happens).
      const counts = JSON.stringify(await run(queue.getJobCounts(...STATES)));
      if (counts !== last || first) {
        last = counts;
        if (!first) states = await run(jobStates(queue, id));
        first = false;
        const unwritten = states.completed.filter((j) => !written.has(planItem(resolved, indexOf(j)).id));
        await commitCompleted(queue, unwritten, { out, written, onItem: (line) => options.onItem?.(line, progress()) });
        for (const failedJob of states.failed) {
          if (failures.has(failedJob)) continue;
          const found = await Job.fromId(queue, failedJob);
          if (!found || written.has(found.data.item.id)) continue;
          const failure = failureOf(found);
          failures.set(failedJob, failure);
          options.onFailed?.(failure, progress());
        }
        // Jobs Redis lost (restarted without its data): added again.
        const readded = await enqueueMissing(states);
        if (readded > 0) options.onNote?.(`${readded} item(s) were missing from the queue (Redis lost them?): enqueued again`);
        options.onProgress?.(progress());
      }
      if (written.size + failures.size >= total) break;
      await run(sleep(pollMs));
    }
    await writeSplit(out, resolved, await readManifest(out));
    // Every item is in the manifest: temporaries left by killed workers are garbage (no writer of
    // this dataset is left to own one), and the jobs have nothing left to tell.
    if (failures.size === 0) {
      await removeStaleTemporaries(out, resolved, () => true);
      const finished = (await run(jobStates(queue, id))).completed;
      for (let at = 0; at < finished.length; at += 500) await run(Promise.all(finished.slice(at, at + 500).map((j) => queue.remove(j))));
    }
    return { ...result, done: written.size, failures: [...failures.values()].sort((a, b) => a.index - b.index) };

    function progress(): QueueProgress {
      return {
        total,
        done: written.size,
        running: states.active.length,
        waiting: waitingIn(states),
        failed: failures.size,
      };
    }
  } catch (error) {
    if (signal?.aborted) await writeSplit(out, resolved, await readManifest(out)).catch(() => undefined);
    throw error;
  } finally {
    await handle.close();
  }
}

// The single manifest writer: appends the line each completed job (of items not in the manifest)
// returned. A completed job whose files are gone (the folder was emptied since) is removed, so
// that it is made again.
async function commitCompleted(
  queue: Queue,
  completed: readonly string[],
  o: { out: string; written: Set<string>; onItem: (line: ManifestLine) => void },
): Promise<void> {
  for (const completedJob of completed) {
    const found = await Job.fromId(queue, completedJob);
    if (!found) continue;
    const { item } = found.data as ItemJobData;
    const line = found.returnvalue as ManifestLine | null;
    const present = line?.id === item.id && (await filesPresent(o.out, line));
    if (!present) {
      await found.remove();
      continue;
    }
    await appendManifestLine(o.out, line);
    o.written.add(item.id);
    o.onItem(line);
  }
}

async function filesPresent(out: string, line: ManifestLine): Promise<boolean> {
  for (const file of Object.values(line.files)) if (!(await fs.stat(path.join(out, file)).catch(() => undefined))?.isFile()) return false;
  return true;
}

/** Where a dataset stands: its manifest and, with a queue, its jobs. */
export interface DatasetStatus extends QueueProgress {
  id: string;
  out: string;
  /** Whether running, waiting, failed and the rate come from a queue (else they are 0 and null). */
  queued: boolean;
  failures: ItemFailure[];
  /** Items per second over the last completions (null without a queue or before two completions). */
  rate: number | null;
  /** Seconds until the waiting and running items are done at that rate. */
  eta: number | null;
}

/**
 * The status of the dataset in `out`: done (its manifest) of total (its dataset.json), and with a
 * queue also running, waiting and failed items and an ETA from the rate of the last completions.
 */
export async function datasetStatus(out: string, target?: QueueTarget): Promise<DatasetStatus> {
  const dir = path.resolve(out);
  const file = path.join(dir, DATASET_FILE);
  let record: string;
  try {
    record = await fs.readFile(file, "utf8");
  } catch (error) {
    throw new InvalidArgumentError(`${dir} is not a dataset folder (${file} cannot be read: ${(error as Error).message})`, { cause: error });
  }
  const total = Number((JSON.parse(record) as { items?: unknown }).items);
  const done = new Set((await readManifest(dir)).map((l) => l.id));
  const status: DatasetStatus = { id: datasetId(dir, record), out: dir, queued: false, total, done: done.size, running: 0, waiting: 0, failed: 0, failures: [], rate: null, eta: null };
  if (!target) return status;
  return withQueue(target, "dataset.status()", (queue) => queueCounts(queue, status, done));
}

/** The status of every dataset with jobs in the queue (folders this machine cannot read are counted from the queue alone). */
export async function queueStatus(target: QueueTarget): Promise<DatasetStatus[]> {
  return withQueue(target, "dataset.queueStatus()", async (queue) => {
    const byDataset = new Map<string, string>();
    for (const job of await queue.getRanges([...STATES], 0, -1)) {
      const id = job.slice(0, job.lastIndexOf("-"));
      if (!byDataset.has(id)) byDataset.set(id, job);
    }
    const statuses: DatasetStatus[] = [];
    for (const [id, job] of byDataset) {
      const data = (await Job.fromId(queue, job))?.data as ItemJobData | undefined;
      if (!data) continue;
      const local = await datasetStatus(data.out).catch(() => undefined);
      const done = new Set((await readManifest(data.out).catch(() => [])).map((l) => l.id));
      const base = local && local.id === id ? local : { id, out: data.out, queued: false, total: NaN, done: done.size, running: 0, waiting: 0, failed: 0, failures: [], rate: null, eta: null };
      statuses.push(await queueCounts(queue, base, done));
    }
    return statuses;
  });
}

// A queue opened for one task (failing fast when Redis is down), closed after it; failures become QueueErrors naming the (redacted) URL.
async function withQueue<T>(target: QueueTarget, where: string, task: (queue: Queue) => Promise<T>): Promise<T> {
  await checkRedis(target, where, { waitMs: 0 });
  const handle = new QueueHandle(target, where, { retries: "fail" });
  try {
    return await handle.run(task(handle.queue));
  } catch (error) {
    throw error instanceof QueueError || error instanceof InvalidArgumentError ? error : new QueueError(`${where}: reading the queue at ${redactUrl(target.queue)} failed (${(error as Error).message})`, { cause: error });
  } finally {
    await handle.close();
  }
}

// `status` with its running, waiting and failed items and the rate of its last (up to) 20 completions.
async function queueCounts(queue: Queue, status: DatasetStatus, done: ReadonlySet<string>): Promise<DatasetStatus> {
  const states = await jobStates(queue, status.id);
  const failures: ItemFailure[] = [];
  for (const failedJob of states.failed) {
    const found = await Job.fromId(queue, failedJob);
    if (found && !done.has(found.data.item.id))
      failures.push(failureOf(found));
  }
  failures.sort((a, b) => a.index - b.index);
  // The completed set is ordered by finishing time, newest first.
  const recent = (await queue.getRanges(["completed"], 0, 199, false)).filter((j) => j.startsWith(`${status.id}-`)).slice(0, 20);
  const finished = (await Promise.all(recent.map((j) => Job.fromId(queue, j)))).map((j) => j?.finishedOn).filter((t): t is number => typeof t === "number");
  const span = finished.length >= 2 ? (Math.max(...finished) - Math.min(...finished)) / 1000 : 0;
  const rate = span > 0 ? (finished.length - 1) / span : null;
  const running = states.active.length;
  const waiting = waitingIn(states);
  return { ...status, queued: true, running, waiting, failed: failures.length, failures, rate, eta: rate ? (running + waiting) / rate : null };
}
