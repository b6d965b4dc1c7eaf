// Crash safety of `ovam dataset`, run as a child process: SIGKILL in the middle of a run, then
// the same command again: every item exactly once in the manifest and every file byte-identical
// to an uninterrupted run; Ctrl-C stops cleanly (status 130) and resumes the same way; a resume
// in another dtype is refused.
import t from "tap";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawn, spawnSync } from "node:child_process";
import { createRequire } from "node:module";

import { root } from "./helpers/golden.mjs";
import { differences, manifest, smallSpec, snapshot, writeToken } from "./helpers/dataset.mjs";

const require = createRequire(import.meta.url);
const ovam = require(path.join(root, "dist", "index.js"));
const cli = path.join(root, "dist", "cli.js");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ovam-resume-"));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));
writeToken(path.join(tmp, "bus.safetensors"), 32);
// More steps than the other tests so that an item takes long enough to be interrupted inside.
const spec = smallSpec({ generate: { steps: 8 } });
fs.writeFileSync(path.join(tmp, "spec.json"), JSON.stringify(spec));

const reference = path.join(tmp, "reference");
await ovam.dataset.run(spec, { out: reference, baseDir: tmp });

const lineCount = (out) => {
  try {
    return fs.readFileSync(path.join(out, "manifest.jsonl"), "utf8").split("\n").filter(Boolean).length;
  } catch {
    return 0;
  }
};

// Starts the CLI and sends `signal` once the manifest holds `after` lines; resolves with its exit.
function interrupted(out, signal, after) {
  const child = spawn(process.execPath, [cli, "dataset", "spec.json", "--out", out, "--json"], { cwd: tmp, stdio: ["ignore", "pipe", "pipe"] });
  let stderr = "";
  child.stderr.on("data", (d) => (stderr += d));
  child.stdout.resume();
  const poll = setInterval(() => {
    if (lineCount(out) >= after) {
      clearInterval(poll);
      child.kill(signal);
    }
  }, 5);
  return new Promise((resolve) => child.on("exit", (status, sig) => (clearInterval(poll), resolve({ status, signal: sig, stderr }))));
}

const resume = (out) => spawnSync(process.execPath, [cli, "dataset", "spec.json", "--out", out, "--json"], { cwd: tmp, encoding: "utf8", timeout: 300_000 });

t.test("SIGKILL mid-run, then resume: each item once, files byte-identical", async (t) => {
  const out = path.join(tmp, "killed");
  const killed = await interrupted(out, "SIGKILL", 3);
  t.equal(killed.signal, "SIGKILL", "the run was killed");
  const before = manifest(out);
  t.ok(before.length >= 3 && before.length < 12, `killed mid-run (${before.length} of 12 finished)`);
  // A writer that died mid-write leaves a temporary file; pid 2^22 + 1 is beyond Linux's pid range.
  const stale = path.join(out, "images", ".car-0000.png.tmp-4194305-0-abcdef012345");
  fs.writeFileSync(stale, "half a file");
  const again = resume(out);
  t.equal(again.status, 0, again.stderr);
  const result = again.stdout.trim().split("\n").map((l) => JSON.parse(l)).find((r) => r.event === "result");
  t.match(result, { made: 12 - before.length, skipped: before.length, remaining: 0 });
  const ids = manifest(out).map((l) => l.id);
  t.equal(new Set(ids).size, 12, "12 distinct ids");
  t.equal(ids.length, 12, "each exactly once");
  t.notOk(fs.existsSync(stale), "the dead writer's temporary file was removed");
  t.same(differences(snapshot(reference), snapshot(out)), [], "every file equals the uninterrupted run's");
});

t.test("Ctrl-C stops cleanly with status 130; the rerun finishes the rest", async (t) => {
  const out = path.join(tmp, "interrupted");
  const stopped = await interrupted(out, "SIGINT", 1);
  t.equal(stopped.status, 130, stopped.stderr);
  const before = manifest(out).length;
  t.ok(before >= 1 && before < 12, `${before} finished before the stop`);
  t.same(fs.readdirSync(out, { recursive: true }).filter((n) => n.includes(".tmp-")), [], "no temporary files left");
  t.same(fs.readFileSync(path.join(out, "splits", "train.txt"), "utf8").split("\n").filter(Boolean).length, before, "the split lists what finished");
  t.equal(resume(out).status, 0);
  t.same(differences(snapshot(reference), snapshot(out)), []);
});

t.test("dataset.json records the dtype used; a resume that would compute in another is refused", async (t) => {
  // The reference ran in the default, "auto": the record holds what it resolved to on this machine.
  const sd = await ovam.load();
  t.teardown(() => sd.dispose());
  const record = JSON.parse(fs.readFileSync(path.join(reference, "dataset.json"), "utf8"));
  t.equal(record.spec.dtype, sd.dtype, `dataset.json: spec.dtype ${record.spec.dtype}, what "auto" resolved to`);
  const other = sd.dtype === "float32" ? "bfloat16" : "float32";
  const error = await ovam.dataset.run({ ...spec, dtype: other }, { out: reference, baseDir: tmp }).then(() => undefined, (e) => e);
  t.ok(error instanceof ovam.InvalidArgumentError, `${other}: ${error?.message}`);
  t.match(error?.message, `computed in ${sd.dtype}, and this run's model computes in ${other}`);
  t.match(error?.message, `resume with "dtype": "${sd.dtype}" in the spec`);
  const named = await ovam.dataset.run({ ...spec, dtype: sd.dtype }, { out: reference, baseDir: tmp });
  t.match(named, { skipped: 12, made: 0 }, `the spec naming ${sd.dtype} resumes it`);
});
