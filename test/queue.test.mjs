// The dataset queue on a real redis-server (started here on a free port) with real `ovam worker`
// processes on the bundled tiny model: three workers make a 24-item dataset while one of them is
// SIGKILLed mid-item (every item once in the manifest, files byte-identical to a local run);
// Redis SIGKILLed and restarted mid-run; a poisoned item failing its attempts while the others
// finish; workers keeping to the dataset's dtype; enqueueing twice; status; passwords and
// redacted URLs.
import t from "tap";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawn, spawnSync } from "node:child_process";
import { createRequire } from "node:module";

import { root } from "./helpers/golden.mjs";
import { differences, manifest, smallSpec, snapshot, writeToken } from "./helpers/dataset.mjs";
import { startRedis } from "./helpers/redis.mjs";

const require = createRequire(import.meta.url);
const ovam = require(path.join(root, "dist", "index.js"));
const { dataset } = ovam;
const { Queue } = require("bullmq");
const cli = path.join(root, "dist", "cli.js");

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ovam-queue-"));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));
const sd = await ovam.load();
t.teardown(() => sd.dispose());
writeToken(path.join(tmp, "bus.safetensors"), sd.contextDim);
const redis = await startRedis();
t.teardown(() => redis.stop());

// Short locks so that a killed worker's item comes back within seconds.
const LOCK = ["--lock-ms", "2000", "--stalled-ms", "1000"];
const workers = [];
t.teardown(() => Promise.all(workers.map((w) => w.kill())));

/** An `ovam worker --json` process; its records are collected, `waitFor` awaits one. */
function startWorker(url, extra = []) {
  const child = spawn(process.execPath, [cli, "worker", "--queue", url, "--json", ...LOCK, ...extra], { stdio: ["ignore", "pipe", "pipe"] });
  const worker = { child, records: [], stderr: "", waiters: [] };
  let buffer = "";
  child.stdout.on("data", (data) => {
    buffer += data;
    for (let at = buffer.indexOf("\n"); at >= 0; at = buffer.indexOf("\n")) {
      const record = JSON.parse(buffer.slice(0, at));
      buffer = buffer.slice(at + 1);
      worker.records.push(record);
      worker.waiters = worker.waiters.filter((w) => !w(record));
    }
  });
  child.stderr.on("data", (data) => (worker.stderr += data));
  const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  worker.exited = exited;
  worker.waitFor = (test, what, ms = 120_000) =>
    new Promise((resolve, reject) => {
      const found = worker.records.find(test);
      if (found) return resolve(found);
      const timer = setTimeout(() => reject(new Error(`worker: no ${what} within ${ms} ms\n${worker.stderr}`)), ms);
      worker.waiters.push((record) => test(record) && (clearTimeout(timer), resolve(record), true));
    });
  worker.kill = async (signal = "SIGKILL") => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    return exited;
  };
  workers.push(worker);
  return worker;
}
const ready = (w) => w.waitFor((r) => r.event === "note" && r.message.startsWith("Waiting for items"), "ready note");

const runQueued = (spec, out, options = {}) => dataset.runQueued(spec, { out: path.join(tmp, out), baseDir: tmp, pipeline: sd, queue: redis.url, pollMs: 100, backoffMs: 100, ...options });
const spec24 = smallSpec({ prompts: { templates: ["a photograph of a {class}", "a {class} in a city street"], perClass: 8 } });

const pool = [startWorker(redis.url), startWorker(redis.url), startWorker(redis.url)];
await Promise.all(pool.map(ready));

t.test("3 workers make a 24-item dataset; one SIGKILLed mid-item: every item once, files as a local run's", async (t) => {
  const local = dataset.run(spec24, { out: path.join(tmp, "local"), baseDir: tmp, pipeline: sd });
  // The producer through the CLI (--json records).
  fs.writeFileSync(path.join(tmp, "spec24.json"), JSON.stringify(spec24));
  const producer = spawn(process.execPath, [cli, "dataset", path.join(tmp, "spec24.json"), "--out", path.join(tmp, "queued"), "--queue", redis.url, "--json"], { stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  producer.stdout.on("data", (d) => (stdout += d));
  producer.stderr.on("data", (d) => (stderr += d));
  // Killed as soon as it takes its first item: it loads the model inside that item (workers here
  // have no --model), so the kill lands mid-item however fast items are.
  const victim = pool[0];
  const taken = await victim.waitFor((r) => r.event === "start", "an item taken");
  const { signal } = await victim.kill("SIGKILL");
  t.equal(signal, "SIGKILL");
  t.notOk(victim.records.some((r) => r.event === "item" && r.id === taken.id), `the victim was killed while making ${taken.id}`);
  const exit = new Promise((resolve) => producer.on("exit", resolve));
  // Status mid-run: counts from the queue, a rate from the completions so far and an ETA.
  let mid;
  for (let i = 0; i < 300 && !(mid?.rate > 0); i++) {
    mid = await dataset.status(path.join(tmp, "queued"), { queue: redis.url });
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  t.match(mid, { total: 24, queued: true, failed: 0 });
  t.ok(mid.rate > 0 && mid.eta >= 0 && mid.done < 24, `status mid-run: ${mid.done} done, ${mid.rate} items/s, ETA ${mid.eta} s`);
  const status = await exit;
  await local;
  t.equal(status, 0, `the producer finished (${stderr.slice(-500)})`);
  const records = stdout.trim().split("\n").map((l) => JSON.parse(l));
  const result = records.find((r) => r.event === "result");
  t.match(result, { command: "dataset", planned: 24, enqueued: 24, done: 24, failed: [] });

  const lines = fs.readFileSync(path.join(tmp, "queued", "manifest.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l));
  t.equal(lines.length, 24, "24 manifest lines");
  t.equal(new Set(lines.map((l) => l.id)).size, 24, "each item exactly once");
  const others = pool.slice(1).flatMap((w) => w.records.filter((r) => r.event === "item").map((r) => r.id));
  t.ok(others.includes(taken.id), `another worker made ${taken.id} after the stalled-job check`);
  t.same(manifest(path.join(tmp, "queued")), manifest(path.join(tmp, "local")), "the manifest (timings aside) equals the local run's");
  t.same(differences(snapshot(path.join(tmp, "queued")), snapshot(path.join(tmp, "local"))), [], "every file byte-identical to the local run's");

  const [done] = JSON.parse(runCLI(["dataset", "status", path.join(tmp, "queued"), "--queue", redis.url, "--json"]).stdout.trim().split("\n").at(-1)).datasets;
  t.match(done, { total: 24, done: 24, running: 0, waiting: 0, failed: 0, queued: true });
});

t.test("Redis SIGKILLed and restarted mid-run: producer and workers reconnect and finish", async (t) => {
  const spec = smallSpec({ prompts: { templates: ["a {class}"], perClass: 3 }, seeds: { base: 100 } });
  let killed = false;
  const notes = [];
  const result = await runQueued(spec, "restart", {
    onNote: (m) => notes.push(m),
    onItem: (line, { done }) => {
      if (done === 2 && !killed) {
        killed = true;
        redis.kill("SIGKILL").then(() => setTimeout(() => redis.start(), 1000));
      }
    },
  });
  t.ok(killed, "Redis was killed after 2 items");
  t.equal(result.done, 9);
  t.same(result.failures, []);
  const ids = manifest(path.join(tmp, "restart")).map((l) => l.id);
  t.equal(ids.length, 9);
  t.equal(new Set(ids).size, 9, "each item once");
  t.ok(pool.slice(1).every((w) => w.child.exitCode === null), "the workers are still running");
});

t.test("a poisoned item (its token file missing on the workers) fails after its attempts; the others finish", async (t) => {
  const token = path.join(tmp, "poison.safetensors");
  writeToken(token, sd.contextDim);
  fs.writeFileSync(
    path.join(tmp, "poison.jsonl"),
    ['{"prompt":"a car","classes":["car"]}', '{"prompt":"a bus","classes":["bus"]}', '{"prompt":"a person","classes":["person"]}'].join("\n"),
  );
  const spec = smallSpec({ classes: [{ name: "car" }, { name: "person" }, { id: 6, name: "bus", attribute: { token: "poison.safetensors" } }], prompts: { file: "poison.jsonl" } });
  const failed = [];
  const result = await runQueued(spec, "poison", {
    attempts: 2,
    // The producer checked the token; it disappears before any worker reads it.
    onStart: () => fs.rmSync(token),
    onFailed: (f) => failed.push(f),
  });
  t.equal(result.done, 2, "the other items finished");
  t.equal(result.failures.length, 1);
  t.match(result.failures[0], { index: 1, attempts: 2, error: /poison\.safetensors/ });
  t.same(failed, result.failures, "reported once, when it failed its last attempt");
  t.same(manifest(path.join(tmp, "poison")).map((l) => l.index), [0, 2], "the manifest holds only the finished items");
  const status = await dataset.status(path.join(tmp, "poison"), { queue: redis.url });
  t.match(status, { total: 3, done: 2, failed: 1, running: 0, waiting: 0 });
  t.match(status.failures[0].error, /poison\.safetensors/);
});

t.test("workers compute in the dataset's dtype; a worker told another (--dtype) refuses its items", async (t) => {
  // The producer loads the spec's float32; the pool's workers (no --dtype; "auto" may pick bfloat16 here) follow dataset.json.
  const spec = smallSpec({ dtype: "float32", prompts: { templates: ["a {class}"], perClass: 1 }, seeds: { base: 700 } });
  await dataset.run(spec, { out: path.join(tmp, "f32-local"), baseDir: tmp });
  const queued = await dataset.runQueued(spec, { out: path.join(tmp, "f32-queued"), baseDir: tmp, queue: redis.url, pollMs: 100, backoffMs: 100 });
  t.match(queued, { done: 3, failures: [] }, "the pool's workers made every item");
  t.equal(JSON.parse(fs.readFileSync(path.join(tmp, "f32-queued", "dataset.json"), "utf8")).spec.dtype, "float32", "dataset.json records float32");
  t.same(differences(snapshot(path.join(tmp, "f32-queued")), snapshot(path.join(tmp, "f32-local"))), [], "every file byte-identical to a local float32 run's");

  // A worker of its own queue, told a dtype other than the one sd (the producer here) computes in.
  const other = sd.dtype === "float32" ? "bfloat16" : "float32";
  const worker = startWorker(redis.url, ["--queue-name", "ovam-dtype", "--dtype", other]);
  await ready(worker);
  const refused = await runQueued(smallSpec({ prompts: { templates: ["a {class}"], perClass: 1 }, seeds: { base: 800 } }), "dtype-refused", { queueName: "ovam-dtype", attempts: 1 });
  t.equal(refused.failures.length, 3, "every item refused");
  t.match(refused.failures[0].error, `computes in ${other}, and dataset ${path.join(tmp, "dtype-refused")} is computed in ${sd.dtype}; start the worker with --dtype ${sd.dtype}`, "the error names both dtypes and the fix");
  await worker.kill();
});

t.test("enqueueing twice adds nothing; status counts the waiting items", async (t) => {
  // A queue no worker listens to, so the jobs stay where the producer put them.
  const target = { queue: redis.url, queueName: "ovam-idle" };
  const spec = smallSpec({ seeds: { base: 500 } });
  const first = await runQueued(spec, "twice", { ...target, follow: false });
  const second = await runQueued(spec, "twice", { ...target, follow: false });
  t.equal(first.enqueued, 12);
  t.equal(second.enqueued, 0, "the second enqueue added no job");
  t.equal(second.id, first.id, "the same dataset id");
  const queue = new Queue("ovam-idle", { connection: { url: redis.url } });
  t.teardown(() => queue.close());
  t.match(await queue.getJobCounts("waiting", "active", "completed", "failed"), { waiting: 12, active: 0, completed: 0, failed: 0 });
  const status = await dataset.status(path.join(tmp, "twice"), target);
  t.match(status, { total: 12, done: 0, waiting: 12, running: 0, failed: 0, eta: null });
  const all = await dataset.queueStatus(target);
  t.same(all.map((s) => [s.id, s.waiting]), [[first.id, 12]], "the queue's datasets");
});

t.test("passwords: a protected Redis works, the password is never shown", async (t) => {
  const secret = "s3cret-Pa55";
  const guarded = await startRedis({ password: secret });
  t.teardown(() => guarded.stop());
  const spec = smallSpec({ seeds: { base: 900 } });
  const result = await runQueued(spec, "guarded", { queue: guarded.url, follow: false });
  t.equal(result.enqueued, 12, "enqueued with the password");
  t.equal(dataset.redactUrl(guarded.url), `redis://:***@127.0.0.1:${guarded.port}`);
  t.equal(dataset.redactUrl("rediss://user:pw@host:6380/2"), "rediss://user:***@host:6380/2");
  const wrong = guarded.url.replace(secret, "wrong-one");
  const error = await dataset.status(path.join(tmp, "guarded"), { queue: wrong }).catch((e) => e);
  t.equal(error.code, "ERR_OVAM_QUEUE");
  t.notOk(error.message.includes("wrong-one"), error.message);
  const bad = await runQueued(spec, "guarded", { queue: `http://:${secret}@host` }).catch((e) => e);
  t.equal(bad.code, "ERR_OVAM_INVALID_OPTION");
  t.notOk(bad.message.includes(secret), bad.message);
});

t.test("rediss:// (TLS): the producer and status connect through TLS; an untrusted certificate fails at once", async (t) => {
  const secure = await startRedis({ tls: true, password: "tls-Pa55" });
  t.teardown(() => secure.stop());
  fs.writeFileSync(path.join(tmp, "tls.json"), JSON.stringify(smallSpec({ seeds: { base: 700 } })));
  const env = { ...process.env, NODE_EXTRA_CA_CERTS: secure.ca };
  const enqueue = runCLI(["dataset", path.join(tmp, "tls.json"), "--out", path.join(tmp, "tls"), "--queue", secure.url, "--detach", "--json"], { env });
  t.equal(enqueue.status, 0, enqueue.stderr);
  t.match(JSON.parse(enqueue.stdout.trim().split("\n").at(-1)), { event: "result", enqueued: 12, queue: `rediss://:***@localhost:${secure.port}` });
  const status = runCLI(["dataset", "status", path.join(tmp, "tls"), "--queue", secure.url, "--json"], { env });
  t.equal(status.status, 0, status.stderr);
  t.match(JSON.parse(status.stdout.trim().split("\n").at(-1)).datasets[0], { total: 12, done: 0, waiting: 12 });
  const untrusted = runCLI(["dataset", "status", path.join(tmp, "tls"), "--queue", secure.url]);
  t.equal(untrusted.status, 1);
  t.match(untrusted.stderr, /certificate.*\[ERR_OVAM_QUEUE\]/);
  t.notOk(untrusted.stderr.includes("tls-Pa55") || enqueue.stdout.includes("tls-Pa55") || status.stdout.includes("tls-Pa55"), "the password is never shown");
});

t.test("Ctrl-C on a worker finishes its item, then it exits", async (t) => {
  // A queue of its own: this worker is the only one to take the items.
  const worker = startWorker(redis.url, ["--queue-name", "ovam-interrupt"]);
  await ready(worker);
  const spec = smallSpec({ prompts: { templates: ["a {class}"], perClass: 1 }, seeds: { base: 300 } });
  const run = runQueued(spec, "interrupt", { queueName: "ovam-interrupt" });
  const taken = await worker.waitFor((r) => r.event === "start", "an item taken");
  worker.child.kill("SIGINT");
  const { code } = await worker.exited;
  t.equal(code, 130, "exited as an interrupted command does (status 130, after finishing its item)");
  const made = worker.records.filter((r) => r.event === "item").map((r) => r.id);
  t.same(made, [taken.id], `it finished ${taken.id}, and took no other item`);
  // The rest by a new worker.
  const next = startWorker(redis.url, ["--queue-name", "ovam-interrupt"]);
  t.equal((await run).done, 3);
  t.notOk(next.records.some((r) => r.event === "item" && r.id === taken.id), "nothing made twice");
});

function runCLI(args, options = {}) {
  return spawnSync(process.execPath, [cli, ...args], { encoding: "utf8", timeout: 60_000, ...options });
}
