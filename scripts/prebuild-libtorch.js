#!/usr/bin/env node
// Records which libtorch a prebuilt addon was built against, in libtorch.json beside it (version,
// CPU or CUDA, C++ ABI, library folder): dist/addon.js compares it with the libtorch of the machine
// that loads the prebuild. Run on the machine that built it, after prebuildify (npm run prebuildify
// does both).
//
//   node scripts/prebuild-libtorch.js [FOLDER]     (default prebuilds/<platform>-<arch>)
"use strict";
const fs = require("node:fs");
const path = require("node:path");

const root = path.resolve(__dirname, "..");
const { linkedLibtorch } = require(path.join(root, "dist", "addon.js"));
const { writeFileAtomic } = require(path.join(root, "dist", "files.js"));

async function main() {
  const folder = path.resolve(process.argv[2] ?? path.join(root, "prebuilds", `${process.platform}-${process.arch}`));
  const binaries = fs.readdirSync(folder).filter((f) => f.endsWith(".node"));
  if (binaries.length !== 1) throw new Error(`${folder}: expected one .node file, found ${binaries.length}`);
  const file = path.join(folder, binaries[0]);
  const info = linkedLibtorch(file);
  if (!info || "missing" in info) throw new Error(`${file}: cannot tell which libtorch it links (ldd: ${info ? `no ${info.missing}` : "no libtorch_cpu"})`);
  // std::string in the signatures it imports from libtorch: "__cxx11" in the names under the new ABI.
  const cxx11Abi = fs.readFileSync(file).includes("St7__cxx11");
  const record = { ...info, cxx11Abi, binary: binaries[0] };
  await writeFileAtomic(path.join(folder, "libtorch.json"), `${JSON.stringify(record, null, 2)}\n`, { what: "libtorch record" });
  process.stdout.write(`${path.join(folder, "libtorch.json")}: ${JSON.stringify(record)}\n`);
}

main().catch((e) => {
  process.stderr.write(`prebuild-libtorch: ${e.message}\n`);
  process.exit(1);
});
