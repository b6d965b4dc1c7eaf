// The public API against the real addon and the bundled tiny model: option validation (each bad
// input rejects with its error class, code and option name), native errors mapped to classes,
// cancellation, lifetimes, save/load round trips, and the fixtures' numbers through the API.
import t from "tap";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";

import { golden, relL2, root } from "./helpers/golden.mjs";

const require = createRequire(import.meta.url);
const ovam = require(path.join(root, "dist", "index.js"));
const { json, tensors } = golden("sd1");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ovam-api-"));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));

// Awaits `call`, expecting a rejection (or throw) of `Class` with `props`; prints the message.
async function fails(t, label, call, Class, props = {}) {
  let error;
  try {
    await call();
  } catch (e) {
    error = e;
  }
  t.ok(error instanceof Class, `${label}: ${error ? `${error.name} [${error.code}] ${error.message}` : "no error"}`);
  t.ok(error instanceof ovam.OvamError, `${label}: an OvamError`);
  for (const [key, value] of Object.entries(props)) t.same(error?.[key], value, `${label}: ${key}`);
  return error;
}

const invalid = (t, label, call, option) => fails(t, label, call, ovam.InvalidOptionError, { code: "ERR_OVAM_INVALID_OPTION", option });

const p = json.pipeline;
const reference = {
  prompt: p.prompt,
  negativePrompt: p.negative_prompt,
  steps: p.steps,
  guidanceScale: p.guidance_scale,
  latents: { data: tensors[p.latents].data, shape: tensors[p.latents].shape },
};
const maxAbsDiff = (a, b) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
const planeOf = (tensor, index) => {
  const [, , h, w] = tensor.shape;
  return { data: tensor.data.slice(index * h * w, (index + 1) * h * w), width: w, height: h };
};

// float32: the fixtures' tolerances are measured in it (the default, "auto", is bfloat16 on CPUs with AVX-512 BF16).
const sd = await ovam.load({ dtype: "float32" });
t.teardown(() => sd.dispose());
const image = await ovam.generate(sd, reference);

t.test("load() and tokenize()", async (t) => {
  t.equal(sd.folder, ovam.bundledModelDir, "no folder: the bundled tiny model");
  t.same([sd.device, sd.dtype], ["cpu", "float32"], "device default cpu; dtype float32 as asked");
  t.same(sd.defaultSize, [p.height, p.width], "default size");
  t.equal(sd.vaeScaleFactor, 8);
  t.equal(sd.contextDim, tensors[json.optimize.initial].shape[1], "contextDim: the text embedding width");
  t.equal(sd.defaultScheduler, p.scheduler);
  for (const c of json.tokenizer) {
    const { ids, tokens } = sd.tokenize(c.text);
    t.same(ids, c.ids_unpadded, `ids of ${JSON.stringify(c.text)}`);
    t.equal(tokens.length, ids.length);
  }
  const { tokens } = sd.tokenize("a car");
  t.same([tokens[0], tokens.at(-1)], ["<|startoftext|>", "<|endoftext|>"], "bos and eos tokens");
  t.throws(() => sd.tokenize(5), ovam.InvalidOptionError, "tokenize(5)");

  await invalid(t, "load(42)", () => ovam.load(42), "modelDir");
  await invalid(t, "load(\"\")", () => ovam.load(""), "modelDir");
  await invalid(t, "device gpu", () => ovam.load({ device: "gpu" }), "device");
  await invalid(t, "dtype int8", () => ovam.load(undefined, { dtype: "int8" }), "dtype");
  await invalid(t, "threads 1.5", () => ovam.load({ threads: 1.5 }), "threads");
  await invalid(t, "unknown option", () => ovam.load({ devices: "cpu" }), "devices");
  await fails(t, "missing folder", () => ovam.load(path.join(tmp, "nothing-here")), ovam.NotFoundError, { code: "ERR_OVAM_NOT_FOUND" });
  await fails(t, "cuda:99", () => ovam.load({ device: "cuda:99" }), ovam.DeviceError, { code: "ERR_OVAM_DEVICE" });
});

t.test("broken model folders map to their error classes", async (t) => {
  const copy = (name, edit) => {
    const dir = path.join(tmp, name);
    fs.cpSync(sd.folder, dir, { recursive: true });
    edit(dir);
    return dir;
  };
  const editConfig = (dir, change) => {
    const file = path.join(dir, "unet", "config.json");
    fs.writeFileSync(file, JSON.stringify({ ...JSON.parse(fs.readFileSync(file, "utf8")), ...change }));
  };
  const cases = [
    ["an unknown activation", (dir) => editConfig(dir, { act_fn: "no-such-activation" }), ovam.ConfigError, "ERR_OVAM_CONFIG"],
    ["mis-shaped weights", (dir) => editConfig(dir, { cross_attention_dim: 64 }), ovam.WeightsError, "ERR_OVAM_WEIGHTS"],
    [
      "truncated safetensors",
      (dir) => fs.truncateSync(path.join(dir, "unet", "diffusion_pytorch_model.safetensors"), 1000),
      ovam.SafetensorsError,
      "ERR_OVAM_SAFETENSORS",
    ],
  ];
  for (const [label, edit, Class, code] of cases) {
    const error = await fails(t, label, () => ovam.load(copy(label.replace(/\W/g, "-"), edit)), Class, { code });
    t.ok(error instanceof ovam.ModelLoadError, `${label}: a ModelLoadError`);
    t.equal(error?.cause?.code, code, `${label}: the native error is the cause`);
  }
});

t.test("generate() rejects bad options before the native call", async (t) => {
  const base = { prompt: "a car", steps: 1 };
  const cases = [
    ["steps 0", { steps: 0 }, "steps"],
    ["steps 1001", { steps: 1001 }, "steps"],
    ["steps 2.5", { steps: 2.5 }, "steps"],
    ["guidance NaN", { guidanceScale: NaN }, "guidanceScale"],
    ["guidance string", { guidanceScale: "7" }, "guidanceScale"],
    ["width 60 (not a multiple of 8)", { width: 60 }, "width"],
    ["width -64", { width: -64 }, "width"],
    ["height 8192", { height: 8192 }, "height"],
    ["height \"64\"", { height: "64" }, "height"],
    ["seed -1", { seed: -1 }, "seed"],
    ["seed 0.5", { seed: 0.5 }, "seed"],
    ["prompt missing", { prompt: undefined }, "prompt"],
    ["prompt 3", { prompt: 3 }, "prompt"],
    ["negativePrompt null", { negativePrompt: null }, "negativePrompt"],
    ["unknown scheduler", { scheduler: "Heun" }, "scheduler"],
    ["capture true", { capture: true }, "capture"],
    ["capture.branch", { capture: { branch: "both" } }, "capture.branch"],
    ["capture.dtype", { capture: { dtype: "int8" } }, "capture.dtype"],
    ["capture unknown key", { capture: { midblock: true } }, "capture.midblock"],
    ["onStep not a function", { onStep: 1 }, "onStep"],
    ["signal not an AbortSignal", { signal: {} }, "signal"],
    ["misspelt option", { guidance: 5 }, "guidance"],
    ["latents data length", { latents: { data: new Float32Array(10), shape: [1, 4, 8, 8] } }, "latents"],
    ["latents rank", { latents: { data: new Float32Array(256), shape: [4, 8, 8] } }, "latents.shape"],
    ["latents vs size", { latents: reference.latents, width: 128 }, "latents.shape"],
    ["seed with latents", { latents: reference.latents, seed: 1 }, "seed"],
  ];
  for (const [label, change, option] of cases) await invalid(t, label, () => ovam.generate(sd, { ...base, ...change }), option);
  await invalid(t, "options not an object", () => ovam.generate(sd, "a car"), "options");
  await invalid(t, "not a pipeline", () => ovam.generate({}, base), "pipeline");
  const error = await invalid(t, "message", () => ovam.generate(sd, { ...base, steps: 0 }), "steps");
  t.equal(error?.value, 0, "the error keeps the value");
  t.equal(error?.accepted, "an integer from 1 to 1000", "and what is accepted");
  t.match(error?.message, /generate\(\).*"steps".*0.*an integer from 1 to 1000/, "the message names option, value and what is accepted");
});

t.test("generate() accepts every scheduler the core implements", async (t) => {
  const { native } = require(path.join(root, "dist", "native.js"));
  t.ok(native.schedulers.length >= 5, `the core lists its schedulers (${native.schedulers.join(", ")})`);
  for (const scheduler of native.schedulers) {
    const made = await ovam.generate(sd, { prompt: "a car", steps: 2, seed: 1, scheduler });
    t.equal(made.settings.scheduler, scheduler, `${scheduler}: generated with it`);
    made.dispose();
  }
});

t.test("generate(): the reference image through the API", async (t) => {
  t.same([image.width, image.height], [p.width, p.height], "size from the latents");
  t.equal(image.pixels.length, p.width * p.height * 3);
  const diff = maxAbsDiff(image.pixels, tensors[p.image_uint8].data);
  t.ok(diff <= 2, `pixels within ±2 of the reference (max ${diff})`);
  t.same(
    image.settings,
    {
      prompt: p.prompt,
      negativePrompt: "",
      steps: p.steps,
      guidanceScale: p.guidance_scale,
      guidanceRescale: 0,
      width: p.width,
      height: p.height,
      scheduler: p.scheduler,
      capture: { midBlock: false, branch: "unconditional", dtype: "float32", streaming: false, selfAttention: false },
    },
    "settings with defaults filled in",
  );
  t.equal(image.blocks.length, p.blocks.length, `${image.blocks.length} attention blocks`);
  t.ok(image.attentionBytes > 0, `${image.attentionBytes} bytes of attention`);
  t.same(image.latents.shape, tensors[p.latents].shape, "final latents shape");
  const png = await image.toPNG();
  t.same([png.readUInt32BE(16), png.readUInt32BE(20)], [p.width, p.height], "toPNG(): IHDR size");

  const seeded = await ovam.generate(sd, { prompt: "a tree", steps: 2, seed: 7 });
  const again = await ovam.generate(sd, { prompt: "a tree", steps: 2, seed: 7 });
  t.equal(seeded.settings.seed, 7);
  t.ok(Buffer.from(seeded.pixels).equals(Buffer.from(again.pixels)), "the same seed gives the same image");
  const random = await ovam.generate(sd, { prompt: "a tree", steps: 2 });
  t.ok(Number.isInteger(random.settings.seed), `no seed: a random one is drawn and kept (${random.settings.seed})`);
  const replay = await ovam.generate(sd, { prompt: "a tree", steps: 2, seed: random.settings.seed });
  t.ok(Buffer.from(random.pixels).equals(Buffer.from(replay.pixels)), "and it reproduces the image");
  const sized = await ovam.generate(sd, { prompt: "a tree", steps: 1, width: 128, height: 64, seed: 1 });
  t.same([sized.width, sized.height, sized.pixels.length], [128, 64, 128 * 64 * 3], "a 128×64 image");
  for (const x of [seeded, again, random, replay, sized]) x.dispose();
});

t.test("progress, cancellation and throwing callbacks", async (t) => {
  const steps = [];
  const done = await ovam.generate(sd, { prompt: "a car", steps: 3, seed: 1, onStep: (step, total) => steps.push([step, total]) });
  await new Promise((resolve) => setImmediate(resolve));
  t.ok(steps.length > 0, `onStep called: ${JSON.stringify(steps)}`);
  t.ok(steps.every(([step, total], i) => step === i + 1 && total === steps[0][1]), "steps count up to a fixed total");
  done.dispose();

  const aborted = AbortSignal.abort(new Error("stop"));
  const started = Date.now();
  const early = await fails(t, "already-aborted signal", () => ovam.generate(sd, { prompt: "a car", steps: 500, signal: aborted }), ovam.AbortError, {
    name: "AbortError",
    code: "ERR_OVAM_ABORTED",
  });
  t.equal(early?.cause?.message, "stop", "the signal's reason is the cause");
  t.ok(Date.now() - started < 1000, "rejects at once");

  const controller = new AbortController();
  let seen = 0;
  await fails(
    t,
    "abort during generation",
    () => ovam.generate(sd, { prompt: "a car", steps: 500, seed: 1, signal: controller.signal, onStep: () => ++seen === 2 && controller.abort() }),
    ovam.AbortError,
    { code: "ERR_OVAM_ABORTED" },
  );
  t.ok(seen < 500, `stopped after ${seen} steps`);

  const thrown = new Error("callback failed");
  let calls = 0;
  let error;
  try {
    await ovam.generate(sd, { prompt: "a car", steps: 500, seed: 1, onStep: () => { calls++; throw thrown; } });
  } catch (e) {
    error = e;
  }
  t.equal(error, thrown, "a throwing onStep rejects the generation with its error");
  t.ok(calls < 500, `and stops it (${calls} calls)`);

  const after = await ovam.generate(sd, { prompt: "a car", steps: 2, seed: 1 });
  t.equal(after.width, p.width, "the pipeline stays usable after aborts");
  after.dispose();
});

t.test("attribute(): the fixtures' maps through the API", async (t) => {
  const cases = {
    prompt: {},
    prompt_raw: { size: "latent" },
    car: {},
    tree: {},
    context_tree: {},
    linear_car: { mode: "linear" },
    mean_heads: { headAggregation: "mean", mapAggregation: "mean" },
    nearest_blocks: { blockInterpolation: "nearest", size: "latent" },
    linear_relu_heads: { mode: "linear", headActivation: "relu" },
  };
  for (const c of json.ovam.filter((c) => c.label in cases)) {
    const maps = await ovam.attribute(image, c.text, cases[c.label]);
    const ref = tensors[c.out];
    t.same(maps.ids, c.ids, `${c.label}: ids`);
    t.same(maps.shape, ref.shape.slice(1), `${c.label}: shape [${maps.shape}]`);
    t.equal(maps.tokens.length, c.ids.length, `${c.label}: one token string per map`);
    const e = relL2(maps.data, ref.data);
    t.ok(e < 1e-3, `${c.label}: relL2 ${e.toExponential(2)} < 1e-3`);
  }
  const sized = await ovam.attribute(image, "car", { size: [16, 32] });
  t.same(sized.shape, [3, 16, 32], "size [16, 32]");
});

t.test("attribute() validation", async (t) => {
  await invalid(t, "empty text", () => ovam.attribute(image, ""), "text");
  await invalid(t, "text of spaces", () => ovam.attribute(image, "   "), "text");
  await invalid(t, "text 5", () => ovam.attribute(image, 5), "text");
  await invalid(t, "mode", () => ovam.attribute(image, "car", { mode: "soft" }), "mode");
  await invalid(t, "size [0, 4]", () => ovam.attribute(image, "car", { size: [0, 4] }), "size[0]");
  await invalid(t, "size \"big\"", () => ovam.attribute(image, "car", { size: "big" }), "size");
  await invalid(t, "headActivation", () => ovam.attribute(image, "car", { headActivation: "gelu" }), "headActivation");
  await invalid(t, "unknown option", () => ovam.attribute(image, "car", { sizes: [1, 1] }), "sizes");
  await invalid(t, "not an image", () => ovam.attribute({ width: 64 }, "car"), "image");

  const none = await ovam.generate(sd, { ...reference, capture: false });
  t.equal(none.attentionBytes, 0, "capture: false keeps no attention");
  t.equal(none.settings.capture, false);
  await fails(t, "attribute without capture", () => ovam.attribute(none, "car"), ovam.InvalidArgumentError, { code: "ERR_OVAM_INVALID_ARGUMENT" });

  const streamed = await ovam.generate(sd, { ...reference, capture: { streaming: true } });
  t.ok(streamed.attentionBytes < image.attentionBytes, `streaming keeps less (${streamed.attentionBytes} < ${image.attentionBytes} bytes)`);
  await invalid(t, "softmax over a streaming capture", () => ovam.attribute(streamed, "car"), "mode");
  const linear = await ovam.attribute(streamed, "car", { mode: "linear" });
  const ref = tensors[json.ovam.find((c) => c.label === "linear_car").out];
  const e = relL2(linear.data, ref.data);
  t.ok(e < 1e-3, `linear maps of a streaming capture: relL2 ${e.toExponential(2)}`);
  none.dispose();
  streamed.dispose();
});

t.test("maps: tokens, words, occurrences, masks", async (t) => {
  const maps = await ovam.attribute(image, "a car and a traffic light");
  const [count, h, w] = maps.shape;
  t.same(maps.tokens, sd.tokenize("a car and a traffic light").tokens, "tokens with bos and eos");
  t.equal(maps.data.length, count * h * w);
  t.same([maps.height, maps.width], [image.height, image.width], "image size by default");

  const car = maps.word("car");
  t.same([car.width, car.height], [w, h]);
  t.same([...car.data], [...maps.token(2).data], "a one-token word is its token's map");
  const light = maps.word("traffic light");
  const mean = maps.token(5).data.map((v, i) => (v + maps.token(6).data[i]) / 2);
  t.ok(maxAbsDiff(light.data, mean) < 1e-6, "a two-token word is the mean of its token maps");
  t.same(maps.occurrences("traffic light"), [[5, 6]]);

  const error = await fails(t, "a word occurring twice", () => maps.word("a"), ovam.AmbiguousWordError, { code: "ERR_OVAM_AMBIGUOUS_WORD", word: "a" });
  t.same(error?.occurrences, [[1], [4]], "the error lists the occurrences");
  t.same([...maps.word("a", { occurrence: 1 }).data], [...maps.token(4).data], "{ occurrence: 1 } picks the second");
  await invalid(t, "occurrence 2 of 2", () => maps.word("a", { occurrence: 2 }), "occurrence");
  await invalid(t, "occurrence -1", () => maps.word("a", { occurrence: -1 }), "occurrence");
  await fails(t, "a word not in the text", () => maps.word("tree"), ovam.WordNotFoundError, { code: "ERR_OVAM_WORD_NOT_FOUND", word: "tree" });
  await invalid(t, "an empty word", () => maps.word(""), "word");
  await invalid(t, "word 3", () => maps.word(3), "word");
  await invalid(t, "token(99)", () => maps.token(99), "index");

  const mask = maps.mask("car", { threshold: 0.3 });
  t.ok(mask.data instanceof Uint8Array && mask.data.every((v) => v === 0 || v === 1), "mask: a Uint8Array of 0/1");
  let [min, max] = [Infinity, -Infinity];
  for (const v of car.data) [min, max] = [Math.min(min, v), Math.max(max, v)];
  const expected = Uint8Array.from(car.data, (v) => ((v - min) / (max - min) > 0.3 ? 1 : 0));
  t.same([...mask.data], [...expected], "mask = min-max normalised word map > threshold");
  t.ok(mask.data.some((v) => v === 1) && mask.data.some((v) => v === 0), "the mask has both values");
  t.same(maps.mask("car").data.reduce((a, b) => a + b, 0), car.data.filter((v) => (v - min) / (max - min) > 0.5).length, "threshold 0.5 by default");
  await invalid(t, "threshold 2", () => maps.mask("car", { threshold: 2 }), "threshold");
  await fails(t, "mask of an ambiguous word", () => maps.mask("a"), ovam.AmbiguousWordError);

  const png = await maps.toPNG("car");
  t.same([png.readUInt32BE(16), png.readUInt32BE(20), png[24], png[25]], [w, h, 16, 0], "toPNG(word): 16-bit grey of the map's size");
});

t.test("save() and loadGeneration()", async (t) => {
  const file = path.join(tmp, "generation.safetensors");
  await image.save(file);
  const loaded = await ovam.loadGeneration(sd, file);
  t.same(loaded.settings, image.settings, "settings survive");
  t.ok(Buffer.from(loaded.pixels).equals(Buffer.from(image.pixels)), "pixels survive");
  t.same(loaded.blocks, image.blocks, "blocks survive");
  const [a, b] = [await ovam.attribute(image, "car"), await ovam.attribute(loaded, "car")];
  const e = relL2(b.data, a.data);
  t.ok(e < 1e-6, `attribution of the loaded generation: relL2 ${e.toExponential(2)}`);
  loaded.dispose();

  await fails(t, "a missing file", () => ovam.loadGeneration(sd, path.join(tmp, "missing.safetensors")), ovam.NotFoundError);
  await invalid(t, "file 5", () => ovam.loadGeneration(sd, 5), "file");
  await invalid(t, "save(\"\")", () => image.save(""), "file");
  const tokenFile = path.join(tmp, "not-a-generation.safetensors");
  await new ovam.OptimizedToken({ text: "x", context: "x", embedding: { data: new Float32Array(2 * sd.contextDim), shape: [2, sd.contextDim] }, initial: { data: new Float32Array(2 * sd.contextDim), shape: [2, sd.contextDim] }, losses: [] }).save(tokenFile);
  await fails(t, "a token file as a generation", () => ovam.loadGeneration(sd, tokenFile), ovam.InvalidArgumentError, { code: "ERR_OVAM_INVALID_ARGUMENT" });

  const info = await ovam.readGenerationInfo(file);
  t.equal(info.model, sd.folder, "readGenerationInfo(): the model folder that made it");
  t.same(info.settings, image.settings, "readGenerationInfo(): the settings");
  await fails(t, "readGenerationInfo() of a token file", () => ovam.readGenerationInfo(tokenFile), ovam.InvalidArgumentError, { code: "ERR_OVAM_INVALID_ARGUMENT" });
  const short = path.join(tmp, "short.safetensors");
  fs.writeFileSync(short, Buffer.from([1, 2, 3]));
  await fails(t, "readGenerationInfo() of a 3-byte file", () => ovam.readGenerationInfo(short), ovam.SafetensorsError, { code: "ERR_OVAM_SAFETENSORS" });
  const huge = path.join(tmp, "huge-header.safetensors");
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(2n ** 60n);
  fs.writeFileSync(huge, length);
  await fails(t, "readGenerationInfo() of an absurd header length", () => ovam.readGenerationInfo(huge), ovam.SafetensorsError);
  await fails(t, "readGenerationInfo() of a missing file", () => ovam.readGenerationInfo(path.join(tmp, "missing.safetensors")), ovam.NotFoundError);
});

t.test("optimizeToken(): the fixtures' run through the API, save, load, attribute", async (t) => {
  const o = json.optimize;
  const target = tensors[o.target]; // [1, 2, H, W]: background, object
  const epochs = [];
  const token = await ovam.optimizeToken(image, {
    text: o.text,
    context: o.context,
    target: [planeOf(target, 0), planeOf(target, 1)],
    epochs: o.epochs,
    lr: o.lr,
    stepSize: o.step_size,
    gamma: o.gamma,
    onEpoch: (epoch, loss) => epochs.push([epoch, loss]),
  });
  t.same([token.text, token.context], [o.text, o.context]);
  t.same(token.embedding.shape, [2, sd.contextDim], "embedding [2, contextDim]");
  t.equal(token.losses.length, o.epochs, "one loss per epoch");
  for (let i = 0; i < 5; i++) {
    const rel = Math.abs(token.losses[i] - o.losses[i]) / Math.abs(o.losses[i]);
    t.ok(rel < 1e-3, `epoch ${i}: loss ${token.losses[i].toFixed(6)} vs ${o.losses[i].toFixed(6)} (rel ${rel.toExponential(2)})`);
  }
  const ei = relL2(token.initial.data, tensors[o.initial].data);
  t.ok(ei < 1e-4, `initial embedding relL2 ${ei.toExponential(2)}`);
  await new Promise((resolve) => setImmediate(resolve));
  t.ok(epochs.length > 0, `onEpoch called ${epochs.length} times`);

  const file = path.join(tmp, "car.token.safetensors");
  await token.save(file);
  const loaded = await ovam.loadToken(file);
  t.same([loaded.text, loaded.context, loaded.losses], [token.text, token.context, token.losses], "text, context, losses survive");
  t.same(loaded.embedding.shape, token.embedding.shape);
  t.same([...loaded.embedding.data], [...token.embedding.data], "embedding survives");

  const maps = await ovam.attribute(image, loaded);
  t.same(maps.tokens, ["<|startoftext|>", "car"], "a token attributes as [<|startoftext|>, text]");
  t.same(maps.shape, [2, image.height, image.width]);
  t.same([...maps.word("car").data], [...maps.token(1).data], "word(text) is the token's map");
  await fails(t, "another word on token maps", () => maps.word("tree"), ovam.WordNotFoundError);

  // A mask from maps feeds straight back in as a target.
  const mask = (await ovam.attribute(image, "car")).mask("car");
  const fromMask = await ovam.optimizeToken([image], { text: "car", targets: [mask], epochs: 2 });
  t.equal(fromMask.losses.length, 2, "a Uint8Array mask as target");
  t.same(fromMask.context, "car", "context defaults to the text");

  await fails(t, "loadToken of a missing file", () => ovam.loadToken(path.join(tmp, "missing.safetensors")), ovam.NotFoundError);
  const generationFile = path.join(tmp, "generation-for-token.safetensors");
  await image.save(generationFile);
  await fails(t, "loadToken of a generation file", () => ovam.loadToken(generationFile), ovam.InvalidArgumentError, { code: "ERR_OVAM_INVALID_ARGUMENT" });
  const narrow = new ovam.OptimizedToken({ ...token, embedding: { data: new Float32Array(2 * 16), shape: [2, 16] } });
  await invalid(t, "a token of another width", () => ovam.attribute(image, narrow), "token");
});

t.test("optimizeToken() validation", async (t) => {
  const mask = { data: new Uint8Array(image.width * image.height).fill(1, 0, 100), width: image.width, height: image.height };
  const base = { text: "car", context: "a car in an urban environment", target: mask, epochs: 1 };
  await invalid(t, "empty text", () => ovam.optimizeToken(image, { ...base, text: "" }), "text");
  await invalid(t, "context without the text", () => ovam.optimizeToken(image, { ...base, context: "a tree" }), "context");
  await invalid(t, "target of another size", () => ovam.optimizeToken(image, { ...base, target: { data: new Uint8Array(32 * 32), width: 32, height: 32 } }), "target");
  await invalid(t, "target data length", () => ovam.optimizeToken(image, { ...base, target: { ...mask, data: new Uint8Array(10) } }), "target");
  await invalid(t, "mask values 0/1", () => ovam.optimizeToken(image, { ...base, target: { ...mask, data: new Uint8Array(mask.data.length).fill(2) } }), "target.data");
  await invalid(t, "no target", () => ovam.optimizeToken(image, { ...base, target: undefined }), "target");
  await invalid(t, "target and targets", () => ovam.optimizeToken(image, { ...base, targets: [mask] }), "target");
  await invalid(t, "targets per image", () => ovam.optimizeToken([image], { ...base, target: undefined, targets: [mask, mask] }), "targets");
  await invalid(t, "no images", () => ovam.optimizeToken([], base), "images");
  await invalid(t, "not an image", () => ovam.optimizeToken([image, {}], { ...base, target: undefined, targets: [mask, mask] }), "images[1]");
  await invalid(t, "lr 0", () => ovam.optimizeToken(image, { ...base, lr: 0 }), "lr");
  await invalid(t, "epochs 0", () => ovam.optimizeToken(image, { ...base, epochs: 0 }), "epochs");
  await invalid(t, "gamma 2", () => ovam.optimizeToken(image, { ...base, gamma: 2 }), "gamma");
  await invalid(t, "attribute.size is the target's", () => ovam.optimizeToken(image, { ...base, attribute: { size: [8, 8] } }), "attribute.size");
  await fails(t, "already-aborted signal", () => ovam.optimizeToken(image, { ...base, signal: AbortSignal.abort() }), ovam.AbortError, { code: "ERR_OVAM_ABORTED" });
  const controller = new AbortController();
  await fails(
    t,
    "abort during optimisation",
    () => ovam.optimizeToken(image, { ...base, epochs: 100000, signal: controller.signal, onEpoch: (epoch) => epoch >= 1 && controller.abort() }),
    ovam.AbortError,
  );

  const other = await ovam.load();
  const foreign = await ovam.generate(other, reference);
  await invalid(t, "images of two pipelines", () => ovam.optimizeToken([image, foreign], { ...base, target: undefined, targets: [mask, mask] }), "images[1]");
  foreign.dispose();
  await fails(t, "a disposed image", () => ovam.optimizeToken([image, foreign], { ...base, target: undefined, targets: [mask, mask] }), ovam.DisposedError, { code: "ERR_OVAM_DISPOSED" });
  other.dispose();
});

t.test("dispose()", async (t) => {
  const other = await ovam.load();
  const made = await ovam.generate(other, { prompt: "a car", steps: 2, seed: 3 });
  made.dispose();
  made.dispose();
  t.ok(made.disposed, "image.disposed");
  t.equal(made.pixels.length, made.width * made.height * 3, "pixels stay readable");
  t.ok((await made.toPNG()).length > 0, "toPNG() still works");
  await fails(t, "attribute a disposed image", () => ovam.attribute(made, "car"), ovam.DisposedError, { code: "ERR_OVAM_DISPOSED" });
  await fails(t, "save a disposed image", () => made.save(path.join(tmp, "x.safetensors")), ovam.DisposedError);

  const orphan = await ovam.generate(other, { prompt: "a car", steps: 2, seed: 3 });
  other.dispose();
  other.dispose();
  t.ok(other.disposed, "pipeline.disposed");
  await fails(t, "generate on a disposed pipeline", () => ovam.generate(other, { prompt: "a car" }), ovam.DisposedError, { code: "ERR_OVAM_DISPOSED" });
  await fails(t, "tokenize on a disposed pipeline", () => other.tokenize("a car"), ovam.DisposedError);
  await fails(t, "loadGeneration on a disposed pipeline", () => ovam.loadGeneration(other, "x"), ovam.DisposedError);
  await fails(t, "attribute an image of a disposed pipeline", () => ovam.attribute(orphan, "car"), ovam.DisposedError);
  await orphan.save(path.join(tmp, "orphan.safetensors"));
  t.pass("an image of a disposed pipeline can still be saved");
  orphan.dispose();
});

t.test("error classes", async (t) => {
  const classes = [
    ["InvalidOptionError", "ERR_OVAM_INVALID_OPTION"],
    ["InvalidArgumentError", "ERR_OVAM_INVALID_ARGUMENT"],
    ["DisposedError", "ERR_OVAM_DISPOSED"],
    ["AbortError", "ERR_OVAM_ABORTED"],
    ["ConfigError", "ERR_OVAM_CONFIG"],
    ["SafetensorsError", "ERR_OVAM_SAFETENSORS"],
    ["WeightsError", "ERR_OVAM_WEIGHTS"],
    ["NotFoundError", "ERR_OVAM_NOT_FOUND"],
    ["IOError", "ERR_OVAM_IO"],
    ["TokenizerError", "ERR_OVAM_TOKENIZER"],
    ["DeviceError", "ERR_OVAM_DEVICE"],
    ["InternalError", "ERR_OVAM_INTERNAL"],
    ["QueueError", "ERR_OVAM_QUEUE"],
  ];
  for (const [name, code] of classes) {
    const error = name === "InvalidOptionError" ? new ovam[name]("f()", [{ option: "x", value: 1, accepted: "2" }]) : new ovam[name]("message");
    t.ok(error instanceof ovam.OvamError && error instanceof Error, `${name} is an OvamError`);
    t.equal(error.code, code, `${name}.code`);
    t.equal(error.name, name === "AbortError" ? "AbortError" : name, `${name}.name`);
  }
  t.ok(new ovam.AmbiguousWordError("a", [[1], [4]]).message.includes("occurs 2 times"));
  t.equal(new ovam.WordNotFoundError("x", ["a"]).code, "ERR_OVAM_WORD_NOT_FOUND");
});
