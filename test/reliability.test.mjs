// Issue 15's findings, one test each: calls, crafted files and configs that used to kill the
// process (SIGABRT, SIGFPE, SIGSEGV), corrupt files silently, hang or exhaust memory. Each must now
// end in a typed error (or a correct result) with the process alive.
import t from "tap";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";

import { root } from "./helpers/golden.mjs";
import { readEntries, writeEntries } from "./helpers/safetensors-writer.mjs";

const require = createRequire(import.meta.url);
const ovam = require(path.join(root, "dist", "index.js"));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ovam-reliability-"));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));

// Settles within `ms` or fails the test (instead of hanging it).
function within(ms, promise) {
  let timer;
  const timeout = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`still pending after ${ms} ms`)), ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function fifo(name) {
  const file = path.join(tmp, name);
  execFileSync("mkfifo", [file]);
  return file;
}

// A copy of the bundled model with some config files edited: `edits` maps a file inside the
// folder ("unet/config.json") to a function of its parsed JSON, or to raw text.
let copies = 0;
function modelWith(edits = {}) {
  const dir = path.join(tmp, `model-${copies++}`);
  fs.cpSync(ovam.bundledModelDir, dir, { recursive: true });
  for (const [file, edit] of Object.entries(edits)) {
    const target = path.join(dir, file);
    fs.writeFileSync(target, typeof edit === "string" ? edit : JSON.stringify(edit(JSON.parse(fs.readFileSync(target, "utf8")))));
  }
  return dir;
}

const sd = await ovam.load();
t.teardown(() => sd.dispose());
const small = { prompt: "a car in a street", steps: 2, seed: 1 };
const image = await ovam.generate(sd, small);
const generationFile = path.join(tmp, "generation.safetensors");
await image.save(generationFile);
const rectangle = (() => {
  const data = new Uint8Array(image.width * image.height);
  for (let i = data.length / 2; i < data.length; i++) data[i] = 1;
  return { data, width: image.width, height: image.height };
})();

t.test("1: optimisation whose maps saturate rejects instead of aborting the process", async (t) => {
  for (const attribute of [{ mapActivation: "clamp" }, { mapActivation: "sigmoid" }, { mapActivation: "tanh" }, { headActivation: "clamp", mapActivation: "clamp" }]) {
    await t.rejects(ovam.optimizeToken(image, { text: "car", target: rectangle, epochs: 3, attribute }), { code: "ERR_OVAM_INVALID_ARGUMENT", message: /NaN in every epoch.*min-max/ }, JSON.stringify(attribute));
  }
  const token = await ovam.optimizeToken(image, { text: "car", target: rectangle, epochs: 2 });
  t.equal(token.losses.length, 2, "the pipeline is still usable");
});

// A copy of the saved generation with its tensors changed by `edit` (entries as readEntries gives them).
function craftedGeneration(name, edit) {
  const { entries, metadata } = readEntries(generationFile);
  const file = path.join(tmp, `${name}.safetensors`);
  writeEntries(file, edit(entries) ?? entries, metadata);
  return file;
}
const imageEntry = (entries) => entries.find((e) => e.name === "image");

t.test("2: generation files with malformed tensors are refused before use", async (t) => {
  const [h, w] = [image.height, image.width];
  const cases = {
    "1-D image": (es) => void Object.assign(imageEntry(es), { shape: [h * w * 3] }),
    "0-D image": (es) => void Object.assign(imageEntry(es), { shape: [], bytes: imageEntry(es).bytes.subarray(0, 4) }),
    "float16 image": (es) => void Object.assign(imageEntry(es), { dtype: "F16", bytes: imageEntry(es).bytes.subarray(0, h * w * 3 * 2) }),
    "[h, w, 3, 1] image": (es) => void Object.assign(imageEntry(es), { shape: [h, w, 3, 1] }),
    "I32 image": (es) => void Object.assign(imageEntry(es), { dtype: "I32" }),
    "U8 image": (es) => void Object.assign(imageEntry(es), { dtype: "U8", bytes: imageEntry(es).bytes.subarray(0, h * w * 3) }),
    "BOOL image": (es) => void Object.assign(imageEntry(es), { dtype: "BOOL", bytes: imageEntry(es).bytes.subarray(0, h * w * 3) }),
    "NaN image": (es) => void (imageEntry(es).bytes = Buffer.from(new Float32Array(h * w * 3).fill(NaN).buffer)),
    "queries of another layout": (es) => {
      const q = es.find((e) => e.name.startsWith("queries."));
      q.shape = [q.shape[0], q.shape[1], q.shape[3], q.shape[2]];
    },
    "queries of another block size": (es) => {
      const q = es.find((e) => e.name.startsWith("queries."));
      q.shape = [q.shape[0], q.shape[1] * 2, q.shape[2] / 2, q.shape[3]];
    },
    "queries in two dtypes": (es) => {
      const q = es.find((e) => e.name.startsWith("queries."));
      q.dtype = "F16";
      q.bytes = q.bytes.subarray(0, q.bytes.length / 2);
    },
    "missing latents": (es) => es.filter((e) => e.name !== "latents"),
  };
  for (const [label, edit] of Object.entries(cases)) {
    const file = craftedGeneration(label.replace(/\W+/g, "-"), edit);
    await t.rejects(ovam.loadGeneration(sd, file), { code: "ERR_OVAM_INVALID_ARGUMENT" }, label);
  }
  // The same tensor twice in the header, a 1-D "image" before or after the real one: the parser
  // keeps one, which must be checked like any other.
  const bytes = fs.readFileSync(generationFile);
  const length = Number(bytes.readBigUInt64LE(0));
  const header = bytes.subarray(8, 8 + length).toString("utf8").trimEnd();
  const entry = /"image":\{[^}]*\}/.exec(header)[0];
  const flat = entry.replace(/"shape":\[[^\]]*\]/, `"shape":[${h * w * 3}]`);
  for (const [label, text] of [["first", header.replace("{", `{${flat},`)], ["last", `${header.slice(0, -1)},${flat}}`]]) {
    const padded = text.padEnd(Math.ceil(text.length / 8) * 8, " ");
    const size = Buffer.alloc(8);
    size.writeBigUInt64LE(BigInt(Buffer.byteLength(padded)));
    const file = path.join(tmp, `duplicated-${label}.safetensors`);
    fs.writeFileSync(file, Buffer.concat([size, Buffer.from(padded), bytes.subarray(8 + length)]));
    const loaded = await ovam.loadGeneration(sd, file).then(
      (g) => ({ pixels: g.pixels }),
      (error) => ({ error }),
    );
    t.ok(
      loaded.error?.code === "ERR_OVAM_INVALID_ARGUMENT" || Buffer.compare(Buffer.from(loaded.pixels), Buffer.from(image.pixels)) === 0,
      `a duplicated "image" entry ${label}: refused or read as written (${loaded.error?.message ?? "read"})`,
    );
  }
});

t.test("3: config numbers are validated before the model is built", async (t) => {
  const cases = {
    "unet norm_num_groups 0": { "unet/config.json": (c) => ({ ...c, norm_num_groups: 0 }) },
    "vae norm_num_groups 0": { "vae/config.json": (c) => ({ ...c, norm_num_groups: 0 }) },
    "unet norm_num_groups -2": { "unet/config.json": (c) => ({ ...c, norm_num_groups: -2 }) },
    "unet sample_size 0": { "unet/config.json": (c) => ({ ...c, sample_size: 0 }) },
    "unet sample_size -8": { "unet/config.json": (c) => ({ ...c, sample_size: -8 }) },
    "unet layers_per_block 1e9": { "unet/config.json": (c) => ({ ...c, layers_per_block: 1e9 }) },
    "vae layers_per_block 1e9": { "vae/config.json": (c) => ({ ...c, layers_per_block: 1e9 }) },
    "unet heads 0": { "unet/config.json": (c) => ({ ...c, attention_head_dim: 0 }) },
    "unet block_out_channels 1e30": { "unet/config.json": (c) => ({ ...c, block_out_channels: [1e30, 64] }) },
    "text encoder num_attention_heads 0": { "text_encoder/config.json": (c) => ({ ...c, num_attention_heads: 0 }) },
    "text encoder num_hidden_layers 1e9": { "text_encoder/config.json": (c) => ({ ...c, num_hidden_layers: 1e9 }) },
    "scheduler num_train_timesteps 1e9": { "scheduler/scheduler_config.json": (c) => ({ ...c, num_train_timesteps: 1e9 }) },
    "scheduler num_train_timesteps 0.5": { "scheduler/scheduler_config.json": (c) => ({ ...c, num_train_timesteps: 0.5 }) },
  };
  for (const [label, edits] of Object.entries(cases))
    await t.rejects(ovam.load(modelWith(edits)), { code: "ERR_OVAM_CONFIG" }, label);
});

t.test("5: concurrent saves to one path each write whole files", async (t) => {
  const images = await Promise.all([1, 2, 3, 4].map((seed) => ovam.generate(sd, { ...small, seed })));
  const file = path.join(tmp, "concurrent.safetensors");
  for (let round = 0; round < 5; round++) {
    const results = await Promise.allSettled(Array.from({ length: 16 }, (_, i) => images[i % 4].save(file)));
    t.same(results.filter((r) => r.status === "rejected").map((r) => r.reason.message), [], `round ${round}: every save succeeded`);
    const loaded = await ovam.loadGeneration(sd, file);
    const match = images.find((i) => i.settings.seed === loaded.settings.seed);
    const [a, b] = await Promise.all([ovam.attribute(match, "car"), ovam.attribute(loaded, "car")]);
    t.same(b.data, a.data, `round ${round}: the file holds one image's attention, whole`);
    loaded.dispose();
  }
  t.same(fs.readdirSync(tmp).filter((f) => f.includes(".tmp-")), [], "no temporary files left behind");
  const token = await ovam.optimizeToken(image, { text: "car", target: rectangle, epochs: 1 });
  const tokenFile = path.join(tmp, "concurrent.token.safetensors");
  await Promise.all(Array.from({ length: 16 }, () => token.save(tokenFile)));
  t.same((await ovam.loadToken(tokenFile)).embedding.data, token.embedding.data, "concurrent token saves");
});

t.test("6: save() refuses targets that are not regular files", async (t) => {
  await t.rejects(image.save("/dev/null"), { code: "ERR_OVAM_INVALID_ARGUMENT", message: /device/ });
  t.ok(fs.statSync("/dev/null").isCharacterDevice(), "/dev/null is still a device");
  const pipe = fifo("save-target.fifo");
  await t.rejects(within(10000, image.save(pipe)), { code: "ERR_OVAM_INVALID_ARGUMENT", message: /FIFO/ });
  await t.rejects(image.save(tmp), { code: "ERR_OVAM_INVALID_ARGUMENT", message: /folder/ });
  await t.rejects(image.save(path.join(tmp, "no-such-folder", "x.safetensors")), { code: "ERR_OVAM_NOT_FOUND" });
});

t.test("7: steps and guidance are checked against what the scheduler and numbers can do", async (t) => {
  // Each scheduler either runs 1000 steps to a real image or refuses them before the first step.
  for (const scheduler of ["PNDM", "DDIM", "DPMSolver", "LMS", "Euler"]) {
    let started = false;
    const result = await ovam.generate(sd, { ...small, steps: 1000, scheduler, capture: false, onStep: () => void (started = true) }).then(
      (g) => ({ g }),
      (error) => ({ error }),
    );
    if (result.error) {
      t.equal(result.error.code, "ERR_OVAM_INVALID_ARGUMENT", `${scheduler}: ${result.error.message}`);
      t.notOk(started, `${scheduler}: refused before the first step`);
    } else {
      t.ok(result.g.pixels.some((v) => v !== result.g.pixels[0]), `${scheduler}: 1000 steps make an image that is not flat`);
      t.equal(result.g.settings.steps, 1000);
    }
  }
  await t.rejects(ovam.generate(sd, { ...small, guidanceScale: 1e30 }), { code: "ERR_OVAM_INVALID_OPTION", option: "guidanceScale" });
});

t.test("8: tokenizer files that do not belong together are refused", async (t) => {
  const merges = fs.readFileSync(path.join(ovam.bundledModelDir, "tokenizer", "merges.txt"), "utf8");
  const cases = {
    "empty merges.txt": "",
    "merges.txt cut in half": merges.slice(0, merges.length / 2),
    "merges.txt of one line": merges.split("\n").slice(0, 2).join("\n"),
    "a merge of unknown symbols": `${merges}\nqqq zzz\n`.replace(/\n.*\n/, "\nqqq zzz\n"),
  };
  for (const [label, text] of Object.entries(cases))
    await t.rejects(ovam.load(modelWith({ "tokenizer/merges.txt": text })), { code: "ERR_OVAM_TOKENIZER" }, label);
  await t.rejects(ovam.load(modelWith({ "tokenizer/vocab.json": (v) => ({ ...v, "car</w>": 4e8 }) })), { code: "ERR_OVAM_TOKENIZER", message: /4e\+?0?8|400000000/ }, "a vocabulary id of 4e8");
});

t.test("9: non-finite embeddings and stores are refused", async (t) => {
  const token = await ovam.optimizeToken(image, { text: "car", target: rectangle, epochs: 1 });
  for (const value of [NaN, Infinity, -Infinity]) {
    const embedding = { data: token.embedding.data.slice(), shape: token.embedding.shape };
    embedding.data[5] = value;
    const bad = new ovam.OptimizedToken({ ...token, embedding });
    await t.rejects(ovam.attribute(image, bad), { code: "ERR_OVAM_INVALID_ARGUMENT", message: /NaN or infinite/ }, `attribute with a ${value} embedding`);
    const file = path.join(tmp, `token-${value}.safetensors`);
    await bad.save(file);
    await t.rejects(ovam.loadToken(file), { code: "ERR_OVAM_WEIGHTS", message: /NaN or infinite/ }, `loadToken of a ${value} embedding`);
  }
  const file = craftedGeneration("nan-queries", (es) => {
    const q = es.find((e) => e.name.startsWith("queries."));
    const values = new Float32Array(q.bytes.buffer.slice(q.bytes.byteOffset, q.bytes.byteOffset + q.bytes.length));
    values[7] = NaN;
    q.bytes = Buffer.from(values.buffer);
  });
  await t.rejects(ovam.loadGeneration(sd, file), { code: "ERR_OVAM_INVALID_ARGUMENT", message: /NaN or infinite/ }, "a store with NaN queries");
});

t.test("10: FIFOs as input files are refused without hanging", async (t) => {
  const pipe = fifo("input.fifo");
  await t.rejects(within(10000, ovam.loadGeneration(sd, pipe)), { code: "ERR_OVAM_INVALID_ARGUMENT", message: /FIFO/ }, "generation file");
  await t.rejects(within(10000, ovam.readGenerationInfo(pipe)), { code: "ERR_OVAM_INVALID_ARGUMENT", message: /FIFO/ }, "readGenerationInfo");
  await t.rejects(within(10000, ovam.loadToken(pipe)), { code: "ERR_OVAM_INVALID_ARGUMENT", message: /FIFO/ }, "token file");
  await t.rejects(within(10000, ovam.loadGeneration(sd, "/dev/zero")), { code: "ERR_OVAM_INVALID_ARGUMENT", message: /device/ }, "/dev/zero");
  for (const file of ["unet/config.json", "tokenizer/merges.txt", "tokenizer/vocab.json", "scheduler/scheduler_config.json"]) {
    const dir = modelWith();
    fs.rmSync(path.join(dir, file));
    execFileSync("mkfifo", [path.join(dir, file)]);
    // Refused as a FIFO, or (config.json) as missing: a component folder needs a regular one.
    await t.rejects(within(10000, ovam.load(dir)), { message: /FIFO|no config\.json/ }, file);
  }
});

t.test("11: memory is estimated and bounded before it is asked for", async (t) => {
  const budgeted = await ovam.load({ memoryBudget: 2 ** 30 });
  t.teardown(() => budgeted.dispose());
  t.equal(budgeted.memoryBudget, 2 ** 30);
  t.ok(sd.memoryBudget > 0 && sd.memoryBudget <= os.totalmem(), `default budget ${sd.memoryBudget} from the machine's ${os.totalmem()} bytes`);
  // 4096² decodes through 32-channel full-size activations (6.4 GB); at 1280² attention is formed
  // in blocks of queries, but a self-attention capture keeps a 25600² float32 mean (2.6 GB).
  for (const [label, request] of [
    ["4096×4096", { ...small, width: 4096, height: 4096 }],
    ["1280×1280 with a self-attention capture", { ...small, width: 1280, height: 1280, capture: { selfAttention: true } }],
  ]) {
    const refused = await ovam.generate(budgeted, request).catch((e) => e);
    t.equal(refused.code, "ERR_OVAM_INVALID_OPTION", `${label}: ${refused.message}`);
    t.match(refused.message, /memory budget of 1\.1 GB.*needs \d+(\.\d)? GB.*memoryBudget/);
  }
  const fits = await ovam.generate(budgeted, small);
  t.equal(fits.width, 64, "a small image fits");
  // 18 maps of 4096² floats, held twice: 2.4 GB.
  const text = "a car in a street with trees and a red bus next to a small house";
  await t.rejects(ovam.attribute(fits, text, { size: [4096, 4096] }), { code: "ERR_OVAM_INVALID_OPTION", option: "size", message: /memory budget/ });
  t.equal((await ovam.attribute(fits, "car", { size: [256, 256] })).width, 256, "a smaller output fits");
  await t.rejects(ovam.load({ memoryBudget: 0 }), { code: "ERR_OVAM_INVALID_OPTION", option: "memoryBudget" });

  // A PNG whose 1 MB of IDAT inflates to 1 GB: the header says 64×64, so inflation stops there.
  const zlib = await import("node:zlib");
  const { chunk } = require(path.join(root, "dist", "png.js"));
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(64, 0);
  ihdr.writeUInt32BE(64, 4);
  ihdr[8] = 8;
  const bomb = zlib.deflateSync(Buffer.alloc(256 << 20), { level: 9 });
  const png = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk("IHDR", ihdr), chunk("IDAT", bomb), chunk("IEND", Buffer.alloc(0))]);
  const before = process.memoryUsage().rss;
  await t.rejects(ovam.decodePNG(png, "bomb.png"), { code: "ERR_OVAM_INVALID_ARGUMENT", message: /inflates past the 4160 bytes/ });
  t.ok(process.memoryUsage().rss - before < 128 << 20, "inflation stopped early");
});

t.test("12: dispose() frees the model at once, even while its images are referenced", async (t) => {
  const dir = modelWith();
  const mapped = () => fs.readFileSync("/proc/self/maps", "utf8").includes(dir);
  // float32 weights are mapped from the file as they are (a bfloat16 load, the default on some CPUs, converts them).
  const own = await ovam.load(dir, { dtype: "float32" });
  const made = await ovam.generate(own, small);
  t.ok(mapped(), "the model's weights are mapped while it is loaded");
  own.dispose();
  t.notOk(mapped(), "disposing the pipeline unmaps them though its image is still referenced");
  t.ok((await made.toPNG()).length > 0, "the image stays readable");
  await made.save(path.join(tmp, "after-dispose.safetensors"));
  await t.rejects(ovam.attribute(made, "car"), { code: "ERR_OVAM_DISPOSED" });
});

t.test("13: an async onStep or onEpoch that rejects cancels the job and becomes its rejection", async (t) => {
  const unhandled = [];
  const onUnhandled = (reason) => unhandled.push(reason);
  process.on("unhandledRejection", onUnhandled);
  t.teardown(() => process.off("unhandledRejection", onUnhandled));
  let steps = 0;
  await t.rejects(
    ovam.generate(sd, {
      ...small,
      steps: 20,
      onStep: async (step) => {
        steps = step;
        if (step === 2) throw new Error("step callback failed");
      },
    }),
    { message: "step callback failed" },
  );
  t.ok(steps < 20, `cancelled after step ${steps} of 20`);
  await t.rejects(
    ovam.optimizeToken(image, {
      text: "car",
      target: rectangle,
      epochs: 50,
      onEpoch: () => Promise.reject(new Error("epoch callback failed")),
    }),
    { message: "epoch callback failed" },
  );
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.same(unhandled, [], "no unhandled rejection");
  t.equal((await ovam.generate(sd, small)).width, 64, "the pipeline is still usable");
});
