// The binary protocol (OVAM's evaluation notebooks, the thesis's threshold sweep): each (item,
// class) pair is a map scored against "pixels of that class" over thresholds τ_k = float32(k/K);
// intersections and unions are pooled per class over items. Each pixel's normalised value is
// binned once into the number of thresholds it passes, so a sweep of K + 1 thresholds costs one
// pass over the pixels plus O(K) per pair.
import { argmax, percentile, trapezoid } from "./stats";
import { normalization, type Normalization, type Normalize } from "./prepare";

export type Compare = "gt" | "ge";

export interface SweepSettings {
  normalize: Normalize;
  /** "gt": predicted where n > τ; "ge": n ≥ τ. */
  compare: Compare;
  /** K: thresholds k/K for k = 0..K. */
  steps: number;
  /** Ground-truth value of pixels left out. */
  ignore: number;
}

export interface Summary {
  /** Largest mIoU (or IoU) over the thresholds; null when none is defined. */
  max: number | null;
  /** The smallest threshold reaching it. */
  argmax_tau: number | null;
  /** Area under the curve against τ (trapezoids). */
  auc: number;
}

export interface BinaryResult {
  thresholds: number[];
  /** Pooled intersections and unions per class label and threshold. */
  I: Record<string, number[]>;
  U: Record<string, number[]>;
  /** I / U; null where U = 0. */
  iou: Record<string, (number | null)[]>;
  /** Mean of the defined per-class IoUs at each threshold. */
  miou: (number | null)[];
  /** ΣI / ΣU over classes. */
  overall: (number | null)[];
  summary: Summary;
  per_class: Record<string, Summary>;
  /** p5 / p95 (NumPy linear) of the per-pair IoUs of each class, pairs with an empty union left out. */
  percentiles: Record<string, { p5: (number | null)[]; p95: (number | null)[] }>;
  /** Scored (item, class) pairs per class. */
  pairs: Record<string, number>;
}

/** τ_k = float32(k / K), k = 0..K. */
export function thresholds(steps: number): Float32Array {
  return Float32Array.from({ length: steps + 1 }, (_, k) => k / steps);
}

const bits = new Float32Array(1);
const word = new Uint32Array(bits.buffer);
/** The largest float32 below `x` (x a finite float32 ≥ 0). */
function float32Below(x: number): number {
  bits[0] = x;
  word[0] = x === 0 ? 0x80000001 : word[0] - 1;
  return bits[0];
}

// float32 values as integers in the same order (sign-magnitude to two's complement).
function orderedKey(x: number): number {
  bits[0] = x;
  return word[0] & 0x80000000 ? -(word[0] & 0x7fffffff) : word[0];
}
function fromKey(key: number): number {
  word[0] = key < 0 ? (-key | 0x80000000) >>> 0 : key;
  return bits[0];
}

/**
 * The cuts in raw map values: n(v) = float32(float32(v − offset) / scale) never decreases with v,
 * so n(v) > cut ⇔ v > R where R is the largest float32 with n(R) ≤ cut (−Infinity when there is
 * none in the map's range). Found by bisection over the float32 values between min and max, so
 * the per-pixel pass compares raw values and never normalises.
 */
function rawCuts(norm: Normalization, cuts: Float32Array): Float64Array {
  const { offset, scale, min, max } = norm;
  const n = (v: number) => (scale === 0 ? 0 : Math.fround(Math.fround(v - offset) / scale));
  return Float64Array.from(cuts, (cut) => {
    if (n(min) > cut) return -Infinity;
    let lo = orderedKey(min); // n(lo) ≤ cut
    let hi = orderedKey(max) + 1; // beyond the range: treated as n(hi) > cut
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      if (n(fromKey(mid)) <= cut) lo = mid;
      else hi = mid;
    }
    return fromKey(lo);
  });
}

interface ClassSums {
  intersection: Float64Array;
  union: Float64Array;
  /** Per pair, its IoU at each threshold (NaN where its union is empty). */
  pairs: Float64Array[];
}

export class BinarySweep {
  readonly settings: SweepSettings;
  readonly thresholds: Float32Array;
  readonly #classes = new Map<string, ClassSums>();
  // A pixel is predicted at τ_k iff n > cuts[k]: τ_k itself for "gt", and for "ge" the float32
  // just below τ_k (for float32 n, n ≥ τ ⇔ n > the float below τ), so one loop serves both.
  readonly #cuts: Float32Array;

  constructor(settings: SweepSettings) {
    this.settings = settings;
    this.thresholds = thresholds(settings.steps);
    this.#cuts = settings.compare === "gt" ? this.thresholds : this.thresholds.map(float32Below);
  }

  /**
   * Scores `map` (raw values, the truth's size) against the pixels of `truth` equal to `target`,
   * pooled under class `key`; returns the pair's IoU at each threshold (NaN where its union is
   * empty). `what` names the pair in errors.
   */
  add(truth: Uint8Array, target: number, map: Float32Array, key: string, what: string): Float64Array {
    const K = this.settings.steps;
    const passed = this.#histograms(truth, target, map, what);
    const { intersection, union, pairs } = this.#sums(key);
    const [targetCount, predictedCount] = passed;
    let targets = 0;
    for (let b = 0; b <= K + 1; b++) targets += targetCount[b];
    const iou = new Float64Array(K + 1);
    // Pixels in bin b pass thresholds 0..b−1: at τ_k the predicted pixels are those of bins > k.
    let i = 0;
    let p = 0;
    for (let k = K; k >= 0; k--) {
      i += targetCount[k + 1];
      p += predictedCount[k + 1];
      const u = targets + p - i;
      intersection[k] += i;
      union[k] += u;
      iou[k] = u > 0 ? i / u : NaN;
    }
    pairs.push(iou);
    return iou;
  }

  #sums(key: string): ClassSums {
    let sums = this.#classes.get(key);
    if (!sums) {
      const n = this.settings.steps + 1;
      sums = { intersection: new Float64Array(n), union: new Float64Array(n), pairs: [] };
      this.#classes.set(key, sums);
    }
    return sums;
  }

  // Per bin b (the number of thresholds a pixel passes, 0..K+1): target pixels and all scored pixels.
  #histograms(truth: Uint8Array, target: number, map: Float32Array, what: string): [Int32Array, Int32Array] {
    const { steps: K, ignore } = this.settings;
    const targets = new Int32Array(K + 2);
    const predicted = new Int32Array(K + 2);
    const norm = normalization(map, this.settings.normalize, what);
    const raw = rawCuts(norm, this.#cuts);
    // A first guess of the bin from the normalised value in double, corrected against the exact cuts.
    const guess = norm.scale === 0 ? 0 : K / norm.scale;
    const { offset } = norm;
    for (let i = 0; i < map.length; i++) {
      const g = truth[i];
      if (g === ignore) continue;
      const v = map[i];
      let b = ((v - offset) * guess) | 0;
      if (b < 0) b = 0;
      else if (b > K) b = K;
      while (b <= K && raw[b] < v) b++;
      while (b > 0 && raw[b - 1] >= v) b--;
      predicted[b]++;
      targets[b] += g === target ? 1 : 0;
    }
    return [targets, predicted];
  }

  /** Class keys scored so far, in the order first scored. */
  get classes(): string[] {
    return [...this.#classes.keys()];
  }

  /** The pooled curves and summaries; classes in `order` (default: as first scored). */
  result(order: readonly string[] = this.classes): BinaryResult {
    const K = this.settings.steps;
    const taus = [...this.thresholds];
    const result: BinaryResult = { thresholds: taus, I: {}, U: {}, iou: {}, miou: [], overall: [], summary: summarize([], taus), per_class: {}, percentiles: {}, pairs: {} };
    const names = order.filter((name) => this.#classes.has(name));
    for (const name of names) {
      const { intersection, union, pairs } = this.#classes.get(name) as ClassSums;
      result.I[name] = [...intersection];
      result.U[name] = [...union];
      result.iou[name] = taus.map((_, k) => (union[k] > 0 ? intersection[k] / union[k] : null));
      result.per_class[name] = summarize(result.iou[name], taus);
      const p5: (number | null)[] = [];
      const p95: (number | null)[] = [];
      for (let k = 0; k <= K; k++) {
        const defined = Float64Array.from(pairs.map((iou) => iou[k]).filter((v) => !Number.isNaN(v)));
        p5.push(defined.length ? percentile(defined, 5) : null);
        p95.push(defined.length ? percentile(defined, 95) : null);
      }
      result.percentiles[name] = { p5, p95 };
      result.pairs[name] = pairs.length;
    }
    for (let k = 0; k <= K; k++) {
      const defined = names.map((name) => result.iou[name][k]).filter((v): v is number => v !== null);
      result.miou.push(defined.length ? defined.reduce((a, b) => a + b, 0) / defined.length : null);
      let i = 0;
      let u = 0;
      for (const name of names) {
        i += result.I[name][k];
        u += result.U[name][k];
      }
      result.overall.push(u > 0 ? i / u : null);
    }
    result.summary = summarize(result.miou, taus);
    return result;
  }
}

function summarize(curve: readonly (number | null)[], taus: readonly number[]): Summary {
  const best = argmax(curve);
  return { max: best?.max ?? null, argmax_tau: best ? taus[best.index] : null, auc: trapezoid(curve, taus) };
}
