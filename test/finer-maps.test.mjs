// Per-block and per-step maps: attribute() with blocks, steps and perBlock against the sums
// computed here, from the fixture's stored queries and the text's keys, for the blocks at the
// latent resolution (where no resize is involved); and the CLI's --blocks/--steps/--per-block.
import t from "tap";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";

import { golden, modelDir, native, readSafetensors, relL2, root } from "./helpers/golden.mjs";
import { ovamBlockName } from "./helpers/pipeline.mjs";

const require = createRequire(import.meta.url);
const ovam = require(path.join(root, "dist", "index.js"));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ovam-finer-"));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));

// IEEE half → float.
function halfToFloat(h) {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const fraction = h & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}
const floats = (e) => (e.dtype === "F16" ? Float32Array.from(e.data, halfToFloat) : e.data);

// Σ_{s in steps} Σ_heads softmax_T(q · kᵀ / sqrt(d)) of one block: [T, n], from queries [S, H, n, d].
function blockSum(queries, wk, embeddings, T, [first, end]) {
  const [, H, n, d] = queries.shape;
  const C = embeddings.length / T;
  const keys = new Float32Array(H * T * d); // [H, T, d]
  for (let h = 0; h < H; h++)
    for (let tok = 0; tok < T; tok++)
      for (let j = 0; j < d; j++) {
        let sum = 0;
        for (let c = 0; c < C; c++) sum += embeddings[tok * C + c] * wk[(h * d + j) * C + c];
        keys[(h * T + tok) * d + j] = sum;
      }
  const out = new Float64Array(T * n);
  const scores = new Float64Array(T);
  for (let s = first; s < end; s++)
    for (let h = 0; h < H; h++)
      for (let p = 0; p < n; p++) {
        const q = queries.data.subarray(((s * H + h) * n + p) * d, ((s * H + h) * n + p + 1) * d);
        let max = -Infinity;
        for (let tok = 0; tok < T; tok++) {
          let dot = 0;
          for (let j = 0; j < d; j++) dot += q[j] * keys[(h * T + tok) * d + j];
          scores[tok] = dot / Math.sqrt(d);
          max = Math.max(max, scores[tok]);
        }
        let total = 0;
        for (let tok = 0; tok < T; tok++) total += (scores[tok] = Math.exp(scores[tok] - max));
        for (let tok = 0; tok < T; tok++) out[tok * n + p] += scores[tok] / total;
      }
  return Float32Array.from(out);
}

const add = (a, b) => a.map((v, i) => v + b[i]);

for (const variant of ["sd1", "sd2"]) {
  t.test(`per-block and per-step maps ${variant}`, async (t) => {
    const { json, tensors } = golden(variant);
    const p = json.pipeline;
    const sd = await ovam.load(modelDir(variant), { dtype: "float32" }); // the fixture's dtype
    const image = await ovam.generate(sd, { prompt: p.prompt, negativePrompt: p.negative_prompt, steps: p.steps, guidanceScale: p.guidance_scale, latents: tensors[p.latents] });
    const text = "a red car";
    const { ids } = sd.tokenize(text);
    const T = ids.length;
    const embeddings = (await native().components.textEncoder(path.join(modelDir(variant), "text_encoder"), ids)).data;
    const unet = readSafetensors(path.join(modelDir(variant), "unet", "diffusion_pytorch_model.safetensors"));

    const latent = Math.max(...image.blocks.map((b) => b.height));
    const finest = image.blocks.filter((b) => b.height === latent).map((b) => b.name);
    const stored = image.blocks[0].steps;
    const steps = [2, stored - 1];
    const perBlock = await ovam.attribute(image, text, { blocks: [latent], steps, perBlock: true, size: "latent" });
    t.same(perBlock.blocks, finest, `blocks chosen by resolution ${latent}`);
    t.same(perBlock.shape, [finest.length, T, latent, latent], "[blocks, tokens, h, w]");
    let expectedSum;
    let worst = 0;
    for (const [i, name] of finest.entries()) {
      const queries = tensors[`pipe.queries.${ovamBlockName(name)}`];
      const expected = blockSum(queries, floats(unet[`${name}.to_k.weight`]), embeddings, T, steps);
      worst = Math.max(worst, relL2(perBlock.block(i).data, expected));
      expectedSum = expectedSum ? add(expectedSum, expected) : expected;
    }
    t.ok(worst < 1e-3, `each block's maps over steps [${steps}) against the fixture's queries: worst relL2 ${worst.toExponential(2)} < 1e-3`);
    const summed = await ovam.attribute(image, text, { blocks: finest, steps, size: "latent" });
    const e = relL2(summed.data, expectedSum);
    t.ok(e < 1e-3, `their sum by name relL2 ${e.toExponential(2)} < 1e-3`);

    // Every block and every step: the default maps are the per-block maps summed, and step ranges add up.
    const all = await ovam.attribute(image, text, { size: "latent" });
    const each = await ovam.attribute(image, text, { size: "latent", perBlock: true });
    t.equal(each.blocks.length, image.blocks.length, "every stored block by default");
    let total = new Float32Array(all.data.length);
    for (let i = 0; i < each.blocks.length; i++) total = add(total, each.block(i).data);
    t.ok(relL2(total, all.data) < 1e-6, "per-block maps sum to the default maps");
    const head = await ovam.attribute(image, text, { size: "latent", steps: [0, 3] });
    const tail = await ovam.attribute(image, text, { size: "latent", steps: [3, stored] });
    t.ok(relL2(add(head.data, tail.data), all.data) < 1e-6, "steps [0, 3) + [3, end) = all steps");
    const sized = await ovam.attribute(image, text, { perBlock: true, blocks: [latent] });
    t.same(sized.shape, [finest.length, T, image.height, image.width], "per-block maps at the image size");
    t.ok(sized.block(0).word("car").data.length === image.width * image.height, "word() on one block");

    for (const [options, pattern] of [
      [{ blocks: [5] }, /resolution/],
      [{ blocks: ["nope"] }, /stored block name/],
      [{ steps: [3, 2] }, /first < end/],
      [{ blocks: [] }, /non-empty/],
    ]) {
      const error = await ovam.attribute(image, text, options).then(() => null, (err) => err);
      t.ok(error instanceof ovam.InvalidOptionError && pattern.test(error.message), `${JSON.stringify(options)}: ${error?.message}`);
    }
    const past = await ovam.attribute(image, text, { steps: [0, stored + 1] }).then(() => null, (err) => err);
    t.ok(past instanceof ovam.InvalidArgumentError && /past the/.test(past.message), `steps past the store: ${past?.message}`);
  });
}

t.test("ovam attribute --blocks --steps --per-block", async (t) => {
  const sd = await ovam.load();
  const image = await ovam.generate(sd, { prompt: "a car", steps: 3, seed: 1 });
  const file = path.join(tmp, "g.safetensors");
  await image.save(file);
  const out = path.join(tmp, "maps");
  const run = spawnSync(process.execPath, [path.join(root, "dist", "cli.js"), "attribute", file, "car", "tree", "--blocks", "8,4", "--steps", "1:3", "--per-block", "--json", "--out", out], { encoding: "utf8", timeout: 120_000 });
  t.equal(run.status, 0, run.stderr);
  const chosen = image.blocks.filter((b) => b.height === 8 || b.height === 4);
  const names = fs.readdirSync(out);
  t.equal(names.filter((n) => /^car\..+\.overlay\.png$/.test(n)).length, chosen.length, "one overlay per block for car");
  t.equal(names.filter((n) => /^tree\..+\.map\.npy$/.test(n)).length, chosen.length, "one raw map per block for tree");
  const result = run.stdout.trim().split("\n").map((l) => JSON.parse(l)).find((r) => r.event === "result");
  const { sheetLayout } = require(path.join(root, "dist", "render.js"));
  const layout = sheetLayout(image.width, image.height, 3, 1 + chosen.length);
  t.same([result.sheet.width, result.sheet.height], [layout.width, layout.height], "sheet: the summed row and one row per block");
  const bad = spawnSync(process.execPath, [path.join(root, "dist", "cli.js"), "attribute", file, "car", "--steps", "3-1", "--out", out], { encoding: "utf8" });
  t.equal(bad.status, 2, `bad --steps is a usage error: ${bad.stderr.trim()}`);
});
