// The tests' own reference of how maps become scores (independent of ts/): PyTorch's bilinear
// and bicubic upsampling (align_corners=False) written out in JS, and OVAM's / DAAM's normalisation.
// PyTorch upsampling with align_corners=False: source coordinate (d + 0.5) · in/out − 0.5.
export function upsample(plane, h, w, H, W, mode) {
  const out = new Float32Array(H * W);
  const at = (y, x) => plane[Math.min(h - 1, Math.max(0, y)) * w + Math.min(w - 1, Math.max(0, x))];
  const cubic = (x) => {
    const A = -0.75;
    const a = Math.abs(x);
    return a <= 1 ? (A + 2) * a ** 3 - (A + 3) * a ** 2 + 1 : a < 2 ? A * a ** 3 - 5 * A * a ** 2 + 8 * A * a - 4 * A : 0;
  };
  for (let Y = 0; Y < H; Y++)
    for (let X = 0; X < W; X++) {
      let sy = (Y + 0.5) * (h / H) - 0.5;
      let sx = (X + 0.5) * (w / W) - 0.5;
      if (mode === "bilinear") {
        sy = Math.max(0, sy);
        sx = Math.max(0, sx);
        const y0 = Math.floor(sy), x0 = Math.floor(sx);
        const ly = sy - y0, lx = sx - x0;
        out[Y * W + X] = (1 - ly) * ((1 - lx) * at(y0, x0) + lx * at(y0, x0 + 1)) + ly * ((1 - lx) * at(y0 + 1, x0) + lx * at(y0 + 1, x0 + 1));
      } else {
        const y0 = Math.floor(sy), x0 = Math.floor(sx);
        const ty = sy - y0, tx = sx - x0;
        let v = 0;
        for (let i = -1; i <= 2; i++) for (let j = -1; j <= 2; j++) v += cubic(i - ty) * cubic(j - tx) * at(y0 + i, x0 + j);
        out[Y * W + X] = v;
      }
    }
  return out;
}

export function normalise(plane, mode) {
  let max = -Infinity, min = Infinity;
  for (const v of plane) (max = Math.max(max, v)), (min = Math.min(min, v));
  return plane.map((v) => (mode === "minmax" ? (max > min ? (v - min) / (max - min) : 0) : max > 0 ? v / max : 0));
}
