// The command line's answers to wrong inputs (issue 15): --out checked before the model loads,
// masks that are devices, FIFOs, folders or missing, negative numbers, and which model a
// generation file makes the CLI load.
import t from "tap";
import { execFileSync, spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";

import { root } from "./helpers/golden.mjs";

const require = createRequire(import.meta.url);
const ovam = require(path.join(root, "dist", "index.js"));
const cli = path.join(root, "dist", "cli.js");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ovam-cli-errors-"));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));

function ovamCLI(args, timeout = 120_000) {
  const started = Date.now();
  const { status, stdout, stderr, signal } = spawnSync(process.execPath, [cli, ...args], { cwd: tmp, encoding: "utf8", timeout });
  return { status, stdout, stderr, signal, seconds: (Date.now() - started) / 1000 };
}

const sd = await ovam.load();
const image = await ovam.generate(sd, { prompt: "a car", steps: 2, seed: 1 });
const generation = path.join(tmp, "generation.safetensors");
await image.save(generation);
sd.dispose();
const optimize = (mask, out = path.join(tmp, "token.safetensors")) => ["optimize", generation, "--mask", mask, "--text", "car", "--epochs", "1", "--out", out];

t.test("--out is checked before the model loads", async (t) => {
  const file = path.join(tmp, "a-file");
  fs.writeFileSync(file, "");
  const folder = path.join(tmp, "a-folder");
  fs.mkdirSync(folder);
  const cases = [
    ["generate --out a file", ["generate", "a cat", "--steps", "1", "--out", file], /--out: .*a-file is not a folder.*ERR_OVAM_INVALID_ARGUMENT/],
    ["generate --out /dev/null", ["generate", "a cat", "--steps", "1", "--out", "/dev/null"], /--out: \/dev\/null is not a folder/],
    ["attribute --out inside a file", ["attribute", generation, "car", "--out", path.join(file, "maps")], /--out: .*a-file is not a folder/],
    ["optimize --out an existing folder", optimize(path.join(tmp, "m.png"), folder), /--out: .*a-folder exists and is not a regular file/],
    ["optimize --out a device", optimize(path.join(tmp, "m.png"), "/dev/null"), /--out: \/dev\/null exists and is not a regular file/],
  ];
  if (fs.existsSync("/sys/kernel")) cases.push(["generate --out in a read-only place", ["generate", "a cat", "--steps", "1", "--out", "/sys/kernel/ovam-out"], /--out: \/sys\/kernel.*ERR_OVAM_IO/]);
  for (const [label, args, message] of cases) {
    const run = ovamCLI(args);
    t.equal(run.status, 1, `${label}: exit 1`);
    t.match(run.stderr, message, `${label}: ${run.stderr.trim()}`);
    t.notMatch(run.stderr, /Model:/, `${label}: before loading a model`);
  }
});

t.test("masks that are devices, FIFOs, folders or missing: a coded error naming --mask, at once", async (t) => {
  const pipe = path.join(tmp, "mask.fifo");
  execFileSync("mkfifo", [pipe]);
  fs.mkdirSync(path.join(tmp, "mask-folder"));
  const cases = [
    ["/dev/zero", "/dev/zero", /--mask: \/dev\/zero is a device; accepted: a regular file.*ERR_OVAM_INVALID_ARGUMENT/],
    ["a FIFO", pipe, /--mask: .*mask\.fifo is a FIFO.*ERR_OVAM_INVALID_ARGUMENT/],
    ["a folder", path.join(tmp, "mask-folder"), /--mask: .*mask-folder is a folder.*ERR_OVAM_INVALID_ARGUMENT/],
    ["a missing file", path.join(tmp, "no-mask.png"), /--mask: .*no-mask\.png does not exist.*ERR_OVAM_NOT_FOUND/],
  ];
  for (const [label, mask, message] of cases) {
    const run = ovamCLI(optimize(mask), 30_000);
    t.equal(run.status, 1, `${label}: exit 1 (${run.signal ?? "no signal"}, ${run.seconds} s)`);
    t.match(run.stderr, message, `${label}: ${run.stderr.trim()}`);
  }
});

t.test("negative numbers get the option's range message", async (t) => {
  const cases = [
    ["--seed -1", ["--seed", "-1"], /option "seed" got -1; accepted: an integer from 0/],
    ["--guidance -1", ["--guidance", "-1"], /option "guidanceScale" got -1; accepted: a number from 0/],
    ["--steps -3", ["--steps", "-3"], /option "steps" got -3; accepted: an integer from 1/],
    ["--size -64x64", ["--size", "-64x64"], /option "width" got -64; accepted: a positive multiple/],
  ];
  for (const [label, flags, message] of cases) {
    const run = ovamCLI(["generate", "a cat", "--out", path.join(tmp, "neg"), ...flags]);
    t.equal(run.status, 1, `${label}: exit 1`);
    t.match(run.stderr, message, `${label}: ${run.stderr.trim()}`);
  }
});

t.test("attribute says which model the generation file made it load", async (t) => {
  const copy = path.join(tmp, "model-copy");
  fs.cpSync(ovam.bundledModelDir, copy, { recursive: true });
  const recorded = ovamCLI(["attribute", generation, "car", "--out", path.join(tmp, "maps-1")]);
  t.equal(recorded.status, 0, recorded.stderr);
  t.match(recorded.stderr, new RegExp(`using the model recorded in .*generation\\.safetensors: ${ovam.bundledModelDir.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`));
  const other = ovamCLI(["attribute", generation, "car", "--model", copy, "--out", path.join(tmp, "maps-2")]);
  t.equal(other.status, 0, other.stderr);
  t.match(other.stderr, /was made by .*tiny-sd1; using --model .*model-copy as asked/);
});
