// PNG encoding (RGB, grey and palette 8-bit, grey 16-bit) and decoding (8-bit, non-interlaced), zlib
// work on the libuv pool by node:zlib.
import { promisify } from "node:util";
import { deflate as deflateCallback, inflate as inflateCallback } from "node:zlib";

import { InvalidArgumentError } from "./errors";
import { invalidOption, MAX_SIZE } from "./options";

const deflate = promisify(deflateCallback);
const inflate = promisify(inflateCallback);
const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const COLOR_GREY = 0;
const COLOR_RGB = 2;
const COLOR_PALETTE = 3;
const COLOR_NAMES: Record<number, string> = { 0: "grey", 2: "RGB", 3: "palette", 4: "grey+alpha", 6: "RGBA" };

// CRC-32 (ISO 3309) as PNG chunks use it; node:zlib.crc32 is missing before Node 20.15.
const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const byte of bytes) c = CRC_TABLE[(c ^ byte) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** One PNG chunk: length, type, data and CRC. */
export function chunk(type: string, data: Uint8Array): Buffer {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, "ascii");
  out.set(data, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

function checkSize(where: string, width: number, height: number, option: string, length: number, perPixel: number, kind: string): void {
  for (const [option, value] of [["width", width], ["height", height]] as const)
    if (!Number.isInteger(value) || value < 1 || value > 0x7fffffff) throw invalidOption(where, option, value, "a positive integer");
  if (length !== width * height * perPixel)
    throw invalidOption(where, option, `${kind} of length ${length}`, `a ${kind} of length ${width} × ${height}${perPixel > 1 ? ` × ${perPixel}` : ""}`);
}

// Scanlines, each after filter byte 0 (none), deflated into IHDR + IDAT + IEND.
async function encode(width: number, height: number, bitDepth: number, colorType: number, rows: Buffer, extra: Buffer[] = []): Promise<Buffer> {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = bitDepth;
  header[9] = colorType; // compression, filter and interlace methods: 0
  const compressed = await deflate(rows);
  return Buffer.concat([SIGNATURE, chunk("IHDR", header), ...extra, chunk("IDAT", compressed), chunk("IEND", Buffer.alloc(0))]);
}

async function encode8(
  where: string,
  width: number,
  height: number,
  pixels: Uint8Array,
  option: string,
  channels: number,
  colorType: number,
  extra: Buffer[] = [],
): Promise<Buffer> {
  if (!(pixels instanceof Uint8Array)) throw invalidOption(where, option, pixels, "a Uint8Array");
  checkSize(where, width, height, option, pixels.length, channels, "Uint8Array");
  const stride = width * channels;
  const rows = Buffer.alloc((stride + 1) * height);
  for (let y = 0; y < height; y++) rows.set(pixels.subarray(y * stride, (y + 1) * stride), y * (stride + 1) + 1);
  return encode(width, height, 8, colorType, rows, extra);
}

/** An 8-bit RGB PNG from row-major RGB pixels (width × height × 3 bytes). */
export function encodeRGB(width: number, height: number, pixels: Uint8Array): Promise<Buffer> {
  return encode8("encodeRGB()", width, height, pixels, "pixels", 3, COLOR_RGB);
}

/** An 8-bit greyscale PNG from row-major values (width × height bytes). */
export function encodeGray8(width: number, height: number, values: Uint8Array): Promise<Buffer> {
  return encode8("encodeGray8()", width, height, values, "values", 1, COLOR_GREY);
}

/** A 16-bit greyscale PNG from row-major values (width × height). */
export async function encodeGray16(width: number, height: number, values: Uint16Array): Promise<Buffer> {
  if (!(values instanceof Uint16Array)) throw invalidOption("encodeGray16()", "values", values, "a Uint16Array");
  checkSize("encodeGray16()", width, height, "values", values.length, 1, "Uint16Array");
  const stride = width * 2 + 1;
  const rows = Buffer.alloc(stride * height);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) rows.writeUInt16BE(values[y * width + x], y * stride + 1 + x * 2); // PNG is big-endian
  return encode(width, height, 16, COLOR_GREY, rows);
}

/** A decoded 8-bit PNG: row-major samples, `channels` per pixel (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA). */
export interface DecodedPNG {
  width: number;
  height: number;
  channels: 1 | 2 | 3 | 4;
  data: Uint8Array;
}

const CHANNELS: Record<number, DecodedPNG["channels"]> = { 0: 1, 4: 2, 2: 3, 6: 4 };
// Bounds the decoded buffer (a 4096² image, the largest ovam generates) so a forged header
// cannot ask for gigabytes.
const MAX_PIXELS = MAX_SIZE * MAX_SIZE;

/**
 * Decodes an 8-bit, non-interlaced grey, grey+alpha, RGB or RGBA PNG (every filter type);
 * anything else is an InvalidArgumentError naming what is unsupported.
 */
export async function decodePNG(png: Uint8Array, name = "PNG"): Promise<DecodedPNG> {
  const { width, height, colorType, pixels } = await readPNG(png, name, "use 8-bit grey, grey+alpha, RGB or RGBA", (type) => CHANNELS[type]);
  return { width, height, channels: CHANNELS[colorType], data: pixels };
}

/** A decoded 8-bit palette PNG: one palette index per pixel (a label map's class ids) and the palette's RGB entries. */
export interface IndexedPNG {
  width: number;
  height: number;
  indices: Uint8Array;
  /** RGB triplets, 3 × entries bytes. */
  palette: Uint8Array;
}

/** Decodes an 8-bit, non-interlaced palette PNG (as segmentation labels are stored) without mapping indices to colours. */
export async function decodeIndexedPNG(png: Uint8Array, name = "PNG"): Promise<IndexedPNG> {
  const { width, height, pixels, palette } = await readPNG(png, name, "use an 8-bit palette (colour type 3) PNG", (type) => (type === COLOR_PALETTE ? 1 : undefined));
  if (!palette) throw new InvalidArgumentError(`${name}: a palette PNG without a PLTE chunk`);
  return { width, height, indices: pixels, palette };
}

/** An 8-bit palette PNG: pixel values are palette indices (class ids), `palette` holds up to 256 RGB triplets. */
export function encodeIndexed(width: number, height: number, indices: Uint8Array, palette: Uint8Array): Promise<Buffer> {
  const where = "encodeIndexed()";
  if (!(palette instanceof Uint8Array) || palette.length === 0 || palette.length % 3 !== 0 || palette.length > 768)
    throw invalidOption(where, "palette", palette, "a Uint8Array of 1 to 256 RGB triplets");
  const entries = palette.length / 3;
  if (indices instanceof Uint8Array && entries < 256 && indices.some((i) => i >= entries))
    throw invalidOption(where, "indices", "an index beyond the palette", `indices below ${entries} (the palette's entries)`);
  return encode8(where, width, height, indices, "indices", 1, COLOR_PALETTE, [chunk("PLTE", palette)]);
}

// Chunks read and checked, image data inflated and unfiltered; `channelsOf` says which colour types the caller takes.
async function readPNG(
  png: Uint8Array,
  name: string,
  supported: string,
  channelsOf: (colorType: number) => number | undefined,
): Promise<{ width: number; height: number; colorType: number; pixels: Uint8Array; palette?: Uint8Array }> {
  const bytes = Buffer.from(png.buffer, png.byteOffset, png.byteLength);
  const bad = (what: string) => new InvalidArgumentError(`${name}: ${what}`);
  if (bytes.length < 8 || !bytes.subarray(0, 8).equals(SIGNATURE)) throw bad("not a PNG file (no PNG signature)");
  let header: Buffer | undefined;
  let palette: Uint8Array | undefined;
  const idat: Buffer[] = [];
  for (let at = 8; ; ) {
    if (at + 12 > bytes.length) throw bad("truncated (no IEND chunk)");
    const length = bytes.readUInt32BE(at);
    const type = bytes.toString("latin1", at + 4, at + 8);
    if (at + 12 + length > bytes.length) throw bad(`truncated ${type} chunk`);
    if (bytes.readUInt32BE(at + 8 + length) !== crc32(bytes.subarray(at + 4, at + 8 + length))) throw bad(`corrupt ${type} chunk (CRC mismatch)`);
    const data = bytes.subarray(at + 8, at + 8 + length);
    if (type === "IHDR") header = data;
    else if (type === "PLTE") palette = Uint8Array.from(data);
    else if (type === "IDAT") idat.push(data);
    else if (type === "IEND") break;
    at += 12 + length;
  }
  if (!header || header.length !== 13) throw bad("no valid IHDR chunk");
  const width = header.readUInt32BE(0);
  const height = header.readUInt32BE(4);
  const [bitDepth, colorType, , , interlace] = header.subarray(8);
  const channels = channelsOf(colorType);
  if (channels === undefined) throw bad(`colour type ${colorType} (${COLOR_NAMES[colorType] ?? "unknown"}) is not supported; ${supported}`);
  if (bitDepth !== 8) throw bad(`bit depth ${bitDepth} is not supported; use 8 bits per sample`);
  if (interlace !== 0) throw bad("interlaced (Adam7) PNGs are not supported; save it non-interlaced");
  if (width < 1 || height < 1 || width * height > MAX_PIXELS) throw bad(`a ${width}×${height} image is outside the supported sizes`);
  const stride = width * channels;
  const expected = (stride + 1) * height;
  let raw: Buffer;
  try {
    // Inflation stops at the size the header declares: a small file cannot expand to gigabytes.
    raw = await inflate(Buffer.concat(idat), { maxOutputLength: expected });
  } catch (error) {
    const tooLong = (error as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE";
    throw new InvalidArgumentError(`${name}: ${tooLong ? `image data inflates past the ${expected} bytes its ${width}×${height} size needs` : `corrupt image data (${(error as Error).message})`}`, { cause: error });
  }
  if (raw.length < expected) throw bad("image data shorter than its size");
  return { width, height, colorType, pixels: unfilter(raw, width, height, channels, bad), ...(palette ? { palette } : {}) };
}

// Reverses the per-row filters (PNG spec §9): bpp = channels for 8-bit samples.
function unfilter(raw: Buffer, width: number, height: number, bpp: number, bad: (what: string) => Error): Uint8Array {
  const stride = width * bpp;
  const out = new Uint8Array(stride * height);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const source = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const row = y * stride;
    const prior = row - stride; // the row above; reads as 0 on the first row
    for (let i = 0; i < stride; i++) {
      const a = i >= bpp ? out[row + i - bpp] : 0;
      const b = y > 0 ? out[prior + i] : 0;
      const c = i >= bpp && y > 0 ? out[prior + i - bpp] : 0;
      let predictor: number;
      if (filter === 0) predictor = 0;
      else if (filter === 1) predictor = a;
      else if (filter === 2) predictor = b;
      else if (filter === 3) predictor = (a + b) >> 1;
      else if (filter === 4) predictor = paeth(a, b, c);
      else throw bad(`row ${y} has unknown filter type ${filter}`);
      out[row + i] = (source[i] + predictor) & 0xff;
    }
  }
  return out;
}

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}
