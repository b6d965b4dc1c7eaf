// A loaded Stable Diffusion pipeline, and the lifetime of native handles.
import path from "node:path";

import { awaitNative, callNative, DisposedError } from "./errors";
import { defaultMemoryBudget } from "./memory";
import { native, type NativePipeline, type TextKeyCacheStats } from "./native";
import { invalidOption, loadSchema, modelDirSchema, parse, textSchema, type LoadOptions } from "./options";

/** The tiny random-weight SD 1.x model shipped with the package (it draws nothing meaningful). */
export const bundledModelDir = path.join(__dirname, "..", "models", "tiny-sd1");

/** A text as the model's CLIP tokenizer splits it: <|startoftext|> … <|endoftext|>, unpadded. */
export interface Tokenized {
  ids: number[];
  tokens: string[];
}

// Native handles are freed by dispose(), or when their owner is collected.
const registry = new FinalizationRegistry<{ dispose(): void }>((handle) => handle.dispose());

export function track(owner: object, handle: { dispose(): void }): void {
  registry.register(owner, handle, owner);
}

export function release(owner: object, handle: { dispose(): void }): void {
  registry.unregister(owner);
  handle.dispose();
}

const handles = new WeakMap<Pipeline, NativePipeline>();

export class Pipeline {
  /** The model folder, absolute. */
  readonly folder: string;
  readonly device: string;
  /** The dtype it computes in (load()'s dtype, "auto" resolved). */
  readonly dtype: string;
  /** The dtype its matrix weights are stored in (load()'s weightDtype; else dtype). */
  readonly weightDtype: string;
  /** The model folder's scheduler class. */
  readonly defaultScheduler: string;
  /** [height, width] of images when generate() gets no size. */
  readonly defaultSize: readonly [number, number];
  /** Pixels per latent cell (8 for Stable Diffusion): image sides are multiples of it. */
  readonly vaeScaleFactor: number;
  /** Width of the text embeddings the UNet attends to (768 for SD 1.x, 2048 for SDXL). */
  readonly contextDim: number;
  /** Classifier-free guidance scale of generate() when none is given (7.5 SD, 5.0 SDXL). */
  readonly defaultGuidanceScale: number;
  /** Bytes a call may be estimated to need before it is refused (load()'s memoryBudget). */
  readonly memoryBudget: number;

  /** @internal Pipelines come from load(). */
  constructor(handle: NativePipeline, memoryBudget = defaultMemoryBudget()) {
    this.folder = handle.folder;
    this.device = handle.device;
    this.dtype = handle.dtype;
    this.weightDtype = handle.weightDtype;
    this.defaultScheduler = handle.defaultScheduler;
    this.defaultSize = [handle.defaultSize[0], handle.defaultSize[1]];
    this.vaeScaleFactor = handle.vaeScaleFactor;
    this.contextDim = handle.contextDim;
    this.defaultGuidanceScale = handle.defaultGuidanceScale;
    this.memoryBudget = memoryBudget;
    handles.set(this, handle);
    track(this, handle);
  }

  get disposed(): boolean {
    return !handles.has(this);
  }

  /** Token ids and their BPE strings, with <|startoftext|> and <|endoftext|>, unpadded. */
  tokenize(text: string): Tokenized {
    const handle = nativePipeline(this, "tokenize()");
    const checked = parse("tokenize()", textSchema, text, "text");
    return callNative(() => handle.tokenize(checked));
  }

  /** What the cache of recent texts' attribution keys holds and how often it was hit. */
  textKeyCache(): TextKeyCacheStats {
    const handle = nativePipeline(this, "textKeyCache()");
    return callNative(() => handle.textKeyCache());
  }

  /** Frees the model. Images made by it keep what they need and stay usable. */
  dispose(): void {
    const handle = handles.get(this);
    if (!handle) return;
    handles.delete(this);
    release(this, handle);
  }
}

/** The native pipeline behind `sd`, or the error for a value that is not a live Pipeline. */
export function nativePipeline(sd: unknown, where: string): NativePipeline {
  if (!(sd instanceof Pipeline)) throw invalidOption(where, "pipeline", sd, "a Pipeline from load()");
  const handle = handles.get(sd);
  if (!handle) throw new DisposedError(`${where}: the pipeline was disposed`);
  return handle;
}

/**
 * Loads a diffusers Stable Diffusion folder (model_index.json, tokenizer, text_encoder, unet,
 * vae, scheduler); with no folder, the bundled tiny model.
 */
export async function load(options?: LoadOptions): Promise<Pipeline>;
export async function load(modelDir: string | undefined, options?: LoadOptions): Promise<Pipeline>;
export async function load(modelDirOrOptions?: string | LoadOptions, maybeOptions?: LoadOptions): Promise<Pipeline> {
  const where = "load()";
  const [modelDir, options] =
    typeof modelDirOrOptions === "object" && modelDirOrOptions !== null ? [undefined, modelDirOrOptions] : [modelDirOrOptions, maybeOptions];
  const folder = modelDir === undefined ? bundledModelDir : path.resolve(parse(where, modelDirSchema, modelDir, "modelDir"));
  const { memoryBudget, ...resolved } = parse(where, loadSchema, options ?? {});
  return new Pipeline(await awaitNative(native.loadPipeline(folder, resolved)), memoryBudget);
}

/** Start indices of each occurrence of `sequence` in `ids` (token ids of a word within a text). */
export function findTokens(ids: readonly number[], sequence: readonly number[]): number[] {
  const starts: number[] = [];
  for (let i = 0; i + sequence.length <= ids.length; i++) if (sequence.every((id, j) => ids[i + j] === id)) starts.push(i);
  return starts;
}
