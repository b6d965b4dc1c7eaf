// Shared pieces of the dataset tests: a small spec on the bundled tiny model, a token file of a
// chosen width, and a folder's files as bytes for byte-for-byte comparisons.
import fs from "node:fs";
import path from "node:path";

import { writeEntries } from "./safetensors-writer.mjs";

/** 3 classes × 4 images on the tiny model (VOC ids: car 7, person 15, bus 6 by an optimised token). */
export function smallSpec(extra = {}) {
  return {
    format: "voc",
    classes: [{ name: "car" }, { name: "person", attribute: "a person" }, { id: 6, name: "bus", attribute: { token: "bus.safetensors" } }],
    prompts: { templates: ["a photograph of a {class}", "a {class} in a city street"], perClass: 4 },
    seeds: { base: 10 },
    generate: { steps: 2 },
    save: { overlays: true },
    ...extra,
  };
}

/** Writes a token file (as token.save() does) whose embedding is `width` wide. */
export function writeToken(file, width, text = "bus") {
  const values = Float32Array.from({ length: 2 * width }, (_, i) => Math.sin(i * 0.7) * 0.5);
  const bytes = Buffer.from(values.buffer);
  writeEntries(
    file,
    [
      { name: "embedding", dtype: "F32", shape: [2, width], bytes },
      { name: "initial", dtype: "F32", shape: [2, width], bytes },
    ],
    { format: "ovam-token/1", text, context: `a ${text}`, dims: JSON.stringify([2, width]), losses: "[]" },
  );
}

/** Every file under `dir` (relative path → bytes), the manifest's lines without their timings. */
export function snapshot(dir) {
  const files = {};
  for (const name of fs.readdirSync(dir, { recursive: true })) {
    const file = path.join(dir, name);
    if (!fs.statSync(file).isFile()) continue;
    files[name] = name === "manifest.jsonl" ? manifestIds(dir) : fs.readFileSync(file);
  }
  return files;
}

/** The manifest's lines, parsed, timings removed, sorted by index. */
export function manifest(dir) {
  return fs
    .readFileSync(path.join(dir, "manifest.jsonl"), "utf8")
    .split("\n")
    .filter(Boolean)
    .map((line) => {
      const { timings, ...rest } = JSON.parse(line);
      return rest;
    })
    .sort((a, b) => a.index - b.index);
}

function manifestIds(dir) {
  return JSON.stringify(manifest(dir));
}

/** Files that differ between two snapshots (or exist in one only). */
export function differences(a, b) {
  const names = [...new Set([...Object.keys(a), ...Object.keys(b)])].sort();
  return names.filter((name) => !(name in a) || !(name in b) || !Buffer.from(a[name]).equals(Buffer.from(b[name])));
}
