// Small statistics with NumPy's exact definitions, so reports agree with Python tooling.

/** np.percentile(values, q) with the default "linear" method; NaN for no values. Sorts `values`. */
export function percentile(values: Float64Array, q: number): number {
  const n = values.length;
  if (n === 0) return NaN;
  values.sort();
  const position = (q / 100) * (n - 1);
  const below = Math.floor(position);
  const above = Math.min(below + 1, n - 1);
  const t = position - below;
  const a = values[below];
  const b = values[above];
  // NumPy's _lerp: from the nearer end, so that t = 1 gives b exactly.
  return t >= 0.5 ? b - (b - a) * (1 - t) : a + (b - a) * t;
}

/** np.trapezoid(y, x) over the points where y is defined (null points end a segment). */
export function trapezoid(y: readonly (number | null)[], x: ArrayLike<number>): number {
  let area = 0;
  for (let i = 1; i < y.length; i++) {
    const a = y[i - 1];
    const b = y[i];
    if (a !== null && b !== null) area += ((x[i] - x[i - 1]) * (a + b)) / 2;
  }
  return area;
}

/** The largest defined value and the first index reaching it; null when none is defined. */
export function argmax(values: readonly (number | null)[]): { max: number; index: number } | null {
  let best: { max: number; index: number } | null = null;
  values.forEach((v, index) => {
    if (v !== null && (best === null || v > best.max)) best = { max: v, index };
  });
  return best;
}
