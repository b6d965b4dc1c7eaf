// Reads the reference fixtures (golden.json + golden.safetensors) with a small safetensors reader
// of its own, independent of the native one under test.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
export const root = path.resolve(here, "..", "..");
export const fixtures = path.join(root, "test", "fixtures");
// The tiny SD 1.x model is also the bundled demo model.
export const modelDir = (variant) =>
  variant === "sd1" ? path.join(root, "models", "tiny-sd1") : path.join(fixtures, `tiny-${variant}`, "model");

const require = createRequire(import.meta.url);
export const native = () => require(path.join(root, "build", "Release", "ovam.node"));

const DTYPES = { F32: Float32Array, U8: Uint8Array, I64: BigInt64Array, F16: Uint16Array };

export function readSafetensors(file) {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString("utf8"));
  const base = 8 + n;
  const out = {};
  for (const [name, e] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const [b, end] = e.data_offsets;
    const Ctor = DTYPES[e.dtype];
    const bytes = buf.subarray(base + b, base + end);
    const copy = new Uint8Array(bytes.length);
    copy.set(bytes);
    out[name] = { dtype: e.dtype, shape: e.shape, data: new Ctor(copy.buffer) };
  }
  return out;
}

const cache = new Map();
export function golden(variant) {
  if (!cache.has(variant)) {
    const dir = path.join(fixtures, `tiny-${variant}`);
    cache.set(variant, {
      json: JSON.parse(fs.readFileSync(path.join(dir, "golden.json"), "utf8")),
      tensors: readSafetensors(path.join(dir, "golden.safetensors")),
    });
  }
  return cache.get(variant);
}

// ‖a − b‖ / ‖b‖ over two flat arrays of the same length.
export function relL2(a, b) {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    num += d * d;
    den += b[i] * b[i];
  }
  return Math.sqrt(num) / Math.sqrt(den || 1);
}


