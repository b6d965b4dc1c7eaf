// What is scored against what: items (an id, per class a raw map or a predicted label map) and
// their ground truth, from memory, from a dataset folder (manifest.jsonl and maps/*.safetensors)
// or from a plain folder matched by file name. Items are loaded one at a time, so a folder of
// thousands of 512×512 maps is evaluated in bounded memory.
import { promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";

import { parseMapsMetadata } from "../dataset/item";
import { DATASET_FILE } from "../dataset/layout";
import { readManifest } from "../dataset/manifest";
import { readDatasetRecord } from "../dataset/relabel";
import { awaitNative, InvalidArgumentError, NotFoundError } from "../errors";
import { fileError, readInputFile } from "../files";
import { native } from "../native";
import type { Map2D } from "../options";
import { decodePNG } from "../png";
import { readTruth, type Truth } from "./truth";

/** One scored image: raw maps per class name (or id), or a predicted label map, and its truth. */
export interface LoadedItem {
  id: string;
  /** Raw (unnormalised) maps by class key: a class name or a decimal class id. */
  maps: Map<string, Map2D<Float32Array>>;
  /** A predicted label map (class indices), when the item has one. */
  labels?: Map2D<Uint8Array>;
  /** Class-index labels of the whole image, or a 0/1 mask per class key. */
  truth: Truth | Map<string, Truth>;
  /** Class id of each class name the item's files record (a dataset's maps). */
  classIds?: ReadonlyMap<string, number>;
  /** The classes the item is scored for (a dataset's manifest), when its labels alone cannot say. */
  scored?: readonly string[];
}

/** What a predictions source gives of an item (the truth comes from elsewhere). */
export type Predictions = Pick<LoadedItem, "maps" | "labels" | "classIds" | "scored">;

/** A source: item ids up front, each item loaded when scored. */
export interface ItemSource {
  ids: string[];
  load(id: string): Promise<LoadedItem>;
}

const MAX_MAP_BYTES = 1 << 30;
const MAP_SUFFIXES = [".map.npy", ".map.png"] as const;

/** Maps from a .npy (float32, 2-D, C order) or an 8-bit grey PNG (values / 255). */
export async function readMap(file: string, what: string): Promise<Map2D<Float32Array>> {
  const bytes = await readInputFile(file, { maxBytes: MAX_MAP_BYTES, what });
  if (file.endsWith(".npy")) return parseNpy(bytes, `${what} ${file}`);
  const png = await decodePNG(bytes, `${what} ${file}`);
  if (png.channels !== 1) throw new InvalidArgumentError(`${what} ${file}: a ${png.channels}-channel PNG; accepted: an 8-bit grey map PNG or a float32 .npy`);
  return { data: Float32Array.from(png.data, (v) => v / 255), width: png.width, height: png.height };
}

/** A 2-D little-endian float32 C-order .npy array (what `ovam attribute` writes). */
export function parseNpy(bytes: Buffer, name: string): Map2D<Float32Array> {
  const bad = (what: string) => new InvalidArgumentError(`${name}: ${what}; accepted: a 2-D float32 ('<f4', C order) .npy array`);
  if (bytes.length < 12 || bytes.toString("latin1", 0, 6) !== "\x93NUMPY") throw bad("not a .npy file");
  const major = bytes[6];
  const headerLength = major === 1 ? bytes.readUInt16LE(8) : bytes.readUInt32LE(8);
  const start = (major === 1 ? 10 : 12) + headerLength;
  const header = bytes.toString("latin1", major === 1 ? 10 : 12, start);
  const descr = /'descr':\s*'([^']+)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr !== "<f4" || fortran !== "False" || shape === undefined) throw bad(`header ${JSON.stringify(header.trim())}`);
  const dims = shape.split(",").map((s) => s.trim()).filter(Boolean).map(Number);
  if (dims.length !== 2 || !dims.every((d) => Number.isInteger(d) && d > 0)) throw bad(`shape (${shape})`);
  const [height, width] = dims;
  if (bytes.length !== start + width * height * 4) throw bad(`${bytes.length - start} data bytes for shape (${shape})`);
  // A copy, which also aligns the floats (the header length need not be a multiple of 4).
  const data = new Float32Array(width * height);
  new Uint8Array(data.buffer).set(bytes.subarray(start));
  if (os.endianness() === "BE") for (let i = 0; i < data.length; i++) data[i] = bytes.readFloatLE(start + i * 4);
  return { data, width, height };
}

async function exists(file: string): Promise<boolean> {
  try {
    await fs.stat(file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw fileError(error, file, "eval");
  }
}

async function list(dir: string, what: string): Promise<import("node:fs").Dirent[]> {
  try {
    return await fs.readdir(dir, { withFileTypes: true });
  } catch (error) {
    throw fileError(error, dir, what);
  }
}

/**
 * Predictions in a plain folder: `<id>/<class>.map.npy` (or `.map.png`), as
 * `ovam attribute … --out <folder>/<id>` writes them, and/or `<id>.png` label maps.
 */
export async function folderPredictions(dir: string): Promise<{ ids: string[]; load(id: string): Promise<Predictions> }> {
  const entries = await list(dir, "predictions");
  const ids = new Set<string>();
  for (const entry of entries) {
    if (entry.isDirectory()) ids.add(entry.name);
    else if (entry.isFile() && entry.name.endsWith(".png")) ids.add(entry.name.slice(0, -4));
  }
  return {
    ids: [...ids].sort(),
    async load(id) {
      const maps = new Map<string, Map2D<Float32Array>>();
      const folder = path.join(dir, id);
      if (await exists(folder))
        for (const entry of await list(folder, "predictions"))
          for (const suffix of MAP_SUFFIXES)
            if (entry.isFile() && entry.name.endsWith(suffix)) {
              const key = entry.name.slice(0, -suffix.length);
              if (maps.has(key)) throw new InvalidArgumentError(`predictions: ${folder} has two maps of "${key}"; accepted: one of ${MAP_SUFFIXES.join(", ")} per class`);
              maps.set(key, await readMap(path.join(folder, entry.name), "map"));
            }
      const labelFile = path.join(dir, `${id}.png`);
      let labels: Map2D<Uint8Array> | undefined;
      if (await exists(labelFile)) {
        const truth = await readTruth(labelFile, "predicted labels");
        if (truth.kind !== "labels") throw new InvalidArgumentError(`predicted labels ${labelFile}: not a class-index (grey or palette) PNG`);
        labels = truth.map;
      }
      return { maps, labels };
    },
  };
}

/** Whether `dir` is a dataset folder (it has the dataset.json `ovam dataset` writes). */
export function isDatasetFolder(dir: string): Promise<boolean> {
  return exists(path.join(dir, DATASET_FILE));
}

/**
 * Predictions of a dataset folder: its finished items (manifest.jsonl), each scored for the
 * classes its manifest line names, by the maps it saved (maps/<id>.safetensors: the maps its labels
 * were made from), or by label PNGs: its labels/ where it saved no maps, or the folder `labels`
 * (one `ovam masks` wrote, e.g. "labels-daam") when given.
 */
export async function datasetPredictions(dir: string, labels?: string): Promise<{ ids: string[]; load(id: string): Promise<Predictions> }> {
  const record = await readDatasetRecord(dir);
  const names = new Map(record.classes.map((c) => [c.id, c.name]));
  const classIds = new Map(record.classes.map((c) => [c.name, c.id]));
  const lines = new Map((await readManifest(dir)).map((line) => [line.id, line]));
  if (labels !== undefined && !(await exists(path.join(dir, labels)))) throw new NotFoundError(`dataset ${dir}: no labels folder "${labels}" in it; accepted: a folder ovam masks wrote (labels-<preset>…)`);
  return {
    ids: [...lines.keys()].sort(),
    async load(id) {
      const line = lines.get(id) as NonNullable<ReturnType<typeof lines.get>>;
      const scored = line.classes.map((classId) => names.get(classId) ?? String(classId));
      const maps = new Map<string, Map2D<Float32Array>>();
      if (labels === undefined && line.files.maps) {
        const file = path.join(dir, line.files.maps);
        const { tensors, metadata } = await awaitNative(native.loadTensors(file));
        for (const c of parseMapsMetadata(metadata, file).classes) {
          const tensor = tensors[c.tensor];
          if (!tensor || tensor.shape.length !== 2) throw new InvalidArgumentError(`${file}: no [h, w] map of class "${c.name}" (tensor "${c.tensor}")`);
          maps.set(c.name, { data: tensor.data as Float32Array, width: tensor.shape[1], height: tensor.shape[0] });
        }
        return { maps, classIds, scored };
      }
      const file = labels === undefined ? path.join(dir, line.files.label) : path.join(dir, labels, `${id}.png`);
      const truth = await readTruth(file, "predicted labels");
      if (truth.kind !== "labels") throw new InvalidArgumentError(`predicted labels ${file}: not a class-index (grey or palette) PNG`);
      return { maps, labels: truth.map, classIds, scored };
    },
  };
}

/**
 * The ground truth of item `id` in `dir`: `<id>.png` or `<id>.gt.png` (labels, or one mask when
 * the item has one class), else `<id>/<class>.gt.png` or `<id>/<class>.png` (a mask per class).
 */
export async function folderTruth(dir: string, id: string, classes: readonly string[]): Promise<Truth | Map<string, Truth>> {
  for (const name of [`${id}.png`, `${id}.gt.png`]) {
    const file = path.join(dir, name);
    if (await exists(file)) return readTruth(file, "ground truth");
  }
  const masks = new Map<string, Truth>();
  for (const key of classes) {
    const file = (await Promise.all([`${key}.gt.png`, `${key}.png`].map(async (n) => ((await exists(path.join(dir, id, n))) ? path.join(dir, id, n) : undefined)))).find(Boolean);
    if (!file) continue;
    masks.set(key, await readTruth(file, "ground truth", true));
  }
  if (masks.size === 0)
    throw new NotFoundError(
      `ground truth of item "${id}": none of ${path.join(dir, `${id}.png`)}, ${path.join(dir, `${id}.gt.png`)} or ${path.join(dir, id, "<class>.gt.png")} exists; accepted: a label or mask PNG per item, or a mask per class`,
    );
  return masks;
}
