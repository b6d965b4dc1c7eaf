// evaluate(): scores attribution maps (or predicted label maps) against ground truth with the
// binary protocol (OVAM's pooled IoU; the thesis's threshold sweep, max mIoU and AUC) and/or the
// semantic one (mmsegmentation's confusion matrix with a background score).
import { z } from "zod";

import { abortError, InvalidArgumentError, NotFoundError } from "../errors";
import { abortSignal, callback, finite, integer, invalidOption, oneOf, options, parse, type Map2D } from "../options";
import { BinarySweep, type BinaryResult } from "./binary";
import { toTruthSize } from "./prepare";
import { SemanticConfusion, semanticPrediction, type SemanticResult } from "./semantic";
import { datasetPredictions, folderPredictions, folderTruth, isDatasetFolder, type ItemSource, type LoadedItem } from "./sources";
import type { Truth } from "./truth";

export interface EvaluateOptions {
  /** "binary" (default), "semantic" or "both". */
  protocol?: "binary" | "semantic" | "both";
  /** "max" (default): m / max (OVAM's notebooks, the thesis); "minmax": (m − min)/(max − min) (DAAM). */
  normalize?: "max" | "minmax";
  /** "gt" (default): predicted where n > τ; "ge": n ≥ τ. */
  compare?: "gt" | "ge";
  /** Thresholds k/steps, k = 0..steps; default 100. */
  steps?: number;
  /** The threshold of OVAM's columns (mIoU and overall IoU); a multiple of 1/steps, default 0.5. */
  threshold?: number;
  /** Semantic protocol: the background's constant score; default 0.5. */
  backgroundScore?: number;
  /** Ground-truth value left out of scoring; default 255. */
  ignore?: number;
  /** Class id of each class name the maps are named by (needed against class-index ground truth). */
  classes?: Record<string, number>;
  onItem?: (done: number, total: number) => void;
  signal?: AbortSignal;
}

/** An item given in memory. */
export interface EvaluationItem {
  id?: string;
  /** Raw maps by class name or decimal class id; any size with the truth's aspect ratio. */
  maps?: Record<string, Map2D<Float32Array>>;
  /** A predicted label map, used where the item has no maps. */
  labels?: Map2D<Uint8Array>;
  /** Class-index labels of the image, or a 0/1 mask per class name. */
  truth: Map2D<Uint8Array> | Record<string, Map2D<Uint8Array>>;
}

/** Prediction and ground-truth folders (see README "ovam eval" for the file names they match). */
export interface EvaluationFolders {
  /** A folder of maps / label PNGs, or a dataset folder (dataset.json, manifest.jsonl, maps/, labels/). */
  predictions: string;
  truth: string;
  /** A dataset's labels folder to score instead of its maps (e.g. "labels", or "labels-daam" from ovam masks). */
  labels?: string;
}

export interface EvaluationReport {
  settings: Required<Omit<EvaluateOptions, "onItem" | "signal" | "classes">> & { classes: Record<string, number> };
  /** Items scored, and items left out with the reason (no maps nor labels). */
  items: number;
  skipped: { id: string; reason: string }[];
  binary?: BinaryResult & {
    /** OVAM's columns at the chosen threshold. */
    at: { threshold: number; miou: number | null; overall: number | null; iou: Record<string, number | null> };
    /** Each scored (item, class) pair's IoU at the chosen threshold (null: empty union). */
    per_item: { id: string; class: string; iou: number | null }[];
  };
  semantic?: SemanticResult;
}

const mapRecord = z.record(z.string(), z.custom<Map2D<Float32Array>>((v) => isPlane(v, Float32Array), { error: "{ data: Float32Array, width, height }" }));
const labelPlane = z.custom<Map2D<Uint8Array>>((v) => isPlane(v, Uint8Array), { error: "{ data: Uint8Array, width, height }" });
const evaluateSchema = options({
  protocol: oneOf(["binary", "semantic", "both"]).default("binary"),
  normalize: oneOf(["max", "minmax"]).default("max"),
  compare: oneOf(["gt", "ge"]).default("gt"),
  steps: integer(1, 10000).default(100),
  threshold: finite("a number in [0, 1]", (v) => v >= 0 && v <= 1).default(0.5),
  backgroundScore: finite("a finite number").default(0.5),
  ignore: integer(0, 255).default(255),
  classes: z.record(z.string(), integer(0, 254), { error: "an object of class name → class id (0–254)" }).default({}),
  onItem: callback<(done: number, total: number) => void>("a function (done, total) => void").optional(),
  signal: abortSignal().optional(),
});
const itemSchema = z.strictObject(
  { id: z.string().optional(), maps: mapRecord.optional(), labels: labelPlane.optional(), truth: z.union([labelPlane, z.record(z.string(), labelPlane)], { error: "a label map or a record of 0/1 masks" }) },
  { error: "{ id?, maps?, labels?, truth }" },
);

function isPlane(value: unknown, Class: typeof Float32Array | typeof Uint8Array): boolean {
  const p = value as Map2D<Float32Array | Uint8Array> | null;
  return (
    typeof p === "object" && p !== null && p.data instanceof Class && Number.isInteger(p.width) && Number.isInteger(p.height) && p.width > 0 && p.height > 0 && p.data.length === p.width * p.height
  );
}

/**
 * Scores predictions against ground truth: items in memory, or a prediction folder (a dataset
 * folder or a folder of maps / label PNGs) against a ground-truth folder, matched by file name.
 */
export async function evaluate(source: readonly EvaluationItem[] | EvaluationFolders, opts?: EvaluateOptions): Promise<EvaluationReport> {
  const where = "evaluate()";
  const o = parse(where, evaluateSchema, opts ?? {});
  const k = Math.round(o.threshold * o.steps);
  if (Math.abs(k / o.steps - o.threshold) > 1e-9) throw new InvalidArgumentError(`${where}: threshold ${o.threshold} is not on the sweep; accepted: a multiple of 1/${o.steps}`);
  const items = await itemSource(where, source);
  const classIds = new Map(Object.entries(o.classes));
  const doBinary = o.protocol !== "semantic";
  const doSemantic = o.protocol !== "binary";
  const sweep = new BinarySweep({ normalize: o.normalize, compare: o.compare, steps: o.steps, ignore: o.ignore });
  const confusion = new SemanticConfusion({ normalize: o.normalize, backgroundScore: o.backgroundScore, ignore: o.ignore });
  const skipped: EvaluationReport["skipped"] = [];
  const perItem: { id: string; class: string; iou: number | null }[] = [];
  const idOf = (key: string, what: string) => {
    const id = classIds.get(key) ?? (/^\d+$/.test(key) ? Number(key) : undefined);
    if (id === undefined) throw new InvalidArgumentError(`${what}: class "${key}" has no class id to find in class-index ground truth; accepted: classes { "${key}": id } (--classes ${key}=ID)`);
    return id;
  };
  let done = 0;
  for (const id of items.ids) {
    if (o.signal?.aborted) throw abortError(where, o.signal);
    const item = await items.load(id);
    // Ids the files record (a dataset's classes); the caller's classes option wins.
    for (const [name, classId] of item.classIds ?? []) if (!(name in o.classes)) classIds.set(name, classId);
    const maps = item.maps.size > 0 ? item.maps : item.labels ? mapsFromLabels(item.labels, o.ignore, classIds, item.scored) : undefined;
    if (!maps) {
      skipped.push({ id, reason: "no maps and no predicted labels" });
      continue;
    }
    if (doBinary)
      for (const [key, map] of maps) {
        const what = `item "${id}", class "${key}"`;
        const { truth, target } = targetOf(item.truth, key, maps.size, () => idOf(key, what), what);
        const sized = toTruthSize(map, truth.width, truth.height, what);
        const iou = sweep.add(truth.data, target, sized.data, key, what);
        perItem.push({ id, class: key, iou: Number.isNaN(iou[k]) ? null : iou[k] });
      }
    if (doSemantic) {
      if (!("kind" in item.truth) || item.truth.kind !== "labels")
        throw new InvalidArgumentError(`item "${id}": the semantic protocol needs class-index ground truth; this item has binary masks (use protocol "binary")`);
      const truth = item.truth.map;
      const what = (key: string) => `item "${id}", class "${key}"`;
      const prediction =
        item.maps.size > 0
          ? semanticPrediction(
              new Map([...item.maps].map(([key, map]) => [idOf(key, what(key)), toTruthSize(map, truth.width, truth.height, what(key)).data])),
              truth.data.length,
              confusion.settings,
              (classId) => `item "${id}", class ${classId}`,
            )
          : sizedLabels(item.labels as Map2D<Uint8Array>, truth, id);
      confusion.add(truth.data, prediction);
    }
    done++;
    o.onItem?.(done, items.ids.length);
  }
  const names = new Map([...classIds].map(([name, id]) => [id, name]));
  const order = orderClasses(sweep.classes, classIds);
  const report: EvaluationReport = {
    settings: { protocol: o.protocol, normalize: o.normalize, compare: o.compare, steps: o.steps, threshold: o.threshold, backgroundScore: o.backgroundScore, ignore: o.ignore, classes: Object.fromEntries(classIds) },
    items: done,
    skipped,
  };
  if (doBinary) {
    const result = sweep.result(order);
    report.binary = {
      ...result,
      at: {
        threshold: result.thresholds[k],
        miou: result.miou[k],
        overall: result.overall[k],
        iou: Object.fromEntries(Object.entries(result.iou).map(([key, curve]) => [key, curve[k]])),
      },
      per_item: perItem,
    };
  }
  if (doSemantic) report.semantic = confusion.result((classId) => (classId === 0 ? "background" : (names.get(classId) ?? String(classId))));
  return report;
}

// Classes by id where known, then by name.
function orderClasses(keys: readonly string[], ids: ReadonlyMap<string, number>): string[] {
  const rank = (key: string) => ids.get(key) ?? (/^\d+$/.test(key) ? Number(key) : Infinity);
  return [...keys].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
}

// The truth plane and the value that marks the class in it.
function targetOf(truth: LoadedItem["truth"], key: string, classCount: number, id: () => number, what: string): { truth: Map2D<Uint8Array>; target: number } {
  if (truth instanceof Map) {
    const mask = truth.get(key);
    if (!mask) throw new NotFoundError(`${what}: no ground-truth mask for this class; accepted: a mask per scored class`);
    return targetOf(mask, key, 1, id, what);
  }
  if (truth.kind === "labels") return { truth: truth.map, target: id() };
  if (classCount !== 1)
    throw new InvalidArgumentError(`${what}: the item's ground truth is one binary mask but it is scored for ${classCount} classes; accepted: class-index labels, or a mask per class`);
  return { truth: truth.map, target: 1 };
}

// Predicted labels as hard maps: one per scored class when the item names them (a dataset's
// manifest), else one per class the labels hold (background 0 and the ignore value excluded).
function mapsFromLabels(labels: Map2D<Uint8Array>, ignore: number, ids: ReadonlyMap<string, number>, scored?: readonly string[]): Map<string, Map2D<Float32Array>> {
  const names = new Map([...ids].map(([name, id]) => [id, name]));
  const classes = scored ? scored.map((key) => ids.get(key) ?? Number(key)) : [...new Set(labels.data)];
  const maps = new Map<string, Map2D<Float32Array>>();
  for (const id of classes.sort((a, b) => a - b)) {
    if (!scored && (id === 0 || id === ignore)) continue;
    maps.set(names.get(id) ?? String(id), { data: Float32Array.from(labels.data, (v) => (v === id ? 1 : 0)), width: labels.width, height: labels.height });
  }
  return maps;
}

function sizedLabels(labels: Map2D<Uint8Array>, truth: Map2D<Uint8Array>, id: string): Uint8Array {
  if (labels.width !== truth.width || labels.height !== truth.height)
    throw new InvalidArgumentError(`item "${id}": the predicted labels are ${labels.width}×${labels.height} but the ground truth is ${truth.width}×${truth.height}; accepted: labels of the ground truth's size`);
  return labels.data;
}

async function itemSource(where: string, source: readonly EvaluationItem[] | EvaluationFolders): Promise<ItemSource> {
  if (Array.isArray(source)) {
    const items = source.map((item, i) => parse(where, itemSchema, item, `items[${i}]`));
    const ids = items.map((item, i) => item.id ?? String(i));
    if (new Set(ids).size !== ids.length) throw new InvalidArgumentError(`${where}: item ids repeat; accepted: unique ids`);
    return {
      ids,
      async load(id) {
        const item = items[ids.indexOf(id)];
        const truth: LoadedItem["truth"] = isPlane(item.truth, Uint8Array)
          ? { kind: "labels", map: item.truth as Map2D<Uint8Array> }
          : new Map(Object.entries(item.truth as Record<string, Map2D<Uint8Array>>).map(([key, map]): [string, Truth] => [key, { kind: "mask", map }]));
        return { id, maps: new Map(Object.entries(item.maps ?? {})), labels: item.labels, truth };
      },
    };
  }
  const folders = parse(
    where,
    z.strictObject({ predictions: z.string().min(1), truth: z.string().min(1), labels: z.string().min(1).optional() }, { error: "{ predictions, truth, labels? } folders" }),
    source,
    "source",
  );
  const dataset = await isDatasetFolder(folders.predictions);
  if (folders.labels !== undefined && !dataset) throw invalidOption(where, "source.labels", folders.labels, `only with a dataset folder (${folders.predictions} has no dataset.json)`);
  const predictions = dataset ? await datasetPredictions(folders.predictions, folders.labels) : await folderPredictions(folders.predictions);
  if (predictions.ids.length === 0)
    throw new NotFoundError(
      `${where}: no predictions in ${folders.predictions}; accepted: <id>/<class>.map.npy, <id>/<class>.map.png or <id>.png files, or a dataset folder with finished items`,
    );
  return {
    ids: predictions.ids,
    async load(id) {
      const found = await predictions.load(id);
      return { id, ...found, truth: await folderTruth(folders.truth, id, found.scored ?? [...found.maps.keys()]) };
    },
  };
}
