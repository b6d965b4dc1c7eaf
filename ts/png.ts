// PNG encoding (RGB 8-bit and grey 16-bit), deflated on the libuv pool by node:zlib.
import { promisify } from "node:util";
import { deflate as deflateCallback } from "node:zlib";

import { invalidOption } from "./options";

const deflate = promisify(deflateCallback);
const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const COLOR_GREY = 0;
const COLOR_RGB = 2;

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

function chunk(type: string, data: Uint8Array): Buffer {
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
async function encode(width: number, height: number, bitDepth: number, colorType: number, rows: Buffer): Promise<Buffer> {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = bitDepth;
  header[9] = colorType; // compression, filter and interlace methods: 0
  const compressed = await deflate(rows);
  return Buffer.concat([SIGNATURE, chunk("IHDR", header), chunk("IDAT", compressed), chunk("IEND", Buffer.alloc(0))]);
}

/** An 8-bit RGB PNG from row-major RGB pixels (width × height × 3 bytes). */
export async function encodeRGB(width: number, height: number, pixels: Uint8Array): Promise<Buffer> {
  if (!(pixels instanceof Uint8Array)) throw invalidOption("encodeRGB()", "pixels", pixels, "a Uint8Array");
  checkSize("encodeRGB()", width, height, "pixels", pixels.length, 3, "Uint8Array");
  const stride = width * 3;
  const rows = Buffer.alloc((stride + 1) * height);
  for (let y = 0; y < height; y++) rows.set(pixels.subarray(y * stride, (y + 1) * stride), y * (stride + 1) + 1);
  return encode(width, height, 8, COLOR_RGB, rows);
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
