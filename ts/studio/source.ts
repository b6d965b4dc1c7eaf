// What the studio shows: the items of a generation file or of a folder of generation files, with
// their classes and where each item's files are. Item ids are looked up in
// this list only, so a request can never name a path outside the folder.
import { promises as fs } from "node:fs";
import path from "node:path";

import { InvalidArgumentError, ModelLoadError, NotFoundError } from "../errors";
import { fileError } from "../files";
import { readGenerationInfo } from "../image";
import { safeStem } from "../cli/output";

/** A class the studio overlays, paints and optimises a token for; its id is its label value. */
export interface StudioClass {
  id: number;
  name: string;
  color: [number, number, number];
}

export interface StudioItem {
  id: string;
  prompt: string;
  width: number;
  height: number;
  /** Ids of the classes the item is labelled (or to be annotated) for. */
  classes: number[];
  /** Fraction of the image's pixels of each class in its ground truth, by class name (empty until it has some). */
  foreground: Record<string, number>;
  /** Absolute paths; a generation file is what open-vocabulary maps need. */
  files: { generation?: string; image?: string };
}

export interface StudioSource {
  kind: "generations";
  /** The folder ground truth (gt/) and tokens (tokens/) are written into. */
  root: string;
  classes: StudioClass[];
  /** The label of pixels no class covers. */
  background: number;
  items: StudioItem[];
  /** The model folder recorded by the first generation file, if any. */
  model?: string;
}

/** Item ids as the HTTP API accepts them: file-name stems, no path separators, not starting with a dot. */
export const ITEM_ID = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$/;

const GENERATION_SUFFIX = ".safetensors";

/**
 * The source at `target`: a generation file, or a folder of them. Without a dataset the classes
 * are the given names (ids 1, 2, …, background 0), each item to be annotated for all of them.
 */
export async function openSource(target: string, opts: { classes?: readonly string[] } = {}): Promise<StudioSource> {
  const resolved = path.resolve(target);
  let stat;
  try {
    stat = await fs.stat(resolved);
  } catch (error) {
    throw fileError(error, resolved, "ovam studio");
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
  return { kind: "generations", root, classes, background: 0, items, ...(model === undefined ? {} : { model }) };
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
    return { id: i + 1, name, color: COLORS[i % COLORS.length] };
  });
}
