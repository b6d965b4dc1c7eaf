// The whole pipeline against diffusers' StableDiffusionPipeline on both tiny models: image, and the
// queries stored for OVAM (read back from a saved generation with the test's own reader).
import t from "tap";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { golden, readSafetensors, relL2 } from "./helpers/golden.mjs";
import { ovamBlockName, pipelineFor, referenceGeneration, variants } from "./helpers/pipeline.mjs";

for (const variant of variants) {
  t.test(`pipeline ${variant}`, async (t) => {
    const { json, tensors } = golden(variant);
    const g = await referenceGeneration(variant);
    t.equal(g.width, json.pipeline.width);
    t.equal(g.height, json.pipeline.height);
    const err = relL2(g.image.data, tensors[json.pipeline.image_float].data);
    t.ok(err < 1e-3, `image float relL2 ${err.toExponential(2)} < 1e-3`);
    const ref = tensors[json.pipeline.image_uint8].data;
    let worst = 0;
    for (let i = 0; i < ref.length; i++) worst = Math.max(worst, Math.abs(g.pixels[i] - ref[i]));
    t.ok(worst <= 2, `uint8 image max difference ${worst} ≤ 2`);

    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "ovam-")), "g.safetensors");
    fs.writeFileSync(file, await g.encode("{}"));
    const saved = readSafetensors(file);
    const names = g.blocks.map((b) => ovamBlockName(b.name));
    t.same([...names].sort(), [...json.pipeline.blocks].sort(), "the same cross-attention blocks as OVAM hooks");
    for (const b of g.blocks) {
      const ours = saved[`queries.${b.name}`]; // [heads, steps, n, d]
      const theirs = tensors[`pipe.queries.${ovamBlockName(b.name)}`]; // [steps, heads, n, d]
      const [S, H, N, D] = theirs.shape;
      t.same(ours.shape, [H, S, N, D], `${b.name} layout`);
      const reordered = new Float32Array(ours.data.length);
      for (let s = 0; s < S; s++)
        for (let h = 0; h < H; h++)
          reordered.set(ours.data.subarray(((h * S + s) * N) * D, ((h * S + s) * N + N) * D), ((s * H + h) * N) * D);
      const e = relL2(reordered, theirs.data);
      t.ok(e < 1e-3, `${b.name} queries relL2 ${e.toExponential(2)}`);
    }
  });
}

t.test("seed draws the reference's initial noise (torch.Generator().manual_seed)", async (t) => {
  const { json, tensors } = golden("sd1");
  const p = json.pipeline;
  const sd = await pipelineFor("sd1");
  const common = { prompt: p.prompt, negativePrompt: "", steps: 2, guidanceScale: p.guidance_scale, width: 64, height: 64, scheduler: "", capture: { enabled: false, midBlock: false, branch: "unconditional", dtype: "float32", streaming: false } };
  const seeded = await sd.generate({ ...common, seed: p.latents_seed }, null).promise;
  const given = await sd.generate({ ...common, latents: tensors[p.latents] }, null).promise;
  t.same(Array.from(seeded.pixels), Array.from(given.pixels));
  t.equal(seeded.attentionBytes, 0, "capture disabled stores nothing");
});
