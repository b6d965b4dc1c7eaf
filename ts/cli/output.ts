// The output folder of a command: file names made safe from user words (nothing escapes the
// folder), unique within the run, and a record of every file written and what it shows.
import { randomBytes } from "node:crypto";
import { lstat, mkdir, open, rm, stat } from "node:fs/promises";
import path from "node:path";

import { InternalError, InvalidArgumentError } from "../errors";
import { fileError, writeFileAtomic } from "../files";
import type { Reporter } from "../progress";

export interface WrittenFile {
  /** Absolute path. */
  path: string;
  description: string;
}

/** `label` as a file-name stem of [a-z0-9_-] (accents dropped, anything else a "-"), never empty. */
export function safeStem(label: string): string {
  const stem = label
    .normalize("NFKD")
    .replace(/[\u0300-\u036f]/g, "")
    .toLowerCase()
    .replace(/[^a-z0-9_-]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 64);
  return stem || "word";
}

export class OutputDir {
  /** The folder, absolute. */
  readonly dir: string;
  readonly files: WrittenFile[] = [];
  readonly #reporter: Reporter;
  readonly #stems = new Set<string>();

  /** The folder `dir`, created (with its parents) by the first file written; `flag` names it in errors ("--out"). */
  constructor(dir: string, reporter: Reporter, readonly flag = "--out") {
    this.dir = path.resolve(dir);
    this.#reporter = reporter;
  }

  /**
   * Checks, before any work, that the folder can be had: it is a folder, or its nearest existing
   * ancestor is a folder files can be written into. The folder itself is made by the first file
   * written, so a command that fails leaves nothing. `file`, a name in the folder, must not be
   * something a file cannot replace (a folder, a device).
   */
  async prepare(file?: string): Promise<this> {
    let existing = this.dir;
    let stats;
    for (;;) {
      stats = await stat(existing).catch((error: NodeJS.ErrnoException) => {
        if (error.code === "ENOENT" || error.code === "ENOTDIR") return undefined;
        throw fileError(error, existing, this.flag);
      });
      if (stats || path.dirname(existing) === existing) break;
      existing = path.dirname(existing);
    }
    if (!stats?.isDirectory())
      throw new InvalidArgumentError(`${this.flag}: ${existing} is not a folder; accepted: a folder, or a path where one can be created`);
    // A file made and removed there: permission bits alone miss read-only file systems and root.
    const probe = path.join(existing, `.ovam-probe-${process.pid}-${randomBytes(4).toString("hex")}`);
    try {
      await (await open(probe, "wx")).close();
      await rm(probe);
    } catch (error) {
      throw fileError(error, this.dir, this.flag);
    }
    if (file !== undefined) {
      const target = await lstat(path.join(this.dir, file)).catch(() => undefined);
      if (target && !target.isFile() && !target.isSymbolicLink())
        throw new InvalidArgumentError(`${this.flag}: ${path.join(this.dir, file)} exists and is not a regular file; accepted: a file path`);
    }
    return this;
  }

  /** A safe stem for `label`, with "-2", "-3"… after it when an earlier label of this run took it. */
  stem(label: string): string {
    const base = safeStem(label);
    let stem = base;
    for (let n = 2; this.#stems.has(stem); n++) stem = `${base}-${n}`;
    this.#stems.add(stem);
    return stem;
  }

  /** Writes `name` (a plain file name) into the folder and records it. */
  write(name: string, data: Uint8Array | string, description: string): Promise<string> {
    return this.save(name, (file) => writeFileAtomic(file, data), description);
  }

  /** Has `writer` write `name` into the folder (image.save(), token.save()) and records it. */
  async save(name: string, writer: (file: string) => Promise<void>, description: string): Promise<string> {
    const file = path.join(this.dir, name);
    // Names come from safeStem() or the commands; this guards that invariant rather than user input.
    if (path.dirname(file) !== this.dir) throw new InternalError(`output name "${name}" leaves ${this.dir}`);
    try {
      await mkdir(this.dir, { recursive: true });
    } catch (error) {
      throw fileError(error, this.dir, this.flag);
    }
    await writer(file);
    this.files.push({ path: file, description });
    this.#reporter.record("file", { path: file, description });
    return file;
  }
}

/** `file` as people read it: relative to the working folder when inside it. */
export function displayPath(file: string): string {
  const relative = path.relative(process.cwd(), file);
  return relative && !relative.startsWith("..") && !path.isAbsolute(relative) ? relative : file;
}

/** "Wrote N files:" and one line per file with what it shows. */
export function fileList(files: readonly WrittenFile[]): string {
  const shown = files.map((f) => displayPath(f.path));
  const width = Math.max(...shown.map((s) => s.length));
  return [`Wrote ${files.length} file${files.length === 1 ? "" : "s"}:`, ...files.map((f, i) => `  ${shown[i].padEnd(width)}  ${f.description}`)].join("\n");
}

/** A float32 array as a NumPy .npy file (format 1.0, little-endian, C order). */
export function npyFloat32(data: Float32Array, shape: readonly number[]): Buffer {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(", ")}${shape.length === 1 ? "," : ""}), }`;
  // Magic (6) + version (2) + length (2) + header, padded with spaces to a multiple of 64 and ended by "\n".
  header = header.padEnd(Math.ceil((10 + header.length + 1) / 64) * 64 - 10 - 1, " ") + "\n";
  const out = Buffer.alloc(10 + header.length + data.length * 4);
  out.write("\x93NUMPY", 0, "latin1");
  out[6] = 1;
  out[7] = 0;
  out.writeUInt16LE(header.length, 8);
  out.write(header, 10, "latin1");
  data.forEach((v, i) => out.writeFloatLE(v, 10 + header.length + i * 4));
  return out;
}
