// The dataset queue's worker: takes item jobs from BullMQ and makes each with the same runItem as
// the local runner, into the dataset folder the job names (a folder every machine mounts at the
// same path). It loads its model once, reads each dataset's spec from that dataset's dataset.json,
// loads token files when an item first needs them (a missing one fails that item's job, not the
// worker), and returns the item's manifest line as the job's value for the producer to append.
// A worker killed mid-item holds a lock that expires; BullMQ's stalled-job check of any other
// worker then hands the item to the next free one. close() finishes the items in hand.
import { promises as fs } from "node:fs";
import path from "node:path";

import { UnrecoverableError, Worker } from "bullmq";

import { InvalidArgumentError, IOError, OvamError, QueueError } from "../errors";
import { invalidOption } from "../options";
import { load, type Pipeline } from "../pipeline";
import type { LoadOptions } from "../options";
import type { OptimizedToken } from "../token";
import { runItem } from "./item";
import { DATASET_FILE } from "./layout";
import type { ManifestLine } from "./manifest";
import { checkRedis, connectionOptions, datasetId, DEFAULT_QUEUE_NAME, isFatalRedisError, redactUrl, throttled, type ItemJobData, type QueueTarget } from "./queue";
import { loadClassToken } from "./run";
import type { DatasetSpec } from "./spec";

export interface WorkerOptions extends QueueTarget {
  /** The model folder on this machine (default: the folder the producer named, which must then exist here). */
  model?: string;
  /** Device, dtype and threads of the model (dtype default: each dataset's own, as its dataset.json records). */
  load?: LoadOptions;
  /** Items made at once (default 1; a GPU is usually busy with one). */
  concurrency?: number;
  /** How long a worker's hold on an item lasts without renewal (ms, default 30000); a killed worker's item returns after it. */
  lockDuration?: number;
  /** How often the worker looks for items whose holder died (ms, default 30000). */
  stalledInterval?: number;
  /** How many times an item may be taken back from a dead worker before it is failed (default 2). */
  maxStalledCount?: number;
  /** Aborting it stops taking items and finishes those in hand (as close()). */
  signal?: AbortSignal;
  /** Called when the model is loaded. */
  onModel?: (pipeline: Pipeline) => void;
  /** Called when the worker takes an item. */
  onActive?: (item: { id: string; index: number }) => void;
  onItem?: (line: ManifestLine, seconds: number) => void;
  onFailed?: (item: { id: string; index: number } | undefined, message: string) => void;
  /** Remarks: connection trouble (URL redacted). */
  onNote?: (message: string) => void;
}

export interface DatasetWorker {
  /** Stops taking items; resolves once those in hand are finished and the connections closed. */
  close(): Promise<void>;
  /** Resolves when the worker has closed (after close() or the signal). */
  readonly closed: Promise<void>;
}

// Per dataset (by id): its spec from dataset.json and the tokens loaded so far, by class id.
interface DatasetContext {
  spec: DatasetSpec;
  /** The model dataset.json records (the producer's). */
  model: { folder: string; contextDim: number; defaultSize: unknown };
  tokens: Map<number, Promise<OptimizedToken>>;
}

/** Starts a worker on the queue; it runs until close() or the signal. */
export async function startWorker(options: WorkerOptions): Promise<DatasetWorker> {
  const where = "dataset.startWorker()";
  if (typeof options !== "object" || options === null) throw invalidOption(where, "options", options, "{ queue, model?, concurrency?, … }");
  const connection = connectionOptions(options.queue, where);
  const concurrency = options.concurrency ?? 1;
  if (!Number.isSafeInteger(concurrency) || concurrency < 1 || concurrency > 64) throw invalidOption(where, "concurrency", concurrency, "an integer from 1 to 64");
  for (const key of ["lockDuration", "stalledInterval"] as const) {
    const value = options[key];
    if (value !== undefined && (!Number.isFinite(value) || value < 100)) throw invalidOption(where, key, value, "a number of milliseconds ≥ 100");
  }

  // A worker waits for Redis to come up (a daemon started before it), but not for a password that will never work.
  await checkRedis(options, where, { waitMs: Infinity, signal: options.signal, onNote: options.onNote });
  // The worker loads --model, else the model the job names, in --dtype (--weight-dtype), else in
  // the dataset's (so that "auto" on this machine cannot mix dtypes in a dataset), and keeps it
  // while jobs ask for the same.
  let pipeline: Promise<Pipeline> | undefined;
  let pipelineKey: string | undefined;
  const keyOf = (dir: string, dtype: string | undefined, weightDtype: string | undefined) => `${dir}\n${dtype}\n${weightDtype ?? dtype}`;
  const pipelineFor = (folder: string, dataset: Pick<LoadOptions, "dtype" | "weightDtype">): Promise<Pipeline> => {
    const dir = path.resolve(options.model ?? folder);
    const dtype = options.load?.dtype ?? dataset.dtype;
    const weightDtype = options.load?.weightDtype ?? dataset.weightDtype;
    if (pipeline && pipelineKey === keyOf(dir, dtype, weightDtype)) return pipeline;
    const previous = pipeline;
    pipelineKey = keyOf(dir, dtype, weightDtype);
    pipeline = load(dir, { ...options.load, dtype, weightDtype });
    pipeline.then((p) => options.onModel?.(p), () => undefined);
    previous?.then((p) => p.dispose(), () => undefined);
    return pipeline;
  };
  if (options.model !== undefined) {
    const loaded = await pipelineFor(options.model, { dtype: "auto" });
    // Known now: the dtypes "auto" resolved to, which datasets of those dtypes need not reload for.
    if (options.load?.dtype === undefined) pipelineKey = keyOf(path.resolve(options.model), loaded.dtype, loaded.weightDtype);
  }

  const datasets = new Map<string, Promise<DatasetContext>>();
  const contextFor = (data: ItemJobData): Promise<DatasetContext> => {
    let context = datasets.get(data.dataset);
    if (!context) {
      context = readDatasetContext(data);
      datasets.set(data.dataset, context);
      context.catch(() => datasets.delete(data.dataset));
    }
    return context;
  };

  const worker = new Worker<ItemJobData, ManifestLine>(
    options.queueName ?? DEFAULT_QUEUE_NAME,
    async (job, _token, jobSignal) => {
      const data = job.data;
      const started = performance.now();
      options.onActive?.(data.item);
      const context = await contextFor(data);
      const sd = await pipelineFor(data.model, context.spec);
      // A worker's --model must be the dataset's model at another path, not another model.
      if (sd.contextDim !== context.model.contextDim || JSON.stringify(sd.defaultSize) !== JSON.stringify(context.model.defaultSize))
        throw new InvalidArgumentError(
          `this worker's model ${sd.folder} is not the model of dataset ${data.out} (${context.model.folder}: text width ${context.model.contextDim}, default size ${JSON.stringify(context.model.defaultSize)}); start the worker with --model pointing at that model`,
        );
      // Images of one dataset come from one dtype (a --dtype given to the worker may be another).
      if (sd.dtype !== context.spec.dtype)
        throw new InvalidArgumentError(`this worker's model computes in ${sd.dtype}, and dataset ${data.out} is computed in ${context.spec.dtype}; start the worker with --dtype ${context.spec.dtype}, or without --dtype`);
      const weightDtype = context.spec.weightDtype ?? context.spec.dtype;
      if (sd.weightDtype !== weightDtype)
        throw new InvalidArgumentError(`this worker's model stores its weights in ${sd.weightDtype}, and dataset ${data.out} was made with ${weightDtype} weights; start the worker with --weight-dtype ${weightDtype}, or without --weight-dtype`);
      const tokens = new Map<number, OptimizedToken>();
      for (const classId of data.item.classes) {
        const c = context.spec.classes.find((k) => k.id === classId);
        if (!c || !("token" in c.attribute)) continue;
        let token = context.tokens.get(classId);
        if (!token) {
          token = loadClassToken(context.spec, c, sd, data.baseDir);
          context.tokens.set(classId, token);
          // A token that could not be loaded is tried again by the next item (the file may appear).
          token.catch(() => context.tokens.delete(classId));
        }
        tokens.set(classId, await token);
      }
      const line = await runItem({ pipeline: sd, spec: context.spec, out: data.out, tokens }, data.item, { signal: jobSignal });
      options.onItem?.(line, (performance.now() - started) / 1000);
      return line;
    },
    {
      connection,
      concurrency,
      lockDuration: options.lockDuration ?? 30_000,
      stalledInterval: options.stalledInterval ?? 30_000,
      maxStalledCount: options.maxStalledCount ?? 2,
      autorun: true,
    },
  );
  worker.on("failed", (job, error) => options.onFailed?.(job?.data.item, error instanceof OvamError ? `${error.message} [${error.code}]` : error.message));
  // Connection errors are reported while ioredis reconnects; one no reconnection cures (a wrong password) stops the worker.
  const note = throttled(options.onNote);
  let fatal: QueueError | undefined;
  worker.on("error", (error) => {
    if (isFatalRedisError(error)) {
      fatal ??= new QueueError(`${where}: Redis at ${redactUrl(options.queue)} refused the connection (${error.message})`, { cause: error });
      void close();
    } else note(`Redis ${redactUrl(options.queue)}: ${error.message} (reconnecting)`);
  });

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= worker.close().finally(async () => {
      await pipeline?.then((p) => p.dispose(), () => undefined);
    }));
  const { signal } = options;
  if (signal?.aborted) void close();
  signal?.addEventListener("abort", () => void close(), { once: true });
  let resolveClosed: () => void;
  const closed = new Promise<void>((resolve) => (resolveClosed = resolve));
  worker.on("closed", () => resolveClosed());
  const ended = closed.then(() => closing).then(() => {
    if (fatal) throw fatal;
  });
  ended.catch(() => undefined);
  await Promise.race([worker.waitUntilReady(), ended]);
  return { close, closed: ended };
}

// The dataset's spec, from the dataset.json in the folder the job names; it must be the dataset the job was enqueued for.
async function readDatasetContext(data: ItemJobData): Promise<DatasetContext> {
  const file = path.join(data.out, DATASET_FILE);
  let record: string;
  try {
    record = await fs.readFile(file, "utf8");
  } catch (error) {
    // Retried (another worker may see the folder): a missing mount is this machine's problem, not the item's.
    throw new IOError(`${file} cannot be read on this machine (${(error as Error).message}); every worker must mount the dataset folder at the same path`, { cause: error });
  }
  if (datasetId(data.out, record) !== data.dataset)
    throw new UnrecoverableError(`${file} is not the dataset this item was enqueued for (it was replaced by another spec or model): enqueue the dataset again`);
  const { spec, model } = JSON.parse(record) as Partial<Pick<DatasetContext, "spec" | "model">>;
  if (!spec || !Array.isArray(spec.classes) || !model) throw new UnrecoverableError(`${file}: no spec or model in it`);
  if (typeof spec.dtype !== "string") throw new UnrecoverableError(`${file}: no dtype in its spec (made by an older ovam); enqueue the dataset again`);
  return { spec, model, tokens: new Map() };
}
