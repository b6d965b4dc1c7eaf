// `ovam dataset filter DIR`: OVAM's filter of its synthetic VOC set. Images of one uniform colour
// (what a safety checker leaves) are dropped; then, per class, the images whose foreground
// fraction lies outside the class's 5th–95th percentiles. Writes a new split; deletes nothing.
import path from "node:path";

import { InvalidArgumentError } from "../errors";
import { readInputFile, writeFileAtomic } from "../files";
import { invalidOption } from "../options";
import { decodePNG } from "../png";
import { splitFile } from "./layout";
import { readManifest } from "./manifest";
import { readDatasetRecord } from "./relabel";

export interface FilterOptions {
  /** The split written, e.g. "train-filtered" (default). */
  name?: string;
  /** Percentiles kept per class; default [5, 95]. */
  percentiles?: [number, number];
}

export interface FilterResult {
  /** The split file written, absolute. */
  file: string;
  kept: string[];
  uniform: string[];
  outliers: string[];
  /** Per class name: the [low, high] foreground fractions kept. */
  bounds: Record<string, [number, number]>;
}

/** The p-th percentile of sorted values, interpolated linearly (NumPy's and pandas' default). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const at = (p / 100) * (sorted.length - 1);
  const low = Math.floor(at);
  const high = Math.min(low + 1, sorted.length - 1);
  return sorted[low] + (sorted[high] - sorted[low]) * (at - low);
}

/** Whether every pixel of an RGB(A) image equals the first. */
function uniform(data: Uint8Array, channels: number): boolean {
  for (let i = channels; i < data.length; i++) if (data[i] !== data[i % channels]) return false;
  return true;
}

export async function filterDataset(dir: string, options: FilterOptions = {}): Promise<FilterResult> {
  const where = "dataset.filter()";
  const out = path.resolve(dir);
  const name = options.name ?? "train-filtered";
  if (!/^[A-Za-z0-9_.-]+$/.test(name) || name.startsWith(".") || name === "train") throw invalidOption(where, "name", name, "a split name of letters, digits, '_', '-' and '.', other than train");
  const [lowP, highP] = options.percentiles ?? [5, 95];
  if (!(lowP >= 0 && lowP < highP && highP <= 100)) throw invalidOption(where, "percentiles", options.percentiles, "[low, high] with 0 ≤ low < high ≤ 100");
  const record = await readDatasetRecord(out);
  const lines = (await readManifest(out)).sort((a, b) => a.index - b.index);
  if (lines.length === 0) throw new InvalidArgumentError(`${out}: no finished items to filter`);

  const uniformIds: string[] = [];
  const candidates = [];
  for (const line of lines) {
    const file = path.join(out, line.files.image);
    const png = await decodePNG(await readInputFile(file, { maxBytes: 1 << 30, what: "dataset image" }), file);
    if (uniform(png.data, png.channels)) uniformIds.push(line.id);
    else candidates.push(line);
  }
  const bounds: Record<string, [number, number]> = {};
  for (const c of record.classes) {
    const fractions = candidates.filter((l) => l.foreground[c.name] !== undefined).map((l) => l.foreground[c.name]).sort((a, b) => a - b);
    if (fractions.length > 0) bounds[c.name] = [percentile(fractions, lowP), percentile(fractions, highP)];
  }
  const kept: string[] = [];
  const outliers: string[] = [];
  for (const line of candidates) {
    const inside = Object.entries(line.foreground).every(([cls, f]) => !bounds[cls] || (f >= bounds[cls][0] && f <= bounds[cls][1]));
    (inside ? kept : outliers).push(line.id);
  }
  const file = path.join(out, splitFile(record.spec.layout, name));
  await writeFileAtomic(file, kept.map((id) => `${id}\n`).join(""));
  return { file, kept, uniform: uniformIds, outliers, bounds };
}
