// The two native build descriptions (CMakeLists.txt for cmake-js, binding.gyp for node-gyp) list
// the same sources, every source on disk is built, the addon loads the way users load it, and the
// install script handles both a usable addon and a missing libtorch.
import t from "tap";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { root } from "./helpers/golden.mjs";

const require = createRequire(import.meta.url);
const read = (file) => fs.readFileSync(path.join(root, file), "utf8");

// The file list of a `set(NAME ...)` in CMakeLists.txt.
function cmakeList(text, name) {
  const m = text.match(new RegExp(`set\\(${name}\\s([^)]*)\\)`));
  if (!m) throw new Error(`CMakeLists.txt has no set(${name} ...)`);
  return m[1].replace(/#.*$/gm, "").split(/\s+/).filter(Boolean);
}

function sourcesOnDisk(dir) {
  return fs.readdirSync(path.join(root, dir), { recursive: true })
    .filter((f) => f.endsWith(".cpp"))
    .map((f) => path.posix.join(dir, f.split(path.sep).join("/")));
}

const cmake = read("CMakeLists.txt");
const cmakeSources = [...cmakeList(cmake, "OVAM_CORE_SOURCES"), ...cmakeList(cmake, "OVAM_ADDON_SOURCES")];
const gyp = JSON.parse(read("binding.gyp"));

t.test("CMakeLists.txt and binding.gyp build the same sources", async (t) => {
  t.equal(gyp.targets.length, 1, "one node-gyp target");
  t.equal(gyp.targets[0].target_name, "ovam", "target ovam (build/Release/ovam.node)");
  const gypSources = gyp.targets[0].sources;
  t.same([...gypSources].sort(), [...cmakeSources].sort(), "same files");
  t.equal(new Set(cmakeSources).size, cmakeSources.length, "no file listed twice");
  t.comment(`${cmakeSources.length} sources`);
});

t.test("every listed source exists and every source on disk is listed", async (t) => {
  for (const f of cmakeSources) t.ok(fs.existsSync(path.join(root, f)), `${f} exists`);
  const listed = new Set(cmakeSources);
  const unlisted = [...sourcesOnDisk("native/core"), ...sourcesOnDisk("native/addon")].filter((f) => !listed.has(f));
  t.same(unlisted, [], "no .cpp under native/core or native/addon is left out of the build");
});

t.test("package.json", async (t) => {
  const pkg = JSON.parse(read("package.json"));
  t.equal(pkg.name, "ovam");
  t.equal(pkg.scripts.install, "node scripts/install.js");
  t.ok(fs.existsSync(path.join(root, "package-lock.json")), "package-lock.json exists (npm ci needs it)");
  // npm runs a script named "preX" before every "npm run X": a script called "prebuild" would run
  // prebuildify (minutes of node-gyp) before every build.
  const hooks = Object.keys(pkg.scripts).filter((name) => name.startsWith("pre") && pkg.scripts[name.slice(3)] !== undefined);
  t.same(hooks, ["pretest"], "the only pre-script is pretest (npm run build runs no prebuild step)");
});

t.test("the addon loads through node-gyp-build", async (t) => {
  const addon = require("node-gyp-build")(root);
  t.type(addon.torchVersion, "string");
  t.match(addon.torchVersion, /^\d+\.\d+/);
  t.type(addon.cudaAvailable, "boolean");
  t.type(addon.components.safetensors, "function");
  t.type(addon.components.loadComponent, "function");
  t.equal(addon, require(path.join(root, "build", "Release", "ovam.node")), "the same module the tests use");
  t.comment(`libtorch ${addon.torchVersion}, CUDA ${addon.cudaAvailable}`);
});

t.test("the ESM entry re-exports every name of the CommonJS build", async (t) => {
  const cjsFile = path.join(root, "dist", "index.js");
  if (!t.ok(fs.existsSync(cjsFile), "dist/index.js exists (npm run build:ts)")) return;
  const cjs = require(cjsFile);
  const esm = await import(path.join(root, "dist", "index.mjs"));
  const names = Object.keys(cjs).filter((n) => n !== "__esModule" && n !== "default").sort();
  t.same(Object.keys(esm).filter((n) => n !== "default").sort(), names, "same names");
  for (const n of names) t.equal(esm[n], cjs[n], `${n} is the same object`);
  t.equal(esm.default, cjs, "default export is the CommonJS module");
  t.comment(`${names.length} exports`);
});

const runInstall = (cwd, env) =>
  spawnSync(process.execPath, [path.join(cwd, "scripts", "install.js")], { cwd, env: { ...process.env, ...env }, encoding: "utf8", timeout: 300_000 });

t.test("install script: nothing to do when the addon loads", async (t) => {
  const r = runInstall(root, { npm_config_build_from_source: "" });
  t.equal(r.status, 0, `exit 0 (stderr: ${r.stderr})`);
  t.notMatch(r.stderr, /building the native addon|cmake/i, "no build started");
});

t.test("install script: a missing libtorch fails with FindLibtorch's message, last", async (t) => {
  // A copy of the build description without a built addon, pointed at a libtorch that is not there.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ovam-install-"));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  for (const f of ["package.json", "CMakeLists.txt", "cmake", "scripts"]) fs.cpSync(path.join(root, f), path.join(dir, f), { recursive: true });
  fs.symlinkSync(path.join(root, "node_modules"), path.join(dir, "node_modules"));
  const missing = path.join(dir, "no-libtorch");
  const r = runInstall(dir, { LIBTORCH: missing, LIBTORCH_USE_PYTORCH: "" });
  t.not(r.status, 0, "non-zero exit");
  const tail = r.stderr.slice(r.stderr.lastIndexOf("ovam: the native addon could not be built."));
  t.match(tail, /^ovam: the native addon could not be built\.\n\novam: libtorch not found \(looked for LIBTORCH=/, "the summary comes last and starts with FindLibtorch's message");
  t.match(tail, missing, "names where it looked");
  t.match(tail, /apt-get install libtorch-dev/, "says what to install");
  t.notMatch(tail, /CMake Error|Call Stack/, "without CMake's framing");
  t.comment(tail);
});
