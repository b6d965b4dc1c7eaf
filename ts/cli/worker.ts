// ovam worker: makes dataset items from the Redis queue until Ctrl-C or SIGTERM (which finish
// the items in hand first).
import { startWorker } from "../dataset/worker";
import { redactUrl } from "../dataset/queue";
import { commonOptions, COMMON_HELP, loadOptions, modelHelp, modelOptions, noExtra, number, required, text, type Command } from "./args";
import { BUNDLED_WARNING, isBundled } from "./workflow";

export const workerCommand: Command = {
  name: "worker",
  summary: "make dataset items from a Redis queue (run one per GPU machine)",
  options: {
    ...commonOptions,
    ...modelOptions,
    queue: { type: "string" },
    "queue-name": { type: "string" },
    concurrency: { type: "string" },
    "lock-ms": { type: "string" },
    "stalled-ms": { type: "string" },
  },
  help: `Usage: ovam worker --queue redis://host:6379 [--model DIR] [--concurrency 1]

Takes the items that "ovam dataset spec.json --out DIR --queue URL" enqueued and makes each
one (generate, attribute, label, write) into the dataset folder, a folder every machine
mounts at the same path; the producer appends the manifest lines. Loads the model once.
Runs until Ctrl-C or SIGTERM, which finish the items in hand and then stop; a second Ctrl-C
quits at once, and the item returns to the queue when its lock expires (--lock-ms).
A worker killed any other way is handled the same way: another worker takes its item.

Options:
  --queue URL             redis://[user:password@]host:port[/db], or rediss://… for TLS
                          (required; the password is never printed)
  --queue-name NAME       the BullMQ queue (default ovam-dataset)
  --concurrency N         items made at once (default 1)
  --lock-ms N             how long an item stays with a silent worker (default 30000)
  --stalled-ms N          how often to look for items of dead workers (default 30000)

${modelHelp()}
                          (defaults here: the model the producer named, at the same path,
                          in the dtype its dataset.json records)

${COMMON_HELP}

Examples:
  ovam worker --queue redis://gpu-head:6379 --model /models/stable-diffusion-2-base --device cuda
  ovam worker --queue rediss://:PASSWORD@redis.example.org:6380 --concurrency 2`,

  async run(ctx, values, positionals) {
    noExtra(positionals, "ovam worker takes flags only");
    const queue = required(text(values, "queue"), "--queue redis://host:6379");
    // SIGTERM (a scheduler stopping the job, a machine going down) stops as gently as Ctrl-C.
    const stop = new AbortController();
    const onTerm = () => stop.abort(new Error("terminated (SIGTERM)"));
    process.once("SIGTERM", onTerm);
    if (ctx.signal.aborted) stop.abort(ctx.signal.reason);
    ctx.signal.addEventListener("abort", () => stop.abort(ctx.signal.reason), { once: true });
    const { signal } = stop;
    let made = 0;
    try {
      const worker = await startWorker({
        queue,
        queueName: text(values, "queue-name"),
        model: text(values, "model"),
        load: loadOptions(values),
        concurrency: number(values, "concurrency", "integer"),
        lockDuration: number(values, "lock-ms"),
        stalledInterval: number(values, "stalled-ms"),
        signal,
        onModel: (sd) => {
          ctx.reporter.note(`Model: ${sd.folder} (${sd.device}, ${sd.dtype})`);
          if (isBundled(sd)) ctx.reporter.note(BUNDLED_WARNING);
        },
        onActive: (item) => ctx.reporter.record("start", { id: item.id, index: item.index }),
        onItem: (line, seconds) => {
          made++;
          ctx.reporter.record("item", { id: line.id, index: line.index, seconds: Math.round(seconds * 1000) / 1000 });
          if (ctx.reporter.mode !== "json") ctx.reporter.note(`${line.id} done in ${seconds.toFixed(1)}s`);
        },
        onFailed: (item, message) => {
          ctx.reporter.record("failed", { id: item?.id, index: item?.index, message });
          if (ctx.reporter.mode !== "json") ctx.reporter.note(`${item?.id ?? "an item"} failed: ${message}`);
        },
        onNote: (message) => ctx.reporter.note(message),
      });
      ctx.reporter.note(`Waiting for items on ${redactUrl(queue)} (Ctrl-C finishes the items in hand, then stops)`);
      signal.addEventListener("abort", () => ctx.reporter.note("Stopping: finishing the items in hand"), { once: true });
      await worker.closed;
    } finally {
      process.off("SIGTERM", onTerm);
    }
    ctx.reporter.result({ command: "worker", made }, `Made ${made} item(s); stopped.`);
  },
};
