// Raw safetensors files for the robustness tests: read a file's header and data section as they
// are, change entries, write them back with fresh offsets.
import fs from "node:fs";

// Bytes of a safetensors file from a header (object, or text taken verbatim) and a data section.
export function encode(header, data = Buffer.alloc(0)) {
  const json = Buffer.from(typeof header === "string" ? header : JSON.stringify(header), "utf8");
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([length, json, data]);
}

// [{ name, dtype, shape, bytes }] in file order, plus the metadata.
export function readEntries(file) {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString("utf8"));
  const data = buf.subarray(8 + n);
  const entries = Object.entries(header)
    .filter(([name]) => name !== "__metadata__")
    .map(([name, e]) => ({ name, dtype: e.dtype, shape: e.shape, bytes: data.subarray(e.data_offsets[0], e.data_offsets[1]) }))
    .sort((a, b) => a.bytes.byteOffset - b.bytes.byteOffset);
  return { entries, metadata: header.__metadata__ };
}

// A well-formed file holding `entries` back to back.
export function writeEntries(file, entries, metadata) {
  const header = metadata ? { __metadata__: metadata } : {};
  let offset = 0;
  for (const e of entries) {
    header[e.name] = { dtype: e.dtype, shape: e.shape, data_offsets: [offset, offset + e.bytes.length] };
    offset += e.bytes.length;
  }
  fs.writeFileSync(file, encode(header, Buffer.concat(entries.map((e) => e.bytes))));
}
