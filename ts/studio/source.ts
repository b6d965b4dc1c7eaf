// What the studio shows: the items of a generation file, of a folder of generation files or of a
// dataset folder (dataset.json + manifest.jsonl), with their classes and where each item's files
// are. Item ids are looked up in this list only, and a manifest's file names must stay inside
// its folder, so a request can never name a path outside the folder.
import { promises as fs } from "node:fs";
import path from "node:path";

import { InvalidArgumentError, ModelLoadError, NotFoundError } from "../errors";
import { fileError } from "../files";
import { readGenerationInfo } from "../image";
import { safeStem } from "../cli/output";
import { DATASET_FILE } from "../dataset/layout";
import { readManifest } from "../dataset/manifest";
import { readDatasetRecord } from "../dataset/relabel";

/** A class the studio overlays, paints and optimises a token for; its id is its label value. */
export interface StudioClass {
  id: number;
  name: string;
  /** What live attribution attributes for it: a dataset class's attribute text, else its name. */
  text: string;
  color: [number, number, number];
}

export interface StudioItem {
  id: string;
  prompt: string;
  width: number;
  height: number;
  /** Ids of the classes the item is labelled (or to be annotated) for. */
  classes: number[];
  /**
   * Fraction of the image's pixels of each class, by class name: in a dataset, of its labels (the
   * manifest's); else in its ground truth (empty until it has some).
   */
  foreground: Record<string, number>;
  /** Absolute paths; a generation file is what open-vocabulary maps need, a dataset's maps file holds its class maps. */
  files: { generation?: string; image?: string; label?: string; maps?: string };
}

export interface StudioSource {
  kind: "generations" | "dataset";
  /** The folder ground truth (gt/) and tokens (tokens/) are written into. */
  root: string;
  classes: StudioClass[];
  /** The label of pixels no class covers. */
  background: number;
  items: StudioItem[];
  /** The model folder recorded by the dataset or the first generation file, if any. */
  model?: string;
  /** Manifest lines not served, by item id, and why (a file outside the folder). */
  refused: Map<string, string>;
}

/** Item ids as the HTTP API accepts them: file-name stems, no path separators, not starting with a dot. */
export const ITEM_ID = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$/;

const GENERATION_SUFFIX = ".safetensors";

/**
 * The source at `target`: a dataset folder, a generation file, or a folder of them. Without a
 * dataset the classes are the given names (ids 1, 2, …, background 0), each item to be annotated
 * for all of them.
 */
export async function openSource(target: string, opts: { classes?: readonly string[] } = {}): Promise<StudioSource> {
  const resolved = path.resolve(target);
  let stat;
  try {
    stat = await fs.stat(resolved);
  } catch (error) {
    throw fileError(error, resolved, "ovam studio");
  }
  if (stat.isDirectory() && (await isFile(path.join(resolved, DATASET_FILE)))) {
    if (opts.classes?.length) throw new InvalidArgumentError(`${resolved} is a dataset folder, whose classes are its dataset.json's; accepted: no classes with a dataset folder`);
    return openDataset(resolved);
  }
  const files = stat.isDirectory() ? await generationFiles(resolved) : [resolved];
  const root = stat.isDirectory() ? resolved : path.dirname(resolved);
  const classes = namedClasses(opts.classes ?? []);
  const items: StudioItem[] = [];
  let model: string | undefined;
  for (const file of files) {
    const info = await readGenerationInfo(file).catch((error: unknown) => {
      // A folder may hold other safetensors files (tokens, maps): those are not items.
      if (stat.isDirectory() && (error instanceof InvalidArgumentError || error instanceof ModelLoadError)) return undefined;
      throw error;
    });
    if (!info) continue;
    model ??= info.model;
    const id = path.basename(file, GENERATION_SUFFIX);
    const png = path.join(path.dirname(file), `${id}.png`);
    items.push({
      id,
      prompt: info.settings.prompt,
      width: info.settings.width,
      height: info.settings.height,
      classes: classes.map((c) => c.id),
      foreground: {},
      files: { generation: file, ...((await isFile(png)) ? { image: png } : {}) },
    });
  }
  if (items.length === 0) throw new NotFoundError(`ovam studio: ${resolved} holds no generation files (written by image.save() or ovam generate)`);
  return { kind: "generations", root, classes, background: 0, items, ...(model === undefined ? {} : { model }), refused: new Map() };
}

/** A dataset folder: its finished items (the manifest's lines), classes and background. */
async function openDataset(dir: string): Promise<StudioSource> {
  const record = await readDatasetRecord(dir);
  const texts = new Map(record.spec.classes.map((c) => [c.id, "text" in c.attribute ? c.attribute.text : c.name]));
  const classes = record.classes.map((c) => ({ id: c.id, name: c.name, text: texts.get(c.id) ?? c.name, color: record.palette[c.id] as [number, number, number] }));
  const items: StudioItem[] = [];
  const refused = new Map<string, string>();
  for (const line of await readManifest(dir)) {
    // An id no request can name is no item.
    if (!ITEM_ID.test(line.id)) continue;
    const outside = Object.values(line.files ?? {}).find((file) => typeof file !== "string" || !within(dir, path.resolve(dir, file)));
    if (outside !== undefined) {
      refused.set(line.id, `its manifest line names ${JSON.stringify(outside)}, outside the dataset folder`);
      continue;
    }
    const files: StudioItem["files"] = {};
    for (const kind of ["image", "label", "maps", "generation"] as const) {
      const file = line.files[kind];
      if (file !== undefined) files[kind] = path.resolve(dir, file);
    }
    items.push({
      id: line.id,
      prompt: line.prompt,
      width: line.settings.width,
      height: line.settings.height,
      classes: line.classes,
      foreground: line.foreground,
      files,
    });
  }
  if (items.length === 0) throw new NotFoundError(`the dataset ${dir} has no finished items yet (manifest.jsonl)`);
  return { kind: "dataset", root: dir, classes, background: record.background, items, ...(record.model?.folder ? { model: record.model.folder } : {}), refused };
}

/** Whether `file` (absolute) lies inside the folder `dir`, by name. */
export function within(dir: string, file: string): boolean {
  const relative = path.relative(dir, file);
  return relative !== "" && relative !== ".." && !relative.startsWith(`..${path.sep}`) && !path.isAbsolute(relative);
}

// The *.safetensors files of a folder whose stems are usable item ids, sorted by name.
async function generationFiles(folder: string): Promise<string[]> {
  let names;
  try {
    names = await fs.readdir(folder);
  } catch (error) {
    throw fileError(error, folder, "ovam studio");
  }
  return names
    .filter((name) => name.endsWith(GENERATION_SUFFIX) && ITEM_ID.test(path.basename(name, GENERATION_SUFFIX)))
    .sort()
    .map((name) => path.join(folder, name));
}

async function isFile(file: string): Promise<boolean> {
  return fs.stat(file).then(
    (s) => s.isFile(),
    () => false,
  );
}

// Classes given by name: ids from 1, colours from a fixed, well separated list.
const COLORS: [number, number, number][] = [
  [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
  [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [220, 190, 255],
];
function namedClasses(names: readonly string[]): StudioClass[] {
  if (names.length > 254) throw new InvalidArgumentError(`ovam studio: ${names.length} classes; accepted: at most 254 (ids 1 to 254)`);
  const seen = new Set<string>();
  return names.map((raw, i) => {
    const name = raw.trim();
    if (!name || seen.has(safeStem(name)))
      throw new InvalidArgumentError(`ovam studio: class "${raw}" is ${name ? "given twice" : "empty"}; accepted: distinct non-empty class names`);
    seen.add(safeStem(name));
    return { id: i + 1, name, text: name, color: COLORS[i % COLORS.length] };
  });
}
