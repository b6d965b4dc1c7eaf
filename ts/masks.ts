// Attribution maps → semantic label maps, shared by `ovam dataset`, `ovam masks` and the studio.
// The settings name each anchor's conventions; the per-pixel work (upsampling, normalising,
// thresholds, argmax, components) runs in the native core (native/core/postprocess/label_maps).
import { z } from "zod";

import { awaitNative } from "./errors";
import { native } from "./native";
import { finite, integer, invalidOption, oneOf, options, parse, type Map2D, type Tensor } from "./options";

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
  return {
    preset,
    interpolation: given.interpolation ?? from.interpolation,
    normalize: given.normalize ?? from.normalize,
    compare: given.compare ?? from.compare,
    threshold,
    uncertain: given.uncertain === undefined ? from.uncertain : given.uncertain,
    minComponentArea: given.minComponentArea ?? from.minComponentArea,
    componentArea: given.componentArea ?? from.componentArea,
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
