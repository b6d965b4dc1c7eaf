#!/usr/bin/env node
// The evaluation benchmark row (run by scripts/bench.js after the native rows, or alone): the
// binary protocol's threshold sweep over N items of S×S maps with K + 1 thresholds, through
// ovam.evaluate() on items in memory (a few distinct maps and truths, reused, so that memory
// stays small while every item is scored in full). Target: 1000 items of 512×512, 101 thresholds
// in ≤ 10 s. Median of the rounds.
//
//   node scripts/bench-eval.js [--items N] [--size S] [--steps K] [--rounds N] [--quick] [--json FILE (row added)]
"use strict";
const fs = require("node:fs");
const path = require("node:path");
const { parseArgs } = require("node:util");

const root = path.resolve(__dirname, "..");
const { evaluate } = require(path.join(root, "dist", "eval", "evaluate.js"));
const { writeFileAtomic } = require(path.join(root, "dist", "files.js"));

const TARGET_S = 10;

async function main() {
  const { values } = parseArgs({
    options: { items: { type: "string" }, size: { type: "string", default: "512" }, steps: { type: "string", default: "100" }, rounds: { type: "string", default: "3" }, quick: { type: "boolean" }, json: { type: "string" } },
    strict: false,
  });
  const items = Number(values.items ?? (values.quick ? 100 : 1000));
  const size = Number(values.size);
  const steps = Number(values.steps);
  const rounds = Number(values.rounds);
  // Eight distinct pairs: smooth blobs with noise, truths a disc per class; two classes per item.
  const pool = Array.from({ length: 8 }, (_, p) => {
    const truth = new Uint8Array(size * size);
    const maps = [new Float32Array(size * size), new Float32Array(size * size)];
    let seed = p + 1;
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++) {
        const i = y * size + x;
        seed = (seed * 1103515245 + 12345) >>> 0;
        const noise = (seed >>> 8) / 2 ** 24;
        const [dx, dy] = [x / size - 0.3 - p * 0.02, y / size - 0.4];
        const [ex, ey] = [x / size - 0.7, y / size - 0.6 + p * 0.02];
        truth[i] = dx * dx + dy * dy < 0.04 ? 1 : ex * ex + ey * ey < 0.03 ? 2 : (seed & 255) === 0 ? 255 : 0;
        maps[0][i] = Math.exp(-(dx * dx + dy * dy) * 20) + 0.3 * noise;
        maps[1][i] = Math.exp(-(ex * ex + ey * ey) * 25) + 0.3 * noise;
      }
    const plane = (data) => ({ data, width: size, height: size });
    return { truth: plane(truth), maps: { 1: plane(maps[0]), 2: plane(maps[1]) } };
  });
  const list = Array.from({ length: items }, (_, i) => ({ id: String(i), ...pool[i % pool.length] }));
  const times = [];
  const cpu = [];
  for (let round = 0; round < rounds; round++) {
    const start = performance.now();
    const usage = process.cpuUsage();
    await evaluate(list, { steps });
    const used = process.cpuUsage(usage);
    times.push((performance.now() - start) / 1000);
    cpu.push((used.user + used.system) / 1e6);
  }
  const middle = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const median = middle(times);
  // CPU time beside wall time: on a shared machine the two differ by the time spent waiting for a core.
  const cpuMedian = middle(cpu);
  const scaled = (median * 1000) / items; // seconds for 1000 items
  console.log(`\novam eval benchmark (binary protocol, ${items} items × 2 classes, ${size}×${size}, ${steps + 1} thresholds, median of ${rounds} rounds)`);
  console.log(`  evaluate()                     ${median.toFixed(2)} s wall, ${cpuMedian.toFixed(2)} s CPU  (${((median / items) * 1e3).toFixed(2)} ms/item)`);
  console.log(`  per 1000 items                 ${scaled.toFixed(2)} s  (target ≤ ${TARGET_S} s: ${(scaled / TARGET_S).toFixed(2)}× the target)`);
  if (values.json) {
    const file = path.resolve(values.json);
    const existing = fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, "utf8")) : {};
    existing.eval = { items, classes_per_item: 2, size, thresholds: steps + 1, seconds: median, cpu_seconds: cpuMedian, seconds_per_1000_items: scaled, target_s: TARGET_S };
    await writeFileAtomic(file, `${JSON.stringify(existing, null, 2)}\n`);
  }
}

main().catch((error) => {
  console.error(`bench-eval: ${error.stack ?? error}`);
  process.exit(1);
});
