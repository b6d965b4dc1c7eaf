// A palette PNG reader of the tests' own (independent of ts/png.ts): chunks with CRCs checked
// by node:zlib, PLTE read, IDAT inflated with inflateSync, rows with filter type 0 (what ovam writes).
import zlib from "node:zlib";

export function readPalettePNG(png) {
  if (!png.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) throw new Error("not a PNG");
  let header;
  let palette;
  const idat = [];
  for (let at = 8; at < png.length; ) {
    const length = png.readUInt32BE(at);
    const type = png.toString("ascii", at + 4, at + 8);
    const data = png.subarray(at + 8, at + 8 + length);
    if (png.readUInt32BE(at + 8 + length) !== zlib.crc32(png.subarray(at + 4, at + 8 + length))) throw new Error(`${type}: bad CRC`);
    if (type === "IHDR") header = { width: data.readUInt32BE(0), height: data.readUInt32BE(4), bitDepth: data[8], colorType: data[9] };
    if (type === "PLTE") palette = Buffer.from(data);
    if (type === "IDAT") idat.push(data);
    at += 12 + length;
  }
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const { width, height } = header;
  const indices = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    const row = raw.subarray(y * (width + 1), (y + 1) * (width + 1));
    if (row[0] !== 0) throw new Error(`row ${y}: filter ${row[0]}`);
    indices.set(row.subarray(1), y * width);
  }
  return { ...header, palette, indices };
}
