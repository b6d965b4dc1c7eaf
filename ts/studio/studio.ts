// The studio's work, behind its HTTP routes: list and filter items, their images, class maps and
// labels, open-vocabulary maps from the stored capture (of all blocks or of one), ground truth
// read and written in the dataset's layout (gt/{id}.png), and token optimisation on the annotated
// items.
import { mkdir, realpath, stat } from "node:fs/promises";
import path from "node:path";

import { awaitNative, InvalidArgumentError, NotFoundError } from "../errors";
import { evaluate, type EvaluationItem } from "../eval/evaluate";
import { table, writeReport } from "../eval/report";
import { readInputFile, writeFileAtomic } from "../files";
import { loadGeneration, type GeneratedImage } from "../image";
import { attribute } from "../maps";
import { native } from "../native";
import type { LoadOptions, Map2D } from "../options";
import { decodeIndexedPNG, decodePNG, encodeGray8 } from "../png";
import { load, type Pipeline } from "../pipeline";
import { optimizeToken, type OptimizedToken } from "../token";
import { safeStem } from "../cli/output";
import { parseMapsMetadata } from "../dataset/item";
import { Jobs, type JobState } from "./jobs";
import { ITEM_ID, openSource, within, type StudioClass, type StudioItem, type StudioSource } from "./source";

export interface StudioOpenOptions {
  /** Class names to annotate (ids 1, 2, …; background 0). */
  classes?: string[];
  /** The model folder; default the one the generation files record, else the bundled model. */
  model?: string;
  load?: LoadOptions;
  /** Loaded generations kept in memory for fast attribution; default 2. */
  cache?: number;
}

export interface ItemFilter {
  /** A class name or id the item must be labelled for. */
  class?: string;
  /** Bounds on the class's foreground fraction (of `class`, else of any class). */
  minForeground?: number;
  maxForeground?: number;
  /** Only items with (true) or without (false) saved ground truth. */
  annotated?: boolean;
  offset?: number;
  limit?: number;
}

export interface WordMaps {
  /** The attributed text's BPE tokens. */
  tokens: readonly string[];
  words: { word: string; map: Map2D<Float32Array> }[];
  /** Milliseconds the attribution took in the server (loading the capture included). */
  ms: number;
}

/** An attention block of an item's capture, as attribute()'s `blocks` option names it. */
export interface StudioBlock {
  name: string;
  height: number;
  width: number;
}

/** How a class map was made: live from the class's text or its session token, or read from the dataset's maps file. */
export type ClassMapSource = "text" | "token" | "saved";

export interface ClassMap {
  class: StudioClass;
  by: ClassMapSource;
  map: Map2D<Float32Array>;
}

export interface OptimizeJobOptions {
  /** The class (name or id) to optimise a token for. */
  class: string | number;
  epochs?: number;
  lr?: number;
}

// A ground-truth PNG is at most an 8-bit 4096² image; its compressed size is far below this.
const MAX_TRUTH_BYTES = 64 << 20;
// A dataset's maps file: a few classes' float maps at the attention grid.
const MAX_MAPS_BYTES = 256 << 20;
const IMAGE_SUFFIX = ".png";

export class Studio {
  readonly source: StudioSource;
  readonly pipeline: Pipeline;
  readonly jobs = new Jobs();
  readonly #cacheSize: number;
  // Insertion order is recency: the oldest entry is evicted (and disposed) first.
  readonly #cache = new Map<string, Loaded>();
  // Tokens optimised in this session, by class id: class maps use them instead of the class's name.
  readonly #tokens = new Map<number, OptimizedToken>();

  private constructor(source: StudioSource, pipeline: Pipeline, cacheSize: number) {
    this.source = source;
    this.pipeline = pipeline;
    this.#cacheSize = cacheSize;
  }

  /** Opens a generation file or a folder of them, and loads its model. */
  static async open(target: string, opts: StudioOpenOptions = {}): Promise<Studio> {
    const source = await openSource(target, { classes: opts.classes });
    const pipeline = await load(opts.model ?? source.model, opts.load);
    return new Studio(source, pipeline, Math.max(1, opts.cache ?? 2));
  }

  /** The item `id`; a malformed or refused id is an InvalidArgumentError, an unknown one a NotFoundError. */
  item(id: string): StudioItem {
    if (!ITEM_ID.test(id)) throw new InvalidArgumentError(`item id ${JSON.stringify(id.slice(0, 80))} is malformed; accepted: letters, digits, "_", "-" and "." (not first), at most 200`);
    const refused = this.source.refused.get(id);
    if (refused) throw new InvalidArgumentError(`item "${id}" is refused: ${refused}; accepted: files inside ${this.source.root}`);
    const item = this.source.items.find((i) => i.id === id);
    if (!item) throw new NotFoundError(`no item "${id}" in ${this.source.root}`);
    return item;
  }

  /** A class by name (case-insensitive) or decimal id. */
  classOf(ref: string | number): StudioClass {
    const text = String(ref).trim();
    const found = this.source.classes.find((c) => String(c.id) === text || c.name.toLowerCase() === text.toLowerCase());
    if (!found)
      throw new InvalidArgumentError(
        `unknown class ${JSON.stringify(text.slice(0, 80))}; accepted: ${this.source.classes.length ? this.source.classes.map((c) => `"${c.name}" (${c.id})`).join(", ") : "none: start the studio with --classes"}`,
      );
    return found;
  }

  /** The items passing `filter`, with whether each has ground truth, a page of them at a time. */
  async list(filter: ItemFilter = {}): Promise<{ total: number; items: (StudioItem & { annotated: boolean })[] }> {
    const wanted = filter.class === undefined ? undefined : this.classOf(filter.class);
    const min = filter.minForeground ?? 0;
    const max = filter.maxForeground ?? 1;
    const passing: (StudioItem & { annotated: boolean })[] = [];
    for (const item of this.source.items) {
      if (wanted && !item.classes.includes(wanted.id)) continue;
      if (this.source.kind === "generations" && Object.keys(item.foreground).length === 0 && (await this.#hasTruth(item.id))) this.#measure(item, (await this.truth(item.id)) as Map2D<Uint8Array>);
      const fractions = wanted ? [item.foreground[wanted.name] ?? 0] : Object.values(item.foreground);
      const fraction = fractions.length ? Math.max(...fractions) : 0;
      if ((filter.minForeground !== undefined || filter.maxForeground !== undefined) && (fraction < min || fraction > max)) continue;
      const annotated = await this.#hasTruth(item.id);
      if (filter.annotated !== undefined && annotated !== filter.annotated) continue;
      passing.push({ ...item, annotated });
    }
    const offset = filter.offset ?? 0;
    return { total: passing.length, items: passing.slice(offset, offset + (filter.limit ?? 100)) };
  }

  /** The item's image as a PNG: the file beside it when there is one, else from its generation. */
  async imagePNG(id: string): Promise<Buffer> {
    const item = this.item(id);
    if (item.files.image) return readInputFile(await this.#inside(item.files.image), { maxBytes: MAX_TRUTH_BYTES * 4, what: `image of item "${id}"` });
    return this.#withGeneration(item, (image) => image.toPNG());
  }

  /** The attention blocks stored in the item's capture, in its order. */
  async blocks(id: string): Promise<StudioBlock[]> {
    return this.#withGeneration(this.item(id), async (image) => image.blocks.map(({ name, height, width }) => ({ name, height, width })));
  }

  /**
   * Open-vocabulary maps: `text` attributed as one text on the item's capture, the map of each of
   * its words at the image's size; with `block`, from that block alone (a stored name) or from the
   * blocks of that resolution (a grid's longer side), the per-block view.
   */
  async wordMaps(id: string, text: string, mode: "softmax" | "linear", block?: string | number): Promise<WordMaps> {
    const item = this.item(id);
    const words = [...new Set(text.split(/\s+/).map((w) => w.replace(/^[^\p{L}\p{N}]+|[^\p{L}\p{N}]+$/gu, "")).filter(Boolean))];
    if (words.length === 0) throw new InvalidArgumentError(`text ${JSON.stringify(text.slice(0, 80))} has no words; accepted: words of letters or digits`);
    const start = performance.now();
    const maps = await this.#withGeneration(item, (image) => attribute(image, text, { mode, ...(block === undefined ? {} : { blocks: [block] }) }));
    const result = words.map((word) => ({ word, map: maps.word(word, { occurrence: 0 }) }));
    return { tokens: maps.tokens, words: result, ms: performance.now() - start };
  }

  /**
   * Each of the item's classes on its own: by its optimised token when this session made one
   * (and the item has a generation file), else from the dataset's maps file when the item has one
   * (at the attention grid, as the dataset labelled it), else attributed live by its text; live
   * maps at the image's size or the grid's.
   */
  async classMaps(id: string, size: "image" | "latent" = "image"): Promise<ClassMap[]> {
    const item = this.item(id);
    const saved = item.files.maps ? await this.#savedMaps(item, item.files.maps) : undefined;
    const live = item.classes.filter((c) => !saved || (this.#tokens.has(c) && item.files.generation));
    const made = new Map<number, ClassMap>();
    if (live.length)
      await this.#withGeneration(item, async (image) => {
        for (const classId of live) {
          const c = this.classOf(classId);
          const token = this.#tokens.get(c.id);
          const maps = await attribute(image, token ?? c.text, { size });
          made.set(c.id, { class: c, by: token ? "token" : "text", map: maps.word(token ? token.text : c.text, { occurrence: 0 }) });
        }
      });
    return item.classes.map((c, i) => made.get(c) ?? (saved as ClassMap[])[i]);
  }

  /** The item's labels from the dataset (class ids per pixel), or a NotFoundError where it has none. */
  async labels(id: string): Promise<Map2D<Uint8Array>> {
    const item = this.item(id);
    if (!item.files.label) throw new NotFoundError(`item "${id}" has no labels; accepted: items of a dataset folder`);
    const file = await this.#inside(item.files.label);
    const png = await decodeIndexedPNG(await readInputFile(file, { maxBytes: MAX_TRUTH_BYTES, what: `labels of item "${id}"` }), file);
    if (png.width !== item.width || png.height !== item.height) throw new InvalidArgumentError(`${file}: ${png.width}×${png.height}; accepted: the item's size (${item.width}×${item.height})`);
    return { data: png.indices, width: png.width, height: png.height };
  }

  /** The item's saved ground truth (class ids per pixel), or undefined when it has none. */
  async truth(id: string): Promise<Map2D<Uint8Array> | undefined> {
    const item = this.item(id);
    const file = this.#truthFile(item.id);
    if (!(await this.#hasTruth(item.id))) return undefined;
    const png = await decodePNG(await readInputFile(file, { maxBytes: MAX_TRUTH_BYTES, what: `ground truth of item "${id}"` }), file);
    if (png.channels !== 1 || png.width !== item.width || png.height !== item.height)
      throw new InvalidArgumentError(`${file}: a ${png.width}×${png.height} ${png.channels}-channel PNG; accepted: 8-bit class ids of the item's size (${item.width}×${item.height})`);
    return { data: png.data, width: png.width, height: png.height };
  }

  /** Writes the item's ground truth to gt/{id}.png (atomically): the background, a class id or 255 (ignore) per pixel. */
  async saveTruth(id: string, labels: Map2D<Uint8Array>): Promise<string> {
    const item = this.item(id);
    if (labels.width !== item.width || labels.height !== item.height || labels.data.length !== item.width * item.height)
      throw new InvalidArgumentError(
        `ground truth of ${labels.width}×${labels.height} (${labels.data.length} values) for item "${id}"; accepted: ${item.width}×${item.height} values, the item's size`,
      );
    const allowed = new Uint8Array(256);
    for (const value of [this.source.background, 255, ...this.source.classes.map((c) => c.id)]) allowed[value] = 1;
    const bad = labels.data.find((v) => !allowed[v]);
    if (bad !== undefined)
      throw new InvalidArgumentError(`ground truth of item "${id}" holds label ${bad}; accepted: the background (${this.source.background}), 255 (ignore) or a class id`);
    const file = this.#truthFile(item.id);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFileAtomic(file, await encodeGray8(labels.width, labels.height, labels.data), { what: `ground truth of item "${id}"` });
    // A dataset's fractions are its labels' (the manifest's), which the filter keeps reading.
    if (this.source.kind === "generations") this.#measure(item, labels);
    return file;
  }

  /**
   * Starts optimising a token for a class on the items with ground truth labelled for it (each
   * item's target: its pixels of that class), saved to tokens/{class}.safetensors; class maps
   * use it from then on.
   */
  async optimize(opts: OptimizeJobOptions): Promise<JobState> {
    const c = this.classOf(opts.class);
    const annotated: StudioItem[] = [];
    for (const item of this.source.items) if (item.classes.includes(c.id) && (await this.#hasTruth(item.id))) annotated.push(item);
    if (annotated.length === 0) throw new InvalidArgumentError(`no item labelled for "${c.name}" has ground truth; accepted: save ground truth (gt/{id}.png) for at least one`);
    return this.jobs.start("optimize", async ({ progress, signal }) => {
      const images: GeneratedImage[] = [];
      try {
        const targets = [];
        for (const item of annotated) {
          const truth = (await this.truth(item.id)) as Map2D<Uint8Array>;
          targets.push({ data: truth.data.map((v) => (v === c.id ? 1 : 0)), width: truth.width, height: truth.height });
          images.push(await loadGeneration(this.pipeline, await this.#generationFile(item)));
        }
        const epochs = opts.epochs ?? 30;
        progress.total = epochs;
        const token = await optimizeToken(images, {
          text: c.text,
          targets,
          epochs,
          ...(opts.lr === undefined ? {} : { lr: opts.lr }),
          onEpoch: (epoch, loss) => {
            progress.losses.push(loss);
            progress.done = epoch + 1;
          },
          signal,
        });
        const file = path.join(this.source.root, "tokens", `${safeStem(c.name)}.safetensors`);
        await mkdir(path.dirname(file), { recursive: true });
        await token.save(file);
        this.#tokens.set(c.id, token);
        return { class: c.name, token: file, items: annotated.map((i) => i.id), losses: token.losses };
      } finally {
        for (const image of images) image.dispose();
      }
    });
  }

  /**
   * Starts scoring the class maps (as classMaps() makes them, at the attention grid) of every item
   * with ground truth against it, with ovam eval's binary protocol (and the semantic one when the
   * background is 0); the report is also written to eval/ (report.json, per-class.csv, curve.csv,
   * curve.png).
   */
  async evaluate(): Promise<JobState> {
    const annotated: StudioItem[] = [];
    for (const item of this.source.items) if (await this.#hasTruth(item.id)) annotated.push(item);
    if (annotated.length === 0) throw new InvalidArgumentError("no item has ground truth; accepted: save ground truth (gt/{id}.png) for at least one");
    return this.jobs.start("eval", async ({ progress, signal }) => {
      progress.total = annotated.length;
      const items: EvaluationItem[] = [];
      const by: Record<string, ClassMapSource> = {};
      for (const item of annotated) {
        signal.throwIfAborted();
        const maps = await this.classMaps(item.id, "latent");
        for (const m of maps) by[m.class.name] = m.by;
        items.push({ id: item.id, maps: Object.fromEntries(maps.map((m) => [m.class.name, m.map])), truth: (await this.truth(item.id)) as Map2D<Uint8Array> });
        progress.done++;
      }
      const classes = Object.fromEntries(this.source.classes.map((c) => [c.name, c.id]));
      const report = await evaluate(items, { protocol: this.source.background === 0 ? "both" : "binary", classes, signal });
      const dir = path.join(this.source.root, "eval");
      await mkdir(dir, { recursive: true });
      const files = await writeReport(report, dir);
      return { items: report.items, miou: report.binary?.at.miou ?? null, by, table: table(report), files: files.map((f) => f.path) };
    });
  }

  /** Frees the loaded generations and the model; stops a running job. */
  close(): void {
    this.jobs.abort();
    for (const entry of this.#cache.values()) dispose(entry);
    this.#cache.clear();
    this.pipeline.dispose();
  }

  // The item's class maps from its maps file, in the item's class order.
  async #savedMaps(item: StudioItem, file: string): Promise<ClassMap[]> {
    const checked = await this.#inside(file);
    const { tensors, metadata } = await awaitNative(native.loadTensors(await readInputFile(checked, { maxBytes: MAX_MAPS_BYTES, what: `maps of item "${item.id}"` }), checked));
    const info = parseMapsMetadata(metadata, checked);
    return item.classes.map((id) => {
      const tensor = tensors[info.classes.find((c) => c.id === id)?.tensor ?? ""];
      if (!tensor || tensor.shape.length !== 2) throw new InvalidArgumentError(`${checked}: no [height, width] map of class ${id}; accepted: a maps file written by ovam dataset`);
      return { class: this.classOf(id), by: "saved" as const, map: { data: Float32Array.from(tensor.data as Float32Array), height: tensor.shape[0], width: tensor.shape[1] } };
    });
  }

  // `file` after following links, refused unless it is still inside the source's folder (a
  // missing file is left to its reader to report).
  async #inside(file: string): Promise<string> {
    const real = await realpath(file).catch(() => undefined);
    if (real === undefined) return file;
    if (!within(await realpath(this.source.root), real)) throw new InvalidArgumentError(`${file} leads outside ${this.source.root} (to ${real}); accepted: files inside the opened folder`);
    return real;
  }

  // The item's foreground fractions, from its ground truth.
  #measure(item: StudioItem, truth: Map2D<Uint8Array>): void {
    const counts = new Float64Array(256);
    for (const v of truth.data) counts[v]++;
    item.foreground = Object.fromEntries(this.source.classes.map((c) => [c.name, counts[c.id] / truth.data.length]));
  }

  #truthFile(id: string): string {
    return path.join(this.source.root, "gt", `${id}${IMAGE_SUFFIX}`);
  }

  #hasTruth(id: string): Promise<boolean> {
    return stat(this.#truthFile(id)).then(
      (s) => s.isFile(),
      () => false,
    );
  }

  async #generationFile(item: StudioItem): Promise<string> {
    if (!item.files.generation)
      throw new InvalidArgumentError(
        `item "${item.id}" has no generation file, so no capture to attribute; accepted: items with a generation file (a dataset made with save.generation: true)`,
      );
    return this.#inside(item.files.generation);
  }

  // Runs `use` on the item's generation, loaded once and kept among the most recently used few;
  // one pushed out of the cache is disposed when its last user is done.
  async #withGeneration<T>(item: StudioItem, use: (image: GeneratedImage) => Promise<T>): Promise<T> {
    const file = await this.#generationFile(item);
    let entry = this.#cache.get(item.id);
    if (entry) this.#cache.delete(item.id);
    else {
      entry = { image: loadGeneration(this.pipeline, file), users: 0, evicted: false };
      entry.image.catch(() => this.#cache.delete(item.id));
    }
    this.#cache.set(item.id, entry);
    entry.users++;
    while (this.#cache.size > this.#cacheSize) {
      const [oldest, old] = this.#cache.entries().next().value as [string, Loaded];
      this.#cache.delete(oldest);
      old.evicted = true;
      if (old.users === 0) dispose(old);
    }
    try {
      return await use(await entry.image);
    } finally {
      entry.users--;
      if (entry.evicted && entry.users === 0) dispose(entry);
    }
  }
}

interface Loaded {
  image: Promise<GeneratedImage>;
  users: number;
  evicted: boolean;
}

function dispose(entry: Loaded): void {
  entry.image.then(
    (image) => image.dispose(),
    () => undefined,
  );
}
