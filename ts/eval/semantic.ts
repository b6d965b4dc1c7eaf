// The semantic protocol (mmsegmentation's): one label per pixel, the argmax over [background
// score, normalised class maps], scored by a confusion matrix pooled over items.
import { normalization, type Normalize } from "./prepare";

export interface SemanticSettings {
  normalize: Normalize;
  /** The constant score of the background (label 0), compared in float32. */
  backgroundScore: number;
  ignore: number;
}

export interface SemanticResult {
  background_score: number;
  /** Row and column labels of `confusion`: every label in the ground truth or the predictions. */
  labels: string[];
  /** confusion[t][p]: pixels of true label t predicted as p (pixels with the ignore value left out). */
  confusion: number[][];
  /** IoU of each label present in the ground truth (background included). */
  iou: Record<string, number>;
  miou: number | null;
  pixel_accuracy: number | null;
}

/**
 * The label map of one item: 0 (background) or the class whose normalised map scores highest;
 * ties go to the background, then to the smaller class id. `maps` are at the truth's size.
 */
export function semanticPrediction(maps: ReadonlyMap<number, Float32Array>, size: number, settings: SemanticSettings, what: (id: number) => string): Uint8Array {
  const labels = new Uint8Array(size);
  const best = new Float32Array(size).fill(Math.fround(settings.backgroundScore));
  for (const id of [...maps.keys()].sort((a, b) => a - b)) {
    const map = maps.get(id) as Float32Array;
    const { offset, scale } = normalization(map, settings.normalize, what(id));
    for (let i = 0; i < size; i++) {
      const n = scale === 0 ? 0 : Math.fround(Math.fround(map[i] - offset) / scale);
      if (n > best[i]) {
        best[i] = n;
        labels[i] = id;
      }
    }
  }
  return labels;
}

export class SemanticConfusion {
  readonly settings: SemanticSettings;
  // 256 × 256 counts indexed truth · 256 + prediction (labels are bytes).
  readonly #counts = new Float64Array(256 * 256);

  constructor(settings: SemanticSettings) {
    this.settings = settings;
  }

  add(truth: Uint8Array, prediction: Uint8Array): void {
    const { ignore } = this.settings;
    for (let i = 0; i < truth.length; i++) if (truth[i] !== ignore) this.#counts[truth[i] * 256 + prediction[i]]++;
  }

  result(label: (id: number) => string = String): SemanticResult {
    const counts = this.#counts;
    const rows = new Float64Array(256);
    const columns = new Float64Array(256);
    for (let t = 0; t < 256; t++)
      for (let p = 0; p < 256; p++) {
        rows[t] += counts[t * 256 + p];
        columns[p] += counts[t * 256 + p];
      }
    const ids = [...rows.keys()].filter((id) => rows[id] > 0 || columns[id] > 0);
    const confusion = ids.map((t) => ids.map((p) => counts[t * 256 + p]));
    const iou: Record<string, number> = {};
    let correct = 0;
    let total = 0;
    for (const id of ids) {
      const hit = counts[id * 256 + id];
      correct += hit;
      total += rows[id];
      if (rows[id] > 0) iou[label(id)] = hit / (rows[id] + columns[id] - hit);
    }
    const values = Object.values(iou);
    return {
      background_score: Math.fround(this.settings.backgroundScore),
      labels: ids.map(label),
      confusion,
      iou,
      miou: values.length ? values.reduce((a, b) => a + b, 0) / values.length : null,
      pixel_accuracy: total > 0 ? correct / total : null,
    };
  }
}
