// Bad input to `ovam dataset` gets an error naming the JSON path, the value and what is accepted,
// before anything is generated; an output path that is a file is refused; a full disk stops the
// run with ERR_OVAM_IO, loses nothing, and the run resumes once there is room.
import t from "tap";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";

import { root } from "./helpers/golden.mjs";
import { differences, manifest, smallSpec, snapshot, writeToken } from "./helpers/dataset.mjs";

const require = createRequire(import.meta.url);
const ovam = require(path.join(root, "dist", "index.js"));
const cli = path.join(root, "dist", "cli.js");
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ovam-dataset-errors-"));
t.teardown(() => fs.rmSync(tmp, { recursive: true, force: true }));
writeToken(path.join(tmp, "bus.safetensors"), 32);
writeToken(path.join(tmp, "wide.safetensors"), 48);
const sd = await ovam.load();
t.teardown(() => sd.dispose());
const run = (spec, out = "out", options = {}) => ovam.dataset.run(spec, { out: path.join(tmp, out), baseDir: tmp, pipeline: sd, ...options });

// The first issue of the rejection whose option is `option`.
async function issue(t, spec, option) {
  const error = await run(spec).then(
    () => undefined,
    (e) => e,
  );
  t.ok(error instanceof ovam.InvalidOptionError, `${option}: an InvalidOptionError (${error?.message})`);
  const found = error?.issues?.find((i) => i.option === option);
  t.ok(found, `the error names ${option}`);
  t.notOk(fs.existsSync(path.join(tmp, "out")), "nothing was written");
  return found ?? {};
}

t.test("an unknown {placeholder}", async (t) => {
  const found = await issue(t, smallSpec({ prompts: { templates: ["a {clas} in a street"], perClass: 2 } }), "spec.prompts.templates[0]");
  t.equal(found.value, "a {clas} in a street");
  t.match(found.accepted, /\{class\}.*not \{clas\}/);
});

t.test("duplicate class ids and names", async (t) => {
  const ids = await issue(t, smallSpec({ classes: [{ name: "car" }, { id: 7, name: "auto" }] }), "spec.classes[1].id");
  t.equal(ids.value, 7);
  t.match(ids.accepted, /not used by another class \(classes\[0\]/);
  const names = await issue(t, smallSpec({ classes: [{ name: "car" }, { id: 6, name: "Car" }] }), "spec.classes[1].name");
  t.equal(names.value, "Car");
});

t.test("a missing token file", async (t) => {
  const found = await issue(t, smallSpec({ classes: [{ name: "bus", attribute: { token: "missing.safetensors" } }] }), "spec.classes[0].attribute.token");
  t.equal(found.value, "missing.safetensors");
  t.match(found.accepted, /existing token file.*does not exist/);
});

t.test("a token of another model (wrong width)", async (t) => {
  const found = await issue(t, smallSpec({ classes: [{ name: "bus", attribute: { token: "wide.safetensors" } }] }), "spec.classes[0].attribute.token");
  t.match(found.value, /wide\.safetensors \(a token of width 48\)/);
  t.match(found.accepted, /32 wide/);
});

t.test("every mistake at once, each with path, value and accepted", async (t) => {
  const error = await run({ format: "voc", classes: [{ name: "dragon" }, { id: 30, name: "car" }], prompts: { templates: ["{x}"], perClass: 0 }, masks: { threshold: 3 } }).catch((e) => e);
  t.ok(error instanceof ovam.InvalidOptionError);
  t.match(error.issues.map((i) => i.option), ["spec.prompts.perClass", "spec.masks.threshold"], "schema issues first");
  const more = await run({ format: "voc", classes: [{ name: "dragon" }, { id: 30, name: "car" }], prompts: { templates: ["{x}"], perClass: 1 } }).catch((e) => e);
  t.same(more.issues.map((i) => i.option), ["spec.classes[0].id", "spec.classes[1].id", "spec.prompts.templates[0]"]);
  t.match(more.issues[0].accepted, /aeroplane, bicycle/);
  t.match(more.message, /spec\.classes\[1\]\.id" got 30; accepted: an integer from 1 to 20/);
});

t.test("an output path that is a file", async (t) => {
  const file = path.join(tmp, "a-file");
  fs.writeFileSync(file, "keep me");
  await t.rejects(run(smallSpec(), "a-file"), { code: "ERR_OVAM_INVALID_OPTION", option: "out" });
  const cliRun = spawnSync(process.execPath, [cli, "dataset", "spec.json", "--out", "a-file"], { cwd: tmp, encoding: "utf8" });
  t.equal(cliRun.status, 1);
  fs.writeFileSync(path.join(tmp, "spec.json"), JSON.stringify(smallSpec()));
  const again = spawnSync(process.execPath, [cli, "dataset", "spec.json", "--out", "a-file"], { cwd: tmp, encoding: "utf8" });
  t.equal(again.status, 1);
  t.match(again.stderr, /ovam dataset: .*option "out" got .*a-file.*accepted: a folder, or a path that does not exist yet \(it is a file\)/);
  t.equal(fs.readFileSync(file, "utf8"), "keep me", "the file is untouched");
  fs.writeFileSync(path.join(tmp, "broken.json"), "{ not json");
  const broken = spawnSync(process.execPath, [cli, "dataset", "broken.json", "--out", "x"], { cwd: tmp, encoding: "utf8" });
  t.equal(broken.status, 1);
  t.match(broken.stderr, /dataset spec broken\.json: not valid JSON/);
});

// A full disk, for real: a 160 KiB tmpfs (we run as root; where mounting is not permitted, a
// per-process file-size limit (RLIMIT_FSIZE) makes the writes fail the same way, EFBIG).
t.test("a full disk: ERR_OVAM_IO, nothing lost, resumable", async (t) => {
  const spec = smallSpec();
  const reference = path.join(tmp, "reference");
  await run(spec, "reference");
  const disk = path.join(tmp, "disk");
  fs.mkdirSync(disk);
  const mounted = spawnSync("mount", ["-t", "tmpfs", "-o", "size=160k", "tmpfs", disk]).status === 0;
  if (mounted) t.teardown(() => spawnSync("umount", [disk]));
  t.comment(mounted ? "a 160 KiB tmpfs" : "mount not permitted: RLIMIT_FSIZE instead");
  const out = path.join(disk, "data");
  let failure;
  if (mounted) failure = await ovam.dataset.run(spec, { out, baseDir: tmp, pipeline: sd }).catch((e) => e);
  else {
    fs.writeFileSync(path.join(tmp, "spec.json"), JSON.stringify(spec));
    // 16 KiB per file: dataset.json and the first images fit, the growing manifest soon does not.
    const child = spawnSync("bash", ["-c", `ulimit -f 16; exec "${process.execPath}" "${cli}" dataset spec.json --out "${out}" --json`], { cwd: tmp, encoding: "utf8" });
    failure = child.stdout.split("\n").filter(Boolean).map((l) => JSON.parse(l)).find((r) => r.event === "error");
  }
  t.match(failure, { code: "ERR_OVAM_IO" }, "the run stops with ERR_OVAM_IO");
  t.match(failure.message, /ENOSPC|EFBIG|no space|too large/i);
  const finished = manifest(out);
  t.ok(finished.length < 12, `${finished.length} of 12 finished before the disk was full`);
  for (const line of finished) for (const file of Object.values(line.files)) t.ok(fs.existsSync(path.join(out, file)), `${file} of a finished item is there`);
  t.same(fs.readdirSync(out, { recursive: true }).filter((n) => n.includes(".tmp-")), [], "no temporary files left");
  if (mounted) spawnSync("mount", ["-o", "remount,size=8m", disk]);
  await ovam.dataset.run(spec, { out, baseDir: tmp, pipeline: sd });
  t.same(differences(snapshot(reference), snapshot(out)), [], "resumed with room: equal to a run that never failed");
});
