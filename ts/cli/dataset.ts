// ovam dataset: a labelled segmentation dataset from a spec (resumable, shardable); and
// ovam dataset filter: OVAM's filter, as a new split.
import { filterDataset } from "../dataset/filter";
import { runDataset } from "../dataset/run";
import type { Task } from "../progress";
import { choice, commonOptions, COMMON_HELP, noExtra, number, required, text, type Command } from "./args";
import { datasetStatusCommand, QUEUE_HELP, queueOptions, runQueuedDataset } from "./dataset-queue";
import { displayPath } from "./output";
import { BUNDLED_WARNING, isBundled } from "./workflow";

export const datasetCommand: Command = {
  name: "dataset",
  summary: "make a labelled segmentation dataset from a spec (or filter one)",
  options: {
    ...commonOptions,
    out: { type: "string", short: "o" },
    shard: { type: "string" },
    limit: { type: "string" },
    layout: { type: "string" },
    name: { type: "string" },
    ...queueOptions,
  },
  help: `Usage: ovam dataset <spec.json> --out DIR [--shard i/n] [--limit N] [--layout voc]
       ovam dataset filter <DIR> [--name SPLIT]
       ovam dataset <spec.json> --out DIR --queue redis://host:6379 [--attempts N] [--detach]
       ovam dataset status <DIR> [--queue URL]   (or --queue URL alone: every queued dataset)

Makes the dataset the spec describes (classes, prompt templates or a prompts file, seeds,
generation, attribution, self-attention refinement and mask settings, the dense CRF among
them; README "Make a dataset") into DIR:
  dataset.json            the resolved spec, classes, palette, ovam and model
  manifest.jsonl          one line per finished image (prompt, seed, classes, foreground
                          fraction per class, timings)
  images/ID.png           the generated images
  labels/ID.png           8-bit palette PNGs whose pixel values are class ids
  maps/ID.safetensors     per class the attribution map at attention resolution (the
                          refined one, and the unrefined, when the spec refines)
  overlays/ID.png         labels over the image (when the spec's save.overlays is true)
  splits/train.txt        the finished ids
--layout voc writes JPEGImages/, SegmentationClass/ and ImageSets/Segmentation/train.txt.

A run that stops (Ctrl-C, a crash, a full disk) is resumed by running the same command:
finished images are skipped, the one in flight is made again. Shards split the work between
processes or machines: --shard 0/2 and --shard 1/2 together make the whole dataset.

"dataset filter" drops images of one uniform colour and, per class, those whose foreground
fraction lies outside the class's 5th-95th percentiles, and writes the rest as a new split
(default train-filtered); it deletes nothing.

Options:
  -o, --out DIR           the dataset folder (created if missing; required)
  --shard i/n             make only the images whose index mod n is i
  --limit N               make at most N images in this run
  --layout NAME           default or voc (overrides the spec's layout)
  --name SPLIT            filter: the split to write (default train-filtered)

${QUEUE_HELP}

${COMMON_HELP}

Examples:
  ovam dataset examples/urban-thesis.json --out urban/
  ovam dataset examples/urban-thesis.json --out urban/ --shard 1/4
  ovam dataset filter urban/`,

  async run(ctx, values, positionals) {
    const [first, ...rest] = positionals;
    if (first === "filter" && rest.length > 0) {
      const [dir, ...extra] = rest;
      noExtra(extra, "one dataset folder");
      const result = await filterDataset(dir, { name: text(values, "name") });
      ctx.reporter.result(
        { command: "dataset filter", file: result.file, kept: result.kept.length, uniform: result.uniform, outliers: result.outliers, bounds: result.bounds },
        [
          `Kept ${result.kept.length} images; dropped ${result.uniform.length} of one uniform colour and ${result.outliers.length} outside their class's percentiles.`,
          ...Object.entries(result.bounds).map(([c, [lo, hi]]) => `  ${c}: foreground ${lo.toFixed(3)} to ${hi.toFixed(3)}`),
          `Wrote ${displayPath(result.file)}`,
        ].join("\n"),
      );
      return;
    }
    if (first === "status" && (rest.length > 0 || values.queue !== undefined || values.out === undefined)) return datasetStatusCommand(ctx, rest, values);
    const spec = required(first, "spec file (ovam dataset <spec.json> --out DIR)");
    noExtra(rest, "one spec file");
    const out = required(text(values, "out"), "--out DIR");
    if (values.queue !== undefined) return runQueuedDataset(ctx, spec, out, values);
    let task: Task | undefined;
    const result = await runDataset(spec, {
      out,
      shard: text(values, "shard"),
      limit: number(values, "limit", "integer"),
      layout: choice(values, "layout", ["default", "voc"] as const),
      signal: ctx.signal,
      onStart: ({ total, skipped, pipeline }) => {
        ctx.reporter.note(`Model: ${pipeline.folder} (${pipeline.device}, ${pipeline.dtype})`);
        if (isBundled(pipeline)) ctx.reporter.note(BUNDLED_WARNING);
        if (skipped > 0) ctx.reporter.note(`Resuming: ${skipped} image(s) of this shard already finished`);
        task = ctx.reporter.start("dataset", "image", total, { rate: true });
      },
      onItem: (line, { done }) => {
        ctx.reporter.record("item", { id: line.id, index: line.index, foreground: line.foreground });
        task?.update(done);
      },
    }).finally(() => task?.end());
    ctx.reporter.result(
      { command: "dataset", out: result.out, planned: result.planned, skipped: result.skipped, made: result.made, remaining: result.remaining },
      `Made ${result.made} image(s) into ${displayPath(result.out)} (${result.skipped} already there, ${result.remaining} of this shard left, ${result.planned} in the whole plan).`,
    );
  },
};
