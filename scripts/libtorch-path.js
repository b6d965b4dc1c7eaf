#!/usr/bin/env node
// Where libtorch is, for binding.gyp (node-gyp): the same order as cmake/FindLibtorch.cmake.
const { execFileSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");

function root() {
  if (process.env.LIBTORCH) return process.env.LIBTORCH;
  if (process.env.LIBTORCH_USE_PYTORCH === "1") {
    const prefix = execFileSync(process.env.LIBTORCH_PYTHON || "python3", ["-c", "import torch, os; print(os.path.dirname(torch.__file__))"]).toString().trim();
    return prefix;
  }
  return null;
}

const what = process.argv[2];
const r = root();
if (r) process.stdout.write(path.join(r, what === "lib" ? "lib" : "include"));
else if (what === "lib") process.stdout.write("/usr/lib/x86_64-linux-gnu");
else process.stdout.write(fs.existsSync("/usr/include/torch/csrc") ? "/usr/include" : "/usr/local/include");
