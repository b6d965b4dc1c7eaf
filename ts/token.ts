// OVAM token optimisation: a [<|startoftext|>, token] embedding trained so that its attribution
// map matches object masks; saved to and loaded from safetensors.
import path from "node:path";

import { readInputFile, writeFileAtomic } from "./files";
import { awaitNative, callNative, InvalidArgumentError, NotFoundError, runJob, WeightsError } from "./errors";
import { attentionOf, type GeneratedImage } from "./image";
import { native, type NativeOptimizeOptions, type NativeTensor } from "./native";
import { invalidOption, optimizeSchema, parse, pathSchema, type Map2D, type OptimizeOptions, type Target, type Tensor } from "./options";
import { findTokens } from "./pipeline";

const FORMAT = "ovam-token/1";
const BANK_FORMAT = "ovam-token-bank/1";
// A token is two rows of a text embedding (kilobytes), a bank one per class; anything near this
// is not a token file.
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
    await writeTensors(resolved, { embedding: this.embedding, initial: this.initial }, metadata, where);
  }
}

// Token and bank files are written and read here only, so the file format has one home.
async function writeTensors(file: string, tensors: Record<string, Tensor>, metadata: Record<string, string>, what: string): Promise<void> {
  const bytes = await awaitNative(native.encodeTensors(tensors, metadata));
  await writeFileAtomic(file, bytes, { what });
}

async function readTensors(file: string, what: string): Promise<{ tensors: Record<string, NativeTensor>; metadata: Record<string, string> }> {
  const bytes = await readInputFile(file, { maxBytes: MAX_TOKEN_BYTES, what });
  return awaitNative(native.loadTensors(bytes, file));
}

/**
 * Writes a token bank: one safetensors file with a token per name (tensors NAME.embedding and
 * NAME.initial; metadata the names with each token's text, context and losses), as the thesis's
 * workflow keeps one optimised token per class.
 */
export async function saveTokens(file: string, tokens: ReadonlyMap<string, OptimizedToken> | Readonly<Record<string, OptimizedToken>>): Promise<void> {
  const where = "saveTokens()";
  const resolved = path.resolve(parse(where, pathSchema, file, "file"));
  const entries = tokens instanceof Map ? [...tokens] : Object.entries(tokens);
  if (entries.length === 0) throw invalidOption(where, "tokens", tokens, "a Map or record of at least one OptimizedToken");
  const tensors: Record<string, Tensor> = {};
  const list = entries.map(([name, token]) => {
    if (!(token instanceof OptimizedToken)) throw invalidOption(where, `tokens.${name}`, token, "an OptimizedToken");
    if (name.length === 0 || name.includes("#")) throw invalidOption(where, "tokens", name, 'names that are non-empty and without "#" (it separates file and name in references)');
    tensors[`${name}.embedding`] = token.embedding;
    tensors[`${name}.initial`] = token.initial;
    return { name, text: token.text, context: token.context, losses: token.losses };
  });
  await writeTensors(resolved, tensors, { format: BANK_FORMAT, tokens: JSON.stringify(list) }, where);
}

/**
 * Reads the tokens of a bank written by saveTokens() (or of a single token file, named by its
 * text), in the order written.
 */
export async function loadTokens(file: string): Promise<Map<string, OptimizedToken>> {
  const resolved = path.resolve(parse("loadTokens()", pathSchema, file, "file"));
  const { tensors, metadata } = await readTensors(resolved, "loadTokens()");
  if (metadata.format === FORMAT) {
    const token = tokenFrom(resolved, "", tensors, metadata);
    return new Map([[token.text, token]]);
  }
  let list: unknown;
  try {
    list = JSON.parse(metadata.tokens ?? "");
  } catch {
    list = undefined;
  }
  if (metadata.format !== BANK_FORMAT || !Array.isArray(list))
    throw new InvalidArgumentError(`${resolved}: not an ovam token bank (no ${BANK_FORMAT} metadata with tokens) nor a token file; they are written by saveTokens() / ovam optimize, and token.save()`);
  const tokens = new Map<string, OptimizedToken>();
  for (const entry of list as { name?: unknown; text?: unknown; context?: unknown; losses?: unknown }[]) {
    if (typeof entry?.name !== "string" || typeof entry.text !== "string" || typeof entry.context !== "string")
      throw new InvalidArgumentError(`${resolved}: a bank entry without name, text and context: ${JSON.stringify(entry)}`);
    const dims = JSON.stringify(tensors[`${entry.name}.embedding`]?.shape);
    tokens.set(entry.name, tokenFrom(resolved, `${entry.name}.`, tensors, { text: entry.text, context: entry.context, dims, losses: JSON.stringify(entry.losses ?? []) }));
  }
  return tokens;
}

/**
 * The token a reference names: "FILE#NAME" is token NAME of bank FILE, "FILE" a token file (or a
 * bank holding one token). FILE is relative to `baseDir` (a spec's folder).
 */
export async function resolveTokenRef(ref: string, baseDir = "."): Promise<OptimizedToken> {
  const where = "resolveTokenRef()";
  parse(where, pathSchema, ref, "ref");
  const hash = ref.lastIndexOf("#");
  const [file, name] = hash < 0 ? [ref, undefined] : [ref.slice(0, hash), ref.slice(hash + 1)];
  if (file.length === 0 || name === "") throw invalidOption(where, "ref", ref, '"FILE" or "FILE#NAME" (a bank file and a token name in it)');
  const tokens = await loadTokens(path.resolve(baseDir, file));
  if (name === undefined) {
    if (tokens.size === 1) return [...tokens.values()][0];
    throw invalidOption(where, "ref", ref, `"${file}#NAME" with NAME one of ${[...tokens.keys()].join(", ")} (the bank holds ${tokens.size} tokens)`);
  }
  const token = tokens.get(name);
  if (!token) throw new NotFoundError(`${where}: no token "${name}" in ${path.resolve(baseDir, file)}; it holds ${[...tokens.keys()].join(", ")}`);
  return token;
}

/** Reads a token written by token.save(). */
export async function loadToken(file: string): Promise<OptimizedToken> {
  const resolved = path.resolve(parse("loadToken()", pathSchema, file, "file"));
  const { tensors, metadata } = await readTensors(resolved, "loadToken()");
  if (metadata.format !== FORMAT || metadata.text === undefined || metadata.context === undefined)
    throw new InvalidArgumentError(`${resolved}: not an ovam token file (no ${FORMAT} metadata with text and context); token files are written by token.save()`);
  return tokenFrom(resolved, "", tensors, metadata);
}

// The token of tensors PREFIXembedding and PREFIXinitial, checked against the recorded dims.
function tokenFrom(file: string, prefix: string, tensors: Record<string, NativeTensor>, metadata: Record<string, string | undefined>): OptimizedToken {
  const embedding = tensors[`${prefix}embedding`];
  const initial = tensors[`${prefix}initial`];
  const dims = metadata.dims;
  for (const [name, tensor] of [[`${prefix}embedding`, embedding], [`${prefix}initial`, initial]] as const) {
    if (!tensor || tensor.shape.length !== 2 || tensor.shape[0] !== 2 || JSON.stringify(tensor.shape) !== dims)
      throw new WeightsError(`${file}: tensor "${name}" ${tensor ? `has shape [${tensor.shape}]` : "is missing"}; expected ${dims} = [2, contextDim]`);
    if (!tensor.data.every(Number.isFinite)) throw new WeightsError(`${file}: tensor "${name}" holds NaN or infinite values`);
  }
  return new OptimizedToken({
    text: metadata.text as string,
    context: metadata.context as string,
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
  // A resumed token keeps the context its first optimisation was encoded in.
  const context = o.context ?? o.initial?.context ?? o.text;
  if (!o.initial && findTokens(tokenize(context), word).length === 0) throw invalidOption(where, "context", context, `a text containing "${o.text}"`);

  const request: NativeOptimizeOptions = {
    text: o.text,
    context,
    initial: o.initial ? tokenEmbedding(o.initial, handles[0].pipeline.contextDim, where, "initial") : undefined,
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

/** One training image of the thesis's workflow: a generation and its ground-truth mask per class name. */
export interface TrainingExample {
  image: GeneratedImage;
  masks: Readonly<Record<string, Target>>;
}

export interface OptimizeTokensOptions extends Omit<OptimizeOptions, "text" | "context" | "target" | "targets" | "initial" | "onEpoch"> {
  /** The word each class's token starts from (and stands for); default the class name. */
  texts?: Readonly<Record<string, string>>;
  /** Tokens to resume from, by class name (a bank from loadTokens()); other classes start from their text. */
  initial?: ReadonlyMap<string, OptimizedToken>;
  onEpoch?: (name: string, epoch: number, loss: number) => void;
}

/**
 * A token per class (the thesis's token bank): each class's token is optimised over the examples
 * that have a mask for it, their losses summed (optimizeToken). Classes in order of first mask.
 */
export async function optimizeTokens(examples: readonly TrainingExample[], options: OptimizeTokensOptions = {}): Promise<Map<string, OptimizedToken>> {
  const where = "optimizeTokens()";
  if (!Array.isArray(examples) || examples.length === 0) throw invalidOption(where, "examples", examples, "a non-empty array of { image, masks }");
  const { texts = {}, initial, onEpoch, ...rest } = options;
  const names = [...new Set(examples.flatMap((e, i) => Object.keys(e?.masks ?? invalidExample(where, i))))];
  const tokens = new Map<string, OptimizedToken>();
  for (const name of names) {
    const having = examples.filter((e) => e.masks[name] !== undefined);
    const token = await optimizeToken(
      having.map((e) => e.image),
      {
        ...rest,
        text: texts[name] ?? name,
        targets: having.map((e) => e.masks[name]),
        initial: initial?.get(name),
        onEpoch: onEpoch && ((epoch, loss) => onEpoch(name, epoch, loss)),
      },
    );
    tokens.set(name, token);
  }
  return tokens;
}

function invalidExample(where: string, index: number): never {
  throw invalidOption(where, `examples[${index}]`, undefined, "{ image: GeneratedImage, masks: { [className]: Target } }");
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
