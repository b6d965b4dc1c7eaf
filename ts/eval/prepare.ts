// Maps as the evaluation protocols see them: resized to the ground truth (bilinear, as
// torch.nn.functional.interpolate with align_corners=False: ts/resize.ts) and normalised to [0, 1] in float32
// arithmetic, so that thresholds cut the same pixels as the reference implementations.
import { InvalidArgumentError } from "../errors";
import type { Map2D } from "../options";
import { resizeBilinear } from "../resize";

export type Normalize = "max" | "minmax";

/**
 * The affine map v ↦ (v − offset) / scale that normalises `data`: "max" m / max(m) (0 where
 * max ≤ 0), "minmax" (m − min) / (max − min) (0 where max = min). `scale` 0 means all zeros.
 * NaN or ±Infinity values are an InvalidArgumentError naming `what`.
 */
export interface Normalization {
  offset: number;
  scale: number;
  /** The map's smallest and largest values. */
  min: number;
  max: number;
}

export function normalization(data: Float32Array, mode: Normalize, what: string): Normalization {
  let min = Infinity;
  let max = -Infinity;
  let finite = true;
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (v < min) min = v;
    if (v > max) max = v;
    if (v - v !== 0) finite = false; // NaN and ±Infinity
  }
  if (!finite) throw new InvalidArgumentError(`${what}: the map has NaN or infinite values; accepted: finite values`);
  if (mode === "max") return { offset: 0, scale: max > 0 ? max : 0, min, max };
  return { offset: min, scale: max > min ? Math.fround(max - min) : 0, min, max };
}

/** The normalised map as a new Float32Array (float32 arithmetic, as NumPy on float32 arrays). */
export function normalize(data: Float32Array, mode: Normalize, what: string): Float32Array {
  const { offset, scale } = normalization(data, mode, what);
  const out = new Float32Array(data.length);
  if (scale === 0) return out;
  for (let i = 0; i < data.length; i++) out[i] = Math.fround(data[i] - offset) / scale;
  return out;
}

/**
 * `map` at the ground truth's size: as it is, or resized bilinearly when it has the same aspect
 * ratio (attention maps at the latent size); another aspect ratio is an InvalidArgumentError.
 */
export function toTruthSize(map: Map2D<Float32Array>, width: number, height: number, what: string): Map2D<Float32Array> {
  if (map.width === width && map.height === height) return map;
  if (map.width * height !== map.height * width)
    throw new InvalidArgumentError(
      `${what}: the map is ${map.width}×${map.height} but the ground truth is ${width}×${height}; accepted: a map of the ground truth's size or its aspect ratio (resized bilinearly)`,
    );
  return resizeBilinear(map, width, height);
}
