// Finds and loads the native addon: a local build (build/Release) or a prebuilt binary
// (prebuilds/<platform>-<arch>/, or the folder OVAM_PREBUILD names), as node-gyp-build resolves
// them. A prebuild records the libtorch it was built against (libtorch.json beside it, written by
// scripts/prebuild-libtorch.js); before loading one, the libtorch this machine would give it is
// compared with that record, and the addon is loaded with every symbol bound at once (RTLD_NOW),
// so another libtorch ends here in one AddonLoadError naming both and the fix, never later in a
// symbol-lookup crash of the process.
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import Module from "node:module";
import os from "node:os";
import path from "node:path";

import { AddonLoadError } from "./errors";

/** A libtorch build: what a prebuild's libtorch.json records, and what describeLibtorch finds. */
export interface LibtorchInfo {
  version: string; // "1.13.0", "2.11.0+cu130"; "unknown" when nothing says
  cuda: boolean; // has libtorch_cuda beside it
  cxx11Abi?: boolean; // the std::string ABI (recorded from the binary; not read from a library)
  libdir: string;
}

const REBUILD = "npm rebuild ovam --build-from-source";

export function describe(info: LibtorchInfo): string {
  const abi = info.cxx11Abi === undefined ? "" : info.cxx11Abi ? ", C++11 ABI" : ", pre-C++11 ABI";
  return `libtorch ${info.version} (${info.cuda ? "CUDA" : "CPU"}${abi}) in ${info.libdir}`;
}

function readText(file: string): string | null {
  try {
    return fs.readFileSync(file, "utf8");
  } catch {
    return null;
  }
}

// The version of the libtorch whose libtorch_cpu.so is `lib`: an official archive's build-version,
// a Python torch's version.py, else the versioned file name (Debian: libtorch_cpu.so.1.13.0).
export function libtorchAt(lib: string): LibtorchInfo {
  const libdir = path.dirname(lib);
  let version = readText(path.join(libdir, "..", "build-version"))?.trim();
  version ??= readText(path.join(libdir, "..", "version.py"))?.match(/__version__\s*=\s*['"]([^'"]+)['"]/)?.[1];
  if (!version) {
    let real = lib;
    try {
      real = fs.realpathSync(lib);
    } catch {
      // a dangling link: no version from its name
    }
    version = path.basename(real).match(/\.so\.(\d+(?:\.\d+)*)$/)?.[1] ?? "unknown";
  }
  const cuda = fs.readdirSync(libdir).some((f) => /^libtorch_cuda\.so/.test(f));
  return { version, cuda, libdir };
}

// The libtorch the dynamic loader gives `file` on this machine (ldd), or why there is none.
export function linkedLibtorch(file: string): LibtorchInfo | { missing: string } | null {
  const ldd = spawnSync("ldd", [file], { encoding: "utf8", timeout: 10_000 });
  if (ldd.error || ldd.status !== 0) return null; // no ldd: the load below still binds every symbol
  const lines = ldd.stdout.split("\n");
  const missing = lines.map((l) => l.match(/^\s*(lib(?:torch|c10)\S*)\s+=>\s+not found/)?.[1]).find(Boolean);
  if (missing) return { missing };
  const lib = lines.map((l) => l.match(/^\s*libtorch_cpu\.so\S*\s+=>\s+(\S+)/)?.[1]).find(Boolean);
  return lib ? libtorchAt(lib) : null;
}

// Same release (the local part, "+cu130", is the variant, compared through `cuda`).
function sameLibtorch(recorded: LibtorchInfo, found: LibtorchInfo): boolean {
  const release = (v: string) => v.split("+")[0];
  return (found.version === "unknown" || release(recorded.version) === release(found.version)) && recorded.cuda === found.cuda;
}

function recordedLibtorch(file: string): LibtorchInfo | null {
  const text = readText(path.join(path.dirname(file), "libtorch.json"));
  if (text === null) return null;
  try {
    const info = JSON.parse(text) as LibtorchInfo;
    return typeof info.version === "string" && typeof info.cuda === "boolean" ? info : null;
  } catch {
    return null;
  }
}

function mismatch(file: string, recorded: LibtorchInfo, found: string, detail: string, cause?: unknown): AddonLoadError {
  const builtAgainst = describe(recorded);
  return new AddonLoadError(
    `ovam: the prebuilt addon ${file} was built against ${builtAgainst}, but this machine gives it ${found}${detail}. ` +
      `Build the addon for this machine's libtorch with \`${REBUILD}\` (needs cmake and a C++ compiler), or install the libtorch the prebuild names.`,
    { file, builtAgainst, found, cause },
  );
}

/** The addon's exports, loaded from the package folder `root`. */
export function loadAddon<T>(root: string): T {
  let file: string;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    file = require("node-gyp-build").resolve(root) as string;
  } catch (cause) {
    throw new AddonLoadError(
      `ovam: no native addon for ${process.platform}-${process.arch} (no build/Release/ovam.node and no matching prebuild in ${path.join(root, "prebuilds")}). ` +
        `Build it with \`${REBUILD}\` (needs cmake, a C++ compiler and libtorch; see the README's install section).`,
      { file: null, cause },
    );
  }
  const recorded = recordedLibtorch(file);
  if (recorded) {
    const found = linkedLibtorch(file);
    if (found && "missing" in found) throw mismatch(file, recorded, `no ${found.missing}`, " (the loader finds none)");
    if (found && !sameLibtorch(recorded, found)) throw mismatch(file, recorded, describe(found), "");
  }
  // Through require's cache, so that a later require() of the same file (the tests do) gets
  // these exports rather than a second instance of the addon.
  const cached = require.cache[file];
  if (cached) return cached.exports as T;
  const module = new Module(file);
  module.filename = file;
  try {
    process.dlopen(module, file, os.constants.dlopen.RTLD_NOW);
  } catch (cause) {
    const reason = String((cause as Error).message ?? cause).split("\n")[0];
    if (recorded) throw mismatch(file, recorded, "a libtorch it cannot link", ` (${reason})`, cause);
    throw new AddonLoadError(`ovam: the native addon ${file} does not load (${reason}). Rebuild it with \`${REBUILD}\`.`, { file, cause });
  }
  module.loaded = true;
  require.cache[file] = module;
  return module.exports as T;
}
