// The queue side of `ovam dataset`: `--queue URL` enqueues the items and follows the run as the
// manifest's writer (bar or --json records) until each item is done or failed; `dataset status`
// prints done, running, waiting, failed and the ETA of a dataset folder or of every dataset queued.
import { QueueError } from "../errors";
import { datasetStatus, queueStatus, redactUrl, runQueued, type DatasetStatus } from "../dataset/queue";
import { formatDuration, type Task } from "../progress";
import { choice, noExtra, number, text, UsageError, type Values } from "./args";
import { displayPath } from "./output";
import { BUNDLED_WARNING, isBundled, type Context } from "./workflow";

/** Flags of `ovam dataset` for the queue. */
export const queueOptions = {
  queue: { type: "string" },
  "queue-name": { type: "string" },
  attempts: { type: "string" },
  detach: { type: "boolean" },
} as const;

/** --help text of queueOptions. */
export const QUEUE_HELP = `Queue options (several machines; README "Make a dataset on several machines"):
  --queue URL             enqueue the items on Redis (redis://host:6379, rediss://… for TLS)
                          for "ovam worker" processes, and follow the run as the manifest's
                          writer until every item is done or failed
  --queue-name NAME       the BullMQ queue (default ovam-dataset)
  --attempts N            attempts per item before it is recorded as failed (default 3)
  --detach                enqueue and return; a later run of the same command follows
                          the run (and writes the manifest), "dataset status" shows it`;

/** ovam dataset SPEC --out DIR --queue URL. */
export async function runQueuedDataset(ctx: Context, spec: string, out: string, values: Values): Promise<void> {
  for (const flag of ["shard", "limit"]) if (values[flag] !== undefined) throw new UsageError(`--${flag} cannot be used with --queue (the queue shares the items among its workers)`);
  const queue = text(values, "queue") as string;
  let task: Task | undefined;
  const result = await runQueued(spec, {
    out,
    queue,
    queueName: text(values, "queue-name"),
    attempts: number(values, "attempts", "integer"),
    layout: choice(values, "layout", ["default", "voc"] as const),
    follow: values.detach !== true,
    signal: ctx.signal,
    onStart: ({ id, total, finished, pipeline }) => {
      ctx.reporter.note(`Model: ${pipeline.folder} (${pipeline.device}, ${pipeline.dtype})`);
      if (isBundled(pipeline)) ctx.reporter.note(BUNDLED_WARNING);
      ctx.reporter.note(`Dataset ${id} on ${redactUrl(queue)}: ${total} image(s), ${finished} already finished`);
      if (values.detach !== true) task = ctx.reporter.start("dataset", "image", total, { rate: true });
      task?.update(finished);
    },
    onItem: (line, { done }) => {
      ctx.reporter.record("item", { id: line.id, index: line.index, foreground: line.foreground });
      task?.update(done);
    },
    onFailed: (failure) => {
      ctx.reporter.record("failed", { ...failure });
      if (ctx.reporter.mode !== "json") ctx.reporter.note(`${failure.id} failed after ${failure.attempts} attempt(s): ${failure.error}`);
    },
    onProgress: (progress) => ctx.reporter.record("queue", { ...progress }),
    onNote: (message) => ctx.reporter.note(message),
  }).finally(() => task?.end());
  const fields = { command: "dataset", queue: redactUrl(queue), id: result.id, out: result.out, planned: result.planned, enqueued: result.enqueued, retried: result.retried, done: result.done, failed: result.failures };
  const summary =
    values.detach === true
      ? `Enqueued ${result.enqueued} image(s) of ${result.planned} (${result.retried} failed ones again); run "ovam worker --queue URL" on the GPU machines.`
      : `Made ${result.done} of ${result.planned} image(s) into ${displayPath(result.out)}; ${result.failures.length} failed.`;
  ctx.reporter.result(fields, summary);
  // Failed items make the command fail (exit status 1), so that scripts notice; the manifest holds the others.
  if (result.failures.length > 0)
    throw new QueueError(
      `${result.failures.length} image(s) failed after their attempts (${result.failures.slice(0, 5).map((f) => f.id).join(", ")}${result.failures.length > 5 ? ", …" : ""}); fix the cause and run the same command again to retry them`,
    );
}

/** ovam dataset status [DIR] [--queue URL]. */
export async function datasetStatusCommand(ctx: Context, positionals: string[], values: Values): Promise<void> {
  const [dir, ...extra] = positionals;
  noExtra(extra, "one dataset folder");
  const queue = text(values, "queue");
  if (dir === undefined && queue === undefined) throw new UsageError("missing the dataset folder or --queue URL (ovam dataset status DIR [--queue URL])");
  const target = queue === undefined ? undefined : { queue, queueName: text(values, "queue-name") };
  const statuses = dir !== undefined ? [await datasetStatus(dir, target)] : await queueStatus(target!);
  ctx.reporter.result({ command: "dataset status", datasets: statuses }, statuses.length === 0 ? "No datasets in the queue." : statuses.map(describe).join("\n"));
}

function describe(s: DatasetStatus): string {
  const head = `${displayPath(s.out)} (dataset ${s.id}): ${s.done}/${Number.isFinite(s.total) ? s.total : "?"} done`;
  if (!s.queued) return `${head} (pass --queue URL for running, waiting, failed and the ETA)`;
  const eta = s.eta === null ? "ETA unknown" : `${(s.rate ?? 0).toPrecision(3)} images/s, ~${formatDuration(s.eta)} left`;
  const lines = [`${head}, ${s.running} running, ${s.waiting} waiting, ${s.failed} failed; ${eta}`];
  for (const f of s.failures) lines.push(`  failed ${f.id} (item ${f.index}, ${f.attempts} attempt(s)): ${f.error}`);
  return lines.join("\n");
}
