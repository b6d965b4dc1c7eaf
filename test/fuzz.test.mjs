// Fuzzing the file readers: a few hundred mutated generation, token and model files (a seeded,
// deterministic generator) are loaded in a child process, which must survive every one and end
// each in a load or a typed OvamError. A crash names the case it died on.
import t from "tap";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";

import { root } from "./helpers/golden.mjs";
import { prng } from "./helpers/prng.mjs";
import { encode } from "./helpers/safetensors-writer.mjs";

const require = createRequire(import.meta.url);
const ovam = require(path.join(root, "dist", "index.js"));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ovam-fuzz-"));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));

// The same cases on every run.
const seed = 0x0a7e15;
const random = prng(seed);
const pick = (list) => list[Math.floor(random() * list.length)];
const HOSTILE = [0, -1, 1, 2, 3, 7, 1e9, 1e30, -1e30, 0.5, 2 ** 53, 2 ** 63, "7", null, [], {}, true, [1, 2], [0], [-1, 4]];

// The originals: a generation and a token made by the bundled model.
const sd = await ovam.load();
const image = await ovam.generate(sd, { prompt: "a car in a street", steps: 2, seed: 3 });
const rectangle = { data: new Uint8Array(64 * 64).fill(1, 2048), width: 64, height: 64 };
const token = await ovam.optimizeToken(image, { text: "car", target: rectangle, epochs: 1 });
const originals = { generation: path.join(tmp, "generation.safetensors"), token: path.join(tmp, "token.safetensors") };
await image.save(originals.generation);
await token.save(originals.token);
sd.dispose();

function split(file) {
  const bytes = fs.readFileSync(file);
  const length = Number(bytes.readBigUInt64LE(0));
  return { header: JSON.parse(bytes.subarray(8, 8 + length).toString("utf8")), data: bytes.subarray(8 + length) };
}

// A value somewhere inside `value` (objects and arrays, depth-first), replaced by `make(old)`.
function mutateDeep(value, make) {
  const slots = [];
  const walk = (v) => {
    if (Array.isArray(v)) v.forEach((x, i) => (slots.push([v, i]), walk(x)));
    else if (v && typeof v === "object") Object.entries(v).forEach(([k, x]) => (slots.push([v, k]), walk(x)));
  };
  walk(value);
  if (slots.length === 0) return make(value);
  const [holder, key] = pick(slots);
  holder[key] = make(holder[key]);
  return value;
}

const mutations = {
  // Bytes of the header flipped.
  headerBytes(bytes) {
    const out = Buffer.from(bytes);
    const length = Number(out.readBigUInt64LE(0));
    for (let i = 0, n = 1 + Math.floor(random() * 4); i < n; i++) out[8 + Math.floor(random() * length)] ^= 1 << Math.floor(random() * 8);
    return out;
  },
  // One tensor entry's shape, dtype or offsets changed.
  entry(bytes, { header, data }) {
    const names = Object.keys(header).filter((n) => n !== "__metadata__");
    const e = header[pick(names)];
    const field = pick(["shape", "shape", "dtype", "data_offsets", "drop", "copy"]);
    if (field === "dtype") e.dtype = pick(["F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL", "F8", "x"]);
    else if (field === "drop") delete header[names[0]];
    else if (field === "copy") header[`${pick(names)}`] = { ...e };
    else mutateDeep(e[field], (old) => (typeof old === "number" && random() < 0.5 ? pick([0, old * 2, Math.floor(old / 2), old + 1, old - 1]) : pick(HOSTILE)));
    return encode(header, data);
  },
  // The JSON inside the metadata strings ("ovam", "user", "dims", …) changed.
  metadata(bytes, { header, data }) {
    const meta = header.__metadata__ ?? {};
    const key = pick(Object.keys(meta));
    let inner;
    try {
      inner = JSON.parse(meta[key]);
    } catch {
      inner = meta[key];
    }
    meta[key] = typeof inner === "object" && inner !== null ? JSON.stringify(mutateDeep(inner, () => pick(HOSTILE))) : String(pick(HOSTILE));
    return encode(header, data);
  },
  // Values in the data section overwritten with NaN, Infinity or random bytes.
  dataBytes(bytes) {
    const out = Buffer.from(bytes);
    const start = 8 + Number(out.readBigUInt64LE(0));
    for (let i = 0, n = 1 + Math.floor(random() * 8); i < n; i++) {
      const at = start + 4 * Math.floor((random() * (out.length - start)) / 4);
      if (at + 4 <= out.length) out.writeFloatLE(pick([NaN, Infinity, -Infinity, 1e38, random()]), at);
    }
    return out;
  },
  truncate(bytes) {
    return bytes.subarray(0, Math.floor(random() * bytes.length));
  },
};

const cases = [];
for (const [kind, count] of [["generation", 160], ["token", 60]]) {
  const bytes = fs.readFileSync(originals[kind]);
  for (let i = 0; i < count; i++) {
    const name = pick(Object.keys(mutations));
    const file = path.join(tmp, `${kind}-${i}-${name}.safetensors`);
    fs.writeFileSync(file, mutations[name](bytes, split(originals[kind])));
    cases.push({ kind, file, mutation: name });
  }
}

// Model folders: the bundled model's files linked, one config or tokenizer file mutated.
const configs = ["unet/config.json", "vae/config.json", "text_encoder/config.json", "scheduler/scheduler_config.json", "tokenizer/vocab.json", "tokenizer/merges.txt"];
for (let i = 0; i < 32; i++) {
  const dir = path.join(tmp, `model-${i}`);
  for (const entry of fs.readdirSync(ovam.bundledModelDir, { recursive: true, withFileTypes: true })) {
    const from = path.join(entry.parentPath ?? entry.path, entry.name);
    const to = path.join(dir, path.relative(ovam.bundledModelDir, from));
    if (entry.isDirectory()) fs.mkdirSync(to, { recursive: true });
    else fs.mkdirSync(path.dirname(to), { recursive: true }), fs.symlinkSync(from, to);
  }
  const file = pick(configs);
  const target = path.join(dir, file);
  const text = fs.readFileSync(target, "utf8");
  fs.rmSync(target);
  if (file.endsWith("merges.txt")) {
    const lines = text.split("\n");
    const at = Math.floor(random() * lines.length);
    fs.writeFileSync(target, pick([() => lines.slice(0, at), () => [...lines.slice(0, at), "a", ...lines.slice(at + 1)], () => [...lines.slice(0, at), "zq qz", ...lines.slice(at)]])().join("\n"));
  } else if (file.endsWith("vocab.json")) {
    const vocab = JSON.parse(text);
    vocab[pick(Object.keys(vocab))] = pick(HOSTILE);
    fs.writeFileSync(target, JSON.stringify(vocab));
  } else {
    const config = JSON.parse(text);
    const key = pick(Object.keys(config).filter((k) => !k.startsWith("_")));
    config[key] = Array.isArray(config[key]) && random() < 0.5 ? mutateDeep(config[key], () => pick(HOSTILE)) : pick(HOSTILE);
    fs.writeFileSync(target, JSON.stringify(config));
  }
  cases.push({ kind: "model", file: dir, mutation: `${file}` });
}

t.test(`${cases.length} mutated files: the process survives each and every failure is typed`, async (t) => {
  const list = path.join(tmp, "cases.json");
  fs.writeFileSync(list, JSON.stringify(cases));
  const started = Date.now();
  const child = spawnSync(process.execPath, [path.join(root, "test", "helpers", "fuzz-child.mjs"), list], { encoding: "utf8", timeout: 240000, maxBuffer: 64 << 20 });
  const results = child.stdout.split("\n").filter(Boolean).map((line) => JSON.parse(line));
  const last = results.at(-1)?.index ?? -1;
  const next = cases[last + 1];
  t.equal(child.status, 0, child.status === 0 ? "the child exited normally" : `the child died (${child.signal ?? child.status}) on case ${last + 1} (seed ${seed}): ${next?.kind} ${next?.mutation} ${next?.file}\n${child.stderr.slice(-2000)}`);
  t.equal(results.length, cases.length, "every case reported");
  const untyped = results.filter((r) => r.outcome === "untyped").map((r) => ({ ...cases[r.index], code: r.code }));
  t.same(untyped, [], "every refusal is an OvamError");
  const tally = {};
  for (const r of results) tally[`${cases[r.index].kind} ${r.outcome}`] = (tally[`${cases[r.index].kind} ${r.outcome}`] ?? 0) + 1;
  t.comment(`${JSON.stringify(tally)} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
});
