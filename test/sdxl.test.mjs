// SDXL against diffusers 0.20.2's StableDiffusionXLPipeline on the tiny-sdxl fixture: both text
// encoders (ids, prompt_embeds, pooled), the UNet with its added conditions, the VAE at SDXL's
// scaling, the Euler schedule, both 8-step runs (image, stored queries, OVAM maps) and the
// non-square seeded run.
import t from "tap";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { golden, modelDir, native, readSafetensors, relL2, root } from "./helpers/golden.mjs";

const { json, tensors } = golden("sdxl");
const dir = modelDir("sdxl");
const asTensor = ({ data, shape }) => ({ data, shape });
const ENCODER = 1e-5, COMPONENT = 1e-4, PIPELINE = 1e-3;

function close(t, what, out, ref, tolerance) {
  t.same(out.shape, ref.shape, `${what}: shape [${ref.shape}]`);
  const err = relL2(out.data, ref.data);
  t.ok(err < tolerance, `${what}: relL2 ${err.toExponential(2)} < ${tolerance}`);
}

const maxAbsDiff = (a, b) => a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

let pipeline;
const sdxl = async () => (pipeline ??= await native().loadPipeline(dir, { device: "cpu", dtype: "float32", threads: 0 }));

t.test("two tokenizers, padded as the reference (<|endoftext|> and \"!\")", async (t) => {
  for (const c of json.encode_prompt) {
    const [one, two] = await Promise.all(["tokenizer", "tokenizer_2"].map((f) => native().components.tokenize(path.join(dir, f), c.text)));
    t.same(one.padded, c.ids, `${JSON.stringify(c.text)}: tokenizer ids`);
    t.same(two.padded, c.ids_2, `${JSON.stringify(c.text)}: tokenizer_2 ids`);
  }
});

t.test("encode_prompt: concatenated second-to-last states and the projected pooled state", async (t) => {
  const sd = await sdxl();
  t.equal(sd.contextDim, 64, "context width 32 + 32");
  t.equal(sd.defaultGuidanceScale, 5, "SDXL's default guidance");
  for (const c of json.encode_prompt) {
    for (const [text, embeds, pooled] of [[c.text, c.prompt_embeds, c.pooled], [c.negative, c.negative_embeds, c.negative_pooled]]) {
      const out = await sd.encodePrompt(text);
      close(t, `${JSON.stringify(text)} prompt_embeds`, out.context, tensors[embeds], ENCODER);
      close(t, `${JSON.stringify(text)} pooled`, out.pooled, tensors[pooled], ENCODER);
    }
  }
});

t.test("UNet with text_time added conditions", async (t) => {
  t.ok(json.unet.length > 0, "the fixture has UNet cases");
  for (const c of json.unet) {
    const out = await native().components.unet(path.join(dir, "unet"), {
      latents: asTensor(tensors[c.latents]),
      timestep: c.timestep,
      context: asTensor(tensors[c.context]),
      textEmbeds: asTensor(tensors[c.text_embeds]),
      timeIds: asTensor(tensors[c.time_ids]),
    });
    close(t, `unet t=${c.timestep}`, out, tensors[c.out], COMPONENT);
  }
  const c = json.unet[0];
  await t.rejects(
    native().components.unet(path.join(dir, "unet"), { latents: asTensor(tensors[c.latents]), timestep: 1, context: asTensor(tensors[c.context]) }),
    { code: "ERR_OVAM_INVALID_ARGUMENT", message: /text_embeds and time_ids/ },
    "without added conditions: a rejection naming them",
  );
});

t.test("VAE decode at SDXL's scaling factor, and the Euler schedule", async (t) => {
  const v = json.vae_decode;
  t.equal(v.scaling_factor, 0.13025);
  const factor = Math.fround(v.scaling_factor);
  const latents = tensors[v.latents];
  const out = await native().components.vaeDecode(path.join(dir, "vae"), { data: latents.data.map((x) => x / factor), shape: latents.shape });
  close(t, "vae decode", out, tensors[v.out], COMPONENT);

  const config = fs.readFileSync(path.join(dir, "scheduler", "scheduler_config.json"), "utf8");
  const s = await native().components.scheduler({ className: "EulerDiscreteScheduler", config, steps: json.scheduler.timesteps.length, x0: asTensor(latents), eps: [] });
  t.same(s.timesteps, json.scheduler.timesteps, "timesteps (leading, steps_offset 1)");
  t.ok(Math.abs(s.initNoiseSigma / json.scheduler.init_noise_sigma - 1) < 1e-6, `init_noise_sigma ${s.initNoiseSigma}`);
});

const capture = { enabled: true, midBlock: false, branch: "unconditional", dtype: "float32", streaming: false };
const request = (p, extra) => ({
  prompt: p.prompt,
  ...(p.negative_prompt === null ? {} : { negativePrompt: p.negative_prompt }),
  steps: p.steps,
  guidanceScale: p.guidance_scale,
  guidanceRescale: 0,
  width: p.width,
  height: p.height,
  scheduler: "",
  capture,
  ...extra,
});

function checkImage(t, what, g, p) {
  t.same([g.width, g.height], [p.width, p.height], `${what}: size`);
  if (p.image_float) {
    const err = relL2(g.image.data, tensors[p.image_float].data);
    t.ok(err < PIPELINE, `${what}: image relL2 ${err.toExponential(2)} < ${PIPELINE}`);
  }
  const diff = maxAbsDiff(g.pixels, tensors[p.image_uint8].data);
  t.ok(diff <= 2, `${what}: uint8 max difference ${diff} ≤ 2`);
}

// Ours [heads, steps, n, d] against the reference's [steps, heads, n, d] (its names: dots as dashes).
function checkQueries(t, g, saved, p) {
  t.same(g.blocks.map((b) => b.name).sort(), [...p.blocks].sort(), "every attn2 of every transformer layer, mid block excluded");
  for (const b of g.blocks) {
    const ours = saved[`queries.${b.name}`];
    const theirs = tensors[`pipe.queries.${b.name.replaceAll(".", "-")}`];
    const [S, H, N, D] = theirs.shape;
    t.same(ours.shape, [H, S, N, D], `${b.name} layout`);
    t.same([b.height, b.width], p.block_shapes[b.name], `${b.name} (h, w)`);
    const reordered = new Float32Array(ours.data.length);
    for (let s = 0; s < S; s++)
      for (let h = 0; h < H; h++) reordered.set(ours.data.subarray((h * S + s) * N * D, (h * S + s + 1) * N * D), (s * H + h) * N * D);
    const e = relL2(reordered, theirs.data);
    t.ok(e < PIPELINE, `${b.name} queries relL2 ${e.toExponential(2)}`);
  }
  const bytes = g.blocks.reduce((sum, b) => sum + saved[`queries.${b.name}`].data.byteLength, 0);
  t.equal(g.attentionBytes, bytes, `attentionBytes ${g.attentionBytes}: the stored queries' size`);
}

t.test("pipeline runs: no negative prompt (zeros, guidance 5.0) and \"blurry\" (guidance 7.0)", async (t) => {
  const sd = await sdxl();
  for (const [i, p] of json.pipeline.entries()) {
    const g = await sd.generate(request(p, { latents: asTensor(tensors[p.latents]) }), null).promise;
    checkImage(t, `run ${i}`, g, p);
    if (!p.ovam) continue;
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "ovam-sdxl-")), "g.safetensors");
    fs.writeFileSync(file, await g.encode("{}"));
    checkQueries(t, g, readSafetensors(file), p);
    for (const c of p.ovam) {
      const out = await g.attribute({ text: c.text }, { mode: c.mode, headActivation: "none", headAggregation: "sum", blockInterpolation: "bilinear", mapAggregation: "sum", mapActivation: "none", size: [p.height, p.width] });
      t.same(out.ids, c.ids, `${c.label}: token ids`);
      close(t, `ovam ${c.label} (${c.mode})`, out.maps, { ...tensors[c.out], shape: tensors[c.out].shape.slice(1) }, PIPELINE);
    }
    // The same maps from the saved generation (OVAM's maps are at the image size).
    const loaded = await sd.loadGeneration(file);
    const c = p.ovam[0];
    const again = await loaded.attribute({ text: c.text }, { mode: c.mode, size: [p.height, p.width] });
    close(t, `ovam ${c.label} after save/load`, again.maps, { ...tensors[c.out], shape: tensors[c.out].shape.slice(1) }, PIPELINE);
  }
});

t.test("non-square run from a seed (64×96)", async (t) => {
  const p = json.pipeline_nonsquare;
  const sd = await sdxl();
  const g = await sd.generate(request(p, { seed: p.seed }), null).promise;
  checkImage(t, "non-square", g, p);
  t.same(g.blocks.map((b) => [b.height, b.width]).slice(0, 1), [[4, 6]], "blocks keep their own (h, w)");
});

t.test("an explicit empty negative prompt is encoded, an absent one is zeros", async (t) => {
  const sd = await sdxl();
  const p = json.pipeline[0];
  const base = request(p, { latents: asTensor(tensors[p.latents]), steps: 2, capture: { ...capture, enabled: false } });
  const [absent, empty] = await Promise.all([sd.generate(base, null).promise, sd.generate({ ...base, negativePrompt: "" }, null).promise]);
  const zeros = (await sd.encodePrompt("")).context.data.every((x) => x === 0);
  t.notOk(zeros, "\"\" does not encode to zeros");
  t.ok(maxAbsDiff(absent.pixels, empty.pixels) > 0, "so the two images differ");
});

// One Euler step ends at σ = 0: final = start − σ₀·ε, so start − final is the guided prediction up
// to a factor, and rescale_noise_cfg's result can be recomputed from the runs without it.
t.test("guidanceRescale: diffusers' rescale_noise_cfg", async (t) => {
  const sd = await sdxl();
  const p = json.pipeline[1];
  const noise = tensors[p.latents];
  const config = fs.readFileSync(path.join(dir, "scheduler", "scheduler_config.json"), "utf8");
  const { initNoiseSigma } = await native().components.scheduler({ className: "EulerDiscreteScheduler", config, steps: 1, x0: asTensor(noise), eps: [] });
  const step = async (extra) => {
    const g = await sd.generate(request(p, { latents: asTensor(noise), steps: 1, capture: { ...capture, enabled: false }, ...extra }), null).promise;
    return Float64Array.from(g.latents.data, (x, i) => Math.fround(noise.data[i] * initNoiseSigma) - x);
  };
  const std = (x) => {
    const mean = x.reduce((a, b) => a + b, 0) / x.length;
    return Math.sqrt(x.reduce((a, b) => a + (b - mean) ** 2, 0) / (x.length - 1));
  };
  const phi = 0.7;
  // Guidance 1 turns CFG off: the conditional prediction alone.
  const [guided, conditional, rescaled] = await Promise.all([step({}), step({ guidanceScale: 1 }), step({ guidanceRescale: phi })]);
  const ratio = std(conditional) / std(guided);
  const expected = guided.map((x) => phi * x * ratio + (1 - phi) * x);
  t.ok(Math.abs(ratio - 1) > 1e-3, `the rescale changes the prediction here (std ratio ${ratio.toFixed(4)})`);
  const err = relL2(rescaled, expected);
  t.ok(err < 1e-4, `rescaled prediction relL2 ${err.toExponential(2)} < 1e-4`);
});

t.test("the public API on SDXL: defaults, attribution, an optimised 64-wide token, save/load", async (t) => {
  const require = createRequire(import.meta.url);
  const ovam = require(path.join(root, "dist", "index.js"));
  const sd = await ovam.load(dir);
  t.teardown(() => sd.dispose());
  t.equal(sd.defaultGuidanceScale, 5, "SDXL's default guidance");
  t.equal(sd.contextDim, 64);
  const image = await ovam.generate(sd, { prompt: "a car in an urban environment", steps: 3, seed: 1 });
  t.equal(image.settings.guidanceScale, 5, "the default guidance is the model's");
  t.notOk("negativePrompt" in image.settings, "no negative prompt is recorded as none");
  const maps = await ovam.attribute(image, "car tree");
  t.same(maps.shape, [4, 64, 64], "one map per token at the image size");
  const target = maps.mask("car", { threshold: 0.5 });
  const token = await ovam.optimizeToken(image, { text: "car", target, epochs: 3 });
  t.same(token.embedding.shape, [2, 64], "the token is the concatenated embedding of both encoders");
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "ovam-sdxl-api-")), "g.safetensors");
  await image.save(file);
  const loaded = await ovam.loadGeneration(sd, file);
  t.same(loaded.settings, image.settings, "settings survive save/load");
  const [before, after] = await Promise.all([ovam.attribute(image, token), ovam.attribute(loaded, token)]);
  t.equal(relL2(after.data, before.data), 0, "the token's maps are the same on the loaded generation");
});
