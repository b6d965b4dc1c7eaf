// Attribution maps: one map per token of a text (or of an optimised token) over a generated
// image, with per-word maps and masks.
import { AmbiguousWordError, awaitNative, callNative, InternalError, WordNotFoundError } from "./errors";
import { attentionOf, type GeneratedImage } from "./image";
import { checkMemory } from "./memory";
import type { NativeAttributeOptions, NativeTensor } from "./native";
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
 * over the image's captured attention, one map per token.
 */
export async function attribute(image: GeneratedImage, text: string | OptimizedToken, options?: AttributeOptions): Promise<AttributionMaps> {
  const where = "attribute()";
  const { size, ...o } = parse(where, attributeSchema, options ?? {});
  const { generation, pipeline } = attentionOf(image, where, "image", { option: "mode", value: o.mode });
  const request: NativeAttributeOptions = { ...o, size: size === "image" ? [image.height, image.width] : size === "latent" ? null : size };
  const { pipeline: owner } = image;
  // The maps are held twice at the end (the core's tensor and its JavaScript copy).
  const [height, width] = request.size ?? [Math.max(...image.blocks.map((b) => b.height)), Math.max(...image.blocks.map((b) => b.width))];
  const checkMaps = (tokens: number) => checkMemory(where, "size", size, { maps: 2 * tokens * height * width * 4 }, owner.memoryBudget);
  if (text instanceof OptimizedToken) {
    const embeddings = tokenEmbedding(text, pipeline.contextDim, where, "token");
    const [bos] = callNative(() => pipeline.tokenize("")).tokens;
    checkMaps(2);
    const result = await awaitNative(generation.attribute({ embeddings }, request));
    return new AttributionMaps(result.maps, [bos, text.text], [], (_, word) => (word === text.text ? [[1]] : []));
  }
  if (typeof text !== "string") throw invalidOption(where, "text", text, "a string or an OptimizedToken");
  const { tokens, ids } = callNative(() => pipeline.tokenize(text));
  if (ids.length <= 2) throw invalidOption(where, "text", text, "a text with at least one token");
  checkMaps(ids.length);
  const result = await awaitNative(generation.attribute({ text }, request));
  return new AttributionMaps(result.maps, tokens, ids, (at, word) => locateWord(at, owner, word, ids));
}

// A word's tokens as the pipeline's tokenizer splits it, found in the attributed text's ids.
function locateWord(where: string, pipeline: Pipeline, word: string, ids: readonly number[]): number[][] {
  const handle = nativePipeline(pipeline, where);
  const sequence = callNative(() => handle.tokenize(word)).ids.slice(1, -1);
  if (sequence.length === 0) throw invalidOption(where, "word", word, "a word with at least one token");
  return findTokens(ids, sequence).map((start) => sequence.map((_, i) => start + i));
}
