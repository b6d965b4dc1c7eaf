// ovam eval: scores maps or label PNGs against ground truth and writes the report files.
import { mkdir } from "node:fs/promises";
import path from "node:path";

import { evaluate } from "../eval/evaluate";
import { table, writeReport } from "../eval/report";
import { fileError } from "../files";
import { choice, commonOptions, COMMON_HELP, noExtra, number, required, text, UsageError, type Command } from "./args";
import { fileList } from "./output";

export const evalCommand: Command = {
  name: "eval",
  summary: "score maps or labels against ground truth (mIoU, curves, AUC)",
  options: {
    ...commonOptions,
    truth: { type: "string" },
    out: { type: "string", short: "o" },
    protocol: { type: "string" },
    normalize: { type: "string" },
    compare: { type: "string" },
    steps: { type: "string" },
    threshold: { type: "string" },
    background: { type: "string" },
    ignore: { type: "string" },
    classes: { type: "string" },
    labels: { type: "string" },
  },
  help: `Usage: ovam eval <predictions> --truth DIR [--out DIR]

Scores attribution maps (or predicted label maps) against ground truth, matched by file name, and
prints OVAM's columns (IoU at the threshold, mIoU, overall IoU) beside the thesis's (max IoU over
the threshold sweep and its threshold, AUC).

<predictions> is a folder of <id>/<class>.map.npy (or .map.png) files, as
"ovam attribute … --out <predictions>/<id>" writes them, and/or <id>.png label maps; or a
dataset folder (ovam dataset's dataset.json, manifest.jsonl, maps/, labels/): each finished
item is scored for the classes its manifest line names, by its saved maps (or its labels
where it saved none, or the labels folder given by --labels), class ids from dataset.json.
--truth DIR holds per item <id>.png or <id>.gt.png (grey or palette: class indices, 255 left out;
RGB: non-zero is the object; with alpha: alpha > 127 is the object, as DAAM's *.gt.png), or per
class <id>/<class>.gt.png masks.

Options:
  --truth DIR             ground-truth folder (required)
  -o, --out DIR           write report.json, per-class.csv, curve.csv and curve.png there
  --protocol NAME         binary (default: per (item, class) IoU pooled per class over a
                          threshold sweep), semantic (argmax over background and classes,
                          confusion matrix) or both
  --normalize NAME        max (default: m / max, OVAM's notebooks and the thesis) or minmax
                          ((m − min) / (max − min), DAAM)
  --compare OP            gt (default: n > τ) or ge (n ≥ τ)
  --steps N               thresholds k/N for k = 0..N (default 100)
  --threshold X           the threshold of OVAM's columns, a multiple of 1/N (default 0.5)
  --background X          semantic protocol: the background's score (default 0.5)
  --ignore N              ground-truth value left out (default 255)
  --classes LIST          class ids of map names, e.g. car=7,person=15 (needed against
                          class-index ground truth when maps are named by word)
  --labels FOLDER         a dataset's label folder to score instead of its maps (labels, or
                          one ovam masks wrote, e.g. labels-daam-crf)

${COMMON_HELP}

Examples:
  ovam eval maps/ --truth gt/ --out report/
  ovam eval maps/ --truth gt/ --classes car=7,dog=12 --protocol both --normalize minmax
  ovam eval urban/ --truth urban-gt/ --protocol both
  ovam eval urban/ --truth urban-gt/ --labels labels-ovam-crf --protocol semantic`,

  async run(ctx, values, positionals) {
    const [predictions, ...extra] = positionals;
    required(predictions, "predictions folder (ovam eval <predictions> --truth DIR)");
    noExtra(extra, "one predictions folder");
    const truth = required(text(values, "truth"), "--truth DIR");
    const task = { current: undefined as ReturnType<typeof ctx.reporter.start> | undefined };
    const report = await evaluate(
      { predictions, truth, ...(values.labels === undefined ? {} : { labels: text(values, "labels") as string }) },
      {
        protocol: choice(values, "protocol", ["binary", "semantic", "both"] as const),
        normalize: choice(values, "normalize", ["max", "minmax"] as const),
        compare: choice(values, "compare", ["gt", "ge"] as const),
        steps: number(values, "steps", "integer"),
        threshold: number(values, "threshold"),
        backgroundScore: number(values, "background"),
        ignore: number(values, "ignore", "integer"),
        classes: classList(text(values, "classes")),
        onItem: (done, total) => {
          task.current ??= ctx.reporter.start("eval", "item", total);
          task.current.update(done);
        },
        signal: ctx.signal,
      },
    ).finally(() => task.current?.end());
    const outDir = text(values, "out");
    const files = [];
    if (outDir !== undefined) {
      const dir = path.resolve(outDir);
      await mkdir(dir, { recursive: true }).catch((error: unknown) => {
        throw fileError(error, dir, "--out");
      });
      for (const file of await writeReport(report, dir)) {
        ctx.reporter.record("file", file);
        files.push(file);
      }
    }
    ctx.reporter.result(
      { command: "eval", items: report.items, binary: report.binary && { at: report.binary.at, summary: report.binary.summary, per_class: report.binary.per_class }, semantic: report.semantic, files },
      `${table(report)}${files.length ? `\n${fileList(files)}` : ""}`,
    );
  },
};

// "car=7,person=15" as { car: 7, person: 15 }.
function classList(raw: string | undefined): Record<string, number> | undefined {
  if (raw === undefined) return undefined;
  const classes: Record<string, number> = {};
  for (const part of raw.split(",")) {
    const match = /^\s*([^=]+?)\s*=\s*(\d+)\s*$/.exec(part);
    if (!match) throw new UsageError(`--classes expects NAME=ID pairs separated by commas (e.g. car=7,person=15), got "${part}"`);
    classes[match[1]] = Number(match[2]);
  }
  return classes;
}
