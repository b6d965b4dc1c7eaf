// What the canvas shows: the image, scaled up without smoothing, under the shown map (a heat map,
// or its thresholded mask) and the ground truth in its classes' colours. Re-thresholding redraws
// from the float map the page already holds, so sliders act at once.
import type { Plane } from "./api.js";

export interface Layer {
  label: string;
  map: Plane<Float32Array>;
  /** Min-max normalised copy, made once. */
  normalised: Float32Array;
  color: [number, number, number];
}

/** A layer of the image's size: maps of another size (a dataset's maps at the attention grid) are resized bilinearly, for display. */
export function layer(label: string, wire: Plane<Float32Array>, color: [number, number, number], width: number, height: number): Layer {
  const map = wire.width === width && wire.height === height ? wire : resize(wire, width, height);
  let min = Infinity;
  let max = -Infinity;
  for (const v of map.data) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const range = max - min;
  return { label, map, color, normalised: map.data.map((v) => (range > 0 ? (v - min) / range : 0)) };
}

// Half-pixel-centred bilinear resizing (as align_corners=False).
function resize(map: Plane<Float32Array>, width: number, height: number): Plane<Float32Array> {
  const out = new Float32Array(width * height);
  // Source index below, weight of the one above, index above (clamped at the borders).
  const sample = (v: number, scale: number, size: number) => {
    const at = Math.max((v + 0.5) * scale - 0.5, 0);
    const i = Math.min(Math.floor(at), size - 1);
    return [i, at - i, Math.min(i + 1, size - 1)] as const;
  };
  for (let y = 0; y < height; y++) {
    const [y0, fy, y1] = sample(y, map.height / height, map.height);
    for (let x = 0; x < width; x++) {
      const [x0, fx, x1] = sample(x, map.width / width, map.width);
      const top = map.data[y0 * map.width + x0] * (1 - fx) + map.data[y0 * map.width + x1] * fx;
      const bottom = map.data[y1 * map.width + x0] * (1 - fx) + map.data[y1 * map.width + x1] * fx;
      out[y * width + x] = top * (1 - fy) + bottom * fy;
    }
  }
  return { width, height, data: out };
}

// Viridis at five stops, interpolated.
const VIRIDIS = [
  [68, 1, 84],
  [59, 82, 139],
  [33, 145, 140],
  [94, 201, 98],
  [253, 231, 37],
];
function viridis(t: number): [number, number, number] {
  const x = Math.min(Math.max(t, 0), 1) * (VIRIDIS.length - 1);
  const i = Math.min(Math.floor(x), VIRIDIS.length - 2);
  const f = x - i;
  return [0, 1, 2].map((c) => VIRIDIS[i][c] + f * (VIRIDIS[i + 1][c] - VIRIDIS[i][c])) as [number, number, number];
}

export interface View {
  image: CanvasImageSource;
  width: number;
  height: number;
  scale: number;
  layer?: Layer;
  asMask: boolean;
  threshold: number;
  opacity: number;
  /** A label map shown instead of a map layer (a dataset's labels). */
  labels?: Plane<Uint8Array>;
  truth?: Plane<Uint8Array>;
  colors: Map<number, [number, number, number]>;
  /** Polygon being drawn, in image pixels. */
  polygon: [number, number][];
}

/** Pixels of the shown map above the threshold (what "mask from map" copies). */
export function thresholded(l: Layer, threshold: number): Uint8Array {
  return Uint8Array.from(l.normalised, (v) => (v > threshold ? 1 : 0));
}

export function draw(canvas: HTMLCanvasElement, view: View): void {
  const { width, height, scale } = view;
  canvas.width = width * scale;
  canvas.height = height * scale;
  const ctx = canvas.getContext("2d") as CanvasRenderingContext2D;
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(view.image, 0, 0, canvas.width, canvas.height);
  const overlay = new ImageData(width, height);
  const px = overlay.data;
  const alpha = Math.round(view.opacity * 255);
  if (view.layer) {
    const { normalised, color } = view.layer;
    for (let i = 0; i < normalised.length; i++) {
      const v = normalised[i];
      if (view.asMask) {
        if (v <= view.threshold) continue;
        px.set([color[0], color[1], color[2], alpha], i * 4);
      } else {
        const [r, g, b] = viridis(v);
        px.set([r, g, b, Math.round(alpha * v)], i * 4);
      }
    }
  }
  for (const labels of [view.labels, view.truth])
    if (labels)
      for (let i = 0; i < labels.data.length; i++) {
        const c = view.colors.get(labels.data[i]);
        if (c) px.set([c[0], c[1], c[2], Math.max(alpha, 96)], i * 4);
      }
  const layerCanvas = new OffscreenCanvas(width, height);
  (layerCanvas.getContext("2d") as OffscreenCanvasRenderingContext2D).putImageData(overlay, 0, 0);
  ctx.drawImage(layerCanvas, 0, 0, canvas.width, canvas.height);
  if (view.polygon.length > 0) {
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = 2;
    ctx.beginPath();
    view.polygon.forEach(([x, y], i) => (i ? ctx.lineTo((x + 0.5) * scale, (y + 0.5) * scale) : ctx.moveTo((x + 0.5) * scale, (y + 0.5) * scale)));
    ctx.stroke();
  }
}

/** The loss per epoch as a line, with its first and last values. */
export function drawLosses(canvas: HTMLCanvasElement, losses: readonly number[], epochs: number): void {
  const ctx = canvas.getContext("2d") as CanvasRenderingContext2D;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (losses.length === 0) return;
  const max = Math.max(...losses);
  const min = Math.min(...losses);
  const x = (i: number) => 30 + (i / Math.max(epochs - 1, 1)) * (canvas.width - 40);
  const y = (v: number) => 10 + (max > min ? (max - v) / (max - min) : 0.5) * (canvas.height - 30);
  ctx.strokeStyle = "#0277bd";
  ctx.beginPath();
  losses.forEach((v, i) => (i ? ctx.lineTo(x(i), y(v)) : ctx.moveTo(x(i), y(v))));
  ctx.stroke();
  ctx.fillStyle = "#444";
  ctx.font = "11px sans-serif";
  ctx.fillText(`loss ${losses[0].toFixed(4)} → ${losses[losses.length - 1].toFixed(4)} (epoch ${losses.length}/${epochs})`, 30, canvas.height - 6);
}
