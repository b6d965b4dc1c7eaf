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
import { encodeRGB } from "./png";
import { nativePipeline, release, track, type Pipeline } from "./pipeline";

/** What an image was generated with, defaults filled in. */
export interface GenerationSettings {
  prompt: string;
  negativePrompt: string;
  steps: number;
  guidanceScale: number;
  width: number;
  height: number;
  /** Absent when the initial noise was given as latents. */
  seed?: number;
  scheduler: string;
  capture: Required<CaptureOptions> | false;
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
    negativePrompt: z.string(),
    steps: z.number(),
    guidanceScale: z.number(),
    width: z.number(),
    height: z.number(),
    seed: z.number().optional(),
    scheduler: z.string(),
    capture: z.union([
      z.literal(false),
      z.object({
        midBlock: z.boolean(),
        branch: z.enum(["unconditional", "conditional"]),
        dtype: z.enum(["float32", "float16", "bfloat16"]),
        streaming: z.boolean(),
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
  const settings = resolveSettings(sd, o, where);
  const request: NativeGenerateOptions = {
    prompt: settings.prompt,
    negativePrompt: settings.negativePrompt,
    steps: settings.steps,
    guidanceScale: settings.guidanceScale,
    width: settings.width,
    height: settings.height,
    seed: settings.seed,
    latents: o.latents,
    scheduler: o.scheduler ?? "",
    capture: o.capture === false ? { ...captureDefaults, enabled: false } : { ...o.capture, enabled: true },
  };
  // Also checks steps against the scheduler's range before anything runs.
  const { attention, store, decode } = callNative(() => handle.estimateGenerate(request));
  checkMemory(where, "width × height", `${settings.width}×${settings.height}`, { attention, "captured attention": store, "VAE decoding": decode }, sd.memoryBudget);
  const generation = await runJob(where, (progress) => handle.generate(request, progress), o.onStep, o.signal);
  return new GeneratedImage(generation, sd, settings);
}

// Size from the options, else from the latents, else the model's; a seed unless latents are given.
function resolveSettings(sd: Pipeline, o: ResolvedGenerateOptions, where: string): GenerationSettings {
  const factor = sd.vaeScaleFactor;
  const latents = o.latents;
  const latentShape = (h: number | string, w: number | string) => `[1, channels, ${h}, ${w}]`;
  if (latents && latents.shape.length !== 4) throw invalidOption(where, "latents.shape", latents.shape, latentShape(`height / ${factor}`, `width / ${factor}`));
  const height = o.height ?? (latents ? latents.shape[2] * factor : sd.defaultSize[0]);
  const width = o.width ?? (latents ? latents.shape[3] * factor : sd.defaultSize[1]);
  for (const [option, value] of [["width", width], ["height", height]] as const)
    if (value % factor !== 0 || value < 1 || value > MAX_SIZE)
      throw invalidOption(where, option, value, `a positive multiple of the VAE factor (${factor}) up to ${MAX_SIZE}`);
  if (latents && (latents.shape[0] !== 1 || latents.shape[2] * factor !== height || latents.shape[3] * factor !== width))
    throw invalidOption(where, "latents.shape", latents.shape, `${latentShape(height / factor, width / factor)} for a ${width}×${height} image`);
  if (latents && o.seed !== undefined) throw invalidOption(where, "seed", o.seed, "no seed when latents are given (the latents are the noise)");
  return {
    prompt: o.prompt,
    negativePrompt: o.negativePrompt,
    steps: o.steps,
    guidanceScale: o.guidanceScale,
    width,
    height,
    // Drawn here rather than natively so that every image knows, and saves, its seed.
    ...(latents ? {} : { seed: o.seed ?? randomInt(2 ** 47) }),
    scheduler: o.scheduler ?? sd.defaultScheduler,
    capture: o.capture,
  };
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
