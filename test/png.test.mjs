// PNG encoding: what encodeRGB / encodeGray16 write is decoded here by a reader of the test's own
// (chunk CRCs with node:zlib's crc32, IDAT inflated with inflateSync) and compared pixel by pixel.
import t from "tap";
import path from "node:path";
import zlib from "node:zlib";
import { createRequire } from "node:module";

import { root } from "./helpers/golden.mjs";

const require = createRequire(import.meta.url);
const { encodeRGB, encodeGray16 } = require(path.join(root, "dist", "png.js"));
const { InvalidOptionError } = require(path.join(root, "dist", "errors.js"));

function decode(png) {
  t.same([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], "signature");
  const chunks = [];
  for (let at = 8; at < png.length; ) {
    const length = png.readUInt32BE(at);
    const type = png.toString("ascii", at + 4, at + 8);
    const data = png.subarray(at + 8, at + 8 + length);
    const crc = png.readUInt32BE(at + 8 + length);
    t.equal(crc, zlib.crc32(png.subarray(at + 4, at + 8 + length)), `${type} CRC`);
    chunks.push({ type, data });
    at += 12 + length;
  }
  t.same(chunks.map((c) => c.type).filter((x) => x !== "IDAT"), ["IHDR", "IEND"], "chunk order");
  const ihdr = chunks[0].data;
  const header = {
    width: ihdr.readUInt32BE(0),
    height: ihdr.readUInt32BE(4),
    bitDepth: ihdr[8],
    colorType: ihdr[9],
    methods: [ihdr[10], ihdr[11], ihdr[12]],
  };
  const raw = zlib.inflateSync(Buffer.concat(chunks.filter((c) => c.type === "IDAT").map((c) => c.data)));
  const bytesPerPixel = (header.colorType === 2 ? 3 : 1) * (header.bitDepth / 8);
  const stride = header.width * bytesPerPixel;
  t.equal(raw.length, header.height * (stride + 1), "scanline bytes");
  const rows = Array.from({ length: header.height }, (_, y) => raw.subarray(y * (stride + 1), (y + 1) * (stride + 1)));
  t.same(rows.map((row) => row[0]), rows.map(() => 0), "every row has filter type 0 (none)");
  return { ...header, pixels: Buffer.concat(rows.map((row) => row.subarray(1))) };
}

t.test("RGB 8-bit round trip", async (t) => {
  const [width, height] = [5, 3];
  const pixels = Uint8Array.from({ length: width * height * 3 }, (_, i) => (i * 37 + 11) % 256);
  const promise = encodeRGB(width, height, pixels);
  t.ok(promise instanceof Promise, "encodes asynchronously");
  const png = decode(await promise);
  t.same([png.width, png.height, png.bitDepth, png.colorType, png.methods], [width, height, 8, 2, [0, 0, 0]], "IHDR");
  t.same([...png.pixels], [...pixels], "pixels");
});

t.test("grey 16-bit round trip", async (t) => {
  const [width, height] = [7, 4];
  const values = Uint16Array.from({ length: width * height }, (_, i) => [0, 1, 255, 256, 65535, 4097][i % 6] + (i % 6 === 4 ? 0 : i));
  const png = decode(await encodeGray16(width, height, values));
  t.same([png.width, png.height, png.bitDepth, png.colorType, png.methods], [width, height, 16, 0, [0, 0, 0]], "IHDR");
  const decoded = Array.from({ length: width * height }, (_, i) => png.pixels.readUInt16BE(2 * i));
  t.same(decoded, [...values], "values (big-endian samples)");
});

t.test("a 512×384 image (several deflate blocks) round-trips", async (t) => {
  const [width, height] = [512, 384];
  const pixels = Uint8Array.from({ length: width * height * 3 }, (_, i) => (i * 2654435761) >>> 24);
  const png = decode(await encodeRGB(width, height, pixels));
  t.same([png.width, png.height], [width, height], "size");
  t.ok(png.pixels.equals(pixels), "pixels");
});

t.test("bad sizes and arrays reject with InvalidOptionError", async (t) => {
  const cases = [
    [() => encodeRGB(2, 2, new Uint8Array(11)), "pixels"],
    [() => encodeRGB(0, 2, new Uint8Array(0)), "width"],
    [() => encodeRGB(2.5, 2, new Uint8Array(15)), "width"],
    [() => encodeRGB(2, 2, new Float32Array(12)), "pixels"],
    [() => encodeGray16(2, 2, new Uint16Array(5)), "values"],
    [() => encodeGray16(2, -1, new Uint16Array(0)), "height"],
    [() => encodeGray16(2, 2, new Uint8Array(4)), "values"],
  ];
  for (const [call, option] of cases) {
    const error = await call().then(() => null, (e) => e);
    t.ok(error instanceof InvalidOptionError, `${option}: ${error && error.message}`);
    t.equal(error?.code, "ERR_OVAM_INVALID_OPTION");
    t.equal(error?.option, option);
  }
});
