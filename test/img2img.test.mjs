// img2img against diffusers 0.20.2's StableDiffusionImg2ImgPipeline on both tiny models (noised
// start latents, image, stored queries, OVAM maps), and the mid-schedule start of the schedulers
// the fixtures do not cover (Euler, LMS, DPM-Solver++), by properties of diffusers' own rules.
import t from "tap";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { golden, native, readSafetensors, relL2 } from "./helpers/golden.mjs";
import { ovamBlockName, pipelineFor, variants } from "./helpers/pipeline.mjs";

const capture = { enabled: true, midBlock: false, branch: "unconditional", dtype: "float32", streaming: false };
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ovam-i2i-"));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));

function img2img(sd, c, tensors, extra = {}) {
  const init = tensors[c.init_image];
  return sd.generate(
    {
      prompt: c.prompt,
      negativePrompt: "",
      steps: c.steps,
      guidanceScale: c.guidance_scale,
      seed: c.seed,
      scheduler: c.scheduler,
      capture,
      image: { data: init.data, shape: init.shape },
      strength: c.strength,
      ...extra,
    },
    null,
  ).promise;
}

// The image's float error and worst uint8 difference against a case's reference.
function imageErrors(g, c, tensors) {
  const ref = tensors[c.image_uint8].data;
  let worst = 0;
  for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(g.pixels[i] - ref[i]));
  return { float: relL2(g.image.data, tensors[c.image_float].data), worst };
}

// `tensor` with every value moved by a relative `delta` (a fixed pattern of signs and sizes).
const perturbed = (tensor, delta) => ({ data: tensor.data.map((v, i) => v * (1 + delta * Math.sin(i * 12.9898))), shape: tensor.shape });

for (const variant of variants) {
  const { json, tensors } = golden(variant);
  for (const [k, c] of json.img2img.entries()) {
    t.test(`img2img ${variant} strength ${c.strength} (${c.scheduler})`, async (t) => {
      const sd = await pipelineFor(variant);
      // From the seed: the VAE posterior sample and the noise, drawn as diffusers draws them.
      const seeded = await img2img(sd, c, tensors);
      const start = relL2(seeded.startLatents.data, tensors[c.latents_start].data);
      t.ok(start < 1e-5, `latents_start relL2 ${start.toExponential(2)} < 1e-5`);

      // The denoising loop from the reference's own start latents: image, capture and maps. The
      // random-weight sd1 UNet is ill-conditioned on this trajectory: a float32-sized change of the
      // start moves its image by ~1e-2, so CPUs that round differently disagree that much. Each image
      // is held to the larger of 1e-3 and twice the change such a perturbation (the size of the start
      // error, at least 1e-7) makes, as the UNet test does; uint8 ±2 where the float image agrees.
      const g = await img2img(sd, c, tensors, { startLatents: tensors[c.latents_start] });
      const moved = await img2img(sd, c, tensors, { startLatents: perturbed(tensors[c.latents_start], Math.max(start, 1e-7)) });
      const sensitivity = relL2(moved.image.data, g.image.data);
      const tolerance = Math.max(1e-3, 2 * sensitivity);
      const image = imageErrors(g, c, tensors);
      t.ok(image.float < tolerance, `image float relL2 ${image.float.toExponential(2)} < ${tolerance.toExponential(2)} (sensitivity ${sensitivity.toExponential(2)})`);
      if (image.float < 1e-3) t.ok(image.worst <= 2, `uint8 image max difference ${image.worst} ≤ 2`);
      t.same(g.blocks.map((b) => ovamBlockName(b.name)).sort(), [...c.blocks].sort(), "OVAM's blocks");
      t.ok(g.blocks.every((b) => b.steps === c.timesteps.length), `one stored step per timestep run (${c.timesteps.length})`);
      let worstMap = 0;
      for (const m of c.ovam) {
        const ref = tensors[m.out];
        const out = await g.attribute({ text: m.text }, { mode: "softmax", headActivation: "none", headAggregation: "sum", blockInterpolation: "bilinear", mapAggregation: "sum", mapActivation: "none", size: ref.shape.slice(2) });
        const e = relL2(out.maps.data, ref.data);
        t.ok(e < 1e-3, `"${m.text}" map relL2 ${e.toExponential(2)} < 1e-3`);
        worstMap = Math.max(worstMap, e);
      }
      // End to end from the seed (our own posterior sample and noise).
      const endToEnd = imageErrors(seeded, c, tensors);
      t.ok(endToEnd.float < tolerance, `seeded image relL2 ${endToEnd.float.toExponential(2)} < ${tolerance.toExponential(2)}`);

      const file = path.join(tmp, `${variant}-${k}.safetensors`);
      fs.writeFileSync(file, await g.encode("{}"));
      const bytes = fs.readFileSync(file);
      const header = JSON.parse(JSON.parse(bytes.subarray(8, 8 + Number(bytes.readBigUInt64LE(0))).toString()).__metadata__.ovam);
      t.same(header.timesteps, c.timesteps, "the timesteps diffusers ran (get_timesteps)");
      t.equal(header.strength, c.strength, "the file records the strength");
      t.same(Array.from(readSafetensors(file).init_image.data), Array.from(tensors[c.init_image].data), "and the init image");
      t.comment(
        `${variant} img2img ${k}: latents_start ${start.toExponential(2)}; from them: image ${image.float.toExponential(2)} (uint8 ±${image.worst}), maps ≤ ${worstMap.toExponential(2)}; ` +
          `seeded image ${endToEnd.float.toExponential(2)} (uint8 ±${endToEnd.worst}, sensitivity ${sensitivity.toExponential(2)})`,
      );
    });
  }
}

t.test("bad strengths are refused by the core", async (t) => {
  const { json, tensors } = golden("sd1");
  const sd = await pipelineFor("sd1");
  const c = json.img2img[0];
  for (const [strength, pattern] of [[0, /strength must be in \(0, 1\]/], [1.5, /strength must be in \(0, 1\]/], [0.05, /runs no denoising step/]]) {
    const e = await img2img(sd, c, tensors, { strength }).then(() => null, (err) => err);
    t.equal(e?.code, "ERR_OVAM_INVALID_ARGUMENT", `strength ${strength}: ${e?.message}`);
    t.match(e?.message, pattern);
  }
});

// At strength 1 every step runs: the run must be text-to-image from the noised picture.
t.test("strength 1 equals text-to-image from the same start latents (Euler, DPM-Solver++, LMS)", async (t) => {
  const { json, tensors } = golden("sd1");
  const sd = await pipelineFor("sd1");
  const c = { ...json.img2img[0], steps: 4, strength: 1 };
  const config = fs.readFileSync(path.join(sd.folder, "scheduler", "scheduler_config.json"), "utf8");
  for (const scheduler of ["EulerDiscreteScheduler", "DPMSolverMultistepScheduler", "LMSDiscreteScheduler"]) {
    const x0 = { data: new Float32Array(1), shape: [1] };
    const { initNoiseSigma } = await native().components.scheduler({ className: scheduler, config, steps: c.steps, x0, eps: [] });
    const i2i = await img2img(sd, { ...c, scheduler }, tensors);
    const noise = { data: i2i.startLatents.data.map((v) => v / initNoiseSigma), shape: i2i.startLatents.shape };
    const t2i = await sd.generate({ prompt: c.prompt, negativePrompt: "", steps: c.steps, guidanceScale: c.guidance_scale, latents: noise, scheduler, capture }, null).promise;
    const e = relL2(i2i.latents.data, t2i.latents.data);
    t.ok(e < 1e-5, `${scheduler}: final latents relL2 ${e.toExponential(2)} < 1e-5`);
  }
});

// Scheduler runs begun mid-schedule, on the fixtures' scheduler cases.
const schedulerCase = (name) => {
  const { json, tensors } = golden("sd1");
  const c = json.schedulers.find((s) => s.class === name);
  const eps = [];
  for (let j = 0; tensors[`${c.name}.eps.${j}`]; j++) eps.push(tensors[`${c.name}.eps.${j}`]);
  const x = (j) => tensors[j < 0 ? `${c.name}.x0` : `${c.name}.x.${j}`];
  return { c, eps, x, tensors };
};
const run = (c, options) => native().components.scheduler({ className: c.class, config: JSON.stringify({ ...c.config, ...options.config }), steps: c.steps, ...options });
const START = 4;

t.test("Euler keeps no state: begun at step k from diffusers' sample there, it gives diffusers' samples", async (t) => {
  const { c, eps, x, tensors } = schedulerCase("EulerDiscreteScheduler");
  const out = await run(c, { x0: x(START - 1), eps: eps.slice(START), start: START });
  t.equal(out.outputs.length, c.timesteps.length - START);
  for (let j = START; j < c.timesteps.length; j++) {
    const e = relL2(out.outputs[j - START].data, tensors[`${c.name}.x.${j}`].data);
    t.ok(e < 1e-4, `step ${j} relL2 ${e.toExponential(2)}`);
  }
});

// diffusers' LMS begun mid-schedule keeps the order of the global step but sums only the
// derivatives it has: exactly a full run whose earlier derivatives were zero (eps = 0 leaves the
// sample where it is and adds nothing to the history's sum).
t.test("LMS begun mid-schedule equals a full run whose earlier derivatives are zero", async (t) => {
  const { c, eps, x } = schedulerCase("LMSDiscreteScheduler");
  const zero = { data: new Float32Array(eps[0].data.length), shape: eps[0].shape };
  const full = await run(c, { x0: x(-1), eps: [...Array(START).fill(zero), ...eps.slice(START)] });
  const begun = await run(c, { x0: x(-1), eps: eps.slice(START), start: START });
  for (let j = START; j < c.timesteps.length; j++) {
    const e = relL2(begun.outputs[j - START].data, full.outputs[j].data);
    t.ok(e < 1e-6, `step ${j} relL2 ${e.toExponential(2)}`);
  }
});

// diffusers' DPM-Solver++ begun mid-schedule starts at first order with an empty history: exactly a
// full run whose data predictions before the start equal the first one of the restart (the
// second-order correction (m0 − m1) then vanishes). "sample" prediction makes the model output
// the data prediction itself.
t.test("DPM-Solver++ begun mid-schedule equals a full run whose earlier data predictions add nothing", async (t) => {
  const { c, eps } = schedulerCase("DPMSolverMultistepScheduler");
  const config = { prediction_type: "sample" };
  const x0 = eps[0];
  const outputs = eps.map((e, j) => (j < START ? eps[START] : e));
  const full = await run(c, { config, x0, eps: outputs });
  const begun = await run(c, { config, x0: full.outputs[START - 1], eps: eps.slice(START), start: START });
  for (let j = START; j < c.timesteps.length; j++) {
    const e = relL2(begun.outputs[j - START].data, full.outputs[j].data);
    t.ok(e < 1e-6, `step ${j} relL2 ${e.toExponential(2)}`);
  }
  const plain = await run(c, { config, x0: full.outputs[START - 1], eps: eps.slice(START) });
  t.ok(relL2(plain.outputs.at(-1).data, begun.outputs.at(-1).data) > 1e-3, "a run from step 0 with the same outputs differs (the start matters)");
});

// add_noise at step k against the scheduler's own noise level there: sigma schedulers scale their
// input by 1/sqrt(sigma² + 1) (so the noise they add must be that sigma); DDPM's forward process
// keeps the variance: sqrt(ᾱ)² + sqrt(1 − ᾱ)² = 1.
t.test("add_noise matches each scheduler's noise level at the start", async (t) => {
  const shape = [1, 1, 1, 1];
  const one = { data: new Float32Array([1]), shape };
  const zero = { data: new Float32Array([0]), shape };
  const k = 3;
  for (const name of ["EulerDiscreteScheduler", "LMSDiscreteScheduler"]) {
    const { c } = schedulerCase(name);
    const out = await run(c, { x0: one, eps: [zero], noise: one, start: k });
    const sigma = out.noised.data[0] - 1;
    const scaled = out.inputs[0].data[0];
    t.ok(Math.abs(scaled - 1 / Math.sqrt(sigma * sigma + 1)) < 1e-6, `${name}: noise σ ${sigma.toFixed(4)} is the σ scale_model_input uses at step ${k}`);
  }
  for (const name of ["PNDMScheduler", "DDIMScheduler", "DPMSolverMultistepScheduler"]) {
    const { c } = schedulerCase(name);
    const signal = (await run(c, { x0: one, eps: [], noise: zero, start: k })).noised.data[0];
    const noise = (await run(c, { x0: zero, eps: [], noise: one, start: k })).noised.data[0];
    t.ok(Math.abs(signal * signal + noise * noise - 1) < 1e-6 && signal > 0 && signal < 1, `${name}: sqrt(ᾱ) ${signal.toFixed(4)}, sqrt(1 − ᾱ) ${noise.toFixed(4)}`);
  }
});
