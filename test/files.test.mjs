// The atomic writer and the input reader (ts/files.ts): concurrent writers to one path, targets
// that are not regular files, FIFOs and devices as inputs (refused without hanging), size limits.
import t from "tap";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";

import { root } from "./helpers/golden.mjs";

const require = createRequire(import.meta.url);
const { writeFileAtomic, readInputFile } = require(path.join(root, "dist", "files.js"));

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ovam-files-"));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

// A FIFO with no writer: a blocking open or read of it never returns.
function fifo(name) {
  const file = path.join(dir, name);
  execFileSync("mkfifo", [file]);
  return file;
}

// Settles within `ms` or fails the test (instead of hanging it).
function within(ms, promise) {
  let timer;
  return Promise.race([promise, new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`still pending after ${ms} ms`)), ms)))]).finally(() =>
    clearTimeout(timer),
  );
}

t.test("concurrent writes to one path all complete; the file is one of them, intact", async (t) => {
  const target = path.join(dir, "shared.bin");
  for (let round = 0; round < 5; round++) {
    const contents = Array.from({ length: 40 }, (_, i) => Buffer.alloc(64 * 1024 + i * 17, (round * 40 + i) % 251));
    const results = await Promise.allSettled(contents.map((data) => writeFileAtomic(target, data)));
    t.same(results.filter((r) => r.status === "rejected"), [], `round ${round}: every write completed`);
    const final = fs.readFileSync(target);
    t.ok(contents.some((c) => c.equals(final)), `round ${round}: the file is one written content, whole`);
  }
  t.same(fs.readdirSync(dir).filter((name) => name.includes(".tmp-")), [], "no temporary files left");
});

t.test("a string is written as UTF-8 and replaces an existing file; mode applies", async (t) => {
  const target = path.join(dir, "text.txt");
  fs.writeFileSync(target, "old contents, longer than the new ones");
  await writeFileAtomic(target, "é new", { mode: 0o600 });
  t.equal(fs.readFileSync(target, "utf8"), "é new");
  t.equal(fs.statSync(target).mode & 0o777, 0o600);
});

t.test("targets that exist and are not regular files are refused and left alone", async (t) => {
  const folder = path.join(dir, "a-folder");
  fs.mkdirSync(folder);
  await t.rejects(writeFileAtomic(folder, "x"), { code: "ERR_OVAM_INVALID_ARGUMENT", message: /is a folder; accepted: a regular file/ });
  t.ok(fs.statSync(folder).isDirectory(), "the folder is still a folder");
  const pipe = fifo("target.fifo");
  await t.rejects(within(5000, writeFileAtomic(pipe, "x")), { code: "ERR_OVAM_INVALID_ARGUMENT", message: /is a FIFO/ });
  t.ok(fs.lstatSync(pipe).isFIFO(), "the FIFO is still a FIFO");
  await t.rejects(writeFileAtomic("/dev/null", "x"), { code: "ERR_OVAM_INVALID_ARGUMENT", message: /is a device/ });
  t.ok(fs.statSync("/dev/null").isCharacterDevice(), "/dev/null is still a device");
  t.same(fs.readdirSync(dir).filter((name) => name.includes(".tmp-")), [], "no temporary files left");
});

t.test("a symbolic link target is replaced by the file; the linked file is untouched", async (t) => {
  const linked = path.join(dir, "linked.txt");
  const link = path.join(dir, "link.txt");
  fs.writeFileSync(linked, "original");
  fs.symlinkSync(linked, link);
  await writeFileAtomic(link, "new");
  t.ok(fs.lstatSync(link).isFile(), "the link became a regular file");
  t.equal(fs.readFileSync(link, "utf8"), "new");
  t.equal(fs.readFileSync(linked, "utf8"), "original");
});

t.test("write errors are typed and name what was written", async (t) => {
  await t.rejects(writeFileAtomic(path.join(dir, "missing", "x.bin"), "x", { what: "--out" }), { code: "ERR_OVAM_NOT_FOUND", message: /^--out: .*missing/ });
  // A folder nobody may write into, root included (sysfs refuses new files).
  let locked = "/sys";
  if (process.getuid?.() !== 0) fs.mkdirSync((locked = path.join(dir, "locked")), { mode: 0o500 });
  await t.rejects(writeFileAtomic(path.join(locked, "x.bin"), "x", { what: "image.save()" }), { code: "ERR_OVAM_IO", message: /^image\.save\(\): .*cannot be accessed/ });
});

t.test("regular inputs are read whole", async (t) => {
  const file = path.join(dir, "input.bin");
  const data = Buffer.from(Array.from({ length: 70000 }, (_, i) => i % 256));
  fs.writeFileSync(file, data);
  t.ok((await readInputFile(file, { maxBytes: data.length, what: "--mask" })).equals(data), "exactly at the limit");
  fs.writeFileSync(path.join(dir, "empty"), "");
  t.equal((await readInputFile(path.join(dir, "empty"), { maxBytes: 10, what: "--mask" })).length, 0, "empty file");
});

t.test("FIFO, device, folder, missing and oversize inputs are refused without hanging", async (t) => {
  const pipe = fifo("input.fifo");
  await t.rejects(within(5000, readInputFile(pipe, { maxBytes: 1 << 20, what: "--mask" })), { code: "ERR_OVAM_INVALID_ARGUMENT", message: /^--mask: .* is a FIFO; accepted: a regular file/ });
  await t.rejects(within(5000, readInputFile("/dev/zero", { maxBytes: 1 << 20, what: "--mask" })), { code: "ERR_OVAM_INVALID_ARGUMENT", message: /^--mask: \/dev\/zero is a device/ });
  await t.rejects(readInputFile(dir, { maxBytes: 1 << 20, what: "--config" }), { code: "ERR_OVAM_INVALID_ARGUMENT", message: /^--config: .* is a folder/ });
  await t.rejects(readInputFile(path.join(dir, "nothing"), { maxBytes: 1 << 20, what: "--mask" }), { code: "ERR_OVAM_NOT_FOUND", message: /^--mask: .*nothing does not exist/ });
  const big = path.join(dir, "big.bin");
  fs.writeFileSync(big, Buffer.alloc(1001));
  await t.rejects(readInputFile(big, { maxBytes: 1000, what: "--mask" }), { code: "ERR_OVAM_INVALID_ARGUMENT", message: /is 1001 bytes; accepted: at most 1000 bytes/ });
  const link = path.join(dir, "fifo-link");
  fs.symlinkSync(pipe, link);
  await t.rejects(within(5000, readInputFile(link, { maxBytes: 1 << 20, what: "--mask" })), { code: "ERR_OVAM_INVALID_ARGUMENT", message: /is a FIFO/ });
});
