// OVAM token optimisation: a [<|startoftext|>, token] embedding trained so that its attribution
// map matches object masks; saved to and loaded from safetensors.
import path from "node:path";

import { readInputFile, writeFileAtomic } from "./files";
import { awaitNative, callNative, InvalidArgumentError, runJob, WeightsError } from "./errors";
import { attentionOf, type GeneratedImage } from "./image";
import { native, type NativeOptimizeOptions, type NativeTensor } from "./native";
import { invalidOption, optimizeSchema, parse, pathSchema, type Map2D, type OptimizeOptions, type Target, type Tensor } from "./options";
import { findTokens } from "./pipeline";

const FORMAT = "ovam-token/1";
// A token is two rows of a text embedding (kilobytes); anything near this is not a token file.
const MAX_TOKEN_BYTES = 64 << 20;

export interface OptimizedTokenFields {
  text: string;
  context: string;
  embedding: Tensor;
  initial: Tensor;
  losses: readonly number[];
}

export class OptimizedToken {
  /** The word the token stands for. */
  readonly text: string;
  /** The sentence its initial embedding was encoded in. */
  readonly context: string;
  /** [2, contextDim]: the <|startoftext|> row and the token row, from the epoch with the lowest loss. */
  readonly embedding: Tensor;
  /** The embedding optimisation started from. */
  readonly initial: Tensor;
  /** Loss per epoch, before that epoch's step. */
  readonly losses: readonly number[];

  constructor(fields: OptimizedTokenFields) {
    ({ text: this.text, context: this.context, embedding: this.embedding, initial: this.initial, losses: this.losses } = fields);
  }

  /** Writes the token to a safetensors file, atomically (tensors embedding, initial; metadata text, context, dims, losses). */
  async save(file: string): Promise<void> {
    const where = "token.save()";
    const resolved = path.resolve(parse(where, pathSchema, file, "file"));
    const metadata = {
      format: FORMAT,
      text: this.text,
      context: this.context,
      dims: JSON.stringify(this.embedding.shape),
      losses: JSON.stringify(this.losses),
    };
    const bytes = await awaitNative(native.encodeTensors({ embedding: this.embedding, initial: this.initial }, metadata));
    await writeFileAtomic(resolved, bytes, { what: where });
  }
}

/** Reads a token written by token.save(). */
export async function loadToken(file: string): Promise<OptimizedToken> {
  const where = "loadToken()";
  const resolved = path.resolve(parse(where, pathSchema, file, "file"));
  const bytes = await readInputFile(resolved, { maxBytes: MAX_TOKEN_BYTES, what: where });
  const { tensors, metadata } = await awaitNative(native.loadTensors(bytes, resolved));
  if (metadata.format !== FORMAT || metadata.text === undefined || metadata.context === undefined)
    throw new InvalidArgumentError(`${resolved}: not an ovam token file (no ${FORMAT} metadata with text and context); token files are written by token.save()`);
  const { embedding, initial } = tensors;
  const dims = metadata.dims;
  for (const [name, tensor] of [["embedding", embedding], ["initial", initial]] as const) {
    if (!tensor || tensor.shape.length !== 2 || tensor.shape[0] !== 2 || JSON.stringify(tensor.shape) !== dims)
      throw new WeightsError(`${resolved}: tensor "${name}" ${tensor ? `has shape [${tensor.shape}]` : "is missing"}; expected ${dims} = [2, contextDim]`);
    if (!tensor.data.every(Number.isFinite)) throw new WeightsError(`${resolved}: tensor "${name}" holds NaN or infinite values`);
  }
  return new OptimizedToken({
    text: metadata.text,
    context: metadata.context,
    embedding: floatTensor(embedding),
    initial: floatTensor(initial),
    losses: parseLosses(metadata.losses),
  });
}

function parseLosses(text: string | undefined): number[] {
  try {
    const losses: unknown = JSON.parse(text ?? "[]");
    return Array.isArray(losses) ? losses.filter((x): x is number => typeof x === "number") : [];
  } catch {
    return [];
  }
}

function floatTensor(tensor: NativeTensor): Tensor {
  return { data: tensor.data as Float32Array, shape: tensor.shape };
}

/** The token's embedding, checked against the width of the pipeline's text embeddings. */
export function tokenEmbedding(token: OptimizedToken, contextDim: number, where: string, option: string): Tensor {
  const width = token.embedding.shape[1];
  if (width !== contextDim)
    throw invalidOption(where, option, `a token of width ${width}`, `a token optimised on a model with ${contextDim}-wide text embeddings`);
  return token.embedding;
}

/**
 * Optimises a token for `options.text` so that its attribution map on each image matches that
 * image's target (OVAM: SGD with step decay, cross-entropy over [background, object]).
 */
export async function optimizeToken(images: GeneratedImage | readonly GeneratedImage[], options: OptimizeOptions): Promise<OptimizedToken> {
  const where = "optimizeToken()";
  const many = Array.isArray(images);
  const list: readonly GeneratedImage[] = many ? images : [images as GeneratedImage];
  if (list.length === 0) throw invalidOption(where, "images", images, "an image or a non-empty array of images");
  const o = parse(where, optimizeSchema, options);
  const mode = { option: "attribute.mode", value: o.attribute.mode };
  const names = list.map((_, i) => (many ? `images[${i}]` : "image"));
  const handles = list.map((image, i) => attentionOf(image, where, names[i], mode));
  list.forEach((image, i) => {
    if (image.pipeline !== list[0].pipeline) throw invalidOption(where, names[i], `an image of ${image.pipeline.folder}`, `images generated by one pipeline (that of ${names[0]})`);
  });

  if ((o.target === undefined) === (o.targets === undefined))
    throw invalidOption(where, "target", o.target ?? o.targets, "either target (for one image) or targets (one per image), not both");
  const targetName = (i: number) => (o.targets ? `targets[${i}]` : "target");
  const targets = o.targets ?? [o.target as Target];
  if (targets.length !== list.length)
    throw invalidOption(where, o.targets ? "targets" : "target", `${targets.length} target(s)`, `one target per image (${list.length})`);
  const planes = targets.map((target, i) => targetTensor(target, list[i], where, targetName(i)));

  const tokenize = (text: string) => callNative(() => handles[0].pipeline.tokenize(text)).ids.slice(1, -1);
  const word = tokenize(o.text);
  if (word.length === 0) throw invalidOption(where, "text", o.text, "a text with at least one token");
  const context = o.context ?? o.text;
  if (findTokens(tokenize(context), word).length === 0) throw invalidOption(where, "context", context, `a text containing "${o.text}"`);

  const request: NativeOptimizeOptions = {
    text: o.text,
    context,
    targets: planes,
    epochs: o.epochs,
    lr: o.lr,
    stepSize: o.stepSize,
    gamma: o.gamma,
    attribute: { ...o.attribute, size: null }, // the core uses each target's size
  };
  const [first, ...others] = handles.map((h) => h.generation);
  const result = await runJob(where, (progress) => first.optimize(others, request, progress), o.onEpoch, o.signal);
  return new OptimizedToken({
    text: o.text,
    context,
    embedding: floatTensor(result.embedding),
    initial: floatTensor(result.initial),
    losses: result.losses,
  });
}

// [2, H, W] = [background, object]; a single mask m gives [1 − m, m].
function targetTensor(target: Target, image: GeneratedImage, where: string, option: string): NativeTensor {
  const pair = Array.isArray(target) ? target : undefined;
  for (const plane of pair ?? [target as Map2D<Float32Array | Uint8Array>])
    if (plane.width !== image.width || plane.height !== image.height)
      throw invalidOption(where, option, `a ${plane.width}×${plane.height} mask`, `a ${image.width}×${image.height} mask (the image's size)`);
  const size = image.width * image.height;
  const data = new Float32Array(2 * size);
  if (pair) {
    data.set(pair[0].data, 0);
    data.set(pair[1].data, size);
  } else {
    const mask = (target as Map2D<Float32Array | Uint8Array>).data;
    for (let i = 0; i < size; i++) {
      data[i] = 1 - mask[i];
      data[size + i] = mask[i];
    }
  }
  return { data, shape: [2, image.height, image.width] };
}
