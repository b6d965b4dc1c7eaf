// Open-vocabulary maps of a photograph: the photo, upright, sized for the model, goes through
// img2img with capture; each word's map comes back at the photo's own size.
import { abortError } from "./errors";
import { generate, type GeneratedImage } from "./image";
import { attribute } from "./maps";
import { modelSize, readPicture, resizePicture, withinMaxSize, type RGBInput } from "./photo";
import { invalidOption, parse, segmentSchema, textSchema, type GenerateOptions, type Map2D, type ResolvedSegmentOptions, type SegmentOptions } from "./options";
import { nativePipeline, type Pipeline } from "./pipeline";
import type { RGBImage } from "./render";

export interface Segmentation {
  /** The photo as read: upright (EXIF orientation applied), at its own size (at most 4096 a side). */
  photo: RGBImage;
  /** The img2img generation at the model's size: its image, captured attention and settings. */
  image: GeneratedImage;
  words: readonly string[];
  /** Per word, its map at the photo's size. */
  maps: Map2D<Float32Array>[];
  /** Per word, 1 where its min-max normalised map exceeds the threshold. */
  masks: Map2D<Uint8Array>[];
}

/** The photo, upright and within the core's size limit, and the img2img options for it. */
export async function photoGeneration(
  sd: Pipeline,
  input: string | RGBInput,
  words: readonly string[],
  o: ResolvedSegmentOptions,
  where: string,
): Promise<{ photo: RGBImage; options: GenerateOptions }> {
  nativePipeline(sd, where);
  // Maps come back at the photo's size, which the core bounds like any image side.
  const photo = await withinMaxSize(await readPicture(input, where, "image"));
  const { width, height } = modelSize(photo.width, photo.height, o.side ?? Math.max(...sd.defaultSize), sd.vaeScaleFactor);
  const resized = await resizePicture(photo, width, height);
  const { attribute: _attribute, threshold: _threshold, side: _side, ...generation } = o;
  return {
    photo,
    options: { ...generation, prompt: o.prompt ?? words.join(" "), image: { data: resized.pixels, width, height }, width, height },
  };
}

/**
 * Maps and masks of `words` over a photo (a file path or RGB bytes): img2img at `strength` with
 * capture, then each word attributed on its own and resized to the photo.
 */
export async function segment(sd: Pipeline, image: string | RGBInput, words: readonly string[], options?: SegmentOptions): Promise<Segmentation> {
  const where = "segment()";
  const o = parse(where, segmentSchema, options ?? {});
  if (!Array.isArray(words) || words.length === 0) throw invalidOption(where, "words", words, "a non-empty array of words");
  const checked = words.map((w, i) => parse(where, textSchema, w, `words[${i}]`));
  const { photo, options: generateOptions } = await photoGeneration(sd, image, checked, o, where);
  const generation = await generate(sd, generateOptions);
  const maps: Map2D<Float32Array>[] = [];
  const masks: Map2D<Uint8Array>[] = [];
  for (const word of checked) {
    if (o.signal?.aborted) throw abortError(where, o.signal);
    const wordMaps = await attribute(generation, word, { ...o.attribute, size: [photo.height, photo.width] });
    maps.push(wordMaps.word(word));
    masks.push(wordMaps.mask(word, { threshold: o.threshold }));
  }
  return { photo, image: generation, words: checked, maps, masks };
}
