#!/usr/bin/env node
// The diffusers side of `npm run bench -- --compare-diffusers PYTHON` (issue 16): runs
// scripts/diffusers-bench.py with PYTHON (a Python with torch, diffusers and transformers) on the
// SD 1.5 architecture the native rows use, adds its rows to the --json result (models
// "diffusers-float32" and "diffusers-bfloat16", the native cases' names, so that --compare pairs
// them across runs too), and prints each beside the native row it matches. Where PYTHON can also
// import OVAM (vpulab/ovam), its one-word attribution joins as a row of its own (`by: "OVAM"`).
"use strict";
const { spawnSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");
const { z } = require("zod");

const root = path.resolve(__dirname, "..");
const { UsageError } = require(path.join(root, "dist", "cli", "args.js"));
const { InvalidArgumentError } = require(path.join(root, "dist", "errors.js"));
const { writeFileAtomic } = require(path.join(root, "dist", "files.js"));

const ACCEPTED = "a Python with torch, diffusers and transformers (e.g. /opt/diffusers-ref/bin/python)";
const GIB = 2 ** 30;

const pythonResult = z.object({
  diffusers: z.string(),
  transformers: z.string(),
  torch: z.string(),
  threads: z.number(),
  allocator: z.string(),
  rows: z.array(
    z.object({
      case: z.string(),
      dtype: z.enum(["float32", "bfloat16"]),
      seconds: z.number().nonnegative(),
      note: z.string(),
      by: z.string().optional(), // what ran the row where diffusers alone did not (OVAM's attribution)
      peak_gib: z.number().optional(),
      before_gib: z.number().optional(),
    }),
  ),
});

// The native rows a diffusers row is compared with, best first: the full-size model of its dtype,
// then the 256² model of the default run (the same architecture).
function nativeCandidates(row) {
  const full = { float32: "sd15-f32", bfloat16: "sd15-bf16" }[row.dtype];
  const candidates = [[full, row.case]];
  if (row.dtype === "float32") {
    candidates.push(["sd15", row.case]);
    if (row.case === "UNet step (CFG batch 2) 256px") candidates.push(["sd15", "UNet step (CFG batch 2), capture off"]);
  }
  return candidates;
}

const cannotRun = (python, error) => new UsageError(`--compare-diffusers: cannot run ${python} (${error.code}); accepted: ${ACCEPTED}`);

/** Fails in a second, before the native run, where `python` cannot import what the Python side needs. */
function checkPython(python) {
  const run = spawnSync(python, ["-c", "import torch, diffusers, transformers"], { encoding: "utf8" });
  if (run.error) throw cannotRun(python, run.error);
  if (run.status !== 0) {
    const last = run.stderr.trim().split("\n").pop();
    throw new UsageError(`--compare-diffusers: ${python} cannot import torch, diffusers and transformers (${last}); accepted: ${ACCEPTED}`);
  }
}

/**
 * Adds diffusers' rows (`measured`, diffusers-bench.py's result) to `native` (the native run's
 * result, changed in place) and returns the lines that print each beside the native row it matches.
 */
function joinDiffusers(native, measured) {
  const byKey = new Map(native.cases.map((c) => [`${c.model}\u0000${c.case}`, c]));
  const lines = [
    `ovam beside diffusers ${measured.diffusers} (transformers ${measured.transformers}, torch ${measured.torch}, ${measured.allocator}), this run:`,
    `${"case".padEnd(34)} ${"dtype".padEnd(9)} ${"ovam".padStart(24)} ${"diffusers".padStart(12)} ${"ovam/d".padStart(8)}  peak GiB ovam / diffusers`,
  ];
  for (const row of measured.rows) {
    const match = nativeCandidates(row)
      .map(([model, name]) => byKey.get(`${model}\u0000${name}`))
      .find(Boolean);
    const ovam = match ? `${(match.median_s * 1e3).toFixed(0)} ms (${match.model})` : "no native row";
    const ratio = match ? `${(match.median_s / row.seconds).toFixed(2)}x` : "-";
    const nativePeak = match?.peak_resident_bytes ? (match.peak_resident_bytes / GIB).toFixed(2) : "-";
    const peak = row.peak_gib === undefined ? "" : `  ${nativePeak} / ${row.peak_gib.toFixed(2)}`;
    const label = row.by ? `${row.case} (${row.by})` : row.case;
    lines.push(`${label.padEnd(34)} ${row.dtype.padEnd(9)} ${ovam.padStart(24)} ${`${(row.seconds * 1e3).toFixed(0)} ms`.padStart(12)} ${ratio.padStart(8)}${peak}`);
    native.cases.push({
      model: `diffusers-${row.dtype}`,
      case: row.case,
      median_s: row.seconds,
      flops: 0,
      gflops_per_s: 0,
      bytes_read: 0,
      note: row.by ? `${row.by}: ${row.note}` : row.note,
      ...(row.peak_gib === undefined ? {} : { peak_resident_bytes: row.peak_gib * GIB }),
    });
  }
  const { diffusers, transformers, torch, allocator } = measured;
  native.diffusers = { diffusers, transformers, torch, allocator };
  return lines;
}

/**
 * Runs the Python side and joins it to `jsonFile` (the native run's result). `runs` is the native
 * full-size rows' count; errors have stable codes and name the flag.
 */
async function compareDiffusers({ python, jsonFile, runs, quick }) {
  const native = JSON.parse(fs.readFileSync(jsonFile, "utf8"));
  const out = `${jsonFile}.diffusers.json`;
  const args = [path.join(__dirname, "diffusers-bench.py"), "--json", out, "--threads", String(native.threads), "--runs", String(runs)];
  if (quick) args.push("--quick");
  console.log(`\ndiffusers: ${python} ${args.join(" ")}`);
  const run = spawnSync(python, args, { cwd: root, stdio: "inherit" });
  if (run.error) throw cannotRun(python, run.error);
  if (run.status !== 0)
    throw new InvalidArgumentError(`--compare-diffusers: ${python} exited with ${run.status ?? run.signal} (its message is above); accepted: ${ACCEPTED}`);
  const parsed = pythonResult.safeParse(JSON.parse(fs.readFileSync(out, "utf8")));
  if (!parsed.success) throw new InvalidArgumentError(`--compare-diffusers: ${out} is not diffusers-bench.py's result (${parsed.error.issues[0].message})`);
  const lines = joinDiffusers(native, parsed.data);
  await writeFileAtomic(jsonFile, `${JSON.stringify(native, null, 2)}\n`);
  fs.rmSync(out);
  console.log(`\n${lines.join("\n")}`);
}

module.exports = { checkPython, compareDiffusers, joinDiffusers };
