#!/usr/bin/env node
// The dataset benchmark rows (run by scripts/bench.js after the native ones, or alone):
// 1. a 50-item dataset on the tiny model: ovam.dataset.run()'s wall time against the sum of its
//    generate + attribute calls (timed inside the same run, so a machine shared with other work
//    slows both alike); the difference is the dataset's own overhead (masks, PNG/safetensors
//    encoding, atomic writes with fsync, the manifest), target ≤ 10 %. The same items' calls made
//    alone, without the dataset around them, are timed in alternating rounds for comparison;
// 2. maps → labels at Stable Diffusion's size (3 classes, 64² → 512²), which must not be what
//    bounds a real run; with masks.crf, the TypeScript passes that make the CRF's probabilities
//    (normalise, upsample, background) against the dense CRF they feed.
// Rounds alternate between the two sides so that a drift of the machine hits both alike.
//
//   node scripts/bench-dataset.js [--items N] [--rounds N] [--json FILE (rows appended)]
"use strict";
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { parseArgs } = require("node:util");

const root = path.resolve(__dirname, "..");
const ovam = require(path.join(root, "dist", "index.js"));

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const seconds = (start) => (performance.now() - start) / 1000;

async function main() {
  const { values } = parseArgs({ options: { items: { type: "string", default: "50" }, rounds: { type: "string", default: "3" }, json: { type: "string" } } });
  const items = Number(values.items);
  const rounds = Number(values.rounds);
  const sd = await ovam.load();
  const classes = ["car", "person", "bus", "bicycle", "dog"];
  const spec = {
    format: "voc",
    classes: classes.map((name) => ({ name })),
    prompts: { templates: ["a photograph of a {class} in a city street"], perClass: Math.ceil(items / classes.length) },
    generate: { steps: 10 },
  };
  const resolved = await ovam.dataset.loadSpec(spec);
  const plan = ovam.dataset.planItems(resolved).slice(0, items);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ovam-bench-dataset-"));
  const runs = [];
  const calls = [];
  const phases = [];
  try {
    for (let round = 0; round < rounds; round++) {
      // The calls alone: what any script making this dataset by hand must do.
      let start = performance.now();
      for (const item of plan) {
        const image = await ovam.generate(sd, { prompt: item.prompt, seed: item.seed, steps: spec.generate.steps });
        for (const id of item.classes) {
          const name = resolved.classes.find((c) => c.id === id).name;
          (await ovam.attribute(image, name, { size: "latent" })).word(name);
        }
        image.dispose();
      }
      calls.push(seconds(start));
      const out = path.join(tmp, `run-${round}`);
      const lines = [];
      start = performance.now();
      await ovam.dataset.run(spec, { out, pipeline: sd, limit: items, onItem: (line) => lines.push(line) });
      runs.push(seconds(start));
      phases.push(["generate", "attribute", "masks", "write"].map((k) => lines.reduce((sum, l) => sum + l.timings[k], 0)));
      fs.rmSync(out, { recursive: true, force: true });
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  const wall = median(runs);
  const alone = median(calls);
  const [generate, attribute, masks, write] = [0, 1, 2, 3].map((k) => median(phases.map((p) => p[k])));
  const inRun = generate + attribute;
  const overhead = (wall - inRun) / inRun;

  // Labels at SD's size: 3 classes of 64×64 maps upsampled to 512×512.
  const maps = { data: Float32Array.from({ length: 3 * 64 * 64 }, (_, i) => Math.abs(Math.sin(i * 0.37))), shape: [3, 64, 64] };
  const request = (interpolation) => ({
    width: 512,
    height: 512,
    classes: [7, 15, 6].map((id) => ({ id, threshold: 0.4 })),
    background: 0,
    settings: ovam.resolveMaskSettings({ interpolation }),
  });
  const labelTimes = {};
  for (const interpolation of ["bilinear", "bicubic"]) {
    const times = [];
    for (let i = 0; i < 7; i++) {
      const start = performance.now();
      await ovam.labelMaps(maps, request(interpolation));
      times.push(seconds(start));
    }
    labelTimes[interpolation] = median(times.slice(1));
  }
  // CRF labels: the TypeScript passes that make the CRF's probabilities against the dense CRF
  // itself, rounds interleaved so that a machine shared with other work slows both alike.
  const { crfProbabilities } = require(path.join(root, "dist", "masks.js"));
  const image = { data: Uint8Array.from({ length: 512 * 512 * 3 }, (_, i) => (i * 37) & 255), width: 512, height: 512 };
  const crfRuns = { bilinear: [], bicubic: [], crf: [] };
  for (let i = 0; i < 6; i++) {
    for (const interpolation of ["bilinear", "bicubic"]) {
      const start = performance.now();
      crfProbabilities(maps, [6, 7, 15], { ...request(interpolation), settings: ovam.resolveMaskSettings({ interpolation, crf: true }) });
      crfRuns[interpolation].push(seconds(start));
    }
    const probabilities = crfProbabilities(maps, [6, 7, 15], request("bilinear"));
    const start = performance.now();
    await ovam.denseCRF(image, { data: probabilities, shape: [4, 512, 512] });
    crfRuns.crf.push(seconds(start));
  }
  const crfTimes = Object.fromEntries(Object.entries(crfRuns).map(([k, xs]) => [k, median(xs.slice(1))]));
  sd.dispose();

  const ms = (s) => (s * 1e3).toFixed(1);
  console.log(`\novam dataset benchmark (tiny-sd1 in ${sd.dtype}, ${items} items, ${spec.generate.steps} steps, median of ${rounds} rounds)`);
  console.log(`  dataset.run() wall             ${wall.toFixed(2)} s  (${ms(wall / items)} ms/item)`);
  console.log(`  its generate + attribute calls  ${inRun.toFixed(2)} s  (${ms(inRun / items)} ms/item)`);
  console.log(`  overhead                       ${(overhead * 100).toFixed(1)} %  (target ≤ 10 %)`);
  console.log(`  the same calls alone           ${alone.toFixed(2)} s  (${ms(alone / items)} ms/item; rounds ${calls.map((c) => c.toFixed(1)).join(", ")} s vs runs ${runs.map((c) => c.toFixed(1)).join(", ")} s)`);
  console.log(`  inside the run, per item       generate ${ms(generate / items)} ms, attribute ${ms(attribute / items)} ms, masks ${ms(masks / items)} ms, write ${ms(write / items)} ms`);
  console.log(`  labels 3 × 64² → 512²          bilinear ${ms(labelTimes.bilinear)} ms, bicubic ${ms(labelTimes.bicubic)} ms`);
  const share = (k) => `${ms(crfTimes[k])} ms (${((crfTimes[k] / crfTimes.crf) * 100).toFixed(1)} % of the CRF)`;
  console.log(`  CRF inputs 3 × 64² → 512²      bilinear ${share("bilinear")}, bicubic ${share("bicubic")}; the dense CRF (4 labels, 5 iterations) ${ms(crfTimes.crf)} ms`);
  if (values.json) {
    const file = path.resolve(values.json);
    const existing = fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, "utf8")) : {};
    existing.dataset = {
      items,
      steps: spec.generate.steps,
      wall_s: wall,
      calls_in_run_s: inRun,
      calls_alone_s: alone,
      overhead,
      per_item_ms: { generate: (generate / items) * 1e3, attribute: (attribute / items) * 1e3, masks: (masks / items) * 1e3, write: (write / items) * 1e3 },
      labels_512_ms: { bilinear: labelTimes.bilinear * 1e3, bicubic: labelTimes.bicubic * 1e3 },
      crf_probabilities_512_ms: { bilinear: crfTimes.bilinear * 1e3, bicubic: crfTimes.bicubic * 1e3, dense_crf: crfTimes.crf * 1e3 },
    };
    await require(path.join(root, "dist", "files.js")).writeFileAtomic(file, `${JSON.stringify(existing, null, 2)}\n`);
  }
}

main().catch((error) => {
  console.error(`bench-dataset: ${error.stack ?? error}`);
  process.exit(1);
});
