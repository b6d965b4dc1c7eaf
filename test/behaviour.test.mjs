// Behaviours the API promises beyond single calls: the event loop stays free while native jobs
// run, aborts stop within a step and leave the pipeline usable, concurrent calls match serial ones,
// long prompts, repeated words, batches of images in optimisation, non-square images, the inputs
// api.test.mjs leaves out, and half-precision capture stores.
import t from "tap";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { performance } from "node:perf_hooks";

import { golden, relL2, root } from "./helpers/golden.mjs";
import { referenceGeneration } from "./helpers/pipeline.mjs";

const require = createRequire(import.meta.url);
const ovam = require(path.join(root, "dist", "index.js"));

// float32, the dtype the tolerances here were measured in (the default, "auto", may pick bfloat16).
const sd = await ovam.load({ dtype: "float32" });
t.teardown(() => sd.dispose());

const same = (a, b) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
const settle = () => new Promise((resolve) => setImmediate(resolve));

async function rejection(call) {
  try {
    await call();
  } catch (error) {
    return error;
  }
  return undefined;
}

// Runs `call` while a 5 ms interval ticks; the largest gap between ticks (or to the end) tells
// how long the JS thread was blocked.
async function whileTicking(call) {
  let ticks = 0;
  let maxGap = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    maxGap = Math.max(maxGap, now - last);
    last = now;
    ticks++;
  }, 5);
  const start = performance.now();
  try {
    await call();
  } finally {
    clearInterval(timer);
  }
  const end = performance.now();
  return { ticks, maxGap: Math.max(maxGap, end - last), duration: end - start };
}

function responsive(t, label, { ticks, maxGap, duration }) {
  t.comment(`${label}: ${duration.toFixed(0)} ms, ${ticks} ticks, longest gap ${maxGap.toFixed(1)} ms`);
  t.ok(duration > 100, `${label}: long enough to tell (${duration.toFixed(0)} ms)`);
  t.ok(ticks >= duration / 5 / 4, `${label}: the interval kept ticking (${ticks} ticks)`);
  t.ok(maxGap < duration / 5, `${label}: no gap over a fifth of the run (${maxGap.toFixed(1)} ms)`);
}

t.test("the event loop stays responsive during native jobs", async (t) => {
  let image;
  responsive(t, "generate 20 steps", await whileTicking(async () => (image = await ovam.generate(sd, { prompt: "a car", steps: 20, seed: 1, width: 128, height: 128 }))));
  const target = (await ovam.attribute(image, "car")).mask("car");
  responsive(t, "optimizeToken 200 epochs", await whileTicking(() => ovam.optimizeToken(image, { text: "car", target, epochs: 200 })));
  const long = Array(600).fill("car").join(" ");
  responsive(t, "attribute a 600-token text", await whileTicking(() => ovam.attribute(image, long)));
  image.dispose();
});

t.test("an abort stops generation within one step and leaves the pipeline usable", async (t) => {
  const request = { prompt: "a car", steps: 8, seed: 11, width: 128, height: 128 };
  const controller = new AbortController();
  const steps = [];
  const abortAt = 3;
  const error = await rejection(() =>
    ovam.generate(sd, {
      ...request,
      steps: 200,
      signal: controller.signal,
      onStep: (step) => {
        steps.push(step);
        if (step === abortAt) controller.abort();
      },
    }),
  );
  await settle();
  t.ok(error instanceof ovam.AbortError, `an AbortError: ${error}`);
  t.equal(error?.code, "ERR_OVAM_ABORTED");
  const after = steps.filter((s) => s > abortAt);
  t.ok(after.length <= 1, `at most the step under way finishes after the abort (steps after: [${after}])`);

  const early = await rejection(() => ovam.generate(sd, { ...request, signal: AbortSignal.abort() }));
  t.ok(early instanceof ovam.AbortError && early.code === "ERR_OVAM_ABORTED", "an already-aborted signal rejects");

  const next = await ovam.generate(sd, request);
  const fresh = await ovam.load({ dtype: "float32" });
  const reference = await ovam.generate(fresh, request);
  t.ok(same(next.pixels, reference.pixels), "the next generation matches a fresh pipeline's, pixel for pixel");
  t.ok(same(next.latents.data, reference.latents.data), "and its latents");
  for (const x of [next, reference, fresh]) x.dispose();
});

t.test("concurrent calls on one pipeline match serial calls", async (t) => {
  const requests = [1, 2, 3, 4].map((seed) => ({ prompt: seed % 2 ? "a car" : "a tree", steps: 4, seed }));
  const serial = [];
  for (const r of requests) serial.push(await ovam.generate(sd, r));
  const concurrent = await Promise.all(requests.map((r) => ovam.generate(sd, r)));
  concurrent.forEach((image, i) => {
    t.ok(same(image.pixels, serial[i].pixels), `seed ${requests[i].seed}: same pixels`);
    t.ok(same(image.latents.data, serial[i].latents.data), `seed ${requests[i].seed}: same latents`);
  });
  t.notOk(same(serial[0].pixels, serial[2].pixels), "different seeds give different images (the comparison can fail)");

  const texts = ["a car", "a tree in a field", "car", "a red car next to a tree"];
  const maps = [];
  for (const text of texts) maps.push(await ovam.attribute(serial[0], text));
  const together = await Promise.all(texts.map((text) => ovam.attribute(serial[0], text)));
  together.forEach((m, i) => t.ok(same(m.data, maps[i].data), `attribute "${texts[i]}": same maps concurrently`));

  // An aborted job beside a running one leaves the other's result alone.
  const controller = new AbortController();
  const [aborted, kept] = await Promise.allSettled([
    ovam.generate(sd, { ...requests[2], steps: 200, signal: controller.signal, onStep: (step) => step === 2 && controller.abort() }),
    ovam.generate(sd, requests[1]),
  ]);
  t.ok(aborted.reason instanceof ovam.AbortError, "the aborted one rejects");
  t.ok(same(kept.value.pixels, serial[1].pixels), "the other one is unaffected");
  for (const x of [...serial, ...concurrent, kept.value]) x.dispose();
});

t.test("prompts and texts over 77 tokens", async (t) => {
  const words = (n) => Array(n).fill("car").join(" ");
  const [long, first, rest] = [words(100), words(75), words(25)];
  t.same([long, first, rest].map((text) => sd.tokenize(text).ids.length), [102, 77, 27], "one token per word, plus bos and eos");

  // diffusers truncates the prompt to the encoder's 77 tokens.
  const a = await ovam.generate(sd, { prompt: long, steps: 2, seed: 4 });
  const b = await ovam.generate(sd, { prompt: first, steps: 2, seed: 4 });
  t.ok(same(a.pixels, b.pixels), "a 102-token prompt draws what its first 77 tokens draw");
  t.equal(a.settings.prompt, long, "the settings keep the whole prompt");

  const maps = await ovam.attribute(a, long);
  t.same(maps.shape, [102, a.height, a.width], "one map per token");
  t.ok(maps.data.every(Number.isFinite), "all finite");

  // Encoded in 75-token windows framed by bos/eos: each window's linear maps are those of its text alone.
  const linear = { mode: "linear", size: "latent" };
  const [whole, head, tail] = await Promise.all([long, first, rest].map((text) => ovam.attribute(a, text, linear)));
  const plane = whole.shape[1] * whole.shape[2];
  const rows = (m, from, to) => m.data.subarray(from * plane, to * plane);
  t.ok(relL2(rows(whole, 0, 76), rows(head, 0, 76)) < 1e-6, "bos and tokens 1–75: the first window");
  t.ok(relL2(rows(whole, 76, 102), rows(tail, 1, 27)) < 1e-6, "tokens 76–100 and eos: the second window");
  a.dispose();
  b.dispose();
});

t.test("a word appearing twice keeps a map per occurrence", async (t) => {
  const image = await ovam.generate(sd, { prompt: "a car next to a car", steps: 3, seed: 2 });
  const maps = await ovam.attribute(image, "a car next to a car");
  const occurrences = maps.occurrences("car");
  t.equal(occurrences.length, 2, `two occurrences: ${JSON.stringify(occurrences)}`);
  const error = await rejection(() => maps.word("car"));
  t.ok(error instanceof ovam.AmbiguousWordError, `word("car") is ambiguous: ${error?.message}`);
  t.equal(error?.code, "ERR_OVAM_AMBIGUOUS_WORD");
  t.ok((await rejection(() => maps.mask("car"))) instanceof ovam.AmbiguousWordError, "so is mask(\"car\")");
  const [first, second] = [0, 1].map((occurrence) => maps.word("car", { occurrence }));
  t.ok(same(first.data, maps.token(occurrences[0][0]).data), "occurrence 0: its own token's map");
  t.ok(same(second.data, maps.token(occurrences[1][0]).data), "occurrence 1: its own token's map");
  t.ok(relL2(first.data, second.data) > 1e-3, "the two maps differ (nothing merged)");
  image.dispose();
});

t.test("non-square images", async (t) => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ovam-behaviour-"));
  t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const square = await ovam.generate(sd, { prompt: "a car", steps: 2, seed: 3 });
  const count = sd.tokenize("a car").ids.length;
  for (const [width, height] of [[128, 64], [64, 128]]) {
    const label = `${width}×${height}`;
    const image = await ovam.generate(sd, { prompt: "a car", steps: 2, seed: 3, width, height });
    const f = sd.vaeScaleFactor;
    t.same([image.width, image.height, image.pixels.length], [width, height, width * height * 3], `${label}: size`);
    t.same(image.latents.shape.slice(2), [height / f, width / f], `${label}: latents [${image.latents.shape}]`);
    // Each block keeps its own grid: the square image's, scaled per axis.
    const [sh, sw] = [square.height, square.width];
    t.same(
      image.blocks.map((b) => [b.name, b.height, b.width]),
      square.blocks.map((b) => [b.name, (b.height * height) / sh, (b.width * width) / sw]),
      `${label}: block grids ${image.blocks.map((b) => `${b.height}×${b.width}`).join(" ")}`,
    );
    const maps = await ovam.attribute(image, "a car");
    t.same(maps.shape, [count, height, width], `${label}: maps at size "image"`);
    const latent = await ovam.attribute(image, "a car", { size: "latent" });
    t.same(latent.shape, [count, height / f, width / f], `${label}: maps at size "latent"`);
    for (const [what, png] of [["image", await image.toPNG()], ["map", await maps.toPNG("car")]])
      t.same([png.readUInt32BE(16), png.readUInt32BE(20)], [width, height], `${label}: ${what} PNG size`);
    const file = path.join(tmp, `${label}.safetensors`);
    await image.save(file);
    const loaded = await ovam.loadGeneration(sd, file);
    t.same(loaded.blocks, image.blocks, `${label}: blocks survive save and load`);
    t.ok(same((await ovam.attribute(loaded, "a car")).data, maps.data), `${label}: and so do the maps`);
    loaded.dispose();
    const token = await ovam.optimizeToken(image, { text: "car", target: maps.mask("car"), epochs: 2 });
    t.same((await ovam.attribute(image, token)).shape, [2, height, width], `${label}: token maps`);
    image.dispose();
  }
  square.dispose();
});

t.test("optimizeToken over several images sums their losses", async (t) => {
  const images = [
    await ovam.generate(sd, { prompt: "a car in a street", steps: 4, seed: 5 }),
    await ovam.generate(sd, { prompt: "a red car", steps: 4, seed: 6, width: 128, height: 64 }),
  ];
  const targets = await Promise.all(images.map(async (image) => (await ovam.attribute(image, "car")).mask("car", { threshold: 0.4 })));
  const base = { text: "car", context: "a car in a street", epochs: 3 };
  const singles = await Promise.all(images.map((image, i) => ovam.optimizeToken(image, { ...base, target: targets[i] })));
  const both = await ovam.optimizeToken(images, { ...base, targets });
  const sum = singles[0].losses[0] + singles[1].losses[0];
  t.comment(`epoch-0 losses: ${singles.map((s) => s.losses[0].toFixed(6)).join(" + ")} = ${sum.toFixed(6)}; together ${both.losses[0].toFixed(6)}`);
  t.ok(Math.abs(both.losses[0] - sum) <= 1e-5 * sum, "epoch 0: the loss over both images is the sum of each image's");
  const reversed = await ovam.optimizeToken([images[1], images[0]], { ...base, targets: [targets[1], targets[0]] });
  t.ok(Math.abs(reversed.losses[0] - sum) <= 1e-5 * sum, "in either order");
  t.notSame(both.embedding.data, singles[0].embedding.data, "the second image changes the optimised token");
  for (const image of images) {
    const maps = await ovam.attribute(image, both);
    t.same(maps.shape, [2, image.height, image.width], `the token attributes on the ${image.width}×${image.height} image`);
    t.ok(maps.data.every(Number.isFinite), "with finite maps");
  }
  for (const image of images) image.dispose();
});

t.test("inputs api.test.mjs does not cover", async (t) => {
  const image = await ovam.generate(sd, { prompt: "a car", steps: 2, seed: 1 });
  const mask = (await ovam.attribute(image, "car")).mask("car");
  const invalid = async (label, call, option) => {
    const error = await rejection(call);
    t.ok(error instanceof ovam.InvalidOptionError, `${label}: ${error?.message ?? "no error"}`);
    t.same([error?.code, error?.option], ["ERR_OVAM_INVALID_OPTION", option], `${label}: code and option`);
  };
  await invalid("threads -1", () => ovam.load({ threads: -1 }), "threads");
  await invalid("options null", () => ovam.generate(sd, null), "options");
  await invalid("width 0", () => ovam.generate(sd, { prompt: "a car", width: 0 }), "width");
  await invalid("guidance -1", () => ovam.generate(sd, { prompt: "a car", guidanceScale: -1 }), "guidanceScale");
  await invalid("guidance Infinity", () => ovam.generate(sd, { prompt: "a car", guidanceScale: Infinity }), "guidanceScale");
  await invalid("steps \"10\"", () => ovam.generate(sd, { prompt: "a car", steps: "10" }), "steps");
  await invalid("latents of NaN", () => ovam.generate(sd, { prompt: "a car", latents: { data: new Float32Array(4 * 8 * 8).fill(NaN), shape: [1, 4, 8, 8] } }), "latents.data");
  await invalid("attribute size [-8, 8]", () => ovam.attribute(image, "car", { size: [-8, 8] }), "size[0]");
  await invalid("attribute size [8, 1e6]", () => ovam.attribute(image, "car", { size: [8, 1e6] }), "size[1]");
  await invalid("attribute text of tabs and newlines", () => ovam.attribute(image, "\t\n"), "text");
  await invalid("attribute options 5", () => ovam.attribute(image, "car", 5), "options");
  await invalid("optimize text of spaces", () => ovam.optimizeToken(image, { text: "   ", target: mask }), "text");
  await invalid("optimize image \"x\"", () => ovam.optimizeToken("x", { text: "car", target: mask }), "image");
  await invalid(
    "optimize target of NaN",
    () => ovam.optimizeToken(image, { text: "car", target: { data: new Float32Array(mask.data.length).fill(NaN), width: mask.width, height: mask.height } }),
    "target.data",
  );
  await invalid("optimize target transposed", () => ovam.optimizeToken(image, { text: "car", target: { ...mask, width: mask.height * 2, height: mask.width / 2 } }), "target");
  await invalid("mask threshold NaN", async () => (await ovam.attribute(image, "car")).mask("car", { threshold: NaN }), "threshold");
  image.dispose();
});

// Each stored query is rounded once to the storage dtype, a relative error of at most its unit
// roundoff u (float16 2^-11, bfloat16 2^-8); linear maps are sums of products with those queries
// and softmax maps damp score errors, so the maps' relative L2 error stays below u.
const roundoffs = [["float16", 2 ** -11], ["bfloat16", 2 ** -8]];

// `maps(image, text, options)`: the maps' data, through the API or a native generation.
async function compareStores(t, label, maps, full, half, cases) {
  t.equal(half.attentionBytes * 2, full.attentionBytes, `${label}: half the bytes (${half.attentionBytes} vs ${full.attentionBytes})`);
  t.ok(same(half.pixels, full.pixels), `${label}: the store does not change the image`);
  let worst = 0;
  for (const { name, text, options } of cases) {
    const [a, b] = await Promise.all([maps(half, text, options), maps(full, text, options)]);
    const e = relL2(a, b);
    worst = Math.max(worst, e);
    t.comment(`${label} ${name} (${options.mode}): relL2 ${e.toExponential(2)}`);
  }
  return worst;
}

t.test("float16 and bfloat16 capture stores", async (t) => {
  const { json } = golden("sd1");
  const cases = json.ovam
    .filter((c) => !["with_mid_block", "cond_branch"].includes(c.label))
    .map((c) => ({ name: c.label, text: c.text, options: { mode: c.options.heads_epochs_activation === "linear" ? "linear" : "softmax", size: c.expand_size } }));
  const full = await referenceGeneration("sd1");
  for (const [dtype, u] of roundoffs) {
    const half = await referenceGeneration("sd1", { dtype });
    const worst = await compareStores(t, dtype, async (g, text, options) => (await g.attribute({ text }, options)).maps.data, full, half, cases);
    t.ok(worst > 0 && worst < u, `${dtype}: worst relL2 ${worst.toExponential(2)} < u = ${u.toExponential(2)}`);
    half.dispose();
  }
  full.dispose();
});

// A streaming store sums in float32 and rounds once, so its error does not grow with the steps;
// a running sum kept in the storage dtype rounds at every step (it measured 3u for float16 and
// 4u for bfloat16 after these 50 steps).
t.test("float16 and bfloat16 streaming stores", async (t) => {
  const request = { prompt: "a car in an urban environment", steps: 50, seed: 8 };
  const cases = ["car", "a car in an urban environment"].map((text) => ({ name: JSON.stringify(text), text, options: { mode: "linear" } }));
  const full = await ovam.generate(sd, { ...request, capture: { streaming: true } });
  for (const [dtype, u] of roundoffs) {
    const half = await ovam.generate(sd, { ...request, capture: { streaming: true, dtype } });
    const worst = await compareStores(t, `${dtype} streaming`, async (image, text, options) => (await ovam.attribute(image, text, options)).data, full, half, cases);
    t.ok(worst > 0 && worst < u, `${dtype} streaming: worst relL2 ${worst.toExponential(2)} < u = ${u.toExponential(2)}`);
    half.dispose();
  }
  full.dispose();
});

t.test("cost on the tiny model (printed)", async (t) => {
  // A fresh process, so that peak RSS counts this work only.
  const script = `
    const ovam = require(${JSON.stringify(path.join(root, "dist", "index.js"))});
    const rss = () => Math.round(process.resourceUsage().maxRSS / 1024);
    const timed = async (call) => { const start = process.hrtime.bigint(); await call(); return Number(process.hrtime.bigint() - start) / 1e6; };
    (async () => {
      const out = {};
      let sd, image;
      out.load = [await timed(async () => (sd = await ovam.load())), rss()];
      out.generate = [await timed(async () => (image = await ovam.generate(sd, { prompt: "a car in an urban environment", steps: 10, seed: 0 }))), rss()];
      out.attribute1 = [await timed(() => ovam.attribute(image, "car")), rss()];
      out.attribute10 = [await timed(() => ovam.attribute(image, "a red car parked next to a tall green tree")), rss()];
      out.tokens10 = sd.tokenize("a red car parked next to a tall green tree").ids.length - 2;
      out.dtype = sd.dtype;
      console.log(JSON.stringify(out));
    })();`;
  const run = spawnSync(process.execPath, ["-e", script], { encoding: "utf8" });
  t.equal(run.status, 0, `the measuring process ran (${run.stderr.trim()})`);
  const out = JSON.parse(run.stdout);
  for (const [name, [ms, mb]] of Object.entries(out).filter(([, v]) => Array.isArray(v))) t.comment(`${name}: ${ms.toFixed(1)} ms, peak RSS ${mb} MiB so far`);
  t.comment(`(the 10-token text has ${out.tokens10} tokens; the default dtype computed in ${out.dtype})`);
});
