// A PNG writer of the tests' own (independent of ts/png.ts), for inputs of every colour type and filter.
import zlib from "node:zlib";

// A PNG of 8-bit samples whose row y uses filter type filters[y % filters.length].
export function writePNG(width, height, channels, samples, { filters = [0], interlace = 0, bitDepth = 8, colorType } = {}) {
  const type = colorType ?? { 1: 0, 2: 4, 3: 2, 4: 6 }[channels];
  const stride = width * channels;
  const rows = [];
  for (let y = 0; y < height; y++) {
    const filter = filters[y % filters.length];
    const at = (i, row = y) => (row >= 0 && i >= 0 ? samples[row * stride + i] : 0);
    const row = Buffer.alloc(stride + 1);
    row[0] = filter;
    for (let i = 0; i < stride; i++) {
      const [a, b, c] = [at(i - channels), at(i, y - 1), at(i - channels, y - 1)];
      const p = a + b - c;
      const paeth = Math.abs(p - a) <= Math.abs(p - b) && Math.abs(p - a) <= Math.abs(p - c) ? a : Math.abs(p - b) <= Math.abs(p - c) ? b : c;
      row[i + 1] = samples[y * stride + i] - [0, a, b, (a + b) >> 1, paeth][filter];
    }
    rows.push(row);
  }
  const chunk = (name, data) => {
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    out.write(name, 4, "ascii");
    data.copy(out, 8);
    out.writeUInt32BE(zlib.crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
    return out;
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([bitDepth, type, 0, 0, interlace], 8);
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return Buffer.concat([signature, chunk("IHDR", header), chunk("IDAT", zlib.deflateSync(Buffer.concat(rows))), chunk("IEND", Buffer.alloc(0))]);
}
