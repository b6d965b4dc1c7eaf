// The files and the table of an evaluation: report.json (every number unrounded), per-class.csv,
// curve.csv and curve.png, written through the one atomic writer; and the terminal table with
// OVAM's columns (IoU at the chosen threshold, overall IoU) beside the thesis's (max, AUC).
import path from "node:path";

import { writeFileAtomic } from "../files";
import { encodeRGB } from "../png";
import type { EvaluationReport } from "./evaluate";
import { curvePlot } from "./plot";

const cell = (v: unknown) => {
  const text = v === null || v === undefined ? "" : String(v);
  return /[",\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
};
const csv = (rows: readonly (readonly unknown[])[]) => rows.map((row) => row.map(cell).join(",")).join("\n") + "\n";

/** per-class.csv: one row per class (and the mean / overall rows). */
export function perClassCSV(report: EvaluationReport): string {
  const b = report.binary;
  const s = report.semantic;
  const classes = [...new Set([...Object.keys(b?.iou ?? {}), ...Object.keys(s?.iou ?? {})])];
  const header = ["class", "pairs", `iou_at_${b?.at.threshold ?? ""}`, "max_iou", "argmax_tau", "auc", "semantic_iou"];
  const rows: unknown[][] = classes.map((name) => {
    const summary = b?.per_class[name];
    return [name, b?.pairs[name], b?.at.iou[name], summary?.max, summary?.argmax_tau, summary?.auc, s?.iou[name]];
  });
  rows.push(["mean", "", b?.at.miou, b?.summary.max, b?.summary.argmax_tau, b?.summary.auc, s?.miou]);
  if (b) rows.push(["overall", "", b.at.overall]);
  return csv([header, ...rows]);
}

/** curve.csv: per threshold, the mIoU, overall IoU, and each class's IoU with its p5 and p95. */
export function curveCSV(report: EvaluationReport): string {
  const b = report.binary;
  if (!b) return csv([["threshold"]]);
  const classes = Object.keys(b.iou);
  const header = ["threshold", "miou", "overall", ...classes.flatMap((c) => [`iou:${c}`, `p5:${c}`, `p95:${c}`])];
  const rows = b.thresholds.map((tau, k) => [tau, b.miou[k], b.overall[k], ...classes.flatMap((c) => [b.iou[c][k], b.percentiles[c].p5[k], b.percentiles[c].p95[k]])]);
  return csv([header, ...rows]);
}

const fixed = (v: number | null | undefined, digits = 4) => (v === null || v === undefined ? "–" : v.toFixed(digits));

/** The terminal table: per class OVAM's IoU at the threshold, the thesis's max IoU (at τ*) and AUC. */
export function table(report: EvaluationReport): string {
  const lines: string[] = [];
  const b = report.binary;
  if (b) {
    const tau = b.at.threshold.toFixed(2);
    const classes = Object.keys(b.iou);
    const width = Math.max(8, ...classes.map((c) => c.length));
    const row = (name: string, ...cells: string[]) => [name.padEnd(width), ...cells.map((c) => c.padStart(10))].join("  ");
    lines.push(`Binary protocol: ${report.items} items, ${Object.values(b.pairs).reduce((a, n) => a + n, 0)} (item, class) pairs; ${report.settings.normalize} normalisation, n ${report.settings.compare === "gt" ? ">" : "≥"} τ, ${report.settings.steps + 1} thresholds`);
    lines.push(row("class", `IoU@${tau}`, "max IoU", "τ*", "AUC"));
    for (const name of classes) {
      const s = b.per_class[name];
      lines.push(row(name, fixed(b.at.iou[name]), fixed(s.max), fixed(s.argmax_tau, 2), fixed(s.auc)));
    }
    lines.push(row("mean", fixed(b.at.miou), fixed(b.summary.max), fixed(b.summary.argmax_tau, 2), fixed(b.summary.auc)));
    lines.push(`mIoU@${tau} ${fixed(b.at.miou)}, overall IoU@${tau} ${fixed(b.at.overall)} (OVAM); max mIoU ${fixed(b.summary.max)} at τ ${fixed(b.summary.argmax_tau, 2)}, AUC ${fixed(b.summary.auc)} (thesis)`);
  }
  const s = report.semantic;
  if (s) {
    if (lines.length) lines.push("");
    lines.push(`Semantic protocol (background score ${s.background_score}): mIoU ${fixed(s.miou)}, pixel accuracy ${fixed(s.pixel_accuracy)}`);
    for (const [name, iou] of Object.entries(s.iou)) lines.push(`  ${name.padEnd(16)} ${fixed(iou)}`);
  }
  if (report.skipped.length) lines.push(`${report.skipped.length} item(s) left out: ${report.skipped.slice(0, 3).map((s) => `${s.id} (${s.reason})`).join(", ")}${report.skipped.length > 3 ? ", …" : ""}`);
  return lines.join("\n");
}

/** Writes report.json, per-class.csv, curve.csv and (binary protocol) curve.png into `dir`; returns what each holds. */
export async function writeReport(report: EvaluationReport, dir: string): Promise<{ path: string; description: string }[]> {
  const files: { path: string; description: string }[] = [];
  const write = async (name: string, data: Uint8Array | string, description: string) => {
    const file = path.join(dir, name);
    await writeFileAtomic(file, data, { what: "eval --out" });
    files.push({ path: file, description });
  };
  await write("report.json", `${JSON.stringify(report, null, 1)}\n`, "every number of the evaluation, unrounded");
  await write("per-class.csv", perClassCSV(report), "per class: IoU at the threshold, max IoU, its threshold, AUC");
  if (report.binary) {
    await write("curve.csv", curveCSV(report), "per threshold: mIoU, overall IoU, per-class IoU with p5/p95");
    const plot = curvePlot(report.binary, `IoU against threshold (${report.items} items)`);
    await write("curve.png", await encodeRGB(plot.width, plot.height, plot.pixels), "per-class IoU against the threshold, p5-p95 bands, mIoU in black");
  }
  return files;
}
