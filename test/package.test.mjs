// The npm package: `npm pack` gives a tarball that installs into an empty project and loads its
// prebuilt addon on a machine without cmake or a C++ compiler; a prebuild made for another libtorch
// ends in one AddonLoadError naming both libtorch builds and the fix, at require() and not in a
// symbol-lookup crash later, and the install script then falls back to building from source.
// The prebuild is the addon this checkout built (build/Release/ovam.node), recorded by
// scripts/prebuild-libtorch.js as `npm run prebuildify` does.
import t from "tap";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawnSync } from "node:child_process";
import { root } from "./helpers/golden.mjs";

const pkg = JSON.parse(fs.readFileSync(path.join(root, "package.json"), "utf8"));
const npmCli = path.join(path.dirname(process.execPath), "..", "lib", "node_modules", "npm", "bin", "npm-cli.js");
const work = fs.mkdtempSync(path.join(os.tmpdir(), "ovam-package-"));
t.teardown(() => fs.rmSync(work, { recursive: true, force: true }));

// A PATH with every program of the system's folders but the build tools: the machine of a user
// who has libtorch and Node and no compiler.
const HIDDEN = /^(cmake|ctest|make|gmake|ninja|cc|c\+\+|gcc|g\+\+|clang|clang\+\+|ld)$|^x86_64-linux-gnu-(gcc|g\+\+|c\+\+)|^(gcc|g\+\+|c\+\+)-\d+$/;
const bin = path.join(work, "bin");
fs.mkdirSync(bin);
for (const dir of [path.dirname(process.execPath), "/usr/local/bin", "/usr/bin", "/bin"]) {
  for (const name of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
    // lstat, not exists: a dangling link (Debian's rust-clang without clang) is linked once too.
    if (HIDDEN.test(name) || fs.lstatSync(path.join(bin, name), { throwIfNoEntry: false })) continue;
    fs.symlinkSync(path.join(dir, name), path.join(bin, name));
  }
}
const env = { ...process.env, PATH: bin, npm_config_build_from_source: "", LIBTORCH: "", LIBTORCH_USE_PYTORCH: "" };
const run = (cwd, args, extra = {}) =>
  spawnSync(process.execPath, args, { cwd, env: { ...env, ...extra }, encoding: "utf8", timeout: 300_000 });
const npm = (cwd, ...args) => run(cwd, [npmCli, ...args, "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"]);

// The package as published with a linux-x64 prebuild: the files package.json lists, staged.
const stage = path.join(work, "stage");
const prebuilds = path.join(stage, "prebuilds", `${process.platform}-${process.arch}`);
fs.mkdirSync(prebuilds, { recursive: true });
for (const f of [...pkg.files.filter((f) => f !== "prebuilds"), "package.json", "README.md"])
  fs.cpSync(path.join(root, f), path.join(stage, f), { recursive: true });
fs.copyFileSync(path.join(root, "build", "Release", "ovam.node"), path.join(prebuilds, "node.napi.node"));

t.test("scripts/prebuild-libtorch.js records the libtorch the prebuild links", async (t) => {
  const r = run(stage, [path.join(stage, "scripts", "prebuild-libtorch.js")], { PATH: process.env.PATH });
  t.equal(r.status, 0, `exit 0 (stderr: ${r.stderr})`);
  const record = JSON.parse(fs.readFileSync(path.join(prebuilds, "libtorch.json"), "utf8"));
  const addon = (await import(path.join(root, "dist", "index.js"))).default;
  t.equal(record.version.split("+")[0], addon.torchVersion.split("+")[0], `version ${record.version}: the one the addon was compiled with`);
  t.equal(record.cuda, addon.cudaAvailable || fs.readdirSync(record.libdir).some((f) => f.startsWith("libtorch_cuda.so")), "CPU or CUDA");
  t.equal(record.cxx11Abi, true, "C++11 ABI (Debian's and current official builds)");
  t.equal(record.binary, "node.napi.node");
});

let tarball;
t.test("npm pack: the tarball holds the built package and the prebuild, not the sources' build outputs or tests", async (t) => {
  const r = npm(stage, "pack", "--pack-destination", work);
  t.equal(r.status, 0, `npm pack exit 0 (stderr: ${r.stderr})`);
  tarball = path.join(work, r.stdout.trim().split("\n").at(-1));
  const list = spawnSync("tar", ["tzf", tarball], { encoding: "utf8" }).stdout.split("\n");
  for (const f of ["dist/index.js", "dist/addon.js", "scripts/install.js", "scripts/prebuild-libtorch.js", "CMakeLists.txt", "native/core/util/nn.cpp",
    "models/tiny-sd1/model_index.json", `prebuilds/${process.platform}-${process.arch}/node.napi.node`, `prebuilds/${process.platform}-${process.arch}/libtorch.json`])
    t.ok(list.includes(`package/${f}`), f);
  t.notOk(list.some((f) => /^package\/(test|build|node_modules)\//.test(f)), "no test/, build/ or node_modules/");
  t.comment(`${path.basename(tarball)}: ${list.filter(Boolean).length} files, ${(fs.statSync(tarball).size / 1e6).toFixed(1)} MB`);
});

const project = path.join(work, "project");
const installed = path.join(project, "node_modules", "ovam");
const probe = `try { const o = require("ovam"); console.log(JSON.stringify({ torch: o.torchVersion, file: Object.keys(require.cache).find((k) => k.endsWith(".node")) })); }
  catch (e) { console.log(JSON.stringify({ name: e.name, code: e.code, message: e.message, builtAgainst: e.builtAgainst, found: e.found })); }`;
const load = () => JSON.parse(run(project, ["-e", probe]).stdout.trim().split("\n").at(-1));

t.test("the tarball installs into an empty project and loads its prebuild without a compiler", async (t) => {
  t.ok(spawnSync("cmake", ["--version"], { env }).error, "cmake is not on this PATH");
  t.ok(spawnSync("c++", ["--version"], { env }).error, "c++ is not on this PATH");
  fs.mkdirSync(project);
  fs.writeFileSync(path.join(project, "package.json"), JSON.stringify({ name: "consumer", version: "1.0.0", private: true }));
  const started = Date.now();
  const r = npm(project, "install", tarball);
  t.equal(r.status, 0, `npm install exit 0 (stderr: ${r.stderr.slice(-2000)})`);
  t.comment(`npm install: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  t.notOk(fs.existsSync(path.join(installed, "build")), "nothing was compiled (no build/)");
  const loaded = load();
  t.match(loaded.torch, /^\d+\.\d+/, `libtorch ${loaded.torch}`);
  t.equal(loaded.file, path.join(fs.realpathSync(installed), "prebuilds", `${process.platform}-${process.arch}`, "node.napi.node"), "the prebuild is what loaded");
});

t.test("OVAM_PREBUILD points ovam at a variant package's prebuilds (how a CUDA variant is chosen)", async (t) => {
  const variant = path.join(project, "node_modules", "ovam-variant");
  const folder = path.join(variant, "prebuilds", `${process.platform}-${process.arch}`);
  fs.cpSync(path.join(installed, "prebuilds"), path.join(variant, "prebuilds"), { recursive: true });
  t.teardown(() => fs.rmSync(variant, { recursive: true, force: true }));
  const r = run(project, ["-e", probe], { OVAM_PREBUILD: variant });
  const loaded = JSON.parse(r.stdout.trim().split("\n").at(-1));
  t.equal(loaded.file, path.join(fs.realpathSync(folder), "node.napi.node"), "the variant's binary is what loaded");
});

t.test("a prebuild recorded for another libtorch: one AddonLoadError naming both and the fix", async (t) => {
  const recordFile = path.join(installed, "prebuilds", `${process.platform}-${process.arch}`, "libtorch.json");
  const record = fs.readFileSync(recordFile, "utf8");
  t.teardown(() => fs.writeFileSync(recordFile, record));
  fs.writeFileSync(recordFile, JSON.stringify({ ...JSON.parse(record), version: "2.11.0+cu130", cuda: true, libdir: "/opt/libtorch/lib" }));
  const e = load();
  t.equal(e.name, "AddonLoadError");
  t.equal(e.code, "ERR_OVAM_ADDON");
  t.equal(e.builtAgainst, "libtorch 2.11.0+cu130 (CUDA, C++11 ABI) in /opt/libtorch/lib", "names the prebuild's libtorch");
  t.match(e.found, new RegExp(`^libtorch ${JSON.parse(record).version.replaceAll(".", "\\.")} \\(CPU\\) in `), "names this machine's libtorch");
  t.match(e.message, /npm rebuild ovam --build-from-source/, "says the fix");
  t.comment(e.message);

  // npm's install script, run again as `npm rebuild` would: the prebuild is refused, so it builds
  // from source, which needs cmake (hidden here): its message, not a crash.
  const r = run(installed, [path.join(installed, "scripts", "install.js")]);
  t.not(r.status, 0, "install fails without cmake");
  t.match(r.stderr, /no usable prebuilt addon \(ovam: the prebuilt addon .* was built against libtorch 2\.11\.0\+cu130/, "says why the prebuild was refused");
  t.match(r.stderr, /cmake is not installed/, "then what the build from source needs");
});

t.test("a prebuild importing a symbol this libtorch lacks fails at require(), not at the first call", async (t) => {
  const file = path.join(installed, "prebuilds", `${process.platform}-${process.arch}`, "node.napi.node");
  const original = fs.readFileSync(file);
  t.teardown(() => fs.writeFileSync(file, original));
  // Another libtorch build under the same file names: one imported libtorch function renamed
  // (same length) in the binary's symbol names, as if this libtorch did not export it.
  const at = original.indexOf("_ZN2at4_ops");
  const name = original.subarray(at, original.indexOf(0, at));
  const renamed = Buffer.from(name.toString().replace("4call", "4cal1"));
  t.not(renamed.toString(), name.toString(), `renamed ${name}`);
  const patched = Buffer.from(original);
  for (let i = patched.indexOf(name); i >= 0; i = patched.indexOf(name, i + 1)) renamed.copy(patched, i);
  fs.writeFileSync(file, patched);
  // Node's own require binds lazily: it loads, and would crash at the first call of that function.
  const lazy = run(project, ["-e", `require(${JSON.stringify(file)}); console.log("loaded")`]);
  t.equal(lazy.stdout.trim(), "loaded", "a plain require() of the binary does not notice");
  const e = load();
  t.equal(e.code, "ERR_OVAM_ADDON");
  t.match(e.message, /was built against libtorch .* but this machine gives it a libtorch it cannot link \(.*undefined symbol: _ZN2at4_ops.*4cal1/, "names the missing symbol");
  t.match(e.message, /npm rebuild ovam --build-from-source/);
});
