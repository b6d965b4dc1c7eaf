#!/usr/bin/env node
// npm run bench [-- --quick --device cuda ...]: builds the native benchmark with the same CMake
// project (OVAM_BUILD_BENCH=ON) and runs it from the package root, then the evaluation row
// (scripts/bench-eval.js, on the built library), which joins the same --json file.
const { execFileSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");

const root = path.resolve(__dirname, "..");
const cmakeJs = path.join(root, "node_modules", ".bin", "cmake-js");
// configure, not compile: compile skips CMake when build/ is already configured (by npm install),
// and the bench option would never reach the cache.
execFileSync(cmakeJs, ["configure", "--CDCMAKE_BUILD_TYPE=Release", "--CDOVAM_BUILD_BENCH=ON"], { cwd: root, stdio: "inherit" });
execFileSync(cmakeJs, ["build"], { cwd: root, stdio: "inherit" });
const candidates = ["build/Release/ovam_bench", "build/ovam_bench"].map((p) => path.join(root, p));
const binary = candidates.find((p) => fs.existsSync(p));
if (!binary) {
  console.error("ovam bench: the benchmark binary was not built (looked in build/Release and build)");
  process.exit(1);
}
// The thread-pool settings the library uses (ts/native.ts): short spins, or libtorch's OpenMP pool
// and OpenBLAS's pool steal each other's cores and timings swing 3× from run to run.
const env = { GOMP_SPINCOUNT: "10000", OPENBLAS_THREAD_TIMEOUT: "4", ...process.env };
const args = process.argv.slice(2);
const json = args.includes("--json") ? args[args.indexOf("--json") + 1] : "bench-results.json";
try {
  execFileSync(binary, args, { cwd: root, stdio: "inherit", env });
  execFileSync(process.execPath, [path.join(__dirname, "bench-eval.js"), "--json", json, ...(args.includes("--quick") ? ["--quick"] : [])], { cwd: root, stdio: "inherit", env });
} catch (e) {
  process.exit(e.status || 1);
}
