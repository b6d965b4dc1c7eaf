// Ground-truth readers. A PNG is read by its colour type: grey (or palette) samples are class
// indices (255 left out), RGB is a binary mask where any non-zero channel is the object (OVAM's
// annotations), and an alpha channel is a binary mask where alpha > 127 is the object (DAAM's
// *.gt.png). A file of one class (ID/CLASS.gt.png) is always a mask: grey non-zero is the object.
import { readInputFile } from "../files";
import type { Map2D } from "../options";
import { decodeIndexedPNG, decodePNG } from "../png";

/** Class indices per pixel, or a 0/1 mask of one class. */
export type Truth = { kind: "labels"; map: Map2D<Uint8Array> } | { kind: "mask"; map: Map2D<Uint8Array> };

// A 16384² 8-bit RGBA PNG compresses to far less; anything larger is not a ground-truth file.
const MAX_PNG_BYTES = 1 << 30;

/** The ground truth in a decoded PNG (see the file comment for how each colour type reads). */
export function truthFromPNG(png: { width: number; height: number; channels: number; data: Uint8Array }, oneClass = false): Truth {
  const { width, height, channels, data } = png;
  const size = width * height;
  if (channels === 1) return oneClass ? { kind: "mask", map: { data: data.map((v) => (v ? 1 : 0)), width, height } } : { kind: "labels", map: { data, width, height } };
  const mask = new Uint8Array(size);
  if (channels === 2 || channels === 4) for (let i = 0; i < size; i++) mask[i] = data[i * channels + channels - 1] > 127 ? 1 : 0;
  else for (let i = 0; i < size; i++) mask[i] = data[i * 3] | data[i * 3 + 1] | data[i * 3 + 2] ? 1 : 0;
  return { kind: "mask", map: { data: mask, width, height } };
}

/** Reads a ground-truth PNG (`oneClass`: the mask of one class); `what` names it in errors. */
export async function readTruth(file: string, what: string, oneClass = false): Promise<Truth> {
  const bytes = await readInputFile(file, { maxBytes: MAX_PNG_BYTES, what });
  // Colour type 3 in the IHDR chunk, which comes first: a palette PNG (VOC's SegmentationClass, ovam dataset's labels).
  if (bytes.length > 25 && bytes.toString("latin1", 12, 16) === "IHDR" && bytes[25] === 3) {
    const png = await decodeIndexedPNG(bytes, `${what} ${file}`);
    return truthFromPNG({ width: png.width, height: png.height, channels: 1, data: png.indices }, oneClass);
  }
  const png = await decodePNG(bytes, `${what} ${file}`);
  return truthFromPNG(png, oneClass);
}
