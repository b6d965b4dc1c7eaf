// `ovam masks DIR`: labels a finished dataset again from its saved maps with other mask settings,
// into a folder of its own beside labels/ (nothing is generated, nothing existing is changed).
import { promises as fs } from "node:fs";
import path from "node:path";

import { abortError, awaitNative, InvalidArgumentError, IOError } from "../errors";
import { readInputFile, writeFileAtomic } from "../files";
import { labelMaps, resolveMaskSettings, type MaskSettings, type MaskSettingsInput } from "../masks";
import { native } from "../native";
import { invalidOption } from "../options";
import { encodeIndexed } from "../png";
import { parseMapsMetadata } from "./item";
import { DATASET_FILE } from "./layout";
import { readManifest } from "./manifest";
import type { DatasetClass } from "./spec";

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
  /** The new settings: a preset and knobs (see MaskSettings). */
  masks?: MaskSettingsInput;
  /** The folder the labels go into, inside the dataset; default "labels-<preset>". */
  name?: string;
  signal?: AbortSignal;
  onItem?: (id: string, done: number, total: number) => void;
}

/** Labels every finished item again from maps/{id}.safetensors; returns the folder and the settings used. */
export async function relabelDataset(dir: string, options: RelabelOptions = {}): Promise<{ folder: string; count: number; settings: MaskSettings }> {
  const where = "masks()";
  const out = path.resolve(dir);
  const record = await readDatasetRecord(out);
  const settings = resolveMaskSettings(options.masks, where);
  const name = options.name ?? `labels-${settings.preset}`;
  if (!/^[A-Za-z0-9_.-]+$/.test(name) || name.startsWith(".") || ["images", "labels", "maps", "JPEGImages", "SegmentationClass"].includes(name))
    throw invalidOption(where, "name", name, "a new folder name of letters, digits, '_', '-' and '.' (not one of the dataset's own folders)");
  const folder = path.join(out, name);
  await fs.mkdir(folder, { recursive: true }).catch((error: unknown) => {
    throw new IOError(`${folder}: cannot make the folder (${(error as Error).message})`, { cause: error });
  });
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
    const planes = info.classes.map((c) => tensors[c.tensor]);
    const [h, w] = planes[0]?.shape ?? [];
    if (planes.some((p) => !p || p.shape.length !== 2 || p.shape[0] !== h || p.shape[1] !== w)) throw new InvalidArgumentError(`${file}: its class maps are missing or of different sizes`);
    const data = new Float32Array(planes.length * h * w);
    planes.forEach((p, i) => data.set(p.data as Float32Array, i * h * w));
    const label = await labelMaps(
      { data, shape: [planes.length, h, w] },
      {
        width: info.width,
        height: info.height,
        classes: info.classes.map((c) => ({ id: c.id, threshold: settings.threshold[kinds.get(c.id) ?? "text"] })),
        background: record.background,
        settings,
      },
    );
    await writeFileAtomic(path.join(folder, `${line.id}.png`), await encodeIndexed(info.width, info.height, label.labels.data, palette));
    done++;
    options.onItem?.(line.id, done, lines.length);
  }
  await writeFileAtomic(path.join(folder, "masks.json"), `${JSON.stringify({ settings, items: done }, null, 2)}\n`);
  return { folder, count: done, settings };
}
