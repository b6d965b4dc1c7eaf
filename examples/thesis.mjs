#!/usr/bin/env node
// The thesis's experiment end to end ("Synthetic data generation using Latent Diffusion Models for
// Semantic Segmentation of Urban Scenes"): generate images per class, annotate a train split,
// optimise a token per class on it (a token bank), label the test split with DAAM, Linear DAAM and
// the optimised tokens, and evaluate each method with the binary protocol (max mIoU and AUC over
// the threshold sweep), printed as the thesis's table.
//
// On the bundled tiny model (random weights, 64×64 noise) the numbers MEAN NOTHING: the example
// shows the workflow runs. With Stable Diffusion 2-base (the thesis's model) and real annotations
// it gives the real table:
//
//   node examples/thesis.mjs [--model DIR] [--train N] [--test N] [--steps N] [--epochs N] [--out DIR]
//
// The stand-in annotator below draws a fixed region per class so that the example runs anywhere;
// replace it with your annotations (the thesis annotated 200 images).
import fs from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const ovam = require(path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "dist", "index.js"));

const { values } = parseArgs({
  options: {
    model: { type: "string" },
    train: { type: "string", default: "3" },
    test: { type: "string", default: "3" },
    steps: { type: "string", default: "10" },
    epochs: { type: "string", default: "10" },
    out: { type: "string" },
  },
});
const [trainCount, testCount, steps, epochs] = [values.train, values.test, values.steps, values.epochs].map(Number);
// The thesis's urban classes ("traffic light" attributed as "light") and its prompt template.
const CLASSES = ["car", "person", "light"];
const prompt = (name) => `A ${name} in an urban environment`;
// Stand-in annotator: an ellipse per class (cars low and wide, people tall, lights high and small).
const REGIONS = { car: [0.5, 0.7, 0.35, 0.18], person: [0.3, 0.55, 0.12, 0.3], light: [0.75, 0.25, 0.08, 0.15] };

function annotate(image, name) {
  const [cx, cy, rx, ry] = REGIONS[name];
  const data = new Uint8Array(image.width * image.height);
  for (let y = 0; y < image.height; y++)
    for (let x = 0; x < image.width; x++) {
      const [dx, dy] = [(x + 0.5) / image.width - cx, (y + 0.5) / image.height - cy];
      data[y * image.width + x] = (dx / rx) ** 2 + (dy / ry) ** 2 <= 1 ? 1 : 0;
    }
  return { data, width: image.width, height: image.height };
}

const sd = await ovam.load(values.model);
const random = path.resolve(sd.folder) === path.resolve(ovam.bundledModelDir);
console.error(`Model: ${sd.folder}${random ? " (the bundled tiny RANDOM-WEIGHT model: the table below means nothing)" : ""}`);

// 1. Generate: train and test images per class, seeds apart.
const generate = (name, seed) => ovam.generate(sd, { prompt: prompt(name), seed, steps });
const split = async (count, offset) => {
  const items = [];
  for (const name of CLASSES) for (let i = 0; i < count; i++) items.push({ name, image: await generate(name, offset + i) });
  return items;
};
const train = await split(trainCount, 0);
const test = await split(testCount, 1000);
console.error(`Generated ${train.length} train and ${test.length} test images (${steps} steps)`);

// 2–3. Annotate the train split and optimise a token per class over it.
const examples = train.map(({ name, image }) => ({ image, masks: { [name]: annotate(image, name) } }));
const bank = await ovam.optimizeTokens(examples, {
  epochs,
  onEpoch: (name, epoch, loss) => {
    if (epoch === epochs - 1) console.error(`Token "${name}": loss ${loss.toPrecision(4)} after ${epochs} epochs`);
  },
});
if (values.out) {
  fs.mkdirSync(values.out, { recursive: true });
  await ovam.saveTokens(path.join(values.out, "bank.safetensors"), bank);
}

// 4. Label the test split with each method: a map per image for its class.
const methods = {
  DAAM: async (image, name) => (await ovam.attribute(image, prompt(name))).word(name),
  "Linear DAAM": async (image, name) => (await ovam.attribute(image, name, { mode: "linear" })).word(name),
  "OVAM token": async (image, name) => (await ovam.attribute(image, bank.get(name))).word(bank.get(name).text),
};
const results = {};
for (const [method, mapOf] of Object.entries(methods)) {
  const items = [];
  for (const [i, { name, image }] of test.entries()) items.push({ id: `${name}-${i}`, maps: { [name]: await mapOf(image, name) }, truth: { [name]: annotate(image, name) } });
  // 5. Evaluate: OVAM's/the thesis's binary protocol (m / max m, n > τ, 101 thresholds).
  results[method] = await ovam.evaluate(items);
  if (values.out) {
    const dir = path.join(values.out, method.replace(/\s+/g, "-"));
    fs.mkdirSync(dir, { recursive: true });
    await ovam.writeEvaluation(results[method], dir);
  }
}

// The thesis's table: per class and method, max mIoU over the thresholds and the AUC.
const names = Object.keys(methods);
const cell = (v) => (v === null || v === undefined ? "–" : v.toFixed(3)).padStart(8);
console.log(`\n${"class".padEnd(10)}${names.map((m) => `${m} max`.padStart(17) + "AUC".padStart(8)).join("")}`);
for (const name of [...CLASSES, "mean"]) {
  const row = names.map((m) => {
    const b = results[m].binary;
    const s = name === "mean" ? b.summary : b.per_class[name];
    return `${cell(s?.max).padStart(17)}${cell(s?.auc)}`;
  });
  console.log(`${name.padEnd(10)}${row.join("")}`);
}
if (random) console.log("\n(The bundled model has random weights: these numbers mean nothing. Run with --model /path/to/stable-diffusion-2-base for the real table.)");
