// Public option types and the zod schemas that check them before anything reaches the native
// core. Every leaf schema carries the text of what it accepts, which becomes the error message.
import { z } from "zod";

import { InvalidOptionError, type OptionIssue } from "./errors";
import type { OptimizedToken } from "./token";

export type DType = "float32" | "float16" | "bfloat16";
/** Diffusers class names, or their short forms (native/core/schedulers/scheduler.h). */
export type SchedulerName =
  | "PNDMScheduler"
  | "DDIMScheduler"
  | "EulerDiscreteScheduler"
  | "DPMSolverMultistepScheduler"
  | "LMSDiscreteScheduler"
  | "PNDM"
  | "DDIM"
  | "Euler"
  | "DPMSolver"
  | "LMS";
export type Activation = "none" | "relu" | "sigmoid" | "tanh" | "sigmoid+relu" | "clamp";

/** A dense float tensor, row-major. */
export interface Tensor {
  data: Float32Array;
  shape: number[];
}

/** A 2-D plane, row-major: a map, a mask or an optimisation target. */
export interface Map2D<T extends Float32Array | Uint8Array = Float32Array> {
  data: T;
  width: number;
  height: number;
}

export interface LoadOptions {
  /** "cpu" (default), "cuda" or "cuda:N". */
  device?: string;
  /**
   * Weights and compute dtype; default "auto": bfloat16 where the device computes it natively
   * (CUDA; a CPU with AVX-512 BF16 or AMX: about half the float32 step time), else float32.
   * pipeline.dtype tells which was chosen. "float32" is the exact reference (every fixture
   * tolerance is measured in it); the capture store stays float32 either way (capture.dtype).
   */
  dtype?: DType | "auto";
  /**
   * Storage dtype of the matrix weights (linear and convolution layers, nearly all of the model);
   * default: the compute dtype. "float16" or "bfloat16" with dtype "float32" halves the weights'
   * memory (SD 1.5: 3.97 GiB → 2.0 GiB) and still computes in float32, each layer's weight widened
   * on use, as stable-diffusion.cpp's "f32" does; on a float16 checkpoint the results are the same
   * as full float32 weights. pipeline.weightDtype tells which was chosen.
   */
  weightDtype?: DType;
  /** Intra-op threads; 0 (default) = the machine's cores. */
  threads?: number;
  /**
   * Bytes of recent texts' attribution keys kept per pipeline (the text encoder's output and every
   * block's keys: repeating a word skips both); default 64 MiB, 0 keeps none.
   */
  textKeyCacheBytes?: number;
  /**
   * Largest attention score matrix formed at once, in bytes; larger ones (the 64×64 self-attention
   * at 512² holds 1 GiB) are formed a block of queries at a time, with the same results. Default
   * 128 MiB; 0 forms whole matrices. Lower it to trade a little speed for memory.
   */
  attentionBlockBytes?: number;
  /**
   * Bytes a generate() or attribute() call may be estimated to need (attention matrices, captured
   * attention, outputs) before it is refused; default 80 % of the machine's memory.
   */
  memoryBudget?: number;
}

export interface CaptureOptions {
  /** Also store the mid block's cross-attention (OVAM leaves it out); default false. */
  midBlock?: boolean;
  /** Which classifier-free guidance row to store; default "unconditional" (as OVAM). */
  branch?: "unconditional" | "conditional";
  /** Storage dtype of the captured queries; default "float32". */
  dtype?: DType;
  /** Sum queries over steps instead of keeping each: less memory, exact for mode "linear" only. */
  streaming?: boolean;
  /**
   * Also keep the self-attention (every attn1) as the mean over heads, layers and steps per latent
   * grid, for refine(); default false. One [h·w, h·w] float32 matrix per grid (64 MB at 64×64).
   */
  selfAttention?: SelfAttentionCapture | boolean;
}

export interface SelfAttentionCapture {
  /** Grids to keep, by their longer side (64, 32, 16, 8 for a 512×512 SD image); default all. */
  sides?: number[];
  /** Which classifier-free guidance row; default "conditional". */
  branch?: "unconditional" | "conditional";
}

/** The dense CRF's parameters (denseCRF()); the defaults are OVAM's. */
export interface DenseCRFOptions {
  /** Weight of the bilateral (appearance) Potts kernel; default 10. */
  w1?: number;
  /** Its spatial standard deviation in pixels; default 80. */
  alpha?: number;
  /** Its colour standard deviation in RGB units; default 13. */
  beta?: number;
  /** Weight of the Gaussian (smoothness) Potts kernel; default 3. */
  w2?: number;
  /** Its spatial standard deviation in pixels; default 3. */
  gamma?: number;
  /** Mean-field iterations; default 5. */
  iterations?: number;
  /** Threads for the filtering; 0 (default) = the machine's cores (libtorch's count, process-wide as load()'s). */
  threads?: number;
}

export interface RefineOptions {
  /** "sa-power": Dataset Diffusion's A^τ · c with A the captured self-attention mean. */
  method?: "sa-power";
  /** τ, the number of propagations along A; default 4. */
  power?: number;
  /** The grid of A, by its longer side; default the largest captured. */
  side?: number;
  /** Output [height, width], "image", or (default) the maps' own size. */
  size?: [number, number] | "image";
}

export interface GenerateOptions {
  prompt: string;
  /**
   * Left out: SD encodes "" (as diffusers); SDXL conditions on zeros (force_zeros_for_empty_prompt),
   * while an explicit "" is encoded.
   */
  negativePrompt?: string;
  /** Denoising steps, 1 to 1000; default 50. */
  steps?: number;
  /** Classifier-free guidance scale, 0 to 1000; default the model's (7.5 SD, 5.0 SDXL); ≤ 1 turns guidance off. */
  guidanceScale?: number;
  /** diffusers' guidance_rescale, 0 to 1 (rescales the guided prediction to the conditional one's spread); default 0, off. */
  guidanceRescale?: number;
  /** Image size in pixels, a positive multiple of the VAE factor (8), at most 4096; default the model's. */
  width?: number;
  height?: number;
  /** Seed of the initial noise (drawn as torch.Generator().manual_seed(seed)); default a random one. */
  seed?: number;
  /** The initial noise itself, [1, channels, height / 8, width / 8]; sets the size when width/height are left out. */
  latents?: Tensor;
  /** Default: the model folder's scheduler. */
  scheduler?: SchedulerName;
  /** What attention to keep for attribution; false keeps none. */
  capture?: CaptureOptions | false;
  /**
   * img2img: the picture to start from, a file path (JPEG, PNG, WebP…) or RGB bytes. It is resized
   * to width × height (default: its own size rounded down to multiples of 8).
   */
  image?: string | { data: Uint8Array; width: number; height: number };
  /** img2img: the share of the schedule run over the picture, in (0, 1]; default 0.8. Low keeps the picture, 1 redraws it. */
  strength?: number;
  onStep?: (step: number, total: number) => void;
  signal?: AbortSignal;
}

export interface AttributeOptions {
  /** Per step and head: "softmax" over tokens (default) or "linear" scores. */
  mode?: "softmax" | "linear";
  headActivation?: Activation;
  headAggregation?: "sum" | "mean";
  blockInterpolation?: "bilinear" | "nearest" | "bicubic";
  mapAggregation?: "sum" | "mean";
  mapActivation?: Activation;
  /** Output [height, width], "latent" (the largest attention block's grid) or "image" (default). */
  size?: [number, number] | "latent" | "image";
  /**
   * Only these attention blocks: stored names (image.blocks[i].name) or resolutions, the longer
   * side of a block's grid (e.g. [16, 32]: OVAM's per-resolution ablation). Default: all.
   */
  blocks?: (string | number)[];
  /** Only the stored evaluations [first, end) (0-based, end exclusive); default all. */
  steps?: [number, number];
  /** One map per selected block: maps.blocks names them and maps.block(i) gives each block's maps. */
  perBlock?: boolean;
  /** Refine the maps by the image's self-attention (see refine()); "latent" is then the refinement's grid. */
  refine?: Omit<RefineOptions, "size">;
}

/** A binary (Uint8Array of 0/1) or soft (Float32Array in [0, 1]) object mask, or [background, object] maps. */
export type Target = Map2D<Uint8Array> | Map2D<Float32Array> | [background: Map2D<Float32Array>, object: Map2D<Float32Array>];

export interface OptimizeOptions {
  /** The word the token stands for, e.g. "car". */
  text: string;
  /** A sentence containing the text, encoded to initialise the token; default the text itself. */
  context?: string;
  /** The target for a single image (or give targets, one per image). Each has its image's size. */
  target?: Target;
  targets?: Target[];
  /** Default 30. */
  epochs?: number;
  /** SGD learning rate; default 100. */
  lr?: number;
  /** Epochs between learning-rate decays; default 10. */
  stepSize?: number;
  /** Learning-rate decay factor; default 0.7. */
  gamma?: number;
  /** How maps are computed during optimisation (the size is each target's). */
  attribute?: Omit<AttributeOptions, "size" | "blocks" | "steps" | "perBlock">;
  /** Start from this token's embedding (resume or fine-tune) instead of encoding the text. */
  initial?: OptimizedToken;
  onEpoch?: (epoch: number, loss: number) => void;
  signal?: AbortSignal;
}

export interface SegmentOptions {
  /** The prompt of the img2img pass; default the words, joined by spaces. */
  prompt?: string;
  negativePrompt?: string;
  /** How much of the schedule runs over the photo, in (0, 1]; default 0.5. Low keeps the photo (the maps describe it), high redraws it. */
  strength?: number;
  /** Denoising steps before the strength cuts them; default 50. */
  steps?: number;
  guidanceScale?: number;
  seed?: number;
  scheduler?: SchedulerName;
  /** The longer side of the model's input, in pixels; default the model's own resolution (512 for SD 1.5). */
  side?: number;
  capture?: CaptureOptions;
  /** How the maps are read (mode, blocks, steps…); they come at the photo's size. */
  attribute?: Omit<AttributeOptions, "size" | "perBlock">;
  /** Masks: pixels of the min-max normalised map above this; default 0.5. */
  threshold?: number;
  onStep?: (step: number, total: number) => void;
  signal?: AbortSignal;
}

export interface WordOptions {
  /** Which occurrence (0-based) of a word that appears more than once. */
  occurrence?: number;
}

export interface MaskOptions extends WordOptions {
  /** Pixels of the min-max normalised map above this are 1; default 0.5. */
  threshold?: number;
}

// Leaf builders: the accepted text is every check's message (zod 4 numbers already refuse NaN and ±Infinity).
export const MAX_SIZE = 4096;
const MAX_STEPS = 1000;
const MAX_GUIDANCE = 1000;
export const string = (accepted = "a string") => z.string({ error: accepted });
export const boolean = () => z.boolean({ error: "true or false" });
export const oneOf = <const T extends readonly [string, ...string[]]>(values: T) =>
  z.enum(values, { error: `one of ${values.map((v) => JSON.stringify(v)).join(", ")}` });
export const integer = (min: number, max: number, accepted = `an integer from ${min} to ${max}`) =>
  z.number({ error: accepted }).int({ error: accepted }).min(min, { error: accepted }).max(max, { error: accepted });
export const finite = (accepted: string, check: (value: number) => boolean = () => true) =>
  z.number({ error: accepted }).refine(check, { error: accepted });
export const callback = <F>(accepted: string) => z.custom<F>((value) => typeof value === "function", { error: accepted });
// z.custom rather than z.instanceof, so typed arrays keep their ArrayBufferLike type.
const instance = <T>(Class: abstract new (...args: never[]) => T, accepted: string) =>
  z.custom<T>((value) => value instanceof Class, { error: accepted });
export const abortSignal = () => instance(AbortSignal, "an AbortSignal");
export const options = <S extends z.core.$ZodLooseShape>(shape: S) =>
  z.strictObject(shape, {
    error: (issue) => (issue.code === "unrecognized_keys" ? `option names ${Object.keys(shape).join(", ")}` : "an options object"),
  });

export const dtype = () => oneOf(["float32", "float16", "bfloat16"]);
/** A model's weights and compute dtype: "auto" resolves at load to what the device computes fast. */
export const loadDtype = () => oneOf(["auto", "float32", "float16", "bfloat16"]).default("auto");
const activation = () => oneOf(["none", "relu", "sigmoid", "tanh", "sigmoid+relu", "clamp"]);
// The multiple of the VAE factor is checked against the pipeline (pipeline.ts).
const imageSide = () => integer(1, MAX_SIZE, `a positive multiple of the VAE factor (8) up to ${MAX_SIZE}`);

export const loadSchema = options({
  device: string('"cpu", "cuda" or "cuda:N"')
    .regex(/^(cpu|cuda(:\d+)?)$/, { error: '"cpu", "cuda" or "cuda:N"' })
    .default("cpu"),
  dtype: loadDtype(),
  weightDtype: dtype().optional(),
  threads: integer(0, 1024, "an integer from 0 (all cores) to 1024").default(0),
  textKeyCacheBytes: integer(0, Number.MAX_SAFE_INTEGER, "a number of bytes, an integer ≥ 0").default(64 * 2 ** 20),
  attentionBlockBytes: integer(0, Number.MAX_SAFE_INTEGER, "a number of bytes, an integer ≥ 0 (0: whole matrices)").default(128 * 2 ** 20),
  memoryBudget: finite("a number of bytes > 0", (v) => v > 0).optional(),
});

export const modelDirSchema = string("a model folder path (a non-empty string)").min(1, {
  error: "a model folder path (a non-empty string)",
});

const pictureAccepted = "{ data: Uint8Array (RGB), width, height } with data.length = width × height × 3";
const tensorAccepted = "{ data: Float32Array, shape: number[] } with data.length the product of shape";
const tensor = () =>
  z
    .object(
      {
        data: instance<Float32Array>(Float32Array, tensorAccepted),
        shape: z.array(integer(0, Number.MAX_SAFE_INTEGER, tensorAccepted), { error: tensorAccepted }),
      },
      { error: tensorAccepted },
    )
    .refine((t) => t.data.length === t.shape.reduce((a, b) => a * b, 1), { error: tensorAccepted })
    // NaN or ±Infinity noise would run every step and decode to a meaningless image.
    .refine((t) => t.data.every(Number.isFinite), { error: "finite values", path: ["data"] });

const sideAccepted = `an integer from 1 to ${MAX_SIZE}`;
const selfAttentionSchema = options({
  sides: z.array(integer(1, MAX_SIZE, sideAccepted), { error: `an array of grid sides (${sideAccepted})` }).optional(),
  branch: oneOf(["unconditional", "conditional"]).default("conditional"),
});
const selfAttentionAccepted = "true, false or { sides?, branch? }";

export const captureSchema = options({
  midBlock: boolean().default(false),
  branch: oneOf(["unconditional", "conditional"]).default("unconditional"),
  dtype: dtype().default("float32"),
  streaming: boolean().default(false),
  selfAttention: z
    .union([z.boolean({ error: selfAttentionAccepted }), selfAttentionSchema], { error: selfAttentionAccepted })
    .default(false)
    .transform((v) => (v === true ? selfAttentionSchema.parse({}) : v)),
});

export const captureDefaults = captureSchema.parse({});

export const generateSchema = options({
  prompt: string(),
  negativePrompt: string().optional(),
  steps: integer(1, MAX_STEPS).default(50),
  // Far past any useful scale; larger ones overflow the latents into a flat image.
  guidanceScale: finite(`a number from 0 to ${MAX_GUIDANCE}`, (v) => v >= 0 && v <= MAX_GUIDANCE).optional(),
  guidanceRescale: finite("a number from 0 to 1", (v) => v >= 0 && v <= 1).default(0),
  width: imageSide().optional(),
  height: imageSide().optional(),
  seed: integer(0, Number.MAX_SAFE_INTEGER, "an integer from 0 to 2^53 − 1").optional(),
  latents: tensor().optional(),
  scheduler: oneOf([
    "PNDMScheduler",
    "DDIMScheduler",
    "EulerDiscreteScheduler",
    "DPMSolverMultistepScheduler",
    "LMSDiscreteScheduler",
    "PNDM",
    "DDIM",
    "Euler",
    "DPMSolver",
    "LMS",
  ]).optional(),
  capture: z
    .union([z.literal(false, { error: "false or a capture options object" }), captureSchema], {
      error: "false or a capture options object",
    })
    .default(() => ({ ...captureDefaults })),
  image: z
    .union(
      [
        string("a file path (a non-empty string)").min(1, { error: "a file path (a non-empty string)" }),
        z.object(
          {
            data: instance<Uint8Array>(Uint8Array, pictureAccepted),
            width: integer(1, Number.MAX_SAFE_INTEGER, pictureAccepted),
            height: integer(1, Number.MAX_SAFE_INTEGER, pictureAccepted),
          },
          { error: pictureAccepted },
        ),
      ],
      { error: `a file path or ${pictureAccepted}` },
    )
    .refine((p) => typeof p === "string" || p.data.length === p.width * p.height * 3, { error: pictureAccepted })
    .optional(),
  strength: finite("a number in (0, 1]", (v) => v > 0 && v <= 1).optional(),
  onStep: callback<(step: number, total: number) => void>("a function (step, total) => void").optional(),
  signal: abortSignal().optional(),
});

const blocksAccepted = "stored block names (image.blocks[i].name) or resolutions (a block grid's longer side, e.g. 16)";
const stepsAccepted = "[first, end]: stored evaluations first … end − 1 (integers, 0 ≤ first < end)";
const refineShape = {
  method: oneOf(["sa-power"]).default("sa-power"),
  power: integer(0, 64).default(4),
  side: integer(1, MAX_SIZE, sideAccepted).optional(),
};
const sizeAccepted = `[height, width] (integers from 1 to ${MAX_SIZE}), "latent" or "image"`;
export const attributeShape = {
  mode: oneOf(["softmax", "linear"]).default("softmax"),
  headActivation: activation().default("none"),
  headAggregation: oneOf(["sum", "mean"]).default("sum"),
  blockInterpolation: oneOf(["bilinear", "nearest", "bicubic"]).default("bilinear"),
  mapAggregation: oneOf(["sum", "mean"]).default("sum"),
  mapActivation: activation().default("none"),
};
export const attributeSchema = options({
  ...attributeShape,
  size: z
    .union(
      [
        z.tuple([integer(1, MAX_SIZE, sizeAccepted), integer(1, MAX_SIZE, sizeAccepted)], { error: sizeAccepted }),
        z.literal("latent"),
        z.literal("image"),
      ],
      { error: sizeAccepted },
    )
    .default("image"),
  blocks: z
    .array(z.union([string(blocksAccepted).min(1, { error: blocksAccepted }), integer(1, MAX_SIZE, blocksAccepted)], { error: blocksAccepted }), {
      error: `an array of ${blocksAccepted}`,
    })
    .min(1, { error: `a non-empty array of ${blocksAccepted}` })
    .optional(),
  steps: z
    .tuple([integer(0, Number.MAX_SAFE_INTEGER, stepsAccepted), integer(1, Number.MAX_SAFE_INTEGER, stepsAccepted)], { error: stepsAccepted })
    .refine(([first, end]) => first < end, { error: stepsAccepted })
    .optional(),
  perBlock: boolean().default(false),
  refine: options(refineShape).optional(),
});

const planeAccepted = (kind: string) => `{ data: ${kind}, width, height } with data.length = width × height`;
const plane = <T extends Float32Array | Uint8Array>(Class: abstract new (...args: never[]) => T, kind: string, values: string, inRange: (v: number) => boolean) =>
  z
    .object(
      {
        data: instance(Class, planeAccepted(kind)),
        width: integer(1, MAX_SIZE, planeAccepted(kind)),
        height: integer(1, MAX_SIZE, planeAccepted(kind)),
      },
      { error: planeAccepted(kind) },
    )
    .refine((p) => p.data.length === p.width * p.height, { error: planeAccepted(kind) })
    .refine((p) => p.data.every(inRange), { error: `${kind} values ${values}`, path: ["data"] });
const floatPlane = () => plane<Float32Array>(Float32Array, "Float32Array", "in [0, 1]", (v) => v >= 0 && v <= 1);
const targetAccepted = "a mask { data: Uint8Array (0/1) or Float32Array ([0, 1]), width, height } or [background, object] masks";
const target = () =>
  z.union(
    [
      plane<Uint8Array>(Uint8Array, "Uint8Array", "0 or 1", (v) => v === 0 || v === 1),
      floatPlane(),
      z.tuple([floatPlane(), floatPlane()], { error: targetAccepted }),
    ],
    { error: targetAccepted },
  );

export const optimizeSchema = options({
  text: string(),
  context: string().optional(),
  target: target().optional(),
  targets: z.array(target(), { error: "an array of targets, one per image" }).optional(),
  epochs: integer(1, 100000).default(30),
  lr: finite("a finite number > 0", (v) => v > 0).default(100),
  stepSize: integer(1, 100000).default(10),
  gamma: finite("a number in (0, 1]", (v) => v > 0 && v <= 1).default(0.7),
  attribute: options(attributeShape).default(() => options(attributeShape).parse({})),
  // Checked by shape: token.ts imports this module, so the class cannot be imported here.
  initial: z
    .custom<OptimizedToken>((v) => typeof v === "object" && v !== null && (v as OptimizedToken).embedding?.data instanceof Float32Array && typeof (v as OptimizedToken).context === "string", {
      error: "an OptimizedToken (from optimizeToken(), loadToken() or loadTokens())",
    })
    .optional(),
  onEpoch: callback<(epoch: number, loss: number) => void>("a function (epoch, loss) => void").optional(),
  signal: abortSignal().optional(),
});

const { size: _size, perBlock: _perBlock, ...segmentAttributeShape } = attributeSchema.shape;
export const segmentSchema = options({
  prompt: string().optional(),
  negativePrompt: string().default(""),
  strength: finite("a number in (0, 1]", (v) => v > 0 && v <= 1).default(0.5),
  steps: integer(1, MAX_STEPS).default(50),
  guidanceScale: generateSchema.shape.guidanceScale,
  seed: generateSchema.shape.seed,
  scheduler: generateSchema.shape.scheduler,
  side: integer(8, MAX_SIZE, `an integer from 8 to ${MAX_SIZE}`).optional(),
  capture: captureSchema.default(() => ({ ...captureDefaults })),
  attribute: options(segmentAttributeShape).default(() => options(segmentAttributeShape).parse({})),
  threshold: finite("a number in [0, 1]", (v) => v >= 0 && v <= 1).default(0.5),
  onStep: generateSchema.shape.onStep,
  signal: abortSignal().optional(),
});

export const wordSchema = options({
  occurrence: integer(0, Number.MAX_SAFE_INTEGER, "a non-negative integer").optional(),
});

export const maskSchema = options({
  occurrence: integer(0, Number.MAX_SAFE_INTEGER, "a non-negative integer").optional(),
  threshold: finite("a number in [0, 1]", (v) => v >= 0 && v <= 1).default(0.5),
});

export const refineSchema = options({
  ...refineShape,
  size: z
    .union([z.tuple([integer(1, MAX_SIZE, sizeAccepted), integer(1, MAX_SIZE, sizeAccepted)], { error: sizeAccepted }), z.literal("image")], {
      error: `[height, width] (integers from 1 to ${MAX_SIZE}) or "image"`,
    })
    .optional(),
});

const weight = () => finite("a finite number ≥ 0", (v) => v >= 0);
const std = () => finite("a finite number > 0", (v) => v > 0);
export const denseCRFSchema = options({
  w1: weight().default(10),
  alpha: std().default(80),
  beta: std().default(13),
  w2: weight().default(3),
  gamma: std().default(3),
  iterations: integer(0, 1000).default(5),
  threads: integer(0, 1024, "an integer from 0 (all cores) to 1024").default(0),
});

export const textSchema = string();
export const pathSchema = string("a file path (a non-empty string)").min(1, { error: "a file path (a non-empty string)" });

export type ResolvedLoadOptions = z.output<typeof loadSchema>;
export type ResolvedGenerateOptions = z.output<typeof generateSchema>;
export type ResolvedAttributeOptions = z.output<typeof attributeSchema>;
export type ResolvedOptimizeOptions = z.output<typeof optimizeSchema>;
export type ResolvedSegmentOptions = z.output<typeof segmentSchema>;
export type ResolvedRefineOptions = z.output<typeof refineSchema>;

// The public interfaces and the schemas must accept the same inputs.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const inputsMatch: [
  Same<z.input<typeof loadSchema>, LoadOptions>,
  Same<z.input<typeof generateSchema>, GenerateOptions>,
  Same<z.input<typeof attributeSchema>, AttributeOptions>,
  Same<z.input<typeof optimizeSchema>, OptimizeOptions>,
  Same<z.input<typeof segmentSchema>, SegmentOptions>,
  Same<z.input<typeof wordSchema>, WordOptions>,
  Same<z.input<typeof maskSchema>, MaskOptions>,
  Same<z.input<typeof refineSchema>, RefineOptions>,
  Same<z.input<typeof denseCRFSchema>, DenseCRFOptions>,
] = [true, true, true, true, true, true, true, true, true];
void inputsMatch;

/** `value` checked and defaulted by `schema`, or an InvalidOptionError naming each bad option. */
export function parse<S extends z.ZodType>(where: string, schema: S, value: unknown, name = "options"): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const toIssues = (issue: z.core.$ZodIssue, base: readonly PropertyKey[]): OptionIssue[] => {
    const path = [...base, ...issue.path];
    if (issue.code === "unrecognized_keys")
      return issue.keys.map((key) => ({ option: optionPath(name, [...path, key]), value: valueAt(value, [...path, key]), accepted: issue.message }));
    if (issue.code === "invalid_union") {
      // Where zod cannot tell which alternative was meant, the one that got deepest into the value was.
      const depth = (issues: z.core.$ZodIssue[]) => Math.max(...issues.map((i) => i.path.length));
      const depths = issue.errors.map(depth);
      const deepest = Math.max(...depths);
      if (deepest > 0 && depths.filter((d) => d === deepest).length === 1)
        return issue.errors[depths.indexOf(deepest)].flatMap((inner) => toIssues(inner, path));
    }
    return [{ option: optionPath(name, path), value: valueAt(value, path), accepted: issue.message }];
  };
  throw new InvalidOptionError(
    where,
    result.error.issues.flatMap((issue) => toIssues(issue, [])),
  );
}

/** An InvalidOptionError for a check that needs more than the schema knows (the pipeline, the image). */
export function invalidOption(where: string, option: string, value: unknown, accepted: string): InvalidOptionError {
  return new InvalidOptionError(where, [{ option, value, accepted }]);
}

// "capture.branch", "size[1]", "targets[0].data"; a bare value (not an options object) goes by `name`.
function optionPath(name: string, path: readonly PropertyKey[]): string {
  if (path.length === 0) return name;
  const prefix = name === "options" ? "" : name;
  return path.reduce<string>(
    (text, key) => (typeof key === "number" ? `${text}[${key}]` : text ? `${text}.${String(key)}` : String(key)),
    prefix,
  );
}

function valueAt(value: unknown, path: readonly PropertyKey[]): unknown {
  let current = value;
  for (const key of path) {
    if (typeof current !== "object" || current === null) return undefined;
    current = (current as Record<PropertyKey, unknown>)[key];
  }
  return current;
}
