// One item of a dataset: generate → attribute each class → [refine] → masks → write its files.
// The same function serves the local runner and the queue's workers; it writes the item's files
// (each atomically) and returns its manifest line without appending it: the caller's single
// manifest writer does that, last, so the line is the commit point.
import path from "node:path";

import { abortError, awaitNative, InvalidArgumentError } from "../errors";
import { generate, type GeneratedImage } from "../image";
import { attribute } from "../maps";
import { labelMaps, type LabelMap } from "../masks";
import { native } from "../native";
import { invalidOption, type Tensor } from "../options";
import { encodeIndexed, encodeRGB } from "../png";
import type { Pipeline } from "../pipeline";
import { refineMaps, refinementGrid } from "../refine";
import { labelOverlay } from "../render";
import type { OptimizedToken } from "../token";
import { writeFileAtomic } from "../files";
import { itemFiles, paletteOf } from "./layout";
import type { ManifestLine } from "./manifest";
import type { DatasetClass, DatasetSpec, Item } from "./spec";

export interface ItemContext {
  pipeline: Pipeline;
  spec: DatasetSpec;
  /** The dataset folder (its layout's folders already made). */
  out: string;
  /** The optimised token of each class attributed by one, by class id. */
  tokens: ReadonlyMap<number, OptimizedToken>;
}

/** Per labelled class, its map at the attention grid: [classes, h, w]. */
export interface ClassMaps {
  classes: DatasetClass[];
  data: Float32Array;
  height: number;
  width: number;
}

const MAPS_FORMAT = "ovam-dataset-maps/1";

/** The self-attention of one latent grid, as a maps file holds it. */
export interface SavedSelfAttention {
  /** "self_attention.<h>x<w>", as in generation files. */
  tensor: string;
  side: number;
  height: number;
  width: number;
  /** [h·w, h·w]. */
  matrix: Tensor;
}

/** An item computed but not yet written. */
export interface MadeItem {
  item: Item;
  image: GeneratedImage;
  /** The maps the labels were made from (refined when the spec refines). */
  maps: ClassMaps;
  /** The maps as attributed, when the spec refines them. */
  unrefined?: ClassMaps;
  /** With save.selfAttention: the grid refinement uses. */
  selfAttention?: SavedSelfAttention;
  label: LabelMap;
  /** Seconds spent generating, attributing and labelling. */
  timings: { generate: number; attribute: number; masks: number };
}

/** Generates, labels and writes item `item` of `ctx.spec`; returns its manifest line (not appended). */
export async function runItem(ctx: ItemContext, item: Item, opts: { signal?: AbortSignal } = {}): Promise<ManifestLine> {
  return writeItem(ctx, await makeItem(ctx, item, opts));
}

/** The compute half of runItem: generate → attribute each class → [refine] → masks. */
export async function makeItem(ctx: ItemContext, item: Item, opts: { signal?: AbortSignal } = {}): Promise<MadeItem> {
  const { spec, pipeline } = ctx;
  const { signal } = opts;
  const clock = timer();
  const { capture, ...settings } = spec.generate;
  const image = await generate(pipeline, { ...settings, prompt: item.prompt, seed: item.seed, capture: { ...capture, streaming: false }, signal });
  try {
    const generated = clock.lap();
    const attributed = await attributeClasses(ctx, image, item, signal);
    // Each class's map refined as one (so that `ovam masks` can refine saved maps the same way).
    const maps = spec.refine ? await refineClassMaps(image, attributed, spec.refine) : attributed;
    const selfAttention = spec.save.selfAttention ? await savedSelfAttention(image, spec.refine?.side) : undefined;
    const attributing = clock.lap();
    // The captured attention is the memory that matters; only a saved generation file still needs it.
    if (!spec.save.generation) image.dispose();
    const label = await labelMaps(
      { data: maps.data, shape: [maps.classes.length, maps.height, maps.width] },
      {
        width: image.width,
        height: image.height,
        classes: maps.classes.map((c) => ({ id: c.id, threshold: c.threshold })),
        background: spec.background,
        settings: spec.masks,
        image: { data: image.pixels, width: image.width, height: image.height },
      },
    );
    if (signal?.aborted) throw abortError(`item ${item.id}`, signal);
    return {
      item,
      image,
      maps,
      ...(spec.refine ? { unrefined: attributed } : {}),
      ...(selfAttention ? { selfAttention } : {}),
      label,
      timings: { generate: generated, attribute: attributing, masks: clock.lap() },
    };
  } catch (error) {
    image.dispose();
    throw error;
  }
}

/** The write half of runItem: the item's files, each through the atomic writer; returns its manifest line. */
export async function writeItem(ctx: ItemContext, made: MadeItem): Promise<ManifestLine> {
  const { item, image, maps, label } = made;
  const clock = timer();
  try {
    const files = await writeFiles(ctx, made);
    const pixels = image.width * image.height;
    return {
      id: item.id,
      index: item.index,
      prompt: item.prompt,
      classes: item.classes,
      seed: item.seed,
      settings: { steps: image.settings.steps, guidanceScale: image.settings.guidanceScale, width: image.width, height: image.height, scheduler: image.settings.scheduler },
      foreground: Object.fromEntries(maps.classes.map((c) => [c.name, label.histogram[c.id] / pixels])),
      uncertain: ctx.spec.background === 255 ? 0 : label.histogram[255] / pixels,
      files,
      timings: { ...made.timings, write: clock.lap() },
    };
  } finally {
    image.dispose();
  }
}

/** Each of the item's classes attributed on its own (a word's map is the mean of its tokens), at the attention grid. */
export async function attributeClasses(ctx: ItemContext, image: GeneratedImage, item: Item, signal?: AbortSignal): Promise<ClassMaps> {
  const classes = item.classes.map((id) => {
    const found = ctx.spec.classes.find((c) => c.id === id);
    if (!found) throw new InvalidArgumentError(`item ${item.id}: class id ${id} is not among the spec's classes`);
    return found;
  });
  const planes: Float32Array[] = [];
  let height = 0;
  let width = 0;
  for (const c of classes) {
    if (signal?.aborted) throw abortError(`item ${item.id}`, signal);
    const token = "token" in c.attribute ? ctx.tokens.get(c.id) : undefined;
    if ("token" in c.attribute && !token) throw new InvalidArgumentError(`item ${item.id}: no token loaded for class "${c.name}"`);
    const maps = await attribute(image, token ?? (c.attribute as { text: string }).text, { ...ctx.spec.attribute, size: "latent" });
    const map = maps.word(token ? token.text : (c.attribute as { text: string }).text);
    planes.push(map.data);
    ({ height, width } = map);
  }
  const data = new Float32Array(planes.length * height * width);
  planes.forEach((plane, i) => data.set(plane, i * height * width));
  return { classes, data, height, width };
}

/** The class maps refined by the image's self-attention, at their own size. */
async function refineClassMaps(image: GeneratedImage, maps: ClassMaps, refine: NonNullable<DatasetSpec["refine"]>): Promise<ClassMaps> {
  checkSide(image, refine.side);
  const refined = await refineMaps(image, { data: maps.data, shape: [maps.classes.length, maps.height, maps.width] }, refine, "dataset item (spec.refine)");
  return { ...maps, data: refined.data as Float32Array };
}

// The spec kept only refine's side: a side the model has no grid of kept nothing.
function checkSide(image: GeneratedImage, side: number | undefined): void {
  if (side === undefined || image.selfAttentionGrids.length > 0) return;
  const sides = [...new Set(image.blocks.map((b) => Math.max(b.height, b.width)))].sort((a, b) => b - a);
  throw invalidOption("dataset spec", "spec.refine.side", side, `the side of one of this model's latent grids at this size (${sides.join(", ")})`);
}

/** The self-attention grid refinement uses (its side, else the largest kept). */
async function savedSelfAttention(image: GeneratedImage, side: number | undefined): Promise<SavedSelfAttention> {
  checkSide(image, side);
  const grid = refinementGrid(image, side, "dataset item (spec.save.selfAttention)");
  const matrix = await image.selfAttention(grid.side);
  return { tensor: selfAttentionTensor(grid.height, grid.width), side: grid.side, height: grid.height, width: grid.width, matrix };
}

/** The name a self-attention grid's matrix has in maps and generation files. */
export function selfAttentionTensor(height: number, width: number): string {
  return `self_attention.${height}x${width}`;
}

// The item's files, written side by side (each through the atomic writer); paths relative to the dataset folder.
async function writeFiles(ctx: ItemContext, made: MadeItem): Promise<ManifestLine["files"]> {
  const { item, image, label } = made;
  const { spec, out } = ctx;
  const names = itemFiles(spec.layout, item.id);
  const palette = paletteOf(spec);
  const at = (name: string) => path.join(out, name);
  const files: ManifestLine["files"] = { image: names.image, label: names.label };
  const writes: Promise<void>[] = [
    image.toPNG().then((png) => writeFileAtomic(at(names.image), png)),
    encodeIndexed(image.width, image.height, label.labels.data, palette).then((png) => writeFileAtomic(at(names.label), png)),
  ];
  if (spec.save.maps) {
    files.maps = names.maps;
    writes.push(mapsFile(spec, made, spec.save.maps).then((bytes) => writeFileAtomic(at(names.maps), bytes)));
  }
  if (spec.save.overlays) {
    files.overlay = names.overlay;
    const picture = labelOverlay({ width: image.width, height: image.height, pixels: image.pixels }, label.labels.data, palette, spec.background);
    writes.push(encodeRGB(picture.width, picture.height, picture.pixels).then((png) => writeFileAtomic(at(names.overlay), png)));
  }
  if (spec.save.generation) {
    files.generation = names.generation;
    writes.push(image.save(at(names.generation)));
  }
  await Promise.all(writes);
  return files;
}

/** The maps file's metadata: what `ovam masks` needs to label the maps again. */
export interface MapsMetadata {
  format: typeof MAPS_FORMAT;
  id: string;
  prompt: string;
  seed: number;
  /** The image's size, which labels are upsampled to. */
  width: number;
  height: number;
  /** Tensor name, id and what was attributed, per class. */
  classes: { tensor: string; id: number; name: string; attribute: DatasetClass["attribute"] }[];
  attribute: DatasetSpec["attribute"];
  /** The refinement the class tensors went through (their unrefined maps are "unrefined.<tensor>"), or null. Absent in files from before. */
  refine?: DatasetSpec["refine"];
  /** The self-attention tensor the file holds (save.selfAttention), or null. */
  selfAttention?: { tensor: string; side: number; height: number; width: number } | null;
}

/** The tensor of a class's unrefined map in a maps file of a refining spec. */
export const UNREFINED_PREFIX = "unrefined.";

// One [h, w] tensor per class, named by the class (and its unrefined map, and the self-attention), in `dtype`, with MapsMetadata as JSON.
function mapsFile(spec: DatasetSpec, made: MadeItem, dtype: "float16" | "float32"): Promise<Uint8Array> {
  const { item, image, maps, unrefined, selfAttention } = made;
  const plane = maps.height * maps.width;
  const metadata: MapsMetadata = {
    format: MAPS_FORMAT,
    id: item.id,
    prompt: item.prompt,
    seed: item.seed,
    width: image.width,
    height: image.height,
    classes: maps.classes.map((c) => ({ tensor: c.stem, id: c.id, name: c.name, attribute: c.attribute })),
    attribute: spec.attribute,
    refine: spec.refine,
    selfAttention: selfAttention ? { tensor: selfAttention.tensor, side: selfAttention.side, height: selfAttention.height, width: selfAttention.width } : null,
  };
  const planes = (of: ClassMaps, prefix: string) =>
    of.classes.map((c, i) => [`${prefix}${c.stem}`, { data: of.data.slice(i * plane, (i + 1) * plane), shape: [of.height, of.width] }] as const);
  const tensors = Object.fromEntries([
    ...planes(maps, ""),
    ...(unrefined ? planes(unrefined, UNREFINED_PREFIX) : []),
    ...(selfAttention ? [[selfAttention.tensor, selfAttention.matrix] as const] : []),
  ]);
  return awaitNative(native.encodeTensors(tensors, { ovam: JSON.stringify(metadata) }, dtype));
}

/** Reads the metadata of a maps file's header, checking it is one. */
export function parseMapsMetadata(metadata: Record<string, string>, file: string): MapsMetadata {
  let value: MapsMetadata | undefined;
  try {
    value = JSON.parse(metadata.ovam ?? "") as MapsMetadata;
  } catch {
    value = undefined;
  }
  if (value?.format !== MAPS_FORMAT || !Array.isArray(value.classes)) throw new InvalidArgumentError(`${file}: not a dataset maps file (no ${MAPS_FORMAT} metadata)`);
  return value;
}

// Seconds since the previous lap.
function timer(): { lap(): number } {
  let last = performance.now();
  return {
    lap() {
      const now = performance.now();
      const seconds = (now - last) / 1000;
      last = now;
      return Math.round(seconds * 1e4) / 1e4;
    },
  };
}
