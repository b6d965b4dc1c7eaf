// curve.png: per-class IoU against the threshold with the p5–p95 band of the per-item IoUs, and
// the mIoU in black, as the thesis's figures draw them; rasterised here into RGB pixels.
import { drawText, textWidth, type RGBImage } from "../render";
import type { BinaryResult } from "./binary";

type RGB = readonly [number, number, number];
// matplotlib's tab10, the thesis's plotting defaults.
const COLOURS: readonly RGB[] = [
  [31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
  [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207],
];
const BLACK: RGB = [0, 0, 0];
const GRID: RGB = [225, 225, 225];
const WIDTH = 800;
const HEIGHT = 500;
const PLOT = { left: 56, top: 28, right: 600, bottom: 452 };

function blend(canvas: RGBImage, x: number, y: number, colour: RGB, alpha: number): void {
  if (x < 0 || y < 0 || x >= canvas.width || y >= canvas.height) return;
  const at = (y * canvas.width + x) * 3;
  for (let c = 0; c < 3; c++) canvas.pixels[at + c] = Math.round(canvas.pixels[at + c] * (1 - alpha) + colour[c] * alpha);
}

const px = (tau: number) => PLOT.left + tau * (PLOT.right - PLOT.left);
const py = (iou: number) => PLOT.bottom - iou * (PLOT.bottom - PLOT.top);

// A curve's value at τ, linear between sweep points; null where either neighbour is undefined.
function at(curve: readonly (number | null)[], taus: readonly number[], tau: number): number | null {
  let i = 1;
  while (i < taus.length - 1 && taus[i] < tau) i++;
  const [a, b] = [curve[i - 1], curve[i]];
  if (a === null || b === null) return null;
  const t = taus[i] === taus[i - 1] ? 0 : (tau - taus[i - 1]) / (taus[i] - taus[i - 1]);
  return a + (b - a) * Math.min(Math.max(t, 0), 1);
}

// A polyline through every pixel column, `thickness` pixels tall, joined vertically between columns.
function line(canvas: RGBImage, curve: readonly (number | null)[], taus: readonly number[], colour: RGB, thickness: number): void {
  let previous: number | null = null;
  for (let x = PLOT.left; x <= PLOT.right; x++) {
    const v = at(curve, taus, (x - PLOT.left) / (PLOT.right - PLOT.left));
    if (v === null) {
      previous = null;
      continue;
    }
    const y = Math.round(py(v));
    const [from, to] = previous === null ? [y, y] : [Math.min(previous, y), Math.max(previous, y)];
    for (let yy = from; yy <= to; yy++) for (let d = 0; d < thickness; d++) blend(canvas, x, yy + d - (thickness >> 1), colour, 1);
    previous = y;
  }
}

function band(canvas: RGBImage, low: readonly (number | null)[], high: readonly (number | null)[], taus: readonly number[], colour: RGB): void {
  for (let x = PLOT.left; x <= PLOT.right; x++) {
    const tau = (x - PLOT.left) / (PLOT.right - PLOT.left);
    const [a, b] = [at(low, taus, tau), at(high, taus, tau)];
    if (a === null || b === null) continue;
    for (let y = Math.round(py(b)); y <= Math.round(py(a)); y++) blend(canvas, x, y, colour, 0.18);
  }
}

/** The figure as RGB pixels (800×500). */
export function curvePlot(result: BinaryResult, title: string): RGBImage {
  const canvas: RGBImage = { width: WIDTH, height: HEIGHT, pixels: new Uint8Array(WIDTH * HEIGHT * 3).fill(255) };
  const taus = result.thresholds;
  for (let i = 0; i <= 10; i++) {
    const [x, y] = [Math.round(px(i / 10)), Math.round(py(i / 10))];
    for (let yy = PLOT.top; yy <= PLOT.bottom; yy++) blend(canvas, x, yy, GRID, 1);
    for (let xx = PLOT.left; xx <= PLOT.right; xx++) blend(canvas, xx, y, GRID, 1);
    const label = (i / 10).toFixed(1);
    drawText(canvas, Math.round(x - textWidth(label, 1) / 2), PLOT.bottom + 6, label, 1, BLACK);
    drawText(canvas, PLOT.left - textWidth(label, 1) - 6, y - 3, label, 1, BLACK);
  }
  for (let x = PLOT.left; x <= PLOT.right; x++) blend(canvas, x, PLOT.bottom, BLACK, 1);
  for (let y = PLOT.top; y <= PLOT.bottom; y++) blend(canvas, PLOT.left, y, BLACK, 1);
  drawText(canvas, Math.round((PLOT.left + PLOT.right - textWidth("threshold", 2)) / 2), PLOT.bottom + 22, "threshold", 2, BLACK);
  drawText(canvas, PLOT.left, 8, title, 2, BLACK);
  const classes = Object.keys(result.iou);
  classes.forEach((name, i) => band(canvas, result.percentiles[name].p5, result.percentiles[name].p95, taus, COLOURS[i % COLOURS.length]));
  classes.forEach((name, i) => line(canvas, result.iou[name], taus, COLOURS[i % COLOURS.length], 2));
  line(canvas, result.miou, taus, BLACK, 3);
  // Legend: the mIoU, then each class with its colour.
  const entries: [string, RGB][] = [["mIoU", BLACK], ...classes.map((name, i): [string, RGB] => [name, COLOURS[i % COLOURS.length]])];
  entries.forEach(([name, colour], i) => {
    const y = PLOT.top + 4 + i * 18;
    if (y > HEIGHT - 20) return;
    for (let yy = y; yy < y + 10; yy++) for (let xx = PLOT.right + 16; xx < PLOT.right + 30; xx++) blend(canvas, xx, yy, colour, 1);
    drawText(canvas, PLOT.right + 36, y + 1, name.slice(0, 26), 1, BLACK);
  });
  drawText(canvas, PLOT.right + 16, HEIGHT - 30, "bands: p5-p95 of", 1, BLACK);
  drawText(canvas, PLOT.right + 16, HEIGHT - 18, "per-item IoU", 1, BLACK);
  return canvas;
}
