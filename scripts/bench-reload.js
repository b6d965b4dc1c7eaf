#!/usr/bin/env node
// node scripts/bench-reload.js [cycles] [package root]: resident memory over repeated
// load → generate → dispose cycles on the bundled model (a server reloading models sees heap the
// allocator keeps as a leak). Prints RSS after the first cycle and after the last, and the growth.
const path = require("node:path");

const cycles = Number(process.argv[2] ?? 200);
const ovam = require(path.resolve(process.argv[3] ?? path.join(__dirname, ".."), "dist", "index.js"));
const mb = (bytes) => (bytes / 2 ** 20).toFixed(1);

(async () => {
  const started = Date.now();
  let first = 0;
  for (let i = 1; i <= cycles; i++) {
    const sd = await ovam.load();
    const image = await ovam.generate(sd, { prompt: "a car in a street", steps: 2, seed: i });
    sd.dispose();
    image.dispose();
    if (i === 1) first = process.memoryUsage().rss;
  }
  const last = process.memoryUsage().rss;
  console.log(`${cycles} load → generate → dispose cycles in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  console.log(`RSS after cycle 1: ${mb(first)} MiB; after cycle ${cycles}: ${mb(last)} MiB; growth ${mb(last - first)} MiB (${(last / first).toFixed(2)}×)`);
})();
