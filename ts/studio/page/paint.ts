// Editing a label plane: a round brush (paint a class, or erase to the background) and filled
// polygons, in image pixels.
import type { Plane } from "./api.js";

export function brush(plane: Plane<Uint8Array>, cx: number, cy: number, radius: number, value: number): void {
  const r = Math.max(radius, 0.5);
  for (let y = Math.max(0, Math.floor(cy - r)); y <= Math.min(plane.height - 1, Math.ceil(cy + r)); y++)
    for (let x = Math.max(0, Math.floor(cx - r)); x <= Math.min(plane.width - 1, Math.ceil(cx + r)); x++)
      if ((x - cx) ** 2 + (y - cy) ** 2 <= r * r) plane.data[y * plane.width + x] = value;
}

/** Brush dabs along a segment, so a fast stroke leaves no gaps. */
export function stroke(plane: Plane<Uint8Array>, from: [number, number], to: [number, number], radius: number, value: number): void {
  const steps = Math.max(1, Math.ceil(Math.hypot(to[0] - from[0], to[1] - from[1]) / Math.max(radius / 2, 0.5)));
  for (let i = 0; i <= steps; i++) brush(plane, from[0] + ((to[0] - from[0]) * i) / steps, from[1] + ((to[1] - from[1]) * i) / steps, radius, value);
}

/** Sets the pixels whose centres are inside the polygon (even-odd rule). */
export function fillPolygon(plane: Plane<Uint8Array>, points: readonly [number, number][], value: number): void {
  if (points.length < 3) return;
  for (let y = 0; y < plane.height; y++) {
    const py = y + 0.5;
    for (let x = 0; x < plane.width; x++) {
      const px = x + 0.5;
      let inside = false;
      for (let i = 0, j = points.length - 1; i < points.length; j = i++) {
        const [xi, yi] = [points[i][0] + 0.5, points[i][1] + 0.5];
        const [xj, yj] = [points[j][0] + 0.5, points[j][1] + 0.5];
        if (yi > py !== yj > py && px < ((xj - xi) * (py - yi)) / (yj - yi) + xi) inside = !inside;
      }
      if (inside) plane.data[y * plane.width + x] = value;
    }
  }
}
