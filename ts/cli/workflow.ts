// The work behind the commands, shared by generate, attribute, optimize and demo: load a model,
// generate and save, attribute words or tokens into pictures, read masks and optimise a token.
import { existsSync } from "node:fs";
import path from "node:path";

import { InvalidArgumentError } from "../errors";
import { readInputFile } from "../files";
import { generate, readGenerationInfo, type GeneratedImage } from "../image";
import { attribute, minMax } from "../maps";
import type { GenerateOptions, LoadOptions, Map2D, OptimizeOptions } from "../options";
import { decodePNG, encodeGray8, encodeRGB, type DecodedPNG } from "../png";
import { bundledModelDir, load, type Pipeline } from "../pipeline";
import type { Reporter } from "../progress";
import { contactSheetRows, overlay, type RGBImage, type Tile } from "../render";
import { optimizeToken, type OptimizedToken } from "../token";
import { npyFloat32, safeStem, type OutputDir } from "./output";

export interface Context {
  reporter: Reporter;
  /** Aborted by Ctrl-C. */
  signal: AbortSignal;
}

/** Loads `modelDir` (default: the bundled tiny model), saying which and warning when it is the random-weight one. */
export async function loadModel(ctx: Context, modelDir: string | undefined, options: LoadOptions): Promise<Pipeline> {
  const sd = await load(modelDir, options);
  ctx.reporter.note(`Model: ${sd.folder} (${sd.device}, ${sd.dtype})`);
  if (isBundled(sd)) ctx.reporter.note(BUNDLED_WARNING);
  ctx.signal.throwIfAborted();
  return sd;
}

/**
 * The model for reading a generation file: `modelDir` when given, else the folder the file says
 * made it (when that folder is still there), else the bundled model.
 */
export async function loadModelFor(ctx: Context, modelDir: string | undefined, file: string, options: LoadOptions): Promise<Pipeline> {
  // The header is read and checked first: a file that is not a generation fails before any model loads.
  const { model } = await readGenerationInfo(file);
  if (modelDir !== undefined) {
    if (model !== undefined && path.resolve(modelDir) !== model) ctx.reporter.note(`Note: ${file} was made by ${model}; using --model ${path.resolve(modelDir)} as asked`);
    return loadModel(ctx, modelDir, options);
  }
  if (model !== undefined && !existsSync(path.join(model, "model_index.json"))) {
    ctx.reporter.note(`${file} was made by ${model}, which is not there any more; pass --model DIR`);
    return loadModel(ctx, undefined, options);
  }
  // The file, not the user, chose this folder: say so, so a received file cannot pick one unseen.
  if (model !== undefined) ctx.reporter.note(`Note: using the model recorded in ${file}: ${model} (pass --model DIR to choose another)`);
  return loadModel(ctx, model, options);
}

export const BUNDLED_WARNING =
  "Note: this is the bundled tiny RANDOM-WEIGHT smoke-test model: its 64×64 pictures are noise and its maps show no objects. " +
  "For real pictures pass --model /path/to/stable-diffusion-v1-5 (a diffusers folder).";

export function isBundled(sd: Pipeline): boolean {
  return path.resolve(sd.folder) === path.resolve(bundledModelDir);
}

/** Generates with a progress bar, then writes NAME.png and NAME.safetensors (image.save()). */
export async function generateAndSave(
  ctx: Context,
  sd: Pipeline,
  options: Omit<GenerateOptions, "onStep" | "signal">,
  out: OutputDir,
  name: string,
): Promise<{ image: GeneratedImage; png: string; generation: string }> {
  let task: ReturnType<Reporter["start"]> | undefined;
  const image = await generate(sd, {
    ...options,
    onStep: (step, total) => {
      // The total comes with the first step: schedulers may run more evaluations than steps.
      task ??= ctx.reporter.start("generate", "step", total);
      task.update(step);
    },
    signal: ctx.signal,
  }).finally(() => task?.end());
  const { seed, width, height, steps } = image.settings;
  const png = await out.write(`${name}.png`, await image.toPNG(), `the generated ${width}×${height} image (${steps} steps, seed ${seed})`);
  const generation = await out.save(`${name}.safetensors`, (file) => image.save(file), "the saved generation (image, latents, captured attention, settings): input of attribute and optimize");
  return { image, png, generation };
}

/** What to attribute: a word or text of the user's, or an optimised token. */
export type Subject = { label: string; text: string } | { label: string; token: OptimizedToken };

/** How attributeSubjects() reads the attention: the map mode, the mask threshold and the finer-map selections. */
export interface SubjectOptions {
  mode?: "softmax" | "linear";
  threshold?: number;
  blocks?: (string | number)[];
  steps?: [number, number];
  /** Also one sheet row (and one overlay and raw map per subject) per selected block. */
  perBlock?: boolean;
  /** The picture the maps are drawn over, at its own size (segment: the photo); default the generated image. */
  backdrop?: RGBImage;
}

/**
 * Per subject: its map as an overlay on the picture, the raw map (16-bit PNG, min-max normalised,
 * and float32 .npy) and the thresholded mask; then one sheet with the picture and every overlay
 * (with perBlock, one more row per block).
 */
export async function attributeSubjects(
  ctx: Context,
  image: GeneratedImage,
  subjects: readonly Subject[],
  out: OutputDir,
  options: SubjectOptions,
): Promise<{ sheet: { path: string; width: number; height: number } }> {
  const picture: RGBImage = options.backdrop ?? { width: image.width, height: image.height, pixels: image.pixels };
  const select = { mode: options.mode, blocks: options.blocks, steps: options.steps, size: [picture.height, picture.width] as [number, number] };
  const tiles: Tile[] = [{ label: image.settings.prompt, image: picture }];
  const blockRows = new Map<string, Tile[]>();
  for (const subject of subjects) {
    ctx.signal.throwIfAborted();
    const [target, word] = "token" in subject ? [subject.token, subject.token.text] : [subject.text, subject.text];
    const maps = await attribute(image, target, select);
    const map = maps.word(word);
    const stem = out.stem("token" in subject ? `token-${subject.token.text}` : subject.label);
    const what = `"${subject.label}"`;
    const heat = overlay(picture, minMax(map.data));
    await out.write(`${stem}.overlay.png`, await encodeRGB(heat.width, heat.height, heat.pixels), `${what}: heat map (viridis, opacity by intensity) over the image`);
    await out.write(`${stem}.map.png`, await maps.toPNG(word), `${what}: the map as 16-bit grey (min-max normalised)`);
    await out.write(`${stem}.map.npy`, npyFloat32(map.data, [map.height, map.width]), `${what}: the raw map values (float32 NumPy array, [height, width])`);
    const mask = maps.mask(word, { threshold: options.threshold });
    const threshold = options.threshold ?? 0.5;
    await out.write(`${stem}.mask.png`, await maskPNG(mask), `${what}: mask, white where the normalised map > ${threshold}`);
    tiles.push({ label: subject.label, image: heat });
    if (!options.perBlock) continue;
    const perBlock = await attribute(image, target, { ...select, perBlock: true });
    for (const [index, block] of perBlock.blocks.entries()) {
      const label = blockLabel(image, block);
      const blockMap = perBlock.block(index).word(word);
      const blockHeat = overlay(picture, minMax(blockMap.data));
      const blockStem = safeStem(label.replaceAll(" ", "-"));
      await out.write(`${stem}.${blockStem}.overlay.png`, await encodeRGB(blockHeat.width, blockHeat.height, blockHeat.pixels), `${what}: heat map of block ${block} alone`);
      await out.write(`${stem}.${blockStem}.map.npy`, npyFloat32(blockMap.data, [blockMap.height, blockMap.width]), `${what}: raw map of block ${block} alone`);
      if (!blockRows.has(block)) blockRows.set(block, [{ label, image: picture }]);
      blockRows.get(block)?.push({ label: subject.label, image: blockHeat });
    }
  }
  const sheet = contactSheetRows([tiles, ...blockRows.values()]);
  const description = options.perBlock ? "the image and every map, labelled: the selection's sum, then one row per block" : "the image and every map side by side, labelled";
  const file = await out.write("sheet.png", await encodeRGB(sheet.width, sheet.height, sheet.pixels), description);
  return { sheet: { path: file, width: sheet.width, height: sheet.height } };
}

// "up1.0.0 16x16" for "up_blocks.1.attentions.0.transformer_blocks.0.attn2" (fits a sheet label).
function blockLabel(image: GeneratedImage, name: string): string {
  const block = image.blocks.find((b) => b.name === name);
  const m = /^(down|up|mid)_blocks?\.?(\d*)\.?attentions\.(\d+)\.transformer_blocks\.(\d+)/.exec(name);
  const short = m ? `${m[1]}${m[2]}.${m[3]}.${m[4]}` : name;
  return block ? `${short} ${block.width}x${block.height}` : short;
}

/** A 0/1 mask as an 8-bit grey PNG, black and white. */
export function maskPNG(mask: Map2D<Uint8Array>): Promise<Buffer> {
  return encodeGray8(mask.width, mask.height, mask.data.map((v) => v * 255));
}

// A mask PNG larger than this is refused before it is read (a 4096² RGBA PNG stored without
// compression is 64 MiB).
const MAX_MASK_BYTES = 64 << 20;

/** A mask PNG read and decoded (a regular file of bounded size; errors name --mask). */
export async function readMaskFile(file: string): Promise<DecodedPNG> {
  return decodePNG(await readInputFile(file, { maxBytes: MAX_MASK_BYTES, what: "--mask" }), `--mask ${file}`);
}

/**
 * A decoded mask as a 0/1 plane of the image's size: 1 where the pixel is light (grey level, or
 * RGB mean, above 127) and opaque (alpha above 127). A mask of another size with the image's
 * aspect ratio is resized (nearest); any other size is an InvalidArgumentError.
 */
export function maskPlane(png: DecodedPNG, image: GeneratedImage, file: string): Map2D<Uint8Array> {
  const { width, height, channels, data } = png;
  if (width * image.height !== height * image.width)
    throw new InvalidArgumentError(
      `--mask ${file}: the mask is ${width}×${height} but the image is ${image.width}×${image.height}; a mask needs the image's size (or its aspect ratio, to be resized)`,
    );
  const colours = channels === 1 || channels === 2 ? 1 : 3;
  const mask = new Uint8Array(image.width * image.height);
  for (let y = 0; y < image.height; y++)
    for (let x = 0; x < image.width; x++) {
      const at = (Math.floor((y * height) / image.height) * width + Math.floor((x * width) / image.width)) * channels;
      let grey = 0;
      for (let c = 0; c < colours; c++) grey += data[at + c] / colours;
      const opaque = channels % 2 === 1 || data[at + channels - 1] > 127;
      mask[y * image.width + x] = grey > 127 && opaque ? 1 : 0;
    }
  return { data: mask, width: image.width, height: image.height };
}

/** optimizeToken() with the loss of each epoch reported as it comes. */
export async function optimizeWithProgress(
  ctx: Context,
  images: readonly GeneratedImage[],
  options: Omit<OptimizeOptions, "onEpoch" | "signal" | "epochs"> & { epochs: number },
): Promise<OptimizedToken> {
  const task = ctx.reporter.start("optimize", "epoch", options.epochs);
  try {
    return await optimizeToken(images, { ...options, onEpoch: (epoch, loss) => task.update(epoch + 1, { loss }), signal: ctx.signal });
  } finally {
    task.end();
  }
}
