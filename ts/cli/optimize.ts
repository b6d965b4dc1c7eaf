// ovam optimize: an OVAM token trained so that its map matches object masks on saved generations.
import path from "node:path";

import { loadGeneration, type GeneratedImage } from "../image";
import { choice, commonOptions, COMMON_HELP, loadOptions, modelHelp, modelOptions, number, required, text, texts, UsageError, type Command } from "./args";
import { fileList, OutputDir } from "./output";
import { loadModelFor, maskPlane, optimizeWithProgress, readMaskFile } from "./workflow";

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
    text: { type: "string" },
    context: { type: "string" },
    epochs: { type: "string" },
    lr: { type: "string" },
    "step-size": { type: "string" },
    gamma: { type: "string" },
    mode: { type: "string" },
  },
  help: `Usage: ovam optimize <generation.safetensors>... --mask MASK.png... --text WORD --out token.safetensors

Optimises a token for WORD (OVAM) so that its attribution map on each generation matches that
generation's mask, printing the loss of each epoch, and saves it for "ovam attribute --token".
Give one --mask per generation, in the same order. A mask is an 8-bit grey, grey+alpha, RGB or
RGBA PNG: light opaque pixels (value > 127) are the object. A mask with the image's aspect
ratio but another size is resized (nearest).

Options:
  -o, --out FILE          token file to write (required)
  --mask FILE             mask PNG, one per generation (required)
  --text WORD             the word the token stands for (required)
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
  ovam attribute out/generation.safetensors --token car.safetensors --out maps/`,

  async run(ctx, values, positionals) {
    required(positionals[0], "generation file (ovam optimize <generation.safetensors>... --mask MASK.png... --text WORD --out FILE)");
    const masks = required(texts(values, "mask"), "--mask MASK.png (one per generation)");
    if (masks.length !== positionals.length)
      throw new UsageError(`${positionals.length} generation file(s) but ${masks.length} --mask file(s); give one mask per generation, in order`);
    const word = required(text(values, "text"), "--text WORD");
    const outFile = path.resolve(required(text(values, "out"), "--out FILE"));
    const epochs = number(values, "epochs", "integer") ?? DEFAULT_EPOCHS;
    const options = {
      text: word,
      context: text(values, "context"),
      epochs,
      lr: number(values, "lr"),
      stepSize: number(values, "step-size", "integer"),
      gamma: number(values, "gamma"),
      attribute: { mode: choice(values, "mode", ["softmax", "linear"] as const) },
    };
    const out = await new OutputDir(path.dirname(outFile), ctx.reporter).prepare(path.basename(outFile));
    const pngs = [];
    for (const mask of masks) pngs.push(await readMaskFile(mask));
    const sd = await loadModelFor(ctx, text(values, "model"), positionals[0], loadOptions(values));
    const images: GeneratedImage[] = [];
    for (const file of positionals) images.push(await loadGeneration(sd, file));
    const targets = pngs.map((png, i) => maskPlane(png, images[i], masks[i]));
    const token = await optimizeWithProgress(ctx, images, { ...options, targets });
    await out.save(path.basename(outFile), (file) => token.save(file), `the token for "${word}" (use: ovam attribute <generation> --token ${path.basename(outFile)})`);
    const best = Math.min(...token.losses);
    ctx.reporter.result(
      { command: "optimize", text: word, epochs, losses: token.losses, bestLoss: best, files: out.files },
      `Optimised a token for "${word}" over ${epochs} epochs: loss ${token.losses[0]?.toPrecision(5)} → best ${best.toPrecision(5)}.\n${fileList(out.files)}`,
    );
  },
};
