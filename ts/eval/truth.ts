// Ground-truth readers. A PNG is read by its colour type: grey (or palette) samples are class
// indices (255 left out), RGB is a binary mask where any non-zero channel is the object (OVAM's
// annotations), and an alpha channel is a binary mask where alpha > 127 is the object (DAAM's
// *.gt.png).
import { InvalidArgumentError } from "../errors";
import { readInputFile } from "../files";
import type { Map2D } from "../options";
import { decodePNG } from "../png";

/** Class indices per pixel, or a 0/1 mask of one class. */
export type Truth = { kind: "labels"; map: Map2D<Uint8Array> } | { kind: "mask"; map: Map2D<Uint8Array> };

// A 16384² 8-bit RGBA PNG compresses to far less; anything larger is not a ground-truth file.
const MAX_PNG_BYTES = 1 << 30;

/** The ground truth in a decoded PNG (see the file comment for how each colour type reads). */
export function truthFromPNG(png: { width: number; height: number; channels: number; data: Uint8Array }): Truth {
  const { width, height, channels, data } = png;
  const size = width * height;
  if (channels === 1) return { kind: "labels", map: { data, width, height } };
  const mask = new Uint8Array(size);
  if (channels === 2 || channels === 4) for (let i = 0; i < size; i++) mask[i] = data[i * channels + channels - 1] > 127 ? 1 : 0;
  else for (let i = 0; i < size; i++) mask[i] = data[i * 3] | data[i * 3 + 1] | data[i * 3 + 2] ? 1 : 0;
  return { kind: "mask", map: { data: mask, width, height } };
}

/** Reads a ground-truth PNG; `what` names it in errors. */
export async function readTruth(file: string, what: string): Promise<Truth> {
  const bytes = await readInputFile(file, { maxBytes: MAX_PNG_BYTES, what });
  const png = await decodePNG(bytes, `${what} ${file}`);
  return truthFromPNG(png);
}

/** Throws unless `truth` has the map's size (or the size maps are resized to). */
export function checkTruthSize(truth: Truth, width: number, height: number, what: string): void {
  const { map } = truth;
  if (map.width !== width || map.height !== height)
    throw new InvalidArgumentError(`${what}: the ground truth is ${map.width}×${map.height} but the prediction is ${width}×${height}; accepted: ground truth of the prediction's size`);
}
