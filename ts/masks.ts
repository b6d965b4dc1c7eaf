// Attribution maps → semantic label maps, shared by `ovam dataset`, `ovam masks` and the studio.
// The settings name each anchor's conventions; the per-pixel work (upsampling, normalising,
// thresholds, argmax, components) runs in the native core (native/core/postprocess/label_maps).
// With `crf`, OVAM's dense CRF over the image and the class probabilities labels the pixels
// instead of the thresholds (native/core/postprocess/dense_crf).
import { z } from "zod";

import { denseCRF } from "./crf";
import { awaitNative } from "./errors";
import { normalize } from "./eval/prepare";
import { native } from "./native";
import { denseCRFSchema, finite, integer, invalidOption, oneOf, options, parse, type Map2D, type Tensor } from "./options";
import type { RGBInput } from "./photo";
import { resizeBicubic, resizeBilinear } from "./resize";

export type MaskPreset = "daam" | "ovam" | "ovam-dataset" | "dataset-diffusion" | "thesis";

/** How maps become labels, every knob filled in. */
export interface MaskSettings {
  /** The preset the knobs started from. */
  preset: MaskPreset;
  /** Upsampling from the attention grid to the image: "bilinear" or "bicubic" (clamped to [0, 1]). */
  interpolation: "bilinear" | "bicubic";
  /** Per class map, at the attention grid: "max" (m / max m) or "minmax" ((m − min) / (max − min)). */
  normalize: "max" | "minmax";
  /** A pixel belongs to a class when its score is "gt" (>) or "ge" (≥) the threshold. */
  compare: "gt" | "ge";
  /** Thresholds of classes attributed by text and by optimised tokens (a class's own `threshold` wins). */
  threshold: { text: number; token: number };
  /** Pixels whose highest score lies in [lo, hi) are labelled 255 (uncertain), or null. */
  uncertain: [number, number] | null;
  /** Class components smaller than this become background (0 keeps all). */
  minComponentArea: number;
  /** How a component is measured: "bbox" (its bounding box, as DiffuMask) or "pixels". */
  componentArea: "bbox" | "pixels";
  /**
   * OVAM's dense CRF (denseCRF()) instead of thresholds, or null. Its probabilities: each class's
   * score (normalised, upsampled as above) and the background's 1 − the highest class score, as
   * OVAM's [1 − s, s] for one class. Its MAP labels are final: no uncertain band, no component area.
   */
  crf: CRFSettings | null;
}

/** The dense CRF's parameters (see denseCRF()). */
export interface CRFSettings {
  w1: number;
  alpha: number;
  beta: number;
  w2: number;
  gamma: number;
  iterations: number;
}

type Knobs = Omit<MaskSettings, "preset">;
const base: Knobs = {
  interpolation: "bilinear",
  normalize: "max",
  compare: "gt",
  threshold: { text: 0.4, token: 0.75 },
  uncertain: null,
  minComponentArea: 0,
  componentArea: "bbox",
  crf: null,
};

/**
 * Each anchor's conventions (README, "Make a dataset", explains them):
 * - daam: DAAM (Tang et al. 2023): bicubic upsampling, min-max normalisation, > 0.4.
 * - ovam: OVAM's evaluation (Marcos-Manchón et al. 2024): bilinear, m / max m, > 0.4 for words and
 *   > 0.75 for optimised tokens. The default.
 * - ovam-dataset: OVAM's synthetic-dataset script: m / max m, bicubic clamped to [0, 1], > 0.75.
 * - dataset-diffusion: Dataset Diffusion (Nguyen et al. 2023): ≥ 0.6 labels, a highest score in
 *   [0.5, 0.6) is uncertain (255).
 * - thesis: the urban-scenes thesis: m / max m, bicubic, DAAM's > 0.4.
 */
export const MASK_PRESETS: Readonly<Record<MaskPreset, Knobs>> = {
  daam: { ...base, interpolation: "bicubic", normalize: "minmax", threshold: { text: 0.4, token: 0.4 } },
  ovam: base,
  "ovam-dataset": { ...base, interpolation: "bicubic", threshold: { text: 0.75, token: 0.75 } },
  "dataset-diffusion": { ...base, compare: "ge", threshold: { text: 0.6, token: 0.6 }, uncertain: [0.5, 0.6] },
  thesis: { ...base, interpolation: "bicubic", threshold: { text: 0.4, token: 0.4 } },
};

const crfSchema = denseCRFSchema.omit({ threads: true });
const CRF_KNOBS = ["w1", "alpha", "beta", "w2", "gamma", "iterations"] as const;
const unit = () => finite("a number in [0, 1]", (v) => v >= 0 && v <= 1);
const thresholdAccepted = "a number in [0, 1] or { text, token } (numbers in [0, 1])";

/** The masks settings as a spec or a caller writes them: a preset and any knobs that differ from it. */
export const maskSettingsSchema = options({
  preset: oneOf(["daam", "ovam", "ovam-dataset", "dataset-diffusion", "thesis"]).optional(),
  interpolation: oneOf(["bilinear", "bicubic"]).optional(),
  normalize: oneOf(["max", "minmax"]).optional(),
  compare: oneOf(["gt", "ge"]).optional(),
  threshold: z
    .union([unit(), z.strictObject({ text: unit().optional(), token: unit().optional() }, { error: thresholdAccepted })], { error: thresholdAccepted })
    .optional(),
  uncertain: z
    .union([
      z.null(),
      z.tuple([unit(), unit()], { error: "[lo, hi] with 0 ≤ lo < hi ≤ 1, or null" }).refine(([lo, hi]) => lo < hi, { error: "[lo, hi] with lo < hi" }),
    ], { error: "[lo, hi] with 0 ≤ lo < hi ≤ 1, or null" })
    .optional(),
  minComponentArea: integer(0, 1 << 26, "an integer ≥ 0 (pixels)").optional(),
  componentArea: oneOf(["bbox", "pixels"]).optional(),
  crf: z
    .union([z.boolean(), crfSchema], { error: `true, false or { ${CRF_KNOBS.join(", ")} } (OVAM's defaults 10, 80, 13, 3, 3, 5)` })
    .optional(),
});
export type MaskSettingsInput = z.input<typeof maskSettingsSchema>;

/** Settings from a preset (default "ovam") and the knobs given. */
export function resolveMaskSettings(input: MaskSettingsInput | undefined, where = "masks", name = "masks"): MaskSettings {
  const given = parse(where, maskSettingsSchema, input ?? {}, name);
  const preset = given.preset ?? "ovam";
  const from = MASK_PRESETS[preset];
  const threshold =
    given.threshold === undefined
      ? from.threshold
      : typeof given.threshold === "number"
        ? { text: given.threshold, token: given.threshold }
        : { text: given.threshold.text ?? from.threshold.text, token: given.threshold.token ?? from.threshold.token };
  const crf = given.crf === true ? crfSchema.parse({}) : given.crf || null;
  // The CRF's labels are final: a band or a component area asked for beside it is a mistake; a preset's is dropped.
  if (crf && given.uncertain) throw invalidOption(where, `${name}.uncertain`, given.uncertain, "null with crf (the CRF's labels have no uncertain band)");
  if (crf && given.minComponentArea) throw invalidOption(where, `${name}.minComponentArea`, given.minComponentArea, "0 with crf (the CRF's labels are final)");
  return {
    preset,
    interpolation: given.interpolation ?? from.interpolation,
    normalize: given.normalize ?? from.normalize,
    compare: given.compare ?? from.compare,
    threshold,
    uncertain: crf ? null : given.uncertain === undefined ? from.uncertain : given.uncertain,
    minComponentArea: crf ? 0 : (given.minComponentArea ?? from.minComponentArea),
    componentArea: given.componentArea ?? from.componentArea,
    crf,
  };
}

/** One class of a label map: the value its pixels get and the threshold its scores must pass. */
export interface LabelClass {
  id: number;
  threshold: number;
}

export interface LabelMapRequest {
  /** The image's size: maps are upsampled to it. */
  width: number;
  height: number;
  /** One per map, in the maps' order; ids 0–254, distinct, never the background. */
  classes: readonly LabelClass[];
  /** The value of pixels no class passes: 0 (VOC) or 255 (Cityscapes' ignore). */
  background: number;
  settings: MaskSettings;
  /** The image (RGB bytes of width × height): needed by settings.crf. */
  image?: RGBInput;
}

export interface LabelMap {
  labels: Map2D<Uint8Array>;
  /** Pixels per label value, 256 entries. */
  histogram: Int32Array;
}

/**
 * A label map from per-class maps [classes, h, w] at the attention grid: normalised, upsampled to
 * the image, thresholded; argmax over the classes that pass (ties to the lower id); pixels no
 * class passes are background; the uncertain band is 255; small components are dropped.
 */
export async function labelMaps(maps: Tensor, request: LabelMapRequest): Promise<LabelMap> {
  const where = "labelMaps()";
  const { classes, background, settings, width, height } = request;
  const [count, h, w] = maps.shape;
  if (maps.shape.length !== 3 || count !== classes.length || maps.data.length !== count * h * w)
    throw invalidOption(where, "maps", `a tensor of shape [${maps.shape}]`, `[classes (${classes.length}), h, w]`);
  if (!Number.isInteger(background) || background < 0 || background > 255) throw invalidOption(where, "background", background, "an integer from 0 to 255");
  const ids = new Set<number>();
  for (const [i, c] of classes.entries()) {
    if (!Number.isInteger(c.id) || c.id < 0 || c.id > 254 || c.id === background || ids.has(c.id))
      throw invalidOption(where, `classes[${i}].id`, c.id, "distinct integers from 0 to 254, other than the background");
    ids.add(c.id);
  }
  // The core takes classes in increasing id order (its argmax keeps the earlier class on ties).
  const order = classes.map((_, i) => i).sort((a, b) => classes[a].id - classes[b].id);
  const plane = h * w;
  const sorted = new Float32Array(maps.data.length);
  order.forEach((from, to) => sorted.set(maps.data.subarray(from * plane, (from + 1) * plane), to * plane));
  if (settings.crf) return crfLabelMap({ data: sorted, shape: [count, h, w] }, order.map((i) => classes[i].id), request, settings.crf);
  const result = await awaitNative(
    native.labelMaps(
      { data: sorted, shape: [count, h, w] },
      {
        width,
        height,
        ids: order.map((i) => classes[i].id),
        thresholds: order.map((i) => classes[i].threshold),
        background,
        interpolation: settings.interpolation,
        normalize: settings.normalize,
        compare: settings.compare,
        uncertain: settings.uncertain,
        minArea: settings.minComponentArea,
        area: settings.componentArea,
      },
    ),
  );
  return { labels: { data: result.labels.data, width, height }, histogram: result.histogram.data };
}

/**
 * The dense CRF's label map: label 0 is the background, label i the class of the i-th lowest id
 * (the CRF's ties go to the lower label, as the thresholds' argmax).
 */
async function crfLabelMap(maps: Tensor, ids: readonly number[], request: LabelMapRequest, crf: CRFSettings): Promise<LabelMap> {
  const { background, width, height, image } = request;
  if (!image) throw invalidOption("labelMaps()", "image", image, "the image ({ data: RGB bytes, width, height }) with settings.crf");
  const probabilities = crfProbabilities(maps, ids, request);
  const labels = (await denseCRF(image, { data: probabilities, shape: [ids.length + 1, height, width] }, crf)).data;
  const values = Uint8Array.from([background, ...ids]);
  const histogram = new Int32Array(256);
  for (let i = 0; i < labels.length; i++) {
    labels[i] = values[labels[i]];
    histogram[labels[i]]++;
  }
  return { labels: { data: labels, width, height }, histogram };
}

/**
 * @internal The CRF's probabilities [1 + classes, height, width]: per class its map normalised at
 * the attention grid and upsampled to the image (bicubic clamped to [0, 1]), first the background
 * 1 − the highest class score. Typed-array passes, a few per cent of the CRF they feed (bench).
 */
export function crfProbabilities(maps: Tensor, ids: readonly number[], request: Pick<LabelMapRequest, "width" | "height" | "settings">): Float32Array {
  const { settings, width, height } = request;
  const [count, h, w] = maps.shape;
  const size = width * height;
  const probabilities = new Float32Array((count + 1) * size);
  const highest = probabilities.subarray(0, size);
  const resize = settings.interpolation === "bicubic" ? resizeBicubic : resizeBilinear;
  for (let c = 0; c < count; c++) {
    const grid = normalize(maps.data.subarray(c * h * w, (c + 1) * h * w), settings.normalize, `labelMaps(): class ${ids[c]}`);
    const scores = resize({ data: grid, width: w, height: h }, width, height).data;
    const plane = probabilities.subarray((c + 1) * size, (c + 2) * size);
    for (let i = 0; i < size; i++) {
      const v = Math.min(Math.max(scores[i], 0), 1);
      plane[i] = v;
      if (v > highest[i]) highest[i] = v;
    }
  }
  for (let i = 0; i < size; i++) highest[i] = 1 - highest[i];
  return probabilities;
}
