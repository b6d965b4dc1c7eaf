// Self-attention refinement of attribution maps: Dataset Diffusion's A^τ · c (Nguyen et al.,
// NeurIPS 2023). A is the image's captured self-attention mean of one latent grid; each map is
// propagated τ times along it, min-max normalised and resized (native/core/ovam/refine.h).
import { awaitNative, InvalidArgumentError } from "./errors";
import { generationOf, type GeneratedImage, type SelfAttentionGrid } from "./image";
import { AttributionMaps, sourceImage } from "./maps";
import type { NativeTensor } from "./native";
import { invalidOption, parse, refineSchema, type RefineOptions, type Tensor } from "./options";

/**
 * The maps refined by their image's self-attention: per token min-max(A^power · c), with c the map
 * on A's grid (resized there bilinearly when it is not already), then resized to `size` (default
 * the maps' own). The image must have been generated with capture.selfAttention.
 */
export async function refine(maps: AttributionMaps, options?: RefineOptions): Promise<AttributionMaps> {
  const where = "refine()";
  if (!(maps instanceof AttributionMaps)) throw invalidOption(where, "maps", maps, "AttributionMaps from attribute()");
  const o = parse(where, refineSchema, options ?? {});
  const image = sourceImage(maps);
  if (!image) throw invalidOption(where, "maps", maps, "AttributionMaps from attribute() (they know their image)");
  const size: [number, number] = o.size === "image" ? [image.height, image.width] : (o.size ?? [maps.height, maps.width]);
  return maps.withMaps(await refineMaps(image, { data: maps.data, shape: [...maps.shape] }, { power: o.power, side: o.side, size }, where));
}

/** Any stack of maps [n, h, w] over `image` refined as refine() does (a dataset's class maps), resized to `size` (default their own). */
export async function refineMaps(
  image: GeneratedImage,
  maps: Tensor,
  options: { power: number; side?: number; size?: [number, number] },
  where: string,
): Promise<NativeTensor> {
  const generation = generationOf(image, where, "maps' image");
  const grid = refinementGrid(image, options.side, where);
  const size = options.size ?? [maps.shape[1], maps.shape[2]];
  return awaitNative(generation.refine({ data: maps.data, shape: [...maps.shape] }, { power: options.power, side: grid.side, size: [size[0], size[1]] }));
}

/** The kept self-attention grid of `side` (default the largest), or the error that says what was kept. */
export function refinementGrid(image: GeneratedImage, side: number | undefined, where: string): SelfAttentionGrid {
  const grids = image.selfAttentionGrids;
  if (grids.length === 0)
    throw new InvalidArgumentError(`${where}: the image holds no self-attention; generate it with capture: { selfAttention: true }`);
  if (side === undefined) return grids.reduce((a, b) => (b.side > a.side ? b : a));
  const grid = grids.find((g) => g.side === side);
  if (!grid) throw invalidOption(where, "side", side, `one of the kept sides: ${grids.map((g) => g.side).join(", ")}`);
  return grid;
}
