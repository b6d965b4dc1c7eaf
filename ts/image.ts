// A generated image and the cross-attention captured while making it: generate(), loadGeneration().
import { randomInt } from "node:crypto";
import path from "node:path";

import { z } from "zod";

import { writeFileAtomic } from "./files";
import { awaitNative, callNative, DisposedError, InvalidArgumentError, runJob } from "./errors";
import { checkMemory } from "./memory";
import { native, type NativeGenerateOptions, type NativeGeneration, type NativePipeline } from "./native";
import {
  captureDefaults,
  generateSchema,
  invalidOption,
  MAX_SIZE,
  parse,
  pathSchema,
  type CaptureOptions,
  type GenerateOptions,
  type ResolvedGenerateOptions,
  type Tensor,
} from "./options";
import { readPicture, resizePicture } from "./photo";
import { encodeRGB } from "./png";
import { nativePipeline, release, track, type Pipeline } from "./pipeline";
import type { RGBImage } from "./render";

/** What an image was generated with, defaults filled in. */
export interface GenerationSettings {
  prompt: string;
  /** Absent when none was given (SDXL then conditions on zeros). */
  negativePrompt?: string;
  steps: number;
  guidanceScale: number;
  guidanceRescale: number;
  width: number;
  height: number;
  /** Absent when the initial noise was given as latents. */
  seed?: number;
  scheduler: string;
  capture: Required<CaptureOptions> | false;
  /** img2img: the strength; the file also holds the picture it started from. Absent for text-to-image. */
  strength?: number;
}

/** A latent grid whose self-attention mean was kept (capture.selfAttention). */
export interface SelfAttentionGrid {
  /** The longer of height and width: how refine() and capture.selfAttention.sides name it. */
  side: number;
  height: number;
  width: number;
  /** attn1 calls averaged (layers of this size × UNet evaluations). */
  calls: number;
}

/** One cross-attention layer whose queries were stored. */
export interface AttentionBlock {
  /** Module path, e.g. "up_blocks.1.attentions.0.transformer_blocks.0.attn2". */
  name: string;
  heads: number;
  height: number;
  width: number;
  /** Evaluations stored (1 for a streaming capture). */
  steps: number;
}

// The metadata image.save() writes next to the tensors, read back by loadGeneration().
const FORMAT = "ovam-generation/1";
const fileMetadataSchema = z.object({
  format: z.literal(FORMAT),
  /** The model folder that made it (absolute); absent in files from before it was recorded. */
  model: z.string().optional(),
  settings: z.object({
    prompt: z.string(),
    negativePrompt: z.string().optional(),
    steps: z.number(),
    guidanceScale: z.number(),
    guidanceRescale: z.number().default(0), // absent in files from before it existed
    width: z.number(),
    height: z.number(),
    seed: z.number().optional(),
    scheduler: z.string(),
    strength: z.number().optional(),
    capture: z.union([
      z.literal(false),
      z.object({
        midBlock: z.boolean(),
        branch: z.enum(["unconditional", "conditional"]),
        dtype: z.enum(["float32", "float16", "bfloat16"]),
        streaming: z.boolean(),
        selfAttention: z
          .union([z.literal(false), z.object({ sides: z.array(z.number()).optional(), branch: z.enum(["unconditional", "conditional"]) })])
          .default(false),
      }),
    ]),
  }),
});

const handles = new WeakMap<GeneratedImage, NativeGeneration>();

export class GeneratedImage {
  /** The pipeline that made (or loaded) it. */
  readonly pipeline: Pipeline;
  readonly settings: GenerationSettings;
  readonly width: number;
  readonly height: number;
  /** RGB, row-major, width × height × 3 bytes. */
  readonly pixels: Uint8Array;
  /** The final latents [1, channels, height / 8, width / 8]. */
  readonly latents: Tensor;
  /** Bytes held by the captured attention (freed by dispose()). */
  readonly attentionBytes: number;
  readonly blocks: readonly AttentionBlock[];
  /** The grids whose self-attention was kept; empty without capture.selfAttention. */
  readonly selfAttentionGrids: readonly SelfAttentionGrid[];

  /** @internal Images come from generate() and loadGeneration(). */
  constructor(handle: NativeGeneration, pipeline: Pipeline, settings: GenerationSettings) {
    this.pipeline = pipeline;
    this.settings = settings;
    this.width = handle.width;
    this.height = handle.height;
    this.pixels = handle.pixels;
    this.latents = { data: handle.latents.data as Float32Array, shape: handle.latents.shape };
    this.attentionBytes = handle.attentionBytes;
    this.blocks = handle.blocks.map((b) => ({ ...b }));
    this.selfAttentionGrids = handle.selfAttentionGrids.map((g) => ({ ...g }));
    handles.set(this, handle);
    track(this, handle);
  }

  get disposed(): boolean {
    return !handles.has(this);
  }

  /** The image as an 8-bit RGB PNG (works after dispose(): the pixels stay). */
  toPNG(): Promise<Buffer> {
    return encodeRGB(this.width, this.height, this.pixels);
  }

  /** Writes image, latents, captured attention and settings to one safetensors file (atomically). */
  async save(file: string): Promise<void> {
    const where = "image.save()";
    const handle = generationOf(this, where);
    const resolved = path.resolve(parse(where, pathSchema, file, "file"));
    const bytes = await awaitNative(handle.encode(JSON.stringify({ format: FORMAT, model: this.pipeline.folder, settings: this.settings })));
    await writeFileAtomic(resolved, bytes, { what: where });
  }

  /**
   * The self-attention mean of the grid whose longer side is `side`: [h·w, h·w], rows query pixels,
   * columns key pixels (row-major y·w + x), every row summing to 1.
   */
  async selfAttention(side: number): Promise<Tensor> {
    const where = "image.selfAttention()";
    const handle = generationOf(this, where);
    const grid = this.selfAttentionGrids.find((g) => g.side === side);
    if (!grid) throw invalidOption(where, "side", side, `one of the kept sides (${this.selfAttentionGrids.map((g) => g.side).join(", ") || "none: generate with capture.selfAttention"})`);
    const matrix = await awaitNative(handle.selfAttention(grid.side));
    return { data: matrix.data as Float32Array, shape: matrix.shape };
  }

  /** Frees the captured attention; pixels, latents and settings stay readable. */
  dispose(): void {
    const handle = handles.get(this);
    if (!handle) return;
    handles.delete(this);
    release(this, handle);
  }
}

/** The native generation behind `image`, or the error for a value that is not a live image. */
export function generationOf(image: unknown, where: string, option = "image"): NativeGeneration {
  if (!(image instanceof GeneratedImage)) throw invalidOption(where, option, image, "a GeneratedImage from generate() or loadGeneration()");
  const handle = handles.get(image);
  if (!handle) throw new DisposedError(`${where}: the image was disposed`);
  return handle;
}

/**
 * The native generation and pipeline for reading `image`'s attention with maps of `mode`: the
 * image and its pipeline alive, attention captured, and a streaming capture read linearly only.
 */
export function attentionOf(
  image: unknown,
  where: string,
  option: string,
  mode: { option: string; value: "softmax" | "linear" },
): { generation: NativeGeneration; pipeline: NativePipeline } {
  const generation = generationOf(image, where, option);
  const { settings, pipeline } = image as GeneratedImage;
  if (settings.capture === false) throw new InvalidArgumentError(`${where}: ${option} was generated with capture: false and holds no attention`);
  if (settings.capture.streaming && mode.value !== "linear")
    throw invalidOption(where, mode.option, mode.value, `"linear" (${option} was captured with streaming: true, which sums queries over steps)`);
  return { generation, pipeline: nativePipeline(pipeline, where) };
}

/** Runs the diffusion loop, keeping the cross-attention that attribute() and optimizeToken() read. */
export async function generate(sd: Pipeline, options: GenerateOptions): Promise<GeneratedImage> {
  const where = "generate()";
  const handle = nativePipeline(sd, where);
  const o = parse(where, generateSchema, options);
  if (o.image !== undefined) checkImg2Img(o, where);
  else if (o.strength !== undefined) throw invalidOption(where, "strength", o.strength, "no strength without an image (strength is img2img's)");
  const given = o.image === undefined ? undefined : await readPicture(o.image, where, "image");
  const settings = resolveSettings(sd, o, where, given);
  // diffusers resizes the picture to the requested size (Lanczos).
  const picture = given && (await resizePicture(given, settings.width, settings.height));
  const request: NativeGenerateOptions = {
    prompt: settings.prompt,
    negativePrompt: settings.negativePrompt,
    steps: settings.steps,
    guidanceScale: settings.guidanceScale,
    guidanceRescale: settings.guidanceRescale,
    width: settings.width,
    height: settings.height,
    seed: settings.seed,
    latents: o.latents,
    scheduler: o.scheduler ?? "",
    capture: o.capture === false ? { ...captureDefaults, enabled: false } : { ...o.capture, enabled: true },
    ...(picture ? { image: { data: picture.pixels, shape: [picture.height, picture.width, 3] }, strength: settings.strength } : {}),
  };
  // Also checks steps against the scheduler's range before anything runs.
  const { attention, store, decode } = callNative(() => handle.estimateGenerate(request));
  checkMemory(where, "width × height", `${settings.width}×${settings.height}`, { attention, "captured attention": store, "VAE decoding": decode }, sd.memoryBudget);
  const generation = await runJob(where, (progress) => handle.generate(request, progress), o.onStep, o.signal);
  return new GeneratedImage(generation, sd, settings);
}

// Size from the options, else from the latents or the picture (rounded down to the VAE factor, as
// diffusers' VaeImageProcessor does), else the model's; a seed unless latents are given.
function resolveSettings(sd: Pipeline, o: ResolvedGenerateOptions, where: string, picture: RGBImage | undefined): GenerationSettings {
  const factor = sd.vaeScaleFactor;
  const latents = o.latents;
  const down = (side: number) => Math.min(MAX_SIZE - (MAX_SIZE % factor), Math.max(factor, side - (side % factor)));
  const fromPicture = picture && [down(picture.height), down(picture.width)];
  const latentShape = (h: number | string, w: number | string) => `[1, channels, ${h}, ${w}]`;
  if (latents && latents.shape.length !== 4) throw invalidOption(where, "latents.shape", latents.shape, latentShape(`height / ${factor}`, `width / ${factor}`));
  const height = o.height ?? fromPicture?.[0] ?? (latents ? latents.shape[2] * factor : sd.defaultSize[0]);
  const width = o.width ?? fromPicture?.[1] ?? (latents ? latents.shape[3] * factor : sd.defaultSize[1]);
  for (const [option, value] of [["width", width], ["height", height]] as const)
    if (value % factor !== 0 || value < 1 || value > MAX_SIZE)
      throw invalidOption(where, option, value, `a positive multiple of the VAE factor (${factor}) up to ${MAX_SIZE}`);
  if (latents && (latents.shape[0] !== 1 || latents.shape[2] * factor !== height || latents.shape[3] * factor !== width))
    throw invalidOption(where, "latents.shape", latents.shape, `${latentShape(height / factor, width / factor)} for a ${width}×${height} image`);
  if (latents && o.seed !== undefined) throw invalidOption(where, "seed", o.seed, "no seed when latents are given (the latents are the noise)");
  return {
    prompt: o.prompt,
    ...(o.negativePrompt === undefined ? {} : { negativePrompt: o.negativePrompt }),
    steps: o.steps,
    guidanceScale: o.guidanceScale ?? sd.defaultGuidanceScale,
    guidanceRescale: o.guidanceRescale,
    width,
    height,
    // Drawn here rather than natively so that every image knows, and saves, its seed.
    ...(latents ? {} : { seed: o.seed ?? randomInt(2 ** 47) }),
    scheduler: o.scheduler ?? sd.defaultScheduler,
    capture: o.capture,
    ...(o.image === undefined ? {} : { strength: o.strength ?? DEFAULT_STRENGTH }),
  };
}

const DEFAULT_STRENGTH = 0.8; // diffusers' StableDiffusionImg2ImgPipeline default

// img2img's own rules: noise from the seed (no latents), and at least one step after the strength
// cuts the schedule (diffusers' get_timesteps keeps int(steps × strength) of them).
function checkImg2Img(o: ResolvedGenerateOptions, where: string): void {
  if (o.latents) throw invalidOption(where, "latents", o.latents, "no latents with an image (img2img draws its noise from the seed)");
  const strength = o.strength ?? DEFAULT_STRENGTH;
  if (Math.trunc(o.steps * strength) < 1)
    throw invalidOption(where, "strength", strength, `a strength with at least one step to run: int(steps × strength) ≥ 1 (steps is ${o.steps}; raise steps or strength)`);
}

/** What a generation file says of itself, read from its header alone (no tensors are loaded). */
export interface GenerationInfo {
  /** The model folder that made it, when the file records one. */
  model?: string;
  settings: GenerationSettings;
}

/** Reads a generation file's header: which model made it and with what settings. */
export async function readGenerationInfo(file: string): Promise<GenerationInfo> {
  const resolved = path.resolve(parse("readGenerationInfo()", pathSchema, file, "file"));
  const metadata = parseMetadata((await awaitNative(native.readMetadata(resolved))).user);
  if (!metadata) throw notAGeneration(resolved);
  return { ...(metadata.model === undefined ? {} : { model: metadata.model }), settings: metadata.settings };
}

// What image.save() wrote as the file's user metadata, or undefined for anything else.
function parseMetadata(text: string | undefined): z.output<typeof fileMetadataSchema> | undefined {
  try {
    return fileMetadataSchema.parse(JSON.parse(text ?? ""));
  } catch {
    return undefined;
  }
}

function notAGeneration(file: string): InvalidArgumentError {
  return new InvalidArgumentError(`${file}: no ${FORMAT} metadata matching the image; generation files are written by image.save()`);
}

/** Reads a generation written by image.save() into `sd`, whose UNet must have the file's attention blocks. */
export async function loadGeneration(sd: Pipeline, file: string): Promise<GeneratedImage> {
  const where = "loadGeneration()";
  const handle = nativePipeline(sd, where);
  const resolved = path.resolve(parse(where, pathSchema, file, "file"));
  const generation = await awaitNative(handle.loadGeneration(resolved));
  const metadata = parseMetadata(generation.userMetadata);
  if (!metadata || metadata.settings.width !== generation.width || metadata.settings.height !== generation.height) {
    generation.dispose();
    throw notAGeneration(resolved);
  }
  return new GeneratedImage(generation, sd, metadata.settings);
}
