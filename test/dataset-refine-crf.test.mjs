// Self-attention refinement (spec.refine) and the dense CRF (masks.crf) in datasets and in `ovam
// masks`, on the bundled tiny model: labels equal those made by hand from ovam.refine() and
// ovam.denseCRF() of the same inputs, the labels change, dataset.json and masks.json record what
// was done, and bad specs and impossible re-labellings are clear errors.
import t from "tap";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";

import { root, readSafetensors } from "./helpers/golden.mjs";
import { manifest } from "./helpers/dataset.mjs";
import { readPalettePNG } from "./helpers/palette-png.mjs";
import { normalise, upsample } from "./helpers/upsample.mjs";

const require = createRequire(import.meta.url);
const ovam = require(path.join(root, "dist", "index.js"));
const { dataset } = ovam;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ovam-refine-crf-"));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));
const sd = await ovam.load();
t.teardown(() => sd.dispose());
const run = (spec, out) => dataset.run(spec, { out: path.join(tmp, out), baseDir: tmp, pipeline: sd });
const labelsOf = (file) => readPalettePNG(fs.readFileSync(file)).indices;
const ids = { car: 7, dog: 12 };

const base = {
  format: "voc",
  classes: [{ name: "car" }, { name: "dog" }],
  prompts: { templates: ["a photograph of a {class}"], perClass: 2 },
  seeds: { base: 3 },
  generate: { steps: 2 },
};
const refineSpec = { ...base, refine: { power: 4 }, save: { maps: "float32", selfAttention: true } };
fs.writeFileSync(path.join(tmp, "pairs.jsonl"), ['{"prompt": "a car and a dog", "classes": ["car", "dog"]}', '{"prompt": "a dog near a car", "classes": ["dog", "car"]}'].join("\n"));
const crfSpec = { ...base, prompts: { file: "pairs.jsonl" }, masks: { crf: true }, save: { maps: "float32" } };
await run(refineSpec, "refined");
await run(crfSpec, "crf");

// The item's image again, with the capture the spec resolved to.
async function regenerate(line, spec) {
  const resolved = await dataset.loadSpec(spec, { baseDir: tmp });
  const { capture, ...settings } = resolved.generate;
  return ovam.generate(sd, { ...settings, prompt: line.prompt, seed: line.seed, capture });
}

function threshold(word, h, w, id, size) {
  return ovam.labelMaps({ data: word.data, shape: [1, h, w] }, { width: size, height: size, classes: [{ id, threshold: 0.4 }], background: 0, settings: ovam.resolveMaskSettings() });
}

t.test("spec.refine: labels from ovam.refine() of the same maps; recorded; self-attention captured and saved", async (t) => {
  const out = path.join(tmp, "refined");
  const record = JSON.parse(fs.readFileSync(path.join(out, "dataset.json"), "utf8"));
  t.same(record.spec.refine, { method: "sa-power", power: 4 }, "dataset.json records the refinement");
  t.same(record.spec.generate.capture.selfAttention, { branch: "conditional" }, "refine made the spec keep the self-attention");
  let changed = 0;
  for (const line of manifest(out)) {
    const name = line.id.split("-")[0];
    const image = await regenerate(line, refineSpec);
    const maps = await ovam.attribute(image, name, { size: "latent" });
    const refined = await ovam.refine(maps, { power: 4 });
    const [h, w] = [maps.height, maps.width];
    const expected = await threshold(refined.word(name), h, w, ids[name], 64);
    const unrefined = await threshold(maps.word(name), h, w, ids[name], 64);
    const labels = labelsOf(path.join(out, line.files.label));
    t.same(Array.from(labels), Array.from(expected.labels.data), `${line.id}: labels of ovam.refine(maps, { power: 4 })`);
    if (!Buffer.from(labels).equals(Buffer.from(unrefined.labels.data))) changed++;
    const file = readSafetensors(path.join(out, line.files.maps));
    const close = (a, b) => a.every((v, i) => Math.abs(v - b[i]) < 1e-6);
    t.ok(close(file[name].data, refined.word(name).data), `${line.id}: the maps file holds the refined map`);
    t.ok(close(file[`unrefined.${name}`].data, maps.word(name).data), "and the unrefined one");
    const side = Math.max(...image.selfAttentionGrids.map((g) => g.side));
    const a = await image.selfAttention(side);
    t.same(file[`self_attention.${side}x${side}`].shape, a.shape, `save.selfAttention: the largest grid (${side})`);
    t.same(Array.from(file[`self_attention.${side}x${side}`].data), Array.from(a.data), "its matrix, as float32 maps");
    image.dispose();
  }
  t.ok(changed > 0, `refinement changed the labels of ${changed} of 4 items`);
});

t.test("ovam masks --refine: from the saved self-attention, equal to the dataset's own refinement", async (t) => {
  const out = path.join(tmp, "refined");
  const again = await dataset.relabel(out, { refine: { power: 4 } });
  t.equal(path.basename(again.folder), "labels-ovam-sa4");
  const raw = await dataset.relabel(out, { refine: false });
  const asMade = await dataset.relabel(out, { name: "labels-as-made" });
  for (const line of manifest(out)) {
    const labels = labelsOf(path.join(out, line.files.label));
    t.same(labelsOf(path.join(again.folder, `${line.id}.png`)), labels, `${line.id}: refined again from the maps file = the dataset's labels`);
    t.same(labelsOf(path.join(asMade.folder, `${line.id}.png`)), labels, "the saved (refined) maps as they are = the dataset's labels");
    const name = line.id.split("-")[0];
    const file = readSafetensors(path.join(out, line.files.maps));
    const expected = await threshold({ data: file[`unrefined.${name}`].data }, 8, 8, ids[name], 64);
    t.same(Array.from(labelsOf(path.join(raw.folder, `${line.id}.png`))), Array.from(expected.labels.data), "refine: false labels the unrefined maps");
  }
  t.match(JSON.parse(fs.readFileSync(path.join(again.folder, "masks.json"), "utf8")), { refine: { method: "sa-power", power: 4 }, items: 4 });
  t.match(JSON.parse(fs.readFileSync(path.join(asMade.folder, "masks.json"), "utf8")), { refine: "as-made" });
  await t.rejects(dataset.relabel(out, { refine: { power: 4, side: 3 } }), { code: "ERR_OVAM_INVALID_OPTION", option: "refine.side", accepted: /8/ });
  await t.rejects(dataset.relabel(out, { refine: { power: -1 } }), { code: "ERR_OVAM_INVALID_OPTION", option: "refine.power" });
  await t.rejects(dataset.relabel(path.join(tmp, "crf"), { refine: { power: 4 } }), {
    code: "ERR_OVAM_INVALID_OPTION",
    option: "refine",
    accepted: /save\.selfAttention: true .* or save\.generation: true/,
  });
  t.notOk(fs.existsSync(path.join(tmp, "crf", "labels-ovam-sa4")), "an impossible refinement leaves no folder behind");
});

t.test("masks.crf: labels are ovam.denseCRF of the image and [1 − max, class scores]; recorded", async (t) => {
  const out = path.join(tmp, "crf");
  const record = JSON.parse(fs.readFileSync(path.join(out, "dataset.json"), "utf8"));
  t.same(record.spec.masks.crf, { w1: 10, alpha: 80, beta: 13, w2: 3, gamma: 3, iterations: 5 }, "OVAM's parameters, recorded");
  let changed = 0;
  for (const line of manifest(out)) {
    t.same(line.classes, [7, 12], `${line.id}: labelled for car and dog`);
    const file = readSafetensors(path.join(out, line.files.maps));
    const scores = ["car", "dog"].map((name) => upsample(normalise(file[name].data, "max"), 8, 8, 64, 64, "bilinear"));
    const probabilities = new Float32Array(3 * 64 * 64);
    for (let p = 0; p < 64 * 64; p++) {
      probabilities[p] = 1 - Math.max(scores[0][p], scores[1][p]);
      probabilities[64 * 64 + p] = scores[0][p];
      probabilities[2 * 64 * 64 + p] = scores[1][p];
    }
    const image = await ovam.decodePNG(fs.readFileSync(path.join(out, line.files.image)));
    const crf = await ovam.denseCRF({ data: image.data, width: 64, height: 64 }, { data: probabilities, shape: [3, 64, 64] });
    const expected = Array.from(crf.data, (v) => [0, 7, 12][v]);
    const labels = Array.from(labelsOf(path.join(out, line.files.label)));
    t.same(labels, expected, `${line.id}: the CRF's labels mapped to 0, 7, 12`);
    const maps = { data: Float32Array.from([...file.car.data, ...file.dog.data]), shape: [2, 8, 8] };
    const plain = await ovam.labelMaps(maps, { width: 64, height: 64, classes: [{ id: 7, threshold: 0.4 }, { id: 12, threshold: 0.4 }], background: 0, settings: ovam.resolveMaskSettings() });
    if (labels.some((v, i) => v !== plain.labels.data[i])) changed++;
  }
  t.ok(changed > 0, `the CRF changed the thresholded labels of ${changed} of 2 items`);
  const again = await dataset.relabel(out, { masks: { crf: true }, name: "labels-crf-again" });
  for (const line of manifest(out)) t.same(labelsOf(path.join(again.folder, `${line.id}.png`)), labelsOf(path.join(out, line.files.label)), `${line.id}: ovam masks --crf reads the saved image and maps to the same labels`);
  const masks = JSON.parse(fs.readFileSync(path.join(again.folder, "masks.json"), "utf8"));
  t.match(masks, { settings: { crf: { iterations: 5 }, uncertain: null, minComponentArea: 0 } });
  const longer = await dataset.relabel(out, { masks: { crf: { iterations: 0 } } });
  t.equal(path.basename(longer.folder), "labels-ovam-crf");
  t.match(JSON.parse(fs.readFileSync(path.join(longer.folder, "masks.json"), "utf8")), { settings: { crf: { w1: 10, iterations: 0 } } });

  const copy = path.join(tmp, "crf-copy");
  fs.cpSync(out, copy, { recursive: true });
  const [first] = manifest(copy);
  fs.writeFileSync(path.join(copy, first.files.image), await ovam.encodeRGB(32, 32, new Uint8Array(32 * 32 * 3)));
  await t.rejects(dataset.relabel(copy, { masks: { crf: true } }), { code: "ERR_OVAM_INVALID_ARGUMENT", message: /32×32 .*accepted: the item's 64×64 RGB image/ });
});

t.test("labelMaps with crf: the image is needed, NaN maps are refused, a preset's band is dropped", async (t) => {
  const settings = ovam.resolveMaskSettings({ preset: "dataset-diffusion", crf: true });
  t.match(settings, { uncertain: null, minComponentArea: 0, crf: { w1: 10 } }, "the CRF's labels are final: the preset's uncertain band goes");
  const request = { width: 16, height: 16, classes: [{ id: 1, threshold: 0.4 }], background: 0, settings };
  const maps = { data: Float32Array.from({ length: 16 }, (_, i) => i / 16), shape: [1, 4, 4] };
  await t.rejects(ovam.labelMaps(maps, request), { code: "ERR_OVAM_INVALID_OPTION", option: "image" });
  const image = { data: new Uint8Array(16 * 16 * 3).fill(128), width: 16, height: 16 };
  const nan = { data: Float32Array.from({ length: 16 }, (_, i) => (i === 3 ? NaN : i)), shape: [1, 4, 4] };
  await t.rejects(ovam.labelMaps(nan, { ...request, image }), { code: "ERR_OVAM_INVALID_ARGUMENT", message: /NaN or infinite/ });
  await t.rejects(ovam.labelMaps(maps, { ...request, image: { ...image, width: 8 } }), { code: "ERR_OVAM_INVALID_OPTION", option: "image" }, "an image of another size");
  const labels = await ovam.labelMaps(maps, { ...request, image });
  t.ok(Array.from(labels.labels.data).every((v) => v === 0 || v === 1), "labels are the background or the class");
  t.equal(labels.histogram[0] + labels.histogram[1], 256, "the histogram counts every pixel");
});

t.test("bad specs: each error names the JSON path, the value and what is accepted", async (t) => {
  const bad = async (extra, option, accepted) =>
    t.rejects(dataset.loadSpec({ ...base, ...extra }, { baseDir: tmp }), { code: "ERR_OVAM_INVALID_OPTION", option, accepted }, option);
  await bad({ refine: { power: -1 } }, "spec.refine.power", /integer/);
  await bad({ refine: { method: "diffusion" } }, "spec.refine.method", /sa-power/);
  await bad({ refine: { power: 4 }, generate: { steps: 2, capture: { selfAttention: false } } }, "spec.generate.capture.selfAttention", /spec\.refine needs the image's self-attention/);
  await bad({ refine: { power: 4, side: 4 }, generate: { steps: 2, capture: { selfAttention: { sides: [8] } } } }, "spec.refine.side", /sides \(8\)/);
  await bad({ save: { maps: false, selfAttention: true } }, "spec.save.selfAttention", /save\.maps is false/);
  await bad({ masks: { crf: { w1: -1 } } }, "spec.masks.crf.w1", /≥ 0/);
  await bad({ masks: { crf: { sigma: 3 } } }, "spec.masks.crf.sigma", /./);
  await bad({ masks: { crf: "yes" } }, "spec.masks.crf", /true, false or \{ w1, alpha, beta, w2, gamma, iterations \}/);
  await bad({ masks: { crf: true, uncertain: [0.5, 0.6] } }, "spec.masks.uncertain", /null with crf/);
  const sided = await dataset.loadSpec({ ...base, refine: { power: 2, side: 4 } }, { baseDir: tmp });
  t.same(sided.generate.capture.selfAttention, { branch: "conditional", sides: [4] }, "a refine side keeps only that grid");
  await t.rejects(run({ ...base, refine: { power: 2, side: 5 }, prompts: { templates: ["a {class}"], perClass: 1 } }, "side-5"), { code: "ERR_OVAM_INVALID_OPTION", option: "spec.refine.side", accepted: /latent grids at this size \(8, 4/ }, "a side the model has no grid of");
});

t.test("the command line: ovam masks --refine and --crf", async (t) => {
  const { spawnSync } = await import("node:child_process");
  const cli = (...args) => spawnSync(process.execPath, [path.join(root, "dist", "cli.js"), "masks", ...args], { encoding: "utf8", timeout: 300_000 });
  const out = path.join(tmp, "refined");
  const r = cli(out, "--refine", "2,8", "--crf-params", "iterations=2", "--json");
  t.equal(r.status, 0, r.stderr);
  const result = r.stdout.trim().split("\n").map((l) => JSON.parse(l)).find((x) => x.event === "result");
  t.match(result, { command: "masks", items: 4, refine: { method: "sa-power", power: 2, side: 8 }, settings: { crf: { iterations: 2, w1: 10 } } });
  t.equal(path.basename(result.folder), "labels-ovam-sa2-crf");
  const usage = cli(out, "--refine", "four");
  t.equal(usage.status, 2);
  t.match(usage.stderr, /--refine expects POWER or POWER,SIDE/);
  const params = cli(out, "--crf-params", "w1");
  t.equal(params.status, 2);
  t.match(params.stderr, /--crf-params expects NAME=NUMBER pairs/);
  const unknown = cli(out, "--crf-params", "sigma=3");
  t.equal(unknown.status, 1);
  t.match(unknown.stderr, /option "masks\.crf\.sigma"/);
});
