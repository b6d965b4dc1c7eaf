// Maps as the evaluation protocols see them: resized to the ground truth (bilinear, as
// torch.nn.functional.interpolate with align_corners=False) and normalised to [0, 1] in float32
// arithmetic, so that thresholds cut the same pixels as the reference implementations.
import { InvalidArgumentError } from "../errors";
import type { Map2D } from "../options";

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

// Source index and weights of each output coordinate (ATen's compute_indices_weights_linear).
function axis(input: number, output: number): { i0: Int32Array; i1: Int32Array; w0: Float32Array; w1: Float32Array } {
  const scale = Math.fround(input / output);
  const i0 = new Int32Array(output);
  const i1 = new Int32Array(output);
  const w0 = new Float32Array(output);
  const w1 = new Float32Array(output);
  for (let o = 0; o < output; o++) {
    const source = Math.max(Math.fround(scale * (o + 0.5) - 0.5), 0); // double inside, as ATen's int64 index promotes it
    const index = Math.floor(source);
    const lambda = Math.fround(source - index);
    i0[o] = index;
    i1[o] = index < input - 1 ? index + 1 : index;
    w1[o] = lambda;
    w0[o] = Math.fround(1 - lambda);
  }
  return { i0, i1, w0, w1 };
}

/**
 * Bilinear resize with align_corners=False (half-pixel centres), float32 weights as ATen computes
 * them; the weighted sum rounded once to float32 equals torch 1.13's CPU output bit for bit.
 */
export function resizeBilinear(map: Map2D<Float32Array>, width: number, height: number): Map2D<Float32Array> {
  if (map.width === width && map.height === height) return map;
  const xs = axis(map.width, width);
  const ys = axis(map.height, height);
  const out = new Float32Array(width * height);
  const src = map.data;
  for (let y = 0; y < height; y++) {
    const r0 = ys.i0[y] * map.width;
    const r1 = ys.i1[y] * map.width;
    const h0 = ys.w0[y];
    const h1 = ys.w1[y];
    for (let x = 0; x < width; x++) {
      const a = xs.i0[x];
      const b = xs.i1[x];
      const top = src[r0 + a] * xs.w0[x] + src[r0 + b] * xs.w1[x];
      const bottom = src[r1 + a] * xs.w0[x] + src[r1 + b] * xs.w1[x];
      out[y * width + x] = top * h0 + bottom * h1;
    }
  }
  return { data: out, width, height };
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
