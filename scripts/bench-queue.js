#!/usr/bin/env node
// npm run bench -- --queue [--items N] [--steps S]: the dataset queue's throughput on this
// machine (bundled tiny model, a redis-server started on a free port) with 1, 2 and 3 `ovam
// worker` processes against the local runner, as items per second, and the queue's own cost per
// item (one worker's wall time minus the local runner's, per item). Not part of the quick bench.
const { spawn } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const root = path.resolve(__dirname, "..");
const cli = path.join(root, "dist", "cli.js");
const arg = (name, fallback) => {
  const at = process.argv.indexOf(name);
  return at >= 0 ? Number(process.argv[at + 1]) : fallback;
};
const ITEMS = arg("--items", 24);
const STEPS = arg("--steps", 2);

// A worker with the model loaded before it reports ready (its load is not part of the run).
function startWorker(url, model) {
  const child = spawn(process.execPath, [cli, "worker", "--queue", url, "--model", model, "--json"], { stdio: ["ignore", "pipe", "inherit"] });
  const ready = new Promise((resolve, reject) => {
    let buffer = "";
    child.stdout.on("data", (data) => {
      buffer += data;
      if (buffer.includes('"Waiting for items')) resolve();
    });
    child.on("exit", (code) => reject(new Error(`worker exited (${code}) before it was ready`)));
  });
  return { child, ready };
}

async function main() {
  const ovam = require(path.join(root, "dist", "index.js"));
  const { startRedis } = await import(path.join(root, "test", "helpers", "redis.mjs"));
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ovam-bench-queue-"));
  const redis = await startRedis();
  const sd = await ovam.load();
  const classes = ["car", "person", "bus"];
  const spec = (base) => ({
    format: "voc",
    classes: classes.map((name) => ({ name })),
    prompts: { templates: ["a photograph of a {class}"], perClass: Math.ceil(ITEMS / classes.length) },
    seeds: { base },
    generate: { steps: STEPS },
  });
  const items = classes.length * Math.ceil(ITEMS / classes.length);
  const rows = [];
  try {
    // Warm-up: the first generation pays for lazy allocations.
    await ovam.dataset.run(spec(10_000), { out: path.join(tmp, "warm"), pipeline: sd, limit: 1 });
    let started = performance.now();
    await ovam.dataset.run(spec(0), { out: path.join(tmp, "local"), pipeline: sd });
    const local = (performance.now() - started) / 1000;
    rows.push(["local runner", local]);
    for (const count of [1, 2, 3]) {
      const workers = Array.from({ length: count }, () => startWorker(redis.url, ovam.bundledModelDir));
      try {
        await Promise.all(workers.map((w) => w.ready));
        started = performance.now();
        const result = await ovam.dataset.runQueued(spec(0), { out: path.join(tmp, `queue-${count}`), pipeline: sd, queue: redis.url, pollMs: 50 });
        if (result.done !== items) throw new Error(`queue with ${count} worker(s) made ${result.done} of ${items} items`);
        rows.push([`queue, ${count} worker${count > 1 ? "s" : ""}`, (performance.now() - started) / 1000]);
      } finally {
        for (const w of workers) w.child.kill("SIGTERM");
        await Promise.all(workers.map((w) => new Promise((resolve) => (w.child.exitCode !== null ? resolve() : w.child.on("exit", resolve)))));
      }
    }
    console.log(`dataset queue, bundled tiny model in ${sd.dtype}, ${items} items × ${STEPS} steps, ${os.cpus().length} cores (load average ${os.loadavg()[0].toFixed(1)})`);
    console.log(`${"".padEnd(20)} ${"wall s".padStart(8)} ${"items/s".padStart(8)} ${"vs local".padStart(9)}`);
    for (const [name, seconds] of rows)
      console.log(`${name.padEnd(20)} ${seconds.toFixed(2).padStart(8)} ${(items / seconds).toFixed(2).padStart(8)} ${`${(local / seconds).toFixed(2)}×`.padStart(9)}`);
    const overhead = ((rows[1][1] - local) / items) * 1000;
    console.log(`queue overhead per item (1 worker − local runner): ${overhead.toFixed(1)} ms`);
  } finally {
    sd.dispose();
    await redis.stop();
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
