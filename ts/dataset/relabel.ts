// `ovam masks DIR`: labels a finished dataset again from its saved maps with other mask settings
// (a dense CRF among them, over the saved images), optionally refining the maps by their image's
// self-attention where the dataset saved it, into a folder of its own beside labels/ (nothing is
// generated, nothing existing is changed).
import { promises as fs } from "node:fs";
import path from "node:path";

import { abortError, awaitNative, callNative, InvalidArgumentError, IOError } from "../errors";
import { readInputFile, writeFileAtomic } from "../files";
import { labelMaps, resolveMaskSettings, type MaskSettings, type MaskSettingsInput } from "../masks";
import { native, type NativeTensor } from "../native";
import { invalidOption, parse } from "../options";
import { decodePNG, encodeIndexed } from "../png";
import { parseMapsMetadata, UNREFINED_PREFIX, type MapsMetadata } from "./item";
import { DATASET_FILE } from "./layout";
import { readManifest, type ManifestLine } from "./manifest";
import { datasetRefineSchema, type DatasetClass, type DatasetRefine } from "./spec";

/** What `ovam masks` and `ovam studio` need of dataset.json. */
export interface DatasetRecord {
  model?: { folder: string };
  background: number;
  palette: number[][];
  classes: { id: number; name: string }[];
  spec: { layout: "default" | "voc"; classes: DatasetClass[] };
}

/** Reads a dataset folder's dataset.json. */
export async function readDatasetRecord(dir: string): Promise<DatasetRecord> {
  const file = path.join(dir, DATASET_FILE);
  const text = (await readInputFile(file, { maxBytes: 64 << 20, what: "dataset folder" })).toString("utf8");
  try {
    const record = JSON.parse(text) as DatasetRecord & { format?: string };
    if (record.format === "ovam-dataset/1" && Array.isArray(record.palette) && Array.isArray(record.spec?.classes)) return record;
  } catch {
    // reported below
  }
  throw new InvalidArgumentError(`${file}: not a dataset made by ovam dataset (no ovam-dataset/1 record)`);
}

export interface RelabelOptions {
  /** The new settings: a preset and knobs (see MaskSettings; `crf` reads the saved images). */
  masks?: MaskSettingsInput;
  /**
   * The maps labelled: default the saved ones as the dataset labelled them (refined when its spec
   * refines); false: unrefined; { power, side? }: the unrefined maps refined by the self-attention
   * the dataset saved (save.selfAttention, or save.generation's files).
   */
  refine?: false | { method?: "sa-power"; power?: number; side?: number };
  /** The folder the labels go into, inside the dataset; default "labels-<preset>". */
  name?: string;
  signal?: AbortSignal;
  onItem?: (id: string, done: number, total: number) => void;
}

/** Labels every finished item again from maps/{id}.safetensors; returns the folder, the settings and the refinement used. */
export async function relabelDataset(
  dir: string,
  options: RelabelOptions = {},
): Promise<{ folder: string; count: number; settings: MaskSettings; refine: DatasetRefine | null | "as-made" }> {
  const where = "masks()";
  const out = path.resolve(dir);
  const record = await readDatasetRecord(out);
  const settings = resolveMaskSettings(options.masks, where);
  const refine = options.refine === undefined || options.refine === false ? options.refine : parse(where, datasetRefineSchema, options.refine, "refine");
  const suffix = `${refine === false ? "-unrefined" : refine ? `-sa${refine.power}` : ""}${settings.crf ? "-crf" : ""}`;
  const name = options.name ?? `labels-${settings.preset}${suffix}`;
  if (!/^[A-Za-z0-9_.-]+$/.test(name) || name.startsWith(".") || ["images", "labels", "maps", "JPEGImages", "SegmentationClass"].includes(name))
    throw invalidOption(where, "name", name, "a new folder name of letters, digits, '_', '-' and '.' (not one of the dataset's own folders)");
  const folder = path.join(out, name);
  // Made with the first labels, so that an item's error (no self-attention saved) leaves no empty folder.
  let made: Promise<unknown> | undefined;
  const makeFolder = () =>
    (made ??= fs.mkdir(folder, { recursive: true }).catch((error: unknown) => {
      throw new IOError(`${folder}: cannot make the folder (${(error as Error).message})`, { cause: error });
    }));
  const palette = Uint8Array.from(record.palette.flat());
  const kinds = new Map(record.spec.classes.map((c) => [c.id, "token" in c.attribute ? ("token" as const) : ("text" as const)]));
  const lines = (await readManifest(out)).filter((line) => line.files.maps !== undefined);
  if (lines.length === 0) throw new InvalidArgumentError(`${out}: no finished item has saved maps (the spec's save.maps was false, or nothing is finished)`);
  let done = 0;
  for (const line of lines) {
    if (options.signal?.aborted) throw abortError(where, options.signal);
    const file = path.join(out, line.files.maps as string);
    const { tensors, metadata } = await awaitNative(native.loadTensors(file));
    const info = parseMapsMetadata(metadata, file);
    const maps = await chosenMaps(out, line, info, tensors, refine, file, where);
    const label = await labelMaps(maps, {
      width: info.width,
      height: info.height,
      classes: info.classes.map((c) => ({ id: c.id, threshold: settings.threshold[kinds.get(c.id) ?? "text"] })),
      background: record.background,
      settings,
      ...(settings.crf ? { image: await savedImage(out, line, info) } : {}),
    });
    await makeFolder();
    await writeFileAtomic(path.join(folder, `${line.id}.png`), await encodeIndexed(info.width, info.height, label.labels.data, palette));
    done++;
    options.onItem?.(line.id, done, lines.length);
  }
  // What the labels were made from: the mask settings and the maps' refinement ("as-made": the dataset's own, spec.refine).
  const used = refine === undefined ? "as-made" : refine || null;
  await writeFileAtomic(path.join(folder, "masks.json"), `${JSON.stringify({ settings, refine: used, items: done }, null, 2)}\n`);
  return { folder, count: done, settings, refine: used };
}

// The class maps [classes, h, w] to label: as saved, unrefined, or refined here.
async function chosenMaps(
  dir: string,
  line: ManifestLine,
  info: MapsMetadata,
  tensors: Record<string, NativeTensor>,
  refine: DatasetRefine | false | undefined,
  file: string,
  where: string,
): Promise<{ data: Float32Array; shape: number[] }> {
  // A refining spec saved the unrefined maps beside the refined ones.
  const prefix = refine !== undefined && info.refine ? UNREFINED_PREFIX : "";
  const planes = info.classes.map((c) => tensors[`${prefix}${c.tensor}`]);
  const [h, w] = planes[0]?.shape ?? [];
  if (planes.some((p) => !p || p.shape.length !== 2 || p.shape[0] !== h || p.shape[1] !== w)) throw new InvalidArgumentError(`${file}: its class maps are missing or of different sizes`);
  const data = new Float32Array(planes.length * h * w);
  planes.forEach((p, i) => data.set(p.data as Float32Array, i * h * w));
  const maps = { data, shape: [planes.length, h, w] };
  if (!refine) return maps;
  const grid = await savedSelfAttention(dir, line, tensors, refine, where);
  const refined = await awaitNative(callNative(() => native.components.selfAttentionRefine(grid.matrix, grid.height, grid.width, maps, refine.power, [h, w])));
  return { data: refined.data as Float32Array, shape: maps.shape };
}

const SELF_ATTENTION = /^self_attention\.(\d+)x(\d+)$/;

// The self-attention of the grid `refine` asks for (its side, else the largest), from the maps
// file (save.selfAttention) or the item's generation file (save.generation).
async function savedSelfAttention(
  dir: string,
  line: ManifestLine,
  tensors: Record<string, NativeTensor>,
  refine: DatasetRefine,
  where: string,
): Promise<{ matrix: NativeTensor; height: number; width: number }> {
  const gridsOf = (from: Record<string, NativeTensor>) =>
    Object.entries(from).flatMap(([name, matrix]) => {
      const match = SELF_ATTENTION.exec(name);
      return match ? [{ matrix, height: Number(match[1]), width: Number(match[2]), side: Math.max(Number(match[1]), Number(match[2])) }] : [];
    });
  let grids = gridsOf(tensors);
  if (grids.length === 0 && line.files.generation) grids = gridsOf((await awaitNative(native.loadTensors(path.join(dir, line.files.generation)))).tensors);
  if (grids.length === 0)
    throw invalidOption(
      where,
      "refine",
      refine,
      `no refinement of ${dir}: its items saved no self-attention; make the dataset with save.selfAttention: true (the maps file keeps the grid refinement uses) or save.generation: true`,
    );
  const grid = refine.side === undefined ? grids.reduce((a, b) => (b.side > a.side ? b : a)) : grids.find((g) => g.side === refine.side);
  if (!grid) throw invalidOption(where, "refine.side", refine.side, `a side the dataset saved the self-attention of (${grids.map((g) => g.side).join(", ")})`);
  return grid;
}

// The item's saved image as RGB bytes (the CRF's appearance kernel reads it).
async function savedImage(dir: string, line: ManifestLine, info: MapsMetadata): Promise<{ data: Uint8Array; width: number; height: number }> {
  const file = path.join(dir, line.files.image);
  const png = await decodePNG(await readInputFile(file, { maxBytes: 1 << 30, what: "dataset image" }), file);
  if (png.channels !== 3 || png.width !== info.width || png.height !== info.height)
    throw new InvalidArgumentError(`${file}: a ${png.width}×${png.height} ${png.channels}-channel image; accepted: the item's ${info.width}×${info.height} RGB image (masks.crf reads it)`);
  return { data: png.data, width: png.width, height: png.height };
}
