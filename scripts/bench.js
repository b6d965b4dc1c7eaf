#!/usr/bin/env node
// npm run bench [-- --quick --device cuda ...]: builds the native benchmark with the same CMake
// project (OVAM_BUILD_BENCH=ON) and runs it from the package root.
const { execFileSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");

const root = path.resolve(__dirname, "..");
const cmakeJs = path.join(root, "node_modules", ".bin", "cmake-js");
execFileSync(cmakeJs, ["compile", "--CDCMAKE_BUILD_TYPE=Release", "--CDOVAM_BUILD_BENCH=ON"], { cwd: root, stdio: "inherit" });
const candidates = ["build/Release/ovam_bench", "build/ovam_bench"].map((p) => path.join(root, p));
const binary = candidates.find((p) => fs.existsSync(p));
if (!binary) {
  console.error("ovam bench: the benchmark binary was not built (looked in build/Release and build)");
  process.exit(1);
}
try {
  execFileSync(binary, process.argv.slice(2), { cwd: root, stdio: "inherit" });
} catch (e) {
  process.exit(e.status || 1);
}
