// The local runner: resolves the spec, prepares the folder (dataset.json, layout folders), skips
// items the manifest already holds, runs the rest of its shard through runItem, appends each
// line, and writes the training split. A restart redoes the item that was in flight; Ctrl-C
// (the signal) stops after cleaning up nothing but the item it was working on.
import { promises as fs } from "node:fs";
import path from "node:path";

import { abortError, InvalidArgumentError, IOError, OvamError } from "../errors";
import { readInputFile, writeFileAtomic } from "../files";
import { invalidOption, type LoadOptions } from "../options";
import { bundledModelDir, load, type Pipeline } from "../pipeline";
import { loadToken, type OptimizedToken } from "../token";
import { makeItem, writeItem, type MadeItem } from "./item";
import { DATASET_FILE, layoutFolders, paletteOf, splitFile } from "./layout";
import { appendManifestLine, readManifest, type ManifestLine } from "./manifest";
import { itemCount, planItem, resolveSpec, specRecord, tokenFile, type DatasetClass, type DatasetSpec, type Item } from "./spec";

// eslint-disable-next-line @typescript-eslint/no-require-imports
const VERSION: string = require("../../package.json").version;
const MAX_SPEC_BYTES = 1 << 20;

export interface Shard {
  index: number;
  count: number;
}

export interface RunProgress {
  /** Items of this run finished so far. */
  done: number;
  /** Items this run will make (its shard's unfinished items, capped by limit). */
  total: number;
  /** Items of the shard the manifest already held. */
  skipped: number;
}

export interface RunOptions {
  /** The dataset folder (created if missing). */
  out: string;
  /** Run items whose index mod count is index ("i/n" or { index, count }); default all. */
  shard?: Shard | string;
  /** At most this many items in this run. */
  limit?: number;
  /** Overrides the spec's layout. */
  layout?: "default" | "voc";
  /** The folder relative paths of a spec object start from; default the working folder (a spec file's own folder for a path). */
  baseDir?: string;
  /** A loaded pipeline of the spec's model (default: loaded here). */
  pipeline?: Pipeline;
  signal?: AbortSignal;
  /** Called once the plan is known, before the first item. */
  onStart?: (progress: RunProgress & { spec: DatasetSpec; pipeline: Pipeline }) => void;
  /** Called after each item's manifest line is appended. */
  onItem?: (line: ManifestLine, progress: RunProgress) => void;
}

export interface RunResult {
  out: string;
  spec: DatasetSpec;
  /** Items in the whole plan. */
  planned: number;
  /** Items of this shard already finished before the run. */
  skipped: number;
  /** Items finished by this run. */
  made: number;
  /** Items of this shard still to do (after a limit or an abort). */
  remaining: number;
}

/** "i/n" or { index, count } as a checked shard. */
export function parseShard(shard: Shard | string | undefined, where = "dataset.run()"): Shard {
  if (shard === undefined) return { index: 0, count: 1 };
  const accepted = '"i/n" or { index, count } with integers 0 ≤ i < n';
  const parts = typeof shard === "string" ? /^(\d+)\/(\d+)$/.exec(shard.trim())?.slice(1).map(Number) : [shard.index, shard.count];
  if (!parts || !parts.every(Number.isSafeInteger) || parts[1] < 1 || parts[0] < 0 || parts[0] >= parts[1]) throw invalidOption(where, "shard", shard, accepted);
  return { index: parts[0], count: parts[1] };
}

/** Reads and resolves a spec: a JSON file's path (relative paths from its folder) or the spec object itself. */
export async function loadSpec(spec: string | object, options: { baseDir?: string; layout?: "default" | "voc" } = {}): Promise<DatasetSpec> {
  let json: unknown = spec;
  let baseDir = path.resolve(options.baseDir ?? ".");
  let name: string | undefined;
  if (typeof spec === "string") {
    const file = path.resolve(spec);
    const text = (await readInputFile(file, { maxBytes: MAX_SPEC_BYTES, what: "dataset spec" })).toString("utf8");
    try {
      json = JSON.parse(text);
    } catch (error) {
      throw new InvalidArgumentError(`dataset spec ${spec}: not valid JSON (${(error as Error).message})`, { cause: error });
    }
    baseDir = path.dirname(file);
    name = spec;
  }
  if (options.layout !== undefined && typeof json === "object" && json !== null && !Array.isArray(json)) json = { ...json, layout: options.layout };
  return resolveSpec(json, baseDir, name);
}

/** The spec's model: its folder relative to the spec, or the bundled one. */
export function modelFolder(spec: DatasetSpec, baseDir: string): string {
  return spec.model === null ? bundledModelDir : path.resolve(baseDir, spec.model);
}

/** The load() options of the spec's model: its dtype and weightDtype. */
export function loadOptionsOf(spec: DatasetSpec): LoadOptions {
  return { dtype: spec.dtype, weightDtype: spec.weightDtype };
}

/** Loads class `c`'s optimised token and checks it was optimised for this model's text width. */
export async function loadClassToken(spec: DatasetSpec, c: DatasetClass, pipeline: Pipeline, baseDir: string): Promise<OptimizedToken> {
  if (!("token" in c.attribute)) throw new InvalidArgumentError(`class "${c.name}" is attributed by the text "${c.attribute.text}", not a token`);
  const token = await loadToken(tokenFile(c.attribute.token, baseDir));
  const width = token.embedding.shape[1];
  if (width !== pipeline.contextDim)
    throw invalidOption(
      "dataset spec",
      `spec.classes[${spec.classes.indexOf(c)}].attribute.token`,
      `${c.attribute.token} (a token of width ${width})`,
      `a token optimised on this model (${pipeline.folder}), whose text embeddings are ${pipeline.contextDim} wide`,
    );
  return token;
}

/** The token of every class attributed by one, by class id. */
export async function loadClassTokens(spec: DatasetSpec, pipeline: Pipeline, baseDir: string): Promise<Map<number, OptimizedToken>> {
  const tokens = new Map<number, OptimizedToken>();
  for (const c of spec.classes) if ("token" in c.attribute) tokens.set(c.id, await loadClassToken(spec, c, pipeline, baseDir));
  return tokens;
}

/**
 * What dataset.json records: the resolved spec, classes and palette, ovam's version and the model.
 * The spec's dtype is the one the pipeline computes in ("auto" resolved), so that a run resumed on
 * a machine where "auto" picks another is refused instead of mixing images of two dtypes; its
 * weightDtype the one its matrix weights are stored in.
 */
export function datasetRecord(spec: DatasetSpec, pipeline: Pipeline): string {
  const palette = paletteOf(spec);
  const record = {
    format: "ovam-dataset/1",
    ovam: VERSION,
    model: { folder: pipeline.folder, contextDim: pipeline.contextDim, defaultSize: pipeline.defaultSize, defaultScheduler: pipeline.defaultScheduler },
    classes: spec.classes.map((c) => ({ id: c.id, name: c.name, color: Array.from(palette.subarray(c.id * 3, c.id * 3 + 3)) })),
    background: spec.background,
    ignore: 255,
    palette: Array.from({ length: 256 }, (_, i) => Array.from(palette.subarray(i * 3, i * 3 + 3))),
    items: itemCount(spec),
    spec: { ...(specRecord(spec) as object), dtype: pipeline.dtype, weightDtype: pipeline.weightDtype },
  };
  // One line per colour rather than five.
  return `${JSON.stringify(record, null, 2).replace(/\[\s+(\d+),\s+(\d+),\s+(\d+)\s+\]/g, "[$1, $2, $3]")}\n`;
}

/**
 * Makes `out` ready for items of `spec`: refuses a path that is a file, makes the layout's
 * folders, writes dataset.json or checks that the one there records the same dataset, and (unless
 * `staleTemporaries` is false: on a folder shared between machines a pid says nothing) removes
 * temporary files of writers that died. Every runner (local or queue) calls it before its items.
 */
export async function prepareDatasetFolder(out: string, spec: DatasetSpec, pipeline: Pipeline, options: { staleTemporaries?: boolean } = {}): Promise<void> {
  await refuseFile(out);
  try {
    await fs.mkdir(out, { recursive: true });
    for (const folder of layoutFolders(spec)) await fs.mkdir(path.join(out, folder), { recursive: true });
  } catch (error) {
    throw new IOError(`${out}: cannot make the dataset folders (${(error as Error).message})`, { cause: error });
  }
  const record = datasetRecord(spec, pipeline);
  const file = path.join(out, DATASET_FILE);
  const existing = await fs.readFile(file, "utf8").catch(() => undefined);
  if (existing === undefined) await writeFileAtomic(file, record);
  else if (existing !== record) {
    const made = recordedDtypes(existing);
    if (made.dtype !== undefined && made.dtype !== pipeline.dtype)
      throw new InvalidArgumentError(
        `${out} holds a dataset computed in ${made.dtype}, and this run's model computes in ${pipeline.dtype} (dtype "auto" picks bfloat16 only where the CPU or GPU computes it natively); resume with "dtype": "${made.dtype}" in the spec, or choose another --out`,
      );
    if (made.weightDtype !== undefined && made.weightDtype !== pipeline.weightDtype)
      throw new InvalidArgumentError(
        `${out} holds a dataset made with ${made.weightDtype} weights, and this run's model stores its weights in ${pipeline.weightDtype}; resume with "weightDtype": "${made.weightDtype}" in the spec, or choose another --out`,
      );
    throw new InvalidArgumentError(
      `${out} holds a dataset made from another spec or model (its ${DATASET_FILE} differs${firstDifference(existing, record)}); resume with the same spec and model, or choose another --out`,
    );
  }
  if (options.staleTemporaries !== false) await removeStaleTemporaries(out, spec);
}

async function refuseFile(out: string): Promise<void> {
  const stat = await fs.stat(out).catch(() => undefined);
  if (stat && !stat.isDirectory()) throw invalidOption("dataset.run()", "out", out, "a folder, or a path that does not exist yet (it is a file)");
}

function recordedDtypes(record: string): { dtype?: string; weightDtype?: string } {
  try {
    const spec = (JSON.parse(record) as { spec?: { dtype?: unknown; weightDtype?: unknown } }).spec;
    const text = (v: unknown) => (typeof v === "string" ? v : undefined);
    return { dtype: text(spec?.dtype), weightDtype: text(spec?.weightDtype) };
  } catch {
    return {};
  }
}

function firstDifference(a: string, b: string): string {
  try {
    const [x, y] = [JSON.parse(a), JSON.parse(b)] as Record<string, unknown>[];
    const key = [...new Set([...Object.keys(x), ...Object.keys(y)])].find((k) => JSON.stringify(x[k]) !== JSON.stringify(y[k]));
    const inner = key === "spec" ? Object.keys(y.spec as object).find((k) => JSON.stringify((x.spec as never)?.[k]) !== JSON.stringify((y.spec as never)[k])) : undefined;
    return key ? ` in "${key}${inner ? `.${inner}` : ""}"` : "";
  } catch {
    return "";
  }
}

/** Removes temporary files of writers that died mid-write (by default: pid in the name, no such process here): never renamed, never to be. */
export async function removeStaleTemporaries(out: string, spec: DatasetSpec, isStale: (pid: number) => boolean = (pid) => !alive(pid)): Promise<void> {
  for (const folder of [".", ...layoutFolders(spec)]) {
    const dir = path.join(out, folder);
    for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
      const pid = /^\..+\.tmp-(\d+)-\d+-[0-9a-f]+$/.exec(name)?.[1];
      if (pid !== undefined && isStale(Number(pid))) await fs.rm(path.join(dir, name), { force: true });
    }
  }
}

function alive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** The split file: every item the manifest holds, in plan order. */
export async function writeSplit(out: string, spec: DatasetSpec, lines: readonly ManifestLine[]): Promise<void> {
  const finished = new Set(lines.map((l) => l.id));
  const ids: string[] = [];
  for (let i = 0, n = itemCount(spec); i < n; i++) {
    const { id } = planItem(spec, i);
    if (finished.has(id)) ids.push(id);
  }
  await writeFileAtomic(path.join(out, splitFile(spec.layout)), ids.map((id) => `${id}\n`).join(""));
}

/**
 * Makes the dataset `spec` describes into `options.out`, or the part of it that `shard` and
 * `limit` select, skipping items its manifest already holds.
 */
export async function runDataset(spec: string | object, options: RunOptions): Promise<RunResult> {
  const where = "dataset.run()";
  if (typeof options !== "object" || options === null || typeof options.out !== "string" || options.out === "")
    throw invalidOption(where, "out", options?.out, "the dataset folder (a non-empty string)");
  if (options.limit !== undefined && (!Number.isSafeInteger(options.limit) || options.limit < 0)) throw invalidOption(where, "limit", options.limit, "an integer ≥ 0");
  const shard = parseShard(options.shard, where);
  const { signal } = options;
  const out = path.resolve(options.out);
  const baseDir = typeof spec === "string" ? path.dirname(path.resolve(spec)) : path.resolve(options.baseDir ?? ".");
  const resolved = await loadSpec(spec, { baseDir, layout: options.layout });
  await refuseFile(out); // before the model loads: a mistake here should not wait for it

  const pipeline = options.pipeline ?? (await load(modelFolder(resolved, baseDir), loadOptionsOf(resolved)));
  try {
    const tokens = await loadClassTokens(resolved, pipeline, baseDir);
    await prepareDatasetFolder(out, resolved, pipeline);

    const finished = new Set((await readManifest(out)).map((l) => l.id));
    const mine: Item[] = [];
    for (let i = shard.index, n = itemCount(resolved); i < n; i += shard.count) mine.push(planItem(resolved, i));
    const unfinished = mine.filter((item) => !finished.has(item.id));
    const todo = unfinished.slice(0, options.limit ?? unfinished.length);
    const progress: RunProgress = { done: 0, total: todo.length, skipped: mine.length - unfinished.length };
    options.onStart?.({ ...progress, spec: resolved, pipeline });

    const ctx = { pipeline, spec: resolved, out, tokens };
    // Item k's files are written (and its line appended) while item k + 1 computes: the disk's
    // fsyncs overlap the model's work. A crash then redoes at most those two.
    let writing: Promise<void> = Promise.resolve();
    let failure: { error: unknown } | undefined;
    const commit = async (made: MadeItem) => {
      const line = await writeItem(ctx, made);
      await appendManifestLine(out, line);
      progress.done++;
      options.onItem?.(line, { ...progress });
    };
    try {
      for (const item of todo) {
        if (signal?.aborted) throw abortError(where, signal);
        const made = await makeItem(ctx, item, { signal });
        await writing;
        if (failure) {
          made.image.dispose();
          throw failure.error;
        }
        writing = commit(made).catch((error: unknown) => void (failure = { error }));
      }
      await writing;
      if (failure) throw failure.error;
    } finally {
      await writing;
      // Finished items are listed even when the run stops early (not on a full disk: that write would fail too).
      await writeSplit(out, resolved, await readManifest(out)).catch((error: unknown) => {
        if (!(error instanceof OvamError)) throw error;
      });
    }
    return { out, spec: resolved, planned: itemCount(resolved), skipped: progress.skipped, made: progress.done, remaining: unfinished.length - progress.done };
  } finally {
    if (!options.pipeline) pipeline.dispose();
  }
}
