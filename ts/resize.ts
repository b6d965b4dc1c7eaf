// Resizing maps as torch.nn.functional.interpolate does with align_corners=False (half-pixel
// centres): bilinear, bit for bit with ATen's CPU kernel, and bicubic (Keys' kernel, a = −0.75,
// edge samples repeated). The evaluation resizes maps to the ground truth with it, and CRF masks
// upsample class scores to the image with it (ts/masks.ts).
import type { Map2D } from "./options";

// Source index and weights of each output coordinate (ATen's compute_indices_weights_linear).
function linearAxis(input: number, output: number): { i0: Int32Array; i1: Int32Array; w0: Float32Array; w1: Float32Array } {
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
  const xs = linearAxis(map.width, width);
  const ys = linearAxis(map.height, height);
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

// ATen's cubic convolution weights of the four taps around a sample at fraction t.
function cubicWeights(t: number): [number, number, number, number] {
  const a = -0.75;
  const near = (x: number) => ((a + 2) * x - (a + 3)) * x * x + 1;
  const far = (x: number) => ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
  return [far(t + 1), near(t), near(1 - t), far(2 - t)];
}

// The four source indices (clamped to the edges) and weights of each output coordinate.
function cubicAxis(input: number, output: number): { index: Int32Array; weight: Float64Array } {
  const scale = input / output;
  const index = new Int32Array(output * 4);
  const weight = new Float64Array(output * 4);
  for (let o = 0; o < output; o++) {
    const source = scale * (o + 0.5) - 0.5; // no clamp at 0: the cubic kernel reaches past the edge
    const first = Math.floor(source);
    const w = cubicWeights(source - first);
    for (let k = 0; k < 4; k++) {
      index[o * 4 + k] = Math.min(Math.max(first - 1 + k, 0), input - 1);
      weight[o * 4 + k] = w[k];
    }
  }
  return { index, weight };
}

/** Bicubic resize with align_corners=False as torch's (its overshoot is the caller's to clamp). */
export function resizeBicubic(map: Map2D<Float32Array>, width: number, height: number): Map2D<Float32Array> {
  if (map.width === width && map.height === height) return map;
  const xs = cubicAxis(map.width, width);
  const ys = cubicAxis(map.height, height);
  const src = map.data;
  // Rows first (each source row resized to `width`), then columns: 8 taps per pixel instead of 16.
  const rows = new Float64Array(map.height * width);
  for (let y = 0; y < map.height; y++)
    for (let x = 0; x < width; x++) {
      let sum = 0;
      for (let k = 0; k < 4; k++) sum += src[y * map.width + xs.index[x * 4 + k]] * xs.weight[x * 4 + k];
      rows[y * width + x] = sum;
    }
  const out = new Float32Array(width * height);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      let sum = 0;
      for (let k = 0; k < 4; k++) sum += rows[ys.index[y * 4 + k] * width + x] * ys.weight[y * 4 + k];
      out[y * width + x] = sum;
    }
  return { data: out, width, height };
}
