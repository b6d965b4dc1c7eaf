#!/usr/bin/env node
// npm "install" script. Uses a prebuilt or already compiled addon when one loads; otherwise
// compiles it with cmake-js against libtorch (found by cmake/FindLibtorch.cmake from LIBTORCH,
// LIBTORCH_USE_PYTORCH=1 or the system). In a source checkout it also builds the TypeScript, so
// `npm install` / `npm ci` alone leaves a working package.
"use strict";
const { spawn, spawnSync } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

const root = path.resolve(__dirname, "..");

function log(line) {
  process.stderr.write(`ovam: ${line}\n`);
}

// A module's file resolved from the package and from the project that installs it, or null.
function resolve(request) {
  try {
    return require.resolve(request, { paths: [root, process.cwd()] });
  } catch {
    return null;
  }
}

function addonLoadError() {
  try {
    // dist/addon.js checks a prebuild against this machine's libtorch and binds every symbol now;
    // a source checkout before its first TypeScript build has only node-gyp-build's plain load.
    const loader = path.join(root, "dist", "addon.js");
    if (fs.existsSync(loader)) require(loader).loadAddon(root);
    else require("node-gyp-build")(root);
    return null;
  } catch (e) {
    return e;
  }
}

// What the user must read when the build fails: our own CMake errors (FindLibtorch says what to
// install) rather than the compiler noise around them; else the compiler's error lines.
function explain(output) {
  const lines = output.split(/\r?\n/);
  const blocks = [];
  for (let i = 0; i < lines.length; i++) {
    if (!/^CMake Error/.test(lines[i])) continue;
    // CMake indents the message by two spaces and word-wraps its unindented lines: undo both.
    const block = [];
    for (i++; i < lines.length && !/^(Call Stack|CMake |-- )/.test(lines[i]); i++) {
      const line = lines[i].replace(/^ {2}/, "");
      const last = block.length - 1;
      if (last >= 0 && block[last] && line && !/^\s/.test(line) && !/^\s/.test(block[last])) block[last] += ` ${line}`;
      else block.push(line);
    }
    const text = block.join("\n").replace(/\. {2}/g, ". ").trim();
    if (text.startsWith("ovam:") && !blocks.includes(text)) blocks.push(text);
  }
  if (blocks.length) return blocks.join("\n\n");
  const errors = lines.filter((l) => /\berror\b|ERR!/i.test(l)).slice(0, 20);
  return errors.length ? errors.join("\n") : lines.slice(-20).join("\n");
}

function run(command, args, { capture = false } = {}) {
  return new Promise((done) => {
    const child = spawn(command, args, { cwd: root, stdio: capture ? ["ignore", "pipe", "pipe"] : "inherit" });
    let output = "";
    if (capture) {
      // Shown as it comes (a build takes minutes) and kept to explain a failure.
      child.stdout.on("data", (d) => { output += d; process.stdout.write(d); });
      child.stderr.on("data", (d) => { output += d; process.stderr.write(d); });
    }
    child.on("error", (e) => done({ code: 127, output: `${output}\n${command}: ${e.message}` }));
    child.on("close", (code) => done({ code: code ?? 1, output }));
  });
}

function fatal(message) {
  process.stderr.write(`\n${"=".repeat(78)}\novam: the native addon could not be built.\n\n${message}\n${"=".repeat(78)}\n`);
  process.exit(1);
}

// Parallel compile jobs: one per core, but each libtorch translation unit takes ~1.5 GB of memory.
function buildJobs() {
  const asked = Number(process.env.CMAKE_BUILD_PARALLEL_LEVEL);
  if (asked > 0) return asked;
  const byMemory = Math.floor(os.totalmem() / 1.5e9);
  return Math.max(1, Math.min(os.availableParallelism?.() ?? os.cpus().length, byMemory));
}

async function buildNative() {
  const loadError = addonLoadError();
  const forced = process.env.npm_config_build_from_source === "true";
  if (!loadError && !forced) return;
  log(forced ? "building the native addon from source (--build-from-source)"
             : `no usable prebuilt addon (${loadError.message.split("\n")[0]}); building from source`);
  if (spawnSync("cmake", ["--version"], { stdio: "ignore" }).error)
    fatal("cmake is not installed. Install it (Debian/Ubuntu: sudo apt-get install cmake g++), then run npm install again.");
  const cmakeJs = resolve("cmake-js/bin/cmake-js");
  if (!cmakeJs) fatal("cmake-js is not installed, so the addon cannot be compiled here. Run `npm install cmake-js node-api-headers`, then npm install again.");
  const args = [cmakeJs, "compile", "--CDCMAKE_BUILD_TYPE=Release", "--parallel", String(buildJobs())];
  const { code, output } = await run(process.execPath, args, { capture: true });
  if (code !== 0) fatal(explain(output));
  const after = addonLoadError();
  if (after) fatal(`the build finished but the addon does not load: ${after.message}`);
  log("native addon built");
}

async function buildTypeScript() {
  if (fs.existsSync(path.join(root, "dist", "index.js")) || !fs.existsSync(path.join(root, "ts"))) return;
  const tsc = resolve("typescript/bin/tsc");
  if (!tsc) return; // a package without its sources or dev tools ships dist/ already
  log("building the TypeScript (dist/)");
  for (const [command, args] of [
    [process.execPath, [tsc, "-p", "tsconfig.json"]],
    [process.execPath, [path.join(__dirname, "esm-wrapper.js")]],
  ]) {
    const { code } = await run(command, args);
    if (code !== 0) {
      log(`${path.basename(args[0])} failed (exit ${code})`);
      process.exit(code);
    }
  }
}

buildNative()
  .then(buildTypeScript)
  .catch((e) => fatal(e.stack || String(e)));
