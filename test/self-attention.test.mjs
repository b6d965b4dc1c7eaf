// Self-attention capture (capture.selfAttention) against the fixtures' `self_attention.sizes` on
// both tiny models, its memory and save/load, and Dataset Diffusion's refinement A^τ · c against
// `self_attention.refine` (on the fixtures' A) and through the public API (on the image's own A).
import t from "tap";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";

import { golden, modelDir, native, relL2, root } from "./helpers/golden.mjs";
import { referenceGeneration, variants } from "./helpers/pipeline.mjs";

const require = createRequire(import.meta.url);
const ovam = require(path.join(root, "dist", "index.js"));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ovam-sa-"));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));

const capture = (branch) => ({ selfAttention: { enabled: true, branch } });

for (const variant of variants) {
  t.test(`self-attention capture ${variant}`, async (t) => {
    const { json, tensors } = golden(variant);
    const plain = await referenceGeneration(variant);
    for (const branch of ["unconditional", "conditional"]) {
      const g = await referenceGeneration(variant, capture(branch));
      const expectedBytes = json.self_attention.sizes.reduce((sum, s) => sum + s.pixels * s.pixels * 4, 0);
      t.equal(g.attentionBytes - plain.attentionBytes, expectedBytes, `${branch}: attentionBytes counts one float32 [h·w, h·w] matrix per size`);
      t.same(
        g.selfAttentionGrids.map((s) => s.side).sort((a, b) => a - b),
        json.self_attention.sizes.map((s) => s.side).sort((a, b) => a - b),
        `${branch}: one grid per spatial size`,
      );
      for (const size of json.self_attention.sizes) {
        const ours = await g.selfAttention(size.side);
        const ref = tensors[size[branch]];
        t.same(ours.shape, ref.shape, `${branch} ${size.side}: shape`);
        const e = relL2(ours.data, ref.data);
        t.ok(e < 1e-5, `${branch} ${size.side}×${size.side}: relL2 ${e.toExponential(2)} < 1e-5`);
      }
    }
  });

  // On the fixtures' own A: near-uniform attention makes A^τ · c nearly constant before the
  // min-max, so the comparison needs the reference's A, not one equal to it to 1e-6.
  t.test(`refine (A^τ · c) ${variant}`, async (t) => {
    const { json, tensors } = golden(variant);
    for (const c of json.self_attention.refine) {
      const a = tensors[`sa.${c.branch}.${c.side * c.side}`];
      const maps = { data: tensors[c.cross].data, shape: [1, c.side, c.side] };
      const refined = await native().components.selfAttentionRefine(a, c.side, c.side, maps, c.power);
      const e = relL2(refined.data, tensors[c.refined].data);
      t.ok(e < 1e-4, `${c.word} side ${c.side} power ${c.power}: refined relL2 ${e.toExponential(2)} < 1e-4`);
      const up = await native().components.selfAttentionRefine(a, c.side, c.side, maps, c.power, [json.height, json.width]);
      const eu = relL2(up.data, tensors[c.upsampled].data);
      t.ok(eu < 1e-4, `${c.word} side ${c.side} power ${c.power}: upsampled relL2 ${eu.toExponential(2)} < 1e-4`);
    }
  });
}

// min-max(A^τ · c) of one map in float64, for checking the API's wiring on our own A.
function refineReference(a, c, power) {
  const n = c.length;
  let x = Float64Array.from(c);
  for (let p = 0; p < power; p++) {
    const y = new Float64Array(n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) y[i] += a[i * n + j] * x[j];
    x = y;
  }
  let min = Infinity, max = -Infinity;
  for (const v of x) (min = Math.min(min, v)), (max = Math.max(max, v));
  return x.map((v) => (max > min ? (v - min) / (max - min) : 0));
}

t.test("public API: capture, save/load, refine(), attribute({ refine })", async (t) => {
  const { json, tensors } = golden("sd1");
  const p = json.pipeline;
  const sd = await ovam.load(modelDir("sd1"), { dtype: "float32" }); // the dtype the tolerances were measured in
  t.teardown(() => sd.dispose());
  const image = await ovam.generate(sd, {
    prompt: p.prompt,
    negativePrompt: p.negative_prompt,
    steps: p.steps,
    guidanceScale: p.guidance_scale,
    latents: { data: tensors[p.latents].data, shape: tensors[p.latents].shape },
    capture: { selfAttention: true },
  });
  t.same(image.settings.capture.selfAttention, { branch: "conditional" }, "selfAttention: true resolves to the conditional branch, every size");

  const file = path.join(tmp, "generation.safetensors");
  await image.save(file);
  const loaded = await ovam.loadGeneration(sd, file);
  t.same(loaded.selfAttentionGrids, image.selfAttentionGrids, "grids survive save/load");
  t.equal(loaded.attentionBytes, image.attentionBytes, "attentionBytes survive save/load");
  for (const grid of image.selfAttentionGrids) {
    const [a, b] = [await image.selfAttention(grid.side), await loaded.selfAttention(grid.side)];
    t.same(Array.from(b.data), Array.from(a.data), `side ${grid.side}: the loaded matrix is the saved one`);
  }

  for (const c of json.self_attention.refine.filter((c) => c.word === "car")) {
    const maps = await ovam.attribute(loaded, c.word, { size: [c.side, c.side] });
    const refined = await ovam.refine(maps, { power: c.power, side: c.side });
    t.same(refined.shape, [3, c.side, c.side], `${c.word} ${c.side}: the maps' own size by default`);
    const a = (await loaded.selfAttention(c.side)).data;
    const e = relL2(refined.token(1).data, refineReference(a, maps.token(1).data, c.power));
    t.ok(e < 1e-5, `${c.word} side ${c.side} power ${c.power}: refine() relL2 ${e.toExponential(2)} < 1e-5 from A^τ·c on the image's own A`);
    const up = await ovam.refine(maps, { power: c.power, side: c.side, size: "image" });
    t.same(up.shape, [3, json.height, json.width], `${c.word} ${c.side}: size "image"`);
    const direct = await ovam.attribute(loaded, c.word, { refine: { power: c.power, side: c.side } });
    t.same(Array.from(direct.data), Array.from(up.data), `${c.word} ${c.side} power ${c.power}: attribute({ refine }) equals refine() of grid-sized maps`);
    t.equal(up.mask(c.word).width, json.width, "refined maps make masks like any maps");
  }

  const plain = await ovam.generate(sd, { prompt: "a car", steps: 2, seed: 1 });
  const maps = await ovam.attribute(plain, "car");
  await t.rejects(ovam.refine(maps), { code: "ERR_OVAM_INVALID_ARGUMENT" }, "refine() of an image without self-attention");
  await t.rejects(ovam.refine(await ovam.attribute(image, "car"), { side: 5 }), { code: "ERR_OVAM_INVALID_OPTION", option: "side" }, "a side that was not kept");
  await t.rejects(ovam.refine(await ovam.attribute(image, "car"), { power: -1 }), { code: "ERR_OVAM_INVALID_OPTION", option: "power" }, "a negative power");
  await t.rejects(ovam.refine({ data: new Float32Array(4), shape: [1, 2, 2] }), { code: "ERR_OVAM_INVALID_OPTION", option: "maps" }, "maps not from attribute()");
  await t.rejects(image.selfAttention(3), { code: "ERR_OVAM_INVALID_OPTION", option: "side" }, "selfAttention() of a side not kept");
  await t.rejects(
    ovam.generate(sd, { prompt: "a car", steps: 1, capture: { selfAttention: { sides: [0] } } }),
    { code: "ERR_OVAM_INVALID_OPTION", option: "capture.selfAttention.sides[0]" },
    "a side of 0",
  );
  const kept = await ovam.generate(sd, { prompt: "a car", steps: 1, seed: 2, capture: { selfAttention: { sides: [4, 2] } } });
  t.same(kept.selfAttentionGrids.map((g) => g.side).sort(), [2, 4], "sides keeps only the listed grids");
});
