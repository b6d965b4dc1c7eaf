// ovam masks: label a finished dataset again from its saved maps with other mask settings.
import { relabelDataset } from "../dataset/relabel";
import type { MaskSettingsInput } from "../masks";
import type { Task } from "../progress";
import { choice, commonOptions, COMMON_HELP, noExtra, number, required, text, UsageError, type Command } from "./args";
import { displayPath } from "./output";

export const masksCommand: Command = {
  name: "masks",
  summary: "label a finished dataset again from its saved maps, with other mask settings",
  options: {
    ...commonOptions,
    preset: { type: "string" },
    interpolation: { type: "string" },
    normalize: { type: "string" },
    compare: { type: "string" },
    threshold: { type: "string" },
    "token-threshold": { type: "string" },
    uncertain: { type: "string" },
    "min-area": { type: "string" },
    area: { type: "string" },
    crf: { type: "boolean" },
    "crf-params": { type: "string" },
    refine: { type: "string" },
    name: { type: "string" },
  },
  help: `Usage: ovam masks <DIR> [--preset NAME] [settings] [--name FOLDER]

Labels every finished image of the dataset in DIR again from maps/ID.safetensors (nothing
is generated again) and writes the labels into DIR/FOLDER (default labels-PRESET, with
-saPOWER and -crf when refined or CRF-labelled), as 8-bit palette PNGs, with masks.json
recording the settings and the refinement. labels/ is left as it is.

Options:
  --preset NAME           daam, ovam (default), ovam-dataset, dataset-diffusion or thesis
  --interpolation NAME    bilinear or bicubic (clamped to [0, 1])
  --normalize NAME        max (m / max m) or minmax
  --compare NAME          gt (>) or ge (>=)
  --threshold T           threshold of every class, 0 to 1
  --token-threshold T     threshold of classes attributed by optimised tokens
  --uncertain LO,HI       highest score in [LO, HI) is labelled 255 (or "none")
  --min-area N            drop class components smaller than N pixels (see --area)
  --area NAME             bbox (a component's bounding box, as DiffuMask) or pixels
  --crf                   label by OVAM's dense CRF over the saved image and the class
                          probabilities (background 1 − the highest class score), not thresholds
  --crf-params LIST       its parameters, e.g. w1=10,alpha=80,beta=13,w2=3,gamma=3,iterations=5
                          (OVAM's defaults; implies --crf)
  --refine POWER[,SIDE]   refine the unrefined maps by the self-attention the dataset saved
                          (spec save.selfAttention or save.generation): A^POWER · c on the grid
                          of SIDE (default the largest saved); "none": the unrefined maps of a
                          refining dataset. Default: the maps as the dataset labelled them
  --name FOLDER           the folder inside DIR to write into

${COMMON_HELP}

Examples:
  ovam masks urban/ --preset daam
  ovam masks urban/ --threshold 0.5 --min-area 1500 --name labels-t05
  ovam masks urban/ --refine 4 --crf`,

  async run(ctx, values, positionals) {
    const [dir, ...extra] = positionals;
    required(dir, "dataset folder (ovam masks <DIR>)");
    noExtra(extra, "one dataset folder");
    const masks: MaskSettingsInput = {
      preset: choice(values, "preset", ["daam", "ovam", "ovam-dataset", "dataset-diffusion", "thesis"] as const),
      interpolation: choice(values, "interpolation", ["bilinear", "bicubic"] as const),
      normalize: choice(values, "normalize", ["max", "minmax"] as const),
      compare: choice(values, "compare", ["gt", "ge"] as const),
      minComponentArea: number(values, "min-area", "integer"),
      componentArea: choice(values, "area", ["bbox", "pixels"] as const),
      uncertain: band(text(values, "uncertain")),
      crf: crfParams(values.crf === true, text(values, "crf-params")),
    };
    const threshold = number(values, "threshold");
    const tokenThreshold = number(values, "token-threshold");
    if (threshold !== undefined || tokenThreshold !== undefined) masks.threshold = { text: threshold, token: tokenThreshold ?? threshold };
    let task: Task | undefined;
    const result = await relabelDataset(dir, {
      masks: Object.fromEntries(Object.entries(masks).filter(([, v]) => v !== undefined)),
      refine: refinement(text(values, "refine")),
      name: text(values, "name"),
      signal: ctx.signal,
      onItem: (_, done, total) => {
        task ??= ctx.reporter.start("masks", "image", total, { rate: true });
        task.update(done);
      },
    }).finally(() => task?.end());
    ctx.reporter.result(
      { command: "masks", folder: result.folder, items: result.count, settings: result.settings, refine: result.refine },
      `Labelled ${result.count} image(s) with preset ${result.settings.preset}${result.settings.crf ? " and the dense CRF" : ""}${typeof result.refine === "object" && result.refine ? `, maps refined (A^${result.refine.power} · c),` : ""} into ${displayPath(result.folder)}.`,
    );
  },
};

function band(raw: string | undefined): [number, number] | null | undefined {
  if (raw === undefined) return undefined;
  if (raw === "none") return null;
  const parts = raw.split(",").map((x) => Number(x.trim()));
  if (parts.length !== 2 || parts.some((x) => !Number.isFinite(x))) throw new UsageError(`--uncertain expects LO,HI (e.g. 0.5,0.6) or none, got "${raw}"`);
  return [parts[0], parts[1]];
}

// "w1=10,iterations=8" as { w1: 10, iterations: 8 } (the API checks names and values); true: OVAM's defaults.
function crfParams(flag: boolean, raw: string | undefined): Record<string, number> | true | undefined {
  if (raw === undefined) return flag || undefined;
  const params: Record<string, number> = {};
  for (const part of raw.split(",")) {
    const match = /^\s*([A-Za-z0-9]+)\s*=\s*([^\s,]+)\s*$/.exec(part);
    if (!match || !Number.isFinite(Number(match[2]))) throw new UsageError(`--crf-params expects NAME=NUMBER pairs separated by commas (e.g. w1=10,iterations=5), got "${part}"`);
    params[match[1]] = Number(match[2]);
  }
  return params;
}

// "4" or "4,32" as { power, side }; "none" as false.
function refinement(raw: string | undefined): false | { power: number; side?: number } | undefined {
  if (raw === undefined) return undefined;
  if (raw === "none") return false;
  const parts = raw.split(",").map((x) => Number(x.trim()));
  if (parts.length > 2 || parts.some((x) => !Number.isFinite(x))) throw new UsageError(`--refine expects POWER or POWER,SIDE (e.g. 4 or 4,32) or none, got "${raw}"`);
  return { power: parts[0], ...(parts.length === 2 ? { side: parts[1] } : {}) };
}
