// Pictures from outside ovam (photographs): decoded by sharp (JPEG, PNG, WebP, AVIF, TIFF, GIF…)
// with their EXIF orientation applied, alpha dropped as diffusers' convert("RGB") drops it, and
// resized by sharp. What the CLI and segment() give img2img.
import sharp from "sharp";

import { ImageError } from "./errors";
import { readInputFile } from "./files";
import { invalidOption, MAX_SIZE } from "./options";
import type { RGBImage } from "./render";

/** An RGB picture in memory: width × height × 3 bytes, row-major. */
export interface RGBInput {
  data: Uint8Array;
  width: number;
  height: number;
}

/** Largest encoded file read (bytes) and largest decoded picture (pixels, checked from the header before decoding). */
export const MAX_PHOTO_BYTES = 256 * 1024 * 1024;
export const MAX_PHOTO_PIXELS = 100_000_000;

/**
 * A picture file (any format sharp reads) or an RGB buffer as 8-bit RGB, upright. `what` names the
 * input in errors ("image", "photo.jpg").
 */
export async function readPicture(input: string | RGBInput, where: string, what: string): Promise<RGBImage> {
  if (typeof input !== "string") {
    const { data, width, height } = input;
    if (!(data instanceof Uint8Array) || !Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1 || data.length !== width * height * 3)
      throw invalidOption(where, what, input, "a file path or { data: Uint8Array (RGB), width, height } with data.length = width × height × 3");
    return { width, height, pixels: data };
  }
  const bytes = await readInputFile(input, { maxBytes: MAX_PHOTO_BYTES, what: `${where} ${what}` });
  try {
    // rotate() with no angle applies the EXIF orientation; limitInputPixels refuses from the header.
    const { data, info } = await sharp(bytes, { limitInputPixels: MAX_PHOTO_PIXELS, failOn: "error" })
      .rotate()
      .removeAlpha()
      .toColourspace("srgb")
      .raw({ depth: "uchar" })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels`);
    return { width: info.width, height: info.height, pixels: new Uint8Array(data.buffer, data.byteOffset, data.length) };
  } catch (error) {
    const reason = (error as Error).message;
    if (/pixel limit/i.test(reason))
      throw new ImageError(`${where}: ${input} has more than ${MAX_PHOTO_PIXELS} pixels; accepted: pictures up to ${MAX_PHOTO_PIXELS / 1e6} megapixels`, { cause: error });
    throw new ImageError(`${where}: ${input} is not a picture ovam can read (${reason}); accepted: JPEG, PNG, WebP, AVIF, TIFF, GIF`, { cause: error });
  }
}

/** `picture` resized to exactly width × height (Lanczos, the aspect ratio given up if it differs); the same object when it already is that size. */
export async function resizePicture(picture: RGBImage, width: number, height: number): Promise<RGBImage> {
  if (picture.width === width && picture.height === height) return picture;
  const data = await sharp(picture.pixels, { raw: { width: picture.width, height: picture.height, channels: 3 } })
    .resize(width, height, { fit: "fill", kernel: "lanczos3" })
    .raw()
    .toBuffer();
  return { width, height, pixels: new Uint8Array(data.buffer, data.byteOffset, data.length) };
}

/**
 * The model input size for a picture: scaled so its longer side is `side` (the model's own
 * resolution), each side then rounded to a multiple of `factor` (at least one factor).
 */
export function modelSize(width: number, height: number, side: number, factor: number): { width: number; height: number } {
  const scale = side / Math.max(width, height);
  const round = (v: number) => Math.min(Math.floor(MAX_SIZE / factor), Math.max(1, Math.round((v * scale) / factor))) * factor;
  return { width: round(width), height: round(height) };
}

/** A picture no larger than MAX_SIZE on either side (maps at its size must stay within the core's limit). */
export async function withinMaxSize(picture: RGBImage): Promise<RGBImage> {
  const scale = Math.min(1, MAX_SIZE / Math.max(picture.width, picture.height));
  if (scale === 1) return picture;
  return resizePicture(picture, Math.max(1, Math.round(picture.width * scale)), Math.max(1, Math.round(picture.height * scale)));
}
