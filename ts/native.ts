// The addon's surface as the TypeScript layer sees it (native/addon/*). Internal: users go
// through index.ts. Every method that computes returns a promise resolved off the JS thread;
// rejections carry a `code` (ERR_OVAM_*), mapped to error classes in errors.ts.
import path from "node:path";

import { loadAddon } from "./addon";

export interface NativeTensor {
  data: Float32Array | Uint8Array;
  shape: number[];
}

export interface NativeLoadOptions {
  device: string; // "cpu" | "cuda" | "cuda:N"
  dtype: string; // "auto" | "float32" | "float16" | "bfloat16"
  weightDtype?: string; // the matrix weights' storage; absent = dtype
  threads: number; // 0 = the machine's cores
  textKeyCacheBytes: number;
  attentionBlockBytes: number;
}

export interface NativeCaptureOptions {
  enabled: boolean;
  midBlock: boolean;
  branch: "unconditional" | "conditional";
  dtype: string; // storage dtype
  streaming: boolean; // sum over steps (linear mode only)
  selfAttention: false | { sides?: number[]; branch: "unconditional" | "conditional" };
}

export interface NativeGenerateOptions {
  prompt: string;
  negativePrompt?: string; // undefined = none (SDXL: zero embeddings)
  steps: number;
  guidanceScale: number;
  guidanceRescale: number;
  width: number; // 0 = model default
  height: number;
  seed?: number; // integer < 2^53; undefined with no latents = random
  latents?: NativeTensor; // [1, 4, h/8, w/8]
  scheduler: string; // "" = model folder's
  capture: NativeCaptureOptions;
  image?: NativeTensor; // img2img: uint8 [height, width, 3] of the output size
  strength?: number; // img2img: (0, 1]
  startLatents?: NativeTensor; // img2img: start from these noised latents (a generation's startLatents)
}

// Per-step progress; returning nothing. Abort: call cancel() on the handle returned by start.
export type StepCallback = (step: number, total: number) => void;

export interface NativeAttributeOptions {
  mode: "softmax" | "linear";
  headActivation: "none" | "relu" | "sigmoid" | "tanh" | "sigmoid+relu" | "clamp";
  headAggregation: "sum" | "mean";
  blockInterpolation: "bilinear" | "nearest" | "bicubic";
  mapAggregation: "sum" | "mean";
  mapActivation: "none" | "relu" | "sigmoid" | "tanh" | "sigmoid+relu" | "clamp";
  size: [number, number] | null; // null = the largest block (latent) size
  blocks?: string[]; // stored block names; absent = all
  steps?: [number, number]; // stored evaluations [first, end)
  perBlock?: boolean; // maps [blocks, T, H, W]
}

// A text to attribute: a string (tokenised, encoded in 77-token windows) or raw embeddings [T, D].
export type NativeText = { text: string } | { embeddings: NativeTensor };

export interface NativeMaps {
  maps: NativeTensor; // [T, H, W] float32
  ids: number[]; // token ids (empty for raw embeddings)
}

export interface NativeOptimizeOptions {
  text: string; // the word, e.g. "car"
  context: string; // encoded in this context (defaults to the text itself in the TS layer)
  initial?: NativeTensor; // start embedding [2, D] instead of encoding text
  targets: NativeTensor[]; // one [2, H, W] float mask per generation: [background, object]
  epochs: number;
  lr: number;
  stepSize: number;
  gamma: number;
  attribute: NativeAttributeOptions;
}

export interface NativeOptimizeResult {
  embedding: NativeTensor; // best [2, D]
  final: NativeTensor; // after the last step (what OVAM returns)
  losses: number[]; // per epoch, before its step
  initial: NativeTensor;
}

// native/core/postprocess/label_maps.h; ids increasing, one threshold per class.
export interface NativeLabelMapOptions {
  width: number;
  height: number;
  ids: number[];
  thresholds: number[];
  background: number;
  interpolation: "bilinear" | "bicubic";
  normalize: "max" | "minmax";
  compare: "gt" | "ge";
  uncertain: [number, number] | null;
  minArea: number;
  area: "bbox" | "pixels";
}

export interface NativeJob<T> {
  promise: Promise<T>;
  cancel(): void; // the job rejects with code ERR_OVAM_ABORTED within one step
}

export interface NativePipeline {
  readonly folder: string;
  readonly device: string;
  readonly dtype: string;
  readonly weightDtype: string;
  readonly defaultScheduler: string;
  readonly defaultSize: [number, number]; // [height, width]
  readonly vaeScaleFactor: number;
  readonly contextDim: number;
  readonly defaultGuidanceScale: number; // 7.5 SD, 5.0 SDXL
  tokenize(text: string): { ids: number[]; tokens: string[] }; // cheap, synchronous
  encodeText(text: string): Promise<NativeTensor>; // [T, D] in 77-token windows
  encodePrompt(text: string): Promise<{ context: NativeTensor; pooled: NativeTensor | null }>; // [77, D]; SDXL's pooled [P]
  generate(options: NativeGenerateOptions, onStep: StepCallback | null): NativeJob<NativeGeneration>;
  // Bytes generate() is estimated to need; throws for steps outside the scheduler's range.
  estimateGenerate(options: NativeGenerateOptions): { evaluations: number; attention: number; store: number; decode: number };
  loadGeneration(file: string): Promise<NativeGeneration>;
  textKeyCache(): TextKeyCacheStats;
  dispose(): void;
}

/** The pipeline's cache of recent texts' attribution keys: lookups that hit and missed, what it holds. */
export interface TextKeyCacheStats {
  hits: number;
  misses: number;
  entries: number;
  bytes: number;
  capacity: number;
}

export interface NativeGeneration {
  readonly width: number;
  readonly height: number;
  readonly pixels: Uint8Array; // RGB row-major
  readonly image: NativeTensor; // [H, W, 3] float in [0, 1]
  readonly latents: NativeTensor;
  readonly startLatents?: NativeTensor; // what the denoising loop began from (absent when loaded from a file)
  readonly attentionBytes: number;
  readonly blocks: { name: string; heads: number; height: number; width: number; steps: number }[];
  readonly selfAttentionGrids: { side: number; height: number; width: number; calls: number }[];
  readonly userMetadata?: string; // loadGeneration(): the metadata string given to save()
  attribute(text: NativeText, options: NativeAttributeOptions): Promise<NativeMaps>;
  optimize(others: NativeGeneration[], options: NativeOptimizeOptions, onEpoch: ((epoch: number, loss: number) => void) | null): NativeJob<NativeOptimizeResult>;
  encode(metadata: string): Promise<Buffer>; // the generation file's bytes: safetensors + JSON metadata
  selfAttention(side: number): Promise<NativeTensor>; // [h·w, h·w] mean of the grid of that longer side
  refine(maps: NativeTensor, options: { power: number; side?: number; size?: [number, number] }): Promise<NativeTensor>;
  dispose(): void;
}

export interface NativeAddon {
  torchVersion: string;
  cudaAvailable: boolean;
  loadPipeline(folder: string, options: NativeLoadOptions): Promise<NativePipeline>;
  // A safetensors file's bytes; float tensors stored in `dtype` when given.
  encodeTensors(tensors: Record<string, NativeTensor>, metadata: Record<string, string>, dtype?: "float32" | "float16" | "bfloat16"): Promise<Buffer>;
  // A file, or its bytes (read by readInputFile) with a label for errors.
  loadTensors(file: string | Buffer, label?: string): Promise<{ tensors: Record<string, NativeTensor>; metadata: Record<string, string> }>;
  readMetadata(file: string): Promise<Record<string, string>>; // header only
  schedulers: string[]; // the scheduler classes the core implements (diffusers names)
  // labels [H, W] uint8 of the dense CRF over image [H, W, 3] uint8 and probabilities [L, H, W]
  denseCRF(
    image: NativeTensor,
    probabilities: NativeTensor,
    params: { w1: number; alpha: number; beta: number; w2: number; gamma: number; iterations: number; threads: number },
  ): Promise<NativeTensor>;
  labelMaps(maps: NativeTensor, options: NativeLabelMapOptions): Promise<{ labels: { data: Uint8Array; shape: number[] }; histogram: { data: Int32Array; shape: number[] } }>;
  components: Record<string, (...args: unknown[]) => Promise<unknown>> & {
    // refine_sa_power over one given matrix: A^power · maps, resized to size (ovam/refine.h)
    selfAttentionRefine(matrix: NativeTensor, height: number, width: number, maps: NativeTensor, power: number, size?: [number, number]): Promise<NativeTensor>;
  };
}

// libtorch's OpenMP pool and OpenBLAS's pthread pool both spin while idle and, on a machine with
// few cores, steal each other's time: measured on 2 cores, an SD 1.5 UNet step took 4.4 s with the
// defaults and 2.4 s with short spins. Both libraries read these when the addon loads them, so
// they are set here, before loading; a user's own settings win.
process.env.GOMP_SPINCOUNT ??= "10000";
process.env.OPENBLAS_THREAD_TIMEOUT ??= "4";

// The local cmake-js build, else a prebuilt binary for this machine's libtorch (addon.ts).
export const native: NativeAddon = loadAddon<NativeAddon>(path.join(__dirname, ".."));
