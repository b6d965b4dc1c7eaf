// ovam optimize: an OVAM token trained so that its map matches object masks on saved generations.
import path from "node:path";

import { InvalidArgumentError } from "../errors";
import { folderTruth } from "../eval/sources";
import { loadGeneration, type GeneratedImage } from "../image";
import type { Map2D } from "../options";
import { loadTokens, optimizeTokens, resolveTokenRef, saveTokens, type OptimizedToken, type TrainingExample } from "../token";
import { choice, commonOptions, COMMON_HELP, loadOptions, modelHelp, modelOptions, number, required, text, texts, UsageError, type Command, type Values } from "./args";
import { fileList, OutputDir } from "./output";
import { loadModelFor, maskPlane, optimizeWithProgress, readMaskFile, type Context } from "./workflow";

// optimizeToken()'s default, repeated here because the progress bar needs the total up front.
const DEFAULT_EPOCHS = 30;

export const optimizeCommand: Command = {
  name: "optimize",
  summary: "optimise a token so its map matches object masks",
  options: {
    ...commonOptions,
    ...modelOptions,
    out: { type: "string", short: "o" },
    mask: { type: "string", multiple: true },
    truth: { type: "string" },
    classes: { type: "string" },
    initial: { type: "string" },
    text: { type: "string" },
    context: { type: "string" },
    epochs: { type: "string" },
    lr: { type: "string" },
    "step-size": { type: "string" },
    gamma: { type: "string" },
    mode: { type: "string" },
  },
  help: `Usage: ovam optimize <generation.safetensors>... --mask MASK.png... --text WORD --out token.safetensors
       ovam optimize <generation.safetensors>... --truth DIR --classes LIST --out bank.safetensors

Optimises a token for WORD (OVAM) so that its attribution map on each generation matches that
generation's mask, printing the loss of each epoch, and saves it for "ovam attribute --token".
Give one --mask per generation, in the same order. A mask is an 8-bit grey, grey+alpha, RGB or
RGBA PNG: light opaque pixels (value > 127) are the object. A mask with the image's aspect
ratio but another size is resized (nearest).

With --truth, optimises a token per class over a training split (the thesis's token bank) and
saves them in one bank file; datasets and "ovam attribute --token bank.safetensors#car" use them.
The ground truth of generation ID.safetensors is read as "ovam eval" reads it: DIR/ID.png (class
indices: give --classes car=7,...) or DIR/ID/CLASS.gt.png masks (--classes car,dog), at the
image's size. Each class's token is trained on the generations whose truth has that class.

Options:
  -o, --out FILE          token (or bank) file to write (required)
  --mask FILE             mask PNG, one per generation
  --text WORD             the word the token stands for (with --mask)
  --truth DIR             ground-truth folder: optimise a bank, a token per class
  --classes LIST          with --truth: class names (car,dog) or names with ids (car=7,dog=12);
                          each token starts from its class name
  --initial FILE[#NAME]   start from this token (resume or fine-tune); with --truth a bank
                          whose tokens start the classes they name
  --context TEXT          a sentence with WORD to initialise the token (default: WORD)
  --epochs N              epochs (default ${DEFAULT_EPOCHS})
  --lr X                  SGD learning rate (default 100)
  --step-size N           epochs between learning-rate decays (default 10)
  --gamma X               learning-rate decay factor (default 0.7)
  --mode NAME             softmax (default) or linear attention scores

${modelHelp("generations")}

${COMMON_HELP}

Examples:
  ovam optimize out/generation.safetensors --mask car-mask.png --text car --out car.safetensors
  ovam optimize a.safetensors b.safetensors --mask a.png --mask b.png --text car --epochs 50 --out car.safetensors
  ovam optimize train/*.safetensors --truth gt/ --classes car,dog --out bank.safetensors
  ovam optimize train/*.safetensors --truth gt/ --classes car,dog --initial bank.safetensors --out bank2.safetensors
  ovam attribute out/generation.safetensors --token car.safetensors --out maps/`,

  async run(ctx, values, positionals) {
    required(positionals[0], "generation file (ovam optimize <generation.safetensors>... --mask MASK.png... --text WORD --out FILE)");
    const outFile = path.resolve(required(text(values, "out"), "--out FILE"));
    const epochs = number(values, "epochs", "integer") ?? DEFAULT_EPOCHS;
    const options = {
      epochs,
      lr: number(values, "lr"),
      stepSize: number(values, "step-size", "integer"),
      gamma: number(values, "gamma"),
      attribute: { mode: choice(values, "mode", ["softmax", "linear"] as const) },
    };
    const out = await new OutputDir(path.dirname(outFile), ctx.reporter).prepare(path.basename(outFile));
    const loadImages = async () => {
      const sd = await loadModelFor(ctx, text(values, "model"), positionals[0], loadOptions(values));
      const images: GeneratedImage[] = [];
      for (const file of positionals) images.push(await loadGeneration(sd, file));
      return images;
    };
    const truth = text(values, "truth");
    if (truth !== undefined) return optimizeBank(ctx, values, positionals, await loadImages(), truth, options, out, outFile);

    const masks = required(texts(values, "mask"), "--mask MASK.png (one per generation), or --truth DIR");
    if (masks.length !== positionals.length)
      throw new UsageError(`${positionals.length} generation file(s) but ${masks.length} --mask file(s); give one mask per generation, in order`);
    const word = required(text(values, "text"), "--text WORD");
    const initialRef = text(values, "initial");
    const initial = initialRef === undefined ? undefined : await resolveTokenRef(initialRef);
    // Masks are read before the model loads, so a bad mask fails at once.
    const pngs = [];
    for (const mask of masks) pngs.push(await readMaskFile(mask));
    const images = await loadImages();
    const targets = pngs.map((png, i) => maskPlane(png, images[i], masks[i]));
    const token = await optimizeWithProgress(ctx, images, { ...options, text: word, context: text(values, "context"), initial, targets });
    await out.save(path.basename(outFile), (file) => token.save(file), `the token for "${word}" (use: ovam attribute <generation> --token ${path.basename(outFile)})`);
    const best = Math.min(...token.losses);
    ctx.reporter.result(
      { command: "optimize", text: word, epochs, losses: token.losses, bestLoss: best, files: out.files },
      `Optimised a token for "${word}" over ${epochs} epochs: loss ${token.losses[0]?.toPrecision(5)} → best ${best.toPrecision(5)}.\n${fileList(out.files)}`,
    );
  },
};

// --truth: a token per class over the generations whose ground truth has it, saved as one bank.
async function optimizeBank(
  ctx: Context,
  values: Values,
  files: readonly string[],
  images: readonly GeneratedImage[],
  truthDir: string,
  options: { epochs: number; lr?: number; stepSize?: number; gamma?: number; attribute: { mode?: "softmax" | "linear" } },
  out: OutputDir,
  outFile: string,
): Promise<void> {
  const classes = classesOf(required(text(values, "classes"), "--classes LIST (with --truth)"));
  if (texts(values, "mask").length > 0 || text(values, "text") !== undefined) throw new UsageError("--truth optimises a token per class: give --classes instead of --mask and --text");
  const examples: TrainingExample[] = [];
  for (const [i, file] of files.entries()) {
    const id = path.basename(file).replace(/\.safetensors$/, "");
    const truth = await folderTruth(truthDir, id, [...classes.keys()]);
    const masks: Record<string, Map2D<Uint8Array>> = {};
    for (const [name, classId] of classes) {
      if (!(truth instanceof Map) && truth.kind === "labels" && classId === undefined)
        throw new UsageError(`--truth: ${id} has class-index labels; give each class its id (--classes ${name}=ID,...)`);
      const mask = truth instanceof Map ? truth.get(name)?.map : truth.kind === "labels" && classId !== undefined ? binary(truth.map, classId) : undefined;
      if (truth instanceof Map || truth.kind === "labels") {
        if (mask && mask.data.includes(1)) masks[name] = sized(mask, images[i], `${file}: ground truth of "${name}"`);
      } else throw new InvalidArgumentError(`--truth: ${id} has one binary mask; with several classes give ${path.join(truthDir, id, "CLASS.gt.png")} per class, or class-index labels`);
    }
    if (Object.keys(masks).length > 0) examples.push({ image: images[i], masks });
  }
  const missing = [...classes.keys()].filter((name) => !examples.some((e) => e.masks[name]));
  if (missing.length) throw new InvalidArgumentError(`--truth: no generation has ground truth for ${missing.map((m) => `"${m}"`).join(", ")}; accepted: classes present in the truth of at least one generation`);
  const initialFile = text(values, "initial");
  const initial: ReadonlyMap<string, OptimizedToken> | undefined = initialFile === undefined ? undefined : await loadTokens(initialFile);
  let task: ReturnType<Context["reporter"]["start"]> | undefined;
  let current = "";
  const tokens = await optimizeTokens(examples, {
    ...options,
    initial,
    onEpoch: (name, epoch, loss) => {
      if (name !== current) {
        task?.end();
        ctx.reporter.note(`Class "${name}": ${examples.filter((e) => e.masks[name]).length} generation(s)${initial?.has(name) ? ", resumed from --initial" : ""}`);
        task = ctx.reporter.start(`optimize ${name}`, "epoch", options.epochs);
        current = name;
      }
      task?.update(epoch + 1, { loss });
    },
    signal: ctx.signal,
  }).finally(() => task?.end());
  await out.save(path.basename(outFile), (file) => saveTokens(file, tokens), `the token bank (${[...tokens.keys()].join(", ")}; use: ovam attribute <generation> --token ${path.basename(outFile)}#NAME)`);
  const summary = [...tokens].map(([name, token]) => ({ name, bestLoss: Math.min(...token.losses), losses: token.losses }));
  ctx.reporter.result(
    { command: "optimize", bank: summary, epochs: options.epochs, files: out.files },
    `Optimised ${tokens.size} token(s) over ${options.epochs} epochs: ${summary.map((s) => `${s.name} best loss ${s.bestLoss.toPrecision(5)}`).join(", ")}.\n${fileList(out.files)}`,
  );
}

// "car,dog" or "car=7,dog=12" as names with their ids (undefined without one).
function classesOf(raw: string): Map<string, number | undefined> {
  const classes = new Map<string, number | undefined>();
  for (const part of raw.split(",")) {
    const match = /^\s*([^=#]+?)\s*(?:=\s*(\d+)\s*)?$/.exec(part);
    if (!match) throw new UsageError(`--classes expects names (car,dog) or NAME=ID pairs (car=7,dog=12), got "${part}"`);
    classes.set(match[1], match[2] === undefined ? undefined : Number(match[2]));
  }
  return classes;
}

function binary(labels: Map2D<Uint8Array>, classId: number): Map2D<Uint8Array> {
  return { data: labels.data.map((v) => (v === classId ? 1 : 0)), width: labels.width, height: labels.height };
}

function sized(mask: Map2D<Uint8Array>, image: GeneratedImage, what: string): Map2D<Uint8Array> {
  if (mask.width !== image.width || mask.height !== image.height)
    throw new InvalidArgumentError(`${what} is ${mask.width}×${mask.height} but the image is ${image.width}×${image.height}; accepted: ground truth of the image's size`);
  return mask;
}
