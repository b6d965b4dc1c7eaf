#!/usr/bin/env node
// npm run bench [-- --quick --device cuda ... --compare FILE.json]: builds the native benchmark with
// the same CMake project (OVAM_BUILD_BENCH=ON) and runs it from the package root, then the rows
// measured on the built library (scripts/bench-eval.js, scripts/bench-dataset.js), which join the
// same --json file. --compare prints the change against an earlier result (scripts/bench-compare.js);
// --compare-diffusers PYTHON runs the same cases in Python diffusers and prints them beside
// (scripts/bench-diffusers.js).
const { execFileSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");

// --queue: the dataset queue's throughput with 1-3 workers (scripts/bench-queue.js), instead of the native bench.
if (process.argv.includes("--queue")) {
  require("./bench-queue.js");
  return;
}
const { loadResult, compare, reportError } = require("./bench-compare.js");
const { checkPython, compareDiffusers } = require("./bench-diffusers.js");
const root = path.resolve(__dirname, "..");
const { UsageError } = require(path.join(root, "dist", "cli", "args.js"));

async function main() {
  // --compare FILE is ours: the native binary refuses options it does not know.
  const args = process.argv.slice(2);
  const at = args.indexOf("--compare");
  const compareFile = at >= 0 ? args.splice(at, 2)[1] : undefined;
  if (at >= 0 && (compareFile === undefined || compareFile.startsWith("--")))
    throw new UsageError("--compare needs a value: the JSON file of an earlier run (accepted: --compare FILE.json)");
  const atPython = args.indexOf("--compare-diffusers");
  const python = atPython >= 0 ? args.splice(atPython, 2)[1] : undefined;
  if (atPython >= 0 && (python === undefined || python.startsWith("--")))
    throw new UsageError("--compare-diffusers needs a value: a Python with torch, diffusers and transformers (accepted: --compare-diffusers PYTHON)");
  if (python) checkPython(python);
  // Read and checked before the run: a bad file fails in a second, not after the benchmark, and
  // FILE may be the --json file this run overwrites.
  const before = compareFile === undefined ? undefined : await loadResult(compareFile, "--compare");

  const cmakeJs = path.join(root, "node_modules", ".bin", "cmake-js");
  // configure, not compile: compile skips CMake when build/ is already configured (by npm install),
  // and the bench option would never reach the cache.
  execFileSync(cmakeJs, ["configure", "--CDCMAKE_BUILD_TYPE=Release", "--CDOVAM_BUILD_BENCH=ON"], { cwd: root, stdio: "inherit" });
  execFileSync(cmakeJs, ["build"], { cwd: root, stdio: "inherit" });
  const candidates = ["build/Release/ovam_bench", "build/ovam_bench"].map((p) => path.join(root, p));
  const binary = candidates.find((p) => fs.existsSync(p));
  if (!binary) {
    console.error("ovam bench: the benchmark binary was not built (looked in build/Release and build)");
    return 1;
  }
  const json = args.includes("--json") ? args[args.indexOf("--json") + 1] : "bench-results.json";
  try {
    execFileSync(binary, args, { cwd: root, stdio: "inherit" });
    execFileSync(process.execPath, [path.join(__dirname, "bench-eval.js"), "--json", json, ...(args.includes("--quick") ? ["--quick"] : [])], { cwd: root, stdio: "inherit" });
    execFileSync(process.execPath, [path.join(__dirname, "bench-dataset.js"), "--json", json], { cwd: root, stdio: "inherit" });
  } catch (e) {
    return e.status || 1;
  }
  if (python) {
    // The native full-size steps take at most two runs (a 512² float32 step is ~20 s): the same here.
    const runs = args.includes("--runs") ? Number(args[args.indexOf("--runs") + 1]) : 5;
    await compareDiffusers({ python, jsonFile: path.resolve(root, json), runs: Math.min(runs, 2), quick: args.includes("--quick") });
  }
  if (before) console.log(`\n${compare(before, await loadResult(path.resolve(root, json), "--json"), { before: compareFile, after: json }).join("\n")}`);
  return 0;
}

main().then(
  (status) => {
    process.exitCode = status;
  },
  (error) => {
    process.exitCode = reportError("ovam bench", error);
  },
);
