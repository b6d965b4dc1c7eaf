// Attribution maps: one map per token of a text (or of an optimised token) over a generated
// image, with per-word maps and masks.
import { AmbiguousWordError, awaitNative, callNative, InternalError, WordNotFoundError } from "./errors";
import { attentionOf, type GeneratedImage } from "./image";
import { checkMemory } from "./memory";
import type { NativeAttributeOptions, NativeTensor, NativeText } from "./native";
import {
  attributeSchema,
  invalidOption,
  maskSchema,
  parse,
  textSchema,
  wordSchema,
  type AttributeOptions,
  type Map2D,
  type MaskOptions,
  type WordOptions,
} from "./options";
import { encodeGray16 } from "./png";
import { findTokens, nativePipeline, type Pipeline } from "./pipeline";
import { refinementGrid } from "./refine";
import { OptimizedToken, tokenEmbedding } from "./token";

/** Each occurrence of a word as the token indices it spans. */
type Locate = (where: string, word: string) => number[][];

export class AttributionMaps {
  /** One entry per map: BPE tokens with <|startoftext|> and <|endoftext|> (or the token's text). */
  readonly tokens: readonly string[];
  /** Token ids; empty for the maps of an OptimizedToken. */
  readonly ids: readonly number[];
  /** [tokens, height, width]. */
  readonly shape: readonly [number, number, number];
  /** All maps, row-major in `shape`. */
  readonly data: Float32Array;
  readonly height: number;
  readonly width: number;
  readonly #locate: Locate;

  /** @internal Maps come from attribute(). */
  constructor(maps: NativeTensor, tokens: readonly string[], ids: readonly number[], locate: Locate) {
    const [count, height, width] = maps.shape;
    if (maps.shape.length !== 3 || count !== tokens.length)
      throw new InternalError(`attribute(): maps of shape [${maps.shape}] for ${tokens.length} tokens`);
    this.tokens = tokens;
    this.ids = ids;
    this.shape = [count, height, width];
    this.data = maps.data as Float32Array;
    this.height = height;
    this.width = width;
    this.#locate = locate;
  }

  /** The map of token `index` (a copy). */
  token(index: number): Map2D<Float32Array> {
    if (!Number.isInteger(index) || index < 0 || index >= this.tokens.length)
      throw invalidOption("maps.token()", "index", index, `an integer from 0 to ${this.tokens.length - 1}`);
    const size = this.width * this.height;
    return { data: this.data.slice(index * size, (index + 1) * size), width: this.width, height: this.height };
  }

  /** Each occurrence of `word` among the tokens, as the token indices it spans. */
  occurrences(word: string): number[][] {
    const where = "maps.occurrences()";
    return this.#locate(where, parse(where, textSchema, word, "word"));
  }

  /** The mean of the maps of the word's BPE tokens. A word occurring twice needs { occurrence }. */
  word(word: string, options?: WordOptions): Map2D<Float32Array> {
    const where = "maps.word()";
    const { occurrence } = parse(where, wordSchema, options ?? {});
    return this.#wordMap(where, word, occurrence);
  }

  /** 1 where the min-max normalised word map exceeds `threshold` (default 0.5), else 0. */
  mask(word: string, options?: MaskOptions): Map2D<Uint8Array> {
    const where = "maps.mask()";
    const { occurrence, threshold } = parse(where, maskSchema, options ?? {});
    const normalised = minMax(this.#wordMap(where, word, occurrence).data);
    return { data: Uint8Array.from(normalised, (v) => (v > threshold ? 1 : 0)), width: this.width, height: this.height };
  }

  /** A word's (or a token index's) map, min-max normalised, as a 16-bit greyscale PNG. */
  toPNG(word: string | number, options?: WordOptions): Promise<Buffer> {
    const map = typeof word === "number" ? this.token(word) : this.word(word, options);
    const normalised = minMax(map.data);
    return encodeGray16(this.width, this.height, Uint16Array.from(normalised, (v) => Math.round(v * 65535)));
  }

  /** @internal The same tokens over other maps (refine() makes them). */
  withMaps(maps: NativeTensor): AttributionMaps {
    const out = new AttributionMaps(maps, this.tokens, this.ids, this.#locate);
    const image = sources.get(this);
    if (image) sources.set(out, image);
    return out;
  }

  #wordMap(where: string, word: string, occurrence: number | undefined): Map2D<Float32Array> {
    const checked = parse(where, textSchema, word, "word");
    const found = this.#locate(where, checked);
    if (found.length === 0) throw new WordNotFoundError(checked, this.tokens);
    if (occurrence === undefined && found.length > 1) throw new AmbiguousWordError(checked, found);
    if (occurrence !== undefined && occurrence >= found.length)
      throw invalidOption(where, "occurrence", occurrence, `an integer from 0 to ${found.length - 1} ("${checked}" occurs ${found.length} time(s))`);
    const indices = found[occurrence ?? 0];
    const size = this.width * this.height;
    const mean = new Float32Array(size);
    for (const index of indices) {
      const map = this.data.subarray(index * size, (index + 1) * size);
      for (let i = 0; i < size; i++) mean[i] += map[i] / indices.length;
    }
    return { data: mean, width: this.width, height: this.height };
  }
}

/** Per-block maps (attribute() with perBlock): one set of token maps per selected attention block. */
export class PerBlockMaps {
  /** The blocks, in the order of the maps (stored names, e.g. "up_blocks.1.attentions.0.transformer_blocks.0.attn2"). */
  readonly blocks: readonly string[];
  readonly tokens: readonly string[];
  readonly ids: readonly number[];
  /** [blocks, tokens, height, width]. */
  readonly shape: readonly [number, number, number, number];
  /** All maps, row-major in `shape`. */
  readonly data: Float32Array;
  readonly height: number;
  readonly width: number;
  readonly #locate: Locate;

  /** @internal Maps come from attribute(). */
  constructor(maps: NativeTensor, blocks: readonly string[], tokens: readonly string[], ids: readonly number[], locate: Locate) {
    const [count, tokenCount, height, width] = maps.shape;
    if (maps.shape.length !== 4 || count !== blocks.length || tokenCount !== tokens.length)
      throw new InternalError(`attribute(): per-block maps of shape [${maps.shape}] for ${blocks.length} blocks and ${tokens.length} tokens`);
    this.blocks = blocks;
    this.tokens = tokens;
    this.ids = ids;
    this.shape = [count, tokenCount, height, width];
    this.data = maps.data as Float32Array;
    this.height = height;
    this.width = width;
    this.#locate = locate;
  }

  /** The maps of one block (by index or stored name), with word() and mask() as for the summed maps (a view, no copy). */
  block(which: number | string): AttributionMaps {
    const index = typeof which === "string" ? this.blocks.indexOf(which) : which;
    if (!Number.isInteger(index) || index < 0 || index >= this.blocks.length)
      throw invalidOption("maps.block()", "block", which, `an index from 0 to ${this.blocks.length - 1} or one of ${this.blocks.join(", ")}`);
    const size = this.tokens.length * this.height * this.width;
    const data = this.data.subarray(index * size, (index + 1) * size);
    return new AttributionMaps({ data, shape: [this.tokens.length, this.height, this.width] }, this.tokens, this.ids, this.#locate);
  }
}

// The image each attribute() result was computed over (refine() reads its self-attention).
const sources = new WeakMap<AttributionMaps, GeneratedImage>();

/** The image `maps` were computed over, or undefined for maps that did not come from attribute(). */
export function sourceImage(maps: AttributionMaps): GeneratedImage | undefined {
  return sources.get(maps);
}

// (v − min) / (max − min); a constant map normalises to zeros.
export function minMax(data: Float32Array): Float32Array {
  let min = Infinity;
  let max = -Infinity;
  for (const v of data) {
    min = Math.min(min, v);
    max = Math.max(max, v);
  }
  const range = max - min;
  return data.map((v) => (range > 0 ? (v - min) / range : 0));
}

/**
 * Attribution maps of `text` (any text: it need not be in the prompt) or of an optimised token
 * over the image's captured attention, one map per token; with perBlock, one set per block.
 */
export async function attribute(image: GeneratedImage, text: string | OptimizedToken, options: AttributeOptions & { perBlock: true }): Promise<PerBlockMaps>;
export async function attribute(image: GeneratedImage, text: string | OptimizedToken, options?: AttributeOptions & { perBlock?: false }): Promise<AttributionMaps>;
export async function attribute(image: GeneratedImage, text: string | OptimizedToken, options?: AttributeOptions): Promise<AttributionMaps | PerBlockMaps>;
export async function attribute(image: GeneratedImage, text: string | OptimizedToken, options?: AttributeOptions): Promise<AttributionMaps | PerBlockMaps> {
  const where = "attribute()";
  const { size, blocks, steps, refine, ...o } = parse(where, attributeSchema, options ?? {});
  const { generation, pipeline } = attentionOf(image, where, "image", { option: "mode", value: o.mode });
  const chosen = blocks === undefined ? undefined : selectBlocks(image, blocks, where);
  let request: NativeAttributeOptions = {
    ...o,
    size: size === "image" ? [image.height, image.width] : size === "latent" ? null : size,
    ...(chosen ? { blocks: chosen } : {}),
    ...(steps ? { steps } : {}),
  };
  // Refined maps are computed on the refinement's grid, refined there, then resized to the asked size.
  const grid = refine && refinementGrid(image, refine.side, where);
  const output = grid && request.size ? request.size : grid ? ([grid.height, grid.width] as [number, number]) : null;
  if (grid) request = { ...request, size: [grid.height, grid.width] };
  const run = async (input: NativeText): Promise<NativeTensor> => {
    const { maps } = await awaitNative(generation.attribute(input, request));
    if (!grid || !refine || !output) return maps;
    // Per-block maps [blocks, tokens, h, w] are refined as one stack of maps.
    const [height, width] = maps.shape.slice(-2);
    const stacked = { data: maps.data, shape: [maps.data.length / (height * width), height, width] };
    const refined = await awaitNative(generation.refine(stacked, { power: refine.power, side: grid.side, size: output }));
    return { data: refined.data, shape: [...maps.shape.slice(0, -2), ...output] };
  };
  const { pipeline: owner } = image;
  let tokens: readonly string[], ids: readonly number[], locate: Locate, input: NativeText;
  if (text instanceof OptimizedToken) {
    input = { embeddings: tokenEmbedding(text, pipeline.contextDim, where, "token") };
    tokens = [callNative(() => pipeline.tokenize("")).tokens[0], text.text];
    ids = [];
    locate = (_, word) => (word === text.text ? [[1]] : []);
  } else {
    if (typeof text !== "string") throw invalidOption(where, "text", text, "a string or an OptimizedToken");
    ({ tokens, ids } = callNative(() => pipeline.tokenize(text)));
    if (ids.length <= 2) throw invalidOption(where, "text", text, "a text with at least one token");
    const textIds = ids;
    input = { text };
    locate = (at, word) => locateWord(at, owner, word, textIds);
  }
  // The maps are held twice at the end (the core's tensor and its JavaScript copy).
  const [height, width] = output ?? request.size ?? [Math.max(...image.blocks.map((b) => b.height)), Math.max(...image.blocks.map((b) => b.width))];
  const sets = o.perBlock ? (chosen ?? image.blocks).length : 1;
  checkMemory(where, "size", size, { maps: 2 * sets * tokens.length * height * width * 4 }, owner.memoryBudget);
  const maps = await run(input);
  if (o.perBlock) return new PerBlockMaps(maps, chosen ?? image.blocks.map((b) => b.name), tokens, ids, locate);
  return withSource(new AttributionMaps(maps, tokens, ids, locate), image);
}

// Block names from names and resolutions (a block grid's longer side), in the store's order.
function selectBlocks(image: GeneratedImage, wanted: readonly (string | number)[], where: string): string[] {
  const side = (b: { height: number; width: number }) => Math.max(b.height, b.width);
  const stored = image.blocks;
  for (const w of wanted) {
    const found = typeof w === "number" ? stored.some((b) => side(b) === w) : stored.some((b) => b.name === w);
    if (!found) {
      const sides = [...new Set(stored.map(side))].sort((a, b) => a - b);
      throw invalidOption(where, "blocks", w, `a stored block name (${stored.map((b) => b.name).join(", ")}) or resolution (${sides.join(", ")})`);
    }
  }
  return stored.filter((b) => wanted.includes(b.name) || wanted.includes(side(b))).map((b) => b.name);
}

function withSource(maps: AttributionMaps, image: GeneratedImage): AttributionMaps {
  sources.set(maps, image);
  return maps;
}

// A word's tokens as the pipeline's tokenizer splits it, found in the attributed text's ids.
function locateWord(where: string, pipeline: Pipeline, word: string, ids: readonly number[]): number[][] {
  const handle = nativePipeline(pipeline, where);
  const sequence = callNative(() => handle.tokenize(word)).ids.slice(1, -1);
  if (sequence.length === 0) throw invalidOption(where, "word", word, "a word with at least one token");
  return findTokens(ids, sequence).map((start) => sequence.map((_, i) => start + i));
}
